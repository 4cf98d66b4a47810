//! What the consensus core asks its runtime to do: persist, then send, then apply.
//!
//! The core ([`super::Raft`]) never touches a disk, a socket or a thread. Each time
//! it handles input it accumulates a [`Ready`]; [`super::executor::execute`]
//! carries it out **in field order**, through effects the runtime supplies:
//! make `persist` durable, then release the replies to the RPCs just handled
//! and send `messages`, then hand `apply` to the state machine. That order is
//! what makes the core's promises true: a vote or an appended entry is on disk
//! before any peer can learn of it (Figure 2: "respond to RPCs only after updating
//! stable storage"), and nothing is applied before it is durable locally.
//!
//! One exception, thesis §10.2.1: when `send_first` is set (a leader whose term
//! and vote did not change), the messages may be sent before or while `persist`
//! is written, so followers write in parallel with the leader. After the write
//! the executor reports it with [`super::Raft::persisted`]; the leader counts
//! itself toward a majority only then. Replies to RPCs always wait for the write.
//! The executor's documentation states the whole rule, step by step.

use super::configuration::Configuration;
use super::messages::{Entry, Index, NodeId, Request, Term};
use crate::codec::{Decode, DecodeError, Decoder, Encode, Encoder};

/// Figure 2's persistent state other than the log: `currentTerm` and `votedFor`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HardState {
    /// Latest term this server has seen.
    pub current_term: Term,
    /// Candidate that received this server's vote in `current_term`, if any.
    pub voted_for: Option<NodeId>,
}

impl Encode for HardState {
    fn encode_to(&self, e: &mut Encoder) {
        e.put_uvarint(self.current_term);
        // Node ids start at 1, so 0 stands for "voted for nobody".
        e.put_uvarint(self.voted_for.unwrap_or(0));
    }
}

impl Decode for HardState {
    fn decode_from(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let current_term = d.get_uvarint()?;
        let voted_for = Some(d.get_uvarint()?).filter(|&id| id != 0);
        Ok(HardState {
            current_term,
            voted_for,
        })
    }
}

/// A state machine snapshot and the log position it replaces (§7): what the
/// core knows of it. The bytes themselves live in storage (`Storage::
/// write_snapshot`, `open_snapshot`), so a snapshot of any size never passes
/// through the core's memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The last log index the snapshot includes.
    pub last_included_index: Index,
    /// The term of that entry.
    pub last_included_term: Term,
    /// The length of the snapshot's bytes.
    pub size: u64,
    /// The cluster configuration as of `last_included_index` (thesis §4.1):
    /// the entries that held it are gone, so the snapshot carries it ...
    pub configuration: Configuration,
    /// ... and the index of the entry that held it (0: the bootstrap peers).
    /// Invariant: `configuration_index <= last_included_index`.
    pub configuration_index: Index,
}

/// One piece of a snapshot arriving from the leader (Figure 13's `offset`,
/// `data`, `done`): storage appends it to the snapshot being received and, on
/// the last piece, makes the whole snapshot durable under its own name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotChunk {
    /// The snapshot the piece belongs to.
    pub snapshot: Snapshot,
    /// Where the piece starts in the snapshot's bytes.
    pub offset: u64,
    /// The bytes.
    pub data: Vec<u8>,
    /// Whether this is the last piece.
    pub done: bool,
}

/// A change to the stored log: drop every entry at `first_index` or later, then
/// append `entries` (the first of which gets index `first_index`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogWrite {
    /// Index of the first entry written; stored entries from here on are replaced.
    pub first_index: Index,
    /// The new entries, in index order (may be empty: a pure truncation).
    pub entries: Vec<Entry>,
}

impl LogWrite {
    /// Index and term of the last entry written, to report to
    /// [`super::Raft::persisted`] once the write is durable.
    pub fn last(&self) -> Option<(Index, Term)> {
        let last = self.entries.last()?;
        Some((
            self.first_index + self.entries.len() as Index - 1,
            last.term,
        ))
    }
}

/// State that must be durable before the rest of a [`Ready`] is executed.
///
/// Storage applies the parts in this order: `hard_state`, `snapshot_chunks`,
/// `snapshot` (make it the current one, then drop stored entries up to its
/// index), `log` (truncate and append).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Persist {
    /// New term and vote, if either changed.
    pub hard_state: Option<HardState>,
    /// Pieces of a snapshot arriving from the leader, in order.
    pub snapshot_chunks: Vec<SnapshotChunk>,
    /// A snapshot whose bytes storage already holds (written by the service,
    /// or received in chunks) becomes the current one.
    pub snapshot: Option<Snapshot>,
    /// New or replaced log entries, if any.
    pub log: Option<LogWrite>,
}

impl Persist {
    /// True if there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.hard_state.is_none()
            && self.snapshot_chunks.is_empty()
            && self.snapshot.is_none()
            && self.log.is_none()
    }
}

/// Something the state machine must apply, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyMsg {
    /// A committed command; indexes arrive consecutively, each exactly once.
    Command {
        /// The entry's log index.
        index: Index,
        /// The entry's term.
        term: Term,
        /// The command bytes given to `start`.
        command: Vec<u8>,
    },
    /// Replace the whole state with this snapshot; later commands continue from
    /// `last_included_index + 1`. Never moves the state machine backwards.
    Snapshot(Snapshot),
    /// A committed entry Raft wrote for itself (a leader's no-op, or a
    /// configuration): nothing to apply, but it takes its index.
    Internal {
        /// The entry's log index.
        index: Index,
        /// The entry's term.
        term: Term,
    },
    /// The read admitted as `id` by [`super::Raft::read_index`] is confirmed:
    /// every entry through `index` precedes this message, so answering it from
    /// the state machine now is linearizable (thesis §6.4).
    Read {
        /// The caller's read id.
        id: u64,
        /// The read index: the leader's commit index when the read arrived.
        index: Index,
    },
    /// The read admitted as `id` cannot be confirmed: this server stopped
    /// being leader first. Nothing was read; retry elsewhere.
    ReadFailed {
        /// The caller's read id.
        id: u64,
    },
}

/// A request for the runtime to deliver to a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbound {
    /// The peer to send to.
    pub to: NodeId,
    /// The request; its reply goes back into the core with the request itself.
    pub request: Request,
}

/// Everything one round of input made the core want done, in execution order
/// (executed by [`super::executor::execute`]).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Ready {
    /// 1. Make this durable.
    pub persist: Persist,
    /// 2. Then send these.
    pub messages: Vec<Outbound>,
    /// 3. Then apply these to the state machine.
    pub apply: Vec<ApplyMsg>,
    /// The messages may be sent before `persist` is durable (see the module
    /// documentation).
    pub send_first: bool,
    /// The configuration changed (thesis §4.1): the latest one in the log or
    /// snapshot is now this. The runtime learns peers and their addresses
    /// here, before it sends `messages` (some may go to a new member).
    pub configuration: Option<Configuration>,
}

impl Ready {
    /// True if the runtime has nothing to do.
    pub fn is_empty(&self) -> bool {
        self.persist.is_empty()
            && self.messages.is_empty()
            && self.apply.is_empty()
            && self.configuration.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hard_state_round_trips_with_and_without_a_vote() {
        for hs in [
            HardState::default(),
            HardState {
                current_term: 12,
                voted_for: Some(3),
            },
        ] {
            assert_eq!(HardState::decode(&hs.encode()), Ok(hs));
        }
    }
}
