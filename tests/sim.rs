//! The deterministic simulator: fixed seeds hold every invariant, each bug
//! switch is caught, and a seed replays exactly.
//!
//! These run a few hundred schedules; `cargo run --release --example sim --
//! -seeds 10000` runs many more. A failure prints the seed's report: the
//! violation, the last events before it, and the command that replays it.

use raftkv::raft::Bug;
use raftkv::sim::runner::{Failure, Search};
use raftkv::sim::{run_schedule, FaultKind, Options, Outcome, TraceMode};

/// Seeds every `cargo test` runs (seeds 1..=FIXED_SEEDS).
const FIXED_SEEDS: u64 = 300;

fn fail_with_reports(failures: &[(u64, Outcome)], options: &Options) -> ! {
    let reports: Vec<String> = failures
        .iter()
        .take(3)
        .map(|(seed, _)| Failure::explain(*seed, options, 40).report())
        .collect();
    panic!(
        "{} of the fixed seeds failed:\n{}",
        failures.len(),
        reports.join("\n")
    );
}

#[test]
fn fixed_seeds_hold_every_invariant() {
    let options = Options::default();
    let search = Search {
        first: 1,
        count: FIXED_SEEDS,
        threads: 2,
        stop_at_first: false,
    };
    let summary = search.run(&options, &|_, _| {});
    println!("{}", summary.line());
    if !summary.failures.is_empty() {
        fail_with_reports(&summary.failures, &options);
    }
    assert_eq!(summary.schedules, FIXED_SEEDS);
    assert!(summary.ops > 0, "the clients did something");
}

/// What the simulator reports when the cluster merely stalled, crashed the
/// code, or disagreed with itself: not a broken safety property.
const NOT_SAFETY: [&str; 4] = ["liveness", "no_panic", "simulator_shadow", "step_budget"];

/// The options a search for `bug` runs with: a bug that has nothing to do
/// with membership changes is searched without them, on the schedules its
/// budget was measured on (seeds that draw membership changes schedule
/// everything else differently).
fn options_for(bug: Bug) -> Options {
    let mut options = Options {
        bug: Some(bug),
        ..Options::default()
    };
    if bug != Bug::Membership2015 {
        options.faults.retain(|&k| k != FaultKind::Membership);
    }
    if bug == Bug::Figure8 {
        // A new leader's no-op commits at once and carries the earlier
        // terms' entries with it, which hides Figure 8's bug: search
        // without it, as the paper's algorithm runs.
        options.noop_on_election = Some(false);
    }
    options
}

/// The first seed (counting from 1) at which the simulator catches `bug`
/// breaking a safety property, searching at most `budget` seeds, with the
/// invariant it reports. (A bug may stall a schedule first, which the
/// simulator reports as a liveness violation; the test wants the safety one.)
fn first_catch(bug: Bug, budget: u64) -> (u64, &'static str) {
    let options = options_for(bug);
    for seed in 1..=budget {
        if let Outcome::Fail { violation, .. } = run_schedule(seed, &options, TraceMode::Off, false)
        {
            if !NOT_SAFETY.contains(&violation.invariant) {
                return (seed, violation.invariant);
            }
        }
    }
    panic!(
        "the simulator did not catch {bug} ({}) in {budget} seeds",
        bug.rule()
    );
}

fn assert_caught(bug: Bug, budget: u64) {
    let (seed, invariant) = first_catch(bug, budget);
    println!("{bug}: caught at seed {seed} by {invariant}");
}

/// Reference: §5.4.2 and Figure 8.
#[test]
fn committing_an_earlier_terms_entry_by_counting_replicas_is_caught() {
    assert_caught(Bug::Figure8, 1000);
}

/// Reference: §5.4.1.
#[test]
fn voting_without_the_election_restriction_is_caught() {
    assert_caught(Bug::NoElectionRestriction, 50);
}

/// Reference: Figure 2, "Persistent state ... updated on stable storage before
/// responding to RPCs".
#[test]
fn replying_to_a_vote_before_persisting_it_is_caught() {
    assert_caught(Bug::UnpersistedVote, 1000);
}

/// Reference: Figure 2, AppendEntries receiver step 3.
#[test]
fn truncating_the_log_without_a_conflict_is_caught() {
    assert_caught(Bug::TruncateWithoutConflict, 50);
}

/// Reference: thesis §6.4 — a new leader must commit an entry of its own term
/// before it serves reads.
#[test]
fn serving_reads_before_committing_in_the_current_term_is_caught() {
    assert_caught(Bug::ReadIndexAnyTerm, 2000);
}

/// Reference: Figure 2, "respond to RPCs only after updating stable storage",
/// in the executor of a `Ready` that the runtime and the simulator share.
#[test]
fn releasing_replies_before_persisting_is_caught() {
    assert_caught(Bug::ReplyBeforePersist, 200);
}

/// Reference: Figure 2, "If RPC request or response contains term T >
/// currentTerm: set currentTerm = T", and currentTerm is "updated on stable
/// storage before responding to RPCs".
#[test]
fn answering_in_a_term_adopted_but_not_persisted_is_caught() {
    assert_caught(Bug::UnpersistedTerm, 50);
}

/// Reference: Figure 13, InstallSnapshot receiver step 6 ("retain log
/// entries following it").
#[test]
fn a_snapshot_discarding_acknowledged_entries_after_it_is_caught() {
    assert_caught(Bug::SnapshotDiscardsLog, 500);
}

/// Reference: Figure 2, "Persistent state ... updated on stable storage before
/// responding to RPCs", and fail-stop: a server whose disk failed in the
/// middle of a save must stop, not reply and apply as if the save were
/// durable.
#[test]
fn carrying_on_after_a_failed_save_is_caught() {
    assert_caught(Bug::IgnoreFailedSave, 100);
}

#[test]
fn a_seed_replays_exactly() {
    let options = Options::default();
    for seed in [7, 8] {
        let first = run_schedule(seed, &options, TraceMode::Ring(400), false);
        let again = run_schedule(seed, &options, TraceMode::Ring(400), false);
        assert_eq!(first, again, "seed {seed} ran differently twice");
    }
    // Tracing changes nothing: a traced run ends exactly as an untraced one.
    let traced = run_schedule(9, &options, TraceMode::Ring(10), false);
    let untraced = run_schedule(9, &options, TraceMode::Off, false);
    assert_eq!(traced, untraced);
}

#[test]
fn a_violation_report_shows_the_invariant_the_last_events_and_the_replay_command() {
    let options = options_for(Bug::NoElectionRestriction);
    let (seed, invariant) = first_catch(Bug::NoElectionRestriction, 50);
    let failure = Failure::explain(seed, &options, 40);
    let report = failure.report();
    assert!(report.contains(invariant), "{report}");
    assert_eq!(failure.last_events.len(), 40, "{report}");
    assert!(
        report.contains("-bug no-election-restriction -trace")
            && report.contains(&format!("-seed {seed} ")),
        "{report}"
    );
    assert_eq!(
        failure.outcome.violation().map(|v| v.invariant),
        Some(invariant)
    );
}

/// The simulated watchers follow their prefixes through crashes and
/// restarts: over a few schedules they check events, resume on another
/// server, and meet a compacted history (re-reading), and every seed holds
/// the watch property (`watchers_see_committed_changes`).
#[test]
fn watchers_resume_across_crashes_and_see_every_committed_change() {
    let options = Options::default();
    let (mut events, mut resumes, mut compactions) = (0, 0, 0);
    for seed in 1..=60 {
        let outcome = run_schedule(seed, &options, TraceMode::Off, false);
        if outcome.violation().is_some() {
            fail_with_reports(&[(seed, outcome)], &options);
        }
        let stats = outcome.stats();
        events += stats.watch_events;
        resumes += stats.watch_resumes;
        compactions += stats.watch_compactions;
    }
    println!("watch events {events}, resumes {resumes}, compactions {compactions}");
    assert!(events > 1000, "{events} watch events");
    assert!(resumes > 0, "no watcher resumed on another server");
    assert!(compactions > 0, "no watcher met a compacted history");
}
