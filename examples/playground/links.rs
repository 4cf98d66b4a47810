//! Cuttable links between the playground's server processes: a proxy in front of each.
//!
//! Every connection to server `t` goes through proxy `t`, which reads the
//! first line. A peer connection opens with `PEER <cluster-id> <from> <to>
//! <nonce>`, naming its link; if that directed link is cut the connection is
//! closed at once, and cutting a link closes its open connections. Anything
//! else (a client, the page's HTTP) always passes, so the page can still ask
//! a cut-off server what it thinks. (The same shape as the tests'
//! `tests/common/links.rs`, with one-way cuts.)

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;

#[derive(Default)]
struct State {
    /// Directed links (from, to) that are cut, by server id.
    cut: BTreeSet<(u64, u64)>,
    /// Open peer connections: the link and both sockets.
    open: Vec<((u64, u64), TcpStream, TcpStream)>,
}

/// The proxies of one cluster.
#[derive(Clone, Default)]
pub struct Links {
    state: Arc<Mutex<State>>,
}

impl Links {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a proxy for server `target` listening on `listener`, which
    /// forwards to the server's own port `target_port`.
    pub fn proxy(&self, listener: TcpListener, target: u64, target_port: u16) {
        let links = self.clone();
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let links = links.clone();
                thread::spawn(move || links.serve(client, target, target_port));
            }
        });
    }

    fn serve(&self, client: TcpStream, target: u64, target_port: u16) {
        let Ok(reader) = client.try_clone() else {
            return;
        };
        let mut reader = BufReader::new(reader);
        let mut first = String::new();
        if reader.read_line(&mut first).is_err() {
            return;
        }
        let link = peer_link(&first).filter(|&(_, to)| to == target);
        let Ok(mut server) = TcpStream::connect(("127.0.0.1", target_port)) else {
            return;
        };
        if let Some(link) = link {
            let mut state = self.lock();
            if state.cut.contains(&link) {
                let _ = client.shutdown(Shutdown::Both);
                return;
            }
            if let (Ok(c), Ok(s)) = (client.try_clone(), server.try_clone()) {
                state.open.push((link, c, s));
            }
        }
        if server.write_all(first.as_bytes()).is_err() {
            return;
        }
        let (Ok(to_client), Ok(from_server)) = (client.try_clone(), server.try_clone()) else {
            return;
        };
        thread::spawn(move || pump(from_server, to_client));
        let buffered = reader.buffer().to_vec();
        if server.write_all(&buffered).is_ok() {
            let mut rest = reader.into_inner();
            pump_stream(&mut rest, &mut server);
        }
        let _ = server.shutdown(Shutdown::Both);
    }

    /// Cuts every link from a server in `from` to a server in `to`, and
    /// closes the connections that carry them.
    pub fn cut(&self, from: &[u64], to: &[u64]) {
        let mut state = self.lock();
        for &a in from {
            for &b in to.iter().filter(|&&b| b != a) {
                state.cut.insert((a, b));
            }
        }
        let State { cut, open } = &mut *state;
        open.retain(|(link, c, s)| {
            let keep = !cut.contains(link);
            if !keep {
                let _ = c.shutdown(Shutdown::Both);
                let _ = s.shutdown(Shutdown::Both);
            }
            keep
        });
    }

    /// Restores every link.
    pub fn heal(&self) {
        self.lock().cut.clear();
    }

    /// The links cut, as (from, to) pairs.
    pub fn cut_links(&self) -> Vec<(u64, u64)> {
        self.lock().cut.iter().copied().collect()
    }
}

/// `(from, to)` if `line` opens a peer connection.
fn peer_link(line: &str) -> Option<(u64, u64)> {
    let mut words = line.split_whitespace();
    if words.next()? != "PEER" {
        return None;
    }
    let _cluster = words.next()?;
    let from = words.next()?.parse().ok()?;
    let to = words.next()?.parse().ok()?;
    Some((from, to))
}

fn pump(mut from: TcpStream, mut to: TcpStream) {
    pump_stream(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Both);
}

fn pump_stream(from: &mut TcpStream, to: &mut TcpStream) {
    let mut buf = [0u8; 16 << 10];
    while let Ok(n @ 1..) = from.read(&mut buf) {
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
}
