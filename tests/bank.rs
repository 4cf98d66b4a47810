//! The money ledger under faults: concurrent transfers with unique txids while
//! the network drops messages, partitions come and go, and every server crashes.
//! Money is conserved at every audit, retried transfers apply exactly once, and
//! all servers end with identical state. Reference: §8 (exactly-once semantics).

#[allow(dead_code)]
mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::thread::{self, sleep};
use std::time::{Duration, Instant};

use common::kv::{KvCluster, ELECTION_TIMEOUT};
use raftkv::service::reply::{Code, Reply};

const ACCOUNTS: u64 = 8;
const OPENING: &str = "1000.00";
const TOTAL: &str = "8000.00";

/// An acknowledged transfer: the command and the reply it got.
#[derive(Clone)]
struct Acked {
    command: String,
    reply: Reply,
}

/// Fails unless an AUDIT reply shows every account and the starting total.
fn money_is_conserved(audit: &Reply) {
    assert_eq!(
        audit.to_string(),
        format!("AUDIT accounts={ACCOUNTS} total={TOTAL}"),
        "money was created or destroyed"
    );
}

#[test]
fn bank_money_is_conserved_through_partitions_crashes_and_drops() {
    let cfg = KvCluster::builder(5)
        .unreliable()
        .max_raft_state(4000)
        .start();
    cfg.begin("Test: bank transfers under faults");
    let mut ck = cfg.make_clerk(&cfg.all());
    for a in 0..ACCOUNTS {
        assert_eq!(
            ck.client.call(&format!("OPEN acct{a} {OPENING}")).unwrap(),
            "OK"
        );
    }
    let acked: Mutex<Vec<Acked>> = Mutex::new(Vec::new());
    for round in 0..3 {
        let done = AtomicBool::new(false);
        thread::scope(|s| {
            for c in 0..6u64 {
                let (cfg, acked, done) = (&cfg, &acked, &done);
                s.spawn(move || {
                    let mut myck = cfg.make_clerk(&cfg.all());
                    let mut n = 0;
                    while !done.load(Ordering::SeqCst) {
                        n += 1;
                        if n % 10 == 0 {
                            money_is_conserved(&myck.client.call("AUDIT").unwrap());
                            continue;
                        }
                        let from = cfg.random(ACCOUNTS);
                        let to = (from + 1 + cfg.random(ACCOUNTS - 1)) % ACCOUNTS;
                        let cents = 1 + cfg.random(30_000);
                        let command = format!(
                            "TRANSFER r{round}c{c}n{n} acct{from} acct{to} {}.{:02}",
                            cents / 100,
                            cents % 100
                        );
                        let reply = myck.client.call(&command).unwrap();
                        assert!(
                            reply == Reply::Ok || reply.code() == Some(Code::InsufficientFunds),
                            "{command}: {reply}"
                        );
                        acked.lock().unwrap().push(Acked { command, reply });
                    }
                });
            }
            let partitioner = {
                let (cfg, done) = (&cfg, &done);
                s.spawn(move || {
                    while !done.load(Ordering::SeqCst) {
                        let side: Vec<u64> = (0..cfg.n).map(|_| cfg.random(2)).collect();
                        let p0: Vec<usize> = (0..cfg.n).filter(|&i| side[i] == 0).collect();
                        let p1: Vec<usize> = (0..cfg.n).filter(|&i| side[i] == 1).collect();
                        cfg.partition(&p0, &p1);
                        sleep(Duration::from_millis(700 + cfg.random(300)));
                    }
                })
            };
            sleep(Duration::from_secs(4));
            if round == 1 {
                // Crash every server while clients are mid-request.
                for i in 0..cfg.n {
                    cfg.shutdown_server(i);
                }
                sleep(ELECTION_TIMEOUT / 2);
                for i in 0..cfg.n {
                    cfg.start_server(i);
                }
            }
            done.store(true, Ordering::SeqCst);
            partitioner.join().unwrap();
            cfg.connect_all();
        });
    }
    cfg.set_unreliable(false);
    money_is_conserved(&ck.client.call("AUDIT").unwrap());

    // Replaying every acknowledged transfer returns its first outcome and moves
    // nothing.
    let acked = acked.into_inner().unwrap();
    assert!(
        acked.len() > 50,
        "only {} transfers were acknowledged",
        acked.len()
    );
    for a in &acked {
        assert_eq!(
            ck.client.call(&a.command).unwrap(),
            a.reply,
            "replay of {}",
            a.command
        );
    }
    money_is_conserved(&ck.client.call("AUDIT").unwrap());
    let mut cents = 0i64;
    for a in 0..ACCOUNTS {
        match ck.client.call(&format!("BALANCE acct{a}")).unwrap() {
            Reply::Balance(balance) => cents += balance,
            other => panic!("BALANCE acct{a}: {other}"),
        }
    }
    assert_eq!(cents, 800_000, "balances do not add up to the total");

    // Every server ends with the same state machine (balances, transfers, sessions).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let states: Vec<(u64, Vec<u8>)> = cfg
            .frontends()
            .iter()
            .flatten()
            .map(|f| f.replica().applied_state())
            .collect();
        let same = states.windows(2).all(|w| w[0] == w[1]);
        if same && states.len() == cfg.n {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "servers did not converge to one state"
        );
        sleep(Duration::from_millis(50));
    }
    eprintln!("  {} transfers acknowledged and replayed", acked.len());
    cfg.end();
}
