//! Writes off the event path: the recorder hands rows to a thread of their own through a
//! bounded queue, and that thread commits them in batches (a batch a second, or sooner when
//! it is full) and enforces retention as it goes. A full queue (the disk slower than the
//! connections) drops rows and counts them; nothing is dropped without a count.
use std::{
    sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel},
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use super::store::{LifetimeRow, Store};

/// Rows per transaction at most.
pub const BATCH: usize = 4096;
/// Rows waiting for the writer at most: a few seconds of a busy host's connections.
const QUEUE: usize = 16 * BATCH;
/// How often the retention bounds are checked (and after every batch when over size).
const RETENTION_EVERY: Duration = Duration::from_secs(10);

/// How long and how much is kept.
#[derive(Clone, Copy, Debug)]
pub struct Retention {
    /// Rows that closed longer ago than this go.
    pub keep: Option<Duration>,
    /// Database and log together stay within this many bytes.
    pub max_bytes: Option<u64>,
}

/// What the writer did, for the recorder's closing line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Written {
    pub rows: u64,
    pub batches: u64,
    /// Rows a failed commit lost (each failure is also logged).
    pub failed: u64,
    pub expired: u64,
    /// Rows removed to stay within `max_bytes`.
    pub evicted: u64,
    pub bytes: u64,
}

pub struct Writer {
    queue: Option<SyncSender<LifetimeRow>>,
    thread: Option<JoinHandle<Written>>,
    queued: u64,
    dropped: u64,
}

impl Writer {
    /// Starts the writing thread; `flush` is the longest a row waits to be committed.
    pub fn start(store: Store, retention: Retention, flush: Duration) -> std::io::Result<Writer> {
        let (tx, rx) = sync_channel(QUEUE);
        let thread = std::thread::Builder::new()
            .name("sockstat-store".to_string())
            .spawn(move || write_loop(store, rx, retention, flush))?;
        Ok(Writer {
            queue: Some(tx),
            thread: Some(thread),
            queued: 0,
            dropped: 0,
        })
    }

    /// Queues a row; counted as dropped when the queue is full.
    pub fn push(&mut self, row: LifetimeRow) {
        let Some(queue) = &self.queue else {
            self.dropped += 1;
            return;
        };
        match queue.try_send(row) {
            Ok(()) => self.queued += 1,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => self.dropped += 1,
        }
    }

    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Commits what is queued and stops the thread.
    pub fn finish(mut self) -> Written {
        self.queue = None;
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

fn write_loop(
    mut store: Store,
    rx: Receiver<LifetimeRow>,
    retention: Retention,
    flush: Duration,
) -> Written {
    let mut written = Written::default();
    let mut batch = Vec::with_capacity(BATCH);
    let mut deadline = Instant::now() + flush;
    let mut retained = Instant::now();
    // Bounds apply from the start: a store recorded with a larger bound shrinks at once.
    apply_retention(&mut store, retention, &mut written);
    loop {
        let wait = deadline.saturating_duration_since(Instant::now());
        let done = match rx.recv_timeout(wait) {
            Ok(row) => {
                batch.push(row);
                if batch.len() < BATCH {
                    continue;
                }
                false
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => true,
        };
        deadline = Instant::now() + flush;
        if !batch.is_empty() {
            match store.insert(&batch) {
                Ok(()) => {
                    written.rows += batch.len() as u64;
                    written.batches += 1;
                }
                Err(e) => {
                    log::warn!("writing {} connections to the store: {e}", batch.len());
                    written.failed += batch.len() as u64;
                }
            }
            batch.clear();
        }
        let over = retention.max_bytes.is_some_and(|max| store.size() > max);
        if over || retained.elapsed() >= RETENTION_EVERY || done {
            apply_retention(&mut store, retention, &mut written);
            retained = Instant::now();
        }
        if done {
            written.bytes = store.size();
            return written;
        }
    }
}

fn apply_retention(store: &mut Store, retention: Retention, written: &mut Written) {
    if let Some(keep) = retention.keep {
        match store.expire(now_ns().saturating_sub(keep.as_nanos() as i64)) {
            Ok(n) => written.expired += n,
            Err(e) => log::warn!("expiring old connections: {e}"),
        }
    }
    if let Some(max) = retention.max_bytes {
        match store.bound(max) {
            Ok(n) => written.evicted += n,
            Err(e) => log::warn!("keeping the store within {max} bytes: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_queued_row_is_committed_by_the_end() {
        let dir = std::env::temp_dir().join(format!("sockstat-writer-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::create(&dir).unwrap();
        let retention = Retention {
            keep: Some(Duration::from_secs(3600)),
            max_bytes: None,
        };
        let mut w = Writer::start(store, retention, Duration::from_millis(20)).unwrap();
        let now = now_ns();
        for i in 0..(BATCH as i64 + 10) {
            w.push(LifetimeRow {
                end_ns: now + i,
                owner_source: "task".to_string(),
                ..LifetimeRow::default()
            });
        }
        // One long expired: the first retention pass takes it.
        w.push(LifetimeRow {
            end_ns: now - 7_200_000_000_000,
            owner_source: "task".to_string(),
            ..LifetimeRow::default()
        });
        assert_eq!(w.dropped(), 0);
        let written = w.finish();
        assert_eq!(written.rows, BATCH as u64 + 11);
        assert_eq!(written.expired, 1);
        assert!(written.batches >= 2);
        let store = Store::open(&dir).unwrap();
        assert_eq!(store.rows().unwrap(), BATCH as u64 + 10);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
