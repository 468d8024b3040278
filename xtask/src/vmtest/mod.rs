//! `cargo xtask vmtest`: the root suites on the kernels servers run, not only on the host's.
//!
//! Each guest boots a Debian kernel (fetched by name with `apt-get download` and cached under
//! `target/vmtest/`) under QEMU. Its init mounts the host's root file system read-only over 9p
//! with a tmpfs overlay on top, and runs the very test binaries `cargo xtask test` runs,
//! against the host's userland (ss, netstat, tmux, promtool, ...). `host` runs them here,
//! natively. One table at the end: kernel x suite.
mod guest;
mod initramfs;
mod kernels;

use std::{fmt::Write as _, fs, path::Path};

use anyhow::{Result, bail};

use crate::{
    build, setup, sockstat_bin,
    suites::{self, TestBinary as Suite},
};

/// The kernels `--kernel` can pick.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum KernelChoice {
    /// Debian 12's LTS kernel (Amazon Linux 2023 runs 6.1 too).
    #[value(name = "6.1")]
    V6_1,
    /// Debian 13's LTS kernel, as Debian 12 ships it.
    #[value(name = "6.12")]
    V6_12,
    /// The kernel this machine runs, without a VM.
    Host,
    /// All of the above.
    All,
}

impl KernelChoice {
    fn expand(choices: &[KernelChoice]) -> Vec<KernelChoice> {
        let mut out = Vec::new();
        for &c in choices {
            let each: &[KernelChoice] = match c {
                KernelChoice::All => &[KernelChoice::V6_1, KernelChoice::V6_12, KernelChoice::Host],
                _ => std::slice::from_ref(&c),
            };
            for &k in each {
                if !out.contains(&k) {
                    out.push(k);
                }
            }
        }
        out
    }
}

/// What one suite reported on one kernel.
#[derive(Clone, Debug, Default)]
struct Outcome {
    results: crate::libtest::Results,
    /// The test binary's exit status; None when it never finished.
    status: Option<i32>,
    /// A host-only suite in a guest's row: not run, not failed.
    host_only: bool,
}

impl Outcome {
    fn ok(&self) -> bool {
        self.host_only || (self.status == Some(0) && self.results.counts.failed == 0)
    }

    fn not_in_guest() -> Outcome {
        Outcome {
            host_only: true,
            ..Outcome::default()
        }
    }

    /// Reads a suite's libtest output and exit status.
    fn parse(log: &str, status: Option<i32>) -> Outcome {
        Outcome {
            results: crate::libtest::Results::read(log),
            status,
            host_only: false,
        }
    }

    fn cell(&self) -> String {
        if self.host_only {
            return "host only".to_string();
        }
        match self.status {
            None => "did not finish".to_string(),
            Some(_) => {
                let c = self.results.counts;
                let mut s = format!("{}/{}/{}", c.passed, c.failed, c.ignored);
                if !self.ok() {
                    s.push_str(" FAIL");
                }
                s
            }
        }
    }
}

/// Suites that do not run in a guest: `package` installs with dpkg, and the guest's root
/// file system is the host's, shared read-only (packaging does not depend on the kernel).
const HOST_ONLY: [&str; 1] = ["package"];

/// `cargo xtask vmtest`: true when every suite passed on every kernel.
/// `only`: suite names to run (empty: all); `test_args`: passed to every suite's binary.
pub fn run(
    root: &Path,
    choices: &[KernelChoice],
    only: &[String],
    test_args: &[String],
) -> Result<bool> {
    let kernels = KernelChoice::expand(choices);
    let guests: Vec<&kernels::Series> = kernels
        .iter()
        .filter_map(|k| kernels::Series::of(*k))
        .collect();
    if !guests.is_empty() {
        setup::vm_packages()?;
    }
    build(root)?;
    let mut suites = suites::root_suites(suites::build(root)?)?;
    if !only.is_empty() {
        if let Some(unknown) = only.iter().find(|n| !suites.iter().any(|s| &s.name == *n)) {
            bail!("no suite named {unknown}");
        }
        suites.retain(|s| only.contains(&s.name));
    }
    let bin = sockstat_bin(root)?;
    let work = root.join("target/vmtest");
    fs::create_dir_all(&work)?;

    let mut rows: Vec<(String, Vec<Outcome>)> = Vec::new();
    let mut accel = None;
    for k in kernels {
        let (label, outcomes) = match kernels::Series::of(k) {
            None => (host_label(), run_on_host(root, &suites, &bin, test_args)?),
            Some(series) => {
                let tree = series.fetch(&work.join("kernels"))?;
                let dir = work.join(series.label);
                let initrd = dir.join("initramfs.cpio");
                fs::create_dir_all(&dir)?;
                initramfs::write(&tree, &initrd)?;
                let accel = match accel {
                    Some(a) => a,
                    None => {
                        let a = guest::Accel::detect(&tree, &initrd);
                        eprintln!("vmtest: QEMU accelerator: {}", a.name());
                        accel = Some(a);
                        a
                    }
                };
                let in_guest: Vec<Suite> = suites
                    .iter()
                    .filter(|s| !HOST_ONLY.contains(&s.name.as_str()))
                    .cloned()
                    .collect();
                let mut outcomes = guest::run(&guest::Plan {
                    tree: &tree,
                    initrd: &initrd,
                    dir: &dir,
                    accel,
                    root,
                    bin: &bin,
                    suites: &in_guest,
                    test_args,
                })?;
                // One row per suite in the table: the host-only ones as not run here.
                for (i, s) in suites.iter().enumerate() {
                    if HOST_ONLY.contains(&s.name.as_str()) {
                        outcomes.insert(i, Outcome::not_in_guest());
                    }
                }
                (tree.release.clone(), outcomes)
            }
        };
        rows.push((label, outcomes));
    }
    let table = render_table(&suites, &rows);
    println!("{table}");
    fs::write(work.join("results.txt"), &table)?;
    Ok(rows.iter().all(|(_, o)| o.iter().all(Outcome::ok)))
}

fn host_label() -> String {
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("host {}", release.trim())
}

/// The suites run here, natively: those that mostly wait beside the others, as
/// `cargo xtask test` runs them.
fn run_on_host(
    root: &Path,
    suites: &[Suite],
    bin: &Path,
    test_args: &[String],
) -> Result<Vec<Outcome>> {
    let env = [("SOCKSTAT_BIN", bin)];
    let runner = suites::Runner {
        env: &env,
        args: test_args,
        prefix: "[host] ",
        logs: &root.join("target/vmtest/host"),
    };
    let (ran, ()) = suites::run_here(suites, &runner, || Ok(()))?;
    Ok(ran
        .iter()
        .map(|r| Outcome::parse(&r.log, r.status))
        .collect())
}

fn render_table(suites: &[Suite], rows: &[(String, Vec<Outcome>)]) -> String {
    let mut header = vec!["kernel".to_string()];
    header.extend(suites.iter().map(|s| s.name.clone()));
    let mut lines = vec![header];
    for (label, outcomes) in rows {
        let mut line = vec![label.clone()];
        line.extend(outcomes.iter().map(Outcome::cell));
        lines.push(line);
    }
    let widths: Vec<usize> = (0..lines[0].len())
        .map(|c| {
            lines
                .iter()
                .filter_map(|l| l.get(c))
                .map(String::len)
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut s = String::from("\nvmtest: passed/failed/ignored per suite\n");
    for line in &lines {
        let cells: Vec<String> = line
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(s, "{}", cells.join("  ").trim_end());
    }
    for (label, outcomes) in rows {
        for (suite, o) in suites.iter().zip(outcomes) {
            s.push_str(
                &o.results
                    .failure_lines(&format!(" on {label}: {}", suite.name)),
            );
            if o.host_only {
                continue;
            }
            if o.status.is_none() {
                let _ = writeln!(s, "FAILED on {label}: {} did not finish", suite.name);
            } else if o.results.failed.is_empty() && !o.ok() {
                let _ = writeln!(
                    s,
                    "FAILED on {label}: {} exited with {:?}",
                    suite.name, o.status
                );
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libtest_output_is_counted() {
        let log = "running 3 tests\ntest a ... ok\ntest b_c ... FAILED\n\nfailures:\n\n\
                   ---- b_c ----\ngot 1, want 2\n\nfailures:\n    b_c\n\n\
                   test result: FAILED. 2 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.00s\n";
        let o = Outcome::parse(log, Some(101));
        let c = o.results.counts;
        assert_eq!((c.passed, c.failed, c.ignored), (2, 1, 0));
        assert_eq!(o.results.failed, ["b_c"]);
        let suites = [Suite {
            name: "root".into(),
            exe: std::path::PathBuf::new(),
            dir: std::path::PathBuf::new(),
            root_suite: true,
        }];
        let table = render_table(&suites, &[("6.1".into(), vec![o.clone()])]);
        assert!(
            table.ends_with("FAILED on 6.1: root: b_c\n    got 1, want 2\n"),
            "{table}"
        );
        assert!(!o.ok());
        assert_eq!(o.cell(), "2/1/0 FAIL");
        assert!(Outcome::parse("test result: ok. 4 passed; 0 failed; 1 ignored", Some(0)).ok());
        assert!(!Outcome::parse("", None).ok());
    }

    #[test]
    fn all_means_every_kernel_once() {
        use KernelChoice::*;
        assert_eq!(KernelChoice::expand(&[All]), [V6_1, V6_12, Host]);
        assert_eq!(KernelChoice::expand(&[V6_12, All]), [V6_12, V6_1, Host]);
    }
}
