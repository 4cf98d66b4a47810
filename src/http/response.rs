//! HTTP responses: status, headers, body, and how they go on the wire.
//!
//! Every response carries `Content-Length` (no chunked responses), a `Date`,
//! and `Connection: close` when the server closes after it. A response to HEAD
//! has GET's headers and no body.

use std::io::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use super::json::Json;

/// A response to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Headers other than `Content-Length`, `Date` and `Connection`.
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A response with a body of type `content_type`.
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            headers: vec![("Content-Type", content_type.to_string())],
            body: body.into(),
        }
    }

    /// A JSON response that must not be cached.
    pub fn json(status: u16, value: &Json) -> Self {
        let mut body = value.encode();
        body.push('\n');
        Self::new(status, "application/json", body).with("Cache-Control", "no-store")
    }

    /// `{"error":"CODE","message":"..."}`.
    pub fn error(status: u16, code: &str, message: &str) -> Self {
        let body = Json::object([
            ("error", Json::from(code)),
            ("message", Json::from(message)),
        ]);
        let response = Self::json(status, &body);
        match status {
            503 => response.with("Retry-After", "1"),
            _ => response,
        }
    }

    /// Adds a header.
    pub fn with(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// The value of header `name`, if set.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Writes the response; without the body if `head_only` (HEAD), with
    /// `Connection: close` if `close`.
    pub fn write_to(&self, w: &mut impl Write, head_only: bool, close: bool) -> io::Result<()> {
        let mut head = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(&format!(
            "Content-Length: {}\r\nDate: {}\r\n",
            self.body.len(),
            http_date(SystemTime::now())
        ));
        if close {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        w.write_all(head.as_bytes())?;
        if !head_only {
            w.write_all(&self.body)?;
        }
        w.flush()
    }
}

/// The reason phrase for the statuses this server sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        417 => "Expectation Failed",
        422 => "Unprocessable Content",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        507 => "Insufficient Storage",
        _ => "Unknown",
    }
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` (RFC 9110 §5.6.7, IMF-fixdate).
pub fn http_date(t: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = crate::logger::civil_from_days(days as i64);
    format!(
        "{}, {d:02} {} {y:04} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        MONTHS[(m - 1) as usize],
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates_are_imf_fixdate() {
        let t = UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(http_date(t), "Sun, 06 Nov 1994 08:49:37 GMT");
    }

    #[test]
    fn a_head_response_has_the_length_but_not_the_body() {
        let r = Response::error(503, "NO_LEADER", "no \"leader\"");
        let mut full = Vec::new();
        r.write_to(&mut full, false, true).unwrap();
        let full = String::from_utf8(full).unwrap();
        assert!(
            full.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{full}"
        );
        assert!(full.contains("Retry-After: 1\r\n"));
        assert!(full.contains("Connection: close\r\n"));
        assert!(
            full.ends_with("\r\n\r\n{\"error\":\"NO_LEADER\",\"message\":\"no \\\"leader\\\"\"}\n")
        );
        let mut head = Vec::new();
        r.write_to(&mut head, true, false).unwrap();
        let head = String::from_utf8(head).unwrap();
        assert!(
            head.ends_with("\r\n\r\n")
                && head.contains(&format!("Content-Length: {}\r\n", r.body.len()))
        );
    }
}
