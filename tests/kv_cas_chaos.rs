//! Compare-and-swap under chaos: 16 clients increment one counter with a CAS
//! retry loop for 20 s while a nemesis kills (-9) and restarts nodes, pauses
//! them and cuts them off. No increment may be lost or applied twice: the
//! final value is the number of successful CAS replies, and the history of
//! reads and swaps is linearizable.

#[allow(dead_code)]
mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::nemesis::{ChaosCluster, Fault, Nemesis};
use raftkv::client::Client;
use raftkv::sim::linearizability::{
    check_kv, CasOutcome, Input, Operation, Value, Verdict, DEFAULT_STEPS,
};

const CLIENTS: usize = 16;
const RUN: Duration = Duration::from_secs(20);
const KEY: &str = "counter";

/// The counter's value as text: fixed width, so no value is a prefix of
/// another (which keeps the checker's pruning sharp).
fn text(n: u64) -> String {
    format!("{n:08}")
}

struct Shared {
    started: Instant,
    history: Mutex<Vec<Operation>>,
    swaps: Mutex<u64>,
    stop: AtomicBool,
}

impl Shared {
    fn now(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }

    fn record(
        &self,
        client: usize,
        input: Input,
        output: Option<String>,
        call: u64,
        ret: Option<u64>,
    ) {
        let op = Operation {
            client,
            input,
            output: output.map(Value::from),
            call,
            ret,
        };
        self.history
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(op);
    }
}

/// One client: read the counter, CAS it one higher on its mod revision,
/// retry on a lost race, until told to stop.
fn increment(c: usize, addrs: Vec<String>, shared: &Shared) {
    let mut client = Client::new(addrs);
    client.deadline = Duration::from_secs(60);
    while !shared.stop.load(Ordering::SeqCst) {
        let call = shared.now();
        let read = client.get_meta(KEY.as_bytes(), false);
        let Ok(Some(current)) = read else {
            // Created before the clients start: no reply means no outcome.
            shared.record(c, Input::Get(KEY.into()), None, call, None);
            continue;
        };
        let value = current
            .value
            .as_deref()
            .map(|v| String::from_utf8_lossy(v).into_owned());
        shared.record(
            c,
            Input::Get(KEY.into()),
            value.clone(),
            call,
            Some(shared.now()),
        );
        let Some(n) = value.as_deref().and_then(|v| v.parse::<u64>().ok()) else {
            panic!("client {c} read {value:?}");
        };
        let call = shared.now();
        let swapped = client.cas(KEY.as_bytes(), current.mod_revision, text(n + 1).as_bytes());
        let (outcome, ret) = match swapped {
            Ok(Ok(_)) => {
                *shared.swaps.lock().unwrap_or_else(|e| e.into_inner()) += 1;
                (CasOutcome::Swapped, Some(shared.now()))
            }
            Ok(Err(now)) => {
                let now = now
                    .and_then(|kv| kv.value)
                    .map(|v| String::from_utf8_lossy(&v).into_owned());
                (CasOutcome::Failed(now), Some(shared.now()))
            }
            Err(e) => {
                eprintln!("client {c}: CAS with no outcome: {e}");
                (CasOutcome::Unknown, None)
            }
        };
        // The revision compare is a value compare here: every value is
        // written by one successful swap only, so the counter holds
        // `text(n)` exactly while its mod revision is `current`'s.
        let input = Input::Cas {
            key: KEY.into(),
            expected: Some(text(n)),
            new: text(n + 1),
            outcome,
        };
        shared.record(c, input, None, call, ret);
    }
}

/// Reference: §8 (linearizable semantics, exactly once); Jepsen's CAS
/// register under a nemesis of crashes, pauses and partitions.
#[test]
fn sixteen_clients_cas_increment_one_counter_through_kills_pauses_and_partitions() {
    let chaos = ChaosCluster::start(3, &[]);
    let addrs = chaos.addrs();
    let mut setup = Client::new(addrs.clone());
    setup.put(KEY, &text(0)).expect("the counter is created");
    let created = Operation {
        client: CLIENTS,
        input: Input::Put(KEY.into(), text(0)),
        output: None,
        call: 0,
        ret: Some(0),
    };
    let shared = Arc::new(Shared {
        started: Instant::now(),
        history: Mutex::new(vec![created]),
        swaps: Mutex::new(0),
        stop: AtomicBool::new(false),
    });
    let seed = common::cluster::fresh_seed();
    eprintln!("nemesis seed {seed} (RAFTKV_SEED={seed} replays its schedule of faults)");
    let nemesis = Nemesis::start(chaos, seed, &Fault::ALL);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (addrs, shared) = (addrs.clone(), Arc::clone(&shared));
            thread::spawn(move || increment(c, addrs, &shared))
        })
        .collect();
    thread::sleep(RUN);
    // The nemesis heals everything; clients finish the operation in hand.
    let (chaos, faults) = nemesis.stop();
    shared.stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.join().expect("a client panicked");
    }
    eprintln!("faults:\n{}", faults.join("\n"));
    let history = std::mem::take(&mut *shared.history.lock().unwrap());
    let swaps = *shared.swaps.lock().unwrap();
    let unknown = history.iter().filter(|op| op.ret.is_none()).count();
    let final_value = setup.get(KEY).expect("a final read").expect("the counter");
    eprintln!(
        "{swaps} successful swaps, {} operations, {unknown} without an outcome, {} faults, final {final_value}",
        history.len(),
        faults.len()
    );
    assert!(faults.len() >= 10, "the nemesis hardly ran: {faults:?}");
    assert!(
        swaps >= 20,
        "too little progress to test anything: {swaps} swaps"
    );
    assert_eq!(
        unknown, 0,
        "every operation gets a definite reply once the faults stop"
    );
    assert_eq!(
        final_value,
        text(swaps),
        "the counter counts the successful swaps"
    );
    let mut checked = history;
    checked.push(Operation {
        client: CLIENTS,
        input: Input::Get(KEY.into()),
        output: Some(Value::from(final_value)),
        call: shared.now(),
        ret: Some(shared.now()),
    });
    let checking = Instant::now();
    assert_eq!(check_kv(&checked, DEFAULT_STEPS), Verdict::Linearizable);
    eprintln!("checked linearizable in {:?}", checking.elapsed());
    drop(chaos);
}
