//! Shared test harness: the simulated network and the Raft cluster tester.

pub mod chromium;
pub mod cluster;
pub mod http;
pub mod kv;
pub mod links;
pub mod nemesis;
pub mod network;
pub mod procs;
pub mod tmpfs;

/// The path of `name` on `PATH`. Missing: a failure in CI (which installs
/// it), a skip with a message elsewhere.
pub fn tool(name: &str) -> Option<String> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    match found {
        Some(path) => Some(path.display().to_string()),
        None if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false") => {
            panic!("{name} is not installed; .ci/run installs it")
        }
        None => {
            eprintln!("SKIPPED: {name} is not installed (apt-get install it; CI fails without it)");
            None
        }
    }
}
