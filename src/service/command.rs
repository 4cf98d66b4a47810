//! The client protocol's text commands: parsing one request line into a [`Command`].
//!
//! One request line is a command word (case-insensitive) and its arguments.
//! Accounts and txids are 1..=1024 bytes without whitespace; in a plain line
//! a key is a word too, and a value is the rest of the line after the key (it
//! may contain spaces); amounts are decimals with at most two fraction
//! digits, kept as integer cents. The KV store's keys and values are any
//! bytes: its binary-safe forms (`PUT64`, `GET64`, ...), `RANGE` and `TXN`
//! are in [`super::kv_command`].
//!
//! `CMD <base64>` carries any command in its binary encoding ([`to_line`]
//! uses it for accounts with whitespace, which a plain line cannot hold).

pub use super::reply::Error;

use super::kv_command::{kv_line, parse_kv};
use super::lease::{get_lease_command, parse_lease, put_lease_command, LeaseCommand};
use super::range::{self, RangeRequest};
use super::reply::Code;
use super::txn::{self, check_key, check_range, check_value, Txn};
use crate::codec::{Decode, DecodeError, Decoder, Encode, Encoder};
use crate::transport::line::{base64_decode, base64_encode};

/// Longest account name or txid, in bytes (keys: [`super::kv::MAX_KEY`]).
pub const MAX_NAME: usize = 1024;
/// Largest amount accepted, in cents (10^15 cents: far from `i64` overflow even
/// summed over many accounts).
pub const MAX_CENTS: i64 = 1_000_000_000_000_000;

/// A request that changes or reads the replicated state; goes through the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `PUT k v`: set `k` to `v`.
    Put(Vec<u8>, Vec<u8>),
    /// `APPEND k v`: append `v` to `k`'s value (creating it if absent).
    Append(Vec<u8>, Vec<u8>),
    /// `DEL k`: remove `k`.
    Del(Vec<u8>),
    /// `GET k`: read `k`'s value.
    Get(Vec<u8>),
    /// `RANGE ...` (and `GET k meta`): read keys with their revisions.
    Range(RangeRequest),
    /// `TXN {...}`: compares, then ops, atomically.
    Txn(Txn),
    /// `OPEN acct amount`: create an account with an opening balance.
    Open(String, i64),
    /// `TRANSFER txid from to amount`: move money, exactly once per txid.
    Transfer(Transfer),
    /// `BALANCE acct`: read a balance.
    Balance(String),
    /// `AUDIT`: number of accounts and total money, at one point in the log.
    Audit,
    /// `REGISTER`: open a client session; the reply is `SESSION <id>`.
    Register,
    /// Sets the space quota in force (proposed by a leader, never parsed from
    /// a client line; see `service::quota`).
    SetQuota(u64),
    /// `LEASE ...`: grant, keep alive, revoke or read a lease (and the
    /// leader's expiry, never parsed from a client line); see [`super::lease`].
    Lease(LeaseCommand),
    /// `PUT ... LEASE <id>`, `TXN ... LEASE <id>`: a put or transaction
    /// whose puts attach their keys to a lease.
    Leased(u64, Box<Command>),
}

/// The fields of a transfer; the same txid must always come with the same fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    /// Caller-chosen unique id that makes retries safe.
    pub txid: String,
    /// Account debited.
    pub from: String,
    /// Account credited.
    pub to: String,
    /// Amount in cents (> 0).
    pub cents: i64,
}

/// A request a server answers by itself, without the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Local {
    /// `PING`.
    Ping,
    /// `HELP`.
    Help,
    /// `QUIT`.
    Quit,
    /// `STATUS`.
    Status,
    /// `LEADER id`: hand leadership to server `id` (thesis §3.10).
    Leader(u64),
    /// `MEMBERS`: this server's view of the configuration (thesis §4).
    Members,
    /// `ADD id host:port`: add a server, as a learner first (thesis §4.2.1).
    Add(u64, String),
    /// `REMOVE id`: remove a server (thesis §4).
    Remove(u64),
}

/// Any parsed request line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Answered locally.
    Local(Local),
    /// Replicated through Raft.
    Command(Command),
}

/// A `BAD_REQUEST` refusal.
fn bad(message: impl Into<String>) -> Error {
    Error::new(Code::BadRequest, message)
}

/// The one-line reply to `HELP`.
pub const HELP: &str = "commands: PUT k v | APPEND k v | DEL k | GET k [meta] [serializable] | \
PUT64 k v | GET64 k | DEL64 k | RANGE [start=k] [end=k] [prefix=k] [limit=n] [keys] [count] \
[serializable] | TXN {json} | OPEN acct amount | \
TRANSFER txid from to amount | BALANCE acct | AUDIT | REGISTER | CLIENT id seq command | \
AUTH token | STATUS | LEADER id | MEMBERS | ADD id host:port | REMOVE id | PING | HELP | QUIT | \
CMD base64 | WATCH k [FROM rev] | WATCH PREFIX p [FROM rev] | WATCH64 ... | LEASE GRANT ttl_s | \
LEASE KEEPALIVE|REVOKE|TTL id | PUT k v LEASE id | TXN {json} LEASE id";

/// Parses one request line (without its line ending). Blank lines are the
/// caller's to skip. A refusal is `BAD_REQUEST` or `UNKNOWN_COMMAND`.
pub fn parse(line: &str) -> Result<Request, Error> {
    let line = line.trim_start();
    let (word, rest) = split_word(line);
    let upper = word.to_ascii_uppercase();
    let args: Vec<&str> = rest.split_whitespace().collect();
    let exact = |n: usize, usage: &str| {
        if args.len() == n {
            Ok(())
        } else {
            Err(bad(format!("usage: {usage}")))
        }
    };
    let command = match upper.as_str() {
        "PING" => return exact(0, "PING").map(|_| Request::Local(Local::Ping)),
        "HELP" => return exact(0, "HELP").map(|_| Request::Local(Local::Help)),
        "QUIT" => return exact(0, "QUIT").map(|_| Request::Local(Local::Quit)),
        "STATUS" => return exact(0, "STATUS").map(|_| Request::Local(Local::Status)),
        "LEADER" => {
            exact(1, "LEADER id")?;
            let id = args[0]
                .parse::<u64>()
                .ok()
                .filter(|&id| id != 0)
                .ok_or_else(|| bad("usage: LEADER id (a server id, 1 or more)"))?;
            return Ok(Request::Local(Local::Leader(id)));
        }
        "MEMBERS" => return exact(0, "MEMBERS").map(|_| Request::Local(Local::Members)),
        "ADD" => {
            exact(2, "ADD id host:port")?;
            let id = server_id(args[0], "ADD id host:port")?;
            return Ok(Request::Local(Local::Add(id, address(args[1])?)));
        }
        "REMOVE" => {
            exact(1, "REMOVE id")?;
            let id = server_id(args[0], "REMOVE id")?;
            return Ok(Request::Local(Local::Remove(id)));
        }
        "OPEN" => {
            exact(2, "OPEN acct amount")?;
            Command::Open(name(args[0], "account")?, parse_cents(args[1])?)
        }
        "TRANSFER" => {
            exact(4, "TRANSFER txid from to amount")?;
            let transfer = Transfer {
                txid: name(args[0], "txid")?,
                from: name(args[1], "account")?,
                to: name(args[2], "account")?,
                cents: parse_cents(args[3])?,
            };
            if transfer.cents == 0 {
                return Err(bad("amount must be positive"));
            }
            if transfer.from == transfer.to {
                return Err(bad("from and to are the same account"));
            }
            Command::Transfer(transfer)
        }
        "BALANCE" => {
            exact(1, "BALANCE acct")?;
            Command::Balance(name(args[0], "account")?)
        }
        "AUDIT" => {
            exact(0, "AUDIT")?;
            Command::Audit
        }
        "CMD" => {
            exact(1, "CMD <base64 of an encoded command>")?;
            let bytes = base64_decode(args[0].as_bytes()).ok_or_else(|| bad("invalid base64"))?;
            let command =
                Command::decode(&bytes).map_err(|e| bad(format!("undecodable command: {e}")))?;
            check(&command)?;
            command
        }
        "REGISTER" => {
            exact(0, "REGISTER")?;
            Command::Register
        }
        "LEASE" => Command::Lease(parse_lease(&args)?),
        kv => match parse_kv(kv, rest) {
            Some(command) => command?,
            None => {
                let shown: String = word.chars().take(32).collect();
                return Err(Error::new(
                    Code::UnknownCommand,
                    format!("unknown command '{shown}' (try HELP)"),
                ));
            }
        },
    };
    Ok(Request::Command(command))
}

/// A server id: 1 or more.
fn server_id(s: &str, usage: &str) -> Result<u64, Error> {
    s.parse::<u64>()
        .ok()
        .filter(|&id| id != 0)
        .ok_or_else(|| bad(format!("usage: {usage} (a server id, 1 or more)")))
}

/// A peer address `host:port`, short enough for a configuration entry.
fn address(s: &str) -> Result<String, Error> {
    let port = s
        .rsplit_once(':')
        .map(|(host, port)| (host, port.parse::<u16>()));
    let valid = matches!(port, Some((host, Ok(port))) if !host.is_empty() && port != 0);
    if !valid || s.len() > crate::raft::configuration::MAX_ADDRESS {
        return Err(bad(format!("'{s}' is not an address host:port")));
    }
    Ok(s.to_string())
}

/// Splits off the first whitespace-delimited word.
fn split_word(s: &str) -> (&str, &str) {
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    }
}

fn name(s: &str, what: &str) -> Result<String, Error> {
    if s.is_empty() || s.len() > MAX_NAME {
        return Err(bad(format!("{what} must be 1..={MAX_NAME} bytes")));
    }
    if s.contains(['\r', '\n']) {
        return Err(bad(format!("{what} must not contain a line break")));
    }
    Ok(s.to_string())
}

/// Checks a decoded command against the rules a parsed line obeys.
fn check(command: &Command) -> Result<(), Error> {
    match command {
        Command::Put(k, v) | Command::Append(k, v) => {
            check_key(k)?;
            check_value(v)?;
        }
        Command::Del(k) | Command::Get(k) => check_key(k)?,
        Command::Range(r) => check_range(r)?,
        Command::Txn(t) => t.check()?,
        Command::Open(a, _) | Command::Balance(a) => {
            name(a, "account")?;
        }
        Command::Transfer(t) => {
            name(&t.txid, "txid")?;
            name(&t.from, "account")?;
            name(&t.to, "account")?;
            if t.cents == 0 {
                return Err(bad("amount must be positive"));
            }
            if t.from == t.to {
                return Err(bad("from and to are the same account"));
            }
        }
        Command::Audit | Command::Register => {}
        Command::Lease(LeaseCommand::Expire { .. }) => {
            return Err(bad("a lease expiry is not a client command"))
        }
        Command::Lease(LeaseCommand::Grant(ttl)) => {
            parse_lease(&["GRANT", &ttl.to_string()])?;
        }
        Command::Lease(_) => {}
        Command::Leased(_, inner) => match &**inner {
            Command::Put(..) | Command::Txn(_) => check(inner)?,
            _ => return Err(bad("only PUT and TXN take a lease")),
        },
        // Only a leader proposes it (see `service::quota`); never a client.
        Command::SetQuota(_) => return Err(bad("SetQuota is not a client command")),
    }
    Ok(())
}

/// The request line that [`parse`] reads back as `command`: the plain form
/// when every name is a nonempty word and the value has no line break, the
/// KV store's base64 forms for other keys and values, else `CMD <base64>`.
/// (`SetQuota` has no line `parse` accepts: clients never send it.)
pub fn to_line(command: &Command) -> String {
    if let Some(line) = kv_line(command) {
        return line;
    }
    let word = |s: &str| !s.is_empty() && !s.contains(char::is_whitespace);
    let plain = match command {
        Command::Append(k, v) => {
            std::str::from_utf8(k).is_ok_and(word)
                && std::str::from_utf8(v).is_ok_and(|v| !v.contains(['\r', '\n']))
        }
        Command::Open(k, _) | Command::Balance(k) => word(k),
        Command::Transfer(t) => word(&t.txid) && word(&t.from) && word(&t.to),
        Command::Audit | Command::Register => true,
        _ => false,
    };
    if !plain {
        return format!("CMD {}", base64_encode(&command.encode()));
    }
    match command {
        Command::Append(k, v) => format!(
            "APPEND {} {}",
            String::from_utf8_lossy(k),
            String::from_utf8_lossy(v)
        ),
        Command::Open(a, cents) => format!("OPEN {a} {}", format_cents(*cents)),
        Command::Transfer(t) => format!(
            "TRANSFER {} {} {} {}",
            t.txid,
            t.from,
            t.to,
            format_cents(t.cents)
        ),
        Command::Balance(a) => format!("BALANCE {a}"),
        Command::Audit => "AUDIT".into(),
        Command::Register => "REGISTER".into(),
        _ => format!("CMD {}", base64_encode(&command.encode())),
    }
}

impl Command {
    /// Whether the command only reads (`GET`, `RANGE`, `BALANCE`, `AUDIT`):
    /// such commands are served by ReadIndex, not through the log (thesis
    /// §6.4). A transaction is a write, even one that only reads.
    pub fn is_read(&self) -> bool {
        matches!(
            self,
            Command::Get(_)
                | Command::Range(_)
                | Command::Balance(_)
                | Command::Audit
                | Command::Lease(LeaseCommand::Ttl(_))
        )
    }

    /// Whether the command is a read any server may answer from its own
    /// applied state (a serializable range: possibly stale).
    pub fn is_serializable(&self) -> bool {
        matches!(self, Command::Range(r) if r.serializable)
    }
}

/// The command's word in lowercase (`put`, `transfer`, ...), for metrics.
pub fn word(command: &Command) -> &'static str {
    match command {
        Command::Put(..) => "put",
        Command::Append(..) => "append",
        Command::Del(_) => "del",
        Command::Get(_) => "get",
        Command::Range(_) => "range",
        Command::Txn(_) => "txn",
        Command::Open(..) => "open",
        Command::Transfer(_) => "transfer",
        Command::Balance(_) => "balance",
        Command::Audit => "audit",
        Command::Register => "register",
        Command::SetQuota(_) => "set_quota",
        Command::Lease(LeaseCommand::Grant(_)) => "lease_grant",
        Command::Lease(LeaseCommand::KeepAlive(_)) => "lease_keepalive",
        Command::Lease(LeaseCommand::Revoke(_)) => "lease_revoke",
        Command::Lease(LeaseCommand::Ttl(_)) => "lease_ttl",
        Command::Lease(LeaseCommand::Expire { .. }) => "lease_expire",
        Command::Leased(_, inner) => word(inner),
    }
}

/// Parses `900`, `900.5` or `900.50` into cents; no sign, at most 2 decimals.
pub fn parse_cents(s: &str) -> Result<i64, Error> {
    let invalid = || {
        bad(format!(
            "invalid amount '{s}': use digits with up to 2 decimals"
        ))
    };
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || (s.contains('.') && !digits(frac)) || frac.len() > 2 || whole.len() > 15 {
        return Err(invalid());
    }
    let whole: i64 = whole.parse().map_err(|_| invalid())?;
    let frac_cents: i64 = match frac.len() {
        0 => 0,
        1 => frac.parse::<i64>().map_err(|_| invalid())? * 10,
        _ => frac.parse().map_err(|_| invalid())?,
    };
    let cents = whole
        .checked_mul(100)
        .and_then(|c| c.checked_add(frac_cents))
        .filter(|&c| c <= MAX_CENTS)
        .ok_or_else(|| bad(format!("amount '{s}' is too large")))?;
    Ok(cents)
}

/// Formats cents with exactly two decimals: `90050` → `900.50`.
pub fn format_cents(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

const TAG_PUT: u8 = 1;
const TAG_APPEND: u8 = 2;
const TAG_DEL: u8 = 3;
const TAG_GET: u8 = 4;
const TAG_OPEN: u8 = 5;
const TAG_TRANSFER: u8 = 6;
const TAG_BALANCE: u8 = 7;
const TAG_AUDIT: u8 = 8;
const TAG_REGISTER: u8 = 9;
const TAG_SET_QUOTA: u8 = 10;
const TAG_RANGE: u8 = 11;
const TAG_TXN: u8 = 12;
const TAG_LEASE: u8 = 13;
const TAG_LEASED: u8 = 14;

fn get_string(d: &mut Decoder<'_>) -> Result<String, DecodeError> {
    String::from_utf8(d.get_vec()?).map_err(|_| DecodeError::Corrupt("invalid UTF-8".into()))
}

fn get_cents(d: &mut Decoder<'_>) -> Result<i64, DecodeError> {
    let v = d.get_uvarint()?;
    i64::try_from(v)
        .ok()
        .filter(|&c| c <= MAX_CENTS)
        .ok_or_else(|| DecodeError::Corrupt("amount out of range".into()))
}

impl Encode for Command {
    fn encode_to(&self, e: &mut Encoder) {
        match self {
            Command::Put(k, v) | Command::Append(k, v) => {
                e.put_u8(if matches!(self, Command::Put(..)) {
                    TAG_PUT
                } else {
                    TAG_APPEND
                });
                e.put_bytes(k);
                e.put_bytes(v);
            }
            Command::Del(k) | Command::Get(k) => {
                e.put_u8(if matches!(self, Command::Del(_)) {
                    TAG_DEL
                } else {
                    TAG_GET
                });
                e.put_bytes(k);
            }
            Command::Range(r) => {
                e.put_u8(TAG_RANGE);
                range::put_request(e, r);
            }
            Command::Txn(t) => {
                e.put_u8(TAG_TXN);
                txn::put_txn(e, t);
            }
            Command::Balance(a) => {
                e.put_u8(TAG_BALANCE);
                e.put_bytes(a.as_bytes());
            }
            Command::Open(a, cents) => {
                e.put_u8(TAG_OPEN);
                e.put_bytes(a.as_bytes());
                e.put_uvarint(*cents as u64);
            }
            Command::Transfer(t) => {
                e.put_u8(TAG_TRANSFER);
                e.put_bytes(t.txid.as_bytes());
                e.put_bytes(t.from.as_bytes());
                e.put_bytes(t.to.as_bytes());
                e.put_uvarint(t.cents as u64);
            }
            Command::Audit => e.put_u8(TAG_AUDIT),
            Command::Register => e.put_u8(TAG_REGISTER),
            Command::SetQuota(bytes) => {
                e.put_u8(TAG_SET_QUOTA);
                e.put_uvarint(*bytes);
            }
            Command::Lease(c) => {
                e.put_u8(TAG_LEASE);
                put_lease_command(e, c);
            }
            Command::Leased(lease, inner) => {
                e.put_u8(TAG_LEASED);
                e.put_uvarint(*lease);
                inner.encode_to(e);
            }
        }
    }
}

impl Decode for Command {
    fn decode_from(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(match d.get_u8()? {
            TAG_PUT => Command::Put(d.get_vec()?, d.get_vec()?),
            TAG_APPEND => Command::Append(d.get_vec()?, d.get_vec()?),
            TAG_DEL => Command::Del(d.get_vec()?),
            TAG_GET => Command::Get(d.get_vec()?),
            TAG_RANGE => Command::Range(range::get_request(d)?),
            TAG_TXN => Command::Txn(txn::get_txn(d)?),
            TAG_OPEN => Command::Open(get_string(d)?, get_cents(d)?),
            TAG_TRANSFER => Command::Transfer(Transfer {
                txid: get_string(d)?,
                from: get_string(d)?,
                to: get_string(d)?,
                cents: get_cents(d)?,
            }),
            TAG_BALANCE => Command::Balance(get_string(d)?),
            TAG_AUDIT => Command::Audit,
            TAG_REGISTER => Command::Register,
            TAG_SET_QUOTA => Command::SetQuota(d.get_uvarint()?),
            TAG_LEASE => Command::Lease(get_lease_command(d)?),
            TAG_LEASED => {
                let lease = d.get_uvarint()?;
                // One level only: a leased command holds a put or a transaction.
                let inner = match d.get_u8()? {
                    TAG_PUT => Command::Put(d.get_vec()?, d.get_vec()?),
                    TAG_TXN => Command::Txn(txn::get_txn(d)?),
                    tag => {
                        return Err(DecodeError::Corrupt(format!(
                            "a leased command with tag {tag}"
                        )))
                    }
                };
                Command::Leased(lease, Box::new(inner))
            }
            tag => return Err(DecodeError::Corrupt(format!("unknown command tag {tag}"))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(line: &str) -> Command {
        match parse(line) {
            Ok(Request::Command(c)) => c,
            other => panic!("{line:?} parsed as {other:?}"),
        }
    }

    #[test]
    fn values_keep_their_inner_spaces_and_words_ignore_case() {
        assert_eq!(
            cmd("put greeting hello  big world"),
            Command::Put("greeting".into(), "hello  big world".into())
        );
        assert_eq!(cmd("APPEND k"), Command::Append("k".into(), "".into()));
        assert_eq!(cmd("Get k"), Command::Get("k".into()));
        assert_eq!(parse("ping"), Ok(Request::Local(Local::Ping)));
    }

    /// Reference: thesis §4 — the operator's membership commands.
    #[test]
    fn membership_commands_parse_ids_and_addresses() {
        assert_eq!(parse("members"), Ok(Request::Local(Local::Members)));
        assert_eq!(
            parse("ADD 4 127.0.0.1:8004"),
            Ok(Request::Local(Local::Add(4, "127.0.0.1:8004".into())))
        );
        assert_eq!(
            parse("add 12 db-4.example.com:8000"),
            Ok(Request::Local(Local::Add(
                12,
                "db-4.example.com:8000".into()
            )))
        );
        assert_eq!(parse("REMOVE 2"), Ok(Request::Local(Local::Remove(2))));
        for bad in [
            "ADD 4",
            "ADD 0 h:1",
            "ADD x h:1",
            "ADD 4 h",
            "ADD 4 h:0",
            "ADD 4 :8004",
            "ADD 4 h:99999",
            "REMOVE",
            "REMOVE 0",
            "MEMBERS 1",
        ] {
            assert!(parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn amounts_are_cents_with_at_most_two_decimals() {
        assert_eq!(parse_cents("900.5"), Ok(90_050));
        assert_eq!(parse_cents("900.50"), Ok(90_050));
        assert_eq!(parse_cents("7"), Ok(700));
        assert_eq!(parse_cents("0.07"), Ok(7));
        for bad in [
            "",
            ".5",
            "1.",
            "1.234",
            "-1",
            "+1",
            "1e3",
            "12345678901234567",
            "x",
        ] {
            assert!(parse_cents(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(format_cents(90_050), "900.50");
        assert_eq!(format_cents(7), "0.07");
        assert_eq!(format_cents(-150), "-1.50");
    }

    #[test]
    fn bad_requests_name_their_problem() {
        let code = |line: &str| parse(line).err().map(|e| e.code);
        assert_eq!(code("FROB x"), Some(Code::UnknownCommand));
        assert_eq!(code("GET"), Some(Code::BadRequest));
        assert_eq!(code("GET a b"), Some(Code::BadRequest));
        assert_eq!(code("PUT"), Some(Code::BadRequest));
        assert_eq!(code("TRANSFER t a a 5"), Some(Code::BadRequest));
        assert_eq!(code("TRANSFER t a b 0"), Some(Code::BadRequest));
        assert_eq!(code("OPEN a 1.001"), Some(Code::BadRequest));
        assert_eq!(
            code(&format!("GET {}", "k".repeat(1025))),
            Some(Code::TooLarge)
        );
        assert_eq!(
            code(&format!("OPEN {} 1", "a".repeat(1025))),
            Some(Code::BadRequest)
        );
    }

    #[test]
    fn to_line_reads_back_as_the_same_command_whatever_the_names() {
        let t = |txid: &str, from: &str, to: &str| {
            Command::Transfer(Transfer {
                txid: txid.into(),
                from: from.into(),
                to: to.into(),
                cents: 1050,
            })
        };
        let all = [
            Command::Put("k".into(), "  spaced value\t".into()),
            Command::Put("a b/ü%?#+".into(), "v".into()),
            Command::Put("k".into(), "".into()),
            Command::Put("k".into(), "\u{a0}x".into()),
            Command::Put(vec![0xff], b"\r\n".to_vec()),
            Command::Append("tab\tkey".into(), "x".into()),
            Command::Append("k".into(), vec![0, 0xff]),
            Command::Append("k".into(), "x y".into()),
            Command::Del("\u{a0}nbsp".into()),
            Command::Get("k".into()),
            Command::Get("two words".into()),
            Command::Open("alice smith".into(), 90050),
            Command::Open("alice".into(), 7),
            t("t1", "alice", "bob"),
            t("t 2", "alice", "bob smith"),
            Command::Balance("bob".into()),
            Command::Audit,
        ];
        for c in all {
            let line = to_line(&c);
            assert_eq!(parse(&line), Ok(Request::Command(c.clone())), "{line}");
        }
        assert_eq!(to_line(&Command::Get("k".into())), "GET k");
        assert!(to_line(&Command::Get("a b".into())).starts_with("GET64 "));
        assert!(to_line(&Command::Open("a b".into(), 1)).starts_with("CMD "));
    }

    #[test]
    fn encoded_commands_obey_the_rules_of_plain_lines() {
        let code = |c: Command| parse(&format!("CMD {}", base64_encode(&c.encode()))).err();
        assert!(code(Command::Get(Vec::new())).is_some());
        assert!(
            code(Command::Get("a\nb".into())).is_none(),
            "keys are any bytes"
        );
        assert!(code(Command::Put("k".into(), "line\r\nbreak".into())).is_none());
        assert!(code(Command::Get("k".repeat(MAX_NAME + 1).into())).is_some());
        assert!(code(Command::Open("a\nb".into(), 1)).is_some());
        let twice = Txn {
            then: vec![
                txn::TxnOp::Delete("k".into()),
                txn::TxnOp::Delete("k".into()),
            ],
            ..Txn::default()
        };
        assert!(code(Command::Txn(twice)).is_some());
        let same = Transfer {
            txid: "t".into(),
            from: "a".into(),
            to: "a".into(),
            cents: 5,
        };
        assert!(code(Command::Transfer(same)).is_some());
        assert!(
            code(Command::SetQuota(1)).is_some(),
            "only leaders set the quota"
        );
        assert!(parse("CMD !!!!").is_err());
        assert!(parse("CMD AAAA").is_err());
    }

    #[test]
    fn commands_round_trip_through_the_codec() {
        let all = [
            cmd("PUT k v w"),
            cmd("APPEND k v"),
            cmd("DEL k"),
            cmd("GET k"),
            cmd("GET k meta serializable"),
            cmd("RANGE prefix=a limit=3 keys"),
            cmd(
                r#"TXN {"compare":[{"key":"k","target":"version","op":">","value":0}],"then":[{"op":"get","key":"k"}]}"#,
            ),
            cmd("OPEN alice 100.25"),
            cmd("TRANSFER t1 alice bob 5"),
            cmd("BALANCE bob"),
            cmd("AUDIT"),
            cmd("REGISTER"),
            Command::SetQuota(12345),
        ];
        for c in all {
            assert_eq!(Command::decode(&c.encode()), Ok(c));
        }
    }
}
