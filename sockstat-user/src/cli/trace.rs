//! `sockstat trace`: attach, take a sock_diag baseline, then stream transitions until
//! Ctrl-C/SIGTERM/--count, reconciling with sock_diag every few seconds; report what was
//! seen, synthesized, repaired and lost.
use std::{
    collections::HashMap,
    io::{self, BufWriter, Write},
    process::ExitCode,
    time::Duration,
};

use anyhow::Context as _;
use sockstat_common::ProbeConfig;
use tokio::signal::unix::{SignalKind, signal};

use super::{UsageError, args::TraceArgs};
use crate::{
    agent::{DumpScope, ReconcileStep, Reconciler, dump_tcp},
    ebpf::{
        DecodeError, EdgeCount, HookChoice, KernelCounters, KernelEvent, Probe, ProbeOptions,
        privilege, ring::EventStream,
    },
    filter::{Filter, ParseContext, states},
    live::{Output, Owner, Tracker, clock},
    render::trace::{TraceFormat, TracePrinter},
    tcp::ReportedState,
};

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
/// User space drains the ring at least this often, so quiet periods have low latency while
/// busy ones wake it only per batch (see `wakeup_bytes`).
const POLL: Duration = Duration::from_millis(50);

pub fn run(args: &TraceArgs) -> anyhow::Result<ExitCode> {
    let filter = Filter::parse(
        &args.filter,
        &ParseContext {
            tcp: true,
            udp: false,
            only_v4: args.ipv4,
            only_v6: args.ipv6,
        },
    )
    .map_err(|e| UsageError(e.to_string()))?;
    let netns = check_selectors(args)?;
    if !privilege::can_trace() {
        return Err(UsageError(
            "sockstat trace needs root, or CAP_BPF and CAP_PERFMON: run it with sudo".to_string(),
        )
        .into());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the event loop")?;
    runtime.block_on(trace(args, &filter, netns))
}

/// `--pid`, `--cgroup` and `--netns` must name something that exists: a selector that can
/// match nothing would trace nothing without a word. Returns the namespace's inode.
fn check_selectors(args: &TraceArgs) -> Result<Option<u32>, UsageError> {
    if let Some(pid) = args.pid
        && !std::path::Path::new(&format!("/proc/{pid}")).exists()
    {
        return Err(UsageError(format!("--pid {pid}: no such process")));
    }
    if let Some(prefix) = &args.cgroup
        && !cgroup_prefix_exists(prefix)
    {
        return Err(UsageError(format!(
            "--cgroup {prefix}: no cgroup v2 path starts with it (see /proc/PID/cgroup for a process's)"
        )));
    }
    let Some(netns) = &args.netns else {
        return Ok(None);
    };
    let known = || {
        crate::procs::netns::all()
            .namespaces
            .into_iter()
            .map(|n| n.inode)
    };
    match netns.parse::<u32>() {
        Ok(inode) if inode == crate::agent::own_netns() || known().any(|i| i == inode) => {
            Ok(Some(inode))
        }
        Ok(inode) => Err(UsageError(format!(
            "--netns {inode}: no network namespace has this inode (see 'lsns -t net' or 'ip netns list')"
        ))),
        Err(_) => {
            use std::os::unix::fs::MetadataExt;
            let file = crate::procs::netns::open_named(netns)
                .map_err(|e| UsageError(format!("--netns {netns}: {e}")))?;
            let inode = file
                .metadata()
                .map_err(|e| UsageError(format!("--netns {netns}: {e}")))?
                .ino();
            Ok(Some(inode as u32))
        }
    }
}

/// Whether some cgroup v2 path starts with `prefix` (the filter matches by prefix).
fn cgroup_prefix_exists(prefix: &str) -> bool {
    let Some(root) = crate::procs::cgroup2_mount() else {
        return false;
    };
    let rel = prefix.trim_start_matches('/');
    if root.join(rel).is_dir() {
        return true;
    }
    let (parent, stem) = rel.rsplit_once('/').unwrap_or(("", rel));
    std::fs::read_dir(root.join(parent)).is_ok_and(|dir| {
        dir.flatten().any(|e| {
            e.file_type().is_ok_and(|t| t.is_dir())
                && e.file_name().to_string_lossy().starts_with(stem)
        })
    })
}

fn scope_of(args: &TraceArgs, netns: Option<u32>) -> DumpScope {
    DumpScope {
        port: args.port,
        v4: !args.ipv6,
        v6: !args.ipv4,
        netns,
        all_netns: args.all_netns,
        own: None,
    }
}

/// Counts kept by the user-space side of the pipeline.
#[derive(Default)]
struct Seen {
    printed: u64,
    decoded: u64,
    undecodable: u64,
}

/// What decides whether an output is printed (beyond the kernel's port/family/netns).
struct Selector<'a> {
    args: &'a TraceArgs,
    filter: &'a Filter,
    cgroups: HashMap<u32, String>,
}

impl Selector<'_> {
    fn wants(
        &mut self,
        local: std::net::SocketAddr,
        remote: std::net::SocketAddr,
        states: &[ReportedState],
        owner: &Owner,
    ) -> bool {
        // At most a transition's two states: no allocation per printed event.
        let mut numbers = [0u8; 2];
        let n = states.len().min(numbers.len());
        for (slot, s) in numbers.iter_mut().zip(states) {
            *slot = s.kernel_number();
        }
        if !self.filter.matches_tcp_states(&numbers[..n], local, remote) {
            return false;
        }
        if let Some(pid) = self.args.pid
            && owner.pid != Some(pid)
        {
            return false;
        }
        if let Some(comm) = &self.args.comm
            && !owner
                .comm
                .as_ref()
                .is_some_and(|c| c.as_str().contains(comm.as_str()))
        {
            return false;
        }
        if let Some(prefix) = &self.args.cgroup {
            let Some(pid) = owner.pid else {
                return false;
            };
            let path = self.cgroups.entry(pid).or_insert_with(|| cgroup_of(pid));
            if !path.starts_with(prefix.as_str()) {
                return false;
            }
        }
        true
    }
}

/// The cgroup v2 path of a process (`0::/path` in /proc/PID/cgroup).
fn cgroup_of(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("0::").map(str::to_string))
        })
        .unwrap_or_default()
}

async fn trace(args: &TraceArgs, filter: &Filter, netns: Option<u32>) -> anyhow::Result<ExitCode> {
    let family = if args.ipv4 {
        AF_INET
    } else if args.ipv6 {
        AF_INET6
    } else {
        0
    };
    let ring_bytes = (args.ring_kb.saturating_mul(1024)).next_power_of_two();
    let opts = ProbeOptions {
        hook: args.hook,
        ring_kb: args.ring_kb,
        config: ProbeConfig {
            port: args.port.unwrap_or(0),
            family,
            // Like ss: our own namespace unless asked for another one or all of them.
            netns: match netns {
                Some(n) => n,
                None if args.all_netns => 0,
                None => crate::agent::own_netns(),
            },
            // Wake the reader when a quarter of the ring is used; the poll timer covers
            // quiet periods.
            wakeup_bytes: ring_bytes / 4,
            emit_events: u8::from(!args.count_only),
            ..ProbeConfig::zeroed()
        },
    };
    let mut probe = Probe::attach(&opts)?;
    let mut events = EventStream::new(probe.take_events()?).context("polling the ring buffer")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;

    // Attached first, then the baseline: nothing falls between the two.
    let mut tracker = Tracker::default();
    tracker.observe_timewait(probe.timewait_observed());
    let mut netns_names = HashMap::new();
    if !args.count_only {
        let owners = crate::ebpf::owners::socket_owners_any();
        let dump = dump_tcp(scope_of(args, netns), states::ALL, Some(&owners));
        crate::procs::netns::warn_skipped(&dump.skipped);
        netns_names = dump.names;
        tracker.load_baseline(dump.sockets, clock::monotonic_ns());
    }
    let hook = match probe.hook() {
        HookChoice::TpBtf => "tp_btf",
        _ => "tracepoint",
    };
    eprintln!(
        "sockstat: tracing {} ({hook}, ring {} KiB, {} sockets in the baseline); Ctrl-C to stop",
        probe.attached().join(", "),
        probe.ring_bytes() / 1024,
        tracker.len()
    );
    for m in probe.missing() {
        eprintln!("sockstat: {m}");
    }

    let mut printer = TracePrinter::new(
        if args.json {
            TraceFormat::Json
        } else {
            TraceFormat::Text
        },
        clock::WallClock::now(),
    );
    if args.all_netns {
        printer.set_netns_names(netns_names);
    }
    let mut out = BufWriter::with_capacity(64 * 1024, io::stdout().lock());
    let mut pipe = Pipeline {
        tracker,
        outputs: Vec::with_capacity(256),
        selector: Selector {
            args,
            filter,
            cgroups: HashMap::new(),
        },
        printer,
        args,
        seen: Seen::default(),
    };
    let mut batch = Vec::with_capacity(256);
    let mut poll = tokio::time::interval(POLL);
    let mut reconciler = Reconciler::new(
        scope_of(args, netns),
        Duration::from_secs(args.reconcile.max(1)),
    );

    let result: io::Result<()> = async {
        if !args.no_header && !args.count_only {
            pipe.printer.write_header(&mut out, args.lifetimes)?;
            out.flush()?;
        }
        loop {
            tokio::select! {
                ready = events.next_batch(&mut batch) => ready?,
                _ = poll.tick() => events.drain_now(&mut batch),
                step = reconciler.next(), if args.reconcile > 0 && !args.count_only => {
                    // Queued events are applied first, so the dump is compared with fresh
                    // state; the dump itself runs on a blocking thread.
                    events.drain_now(&mut batch);
                    if pipe.emit(&mut batch, &mut out)? {
                        return Ok(());
                    }
                    match step {
                        ReconcileStep::Due => {
                            // Lost or skipped events make the next reconcile a full one.
                            reconciler.start(probe.counters().ok().map(|c| c.dropped()));
                        }
                        ReconcileStep::Done(dump) => {
                            if args.all_netns {
                                pipe.printer.set_netns_names(dump.names().clone());
                                crate::procs::netns::warn_skipped(dump.skipped());
                            }
                            Reconciler::apply(dump, &mut pipe.tracker, &mut pipe.outputs);
                            if pipe.print(&mut out)? {
                                return Ok(());
                            }
                            out.flush()?;
                        }
                    }
                    continue;
                }
                _ = sigterm.recv() => break,
                _ = sigint.recv() => break,
            }
            if pipe.emit(&mut batch, &mut out)? {
                return Ok(());
            }
            out.flush()?;
        }
        // Whatever arrived between the signal and now is still printed, held closes too.
        events.drain_now(&mut batch);
        pipe.emit(&mut batch, &mut out)?;
        pipe.tracker.flush(&mut pipe.outputs);
        pipe.print(&mut out)?;
        out.flush()?;
        Ok(())
    }
    .await;

    // A failed read is said as such: never "0 lost".
    let counters = probe.counters().map_err(|e| e.to_string());
    let missed = probe.missed_runs().unwrap_or_default();
    let edges = probe.edge_counts().unwrap_or_default();
    drop(probe);
    match result {
        Ok(()) => {}
        // `sockstat trace | head`: the reader left; that is a normal way to stop.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(ExitCode::SUCCESS),
        Err(e) => return Err(anyhow::Error::new(e).context("writing output")),
    }
    if args.count_only {
        let mut stdout = io::stdout().lock();
        write_edges(&mut stdout, &edges, args.json, counters.as_ref().ok())?;
    }
    eprintln!(
        "{}",
        summary(&pipe.seen, &counters, &missed, &pipe.tracker, &edges)
    );
    Ok(ExitCode::SUCCESS)
}

/// Events in, printed lines out: the live table, what is selected, how it is printed.
struct Pipeline<'a> {
    tracker: Tracker,
    outputs: Vec<Output>,
    selector: Selector<'a>,
    printer: TracePrinter,
    args: &'a TraceArgs,
    seen: Seen,
}

impl Pipeline<'_> {
    /// Applies a drained batch to the tracker and prints the results; true once `--count`
    /// is reached. Output is flushed by the caller after every batch.
    fn emit(
        &mut self,
        batch: &mut Vec<Result<KernelEvent, DecodeError>>,
        out: &mut impl Write,
    ) -> io::Result<bool> {
        for record in batch.drain(..) {
            let Ok(event) = record else {
                self.seen.undecodable += 1;
                continue;
            };
            self.seen.decoded += 1;
            self.tracker.apply(&event, &mut self.outputs);
        }
        self.tracker.settle(&mut self.outputs);
        self.print(out)
    }

    /// Prints what the tracker produced; true once `--count` is reached.
    fn print(&mut self, out: &mut impl Write) -> io::Result<bool> {
        let args = self.args;
        let mut done = args.count.is_some_and(|n| self.seen.printed >= n);
        for o in self.outputs.drain(..) {
            if done {
                continue;
            }
            match o {
                Output::Transition(t) if !args.lifetimes => {
                    if !self
                        .selector
                        .wants(t.local, t.remote, &[t.old, t.new], &t.owner)
                    {
                        continue;
                    }
                    self.printer.write(out, &t)?;
                }
                Output::Lifetime(l) if args.lifetimes => {
                    if !self.selector.wants(l.local, l.remote, &[], &l.owner) {
                        continue;
                    }
                    self.printer.write_lifetime(out, &l)?;
                }
                _ => continue,
            }
            self.seen.printed += 1;
            done = args.count.is_some_and(|n| self.seen.printed >= n);
        }
        Ok(done)
    }
}

fn state_name(n: u8) -> String {
    ReportedState::from_kernel(n).to_string()
}

fn write_edges(
    out: &mut impl Write,
    edges: &[EdgeCount],
    json: bool,
    counters: Option<&KernelCounters>,
) -> io::Result<()> {
    if json {
        let list: Vec<serde_json::Value> = edges
            .iter()
            .map(|((o, n), c)| serde_json::json!({"old": state_name(*o), "new": state_name(*n), "count": c}))
            .collect();
        // null, never 0, when the counters could not be read.
        let v = serde_json::json!({
            "edges": list,
            "lost": counters.map(|c| c.lost),
            "missed_runs": counters.map(|c| c.missed_runs),
        });
        serde_json::to_writer(&mut *out, &v).map_err(io::Error::from)?;
        writeln!(out)
    } else {
        writeln!(out, "{:<28} COUNT", "TRANSITION")?;
        for ((o, n), c) in edges {
            writeln!(
                out,
                "{:<28} {c}",
                format!("{} -> {}", state_name(*o), state_name(*n))
            )?;
        }
        Ok(())
    }
}

fn summary(
    seen: &Seen,
    kernel: &Result<KernelCounters, String>,
    missed: &[(String, u64)],
    tracker: &Tracker,
    edges: &[EdgeCount],
) -> String {
    let stats = tracker.stats();
    let transitions: u64 = edges.iter().map(|(_, c)| c).sum();
    let per_edge: Vec<String> = edges
        .iter()
        .map(|((o, n), c)| format!("{}->{}={c}", state_name(*o), state_name(*n)))
        .collect();
    // Rare enough to be named only when it happened.
    let unresolved = match stats.unresolved_opens {
        0 => String::new(),
        n => format!(", {n} passive opens whose child vanished before it had an identity"),
    };
    let kernel = match kernel {
        Err(e) => format!("lost and skipped runs unknown ({e})"),
        Ok(k) => {
            let by_hook: Vec<String> = missed
                .iter()
                .filter(|(_, n)| *n > 0)
                .map(|(prog, n)| format!("{prog}={n}"))
                .collect();
            let skipped = if by_hook.is_empty() {
                String::new()
            } else {
                format!(": {}", by_hook.join(" "))
            };
            let timewait = if k.tw_created + k.tw_overflows > 0 {
                format!(
                    "; timewait sockets: {} created, {} overflowed, {} reused by connect(), {} reset, {} ended otherwise (killed, or a listener took a SYN on their 4-tuple)",
                    k.tw_created, k.tw_overflows, k.tw_reused, k.tw_reset, k.tw_killed
                )
            } else {
                String::new()
            };
            format!(
                "{} lost (ring buffer full), {} runs skipped by the kernel (a hook re-entered on its CPU{skipped}), {} unreadable in kernel{timewait}",
                k.lost, k.missed_runs, k.read_errors
            )
        }
    };
    format!(
        "sockstat: {} events seen, {} printed, {kernel}, {} undecodable; {} transitions counted in the kernel (exact but for the skipped runs); {} synthesized, {} repaired by reconcile, {} evicted{unresolved}; edges: {}",
        seen.decoded,
        seen.printed,
        seen.undecodable,
        transitions,
        stats.synthesized,
        stats.repairs,
        stats.evicted,
        per_edge.join(" ")
    )
}
