//! Executing a script server's `Ready`: the executor the threaded runtime and
//! the simulator run (`raft::executor`), with effects that print.
//!
//! `ready N` runs [`executor::execute`]: every `Ready` the core has, in the
//! one order, until it has nothing left to do. `ready N sync=later` runs the
//! executor's first half only ([`executor::start_ready`]: configure, the
//! messages a leader sends before its own write, the write), and leaves the
//! write in progress: the core goes on handling what a script delivers, and
//! what the rule puts after the write (the report to `Raft::persisted`, the
//! replies, the other messages, the entries to apply) waits for `sync N`,
//! which finishes it ([`AfterWrite::finish`]) and goes on executing. That is
//! how a script shows thesis §10.2.1: followers store an entry, and the leader
//! hears so, while the leader's own write of it is still in progress.
//!
//! A disk a script made fail (`fail-disk N`) refuses every write: the
//! executor's fail-stop rule stops the server (`fail-stop: ...`), and it is
//! down, as after `crash N`, until `restart N`.

use std::io;

use super::super::configuration::Configuration;
use super::super::core::Raft;
use super::super::executor::{self, AfterWrite, Effects};
use super::super::messages::NodeId;
use super::super::ready::{ApplyMsg, Outbound, Persist, Ready};
use super::env::{Env, Message, Out, Watch};
use super::show;

/// Why a script server's execution stopped early: its disk refused a write,
/// and the server stopped (fail-stop). It is down, as after `crash`.
#[derive(Debug)]
pub struct Stopped;

/// A write a script left in progress, and what waits for it.
pub struct WriteInProgress {
    /// What the `Ready` does once the write is durable.
    after_write: AfterWrite,
    /// The write, saved to the disk at `sync`.
    persist: Persist,
    /// Replies to the RPCs handled before the `Ready` was taken: they leave
    /// after the write.
    replies: Vec<Message>,
}

impl Env {
    /// Executes server `id`'s output (see the module documentation); with
    /// `sync_later`, its write stays in progress until [`Env::sync`].
    /// Returns whether there was anything to do.
    pub fn ready(&mut self, id: NodeId, sync_later: bool, out: &mut Out) -> Result<bool, String> {
        self.raft(id)?;
        let server = self.servers.get_mut(&id).ok_or("no server")?;
        if server.in_progress.is_some() {
            return Err(format!(
                "server {id} has a write in progress: sync {id} first"
            ));
        }
        let replies = std::mem::take(&mut server.replies);
        let mut effects = ScriptEffects::new(self, id, out, replies, sync_later);
        if !sync_later {
            return match executor::execute(&mut effects) {
                Ok(()) => Ok(effects.busy),
                Err(Stopped) => Ok(true),
            };
        }
        let after_write = match executor::start_ready(&mut effects) {
            Ok(Some(after_write)) => after_write,
            Ok(None) => return Ok(false),
            Err(Stopped) => return Ok(true),
        };
        let Some(persist) = effects.deferred.take() else {
            // Nothing to write: nothing to wait for.
            let _stopped = after_write
                .finish(&mut effects)
                .and_then(|()| executor::execute(&mut effects));
            return Ok(true);
        };
        let replies = std::mem::take(&mut effects.replies);
        out.line("write in progress");
        let server = self.servers.get_mut(&id).ok_or("no server")?;
        server.in_progress = Some(WriteInProgress {
            after_write,
            persist,
            replies,
        });
        Ok(true)
    }

    /// The write in progress on server `id` is durable: the executor
    /// finishes its `Ready`, then goes on with the core's next ones (the
    /// write may have let a leader commit).
    pub fn sync(&mut self, id: NodeId, out: &mut Out) -> Result<(), String> {
        self.raft(id)?;
        let server = self.servers.get_mut(&id).ok_or("no server")?;
        let WriteInProgress {
            after_write,
            persist,
            replies,
        } = server
            .in_progress
            .take()
            .ok_or_else(|| format!("server {id} has no write in progress"))?;
        server.disk.save(&persist);
        out.line("write durable");
        // Replies to RPCs handled during the write wait for the next `Ready`,
        // which holds what they depend on.
        let handled_meanwhile = std::mem::take(&mut server.replies);
        let mut effects = ScriptEffects::new(self, id, out, replies, false);
        // A server that stopped (fail-stop) is down: nothing more to do.
        let _stopped = after_write.finish(&mut effects).and_then(|()| {
            effects.replies = handled_meanwhile;
            executor::execute(&mut effects)
        });
        Ok(())
    }
}

/// A script server's effects: its disk, the script's network, and a line of
/// output for each.
struct ScriptEffects<'a> {
    env: &'a mut Env,
    id: NodeId,
    out: &'a mut Out,
    /// Replies held until the executor releases them.
    replies: Vec<Message>,
    /// The core's state as last printed: a change (say, a commit that a
    /// durable write allowed) is printed before the next effect.
    watch: Watch,
    /// Leave the write in progress (`sync=later`) instead of saving it.
    defer: bool,
    /// The write left in progress.
    deferred: Option<Persist>,
    /// Whether there was anything to do.
    busy: bool,
}

impl<'a> ScriptEffects<'a> {
    fn new(
        env: &'a mut Env,
        id: NodeId,
        out: &'a mut Out,
        replies: Vec<Message>,
        defer: bool,
    ) -> Self {
        let watch = match env.raft(id) {
            Ok(raft) => Watch::of(raft),
            Err(_) => unreachable!("the caller checked that server {id} runs"),
        };
        ScriptEffects {
            env,
            id,
            out,
            replies,
            watch,
            defer,
            deferred: None,
            busy: false,
        }
    }

    /// Prints what changed in the core since the last effect.
    fn note_changes(&mut self) {
        let now = Watch::of(self.core());
        if let Some(line) = self.watch.diff(&now, self.id) {
            self.out.line(line);
        }
        self.watch = now;
    }
}

impl Effects for ScriptEffects<'_> {
    type Halt = Stopped;

    fn core(&mut self) -> &mut Raft {
        match self.env.raft(self.id) {
            Ok(raft) => raft,
            Err(_) => unreachable!("a script server runs while it executes"),
        }
    }

    fn inspect(&mut self, ready: &Ready) -> Result<(), Stopped> {
        self.note_changes();
        self.busy |= !ready.is_empty() || self.holds_replies();
        Ok(())
    }

    fn holds_replies(&self) -> bool {
        !self.replies.is_empty()
    }

    fn configure(&mut self, configuration: &Configuration) -> Result<(), Stopped> {
        let shown = show::configuration(configuration);
        self.out.line(format!("configuration {shown}"));
        Ok(())
    }

    /// Prints the parts of the write in the order storage applies them, then
    /// saves it, or leaves it in progress; a failed disk refuses it whole.
    fn persist(&mut self, persist: &Persist) -> Result<io::Result<()>, Stopped> {
        self.note_changes();
        if let Some(hard_state) = &persist.hard_state {
            let shown = show::hard_state(hard_state);
            self.out.line(format!("persist hard_state {shown}"));
        }
        for chunk in &persist.snapshot_chunks {
            let shown = show::chunk(chunk);
            self.out.line(format!("persist snapshot_chunk {shown}"));
        }
        if let Some(snapshot) = &persist.snapshot {
            let shown = show::snapshot(snapshot);
            self.out.line(format!("persist snapshot {shown}"));
        }
        if let Some(write) = &persist.log {
            let shown = show::log_write(write);
            self.out.line(format!("persist log {shown}"));
        }
        let failed = self
            .env
            .servers
            .get(&self.id)
            .is_some_and(|s| s.disk.failed);
        if failed {
            self.out
                .line("persist failed: EIO (nothing reached the disk)");
            return Ok(Err(io::Error::other("EIO: input/output error")));
        }
        if self.defer {
            self.deferred = Some(persist.clone());
        } else if let Some(server) = self.env.servers.get_mut(&self.id) {
            server.disk.save(persist);
        }
        Ok(Ok(()))
    }

    /// The server stops for good, as after `crash`: its held replies and
    /// the messages queued for it are lost.
    fn fail_stop(&mut self, error: io::Error) -> Stopped {
        self.out
            .line(format!("fail-stop: storage failed ({error})"));
        self.replies.clear();
        let _down = self.env.crash(self.id, self.out);
        Stopped
    }

    fn release_replies(&mut self) -> Result<(), Stopped> {
        self.note_changes();
        for reply in std::mem::take(&mut self.replies) {
            self.env.send(reply, self.out);
        }
        Ok(())
    }

    fn send(&mut self, messages: Vec<Outbound>) -> Result<(), Stopped> {
        self.note_changes();
        for Outbound { to, request } in messages {
            let message = Message {
                from: self.id,
                to,
                request,
                response: None,
            };
            self.env.send(message, self.out);
        }
        Ok(())
    }

    fn apply(&mut self, apply: Vec<ApplyMsg>) -> Result<(), Stopped> {
        self.note_changes();
        for msg in &apply {
            self.out.line(format!("apply {}", show::apply(msg)));
        }
        Ok(())
    }

    fn end_ready(&mut self) -> Result<(), Stopped> {
        self.note_changes();
        Ok(())
    }
}
