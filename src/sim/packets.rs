//! Packets: how messages travel between servers and clients, and where they land.
//!
//! Sending asks the [`super::network::Network`] for the copies' delays (none if
//! dropped, two if duplicated) and schedules each arrival. On arrival the
//! partition is checked, then the packet goes to its client, or to its server:
//! not if the server is down or restarted since the packet was sent (a real
//! connection would have broken), into its inbox if it is paused, otherwise
//! into one step of its core.

use super::invariants::Violation;
use super::network::Endpoint;
use super::server::StepInput;
use super::trace::show_endpoint;
use super::world::{Event, World};
use super::Time;

/// The client index a scripted scenario's own requests come from.
pub(super) const SCRIPT_CLIENT: usize = usize::MAX;
use crate::raft::messages::{Index, Request, Response};
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
    /// call number tells the requester's sender which call ended.
    Request {
        request: Request,
        requester_incarnation: u32,
        call: u64,
    },
    /// Its reply, carrying the request back (as the runtime's senders do).
    Response {
        request: Request,
        response: Response,
        requester_incarnation: u32,
        call: u64,
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
        if let (Endpoint::Client(SCRIPT_CLIENT), Body::ClientReply { attempt, reply, .. }) =
            (to, &body)
        {
            // A scripted scenario's request: its first answer's line is kept, not sent.
            self.script_replies
                .entry(*attempt)
                .or_insert_with(|| reply.to_string());
            return;
        }
        let delays = self.net.delays();
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

    pub(super) fn deliver(&mut self, packet: Packet) -> Result<(), Violation> {
        if !self.net.allows(packet.from, packet.to) {
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
            return Ok(()); // sent to a server that is down, or to an earlier incarnation
        }
        if n.paused_since.is_some() {
            n.inbox.push(packet);
            return Ok(());
        }
        let from = match packet.from {
            Endpoint::Node(from) => from,
            Endpoint::Client(from) => from,
        };
        let input = match packet.body {
            Body::Request {
                request,
                requester_incarnation,
                call,
            } => StepInput::Request {
                from,
                request,
                requester_incarnation,
                call,
            },
            Body::Response {
                request,
                response,
                requester_incarnation,
                call,
            } => {
                if requester_incarnation != n.incarnation {
                    return Ok(()); // a reply to a request of an earlier incarnation
                }
                StepInput::Response {
                    from,
                    request,
                    response,
                    call,
                }
            }
            Body::ClientRequest { attempt, op } => StepInput::Client {
                client: from,
                attempt,
                op,
            },
            Body::ClientReply { .. } => return Ok(()),
        };
        self.step(node, Some(input))
    }
}
