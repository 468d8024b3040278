//! Command-line wiring: one file per subcommand, each with a single `run` function that
//! connects collectors to a view.
pub mod args;
pub mod conn;
pub mod generate;
mod help;
pub mod history;
pub mod ifaces;
pub mod lab;
pub mod list;
pub mod record;
pub mod report;
pub mod routes;
pub mod serve;
pub mod stats;
pub mod top;
pub mod trace;

use std::process::ExitCode;

pub use args::{Cli, Command};

/// The command line's definition, with the teaching long help (`--help`) wrapped to the
/// terminal as clap wraps the rest.
pub fn command() -> clap::Command {
    use clap::CommandFactory as _;
    let width = help::width();
    Cli::command()
        .after_long_help(help::text(help::LIST, width))
        .mut_subcommand("trace", |c| {
            c.after_long_help(help::text(help::TRACE, width))
        })
        .mut_subcommand("top", |c| c.after_long_help(help::text(help::AGENT, width)))
        .mut_subcommand("serve", |c| {
            // What to record with means nothing without --record: said, not ignored.
            let c = c.after_long_help(help::text(help::AGENT, width));
            args::RECORD_OPTIONS
                .iter()
                .fold(c, |c, id| c.mut_arg(*id, |a| a.requires("record")))
        })
}

/// Parses the process's arguments.
pub fn parse() -> Result<Cli, clap::Error> {
    use clap::FromArgMatches as _;
    let matches = command().try_get_matches()?;
    Cli::from_arg_matches(&matches)
}

/// Bad input or an unusable environment: reported in one line, exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    crate::logger::init(cli.verbose);
    if let Some(command) = &cli.command
        && cli.list != args::ListArgs::default()
    {
        return Err(UsageError(format!(
            "the listing's options and filter go without a command; put {}'s options after its name (sockstat help {})",
            command.name(),
            command.name()
        ))
        .into());
    }
    // The agents hold dozens of descriptors; running short is said up front, exit 2.
    if matches!(
        cli.command,
        Some(
            Command::Trace(_)
                | Command::Top(_)
                | Command::Serve(_)
                | Command::Lab(_)
                | Command::Record(_)
        )
    ) {
        crate::ebpf::privilege::ensure_fds().map_err(|e| UsageError(e.to_string()))?;
        check_memory()?;
    }
    if cli.version {
        // Our own flag, not clap's: clap prints the version and ignores whatever follows.
        if cli.command.is_some() || cli.list != args::ListArgs::default() {
            return Err(UsageError("-V/--version takes no other arguments".into()).into());
        }
        println!("sockstat {}", env!("CARGO_PKG_VERSION"));
        return Ok(ExitCode::SUCCESS);
    }
    match cli.command {
        Some(Command::Trace(mut args)) => {
            args.ns.widen_for(&args.workload);
            trace::run(&args)
        }
        Some(Command::Top(mut args)) => {
            args.ns.widen_for(&args.workload);
            top::run(&args)
        }
        Some(Command::Lab(args)) => lab::run(&args),
        Some(Command::Stats(args)) => stats::run(&args),
        Some(Command::Ifaces(args)) => ifaces::run(&args),
        Some(Command::Routes(args)) => routes::run(&args),
        Some(Command::Report(mut args)) => {
            args.ns.widen_for(&args.workload);
            report::run(&args)
        }
        Some(Command::Serve(args)) => serve::run(&args),
        Some(Command::Conn(args)) => conn::run(&args),
        Some(Command::Record(args)) => record::run(&args),
        Some(Command::History(args)) => history::run(&args),
        None => list::run(&cli.list),
    }
}

/// What the agents (trace, top, serve, lab) need at their peak: about 10 MiB measured in a
/// memory cgroup as they load (BPF maps, the 4 MiB ring buffer included), the binary's page
/// cache where nothing else has charged it, and room for the live table (~50 bytes a
/// TIME-WAIT socket, ~200 another). README: "Memory".
pub const AGENT_MEMORY: u64 = 24 << 20;

/// The address space (`ulimit -v`) the agents need: about 17 MiB measured (VmPeak), with
/// room for the threads that enter other namespaces.
pub const AGENT_ADDRESS_SPACE: u64 = 48 << 20;

/// An agent in a memory cgroup too small for it would be OOM-killed without a word (exit
/// 137): say so instead, exit 2.
fn check_memory() -> Result<(), UsageError> {
    // ulimit -v: the agents map about 55 MiB (threads' stacks, the ring, BTF).
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut lim) } == 0
        && lim.rlim_cur != libc::RLIM_INFINITY
        && lim.rlim_cur < AGENT_ADDRESS_SPACE
    {
        return Err(UsageError(format!(
            "this command needs about {} MiB of address space, but ulimit -v allows {} MiB: raise it",
            AGENT_ADDRESS_SPACE >> 20,
            lim.rlim_cur >> 20
        )));
    }
    let Some(room) = crate::procs::memory::headroom() else {
        return Ok(());
    };
    if room.free() >= AGENT_MEMORY {
        return Ok(());
    }
    let mib = |b: u64| b >> 20;
    Err(UsageError(format!(
        "this command needs about {} MiB of memory, but the memory cgroup {} allows {} MiB with {} MiB in use: raise its limit (listings need about 8 MiB)",
        mib(AGENT_MEMORY),
        room.cgroup,
        mib(room.limit),
        mib(room.used)
    )))
}

/// `--user NAME`, looked up before anything is loaded: a typo is one line, exit 2.
fn user_of(args: &args::PrivilegeArgs) -> Result<Option<crate::least_privilege::User>, UsageError> {
    args.user
        .as_deref()
        .map(crate::least_privilege::User::lookup)
        .transpose()
        .map_err(|e| UsageError(e.to_string()))
}

/// Once an agent's programs are loaded: gives up every capability it no longer needs, and
/// becomes `user` (see `least_privilege`). `other_netns`: its dumps enter other network
/// namespaces. `probe`: its programs, whose maps it goes on reading.
fn run_on_least_privilege(
    user: Option<&crate::least_privilege::User>,
    other_netns: bool,
    probe: Option<&crate::ebpf::Probe>,
) -> Result<(), UsageError> {
    let maps_readable = || probe.is_none_or(|p| p.counters().is_ok() && p.missed_runs().is_ok());
    let kept = crate::least_privilege::drop_after_load(
        crate::least_privilege::Needs { other_netns },
        user,
        maps_readable,
    )
    .map_err(|e| UsageError(e.to_string()))?;
    log::info!("running on as {kept}");
    Ok(())
}

/// Whether an agent's scope reaches beyond its own network namespace.
fn beyond_own_netns(all_netns: bool, netns: Option<u32>) -> bool {
    all_netns || netns.is_some_and(|n| n != crate::agent::own_netns())
}

/// `-N NS`: the network namespace a command works in (`None`: this process's own).
pub struct NetnsChoice(Option<crate::procs::netns::Opened>);

impl NetnsChoice {
    pub fn open(spec: &args::NetArg) -> Result<Self, UsageError> {
        match &spec.net {
            None => Ok(NetnsChoice(None)),
            Some(n) => crate::procs::netns::open(n)
                .map(|o| NetnsChoice(Some(o)))
                .map_err(|e| UsageError(format!("-N {n}: {e}"))),
        }
    }

    /// The namespace's inode, when it is another one than this process's.
    pub fn inode(&self) -> Option<u32> {
        self.0.as_ref().map(|o| o.inode)
    }

    /// The name given with -N.
    pub fn name(&self) -> Option<&str> {
        self.0.as_ref().map(|o| o.name.as_str())
    }

    /// The namespace's one name, as `--all-netns` calls it in every command (`host` for
    /// the host's): the chosen one, or this process's own.
    pub fn label(&self) -> String {
        match self.inode().unwrap_or_else(crate::agent::own_netns) {
            // Our own namespace's link could not be read.
            0 => crate::procs::netns::HOST.to_string(),
            inode => crate::procs::netns::name_for(inode),
        }
    }

    pub fn is_other(&self) -> bool {
        self.0.is_some()
    }

    /// Runs `f` inside the namespace (on a worker thread when it is another one).
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> anyhow::Result<T> {
        match &self.0 {
            None => Ok(f()),
            Some(o) => crate::procs::netns::run_in(&o.name, &o.file, f)
                .map_err(|e| UsageError(e.to_string()).into()),
        }
    }

    /// /proc/net as seen from inside the namespace (valid within `run`).
    pub fn proc_net(&self) -> std::path::PathBuf {
        if self.0.is_some() {
            "/proc/thread-self/net".into()
        } else {
            "/proc/net".into()
        }
    }
}

/// `--interval`/`--count` (stats, ifaces): without an interval, `report(out, None, now)` once;
/// with one, every interval `report(out, Some((before, secs)), now)` with the previous read.
pub fn repeat<T>(
    args: &args::RepeatArgs,
    read: impl Fn() -> anyhow::Result<T>,
    mut report: impl FnMut(&mut dyn std::io::Write, Option<(&T, u64)>, &T) -> std::io::Result<()>,
) -> anyhow::Result<ExitCode> {
    use std::io::Write as _;
    if args.interval == Some(0) {
        return Err(UsageError("--interval must be at least 1 second".into()).into());
    }
    let mut out = std::io::stdout().lock();
    let Some(secs) = args.interval else {
        report(&mut out, None, &read()?)?;
        return Ok(ExitCode::SUCCESS);
    };
    let mut before = read()?;
    let mut printed = 0;
    while args.count.is_none_or(|n| printed < n) {
        std::thread::sleep(std::time::Duration::from_secs(secs));
        let now = read()?;
        report(&mut out, Some((&before, secs)), &now)?;
        out.flush()?;
        before = now;
        printed += 1;
    }
    Ok(ExitCode::SUCCESS)
}
