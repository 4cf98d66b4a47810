//! The `raftkv` server: parses Go-style flags and runs one node.
//!
//! ```text
//! raftkv -id 1 -addr :8001 -peers :8001,:8002,:8003 -data data/n1
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use raftkv::server::{Server, ServerConfig};

const USAGE: &str = "\
usage: raftkv [flags]

  -id N               this node's 1-based position in -peers (default 1)
  -addr HOST:PORT     address to listen on (default: this node's entry in -peers, else :8001)
  -peers A,B,C        every node's address, this one included (default: -addr alone)
  -data DIR           directory for Raft state (default data/node<id>)
  -snapshot-bytes N   snapshot after N bytes of applied commands (default 4194304)
  -timeout-ms N       how long a client request may wait (default 3000)
  -max-conns N        most open connections (default 1024)
  -http-read-timeout-ms N
                      how long one HTTP request may take to arrive (default 10000)
  -v                  log detail (elections, rejections, forwarding)
  -h                  print this help

Flags may be written -flag value, --flag value or -flag=value.
\":PORT\" means 127.0.0.1:PORT.";

/// Parsed command line.
#[derive(Debug, PartialEq)]
struct Flags {
    id: u64,
    addr: Option<String>,
    peers: Option<Vec<String>>,
    data: Option<PathBuf>,
    snapshot_bytes: usize,
    timeout_ms: u64,
    max_conns: usize,
    http_read_timeout_ms: u64,
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
        snapshot_bytes: 4 << 20,
        timeout_ms: 3000,
        max_conns: 1024,
        http_read_timeout_ms: 10_000,
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
        if matches!(name, "v" | "h" | "help") {
            let on = match inline.as_deref() {
                None | Some("true") => true,
                Some("false") => false,
                Some(v) => return Err(format!("-{name} takes no value, got '{v}'")),
            };
            if name == "v" {
                flags.verbose = on;
            } else {
                flags.help = on;
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
            _ => return Err(format!("unknown flag -{name}")),
        }
    }
    Ok(flags)
}

/// Fills in defaults and checks the flags fit together.
fn server_config(flags: Flags) -> Result<ServerConfig, String> {
    let id = flags.id;
    let addr = flags.addr.clone();
    let peers = match (flags.peers, &addr) {
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
        .unwrap_or_else(|| PathBuf::from(format!("data/node{id}")));
    let mut config = ServerConfig::new(id, peers, data);
    config.listen = listen;
    config.snapshot_bytes = flags.snapshot_bytes.max(1);
    config.request_timeout = Duration::from_millis(flags.timeout_ms.max(1));
    config.max_connections = flags.max_conns.max(1);
    config.http_read_timeout = Duration::from_millis(flags.http_read_timeout_ms.max(1));
    Ok(config)
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
    let config = match server_config(flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("raftkv: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let id = config.id;
    let _server = match Server::start(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "{} node {id} [term 0] failed to start: {e}",
                raftkv::logger::timestamp()
            );
            return ExitCode::from(1);
        }
    };
    // The server runs on its own threads until the process is killed.
    loop {
        std::thread::park();
    }
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
    fn bad_flags_are_errors() {
        for bad in ["-bogus 1", "-id", "-id x", "stray", "-v=maybe", "-peers ,"] {
            assert!(parse_flags(&args(bad)).is_err(), "{bad} accepted");
        }
        assert!(server_config(parse_flags(&args("-id 4 -peers :1,:2")).unwrap()).is_err());
    }
}
