//! Client sessions: exactly-once execution of a client's retried requests, in
//! a table of bounded size (Ongaro's thesis, §6.3).
//!
//! A client first registers (`REGISTER` → `SESSION <id>`); the state machine
//! assigns ids in order, 1, 2, 3, ... Then it numbers its requests
//! (`CLIENT <id> <seq> <command>`). A client has at most one request
//! outstanding, so the table keeps, per session, the last sequence number
//! applied and its reply: a retry of that request gets the remembered reply
//! instead of running twice. Replies to reads are not kept (a retried read is
//! simply run again, which is still linearizable), so a session costs a few
//! dozen bytes plus one short write reply. A transaction's reply can carry
//! values it read; it is kept whole up to [`MAX_KEPT_READ_BYTES`] of keys and
//! values, and beyond that as `ERR REPLY_NOT_KEPT` with its revision: a retry
//! still never runs it twice, but learns only that it was applied.
//!
//! Expiry is deterministic, as the thesis requires: the table keeps the
//! [`MAX_SESSIONS`] most recently used sessions, "recently" counted in applied
//! operations, never in wall-clock time. Registering one more evicts the least
//! recently used. An id below the next id that is not in the table was
//! therefore registered and evicted: its requests get `ERR SESSION_EXPIRED`
//! and are not executed, so an old request can never run a second time.
//! Sessions are part of snapshots, so all of this survives restarts.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Write};

use super::reply::{get_kept, put_kept, Code, Reply};
use super::snapshot_stream::{corrupt, SnapshotReader, SnapshotWriter};

/// Sessions kept; registering beyond this evicts the least recently used.
pub const MAX_SESSIONS: usize = 10_000;
/// Bytes of keys and values a kept transaction reply may carry (so that
/// the table stays within a few dozen MB however large the reads).
pub const MAX_KEPT_READ_BYTES: usize = 4096;

/// One client's session.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Session {
    /// The last sequence number applied.
    last_seq: u64,
    /// Its reply, if it was a write (`None`: a read, run again on retry).
    /// Invariant: deterministic ([`Reply::is_deterministic`]): what every
    /// replica answered, never a fact about one server at one moment.
    reply: Option<Reply>,
    /// When the session was last used, in `Sessions::clock` ticks.
    last_used: u64,
}

/// What to do with a request that carries a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Execute it (a new request, or the retry of a read), then `record` it.
    Execute,
    /// Already applied: answer with this reply, execute nothing.
    Answer(Reply),
}

/// The session table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sessions {
    /// Invariant: every id is below `next_id`; at most `MAX_SESSIONS` entries.
    table: BTreeMap<u64, Session>,
    /// `(last_used, id)` of every session, least recently used first.
    /// Invariant: exactly one entry per session in `table`.
    by_use: BTreeSet<(u64, u64)>,
    /// The id the next registration gets (ids start at 1; 0 means no session).
    next_id: u64,
    /// Counts uses; orders sessions by recency.
    clock: u64,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions {
            table: BTreeMap::new(),
            by_use: BTreeSet::new(),
            next_id: 1,
            clock: 0,
        }
    }
}

impl Sessions {
    /// Opens a session and returns its id, evicting the least recently used
    /// session if the table is full.
    pub fn register(&mut self) -> u64 {
        if self.table.len() >= MAX_SESSIONS {
            if let Some((_, evicted)) = self.by_use.pop_first() {
                self.table.remove(&evicted);
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        self.clock += 1;
        self.table.insert(
            id,
            Session {
                last_seq: 0,
                reply: None,
                last_used: self.clock,
            },
        );
        self.by_use.insert((self.clock, id));
        self.check_invariants();
        id
    }

    /// Decides what to do with request `seq` of session `client`, and marks
    /// the session used.
    pub fn check(&mut self, client: u64, seq: u64) -> Verdict {
        let verdict = self.peek(client, seq);
        if let Some(session) = self.table.get_mut(&client) {
            self.by_use.remove(&(session.last_used, client));
            self.clock += 1;
            session.last_used = self.clock;
            self.by_use.insert((self.clock, client));
        }
        verdict
    }

    /// What [`Sessions::check`] decides, without marking the session used.
    pub fn peek(&self, client: u64, seq: u64) -> Verdict {
        let Some(session) = self.table.get(&client) else {
            return Verdict::Answer(if client < self.next_id {
                Reply::error(
                    Code::SessionExpired,
                    format!(
                        "session {client} expired (only the {MAX_SESSIONS} most recently used \
                         sessions are kept); outcome unknown, register a new session"
                    ),
                )
            } else {
                Reply::error(
                    Code::SessionUnknown,
                    format!("no session {client}; open one with REGISTER"),
                )
            });
        };
        if seq < session.last_seq {
            return Verdict::Answer(Reply::error(
                Code::BadRequest,
                "request superseded by a newer one",
            ));
        }
        match (&session.reply, seq == session.last_seq) {
            (Some(reply), true) => Verdict::Answer(reply.clone()),
            _ => Verdict::Execute,
        }
    }

    /// Remembers the outcome of request `seq` of `client`: the reply of a
    /// write, nothing for a read. Does nothing for an unknown session.
    pub fn record(&mut self, client: u64, seq: u64, reply: Option<&Reply>) {
        debug_assert!(reply.is_none_or(Reply::is_deterministic), "{reply:?}");
        if let Some(session) = self.table.get_mut(&client) {
            session.last_seq = seq;
            session.reply = reply.map(kept);
        }
    }

    /// How many sessions are open.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether no session is open.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    fn check_invariants(&self) {
        debug_assert!(self.table.len() <= MAX_SESSIONS);
        debug_assert_eq!(self.table.len(), self.by_use.len());
    }

    /// Writes the table's encoding: next id, clock, then each session in id
    /// order (id, last seq, last used, reply as 0, or 1 and its encoding).
    pub fn write_to<W: Write>(&self, w: &mut SnapshotWriter<W>) -> io::Result<()> {
        w.put_uvarint(self.next_id)?;
        w.put_uvarint(self.clock)?;
        w.put_uvarint(self.table.len() as u64)?;
        for (&id, s) in &self.table {
            w.put_uvarint(id)?;
            w.put_uvarint(s.last_seq)?;
            w.put_uvarint(s.last_used)?;
            match &s.reply {
                Some(reply) => {
                    w.put_bool(true)?;
                    put_kept(w, reply)?;
                }
                None => w.put_bool(false)?,
            }
        }
        Ok(())
    }

    /// Reads a table written by [`Sessions::write_to`], checking its
    /// invariants (with `replies_as_lines`, one from before replies were
    /// kept in their binary encoding).
    pub fn read_from<R: Read>(
        r: &mut SnapshotReader<R>,
        replies_as_lines: bool,
    ) -> io::Result<Self> {
        let invalid = |why: &str| corrupt(format!("sessions: {why}"));
        let mut sessions = Sessions {
            next_id: r.get_uvarint()?,
            clock: r.get_uvarint()?,
            ..Sessions::default()
        };
        let count = r.get_uvarint()?;
        if count > MAX_SESSIONS as u64 {
            return Err(invalid("too many sessions"));
        }
        for _ in 0..count {
            let id = r.get_uvarint()?;
            let last_seq = r.get_uvarint()?;
            let last_used = r.get_uvarint()?;
            let reply = if r.get_bool()? {
                Some(get_kept(r, replies_as_lines)?)
            } else {
                None
            };
            if id == 0 || id >= sessions.next_id || last_used > sessions.clock {
                return Err(invalid("session id or use out of range"));
            }
            if !sessions.by_use.insert((last_used, id)) || sessions.table.contains_key(&id) {
                return Err(invalid("duplicate session"));
            }
            sessions.table.insert(
                id,
                Session {
                    last_seq,
                    reply,
                    last_used,
                },
            );
        }
        Ok(sessions)
    }
}

/// What the table keeps of a write's reply: the reply, or for a transaction
/// whose reads carry too many bytes, that it was applied.
fn kept(reply: &Reply) -> Reply {
    match reply {
        Reply::Txn(t) if t.read_bytes() > MAX_KEPT_READ_BYTES => Reply::error(
            Code::ReplyNotKept,
            format!(
                "the transaction was applied at revision {} (its compares {}); its reply \
                 carried {} bytes of keys and values, more than a session keeps \
                 ({MAX_KEPT_READ_BYTES}): read them again",
                t.revision,
                if t.succeeded { "held" } else { "failed" },
                t.read_bytes()
            ),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_assigned_in_order_and_retries_get_the_first_reply() {
        let mut s = Sessions::default();
        assert_eq!(s.register(), 1);
        assert_eq!(s.register(), 2);
        assert_eq!(s.check(1, 1), Verdict::Execute);
        s.record(1, 1, Some(&Reply::Ok));
        assert_eq!(s.check(1, 1), Verdict::Answer(Reply::Ok));
        assert_eq!(s.check(1, 2), Verdict::Execute);
        s.record(1, 2, None);
        assert_eq!(s.check(1, 2), Verdict::Execute, "a retried read runs again");
        assert!(
            matches!(s.check(1, 1), Verdict::Answer(r) if r.to_string().contains("superseded"))
        );
    }

    #[test]
    fn the_least_recently_used_session_is_evicted_and_then_reported_expired() {
        let mut s = Sessions::default();
        for _ in 0..MAX_SESSIONS {
            s.register();
        }
        // Use session 1, so session 2 is now the least recently used.
        assert_eq!(s.check(1, 1), Verdict::Execute);
        s.record(1, 1, Some(&Reply::Ok));
        let newest = s.register();
        assert_eq!(newest, MAX_SESSIONS as u64 + 1);
        assert_eq!(s.len(), MAX_SESSIONS);
        assert_eq!(s.check(1, 1), Verdict::Answer(Reply::Ok), "1 was kept");
        assert!(
            matches!(s.check(2, 1), Verdict::Answer(r) if r.code() == Some(Code::SessionExpired))
        );
        assert!(matches!(
            s.check(newest + 1, 1),
            Verdict::Answer(r) if r.code() == Some(Code::SessionUnknown)
        ));
    }

    #[test]
    fn the_table_round_trips_and_corrupt_tables_are_refused() {
        let mut s = Sessions::default();
        for i in 1..=5 {
            let id = s.register();
            s.check(id, i);
            s.record(id, i, (i % 2 == 0).then_some(&Reply::Ok));
        }
        let mut bytes = Vec::new();
        let mut w = SnapshotWriter::new(&mut bytes);
        s.write_to(&mut w).unwrap();
        w.finish().unwrap();
        let mut r = SnapshotReader::new(bytes.as_slice());
        assert_eq!(Sessions::read_from(&mut r, false).unwrap(), s);
        r.finish().unwrap();
        // next_id 1, clock 9, one session with id 1 (not below next_id).
        let mut r = SnapshotReader::new([1, 9, 1, 1, 0, 0, 0].as_slice());
        let refused = Sessions::read_from(&mut r, false).unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::InvalidData, "{refused}");
    }
}
