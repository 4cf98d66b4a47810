//! A watch from the client's side: its own connection, read line by line.
//!
//! [`WatchStream::open`] sends `WATCH64` (keys and values are any bytes)
//! and reads the server's `WATCHING from=<rev>`; [`WatchStream::receive`]
//! then blocks for the next message: an event, or the end of the watch
//! (`CANCELED resume=<rev>` when the server gave up on a slow reader,
//! `ERR COMPACTED oldest=<rev>` when the history moved past it). Resuming
//! is [`WatchStream::open`] again, on any server, from
//! [`WatchStream::next_revision`]: events come in revision order, each
//! exactly once, with no gap.

use std::io::{self, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::server::MAX_REPLY_LINE;
use crate::service::reply::{Code, Reply};
use crate::service::watch::{WatchEvent, WatchFilter};
use crate::transport::line::{base64_encode, read_line, LineError};
use crate::transport::tcp::dial;

/// What a watch delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchMessage {
    /// A change.
    Event(WatchEvent),
    /// The server cancelled the watch (its reader fell too far behind):
    /// resume from this revision.
    Canceled {
        /// The first revision not delivered.
        resume: u64,
    },
    /// The history no longer holds the next revision: re-read, then watch
    /// from the revision the read reflects.
    Compacted {
        /// The oldest revision the server keeps.
        oldest: u64,
    },
}

/// An open watch.
#[derive(Debug)]
pub struct WatchStream {
    conn: BufReader<TcpStream>,
    /// The revision the next event will be at least.
    next: u64,
}

/// `oldest=<rev>` out of a `COMPACTED` refusal's message.
fn oldest(message: &str) -> Option<u64> {
    message
        .strip_prefix("oldest=")?
        .split(' ')
        .next()?
        .parse()
        .ok()
}

impl WatchStream {
    /// Opens a watch on the server at `addr` (after `AUTH` with `token`),
    /// from revision `from` (`None`: after the current one). A server's
    /// refusal (`ERR COMPACTED`, `ERR BUSY`, ...) is `Ok(Err(reply))`.
    pub fn open(
        addr: &str,
        token: Option<&str>,
        filter: &WatchFilter,
        from: Option<u64>,
    ) -> io::Result<Result<WatchStream, Reply>> {
        let stream = dial(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut conn = BufReader::new(stream);
        if let Some(token) = token {
            conn.get_mut()
                .write_all(format!("AUTH {token}\n").as_bytes())?;
            let reply = read_reply(&mut conn)?;
            if reply != "OK" {
                return Ok(Err(Reply::parse_line(&reply).unwrap_or(Reply::Text(reply))));
            }
        }
        let what = match filter {
            WatchFilter::Key(k) => base64_encode(k),
            WatchFilter::Prefix(p) => format!("PREFIX {}", base64_encode(p)),
        };
        let from_part = from.map_or(String::new(), |f| format!(" FROM {f}"));
        conn.get_mut()
            .write_all(format!("WATCH64 {what}{from_part}\n").as_bytes())?;
        let first = read_reply(&mut conn)?;
        let Some(next) = first
            .strip_prefix("WATCHING from=")
            .and_then(|n| n.parse().ok())
        else {
            return Ok(Err(Reply::parse_line(&first).unwrap_or(Reply::Text(first))));
        };
        conn.get_ref().set_read_timeout(None)?;
        Ok(Ok(WatchStream { conn, next }))
    }

    /// Waits at most `timeout` in each [`WatchStream::receive`] (`None`:
    /// forever); a wait that runs out is an error.
    pub fn set_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.conn.get_ref().set_read_timeout(timeout)
    }

    /// The revision to resume from: one past the last event received (or
    /// where the watch began).
    pub fn next_revision(&self) -> u64 {
        self.next
    }

    /// Blocks for the next message.
    pub fn receive(&mut self) -> io::Result<WatchMessage> {
        let line = read_reply(&mut self.conn)?;
        if let Some(event) = WatchEvent::parse_line(&line) {
            // The server writes a revision's changes (a transaction's)
            // together; resuming goes on after the last revision seen.
            self.next = self.next.max(event.revision + 1);
            return Ok(WatchMessage::Event(event));
        }
        if let Some(resume) = line
            .strip_prefix("CANCELED resume=")
            .and_then(|r| r.parse().ok())
        {
            return Ok(WatchMessage::Canceled { resume });
        }
        match Reply::parse_line(&line) {
            Some(Reply::Error(e)) if e.code == Code::Compacted => {
                let oldest = oldest(&e.message).unwrap_or(self.next);
                Ok(WatchMessage::Compacted { oldest })
            }
            _ => Err(io::Error::other(format!("unexpected watch line: {line}"))),
        }
    }

    /// Sends `CANCEL` and reads up to `CANCELED`, discarding events still
    /// in flight.
    pub fn cancel(mut self) -> io::Result<()> {
        self.conn.get_mut().write_all(b"CANCEL\n")?;
        loop {
            if read_reply(&mut self.conn)? == "CANCELED" {
                return Ok(());
            }
        }
    }
}

fn read_reply(conn: &mut BufReader<TcpStream>) -> io::Result<String> {
    match read_line(conn, |_| MAX_REPLY_LINE) {
        Ok(line) => String::from_utf8(line).map_err(|_| io::Error::other("a line not UTF-8")),
        Err(LineError::Io(e)) => Err(e),
        Err(LineError::Closed) => Err(io::ErrorKind::ConnectionAborted.into()),
        Err(LineError::TooLong) => Err(io::Error::other("a line too long")),
    }
}
