//! Every guided tour runs against the simulator, and every event and caption
//! it promises happens: the stories the page tells are regression tests.
//!
//! A tour with a bug switched on runs twice, as the page shows it: with the
//! bug (it must reach the violation it narrates) and without it (it must
//! not), diverging where the rule matters.

use raftkv::sim::tours::{Stop, TOURS};

#[test]
fn every_tour_shows_the_events_it_promises() {
    for tour in TOURS {
        let run = tour.run(false);
        if let Err(stop) = &run.result {
            panic!(
                "tour {} stopped at step {}: {stop}",
                tour.name,
                run.steps.len()
            );
        }
        assert!(run.steps.len() >= 2, "tour {} has steps", tour.name);
        let lines = run.to_json_lines();
        assert!(lines.contains("\"kind\":\"narration\""));
        let violated = lines.contains("\"kind\":\"violation\"");
        assert_eq!(violated, tour.bug.is_some(), "tour {}", tour.name);
        println!(
            "{}: {} steps, {} events",
            tour.name,
            run.steps.len(),
            run.events.len()
        );
    }
}

/// Reference: §5.4.2 and Figure 8 — the same script without the bug never
/// commits the old term's entry, and overwriting it is safe.
#[test]
fn a_tour_with_a_bug_runs_clean_without_it_and_diverges_where_the_rule_matters() {
    for tour in TOURS.iter().filter(|t| t.bug.is_some()) {
        let with = tour.run(false);
        let without = tour.run(true);
        assert!(
            !matches!(without.result, Err(Stop::Violation(_))),
            "tour {} without the bug: {:?}",
            tour.name,
            without.result
        );
        assert!(without.result.is_ok(), "{:?}", without.result);
        let same = with
            .events
            .iter()
            .zip(&without.events)
            .take_while(|(a, b)| a == b)
            .count();
        assert!(
            same > 0 && same < with.events.len(),
            "the runs diverge, after a common start"
        );
        let diverging = &with.events[same].1;
        println!(
            "{}: the runs diverge at event {same}: {diverging:?}",
            tour.name
        );
    }
}
