//! The safety properties of Raft (Figure 3 of the paper), checked after every step.
//!
//! Each property is one method named after it, citing its section. The checker
//! sees everything (every server's log, commit index and applied state), so it
//! checks the properties directly rather than inferring them from client
//! replies. Logs are compared through a hash chain, `h(i) = H(h(i-1), term,
//! command)`: two servers holding the same `(index, term)` with the same
//! `h(i)` hold the same log up to `i`, so each check costs O(what changed).
//! `invariants/promises.rs` checks what each server promises on its own (its
//! durable term, the entries it acknowledged, a leader's matchIndex), at the
//! moment a server breaks it; `invariants/tests.rs` feeds those checks
//! fabricated histories, broken and legal.

use std::collections::BTreeMap;
use std::fmt;

use crate::raft::messages::{Entry, Index, NodeId, Term};
use crate::raft::ready::Persist;
use crate::raft::{HardState, InitialState, Role, Status};
use crate::service::command::Command;
use crate::service::reply::Reply;
use crate::service::state_machine::StateMachine;

/// A broken safety property, with what shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The property's name (`election_safety`, ...).
    pub invariant: &'static str,
    /// The rule of the paper it comes from.
    pub rule: &'static str,
    /// The facts that contradict it.
    pub evidence: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.invariant, self.rule, self.evidence)
    }
}

fn violation(invariant: &'static str, rule: &'static str, evidence: String) -> Violation {
    Violation {
        invariant,
        rule,
        evidence,
    }
}

/// 64-bit FNV-1a, extended over `bytes`.
fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

/// The chain hash of an entry following one whose chain hash is `previous`.
fn chain_hash(previous: u64, entry: &Entry) -> u64 {
    let h = fnv(previous, &entry.term.to_le_bytes());
    fnv(h, &entry.command)
}

/// A hash of a state machine's whole state.
pub fn state_hash(sm: &StateMachine) -> u64 {
    fnv(FNV_START, &sm.snapshot())
}

/// One server's log as hashes: what the checker knows of it.
#[derive(Debug, Clone, Default)]
struct Chain {
    /// Index the snapshot ends at (entries before it are not held).
    base_index: Index,
    /// Term and chain hash of the entry at `base_index`.
    base: (Term, u64),
    /// `(term, chain hash)` of each entry after the base.
    entries: Vec<(Term, u64)>,
}

impl Chain {
    fn last_index(&self) -> Index {
        self.base_index + self.entries.len() as Index
    }

    fn at(&self, index: Index) -> Option<(Term, u64)> {
        if index == self.base_index {
            return Some(self.base);
        }
        let offset = index.checked_sub(self.base_index + 1)?;
        self.entries.get(usize::try_from(offset).ok()?).copied()
    }

    fn truncate_from(&mut self, index: Index) {
        let keep = index.saturating_sub(self.base_index + 1);
        self.entries
            .truncate(usize::try_from(keep).unwrap_or(usize::MAX));
    }
}

/// An acknowledgement a server sent, as a follower in `term`: it holds its
/// log through `index`, whose chain hash is `hash` (`None`: its snapshot
/// covered the index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ack {
    index: Index,
    hash: Option<u64>,
    term: Term,
}

/// What the checker remembers of one server.
#[derive(Debug, Clone, Default)]
struct Shadow {
    chain: Chain,
    role: Option<Role>,
    /// Its term: after its last step, or read back at its last restart.
    term: Term,
    commit_index: Index,
    last_applied: Index,
    /// What it had applied when it last crashed: index and chain hash.
    applied_at_crash: Option<(Index, Option<u64>)>,
    /// A term it became leader of in a step whose save is still under way.
    leader_unsaved: Option<Term>,
    /// Its term and vote as its disk holds them.
    durable: HardState,
    /// The highest term it has put in a message (pre-votes' proposals aside).
    term_sent: Term,
    /// The last vote it granted: term and candidate.
    vote_sent: Option<(Term, NodeId)>,
    /// Acknowledgements still promised, none implied by another.
    acks: Vec<Ack>,
    /// As leader: its matchIndex for each follower (0s left out), as of its
    /// last step, and the term it leads.
    matched: Vec<(NodeId, Index)>,
    led_in: Term,
    /// Its disk was wiped or replaced (a scripted scenario breaking Raft's
    /// assumption of stable storage): leaders may remember more of its log
    /// than it holds until they learn otherwise (flow control's lost-log
    /// rule), so their matchIndex for it is not a promise it must keep.
    disk_replaced: bool,
}

/// Everything the checker has seen, across servers and restarts.
#[derive(Debug, Default)]
pub struct Checker {
    /// The leader of each term.
    leaders: BTreeMap<Term, NodeId>,
    /// The candidate each server voted for, per term, as its replies said.
    votes: BTreeMap<(NodeId, Term), NodeId>,
    /// Chain hash of every `(index, term)` ever held by any server.
    entries: BTreeMap<(Index, Term), u64>,
    /// Chain hash of every committed index, and the term in which it was
    /// first known committed.
    committed: BTreeMap<Index, (u64, Term)>,
    /// Term and command hash of every applied index.
    applied: BTreeMap<Index, (Term, u64)>,
    /// Hash of the state machine after applying each sampled index.
    states: BTreeMap<Index, u64>,
    /// Index and amount of every successful OPEN.
    opened: BTreeMap<Index, i64>,
    /// Index at which each txid moved money.
    moved: BTreeMap<String, Index>,
    shadows: Vec<Shadow>,
}

/// One applied entry, as the checker sees it.
#[derive(Debug, Clone, Copy)]
pub struct AppliedEntry<'a> {
    /// Its log index.
    pub index: Index,
    /// Its term.
    pub term: Term,
    /// The decoded command.
    pub command: &'a Command,
    /// The command as stored in the log.
    pub bytes: &'a [u8],
    /// The state machine's reply.
    pub reply: &'a Reply,
    /// Whether it was a transfer that moved money.
    pub moved: bool,
    /// Whether its session had applied it before (the reply is the first one's).
    pub duplicate: bool,
}

/// Applied states are hashed and compared at every index divisible by this.
pub const STATE_SAMPLE: Index = 8;

mod promises;
#[cfg(test)]
mod tests;

impl Checker {
    /// A checker for `nodes` servers (every server that may ever exist:
    /// servers join and leave with membership changes, thesis §4).
    pub fn new(nodes: usize) -> Self {
        Self {
            shadows: vec![Shadow::default(); nodes],
            ..Self::default()
        }
    }

    fn id(node: usize) -> NodeId {
        node as NodeId + 1
    }

    /// Server `node` (re)started from `initial`.
    pub fn on_start(&mut self, node: usize, initial: &InitialState) -> Result<(), Violation> {
        let snapshot = &initial.snapshot;
        let base_hash =
            self.known_hash(snapshot.last_included_index, snapshot.last_included_term)?;
        let mut chain = Chain {
            base_index: snapshot.last_included_index,
            base: (snapshot.last_included_term, base_hash),
            entries: Vec::new(),
        };
        self.extend(node, &mut chain, &initial.entries)?;
        let shadow = &mut self.shadows[node];
        shadow.chain = chain;
        shadow.role = None;
        shadow.term = initial.hard_state.current_term;
        shadow.durable = initial.hard_state;
        shadow.commit_index = snapshot.last_included_index;
        shadow.last_applied = snapshot.last_included_index;
        self.restart_keeps_applied_entries(node)?;
        self.durable_term_and_vote_cover_sent(node, "restart", "from disk")?;
        self.acknowledged_entries_stay(node, initial.hard_state.current_term)?;
        self.matches_for_are_held(node)
    }

    /// Server `node`'s disk was replaced by an empty one while it was down:
    /// it restarts as a new server under its old id, with nothing applied.
    pub fn on_disk_replaced(&mut self, node: usize) {
        self.shadows[node] = Shadow {
            disk_replaced: true,
            ..Shadow::default()
        };
    }

    /// Server `node` crashed.
    pub fn on_crash(&mut self, node: usize) {
        let applied = self.shadows[node].last_applied;
        // The entry as committed (the in-memory log may already be past a
        // snapshot the crash keeps from reaching the disk).
        let hash = self.committed.get(&applied).map(|&(h, _)| h);
        self.shadows[node].applied_at_crash = Some((applied, hash));
        // A leader whose term never reached its disk never led: it sends
        // nothing of its term before the save (a sole voter elects itself
        // within one step, before saving its vote).
        self.shadows[node].leader_unsaved = None;
        // Volatile state on leaders is gone.
        self.shadows[node].matched.clear();
    }

    /// Server `node`'s step saved `persist` in full: its durable term and
    /// vote are now those, and a leadership it claimed in that step counts
    /// (§5.2, Figure 2: a term and vote are durable before the server acts
    /// on them).
    pub fn on_saved(&mut self, node: usize, persist: &Persist) -> Result<(), Violation> {
        if let Some(hard_state) = persist.hard_state {
            self.shadows[node].durable = hard_state;
            self.durable_term_and_vote_cover_sent(node, "save", "of its term and vote")?;
        }
        match self.shadows[node].leader_unsaved.take() {
            Some(term) => self.election_safety(Self::id(node), term),
            None => Ok(()),
        }
    }

    /// The chain hash of `(index, term)` as some server held it (index 0 is
    /// the empty log).
    fn known_hash(&self, index: Index, term: Term) -> Result<u64, Violation> {
        if index == 0 {
            return Ok(FNV_START);
        }
        self.entries.get(&(index, term)).copied().ok_or_else(|| {
            violation(
                "log_matching",
                "§5.3",
                format!("a snapshot ends at {index}@{term}, an entry no server ever held"),
            )
        })
    }

    /// Appends `new` entries to `chain`, checking each against every other
    /// server's copy of the same `(index, term)`.
    fn extend(&mut self, node: usize, chain: &mut Chain, new: &[Entry]) -> Result<(), Violation> {
        for entry in new {
            let index = chain.last_index() + 1;
            let previous = chain.at(index - 1).map_or(FNV_START, |(_, h)| h);
            let h = chain_hash(previous, entry);
            self.log_matching(node, index, entry.term, h)?;
            chain.entries.push((entry.term, h));
        }
        Ok(())
    }

    /// §5.3, Log Matching: if two logs contain an entry with the same index and
    /// term, the logs are identical in all entries up through that index.
    fn log_matching(
        &mut self,
        node: usize,
        index: Index,
        term: Term,
        h: u64,
    ) -> Result<(), Violation> {
        match self.entries.insert((index, term), h) {
            Some(other) if other != h => Err(violation(
                "log_matching",
                "§5.3",
                format!(
                    "node {} holds {index}@{term} after a different log prefix than another server",
                    Self::id(node)
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Records a step of server `node`: the core's status after it and what its
    /// `Ready` persisted, then checks every property the step could break.
    pub fn on_step(
        &mut self,
        node: usize,
        before: &Status,
        after: &Status,
        persist: &Persist,
    ) -> Result<(), Violation> {
        let mut chain = std::mem::take(&mut self.shadows[node].chain);
        let result = self.follow_persist(node, &mut chain, before, after, persist);
        self.shadows[node].chain = chain;
        result?;
        self.shadows[node].term = after.term;
        if persist.log.is_some() || persist.snapshot.is_some() {
            self.acknowledged_entries_stay(node, after.term)?;
            self.matches_for_are_held(node)?;
        }
        let chain_end = self.shadows[node].chain.last_index();
        if chain_end != after.last_log_index {
            return Err(violation(
                "simulator_shadow",
                "the checker's copy of the log",
                format!(
                    "node {}: the core's log ends at {}, its persisted writes at {chain_end}",
                    after.id, after.last_log_index
                ),
            ));
        }
        if after.role == Role::Leader {
            if persist.hard_state.is_some() {
                self.shadows[node].leader_unsaved = Some(after.term);
            } else {
                self.election_safety(after.id, after.term)?;
            }
        }
        let became_leader = after.role == Role::Leader
            && (before.role != Role::Leader || before.term != after.term);
        if became_leader {
            self.leader_completeness(node, after)?;
            self.leaders_are_voters(after)?;
        }
        self.commit_index_only_moves_forward(node, after)?;
        self.shadows[node].role = Some(after.role);
        Ok(())
    }

    /// Mirrors a `Persist` (snapshot first, then log write) into `chain`.
    fn follow_persist(
        &mut self,
        node: usize,
        chain: &mut Chain,
        before: &Status,
        after: &Status,
        persist: &Persist,
    ) -> Result<(), Violation> {
        if let Some(snapshot) = &persist.snapshot {
            let index = snapshot.last_included_index;
            match chain.at(index) {
                Some((term, h)) if term == snapshot.last_included_term => {
                    let drop = usize::try_from(index - chain.base_index).unwrap_or(usize::MAX);
                    chain.entries.drain(..drop.min(chain.entries.len()));
                    chain.base_index = index;
                    chain.base = (term, h);
                }
                _ => {
                    let h = self.known_hash(index, snapshot.last_included_term)?;
                    *chain = Chain {
                        base_index: index,
                        base: (snapshot.last_included_term, h),
                        entries: Vec::new(),
                    };
                }
            }
        }
        if let Some(write) = &persist.log {
            self.leader_append_only(before, after, write.first_index)?;
            if write.first_index <= chain.base_index || write.first_index > chain.last_index() + 1 {
                return Err(violation(
                    "storage_contract",
                    "Persist: a log write continues the stored log",
                    format!(
                        "node {} wrote at {} but its log is {}..={}",
                        after.id,
                        write.first_index,
                        chain.base_index + 1,
                        chain.last_index()
                    ),
                ));
            }
            chain.truncate_from(write.first_index);
            self.extend(node, chain, &write.entries)?;
        }
        Ok(())
    }

    /// §5.2: "each server will vote for at most one candidate in a given term,
    /// on a first-come-first-served basis", even across a crash (Figure 2:
    /// votedFor is persistent). Checked on every vote a server sends.
    fn vote_once_per_term(
        &mut self,
        node: usize,
        term: Term,
        candidate: NodeId,
    ) -> Result<(), Violation> {
        let voter = Self::id(node);
        match self.votes.insert((voter, term), candidate) {
            Some(first) if first != candidate => Err(violation(
                "vote_once_per_term",
                "§5.2 and Figure 2: votedFor is persistent",
                format!("node {voter} voted for {first} and then for {candidate} in term {term}"),
            )),
            _ => Ok(()),
        }
    }

    /// §5.2, Election Safety: at most one leader can be elected in a given
    /// term. Checked once the leader's term is durable.
    fn election_safety(&mut self, leader: NodeId, term: Term) -> Result<(), Violation> {
        match self.leaders.insert(term, leader) {
            Some(other) if other != leader => Err(violation(
                "election_safety",
                "§5.2",
                format!("nodes {other} and {leader} were both leader in term {term}"),
            )),
            _ => Ok(()),
        }
    }

    /// §5.3, Leader Append-Only: a leader never overwrites or deletes entries in
    /// its log; it only appends new entries.
    fn leader_append_only(
        &self,
        before: &Status,
        after: &Status,
        first_written: Index,
    ) -> Result<(), Violation> {
        let led_throughout =
            before.role == Role::Leader && after.role == Role::Leader && before.term == after.term;
        if led_throughout && first_written <= before.last_log_index {
            return Err(violation(
                "leader_append_only",
                "§5.3",
                format!(
                    "leader {} of term {} rewrote its log from {first_written} (it ended at {})",
                    after.id, after.term, before.last_log_index
                ),
            ));
        }
        Ok(())
    }

    /// §5.4.1, Leader Completeness: if an entry is committed in a given term,
    /// it is present in the logs of the leaders of all later terms.
    fn leader_completeness(&self, node: usize, status: &Status) -> Result<(), Violation> {
        // Commit terms never decrease with the index: the last entry committed
        // before this term is the one to look for.
        let earlier = self
            .committed
            .iter()
            .rev()
            .find(|(_, &(_, term))| term < status.term);
        let Some((&index, &(h, _))) = earlier else {
            return Ok(());
        };
        let chain = &self.shadows[node].chain;
        if index <= chain.base_index {
            return Ok(()); // its snapshot holds it
        }
        if chain.at(index).map(|(_, held)| held) != Some(h) {
            return Err(violation(
                "leader_completeness",
                "§5.4.1",
                format!(
                    "node {} became leader of term {} without committed entry {index} \
                     (its log ends at {})",
                    status.id,
                    status.term,
                    chain.last_index()
                ),
            ));
        }
        Ok(())
    }

    /// Thesis §4.1: only a voter of its latest configuration campaigns (or
    /// one being removed, until its removal is committed), so every leader
    /// is one when elected.
    fn leaders_are_voters(&self, status: &Status) -> Result<(), Violation> {
        let being_removed = status.configuration_index > status.commit_index;
        if status.configuration.is_voter(status.id) || being_removed {
            return Ok(());
        }
        Err(violation(
            "leaders_are_voters",
            "thesis §4.1: only voters campaign",
            format!(
                "node {} became leader of term {} with configuration {} at {}",
                status.id, status.term, status.configuration, status.configuration_index
            ),
        ))
    }

    /// Figure 2: commitIndex increases monotonically (within one incarnation; it
    /// is volatile state), and every index a server commits holds the entry
    /// every other server committed there (§5.4.3, State Machine Safety).
    fn commit_index_only_moves_forward(
        &mut self,
        node: usize,
        status: &Status,
    ) -> Result<(), Violation> {
        let previous = self.shadows[node].commit_index;
        if status.commit_index < previous {
            return Err(violation(
                "commit_index_only_moves_forward",
                "Figure 2",
                format!(
                    "node {} moved its commit index back from {previous} to {}",
                    status.id, status.commit_index
                ),
            ));
        }
        for index in previous + 1..=status.commit_index {
            let chain = &self.shadows[node].chain;
            if index <= chain.base_index {
                continue;
            }
            let Some((_, h)) = chain.at(index) else {
                return Err(violation(
                    "commit_index_only_moves_forward",
                    "Figure 2",
                    format!(
                        "node {} committed {index} beyond its log's end {}",
                        status.id,
                        chain.last_index()
                    ),
                ));
            };
            if let Some(&(other, _)) = self.committed.get(&index) {
                if other != h {
                    return Err(violation(
                        "state_machine_safety",
                        "§5.4.3",
                        format!(
                            "node {} committed a different entry at {index} than another server",
                            status.id
                        ),
                    ));
                }
            } else {
                self.committed.insert(index, (h, status.term));
            }
        }
        self.shadows[node].commit_index = status.commit_index;
        Ok(())
    }

    /// Persistence (Figure 2: the log is persistent state): whatever a server
    /// had applied before it crashed is still in its snapshot or its log, the
    /// same entries, when it restarts. A server's commit point never moves
    /// back across a restart, even though `commitIndex` itself is volatile.
    fn restart_keeps_applied_entries(&mut self, node: usize) -> Result<(), Violation> {
        let shadow = &mut self.shadows[node];
        let Some((applied, hash)) = shadow.applied_at_crash.take() else {
            return Ok(());
        };
        let chain = &shadow.chain;
        let held = chain.at(applied).map(|(_, h)| h);
        let kept = applied <= chain.base_index
            || match hash {
                Some(h) => held == Some(h),
                None => held.is_some(),
            };
        if !kept {
            return Err(violation(
                "restart_keeps_applied_entries",
                "Figure 2: persistent state",
                format!(
                    "node {} applied through {applied} before it crashed, but restarted \
                     with a log ending at {} that lacks that entry",
                    Self::id(node),
                    chain.last_index()
                ),
            ));
        }
        Ok(())
    }

    /// Records that server `node` applied `entry`, reaching state `sm`.
    pub fn on_apply(
        &mut self,
        node: usize,
        entry: AppliedEntry<'_>,
        sm: &StateMachine,
    ) -> Result<(), Violation> {
        let index = entry.index;
        self.state_machine_safety(node, index, entry.term, entry.bytes)?;
        if let Command::Open(_, cents) = entry.command {
            if *entry.reply == Reply::Ok && !entry.duplicate {
                self.opened.insert(index, *cents);
            }
        }
        if let Command::Transfer(t) = entry.command {
            if entry.moved {
                self.transfers_apply_once(node, index, &t.txid)?;
            }
        }
        self.shadows[node].last_applied = index;
        self.money_is_conserved(node, index, sm)?;
        if matches!(entry.command, Command::Audit) && !entry.duplicate {
            self.audits_see_all_money(node, index, entry.reply)?;
        }
        if index.is_multiple_of(STATE_SAMPLE) {
            self.equal_indexes_equal_states(node, index, sm)?;
        }
        Ok(())
    }

    /// Records that server `node` applied an entry Raft wrote for itself (a
    /// leader's no-op) at `index`.
    pub fn on_skip(&mut self, node: usize, index: Index, term: Term) -> Result<(), Violation> {
        // A no-op's "command" hashes as the empty string with its own tag.
        self.state_machine_safety(node, index, term, b"\0noop")?;
        self.shadows[node].last_applied = index;
        Ok(())
    }

    /// Records that server `node` answered a read (ReadIndex, thesis §6.4)
    /// with `reply`, from its state at applied index `applied`: an AUDIT must
    /// show all the money opened through that index.
    pub fn on_read(
        &mut self,
        node: usize,
        reply: &Reply,
        applied: Index,
        sm: &StateMachine,
    ) -> Result<(), Violation> {
        self.money_is_conserved(node, applied, sm)?;
        if matches!(reply, Reply::Audit { .. }) {
            self.audits_see_all_money(node, applied, reply)?;
        }
        Ok(())
    }

    /// Records that server `node` replaced its state with a snapshot through
    /// `index`.
    pub fn on_restore(
        &mut self,
        node: usize,
        index: Index,
        sm: &StateMachine,
    ) -> Result<(), Violation> {
        self.shadows[node].last_applied = index;
        self.money_is_conserved(node, index, sm)?;
        self.equal_indexes_equal_states(node, index, sm)
    }

    /// §5.4.3, State Machine Safety: if a server has applied a log entry at a
    /// given index, no other server will ever apply a different entry there.
    fn state_machine_safety(
        &mut self,
        node: usize,
        index: Index,
        term: Term,
        command: &[u8],
    ) -> Result<(), Violation> {
        let expected = self.shadows[node].last_applied + 1;
        if index != expected {
            return Err(violation(
                "state_machine_safety",
                "Figure 2: apply log[lastApplied + 1]",
                format!(
                    "node {} applied {index} right after {}",
                    Self::id(node),
                    expected - 1
                ),
            ));
        }
        let mine = (term, fnv(FNV_START, command));
        match self.applied.insert(index, mine) {
            Some(other) if other != mine => Err(violation(
                "state_machine_safety",
                "§5.4.3",
                format!(
                    "node {} applied {index}@{term}, another server applied {index}@{} there",
                    Self::id(node),
                    other.0
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Determinism: two servers that applied the same prefix of the log hold
    /// byte-identical state.
    fn equal_indexes_equal_states(
        &mut self,
        node: usize,
        index: Index,
        sm: &StateMachine,
    ) -> Result<(), Violation> {
        let h = state_hash(sm);
        match self.states.insert(index, h) {
            Some(other) if other != h => Err(violation(
                "equal_indexes_equal_states",
                "§5.4.3: a deterministic state machine",
                format!(
                    "node {} has a different state at applied index {index} than another server",
                    Self::id(node)
                ),
            )),
            _ => Ok(()),
        }
    }

    /// The ledger's money is conserved: at every applied index the balances add
    /// up to what was opened before it.
    fn money_is_conserved(
        &self,
        node: usize,
        index: Index,
        sm: &StateMachine,
    ) -> Result<(), Violation> {
        let expected = self.opened_through(index);
        let total = sm.ledger().total_cents();
        if total != expected {
            return Err(violation(
                "money_is_conserved",
                "the ledger's invariant",
                format!(
                    "node {} at applied index {index} holds {total} cents in all, \
                     but {expected} were opened",
                    Self::id(node)
                ),
            ));
        }
        Ok(())
    }

    fn opened_through(&self, index: Index) -> i128 {
        self.opened
            .range(..=index)
            .map(|(_, &c)| i128::from(c))
            .sum()
    }

    /// Every AUDIT reply shows all the money opened before it.
    fn audits_see_all_money(
        &self,
        node: usize,
        index: Index,
        reply: &Reply,
    ) -> Result<(), Violation> {
        let expected = self.opened_through(index);
        let shown = match reply {
            Reply::Audit { total_cents, .. } => Some(*total_cents),
            _ => None,
        };
        if shown != Some(expected) {
            return Err(violation(
                "money_is_conserved",
                "the ledger's invariant, as AUDIT reports it",
                format!(
                    "node {} answered AUDIT at {index} with '{reply}', but {expected} cents were opened",
                    Self::id(node)
                ),
            ));
        }
        Ok(())
    }

    /// A transfer moves money once, whatever the retries (thesis §6.3).
    fn transfers_apply_once(
        &mut self,
        node: usize,
        index: Index,
        txid: &str,
    ) -> Result<(), Violation> {
        match self.moved.get(txid) {
            Some(&first) if first != index => Err(violation(
                "transfers_apply_once",
                "thesis §6.3: exactly-once client commands",
                format!(
                    "node {} moved money for txid {txid} at {index}; it already did at {first}",
                    Self::id(node)
                ),
            )),
            Some(_) => Ok(()),
            None => {
                self.moved.insert(txid.to_string(), index);
                Ok(())
            }
        }
    }
}
