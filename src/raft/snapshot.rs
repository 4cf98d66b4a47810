//! Log compaction and InstallSnapshot: §7.
//!
//! The service snapshots its state at an applied index and hands the bytes to
//! Raft, which drops the log up to there. A follower that needs entries the
//! leader has compacted away receives the whole snapshot in one InstallSnapshot
//! RPC instead (this implementation does not split snapshots into chunks).

use super::core::{Raft, Role};
use super::messages::{Index, InstallSnapshotArgs, InstallSnapshotReply, NodeId, Request};
use super::ready::Snapshot;
use crate::info;

impl Raft {
    /// The service has snapshotted its state through `index` into `data`: drop
    /// the log up to `index`. Returns false (and does nothing) if `index` is not
    /// past the current snapshot or not yet applied.
    pub fn snapshot(&mut self, index: Index, data: Vec<u8>) -> bool {
        if index <= self.log.snapshot_index() || index > self.last_applied {
            return false;
        }
        let Some(term) = self.log.term(index) else {
            return false;
        };
        self.log.compact_to(index, term);
        self.install(Snapshot {
            last_included_index: index,
            last_included_term: term,
            data,
        });
        info!(
            self.id,
            self.current_term,
            "took snapshot through index {index} ({} bytes); log now {}..={}",
            self.snapshot.data.len(),
            self.log.first_index(),
            self.log.last_index()
        );
        true
    }

    /// Sends a follower the snapshot, when the entries it needs are gone (§7).
    pub(super) fn send_snapshot(&mut self, peer: NodeId) {
        let args = InstallSnapshotArgs {
            term: self.current_term,
            leader_id: self.id,
            last_included_index: self.snapshot.last_included_index,
            last_included_term: self.snapshot.last_included_term,
            data: self.snapshot.data.clone(),
        };
        self.send(peer, Request::InstallSnapshot(args));
    }

    /// Figure 13, InstallSnapshot receiver implementation (whole snapshot at once).
    pub(super) fn handle_install_snapshot(
        &mut self,
        args: InstallSnapshotArgs,
    ) -> InstallSnapshotReply {
        let reply = InstallSnapshotReply {
            term: self.current_term,
        };
        // 1. Reply immediately if term < currentTerm.
        if args.term < self.current_term {
            return reply;
        }
        self.become_follower(args.term, Some(args.leader_id));
        self.election_elapsed = 0;
        let index = args.last_included_index;
        // A snapshot of what we have already committed would move us backwards.
        if index <= self.commit_index {
            return reply;
        }
        // 6. If an existing log entry has the same index and term as the snapshot's
        //    last included entry, retain log entries following it.
        // 7. Otherwise discard the entire log.
        if self.log.term(index) == Some(args.last_included_term) {
            self.log.compact_to(index, args.last_included_term);
        } else {
            self.log.reset_to_snapshot(index, args.last_included_term);
            self.mark_unstable(index + 1);
        }
        self.install(Snapshot {
            last_included_index: index,
            last_included_term: args.last_included_term,
            data: args.data,
        });
        // 8. Reset the state machine using the snapshot contents.
        self.commit_index = index;
        self.last_applied = index;
        self.snapshot_to_apply = true;
        info!(
            self.id,
            self.current_term,
            "installed snapshot through index {index} from leader {}",
            args.leader_id
        );
        reply
    }

    /// The follower now holds everything the snapshot covers.
    pub(super) fn handle_install_snapshot_reply(
        &mut self,
        from: NodeId,
        args: &InstallSnapshotArgs,
    ) {
        if self.role != Role::Leader {
            return;
        }
        let last_index = self.log.last_index();
        let Some(progress) = self.progress.get_mut(&from) else {
            return;
        };
        if progress.maybe_advance(args.last_included_index) {
            self.maybe_commit();
        }
        if self
            .progress
            .get(&from)
            .is_some_and(|p| p.next_index <= last_index)
        {
            self.send_append(from);
        }
    }

    /// Makes `snapshot` the current one and schedules it to be stored. Log writes
    /// still pending below it are now covered by the snapshot.
    fn install(&mut self, snapshot: Snapshot) {
        let first_kept = snapshot.last_included_index + 1;
        self.unstable_from = self.unstable_from.map(|u| u.max(first_kept));
        self.snapshot = snapshot;
        self.snapshot_changed = true;
    }
}
