//! Root-only tests of the flight recorder: `sockstat record` in a private network namespace
//! records a scripted mix of connections, and `sockstat history` answers what happened: who,
//! where, when and how each ended; a kill -9 loses at most the last batch; a tiny
//! --max-size holds while recording goes on; a store that is not one is refused and left
//! as it was. Two recorders standing in for two hosts record into Debian's ClickHouse,
//! started here on loopback and stopped mid-run: every connection arrives exactly once,
//! and `history --from` answers across both.
//!
//! Without root every test here is reported as ignored ("needs root"), never as passed.
use std::{
    io::Read,
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use libtest_mimic::{Arguments, Failed};
use serde_json::Value;
use sockstat_tests::{
    NamedNetns, TestResult, Tracer, abort_on_close, client_closed_connections, fail,
    root_or_say_skipped, root_trial, sockstat_bin,
};

fn main() {
    let args = Arguments::from_args();
    let root = root_or_say_skipped("history");
    let trials = vec![
        root_trial(
            "history_answers_who_connected_where_and_how_it_ended",
            root,
            scripted_mix,
        ),
        root_trial("a_kill_9_loses_at_most_the_last_batch", root, crash_safety),
        root_trial(
            "a_tiny_max_size_holds_while_recording_goes_on",
            root,
            retention,
        ),
        root_trial(
            "a_file_that_is_not_a_store_is_refused_and_kept",
            root,
            not_a_store,
        ),
        root_trial(
            "two_hosts_record_into_clickhouse_exactly_once_across_a_restart",
            root,
            clickhouse_fleet,
        ),
        root_trial(
            "keep_drops_clickhouse_days_only_when_given",
            root,
            clickhouse_keep,
        ),
        root_trial(
            "an_unreachable_sink_is_one_line_and_nothing_is_spooled",
            root,
            unreachable_sink,
        ),
    ];
    libtest_mimic::run(&args, trials).exit();
}

/// A store directory of the test's own, emptied.
fn store_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sst-history-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn wall_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// `sockstat history --store DIR --json ARGS`: each recorded connection.
fn history(dir: &Path, args: &[&str]) -> Result<Vec<Value>, Failed> {
    history_of(&["--store", &dir.display().to_string()], args)
}

/// `sockstat history --from URL --json ARGS`: a fleet's store.
fn history_from(url: &str, args: &[&str]) -> Result<Vec<Value>, Failed> {
    history_of(&["--from", url], args)
}

fn history_of(source: &[&str], args: &[&str]) -> Result<Vec<Value>, Failed> {
    let out = Command::new(sockstat_bin())
        .arg("history")
        .args(source)
        .arg("--json")
        .args(args)
        .output()
        .map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        return Err(fail(format!(
            "history {source:?} {args:?} exited {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).map_err(|e| fail(format!("{l:?}: {e}"))))
        .collect()
}

fn port_of(v: &Value, key: &str) -> u16 {
    v[key]
        .as_str()
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
}

/// The recorder's closing line.
fn stop(recorder: Tracer) -> Result<String, Failed> {
    let (_, stderr, code) = recorder.stop().map_err(fail)?;
    let summary = stderr.last().cloned().unwrap_or_default();
    if code != 0 || !summary.contains("connections recorded") {
        return Err(fail(format!("record exited {code}: {stderr:?}")));
    }
    Ok(summary)
}

/// A listener on loopback in `ns`, and its port.
fn listener_in(ns: &NamedNetns) -> Result<(TcpListener, u16), Failed> {
    let listener = ns
        .within(|| TcpListener::bind("127.0.0.1:0"))
        .map_err(fail)?
        .map_err(|e| fail(e.to_string()))?;
    let port = listener
        .local_addr()
        .map_err(|e| fail(e.to_string()))?
        .port();
    Ok((listener, port))
}

/// One connection to `port` in `ns` that the client closes first and the server then.
fn normal(ns: &NamedNetns, listener: &TcpListener, port: u16) -> TestResult {
    client_closed_connections(ns, listener, port, 1).map_err(fail)
}

fn scripted_mix() -> TestResult {
    let ns = NamedNetns::new("hist").map_err(fail)?;
    let dir = store_dir("mix");
    let store = dir.display().to_string();
    let recorder = Tracer::record_in(&ns, &["--store", &store, "--flush", "0.2", "--transitions"])
        .map_err(fail)?;
    let started = wall_ns();
    let (listener, port) = listener_in(&ns)?;
    // A closed port: bound and dropped, so nothing listens there.
    let closed = ns
        .within(|| TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()))
        .map_err(fail)?
        .map_err(|e| fail(e.to_string()))?
        .port();
    // Long-lived: open first, closed last.
    let long = ns
        .within(|| TcpStream::connect(("127.0.0.1", port)))
        .map_err(fail)?
        .map_err(|e| fail(e.to_string()))?;
    let (long_server, _) = listener.accept().map_err(|e| fail(e.to_string()))?;
    for _ in 0..3 {
        normal(&ns, &listener, port)?;
    }
    for _ in 0..2 {
        let refused = ns
            .within(|| TcpStream::connect(("127.0.0.1", closed)))
            .map_err(fail)?;
        if refused.is_ok() {
            return Err(fail(format!("port {closed} accepted a connection")));
        }
    }
    let aborted = ns
        .within(|| TcpStream::connect(("127.0.0.1", port)))
        .map_err(fail)?
        .map_err(|e| fail(e.to_string()))?;
    let (reset_server, _) = listener.accept().map_err(|e| fail(e.to_string()))?;
    abort_on_close(&aborted).map_err(fail)?;
    drop(aborted);
    std::thread::sleep(Duration::from_millis(1500));
    // The moment top --replay is asked about: the long connection still open.
    let mid = wall_ns();
    drop(long);
    let mut byte = [0u8; 1];
    let _ = (&long_server).read(&mut byte);
    drop(long_server);
    drop(reset_server);
    std::thread::sleep(Duration::from_millis(500));
    let ended = wall_ns();
    let summary = stop(recorder)?;

    let all = history(&dir, &["--since", "5m"])?;
    let me = std::process::id();
    let to = |p: u16| move |v: &&Value| port_of(v, "remote") == p;
    let from = |p: u16| move |v: &&Value| port_of(v, "local") == p;
    let cause = |v: &&Value| v["cause"].as_str().unwrap_or("-").to_string();
    let refused: Vec<&Value> = all.iter().filter(to(closed)).collect();
    let clients: Vec<&Value> = all.iter().filter(to(port)).collect();
    let servers: Vec<&Value> = all.iter().filter(from(port)).collect();
    let fail_with = |what: &str| fail(format!("{what}; summary {summary:?}; recorded {all:#?}"));
    if refused.len() != 2
        || refused
            .iter()
            .any(|r| cause(r) != "ECONNREFUSED" || r["pid"].as_u64() != Some(u64::from(me)))
    {
        return Err(fail_with("two refused connects, by this process"));
    }
    // Clients: the long-lived one, three normal ones, the aborted one. Their servers too.
    let causes = |rows: &[&Value]| {
        let mut c: Vec<String> = rows.iter().map(cause).collect();
        c.sort();
        c
    };
    if causes(&clients) != ["fin", "fin", "fin", "fin", "rst-out"]
        || causes(&servers) != ["fin", "fin", "fin", "fin", "rst-in"]
    {
        return Err(fail_with(
            "five client and five server lifetimes with their causes",
        ));
    }
    let long_row = clients
        .iter()
        .max_by_key(|r| r["duration_ns"].as_u64().unwrap_or(0))
        .copied()
        .unwrap_or(&Value::Null);
    let long_ns = long_row["duration_ns"].as_u64().unwrap_or(0);
    if long_ns < 1_500_000_000 {
        return Err(fail_with("the long-lived connection's duration"));
    }
    // Every row falls inside the recording, and times select: before the scripted
    // connections nothing; a window after the short ones still has the long one.
    let in_window = all.iter().all(|r| {
        r["ts_ns"]
            .as_i64()
            .is_some_and(|t| t >= started && t <= ended)
    });
    if !in_window {
        return Err(fail_with("every connection closed while recording"));
    }
    let before = history(
        &dir,
        &["--since", "1h", "--until", &utc(started - 2_000_000_000)?],
    )?;
    let late = history(
        &dir,
        &[
            "--since",
            &utc(ended - 700_000_000)?,
            &format!("dport = :{port}"),
        ],
    )?;
    if !before.is_empty()
        || late.len() != 1
        || late[0]["duration_ns"].as_u64().unwrap_or(0) < 1_500_000_000
    {
        return Err(fail(format!("by time: before {before:?}, late {late:?}")));
    }
    // The filter language and the owner select too.
    let by_port = history(&dir, &["--since", "5m", &format!("dport = :{closed}")])?;
    let by_pid = history(&dir, &["--since", "5m", "--pid", &me.to_string()])?;
    let nobody = history(&dir, &["--since", "5m", "--pid", "1", "dst", "127.0.0.1"])?;
    if by_port.len() != 2 || by_pid.len() < 7 || !nobody.is_empty() {
        return Err(fail(format!(
            "dport = :{closed} gave {}, --pid {me} {}, --pid 1 {}",
            by_port.len(),
            by_pid.len(),
            nobody.len()
        )));
    }
    // --transitions kept each state change: a refused connect is CLOSE -> SYN-SENT, then
    // SYN-SENT -> CLOSE with ECONNREFUSED; each normal client went through ESTAB.
    let changes = history(
        &dir,
        &[
            "--since",
            "5m",
            "--transitions",
            &format!("dport = :{closed}"),
        ],
    )?;
    let edges: Vec<String> = changes
        .iter()
        .map(|t| {
            format!(
                "{} -> {} {}",
                t["old"].as_str().unwrap_or("?"),
                t["new"].as_str().unwrap_or("?"),
                t["cause"].as_str().unwrap_or("-")
            )
        })
        .collect();
    let connected = history(
        &dir,
        &[
            "--since",
            "5m",
            "--transitions",
            &format!("dport = :{port}"),
        ],
    )?;
    let established = connected
        .iter()
        .filter(|t| t["old"] == "SYN-SENT" && t["new"] == "ESTAB")
        .count();
    if edges
        != [
            "CLOSE -> SYN-SENT -",
            "SYN-SENT -> CLOSE ECONNREFUSED",
            "CLOSE -> SYN-SENT -",
            "SYN-SENT -> CLOSE ECONNREFUSED",
        ]
        || established != 5
    {
        return Err(fail(format!(
            "history --transitions: to the closed port {edges:?}; {established} clients reached ESTAB of 5"
        )));
    }
    // In text, each line starts with the local date before trace's time of day.
    let text = Command::new(sockstat_bin())
        .args(["history", "--store", &store, "--since", "5m"])
        .output()
        .map_err(|e| fail(e.to_string()))?;
    let text = String::from_utf8_lossy(&text.stdout);
    let today = Command::new("date")
        .arg("+%Y-%m-%d")
        .output()
        .map_err(|e| fail(e.to_string()))?;
    let today = String::from_utf8_lossy(&today.stdout).trim().to_string();
    let mut lines = text.lines();
    let header_ok = lines
        .next()
        .is_some_and(|h| h.starts_with("DATE       TIME"));
    // Just after midnight the first connections may carry yesterday's date.
    if !header_ok
        || lines.clone().count() != 12
        || !lines.last().is_some_and(|l| l.starts_with(&today))
    {
        return Err(fail(format!("history's text output:\n{text}")));
    }
    // top --replay rebuilds that moment from the transitions: the listener, the long
    // connection's two ends, and the three normal clients in TIME-WAIT.
    let out = Command::new(sockstat_bin())
        .args([
            "top",
            "--replay",
            &store,
            "--at",
            &utc(mid)?,
            "--once",
            "--json",
        ])
        .output()
        .map_err(|e| fail(e.to_string()))?;
    let snap: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let mut states: Vec<(String, u64)> = snap["states"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|s| s["count"].as_u64().unwrap_or(0) > 0)
                .map(|s| {
                    (
                        s["state"].as_str().unwrap_or("?").to_string(),
                        s["count"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    states.sort();
    let want = [
        ("ESTAB".to_string(), 2),
        ("LISTEN".to_string(), 1),
        ("TIME-WAIT".to_string(), 3),
    ];
    if !out.status.success() || states != want || snap["source"]["kind"] != "recorded" {
        return Err(fail(format!(
            "top --replay at the long connection: {states:?}, not {want:?} ({}; {})",
            snap["source"],
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    // report --history analyses the same recording: twelve connections, the two refusals
    // by destination and errno, two resets; the alert on failures fires (exit 1).
    let out = Command::new(sockstat_bin())
        .args(["report", "--history", "5m", "--store", &store, "--json"])
        .args(["--alert", "failed-connects >= 2", "--alert", "resets > 2"])
        .output()
        .map_err(|e| fail(e.to_string()))?;
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let refusals = format!("127.0.0.1:{closed} ECONNREFUSED");
    let firing: Vec<bool> = report["alerts"]
        .as_array()
        .map(|a| a.iter().map(|x| x["firing"] == true).collect())
        .unwrap_or_default();
    if out.status.code() != Some(1)
        || report["connections"] != 12
        || report["failed_connects"] != 2
        || report["resets"] != 2
        || report["failing_destinations"][0]["key"] != refusals.as_str()
        || report["failing_destinations"][0]["count"] != 2
        || firing != [true, false]
    {
        return Err(fail(format!(
            "report --history exited {:?}: {report:#}; {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// A UTC time as `history --since` takes it, to the nanosecond.
fn utc(ns: i64) -> Result<String, Failed> {
    let at = format!("@{}.{:09}", ns / 1_000_000_000, ns % 1_000_000_000);
    let out = Command::new("date")
        .args(["-u", "-d", &at, "+%Y-%m-%dT%H:%M:%S.%NZ"])
        .output()
        .map_err(|e| fail(e.to_string()))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn crash_safety() -> TestResult {
    let ns = NamedNetns::new("crash").map_err(fail)?;
    let dir = store_dir("crash");
    let store = dir.display().to_string();
    let flush = Duration::from_millis(500);
    let recorder = Tracer::record_in(&ns, &["--store", &store, "--flush", "0.5"]).map_err(fail)?;
    let (listener, port) = listener_in(&ns)?;
    // Connections keep closing before and after the kill; each client close is timed.
    let mut closed_at = Vec::new();
    let until = Instant::now() + Duration::from_secs(4);
    let kill_at = Instant::now() + Duration::from_millis(2300);
    let mut recorder = Some(recorder);
    let mut killed_ns = 0;
    while Instant::now() < until {
        normal(&ns, &listener, port)?;
        closed_at.push(wall_ns());
        if Instant::now() >= kill_at
            && let Some(r) = recorder.take()
        {
            killed_ns = wall_ns();
            r.kill().map_err(fail)?;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // The store opens (its log recovered), and only what closed within the last batch
    // before the kill may be missing.
    let rows = history(&dir, &["--since", "5m", &format!("dport = :{port}")])?;
    let cutoff = killed_ns - (flush.as_nanos() as i64) - 300_000_000;
    let must = closed_at.iter().filter(|&&t| t < cutoff).count();
    let before_kill = closed_at.iter().filter(|&&t| t < killed_ns).count();
    if rows.len() < must || rows.len() > before_kill || must < 10 {
        return Err(fail(format!(
            "{} recorded of {before_kill} closed before the kill ({must} closed over a batch before it)",
            rows.len()
        )));
    }
    // And recording goes on into it.
    let again = Tracer::record_in(&ns, &["--store", &store]).map_err(fail)?;
    stop(again)?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn store_bytes(dir: &Path) -> u64 {
    ["history.db", "history.db-wal"]
        .iter()
        .map(|f| std::fs::metadata(dir.join(f)).map_or(0, |m| m.len()))
        .sum()
}

fn retention() -> TestResult {
    let ns = NamedNetns::new("bound").map_err(fail)?;
    let dir = store_dir("bound");
    let store = dir.display().to_string();
    let bound: u64 = 1 << 20;
    let recorder = Tracer::record_in(
        &ns,
        &["--store", &store, "--flush", "0.2", "--max-size", "1M"],
    )
    .map_err(fail)?;
    let (listener, port) = listener_in(&ns)?;
    let mut largest = 0;
    let mut made = 0;
    let started = Instant::now();
    // Far more than 1 MiB of lifetimes (two per connection, a few hundred bytes each).
    while made < 8000 && started.elapsed() < Duration::from_secs(60) {
        for _ in 0..200 {
            normal(&ns, &listener, port)?;
            made += 1;
        }
        largest = largest.max(store_bytes(&dir));
    }
    let last_made = wall_ns();
    std::thread::sleep(Duration::from_millis(500));
    let summary = stop(recorder)?;
    let end = store_bytes(&dir);
    let rows = history(&dir, &["--since", "10m"])?;
    let newest = rows
        .iter()
        .filter_map(|r| r["ts_ns"].as_i64())
        .max()
        .unwrap_or(0);
    // Over the bound at most by the batch being written, and within it at the end; the
    // newest connections kept, the oldest forgotten.
    if largest > bound + bound / 2
        || end > bound
        || rows.is_empty()
        || rows.len() >= 2 * made
        || newest < last_made - 2_000_000_000
        || !summary.contains("by --max-size")
    {
        return Err(fail(format!(
            "largest {largest} B, at the end {end} B (bound {bound}); {} of {} lifetimes kept, newest {newest} (last made {last_made}); {summary}",
            rows.len(),
            2 * made
        )));
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn not_a_store() -> TestResult {
    let dir = store_dir("foreign");
    std::fs::create_dir_all(&dir).map_err(|e| fail(e.to_string()))?;
    let file = dir.join("history.db");
    let content = b"SQLite format 3\0 but truncated, and somebody's data";
    std::fs::write(&file, content).map_err(|e| fail(e.to_string()))?;
    for args in [vec!["history", "--store"], vec!["record", "--store"]] {
        let out = Command::new(sockstat_bin())
            .args(&args)
            .arg(&dir)
            .output()
            .map_err(|e| fail(e.to_string()))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.code() != Some(2)
            || stderr.lines().count() != 1
            || !stderr.contains("not a sockstat store")
            || !out.stdout.is_empty()
        {
            return Err(fail(format!(
                "{args:?} on a corrupt store: exit {:?}, stderr {stderr:?}",
                out.status.code()
            )));
        }
    }
    let after = std::fs::read(&file).map_err(|e| fail(e.to_string()))?;
    if after != content {
        return Err(fail("the corrupt store was changed"));
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

const CLICKHOUSE: &str = "/usr/sbin/clickhouse-server";

/// Debian's clickhouse-server with a directory and loopback ports of its own: its config
/// and users files copied, their paths and ports rewritten.
struct ClickHouse {
    dir: PathBuf,
    http_port: u16,
    child: Option<Child>,
}

impl ClickHouse {
    fn new(tag: &str) -> Result<ClickHouse, Failed> {
        if !Path::new(CLICKHOUSE).exists() {
            return Err(fail(format!(
                "{CLICKHOUSE} is missing: cargo xtask setup installs clickhouse-server"
            )));
        }
        let dir = store_dir(&format!("clickhouse-{tag}"));
        std::fs::create_dir_all(&dir).map_err(|e| fail(e.to_string()))?;
        let free = || -> Result<u16, Failed> {
            TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .map_err(|e| fail(e.to_string()))
        };
        let (http, tcp, interserver) = (free()?, free()?, free()?);
        let config = std::fs::read_to_string("/etc/clickhouse-server/config.xml")
            .map_err(|e| fail(e.to_string()))?;
        let d = dir.display();
        let config = config
            .replace("/var/log/clickhouse-server/", &format!("{d}/log/"))
            .replace("/var/lib/clickhouse/", &format!("{d}/data/"))
            .replace("<http_port>8123<", &format!("<http_port>{http}<"))
            .replace("<tcp_port>9000<", &format!("<tcp_port>{tcp}<"))
            .replace(
                "<interserver_http_port>9009<",
                &format!("<interserver_http_port>{interserver}<"),
            );
        std::fs::write(dir.join("config.xml"), config).map_err(|e| fail(e.to_string()))?;
        std::fs::copy("/etc/clickhouse-server/users.xml", dir.join("users.xml"))
            .map_err(|e| fail(e.to_string()))?;
        let mut server = ClickHouse {
            dir,
            http_port: http,
            child: None,
        };
        server.start()?;
        Ok(server)
    }

    fn url(&self, db: &str) -> String {
        format!("clickhouse://127.0.0.1:{}/{db}", self.http_port)
    }

    /// Starts it (again) and waits until it answers /ping.
    fn start(&mut self) -> TestResult {
        let child = Command::new(CLICKHOUSE)
            .arg(format!(
                "--config-file={}",
                self.dir.join("config.xml").display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| fail(format!("{CLICKHOUSE}: {e}")))?;
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(120);
        while Instant::now() < until {
            if self.sql("SELECT 1").is_ok_and(|a| a.trim() == "1") {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        Err(fail(format!(
            "clickhouse-server did not answer on port {} within 120 s (logs in {})",
            self.http_port,
            self.dir.display()
        )))
    }

    /// SIGKILL: down at once, as a crashed or rebooting server is.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// One statement over HTTP, its answer as text.
    fn sql(&self, query: &str) -> Result<String, String> {
        let out = Command::new("curl")
            .args(["-sS", "--fail", "--max-time", "10", "--data-binary", query])
            .arg(format!("http://127.0.0.1:{}/", self.http_port))
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).to_string());
        }
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    }
}

impl Drop for ClickHouse {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `--keep` with `--sink`: whole days older than it are dropped from both tables, a day
/// younger stays, and without `--keep` nothing is dropped (the fleet's store is not bounded
/// by the store's default).
fn clickhouse_keep() -> TestResult {
    let server = ClickHouse::new("keep")?;
    let db = "keep";
    let url = server.url(db);
    let ns = NamedNetns::new("ch-keep").map_err(fail)?;
    let dir = store_dir("ch-keep");
    let store = dir.display().to_string();
    // The rows of host 'old' in each table.
    let counts = || -> (String, String) {
        let q = |table: &str| {
            server
                .sql(&format!(
                    "SELECT count() FROM {db}.{table} WHERE host = 'old' FORMAT TabSeparated"
                ))
                .map_or_else(|e| e, |a| a.trim().to_string())
        };
        (q("lifetimes"), q("transitions"))
    };
    // A recorder, run until the old rows number `until` (its first upkeep runs as its
    // writer starts), or for 2 s where they must stay as they are.
    let record = |keep: Option<&str>, until: (&str, &str)| -> Result<String, Failed> {
        let mut args = vec![
            "-N", &ns.name, "--host", "node", "--sink", &url, "--store", &store,
        ];
        args.extend(keep.map(|k| ["--keep", k]).into_iter().flatten());
        let recorder = Tracer::record(&args).map_err(fail)?;
        let want = (until.0.to_string(), until.1.to_string());
        let deadline = Instant::now() + Duration::from_secs(if keep.is_some() { 30 } else { 2 });
        while Instant::now() < deadline && (keep.is_none() || counts() != want) {
            std::thread::sleep(Duration::from_millis(200));
        }
        stop(recorder)
    };
    // The first run makes the tables; then rows from 10 days and from 1 day ago.
    let first = record(None, ("0", "0"))?;
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| fail(e.to_string()))?
        .as_nanos() as i64;
    let day = 86_400_000_000_000_i64;
    let (old, recent) = (now_ns - 10 * day, now_ns - day);
    server
        .sql(&format!(
            "INSERT INTO {db}.lifetimes (host, batch, end_ns) VALUES ('old', 1, {old}), \
             ('old', 1, {}), ('old', 1, {old}), ('old', 2, {recent}), ('old', 2, {recent})",
            old + 1
        ))
        .map_err(fail)?;
    server
        .sql(&format!(
            "INSERT INTO {db}.transitions (host, batch, ts_ns) VALUES ('old', 1, {old}), \
             ('old', 2, {recent})"
        ))
        .map_err(fail)?;
    let without = record(None, ("5", "2"))?;
    if counts() != ("5".into(), "2".into()) || !without.contains(" 0 rows dropped there by --keep")
    {
        return Err(fail(format!(
            "without --keep nothing may go: {:?}; recorder said {without}",
            counts()
        )));
    }
    let with = record(Some("2d"), ("2", "1"))?;
    if counts() != ("2".into(), "1".into()) || !with.contains(" 4 rows dropped there by --keep") {
        return Err(fail(format!(
            "--keep 2d should leave the day-old rows alone and drop the rest: {:?}; \
             recorder said {with}",
            counts()
        )));
    }
    if !first.contains(" 0 rows dropped there by --keep") {
        return Err(fail(format!("an empty table lost rows: {first}")));
    }
    Ok(())
}

/// Rows per host in the table, as ClickHouse counts them.
fn rows_per_host(server: &ClickHouse, db: &str) -> Vec<(String, u64)> {
    let answer = server
        .sql(&format!(
            "SELECT host, count() FROM {db}.lifetimes GROUP BY host ORDER BY host FORMAT TabSeparated"
        ))
        .unwrap_or_default();
    answer
        .lines()
        .filter_map(|l| {
            let (h, n) = l.split_once('\t')?;
            Some((h.to_string(), n.parse().ok()?))
        })
        .collect()
}

/// Waits until ClickHouse holds `want` rows per host (or the time is up); what it holds.
fn await_rows(server: &ClickHouse, db: &str, want: &[(String, u64)]) -> Vec<(String, u64)> {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let have = rows_per_host(server, db);
        if have == want || Instant::now() > until {
            return have;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `n` normal connections and `refused` refused connects in `ns`: 2n + refused lifetimes.
fn churn(
    ns: &NamedNetns,
    listener: &TcpListener,
    port: u16,
    n: usize,
    refused: usize,
) -> TestResult {
    for _ in 0..n {
        normal(ns, listener, port)?;
    }
    let closed = ns
        .within(|| TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()))
        .map_err(fail)?
        .map_err(|e| fail(e.to_string()))?
        .port();
    for _ in 0..refused {
        if ns
            .within(|| TcpStream::connect(("127.0.0.1", closed)))
            .map_err(fail)?
            .is_ok()
        {
            return Err(fail(format!("port {closed} accepted a connection")));
        }
    }
    Ok(())
}

fn clickhouse_fleet() -> TestResult {
    let mut server = ClickHouse::new("fleet")?;
    let db = "fleet";
    let url = server.url(db);
    let hosts = ["node-a", "node-b"];
    let mut nets = Vec::new();
    let mut recorders = Vec::new();
    let mut spools = Vec::new();
    for host in hosts {
        let ns = NamedNetns::new(host).map_err(fail)?;
        let dir = store_dir(host);
        let store = dir.display().to_string();
        // -N: the recorder watches the namespace and reaches ClickHouse on this loopback.
        let recorder = Tracer::record(&[
            "-N",
            &ns.name,
            "--host",
            host,
            "--sink",
            &url,
            "--store",
            &store,
            "--flush",
            "0.2",
            "--transitions",
        ])
        .map_err(fail)?;
        let (listener, port) = listener_in(&ns)?;
        nets.push((ns, listener, port));
        recorders.push(recorder);
        spools.push(dir.join("spool"));
    }
    // Before the outage: node-a 2×20 + 3 refused, node-b 2×10.
    let (a, b) = (&nets[0], &nets[1]);
    churn(&a.0, &a.1, a.2, 20, 3)?;
    churn(&b.0, &b.1, b.2, 10, 0)?;
    let mut want = vec![(hosts[0].to_string(), 43), (hosts[1].to_string(), 20)];
    let have = await_rows(&server, db, &want);
    if have != want {
        return Err(fail(format!(
            "before the outage ClickHouse has {have:?}, not {want:?}"
        )));
    }
    // The server goes down; connections go on, and wait in the spools.
    server.kill();
    churn(&a.0, &a.1, a.2, 15, 2)?;
    churn(&b.0, &b.1, b.2, 25, 0)?;
    let spooled = Instant::now() + Duration::from_secs(10);
    let waiting = |dir: &PathBuf| std::fs::read_dir(dir).map_or(0, |d| d.count());
    while spools.iter().any(|d| waiting(d) == 0) && Instant::now() < spooled {
        std::thread::sleep(Duration::from_millis(100));
    }
    if spools.iter().any(|d| waiting(d) == 0) {
        return Err(fail("with ClickHouse down, no batch waits in a spool"));
    }
    server.start()?;
    want = vec![
        (hosts[0].to_string(), 43 + 32),
        (hosts[1].to_string(), 20 + 50),
    ];
    let have = await_rows(&server, db, &want);
    let mut summaries = Vec::new();
    for r in recorders {
        summaries.push(stop(r)?);
    }
    let fail_with = |what: String| fail(format!("{what}; recorders said {summaries:#?}"));
    if have != want {
        return Err(fail_with(format!(
            "after the restart ClickHouse has {have:?}, not {want:?}"
        )));
    }
    if summaries
        .iter()
        .any(|s| !s.contains(" 0 wait in the spool") || s.contains(" 0 failed sends"))
    {
        return Err(fail_with(
            "each recorder retried and emptied its spool".to_string(),
        ));
    }
    // Exactly once: no connection twice.
    let twice = server
        .sql(&format!(
            "SELECT count() FROM (SELECT host, cookie, end_ns FROM {db}.lifetimes \
             GROUP BY host, cookie, end_ns HAVING count() > 1) FORMAT TabSeparated"
        ))
        .map_err(fail)?;
    if twice.trim() != "0" {
        return Err(fail_with(format!(
            "{} connections arrived twice",
            twice.trim()
        )));
    }
    // The transitions too: each once, every handshake and every refusal there.
    let changes_twice = server
        .sql(&format!(
            "SELECT count() FROM (SELECT host, cookie, ts_ns, old, new FROM {db}.transitions \
             GROUP BY host, cookie, ts_ns, old, new HAVING count() > 1) FORMAT TabSeparated"
        ))
        .map_err(fail)?;
    // Kernel numbers: SYN-SENT 2, ESTAB 1, CLOSE 7.
    let edge_counts = server
        .sql(&format!(
            "SELECT host, countIf(old = 2 AND new = 1), countIf(old = 2 AND new = 7) \
             FROM {db}.transitions GROUP BY host ORDER BY host FORMAT TabSeparated"
        ))
        .map_err(fail)?;
    if changes_twice.trim() != "0" || edge_counts.trim() != "node-a\t35\t5\nnode-b\t35\t0" {
        return Err(fail_with(format!(
            "transitions: {} twice; handshakes and refusals per host {edge_counts:?}",
            changes_twice.trim()
        )));
    }
    let refusals = history_from(
        &url,
        &[
            "--since",
            "10m",
            "--transitions",
            "--host",
            "node-a",
            "dport",
            "!=",
            &format!(":{}", a.2),
        ],
    )?;
    if refusals
        .iter()
        .filter(|t| t["cause"] == "ECONNREFUSED" && t["host"] == "node-a")
        .count()
        != 5
    {
        return Err(fail_with(format!(
            "history --from --transitions: {refusals:?}"
        )));
    }
    // history --from answers across both hosts, with the host, and selects like the store.
    let all = history_from(&url, &["--since", "10m"])?;
    let count = |host: &str| all.iter().filter(|r| r["host"] == host).count();
    let refused = history_from(
        &url,
        &[
            "--since",
            "10m",
            "--host",
            "node-a",
            "dport",
            "!=",
            &format!(":{}", a.2),
            "and",
            "sport",
            "!=",
            &format!(":{}", a.2),
        ],
    )?;
    let only_b = history_from(&url, &["--since", "10m", &format!("dport = :{}", b.2)])?;
    if count("node-a") != 75
        || count("node-b") != 70
        || refused.len() != 5
        || refused.iter().any(|r| r["cause"] != "ECONNREFUSED")
        || only_b.len() != 35
        || only_b.iter().any(|r| r["host"] != "node-b")
    {
        return Err(fail_with(format!(
            "history --from: node-a {}, node-b {}; refused {refused:?}; to node-b's port {}",
            count("node-a"),
            count("node-b"),
            only_b.len()
        )));
    }
    for d in &spools {
        if let Some(store) = d.parent() {
            let _ = std::fs::remove_dir_all(store);
        }
    }
    Ok(())
}

fn unreachable_sink() -> TestResult {
    // A port nothing listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| fail(e.to_string()))?
        .port();
    let dir = store_dir("unreachable");
    let url = format!("clickhouse://127.0.0.1:{port}/fleet");
    for args in [
        vec!["record", "--sink", &url, "--store"],
        vec!["history", "--from", &url],
    ] {
        let mut cmd = Command::new(sockstat_bin());
        cmd.args(&args);
        if args[0] == "record" {
            cmd.arg(&dir);
        }
        let out = cmd.output().map_err(|e| fail(e.to_string()))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.code() != Some(2)
            || stderr.lines().count() != 1
            || !stderr.contains("ClickHouse does not answer")
            || !out.stdout.is_empty()
        {
            return Err(fail(format!(
                "{args:?}: exit {:?}, stderr {stderr:?}",
                out.status.code()
            )));
        }
    }
    // Nothing was made for a recording that never began.
    if dir.join("spool").exists() {
        return Err(fail("a spool was made for a sink that never answered"));
    }
    Ok(())
}
