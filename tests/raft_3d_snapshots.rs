//! Course Raft part D: log compaction and InstallSnapshot. Reference: §7.

#[allow(dead_code)]
mod common;

use common::cluster::{cmd, Cluster};

/// The tester snapshots every this many entries.
const SNAPSHOT_INTERVAL: u64 = 10;
/// Persisted Raft state (excluding the snapshot) must stay below this.
const MAX_LOG_SIZE: usize = 2000;

/// Thirty rounds: maybe cut off or crash a victim, submit 5–14 commands, agree,
/// check the log stays compacted, bring the victim back (which may need
/// InstallSnapshot). Reference: §7.
/// What happens to the round's victim, and to the network.
#[derive(Default)]
struct Faults {
    /// The victim is cut off, then reconnected.
    disconnect: bool,
    /// The victim crashes, then restarts.
    crash: bool,
    /// The network drops, delays and reorders messages.
    unreliable: bool,
}

fn snapshot_common(name: &str, faults: Faults) {
    let Faults {
        disconnect,
        crash,
        unreliable,
    } = faults;
    let servers = 3;
    let cfg = Cluster::builder(servers)
        .unreliable_if(unreliable)
        .snapshots()
        .start();
    cfg.begin(name);
    cfg.one(cmd(cfg.random(1 << 40)), servers, true);
    let mut leader1 = cfg.check_one_leader();
    for i in 0..30 {
        let (mut victim, mut sender) = ((leader1 + 1) % servers, leader1);
        if i % 3 == 1 {
            sender = (leader1 + 1) % servers;
            victim = leader1;
        }
        if disconnect {
            cfg.disconnect(victim);
            cfg.one(cmd(cfg.random(1 << 40)), servers - 1, true);
        }
        if crash {
            cfg.crash(victim);
            cfg.one(cmd(cfg.random(1 << 40)), servers - 1, true);
        }
        // Perhaps send enough to get a snapshot.
        let nn = SNAPSHOT_INTERVAL / 2 + cfg.random(SNAPSHOT_INTERVAL);
        for _ in 0..nn {
            cfg.start(sender, cmd(cfg.random(1 << 40)));
        }
        // Let applier threads catch up with the starts.
        if !disconnect && !crash {
            // Make sure all followers have caught up, so that an InstallSnapshot
            // RPC isn't required for snapshot_basic_3d.
            cfg.one(cmd(cfg.random(1 << 40)), servers, true);
        } else {
            cfg.one(cmd(cfg.random(1 << 40)), servers - 1, true);
        }
        let size = (0..servers)
            .map(|s| cfg.raft_state_size(s))
            .max()
            .unwrap_or(0);
        assert!(size < MAX_LOG_SIZE, "log size too large: {size} bytes");
        if disconnect {
            // Reconnect a follower, who may be behind and need a snapshot.
            cfg.connect(victim);
            cfg.one(cmd(cfg.random(1 << 40)), servers, true);
            leader1 = cfg.check_one_leader();
        }
        if crash {
            cfg.restart(victim);
            cfg.connect(victim);
            cfg.one(cmd(cfg.random(1 << 40)), servers, true);
            leader1 = cfg.check_one_leader();
        }
    }
    cfg.end();
}

/// Snapshots keep the log short with every server up. Reference: §7.
#[test]
fn snapshot_basic_3d() {
    snapshot_common("Test (3D): snapshots basic", Faults::default());
}

/// A disconnected follower is caught up by InstallSnapshot. Reference: §7.
#[test]
fn snapshot_install_3d() {
    snapshot_common(
        "Test (3D): install snapshots (disconnect)",
        Faults {
            disconnect: true,
            ..Faults::default()
        },
    );
}

/// InstallSnapshot on an unreliable network. Reference: §7.
#[test]
fn snapshot_install_unreliable_3d() {
    snapshot_common(
        "Test (3D): install snapshots (disconnect+unreliable)",
        Faults {
            disconnect: true,
            unreliable: true,
            ..Faults::default()
        },
    );
}

/// A crashed follower restarts from its snapshot and catches up. Reference: §7.
#[test]
fn snapshot_install_crash_3d() {
    snapshot_common(
        "Test (3D): install snapshots (crash)",
        Faults {
            crash: true,
            ..Faults::default()
        },
    );
}

/// Crash and restart on an unreliable network. Reference: §7.
#[test]
fn snapshot_install_uncrash_3d() {
    snapshot_common(
        "Test (3D): install snapshots (unreliable+crash)",
        Faults {
            crash: true,
            unreliable: true,
            ..Faults::default()
        },
    );
}

/// After every server crashes, indexes keep growing from the snapshots.
/// Reference: §7.
#[test]
fn snapshot_all_crash_3d() {
    let servers = 3;
    let cfg = Cluster::builder(servers).snapshots().start();
    cfg.begin("Test (3D): crash and restart all servers");
    cfg.one(cmd(cfg.random(1 << 40)), servers, true);
    for _ in 0..5 {
        // Perhaps enough to get a snapshot.
        let nn = SNAPSHOT_INTERVAL / 2 + cfg.random(SNAPSHOT_INTERVAL);
        for _ in 0..nn {
            cfg.one(cmd(cfg.random(1 << 40)), servers, true);
        }
        let index1 = cfg.one(cmd(cfg.random(1 << 40)), servers, true);
        // Crash all, then revive all.
        for i in 0..servers {
            cfg.crash(i);
        }
        for i in 0..servers {
            cfg.restart(i);
            cfg.connect(i);
        }
        let index2 = cfg.one(cmd(cfg.random(1 << 40)), servers, true);
        assert!(index2 > index1, "index decreased from {index1} to {index2}");
    }
    cfg.end();
}

/// A server restarted twice still knows its snapshot (it must reload it, not
/// just the log). Reference: §7.
#[test]
fn snapshot_init_3d() {
    let servers = 3;
    let cfg = Cluster::builder(servers).snapshots().start();
    cfg.begin("Test (3D): snapshot initialization after crash");
    cfg.one(cmd(cfg.random(1 << 40)), servers, true);
    // Enough ops to make a snapshot.
    for _ in 0..=SNAPSHOT_INTERVAL {
        cfg.one(cmd(cfg.random(1 << 40)), servers, true);
    }
    for i in 0..servers {
        cfg.crash(i);
    }
    for i in 0..servers {
        cfg.restart(i);
        cfg.connect(i);
    }
    // A single op, to get something written back to persistent storage.
    cfg.one(cmd(cfg.random(1 << 40)), servers, true);
    for i in 0..servers {
        cfg.crash(i);
    }
    for i in 0..servers {
        cfg.restart(i);
        cfg.connect(i);
    }
    // Another op, to trigger the potential bug.
    cfg.one(cmd(cfg.random(1 << 40)), servers, true);
    cfg.end();
}
