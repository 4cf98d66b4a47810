//! How the script runner prints what the core does: messages with Figure 2's
//! field names, entries, a `Ready`'s parts, and a server's state.
//!
//! Fields that hold their usual value are left out to keep lines short: a
//! RequestVote shows `pre_vote` and `leadership_transfer` only when set, an
//! AppendEntries shows `read_seq` only when it is not 0, a reply shows its
//! conflict hints only on a rejection. Everything else is printed.

use super::super::configuration::{member_list, Configuration};
use super::super::core::Raft;
use super::super::membership::ChangeStage;
use super::super::messages::{Entry, EntryKind, Index, NodeId, Request, RequestVoteArgs, Response};
use super::super::ready::{ApplyMsg, HardState, LogWrite, Snapshot, SnapshotChunk};

/// `2@1 "x"`: an entry's index, term and payload.
pub fn entry(index: Index, entry: &Entry) -> String {
    let payload = match entry.kind {
        EntryKind::Command => format!("{:?}", String::from_utf8_lossy(&entry.command)),
        EntryKind::Noop => "noop".to_string(),
        EntryKind::Config => match entry.as_configuration() {
            Some(c) => format!("config({})", configuration(&c)),
            None => "config(?)".to_string(),
        },
    };
    format!("{index}@{} {payload}", entry.term)
}

/// Entries starting at index `first`, as a bracketed list.
pub fn entries(first: Index, list: &[Entry]) -> String {
    let shown: Vec<String> = list
        .iter()
        .enumerate()
        .map(|(i, e)| entry(first + i as Index, e))
        .collect();
    format!("[{}]", shown.join(", "))
}

/// `voters=1,2,3 learners=4@h:4 retired=5`, leaving out empty parts.
pub fn configuration(c: &Configuration) -> String {
    let mut parts = vec![format!("voters={}", member_list(&c.voters))];
    if !c.learners.is_empty() {
        parts.push(format!("learners={}", member_list(&c.learners)));
    }
    if !c.retired.is_empty() {
        let retired: Vec<String> = c.retired.iter().map(|id| id.to_string()).collect();
        parts.push(format!("retired={}", retired.join(",")));
    }
    parts.join(" ")
}

fn vote_request(a: &RequestVoteArgs) -> String {
    let mut s = format!(
        "RequestVote term={} candidate_id={} last_log_index={} last_log_term={}",
        a.term, a.candidate_id, a.last_log_index, a.last_log_term
    );
    if a.pre_vote {
        s.push_str(" pre_vote");
    }
    if a.leadership_transfer {
        s.push_str(" leadership_transfer");
    }
    s
}

/// A request, with the paper's field names.
pub fn request(r: &Request) -> String {
    match r {
        Request::RequestVote(a) => vote_request(a),
        Request::AppendEntries(a) => {
            let mut s = format!(
                "AppendEntries term={} leader_id={} prev_log_index={} prev_log_term={} entries={} leader_commit={}",
                a.term,
                a.leader_id,
                a.prev_log_index,
                a.prev_log_term,
                entries(a.prev_log_index + 1, &a.entries),
                a.leader_commit
            );
            if a.read_seq != 0 {
                s.push_str(&format!(" read_seq={}", a.read_seq));
            }
            s
        }
        Request::InstallSnapshot(a) => format!(
            "InstallSnapshot term={} leader_id={} last_included_index={} last_included_term={} size={} offset={} data={}B done={} configuration=({})@{}",
            a.term,
            a.leader_id,
            a.last_included_index,
            a.last_included_term,
            a.size,
            a.offset,
            a.data.len(),
            a.done,
            configuration(&a.configuration),
            a.configuration_index
        ),
        Request::TimeoutNow(a) => format!("TimeoutNow term={} leader_id={}", a.term, a.leader_id),
    }
}

/// A reply, with the paper's field names.
pub fn response(r: &Response) -> String {
    match r {
        Response::RequestVote(r) => format!(
            "RequestVoteReply term={} vote_granted={}",
            r.term, r.vote_granted
        ),
        Response::AppendEntries(r) if r.success => {
            format!("AppendEntriesReply term={} success=true", r.term)
        }
        Response::AppendEntries(r) => format!(
            "AppendEntriesReply term={} success=false conflict_term={} conflict_index={}",
            r.term,
            r.conflict_term
                .map_or("none".to_string(), |t| t.to_string()),
            r.conflict_index
        ),
        Response::InstallSnapshot(r) => {
            format!("InstallSnapshotReply term={} stored={}", r.term, r.stored)
        }
        Response::TimeoutNow(r) => format!("TimeoutNowReply term={}", r.term),
    }
}

/// `5@2 size=10 configuration=(voters=1,2,3)@0`.
pub fn snapshot(s: &Snapshot) -> String {
    format!(
        "{}@{} size={} configuration=({})@{}",
        s.last_included_index,
        s.last_included_term,
        s.size,
        configuration(&s.configuration),
        s.configuration_index
    )
}

/// `current_term=5 voted_for=1`.
pub fn hard_state(h: &HardState) -> String {
    format!(
        "current_term={} voted_for={}",
        h.current_term,
        h.voted_for.map_or("none".to_string(), |v| v.to_string())
    )
}

/// A piece of a snapshot to store.
pub fn chunk(c: &SnapshotChunk) -> String {
    format!(
        "{}@{} offset={} data={}B done={}",
        c.snapshot.last_included_index,
        c.snapshot.last_included_term,
        c.offset,
        c.data.len(),
        c.done
    )
}

/// A log write: `from 3: [3@2 "x"]`, or a pure truncation.
pub fn log_write(w: &LogWrite) -> String {
    if w.entries.is_empty() {
        format!("truncate from {}", w.first_index)
    } else {
        format!(
            "from {}: {}",
            w.first_index,
            entries(w.first_index, &w.entries)
        )
    }
}

/// Something handed to the state machine.
pub fn apply(m: &ApplyMsg) -> String {
    match m {
        ApplyMsg::Command {
            index,
            term,
            command,
        } => format!("{index}@{term} {:?}", String::from_utf8_lossy(command)),
        ApplyMsg::Internal { index, term } => format!("{index}@{term} (internal)"),
        ApplyMsg::Snapshot(s) => format!("snapshot {}", snapshot(s)),
        ApplyMsg::Read { id, index } => format!("read id={id} index={index}"),
        ApplyMsg::ReadFailed { id } => format!("read-failed id={id}"),
    }
}

fn or_none<T: ToString>(value: Option<T>) -> String {
    value.map_or("none".to_string(), |v| v.to_string())
}

/// Everything a `status` command shows about one server.
pub fn status(raft: &Raft) -> Vec<String> {
    let s = raft.status();
    let mut lines = vec![
        format!(
            "role={} term={} voted_for={} leader={}",
            s.role,
            s.term,
            or_none(raft.voted_for),
            or_none(s.leader_id)
        ),
        format!(
            "commit_index={} last_applied={} persisted_index={}",
            s.commit_index, s.last_applied, raft.persisted_index
        ),
        format!(
            "log={}..={} snapshot={}@{}",
            raft.log.first_index(),
            s.last_log_index,
            s.snapshot_index,
            raft.log.snapshot_term()
        ),
        format!(
            "configuration=({})@{}",
            configuration(&s.configuration),
            s.configuration_index
        ),
        format!(
            "election_elapsed={} election_timeout={} heartbeat_elapsed={}",
            raft.election_elapsed, raft.election_timeout, raft.heartbeat_elapsed
        ),
    ];
    if let Some(target) = s.transferring_to {
        lines.push(format!("transferring_to={target}"));
    }
    if let Some(change) = &s.membership_change {
        lines.push(format!(
            "membership_change=({}: {})",
            change.change,
            stage(&change.stage)
        ));
    }
    if let Some(incoming) = &raft.incoming {
        lines.push(format!(
            "receiving snapshot {} stored={}",
            snapshot(&incoming.snapshot),
            incoming.stored
        ));
    }
    lines
}

/// A leader's view of one follower (Figure 2's `nextIndex`, `matchIndex`,
/// and flow control's state).
pub fn progress(raft: &Raft, peer: NodeId) -> Option<String> {
    let p = raft.progress.get(&peer)?;
    let mut s = format!(
        "{peer}: {:?} match_index={} next_index={} paused={} inflight={} recent_active={}",
        p.state,
        p.match_index,
        p.next_index,
        p.paused,
        p.inflight.len(),
        p.recent_active
    );
    if let Some(t) = &p.snapshot_transfer {
        s.push_str(&format!(
            " snapshot_transfer={}@{} offset={}",
            t.snapshot.last_included_index, t.snapshot.last_included_term, t.offset
        ));
    }
    Some(s)
}

/// A membership change's stage: `catching-up(round 1)`, `committing`, ...
pub fn stage(stage: &ChangeStage) -> String {
    match stage {
        ChangeStage::CatchingUp { round } => format!("catching-up round={round}"),
        ChangeStage::Committing => "committing".to_string(),
        ChangeStage::Done => "done".to_string(),
        ChangeStage::Aborted(reason) => format!("aborted {reason:?}"),
    }
}
