//! The lesson most lock tutorials skip: a holder paused past its lease
//! (SIGSTOP) wakes up believing it holds the lock. With fencing, the
//! guarded resource refuses its write; without, it overwrites the new
//! holder's work, and this test observes the overwrite.
//!
//! The holders are processes (this test binary again, running the ignored
//! `holder` entry with its orders in environment variables), so they can
//! be stopped and continued like any process; they run the recipe of
//! `examples/lock`.

#[allow(dead_code)]
mod common;
#[allow(dead_code)]
#[path = "../examples/lock/recipe.rs"]
mod recipe;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use common::procs::ProcCluster;
use raftkv::client::Client;
use recipe::{acquire, ensure_fence, work, Work};

const PATIENCE: Duration = Duration::from_secs(30);
const NAME: &str = "locks/report";
const FENCE: &[u8] = b"locks/report.fence";
const RESOURCE: &[u8] = b"locks/report.data";

/// Not a test: the holder process the tests below start (it does nothing
/// unless `RAFTKV_LOCK_SERVERS` is set).
#[test]
#[ignore = "a holder process that the lock tests start"]
fn holder() {
    let Ok(servers) = std::env::var("RAFTKV_LOCK_SERVERS") else {
        return;
    };
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let servers: Vec<String> = servers.split(',').map(String::from).collect();
    let mut client = Client::new(servers.clone());
    ensure_fence(&mut client, FENCE).expect("fence");
    let mut next = 0;
    let lock = acquire(&servers, &mut client, NAME, 1, &mut || {
        next += 1;
        next
    })
    .expect("acquire");
    println!("acquired token={}", lock.token);
    let id = var("RAFTKV_LOCK_ID");
    let order = Work {
        fence: FENCE,
        resource: RESOURCE,
        id: &id,
        rounds: var("RAFTKV_LOCK_ROUNDS").parse().unwrap_or(1),
        pause: Duration::from_millis(var("RAFTKV_LOCK_PAUSE_MS").parse().unwrap_or(100)),
        fencing: var("RAFTKV_LOCK_FENCING") == "1",
    };
    let code = work(&mut client, lock, order, &mut |line| println!("{line}"));
    std::process::exit(code);
}

/// A holder process and its output lines.
struct Holder {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Holder {
    fn start(servers: &[String], id: &str, fencing: bool, rounds: u64) -> Holder {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "holder",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("RAFTKV_LOCK_SERVERS", servers.join(","))
            .env("RAFTKV_LOCK_ID", id)
            .env("RAFTKV_LOCK_ROUNDS", rounds.to_string())
            .env("RAFTKV_LOCK_PAUSE_MS", "200")
            .env("RAFTKV_LOCK_FENCING", if fencing { "1" } else { "0" })
            .stdout(Stdio::piped())
            .spawn()
            .expect("start a holder");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Holder {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a line holding `prefix` (libtest may print before it on
    /// the same line); returns it.
    fn wait_for(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(prefix) {
                        return line;
                    }
                }
                Err(_) => panic!("no line {prefix:?}; saw {:?}", self.seen),
            }
        }
    }

    fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .arg(signal)
            .arg(self.child.id().to_string())
            .status();
        assert!(sent.is_ok_and(|s| s.success()), "kill {signal}");
    }

    /// Waits for the process to exit; its exit code.
    fn exit_code(&mut self) -> i32 {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code().unwrap_or(-1);
            }
            thread::sleep(Duration::from_millis(50));
        }
        panic!("the holder did not exit; saw {:?}", self.seen);
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Holder `a` takes the lock and is stopped; its lease expires, `b` takes
/// the lock and writes; `a` is continued and writes. Returns `a`'s exit
/// code, its last line, and the resource's value at the end.
fn stop_the_holder_until_its_lease_expires(fencing: bool) -> (i32, String, String, u64, u64) {
    let cluster = ProcCluster::start(3, &[]);
    cluster.wait_for_leader();
    let servers = cluster.addrs();
    let mut a = Holder::start(&servers, "a", fencing, 1000);
    let a_token = token(&a.wait_for("acquired"));
    a.wait_for("wrote a-0");
    a.signal("-STOP");
    let mut b = Holder::start(&servers, "b", fencing, 2);
    let b_token = token(&b.wait_for("acquired"));
    b.wait_for("wrote b-1");
    assert_eq!(b.exit_code(), 0, "b released; saw {:?}", b.seen);
    let mut client = Client::new(servers);
    assert_eq!(
        client.get("locks/report.data").unwrap().as_deref(),
        Some("b-1")
    );
    a.signal("-CONT");
    let code = a.exit_code();
    while let Ok(line) = a.lines.try_recv() {
        a.seen.push(line);
    }
    let last = a
        .seen
        .iter()
        .rev()
        .find(|l| !l.starts_with("lost"))
        .cloned();
    let value = client.get("locks/report.data").unwrap().unwrap_or_default();
    (code, last.unwrap_or_default(), value, a_token, b_token)
}

fn token(line: &str) -> u64 {
    line.rsplit_once("token=")
        .and_then(|(_, t)| t.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no token in {line:?}"))
}

/// Reference: Kleppmann, "How to do distributed locking" (fencing tokens).
#[test]
fn with_fencing_a_holder_paused_past_its_lease_cannot_overwrite_the_new_holders_work() {
    let (code, last, value, a_token, b_token) = stop_the_holder_until_its_lease_expires(true);
    assert!(b_token > a_token, "tokens grow: {a_token} then {b_token}");
    assert_eq!(code, 3, "a's write was refused; its last line: {last}");
    assert_eq!(
        last,
        format!("refused: token {b_token} is newer than {a_token}")
    );
    assert_eq!(value, "b-1", "b's work stands");
}

#[test]
fn without_fencing_a_holder_paused_past_its_lease_overwrites_the_new_holders_work() {
    let (code, last, value, _, _) = stop_the_holder_until_its_lease_expires(false);
    assert_eq!(
        code, 4,
        "a found out it had lost the lease only after writing"
    );
    assert!(last.starts_with("wrote a-"), "{last}");
    assert!(
        value.starts_with("a-"),
        "b's work was overwritten by {value}"
    );
}
