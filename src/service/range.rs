//! Ranges: the keys from `start` to `end` in byte order, a page at a time.
//!
//! The store is sharded by a hash of the key ([`super::kv`]), so no shard
//! holds a range in order by itself: a range seeks each shard to `start`
//! and merges the 256 sorted runs with a heap, taking the smallest key each
//! step (O(log 256) per key returned, plus one seek per shard). A range of
//! one key (`GET` with metadata, a transaction's `get`) is one lookup.
//!
//! A page ends at `limit` keys, or once its keys and values pass
//! [`RANGE_REPLY_BYTES`] (a reply stays bounded however large the values);
//! then `more` is set and `next` names the first key not returned, from
//! which the next page starts. `count_only` counts the keys in the range
//! without returning them.

use std::cmp::Reverse;
use std::collections::btree_map;
use std::collections::BinaryHeap;
use std::ops::Bound;
use std::sync::Arc;

use super::kv::{Entry, Kv, Value};
use crate::codec::{DecodeError, Decoder, Encoder};

/// Bytes of keys and values one page carries at most (a page always
/// carries at least one key, so at most one value more).
pub const RANGE_REPLY_BYTES: usize = 1 << 20;

/// Which keys to read, and how.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RangeRequest {
    /// The first key (inclusive); empty: from the first key.
    pub start: Vec<u8>,
    /// The key after the last (exclusive); `None`: to the last key.
    pub end: Option<Vec<u8>>,
    /// Most keys to return; 0: no limit but the page's bytes.
    pub limit: u64,
    /// Return keys and revisions without values.
    pub keys_only: bool,
    /// Return how many keys the range holds, not the keys.
    pub count_only: bool,
    /// Read this server's applied state without asking the leader: possibly
    /// stale (etcd's `--consistency=s`). Not part of what a range reads.
    pub serializable: bool,
}

impl RangeRequest {
    /// The range holding exactly `key`.
    pub fn key(key: &[u8]) -> RangeRequest {
        let mut end = key.to_vec();
        end.push(0);
        RangeRequest {
            start: key.to_vec(),
            end: Some(end),
            ..RangeRequest::default()
        }
    }

    /// Every key that starts with `prefix`.
    pub fn prefix(prefix: &[u8]) -> RangeRequest {
        RangeRequest {
            start: prefix.to_vec(),
            end: prefix_end(prefix),
            ..RangeRequest::default()
        }
    }

    /// The one key this range can hold, if it is the range of one key.
    fn single_key(&self) -> Option<&[u8]> {
        match &self.end {
            Some(end) if end.len() == self.start.len() + 1 && end.last() == Some(&0) => {
                end.starts_with(&self.start).then_some(&self.start[..])
            }
            _ => None,
        }
    }

    /// Whether no key can lie in the range (`end <= start`).
    fn is_empty(&self) -> bool {
        self.end.as_ref().is_some_and(|end| *end <= self.start)
    }
}

/// The first key after every key that starts with `prefix` (`None`: no
/// such key, the prefix is empty or all `0xff`).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let last = prefix.iter().rposition(|&b| b != 0xff)?;
    let mut end = prefix[..=last].to_vec();
    end[last] += 1;
    Some(end)
}

/// One key as a range returns it (etcd's `KeyValue`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: Arc<[u8]>,
    /// Its value (shared with the store); `None` for a keys-only range.
    pub value: Option<Value>,
    /// The store revision that created the key.
    pub create_revision: u64,
    /// The store revision that last wrote it.
    pub mod_revision: u64,
    /// Writes since it was created.
    pub version: u64,
}

/// One page of a range.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RangeResult {
    /// The store revision the page reflects.
    pub revision: u64,
    /// The keys, in byte order (none for a count-only range).
    pub kvs: Vec<KeyValue>,
    /// Count-only: how many keys the range holds; otherwise `kvs.len()`.
    pub count: u64,
    /// Whether keys of the range are left after this page.
    pub more: bool,
    /// With `more`, the first key left: where the next page starts.
    pub next: Option<Vec<u8>>,
}

impl RangeResult {
    /// The bytes of keys and values it carries.
    pub fn bytes(&self) -> usize {
        self.kvs
            .iter()
            .map(|kv| kv.key.len() + kv.value.as_ref().map_or(0, |v| v.len()))
            .sum()
    }
}

/// How much a range may return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Bytes of keys and values left.
    pub bytes: usize,
    /// Whether the first key is returned even past the bytes (a page of its
    /// own); off inside a transaction, whose reads share one budget.
    pub at_least_one: bool,
}

impl Budget {
    /// A page's budget: [`RANGE_REPLY_BYTES`], at least one key.
    pub fn page() -> Budget {
        Budget {
            bytes: RANGE_REPLY_BYTES,
            at_least_one: true,
        }
    }
}

/// Reads `request` from `kv`, spending `budget`.
pub fn range(kv: &Kv, request: &RangeRequest, budget: &mut Budget) -> RangeResult {
    let mut result = RangeResult {
        revision: kv.revision(),
        ..RangeResult::default()
    };
    if request.count_only {
        result.count = in_order(kv, request).count() as u64;
        return result;
    }
    for (key, entry) in in_order(kv, request) {
        let value = (!request.keys_only).then(|| Arc::clone(&entry.value));
        let size = key.len() + value.as_ref().map_or(0, |v| v.len());
        let full = request.limit > 0 && result.kvs.len() as u64 >= request.limit;
        let first = result.kvs.is_empty() && budget.at_least_one;
        if full || (size > budget.bytes && !first) {
            result.more = true;
            result.next = Some(key.to_vec());
            break;
        }
        budget.bytes = budget.bytes.saturating_sub(size);
        result.kvs.push(KeyValue {
            key: Arc::clone(key),
            value,
            create_revision: entry.create_revision,
            mod_revision: entry.mod_revision,
            version: entry.version,
        });
    }
    result.count = result.kvs.len() as u64;
    result
}

type Item<'a> = (&'a Arc<[u8]>, &'a Entry);

/// The keys of `request`'s range in byte order, across the shards.
fn in_order<'a>(kv: &'a Kv, request: &RangeRequest) -> Box<dyn Iterator<Item = Item<'a>> + 'a> {
    if request.is_empty() {
        return Box::new(std::iter::empty());
    }
    if let Some(key) = request.single_key() {
        let found = kv
            .shards()
            .iter()
            .find_map(|shard| shard.get_key_value(key));
        return Box::new(found.into_iter());
    }
    let start = Bound::Included(&request.start[..]);
    let end = request
        .end
        .as_deref()
        .map_or(Bound::Unbounded, Bound::Excluded);
    let mut runs: Vec<btree_map::Range<'a, Arc<[u8]>, Entry>> = kv
        .shards()
        .iter()
        .map(|shard| shard.range::<[u8], _>((start, end)))
        .collect();
    let mut heads = BinaryHeap::with_capacity(runs.len());
    for (i, run) in runs.iter_mut().enumerate() {
        if let Some(item) = run.next() {
            heads.push(Reverse(Head(item, i)));
        }
    }
    Box::new(Merge { runs, heads })
}

/// The next key of one shard's run, ordered by key.
struct Head<'a>(Item<'a>, usize);

impl PartialEq for Head<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.0 .0 == other.0 .0
    }
}

impl Eq for Head<'_> {}

impl PartialOrd for Head<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Head<'_> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0 .0.cmp(other.0 .0)
    }
}

/// Merges the shards' sorted runs (a key lives in one shard only, so no
/// two heads are equal).
struct Merge<'a> {
    runs: Vec<btree_map::Range<'a, Arc<[u8]>, Entry>>,
    heads: BinaryHeap<Reverse<Head<'a>>>,
}

impl<'a> Iterator for Merge<'a> {
    type Item = Item<'a>;

    fn next(&mut self) -> Option<Item<'a>> {
        let Reverse(Head(item, run)) = self.heads.pop()?;
        if let Some(next) = self.runs[run].next() {
            self.heads.push(Reverse(Head(next, run)));
        }
        Some(item)
    }
}

/// Encodes a range request (in a log entry, inside a transaction).
pub(super) fn put_request(e: &mut Encoder, r: &RangeRequest) {
    e.put_bytes(&r.start);
    e.put_bool(r.end.is_some());
    if let Some(end) = &r.end {
        e.put_bytes(end);
    }
    e.put_uvarint(r.limit);
    e.put_bool(r.keys_only);
    e.put_bool(r.count_only);
    e.put_bool(r.serializable);
}

/// Decodes what [`put_request`] wrote.
pub(super) fn get_request(d: &mut Decoder<'_>) -> Result<RangeRequest, DecodeError> {
    let start = d.get_vec()?;
    let end = if d.get_bool()? {
        Some(d.get_vec()?)
    } else {
        None
    };
    Ok(RangeRequest {
        start,
        end,
        limit: d.get_uvarint()?,
        keys_only: d.get_bool()?,
        count_only: d.get_bool()?,
        serializable: d.get_bool()?,
    })
}

/// Encodes a page (in a reply).
pub(super) fn put_result(e: &mut Encoder, r: &RangeResult) {
    e.put_uvarint(r.revision);
    e.put_uvarint(r.count);
    e.put_bool(r.more);
    e.put_bool(r.next.is_some());
    if let Some(next) = &r.next {
        e.put_bytes(next);
    }
    e.put_uvarint(r.kvs.len() as u64);
    for kv in &r.kvs {
        e.put_bytes(&kv.key);
        e.put_bool(kv.value.is_some());
        if let Some(value) = &kv.value {
            e.put_bytes(value);
        }
        e.put_uvarint(kv.create_revision);
        e.put_uvarint(kv.mod_revision);
        e.put_uvarint(kv.version);
    }
}

/// Decodes what [`put_result`] wrote.
pub(super) fn get_result(d: &mut Decoder<'_>) -> Result<RangeResult, DecodeError> {
    let revision = d.get_uvarint()?;
    let count = d.get_uvarint()?;
    let more = d.get_bool()?;
    let next = if d.get_bool()? {
        Some(d.get_vec()?)
    } else {
        None
    };
    // Each key takes at least 5 bytes: bound the count by what is there.
    let n = d.get_len(d.remaining() / 5)?;
    let mut kvs = Vec::with_capacity(n);
    for _ in 0..n {
        let key: Arc<[u8]> = Arc::from(d.get_bytes()?);
        let value = if d.get_bool()? {
            Some(Arc::new(d.get_vec()?))
        } else {
            None
        };
        kvs.push(KeyValue {
            key,
            value,
            create_revision: d.get_uvarint()?,
            mod_revision: d.get_uvarint()?,
            version: d.get_uvarint()?,
        });
    }
    Ok(RangeResult {
        revision,
        kvs,
        count,
        more,
        next,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(keys: impl IntoIterator<Item = Vec<u8>>) -> Kv {
        let mut kv = Kv::default();
        for key in keys {
            let revision = kv.revision() + 1;
            kv.put_at(&key, Arc::new(key.clone()), revision, &mut Vec::new());
            kv.finish_revision(revision);
        }
        kv
    }

    fn keys(result: &RangeResult) -> Vec<Vec<u8>> {
        result.kvs.iter().map(|kv| kv.key.to_vec()).collect()
    }

    /// Reads the whole range page by page, `limit` keys a page, following
    /// `next`; returns every key and the number of pages.
    fn pages(kv: &Kv, mut request: RangeRequest) -> (Vec<Vec<u8>>, usize) {
        let (mut all, mut pages) = (Vec::new(), 0);
        loop {
            let page = range(kv, &request, &mut Budget::page());
            pages += 1;
            all.extend(keys(&page));
            assert!(pages < 10_000);
            match page.next {
                Some(next) if page.more => request.start = next,
                _ => return (all, pages),
            }
        }
    }

    #[test]
    fn keys_come_in_byte_order_across_shards() {
        let mut wanted: Vec<Vec<u8>> = (0..1000u32).map(|i| i.to_be_bytes().to_vec()).collect();
        wanted.extend([vec![0], vec![0xff; 3], b"a".to_vec(), b"ab".to_vec()]);
        let kv = store(wanted.clone());
        wanted.sort();
        let all = range(&kv, &RangeRequest::default(), &mut Budget::page());
        assert_eq!(keys(&all), wanted);
        assert!(!all.more);
        assert_eq!(all.revision, kv.revision());
    }

    /// Every page boundary: a limit that divides the range, one that does
    /// not, 1, the whole range and more; each page starts where the last
    /// ended, and no key is lost or repeated.
    #[test]
    fn pagination_returns_every_key_once_at_every_page_boundary() {
        let wanted: Vec<Vec<u8>> = (0..100u8).map(|i| vec![b'p', i]).collect();
        let mut all = wanted.clone();
        all.extend([b"o".to_vec(), b"q".to_vec(), b"p".to_vec()]);
        let kv = store(all);
        let mut with_p = vec![b"p".to_vec()];
        with_p.extend(wanted.clone());
        for limit in [1u64, 3, 10, 25, 99, 100, 101, 1000] {
            let request = RangeRequest {
                limit,
                ..RangeRequest::prefix(b"p")
            };
            let (got, pages) = pages(&kv, request);
            assert_eq!(got, with_p, "limit {limit}");
            assert_eq!(
                pages,
                101usize.div_ceil(limit as usize).max(1),
                "limit {limit}"
            );
        }
        let page = range(
            &kv,
            &RangeRequest {
                limit: 10,
                ..RangeRequest::prefix(b"p")
            },
            &mut Budget::page(),
        );
        assert!(page.more);
        assert_eq!(page.next.as_deref(), Some(&[b'p', 9][..]));
        let (from_to, _) = pages(
            &kv,
            RangeRequest {
                start: vec![b'p', 10],
                end: Some(vec![b'p', 20]),
                limit: 4,
                ..RangeRequest::default()
            },
        );
        assert_eq!(from_to, wanted[10..20].to_vec());
    }

    #[test]
    fn a_page_stops_at_its_bytes_but_carries_at_least_one_key() {
        let mut kv = Kv::default();
        for (i, key) in [b"a", b"b", b"c"].iter().enumerate() {
            let value = Arc::new(vec![b'x'; RANGE_REPLY_BYTES / 2]);
            kv.put_at(*key, value, i as u64 + 1, &mut Vec::new());
            kv.finish_revision(i as u64 + 1);
        }
        let page = range(&kv, &RangeRequest::default(), &mut Budget::page());
        assert_eq!(
            keys(&page),
            vec![b"a".to_vec()],
            "a and b would pass the budget"
        );
        assert_eq!(page.next.as_deref(), Some(&b"b"[..]));
        let mut tight = Budget {
            bytes: 10,
            at_least_one: false,
        };
        let none = range(&kv, &RangeRequest::default(), &mut tight);
        assert!(none.kvs.is_empty() && none.more);
        let keys_only = RangeRequest {
            keys_only: true,
            ..RangeRequest::default()
        };
        let all = range(&kv, &keys_only, &mut Budget::page());
        assert_eq!(all.count, 3);
        assert!(all.kvs.iter().all(|kv| kv.value.is_none()));
    }

    #[test]
    fn counts_single_keys_prefixes_and_empty_ranges() {
        let kv = store([
            b"a".to_vec(),
            b"ab".to_vec(),
            b"abc".to_vec(),
            b"b".to_vec(),
        ]);
        let count = |request: RangeRequest| {
            let request = RangeRequest {
                count_only: true,
                ..request
            };
            let result = range(&kv, &request, &mut Budget::page());
            assert!(result.kvs.is_empty());
            result.count
        };
        assert_eq!(count(RangeRequest::prefix(b"a")), 3);
        assert_eq!(count(RangeRequest::prefix(b"")), 4);
        assert_eq!(count(RangeRequest::key(b"ab")), 1);
        assert_eq!(count(RangeRequest::key(b"zz")), 0);
        let backwards = RangeRequest {
            start: b"b".to_vec(),
            end: Some(b"a".to_vec()),
            ..RangeRequest::default()
        };
        assert_eq!(count(backwards), 0, "end before start: empty, no panic");
        let one = range(&kv, &RangeRequest::key(b"ab"), &mut Budget::page());
        assert_eq!(keys(&one), vec![b"ab".to_vec()]);
        assert_eq!(one.kvs[0].value.as_deref(), Some(&b"ab".to_vec()));
    }

    #[test]
    fn prefix_ends_skip_trailing_ff_bytes() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 0xff, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff]), None);
        assert_eq!(prefix_end(b""), None);
        let kv = store([vec![1, 0xff], vec![1, 0xff, 0], vec![2]]);
        let under = range(&kv, &RangeRequest::prefix(&[1, 0xff]), &mut Budget::page());
        assert_eq!(keys(&under), vec![vec![1, 0xff], vec![1, 0xff, 0]]);
    }

    #[test]
    fn requests_and_pages_round_trip_through_the_codec() {
        let kv = store([b"k1".to_vec(), vec![0, 0xff, b'\n']]);
        let page = range(&kv, &RangeRequest::default(), &mut Budget::page());
        let mut e = Encoder::new();
        put_result(&mut e, &page);
        let bytes = e.finish();
        assert_eq!(get_result(&mut Decoder::new(&bytes)), Ok(page));
        let request = RangeRequest {
            start: vec![0],
            end: None,
            limit: 7,
            keys_only: true,
            count_only: false,
            serializable: true,
        };
        let mut e = Encoder::new();
        put_request(&mut e, &request);
        let bytes = e.finish();
        assert_eq!(get_request(&mut Decoder::new(&bytes)), Ok(request));
        for cut in 0..bytes.len() {
            assert!(get_request(&mut Decoder::new(&bytes[..cut])).is_err());
        }
    }
}
