//! One test per script in `src/raft/testdata/`, and the proof that a script
//! fails when the behaviour it records changes.

use std::path::PathBuf;

use super::{diff, run_script};
use crate::raft::Bug;

fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("src/raft/testdata")
        .join(format!("{name}.txt"))
}

fn read(name: &str) -> String {
    std::fs::read_to_string(path(name)).unwrap_or_else(|e| panic!("{name}.txt: {e}"))
}

/// Runs `name.txt`; with `RAFTKV_REWRITE=1`, writes the actual output into it.
fn check(name: &str) {
    let text = read(name);
    let outcome = run_script(&text, None).unwrap_or_else(|e| panic!("{name}.txt: {e}"));
    if std::env::var("RAFTKV_REWRITE").is_ok_and(|v| v == "1") {
        if outcome.rewritten != text {
            std::fs::write(path(name), &outcome.rewritten)
                .unwrap_or_else(|e| panic!("{name}.txt: {e}"));
        }
        return;
    }
    assert!(
        outcome.mismatches.is_empty(),
        "src/raft/testdata/{name}.txt: {}\n\
         (if the change is intended: RAFTKV_REWRITE=1 cargo test --lib script, then review git diff)",
        outcome.mismatches
    );
    assert!(
        outcome.rewritten == text,
        "{name}.txt is not in the runner's layout (one blank line between blocks, \
         a newline at the end): RAFTKV_REWRITE=1 rewrites it"
    );
}

macro_rules! scripts {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                check(stringify!($name));
            }
        )*
        /// Every script a test runs.
        const SCRIPTS: &[&str] = &[$(stringify!($name)),*];
    };
}

scripts! {
    backtracking,
    check_quorum,
    check_quorum_majority,
    conflicting_entries,
    consistency_check,
    election,
    election_timeout,
    fail_stop,
    figure8,
    flow_lost_log,
    flow_probe,
    flow_read_rounds,
    flow_reordered,
    flow_stalled_window,
    flow_window,
    follower_commit,
    leader_writes_in_parallel,
    membership_add_server,
    membership_config_truncated,
    membership_config_truncated_bootstrap,
    membership_ids_never_reused,
    membership_last_voter,
    membership_learner_never_counts,
    membership_non_voters,
    membership_own_term,
    membership_refusals,
    membership_remove_leader,
    membership_remove_leader_of_two,
    membership_removed_server_flow_control,
    membership_removed_server_learns,
    membership_snapshot_config,
    membership_unreachable_learner,
    noop_on_election,
    prevote,
    prevote_forgets_leader,
    prevote_learns_term,
    read_index,
    read_index_new_leader,
    read_index_single_server,
    read_index_step_down,
    single_server,
    snapshot_heartbeat_during_transfer,
    snapshot_install,
    snapshot_pieces_follower,
    snapshot_pieces_leader,
    snapshot_pieces_resume,
    snapshot_restart,
    snapshot_send,
    split_vote,
    stickiness,
    stuck_candidate,
    term_rule,
    transfer,
    transfer_abort,
    vote_once_per_term,
    vote_restriction,
}

/// A script added to `testdata/` but not to the list above would never run.
#[test]
fn every_script_in_testdata_has_a_test() {
    let dir = path("x").with_file_name("");
    let mut found: Vec<String> = std::fs::read_dir(&dir)
        .expect("testdata")
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter_map(|name| name.strip_suffix(".txt").map(String::from))
        .collect();
    found.sort();
    let mut listed: Vec<String> = SCRIPTS.iter().map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(found, listed);
}

/// Runs `name.txt` with `bug` switched on in every server and returns the
/// mismatch report, which must not be empty.
fn broken_by(name: &str, bug: Bug) -> String {
    let outcome = run_script(&read(name), Some(bug)).expect("the script runs");
    assert!(
        !outcome.mismatches.is_empty(),
        "{name}.txt printed the same with {bug} switched on ({})",
        bug.rule()
    );
    outcome.mismatches
}

#[test]
fn the_diff_marks_lines_removed_and_added() {
    let lines = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
    assert_eq!(
        diff(&lines("a b c d"), &lines("a x c d e")),
        "  a\n- b\n+ x\n  c\n  d\n+ e"
    );
}

/// A script fails when the behaviour it records changes: each bug switch
/// (one rule of the paper broken, see `Bug`) changes the output of the
/// script of that rule, and the runner reports the line that shows it.
#[test]
fn every_bug_switch_changes_the_script_of_its_rule() {
    let cases = [
        (
            Bug::NoElectionRestriction,
            "vote_restriction",
            "+ 1->2 RequestVoteReply term=3 vote_granted=true",
        ),
        (
            Bug::UnpersistedVote,
            "vote_once_per_term",
            "+ persist hard_state current_term=1 voted_for=none",
        ),
        (
            Bug::TruncateWithoutConflict,
            "conflicting_entries",
            "+ persist log from 2: [2@1 \"x\"]",
        ),
        (Bug::Figure8, "figure8", "+   1: commit_index=1"),
        (
            Bug::ReadIndexAnyTerm,
            "read_index_new_leader",
            "+ 1->2 AppendEntries term=3 leader_id=1 prev_log_index=0 prev_log_term=0 \
             entries=[] leader_commit=0 read_seq=1",
        ),
        (Bug::Membership2015, "membership_own_term", "+ change=1"),
        (
            Bug::UnpersistedTerm,
            "term_rule",
            "-   persist hard_state current_term=7 voted_for=none",
        ),
        (
            Bug::SnapshotDiscardsLog,
            "snapshot_install",
            "+ persist log truncate from 3",
        ),
        (
            Bug::ReplyBeforePersist,
            "vote_once_per_term",
            "  1->3 RequestVoteReply term=1 vote_granted=false\n\
             + persist hard_state current_term=1 voted_for=2",
        ),
        (
            Bug::IgnoreFailedSave,
            "fail_stop",
            "  persist failed: EIO (nothing reached the disk)\n\
             - fail-stop: storage failed (EIO: input/output error)\n\
             + 1->2 AppendEntriesReply term=1 success=true (dropped: no server 2)",
        ),
    ];
    assert_eq!(cases.len(), Bug::ALL.len(), "a case per bug switch");
    for (bug, script, shows) in cases {
        let report = broken_by(script, bug);
        assert!(
            report.contains(shows),
            "{script}.txt with {bug}: expected the diff to show {shows:?}:\n{report}"
        );
    }
}
