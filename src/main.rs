//! The `raftkv` server: parses Go-style flags and runs one node.
//!
//! ```text
//! raftkv -id 1 -addr :8001 -peers :8001,:8002,:8003 -data data/n1 -cluster-key-file cluster.key
//! raftkv -id 4 -addr :8004 -join -data data/n4 -cluster-key-file cluster.key   # then ADD 4 127.0.0.1:8004
//! ```
//!
//! The process runs until it is killed, or until its storage fails: then the
//! node has logged one line saying what failed and what to do, and the
//! process exits with status 74 (`node::EXIT_STORAGE_FAILED`) so that a
//! supervisor restarts it (fail-stop; see `node/failure.rs`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use raftkv::auth::keyfile::{read_client_token, read_cluster_key, Hidden};
use raftkv::auth::peer::{check_cluster_id, DEFAULT_CLUSTER_ID};
use raftkv::info;
use raftkv::node::EXIT_STORAGE_FAILED;
use raftkv::server::{Server, ServerConfig, DEFAULT_IDLE_TIMEOUT};
use raftkv::service::quota::DEFAULT_QUOTA_BYTES;
use raftkv::service::watch::WatchLimits;
use raftkv::storage::space::DEFAULT_MIN_FREE_BYTES;

const USAGE: &str = "\
usage: raftkv [flags]

  -id N                    this node's id: its 1-based position in -peers, or with -join a
                           fresh id never used in the cluster before (default 1)
  -addr HOST:PORT          address to listen on (default: this node's entry in -peers, else :8001)
  -peers A,B,C             bootstraps a brand-new cluster: every node's address, this one
                           included (default: -addr alone); ignored once the data directory
                           holds a configuration (membership changes then decide)
  -join                    start empty and wait to be added to a running cluster with
                           ADD <id> <host:port> (needs -addr; no -peers)
  -data DIR                directory for Raft state (default data/node<id>)
  -cluster-key-file PATH   the cluster key peers authenticate with: the file's bytes, at least 16
                           (make one: head -c 32 /dev/urandom > cluster.key && chmod 600 cluster.key);
                           required unless every address is loopback
  -cluster-id NAME         names the cluster in every peer tag (default raftkv)
  -client-token-file PATH  clients must send AUTH <token> first (token: the file's text)
  -idle-timeout D          close a client connection that sends no whole line within D
                           (e.g. 300s, 500ms, 5m; default 300s)
  -quota-bytes N           refuse writes that would grow the state beyond N bytes (default 2147483648)
  -min-free-bytes N        refuse writes that grow the state (ERR NOSPACE_DISK) while the data directory's
                           file system has less than N bytes free plus room for a snapshot;
                           reads and DEL still work (0: off; default 134217728)
  -snapshot-bytes N        snapshot after N bytes of applied log (commands plus 64 per entry),
                           and at least as many as the last snapshot's size
                           (default 4194304)
  -timeout-ms N            how long a client request may wait (default 3000)
  -max-conns N             most open connections (default 1024)
  -http-read-timeout-ms N  how long one HTTP request may take to arrive (default 10000)
  -pre-vote=BOOL           ask for pre-votes before an election (thesis §9.6; default true)
  -check-quorum=BOOL       a leader that loses its majority steps down, and followers that
                           hear a leader ignore vote requests (thesis §6.2, §4.2.3; default true)
  -events=BOOL             keep a ring of recent events (RPCs, votes, commits, client requests)
                           for GET /events and the cluster page (default true)
  -watch-history-bytes N   bytes of recent changes kept for watches to resume from
                           (default 16777216); older FROM revisions get ERR COMPACTED
  -watch-lag-bytes N       a watcher further behind than N bytes of history, and falling
                           further, is cancelled with CANCELED resume=<rev> (default 4194304)
  -max-watchers N          most open watches (default 256); more get ERR BUSY
  -v                       log detail (elections, rejections, forwarding)
  -h                       print this help

Flags may be written -flag value, --flag value or -flag=value.
\":PORT\" means 127.0.0.1:PORT.";

/// Parsed command line.
#[derive(Debug, PartialEq)]
struct Flags {
    id: u64,
    addr: Option<String>,
    peers: Option<Vec<String>>,
    data: Option<PathBuf>,
    join: bool,
    snapshot_bytes: usize,
    timeout_ms: u64,
    max_conns: usize,
    http_read_timeout_ms: u64,
    cluster_key_file: Option<PathBuf>,
    cluster_id: String,
    client_token_file: Option<PathBuf>,
    idle_timeout: Duration,
    quota_bytes: u64,
    min_free_bytes: u64,
    pre_vote: bool,
    check_quorum: bool,
    events: bool,
    watch: WatchLimits,
    verbose: bool,
    help: bool,
}

/// Expands `:8001` to `127.0.0.1:8001`.
fn expand(addr: &str) -> String {
    if addr.starts_with(':') {
        format!("127.0.0.1{addr}")
    } else {
        addr.to_string()
    }
}

fn parse_flags(args: &[String]) -> Result<Flags, String> {
    let mut flags = Flags {
        id: 1,
        addr: None,
        peers: None,
        data: None,
        join: false,
        snapshot_bytes: 4 << 20,
        timeout_ms: 3000,
        max_conns: 1024,
        http_read_timeout_ms: 10_000,
        cluster_key_file: None,
        cluster_id: DEFAULT_CLUSTER_ID.to_string(),
        client_token_file: None,
        idle_timeout: DEFAULT_IDLE_TIMEOUT,
        quota_bytes: DEFAULT_QUOTA_BYTES,
        min_free_bytes: DEFAULT_MIN_FREE_BYTES,
        pre_vote: true,
        check_quorum: true,
        events: true,
        watch: WatchLimits::default(),
        verbose: false,
        help: false,
    };
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        let Some(stripped) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            return Err(format!("unexpected argument '{arg}'"));
        };
        let (name, inline) = match stripped.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (stripped, None),
        };
        if matches!(
            name,
            "v" | "h" | "help" | "pre-vote" | "check-quorum" | "join" | "events"
        ) {
            // Go's boolean flags: `-v` or `-v=true` turn one on, `-v=false` off.
            let on = match inline.as_deref() {
                None | Some("true") => true,
                Some("false") => false,
                Some(v) => return Err(format!("-{name} is true or false, got '{v}'")),
            };
            match name {
                "v" => flags.verbose = on,
                "pre-vote" => flags.pre_vote = on,
                "check-quorum" => flags.check_quorum = on,
                "join" => flags.join = on,
                "events" => flags.events = on,
                _ => flags.help = on,
            }
            continue;
        }
        let value = match inline {
            Some(v) => v,
            None => {
                let v = args.get(i).ok_or(format!("flag -{name} needs a value"))?;
                i += 1;
                v.clone()
            }
        };
        let number = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| format!("-{name}: '{v}' is not a non-negative integer"))
        };
        match name {
            "id" => flags.id = number(&value)?,
            "addr" => flags.addr = Some(expand(&value)),
            "peers" => {
                let peers: Vec<String> = value
                    .split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(expand)
                    .collect();
                if peers.is_empty() {
                    return Err("-peers lists no addresses".into());
                }
                flags.peers = Some(peers);
            }
            "data" => flags.data = Some(PathBuf::from(value)),
            "snapshot-bytes" => flags.snapshot_bytes = number(&value)? as usize,
            "timeout-ms" => flags.timeout_ms = number(&value)?,
            "max-conns" => flags.max_conns = number(&value)? as usize,
            "http-read-timeout-ms" => flags.http_read_timeout_ms = number(&value)?,
            "cluster-key-file" => flags.cluster_key_file = Some(PathBuf::from(value)),
            "cluster-id" => {
                check_cluster_id(&value).map_err(|e| format!("-cluster-id: {e}"))?;
                flags.cluster_id = value;
            }
            "client-token-file" => flags.client_token_file = Some(PathBuf::from(value)),
            "idle-timeout" => {
                flags.idle_timeout = parse_duration(&value).ok_or(format!(
                    "-idle-timeout: '{value}' is not a positive duration like 300s, 500ms or 5m"
                ))?
            }
            "quota-bytes" => flags.quota_bytes = number(&value)?,
            "min-free-bytes" => flags.min_free_bytes = number(&value)?,
            "watch-history-bytes" => flags.watch.history_bytes = number(&value)?,
            "watch-lag-bytes" => flags.watch.lag_bytes = number(&value)?,
            "max-watchers" => flags.watch.max_watchers = number(&value)? as usize,
            _ => return Err(format!("unknown flag -{name}")),
        }
    }
    Ok(flags)
}

/// `300s`, `500ms`, `5m`, `1h`, or a bare number of seconds; zero is refused.
fn parse_duration(text: &str) -> Option<Duration> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.checked_mul(60)?),
        "h" => Duration::from_secs(n.checked_mul(3600)?),
        _ => return None,
    };
    (!d.is_zero()).then_some(d)
}

/// Reads the key and token files named by the flags into `config`; returns
/// warnings to log (files others can read).
fn read_secrets(
    config: &mut ServerConfig,
    key: Option<&Path>,
    token: Option<&Path>,
) -> Result<Vec<String>, String> {
    let mut warnings = Vec::new();
    if let Some(path) = key {
        let key = read_cluster_key(path)?;
        warnings.extend(key.warning);
        config.cluster_key = Some(Hidden(key.value));
    }
    if let Some(path) = token {
        let token = read_client_token(path)?;
        warnings.extend(token.warning);
        config.client_token = Some(Hidden(token.value));
    }
    Ok(warnings)
}

/// Fills in defaults and checks the flags fit together.
fn server_config(flags: Flags) -> Result<ServerConfig, String> {
    let id = flags.id;
    let addr = flags.addr.clone();
    if flags.join {
        if flags.peers.is_some() {
            return Err("-join starts a server that waits to be added: give no -peers".into());
        }
        let Some(addr) = addr else {
            return Err("-join needs -addr: the address the cluster will reach it at".into());
        };
        if id == 0 {
            return Err("-id must be 1 or more".into());
        }
        let data = flags
            .data
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("data/node{id}")));
        let mut config = ServerConfig::new(id, Vec::new(), data);
        config.join = true;
        config.listen = addr;
        return Ok(apply_flags(config, flags));
    }
    let peers = match (flags.peers.clone(), &addr) {
        (Some(p), _) => p,
        (None, Some(a)) => vec![a.clone()],
        (None, None) => vec![expand(":8001")],
    };
    if id == 0 || id as usize > peers.len() {
        return Err(format!(
            "-id {id} must be between 1 and the number of peers ({})",
            peers.len()
        ));
    }
    let listen = addr.unwrap_or_else(|| peers[id as usize - 1].clone());
    let data = flags
        .data
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("data/node{id}")));
    let mut config = ServerConfig::new(id, peers, data);
    config.listen = listen;
    Ok(apply_flags(config, flags))
}

/// The flags every server takes, bootstrapping or joining.
fn apply_flags(mut config: ServerConfig, flags: Flags) -> ServerConfig {
    config.snapshot_bytes = flags.snapshot_bytes.max(1);
    config.request_timeout = Duration::from_millis(flags.timeout_ms.max(1));
    config.max_connections = flags.max_conns.max(1);
    config.http_read_timeout = Duration::from_millis(flags.http_read_timeout_ms.max(1));
    config.cluster_id = flags.cluster_id;
    config.idle_timeout = flags.idle_timeout;
    config.quota_bytes = flags.quota_bytes;
    config.min_free_bytes = flags.min_free_bytes;
    config.pre_vote = flags.pre_vote;
    config.check_quorum = flags.check_quorum;
    config.events = flags.events;
    config.watch = flags.watch;
    config
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flags = match parse_flags(&args) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("raftkv: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if flags.help {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    raftkv::logger::set_verbose(flags.verbose);
    let (key_file, token_file) = (
        flags.cluster_key_file.clone(),
        flags.client_token_file.clone(),
    );
    let mut config = match server_config(flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("raftkv: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let id = config.id;
    match read_secrets(&mut config, key_file.as_deref(), token_file.as_deref()) {
        Ok(warnings) => {
            for w in warnings {
                info!(id, 0, "warning: {w}");
            }
        }
        Err(e) => {
            eprintln!(
                "{} node {id} [term 0] failed to start: {e}",
                raftkv::logger::timestamp()
            );
            return ExitCode::from(1);
        }
    }
    let server = match Server::start(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "{} node {id} [term 0] failed to start: {e}",
                raftkv::logger::timestamp()
            );
            return ExitCode::from(1);
        }
    };
    // The server runs on its own threads until the process is killed, or
    // until storage fails: the node has then logged what failed and what to
    // do, and nothing is left to shut down gracefully (fail-stop), so exit at
    // once for a supervisor to restart the process.
    server.wait_for_failure();
    std::process::exit(i32::from(EXIT_STORAGE_FAILED));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn go_style_flags_in_every_spelling() {
        let f = parse_flags(&args(
            "-id 2 --addr :8002 -peers=:8001,:8002,:8003 -data=/tmp/x -v",
        ))
        .unwrap();
        assert_eq!(f.id, 2);
        assert_eq!(f.addr.as_deref(), Some("127.0.0.1:8002"));
        assert_eq!(f.peers.as_ref().map(Vec::len), Some(3));
        assert_eq!(f.data, Some(PathBuf::from("/tmp/x")));
        assert!(f.verbose);
    }

    #[test]
    fn defaults_make_a_single_node_cluster() {
        let c = server_config(parse_flags(&[]).unwrap()).unwrap();
        assert_eq!(c.peers, vec!["127.0.0.1:8001".to_string()]);
        assert_eq!(c.listen, "127.0.0.1:8001");
        assert_eq!(c.data_dir, PathBuf::from("data/node1"));
        let c = server_config(parse_flags(&args("-id 3 -peers :1,:2,:3")).unwrap()).unwrap();
        assert_eq!(c.listen, "127.0.0.1:3");
    }

    #[test]
    fn security_flags_parse() {
        let f = parse_flags(&args(
            "-cluster-key-file k -cluster-id prod-1 -client-token-file t -idle-timeout 500ms \
             -quota-bytes 1000 -min-free-bytes 0",
        ))
        .unwrap();
        assert_eq!(f.cluster_key_file, Some(PathBuf::from("k")));
        assert_eq!(f.client_token_file, Some(PathBuf::from("t")));
        let c = server_config(f).unwrap();
        assert_eq!(c.cluster_id, "prod-1");
        assert_eq!(c.idle_timeout, Duration::from_millis(500));
        assert_eq!(c.quota_bytes, 1000);
        assert_eq!(c.min_free_bytes, 0);
        assert_eq!(parse_duration("300"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        for bad in ["0", "0s", "", "s", "5x", "-1s", "1.5s"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_joining_server_listens_on_its_address_with_no_peers() {
        let c = server_config(parse_flags(&args("-id 4 -addr :8004 -join")).unwrap()).unwrap();
        assert!(c.join);
        assert!(c.peers.is_empty());
        assert_eq!(c.listen, "127.0.0.1:8004");
        assert_eq!(c.data_dir, PathBuf::from("data/node4"));
        for bad in ["-id 4 -join", "-id 4 -addr :8004 -join -peers :1,:2"] {
            assert!(
                server_config(parse_flags(&args(bad)).unwrap()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn bad_flags_are_errors() {
        for bad in [
            "-bogus 1",
            "-id",
            "-id x",
            "stray",
            "-v=maybe",
            "-peers ,",
            "-idle-timeout 0",
            "-cluster-id has/no\x7fdel",
            "-quota-bytes -5",
        ] {
            assert!(parse_flags(&args(bad)).is_err(), "{bad} accepted");
        }
        assert!(server_config(parse_flags(&args("-id 4 -peers :1,:2")).unwrap()).is_err());
    }
}
