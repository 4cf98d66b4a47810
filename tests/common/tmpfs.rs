//! Small file systems that really fill up: one tmpfs per node, mounted by the
//! test (root only), grown or shrunk while nodes run, unmounted when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;

/// One mounted tmpfs, lazily unmounted when dropped (even if a process still
/// has files open on it).
pub struct Tmpfs {
    /// The mount point.
    pub path: PathBuf,
}

/// Runs `program args`, or says why it failed.
fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Tmpfs {
    /// Mounts a tmpfs of `bytes` (rounded up to KiB) at `path`.
    pub fn mount(path: &Path, bytes: u64) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(path).map_err(|e| e.to_string())?;
        let size = format!("size={}k", bytes.div_ceil(1024));
        let at = path.display().to_string();
        run("mount", &["-t", "tmpfs", "-o", &size, "tmpfs", &at])?;
        Ok(Tmpfs {
            path: path.to_path_buf(),
        })
    }

    /// Grows (or shrinks, down to what it holds) the file system to `bytes`.
    pub fn resize(&self, bytes: u64) {
        let size = format!("remount,size={}k", bytes.div_ceil(1024));
        let at = self.path.display().to_string();
        run("mount", &["-o", &size, &at]).unwrap_or_else(|e| panic!("{e}"));
    }

    /// `df -Pk`'s (used, available) bytes.
    pub fn usage(&self) -> (u64, u64) {
        let out = Command::new("df")
            .arg("-Pk")
            .arg(&self.path)
            .output()
            .expect("df");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let fields: Vec<u64> = text
            .lines()
            .nth(1)
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        match fields[..] {
            [_, used, available, ..] => (used * 1024, available * 1024),
            _ => panic!("cannot read df's output: {text}"),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let at = self.path.display().to_string();
        if let Err(e) = run("umount", &["-l", &at]) {
            eprintln!("could not unmount: {e}");
        }
    }
}

/// One tmpfs per node, in a temporary directory of their own. Drops the
/// mounts before the directory (fields drop in order).
pub struct Disks {
    /// Node `i`'s file system.
    pub disks: Vec<Tmpfs>,
    _dir: tempfile::TempDir,
}

impl Disks {
    /// `n` file systems of `bytes` each, or why they cannot be mounted here
    /// (not root, no mount permission in a container, ...).
    pub fn mount(n: usize, bytes: u64) -> Result<Disks, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut disks = Vec::new();
        for i in 0..n {
            disks.push(Tmpfs::mount(
                &dir.path().join(format!("disk{}", i + 1)),
                bytes,
            )?);
        }
        Ok(Disks { disks, _dir: dir })
    }

    /// `-data DIR` for each node: a directory on its own file system.
    pub fn data_flags(&self) -> Vec<Vec<String>> {
        self.disks
            .iter()
            .map(|d| {
                vec![
                    "-data".to_string(),
                    d.path.join("data").display().to_string(),
                ]
            })
            .collect()
    }
}
