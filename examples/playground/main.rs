//! A Raft playground: real `raftkv` processes, and a page to break them from.
//!
//! ```text
//! cargo build --release && cargo run --release --example playground            # 3 servers, page on :8080
//! cargo run --release --example playground -- -nodes 5 -port 9000
//! ```
//!
//! Starts N servers (3 to 7) as processes of the `raftkv` binary built next
//! to this example, each behind a proxy so links can be cut, and serves the
//! cluster page at `http://127.0.0.1:PORT/` with controls: kill, restart,
//! pause (SIGSTOP) and resume a server; partition (both ways, one way, or a
//! bridge), heal; hand leadership to a server; add and remove servers; start
//! and stop a load of K clients. Every action is an event in the page's
//! timeline, beside what the servers did about it. The guided tours
//! (`src/sim/tours.rs`) play from the page's menu. The controls listen on
//! loopback only. Data lives in a temporary directory, gone when the
//! playground stops; the servers stop with it.
//!
//! Files: `cluster.rs` (the processes and the actions), `links.rs` (the
//! proxies), `load.rs` (the clients), `control.rs` (the HTTP server).

mod cluster;
mod control;
mod links;
mod load;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use raftkv::events::ring::{EventRing, Limits};

const USAGE: &str = "\
usage: playground [flags]

  -nodes N    servers to start, 3 to 7 (default 3)
  -port P     the page's port on 127.0.0.1 (default 8080)
  -bin PATH   the raftkv binary (default: the one built next to this example)
  -h          print this help";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut nodes, mut port, mut bin) = (3usize, 8080u16, None::<PathBuf>);
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].trim_start_matches('-') {
            "nodes" => nodes = value.parse().unwrap_or(0),
            "port" => port = value.parse().unwrap_or(0),
            "bin" => bin = Some(PathBuf::from(value)),
            _ => {
                println!("{USAGE}");
                return ExitCode::from(2);
            }
        }
        i += 2;
    }
    if !(3..=7).contains(&nodes) {
        eprintln!("playground: -nodes must be 3 to 7\n\n{USAGE}");
        return ExitCode::from(2);
    }
    let bin = match bin.map(Ok).unwrap_or_else(default_binary) {
        Ok(bin) => bin,
        Err(e) => {
            eprintln!("playground: {e}");
            return ExitCode::from(1);
        }
    };
    let listener = match TcpListener::bind(("127.0.0.1", port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("playground: cannot listen on 127.0.0.1:{port}: {e}");
            return ExitCode::from(1);
        }
    };
    let dir = match tempfile::Builder::new()
        .prefix("raftkv-playground")
        .tempdir()
    {
        Ok(d) => d,
        Err(e) => {
            eprintln!("playground: no temporary directory: {e}");
            return ExitCode::from(1);
        }
    };
    let ring = Arc::new(EventRing::new(0, Limits::default()));
    let cluster = match cluster::Cluster::start(&bin, dir.path(), nodes, Arc::clone(&ring)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("playground: {e}");
            return ExitCode::from(1);
        }
    };
    println!(
        "{nodes} servers running (data and logs in {}); open http://127.0.0.1:{port}/",
        dir.path().display()
    );
    let playground = Arc::new(control::Playground {
        cluster: Mutex::new(cluster),
        ring,
        load: Mutex::new(None),
    });
    control::serve(listener, playground);
    ExitCode::SUCCESS
}

/// The `raftkv` binary `cargo build` puts next to this example's directory.
fn default_binary() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    exe.parent()
        .and_then(|examples| examples.parent())
        .map(|dir| dir.join("raftkv"))
        .filter(|p| p.exists())
        .ok_or_else(|| {
            "the raftkv binary is not next to the examples: run `cargo build --release` first, \
             or name one with -bin"
                .into()
        })
}
