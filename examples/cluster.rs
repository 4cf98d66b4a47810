//! Starts a local cluster in one process and a console to break it:
//!
//! ```text
//! cargo run --release --example cluster            # 3 nodes on :8001..:8003
//! cargo run --release --example cluster -- 5 9001  # 5 nodes on :9001..:9005
//! ```
//!
//! Console commands: `status`, `kill N`, `restart N`, `partition 1,2 3`, `heal`,
//! `transfer N` (hand leadership to node N), `add N` (start node N, empty, on
//! the next port, and add it to the cluster: as a learner, then a voter),
//! `remove N` (remove node N from the cluster, then stop it), `members`,
//! `quit`. Meanwhile talk to the nodes with `nc 127.0.0.1 8001` (or
//! `cargo run --example cli`) and watch leadership move. Each node stores its
//! state under `data/cluster/n<id>`, so `restart` recovers from disk; a node
//! whose storage fails stops for good and `status` shows it as failed, while
//! the others run on (the `raftkv` binary would exit instead). The nodes
//! authenticate each other with a cluster key made fresh from `/dev/urandom`
//! at every start (it only has to be shared inside this process).

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use raftkv::auth::keyfile::{os_random, Hidden};
use raftkv::raft::NodeId;
use raftkv::server::{Server, ServerConfig};
use raftkv::transport::tcp::Partition;

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let base: u16 = args.next().and_then(|a| a.parse().ok()).unwrap_or(8001);
    let peers: Vec<String> = (0..n)
        .map(|i| format!("127.0.0.1:{}", base + i as u16))
        .collect();
    let partition = Arc::new(Partition::default());
    let mut key = vec![0u8; 32];
    if let Err(e) = os_random(&mut key) {
        eprintln!("cannot make a cluster key: {e}");
        std::process::exit(1);
    }
    // Node N listens on base + N - 1: the first n bootstrap the cluster, the
    // ones `add` starts join it (thesis §4).
    let addr = |id: usize| format!("127.0.0.1:{}", base as usize + id - 1);
    let config = |id: usize| {
        let data = format!("data/cluster/n{id}");
        let mut c = if id <= n {
            ServerConfig::new(id as NodeId, peers.clone(), data)
        } else {
            let mut c = ServerConfig::new(id as NodeId, Vec::new(), data);
            c.join = true;
            c.listen = addr(id);
            c
        };
        c.partition = Arc::clone(&partition);
        c.cluster_key = Some(Hidden(key.clone()));
        c
    };
    let mut servers: BTreeMap<usize, Option<Server>> = (1..=n)
        .map(|id| match Server::start(config(id)) {
            Ok(s) => (id, Some(s)),
            Err(e) => {
                eprintln!("node {id} failed to start: {e}");
                (id, None)
            }
        })
        .collect();
    println!("cluster of {n} on {}", peers.join(","));
    println!(
        "commands: status | members | kill N | restart N | partition 1,2 3 | heal | transfer N | \
         add N | remove N | quit"
    );
    let stdin = io::stdin();
    loop {
        print!("cluster> ");
        let _ = io::stdout().flush();
        let mut line = String::new();
        if stdin.lock().read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let known: Vec<usize> = servers.keys().copied().collect();
        let node = |w: Option<&&str>| {
            w.and_then(|w| w.parse::<usize>().ok())
                .filter(|i| known.contains(i))
        };
        // Any running node takes a command meant for the leader: a follower
        // forwards it.
        let to_any = |line: &str| {
            known
                .iter()
                .map(|&id| ask(&addr(id), line))
                .find(|r| !r.starts_with("down"))
                .unwrap_or_else(|| "every node is down".into())
        };
        match words.first().map(|w| w.to_ascii_lowercase()).as_deref() {
            None => {}
            Some("status") => {
                for &id in &known {
                    // A node whose storage failed has stopped for good; the
                    // others run on (`restart N` recovers it from its disk).
                    match servers
                        .get(&id)
                        .and_then(Option::as_ref)
                        .and_then(Server::failure)
                    {
                        Some(failure) => println!("{id}: FAILED ({failure})"),
                        None => println!("{id}: {}", status(&addr(id))),
                    }
                }
            }
            Some("members") => println!("{}", to_any("MEMBERS")),
            Some("kill") => match node(words.get(1)) {
                Some(i) => {
                    if let Some(mut s) = servers.get_mut(&i).and_then(Option::take) {
                        s.shutdown();
                        println!("killed node {i}");
                    }
                }
                None => println!("usage: kill N (one of {known:?})"),
            },
            Some("restart") => match node(words.get(1)) {
                Some(i) => {
                    if let Some(mut s) = servers.get_mut(&i).and_then(Option::take) {
                        s.shutdown();
                    }
                    match Server::start(config(i)) {
                        Ok(s) => {
                            servers.insert(i, Some(s));
                            println!("restarted node {i}");
                        }
                        Err(e) => println!("node {i} failed to start: {e}"),
                    }
                }
                None => println!("usage: restart N (one of {known:?})"),
            },
            Some("add") => {
                let id = words.get(1).and_then(|w| w.parse::<usize>().ok());
                match id.filter(|id| !known.contains(id) && *id > 0) {
                    Some(id) => match Server::start(config(id)) {
                        Ok(s) => {
                            servers.insert(id, Some(s));
                            let reply = to_any(&format!("ADD {id} {}", addr(id)));
                            println!("add {id} at {}: {reply}", addr(id));
                        }
                        Err(e) => println!("node {id} failed to start: {e}"),
                    },
                    None => println!("usage: add N (a new id: ids are never reused)"),
                }
            }
            Some("remove") => match node(words.get(1)) {
                Some(i) => {
                    let reply = to_any(&format!("REMOVE {i}"));
                    println!("remove {i}: {reply}");
                    if reply == "OK" {
                        if let Some(mut s) = servers.get_mut(&i).and_then(Option::take) {
                            s.shutdown();
                            println!("stopped node {i}");
                        }
                    }
                }
                None => println!("usage: remove N (one of {known:?})"),
            },
            Some("partition") => {
                let groups: Vec<Vec<NodeId>> = words[1..]
                    .iter()
                    .map(|g| g.split(',').filter_map(|x| x.parse().ok()).collect())
                    .collect();
                partition.heal();
                for (a, ga) in groups.iter().enumerate() {
                    for gb in &groups[a + 1..] {
                        partition.split(ga, gb);
                    }
                }
                println!("partitioned into {groups:?}");
            }
            Some("heal") => {
                partition.heal();
                println!("healed");
            }
            Some("transfer") => match node(words.get(1)) {
                Some(i) => println!("transfer to {i}: {}", to_any(&format!("LEADER {i}"))),
                None => println!("usage: transfer N (one of {known:?})"),
            },
            Some("quit") | Some("exit") => break,
            Some(other) => println!("unknown command {other}"),
        }
    }
    for mut s in servers.into_values().flatten() {
        s.shutdown();
    }
}

fn status(addr: &str) -> String {
    ask(addr, "STATUS")
}

/// Sends one line to the node at `addr` and returns its reply line.
fn ask(addr: &str, request: &str) -> String {
    let ask = || -> io::Result<String> {
        let mut s = TcpStream::connect_timeout(
            &addr.parse().map_err(io::Error::other)?,
            Duration::from_millis(300),
        )?;
        s.set_read_timeout(Some(Duration::from_secs(35)))?;
        s.write_all(format!("{request}\n").as_bytes())?;
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line)?;
        Ok(line.trim().to_string())
    };
    ask().unwrap_or_else(|e| format!("down ({e})"))
}
