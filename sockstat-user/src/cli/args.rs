//! Every clap definition in one place.
use clap::{Args, Parser, Subcommand};

use crate::ebpf::HookChoice;

#[derive(Debug, Parser)]
#[command(
    name = "sockstat",
    version,
    about = "The live state of every socket: ss/netstat compatible listings, and every TCP state transition traced in the kernel",
    disable_help_subcommand = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Stream every TCP state transition as it happens (needs root, or CAP_BPF and CAP_PERFMON).
    Trace(TraceArgs),
}

#[derive(Debug, Args)]
pub struct TraceArgs {
    /// NDJSON output: one JSON object per transition.
    #[arg(long)]
    pub json: bool,
    /// Only sockets whose local or remote port is N (evaluated in the kernel).
    #[arg(long, value_name = "N")]
    pub port: Option<u16>,
    /// Only transitions owned by process N.
    #[arg(long, value_name = "N")]
    pub pid: Option<u32>,
    /// Only IPv4 sockets.
    #[arg(short = '4', long = "ipv4", conflicts_with = "ipv6")]
    pub ipv4: bool,
    /// Only IPv6 sockets.
    #[arg(short = '6', long = "ipv6")]
    pub ipv6: bool,
    /// Ring-buffer size in KiB (rounded up to a power of two).
    #[arg(long, value_name = "KIB", default_value_t = 1024)]
    pub ring_kb: u32,
    /// Stop after N transitions have been printed.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Do not print the column header.
    #[arg(short = 'H', long = "no-header")]
    pub no_header: bool,
    /// Kernel hook for sock:inet_sock_set_state.
    #[arg(long, value_enum, default_value_t = HookChoice::Auto)]
    pub hook: HookChoice,
}
