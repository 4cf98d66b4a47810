//! The leader's lease clock: when each lease runs out, on this server's
//! monotonic clock, never replicated.
//!
//! Only the leader keeps deadlines, and only it proposes expiries
//! (`LeaseExpire{id, renewals}`, see [`super::lease`]); a replica never
//! expires a lease on its own. A deadline starts when this leader first
//! sees the lease in its applied state, or sees a keepalive it had not
//! seen: `now + ttl` — later than the grant or keepalive itself, so never
//! early by this clock.
//!
//! A lease a leader first sees gets one grace period more: at least one
//! full (longest) election timeout. A new leader does not know when the
//! last leader last renewed a lease, and its client could not renew while
//! there was no leader; etcd's lessor extends every lease by an election
//! timeout on promotion for the same reason (thesis §6.4.1 on relying on
//! clocks across servers). Keeping the grace for every lease a leader first
//! sees, not only at promotion, covers the log a new leader applies late.
//!
//! The clock has no threads: [`LeaseClock::tick`] takes the time and the
//! leases, and returns the expiries to propose; [`spawn`] is the replica's
//! lease thread, which calls it every [`TICK`] and proposes them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::command::Command;
use super::lease::LeaseCommand;
use super::state_machine::Op;
use crate::codec::Encode;
use crate::info;
use crate::node::{Callback, Node};
use crate::raft::Role;

/// How often the leader looks for leases that ran out.
pub const TICK: Duration = Duration::from_millis(100);
/// How long an expiry proposal may stay without effect before it is proposed again.
const REPROPOSE: Duration = Duration::from_secs(1);

/// One lease as the clock sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Deadline {
    /// The keepalives counted when the deadline was set.
    renewals: u64,
    /// When it runs out.
    at: Instant,
    /// When its expiry was last proposed.
    proposed: Option<Instant>,
}

/// Deadlines of the leases, kept by the leader.
#[derive(Debug)]
pub struct LeaseClock {
    /// Extra time for a lease this leader first sees.
    grace: Duration,
    /// The term this server leads in, if it leads.
    term: Option<u64>,
    deadlines: BTreeMap<u64, Deadline>,
}

impl LeaseClock {
    /// A clock that gives first-seen leases `grace` more (at least the
    /// longest election timeout).
    pub fn new(grace: Duration) -> LeaseClock {
        LeaseClock {
            grace,
            term: None,
            deadlines: BTreeMap::new(),
        }
    }

    /// Looks at the leases (`(id, ttl_s, renewals)`) at `now`, as leader in
    /// `leading` (its term) or not leading (`None`: the clock forgets
    /// everything). Returns the `(id, renewals)` of the leases to expire.
    pub fn tick(
        &mut self,
        now: Instant,
        leading: Option<u64>,
        leases: impl IntoIterator<Item = (u64, u64, u64)>,
    ) -> Vec<(u64, u64)> {
        if leading != self.term {
            // Another term, or no longer leading: every deadline starts over.
            self.term = leading;
            self.deadlines.clear();
        }
        if leading.is_none() {
            return Vec::new();
        }
        let mut seen = BTreeMap::new();
        for (id, ttl, renewals) in leases {
            let ttl = Duration::from_secs(ttl);
            let deadline = match self.deadlines.get(&id) {
                Some(d) if d.renewals == renewals => *d,
                Some(_) => Deadline {
                    renewals,
                    at: now + ttl,
                    proposed: None,
                },
                None => Deadline {
                    renewals,
                    at: now + ttl + self.grace,
                    proposed: None,
                },
            };
            seen.insert(id, deadline);
        }
        self.deadlines = seen;
        let mut expired = Vec::new();
        for (id, d) in &mut self.deadlines {
            let due = d.proposed.is_none_or(|p| now >= p + REPROPOSE);
            if now >= d.at && due {
                d.proposed = Some(now);
                expired.push((*id, d.renewals));
            }
        }
        expired
    }

    /// How long lease `id` has left by this clock (`None` if this server
    /// does not lead or has not seen it yet).
    pub fn remaining(&self, id: u64, now: Instant) -> Option<Duration> {
        self.term?;
        self.deadlines
            .get(&id)
            .map(|d| d.at.saturating_duration_since(now))
    }
}

/// Starts the lease thread of `node`: every [`TICK`], while the node
/// leads, it asks `clock` which of `leases()` (`(id, ttl_s, renewals)` from
/// the applied state) ran out, and proposes their expiry. Ends when the
/// node is killed.
pub fn spawn(
    node: Arc<Node>,
    clock: Arc<Mutex<LeaseClock>>,
    leases: impl Fn() -> Vec<(u64, u64, u64)> + Send + 'static,
) -> Option<JoinHandle<()>> {
    let id = node.id();
    let run = move || {
        while !node.is_killed() {
            thread::sleep(TICK);
            let status = node.status();
            let leading = (status.role == Role::Leader).then_some(status.term);
            let seen = if leading.is_some() {
                leases()
            } else {
                Vec::new()
            };
            let expired =
                clock
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .tick(Instant::now(), leading, seen);
            for (id, renewals) in expired {
                info!(
                    node.id(),
                    status.term, "lease {id} ran out on the leader's clock; proposing its expiry"
                );
                let op = Op {
                    client_id: 0,
                    seq: 0,
                    command: Command::Lease(LeaseCommand::Expire { id, renewals }),
                };
                // Not awaited: the next tick proposes it again if it is lost.
                node.propose(op.encode(), Callback::new(drop));
            }
        }
    };
    thread::Builder::new()
        .name(format!("lease-{id}"))
        .spawn(run)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_millis(500);

    /// Reference: thesis §6.4.1; etcd's lessor promotes with an extension.
    #[test]
    fn a_lease_runs_out_ttl_after_its_last_keepalive_plus_grace_when_first_seen() {
        let t0 = Instant::now();
        let mut c = LeaseClock::new(GRACE);
        assert!(c.tick(t0, Some(2), [(1, 10, 0)]).is_empty());
        let just_before = t0 + Duration::from_secs(10) + GRACE - Duration::from_millis(1);
        assert!(c.tick(just_before, Some(2), [(1, 10, 0)]).is_empty());
        let at = t0 + Duration::from_secs(10) + GRACE;
        assert_eq!(c.tick(at, Some(2), [(1, 10, 0)]), vec![(1, 0)]);
        assert!(
            c.tick(at, Some(2), [(1, 10, 0)]).is_empty(),
            "proposed once"
        );
        // A keepalive restarts the clock, without grace.
        let renewed = at + Duration::from_millis(10);
        assert!(c.tick(renewed, Some(2), [(1, 10, 1)]).is_empty());
        assert_eq!(
            c.remaining(1, renewed),
            Some(Duration::from_secs(10)),
            "ttl from the keepalive"
        );
        let later = renewed + Duration::from_secs(10);
        assert_eq!(c.tick(later, Some(2), [(1, 10, 1)]), vec![(1, 1)]);
    }

    #[test]
    fn a_new_term_or_a_follower_starts_every_deadline_over() {
        let t0 = Instant::now();
        let mut c = LeaseClock::new(GRACE);
        c.tick(t0, Some(2), [(1, 1, 0)]);
        let t1 = t0 + Duration::from_secs(1);
        assert!(
            c.tick(t1, None, [(1, 1, 0)]).is_empty(),
            "followers expire nothing"
        );
        assert_eq!(c.remaining(1, t1), None);
        assert!(c.tick(t1, Some(3), [(1, 1, 0)]).is_empty());
        let t2 = t1 + Duration::from_secs(1);
        assert!(c.tick(t2, Some(3), [(1, 1, 0)]).is_empty(), "grace");
        assert_eq!(c.tick(t2 + GRACE, Some(3), [(1, 1, 0)]), vec![(1, 0)]);
    }

    /// Random schedules of leadership, keepalives and ticks: an expiry is
    /// only ever proposed at least a TTL after the last keepalive, and a
    /// lease last renewed before its leader began to lead lives at least
    /// TTL plus the grace from then. Reference: thesis §6.4.1.
    #[test]
    fn no_expiry_is_proposed_before_the_ttl_since_the_last_keepalive_seen() {
        use crate::raft::rng::Rng;
        for seed in 1..200 {
            let mut rng = Rng::new(seed);
            let t0 = Instant::now();
            let mut c = LeaseClock::new(GRACE);
            let mut now = t0;
            let mut term = 1;
            let mut leading = Some(term);
            let mut leader_since = now;
            // id → (ttl, renewals, when this leader saw the last renewal)
            let mut leases: BTreeMap<u64, (u64, u64, Instant)> = BTreeMap::new();
            for step in 0..300 {
                now += Duration::from_millis(rng.range(1, 400));
                match rng.range(0, 20) {
                    0 => {
                        term += 1;
                        leading = (rng.range(0, 3) > 0).then_some(term);
                        leader_since = now;
                    }
                    1 | 2 => {
                        leases.insert(step, (rng.range(1, 4), 0, now));
                    }
                    3..=6 => {
                        if let Some((_, (_, renewals, seen))) =
                            leases.iter_mut().nth(rng.range(0, 8) as usize)
                        {
                            *renewals += 1;
                            *seen = now;
                        }
                    }
                    _ => {}
                }
                let view: Vec<_> = leases.iter().map(|(&id, &(t, r, _))| (id, t, r)).collect();
                for (id, renewals) in c.tick(now, leading, view) {
                    let (ttl, current, seen) = leases[&id];
                    assert_eq!(renewals, current, "seed {seed}");
                    let ttl = Duration::from_secs(ttl);
                    assert!(now >= seen + ttl, "seed {seed}: lease {id} expired early");
                    // Renewed before this leader led: it gets the grace.
                    if seen < leader_since {
                        assert!(now >= leader_since + ttl + GRACE, "seed {seed}: no grace");
                    }
                    leases.remove(&id);
                }
            }
        }
    }
}
