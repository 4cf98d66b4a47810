//! Membership changes: single-server changes that take effect when appended
//! (thesis §4.1–4.3), with new servers caught up as learners first (§4.2.1).
//!
//! **Which configuration a server uses.** The latest one in its log or
//! snapshot, committed or not (§4.1); the bootstrap peers (`Config::peers`)
//! only if neither holds one. A leader appending a configuration and a
//! follower receiving one switch at once; a follower that truncates the entry
//! goes back to the one before it (`reload_configuration`). Quorums (commit,
//! elections, check-quorum, ReadIndex) count this configuration's voters, and
//! a server that is not one of them never campaigns (`may_campaign` has the
//! one exception: a server whose removal is not yet committed). Handling a peer's RPC
//! never consults it: a server answers whoever asks (§4.1), which is how a new
//! voter that has not yet heard of its promotion still votes.
//!
//! **When a leader may change it** (`may_change_configuration`): one server
//! at a time, so that any majority of the old voters overlaps any majority of
//! the new ones; only once the previous configuration is committed, so that
//! there is one change in flight; and only once the leader has committed an
//! entry of its own term. The last rule is Ongaro's 2015 correction (raft-dev,
//! "bug in single-server membership changes"): without it, leaders of
//! different terms can each append a change to the same committed
//! configuration, producing siblings whose majorities do not overlap, and a
//! committed entry is lost ([`super::Bug::Membership2015`] switches it off).
//!
//! **Adding a server** (§4.2.1): the leader adds it as a learner, then
//! replicates to it in rounds, each round ending when the learner holds what
//! the leader's log held when the round began. A round shorter than an
//! election timeout means the learner is close enough that promoting it costs
//! no availability: the leader then makes it a voter. After
//! [`MAX_CATCH_UP_ROUNDS`] slow rounds, or [`UNREACHABLE_TIMEOUTS`] election
//! timeouts without a reply, the leader calls the change off and removes the
//! learner again: the voters are as they were.
//!
//! **Removing the leader** (§4.2.2): it keeps leading, without counting
//! itself, until the configuration without it commits; then it hands over to
//! an up-to-date voter (`TimeoutNow`, §3.10) and steps down. Stepping down
//! earlier could leave no one able to commit that configuration.
//!
//! **Removed servers** (§4.2.3) never campaign once they hold the
//! configuration without them; one that missed it, or was cut off, is kept
//! from disrupting the cluster by stickiness (`leadership.rs`).

use std::fmt;

use super::bugs::Bug;
use super::configuration::Configuration;
use super::core::{Raft, Role};
use super::messages::{Entry, Index, NodeId, Request, TimeoutNowArgs};
use super::progress::Progress;
use crate::info;

/// Most catch-up rounds before a slow learner's addition is called off
/// (thesis §4.2.1 suggests 10).
pub const MAX_CATCH_UP_ROUNDS: u32 = 10;
/// A learner that has not answered for this many election timeouts is
/// unreachable: its addition is called off.
pub const UNREACHABLE_TIMEOUTS: u32 = 2;

/// A change an operator asks the leader for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipChange {
    /// Add server `id`, reached at `address`: as a learner first, promoted
    /// to voter once it has caught up.
    Add {
        /// The new server's id (never used before).
        id: NodeId,
        /// Where peers reach it.
        address: String,
    },
    /// Remove server `id` (a voter, possibly the leader itself, or a learner).
    Remove {
        /// The server to remove.
        id: NodeId,
    },
}

impl MembershipChange {
    /// The server the change is about.
    pub fn server(&self) -> NodeId {
        match self {
            MembershipChange::Add { id, .. } | MembershipChange::Remove { id } => *id,
        }
    }
}

impl fmt::Display for MembershipChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MembershipChange::Add { id, address } => write!(f, "add {id} at {address}"),
            MembershipChange::Remove { id } => write!(f, "remove {id}"),
        }
    }
}

/// Why a membership change was refused. All but `IdInUse`, `NotMember` and
/// `LastVoter` are worth retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MembershipError {
    /// Only the leader changes the configuration.
    NotLeader,
    /// Leadership is being handed to this server (thesis §3.10).
    Transferring(NodeId),
    /// Another change is running, or the latest configuration is not
    /// committed yet (one change at a time, §4.1).
    ChangeInProgress,
    /// This leader has not yet committed an entry of its term (the 2015 fix).
    NotReady,
    /// The id belongs to a member at another address, or to a removed server
    /// (ids are never reused).
    IdInUse(NodeId),
    /// No member has this id.
    NotMember(NodeId),
    /// Removing the only voter would leave nobody to elect a leader.
    LastVoter,
}

impl fmt::Display for MembershipError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MembershipError::NotLeader => write!(f, "not the leader"),
            MembershipError::Transferring(to) => {
                write!(f, "leadership is being transferred to {to}")
            }
            MembershipError::ChangeInProgress => write!(
                f,
                "another configuration change is in progress or not yet committed"
            ),
            MembershipError::NotReady => {
                write!(f, "the leader has not yet committed an entry of its term")
            }
            MembershipError::IdInUse(id) => write!(
                f,
                "id {id} belongs to another server or a removed one; ids are never reused"
            ),
            MembershipError::NotMember(id) => write!(f, "no member has id {id}"),
            MembershipError::LastVoter => write!(f, "cannot remove the last voter"),
        }
    }
}

/// Why a change was called off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbortReason {
    /// The new server did not answer for [`UNREACHABLE_TIMEOUTS`] election timeouts.
    Unreachable,
    /// [`MAX_CATCH_UP_ROUNDS`] rounds each took longer than an election timeout.
    TooSlow,
    /// This server stopped leading first: the outcome is unknown (the entry
    /// may still commit under the next leader).
    LeadershipLost,
}

/// How far a change has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeStage {
    /// The learner is being caught up; `round` rounds have finished.
    CatchingUp {
        /// Rounds finished so far.
        round: u32,
    },
    /// The configuration entry that completes the change is being committed.
    Committing,
    /// The new configuration is committed.
    Done,
    /// The change was called off; the voters are as they were (unless the
    /// reason is `LeadershipLost`, when nothing is known).
    Aborted(AbortReason),
}

/// A change a leader is running or ran last, for the service to wait on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeStatus {
    /// Numbers this server's changes, so a caller recognizes its own.
    pub seq: u64,
    /// What was asked.
    pub change: MembershipChange,
    /// Where it stands.
    pub stage: ChangeStage,
}

impl ChangeStatus {
    /// Whether the change has ended, one way or another.
    pub fn is_finished(&self) -> bool {
        matches!(self.stage, ChangeStage::Done | ChangeStage::Aborted(_))
    }
}

/// The leader's side of a change in progress (volatile state on leaders).
#[derive(Debug, Clone)]
pub(super) struct Change {
    pub(super) status: ChangeStatus,
    step: Step,
}

#[derive(Debug, Clone)]
enum Step {
    /// Replicating to the learner in rounds (§4.2.1).
    CatchUp(CatchUp),
    /// Waiting for the configuration entry at `index` to commit; the change
    /// then ends with `outcome`.
    Commit {
        index: Index,
        outcome: Result<(), AbortReason>,
    },
    /// Ended.
    Finished,
}

#[derive(Debug, Clone)]
struct CatchUp {
    learner: NodeId,
    /// The entry that made it a learner: promoting or removing it must wait
    /// until it commits (one change at a time).
    learner_index: Index,
    /// Rounds finished.
    rounds: u32,
    /// The current round ends once the learner holds this index...
    round_end: Index,
    /// ... and has lasted this many ticks so far.
    round_ticks: u32,
    /// Ticks since the learner last answered.
    silent_ticks: u32,
    /// Decided: promote (`Ok`) or call off; carried out once `learner_index` commits.
    verdict: Option<Result<(), AbortReason>>,
}

impl Raft {
    // ---- Which configuration is in force (§4.1) ----

    /// The latest configuration in the log (scanning back from its end), else
    /// the snapshot's, else the bootstrap peers (index 0).
    fn latest_configuration(&self) -> (Configuration, Index) {
        self.configuration_at(self.log.last_index())
    }

    /// The configuration as of log index `index`: the last configuration
    /// entry at or before it, else the snapshot's, else the bootstrap peers.
    pub(super) fn configuration_at(&self, index: Index) -> (Configuration, Index) {
        if self.configuration_index <= index && index <= self.log.last_index() {
            return (self.configuration.clone(), self.configuration_index);
        }
        let first = self.log.first_index();
        for i in (first..=index.min(self.log.last_index())).rev() {
            if let Some(configuration) = self.log.entry(i).and_then(Entry::as_configuration) {
                return (configuration, i);
            }
        }
        if !self.snapshot.configuration.is_empty() {
            return (
                self.snapshot.configuration.clone(),
                self.snapshot.configuration_index,
            );
        }
        (self.bootstrap_configuration(), 0)
    }

    /// The configuration of a brand-new cluster: `Config::peers` as voters.
    pub(super) fn bootstrap_configuration(&self) -> Configuration {
        Configuration::bootstrap(&self.config.peers, &self.config.addresses)
    }

    /// Recomputes the configuration from the log and snapshot: after a
    /// truncation removed the entry it came from (thesis §4.1: "a log entry
    /// removed ... reverts to the previous configuration"), a snapshot
    /// install, or at start-up.
    pub(super) fn reload_configuration(&mut self) {
        // Start from nothing so `configuration_at` scans instead of
        // answering with the configuration being replaced.
        self.configuration_index = Index::MAX;
        let (configuration, index) = self.latest_configuration();
        self.adopt_configuration(index, configuration);
    }

    /// Makes `configuration`, held by the entry at `index`, the one in force
    /// (§4.1: at once, committed or not). A leader starts or stops
    /// replicating to the servers it adds or removes.
    pub(super) fn adopt_configuration(&mut self, index: Index, configuration: Configuration) {
        let changed = configuration != self.configuration;
        self.configuration = configuration;
        self.configuration_index = index;
        if !changed {
            return;
        }
        self.configuration_changed = true;
        info!(
            self.id,
            self.current_term,
            "configuration at {index}: {}{}",
            self.configuration,
            if self.configuration.is_voter(self.id) {
                ""
            } else {
                " (this server does not vote)"
            }
        );
        if self.role != Role::Leader {
            return;
        }
        let last = self.log.last_index();
        let members: Vec<NodeId> = self.others();
        self.progress.retain(|id, _| members.contains(id));
        let added: Vec<NodeId> = members
            .into_iter()
            .filter(|id| !self.progress.contains_key(id))
            .collect();
        for &id in &added {
            // A new member counts as heard from, or check-quorum could depose
            // the leader before it answers (etcd's TestAddNodeCheckQuorum).
            let mut progress = Progress::new(last);
            progress.recent_active = true;
            self.progress.insert(id, progress);
            // Probe it now rather than at the next heartbeat.
            self.send_append(id);
        }
        let transfer_target = self.transfer.as_ref().map(|t| t.target);
        if transfer_target.is_some_and(|t| !self.configuration.is_voter(t)) {
            self.transfer = None;
        }
    }

    /// Whom a leader replicates to: every member but itself, and, while the
    /// configuration is not committed, the servers it removes. Those keep
    /// hearing from the leader until their removal commits and they hold it,
    /// then learn that it did (`maybe_release_removed`): a removed server that
    /// never learned would think its removal undecided and campaign
    /// (`may_campaign`), disrupting the cluster where stickiness is off
    /// (thesis §4.2.3).
    pub(super) fn others(&self) -> Vec<NodeId> {
        let mut targets: Vec<NodeId> = self.configuration.members().map(|(id, _)| id).collect();
        if self.configuration_index > self.commit_index {
            let (previous, _) = self.configuration_at(self.configuration_index - 1);
            targets.extend(previous.members().map(|(id, _)| id));
        }
        targets.sort_unstable();
        targets.dedup();
        targets.retain(|&id| id != self.id);
        targets
    }

    /// Once the configuration is committed, the leader tells each server it
    /// removed that it is out, and stops replicating to it: one last
    /// heartbeat, anchored at its `match_index` (so flow control never holds
    /// it back and it never touches the log), carrying the commit index. A
    /// server commits no further than its match, so a removed voter that has
    /// not yet acknowledged the configuration that removes it (or whose match
    /// this log has compacted away) keeps being replicated to until it has
    /// (this is called again on every reply), or until the next
    /// configuration. A learner whose addition was called off (its id not
    /// retired) never campaigns: it is let go at once.
    pub(super) fn maybe_release_removed(&mut self) {
        if self.role != Role::Leader || self.configuration_index > self.commit_index {
            return;
        }
        let released: Vec<NodeId> = self
            .progress
            .iter()
            .filter(|&(&id, p)| {
                // It holds the configuration that removes it, up to an
                // entry a heartbeat can still be anchored at.
                let holds_removal = p.match_index >= self.configuration_index
                    && self.log.term(p.match_index).is_some();
                let called_off = !self.configuration.retired.contains(&id);
                !self.configuration.is_member(id) && (holds_removal || called_off)
            })
            .map(|(&id, _)| id)
            .collect();
        for id in released {
            self.send_heartbeat(id);
            self.progress.remove(&id);
        }
    }

    /// Whether this server votes in the configuration in force.
    pub(super) fn is_voter(&self) -> bool {
        self.configuration.is_voter(self.id)
    }

    /// Whether this server may campaign (thesis §4.2.1, §4.2.3): a voter of
    /// its latest configuration may; a learner, a server waiting to be added
    /// and a removed one may not. One exception: a server being removed, while
    /// the configuration without it is not yet known committed, may. It may
    /// hold the only up-to-date log (a leader that lost its followers right
    /// after appending its own removal): the others cannot win without its
    /// vote, which its longer log refuses, so unless it leads again to commit
    /// its removal, nobody ever leads.
    pub(super) fn may_campaign(&self) -> bool {
        if self.is_voter() {
            return true;
        }
        let uncommitted = self.configuration_index > self.commit_index;
        uncommitted && {
            let (previous, _) = self.configuration_at(self.configuration_index - 1);
            previous.is_voter(self.id)
        }
    }

    // ---- Changing it (the leader) ----

    /// Starts `change` (thesis §4.2–4.3). Returns the change's number; watch
    /// [`super::Status::membership_change`] for its outcome. An `Add` of a
    /// server that is already a voter at that address, or a `Remove` of a
    /// server already removed, succeeds at once (so that a retry after a lost
    /// reply is harmless); an `Add` of a learner resumes its catch-up.
    pub fn change_membership(&mut self, change: MembershipChange) -> Result<u64, MembershipError> {
        if self.role != Role::Leader {
            return Err(MembershipError::NotLeader);
        }
        if let Some(transfer) = &self.transfer {
            return Err(MembershipError::Transferring(transfer.target));
        }
        let already_done = match &change {
            MembershipChange::Add { id, address } => {
                let as_voter = self.configuration.voters.get(id) == Some(address);
                let as_learner = self.configuration.learners.get(id) == Some(address);
                if !as_voter && !as_learner && self.id_taken(*id) {
                    return Err(MembershipError::IdInUse(*id));
                }
                as_voter
            }
            MembershipChange::Remove { id } => {
                if !self.configuration.is_member(*id) && !self.configuration.retired.contains(id) {
                    return Err(MembershipError::NotMember(*id));
                }
                let last = self.configuration.voters.len() == 1;
                if last && self.configuration.is_voter(*id) {
                    return Err(MembershipError::LastVoter);
                }
                !self.configuration.is_member(*id)
            }
        };
        if !already_done {
            self.may_change_configuration()?;
        } else if self.configuration_index > self.commit_index {
            // Done, but not yet committed: "done" promises committed.
            return Err(MembershipError::ChangeInProgress);
        }
        self.change_seq += 1;
        let seq = self.change_seq;
        let status = |stage| ChangeStatus {
            seq,
            change: change.clone(),
            stage,
        };
        if already_done {
            self.change = Some(Change {
                status: status(ChangeStage::Done),
                step: Step::Finished,
            });
            return Ok(seq);
        }
        info!(
            self.id,
            self.current_term, "membership change {seq}: {change} (thesis §4)"
        );
        let (stage, step) = match &change {
            MembershipChange::Add { id, address } => {
                let learner_index = if self.configuration.learners.contains_key(id) {
                    self.configuration_index // resuming its catch-up
                } else {
                    let next = self.configuration.with_learner(*id, address);
                    self.append_configuration(next)
                };
                let catch_up = CatchUp {
                    learner: *id,
                    learner_index,
                    rounds: 0,
                    round_end: self.log.last_index(),
                    round_ticks: 0,
                    silent_ticks: 0,
                    verdict: None,
                };
                (
                    ChangeStage::CatchingUp { round: 0 },
                    Step::CatchUp(catch_up),
                )
            }
            MembershipChange::Remove { id } => {
                let next = self.configuration.without(*id, true);
                let index = self.append_configuration(next);
                let outcome = Ok(());
                (ChangeStage::Committing, Step::Commit { index, outcome })
            }
        };
        self.change = Some(Change {
            status: status(stage),
            step,
        });
        Ok(seq)
    }

    /// Whether `id` was ever a member, as far as this configuration records.
    fn id_taken(&self, id: NodeId) -> bool {
        self.configuration.is_member(id) || self.configuration.retired.contains(&id)
    }

    /// Thesis §4.1 and the 2015 correction: a leader appends a new
    /// configuration only when the previous one is committed (one change at
    /// a time) and it has committed an entry of its own term.
    fn may_change_configuration(&self) -> Result<(), MembershipError> {
        let running = self
            .change
            .as_ref()
            .is_some_and(|c| !c.status.is_finished());
        if running || self.configuration_index > self.commit_index {
            return Err(MembershipError::ChangeInProgress);
        }
        let committed_in_term = self.log.term(self.commit_index) == Some(self.current_term);
        if !committed_in_term && !self.has_bug(Bug::Membership2015) {
            return Err(MembershipError::NotReady);
        }
        Ok(())
    }

    /// Appends `next` as a configuration entry of this leader's term; it is
    /// in force at once. Returns its index.
    fn append_configuration(&mut self, next: Configuration) -> Index {
        let index = self
            .log
            .append(Entry::configuration(self.current_term, &next));
        self.mark_unstable(index);
        self.replicate_pending = true;
        self.adopt_configuration(index, next);
        index
    }

    // ---- Catching a learner up (§4.2.1) ----

    /// Counts a tick of the change in progress (leaders).
    pub(super) fn tick_membership(&mut self) {
        let unreachable_after = UNREACHABLE_TIMEOUTS * self.config.election_ticks;
        if let Some(Step::CatchUp(catch_up)) = self.change.as_mut().map(|c| &mut c.step) {
            catch_up.round_ticks += 1;
            catch_up.silent_ticks += 1;
            if catch_up.silent_ticks >= unreachable_after && catch_up.verdict.is_none() {
                catch_up.verdict = Some(Err(AbortReason::Unreachable));
            }
        }
        self.maybe_advance_change();
    }

    /// `from` answered this leader: if it is the learner being caught up,
    /// see whether its round is over (§4.2.1).
    pub(super) fn observe_catch_up(&mut self, from: NodeId) {
        let election_ticks = self.config.election_ticks;
        let last_index = self.log.last_index();
        let matched = self.progress.get(&from).map_or(0, |p| p.match_index);
        let Some(Step::CatchUp(catch_up)) = self.change.as_mut().map(|c| &mut c.step) else {
            return;
        };
        if catch_up.learner != from {
            return;
        }
        catch_up.silent_ticks = 0;
        if catch_up.verdict.is_none() && matched >= catch_up.round_end {
            catch_up.rounds += 1;
            if catch_up.round_ticks < election_ticks {
                catch_up.verdict = Some(Ok(()));
            } else if catch_up.rounds >= MAX_CATCH_UP_ROUNDS {
                catch_up.verdict = Some(Err(AbortReason::TooSlow));
            } else {
                catch_up.round_end = last_index;
                catch_up.round_ticks = 0;
            }
            let round = catch_up.rounds;
            if let Some(change) = self.change.as_mut() {
                change.status.stage = ChangeStage::CatchingUp { round };
            }
        }
        self.maybe_advance_change();
    }

    /// Moves the change on when what it waits for has happened: the
    /// learner's verdict is in and its entry committed (append the promotion
    /// or the removal), or the final entry committed (done). Then steps down
    /// if this leader's removal is committed.
    pub(super) fn maybe_advance_change(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        let commit_index = self.commit_index;
        let transferring = self.transfer.is_some();
        let next_step = match self.change.as_ref().map(|c| &c.step) {
            Some(Step::CatchUp(catch_up)) => match catch_up.verdict {
                Some(verdict) if catch_up.learner_index <= commit_index && !transferring => {
                    let learner = catch_up.learner;
                    let next = match verdict {
                        Ok(()) => self.configuration.with_promoted(learner),
                        Err(_) => self.configuration.without(learner, false),
                    };
                    let index = self.append_configuration(next);
                    Some(Step::Commit {
                        index,
                        outcome: verdict,
                    })
                }
                _ => None,
            },
            Some(Step::Commit { index, outcome }) if *index <= commit_index => {
                let stage = match outcome {
                    Ok(()) => ChangeStage::Done,
                    Err(reason) => ChangeStage::Aborted(*reason),
                };
                if let Some(change) = self.change.as_mut() {
                    change.status.stage = stage;
                }
                Some(Step::Finished)
            }
            _ => None,
        };
        if let (Some(step), Some(change)) = (next_step, self.change.as_mut()) {
            if matches!(step, Step::Commit { .. }) {
                change.status.stage = ChangeStage::Committing;
            }
            let (seq, stage) = (change.status.seq, change.status.stage);
            change.step = step;
            info!(
                self.id,
                self.current_term, "membership change {seq}: {stage:?}"
            );
        }
        self.maybe_release_removed();
        self.maybe_step_down_after_removal();
    }

    /// A leader that stops leading calls off the change it was running: the
    /// outcome is unknown (its entry may still commit under the next leader).
    pub(super) fn abandon_change(&mut self) {
        if let Some(change) = self.change.as_mut() {
            if !change.status.is_finished() {
                change.status.stage = ChangeStage::Aborted(AbortReason::LeadershipLost);
                change.step = Step::Finished;
            }
        }
    }

    // ---- Removing the leader (§4.2.2) ----

    /// Thesis §4.2.2: a leader removed from the configuration leads until
    /// that configuration commits (without counting itself), then steps
    /// down, first telling the most up-to-date voter to campaign at once.
    fn maybe_step_down_after_removal(&mut self) {
        let removed = !self.is_voter() && self.configuration_index <= self.commit_index;
        if self.role != Role::Leader || !removed {
            return;
        }
        // Tell everyone the commit index, then hand over (§3.10).
        self.broadcast_heartbeat();
        let last = self.log.last_index();
        let successor = self
            .configuration
            .voters
            .keys()
            .copied()
            .find(|id| self.progress.get(id).is_some_and(|p| p.match_index == last));
        if let Some(to) = successor {
            let args = TimeoutNowArgs {
                term: self.current_term,
                leader_id: self.id,
            };
            self.send(to, Request::TimeoutNow(args));
        }
        info!(
            self.id,
            self.current_term,
            "stepped down: the configuration at {} without this server is committed (thesis §4.2.2){}",
            self.configuration_index,
            successor.map_or(String::new(), |s| format!("; {s} takes over"))
        );
        let term = self.current_term;
        self.become_follower(term, None);
    }
}
