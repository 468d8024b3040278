//! The way to ClickHouse: every batch is first written to a bounded queue on disk, one file
//! per batch, and sent from there oldest first; a file goes only once ClickHouse has it.
//! While the server is down batches wait, and are retried in order with a growing pause.
//! Past the spool's bound new batches are dropped and counted, never silently.
//!
//! A batch whose send ended in doubt (the answer lost, or sent by an earlier run) is looked
//! up by its id before it is sent again, so a restart or a lost answer never doubles it.
use std::{
    collections::{HashSet, VecDeque},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use super::{
    Row,
    clickhouse::{ClickHouse, ClickHouseError, Table, encode_batch},
    now_ns,
};

const SUFFIX: &str = ".rowbinary";
/// The first pause after a failed send, doubled after each failure up to `MAX_PAUSE`.
const FIRST_PAUSE: Duration = Duration::from_millis(500);
const MAX_PAUSE: Duration = Duration::from_secs(10);

/// One table's part of a spooled batch: `<id>-<rows>.<table>.rowbinary`, ids in the order
/// the batches were made.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Batch {
    id: u64,
    table: Table,
    rows: u64,
    bytes: u64,
}

impl Batch {
    fn name(&self) -> String {
        format!(
            "{:020}-{}.{}{SUFFIX}",
            self.id,
            self.rows,
            self.table.name()
        )
    }

    fn parse(name: &str, bytes: u64) -> Option<Batch> {
        let (id_rows, table) = name.strip_suffix(SUFFIX)?.rsplit_once('.')?;
        let (id, rows) = id_rows.split_once('-')?;
        Some(Batch {
            id: id.parse().ok()?,
            table: Table::from_name(table)?,
            rows: rows.parse().ok()?,
            bytes,
        })
    }

    /// Lifetimes are the connections counted; transitions ride along.
    fn connections(&self) -> u64 {
        if self.table == Table::Lifetimes {
            self.rows
        } else {
            0
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the spool {0}: {1}")]
pub struct SpoolError(PathBuf, #[source] std::io::Error);

/// What the spool did, for the recorder's closing line and serve's metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Shipped {
    /// Connections ClickHouse has (their transitions go along, uncounted here).
    pub rows: u64,
    /// Batches, a part per table.
    pub batches: u64,
    /// Batches found already there when looked up after a send in doubt.
    pub found: u64,
    /// Connections dropped because the spool was full.
    pub dropped: u64,
    /// Connections waiting in the spool.
    pub waiting: u64,
    pub waiting_bytes: u64,
    /// Sends that failed (each is retried).
    pub failures: u64,
}

pub struct Spool {
    dir: PathBuf,
    host: String,
    max_bytes: u64,
    /// Oldest first.
    batches: VecDeque<Batch>,
    /// Batches whose send ended in doubt: looked up before they are sent again.
    in_doubt: HashSet<(u64, Table)>,
    last_id: u64,
    shipped: Shipped,
    pause: Duration,
    next_try: Instant,
    /// The last failure, logged once per outage.
    outage: Option<String>,
}

impl Spool {
    /// Opens (making it if need be) the spool of `host` in `dir`. Batches left by an earlier
    /// run are kept and sent first, each looked up first.
    pub fn open(dir: &Path, host: &str, max_bytes: u64) -> Result<Spool, SpoolError> {
        let err = |e| SpoolError(dir.to_path_buf(), e);
        std::fs::create_dir_all(dir).map_err(err)?;
        let mut batches = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(err)? {
            let entry = entry.map_err(err)?;
            let bytes = entry.metadata().map_or(0, |m| m.len());
            match entry
                .file_name()
                .to_str()
                .and_then(|n| Batch::parse(n, bytes))
            {
                Some(b) => batches.push(b),
                // A half-written batch (a crash before its rename) never reached the queue.
                None if entry.file_name().to_string_lossy().ends_with(".tmp") => {
                    let _ = std::fs::remove_file(entry.path());
                }
                None => {}
            }
        }
        batches.sort();
        let batches = VecDeque::from(batches);
        let in_doubt = batches.iter().map(|b| (b.id, b.table)).collect();
        let last_id = batches.back().map_or(0, |b| b.id);
        let mut spool = Spool {
            dir: dir.to_path_buf(),
            host: host.to_string(),
            max_bytes,
            batches,
            in_doubt,
            last_id,
            shipped: Shipped::default(),
            pause: FIRST_PAUSE,
            next_try: Instant::now(),
            outage: None,
        };
        spool.count_waiting();
        Ok(spool)
    }

    fn count_waiting(&mut self) {
        self.shipped.waiting = self.batches.iter().map(Batch::connections).sum();
        self.shipped.waiting_bytes = self.batches.iter().map(|b| b.bytes).sum();
    }

    pub fn shipped(&self) -> Shipped {
        self.shipped
    }

    /// Queues a batch on disk (a file per table); past the bound it is dropped and
    /// counted.
    pub fn push(&mut self, rows: &[Row]) -> Result<(), SpoolError> {
        // Ids are wall-clock nanoseconds, kept rising: unique for this host across restarts.
        let id = u64::try_from(now_ns()).unwrap_or(0).max(self.last_id + 1);
        let parts: Vec<(Batch, Vec<u8>)> = encode_batch(&self.host, id, rows)
            .into_iter()
            .map(|(table, rows, body)| {
                let batch = Batch {
                    id,
                    table,
                    rows,
                    bytes: body.len() as u64,
                };
                (batch, body)
            })
            .collect();
        let bytes: u64 = parts.iter().map(|(b, _)| b.bytes).sum();
        if self.shipped.waiting_bytes.saturating_add(bytes) > self.max_bytes {
            if self.shipped.dropped == 0 {
                log::warn!(
                    "the spool {} is full ({} bytes): connections are dropped, and counted, until ClickHouse takes them",
                    self.dir.display(),
                    self.max_bytes
                );
            }
            self.shipped.dropped += parts.iter().map(|(b, _)| b.connections()).sum::<u64>();
            return Ok(());
        }
        let err = |e| SpoolError(self.dir.clone(), e);
        for (batch, body) in parts {
            let path = self.dir.join(batch.name());
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, &body).map_err(err)?;
            std::fs::rename(&tmp, &path).map_err(err)?;
            self.batches.push_back(batch);
        }
        self.last_id = id;
        self.count_waiting();
        Ok(())
    }

    /// Sends what waits, oldest first, unless a failure asked to pause; stops at the first
    /// failure. `force`: now, whatever the pause (the last try before exit).
    pub fn ship(&mut self, sink: &ClickHouse, force: bool) {
        if !force && Instant::now() < self.next_try {
            return;
        }
        while let Some(batch) = self.batches.front().cloned() {
            match self.send(sink, &batch) {
                Ok(found) => {
                    if let Some(why) = self.outage.take() {
                        log::info!("{} answers again (after: {why})", sink.url());
                    }
                    let _ = std::fs::remove_file(self.dir.join(batch.name()));
                    self.batches.pop_front();
                    self.in_doubt.remove(&(batch.id, batch.table));
                    self.shipped.rows += batch.connections();
                    self.shipped.batches += 1;
                    self.shipped.found += u64::from(found);
                    self.pause = FIRST_PAUSE;
                }
                Err(e) => {
                    self.shipped.failures += 1;
                    if self.outage.is_none() {
                        log::warn!(
                            "{e}; batches wait in {} and are retried",
                            self.dir.display()
                        );
                    }
                    self.outage = Some(e.to_string());
                    self.next_try = Instant::now() + self.pause;
                    self.pause = (self.pause * 2).min(MAX_PAUSE);
                    break;
                }
            }
        }
        self.count_waiting();
    }

    /// One batch: looked up first when in doubt. Ok(true): it was already there.
    fn send(&mut self, sink: &ClickHouse, batch: &Batch) -> Result<bool, ShipError> {
        if self.in_doubt.contains(&(batch.id, batch.table))
            && sink.has_batch(batch.table, &self.host, batch.id)?
        {
            return Ok(true);
        }
        let body = std::fs::read(self.dir.join(batch.name()))
            .map_err(|e| ShipError::Spool(SpoolError(self.dir.clone(), e)))?;
        // From here on a failure may have come after ClickHouse took it.
        self.in_doubt.insert((batch.id, batch.table));
        sink.insert(batch.table, &body)?;
        Ok(false)
    }
}

#[derive(Debug, thiserror::Error)]
enum ShipError {
    #[error(transparent)]
    ClickHouse(#[from] ClickHouseError),
    #[error(transparent)]
    Spool(SpoolError),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sockstat-spool-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn rows(n: usize) -> Vec<Row> {
        (0..n)
            .map(|i| {
                Row::Lifetime(crate::history::LifetimeRow {
                    end_ns: i as i64,
                    owner_source: "task".to_string(),
                    ..Default::default()
                })
            })
            .collect()
    }

    #[test]
    fn batches_wait_in_order_and_past_the_bound_are_counted() {
        let d = dir("bound");
        let one = encode_batch("h", 1, &rows(10))[0].2.len() as u64;
        let mut spool = Spool::open(&d, "h", 2 * one + one / 2).unwrap();
        for _ in 0..3 {
            spool.push(&rows(10)).unwrap();
        }
        let s = spool.shipped();
        assert_eq!((s.waiting, s.dropped, s.waiting_bytes), (20, 10, 2 * one));
        let ids: Vec<u64> = spool.batches.iter().map(|b| b.id).collect();
        assert!(ids[0] < ids[1]);
        // Nobody answers on port 9 (discard): the batches stay, and count one failure.
        let sink = ClickHouse::new("clickhouse://127.0.0.1:9/db".parse().unwrap());
        spool.ship(&sink, true);
        assert_eq!(spool.shipped().failures, 1);
        assert_eq!(spool.shipped().waiting, 20);
        // A new run finds them, in order, each to be looked up before it is sent.
        let again = Spool::open(&d, "h", u64::MAX).unwrap();
        assert_eq!(again.batches.iter().map(|b| b.id).collect::<Vec<_>>(), ids);
        assert_eq!(again.in_doubt.len(), 2);
        assert_eq!(again.shipped().waiting, 20);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
