//! The replicated state machine: KV store, ledger and client sessions.
//!
//! Every server applies the same [`Op`]s in log order and so reaches the same
//! state and the same replies. `apply` is deterministic: no clocks, no
//! randomness, no I/O.

use super::command::Command;
use super::kv::Kv;
use super::ledger::Ledger;
use super::session::Sessions;
use crate::codec::{Decode, DecodeError, Decoder, Encode, Encoder};

/// Version byte of the snapshot encoding.
const SNAPSHOT_VERSION: u8 = 1;

/// One log entry's payload: a command and who sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    /// The client's session id; 0 for requests without a session (plain `nc`).
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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateMachine {
    kv: Kv,
    ledger: Ledger,
    sessions: Sessions,
}

impl StateMachine {
    /// Applies one operation and returns its reply line.
    pub fn apply(&mut self, op: &Op) -> String {
        if op.client_id != 0 {
            if let Some(reply) = self.sessions.duplicate(op.client_id, op.seq) {
                return reply;
            }
        }
        let reply = match &op.command {
            Command::Put(k, v) => self.kv.put(k, v),
            Command::Append(k, v) => self.kv.append(k, v),
            Command::Del(k) => self.kv.del(k),
            Command::Get(k) => self.kv.get(k),
            Command::Open(a, cents) => self.ledger.open(a, *cents),
            Command::Transfer(t) => self.ledger.transfer(t),
            Command::Balance(a) => self.ledger.balance(a),
            Command::Audit => self.ledger.audit(),
        };
        if op.client_id != 0 {
            self.sessions.record(op.client_id, op.seq, &reply);
        }
        reply
    }

    /// Whether `op` is a retry of a request its session already applied (its
    /// reply would be the remembered one, not a fresh execution).
    pub fn is_duplicate(&self, op: &Op) -> bool {
        op.client_id != 0 && self.sessions.duplicate(op.client_id, op.seq).is_some()
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

    /// The whole state as bytes, for a Raft snapshot.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut e = Encoder::new();
        e.put_u8(SNAPSHOT_VERSION);
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
            return Err(DecodeError::Corrupt(format!("snapshot version {version}")));
        }
        let sm = StateMachine {
            kv: Kv::decode_from(&mut d)?,
            ledger: Ledger::decode_from(&mut d)?,
            sessions: Sessions::decode_from(&mut d)?,
        };
        d.finish()?;
        Ok(sm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::command::{parse, Request};

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

    #[test]
    fn a_retried_request_applies_once() {
        let mut sm = StateMachine::default();
        assert_eq!(sm.apply(&op(7, 1, "APPEND k x")), "OK");
        assert_eq!(sm.apply(&op(7, 1, "APPEND k x")), "OK");
        assert_eq!(sm.apply(&op(7, 2, "GET k")), "VALUE x");
        assert_eq!(sm.apply(&op(0, 0, "APPEND k y")), "OK");
        assert_eq!(sm.apply(&op(0, 0, "APPEND k y")), "OK");
        assert_eq!(
            sm.apply(&op(8, 1, "GET k")),
            "VALUE xyy",
            "no session, no dedup"
        );
    }

    #[test]
    fn snapshots_restore_everything_and_reject_garbage() {
        let mut sm = StateMachine::default();
        for line in [
            "PUT a 1",
            "OPEN alice 10",
            "OPEN bob 0",
            "TRANSFER t alice bob 2.5",
        ] {
            sm.apply(&op(3, 1, line));
            sm.apply(&op(4, 9, line));
        }
        let bytes = sm.snapshot();
        assert_eq!(StateMachine::restore(&bytes), Ok(sm));
        for cut in 0..bytes.len() {
            assert!(StateMachine::restore(&bytes[..cut]).is_err());
        }
        assert!(StateMachine::restore(b"\x07garbage").is_err());
    }
}
