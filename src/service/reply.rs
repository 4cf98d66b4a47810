//! Typed replies: what the service answers, and the one place each is turned
//! into a line of the text protocol or read back from one.
//!
//! Every layer passes a [`Reply`], never protocol text: the state machine
//! returns one, the session table keeps one, the frontend counts requests by
//! it, the HTTP API builds its status and JSON from it, the simulator hands it
//! to its clients. Only the edges turn it into bytes: a client connection
//! writes `reply.to_string()` ([`fmt::Display`] is the text line), a follower
//! relays the leader's reply in its binary encoding ([`Encode`]), and the
//! client library reads a line back with [`Reply::parse_line`]. This is
//! mini-redis's `Frame`: commands return it, the connection writes it.
//!
//! An error is an [`Error`]: a [`Code`] and a message for a person. A code
//! says whether the error is *deterministic* (toydb's `Error` makes the same
//! distinction): the state machine's answer, the same on every replica that
//! applies the same log, which a session may keep as the answer to a retry; or
//! an answer about this moment on this server (no leader, a timeout, a busy
//! server, a refused token), which says nothing about the command's outcome.

use std::fmt;
use std::io::{self, Read, Write};
use std::sync::Arc;

use super::command::{format_cents, parse_cents};
use super::kv::Value;
use super::kv_json::{range_result_from, txn_result_from, RangeJson, TxnResultJson};
use super::lease::LeaseInfo;
use super::range::{self, RangeResult};
use super::snapshot_stream::{corrupt, SnapshotReader, SnapshotWriter};
use super::txn::{self, TxnResult};
use crate::codec::{Decode, DecodeError, Decoder, Encode, Encoder};
use crate::json;
use crate::transport::line::{base64_decode, base64_encode};

/// One reply to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `OK`: a write, a membership change or a leadership transfer succeeded.
    Ok,
    /// `NOT_FOUND`: no such key or account.
    NotFound,
    /// A key's value (shared with the store, never copied): `VALUE <v>` when
    /// the value is UTF-8 without a line break, else `VALUE64 <base64>`.
    Value(Value),
    /// `RANGE <json>`: a page of keys with their revisions
    /// ([`super::kv_json`] gives the JSON).
    Range(RangeResult),
    /// `TXN <json>`: what a transaction did.
    Txn(TxnResult),
    /// `BALANCE <x.yy>`: an account's balance, in cents.
    Balance(i64),
    /// `AUDIT accounts=<n> total=<x.yy>`: the ledger at one point in the log.
    Audit {
        /// How many accounts exist.
        accounts: u64,
        /// The money in all of them, in cents.
        total_cents: i128,
    },
    /// `SESSION <id>`: a client session was opened.
    Session(u64),
    /// `LEASE id=<id> ttl=<s> remaining=<s> keys=<n>`: a lease granted,
    /// kept alive or asked about (see [`super::lease`]).
    Lease(LeaseInfo),
    /// `PONG`.
    Pong,
    /// `BYE`: the server closes the connection.
    Bye,
    /// A line for a person, written as is (`HELP`, `STATUS`, `MEMBERS`).
    Text(String),
    /// `ERR <CODE> <message>`.
    Error(Error),
}

/// A refusal or failure: the protocol's code and a message for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// What kind of error (machines match on this).
    pub code: Code,
    /// What went wrong (for people; may be empty).
    pub message: String,
}

/// Every error code of the protocol. A code's name is its text on the wire
/// (`ERR NO_LEADER ...`); its number is its tag in binary encodings, so a
/// code keeps its number forever. To add one: a variant here, its name in
/// [`Code::as_str`], whether it is deterministic in [`Code::is_deterministic`],
/// an entry in [`Code::ALL`], and its HTTP status in `http/reply.rs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Code {
    /// The request is malformed or breaks a rule (a bad name, an amount, usage).
    BadRequest = 1,
    /// The command word is unknown.
    UnknownCommand = 2,
    /// The request line is longer than the server accepts.
    TooLong = 3,
    /// This connection must authenticate first (`AUTH <token>`).
    NoAuth = 4,
    /// A token or a peer tag was refused.
    Auth = 5,
    /// The server has too many connections.
    Busy = 6,
    /// No leader could take the request: nothing was applied; retry.
    NoLeader = 7,
    /// No outcome within the deadline: the request may or may not have been applied.
    Timeout = 8,
    /// A write would grow the state beyond the space quota.
    NoSpace = 9,
    /// The session was evicted: the outcome of its last request is unknown.
    SessionExpired = 10,
    /// No session with this id was ever opened.
    SessionUnknown = 11,
    /// The account already exists.
    Exists = 12,
    /// An account named in a transfer does not exist.
    NoAccount = 13,
    /// The account debited holds less than the amount.
    InsufficientFunds = 14,
    /// The txid was used for a different transfer.
    TxidReused = 15,
    /// A membership change is under way; one runs at a time.
    ChangeInProgress = 16,
    /// `ADD` of an id that is (or was) a member.
    IdInUse = 17,
    /// `REMOVE` of an id that is not a member.
    NotMember = 18,
    /// A server being added did not answer.
    Unreachable = 19,
    /// A server being added could not catch up with the log.
    CatchUp = 20,
    /// A key or value is over the store's limit.
    TooLarge = 21,
    /// A retried transaction was applied, but its reply was too large for
    /// the session to keep (see `service::session`).
    ReplyNotKept = 22,
    /// This server's storage failed (a full disk, an I/O error): its node
    /// has stopped for good (fail-stop) and answers nothing until restarted.
    Storage = 23,
    /// This server's disk has less free space than it keeps (the free-space
    /// guard, `-min-free-bytes`): a write that would grow the state is
    /// refused before it is proposed. Unlike the quota's `NOSPACE`, an
    /// answer about this server's disk now, not the state machine's.
    NoSpaceDisk = 24,
    /// A watch asked for a revision older than the history this server
    /// keeps (`ERR COMPACTED oldest=<rev>`): re-read the keys, then watch
    /// from the revision the read reflects.
    Compacted = 25,
    /// `LEASE GRANT` when the most leases the store keeps are granted.
    TooManyLeases = 26,
    /// No lease with this id (never granted, revoked or expired).
    LeaseNotFound = 27,
}

impl Code {
    /// Every code, for reading names and tags back.
    pub const ALL: [Code; 27] = [
        Code::BadRequest,
        Code::UnknownCommand,
        Code::TooLong,
        Code::NoAuth,
        Code::Auth,
        Code::Busy,
        Code::NoLeader,
        Code::Timeout,
        Code::NoSpace,
        Code::SessionExpired,
        Code::SessionUnknown,
        Code::Exists,
        Code::NoAccount,
        Code::InsufficientFunds,
        Code::TxidReused,
        Code::ChangeInProgress,
        Code::IdInUse,
        Code::NotMember,
        Code::Unreachable,
        Code::CatchUp,
        Code::TooLarge,
        Code::ReplyNotKept,
        Code::Storage,
        Code::NoSpaceDisk,
        Code::Compacted,
        Code::TooManyLeases,
        Code::LeaseNotFound,
    ];

    /// The code's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::BadRequest => "BAD_REQUEST",
            Code::UnknownCommand => "UNKNOWN_COMMAND",
            Code::TooLong => "TOO_LONG",
            Code::NoAuth => "NOAUTH",
            Code::Auth => "AUTH",
            Code::Busy => "BUSY",
            Code::NoLeader => "NO_LEADER",
            Code::Timeout => "TIMEOUT",
            Code::NoSpace => "NOSPACE",
            Code::SessionExpired => "SESSION_EXPIRED",
            Code::SessionUnknown => "SESSION_UNKNOWN",
            Code::Exists => "EXISTS",
            Code::NoAccount => "NO_ACCOUNT",
            Code::InsufficientFunds => "INSUFFICIENT_FUNDS",
            Code::TxidReused => "TXID_REUSED",
            Code::ChangeInProgress => "CHANGE_IN_PROGRESS",
            Code::IdInUse => "ID_IN_USE",
            Code::NotMember => "NOT_MEMBER",
            Code::Unreachable => "UNREACHABLE",
            Code::CatchUp => "CATCH_UP",
            Code::TooLarge => "TOO_LARGE",
            Code::ReplyNotKept => "REPLY_NOT_KEPT",
            Code::Storage => "STORAGE",
            Code::NoSpaceDisk => "NOSPACE_DISK",
            Code::Compacted => "COMPACTED",
            Code::TooManyLeases => "TOO_MANY_LEASES",
            Code::LeaseNotFound => "LEASE_NOT_FOUND",
        }
    }

    /// The code named `name`, if there is one.
    pub fn from_name(name: &str) -> Option<Code> {
        Code::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// The code whose tag is `tag`, if there is one.
    fn from_tag(tag: u8) -> Option<Code> {
        Code::ALL.into_iter().find(|&c| c as u8 == tag)
    }

    /// Whether the error is the state machine's answer: the same on every
    /// replica applying the same log, so a session may keep it as the answer
    /// to a retry. The others describe this server at this moment.
    pub fn is_deterministic(self) -> bool {
        match self {
            Code::BadRequest
            | Code::UnknownCommand
            | Code::NoSpace
            | Code::SessionExpired
            | Code::SessionUnknown
            | Code::Exists
            | Code::NoAccount
            | Code::InsufficientFunds
            | Code::TxidReused
            | Code::TooLarge
            | Code::ReplyNotKept
            | Code::TooManyLeases
            | Code::LeaseNotFound => true,
            Code::TooLong
            | Code::NoAuth
            | Code::Auth
            | Code::Busy
            | Code::NoLeader
            | Code::Timeout
            | Code::ChangeInProgress
            | Code::IdInUse
            | Code::NotMember
            | Code::Unreachable
            | Code::CatchUp
            | Code::Storage
            | Code::NoSpaceDisk
            | Code::Compacted => false,
        }
    }

    /// Whether the reply means "no outcome here": the client retries the same
    /// request (in its session, so it still applies at most once), on
    /// another server if need be.
    pub fn is_retryable(self) -> bool {
        matches!(self, Code::NoLeader | Code::Timeout | Code::Busy)
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Error {
    /// An error with `code` and `message`.
    pub fn new(code: Code, message: impl Into<String>) -> Error {
        Error {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for Error {
    /// `ERR <CODE> <message>` (`ERR <CODE>` without a message).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ERR {}", self.code)?;
        if !self.message.is_empty() {
            write!(f, " {}", self.message)?;
        }
        Ok(())
    }
}

impl From<Error> for Reply {
    fn from(e: Error) -> Reply {
        Reply::Error(e)
    }
}

impl Reply {
    /// `ERR <code> <message>`.
    pub fn error(code: Code, message: impl Into<String>) -> Reply {
        Reply::Error(Error::new(code, message))
    }

    /// This server cannot take the request and knows no leader to take it:
    /// nothing was applied.
    pub fn not_leader() -> Reply {
        Reply::error(Code::NoLeader, "not the leader; retry")
    }

    /// No outcome within the deadline: it may or may not have been applied.
    pub fn outcome_unknown() -> Reply {
        Reply::error(Code::Timeout, "outcome unknown")
    }

    /// The error's code, if this is an error.
    pub fn code(&self) -> Option<Code> {
        match self {
            Reply::Error(e) => Some(e.code),
            _ => None,
        }
    }

    /// Whether the client should retry the same request ([`Code::is_retryable`]).
    pub fn is_retryable(&self) -> bool {
        self.code().is_some_and(Code::is_retryable)
    }

    /// Whether every replica applying the same log gives this reply
    /// ([`Code::is_deterministic`]; every success is).
    pub fn is_deterministic(&self) -> bool {
        self.code().is_none_or(Code::is_deterministic)
    }

    /// The request counters' result label: `OK` for any success, `NOT_FOUND`,
    /// or the error's code.
    pub fn label(&self) -> &'static str {
        match self {
            Reply::NotFound => "NOT_FOUND",
            Reply::Error(e) => e.code.as_str(),
            _ => "OK",
        }
    }

    /// Reads a reply line (without its line ending) back: the inverse of the
    /// text form, for clients. A line that is none of the known forms is
    /// [`Reply::Text`]; `None` for an error with an unknown code.
    pub fn parse_line(line: &str) -> Option<Reply> {
        match line {
            "OK" => return Some(Reply::Ok),
            "NOT_FOUND" => return Some(Reply::NotFound),
            "PONG" => return Some(Reply::Pong),
            "BYE" => return Some(Reply::Bye),
            _ => {}
        }
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        let parsed = match word {
            "ERR" => {
                let (code, message) = rest.split_once(' ').unwrap_or((rest, ""));
                return Some(Reply::error(Code::from_name(code)?, message));
            }
            "VALUE" if line.len() > word.len() => Some(Reply::Value(Arc::new(rest.into()))),
            "VALUE64" => base64_decode(rest.as_bytes()).map(|v| Reply::Value(Arc::new(v))),
            "RANGE" => json::parse(rest)
                .ok()
                .and_then(|j| range_result_from(&j))
                .map(Reply::Range),
            "TXN" => json::parse(rest)
                .ok()
                .and_then(|j| txn_result_from(&j))
                .map(Reply::Txn),
            "BALANCE" => parse_cents(rest).ok().map(Reply::Balance),
            "AUDIT" => parse_audit(rest),
            "SESSION" => rest.parse().ok().map(Reply::Session),
            "LEASE" => LeaseInfo::parse(rest).map(Reply::Lease),
            _ => None,
        };
        Some(parsed.unwrap_or_else(|| Reply::Text(line.to_string())))
    }
}

/// `accounts=<n> total=<x.yy>` (a total beyond `i64` cents is shown as whole cents).
fn parse_audit(rest: &str) -> Option<Reply> {
    let (accounts, total) = rest.strip_prefix("accounts=")?.split_once(" total=")?;
    let total_cents = match parse_cents(total) {
        Ok(cents) => i128::from(cents),
        Err(_) => total
            .parse()
            .ok()
            .filter(|t: &i128| *t > i128::from(i64::MAX))?,
    };
    Some(Reply::Audit {
        accounts: accounts.parse().ok()?,
        total_cents,
    })
}

impl fmt::Display for Reply {
    /// The reply's line in the text protocol (without the line ending).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Ok => f.write_str("OK"),
            Reply::NotFound => f.write_str("NOT_FOUND"),
            Reply::Value(v) => match std::str::from_utf8(v) {
                Ok(text) if !text.contains(['\r', '\n']) => write!(f, "VALUE {text}"),
                _ => write!(f, "VALUE64 {}", base64_encode(v)),
            },
            Reply::Range(page) => write!(f, "RANGE {}", RangeJson(page)),
            Reply::Txn(result) => write!(f, "TXN {}", TxnResultJson(result)),
            Reply::Balance(cents) => write!(f, "BALANCE {}", format_cents(*cents)),
            Reply::Audit {
                accounts,
                total_cents,
            } => match i64::try_from(*total_cents) {
                Ok(total) => write!(f, "AUDIT accounts={accounts} total={}", format_cents(total)),
                Err(_) => write!(f, "AUDIT accounts={accounts} total={total_cents}"),
            },
            Reply::Session(id) => write!(f, "SESSION {id}"),
            Reply::Lease(info) => write!(f, "LEASE {info}"),
            Reply::Pong => f.write_str("PONG"),
            Reply::Bye => f.write_str("BYE"),
            Reply::Text(text) => f.write_str(text),
            Reply::Error(e) => e.fmt(f),
        }
    }
}

/// A reply equals the line it is written as (`reply == "OK"`), so that
/// tests and scripts can compare with a literal line.
impl PartialEq<&str> for Reply {
    fn eq(&self, line: &&str) -> bool {
        /// Matches written pieces against the rest of the line, in place.
        struct Rest<'a>(&'a str);
        impl fmt::Write for Rest<'_> {
            fn write_str(&mut self, piece: &str) -> fmt::Result {
                self.0 = self.0.strip_prefix(piece).ok_or(fmt::Error)?;
                Ok(())
            }
        }
        let mut rest = Rest(line);
        fmt::Write::write_fmt(&mut rest, format_args!("{self}")).is_ok() && rest.0.is_empty()
    }
}

/// Writes a reply a snapshot keeps (a session's last, a transfer's
/// outcome): its binary encoding.
pub(super) fn put_kept<W: Write>(w: &mut SnapshotWriter<W>, reply: &Reply) -> io::Result<()> {
    w.put_bytes(&reply.encode())
}

/// Reads a kept reply: its encoding, or in snapshots before version 4 its
/// text line (`as_line`). Only deterministic replies are ever kept.
pub(super) fn get_kept<R: Read>(r: &mut SnapshotReader<R>, as_line: bool) -> io::Result<Reply> {
    let reply = if as_line {
        let line = r.get_string()?;
        Reply::parse_line(&line).ok_or_else(|| corrupt(format!("a kept reply {line:?}")))?
    } else {
        Reply::decode(&r.get_vec()?).map_err(|e| corrupt(format!("a kept reply: {e}")))?
    };
    if !reply.is_deterministic() {
        return Err(corrupt(format!(
            "a kept reply that is not deterministic: {reply}"
        )));
    }
    Ok(reply)
}

const TAG_OK: u8 = 1;
const TAG_NOT_FOUND: u8 = 2;
const TAG_VALUE: u8 = 3;
const TAG_BALANCE: u8 = 4;
const TAG_AUDIT: u8 = 5;
const TAG_SESSION: u8 = 6;
const TAG_PONG: u8 = 7;
const TAG_BYE: u8 = 8;
const TAG_TEXT: u8 = 9;
const TAG_ERROR: u8 = 10;
const TAG_RANGE: u8 = 11;
const TAG_TXN: u8 = 12;
const TAG_LEASE: u8 = 13;

impl Encode for Reply {
    fn encode_to(&self, e: &mut Encoder) {
        match self {
            Reply::Ok => e.put_u8(TAG_OK),
            Reply::NotFound => e.put_u8(TAG_NOT_FOUND),
            Reply::Value(v) => {
                e.put_u8(TAG_VALUE);
                e.put_bytes(v);
            }
            Reply::Range(page) => {
                e.put_u8(TAG_RANGE);
                range::put_result(e, page);
            }
            Reply::Txn(result) => {
                e.put_u8(TAG_TXN);
                txn::put_result(e, result);
            }
            Reply::Balance(cents) => {
                e.put_u8(TAG_BALANCE);
                e.put_uvarint(*cents as u64);
            }
            Reply::Audit {
                accounts,
                total_cents,
            } => {
                e.put_u8(TAG_AUDIT);
                e.put_uvarint(*accounts);
                e.put_bytes(&total_cents.to_le_bytes());
            }
            Reply::Session(id) => {
                e.put_u8(TAG_SESSION);
                e.put_uvarint(*id);
            }
            Reply::Lease(info) => {
                e.put_u8(TAG_LEASE);
                e.put_uvarint(info.id);
                e.put_uvarint(info.ttl);
                e.put_uvarint(info.remaining as u64);
                e.put_uvarint(info.keys);
            }
            Reply::Pong => e.put_u8(TAG_PONG),
            Reply::Bye => e.put_u8(TAG_BYE),
            Reply::Text(text) => {
                e.put_u8(TAG_TEXT);
                e.put_bytes(text.as_bytes());
            }
            Reply::Error(error) => {
                e.put_u8(TAG_ERROR);
                e.put_u8(error.code as u8);
                e.put_bytes(error.message.as_bytes());
            }
        }
    }
}

fn get_string(d: &mut Decoder<'_>) -> Result<String, DecodeError> {
    String::from_utf8(d.get_vec()?).map_err(|_| DecodeError::Corrupt("invalid UTF-8".into()))
}

impl Decode for Reply {
    fn decode_from(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(match d.get_u8()? {
            TAG_OK => Reply::Ok,
            TAG_NOT_FOUND => Reply::NotFound,
            TAG_VALUE => Reply::Value(Arc::new(d.get_vec()?)),
            TAG_RANGE => Reply::Range(range::get_result(d)?),
            TAG_TXN => Reply::Txn(txn::get_result(d)?),
            TAG_BALANCE => Reply::Balance(d.get_uvarint()? as i64),
            TAG_AUDIT => {
                let accounts = d.get_uvarint()?;
                let total: [u8; 16] = d
                    .get_bytes()?
                    .try_into()
                    .map_err(|_| DecodeError::Corrupt("an audit total is 16 bytes".into()))?;
                Reply::Audit {
                    accounts,
                    total_cents: i128::from_le_bytes(total),
                }
            }
            TAG_SESSION => Reply::Session(d.get_uvarint()?),
            TAG_LEASE => Reply::Lease(LeaseInfo {
                id: d.get_uvarint()?,
                ttl: d.get_uvarint()?,
                remaining: d.get_uvarint()? as i64,
                keys: d.get_uvarint()?,
            }),
            TAG_PONG => Reply::Pong,
            TAG_BYE => Reply::Bye,
            TAG_TEXT => Reply::Text(get_string(d)?),
            TAG_ERROR => {
                let tag = d.get_u8()?;
                let code = Code::from_tag(tag)
                    .ok_or_else(|| DecodeError::Corrupt(format!("unknown error code {tag}")))?;
                Reply::error(code, get_string(d)?)
            }
            tag => return Err(DecodeError::Corrupt(format!("unknown reply tag {tag}"))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_kind() -> Vec<Reply> {
        let mut all = vec![
            Reply::Ok,
            Reply::NotFound,
            Reply::Value(Arc::new("hello  big world".into())),
            Reply::Value(Arc::new(Vec::new())),
            Reply::Value(Arc::new(b"line\nbreak".to_vec())),
            Reply::Value(Arc::new((0..=255).collect())),
            Reply::Range(RangeResult::default()),
            Reply::Txn(TxnResult::default()),
            Reply::Balance(90_050),
            Reply::Balance(0),
            Reply::Audit {
                accounts: 3,
                total_cents: 100_007,
            },
            Reply::Audit {
                accounts: 2,
                total_cents: i128::from(i64::MAX) * 3,
            },
            Reply::Session(42),
            Reply::Lease(LeaseInfo {
                id: 7,
                ttl: 10,
                remaining: -1,
                keys: 3,
            }),
            Reply::Pong,
            Reply::Bye,
            Reply::Text("STATUS id=1 role=leader".into()),
            Reply::error(Code::NoLeader, ""),
        ];
        all.extend(
            Code::ALL
                .iter()
                .map(|&c| Reply::error(c, format!("{c} happened; retry"))),
        );
        all
    }

    #[test]
    fn the_text_line_of_every_reply_reads_back_as_the_same_reply() {
        for reply in every_kind() {
            let line = reply.to_string();
            assert!(!line.contains(['\r', '\n']), "{line:?}");
            assert_eq!(Reply::parse_line(&line), Some(reply), "{line:?}");
        }
    }

    #[test]
    fn lines_are_the_protocols() {
        assert_eq!(Reply::Balance(90_050).to_string(), "BALANCE 900.50");
        assert_eq!(
            Reply::Audit {
                accounts: 2,
                total_cents: 1000
            }
            .to_string(),
            "AUDIT accounts=2 total=10.00"
        );
        assert_eq!(
            Reply::not_leader().to_string(),
            "ERR NO_LEADER not the leader; retry"
        );
        assert_eq!(
            Reply::outcome_unknown().to_string(),
            "ERR TIMEOUT outcome unknown"
        );
        assert_eq!(Reply::parse_line("ERR FROB what"), None, "unknown code");
        assert_eq!(Reply::Balance(7), "BALANCE 0.07");
        assert!(Reply::Ok != "OKAY" && Reply::Ok != "O" && Reply::NotFound != "OK");
        assert_eq!(
            Reply::parse_line("commands: PUT k v"),
            Some(Reply::Text("commands: PUT k v".into()))
        );
    }

    #[test]
    fn every_reply_round_trips_through_the_codec_and_garbage_is_refused() {
        for reply in every_kind() {
            assert_eq!(Reply::decode(&reply.encode()), Ok(reply));
        }
        assert!(Reply::decode(&[99]).is_err());
        assert!(Reply::decode(&[TAG_ERROR, 200, 0]).is_err());
        assert!(Reply::decode(&[TAG_AUDIT, 1, 3, 0, 0, 0]).is_err());
        assert!(Reply::decode(&[TAG_VALUE, 5, b'a']).is_err());
    }

    #[test]
    fn codes_have_distinct_names_and_tags_and_a_retry_is_never_kept() {
        for (i, a) in Code::ALL.iter().enumerate() {
            assert_eq!(Code::from_name(a.as_str()), Some(*a));
            assert_eq!(Code::from_tag(*a as u8), Some(*a));
            for b in &Code::ALL[i + 1..] {
                assert_ne!(a.as_str(), b.as_str());
                assert_ne!(*a as u8, *b as u8);
            }
            assert!(!(a.is_retryable() && a.is_deterministic()), "{a}");
        }
    }
}
