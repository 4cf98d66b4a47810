//! Tests of every error path of [`FileStorage`]: each write, fsync, rename
//! and delete it makes fails in turn (ENOSPC or EIO), under a file layer that
//! passes every other call to the real file system.
//!
//! After each injected failure: the call returns the error, naming the file;
//! every later call fails with it (nothing more is written after a failed
//! fsync); and reopening the directory recovers the state of the calls that
//! returned `Ok`, plus at most a prefix of the failed call's steps, in the
//! order the [`Storage`] contract allows for a crash.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, ThreadId};

use super::data_dir::{FileOps, StdFileOps};
use super::file::FileStorage;
use super::memory::MemoryStorage;
use super::Storage;
use crate::raft::configuration::Configuration;
use crate::raft::core::InitialState;
use crate::raft::messages::{Entry, Index, Term};
use crate::raft::ready::{HardState, LogWrite, Persist, Snapshot, SnapshotChunk};

/// `ENOSPC` and `EIO` (the same numbers on Linux and the BSDs).
const ENOSPC: i32 = 28;
const EIO: i32 = 5;

/// The kinds of call [`FailingFiles`] can fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Create,
    Write,
    SyncData,
    SyncAll,
    SetLen,
    Rename,
    Remove,
    SyncDir,
}

const CALLS: [Call; 8] = [
    Call::Create,
    Call::Write,
    Call::SyncData,
    Call::SyncAll,
    Call::SetLen,
    Call::Rename,
    Call::Remove,
    Call::SyncDir,
];

/// The real file system, except that the `nth` call of kind `call` made by
/// the test's own thread fails with `errno` (calls on background threads are
/// not counted, so the count does not depend on scheduling). A failing write
/// of more than one byte first writes half (`Ok(half)`), then fails: a disk
/// that fills in the middle of a write.
struct FailingFiles {
    call: Call,
    nth: u64,
    errno: i32,
    seen: Arc<AtomicU64>,
    /// The half-written write's failure is due on the next write.
    armed: AtomicBool,
    thread: ThreadId,
}

impl FailingFiles {
    fn new(call: Call, nth: u64, errno: i32, seen: Arc<AtomicU64>) -> Self {
        Self {
            call,
            nth,
            errno,
            seen,
            armed: AtomicBool::new(false),
            thread: thread::current().id(),
        }
    }

    /// Whether this call, of kind `call`, is the one to fail.
    fn strikes(&self, call: Call) -> bool {
        call == self.call
            && thread::current().id() == self.thread
            && self.seen.fetch_add(1, Ordering::SeqCst) + 1 == self.nth
    }

    fn fail<T>(&self, call: Call, real: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
        if self.strikes(call) {
            return Err(io::Error::from_raw_os_error(self.errno));
        }
        real()
    }
}

impl FileOps for FailingFiles {
    fn create(&self, path: &Path) -> io::Result<std::fs::File> {
        self.fail(Call::Create, || StdFileOps.create(path))
    }

    fn open_append(&self, path: &Path) -> io::Result<std::fs::File> {
        StdFileOps.open_append(path)
    }

    fn write(&self, file: &mut std::fs::File, bytes: &[u8]) -> io::Result<usize> {
        if self.armed.swap(false, Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(self.errno));
        }
        if self.strikes(Call::Write) {
            if bytes.len() < 2 {
                return Err(io::Error::from_raw_os_error(self.errno));
            }
            self.armed.store(true, Ordering::SeqCst);
            return StdFileOps.write(file, &bytes[..bytes.len() / 2]);
        }
        StdFileOps.write(file, bytes)
    }

    fn sync_data(&self, file: &std::fs::File) -> io::Result<()> {
        self.fail(Call::SyncData, || StdFileOps.sync_data(file))
    }

    fn sync_all(&self, file: &std::fs::File) -> io::Result<()> {
        self.fail(Call::SyncAll, || StdFileOps.sync_all(file))
    }

    fn set_len(&self, file: &std::fs::File, len: u64) -> io::Result<()> {
        self.fail(Call::SetLen, || StdFileOps.set_len(file, len))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.fail(Call::Rename, || StdFileOps.rename(from, to))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.fail(Call::Remove, || StdFileOps.remove_file(path))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.fail(Call::SyncDir, || StdFileOps.sync_dir(dir))
    }
}

/// One call on a storage, as the scenario makes it.
#[derive(Clone)]
enum Step {
    Load,
    Save(Persist),
    WriteSnapshot(Snapshot, Vec<u8>),
}

fn entry(term: Term, command: &str) -> Entry {
    Entry::command(term, command.as_bytes().to_vec())
}

fn log_write(first_index: Index, entries: Vec<Entry>) -> Option<LogWrite> {
    Some(LogWrite {
        first_index,
        entries,
    })
}

fn hard_state(term: Term) -> Option<HardState> {
    Some(HardState {
        current_term: term,
        voted_for: Some(1),
    })
}

fn point(index: Index, term: Term, size: u64) -> Snapshot {
    let addresses = [(1, "h:1".to_string())].into_iter().collect();
    Snapshot {
        last_included_index: index,
        last_included_term: term,
        configuration: Configuration::bootstrap(&[1], &addresses),
        configuration_index: 0,
        size,
    }
}

/// Every kind of call storage makes: start-up, appends, a term change with a
/// truncation, a snapshot written and made current (rewriting the log), and
/// a leader's snapshot received in two pieces that replaces the whole log.
fn scenario() -> Vec<Step> {
    let leaders = point(10, 3, 6);
    let piece = |offset: u64, data: &str, done| SnapshotChunk {
        snapshot: leaders.clone(),
        offset,
        data: data.as_bytes().to_vec(),
        done,
    };
    vec![
        Step::Load,
        Step::Save(Persist {
            hard_state: hard_state(1),
            log: log_write(1, vec![entry(1, "a"), entry(1, "b"), entry(1, "c")]),
            ..Persist::default()
        }),
        Step::Save(Persist {
            log: log_write(4, vec![entry(1, "d"), entry(1, "e")]),
            ..Persist::default()
        }),
        Step::Save(Persist {
            hard_state: hard_state(2),
            log: log_write(5, vec![entry(2, "E"), entry(2, "f")]),
            ..Persist::default()
        }),
        Step::Save(Persist {
            log: log_write(6, vec![]),
            ..Persist::default()
        }),
        Step::WriteSnapshot(point(4, 1, 0), b"abcd".to_vec()),
        Step::Save(Persist {
            snapshot: Some(point(4, 1, 4)),
            log: log_write(6, vec![entry(2, "g")]),
            ..Persist::default()
        }),
        Step::Save(Persist {
            hard_state: hard_state(3),
            snapshot_chunks: vec![piece(0, "012", false)],
            ..Persist::default()
        }),
        Step::Save(Persist {
            snapshot_chunks: vec![piece(3, "345", true)],
            snapshot: Some(leaders.clone()),
            log: log_write(11, vec![entry(3, "h")]),
            ..Persist::default()
        }),
    ]
}

fn run(storage: &dyn Storage, step: &Step) -> io::Result<()> {
    match step {
        Step::Load => storage.load().map(drop),
        Step::Save(persist) => storage.save(persist),
        Step::WriteSnapshot(point, data) => storage
            .write_snapshot(point.clone(), &mut |w| w.write_all(data))
            .map(drop),
    }
}

/// The prefixes of `step` a failure (or a crash) may leave done, in
/// `FileStorage`'s order: hard state, snapshot pieces, snapshot, then any
/// prefix of the log's records.
fn prefixes(step: &Step) -> Vec<Step> {
    let Step::Save(p) = step else {
        // A snapshot written may be complete under its name, or not there.
        return vec![step.clone()];
    };
    let mut out = vec![Persist::default()];
    let mut done = Persist::default();
    if p.hard_state.is_some() {
        done.hard_state = p.hard_state;
        out.push(done.clone());
    }
    for chunk in &p.snapshot_chunks {
        done.snapshot_chunks.push(chunk.clone());
        out.push(done.clone());
    }
    if p.snapshot.is_some() {
        done.snapshot = p.snapshot.clone();
        out.push(done.clone());
    }
    if let Some(write) = &p.log {
        for kept in 0..=write.entries.len() {
            let mut torn = done.clone();
            torn.log = log_write(write.first_index, write.entries[..kept].to_vec());
            out.push(torn);
        }
    }
    out.into_iter().map(Step::Save).collect()
}

/// What a restart may find after `acknowledged` returned `Ok` and `failed`
/// did not.
fn allowed(acknowledged: &[Step], failed: &Step) -> Vec<InitialState> {
    let model = |extra: Option<&Step>| {
        let m = MemoryStorage::new();
        for step in acknowledged.iter().chain(extra) {
            run(&m, step).expect("the model takes every step");
        }
        // A crash loses what the model holds only in memory (a piece of a
        // snapshot being received), as a restart does.
        m.copy().load().expect("the model loads")
    };
    let mut states = vec![model(None)];
    states.extend(prefixes(failed).iter().map(|p| model(Some(p))));
    states
}

/// Runs the scenario with the `nth` call of kind `call` failing; returns
/// false once `nth` is past the calls of that kind the scenario makes.
fn fails_cleanly(call: Call, nth: u64, errno: i32) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let seen = Arc::new(AtomicU64::new(0));
    let ops = FailingFiles::new(call, nth, errno, Arc::clone(&seen));
    let storage = FileStorage::open_with(dir.path(), Box::new(ops))
        .unwrap()
        .with_rewrite_bytes(0);
    let steps = scenario();
    let mut acknowledged = Vec::new();
    for step in &steps {
        let before = seen.load(Ordering::SeqCst);
        match run(&storage, step) {
            Ok(()) => {
                let struck = before < nth && seen.load(Ordering::SeqCst) >= nth;
                assert!(!struck, "{call:?} #{nth} failed in a call that returned Ok");
                acknowledged.push(step.clone());
            }
            Err(e) => {
                let what = format!("{call:?} #{nth} ({e})");
                let message = e.to_string();
                assert!(
                    message.contains(&dir.path().display().to_string()),
                    "{what}: names no file"
                );
                assert_eq!(
                    e.raw_os_error(),
                    None,
                    "{what}: wrapped with the file's name"
                );
                let expected = io::Error::from_raw_os_error(errno).to_string();
                assert!(message.contains(&expected), "{what}: {message}");
                // Nothing more is written after a failure.
                for later in &steps {
                    let refused = run(&storage, later).expect_err(&what);
                    assert_eq!(refused.to_string(), message, "{what}: a later call");
                }
                let reopened = FileStorage::open(dir.path()).unwrap().load();
                let reopened = reopened.unwrap_or_else(|e| panic!("{what}: reopening: {e}"));
                let allowed = allowed(&acknowledged, step);
                assert!(
                    allowed.contains(&reopened),
                    "{what}: reopened to {reopened:?}, not one of {allowed:?}"
                );
                return true;
            }
        }
    }
    false
}

/// Reference: the `Storage::save` contract; fsyncgate (a failed fsync is
/// never retried: every later call fails).
#[test]
fn every_failed_write_fsync_rename_or_delete_is_reported_and_recovers_to_a_durable_state() {
    let mut failures = 0;
    for call in CALLS {
        let mut nth = 1;
        let errno = |nth: u64| if nth % 2 == 1 { ENOSPC } else { EIO };
        while fails_cleanly(call, nth, errno(nth)) {
            nth += 1;
            failures += 1;
        }
        if call != Call::SetLen {
            // Only a torn tail at start-up is cut (tested below).
            assert!(nth > 1, "the scenario never makes a {call:?} call");
        }
    }
    assert!(failures > 40, "only {failures} failure points");
}

#[test]
fn a_failed_deletion_of_an_old_snapshot_fails_the_next_write() {
    let dir = tempfile::tempdir().unwrap();
    let seen = Arc::new(AtomicU64::new(0));
    // Start-up deletes two leftover temporaries (none here): the third
    // deletion is the old snapshot's.
    let storage = FileStorage::open_with(
        dir.path(),
        Box::new(FailingFiles::new(Call::Remove, 3, EIO, seen)),
    )
    .unwrap();
    storage.load().unwrap();
    let older = storage
        .write_snapshot(point(1, 1, 0), &mut |w| w.write_all(b"x"))
        .unwrap();
    // Run on the test's thread here (a save runs it on another).
    let files = super::snapshot_files::SnapshotFiles::new(Arc::clone(storage.data_dir()));
    let newer = storage
        .write_snapshot(point(2, 1, 0), &mut |w| w.write_all(b"y"))
        .unwrap();
    assert!(files.keep_from(&newer).is_err());
    assert!(storage.save(&Persist::default()).is_err(), "refused after");
    let reopened = FileStorage::open(dir.path()).unwrap().load().unwrap();
    assert_eq!(
        reopened.snapshot, newer,
        "the newer one, the older still there"
    );
    assert_ne!(older, newer);
}

#[test]
fn a_failed_cut_of_a_torn_tail_fails_the_start_and_the_next_start_cuts_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = FileStorage::open(dir.path()).unwrap();
    s.load().unwrap();
    s.save(&Persist {
        log: log_write(1, vec![entry(1, "a"), entry(1, "b")]),
        ..Persist::default()
    })
    .unwrap();
    let path = dir.path().join("log");
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 1)
        .unwrap();
    let seen = Arc::new(AtomicU64::new(0));
    let failing = FileStorage::open_with(
        dir.path(),
        Box::new(FailingFiles::new(Call::SetLen, 1, EIO, seen)),
    )
    .unwrap();
    let err = failing.load().unwrap_err();
    assert!(err.to_string().starts_with("truncate "), "{err}");
    let loaded = FileStorage::open(dir.path()).unwrap().load().unwrap();
    assert_eq!(loaded.entries, vec![entry(1, "a")]);
}

#[test]
fn half_written_replacements_are_deleted_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hardstate.tmp"), b"half").unwrap();
    std::fs::write(dir.path().join("log.tmp"), b"half").unwrap();
    FileStorage::open(dir.path()).unwrap().load().unwrap();
    assert!(!dir.path().join("hardstate.tmp").exists());
    assert!(!dir.path().join("log.tmp").exists());
}
