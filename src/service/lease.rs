//! Leases: time-limited claims that delete their keys when they end (etcd's
//! leases, Consul's sessions).
//!
//! ```text
//! LEASE GRANT <ttl_s>      → LEASE id=<id> ttl=<ttl_s> remaining=<s> keys=0
//! LEASE KEEPALIVE <id>     → LEASE id=<id> ttl=... (the clock starts over)
//! LEASE REVOKE <id>        → OK (its keys are deleted)
//! LEASE TTL <id>           → LEASE id=<id> ttl=... remaining=<s> keys=<n>
//! PUT k v LEASE <id>       PUT64 k64 v64 LEASE <id>    TXN {json} LEASE <id>
//! ```
//!
//! A lease lives in the replicated state (here) with its TTL and the keys
//! attached to it; its *deadline* does not. Time enters the state machine
//! only through the log: the leader keeps each lease's deadline on its own
//! monotonic clock ([`super::lease_clock`]) and, once it passes, proposes
//! `LeaseExpire{id, renewals}`; every replica applying it deletes the
//! lease's keys at one revision, at the same index. Replicas never expire a
//! lease on their own clock. The expiry names the number of keepalives the
//! leader had seen: one that a keepalive overtook in the log is ignored.
//!
//! A put without a lease detaches the key from its lease (as in etcd); a
//! delete detaches it too. Leases are bounded ([`MAX_LEASES`]) like
//! sessions, and their TTL ([`MAX_TTL_SECONDS`]).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Write};
use std::sync::Arc;

use super::kv::{Change, Kv};
use super::reply::{Code, Reply};
use super::snapshot_stream::{corrupt, SnapshotReader, SnapshotWriter};
use crate::codec::{DecodeError, Decoder, Encoder};

/// Most leases granted and not yet ended.
pub const MAX_LEASES: usize = 10_000;
/// Longest TTL, in seconds (one day).
pub const MAX_TTL_SECONDS: u64 = 86_400;

/// A lease request (through the log, but `Ttl`, which is a read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseCommand {
    /// `LEASE GRANT <ttl_s>`.
    Grant(u64),
    /// `LEASE KEEPALIVE <id>`: restart the lease's clock.
    KeepAlive(u64),
    /// `LEASE REVOKE <id>`: end it now, deleting its keys.
    Revoke(u64),
    /// `LEASE TTL <id>`: its TTL and keys.
    Ttl(u64),
    /// The leader's clock says the lease ran out (never from a client).
    Expire {
        /// The lease.
        id: u64,
        /// Keepalives the leader had seen when it decided: a later one
        /// cancels the expiry.
        renewals: u64,
    },
}

/// What a lease reply says (`LEASE id=.. ttl=.. remaining=.. keys=..`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseInfo {
    /// The lease's id.
    pub id: u64,
    /// Its TTL, in seconds.
    pub ttl: u64,
    /// Seconds left by the leader's clock; the TTL in the state machine's
    /// own replies (it has no clock), -1 once it ended.
    pub remaining: i64,
    /// Keys attached to it.
    pub keys: u64,
}

/// One lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Its TTL, in seconds.
    pub ttl: u64,
    /// Keepalives applied since it was granted.
    pub renewals: u64,
    /// The keys attached to it.
    keys: BTreeSet<Arc<[u8]>>,
}

/// Every lease, and which key belongs to which.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leases {
    /// The id the next grant gets (ids are never reused).
    next_id: u64,
    leases: BTreeMap<u64, Lease>,
    /// Invariant: `attached[k] == id` exactly when `leases[id].keys` holds `k`.
    attached: BTreeMap<Arc<[u8]>, u64>,
}

impl Default for Leases {
    fn default() -> Self {
        Leases {
            next_id: 1,
            leases: BTreeMap::new(),
            attached: BTreeMap::new(),
        }
    }
}

fn not_found(id: u64) -> Reply {
    Reply::error(Code::LeaseNotFound, format!("no lease {id}"))
}

impl Leases {
    /// The leases, by id.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &Lease)> {
        self.leases.iter().map(|(&id, l)| (id, l))
    }

    /// Lease `id`, if it exists.
    pub fn get(&self, id: u64) -> Option<&Lease> {
        self.leases.get(&id)
    }

    /// Leases granted and not ended.
    pub fn len(&self) -> usize {
        self.leases.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }

    /// The lease `key` is attached to, if any.
    pub fn lease_of(&self, key: &[u8]) -> Option<u64> {
        self.attached.get(key).copied()
    }

    /// The reply describing lease `id`.
    pub fn info(&self, id: u64) -> Reply {
        match self.leases.get(&id) {
            Some(l) => Reply::Lease(LeaseInfo {
                id,
                ttl: l.ttl,
                remaining: l.ttl as i64,
                keys: l.keys.len() as u64,
            }),
            None => not_found(id),
        }
    }

    /// `LEASE GRANT`.
    pub fn grant(&mut self, ttl: u64) -> Reply {
        if self.leases.len() >= MAX_LEASES {
            return Reply::error(
                Code::TooManyLeases,
                format!("{MAX_LEASES} leases are granted, the most the store keeps; revoke one"),
            );
        }
        let id = self.next_id;
        self.next_id += 1;
        self.leases.insert(
            id,
            Lease {
                ttl,
                renewals: 0,
                keys: BTreeSet::new(),
            },
        );
        self.info(id)
    }

    /// `LEASE KEEPALIVE`.
    pub fn keep_alive(&mut self, id: u64) -> Reply {
        match self.leases.get_mut(&id) {
            Some(l) => {
                l.renewals += 1;
                self.info(id)
            }
            None => not_found(id),
        }
    }

    /// Ends lease `id` if `renewals` is still its count of keepalives (any
    /// count, for `None`: a revoke); returns its keys, to delete.
    pub fn end(&mut self, id: u64, renewals: Option<u64>) -> Option<Vec<Arc<[u8]>>> {
        let lease = self.leases.get(&id)?;
        if renewals.is_some_and(|r| r != lease.renewals) {
            return None;
        }
        let lease = self.leases.remove(&id)?;
        for key in &lease.keys {
            self.attached.remove(key);
        }
        Some(lease.keys.into_iter().collect())
    }

    /// Keeps the attachments in step with the changes a command made: a put
    /// attaches its key to `lease` (0: to none), a delete detaches it.
    pub fn follow(&mut self, changes: &[Change], lease: u64) {
        if self.leases.is_empty() && self.attached.is_empty() {
            return;
        }
        for change in changes {
            let new = if change.value.is_some() { lease } else { 0 };
            let old = self.attached.get(&change.key).copied().unwrap_or(0);
            if old == new {
                continue;
            }
            if let Some(l) = self.leases.get_mut(&old) {
                l.keys.remove(&change.key);
                self.attached.remove(&change.key);
            }
            if let Some(l) = self.leases.get_mut(&new) {
                l.keys.insert(Arc::clone(&change.key));
                self.attached.insert(Arc::clone(&change.key), new);
            }
        }
    }

    /// Writes the leases to a snapshot: next id, count, then each lease's
    /// id, TTL, renewals and keys.
    pub fn write_to<W: Write>(&self, s: &mut SnapshotWriter<W>) -> io::Result<()> {
        s.put_uvarint(self.next_id)?;
        s.put_uvarint(self.leases.len() as u64)?;
        for (id, lease) in &self.leases {
            s.put_uvarint(*id)?;
            s.put_uvarint(lease.ttl)?;
            s.put_uvarint(lease.renewals)?;
            s.put_uvarint(lease.keys.len() as u64)?;
            for key in &lease.keys {
                s.put_bytes(key)?;
            }
        }
        Ok(())
    }

    /// Reads what [`Leases::write_to`] wrote, checking every bound.
    pub fn read_from<R: Read>(s: &mut SnapshotReader<R>) -> io::Result<Leases> {
        let mut leases = Leases {
            next_id: s.get_uvarint()?,
            ..Leases::default()
        };
        let count = s.get_uvarint()?;
        if count > MAX_LEASES as u64 {
            return Err(corrupt(format!("{count} leases")));
        }
        for _ in 0..count {
            let id = s.get_uvarint()?;
            let ttl = s.get_uvarint()?;
            if id == 0 || id >= leases.next_id || !(1..=MAX_TTL_SECONDS).contains(&ttl) {
                return Err(corrupt(format!("lease {id} with ttl {ttl}")));
            }
            let renewals = s.get_uvarint()?;
            let keys = s.get_uvarint()?;
            let mut lease = Lease {
                ttl,
                renewals,
                keys: BTreeSet::new(),
            };
            for _ in 0..keys {
                let key: Arc<[u8]> = Arc::from(s.get_vec()?);
                if leases.attached.insert(Arc::clone(&key), id).is_some() {
                    return Err(corrupt("a key attached to two leases"));
                }
                lease.keys.insert(key);
            }
            if leases.leases.insert(id, lease).is_some() {
                return Err(corrupt(format!("lease {id} twice")));
            }
        }
        Ok(leases)
    }
}

/// Applies a lease request to the leases and the store: a grant, a
/// keepalive, a read, or an end (a revoke, an expiry) that deletes the
/// lease's keys at one revision.
pub(super) fn execute(
    leases: &mut Leases,
    kv: &mut Kv,
    command: LeaseCommand,
    changes: &mut Vec<Change>,
) -> Reply {
    let (id, renewals) = match command {
        LeaseCommand::Grant(ttl) => return leases.grant(ttl),
        LeaseCommand::KeepAlive(id) => return leases.keep_alive(id),
        LeaseCommand::Ttl(id) => return leases.info(id),
        LeaseCommand::Revoke(id) => (id, None),
        LeaseCommand::Expire { id, renewals } => (id, Some(renewals)),
    };
    let Some(keys) = leases.end(id, renewals) else {
        return match renewals {
            // Renewed (or gone) since the leader decided: nothing to do.
            Some(_) => Reply::Ok,
            None => not_found(id),
        };
    };
    let revision = kv.revision() + 1;
    let mut deleted = false;
    for key in keys {
        deleted |= kv.delete_at(&key, revision, changes);
    }
    if deleted {
        kv.finish_revision(revision);
    }
    Reply::Ok
}

const TAG_GRANT: u8 = 1;
const TAG_KEEPALIVE: u8 = 2;
const TAG_REVOKE: u8 = 3;
const TAG_TTL: u8 = 4;
const TAG_EXPIRE: u8 = 5;

/// Encodes a lease command (after the command's own tag).
pub fn put_lease_command(e: &mut Encoder, c: &LeaseCommand) {
    match c {
        LeaseCommand::Grant(ttl) => {
            e.put_u8(TAG_GRANT);
            e.put_uvarint(*ttl);
        }
        LeaseCommand::KeepAlive(id) | LeaseCommand::Revoke(id) | LeaseCommand::Ttl(id) => {
            e.put_u8(match c {
                LeaseCommand::KeepAlive(_) => TAG_KEEPALIVE,
                LeaseCommand::Revoke(_) => TAG_REVOKE,
                _ => TAG_TTL,
            });
            e.put_uvarint(*id);
        }
        LeaseCommand::Expire { id, renewals } => {
            e.put_u8(TAG_EXPIRE);
            e.put_uvarint(*id);
            e.put_uvarint(*renewals);
        }
    }
}

/// Decodes what [`put_lease_command`] wrote.
pub fn get_lease_command(d: &mut Decoder<'_>) -> Result<LeaseCommand, DecodeError> {
    Ok(match d.get_u8()? {
        TAG_GRANT => LeaseCommand::Grant(d.get_uvarint()?),
        TAG_KEEPALIVE => LeaseCommand::KeepAlive(d.get_uvarint()?),
        TAG_REVOKE => LeaseCommand::Revoke(d.get_uvarint()?),
        TAG_TTL => LeaseCommand::Ttl(d.get_uvarint()?),
        TAG_EXPIRE => LeaseCommand::Expire {
            id: d.get_uvarint()?,
            renewals: d.get_uvarint()?,
        },
        tag => return Err(DecodeError::Corrupt(format!("unknown lease tag {tag}"))),
    })
}

/// Parses `LEASE ...`'s arguments.
pub fn parse_lease(args: &[&str]) -> Result<LeaseCommand, super::command::Error> {
    let bad = |m: String| super::command::Error::new(Code::BadRequest, m);
    let usage = || bad("usage: LEASE GRANT <ttl_s> | LEASE KEEPALIVE|REVOKE|TTL <id>".into());
    let [verb, n] = args else {
        return Err(usage());
    };
    let n: u64 = n.parse().map_err(|_| usage())?;
    match verb.to_ascii_uppercase().as_str() {
        "GRANT" if (1..=MAX_TTL_SECONDS).contains(&n) => Ok(LeaseCommand::Grant(n)),
        "GRANT" => Err(bad(format!("a TTL is 1..={MAX_TTL_SECONDS} seconds"))),
        "KEEPALIVE" => Ok(LeaseCommand::KeepAlive(n)),
        "REVOKE" => Ok(LeaseCommand::Revoke(n)),
        "TTL" => Ok(LeaseCommand::Ttl(n)),
        _ => Err(usage()),
    }
}

impl LeaseInfo {
    /// Reads `id=.. ttl=.. remaining=.. keys=..` back.
    pub fn parse(rest: &str) -> Option<LeaseInfo> {
        let mut fields = rest.split(' ');
        let mut field = |name: &str| fields.next()?.strip_prefix(name)?.strip_prefix('=');
        let id = field("id")?.parse().ok()?;
        let ttl = field("ttl")?.parse().ok()?;
        let remaining = field("remaining")?.parse().ok()?;
        let keys = field("keys")?.parse().ok()?;
        Some(LeaseInfo {
            id,
            ttl,
            remaining,
            keys,
        })
    }
}

impl std::fmt::Display for LeaseInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "id={} ttl={} remaining={} keys={}",
            self.id, self.ttl, self.remaining, self.keys
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::command::{parse, Command, Request};
    use crate::service::state_machine::{Op, StateMachine};

    fn op(line: &str) -> Op {
        let Ok(Request::Command(command)) = parse(line) else {
            panic!("bad line {line}");
        };
        Op {
            client_id: 0,
            seq: 0,
            command,
        }
    }

    fn lease_op(command: LeaseCommand) -> Op {
        Op {
            client_id: 0,
            seq: 0,
            command: Command::Lease(command),
        }
    }

    /// Leases are replicated state: a leased put attaches its key, an expiry
    /// that a keepalive overtook is ignored, an expiry deletes every key of
    /// the lease at one revision, and a snapshot keeps the lot.
    #[test]
    fn a_lease_expiry_deletes_its_keys_at_one_revision_unless_a_keepalive_overtook_it() {
        let mut sm = StateMachine::default();
        let Reply::Lease(info) = sm.apply(&lease_op(LeaseCommand::Grant(5))) else {
            panic!()
        };
        assert_eq!(sm.apply(&op(&format!("PUT a 1 LEASE {}", info.id))), "OK");
        assert_eq!(sm.apply(&op(&format!("PUT b 2 LEASE {}", info.id))), "OK");
        assert_eq!(sm.apply(&op("PUT c 3")), "OK");
        let missing = sm.apply(&op("PUT d 4 LEASE 99"));
        assert_eq!(missing.code(), Some(Code::LeaseNotFound));
        sm.apply(&lease_op(LeaseCommand::KeepAlive(info.id)));
        let restored = StateMachine::restore(&sm.snapshot()).unwrap();
        assert_eq!(restored, sm, "leases survive a snapshot");
        let stale = LeaseCommand::Expire {
            id: info.id,
            renewals: 0,
        };
        assert_eq!(sm.apply(&lease_op(stale)), Reply::Ok);
        assert_eq!(sm.apply(&op("GET a")), "VALUE 1", "renewed since");
        let before = sm.kv().revision();
        let mut changes = Vec::new();
        let expire = LeaseCommand::Expire {
            id: info.id,
            renewals: 1,
        };
        sm.apply_recording(lease_op(expire), &mut changes);
        let revisions: Vec<u64> = changes.iter().map(|c| c.revision).collect();
        assert_eq!(revisions, vec![before + 1, before + 1]);
        assert!(changes.iter().all(|c| c.value.is_none()));
        assert_eq!(sm.apply(&op("GET a")), "NOT_FOUND");
        assert_eq!(sm.apply(&op("GET c")), "VALUE 3", "not leased");
        assert!(sm.leases().is_empty());
    }

    fn change(key: &str, put: bool) -> Change {
        Change {
            revision: 1,
            key: Arc::from(key.as_bytes()),
            value: put.then(|| Arc::new(Vec::new())),
        }
    }

    #[test]
    fn puts_attach_deletes_and_plain_puts_detach_and_an_end_returns_the_keys() {
        let mut l = Leases::default();
        assert!(matches!(l.grant(10), Reply::Lease(LeaseInfo { id: 1, .. })));
        l.follow(
            &[change("a", true), change("b", true), change("c", true)],
            1,
        );
        l.follow(&[change("b", false)], 0);
        l.follow(&[change("c", true)], 0);
        assert_eq!(l.lease_of(b"a"), Some(1));
        assert_eq!(l.lease_of(b"c"), None);
        assert_eq!(l.end(1, Some(1)), None, "a keepalive it did not see");
        l.keep_alive(1);
        assert_eq!(l.end(1, Some(1)), Some(vec![Arc::from(&b"a"[..])]));
        assert_eq!(l.lease_of(b"a"), None);
        assert_eq!(l.keep_alive(1).code(), Some(Code::LeaseNotFound));
    }

    #[test]
    fn lease_lines_parse_and_bounds_hold() {
        assert_eq!(parse_lease(&["grant", "5"]), Ok(LeaseCommand::Grant(5)));
        assert_eq!(parse_lease(&["TTL", "7"]), Ok(LeaseCommand::Ttl(7)));
        for bad in [
            &["GRANT", "0"][..],
            &["GRANT", "86401"],
            &["GRANT"],
            &["FROB", "1"],
        ] {
            assert!(parse_lease(bad).is_err(), "{bad:?}");
        }
        let mut l = Leases::default();
        for _ in 0..MAX_LEASES {
            l.grant(1);
        }
        assert_eq!(l.grant(1).code(), Some(Code::TooManyLeases));
        let info = LeaseInfo {
            id: 3,
            ttl: 9,
            remaining: -1,
            keys: 2,
        };
        assert_eq!(LeaseInfo::parse(&info.to_string()), Some(info));
    }
}
