//! What happened on a server, as data: one event model for the live runtime, its recordings and the simulator.
//!
//! An [`Event`] is one thing that happened on one server (or, with node 0, to
//! the cluster: a fault the simulator injected, an action an operator took):
//! an RPC sent, received or answered, a change of role or term, a vote, a
//! write made durable, a commit or apply advance, a snapshot, a new
//! configuration, a client's request and reply. The threaded runtime
//! (`src/node/`) records them into a bounded [`ring::EventRing`] served at
//! `GET /events`; the simulator (`src/sim/`) collects them on virtual time and
//! writes them as a trace file. Both encode them with [`json`], and
//! [`caption`] says in one sentence what each means and which rule of the
//! paper it follows, so the cluster page draws all three sources with one
//! renderer and no guessing.
//!
//! Recording is meant to be cheap: an event is a small struct built from
//! values the runtime already holds (numbers, static names); text is made
//! only when a reader asks (format at read time). Rare events (a new
//! configuration, a fault) may carry a short list.
//!
//! The files: this one defines [`Event`]; [`watch`] reads the core's changes
//! between rounds of work, [`ring`] keeps a server's newest events, [`json`]
//! encodes them, [`caption`] explains them.
//!
//! Sits above the core (it summarises `raft::messages` and `raft::Verdict`)
//! and below the runtimes and the edges that use it.

pub mod caption;
pub mod json;
pub mod ring;
pub mod watch;

use crate::raft::messages::{Request, Response};
use crate::raft::ready::Persist;
use crate::raft::{Configuration, HardState, Index, NodeId, Role, Term, Verdict};

/// One thing that happened on one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The server's own sequence number for it (1, 2, ... per server and run):
    /// `GET /events?since=SEQ` resumes after one.
    pub seq: u64,
    /// When, in microseconds: virtual time in the simulator; live, time on a
    /// monotonic clock since the process started.
    pub time: u64,
    /// The server it happened on; 0 for the simulator or an operator.
    pub node: NodeId,
    /// The server's current term when it happened (0 for node 0).
    pub term: Term,
    /// What happened.
    pub what: What,
}

/// The kinds of event, with their fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum What {
    /// A request handed to the network for peer `to`.
    Send {
        /// The peer.
        to: NodeId,
        /// The message's id (its send event's `seq`), 0 if unknown.
        msg: u64,
        /// What it asks.
        rpc: Rpc,
    },
    /// A request from peer `from` reached the core.
    Receive {
        /// The peer.
        from: NodeId,
        /// The sender's id for the message (the simulator knows it; the
        /// wire does not carry it, so live it is 0).
        msg: u64,
        /// What it asks.
        rpc: Rpc,
    },
    /// This server answered peer `to`'s request (after its state was durable).
    Reply {
        /// The peer.
        to: NodeId,
        /// The request's message id, 0 if unknown.
        msg: u64,
        /// The request answered.
        rpc: Rpc,
        /// The answer.
        answer: Answer,
        /// The rule that decided it.
        verdict: Verdict,
    },
    /// The answer to one of this server's requests came back from `from`.
    ReplyReceived {
        /// The peer.
        from: NodeId,
        /// The request's message id, 0 if unknown.
        msg: u64,
        /// The request it answers.
        rpc: Rpc,
        /// The answer.
        answer: Answer,
    },
    /// The server's role or the leader it follows changed (§5.1).
    Role {
        /// The new role.
        role: Role,
        /// The role before.
        previous: Role,
        /// The term before.
        previous_term: Term,
        /// The leader it now follows (itself when leading), if known.
        leader: Option<NodeId>,
    },
    /// The server voted for `candidate` in its current term (§5.2).
    Vote {
        /// The candidate.
        candidate: NodeId,
    },
    /// The election timer was reset with a fresh random timeout (§5.2).
    Timer {
        /// The timeout drawn, in microseconds.
        timeout: u64,
    },
    /// A write to stable storage finished (Figure 2: before any reply).
    Persist(Persisted),
    /// The commit index advanced to `index` (§5.3, §5.4.2).
    Commit {
        /// The new commit index.
        index: Index,
        /// The term of the entry at `index`, if the log holds it.
        entry_term: Option<Term>,
        /// The server leads: it counted replicas; otherwise the leader told it.
        leader: bool,
    },
    /// Entries through `index` went to the state machine.
    Apply {
        /// The new last applied index.
        index: Index,
    },
    /// The service took a snapshot and the log was compacted up to it (§7).
    SnapshotTaken(SnapshotSummary),
    /// A snapshot received from the leader replaced the log (§7).
    SnapshotInstalled(SnapshotSummary),
    /// The configuration in force changed (thesis §4.1).
    Configuration {
        /// The entry holding it (0: the bootstrap configuration).
        index: Index,
        /// Its voters.
        voters: Box<[NodeId]>,
        /// Its learners.
        learners: Box<[NodeId]>,
    },
    /// A client's request arrived.
    ClientRequest {
        /// The client (its session id, or an index in the simulator).
        client: u64,
        /// The request's number, which its reply repeats.
        request: u64,
        /// The command's name (`put`, `get`, `transfer`, ...).
        op: &'static str,
        /// The command itself, where recording it costs nothing that matters
        /// (the simulator, an operator's command).
        text: Option<Box<str>>,
    },
    /// The server replied to a client's request.
    ClientReply {
        /// The client.
        client: u64,
        /// The request's number.
        request: u64,
        /// The reply's code: `OK`, `VALUE`, or an error code.
        result: &'static str,
        /// The log index the command took, when known.
        index: Option<Index>,
        /// The reply line, where recording it is cheap.
        text: Option<Box<str>>,
    },
    /// The simulator injected a fault, or an operator acted on the cluster.
    Intervention(Intervention),
    /// A message never arrived (simulator).
    Lost {
        /// Its sender.
        from: NodeId,
        /// Whom it was for.
        to: NodeId,
        /// Its message id.
        msg: u64,
        /// Why.
        why: Loss,
    },
    /// The network delivers a message twice (simulator).
    Duplicated {
        /// Its sender.
        from: NodeId,
        /// Whom it is for.
        to: NodeId,
        /// Its message id.
        msg: u64,
    },
    /// A safety property failed (simulator): the run stops here.
    Violation {
        /// The property (`state_machine_safety`, ...).
        invariant: &'static str,
        /// The rule of the paper it comes from.
        rule: &'static str,
        /// The facts that contradict it.
        evidence: Box<str>,
        /// The servers the evidence names.
        nodes: Box<[NodeId]>,
    },
    /// A guided tour's narration for the steps that follow.
    Narration {
        /// The text.
        text: Box<str>,
    },
}

impl What {
    /// The kind's name, as the JSON encoding writes it (`kind`).
    pub fn name(&self) -> &'static str {
        match self {
            What::Send { .. } => "send",
            What::Receive { .. } => "receive",
            What::Reply { .. } => "reply",
            What::ReplyReceived { .. } => "reply_received",
            What::Role { .. } => "role",
            What::Vote { .. } => "vote",
            What::Timer { .. } => "timer",
            What::Persist(_) => "persist",
            What::Commit { .. } => "commit",
            What::Apply { .. } => "apply",
            What::SnapshotTaken(_) => "snapshot_taken",
            What::SnapshotInstalled(_) => "snapshot_installed",
            What::Configuration { .. } => "configuration",
            What::ClientRequest { .. } => "client_request",
            What::ClientReply { .. } => "client_reply",
            What::Intervention(_) => "intervention",
            What::Lost { .. } => "lost",
            What::Duplicated { .. } => "duplicated",
            What::Violation { .. } => "violation",
            What::Narration { .. } => "narration",
        }
    }
}

/// The fields of a request worth showing (never the entries or bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rpc {
    /// §5.2 RequestVote (or a pre-vote, thesis §9.6).
    RequestVote {
        /// The candidate's last log index.
        last_log_index: Index,
        /// The term of that entry.
        last_log_term: Term,
        /// A pre-vote: "would you vote for me in this term?"
        pre_vote: bool,
        /// Sent by the target of a leadership transfer (thesis §3.10).
        leadership_transfer: bool,
    },
    /// §5.3 AppendEntries (a heartbeat when it carries no entries).
    AppendEntries {
        /// The entry just before the new ones.
        prev_log_index: Index,
        /// Its term.
        prev_log_term: Term,
        /// How many entries it carries (indexes `prev_log_index + 1..`).
        entries: u32,
        /// The term of the last entry carried (0 if none).
        last_entry_term: Term,
        /// The leader's commit index.
        leader_commit: Index,
        /// Command bytes carried.
        bytes: u32,
    },
    /// §7 InstallSnapshot, one piece.
    InstallSnapshot {
        /// The snapshot's last included index.
        last_included_index: Index,
        /// Its term.
        last_included_term: Term,
        /// Where the piece starts.
        offset: u64,
        /// The piece's length.
        len: u64,
        /// The whole snapshot's length.
        size: u64,
        /// The last piece.
        done: bool,
    },
    /// Thesis §3.10 TimeoutNow.
    TimeoutNow,
}

impl Rpc {
    /// The summary of `request`. A snapshot piece the core sends carries no
    /// bytes yet (the runtime reads them): its length is then computed from
    /// `chunk_bytes`, the size of a piece.
    pub fn of(request: &Request, chunk_bytes: u64) -> Rpc {
        match request {
            Request::RequestVote(a) => Rpc::RequestVote {
                last_log_index: a.last_log_index,
                last_log_term: a.last_log_term,
                pre_vote: a.pre_vote,
                leadership_transfer: a.leadership_transfer,
            },
            Request::AppendEntries(a) => Rpc::AppendEntries {
                prev_log_index: a.prev_log_index,
                prev_log_term: a.prev_log_term,
                entries: a.entries.len() as u32,
                last_entry_term: a.entries.last().map_or(0, |e| e.term),
                leader_commit: a.leader_commit,
                bytes: a.entries.iter().map(|e| e.command.len() as u32).sum(),
            },
            Request::InstallSnapshot(a) => Rpc::InstallSnapshot {
                last_included_index: a.last_included_index,
                last_included_term: a.last_included_term,
                offset: a.offset,
                len: match a.data.len() as u64 {
                    0 => a.piece_len(chunk_bytes),
                    n => n,
                },
                size: a.size,
                done: a.done,
            },
            Request::TimeoutNow(_) => Rpc::TimeoutNow,
        }
    }

    /// The RPC's name on the wire of the JSON encoding.
    pub fn name(&self) -> &'static str {
        match self {
            Rpc::RequestVote { pre_vote: true, .. } => "PreVote",
            Rpc::RequestVote { .. } => "RequestVote",
            Rpc::AppendEntries { .. } => "AppendEntries",
            Rpc::InstallSnapshot { .. } => "InstallSnapshot",
            Rpc::TimeoutNow => "TimeoutNow",
        }
    }

    /// An AppendEntries without entries.
    pub fn is_heartbeat(&self) -> bool {
        matches!(self, Rpc::AppendEntries { entries: 0, .. })
    }
}

/// The fields of a reply worth showing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// RequestVote: whether the vote was granted.
    RequestVote {
        /// Granted.
        granted: bool,
    },
    /// AppendEntries: success, or where the logs may match (§5.3).
    AppendEntries {
        /// The consistency check passed.
        success: bool,
        /// On failure, the index the follower suggests.
        conflict_index: Index,
        /// On failure, the term of its conflicting entry, if it has one.
        conflict_term: Option<Term>,
    },
    /// InstallSnapshot: bytes of the snapshot the follower holds.
    InstallSnapshot {
        /// Bytes held, in order.
        stored: u64,
    },
    /// TimeoutNow: nothing but the term.
    TimeoutNow,
}

impl Answer {
    /// The summary of `response`.
    pub fn of(response: &Response) -> Answer {
        match response {
            Response::RequestVote(r) => Answer::RequestVote {
                granted: r.vote_granted,
            },
            Response::AppendEntries(r) => Answer::AppendEntries {
                success: r.success,
                conflict_index: r.conflict_index,
                conflict_term: r.conflict_term,
            },
            Response::InstallSnapshot(r) => Answer::InstallSnapshot { stored: r.stored },
            Response::TimeoutNow(_) => Answer::TimeoutNow,
        }
    }
}

/// A finished write to stable storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Persisted {
    /// New term and vote, if they were written.
    pub hard_state: Option<HardState>,
    /// Log entries written, if any.
    pub log: Option<LogWrite>,
    /// The snapshot made current, if any.
    pub snapshot_index: Option<Index>,
    /// Command and snapshot bytes written.
    pub bytes: u64,
    /// How long the write took, in microseconds (0 in the simulator).
    pub micros: u64,
}

/// A log write: stored entries from `first` on were replaced by entries
/// `first..=last` (none when `last < first`: a pure truncation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogWrite {
    /// The first index written.
    pub first: Index,
    /// The last index written.
    pub last: Index,
    /// The terms of the entries written.
    pub terms: TermRuns,
}

/// The terms of consecutive entries, as runs: one term needs no allocation
/// (a leader's own entries, almost every follower write).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TermRuns {
    /// Every entry has this term.
    One(Term),
    /// Runs as `(first index of the run, term)`, in index order.
    Many(Box<[(Index, Term)]>),
}

impl TermRuns {
    /// The runs of `terms`, the first at index `first`.
    pub fn of(first: Index, terms: impl Iterator<Item = Term>) -> TermRuns {
        let mut runs: Vec<(Index, Term)> = Vec::new();
        for (i, term) in terms.enumerate() {
            if runs.last().is_none_or(|&(_, t)| t != term) {
                runs.push((first + i as Index, term));
            }
        }
        match runs.as_slice() {
            [] => TermRuns::One(0),
            [(_, term)] => TermRuns::One(*term),
            _ => TermRuns::Many(runs.into_boxed_slice()),
        }
    }

    /// The runs, given the first index they start at.
    pub fn runs(&self, first: Index) -> Vec<(Index, Term)> {
        match self {
            TermRuns::One(term) => vec![(first, *term)],
            TermRuns::Many(runs) => runs.to_vec(),
        }
    }
}

impl Persisted {
    /// The summary of `persist`, which took `micros` to write.
    pub fn of(persist: &Persist, micros: u64) -> Persisted {
        let log = persist.log.as_ref().map(|w| {
            let first = w.first_index;
            let terms = w.entries.iter().map(|e| e.term);
            LogWrite {
                first,
                last: first + w.entries.len() as Index - 1,
                terms: TermRuns::of(first, terms),
            }
        });
        let entry_bytes: usize = persist
            .log
            .iter()
            .flat_map(|w| &w.entries)
            .map(|e| e.command.len())
            .sum();
        let chunk_bytes: usize = persist.snapshot_chunks.iter().map(|c| c.data.len()).sum();
        Persisted {
            hard_state: persist.hard_state,
            log,
            snapshot_index: persist.snapshot.as_ref().map(|s| s.last_included_index),
            bytes: (entry_bytes + chunk_bytes) as u64,
            micros,
        }
    }
}

/// A snapshot's position and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotSummary {
    /// Its last included index.
    pub index: Index,
    /// The term of that entry.
    pub term: Term,
    /// Its length in bytes.
    pub bytes: u64,
}

/// Who acts on the cluster from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// The simulator's fault schedule.
    Simulator,
    /// A person (the playground's controls, a tour's script).
    Operator,
}

/// Something done to the cluster from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Servers stop at once (kill -9, a crash).
    Crash,
    /// Servers start again from their disk.
    Restart,
    /// Servers freeze (SIGSTOP, a stopped clock).
    Pause,
    /// Frozen servers run again.
    Resume,
    /// A server's clock runs fast.
    FastClock,
    /// `nodes` and `others` cannot talk, both ways.
    Partition,
    /// Messages from `nodes` to `others` are lost; the other way works.
    OneWay,
    /// Two groups that cannot talk, and one server (`bridge`) that talks to both.
    Bridge,
    /// Every link works again.
    Heal,
    /// The leader is asked to hand leadership to `others[0]` (thesis §3.10).
    Transfer,
    /// The leader is asked to add `others[0]` (thesis §4).
    Add,
    /// The leader is asked to remove `others[0]` (thesis §4).
    Remove,
    /// Clients start sending load.
    LoadStart,
    /// The load stops.
    LoadStop,
    /// The faults end: everything heals and restarts (the simulator's
    /// liveness phase).
    EndFaults,
}

impl Action {
    /// The action's name in the JSON encoding.
    pub fn name(self) -> &'static str {
        match self {
            Action::Crash => "crash",
            Action::Restart => "restart",
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::FastClock => "fast-clock",
            Action::Partition => "partition",
            Action::OneWay => "one-way",
            Action::Bridge => "bridge",
            Action::Heal => "heal",
            Action::Transfer => "transfer",
            Action::Add => "add",
            Action::Remove => "remove",
            Action::LoadStart => "load-start",
            Action::LoadStop => "load-stop",
            Action::EndFaults => "end-faults",
        }
    }
}

/// A fault or an operator's action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intervention {
    /// Who did it.
    pub by: Actor,
    /// What.
    pub action: Action,
    /// The servers it acts on (one side of a partition).
    pub nodes: Box<[NodeId]>,
    /// The other side of a partition, or the server a transfer or
    /// membership change names.
    pub others: Box<[NodeId]>,
    /// A bridge's middle server.
    pub bridge: Option<NodeId>,
    /// How long it lasts, in microseconds (0: until undone).
    pub lasts: u64,
}

impl Intervention {
    /// An action on `nodes` with nothing else to say.
    pub fn on(by: Actor, action: Action, nodes: &[NodeId]) -> Intervention {
        Intervention {
            by,
            action,
            nodes: nodes.into(),
            others: Box::new([]),
            bridge: None,
            lasts: 0,
        }
    }
}

/// Why a message never arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// The network dropped it.
    Dropped,
    /// A partition cut the link while it was in flight.
    Partition,
    /// The receiver was down, or had restarted since it was sent.
    Down,
}

impl Loss {
    /// The reason's name in the JSON encoding.
    pub fn name(self) -> &'static str {
        match self {
            Loss::Dropped => "dropped",
            Loss::Partition => "partition",
            Loss::Down => "down",
        }
    }
}

/// The events a configuration change shows as.
pub fn configuration(index: Index, configuration: &Configuration) -> What {
    What::Configuration {
        index,
        voters: configuration.voters.keys().copied().collect(),
        learners: configuration.learners.keys().copied().collect(),
    }
}

/// Where a runtime puts the events it records.
pub trait Sink {
    /// Whether events are wanted at all (callers skip building them if not).
    fn enabled(&self) -> bool;
    /// Records that `what` happened on server `node` in `term`, now.
    fn record(&mut self, node: NodeId, term: Term, what: What);
}
