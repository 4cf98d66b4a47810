//! A small HTTP/1.1 client for tests, written against the RFC rather than the
//! server's own parser: raw bytes out, responses parsed by hand.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use raftkv::http::json::{self, Json};

/// A parsed response.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Header fields, names lowercased.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Reply {
    /// The first header called `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics if it is not.
    pub fn json(&self) -> Json {
        json::parse(&self.text()).unwrap_or_else(|e| panic!("{e}: {:?}", self.text()))
    }

    /// The `error` code of a JSON error body.
    pub fn error_code(&self) -> String {
        self.json()
            .get("error")
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_string()
    }
}

/// One keep-alive connection.
pub struct Conn {
    reader: BufReader<TcpStream>,
}

impl Conn {
    /// Connects to `addr`, with a 15 s read timeout.
    pub fn open(addr: &str) -> Conn {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("{addr}: {e}"));
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        Conn {
            reader: BufReader::new(stream),
        }
    }

    /// Sends raw bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        self.try_send(bytes).unwrap();
    }

    /// Sends raw bytes, if the server still listens.
    pub fn try_send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.reader.get_mut().write_all(bytes)
    }

    /// Sends one request with `Host` and, if there is a body, `Content-Length`.
    pub fn send_request(&mut self, method: &str, path: &str, body: Option<&[u8]>) {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: test\r\n");
        if let Some(body) = body {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body.unwrap_or_default());
        self.send(&bytes);
    }

    /// Reads one response; `head_only` for a response to HEAD (no body).
    /// `None` if the connection closed first.
    pub fn read_reply(&mut self, head_only: bool) -> Option<Reply> {
        let mut line = String::new();
        if self.reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let mut parts = line.trim_end().splitn(3, ' ');
        assert_eq!(parts.next(), Some("HTTP/1.1"), "status line {line:?}");
        let status: u16 = parts.next()?.parse().ok()?;
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).ok()?;
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').expect("header with a colon");
            headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
        }
        let mut reply = Reply {
            status,
            headers,
            body: Vec::new(),
        };
        if status >= 200 && !head_only {
            let length: usize = reply
                .header("content-length")
                .expect("every response has a Content-Length")
                .parse()
                .unwrap();
            reply.body = vec![0; length];
            self.reader.read_exact(&mut reply.body).ok()?;
        }
        Some(reply)
    }

    /// Sends a request and reads its response.
    pub fn request(&mut self, method: &str, path: &str, body: Option<&[u8]>) -> Reply {
        self.send_request(method, path, body);
        self.read_reply(method == "HEAD")
            .unwrap_or_else(|| panic!("{method} {path}: connection closed"))
    }

    /// True once the server has closed the connection (reads end-of-file,
    /// discarding anything before it).
    pub fn is_closed(&mut self) -> bool {
        let mut rest = Vec::new();
        self.reader.read_to_end(&mut rest).is_ok()
    }
}

/// One request on a fresh connection.
pub fn request(addr: &str, method: &str, path: &str, body: Option<&[u8]>) -> Reply {
    Conn::open(addr).request(method, path, body)
}

/// `GET path` on a fresh connection.
pub fn get(addr: &str, path: &str) -> Reply {
    request(addr, "GET", path, None)
}

/// Percent-encodes every byte outside `A-Za-z0-9-._~`.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
