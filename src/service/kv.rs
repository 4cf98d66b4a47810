//! The key-value store: a sorted map from keys to values.

use std::collections::BTreeMap;

use crate::codec::{DecodeError, Decoder, Encoder};

/// Keys and values are text (the protocol is line-based UTF-8).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Kv {
    map: BTreeMap<String, String>,
}

impl Kv {
    /// Sets `key` to `value`.
    pub fn put(&mut self, key: &str, value: &str) -> String {
        self.map.insert(key.to_string(), value.to_string());
        "OK".into()
    }

    /// Appends `value` to `key`'s value, treating a missing key as empty.
    pub fn append(&mut self, key: &str, value: &str) -> String {
        self.map.entry(key.to_string()).or_default().push_str(value);
        "OK".into()
    }

    /// Removes `key` (removing a missing key is not an error).
    pub fn del(&mut self, key: &str) -> String {
        self.map.remove(key);
        "OK".into()
    }

    /// The value of `key`, if present.
    pub fn value(&self, key: &str) -> Option<&str> {
        self.map.get(key).map(String::as_str)
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
        let mut map = BTreeMap::new();
        for _ in 0..n {
            map.insert(get_string(d)?, get_string(d)?);
        }
        Ok(Kv { map })
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
}
