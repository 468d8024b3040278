//! `sockstat-generate man DIR | completions bash|zsh|fish`: the man pages and completion
//! scripts packaging installs (`cargo xtask dist`), from sockstat's own clap definitions.
use std::{io::Write as _, path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "sockstat-generate",
    about = "sockstat's man pages and shell completions"
)]
struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand)]
enum What {
    /// One man page per command (sockstat.1, sockstat-trace.1, ...) into DIR.
    Man { dir: PathBuf },
    /// A completion script on stdout.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match args.what {
        What::Man { dir } => sockstat::cli::generate::man_pages(&dir),
        What::Completions { shell } => {
            let mut out = std::io::stdout().lock();
            sockstat::cli::generate::completions(shell, &mut out);
            out.flush().map_err(anyhow::Error::from)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sockstat-generate: {e:#}");
            ExitCode::from(2)
        }
    }
}
