//! The fleet's store: ClickHouse, through its HTTP interface, in one MergeTree table ordered
//! by (host, end_ns) with the embedded store's columns plus `host` and `batch`.
//!
//! Rows travel as RowBinary both ways: exact integers and raw 16-byte addresses, with no
//! text escaping. It is written here (a few dozen lines) because the official `clickhouse`
//! crate brings hyper and a runtime of its own and speaks settings that older servers, such
//! as Debian's 18.16, refuse; ureq carries the HTTP.
//!
//! A batch is one INSERT of at most a few thousand rows: one block, so ClickHouse takes all
//! of it or none. Each row carries its batch's id, and a batch whose first attempt ended in
//! doubt is looked up before it is sent again: every batch arrives exactly once.
use std::{io::Read as _, net::SocketAddr, str::FromStr, time::Duration};

use super::{LifetimeRow, Row, TransitionRow, address, endpoint};
use crate::procs::workload::Workload;

const DEFAULT_PORT: u16 = 8123;
/// A table's partition: one day of wall-clock nanoseconds.
const DAY_NS: i64 = 86_400_000_000_000;

/// The two tables, in the database the URL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    Lifetimes,
    /// `record --transitions`.
    Transitions,
}

impl Table {
    pub const ALL: [Table; 2] = [Table::Lifetimes, Table::Transitions];

    pub fn name(self) -> &'static str {
        match self {
            Table::Lifetimes => "lifetimes",
            Table::Transitions => "transitions",
        }
    }

    pub fn from_name(name: &str) -> Option<Table> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    fn columns(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Table::Lifetimes => LIFETIME_COLUMNS,
            Table::Transitions => TRANSITION_COLUMNS,
        }
    }

    /// The time the table is ordered by, after the host.
    fn time(self) -> &'static str {
        match self {
            Table::Lifetimes => "end_ns",
            Table::Transitions => "ts_ns",
        }
    }

    /// The columns a query reads: all but `batch`.
    fn read(self) -> String {
        self.columns()
            .iter()
            .map(|(n, _)| *n)
            .filter(|&n| n != "batch")
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A state change's columns, in the order `encode_transition` writes them and
/// `decode_transition` reads them (without `batch`).
const TRANSITION_COLUMNS: &[(&str, &str)] = &[
    ("host", "String"),
    ("batch", "UInt64"),
    ("ts_ns", "Int64"),
    ("cookie", "UInt64"),
    ("netns", "UInt32"),
    ("family", "UInt8"),
    ("local_addr", "FixedString(16)"),
    ("local_port", "UInt16"),
    ("remote_addr", "FixedString(16)"),
    ("remote_port", "UInt16"),
    ("old", "UInt8"),
    ("new", "UInt8"),
    ("prev_state_ns", "Nullable(UInt64)"),
    ("pid", "Nullable(UInt32)"),
    ("comm", "Nullable(String)"),
    ("owner_source", "String"),
    ("synthesized", "UInt8"),
    ("cause", "Nullable(String)"),
    ("container", "Nullable(String)"),
    ("image", "Nullable(String)"),
    ("pod", "Nullable(String)"),
    ("namespace", "Nullable(String)"),
];

/// Columns and their ClickHouse types, in the order rows are encoded (`encode_row`) and
/// decoded (`decode_row`, without `batch`).
const LIFETIME_COLUMNS: &[(&str, &str)] = &[
    ("host", "String"),
    ("batch", "UInt64"),
    ("end_ns", "Int64"),
    ("start_ns", "Nullable(Int64)"),
    ("netns", "UInt32"),
    ("family", "UInt8"),
    ("local_addr", "FixedString(16)"),
    ("local_port", "UInt16"),
    ("remote_addr", "FixedString(16)"),
    ("remote_port", "UInt16"),
    ("pid", "Nullable(UInt32)"),
    ("comm", "Nullable(String)"),
    ("owner_source", "String"),
    ("cause", "Nullable(String)"),
    ("bytes_acked", "UInt64"),
    ("bytes_received", "UInt64"),
    ("connect_ns", "Nullable(UInt64)"),
    ("handshake_rtt_us", "Nullable(UInt32)"),
    ("retransmits", "UInt32"),
    ("srtt_us", "UInt32"),
    ("min_rtt_us", "UInt32"),
    ("snd_cwnd", "UInt32"),
    ("delivery_rate", "UInt64"),
    ("cookie", "UInt64"),
    ("container", "Nullable(String)"),
    ("image", "Nullable(String)"),
    ("pod", "Nullable(String)"),
    ("namespace", "Nullable(String)"),
];

#[derive(Debug, thiserror::Error)]
pub enum ClickHouseError {
    #[error(
        "{0}: not a ClickHouse URL ({1}); write clickhouse://[USER[:PASSWORD]@]HOST[:PORT][/DATABASE]"
    )]
    Url(String, String),
    #[error("{0}: ClickHouse does not answer ({1})")]
    Unreachable(String, String),
    #[error("{0}: ClickHouse refused it (HTTP {1}): {2}")]
    Refused(String, u16, String),
    #[error("{0}: ClickHouse's answer is not what was asked for ({1})")]
    Garbled(String, String),
}

impl ClickHouseError {
    /// Whether sending again later may succeed (the server down or restarting), as opposed
    /// to a request it will refuse every time.
    pub fn is_transient(&self) -> bool {
        match self {
            ClickHouseError::Unreachable(..) => true,
            // 5xx: overloaded, shutting down, out of memory.
            ClickHouseError::Refused(_, status, _) => *status >= 500,
            _ => false,
        }
    }
}

/// `clickhouse://[USER[:PASSWORD]@]HOST[:PORT][/DATABASE]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    /// `http://HOST:PORT/`.
    base: String,
    pub database: String,
    user: Option<String>,
    password: Option<String>,
    /// As given, without the password: for messages.
    shown: String,
}

impl FromStr for Url {
    type Err = ClickHouseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| ClickHouseError::Url(s.to_string(), why.to_string());
        let rest = s
            .strip_prefix("clickhouse://")
            .ok_or_else(|| bad("it starts with clickhouse://"))?;
        let (authority, database) = rest.split_once('/').unwrap_or((rest, ""));
        let database = match database.trim_end_matches('/') {
            "" => "default",
            d => d,
        };
        // Written into the SQL as a name: letters, digits and underscores only.
        if !database
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(bad("a database name is letters, digits and _"));
        }
        let (credentials, host_port) = match authority.rsplit_once('@') {
            Some((c, h)) => (Some(c), h),
            None => (None, authority),
        };
        let (user, password) = match credentials {
            None => (None, None),
            Some(c) => match c.split_once(':') {
                Some((u, p)) => (Some(u.to_string()), Some(p.to_string())),
                None => (Some(c.to_string()), None),
            },
        };
        let (host, port) = split_host_port(host_port).ok_or_else(|| bad("HOST[:PORT]"))?;
        let shown = format!(
            "clickhouse://{}{host_port}/{database}",
            user.as_deref()
                .map_or_else(String::new, |u| format!("{u}@"))
        );
        Ok(Url {
            base: format!("http://{host}:{port}/"),
            database: database.to_string(),
            user,
            password,
            shown,
        })
    }
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`, the host kept as it is written in a URL.
fn split_host_port(s: &str) -> Option<(&str, u16)> {
    let (host, port) = if let Some(v6) = s.strip_prefix('[') {
        let end = v6.find(']')?;
        let host = &s[..end + 2];
        match &v6[end + 1..] {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':')?)),
        }
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() || host.contains(['/', '?', '#', ' ']) {
        return None;
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => p.parse().ok().filter(|&p| p != 0)?,
    };
    Some((host, port))
}

/// A connection to one ClickHouse server's HTTP interface.
pub struct ClickHouse {
    url: Url,
    agent: ureq::Agent,
}

impl ClickHouse {
    pub fn new(url: Url) -> ClickHouse {
        let agent = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(3)))
            .timeout_global(Some(Duration::from_secs(60)))
            .http_status_as_error(false)
            .build()
            .into();
        ClickHouse { url, agent }
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    /// `database.table`.
    fn table(&self, table: Table) -> String {
        format!("{}.{}", self.url.database, table.name())
    }

    /// Runs `query` with `body` after it (the data of an INSERT); returns the answer.
    fn post(&self, query: &str, body: &[u8]) -> Result<Vec<u8>, ClickHouseError> {
        let mut request = self.agent.post(&self.url.base).query("query", query);
        if let Some(user) = &self.url.user {
            use base64::Engine as _;
            let pair = format!("{user}:{}", self.url.password.as_deref().unwrap_or(""));
            let basic = base64::engine::general_purpose::STANDARD.encode(pair);
            request = request.header("Authorization", &format!("Basic {basic}"));
        }
        let unreachable = |e: &dyn std::fmt::Display| {
            ClickHouseError::Unreachable(self.url.to_string(), e.to_string())
        };
        let response = request.send(body).map_err(|e| unreachable(&e))?;
        let status = response.status().as_u16();
        let mut answer = Vec::new();
        response
            .into_body()
            .into_reader()
            .read_to_end(&mut answer)
            .map_err(|e| unreachable(&e))?;
        if status != 200 {
            let text = String::from_utf8_lossy(&answer);
            return Err(ClickHouseError::Refused(
                self.url.to_string(),
                status,
                text.lines().next().unwrap_or("").trim().to_string(),
            ));
        }
        Ok(answer)
    }

    /// Makes the database and the table where they are missing; an existing table is kept
    /// as it is.
    pub fn ensure_schema(&self) -> Result<(), ClickHouseError> {
        self.post(
            &format!("CREATE DATABASE IF NOT EXISTS {}", self.url.database),
            &[],
        )?;
        for table in Table::ALL {
            let columns = table
                .columns()
                .iter()
                .map(|(name, kind)| format!("{name} {kind}"))
                .collect::<Vec<_>>()
                .join(", ");
            let time = table.time();
            // A partition a day: old days are dropped whole (`drop_days_before`).
            self.post(
                &format!(
                    "CREATE TABLE IF NOT EXISTS {} ({columns}) ENGINE = MergeTree() \
                     PARTITION BY intDiv({time}, {DAY_NS}) ORDER BY (host, {time})",
                    self.table(table)
                ),
                &[],
            )?;
        }
        Ok(())
    }

    /// Drops every table's day partitions that end at or before `cutoff_ns` (wall clock):
    /// retention in whole days, which any ClickHouse can do (TTL came in 19.6; Debian has
    /// 18.16). Returns the rows dropped. Every recorder of a fleet may do this; a partition
    /// another one dropped first is simply no longer listed.
    pub fn drop_days_before(&self, cutoff_ns: i64) -> Result<u64, ClickHouseError> {
        let first_kept = cutoff_ns.div_euclid(DAY_NS);
        let mut dropped = 0;
        for table in Table::ALL {
            let answer = self.post(
                &format!(
                    "SELECT partition, sum(rows) FROM system.parts WHERE database = {} \
                     AND table = {} AND active GROUP BY partition FORMAT TabSeparated",
                    literal(&self.url.database),
                    literal(table.name())
                ),
                &[],
            )?;
            let text = String::from_utf8_lossy(&answer);
            for line in text.lines() {
                let parsed = line.split_once('\t').and_then(|(day, rows)| {
                    Some((day.parse::<i64>().ok()?, rows.parse::<u64>().ok()?))
                });
                let Some((day, rows)) = parsed else {
                    return Err(ClickHouseError::Garbled(
                        self.url.to_string(),
                        line.to_string(),
                    ));
                };
                if day < first_kept {
                    self.post(
                        &format!("ALTER TABLE {} DROP PARTITION {day}", self.table(table)),
                        &[],
                    )?;
                    dropped += rows;
                }
            }
        }
        Ok(dropped)
    }

    /// Inserts one table's part of a batch, as `encode_batch` made it.
    pub fn insert(&self, table: Table, rows: &[u8]) -> Result<(), ClickHouseError> {
        let names = table.columns().iter().map(|(n, _)| *n).collect::<Vec<_>>();
        self.post(
            &format!(
                "INSERT INTO {} ({}) FORMAT RowBinary",
                self.table(table),
                names.join(", ")
            ),
            rows,
        )
        .map(drop)
    }

    /// Whether batch `id` of `host` is in `table`: an insert that ended in doubt.
    pub fn has_batch(&self, table: Table, host: &str, id: u64) -> Result<bool, ClickHouseError> {
        let answer = self.post(
            &format!(
                "SELECT count() FROM {} WHERE host = {} AND batch = {id} FORMAT TabSeparated",
                self.table(table),
                literal(host)
            ),
            &[],
        )?;
        let text = String::from_utf8_lossy(&answer);
        text.trim()
            .parse::<u64>()
            .map(|n| n > 0)
            .map_err(|_| ClickHouseError::Garbled(self.url.to_string(), text.to_string()))
    }

    /// `table`'s rows matching `condition` (a WHERE clause over the columns, its literals
    /// written in), oldest first, each decoded by `decode`.
    fn select<T>(
        &self,
        table: Table,
        condition: &str,
        decode: impl Fn(&mut Input<'_>) -> Option<T>,
    ) -> Result<Vec<T>, ClickHouseError> {
        let answer = self.post(
            &format!(
                "SELECT {} FROM {} WHERE {condition} ORDER BY {}, host FORMAT RowBinary",
                table.read(),
                self.table(table),
                table.time()
            ),
            &[],
        )?;
        let mut input = Input(&answer);
        let mut rows = Vec::new();
        while !input.0.is_empty() {
            let row = decode(&mut input).ok_or_else(|| {
                ClickHouseError::Garbled(self.url.to_string(), "a row cut short".to_string())
            })?;
            rows.push(row);
        }
        Ok(rows)
    }

    /// Connections matching `condition`, each with the host that recorded it.
    pub fn query(&self, condition: &str) -> Result<Vec<(String, LifetimeRow)>, ClickHouseError> {
        self.select(Table::Lifetimes, condition, decode_row)
    }

    /// State changes matching `condition`, each with the host that recorded it.
    pub fn query_transitions(
        &self,
        condition: &str,
    ) -> Result<Vec<(String, TransitionRow)>, ClickHouseError> {
        self.select(Table::Transitions, condition, decode_transition)
    }
}

/// A string as a ClickHouse literal: quoted, its quotes and backslashes escaped.
pub fn literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// A batch as INSERT bodies, one per table that has rows in it: (table, rows, body).
pub fn encode_batch(host: &str, id: u64, rows: &[Row]) -> Vec<(Table, u64, Vec<u8>)> {
    let mut parts: Vec<(Table, u64, Vec<u8>)> = Vec::new();
    for row in rows {
        let table = match row {
            Row::Lifetime(_) => Table::Lifetimes,
            Row::Transition(_) => Table::Transitions,
        };
        let at = match parts.iter().position(|p| p.0 == table) {
            Some(at) => at,
            None => {
                parts.push((table, 0, Vec::with_capacity(rows.len() * 160)));
                parts.len() - 1
            }
        };
        let part = &mut parts[at];
        part.1 += 1;
        match row {
            Row::Lifetime(l) => encode_row(&mut part.2, host, id, l),
            Row::Transition(t) => encode_transition(&mut part.2, host, id, t),
        }
    }
    parts.sort_by_key(|p| p.0);
    parts
}

fn encode_transition(out: &mut Vec<u8>, host: &str, batch: u64, t: &TransitionRow) {
    string(out, host);
    out.extend_from_slice(&batch.to_le_bytes());
    out.extend_from_slice(&t.ts_ns.to_le_bytes());
    out.extend_from_slice(&t.cookie.to_le_bytes());
    out.extend_from_slice(&t.netns.to_le_bytes());
    encode_ends(out, t.local, t.remote);
    out.push(t.old);
    out.push(t.new);
    nullable(out, t.prev_state_ns, |o, v| {
        o.extend_from_slice(&v.to_le_bytes())
    });
    nullable(out, t.pid, |o, v| o.extend_from_slice(&v.to_le_bytes()));
    nullable(out, t.comm.as_deref(), string);
    string(out, &t.owner_source);
    out.push(u8::from(t.synthesized));
    nullable(out, t.cause.as_deref(), string);
    let n = &t.names;
    for name in [&n.container, &n.image, &n.pod, &n.namespace] {
        nullable(out, name.as_deref(), string);
    }
}

fn encode_row(out: &mut Vec<u8>, host: &str, batch: u64, r: &LifetimeRow) {
    string(out, host);
    out.extend_from_slice(&batch.to_le_bytes());
    out.extend_from_slice(&r.end_ns.to_le_bytes());
    nullable(out, r.start_ns, |o, v| {
        o.extend_from_slice(&v.to_le_bytes())
    });
    out.extend_from_slice(&r.netns.to_le_bytes());
    encode_ends(out, r.local, r.remote);
    nullable(out, r.pid, |o, v| o.extend_from_slice(&v.to_le_bytes()));
    nullable(out, r.comm.as_deref(), string);
    string(out, &r.owner_source);
    nullable(out, r.cause.as_deref(), string);
    out.extend_from_slice(&r.bytes_acked.to_le_bytes());
    out.extend_from_slice(&r.bytes_received.to_le_bytes());
    nullable(out, r.connect_ns, |o, v| {
        o.extend_from_slice(&v.to_le_bytes())
    });
    nullable(out, r.handshake_rtt_us, |o, v| {
        o.extend_from_slice(&v.to_le_bytes())
    });
    for v in [r.retransmits, r.srtt_us, r.min_rtt_us, r.snd_cwnd] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&r.delivery_rate.to_le_bytes());
    out.extend_from_slice(&r.cookie.to_le_bytes());
    let n = &r.names;
    for name in [&n.container, &n.image, &n.pod, &n.namespace] {
        nullable(out, name.as_deref(), string);
    }
}

/// family, local_addr, local_port, remote_addr, remote_port.
fn encode_ends(out: &mut Vec<u8>, local: Option<SocketAddr>, remote: Option<SocketAddr>) {
    let (family, local_addr, local_port) = endpoint(local);
    let (_, remote_addr, remote_port) = endpoint(remote);
    out.push(family);
    out.extend_from_slice(&local_addr);
    out.extend_from_slice(&local_port.to_le_bytes());
    out.extend_from_slice(&remote_addr);
    out.extend_from_slice(&remote_port.to_le_bytes());
}

/// RowBinary's String: a LEB128 length, then the bytes.
fn string(out: &mut Vec<u8>, s: &str) {
    let mut n = s.len();
    loop {
        let low = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(low);
            break;
        }
        out.push(low | 0x80);
    }
    out.extend_from_slice(s.as_bytes());
}

/// RowBinary's Nullable: a byte (1: NULL), then the value when there is one.
fn nullable<T>(out: &mut Vec<u8>, v: Option<T>, put: impl FnOnce(&mut Vec<u8>, T)) {
    match v {
        None => out.push(1),
        Some(v) => {
            out.push(0);
            put(out, v);
        }
    }
}

/// What is left of a RowBinary answer.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn bytes<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.bytes::<1>().map(|[b]| b)
    }

    fn u16(&mut self) -> Option<u16> {
        self.bytes().map(u16::from_le_bytes)
    }

    fn u32(&mut self) -> Option<u32> {
        self.bytes().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.bytes().map(u64::from_le_bytes)
    }

    fn i64(&mut self) -> Option<i64> {
        self.bytes().map(i64::from_le_bytes)
    }

    fn string(&mut self) -> Option<String> {
        let mut len = 0usize;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            len |= usize::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
        }
        if len > self.0.len() {
            return None;
        }
        let (s, rest) = self.0.split_at(len);
        self.0 = rest;
        Some(String::from_utf8_lossy(s).into_owned())
    }

    /// Outer None: cut short; inner None: NULL.
    fn nullable<T>(&mut self, get: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        match self.u8()? {
            0 => get(self).map(Some),
            _ => Some(None),
        }
    }
}

/// One state change of a query's answer: the host, then the columns.
fn decode_transition(i: &mut Input<'_>) -> Option<(String, TransitionRow)> {
    let host = i.string()?;
    let ts_ns = i.i64()?;
    let cookie = i.u64()?;
    let netns = i.u32()?;
    let (local, remote) = decode_ends(i)?;
    let row = TransitionRow {
        ts_ns,
        cookie,
        netns,
        local,
        remote,
        old: i.u8()?,
        new: i.u8()?,
        prev_state_ns: i.nullable(Input::u64)?,
        pid: i.nullable(Input::u32)?,
        comm: i.nullable(Input::string)?,
        owner_source: i.string()?,
        synthesized: i.u8()? != 0,
        cause: i.nullable(Input::string)?,
        names: decode_names(i)?,
    };
    Some((host, row))
}

/// family, local_addr, local_port, remote_addr, remote_port.
fn decode_ends(i: &mut Input<'_>) -> Option<(Option<SocketAddr>, Option<SocketAddr>)> {
    let family = i.u8()?;
    let local_addr = i.bytes::<16>()?;
    let local_port = i.u16()?;
    let remote_addr = i.bytes::<16>()?;
    let remote_port = i.u16()?;
    Some((
        address(family, &local_addr, local_port),
        address(family, &remote_addr, remote_port),
    ))
}

fn decode_names(i: &mut Input<'_>) -> Option<Workload> {
    Some(Workload {
        container: i.nullable(Input::string)?,
        image: i.nullable(Input::string)?,
        pod: i.nullable(Input::string)?,
        namespace: i.nullable(Input::string)?,
    })
}

/// One row of a query's answer: the host, then the embedded store's columns.
fn decode_row(i: &mut Input<'_>) -> Option<(String, LifetimeRow)> {
    let host = i.string()?;
    let end_ns = i.i64()?;
    let start_ns = i.nullable(Input::i64)?;
    let netns = i.u32()?;
    let (local, remote) = decode_ends(i)?;
    let row = LifetimeRow {
        end_ns,
        start_ns,
        netns,
        local,
        remote,
        pid: i.nullable(Input::u32)?,
        comm: i.nullable(Input::string)?,
        owner_source: i.string()?,
        cause: i.nullable(Input::string)?,
        bytes_acked: i.u64()?,
        bytes_received: i.u64()?,
        connect_ns: i.nullable(Input::u64)?,
        handshake_rtt_us: i.nullable(Input::u32)?,
        retransmits: i.u32()?,
        srtt_us: i.u32()?,
        min_rtt_us: i.u32()?,
        snd_cwnd: i.u32()?,
        delivery_rate: i.u64()?,
        cookie: i.u64()?,
        names: decode_names(i)?,
    };
    Some((host, row))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_the_server_database_and_user() {
        let u: Url = "clickhouse://ops:s3cret@10.0.0.5:9000/fleet"
            .parse()
            .unwrap();
        assert_eq!(u.base, "http://10.0.0.5:9000/");
        assert_eq!(u.database, "fleet");
        assert_eq!(u.user.as_deref(), Some("ops"));
        assert_eq!(u.password.as_deref(), Some("s3cret"));
        // The password never shows in messages.
        assert_eq!(u.to_string(), "clickhouse://ops@10.0.0.5:9000/fleet");
        let d: Url = "clickhouse://[::1]".parse().unwrap();
        assert_eq!(
            (d.base.as_str(), d.database.as_str()),
            ("http://[::1]:8123/", "default")
        );
        for bad in [
            "http://host/db",
            "clickhouse:///db",
            "clickhouse://host:0/db",
            "clickhouse://host:x/db",
            "clickhouse://host/db;DROP",
        ] {
            assert!(bad.parse::<Url>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_row_survives_row_binary() {
        let row = LifetimeRow {
            end_ns: 1_700_000_005_000_000_000,
            start_ns: Some(1_700_000_004_000_000_000),
            netns: 4026531840,
            local: Some("[2001:db8::1]:40000".parse().unwrap()),
            remote: Some("[2001:db8::2]:5432".parse().unwrap()),
            pid: Some(4242),
            comm: Some("psql".to_string()),
            owner_source: "task".to_string(),
            cause: Some("ECONNREFUSED".to_string()),
            bytes_acked: 1,
            bytes_received: 2,
            connect_ns: None,
            handshake_rtt_us: Some(17),
            retransmits: 3,
            srtt_us: 4,
            min_rtt_us: 5,
            snd_cwnd: 10,
            delivery_rate: 1 << 40,
            cookie: u64::MAX,
            names: Workload {
                // Longer than 127 bytes: a two-byte length.
                pod: Some("p".repeat(300)),
                namespace: Some("default".to_string()),
                ..Workload::default()
            },
        };
        let v4 = LifetimeRow {
            local: Some("10.0.0.1:1".parse().unwrap()),
            remote: Some("10.0.3.7:5432".parse().unwrap()),
            ..LifetimeRow::default()
        };
        let change = TransitionRow {
            ts_ns: 5,
            cookie: 6,
            local: Some("10.0.0.1:1".parse().unwrap()),
            remote: Some("10.0.3.7:5432".parse().unwrap()),
            old: 2,
            new: 1,
            synthesized: true,
            owner_source: "cached".to_string(),
            ..TransitionRow::default()
        };
        let parts = encode_batch(
            "node-a",
            99,
            &[
                Row::Lifetime(row.clone()),
                Row::Transition(change.clone()),
                Row::Lifetime(v4.clone()),
            ],
        );
        assert_eq!(
            parts.iter().map(|p| (p.0, p.1)).collect::<Vec<_>>(),
            [(Table::Lifetimes, 2), (Table::Transitions, 1)]
        );
        let body = &parts[0].2;
        let mut one = Vec::new();
        encode_transition(&mut one, "node-a", 99, &change);
        let host_len = 1 + "node-a".len();
        let mut answer = one[..host_len].to_vec();
        answer.extend_from_slice(&one[host_len + 8..]);
        assert_eq!(
            decode_transition(&mut Input(&answer)),
            Some(("node-a".to_string(), change))
        );
        // The answer to a query has no batch column: take it out of each row.
        let mut answer = Vec::new();
        for r in [&row, &v4] {
            let mut one = Vec::new();
            encode_row(&mut one, "node-a", 99, r);
            let host_len = 1 + "node-a".len();
            answer.extend_from_slice(&one[..host_len]);
            answer.extend_from_slice(&one[host_len + 8..]);
        }
        assert_eq!(body.len(), answer.len() + 16);
        let mut input = Input(&answer);
        assert_eq!(decode_row(&mut input), Some(("node-a".to_string(), row)));
        assert_eq!(decode_row(&mut input), Some(("node-a".to_string(), v4)));
        assert!(input.0.is_empty());
        let mut cut = Input(&answer[..answer.len() - 1]);
        assert!(decode_row(&mut cut).is_some());
        assert!(decode_row(&mut cut).is_none());
    }

    #[test]
    fn literals_escape_quotes_and_backslashes() {
        assert_eq!(literal(r"it's a\b"), r"'it\'s a\\b'");
    }
}
