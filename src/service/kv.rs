//! The key-value store: a sorted map from keys to values.

use std::collections::BTreeMap;

use super::quota::kv_cost;
use crate::codec::{DecodeError, Decoder, Encoder};

/// Keys and values are text (the protocol is line-based UTF-8).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Kv {
    map: BTreeMap<String, String>,
    /// Invariant: the sum of `kv_cost` over every pair (the quota's count).
    bytes: u64,
}

impl Kv {
    /// Sets `key` to `value`.
    pub fn put(&mut self, key: &str, value: &str) -> String {
        let old = self.cost(key);
        self.map.insert(key.to_string(), value.to_string());
        self.bytes = self.bytes - old + kv_cost(key, value.len());
        "OK".into()
    }

    /// Appends `value` to `key`'s value, treating a missing key as empty.
    pub fn append(&mut self, key: &str, value: &str) -> String {
        self.bytes += self.append_growth(key, value);
        self.map.entry(key.to_string()).or_default().push_str(value);
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
        self.map.get(key).map(String::as_str)
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

    /// Appends the store's encoding: count, then key/value pairs in key order.
    pub fn encode_to(&self, e: &mut Encoder) {
        e.put_uvarint(self.map.len() as u64);
        for (k, v) in &self.map {
            e.put_bytes(k.as_bytes());
            e.put_bytes(v.as_bytes());
        }
    }

    /// Reads a store written by [`Kv::encode_to`].
    pub fn decode_from(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let n = d.get_len(d.remaining())?;
        let mut kv = Kv::default();
        for _ in 0..n {
            let (key, value) = (get_string(d)?, get_string(d)?);
            kv.put(&key, &value);
        }
        Ok(kv)
    }
}

/// Reads a length-prefixed UTF-8 string.
pub fn get_string(d: &mut Decoder<'_>) -> Result<String, DecodeError> {
    String::from_utf8(d.get_vec()?).map_err(|_| DecodeError::Corrupt("invalid UTF-8".into()))
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
}
