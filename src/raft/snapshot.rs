//! Log compaction and InstallSnapshot: §7 and Figure 13.
//!
//! The service writes a snapshot of its state through storage and tells the
//! core, which drops the log up to there. A follower that needs entries the
//! leader has compacted away receives the snapshot instead, in pieces
//! (Figure 13's `offset`, `data`, `done`), one at a time, each acknowledged:
//! the core decides which piece goes next, the runtime reads its bytes from the
//! snapshot file, the follower's storage appends them to a file of its own, and
//! only the last piece installs the snapshot. Memory stays bounded by one piece
//! on both sides, whatever the snapshot's size.

use super::bugs::Bug;
use super::core::{Raft, Role};
use super::messages::{Index, InstallSnapshotArgs, InstallSnapshotReply, NodeId, Request};
use super::progress::SnapshotTransfer;
use super::ready::{Snapshot, SnapshotChunk};
use super::verdict::Verdict;
use crate::{debug, info};

/// A snapshot the follower is receiving, and how much of it it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// The snapshot.
    pub snapshot: Snapshot,
    /// Bytes received and stored, in order.
    pub stored: u64,
}

impl Raft {
    /// The service has written `snapshot` (its state through
    /// `last_included_index`) to storage: drop the log up to there. Returns
    /// false (and does nothing) if it is not past the current snapshot, covers
    /// entries not applied yet, or names a term the log does not hold there.
    pub fn snapshot(&mut self, mut snapshot: Snapshot) -> bool {
        let index = snapshot.last_included_index;
        if index <= self.log.snapshot_index() || index > self.last_applied {
            return false;
        }
        if self.log.term(index) != Some(snapshot.last_included_term) {
            return false;
        }
        // Thesis §4.1: the snapshot carries the configuration as of its
        // index, found before the entries holding it are dropped.
        (snapshot.configuration, snapshot.configuration_index) = self.configuration_at(index);
        self.log.compact_to(index, snapshot.last_included_term);
        let size = snapshot.size;
        self.install(snapshot);
        info!(
            self.id,
            self.current_term,
            "took snapshot through index {index} ({size} bytes); log now {}..={}",
            self.log.first_index(),
            self.log.last_index()
        );
        true
    }

    /// The description of a snapshot the service may take through `index`:
    /// its term and the cluster configuration as of it (thesis §4.1), which
    /// storage keeps with the bytes. `None` if `index` is not applied yet or
    /// no longer in the log.
    pub fn snapshot_point(&self, index: Index) -> Option<Snapshot> {
        if index <= self.log.snapshot_index() || index > self.last_applied {
            return None;
        }
        let last_included_term = self.log.term(index)?;
        let (configuration, configuration_index) = self.configuration_at(index);
        Some(Snapshot {
            last_included_index: index,
            last_included_term,
            size: 0,
            configuration,
            configuration_index,
        })
    }

    /// Sends a follower the next piece of the current snapshot, when the
    /// entries it needs are gone (§7). A transfer of an older snapshot starts
    /// over with the current one.
    pub(super) fn send_snapshot(&mut self, peer: NodeId) {
        let current = self.snapshot.clone();
        let chunk = self.config.snapshot_chunk_bytes.max(1);
        let Some(progress) = self.progress.get_mut(&peer) else {
            return;
        };
        let starting = progress.snapshot_transfer.is_none();
        let transfer = match progress.snapshot_transfer.take() {
            Some(t) if t.snapshot == current => t,
            _ => {
                debug!(
                    self.id,
                    self.current_term,
                    "sending {peer} the snapshot through {} ({} bytes)",
                    current.last_included_index,
                    current.size
                );
                SnapshotTransfer::new(current.clone())
            }
        };
        if starting {
            // One piece in flight at a time, as for a probe.
            progress.back_off_to(progress.next_index);
        }
        let offset = transfer.offset;
        progress.snapshot_transfer = Some(transfer);
        progress.sent_data(0, 0);
        let done = offset.saturating_add(chunk) >= current.size;
        let args = InstallSnapshotArgs {
            term: self.current_term,
            leader_id: self.id,
            last_included_index: current.last_included_index,
            last_included_term: current.last_included_term,
            size: current.size,
            offset,
            configuration: current.configuration,
            configuration_index: current.configuration_index,
            data: Vec::new(),
            done,
        };
        self.send(peer, Request::InstallSnapshot(args));
    }

    /// Figure 13, InstallSnapshot receiver implementation.
    pub(super) fn handle_install_snapshot(
        &mut self,
        args: InstallSnapshotArgs,
    ) -> InstallSnapshotReply {
        let mut reply = InstallSnapshotReply {
            term: self.current_term,
            stored: 0,
        };
        // 1. Reply immediately if term < currentTerm.
        if args.term < self.current_term {
            self.verdict = Verdict::StaleTerm {
                current_term: self.current_term,
            };
            return reply;
        }
        // Every piece comes from the current leader: it is a heartbeat too.
        self.become_follower(args.term, Some(args.leader_id));
        self.election_elapsed = 0;
        let snapshot = args.snapshot();
        // A snapshot of what we have already committed would move us backwards:
        // say we hold it all, so the leader moves on to AppendEntries.
        if snapshot.last_included_index <= self.commit_index {
            self.incoming = None;
            reply.stored = snapshot.size;
            self.verdict = Verdict::SnapshotNotNeeded;
            return reply;
        }
        // 2. Create a new snapshot file if the first piece (offset 0).
        if args.offset == 0 {
            self.incoming = Some(Incoming {
                snapshot: snapshot.clone(),
                stored: 0,
            });
        }
        // A piece that does not continue what we hold (a lost, duplicated or
        // late piece, or one from a transfer we never started): say where to
        // resume.
        let continues = self
            .incoming
            .as_ref()
            .is_some_and(|i| i.snapshot == snapshot && i.stored == args.offset);
        // (Sums saturate: the offset comes from the network.)
        let end = args.offset.saturating_add(args.data.len() as u64);
        let fits = end <= snapshot.size && (!args.done || end == snapshot.size);
        if !continues || !fits {
            reply.stored = self
                .incoming
                .as_ref()
                .filter(|i| i.snapshot == snapshot)
                .map_or(0, |i| i.stored);
            self.verdict = Verdict::SnapshotOutOfOrder {
                stored: reply.stored,
            };
            return reply;
        }
        // 3. Write data into the snapshot file at the given offset.
        let stored = end;
        self.snapshot_chunks.push(SnapshotChunk {
            snapshot: snapshot.clone(),
            offset: args.offset,
            data: args.data,
            done: args.done,
        });
        self.incoming = Some(Incoming {
            snapshot: snapshot.clone(),
            stored,
        });
        reply.stored = stored;
        self.verdict = Verdict::SnapshotStored {
            stored,
            installed: args.done,
        };
        // 4. Reply and wait for more data chunks if done is false.
        if args.done {
            self.incoming = None;
            self.install_received(snapshot, args.leader_id);
        }
        reply
    }

    /// Figure 13, steps 5–8, once the last piece is in.
    fn install_received(&mut self, snapshot: Snapshot, leader: NodeId) {
        let index = snapshot.last_included_index;
        let term = snapshot.last_included_term;
        // 6. If an existing log entry has the same index and term as the snapshot's
        //    last included entry, retain log entries following it.
        // 7. Otherwise discard the entire log.
        if self.log.term(index) == Some(term) && !self.has_bug(Bug::SnapshotDiscardsLog) {
            self.log.compact_to(index, term);
        } else {
            self.log.reset_to_snapshot(index, term);
            self.mark_unstable(index + 1);
            self.persisted_index = self.persisted_index.min(index);
        }
        // 5. Save snapshot file, discard any existing snapshot with a smaller index.
        let size = snapshot.size;
        self.install(snapshot);
        // Thesis §4.1: the latest configuration is in the suffix kept, or
        // else the snapshot's.
        self.reload_configuration();
        // 8. Reset the state machine using the snapshot contents.
        self.commit_index = index;
        self.last_applied = index;
        self.snapshot_to_apply = true;
        info!(
            self.id,
            self.current_term,
            "installed snapshot through index {index} ({size} bytes) from leader {leader}"
        );
    }

    /// The leader's side: the follower holds `reply.stored` bytes of the
    /// snapshot; send the next piece, or, once it holds it all, go on with
    /// AppendEntries from just after it.
    pub(super) fn handle_install_snapshot_reply(
        &mut self,
        from: NodeId,
        args: &InstallSnapshotArgs,
        reply: InstallSnapshotReply,
    ) {
        if self.role != Role::Leader {
            return;
        }
        let last_index = self.log.last_index();
        let Some(progress) = self.progress.get_mut(&from) else {
            return;
        };
        if reply.stored >= args.size {
            progress.snapshot_transfer = None;
            progress.answered();
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
            return;
        }
        // The reply to the piece in flight names where the follower stands: past
        // it, send the next piece; short of it (the follower restarted, or a
        // late duplicate of an earlier first piece made it start over), resume
        // from what it holds. Replies to other pieces (duplicated or late) are
        // ignored, and leave the piece in flight in flight: acting on them
        // would multiply the pieces in flight. A piece that goes a whole
        // heartbeat interval unanswered is sent again (`Progress::piece_lost`).
        let Some(transfer) = progress.snapshot_transfer.as_ref() else {
            return;
        };
        let same_snapshot = transfer.snapshot.last_included_index == args.last_included_index
            && transfer.snapshot.last_included_term == args.last_included_term
            && transfer.snapshot.size == args.size;
        if !same_snapshot || args.offset != transfer.offset {
            return;
        }
        let moved = reply.stored != transfer.offset;
        progress.piece_answered();
        if moved {
            if let Some(transfer) = progress.snapshot_transfer.as_mut() {
                transfer.offset = reply.stored;
            }
            self.send_snapshot(from);
        }
    }

    /// Makes `snapshot` the current one and schedules storage to make it so.
    /// Log writes still pending below it are now covered by the snapshot.
    fn install(&mut self, snapshot: Snapshot) {
        let first_kept = snapshot.last_included_index + 1;
        self.unstable_from = self.unstable_from.map(|u| u.max(first_kept));
        self.snapshot = snapshot;
        self.snapshot_changed = true;
    }
}
