//! A watch on a client connection: `WATCH` turns the connection into a
//! stream of event lines until `CANCEL`, then it is back to request and
//! response (see [`crate::service::watch`] for the lines and the rules).
//!
//! The connection's own thread does everything with blocking I/O: it waits
//! on the hub for changes past its cursor (at most [`POLL`] at a time),
//! writes them, then looks, without blocking, whether the client sent a
//! line (`CANCEL`) or closed. The apply loop never waits for it.

use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::Shared;
use crate::service::reply::{Code, Reply};
use crate::service::watch::{event_line, WatchEnd, WatchRequest};
use crate::transport::line::{read_line_before, LineError};

/// Longest a watcher waits for changes before it looks at its client's input.
const POLL: Duration = Duration::from_millis(100);
/// Longest line read from a client during a watch (`CANCEL`).
const MAX_WATCH_LINE: usize = 4096;

/// What the client sent meanwhile.
enum Input {
    Nothing,
    Line(Vec<u8>),
    Closed,
}

/// A watch's end that leaves the connection open: the line to write last.
fn compacted(oldest: u64) -> Reply {
    Reply::error(Code::Compacted, format!("oldest={oldest}"))
}

/// Serves `request` on the connection; whether the connection stays open
/// (back to request and response) afterwards.
pub(super) fn serve(
    request: WatchRequest,
    reader: &mut BufReader<TcpStream>,
    writer: &mut BufWriter<TcpStream>,
    shared: &Shared,
) -> bool {
    let hub = shared.frontend.replica().watch();
    let _slot = match hub.register() {
        Ok(slot) => slot,
        Err(e) => return write_line(writer, &Reply::from(e).to_string()),
    };
    let mut next = match hub.start(request.from) {
        Ok(from) => from,
        Err(WatchEnd::Compacted(oldest)) => {
            return write_line(writer, &compacted(oldest).to_string())
        }
    };
    if !write_line(writer, &format!("WATCHING from={next}")) {
        return false;
    }
    let limit = hub.limits().lag_bytes;
    loop {
        if shared.stopping.load(Ordering::SeqCst) {
            return false;
        }
        let (changes, after, lag_before) = match hub.next(next, &request.filter, POLL) {
            Ok(batch) => batch,
            Err(WatchEnd::Compacted(oldest)) => {
                return write_line(writer, &compacted(oldest).to_string())
            }
        };
        for change in &changes {
            if writeln!(writer, "{}", event_line(change, request.base64)).is_err() {
                return false;
            }
        }
        if writer.flush().is_err() {
            return false;
        }
        next = after;
        // The write left it further behind than it was, and too far.
        let lag = hub.lag(next);
        if lag > limit && lag > lag_before {
            return write_line(writer, &format!("CANCELED resume={next}"));
        }
        match poll_input(reader) {
            Input::Nothing => {}
            Input::Closed => return false,
            Input::Line(line) if line.trim_ascii().eq_ignore_ascii_case(b"CANCEL") => {
                return write_line(writer, "CANCELED");
            }
            Input::Line(line) if line.trim_ascii().is_empty() => {}
            Input::Line(_) => {
                let e = Reply::error(Code::BadRequest, "a watch reads only CANCEL");
                if !write_line(writer, &e.to_string()) {
                    return false;
                }
            }
        }
    }
}

/// Writes one line and flushes; whether the connection still works.
fn write_line(writer: &mut BufWriter<TcpStream>, line: &str) -> bool {
    writeln!(writer, "{line}")
        .and_then(|_| writer.flush())
        .is_ok()
}

/// Whether the client sent a line or closed, without waiting for one.
fn poll_input(reader: &mut BufReader<TcpStream>) -> Input {
    if reader.buffer().is_empty() {
        if reader
            .get_ref()
            .set_read_timeout(Some(Duration::from_millis(1)))
            .is_err()
        {
            return Input::Closed;
        }
        match reader.fill_buf() {
            Ok([]) => return Input::Closed,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Input::Nothing
            }
            Err(_) => return Input::Closed,
        }
    }
    // Something arrived: the rest of its line follows promptly.
    let deadline = Instant::now() + Duration::from_secs(5);
    match read_line_before(reader, |_| MAX_WATCH_LINE, deadline) {
        Ok(line) => Input::Line(line),
        Err(LineError::TooLong | LineError::Closed | LineError::Io(_)) => Input::Closed,
    }
}
