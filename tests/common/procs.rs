//! Real `raftkv` processes on loopback, for end-to-end tests.
//!
//! Every cluster authenticates its peers with a fresh random key (written to
//! `cluster.key` in the cluster's directory, mode 600), as a real deployment
//! should; with [`ProcCluster::start_with_token`] clients must also `AUTH`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// A cluster of node processes, killed when dropped.
pub struct ProcCluster {
    /// Keeps the data directories alive for the test.
    pub dir: tempfile::TempDir,
    ports: Vec<u16>,
    children: Vec<Option<Child>>,
    extra: Vec<String>,
    /// Flags for one node only, after the shared ones (a later flag wins).
    node_flags: Vec<Vec<String>>,
    /// The client token, sent as `AUTH` before every request when set.
    token: Option<String>,
    /// How many nodes bootstrapped the cluster (`-peers` lists theirs).
    bootstrap: usize,
    /// Nodes started with `-join`, waiting to be added (membership changes).
    joining: Vec<bool>,
}

/// Writes a secret file only its owner can read.
pub fn write_secret(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).expect("write secret");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
}

/// 32 random bytes, written to `path` as a cluster key.
pub fn write_random_key(path: &Path) {
    let mut key = [0u8; 32];
    raftkv::auth::keyfile::os_random(&mut key).expect("/dev/urandom");
    write_secret(path, &key);
}

/// A free loopback port (the OS picks; another process could take it, rarely).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl ProcCluster {
    /// Starts `n` nodes with `extra` flags and waits until each answers PING.
    /// A port picked as free can be taken by someone else before the node binds
    /// it; then the whole start is retried on new ports.
    pub fn start(n: usize, extra: &[&str]) -> ProcCluster {
        Self::start_inner(n, extra, None, None, None)
    }

    /// Like [`ProcCluster::start`], with flags for each node (after the
    /// shared ones, so they win: `-data` on a file system of its own, say).
    pub fn start_with_node_flags(
        n: usize,
        extra: &[&str],
        node_flags: &[Vec<String>],
    ) -> ProcCluster {
        Self::start_inner(n, extra, None, None, Some(node_flags))
    }

    /// Like [`ProcCluster::start`], with `-client-token-file` holding `token`.
    pub fn start_with_token(n: usize, extra: &[&str], token: &str) -> ProcCluster {
        Self::start_inner(n, extra, Some(token), None, None)
    }

    /// Starts nodes that listen on `listen[i]` while everyone (peers and the
    /// test) reaches them at `reach[i]`: a proxy in between, say.
    pub fn start_behind(reach: &[u16], listen: &[u16], extra: &[&str]) -> ProcCluster {
        Self::start_inner(listen.len(), extra, None, Some((reach, listen)), None)
    }

    fn start_inner(
        n: usize,
        extra: &[&str],
        token: Option<&str>,
        layout: Option<(&[u16], &[u16])>,
        per_node: Option<&[Vec<String>]>,
    ) -> ProcCluster {
        let attempts = if layout.is_some() { 1 } else { 3 };
        for _attempt in 0..attempts {
            let dir = tempfile::tempdir().expect("temp dir");
            let key = dir.path().join("cluster.key");
            write_random_key(&key);
            let mut flags = vec!["-cluster-key-file".to_string(), key.display().to_string()];
            if let Some(token) = token {
                let file = dir.path().join("client.token");
                write_secret(&file, token.as_bytes());
                flags.extend(["-client-token-file".to_string(), file.display().to_string()]);
            }
            flags.extend(extra.iter().map(|s| s.to_string()));
            let (ports, node_flags) = match layout {
                Some((reach, listen)) => (
                    reach.to_vec(),
                    listen
                        .iter()
                        .map(|p| vec!["-addr".to_string(), format!("127.0.0.1:{p}")])
                        .collect(),
                ),
                None => ((0..n).map(|_| free_port()).collect(), vec![Vec::new(); n]),
            };
            let node_flags = per_node.map_or(node_flags, <[Vec<String>]>::to_vec);
            let mut cluster = ProcCluster {
                dir,
                ports,
                children: (0..n).map(|_| None).collect(),
                extra: flags,
                node_flags,
                token: token.map(str::to_string),
                bootstrap: n,
                joining: vec![false; n],
            };
            for i in 0..n {
                cluster.spawn(i);
            }
            if (0..n).all(|i| cluster.came_up(i)) {
                return cluster;
            }
        }
        panic!("could not start a cluster of {n} nodes");
    }

    /// Waits until node `i` answers PING; false if it exited or took over 10 s.
    fn came_up(&mut self, i: usize) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if !self.is_running(i) {
                return false;
            }
            if self.try_request(i, &["PING"]).is_ok_and(|r| r == ["PONG"]) {
                return true;
            }
            sleep(Duration::from_millis(20));
        }
        false
    }

    /// Address of node `i` (0-based).
    pub fn addr(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.ports[i])
    }

    /// Every node's address.
    pub fn addrs(&self) -> Vec<String> {
        (0..self.ports.len()).map(|i| self.addr(i)).collect()
    }

    /// Node `i`'s data directory.
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("n{}", i + 1))
    }

    /// The command that runs node `i`: one of the bootstrap nodes (`-peers`),
    /// or one started with [`ProcCluster::join`] (`-join`).
    pub fn command(&self, i: usize) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_raftkv"));
        cmd.arg("-id").arg((i + 1).to_string());
        if self.joining[i] {
            cmd.arg("-addr").arg(self.addr(i)).arg("-join");
        } else {
            let peers: Vec<String> = self.addrs().into_iter().take(self.bootstrap).collect();
            cmd.arg("-peers").arg(peers.join(","));
        }
        cmd.arg("-data")
            .arg(self.data_dir(i))
            .args(&self.extra)
            .args(&self.node_flags[i])
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        cmd
    }

    /// Flags given to node `i` only (from its next start), after the shared
    /// ones, so they override them.
    pub fn set_node_flags(&mut self, i: usize, flags: &[&str]) {
        self.node_flags[i] = flags.iter().map(|s| s.to_string()).collect();
    }

    /// The path of the cluster key file.
    pub fn key_file(&self) -> PathBuf {
        self.dir.path().join("cluster.key")
    }

    /// Everything node `i` has logged so far.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("n{}.log", i + 1))).unwrap_or_default()
    }

    /// The client token, if the cluster has one.
    pub fn token(&self) -> Option<String> {
        self.token.clone()
    }

    /// Starts node `i` (its stderr goes to a log file beside its data).
    pub fn spawn(&mut self, i: usize) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("n{}.log", i + 1)))
            .expect("log file");
        let child = self.command(i).stderr(log).spawn().expect("spawn raftkv");
        self.children[i] = Some(child);
    }

    /// Starts a new node on `port`, empty and waiting to be added (`-join`),
    /// under the next id; waits until it answers PING and returns its index.
    pub fn join(&mut self, port: u16) -> usize {
        let i = self.ports.len();
        self.ports.push(port);
        self.children.push(None);
        self.node_flags.push(Vec::new());
        self.joining.push(true);
        self.spawn(i);
        self.wait_until_up(i);
        i
    }

    /// Waits until node `i` answers PING (10 s at most).
    pub fn wait_until_up(&mut self, i: usize) {
        assert!(self.came_up(i), "node {} did not come up", i + 1);
    }

    /// SIGKILLs node `i`.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Node `i`'s process id, if it is running.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.children[i].as_ref().map(Child::id)
    }

    /// Node `i`'s exit code, once its process has exited by itself (`None`
    /// while it runs, or if a signal ended it).
    pub fn exit_code(&mut self, i: usize) -> Option<i32> {
        let child = self.children[i].as_mut()?;
        child.try_wait().ok().flatten()?.code()
    }

    /// Whether node `i`'s process is still running.
    pub fn is_running(&mut self, i: usize) -> bool {
        match self.children[i].as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Sends each line on one connection and returns the replies.
    pub fn try_request(&self, i: usize, lines: &[&str]) -> std::io::Result<Vec<String>> {
        let stream = TcpStream::connect(self.addr(i))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut writer = stream;
        let mut replies = Vec::new();
        if let Some(token) = &self.token {
            writer.write_all(format!("AUTH {token}\n").as_bytes())?;
            let mut reply = String::new();
            reader.read_line(&mut reply)?;
            if reply.trim_end() != "OK" {
                return Err(std::io::Error::other(format!("AUTH refused: {reply}")));
            }
        }
        for line in lines {
            writer.write_all(format!("{line}\n").as_bytes())?;
            let mut reply = String::new();
            reader.read_line(&mut reply)?;
            replies.push(reply.trim_end().to_string());
        }
        Ok(replies)
    }

    /// Like `try_request`, failing the test on I/O errors.
    pub fn request(&self, i: usize, lines: &[&str]) -> Vec<String> {
        self.try_request(i, lines)
            .unwrap_or_else(|e| panic!("node {}: {e}", i + 1))
    }

    /// Node `i`'s STATUS fields.
    pub fn status(&self, i: usize) -> HashMap<String, String> {
        let replies = self.try_request(i, &["STATUS"]).unwrap_or_default();
        replies
            .first()
            .map(|line| {
                line.split_whitespace()
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits for a node that reports itself leader; returns its index.
    pub fn wait_for_leader(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            for i in 0..self.ports.len() {
                if self.status(i).get("role").map(String::as_str) == Some("leader") {
                    return i;
                }
            }
            sleep(Duration::from_millis(50));
        }
        panic!("no leader within 10 s");
    }

    /// Polls `check` every 50 ms until it holds, failing after `limit`.
    pub fn wait_for(&self, what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if check() {
                return;
            }
            sleep(Duration::from_millis(50));
        }
        panic!("timed out waiting for {what}");
    }
}

impl Drop for ProcCluster {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill9(i);
        }
    }
}
