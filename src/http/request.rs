//! Reading one HTTP/1.x request from untrusted bytes (RFC 9112), within limits.
//!
//! ```text
//! request-line   = method SP target SP HTTP-version CRLF     (≤ 8 KiB, else 414)
//! header-field   = name ":" OWS value OWS CRLF               (≤ 16 KiB and ≤ 100 fields, else 431)
//! CRLF
//! body           = exactly Content-Length bytes              (≤ 1 MiB, else 413)
//! ```
//!
//! Every refusal is a [`Rejection`] with the status to answer, after which the
//! connection closes: once framing is in doubt, nothing later on the
//! connection can be trusted. Request smuggling lives in framing, so framing is
//! strict: a duplicate or non-numeric `Content-Length`, `Transfer-Encoding`
//! beside it, whitespace before a colon, folded header lines and bare CRs are
//! all 400; a body without `Content-Length` (chunked) is 411.

use std::io::{self, BufRead};

use crate::transport::line::{read_line, LineError};

/// Longest request line.
pub const MAX_REQUEST_LINE: usize = 8 * 1024;
/// Most bytes in the header section.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Most header fields.
pub const MAX_HEADERS: usize = 100;
/// Largest body.
pub const MAX_BODY: usize = 1 << 20;

/// The request methods the server knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`.
    Get,
    /// `HEAD`: GET without the body.
    Head,
    /// `PUT`.
    Put,
    /// `POST`.
    Post,
    /// `DELETE`.
    Delete,
    /// `OPTIONS` (CORS preflight).
    Options,
}

impl Method {
    /// The method's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Put => "PUT",
            Method::Post => "POST",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
        }
    }
}

/// A request line and its headers; the body is read separately.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The method.
    pub method: Method,
    /// The path, still percent-encoded (routing happens before decoding).
    pub path: String,
    /// What followed the first `?` in the target, if anything.
    pub query: String,
    /// True for HTTP/1.1, false for HTTP/1.0.
    pub http11: bool,
    /// Header fields in order, names lowercased, values trimmed.
    pub headers: Vec<(String, String)>,
    /// The body's length, from `Content-Length` (0 without one).
    pub content_length: usize,
}

impl Head {
    /// The value of the first header named `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the client wants the connection kept open after the response:
    /// HTTP/1.1 unless `Connection: close`, HTTP/1.0 never (no keep-alive
    /// negotiation for 1.0).
    pub fn keep_alive(&self) -> bool {
        let close = self
            .header("connection")
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")));
        self.http11 && !close
    }

    /// Whether the client sent `Expect: 100-continue` and waits before the body.
    pub fn expects_continue(&self) -> bool {
        self.http11
            && self
                .header("expect")
                .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    }
}

/// A request refused before it was handled: answer `status`, then close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The HTTP status.
    pub status: u16,
    /// What was wrong, for a person.
    pub message: String,
}

fn reject(status: u16, message: impl Into<String>) -> Rejection {
    Rejection {
        status,
        message: message.into(),
    }
}

/// Why no request could be read.
#[derive(Debug)]
pub enum ReadError {
    /// Invalid or too large: answer and close.
    Reject(Rejection),
    /// The client hung up (cleanly or mid-request): close without answering.
    Closed,
    /// The phase's deadline passed: answer 408 if a request had begun.
    TimedOut,
    /// Another I/O error: close.
    Io(io::Error),
}

impl From<Rejection> for ReadError {
    fn from(r: Rejection) -> Self {
        ReadError::Reject(r)
    }
}

fn io_error(e: io::Error) -> ReadError {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ReadError::TimedOut,
        io::ErrorKind::UnexpectedEof => ReadError::Closed,
        _ => ReadError::Io(e),
    }
}

fn line_error(e: LineError, too_long: Rejection) -> ReadError {
    match e {
        LineError::Closed => ReadError::Closed,
        LineError::TooLong => ReadError::Reject(too_long),
        LineError::Io(e) => io_error(e),
    }
}

/// Whether a connection's first line is an HTTP/1.x request line:
/// `TOKEN SP /target SP HTTP/1.0|1.1`, the token in capitals. Anything else is
/// the text protocol. (A text command could in principle look like this, e.g.
/// `PUT /a HTTP/1.1`; such a first line is HTTP.)
pub fn is_request_line(line: &[u8]) -> bool {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    !method.is_empty()
        && method.len() <= 16
        && method.iter().all(u8::is_ascii_uppercase)
        && target.first() == Some(&b'/')
        && (version == b"HTTP/1.1" || version == b"HTTP/1.0")
}

/// Reads the next request line, skipping blank lines before it (RFC 9112
/// §2.2). `Closed` if the connection ends first.
pub fn read_request_line<R: BufRead>(reader: &mut R) -> Result<Vec<u8>, ReadError> {
    for _ in 0..8 {
        let too_long = reject(414, format!("request line over {MAX_REQUEST_LINE} bytes"));
        let line = read_line(reader, |_| MAX_REQUEST_LINE).map_err(|e| line_error(e, too_long))?;
        if !line.is_empty() {
            return Ok(line);
        }
    }
    Err(reject(400, "blank lines instead of a request").into())
}

/// Parses a request line and reads the header section after it.
pub fn read_head<R: BufRead>(reader: &mut R, request_line: &[u8]) -> Result<Head, ReadError> {
    if request_line.len() > MAX_REQUEST_LINE {
        return Err(reject(414, format!("request line over {MAX_REQUEST_LINE} bytes")).into());
    }
    if !is_request_line(request_line) || request_line.contains(&b'\r') {
        return Err(reject(400, "malformed request line").into());
    }
    let line = String::from_utf8(request_line.to_vec())
        .map_err(|_| reject(400, "request line is not UTF-8"))?;
    let mut parts = line.split(' ');
    let (method, target, version) = match (parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v)) => (m, t, v),
        _ => return Err(reject(400, "malformed request line").into()),
    };
    let method = match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "PUT" => Method::Put,
        "POST" => Method::Post,
        "DELETE" => Method::Delete,
        "OPTIONS" => Method::Options,
        other => return Err(reject(501, format!("method {other} is not implemented")).into()),
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let headers = read_headers(reader)?;
    let mut head = Head {
        method,
        path: path.to_string(),
        query: query.to_string(),
        http11: version == "HTTP/1.1",
        headers,
        content_length: 0,
    };
    head.content_length = body_length(&head)?;
    Ok(head)
}

fn read_headers<R: BufRead>(reader: &mut R) -> Result<Vec<(String, String)>, ReadError> {
    let too_large = || reject(431, format!("header section over {MAX_HEADER_BYTES} bytes"));
    let mut headers = Vec::new();
    let mut used = 0;
    loop {
        let budget = MAX_HEADER_BYTES.saturating_sub(used);
        let line = read_line(reader, |_| budget).map_err(|e| line_error(e, too_large()))?;
        used += line.len() + 2;
        if used > MAX_HEADER_BYTES {
            return Err(too_large().into());
        }
        if line.is_empty() {
            return Ok(headers);
        }
        if headers.len() == MAX_HEADERS {
            return Err(reject(431, format!("more than {MAX_HEADERS} header fields")).into());
        }
        headers.push(parse_field(&line)?);
    }
}

/// `name: value`: the name a token right up to the colon, the value without
/// CR, LF or NUL, trimmed of spaces and tabs.
fn parse_field(line: &[u8]) -> Result<(String, String), Rejection> {
    if matches!(line.first(), Some(b' ' | b'\t')) {
        return Err(reject(400, "folded header lines are not allowed"));
    }
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or_else(|| reject(400, "header line without a colon"))?;
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    let token = |b: &u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b);
    if name.is_empty() || !name.iter().all(token) {
        return Err(reject(400, "invalid header name"));
    }
    if value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(reject(400, "invalid character in a header value"));
    }
    let value = String::from_utf8_lossy(value)
        .trim_matches([' ', '\t'])
        .to_string();
    Ok((String::from_utf8_lossy(name).to_ascii_lowercase(), value))
}

/// The body's length from the headers (RFC 9112 §6.3), refusing anything
/// ambiguous.
fn body_length(head: &Head) -> Result<usize, Rejection> {
    if head.http11 && head.headers.iter().filter(|(n, _)| n == "host").count() != 1 {
        return Err(reject(
            400,
            "an HTTP/1.1 request needs exactly one Host header",
        ));
    }
    let lengths: Vec<&str> = head
        .headers
        .iter()
        .filter(|(n, _)| n == "content-length")
        .map(|(_, v)| v.as_str())
        .collect();
    let chunked = head.header("transfer-encoding").is_some();
    let length = match (lengths.as_slice(), chunked) {
        ([], false) => None,
        ([], true) => {
            return Err(reject(
                411,
                "Transfer-Encoding is not supported: send Content-Length",
            ))
        }
        ([_], true) => {
            return Err(reject(400, "Content-Length and Transfer-Encoding together"));
        }
        ([one], false) => Some(one),
        _ => return Err(reject(400, "more than one Content-Length")),
    };
    let Some(length) = length else {
        if matches!(head.method, Method::Put | Method::Post) {
            return Err(reject(411, "a PUT or POST needs a Content-Length"));
        }
        return Ok(0);
    };
    if length.is_empty() || length.len() > 19 || !length.bytes().all(|b| b.is_ascii_digit()) {
        return Err(reject(400, "Content-Length is not a number"));
    }
    let n: u64 = length
        .parse()
        .map_err(|_| reject(400, "Content-Length is not a number"))?;
    if n > MAX_BODY as u64 {
        return Err(reject(413, format!("body over {MAX_BODY} bytes")));
    }
    if head.expects_continue() || head.header("expect").is_none() {
        Ok(n as usize)
    } else {
        Err(reject(417, "only Expect: 100-continue is supported"))
    }
}

/// Reads exactly `head.content_length` bytes of body.
pub fn read_body<R: BufRead>(reader: &mut R, head: &Head) -> Result<Vec<u8>, ReadError> {
    let mut body = vec![0; head.content_length];
    reader.read_exact(&mut body).map_err(io_error)?;
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn head(text: &str) -> Result<Head, ReadError> {
        let mut r = io::Cursor::new(text.as_bytes().to_vec());
        let line = read_request_line(&mut r)?;
        read_head(&mut r, &line)
    }

    fn status(text: &str) -> u16 {
        match head(text) {
            Err(ReadError::Reject(r)) => r.status,
            other => panic!("{text:?} gave {other:?}"),
        }
    }

    #[test]
    fn only_http_request_lines_are_http() {
        assert!(is_request_line(b"GET / HTTP/1.1"));
        assert!(is_request_line(b"DELETE /kv/a%20b?x=1 HTTP/1.0"));
        assert!(is_request_line(b"PATCH /x HTTP/1.1"));
        for text in [
            &b"GET k"[..],
            b"PUT k v",
            b"GET a HTTP/1.1",
            b"get / HTTP/1.1",
            b"GET  / HTTP/1.1",
            b"GET / HTTP/2.0",
            b"GET / HTTP/1.1 x",
            b"PRI * HTTP/2.0",
            b"RAFT 2 AAAA",
        ] {
            assert!(!is_request_line(text), "{}", String::from_utf8_lossy(text));
        }
    }

    #[test]
    fn a_request_head_is_parsed_with_lowercase_names_and_trimmed_values() {
        let h = head("\r\nPUT /kv/a%2Fb?x=1 HTTP/1.1\r\nHost: h\r\nContent-Length:  5 \r\nX-A:\tb c\t\r\n\r\nhello").unwrap();
        assert_eq!(h.method, Method::Put);
        assert_eq!(h.path, "/kv/a%2Fb");
        assert_eq!(h.query, "x=1");
        assert_eq!(h.content_length, 5);
        assert_eq!(h.header("x-a"), Some("b c"));
        assert!(h.keep_alive());
        let h = head("GET / HTTP/1.1\nHost: h\nConnection: keep-alive, Close\n\n").unwrap();
        assert!(!h.keep_alive(), "bare LF ends lines too; close is honoured");
        assert!(!head("GET / HTTP/1.0\r\n\r\n").unwrap().keep_alive());
    }

    #[test]
    fn framing_problems_get_their_status() {
        let big = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_REQUEST_LINE));
        assert_eq!(status(&big), 414);
        let huge = format!(
            "GET / HTTP/1.1\r\nHost: h\r\nX: {}\r\n\r\n",
            "a".repeat(MAX_HEADER_BYTES)
        );
        assert_eq!(status(&huge), 431);
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X{i}: 1\r\n")).collect();
        assert_eq!(
            status(&format!("GET / HTTP/1.1\r\nHost: h\r\n{many}\r\n")),
            431
        );
        for (text, want) in [
            ("GET / HTTP/1.1\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: h\r\nNo colon\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: h\rX\r\n\r\n", 400),
            ("PUT /kv/a HTTP/1.1\r\nHost: h\r\n\r\n", 411),
            ("PUT /kv/a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n", 411),
            ("PUT /kv/a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n", 400),
            ("PUT /kv/a HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", 400),
            ("PUT /kv/a HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", 400),
            ("PUT /kv/a HTTP/1.1\r\nHost: h\r\nContent-Length: 1x\r\n\r\n", 400),
            ("PUT /kv/a HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999\r\n\r\n", 400),
            ("PUT /kv/a HTTP/1.1\r\nHost: h\r\nContent-Length: 1048577\r\n\r\n", 413),
            ("PUT /kv/a HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nExpect: magic\r\n\r\n", 417),
            ("PATCH /kv/a HTTP/1.1\r\nHost: h\r\n\r\n", 501),
        ] {
            assert_eq!(status(text), want, "{text:?}");
        }
    }

    #[test]
    fn bodies_are_read_exactly_and_a_short_body_is_a_hang_up() {
        let mut r = io::Cursor::new(
            b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcGET".to_vec(),
        );
        let line = read_request_line(&mut r).unwrap();
        let h = read_head(&mut r, &line).unwrap();
        assert_eq!(read_body(&mut r, &h).unwrap(), b"abc");
        let mut rest = String::new();
        r.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "GET", "the next request's bytes stay in the reader");
        let mut r = io::Cursor::new(b"ab".to_vec());
        assert!(matches!(read_body(&mut r, &h), Err(ReadError::Closed)));
    }
}
