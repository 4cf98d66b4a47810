//! Line framing shared by the peer and client protocols: bounded line reads
//! (in bytes, and on a socket also in time), and base64 to carry binary RPC
//! payloads on one text line.

use std::io::{self, BufRead, BufReader};
use std::net::TcpStream;
use std::time::Instant;

/// Why no line could be read.
#[derive(Debug)]
pub enum LineError {
    /// The connection closed (cleanly, or mid-line).
    Closed,
    /// The line exceeded the limit; the rest of the stream is not trustworthy.
    TooLong,
    /// An I/O error (including a read timeout).
    Io(io::Error),
}

/// Reads one line ending in `\n` (a preceding `\r` is dropped) of at most
/// `limit(first_bytes)` bytes, where the limit may depend on how the line begins
/// (peer RPCs may be longer than client commands). Never buffers more than the
/// limit.
pub fn read_line<R: BufRead>(
    reader: &mut R,
    limit: impl Fn(&[u8]) -> usize,
) -> Result<Vec<u8>, LineError> {
    read_line_with(reader, limit, |_| Ok(()))
}

/// Like [`read_line`] on a socket, but the whole line must arrive before
/// `deadline`. A socket's read timeout bounds each `read` call, not the line:
/// a sender trickling one byte at a time would hold the thread forever. So
/// before each read the timeout shrinks to the time left, and a line not
/// complete at the deadline fails with a `TimedOut` I/O error.
pub fn read_line_before(
    reader: &mut BufReader<TcpStream>,
    limit: impl Fn(&[u8]) -> usize,
    deadline: Instant,
) -> Result<Vec<u8>, LineError> {
    read_line_with(reader, limit, |r: &mut BufReader<TcpStream>| {
        if !r.buffer().is_empty() {
            return Ok(());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        r.get_ref().set_read_timeout(Some(left))
    })
}

impl LineError {
    /// Whether the read gave up waiting (a deadline or a socket timeout).
    pub fn is_timeout(&self) -> bool {
        matches!(self, LineError::Io(e)
            if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut))
    }
}

/// The loop of [`read_line`], calling `before_read` before each refill.
fn read_line_with<R: BufRead>(
    reader: &mut R,
    limit: impl Fn(&[u8]) -> usize,
    mut before_read: impl FnMut(&mut R) -> io::Result<()>,
) -> Result<Vec<u8>, LineError> {
    let mut line = Vec::new();
    loop {
        before_read(reader).map_err(LineError::Io)?;
        let available = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(LineError::Io(e)),
        };
        if available.is_empty() {
            return Err(LineError::Closed);
        }
        let (chunk, found) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..i], true),
            None => (available, false),
        };
        if line.len() + chunk.len() > limit(if line.is_empty() { chunk } else { &line }) {
            return Err(LineError::TooLong);
        }
        line.extend_from_slice(chunk);
        let used = chunk.len() + usize::from(found);
        reader.consume(used);
        if found {
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(line);
        }
    }
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with `=` padding.
pub fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> shift) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard padded base64; `None` on any invalid input.
pub fn base64_decode(text: &[u8]) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(4) {
        return None;
    }
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let chunks = text.len() / 4;
    for (i, chunk) in text.chunks(4).enumerate() {
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && i + 1 != chunks) {
            return None;
        }
        let mut n = 0u32;
        for &c in &chunk[..4 - pad] {
            n = (n << 6) | u32::from(value(c)?);
        }
        n <<= 6 * pad as u32;
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_every_length_and_rejects_garbage() {
        for len in 0..40 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(base64_decode(base64_encode(&bytes).as_bytes()), Some(bytes));
        }
        assert_eq!(base64_encode(b"Man"), "TWFu");
        assert_eq!(base64_encode(b"Ma"), "TWE=");
        for bad in [&b"TWF"[..], b"TW=u", b"====", b"TWE=TWFu", b"T!Fu"] {
            assert_eq!(
                base64_decode(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn lines_are_bounded_and_crlf_is_accepted() {
        let mut r = io::Cursor::new(b"PING\r\nGET k\nxxxxxxxxxx\npartial".to_vec());
        assert_eq!(read_line(&mut r, |_| 100).unwrap(), b"PING");
        assert_eq!(read_line(&mut r, |_| 100).unwrap(), b"GET k");
        assert!(matches!(read_line(&mut r, |_| 5), Err(LineError::TooLong)));
        let mut r = io::Cursor::new(b"partial".to_vec());
        assert!(matches!(read_line(&mut r, |_| 100), Err(LineError::Closed)));
    }

    /// A sender that trickles a byte every 20 ms, never finishing the line, is
    /// cut off at the deadline although every single read succeeds in time.
    #[test]
    fn a_trickled_line_times_out_at_the_deadline() {
        use std::io::Write;
        use std::net::TcpListener;
        use std::time::Duration;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let trickler = std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            for _ in 0..100 {
                if s.write_all(b"x").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream);
        let start = Instant::now();
        let err = read_line_before(&mut reader, |_| 1 << 20, start + Duration::from_millis(300))
            .unwrap_err();
        assert!(err.is_timeout(), "{err:?}");
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_millis(1500),
            "{took:?}"
        );
        drop(reader);
        trickler.join().unwrap();
    }
}
