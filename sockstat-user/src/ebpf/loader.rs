//! Loading and attaching the kernel programs: choose the hook the kernel supports, resolve
//! offsets, size the ring buffer, attach. Knows nothing about output formats.
use std::{
    collections::HashMap,
    os::fd::{AsFd, OwnedFd},
};

use aya::maps::{Array, HashMap as BpfHashMap, Map, MapData, PerCpuArray};
use sockstat_common::{
    ProbeConfig, SockOffsets, TcpOffsets, TracepointOffsets, TwOffsets, counter,
};

use super::{
    events::Family,
    kallsyms,
    object::{self, KernelObject, Maps, ObjectError, ProgramKind, pod_bytes},
    offsets::{KernelBtf, OffsetError, VMLINUX_BTF},
    reasons::ReasonNames,
    ring::RingReader,
    tracefs::{self, TracefsError},
};

/// The kernel object built by `build.rs` from `sockstat-ebpf`.
pub(crate) static PROGRAMS: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sockstat"));

const TP_NAME: &str = "inet_sock_set_state";

/// Which attachment to use for `sock:inet_sock_set_state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum HookChoice {
    /// tp_btf when the kernel has BTF, the classic tracepoint otherwise.
    Auto,
    /// BTF tracepoint (needs /sys/kernel/btf/vmlinux; no tracefs).
    TpBtf,
    /// Classic tracepoint (needs tracefs; mounted if missing).
    Tracepoint,
}

impl HookChoice {
    /// The attach type's name, as bpftool spells it.
    pub fn name(self) -> &'static str {
        match self {
            HookChoice::Auto => "auto",
            HookChoice::TpBtf => "tp_btf",
            HookChoice::Tracepoint => "tracepoint",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(
        "this kernel has no BTF ({VMLINUX_BTF} is missing) and no sock:inet_sock_set_state tracepoint: {0}"
    )]
    NoHook(TracefsError),
    #[error(
        "the BTF hook needs kernel BTF, but {VMLINUX_BTF} is missing; the classic tracepoint hook does without"
    )]
    NoBtf,
    #[error(transparent)]
    Offsets(#[from] OffsetError),
    #[error(transparent)]
    Tracefs(#[from] TracefsError),
    #[error("loading the kernel programs failed: {0}")]
    Object(#[from] ObjectError),
    #[error("kernel refused program {program}: {}", refusal(source))]
    Program {
        program: &'static str,
        #[source]
        source: ObjectError,
    },
    #[error("this kernel has no tracepoint {0}")]
    NoTracepoint(&'static str),
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("a ring buffer of {0} KiB: must be from 4 to 1048576 KiB")]
    RingSize(u32),
    #[error(transparent)]
    TooFewFiles(#[from] super::privilege::TooFewFiles),
    #[error("mapping the event ring buffer: {0}")]
    Ring(std::io::Error),
    #[error("reading a kernel program's statistics: {0}")]
    ProgInfo(std::io::Error),
    #[error(
        "the kernel refused the BTF hook: {0}; kernels before 5.12 lack socket cookies and storage in tracing programs; the classic tracepoint hook may still load"
    )]
    BtfHookRefused(String),
    #[error(
        "this kernel ({release}) has no {missing}; sockstat's kernel programs need Linux {since} or later (README: Supported kernels)"
    )]
    KernelTooOld {
        release: String,
        missing: &'static str,
        since: &'static str,
    },
}

/// A program refusal on one line: the error, and the verifier's reason (its last line
/// before the statistics it ends with) rather than its whole log, which `-vv` prints.
fn refusal(e: &ObjectError) -> String {
    match e {
        ObjectError::Verifier { source, log, .. } => {
            log::debug!("verifier log (its end):\n{log}");
            let statistics = |l: &str| {
                l.starts_with("processed ")
                    || l.starts_with("verification time")
                    || l.starts_with("stack depth")
            };
            match log
                .lines()
                .map(str::trim)
                .rev()
                .find(|l| !l.is_empty() && !statistics(l))
            {
                Some(reason) => format!("{source} (verifier: {reason})"),
                None => source.to_string(),
            }
        }
        other => other.to_string(),
    }
}

/// The oldest kernel feature the programs cannot do without, probed rather than read from
/// the version: the BPF ring buffer (Linux 5.8).
fn check_kernel() -> Result<(), LoadError> {
    if matches!(
        aya::sys::is_map_supported(aya::maps::MapType::RingBuf),
        Ok(false)
    ) {
        return Err(LoadError::KernelTooOld {
            release: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|r| r.trim().to_string())
                .unwrap_or_default(),
            missing: "BPF ring buffer",
            since: "5.8",
        });
    }
    Ok(())
}

/// Ring-buffer sizes (KiB) the kernel and the memory budget accept.
pub const RING_KIB: std::ops::RangeInclusive<u32> = 4..=1_048_576;

/// The ring buffer's size in bytes: the kernel wants a power-of-two multiple of the page
/// size.
fn ring_bytes(ring_kib: u32) -> u32 {
    ring_kib.saturating_mul(1024).next_power_of_two()
}

/// What to load, and what the kernel side keeps and reports.
#[derive(Clone, Copy, Debug)]
pub struct ProbeOptions {
    pub hook: HookChoice,
    /// Ring-buffer size in KiB; rounded up to a power of two.
    pub ring_kib: u32,
    /// Only sockets with this local or remote port.
    pub port: Option<u16>,
    /// Only this address family.
    pub family: Option<Family>,
    /// Only this network namespace (inode); `None`: every one.
    pub netns: Option<u32>,
    /// Only the namespaces added with [`Probe::watch_netns`] (with the BTF hooks; the
    /// classic tracepoint cannot tell namespaces apart, so user space must filter too).
    pub watched_netns: bool,
    /// sockstat's own endpoint (namespace inode, port), left out of everything.
    pub own: Option<(u32, u16)>,
    /// False: count transitions in the kernel only, write no events.
    pub emit_events: bool,
    /// Write an event for each dropped TCP segment (they are counted either way).
    pub drop_events: bool,
    /// Write RTT events, at most one per connection per this interval (`RTT_HOOK`).
    pub rtt_interval: Option<std::time::Duration>,
    /// What the hooks do with each socket's cgroup.
    pub cgroups: SocketCgroups,
}

/// Whether events carry the socket's cgroup id, and whether cgroups can be left out in the
/// kernel ([`Probe::leave_out_cgroup`]). Without socket cgroup data in the kernel (or with
/// the classic hook) events carry none, and user space judges every event itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SocketCgroups {
    #[default]
    Ignore,
    Filter,
}

impl ProbeOptions {
    /// The one place the kernel's settings are made. `tw_timer_fn` is the loader's to fill.
    fn config(&self) -> ProbeConfig {
        ProbeConfig {
            port: self.port.unwrap_or(0),
            family: match self.family {
                None => sockstat_common::family::UNSPEC,
                Some(Family::Inet) => sockstat_common::family::INET,
                Some(Family::Inet6) => sockstat_common::family::INET6,
            },
            netns: self.netns.unwrap_or(0),
            netns_watched: u8::from(self.watched_netns),
            // Wake the reader when a quarter of the ring is used; below that, readers poll.
            wakeup_bytes: ring_bytes(self.ring_kib) / 4,
            own_port: self.own.map_or(0, |(_, port)| port),
            own_netns: self.own.map_or(0, |(netns, _)| netns),
            emit_events: u8::from(self.emit_events),
            drop_events: u8::from(self.emit_events && self.drop_events),
            cgroups: match self.cgroups {
                SocketCgroups::Ignore => sockstat_common::cgroups::IGNORE,
                SocketCgroups::Filter => sockstat_common::cgroups::FILTER,
            },
            // At least 1 ns: 0 means none.
            rtt_interval_ns: self
                .rtt_interval
                .filter(|_| self.emit_events)
                .map_or(0, |i| {
                    u64::try_from(i.as_nanos()).unwrap_or(u64::MAX).max(1)
                }),
            ..ProbeConfig::UNFILTERED
        }
    }
}

/// Loaded, attached programs. Dropping it detaches everything.
pub struct Probe {
    /// The attachments (raw tracepoint or perf event fds): closing one detaches it.
    _links: Vec<OwnedFd>,
    /// Every loaded program, by name, for its statistics.
    programs: Vec<(&'static str, OwnedFd)>,
    events: Option<MapData>,
    counters: PerCpuArray<MapData, u64>,
    edges: PerCpuArray<MapData, u64>,
    hook: HookChoice,
    ring_bytes: u32,
    attached: Vec<&'static str>,
    missing: Vec<MissingHook>,
    timewait: bool,
    /// The programs' aya-log records (rare-path diagnostics), read when `-v` asked for them.
    kernel_log: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    /// What sent resets' and drops' reasons are called (from BTF).
    reset_reasons: ReasonNames,
    drop_reasons: ReasonNames,
    drops: PerCpuArray<MapData, u64>,
    /// `CGROUPS_LEFT_OUT`, with `SocketCgroups::Filter` where the kernel reads cgroups.
    left_out: Option<BpfHashMap<MapData, u64, u8>>,
    /// `NETNS_WATCHED`, with `ProbeOptions::watched_netns`.
    watched_netns: Option<BpfHashMap<MapData, u32, u8>>,
}

/// aya-log's level for the kernel programs: off unless `-v`, so their rare-path diagnostics
/// cost a load and a branch when nobody reads them. (aya-log-common numbers levels from 1,
/// Error, to 5, Trace.)
fn kernel_log_level() -> u8 {
    match log::max_level() {
        log::LevelFilter::Off | log::LevelFilter::Error | log::LevelFilter::Warn => 0,
        log::LevelFilter::Info => 2,
        log::LevelFilter::Debug => 4,
        log::LevelFilter::Trace => 5,
    }
}

/// The cause events (sockstat-ebpf/src/tcp_events.rs): program and tracepoint (same name),
/// and what is lost without it.
const TCP_EVENT_HOOKS: [(&str, &str); 5] = [
    (
        "tcp_receive_reset",
        "closes by a received RST get no rst-in cause unless sk_err says so",
    ),
    (
        "tcp_send_reset",
        "closes by an RST sockstat's host sent get no rst-out cause; resets sent are not counted",
    ),
    (
        "tcp_retransmit_skb",
        "retransmits are not counted (lifetimes keep tcp_info's total)",
    ),
    (
        "tcp_retransmit_synack",
        "SYN-ACK retransmits are not counted",
    ),
    (
        "inet_sk_error_report",
        "socket errors are named only from sk_err at the close",
    ),
];

/// The timewait hooks (sockstat-ebpf/src/timewait.rs): used all together, and with
/// `DROP_HOOK`, or not at all.
const TIMEWAIT_HOOKS: [&str; 3] = ["timer_start", "timer_cancel", "timer_expire_entry"];

/// `skb:kfree_skb` (sockstat-ebpf/src/drops.rs): segments to closed ports, which the kernel
/// answers with an RST, and the FINs and RSTs that reach timewait sockets.
const DROP_HOOK: &str = "kfree_skb";
const DROP_CONSEQUENCE: &str = "resets answering closed ports (connects to them, port scans) are not counted; TIME-WAIT is inferred";
const TIMEWAIT_CONSEQUENCE: &str = "TIME-WAIT is inferred from the peer's FIN and expired by sock_diag reconciles (marked synthesized); orphans in FIN-WAIT-2 move on at the next reconcile; overflows, reuses and resets of timewait sockets are not told apart";

/// `tcp:tcp_probe` (sockstat-ebpf/src/rtt.rs): RTT samples, attached only when asked for.
const RTT_HOOK: &str = "tcp_probe";
const RTT_CONSEQUENCE: &str = "no RTT samples (handshake RTTs and the tcp_info at each close still come with the transitions)";

/// A cause hook that is not attached, and what that costs. The state machine itself is
/// traced either way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MissingHook {
    pub tracepoint: &'static str,
    /// Why it is not attached: the kernel's refusal, or the hook mode.
    pub why: String,
    pub consequence: &'static str,
}

impl std::fmt::Display for MissingHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} not attached ({}): {}",
            self.tracepoint, self.why, self.consequence
        )
    }
}

/// Loads and attaches the programs, keeping what must stay open.
struct Attacher {
    object: KernelObject,
    /// `btf_trace_<tracepoint>` typedef ids, for the BTF hooks.
    btf_ids: HashMap<&'static str, u32>,
    programs: Vec<(&'static str, OwnedFd)>,
    links: Vec<OwnedFd>,
}

impl Attacher {
    /// Loads `program` as a BTF tracepoint program for `tracepoint` and attaches it.
    fn attach_btf(
        &mut self,
        program: &'static str,
        tracepoint: &'static str,
    ) -> Result<(), LoadError> {
        let btf_id = *self
            .btf_ids
            .get(tracepoint)
            .ok_or(LoadError::NoTracepoint(tracepoint))?;
        self.load_and_attach(program, ProgramKind::BtfTracepoint { btf_id }, |fd| {
            object::attach_raw_tracepoint(fd)
        })
    }

    /// Loads `program` as a classic tracepoint program and attaches it to the state-change
    /// tracepoint.
    fn attach_classic(&mut self, program: &'static str) -> Result<(), LoadError> {
        let id = tracefs::state_change_id()?;
        self.load_and_attach(program, ProgramKind::Tracepoint, |fd| {
            object::attach_perf_tracepoint(fd, id)
        })
    }

    /// Loads `program` as `kind`, attaches it with `attach`, and keeps both fds.
    fn load_and_attach(
        &mut self,
        program: &'static str,
        kind: ProgramKind,
        attach: impl FnOnce(&OwnedFd) -> Result<OwnedFd, ObjectError>,
    ) -> Result<(), LoadError> {
        let err = |source| LoadError::Program { program, source };
        let fd = self.object.load_program(program, kind).map_err(err)?;
        let link = attach(&fd).map_err(err)?;
        self.programs.push((program, fd));
        self.links.push(link);
        Ok(())
    }
}

/// Why attaching failed, in words: running out of descriptors is not the kernel refusing
/// the program, and the innermost error (the errno) says which it was.
fn attach_failure(e: &LoadError) -> String {
    let mut innermost: &dyn std::error::Error = e;
    while let Some(next) = innermost.source() {
        innermost = next;
    }
    let errno = innermost
        .downcast_ref::<std::io::Error>()
        .and_then(std::io::Error::raw_os_error);
    match errno {
        Some(libc::EMFILE | libc::ENFILE) => {
            format!("out of file descriptors (raise ulimit -n): {e}")
        }
        _ if innermost.to_string() != e.to_string() => {
            format!("the kernel refused it: {e} ({innermost})")
        }
        _ => format!("the kernel refused it: {e}"),
    }
}

/// Attaches the timewait timer hooks (`kfree_skb` is already attached), then switches them
/// on (`TW_ACTIVE`): until all run, a close could not be told apart from a timewait
/// overflow. Returns why not.
fn attach_timewait(attacher: &mut Attacher) -> Result<(), String> {
    for tp in TIMEWAIT_HOOKS {
        attacher
            .attach_btf(tp, tp)
            .map_err(|e| format!("{tp}: {}", attach_failure(&e)))?;
    }
    let map = attacher
        .object
        .take_map("TW_ACTIVE")
        .map_err(|e| e.to_string())?;
    let mut active: Array<MapData, u32> =
        Array::try_from(Map::Array(map)).map_err(|e| format!("map TW_ACTIVE: {e}"))?;
    active
        .set(0, 1, 0)
        .map_err(|e| format!("switching the timewait hooks on: {e}"))
}

/// The hook to use: the one asked for, or with `auto` the BTF hook where the kernel has
/// BTF.
fn choose_hook(asked: HookChoice) -> Result<HookChoice, LoadError> {
    let hook = match asked {
        HookChoice::Auto if KernelBtf::available() => HookChoice::TpBtf,
        HookChoice::Auto => HookChoice::Tracepoint,
        HookChoice::TpBtf if !KernelBtf::available() => return Err(LoadError::NoBtf),
        other => other,
    };
    log::info!(
        "hook: {} ({})",
        hook.name(),
        match (asked, hook) {
            (HookChoice::Auto, HookChoice::TpBtf) => "chosen: the kernel has BTF",
            (HookChoice::Auto, _) => "chosen: no kernel BTF, so the classic tracepoint",
            _ => "asked for",
        }
    );
    Ok(hook)
}

/// What the running kernel says about its layouts, resolved before loading.
struct Resolved {
    sock: Option<SockOffsets>,
    tcp: Option<TcpOffsets>,
    timewait: Option<TwOffsets>,
    tracepoint: Option<TracepointOffsets>,
    /// Why the timewait hooks cannot be used, if they cannot.
    timewait_unusable: Option<String>,
    /// Why closed-port resets cannot be seen in `kfree_skb`, if they cannot.
    drops_unusable: Option<String>,
    /// tracefs, mounted for the classic tracepoint until it is attached.
    tracefs_mount: Option<tracefs::Mounted>,
    /// The BTF hooks' `btf_trace_<tracepoint>` typedef ids; empty for the classic hook.
    btf_ids: HashMap<&'static str, u32>,
    /// Names of `enum sk_rst_reason` by value (6.10+; empty where resets carry none).
    reset_reasons: ReasonNames,
    /// Names of `enum skb_drop_reason` by value.
    drop_reasons: ReasonNames,
}

impl Resolved {
    /// Offsets from BTF (and the timewait timer's callback from kallsyms, into `config`)
    /// for the BTF hook; the record layout from tracefs for the classic one.
    fn for_hook(hook: HookChoice, config: &mut ProbeConfig) -> Result<Self, LoadError> {
        if hook != HookChoice::TpBtf {
            let tracefs_mount = tracefs::ensure_mounted()?;
            let offsets = tracefs::state_change_offsets().map_err(|e| match e {
                TracefsError::NoTracepoint(_) if !KernelBtf::available() => LoadError::NoHook(e),
                other => LoadError::Tracefs(other),
            })?;
            log::debug!("tracepoint record offsets from tracefs: {offsets:?}");
            config.cgroups = sockstat_common::cgroups::IGNORE;
            return Ok(Resolved {
                sock: None,
                tcp: None,
                timewait: None,
                tracepoint: Some(offsets),
                timewait_unusable: Some("the classic tracepoint hook has no BTF".to_string()),
                drops_unusable: Some("the classic tracepoint hook has no BTF".to_string()),
                tracefs_mount: Some(tracefs_mount),
                btf_ids: HashMap::new(),
                reset_reasons: ReasonNames::default(),
                drop_reasons: ReasonNames::default(),
            });
        }
        let kernel_btf = KernelBtf::load()?;
        let mut sock = kernel_btf.sock_offsets()?;
        if config.cgroups != sockstat_common::cgroups::IGNORE
            && let Err(e) = kernel_btf.socket_cgroup_offsets(&mut sock)
        {
            log::warn!("this kernel keeps no cgroup with its sockets ({e}): the owner's decides");
            config.cgroups = sockstat_common::cgroups::IGNORE;
        }
        log::debug!("struct sock offsets from BTF: {sock:?}");
        let tcp = kernel_btf.tcp_offsets()?;
        log::debug!("struct tcp_sock offsets from BTF: {tcp:?}");
        // Reading an argument a kernel lacks is refused at load, so ask the prototypes.
        let has = |tp, n| kernel_btf.tracepoint_args(tp).is_ok_and(|args| args >= n);
        if has("tcp_retransmit_skb", 3) {
            config.args |= sockstat_common::args::RETRANSMIT_ERR;
        }
        let reset_reasons = if has("tcp_send_reset", 3) {
            config.args |= sockstat_common::args::RESET_REASON;
            reason_names(&kernel_btf, "sk_rst_reason", "SK_RST_REASON_")
        } else {
            ReasonNames::default()
        };
        if has(DROP_HOOK, 4) {
            config.args |= sockstat_common::args::DROP_RX_SK;
        }
        let drop_reasons = reason_names(&kernel_btf, "skb_drop_reason", "SKB_DROP_REASON_");
        let mut timewait_unusable = None;
        let timewait = kernel_btf
            .tw_offsets()
            .inspect_err(|e| timewait_unusable = Some(e.to_string()))
            .ok();
        let drops_unusable = match (&timewait_unusable, no_socket_reason(&kernel_btf)) {
            (Some(offsets), _) => Some(offsets.clone()),
            (None, Err(e)) => Some(e.to_string()),
            (None, Ok(reason)) => {
                config.drop_no_socket = reason;
                None
            }
        };
        if let Some(off) = &timewait {
            log::debug!("timewait offsets from BTF: {off:?}");
            match kallsyms::address_of("tw_timer_handler") {
                Ok(addr) => config.tw_timer_fn = addr,
                Err(e) => timewait_unusable = Some(e.to_string()),
            }
        }
        Ok(Resolved {
            sock: Some(sock),
            tcp: Some(tcp),
            timewait,
            tracepoint: None,
            timewait_unusable,
            drops_unusable,
            tracefs_mount: None,
            btf_ids: btf_ids(&kernel_btf),
            reset_reasons,
            drop_reasons,
        })
    }
}

/// An enum's names by value, from BTF (none where the kernel lacks the enum).
fn reason_names(kernel: &KernelBtf, name: &str, prefix: &str) -> ReasonNames {
    ReasonNames::new(kernel.enum_members(name).unwrap_or_default(), prefix)
}

/// Every BTF hook's tracepoint.
fn btf_tracepoints() -> impl Iterator<Item = &'static str> {
    std::iter::once(TP_NAME)
        .chain(TCP_EVENT_HOOKS.map(|(tracepoint, _)| tracepoint))
        .chain([DROP_HOOK, RTT_HOOK])
        .chain(TIMEWAIT_HOOKS)
}

/// The BTF id of each BTF hook's `btf_trace_<tracepoint>` typedef, which loading its
/// program names; a tracepoint this kernel lacks is left out (reported missing at attach).
fn btf_ids(kernel: &KernelBtf) -> HashMap<&'static str, u32> {
    btf_tracepoints()
        .filter_map(|tracepoint| {
            let id = kernel.typedef_id(&format!("btf_trace_{tracepoint}"));
            if let Err(e) = &id {
                log::debug!("{e}");
            }
            Some((tracepoint, id.ok()?))
        })
        .collect()
}

/// `SKB_DROP_REASON_NO_SOCKET`'s number in this kernel.
fn no_socket_reason(btf: &KernelBtf) -> Result<u32, super::offsets::OffsetError> {
    let reason = btf.enum_value("skb_drop_reason", "SKB_DROP_REASON_NO_SOCKET")?;
    log::debug!("drop reason NO_SOCKET is {reason} in this kernel");
    Ok(reason)
}

/// What was attached, and what was not with why and at what cost.
struct Hooks {
    attached: Vec<&'static str>,
    missing: Vec<MissingHook>,
    /// All timewait hooks are attached: TIME-WAIT is observed, not inferred.
    timewait: bool,
}

impl Hooks {
    /// Records the timewait hooks as attached, or missing with why.
    fn with_timewait(mut self, unusable: Option<String>) -> Self {
        match &unusable {
            None => log::info!("TIME-WAIT observed in the kernel (timewait hooks attached)"),
            Some(why) => log::info!("TIME-WAIT inferred, not observed: {why}"),
        }
        self.timewait = unusable.is_none();
        match unusable {
            None => self.attached.extend(TIMEWAIT_HOOKS),
            Some(why) => self
                .missing
                .extend(TIMEWAIT_HOOKS.map(|tracepoint| MissingHook {
                    tracepoint,
                    why: why.clone(),
                    consequence: TIMEWAIT_CONSEQUENCE,
                })),
        }
        self
    }
}

/// The BTF hook, then the cause hooks and the timewait hooks, each optional: a kernel
/// without one still traces transitions, and what was attached is reported.
fn attach_btf_hooks(
    attacher: &mut Attacher,
    mut timewait_unusable: Option<String>,
    mut drops_unusable: Option<String>,
    rtt: bool,
) -> Result<Hooks, LoadError> {
    attacher
        .attach_btf("inet_sock_set_state_btf", TP_NAME)
        .map_err(|e| match e {
            LoadError::Program { source, .. } => LoadError::BtfHookRefused(refusal(&source)),
            other => other,
        })?;
    let mut hooks = Hooks {
        attached: vec![TP_NAME],
        missing: Vec::new(),
        timewait: false,
    };
    for (tp, consequence) in TCP_EVENT_HOOKS {
        match attacher.attach_btf(tp, tp) {
            Ok(()) => hooks.attached.push(tp),
            Err(e) => hooks.missing.push(MissingHook {
                tracepoint: tp,
                why: attach_failure(&e),
                consequence,
            }),
        }
    }
    // One program serves both: attached when either can use it.
    if (drops_unusable.is_none() || timewait_unusable.is_none())
        && let Err(e) = attacher.attach_btf(DROP_HOOK, DROP_HOOK)
    {
        let why = attach_failure(&e);
        timewait_unusable.get_or_insert_with(|| format!("{DROP_HOOK}: {why}"));
        drops_unusable.get_or_insert(why);
    }
    match drops_unusable {
        None => hooks.attached.push(DROP_HOOK),
        Some(why) => hooks.missing.push(MissingHook {
            tracepoint: DROP_HOOK,
            why,
            consequence: DROP_CONSEQUENCE,
        }),
    }
    if rtt {
        match attacher.attach_btf(RTT_HOOK, RTT_HOOK) {
            Ok(()) => hooks.attached.push(RTT_HOOK),
            Err(e) => hooks.missing.push(MissingHook {
                tracepoint: RTT_HOOK,
                why: attach_failure(&e),
                consequence: RTT_CONSEQUENCE,
            }),
        }
    }
    if timewait_unusable.is_none() {
        timewait_unusable = attach_timewait(attacher).err();
    }
    Ok(hooks.with_timewait(timewait_unusable))
}

/// The classic tracepoint alone: the cause and timewait hooks read `struct sock` at BTF
/// offsets, so they are BTF hooks only.
fn attach_classic_hook(attacher: &mut Attacher, rtt: bool) -> Result<Hooks, LoadError> {
    attacher.attach_classic("inet_sock_set_state_tp")?;
    let no_btf = "the classic tracepoint hook has no BTF";
    let mut missing: Vec<MissingHook> = TCP_EVENT_HOOKS
        .map(|(tracepoint, consequence)| MissingHook {
            tracepoint,
            why: no_btf.to_string(),
            consequence,
        })
        .to_vec();
    missing.push(MissingHook {
        tracepoint: DROP_HOOK,
        why: no_btf.to_string(),
        consequence: DROP_CONSEQUENCE,
    });
    if rtt {
        missing.push(MissingHook {
            tracepoint: RTT_HOOK,
            why: no_btf.to_string(),
            consequence: RTT_CONSEQUENCE,
        });
    }
    let hooks = Hooks {
        attached: vec![TP_NAME],
        missing,
        timewait: false,
    };
    Ok(hooks.with_timewait(Some(no_btf.to_string())))
}

/// A hash map user space writes to.
fn hash_map<K: aya::Pod, V: aya::Pod>(
    object: &mut KernelObject,
    name: &'static str,
) -> Result<BpfHashMap<MapData, K, V>, LoadError> {
    let map = object.take_map(name)?;
    BpfHashMap::try_from(Map::HashMap(map)).map_err(|source| LoadError::Map { name, source })
}

/// One of the per-CPU counter arrays.
fn per_cpu_counters(
    object: &mut KernelObject,
    name: &'static str,
) -> Result<PerCpuArray<MapData, u64>, LoadError> {
    let map = object.take_map(name)?;
    PerCpuArray::try_from(Map::PerCpuArray(map)).map_err(|source| LoadError::Map { name, source })
}

/// The programs' aya-log reader, found through any program that writes to it.
fn kernel_logger(
    programs: &[(&'static str, OwnedFd)],
) -> Option<aya_log::EbpfLogger<&'static dyn log::Log>> {
    let mut last_error = None;
    for (_, fd) in programs {
        let Ok(info) = super::sys::prog_info(fd.as_fd()) else {
            continue;
        };
        match aya_log::EbpfLogger::init_from_id(info.id) {
            Ok(logger) => return Some(logger),
            Err(e) => last_error = Some(e),
        }
    }
    if let Some(e) = last_error {
        log::debug!("the kernel programs' log is not readable: {e}");
    }
    None
}

impl Probe {
    pub fn attach(opts: &ProbeOptions) -> Result<Self, LoadError> {
        if !RING_KIB.contains(&opts.ring_kib) {
            return Err(LoadError::RingSize(opts.ring_kib));
        }
        super::privilege::ensure_fds()?;
        check_kernel()?;
        let ring_bytes = ring_bytes(opts.ring_kib);
        let hook = choose_hook(opts.hook)?;
        log::info!("ring {} KiB", ring_bytes / 1024);
        let mut config = opts.config();
        // Held until the classic tracepoint is attached, then unmounted if we mounted it.
        let resolved = Resolved::for_hook(hook, &mut config)?;
        let log_level = kernel_log_level();

        let mut globals = vec![
            ("CONFIG", pod_bytes(&config)),
            ("AYA_LOG_LEVEL", pod_bytes(&log_level)),
        ];
        if let Some(off) = &resolved.sock {
            globals.push(("SOCK_OFFSETS", pod_bytes(off)));
        }
        if let Some(off) = &resolved.tcp {
            globals.push(("TCP_OFFSETS", pod_bytes(off)));
        }
        if let Some(off) = &resolved.timewait {
            globals.push(("TW_OFFSETS", pod_bytes(off)));
        }
        if let Some(off) = &resolved.tracepoint {
            globals.push(("TP_OFFSETS", pod_bytes(off)));
        }
        let mut object =
            KernelObject::load(PROGRAMS, &globals, &[("EVENTS", ring_bytes)], Maps::All)?;
        let events = object.take_map("EVENTS")?;
        let edges = per_cpu_counters(&mut object, "EDGES")?;
        let counters = per_cpu_counters(&mut object, "COUNTERS")?;
        let drops = per_cpu_counters(&mut object, "DROP_REASONS")?;
        let left_out = if config.cgroups == sockstat_common::cgroups::FILTER {
            Some(hash_map(&mut object, "CGROUPS_LEFT_OUT")?)
        } else {
            None
        };
        let watched_netns = if config.netns_watched != 0 {
            Some(hash_map(&mut object, "NETNS_WATCHED")?)
        } else {
            None
        };

        let Resolved {
            timewait_unusable,
            drops_unusable,
            tracefs_mount,
            btf_ids,
            reset_reasons,
            drop_reasons,
            ..
        } = resolved;
        let mut attacher = Attacher {
            object,
            btf_ids,
            programs: Vec::new(),
            links: Vec::new(),
        };
        let hooks = match hook {
            HookChoice::TpBtf => attach_btf_hooks(
                &mut attacher,
                timewait_unusable,
                drops_unusable,
                config.rtt_interval_ns != 0,
            )?,
            _ => attach_classic_hook(&mut attacher, config.rtt_interval_ns != 0)?,
        };
        let Attacher {
            object,
            programs,
            links,
            ..
        } = attacher;
        // The programs hold their own references to the maps from here on.
        drop(object);
        drop(tracefs_mount);
        let kernel_log = (log_level != 0).then(|| kernel_logger(&programs)).flatten();
        release_freed_heap();
        Ok(Self {
            _links: links,
            programs,
            events: Some(events),
            counters,
            edges,
            hook,
            ring_bytes,
            attached: hooks.attached,
            missing: hooks.missing,
            timewait: hooks.timewait,
            kernel_log,
            reset_reasons,
            drop_reasons,
            drops,
            left_out,
            watched_netns,
        })
    }

    /// From now on, the programs report sockets of namespace `inode` too (with
    /// `ProbeOptions::watched_netns`; otherwise every namespace is reported already).
    pub fn watch_netns(&mut self, inode: u32) -> Result<(), LoadError> {
        match self.watched_netns.as_mut() {
            None => Ok(()),
            Some(map) => map.insert(inode, 1, 0).map_err(|source| LoadError::Map {
                name: "NETNS_WATCHED",
                source,
            }),
        }
    }

    /// Stops reporting namespace `inode` (watched before); it may be gone already.
    pub fn unwatch_netns(&mut self, inode: u32) {
        if let Some(map) = self.watched_netns.as_mut()
            && let Err(e) = map.remove(&inode)
        {
            log::debug!("unwatching namespace {inode}: {e}");
        }
    }

    /// From now on, the kernel neither counts nor reports sockets of cgroup `id`. False
    /// when it cannot (no filter, or `cgroups::MAX_LEFT_OUT` already there): user space
    /// then keeps judging that cgroup's events itself.
    pub fn leave_out_cgroup(&mut self, id: u64) -> bool {
        let Some(map) = self.left_out.as_mut() else {
            return false;
        };
        match map.insert(id, 1, 0) {
            Ok(()) => true,
            Err(e) => {
                log::debug!("leaving cgroup {id} out in the kernel: {e}");
                false
            }
        }
    }

    /// Names of sent resets' reasons by the kernel's value (empty before 6.10).
    pub fn reset_reasons(&self) -> &ReasonNames {
        &self.reset_reasons
    }

    /// Names of drop reasons by the kernel's value.
    pub fn drop_reasons(&self) -> &ReasonNames {
        &self.drop_reasons
    }

    /// A slot of `drops_by_reason` by name: the reason's, or `other` for the last slot.
    pub fn drop_slot_name(&self, slot: u32) -> std::borrow::Cow<'_, str> {
        if slot >= sockstat_common::drop::REASON_SLOTS - 1 {
            "other".into()
        } else {
            self.drop_reasons.name(slot)
        }
    }

    /// Dropped TCP segments by the kernel's reason (those seen so far; the last slot,
    /// `drop::REASON_SLOTS - 1`, holds every reason from there up).
    pub fn drops_by_reason(&self) -> Result<Vec<(u32, u64)>, LoadError> {
        let mut out = Vec::new();
        for (slot, values) in self.drops.iter().enumerate() {
            let values = values.map_err(|source| LoadError::Map {
                name: "DROP_REASONS",
                source,
            })?;
            let n: u64 = values.iter().sum();
            if n != 0 {
                out.push((slot as u32, n));
            }
        }
        Ok(out)
    }

    /// Passes on what the kernel programs logged (with `-v`).
    pub fn flush_kernel_log(&mut self) {
        if let Some(l) = self.kernel_log.as_mut() {
            l.flush();
        }
    }

    /// Whether timewait sockets are observed in the kernel (all four timewait hooks are on).
    pub fn timewait_observed(&self) -> bool {
        self.timewait
    }

    /// The hook actually in use.
    pub fn hook(&self) -> HookChoice {
        self.hook
    }

    /// Whether `missed_runs` is the whole count of skipped runs. A classic tracepoint's
    /// program is skipped while any other program or a bpf(2) map call holds its CPU, and
    /// the kernel counts that only from 6.7 (trace_call_bpf); tp_btf programs always count.
    pub fn skipped_runs_counted(&self) -> bool {
        self.hook == HookChoice::TpBtf
            || aya::util::KernelVersion::current()
                .is_ok_and(|v| v >= aya::util::KernelVersion::new(6, 7, 0))
    }

    pub fn ring_bytes(&self) -> u32 {
        self.ring_bytes
    }

    /// Tracepoints attached.
    pub fn attached(&self) -> &[&'static str] {
        &self.attached
    }

    /// Cause hooks not attached, with what each costs.
    pub fn missing(&self) -> &[MissingHook] {
        &self.missing
    }

    /// Exact transition counts per (old, new) kernel state, summed over CPUs.
    pub fn edge_counts(&self) -> Result<Vec<EdgeCount>, LoadError> {
        let n = sockstat_common::EDGE_STATES;
        let mut out = Vec::new();
        for old in 0..n {
            for new in 0..n {
                let values =
                    self.edges
                        .get(&(old * n + new), 0)
                        .map_err(|source| LoadError::Map {
                            name: "EDGES",
                            source,
                        })?;
                let total: u64 = values.iter().sum();
                if total > 0 {
                    out.push(((old as u8, new as u8), total));
                }
            }
        }
        Ok(out)
    }

    /// Takes the event ring buffer (once).
    pub fn take_events(&mut self) -> Result<RingReader, LoadError> {
        let map = self
            .events
            .take()
            .ok_or_else(|| ObjectError::MissingMap("EVENTS".to_string()))?;
        RingReader::new(map, self.ring_bytes).map_err(LoadError::Ring)
    }

    /// Reads the in-kernel counters, summed over CPUs.
    pub fn counters(&self) -> Result<KernelCounters, LoadError> {
        let sum = |index: u32| -> Result<u64, LoadError> {
            let values = self
                .counters
                .get(&index, 0)
                .map_err(|source| LoadError::Map {
                    name: "COUNTERS",
                    source,
                })?;
            Ok(values.iter().sum())
        };
        Ok(KernelCounters {
            emitted: sum(counter::EMITTED)?,
            lost: sum(counter::LOST)?,
            read_errors: sum(counter::READ_ERRORS)?,
            resets_received: sum(counter::RESETS_RECEIVED)?,
            resets_sent: sum(counter::RESETS_SENT)?,
            resets_no_socket: sum(counter::RESETS_NO_SOCKET)?,
            retransmits: sum(counter::RETRANSMITS)?,
            retransmits_by_kind: {
                let mut by_kind = [0; sockstat_common::retransmit::KINDS];
                for (i, n) in by_kind.iter_mut().enumerate() {
                    *n = sum(counter::RETRANSMITS_BY_KIND + i as u32)?;
                }
                by_kind
            },
            tw_created: sum(counter::TW_CREATED)?,
            tw_overflows: sum(counter::TW_OVERFLOWS)?,
            tw_reused: sum(counter::TW_REUSED)?,
            tw_reset: sum(counter::TW_RESET)?,
            tw_killed: sum(counter::TW_KILLED)?,
            missed_runs: self.missed_runs()?.iter().map(|(_, n)| n).sum(),
        })
    }

    /// Each loaded program's skipped runs (`bpf_prog_info.recursion_misses`, 5.12+).
    pub fn missed_runs(&self) -> Result<Vec<(String, u64)>, LoadError> {
        let mut out = Vec::new();
        for (name, fd) in &self.programs {
            let info = super::sys::prog_info(fd.as_fd()).map_err(LoadError::ProgInfo)?;
            out.push((name.to_string(), info.recursion_misses));
        }
        Ok(out)
    }
}

/// ((old, new) kernel states, transitions counted).
pub type EdgeCount = ((u8, u8), u64);

/// In-kernel counters, exact even when the ring buffer overflows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelCounters {
    /// Events written to the ring buffer.
    pub emitted: u64,
    /// Events dropped in the kernel because the ring buffer was full.
    pub lost: u64,
    /// Hook invocations whose socket could not be read.
    pub read_errors: u64,
    pub resets_received: u64,
    /// Resets sent, `resets_no_socket` included.
    pub resets_sent: u64,
    /// Resets answering segments to closed ports (no socket).
    pub resets_no_socket: u64,
    /// Segments retransmitted, SYN-ACKs included.
    pub retransmits: u64,
    /// `retransmits` by kind, indexed by `sockstat_common::retransmit` number less one.
    pub retransmits_by_kind: [u64; sockstat_common::retransmit::KINDS],
    /// Timewait sockets created, and closes that could not make one (TcpExt
    /// TCPTimeWaitOverflow), with the timewait hooks on.
    pub tw_created: u64,
    pub tw_overflows: u64,
    /// Timewait sockets ended early: reused by a connect(), killed by an RST, ended
    /// otherwise (`ss -K`, namespace exit, or a SYN a listener accepted on their 4-tuple;
    /// counted at the next timewait timer event on that CPU).
    pub tw_reused: u64,
    pub tw_reset: u64,
    pub tw_killed: u64,
    /// Runs the kernel skipped because the program was already running on that CPU (a
    /// softirq fired its tracepoint inside it): `recursion_misses` of every program. Those
    /// events are neither written nor counted.
    pub missed_runs: u64,
}

impl KernelCounters {
    /// Events the stream lacks: lost to a full ring, or never run (`missed_runs`).
    pub fn dropped(&self) -> u64 {
        self.lost + self.missed_runs
    }
}

/// Hands freed heap pages back to the kernel: those of loading (the parsed object) and of a
/// large reconcile dump. glibc returns only
/// the top of the heap by itself, so without this a long-running `serve` or `top` kept them
/// resident for its whole life.
pub(crate) fn release_freed_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions; it only releases free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}
