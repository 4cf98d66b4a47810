//! The key-value store: a map from keys to values, with revisions as etcd
//! keeps them.
//!
//! Keys are 1..=[`MAX_KEY`] arbitrary bytes, values 0..=[`MAX_VALUE`]
//! arbitrary bytes (an empty value is a value, not a delete). The store has
//! one revision, which every write that changes it increases by one (a
//! transaction's writes share one); each key carries the revision that
//! created it, the revision that last wrote it, and its version (writes since
//! it was created). A delete removes the key with its history: written again,
//! it starts over at version 1. Writes that change nothing (deleting a
//! missing key) leave the revision alone, as in etcd. Every write reports the
//! [`Change`]s it made, with their revision: what a watch will report.
//!
//! Taking a snapshot clones the store on the apply loop, so a clone must
//! cost little whatever the store's size. Two levels of sharing make it so:
//! - The map is split into [`SHARDS`] shards by a hash of the key, each
//!   behind an `Arc`: a clone copies 256 pointers. The first write to a
//!   shard that a snapshot still holds copies that shard (1/256 of the map)
//!   first ([`Arc::make_mut`]), so the copying a snapshot needs is spread
//!   over the writes that follow it, a small piece at a time.
//! - Keys and values are shared `Arc`s too: copying a shard copies its
//!   nodes, pointers and revisions, never the bytes of keys and values. A
//!   write replaces a key's value; `APPEND` extends a value in place when
//!   nothing else holds it and copies it once when a snapshot being written
//!   still does.
//!
//! The revisions live beside the value in the map's node (24 bytes), so a
//! write costs no allocation beyond its key and value. Ranges read the
//! shards in key order by merging them (see [`super::range`]).

use std::collections::btree_map::Entry as Slot;
use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::ops::Bound;
use std::sync::Arc;

use super::quota::kv_cost;
use super::snapshot_stream::{corrupt, SnapshotReader, SnapshotWriter};

/// How many shards the map is split into.
pub const SHARDS: usize = 256;
/// Longest key, in bytes.
pub const MAX_KEY: usize = 1024;
/// Largest value, in bytes.
pub const MAX_VALUE: usize = 1 << 20;

/// A stored value, shared with snapshots and replies (never copied to be read).
///
/// Trade-off: `Arc<Vec<u8>>` rather than `Arc<[u8]>`, one more indirection,
/// so that `APPEND` grows a value in place (amortized O(appended bytes))
/// instead of copying the whole value on every append.
pub type Value = Arc<Vec<u8>>;

/// A key's value and revisions (etcd's `KeyValue` without the key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The value.
    pub value: Value,
    /// The store revision of the write that created the key.
    pub create_revision: u64,
    /// The store revision of the write that last changed it.
    /// Invariant: `create_revision <= mod_revision`.
    pub mod_revision: u64,
    /// Writes since it was created (1 for the creating write).
    pub version: u64,
}

/// One key changed by a write: what a watch will report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The store revision of the write.
    pub revision: u64,
    /// The key.
    pub key: Arc<[u8]>,
    /// Its new value; `None` when the write deleted it.
    pub value: Option<Value>,
}

/// One shard: the keys whose hash picks it, in byte order.
pub(super) type Shard = BTreeMap<Arc<[u8]>, Entry>;

/// The store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    /// Invariant: [`SHARDS`] shards; a key lives in shard `shard_of(key)`.
    shards: Vec<Arc<Shard>>,
    /// Invariant: the sum of `kv_cost` over every pair (the quota's count).
    bytes: u64,
    /// The store's revision: that of the last write that changed it.
    /// Invariant: every key's `mod_revision` is at most this.
    revision: u64,
}

impl Default for Kv {
    fn default() -> Self {
        // One empty map shared by every shard until each is first written.
        let empty = Arc::new(Shard::new());
        Kv {
            shards: (0..SHARDS).map(|_| Arc::clone(&empty)).collect(),
            bytes: 0,
            revision: 0,
        }
    }
}

/// The shard `key` lives in: FNV-1a of its bytes (fixed, so every replica
/// shards alike).
fn shard_of(key: &[u8]) -> usize {
    let hash = key.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    (hash % SHARDS as u64) as usize
}

impl Kv {
    fn shard(&self, key: &[u8]) -> &Shard {
        &self.shards[shard_of(key)]
    }

    /// `key`'s shard, copied first if a snapshot still holds it.
    fn shard_mut(&mut self, key: &[u8]) -> &mut Shard {
        Arc::make_mut(&mut self.shards[shard_of(key)])
    }

    /// Every shard (for ranges, which merge them in key order).
    pub(super) fn shards(&self) -> &[Arc<Shard>] {
        &self.shards
    }

    /// The store's revision: that of the last write that changed it.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Marks the writes made at `revision` (one command, or one transaction)
    /// as done: the store is at `revision` from now on.
    pub(super) fn finish_revision(&mut self, revision: u64) {
        debug_assert_eq!(revision, self.revision + 1, "one revision per write");
        self.revision = revision;
    }

    /// `key`'s value and revisions, if present.
    pub fn get(&self, key: &[u8]) -> Option<&Entry> {
        self.shard(key).get(key)
    }

    /// The value of `key`, if present.
    pub fn value(&self, key: &[u8]) -> Option<&Value> {
        self.get(key).map(|e| &e.value)
    }

    /// Sets `key` to `value` at the store's next revision, reporting the change.
    pub fn put(&mut self, key: &[u8], value: Value, changes: &mut Vec<Change>) {
        let revision = self.revision + 1;
        self.put_at(key, value, revision, changes);
        self.finish_revision(revision);
    }

    /// Appends `value` to `key`'s value (a missing key is empty) at the
    /// store's next revision, reporting the change.
    pub fn append(&mut self, key: &[u8], value: &[u8], changes: &mut Vec<Change>) {
        let revision = self.revision + 1;
        self.append_at(key, value, revision, changes);
        self.finish_revision(revision);
    }

    /// Removes `key` at the store's next revision, if it is there (deleting
    /// a missing key changes nothing, the revision included).
    pub fn delete(&mut self, key: &[u8], changes: &mut Vec<Change>) {
        let revision = self.revision + 1;
        if self.delete_at(key, revision, changes) {
            self.finish_revision(revision);
        }
    }

    /// Sets `key` to `value` at `revision` (the store's next), reporting the
    /// change. The store's revision moves once [`Kv::finish_revision`] is
    /// called: a transaction's writes share one revision.
    pub(super) fn put_at(
        &mut self,
        key: &[u8],
        value: Value,
        revision: u64,
        changes: &mut Vec<Change>,
    ) {
        let cost = kv_cost(key.len(), value.len());
        let mut shrank = 0;
        // One search of the shard: a PUT of a new key (the common case)
        // needs the key's allocation anyway.
        let (key, entry) = match self.shard_mut(key).entry(Arc::from(key)) {
            // A snapshot being written may hold the old value: replace, never mutate.
            Slot::Occupied(slot) => {
                let key = Arc::clone(slot.key());
                let entry = slot.into_mut();
                shrank = kv_cost(key.len(), entry.value.len());
                entry.value = value;
                entry.mod_revision = revision;
                entry.version += 1;
                (key, &*entry)
            }
            Slot::Vacant(slot) => {
                let key = Arc::clone(slot.key());
                let entry = slot.insert(Entry {
                    value,
                    create_revision: revision,
                    mod_revision: revision,
                    version: 1,
                });
                (key, &*entry)
            }
        };
        let value = Some(Arc::clone(&entry.value));
        self.bytes = self.bytes - shrank + cost;
        changes.push(Change {
            revision,
            key,
            value,
        });
    }

    /// Appends `value` to `key`'s value at `revision`, treating a missing key
    /// as empty.
    pub(super) fn append_at(
        &mut self,
        key: &[u8],
        value: &[u8],
        revision: u64,
        changes: &mut Vec<Change>,
    ) {
        self.bytes += self.append_growth(key, value.len());
        let shard = self.shard_mut(key);
        // One search that yields the stored key (shared by the change) and
        // the entry to extend.
        let mut found = shard.range_mut::<[u8], _>((Bound::Included(key), Bound::Included(key)));
        let (key, value) = match found.next() {
            Some((key, entry)) => {
                let key = Arc::clone(key);
                // Copies the value first only if a snapshot being written holds it.
                Arc::make_mut(&mut entry.value).extend_from_slice(value);
                entry.mod_revision = revision;
                entry.version += 1;
                (key, Arc::clone(&entry.value))
            }
            None => {
                let key: Arc<[u8]> = Arc::from(key);
                let value = Arc::new(value.to_vec());
                let entry = Entry {
                    value: Arc::clone(&value),
                    create_revision: revision,
                    mod_revision: revision,
                    version: 1,
                };
                shard.insert(Arc::clone(&key), entry);
                (key, value)
            }
        };
        changes.push(Change {
            revision,
            key,
            value: Some(value),
        });
    }

    /// Removes `key` at `revision`; whether it was there (removing a missing
    /// key changes nothing and reports no change).
    pub(super) fn delete_at(
        &mut self,
        key: &[u8],
        revision: u64,
        changes: &mut Vec<Change>,
    ) -> bool {
        let Some((key, entry)) = self.shard_mut(key).remove_entry(key) else {
            return false;
        };
        self.bytes -= kv_cost(key.len(), entry.value.len());
        changes.push(Change {
            revision,
            key,
            value: None,
        });
        true
    }

    /// What `key` costs the quota now (0 if absent).
    pub fn cost(&self, key: &[u8]) -> u64 {
        self.get(key)
            .map_or(0, |e| kv_cost(key.len(), e.value.len()))
    }

    /// How much setting `key` to a value of `value_len` bytes would grow the
    /// state (0 if it would not).
    pub fn put_growth(&self, key: &[u8], value_len: usize) -> u64 {
        kv_cost(key.len(), value_len).saturating_sub(self.cost(key))
    }

    /// How much appending `value_len` bytes to `key` would grow the state.
    pub fn append_growth(&self, key: &[u8], value_len: usize) -> u64 {
        match self.get(key) {
            Some(_) => value_len as u64,
            None => kv_cost(key.len(), value_len),
        }
    }

    /// The store's size as the quota counts it.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Number of keys and bytes of keys plus values.
    pub fn size(&self) -> (usize, usize) {
        let (mut keys, mut bytes) = (0, 0);
        for (k, e) in self.pairs() {
            keys += 1;
            bytes += k.len() + e.value.len();
        }
        (keys, bytes)
    }

    /// Every pair: shard by shard, each in key order.
    fn pairs(&self) -> impl Iterator<Item = (&Arc<[u8]>, &Entry)> {
        self.shards.iter().flat_map(|shard| shard.iter())
    }

    /// Writes the store's encoding: revision, count, then each key, value,
    /// create revision, mod revision and version, shard by shard (the order
    /// every replica has: the shard hash is fixed; merging the shards into
    /// key order would make snapshots 3–4× slower to write).
    pub fn write_to<W: Write>(&self, w: &mut SnapshotWriter<W>) -> io::Result<()> {
        w.put_uvarint(self.revision)?;
        let count: usize = self.shards.iter().map(|shard| shard.len()).sum();
        w.put_uvarint(count as u64)?;
        for (k, e) in self.pairs() {
            w.put_bytes(k)?;
            w.put_bytes(&e.value)?;
            w.put_uvarint(e.create_revision)?;
            w.put_uvarint(e.mod_revision)?;
            w.put_uvarint(e.version)?;
        }
        Ok(())
    }

    /// Reads a store written by [`Kv::write_to`]; a key twice, or revisions
    /// that break the invariants, are corrupt.
    pub fn read_from<R: Read>(r: &mut SnapshotReader<R>) -> io::Result<Self> {
        let mut kv = Kv {
            revision: r.get_uvarint()?,
            ..Kv::default()
        };
        for _ in 0..r.get_uvarint()? {
            let (key, value) = (r.get_vec()?, r.get_vec()?);
            let entry = Entry {
                value: Arc::new(value),
                create_revision: r.get_uvarint()?,
                mod_revision: r.get_uvarint()?,
                version: r.get_uvarint()?,
            };
            let valid = entry.create_revision <= entry.mod_revision
                && entry.mod_revision <= kv.revision
                && entry.version >= 1;
            if !valid {
                return Err(corrupt(format!("key {key:?}: revisions out of order")));
            }
            kv.insert_read(key, entry)?;
        }
        Ok(kv)
    }

    /// Reads a store written without revisions (snapshot versions 2 and 3:
    /// count, then key/value pairs). Such a store has no history to recover:
    /// its keys read as created at revision 1 (version 1), and the store as
    /// at revision 1 if it holds any.
    pub fn read_without_revisions<R: Read>(r: &mut SnapshotReader<R>) -> io::Result<Self> {
        let mut kv = Kv::default();
        for _ in 0..r.get_uvarint()? {
            let (key, value) = (r.get_vec()?, r.get_vec()?);
            let entry = Entry {
                value: Arc::new(value),
                create_revision: 1,
                mod_revision: 1,
                version: 1,
            };
            kv.insert_read(key, entry)?;
            kv.revision = 1;
        }
        Ok(kv)
    }

    /// Adds a pair read from a snapshot.
    fn insert_read(&mut self, key: Vec<u8>, entry: Entry) -> io::Result<()> {
        if key.is_empty() || key.len() > MAX_KEY || entry.value.len() > MAX_VALUE {
            return Err(corrupt(format!("a key or value out of bounds ({key:?})")));
        }
        self.bytes += kv_cost(key.len(), entry.value.len());
        if self
            .shard_mut(&key)
            .insert(Arc::from(key.as_slice()), entry)
            .is_some()
        {
            return Err(corrupt(format!("key {key:?} twice")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Single writes as the state machine makes them: each at the next revision.
    fn put(kv: &mut Kv, key: &str, value: &str) -> Vec<Change> {
        let (mut changes, revision) = (Vec::new(), kv.revision() + 1);
        kv.put_at(
            key.as_bytes(),
            Arc::new(value.into()),
            revision,
            &mut changes,
        );
        kv.finish_revision(revision);
        changes
    }

    fn append(kv: &mut Kv, key: &str, value: &str) {
        let revision = kv.revision() + 1;
        kv.append_at(key.as_bytes(), value.as_bytes(), revision, &mut Vec::new());
        kv.finish_revision(revision);
    }

    fn delete(kv: &mut Kv, key: &str) -> Vec<Change> {
        let (mut changes, revision) = (Vec::new(), kv.revision() + 1);
        if kv.delete_at(key.as_bytes(), revision, &mut changes) {
            kv.finish_revision(revision);
        }
        changes
    }

    fn text(kv: &Kv, key: &str) -> Option<String> {
        kv.value(key.as_bytes())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    fn revisions(kv: &Kv, key: &str) -> Option<(u64, u64, u64)> {
        kv.get(key.as_bytes())
            .map(|e| (e.create_revision, e.mod_revision, e.version))
    }

    #[test]
    fn put_append_get_del() {
        let mut kv = Kv::default();
        assert_eq!(text(&kv, "k"), None);
        append(&mut kv, "k", "a");
        append(&mut kv, "k", "b c");
        assert_eq!(text(&kv, "k").as_deref(), Some("ab c"));
        put(&mut kv, "k", "x");
        assert_eq!(text(&kv, "k").as_deref(), Some("x"));
        delete(&mut kv, "k");
        assert_eq!(text(&kv, "k"), None);
    }

    /// Reference: etcd's data model — one store revision per write; per key
    /// create and mod revisions and a version that a delete resets.
    #[test]
    fn every_write_moves_the_revision_and_stamps_its_key() {
        let mut kv = Kv::default();
        assert_eq!(kv.revision(), 0);
        put(&mut kv, "a", "1");
        put(&mut kv, "b", "1");
        append(&mut kv, "a", "2");
        assert_eq!(kv.revision(), 3);
        assert_eq!(revisions(&kv, "a"), Some((1, 3, 2)));
        assert_eq!(revisions(&kv, "b"), Some((2, 2, 1)));
        assert!(delete(&mut kv, "missing").is_empty(), "no change");
        assert_eq!(kv.revision(), 3, "deleting nothing changes nothing");
        let deleted = delete(&mut kv, "a");
        assert_eq!(kv.revision(), 4);
        assert_eq!(deleted[0].revision, 4);
        assert_eq!(deleted[0].value, None);
        let created = put(&mut kv, "a", "again");
        assert_eq!(revisions(&kv, "a"), Some((5, 5, 1)), "a new life");
        assert_eq!(&*created[0].key, b"a");
        assert_eq!(
            created[0].value.as_deref().map(Vec::as_slice),
            Some(&b"again"[..])
        );
        put(&mut kv, "b", "");
        assert_eq!(revisions(&kv, "b"), Some((2, 6, 2)));
        assert_eq!(text(&kv, "b").as_deref(), Some(""), "empty is a value");
    }

    #[test]
    fn the_size_follows_every_write() {
        let mut kv = Kv::default();
        assert_eq!(kv.put_growth(b"k", 3), kv_cost(1, 3));
        put(&mut kv, "k", "abc");
        assert_eq!(kv.bytes(), kv_cost(1, 3));
        assert_eq!(kv.append_growth(b"k", 2), 2);
        append(&mut kv, "k", "de");
        assert_eq!(kv.bytes(), kv_cost(1, 5));
        assert_eq!(kv.put_growth(b"k", 1), 0, "shrinking does not grow");
        put(&mut kv, "k", "x");
        assert_eq!(kv.bytes(), kv_cost(1, 1));
        append(&mut kv, "new", "v");
        delete(&mut kv, "k");
        delete(&mut kv, "absent");
        assert_eq!(kv.bytes(), kv_cost(3, 1));
    }

    /// Taking a snapshot clones the store: the clone must share every key and
    /// value (copying pointers, not bytes), and a write on either side must
    /// leave the other as it was.
    #[test]
    fn a_clone_shares_values_and_is_unaffected_by_later_writes_and_vice_versa() {
        let mut original = Kv::default();
        for (k, v) in [("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")] {
            put(&mut original, k, v);
        }
        let mut copy = original.clone();
        for ((key, entry), (_, copied)) in original.pairs().zip(copy.pairs()) {
            assert!(
                Arc::ptr_eq(&entry.value, &copied.value),
                "{key:?} was copied"
            );
        }
        append(&mut original, "a", "+");
        put(&mut original, "b", "two");
        delete(&mut original, "c");
        append(&mut copy, "d", "!");
        put(&mut copy, "e", "5");
        let both = |k| (text(&original, k), text(&copy, k));
        let some = |s: &str| Some(s.to_string());
        assert_eq!(both("a"), (some("1+"), some("1")));
        assert_eq!(both("b"), (some("two"), some("2")));
        assert_eq!(both("c"), (None, some("3")));
        assert_eq!(both("d"), (some("4"), some("4!")));
        assert_eq!(both("e"), (None, some("5")));
        assert_eq!(
            original.bytes(),
            kv_cost(1, 2) + kv_cost(1, 3) + kv_cost(1, 1)
        );
        assert_eq!((original.revision(), copy.revision()), (7, 6));
    }

    /// Once nothing else holds a value, `APPEND` grows it where it is.
    #[test]
    fn an_unshared_value_is_appended_to_in_place() {
        let mut kv = Kv::default();
        put(&mut kv, "k", "x");
        let at = |kv: &Kv| Arc::as_ptr(&kv.get(b"k").unwrap().value);
        let before = at(&kv);
        append(&mut kv, "k", "y");
        assert_eq!(at(&kv), before);
        let copy = kv.clone();
        append(&mut kv, "k", "z");
        assert_ne!(at(&kv), before, "shared: copied first");
        assert_eq!(
            (text(&kv, "k"), text(&copy, "k")),
            (Some("xyz".into()), Some("xy".into()))
        );
    }

    /// A clone copies the shards' pointers; the first write after it copies
    /// the one shard it touches, and the clone keeps the rest shared.
    #[test]
    fn a_clone_shares_every_shard_and_a_write_copies_one() {
        let mut kv = Kv::default();
        for i in 0..2000 {
            put(&mut kv, &format!("key-{i}"), "v");
        }
        let copy = kv.clone();
        let shared = |a: &Kv, b: &Kv| {
            a.shards
                .iter()
                .zip(&b.shards)
                .filter(|(x, y)| Arc::ptr_eq(x, y))
                .count()
        };
        assert_eq!(shared(&kv, &copy), SHARDS);
        put(&mut kv, "key-7", "w");
        put(&mut kv, "key-7", "x");
        assert_eq!(shared(&kv, &copy), SHARDS - 1);
        assert_eq!(
            (text(&kv, "key-7"), text(&copy, "key-7")),
            (Some("x".into()), Some("v".into()))
        );
    }

    fn round_trip(kv: &Kv) -> Kv {
        let mut bytes = Vec::new();
        let mut w = SnapshotWriter::new(&mut bytes);
        kv.write_to(&mut w).unwrap();
        w.finish().unwrap();
        let mut r = SnapshotReader::new(&bytes[..]);
        let read = Kv::read_from(&mut r).unwrap();
        r.finish().unwrap();
        read
    }

    /// The encoding lists every key once, and reads back to an equal store
    /// (every key in its shard, every revision kept).
    #[test]
    fn the_encoding_lists_every_key_once_and_reads_back_equal() {
        let mut kv = Kv::default();
        for i in 0..1000u32 {
            let key = format!("{}", i.wrapping_mul(2_654_435_761) % 100_000);
            put(&mut kv, &key, &i.to_string());
        }
        delete(&mut kv, "0");
        let mut keys: Vec<&[u8]> = kv.pairs().map(|(k, _)| &**k).collect();
        let count = keys.len();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!((keys.len(), count), (kv.size().0, kv.size().0));
        assert!(!keys.contains(&&b"0"[..]) && keys.contains(&&b"35761"[..]));
        let read = round_trip(&kv);
        assert_eq!(read, kv);
        assert_eq!(read.bytes(), kv.bytes());
    }

    /// Keys and values are bytes: every byte value, line breaks, NUL, an
    /// empty value, the largest key and value; all read back as they were.
    #[test]
    fn binary_keys_and_values_round_trip_byte_for_byte() {
        let mut kv = Kv::default();
        let every_byte: Vec<u8> = (0..=255).collect();
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (
                every_byte.clone(),
                every_byte.iter().rev().copied().collect(),
            ),
            (b"line\nbreak\r\n".to_vec(), b"a\nb\r\n\0".to_vec()),
            (vec![0], Vec::new()),
            (vec![0xff; MAX_KEY], vec![0x80; MAX_VALUE]),
            ((0..=255).map(|b| b ^ 0x55).collect(), vec![0xc3, 0x28]),
        ];
        for (i, (key, value)) in pairs.iter().enumerate() {
            kv.put_at(key, Arc::new(value.clone()), i as u64 + 1, &mut Vec::new());
            kv.finish_revision(i as u64 + 1);
        }
        let read = round_trip(&kv);
        for (key, value) in &pairs {
            assert_eq!(read.value(key).map(|v| v.as_slice()), Some(&value[..]));
        }
        assert_eq!(read, kv);
    }

    #[test]
    fn snapshots_with_impossible_revisions_are_refused() {
        let mut bytes = Vec::new();
        let mut w = SnapshotWriter::new(&mut bytes);
        // Store revision 3, one key mod revision 5 (beyond the store's).
        for v in [3u64, 1] {
            w.put_uvarint(v).unwrap();
        }
        w.put_bytes(b"k").unwrap();
        w.put_bytes(b"v").unwrap();
        for v in [1u64, 5, 1] {
            w.put_uvarint(v).unwrap();
        }
        w.finish().unwrap();
        let refused = Kv::read_from(&mut SnapshotReader::new(&bytes[..])).unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::InvalidData);
    }
}
