//! A chaos nemesis for process tests (Jepsen's word): real nodes behind
//! cuttable links, and a thread that breaks them one way at a time, at
//! seeded random moments, until told to stop.
//!
//! The faults: `crash` (kill -9, then a restart from the data directory),
//! `pause` (SIGSTOP, then SIGCONT: a node frozen mid-step, as a long GC pause
//! or a stalled VM would be) and `isolate` (every peer link of one node cut
//! both ways, then healed). One fault at a time, on a random node, so a
//! majority is usually up and clients can make progress between faults;
//! whatever a test checks (linearizability, no lost write) must hold through
//! all of them. Stopping undoes the fault in force and heals everything.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::links::Links;
use super::procs::{free_port, ProcCluster};
use raftkv::raft::rng::Rng;

/// One way to break a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// kill -9, then a restart.
    Crash,
    /// SIGSTOP, then SIGCONT.
    Pause,
    /// Every peer link of the node cut both ways, then healed.
    Isolate,
}

impl Fault {
    /// Every fault.
    pub const ALL: [Fault; 3] = [Fault::Crash, Fault::Pause, Fault::Isolate];
}

/// Nodes behind cuttable links (see [`super::links`]).
pub struct ChaosCluster {
    /// The processes (reached through the proxies).
    pub cluster: ProcCluster,
    /// The proxies in front of them.
    pub links: Links,
    n: usize,
}

impl ChaosCluster {
    /// Starts `n` nodes with `extra` flags, each behind its proxy.
    pub fn start(n: usize, extra: &[&str]) -> ChaosCluster {
        let listen: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let links = Links::default();
        let reach: Vec<u16> = listen
            .iter()
            .enumerate()
            .map(|(i, &port)| links.proxy(i as u64 + 1, port))
            .collect();
        let cluster = ProcCluster::start_behind(&reach, &listen, extra);
        ChaosCluster { cluster, links, n }
    }

    /// The nodes' client addresses (through the proxies).
    pub fn addrs(&self) -> Vec<String> {
        self.cluster.addrs()
    }

    /// kill -9 node `i`.
    pub fn crash(&mut self, i: usize) {
        self.cluster.kill9(i);
    }

    /// Starts node `i` again from its data directory.
    pub fn restart(&mut self, i: usize) {
        self.cluster.spawn(i);
    }

    /// Freezes node `i` (SIGSTOP).
    pub fn pause(&self, i: usize) {
        self.signal(i, "-STOP");
    }

    /// Lets node `i` run again (SIGCONT).
    pub fn resume(&self, i: usize) {
        self.signal(i, "-CONT");
    }

    /// Cuts every peer link of node `i`, both ways.
    pub fn isolate(&self, i: usize) {
        self.links.isolate(i as u64 + 1, self.n as u64);
    }

    /// Restores every link.
    pub fn heal(&self) {
        self.links.heal();
    }

    fn signal(&self, i: usize, signal: &str) {
        if let Some(pid) = self.cluster.pid(i) {
            let sent = Command::new("kill")
                .arg(signal)
                .arg(pid.to_string())
                .status();
            assert!(sent.is_ok_and(|s| s.success()), "kill {signal} {pid}");
        }
    }
}

/// The nemesis thread; [`Nemesis::stop`] ends it and hands the cluster back.
pub struct Nemesis {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<(ChaosCluster, Vec<String>)>,
}

impl Nemesis {
    /// Starts breaking `chaos` with `faults`, drawn from `seed`: each fault
    /// lasts 0.3–1.5 s, with 0.2–0.8 s of calm after it.
    pub fn start(mut chaos: ChaosCluster, seed: u64, faults: &[Fault]) -> Nemesis {
        let stop = Arc::new(AtomicBool::new(false));
        let faults = faults.to_vec();
        let stopped = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let mut rng = Rng::new(seed);
            let mut log = Vec::new();
            let started = Instant::now();
            while !stopped.load(Ordering::SeqCst) && !faults.is_empty() {
                let fault = faults[rng.range(0, faults.len() as u64) as usize];
                let node = rng.range(0, chaos.n as u64) as usize;
                let lasts = Duration::from_millis(rng.range(300, 1501));
                log.push(format!(
                    "{:>6.1}s {fault:?} node {} for {lasts:?}",
                    started.elapsed().as_secs_f64(),
                    node + 1
                ));
                match fault {
                    Fault::Crash => chaos.crash(node),
                    Fault::Pause => chaos.pause(node),
                    Fault::Isolate => chaos.isolate(node),
                }
                // The fault's length is the schedule itself, not a wait for a
                // condition; it ends early if the nemesis is stopped.
                wait(&stopped, lasts);
                match fault {
                    Fault::Crash => chaos.restart(node),
                    Fault::Pause => chaos.resume(node),
                    Fault::Isolate => chaos.heal(),
                }
                wait(&stopped, Duration::from_millis(rng.range(200, 801)));
            }
            (chaos, log)
        });
        Nemesis { stop, thread }
    }

    /// Stops the nemesis (undoing the fault in force) and returns the
    /// cluster, every node running and every link healed, with the log of
    /// the faults it caused.
    pub fn stop(self) -> (ChaosCluster, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        let (chaos, log) = self.thread.join().expect("the nemesis panicked");
        chaos.heal();
        (chaos, log)
    }
}

/// Sleeps `d`, or less once `stop` is set.
fn wait(stop: &AtomicBool, d: Duration) {
    let until = Instant::now() + d;
    while Instant::now() < until && !stop.load(Ordering::SeqCst) {
        thread::sleep(
            Duration::from_millis(20).min(until.saturating_duration_since(Instant::now())),
        );
    }
}
