//! `cargo xtask bench list`: whole-process timings of sockstat against ss and netstat on
//! 100k sockets, run alternately in one session; medians and peak RSS.
pub mod churn;
pub mod farm;
mod hooks;
mod load;
mod record;

pub use hooks::hooks;
pub use load::load;
pub use record::record;

use std::{
    fmt::Write as _,
    io::{BufRead, BufReader, Write},
    path::Path,
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, Result, bail};

/// One measured run.
struct Sample {
    seconds: f64,
    max_rss_kib: i64,
}

/// Runs `argv` with stdout to /dev/null; wall time, and peak RSS from GNU time. Measuring
/// RSS with our own wait4 would report at least xtask's own size: a child's maxrss includes
/// the memory it had before exec, and a spawned child starts as a copy of xtask.
fn measure(argv: &[String]) -> Result<Sample> {
    let rss_file = std::env::temp_dir().join(format!("sockstat-bench-rss-{}", std::process::id()));
    let start = Instant::now();
    let status = Command::new("/usr/bin/time")
        .args(["-f", "%M", "-o"])
        .arg(&rss_file)
        .args(argv)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .with_context(|| format!("starting {} under /usr/bin/time", argv[0]))?;
    let seconds = start.elapsed().as_secs_f64();
    if !status.success() {
        bail!("{} failed ({status})", argv.join(" "));
    }
    let max_rss_kib = std::fs::read_to_string(&rss_file)?
        .trim()
        .parse()
        .context("reading GNU time's %M")?;
    Ok(Sample {
        seconds,
        max_rss_kib,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

struct Farm {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Farm {
    fn start(port: u16, pairs: usize) -> Result<Self> {
        let mut child = Command::new(std::env::current_exe()?)
            .args([
                "farm",
                "--port",
                &port.to_string(),
                "--pairs",
                &pairs.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting a socket farm")?;
        let stdin = child.stdin.take().context("farm stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("farm stdout")?);
        let mut farm = Farm {
            child,
            stdin,
            stdout,
        };
        let line = farm.read_line()?;
        if !line.starts_with("ready") {
            bail!("farm on port {port}: {line}");
        }
        Ok(farm)
    }

    fn read_line(&mut self) -> Result<String> {
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        Ok(line.trim().to_string())
    }

    fn time_wait(&mut self, n: usize) -> Result<()> {
        writeln!(self.stdin, "tw {n}")?;
        self.stdin.flush()?;
        let line = self.read_line()?;
        if line != "ok" {
            bail!("farm: {line}");
        }
        Ok(())
    }
}

impl Drop for Farm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn count_sockets() -> Result<(usize, usize)> {
    let out = Command::new("ss").args(["-tanH"]).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let total = text.lines().count();
    let tw = text.lines().filter(|l| l.starts_with("TIME-WAIT")).count();
    Ok((total, tw))
}

struct Group<'a> {
    title: &'a str,
    rounds: usize,
    commands: Vec<(String, Vec<String>)>,
}

/// Runs each group's commands alternately, `rounds` times; returns a markdown table.
fn run_groups(groups: &[Group<'_>], farms: &mut [Farm], tw: usize) -> Result<String> {
    let mut report = String::new();
    for group in groups {
        // TIME-WAIT lasts 60 s. Refresh it only when most has expired, so every group sees
        // roughly `tw` of them on top of the ESTAB sockets, not a pile-up of refreshes.
        if count_sockets()?.1 < tw / 2 {
            // Some new TIME-WAIT sockets are recycled by later connections: top up.
            for _ in 0..3 {
                let have = count_sockets()?.1;
                if have >= tw * 9 / 10 {
                    break;
                }
                farms[0].time_wait(tw - have)?;
            }
        }
        let (total, tws) = count_sockets()?;
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); group.commands.len()];
        let mut rss: Vec<i64> = vec![0; group.commands.len()];
        for _ in 0..group.rounds {
            for (i, (_, argv)) in group.commands.iter().enumerate() {
                let s = measure(argv)?;
                times[i].push(s.seconds);
                rss[i] = rss[i].max(s.max_rss_kib);
            }
        }
        let base = median(times[1].clone());
        writeln!(
            report,
            "\n### {} ({} TCP sockets, {} TIME-WAIT; {} rounds, alternating)\n",
            group.title, total, tws, group.rounds
        )?;
        writeln!(
            report,
            "| command | median s | vs {} | peak RSS KiB |",
            group.commands[1].0
        )?;
        writeln!(report, "|---|---|---|---|")?;
        for (i, (name, _)) in group.commands.iter().enumerate() {
            let m = median(times[i].clone());
            writeln!(
                report,
                "| `{name}` | {m:.3} | {:.3}x | {} |",
                m / base,
                rss[i]
            )?;
        }
        eprint!("{report}");
    }
    Ok(report)
}

/// `cargo xtask bench list`.
pub fn list(root: &Path, rounds: usize) -> Result<String> {
    let sockstat = crate::sockstat_bin(root)?.display().to_string();
    let argv = |s: &str| -> Vec<String> { s.split_whitespace().map(str::to_string).collect() };
    farm::raise_nofile();
    eprintln!("bench: opening 90k established sockets in 5 farms");
    let mut farms = Vec::new();
    for i in 0..5u16 {
        farms.push(Farm::start(31001 + i, 9000)?);
    }
    let groups = [
        Group {
            title: "list all TCP and UDP sockets",
            rounds,
            commands: vec![
                ("sockstat -tuna".into(), argv(&format!("{sockstat} -tuna"))),
                ("ss -tuna".into(), argv("ss -tuna")),
                ("netstat -tuna".into(), argv("netstat -tuna")),
            ],
        },
        Group {
            title: "filtered query",
            rounds,
            commands: vec![
                (
                    "sockstat -tan '( dport = :31003 or sport = :31003 )'".into(),
                    vec![
                        sockstat.clone(),
                        "-tan".into(),
                        "( dport = :31003 or sport = :31003 )".into(),
                    ],
                ),
                (
                    "ss -tan '( dport = :31003 or sport = :31003 )'".into(),
                    vec![
                        "ss".into(),
                        "-tan".into(),
                        "( dport = :31003 or sport = :31003 )".into(),
                    ],
                ),
            ],
        },
        Group {
            title: "with owning processes",
            rounds: rounds.min(5),
            commands: vec![
                (
                    "sockstat -tunap".into(),
                    argv(&format!("{sockstat} -tunap")),
                ),
                ("ss -tunap".into(), argv("ss -tunap")),
            ],
        },
    ];
    run_groups(&groups, &mut farms, 10_000)
}

/// A tracer running beside the churn.
struct Tracer {
    /// The short name `--tracers` selects it by.
    key: &'static str,
    name: &'static str,
    argv: Vec<String>,
    /// Runs in the host's namespace rather than the churn's (tcpstates, which needs the
    /// host's tracefs; a recorder that reaches a server on the host's loopback).
    outside: bool,
    /// A directory emptied before each run (a recorder's store, so every run starts from
    /// the same empty one).
    fresh: Option<std::path::PathBuf>,
}

/// The namespace each churn run makes and deletes.
const CHURN_NS: &str = "sst-bench-trace";

/// What one churn run measured, with or without a tracer.
struct ChurnRun {
    rate: f64,
    /// The machine's busy CPU seconds over the run.
    busy: f64,
    /// The tracer's own CPU seconds, peak RSS and events lost (0 without a tracer).
    cpu: f64,
    rss_kib: u64,
    lost: u64,
}

/// Process CPU seconds (user + system) from /proc/PID/stat.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime) are at 11 and 12 after the comm.
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / ticks_per_second()
}

/// The kernel's clock ticks a second, the unit of /proc's CPU times.
fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    hz.max(1.0)
}

/// Seconds every CPU has spent busy (user, nice, system, irq, softirq; not idle, iowait
/// or steal), from /proc/stat's first line: what a run cost the whole machine, the churn,
/// the tracer and the kernel's hooks together, unaffected by time the hypervisor gave
/// others (steal), which moves the rates of runs on this VM by tens of percent.
fn machine_busy_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let busy: f64 = [0, 1, 2, 5, 6].iter().filter_map(|&i| fields.get(i)).sum();
    busy / ticks_per_second()
}

/// A KiB figure of /proc/PID/status (`VmHWM`, `VmRSS`); 0 if the process is gone.
fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// Sums "lost N" figures from a tracer's stderr (sockstat's summary, libbpf-tools' lines;
/// a recorder's closing line: what the kernel lost, and what the writer or spool dropped).
fn lost_from(stderr: &str) -> u64 {
    const RECORDER_LOSSES: [&str; 4] = [
        " dropped (the writer fell behind)",
        " lost in writing",
        " events lost in the kernel",
        " dropped by --spool-max",
    ];
    let recorder: u64 = stderr
        .lines()
        .filter(|l| l.contains(" connections recorded"))
        .flat_map(|l| {
            RECORDER_LOSSES.iter().filter_map(move |phrase| {
                let before = &l[..l.find(phrase)?];
                before.rsplit([' ', ',', ';']).next()?.parse::<u64>().ok()
            })
        })
        .sum();
    recorder
        + stderr
            .lines()
            .filter_map(|l| {
                if let Some(rest) = l.split(" lost (ring buffer full)").next()
                    && l.contains(" lost (ring buffer full)")
                {
                    return rest.rsplit(", ").next()?.parse::<u64>().ok();
                }
                l.strip_prefix("lost ")?
                    .split_whitespace()
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum::<u64>()
}

/// A network namespace (`ip netns add`) with its loopback up, deleted on drop with every
/// socket in it.
struct Netns {
    name: &'static str,
}

impl Netns {
    fn new(name: &'static str) -> Result<Self> {
        let _ = Command::new("ip")
            .args(["netns", "del", name])
            .stderr(Stdio::null())
            .status();
        for args in [
            &["netns", "add", name][..],
            &["-n", name, "link", "set", "lo", "up"],
        ] {
            let status = Command::new("ip").args(args).status()?;
            anyhow::ensure!(status.success(), "ip {} failed", args.join(" "));
        }
        Ok(Self { name })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", self.name])
            .status();
    }
}

/// tracefs mounted at /sys/kernel/tracing for as long as this lives (unmounted again if
/// this mounted it).
struct TracefsMount {
    mounted_here: bool,
}

impl TracefsMount {
    const PATH: &str = "/sys/kernel/tracing";

    fn ensure() -> Result<Self> {
        if Path::new(Self::PATH).join("events").is_dir() {
            return Ok(TracefsMount {
                mounted_here: false,
            });
        }
        let status = Command::new("mount")
            .args(["-t", "tracefs", "tracefs", Self::PATH])
            .status()
            .context("running mount")?;
        if !status.success() {
            bail!("mounting tracefs on {} failed ({status})", Self::PATH);
        }
        Ok(TracefsMount { mounted_here: true })
    }
}

impl Drop for TracefsMount {
    fn drop(&mut self) {
        if self.mounted_here {
            let _ = Command::new("umount").arg(Self::PATH).status();
        }
    }
}

/// libbpf-tools' tcpstates, where Debian's package puts it (else found on PATH).
fn tcpstates_bin() -> &'static str {
    ["/usr/sbin/tcpstates", "/usr/bin/tcpstates"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("tcpstates")
}

/// The tracers `cargo xtask bench trace` can measure, by key; `baseline` adds another
/// sockstat binary (say, built from an earlier commit) measured in the same run.
fn trace_tracers(sockstat: &str, baseline: Option<&Path>) -> Vec<Tracer> {
    let with = |key, name, bin: &str, args: &[&str]| Tracer {
        key,
        name,
        argv: std::iter::once(bin.to_string())
            .chain(args.iter().map(|a| a.to_string()))
            .collect(),
        outside: key == "tcpstates",
        fresh: None,
    };
    let mut tracers = vec![
        with("text", "sockstat trace > file", sockstat, &["trace"]),
        with(
            "json",
            "sockstat trace --json > file",
            sockstat,
            &["trace", "--json"],
        ),
        with(
            "all",
            "sockstat trace --events all --json > file",
            sockstat,
            &["trace", "--events", "all", "--json"],
        ),
        with(
            "count-only",
            "sockstat trace --count-only",
            sockstat,
            &["trace", "--count-only"],
        ),
        with(
            "tcpstates",
            "tcpstates > file (libbpf-tools)",
            tcpstates_bin(),
            &[],
        ),
    ];
    if let Some(old) = baseline {
        let old = old.display().to_string();
        tracers.push(with(
            "baseline-text",
            "baseline trace > file",
            &old,
            &["trace"],
        ));
        tracers.push(with(
            "baseline-count-only",
            "baseline trace --count-only",
            &old,
            &["trace", "--count-only"],
        ));
    }
    tracers
}

/// `cargo xtask bench trace`: loopback churn under each tracer (`only`: the keys of
/// `trace_tracers` to run, all when empty). Every tracer's run sits between two runs without
/// one, and is measured against their mean: the machine's own rate drifts by more than a
/// tracer costs within a round of many runs.
pub fn trace(
    root: &Path,
    count: usize,
    rounds: usize,
    baseline: Option<&Path>,
    only: &[String],
) -> Result<String> {
    let sockstat = crate::sockstat_bin(root)?.display().to_string();
    let mut tracers = trace_tracers(&sockstat, baseline);
    if let Some(unknown) = only.iter().find(|k| !tracers.iter().any(|t| t.key == *k)) {
        let keys: Vec<&str> = tracers.iter().map(|t| t.key).collect();
        bail!(
            "--tracers: no tracer {unknown:?} (one of {}{})",
            keys.join(", "),
            if baseline.is_none() {
                "; the baseline ones need --baseline"
            } else {
                ""
            }
        );
    }
    if !only.is_empty() {
        tracers.retain(|t| only.iter().any(|k| k == t.key));
    }
    churn_under(tracers, count, rounds)
}

/// Loopback churn under each of `tracers`, each run between two runs without one; the
/// report's table.
fn churn_under(tracers: Vec<Tracer>, count: usize, rounds: usize) -> Result<String> {
    // libbpf-tools attaches classic tracepoints by their tracefs ids; sockstat leaves no
    // tracefs mounted behind it, so the bench mounts one for the whole run.
    let _tracefs = TracefsMount::ensure()?;
    let mut bare: Vec<ChurnRun> = Vec::new();
    // Per tracer: each run, and the mean of the bare runs on either side of it.
    let mut runs: Vec<Vec<(ChurnRun, f64, f64)>> = tracers.iter().map(|_| Vec::new()).collect();
    let mut port = 30100u16;
    for _ in 0..rounds {
        port += 1;
        let mut before = churn_run(None, port, count)?;
        for (i, t) in tracers.iter().enumerate() {
            port += 2;
            let run = churn_run(Some(t), port, count)?;
            let after = churn_run(None, port + 1, count)?;
            runs[i].push((
                run,
                (before.rate + after.rate) / 2.0,
                (before.busy + after.busy) / 2.0,
            ));
            bare.push(std::mem::replace(&mut before, after));
        }
        bare.push(before);
    }
    let mut report = String::new();
    writeln!(
        report,
        "\n### loopback churn: {count} connections per run, {rounds} rounds\n"
    )?;
    writeln!(
        report,
        "Each tracer's run sits between two runs without a tracer, and \"vs no tracer\" is the \
         median over rounds of its rate over their mean: the machine's own rate drifts by more \
         than a tracer costs over a round of many runs, and the runs on either side cancel \
         most of it.\n"
    )?;
    writeln!(
        report,
        "\"CPU-bound rate\" is the rate the machine's busy time allows: the runs without a \
         tracer's busy CPU seconds over this run's (median of the same pairs). It counts \
         everything a tracer adds (its own CPU, the hooks in the kernel, wake-ups) and none \
         of the time the hypervisor gave others.\n"
    )?;
    writeln!(
        report,
        "| tracer | median conn/s | vs no tracer (median) | each round (%) | machine CPU µs per connection | CPU-bound rate vs no tracer | events lost | tracer CPU s per run | tracer peak RSS KiB |"
    )?;
    writeln!(report, "|---|---|---|---|---|---|---|---|---|")?;
    let per_conn = |busy: Vec<f64>| median(busy) / count as f64 * 1e6;
    writeln!(
        report,
        "| no tracer ({} runs) | {:.0} | 100 % | - | {:.0} | 100 % | - | - | - |",
        bare.len(),
        median(bare.iter().map(|r| r.rate).collect()),
        per_conn(bare.iter().map(|r| r.busy).collect()),
    )?;
    for (t, runs) in tracers.iter().zip(&runs) {
        let ratios: Vec<f64> = runs
            .iter()
            .map(|(r, base, _)| r.rate / base * 100.0)
            .collect();
        let cpu_bound: Vec<f64> = runs
            .iter()
            .map(|(r, _, base)| base / r.busy * 100.0)
            .collect();
        let each: Vec<String> = ratios.iter().map(|r| format!("{r:.0}")).collect();
        writeln!(
            report,
            "| `{}` | {:.0} | {:.1} % | {} | {:.0} | {:.1} % | {} | {:.2} | {} |",
            t.name,
            median(runs.iter().map(|(r, ..)| r.rate).collect()),
            median(ratios),
            each.join(" "),
            per_conn(runs.iter().map(|(r, ..)| r.busy).collect()),
            median(cpu_bound),
            runs.iter().map(|(r, ..)| r.lost).sum::<u64>(),
            runs.iter().map(|(r, ..)| r.cpu).sum::<f64>() / runs.len().max(1) as f64,
            runs.iter().map(|(r, ..)| r.rss_kib).max().unwrap_or(0),
        )?;
    }
    eprint!("{report}");
    Ok(report)
}

/// One churn run of `count` connections on `port`, in a namespace of its own that is
/// deleted after it (the 40k TIME-WAIT sockets a run leaves would otherwise slow the next
/// runs' connects, a port search through them, so a run's place in the round would decide
/// its rate), under `tracer` if any.
fn churn_run(tracer: Option<&Tracer>, port: u16, count: usize) -> Result<ChurnRun> {
    const NS: &str = CHURN_NS;
    let out_file = std::env::temp_dir().join("sockstat-bench-trace.out");
    let err_file = std::env::temp_dir().join("sockstat-bench-trace.err");
    let _ns = Netns::new(NS)?;
    let mut child = match tracer {
        None => None,
        Some(t) => {
            // tcpstates traces every namespace, and needs the host's tracefs, which `ip
            // netns exec` hides (it mounts a sysfs of the namespace).
            if let Some(dir) = &t.fresh {
                let _ = std::fs::remove_dir_all(dir);
            }
            let mut argv: Vec<String> = Vec::new();
            if !t.outside {
                argv.extend(["ip", "netns", "exec", NS].map(String::from));
            }
            argv.extend(t.argv.iter().cloned());
            let mut c = Command::new(&argv[0])
                .args(&argv[1..])
                .stdout(Stdio::from(std::fs::File::create(&out_file)?))
                .stderr(Stdio::from(std::fs::File::create(&err_file)?))
                .spawn()
                .with_context(|| format!("starting {}", t.name))?;
            // Loading and attaching takes well under this.
            std::thread::sleep(std::time::Duration::from_secs(2));
            if let Some(status) = c.try_wait()? {
                // A tracer that did not start would be measured as free.
                bail!(
                    "{} exited before the churn ({status}): {}",
                    t.name,
                    std::fs::read_to_string(&err_file)
                        .unwrap_or_default()
                        .trim()
                );
            }
            Some(c)
        }
    };
    let cpu_before = child.as_ref().map_or(0.0, |c| cpu_seconds(c.id()));
    let busy_before = machine_busy_seconds();
    let rate = churn::run_in(NS, port, count)?;
    // Let the tracer catch up with the queue (every run waits alike, so the machine's busy
    // time covers the same span for each).
    std::thread::sleep(std::time::Duration::from_millis(500));
    let mut run = ChurnRun {
        rate,
        busy: machine_busy_seconds() - busy_before,
        cpu: 0.0,
        rss_kib: 0,
        lost: 0,
    };
    if let Some(mut c) = child.take() {
        run.cpu = cpu_seconds(c.id()) - cpu_before;
        run.rss_kib = status_kib(c.id(), "VmHWM");
        // SAFETY: signalling our own child.
        unsafe { libc::kill(c.id() as i32, libc::SIGINT) };
        let _ = c.wait();
        run.lost = lost_from(&std::fs::read_to_string(&err_file).unwrap_or_default());
    }
    eprintln!(
        "bench: {} -> {rate:.0} connections/s",
        tracer.map_or("no tracer", |t| t.name)
    );
    Ok(run)
}

/// `cargo xtask bench soak`: the agents at the TIME-WAIT cap. In a namespace of its own
/// (`tcp_max_tw_buckets` 131072), loopback churn at `SOAK_RATE` connections a second keeps
/// the TIME-WAIT table full (131072 sockets live 60 s; 3000/s refill it with overflows to
/// spare) for `secs` seconds, under `sockstat trace > /dev/null` and `sockstat serve`. Their
/// RSS every 10 s and at peak, the live table's size, and the events lost against those
/// seen, beside the targets (RSS <= 40 MiB, loss <= 0.01 %).
pub fn soak(root: &Path, secs: u64) -> Result<String> {
    const SOAK_RATE: u64 = 3_000;
    const NS: &str = "sst-soak";
    let sockstat = crate::sockstat_bin(root)?;
    let ns = Netns::new(NS)?;
    let ok = |c: &mut Command| -> Result<()> {
        let st = c.status()?;
        anyhow::ensure!(st.success(), "{c:?} failed");
        Ok(())
    };
    ok(Command::new("ip").args([
        "netns",
        "exec",
        NS,
        "sysctl",
        "-qw",
        "net.ipv4.tcp_max_tw_buckets=131072",
        "net.ipv4.ip_local_port_range=1024 65000",
    ]))?;
    let in_ns = |args: &[&str], err: &Path| -> Result<std::process::Child> {
        Command::new("ip")
            .args(["netns", "exec", NS])
            .arg(&sockstat)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(err)?))
            .spawn()
            .context("starting sockstat")
    };
    let trace_err = std::env::temp_dir().join("sockstat-bench-soak-trace.err");
    let serve_err = std::env::temp_dir().join("sockstat-bench-soak-serve.err");
    let mut trace = in_ns(&["trace"], &trace_err)?;
    let mut serve = in_ns(&["serve", "--listen", "127.0.0.1:19399"], &serve_err)?;
    std::thread::sleep(std::time::Duration::from_secs(5));
    let start = Instant::now();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churner = {
        let stop = stop.clone();
        std::thread::spawn(move || -> Result<()> {
            use std::os::fd::AsRawFd;
            let ns = std::fs::File::open(format!("/run/netns/{NS}"))?;
            // SAFETY: setns on a valid nsfs fd; this thread only.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                anyhow::bail!("setns: {}", std::io::Error::last_os_error());
            }
            let mut port = 27000u16;
            let per_batch = SOAK_RATE / 10;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let batch = Instant::now();
                port = if port >= 27900 { 27000 } else { port + 1 };
                churn::run(port, per_batch as usize)?;
                std::thread::sleep(
                    std::time::Duration::from_millis(100).saturating_sub(batch.elapsed()),
                );
            }
            Ok(())
        })
    };
    let time_wait = || -> String {
        std::fs::read_to_string(format!("/proc/{}/net/sockstat", trace.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("TCP:"))
                    .and_then(|l| l.split("tw ").nth(1))
                    .and_then(|r| r.split_whitespace().next().map(str::to_string))
            })
            .unwrap_or_default()
    };
    let mut report = format!(
        "\n### soak: TIME-WAIT at the cap, {secs} s, {SOAK_RATE} connections/s\n\n\
         | t (s) | TIME-WAIT | trace RSS KiB | serve RSS KiB | live table (serve) |\n|---|---|---|---|---|\n"
    );
    let table = || -> String {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                NS,
                "curl",
                "-s",
                "http://127.0.0.1:19399/metrics",
            ])
            .output();
        let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
        let get = |text: &str, name: &str| {
            text.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
                .unwrap_or_default()
        };
        match text {
            Ok(t) => format!(
                "{} sockets, {} bytes",
                get(&t, "sockstat_live_table_sockets "),
                get(&t, "sockstat_live_table_bytes ")
            ),
            Err(_) => String::new(),
        }
    };
    while start.elapsed().as_secs() < secs {
        writeln!(
            report,
            "| {} | {} | {} | {} | {} |",
            start.elapsed().as_secs(),
            time_wait(),
            status_kib(trace.id(), "VmRSS"),
            status_kib(serve.id(), "VmRSS"),
            table()
        )?;
        std::thread::sleep(std::time::Duration::from_secs(10));
    }
    let peaks = (
        status_kib(trace.id(), "VmHWM"),
        status_kib(serve.id(), "VmHWM"),
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let churned = churner.join();
    for child in [&mut trace, &mut serve] {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let _ = child.wait();
    }
    drop(ns);
    if let Ok(Err(e)) = churned {
        anyhow::bail!("the churn stopped: {e:#}");
    }
    let summary = std::fs::read_to_string(&trace_err).unwrap_or_default();
    let last = summary.lines().last().unwrap_or_default().to_string();
    let number_before = |what: &str| -> u64 {
        last.split(what)
            .next()
            .and_then(|h| h.split_whitespace().last()?.parse().ok())
            .unwrap_or(0)
    };
    let (seen, lost) = (number_before(" events seen"), number_before(" lost"));
    let loss_pct = lost as f64 * 100.0 / (seen + lost).max(1) as f64;
    writeln!(
        report,
        "\npeak RSS: trace {} KiB, serve {} KiB (target <= 40960); events lost: {lost} of {} ({loss_pct:.4} %, target <= 0.01 %)\n\n{last}",
        peaks.0,
        peaks.1,
        seen + lost
    )?;
    eprint!("{report}");
    Ok(report)
}
