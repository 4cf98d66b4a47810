//! Client sessions: exactly-once execution of a client's retried requests.
//!
//! A client library numbers its requests (client id, sequence). A client has at
//! most one request outstanding, so the state machine only remembers, per client,
//! the last sequence number applied and its reply: a retry of that request gets
//! the remembered reply instead of running twice (§8 of the paper). Sessions are
//! part of snapshots, so deduplication survives restarts and leader changes.

use std::collections::BTreeMap;

use super::kv::get_string;
use crate::codec::{DecodeError, Decoder, Encoder};

/// The last request applied for each client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sessions {
    last: BTreeMap<u64, (u64, String)>,
}

impl Sessions {
    /// The remembered reply if `(client, seq)` was already applied.
    pub fn duplicate(&self, client: u64, seq: u64) -> Option<String> {
        match self.last.get(&client) {
            Some((last_seq, reply)) if seq == *last_seq => Some(reply.clone()),
            Some((last_seq, _)) if seq < *last_seq => {
                Some("ERR BAD_REQUEST request superseded by a newer one".into())
            }
            _ => None,
        }
    }

    /// Remembers `reply` as the outcome of `(client, seq)`.
    pub fn record(&mut self, client: u64, seq: u64, reply: &str) {
        self.last.insert(client, (seq, reply.to_string()));
    }

    /// Appends the sessions' encoding.
    pub fn encode_to(&self, e: &mut Encoder) {
        e.put_uvarint(self.last.len() as u64);
        for (&client, (seq, reply)) in &self.last {
            e.put_uvarint(client);
            e.put_uvarint(*seq);
            e.put_bytes(reply.as_bytes());
        }
    }

    /// Reads sessions written by [`Sessions::encode_to`].
    pub fn decode_from(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let mut last = BTreeMap::new();
        for _ in 0..d.get_len(d.remaining())? {
            let client = d.get_uvarint()?;
            let seq = d.get_uvarint()?;
            last.insert(client, (seq, get_string(d)?));
        }
        Ok(Sessions { last })
    }
}
