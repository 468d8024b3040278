//! The embedded store: one SQLite file (`history.db`) in the `--store` directory, in WAL
//! mode, so a crash or power cut loses at most the batch being written and the file opens
//! cleanly afterwards. SQLite, through rusqlite with its bundled library: proven, embedded,
//! and one file to copy; no server to run.
//!
//! One row per connection's lifetime, indexed for what `history` asks: a time range, alone
//! or with the peer's address and port, the local port, or the owner.
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use super::{Row, address, endpoint, hostname};
use crate::procs::workload::Workload;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

/// The database's file name inside the store directory.
pub const FILE: &str = "history.db";
/// Bumped when the schema changes incompatibly; a store with another version is refused.
const SCHEMA_VERSION: i64 = 1;
/// What `meta.kind` says in a sockstat store.
const KIND: &str = "sockstat-history";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "{0}: not a sockstat store ({1}); it was left as it is: give another --store, or move it aside"
    )]
    NotAStore(PathBuf, String),
    #[error("{0}: no store there (nothing recorded yet: start `sockstat record --store {1}`)")]
    Missing(PathBuf, String),
    #[error("{0}: {1}")]
    Io(PathBuf, #[source] std::io::Error),
    #[error("{0}: {1}")]
    Sqlite(PathBuf, #[source] rusqlite::Error),
}

/// One recorded connection: what `trace --lifetimes` prints, plus the owner's container.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct LifetimeRow {
    /// When it closed, and when it opened (None: before recording began), in wall-clock
    /// nanoseconds since the epoch.
    pub end_ns: i64,
    pub start_ns: Option<i64>,
    pub netns: u32,
    pub local: Option<SocketAddr>,
    pub remote: Option<SocketAddr>,
    pub pid: Option<u32>,
    pub comm: Option<String>,
    pub owner_source: String,
    pub cause: Option<String>,
    pub bytes_acked: u64,
    pub bytes_received: u64,
    pub connect_ns: Option<u64>,
    pub handshake_rtt_us: Option<u32>,
    pub retransmits: u32,
    pub srtt_us: u32,
    pub min_rtt_us: u32,
    pub snd_cwnd: u32,
    pub delivery_rate: u64,
    pub cookie: u64,
    /// The owner's container's names, where known.
    pub names: Workload,
}

/// One state change (`record --transitions`): what `trace` prints for it.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct TransitionRow {
    /// When, in wall-clock nanoseconds since the epoch.
    pub ts_ns: i64,
    pub cookie: u64,
    pub netns: u32,
    pub local: Option<SocketAddr>,
    pub remote: Option<SocketAddr>,
    /// The kernel's state numbers.
    pub old: u8,
    pub new: u8,
    pub prev_state_ns: Option<u64>,
    pub pid: Option<u32>,
    pub comm: Option<String>,
    pub owner_source: String,
    /// Inferred by sockstat rather than seen in the kernel.
    pub synthesized: bool,
    pub cause: Option<String>,
    pub names: Workload,
}

/// The transitions' table: added to stores made before it, since nothing else changed.
const TRANSITIONS_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS transitions (
    ts_ns INTEGER NOT NULL,
    cookie INTEGER NOT NULL,
    netns INTEGER NOT NULL,
    family INTEGER NOT NULL,
    local_addr BLOB NOT NULL,
    local_port INTEGER NOT NULL,
    remote_addr BLOB NOT NULL,
    remote_port INTEGER NOT NULL,
    old INTEGER NOT NULL,
    new INTEGER NOT NULL,
    prev_state_ns INTEGER,
    pid INTEGER,
    comm TEXT,
    owner_source TEXT NOT NULL,
    synthesized INTEGER NOT NULL,
    cause TEXT,
    container TEXT,
    image TEXT,
    pod TEXT,
    namespace TEXT
);
CREATE INDEX IF NOT EXISTS transitions_by_time ON transitions (ts_ns);
CREATE INDEX IF NOT EXISTS transitions_by_peer ON transitions (remote_addr, remote_port, ts_ns);
CREATE INDEX IF NOT EXISTS transitions_by_cookie ON transitions (cookie, ts_ns);
";

/// The columns `TransitionRow` is read from, in order.
pub const TRANSITION_COLUMNS: &str = "ts_ns, cookie, netns, family, local_addr, local_port, \
    remote_addr, remote_port, old, new, prev_state_ns, pid, comm, owner_source, synthesized, \
    cause, container, image, pod, namespace";

const SCHEMA: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE lifetimes (
    end_ns INTEGER NOT NULL,
    start_ns INTEGER,
    netns INTEGER NOT NULL,
    family INTEGER NOT NULL,
    local_addr BLOB NOT NULL,
    local_port INTEGER NOT NULL,
    remote_addr BLOB NOT NULL,
    remote_port INTEGER NOT NULL,
    pid INTEGER,
    comm TEXT,
    owner_source TEXT NOT NULL,
    cause TEXT,
    bytes_acked INTEGER NOT NULL,
    bytes_received INTEGER NOT NULL,
    connect_ns INTEGER,
    handshake_rtt_us INTEGER,
    retransmits INTEGER NOT NULL,
    srtt_us INTEGER NOT NULL,
    min_rtt_us INTEGER NOT NULL,
    snd_cwnd INTEGER NOT NULL,
    delivery_rate INTEGER NOT NULL,
    cookie INTEGER NOT NULL,
    container TEXT,
    image TEXT,
    pod TEXT,
    namespace TEXT
);
CREATE INDEX lifetimes_by_time ON lifetimes (end_ns);
CREATE INDEX lifetimes_by_peer ON lifetimes (remote_addr, remote_port, end_ns);
CREATE INDEX lifetimes_by_local_port ON lifetimes (local_port, end_ns);
CREATE INDEX lifetimes_by_pid ON lifetimes (pid, end_ns);
";

/// The columns `LifetimeRow` is read from, in order.
pub const COLUMNS: &str = "end_ns, start_ns, netns, family, local_addr, local_port, remote_addr, \
    remote_port, pid, comm, owner_source, cause, bytes_acked, bytes_received, connect_ns, \
    handshake_rtt_us, retransmits, srtt_us, min_rtt_us, snd_cwnd, delivery_rate, cookie, \
    container, image, pod, namespace";

pub struct Store {
    conn: Connection,
    file: PathBuf,
}

impl Store {
    /// Opens the store in directory `dir` to record into it, making both if need be.
    pub fn create(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Io(dir.to_path_buf(), e))?;
        let file = dir.join(FILE);
        let fresh = !file.exists();
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&file, flags).map_err(|e| not_a_store(&file, e))?;
        let store = Store { conn, file };
        if fresh {
            store.initialise()?;
        } else {
            store.check()?;
        }
        store.tune()?;
        store
            .conn
            .execute_batch(TRANSITIONS_SCHEMA)
            .map_err(|e| store.err(e))?;
        Ok(store)
    }

    /// Opens an existing store to read from it.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let file = if dir.is_file() {
            dir.to_path_buf()
        } else {
            dir.join(FILE)
        };
        if !file.exists() {
            return Err(StoreError::Missing(file, dir.display().to_string()));
        }
        // Read-write, not read-only: a WAL file left by a crash is recovered on open.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&file, flags).map_err(|e| not_a_store(&file, e))?;
        let store = Store { conn, file };
        store.check()?;
        store
            .conn
            .busy_timeout(Duration::from_secs(5))
            .map_err(|e| store.err(e))?;
        Ok(store)
    }

    fn err(&self, e: rusqlite::Error) -> StoreError {
        StoreError::Sqlite(self.file.clone(), e)
    }

    /// A new file: incremental vacuum must be chosen before the first table.
    fn initialise(&self) -> Result<(), StoreError> {
        self.conn
            .execute_batch("PRAGMA auto_vacuum = INCREMENTAL;")
            .map_err(|e| self.err(e))?;
        let tx = self.conn.unchecked_transaction().map_err(|e| self.err(e))?;
        tx.execute_batch(SCHEMA).map_err(|e| self.err(e))?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('kind', ?1), ('schema', ?2), ('host', ?3)",
            params![KIND, SCHEMA_VERSION.to_string(), hostname()],
        )
        .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))
    }

    /// An existing file must be a sockstat store of this schema; it is never rewritten.
    fn check(&self) -> Result<(), StoreError> {
        let kind: Option<String> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'kind'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| not_a_store(&self.file, e))?;
        if kind.as_deref() != Some(KIND) {
            return Err(StoreError::NotAStore(
                self.file.clone(),
                "no sockstat history in it".to_string(),
            ));
        }
        let version: Option<String> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'schema'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| not_a_store(&self.file, e))?;
        if version.as_deref() != Some(&SCHEMA_VERSION.to_string()) {
            return Err(StoreError::NotAStore(
                self.file.clone(),
                format!(
                    "schema {} where this sockstat reads {SCHEMA_VERSION}",
                    version.unwrap_or_default()
                ),
            ));
        }
        Ok(())
    }

    /// WAL: a commit is one append, readers do not block the recorder, and a crash leaves
    /// the last committed batch readable. NORMAL sync: a power cut may lose the latest
    /// commits, never the file. A checkpoint every 256 pages, and the log cut back to 4 MiB
    /// after it, so the log does not keep the size of the busiest burst.
    fn tune(&self) -> Result<(), StoreError> {
        self.conn
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                 PRAGMA wal_autocheckpoint = 256; PRAGMA journal_size_limit = 4194304;",
            )
            .map_err(|e| self.err(e))?;
        self.conn
            .busy_timeout(Duration::from_secs(5))
            .map_err(|e| self.err(e))
    }

    /// Writes a batch in one transaction.
    pub fn insert(&mut self, rows: &[Row]) -> Result<(), StoreError> {
        let file = self.file.clone();
        let e = |e| StoreError::Sqlite(file.clone(), e);
        let tx = self.conn.transaction().map_err(e)?;
        {
            let mut lifetime = tx
                .prepare_cached(&format!(
                    "INSERT INTO lifetimes ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, \
                     ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, \
                     ?24, ?25, ?26)"
                ))
                .map_err(e)?;
            let mut transition = tx
                .prepare_cached(&format!(
                    "INSERT INTO transitions ({TRANSITION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, \
                     ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)"
                ))
                .map_err(e)?;
            for row in rows {
                match row {
                    Row::Lifetime(r) => {
                        let (family, local_addr, local_port) = endpoint(r.local);
                        let (_, remote_addr, remote_port) = endpoint(r.remote);
                        lifetime
                            .execute(params![
                                r.end_ns,
                                r.start_ns,
                                r.netns,
                                family,
                                &local_addr[..],
                                local_port,
                                &remote_addr[..],
                                remote_port,
                                r.pid,
                                r.comm,
                                r.owner_source,
                                r.cause,
                                r.bytes_acked as i64,
                                r.bytes_received as i64,
                                r.connect_ns.map(|n| n as i64),
                                r.handshake_rtt_us,
                                r.retransmits,
                                r.srtt_us,
                                r.min_rtt_us,
                                r.snd_cwnd,
                                r.delivery_rate as i64,
                                r.cookie as i64,
                                r.names.container,
                                r.names.image,
                                r.names.pod,
                                r.names.namespace,
                            ])
                            .map_err(e)?;
                    }
                    Row::Transition(t) => {
                        let (family, local_addr, local_port) = endpoint(t.local);
                        let (_, remote_addr, remote_port) = endpoint(t.remote);
                        transition
                            .execute(params![
                                t.ts_ns,
                                t.cookie as i64,
                                t.netns,
                                family,
                                &local_addr[..],
                                local_port,
                                &remote_addr[..],
                                remote_port,
                                t.old,
                                t.new,
                                t.prev_state_ns.map(|n| n as i64),
                                t.pid,
                                t.comm,
                                t.owner_source,
                                t.synthesized,
                                t.cause,
                                t.names.container,
                                t.names.image,
                                t.names.pod,
                                t.names.namespace,
                            ])
                            .map_err(e)?;
                    }
                }
            }
        }
        tx.commit().map_err(e)
    }

    /// The database and its write-ahead log, in bytes.
    pub fn size(&self) -> u64 {
        let len = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
        len(&self.file) + len(&wal_of(&self.file))
    }

    /// Rows in `table` (lifetimes or transitions).
    pub fn rows(&self, table: &str) -> Result<u64, StoreError> {
        self.conn
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n.max(0) as u64)
            .map_err(|e| self.err(e))
    }

    /// Deletes what closed (or changed state) before `before_ns`; returns how many
    /// connections went.
    pub fn expire(&mut self, before_ns: i64) -> Result<u64, StoreError> {
        let n = self
            .conn
            .execute("DELETE FROM lifetimes WHERE end_ns < ?1", [before_ns])
            .map_err(|e| self.err(e))?;
        let changes = self
            .conn
            .execute("DELETE FROM transitions WHERE ts_ns < ?1", [before_ns])
            .map_err(|e| self.err(e))?;
        if n + changes > 0 {
            self.shrink()?;
        }
        Ok(n as u64)
    }

    /// Keeps the store within `max_bytes` (database and log): deletes the oldest rows, in
    /// proportion to how far over it is (and a tenth more, so it is not done every batch),
    /// then gives the pages back to the file system. Returns how many rows went.
    pub fn bound(&mut self, max_bytes: u64) -> Result<u64, StoreError> {
        if self.size() <= max_bytes {
            return Ok(0);
        }
        // The log first: it may hold most of it.
        self.checkpoint()?;
        let mut gone = 0;
        // Pages freed in an index are not all given back at once: a few rounds at most.
        for _ in 0..8 {
            let size = self.size();
            let rows = (self.rows("lifetimes")?, self.rows("transitions")?);
            if size <= max_bytes || rows == (0, 0) {
                break;
            }
            // The same share of each table, the oldest first.
            let share = ((size - max_bytes) as f64 / size as f64 + 0.1).min(1.0);
            let doomed = |n: u64| ((n as f64 * share).ceil() as u64).max(1) as i64;
            gone += self
                .conn
                .execute(
                    "DELETE FROM lifetimes WHERE rowid IN \
                     (SELECT rowid FROM lifetimes ORDER BY end_ns LIMIT ?1)",
                    [doomed(rows.0)],
                )
                .map_err(|e| self.err(e))? as u64;
            self.conn
                .execute(
                    "DELETE FROM transitions WHERE rowid IN \
                     (SELECT rowid FROM transitions ORDER BY ts_ns LIMIT ?1)",
                    [doomed(rows.1)],
                )
                .map_err(|e| self.err(e))?;
            self.shrink()?;
        }
        Ok(gone)
    }

    /// Returns freed pages to the file system and empties the log.
    fn shrink(&mut self) -> Result<(), StoreError> {
        // The pragma frees one page per step: stepped to the end.
        let mut vacuum = self
            .conn
            .prepare("PRAGMA incremental_vacuum")
            .map_err(|e| StoreError::Sqlite(self.file.clone(), e))?;
        let mut steps = vacuum
            .query([])
            .map_err(|e| StoreError::Sqlite(self.file.clone(), e))?;
        while steps
            .next()
            .map_err(|e| StoreError::Sqlite(self.file.clone(), e))?
            .is_some()
        {}
        drop(steps);
        drop(vacuum);
        self.checkpoint()
    }

    fn checkpoint(&self) -> Result<(), StoreError> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(|e| self.err(e))
    }

    /// State changes matching `condition` (as `query`'s), oldest first.
    pub fn query_transitions(
        &self,
        condition: &str,
        params: &[rusqlite::types::Value],
    ) -> Result<Vec<TransitionRow>, StoreError> {
        let sql = format!(
            "SELECT {TRANSITION_COLUMNS} FROM transitions WHERE {condition} ORDER BY ts_ns"
        );
        let mut stmt = self.conn.prepare(&sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(params), transition_row_of)
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Rows matching `sql` (a WHERE clause over the columns, with `?N` parameters), oldest
    /// first.
    pub fn query(
        &self,
        condition: &str,
        params: &[rusqlite::types::Value],
    ) -> Result<Vec<LifetimeRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM lifetimes WHERE {condition} ORDER BY end_ns");
        let mut stmt = self.conn.prepare(&sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(params), row_of)
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// The host the store was made on.
    #[cfg(test)]
    pub fn host(&self) -> Result<String, StoreError> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = 'host'", [], |r| {
                r.get(0)
            })
            .map_err(|e| self.err(e))
    }
}

/// A file that is there but not SQLite, or not ours, is reported as such and left alone.
fn not_a_store(file: &Path, e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt) => {
            StoreError::NotAStore(file.to_path_buf(), e.to_string())
        }
        _ if matches!(e, rusqlite::Error::SqliteFailure(..))
            && e.to_string().contains("no such table") =>
        {
            StoreError::NotAStore(file.to_path_buf(), "no sockstat history in it".to_string())
        }
        _ => StoreError::Sqlite(file.to_path_buf(), e),
    }
}

fn wal_of(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// The four name columns from `first` on.
fn names_at(r: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Workload> {
    Ok(Workload {
        container: r.get(first)?,
        image: r.get(first + 1)?,
        pod: r.get(first + 2)?,
        namespace: r.get(first + 3)?,
    })
}

fn transition_row_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<TransitionRow> {
    let family: u8 = r.get(3)?;
    let local: Vec<u8> = r.get(4)?;
    let remote: Vec<u8> = r.get(6)?;
    Ok(TransitionRow {
        ts_ns: r.get(0)?,
        cookie: r.get::<_, i64>(1)? as u64,
        netns: r.get(2)?,
        local: address(family, &local, r.get(5)?),
        remote: address(family, &remote, r.get(7)?),
        old: r.get(8)?,
        new: r.get(9)?,
        prev_state_ns: r.get::<_, Option<i64>>(10)?.map(|n| n.max(0) as u64),
        pid: r.get(11)?,
        comm: r.get(12)?,
        owner_source: r.get(13)?,
        synthesized: r.get(14)?,
        cause: r.get(15)?,
        names: names_at(r, 16)?,
    })
}

fn row_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<LifetimeRow> {
    let family: u8 = r.get(3)?;
    let local: Vec<u8> = r.get(4)?;
    let remote: Vec<u8> = r.get(6)?;
    Ok(LifetimeRow {
        end_ns: r.get(0)?,
        start_ns: r.get(1)?,
        netns: r.get(2)?,
        local: address(family, &local, r.get(5)?),
        remote: address(family, &remote, r.get(7)?),
        pid: r.get(8)?,
        comm: r.get(9)?,
        owner_source: r.get(10)?,
        cause: r.get(11)?,
        bytes_acked: r.get::<_, i64>(12)?.max(0) as u64,
        bytes_received: r.get::<_, i64>(13)?.max(0) as u64,
        connect_ns: r.get::<_, Option<i64>>(14)?.map(|n| n.max(0) as u64),
        handshake_rtt_us: r.get(15)?,
        retransmits: r.get(16)?,
        srtt_us: r.get(17)?,
        min_rtt_us: r.get(18)?,
        snd_cwnd: r.get(19)?,
        delivery_rate: r.get::<_, i64>(20)?.max(0) as u64,
        cookie: r.get::<_, i64>(21)? as u64,
        names: names_at(r, 22)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(end_ns: i64, remote: &str) -> LifetimeRow {
        let local = if remote.starts_with('[') {
            "[2001:db8::1]:40000"
        } else {
            "10.0.0.1:40000"
        };
        LifetimeRow {
            end_ns,
            start_ns: Some(end_ns - 1_000),
            netns: 4026531840,
            local: local.parse().ok(),
            remote: remote.parse().ok(),
            pid: Some(42),
            comm: Some("curl".to_string()),
            owner_source: "task".to_string(),
            cause: Some("ECONNREFUSED".to_string()),
            names: Workload {
                pod: Some("api".to_string()),
                ..Workload::default()
            },
            ..LifetimeRow::default()
        }
    }

    fn temp(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sockstat-store-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn rows_come_back_as_written_and_age_out() {
        let dir = temp("rows");
        let mut store = Store::create(&dir).unwrap();
        let rows = vec![row(1_000, "10.0.3.7:5432"), row(2_000, "[2001:db8::7]:443")];
        let change = TransitionRow {
            ts_ns: 1_200,
            cookie: u64::MAX,
            local: "10.0.0.1:40000".parse().ok(),
            remote: "10.0.3.7:5432".parse().ok(),
            old: 2,
            new: 7,
            prev_state_ns: Some(300),
            owner_source: "task".to_string(),
            synthesized: true,
            cause: Some("ECONNREFUSED".to_string()),
            ..TransitionRow::default()
        };
        let mut written: Vec<Row> = rows.iter().cloned().map(Row::Lifetime).collect();
        written.push(Row::Transition(change.clone()));
        store.insert(&written).unwrap();
        drop(store);
        let store = Store::open(&dir).unwrap();
        assert_eq!(store.query("1", &[]).unwrap(), rows);
        assert_eq!(store.query_transitions("1", &[]).unwrap(), vec![change]);
        assert_eq!(store.host().unwrap(), hostname());
        drop(store);
        let mut store = Store::create(&dir).unwrap();
        assert_eq!(store.expire(1_500).unwrap(), 1);
        assert_eq!(store.query("1", &[]).unwrap(), rows[1..]);
        assert!(store.query_transitions("1", &[]).unwrap().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_that_is_not_a_store_is_refused_and_left_alone() {
        let dir = temp("foreign");
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(FILE);
        std::fs::write(&file, b"not sqlite at all, but somebody's file").unwrap();
        for result in [Store::create(&dir).err(), Store::open(&dir).err()] {
            assert!(
                matches!(result, Some(StoreError::NotAStore(..))),
                "{result:?}"
            );
        }
        assert_eq!(
            std::fs::read(&file).unwrap(),
            b"not sqlite at all, but somebody's file"
        );
        assert!(matches!(
            Store::open(&temp("none")),
            Err(StoreError::Missing(..))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_bound_keeps_the_newest() {
        let dir = temp("bound");
        let mut store = Store::create(&dir).unwrap();
        for batch in 0..20 {
            let rows: Vec<Row> = (0..500)
                .map(|i| Row::Lifetime(row(batch * 1_000 + i, "10.0.3.7:5432")))
                .collect();
            store.insert(&rows).unwrap();
            store.bound(256 * 1024).unwrap();
            assert!(store.size() <= 256 * 1024, "{}", store.size());
        }
        let kept = store.query("1", &[]).unwrap();
        assert!(!kept.is_empty() && kept.len() < 10_000);
        assert_eq!(kept.last().map(|r| r.end_ns), Some(19 * 1_000 + 499));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
