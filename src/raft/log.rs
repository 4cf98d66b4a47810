//! The replicated log as one server holds it in memory: a snapshot prefix plus entries.
//!
//! After compaction (§7) the log no longer starts at index 1: entries up to
//! `snapshot_index` live only in the snapshot, and the log remembers just that
//! index and its term so the AppendEntries consistency check still works at the
//! boundary. Index 0 (term 0) is the empty prefix every log starts from.

use super::messages::{Entry, Index, Term};

/// Log entries after a snapshot prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RaftLog {
    /// The last index covered by the snapshot (0 when there is none).
    snapshot_index: Index,
    /// The term of the entry at `snapshot_index` (0 when there is none).
    snapshot_term: Term,
    /// Invariant: `entries[i]` has index `snapshot_index + 1 + i`.
    entries: Vec<Entry>,
}

impl RaftLog {
    /// A log holding `entries` right after a snapshot ending at `snapshot_index`.
    pub fn new(snapshot_index: Index, snapshot_term: Term, entries: Vec<Entry>) -> Self {
        Self {
            snapshot_index,
            snapshot_term,
            entries,
        }
    }

    /// The last index the snapshot covers.
    pub fn snapshot_index(&self) -> Index {
        self.snapshot_index
    }

    /// The term of the entry at [`Self::snapshot_index`].
    pub fn snapshot_term(&self) -> Term {
        self.snapshot_term
    }

    /// Index of the first entry held in memory.
    pub fn first_index(&self) -> Index {
        self.snapshot_index + 1
    }

    /// Index of the last entry (the snapshot's last index if no entries follow it).
    pub fn last_index(&self) -> Index {
        self.snapshot_index + self.entries.len() as Index
    }

    /// Term of the last entry.
    pub fn last_term(&self) -> Term {
        self.entries.last().map_or(self.snapshot_term, |e| e.term)
    }

    /// The term of the entry at `index`, if this log knows it (the snapshot's last
    /// index counts; earlier compacted indexes and indexes past the end do not).
    pub fn term(&self, index: Index) -> Option<Term> {
        if index == self.snapshot_index {
            Some(self.snapshot_term)
        } else {
            self.entry(index).map(|e| e.term)
        }
    }

    /// The entry at `index`, if held in memory.
    pub fn entry(&self, index: Index) -> Option<&Entry> {
        let offset = index.checked_sub(self.first_index())?;
        self.entries.get(usize::try_from(offset).ok()?)
    }

    /// Clones the entries from `from` on, stopping once `max_bytes` of commands
    /// are taken (but always taking at least one entry if any exists).
    pub fn entries_from(&self, from: Index, max_bytes: usize) -> Vec<Entry> {
        let Some(start) = from
            .checked_sub(self.first_index())
            .and_then(|o| usize::try_from(o).ok())
        else {
            return Vec::new();
        };
        let mut taken = Vec::new();
        let mut bytes = 0;
        for entry in self.entries.iter().skip(start) {
            if !taken.is_empty() && bytes + entry.command.len() > max_bytes {
                break;
            }
            bytes += entry.command.len();
            taken.push(entry.clone());
        }
        taken
    }

    /// Appends one entry and returns its index.
    pub fn append(&mut self, entry: Entry) -> Index {
        self.entries.push(entry);
        self.last_index()
    }

    /// Drops every entry at `index` or later.
    ///
    /// Invariant: never called on committed entries (§5.3: the log matching
    /// property means a conflict can only be found above the commit index).
    pub fn truncate_from(&mut self, index: Index) {
        debug_assert!(index > self.snapshot_index, "cannot truncate the snapshot");
        let keep = index.saturating_sub(self.first_index());
        self.entries
            .truncate(usize::try_from(keep).unwrap_or(usize::MAX));
    }

    /// The first index of the run of `term` entries that contains `index`, looking
    /// back no further than the first entry held in memory.
    pub fn first_index_of_term_run(&self, index: Index) -> Index {
        let Some(term) = self.term(index) else {
            return index;
        };
        let mut first = index;
        while first > self.first_index() && self.term(first - 1) == Some(term) {
            first -= 1;
        }
        first
    }

    /// The last index holding an entry of `term`, if this log has one in memory.
    pub fn last_index_of_term(&self, term: Term) -> Option<Index> {
        (self.first_index()..=self.last_index())
            .rev()
            .take_while(|&i| self.term(i).is_some_and(|t| t >= term))
            .find(|&i| self.term(i) == Some(term))
    }

    /// §5.4.1: is a log ending at (`last_log_index`, `last_log_term`) at least as
    /// up-to-date as this one? Later last term wins; equal terms, longer log wins.
    pub fn is_up_to_date(&self, last_log_index: Index, last_log_term: Term) -> bool {
        (last_log_term, last_log_index) >= (self.last_term(), self.last_index())
    }

    /// Forgets entries up to `index`, which a snapshot now covers (§7). Entries
    /// after `index` are kept.
    pub fn compact_to(&mut self, index: Index, term: Term) {
        debug_assert!(index > self.snapshot_index && index <= self.last_index());
        let drop = usize::try_from(index - self.snapshot_index).unwrap_or(usize::MAX);
        self.entries.drain(..drop.min(self.entries.len()));
        self.snapshot_index = index;
        self.snapshot_term = term;
    }

    /// Replaces the whole log with an installed snapshot: nothing follows it.
    pub fn reset_to_snapshot(&mut self, index: Index, term: Term) {
        self.entries.clear();
        self.snapshot_index = index;
        self.snapshot_term = term;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_with_terms(snapshot_index: Index, snapshot_term: Term, terms: &[Term]) -> RaftLog {
        let entries = terms
            .iter()
            .map(|&term| Entry::command(term, vec![term as u8]))
            .collect();
        RaftLog::new(snapshot_index, snapshot_term, entries)
    }

    #[test]
    fn indexes_start_after_the_snapshot() {
        let log = log_with_terms(10, 3, &[3, 4, 4]);
        assert_eq!(log.first_index(), 11);
        assert_eq!(log.last_index(), 13);
        assert_eq!(log.last_term(), 4);
        assert_eq!(log.term(10), Some(3));
        assert_eq!(log.term(9), None);
        assert_eq!(log.term(14), None);
        assert_eq!(log.entry(12).map(|e| e.term), Some(4));
    }

    #[test]
    fn an_empty_log_ends_at_index_zero_term_zero() {
        let log = RaftLog::default();
        assert_eq!((log.last_index(), log.last_term()), (0, 0));
        assert_eq!(log.term(0), Some(0));
    }

    #[test]
    fn truncation_keeps_entries_before_the_index() {
        let mut log = log_with_terms(0, 0, &[1, 1, 2, 2]);
        log.truncate_from(3);
        assert_eq!(log.last_index(), 2);
        assert_eq!(log.last_term(), 1);
    }

    #[test]
    fn entries_from_respects_the_byte_budget_but_takes_at_least_one() {
        let mut log = RaftLog::default();
        for _ in 0..5 {
            log.append(Entry::command(1, vec![0; 100]));
        }
        assert_eq!(log.entries_from(1, 250).len(), 2);
        assert_eq!(log.entries_from(1, 10).len(), 1);
        assert_eq!(log.entries_from(6, 1000).len(), 0);
        assert_eq!(log.entries_from(0, 1000).len(), 0);
    }

    #[test]
    fn term_runs_are_found_for_fast_backtracking() {
        let log = log_with_terms(0, 0, &[1, 1, 4, 4, 4, 5]);
        assert_eq!(log.first_index_of_term_run(5), 3);
        assert_eq!(log.first_index_of_term_run(2), 1);
        assert_eq!(log.last_index_of_term(4), Some(5));
        assert_eq!(log.last_index_of_term(2), None);
        assert_eq!(log.last_index_of_term(6), None);
    }

    /// Reference: §5.4.1, the election restriction.
    #[test]
    fn up_to_date_compares_last_term_then_length() {
        let log = log_with_terms(0, 0, &[1, 2, 2]);
        assert!(log.is_up_to_date(3, 2));
        assert!(log.is_up_to_date(1, 3));
        assert!(!log.is_up_to_date(2, 2));
        assert!(!log.is_up_to_date(10, 1));
    }

    #[test]
    fn compaction_keeps_the_suffix_and_the_boundary_term() {
        let mut log = log_with_terms(0, 0, &[1, 1, 2, 3]);
        log.compact_to(2, 1);
        assert_eq!(log.first_index(), 3);
        assert_eq!(log.term(2), Some(1));
        assert_eq!(log.term(4), Some(3));
        log.reset_to_snapshot(10, 5);
        assert_eq!((log.last_index(), log.last_term()), (10, 5));
    }
}
