//! What one seed decides: the cluster's shape, the workload and which faults run.
//!
//! Swarm testing (Groce et al., ISSTA 2012): rather than every fault at a
//! uniform rate, each seed switches a random subset of fault kinds off and
//! draws its own rates, because some faults hide others (constant crashes
//! prevent the long-lived leaders that Figure 8 needs). [`Options`] are what a
//! person sets on the command line; they override or restrict the draw.

use std::fmt;

use super::{Time, MS, SECOND};
use crate::raft::rng::Rng;
use crate::raft::Bug;
use crate::service::snapshot_policy::{SnapshotPolicy, ENTRY_COST};

/// A kind of fault the schedule may inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    /// A server stops at once (possibly in the middle of a save, between
    /// saving and sending, or between sending and applying) and later restarts
    /// from its disk.
    Crash,
    /// The servers split into two groups that cannot talk (both ways).
    Partition,
    /// Messages from one group to the other are lost, the other way works.
    OneWay,
    /// Two groups that cannot talk, plus one server that talks to both.
    Bridge,
    /// A server's clock stops: it neither ticks nor handles messages.
    Pause,
    /// A server's clock runs fast, so its timers fire early.
    FastClock,
    /// The leader is asked to hand leadership to another server (thesis §3.10).
    Transfer,
    /// The leader is asked to add a server (a fresh id: ids are never reused)
    /// or to remove one, keeping a majority of the voters up (thesis §4).
    Membership,
    /// For a while, AppendEntries and InstallSnapshot requests to one server
    /// arrive a second time, much later, after it has moved on.
    LateCopies,
    /// A server crashes right after its next step that changes its term,
    /// once it has answered (then restarts from its disk).
    TermCrash,
}

impl FaultKind {
    /// Every kind, in a fixed order.
    pub const ALL: [FaultKind; 10] = [
        FaultKind::Crash,
        FaultKind::Partition,
        FaultKind::OneWay,
        FaultKind::Bridge,
        FaultKind::Pause,
        FaultKind::FastClock,
        FaultKind::Transfer,
        FaultKind::Membership,
        FaultKind::LateCopies,
        FaultKind::TermCrash,
    ];

    /// The kinds aimed at one server's promises (its durable term, the
    /// entries it acknowledged): drawn from a schedule of their own, so
    /// that the other faults of a seed stay where they were without them.
    pub const PROMISE_FAULTS: [FaultKind; 2] = [FaultKind::LateCopies, FaultKind::TermCrash];

    /// The name used on command lines and in traces.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Crash => "crash",
            FaultKind::Partition => "partition",
            FaultKind::OneWay => "one-way",
            FaultKind::Bridge => "bridge",
            FaultKind::Pause => "pause",
            FaultKind::FastClock => "fast-clock",
            FaultKind::Transfer => "transfer",
            FaultKind::Membership => "membership",
            FaultKind::LateCopies => "late-copies",
            FaultKind::TermCrash => "term-crash",
        }
    }

    /// The kind called `name`, if any.
    pub fn parse(name: &str) -> Option<FaultKind> {
        FaultKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// Choices a person makes for a run; everything else comes from the seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Number of servers the cluster starts with; drawn from {3, 5, 7} if `None`.
    pub nodes: Option<usize>,
    /// Servers that may be added later, each under a fresh id; if `None`, 6
    /// when the seed draws membership changes, else 0.
    pub spare_nodes: Option<usize>,
    /// Number of clients; drawn from 1..=6 if `None`.
    pub clients: Option<usize>,
    /// Virtual time during which faults are injected.
    pub fault_time: Time,
    /// After the faults stop and everything heals, how long the cluster has to
    /// elect a leader and finish every pending request (the liveness bound).
    pub liveness_time: Time,
    /// The fault kinds a seed may draw from (a seed switches some off).
    pub faults: Vec<FaultKind>,
    /// Whether the network may drop and duplicate messages.
    pub lossy: bool,
    /// A rule of the paper to break on purpose (see [`Bug`]).
    pub bug: Option<Bug>,
    /// Pre-vote (thesis §9.6) on or off; drawn per seed if `None`.
    pub pre_vote: Option<bool>,
    /// Check-quorum and stickiness (thesis §6.2, §4.2.3) on or off; drawn per
    /// seed if `None`.
    pub check_quorum: Option<bool>,
    /// The no-op at election (§8) and ReadIndex reads on or off; drawn per
    /// seed if `None` (on in three seeds out of four). Figure 8's bug hides
    /// behind a prompt no-op, so searches for it turn the no-op off.
    pub noop_on_election: Option<bool>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            nodes: None,
            spare_nodes: None,
            clients: None,
            fault_time: 20 * SECOND,
            liveness_time: 20 * SECOND,
            faults: FaultKind::ALL.to_vec(),
            lossy: true,
            bug: None,
            pre_vote: None,
            check_quorum: None,
            noop_on_election: None,
        }
    }
}

/// Every parameter of one schedule, drawn from its seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Knobs {
    /// Number of servers the cluster starts with (ids `1..=nodes`).
    pub nodes: usize,
    /// Servers that may join later (ids `nodes + 1..`).
    pub spare_nodes: usize,
    /// Number of clients.
    pub clients: usize,
    /// Number of distinct keys the clients use.
    pub keys: usize,
    /// Number of ledger accounts.
    pub accounts: usize,
    /// Shortest one-way message delay.
    pub delay_min: Time,
    /// Message delays are `delay_min` plus up to this much (uniform), and one
    /// message in 20 up to ten times this much (reordering).
    pub delay_spread: Time,
    /// Messages dropped, per thousand.
    pub drop_permille: u64,
    /// Messages delivered twice, per thousand.
    pub dup_permille: u64,
    /// The fault kinds this seed injects.
    pub faults: Vec<FaultKind>,
    /// How often each kind of [`FaultKind::ALL`] is drawn, relative to the
    /// others of its schedule (1..=4; kinds switched off are drawn, then
    /// skipped). The kinds of [`FaultKind::PROMISE_FAULTS`] are weighed
    /// against each other only: they have a schedule of their own.
    pub fault_weights: [u64; 10],
    /// Mean virtual time between two faults (in each of the two schedules).
    pub fault_gap: Time,
    /// When a server snapshots: the service's own policy, with a threshold
    /// of a few to a thousand entries' worth of log (`None`: never).
    pub snapshot_policy: Option<SnapshotPolicy>,
    /// Bytes per InstallSnapshot piece (small, so transfers take many).
    pub snapshot_chunk_bytes: u64,
    /// How long a client waits between two operations, at most.
    pub think_time: Time,
    /// Relative weights of PUT, APPEND, GET, TRANSFER, AUDIT, BALANCE.
    pub op_weights: [u64; 6],
    /// Relative weight of compare-and-swap (a `TXN` that sets a key only if
    /// its value is the one the client last saw), beside `op_weights`.
    pub cas_weight: u64,
    /// How long a server holds a request waiting for its outcome.
    pub request_timeout: Time,
    /// How long a client waits for a reply before trying the next server.
    pub client_timeout: Time,
    /// Whether servers ask for pre-votes (thesis §9.6).
    pub pre_vote: bool,
    /// Whether leaders check their quorum and followers are sticky (§6.2).
    pub check_quorum: bool,
    /// Whether a new leader appends a no-op (§8) and reads are served by
    /// ReadIndex (thesis §6.4), as in the server. Without the no-op a read
    /// could wait for ever for a write in the new leader's term, so those
    /// seeds read through the log instead (the paper's original design, under
    /// which Figure 8's bug is visible: a prompt no-op hides it).
    pub noop_on_election: bool,
    /// Flow control: most AppendEntries with entries in flight to a
    /// streaming follower (the server's default is 64; a window of 1 sends
    /// one message at a time, as a probe does).
    pub max_inflight_messages: usize,
}

impl Knobs {
    /// Draws the knobs for `seed`, within what `options` allow.
    pub fn draw(seed: u64, options: &Options) -> Knobs {
        let mut rng = Rng::new(stream_seed(seed, Stream::Knobs));
        let nodes = options.nodes.unwrap_or(match rng.range(0, 10) {
            0..=3 => 3,
            4..=8 => 5,
            _ => 7,
        });
        let clients = options.clients.unwrap_or(rng.range(1, 7) as usize);
        let keys = rng.range(1, 9) as usize;
        let accounts = rng.range(2, 7) as usize;
        let delay_min = rng.range(0, 6) * MS;
        let delay_spread = rng.range(1, 41) * MS;
        let mut rate = |off_in_ten: u64, max: u64| {
            if !options.lossy || rng.range(0, 10) < off_in_ten {
                0
            } else {
                rng.range(1, max + 1)
            }
        };
        let drop_permille = rate(3, 200);
        let dup_permille = rate(4, 200);
        // Swarm: each allowed kind stays on with probability 7/10.
        // Membership changes and the promise faults are drawn last (below),
        // so that seeds without them keep the schedules they had before they
        // existed: here, the first seven kinds.
        let mut faults: Vec<FaultKind> = FaultKind::ALL[..7]
            .iter()
            .copied()
            .filter(|k| {
                let on = rng.range(0, 10) < 7;
                on && options.faults.contains(k)
            })
            .collect();
        let mut fault_weights = [0; 10];
        for w in fault_weights[..7].iter_mut() {
            *w = rng.range(1, 5);
        }
        // Mean gaps from 50 ms to 3.2 s, spread evenly on a log scale.
        let fault_gap = (50 * MS) << rng.range(0, 6);
        let fault_gap = fault_gap + rng.range(0, fault_gap + 1);
        // About this many entries of log between snapshots (0: none).
        let snapshot_entries: usize = [0, 8, 32, 128, 1024][rng.range(0, 5) as usize];
        let think_time = rng.range(0, 51) * MS;
        let mut op_weights = [0; 6];
        for w in op_weights.iter_mut() {
            *w = rng.range(0, 11);
        }
        if rng.range(0, 5) == 0 {
            // Some seeds are KV only.
            op_weights[3..].fill(0);
        }
        if op_weights.iter().sum::<u64>() == 0 {
            op_weights[1] = 1;
        }
        // The servers' defaults are on; some seeds run the paper's rules alone.
        let pre_vote = options.pre_vote.unwrap_or(rng.range(0, 4) != 0);
        let check_quorum = options.check_quorum.unwrap_or(rng.range(0, 4) != 0);
        let noop_on_election = options.noop_on_election.unwrap_or(rng.range(0, 4) != 0);
        let snapshot_chunk_bytes = [64, 512, 4096, 1 << 20][rng.range(0, 4) as usize];
        let max_inflight_messages = [1, 4, 64][rng.range(0, 3) as usize];
        // The swarm's choice for membership changes, drawn after everything
        // else: a seed it switches off keeps the schedule it had before they
        // existed. One it switches on keeps their weight even when the options
        // rule them out, so that shrinking them away leaves the other faults
        // in place.
        let mut membership = false;
        if rng.range(0, 10) < 7 {
            fault_weights[7] = rng.range(1, 5);
            membership = options.faults.contains(&FaultKind::Membership);
        }
        if membership {
            faults.push(FaultKind::Membership);
        }
        // The faults aimed at one server's promises, drawn after all the
        // rest for the same reason, each on with probability 7/10.
        for (i, kind) in FaultKind::PROMISE_FAULTS.into_iter().enumerate() {
            if rng.range(0, 10) < 7 {
                fault_weights[8 + i] = rng.range(1, 5);
                if options.faults.contains(&kind) {
                    faults.push(kind);
                }
            }
        }
        let spare_nodes = options
            .spare_nodes
            .unwrap_or(if membership { 6 } else { 0 });
        // Compare-and-swap, drawn last too: a seed without it keeps its knobs.
        let cas_weight = match rng.range(0, 10) {
            0..=2 => 0,
            _ => rng.range(1, 11),
        };
        // The snapshot policy's weighing of a simulated entry: its command
        // (a few dozen bytes) and the cost per entry. Whether snapshots
        // scale with the state (as the server's do) is drawn last.
        let scale_with_state = rng.range(0, 2) == 0;
        let snapshot_policy = (snapshot_entries > 0).then(|| SnapshotPolicy {
            log_bytes: snapshot_entries * (ENTRY_COST + 32),
            scale_with_state,
        });
        Knobs {
            nodes,
            spare_nodes,
            clients,
            keys,
            accounts,
            delay_min,
            delay_spread,
            drop_permille,
            dup_permille,
            faults,
            fault_weights,
            fault_gap,
            snapshot_policy,
            think_time,
            op_weights,
            cas_weight,
            request_timeout: SECOND,
            client_timeout: 1500 * MS,
            pre_vote,
            check_quorum,
            noop_on_election,
            snapshot_chunk_bytes,
            max_inflight_messages,
        }
    }
}

impl fmt::Display for Knobs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let faults: Vec<String> = self
            .faults
            .iter()
            .map(|&k| {
                let i = FaultKind::ALL.iter().position(|&a| a == k).unwrap_or(0);
                format!("{}x{}", k.name(), self.fault_weights[i])
            })
            .collect();
        write!(
            f,
            "nodes={}+{} pre-vote={} check-quorum={} noop={} window={} clients={} keys={} accounts={} delay={}+{}ms drop={}‰ dup={}‰ \
             faults=[{}] fault-gap={}ms snapshot={} think={}ms ops(put,append,get,transfer,audit,balance)={:?} cas={}",
            self.nodes,
            self.spare_nodes,
            self.pre_vote,
            self.check_quorum,
            self.noop_on_election,
            self.max_inflight_messages,
            self.clients,
            self.keys,
            self.accounts,
            self.delay_min / MS,
            self.delay_spread / MS,
            self.drop_permille,
            self.dup_permille,
            faults.join(","),
            self.fault_gap / MS,
            match self.snapshot_policy {
                None => "never".to_string(),
                Some(p) if p.scale_with_state => format!("{}B+state", p.log_bytes),
                Some(p) => format!("{}B", p.log_bytes),
            },
            self.think_time / MS,
            self.op_weights,
            self.cas_weight
        )
    }
}

/// The independent random streams of one schedule. Each concern draws from its
/// own stream, so that switching a fault kind off does not shift the network's
/// draws or the clients' (which keeps shrinking meaningful).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stream {
    Knobs,
    Network,
    Faults,
    Disk,
    Client(usize),
    Node(usize, u32),
    PromiseFaults,
    LateCopies,
}

/// The seed of stream `stream` of schedule `seed`.
pub(crate) fn stream_seed(seed: u64, stream: Stream) -> u64 {
    let tag = match stream {
        Stream::Knobs => 1,
        Stream::Network => 2,
        Stream::Faults => 3,
        Stream::Disk => 4,
        Stream::Client(c) => 0x100 + c as u64,
        Stream::Node(n, incarnation) => 0x1_0000 + ((n as u64) << 32) + u64::from(incarnation),
        Stream::PromiseFaults => 5,
        Stream::LateCopies => 6,
    };
    let mut rng = Rng::new(seed ^ tag.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    rng.next_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_promise_faults_are_drawn_after_everything_else() {
        let all = Options::default();
        let without = Options {
            faults: FaultKind::ALL
                .into_iter()
                .filter(|k| !FaultKind::PROMISE_FAULTS.contains(k))
                .collect(),
            ..Options::default()
        };
        let mut seen_on = false;
        for seed in 1..200 {
            let (a, b) = (Knobs::draw(seed, &all), Knobs::draw(seed, &without));
            let general = |k: &Knobs| {
                let mut k = k.clone();
                k.faults.retain(|f| !FaultKind::PROMISE_FAULTS.contains(f));
                k
            };
            assert_eq!(general(&a), general(&b), "seed {seed}");
            assert!(b
                .faults
                .iter()
                .all(|f| !FaultKind::PROMISE_FAULTS.contains(f)));
            seen_on |= a.faults.contains(&FaultKind::LateCopies)
                && a.faults.contains(&FaultKind::TermCrash);
        }
        assert!(seen_on);
    }
}
