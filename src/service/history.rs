//! The watch history: the store's recent changes, in revision order, bounded
//! by bytes.
//!
//! Every write the state machine applies adds its [`Change`]s here (a
//! transaction's share its revision, in the order it made them). The ring
//! drops whole revisions from the front once it holds more than its byte
//! bound, so a revision is either kept entirely or not at all: a watcher
//! resuming from revision `r` gets every change of `r` or a clear
//! "compacted". The history is not part of snapshots; after a restore it
//! starts at the snapshot's revision + 1 (etcd keeps its history in its
//! MVCC store; here a server keeps what it applied since its last restore,
//! which is what "any node serves a watch from its own applied state"
//! needs).

use std::collections::VecDeque;

use super::kv::Change;

/// Default bound of the history, in bytes (`-watch-history-bytes`).
pub const DEFAULT_HISTORY_BYTES: u64 = 16 << 20;

/// What a change costs the history: its key and value, plus the fixed
/// overhead of a record.
pub fn change_bytes(change: &Change) -> u64 {
    let value = change.value.as_ref().map_or(0, |v| v.len());
    (change.key.len() + value + 48) as u64
}

/// One kept change and where it sits in the stream of all bytes recorded.
#[derive(Debug, Clone)]
struct Kept {
    change: Change,
    /// Bytes recorded before this change since the history began.
    offset: u64,
}

/// The ring of recent changes.
#[derive(Debug)]
pub struct History {
    kept: VecDeque<Kept>,
    /// Invariant: the sum of [`change_bytes`] over `kept`.
    bytes: u64,
    /// Most bytes kept (a revision larger than this is still kept whole
    /// until the next one arrives).
    limit: u64,
    /// Bytes recorded since the history began (the head's offset).
    recorded: u64,
    /// Every change of every revision `>= oldest` is kept.
    /// Invariant: `oldest <= head + 1`.
    oldest: u64,
    /// The store's revision as of the last change recorded.
    head: u64,
}

impl History {
    /// An empty history of a store at revision `head`, keeping at most `limit` bytes.
    pub fn new(head: u64, limit: u64) -> History {
        History {
            kept: VecDeque::new(),
            bytes: 0,
            limit,
            recorded: 0,
            oldest: head + 1,
            head,
        }
    }

    /// The oldest revision whose changes are all kept (the head + 1 when
    /// none are).
    pub fn oldest(&self) -> u64 {
        self.oldest
    }

    /// The store's revision as of the last change recorded.
    pub fn head(&self) -> u64 {
        self.head
    }

    /// Bytes kept now.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Records the changes of one applied entry (all of one revision, or
    /// none), then drops whole revisions from the front past the bound.
    pub fn record(&mut self, changes: &[Change]) {
        for change in changes {
            debug_assert!(change.revision >= self.head, "revisions only grow");
            self.head = change.revision;
            let cost = change_bytes(change);
            self.kept.push_back(Kept {
                change: change.clone(),
                offset: self.recorded,
            });
            self.recorded += cost;
            self.bytes += cost;
        }
        while self.bytes > self.limit {
            // Never drop the head's revision: it would leave a gap at the end.
            let Some(front) = self.kept.front().map(|k| k.change.revision) else {
                break;
            };
            if front == self.head {
                break;
            }
            while self
                .kept
                .front()
                .is_some_and(|k| k.change.revision == front)
            {
                if let Some(dropped) = self.kept.pop_front() {
                    self.bytes -= change_bytes(&dropped.change);
                }
            }
            self.oldest = front + 1;
        }
    }

    /// Forgets everything: the store was replaced by a snapshot at `head`.
    pub fn reset(&mut self, head: u64) {
        *self = History::new(head, self.limit);
    }

    /// Where the changes of revision `from` onward begin in the ring;
    /// `Err(oldest)` if some of them are no longer kept.
    fn position(&self, from: u64) -> Result<usize, u64> {
        if from < self.oldest {
            return Err(self.oldest);
        }
        Ok(self.kept.partition_point(|k| k.change.revision < from))
    }

    /// How many bytes of history lie between revision `from` and the head.
    pub fn lag(&self, from: u64) -> u64 {
        match self.position(from) {
            Ok(at) => self.kept.get(at).map_or(0, |k| self.recorded - k.offset),
            Err(_) => self.recorded,
        }
    }

    /// Copies changes from revision `from` on that `keep` accepts, whole
    /// revisions only, until about `budget` bytes of history were scanned;
    /// returns them with the next revision to ask for. `Err(oldest)` if
    /// revision `from` is no longer kept.
    pub fn read(
        &self,
        from: u64,
        budget: u64,
        keep: impl Fn(&Change) -> bool,
    ) -> Result<(Vec<Change>, u64), u64> {
        let at = self.position(from)?;
        let mut out = Vec::new();
        let mut next = from;
        let mut scanned = 0;
        let mut seen = 0;
        for kept in self.kept.range(at..) {
            let revision = kept.change.revision;
            if revision >= next && scanned >= budget {
                break;
            }
            if keep(&kept.change) {
                out.push(kept.change.clone());
            }
            scanned += change_bytes(&kept.change);
            seen += 1;
            next = revision + 1;
        }
        // Everything up to the head was scanned.
        if at + seen == self.kept.len() {
            next = next.max(self.head + 1);
        }
        Ok((out, next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn put(revision: u64, key: &str, value: &str) -> Change {
        Change {
            revision,
            key: Arc::from(key.as_bytes()),
            value: Some(Arc::new(value.as_bytes().to_vec())),
        }
    }

    fn revisions(changes: &[Change]) -> Vec<u64> {
        changes.iter().map(|c| c.revision).collect()
    }

    #[test]
    fn reads_return_whole_revisions_in_order_from_any_kept_revision() {
        let mut h = History::new(0, 1 << 20);
        h.record(&[put(1, "a", "1")]);
        h.record(&[put(2, "a", "2"), put(2, "b", "2")]);
        h.record(&[]);
        h.record(&[put(3, "c", "3")]);
        let (all, next) = h.read(1, u64::MAX, |_| true).unwrap();
        assert_eq!((revisions(&all), next), (vec![1, 2, 2, 3], 4));
        let (from_2, _) = h.read(2, u64::MAX, |_| true).unwrap();
        assert_eq!(revisions(&from_2), vec![2, 2, 3]);
        let (only_b, next) = h.read(1, u64::MAX, |c| &*c.key == b"b").unwrap();
        assert_eq!((revisions(&only_b), next), (vec![2], 4));
        assert_eq!(h.read(4, u64::MAX, |_| true).unwrap(), (vec![], 4));
    }

    #[test]
    fn a_small_budget_still_ends_on_a_revision_boundary() {
        let mut h = History::new(0, 1 << 20);
        h.record(&[put(1, "a", "1"), put(1, "b", "1"), put(1, "c", "1")]);
        h.record(&[put(2, "a", "2")]);
        let (first, next) = h.read(1, 1, |_| true).unwrap();
        assert_eq!((revisions(&first), next), (vec![1, 1, 1], 2));
        let (second, next) = h.read(next, 1, |_| true).unwrap();
        assert_eq!((revisions(&second), next), (vec![2], 3));
    }

    #[test]
    fn the_bound_drops_whole_revisions_and_older_reads_say_compacted() {
        let one = change_bytes(&put(1, "k", "v"));
        let mut h = History::new(10, one * 3);
        h.record(&[put(11, "k", "v"), put(11, "l", "v")]);
        h.record(&[put(12, "k", "v")]);
        assert_eq!(h.oldest(), 11);
        h.record(&[put(13, "k", "v")]);
        assert_eq!(h.oldest(), 12, "revision 11 went whole");
        assert_eq!(h.bytes(), one * 2);
        assert_eq!(h.read(11, u64::MAX, |_| true), Err(12));
        assert_eq!(h.read(5, u64::MAX, |_| true), Err(12));
        assert_eq!(
            revisions(&h.read(12, u64::MAX, |_| true).unwrap().0),
            [12, 13]
        );
        assert_eq!(h.lag(12), one * 2);
        assert_eq!(h.lag(14), 0);
        h.reset(40);
        assert_eq!((h.oldest(), h.head()), (41, 40));
        assert_eq!(h.read(40, u64::MAX, |_| true), Err(41));
        assert_eq!(h.read(41, u64::MAX, |_| true), Ok((vec![], 41)));
    }

    /// Random writes (some revisions with several changes) under a small
    /// bound, and readers with random budgets and filters that resume from
    /// where they stopped: each sees exactly the recorded changes it
    /// follows, in order, once each, or learns that it was compacted.
    #[test]
    fn resuming_readers_see_every_change_once_in_order_or_compacted() {
        use crate::raft::rng::Rng;
        for seed in 1..100 {
            let mut rng = Rng::new(seed);
            let mut h = History::new(0, rng.range(200, 3000));
            let mut all = Vec::new();
            let mut readers: Vec<(u64, Vec<Change>, u8)> =
                (0..4).map(|i| (1, Vec::new(), b'a' + i)).collect();
            for revision in 1..300 {
                let changes: Vec<Change> = (0..rng.range(1, 4))
                    .map(|_| {
                        let key = [b'a' + rng.range(0, 4) as u8];
                        let value = "v".repeat(rng.range(0, 40) as usize);
                        put(revision, std::str::from_utf8(&key).unwrap(), &value)
                    })
                    .collect();
                h.record(&changes);
                all.extend(changes);
                for (next, seen, key) in &mut readers {
                    let key = *key;
                    match h.read(*next, rng.range(1, 500), |c| c.key[0] == key) {
                        Ok((got, after)) => {
                            seen.extend(got);
                            *next = after;
                        }
                        Err(oldest) => {
                            assert!(*next < oldest, "seed {seed}");
                            // A compacted reader re-reads: starts over here.
                            *next = h.head() + 1;
                            seen.retain(|_| false);
                            seen.push(put(0, "restart", ""));
                        }
                    }
                }
            }
            for (_, seen, key) in &readers {
                // Since its last restart, exactly the changes it follows.
                let start = seen
                    .iter()
                    .rposition(|c| c.revision == 0)
                    .map_or(0, |i| i + 1);
                let mine = &seen[start..];
                let Some(first) = mine.first() else { continue };
                let expected: Vec<&Change> = all
                    .iter()
                    .filter(|c| c.key[0] == *key && c.revision >= first.revision)
                    .take(mine.len())
                    .collect();
                assert_eq!(mine.iter().collect::<Vec<_>>(), expected, "seed {seed}");
            }
        }
    }
}
