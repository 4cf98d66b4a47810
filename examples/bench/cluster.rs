//! Server binaries, the 3-process clusters started from them, and the CPU
//! time those processes use.

use std::cell::Cell;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use crate::protocol::SessionKind;

/// A `raftkv` server binary and what it understands.
pub struct Binary {
    /// `A` or `B`.
    pub label: &'static str,
    /// Where it is.
    pub path: PathBuf,
    /// Whether it takes `-cluster-key-file` (peer authentication); older
    /// servers, built before peer authentication, do not.
    pub peer_auth: bool,
    /// How its clients get session ids, once a cluster of it has answered.
    pub sessions: Cell<Option<SessionKind>>,
}

impl Binary {
    /// Asks `path -h` which flags the binary takes.
    pub fn probe(label: &'static str, path: PathBuf) -> Result<Binary, String> {
        let out = Command::new(&path)
            .arg("-h")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let help = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !help.contains("-peers") {
            return Err(format!(
                "{}: `-h` does not describe a raftkv server",
                path.display()
            ));
        }
        Ok(Binary {
            label,
            path,
            peer_auth: help.contains("-cluster-key-file"),
            sessions: Cell::new(None),
        })
    }

    /// The binary `cargo build --release` puts next to this example.
    pub fn default_path() -> Result<PathBuf, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        exe.parent()
            .and_then(|examples| examples.parent())
            .map(|dir| dir.join("raftkv"))
            .filter(|p| p.exists())
            .ok_or_else(|| {
                "raftkv binary not found next to the examples: run `cargo build --release` \
                 first, or name one with -a"
                    .into()
            })
    }

    /// One line saying what this binary is, for the run's header.
    pub fn describe(&self) -> String {
        let auth = if self.peer_auth {
            "peers authenticated with -cluster-key-file"
        } else {
            "no peer authentication flags"
        };
        format!("{} = {} ({auth})", self.label, self.path.display())
    }
}

/// Three server processes on loopback, with their data in one directory;
/// killed, and the directory removed, on drop.
pub struct LocalCluster {
    children: Vec<Child>,
    dir: PathBuf,
    bin: PathBuf,
    peer_auth: bool,
    /// The servers' client addresses.
    pub addrs: Vec<String>,
}

impl LocalCluster {
    /// Starts three servers of `bin` with their data in `dir` (created), with
    /// the flags `bin` understands: a fresh cluster key if it authenticates
    /// peers. Each server's stderr goes to `dir/n<id>.log`.
    pub fn start(bin: &Binary, dir: &Path) -> Result<LocalCluster, String> {
        let ports: Vec<u16> = (0..3)
            .map(|_| {
                TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .map(|a| a.port())
            })
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut cluster = LocalCluster {
            children: Vec::new(),
            dir: dir.to_path_buf(),
            bin: bin.path.clone(),
            peer_auth: bin.peer_auth,
            addrs,
        };
        let key_file = cluster.key_file();
        if bin.peer_auth {
            let mut key = [0u8; 32];
            File::open("/dev/urandom")
                .and_then(|mut f| f.read_exact(&mut key))
                .and_then(|_| fs::write(&key_file, key))
                .map_err(|e| format!("cluster key: {e}"))?;
        }
        for id in 1..=3 {
            let child = cluster.spawn(id)?;
            cluster.children.push(child);
        }
        Ok(cluster)
    }

    fn key_file(&self) -> PathBuf {
        self.dir.join("cluster.key")
    }

    /// Server `id`'s data directory.
    pub fn data_dir(&self, id: usize) -> PathBuf {
        self.dir.join(format!("n{id}"))
    }

    /// Everything server `id` has logged.
    pub fn log(&self, id: usize) -> String {
        fs::read_to_string(self.dir.join(format!("n{id}.log"))).unwrap_or_default()
    }

    /// Starts server `id` (1-based), its stderr appended to `n<id>.log`.
    fn spawn(&self, id: usize) -> Result<Child, String> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("n{id}.log")))
            .map_err(|e| e.to_string())?;
        let mut command = Command::new(&self.bin);
        command
            .args(["-id", &id.to_string(), "-peers", &self.addrs.join(",")])
            .arg("-data")
            .arg(self.data_dir(id));
        if self.peer_auth {
            command.arg("-cluster-key-file").arg(self.key_file());
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("{}: {e}", self.bin.display()))
    }

    /// Kills server `id` (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self, id: usize) {
        if let Some(child) = self.children.get_mut(id - 1) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts server `id` again, after [`LocalCluster::kill`].
    pub fn restart(&mut self, id: usize) -> Result<(), String> {
        let child = self.spawn(id)?;
        if let Some(slot) = self.children.get_mut(id - 1) {
            *slot = child;
        }
        Ok(())
    }

    /// The servers' process ids.
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }

    /// Why the cluster may not be working: servers that exited, and the
    /// start of each server's log.
    pub fn diagnose(&mut self) -> String {
        let mut report = String::new();
        for (i, child) in self.children.iter_mut().enumerate() {
            if let Ok(Some(status)) = child.try_wait() {
                report += &format!("\n  server {} exited: {status}", i + 1);
            }
            let log =
                fs::read_to_string(self.dir.join(format!("n{}.log", i + 1))).unwrap_or_default();
            for line in log.lines().take(5) {
                report += &format!("\n  n{}.log: {line}", i + 1);
            }
        }
        report
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Asks every server for `STATUS` until one says it leads; gives up after 10 s.
pub fn find_leader(addrs: &[String], token: Option<&str>) -> Option<usize> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        for (i, addr) in addrs.iter().enumerate() {
            if status(addr, token).is_some_and(|s| s.contains("role=leader")) {
                return Some(i);
            }
        }
        thread::sleep(Duration::from_millis(50));
    }
    None
}

/// One server's `STATUS` line.
pub fn status(addr: &str, token: Option<&str>) -> Option<String> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    let request = match token {
        Some(t) => format!("AUTH {t}\nSTATUS\n"),
        None => "STATUS\n".to_string(),
    };
    stream.write_all(request.as_bytes()).ok()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    for _ in 0..request.lines().count() {
        line.clear();
        reader.read_line(&mut line).ok()?;
    }
    Some(line)
}

/// CPU time used so far by process `pid`: user plus system time of all its
/// threads, those that have exited included (fields 14 and 15 of
/// `/proc/<pid>/stat`, in clock ticks).
///
/// Not `/proc/<pid>/schedstat`, although it counts in nanoseconds: it covers
/// only the process's main thread (a server's main thread just parks), and
/// summing `/proc/<pid>/task/*/schedstat` would miss the connection threads
/// that exit when the clients hang up. The price is resolution: one tick
/// (10 ms at the usual 100 Hz) per process and reading, small against the
/// seconds of CPU a row uses.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces; the
    // fields after it start with field 3.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some(Duration::from_secs_f64(
        (utime + stime) as f64 / clock_ticks() as f64,
    ))
}

/// Clock ticks per second (`CLK_TCK`), from `getconf CLK_TCK` (std has no
/// `sysconf`); 100, Linux's value everywhere but a few old ports, if that
/// fails.
pub fn clock_ticks() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}
