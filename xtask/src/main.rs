//! Project tasks: `cargo xtask setup | build | run -- ARGS | test | bench`.
//!
//! Every task performs the setup it needs first, so a fresh machine needs nothing but
//! `cargo xtask run -- trace` or `cargo xtask test`.
mod setup;

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
    /// Release build of everything; the binary is target/release/sockstat.
    Build,
    /// Setup, build, then run `sockstat ARGS` as root.
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Setup, then every test: unit, CLI and the root integration tests.
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// fmt --check and clippy -D warnings over the whole workspace.
    Lint,
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
        Task::Run { args } => {
            setup::toolchain()?;
            build(&root)?;
            let bin = root.join("target/release/sockstat");
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
            let status = cargo(&root)
                .args(["test", "--release", "--workspace"])
                .args(&args)
                .env("SOCKSTAT_BIN", root.join("target/release/sockstat"))
                .status()
                .context("running cargo test")?;
            if !status.success() {
                bail!("tests failed");
            }
        }
        Task::Lint => {
            setup::toolchain()?;
            let fmt = cargo(&root).args(["fmt", "--all", "--check"]).status()?;
            let clippy = cargo(&root)
                .args([
                    "clippy",
                    "--workspace",
                    "--all-targets",
                    "--release",
                    "--",
                    "-D",
                    "warnings",
                ])
                .status()?;
            if !fmt.success() || !clippy.success() {
                bail!("lint failed");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn build(root: &Path) -> Result<()> {
    let status = cargo(root)
        .args(["build", "--release", "--workspace"])
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("build failed");
    }
    Ok(())
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
