//! One guest: QEMU boots the kernel with the initramfs, the guest runs `run.sh` (written
//! here) against the host's root file system, and writes each suite's output and exit status
//! into a shared results folder.
use std::{
    fmt::Write as _,
    fs,
    io::{BufRead as _, BufReader, Write as _},
    path::Path,
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};

use super::{Outcome, Suite, kernels::KernelTree};
use crate::suites::runs_beside;

/// How QEMU runs the guest's CPU.
#[derive(Clone, Copy, Debug)]
pub enum Accel {
    Kvm,
    /// Software emulation: nested KVM fails on these machines (`lock cmpxchg16b` emulation
    /// errors, MSR 0x10a with `-cpu host`).
    Tcg,
}

impl Accel {
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg (software emulation)",
        }
    }

    fn args(self) -> &'static [&'static str] {
        match self {
            Accel::Kvm => &["-accel", "kvm", "-cpu", "host"],
            Accel::Tcg => &["-accel", "tcg,thread=multi", "-cpu", "max"],
        }
    }

    /// KVM when a guest really boots with it, else TCG. The probe boots the same kernel with
    /// `vmtest.probe`, whose init only prints a line and powers off.
    pub fn detect(tree: &KernelTree, initrd: &Path) -> Accel {
        if !Path::new("/dev/kvm").exists() {
            return Accel::Tcg;
        }
        let child = Command::new("qemu-system-x86_64")
            .args(Accel::Kvm.args())
            .args(["-smp", "1", "-m", "512"])
            .args(common_args(tree, initrd, "vmtest.probe"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn();
        let Ok(mut child) = child else {
            return Accel::Tcg;
        };
        let (tx, rx) = mpsc::channel();
        if let Some(out) = child.stdout.take() {
            std::thread::spawn(move || {
                let ok = BufReader::new(out)
                    .split(b'\n')
                    .map_while(Result::ok)
                    .any(|l| String::from_utf8_lossy(&l).contains("vmtest: probe ok"));
                let _ = tx.send(ok);
            });
        }
        let ok = rx.recv_timeout(Duration::from_secs(30)).unwrap_or(false);
        let _ = child.kill();
        let _ = child.wait();
        if ok { Accel::Kvm } else { Accel::Tcg }
    }
}

/// What a guest run needs.
pub struct Plan<'a> {
    pub tree: &'a KernelTree,
    pub initrd: &'a Path,
    /// `target/vmtest/<series>/`: the console log and the shared results folder.
    pub dir: &'a Path,
    pub accel: Accel,
    pub root: &'a Path,
    pub bin: &'a Path,
    pub suites: &'a [Suite],
    /// Arguments for every suite's test binary.
    pub test_args: &'a [String],
}

/// Longest a suite may run in the guest before it is stopped.
const SUITE_TIMEOUT_S: u64 = 900;

/// Boots the guest, runs every suite in it, and reads back what each reported.
pub fn run(plan: &Plan) -> Result<Vec<Outcome>> {
    // A guest that panics before the first suite starts (TCG's emulation of the kernel's
    // text patching occasionally faults: at boot, or as the keeper tracers attach) has run
    // no test: boot it once more rather than report the suites as failed.
    let first = boot(plan)?;
    let label = plan.tree.release.as_str();
    if !first.started {
        println!("[{label}] vmtest: booting once more (no suite started)");
        return Ok(boot(plan)?.outcomes);
    }
    // The same fault later on: an oops on a breakpoint in kernel text is TCG letting one
    // vCPU run code the other was patching (a static key flipping, e.g. as docker makes
    // the first memory cgroup). Real CPUs and KVM never do; the suites it cut short run
    // again on a fresh boot, and this says so. Any other panic stands.
    let unfinished: Vec<Suite> = plan
        .suites
        .iter()
        .zip(&first.outcomes)
        .filter(|(_, o)| o.status.is_none())
        .map(|(s, _)| s.clone())
        .collect();
    if !first.stale_breakpoint || unfinished.is_empty() {
        return Ok(first.outcomes);
    }
    let names: Vec<&str> = unfinished.iter().map(|s| s.name.as_str()).collect();
    println!(
        "[{label}] vmtest: the guest oopsed on a stale breakpoint in kernel text (TCG's emulation of text patching); booting once more for {}",
        names.join(", ")
    );
    let _ = fs::rename(
        plan.dir.join("console.log"),
        plan.dir.join("console.first-boot.log"),
    );
    let again = boot(&Plan {
        suites: &unfinished,
        ..*plan
    })?;
    let mut rerun = again.outcomes.into_iter();
    let mut outcomes = first.outcomes;
    for o in outcomes.iter_mut().filter(|o| o.status.is_none()) {
        if let Some(second) = rerun.next() {
            *o = second;
        }
    }
    Ok(outcomes)
}

/// What one boot saw.
struct Boot {
    /// A suite started.
    started: bool,
    /// The kernel oopsed on a breakpoint (`int3`) in its own text.
    stale_breakpoint: bool,
    /// Each suite's outcome, in the plan's order.
    outcomes: Vec<Outcome>,
}

/// One boot of the guest, running the plan's suites.
fn boot(plan: &Plan) -> Result<Boot> {
    let out_dir = plan.dir.join("out");
    let _ = fs::remove_dir_all(&out_dir);
    fs::create_dir_all(&out_dir)?;
    fs::write(out_dir.join("run.sh"), run_script(plan)?)?;
    let label = plan.tree.release.as_str();
    println!(
        "[{label}] vmtest: booting {} ({}) with the host's / over 9p",
        plan.tree.vmlinuz.display(),
        plan.accel.name()
    );
    let share = format!(
        "local,path={},mount_tag=out,security_model=none",
        out_dir.display()
    );
    let mut child = Command::new("qemu-system-x86_64")
        .args(plan.accel.args())
        .args(["-smp", "2", "-m", "4096"])
        .args(common_args(plan.tree, plan.initrd, ""))
        .args(["-virtfs", &share])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting qemu-system-x86_64 (package qemu-system-x86)")?;
    let console_path = plan.dir.join("console.log");
    let mut console = fs::File::create(&console_path)?;
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    for stream in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).split(b'\n').map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    // The whole run's bound: every suite at its own limit, plus the boot.
    let deadline =
        Instant::now() + Duration::from_secs(SUITE_TIMEOUT_S * plan.suites.len() as u64 + 300);
    let mut up = false;
    let mut started = false;
    let mut stale_breakpoint = false;
    let mut timed_out = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(raw) => {
                console.write_all(&raw)?;
                console.write_all(b"\n")?;
                let line = printable(&raw);
                up |= line.starts_with("vmtest: guest up");
                started |= line.starts_with("vmtest: suite");
                // "int3: 0000 [#1]" on 6.1, "Oops: int3: 0000 [#1]" on 6.12.
                stale_breakpoint |= line.contains("int3: 0000 [#");
                // Firmware and kernel chatter go to the log only; the suites to the screen.
                if up || line.starts_with("vmtest:") || line.contains("Kernel panic") {
                    println!("[{label}] {line}");
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                timed_out = true;
                println!("[{label}] vmtest: the guest ran past its deadline; stopping it");
                let _ = child.kill();
                break;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let _ = child.wait();
    if !up {
        println!(
            "[{label}] vmtest: the guest never came up{}; see {}",
            if timed_out { " in time" } else { "" },
            console_path.display()
        );
    }
    let mut outcomes = Vec::new();
    for suite in plan.suites {
        let log =
            fs::read_to_string(out_dir.join(format!("{}.log", suite.name))).unwrap_or_default();
        let status = fs::read_to_string(out_dir.join(format!("{}.status", suite.name)))
            .ok()
            .and_then(|s| s.trim().parse().ok());
        outcomes.push(Outcome::parse(&log, status));
    }
    Ok(Boot {
        started,
        stale_breakpoint,
        outcomes,
    })
}

/// QEMU arguments every boot shares: no display, no network card, the serial console on
/// stdout, the host's / read-only over 9p.
fn common_args(tree: &KernelTree, initrd: &Path, extra_cmdline: &str) -> Vec<String> {
    let mut args: Vec<String> = [
        "-display",
        "none",
        "-serial",
        "stdio",
        "-monitor",
        "none",
        "-no-reboot",
        "-net",
        "none",
        "-virtfs",
        "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
        "-kernel",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(tree.vmlinuz.display().to_string());
    args.push("-initrd".into());
    args.push(initrd.display().to_string());
    args.push("-append".into());
    args.push(format!(
        "console=ttyS0 panic=-1 quiet loglevel=3 {extra_cmdline}"
    ));
    args
}

/// The script the guest runs inside the host's root: each suite in turn, its output on the
/// console and in `<suite>.log`, its exit status in `<suite>.status`.
fn run_script(plan: &Plan) -> Result<String> {
    let mut s = String::from("#!/bin/bash\n# Written by cargo xtask vmtest.\n");
    let (soft, hard) = nofile_limits();
    let _ = writeln!(s, "ulimit -Hn {hard}; ulimit -Sn {soft}");
    let _ = writeln!(s, "cd {}", quote(plan.root)?);
    let _ = writeln!(s, "export SOCKSTAT_BIN={}", quote(plan.bin)?);
    let path = std::env::var("PATH").unwrap_or_default();
    let _ = writeln!(
        s,
        "export PATH={}:/usr/sbin:/sbin HOME=/root TERM=${{TERM:-xterm}}",
        shell_quote(&path)
    );
    // Two tracers held for the whole run, started first. Attaching the first or second
    // program to a tracepoint (or detaching down to one) patches kernel text (its static
    // key, its static call), and QEMU's software CPU emulation can let another vCPU run the
    // stale code: a 6.12 guest oopsed on a leftover int3 in detach_if_pending while a test
    // detached from the busy timer tracepoints. With two probes always there, the suites'
    // own attaches and detaches never patch. (Real CPUs and KVM handle the patching.)
    // Their start line also shows what sockstat attaches on this kernel.
    s.push_str(
        r#"for k in 1 2; do
  "$SOCKSTAT_BIN" trace --count-only > /dev/null 2> /tmp/vmtest-keeper$k.err &
  for _ in $(seq 900); do grep -q "sockstat: tracing" /tmp/vmtest-keeper$k.err && break; sleep 0.1; done
done
echo "vmtest: sockstat trace on $(uname -r):"
sed 's/^/vmtest:   /' /tmp/vmtest-keeper1.err
"#,
    );
    // Suites that keep to private namespaces and mostly wait (suites.rs) run beside the
    // others; their output follows at the end.
    let test_args: String = plan
        .test_args
        .iter()
        .map(|a| format!(" {}", shell_quote(a)))
        .collect();
    let (beside, in_turn): (Vec<&Suite>, Vec<&Suite>) =
        plan.suites.iter().partition(|suite| runs_beside(suite));
    s.push_str("alongside=\n");
    for suite in &beside {
        let name = &suite.name;
        let _ = writeln!(s, "echo \"vmtest: suite {name} (alongside the others)\"");
        let _ = writeln!(
            s,
            "( timeout --kill-after=10 {SUITE_TIMEOUT_S} {}{test_args} > /vmtest-out/{name}.log 2>&1; echo $? > /vmtest-out/{name}.status ) &",
            quote(&suite.exe)?
        );
        s.push_str("alongside=\"$alongside $!\"\n");
    }
    for suite in &in_turn {
        let name = &suite.name;
        let _ = writeln!(s, "echo \"vmtest: suite {name}\"");
        let _ = writeln!(
            s,
            "timeout --kill-after=10 {SUITE_TIMEOUT_S} {}{test_args} 2>&1 | tee /vmtest-out/{name}.log",
            quote(&suite.exe)?
        );
        let _ = writeln!(
            s,
            "echo ${{PIPESTATUS[0]}} > /vmtest-out/{name}.status; sync"
        );
    }
    s.push_str("[ -n \"$alongside\" ] && wait $alongside\n");
    for suite in &beside {
        let name = &suite.name;
        let _ = writeln!(
            s,
            "echo \"vmtest: suite {name}\"; cat /vmtest-out/{name}.log; sync"
        );
    }
    Ok(s)
}

/// The host's open-file limits, so the guest's tests run under the same ones.
fn nofile_limits() -> (u64, u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the rlimit we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return (1024, 4096);
    }
    // "Unlimited" is not a valid open-file limit; fs.nr_open's default is.
    let cap = |n: u64| n.min(1 << 20);
    (cap(lim.rlim_cur), cap(lim.rlim_max))
}

fn quote(p: &Path) -> Result<String> {
    let s = p
        .to_str()
        .with_context(|| format!("{} is not UTF-8", p.display()))?;
    Ok(shell_quote(s))
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A console line without carriage returns and terminal escape sequences.
fn printable(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                // CSI: ESC [ params final-byte; other escapes: ESC + one char.
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                } else {
                    chars.next();
                }
            }
            '\r' => {}
            c if c.is_control() && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_lines_lose_escapes() {
        assert_eq!(
            printable(b"\x1bc\x1b[?7l\x1b[2Jvmtest: guest up\r"),
            "vmtest: guest up"
        );
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
    }
}
