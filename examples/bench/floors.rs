//! What this machine's loopback and disk cost at the least: the floors a
//! request's latency is judged against.
//!
//! A PUT at 1 client needs at least two loopback round trips (client → leader
//! → follower and back) and one fdatasync (the leader's log append; the
//! follower's runs alongside it), so the bench judges a PUT's p50 at 1 client
//! against `2 × round trip + fdatasync`, aiming for at most 1.3× of it.

use std::fs::{self, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use crate::report::{ms, percentile};

/// Round trips timed (after 200 unmeasured ones).
const ROUND_TRIPS: usize = 5000;
/// fdatasyncs timed (after 10 unmeasured ones).
const SYNCS: usize = 300;

/// The measured floors.
pub struct Floors {
    /// Loopback TCP round trip of a short line between two threads, p50 and p99, ns.
    pub rtt: (u64, u64),
    /// Appending 4 KiB to a file and `sync_data()` (fdatasync), p50 and p99, ns.
    pub sync: (u64, u64),
}

impl Floors {
    /// Measures both floors; the file for fdatasync goes in `dir`, which
    /// should be on the disk the clusters use.
    pub fn measure(dir: &Path) -> io::Result<Floors> {
        let rtt = loopback_round_trips()?;
        let sync = fdatasyncs(dir)?;
        Ok(Floors {
            rtt: (percentile(&rtt, 0.50), percentile(&rtt, 0.99)),
            sync: (percentile(&sync, 0.50), percentile(&sync, 0.99)),
        })
    }

    /// The floor for a PUT at 1 client: two round trips and one
    /// fdatasync, from the medians, ns.
    pub fn put_floor(&self) -> u64 {
        2 * self.rtt.0 + self.sync.0
    }

    /// The lines printed at the start of a run.
    pub fn describe(&self) -> String {
        let floor = self.put_floor();
        format!(
            "floors on this machine: {}\n\
             PUT floor = 2 round trips + 1 fdatasync = {} ms; \
             target for PUT p50 at 1 client: at most 1.3 × floor = {} ms",
            self.summary(),
            ms(floor),
            ms(floor * 13 / 10),
        )
    }

    /// Both floors on one line.
    pub fn summary(&self) -> String {
        format!(
            "loopback TCP round trip p50 {} ms (p99 {}); 4 KiB append + fdatasync p50 {} ms (p99 {})",
            ms(self.rtt.0),
            ms(self.rtt.1),
            ms(self.sync.0),
            ms(self.sync.1),
        )
    }
}

/// Sorted round-trip times, ns, of a line echoed by another thread.
fn loopback_round_trips() -> io::Result<Vec<u64>> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let echo = thread::spawn(move || -> io::Result<()> {
        let (stream, _) = listener.accept()?;
        stream.set_nodelay(true)?;
        let mut writer = stream.try_clone()?;
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line)? == 0 {
                return Ok(());
            }
            writer.write_all(&line)?;
        }
    });
    let stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    let mut times = Vec::with_capacity(ROUND_TRIPS);
    for i in 0..200 + ROUND_TRIPS {
        let started = Instant::now();
        writer.write_all(b"PING\n")?;
        line.clear();
        reader.read_until(b'\n', &mut line)?;
        if i >= 200 {
            times.push(started.elapsed().as_nanos() as u64);
        }
    }
    drop((writer, reader));
    echo.join()
        .map_err(|_| io::Error::other("echo thread panicked"))??;
    times.sort_unstable();
    Ok(times)
}

/// Sorted times, ns, of appending 4 KiB to a file in `dir` and fdatasync-ing
/// it, as a log append does (the file grows, so its size is flushed too).
fn fdatasyncs(dir: &Path) -> io::Result<Vec<u64>> {
    let path = dir.join("fdatasync-probe");
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)?;
    let block = [0xa5u8; 4096];
    let mut times = Vec::with_capacity(SYNCS);
    for i in 0..10 + SYNCS {
        let started = Instant::now();
        file.write_all(&block)?;
        file.sync_data()?;
        if i >= 10 {
            times.push(started.elapsed().as_nanos() as u64);
        }
    }
    drop(file);
    fs::remove_file(&path)?;
    times.sort_unstable();
    Ok(times)
}
