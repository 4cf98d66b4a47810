//! The JSON forms of ranges and transactions, shared by the text protocol
//! (`RANGE {...}`, `TXN {...}` lines) and the HTTP API (bodies).
//!
//! A byte string (a key, a value, a compare's operand) is a JSON string
//! under its name when it is UTF-8, and base64 under the name with
//! `_base64` appended otherwise, so a client never has to guess: `"key":"a"`
//! or `"key_base64":"/wA="`. Revisions and counts are JSON numbers.
//!
//! ```text
//! range page   {"revision":7,"count":2,"more":true,"next":"c",
//!               "kvs":[{"key":"a","value":"1","create_revision":2,"mod_revision":5,"version":3},...]}
//! transaction  {"compare":[{"key":"a","target":"mod_revision","op":"=","value":5}, ...],
//!               "then":[{"op":"put","key":"a","value":"2"},{"op":"delete","key":"b"},
//!                       {"op":"get","key":"a"},{"op":"range","prefix":"a","limit":10}],
//!               "else":[...]}
//! its result   {"succeeded":true,"revision":8,"results":[{"op":"put"},{"op":"delete","deleted":true},
//!               {"op":"get",<range page>},...]}
//! ```
//!
//! Compare targets are `value`, `version`, `create_revision`,
//! `mod_revision` and `exists` (operand `true` or `false`); operators are
//! `=`, `!=`, `<`, `>`. A range op takes `start`, `end` (exclusive) or
//! `prefix`, `limit`, `keys_only` and `count_only`.

use super::range::{prefix_end, KeyValue, RangeRequest, RangeResult};
use super::reply::{Code, Error};
use super::txn::{Compare, CompareOp, OpResult, Target, Txn, TxnOp, TxnResult};
use crate::json::{self, Json};
use crate::transport::line::{base64_decode, base64_encode};
use std::fmt;
use std::sync::Arc;

/// `name` and the bytes as a JSON string, or `name_base64` and their base64.
pub fn bytes_member(name: &str, bytes: &[u8]) -> (String, Json) {
    match std::str::from_utf8(bytes) {
        Ok(text) => (name.to_string(), Json::from(text)),
        Err(_) => (format!("{name}_base64"), Json::from(base64_encode(bytes))),
    }
}

/// The byte string an object holds under `name` or `name_base64` (`None`
/// if neither; an error if both, or not strings, or bad base64).
pub fn get_bytes(object: &Json, name: &str) -> Result<Option<Vec<u8>>, String> {
    let b64 = format!("{name}_base64");
    match (object.get(name), object.get(&b64)) {
        (Some(_), Some(_)) => Err(format!("give {name} or {b64}, not both")),
        (Some(Json::String(s)), None) => Ok(Some(s.as_bytes().to_vec())),
        (None, Some(Json::String(s))) => base64_decode(s.as_bytes())
            .map(Some)
            .ok_or_else(|| format!("{b64} is not base64")),
        (None, None) => Ok(None),
        _ => Err(format!("{name} must be a string")),
    }
}

fn number(n: u64) -> Json {
    Json::from(n)
}

/// Writes `"name":` and the bytes as a JSON string, or `"name_base64":` and
/// their base64.
fn write_bytes(f: &mut fmt::Formatter<'_>, name: &str, bytes: &[u8]) -> fmt::Result {
    match std::str::from_utf8(bytes) {
        Ok(text) => {
            write!(f, "\"{name}\":")?;
            json::write_string(f, text)
        }
        Err(_) => write!(f, "\"{name}_base64\":\"{}\"", base64_encode(bytes)),
    }
}

/// A key of a page, as JSON.
fn write_key_value(f: &mut fmt::Formatter<'_>, kv: &KeyValue) -> fmt::Result {
    f.write_str("{")?;
    write_bytes(f, "key", &kv.key)?;
    if let Some(value) = &kv.value {
        f.write_str(",")?;
        write_bytes(f, "value", value)?;
    }
    write!(
        f,
        ",\"create_revision\":{},\"mod_revision\":{},\"version\":{}}}",
        kv.create_revision, kv.mod_revision, kv.version
    )
}

/// A range page's members (also a transaction read's, after its `op`).
fn write_range_members(f: &mut fmt::Formatter<'_>, r: &RangeResult) -> fmt::Result {
    write!(
        f,
        "\"revision\":{},\"count\":{},\"more\":{}",
        r.revision, r.count, r.more
    )?;
    if let Some(next) = &r.next {
        f.write_str(",")?;
        write_bytes(f, "next", next)?;
    }
    f.write_str(",\"kvs\":[")?;
    for (i, kv) in r.kvs.iter().enumerate() {
        if i > 0 {
            f.write_str(",")?;
        }
        write_key_value(f, kv)?;
    }
    f.write_str("]")
}

/// A range page's JSON, written straight to its output: no tree of JSON
/// values in between, so a page's keys and values are not copied to be
/// written.
pub struct RangeJson<'a>(pub &'a RangeResult);

impl fmt::Display for RangeJson<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        write_range_members(f, self.0)?;
        f.write_str("}")
    }
}

/// A transaction result's JSON, written as [`RangeJson`] is.
pub struct TxnResultJson<'a>(pub &'a TxnResult);

impl fmt::Display for TxnResultJson<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.0;
        write!(
            f,
            "{{\"succeeded\":{},\"revision\":{},\"results\":[",
            t.succeeded, t.revision
        )?;
        for (i, r) in t.results.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match r {
                OpResult::Put => f.write_str("{\"op\":\"put\"}")?,
                OpResult::Delete(deleted) => {
                    write!(f, "{{\"op\":\"delete\",\"deleted\":{deleted}}}")?
                }
                OpResult::Get(page) | OpResult::Range(page) => {
                    let op = if matches!(r, OpResult::Get(_)) {
                        "get"
                    } else {
                        "range"
                    };
                    write!(f, "{{\"op\":\"{op}\",")?;
                    write_range_members(f, page)?;
                    f.write_str("}")?;
                }
            }
        }
        f.write_str("]}")
    }
}

fn get_u64(object: &Json, name: &str) -> Option<u64> {
    object.get(name).and_then(Json::as_u64)
}

fn key_value_from(object: &Json) -> Option<KeyValue> {
    Some(KeyValue {
        key: Arc::from(get_bytes(object, "key").ok()??),
        value: get_bytes(object, "value").ok()?.map(Arc::new),
        create_revision: get_u64(object, "create_revision")?,
        mod_revision: get_u64(object, "mod_revision")?,
        version: get_u64(object, "version")?,
    })
}

/// Reads a range page back (the inverse of [`RangeJson`]).
pub fn range_result_from(object: &Json) -> Option<RangeResult> {
    let kvs = match object.get("kvs") {
        Some(Json::Array(items)) => items.iter().map(key_value_from).collect::<Option<_>>()?,
        Some(_) => return None,
        None => Vec::new(),
    };
    Some(RangeResult {
        revision: get_u64(object, "revision")?,
        kvs,
        count: get_u64(object, "count")?,
        more: matches!(object.get("more")?, Json::Bool(true)),
        next: get_bytes(object, "next").ok()?,
    })
}

/// Reads a transaction's result back (the inverse of [`TxnResultJson`]).
pub fn txn_result_from(object: &Json) -> Option<TxnResult> {
    let Some(Json::Array(items)) = object.get("results") else {
        return None;
    };
    let results = items
        .iter()
        .map(|r| match r.get("op")?.as_str()? {
            "put" => Some(OpResult::Put),
            "delete" => Some(OpResult::Delete(matches!(
                r.get("deleted")?,
                Json::Bool(true)
            ))),
            "get" => range_result_from(r).map(OpResult::Get),
            "range" => range_result_from(r).map(OpResult::Range),
            _ => None,
        })
        .collect::<Option<_>>()?;
    Some(TxnResult {
        revision: get_u64(object, "revision")?,
        succeeded: matches!(object.get("succeeded")?, Json::Bool(true)),
        results,
    })
}

/// A `BAD_REQUEST` about a transaction's JSON.
fn bad(message: impl Into<String>) -> Error {
    Error::new(Code::BadRequest, message)
}

/// An object's member `name`, which must be a byte string.
fn required_bytes(object: &Json, name: &str, what: &str) -> Result<Vec<u8>, Error> {
    get_bytes(object, name)
        .map_err(|e| bad(format!("{what}: {e}")))?
        .ok_or_else(|| bad(format!("{what} needs {name} (or {name}_base64)")))
}

/// Checks that `object` has no members but `names` (so a typo is an error,
/// not a silently different transaction).
fn only(object: &Json, names: &[&str], what: &str) -> Result<(), Error> {
    let Json::Object(members) = object else {
        return Err(bad(format!("{what} must be an object")));
    };
    for (name, _) in members {
        let base = name.strip_suffix("_base64").unwrap_or(name);
        if !names.contains(&name.as_str()) && !names.contains(&base) {
            return Err(bad(format!("{what}: unknown member {name:?}")));
        }
    }
    Ok(())
}

/// A range request from `start`/`end`/`prefix`, `limit`, `keys_only`,
/// `count_only` members (a transaction's range op; the HTTP query the same).
pub fn range_request_from(object: &Json, what: &str) -> Result<RangeRequest, Error> {
    let bytes = |name| get_bytes(object, name).map_err(|e| bad(format!("{what}: {e}")));
    let flag = |name| match object.get(name) {
        None | Some(Json::Bool(false)) => Ok(false),
        Some(Json::Bool(true)) => Ok(true),
        Some(_) => Err(bad(format!("{what}: {name} must be true or false"))),
    };
    let mut request = match bytes("prefix")? {
        Some(prefix) => RangeRequest::prefix(&prefix),
        None => RangeRequest::default(),
    };
    if let Some(start) = bytes("start")? {
        request.start = start;
    }
    if let Some(end) = bytes("end")? {
        request.end = Some(end);
    }
    request.limit = match object.get("limit") {
        None => 0,
        Some(n) => n
            .as_u64()
            .ok_or_else(|| bad(format!("{what}: limit must be a number")))?,
    };
    request.keys_only = flag("keys_only")?;
    request.count_only = flag("count_only")?;
    Ok(request)
}

fn range_request_members(r: &RangeRequest) -> Vec<(String, Json)> {
    let mut members = Vec::new();
    let prefix = r.end.is_some() && r.end == prefix_end(&r.start) && !r.start.is_empty();
    if prefix {
        members.push(bytes_member("prefix", &r.start));
    } else {
        if !r.start.is_empty() {
            members.push(bytes_member("start", &r.start));
        }
        if let Some(end) = &r.end {
            members.push(bytes_member("end", end));
        }
    }
    if r.limit > 0 {
        members.push(("limit".to_string(), number(r.limit)));
    }
    if r.keys_only {
        members.push(("keys_only".to_string(), Json::from(true)));
    }
    if r.count_only {
        members.push(("count_only".to_string(), Json::from(true)));
    }
    members
}

fn compare_from(c: &Json) -> Result<Compare, Error> {
    only(c, &["key", "target", "op", "value"], "a compare")?;
    let key = required_bytes(c, "key", "a compare")?;
    let op = c
        .get("op")
        .and_then(Json::as_str)
        .and_then(CompareOp::parse)
        .ok_or_else(|| bad("a compare's op is one of = != < >"))?;
    let target = c.get("target").and_then(Json::as_str).unwrap_or("");
    let revision = || {
        get_u64(c, "value").ok_or_else(|| bad(format!("a {target} compare needs a number value")))
    };
    let target = match target {
        "value" => Target::Value(required_bytes(c, "value", "a value compare")?),
        "version" => Target::Version(revision()?),
        "create_revision" => Target::CreateRevision(revision()?),
        "mod_revision" => Target::ModRevision(revision()?),
        "exists" => match c.get("value") {
            Some(Json::Bool(b)) => Target::Exists(*b),
            _ => return Err(bad("an exists compare needs value true or false")),
        },
        _ => {
            return Err(bad(
                "a compare's target is value, version, create_revision, mod_revision or exists",
            ))
        }
    };
    Ok(Compare { key, target, op })
}

fn op_from(o: &Json) -> Result<TxnOp, Error> {
    let name = o.get("op").and_then(Json::as_str).unwrap_or("");
    let what = format!("a {name} op");
    Ok(match name {
        "put" => {
            only(o, &["op", "key", "value"], &what)?;
            TxnOp::Put(
                required_bytes(o, "key", &what)?,
                required_bytes(o, "value", &what)?,
            )
        }
        "delete" | "get" => {
            only(o, &["op", "key"], &what)?;
            let key = required_bytes(o, "key", &what)?;
            if name == "get" {
                TxnOp::Get(key)
            } else {
                TxnOp::Delete(key)
            }
        }
        "range" => {
            let names = [
                "op",
                "start",
                "end",
                "prefix",
                "limit",
                "keys_only",
                "count_only",
            ];
            only(o, &names, &what)?;
            TxnOp::Range(range_request_from(o, &what)?)
        }
        _ => return Err(bad("an op is put, delete, get or range")),
    })
}

fn ops_from(object: &Json, name: &str) -> Result<Vec<TxnOp>, Error> {
    match object.get(name) {
        None => Ok(Vec::new()),
        Some(Json::Array(ops)) => ops.iter().map(op_from).collect(),
        Some(_) => Err(bad(format!("{name} must be an array of ops"))),
    }
}

/// Reads a transaction from its JSON, checking it ([`Txn::check`]).
pub fn txn_from(object: &Json) -> Result<Txn, Error> {
    only(object, &["compare", "then", "else"], "a transaction")?;
    let compares = match object.get("compare") {
        None => Vec::new(),
        Some(Json::Array(cs)) => cs.iter().map(compare_from).collect::<Result<_, _>>()?,
        Some(_) => return Err(bad("compare must be an array")),
    };
    let txn = Txn {
        compares,
        then: ops_from(object, "then")?,
        otherwise: ops_from(object, "else")?,
    };
    txn.check()?;
    Ok(txn)
}

/// A batch, `{"ops":[...]}`: a transaction without compares (its ops run
/// atomically, in order).
pub fn batch_from(object: &Json) -> Result<Txn, Error> {
    only(object, &["ops"], "a batch")?;
    let txn = Txn {
        then: ops_from(object, "ops")?,
        ..Txn::default()
    };
    txn.check()?;
    Ok(txn)
}

/// A transaction's JSON (what [`txn_from`] reads).
pub fn txn_json(t: &Txn) -> Json {
    let compares = t
        .compares
        .iter()
        .map(|c| {
            let (target, value) = match &c.target {
                Target::Value(v) => ("value", bytes_member("value", v)),
                Target::Version(n) => ("version", ("value".to_string(), number(*n))),
                Target::CreateRevision(n) => ("create_revision", ("value".to_string(), number(*n))),
                Target::ModRevision(n) => ("mod_revision", ("value".to_string(), number(*n))),
                Target::Exists(b) => ("exists", ("value".to_string(), Json::from(*b))),
            };
            Json::Object(vec![
                bytes_member("key", &c.key),
                ("target".to_string(), Json::from(target)),
                ("op".to_string(), Json::from(c.op.as_str())),
                value,
            ])
        })
        .collect();
    let ops = |branch: &[TxnOp]| {
        let op = |name: &str| ("op".to_string(), Json::from(name));
        Json::Array(
            branch
                .iter()
                .map(|o| {
                    Json::Object(match o {
                        TxnOp::Put(k, v) => {
                            vec![op("put"), bytes_member("key", k), bytes_member("value", v)]
                        }
                        TxnOp::Delete(k) => vec![op("delete"), bytes_member("key", k)],
                        TxnOp::Get(k) => vec![op("get"), bytes_member("key", k)],
                        TxnOp::Range(r) => [vec![op("range")], range_request_members(r)].concat(),
                    })
                })
                .collect(),
        )
    };
    let mut members = Vec::new();
    if !t.compares.is_empty() {
        members.push(("compare".to_string(), Json::Array(compares)));
    }
    members.push(("then".to_string(), ops(&t.then)));
    if !t.otherwise.is_empty() {
        members.push(("else".to_string(), ops(&t.otherwise)));
    }
    Json::Object(members)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json;
    use crate::service::kv::Kv;

    fn parse(text: &str) -> Result<Txn, Error> {
        txn_from(&json::parse(text).map_err(|e| bad(e.to_string()))?)
    }

    #[test]
    fn byte_strings_are_text_when_utf8_and_base64_otherwise() {
        assert_eq!(bytes_member("key", b"a b").1, Json::from("a b"));
        let (name, value) = bytes_member("value", &[0xff, 0]);
        assert_eq!((name.as_str(), value), ("value_base64", Json::from("/wA=")));
        let both = json::parse(r#"{"key":"a","key_base64":"YQ=="}"#).unwrap();
        assert!(get_bytes(&both, "key").is_err());
        let b64 = json::parse(r#"{"key_base64":"/wA="}"#).unwrap();
        assert_eq!(get_bytes(&b64, "key"), Ok(Some(vec![0xff, 0])));
    }

    #[test]
    fn a_transaction_reads_back_from_its_json() {
        let txn = parse(
            r#"{"compare":[{"key":"a","target":"mod_revision","op":"=","value":5},
                {"key_base64":"/w==","target":"value","op":"<","value_base64":"AA=="},
                {"key":"a","target":"exists","op":"!=","value":false}],
              "then":[{"op":"put","key":"a","value":"line\nbreak"},{"op":"delete","key":"b"}],
              "else":[{"op":"get","key":"a"},{"op":"range","prefix":"p","limit":3,"keys_only":true},
                      {"op":"range","start":"a","end":"c","count_only":true}]}"#,
        )
        .unwrap();
        assert_eq!(txn.compares[0].target, Target::ModRevision(5));
        assert_eq!(txn.compares[1].key, vec![0xff]);
        assert_eq!(
            txn.then[0],
            TxnOp::Put(b"a".to_vec(), b"line\nbreak".to_vec())
        );
        assert_eq!(
            txn.otherwise[1],
            TxnOp::Range(RangeRequest {
                limit: 3,
                keys_only: true,
                ..RangeRequest::prefix(b"p")
            })
        );
        let again = txn_from(&json::parse(&txn_json(&txn).to_string()).unwrap());
        assert_eq!(again, Ok(txn));
    }

    #[test]
    fn malformed_transactions_are_refused_with_a_reason() {
        for bad in [
            r#"[]"#,
            r#"{"then":[{"op":"frob","key":"a"}]}"#,
            r#"{"then":[{"op":"put","key":"a"}]}"#,
            r#"{"then":[{"op":"put","key":"a","value":"1","extra":1}]}"#,
            r#"{"compare":[{"key":"a","target":"version","op":"=","value":"1"}]}"#,
            r#"{"compare":[{"key":"a","target":"age","op":"=","value":1}]}"#,
            r#"{"compare":[{"key":"a","target":"version","op":"~","value":1}]}"#,
            r#"{"compare":[{"key":"a","target":"exists","op":"<","value":true}]}"#,
            r#"{"then":[{"op":"put","key":"a","value":"1"},{"op":"put","key":"a","value":"2"}]}"#,
            r#"{"then":[{"op":"put","key":"","value":"1"}]}"#,
            r#"{"when":[]}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn results_read_back_from_their_json() {
        let mut kv = Kv::default();
        let txn = parse(
            r#"{"then":[{"op":"put","key":"a","value":"1"},{"op":"put","key_base64":"/w==","value_base64":"AAE="},
                {"op":"delete","key":"x"},{"op":"get","key":"a"},{"op":"range","start":"","limit":1}]}"#,
        )
        .unwrap();
        let result = Txn::run(txn.then, true, &mut kv, &mut Vec::new());
        let text = TxnResultJson(&result).to_string();
        assert_eq!(txn_result_from(&json::parse(&text).unwrap()), Some(result));
    }
}
