//! Root-only tests of `sockstat lab`: every exercise passes against the real kernel, and an
//! interrupted run leaves no namespace or interface behind.
//!
//! Without root every test here is reported as ignored ("needs root"), never as passed.
use std::{
    collections::BTreeSet,
    net::{TcpListener, TcpStream},
    os::unix::fs::MetadataExt as _,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use libtest_mimic::{Arguments, Failed};
use serde_json::Value;
use sockstat_tests::{
    NamedNetns, NobodyBinary, TestResult, abort_on_close, cgroup2_root, fail, root_or_say_skipped,
    root_trial, sockstat_bin,
};

fn main() {
    let args = Arguments::from_args();
    let root = root_or_say_skipped("lab");
    let trials = vec![
        root_trial("lab_run_all_json_passes", root, run_all),
        root_trial("lab_interrupted_leaves_nothing_behind", root, interrupted),
        root_trial("lab_bad_input_is_one_line_exit_2", root, bad_input),
        root_trial(
            "lab_keeps_to_its_namespaces_under_other_traffic",
            root,
            other_traffic,
        ),
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

/// The network namespaces `pid`'s threads are in, other than this process's own (the lab's
/// namespaces belong to threads, which lsns does not look at).
fn thread_namespaces(pid: u32) -> Result<BTreeSet<u64>, Failed> {
    let own = namespace_inode("/proc/self/ns/net")?;
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).map_err(|e| fail(e.to_string()))?;
    Ok(tasks
        .flatten()
        .filter_map(|t| namespace_inode(t.path().join("ns/net")).ok())
        .filter(|&ns| ns != own)
        .collect())
}

fn namespace_inode(path: impl AsRef<Path>) -> Result<u64, Failed> {
    std::fs::metadata(path)
        .map(|m| m.ino())
        .map_err(|e| fail(e.to_string()))
}

fn links() -> String {
    Command::new("ip")
        .args(["-o", "link"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn interrupted() -> TestResult {
    let (cgroup2, _mounted) = cgroup2_root(std::process::id()).map_err(fail)?;
    for signal in ["INT", "TERM"] {
        // The lab in a cgroup of its own: whatever it starts stays in it, so anything that
        // outlives it (and would keep one of its namespaces) is found there. Counting
        // namespaces cannot tell: other suites run beside this one, and a freed
        // namespace's inode number is handed out again at once.
        let group = cgroup2.join(format!("sst-lab-{}-{signal}", std::process::id()));
        std::fs::create_dir(&group).map_err(|e| fail(format!("{}: {e}", group.display())))?;
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#"echo $$ > "$1/cgroup.procs" && exec "$2" lab run simultaneous-close --slow"#)
            .arg("sh")
            .arg(&group)
            .arg(sockstat_bin())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| fail(e.to_string()))?;
        // --slow pauses 1.5 s per step: the exercise is still running once both of its
        // namespaces exist (loading the programs first takes seconds in an emulated guest).
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(fail(format!("the lab ended early: {status}")));
            }
            let during = thread_namespaces(child.id())?;
            if during.len() >= 2 {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err(fail(format!(
                    "expected two lab namespaces while running, saw {}",
                    during.len()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .map_err(|e| fail(e.to_string()))?;
        let _ = child.wait();
        std::thread::sleep(Duration::from_millis(500));
        let left = std::fs::read_to_string(group.join("cgroup.procs")).unwrap_or_default();
        let _ = std::fs::remove_dir(&group);
        if !left.trim().is_empty() {
            let left: Vec<String> = left
                .split_whitespace()
                .map(|pid| {
                    let comm =
                        std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                    format!("{pid} ({})", comm.trim())
                })
                .collect();
            return Err(fail(format!("SIG{signal}: the lab left {left:?} running")));
        }
        if links().contains("veth-a") || links().contains("veth-b") {
            return Err(fail(format!(
                "SIG{signal}: a lab interface leaked:\n{}",
                links()
            )));
        }
    }
    Ok(())
}

/// The lab keeps to its own namespaces in the kernel: connections churned in another
/// namespace all through syn-timeout's 3 s in connect(), many times what the lab's ring
/// holds, cost its first attempt nothing. Without the kernel's namespace set they filled
/// the ring, the exercise's SYN-SENT -> CLOSE was lost, and every attempt failed.
fn other_traffic() -> TestResult {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
    let ns = NamedNetns::new("labchurn").map_err(fail)?;
    let (stop, churned) = (AtomicBool::new(false), AtomicU64::new(0));
    let (out, churn) = std::thread::scope(|s| {
        let churn = s.spawn(|| {
            ns.within(|| -> Result<(), String> {
                let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
                let port = listener.local_addr().map_err(|e| e.to_string())?.port();
                while !stop.load(Relaxed) {
                    let client = TcpStream::connect(("127.0.0.1", port))
                        .map_err(|e| format!("connect: {e}"))?;
                    let (server, _) = listener.accept().map_err(|e| format!("accept: {e}"))?;
                    // An RST: no TIME-WAIT socket holds the port afterwards.
                    abort_on_close(&client)?;
                    drop((client, server));
                    churned.fetch_add(1, Relaxed);
                }
                Ok(())
            })
        });
        let out = Command::new(sockstat_bin())
            .args(["lab", "run", "syn-timeout", "--json"])
            .output();
        stop.store(true, Relaxed);
        (out, churn.join())
    });
    let out = out.map_err(|e| fail(e.to_string()))?;
    churn
        .map_err(|_| fail("the churn thread panicked"))?
        .map_err(fail)?
        .map_err(fail)?;
    let churned = churned.load(Relaxed);
    if churned < 1000 {
        return Err(fail(format!(
            "only {churned} connections churned during the exercise: too few to fill the ring"
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let result: Value =
        serde_json::from_str(text.trim()).map_err(|e| fail(format!("{e}: {text}")))?;
    let repeated: Vec<&Value> = result["notes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|n| n.as_str().is_some_and(|n| n.contains("was repeated")))
        .collect();
    if out.status.code() != Some(0) || result["passed"] != true || !repeated.is_empty() {
        return Err(fail(format!(
            "with {churned} connections churned elsewhere: exit {:?}, {result}",
            out.status.code()
        )));
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
