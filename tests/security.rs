//! Security end to end, with real `raftkv` processes on loopback: only key
//! holders speak Raft, only token holders get in, idle connections are cut,
//! and sessions, txids and the state's size stay bounded.

#[allow(dead_code)]
mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::http::{Conn, Reply};
use common::procs::{free_port, write_random_key, ProcCluster};
use raftkv::auth::peer::{Dialer, Kind, PeerAuth};
use raftkv::client::Client;
use raftkv::codec::{Decode, Encode};
use raftkv::http::json::Json;
use raftkv::raft::messages::{
    AppendEntriesArgs, AppendEntriesReply, Entry, InstallSnapshotArgs, InstallSnapshotReply,
    Request, RequestVoteArgs, RequestVoteReply, Response,
};
use raftkv::service::command::Command;
use raftkv::service::ledger::TXID_RETENTION;
use raftkv::service::session::MAX_SESSIONS;
use raftkv::service::state_machine::{Op, StateMachine};
use raftkv::transport::line::base64_encode;

/// Sends `bytes` on a new connection and reads until the server closes it
/// (5 s at most); returns the reply lines.
fn exchange_until_closed(addr: &str, bytes: &[u8]) -> Vec<String> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(bytes);
    let mut reply = Vec::new();
    let closed = s.read_to_end(&mut reply).is_ok();
    assert!(closed, "the server did not close the connection: {reply:?}");
    String::from_utf8_lossy(&reply)
        .lines()
        .map(str::to_string)
        .collect()
}

/// A node's STATUS as numbers (term, commit, last_log, ...), role aside.
fn numbers(status: &HashMap<String, String>) -> HashMap<String, u64> {
    status
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), v.parse().ok()?)))
        .collect()
}

fn hardstate(cluster: &ProcCluster, i: usize) -> Vec<u8> {
    std::fs::read(cluster.data_dir(i).join("hardstate")).unwrap_or_default()
}

/// Waits until every node has applied everything the leader committed.
fn wait_quiet(cluster: &ProcCluster, n: usize, leader: usize) {
    cluster.wait_for(
        "every node to apply the commit index",
        Duration::from_secs(20),
        || {
            let commit = numbers(&cluster.status(leader)).get("commit").copied();
            (0..n).all(|i| {
                let s = numbers(&cluster.status(i));
                commit.is_some() && s.get("applied").copied() == commit
            })
        },
    );
}

fn forged_requests(from: u64) -> Vec<Request> {
    let put = Op {
        client_id: 0,
        seq: 0,
        command: Command::Put("k".into(), "forged".into()),
    };
    let mut forged_state = StateMachine::default();
    forged_state.apply(&put);
    vec![
        Request::RequestVote(RequestVoteArgs {
            term: 1000,
            candidate_id: from,
            last_log_index: 1_000_000,
            last_log_term: 999,
            pre_vote: false,
            leadership_transfer: false,
        }),
        Request::AppendEntries(AppendEntriesArgs {
            term: 1000,
            leader_id: from,
            prev_log_index: 0,
            prev_log_term: 0,
            entries: vec![Entry::command(1000, put.encode())],
            leader_commit: 1,
            read_seq: 0,
        }),
        Request::InstallSnapshot(InstallSnapshotArgs {
            term: 1000,
            leader_id: from,
            last_included_index: 1_000,
            last_included_term: 1000,
            size: forged_state.snapshot().len() as u64,
            offset: 0,
            configuration: Default::default(),
            configuration_index: 0,
            data: forged_state.snapshot(),
            done: true,
        }),
    ]
}

/// Forged RequestVote, AppendEntries and InstallSnapshot lines (old format,
/// new format without a handshake, and with a handshake but the wrong key)
/// and a forged reply are all refused with `ERR AUTH` on a closed connection;
/// no node's term, vote, log or state moves, and the refusals are logged
/// (rate-limited) with the remote address.
#[test]
fn forged_peer_lines_from_a_client_connection_are_refused_and_nothing_moves() {
    let cluster = ProcCluster::start(3, &[]);
    let leader = cluster.wait_for_leader();
    assert_eq!(cluster.request(leader, &["PUT k before"]), ["OK"]);
    wait_quiet(&cluster, 3, leader);
    let before: Vec<_> = (0..3)
        .map(|i| (numbers(&cluster.status(i)), hardstate(&cluster, i)))
        .collect();
    let wrong_key = PeerAuth::new(Some(b"not the cluster key, 32 bytes..."), "raftkv").unwrap();
    let mut attempts = 0;
    for target in 0..3 {
        let me = target as u64 + 1;
        let from = me % 3 + 1;
        let addr = cluster.addr(target);
        let reply = Response::RequestVote(RequestVoteReply {
            term: 1000,
            vote_granted: true,
        });
        let mut lines: Vec<Vec<u8>> = Vec::new();
        for request in forged_requests(from) {
            let payload = base64_encode(&request.encode());
            lines.push(format!("RAFT {from} {payload}\n").into_bytes());
            lines.push(format!("RAFT 1 {payload} {}\n", "00".repeat(32)).into_bytes());
            // A complete handshake, then a request tagged under another key.
            let (mut dialer, hello) = Dialer::hello(&wrong_key, from, me);
            let sealed = dialer.seal_request(&wrong_key, Kind::Raft, &request.encode());
            lines.push(format!("{hello}\n{sealed}\n").into_bytes());
        }
        lines.push(b"FWD PUT k forged\n".to_vec());
        for line in &lines {
            attempts += 1;
            let replies = exchange_until_closed(&addr, line);
            let last = replies.last().cloned().unwrap_or_default();
            assert!(
                last.starts_with("ERR AUTH"),
                "{:?}: {replies:?}",
                String::from_utf8_lossy(line)
            );
            if line.starts_with(b"PEER") {
                assert!(replies[0].starts_with("CHALLENGE "), "{replies:?}");
            }
        }
        // A reply line means nothing to a server: it is not a command.
        let payload = base64_encode(&reply.encode());
        let forged_reply = format!("OK 1 {payload} {}", "00".repeat(32));
        let answer = cluster_reply(&addr, &forged_reply);
        assert!(answer.starts_with("ERR UNKNOWN_COMMAND"), "{answer}");
    }
    assert!(attempts >= 30);
    for (i, (numbers_before, hard_before)) in before.iter().enumerate() {
        let now = numbers(&cluster.status(i));
        assert!(now["term"] < 1000, "node {} adopted a forged term", i + 1);
        assert_eq!(
            now["last_log"],
            numbers_before["last_log"],
            "node {}: log moved",
            i + 1
        );
        assert_eq!(now["commit"], numbers_before["commit"], "node {}", i + 1);
        assert_eq!(now["snapshot"], 0, "node {} installed a snapshot", i + 1);
        if now["term"] == numbers_before["term"] {
            // No genuine election meanwhile: term and vote on disk are untouched.
            assert_eq!(&hardstate(&cluster, i), hard_before, "node {}", i + 1);
        }
        let log = cluster.log(i);
        assert!(
            log.contains("refused a peer message from 127.0.0.1:")
                && log.contains("refused a RAFT line from 127.0.0.1:"),
            "node {} did not log the refusals:\n{log}",
            i + 1
        );
        let logged = log.matches("refused a").count();
        assert!(
            logged <= 4,
            "node {} logged {logged} refusals: not rate-limited",
            i + 1
        );
    }
    let mut client = Client::new(cluster.addrs());
    assert_eq!(client.get("k").unwrap().as_deref(), Some("before"));
}

/// A follower cannot be made to forward: `FWD` from a client is refused and
/// nothing is executed.
#[test]
fn fwd_lines_from_a_client_are_refused() {
    let cluster = ProcCluster::start(3, &[]);
    let leader = cluster.wait_for_leader();
    for i in 0..3 {
        let replies = exchange_until_closed(&cluster.addr(i), b"FWD PUT stolen yes\nPING\n");
        assert_eq!(replies.len(), 1, "{replies:?}");
        assert!(
            replies[0].starts_with("ERR AUTH FWD is peer traffic"),
            "{replies:?}"
        );
    }
    assert_eq!(cluster.request(leader, &["GET stolen"]), ["NOT_FOUND"]);
}

/// The bytes a client sent on one connection.
type Recording = Arc<Mutex<Vec<u8>>>;

/// Copies bytes between a client and a node, recording what the client sent
/// on each connection.
struct Proxy {
    port: u16,
    recorded: Arc<Mutex<Vec<Recording>>>,
}

fn proxy_to(target: u16) -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let recorded: Arc<Mutex<Vec<Recording>>> = Arc::default();
    let all = Arc::clone(&recorded);
    thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                continue;
            };
            let record = Arc::new(Mutex::new(Vec::new()));
            all.lock().unwrap().push(Arc::clone(&record));
            let pump =
                |mut from: TcpStream, mut to: TcpStream, record: Option<Arc<Mutex<Vec<u8>>>>| {
                    thread::spawn(move || {
                        let mut buf = [0u8; 16 << 10];
                        while let Ok(n @ 1..) = from.read(&mut buf) {
                            if let Some(r) = &record {
                                r.lock().unwrap().extend_from_slice(&buf[..n]);
                            }
                            if to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(Shutdown::Both);
                        let _ = from.shutdown(Shutdown::Both);
                    })
                };
            pump(
                client.try_clone().unwrap(),
                server.try_clone().unwrap(),
                Some(record),
            );
            pump(server, client, None);
        }
    });
    Proxy { port, recorded }
}

/// Every peer connection goes through a recording proxy. A recorded
/// conversation between two nodes, replayed byte for byte on a new
/// connection, is refused at its first request (the node chose a new nonce),
/// and the node's state does not move.
#[test]
fn a_replayed_peer_conversation_is_refused_and_changes_nothing() {
    let listen: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let proxies: Vec<Proxy> = listen.iter().map(|&p| proxy_to(p)).collect();
    let reach: Vec<u16> = proxies.iter().map(|p| p.port).collect();
    let cluster = ProcCluster::start_behind(&reach, &listen, &[]);
    let leader = cluster.wait_for_leader();
    for i in 0..5 {
        assert_eq!(
            cluster.request(leader, &[&format!("PUT k{i} v{i}")]),
            ["OK"]
        );
    }
    // A peer conversation with a handshake and at least two requests.
    let mut captured = None;
    cluster.wait_for(
        "a recorded peer conversation",
        Duration::from_secs(10),
        || {
            for (target, proxy) in proxies.iter().enumerate() {
                for record in proxy.recorded.lock().unwrap().iter() {
                    let bytes = record.lock().unwrap().clone();
                    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
                    if bytes.starts_with(b"PEER ")
                        && bytes[..complete].split(|&b| b == b'\n').count() > 3
                    {
                        captured = Some((target, bytes[..complete].to_vec()));
                        return true;
                    }
                }
            }
            false
        },
    );
    let (target, bytes) = captured.unwrap();
    wait_quiet(&cluster, 3, leader);
    let before = (
        numbers(&cluster.status(target)),
        hardstate(&cluster, target),
    );
    let direct = format!("127.0.0.1:{}", listen[target]);
    for _ in 0..3 {
        let replies = exchange_until_closed(&direct, &bytes);
        assert_eq!(replies.len(), 2, "{replies:?}");
        assert!(replies[0].starts_with("CHALLENGE "), "{replies:?}");
        assert!(replies[1].starts_with("ERR AUTH bad tag"), "{replies:?}");
    }
    let now = numbers(&cluster.status(target));
    assert_eq!(now["last_log"], before.0["last_log"]);
    if now["term"] == before.0["term"] {
        assert_eq!(hardstate(&cluster, target), before.1);
    }
    assert!(cluster
        .log(target)
        .contains("refused a peer message from 127.0.0.1:"));
    assert_eq!(cluster.request(leader, &["GET k4"]), ["VALUE v4"]);
}

/// A node restarted with another cluster key can neither vote, append nor
/// disrupt: its ever higher terms never reach the others, its log stays
/// behind, and both sides say so in their logs. The outsider runs without
/// pre-vote, so it campaigns with ever higher terms, the strongest attempt to
/// disrupt (with pre-vote it would never raise its term at all).
#[test]
fn a_node_with_another_key_cannot_vote_append_or_disrupt_and_says_so() {
    let mut cluster = ProcCluster::start(3, &[]);
    let leader = cluster.wait_for_leader();
    let outsider = (leader + 1) % 3;
    let other_key = cluster.dir.path().join("other.key");
    write_random_key(&other_key);
    cluster.kill9(outsider);
    cluster.set_node_flags(
        outsider,
        &[
            "-cluster-key-file",
            other_key.to_str().unwrap(),
            "-pre-vote=false",
        ],
    );
    cluster.spawn(outsider);
    cluster.wait_until_up(outsider);
    let healthy: Vec<usize> = (0..3).filter(|&i| i != outsider).collect();
    let term = |i: usize| {
        numbers(&cluster.status(i))
            .get("term")
            .copied()
            .unwrap_or(0)
    };
    let max_healthy = || healthy.iter().map(|&i| term(i)).max().unwrap_or(0);
    cluster.wait_for(
        "the outsider to campaign three terms ahead",
        Duration::from_secs(30),
        || term(outsider) >= max_healthy() + 3,
    );
    assert!(
        max_healthy() < term(outsider),
        "the outsider's terms leaked"
    );
    let leader = cluster.wait_for_leader();
    assert_ne!(leader, outsider, "the outsider won an election");
    for i in 0..3 {
        assert_eq!(
            cluster.request(leader, &[&format!("PUT after{i} ok")]),
            ["OK"]
        );
    }
    let leader_log = numbers(&cluster.status(leader))["last_log"];
    assert!(numbers(&cluster.status(outsider))["last_log"] < leader_log);
    assert!(max_healthy() < term(outsider));
    let outsider_log = cluster.log(outsider);
    assert!(
        outsider_log.contains("refused a peer message from 127.0.0.1:")
            && outsider_log.contains("bad tag")
            && outsider_log.contains("cannot authenticate with node"),
        "{outsider_log}"
    );
    for i in healthy {
        let log = cluster.log(i);
        assert!(
            log.contains(&format!("(claiming to be node {})", outsider + 1)),
            "node {}:\n{log}",
            i + 1
        );
    }
}

/// With a client token, nothing but PING, HELP, QUIT and AUTH is answered
/// before AUTH; wrong tokens are refused, then throttled; the client library
/// with the token works, also through a follower.
#[test]
fn clients_must_authenticate_when_a_token_is_configured() {
    let token = "tok-0123456789abcdef";
    let cluster = ProcCluster::start_with_token(3, &[], token);
    let leader = cluster.wait_for_leader();
    let follower = (leader + 1) % 3;
    let s = TcpStream::connect(cluster.addr(follower)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut reader = BufReader::new(s.try_clone().unwrap());
    let mut writer = s;
    let mut ask = |line: &str| {
        writer.write_all(format!("{line}\n").as_bytes()).unwrap();
        let mut reply = String::new();
        reader.read_line(&mut reply).unwrap();
        reply.trim_end().to_string()
    };
    for refused in [
        "GET k",
        "PUT k v",
        "STATUS",
        "REGISTER",
        "CLIENT 1 1 GET k",
        "AUDIT",
    ] {
        let reply = ask(refused);
        assert!(reply.starts_with("ERR NOAUTH"), "{refused}: {reply}");
    }
    assert_eq!(ask("PING"), "PONG");
    assert!(ask("HELP").starts_with("commands:"));
    assert_eq!(ask("AUTH wrong-token-1234567"), "ERR AUTH wrong token");
    assert!(ask("GET k").starts_with("ERR NOAUTH"));
    assert_eq!(ask(&format!("AUTH {token}")), "OK");
    assert_eq!(ask("PUT k v"), "OK", "forwarded to the leader");
    assert_eq!(ask("GET k"), "VALUE v");
    assert_eq!(ask("QUIT"), "BYE");

    // The library with the token, and without it.
    let mut client = Client::with_token(cluster.addrs(), Some(token.to_string()));
    assert_eq!(client.get("k").unwrap().as_deref(), Some("v"));
    let mut anonymous = Client::new(cluster.addrs());
    let err = anonymous.get("k").unwrap_err().to_string();
    assert!(err.contains("ERR NOAUTH"), "{err}");
    let mut wrong = Client::with_token(cluster.addrs(), Some("wrong-token-abcdefgh".into()));
    wrong.deadline = Duration::from_secs(5);
    let err = wrong.get("k").unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied, "{err}");

    // Wrong tokens from one address: after a few, even the right one is not
    // checked for a while.
    let addr = cluster.addr(leader);
    let mut throttled = false;
    for _ in 0..20 {
        let reply = cluster_reply(&addr, "AUTH definitely-wrong-0000");
        if reply.starts_with("ERR AUTH too many wrong tokens") {
            throttled = true;
            break;
        }
        assert_eq!(reply, "ERR AUTH wrong token");
    }
    assert!(throttled, "wrong tokens were never throttled");
    assert!(cluster_reply(&addr, &format!("AUTH {token}")).starts_with("ERR AUTH too many"));
    cluster.wait_for(
        "the throttle to let the right token in",
        Duration::from_secs(10),
        || cluster_reply(&addr, &format!("AUTH {token}")) == "OK",
    );
    assert!(cluster
        .log(leader)
        .contains("refused a client token from 127.0.0.1:"));
}

/// One line on a new connection; its reply.
fn cluster_reply(addr: &str, line: &str) -> String {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut reader = BufReader::new(s.try_clone().unwrap());
    (&s).write_all(format!("{line}\n").as_bytes()).unwrap();
    let mut reply = String::new();
    reader.read_line(&mut reply).unwrap();
    reply.trim_end().to_string()
}

/// How long until the server closes `s` (reading and discarding), at most 20 s.
fn time_until_closed(mut s: TcpStream, started: Instant) -> Duration {
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut sink = Vec::new();
    assert!(s.read_to_end(&mut sink).is_ok(), "not closed within 20 s");
    started.elapsed()
}

/// With `-idle-timeout 1s`, a silent connection and one trickling half a line
/// byte by byte are both closed after about a second, while a connection that
/// sends whole lines stays open; a peer that completes the handshake and then
/// says nothing is cut off too.
#[test]
fn idle_and_half_written_connections_are_closed() {
    let cluster = ProcCluster::start(2, &["-idle-timeout", "1s"]);
    let addr = cluster.addr(0);
    let started = Instant::now();
    let silent = TcpStream::connect(&addr).unwrap();
    let trickler = TcpStream::connect(&addr).unwrap();
    let trickle = {
        let mut t = trickler.try_clone().unwrap();
        thread::spawn(move || {
            t.write_all(b"PUT half").unwrap();
            for _ in 0..40 {
                thread::sleep(Duration::from_millis(100));
                if t.write_all(b"x").is_err() {
                    return;
                }
            }
        })
    };
    let busy = TcpStream::connect(&addr).unwrap();
    busy.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut busy_reader = BufReader::new(busy.try_clone().unwrap());
    let (silent_after, trickle_after) = thread::scope(|scope| {
        let a = scope.spawn(|| time_until_closed(silent, started));
        let b = scope.spawn(|| time_until_closed(trickler, started));
        // Meanwhile a line every 300 ms keeps the third connection open.
        for _ in 0..10 {
            (&busy).write_all(b"PING\n").unwrap();
            let mut reply = String::new();
            busy_reader.read_line(&mut reply).unwrap();
            assert_eq!(reply, "PONG\n");
            thread::sleep(Duration::from_millis(300));
        }
        (a.join().unwrap(), b.join().unwrap())
    });
    trickle.join().unwrap();
    for (what, took) in [("silent", silent_after), ("half a line", trickle_after)] {
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(8),
            "{what}: closed after {took:?}"
        );
    }

    // A peer handshake followed by silence.
    let auth = PeerAuth::new(Some(&std::fs::read(cluster.key_file()).unwrap()), "raftkv").unwrap();
    let (_, hello) = Dialer::hello(&auth, 2, 1);
    let mut peer = TcpStream::connect(&addr).unwrap();
    let started = Instant::now();
    peer.write_all(format!("{hello}\n").as_bytes()).unwrap();
    let took = time_until_closed(peer, started);
    assert!(took >= Duration::from_secs(4), "peer cut after {took:?}");
}

/// Sends each line in `lines` on `connections` connections, pipelined, and
/// returns the replies in order.
fn pipelined(addr: &str, lines: Vec<String>, connections: usize) -> Vec<String> {
    let chunk = lines.len().div_ceil(connections).max(1);
    let parts: Vec<Vec<String>> = lines.chunks(chunk).map(<[String]>::to_vec).collect();
    thread::scope(|scope| {
        let handles: Vec<_> = parts
            .into_iter()
            .map(|part| {
                scope.spawn(move || {
                    let s = TcpStream::connect(addr).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                    let writer = {
                        let mut w = s.try_clone().unwrap();
                        let text: String = part.iter().map(|l| format!("{l}\n")).collect();
                        thread::spawn(move || w.write_all(text.as_bytes()).unwrap())
                    };
                    let mut reader = BufReader::new(s);
                    let replies: Vec<String> = part
                        .iter()
                        .map(|_| {
                            let mut r = String::new();
                            reader.read_line(&mut r).unwrap();
                            r.trim_end().to_string()
                        })
                        .collect();
                    writer.join().unwrap();
                    replies
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

/// Once more sessions than the table holds have registered, a retry in an
/// evicted session is refused as expired and not executed again; the client
/// library reports its outcome unknown and carries on in a new session.
#[test]
fn requests_in_expired_sessions_are_refused_not_reexecuted() {
    let cluster = ProcCluster::start(1, &[]);
    cluster.wait_for_leader();
    let addr = cluster.addr(0);
    let first = cluster.request(0, &["REGISTER"]);
    let id: u64 = first[0].strip_prefix("SESSION ").unwrap().parse().unwrap();
    let line = format!("CLIENT {id} 1 APPEND log x");
    assert_eq!(cluster.request(0, &[&line]), ["OK"]);
    assert_eq!(
        cluster.request(0, &[&line]),
        ["OK"],
        "a retry in a live session"
    );
    let mut library = Client::new(vec![addr.clone()]);
    library.put("lib", "1").unwrap();

    let registers = vec!["REGISTER".to_string(); MAX_SESSIONS];
    let replies = pipelined(&addr, registers, 8);
    assert!(
        replies.iter().all(|r| r.starts_with("SESSION ")),
        "{:?}",
        replies.last()
    );

    let reply = cluster.request(0, &[&line]);
    assert!(reply[0].starts_with("ERR SESSION_EXPIRED"), "{reply:?}");
    assert_eq!(
        cluster.request(0, &["GET log"]),
        ["VALUE x"],
        "not run twice"
    );
    let err = library.put("lib", "2").unwrap_err().to_string();
    assert!(
        err.contains("outcome of 'PUT lib 2' unknown") && err.contains("SESSION_EXPIRED"),
        "{err}"
    );
    library.put("lib", "3").unwrap();
    assert_eq!(library.get("lib").unwrap().as_deref(), Some("3"));
    // (A read needs no session: it is served by ReadIndex, outside the log.)
    let unknown = cluster.request(0, &["CLIENT 99999999 1 PUT log y"]);
    assert!(unknown[0].starts_with("ERR SESSION_UNKNOWN"), "{unknown:?}");
}

/// With a small quota, writes that would grow the state get `ERR NOSPACE` on
/// every node, while reads, DEL and transfers between existing accounts keep
/// working; deleting makes room again.
#[test]
fn writes_over_the_quota_get_nospace_while_reads_deletes_and_transfers_work() {
    let cluster = ProcCluster::start(3, &["-quota-bytes", "2000"]);
    let leader = cluster.wait_for_leader();
    assert_eq!(
        cluster.request(leader, &["OPEN alice 100", "OPEN bob 0"]),
        ["OK", "OK"]
    );
    let value = "v".repeat(100);
    let mut stored = 0;
    loop {
        let reply = cluster.request(leader, &[&format!("PUT key{stored} {value}")]);
        if reply[0].starts_with("ERR NOSPACE") {
            break;
        }
        assert_eq!(reply, ["OK"]);
        stored += 1;
        assert!(stored < 100, "the quota never bit");
    }
    assert!(stored >= 5, "only {stored} values fit");
    // Fill what room is left, down to the byte.
    for size in [64, 32, 16, 8, 4, 2, 1] {
        let grow = format!("APPEND key0 {}", "x".repeat(size));
        while cluster.request(leader, &[&grow]) == ["OK"] {}
    }
    for i in 0..3 {
        let replies = cluster.request(
            i,
            &[
                &format!("PUT another{i} {value}"),
                "APPEND key1 x",
                &format!("OPEN carol{i} 1"),
                "GET key1",
                &format!("TRANSFER t{i} alice bob 1"),
                "BALANCE bob",
            ],
        );
        assert!(
            replies[0].starts_with("ERR NOSPACE"),
            "node {}: {replies:?}",
            i + 1
        );
        assert!(replies[1].starts_with("ERR NOSPACE"), "{replies:?}");
        assert!(replies[2].starts_with("ERR NOSPACE"), "{replies:?}");
        assert_eq!(replies[3], format!("VALUE {value}"));
        assert_eq!(replies[4], "OK");
        assert_eq!(replies[5], format!("BALANCE {}.00", i + 1));
    }
    assert_eq!(
        cluster.request(leader, &["DEL key0", "DEL key1"]),
        ["OK", "OK"]
    );
    assert_eq!(
        cluster.request(leader, &[&format!("PUT fits {value}")]),
        ["OK"]
    );
}

/// Answers every peer handshake and request as if it were a node, with
/// replies that claim term 1000 and success, tagged with zeros: an impostor
/// without the key.
fn impostor(listener: TcpListener) {
    thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut writer = conn;
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                    let words: Vec<&str> = line.split_whitespace().collect();
                    let reply = match words.as_slice() {
                        ["PEER", ..] => format!("CHALLENGE {}", "00".repeat(16)),
                        [_, seq, payload, _] => {
                            let bytes = raftkv::transport::line::base64_decode(payload.as_bytes());
                            let response = match bytes.map(|b| Request::decode(&b)) {
                                Some(Ok(Request::AppendEntries(_))) => {
                                    Response::AppendEntries(AppendEntriesReply {
                                        term: 1000,
                                        success: true,
                                        conflict_term: None,
                                        conflict_index: 0,
                                    })
                                }
                                Some(Ok(Request::InstallSnapshot(_))) => {
                                    Response::InstallSnapshot(InstallSnapshotReply {
                                        term: 1000,
                                        stored: 0,
                                    })
                                }
                                _ => Response::RequestVote(RequestVoteReply {
                                    term: 1000,
                                    vote_granted: true,
                                }),
                            };
                            let payload = base64_encode(&response.encode());
                            format!("OK {seq} {payload} {}", "00".repeat(32))
                        }
                        _ => "ERR BAD_REQUEST".to_string(),
                    };
                    if writer.write_all(format!("{reply}\n").as_bytes()).is_err() {
                        return;
                    }
                    line.clear();
                }
            });
        }
    });
}

/// A process without the key takes over a follower's address and answers
/// the leader's messages with forged replies (term 1000, success): the leader
/// rejects them, keeps its term and says so in its log.
#[test]
fn forged_replies_from_an_impostor_are_rejected() {
    let mut cluster = ProcCluster::start(3, &[]);
    let leader = cluster.wait_for_leader();
    let victim = (leader + 1) % 3;
    cluster.kill9(victim);
    let listener = TcpListener::bind(cluster.addr(victim)).expect("the victim's port");
    impostor(listener);
    cluster.wait_for(
        "the leader to report a forged reply",
        Duration::from_secs(15),
        || cluster.log(leader).contains("reply failed authentication"),
    );
    for i in (0..3).filter(|&i| i != victim) {
        let term = numbers(&cluster.status(i))["term"];
        assert!(term < 1000, "node {} adopted the impostor's term", i + 1);
    }
    assert_eq!(cluster.request(leader, &["PUT still ok"]), ["OK"]);
}

/// The ledger remembers the txids of the last `TXID_RETENTION` transfers: a
/// transfer sent again after `TXID_RETENTION - 1` newer ones is still answered
/// from memory; after one more it is forgotten and would run again (the
/// documented edge of the exactly-once window).
#[test]
fn txids_are_remembered_for_exactly_the_retention_window() {
    let cluster = ProcCluster::start(1, &[]);
    cluster.wait_for_leader();
    let addr = cluster.addr(0);
    let first = "TRANSFER first a b 1";
    assert_eq!(
        cluster.request(0, &["OPEN a 1000000", "OPEN b 0", first]),
        ["OK"; 3]
    );
    let others: Vec<String> = (1..TXID_RETENTION)
        .map(|i| format!("TRANSFER t{i} a b 1"))
        .collect();
    let replies = pipelined(&addr, others, 8);
    assert!(
        replies.iter().all(|r| r == "OK"),
        "{:?}",
        replies.iter().find(|r| *r != "OK")
    );
    let balance = format!("BALANCE {}.00", TXID_RETENTION);
    assert_eq!(
        cluster.request(0, &[first, "BALANCE b"]),
        ["OK".to_string(), balance.clone()]
    );
    assert_eq!(
        cluster.request(0, &["TRANSFER one-more a b 1", first]),
        ["OK", "OK"]
    );
    let moved_again = format!("BALANCE {}.00", TXID_RETENTION + 2);
    assert_eq!(cluster.request(0, &["BALANCE b"]), [moved_again]);
}

/// One HTTP request with an optional `Authorization` header, on a new
/// connection.
fn http_with(addr: &str, method: &str, path: &str, auth: Option<&str>, body: &[u8]) -> Reply {
    let mut conn = Conn::open(addr);
    let auth = auth.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    let mut bytes = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\n{auth}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(body);
    conn.send(&bytes);
    conn.read_reply(method == "HEAD").expect("a reply")
}

/// HTTP asks for the same token as the text protocol, as
/// `Authorization: Bearer <token>`, everywhere but the page, `/health` and
/// CORS preflights; `/cluster` passes it on to the members it asks; wrong
/// tokens are throttled.
#[test]
fn http_requests_need_the_bearer_token_when_one_is_configured() {
    let token = "http-token-0123456789";
    let bearer = format!("Bearer {token}");
    let cluster = ProcCluster::start_with_token(3, &[], token);
    let leader = cluster.wait_for_leader();
    let follower = cluster.addr((leader + 1) % 3);
    for (method, path) in [
        ("GET", "/status"),
        ("GET", "/cluster"),
        ("GET", "/metrics"),
        ("GET", "/kv/k"),
        ("PUT", "/kv/k"),
        ("POST", "/command"),
        ("GET", "/audit"),
    ] {
        let reply = http_with(&follower, method, path, None, b"x");
        assert_eq!(reply.status, 401, "{method} {path}: {}", reply.text());
        assert_eq!(reply.error_code(), "NOAUTH");
        assert!(reply
            .header("www-authenticate")
            .is_some_and(|h| h.starts_with("Bearer")));
    }
    assert_eq!(http_with(&follower, "GET", "/", None, b"").status, 200);
    assert_ne!(
        http_with(&follower, "GET", "/health", None, b"").status,
        401
    );
    assert_eq!(
        http_with(&follower, "OPTIONS", "/status", None, b"").status,
        204
    );
    let wrong = http_with(
        &follower,
        "PUT",
        "/kv/k",
        Some("Bearer not-the-token-000"),
        b"v",
    );
    assert_eq!(wrong.status, 401);
    let put = http_with(&follower, "PUT", "/kv/k", Some(&bearer), b"through http");
    assert_eq!(put.status, 200, "{}", put.text());
    let get = http_with(&follower, "GET", "/kv/k", Some(&bearer), b"");
    assert_eq!(
        get.json().get("value").and_then(Json::as_str),
        Some("through http")
    );
    assert_eq!(cluster.request(leader, &["GET k"]), ["VALUE through http"]);
    let whole = http_with(&follower, "GET", "/cluster", Some(&bearer), b"").json();
    let Some(Json::Array(members)) = whole.get("members") else {
        panic!("no members in {whole:?}");
    };
    assert_eq!(members.len(), 3);
    for m in members {
        assert_eq!(m.get("reachable"), Some(&Json::Bool(true)), "{m:?}");
    }
    // Wrong tokens from this address: soon refused unchecked, with 429.
    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(
            http_with(
                &follower,
                "GET",
                "/status",
                Some("Bearer wrong-wrong-wrong"),
                b"",
            )
            .status,
        );
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    assert_eq!(
        http_with(&follower, "GET", "/status", Some(&bearer), b"").status,
        429
    );
}
