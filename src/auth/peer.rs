//! Peer authentication: a handshake per connection, then an HMAC-SHA256 tag on
//! every request and every reply.
//!
//! ```text
//! dialer → acceptor   PEER <cluster-id> <from> <to> <dialer-nonce>
//! acceptor → dialer   CHALLENGE <acceptor-nonce>
//! dialer → acceptor   RAFT <seq> <base64 payload> <tag>     (or FWD: a forwarded client line)
//! acceptor → dialer   OK <seq> <base64 payload> <tag>
//! ```
//!
//! Nonces are 16 random bytes in hex; `seq` counts requests on the connection
//! from 1; a tag is HMAC-SHA256 under the cluster key, in hex, over
//! [`Link::tag`]'s fields: cluster id, sender, receiver, direction, kind, both
//! nonces, seq and the payload exactly as sent. The acceptor checks the tag
//! before decoding anything and answers a bad one with `ERR AUTH` and a closed
//! connection.
//!
//! Why this resists what it must (details in NOTES.md): without the key no tag
//! can be made; a line replayed on the same connection carries a stale `seq`; a
//! line replayed on another connection was tagged for another acceptor nonce;
//! a reply cannot be passed off as another request's (the seq), nor a request
//! reflected back as a reply (the direction), nor a message redirected to
//! another node (sender and receiver ids).
//!
//! This module is pure: it builds and checks lines; `transport::link` and the
//! server do the I/O.

use std::sync::atomic::{AtomicU64, Ordering};

use super::hmac::{ct_eq, HmacKey, TAG_LEN};
use super::keyfile::{os_random, MIN_KEY_LEN};
use super::sha256::Sha256;
use crate::raft::messages::NodeId;
use crate::transport::line::{base64_decode, base64_encode};

/// Domain label at the start of every tagged message.
pub const LABEL: &[u8] = b"raftkv peer v1";
/// Bytes in a nonce.
pub const NONCE_LEN: usize = 16;
/// Longest cluster id.
pub const MAX_CLUSTER_ID: usize = 64;
/// The cluster id when `-cluster-id` is not given.
pub const DEFAULT_CLUSTER_ID: &str = "raftkv";

/// What a peer message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A Raft RPC: an encoded `Request`, answered by an encoded `Response`.
    Raft,
    /// A client line forwarded by a follower, answered by the reply line.
    Forward,
}

impl Kind {
    /// The request line's first word.
    pub fn verb(self) -> &'static str {
        match self {
            Kind::Raft => "RAFT",
            Kind::Forward => "FWD",
        }
    }

    fn code(self) -> u8 {
        match self {
            Kind::Raft => 1,
            Kind::Forward => 2,
        }
    }

    fn from_verb(verb: &[u8]) -> Option<Kind> {
        match verb {
            b"RAFT" => Some(Kind::Raft),
            b"FWD" => Some(Kind::Forward),
            _ => None,
        }
    }
}

/// Which way a message goes on its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Dialer to acceptor.
    Request = 1,
    /// Acceptor to dialer.
    Reply = 2,
}

/// The cluster key, the cluster id, and a source of fresh nonces.
pub struct PeerAuth {
    key: HmacKey,
    keyed: bool,
    cluster_id: String,
    nonce_seed: [u8; 32],
    nonces_made: AtomicU64,
}

impl std::fmt::Debug for PeerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerAuth")
            .field("keyed", &self.keyed)
            .field("cluster_id", &self.cluster_id)
            .finish_non_exhaustive()
    }
}

impl PeerAuth {
    /// Authentication under `key` (at least 16 bytes) for cluster `cluster_id`,
    /// or, with no key, the same protocol under an empty key: tags then prove
    /// nothing, which is allowed only on loopback (the server checks).
    /// Fails if `/dev/urandom` cannot be read or an argument is invalid.
    pub fn new(key: Option<&[u8]>, cluster_id: &str) -> Result<Self, String> {
        let mut seed = [0u8; 32];
        os_random(&mut seed).map_err(|e| format!("cannot read /dev/urandom for nonces: {e}"))?;
        Self::with_seed(key, cluster_id, seed)
    }

    /// Like [`PeerAuth::new`] with a given nonce seed (tests: repeatable nonces).
    pub fn with_seed(key: Option<&[u8]>, cluster_id: &str, seed: [u8; 32]) -> Result<Self, String> {
        check_cluster_id(cluster_id)?;
        if let Some(k) = key {
            if k.len() < MIN_KEY_LEN {
                return Err(format!("a cluster key needs at least {MIN_KEY_LEN} bytes"));
            }
        }
        Ok(PeerAuth {
            key: HmacKey::new(key.unwrap_or_default()),
            keyed: key.is_some(),
            cluster_id: cluster_id.to_string(),
            nonce_seed: seed,
            nonces_made: AtomicU64::new(0),
        })
    }

    /// Whether a cluster key is configured.
    pub fn is_keyed(&self) -> bool {
        self.keyed
    }

    /// This cluster's id.
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// A nonce never returned before by this process: SHA-256 of the random
    /// seed and a counter, cut to 16 bytes (unpredictable without the seed).
    fn fresh_nonce(&self) -> [u8; NONCE_LEN] {
        let n = self.nonces_made.fetch_add(1, Ordering::Relaxed);
        let mut h = Sha256::new();
        h.update(&self.nonce_seed);
        h.update(&n.to_be_bytes());
        let digest = h.finish();
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&digest[..NONCE_LEN]);
        nonce
    }
}

/// Cluster ids are 1..=64 visible ASCII characters (they travel as one word).
pub fn check_cluster_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_CLUSTER_ID || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "cluster id '{id}' must be 1..={MAX_CLUSTER_ID} visible ASCII characters"
        ));
    }
    Ok(())
}

/// One connection's identity: who dialed whom, and both nonces. Every tag on
/// the connection is bound to all of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The node that opened the connection and sends requests.
    pub dialer: NodeId,
    /// The node that accepted it and sends replies.
    pub acceptor: NodeId,
    /// Chosen by the dialer.
    pub dialer_nonce: [u8; NONCE_LEN],
    /// Chosen by the acceptor.
    pub acceptor_nonce: [u8; NONCE_LEN],
}

impl Link {
    /// The tag of one message. The MAC input, in order (integers big-endian):
    ///
    /// ```text
    /// "raftkv peer v1"                     14 bytes, the protocol label
    /// len(cluster id) ‖ cluster id         1 + 1..=64 bytes
    /// sender id ‖ receiver id              u64 ‖ u64 (dialer, acceptor for a request; swapped for a reply)
    /// direction ‖ kind                     u8 (1 request, 2 reply) ‖ u8 (1 RAFT, 2 FWD)
    /// dialer nonce ‖ acceptor nonce        16 ‖ 16 bytes
    /// seq                                  u64
    /// len(payload) ‖ payload               u64 ‖ the payload's base64 text as sent
    /// ```
    pub fn tag(
        &self,
        auth: &PeerAuth,
        direction: Direction,
        kind: Kind,
        seq: u64,
        payload: &[u8],
    ) -> [u8; TAG_LEN] {
        let (sender, receiver) = match direction {
            Direction::Request => (self.dialer, self.acceptor),
            Direction::Reply => (self.acceptor, self.dialer),
        };
        let cluster_id = auth.cluster_id.as_bytes();
        let mut h = auth.key.start();
        h.update(LABEL);
        h.update(&[cluster_id.len() as u8]);
        h.update(cluster_id);
        h.update(&sender.to_be_bytes());
        h.update(&receiver.to_be_bytes());
        h.update(&[direction as u8, kind.code()]);
        h.update(&self.dialer_nonce);
        h.update(&self.acceptor_nonce);
        h.update(&seq.to_be_bytes());
        h.update(&(payload.len() as u64).to_be_bytes());
        h.update(payload);
        h.finish()
    }

    /// `<word> <seq> <base64 payload> <tag>`.
    fn seal(
        &self,
        auth: &PeerAuth,
        direction: Direction,
        kind: Kind,
        seq: u64,
        payload: &[u8],
    ) -> String {
        let word = match direction {
            Direction::Request => kind.verb(),
            Direction::Reply => "OK",
        };
        let text = base64_encode(payload);
        let tag = self.tag(auth, direction, kind, seq, text.as_bytes());
        format!("{word} {seq} {text} {}", hex(&tag))
    }

    /// Checks a sealed line's seq and tag, then decodes its payload.
    fn open(
        &self,
        auth: &PeerAuth,
        direction: Direction,
        kind: Kind,
        seq: u64,
        fields: &Fields<'_>,
    ) -> Result<Vec<u8>, String> {
        if fields.seq != Some(seq) {
            return Err(format!(
                "message out of sequence (expected {seq}): a replay?"
            ));
        }
        let tag: [u8; TAG_LEN] = unhex(fields.tag).ok_or("malformed tag")?;
        let want = self.tag(auth, direction, kind, seq, fields.payload);
        if !ct_eq(&tag, &want) {
            return Err("bad tag (is the cluster key the same on every node?)".into());
        }
        base64_decode(fields.payload).ok_or_else(|| "invalid base64 payload".into())
    }
}

/// A sealed line split into its four fields.
struct Fields<'a> {
    word: &'a [u8],
    seq: Option<u64>,
    payload: &'a [u8],
    tag: &'a [u8],
}

fn split_sealed(line: &[u8]) -> Option<Fields<'_>> {
    let mut parts = line.split(|&b| b == b' ');
    let fields = Fields {
        word: parts.next()?,
        seq: parse_u64(parts.next()?),
        payload: parts.next()?,
        tag: parts.next()?,
    };
    parts.next().is_none().then_some(fields)
}

fn parse_u64(text: &[u8]) -> Option<u64> {
    if text.is_empty() || text.len() > 20 || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// Why a peer line was refused: the acceptor answers `ERR AUTH <reason>` and
/// closes the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub String);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The dialing end of a connection.
#[derive(Debug)]
pub struct Dialer {
    link: Link,
    /// Requests sealed so far; the next one gets `seq + 1`.
    seq: u64,
}

/// Why a reply was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyError {
    /// The acceptor answered with a line that is not a sealed reply (such as
    /// `ERR AUTH ...` or `ERR NO_LEADER ...`).
    Refused(String),
    /// A sealed reply whose tag or seq is wrong: not from the acceptor.
    Forged(String),
}

impl Dialer {
    /// Starts a handshake from `from` to `to`; returns the `PEER` line to send.
    pub fn hello(auth: &PeerAuth, from: NodeId, to: NodeId) -> (Dialer, String) {
        let link = Link {
            dialer: from,
            acceptor: to,
            dialer_nonce: auth.fresh_nonce(),
            acceptor_nonce: [0; NONCE_LEN],
        };
        let line = format!(
            "PEER {} {from} {to} {}",
            auth.cluster_id,
            hex(&link.dialer_nonce)
        );
        (Dialer { link, seq: 0 }, line)
    }

    /// Takes the acceptor's `CHALLENGE <nonce>`.
    pub fn accept_challenge(&mut self, line: &[u8]) -> Result<(), ReplyError> {
        let refused = || ReplyError::Refused(shown(line));
        let nonce = line.strip_prefix(b"CHALLENGE ").ok_or_else(refused)?;
        self.link.acceptor_nonce = unhex(nonce).ok_or_else(refused)?;
        Ok(())
    }

    /// Seals the next request.
    pub fn seal_request(&mut self, auth: &PeerAuth, kind: Kind, payload: &[u8]) -> String {
        self.seq += 1;
        self.link
            .seal(auth, Direction::Request, kind, self.seq, payload)
    }

    /// Checks the reply to the last request and returns its payload.
    pub fn open_reply(
        &self,
        auth: &PeerAuth,
        kind: Kind,
        line: &[u8],
    ) -> Result<Vec<u8>, ReplyError> {
        if !line.starts_with(b"OK ") {
            return Err(ReplyError::Refused(shown(line)));
        }
        let fields =
            split_sealed(line).ok_or_else(|| ReplyError::Forged("malformed reply".into()))?;
        self.link
            .open(auth, Direction::Reply, kind, self.seq, &fields)
            .map_err(ReplyError::Forged)
    }

    /// The connection's identity.
    pub fn link(&self) -> &Link {
        &self.link
    }
}

/// The accepting end of a connection, after a valid `PEER` line.
#[derive(Debug)]
pub struct Acceptor {
    link: Link,
    /// Requests opened so far.
    seq: u64,
    /// The kind of the last request opened (its reply has the same kind).
    last_kind: Option<Kind>,
}

impl Acceptor {
    /// Answers a `PEER` line sent to node `me`; `is_peer` says which ids may
    /// dial. Returns the acceptor and the `CHALLENGE` line to send back.
    pub fn hello(
        auth: &PeerAuth,
        me: NodeId,
        is_peer: impl Fn(NodeId) -> bool,
        line: &[u8],
    ) -> Result<(Acceptor, String), Refusal> {
        let bad = || Refusal("usage: PEER <cluster-id> <from> <to> <nonce>".into());
        let mut parts = line.split(|&b| b == b' ');
        if parts.next() != Some(b"PEER") {
            return Err(bad());
        }
        let (cluster, from, to, nonce) = match (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) {
            (Some(c), Some(f), Some(t), Some(n), None) => (c, f, t, n),
            _ => return Err(bad()),
        };
        if cluster != auth.cluster_id.as_bytes() {
            return Err(Refusal(format!(
                "cluster id '{}' is not this cluster's ('{}')",
                String::from_utf8_lossy(cluster)
                    .chars()
                    .take(MAX_CLUSTER_ID)
                    .collect::<String>(),
                auth.cluster_id
            )));
        }
        let from = parse_u64(from).ok_or_else(bad)?;
        let to = parse_u64(to).ok_or_else(bad)?;
        if to != me {
            return Err(Refusal(format!("this is node {me}, not node {to}")));
        }
        if from == me || !is_peer(from) {
            return Err(Refusal(format!("node {from} is not a peer of node {me}")));
        }
        let dialer_nonce = unhex(nonce).ok_or_else(bad)?;
        let link = Link {
            dialer: from,
            acceptor: me,
            dialer_nonce,
            acceptor_nonce: auth.fresh_nonce(),
        };
        let challenge = format!("CHALLENGE {}", hex(&link.acceptor_nonce));
        Ok((
            Acceptor {
                link,
                seq: 0,
                last_kind: None,
            },
            challenge,
        ))
    }

    /// Checks the next request line; returns its kind and payload.
    pub fn open_request(
        &mut self,
        auth: &PeerAuth,
        line: &[u8],
    ) -> Result<(Kind, Vec<u8>), Refusal> {
        let fields = split_sealed(line)
            .ok_or_else(|| Refusal("usage: RAFT|FWD <seq> <base64> <tag>".into()))?;
        let kind =
            Kind::from_verb(fields.word).ok_or_else(|| Refusal("expected RAFT or FWD".into()))?;
        let payload = self
            .link
            .open(auth, Direction::Request, kind, self.seq + 1, &fields)
            .map_err(Refusal)?;
        self.seq += 1;
        self.last_kind = Some(kind);
        Ok((kind, payload))
    }

    /// Seals the reply to the request opened last.
    pub fn seal_reply(&self, auth: &PeerAuth, payload: &[u8]) -> String {
        let kind = self.last_kind.unwrap_or(Kind::Raft);
        self.link
            .seal(auth, Direction::Reply, kind, self.seq, payload)
    }

    /// The authenticated id of the node at the other end.
    pub fn peer(&self) -> NodeId {
        self.link.dialer
    }
}

fn hex<const N: usize>(bytes: &[u8; N]) -> String {
    super::sha256::to_hex(bytes)
}

/// Decodes exactly `N` bytes of lower-case hex.
fn unhex<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    if text.len() != 2 * N {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (o, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        *o = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Some(out)
}

/// The start of a line, for error messages.
fn shown(line: &[u8]) -> String {
    String::from_utf8_lossy(&line[..line.len().min(200)]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn auth(key: &[u8], seed: u8) -> PeerAuth {
        PeerAuth::with_seed(Some(key), "test", [seed; 32]).unwrap()
    }

    /// Node 1 dials node 2: a completed handshake.
    fn handshake(d_auth: &PeerAuth, a_auth: &PeerAuth) -> (Dialer, Acceptor) {
        let (mut dialer, hello) = Dialer::hello(d_auth, 1, 2);
        let (acceptor, challenge) =
            Acceptor::hello(a_auth, 2, |id| (1..=3).contains(&id), hello.as_bytes()).unwrap();
        dialer.accept_challenge(challenge.as_bytes()).unwrap();
        (dialer, acceptor)
    }

    #[test]
    fn requests_and_replies_round_trip_under_one_key() {
        let (a1, a2) = (auth(KEY, 1), auth(KEY, 2));
        let (mut dialer, mut acceptor) = handshake(&a1, &a2);
        for (i, payload) in [&b"vote for me"[..], b"", &[0u8, 255, 10, 13]]
            .iter()
            .enumerate()
        {
            let kind = if i == 1 { Kind::Forward } else { Kind::Raft };
            let line = dialer.seal_request(&a1, kind, payload);
            assert_eq!(
                acceptor.open_request(&a2, line.as_bytes()),
                Ok((kind, payload.to_vec()))
            );
            assert_eq!(acceptor.peer(), 1);
            let reply = acceptor.seal_reply(&a2, b"granted");
            assert_eq!(
                dialer.open_reply(&a1, kind, reply.as_bytes()),
                Ok(b"granted".to_vec())
            );
        }
    }

    /// Every single-byte change to a sealed request or reply is refused.
    #[test]
    fn flipping_any_byte_of_a_message_is_refused() {
        let (a1, a2) = (auth(KEY, 1), auth(KEY, 2));
        let (mut dialer, acceptor) = handshake(&a1, &a2);
        let line = dialer.seal_request(&a1, Kind::Raft, b"AppendEntries term 7");
        for i in 0..line.len() {
            let mut forged = line.clone().into_bytes();
            forged[i] ^= 1;
            let mut fresh = Acceptor {
                link: acceptor.link.clone(),
                seq: 0,
                last_kind: None,
            };
            assert!(
                fresh.open_request(&a2, &forged).is_err(),
                "byte {i} flipped: accepted"
            );
        }
        let mut fresh = Acceptor {
            link: acceptor.link.clone(),
            seq: 0,
            last_kind: None,
        };
        fresh.open_request(&a2, line.as_bytes()).unwrap();
        let reply = fresh.seal_reply(&a2, b"success");
        for i in 0..reply.len() {
            let mut forged = reply.clone().into_bytes();
            forged[i] ^= 1;
            assert!(
                dialer.open_reply(&a1, Kind::Raft, &forged).is_err(),
                "reply byte {i}"
            );
        }
    }

    /// The tag covers each field of the MAC input: change any one, the tag changes.
    #[test]
    fn the_tag_covers_every_field() {
        let a = auth(KEY, 1);
        let link = Link {
            dialer: 1,
            acceptor: 2,
            dialer_nonce: [3; 16],
            acceptor_nonce: [4; 16],
        };
        let base = link.tag(&a, Direction::Request, Kind::Raft, 5, b"payload");
        let other_cluster = PeerAuth::with_seed(Some(KEY), "tesu", [1; 32]).unwrap();
        let other_key = auth(b"1123456789abcdef0123456789abcdef", 1);
        let mut variants = vec![
            (
                "cluster id",
                link.tag(
                    &other_cluster,
                    Direction::Request,
                    Kind::Raft,
                    5,
                    b"payload",
                ),
            ),
            (
                "key",
                link.tag(&other_key, Direction::Request, Kind::Raft, 5, b"payload"),
            ),
            (
                "direction",
                link.tag(&a, Direction::Reply, Kind::Raft, 5, b"payload"),
            ),
            (
                "kind",
                link.tag(&a, Direction::Request, Kind::Forward, 5, b"payload"),
            ),
            (
                "seq",
                link.tag(&a, Direction::Request, Kind::Raft, 4, b"payload"),
            ),
            (
                "payload",
                link.tag(&a, Direction::Request, Kind::Raft, 5, b"paylobd"),
            ),
        ];
        let mut changed = |what: &'static str, f: &dyn Fn(&mut Link)| {
            let mut l = link.clone();
            f(&mut l);
            variants.push((
                what,
                l.tag(&a, Direction::Request, Kind::Raft, 5, b"payload"),
            ));
        };
        changed("sender", &|l| l.dialer ^= 1 << 8);
        changed("receiver", &|l| l.acceptor ^= 1 << 16);
        changed("dialer nonce", &|l| l.dialer_nonce[15] ^= 1);
        changed("acceptor nonce", &|l| l.acceptor_nonce[0] ^= 1);
        for (what, tag) in variants {
            assert!(!ct_eq(&tag, &base), "{what} is not covered");
        }
    }

    #[test]
    fn a_node_with_another_key_is_refused() {
        let (a1, a2) = (auth(KEY, 1), auth(b"another key, 32 bytes long......", 2));
        let (mut dialer, mut acceptor) = handshake(&a1, &a2);
        let line = dialer.seal_request(&a1, Kind::Raft, b"vote for me");
        let err = acceptor.open_request(&a2, line.as_bytes()).unwrap_err();
        assert!(err.0.contains("bad tag"), "{err}");
    }

    /// A captured line is refused when replayed on its connection (stale seq)
    /// and on a new connection (another acceptor nonce).
    #[test]
    fn replayed_lines_are_refused() {
        let (a1, a2) = (auth(KEY, 1), auth(KEY, 2));
        let (mut dialer, mut acceptor) = handshake(&a1, &a2);
        let line = dialer.seal_request(&a1, Kind::Forward, b"TRANSFER t1 a b 5");
        acceptor.open_request(&a2, line.as_bytes()).unwrap();
        assert!(
            acceptor.open_request(&a2, line.as_bytes()).is_err(),
            "same connection"
        );
        // The attacker replays the whole recorded conversation on a new connection.
        let recorded_hello = format!("PEER test 1 2 {}", hex(&dialer.link.dialer_nonce));
        let (mut second, _) = Acceptor::hello(&a2, 2, |_| true, recorded_hello.as_bytes()).unwrap();
        assert_ne!(second.link.acceptor_nonce, acceptor.link.acceptor_nonce);
        assert!(
            second.open_request(&a2, line.as_bytes()).is_err(),
            "new connection"
        );
    }

    /// A reply cannot answer another request, and a request reflected back to
    /// its sender is not a reply.
    #[test]
    fn replies_are_bound_to_their_request_and_direction() {
        let (a1, a2) = (auth(KEY, 1), auth(KEY, 2));
        let (mut dialer, mut acceptor) = handshake(&a1, &a2);
        let first = dialer.seal_request(&a1, Kind::Raft, b"one");
        acceptor.open_request(&a2, first.as_bytes()).unwrap();
        let old_reply = acceptor.seal_reply(&a2, b"success");
        dialer
            .open_reply(&a1, Kind::Raft, old_reply.as_bytes())
            .unwrap();
        let _second = dialer.seal_request(&a1, Kind::Raft, b"two");
        assert!(matches!(
            dialer.open_reply(&a1, Kind::Raft, old_reply.as_bytes()),
            Err(ReplyError::Forged(_))
        ));
        let reflected = first.replacen("RAFT", "OK", 1);
        assert!(dialer
            .open_reply(&a1, Kind::Raft, reflected.as_bytes())
            .is_err());
    }

    #[test]
    fn handshakes_naming_the_wrong_cluster_node_or_peer_are_refused() {
        let a = auth(KEY, 2);
        let is_peer = |id: NodeId| (1..=3).contains(&id);
        let nonce = "00".repeat(16);
        for (line, want) in [
            (format!("PEER other 1 2 {nonce}"), "cluster id"),
            (format!("PEER test 1 3 {nonce}"), "not node 3"),
            (format!("PEER test 2 2 {nonce}"), "not a peer"),
            (format!("PEER test 9 2 {nonce}"), "not a peer"),
            ("PEER test 1 2 zz".to_string(), "usage"),
            ("PEER test 1".to_string(), "usage"),
            (format!("PEER test 1 2 {nonce} extra"), "usage"),
        ] {
            let err = Acceptor::hello(&a, 2, is_peer, line.as_bytes()).unwrap_err();
            assert!(err.0.contains(want), "{line}: {err}");
        }
    }

    #[test]
    fn nonces_do_not_repeat_and_keys_must_be_long_enough() {
        let a = auth(KEY, 9);
        assert_ne!(a.fresh_nonce(), a.fresh_nonce());
        assert!(PeerAuth::with_seed(Some(&[1u8; 15]), "c", [0; 32]).is_err());
        assert!(PeerAuth::with_seed(Some(KEY), "has space", [0; 32]).is_err());
        assert!(PeerAuth::with_seed(None, "", [0; 32]).is_err());
        assert!(!PeerAuth::with_seed(None, "c", [0; 32]).unwrap().is_keyed());
    }
}
