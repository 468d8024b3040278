//! Root-only tests of the flight recorder: `sockstat record` in a private network namespace
//! records a scripted mix of connections, and `sockstat history` answers what happened: who,
//! where, when and how each ended; a kill -9 loses at most the last batch; a tiny
//! --max-size holds while recording goes on; a store that is not one is refused and left
//! as it was.
//!
//! Without root every test here is reported as ignored ("needs root"), never as passed.
use std::{
    io::Read,
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use libtest_mimic::{Arguments, Failed};
use serde_json::Value;
use sockstat_tests::{
    NamedNetns, TestResult, Tracer, abort_on_close, fail, root_or_say_skipped, root_trial,
    sockstat_bin,
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
    let out = Command::new(sockstat_bin())
        .arg("history")
        .arg("--store")
        .arg(dir)
        .arg("--json")
        .args(args)
        .output()
        .map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        return Err(fail(format!(
            "history {args:?} exited {:?}: {}",
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
    let client = ns
        .within(|| TcpStream::connect(("127.0.0.1", port)))
        .map_err(fail)?
        .map_err(|e| fail(e.to_string()))?;
    let (server, _) = listener.accept().map_err(|e| fail(e.to_string()))?;
    drop(client);
    let mut byte = [0u8; 1];
    let _ = (&server).read(&mut byte);
    Ok(())
}

fn scripted_mix() -> TestResult {
    let ns = NamedNetns::new("hist").map_err(fail)?;
    let dir = store_dir("mix");
    let store = dir.display().to_string();
    let recorder = Tracer::record_in(&ns, &["--store", &store, "--flush", "0.2"]).map_err(fail)?;
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
