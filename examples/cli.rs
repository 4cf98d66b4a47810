//! An interactive client, for machines without `nc`:
//!
//! ```text
//! cargo run --example cli -- :8001,:8002,:8003
//! > PUT greeting hello
//! OK
//! ```
//!
//! Commands go through the client library, so they are retried on another
//! server if one is down, and apply exactly once (a `TXN` too). Every line
//! of the protocol works, the KV store's included:
//!
//! ```text
//! > GET greeting meta
//! RANGE {"revision":1,"count":1,"more":false,"kvs":[{"key":"greeting","value":"hello","create_revision":1,"mod_revision":1,"version":1}]}
//! > PUT64 AP8= aGkK
//! OK
//! > RANGE prefix=user/ limit=10 keys
//! > TXN {"compare":[{"key":"greeting","target":"mod_revision","op":"=","value":1}],"then":[{"op":"put","key":"greeting","value":"hi"}]}
//! TXN {"succeeded":true,"revision":3,"results":[{"op":"put"}]}
//! ``` For servers started with
//! `-client-token-file`, pass the token with `-token-file PATH` or in the
//! `RAFTKV_TOKEN` environment variable:
//!
//! ```text
//! cargo run --example cli -- -token-file client.token :8001,:8002,:8003
//! RAFTKV_TOKEN=$(cat client.token) cargo run --example cli -- :8001,:8002,:8003
//! ```

use std::io::{self, BufRead, Write};
use std::path::Path;

use raftkv::auth::keyfile::read_client_token;
use raftkv::client::{Client, TOKEN_ENV};

fn main() {
    let mut args = std::env::args().skip(1);
    let mut servers = ":8001,:8002,:8003".to_string();
    let mut token = std::env::var(TOKEN_ENV).ok().filter(|t| !t.is_empty());
    while let Some(arg) = args.next() {
        match arg.trim_start_matches('-') {
            "token-file" => {
                let Some(path) = args.next() else {
                    eprintln!("-token-file needs a path");
                    std::process::exit(2);
                };
                match read_client_token(Path::new(&path)) {
                    Ok(secret) => token = Some(secret.value),
                    Err(e) => {
                        eprintln!("{e}");
                        std::process::exit(2);
                    }
                }
            }
            _ => servers = arg,
        }
    }
    let addrs: Vec<String> = servers
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
    let with_token = if token.is_some() {
        ", with a token"
    } else {
        ""
    };
    let mut client = Client::with_token(addrs.clone(), token);
    eprintln!(
        "raftkv client for {}{with_token}; HELP lists commands, QUIT exits",
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
