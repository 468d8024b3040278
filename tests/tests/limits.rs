//! Agents under resource limits (root): a memory cgroup too small for them is said in one
//! line (exit 2) instead of an OOM kill (exit 137); one big enough runs them, within the
//! figure they ask for.
use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use libtest_mimic::{Arguments, Failed};
use sockstat_tests::{TestResult, fail, root_or_say_skipped, root_trial, sockstat_bin};

fn main() {
    let args = Arguments::from_args();
    let root = root_or_say_skipped("limits");
    let trials = vec![root_trial(
        "agents_in_a_small_memory_cgroup_say_so",
        root,
        small_memory_cgroup,
    )];
    libtest_mimic::run(&args, trials).exit();
}

/// A memory cgroup of our own with a limit: v1's memory hierarchy where it is mounted (the
/// host), else cgroup v2 (mounted for the test if nothing is, as in the vmtest guests).
struct MemCgroup {
    dir: PathBuf,
    limit_file: &'static str,
    /// The highest usage since creation: v1's max_usage_in_bytes, v2's memory.peak (5.19+).
    peak_file: &'static str,
    mounted: Option<PathBuf>,
}

impl MemCgroup {
    fn new(name: &str) -> Result<MemCgroup, Failed> {
        let mounts =
            std::fs::read_to_string("/proc/self/mounts").map_err(|e| fail(e.to_string()))?;
        let find = |pred: &dyn Fn(&[&str]) -> bool| {
            mounts.lines().find_map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                (w.len() >= 4 && pred(&w)).then(|| PathBuf::from(w[1]))
            })
        };
        if let Some(v1) = find(&|w| w[2] == "cgroup" && w[3].split(',').any(|o| o == "memory")) {
            return Self::make(
                v1.join(name),
                "memory.limit_in_bytes",
                "memory.max_usage_in_bytes",
                None,
            );
        }
        let (root, mounted) = match find(&|w| w[2] == "cgroup2") {
            Some(r) => (r, None),
            None => {
                let at = PathBuf::from("/tmp/sockstat-test-cgroup2");
                std::fs::create_dir_all(&at).map_err(|e| fail(e.to_string()))?;
                let ok = Command::new("mount")
                    .args(["-t", "cgroup2", "none"])
                    .arg(&at)
                    .status()
                    .is_ok_and(|s| s.success());
                if !ok {
                    return Err(fail(
                        "no memory cgroup controller, and cgroup2 cannot be mounted",
                    ));
                }
                (at.clone(), Some(at))
            }
        };
        let controllers =
            std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
        if !controllers.split_whitespace().any(|c| c == "memory") {
            return Err(fail(format!(
                "cgroup2 at {} has no memory controller",
                root.display()
            )));
        }
        // Children get the memory controller only when their parent hands it down.
        let _ = std::fs::write(root.join("cgroup.subtree_control"), "+memory");
        Self::make(root.join(name), "memory.max", "memory.peak", mounted)
    }

    fn make(
        dir: PathBuf,
        limit_file: &'static str,
        peak_file: &'static str,
        mounted: Option<PathBuf>,
    ) -> Result<MemCgroup, Failed> {
        let _ = std::fs::remove_dir(&dir);
        std::fs::create_dir(&dir).map_err(|e| fail(format!("{}: {e}", dir.display())))?;
        Ok(MemCgroup {
            dir,
            limit_file,
            peak_file,
            mounted,
        })
    }

    /// Peak usage in bytes: everything charged to the cgroup (pages, page cache, kernel
    /// memory such as BPF maps).
    fn peak(&self) -> Result<u64, Failed> {
        let path = self.dir.join(self.peak_file);
        std::fs::read_to_string(&path)
            .map_err(|e| fail(format!("{}: {e}", path.display())))?
            .trim()
            .parse()
            .map_err(|e| fail(format!("{}: {e}", path.display())))
    }

    fn limit(&self, bytes: u64) -> TestResult {
        std::fs::write(self.dir.join(self.limit_file), bytes.to_string())
            .map_err(|e| fail(format!("setting the memory limit: {e}")))
    }

    /// `sockstat ARGS` inside the cgroup, stopped after `secs` (SIGINT).
    fn run(&self, args: &str, secs: u32) -> Result<(Option<i32>, String, String), Failed> {
        let procs = self.dir.join("cgroup.procs");
        let script = format!(
            "echo $$ > {} && exec timeout -s INT {secs} {} {args}",
            procs.display(),
            sockstat_bin().display()
        );
        let out = Command::new("sh")
            .args(["-c", &script])
            .output()
            .map_err(|e| fail(e.to_string()))?;
        Ok((
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }
}

impl Drop for MemCgroup {
    fn drop(&mut self) {
        // The processes have exited; an empty cgroup can go.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() || !self.dir.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if let Some(at) = &self.mounted {
            let _ = Command::new("umount").arg(at).status();
            let _ = std::fs::remove_dir(Path::new(at));
        }
    }
}

fn small_memory_cgroup() -> TestResult {
    let cg = MemCgroup::new("sockstat-test-memory")?;
    cg.limit(16 << 20)?;
    let mut asked_mib = None;
    for args in ["trace", "top --once", "serve --listen 127.0.0.1:0"] {
        let (code, stdout, stderr) = cg.run(args, 20)?;
        if code != Some(2)
            || !stdout.is_empty()
            || stderr.lines().count() != 1
            || !stderr.contains("memory cgroup")
        {
            return Err(fail(format!(
                "{args} in a 16 MiB cgroup: exit {code:?}, stdout {stdout:?}, stderr {stderr:?}"
            )));
        }
        // "this command needs about N MiB of memory, ..."
        asked_mib = stderr
            .split("needs about ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next()?.parse::<u64>().ok());
    }
    let asked_mib = asked_mib.ok_or_else(|| fail("the refusal names no figure"))?;
    // Room enough: the agent loads and attaches (slowly under emulation), then is stopped.
    // Its peak usage, everything the cgroup was charged (page cache of the binary and BPF
    // maps included), must fit in what the check asks for: the figure is what it needs.
    cg.limit(128 << 20)?;
    let log = std::env::temp_dir().join(format!("sockstat-limits-{}.err", std::process::id()));
    let script = format!(
        "echo $$ > {} && exec {} trace --count-only 2> {}",
        cg.dir.join("cgroup.procs").display(),
        sockstat_bin().display(),
        log.display()
    );
    let mut child = Command::new("sh")
        .args(["-c", &script])
        .spawn()
        .map_err(|e| fail(e.to_string()))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let attached = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("sockstat: tracing ") || std::time::Instant::now() > deadline {
            break text;
        }
        if let Ok(Some(status)) = child.try_wait() {
            break format!("{text} (exited: {status})");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    // Settled: the first dump and the reconcile schedule's start are behind it.
    std::thread::sleep(Duration::from_secs(2));
    let peak = cg.peak();
    let stat = std::fs::read_to_string(cg.dir.join("memory.stat")).unwrap_or_default();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let _ = child.wait();
    let _ = std::fs::remove_file(&log);
    if !attached.contains("sockstat: tracing ") {
        return Err(fail(format!(
            "trace in a 128 MiB cgroup did not attach: {attached:?}"
        )));
    }
    let peak_mib = peak? as f64 / f64::from(1 << 20);
    eprintln!("trace's peak in its memory cgroup: {peak_mib:.1} MiB (it asks for {asked_mib})");
    if peak_mib > asked_mib as f64 {
        return Err(fail(format!(
            "trace peaked at {peak_mib:.1} MiB in its memory cgroup, over the {asked_mib} MiB it asks for; memory.stat:\n{stat}"
        )));
    }
    Ok(())
}
