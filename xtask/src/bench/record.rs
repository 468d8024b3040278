//! `cargo xtask bench record`: the flight recorder. Loopback churn under `sockstat record`
//! into the embedded store and into ClickHouse (Debian's server, started here on loopback),
//! against runs without a tracer; the bytes each store holds per recorded lifetime; and
//! `sockstat history` for one destination in one hour over 10 million lifetimes in each.
use std::{
    fmt::Write as _,
    io::Write as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use super::{CHURN_NS, Tracer, median};

/// Lifetimes generated for the query benchmark, over a week.
const GENERATED: u64 = 10_000_000;
const WEEK_NS: u64 = 7 * 86_400 * 1_000_000_000;
/// Distinct destinations in the generated rows (10.0.x.y) and ports per destination.
const DESTINATIONS: u64 = 1000;

pub fn record(root: &Path, rounds: usize) -> Result<String> {
    let sockstat = crate::sockstat_bin(root)?.display().to_string();
    let work = std::env::temp_dir().join("sockstat-bench-record");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let server = ClickHouse::start(&work.join("clickhouse"))?;
    let (embedded, spool) = (work.join("store"), work.join("spool-store"));
    let churn_url = server.url("churn");
    let tracers = vec![
        Tracer {
            key: "record",
            name: "sockstat record (embedded store)",
            argv: vec![
                sockstat.clone(),
                "record".into(),
                "--store".into(),
                embedded.display().to_string(),
                "--keep".into(),
                "0".into(),
                "--max-size".into(),
                "0".into(),
            ],
            outside: false,
            fresh: Some(embedded.clone()),
        },
        Tracer {
            key: "record-clickhouse",
            name: "sockstat record --sink clickhouse://",
            // From the host's namespace, where the server listens; -N watches the churn's.
            argv: vec![
                sockstat.clone(),
                "record".into(),
                "-N".into(),
                CHURN_NS.into(),
                "--sink".into(),
                churn_url.clone(),
                "--host".into(),
                "bench".into(),
                "--store".into(),
                spool.display().to_string(),
            ],
            outside: true,
            fresh: None,
        },
    ];
    let mut report = super::churn_under(tracers, 40_000, rounds)?;

    writeln!(
        report,
        "\n### Bytes on disk per recorded lifetime (the churn's rows)\n"
    )?;
    writeln!(report, "| store | lifetimes | bytes | bytes per lifetime |")?;
    writeln!(report, "|---|---|---|---|")?;
    let rows = sqlite_count(&embedded.join("history.db"))?;
    let bytes =
        file_size(&embedded.join("history.db")) + file_size(&embedded.join("history.db-wal"));
    writeln!(
        report,
        "| embedded (SQLite, 4 indexes) | {rows} | {bytes} | {:.0} |",
        bytes as f64 / rows.max(1) as f64
    )?;
    // Merged first, as it will be once the background merges ran.
    server.sql("OPTIMIZE TABLE churn.lifetimes FINAL")?;
    let (ch_rows, ch_bytes) = server.table_size("churn")?;
    writeln!(
        report,
        "| ClickHouse (MergeTree, compressed) | {ch_rows} | {ch_bytes} | {:.0} |",
        ch_bytes as f64 / ch_rows.max(1) as f64
    )?;

    // 10 million lifetimes in each store, and one destination's hour asked of both.
    let t0 = now_ns() - WEEK_NS;
    let generated = work.join("generated");
    make_store(&sockstat, &generated)?;
    let started = Instant::now();
    fill_sqlite(&generated.join("history.db"), t0)?;
    let sqlite_fill = started.elapsed().as_secs_f64();
    make_clickhouse_table(
        &sockstat,
        &server.url("generated"),
        &work.join("spool-generated"),
    )?;
    let started = Instant::now();
    fill_clickhouse(&server, t0)?;
    let clickhouse_fill = started.elapsed().as_secs_f64();
    server.sql("OPTIMIZE TABLE generated.lifetimes FINAL")?;
    // Destination 10.0.3.7 (number 775), port 5432, in the fourth day's first hour.
    let since = t0 + 3 * 86_400 * 1_000_000_000;
    let until = since + 3_600 * 1_000_000_000;
    let (since, until) = (utc(since)?, utc(until)?);
    let query = |source: &[&str]| -> Vec<String> {
        let mut argv = vec![sockstat.clone(), "history".to_string()];
        argv.extend(source.iter().map(|s| s.to_string()));
        argv.extend(
            [
                "--since",
                &since,
                "--until",
                &until,
                "--json",
                "dst 10.0.3.7 and dport = :5432",
            ]
            .map(String::from),
        );
        argv
    };
    let store_arg = generated.display().to_string();
    let from_arg = server.url("generated");
    let sources = [
        (
            "embedded (SQLite)",
            query(&["--store", &store_arg]),
            sqlite_fill,
            { file_size(&generated.join("history.db")) },
        ),
        (
            "ClickHouse",
            query(&["--from", &from_arg]),
            clickhouse_fill,
            server.table_size("generated")?.1,
        ),
    ];
    writeln!(
        report,
        "\n### `history` over {GENERATED} lifetimes: one destination, one hour\n"
    )?;
    writeln!(
        report,
        "A week of generated lifetimes ({DESTINATIONS} destinations, 4 ports each), asked for \
         `dst 10.0.3.7 and dport = :5432` in one hour: `{}`. Whole-command wall time, median of \
         {rounds} runs.\n",
        sources[0].1[1..].join(" ")
    )?;
    writeln!(
        report,
        "| store | rows answered | median s | fill s | bytes on disk |"
    )?;
    writeln!(report, "|---|---|---|---|---|")?;
    for (name, argv, fill, bytes) in &sources {
        let mut times = Vec::new();
        let mut answered = 0;
        for _ in 0..rounds.max(1) {
            let start = Instant::now();
            let out = Command::new(&argv[0]).args(&argv[1..]).output()?;
            times.push(start.elapsed().as_secs_f64());
            if !out.status.success() {
                bail!(
                    "{}: {}",
                    argv.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            answered = out
                .stdout
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .count();
        }
        writeln!(
            report,
            "| {name} | {answered} | {:.3} | {fill:.0} | {bytes} |",
            median(times)
        )?;
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&work);
    eprint!("{report}");
    Ok(report)
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn file_size(p: &Path) -> u64 {
    std::fs::metadata(p).map_or(0, |m| m.len())
}

/// A UTC time as `history --since` takes it.
fn utc(ns: u64) -> Result<String> {
    let out = Command::new("date")
        .args([
            "-u",
            "-d",
            &format!("@{}.{:09}", ns / 1_000_000_000, ns % 1_000_000_000),
            "+%Y-%m-%dT%H:%M:%S.%NZ",
        ])
        .output()?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Runs `sockstat record ARGS` until it says it is recording, then stops it: the store or
/// table exists, empty, as sockstat makes it.
fn record_briefly(sockstat: &str, args: &[&str]) -> Result<()> {
    let mut child = Command::new(sockstat)
        .arg("record")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().context("no stderr")?;
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stderr), &mut line)?;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    child.wait()?;
    if !line.contains("recording connections") {
        bail!("sockstat record {}: {}", args.join(" "), line.trim());
    }
    Ok(())
}

fn make_store(sockstat: &str, dir: &Path) -> Result<()> {
    record_briefly(sockstat, &["--store", &dir.display().to_string()])
}

fn make_clickhouse_table(sockstat: &str, url: &str, spool: &Path) -> Result<()> {
    record_briefly(
        sockstat,
        &["--sink", url, "--store", &spool.display().to_string()],
    )
}

/// Python's sqlite3 (CPython is on every machine here) fills the store sockstat made:
/// SQLite's own SQL has no way to build the 16-byte addresses before 3.41.
fn fill_sqlite(db: &Path, t0: u64) -> Result<()> {
    let script = format!(
        r#"
import sqlite3, struct
db = sqlite3.connect({db:?})
db.execute("PRAGMA journal_mode = WAL")
db.execute("PRAGMA synchronous = OFF")
mapped = bytes(10) + b"\xff\xff"
local = mapped + bytes([10, 0, 0, 1])
def rows():
    step = {WEEK_NS} // {GENERATED}
    for i in range({GENERATED}):
        d = i % {DESTINATIONS}
        end = {t0} + i * step
        yield (end, end - 1000000, 1, 4, local, 1024 + i % 60000,
               mapped + bytes([10, 0, d // 256, d % 256]), 5432 + (i // {DESTINATIONS}) % 4,
               1000 + i % 500, "client", "task", "fin", 100, 200, 50000, 40, 0, 40, 30, 10,
               1000000, i)
db.executemany("""INSERT INTO lifetimes (end_ns, start_ns, netns, family, local_addr,
    local_port, remote_addr, remote_port, pid, comm, owner_source, cause, bytes_acked,
    bytes_received, connect_ns, handshake_rtt_us, retransmits, srtt_us, min_rtt_us,
    snd_cwnd, delivery_rate, cookie) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)""",
    rows())
db.commit()
db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
"#,
        db = db.display().to_string(),
    );
    let mut child = Command::new("python3")
        .arg("-")
        .stdin(Stdio::piped())
        .spawn()
        .context("python3")?;
    child
        .stdin
        .take()
        .context("no stdin")?
        .write_all(script.as_bytes())?;
    let status = child.wait()?;
    if !status.success() {
        bail!("filling the SQLite store failed ({status})");
    }
    Ok(())
}

fn fill_clickhouse(server: &ClickHouse, t0: u64) -> Result<()> {
    server.sql(&format!(
        "INSERT INTO generated.lifetimes (host, batch, end_ns, start_ns, netns, family, \
         local_addr, local_port, remote_addr, remote_port, pid, comm, owner_source, cause, \
         bytes_acked, bytes_received, connect_ns, handshake_rtt_us, retransmits, srtt_us, \
         min_rtt_us, snd_cwnd, delivery_rate, cookie) \
         SELECT 'bench', 0, toInt64({t0} + number * intDiv({WEEK_NS}, {GENERATED})), \
         toInt64({t0} + number * intDiv({WEEK_NS}, {GENERATED}) - 1000000), 1, 4, \
         toFixedString(unhex('00000000000000000000ffff0a000001'), 16), 1024 + number % 60000, \
         toFixedString(unhex(concat('00000000000000000000ffff0a00', \
           hex(toUInt8(intDiv(number % {DESTINATIONS}, 256))), \
           hex(toUInt8(number % {DESTINATIONS} % 256)))), 16), \
         5432 + intDiv(number, {DESTINATIONS}) % 4, 1000 + number % 500, 'client', 'task', 'fin', \
         100, 200, 50000, 40, 0, 40, 30, 10, 1000000, number \
         FROM system.numbers LIMIT {GENERATED}"
    ))?;
    Ok(())
}

/// rows in a SQLite file, through python3's sqlite3.
fn sqlite_count(db: &Path) -> Result<u64> {
    let out = Command::new("python3")
        .args([
            "-c",
            &format!(
                "import sqlite3; print(sqlite3.connect({:?}).execute('SELECT count(*) FROM lifetimes').fetchone()[0])",
                db.display().to_string()
            ),
        ])
        .output()?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .with_context(|| format!("counting rows in {}", db.display()))
}

/// Debian's clickhouse-server in a directory of its own, on free loopback ports. (The
/// history suite starts one the same way; the two crates share no code.)
struct ClickHouse {
    child: Child,
    http_port: u16,
}

impl ClickHouse {
    fn start(dir: &Path) -> Result<ClickHouse> {
        const BIN: &str = "/usr/sbin/clickhouse-server";
        if !Path::new(BIN).exists() {
            bail!("{BIN} is missing: cargo xtask setup installs clickhouse-server");
        }
        std::fs::create_dir_all(dir)?;
        let free = || -> Result<u16> {
            Ok(std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port())
        };
        let (http, tcp, interserver) = (free()?, free()?, free()?);
        let d = dir.display();
        let config = std::fs::read_to_string("/etc/clickhouse-server/config.xml")?
            .replace("/var/log/clickhouse-server/", &format!("{d}/log/"))
            .replace("/var/lib/clickhouse/", &format!("{d}/data/"))
            .replace("<http_port>8123<", &format!("<http_port>{http}<"))
            .replace("<tcp_port>9000<", &format!("<tcp_port>{tcp}<"))
            .replace(
                "<interserver_http_port>9009<",
                &format!("<interserver_http_port>{interserver}<"),
            );
        let config_file: PathBuf = dir.join("config.xml");
        std::fs::write(&config_file, config)?;
        std::fs::copy("/etc/clickhouse-server/users.xml", dir.join("users.xml"))?;
        let child = Command::new(BIN)
            .arg(format!("--config-file={}", config_file.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let server = ClickHouse {
            child,
            http_port: http,
        };
        let until = Instant::now() + Duration::from_secs(60);
        while Instant::now() < until {
            if server.sql("SELECT 1").is_ok() {
                return Ok(server);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        bail!("clickhouse-server did not answer within 60 s (logs in {d}/log)")
    }

    fn url(&self, db: &str) -> String {
        format!("clickhouse://127.0.0.1:{}/{db}", self.http_port)
    }

    fn sql(&self, query: &str) -> Result<String> {
        let out = Command::new("curl")
            .args(["-sS", "--fail", "--max-time", "600", "--data-binary", query])
            .arg(format!("http://127.0.0.1:{}/", self.http_port))
            .output()?;
        if !out.status.success() {
            bail!(
                "ClickHouse: {}: {}",
                query.chars().take(80).collect::<String>(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    }

    /// Rows and compressed bytes on disk of `db.lifetimes`'s active parts.
    fn table_size(&self, db: &str) -> Result<(u64, u64)> {
        let answer = self.sql(&format!(
            "SELECT sum(rows), sum(bytes_on_disk) FROM system.parts \
             WHERE database = '{db}' AND table = 'lifetimes' AND active FORMAT TabSeparated"
        ))?;
        let mut it = answer.split_whitespace().map(str::parse::<u64>);
        match (it.next(), it.next()) {
            (Some(Ok(rows)), Some(Ok(bytes))) => Ok((rows, bytes)),
            _ => bail!("system.parts answered {answer:?}"),
        }
    }
}

impl Drop for ClickHouse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
