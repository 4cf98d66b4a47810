//! The simulated network: per-message delays, drops, duplicates and partitions.
//!
//! Every message is a packet with its own random delay, so messages on one link
//! overtake each other (reordering comes for free); a few take ten times longer.
//! A dropped message simply never arrives; a duplicated one arrives twice, each
//! copy with its own delay. Whether a link is cut is checked **when a packet
//! arrives**, so packets in flight when a partition starts are lost, as on a
//! real network. Partitions cut links between servers only: clients reach every
//! server (as in TigerBeetle's VOPR), which keeps liveness judgeable.
//!
//! [`LateCopies`] is a fault of its own: for a while, the AppendEntries and
//! InstallSnapshot requests to one server may arrive a second time, 0.1–2 s
//! later, when the server has moved on (a retransmission that lingered in
//! some queue). Only a server that restarts in between is safe from them,
//! since its connections broke.

use super::{Time, MS, SECOND};
use crate::raft::rng::Rng;

/// Who is at either end of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// Server at this index (its id is index + 1).
    Node(usize),
    /// Client at this index.
    Client(usize),
}

/// The links and their behaviour.
pub(crate) struct Network {
    rng: Rng,
    /// `reach[a][b]`: whether server `a`'s messages reach server `b`.
    reach: Vec<Vec<bool>>,
    delay_min: Time,
    delay_spread: Time,
    drop_permille: u64,
    dup_permille: u64,
}

impl Network {
    /// A fully connected network of `nodes` servers.
    pub(crate) fn new(
        rng: Rng,
        nodes: usize,
        delay_min: Time,
        delay_spread: Time,
        drop_permille: u64,
        dup_permille: u64,
    ) -> Self {
        Self {
            rng,
            reach: vec![vec![true; nodes]; nodes],
            delay_min,
            delay_spread,
            drop_permille,
            dup_permille,
        }
    }

    /// The delays after which copies of one message arrive: none if it is
    /// dropped, two if it is duplicated.
    pub(crate) fn delays(&mut self) -> Vec<Time> {
        if self.rng.range(0, 1000) < self.drop_permille {
            return Vec::new();
        }
        let copies = if self.rng.range(0, 1000) < self.dup_permille {
            2
        } else {
            1
        };
        (0..copies).map(|_| self.delay()).collect()
    }

    fn delay(&mut self) -> Time {
        let spread = if self.rng.range(0, 20) == 0 {
            10 * self.delay_spread
        } else {
            self.delay_spread
        };
        self.delay_min + self.rng.range(0, spread + 1)
    }

    /// Whether a packet from `from` to `to` gets through right now.
    pub(crate) fn allows(&self, from: Endpoint, to: Endpoint) -> bool {
        match (from, to) {
            (Endpoint::Node(a), Endpoint::Node(b)) => self.reach[a][b],
            _ => true,
        }
    }

    /// Cuts every link from a server in `from` to a server in `to`.
    pub(crate) fn cut(&mut self, from: &[usize], to: &[usize]) {
        for &a in from {
            for &b in to {
                self.reach[a][b] = false;
            }
        }
    }

    /// Restores every link.
    pub(crate) fn heal(&mut self) {
        for row in &mut self.reach {
            row.fill(true);
        }
    }

    /// Whether any link is cut.
    pub(crate) fn is_partitioned(&self) -> bool {
        self.reach.iter().any(|row| row.iter().any(|&r| !r))
    }

    /// From now on, no message is lost or duplicated (the liveness phase).
    pub(crate) fn make_reliable(&mut self) {
        self.drop_permille = 0;
        self.dup_permille = 0;
    }
}

/// Which servers receive late copies of the leader's requests, until when,
/// and how late each copy is (drawn from a stream of its own, so the
/// network's other draws stay where they were).
pub(crate) struct LateCopies {
    rng: Rng,
    /// `until[n]`: server `n` receives late copies while the clock is below it.
    until: Vec<Time>,
}

/// The earliest and latest a late copy arrives after the original is sent.
const LATE_COPY_DELAY: (Time, Time) = (100 * MS, 2 * SECOND);

impl LateCopies {
    pub(crate) fn new(rng: Rng, nodes: usize) -> Self {
        Self {
            rng,
            until: vec![0; nodes],
        }
    }

    /// Server `node` receives late copies until `until`.
    pub(crate) fn start(&mut self, node: usize, until: Time) {
        self.until[node] = self.until[node].max(until);
    }

    /// The delay of a late copy of a request sent to server `node` at `now`,
    /// if it gets one (one request in two does, while the fault lasts).
    pub(crate) fn delay(&mut self, node: usize, now: Time) -> Option<Time> {
        if now >= self.until[node] || self.rng.range(0, 2) == 0 {
            return None;
        }
        Some(self.rng.range(LATE_COPY_DELAY.0, LATE_COPY_DELAY.1 + 1))
    }

    /// No more late copies (the liveness phase).
    pub(crate) fn stop(&mut self) {
        self.until.fill(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_are_directed_and_heal_restores_them() {
        let mut net = Network::new(Rng::new(1), 3, 0, 10, 0, 0);
        net.cut(&[0], &[1, 2]);
        assert!(!net.allows(Endpoint::Node(0), Endpoint::Node(1)));
        assert!(net.allows(Endpoint::Node(1), Endpoint::Node(0)), "one-way");
        assert!(net.allows(Endpoint::Client(0), Endpoint::Node(0)));
        assert!(net.is_partitioned());
        net.heal();
        assert!(net.allows(Endpoint::Node(0), Endpoint::Node(1)));
        assert!(!net.is_partitioned());
    }

    #[test]
    fn late_copies_come_only_while_the_fault_lasts_and_much_later() {
        let mut late = LateCopies::new(Rng::new(3), 2);
        assert_eq!(late.delay(0, 0), None, "no fault yet");
        late.start(0, 5 * SECOND);
        let delays: Vec<Time> = (0..100).filter_map(|_| late.delay(0, SECOND)).collect();
        assert!((20..=80).contains(&delays.len()), "about one in two");
        assert!(delays
            .iter()
            .all(|d| (LATE_COPY_DELAY.0..=LATE_COPY_DELAY.1).contains(d)));
        assert_eq!(late.delay(1, SECOND), None, "another server");
        assert_eq!(late.delay(0, 5 * SECOND), None, "over");
        late.start(0, 9 * SECOND);
        late.stop();
        assert!((0..50).all(|_| late.delay(0, SECOND).is_none()));
    }

    #[test]
    fn a_reliable_network_delivers_every_message_once_within_its_delays() {
        let mut net = Network::new(Rng::new(7), 3, 2, 5, 500, 500);
        net.make_reliable();
        for _ in 0..1000 {
            let d = net.delays();
            assert_eq!(d.len(), 1);
            assert!((2..=2 + 50).contains(&d[0]));
        }
    }
}
