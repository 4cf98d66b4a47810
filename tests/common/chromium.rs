//! Headless Chromium driven over the DevTools protocol, for tests of the
//! cluster page.
//!
//! `--remote-debugging-pipe` makes Chromium read protocol messages (JSON, each
//! ending in a NUL byte) from its file descriptor 3 and write replies and
//! events to descriptor 4. A shell maps our stdin pipe to 3 and our stdout pipe
//! to 4, so no WebSocket client and no `unsafe` descriptor juggling is needed.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use raftkv::http::json::{self, Json};

/// A running headless Chromium.
pub struct Browser {
    child: Child,
    to_browser: ChildStdin,
    from_browser: Receiver<Json>,
    next_id: u64,
    session: Option<String>,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts `chromium` (a path) headless with a fresh profile.
    pub fn launch(chromium: &str) -> Browser {
        let profile = tempfile::tempdir().expect("profile dir");
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#"exec "$0" "$@" 3<&0 4>&1 0</dev/null 1>/dev/null"#)
            .arg(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--remote-debugging-pipe",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromium starts");
        let to_browser = child.stdin.take().unwrap();
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let (tx, from_browser) = mpsc::channel();
        thread::spawn(move || loop {
            let mut message = Vec::new();
            match reader.read_until(0, &mut message) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    message.pop();
                    let text = String::from_utf8_lossy(&message);
                    if let Ok(value) = json::parse(&text) {
                        if tx.send(value).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Browser {
            child,
            to_browser,
            from_browser,
            next_id: 0,
            session: None,
            _profile: profile,
        }
    }

    /// Calls a protocol method (in the open page's session, if any) and
    /// returns its `result`; panics on an error or after 20 s.
    pub fn call(&mut self, method: &str, params: Json) -> Json {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = vec![
            ("id", Json::from(id)),
            ("method", Json::from(method)),
            ("params", params),
        ];
        if let Some(session) = &self.session {
            message.push(("sessionId", Json::from(session.as_str())));
        }
        let mut bytes = Json::object(message).encode().into_bytes();
        bytes.push(0);
        self.to_browser.write_all(&bytes).expect("chromium reads");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let reply = self
                .from_browser
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no answer from chromium to {method}"));
            if reply.get("id").and_then(Json::as_u64) != Some(id) {
                continue; // an event, or an answer to someone else
            }
            if let Some(error) = reply.get("error") {
                panic!("{method}: {error}");
            }
            return reply.get("result").cloned().unwrap_or(Json::Null);
        }
    }

    /// Opens `url` in a new page and attaches to it.
    pub fn open(&mut self, url: &str) {
        let target = self.call(
            "Target.createTarget",
            Json::object([("url", Json::from(url))]),
        );
        let target_id = target.get("targetId").cloned().expect("a target id");
        let attached = self.call(
            "Target.attachToTarget",
            Json::object([("targetId", target_id), ("flatten", Json::from(true))]),
        );
        let session = attached.get("sessionId").and_then(Json::as_str);
        self.session = Some(session.expect("a session").to_string());
    }

    /// Evaluates a JavaScript expression that yields a string, in the page.
    pub fn eval(&mut self, expression: &str) -> String {
        let result = self.call(
            "Runtime.evaluate",
            Json::object([
                ("expression", Json::from(expression)),
                ("returnByValue", Json::from(true)),
            ]),
        );
        let value = result.get("result").and_then(|r| r.get("value"));
        value.and_then(Json::as_str).unwrap_or_default().to_string()
    }
}

impl Drop for Browser {
    /// Asks Chromium to close (so it takes its helper processes along), and
    /// kills it if it has not within 5 s.
    fn drop(&mut self) {
        let _ = self
            .to_browser
            .write_all(b"{\"id\":0,\"method\":\"Browser.close\"}\0");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
