//! `sockstat trace`: the pipeline's transitions (or lifetimes) as they happen, selected and
//! printed until Ctrl-C/SIGTERM/--count, then what was seen, synthesized, repaired and lost.
use std::{
    collections::HashMap,
    io::{self, BufWriter, Write},
    process::ExitCode,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context as _;
use tokio::signal::unix::{SignalKind, signal};

use super::{
    NetnsChoice, UsageError,
    args::{TraceArgs, TraceEvents},
};
use crate::{
    agent::{
        CgroupGate, DumpScope,
        pipeline::{Pipeline, PipelineOptions, Wake},
    },
    ebpf::privilege,
    filter::Filter,
    live::{Output, Owner, Reports, Timelines, clock},
    procs::workload::{SharedNames, Workload, WorkloadFilter, WorkloadNames},
    render::trace::{TraceEnd, TraceFormat, TracePrinter},
    tcp::ReportedState,
};

/// User space drains the ring at least this often, so quiet periods have low latency while
/// busy ones wake it only per batch (see `wakeup_bytes`).
const POLL: Duration = Duration::from_millis(50);
/// Connections `--timeline` follows at once; beyond, the oldest are dropped and counted.
const TIMELINES_OPEN: usize = 65_536;
/// How often listeners' drop counters are read (`--events drop`).
const LISTENER_POLL: Duration = Duration::from_secs(1);

pub fn run(args: &TraceArgs) -> anyhow::Result<ExitCode> {
    let filter = Filter::parse(&args.filter, &args.ip.tcp_filter_context())
        .map_err(|e| UsageError(e.to_string()))?;
    let netns = check_selectors(args)?;
    let user = super::user_of(&args.privilege)?;
    if !privilege::can_trace() {
        return Err(UsageError(format!(
            "sockstat trace needs root, or {}: run it with sudo",
            crate::least_privilege::names(crate::least_privilege::LOAD)
        ))
        .into());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the event loop")?;
    runtime.block_on(trace(args, &filter, netns, user.as_ref()))
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
    // The namespace is opened only to learn its inode: the kernel filters by it.
    Ok(NetnsChoice::open(&args.ns.one)?.inode())
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
        v4: args.ip.v4(),
        v6: args.ip.v6(),
        netns,
        all_netns: args.ns.all_netns,
        own: None,
        left_out: None,
    }
}

/// What decides whether an output is printed (beyond the kernel's port/family/netns).
struct Selector<'a> {
    args: &'a TraceArgs,
    filter: &'a Filter,
    cgroups: HashMap<u32, String>,
    /// `--pod`, `--k8s-namespace`, `--container`.
    workload_filter: Option<WorkloadFilter>,
    /// The owners' containers' names: for the filter, and printed with --json or
    /// --all-netns; one cache for both.
    names: Option<SharedNames>,
}

impl Selector<'_> {
    fn wants(
        &mut self,
        local: std::net::SocketAddr,
        remote: std::net::SocketAddr,
        states: &[ReportedState],
        owner: &Owner,
        netns: u32,
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
        if let Some(filter) = &self.workload_filter {
            let workload = self.workload(owner, netns);
            if !filter.matches(workload.as_deref()) {
                return false;
            }
        }
        true
    }

    /// The names of the container that owns a socket, where names are wanted at all.
    fn workload(&self, owner: &Owner, netns: u32) -> Option<Arc<Workload>> {
        self.names
            .as_ref()?
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .of_owner(owner.pid, netns)
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

async fn trace(
    args: &TraceArgs,
    filter: &Filter,
    netns: Option<u32>,
    user: Option<&crate::least_privilege::User>,
) -> anyhow::Result<ExitCode> {
    // Names go in NDJSON, in text with --all-netns (a WORKLOAD column), and to the
    // --pod/--k8s-namespace/--container filter, which the pipeline also applies to each
    // socket's cgroup (in the kernel, once judged).
    let names: Option<SharedNames> =
        (args.json || args.ns.all_netns || args.workload.filter_given())
            .then(|| Arc::new(Mutex::new(WorkloadNames::new())));
    let gate = args
        .workload
        .filter()
        .zip(names.clone())
        .map(|(filter, names)| CgroupGate::new(filter, names));
    let mut pipeline = Pipeline::attach_gated(
        &PipelineOptions {
            hook: args.probe.hook,
            ring_kib: args.probe.ring_kib,
            scope: scope_of(args, netns),
            events: !args.count_only,
            drops: args.wants(TraceEvents::Drop),
            reports: Reports {
                lifetimes: args.lifetimes,
                handshake_rtts: args.wants(TraceEvents::Rtt),
            },
            rtt_interval: args
                .wants(TraceEvents::Rtt)
                .then(|| Duration::from_secs_f64(args.rtt_interval)),
            baseline: true,
            reconcile: (args.reconcile > 0).then(|| Duration::from_secs(args.reconcile)),
            watched_netns: false,
        },
        gate,
    )?;
    super::run_on_least_privilege(
        user,
        super::beyond_own_netns(args.ns.all_netns, netns),
        Some(pipeline.probe()),
    )?;
    let probe = pipeline.probe();
    eprintln!(
        "sockstat: tracing {} ({}, ring {} KiB, {} sockets in the baseline); Ctrl-C to stop",
        probe.attached().join(", "),
        probe.hook().name(),
        probe.ring_bytes() / 1024,
        pipeline.tracker().len()
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
    if args.ns.all_netns {
        printer.set_netns_names(pipeline.netns_names().clone());
    }
    printer.set_reasons(
        pipeline.probe().reset_reasons().clone(),
        pipeline.probe().drop_reasons().clone(),
    );
    printer.set_width(if args.wide {
        None
    } else {
        crate::render::terminal_width()
    });
    let mut view = View {
        selector: Selector {
            args,
            filter,
            cgroups: HashMap::new(),
            workload_filter: args.workload.filter(),
            names,
        },
        printer,
        args,
        state: args.wants(TraceEvents::State),
        retrans: args.wants(TraceEvents::Retrans),
        reset: args.wants(TraceEvents::Reset),
        drop: args.wants(TraceEvents::Drop),
        rtt: args.wants(TraceEvents::Rtt),
        printed: 0,
        outputs: Vec::with_capacity(256),
        timelines: args
            .timeline
            .then(|| Timelines::new(args.timeline_events as usize, TIMELINES_OPEN)),
    };
    let mut signals = [
        signal(SignalKind::terminate()).context("installing a SIGTERM handler")?,
        signal(SignalKind::interrupt()).context("installing a SIGINT handler")?,
    ];
    let mut out = BufWriter::with_capacity(64 * 1024, io::stdout().lock());
    let result = stream(&mut pipeline, &mut view, &mut signals, &mut out).await;

    // A failed read is said as such: never "0 lost".
    let probe = pipeline.probe();
    let end = TraceEnd {
        counters: probe.counters().map_err(|e| e.to_string()),
        skips_counted: probe.skipped_runs_counted(),
        missed: probe.missed_runs().unwrap_or_else(|e| {
            log::warn!("reading the programs' skipped runs: {e}");
            Vec::new()
        }),
        edges: probe.edge_counts().unwrap_or_else(|e| {
            log::warn!("reading the per-edge counters: {e}");
            Vec::new()
        }),
        ring: pipeline.ring_counts(),
        table: pipeline.tracker().memory(),
        printed: view.printed,
        tracker: pipeline.tracker().stats(),
    };
    let gated = pipeline.gate_counts();
    drop(pipeline);
    match result {
        Ok(()) => {}
        // `sockstat trace | head`: the reader left; that is a normal way to stop.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(ExitCode::SUCCESS),
        Err(e) => return Err(anyhow::Error::new(e).context("writing output")),
    }
    if args.count_only {
        end.write_edges(&mut io::stdout().lock(), args.json)?;
    }
    // Before the summary, which stays the last line.
    if let Some((cgroups, events)) = gated {
        eprintln!(
            "sockstat: --pod/--k8s-namespace/--container left {cgroups} cgroups out in the kernel, and {events} events here"
        );
    }
    eprintln!("{}", end.summary());
    if let Some(t) = &view.timelines
        && (t.left_out() > 0 || t.evicted() > 0)
    {
        eprintln!(
            "sockstat: {} timeline events left out (--timeline-events {} per connection); {} timelines dropped (at most {TIMELINES_OPEN} followed at once)",
            t.left_out(),
            args.timeline_events,
            t.evicted()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs the pipeline into the view until a signal or `--count`.
async fn stream(
    pipeline: &mut Pipeline,
    view: &mut View<'_>,
    [sigterm, sigint]: &mut [tokio::signal::unix::Signal; 2],
    out: &mut impl Write,
) -> io::Result<()> {
    let args = view.args;
    let mut poll = tokio::time::interval(POLL);
    let mut listeners = tokio::time::interval(LISTENER_POLL);
    // Timelines carry a header line each.
    if !args.no_header && !args.count_only && !args.timeline {
        view.printer.write_header(out, args.lifetimes)?;
        out.flush()?;
    }
    loop {
        tokio::select! {
            wake = pipeline.wake() => {
                if let Wake::Reconcile(step) = wake? {
                    pipeline.reconcile(step, &mut view.outputs);
                    if args.ns.all_netns {
                        view.printer.set_netns_names(pipeline.netns_names().clone());
                    }
                }
            }
            _ = poll.tick() => {}
            _ = listeners.tick() => pipeline.check_listeners(&mut view.outputs),
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
        }
        pipeline.drain(&mut view.outputs);
        if view.print(out)? {
            return out.flush();
        }
        out.flush()?;
    }
    // Whatever arrived between the signal and now is still printed, held closes too, and
    // the timelines of connections still open.
    pipeline.finish(&mut view.outputs);
    view.print(out)?;
    view.print_open_timelines(out)?;
    out.flush()
}

/// What the pipeline produced, selected and printed.
struct View<'a> {
    selector: Selector<'a>,
    printer: TracePrinter,
    args: &'a TraceArgs,
    /// What `--events` selects.
    state: bool,
    retrans: bool,
    reset: bool,
    drop: bool,
    rtt: bool,
    printed: u64,
    outputs: Vec<Output>,
    /// With `--timeline`: each connection's events until it closes.
    timelines: Option<Timelines>,
}

impl View<'_> {
    /// Prints what the pipeline produced; true once `--count` is reached.
    fn print(&mut self, out: &mut impl Write) -> io::Result<bool> {
        let args = self.args;
        let mut done = args.count.is_some_and(|n| self.printed >= n);
        for o in self.outputs.drain(..) {
            if done {
                continue;
            }
            if let Some(timelines) = self.timelines.as_mut() {
                // Transitions always: a timeline ends at its CLOSE. The filter judges
                // addresses and owner only, so no state it names can cut a timeline short.
                let kind = match &o {
                    Output::Transition(_) => true,
                    Output::Retransmit(_) => self.retrans,
                    Output::Reset(_) => self.reset,
                    Output::Drop(_) => self.drop,
                    Output::Rtt(_) => self.rtt,
                    Output::Lifetime(_) => false,
                };
                let head = o.head();
                if !kind
                    || !self
                        .selector
                        .wants(head.local, head.remote, &[], &head.owner, head.netns)
                {
                    continue;
                }
                let Some(done_timeline) = timelines.push(&o) else {
                    continue;
                };
                self.printer.write_timeline(out, &done_timeline)?;
                self.printed += 1;
                done = args.count.is_some_and(|n| self.printed >= n);
                continue;
            }
            match o {
                Output::Transition(t) if !args.lifetimes && self.state => {
                    if !self
                        .selector
                        .wants(t.local, t.remote, &[t.old, t.new], &t.owner, t.netns)
                    {
                        continue;
                    }
                    let workload = self.selector.workload(&t.owner, t.netns);
                    self.printer.write_named(out, &t, workload.as_deref())?;
                }
                Output::Lifetime(l) if args.lifetimes && self.state => {
                    if !self
                        .selector
                        .wants(l.local, l.remote, &[], &l.owner, l.netns)
                    {
                        continue;
                    }
                    self.printer.write_lifetime(out, &l)?;
                }
                Output::Retransmit(r) if self.retrans => {
                    if !self
                        .selector
                        .wants(r.local, r.remote, &[r.what.state], &r.owner, r.netns)
                    {
                        continue;
                    }
                    self.printer.write_retransmit(out, &r)?;
                }
                Output::Reset(r) if self.reset => {
                    let states: &[ReportedState] = match &r.state {
                        Some(s) => std::slice::from_ref(s),
                        None => &[],
                    };
                    if !self
                        .selector
                        .wants(r.local, r.remote, states, &r.owner, r.netns)
                    {
                        continue;
                    }
                    self.printer.write_reset(out, &r)?;
                }
                Output::Drop(d) if self.drop => {
                    let states: &[ReportedState] = match &d.what.state {
                        Some(s) => std::slice::from_ref(s),
                        None => &[],
                    };
                    if !self
                        .selector
                        .wants(d.local, d.remote, states, &d.owner, d.netns)
                    {
                        continue;
                    }
                    self.printer.write_drop(out, &d)?;
                }
                Output::Rtt(r) if self.rtt => {
                    let established = ReportedState::Known(crate::tcp::TcpState::Established);
                    if !self
                        .selector
                        .wants(r.local, r.remote, &[established], &r.owner, r.netns)
                    {
                        continue;
                    }
                    self.printer.write_rtt(out, &r)?;
                }
                _ => continue,
            }
            self.printed += 1;
            done = args.count.is_some_and(|n| self.printed >= n);
        }
        Ok(done)
    }

    /// At the end (`--timeline`): the connections still open, marked so.
    fn print_open_timelines(&mut self, out: &mut impl Write) -> io::Result<()> {
        let Some(timelines) = self.timelines.as_mut() else {
            return Ok(());
        };
        for t in timelines.drain_open() {
            if self.args.count.is_some_and(|n| self.printed >= n) {
                break;
            }
            self.printer.write_timeline(out, &t)?;
            self.printed += 1;
        }
        Ok(())
    }
}
