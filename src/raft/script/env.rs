//! The script runner's world: servers running the pure core, each with a disk,
//! and a network of per-server queues that a script delivers, drops or cuts.
//!
//! Nothing happens unless a command makes it happen: time passes for one
//! server at a time (`tick`), a `Ready` is executed when a script asks
//! (`ready`, or `stabilize`), a message arrives when it is delivered. Each
//! step prints what it caused, so a script shows the whole exchange.
//!
//! A `Ready` is executed by the executor the threaded runtime and the
//! simulator run (`raft::executor`), with the effects of `ready.rs`: what a
//! script shows is the order that runs.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::super::core::{Config, InitialState, Raft, Role};
use super::super::membership::{ChangeStage, MembershipChange};
use super::super::messages::{Index, NodeId, Request, Response, Term};
use super::super::ready::{Persist, Snapshot};
use super::super::Bug;
use super::ready::WriteInProgress;
use super::show;

/// What one command printed, with sections (`> 1 ready`) that appear only
/// if something is printed under them.
#[derive(Default)]
pub struct Out {
    lines: Vec<String>,
    header: Option<String>,
    indent: bool,
}

impl Out {
    /// Prints one line (under the open section, if any).
    pub fn line(&mut self, text: impl Into<String>) {
        if let Some(header) = self.header.take() {
            self.lines.push(header);
        }
        let text = text.into();
        self.lines.push(if self.indent {
            format!("  {text}")
        } else {
            text
        });
    }

    /// Opens a section: its header is printed before its first line.
    fn section(&mut self, header: String) {
        self.header = Some(header);
        self.indent = true;
    }

    fn end_section(&mut self) {
        self.header = None;
        self.indent = false;
    }

    /// The lines printed so far.
    pub fn into_lines(self) -> Vec<String> {
        self.lines
    }

    /// Everything printed, one line each; `ok` if nothing was.
    pub fn finish(self) -> String {
        if self.lines.is_empty() {
            "ok".to_string()
        } else {
            self.lines.join("\n")
        }
    }
}

/// A message on the network: a request, or the reply to one (which the
/// sender needs back together with its request).
#[derive(Debug, Clone)]
pub struct Message {
    /// Sender.
    pub from: NodeId,
    /// Recipient.
    pub to: NodeId,
    /// The request, and its reply if this is one.
    pub request: Request,
    /// `Some` for a reply.
    pub response: Option<Response>,
}

impl Message {
    /// `1->2 AppendEntries term=1 ...`.
    pub fn show(&self) -> String {
        let body = match &self.response {
            None => show::request(&self.request),
            Some(response) => show::response(response),
        };
        format!("{}->{} {body}", self.from, self.to)
    }
}

/// What a server has made durable: the state it restarts from.
#[derive(Debug, Clone, Default)]
pub struct Disk {
    /// Term, vote, snapshot and the log after it.
    pub state: InitialState,
    /// A snapshot being received in pieces, and the bytes stored so far.
    incoming: Option<(Snapshot, u64)>,
    /// The disk refuses every write (`fail-disk`), as a full disk or a
    /// failed fsync does, until the server restarts (its operator made room
    /// or replaced the disk).
    pub(super) failed: bool,
}

impl Disk {
    /// Applies a `Persist` in its documented order, as `MemoryStorage` does.
    pub(super) fn save(&mut self, persist: &Persist) {
        for chunk in &persist.snapshot_chunks {
            if chunk.offset == 0 {
                self.incoming = Some((chunk.snapshot.clone(), 0));
            }
            if let Some((_, stored)) = self.incoming.as_mut() {
                *stored += chunk.data.len() as u64;
            }
            if chunk.done {
                self.incoming = None;
            }
        }
        let state = &mut self.state;
        if let Some(hard_state) = persist.hard_state {
            state.hard_state = hard_state;
        }
        if let Some(snapshot) = &persist.snapshot {
            let covered = snapshot
                .last_included_index
                .saturating_sub(state.snapshot.last_included_index);
            let drop = (covered as usize).min(state.entries.len());
            state.entries.drain(..drop);
            state.snapshot = snapshot.clone();
        }
        if let Some(write) = &persist.log {
            let first = state.snapshot.last_included_index + 1;
            let keep = write.first_index.saturating_sub(first) as usize;
            state.entries.truncate(keep);
            state.entries.extend(write.entries.iter().cloned());
        }
    }
}

/// One server: the core while it runs, its disk always.
pub struct Server {
    /// The core; `None` while crashed.
    pub raft: Option<Raft>,
    /// What it restarts with.
    config: Config,
    /// What survives a crash.
    pub disk: Disk,
    /// Replies to RPCs handled since the last `Ready`: they leave only after
    /// its write (Figure 2: "respond to RPCs only after updating stable storage").
    pub(super) replies: Vec<Message>,
    /// A write a script left in progress (`ready N sync=later`), and what
    /// waits for it.
    pub(super) in_progress: Option<WriteInProgress>,
}

/// Which queued messages a command acts on: those from `from` (any sender
/// if `None`), leaving the first `skip` of them, at most `count`.
#[derive(Debug, Clone, Copy)]
pub struct Pick {
    /// Only messages from this server.
    pub from: Option<NodeId>,
    /// Leave this many matching messages in place first.
    pub skip: usize,
    /// Take at most this many.
    pub count: usize,
}

impl Pick {
    /// Which of `queue`'s messages this picks, in queue order.
    fn choose(&self, queue: &VecDeque<Message>) -> Vec<bool> {
        let (mut skipped, mut taken) = (0, 0);
        queue
            .iter()
            .map(|m| {
                if self.from.is_some_and(|f| f != m.from) {
                    return false;
                }
                if skipped < self.skip {
                    skipped += 1;
                    return false;
                }
                taken += 1;
                taken <= self.count
            })
            .collect()
    }

    /// Every message.
    pub fn all() -> Pick {
        Pick {
            from: None,
            skip: 0,
            count: usize::MAX,
        }
    }
}

/// What a script sees change on a server between two moments.
#[derive(Clone, PartialEq)]
pub(super) struct Watch {
    role: Role,
    term: Term,
    leader: Option<NodeId>,
    commit_index: Index,
    transferring_to: Option<NodeId>,
    change: Option<(MembershipChange, ChangeStage)>,
}

impl Watch {
    pub(super) fn of(raft: &Raft) -> Watch {
        let s = raft.status();
        Watch {
            role: s.role,
            term: s.term,
            leader: s.leader_id,
            commit_index: s.commit_index,
            transferring_to: s.transferring_to,
            change: s.membership_change.map(|c| (c.change, c.stage)),
        }
    }

    /// `1: role=candidate term=5 leader=none`: the fields that changed.
    pub(super) fn diff(&self, after: &Watch, id: NodeId) -> Option<String> {
        let none = || "none".to_string();
        let mut changed = Vec::new();
        if self.role != after.role {
            changed.push(format!("role={}", after.role));
        }
        if self.term != after.term {
            changed.push(format!("term={}", after.term));
        }
        if self.leader != after.leader {
            changed.push(format!(
                "leader={}",
                after.leader.map_or_else(none, |l| l.to_string())
            ));
        }
        if self.commit_index != after.commit_index {
            changed.push(format!("commit_index={}", after.commit_index));
        }
        if self.transferring_to != after.transferring_to {
            changed.push(format!(
                "transferring_to={}",
                after.transferring_to.map_or_else(none, |t| t.to_string())
            ));
        }
        if self.change != after.change {
            if let Some((change, stage)) = &after.change {
                changed.push(format!(
                    "membership_change=({change}: {})",
                    show::stage(stage)
                ));
            }
        }
        (!changed.is_empty()).then(|| format!("{id}: {}", changed.join(" ")))
    }
}

/// The servers and the network between them.
#[derive(Default)]
pub struct Env {
    /// Every server a script added, by id.
    pub servers: BTreeMap<NodeId, Server>,
    /// Messages in flight, per recipient, in the order sent.
    queues: BTreeMap<NodeId, VecDeque<Message>>,
    /// Directed links that are cut.
    cut: BTreeSet<(NodeId, NodeId)>,
    /// A rule every server added from now on breaks (to show that a script
    /// notices; see `Bug`).
    pub bug: Option<Bug>,
}

impl Env {
    /// Adds a server with `config` and what its disk holds.
    pub fn add_server(&mut self, mut config: Config, disk: InitialState) {
        if self.bug.is_some() {
            config.bug = self.bug;
        }
        let id = config.id;
        let raft = Raft::new(config.clone(), disk.clone());
        let server = Server {
            raft: Some(raft),
            config,
            disk: Disk {
                state: disk,
                incoming: None,
                failed: false,
            },
            replies: Vec::new(),
            in_progress: None,
        };
        self.servers.insert(id, server);
    }

    /// The largest id in use.
    pub fn last_id(&self) -> NodeId {
        self.servers.keys().next_back().copied().unwrap_or(0)
    }

    /// Server `id`'s core, if it exists and runs.
    pub fn raft(&mut self, id: NodeId) -> Result<&mut Raft, String> {
        self.servers
            .get_mut(&id)
            .ok_or_else(|| format!("no server {id}"))?
            .raft
            .as_mut()
            .ok_or_else(|| format!("server {id} is down"))
    }

    /// Runs `f` on server `id`'s core, printing how its state changed.
    pub fn on<T>(
        &mut self,
        id: NodeId,
        out: &mut Out,
        f: impl FnOnce(&mut Raft) -> T,
    ) -> Result<T, String> {
        let raft = self.raft(id)?;
        let before = Watch::of(raft);
        let result = f(raft);
        if let Some(line) = before.diff(&Watch::of(raft), id) {
            out.line(line);
        }
        Ok(result)
    }

    // ---- the network ----

    /// Puts `message` on the network, unless the recipient cannot get it.
    pub(super) fn send(&mut self, mut message: Message, out: &mut Out) {
        if let (Request::InstallSnapshot(args), None) = (&mut message.request, &message.response) {
            // The runtime reads the piece's bytes from the snapshot file.
            let chunk = self
                .servers
                .get(&message.from)
                .map_or(1, |s| s.config.snapshot_chunk_bytes.max(1));
            args.data = vec![b'.'; args.piece_len(chunk) as usize];
        }
        let lost = match self.servers.get(&message.to) {
            None => Some(format!("no server {}", message.to)),
            Some(s) if s.raft.is_none() => Some(format!("{} is down", message.to)),
            Some(_) if self.cut.contains(&(message.from, message.to)) => {
                Some("link cut".to_string())
            }
            Some(_) => None,
        };
        match lost {
            Some(why) => out.line(format!("{} (dropped: {why})", message.show())),
            None => {
                out.line(message.show());
                self.queues
                    .entry(message.to)
                    .or_default()
                    .push_back(message);
            }
        }
    }

    /// Takes the messages queued for `to` that `pick` selects.
    pub fn take(&mut self, to: NodeId, pick: Pick) -> Vec<Message> {
        let Some(queue) = self.queues.get_mut(&to) else {
            return Vec::new();
        };
        let chosen = pick.choose(queue);
        let (taken, kept) = std::mem::take(queue)
            .into_iter()
            .zip(chosen)
            .partition::<Vec<_>, _>(|(_, chosen)| *chosen);
        *queue = kept.into_iter().map(|(m, _)| m).collect();
        taken.into_iter().map(|(m, _)| m).collect()
    }

    /// The network duplicates the messages queued for `to` that `pick`
    /// selects: a copy of each joins the end of the queue.
    pub fn duplicate(&mut self, to: NodeId, pick: Pick, out: &mut Out) {
        let queue = self.queues.entry(to).or_default();
        let chosen = pick.choose(queue);
        let copies: Vec<Message> = queue
            .iter()
            .zip(chosen)
            .filter(|(_, chosen)| *chosen)
            .map(|(m, _)| m.clone())
            .collect();
        for copy in &copies {
            out.line(format!("{} (duplicated)", copy.show()));
        }
        queue.extend(copies);
    }

    /// Hands `message` to its recipient's core. A request's reply waits for
    /// the recipient's next `Ready`.
    pub fn deliver(&mut self, message: Message, out: &mut Out) -> Result<(), String> {
        out.line(message.show());
        let Message {
            from,
            to,
            request,
            response,
        } = message;
        match response {
            Some(response) => self.on(to, out, |raft| {
                raft.handle_response(from, &request, response)
            }),
            None => {
                let reply = self.on(to, out, |raft| raft.handle_request(from, request.clone()))?;
                let server = self.servers.get_mut(&to).ok_or("no server")?;
                server.replies.push(Message {
                    from: to,
                    to: from,
                    request,
                    response: Some(reply),
                });
                Ok(())
            }
        }
    }

    /// Delivers everything queued for `to`, oldest first.
    pub fn deliver_all(&mut self, to: NodeId, out: &mut Out) -> Result<bool, String> {
        let messages = self.take(to, Pick::all());
        let any = !messages.is_empty();
        for message in messages {
            self.deliver(message, out)?;
        }
        Ok(any)
    }

    /// Cuts the links between every two of `groups` (both ways); messages
    /// already in flight across them are lost.
    pub fn partition(&mut self, groups: &[Vec<NodeId>], out: &mut Out) {
        for (i, a) in groups.iter().enumerate() {
            for b in groups.iter().skip(i + 1) {
                for &x in a {
                    for &y in b {
                        self.cut.insert((x, y));
                        self.cut.insert((y, x));
                    }
                }
            }
        }
        let cut = self.cut.clone();
        for queue in self.queues.values_mut() {
            queue.retain(|m| {
                let keep = !cut.contains(&(m.from, m.to));
                if !keep {
                    out.line(format!("{} (dropped: link cut)", m.show()));
                }
                keep
            });
        }
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        self.cut.clear();
    }

    // ---- crashes ----

    /// Stops server `id`: it keeps only its disk. Messages queued for it and
    /// writes in progress are lost.
    pub fn crash(&mut self, id: NodeId, out: &mut Out) -> Result<(), String> {
        let server = self.servers.get_mut(&id).ok_or("no such server")?;
        server.raft = None;
        server.replies.clear();
        server.in_progress = None;
        server.disk.incoming = None;
        for message in self.take(id, Pick::all()) {
            out.line(format!("{} (dropped: {id} is down)", message.show()));
        }
        Ok(())
    }

    /// Server `id`, crashed, loses its disk too (an operator's mistake, or a
    /// disk that failed): it restarts as a brand-new server.
    pub fn wipe(&mut self, id: NodeId) -> Result<(), String> {
        let server = self.servers.get_mut(&id).ok_or("no such server")?;
        if server.raft.is_some() {
            return Err(format!("crash {id} before wiping its disk"));
        }
        server.disk = Disk::default();
        Ok(())
    }

    /// Server `id`'s disk refuses every write from now on (a full disk, an
    /// I/O error, a failed fsync), until it restarts.
    pub fn fail_disk(&mut self, id: NodeId) -> Result<(), String> {
        let server = self.servers.get_mut(&id).ok_or("no such server")?;
        server.disk.failed = true;
        Ok(())
    }

    /// Starts server `id` again from its disk (working again, if it failed).
    pub fn restart(&mut self, id: NodeId, out: &mut Out) -> Result<(), String> {
        let server = self.servers.get_mut(&id).ok_or("no such server")?;
        if server.raft.is_some() {
            return Err(format!("server {id} is running"));
        }
        server.disk.failed = false;
        let raft = Raft::new(server.config.clone(), server.disk.state.clone());
        out.line(format!(
            "{id}: restarted with {} log={}..={}",
            show::hard_state(&server.disk.state.hard_state),
            raft.log.first_index(),
            raft.log.last_index()
        ));
        server.raft = Some(raft);
        Ok(())
    }

    /// Until nothing changes: every server with something to do executes its
    /// `Ready`, then every server receives what is queued for it.
    pub fn stabilize(&mut self, out: &mut Out) -> Result<(), String> {
        for _ in 0..1000 {
            let mut busy = false;
            let running: Vec<NodeId> = self
                .servers
                .iter()
                .filter(|(_, s)| s.raft.is_some())
                .map(|(&id, _)| id)
                .collect();
            for &id in &running {
                if self.servers[&id].in_progress.is_some() {
                    continue; // its runtime waits for the write
                }
                out.section(format!("> {id} ready"));
                busy |= self.ready(id, false, out)?;
                out.end_section();
            }
            for &id in &running {
                out.section(format!("> {id} receives"));
                busy |= self.deliver_all(id, out)?;
                out.end_section();
            }
            if !busy {
                return Ok(());
            }
        }
        Err("stabilize: still busy after 1000 rounds".into())
    }
}
