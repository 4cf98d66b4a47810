//! Reading the cluster key and client token files, and random bytes from the OS.
//!
//! Both files are secrets: a file that group or others can access is used, with
//! a warning. Random bytes come from `/dev/urandom` (std has no CSPRNG); there
//! is no fallback: without it a server with a key refuses to start.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// Shortest cluster key accepted, in bytes (32 random bytes are recommended).
pub const MIN_KEY_LEN: usize = 16;
/// Longest key file read (a key longer than a SHA-256 block is hashed anyway).
const MAX_KEY_FILE: u64 = 4096;
/// Client tokens: this many visible ASCII characters at least, and at most.
pub const MIN_TOKEN_LEN: usize = 16;
/// Longest client token.
pub const MAX_TOKEN_LEN: usize = 256;
/// How to make a key, for error messages and docs.
pub const MAKE_KEY: &str = "head -c 32 /dev/urandom > cluster.key && chmod 600 cluster.key";

/// A secret kept in a configuration: `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct Hidden<T>(pub T);

impl<T> std::fmt::Debug for Hidden<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hidden(..)")
    }
}

/// A secret read from a file, with a warning to log if the file is exposed.
#[derive(Debug)]
pub struct Secret<T> {
    /// The key bytes or the token.
    pub value: T,
    /// Set when group or others may access the file.
    pub warning: Option<String>,
}

fn read_secret_file(path: &Path, what: &str) -> Result<Secret<Vec<u8>>, String> {
    let shown = path.display();
    let file = File::open(path).map_err(|e| format!("cannot read {what} file {shown}: {e}"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read {what} file {shown}: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_KEY_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {what} file {shown}: {e}"))?;
    if bytes.len() as u64 > MAX_KEY_FILE {
        return Err(format!(
            "{what} file {shown} is over {MAX_KEY_FILE} bytes; is it the right file?"
        ));
    }
    Ok(Secret {
        value: bytes,
        warning: exposure_warning(&meta, &shown.to_string(), what),
    })
}

#[cfg(unix)]
fn exposure_warning(meta: &std::fs::Metadata, shown: &str, what: &str) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then(|| {
        format!("{what} file {shown} is accessible by group or others (mode {mode:03o}); run chmod 600 {shown}")
    })
}

#[cfg(not(unix))]
fn exposure_warning(_: &std::fs::Metadata, _: &str, _: &str) -> Option<String> {
    None
}

/// Reads a cluster key: the file's bytes, all of them, at least [`MIN_KEY_LEN`].
pub fn read_cluster_key(path: &Path) -> Result<Secret<Vec<u8>>, String> {
    let secret = read_secret_file(path, "cluster key")?;
    if secret.value.len() < MIN_KEY_LEN {
        return Err(format!(
            "cluster key file {} holds {} bytes; a key needs at least {MIN_KEY_LEN} \
             (make one with: {MAKE_KEY})",
            path.display(),
            secret.value.len()
        ));
    }
    Ok(secret)
}

/// Reads a client token: the file's text without surrounding whitespace,
/// [`MIN_TOKEN_LEN`]..=[`MAX_TOKEN_LEN`] visible ASCII characters (it travels
/// as one word: `AUTH <token>`).
pub fn read_client_token(path: &Path) -> Result<Secret<String>, String> {
    let secret = read_secret_file(path, "client token")?;
    let shown = path.display();
    let text = std::str::from_utf8(&secret.value)
        .map_err(|_| format!("client token file {shown} is not text"))?
        .trim();
    if !(MIN_TOKEN_LEN..=MAX_TOKEN_LEN).contains(&text.len())
        || !text.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(format!(
            "client token file {shown} must hold {MIN_TOKEN_LEN}..={MAX_TOKEN_LEN} visible \
             ASCII characters without spaces (make one with: \
             head -c 24 /dev/urandom | base64 > client.token)"
        ));
    }
    Ok(Secret {
        value: text.to_string(),
        warning: secret.warning,
    })
}

/// Fills `buf` from `/dev/urandom`.
pub fn os_random(buf: &mut [u8]) -> io::Result<()> {
    File::open("/dev/urandom")?.read_exact(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_with(bytes: &[u8], mode: u32) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(mode)).unwrap();
        }
        #[cfg(not(unix))]
        let _ = mode;
        f
    }

    #[test]
    fn keys_under_16_bytes_are_refused_with_a_recipe() {
        let f = file_with(&[7u8; 15], 0o600);
        let err = read_cluster_key(f.path()).unwrap_err();
        assert!(
            err.contains("holds 15 bytes") && err.contains("head -c 32 /dev/urandom"),
            "{err}"
        );
        let f = file_with(&[7u8; 16], 0o600);
        let key = read_cluster_key(f.path()).unwrap();
        assert_eq!(key.value, vec![7u8; 16]);
        assert_eq!(key.warning, None);
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_others_can_read_is_used_with_a_warning() {
        let f = file_with(&[1u8; 32], 0o644);
        let key = read_cluster_key(f.path()).unwrap();
        let warning = key.warning.expect("a warning");
        assert!(
            warning.contains("mode 644") && warning.contains("chmod 600"),
            "{warning}"
        );
    }

    #[test]
    fn tokens_are_trimmed_and_must_be_one_visible_word() {
        let f = file_with(b"  abcdefghijklmnop-123\n", 0o600);
        assert_eq!(
            read_client_token(f.path()).unwrap().value,
            "abcdefghijklmnop-123"
        );
        for bad in [
            &b"short"[..],
            b"has a space in the middle",
            b"\xff\xfe not text at all",
        ] {
            let f = file_with(bad, 0o600);
            assert!(read_client_token(f.path()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn random_bytes_differ_between_calls() {
        let (mut a, mut b) = ([0u8; 16], [0u8; 16]);
        os_random(&mut a).unwrap();
        os_random(&mut b).unwrap();
        assert_ne!(a, b);
    }
}
