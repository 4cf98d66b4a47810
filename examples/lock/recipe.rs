//! The lock recipe: a lease, a create-only transaction, and a watch on the
//! one key before mine (etcd's `concurrency.Mutex`, ZooKeeper's lock recipe).
//!
//! To acquire `<name>`: grant a lease and keep it alive; create
//! `<name>/<lease-id>` attached to it with a create-only `TXN`; list the
//! keys under `<name>/`. The key with the lowest create revision holds the
//! lock. Otherwise watch only the key created just before mine (no herd: a
//! release wakes one waiter) until it is deleted, and look again. Releasing
//! is revoking the lease; a holder that dies or pauses loses its key when
//! the lease expires.
//!
//! The holder's **fencing token** is its key's create revision: it grows
//! with every new holder. A lock alone cannot stop a holder that paused
//! past its lease (a GC pause, a stopped VM) from writing after it woke up,
//! believing it still holds the lock. The guarded resource stops it: it is
//! written only by a `TXN` that compares the fence key (the highest token
//! that wrote) with the writer's token and sets it, so a stale holder's
//! write is refused (Kleppmann, "How to do distributed locking", 2016).
//!
//! Shared by `examples/lock` and `tests/lock_chaos.rs`.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use raftkv::client::Client;
use raftkv::service::range::RangeRequest;
use raftkv::service::txn::{Compare, CompareOp, OpResult, Target, Txn, TxnOp};
use raftkv::service::watch::WatchFilter;
use raftkv::watch_client::{WatchMessage, WatchStream};

/// A token as the fence key holds it: fixed width, so byte order is number order.
pub fn token_text(token: u64) -> String {
    format!("{token:020}")
}

/// A held lock (or one being waited for).
pub struct Lock {
    /// The lease that holds my key.
    pub lease: u64,
    /// My key under the lock's name.
    pub key: Vec<u8>,
    /// My key's create revision: the fencing token, once held.
    pub token: u64,
    /// Set once a keepalive finds the lease gone.
    pub lost: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    keepalive: Option<JoinHandle<()>>,
}

/// What a guarded write came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Guarded {
    /// Written, at this revision.
    Wrote(u64),
    /// Refused: a newer token wrote (this one).
    Refused(u64),
}

/// Acquires lock `name`: blocks until this client holds it. `servers` are
/// the addresses (a watch connects to one of them, `watch_on` picks which).
pub fn acquire(
    servers: &[String],
    client: &mut Client,
    name: &str,
    ttl: u64,
    watch_on: &mut dyn FnMut() -> usize,
) -> io::Result<Lock> {
    let lease = client.lease_grant(ttl)?;
    let (stop, lost) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let keepalive = {
        let (stop, lost) = (Arc::clone(&stop), Arc::clone(&lost));
        let mut renewer = Client::new(servers.to_vec());
        let every = Duration::from_millis(ttl * 1000 / 3);
        thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                thread::sleep(every);
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                if let Err(e) = renewer.lease_keepalive(lease) {
                    if e.to_string().contains("LEASE_NOT_FOUND") {
                        lost.store(true, Ordering::SeqCst);
                        return;
                    }
                }
            }
        })
    };
    let key = format!("{name}/{lease:016x}").into_bytes();
    // Create-only: a retried transaction is answered once (sessions), and
    // the compare makes a second creation a no-op.
    let create = Txn {
        compares: vec![Compare {
            key: key.clone(),
            target: Target::CreateRevision(0),
            op: CompareOp::Equal,
        }],
        then: vec![TxnOp::Put(key.clone(), b"held".to_vec())],
        otherwise: vec![],
    };
    client.txn_leased(&create, lease)?;
    let mut lock = Lock {
        lease,
        key,
        token: 0,
        lost,
        stop,
        keepalive: Some(keepalive),
    };
    let prefix = format!("{name}/").into_bytes();
    loop {
        let page = client.range(&RangeRequest::prefix(&prefix))?;
        let mut waiters: Vec<_> = page
            .kvs
            .iter()
            .map(|kv| (kv.create_revision, kv.key.to_vec()))
            .collect();
        waiters.sort();
        let Some(mine) = waiters.iter().position(|(_, k)| *k == lock.key) else {
            lock.release(client);
            return Err(io::Error::other(
                "my key is gone: the lease expired while waiting",
            ));
        };
        lock.token = waiters[mine].0;
        if mine == 0 {
            return Ok(lock);
        }
        // Watch only my predecessor, from the revision the list reflects.
        let before = waiters[mine - 1].1.clone();
        wait_for_delete(servers, watch_on, &before, page.revision + 1);
    }
}

/// Waits until `key` is deleted at or after revision `from` (reconnecting
/// to another server if a watch breaks).
fn wait_for_delete(servers: &[String], watch_on: &mut dyn FnMut() -> usize, key: &[u8], from: u64) {
    let filter = WatchFilter::Key(key.to_vec());
    let mut from = from;
    loop {
        let addr = &servers[watch_on() % servers.len()];
        let mut stream = match WatchStream::open(addr, None, &filter, Some(from)) {
            Ok(Ok(stream)) => stream,
            // Compacted or refused: look at the keys again.
            Ok(Err(_)) => return,
            Err(_) => {
                thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        loop {
            match stream.receive() {
                Ok(WatchMessage::Event(e)) if e.value.is_none() => return,
                Ok(WatchMessage::Event(_)) => {}
                Ok(WatchMessage::Canceled { resume }) => {
                    from = resume;
                    break;
                }
                Ok(WatchMessage::Compacted { .. }) => return,
                Err(_) => {
                    from = stream.next_revision();
                    break;
                }
            }
        }
    }
}

/// Creates the fence key (token 0) if it does not exist.
pub fn ensure_fence(client: &mut Client, fence: &[u8]) -> io::Result<()> {
    let create = Txn {
        compares: vec![Compare {
            key: fence.to_vec(),
            target: Target::Exists(false),
            op: CompareOp::Equal,
        }],
        then: vec![TxnOp::Put(fence.to_vec(), token_text(0).into_bytes())],
        otherwise: vec![],
    };
    client.txn(&create).map(drop)
}

/// Writes `value` to `resource` only if no newer token than `token` wrote
/// (the fence key holds the highest token that did), and records `token`.
pub fn guarded_write(
    client: &mut Client,
    fence: &[u8],
    resource: &[u8],
    token: u64,
    value: &[u8],
) -> io::Result<Guarded> {
    let txn = Txn {
        compares: vec![Compare {
            key: fence.to_vec(),
            target: Target::Value(token_text(token + 1).into_bytes()),
            op: CompareOp::Less,
        }],
        then: vec![
            TxnOp::Put(fence.to_vec(), token_text(token).into_bytes()),
            TxnOp::Put(resource.to_vec(), value.to_vec()),
        ],
        otherwise: vec![TxnOp::Get(fence.to_vec())],
    };
    let result = client.txn(&txn)?;
    if result.succeeded {
        return Ok(Guarded::Wrote(result.revision));
    }
    let newer = match result.results.first() {
        Some(OpResult::Get(page)) => page
            .kvs
            .first()
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
            .unwrap_or(0),
        _ => 0,
    };
    Ok(Guarded::Refused(newer))
}

impl Lock {
    /// Releases the lock: revokes the lease (its key goes, and the next
    /// waiter's watch fires).
    pub fn release(mut self, client: &mut Client) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = client.lease_revoke(self.lease);
        if let Some(k) = self.keepalive.take() {
            let _ = k.join();
        }
    }

    /// Whether a keepalive found the lease gone.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }
}

/// What a holder does with the lock (the example's `-work`).
pub struct Work<'a> {
    /// The fence key.
    pub fence: &'a [u8],
    /// The guarded resource.
    pub resource: &'a [u8],
    /// Who writes (values are `<id>-<i>`).
    pub id: &'a str,
    /// How many writes.
    pub rounds: u64,
    /// Time before each write.
    pub pause: Duration,
    /// Write through the fence (else unguarded).
    pub fencing: bool,
}

/// Writes the resource `rounds` times while holding `lock`, then releases
/// it; says what happened line by line. The exit code: 0 released, 3 a
/// write refused (a newer token wrote), 4 the lease was lost.
pub fn work(client: &mut Client, lock: Lock, w: Work, say: &mut dyn FnMut(String)) -> i32 {
    for i in 0..w.rounds {
        thread::sleep(w.pause);
        // A paused holder does not know it paused: it writes, then finds out.
        let value = format!("{}-{i}", w.id);
        let written = if w.fencing {
            guarded_write(client, w.fence, w.resource, lock.token, value.as_bytes())
        } else {
            client
                .put_bytes(w.resource, value.as_bytes())
                .map(|_| Guarded::Wrote(0))
        };
        match written {
            Ok(Guarded::Wrote(revision)) => say(format!(
                "wrote {value} token={} revision={revision}",
                lock.token
            )),
            Ok(Guarded::Refused(newer)) => {
                say(format!(
                    "refused: token {newer} is newer than {}",
                    lock.token
                ));
                return 3;
            }
            Err(e) => say(format!("write failed: {e}")),
        }
        if lock.is_lost() {
            say("lost the lease".into());
            return 4;
        }
    }
    lock.release(client);
    say("released".into());
    0
}
