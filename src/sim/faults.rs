//! The fault schedule: at random moments, one fault of a random kind.
//!
//! Every fault draws the same number of random values whatever its kind, and a
//! kind the seed switched off is skipped after its draws. So switching a kind
//! off (as shrinking does) removes those faults and leaves every other fault at
//! the same moment with the same parameters. Faults pick their servers among
//! those that exist when they strike (servers join and leave with membership
//! changes).

use super::knobs::{FaultKind, Knobs};
use super::{Time, MS};
use crate::raft::rng::Rng;

/// Where in a server's handling of its next event a crash strikes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CrashPoint {
    /// At once, between two events.
    Now,
    /// In the middle of saving (a torn save: a prefix reaches the disk).
    DuringPersist,
    /// The disk fails in the middle of the next save (`ENOSPC` if `full`,
    /// else `EIO`): a prefix reaches the disk and the save returns the error,
    /// so the server stops (fail-stop) and later restarts from its disk.
    DiskFails { full: bool },
    /// After saving, before sending any message or reply.
    BeforeSend,
    /// After sending, before applying committed entries.
    BeforeApply,
}

impl CrashPoint {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            CrashPoint::Now => "between events",
            CrashPoint::DuringPersist => "during its next save",
            CrashPoint::DiskFails { full: true } => "when its disk fills during its next save",
            CrashPoint::DiskFails { full: false } => {
                "when its disk fails (EIO) during its next save"
            }
            CrashPoint::BeforeSend => "after its next save, before sending",
            CrashPoint::BeforeApply => "after its next send, before applying",
        }
    }
}

/// One fault, ready to inject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Crash server `node` at `point`; restart it after `down_for`.
    Crash {
        node: usize,
        point: CrashPoint,
        down_for: Time,
    },
    /// Cut the links from `from` to `to` (and back, unless `one_way`), keeping
    /// `bridge` connected to both sides, for `lasts`.
    Partition {
        from: Vec<usize>,
        to: Vec<usize>,
        one_way: bool,
        bridge: Option<usize>,
        lasts: Time,
    },
    /// Stop server `node`'s clock for `lasts`.
    Pause { node: usize, lasts: Time },
    /// Make server `node`'s clock tick `percent` % faster for `lasts`.
    FastClock {
        node: usize,
        percent: u64,
        lasts: Time,
    },
    /// Ask the leader, if any, to hand leadership to `node` (or the next
    /// server, if `node` leads).
    Transfer { node: usize },
    /// Ask the leader, if any, to add a new server (if `add` and a fresh id
    /// is left) or else to remove the member that `pick` chooses.
    Membership { add: bool, pick: u64 },
}

/// Draws faults for one schedule.
pub(crate) struct FaultPlan {
    rng: Rng,
    kinds: Vec<FaultKind>,
    weights: [u64; 8],
    gap: Time,
}

impl FaultPlan {
    pub(crate) fn new(rng: Rng, knobs: &Knobs) -> Self {
        Self {
            rng,
            kinds: knobs.faults.clone(),
            weights: knobs.fault_weights,
            gap: knobs.fault_gap,
        }
    }

    /// How long until the next fault.
    pub(crate) fn next_gap(&mut self) -> Time {
        self.rng.range(MS, 2 * self.gap + 1)
    }

    /// The next fault among `servers` (the indexes of those that exist, in
    /// order), or `None` if its kind is switched off for this seed.
    pub(crate) fn next_fault(&mut self, servers: &[usize]) -> Option<Fault> {
        let total: u64 = self.weights.iter().sum();
        let mut x = self.rng.range(0, total.max(1));
        let mut kind = FaultKind::Crash;
        for (i, &w) in self.weights.iter().enumerate() {
            if x < w {
                kind = FaultKind::ALL[i];
                break;
            }
            x -= w;
        }
        let draws: [u64; 4] = std::array::from_fn(|_| self.rng.next_u64());
        if !self.kinds.contains(&kind) {
            return None;
        }
        let n = servers.len().max(1) as u64;
        let node = servers.get((draws[0] % n) as usize).copied().unwrap_or(0);
        let duration = |min: Time, max: Time, d: u64| min + d % (max - min + 1);
        Some(match kind {
            FaultKind::Crash => Fault::Crash {
                node,
                point: match [
                    CrashPoint::Now,
                    CrashPoint::DuringPersist,
                    CrashPoint::BeforeSend,
                    CrashPoint::BeforeApply,
                ][(draws[1] % 4) as usize]
                {
                    // Half the torn saves are a disk that fails rather than
                    // power that goes: the same prefix reaches the disk, and
                    // under fail-stop the server stops the same way. Decided
                    // by bits of a draw made anyway, so that every schedule
                    // stays what it was.
                    CrashPoint::DuringPersist if !(draws[3] / 9).is_multiple_of(2) => {
                        CrashPoint::DiskFails {
                            full: (draws[3] / 18).is_multiple_of(2),
                        }
                    }
                    point => point,
                },
                // Roughly log-uniform from 5 ms to 2.5 s: some restarts land
                // within the election the crash interrupted.
                down_for: {
                    let scale = (5 * MS) << (draws[3] % 9);
                    scale + draws[2] % scale
                },
            },
            FaultKind::Partition | FaultKind::OneWay | FaultKind::Bridge => {
                // Two sides (and a bridge) need as many servers: membership
                // changes may have left fewer.
                let needed = if kind == FaultKind::Bridge { 3 } else { 2 };
                if servers.len() < needed {
                    return None;
                }
                // A random order of the servers, split after the first `k`.
                let mut order: Vec<usize> = servers.to_vec();
                let mut x = draws[0];
                for i in (1..order.len()).rev() {
                    x = x.rotate_left(7) ^ 0x9E37_79B9_7F4A_7C15;
                    order.swap(i, (x % (i as u64 + 1)) as usize);
                }
                let bridge = (kind == FaultKind::Bridge).then(|| order.remove(0));
                let k = 1 + (draws[1] % (order.len() as u64 - 1).max(1)) as usize;
                let to = order.split_off(k.min(order.len()));
                Fault::Partition {
                    from: order,
                    to,
                    one_way: kind == FaultKind::OneWay,
                    bridge,
                    lasts: duration(300 * MS, 3000 * MS, draws[2]),
                }
            }
            FaultKind::Pause => Fault::Pause {
                node,
                lasts: duration(100 * MS, 2000 * MS, draws[2]),
            },
            FaultKind::FastClock => Fault::FastClock {
                node,
                percent: 10 + draws[1] % 41,
                lasts: duration(1000 * MS, 5000 * MS, draws[2]),
            },
            FaultKind::Transfer => Fault::Transfer { node },
            FaultKind::Membership => Fault::Membership {
                add: draws[1].is_multiple_of(2),
                pick: draws[2],
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::knobs::Options;

    #[test]
    fn partitions_split_every_server_into_exactly_one_side() {
        let options = Options {
            nodes: Some(5),
            ..Options::default()
        };
        let mut knobs = Knobs::draw(1, &options);
        knobs.faults = vec![FaultKind::Partition, FaultKind::Bridge];
        let mut plan = FaultPlan::new(Rng::new(9), &knobs);
        let mut seen = 0;
        for _ in 0..200 {
            if let Some(Fault::Partition {
                from, to, bridge, ..
            }) = plan.next_fault(&[0, 1, 2, 3, 4])
            {
                let mut all: Vec<usize> = from.iter().chain(&to).chain(&bridge).copied().collect();
                all.sort_unstable();
                assert_eq!(all, vec![0, 1, 2, 3, 4]);
                assert!(!from.is_empty() && !to.is_empty());
                seen += 1;
            }
        }
        assert!(seen > 0);
    }

    #[test]
    fn switching_a_kind_off_keeps_the_other_faults_in_place() {
        let options = Options::default();
        let mut all = Knobs::draw(4, &options);
        all.faults = FaultKind::ALL.to_vec();
        let mut fewer = all.clone();
        fewer.faults.retain(|&k| k != FaultKind::Crash);
        let (mut a, mut b) = (
            FaultPlan::new(Rng::new(5), &all),
            FaultPlan::new(Rng::new(5), &fewer),
        );
        for _ in 0..100 {
            assert_eq!(a.next_gap(), b.next_gap());
            let servers = [0, 1, 2];
            let (fa, fb) = (a.next_fault(&servers), b.next_fault(&servers));
            match fa {
                Some(Fault::Crash { .. }) => assert_eq!(fb, None),
                other => assert_eq!(other, fb),
            }
        }
    }
}
