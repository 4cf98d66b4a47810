//! What the Raft runtime records as it runs: disk and peer-call durations,
//! elections, leader changes, proposals, and a short history of this server's
//! term, role and leader for the cluster page.
//!
//! The runtime calls one method per event and never reads anything back:
//! [`RaftMetrics::persisted`] after each storage write, [`RaftMetrics::observe`]
//! after each `Ready` (changes are derived by comparing with the previous
//! status), [`RaftMetrics::peer_call`] when a peer call returns,
//! [`RaftMetrics::heard_from`] when a peer's RPC arrives. The service records
//! proposals and snapshot installs the same way.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use super::{Counter, Gauge, Histogram};
use crate::raft::{Index, NodeId, Role, Status, Term};

/// Most changes [`RaftMetrics::changes`] remembers.
const HISTORY: usize = 256;

/// One server's Raft measurements.
#[derive(Debug)]
pub struct RaftMetrics {
    started: Instant,
    /// Time to make a `Ready` durable when it carries no snapshot: hard state,
    /// log append and fsync (etcd's `wal_fsync_duration_seconds`).
    pub wal_fsync: Histogram,
    /// Time to make a `Ready` durable when it carries a snapshot (taken here or
    /// received from the leader): write, fsync, rename, log rewrite.
    pub snapshot_save: Histogram,
    /// Time for the state machine to restore itself from a snapshot.
    pub snapshot_install: Histogram,
    /// Leaders seen: a leader appeared for a new term, or a different one.
    pub leader_changes: Counter,
    /// Times this server became candidate (each new term it campaigns in).
    pub elections_started: Counter,
    /// Log entries this server learned were committed since it started.
    pub proposals_committed: Counter,
    /// Log entries this server's state machine applied since it started.
    pub proposals_applied: Counter,
    /// Client proposals waiting for their outcome.
    pub proposals_pending: Gauge,
    /// Proposals whose entry was replaced by another leader's.
    pub proposals_failed_leadership_lost: Counter,
    /// Proposals with no outcome before the request deadline.
    pub proposals_failed_timeout: Counter,
    /// By peer; the members change with the configuration (thesis §4).
    peers: RwLock<BTreeMap<NodeId, Arc<PeerMetrics>>>,
    history: Mutex<History>,
}

/// Measurements of the link to one peer.
#[derive(Debug)]
pub struct PeerMetrics {
    /// Time from sending an RPC to its reply (includes the peer's fsync when
    /// the RPC carries entries).
    pub round_trip: Histogram,
    /// RPCs that got no reply (unreachable, timed out, undecodable).
    pub send_failures: Counter,
    /// Microseconds after `started` of the last message from this peer, plus
    /// one; 0 if none yet.
    last_contact: AtomicU64,
}

/// A change of term, role or leader, as this server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// When it was seen.
    pub at: Instant,
    /// The term from then on.
    pub term: Term,
    /// The role from then on.
    pub role: Role,
    /// The leader followed from then on (itself when leader).
    pub leader: Option<NodeId>,
}

#[derive(Debug, Default)]
struct History {
    last: Option<(Term, Role, Option<NodeId>, Index)>,
    changes: VecDeque<Change>,
}

impl RaftMetrics {
    /// Empty metrics for a server whose peers (itself excluded) are `peers`.
    pub fn new(peers: &[NodeId]) -> Self {
        let metrics = Self {
            started: Instant::now(),
            wal_fsync: Histogram::latency(),
            snapshot_save: Histogram::latency(),
            snapshot_install: Histogram::latency(),
            leader_changes: Counter::default(),
            elections_started: Counter::default(),
            proposals_committed: Counter::default(),
            proposals_applied: Counter::default(),
            proposals_pending: Gauge::default(),
            proposals_failed_leadership_lost: Counter::default(),
            proposals_failed_timeout: Counter::default(),
            peers: RwLock::new(BTreeMap::new()),
            history: Mutex::new(History::default()),
        };
        metrics.set_peers(peers);
        metrics
    }

    /// The peers are now `peers` (the configuration changed): measurements
    /// of those still there are kept, new ones start empty.
    pub fn set_peers(&self, peers: &[NodeId]) {
        let mut map = self.peers.write().unwrap_or_else(|e| e.into_inner());
        map.retain(|id, _| peers.contains(id));
        for &id in peers {
            map.entry(id).or_insert_with(|| {
                Arc::new(PeerMetrics {
                    round_trip: Histogram::latency(),
                    send_failures: Counter::default(),
                    last_contact: AtomicU64::new(0),
                })
            });
        }
    }

    fn peer(&self, id: NodeId) -> Option<Arc<PeerMetrics>> {
        let map = self.peers.read().unwrap_or_else(|e| e.into_inner());
        map.get(&id).cloned()
    }

    /// Hook: storage made a `Ready` durable in `took` (`with_snapshot` if it
    /// carried one).
    pub fn persisted(&self, with_snapshot: bool, took: Duration) {
        if with_snapshot {
            self.snapshot_save.observe_duration(took);
        } else {
            self.wal_fsync.observe_duration(took);
        }
    }

    /// Hook: the status after a `Ready` was executed. Counts elections, leader
    /// changes and newly committed entries, and records changes of term, role
    /// or leader.
    pub fn observe(&self, status: &Status) {
        let now = (
            status.term,
            status.role,
            status.leader_id,
            status.commit_index,
        );
        let mut history = self.lock_history();
        let Some(prev) = history.last.replace(now) else {
            history.push(status);
            return;
        };
        if status.commit_index > prev.3 {
            self.proposals_committed.add(status.commit_index - prev.3);
        }
        if status.role == Role::Candidate && (prev.1 != Role::Candidate || status.term != prev.0) {
            self.elections_started.inc();
        }
        if status.leader_id.is_some() && (status.leader_id, status.term) != (prev.2, prev.0) {
            self.leader_changes.inc();
        }
        if (status.term, status.role, status.leader_id) != (prev.0, prev.1, prev.2) {
            history.push(status);
        }
    }

    /// Hook: a call to `peer` returned after `took`, with a reply or not.
    pub fn peer_call(&self, peer: NodeId, took: Duration, replied: bool) {
        let Some(p) = self.peer(peer) else {
            return;
        };
        if replied {
            p.round_trip.observe_duration(took);
            self.heard_from(peer);
        } else {
            p.send_failures.inc();
        }
    }

    /// Hook: a message from `peer` arrived (an RPC, or a reply to ours).
    pub fn heard_from(&self, peer: NodeId) {
        if let Some(p) = self.peer(peer) {
            let micros = self.started.elapsed().as_micros() as u64;
            p.last_contact.store(micros + 1, Ordering::Relaxed);
        }
    }

    /// Each peer's measurements, by id.
    pub fn peers(&self) -> Vec<(NodeId, Arc<PeerMetrics>)> {
        let map = self.peers.read().unwrap_or_else(|e| e.into_inner());
        map.iter().map(|(&id, p)| (id, Arc::clone(p))).collect()
    }

    /// How long ago `peer` was last heard from; `None` if never.
    pub fn last_contact(&self, peer: NodeId) -> Option<Duration> {
        let stored = self.peer(peer)?.last_contact.load(Ordering::Relaxed);
        let at = Duration::from_micros(stored.checked_sub(1)?);
        Some(self.started.elapsed().saturating_sub(at))
    }

    /// Changes of term, role or leader within the last `window`, oldest first.
    /// The first is the state this server started in, while it is in the window.
    pub fn changes(&self, window: Duration) -> Vec<Change> {
        let history = self.lock_history();
        history
            .changes
            .iter()
            .filter(|c| c.at.elapsed() <= window)
            .cloned()
            .collect()
    }

    /// When these metrics were created (about when the server started).
    pub fn started(&self) -> Instant {
        self.started
    }

    fn lock_history(&self) -> MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl History {
    fn push(&mut self, status: &Status) {
        if self.changes.len() == HISTORY {
            self.changes.pop_front();
        }
        self.changes.push_back(Change {
            at: Instant::now(),
            term: status.term,
            role: status.role,
            leader: status.leader_id,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(term: Term, role: Role, leader: Option<NodeId>, commit: Index) -> Status {
        Status {
            id: 1,
            term,
            role,
            leader_id: leader,
            commit_index: commit,
            last_applied: 0,
            snapshot_index: 0,
            last_log_index: commit,
            transferring_to: None,
            configuration: Default::default(),
            configuration_index: 0,
            membership_change: None,
        }
    }

    #[test]
    fn elections_leader_changes_and_commits_are_derived_from_successive_statuses() {
        let m = RaftMetrics::new(&[2, 3]);
        m.observe(&status(1, Role::Follower, None, 0));
        m.observe(&status(2, Role::Candidate, None, 0));
        m.observe(&status(3, Role::Candidate, None, 0)); // split vote: campaigns again
        m.observe(&status(3, Role::Leader, Some(1), 0));
        m.observe(&status(3, Role::Leader, Some(1), 4)); // no change, 4 committed
        m.observe(&status(4, Role::Follower, None, 4));
        m.observe(&status(4, Role::Follower, Some(2), 6));
        assert_eq!(m.elections_started.get(), 2);
        assert_eq!(m.leader_changes.get(), 2);
        assert_eq!(m.proposals_committed.get(), 6);
        let changes = m.changes(Duration::from_secs(60));
        let seen: Vec<_> = changes.iter().map(|c| (c.term, c.role, c.leader)).collect();
        assert_eq!(
            seen,
            vec![
                (1, Role::Follower, None),
                (2, Role::Candidate, None),
                (3, Role::Candidate, None),
                (3, Role::Leader, Some(1)),
                (4, Role::Follower, None),
                (4, Role::Follower, Some(2)),
            ]
        );
    }

    #[test]
    fn peer_calls_record_round_trips_failures_and_contact() {
        let m = RaftMetrics::new(&[2]);
        assert_eq!(m.last_contact(2), None);
        m.peer_call(2, Duration::from_millis(3), true);
        m.peer_call(2, Duration::from_secs(3), false);
        m.peer_call(9, Duration::from_millis(3), true); // not a peer: ignored
        let (_, p) = m.peers().into_iter().next().unwrap();
        assert_eq!(p.round_trip.snapshot().count(), 1);
        assert_eq!(p.send_failures.get(), 1);
        assert!(m.last_contact(2).unwrap() < Duration::from_secs(5));
    }
}
