//! Root-only tests of `sockstat lab`: every exercise passes against the real kernel, and an
//! interrupted run leaves no namespace or interface behind.
//!
//! Without root every test here is reported as ignored ("needs root"), never as passed.
use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use libtest_mimic::{Arguments, Failed};
use serde_json::Value;
use sockstat_tests::{
    NobodyBinary, TestResult, fail, root_or_say_skipped, root_trial, sockstat_bin,
};

fn main() {
    let mut args = Arguments::from_args();
    // One at a time: the interruption test counts namespaces, which a parallel run changes.
    args.test_threads = Some(1);
    let root = root_or_say_skipped("lab");
    let trials = vec![
        root_trial("lab_run_all_json_passes", root, run_all),
        root_trial("lab_interrupted_leaves_nothing_behind", root, interrupted),
        root_trial("lab_bad_input_is_one_line_exit_2", root, bad_input),
    ];
    libtest_mimic::run(&args, trials).exit();
}

fn run_all() -> TestResult {
    let out = Command::new(sockstat_bin())
        .args(["lab", "run", "all", "--json"])
        .output()
        .map_err(|e| fail(e.to_string()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let results: Vec<Value> = text
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .map_err(|e| fail(format!("{e}: {text}")))?;
    let names: Vec<&str> = results.iter().filter_map(|r| r["name"].as_str()).collect();
    let want = [
        "handshake",
        "simultaneous-open",
        "fast-open",
        "refused",
        "syn-timeout",
        "active-close",
        "passive-close",
        "simultaneous-close",
        "fin-with-ack",
        "time-wait-end",
        "abort",
        "unread-close",
        "listener-close",
        "keepalive-death",
        "rto-death",
        "zero-window",
        "backlog-overflow",
        "syn-flood",
        "close-wait-leak",
        "time-wait-churn",
        "tw-reuse",
    ];
    if names != want {
        return Err(fail(format!("exercises run: {names:?}")));
    }
    let failed: Vec<String> = results
        .iter()
        .filter(|r| r["passed"] != true)
        .map(|r| format!("{}: {}", r["name"], r["failure"]))
        .collect();
    if !failed.is_empty() || out.status.code() != Some(0) {
        return Err(fail(format!(
            "exit {:?}; failed: {failed:?}\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    // Every exercise compared real paths: each role has observed edges equal to expected,
    // and every edge it claims to show (what `lab coverage` counts) was observed.
    for r in &results {
        let mut observed = Vec::new();
        for role in r["roles"].as_array().into_iter().flatten() {
            if role["observed"] != role["expected"] || role["observed"] == serde_json::json!([]) {
                return Err(fail(format!("{}: {role}", r["name"])));
            }
            observed.extend(role["observed"].as_array().into_iter().flatten().cloned());
        }
        for edge in r["shows"].as_array().into_iter().flatten() {
            if !observed.contains(edge) {
                return Err(fail(format!(
                    "{} claims {edge} but did not observe it: {observed:?}",
                    r["name"]
                )));
            }
        }
        if r["part"].as_str().is_none_or(str::is_empty) {
            return Err(fail(format!("{}: no part of the course", r["name"])));
        }
    }
    // Together they show every RFC 9293 edge Linux takes.
    let coverage = Command::new(sockstat_bin())
        .args(["lab", "coverage", "--json"])
        .output()
        .map_err(|e| fail(e.to_string()))?;
    let edges: Vec<Value> = String::from_utf8_lossy(&coverage.stdout)
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .map_err(|e| fail(e.to_string()))?;
    for e in &edges {
        if e["linux"] == "takes" && e["shown_by"] == serde_json::json!([]) {
            return Err(fail(format!("not covered: {e}")));
        }
    }
    if results.len() < 18 || edges.iter().filter(|e| e["rfc"].is_string()).count() != 21 {
        return Err(fail(format!(
            "{} exercises, {} edges",
            results.len(),
            edges.len()
        )));
    }
    Ok(())
}

/// Distinct network namespaces any thread is in (lsns looks at processes only, and the
/// lab's namespaces belong to threads).
fn net_namespaces() -> Result<usize, Failed> {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::BTreeSet::new();
    let procs = std::fs::read_dir("/proc").map_err(|e| fail(e.to_string()))?;
    for p in procs.flatten() {
        let Ok(tasks) = std::fs::read_dir(p.path().join("task")) else {
            continue;
        };
        for t in tasks.flatten() {
            if let Ok(m) = std::fs::metadata(t.path().join("ns/net")) {
                seen.insert(m.ino());
            }
        }
    }
    Ok(seen.len())
}

fn links() -> String {
    Command::new("ip")
        .args(["-o", "link"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn interrupted() -> TestResult {
    let before = net_namespaces()?;
    for signal in ["-INT", "-TERM"] {
        let mut child = Command::new(sockstat_bin())
            .args(["lab", "run", "simultaneous-close", "--slow"])
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| fail(e.to_string()))?;
        // --slow pauses 1.5 s per step: the exercise is still running once both of its
        // namespaces exist (loading the programs first takes seconds in an emulated guest).
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let during = net_namespaces()?;
            if during >= before + 2 {
                break;
            }
            if Instant::now() > deadline {
                return Err(fail(format!(
                    "expected two lab namespaces while running ({before} -> {during})"
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .map_err(|e| fail(e.to_string()))?;
        let _ = child.wait();
        std::thread::sleep(Duration::from_millis(500));
        let after = net_namespaces()?;
        if after != before {
            return Err(fail(format!(
                "{signal}: {after} network namespaces, {before} before"
            )));
        }
        if links().contains("veth-a") || links().contains("veth-b") {
            return Err(fail(format!(
                "{signal}: a lab interface leaked:\n{}",
                links()
            )));
        }
    }
    Ok(())
}

fn bad_input() -> TestResult {
    let out = Command::new(sockstat_bin())
        .args(["lab", "run", "no-such-exercise"])
        .output()
        .map_err(|e| fail(e.to_string()))?;
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.code() != Some(2)
        || !out.stdout.is_empty()
        || err.lines().count() != 1
        || !err.contains("handshake")
    {
        return Err(fail(format!(
            "unknown exercise: {:?} {err:?}",
            out.status.code()
        )));
    }
    // Without root: one line that says so (copied where nobody may run it).
    let out = NobodyBinary::new("lab")
        .map_err(fail)?
        .command()
        .args(["lab", "run", "handshake"])
        .output()
        .map_err(|e| fail(e.to_string()))?;
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.code() != Some(2)
        || !out.stdout.is_empty()
        || err.lines().count() != 1
        || !err.contains("needs root")
    {
        return Err(fail(format!("non-root: {:?} {err:?}", out.status.code())));
    }
    Ok(())
}
