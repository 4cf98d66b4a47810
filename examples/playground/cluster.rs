//! The playground's servers: real `raftkv` processes, each behind a proxy, and what an operator can do to them.
//!
//! Server `i` listens on a port of its own; everyone (its peers, the page)
//! reaches it through its proxy (`links.rs`), whose address is the one in
//! the cluster's configuration. So a partition is the proxies refusing peer
//! connections, while the page can still ask a cut-off server for its state.
//! Every action is recorded as an operator's event in the playground's own
//! ring (served at its `/events`, node 0), so it shows in the page's timeline
//! next to what the servers did about it.

use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use raftkv::events::ring::EventRing;
use raftkv::events::{Action, Actor, Intervention, What};
use raftkv::http::json::Json;

use super::links::Links;

/// One server process.
struct Server {
    id: u64,
    /// The port the process listens on.
    listen_port: u16,
    /// Its proxy's address: the one peers and the page use.
    addr: String,
    child: Option<Child>,
    paused: bool,
    /// Started with `-join` (added after the start).
    joined: bool,
    removed: bool,
}

/// The cluster an operator plays with.
pub struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    key_file: PathBuf,
    servers: Vec<Server>,
    /// The first servers' proxy addresses (`-peers`).
    bootstrap: Vec<String>,
    links: Links,
    ring: Arc<EventRing>,
}

/// A loopback listener on a port the OS picks.
fn listener() -> io::Result<TcpListener> {
    TcpListener::bind("127.0.0.1:0")
}

impl Cluster {
    /// Starts `n` servers of `bin`, their data and logs under `dir`, with a
    /// fresh cluster key; `ring` records the operator's actions.
    pub fn start(bin: &Path, dir: &Path, n: usize, ring: Arc<EventRing>) -> io::Result<Cluster> {
        fs::create_dir_all(dir)?;
        let key_file = dir.join("cluster.key");
        let mut key = [0u8; 32];
        raftkv::auth::keyfile::os_random(&mut key)?;
        fs::write(&key_file, key)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&key_file, fs::Permissions::from_mode(0o600))?;
        }
        let mut cluster = Cluster {
            bin: bin.to_path_buf(),
            dir: dir.to_path_buf(),
            key_file,
            servers: Vec::new(),
            bootstrap: Vec::new(),
            links: Links::default(),
            ring,
        };
        for _ in 0..n {
            let i = cluster.new_server(false)?;
            cluster.bootstrap.push(cluster.servers[i].addr.clone());
        }
        for i in 0..n {
            cluster.spawn(i)?;
        }
        for i in 0..n {
            cluster.wait_until_up(i)?;
        }
        Ok(cluster)
    }

    /// A slot and a proxy for the next server id.
    fn new_server(&mut self, joined: bool) -> io::Result<usize> {
        let id = self.servers.len() as u64 + 1;
        let listen_port = listener()?.local_addr()?.port();
        let proxy = listener()?;
        let addr = proxy.local_addr()?.to_string();
        self.links.proxy(proxy, id, listen_port);
        self.servers.push(Server {
            id,
            listen_port,
            addr,
            child: None,
            paused: false,
            joined,
            removed: false,
        });
        Ok(self.servers.len() - 1)
    }

    fn spawn(&mut self, i: usize) -> io::Result<()> {
        let s = &self.servers[i];
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("n{}.log", s.id)))?;
        let mut cmd = Command::new(&self.bin);
        cmd.arg("-id")
            .arg(s.id.to_string())
            .arg("-addr")
            .arg(format!("127.0.0.1:{}", s.listen_port))
            .arg("-data")
            .arg(self.dir.join(format!("n{}", s.id)))
            .arg("-cluster-key-file")
            .arg(&self.key_file);
        if s.joined {
            cmd.arg("-join");
        } else {
            cmd.arg("-peers").arg(self.bootstrap.join(","));
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        self.servers[i].child = Some(child);
        self.servers[i].paused = false;
        Ok(())
    }

    /// Waits until server `i` answers `PING` (10 s at most).
    fn wait_until_up(&mut self, i: usize) -> io::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let addr = format!("127.0.0.1:{}", self.servers[i].listen_port);
        while Instant::now() < deadline {
            if ask(&addr, "PING").is_ok_and(|r| r == "PONG") {
                return Ok(());
            }
            thread::sleep(Duration::from_millis(20));
        }
        Err(io::Error::other(format!(
            "server {} did not start (see {})",
            self.servers[i].id,
            self.dir
                .join(format!("n{}.log", self.servers[i].id))
                .display()
        )))
    }

    fn index(&self, id: u64) -> Result<usize, String> {
        self.servers
            .iter()
            .position(|s| s.id == id && !s.removed)
            .ok_or(format!("there is no server {id}"))
    }

    fn record(&self, action: Action, nodes: &[u64], others: &[u64], bridge: Option<u64>) {
        let what = What::Intervention(Intervention {
            others: others.into(),
            bridge,
            ..Intervention::on(Actor::Operator, action, nodes)
        });
        self.ring.push(0, what);
    }

    /// `kill -9` server `id`.
    pub fn kill(&mut self, id: u64) -> Result<String, String> {
        let i = self.index(id)?;
        let Some(mut child) = self.servers[i].child.take() else {
            return Err(format!("server {id} is not running"));
        };
        let _ = child.kill();
        let _ = child.wait();
        self.record(Action::Crash, &[id], &[], None);
        Ok(format!("killed server {id}"))
    }

    /// Starts server `id` again from its disk.
    pub fn restart(&mut self, id: u64) -> Result<String, String> {
        let i = self.index(id)?;
        if let Some(mut child) = self.servers[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.record(Action::Restart, &[id], &[], None);
        self.spawn(i).map_err(|e| e.to_string())?;
        self.wait_until_up(i).map_err(|e| e.to_string())?;
        Ok(format!("restarted server {id}"))
    }

    /// Freezes server `id` (`SIGSTOP`) or lets it run again (`SIGCONT`).
    pub fn pause(&mut self, id: u64, paused: bool) -> Result<String, String> {
        let i = self.index(id)?;
        let Some(child) = self.servers[i].child.as_ref() else {
            return Err(format!("server {id} is not running"));
        };
        let signal = if paused { "-STOP" } else { "-CONT" };
        let status = Command::new("kill")
            .arg(signal)
            .arg(child.id().to_string())
            .status()
            .map_err(|e| format!("kill {signal}: {e}"))?;
        if !status.success() {
            return Err(format!("kill {signal} failed"));
        }
        self.servers[i].paused = paused;
        let action = if paused {
            Action::Pause
        } else {
            Action::Resume
        };
        self.record(action, &[id], &[], None);
        Ok(format!(
            "{} server {id}",
            if paused { "paused" } else { "resumed" }
        ))
    }

    /// Cuts every link between `a` and `b`, both ways, or (`one_way`) from
    /// `a` to `b` only; with `via`, that server still talks to both sides (a
    /// bridge).
    pub fn partition(
        &mut self,
        a: &[u64],
        b: &[u64],
        one_way: bool,
        via: Option<u64>,
    ) -> Result<String, String> {
        let (a, b): (Vec<u64>, Vec<u64>) = (
            a.iter().copied().filter(|&x| Some(x) != via).collect(),
            b.iter().copied().filter(|&x| Some(x) != via).collect(),
        );
        if a.is_empty() || b.is_empty() {
            return Err("name two groups of servers, like 1,2 | 3,4,5".into());
        }
        self.links.heal();
        self.links.cut(&a, &b);
        if !one_way {
            self.links.cut(&b, &a);
        }
        let action = match (one_way, via) {
            (true, _) => Action::OneWay,
            (false, Some(_)) => Action::Bridge,
            (false, None) => Action::Partition,
        };
        self.record(action, &a, &b, via);
        Ok(format!("cut {} links", self.links.cut_links().len()))
    }

    /// Restores every link.
    pub fn heal(&mut self) -> Result<String, String> {
        self.links.heal();
        self.record(Action::Heal, &[], &[], None);
        Ok("every link works again".into())
    }

    /// Asks the leader to hand leadership to `id` (thesis §3.10).
    pub fn transfer(&mut self, id: u64) -> Result<String, String> {
        self.index(id)?;
        self.record(Action::Transfer, &[], &[id], None);
        Ok(format!(
            "LEADER {id}: {}",
            self.ask_any(&format!("LEADER {id}"))
        ))
    }

    /// Starts a new server, empty (`-join`), and asks the leader to add it
    /// (thesis §4: as a learner, then a voter once it has caught up).
    pub fn add(&mut self) -> Result<String, String> {
        let i = self.new_server(true).map_err(|e| e.to_string())?;
        self.spawn(i).map_err(|e| e.to_string())?;
        self.wait_until_up(i).map_err(|e| e.to_string())?;
        let (id, addr) = (self.servers[i].id, self.servers[i].addr.clone());
        self.record(Action::Add, &[], &[id], None);
        Ok(format!(
            "ADD {id} {addr}: {}",
            self.ask_any(&format!("ADD {id} {addr}"))
        ))
    }

    /// Asks the leader to remove server `id`, and stops it once removed.
    pub fn remove(&mut self, id: u64) -> Result<String, String> {
        let i = self.index(id)?;
        self.record(Action::Remove, &[], &[id], None);
        let reply = self.ask_any(&format!("REMOVE {id}"));
        if reply == "OK" {
            if let Some(mut child) = self.servers[i].child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
            self.servers[i].removed = true;
        }
        Ok(format!("REMOVE {id}: {reply}"))
    }

    /// Sends `line` to each running server in turn until one answers (a
    /// follower forwards a command to the leader).
    pub fn ask_any(&self, line: &str) -> String {
        for s in self
            .servers
            .iter()
            .filter(|s| s.child.is_some() && !s.paused)
        {
            if let Ok(reply) = ask(&s.addr, line) {
                return reply;
            }
        }
        "no server answered".into()
    }

    /// The addresses of the servers running now (for load clients).
    pub fn running_addrs(&self) -> Vec<String> {
        self.servers
            .iter()
            .filter(|s| s.child.is_some() && !s.paused && !s.removed)
            .map(|s| s.addr.clone())
            .collect()
    }

    /// Every server the operator can act on, with its state, for the page.
    pub fn describe(&mut self) -> Json {
        let nodes = self.servers.iter_mut().filter(|s| !s.removed).map(|s| {
            let exited = s
                .child
                .as_mut()
                .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
            let state = match (&s.child, s.paused, exited) {
                (None, _, _) => "killed",
                (_, _, true) => "exited",
                (_, true, _) => "paused",
                _ => "running",
            };
            Json::object([
                ("id", Json::from(s.id)),
                ("addr", Json::from(s.addr.as_str())),
                ("state", Json::from(state)),
            ])
        });
        let cut = self
            .links
            .cut_links()
            .into_iter()
            .map(|(a, b)| Json::Array(vec![Json::from(a), Json::from(b)]));
        Json::object([
            ("nodes", Json::Array(nodes.collect())),
            ("cut", Json::Array(cut.collect())),
        ])
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop_all();
    }
}

impl Cluster {
    /// Stops every server process.
    pub fn stop_all(&mut self) {
        for s in &mut self.servers {
            if let Some(mut child) = s.child.take() {
                if s.paused {
                    let _ = Command::new("kill")
                        .arg("-CONT")
                        .arg(child.id().to_string())
                        .status();
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Sends one line to the server at `addr` and returns its reply line.
pub fn ask(addr: &str, line: &str) -> io::Result<String> {
    let socket = addr.parse().map_err(io::Error::other)?;
    let mut stream = TcpStream::connect_timeout(&socket, Duration::from_millis(500))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(format!("{line}\n").as_bytes())?;
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply)?;
    Ok(reply.trim().to_string())
}
