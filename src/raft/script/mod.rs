//! Rule tests as scripts: a std-only runner for the interaction scripts in
//! `src/raft/testdata/*.txt` (in the manner of etcd's raft `testdata` and
//! toydb's goldenscripts), for tests only.
//!
//! A script is a short text file per scenario. Each command is one line,
//! followed by `----` and the output it must print, up to a blank line:
//!
//! ```text
//! # §5.2: a candidate with a majority of votes becomes leader.
//! campaign 1
//! ----
//! 1: role=candidate term=1
//! ```
//!
//! Lines starting with `#` are comments. The runner drives servers running
//! the pure core ([`env::Env`]) one step at a time and prints every message
//! (with Figure 2's field names), role, term and commit change, write, and
//! apply ([`show`]). A command's output that differs from the text below it
//! fails the test with a line diff. `RAFTKV_REWRITE=1 cargo test --lib
//! script` writes the actual output into the files instead, for review with
//! `git diff`. The vocabulary is in [`commands`] and NOTES.md, "Rule scripts".
//! `ready.rs` executes a server's `Ready` through the runtime's executor with
//! effects that print; `tests.rs` runs one test per script.

mod commands;
mod env;
mod ready;
mod show;

pub use self::commands::run as run_command;
pub use self::env::{Env, Message, Out, Pick};

/// One part of a script file: a line kept as written (comment or blank), or
/// a command with the output it must print.
enum Part {
    Text(String),
    Command {
        /// 1-based line number of the command, for messages.
        line: usize,
        command: String,
        expected: Vec<String>,
    },
}

fn parse(text: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut lines = text.lines().enumerate().peekable();
    while let Some((n, line)) = lines.next() {
        if line.trim().is_empty() || line.starts_with('#') {
            parts.push(Part::Text(line.to_string()));
            continue;
        }
        match lines.next() {
            Some((_, "----")) => {}
            _ => return Err(format!("line {}: expected ---- after {line:?}", n + 1)),
        }
        let mut expected = Vec::new();
        while let Some((_, out)) = lines.peek() {
            if out.is_empty() {
                break;
            }
            expected.push(out.to_string());
            lines.next();
        }
        parts.push(Part::Command {
            line: n + 1,
            command: line.to_string(),
            expected,
        });
    }
    Ok(parts)
}

/// What running a script found.
pub struct Outcome {
    /// The script with every command's actual output in place of the expected.
    pub rewritten: String,
    /// A report of the commands whose output differed, with diffs; empty if
    /// none did.
    pub mismatches: String,
}

/// Runs the script `text` in a fresh environment (`bug`, if given, is
/// switched on in every server it adds). An error is a malformed script.
pub fn run_script(text: &str, bug: Option<super::Bug>) -> Result<Outcome, String> {
    let mut env = Env::default();
    env.bug = bug;
    let mut rewritten = Vec::new();
    let mut mismatches = Vec::new();
    for part in parse(text)? {
        match part {
            Part::Text(line) => rewritten.push(line),
            Part::Command {
                line,
                command,
                expected,
            } => {
                let actual = run_command(&mut env, &command)
                    .map_err(|e| format!("line {line}: {command}: {e}"))?;
                let actual: Vec<String> = actual.lines().map(String::from).collect();
                if actual != expected {
                    mismatches.push(format!(
                        "line {line}: {command}\n{}",
                        diff(&expected, &actual)
                    ));
                }
                rewritten.push(command);
                rewritten.push("----".to_string());
                rewritten.extend(actual);
            }
        }
    }
    let mut rewritten = rewritten.join("\n");
    rewritten.push('\n');
    let mismatches = match mismatches.len() {
        0 => String::new(),
        n => format!(
            "{n} command(s) printed something else (- expected, + actual); the first:\n{}",
            mismatches[0]
        ),
    };
    Ok(Outcome {
        rewritten,
        mismatches,
    })
}

/// A line diff of `expected` against `actual` (longest common subsequence):
/// `  ` same, `- ` expected only, `+ ` actual only.
pub fn diff(expected: &[String], actual: &[String]) -> String {
    let (n, m) = (expected.len(), actual.len());
    // common[i][j]: the longest common subsequence of expected[i..], actual[j..].
    let mut common = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            common[i][j] = if expected[i] == actual[j] {
                common[i + 1][j + 1] + 1
            } else {
                common[i + 1][j].max(common[i][j + 1])
            };
        }
    }
    let mut lines = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && expected[i] == actual[j] {
            lines.push(format!("  {}", expected[i]));
            (i, j) = (i + 1, j + 1);
        } else if i < n && (j == m || common[i + 1][j] >= common[i][j + 1]) {
            lines.push(format!("- {}", expected[i]));
            i += 1;
        } else {
            lines.push(format!("+ {}", actual[j]));
            j += 1;
        }
    }
    lines.join("\n")
}

mod tests;
