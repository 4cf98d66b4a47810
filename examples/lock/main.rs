//! A distributed lock on raftkv, safe under pauses thanks to fencing tokens,
//! and a leader election on top of it.
//!
//! ```text
//! cargo run --example lock -- -servers :8001,:8002,:8003 -name locks/report -id a -work 5
//! acquired locks/report token=12
//! wrote a-0 token=12 revision=13
//! ...
//! released
//! cargo run --example lock -- -elect -name election/reports -id a    # campaign, then lead
//! cargo run --example lock -- -observe -name election/reports        # print each new leader
//! ```
//!
//! A holder writes the guarded resource (`-resource`, default `<name>.data`)
//! `-work` times, `-pause-ms` apart, each through a transaction that
//! compares its token with the fence key (`<name>.fence`). Stop it with
//! SIGSTOP past its lease (`-ttl`) and resume it after another holder wrote:
//! its next write is refused (`refused: token 4 is newer than 2`). With
//! `-no-fencing` it writes unguarded and overwrites the new holder's work.
//! The recipe is in `examples/lock/recipe.rs`.

mod recipe;

use std::io::Write;
use std::thread;
use std::time::Duration;

use raftkv::client::Client;
use raftkv::service::range::RangeRequest;
use raftkv::service::watch::WatchFilter;
use raftkv::watch_client::{WatchMessage, WatchStream};
use recipe::{acquire, ensure_fence, work, Work};

struct Options {
    servers: Vec<String>,
    name: String,
    id: String,
    ttl: u64,
    work: u64,
    pause: Duration,
    fencing: bool,
    elect: bool,
    observe: bool,
    resource: Option<String>,
}

fn expand(addr: &str) -> String {
    match addr.strip_prefix(':') {
        Some(port) => format!("127.0.0.1:{port}"),
        None => addr.to_string(),
    }
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        servers: vec![":8001".into(), ":8002".into(), ":8003".into()],
        name: "locks/demo".into(),
        id: format!("p{}", std::process::id()),
        ttl: 2,
        work: 3,
        pause: Duration::from_millis(500),
        fencing: true,
        elect: false,
        observe: false,
        resource: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.trim_start_matches('-') {
            "servers" => o.servers = value()?.split(',').map(String::from).collect(),
            "name" => o.name = value()?,
            "id" => o.id = value()?,
            "ttl" => o.ttl = value()?.parse().map_err(|_| "-ttl takes seconds")?,
            "work" => o.work = value()?.parse().map_err(|_| "-work takes a count")?,
            "pause-ms" => {
                o.pause = Duration::from_millis(value()?.parse().map_err(|_| "-pause-ms")?)
            }
            "resource" => o.resource = Some(value()?),
            "no-fencing" => o.fencing = false,
            "elect" => o.elect = true,
            "observe" => o.observe = true,
            other => return Err(format!("unknown flag -{other}")),
        }
    }
    o.servers = o.servers.iter().map(|s| expand(s)).collect();
    Ok(o)
}

fn say(line: String) {
    println!("{line}");
    let _ = std::io::stdout().flush();
}

fn main() {
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    if o.observe {
        return observe(&o);
    }
    let mut client = Client::new(o.servers.clone());
    let resource = o.resource.clone().unwrap_or(format!("{}.data", o.name));
    let fence = format!("{}.fence", o.name);
    if let Err(e) = ensure_fence(&mut client, fence.as_bytes()) {
        eprintln!("could not create the fence key: {e}");
        std::process::exit(1);
    }
    let mut next = 0;
    let lock = match acquire(&o.servers, &mut client, &o.name, o.ttl, &mut || {
        next += 1;
        next
    }) {
        Ok(lock) => lock,
        Err(e) => {
            eprintln!("could not acquire {}: {e}", o.name);
            std::process::exit(1);
        }
    };
    say(format!("acquired {} token={}", o.name, lock.token));
    if o.elect {
        // A leader holds the lock until it dies; its value names it.
        let _ = client.put_leased(&lock.key, o.id.as_bytes(), lock.lease);
        say(format!("leader {}", o.id));
        while !lock.is_lost() {
            thread::sleep(Duration::from_millis(200));
        }
        say("lost the lease".into());
        return;
    }
    let code = work(
        &mut client,
        lock,
        Work {
            fence: fence.as_bytes(),
            resource: resource.as_bytes(),
            id: &o.id,
            rounds: o.work,
            pause: o.pause,
            fencing: o.fencing,
        },
        &mut say,
    );
    std::process::exit(code);
}

/// Prints the leader of election `name` each time it changes: the value of
/// the key with the lowest create revision under `<name>/`.
fn observe(o: &Options) {
    let mut client = Client::new(o.servers.clone());
    let prefix = format!("{}/", o.name).into_bytes();
    let mut shown = None;
    loop {
        let page = match client.range(&RangeRequest::prefix(&prefix)) {
            Ok(page) => page,
            Err(e) => {
                eprintln!("{e}");
                thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        let leader = page
            .kvs
            .iter()
            .min_by_key(|kv| kv.create_revision)
            .and_then(|kv| kv.value.as_ref())
            .map(|v| String::from_utf8_lossy(v).to_string());
        if leader != shown {
            say(format!("leader: {}", leader.as_deref().unwrap_or("(none)")));
            shown = leader;
        }
        let filter = WatchFilter::Prefix(prefix.clone());
        let Ok(Ok(mut stream)) =
            WatchStream::open(&o.servers[0], None, &filter, Some(page.revision + 1))
        else {
            thread::sleep(Duration::from_secs(1));
            continue;
        };
        // Any change under the prefix may change the leader: look again.
        let _ = matches!(stream.receive(), Ok(WatchMessage::Event(_)));
    }
}
