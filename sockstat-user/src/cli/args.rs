//! Every clap definition in one place.
use clap::{Args, Parser, Subcommand};

use crate::ebpf::{Family, HookChoice, RING_KIB};

#[derive(Debug, Parser)]
#[command(
    name = "sockstat",
    disable_version_flag = true,
    // ss takes a flag twice (`ss -tan state listening -n`): so does sockstat.
    args_override_self = true,
    about = "The live state of every socket: ss/netstat compatible listings, and every TCP state transition traced in the kernel",
    override_usage = "sockstat [OPTIONS] [FILTER]...\n       sockstat <COMMAND> [ARGS]\n       sockstat help [COMMAND]",
    // The long help (the filter language, examples, JSON keys) is set at parse time, wrapped
    // to the terminal: `cli::command`.
    after_help = "The filter language, examples and JSON keys: sockstat --help"
    // Not `args_conflicts_with_subcommands`: it would also refuse the global `-v` before a
    // command (`sockstat -v trace`); `cli::run` refuses listing options given with one.
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Print version.
    #[arg(short = 'V', long = "version", global = false)]
    pub version: bool,
    /// Say what sockstat decided and why on stderr (-vv: more detail).
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(flatten)]
    pub list: ListArgs,
}

/// ss's options, with ss's meanings.
#[derive(Debug, Args, Default, Clone, PartialEq)]
pub struct ListArgs {
    /// TCP sockets.
    #[arg(short = 't', long)]
    pub tcp: bool,
    /// UDP sockets.
    #[arg(short = 'u', long)]
    pub udp: bool,
    /// Unix-domain sockets.
    #[arg(short = 'x', long)]
    pub unix: bool,
    /// Raw sockets.
    #[arg(short = 'w', long)]
    pub raw: bool,
    /// Packet sockets.
    #[arg(short = '0', long)]
    pub packet: bool,
    #[command(flatten)]
    pub ip: FamilyArgs,
    /// Listening and non-listening sockets.
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Listening sockets only.
    #[arg(short = 'l', long)]
    pub listening: bool,
    /// Do not resolve service names.
    #[arg(short = 'n', long)]
    pub numeric: bool,
    /// Resolve host names.
    #[arg(short = 'r', long)]
    pub resolve: bool,
    /// Show the processes using each socket.
    #[arg(short = 'p', long)]
    pub processes: bool,
    /// Show timers.
    #[arg(short = 'o', long = "options")]
    pub timers: bool,
    /// Show details: uid, inode, socket cookie.
    #[arg(short = 'e', long)]
    pub extended: bool,
    /// Show socket memory.
    #[arg(short = 'm', long)]
    pub memory: bool,
    /// Show TCP internals (tcp_info).
    #[arg(short = 'i', long)]
    pub info: bool,
    /// Print a summary of socket counts.
    #[arg(short = 's', long)]
    pub summary: bool,
    /// No header line.
    #[arg(short = 'H', long = "no-header")]
    pub no_header: bool,
    /// One line per socket.
    #[arg(short = 'O', long)]
    pub oneline: bool,
    #[command(flatten)]
    pub ns: NetnsArgs,
    /// Socket tables: all, inet, tcp, udp, raw, unix, unix_stream, unix_dgram,
    /// unix_seqpacket, packet, packet_raw, packet_dgram (comma separated, ! to remove).
    #[arg(
        short = 'A',
        long = "query",
        value_name = "QUERY",
        visible_alias = "socket"
    )]
    pub query: Vec<String>,
    /// Address family: inet, inet6, link, unix.
    #[arg(short = 'f', long, value_name = "FAMILY")]
    pub family: Vec<String>,
    /// JSON output: one array of objects (with -s: the summary object).
    #[arg(long)]
    pub json: bool,
    /// Print the listing again every interval, each under a line with the time, as
    /// `netstat -c` and `watch ss` do (on a terminal, redrawn in place). Ctrl-C stops.
    #[arg(short = 'c', long)]
    pub continuous: bool,
    /// With -c: seconds between listings (default 1).
    #[arg(long, value_name = "SECS", requires = "continuous", value_parser = sample_seconds)]
    pub interval: Option<f64>,
    /// Filter expression, in ss's filter language. Options may come before or after it,
    /// as with ss (`sockstat -tan dst 10.0.0.0/8 -p`).
    #[arg(value_name = "FILTER")]
    pub filter: Vec<String>,
}

/// `-4`/`-6`, as ss has them: each adds a family; neither or both is both.
#[derive(Debug, Args, Default, Clone, Copy, PartialEq)]
pub struct FamilyArgs {
    /// IPv4 sockets (with -6: both).
    #[arg(short = '4', long = "ipv4")]
    pub ipv4: bool,
    /// IPv6 sockets (with -4: both).
    #[arg(short = '6', long = "ipv6")]
    pub ipv6: bool,
}

impl FamilyArgs {
    /// The one family asked for; `None`: both.
    pub fn only(self) -> Option<Family> {
        match (self.ipv4, self.ipv6) {
            (true, false) => Some(Family::Inet),
            (false, true) => Some(Family::Inet6),
            _ => None,
        }
    }

    /// How trace's and top's TCP-only filters are parsed under these options.
    pub fn tcp_filter_context(self) -> crate::filter::ParseContext {
        crate::filter::ParseContext {
            tcp: true,
            only_v4: self.only() == Some(Family::Inet),
            only_v6: self.only() == Some(Family::Inet6),
            ..crate::filter::ParseContext::default()
        }
    }

    pub fn v4(self) -> bool {
        self.only() != Some(Family::Inet6)
    }

    pub fn v6(self) -> bool {
        self.only() != Some(Family::Inet)
    }
}

/// `-N`: one network namespace, named the same way in every command.
#[derive(Debug, Args, Default, Clone, PartialEq)]
pub struct NetArg {
    /// Work in this network namespace: an `ip netns` name, a path (/run/netns/X,
    /// /proc/PID/ns/net), a pid, or an nsfs inode as `lsns -t net` shows it.
    #[arg(short = 'N', long = "net", visible_alias = "netns", value_name = "NS")]
    pub net: Option<String>,
}

/// `-N`, or every namespace.
#[derive(Debug, Args, Default, Clone, PartialEq)]
pub struct NetnsArgs {
    #[command(flatten)]
    pub one: NetArg,
    /// Every network namespace on the host, each socket labelled with its namespace (and
    /// container).
    #[arg(long, conflicts_with = "net")]
    pub all_netns: bool,
}

impl NetnsArgs {
    /// Pods and containers live in namespaces of their own: a `--pod`, `--k8s-namespace` or
    /// `--container` without `-N` looks in every namespace.
    pub fn widen_for(&mut self, workload: &WorkloadArgs) {
        if workload.filter_given() && self.one.net.is_none() {
            self.all_netns = true;
        }
    }
}

/// Sockets by their container's names: trace, top and report.
#[derive(Debug, Args, Default, Clone, PartialEq)]
pub struct WorkloadArgs {
    /// Only sockets of this Kubernetes pod (its exact name).
    #[arg(long, value_name = "NAME")]
    pub pod: Option<String>,
    /// Only sockets of pods in this Kubernetes namespace.
    #[arg(long = "k8s-namespace", value_name = "NAMESPACE")]
    pub k8s_namespace: Option<String>,
    /// Only sockets of this container: a pod's container name, or Docker's/Podman's name.
    #[arg(long, value_name = "NAME")]
    pub container: Option<String>,
}

impl WorkloadArgs {
    pub fn filter_given(&self) -> bool {
        self.pod.is_some() || self.k8s_namespace.is_some() || self.container.is_some()
    }

    pub fn filter(&self) -> Option<crate::procs::workload::WorkloadFilter> {
        crate::procs::workload::WorkloadFilter::new(
            self.pod.as_deref(),
            self.k8s_namespace.as_deref(),
            self.container.as_deref(),
        )
    }
}

/// The kernel programs' options: trace, top and serve.
#[derive(Debug, Args, Clone, Copy)]
pub struct ProbeArgs {
    /// Kernel hook for sock:inet_sock_set_state.
    #[arg(long, value_enum, default_value_t = HookChoice::Auto)]
    pub hook: HookChoice,
    /// Ring-buffer size in KiB, 4 to 1048576 (rounded up to a power of two).
    #[arg(long = "ring-kb", value_name = "KIB", default_value_t = 4096, value_parser = ring_kib)]
    pub ring_kib: u32,
}

/// The agents' privileges once loaded: trace, top and serve.
#[derive(Debug, Args, Clone, Default)]
pub struct PrivilegeArgs {
    /// Once the kernel programs are loaded, run on as this user (with only the
    /// capabilities still needed; see CAPABILITIES in --help).
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
}

/// Where `record` keeps its store and `history` reads it.
pub const DEFAULT_STORE: &str = "/var/lib/sockstat";

/// RecordTo's options, by their ids.
pub const RECORD_OPTIONS: [&str; 8] = [
    "store",
    "keep",
    "max_size",
    "flush",
    "sink",
    "spool_max",
    "host",
    "transitions",
];

/// Where and how `record` (and `serve --record`) keeps connections.
#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Recording")]
pub struct RecordTo {
    /// The store's directory (made if missing; the database is history.db in it).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_STORE)]
    pub store: std::path::PathBuf,
    /// Forget connections that closed longer ago than this (e.g. 7d, 12h; 0: never;
    /// default 7d). With --sink only when given, in whole days: ClickHouse's day partitions
    /// older than that are dropped (a fleet's store is bounded by whoever sets it).
    #[arg(long, value_name = "AGE", value_parser = retention_age)]
    pub keep: Option<std::time::Duration>,
    /// Keep the store (database and its log) within this size, forgetting the oldest
    /// first (e.g. 1G, 200M; 0: no bound; at least 256K).
    #[arg(long, value_name = "SIZE", default_value = "1G", value_parser = store_size)]
    pub max_size: u64,
    /// Seconds a recorded connection may wait before it is committed: what a crash can lose.
    #[arg(long, value_name = "SECS", default_value_t = 1.0, value_parser = sample_seconds)]
    pub flush: f64,
    /// Record into ClickHouse instead (clickhouse://[USER[:PASSWORD]@]HOST[:PORT][/DB]),
    /// a fleet's store: batches wait in --store's spool/ while it is down.
    #[arg(long, value_name = "URL", value_parser = clickhouse_url)]
    pub sink: Option<crate::history::clickhouse::Url>,
    /// With --sink: the spool's bound; batches past it are dropped and counted (0: no
    /// bound).
    #[arg(long, value_name = "SIZE", default_value = "1G", value_parser = store_size)]
    pub spool_max: u64,
    /// The name this machine's connections are recorded under (default: its hostname).
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
    /// Also record every state change (what trace prints), not only each connection's
    /// lifetime: about five rows more per connection.
    #[arg(long)]
    pub transitions: bool,
}

#[derive(Debug, Args, Clone)]
pub struct RecordArgs {
    #[command(flatten)]
    pub to: RecordTo,
    #[command(flatten)]
    pub ns: NetnsArgs,
    #[command(flatten)]
    pub probe: ProbeArgs,
    #[command(flatten)]
    pub privilege: PrivilegeArgs,
}

#[derive(Debug, Args, Clone)]
pub struct HistoryArgs {
    /// The store to read (a directory `sockstat record --store` made, or its history.db).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_STORE)]
    pub store: std::path::PathBuf,
    /// Read a fleet's ClickHouse instead (the URL record --sink wrote to): every host's
    /// connections, each with its host.
    #[arg(long, value_name = "URL", value_parser = clickhouse_url, conflicts_with = "store")]
    pub from: Option<crate::history::clickhouse::Url>,
    /// With --from: only connections this host recorded.
    #[arg(long, value_name = "NAME", requires = "from")]
    pub host: Option<String>,
    /// Connections open at some time since then: an age (2h, 30m, 7d) or a time
    /// (2026-12-02T03:12:00Z, or 2026-12-02 03:12:00 in UTC).
    #[arg(long, value_name = "AGE|TIME", default_value = "1h", value_parser = point_in_time)]
    pub since: PointInTime,
    /// ... and before then (default: now).
    #[arg(long, value_name = "AGE|TIME", value_parser = point_in_time)]
    pub until: Option<PointInTime>,
    /// Only connections owned by process N.
    #[arg(long, value_name = "N")]
    pub pid: Option<u32>,
    /// Only connections whose owner's name contains NAME.
    #[arg(long, value_name = "NAME")]
    pub comm: Option<String>,
    #[command(flatten)]
    pub workload: WorkloadArgs,
    /// Each recorded state change instead (record --transitions), printed as trace prints
    /// them.
    #[arg(long)]
    pub transitions: bool,
    /// NDJSON: one object per connection (trace --lifetimes's keys, with its container's).
    #[arg(long)]
    pub json: bool,
    /// Do not print the header line.
    #[arg(short = 'H', long)]
    pub no_header: bool,
    /// An ss filter expression over addresses and ports, e.g. 'dst 10.0.3.7 and dport = :5432'.
    #[arg(value_name = "FILTER")]
    pub filter: Vec<String>,
}

/// `--since`/`--until`: a moment given as an age or as a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PointInTime {
    Ago(std::time::Duration),
    At(std::time::SystemTime),
}

impl PointInTime {
    /// Wall-clock nanoseconds since the epoch, ages counted back from `now_ns`.
    pub fn ns(self, now_ns: i64) -> i64 {
        match self {
            PointInTime::Ago(d) => now_ns.saturating_sub(d.as_nanos().min(i64::MAX as u128) as i64),
            PointInTime::At(t) => t
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos().min(i64::MAX as u128) as i64),
        }
    }
}

fn point_in_time(text: &str) -> Result<PointInTime, String> {
    if let Ok(d) = humantime::parse_duration(text) {
        return Ok(PointInTime::Ago(d));
    }
    humantime::parse_rfc3339_weak(text)
        .map(PointInTime::At)
        .map_err(|_| {
            format!("{text:?}: give an age (2h, 30m, 7d) or a UTC time (2026-12-02T03:12:00Z)")
        })
}

/// `--keep`: an age; 0 keeps everything.
fn history_age(text: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(text)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{text:?}: give an age such as 1h, 30m or 2d"))
}

fn retention_age(text: &str) -> Result<std::time::Duration, String> {
    if text == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    humantime::parse_duration(text)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{text:?}: give an age such as 7d, 12h or 90m (0: keep all)"))
}

/// `--max-size`: bytes with an optional K/M/G/T suffix (powers of 1024); 0: no bound.
fn clickhouse_url(text: &str) -> Result<crate::history::clickhouse::Url, String> {
    text.parse()
        .map_err(|e: crate::history::clickhouse::ClickHouseError| e.to_string())
}

fn store_size(text: &str) -> Result<u64, String> {
    let bad =
        || format!("{text:?}: give a size such as 1G, 200M or 512K, at least 256K (0: no bound)");
    let t = text.trim();
    let (digits, shift) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(bad()),
            };
            (&t[..i], shift)
        }
        _ => (t, 0),
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    if n == 0 {
        return Ok(0);
    }
    let bytes = n.checked_mul(1u64 << shift).ok_or_else(bad)?;
    if bytes < 256 * 1024 {
        return Err(bad());
    }
    Ok(bytes)
}

// Range checks live here, in clap's value parsers, so every command rejects the same bad
// value with the same short message (exit 2) before anything is loaded.

fn ring_kib(text: &str) -> Result<u32, String> {
    text.parse::<u32>()
        .ok()
        .filter(|k| RING_KIB.contains(k))
        .ok_or_else(|| {
            format!(
                "must be a size in KiB from {} to {}",
                RING_KIB.start(),
                RING_KIB.end()
            )
        })
}

/// Seconds as a decimal number within `range`; the message never echoes a long number.
fn seconds_in(text: &str, range: std::ops::RangeInclusive<f64>) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && range.contains(s))
        .ok_or_else(|| format!("must be seconds from {} to {}", range.start(), range.end()))
}

/// top and serve: a sample or refresh period.
fn sample_seconds(text: &str) -> Result<f64, String> {
    seconds_in(text, 0.1..=3600.0)
}

/// trace --rtt-interval: 1 ms to an hour.
fn rtt_seconds(text: &str) -> Result<f64, String> {
    seconds_in(text, 0.001..=3600.0)
}

/// stats and ifaces: whole seconds between reports, up to a day.
fn whole_seconds(text: &str) -> Result<u64, String> {
    text.parse::<u64>()
        .ok()
        .filter(|s| (1..=86_400).contains(s))
        .ok_or_else(|| "must be whole seconds from 1 to 86400".to_string())
}

/// trace: 0 (never) or up to an hour.
fn reconcile_seconds(text: &str) -> Result<u64, String> {
    text.parse::<u64>()
        .ok()
        .filter(|s| *s <= 3600)
        .ok_or_else(|| "must be whole seconds from 0 (never) to 3600".to_string())
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Stream every TCP state transition as it happens (needs root, or CAP_BPF and CAP_PERFMON).
    #[command(
        after_help = "The columns, JSON keys and what the kernel reports: sockstat trace --help"
    )]
    Trace(TraceArgs),
    /// A live dashboard: state counts, churn, the TCP state machine with live edges.
    Top(TopArgs),
    /// Self-checking exercises that make each TCP transition happen in private namespaces.
    Lab(LabArgs),
    /// Protocol counters, like netstat -s (/proc/net/snmp, netstat, snmp6).
    Stats(StatsArgs),
    /// Interfaces with packet, error, drop and overrun counters, like netstat -i.
    Ifaces(IfacesArgs),
    /// IPv4 and IPv6 routes of the main table, like netstat -r.
    Routes(RoutesArgs),
    /// Analysis: states, top peers and ports, external connections, unusual listeners,
    /// leak indicators; --alert for cron and CI.
    Report(ReportArgs),
    /// A Prometheus/OpenMetrics exporter: /metrics and /healthz.
    Serve(ServeArgs),
    /// One connection's timeline (transitions, retransmits, resets), live or recently
    /// closed, from a running `sockstat serve`.
    Conn(ConnArgs),
    /// The flight recorder: keep every connection's lifetime in a local store (needs root,
    /// or CAP_BPF and CAP_PERFMON), for `sockstat history` to answer later.
    Record(RecordArgs),
    /// Connections recorded by `sockstat record`: who connected where, when, and how it
    /// ended, selected with the ss filter language and a time range.
    History(HistoryArgs),
}

impl Command {
    /// The name it is called by.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Trace(_) => "trace",
            Command::Top(_) => "top",
            Command::Lab(_) => "lab",
            Command::Stats(_) => "stats",
            Command::Ifaces(_) => "ifaces",
            Command::Routes(_) => "routes",
            Command::Report(_) => "report",
            Command::Serve(_) => "serve",
            Command::Conn(_) => "conn",
            Command::Record(_) => "record",
            Command::History(_) => "history",
        }
    }
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
    #[command(flatten)]
    pub ip: FamilyArgs,
    #[command(flatten)]
    pub probe: ProbeArgs,
    #[command(flatten)]
    pub privilege: PrivilegeArgs,
    /// Stop after N transitions have been printed.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Do not print the column header.
    #[arg(short = 'H', long = "no-header")]
    pub no_header: bool,
    /// One line per event even on a terminal too narrow for it (narrower terminals get two
    /// lines per event; pipes always get one).
    #[arg(long)]
    pub wide: bool,
    /// Only transitions whose owner's command name contains this.
    #[arg(long, value_name = "NAME")]
    pub comm: Option<String>,
    #[command(flatten)]
    pub ns: NetnsArgs,
    /// Only transitions whose owner lives in this cgroup (v2 path, or a prefix of it).
    #[arg(long, value_name = "PATH")]
    pub cgroup: Option<String>,
    #[command(flatten)]
    pub workload: WorkloadArgs,
    /// One line per finished connection (duration, bytes, handshake RTT, the RTT, min RTT,
    /// cwnd and delivery rate at its close, retransmits, cause, owner) instead of one per
    /// transition.
    #[arg(long)]
    pub lifetimes: bool,
    /// One block per connection when it closes (one JSON object with an `events` array):
    /// its transitions and the retransmits, resets and drops --events selects, with times
    /// from its first event.
    #[arg(long, conflicts_with_all = ["lifetimes", "count_only"])]
    pub timeline: bool,
    /// With --timeline: the most events kept per connection (its first and the latest;
    /// the rest are counted as left out).
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u32).range(2..=65536))]
    pub timeline_events: u32,
    /// Count transitions in the kernel only; print the per-edge counts at the end.
    #[arg(long)]
    pub count_only: bool,
    /// Which events to print, comma-separated: state (transitions, or lifetimes with
    /// --lifetimes), retrans (retransmitted segments: syn, syn-ack, rto, tlp, recovery),
    /// reset (RSTs sent and received), drop (TCP segments the kernel dropped, with its
    /// reason: tcp-csum, no-socket, tcp-invalid-sequence, ...), rtt (each handshake's RTT,
    /// then smoothed and min RTT, cwnd and delivery rate once per --rtt-interval while a
    /// connection receives), or all.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "state",
        value_name = "KINDS"
    )]
    pub events: Vec<TraceEvents>,
    /// With --events rtt: seconds between two RTT samples of one connection (the kernel
    /// writes none sooner).
    #[arg(long, value_name = "SECS", default_value_t = 1.0, value_parser = rtt_seconds)]
    pub rtt_interval: f64,
    /// Seconds between reconciles with sock_diag (TIME-WAIT expiry, repairs); 0: never.
    #[arg(long, value_name = "SECS", default_value_t = 5, value_parser = reconcile_seconds)]
    pub reconcile: u64,
    /// Filter expression, in ss's filter language (e.g. 'dport = :443'); options may follow it.
    #[arg(value_name = "FILTER")]
    pub filter: Vec<String>,
}

/// The kinds of event `trace --events` selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TraceEvents {
    State,
    Retrans,
    Reset,
    Drop,
    Rtt,
    All,
}

impl TraceArgs {
    /// Whether `--events` selects `kind` (directly or through `all`).
    pub fn wants(&self, kind: TraceEvents) -> bool {
        self.events
            .iter()
            .any(|&e| e == kind || e == TraceEvents::All)
    }
}

#[derive(Debug, Args)]
pub struct TopArgs {
    /// Print one snapshot and exit (after one interval); exit code 1 if an alert fires.
    #[arg(long)]
    pub once: bool,
    /// With --once: the snapshot as one JSON object.
    #[arg(long, requires = "once")]
    pub json: bool,
    /// Seconds per sample (rates, sparklines); the screen redraws 4 times a second.
    #[arg(long, value_name = "SECS", default_value_t = 1.0, value_parser = sample_seconds)]
    pub interval: f64,
    /// Alert when METRIC OP NUMBER holds, e.g. 'time-wait > 5000' or 'syn-sent/s > 100'
    /// (repeatable). Metrics: state names (estab, syn-sent, time-wait, ...), total,
    /// transitions/s, syn-sent/s, time-wait/s, connect-errors/s, resets/s, lost.
    #[arg(long, value_name = "EXPR")]
    pub alert: Vec<String>,
    /// Poll sock_diag instead of loading the kernel programs (no per-edge data).
    #[arg(long)]
    pub poll: bool,
    /// Show the dashboard as it was, rebuilt from what `record --transitions` kept: a
    /// store directory, or a fleet's clickhouse:// URL. On a terminal ←/→ and PgUp/PgDn
    /// move the moment; with --once (or not a terminal) it is printed once.
    #[arg(long, value_name = "DIR|URL", conflicts_with = "poll")]
    pub replay: Option<String>,
    /// With --replay: the moment, an age (10m) or a UTC time (default: now).
    #[arg(long, value_name = "AGE|TIME", value_parser = point_in_time, requires = "replay")]
    pub at: Option<PointInTime>,
    /// With --replay from ClickHouse: only what this host recorded.
    #[arg(long, value_name = "NAME", requires = "replay")]
    pub host: Option<String>,
    #[command(flatten)]
    pub workload: WorkloadArgs,
    #[command(flatten)]
    pub ns: NetnsArgs,
    #[command(flatten)]
    pub ip: FamilyArgs,
    #[command(flatten)]
    pub probe: ProbeArgs,
    #[command(flatten)]
    pub privilege: PrivilegeArgs,
    /// Filter expression, in ss's filter language (editable on screen with `f`); options may
    /// follow it.
    #[arg(value_name = "FILTER")]
    pub filter: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LabArgs {
    /// Without one: the list of exercises.
    #[command(subcommand)]
    pub command: Option<LabCommand>,
}

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// The course: its exercises part by part, what each teaches and the edges it shows.
    List,
    /// The state machine with every edge coloured: shown by an exercise (which one),
    /// RFC-only (with what Linux does instead), or not covered yet.
    Coverage {
        /// One JSON object per edge.
        #[arg(long)]
        json: bool,
    },
    /// Run one exercise, or `all` (needs root: it creates network namespaces).
    Run {
        /// An exercise name from `sockstat lab list`, or `all`.
        name: String,
        /// One JSON object per exercise.
        #[arg(long)]
        json: bool,
        /// Step through with pauses, printing each transition as it is traced.
        #[arg(long)]
        slow: bool,
    },
}

/// What `stats` and `ifaces` share: totals once, or per-second changes every N seconds.
#[derive(Debug, Args)]
pub struct RepeatArgs {
    /// JSON (with --interval: one object per line).
    #[arg(long)]
    pub json: bool,
    /// Print per-second changes every N seconds instead of the totals.
    #[arg(long, value_name = "SECS", value_parser = whole_seconds)]
    pub interval: Option<u64>,
    /// With --interval: stop after N reports.
    #[arg(long, value_name = "N", requires = "interval")]
    pub count: Option<u64>,
    #[command(flatten)]
    pub ns: NetArg,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    #[command(flatten)]
    pub repeat: RepeatArgs,
    /// Also the zero counters of the extended groups (TcpExt, IpExt, ...), which netstat -s
    /// leaves out.
    #[arg(long)]
    pub zeros: bool,
}

#[derive(Debug, Args)]
pub struct IfacesArgs {
    #[command(flatten)]
    pub repeat: RepeatArgs,
}

#[derive(Debug, Args)]
pub struct RoutesArgs {
    /// Numeric: 0.0.0.0/0 and ::/0 instead of "default".
    #[arg(short = 'n', long)]
    pub numeric: bool,
    #[command(flatten)]
    pub ip: FamilyArgs,
    /// JSON: an array of routes.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub ns: NetArg,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// JSON: one object.
    #[arg(long)]
    pub json: bool,
    /// Listening ports that are expected, as numbers or service names separated by commas
    /// or spaces (e.g. 22,80,https); others are flagged.
    #[arg(
        long,
        value_name = "PORTS",
        default_value = "22,80,443,53,25,110,143,993,995",
        value_parser = port_list
    )]
    pub allow_ports: PortList,
    /// Exit 1 when METRIC OP NUMBER holds (repeatable). Metrics: state names, total,
    /// external, unusual-listeners, close-wait-age (s), time-wait-pct, syn-recv-pct; with
    /// --history: connections, connections-per-second, failed-connects,
    /// failed-connects-pct, resets, external, short-lived, retransmits.
    #[arg(long, value_name = "EXPR")]
    pub alert: Vec<String>,
    /// Analyse the connections recorded over this long (e.g. 1h, 30m), from the store
    /// `sockstat record` fills (or --from a fleet's), instead of the live sockets.
    #[arg(long, value_name = "AGE", value_parser = history_age)]
    pub history: Option<std::time::Duration>,
    /// With --history: the store to read.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_STORE, requires = "history")]
    pub store: std::path::PathBuf,
    /// With --history: a fleet's ClickHouse instead (record --sink's URL).
    #[arg(long, value_name = "URL", value_parser = clickhouse_url, requires = "history", conflicts_with = "store")]
    pub from: Option<crate::history::clickhouse::Url>,
    /// With --from: only what this host recorded.
    #[arg(long, value_name = "NAME", requires = "from")]
    pub host: Option<String>,
    #[command(flatten)]
    pub workload: WorkloadArgs,
    #[command(flatten)]
    pub ns: NetnsArgs,
    /// Only the sockets this ss filter selects (e.g. 'state established dport = :443');
    /// options may follow it.
    #[arg(value_name = "FILTER")]
    pub filter: Vec<String>,
}

/// Ports given as numbers or /etc/services names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortList(pub Vec<u16>);

fn port_list(text: &str) -> Result<PortList, String> {
    let services = crate::services::Services::system();
    text.split([',', ' '])
        .filter(|w| !w.is_empty())
        .map(|w| {
            w.parse::<u16>()
                .ok()
                .or_else(|| services.port(w, crate::services::Proto::Tcp))
                .ok_or_else(|| format!("{w:?} is neither a port number nor a service name"))
        })
        .collect::<Result<Vec<u16>, String>>()
        .map(PortList)
}

/// The exporter's default port: outside the 9100-9999 range the Prometheus exporters
/// allocate, so it collides with none of them.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:19377";

#[derive(Debug, Args)]
pub struct ConnArgs {
    /// The connection: its cookie (decimal, 0xHEX, or sk:HEX as trace and ss -e show it),
    /// or this host's end and the peer's (ADDR:PORT ADDR:PORT).
    #[arg(value_name = "COOKIE | LOCAL REMOTE", num_args = 1..=2, required = true)]
    pub target: Vec<String>,
    /// The `sockstat serve` to ask (its --listen).
    #[arg(long, value_name = "ADDR:PORT", default_value = DEFAULT_LISTEN)]
    pub agent: String,
    /// One NDJSON object, as `trace --timeline --json` prints it.
    #[arg(long)]
    pub json: bool,
    /// The agent serves TLS (serve --web-config): verify it against this CA certificate
    /// (PEM).
    #[arg(long, value_name = "FILE")]
    pub ca: Option<std::path::PathBuf>,
    /// The agent asks for a password (basic_auth_users): a file holding USER:PASSWORD on
    /// one line (not on the command line, where `ps` shows it).
    #[arg(long, value_name = "FILE")]
    pub auth_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and port to serve /metrics and /healthz on.
    #[arg(long, value_name = "ADDR:PORT", default_value = DEFAULT_LISTEN)]
    pub listen: String,
    /// Seconds between refreshes of the socket gauges (scrapes read what is there).
    #[arg(long, value_name = "SECS", default_value_t = 1.0, value_parser = sample_seconds)]
    pub interval: f64,
    /// Poll sock_diag instead of loading the kernel programs.
    #[arg(long)]
    pub poll: bool,
    /// For `sockstat conn`: the most connections whose timelines are kept, live and as
    /// many recently closed (the oldest make room, counted). At most N x 2 x
    /// --timeline-events x 176 bytes: 11.5 MiB with the defaults.
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_048_576))]
    pub timelines: u32,
    /// The most events kept per connection's timeline (its first and the latest).
    #[arg(long, value_name = "N", default_value_t = 32, value_parser = clap::value_parser!(u32).range(2..=65536))]
    pub timeline_events: u32,
    /// TLS and basic auth, in the Prometheus exporter-toolkit's web configuration format
    /// (tls_server_config, basic_auth_users with bcrypt hashes), as node_exporter takes it.
    #[arg(long, value_name = "FILE")]
    pub web_config: Option<std::path::PathBuf>,
    /// Also record every connection's lifetime, as `sockstat record` does (its options
    /// below), and export what became of them (sockstat_record_*).
    #[arg(long)]
    pub record: bool,
    #[command(flatten)]
    pub recording: RecordTo,
    #[command(flatten)]
    pub ns: NetnsArgs,
    #[command(flatten)]
    pub probe: ProbeArgs,
    #[command(flatten)]
    pub privilege: PrivilegeArgs,
}
