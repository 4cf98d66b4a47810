//! The replicated state machine: KV store, ledger, client sessions and quota.
//!
//! Every server applies the same [`Op`]s in log order and so reaches the same
//! state and the same replies. `apply` is deterministic: no clocks, no
//! randomness, no I/O. Everything that bounds the state is deterministic too:
//! the session table's size ([`super::session`]), the txid retention window
//! ([`super::ledger`]) and the space quota ([`super::quota`]).

use std::io::{self, Read, Write};

use std::sync::Arc;

use super::command::Command;
use super::kv::{Change, Kv};
use super::lease::{self, LeaseCommand, Leases};
use super::ledger::Ledger;
use super::quota::{account_cost, nospace};
use super::range::{range, Budget};
use super::reply::{Code, Reply};
use super::session::{Sessions, Verdict};
use super::snapshot_stream::{corrupt, SnapshotReader, SnapshotWriter};
use super::txn::Txn;
use crate::codec::{Decode, DecodeError, Decoder, Encode, Encoder};

pub use super::quota::DEFAULT_QUOTA_BYTES;

/// Version byte of the snapshot encoding. Version 5 added leases (after
/// the sessions); version 4 snapshots are read with none. Version 4 added the store's
/// revisions and keeps replies in their binary encoding. Version 3 (replies
/// as their text lines, no revisions) and version 2 (the same without the
/// CRC-32 trailer) are still read; version 1 snapshots are refused.
const SNAPSHOT_VERSION: u8 = 5;
/// The last version without leases.
const SNAPSHOT_VERSION_NO_LEASES: u8 = 4;
/// The last version without revisions.
const SNAPSHOT_VERSION_TEXT: u8 = 3;
/// The last version without a checksum.
const SNAPSHOT_VERSION_UNCHECKED: u8 = 2;

/// One log entry's payload: a command and who sent it.
///
/// A client without a session (plain `nc`) sends `client_id` 0 and `seq` 0:
/// its commands run each time they are applied. A client with a session first
/// applies `Op { client_id: 0, seq: 0, command: Command::Register }`, whose
/// reply is `SESSION <id>`, then numbers its commands 1, 2, 3, ... in that
/// session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    /// The client's session id; 0 for requests without a session.
    pub client_id: u64,
    /// The client's request number within its session.
    pub seq: u64,
    /// What to do.
    pub command: Command,
}

impl Encode for Op {
    fn encode_to(&self, e: &mut Encoder) {
        e.put_uvarint(self.client_id);
        e.put_uvarint(self.seq);
        self.command.encode_to(e);
    }
}

impl Decode for Op {
    fn decode_from(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Op {
            client_id: d.get_uvarint()?,
            seq: d.get_uvarint()?,
            command: Command::decode_from(d)?,
        })
    }
}

/// Sizes of a [`StateMachine`]'s parts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Keys in the KV store.
    pub keys: usize,
    /// Bytes of keys plus values.
    pub kv_bytes: usize,
    /// Ledger accounts.
    pub accounts: usize,
    /// Money in all accounts, in cents.
    pub total_cents: i128,
    /// Transfers remembered (one per txid).
    pub transfers: usize,
}

/// The service's whole replicated state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateMachine {
    kv: Kv,
    ledger: Ledger,
    sessions: Sessions,
    leases: Leases,
    /// The space quota in force, in bytes.
    quota: u64,
}

impl Default for StateMachine {
    fn default() -> Self {
        StateMachine {
            kv: Kv::default(),
            ledger: Ledger::default(),
            sessions: Sessions::default(),
            leases: Leases::default(),
            quota: DEFAULT_QUOTA_BYTES,
        }
    }
}

impl StateMachine {
    /// Applies one operation and returns its reply.
    pub fn apply(&mut self, op: &Op) -> Reply {
        self.apply_recording(op.clone(), &mut Vec::new())
    }

    /// Applies one operation, taking it (a value moves into the store, not
    /// copied), and adds every key it changed to `changes`, with its
    /// revision: what a watch will see.
    pub fn apply_recording(&mut self, op: Op, changes: &mut Vec<Change>) -> Reply {
        match op.command {
            // Session management bypasses the session checks.
            Command::Register => return Reply::Session(self.sessions.register()),
            Command::SetQuota(bytes) => {
                self.quota = bytes;
                return Reply::Ok;
            }
            _ => {}
        }
        if op.client_id != 0 {
            if let Verdict::Answer(reply) = self.sessions.check(op.client_id, op.seq) {
                return reply;
            }
        }
        let is_read = op.command.is_read();
        let reply = self.execute(op.command, changes);
        if op.client_id != 0 {
            let kept = (!is_read).then_some(&reply);
            self.sessions.record(op.client_id, op.seq, kept);
        }
        reply
    }

    /// Answers a read-only command (`GET`, `RANGE`, `BALANCE`, `AUDIT`)
    /// without changing anything, for reads served outside the log by
    /// ReadIndex (thesis §6.4), or from this server's state for a
    /// serializable range. `None` for a command that writes.
    pub fn read(&self, command: &Command) -> Option<Reply> {
        match command {
            Command::Get(k) => Some(match self.kv.value(k) {
                Some(value) => Reply::Value(Arc::clone(value)),
                None => Reply::NotFound,
            }),
            Command::Range(r) => Some(Reply::Range(range(&self.kv, r, &mut Budget::page()))),
            Command::Balance(a) => Some(self.ledger.balance(a)),
            Command::Audit => Some(self.ledger.audit()),
            Command::Lease(LeaseCommand::Ttl(id)) => Some(self.leases.info(*id)),
            _ => None,
        }
    }

    fn execute(&mut self, command: Command, changes: &mut Vec<Change>) -> Reply {
        let before = changes.len();
        let (reply, lease) = match command {
            Command::Lease(lease) => {
                return lease::execute(&mut self.leases, &mut self.kv, lease, changes)
            }
            Command::Leased(lease, inner) => {
                if self.leases.get(lease).is_none() {
                    return Reply::error(Code::LeaseNotFound, format!("no lease {lease}"));
                }
                (self.execute_unleased(*inner, changes), lease)
            }
            other => (self.execute_unleased(other, changes), 0),
        };
        self.leases.follow(&changes[before..], lease);
        reply
    }

    fn execute_unleased(&mut self, command: Command, changes: &mut Vec<Change>) -> Reply {
        if let Command::Txn(txn) = command {
            return self.execute_txn(txn, changes);
        }
        let growth = match &command {
            Command::Put(k, v) => self.kv.put_growth(k, v.len()),
            Command::Append(k, v) => self.kv.append_growth(k, v.len()),
            Command::Open(a, _) if !self.ledger.has_account(a) => account_cost(a),
            _ => 0,
        };
        if growth > 0 && self.used_bytes().saturating_add(growth) > self.quota {
            return nospace(self.used_bytes(), self.quota);
        }
        let kv = &mut self.kv;
        match command {
            Command::Put(k, v) => {
                kv.put(&k, Arc::new(v), changes);
                Reply::Ok
            }
            Command::Append(k, v) => {
                kv.append(&k, &v, changes);
                Reply::Ok
            }
            Command::Del(k) => {
                kv.delete(&k, changes);
                Reply::Ok
            }
            Command::Open(a, cents) => self.ledger.open(&a, cents),
            Command::Transfer(t) => self.ledger.transfer(&t),
            // Reads; `Register`, `SetQuota` and `Txn` were handled before.
            other => self
                .read(&other)
                .unwrap_or_else(|| Reply::error(Code::BadRequest, "not here")),
        }
    }

    /// A transaction: the compares pick a branch, which runs whole, or not
    /// at all if it would take the state past the quota.
    fn execute_txn(&mut self, txn: Txn, changes: &mut Vec<Change>) -> Reply {
        let succeeded = txn.holds(&self.kv);
        let branch = if succeeded { txn.then } else { txn.otherwise };
        let growth = Txn::growth(&branch, &self.kv);
        let used = i128::from(self.used_bytes());
        if growth > 0 && used + growth > i128::from(self.quota) {
            return nospace(self.used_bytes(), self.quota);
        }
        Reply::Txn(Txn::run(branch, succeeded, &mut self.kv, changes))
    }

    /// Whether `op` is a retry of a request its session already applied (its
    /// reply would be the remembered one, not a fresh execution).
    /// A request in an expired or unknown session counts too: it is answered
    /// with an error, not executed.
    pub fn is_duplicate(&self, op: &Op) -> bool {
        op.client_id != 0
            && !matches!(op.command, Command::Register | Command::SetQuota(_))
            && matches!(self.sessions.peek(op.client_id, op.seq), Verdict::Answer(_))
    }

    /// The key-value store.
    pub fn kv(&self) -> &Kv {
        &self.kv
    }

    /// The ledger.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Sizes of the state, for metrics.
    pub fn stats(&self) -> Stats {
        let (keys, kv_bytes) = self.kv.size();
        let (accounts, total_cents, transfers) = self.ledger.size();
        Stats {
            keys,
            kv_bytes,
            accounts,
            total_cents,
            transfers,
        }
    }

    /// The state's size as the quota counts it: keys with values, accounts.
    pub fn used_bytes(&self) -> u64 {
        self.kv.bytes() + self.ledger.account_bytes()
    }

    /// The space quota in force.
    pub fn quota(&self) -> u64 {
        self.quota
    }

    /// The leases.
    pub fn leases(&self) -> &Leases {
        &self.leases
    }

    /// Open client sessions.
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// Transfers whose txids are remembered.
    pub fn remembered_txids(&self) -> usize {
        self.ledger.remembered_txids()
    }

    /// Writes the whole state to `w`, entry by entry, without building the
    /// encoding in memory; returns the bytes written. The stream
    /// ([`super::snapshot_stream`]) is: version byte, quota, the store's
    /// revision and its keys (each with its value and revisions), accounts,
    /// remembered transfers (oldest first), sessions, then the CRC-32 of all
    /// of that.
    ///
    /// Taking a snapshot without stopping the apply loop: clone the state
    /// (cheap: values are shared, see [`super::kv`]) and write the clone on
    /// another thread.
    pub fn write_snapshot(&self, w: &mut impl Write) -> io::Result<u64> {
        let mut s = SnapshotWriter::new(w);
        s.put_u8(SNAPSHOT_VERSION)?;
        s.put_uvarint(self.quota)?;
        self.kv.write_to(&mut s)?;
        self.ledger.write_to(&mut s)?;
        self.sessions.write_to(&mut s)?;
        self.leases.write_to(&mut s)?;
        s.finish()
    }

    /// Reads a state written by [`StateMachine::write_snapshot`], holding at
    /// most a buffer of the encoding at a time, and reading `r` to its end.
    /// A truncated stream is [`io::ErrorKind::UnexpectedEof`]; a wrong
    /// checksum, trailing bytes or any other corruption is
    /// [`io::ErrorKind::InvalidData`].
    pub fn read_snapshot(r: &mut impl Read) -> io::Result<StateMachine> {
        let mut s = SnapshotReader::new(r);
        let version = s.get_u8()?;
        if !(SNAPSHOT_VERSION_UNCHECKED..=SNAPSHOT_VERSION).contains(&version) {
            return Err(corrupt(format!(
                "snapshot version {version} (this server reads versions \
                 {SNAPSHOT_VERSION_UNCHECKED} to {SNAPSHOT_VERSION}; state written before \
                 session registration cannot be read)"
            )));
        }
        let quota = s.get_uvarint()?;
        let text = version <= SNAPSHOT_VERSION_TEXT;
        let kv = if text {
            Kv::read_without_revisions(&mut s)?
        } else {
            Kv::read_from(&mut s)?
        };
        let ledger = Ledger::read_from(&mut s, text)?;
        let sessions = Sessions::read_from(&mut s, text)?;
        let leases = if version <= SNAPSHOT_VERSION_NO_LEASES {
            Leases::default()
        } else {
            Leases::read_from(&mut s)?
        };
        let sm = StateMachine {
            kv,
            ledger,
            sessions,
            leases,
            quota,
        };
        if version == SNAPSHOT_VERSION_UNCHECKED {
            s.finish_unchecked()?;
        } else {
            s.finish()?;
        }
        Ok(sm)
    }

    /// The whole state as bytes, for a Raft snapshot: what
    /// [`StateMachine::write_snapshot`] writes.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        // Writing to a `Vec` cannot fail.
        let written = self.write_snapshot(&mut bytes);
        debug_assert_eq!(written.ok(), Some(bytes.len() as u64));
        bytes
    }

    /// Rebuilds the state from [`StateMachine::snapshot`]'s bytes.
    pub fn restore(mut bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::read_snapshot(&mut bytes).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => DecodeError::Truncated,
            _ => DecodeError::Corrupt(e.to_string()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::command::{parse, Request};
    use crate::service::quota::kv_cost;
    use crate::service::session::{MAX_KEPT_READ_BYTES, MAX_SESSIONS};
    use crate::service::snapshot_stream::BUFFER_BYTES;

    fn op(client_id: u64, seq: u64, line: &str) -> Op {
        let Ok(Request::Command(command)) = parse(line) else {
            panic!("bad line {line}");
        };
        Op {
            client_id,
            seq,
            command,
        }
    }

    impl StateMachine {
        /// Applies a plain line without a session; its reply line.
        fn apply_line(&self, line: &str) -> String {
            self.clone().apply(&op(0, 0, line)).to_string()
        }
    }

    fn register(sm: &mut StateMachine) -> u64 {
        let reply = sm.apply(&op(0, 0, "REGISTER"));
        match reply {
            Reply::Session(id) => id,
            other => panic!("{other}"),
        }
    }

    #[test]
    fn a_retried_request_applies_once() {
        let mut sm = StateMachine::default();
        let id = register(&mut sm);
        assert_eq!(id, 1);
        assert_eq!(sm.apply(&op(id, 1, "APPEND k x")), "OK");
        assert_eq!(sm.apply(&op(id, 1, "APPEND k x")), "OK");
        assert_eq!(sm.apply(&op(id, 2, "GET k")), "VALUE x");
        assert_eq!(sm.apply(&op(0, 0, "APPEND k y")), "OK");
        assert_eq!(sm.apply(&op(0, 0, "APPEND k y")), "OK");
        let other = register(&mut sm);
        assert_eq!(
            sm.apply(&op(other, 1, "GET k")),
            "VALUE xyy",
            "no session, no dedup"
        );
    }

    /// A request in an evicted session is refused, never run a second time;
    /// an id never handed out is unknown.
    #[test]
    fn requests_in_expired_sessions_are_refused_not_reexecuted() {
        let mut sm = StateMachine::default();
        let first = register(&mut sm);
        assert_eq!(sm.apply(&op(first, 1, "APPEND k x")), "OK");
        for _ in 0..MAX_SESSIONS {
            register(&mut sm);
        }
        assert_eq!(sm.sessions(), MAX_SESSIONS);
        let retry = sm.apply(&op(first, 1, "APPEND k x"));
        assert_eq!(retry.code(), Some(Code::SessionExpired), "{retry}");
        assert_eq!(sm.apply(&op(0, 0, "GET k")), "VALUE x", "not applied twice");
        let unknown = sm.apply(&op(999_999, 1, "APPEND k x"));
        assert_eq!(unknown.code(), Some(Code::SessionUnknown), "{unknown}");
        assert_eq!(sm.apply(&op(0, 0, "GET k")), "VALUE x");
    }

    /// Over the quota, writes that grow the state are refused; reads, DEL,
    /// shrinking writes and transfers between existing accounts still work;
    /// freeing space lets writes in again.
    #[test]
    fn writes_that_would_exceed_the_quota_get_nospace() {
        let mut sm = StateMachine::default();
        assert_eq!(sm.apply(&op(0, 0, "OPEN alice 10")), "OK");
        assert_eq!(sm.apply(&op(0, 0, "OPEN bob 0")), "OK");
        let quota = sm.used_bytes() + kv_cost(2, 10) + 5;
        sm.apply(&Op {
            client_id: 0,
            seq: 0,
            command: Command::SetQuota(quota),
        });
        assert_eq!(sm.quota(), quota);
        assert_eq!(sm.apply(&op(0, 0, "PUT k1 0123456789")), "OK");
        let full = sm.apply(&op(0, 0, "PUT k2 v"));
        assert_eq!(full.code(), Some(Code::NoSpace), "{full}");
        let nospace = |sm: &mut StateMachine, line| sm.apply(&op(0, 0, line)).code();
        assert_eq!(
            nospace(&mut sm, "APPEND k1 0123456789"),
            Some(Code::NoSpace)
        );
        assert_eq!(nospace(&mut sm, "OPEN carol 1"), Some(Code::NoSpace));
        assert_eq!(
            sm.apply(&op(0, 0, "GET k2")),
            "NOT_FOUND",
            "nothing written"
        );
        assert_eq!(sm.apply(&op(0, 0, "APPEND k1 abcde")), "OK", "fits exactly");
        assert_eq!(sm.apply(&op(0, 0, "GET k1")), "VALUE 0123456789abcde");
        assert_eq!(sm.apply(&op(0, 0, "PUT k1 short")), "OK", "shrinks");
        assert_eq!(sm.apply(&op(0, 0, "TRANSFER t1 alice bob 5")), "OK");
        assert_eq!(
            sm.apply(&op(0, 0, "OPEN alice 1")).code(),
            Some(Code::Exists)
        );
        assert_eq!(sm.apply(&op(0, 0, "DEL k1")), "OK");
        assert_eq!(sm.apply(&op(0, 0, "PUT k2 v")), "OK", "space freed");
        assert_eq!(sm.apply(&op(0, 0, "BALANCE bob")), "BALANCE 5.00");
    }

    #[test]
    fn snapshots_restore_everything_and_reject_garbage() {
        let mut sm = StateMachine::default();
        let (a, b) = (register(&mut sm), register(&mut sm));
        for line in [
            "PUT a 1",
            "OPEN alice 10",
            "OPEN bob 0",
            "TRANSFER t alice bob 2.5",
            "GET a",
        ] {
            sm.apply(&op(a, 1, line));
            sm.apply(&op(b, 9, line));
        }
        sm.apply(&Op {
            client_id: 0,
            seq: 0,
            command: Command::SetQuota(1 << 20),
        });
        let bytes = sm.snapshot();
        let restored = StateMachine::restore(&bytes).unwrap();
        assert_eq!(restored.used_bytes(), sm.used_bytes());
        assert_eq!(restored, sm);
        for cut in 0..bytes.len() {
            assert!(StateMachine::restore(&bytes[..cut]).is_err());
        }
        assert!(StateMachine::restore(b"\x07garbage").is_err());
        let mut v1 = bytes.clone();
        v1[0] = 1;
        assert!(StateMachine::restore(&v1).is_err(), "version 1 is refused");
    }

    fn txn(line: &str) -> Command {
        let Ok(Request::Command(command)) = parse(&format!("TXN {line}")) else {
            panic!("bad transaction {line}");
        };
        command
    }

    fn apply_txn(sm: &mut StateMachine, client: u64, seq: u64, line: &str) -> Reply {
        sm.apply(&Op {
            client_id: client,
            seq,
            command: txn(line),
        })
    }

    /// Reference: etcd's revisions — every write moves the store revision by
    /// one and stamps its key; a transaction moves it once; the revisions
    /// are part of the state, so they survive a snapshot.
    #[test]
    fn writes_stamp_revisions_that_survive_a_snapshot() {
        let mut sm = StateMachine::default();
        for line in [
            "PUT a 1",
            "APPEND a 2",
            "PUT b x",
            "DEL zz",
            "DEL b",
            "PUT b y",
        ] {
            assert_eq!(sm.apply(&op(0, 0, line)), Reply::Ok);
        }
        let both =
            r#"{"then":[{"op":"put","key":"a","value":"3"},{"op":"put","key":"c","value":""}]}"#;
        let Reply::Txn(result) = apply_txn(&mut sm, 0, 0, both) else {
            panic!()
        };
        assert_eq!(
            (result.revision, sm.kv().revision()),
            (6, 6),
            "DEL zz changed nothing"
        );
        let meta = sm.apply(&op(0, 0, "GET a meta"));
        let Reply::Range(page) = &meta else {
            panic!("{meta}")
        };
        let a = &page.kvs[0];
        assert_eq!((a.create_revision, a.mod_revision, a.version), (1, 6, 3));
        let b = sm.kv().get(b"b").unwrap();
        assert_eq!(
            (b.create_revision, b.version),
            (5, 1),
            "recreated: a new life"
        );
        let restored = StateMachine::restore(&sm.snapshot()).unwrap();
        assert_eq!(restored, sm);
        assert_eq!(restored.apply_line("GET a meta"), meta.to_string());
    }

    /// A transaction runs whole or not at all: one that would pass the quota
    /// changes nothing, not even its first put.
    #[test]
    fn a_transaction_past_the_quota_is_refused_whole() {
        let mut sm = StateMachine::default();
        sm.apply(&Op {
            client_id: 0,
            seq: 0,
            command: Command::SetQuota(kv_cost(1, 1) * 2),
        });
        let two =
            r#"{"then":[{"op":"put","key":"a","value":"1"},{"op":"put","key":"b","value":"22"}]}"#;
        assert_eq!(apply_txn(&mut sm, 0, 0, two).code(), Some(Code::NoSpace));
        assert_eq!(sm.kv().value(b"a"), None, "nothing applied");
        assert_eq!(sm.kv().revision(), 0);
        let fits =
            r#"{"then":[{"op":"put","key":"a","value":"1"},{"op":"put","key":"b","value":"2"}]}"#;
        assert!(matches!(apply_txn(&mut sm, 0, 0, fits), Reply::Txn(_)));
        let swap = r#"{"then":[{"op":"delete","key":"a"},{"op":"put","key":"b","value":"23"}]}"#;
        assert!(
            matches!(apply_txn(&mut sm, 0, 0, swap), Reply::Txn(_)),
            "frees as much"
        );
    }

    /// Thesis §6.3: a session's retried transaction gets its first reply and
    /// runs once; one whose reads are too large to keep is still never run
    /// twice.
    #[test]
    fn a_retried_transaction_applies_once() {
        let mut sm = StateMachine::default();
        let id = register(&mut sm);
        let inc = r#"{"compare":[{"key":"n","target":"version","op":"=","value":0}],
            "then":[{"op":"put","key":"n","value":"1"}],"else":[{"op":"get","key":"n"}]}"#;
        let first = apply_txn(&mut sm, id, 1, inc);
        let Reply::Txn(result) = &first else {
            panic!("{first}")
        };
        assert!(result.succeeded);
        assert_eq!(
            apply_txn(&mut sm, id, 1, inc),
            first,
            "the retry's reply is the first"
        );
        assert_eq!(sm.kv().get(b"n").unwrap().version, 1, "applied once");
        let other = apply_txn(&mut sm, 0, 0, inc);
        assert!(matches!(other, Reply::Txn(r) if !r.succeeded));
        sm.apply(&op(
            0,
            0,
            &format!("PUT big {}", "x".repeat(MAX_KEPT_READ_BYTES)),
        ));
        let read_big = r#"{"then":[{"op":"put","key":"m","value":"1"},{"op":"get","key":"big"}]}"#;
        assert!(matches!(apply_txn(&mut sm, id, 2, read_big), Reply::Txn(_)));
        let retry = apply_txn(&mut sm, id, 2, read_big);
        assert_eq!(retry.code(), Some(Code::ReplyNotKept), "{retry}");
        assert_eq!(sm.kv().get(b"m").unwrap().version, 1, "still applied once");
    }

    /// A state with every part filled: keys, accounts, remembered transfers,
    /// sessions, a quota; with `big`, one value longer than the stream's buffer.
    fn full_state(big: bool) -> StateMachine {
        let mut sm = StateMachine::default();
        let (a, b) = (register(&mut sm), register(&mut sm));
        for line in [
            "PUT a 1",
            "OPEN alice 10",
            "OPEN bob 0",
            "TRANSFER t alice bob 2.5",
        ] {
            sm.apply(&op(a, 1, line));
            sm.apply(&op(b, 9, line));
        }
        let len = if big { BUFFER_BYTES + 10 } else { 10 };
        sm.apply(&op(0, 0, &format!("PUT big {}", "x".repeat(len))));
        sm.apply(&Op {
            client_id: 0,
            seq: 0,
            command: Command::SetQuota(1 << 30),
        });
        sm
    }

    /// An input that hands out one byte per read.
    struct OneByte<'a>(&'a [u8]);

    impl Read for OneByte<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(1).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn a_streamed_snapshot_is_the_snapshots_bytes_and_reads_back_the_same_state() {
        let sm = full_state(true);
        let mut streamed = Vec::new();
        let written = sm.write_snapshot(&mut streamed).unwrap();
        assert_eq!(written, streamed.len() as u64);
        assert_eq!(streamed, sm.snapshot());
        let read = StateMachine::read_snapshot(&mut OneByte(&streamed)).unwrap();
        assert_eq!(read, sm);
        assert_eq!(StateMachine::restore(&streamed), Ok(sm));
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_an_error() {
        let bytes = full_state(false).snapshot();
        for cut in 0..bytes.len() {
            let refused = StateMachine::read_snapshot(&mut &bytes[..cut]).unwrap_err();
            assert_eq!(refused.kind(), io::ErrorKind::UnexpectedEof, "cut at {cut}");
        }
        for at in 0..bytes.len() {
            for flip in [0x01, 0x80, 0xff] {
                let mut damaged = bytes.clone();
                damaged[at] ^= flip;
                assert!(
                    StateMachine::restore(&damaged).is_err(),
                    "byte {at} xor {flip:#x} went unnoticed"
                );
            }
        }
        // Around and inside a value longer than the buffer.
        let bytes = full_state(true).snapshot();
        for at in (0..bytes.len()).step_by(BUFFER_BYTES / 7) {
            assert!(StateMachine::read_snapshot(&mut &bytes[..at]).is_err());
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x20;
            assert!(StateMachine::restore(&damaged).is_err(), "byte {at}");
        }
    }

    /// A snapshot as versions 2 and 3 wrote it (no revisions, kept replies
    /// as their text lines): one key, two accounts, one remembered transfer,
    /// one session whose last write was refused.
    fn old_snapshot(version: u8) -> Vec<u8> {
        let mut bytes = Vec::new();
        let mut w = SnapshotWriter::new(&mut bytes);
        let refused = "ERR INSUFFICIENT_FUNDS bob has 0.05, needs 9.00";
        w.put_u8(version).unwrap();
        w.put_uvarint(1 << 20).unwrap();
        w.put_uvarint(1).unwrap();
        w.put_bytes(b"k").unwrap();
        w.put_bytes(b"v").unwrap();
        w.put_uvarint(2).unwrap();
        for (name, cents) in [("alice", 995), ("bob", 5)] {
            w.put_bytes(name.as_bytes()).unwrap();
            w.put_uvarint(cents).unwrap();
        }
        w.put_uvarint(1).unwrap();
        for field in ["t1", "alice", "bob"] {
            w.put_bytes(field.as_bytes()).unwrap();
        }
        w.put_uvarint(5).unwrap();
        w.put_bytes(b"OK").unwrap();
        for v in [2, 3, 1, 1, 7, 3] {
            w.put_uvarint(v).unwrap(); // next id, clock, count, id, last seq, last used
        }
        w.put_bool(true).unwrap();
        w.put_bytes(refused.as_bytes()).unwrap();
        w.finish().unwrap();
        if version == 2 {
            bytes.truncate(bytes.len() - 4);
        }
        bytes
    }

    /// Versions 2 and 3 are still read: a server restarts from (or is sent)
    /// a snapshot taken before revisions. Their keys read as created at
    /// revision 1; kept replies read back from their lines.
    #[test]
    fn version_2_and_3_snapshots_are_still_read() {
        for version in [2, 3] {
            let bytes = old_snapshot(version);
            let mut sm = StateMachine::restore(&bytes).unwrap();
            let entry = sm.kv().get(b"k").unwrap();
            assert_eq!(entry.value.as_slice(), b"v");
            assert_eq!(
                (entry.create_revision, entry.mod_revision, entry.version),
                (1, 1, 1)
            );
            assert_eq!(sm.kv().revision(), 1);
            assert_eq!(sm.ledger().balance_cents("bob"), Some(5));
            let retry = sm.apply(&op(1, 7, "TRANSFER t2 bob alice 9"));
            assert_eq!(retry, "ERR INSUFFICIENT_FUNDS bob has 0.05, needs 9.00");
            assert_eq!(sm.apply(&op(0, 0, "TRANSFER t1 alice bob 0.05")), Reply::Ok);
            assert_eq!(
                sm.ledger().balance_cents("bob"),
                Some(5),
                "t1 is remembered"
            );
            let again = StateMachine::restore(&sm.snapshot()).unwrap();
            assert_eq!(again, sm, "and written back as the current version");
            let mut trailing = bytes.clone();
            trailing.push(0);
            assert!(StateMachine::restore(&trailing).is_err(), "trailing bytes");
        }
        let mut v3_without_checksum = old_snapshot(2);
        v3_without_checksum[0] = 3;
        assert!(StateMachine::restore(&v3_without_checksum).is_err());
    }

    /// A version 4 snapshot (before leases) reads with none.
    #[test]
    fn version_4_snapshots_are_read_without_leases() {
        let sm = full_state(false);
        let mut bytes = Vec::new();
        let mut w = SnapshotWriter::new(&mut bytes);
        w.put_u8(4).unwrap();
        w.put_uvarint(sm.quota).unwrap();
        sm.kv.write_to(&mut w).unwrap();
        sm.ledger.write_to(&mut w).unwrap();
        sm.sessions.write_to(&mut w).unwrap();
        w.finish().unwrap();
        assert_eq!(StateMachine::restore(&bytes), Ok(sm));
    }

    /// Taking a snapshot clones the state: neither side may see the other's
    /// later writes.
    #[test]
    fn a_clone_is_unaffected_by_later_writes_to_the_original_and_vice_versa() {
        let mut original = full_state(true);
        let before = original.snapshot();
        let mut copy = original.clone();
        for line in [
            "APPEND big y",
            "PUT a 2",
            "DEL big",
            "TRANSFER u bob alice 1",
        ] {
            original.apply(&op(0, 0, line));
        }
        assert_eq!(copy.snapshot(), before);
        let after = original.snapshot();
        copy.apply(&op(0, 0, "APPEND big z"));
        copy.apply(&op(0, 0, "OPEN carol 5"));
        assert_eq!(original.snapshot(), after);
        assert_eq!(original.apply(&op(0, 0, "GET big")), "NOT_FOUND");
        assert!(copy.apply(&op(0, 0, "GET big")).to_string().ends_with("xz"));
        assert_eq!(original.apply(&op(0, 0, "BALANCE carol")), "NOT_FOUND");
    }
}
