//! One sentence per event that names the rule it follows: the page's captions.
//!
//! `node 3 refused its vote to node 1: its own log is more up to date
//! (last entry 9 of term 5) (§5.4.1)`. Captions are made from one event
//! alone, at read time, by the same code for the live runtime and the
//! simulator, so a guided tour's test can check the very sentences the page
//! shows. Routine events (heartbeats, applies, most persists) have none, so
//! the caption line keeps the last thing worth saying.

use super::{Action, Actor, Event, Rpc, What};
use crate::raft::{Role, Verdict};

/// The caption for `event`, if it deserves one.
pub fn caption(event: &Event) -> Option<String> {
    let n = event.node;
    let term = event.term;
    Some(match &event.what {
        What::Role {
            role,
            previous,
            previous_term,
            leader,
        } => match (role, previous) {
            (Role::PreCandidate, _) => format!(
                "node {n} heard from no leader for an election timeout: it asks for pre-votes for term {} before raising its own (thesis §9.6)",
                term + 1
            ),
            (Role::Candidate, _) => format!(
                "node {n} became a candidate for term {term}: it votes for itself and asks the others for votes (§5.2)"
            ),
            (Role::Leader, _) => format!(
                "node {n} won votes from a majority and leads term {term} (§5.2)"
            ),
            (Role::Follower, Role::Leader) if term > *previous_term => format!(
                "node {n} stepped down: it saw the newer term {term}{} (§5.1)",
                follows(*leader)
            ),
            (Role::Follower, Role::Leader) => format!(
                "node {n} stepped down: it has not heard from a majority for an election timeout (check-quorum, thesis §6.2)"
            ),
            (Role::Follower, Role::Follower) => match leader {
                Some(l) => format!("node {n} follows node {l}, the leader of term {term} (§5.2)"),
                None => return None,
            },
            (Role::Follower, _) => format!(
                "node {n} gave up its candidacy: it is a follower in term {term}{} (§5.2)",
                follows(*leader)
            ),
        },
        What::Reply {
            to, rpc, verdict, ..
        } => return reply_caption(n, term, *to, rpc, verdict),
        What::Send {
            to,
            rpc: Rpc::TimeoutNow,
            ..
        } => format!(
            "node {n} hands leadership to node {to}, whose log is up to date: TimeoutNow makes it start an election at once (thesis §3.10)"
        ),
        What::Send {
            to,
            rpc:
                Rpc::InstallSnapshot {
                    last_included_index,
                    offset: 0,
                    ..
                },
            ..
        } => format!(
            "node {n} sends node {to} its snapshot through {last_included_index}: the entries node {to} needs were discarded (§7)"
        ),
        What::Vote { .. } => return None,
        What::Commit {
            index,
            entry_term,
            leader: true,
        } => match entry_term {
            Some(t) if *t != term => format!(
                "node {n} committed through {index} by counting replicas, though entry {index} is from term {t}, not the current term {term}: §5.4.2 forbids this (Figure 8)"
            ),
            _ => format!(
                "node {n} committed through {index}: a majority stores the entry, which is from the current term (§5.4.2)"
            ),
        },
        What::Commit { index, .. } => format!(
            "node {n} learned from the leader that entries through {index} are committed (§5.3)"
        ),
        What::SnapshotTaken(s) => format!(
            "node {n} took a snapshot through {} and discarded the log up to it (§7)",
            s.index
        ),
        What::SnapshotInstalled(s) => format!(
            "node {n} installed the leader's snapshot through {} in place of its log (§7)",
            s.index
        ),
        What::Configuration {
            index,
            voters,
            learners,
        } => {
            let mut members = format!("voters {}", ids(voters));
            if !learners.is_empty() {
                members.push_str(&format!(", learners {}", ids(learners)));
            }
            match index {
                0 => format!("node {n} starts with the bootstrap configuration: {members}"),
                i => format!(
                    "node {n} uses the configuration at entry {i}: {members}; it takes effect once in the log (thesis §4.1)"
                ),
            }
        }
        What::Persist(p) => match (&p.log, p.hard_state) {
            (Some(w), _) if w.last < w.first => format!(
                "node {n} deleted its entries from {} on from disk (§5.3)",
                w.first
            ),
            _ => return None,
        },
        What::Intervention(f) => {
            let who = match f.by {
                Actor::Simulator => "fault",
                Actor::Operator => "operator",
            };
            let what = match f.action {
                Action::Crash => format!("crash {}", nodes_named(&f.nodes)),
                Action::Restart => format!("restart {}", nodes_named(&f.nodes)),
                Action::Pause => format!("pause {}", nodes_named(&f.nodes)),
                Action::Resume => format!("resume {}", nodes_named(&f.nodes)),
                Action::FastClock => format!("{}'s clock runs fast", nodes_named(&f.nodes)),
                Action::Partition => {
                    format!("partition {} | {}", ids(&f.nodes), ids(&f.others))
                }
                Action::OneWay => format!(
                    "one-way partition: {} cannot reach {}",
                    ids(&f.nodes),
                    ids(&f.others)
                ),
                Action::Bridge => format!(
                    "bridge: {} | {}, with node {} talking to both",
                    ids(&f.nodes),
                    ids(&f.others),
                    f.bridge.unwrap_or(0)
                ),
                Action::Heal => "heal: every link works again".to_string(),
                Action::Transfer => format!(
                    "ask the leader to hand leadership to {}",
                    nodes_named(&f.others)
                ),
                Action::Add => format!("ask the leader to add {}", nodes_named(&f.others)),
                Action::Remove => format!("ask the leader to remove {}", nodes_named(&f.others)),
                Action::LoadStart => format!("start a load of {} clients", f.others.len()),
                Action::LoadStop => "stop the load".to_string(),
                Action::EndFaults => {
                    "faults end: every server restarts and every link heals".to_string()
                }
            };
            format!("{who}: {what}")
        }
        What::Lost { from, to, why, .. } => format!(
            "a message from node {from} to node {to} was lost ({})",
            why.name()
        ),
        What::Violation {
            invariant, rule, ..
        } => format!("VIOLATION of {invariant}: {rule}"),
        What::Narration { text } => text.to_string(),
        What::Send { .. }
        | What::Receive { .. }
        | What::ReplyReceived { .. }
        | What::Timer { .. }
        | What::Apply { .. }
        | What::ClientRequest { .. }
        | What::ClientReply { .. }
        | What::Duplicated { .. } => return None,
    })
}

/// The caption of a reply: what the rule decided, and which rule.
fn reply_caption(n: u64, term: u64, to: u64, rpc: &Rpc, verdict: &Verdict) -> Option<String> {
    let rpc_name = rpc.name();
    let pre = matches!(rpc, Rpc::RequestVote { pre_vote: true, .. });
    let vote = if pre { "pre-vote" } else { "vote" };
    Some(match *verdict {
        Verdict::Unknown => return None,
        Verdict::StaleTerm { current_term } => format!(
            "node {n} refused node {to}'s {rpc_name}: it comes from an older term than {current_term} (§5.1)"
        ),
        Verdict::VoteGranted if pre => format!(
            "node {n} would vote for node {to} in term {}: its log is at least as up to date (thesis §9.6)",
            term + 1
        ),
        Verdict::VoteGranted => format!(
            "node {n} voted for node {to} in term {term}: its first vote this term, and node {to}'s log is at least as up to date (§5.2, §5.4.1)"
        ),
        Verdict::AlreadyVoted { candidate } => format!(
            "node {n} refused its vote to node {to}: it already voted for node {candidate} in term {term} (§5.2)"
        ),
        Verdict::LogMoreUpToDate {
            last_log_index,
            last_log_term,
        } => format!(
            "node {n} refused its {vote} to node {to}: its own log is more up to date (last entry {last_log_index} of term {last_log_term}) (§5.4.1)"
        ),
        Verdict::LeaderAlive { leader } => format!(
            "node {n} ignored node {to}'s {vote} request: it hears from a live leader{} (thesis §4.2.3)",
            leader.map_or(String::new(), |l| format!(", node {l}"))
        ),
        Verdict::PreVoteTermNotNewer => format!(
            "node {n} refused node {to}'s pre-vote: the term asked for is not newer than its own (thesis §9.6)"
        ),
        Verdict::Appended {
            truncated_from: Some(from),
        } => format!(
            "node {n} deleted its entries from {from} on, which conflict with the leader's, and appended node {to}'s (§5.3)"
        ),
        Verdict::Appended { .. } => match rpc {
            Rpc::AppendEntries {
                prev_log_index,
                entries: entries @ 1..,
                ..
            } => format!(
                "node {n} appended entries {}..={} from node {to}: its log matches at {prev_log_index} (§5.3)",
                prev_log_index + 1,
                prev_log_index + u64::from(*entries)
            ),
            _ => return None,
        },
        Verdict::MissingEntry { last_log_index } => {
            let at = match rpc {
                Rpc::AppendEntries { prev_log_index, .. } => *prev_log_index,
                _ => 0,
            };
            format!(
                "node {n} rejected node {to}'s AppendEntries: its log ends at {last_log_index}, with no entry at {at} to match (§5.3)"
            )
        }
        Verdict::TermMismatch { index, term: ours } => {
            let theirs = match rpc {
                Rpc::AppendEntries { prev_log_term, .. } => *prev_log_term,
                _ => 0,
            };
            format!(
                "node {n} rejected node {to}'s AppendEntries: its entry {index} has term {ours}, not {theirs} (§5.3)"
            )
        }
        Verdict::SnapshotStored {
            installed: true, ..
        } => format!("node {n} has the whole snapshot from node {to} (§7)"),
        Verdict::SnapshotStored { .. } => return None,
        Verdict::SnapshotNotNeeded => format!(
            "node {n} needs no snapshot from node {to}: it has committed everything the snapshot holds (§7)"
        ),
        Verdict::SnapshotOutOfOrder { stored } => format!(
            "node {n} asks node {to} to resume the snapshot at byte {stored} (§7)"
        ),
        Verdict::Campaigning => format!(
            "node {n} starts an election at once, as leader {to} asked (thesis §3.10)"
        ),
        Verdict::TimeoutNowIgnored => return None,
    })
}

fn follows(leader: Option<u64>) -> String {
    leader.map_or(String::new(), |l| format!(", following node {l}"))
}

fn ids(ids: &[u64]) -> String {
    let list: Vec<String> = ids.iter().map(u64::to_string).collect();
    format!("{{{}}}", list.join(","))
}

fn nodes_named(ids: &[u64]) -> String {
    match ids {
        [one] => format!("node {one}"),
        many => format!("nodes {}", self::ids(many)),
    }
}
