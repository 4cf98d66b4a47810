//! The module docs that list files and modules list the ones that exist:
//! `src/raft/mod.rs` names every file of the core, and `src/lib.rs`'s
//! reading order names every top-level module and only modules that exist.
//! A file added, renamed or removed without its doc fails here.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The `//!` lines of a file, joined.
fn module_doc(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    text.lines()
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

/// Whether `crate::<path>` is a module: `src/a/b.rs` or `src/a/b/mod.rs`.
fn is_module(path: &str) -> bool {
    let relative: PathBuf = path.split("::").collect();
    let file = src().join(&relative).with_extension("rs");
    file.is_file() || src().join(&relative).join("mod.rs").is_file()
}

#[test]
fn the_core_module_doc_names_every_file_of_the_core() {
    let raft = src().join("raft");
    let doc = module_doc(&raft.join("mod.rs"));
    let named: BTreeSet<String> = quoted(&doc).into_iter().collect();
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(&raft).expect("src/raft") {
        let name = entry.expect("a directory entry").file_name();
        let name = name.to_string_lossy().to_string();
        if name == "mod.rs" {
            continue;
        }
        let stem = name.trim_end_matches(".rs");
        let forms = [name.clone(), format!("{name}/"), stem.to_string()];
        if !forms.iter().any(|f| named.contains(f)) {
            missing.push(name);
        }
    }
    assert!(
        missing.is_empty(),
        "src/raft/mod.rs's doc does not name {missing:?}"
    );
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

#[test]
fn the_reading_order_names_every_top_level_module_and_only_modules() {
    let lib = std::fs::read_to_string(src().join("lib.rs")).expect("src/lib.rs");
    let doc = module_doc(&src().join("lib.rs"));
    let links: Vec<String> = quoted(&doc)
        .into_iter()
        .filter(|w| {
            !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_' || c == ':')
        })
        .collect();
    for link in &links {
        assert!(
            is_module(link),
            "src/lib.rs's doc links [`{link}`]: no such module"
        );
    }
    for line in lib.lines() {
        if let Some(module) = line
            .strip_prefix("pub mod ")
            .and_then(|l| l.strip_suffix(';'))
        {
            assert!(
                links
                    .iter()
                    .any(|l| l == module || l.starts_with(&format!("{module}::"))),
                "src/lib.rs's reading order does not name the module {module}"
            );
        }
    }
}
