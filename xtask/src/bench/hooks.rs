//! `cargo xtask bench hooks`: the kernel time of each sockstat program under the loopback
//! churn, from the kernel's own accounting (`kernel.bpf_stats_enabled`: run count and run
//! time per program, read from the tracer's program fds in /proc/PID/fdinfo). Unlike the
//! churn's rate, which moves by tens of points between rounds on a VM, the time a program
//! takes per run is steady, so a change to a hook can be measured.
use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

use super::{Netns, churn, median};

const STATS_SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// Runs and nanoseconds so far of each program the process holds, by program id.
fn program_stats(pid: u32) -> BTreeMap<u32, (u64, u64)> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return out;
    };
    for entry in dir.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok())
        };
        if let (Some(id), Some(ns), Some(runs)) =
            (field("prog_id:"), field("run_time_ns:"), field("run_cnt:"))
        {
            out.insert(id as u32, (runs, ns));
        }
    }
    out
}

/// A program's name as bpftool gives it (the full function name from BTF, where the
/// kernel keeps 15 characters).
fn program_name(id: u32) -> String {
    let out = Command::new("bpftool")
        .args(["prog", "show", "id", &id.to_string(), "--json"])
        .output();
    out.ok()
        .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
        .and_then(|v| v["name"].as_str().map(str::to_string))
        .unwrap_or_else(|| format!("prog {id}"))
}

/// Switches the kernel's per-program accounting on for as long as this lives.
struct BpfStats {
    before: String,
}

impl BpfStats {
    fn enable() -> Result<Self> {
        let before = std::fs::read_to_string(STATS_SYSCTL).context(STATS_SYSCTL)?;
        std::fs::write(STATS_SYSCTL, "1").context("enabling kernel.bpf_stats_enabled")?;
        Ok(Self { before })
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = std::fs::write(STATS_SYSCTL, self.before.trim());
    }
}

/// `rounds` runs of `count` connections under each tracer; the median over rounds of each
/// program's nanoseconds per run and runs per connection, and the kernel time per
/// connection they add up to.
pub fn hooks(root: &Path, count: usize, rounds: usize, baseline: Option<&Path>) -> Result<String> {
    let sockstat = crate::sockstat_bin(root)?.display().to_string();
    let mut tracers: Vec<(String, Vec<String>)> = [
        ("trace --count-only", &["--count-only"][..]),
        ("trace > file", &[][..]),
        ("trace --json > file", &["--json"][..]),
        (
            "trace --events all --json > file",
            &["--events", "all", "--json"][..],
        ),
    ]
    .into_iter()
    .map(|(name, args)| {
        let mut argv = vec![sockstat.clone(), "trace".to_string()];
        argv.extend(args.iter().map(|a| a.to_string()));
        (name.to_string(), argv)
    })
    .collect();
    if let Some(old) = baseline {
        let old = old.display().to_string();
        tracers.push((
            "baseline trace > file".into(),
            vec![old.clone(), "trace".into()],
        ));
        tracers.push((
            "baseline trace --count-only".into(),
            vec![old, "trace".into(), "--count-only".into()],
        ));
    }
    let _stats = BpfStats::enable()?;
    const NS: &str = "sst-bench-hooks";
    let out_file = std::env::temp_dir().join("sockstat-bench-hooks.out");
    // (tracer, program) -> per-round (ns per run, runs per connection).
    let mut seen: BTreeMap<(usize, String), Vec<(f64, f64)>> = BTreeMap::new();
    let mut port = 30600u16;
    for round in 0..rounds {
        // Every other round in reverse, so a tracer's place in the round cancels out: in a
        // fixed order, hooks whose code had not changed differed by 15-20 % between two
        // binaries, as much as the change being measured.
        let mut order: Vec<usize> = (0..tracers.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let (name, argv) = &tracers[i];
            port += 1;
            let _ns = Netns::new(NS)?;
            let mut child = Command::new("ip")
                .args(["netns", "exec", NS])
                .args(argv)
                .stdout(Stdio::from(std::fs::File::create(&out_file)?))
                .stderr(Stdio::null())
                .spawn()
                .with_context(|| format!("starting {name}"))?;
            std::thread::sleep(std::time::Duration::from_secs(2));
            if let Some(status) = child.try_wait()? {
                bail!("{name} exited before the churn ({status})");
            }
            // `ip netns exec` execs the tracer: the child's pid is the tracer's.
            let before = program_stats(child.id());
            churn::run_in(NS, port, count)?;
            std::thread::sleep(std::time::Duration::from_millis(500));
            let after = program_stats(child.id());
            // Named while they are loaded.
            let names: BTreeMap<u32, String> =
                after.keys().map(|&id| (id, program_name(id))).collect();
            // SAFETY: signalling our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
            let _ = child.wait();
            for (id, (runs, ns)) in after {
                let (runs0, ns0) = before.get(&id).copied().unwrap_or((0, 0));
                let runs = runs.saturating_sub(runs0);
                if runs == 0 {
                    continue;
                }
                let per_run = ns.saturating_sub(ns0) as f64 / runs as f64;
                seen.entry((i, names[&id].clone()))
                    .or_default()
                    .push((per_run, runs as f64 / count as f64));
            }
            eprintln!("bench: hooks under {name}: round done");
        }
    }
    let mut report = String::new();
    writeln!(
        report,
        "\n### kernel time per program: {count} loopback connections per run, {rounds} rounds\n"
    )?;
    writeln!(
        report,
        "From `kernel.bpf_stats_enabled` (which adds its own two clock reads to every run); \
         medians over rounds, the tracers in reverse order every other round. Programs that \
         ran less than once per 100 connections are left out of the table but not of the \
         total.\n"
    )?;
    writeln!(
        report,
        "| tracer | program | runs per connection | ns per run | µs per connection |"
    )?;
    writeln!(report, "|---|---|---|---|---|")?;
    for (i, (name, _)) in tracers.iter().enumerate() {
        let mut total = 0.0;
        for ((_, program), samples) in seen.iter().filter(|((t, _), _)| *t == i) {
            let per_run = median(samples.iter().map(|s| s.0).collect());
            let per_conn = median(samples.iter().map(|s| s.1).collect());
            total += per_run * per_conn / 1000.0;
            if per_conn >= 0.01 {
                writeln!(
                    report,
                    "| `{name}` | `{program}` | {per_conn:.2} | {per_run:.0} | {:.2} |",
                    per_run * per_conn / 1000.0
                )?;
            }
        }
        writeln!(report, "| `{name}` | **all** | | | **{total:.2}** |")?;
    }
    eprint!("{report}");
    Ok(report)
}
