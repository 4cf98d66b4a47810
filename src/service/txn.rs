//! Transactions: if every compare holds, run the `then` ops, else the `else`
//! ops, atomically (etcd's `Txn`).
//!
//! A transaction is one command in one log entry, so it is applied whole, at
//! one index, by every replica: nothing can run between its compares and its
//! ops, and no replica can apply part of it. Its writes share one store
//! revision (the store's next; none if it wrote nothing), and its reads see
//! the writes made before them in the same transaction. A transaction that
//! would take the state past the space quota is refused whole, before any op
//! runs. Compares read a missing key as version, create and mod revision 0,
//! and a compare of a missing key's value never holds (as in etcd).
//!
//! Limits are checked when the command is parsed, so a transaction that
//! breaks one is refused whole and never reaches the log: at most
//! [`MAX_TXN_OPS`] compares and ops, keys and values within the store's
//! limits, and no key written twice in one branch (its result would depend
//! on the order, and its revision would be ambiguous).

use std::collections::BTreeSet;
use std::sync::Arc;

use super::kv::{Change, Kv, MAX_KEY, MAX_VALUE};
use super::quota::kv_cost;
use super::range::{self, Budget, RangeRequest, RangeResult, RANGE_REPLY_BYTES};
use super::reply::{Code, Error};
use crate::codec::{DecodeError, Decoder, Encoder};

/// Most compares and ops in one transaction (etcd's default, per branch).
pub const MAX_TXN_OPS: usize = 128;

/// A transaction.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Txn {
    /// What must hold for `then` to run.
    pub compares: Vec<Compare>,
    /// Run when every compare holds (always, without compares).
    pub then: Vec<TxnOp>,
    /// Run otherwise.
    pub otherwise: Vec<TxnOp>,
}

/// One condition on one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compare {
    /// The key.
    pub key: Vec<u8>,
    /// What of the key is compared, with what.
    pub target: Target,
    /// How.
    pub op: CompareOp,
}

/// What a compare reads from the key, and the operand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The value, byte by byte.
    Value(Vec<u8>),
    /// The version (0: absent).
    Version(u64),
    /// The create revision (0: absent).
    CreateRevision(u64),
    /// The mod revision (0: absent).
    ModRevision(u64),
    /// Whether the key exists (`=` and `!=` only).
    Exists(bool),
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    /// `=`.
    Equal,
    /// `!=`.
    NotEqual,
    /// `<`.
    Less,
    /// `>`.
    Greater,
}

impl CompareOp {
    /// The operator's text.
    pub fn as_str(self) -> &'static str {
        match self {
            CompareOp::Equal => "=",
            CompareOp::NotEqual => "!=",
            CompareOp::Less => "<",
            CompareOp::Greater => ">",
        }
    }

    /// The operator written `text`.
    pub fn parse(text: &str) -> Option<CompareOp> {
        [
            CompareOp::Equal,
            CompareOp::NotEqual,
            CompareOp::Less,
            CompareOp::Greater,
        ]
        .into_iter()
        .find(|op| op.as_str() == text)
    }

    fn holds<T: Ord + ?Sized>(self, found: &T, operand: &T) -> bool {
        match self {
            CompareOp::Equal => found == operand,
            CompareOp::NotEqual => found != operand,
            CompareOp::Less => found < operand,
            CompareOp::Greater => found > operand,
        }
    }
}

/// One operation of a branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOp {
    /// Set a key.
    Put(Vec<u8>, Vec<u8>),
    /// Remove a key.
    Delete(Vec<u8>),
    /// Read a key (a range of one key).
    Get(Vec<u8>),
    /// Read a range.
    Range(RangeRequest),
}

/// What a transaction did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TxnResult {
    /// The store revision after it (its writes' revision, if it wrote).
    pub revision: u64,
    /// Whether the compares held (`then` ran) or not (`else` ran).
    pub succeeded: bool,
    /// One result per op of the branch that ran, in order.
    pub results: Vec<OpResult>,
}

/// What one op did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpResult {
    /// A put.
    Put,
    /// A delete, and whether the key was there.
    Delete(bool),
    /// A get: the key, if present (a page of at most one key).
    Get(RangeResult),
    /// A range's page.
    Range(RangeResult),
}

impl TxnResult {
    /// The bytes of keys and values its reads carry.
    pub fn read_bytes(&self) -> usize {
        self.results
            .iter()
            .map(|r| match r {
                OpResult::Get(page) | OpResult::Range(page) => page.bytes(),
                OpResult::Put | OpResult::Delete(_) => 0,
            })
            .sum()
    }
}

impl Compare {
    /// Whether the compare holds in `kv`.
    pub fn holds(&self, kv: &Kv) -> bool {
        let entry = kv.get(&self.key);
        let number = |f: fn(&super::kv::Entry) -> u64| entry.map_or(0, f);
        match &self.target {
            Target::Value(operand) => {
                entry.is_some_and(|e| self.op.holds(e.value.as_slice(), operand.as_slice()))
            }
            Target::Version(n) => self.op.holds(&number(|e| e.version), n),
            Target::CreateRevision(n) => self.op.holds(&number(|e| e.create_revision), n),
            Target::ModRevision(n) => self.op.holds(&number(|e| e.mod_revision), n),
            Target::Exists(wanted) => self.op.holds(&entry.is_some(), wanted),
        }
    }
}

/// A `BAD_REQUEST` refusal.
fn bad(message: String) -> Error {
    Error::new(Code::BadRequest, message)
}

/// Checks a key against the store's limits.
pub fn check_key(key: &[u8]) -> Result<(), Error> {
    if key.is_empty() {
        return Err(bad(format!("a key must be 1..={MAX_KEY} bytes")));
    }
    if key.len() > MAX_KEY {
        return Err(Error::new(
            Code::TooLarge,
            format!("a key of {} bytes; keys are 1..={MAX_KEY} bytes", key.len()),
        ));
    }
    Ok(())
}

/// Checks a value against the store's limit.
pub fn check_value(value: &[u8]) -> Result<(), Error> {
    if value.len() > MAX_VALUE {
        return Err(Error::new(
            Code::TooLarge,
            format!(
                "a value of {} bytes; values are at most {MAX_VALUE} bytes",
                value.len()
            ),
        ));
    }
    Ok(())
}

/// Checks a range's keys (an empty `start` means "from the first key").
pub fn check_range(r: &RangeRequest) -> Result<(), Error> {
    for key in [Some(&r.start), r.end.as_ref()].into_iter().flatten() {
        if key.len() > MAX_KEY + 1 {
            check_key(key)?;
        }
    }
    Ok(())
}

impl Txn {
    /// Checks the transaction against the limits (see the module docs).
    pub fn check(&self) -> Result<(), Error> {
        let ops = self.compares.len() + self.then.len() + self.otherwise.len();
        if ops > MAX_TXN_OPS {
            return Err(bad(format!(
                "{ops} compares and ops; a transaction holds at most {MAX_TXN_OPS}"
            )));
        }
        for c in &self.compares {
            check_key(&c.key)?;
            match &c.target {
                Target::Value(v) => check_value(v)?,
                Target::Exists(_) if !matches!(c.op, CompareOp::Equal | CompareOp::NotEqual) => {
                    return Err(bad("exists compares with = or != only".into()));
                }
                _ => {}
            }
        }
        for branch in [&self.then, &self.otherwise] {
            let mut written = BTreeSet::new();
            for op in branch {
                match op {
                    TxnOp::Put(k, v) => {
                        check_key(k)?;
                        check_value(v)?;
                    }
                    TxnOp::Delete(k) | TxnOp::Get(k) => check_key(k)?,
                    TxnOp::Range(r) => check_range(r)?,
                }
                if let TxnOp::Put(k, _) | TxnOp::Delete(k) = op {
                    if !written.insert(k) {
                        return Err(bad(format!(
                            "key {:?} is written twice in one branch",
                            String::from_utf8_lossy(k)
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether every compare holds in `kv`.
    pub fn holds(&self, kv: &Kv) -> bool {
        self.compares.iter().all(|c| c.holds(kv))
    }

    /// How much running `branch` would grow the quota's count (negative if
    /// it frees space). Keys are written at most once per branch, so each
    /// write's effect is independent of the others.
    pub fn growth(branch: &[TxnOp], kv: &Kv) -> i128 {
        branch
            .iter()
            .map(|op| match op {
                TxnOp::Put(k, v) => i128::from(kv_cost(k.len(), v.len())) - i128::from(kv.cost(k)),
                TxnOp::Delete(k) => -i128::from(kv.cost(k)),
                TxnOp::Get(_) | TxnOp::Range(_) => 0,
            })
            .sum()
    }

    /// Runs `branch` (the one the compares chose) on `kv`, atomically: its
    /// writes at the store's next revision, reported in `changes`. The
    /// caller has checked the quota.
    pub fn run(
        branch: Vec<TxnOp>,
        succeeded: bool,
        kv: &mut Kv,
        changes: &mut Vec<Change>,
    ) -> TxnResult {
        let revision = kv.revision() + 1;
        let mut wrote = false;
        // The reads of one transaction share one page's budget.
        let mut budget = Budget {
            bytes: RANGE_REPLY_BYTES,
            at_least_one: false,
        };
        let mut results = Vec::with_capacity(branch.len());
        for op in branch {
            results.push(match op {
                TxnOp::Put(k, v) => {
                    kv.put_at(&k, Arc::new(v), revision, changes);
                    wrote = true;
                    OpResult::Put
                }
                TxnOp::Delete(k) => {
                    let deleted = kv.delete_at(&k, revision, changes);
                    wrote |= deleted;
                    OpResult::Delete(deleted)
                }
                TxnOp::Get(k) => {
                    OpResult::Get(range::range(kv, &RangeRequest::key(&k), &mut budget))
                }
                TxnOp::Range(r) => OpResult::Range(range::range(kv, &r, &mut budget)),
            });
        }
        if wrote {
            kv.finish_revision(revision);
        }
        // Every read reflects the store as the transaction leaves it.
        for result in &mut results {
            if let OpResult::Get(page) | OpResult::Range(page) = result {
                page.revision = kv.revision();
            }
        }
        TxnResult {
            revision: kv.revision(),
            succeeded,
            results,
        }
    }
}

const TARGET_VALUE: u8 = 1;
const TARGET_VERSION: u8 = 2;
const TARGET_CREATE: u8 = 3;
const TARGET_MOD: u8 = 4;
const TARGET_EXISTS: u8 = 5;
const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 2;
const OP_GET: u8 = 3;
const OP_RANGE: u8 = 4;

/// Encodes a transaction (in a log entry).
pub(super) fn put_txn(e: &mut Encoder, t: &Txn) {
    e.put_uvarint(t.compares.len() as u64);
    for c in &t.compares {
        e.put_bytes(&c.key);
        e.put_u8(c.op as u8);
        match &c.target {
            Target::Value(v) => {
                e.put_u8(TARGET_VALUE);
                e.put_bytes(v);
            }
            Target::Version(n) | Target::CreateRevision(n) | Target::ModRevision(n) => {
                e.put_u8(match c.target {
                    Target::Version(_) => TARGET_VERSION,
                    Target::CreateRevision(_) => TARGET_CREATE,
                    _ => TARGET_MOD,
                });
                e.put_uvarint(*n);
            }
            Target::Exists(b) => {
                e.put_u8(TARGET_EXISTS);
                e.put_bool(*b);
            }
        }
    }
    for branch in [&t.then, &t.otherwise] {
        e.put_uvarint(branch.len() as u64);
        for op in branch {
            match op {
                TxnOp::Put(k, v) => {
                    e.put_u8(OP_PUT);
                    e.put_bytes(k);
                    e.put_bytes(v);
                }
                TxnOp::Delete(k) | TxnOp::Get(k) => {
                    e.put_u8(if matches!(op, TxnOp::Delete(_)) {
                        OP_DELETE
                    } else {
                        OP_GET
                    });
                    e.put_bytes(k);
                }
                TxnOp::Range(r) => {
                    e.put_u8(OP_RANGE);
                    range::put_request(e, r);
                }
            }
        }
    }
}

/// Decodes what [`put_txn`] wrote.
pub(super) fn get_txn(d: &mut Decoder<'_>) -> Result<Txn, DecodeError> {
    let corrupt = |why: String| DecodeError::Corrupt(why);
    // Every compare and op takes at least 3 bytes.
    let n = d.get_len(d.remaining() / 3)?;
    let mut compares = Vec::with_capacity(n);
    for _ in 0..n {
        let key = d.get_vec()?;
        let op = match d.get_u8()? {
            0 => CompareOp::Equal,
            1 => CompareOp::NotEqual,
            2 => CompareOp::Less,
            3 => CompareOp::Greater,
            other => return Err(corrupt(format!("compare operator {other}"))),
        };
        let target = match d.get_u8()? {
            TARGET_VALUE => Target::Value(d.get_vec()?),
            TARGET_VERSION => Target::Version(d.get_uvarint()?),
            TARGET_CREATE => Target::CreateRevision(d.get_uvarint()?),
            TARGET_MOD => Target::ModRevision(d.get_uvarint()?),
            TARGET_EXISTS => Target::Exists(d.get_bool()?),
            other => return Err(corrupt(format!("compare target {other}"))),
        };
        compares.push(Compare { key, target, op });
    }
    let mut branches = [Vec::new(), Vec::new()];
    for branch in &mut branches {
        let n = d.get_len(d.remaining() / 2)?;
        for _ in 0..n {
            branch.push(match d.get_u8()? {
                OP_PUT => TxnOp::Put(d.get_vec()?, d.get_vec()?),
                OP_DELETE => TxnOp::Delete(d.get_vec()?),
                OP_GET => TxnOp::Get(d.get_vec()?),
                OP_RANGE => TxnOp::Range(range::get_request(d)?),
                other => return Err(corrupt(format!("transaction op {other}"))),
            });
        }
    }
    let [then, otherwise] = branches;
    Ok(Txn {
        compares,
        then,
        otherwise,
    })
}

/// Encodes a transaction's result (in a reply).
pub(super) fn put_result(e: &mut Encoder, r: &TxnResult) {
    e.put_uvarint(r.revision);
    e.put_bool(r.succeeded);
    e.put_uvarint(r.results.len() as u64);
    for result in &r.results {
        match result {
            OpResult::Put => e.put_u8(OP_PUT),
            OpResult::Delete(deleted) => {
                e.put_u8(OP_DELETE);
                e.put_bool(*deleted);
            }
            OpResult::Get(page) | OpResult::Range(page) => {
                e.put_u8(if matches!(result, OpResult::Get(_)) {
                    OP_GET
                } else {
                    OP_RANGE
                });
                range::put_result(e, page);
            }
        }
    }
}

/// Decodes what [`put_result`] wrote.
pub(super) fn get_result(d: &mut Decoder<'_>) -> Result<TxnResult, DecodeError> {
    let revision = d.get_uvarint()?;
    let succeeded = d.get_bool()?;
    let n = d.get_len(d.remaining())?;
    let mut results = Vec::with_capacity(n);
    for _ in 0..n {
        results.push(match d.get_u8()? {
            OP_PUT => OpResult::Put,
            OP_DELETE => OpResult::Delete(d.get_bool()?),
            OP_GET => OpResult::Get(range::get_result(d)?),
            OP_RANGE => OpResult::Range(range::get_result(d)?),
            other => return Err(DecodeError::Corrupt(format!("result of op {other}"))),
        });
    }
    Ok(TxnResult {
        revision,
        succeeded,
        results,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(k: &str, v: &str) -> TxnOp {
        TxnOp::Put(k.into(), v.into())
    }

    fn cmp(key: &str, target: Target, op: CompareOp) -> Compare {
        Compare {
            key: key.into(),
            target,
            op,
        }
    }

    /// Runs `txn` as the state machine does: check, compares, branch.
    fn apply(kv: &mut Kv, txn: Txn) -> TxnResult {
        txn.check().expect("a valid transaction");
        let succeeded = txn.holds(kv);
        let branch = if succeeded { txn.then } else { txn.otherwise };
        Txn::run(branch, succeeded, kv, &mut Vec::new())
    }

    fn store() -> Kv {
        // a: created at 1, written at 2 (version 2, value "2"); b: "x" at 3.
        let mut kv = Kv::default();
        apply(
            &mut kv,
            Txn {
                then: vec![put("a", "1")],
                ..Txn::default()
            },
        );
        apply(
            &mut kv,
            Txn {
                then: vec![put("a", "2")],
                ..Txn::default()
            },
        );
        apply(
            &mut kv,
            Txn {
                then: vec![put("b", "x")],
                ..Txn::default()
            },
        );
        kv
    }

    /// Every target with every operator, on a present and a missing key.
    #[test]
    fn compares_read_values_versions_revisions_and_existence() {
        use CompareOp::*;
        let kv = store();
        let cases = [
            (cmp("a", Target::Value(b"2".to_vec()), Equal), true),
            (cmp("a", Target::Value(b"2".to_vec()), NotEqual), false),
            (cmp("a", Target::Value(b"10".to_vec()), Greater), true),
            (cmp("a", Target::Value(b"3".to_vec()), Less), true),
            (cmp("a", Target::Version(2), Equal), true),
            (cmp("a", Target::Version(1), Greater), true),
            (cmp("a", Target::CreateRevision(1), Equal), true),
            (cmp("a", Target::ModRevision(2), Equal), true),
            (cmp("a", Target::ModRevision(3), Less), true),
            (cmp("a", Target::ModRevision(2), NotEqual), false),
            (cmp("a", Target::Exists(true), Equal), true),
            (cmp("a", Target::Exists(false), NotEqual), true),
            (cmp("zz", Target::Exists(false), Equal), true),
            (cmp("zz", Target::Version(0), Equal), true),
            (cmp("zz", Target::CreateRevision(1), Less), true),
            (cmp("zz", Target::ModRevision(0), Greater), false),
            // A missing key's value compares false, whatever the operator.
            (cmp("zz", Target::Value(Vec::new()), Equal), false),
            (cmp("zz", Target::Value(Vec::new()), NotEqual), false),
        ];
        for (compare, holds) in cases {
            assert_eq!(compare.holds(&kv), holds, "{compare:?}");
        }
    }

    /// Reference: etcd's Txn — one revision for all of a transaction's
    /// writes; reads in it see its earlier writes; the else branch runs when
    /// a compare fails; every op reports its result.
    #[test]
    fn every_op_runs_in_order_at_one_revision_in_the_branch_the_compares_chose() {
        let mut kv = store();
        let txn = Txn {
            compares: vec![cmp("a", Target::ModRevision(2), CompareOp::Equal)],
            then: vec![
                put("a", "3"),
                TxnOp::Delete(b"b".to_vec()),
                TxnOp::Get(b"a".to_vec()),
                TxnOp::Get(b"b".to_vec()),
                TxnOp::Range(RangeRequest::prefix(b"")),
                TxnOp::Delete(b"never".to_vec()),
            ],
            otherwise: vec![TxnOp::Get(b"a".to_vec())],
        };
        let mut changes = Vec::new();
        txn.check().unwrap();
        let result = Txn::run(txn.then.clone(), txn.holds(&kv), &mut kv, &mut changes);
        assert!(result.succeeded);
        assert_eq!(result.revision, 4);
        assert_eq!(kv.revision(), 4, "one revision for the whole transaction");
        assert_eq!(changes.len(), 2);
        assert!(changes.iter().all(|c| c.revision == 4));
        let [OpResult::Put, OpResult::Delete(true), OpResult::Get(a), OpResult::Get(b), OpResult::Range(all), OpResult::Delete(false)] =
            &result.results[..]
        else {
            panic!("{:?}", result.results);
        };
        assert_eq!(
            a.kvs[0].value.as_deref(),
            Some(&b"3".to_vec()),
            "sees its own put"
        );
        assert_eq!((a.kvs[0].mod_revision, a.kvs[0].version), (4, 3));
        assert!(b.kvs.is_empty(), "sees its own delete");
        assert_eq!(all.count, 1);
        assert_eq!(a.revision, 4);
        // The same compare now fails: the else branch reads, writes nothing.
        let again = apply(&mut kv, txn);
        assert!(!again.succeeded);
        assert_eq!(
            again.revision, 4,
            "a transaction that writes nothing keeps the revision"
        );
        let [OpResult::Get(a)] = &again.results[..] else {
            panic!("{:?}", again.results);
        };
        assert_eq!(
            a.kvs[0].mod_revision, 4,
            "the failed compare reads the current revision"
        );
    }

    #[test]
    fn growth_counts_puts_against_what_they_replace_and_deletes_as_freed() {
        let kv = store();
        let branch = [
            put("a", "12345"),
            put("new", "v"),
            TxnOp::Delete(b"b".to_vec()),
        ];
        let expected = 4 + i128::from(kv_cost(3, 1)) - i128::from(kv_cost(1, 1));
        assert_eq!(Txn::growth(&branch, &kv), expected);
    }

    #[test]
    fn invalid_transactions_are_refused_whole_with_a_reason() {
        let code = |txn: Txn| txn.check().err().map(|e| e.code);
        let then = |ops: Vec<TxnOp>| Txn {
            then: ops,
            ..Txn::default()
        };
        assert_eq!(
            code(then(vec![put("k", "1"), put("k", "2")])),
            Some(Code::BadRequest)
        );
        assert_eq!(
            code(then(vec![put("k", "1"), TxnOp::Delete(b"k".to_vec())])),
            Some(Code::BadRequest)
        );
        assert_eq!(
            code(then(vec![put("k", "1"), TxnOp::Get(b"k".to_vec())])),
            None
        );
        assert_eq!(code(then(vec![put("", "1")])), Some(Code::BadRequest));
        assert_eq!(
            code(then(vec![TxnOp::Put(vec![b'k'; MAX_KEY + 1], Vec::new())])),
            Some(Code::TooLarge)
        );
        assert_eq!(
            code(then(vec![TxnOp::Put(
                b"k".to_vec(),
                vec![0; MAX_VALUE + 1]
            )])),
            Some(Code::TooLarge)
        );
        assert_eq!(
            code(then(vec![TxnOp::Get(b"k".to_vec()); MAX_TXN_OPS + 1])),
            Some(Code::BadRequest)
        );
        let exists_less = Txn {
            compares: vec![cmp("k", Target::Exists(true), CompareOp::Less)],
            ..Txn::default()
        };
        assert_eq!(code(exists_less), Some(Code::BadRequest));
    }

    #[test]
    fn transactions_and_results_round_trip_through_the_codec() {
        let txn = Txn {
            compares: vec![
                cmp("a", Target::Value(vec![0, 255]), CompareOp::Greater),
                cmp("a", Target::Version(3), CompareOp::Less),
                cmp("a", Target::CreateRevision(1), CompareOp::NotEqual),
                cmp("a", Target::ModRevision(9), CompareOp::Equal),
                cmp("a", Target::Exists(false), CompareOp::Equal),
            ],
            then: vec![
                put("a", "x"),
                TxnOp::Delete(b"b".to_vec()),
                TxnOp::Get(b"c".to_vec()),
            ],
            otherwise: vec![TxnOp::Range(RangeRequest::prefix(b"p"))],
        };
        let mut e = Encoder::new();
        put_txn(&mut e, &txn);
        let bytes = e.finish();
        assert_eq!(get_txn(&mut Decoder::new(&bytes)), Ok(txn.clone()));
        for cut in 0..bytes.len() {
            let mut d = Decoder::new(&bytes[..cut]);
            assert!(
                get_txn(&mut d).and_then(|_| d.finish()).is_err(),
                "cut at {cut}"
            );
        }
        let mut kv = store();
        let result = apply(&mut kv, txn);
        let mut e = Encoder::new();
        put_result(&mut e, &result);
        let bytes = e.finish();
        assert_eq!(get_result(&mut Decoder::new(&bytes)), Ok(result));
    }
}
