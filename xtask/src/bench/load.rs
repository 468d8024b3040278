//! `cargo xtask bench load`: what the agents cost in memory as they start. Peak RSS while
//! loading and attaching (VmHWM) and RSS once idle, for `trace`, `serve` and `top --once`,
//! next to libbpf-tools' tcpstates, alternating in one run.
use std::{
    fmt::Write as _,
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, Result, bail};

use super::{TracefsMount, median, status_kib, tcpstates_bin};

/// How long an agent runs before it is measured: loading takes well under a second.
const SETTLE: Duration = Duration::from_secs(4);

/// One agent to measure.
struct Agent {
    name: String,
    argv: Vec<String>,
    /// Runs until stopped (measured at `SETTLE`); else runs to its end under GNU time.
    long_running: bool,
}

/// (peak KiB, idle KiB; None for a one-shot command).
fn measure(agent: &Agent) -> Result<(u64, Option<u64>)> {
    if !agent.long_running {
        let sample = super::measure(&agent.argv)?;
        return Ok((sample.max_rss_kib as u64, None));
    }
    let mut child = Command::new(&agent.argv[0])
        .args(&agent.argv[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", agent.name))?;
    std::thread::sleep(SETTLE);
    if let Some(status) = child.try_wait()? {
        bail!("{} exited before it was measured ({status})", agent.name);
    }
    let peak = status_kib(child.id(), "VmHWM");
    let idle = status_kib(child.id(), "VmRSS");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    child.wait()?;
    Ok((peak, Some(idle)))
}

/// The host's TCP sockets (in use, and TIME-WAIT), which the agents' first dump holds.
fn host_sockets() -> String {
    let text = std::fs::read_to_string("/proc/net/sockstat").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("TCP: "))
        .map(|l| l.to_string())
        .unwrap_or_default()
}

pub fn load(root: &Path, rounds: usize, baseline: Option<&Path>) -> Result<String> {
    let sockstat = crate::sockstat_bin(root)?.display().to_string();
    let tcpstates = tcpstates_bin();
    // tcpstates attaches classic tracepoints by their tracefs ids.
    let _tracefs = TracefsMount::ensure()?;
    let agents_of = |label: &str, bin: &str| {
        let argv = |args: &[&str]| {
            std::iter::once(bin.to_string())
                .chain(args.iter().map(|a| a.to_string()))
                .collect::<Vec<_>>()
        };
        vec![
            Agent {
                name: format!("{label} trace"),
                argv: argv(&["trace"]),
                long_running: true,
            },
            Agent {
                name: format!("{label} serve"),
                argv: argv(&["serve", "--listen", "127.0.0.1:0"]),
                long_running: true,
            },
            Agent {
                name: format!("{label} top --once --json"),
                argv: argv(&["top", "--once", "--json"]),
                long_running: false,
            },
        ]
    };
    let mut agents = agents_of("sockstat", &sockstat);
    agents.push(Agent {
        name: "tcpstates (libbpf-tools)".into(),
        argv: vec![tcpstates.to_string()],
        long_running: true,
    });
    if let Some(old) = baseline {
        agents.extend(agents_of("baseline", &old.display().to_string()));
    }
    let mut peaks: Vec<Vec<f64>> = vec![Vec::new(); agents.len()];
    let mut idles: Vec<Vec<f64>> = vec![Vec::new(); agents.len()];
    let sockets_before = host_sockets();
    for round in 0..rounds {
        for (i, agent) in agents.iter().enumerate() {
            let (peak, idle) = measure(agent)?;
            eprintln!(
                "bench: round {}: {}: peak {peak} KiB, idle {}",
                round + 1,
                agent.name,
                idle.map_or("-".to_string(), |k| format!("{k} KiB"))
            );
            peaks[i].push(peak as f64);
            if let Some(idle) = idle {
                idles[i].push(idle as f64);
            }
        }
    }
    let mut report = String::new();
    writeln!(
        report,
        "\n### memory at start: {rounds} rounds, alternating (host TCP sockets: {sockets_before})\n"
    )?;
    writeln!(
        report,
        "| agent | peak RSS while loading (VmHWM) KiB, median | RSS idle after {} s KiB, median |",
        SETTLE.as_secs()
    )?;
    writeln!(report, "|---|---|---|")?;
    for (i, agent) in agents.iter().enumerate() {
        let idle = if idles[i].is_empty() {
            "- (one-shot)".to_string()
        } else {
            format!("{:.0}", median(idles[i].clone()))
        };
        writeln!(
            report,
            "| `{}` | {:.0} | {idle} |",
            agent.name,
            median(peaks[i].clone())
        )?;
    }
    eprint!("{report}");
    Ok(report)
}
