//! Simulated watchers: clients that follow a prefix from a server's watch
//! history and the check that they see exactly the committed changes.
//!
//! Each simulated server keeps the runtime's own history ring
//! ([`crate::service::history::History`]), fed with the changes its applier
//! makes and reset when it restores a snapshot, as the replica's apply loop
//! feeds the watch hub. After every step each watcher reads what its server
//! has past the revision it waits for. When its server crashes or restarts
//! it moves to the next running server (by slot, deterministically) and
//! resumes `FROM` the revision after the last one it saw; a server that no
//! longer keeps that revision answers "compacted", and the watcher re-reads
//! (here: starts again after that server's head) and carries on, counted.
//!
//! The watchers are passive: they propose nothing, send no packet and draw
//! no randomness, so a seed's schedule is the same with them as without.
//!
//! The check, `watchers_see_committed_changes`: every batch a watcher reads
//! for revisions `[from, next)` equals the committed changes of those
//! revisions under its prefix, in order, with no gap and no duplicate
//! (etcd's watch guarantee, as NOTES states it for `WATCH ... FROM`). The
//! committed changes of each revision are recorded from the first server to
//! apply it; state machine safety makes every server's the same.

use std::collections::BTreeMap;

use super::invariants::Violation;
use super::world::World;
use crate::service::kv::Change;

/// The bound of each simulated server's history: small enough that a
/// watcher moving to a server that restored a snapshot, or that dropped old
/// revisions, meets "compacted".
pub(super) const SIM_HISTORY_BYTES: u64 = 64 << 10;

/// The prefixes the watchers follow: every client key, and two single keys'
/// prefixes (`k1` also covers `k10`.. when there are that many keys).
const PREFIXES: [&[u8]; 3] = [b"k", b"k0", b"k1"];

/// One watcher: which server it reads from and the revision it waits for.
#[derive(Debug)]
struct SimWatcher {
    prefix: &'static [u8],
    /// The server slot it reads from, and that server's incarnation when it
    /// attached; `None` before it first attaches.
    server: Option<(usize, u32)>,
    /// The next revision it wants (it saw every change it follows before).
    next: u64,
}

/// The watchers of one schedule and the committed changes they are checked
/// against.
#[derive(Debug)]
pub(super) struct Watchers {
    watchers: Vec<SimWatcher>,
    /// The changes of each applied revision, from the first server to apply
    /// it; revisions below `floor` are dropped once no watcher needs them.
    committed: BTreeMap<u64, Vec<Change>>,
    floor: u64,
}

impl Default for Watchers {
    fn default() -> Watchers {
        Watchers {
            watchers: PREFIXES
                .iter()
                .map(|&prefix| SimWatcher {
                    prefix,
                    server: None,
                    next: 1,
                })
                .collect(),
            committed: BTreeMap::new(),
            floor: 1,
        }
    }
}

impl Watchers {
    /// Notes the changes a server applied in one entry (all of one revision).
    pub(super) fn on_applied(&mut self, changes: &[Change]) {
        let Some(revision) = changes.first().map(|c| c.revision) else {
            return;
        };
        if revision >= self.floor {
            self.committed
                .entry(revision)
                .or_insert_with(|| changes.to_vec());
        }
    }

    /// Drops committed revisions every watcher is past.
    fn prune(&mut self) {
        let floor = self.watchers.iter().map(|w| w.next).min().unwrap_or(1);
        if floor > self.floor {
            self.floor = floor;
            self.committed = self.committed.split_off(&floor);
        }
    }
}

impl World {
    /// Lets every watcher read what its server has for it, moving watchers
    /// whose server crashed or restarted, and checks what they saw.
    pub(super) fn follow_watches(&mut self) -> Result<(), Violation> {
        for w in 0..self.watchers.watchers.len() {
            self.follow_watch(w)?;
        }
        self.watchers.prune();
        Ok(())
    }

    fn follow_watch(&mut self, w: usize) -> Result<(), Violation> {
        let watcher = &self.watchers.watchers[w];
        let current = watcher
            .server
            .filter(|&(node, incarnation)| self.is_current(node, incarnation));
        let node = match current {
            Some((node, _)) => node,
            None => {
                // Attach to the next running server after the last one (the
                // watcher's own slot at first), resuming from `next`.
                let slots = self.nodes.len();
                let after = watcher.server.map_or(w % slots, |(node, _)| node + 1);
                let Some(node) = (0..slots)
                    .map(|i| (after + i) % slots)
                    .find(|&n| self.nodes[n].running.is_some())
                else {
                    return Ok(());
                };
                if watcher.server.is_some() {
                    self.stats.watch_resumes += 1;
                }
                let incarnation = self.nodes[node].incarnation;
                self.watchers.watchers[w].server = Some((node, incarnation));
                node
            }
        };
        let Some(running) = self.nodes[node].running.as_ref() else {
            return Ok(());
        };
        let watcher = &mut self.watchers.watchers[w];
        let prefix = watcher.prefix;
        match running
            .history
            .read(watcher.next, u64::MAX, |c| c.key.starts_with(prefix))
        {
            Ok((seen, next)) => {
                watchers_see_committed_changes(
                    prefix,
                    watcher.next,
                    next,
                    &seen,
                    &self.watchers.committed,
                )
                .map_err(|evidence| Violation {
                    invariant: "watchers_see_committed_changes",
                    rule: "a watch resumed from the revision after the last it saw gets every committed change it follows, once, in order (etcd's watch guarantee)",
                    evidence: format!("a watcher of {:?} on node {}: {evidence}", String::from_utf8_lossy(prefix), node + 1),
                })?;
                watcher.next = next;
                self.stats.watch_events += seen.len() as u64;
            }
            Err(_oldest) => {
                // Compacted: the client re-reads its keys at the server's
                // revision and watches from the one after it.
                watcher.next = running.history.head() + 1;
                self.stats.watch_compactions += 1;
            }
        }
        Ok(())
    }
}

/// What a watcher read for revisions `[from, next)` under `prefix` must be
/// exactly the committed changes of those revisions under it, in order;
/// `Err` describes the first difference.
fn watchers_see_committed_changes(
    prefix: &[u8],
    from: u64,
    next: u64,
    seen: &[Change],
    committed: &BTreeMap<u64, Vec<Change>>,
) -> Result<(), String> {
    if next < from {
        return Err(format!(
            "its server moved the watch back from {from} to {next}"
        ));
    }
    if let Some(missing) = (from..next).find(|r| !committed.contains_key(r)) {
        return Err(format!(
            "its server answered revisions {from}..{next} but revision {missing} was never applied"
        ));
    }
    let expected: Vec<&Change> = committed
        .range(from..next)
        .flat_map(|(_, changes)| changes)
        .filter(|c| c.key.starts_with(prefix))
        .collect();
    let position = expected
        .iter()
        .zip(seen)
        .position(|(e, s)| *e != s)
        .unwrap_or(expected.len().min(seen.len()));
    if position == expected.len() && position == seen.len() {
        return Ok(());
    }
    let show = |c: Option<&Change>| {
        c.map_or("nothing".to_string(), |c| {
            format!("{} at {}", String::from_utf8_lossy(&c.key), c.revision)
        })
    };
    Err(format!(
        "for revisions {from}..{next} event {position} is {} where the committed changes have {} ({} seen, {} committed)",
        show(seen.get(position)),
        show(expected.get(position).copied()),
        seen.len(),
        expected.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn put(revision: u64, key: &str) -> Change {
        Change {
            revision,
            key: Arc::from(key.as_bytes()),
            value: Some(Arc::new(format!("v{revision}").into_bytes())),
        }
    }

    fn committed() -> BTreeMap<u64, Vec<Change>> {
        let mut c = BTreeMap::new();
        c.insert(1, vec![put(1, "k0")]);
        c.insert(2, vec![put(2, "x"), put(2, "k1")]);
        c.insert(3, vec![put(3, "k0"), put(3, "k2")]);
        c.insert(4, vec![put(4, "k2")]);
        c
    }

    /// The check passes the committed sequence and catches a duplicate, a
    /// gap, a reordering, a changed value and a revision never applied.
    #[test]
    fn a_corrupted_watch_sequence_is_caught() {
        let c = committed();
        let right = [
            put(1, "k0"),
            put(2, "k1"),
            put(3, "k0"),
            put(3, "k2"),
            put(4, "k2"),
        ];
        assert_eq!(
            watchers_see_committed_changes(b"k", 1, 5, &right, &c),
            Ok(())
        );
        assert_eq!(
            watchers_see_committed_changes(b"k0", 2, 4, &[put(3, "k0")], &c),
            Ok(())
        );
        let duplicate = [
            put(1, "k0"),
            put(2, "k1"),
            put(2, "k1"),
            put(3, "k0"),
            put(3, "k2"),
            put(4, "k2"),
        ];
        let gap = [put(1, "k0"), put(3, "k0"), put(3, "k2"), put(4, "k2")];
        let reordered = [
            put(1, "k0"),
            put(2, "k1"),
            put(3, "k2"),
            put(3, "k0"),
            put(4, "k2"),
        ];
        let mut changed = right.clone();
        changed[4].value = Some(Arc::new(b"other".to_vec()));
        for wrong in [&duplicate[..], &gap, &reordered, &changed, &right[..4]] {
            assert!(
                watchers_see_committed_changes(b"k", 1, 5, wrong, &c).is_err(),
                "{wrong:?}"
            );
        }
        assert!(watchers_see_committed_changes(b"k", 3, 2, &[], &c).is_err());
        let err = watchers_see_committed_changes(b"k", 1, 6, &right, &c).unwrap_err();
        assert!(err.contains("revision 5 was never applied"), "{err}");
    }
}
