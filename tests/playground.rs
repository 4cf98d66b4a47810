//! The playground in a real browser: headless Chromium drives the page that
//! `cargo run --example playground` serves (its modules are compiled in
//! here), over real server processes; and a simulator replay.
//!
//! Each test waits on what the page shows (its `data-*` attributes), with
//! deadlines; none sleeps in place of a condition.

#[allow(dead_code)]
mod common;

#[allow(dead_code)]
#[path = "../examples/playground/cluster.rs"]
mod cluster;
#[allow(dead_code)]
#[path = "../examples/playground/control.rs"]
mod control;
#[allow(dead_code)]
#[path = "../examples/playground/links.rs"]
mod links;
#[allow(dead_code)]
#[path = "../examples/playground/load.rs"]
mod load;

use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::chromium::Browser;
use raftkv::events::ring::{EventRing, Limits};
use raftkv::http::page::replay_page;
use raftkv::sim::tours;

/// One browser at a time: Chromium is heavy, and these tests wait on
/// timing (a new leader within 3 s) that a crowded machine would blur.
static ONE_BROWSER: Mutex<()> = Mutex::new(());

fn one_browser() -> std::sync::MutexGuard<'static, ()> {
    ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner())
}

/// A playground serving on loopback; its servers stop when it is dropped.
struct Playground {
    url: String,
    shared: Arc<control::Playground>,
    _dir: tempfile::TempDir,
}

impl Playground {
    fn start(nodes: usize) -> Playground {
        let dir = tempfile::tempdir().expect("temp dir");
        let ring = Arc::new(EventRing::new(0, Limits::default()));
        let bin = Path::new(env!("CARGO_BIN_EXE_raftkv"));
        let cluster = cluster::Cluster::start(bin, dir.path(), nodes, Arc::clone(&ring))
            .expect("the servers start");
        let listener = TcpListener::bind("127.0.0.1:0").expect("a port for the page");
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let shared = Arc::new(control::Playground {
            cluster: Mutex::new(cluster),
            ring,
            load: Mutex::new(None),
        });
        let serving = Arc::clone(&shared);
        thread::spawn(move || control::serve(listener, serving));
        Playground {
            url,
            shared,
            _dir: dir,
        }
    }
}

impl Drop for Playground {
    fn drop(&mut self) {
        let mut cluster = self
            .shared
            .cluster
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        cluster.stop_all();
    }
}

/// What the page shows: `ready leader roles`, e.g. `1 2 1=follower:2,2=leader:2,3=follower:2`
/// (each member's role and the leader it follows).
fn shown(browser: &mut Browser) -> String {
    browser.eval(
        "(() => { const s = document.getElementById('summary'); if (!s) return ''; \
         const roles = [...document.querySelectorAll('.member')] \
           .map(m => m.dataset.node + '=' + m.dataset.role + ':' + m.dataset.leader).join(','); \
         return document.body.dataset.ready + ' ' + s.dataset.leader + ' ' + roles; })()",
    )
}

fn wait_until(
    browser: &mut Browser,
    what: &str,
    limit: Duration,
    ok: &dyn Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let state = shown(browser);
        if ok(&state) {
            return state;
        }
        assert!(
            Instant::now() < deadline,
            "the page never showed {what}: {state:?}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

fn leader_of(state: &str) -> &str {
    state.split(' ').nth(1).unwrap_or("")
}

/// Member `id`'s `role:leader` as the page shows it.
fn member(state: &str, id: &str) -> String {
    let roles = state.split(' ').nth(2).unwrap_or("");
    roles
        .split(',')
        .find_map(|m| m.strip_prefix(&format!("{id}=")))
        .unwrap_or("")
        .to_string()
}

fn open_playground(chromium: &str, nodes: usize) -> (Playground, Browser, String) {
    let playground = Playground::start(nodes);
    let mut browser = Browser::launch(chromium);
    browser.open(&playground.url);
    let first = wait_until(&mut browser, "a leader", Duration::from_secs(20), &|s| {
        s.starts_with("1 ") && !matches!(leader_of(s), "" | "0")
    });
    let mode = browser
        .eval("document.body.dataset.mode + ' ' + document.getElementById('mode').textContent");
    assert_eq!(mode, "live playground");
    (playground, browser, first)
}

/// Clicks the playground's `action` button for server `id`.
fn click(browser: &mut Browser, id: &str, action: &str) {
    let found = browser.eval(&format!(
        "(() => {{ const b = document.querySelector('#node-controls div[data-node=\"{id}\"] button[data-action=\"{action}\"]'); \
         if (!b) return 'missing'; b.click(); return 'clicked'; }})()"
    ));
    assert_eq!(found, "clicked", "the {action} button of server {id}");
}

/// Clicking "kill" on the leader's controls: the page shows a new leader
/// within 3 s (an election timeout is 300–600 ms; the page polls twice a
/// second and moves to another member when one stops answering).
#[test]
fn killing_the_leader_from_the_page_shows_a_new_leader_within_3_seconds() {
    let Some(chromium) = common::tool("chromium") else {
        return;
    };
    let _one = one_browser();
    let (playground, mut browser, first) = open_playground(&chromium, 3);
    let old = leader_of(&first).to_string();
    let controls = wait_for_controls(&mut browser, &old);
    assert!(controls, "the controls list server {old}");
    click(&mut browser, &old, "kill");
    let killed = Instant::now();
    let after = wait_until(
        &mut browser,
        "a new leader",
        Duration::from_secs(10),
        &|s| !matches!(leader_of(s), "" | "0") && leader_of(s) != old,
    );
    let took = killed.elapsed();
    let new = leader_of(&after).to_string();
    assert!(member(&after, &new).starts_with("leader"), "{after}");
    assert!(
        took < Duration::from_secs(3),
        "the new leader showed after {took:?}"
    );
    eprintln!("the page showed server {new} leading {took:?} after server {old} was killed");
    // The kill is in the timeline, as the operator's event.
    let feed_deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let feed = browser.eval("document.getElementById('feed').textContent");
        if feed.contains(&format!("operator: crash node {old}")) {
            break;
        }
        assert!(
            Instant::now() < feed_deadline,
            "the kill is not in the feed: {feed}"
        );
        thread::sleep(Duration::from_millis(50));
    }
    drop(playground);
}

fn wait_for_controls(browser: &mut Browser, id: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    let query =
        format!("document.querySelector('#node-controls div[data-node=\"{id}\"]') ? 'yes' : 'no'");
    while Instant::now() < deadline {
        if browser.eval(&query) == "yes" {
            return true;
        }
        thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Partitioning the leader and one follower away from the other three (of
/// five): the minority shows no leader (the old leader steps down, thesis
/// §6.2; its follower forgets it), and the majority a new one.
#[test]
fn partitioning_the_leader_away_leaves_the_minority_leaderless_and_the_majority_a_new_leader() {
    let Some(chromium) = common::tool("chromium") else {
        return;
    };
    let _one = one_browser();
    let (playground, mut browser, first) = open_playground(&chromium, 5);
    let old: u64 = leader_of(&first).parse().expect("a leader id");
    let buddy = old % 5 + 1;
    let majority: Vec<String> = (1..=5)
        .filter(|&i| i != old && i != buddy)
        .map(|i| i.to_string())
        .collect();
    let groups = format!("{old},{buddy} | {}", majority.join(","));
    let typed = browser.eval(&format!(
        "(() => {{ document.getElementById('partition-groups').value = '{groups}'; \
         document.getElementById('do-partition').click(); return 'ok'; }})()"
    ));
    assert_eq!(typed, "ok");
    let (old, buddy) = (old.to_string(), buddy.to_string());
    let after = wait_until(
        &mut browser,
        "a leaderless minority and a new majority leader",
        Duration::from_secs(20),
        &|s| {
            let leader = leader_of(s);
            majority.iter().any(|m| m == leader)
                && member(s, leader).starts_with("leader")
                && member(s, &old).ends_with(':')
                && !member(s, &old).starts_with("leader")
                && member(s, &buddy).ends_with(':')
        },
    );
    eprintln!("after the partition: {after}");
    let cut = browser
        .eval("String(document.querySelectorAll('#cluster-main line[stroke=\"#dc2626\"]').length)");
    assert_eq!(cut, "6", "the page draws the six cut links");
    drop(playground);
}

/// A Figure 8 replay (the tour, with the bug on): "jump to the violation"
/// lands on the step the simulator reported, and shows its evidence.
#[test]
fn jumping_to_the_violation_of_a_figure8_replay_lands_on_the_step_the_simulator_reported() {
    let Some(chromium) = common::tool("chromium") else {
        return;
    };
    let _one = one_browser();
    let tour = tours::find("figure8").expect("the figure8 tour");
    let run = tour.run(false);
    let (reported, _) = run
        .events
        .iter()
        .find(|(_, e)| e.what.name() == "violation")
        .expect("the bug's run breaks a safety property");
    let counterpart = tour.run(true).to_json_lines();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("figure8.html");
    std::fs::write(&file, replay_page(&run.to_json_lines(), Some(&counterpart))).expect("write");
    let mut browser = Browser::launch(&chromium);
    browser.open(&format!("file://{}", file.display()));
    let deadline = Instant::now() + Duration::from_secs(20);
    while browser.eval("document.body.dataset.ready") != "1" {
        assert!(Instant::now() < deadline, "the replay never loaded");
        thread::sleep(Duration::from_millis(50));
    }
    let state = |b: &mut Browser, key: &str| {
        b.eval(&format!(
            "document.getElementById('replay-state').dataset.{key}"
        ))
    };
    assert_eq!(state(&mut browser, "violation"), reported.to_string());
    assert_ne!(
        state(&mut browser, "step"),
        reported.to_string(),
        "the replay opens before the violation"
    );
    browser.eval("(document.getElementById('jump-violation').click(), '')");
    assert_eq!(state(&mut browser, "step"), reported.to_string());
    assert_eq!(state(&mut browser, "atViolation"), "1");
    let caption = browser.eval("document.getElementById('caption').className + ': ' + document.getElementById('caption').textContent");
    assert!(
        caption.starts_with("violation: VIOLATION at step")
            && caption.contains("leader_completeness"),
        "{caption}"
    );
    let evidence =
        browser.eval("String(document.querySelectorAll('#logs-main .cell.evidence').length)");
    assert_ne!(evidence, "0", "the committed entry is highlighted");
    // One step back and forward again: the same step, by replaying from a checkpoint.
    browser.eval("(document.getElementById('step-back').click(), '')");
    assert_ne!(state(&mut browser, "step"), reported.to_string());
    browser.eval("(document.getElementById('step-forward').click(), '')");
    assert_eq!(state(&mut browser, "step"), reported.to_string());
    // Beside it, the same script without the bug, at the same step.
    let counter =
        browser.eval("document.getElementById('counter-panel').hidden ? 'hidden' : 'shown'");
    assert_eq!(counter, "shown");
}
