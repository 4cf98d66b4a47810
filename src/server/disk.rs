//! The thread that watches the data directory's free space (`storage::space`)
//! and tells the log file and the snapshot policy when it runs low.
//!
//! Every [`MEASURE_EVERY`] it measures again; the free-space guard itself
//! (refusing writes with `ERR NOSPACE_DISK`) reads [`DiskSpace`] on each request, in
//! the frontend. A change is one log line: low (and why), recovered, or that
//! free space cannot be measured here.

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use crate::info;
use crate::raft::NodeId;
use crate::service::replica::Replica;
use crate::storage::file::FileStorage;
use crate::storage::space::{Change, DiskSpace};

/// How often free space is measured (between measurements it is estimated
/// from the bytes storage writes).
pub const MEASURE_EVERY: Duration = Duration::from_secs(1);

/// Measures `space` until `stop` is dropped, telling `storage` and `replica`
/// whether it is low.
pub(super) fn watch(
    id: NodeId,
    space: &DiskSpace,
    storage: &FileStorage,
    replica: &Replica,
    stop: &Receiver<()>,
) {
    loop {
        let change = space.measure();
        let term = replica.node().status().term;
        let dir = space.dir().display();
        let free = space.free_bytes().unwrap_or(0);
        match change {
            Change::None => {}
            Change::BecameLow => info!(
                id,
                term,
                "free space in {dir} is {free} bytes, below the {} this server keeps \
                 (-min-free-bytes plus room for a snapshot): refusing writes that grow the \
                 state (ERR NOSPACE_DISK) until DEL and compaction, or a bigger disk, make room",
                space.threshold()
            ),
            Change::Recovered => info!(
                id,
                term, "free space in {dir} is back to {free} bytes: accepting writes again"
            ),
            Change::Unmeasurable(why) => info!(
                id,
                term,
                "cannot measure free space in {dir} ({why}): the free-space guard is off; \
                 watch the disk yourself"
            ),
        }
        let low = space.is_low();
        storage.set_space_low(low);
        replica.set_space_low(low);
        match stop.recv_timeout(MEASURE_EVERY) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
    }
}
