//! `cargo xtask bench list`: whole-process timings of sockstat against ss and netstat on
//! 100k sockets, run alternately in one session; medians and peak RSS.
pub mod farm;

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
        // TIME-WAIT lasts 60 s: refresh it before each group so every group sees ~tw of them.
        farms[0].time_wait(tw)?;
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
                "| `{name}` | {m:.3} | {:.2}x | {} |",
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
    let sockstat = root.join("target/release/sockstat").display().to_string();
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
            rounds: rounds.min(3),
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
