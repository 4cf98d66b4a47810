//! The fault schedules: at random moments, one fault of a random kind.
//!
//! Every fault draws the same number of random values whatever its kind, and a
//! kind the seed switched off is skipped after its draws. So switching a kind
//! off (as shrinking does) removes those faults and leaves every other fault at
//! the same moment with the same parameters. Faults pick their servers among
//! those that exist when they strike (servers join and leave with membership
//! changes).
//!
//! A seed runs two schedules, each from its own random stream: the general
//! faults (crashes, partitions, pauses, clocks, transfers, membership), and
//! the faults aimed at one server's promises ([`FaultKind::PROMISE_FAULTS`]:
//! late copies of AppendEntries and InstallSnapshot, a crash right after a
//! term change). A seed that switches the second off runs exactly the
//! schedule it ran before those faults existed.

use super::knobs::{FaultKind, Knobs};
use super::{Time, MS, SECOND};
use crate::raft::rng::Rng;

/// Where in a server's handling of its next event a crash strikes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CrashPoint {
    /// At once, between two events.
    Now,
    /// In the middle of saving (a torn save: a prefix reaches the disk).
    DuringPersist,
    /// The disk fails in the middle of the next save (`ENOSPC` if `full`,
    /// else `EIO`): a prefix reaches the disk and the save returns the error,
    /// so the server stops (fail-stop) and later restarts from its disk.
    DiskFails { full: bool },
    /// After saving, before sending any message or reply.
    BeforeSend,
    /// After sending, before applying committed entries.
    BeforeApply,
    /// Right after a step that changes the server's term (adopted from an
    /// RPC, or started as a candidate), once it has answered: what it said
    /// in the new term must survive the crash (Figure 2).
    AfterTermChange,
}

impl CrashPoint {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            CrashPoint::Now => "between events",
            CrashPoint::DuringPersist => "during its next save",
            CrashPoint::DiskFails { full: true } => "when its disk fills during its next save",
            CrashPoint::DiskFails { full: false } => {
                "when its disk fails (EIO) during its next save"
            }
            CrashPoint::BeforeSend => "after its next save, before sending",
            CrashPoint::BeforeApply => "after its next send, before applying",
            CrashPoint::AfterTermChange => "right after its next change of term, once it answered",
        }
    }

    /// How long the crash waits for a step that reaches its point before
    /// it strikes anyway: terms change rarely, so a term crash waits longer.
    pub(crate) fn waits(self) -> Time {
        match self {
            CrashPoint::AfterTermChange => 3 * SECOND,
            _ => SECOND,
        }
    }
}

/// One fault, ready to inject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Crash server `node` at `point`; restart it after `down_for`.
    Crash {
        node: usize,
        point: CrashPoint,
        down_for: Time,
    },
    /// Cut the links from `from` to `to` (and back, unless `one_way`), keeping
    /// `bridge` connected to both sides, for `lasts`.
    Partition {
        from: Vec<usize>,
        to: Vec<usize>,
        one_way: bool,
        bridge: Option<usize>,
        lasts: Time,
    },
    /// Stop server `node`'s clock for `lasts`.
    Pause { node: usize, lasts: Time },
    /// Make server `node`'s clock tick `percent` % faster for `lasts`.
    FastClock {
        node: usize,
        percent: u64,
        lasts: Time,
    },
    /// Ask the leader, if any, to hand leadership to `node` (or the next
    /// server, if `node` leads).
    Transfer { node: usize },
    /// Ask the leader, if any, to add a new server (if `add` and a fresh id
    /// is left) or else to remove the member that `pick` chooses.
    Membership { add: bool, pick: u64 },
    /// For `lasts`, AppendEntries and InstallSnapshot requests to server
    /// `node` may arrive a second time, much later.
    LateCopies { node: usize, lasts: Time },
}

/// Draws faults for one schedule.
pub(crate) struct FaultPlan {
    rng: Rng,
    /// The kinds this schedule draws from, in a fixed order, with their weights.
    menu: Vec<(FaultKind, u64)>,
    /// The kinds this seed injects (the others are drawn, then skipped).
    kinds: Vec<FaultKind>,
    gap: Time,
}

impl FaultPlan {
    /// The general faults: every kind but [`FaultKind::PROMISE_FAULTS`].
    pub(crate) fn general(rng: Rng, knobs: &Knobs) -> Self {
        Self::of(rng, knobs, |k| !FaultKind::PROMISE_FAULTS.contains(&k))
    }

    /// The faults aimed at one server's promises.
    pub(crate) fn promises(rng: Rng, knobs: &Knobs) -> Self {
        Self::of(rng, knobs, |k| FaultKind::PROMISE_FAULTS.contains(&k))
    }

    fn of(rng: Rng, knobs: &Knobs, mine: impl Fn(FaultKind) -> bool) -> Self {
        let menu: Vec<(FaultKind, u64)> = FaultKind::ALL
            .into_iter()
            .zip(knobs.fault_weights)
            .filter(|&(k, _)| mine(k))
            .collect();
        let kinds = knobs.faults.iter().copied().filter(|&k| mine(k)).collect();
        Self {
            rng,
            menu,
            kinds,
            gap: knobs.fault_gap,
        }
    }

    /// Whether this schedule injects anything at all (a seed may switch
    /// every kind of it off; then it is not run, and draws nothing).
    pub(crate) fn is_active(&self) -> bool {
        !self.kinds.is_empty()
    }

    /// How long until the next fault.
    pub(crate) fn next_gap(&mut self) -> Time {
        self.rng.range(MS, 2 * self.gap + 1)
    }

    /// The next fault among `servers` (the indexes of those that exist, in
    /// order), or `None` if its kind is switched off for this seed.
    pub(crate) fn next_fault(&mut self, servers: &[usize]) -> Option<Fault> {
        let total: u64 = self.menu.iter().map(|&(_, w)| w).sum();
        let mut x = self.rng.range(0, total.max(1));
        let mut kind = self.menu.first().map_or(FaultKind::Crash, |&(k, _)| k);
        for &(k, w) in &self.menu {
            if x < w {
                kind = k;
                break;
            }
            x -= w;
        }
        let draws: [u64; 4] = std::array::from_fn(|_| self.rng.next_u64());
        if !self.kinds.contains(&kind) {
            return None;
        }
        let n = servers.len().max(1) as u64;
        let node = servers.get((draws[0] % n) as usize).copied().unwrap_or(0);
        let duration = |min: Time, max: Time, d: u64| min + d % (max - min + 1);
        // Roughly log-uniform from 5 ms to 2.5 s: some restarts land within
        // the election the crash interrupted.
        let down_for = {
            let scale = (5 * MS) << (draws[3] % 9);
            scale + draws[2] % scale
        };
        Some(match kind {
            FaultKind::Crash => Fault::Crash {
                node,
                point: match [
                    CrashPoint::Now,
                    CrashPoint::DuringPersist,
                    CrashPoint::BeforeSend,
                    CrashPoint::BeforeApply,
                ][(draws[1] % 4) as usize]
                {
                    // Half the torn saves are a disk that fails rather than
                    // power that goes: the same prefix reaches the disk, and
                    // under fail-stop the server stops the same way. Decided
                    // by bits of a draw made anyway, so that every schedule
                    // stays what it was.
                    CrashPoint::DuringPersist if !(draws[3] / 9).is_multiple_of(2) => {
                        CrashPoint::DiskFails {
                            full: (draws[3] / 18).is_multiple_of(2),
                        }
                    }
                    point => point,
                },
                down_for,
            },
            FaultKind::TermCrash => Fault::Crash {
                node,
                point: CrashPoint::AfterTermChange,
                down_for,
            },
            FaultKind::LateCopies => Fault::LateCopies {
                node,
                lasts: duration(1000 * MS, 5000 * MS, draws[2]),
            },
            FaultKind::Partition | FaultKind::OneWay | FaultKind::Bridge => {
                // Two sides (and a bridge) need as many servers: membership
                // changes may have left fewer.
                let needed = if kind == FaultKind::Bridge { 3 } else { 2 };
                if servers.len() < needed {
                    return None;
                }
                // A random order of the servers, split after the first `k`.
                let mut order: Vec<usize> = servers.to_vec();
                let mut x = draws[0];
                for i in (1..order.len()).rev() {
                    x = x.rotate_left(7) ^ 0x9E37_79B9_7F4A_7C15;
                    order.swap(i, (x % (i as u64 + 1)) as usize);
                }
                let bridge = (kind == FaultKind::Bridge).then(|| order.remove(0));
                let k = 1 + (draws[1] % (order.len() as u64 - 1).max(1)) as usize;
                let to = order.split_off(k.min(order.len()));
                Fault::Partition {
                    from: order,
                    to,
                    one_way: kind == FaultKind::OneWay,
                    bridge,
                    lasts: duration(300 * MS, 3000 * MS, draws[2]),
                }
            }
            FaultKind::Pause => Fault::Pause {
                node,
                lasts: duration(100 * MS, 2000 * MS, draws[2]),
            },
            FaultKind::FastClock => Fault::FastClock {
                node,
                percent: 10 + draws[1] % 41,
                lasts: duration(1000 * MS, 5000 * MS, draws[2]),
            },
            FaultKind::Transfer => Fault::Transfer { node },
            FaultKind::Membership => Fault::Membership {
                add: draws[1].is_multiple_of(2),
                pick: draws[2],
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::knobs::Options;

    #[test]
    fn partitions_split_every_server_into_exactly_one_side() {
        let options = Options {
            nodes: Some(5),
            ..Options::default()
        };
        let mut knobs = Knobs::draw(1, &options);
        knobs.faults = vec![FaultKind::Partition, FaultKind::Bridge];
        let mut plan = FaultPlan::general(Rng::new(9), &knobs);
        let mut seen = 0;
        for _ in 0..200 {
            if let Some(Fault::Partition {
                from, to, bridge, ..
            }) = plan.next_fault(&[0, 1, 2, 3, 4])
            {
                let mut all: Vec<usize> = from.iter().chain(&to).chain(&bridge).copied().collect();
                all.sort_unstable();
                assert_eq!(all, vec![0, 1, 2, 3, 4]);
                assert!(!from.is_empty() && !to.is_empty());
                seen += 1;
            }
        }
        assert!(seen > 0);
    }

    #[test]
    fn the_promise_faults_have_a_schedule_of_their_own() {
        let mut knobs = Knobs::draw(1, &Options::default());
        knobs.faults = FaultKind::ALL.to_vec();
        knobs.fault_weights = [1; 10];
        let (mut general, mut promises) = (
            FaultPlan::general(Rng::new(5), &knobs),
            FaultPlan::promises(Rng::new(5), &knobs),
        );
        let (mut term_crashes, mut late_copies) = (0, 0);
        for _ in 0..200 {
            match general.next_fault(&[0, 1, 2]) {
                Some(Fault::LateCopies { .. })
                | Some(Fault::Crash {
                    point: CrashPoint::AfterTermChange,
                    ..
                }) => panic!("a promise fault in the general schedule"),
                _ => {}
            }
            match promises.next_fault(&[0, 1, 2]) {
                Some(Fault::Crash {
                    point: CrashPoint::AfterTermChange,
                    ..
                }) => term_crashes += 1,
                Some(Fault::LateCopies { lasts, .. }) => {
                    assert!((1000 * MS..=5000 * MS).contains(&lasts));
                    late_copies += 1;
                }
                other => panic!("{other:?} in the promise schedule"),
            }
        }
        assert!(term_crashes > 50 && late_copies > 50);
        knobs
            .faults
            .retain(|k| !FaultKind::PROMISE_FAULTS.contains(k));
        assert!(!FaultPlan::promises(Rng::new(5), &knobs).is_active());
    }

    #[test]
    fn switching_a_kind_off_keeps_the_other_faults_in_place() {
        let options = Options::default();
        let mut all = Knobs::draw(4, &options);
        all.faults = FaultKind::ALL.to_vec();
        let mut fewer = all.clone();
        fewer.faults.retain(|&k| k != FaultKind::Crash);
        let (mut a, mut b) = (
            FaultPlan::general(Rng::new(5), &all),
            FaultPlan::general(Rng::new(5), &fewer),
        );
        for _ in 0..100 {
            assert_eq!(a.next_gap(), b.next_gap());
            let servers = [0, 1, 2];
            let (fa, fb) = (a.next_fault(&servers), b.next_fault(&servers));
            match fa {
                Some(Fault::Crash { .. }) => assert_eq!(fb, None),
                other => assert_eq!(other, fb),
            }
        }
    }
}
