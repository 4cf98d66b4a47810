//! The space quota: a deterministic size of the state, and the limit that
//! writes may not grow it past.
//!
//! Modelled on etcd's NOSPACE alarm, made deterministic so that it can be
//! checked inside the state machine: the size is a logical count computed from
//! the state itself (never a file or memory size, which differ between
//! servers), so every replica accepts or refuses a write at the same log index.
//! A write that would grow the state beyond the quota gets `ERR NOSPACE` and
//! changes nothing; reads, `DEL`, writes that do not grow the state, and
//! transfers between existing accounts keep working. There is no alarm to
//! disarm: freeing space lets writes in again at once.
//!
//! What counts: each key with its value, and each account. Transfer records
//! and sessions do not count: each has its own bound (the txid retention
//! window and the session table's size), and counting them would stop
//! transfers between existing accounts.
//!
//! The quota in force is itself replicated (`SetQuota` entries), so that every
//! replica, and a replica replaying its log after a restart, applies the same
//! limit at the same index. A leader whose `-quota-bytes` differs from the
//! replicated value proposes its own before its next command.

use super::reply::{Code, Reply};

/// The quota when `-quota-bytes` is not given: 2 GiB, etcd's default.
pub const DEFAULT_QUOTA_BYTES: u64 = 2 << 30;
/// Counted per key and per account on top of its bytes (map entry, string
/// headers), so that many tiny keys cannot dodge the quota.
pub const ENTRY_OVERHEAD: u64 = 64;

/// What a key of `key_len` bytes holding a value of `value_len` bytes counts for.
pub fn kv_cost(key_len: usize, value_len: usize) -> u64 {
    ENTRY_OVERHEAD + key_len as u64 + value_len as u64
}

/// What an account counts for (its name and an 8-byte balance).
pub fn account_cost(name: &str) -> u64 {
    ENTRY_OVERHEAD + name.len() as u64 + 8
}

/// The reply to a write refused for lack of space.
pub fn nospace(used: u64, quota: u64) -> Reply {
    Reply::error(
        Code::NoSpace,
        format!(
            "the state holds {used} bytes of a {quota}-byte quota; reads, DEL and transfers \
             between existing accounts still work"
        ),
    )
}
