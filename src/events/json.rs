//! The one JSON encoding of an [`Event`]: a flat object per event, one per line.
//!
//! ```text
//! {"seq":41,"t":1520300,"node":3,"term":5,"kind":"reply","to":1,"msg":77,"rpc":"RequestVote",
//!  "last_log_index":7,"last_log_term":4,"granted":false,"why":"log_more_up_to_date",
//!  "our_last_log_index":9,"our_last_log_term":5,
//!  "caption":"node 3 refused its vote to node 1: its own log is more up to date (§5.4.1)"}
//! ```
//!
//! `t` is microseconds (virtual in the simulator; live, since the process
//! started). Every event has `seq`, `t`, `node`, `term`, `kind`; the other
//! members depend on the kind and are listed in NOTES.md ("Events and
//! replays"). A request's fields are Figure 2's names; `msg` pairs a send with
//! its receive, reply and loss (0 when unknown). The simulator adds `step`,
//! the number of the schedule step the event happened in. Text is escaped as
//! RFC 8259 requires, so a line never breaks inside an event.

use std::fmt::Write;

use super::caption::caption;
use super::{Answer, Event, Intervention, Persisted, Rpc, What};
use crate::raft::{Role, Verdict};

/// A JSON object being written into a string.
pub struct Object<'a> {
    out: &'a mut String,
    empty: bool,
}

impl<'a> Object<'a> {
    /// Opens an object at the end of `out`.
    pub fn new(out: &'a mut String) -> Self {
        out.push('{');
        Object { out, empty: true }
    }

    fn key(&mut self, key: &str) {
        if !self.empty {
            self.out.push(',');
        }
        self.empty = false;
        self.out.push('"');
        self.out.push_str(key);
        self.out.push_str("\":");
    }

    /// A number member.
    pub fn num(&mut self, key: &str, value: u64) -> &mut Self {
        self.key(key);
        let _ = write!(self.out, "{value}");
        self
    }

    /// A number member, or nothing for `None`.
    pub fn opt(&mut self, key: &str, value: Option<u64>) -> &mut Self {
        if let Some(v) = value {
            self.num(key, v);
        }
        self
    }

    /// A boolean member.
    pub fn flag(&mut self, key: &str, value: bool) -> &mut Self {
        self.key(key);
        self.out.push_str(if value { "true" } else { "false" });
        self
    }

    /// A string member.
    pub fn text(&mut self, key: &str, value: &str) -> &mut Self {
        self.key(key);
        escape_into(self.out, value);
        self
    }

    /// An array of numbers.
    pub fn nums(&mut self, key: &str, values: &[u64]) -> &mut Self {
        self.key(key);
        self.out.push('[');
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            let _ = write!(self.out, "{v}");
        }
        self.out.push(']');
        self
    }

    /// An array of number pairs.
    pub fn pairs(&mut self, key: &str, values: &[(u64, u64)]) -> &mut Self {
        self.key(key);
        self.out.push('[');
        for (i, (a, b)) in values.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            let _ = write!(self.out, "[{a},{b}]");
        }
        self.out.push(']');
        self
    }

    /// A member whose value is JSON already.
    pub fn raw(&mut self, key: &str, json: &str) -> &mut Self {
        self.key(key);
        self.out.push_str(json);
        self
    }

    /// Closes the object.
    pub fn close(&mut self) {
        self.out.push('}');
    }
}

/// Writes `s` as a JSON string (RFC 8259 §7): quotes, backslashes and
/// control characters escaped; `</` written `<\/` so the text can sit inside
/// an HTML `<script>` element.
pub fn escape_into(out: &mut String, s: &str) {
    out.push('"');
    let mut previous = '\0';
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '/' if previous == '<' => out.push_str("\\/"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
        previous = c;
    }
    out.push('"');
}

/// A role's name, as `Display` writes it.
fn role_name(role: Role) -> &'static str {
    match role {
        Role::Follower => "follower",
        Role::PreCandidate => "pre-candidate",
        Role::Candidate => "candidate",
        Role::Leader => "leader",
    }
}

/// Appends `event` as one JSON object (no newline), with `step` if given.
pub fn write_event(out: &mut String, event: &Event, step: Option<u64>) {
    let mut o = Object::new(out);
    o.num("seq", event.seq)
        .num("t", event.time)
        .num("node", event.node)
        .num("term", event.term)
        .opt("step", step)
        .text("kind", event.what.name());
    match &event.what {
        What::Send { to, msg, rpc } => {
            o.num("to", *to).num("msg", *msg);
            rpc_fields(&mut o, rpc);
        }
        What::Receive { from, msg, rpc } => {
            o.num("from", *from).num("msg", *msg);
            rpc_fields(&mut o, rpc);
        }
        What::Reply {
            to,
            msg,
            rpc,
            answer,
            verdict,
        } => {
            o.num("to", *to).num("msg", *msg);
            rpc_fields(&mut o, rpc);
            answer_fields(&mut o, answer);
            verdict_fields(&mut o, verdict);
        }
        What::ReplyReceived {
            from,
            msg,
            rpc,
            answer,
        } => {
            o.num("from", *from).num("msg", *msg);
            rpc_fields(&mut o, rpc);
            answer_fields(&mut o, answer);
        }
        What::Role {
            role,
            previous,
            previous_term,
            leader,
        } => {
            o.text("role", role_name(*role))
                .text("previous", role_name(*previous))
                .num("previous_term", *previous_term)
                .opt("leader", *leader);
        }
        What::Vote { candidate } => {
            o.num("candidate", *candidate);
        }
        What::Timer { timeout } => {
            o.num("timeout", *timeout);
        }
        What::Persist(p) => persist_fields(&mut o, p),
        What::Commit {
            index,
            entry_term,
            leader,
        } => {
            o.num("index", *index)
                .opt("entry_term", *entry_term)
                .flag("leader", *leader);
        }
        What::Apply { index } => {
            o.num("index", *index);
        }
        What::SnapshotTaken(s) | What::SnapshotInstalled(s) => {
            o.num("index", s.index)
                .num("snapshot_term", s.term)
                .num("bytes", s.bytes);
        }
        What::Configuration {
            index,
            voters,
            learners,
        } => {
            o.num("index", *index)
                .nums("voters", voters)
                .nums("learners", learners);
        }
        What::ClientRequest {
            client,
            request,
            op,
            text,
        } => {
            o.num("client", *client)
                .num("request", *request)
                .text("op", op);
            if let Some(text) = text {
                o.text("text", text);
            }
        }
        What::ClientReply {
            client,
            request,
            result,
            index,
            text,
        } => {
            o.num("client", *client)
                .num("request", *request)
                .text("result", result)
                .opt("index", *index);
            if let Some(text) = text {
                o.text("text", text);
            }
        }
        What::Intervention(f) => intervention_fields(&mut o, f),
        What::Lost { from, to, msg, why } => {
            o.num("from", *from)
                .num("to", *to)
                .num("msg", *msg)
                .text("why", why.name());
        }
        What::Duplicated { from, to, msg } => {
            o.num("from", *from).num("to", *to).num("msg", *msg);
        }
        What::Violation {
            invariant,
            rule,
            evidence,
            nodes,
        } => {
            o.text("invariant", invariant)
                .text("rule", rule)
                .text("evidence", evidence)
                .nums("nodes", nodes);
        }
        What::Narration { text } => {
            o.text("text", text);
        }
    }
    if let Some(caption) = caption(event) {
        o.text("caption", &caption);
    }
    o.close();
}

fn rpc_fields(o: &mut Object<'_>, rpc: &Rpc) {
    o.text("rpc", rpc.name());
    match *rpc {
        Rpc::RequestVote {
            last_log_index,
            last_log_term,
            leadership_transfer,
            ..
        } => {
            o.num("last_log_index", last_log_index)
                .num("last_log_term", last_log_term);
            if leadership_transfer {
                o.flag("leadership_transfer", true);
            }
        }
        Rpc::AppendEntries {
            prev_log_index,
            prev_log_term,
            entries,
            last_entry_term,
            leader_commit,
            bytes,
        } => {
            o.num("prev_log_index", prev_log_index)
                .num("prev_log_term", prev_log_term)
                .num("entries", u64::from(entries))
                .num("leader_commit", leader_commit);
            if entries > 0 {
                o.num("last_entry_term", last_entry_term)
                    .num("bytes", u64::from(bytes));
            }
        }
        Rpc::InstallSnapshot {
            last_included_index,
            last_included_term,
            offset,
            len,
            size,
            done,
        } => {
            o.num("last_included_index", last_included_index)
                .num("last_included_term", last_included_term)
                .num("offset", offset)
                .num("len", len)
                .num("size", size)
                .flag("done", done);
        }
        Rpc::TimeoutNow => {}
    }
}

fn answer_fields(o: &mut Object<'_>, answer: &Answer) {
    match *answer {
        Answer::RequestVote { granted } => {
            o.flag("granted", granted);
        }
        Answer::AppendEntries {
            success,
            conflict_index,
            conflict_term,
        } => {
            o.flag("success", success);
            if !success {
                o.num("conflict_index", conflict_index)
                    .opt("conflict_term", conflict_term);
            }
        }
        Answer::InstallSnapshot { stored } => {
            o.num("stored", stored);
        }
        Answer::TimeoutNow => {}
    }
}

/// The verdict's name, and the facts it carries.
fn verdict_fields(o: &mut Object<'_>, verdict: &Verdict) {
    match *verdict {
        Verdict::Unknown => {}
        Verdict::StaleTerm { current_term } => {
            o.text("why", "stale_term")
                .num("current_term", current_term);
        }
        Verdict::VoteGranted => {
            o.text("why", "vote_granted");
        }
        Verdict::AlreadyVoted { candidate } => {
            o.text("why", "already_voted").num("voted_for", candidate);
        }
        Verdict::LogMoreUpToDate {
            last_log_index,
            last_log_term,
        } => {
            o.text("why", "log_more_up_to_date")
                .num("our_last_log_index", last_log_index)
                .num("our_last_log_term", last_log_term);
        }
        Verdict::LeaderAlive { leader } => {
            o.text("why", "leader_alive").opt("leader", leader);
        }
        Verdict::PreVoteTermNotNewer => {
            o.text("why", "pre_vote_term_not_newer");
        }
        Verdict::Appended { truncated_from } => {
            o.text("why", "appended")
                .opt("truncated_from", truncated_from);
        }
        Verdict::MissingEntry { last_log_index } => {
            o.text("why", "missing_entry")
                .num("our_last_log_index", last_log_index);
        }
        Verdict::TermMismatch { index, term } => {
            o.text("why", "term_mismatch")
                .num("our_index", index)
                .num("our_term", term);
        }
        Verdict::SnapshotStored { stored, installed } => {
            o.text("why", "snapshot_stored")
                .num("held", stored)
                .flag("installed", installed);
        }
        Verdict::SnapshotNotNeeded => {
            o.text("why", "snapshot_not_needed");
        }
        Verdict::SnapshotOutOfOrder { stored } => {
            o.text("why", "snapshot_out_of_order").num("held", stored);
        }
        Verdict::Campaigning => {
            o.text("why", "campaigning");
        }
        Verdict::TimeoutNowIgnored => {
            o.text("why", "timeout_now_ignored");
        }
    }
}

fn persist_fields(o: &mut Object<'_>, p: &Persisted) {
    if let Some(hs) = p.hard_state {
        o.num("saved_term", hs.current_term)
            .opt("saved_vote", hs.voted_for);
    }
    if let Some(w) = &p.log {
        o.num("log_first", w.first).num("log_last", w.last);
        if w.last >= w.first {
            o.pairs("runs", &w.terms.runs(w.first));
        }
    }
    o.opt("snapshot_index", p.snapshot_index)
        .num("bytes", p.bytes)
        .num("micros", p.micros);
}

fn intervention_fields(o: &mut Object<'_>, f: &Intervention) {
    o.text(
        "by",
        match f.by {
            super::Actor::Simulator => "simulator",
            super::Actor::Operator => "operator",
        },
    )
    .text("action", f.action.name())
    .nums("nodes", &f.nodes)
    .nums("others", &f.others)
    .opt("bridge", f.bridge)
    .num("lasts", f.lasts);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Loss, SnapshotSummary, TermRuns};
    use crate::json as parser;

    fn event(what: What) -> Event {
        Event {
            seq: 7,
            time: 1_500,
            node: 3,
            term: 5,
            what,
        }
    }

    fn encode(what: What) -> String {
        let mut out = String::new();
        write_event(&mut out, &event(what), None);
        out
    }

    #[test]
    fn every_kind_encodes_as_one_parseable_line() {
        let append = Rpc::AppendEntries {
            prev_log_index: 4,
            prev_log_term: 2,
            entries: 3,
            last_entry_term: 5,
            leader_commit: 4,
            bytes: 30,
        };
        let kinds = [
            What::Send {
                to: 1,
                msg: 9,
                rpc: append,
            },
            What::Reply {
                to: 1,
                msg: 9,
                rpc: append,
                answer: Answer::AppendEntries {
                    success: false,
                    conflict_index: 3,
                    conflict_term: Some(2),
                },
                verdict: Verdict::TermMismatch { index: 4, term: 1 },
            },
            What::Persist(Persisted {
                hard_state: None,
                log: Some(super::super::LogWrite {
                    first: 5,
                    last: 7,
                    terms: TermRuns::Many(Box::new([(5, 2), (6, 5)])),
                }),
                snapshot_index: None,
                bytes: 30,
                micros: 120,
            }),
            What::SnapshotInstalled(SnapshotSummary {
                index: 100,
                term: 4,
                bytes: 4096,
            }),
            What::ClientReply {
                client: 2,
                request: 11,
                result: "VALUE",
                index: Some(8),
                text: Some("VALUE \"quoted\"\n</script>".into()),
            },
            What::Lost {
                from: 1,
                to: 3,
                msg: 9,
                why: Loss::Partition,
            },
        ];
        for what in kinds {
            let line = encode(what);
            assert!(!line.contains('\n'), "{line}");
            assert!(!line.contains("</"), "{line}");
            let parsed = parser::parse(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
            assert_eq!(parsed.get("seq").and_then(parser::Json::as_u64), Some(7));
            assert!(parsed.get("kind").and_then(parser::Json::as_str).is_some());
        }
    }

    #[test]
    fn a_refused_vote_carries_its_rule_and_caption() {
        let line = encode(What::Reply {
            to: 1,
            msg: 77,
            rpc: Rpc::RequestVote {
                last_log_index: 7,
                last_log_term: 4,
                pre_vote: false,
                leadership_transfer: false,
            },
            answer: Answer::RequestVote { granted: false },
            verdict: Verdict::LogMoreUpToDate {
                last_log_index: 9,
                last_log_term: 5,
            },
        });
        let parsed = parser::parse(&line).unwrap();
        let text = |k| parsed.get(k).and_then(parser::Json::as_str).unwrap_or("");
        assert_eq!(text("why"), "log_more_up_to_date");
        assert_eq!(text("rpc"), "RequestVote");
        assert!(text("caption").contains("§5.4.1"), "{line}");
    }
}
