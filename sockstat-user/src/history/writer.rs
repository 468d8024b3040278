//! Writes off the event path: the recorder hands rows to a thread of their own through a
//! bounded queue, and that thread commits them in batches (a batch a second, or sooner when
//! it is full) to a destination: the embedded store, enforcing retention as it goes, or
//! ClickHouse through the spool. A full queue (the destination slower than the connections)
//! drops rows and counts them; nothing is dropped without a count.
use std::{
    sync::{
        Arc, Mutex,
        mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use super::{
    Row,
    clickhouse::ClickHouse,
    now_ns,
    spool::{Shipped, Spool},
    store::Store,
};

/// Rows per transaction at most.
pub const BATCH: usize = 4096;
/// A generous guess at one row's bytes on disk, its four index entries included: with a
/// size bound, a batch is kept to a sixteenth of it, so one commit cannot overshoot it.
const ROW_BYTES: u64 = 512;
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
    /// ClickHouse's side, when that is the destination.
    pub shipped: Option<Shipped>,
    /// Connections committed, and (`--transitions`) state changes.
    pub rows: u64,
    pub transitions: u64,
    pub batches: u64,
    /// What a failed commit lost (each failure is also logged).
    pub failed: u64,
    pub failed_transitions: u64,
    pub expired: u64,
    /// Rows removed to stay within `max_bytes`.
    pub evicted: u64,
    pub bytes: u64,
}

pub struct Writer {
    queue: Option<SyncSender<Row>>,
    /// What the thread has done so far, updated after each batch and retry.
    progress: Arc<Mutex<Written>>,
    thread: Option<JoinHandle<Written>>,
    queued: u64,
    dropped: u64,
}

impl Writer {
    /// Starts the writing thread; `flush` is the longest a row waits to be committed.
    pub fn start(
        destination: Destination,
        retention: Retention,
        flush: Duration,
    ) -> std::io::Result<Writer> {
        let (tx, rx) = sync_channel(QUEUE);
        let batch = batch_rows(retention.max_bytes);
        let progress = Arc::new(Mutex::new(Written::default()));
        let shown = progress.clone();
        let thread = std::thread::Builder::new()
            .name("sockstat-store".to_string())
            .spawn(move || write_loop(destination, rx, retention, flush, batch, &shown))?;
        Ok(Writer {
            queue: Some(tx),
            progress,
            thread: Some(thread),
            queued: 0,
            dropped: 0,
        })
    }

    /// Queues a row; counted as dropped when the queue is full.
    pub fn push(&mut self, row: Row) {
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

    /// What the writing thread has done so far.
    pub fn progress(&self) -> Written {
        match self.progress.lock() {
            Ok(w) => *w,
            Err(poisoned) => *poisoned.into_inner(),
        }
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

/// Rows per commit: BATCH, or fewer under a small size bound.
fn batch_rows(max_bytes: Option<u64>) -> usize {
    max_bytes.map_or(BATCH, |max| {
        usize::try_from(max / 16 / ROW_BYTES).map_or(BATCH, |rows| rows.clamp(16, BATCH))
    })
}

/// Where batches go.
pub enum Destination {
    Store(Store),
    /// Spooled on disk, then sent.
    ClickHouse(Box<(ClickHouse, Spool)>),
}

impl Destination {
    fn commit(&mut self, rows: &[Row], written: &mut Written) {
        let result = match self {
            Destination::Store(store) => store.insert(rows).map_err(|e| e.to_string()),
            Destination::ClickHouse(sink) => {
                let (clickhouse, spool) = &mut **sink;
                let queued = spool.push(rows).map_err(|e| e.to_string());
                spool.ship(clickhouse, false);
                written.shipped = Some(spool.shipped());
                queued
            }
        };
        let connections = rows
            .iter()
            .filter(|r| matches!(r, Row::Lifetime(_)))
            .count() as u64;
        let changes = rows.len() as u64 - connections;
        match result {
            Ok(()) => {
                written.rows += connections;
                written.transitions += changes;
                written.batches += 1;
            }
            Err(e) => {
                log::warn!("writing {connections} connections and {changes} transitions: {e}");
                written.failed += connections;
                written.failed_transitions += changes;
            }
        }
    }

    /// Between batches: retention for the store, retries for ClickHouse. `due`: the
    /// retention check's time has come (it is also made whenever the store is over size).
    fn upkeep(&mut self, retention: Retention, due: bool, written: &mut Written) -> bool {
        match self {
            Destination::Store(store) => {
                let over = retention.max_bytes.is_some_and(|max| store.size() > max);
                if over || due {
                    apply_retention(store, retention, written);
                }
                over || due
            }
            Destination::ClickHouse(sink) => {
                let (clickhouse, spool) = &mut **sink;
                spool.ship(clickhouse, false);
                written.shipped = Some(spool.shipped());
                if due && let Some(keep) = retention.keep {
                    let cutoff = now_ns().saturating_sub(keep.as_nanos() as i64);
                    match clickhouse.drop_days_before(cutoff) {
                        Ok(n) => written.expired += n,
                        // Down: the spool's retries already say so.
                        Err(e) => log::debug!("dropping days older than --keep: {e}"),
                    }
                }
                due
            }
        }
    }

    fn close(&mut self, retention: Retention, written: &mut Written) {
        match self {
            Destination::Store(store) => {
                apply_retention(store, retention, written);
                written.bytes = store.size();
            }
            Destination::ClickHouse(sink) => {
                let (clickhouse, spool) = &mut **sink;
                spool.ship(clickhouse, true);
                let shipped = spool.shipped();
                written.shipped = Some(shipped);
                written.bytes = shipped.waiting_bytes;
            }
        }
    }
}

fn write_loop(
    mut destination: Destination,
    rx: Receiver<Row>,
    retention: Retention,
    flush: Duration,
    batch_rows: usize,
    progress: &Mutex<Written>,
) -> Written {
    let mut written = Written::default();
    let mut batch = Vec::with_capacity(batch_rows);
    let mut deadline = Instant::now() + flush;
    let mut retained = Instant::now();
    // Bounds apply from the start: a store recorded with a larger bound shrinks at once.
    destination.upkeep(retention, true, &mut written);
    loop {
        let wait = deadline.saturating_duration_since(Instant::now());
        let done = match rx.recv_timeout(wait) {
            Ok(row) => {
                batch.push(row);
                if batch.len() < batch_rows {
                    continue;
                }
                false
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => true,
        };
        deadline = Instant::now() + flush;
        if !batch.is_empty() {
            destination.commit(&batch, &mut written);
            batch.clear();
        }
        if done {
            destination.close(retention, &mut written);
            return written;
        }
        if destination.upkeep(
            retention,
            retained.elapsed() >= RETENTION_EVERY,
            &mut written,
        ) {
            retained = Instant::now();
        }
        if let Ok(mut p) = progress.lock() {
            *p = written;
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
    use crate::history::LifetimeRow;

    #[test]
    fn a_small_size_bound_makes_small_batches() {
        assert_eq!(batch_rows(None), BATCH);
        assert_eq!(batch_rows(Some(1 << 30)), BATCH);
        assert_eq!(batch_rows(Some(1 << 20)), 128);
        assert_eq!(batch_rows(Some(256 << 10)), 32);
    }

    #[test]
    fn every_queued_row_is_committed_by_the_end() {
        let dir = std::env::temp_dir().join(format!("sockstat-writer-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::create(&dir).unwrap();
        let retention = Retention {
            keep: Some(Duration::from_secs(3600)),
            max_bytes: None,
        };
        let mut w = Writer::start(
            Destination::Store(store),
            retention,
            Duration::from_millis(20),
        )
        .unwrap();
        let now = now_ns();
        for i in 0..(BATCH as i64 + 10) {
            w.push(Row::Lifetime(LifetimeRow {
                end_ns: now + i,
                owner_source: "task".to_string(),
                ..LifetimeRow::default()
            }));
        }
        // One long expired: the first retention pass takes it.
        w.push(Row::Lifetime(LifetimeRow {
            end_ns: now - 7_200_000_000_000,
            owner_source: "task".to_string(),
            ..LifetimeRow::default()
        }));
        assert_eq!(w.dropped(), 0);
        let written = w.finish();
        assert_eq!(written.rows, BATCH as u64 + 11);
        assert_eq!(written.expired, 1);
        assert!(written.batches >= 2);
        let store = Store::open(&dir).unwrap();
        assert_eq!(store.rows("lifetimes").unwrap(), BATCH as u64 + 10);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
