//! Membership changes on real processes (thesis §4), under continuous client
//! load whose history the linearizability checker judges: a cluster grows
//! from three servers to five and loses its leader to a `REMOVE`; every
//! original server is replaced, one by one, with the leader killed in the
//! middle of a change. No acknowledged write may be lost.
//!
//! The servers authenticate each other with the cluster key, joined ones too
//! (`-join` with the same `-cluster-key-file`).

#[allow(dead_code)]
mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, sleep, JoinHandle};
use std::time::{Duration, Instant};

use common::procs::{free_port, ProcCluster};
use raftkv::client::Client;
use raftkv::sim::linearizability::{check_kv, Input, Operation, Value, Verdict, DEFAULT_STEPS};

/// Keys the load spreads over.
const KEYS: usize = 4;

/// Clients writing and reading while the membership changes, recording every
/// operation with its real-time interval.
struct Load {
    stop: Arc<AtomicBool>,
    history: Arc<Mutex<Vec<Operation>>>,
    clients: Vec<JoinHandle<()>>,
    started: Instant,
}

impl Load {
    /// `clients` clients, each trying the servers at `addrs` in turn (any of
    /// them may be down, not added yet, or removed).
    fn start(addrs: &[String], clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let history = Arc::new(Mutex::new(Vec::new()));
        let started = Instant::now();
        let clients = (0..clients)
            .map(|c| {
                let (stop, history) = (Arc::clone(&stop), Arc::clone(&history));
                let addrs = addrs.to_vec();
                thread::spawn(move || run_client(c, addrs, &stop, &history, started))
            })
            .collect();
        Load {
            stop,
            history,
            clients,
            started,
        }
    }

    /// Stops the clients, reads every key once more (through `addrs`), and
    /// returns the whole history.
    fn finish(self, addrs: &[String]) -> Vec<Operation> {
        self.stop.store(true, Ordering::SeqCst);
        for client in self.clients {
            client.join().expect("a client panicked");
        }
        let mut reader = Client::new(addrs.to_vec());
        for k in 0..KEYS {
            let key = format!("k{k}");
            let call = elapsed(self.started);
            let value = reader.get(&key).expect("a final read");
            self.history.lock().unwrap().push(Operation {
                client: 1000,
                input: Input::Get(key),
                output: value.map(Value::from),
                call,
                ret: Some(elapsed(self.started)),
            });
        }
        let history = self.history.lock().unwrap().clone();
        history
    }
}

/// Sends one line to the node at `addr` and returns its reply line.
fn ask(addr: &str, line: &str) -> std::io::Result<String> {
    use std::io::{BufRead, BufReader, Write};
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(40)))?;
    stream.write_all(format!("{line}\n").as_bytes())?;
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply)?;
    Ok(reply.trim_end().to_string())
}

fn elapsed(since: Instant) -> u64 {
    since.elapsed().as_nanos() as u64
}

/// One client's loop: puts, appends and gets of unique values on a few keys.
/// An operation whose outcome stays unknown (the client gave up) is recorded
/// without a return.
fn run_client(
    c: usize,
    addrs: Vec<String>,
    stop: &AtomicBool,
    history: &Mutex<Vec<Operation>>,
    started: Instant,
) {
    let mut client = Client::new(addrs);
    client.deadline = Duration::from_secs(20);
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let key = format!("k{}", (n as usize + c) % KEYS);
        let value = format!("c{c}.{n}");
        let input = match n % 3 {
            0 => Input::Get(key.clone()),
            1 => Input::Put(key.clone(), value.clone()),
            _ => Input::Append(key.clone(), format!("{value};")),
        };
        let call = elapsed(started);
        let result = match &input {
            Input::Get(k) => client.get(k),
            Input::Put(k, v) => client.put(k, v).map(|()| None),
            Input::Append(k, v) => client.append(k, v).map(|()| None),
            Input::Cas { .. } => unreachable!("this workload has no compare-and-swap"),
        };
        let ret = elapsed(started);
        let (output, ret) = match result {
            Ok(output) => (output, Some(ret)),
            Err(_) => (None, None),
        };
        history.lock().unwrap().push(Operation {
            client: c,
            input,
            output: output.map(Value::from),
            call,
            ret,
        });
    }
}

/// Sends an operator command to any running node until a definite reply
/// (`OK`, or an error other than "no leader" / "timeout"), for up to 30 s.
fn admin(cluster: &mut ProcCluster, nodes: &[usize], line: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for &i in nodes {
            if !cluster.is_running(i) {
                continue;
            }
            if let Ok(replies) = cluster.try_request(i, &[line]) {
                let reply = replies.first().cloned().unwrap_or_default();
                let retry = reply.is_empty()
                    || reply.starts_with("ERR NO_LEADER")
                    || reply.starts_with("ERR TIMEOUT")
                    || reply.starts_with("ERR CHANGE_IN_PROGRESS");
                if !retry {
                    return reply;
                }
            }
        }
        assert!(Instant::now() < deadline, "no answer to {line}");
        sleep(Duration::from_millis(50));
    }
}

/// Node `i`'s `MEMBERS` reply as fields (`index`, `leader`, `voters`, `learners`).
fn members(cluster: &ProcCluster, i: usize) -> BTreeMap<String, String> {
    let replies = cluster.try_request(i, &["MEMBERS"]).unwrap_or_default();
    replies
        .first()
        .map(|line| {
            line.split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// The voters' ids in a `MEMBERS` list like `1@127.0.0.1:8001,4@...`.
fn ids(list: &str) -> Vec<u64> {
    list.split(',')
        .filter_map(|m| m.split('@').next()?.parse().ok())
        .collect()
}

/// Waits until every node in `nodes` reports exactly `voters` and no learners.
fn wait_for_voters(cluster: &ProcCluster, nodes: &[usize], voters: &[u64]) {
    cluster.wait_for(
        &format!("voters {voters:?} everywhere"),
        Duration::from_secs(10),
        || {
            nodes.iter().all(|&i| {
                let m = members(cluster, i);
                m.get("voters").map(|v| ids(v)) == Some(voters.to_vec())
                    && m.get("learners").map(String::as_str) == Some("-")
            })
        },
    );
}

/// The index of the node that reports itself leader, among `nodes`.
fn leader_among(cluster: &ProcCluster, nodes: &[usize]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for &i in nodes {
            if cluster.status(i).get("role").map(String::as_str) == Some("leader") {
                return i;
            }
        }
        assert!(Instant::now() < deadline, "no leader among {nodes:?}");
        sleep(Duration::from_millis(50));
    }
}

fn assert_linearizable(history: &[Operation]) {
    let acknowledged = history.iter().filter(|op| op.ret.is_some()).count();
    assert!(
        acknowledged > 50,
        "only {acknowledged} operations completed"
    );
    eprintln!("{} operations, {acknowledged} acknowledged", history.len());
    let verdict = check_kv(history, DEFAULT_STEPS);
    assert_eq!(
        verdict,
        Verdict::Linearizable,
        "linearizability check of {} operations",
        history.len()
    );
}

/// Reference: thesis §4.2.1, §4.2.2 — two servers join (as learners, then
/// promoted), a restarted server keeps the grown configuration whatever its
/// `-peers` says, and the leader removes itself and hands over; clients
/// never see a lost or reordered write.
#[test]
fn a_cluster_grows_from_three_to_five_and_then_removes_its_leader() {
    let mut cluster = ProcCluster::start(3, &[]);
    cluster.wait_for_leader();
    let new_ports = [free_port(), free_port()];
    let mut addrs = cluster.addrs();
    addrs.extend(new_ports.iter().map(|p| format!("127.0.0.1:{p}")));
    let load = Load::start(&addrs, 3);
    sleep(Duration::from_millis(300));

    for (k, &port) in new_ports.iter().enumerate() {
        let i = cluster.join(port);
        assert_eq!(i, 3 + k);
        let line = format!("ADD {} {}", i + 1, cluster.addr(i));
        assert_eq!(admin(&mut cluster, &[0, 1, 2], &line), "OK", "{line}");
        sleep(Duration::from_millis(200));
    }
    let all = [0, 1, 2, 3, 4];
    wait_for_voters(&cluster, &all, &[1, 2, 3, 4, 5]);

    // A bootstrap server restarted with its old -peers keeps the stored
    // configuration (and says so).
    let leader = leader_among(&cluster, &all);
    let follower = (0..3).find(|&i| i != leader).expect("a follower");
    cluster.kill9(follower);
    cluster.spawn(follower);
    cluster.wait_until_up(follower);
    wait_for_voters(&cluster, &[follower], &[1, 2, 3, 4, 5]);
    assert!(
        cluster
            .log(follower)
            .contains("ignoring the bootstrap peers"),
        "{}",
        cluster.log(follower)
    );

    // The leader removes itself: a server of the new configuration leads.
    let leader = leader_among(&cluster, &all);
    let line = format!("REMOVE {}", leader + 1);
    assert_eq!(admin(&mut cluster, &all, &line), "OK");
    let rest: Vec<usize> = all.iter().copied().filter(|&i| i != leader).collect();
    let new_leader = leader_among(&cluster, &rest);
    let voters: Vec<u64> = rest.iter().map(|&i| i as u64 + 1).collect();
    wait_for_voters(&cluster, &rest, &voters);
    cluster.kill9(leader);
    sleep(Duration::from_millis(500));
    assert_eq!(leader_among(&cluster, &rest), new_leader);

    let remaining: Vec<String> = rest.iter().map(|&i| cluster.addr(i)).collect();
    assert_linearizable(&load.finish(&remaining));
}

/// Reference: thesis §4 and its "replace a server" procedure — every server
/// the cluster started with is replaced by a new one (add the new id, remove
/// an old one) until none of the original ids remain; during the first
/// addition the leader is killed, and the retried `ADD` completes the change
/// at the next leader. Clients see no lost write.
#[test]
fn every_original_server_is_replaced_one_by_one_even_when_the_leader_dies_mid_change() {
    let mut cluster = ProcCluster::start(3, &[]);
    cluster.wait_for_leader();
    let new_ports = [free_port(), free_port(), free_port()];
    let mut addrs = cluster.addrs();
    addrs.extend(new_ports.iter().map(|p| format!("127.0.0.1:{p}")));
    let load = Load::start(&addrs, 3);
    sleep(Duration::from_millis(300));

    let mut originals = vec![0, 1, 2];
    for (k, &port) in new_ports.iter().enumerate() {
        let new = 3 + k;
        let id = new + 1;
        let address = format!("127.0.0.1:{port}");
        let line = format!("ADD {id} {address}");
        let live: Vec<usize> = (0..new).filter(|&i| cluster.is_running(i)).collect();
        if k == 0 {
            // Ask for the addition before the new server runs: its catch-up
            // waits for it. Meanwhile the leader dies.
            let leader = leader_among(&cluster, &live);
            let asked = live
                .iter()
                .copied()
                .find(|&i| i != leader)
                .expect("a follower");
            let (to, first) = (cluster.addr(asked), line.clone());
            // Its outcome is unknown: the leader dies before it can answer.
            let pending = thread::spawn(move || ask(&to, &first));
            sleep(Duration::from_millis(100));
            cluster.kill9(leader);
            let reply = pending.join().expect("the first ADD's thread");
            eprintln!("{line} while the leader died: {reply:?}");
            assert!(
                reply.as_ref().map_or(true, |r| r.starts_with("ERR")),
                "the first ADD cannot have succeeded: {reply:?}"
            );
            let joined = cluster.join(port);
            assert_eq!(joined, new);
            let live: Vec<usize> = live.iter().copied().filter(|&i| i != leader).collect();
            assert_eq!(admin(&mut cluster, &live, &line), "OK", "retried {line}");
            // The dead leader is the first original to go.
            originals.retain(|&i| i != leader);
            originals.insert(0, leader);
        } else {
            assert_eq!(cluster.join(port), new);
            assert_eq!(admin(&mut cluster, &live, &line), "OK", "{line}");
        }
        // Remove an original: the dead one first, then the others, the leader
        // included when it is one.
        let old = originals[k];
        let live: Vec<usize> = (0..=new).filter(|&i| cluster.is_running(i)).collect();
        let line = format!("REMOVE {}", old + 1);
        assert_eq!(admin(&mut cluster, &live, &line), "OK", "{line}");
        cluster.kill9(old);
        sleep(Duration::from_millis(200));
    }
    let replacements = [3, 4, 5];
    wait_for_voters(&cluster, &replacements, &[4, 5, 6]);
    for i in 0..3 {
        assert!(
            !cluster.is_running(i),
            "original server {} still runs",
            i + 1
        );
    }
    let remaining: Vec<String> = replacements.iter().map(|&i| cluster.addr(i)).collect();
    assert_linearizable(&load.finish(&remaining));
}

/// Reference: thesis §4.2.3 — a removed server learns of its removal: the
/// leader keeps replicating to it until the removal commits and then tells
/// it the commit index, so the removed server's own `MEMBERS` no longer lists
/// it (and it never campaigns).
#[test]
fn a_removed_follower_learns_that_it_was_removed() {
    let mut cluster = ProcCluster::start(3, &[]);
    cluster.wait_for_leader();
    let all = [0, 1, 2];
    let leader = leader_among(&cluster, &all);
    let follower = (0..3).find(|&i| i != leader).expect("a follower");
    let line = format!("REMOVE {}", follower + 1);
    assert_eq!(admin(&mut cluster, &all, &line), "OK", "{line}");
    let rest: Vec<usize> = all.iter().copied().filter(|&i| i != follower).collect();
    let voters: Vec<u64> = rest.iter().map(|&i| i as u64 + 1).collect();
    wait_for_voters(&cluster, &rest, &voters);
    wait_for_voters(&cluster, &[follower], &voters);
}
