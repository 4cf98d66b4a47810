//! The key-value store: a sorted map from keys to values.
//!
//! Keys and values are shared, copy-on-write: the map holds `Arc`s, so cloning
//! the store (what taking a snapshot costs the apply loop) copies the map's
//! nodes and pointers, never the bytes of keys and values. A write replaces a
//! key's `Arc`; `APPEND` extends a value in place when nothing else holds it
//! and copies it once when a snapshot being written still does
//! ([`Arc::make_mut`]).

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::sync::Arc;

use super::quota::kv_cost;
use super::snapshot_stream::{corrupt, SnapshotReader, SnapshotWriter};

/// Keys and values are text (the protocol is line-based UTF-8).
///
/// Trade-off: values are `Arc<String>` rather than `Arc<str>`, one more
/// indirection, so that `APPEND` grows a value in place (amortized O(appended
/// bytes)) instead of copying the whole value on every append.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Kv {
    map: BTreeMap<Arc<str>, Arc<String>>,
    /// Invariant: the sum of `kv_cost` over every pair (the quota's count).
    bytes: u64,
}

impl Kv {
    /// Sets `key` to `value`.
    pub fn put(&mut self, key: &str, value: &str) -> String {
        let cost = kv_cost(key, value.len());
        let value = Arc::new(value.to_string());
        // One search of the map: a PUT of a new key (the common case) needs
        // the key's allocation anyway.
        match self.map.entry(Arc::from(key)) {
            // A snapshot being written may hold the old value: replace, never mutate.
            Entry::Occupied(mut slot) => {
                self.bytes = self.bytes - kv_cost(key, slot.get().len()) + cost;
                slot.insert(value);
            }
            Entry::Vacant(slot) => {
                self.bytes += cost;
                slot.insert(value);
            }
        }
        "OK".into()
    }

    /// Appends `value` to `key`'s value, treating a missing key as empty.
    pub fn append(&mut self, key: &str, value: &str) -> String {
        self.bytes += self.append_growth(key, value);
        match self.map.get_mut(key) {
            // Copies the value first only if a snapshot being written holds it.
            Some(slot) => Arc::make_mut(slot).push_str(value),
            None => {
                self.map.insert(Arc::from(key), Arc::new(value.to_string()));
            }
        }
        "OK".into()
    }

    /// Removes `key` (removing a missing key is not an error).
    pub fn del(&mut self, key: &str) -> String {
        self.bytes -= self.cost(key);
        self.map.remove(key);
        "OK".into()
    }

    /// The value of `key`, if present.
    pub fn value(&self, key: &str) -> Option<&str> {
        self.map.get(key).map(|v| v.as_str())
    }

    /// What `key` counts for now (0 if absent).
    fn cost(&self, key: &str) -> u64 {
        self.map.get(key).map_or(0, |v| kv_cost(key, v.len()))
    }

    /// How much `put(key, value)` would grow the state (0 if it would not).
    pub fn put_growth(&self, key: &str, value: &str) -> u64 {
        kv_cost(key, value.len()).saturating_sub(self.cost(key))
    }

    /// How much `append(key, value)` would grow the state.
    pub fn append_growth(&self, key: &str, value: &str) -> u64 {
        match self.map.get(key) {
            Some(_) => value.len() as u64,
            None => kv_cost(key, value.len()),
        }
    }

    /// The store's size as the quota counts it.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// `VALUE v` or `NOT_FOUND`.
    pub fn get(&self, key: &str) -> String {
        match self.map.get(key) {
            Some(v) => format!("VALUE {v}"),
            None => "NOT_FOUND".into(),
        }
    }

    /// Number of keys and bytes of keys plus values.
    pub fn size(&self) -> (usize, usize) {
        let bytes = self.map.iter().map(|(k, v)| k.len() + v.len()).sum();
        (self.map.len(), bytes)
    }

    /// Writes the store's encoding: count, then key/value pairs in key order.
    pub fn write_to<W: Write>(&self, w: &mut SnapshotWriter<W>) -> io::Result<()> {
        w.put_uvarint(self.map.len() as u64)?;
        for (k, v) in &self.map {
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
                .map
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
        assert_eq!(kv.get("k"), "NOT_FOUND");
        kv.append("k", "a");
        kv.append("k", "b c");
        assert_eq!(kv.get("k"), "VALUE ab c");
        kv.put("k", "x");
        assert_eq!(kv.get("k"), "VALUE x");
        kv.del("k");
        assert_eq!(kv.get("k"), "NOT_FOUND");
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
        for (key, value) in &original.map {
            assert!(Arc::ptr_eq(value, &copy.map[key]), "{key} was copied");
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
        let before = Arc::as_ptr(&kv.map["k"]);
        kv.append("k", "y");
        assert_eq!(Arc::as_ptr(&kv.map["k"]), before);
        let copy = kv.clone();
        kv.append("k", "z");
        assert_ne!(Arc::as_ptr(&kv.map["k"]), before, "shared: copied first");
        assert_eq!((kv.value("k"), copy.value("k")), (Some("xyz"), Some("xy")));
    }
}
