//! The queue of requests waiting to go to one peer, and its rules: plain
//! deterministic code (no threads, no clock) that the runtime's sender threads
//! (`sender.rs`) and the simulator's servers (`src/sim/senders.rs`) both run.
//!
//! - A request joins the back; past [`MAX_QUEUED`] the oldest is dropped
//!   (Raft treats it as a lost message; the next heartbeat repairs the gap).
//! - The request taken from the front carries the AppendEntries queued right
//!   behind it when they can travel as one (`merge`): entries that continue
//!   each other, and a heartbeat next to entries while the peer accepts
//!   AppendEntries (alone after a rejection, [`PeerQueue::answered`]).
//! - A snapshot piece is named by the core (offset, length) and its bytes are
//!   read from storage just before it is sent ([`fill_snapshot_piece`]), so a
//!   snapshot of any size is never held in a queue.
//!
//! `peer_queue/tests.rs` checks each rule by its exact outputs.

use std::collections::VecDeque;

use crate::raft::messages::{Request, Response};
use crate::storage::Storage;

/// Most requests waiting for a worker; beyond this the oldest is dropped.
pub const MAX_QUEUED: usize = 256;
/// Most encoded entry bytes one merged AppendEntries may carry (base64 makes
/// its line 4/3 of that, within the peer line limit).
pub const MAX_MERGED_BYTES: usize = 4 << 20;
/// An entry's encoding beyond its command, at most: term (a 10-byte varint),
/// kind, and the command's length.
const ENTRY_OVERHEAD: usize = 16;

/// Requests waiting to go to one peer, oldest first.
#[derive(Debug, Default)]
pub struct PeerQueue {
    requests: VecDeque<Request>,
    /// Whether the peer accepted the last AppendEntries answered: only then
    /// may heartbeats ride on entries (see [`merge`]).
    accepting: bool,
}

impl PeerQueue {
    /// Queues `request` behind the others. Returns the oldest request if the
    /// queue was full and dropped it.
    pub fn push(&mut self, request: Request) -> Option<Request> {
        let dropped = if self.requests.len() >= MAX_QUEUED {
            self.requests.pop_front()
        } else {
            None
        };
        self.requests.push_back(request);
        dropped
    }

    /// Takes the oldest request, with the AppendEntries right behind it
    /// merged into it while they can travel as one: under load, requests
    /// pile up while a call is in flight, and the follower then does one
    /// write and one reply for the whole run.
    pub fn pop(&mut self) -> Option<Request> {
        let mut request = self.requests.pop_front()?;
        while self
            .requests
            .front()
            .is_some_and(|next| merge(&mut request, next, self.accepting))
        {
            self.requests.pop_front();
        }
        Some(request)
    }

    /// The peer answered an AppendEntries (`Some(success)`, see
    /// [`accepted_append`]) or something else (`None`, which says nothing).
    pub fn answered(&mut self, accepted_append: Option<bool>) {
        if let Some(accepted) = accepted_append {
            self.accepting = accepted;
        }
    }

    /// Drops every queued request.
    pub fn clear(&mut self) {
        self.requests.clear();
    }

    /// How many requests wait.
    pub fn len(&self) -> usize {
        self.requests.len()
    }

    /// Whether no request waits.
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }
}

/// Whether `response` accepts an AppendEntries (`None` if it answers
/// another request), for [`PeerQueue::answered`]. Taken before the answer
/// goes on to the core, which owns it from then on.
pub fn accepted_append(response: &Response) -> Option<bool> {
    match response {
        Response::AppendEntries(reply) => Some(reply.success),
        _ => None,
    }
}

/// Fills an InstallSnapshot request's bytes from `storage` (`chunk_bytes`
/// per piece, the core's `Config::snapshot_chunk_bytes`); any other request
/// is left alone. False if the snapshot is gone (a newer one replaced it):
/// the request is then lost, like a lost message, and the core starts over
/// with the newer snapshot.
pub fn fill_snapshot_piece(request: &mut Request, chunk_bytes: u64, storage: &dyn Storage) -> bool {
    let Request::InstallSnapshot(args) = request else {
        return true;
    };
    let snapshot = args.snapshot();
    let len = args.piece_len(chunk_bytes);
    let Ok(len) = usize::try_from(len) else {
        return false;
    };
    match storage.read_snapshot_chunk(&snapshot, args.offset, len) {
        Ok(data) if data.len() == len => {
            args.data = data;
            true
        }
        _ => false,
    }
}

/// Merges `b` into `a` (queued before it) and returns true, if both are
/// AppendEntries of the same leader and term and one of these holds:
/// - `b` continues right where `a` ends: `a`'s entries, then `b`'s (two
///   heartbeats with the same anchor are the case with no entries);
/// - the peer is `accepting` (it accepted the last AppendEntries answered)
///   and one of them is a heartbeat while the other has entries: the one with
///   entries, which the follower must get anyway, carries the heartbeat's
///   read round and commit index.
///
/// The merged request carries the later commit index and read round. It is
/// one the leader could have sent itself when it made `b`: its entries and
/// their predecessor are still in its log (a leader only appends), and the
/// follower's answer is sent after `b`'s read round began, so it may confirm
/// it (thesis §6.4). Without heartbeats riding on entries, under a mix of
/// reads and writes every read round would be a call of its own between two
/// batches of entries.
///
/// What a heartbeat loses when it rides is its anchor: the leader takes the
/// rejection of a heartbeat, which is anchored at an entry the follower had
/// acknowledged, as proof that the follower lost its log, and the rejection
/// of anything else as an ordinary mismatch (`handle_append_entries_reply`).
/// So heartbeats ride only while the peer accepts AppendEntries: once it
/// rejects one (a lost log, or just a mismatch), heartbeats go alone again
/// until it accepts one.
fn merge(a: &mut Request, b: &Request, accepting: bool) -> bool {
    let (Request::AppendEntries(a), Request::AppendEntries(b)) = (a, b) else {
        return false;
    };
    if b.term != a.term || b.leader_id != a.leader_id {
        return false;
    }
    let commit = a.leader_commit.max(b.leader_commit);
    let read_seq = a.read_seq.max(b.read_seq);
    let (a_beats, b_beats) = (a.entries.is_empty(), b.entries.is_empty());
    let continues = b.prev_log_index == a.prev_log_index + a.entries.len() as u64;
    if accepting && a_beats && !b_beats {
        // `a` is a heartbeat: `b` carries it.
        *a = b.clone();
    } else if accepting && b_beats && !a_beats {
        // `b` is a heartbeat: `a` carries it.
    } else if continues {
        let bytes: usize = a
            .entries
            .iter()
            .chain(&b.entries)
            .map(|e| e.command.len() + ENTRY_OVERHEAD)
            .sum();
        if bytes > MAX_MERGED_BYTES {
            return false;
        }
        a.entries.extend(b.entries.iter().cloned());
    } else {
        return false;
    }
    a.leader_commit = commit;
    a.read_seq = read_seq;
    true
}

#[cfg(test)]
mod tests;
