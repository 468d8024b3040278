//! Command-line wiring: one file per subcommand, each with a single `run` function that
//! connects collectors to a view.
pub mod args;
pub mod lab;
pub mod list;
pub mod top;
pub mod trace;

use std::process::ExitCode;

pub use args::{Cli, Command};

/// Bad input or an unusable environment: reported in one line, exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Some(Command::Trace(args)) => trace::run(&args),
        Some(Command::Top(args)) => top::run(&args),
        Some(Command::Lab(args)) => lab::run(&args),
        None => list::run(&cli.list),
    }
}
