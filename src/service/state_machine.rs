//! The replicated state machine: KV store, ledger, client sessions and quota.
//!
//! Every server applies the same [`Op`]s in log order and so reaches the same
//! state and the same replies. `apply` is deterministic: no clocks, no
//! randomness, no I/O. Everything that bounds the state is deterministic too:
//! the session table's size ([`super::session`]), the txid retention window
//! ([`super::ledger`]) and the space quota ([`super::quota`]).

use super::command::Command;
use super::kv::Kv;
use super::ledger::Ledger;
use super::quota::{account_cost, nospace};
use super::session::{Sessions, Verdict};
use crate::codec::{Decode, DecodeError, Decoder, Encode, Encoder};

pub use super::quota::DEFAULT_QUOTA_BYTES;

/// Version byte of the snapshot encoding. Version 2 added registered
/// sessions, the txid window and the quota; version 1 snapshots are refused.
const SNAPSHOT_VERSION: u8 = 2;

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
    /// The space quota in force, in bytes.
    quota: u64,
}

impl Default for StateMachine {
    fn default() -> Self {
        StateMachine {
            kv: Kv::default(),
            ledger: Ledger::default(),
            sessions: Sessions::default(),
            quota: DEFAULT_QUOTA_BYTES,
        }
    }
}

impl StateMachine {
    /// Applies one operation and returns its reply line.
    pub fn apply(&mut self, op: &Op) -> String {
        match op.command {
            // Session management bypasses the session checks.
            Command::Register => return format!("SESSION {}", self.sessions.register()),
            Command::SetQuota(bytes) => {
                self.quota = bytes;
                return "OK".into();
            }
            _ => {}
        }
        if op.client_id != 0 {
            if let Verdict::Answer(reply) = self.sessions.check(op.client_id, op.seq) {
                return reply;
            }
        }
        let reply = self.execute(&op.command);
        if op.client_id != 0 {
            let kept = (!op.command.is_read()).then_some(reply.as_str());
            self.sessions.record(op.client_id, op.seq, kept);
        }
        reply
    }

    /// Answers a read-only command (`GET`, `BALANCE`, `AUDIT`) without
    /// changing anything, for reads served outside the log by ReadIndex
    /// (thesis §6.4). `None` for a command that writes.
    pub fn read(&self, command: &Command) -> Option<String> {
        match command {
            Command::Get(k) => Some(self.kv.get(k)),
            Command::Balance(a) => Some(self.ledger.balance(a)),
            Command::Audit => Some(self.ledger.audit()),
            _ => None,
        }
    }

    fn execute(&mut self, command: &Command) -> String {
        let growth = match command {
            Command::Put(k, v) => self.kv.put_growth(k, v),
            Command::Append(k, v) => self.kv.append_growth(k, v),
            Command::Open(a, _) if !self.ledger.has_account(a) => account_cost(a),
            _ => 0,
        };
        if growth > 0 && self.used_bytes().saturating_add(growth) > self.quota {
            return nospace(self.used_bytes(), self.quota);
        }
        match command {
            Command::Put(k, v) => self.kv.put(k, v),
            Command::Append(k, v) => self.kv.append(k, v),
            Command::Del(k) => self.kv.del(k),
            Command::Get(k) => self.kv.get(k),
            Command::Open(a, cents) => self.ledger.open(a, *cents),
            Command::Transfer(t) => self.ledger.transfer(t),
            Command::Balance(a) => self.ledger.balance(a),
            Command::Audit => self.ledger.audit(),
            Command::Register | Command::SetQuota(_) => "ERR BAD_REQUEST not here".into(),
        }
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

    /// Open client sessions.
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// Transfers whose txids are remembered.
    pub fn remembered_txids(&self) -> usize {
        self.ledger.remembered_txids()
    }

    /// The whole state as bytes, for a Raft snapshot: version, quota, KV pairs,
    /// accounts, remembered transfers (oldest first), sessions.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut e = Encoder::new();
        e.put_u8(SNAPSHOT_VERSION);
        e.put_uvarint(self.quota);
        self.kv.encode_to(&mut e);
        self.ledger.encode_to(&mut e);
        self.sessions.encode_to(&mut e);
        e.finish()
    }

    /// Rebuilds the state from [`StateMachine::snapshot`]'s bytes.
    pub fn restore(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut d = Decoder::new(bytes);
        let version = d.get_u8()?;
        if version != SNAPSHOT_VERSION {
            return Err(DecodeError::Corrupt(format!(
                "snapshot version {version} (this server reads version {SNAPSHOT_VERSION}; \
                 state written before session registration cannot be read)"
            )));
        }
        let quota = d.get_uvarint()?;
        let sm = StateMachine {
            kv: Kv::decode_from(&mut d)?,
            ledger: Ledger::decode_from(&mut d)?,
            sessions: Sessions::decode_from(&mut d)?,
            quota,
        };
        d.finish()?;
        Ok(sm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::command::{parse, Request};
    use crate::service::quota::kv_cost;
    use crate::service::session::MAX_SESSIONS;

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

    fn register(sm: &mut StateMachine) -> u64 {
        let reply = sm.apply(&op(0, 0, "REGISTER"));
        reply
            .strip_prefix("SESSION ")
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("{reply}"))
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
        assert!(retry.starts_with("ERR SESSION_EXPIRED"), "{retry}");
        assert_eq!(sm.apply(&op(0, 0, "GET k")), "VALUE x", "not applied twice");
        let unknown = sm.apply(&op(999_999, 1, "APPEND k x"));
        assert!(unknown.starts_with("ERR SESSION_UNKNOWN"), "{unknown}");
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
        let quota = sm.used_bytes() + kv_cost("k1", 10) + 5;
        sm.apply(&Op {
            client_id: 0,
            seq: 0,
            command: Command::SetQuota(quota),
        });
        assert_eq!(sm.quota(), quota);
        assert_eq!(sm.apply(&op(0, 0, "PUT k1 0123456789")), "OK");
        let full = sm.apply(&op(0, 0, "PUT k2 v"));
        assert!(full.starts_with("ERR NOSPACE"), "{full}");
        assert!(sm
            .apply(&op(0, 0, "APPEND k1 0123456789"))
            .starts_with("ERR NOSPACE"));
        assert!(sm
            .apply(&op(0, 0, "OPEN carol 1"))
            .starts_with("ERR NOSPACE"));
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
            sm.apply(&op(0, 0, "OPEN alice 1")).split(' ').nth(1),
            Some("EXISTS")
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
}
