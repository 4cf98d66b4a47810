//! The script vocabulary: each command parses its arguments, drives the
//! [`Env`], and returns what it printed. NOTES.md ("Rule scripts") lists the
//! commands; `run` below is the table of them.

use std::collections::BTreeMap;

use super::super::configuration::Configuration;
use super::super::core::{Config, InitialState, Role};
use super::super::membership::MembershipChange;
use super::super::messages::{
    AppendEntriesArgs, Entry, InstallSnapshotArgs, NodeId, Request, RequestVoteArgs, TimeoutNowArgs,
};
use super::super::ready::{HardState, Snapshot};
use super::super::Bug;
use super::env::{Env, Message, Out, Pick};
use super::show;

/// Runs one command line against `env` and returns its output (`ok` when it
/// prints nothing). A malformed command is an error; a refusal by the core
/// (say, a proposal to a follower) is output, `error: ...`.
pub fn run(env: &mut Env, line: &str) -> Result<String, String> {
    let mut words = line.split_whitespace();
    let command = words.next().ok_or("empty command")?;
    let mut args = Args::parse(words);
    let mut out = Out::default();
    match command {
        "add-nodes" => add_nodes(env, &mut args)?,
        "campaign" => campaign(env, &mut args, &mut out)?,
        "tick" => tick(env, &mut args, &mut out)?,
        "propose" => propose(env, &mut args, &mut out)?,
        "read" => {
            let (id, read) = (args.id(0)?, args.num(1)?);
            let result = env.on(id, &mut out, |raft| raft.read_index(read))?;
            refusal(result, &mut out);
        }
        "transfer" => {
            let (id, target) = (args.id(0)?, args.id(1)?);
            let result = env.on(id, &mut out, |raft| raft.transfer_leadership(target))?;
            refusal(result, &mut out);
        }
        "add-server" | "remove-server" => change(env, command, &mut args, &mut out)?,
        "snapshot" => snapshot(env, &mut args, &mut out)?,
        "ready" => {
            let id = args.id(0)?;
            let later = args.named("sync").is_some_and(|s| s == "later");
            env.ready(id, later, &mut out)?;
        }
        "sync" => env.sync(args.id(0)?, &mut out)?,
        "deliver" | "drop" | "duplicate" => {
            let to = args.id(0)?;
            let pick = Pick {
                from: args.named("from").as_deref().map(parse_num).transpose()?,
                skip: args.num_or("skip", 0)? as usize,
                count: args.num_or("count", u64::MAX)? as usize,
            };
            match command {
                "duplicate" => env.duplicate(to, pick, &mut out),
                "drop" => {
                    for message in env.take(to, pick) {
                        out.line(format!("dropped {}", message.show()));
                    }
                }
                _ => {
                    for message in env.take(to, pick) {
                        env.deliver(message, &mut out)?;
                    }
                }
            }
        }
        "send" => send(env, &mut args, &mut out)?,
        "stabilize" => env.stabilize(&mut out)?,
        "partition" => {
            let groups: Vec<Vec<NodeId>> = args
                .positional
                .split(|w| w == "/")
                .map(|group| group.iter().map(|w| parse_num(w)).collect())
                .collect::<Result<_, _>>()?;
            args.positional.clear();
            env.partition(&groups, &mut out);
        }
        "heal" => env.heal(),
        "crash" => env.crash(args.id(0)?, &mut out)?,
        "restart" => env.restart(args.id(0)?, &mut out)?,
        "wipe" => env.wipe(args.id(0)?)?,
        "fail-disk" => env.fail_disk(args.id(0)?)?,
        "status" => {
            let raft = env.raft(args.id(0)?)?;
            show::status(raft).into_iter().for_each(|l| out.line(l));
        }
        "log" => log(env, &mut args, &mut out)?,
        "progress" => {
            let raft = env.raft(args.id(0)?)?;
            let peers: Vec<NodeId> = raft.progress.keys().copied().collect();
            for peer in peers {
                out.line(show::progress(raft, peer).unwrap_or_default());
            }
        }
        other => return Err(format!("unknown command {other:?}")),
    }
    args.finish()?;
    Ok(out.finish())
}

/// A command's words: positional ones and `key=value` ones.
struct Args {
    positional: Vec<String>,
    named: BTreeMap<String, String>,
}

impl Args {
    fn parse<'a>(words: impl Iterator<Item = &'a str>) -> Args {
        let mut args = Args {
            positional: Vec::new(),
            named: BTreeMap::new(),
        };
        for word in words {
            match word.split_once('=') {
                Some((key, value)) => {
                    args.named.insert(key.to_string(), value.to_string());
                }
                None => args.positional.push(word.to_string()),
            }
        }
        args
    }

    fn word(&self, i: usize) -> Result<&str, String> {
        self.positional
            .get(i)
            .map(String::as_str)
            .ok_or_else(|| format!("missing argument {}", i + 1))
    }

    fn num(&self, i: usize) -> Result<u64, String> {
        parse_num(self.word(i)?)
    }

    fn id(&self, i: usize) -> Result<NodeId, String> {
        self.num(i)
    }

    /// Takes `key=value`, if given.
    fn named(&mut self, key: &str) -> Option<String> {
        self.named.remove(key)
    }

    fn num_or(&mut self, key: &str, default: u64) -> Result<u64, String> {
        self.named(key).map_or(Ok(default), |v| parse_num(&v))
    }

    fn flag_or(&mut self, key: &str, default: bool) -> Result<bool, String> {
        match self.named(key).as_deref() {
            None => Ok(default),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(other) => Err(format!("{key}={other}: expected true or false")),
        }
    }

    /// Takes `key=1,2,3` (or `key=none`, the empty list), if given.
    fn list(&mut self, key: &str) -> Result<Option<Vec<u64>>, String> {
        match self.named(key).as_deref() {
            None => Ok(None),
            Some("none") => Ok(Some(Vec::new())),
            Some(list) => list
                .split(',')
                .map(parse_num)
                .collect::<Result<_, _>>()
                .map(Some),
        }
    }

    /// Fails on `key=value` words no command took: a typo must not pass silently.
    fn finish(self) -> Result<(), String> {
        match self.named.keys().next() {
            Some(key) => Err(format!("unknown argument {key}=")),
            None => Ok(()),
        }
    }
}

fn parse_num(word: &str) -> Result<u64, String> {
    word.parse()
        .map_err(|_| format!("{word:?} is not a number"))
}

/// `index@term`.
fn parse_point(word: &str) -> Result<(u64, u64), String> {
    let (index, term) = word
        .split_once('@')
        .ok_or_else(|| format!("{word:?}: expected index@term"))?;
    Ok((parse_num(index)?, parse_num(term)?))
}

fn refusal<E: std::fmt::Display>(result: Result<impl Sized, E>, out: &mut Out) {
    if let Err(e) = result {
        out.line(format!("error: {e}"));
    }
}

/// `add-nodes N [voters=..] [term=T] [vote=V] [log=t,t,..] [snapshot=i@t]
/// [election=10] [heartbeat=3] [pre-vote=true] [check-quorum=true]
/// [noop=false] [max-inflight=64] [chunk=1048576] [bug=name]`: adds servers
/// numbered after the last one, each with that disk and those tunables.
fn add_nodes(env: &mut Env, args: &mut Args) -> Result<(), String> {
    let count = args.num(0)?;
    let first = env.last_id() + 1;
    let last = first + count - 1;
    let voters = args.list("voters")?.unwrap_or_else(|| (1..=last).collect());
    let term = args.num_or("term", 0)?;
    let vote = args.named("vote").map(|v| parse_num(&v)).transpose()?;
    let log = args.list("log")?.unwrap_or_default();
    let snapshot_point = args
        .named("snapshot")
        .map(|s| parse_point(&s))
        .transpose()?;
    let election = args.num_or("election", 10)? as u32;
    let heartbeat = args.num_or("heartbeat", 3)? as u32;
    let pre_vote = args.flag_or("pre-vote", true)?;
    let check_quorum = args.flag_or("check-quorum", true)?;
    let noop = args.flag_or("noop", false)?;
    let max_inflight = args.num_or("max-inflight", 64)? as usize;
    let chunk = args.num_or("chunk", 1 << 20)?;
    let bug = match args.named("bug") {
        Some(name) => Some(Bug::parse(&name).ok_or_else(|| format!("no bug {name:?}"))?),
        None => None,
    };
    let snapshot = match snapshot_point {
        Some((index, term)) => Snapshot {
            last_included_index: index,
            last_included_term: term,
            size: 0,
            configuration: Configuration::bootstrap(&voters, &Default::default()),
            configuration_index: 0,
        },
        None => Snapshot::default(),
    };
    let first_index = snapshot.last_included_index + 1;
    let entries: Vec<Entry> = log
        .iter()
        .enumerate()
        .map(|(i, &t)| Entry::command(t, format!("c{}", first_index + i as u64).into_bytes()))
        .collect();
    for id in first..=last {
        let mut config = Config::new(id, voters.clone());
        config.election_ticks = election;
        config.heartbeat_ticks = heartbeat;
        config.pre_vote = pre_vote;
        config.check_quorum = check_quorum;
        config.noop_on_election = noop;
        config.max_inflight_messages = max_inflight;
        config.snapshot_chunk_bytes = chunk;
        config.bug = bug;
        let disk = InitialState {
            hard_state: HardState {
                current_term: term,
                voted_for: vote,
            },
            snapshot: snapshot.clone(),
            entries: entries.clone(),
        };
        env.add_server(config, disk);
    }
    Ok(())
}

/// `campaign N`: ticks server N until its election timer fires: it becomes a
/// pre-candidate or a candidate (or, alone, the leader), or, if it is
/// already one, starts over in the next round. A server that may not
/// campaign (thesis §4.2.1) says so.
fn campaign(env: &mut Env, args: &mut Args, out: &mut Out) -> Result<(), String> {
    let id = args.id(0)?;
    let limit = 2 * env.raft(id)?.config.election_ticks;
    for _ in 0..limit {
        let fired = env.on(id, out, |raft| {
            raft.tick();
            raft.election_elapsed == 0
        })?;
        if fired {
            if env.raft(id)?.role == Role::Follower {
                out.line(format!("{id} may not campaign"));
            }
            return Ok(());
        }
    }
    Err(format!("{id} is the leader: it has no election timer"))
}

/// `tick N [count]`: `count` ticks of server N's clock; a change is printed
/// with the tick that caused it.
fn tick(env: &mut Env, args: &mut Args, out: &mut Out) -> Result<(), String> {
    let id = args.id(0)?;
    let count = if args.positional.len() > 1 {
        args.num(1)?
    } else {
        1
    };
    for i in 1..=count {
        let mut step = Out::default();
        env.on(id, &mut step, |raft| raft.tick())?;
        for line in step.into_lines() {
            if count > 1 {
                out.line(format!("{line} (tick {i})"));
            } else {
                out.line(line);
            }
        }
    }
    Ok(())
}

/// `propose N command`: the service hands server N a command.
fn propose(env: &mut Env, args: &mut Args, out: &mut Out) -> Result<(), String> {
    let id = args.id(0)?;
    let command = args.positional[1..].join(" ").into_bytes();
    match env.on(id, out, |raft| raft.propose(command))? {
        Ok((index, term)) => out.line(format!("index={index} term={term}")),
        Err(e) => out.line(format!("error: {e}")),
    }
    Ok(())
}

/// `add-server N id` / `remove-server N id`: asks leader N for a membership
/// change (a new server is reached at `h:<id>`).
fn change(env: &mut Env, command: &str, args: &mut Args, out: &mut Out) -> Result<(), String> {
    let (id, server) = (args.id(0)?, args.id(1)?);
    let change = if command == "add-server" {
        MembershipChange::Add {
            id: server,
            address: format!("h:{server}"),
        }
    } else {
        MembershipChange::Remove { id: server }
    };
    match env.on(id, out, |raft| raft.change_membership(change))? {
        Ok(seq) => out.line(format!("change={seq}")),
        Err(e) => out.line(format!("error: {e}")),
    }
    Ok(())
}

/// `snapshot N index [term=T] [size=10]`: the service has written a snapshot
/// of its state through `index` (whose term is the log's, unless given) and
/// tells the core, which compacts its log or refuses.
fn snapshot(env: &mut Env, args: &mut Args, out: &mut Out) -> Result<(), String> {
    let (id, index) = (args.id(0)?, args.num(1)?);
    let size = args.num_or("size", 10)?;
    let term = match args.named("term") {
        Some(t) => parse_num(&t)?,
        None => env.raft(id)?.log.term(index).unwrap_or(0),
    };
    let snapshot = Snapshot {
        last_included_index: index,
        last_included_term: term,
        size,
        ..Snapshot::default()
    };
    if !env.on(id, out, |raft| raft.snapshot(snapshot))? {
        out.line("refused");
    }
    Ok(())
}

/// `log N`: server N's snapshot point and log entries.
fn log(env: &mut Env, args: &mut Args, out: &mut Out) -> Result<(), String> {
    let raft = env.raft(args.id(0)?)?;
    out.line(format!(
        "snapshot {}@{}",
        raft.log.snapshot_index(),
        raft.log.snapshot_term()
    ));
    let first = raft.log.first_index();
    for (i, entry) in raft.log.entries_from(first, usize::MAX).iter().enumerate() {
        out.line(show::entry(first + i as u64, entry));
    }
    Ok(())
}

/// `send F->T Kind field=value...`: a request written by hand arrives at T
/// as if from F (F need not exist). Fields left out are 0 (the sender's id
/// for `candidate_id` and `leader_id`); AppendEntries takes
/// `entries=t,t,...` (commands `x` of those terms), InstallSnapshot takes
/// `data=<bytes>` and `voters=1,2,3` for its configuration.
fn send(env: &mut Env, args: &mut Args, out: &mut Out) -> Result<(), String> {
    let (from, to) = args
        .word(0)?
        .split_once("->")
        .ok_or("send: expected F->T")?;
    let (from, to) = (parse_num(from)?, parse_num(to)?);
    let kind = args.word(1)?.to_string();
    let flags: Vec<String> = args.positional[2..].to_vec();
    let term = args.num_or("term", 0)?;
    let request = match kind.as_str() {
        "RequestVote" => Request::RequestVote(RequestVoteArgs {
            term,
            candidate_id: args.num_or("candidate_id", from)?,
            last_log_index: args.num_or("last_log_index", 0)?,
            last_log_term: args.num_or("last_log_term", 0)?,
            pre_vote: flags.iter().any(|f| f == "pre_vote"),
            leadership_transfer: flags.iter().any(|f| f == "leadership_transfer"),
        }),
        "AppendEntries" => Request::AppendEntries(AppendEntriesArgs {
            term,
            leader_id: args.num_or("leader_id", from)?,
            prev_log_index: args.num_or("prev_log_index", 0)?,
            prev_log_term: args.num_or("prev_log_term", 0)?,
            entries: args
                .list("entries")?
                .unwrap_or_default()
                .into_iter()
                .map(|t| Entry::command(t, b"x".to_vec()))
                .collect(),
            leader_commit: args.num_or("leader_commit", 0)?,
            read_seq: args.num_or("read_seq", 0)?,
        }),
        "InstallSnapshot" => Request::InstallSnapshot(InstallSnapshotArgs {
            term,
            leader_id: args.num_or("leader_id", from)?,
            last_included_index: args.num_or("last_included_index", 0)?,
            last_included_term: args.num_or("last_included_term", 0)?,
            size: args.num_or("size", 0)?,
            offset: args.num_or("offset", 0)?,
            configuration: Configuration::bootstrap(
                &args.list("voters")?.unwrap_or_default(),
                &Default::default(),
            ),
            configuration_index: args.num_or("configuration_index", 0)?,
            data: vec![b'.'; args.num_or("data", 0)? as usize],
            done: args.flag_or("done", true)?,
        }),
        "TimeoutNow" => Request::TimeoutNow(TimeoutNowArgs {
            term,
            leader_id: args.num_or("leader_id", from)?,
        }),
        other => return Err(format!("send: no request kind {other:?}")),
    };
    args.positional.clear();
    let message = Message {
        from,
        to,
        request,
        response: None,
    };
    env.deliver(message, out)
}
