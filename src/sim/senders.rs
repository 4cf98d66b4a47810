//! A simulated server's sending side: the runtime's own queue per peer,
//! drained as the runtime's sender threads drain it.
//!
//! The queue is [`crate::node::peer_queue::PeerQueue`], the one the threaded
//! runtime's senders run: a request joins it, past its bound the oldest is
//! dropped, the request taken carries the AppendEntries queued behind it
//! (a heartbeat rides on entries while the peer accepts), and a snapshot
//! piece reads its bytes from the server's disk just before it leaves.
//!
//! A runtime worker makes one call at a time and takes the next request when
//! the answer comes back; a call stuck for longer than
//! [`crate::node::sender::STUCK_AFTER`] no longer holds up the queue, since
//! the next request starts another worker. The simulator does the same: per
//! peer, at most one call holds up the queue, until its answer is delivered
//! back to the server, or until a later request finds it stuck (a lost
//! request or answer). What it leaves out: the cap on workers per peer
//! (`MAX_WORKERS`) and the idle ones' exit, which change when a call leaves,
//! never what it carries.

use super::invariants::Violation;
use super::network::Endpoint;
use super::packets::Body;
use super::trace::show_request;
use super::world::World;
use super::Time;
use crate::node::peer_queue::{accepted_append, fill_snapshot_piece, PeerQueue};
use crate::node::sender::STUCK_AFTER;
use crate::raft::messages::{NodeId, Response};
use crate::raft::ready::Outbound;

/// [`STUCK_AFTER`] in virtual time.
const STUCK: Time = STUCK_AFTER.as_micros() as Time;

/// One peer's queue and the call holding it up.
#[derive(Default)]
pub(super) struct SimSender {
    queue: PeerQueue,
    /// The call in flight that holds up the queue: its number and when it
    /// began.
    holding: Option<(u64, Time)>,
}

impl World {
    /// Queues server `node`'s requests for their peers, in order, and sends
    /// what each peer's sender may send now.
    pub(super) fn queue_requests(
        &mut self,
        node: usize,
        requests: Vec<Outbound>,
    ) -> Result<(), Violation> {
        for Outbound { to, request } in requests {
            let Some(running) = self.nodes[node].running.as_mut() else {
                return Ok(());
            };
            let term = running.raft.status().term;
            let dropped = running.senders.entry(to).or_default().queue.push(request);
            if let (Some(dropped), true) = (dropped, self.trace.on()) {
                let what = show_request(&dropped);
                let id = node as NodeId + 1;
                let why = format_args!("queue to {to} full: dropped {what}");
                self.trace.node(id, term, why);
            }
            self.pump(node, to)?;
        }
        Ok(())
    }

    /// The answer to call `call` from peer `from` reached server `node`:
    /// the queue learns whether the peer accepts AppendEntries, and the next
    /// request may leave.
    pub(super) fn call_answered(
        &mut self,
        node: usize,
        from: NodeId,
        call: u64,
        response: &Response,
    ) -> Result<(), Violation> {
        let Some(running) = self.nodes[node].running.as_mut() else {
            return Ok(());
        };
        let Some(sender) = running.senders.get_mut(&from) else {
            return Ok(());
        };
        sender.queue.answered(accepted_append(response));
        if sender.holding.is_some_and(|(holding, _)| holding == call) {
            sender.holding = None;
        }
        self.pump(node, from)
    }

    /// Sends server `node`'s next request to peer `to`, unless a call that
    /// is not stuck holds up the queue.
    fn pump(&mut self, node: usize, to: NodeId) -> Result<(), Violation> {
        let now = self.now;
        let chunk_bytes = self.knobs.snapshot_chunk_bytes;
        let n = &mut self.nodes[node];
        let Some(running) = n.running.as_mut() else {
            return Ok(());
        };
        let Some(sender) = running.senders.get_mut(&to) else {
            return Ok(());
        };
        if sender.holding.is_some_and(|(_, since)| now < since + STUCK) {
            return Ok(());
        }
        let request = loop {
            let Some(mut request) = sender.queue.pop() else {
                return Ok(());
            };
            // The snapshot is gone (a newer one replaced it): a lost message.
            if fill_snapshot_piece(&mut request, chunk_bytes, n.disk.storage()) {
                break request;
            }
        };
        running.next_call += 1;
        let call = running.next_call;
        sender.holding = Some((call, now));
        let requester_incarnation = n.incarnation;
        if self.trace.on() {
            let term = running.raft.status().term;
            let what = show_request(&request);
            self.trace
                .node(node as NodeId + 1, term, format_args!("-> {to} {what}"));
        }
        self.checker.on_request_sent(node, &request)?;
        let body = Body::Request {
            request,
            requester_incarnation,
            call,
            msg: self.next_msg(),
        };
        let peer = Endpoint::Node((to - 1) as usize);
        self.send(Endpoint::Node(node), peer, body);
        Ok(())
    }
}
