//! An interactive client, for machines without `nc`:
//!
//! ```text
//! cargo run --example cli -- :8001,:8002,:8003
//! > PUT greeting hello
//! OK
//! ```
//!
//! Commands go through the client library, so they are retried on another
//! server if one is down, and apply exactly once.

use std::io::{self, BufRead, Write};

use raftkv::client::Client;

fn main() {
    let arg = std::env::args()
        .nth(1)
        .unwrap_or_else(|| ":8001,:8002,:8003".to_string());
    let addrs: Vec<String> = arg
        .split(',')
        .filter(|a| !a.is_empty())
        .map(|a| {
            if a.starts_with(':') {
                format!("127.0.0.1{a}")
            } else {
                a.to_string()
            }
        })
        .collect();
    let mut client = Client::new(addrs.clone());
    eprintln!(
        "raftkv client (session {}) for {}; HELP lists commands, QUIT exits",
        client.id(),
        addrs.join(",")
    );
    let stdin = io::stdin();
    loop {
        print!("> ");
        let _ = io::stdout().flush();
        let mut line = String::new();
        match stdin.lock().read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if line.eq_ignore_ascii_case("quit") || line.eq_ignore_ascii_case("exit") {
            return;
        }
        match client.call(line) {
            Ok(reply) => println!("{reply}"),
            Err(e) => println!("error: {e}"),
        }
    }
}
