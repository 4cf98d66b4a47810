//! The key-value store: a map from keys to values.
//!
//! Taking a snapshot clones the store on the apply loop, so a clone must
//! cost little whatever the store's size. Two levels of sharing make it so:
//! - The map is split into [`SHARDS`] shards by a hash of the key, each
//!   behind an `Arc`: a clone copies 256 pointers. The first write to a
//!   shard that a snapshot still holds copies that shard (1/256 of the map)
//!   first ([`Arc::make_mut`]), so the copying a snapshot needs is spread
//!   over the writes that follow it, a small piece at a time.
//! - Keys and values are shared `Arc`s too: copying a shard copies its
//!   nodes and pointers, never the bytes of keys and values. A write
//!   replaces a key's `Arc`; `APPEND` extends a value in place when nothing
//!   else holds it and copies it once when a snapshot being written still
//!   does.
//!
//! Before shards, the whole map was copied at once: with 140,000 keys that
//! held the apply loop for 11–44 ms per snapshot, the slowest requests of a
//! 200,000-PUT benchmark row.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::sync::Arc;

use super::quota::kv_cost;
use super::reply::Reply;
use super::snapshot_stream::{corrupt, SnapshotReader, SnapshotWriter};

/// How many shards the map is split into.
pub const SHARDS: usize = 256;

/// One shard: the keys whose hash picks it, sorted.
type Shard = BTreeMap<Arc<str>, Arc<String>>;

/// Keys and values are text (the protocol is line-based UTF-8).
///
/// Trade-off: values are `Arc<String>` rather than `Arc<str>`, one more
/// indirection, so that `APPEND` grows a value in place (amortized O(appended
/// bytes)) instead of copying the whole value on every append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    /// Invariant: [`SHARDS`] shards; a key lives in shard `shard_of(key)`.
    shards: Vec<Arc<Shard>>,
    /// Invariant: the sum of `kv_cost` over every pair (the quota's count).
    bytes: u64,
}

impl Default for Kv {
    fn default() -> Self {
        // One empty map shared by every shard until each is first written.
        let empty = Arc::new(Shard::new());
        Kv {
            shards: (0..SHARDS).map(|_| Arc::clone(&empty)).collect(),
            bytes: 0,
        }
    }
}

/// The shard `key` lives in: FNV-1a of its bytes (fixed, so every replica
/// shards alike).
fn shard_of(key: &str) -> usize {
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    (hash % SHARDS as u64) as usize
}

impl Kv {
    fn shard(&self, key: &str) -> &Shard {
        &self.shards[shard_of(key)]
    }

    /// `key`'s shard, copied first if a snapshot still holds it.
    fn shard_mut(&mut self, key: &str) -> &mut Shard {
        Arc::make_mut(&mut self.shards[shard_of(key)])
    }

    /// Sets `key` to `value`.
    pub fn put(&mut self, key: &str, value: &str) -> Reply {
        let cost = kv_cost(key, value.len());
        let value = Arc::new(value.to_string());
        // One search of the shard: a PUT of a new key (the common case)
        // needs the key's allocation anyway.
        let mut shrank = 0;
        match self.shard_mut(key).entry(Arc::from(key)) {
            // A snapshot being written may hold the old value: replace, never mutate.
            Entry::Occupied(mut slot) => {
                shrank = kv_cost(key, slot.get().len());
                slot.insert(value);
            }
            Entry::Vacant(slot) => {
                slot.insert(value);
            }
        }
        self.bytes = self.bytes - shrank + cost;
        Reply::Ok
    }

    /// Appends `value` to `key`'s value, treating a missing key as empty.
    pub fn append(&mut self, key: &str, value: &str) -> Reply {
        self.bytes += self.append_growth(key, value);
        let shard = self.shard_mut(key);
        match shard.get_mut(key) {
            // Copies the value first only if a snapshot being written holds it.
            Some(slot) => Arc::make_mut(slot).push_str(value),
            None => {
                shard.insert(Arc::from(key), Arc::new(value.to_string()));
            }
        }
        Reply::Ok
    }

    /// Removes `key` (removing a missing key is not an error).
    pub fn del(&mut self, key: &str) -> Reply {
        if self.shard(key).contains_key(key) {
            self.bytes -= self.cost(key);
            self.shard_mut(key).remove(key);
        }
        Reply::Ok
    }

    /// The value of `key`, if present.
    pub fn value(&self, key: &str) -> Option<&str> {
        self.shard(key).get(key).map(|v| v.as_str())
    }

    /// What `key` costs the quota now (0 if absent).
    fn cost(&self, key: &str) -> u64 {
        self.shard(key)
            .get(key)
            .map_or(0, |v| kv_cost(key, v.len()))
    }

    /// How much `put(key, value)` would grow the state (0 if it would not).
    pub fn put_growth(&self, key: &str, value: &str) -> u64 {
        kv_cost(key, value.len()).saturating_sub(self.cost(key))
    }

    /// How much `append(key, value)` would grow the state.
    pub fn append_growth(&self, key: &str, value: &str) -> u64 {
        match self.shard(key).get(key) {
            Some(_) => value.len() as u64,
            None => kv_cost(key, value.len()),
        }
    }

    /// The store's size as the quota counts it.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// `VALUE v` (the stored value, shared) or `NOT_FOUND`.
    pub fn get(&self, key: &str) -> Reply {
        match self.shard(key).get(key) {
            Some(v) => Reply::Value(Arc::clone(v)),
            None => Reply::NotFound,
        }
    }

    /// Number of keys and bytes of keys plus values.
    pub fn size(&self) -> (usize, usize) {
        let (mut keys, mut bytes) = (0, 0);
        for (k, v) in self.pairs() {
            keys += 1;
            bytes += k.len() + v.len();
        }
        (keys, bytes)
    }

    /// Every pair: shard by shard, each in key order.
    fn pairs(&self) -> impl Iterator<Item = (&Arc<str>, &Arc<String>)> {
        self.shards.iter().flat_map(|shard| shard.iter())
    }

    /// Writes the store's encoding: count, then key/value pairs, shard by
    /// shard (the order every replica has: the shard hash is fixed; merging
    /// the shards into key order made snapshots 3–4× slower to write).
    pub fn write_to<W: Write>(&self, w: &mut SnapshotWriter<W>) -> io::Result<()> {
        let count: usize = self.shards.iter().map(|shard| shard.len()).sum();
        w.put_uvarint(count as u64)?;
        for (k, v) in self.pairs() {
            w.put_bytes(k.as_bytes())?;
            w.put_bytes(v.as_bytes())?;
        }
        Ok(())
    }

    /// Reads a store written by [`Kv::write_to`]; a key twice is corrupt.
    pub fn read_from<R: Read>(r: &mut SnapshotReader<R>) -> io::Result<Self> {
        let mut kv = Kv::default();
        for _ in 0..r.get_uvarint()? {
            let (key, value) = (r.get_string()?, r.get_string()?);
            kv.bytes += kv_cost(&key, value.len());
            if kv
                .shard_mut(&key)
                .insert(Arc::from(key.as_str()), Arc::new(value))
                .is_some()
            {
                return Err(corrupt(format!("key {key} twice")));
            }
        }
        Ok(kv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_append_get_del() {
        let mut kv = Kv::default();
        assert_eq!(kv.get("k"), Reply::NotFound);
        kv.append("k", "a");
        kv.append("k", "b c");
        assert_eq!(kv.get("k").to_string(), "VALUE ab c");
        kv.put("k", "x");
        assert_eq!(kv.get("k").to_string(), "VALUE x");
        kv.del("k");
        assert_eq!(kv.get("k"), Reply::NotFound);
    }

    #[test]
    fn the_size_follows_every_write() {
        let mut kv = Kv::default();
        assert_eq!(kv.put_growth("k", "abc"), kv_cost("k", 3));
        kv.put("k", "abc");
        assert_eq!(kv.bytes(), kv_cost("k", 3));
        assert_eq!(kv.append_growth("k", "de"), 2);
        kv.append("k", "de");
        assert_eq!(kv.bytes(), kv_cost("k", 5));
        assert_eq!(kv.put_growth("k", "x"), 0, "shrinking does not grow");
        kv.put("k", "x");
        assert_eq!(kv.bytes(), kv_cost("k", 1));
        kv.append("new", "v");
        kv.del("k");
        kv.del("absent");
        assert_eq!(kv.bytes(), kv_cost("new", 1));
    }

    /// Taking a snapshot clones the store: the clone must share every key and
    /// value (copying pointers, not bytes), and a write on either side must
    /// leave the other as it was.
    #[test]
    fn a_clone_shares_values_and_is_unaffected_by_later_writes_and_vice_versa() {
        let mut original = Kv::default();
        for (k, v) in [("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")] {
            original.put(k, v);
        }
        let mut copy = original.clone();
        for ((key, value), (_, copied)) in original.pairs().zip(copy.pairs()) {
            assert!(Arc::ptr_eq(value, copied), "{key} was copied");
        }
        original.append("a", "+");
        original.put("b", "two");
        original.del("c");
        copy.append("d", "!");
        copy.put("e", "5");
        assert_eq!(
            (original.value("a"), copy.value("a")),
            (Some("1+"), Some("1"))
        );
        assert_eq!(
            (original.value("b"), copy.value("b")),
            (Some("two"), Some("2"))
        );
        assert_eq!((original.value("c"), copy.value("c")), (None, Some("3")));
        assert_eq!(
            (original.value("d"), copy.value("d")),
            (Some("4"), Some("4!"))
        );
        assert_eq!((original.value("e"), copy.value("e")), (None, Some("5")));
        assert_eq!(
            original.bytes(),
            kv_cost("a", 2) + kv_cost("b", 3) + kv_cost("d", 1)
        );
    }

    /// Once nothing else holds a value, `APPEND` grows it where it is.
    #[test]
    fn an_unshared_value_is_appended_to_in_place() {
        let mut kv = Kv::default();
        kv.put("k", "x");
        let before = Arc::as_ptr(&kv.shard("k")["k"]);
        kv.append("k", "y");
        assert_eq!(Arc::as_ptr(&kv.shard("k")["k"]), before);
        let copy = kv.clone();
        kv.append("k", "z");
        assert_ne!(
            Arc::as_ptr(&kv.shard("k")["k"]),
            before,
            "shared: copied first"
        );
        assert_eq!((kv.value("k"), copy.value("k")), (Some("xyz"), Some("xy")));
    }

    /// A clone copies the shards' pointers; the first write after it copies
    /// the one shard it touches, and the clone keeps the rest shared.
    #[test]
    fn a_clone_shares_every_shard_and_a_write_copies_one() {
        let mut kv = Kv::default();
        for i in 0..2000 {
            kv.put(&format!("key-{i}"), "v");
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
        kv.put("key-7", "w");
        kv.put("key-7", "x");
        assert_eq!(shared(&kv, &copy), SHARDS - 1);
        assert_eq!(
            (kv.value("key-7"), copy.value("key-7")),
            (Some("x"), Some("v"))
        );
    }

    /// The encoding lists every key once, and reads back to an equal store
    /// (every key in its shard).
    #[test]
    fn the_encoding_lists_every_key_once_and_reads_back_equal() {
        let mut kv = Kv::default();
        for i in 0..1000u32 {
            let key = format!("{}", i.wrapping_mul(2_654_435_761) % 100_000);
            kv.put(&key, &i.to_string());
        }
        kv.del("0");
        let mut keys: Vec<&str> = kv.pairs().map(|(k, _)| &**k).collect();
        let count = keys.len();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!((keys.len(), count), (kv.size().0, kv.size().0));
        assert!(!keys.contains(&"0") && keys.contains(&"35761"));
        let mut bytes = Vec::new();
        let mut w = SnapshotWriter::new(&mut bytes);
        kv.write_to(&mut w).unwrap();
        w.finish().unwrap();
        let mut r = SnapshotReader::new(&bytes[..]);
        let read = Kv::read_from(&mut r).unwrap();
        r.finish().unwrap();
        assert_eq!(read, kv);
        assert_eq!(read.bytes(), kv.bytes());
    }
}
