//! Peer connections: the accepting end of the authenticated peer protocol
//! (`auth::peer`), and forwarding client lines to the leader on links.
//!
//! Every request line's tag is checked before anything in it is decoded. A
//! refused line gets `ERR AUTH <why>`, a rate-limited log line naming the
//! remote address, and a closed connection; nothing reaches Raft or the state
//! machine. A forwarded line's answer travels back as the [`Reply`]'s binary
//! encoding, so the follower relays exactly the reply the leader made.

use std::io::{BufReader, BufWriter, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{lock, Shared};
use crate::auth::limit::held_back_note;
use crate::auth::peer::{Acceptor, Kind, Refusal};
use crate::codec::{Decode, Encode};
use crate::raft::messages::{NodeId, Request};
use crate::service::reply::{Code, Reply};
use crate::transport::line::{read_line_before, LineError};
use crate::transport::link::{LinkError, PeerLink};
use crate::transport::tcp::{MAX_PEER_LINE, PEER_IDLE_TIMEOUT};
use crate::{debug, info};

/// The first tagged request must follow the handshake within this long.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves a connection whose first line was `hello` (a `PEER` line).
pub(super) fn serve(
    hello: &[u8],
    mut reader: BufReader<TcpStream>,
    mut writer: BufWriter<TcpStream>,
    remote: SocketAddr,
    shared: &Shared,
) {
    let me = shared.config.id;
    let auth = &shared.auth;
    // Any node that holds the cluster key may call: a server answers whoever
    // asks, member or not (thesis §4.1), which is how a leader reaches a
    // server it is adding, and a new voter votes before it knows it is one.
    let (mut acceptor, challenge) = match Acceptor::hello(auth, me, |id| id != 0, hello) {
        Ok(accepted) => accepted,
        Err(refusal) => return refuse(&mut writer, remote, None, &refusal, shared),
    };
    if send(&mut writer, &challenge).is_err() {
        return;
    }
    let mut wait = HANDSHAKE_TIMEOUT;
    loop {
        let deadline = Instant::now() + wait;
        let line = match read_line_before(&mut reader, |_| MAX_PEER_LINE, deadline) {
            Ok(line) => line,
            Err(LineError::TooLong) => {
                let too_long = Reply::error(Code::TooLong, "peer line too long");
                let _ = send(&mut writer, &too_long.to_string());
                return;
            }
            Err(_) => return,
        };
        wait = PEER_IDLE_TIMEOUT;
        let (kind, payload) = match acceptor.open_request(auth, &line) {
            Ok(opened) => opened,
            Err(refusal) => {
                let claimed = Some(acceptor.peer());
                return refuse(&mut writer, remote, claimed, &refusal, shared);
            }
        };
        let from = acceptor.peer();
        let reply = match kind {
            Kind::Raft => {
                handle_raft(from, &payload, shared).map(|r| acceptor.seal_reply(auth, &r))
            }
            Kind::Forward => {
                let reply = match std::str::from_utf8(&payload) {
                    Ok(line) => shared.frontend.answer_forwarded(line),
                    Err(_) => Reply::error(Code::BadRequest, "line is not valid UTF-8"),
                };
                Ok(acceptor.seal_reply(auth, &reply.encode()))
            }
        };
        if send(&mut writer, &reply.unwrap_or_else(|e| e)).is_err() {
            return;
        }
    }
}

/// Hands an authenticated Raft request to the node; the encoded response, or
/// an error line.
fn handle_raft(from: NodeId, payload: &[u8], shared: &Shared) -> Result<Vec<u8>, String> {
    let refuse = |code, message: &str| Reply::error(code, message).to_string();
    if !shared.config.partition.allows(from, shared.config.id) {
        return Err(refuse(Code::NoLeader, "partitioned"));
    }
    let request = Request::decode(payload).map_err(|e| refuse(Code::BadRequest, &e.to_string()))?;
    match shared.frontend.replica().node().handle_rpc(from, request) {
        Some(response) => Ok(response.encode()),
        None => Err(refuse(Code::NoLeader, "node stopped")),
    }
}

/// Answers `ERR AUTH`, logs (rate-limited) and lets the connection close.
fn refuse(
    writer: &mut BufWriter<TcpStream>,
    remote: SocketAddr,
    claimed: Option<NodeId>,
    refusal: &Refusal,
    shared: &Shared,
) {
    if let Some(held_back) = shared.refusals.admit() {
        let status = shared.frontend.replica().node().status();
        let who = claimed.map_or(String::new(), |id| format!(" (claiming to be node {id})"));
        info!(
            status.id,
            status.term,
            "refused a peer message from {remote}{who}: {refusal}{}",
            held_back_note(held_back)
        );
    }
    let _ = send(
        writer,
        &Reply::error(Code::Auth, refusal.to_string()).to_string(),
    );
}

fn send(writer: &mut BufWriter<TcpStream>, line: &str) -> std::io::Result<()> {
    writer.write_all(line.as_bytes())?;
    writer.write_all(b"\n")?;
    writer.flush()
}

/// Relays a client line to the leader this server knows of, on a link, and
/// returns the leader's reply.
pub(super) fn forward(line: &str, shared: &Shared) -> Reply {
    let me = shared.config.id;
    let no_leader = |why: &str| Reply::error(Code::NoLeader, format!("{why}; retry"));
    let leader = match shared.frontend.replica().node().status().leader_id {
        Some(l) if l != me => l,
        _ => return no_leader("no leader known"),
    };
    if !shared.config.partition.allows(me, leader) {
        return no_leader("leader unreachable");
    }
    // The configuration is the source of truth for addresses (thesis §4).
    let configuration = shared.frontend.replica().node().status().configuration;
    let Some(addr) = configuration.address(leader).map(str::to_string) else {
        return no_leader("no address known for the leader");
    };
    let addr = &addr;
    let unreachable = || no_leader(&format!("leader {leader} unreachable"));
    // A pooled link may have been closed by the leader (idle, or restarted);
    // then the request never arrived and one retry on a new link is safe.
    let mut pooled = lock(&shared.forward_pool)
        .get_mut(&leader)
        .and_then(|links| {
            while let Some(link) = links.pop() {
                if link.idle_for() < PEER_IDLE_TIMEOUT / 2 {
                    return Some(link);
                }
            }
            None
        });
    for from_pool in [pooled.is_some(), false] {
        let mut link = match pooled.take() {
            Some(link) => link,
            None => match PeerLink::open(addr, Arc::clone(&shared.auth), me, leader) {
                Ok(link) => link,
                Err(e) => {
                    report_refusal(leader, &e, shared);
                    return unreachable();
                }
            },
        };
        // As long as the leader may take to answer this line, and a margin.
        let reply_timeout = shared.frontend.reply_timeout(line) + shared.config.request_timeout;
        let _ = link.set_reply_timeout(reply_timeout);
        match link.call(Kind::Forward, line.as_bytes()) {
            Ok(reply) => {
                lock(&shared.forward_pool)
                    .entry(leader)
                    .or_default()
                    .push(link);
                debug!(me, 0, "forwarded a request to leader {leader}");
                // An undecodable answer came from the leader: the outcome is unknown.
                return Reply::decode(&reply).unwrap_or_else(|_| Reply::outcome_unknown());
            }
            Err(e) if from_pool && e.is_closed() => continue,
            // The leader refused our tag: the request was not executed.
            Err(e) if e.is_auth_refusal() => {
                report_refusal(leader, &e, shared);
                return no_leader(&format!(
                    "leader {leader} refused this node's peer authentication"
                ));
            }
            Err(e) => {
                report_refusal(leader, &e, shared);
                return Reply::outcome_unknown();
            }
        }
    }
    unreachable()
}

fn report_refusal(leader: NodeId, e: &LinkError, shared: &Shared) {
    if !(e.is_auth_refusal() || matches!(e, LinkError::Forged(_))) {
        return;
    }
    if let Some(held_back) = shared.refusals.admit() {
        let status = shared.frontend.replica().node().status();
        info!(
            status.id,
            status.term,
            "cannot forward to leader {leader}: {e}{}",
            held_back_note(held_back)
        );
    }
}
