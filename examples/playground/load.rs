//! A load of K clients writing to the playground's cluster, started and stopped from the page.
//!
//! Each client is a thread with one text-protocol connection at a time: it
//! sends `PUT load-<client>-<n> <n>`, waits for the reply, pauses a moment,
//! and sends the next; when its server stops answering it moves on to
//! another. The traffic is real, so every request shows in the servers'
//! events (`client_request`, `client_reply`) like any other.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// What a client pauses between requests.
const THINK: Duration = Duration::from_millis(20);

/// Where clients find servers: the addresses of those running now.
pub type Servers = Arc<dyn Fn() -> Vec<String> + Send + Sync>;

/// Clients running, until stopped.
#[derive(Default)]
pub struct Load {
    stop: Arc<AtomicBool>,
    clients: Vec<JoinHandle<()>>,
}

impl Load {
    /// Starts `k` clients.
    pub fn start(k: usize, servers: Servers) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let clients = (0..k)
            .map(|c| {
                let (stop, servers) = (Arc::clone(&stop), Arc::clone(&servers));
                thread::spawn(move || run(c, &stop, &servers))
            })
            .collect();
        Load { stop, clients }
    }

    /// How many clients run.
    pub fn clients(&self) -> usize {
        self.clients.len()
    }

    /// Stops every client and waits for them.
    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        for c in self.clients {
            let _ = c.join();
        }
    }
}

fn run(client: usize, stop: &AtomicBool, servers: &Servers) {
    let mut n = 0u64;
    let mut turn = client;
    let mut conn: Option<(TcpStream, BufReader<TcpStream>)> = None;
    while !stop.load(Ordering::SeqCst) {
        if conn.is_none() {
            let addrs = servers();
            if !addrs.is_empty() {
                turn += 1;
                conn = connect(&addrs[turn % addrs.len()]);
            }
        }
        if let Some((writer, reader)) = conn.as_mut() {
            n += 1;
            let line = format!("PUT load-{client}-{n} {n}\n");
            let mut reply = String::new();
            let ok = writer.write_all(line.as_bytes()).is_ok()
                && reader.read_line(&mut reply).is_ok_and(|read| read > 0);
            if !ok || reply.starts_with("ERR NO_LEADER") {
                conn = None;
            }
        }
        thread::sleep(THINK);
    }
}

fn connect(addr: &str) -> Option<(TcpStream, BufReader<TcpStream>)> {
    let socket = addr.parse().ok()?;
    let stream = TcpStream::connect_timeout(&socket, Duration::from_millis(300)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let reader = BufReader::new(stream.try_clone().ok()?);
    Some((stream, reader))
}
