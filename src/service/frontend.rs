//! The client-facing side of a server: answers one request line at a time.
//!
//! Shared by the TCP server and the simulated-network test harness, so both run
//! exactly the same request handling. A line is an optional `CLIENT <id> <seq> `
//! session prefix, then a command (see [`super::command`]). Lines a follower
//! forwards to the leader arrive through [`Frontend::answer_forwarded`] (on an
//! authenticated peer link, never from a client) and are not forwarded again.
//!
//! It also counts the requests it answers by command and result, for
//! `/metrics`; a forwarded request is counted by the server the client talked to.
//!
//! A serializable read (`GET k serializable`, `RANGE ... serializable`) is
//! answered here from this server's state machine as it is, leader or not,
//! without forwarding and without ReadIndex: possibly stale, and its reply
//! says which store revision it reflects.
//!
//! Membership (thesis §4): `MEMBERS` answers with this server's view of the
//! configuration; `ADD` and `REMOVE` run on the leader (a follower forwards
//! them), which starts the change and waits for its outcome: `OK` once the new
//! configuration is committed, else an `ERR` saying why.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::command::{self, Command, Local, HELP};
use super::lease::LeaseCommand;
use super::quota::DEFAULT_QUOTA_BYTES;
use super::replica::{ExecError, Replica};
use super::reply::{Code, Reply};
use super::state_machine::Op;
use super::txn::TxnOp;
use crate::events::ring::{now_micros, EventRing};
use crate::events::What;
use crate::metrics::CounterVec;
use crate::raft::configuration::member_list;
use crate::raft::membership::MAX_CATCH_UP_ROUNDS;
use crate::raft::{
    AbortReason, ChangeStage, MembershipChange, MembershipError, Role, Status, TransferError,
};
use crate::storage::space::DiskSpace;
use crate::transport::tcp::is_loopback;

/// How long `ADD` and `REMOVE` wait for their outcome: catching a learner up
/// can take many rounds.
pub const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(30);

/// Answers client lines for one server.
pub struct Frontend {
    replica: Replica,
    request_timeout: Duration,
    /// Only loopback addresses may join (a server without a cluster key).
    loopback_only: bool,
    /// Requests answered, by command word and result code.
    requests: CounterVec,
    /// The space quota this server asks for (`-quota-bytes`).
    quota: u64,
    /// The data directory's free space, for the free-space guard (none in
    /// tests without a disk).
    disk: Option<Arc<DiskSpace>>,
    /// Client requests recorded as events so far (numbers them).
    recorded: AtomicU64,
}

impl Frontend {
    /// A frontend for `replica`; requests wait at most `request_timeout` for
    /// their outcome (membership changes, [`MEMBERSHIP_TIMEOUT`]).
    pub fn new(replica: Replica, request_timeout: Duration) -> Self {
        Self {
            replica,
            request_timeout,
            loopback_only: false,
            requests: CounterVec::default(),
            quota: DEFAULT_QUOTA_BYTES,
            disk: None,
            recorded: AtomicU64::new(0),
        }
    }

    /// Guards writes with `disk`'s free space: while it is low, writes that
    /// grow the state get `ERR NOSPACE_DISK` (see `storage::space`).
    pub fn set_disk_space(&mut self, disk: Arc<DiskSpace>) {
        self.disk = Some(disk);
    }

    /// The data directory's free space, if this server has a disk.
    pub fn disk_space(&self) -> Option<&DiskSpace> {
        self.disk.as_deref()
    }

    /// `failed` once storage has failed (the node has stopped for good),
    /// `low` while the free-space guard refuses writes, else `ok`.
    pub fn storage_state(&self) -> &'static str {
        if self.replica.node().failure().is_some() {
            "failed"
        } else if self.disk.as_ref().is_some_and(|d| d.is_low()) {
            "low"
        } else {
            "ok"
        }
    }

    /// Requests answered so far, by command word (`put`, `ping`, ...,
    /// `invalid`) and result (`OK`, `NOT_FOUND`, or the error code).
    pub fn requests(&self) -> &CounterVec {
        &self.requests
    }

    /// Sets the space quota this server asks for: as leader, it replicates
    /// this value (a `SetQuota` entry) before its next command whenever the
    /// quota in force differs.
    pub fn set_quota(&mut self, bytes: u64) {
        self.quota = bytes;
    }

    /// Refuses `ADD` of a non-loopback address: without a cluster key, peer
    /// messages prove nothing, so the cluster must stay on this machine.
    pub fn set_loopback_only(&mut self, loopback_only: bool) {
        self.loopback_only = loopback_only;
    }

    /// How long the server executing `line` may take to answer it (a
    /// follower forwarding it waits that long for the leader).
    pub fn reply_timeout(&self, line: &str) -> Duration {
        let command_line = strip_word(line, "CLIENT")
            .and_then(parse_session)
            .map_or(line, |(_, _, rest)| rest);
        match command::parse(command_line) {
            Ok(command::Request::Local(Local::Add(..) | Local::Remove(_))) => MEMBERSHIP_TIMEOUT,
            _ => self.request_timeout,
        }
    }

    /// The replica behind this frontend.
    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    /// Answers one request line; the flag says whether to close the connection.
    /// `forward` relays a command this server cannot execute (not the leader)
    /// and returns the leader's reply.
    pub fn answer(&self, line: &str, forward: &dyn Fn(&str) -> Reply) -> (Reply, bool) {
        let ring = self.replica.node().events();
        let arrived = ring.map(|_| now_micros());
        let (reply, close, word) = self.respond(line, Some(forward));
        self.requests.inc(&[word, reply.label()]);
        if let (Some(ring), Some(arrived)) = (ring, arrived) {
            self.record_request(ring, arrived, word, &reply);
        }
        (reply, close)
    }

    /// Records a client's request and its reply (not questions about the
    /// server itself: `PING`, `STATUS`, ...), in one visit to the ring.
    fn record_request(&self, ring: &EventRing, arrived: u64, word: &'static str, reply: &Reply) {
        if matches!(word, "ping" | "help" | "quit" | "status" | "members") {
            return;
        }
        let request = self.recorded.fetch_add(1, Ordering::Relaxed) + 1;
        let asked = What::ClientRequest {
            client: 0,
            request,
            op: word,
            text: None,
        };
        let answered = What::ClientReply {
            client: 0,
            request,
            result: reply.label(),
            index: None,
            text: None,
        };
        ring.extend_in_latest_term([(arrived, asked), (now_micros(), answered)]);
    }

    /// Answers a line a follower forwarded; it is never forwarded again, so a
    /// stale leader hint costs one `ERR NO_LEADER`, never a loop. Only call this
    /// for lines from an authenticated peer. Not counted: the server the client
    /// talked to counts it.
    pub fn answer_forwarded(&self, line: &str) -> Reply {
        self.respond(line, None).0
    }

    /// Answers a line, forwarding it if this server is not the leader and
    /// `forward` is given; also names the command, for the request counters.
    fn respond(
        &self,
        line: &str,
        forward: Option<&dyn Fn(&str) -> Reply>,
    ) -> (Reply, bool, &'static str) {
        let (client_id, seq, command_line) = match strip_word(line, "CLIENT") {
            Some(rest) => match parse_session(rest) {
                Some(parsed) => parsed,
                None => {
                    let e = Reply::error(Code::BadRequest, "usage: CLIENT <id> <seq> <command>");
                    return (e, false, "invalid");
                }
            },
            None => (0, 0, line),
        };
        match command::parse(command_line) {
            Err(e) => (e.into(), false, "invalid"),
            Ok(command::Request::Local(Local::Ping)) => (Reply::Pong, false, "ping"),
            Ok(command::Request::Local(Local::Help)) => (Reply::Text(HELP.into()), false, "help"),
            Ok(command::Request::Local(Local::Quit)) => (Reply::Bye, true, "quit"),
            Ok(command::Request::Local(Local::Status)) => {
                (Reply::Text(self.status_line()), false, "status")
            }
            Ok(command::Request::Local(Local::Leader(target))) => {
                let reply = match (self.transfer_leadership(target), forward) {
                    (Some(reply), _) => reply,
                    (None, Some(forward)) => forward(line),
                    (None, None) => Reply::not_leader(),
                };
                (reply, false, "leader")
            }
            Ok(command::Request::Local(Local::Members)) => {
                (Reply::Text(self.members_line()), false, "members")
            }
            Ok(command::Request::Local(Local::Add(id, address))) => {
                if self.loopback_only && !is_loopback(&address) {
                    let e = Reply::error(
                        Code::BadRequest,
                        format!(
                            "{address} is not a loopback address, and without a cluster key \
                             only loopback servers may join"
                        ),
                    );
                    return (e, false, "add");
                }
                let change = MembershipChange::Add { id, address };
                (self.change_or_forward(change, line, forward), false, "add")
            }
            Ok(command::Request::Local(Local::Remove(id))) => {
                let change = MembershipChange::Remove { id };
                (
                    self.change_or_forward(change, line, forward),
                    false,
                    "remove",
                )
            }
            Ok(command::Request::Command(command)) => {
                let word = command::word(&command);
                if let Some(refusal) = self.storage_refusal(&command) {
                    return (refusal, false, word);
                }
                if command.is_serializable() {
                    return (self.replica.read_local(&command), false, word);
                }
                self.maybe_replicate_quota();
                let op = Op {
                    client_id,
                    seq,
                    command,
                };
                let ttl_of = match op.command {
                    Command::Lease(LeaseCommand::Ttl(id)) => Some(id),
                    _ => None,
                };
                let reply = match (self.replica.execute(&op, self.request_timeout), forward) {
                    (Ok(reply), _) => self.with_remaining(reply, ttl_of),
                    (Err(ExecError::NotLeader), Some(forward)) => forward(line),
                    (Err(e), _) => e.reply(),
                };
                (reply, false, word)
            }
        }
    }

    /// `LEASE TTL`'s reply with the time left by this leader's lease clock
    /// (the state machine knows only the TTL), in whole seconds rounded up,
    /// and never more than the TTL (a new leader's grace is not promised).
    fn with_remaining(&self, reply: Reply, ttl_of: Option<u64>) -> Reply {
        match (
            reply,
            ttl_of.and_then(|id| self.replica.lease_remaining(id)),
        ) {
            (Reply::Lease(mut info), Some(left)) => {
                let seconds = left.as_millis().div_ceil(1000) as u64;
                info.remaining = seconds.min(info.ttl) as i64;
                Reply::Lease(info)
            }
            (reply, _) => reply,
        }
    }

    /// Why this server cannot take `command` on account of its disk: storage
    /// failed (the node has stopped), or free space is low and the command
    /// would grow the state. Reads and `DEL` pass while space is low, as
    /// under etcd's NOSPACE alarm: they are how an operator makes room.
    fn storage_refusal(&self, command: &Command) -> Option<Reply> {
        let node = self.replica.node();
        if let Some(failure) = node.failure() {
            return Some(Reply::error(
                Code::Storage,
                format!("node {} has stopped: {}", node.id(), failure.message),
            ));
        }
        let disk = self.disk.as_ref().filter(|d| d.is_low())?;
        if !grows_state(command) {
            return None;
        }
        Some(Reply::error(
            Code::NoSpaceDisk,
            format!(
                "node {}'s disk has {} bytes free in {}, below the {} it keeps for \
                 compaction (-min-free-bytes plus room for a snapshot); reads, DEL and \
                 compaction still work, and writes resume once space is freed",
                node.id(),
                disk.free_bytes().unwrap_or(0),
                disk.dir().display(),
                disk.threshold()
            ),
        ))
    }

    /// As leader, proposes this server's quota if the one in force differs.
    /// Does nothing elsewhere: the leader decides. The outcome is not awaited
    /// beyond the request timeout; a failure just means the next command tries
    /// again.
    fn maybe_replicate_quota(&self) {
        if self.replica.quota_in_force() == self.quota
            || self.replica.node().status().role != Role::Leader
        {
            return;
        }
        let op = Op {
            client_id: 0,
            seq: 0,
            command: Command::SetQuota(self.quota),
        };
        let _ = self.replica.execute(&op, self.request_timeout);
    }

    /// `LEADER <target>` on this server: hands leadership over (thesis §3.10)
    /// and waits until `target` leads, the transfer aborts, or the request
    /// times out. `None` if this server is not the leader (forward it).
    fn transfer_leadership(&self, target: u64) -> Option<Reply> {
        let node = self.replica.node();
        match node.transfer_leadership(target) {
            Ok(()) => {}
            Err(TransferError::NotLeader) => return None,
            Err(TransferError::ToSelf) => return Some(Reply::Ok),
            Err(TransferError::UnknownServer(id)) => {
                return Some(Reply::error(
                    Code::BadRequest,
                    format!("no voter with id {id}"),
                ))
            }
        }
        let decided = |s: &Status| {
            // The target leads (we follow it), another server won, or we are
            // still leader with no transfer running: it was aborted.
            s.leader_id.is_some_and(|l| l != node.id())
                || (s.role == Role::Leader && s.transferring_to != Some(target))
        };
        // The node applies the transfer before its next status update: wait
        // for that update, then for the outcome.
        let started = node.wait_for_status(self.request_timeout, |s| {
            s.transferring_to == Some(target) || s.role != Role::Leader
        });
        let outcome = started.and_then(|_| node.wait_for_status(self.request_timeout, decided));
        Some(match outcome {
            Some(s) if s.leader_id == Some(target) => Reply::Ok,
            Some(s) if s.role == Role::Leader => Reply::error(
                Code::Timeout,
                format!(
                    "leadership transfer to {target} aborted: it did not take over within an \
                     election timeout"
                ),
            ),
            Some(s) => Reply::error(
                Code::NoLeader,
                format!(
                    "server {} won the election instead of {target}; retry",
                    s.leader_id.unwrap_or(0)
                ),
            ),
            None => Reply::error(
                Code::Timeout,
                format!("no outcome of the transfer to {target} yet"),
            ),
        })
    }

    /// Runs `change` if this server leads, else forwards `line` (or says
    /// there is no leader, for a line that was forwarded already).
    fn change_or_forward(
        &self,
        change: MembershipChange,
        line: &str,
        forward: Option<&dyn Fn(&str) -> Reply>,
    ) -> Reply {
        match (self.change_membership(change), forward) {
            (Some(reply), _) => reply,
            (None, Some(forward)) => forward(line),
            (None, None) => Reply::not_leader(),
        }
    }

    /// `ADD` or `REMOVE` on this server (thesis §4): starts the change and
    /// waits until it is committed or called off. `None` if this server is
    /// not the leader (forward it).
    fn change_membership(&self, change: MembershipChange) -> Option<Reply> {
        let node = self.replica.node();
        let seq = match node.change_membership(change.clone()) {
            Ok(seq) => seq,
            Err(MembershipError::NotLeader) => return None,
            Err(e) => return Some(refusal(e)),
        };
        // Ours has ended, or a later change began (so ours ended).
        let ended = |s: &Status| {
            s.membership_change
                .as_ref()
                .is_some_and(|c| c.seq > seq || (c.seq == seq && c.is_finished()))
        };
        let Some(status) = node.wait_for_status(MEMBERSHIP_TIMEOUT, ended) else {
            return Some(Reply::error(
                Code::Timeout,
                format!("the change ({change}) is still in progress; see MEMBERS"),
            ));
        };
        let stage = match status.membership_change {
            Some(c) if c.seq == seq => c.stage,
            // Overtaken: judge by the configuration it left.
            _ => {
                let done = match &change {
                    MembershipChange::Add { id, .. } => status.configuration.is_voter(*id),
                    MembershipChange::Remove { id } => !status.configuration.is_member(*id),
                };
                if done {
                    ChangeStage::Done
                } else {
                    ChangeStage::Aborted(AbortReason::LeadershipLost)
                }
            }
        };
        let id = change.server();
        Some(match stage {
            ChangeStage::Done => Reply::Ok,
            ChangeStage::Aborted(AbortReason::Unreachable) => Reply::error(
                Code::Unreachable,
                format!("server {id} did not answer; the configuration is unchanged"),
            ),
            ChangeStage::Aborted(AbortReason::TooSlow) => Reply::error(
                Code::CatchUp,
                format!(
                    "server {id} could not catch up in {MAX_CATCH_UP_ROUNDS} rounds; the \
                     configuration is unchanged"
                ),
            ),
            ChangeStage::Aborted(AbortReason::LeadershipLost)
            | ChangeStage::CatchingUp { .. }
            | ChangeStage::Committing => Reply::error(
                Code::NoLeader,
                format!("leadership changed during the change ({change}); retry"),
            ),
        })
    }

    /// The `MEMBERS` reply: this server's configuration (thesis §4), the
    /// index of the entry holding it, and the leader it knows.
    pub fn members_line(&self) -> String {
        let s = self.replica.node().status();
        format!(
            "MEMBERS index={} leader={} voters={} learners={}",
            s.configuration_index,
            s.leader_id.unwrap_or(0),
            member_list(&s.configuration.voters),
            member_list(&s.configuration.learners)
        )
    }

    /// The `STATUS` reply (`role=stopped` once storage has failed).
    pub fn status_line(&self) -> String {
        let s = self.replica.node().status();
        let storage = self.storage_state();
        let role = if storage == "failed" {
            "stopped".to_string()
        } else {
            s.role.to_string()
        };
        format!(
            "STATUS id={} role={} term={} leader={} commit={} applied={} snapshot={} last_log={} peers={} storage={storage}",
            s.id,
            role,
            s.term,
            s.leader_id.unwrap_or(0),
            s.commit_index,
            s.last_applied,
            s.snapshot_index,
            s.last_log_index,
            s.configuration.voters.len()
        )
    }
}

/// The `ERR` reply for a membership change the leader refused.
fn refusal(e: MembershipError) -> Reply {
    match e {
        MembershipError::NotLeader => Reply::not_leader(),
        MembershipError::Transferring(to) => ExecError::Transferring(to).reply(),
        MembershipError::ChangeInProgress => {
            Reply::error(Code::ChangeInProgress, format!("{e}; retry"))
        }
        MembershipError::NotReady => {
            Reply::error(Code::ChangeInProgress, format!("{e}; retry shortly"))
        }
        MembershipError::IdInUse(_) => Reply::error(Code::IdInUse, e.to_string()),
        MembershipError::NotMember(_) => Reply::error(Code::NotMember, e.to_string()),
        MembershipError::LastVoter => Reply::error(Code::BadRequest, e.to_string()),
    }
}

/// Whether `command` may grow the state: every write but `DEL` (and a `TXN`
/// that only deletes and reads) and `REGISTER` (a session's bounded
/// bookkeeping), which stay open while the disk is low.
fn grows_state(command: &Command) -> bool {
    match command {
        Command::Put(..)
        | Command::Append(..)
        | Command::Open(..)
        | Command::Transfer(_)
        | Command::Lease(LeaseCommand::Grant(_)) => true,
        Command::Leased(_, inner) => grows_state(inner),
        Command::Lease(_) => false,
        Command::Txn(txn) => txn
            .then
            .iter()
            .chain(&txn.otherwise)
            .any(|op| matches!(op, TxnOp::Put(..))),
        Command::Del(_)
        | Command::Get(_)
        | Command::Range(_)
        | Command::Balance(_)
        | Command::Audit
        | Command::Register
        | Command::SetQuota(_) => false,
    }
}

/// If `line` starts with `word` (any case) and a space, the rest.
fn strip_word<'a>(line: &'a str, word: &str) -> Option<&'a str> {
    let (first, rest) = line.split_once(' ')?;
    first.eq_ignore_ascii_case(word).then_some(rest)
}

/// `<id> <seq> <command>` → the parts; ids and sequence numbers are nonzero.
fn parse_session(rest: &str) -> Option<(u64, u64, &str)> {
    let mut parts = rest.splitn(3, ' ');
    let id: u64 = parts.next()?.parse().ok().filter(|&v| v != 0)?;
    let seq: u64 = parts.next()?.parse().ok().filter(|&v| v != 0)?;
    Some((id, seq, parts.next()?))
}
