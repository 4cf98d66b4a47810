//! The consensus core: Figure 2's state, and the plumbing that turns input into a [`Ready`].
//!
//! [`Raft`] is a deterministic state machine with ten entry points, each a
//! method that changes it:
//!
//! - time: [`Raft::tick`];
//! - peers: [`Raft::handle_request`] (an RPC arrives; the answer is returned,
//!   to be released after the `Ready`'s write) and [`Raft::handle_response`]
//!   (an answer to one of ours);
//! - the service: [`Raft::propose`] (a command, §5.3), [`Raft::read_index`]
//!   (a read, thesis §6.4), [`Raft::snapshot`] (the state machine has been
//!   written up to an index, §7);
//! - the operator: [`Raft::transfer_leadership`] (thesis §3.10) and
//!   [`Raft::change_membership`] (thesis §4);
//! - the runtime's executor: [`Raft::ready`] takes the output accumulated
//!   since the last call, and [`Raft::persisted`] reports that a log write
//!   is durable (which may let a leader commit, thesis §10.2.1).
//!
//! There are no threads, clocks, sockets or files in here, so tests can drive
//! it step by step and assert its exact output.
//!
//! The rules themselves live in the files named after the paper's sections:
//! `election.rs` (§5.2, §5.4.1, pre-vote thesis §9.6), `replication.rs`
//! (§5.3, §5.4.2), `snapshot.rs` (§7), `leadership.rs` (thesis §6.2, §4.2.3,
//! §3.10), `read_index.rs` (thesis §6.4) and `membership.rs` (thesis §4).
//! This file holds the state, the term rule every RPC obeys (§5.1), and role
//! changes shared by all of them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::bugs::Bug;
use super::configuration::Configuration;
use super::leadership::Transfer;
use super::log::RaftLog;
use super::membership::{Change, ChangeStatus};
use super::messages::{EntryKind, Index, NodeId, Request, Response, Term};
use super::progress::Progress;
use super::read_index::ReadQueue;
use super::ready::{ApplyMsg, HardState, LogWrite, Outbound, Ready, Snapshot, SnapshotChunk};
use super::rng::Rng;
use super::snapshot::Incoming;
use super::verdict::Verdict;
use crate::info;

/// Tunables of the core, all counted in ticks of the runtime's clock.
#[derive(Debug, Clone)]
pub struct Config {
    /// This server's id.
    pub id: NodeId,
    /// The voters of a brand-new cluster, this one included: the
    /// configuration in force while the log and snapshot hold none (thesis
    /// §4.1). Empty for a server that waits to be added (it never campaigns
    /// until a configuration makes it a voter).
    pub peers: Vec<NodeId>,
    /// The addresses of `peers`, carried into that bootstrap configuration
    /// (empty in the course tests, which route by id).
    pub addresses: BTreeMap<NodeId, String>,
    /// The election timeout is drawn uniformly from
    /// `election_ticks..2 * election_ticks` each time the timer is reset (§5.2).
    pub election_ticks: u32,
    /// A leader sends heartbeats every this many ticks. Must be well below
    /// `election_ticks` (§5.6: broadcastTime ≪ electionTimeout).
    pub heartbeat_ticks: u32,
    /// Most command bytes carried by one AppendEntries (at least one entry is
    /// always sent).
    pub max_append_bytes: usize,
    /// Bytes of snapshot per InstallSnapshot piece (Figure 13).
    pub snapshot_chunk_bytes: u64,
    /// Flow control: most AppendEntries with entries in flight to a streaming
    /// follower (see `progress`).
    pub max_inflight_messages: usize,
    /// Flow control: most command bytes in flight to a streaming follower.
    pub max_inflight_bytes: usize,
    /// Seed for the election timeout generator.
    pub seed: u64,
    /// Thesis §9.6: ask for pre-votes before starting a real election, so a
    /// server that cannot win (cut off, or behind) never bumps the term.
    pub pre_vote: bool,
    /// Thesis §6.2: a leader that has not heard from a majority within an
    /// election timeout steps down; followers that hear from a live leader
    /// ignore vote requests (stickiness, thesis §4.2.3).
    pub check_quorum: bool,
    /// §8, thesis §6.4: a new leader appends a no-op entry of its term at once,
    /// so it learns which entries are committed and can serve reads. Off by
    /// default (the course tests expect the first command at index 1); the
    /// server turns it on.
    pub noop_on_election: bool,
    /// A rule to break on purpose, for the simulator only (see [`Bug`]).
    pub bug: Option<Bug>,
}

impl Config {
    /// Defaults sized for a 10 ms tick: heartbeats every 100 ms, elections after
    /// 300–600 ms of silence, pre-vote and check-quorum on.
    pub fn new(id: NodeId, peers: Vec<NodeId>) -> Self {
        Self {
            id,
            peers,
            addresses: BTreeMap::new(),
            election_ticks: 30,
            heartbeat_ticks: 10,
            max_append_bytes: 256 * 1024,
            snapshot_chunk_bytes: 1 << 20,
            max_inflight_messages: 64,
            max_inflight_bytes: 8 << 20,
            seed: id,
            pre_vote: true,
            check_quorum: true,
            noop_on_election: false,
            bug: None,
        }
    }
}

/// The three roles of §5.1, and the pre-candidate of thesis §9.6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Passive: answers leaders and candidates.
    Follower,
    /// Asking whether it could win an election, before starting one (§9.6).
    PreCandidate,
    /// Trying to become leader.
    Candidate,
    /// Handles client requests and replicates the log.
    Leader,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Follower => "follower",
            Role::PreCandidate => "pre-candidate",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
        })
    }
}

/// What a server stored before it stopped, read back at start-up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InitialState {
    /// Term and vote.
    pub hard_state: HardState,
    /// The latest snapshot (index 0 if none was ever taken).
    pub snapshot: Snapshot,
    /// Log entries after the snapshot, starting at its last included index + 1.
    pub entries: Vec<super::messages::Entry>,
}

/// A read-only summary of a server's state, for status displays and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// This server.
    pub id: NodeId,
    /// Its current term.
    pub term: Term,
    /// Its role.
    pub role: Role,
    /// The leader it currently follows (itself when leader), if known.
    pub leader_id: Option<NodeId>,
    /// Highest log index known to be committed.
    pub commit_index: Index,
    /// Highest log index handed to the state machine.
    pub last_applied: Index,
    /// Last index covered by the snapshot.
    pub snapshot_index: Index,
    /// Index of the last log entry.
    pub last_log_index: Index,
    /// The server a leadership transfer is handing over to, while one runs.
    pub transferring_to: Option<NodeId>,
    /// The configuration in force: the latest in the log or snapshot (thesis §4.1).
    pub configuration: Configuration,
    /// The index of the entry holding it (0: the bootstrap peers).
    pub configuration_index: Index,
    /// The membership change this server runs as leader, or ran last.
    pub membership_change: Option<ChangeStatus>,
}

/// One Raft server's consensus state (Figure 2), with no I/O of its own.
#[derive(Debug)]
pub struct Raft {
    pub(super) config: Config,
    pub(super) id: NodeId,

    // ---- Persistent state on all servers (Figure 2) ----
    /// Latest term this server has seen (0 on first boot, increases monotonically).
    pub(super) current_term: Term,
    /// Candidate that received this server's vote in `current_term`.
    pub(super) voted_for: Option<NodeId>,
    /// Log entries, after the snapshot prefix.
    pub(super) log: RaftLog,
    /// The latest snapshot, kept to bring lagging followers up to date (§7).
    /// Invariant: `snapshot.last_included_index == log.snapshot_index()`.
    pub(super) snapshot: Snapshot,

    // ---- The configuration (thesis §4.1), derived from the log and snapshot ----
    /// The latest configuration in the log or snapshot, committed or not;
    /// the bootstrap peers if neither holds one.
    pub(super) configuration: Configuration,
    /// The index of the entry holding it (0: the bootstrap peers).
    /// Invariant: `configuration_index <= log.last_index()`.
    pub(super) configuration_index: Index,

    // ---- Volatile state on all servers ----
    /// Highest log index known to be committed.
    /// Invariant: `log.snapshot_index() <= commit_index <= log.last_index()`.
    pub(super) commit_index: Index,
    /// Highest log index handed to the state machine.
    /// Invariant: `last_applied <= commit_index`.
    pub(super) last_applied: Index,
    /// Current role.
    pub(super) role: Role,
    /// The leader of `current_term`, once known.
    pub(super) leader_id: Option<NodeId>,

    // ---- Volatile state on candidates and pre-candidates ----
    /// Servers (self included) that granted their vote in `current_term`, or
    /// their pre-vote for `current_term + 1`.
    pub(super) votes_granted: BTreeSet<NodeId>,

    // ---- Volatile state on leaders (reinitialized after election) ----
    /// `nextIndex[]` and `matchIndex[]` for every other server.
    pub(super) progress: BTreeMap<NodeId, Progress>,
    /// A leadership transfer in progress (thesis §3.10).
    pub(super) transfer: Option<Transfer>,
    /// Reads in flight (thesis §6.4); see `read_index.rs`.
    pub(super) reads: ReadQueue,
    /// The membership change this leader runs, or ran last (thesis §4).
    pub(super) change: Option<Change>,
    /// The number of the last membership change started here.
    pub(super) change_seq: u64,

    // ---- Timers, counted in ticks ----
    /// Ticks since the last heartbeat received or vote granted (followers, candidates).
    pub(super) election_elapsed: u32,
    /// The current randomized election timeout.
    pub(super) election_timeout: u32,
    /// Ticks since the last heartbeat broadcast (leaders).
    pub(super) heartbeat_elapsed: u32,
    /// Ticks since the leader last checked it hears from a quorum (§6.2).
    pub(super) check_quorum_elapsed: u32,
    /// Source of election timeouts.
    pub(super) rng: Rng,

    // ---- Output accumulated until the next `ready()` ----
    /// Requests to send.
    pub(super) messages: Vec<Outbound>,
    /// Term or vote changed.
    pub(super) hard_state_changed: bool,
    /// `snapshot` changed and must be stored.
    pub(super) snapshot_changed: bool,
    /// `configuration` changed and the runtime must learn of it.
    pub(super) configuration_changed: bool,
    /// `snapshot` was installed from a leader and must be handed to the service.
    pub(super) snapshot_to_apply: bool,
    /// Pieces of a leader's snapshot received, to store.
    pub(super) snapshot_chunks: Vec<SnapshotChunk>,
    /// The leader's snapshot being received, if any (volatile: a restart
    /// starts the transfer over).
    pub(super) incoming: Option<Incoming>,
    /// Lowest log index written or truncated since the last `ready()`.
    pub(super) unstable_from: Option<Index>,
    /// The leader appended entries that streaming followers have not been sent.
    pub(super) replicate_pending: bool,
    /// The highest log index the runtime reported durable on this server's
    /// own disk ([`Raft::persisted`]).
    /// Invariant: `persisted_index <= log.last_index()`.
    pub(super) persisted_index: Index,

    // ---- Diagnostics, read by nothing in the core ----
    /// The rule that decided the answer to the last request handled.
    pub(super) verdict: Verdict,
}

impl Raft {
    /// A server starting from what it stored before (or from nothing), as a follower.
    pub fn new(config: Config, initial: InitialState) -> Self {
        let snapshot = initial.snapshot;
        let log = RaftLog::new(
            snapshot.last_included_index,
            snapshot.last_included_term,
            initial.entries,
        );
        let mut raft = Raft {
            id: config.id,
            rng: Rng::new(config.seed),
            config,
            current_term: initial.hard_state.current_term,
            voted_for: initial.hard_state.voted_for,
            log,
            commit_index: snapshot.last_included_index,
            last_applied: snapshot.last_included_index,
            snapshot_to_apply: snapshot.last_included_index > 0,
            snapshot_chunks: Vec::new(),
            incoming: None,
            snapshot,
            configuration: Configuration::default(),
            configuration_index: 0,
            role: Role::Follower,
            leader_id: None,
            votes_granted: BTreeSet::new(),
            progress: BTreeMap::new(),
            transfer: None,
            reads: ReadQueue::default(),
            change: None,
            change_seq: 0,
            election_elapsed: 0,
            election_timeout: 0,
            heartbeat_elapsed: 0,
            check_quorum_elapsed: 0,
            messages: Vec::new(),
            hard_state_changed: false,
            snapshot_changed: false,
            configuration_changed: false,
            unstable_from: None,
            replicate_pending: false,
            persisted_index: 0,
            verdict: Verdict::Unknown,
        };
        // What storage returned is on disk.
        raft.persisted_index = raft.log.last_index();
        raft.reload_configuration();
        // The runtime learns the configuration from the first Ready.
        raft.configuration_changed = true;
        if raft.configuration_index > 0 && !raft.config.peers.is_empty() {
            info!(
                raft.id,
                raft.current_term,
                "the stored log holds the configuration at {}: ignoring the bootstrap peers (-peers)",
                raft.configuration_index
            );
        }
        raft.reset_election_timer();
        raft
    }

    /// Advances time by one tick: followers and candidates count towards an
    /// election, leaders towards the next heartbeat.
    pub fn tick(&mut self) {
        match self.role {
            Role::Leader => {
                self.tick_heartbeat();
                self.tick_check_quorum();
                self.tick_transfer();
                self.tick_membership();
            }
            Role::Follower | Role::PreCandidate | Role::Candidate => self.tick_election(),
        }
    }

    /// Handles one RPC from a peer and returns the reply. The reply may be sent
    /// only after the next [`Ready`]'s `persist` is durable.
    pub fn handle_request(&mut self, from: NodeId, request: Request) -> Response {
        if let Request::RequestVote(args) = &request {
            // Neither a vote request ignored for stickiness nor a pre-vote
            // changes this server's term (thesis §4.2.3, §9.6).
            if self.ignores_vote_request(args) || args.pre_vote {
                return Response::RequestVote(self.handle_pre_vote_or_ignore(args));
            }
        }
        self.observe_term(request.term());
        match request {
            Request::RequestVote(args) => Response::RequestVote(self.handle_request_vote(args)),
            Request::AppendEntries(args) => {
                Response::AppendEntries(self.handle_append_entries(from, args))
            }
            Request::InstallSnapshot(args) => {
                Response::InstallSnapshot(self.handle_install_snapshot(args))
            }
            Request::TimeoutNow(args) => Response::TimeoutNow(self.handle_timeout_now(args)),
        }
    }

    /// Handles the reply to a request this server sent earlier.
    pub fn handle_response(&mut self, from: NodeId, request: &Request, response: Response) {
        if let (Request::RequestVote(args), Response::RequestVote(reply)) = (request, &response) {
            if args.pre_vote {
                // A granted pre-vote carries the term proposed, not a newer
                // term to adopt (§9.6); a refusal may carry one.
                if !reply.vote_granted {
                    self.observe_term(reply.term);
                }
                self.handle_pre_vote_reply(from, args, reply);
                return;
            }
        }
        self.observe_term(response.term());
        if request.term() != self.current_term {
            // Sent in an earlier term: whatever it answers no longer matters.
            return;
        }
        if self.role == Role::Leader {
            // §6.2: any reply in this term shows the follower is alive and ours.
            if let Some(progress) = self.progress.get_mut(&from) {
                progress.recent_active = true;
            }
        }
        match (request, response) {
            (Request::RequestVote(_), Response::RequestVote(reply)) => {
                self.handle_request_vote_reply(from, reply)
            }
            (Request::AppendEntries(args), Response::AppendEntries(reply)) => {
                self.handle_append_entries_reply(from, args, reply)
            }
            (Request::InstallSnapshot(args), Response::InstallSnapshot(reply)) => {
                self.handle_install_snapshot_reply(from, args, reply)
            }
            (Request::TimeoutNow(_), Response::TimeoutNow(_)) => {}
            _ => crate::debug!(
                self.id,
                self.current_term,
                "ignored a reply from {from} of the wrong kind"
            ),
        }
        if self.role == Role::Leader {
            self.observe_catch_up(from);
            self.maybe_release_removed();
        }
    }

    /// Takes everything the core wants done since the last call: persist, then
    /// send, then apply (see [`Ready`]).
    pub fn ready(&mut self) -> Ready {
        if std::mem::take(&mut self.replicate_pending) {
            self.broadcast_new_entries();
        }
        self.maybe_start_read_round();
        let mut ready = Ready::default();
        if std::mem::take(&mut self.hard_state_changed) {
            let mut hard_state = self.hard_state();
            if self.has_bug(Bug::UnpersistedVote) {
                hard_state.voted_for = None;
            }
            ready.persist.hard_state = Some(hard_state);
        }
        ready.persist.snapshot_chunks = std::mem::take(&mut self.snapshot_chunks);
        if std::mem::take(&mut self.snapshot_changed) {
            ready.persist.snapshot = Some(self.snapshot.clone());
        }
        if let Some(first_index) = self.unstable_from.take() {
            ready.persist.log = Some(LogWrite {
                first_index,
                entries: self.log.entries_from(first_index, usize::MAX),
            });
        }
        if std::mem::take(&mut self.configuration_changed) {
            ready.configuration = Some(self.configuration.clone());
        }
        ready.messages = std::mem::take(&mut self.messages);
        // Thesis §10.2.1: a leader's AppendEntries may leave before its own
        // write completes (it counts itself only once `persisted` says so).
        // Anything that follows a change of term or vote must wait for it.
        ready.send_first = self.role == Role::Leader && ready.persist.hard_state.is_none();
        if std::mem::take(&mut self.snapshot_to_apply) {
            ready.apply.push(ApplyMsg::Snapshot(self.snapshot.clone()));
        }
        // Figure 2: if commitIndex > lastApplied, apply log[lastApplied + 1] (in order).
        while self.last_applied < self.commit_index {
            let index = self.last_applied + 1;
            let Some(entry) = self.log.entry(index) else {
                break;
            };
            let term = entry.term;
            ready.apply.push(match entry.kind {
                EntryKind::Command => ApplyMsg::Command {
                    index,
                    term,
                    command: entry.command.clone(),
                },
                EntryKind::Noop | EntryKind::Config => ApplyMsg::Internal { index, term },
            });
            self.last_applied = index;
        }
        // Thesis §6.4: confirmed reads go after the entries their read index
        // covers, so the state machine answers them in order; failed ones too.
        for (id, index) in self.reads.confirmed.drain(..) {
            ready.apply.push(ApplyMsg::Read { id, index });
        }
        for id in self.reads.failed.drain(..) {
            ready.apply.push(ApplyMsg::ReadFailed { id });
        }
        ready
    }

    /// The log (for status displays, tests and the simulator's checks).
    pub fn log(&self) -> &RaftLog {
        &self.log
    }

    /// The cluster configuration in force (thesis §4.1) and the index of the
    /// entry holding it.
    pub fn configuration(&self) -> (&Configuration, Index) {
        (&self.configuration, self.configuration_index)
    }

    /// Volatile state on leaders (Figure 2): `nextIndex[]` and `matchIndex[]`
    /// for every other server; empty unless this server leads. Read-only, for
    /// status displays and the simulator's checks.
    pub fn progress(&self) -> &BTreeMap<NodeId, Progress> {
        &self.progress
    }

    /// The tunables this server runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The current term and vote.
    pub fn hard_state(&self) -> HardState {
        HardState {
            current_term: self.current_term,
            voted_for: self.voted_for,
        }
    }

    /// The current role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The leader this server follows (itself when leading), if known.
    pub fn leader_id(&self) -> Option<NodeId> {
        self.leader_id
    }

    /// The highest log index known to be committed.
    pub fn commit_index(&self) -> Index {
        self.commit_index
    }

    /// The highest log index handed to the state machine.
    pub fn last_applied(&self) -> Index {
        self.last_applied
    }

    /// The latest snapshot (index 0 if none).
    pub fn current_snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// Why the last request [`Raft::handle_request`] handled was answered as
    /// it was (for event streams and captions; see `verdict.rs`).
    pub fn last_verdict(&self) -> Verdict {
        self.verdict
    }

    /// The election timer (§5.2): ticks since it was last reset, and the
    /// randomized timeout it runs to (for displays; leaders do not use it).
    pub fn election_timer(&self) -> (u32, u32) {
        (self.election_elapsed, self.election_timeout)
    }

    /// A summary of this server's state.
    pub fn status(&self) -> Status {
        Status {
            id: self.id,
            term: self.current_term,
            role: self.role,
            leader_id: self.leader_id,
            commit_index: self.commit_index,
            last_applied: self.last_applied,
            snapshot_index: self.log.snapshot_index(),
            last_log_index: self.log.last_index(),
            transferring_to: self.transfer.as_ref().map(|t| t.target),
            configuration: self.configuration.clone(),
            configuration_index: self.configuration_index,
            membership_change: self.change.as_ref().map(|c| c.status.clone()),
        }
    }

    /// §5.1: "If RPC request or response contains term T > currentTerm: set
    /// currentTerm = T, convert to follower." Every RPC passes through here first.
    /// Figure 2: currentTerm is persistent, so the new term is saved before
    /// this server answers anyone.
    fn observe_term(&mut self, term: Term) {
        if term > self.current_term {
            if self.role == Role::Leader {
                info!(self.id, self.current_term, "stepped down: saw term {term}");
            }
            let saving = self.hard_state_changed;
            self.become_follower(term, None);
            if self.has_bug(Bug::UnpersistedTerm) {
                self.hard_state_changed = saving;
            }
        }
    }

    /// Becomes a follower in `term` (which must not be older than the current
    /// term), following `leader` if known.
    pub(super) fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        debug_assert!(term >= self.current_term);
        if term > self.current_term {
            self.current_term = term;
            self.voted_for = None;
            self.hard_state_changed = true;
        }
        let previous = self.role;
        self.role = Role::Follower;
        if previous == Role::Leader {
            self.fail_reads();
            self.abandon_change();
        }
        if previous != Role::Follower {
            self.progress.clear();
            self.votes_granted.clear();
            self.transfer = None;
            self.reset_election_timer();
        }
        if leader.is_some() && self.leader_id != leader {
            if let Some(l) = leader {
                info!(self.id, term, "following leader {l}");
            }
        }
        self.leader_id = leader;
    }

    /// Restarts the election countdown with a fresh random timeout (§5.2).
    pub(super) fn reset_election_timer(&mut self) {
        self.election_elapsed = 0;
        let min = u64::from(self.config.election_ticks);
        self.election_timeout = self.rng.range(min, 2 * min) as u32;
    }

    /// Whether the votes granted so far are a majority of the voters (§5.2;
    /// thesis §4.1: of the latest configuration's voters).
    pub(super) fn has_vote_quorum(&self) -> bool {
        self.configuration
            .has_quorum(|id| self.votes_granted.contains(&id))
    }

    /// Whether the simulator switched this rule off (see [`Bug`]).
    pub(super) fn has_bug(&self, bug: Bug) -> bool {
        self.config.bug == Some(bug)
    }

    /// Queues a request for a peer.
    pub(super) fn send(&mut self, to: NodeId, request: Request) {
        self.messages.push(Outbound { to, request });
    }

    /// Drops every log entry at `index` or later (a follower resolving a
    /// conflict, §5.3): they must go from disk too, and no longer count as
    /// durable.
    pub(super) fn truncate_log_from(&mut self, index: Index) {
        self.log.truncate_from(index);
        self.mark_unstable(index);
        self.persisted_index = self.persisted_index.min(index - 1);
        if index <= self.configuration_index {
            // Thesis §4.1: the configuration entry is gone; the previous
            // configuration is in force again.
            self.reload_configuration();
        }
    }

    /// The runtime made this server's log durable through `index`, whose entry
    /// has `term` (the last entry of a [`Ready`]'s log write). Thesis §10.2.1: a
    /// leader may send AppendEntries before its own write completes, and counts
    /// itself toward a majority only from here on. Reports about entries since
    /// replaced are ignored.
    pub fn persisted(&mut self, index: Index, term: Term) {
        if index <= self.persisted_index || self.log.term(index) != Some(term) {
            return;
        }
        self.persisted_index = index;
        if self.role == Role::Leader {
            self.maybe_commit();
        }
    }

    /// Records that the stored log must be rewritten from `index` on.
    pub(super) fn mark_unstable(&mut self, index: Index) {
        self.unstable_from = Some(self.unstable_from.map_or(index, |u| u.min(index)));
    }
}
