//! Project tasks: `cargo xtask setup | build | run -- ARGS | test | bench | image | lint`.
//!
//! Every task performs the setup it needs first, so a fresh machine needs nothing but
//! `cargo xtask run -- trace` or `cargo xtask test`.
mod bench;
mod dist;
mod image;
mod libtest;
mod setup;
mod suites;
mod vmtest;

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building and testing need (idempotent): nightly rust-src, bpf-linker
    /// built against rustc's own LLVM, and the Debian packages the tests compare against.
    Setup {
        /// Skip the Debian packages (toolchain only).
        #[arg(long)]
        no_packages: bool,
    },
    /// Release build of everything; the binary is target/<host triple>/release/sockstat.
    Build,
    /// Setup, build, then run `sockstat ARGS` as root.
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Setup, then every test: unit, CLI and the root integration tests, the suites that
    /// mostly wait beside the others.
    Test {
        /// Extra arguments for `cargo test` (e.g. `--test root`, a test name filter): cargo
        /// then runs the selection, one binary after another.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// A Debian package (target/dist/sockstat_VERSION_ARCH.deb): the static binary, man
    /// pages, bash/zsh/fish completions and a systemd unit for `sockstat serve`.
    Dist,
    /// The OCI image (FROM scratch: the static binary alone) built by the local Docker
    /// engine, and in target/image/ the DaemonSet with its tag, the Grafana dashboard and
    /// the Prometheus rules.
    Image {
        /// The image's name and tag (default sockstat:VERSION).
        #[arg(long)]
        tag: Option<String>,
    },
    /// fmt --check and clippy -D warnings over the whole workspace, clippy for the kernel
    /// programs, and the deployment manifests validated offline against Kubernetes' schema.
    Lint,
    /// The root suites on other kernels (Debian's 6.1 and 6.12, booted under QEMU) and on
    /// the host's; one table of kernel x suite, non-zero exit on any failure.
    Vmtest {
        /// Kernels to run on (comma-separated or repeated).
        #[arg(long, value_enum, value_delimiter = ',', default_value = "all")]
        kernel: Vec<vmtest::KernelChoice>,
        /// Only these suites (comma-separated: root, parity, top, netstat, serve, limits,
        /// timewait, history, lab), e.g. to check one change across the matrix; default every one.
        #[arg(long, value_delimiter = ',')]
        suite: Vec<String>,
        /// Arguments for every suite's test binary, e.g. a test name filter to repeat one
        /// test across the matrix.
        #[arg(last = true)]
        test_args: Vec<String>,
    },
    /// Benchmarks against ss, netstat and tcpstates: `list` (100k sockets).
    Bench {
        #[arg(value_enum)]
        which: BenchKind,
        /// Rounds per command (alternating).
        #[arg(long, default_value_t = 7)]
        rounds: usize,
        /// `trace`, `load`, `hooks`: also measure this sockstat binary (e.g. built from an earlier
        /// commit), in the same run.
        #[arg(long, value_name = "PATH")]
        baseline: Option<PathBuf>,
        /// `trace`: only these tracers (text, json, all, count-only, tcpstates,
        /// baseline-text, baseline-count-only); every one when not given.
        #[arg(long, value_delimiter = ',', value_name = "KEYS")]
        tracers: Vec<String>,
    },
    /// (internal) loopback churn: COUNT connections on PORT; prints connections/s.
    #[command(hide = true)]
    Churn {
        #[arg(long)]
        port: u16,
        #[arg(long)]
        count: usize,
    },
    /// (internal) a socket farm process for the benchmarks.
    #[command(hide = true)]
    Farm {
        #[arg(long)]
        port: u16,
        #[arg(long)]
        pairs: usize,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum BenchKind {
    /// 100k sockets: sockstat vs ss vs netstat.
    List,
    /// Loopback churn under each tracer: sockstat trace vs tcpstates.
    Trace,
    /// Peak RSS while loading and idle RSS of trace, serve and top, next to tcpstates.
    Load,
    /// trace and serve at the TIME-WAIT cap (131072) in a namespace of their own, RSS and
    /// loss over --rounds minutes (the target soak is 10).
    Soak,
    /// The kernel time of each sockstat program per run and per connection under the
    /// loopback churn (kernel.bpf_stats_enabled), for each trace mode.
    Hooks,
    /// The flight recorder: churn under `record` (embedded and ClickHouse), bytes per
    /// lifetime, and `history` over 10 million lifetimes in each store.
    Record,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let root = workspace_root()?;
    match cli.task {
        Task::Setup { no_packages } => {
            setup::toolchain()?;
            if !no_packages {
                setup::packages()?;
            }
        }
        Task::Build => {
            setup::toolchain()?;
            build(&root)?;
        }
        Task::Dist => {
            setup::toolchain()?;
            build(&root)?;
            let deb = dist::build(&root, &sockstat_bin(&root)?)?;
            println!("{}", deb.display());
        }
        Task::Image { tag } => {
            setup::toolchain()?;
            build(&root)?;
            let tag = tag.unwrap_or_else(image::default_tag);
            let out = image::build(&root, &sockstat_bin(&root)?, &tag)?;
            println!("{tag}");
            println!("{}", out.display());
        }
        Task::Run { args } => {
            setup::toolchain()?;
            build(&root)?;
            let bin = sockstat_bin(&root)?;
            let mut cmd = if setup::is_root() {
                Command::new(&bin)
            } else {
                let mut sudo = Command::new("sudo");
                sudo.arg(&bin);
                sudo
            };
            let status = cmd.args(&args).status().context("starting sockstat")?;
            return Ok(ExitCode::from(status.code().unwrap_or(1) as u8));
        }
        Task::Test { args } => {
            setup::toolchain()?;
            setup::packages()?;
            build(&root)?;
            if !setup::is_root() {
                eprintln!(
                    "xtask: NOT ROOT: the root integration tests will be reported as ignored. Run `sudo cargo xtask test` to execute them."
                );
            }
            // The package test installs what `cargo xtask dist` builds.
            let deb = dist::build(&root, &sockstat_bin(&root)?)?;
            let bin = sockstat_bin(&root)?;
            let env = [
                ("SOCKSTAT_BIN", bin.as_path()),
                ("SOCKSTAT_DEB", deb.as_path()),
            ];
            let (passed, results) = if args.is_empty() {
                test_everything(&root, &env)?
            } else {
                // A selection (`--test root`, a name filter): cargo runs it, in turn.
                let mut cmd = release_cargo(&root, "test")?;
                cmd.args([
                    "--workspace",
                    "--exclude",
                    "sockstat-ebpf",
                    "--no-fail-fast",
                ])
                .args(&args)
                .envs(env);
                let (status, results) = run_tests(cmd)?;
                (status.success(), results)
            };
            // One closing summary for the whole run: the last "test result:" line belongs to
            // whichever test binary ran last, often one with no tests; the failures and why
            // come last, where a CI log's tail keeps them.
            let c = results.counts;
            print!("{}", results.failure_lines(""));
            println!(
                "sockstat: {} passed, {} failed, {} skipped",
                c.passed, c.failed, c.ignored
            );
            if !passed {
                bail!("tests failed");
            }
        }
        Task::Vmtest {
            kernel,
            suite,
            test_args,
        } => {
            setup::toolchain()?;
            setup::packages()?;
            if !setup::is_root() {
                bail!("vmtest runs the root suites: run it as root (sudo cargo xtask vmtest)");
            }
            if !vmtest::run(&root, &kernel, &suite, &test_args)? {
                bail!("vmtest: a suite failed on at least one kernel");
            }
        }
        Task::Farm { port, pairs } => bench::farm::run(port, pairs)?,
        Task::Churn { port, count } => println!("{:.0}", bench::churn::run(port, count)?),
        Task::Bench {
            which,
            rounds,
            baseline,
            tracers,
        } => {
            setup::toolchain()?;
            setup::packages()?;
            build(&root)?;
            let report = match which {
                BenchKind::List => bench::list(&root, rounds)?,
                BenchKind::Trace => {
                    bench::trace(&root, 40_000, rounds, baseline.as_deref(), &tracers)?
                }
                BenchKind::Load => bench::load(&root, rounds, baseline.as_deref())?,
                BenchKind::Soak => bench::soak(&root, rounds as u64 * 60)?,
                BenchKind::Hooks => bench::hooks(&root, 20_000, rounds, baseline.as_deref())?,
                BenchKind::Record => bench::record(&root, rounds)?,
            };
            let path = root.join("target/bench-report.md");
            std::fs::write(&path, &report)?;
            eprintln!("bench: report written to {}", path.display());
        }
        Task::Lint => {
            setup::toolchain()?;
            let fmt = cargo(&root).args(["fmt", "--all", "--check"]).status()?;
            let clippy = release_cargo(&root, "clippy")?
                .args(["--workspace", "--all-targets", "--", "-D", "warnings"])
                .status()?;
            let kernel = bpf_clippy(&root)?;
            let manifests = image::validate(&root);
            if let Err(e) = &manifests {
                eprintln!("xtask: {e:#}");
            }
            if !fmt.success() || !clippy.success() || !kernel.success() || manifests.is_err() {
                bail!("lint failed");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Every test binary of the workspace (the slow root suites beside the others, see
/// suites.rs), then the doc tests: whether all passed, and what libtest reported.
fn test_everything(root: &Path, env: &[(&str, &Path)]) -> Result<(bool, libtest::Results)> {
    let binaries = suites::build(root)?;
    let runner = suites::Runner {
        env,
        args: &[],
        prefix: "",
        logs: &root.join("target/test-logs"),
    };
    let (ran, (doc_status, mut results)) = suites::run_here(&binaries, &runner, || {
        let mut doc = release_cargo(root, "test")?;
        doc.args(["--workspace", "--exclude", "sockstat-ebpf", "--doc"])
            .envs(env.iter().copied());
        run_tests(doc)
    })?;
    let mut passed = doc_status.success();
    for (binary, r) in binaries.iter().zip(&ran) {
        for line in r.log.lines() {
            results.add_line(line);
        }
        if r.status != Some(0) {
            passed = false;
            // A binary that failed without a failed test (a crash, a harness error) is
            // named too.
            if r.log.lines().all(|l| !l.ends_with("... FAILED")) {
                println!("xtask: {} exited with {:?}", binary.name, r.status);
            }
        }
    }
    Ok((passed, results))
}

/// Runs `cargo test`, echoing its output, and reads what libtest reported.
fn run_tests(mut cmd: Command) -> Result<(std::process::ExitStatus, libtest::Results)> {
    use std::io::{BufRead as _, BufReader};
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("running cargo test")?;
    let mut results = libtest::Results::default();
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines() {
            let line = line?;
            println!("{line}");
            results.add_line(&line);
        }
    }
    Ok((child.wait()?, results))
}

fn build(root: &Path) -> Result<()> {
    let status = release_cargo(root, "build")?
        .args(["--workspace", "--exclude", "sockstat-ebpf"])
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("build failed");
    }
    Ok(())
}

/// The host's target triple, from `rustc -vV`.
fn host_triple() -> Result<String> {
    let out = Command::new("rustc")
        .arg("-vV")
        .output()
        .context("running rustc -vV")?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .context("rustc -vV printed no host line")
}

/// `cargo SUBCOMMAND --release --target <host>` with glibc linked statically, so the release
/// binary is static-pie: a dynamic sockstat keeps ld.so's work, libm and libgcc_s resident
/// (~0.7 MB of a 4 MB listing, more than its whole margin under ss). The explicit `--target`
/// keeps the flag away from build scripts and proc macros, which cannot be static.
fn release_cargo(root: &Path, subcommand: &str) -> Result<Command> {
    let triple = host_triple()?;
    let mut cmd = cargo(root);
    cmd.args([subcommand, "--release", "--target", &triple]);
    cmd.env(
        format!(
            "CARGO_TARGET_{}_RUSTFLAGS",
            triple.to_uppercase().replace('-', "_")
        ),
        "-C target-feature=+crt-static",
    );
    Ok(cmd)
}

/// Where `build` puts the sockstat binary.
pub fn sockstat_bin(root: &Path) -> Result<PathBuf> {
    Ok(root
        .join("target")
        .join(host_triple()?)
        .join("release/sockstat"))
}

/// The kernel crate compiles its modules only for the bpf target, so it is linted there too
/// (as aya's own xtask does): nightly clippy with build-std, in a target dir of its own.
fn bpf_clippy(root: &Path) -> Result<std::process::ExitStatus> {
    setup::nightly_component("clippy")?;
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root)
        .env_remove("CARGO")
        .env_remove("RUSTC")
        .env_remove("RUSTUP_TOOLCHAIN")
        .args(["+nightly", "clippy", "-p", "sockstat-ebpf"])
        .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
        .args(["--target-dir", "target/bpf-lint", "--", "-D", "warnings"]);
    Ok(cmd.status()?)
}

fn cargo(root: &Path) -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root);
    cmd
}

fn workspace_root() -> Result<PathBuf> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .context("xtask has no parent directory")
}
