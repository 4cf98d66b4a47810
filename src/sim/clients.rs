//! Simulated clients: a closed-loop workload that retries exactly as `src/client.rs` does.
//!
//! Each client first registers a session (`REGISTER`; the state machine
//! assigns the id), then numbers its operations; a retry reuses the same
//! `(id, seq)`, so the state machine's session table applies it at most
//! once. On `ERR NO_LEADER`, `ERR TIMEOUT` or no reply within its timeout, the
//! client tries the next server after a backoff (10 ms doubling to 200 ms),
//! forever: a simulated client never gives up, so every operation ends with a
//! definite reply or is still pending when the run ends (its outcome unknown).
//!
//! Values are unique (`c3.19`), txids too, so the history can be checked: the
//! KV operations for linearizability, the appends for exactly-once, the ledger
//! for conserved money. A compare-and-swap is a transaction (`TXN`): set the
//! key to a new value if its value is still the one this client last saw
//! (or if it is absent, when the client has seen none), else read it.

use super::knobs::Knobs;
use super::network::Endpoint;
use super::packets::Body;
use super::trace::show;
use super::world::{Event, World};
use super::{Time, MS};
use crate::raft::messages::Index;
use crate::raft::rng::Rng;
use std::collections::BTreeMap;

use crate::service::command::{Command, Transfer};
use crate::service::reply::Reply;
use crate::service::state_machine::Op;
use crate::service::txn::{Compare, CompareOp, OpResult, Target, Txn, TxnOp};

/// Money each account opens with, in cents.
pub(crate) const OPENING_CENTS: i64 = 100_000;

/// What a client is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientState {
    /// Thinking before its next operation.
    Idle,
    /// Waiting for the reply to this attempt of the current operation.
    Waiting {
        /// The attempt number (replies to older attempts are ignored).
        attempt: u64,
    },
    /// Waiting out a backoff before retrying the current operation.
    Backoff,
    /// Finished: the run asked it to stop and its last operation completed.
    Done,
}

/// One operation as the client saw it.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub(crate) client: usize,
    pub(crate) op: Op,
    /// When the client first sent it.
    pub(crate) call: Time,
    /// When the definite reply arrived; `None` if the run ended first.
    pub(crate) ret: Option<Time>,
    /// The definite reply.
    pub(crate) reply: Option<Reply>,
    /// The log index it was applied at, as reported by the server that replied.
    pub(crate) index: Option<Index>,
}

/// One simulated client.
pub(crate) struct SimClient {
    pub(crate) index: usize,
    /// The session id; 0 until the client's `REGISTER` is answered.
    pub(crate) session: u64,
    seq: u64,
    rng: Rng,
    /// The server it sends to next.
    pub(crate) server: usize,
    pub(crate) state: ClientState,
    /// The operation in progress, as an index into the history.
    pub(crate) current: Option<usize>,
    /// Attempts so far, for unique attempt numbers.
    attempts: u64,
    backoff: Time,
    /// Wake-ups scheduled before this token are stale.
    pub(crate) token: u64,
    /// Accounts this client still has to open before its random workload.
    to_open: Vec<usize>,
    /// Operations it may still start once the run asked it to stop.
    pub(crate) final_ops: Option<u32>,
    /// The value it last saw for each key (`None`: absent), for its
    /// compare-and-swaps.
    seen: BTreeMap<String, Option<String>>,
}

impl SimClient {
    /// Client `index`, drawing from `rng`, starting at a random server.
    pub(crate) fn new(index: usize, mut rng: Rng, knobs: &Knobs) -> Self {
        let server = rng.range(0, knobs.nodes as u64) as usize;
        // Client 0 opens the accounts (if this seed has a ledger workload).
        let ledger = knobs.op_weights[3..].iter().any(|&w| w > 0);
        let to_open = if index == 0 && ledger {
            (0..knobs.accounts).rev().collect()
        } else {
            Vec::new()
        };
        SimClient {
            index,
            session: 0,
            seq: 0,
            rng,
            server,
            state: ClientState::Idle,
            current: None,
            attempts: 0,
            backoff: 10 * MS,
            token: 0,
            to_open,
            final_ops: None,
            seen: BTreeMap::new(),
        }
    }

    /// A think time before the next operation.
    pub(crate) fn think(&mut self, knobs: &Knobs) -> Time {
        self.rng.range(0, knobs.think_time + 1)
    }

    /// The next operation of the workload, with a fresh sequence number; a
    /// `REGISTER` first, until the client has a session.
    pub(crate) fn next_op(&mut self, knobs: &Knobs) -> Op {
        self.backoff = 10 * MS;
        if self.session == 0 {
            return Op {
                client_id: 0,
                seq: 0,
                command: Command::Register,
            };
        }
        self.seq += 1;
        let (c, n) = (self.index, self.seq);
        let command = if let Some(account) = self.to_open.pop() {
            Command::Open(account_name(account), OPENING_CENTS)
        } else {
            let key = format!("k{}", self.rng.range(0, knobs.keys as u64));
            let [put, append, get, transfer, audit, balance] = knobs.op_weights;
            let weights = [put, append, get, transfer, audit, balance, knobs.cas_weight];
            match pick(&mut self.rng, &weights) {
                0 => Command::Put(key.into(), format!("c{c}.{n}").into()),
                1 => Command::Append(key.into(), format!("c{c}.{n};").into()),
                2 => Command::Get(key.into()),
                6 => {
                    let expected = self.seen.get(&key).cloned().flatten();
                    cas(&key, expected.as_deref(), &format!("c{c}.{n}"))
                }
                3 => {
                    // Two distinct accounts (a seed has at least two).
                    let accounts = knobs.accounts.max(2) as u64;
                    let from = self.rng.range(0, accounts);
                    let to = (from + 1 + self.rng.range(0, accounts - 1)) % accounts;
                    Command::Transfer(Transfer {
                        txid: format!("t{c}.{n}"),
                        from: account_name(from as usize),
                        to: account_name(to as usize),
                        cents: self.rng.range(1, 50_001) as i64,
                    })
                }
                4 => Command::Audit,
                _ => Command::Balance(account_name(
                    self.rng.range(0, knobs.accounts as u64) as usize
                )),
            }
        };
        Op {
            client_id: self.session,
            seq: self.seq,
            command,
        }
    }

    /// Remembers the value a reply to `command` showed.
    fn saw(&mut self, command: &Command, reply: &Reply) {
        let key = |k: &[u8]| String::from_utf8_lossy(k).into_owned();
        let text = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
        match (command, reply) {
            (Command::Get(k), Reply::Value(v)) => {
                self.seen.insert(key(k), Some(text(v)));
            }
            (Command::Get(k), Reply::NotFound) => {
                self.seen.insert(key(k), None);
            }
            (Command::Txn(t), Reply::Txn(result)) => {
                if let (Some(c), Some(OpResult::Get(page))) =
                    (t.compares.first(), result.results.first())
                {
                    let value = page
                        .kvs
                        .first()
                        .and_then(|kv| kv.value.as_deref())
                        .map(|v| text(v));
                    self.seen.insert(key(&c.key), value);
                }
            }
            _ => {}
        }
    }

    /// Takes the reply to a `REGISTER`: `SESSION <id>`.
    pub(crate) fn registered(&mut self, reply: &Reply) {
        if let Reply::Session(id) = reply {
            self.session = *id;
        }
    }

    /// A new attempt number for the current operation.
    pub(crate) fn next_attempt(&mut self) -> u64 {
        self.attempts += 1;
        self.attempts
    }

    /// Moves to the next of `servers` (the indexes of those that exist, in
    /// order), and returns how long to back off first (10 ms doubling to 200
    /// ms, as `src/client.rs`).
    pub(crate) fn rotate(&mut self, servers: &[usize]) -> Time {
        let next = servers.iter().position(|&s| s > self.server).unwrap_or(0);
        self.server = servers.get(next).copied().unwrap_or(0);
        let pause = self.backoff;
        self.backoff = (self.backoff * 2).min(200 * MS);
        pause
    }
}

/// A compare-and-swap: `key` becomes `new` if its value is `expected`
/// (`None`: if it is absent), else the key is read.
pub(crate) fn cas(key: &str, expected: Option<&str>, new: &str) -> Command {
    let target = match expected {
        Some(value) => Target::Value(value.into()),
        None => Target::Exists(false),
    };
    Command::Txn(Txn {
        compares: vec![Compare {
            key: key.into(),
            target,
            op: CompareOp::Equal,
        }],
        then: vec![TxnOp::Put(key.into(), new.into())],
        otherwise: vec![TxnOp::Get(key.into())],
    })
}

fn account_name(i: usize) -> String {
    format!("a{i}")
}

/// An index drawn with the given weights.
fn pick(rng: &mut Rng, weights: &[u64]) -> usize {
    let total: u64 = weights.iter().sum();
    let mut x = rng.range(0, total.max(1));
    for (i, &w) in weights.iter().enumerate() {
        if x < w {
            return i;
        }
        x -= w;
    }
    0
}

impl World {
    pub(super) fn wake_client(&mut self, client: usize, after: Time) {
        let c = &mut self.clients[client];
        c.token += 1;
        let token = c.token;
        self.schedule(after, Event::ClientWake { client, token });
    }

    pub(super) fn on_client_wake(&mut self, client: usize) {
        match self.clients[client].state {
            ClientState::Idle => {
                let c = &mut self.clients[client];
                if c.final_ops == Some(0) {
                    c.state = ClientState::Done;
                    self.clients_done += 1;
                    return;
                }
                if let Some(left) = c.final_ops.as_mut() {
                    *left -= 1;
                }
                let op = c.next_op(&self.knobs);
                self.history.push(Record {
                    client,
                    op,
                    call: self.now,
                    ret: None,
                    reply: None,
                    index: None,
                });
                self.clients[client].current = Some(self.history.len() - 1);
                self.send_attempt(client);
            }
            ClientState::Waiting { .. } => {
                // No reply in time: try the next server.
                let servers = self.live_servers();
                let pause = self.clients[client].rotate(&servers);
                self.clients[client].state = ClientState::Backoff;
                self.wake_client(client, pause);
            }
            ClientState::Backoff => self.send_attempt(client),
            ClientState::Done => {}
        }
    }

    pub(super) fn send_attempt(&mut self, client: usize) {
        let Some(current) = self.clients[client].current else {
            return;
        };
        let c = &mut self.clients[client];
        let attempt = c.next_attempt();
        c.state = ClientState::Waiting { attempt };
        let server = c.server;
        let op = self.history[current].op.clone();
        if self.trace.on() {
            self.trace.sim(
                &format!("client {client}"),
                format_args!("-> node {} {} (attempt {attempt})", server + 1, show(&op)),
            );
        }
        self.send(
            Endpoint::Client(client),
            Endpoint::Node(server),
            Body::ClientRequest { attempt, op },
        );
        let timeout = self.knobs.client_timeout;
        self.wake_client(client, timeout);
    }

    pub(super) fn on_client_reply(
        &mut self,
        client: usize,
        attempt: u64,
        reply: Reply,
        index: Option<Index>,
    ) {
        if self.clients[client].state != (ClientState::Waiting { attempt }) {
            return; // a reply to an attempt it gave up on
        }
        if self.trace.on() {
            self.trace.sim(
                &format!("client {client}"),
                format_args!("<- {reply} (attempt {attempt})"),
            );
        }
        // "No outcome here; retry", as `src/client.rs` treats it.
        if reply.is_retryable() {
            let servers = self.live_servers();
            let pause = self.clients[client].rotate(&servers);
            self.clients[client].state = ClientState::Backoff;
            self.wake_client(client, pause);
            return;
        }
        if let Some(current) = self.clients[client].current.take() {
            let command = &self.history[current].op.command;
            if *command == Command::Register {
                self.clients[client].registered(&reply);
            }
            self.clients[client].saw(command, &reply);
            let record = &mut self.history[current];
            record.ret = Some(self.now);
            record.reply = Some(reply);
            record.index = index;
            self.stats.ops_ok += 1;
        }
        if let Some(index) = index {
            self.max_acked = self.max_acked.max(index);
        }
        self.clients[client].state = ClientState::Idle;
        let think = self.clients[client].think(&self.knobs);
        self.wake_client(client, think);
    }
}
