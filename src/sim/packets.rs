//! Packets: how messages travel between servers and clients, and where they land.
//!
//! Sending asks the [`super::network::Network`] for the copies' delays (none if
//! dropped, two if duplicated), adds a late copy during a late-copies fault,
//! and schedules each arrival. On arrival the
//! partition is checked, then the packet goes to its client, or to its server:
//! not if the server is down or restarted since the packet was sent (a real
//! connection would have broken), into its inbox if it is paused, otherwise
//! into one step of its core.

use super::invariants::Violation;
use super::network::Endpoint;
use super::server::StepInput;
use super::trace::{show, show_endpoint};
use super::world::{Event, World};
use super::{format_time, Time};

/// The client index a scripted scenario's own requests come from.
pub(super) const SCRIPT_CLIENT: usize = usize::MAX;
use crate::events::{Answer, Loss, Rpc, What};
use crate::raft::messages::{Index, NodeId, Request, Response};
use crate::raft::Verdict;
use crate::service::reply::Reply;
use crate::service::state_machine::Op;

/// A message in flight.
#[derive(Debug, Clone)]
pub(super) struct Packet {
    pub(super) from: Endpoint,
    pub(super) to: Endpoint,
    pub(super) sent_at: Time,
    pub(super) body: Body,
}

#[derive(Debug, Clone)]
pub(super) enum Body {
    /// A Raft RPC; the requester's incarnation routes the reply, and its
    /// call number tells the requester's sender which call ended. `msg` is
    /// its id in the run's events.
    Request {
        request: Request,
        requester_incarnation: u32,
        call: u64,
        msg: u64,
    },
    /// Its reply, carrying the request back (as the runtime's senders do),
    /// with the request's id and the rule that decided the answer.
    Response {
        request: Request,
        response: Response,
        requester_incarnation: u32,
        call: u64,
        msg: u64,
        verdict: Verdict,
    },
    /// A client's operation.
    ClientRequest { attempt: u64, op: Op },
    /// A server's answer to one attempt, with the index it was applied at.
    ClientReply {
        attempt: u64,
        reply: Reply,
        index: Option<Index>,
    },
}

impl World {
    pub(super) fn send(&mut self, from: Endpoint, to: Endpoint, body: Body) {
        if self.recording() {
            self.record_sent(from, to, &body);
        }
        if let (Endpoint::Client(SCRIPT_CLIENT), Body::ClientReply { attempt, reply, .. }) =
            (to, &body)
        {
            // A scripted scenario's request: its first answer's line is kept, not sent.
            self.script_replies
                .entry(*attempt)
                .or_insert_with(|| reply.to_string());
            return;
        }
        let mut delays = self.net.delays();
        if delays.is_empty() && self.trace.on() {
            self.trace.sim(
                "net",
                format_args!("dropped {} -> {}", show_endpoint(from), show_endpoint(to)),
            );
        }
        if delays.len() > 1 && self.trace.on() {
            self.trace.sim(
                "net",
                format_args!(
                    "duplicated {} -> {}",
                    show_endpoint(from),
                    show_endpoint(to)
                ),
            );
        }
        if let Some(late) = self.late_copy(to, &body) {
            if self.trace.on() {
                self.trace.sim(
                    "net",
                    format_args!(
                        "{} -> {} will arrive again in {}",
                        show_endpoint(from),
                        show_endpoint(to),
                        format_time(late)
                    ),
                );
            }
            delays.push(late);
        }
        // Recorded as what the network will do, the late copy included.
        if let (Some(msg), Endpoint::Node(a), Endpoint::Node(b)) = (body.msg(), from, to) {
            let (from, to) = (a as NodeId + 1, b as NodeId + 1);
            if delays.is_empty() {
                let why = Loss::Dropped;
                self.record(a, What::Lost { from, to, msg, why });
            } else if delays.len() > 1 {
                self.record(a, What::Duplicated { from, to, msg });
            }
        }
        for delay in delays {
            let packet = Packet {
                from,
                to,
                sent_at: self.now,
                body: body.clone(),
            };
            self.schedule(delay, Event::Deliver(Box::new(packet)));
        }
    }

    /// The delay of a late copy of `body` to `to`, if it gets one: only
    /// AppendEntries and InstallSnapshot requests do, during a late-copies
    /// fault on their server.
    fn late_copy(&mut self, to: Endpoint, body: &Body) -> Option<Time> {
        let Endpoint::Node(node) = to else {
            return None;
        };
        let Body::Request { request, .. } = body else {
            return None;
        };
        if !matches!(
            request,
            Request::AppendEntries(_) | Request::InstallSnapshot(_)
        ) {
            return None;
        }
        self.late_copies.delay(node, self.now)
    }

    pub(super) fn deliver(&mut self, packet: Packet) -> Result<(), Violation> {
        if !self.net.allows(packet.from, packet.to) {
            self.record_lost(&packet, Loss::Partition);
            if self.trace.on() {
                self.trace.sim(
                    "net",
                    format_args!(
                        "lost {} -> {} (partition)",
                        show_endpoint(packet.from),
                        show_endpoint(packet.to)
                    ),
                );
            }
            return Ok(());
        }
        let node = match packet.to {
            Endpoint::Client(client) => {
                if let Body::ClientReply {
                    attempt,
                    reply,
                    index,
                } = packet.body
                {
                    self.on_client_reply(client, attempt, reply, index);
                }
                return Ok(());
            }
            Endpoint::Node(node) => node,
        };
        let n = &mut self.nodes[node];
        if n.running.is_none() || packet.sent_at < n.restarted_at {
            // Sent to a server that is down, or to an earlier incarnation.
            self.record_lost(&packet, Loss::Down);
            return Ok(());
        }
        if n.paused_since.is_some() {
            n.inbox.push(packet);
            return Ok(());
        }
        let from = match packet.from {
            Endpoint::Node(from) => from,
            Endpoint::Client(from) => from,
        };
        if let Body::Response {
            requester_incarnation,
            ..
        } = &packet.body
        {
            if *requester_incarnation != n.incarnation {
                // A reply to a request of an earlier incarnation.
                self.record_lost(&packet, Loss::Down);
                return Ok(());
            }
        }
        if self.recording() {
            self.record_received(node, from, &packet.body);
        }
        let input = match packet.body {
            Body::Request {
                request,
                requester_incarnation,
                call,
                msg,
            } => StepInput::Request {
                from,
                request,
                requester_incarnation,
                call,
                msg,
            },
            Body::Response {
                request,
                response,
                call,
                ..
            } => StepInput::Response {
                from,
                request,
                response,
                call,
            },
            Body::ClientRequest { attempt, op } => StepInput::Client {
                client: from,
                attempt,
                op,
            },
            Body::ClientReply { .. } => return Ok(()),
        };
        self.step(node, Some(input))
    }

    /// Records a packet leaving: a request, a reply (with the rule that
    /// decided it), or a server's answer to a client.
    fn record_sent(&mut self, from: Endpoint, to: Endpoint, body: &Body) {
        let Endpoint::Node(node) = from else {
            return;
        };
        let peer = match to {
            Endpoint::Node(n) => n as NodeId + 1,
            Endpoint::Client(c) => client_id(c),
        };
        let what = match body {
            Body::Request { request, msg, .. } => What::Send {
                to: peer,
                msg: *msg,
                rpc: Rpc::of(request, 0),
            },
            Body::Response {
                request,
                response,
                msg,
                verdict,
                ..
            } => What::Reply {
                to: peer,
                msg: *msg,
                rpc: Rpc::of(request, 0),
                answer: Answer::of(response),
                verdict: *verdict,
            },
            Body::ClientReply {
                attempt,
                reply,
                index,
            } => What::ClientReply {
                client: peer,
                request: *attempt,
                result: reply.label(),
                index: *index,
                text: Some(reply.to_string().into()),
            },
            Body::ClientRequest { .. } => return,
        };
        self.record(node, what);
    }

    /// Records a packet reaching server `node`'s core.
    fn record_received(&mut self, node: usize, from: usize, body: &Body) {
        let what = match body {
            Body::Request { request, msg, .. } => What::Receive {
                from: from as NodeId + 1,
                msg: *msg,
                rpc: Rpc::of(request, 0),
            },
            Body::Response {
                request,
                response,
                msg,
                ..
            } => What::ReplyReceived {
                from: from as NodeId + 1,
                msg: *msg,
                rpc: Rpc::of(request, 0),
                answer: Answer::of(response),
            },
            Body::ClientRequest { attempt, op } => What::ClientRequest {
                client: client_id(from),
                request: *attempt,
                op: crate::service::command::word(&op.command),
                text: Some(show(op).into()),
            },
            Body::ClientReply { .. } => return,
        };
        self.record(node, what);
    }

    /// Records that a message between servers never reached its core.
    fn record_lost(&mut self, packet: &Packet, why: Loss) {
        if let (Some(msg), Endpoint::Node(a), Endpoint::Node(b)) =
            (packet.body.msg(), packet.from, packet.to)
        {
            let (from, to) = (a as NodeId + 1, b as NodeId + 1);
            self.record(a, What::Lost { from, to, msg, why });
        }
    }
}

impl Body {
    /// The message id of a request or reply between servers.
    fn msg(&self) -> Option<u64> {
        match self {
            Body::Request { msg, .. } | Body::Response { msg, .. } => Some(*msg),
            _ => None,
        }
    }
}

/// A client's id in the events: its index + 1 (0: a scripted scenario).
fn client_id(client: usize) -> u64 {
    match client {
        SCRIPT_CLIENT => 0,
        c => c as u64 + 1,
    }
}
