//! When a server snapshots its state machine (§7): plain deterministic code
//! that the replica's apply loop (`replica.rs`) and the simulator's servers
//! (`src/sim/server.rs`) both run.
//!
//! The log is weighed as it is applied: a command's bytes plus
//! [`ENTRY_COST`], an entry Raft wrote for itself [`ENTRY_COST`] alone. A
//! snapshot is due once the log applied since the last one weighs
//! [`SnapshotPolicy::log_bytes`], and, with `scale_with_state`, as much as the
//! last snapshot did. Where the snapshot is written differs (the replica
//! copies the state and writes it on a thread of its own; the simulator
//! writes it within the step); when is decided here.

use crate::raft::ApplyMsg;

/// What one log entry costs beyond its command's bytes, in memory and on disk
/// (its term, index, record header, allocation), for the snapshot threshold.
pub const ENTRY_COST: usize = 64;

/// When a server takes a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotPolicy {
    /// Bytes of applied log between snapshots, at least: the commands' bytes
    /// plus [`ENTRY_COST`] per entry, so that a flood of tiny commands
    /// (`REGISTER` is 3 bytes) cannot grow the in-memory log to millions of
    /// entries before a snapshot.
    pub log_bytes: usize,
    /// Also wait for as much log as the last snapshot weighed, so that
    /// snapshots of a large state cost at most as much disk bandwidth as the
    /// log itself (the server). Off, `log_bytes` bounds the log whatever the
    /// state's size (the course tests' `maxraftstate`).
    pub scale_with_state: bool,
}

impl SnapshotPolicy {
    /// Whether `since` bytes of log applied since the last snapshot call
    /// for one, when the last weighed `last_snapshot_bytes`.
    pub fn due(&self, since: usize, last_snapshot_bytes: u64) -> bool {
        let mut threshold = self.log_bytes;
        if self.scale_with_state {
            let last = usize::try_from(last_snapshot_bytes).unwrap_or(usize::MAX);
            threshold = threshold.max(last);
        }
        since >= threshold
    }
}

/// The log applied since the last snapshot, weighed as the policy weighs it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogSinceSnapshot {
    bytes: usize,
}

impl LogSinceSnapshot {
    /// Counts one message the state machine applied: a command weighs its
    /// bytes plus [`ENTRY_COST`], an entry Raft wrote for itself
    /// [`ENTRY_COST`]; a snapshot installed from the leader starts the count
    /// over; a read weighs nothing.
    pub fn applied(&mut self, msg: &ApplyMsg) {
        match msg {
            ApplyMsg::Command { command, .. } => {
                self.bytes = self.bytes.saturating_add(command.len() + ENTRY_COST);
            }
            ApplyMsg::Internal { .. } => self.bytes = self.bytes.saturating_add(ENTRY_COST),
            ApplyMsg::Snapshot(_) => self.bytes = 0,
            ApplyMsg::Read { .. } | ApplyMsg::ReadFailed { .. } => {}
        }
    }

    /// The weight counted so far.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// A snapshot of the state as applied so far begins: count from zero.
    pub fn snapshot_started(&mut self) {
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::Snapshot;

    fn command(bytes: usize) -> ApplyMsg {
        ApplyMsg::Command {
            index: 1,
            term: 1,
            command: vec![0; bytes],
        }
    }

    #[test]
    fn the_log_weighs_its_commands_and_a_cost_per_entry() {
        let mut log = LogSinceSnapshot::default();
        log.applied(&command(10));
        assert_eq!(log.bytes(), 10 + ENTRY_COST);
        log.applied(&ApplyMsg::Internal { index: 2, term: 1 });
        log.applied(&ApplyMsg::Read { id: 1, index: 2 });
        log.applied(&ApplyMsg::ReadFailed { id: 2 });
        assert_eq!(log.bytes(), 10 + 2 * ENTRY_COST);
        log.applied(&ApplyMsg::Snapshot(Snapshot::default()));
        assert_eq!(log.bytes(), 0, "installed from the leader");
        log.applied(&command(1));
        log.snapshot_started();
        assert_eq!(log.bytes(), 0);
    }

    /// Reference: §7 — a snapshot is due at the threshold, and with
    /// `scale_with_state` not before as much log as the last snapshot weighed.
    #[test]
    fn a_snapshot_is_due_at_the_threshold_or_the_last_snapshots_size() {
        let fixed = SnapshotPolicy {
            log_bytes: 1000,
            scale_with_state: false,
        };
        assert!(!fixed.due(999, 0));
        assert!(fixed.due(1000, 0));
        assert!(fixed.due(1000, 5000), "the last size does not matter");
        let scaled = SnapshotPolicy {
            scale_with_state: true,
            ..fixed
        };
        assert!(scaled.due(1000, 800));
        assert!(!scaled.due(4999, 5000));
        assert!(scaled.due(5000, 5000));
    }
}
