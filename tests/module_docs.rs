//! The docs that list things list what exists, and link where they say.
//!
//! - Every directory's module doc (`src/<dir>/mod.rs`, or `src/<dir>.rs`
//!   beside it) names each `.rs` file and each subdirectory in it.
//! - `src/lib.rs`'s reading order names every top-level module and every
//!   module of the core, and only modules that exist.
//! - The core's module doc (`src/raft/core.rs`) names every entry point of
//!   `Raft` (a public method that takes `&mut self`) and says how many there
//!   are.
//! - Nothing in the repository's docs or code mentions what a reader of the
//!   repository cannot see: issue numbers, or notes kept outside it.
//! - Every `(#anchor)` link in NOTES.md, and every link into NOTES.md from
//!   the READMEs, reaches a heading that exists (GitHub's anchor rules); every
//!   section of NOTES.md is in its table of contents and ends with a
//!   "Next:" link.
//!
//! A file added, renamed or removed without its doc, or a heading renamed
//! without its links, fails here.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn src() -> PathBuf {
    root().join("src")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

/// The `//!` lines of a file, joined.
fn module_doc(path: &Path) -> String {
    read(path)
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("//!"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The words of `doc` in backticks: `election.rs`, [`raft::core`], ...
fn quoted(doc: &str) -> Vec<String> {
    doc.split('`')
        .skip(1)
        .step_by(2)
        .map(String::from)
        .collect()
}

/// The entries of a directory, sorted: (name, is a directory).
fn entries(dir: &Path) -> Vec<(String, bool)> {
    let mut out: Vec<(String, bool)> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{dir:?}: {e}"))
        .map(|entry| {
            let entry = entry.expect("a directory entry");
            let name = entry.file_name().to_string_lossy().to_string();
            (name, entry.path().is_dir())
        })
        .collect();
    out.sort();
    out
}

/// Whether `word` occurs in `text` with no letter, digit or `_` right
/// before it (so `ready.rs` is not found inside `already.rs`).
fn mentions(text: &str, word: &str) -> bool {
    text.match_indices(word).any(|(at, _)| {
        text[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
    })
}

/// Whether a module doc names the file or directory `name`: as `name.rs`
/// (anywhere, as in `server/peer.rs`), as `name/`, or in backticks as the
/// module (`name`, `name::Item`).
fn names(doc: &str, words: &[String], name: &str, is_dir: bool) -> bool {
    let stem = name.strip_suffix(".rs").unwrap_or(name);
    let spelled = if is_dir {
        mentions(doc, &format!("{name}/"))
    } else {
        mentions(doc, name)
    };
    spelled
        || words
            .iter()
            .any(|w| w == stem || w.starts_with(&format!("{stem}::")))
}

/// Every directory under `dir` (itself excluded), depth first.
fn directories(dir: &Path, out: &mut Vec<PathBuf>) {
    for (name, is_dir) in entries(dir) {
        if is_dir {
            let path = dir.join(name);
            out.push(path.clone());
            directories(&path, out);
        }
    }
}

#[test]
fn every_module_doc_names_each_file_and_subdirectory_of_its_directory() {
    let mut dirs = Vec::new();
    directories(&src(), &mut dirs);
    let mut checked = 0;
    let mut missing = Vec::new();
    for dir in dirs {
        let entries = entries(&dir);
        let has_rust = entries.iter().any(|(n, d)| !d && n.ends_with(".rs"));
        if !has_rust {
            continue; // data only, such as src/raft/testdata/
        }
        let doc_file = if dir.join("mod.rs").is_file() {
            dir.join("mod.rs")
        } else {
            dir.with_extension("rs")
        };
        assert!(
            doc_file.is_file(),
            "{dir:?} has no mod.rs and no {doc_file:?}"
        );
        let doc = module_doc(&doc_file);
        let words = quoted(&doc);
        for (name, is_dir) in &entries {
            let listed = *is_dir || name.ends_with(".rs");
            if name == "mod.rs" || !listed {
                continue;
            }
            if !names(&doc, &words, name, *is_dir) {
                let shown = if *is_dir {
                    format!("{name}/")
                } else {
                    name.clone()
                };
                missing.push(format!("{} does not name {shown}", doc_file.display()));
            }
        }
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} directories checked");
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

#[test]
fn every_file_a_module_doc_names_exists() {
    for (doc_of, base) in [("lib.rs", "."), ("raft/mod.rs", "raft")] {
        let doc = module_doc(&src().join(doc_of));
        for word in quoted(&doc) {
            if let Some(file) = word.strip_suffix(".rs") {
                let path = if file.contains('/') {
                    src().join(format!("{file}.rs"))
                } else {
                    src().join(base).join(format!("{file}.rs"))
                };
                assert!(path.is_file(), "src/{doc_of} names {word}: no {path:?}");
            }
        }
    }
}

/// Whether `crate::<path>` is a module: `src/a/b.rs` or `src/a/b/mod.rs`.
fn is_module(path: &str) -> bool {
    let relative: PathBuf = path.split("::").collect();
    let file = src().join(&relative).with_extension("rs");
    file.is_file() || src().join(&relative).join("mod.rs").is_file()
}

/// The lowercase module paths in backticks in `src/lib.rs`'s doc.
fn reading_order_links() -> Vec<String> {
    quoted(&module_doc(&src().join("lib.rs")))
        .into_iter()
        .filter(|w| {
            !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_' || c == ':')
        })
        .collect()
}

#[test]
fn the_reading_order_names_every_top_level_module_and_only_modules() {
    let lib = read(&src().join("lib.rs"));
    let links = reading_order_links();
    for link in &links {
        assert!(
            is_module(link),
            "src/lib.rs's doc links [`{link}`]: no such module"
        );
    }
    let mut modules = 0;
    for line in lib.lines() {
        if let Some(module) = line
            .strip_prefix("pub mod ")
            .and_then(|l| l.strip_suffix(';'))
        {
            modules += 1;
            assert!(
                links
                    .iter()
                    .any(|l| l == module || l.starts_with(&format!("{module}::"))),
                "src/lib.rs's reading order does not name the module {module}"
            );
        }
    }
    assert!(modules >= 10, "found only {modules} modules in src/lib.rs");
}

#[test]
fn the_reading_order_names_every_module_of_the_core() {
    let doc = module_doc(&src().join("lib.rs"));
    let links = reading_order_links();
    let mut missing = Vec::new();
    for (name, is_dir) in entries(&src().join("raft")) {
        let Some(stem) = name.strip_suffix(".rs") else {
            continue;
        };
        if is_dir || stem == "mod" || stem.ends_with("_tests") {
            continue;
        }
        let as_path = mentions(&doc, &format!("raft/{name}"));
        let as_module = links.iter().any(|l| l == &format!("raft::{stem}"));
        if !(as_path || as_module) {
            missing.push(name);
        }
    }
    assert!(
        missing.is_empty(),
        "src/lib.rs's reading order does not name src/raft/{missing:?}"
    );
}

/// The public methods taking `&mut self` in the `impl Raft` blocks of
/// `src/raft/`: how the world changes the core.
fn entry_points() -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (name, is_dir) in entries(&src().join("raft")) {
        if is_dir || !name.ends_with(".rs") || name.ends_with("_tests.rs") {
            continue;
        }
        let mut in_raft = false;
        for line in read(&src().join("raft").join(&name)).lines() {
            if line.starts_with("impl") {
                in_raft = line.starts_with("impl Raft {");
            } else if line.starts_with('}') {
                in_raft = false;
            } else if in_raft {
                let method = line.trim_start().strip_prefix("pub fn ");
                if let Some((method, rest)) = method.and_then(|m| m.split_once('(')) {
                    if rest.starts_with("&mut self") {
                        found.insert(method.to_string());
                    }
                }
            }
        }
    }
    found
}

#[test]
fn the_core_module_doc_names_every_entry_point_and_counts_them() {
    let points = entry_points();
    assert!(
        points.contains("tick") && points.contains("ready"),
        "{points:?}"
    );
    let doc = module_doc(&src().join("raft").join("core.rs"));
    for point in &points {
        assert!(
            doc.contains(&format!("[`Raft::{point}`]")),
            "src/raft/core.rs's doc does not name the entry point Raft::{point}"
        );
    }
    let words = [
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
        "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen",
    ];
    let count = words
        .get(points.len())
        .map(|w| w.to_string())
        .unwrap_or_else(|| points.len().to_string());
    let said = doc.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        said.contains(&format!("{count} entry points")),
        "src/raft/core.rs's doc should say the core has {count} entry points: {points:?}"
    );
}

/// Every file under `dir`, recursively.
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for (name, is_dir) in entries(dir) {
        let path = dir.join(name);
        if is_dir {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// Where `text` mentions an issue by number: what `[Ii]ssue [0-9]+` matches,
/// as the repository's hook greps.
fn issue_numbers(text: &str) -> Vec<String> {
    let marker = "ssue ";
    text.match_indices(marker)
        .filter(|(at, _)| {
            let before = text[..*at].chars().next_back();
            let after = text[at + marker.len()..].chars().next();
            matches!(before, Some('I' | 'i')) && after.is_some_and(|c| c.is_ascii_digit())
        })
        .map(|(at, _)| {
            let end = text[at..].find('\n').map_or(text.len(), |e| at + e);
            text[at.saturating_sub(1)..end].to_string()
        })
        .collect()
}

#[test]
fn nothing_cites_what_a_reader_of_the_repository_cannot_see() {
    // Spelled in pieces, so that this file does not match itself.
    let outside = [
        concat!("../", "shared"),
        concat!("shared/", "COURSE"),
        concat!("/work/", "brief"),
    ];
    let mut paths = vec![root().join("README.md"), root().join("NOTES.md")];
    for dir in ["src", "tests", "examples"] {
        files(&root().join(dir), &mut paths);
    }
    let mut found = Vec::new();
    for path in &paths {
        let Ok(text) = std::fs::read_to_string(path) else {
            continue; // not text
        };
        let shown = path.strip_prefix(root()).unwrap_or(path).display();
        for hit in issue_numbers(&text) {
            found.push(format!("{shown}: {hit}"));
        }
        for needle in outside {
            if text.contains(needle) {
                found.push(format!("{shown}: {needle}"));
            }
        }
    }
    assert!(paths.len() > 100, "only {} files read", paths.len());
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn the_issue_check_sees_what_it_looks_for() {
    assert_eq!(issue_numbers(concat!("see I", "ssue 22 here")).len(), 1);
    assert_eq!(issue_numbers(concat!("(i", "ssue 3)")).len(), 1);
    assert!(issue_numbers("an issue with the disk, issues 3 and 4").is_empty());
}

/// The lines of a Markdown text outside fenced code blocks.
fn prose_lines(text: &str) -> Vec<&str> {
    let mut fenced = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced {
            out.push(line);
        }
    }
    out
}

/// GitHub's anchor for a heading: lowercase; letters, digits, `-`, `_` and
/// spaces kept, everything else dropped; spaces become `-`.
fn anchor(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The headings of a Markdown text: (level, text).
fn headings(text: &str) -> Vec<(usize, String)> {
    prose_lines(text)
        .into_iter()
        .filter_map(|line| {
            let level = line.chars().take_while(|c| *c == '#').count();
            let rest = line.get(level..)?.strip_prefix(' ')?;
            (level > 0).then(|| (level, rest.trim().to_string()))
        })
        .collect()
}

/// Every anchor of a Markdown text; a repeated heading's later anchors get
/// `-1`, `-2`, ... as on GitHub.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (_, heading) in headings(text) {
        let base = anchor(&heading);
        let mut candidate = base.clone();
        let mut n = 0;
        while out.contains(&candidate) {
            n += 1;
            candidate = format!("{base}-{n}");
        }
        out.insert(candidate);
    }
    out
}

/// The targets of Markdown links `](target)` in `text`, outside code.
fn link_targets(text: &str) -> Vec<String> {
    let prose = prose_lines(text).join("\n");
    prose
        .match_indices("](")
        .filter_map(|(at, _)| {
            let rest = &prose[at + 2..];
            rest.find(')').map(|end| rest[..end].to_string())
        })
        .collect()
}

#[test]
fn the_anchor_rules_are_githubs() {
    assert_eq!(
        anchor("Reads without log entries (ReadIndex)"),
        "reads-without-log-entries-readindex"
    );
    assert_eq!(
        anchor("Stable leadership: pre-vote, check-quorum, stickiness, transfer"),
        "stable-leadership-pre-vote-check-quorum-stickiness-transfer"
    );
    assert_eq!(anchor("The `Storage` trait"), "the-storage-trait");
    let repeated = anchors("# A\n## A\n```\n# not a heading\n```\n");
    assert_eq!(
        repeated,
        BTreeSet::from(["a".to_string(), "a-1".to_string()])
    );
}

#[test]
fn every_link_into_notes_reaches_a_heading() {
    let notes = read(&root().join("NOTES.md"));
    let targets = anchors(&notes);
    let mut broken = Vec::new();
    let mut links = 0;
    for (file, prefix) in [
        ("NOTES.md", "#"),
        ("README.md", "NOTES.md#"),
        ("examples/bench/README.md", "../../NOTES.md#"),
    ] {
        for target in link_targets(&read(&root().join(file))) {
            if let Some(anchor) = target.strip_prefix(prefix) {
                links += 1;
                if !targets.contains(anchor) {
                    broken.push(format!("{file}: ({target})"));
                }
            }
        }
    }
    assert!(links > 30, "only {links} links into NOTES.md found");
    assert!(
        broken.is_empty(),
        "links to no heading:\n{}",
        broken.join("\n")
    );
}

#[test]
fn every_notes_section_is_in_the_contents_and_ends_with_next() {
    let notes = read(&root().join("NOTES.md"));
    let lines = prose_lines(&notes);
    let contents_at = lines
        .iter()
        .position(|l| *l == "## Contents")
        .expect("NOTES.md has a ## Contents section");
    let contents_end = lines[contents_at + 1..]
        .iter()
        .position(|l| l.starts_with("## "))
        .map_or(lines.len(), |i| contents_at + 1 + i);
    let contents = lines[contents_at..contents_end].join("\n");
    let listed: BTreeSet<String> = link_targets(&contents)
        .into_iter()
        .filter_map(|t| t.strip_prefix('#').map(String::from))
        .collect();
    let sections: Vec<(usize, &str)> = lines
        .iter()
        .enumerate()
        .filter_map(|(i, l)| l.strip_prefix("## ").map(|h| (i, h)))
        .filter(|(_, h)| *h != "Contents")
        .collect();
    assert!(sections.len() >= 10, "only {} sections", sections.len());
    for (n, (at, heading)) in sections.iter().enumerate() {
        assert!(
            listed.contains(&anchor(heading)),
            "NOTES.md's contents do not list \"{heading}\""
        );
        let end = sections.get(n + 1).map_or(lines.len(), |(next, _)| *next);
        let last = lines[*at..end]
            .iter()
            .rev()
            .find(|l| !l.trim().is_empty())
            .expect("a section has text");
        let is_last = n + 1 == sections.len();
        if is_last {
            assert!(
                last.contains("](#contents)"),
                "the last section should lead back to the contents"
            );
        } else {
            let next = sections[n + 1].1;
            assert!(
                last.starts_with("Next: [") && last.contains(&format!("(#{})", anchor(next))),
                "\"{heading}\" should end with a Next: link to \"{next}\", not {last:?}"
            );
        }
    }
}
