//! The workspace's test binaries, and how one machine runs them: built once, then each in
//! turn, except the root suites that keep to private network namespaces and mostly wait,
//! which start first and run beside the rest. `cargo xtask test`, the host row of
//! `cargo xtask vmtest` and the script each guest runs (vmtest/guest.rs) follow this plan.
//!
//! cargo runs test binaries strictly one after another, with no way to run two at once, so
//! `cargo xtask test` builds them with cargo and runs them itself.
use std::{
    fmt::Write as _,
    fs,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

use crate::release_cargo;

/// One test binary cargo built.
#[derive(Clone, Debug)]
pub struct TestBinary {
    /// The target's name: `root`, `lab`, ... for the root suites.
    pub name: String,
    pub exe: PathBuf,
    /// Its package's directory, where cargo runs a test binary.
    pub dir: PathBuf,
    /// An integration test of the `sockstat-tests` package.
    pub root_suite: bool,
}

/// Root suites that keep to private network namespaces and spend most of their time waiting
/// (TIME-WAIT's 60 s, in the lab one exercise after the other): they run beside the others.
/// On the host that cut `cargo xtask test`'s suites from 246 to 106 s.
const BESIDE: [&str; 2] = ["timewait", "lab"];

pub fn runs_beside(suite: &TestBinary) -> bool {
    suite.root_suite && BESIDE.contains(&suite.name.as_str())
}

/// The root suites' order, as the README lists them: the trace first.
const ORDER: [&str; 10] = [
    "root", "parity", "top", "netstat", "serve", "limits", "timewait", "history", "lab", "package",
];

/// Builds every test binary of the workspace, as `cargo test` would build them, and lists
/// them in cargo's order, the root suites last in `ORDER`.
pub fn build(root: &Path) -> Result<Vec<TestBinary>> {
    let out = release_cargo(root, "test")?
        .args([
            "--workspace",
            "--exclude",
            "sockstat-ebpf",
            "--no-run",
            "--message-format=json",
        ])
        .stderr(Stdio::inherit())
        .output()
        .context("building the test binaries")?;
    if !out.status.success() {
        bail!("building the test binaries failed");
    }
    let suites_manifest = root.join("tests/Cargo.toml");
    let mut binaries = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" || msg["profile"]["test"] != true {
            continue;
        }
        let (Some(name), Some(exe), Some(manifest)) = (
            msg["target"]["name"].as_str(),
            msg["executable"].as_str(),
            msg["manifest_path"].as_str(),
        ) else {
            continue;
        };
        let manifest = Path::new(manifest);
        let integration = msg["target"]["kind"]
            .as_array()
            .is_some_and(|k| k.iter().any(|k| k == "test"));
        binaries.push(TestBinary {
            name: name.to_string(),
            exe: PathBuf::from(exe),
            dir: manifest.parent().unwrap_or(root).to_path_buf(),
            root_suite: integration && manifest == suites_manifest,
        });
    }
    let rank = |b: &TestBinary| {
        b.root_suite.then(|| {
            ORDER
                .iter()
                .position(|s| *s == b.name)
                .unwrap_or(ORDER.len())
        })
    };
    // Stable: the other binaries keep cargo's order, ahead of the root suites.
    binaries.sort_by_key(|b| rank(b));
    Ok(binaries)
}

/// The root suites among `binaries`, in order.
pub fn root_suites(binaries: Vec<TestBinary>) -> Result<Vec<TestBinary>> {
    let suites: Vec<TestBinary> = binaries.into_iter().filter(|b| b.root_suite).collect();
    if suites.is_empty() {
        bail!("cargo built no test binaries for sockstat-tests");
    }
    Ok(suites)
}

/// What one test binary printed (stdout and stderr), and its exit status.
pub struct Ran {
    pub log: String,
    pub status: Option<i32>,
}

/// How [`run_here`] runs each binary.
pub struct Runner<'a> {
    pub env: &'a [(&'a str, &'a Path)],
    /// Arguments for every binary.
    pub args: &'a [String],
    /// Starts every line echoed (`[host] ` in vmtest's host row).
    pub prefix: &'a str,
    /// The output of the binaries run beside the others until they finish.
    pub logs: &'a Path,
}

/// Runs `binaries` here: those that run beside the others start first, in the background,
/// their output kept in `logs`; the rest run in turn, echoed as they print; `meanwhile`
/// runs after them; then the ones beside are waited for and echoed whole. One [`Ran`] per
/// binary, in `binaries`' order.
pub fn run_here<T>(
    binaries: &[TestBinary],
    runner: &Runner,
    meanwhile: impl FnOnce() -> Result<T>,
) -> Result<(Vec<Ran>, T)> {
    fs::create_dir_all(runner.logs)?;
    let mut beside: Vec<(usize, Child, PathBuf)> = Vec::new();
    for (i, b) in binaries.iter().enumerate().filter(|(_, b)| runs_beside(b)) {
        let log_path = runner.logs.join(format!("{}.log", b.name));
        let log = fs::File::create(&log_path)?;
        println!("{}     Running {} beside the others", runner.prefix, b.name);
        let child = command(b, runner)
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", b.exe.display()))?;
        beside.push((i, child, log_path));
    }
    let mut ran: Vec<Option<Ran>> = binaries.iter().map(|_| None).collect();
    for (i, b) in binaries.iter().enumerate().filter(|(_, b)| !runs_beside(b)) {
        println!(
            "{}     Running {} ({})",
            runner.prefix,
            b.name,
            b.exe.display()
        );
        ran[i] = Some(run_echoed(b, runner)?);
    }
    let value = meanwhile()?;
    for (i, mut child, log_path) in beside {
        let status = child.wait()?;
        let log = fs::read_to_string(&log_path).unwrap_or_default();
        println!(
            "{}     Ran {} beside the others:",
            runner.prefix, binaries[i].name
        );
        for line in log.lines() {
            println!("{}{line}", runner.prefix);
        }
        ran[i] = Some(Ran {
            log,
            status: status.code(),
        });
    }
    Ok((ran.into_iter().flatten().collect(), value))
}

fn command(b: &TestBinary, runner: &Runner) -> Command {
    let mut cmd = Command::new(&b.exe);
    cmd.args(runner.args).current_dir(&b.dir);
    for (k, v) in runner.env {
        cmd.env(k, v);
    }
    cmd
}

/// Runs one binary, echoing its lines as they come.
fn run_echoed(b: &TestBinary, runner: &Runner) -> Result<Ran> {
    let mut child = command(b, runner)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", b.exe.display()))?;
    let err = child.stderr.take();
    let prefix = runner.prefix.to_string();
    let err_lines = std::thread::spawn(move || {
        let mut s = String::new();
        for line in err.into_iter().flat_map(|e| BufReader::new(e).lines()) {
            let Ok(line) = line else { break };
            eprintln!("{prefix}{line}");
            let _ = writeln!(s, "{line}");
        }
        s
    });
    let mut log = String::new();
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines() {
            let line = line?;
            println!("{}{line}", runner.prefix);
            let _ = writeln!(log, "{line}");
        }
    }
    let status = child.wait()?;
    log.push_str(&err_lines.join().unwrap_or_default());
    Ok(Ran {
        log,
        status: status.code(),
    })
}
