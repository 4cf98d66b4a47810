//! The cluster's membership (thesis §4): who votes, who only listens, and where they are.
//!
//! A [`Configuration`] names the voters (whose majority commits entries and
//! elects leaders) and the learners (new servers catching up: they receive the
//! log but never count and never campaign), each with the address peers reach
//! it at, and the ids that have left (never reused: a returning id could carry
//! a vote or log from its earlier life). It travels whole in a log entry of
//! kind `Config` and in every snapshot, so any server can reconstruct it from
//! its log and snapshot alone; the configuration a server uses is the latest
//! one it holds, committed or not (thesis §4.1).
//!
//! The quorum arithmetic lives here, once, so that commitment, elections,
//! check-quorum and ReadIndex all count the same voters.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::messages::NodeId;
use crate::codec::{Decode, DecodeError, Decoder, Encode, Encoder};

/// Longest address accepted in a configuration, in bytes.
pub const MAX_ADDRESS: usize = 255;

/// The members of the cluster, as of one log entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Configuration {
    /// Servers whose majority commits entries and elects leaders, by id, with
    /// the address peers reach them at.
    pub voters: BTreeMap<NodeId, String>,
    /// Servers that receive the log but do not vote in quorums (thesis §4.2.1:
    /// a new server catches up as a learner before it is promoted).
    /// Invariant: no id is both a voter and a learner.
    pub learners: BTreeMap<NodeId, String>,
    /// Ids of servers that were removed. They are never used again.
    pub retired: BTreeSet<NodeId>,
}

impl Configuration {
    /// A configuration of `voters` alone, with the addresses `addresses` gives
    /// (an id without one gets an empty address: the course tests' clusters
    /// route by id).
    pub fn bootstrap(voters: &[NodeId], addresses: &BTreeMap<NodeId, String>) -> Self {
        let voters = voters
            .iter()
            .map(|&id| (id, addresses.get(&id).cloned().unwrap_or_default()))
            .collect();
        Configuration {
            voters,
            ..Configuration::default()
        }
    }

    /// True if nobody is in it (a server waiting to be added knows no configuration).
    pub fn is_empty(&self) -> bool {
        self.voters.is_empty() && self.learners.is_empty()
    }

    /// Whether `id` votes.
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains_key(&id)
    }

    /// Whether `id` is a voter or a learner.
    pub fn is_member(&self, id: NodeId) -> bool {
        self.is_voter(id) || self.learners.contains_key(&id)
    }

    /// The address of member `id`.
    pub fn address(&self, id: NodeId) -> Option<&str> {
        self.voters
            .get(&id)
            .or_else(|| self.learners.get(&id))
            .map(String::as_str)
    }

    /// Every member (voters, then learners) with its address.
    pub fn members(&self) -> impl Iterator<Item = (NodeId, &str)> {
        self.voters
            .iter()
            .chain(&self.learners)
            .map(|(&id, addr)| (id, addr.as_str()))
    }

    /// How many voters make a majority.
    pub fn majority(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    /// Whether the voters for which `agrees` holds are a majority of the voters.
    pub fn has_quorum(&self, agrees: impl Fn(NodeId) -> bool) -> bool {
        let agreeing = self.voters.keys().filter(|&&id| agrees(id)).count();
        !self.voters.is_empty() && agreeing >= self.majority()
    }

    /// The largest value that a majority of voters has reached, given each
    /// voter's value (`None` without voters). With match indexes, this is the
    /// highest index stored on a majority (§5.3).
    pub fn quorum_value(&self, value: impl Fn(NodeId) -> u64) -> Option<u64> {
        let mut values: Vec<u64> = self.voters.keys().map(|&id| value(id)).collect();
        values.sort_unstable_by(|a, b| b.cmp(a));
        values.get(self.majority() - 1).copied()
    }

    /// This configuration with `id` added as a learner at `address`.
    pub fn with_learner(&self, id: NodeId, address: &str) -> Self {
        let mut next = self.clone();
        next.learners.insert(id, address.to_string());
        next
    }

    /// This configuration with learner `id` made a voter.
    pub fn with_promoted(&self, id: NodeId) -> Self {
        let mut next = self.clone();
        if let Some(address) = next.learners.remove(&id) {
            next.voters.insert(id, address);
        }
        next
    }

    /// This configuration without member `id`; `retire` records the id as never
    /// to be used again (a removed server), otherwise it may come back (a
    /// learner whose addition was called off).
    pub fn without(&self, id: NodeId, retire: bool) -> Self {
        let mut next = self.clone();
        next.voters.remove(&id);
        next.learners.remove(&id);
        if retire {
            next.retired.insert(id);
        }
        next
    }
}

impl fmt::Display for Configuration {
    /// `voters 1@a:1,2@b:2 learners 4@d:4`, as the operator's `MEMBERS` shows them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "voters {} learners {}",
            member_list(&self.voters),
            member_list(&self.learners)
        )
    }
}

/// `1@a:1,2@b:2` (ids alone when addresses are empty, as in the course tests);
/// `-` for nobody.
pub fn member_list(members: &BTreeMap<NodeId, String>) -> String {
    if members.is_empty() {
        return "-".into();
    }
    let list: Vec<String> = members
        .iter()
        .map(|(id, addr)| {
            if addr.is_empty() {
                id.to_string()
            } else {
                format!("{id}@{addr}")
            }
        })
        .collect();
    list.join(",")
}

fn put_members(e: &mut Encoder, members: &BTreeMap<NodeId, String>) {
    e.put_uvarint(members.len() as u64);
    for (&id, addr) in members {
        e.put_uvarint(id);
        e.put_bytes(addr.as_bytes());
    }
}

fn get_members(d: &mut Decoder<'_>) -> Result<BTreeMap<NodeId, String>, DecodeError> {
    // Every member takes at least two bytes: bound the count before looping.
    let count = d.get_len(d.remaining())?;
    let mut members = BTreeMap::new();
    for _ in 0..count {
        let id = d.get_uvarint()?;
        let addr = d.get_bytes()?;
        if addr.len() > MAX_ADDRESS {
            return Err(DecodeError::Corrupt(format!(
                "address of {} bytes exceeds {MAX_ADDRESS}",
                addr.len()
            )));
        }
        let addr = std::str::from_utf8(addr)
            .map_err(|_| DecodeError::Corrupt("address is not UTF-8".into()))?;
        if id == 0 || members.insert(id, addr.to_string()).is_some() {
            return Err(DecodeError::Corrupt(format!(
                "member id {id} invalid or twice"
            )));
        }
    }
    Ok(members)
}

impl Encode for Configuration {
    fn encode_to(&self, e: &mut Encoder) {
        put_members(e, &self.voters);
        put_members(e, &self.learners);
        e.put_uvarint(self.retired.len() as u64);
        for &id in &self.retired {
            e.put_uvarint(id);
        }
    }
}

impl Decode for Configuration {
    fn decode_from(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let voters = get_members(d)?;
        let learners = get_members(d)?;
        if let Some(id) = learners.keys().find(|id| voters.contains_key(id)) {
            return Err(DecodeError::Corrupt(format!(
                "server {id} is both a voter and a learner"
            )));
        }
        let count = d.get_len(d.remaining())?;
        let mut retired = BTreeSet::new();
        for _ in 0..count {
            retired.insert(d.get_uvarint()?);
        }
        Ok(Configuration {
            voters,
            learners,
            retired,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three() -> Configuration {
        let addresses = (1..=3).map(|id| (id, format!("h:{id}"))).collect();
        Configuration::bootstrap(&[1, 2, 3], &addresses)
    }

    #[test]
    fn a_configuration_round_trips_and_every_truncation_is_an_error() {
        let c = three().with_learner(4, "h:4").without(2, true);
        assert_eq!(Configuration::decode(&c.encode()), Ok(c.clone()));
        let bytes = c.encode();
        for cut in 0..bytes.len() {
            assert!(Configuration::decode(&bytes[..cut]).is_err(), "cut {cut}");
        }
        assert_eq!(c.to_string(), "voters 1@h:1,3@h:3 learners 4@h:4");
    }

    /// Reference: §5.3 — the commit point is what a majority of voters holds;
    /// learners are not asked.
    #[test]
    fn quorums_count_voters_only() {
        let c = three().with_learner(4, "h:4");
        assert_eq!(c.quorum_value(|id| [0, 9, 7, 5, 100][id as usize]), Some(7));
        assert!(c.has_quorum(|id| id == 1 || id == 3));
        assert!(
            !c.has_quorum(|id| id == 1 || id == 4),
            "a learner never counts"
        );
        let promoted = c.with_promoted(4);
        assert_eq!(promoted.majority(), 3);
        assert_eq!(
            promoted.quorum_value(|id| [0, 9, 7, 5, 100][id as usize]),
            Some(7)
        );
        assert_eq!(Configuration::default().quorum_value(|_| 1), None);
        assert!(!Configuration::default().has_quorum(|_| true));
    }

    #[test]
    fn removing_a_server_retires_its_id_but_calling_off_a_learner_does_not() {
        let c = three().with_learner(4, "h:4");
        assert!(c.without(4, false).retired.is_empty());
        assert!(c.without(3, true).retired.contains(&3));
        assert!(!c.without(3, true).is_member(3));
    }
}
