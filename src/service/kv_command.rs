//! The KV store's request lines: plain text forms, binary-safe forms, and
//! the options of `GET` and `RANGE`.
//!
//! ```text
//! PUT k v                 text: k a word, v the rest of the line
//! PUT64 k64 [v64]         any bytes: key and value in base64 (no v64: empty)
//! GET k [meta] [serializable]      GET64 k64 [...]
//! DEL k                   DEL64 k64
//! RANGE [start=k] [end=k] [prefix=k] [limit=n] [keys] [count] [serializable]
//!                         start64=, end64=, prefix64= take base64
//! TXN {json}              see `service::kv_json`
//! ```
//!
//! A plain `GET` answers `VALUE v` (or `VALUE64 <base64>` for a value a line
//! cannot carry as text) or `NOT_FOUND`. With `meta` or `serializable` it is
//! a range of one key and answers `RANGE {json}`, which carries the key's
//! revisions and the store revision the answer reflects. `serializable`
//! reads the state of whichever server answers, without asking the leader:
//! fast, and possibly stale.

use super::command::{Command, Error};
use super::kv_json::{txn_from, txn_json};
use super::range::{prefix_end, RangeRequest};
use super::reply::Code;
use super::txn::{check_key, check_range, check_value};
use crate::json;
use crate::transport::line::{base64_decode, base64_encode};

fn bad(message: impl Into<String>) -> Error {
    Error::new(Code::BadRequest, message)
}

/// A base64 argument's bytes.
fn decode64(arg: &str, what: &str) -> Result<Vec<u8>, Error> {
    base64_decode(arg.as_bytes()).ok_or_else(|| bad(format!("{what} is not base64")))
}

/// A key given as text (`word` false: base64), checked against the limits.
fn key(arg: &str, base64: bool) -> Result<Vec<u8>, Error> {
    let key = if base64 {
        decode64(arg, "the key")?
    } else {
        arg.as_bytes().to_vec()
    };
    check_key(&key)?;
    Ok(key)
}

/// Parses the KV command `upper` (the command word in capitals) with the
/// rest of its line `rest`; `None` if `upper` is not a KV command.
pub fn parse_kv(upper: &str, rest: &str) -> Option<Result<Command, Error>> {
    if matches!(upper, "PUT" | "PUT64" | "TXN") {
        if let Some((rest, lease)) = split_lease(rest) {
            let inner = parse_kv(upper, rest)?;
            return Some(inner.map(|c| Command::Leased(lease, Box::new(c))));
        }
    }
    let args: Vec<&str> = rest.split_whitespace().collect();
    let usage = |u: &str| Err(bad(format!("usage: {u}")));
    Some(match upper {
        "PUT" | "APPEND" => {
            let rest = rest.trim_start();
            let at = rest.find(char::is_whitespace).unwrap_or(rest.len());
            let (k, value) = rest.split_at(at);
            // One space or tab separates the value; any more are its own.
            let value = value.strip_prefix([' ', '\t']).unwrap_or(value);
            if k.is_empty() {
                return Some(usage(&format!("{upper} k v")));
            }
            let value = value.as_bytes().to_vec();
            key(k, false).and_then(|k| {
                check_value(&value)?;
                Ok(if upper == "PUT" {
                    Command::Put(k, value)
                } else {
                    Command::Append(k, value)
                })
            })
        }
        "PUT64" => match args[..] {
            [k] | [k, _] => key(k, true).and_then(|k| {
                let value = match args.get(1) {
                    Some(v) => decode64(v, "the value")?,
                    None => Vec::new(),
                };
                check_value(&value)?;
                Ok(Command::Put(k, value))
            }),
            _ => usage("PUT64 key-base64 [value-base64]"),
        },
        "DEL" | "DEL64" => match args[..] {
            [k] => key(k, upper == "DEL64").map(Command::Del),
            _ => usage(&format!("{upper} k")),
        },
        "GET" | "GET64" => match args.split_first() {
            Some((k, options)) => key(k, upper == "GET64").and_then(|k| get(k, options)),
            None => usage(&format!("{upper} k")),
        },
        "RANGE" => range(&args).map(Command::Range),
        "TXN" => json::parse(rest.trim())
            .map_err(|e| bad(format!("TXN takes one JSON object: {e}")))
            .and_then(|j| txn_from(&j))
            .map(Command::Txn),
        _ => return None,
    })
}

/// A line's trailing ` LEASE <id>`: the line before it and the id. A plain
/// `PUT` whose value really ends that way is sent as `PUT64` ([`kv_line`]).
fn split_lease(rest: &str) -> Option<(&str, u64)> {
    let (before, id) = rest.trim_end().rsplit_once([' ', '\t'])?;
    let id = id.parse().ok()?;
    let word_at = before.len().checked_sub(5)?;
    let (before, word) = (before.get(..word_at)?, before.get(word_at..)?);
    if !word.eq_ignore_ascii_case("LEASE") || !before.ends_with([' ', '\t']) {
        return None;
    }
    Some((&before[..before.len() - 1], id))
}

/// `GET k` with options: plain, or a range of one key.
fn get(key: Vec<u8>, options: &[&str]) -> Result<Command, Error> {
    if options.is_empty() {
        return Ok(Command::Get(key));
    }
    let mut request = RangeRequest::key(&key);
    for option in options {
        match option.to_ascii_lowercase().as_str() {
            "meta" => {}
            "serializable" => request.serializable = true,
            _ => {
                return Err(bad(format!(
                    "unknown GET option {option:?}; meta, serializable"
                )))
            }
        }
    }
    Ok(Command::Range(request))
}

/// `RANGE`'s options.
fn range(options: &[&str]) -> Result<RangeRequest, Error> {
    let mut request = RangeRequest::default();
    let (mut start, mut end) = (None, None);
    for option in options {
        let (name, value) = option.split_once('=').unwrap_or((option, ""));
        let name = name.to_ascii_lowercase();
        let bytes = |base64: bool| match base64 {
            true => decode64(value, &name),
            false => Ok(value.as_bytes().to_vec()),
        };
        match name.as_str() {
            "start" | "start64" => start = Some(bytes(name == "start64")?),
            "end" | "end64" => end = Some(bytes(name == "end64")?),
            "prefix" | "prefix64" => {
                let prefix = RangeRequest::prefix(&bytes(name == "prefix64")?);
                request.start = prefix.start;
                request.end = prefix.end;
            }
            "limit" => {
                request.limit = value
                    .parse()
                    .map_err(|_| bad(format!("limit={value} is not a number")))?;
            }
            "keys" => request.keys_only = true,
            "count" => request.count_only = true,
            "serializable" => request.serializable = true,
            _ => {
                return Err(bad(format!(
                    "unknown RANGE option {option:?}; usage: RANGE [start=k] [end=k] \
                     [prefix=k] [limit=n] [keys] [count] [serializable]"
                )))
            }
        }
    }
    if let Some(start) = start {
        request.start = start;
    }
    if let Some(end) = end {
        request.end = Some(end);
    }
    check_range(&request)?;
    Ok(request)
}

/// Whether `s` can stand as a word of a line: nonempty, no whitespace.
fn is_word(s: &str) -> bool {
    !s.is_empty() && !s.contains(char::is_whitespace)
}

/// `name=text`, or `name64=base64` for bytes that are not a word.
fn option(name: &str, bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) if is_word(text) && !text.contains('=') => format!("{name}={text}"),
        _ => format!("{name}64={}", base64_encode(bytes)),
    }
}

/// The line that [`parse_kv`] reads back as `command`, for the KV commands
/// with a form of their own (`None` for the others): text where the bytes
/// allow, the base64 forms where they do not.
pub fn kv_line(command: &Command) -> Option<String> {
    fn text_key(k: &[u8]) -> Option<&str> {
        std::str::from_utf8(k).ok().filter(|k| is_word(k))
    }
    Some(match command {
        Command::Put(k, v) => {
            let text_value = std::str::from_utf8(v)
                .ok()
                .filter(|v| !v.contains(['\r', '\n']))
                .filter(|v| split_lease(&format!("k {v}")).is_none());
            match (text_key(k), text_value) {
                (Some(k), Some(v)) => format!("PUT {k} {v}"),
                _ => format!("PUT64 {} {}", base64_encode(k), base64_encode(v)),
            }
        }
        Command::Del(k) | Command::Get(k) => {
            let word = if matches!(command, Command::Del(_)) {
                "DEL"
            } else {
                "GET"
            };
            match text_key(k) {
                Some(k) => format!("{word} {k}"),
                None => format!("{word}64 {}", base64_encode(k)),
            }
        }
        Command::Range(r) => {
            let mut line = String::from("RANGE");
            let mut push = |part: String| {
                line.push(' ');
                line.push_str(&part);
            };
            if r.end.is_some() && r.end == prefix_end(&r.start) && !r.start.is_empty() {
                push(option("prefix", &r.start));
            } else {
                if !r.start.is_empty() {
                    push(option("start", &r.start));
                }
                if let Some(end) = &r.end {
                    push(option("end", end));
                }
            }
            if r.limit > 0 {
                push(format!("limit={}", r.limit));
            }
            for (on, word) in [
                (r.keys_only, "keys"),
                (r.count_only, "count"),
                (r.serializable, "serializable"),
            ] {
                if on {
                    push(word.to_string());
                }
            }
            line
        }
        Command::Txn(t) => format!("TXN {}", txn_json(t)),
        Command::Leased(lease, inner) => match &**inner {
            Command::Put(..) | Command::Txn(_) => format!("{} LEASE {lease}", kv_line(inner)?),
            _ => return None,
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::kv::{MAX_KEY, MAX_VALUE};
    use crate::service::txn::{Compare, CompareOp, Target, Txn, TxnOp};

    fn parsed(line: &str) -> Result<Command, Error> {
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        parse_kv(&word.to_ascii_uppercase(), rest).expect("a KV command")
    }

    #[test]
    fn a_trailing_lease_attaches_a_put_or_a_transaction() {
        let put = Command::Put("k".into(), "v w".into());
        assert_eq!(
            parsed("PUT k v w LEASE 7"),
            Ok(Command::Leased(7, Box::new(put.clone())))
        );
        assert_eq!(parsed("PUT k v w"), Ok(put));
        assert_eq!(
            parsed("PUT k LEASE 3"),
            Ok(Command::Leased(
                3,
                Box::new(Command::Put("k".into(), "".into()))
            ))
        );
        let looks_leased = Command::Put("k".into(), "v LEASE 9".into());
        let line = kv_line(&looks_leased).unwrap();
        assert!(line.starts_with("PUT64 "), "{line}");
        assert_eq!(parsed(&line), Ok(looks_leased));
        let txn = parsed(r#"TXN {"then":[{"op":"put","key":"a","value":"1"}]} LEASE 4"#);
        assert!(
            matches!(&txn, Ok(Command::Leased(4, inner)) if matches!(**inner, Command::Txn(_)))
        );
        let leased = txn.unwrap();
        assert_eq!(parsed(&kv_line(&leased).unwrap()), Ok(leased));
    }

    #[test]
    fn binary_forms_carry_any_bytes() {
        let every_byte: Vec<u8> = (0..=255).collect();
        let line = format!(
            "PUT64 {} {}",
            base64_encode(&every_byte),
            base64_encode(b"a\nb\r\n")
        );
        assert_eq!(
            parsed(&line),
            Ok(Command::Put(every_byte.clone(), b"a\nb\r\n".to_vec()))
        );
        assert_eq!(
            parsed(&format!("PUT64 {}", base64_encode(b"k"))),
            Ok(Command::Put(b"k".to_vec(), Vec::new())),
            "no value: empty"
        );
        assert_eq!(
            parsed(&format!("get64 {}", base64_encode(&[0]))),
            Ok(Command::Get(vec![0]))
        );
        assert_eq!(parsed("DEL64 !!"), Err(bad("the key is not base64")));
    }

    #[test]
    fn keys_and_values_over_the_limit_are_too_large() {
        let code = |line: &str| parsed(line).err().map(|e| e.code);
        assert_eq!(
            code(&format!("GET {}", "k".repeat(MAX_KEY + 1))),
            Some(Code::TooLarge)
        );
        assert_eq!(code(&format!("GET {}", "k".repeat(MAX_KEY))), None);
        let big = base64_encode(&vec![0; MAX_VALUE + 1]);
        assert_eq!(code(&format!("PUT64 aw== {big}")), Some(Code::TooLarge));
        assert_eq!(
            code(&format!("PUT k {}", "v".repeat(MAX_VALUE + 1))),
            Some(Code::TooLarge)
        );
        assert_eq!(code("PUT64 ="), Some(Code::BadRequest));
    }

    #[test]
    fn get_options_make_a_range_of_one_key() {
        assert_eq!(
            parsed("GET k meta"),
            Ok(Command::Range(RangeRequest::key(b"k")))
        );
        let Ok(Command::Range(r)) = parsed("GET k SERIALIZABLE") else {
            panic!()
        };
        assert!(r.serializable);
        assert!(parsed("GET k frob").is_err());
    }

    #[test]
    fn range_options_read_as_a_request() {
        let Ok(Command::Range(r)) = parsed("RANGE prefix=user/ start=user/b limit=10 keys") else {
            panic!()
        };
        assert_eq!(r.start, b"user/b");
        assert_eq!(r.end.as_deref(), Some(&b"user0"[..]));
        assert_eq!((r.limit, r.keys_only, r.count_only), (10, true, false));
        let Ok(Command::Range(all)) = parsed("RANGE") else {
            panic!()
        };
        assert_eq!(all, RangeRequest::default());
        assert!(parsed("RANGE limit=x").is_err());
        assert!(parsed("RANGE sideways").is_err());
    }

    #[test]
    fn every_kv_line_reads_back_as_its_command() {
        let txn = Txn {
            compares: vec![Compare {
                key: vec![0xff],
                target: Target::ModRevision(3),
                op: CompareOp::Equal,
            }],
            then: vec![TxnOp::Put(b"a b".to_vec(), b"x\ny".to_vec())],
            otherwise: vec![TxnOp::Get(b"a b".to_vec())],
        };
        let all = [
            Command::Put(b"k".to_vec(), b"  leading spaces".to_vec()),
            Command::Put(b"k".to_vec(), b"v w".to_vec()),
            Command::Put(b"k".to_vec(), Vec::new()),
            Command::Put(b"a b".to_vec(), b"v".to_vec()),
            Command::Put(vec![0, 1], vec![0xc3, 0x28]),
            Command::Del(b"k".to_vec()),
            Command::Del(b"\n".to_vec()),
            Command::Get(vec![0xff]),
            Command::Range(RangeRequest::prefix(b"p")),
            Command::Range(RangeRequest {
                start: b"a=b".to_vec(),
                end: Some(vec![0xff, 0xff]),
                limit: 5,
                keys_only: true,
                count_only: true,
                serializable: true,
            }),
            Command::Range(RangeRequest::default()),
            Command::Txn(txn),
        ];
        for command in all {
            let line = kv_line(&command).expect("a KV line");
            assert!(!line.contains(['\r', '\n']), "{line}");
            assert_eq!(parsed(&line), Ok(command), "{line}");
        }
        assert_eq!(
            kv_line(&Command::Put(b"k".to_vec(), b"v".to_vec())).as_deref(),
            Some("PUT k v")
        );
    }
}
