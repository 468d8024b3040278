//! Where live numbers come from: the kernel programs with the live table (every transition),
//! or, when they cannot be loaded, sock_diag polled once per interval (states and counts,
//! no transitions). Shared by `top` and `serve`.
use anyhow::Context as _;
use sockstat_common::ProbeConfig;

use super::{Dump, DumpScope, OwnEndpoint, ReconcileStep, Reconciler, dump_tcp};
use crate::procs::netns::Skipped;
use crate::{
    ebpf::{
        DecodeError, EdgeCount, HookChoice, KernelCounters, KernelEvent, Probe, ProbeOptions,
        privilege, ring::EventStream,
    },
    live::{
        Output, Tracker, TrackerStats, Transition, clock,
        dashboard::{DataSource, SockView},
    },
    tcp::ReportedState,
};

const RECONCILE: std::time::Duration = std::time::Duration::from_secs(5);

pub struct FeedOptions {
    pub hook: HookChoice,
    pub ring_kb: u32,
    pub v4: bool,
    pub v6: bool,
    pub all_netns: bool,
    /// Poll even when the programs could load.
    pub poll: bool,
    /// sockstat's own endpoint, left out of everything it reports.
    pub own: Option<OwnEndpoint>,
}

pub enum Feed {
    Ebpf(Box<EbpfFeed>),
    Polling(PollingFeed),
}

pub struct EbpfFeed {
    pub probe: Probe,
    events: EventStream,
    pub tracker: Tracker,
    reconciler: Reconciler,
    batch: Vec<Result<KernelEvent, DecodeError>>,
    outputs: Vec<Output>,
    /// Namespaces the last dump could not enter.
    skipped: Vec<Skipped>,
}

pub struct PollingFeed {
    pub reason: String,
    latest: Dump,
    pending: Option<tokio::task::JoinHandle<Dump>>,
    scope: DumpScope,
}

fn scope(o: &FeedOptions) -> DumpScope {
    DumpScope {
        port: None,
        v4: o.v4,
        v6: o.v6,
        netns: None,
        all_netns: o.all_netns,
        own: o.own,
    }
}

/// A polling dump with owners, off the event loop.
fn spawn_poll(scope: DumpScope) -> tokio::task::JoinHandle<Dump> {
    tokio::task::spawn_blocking(move || {
        let owners = crate::ebpf::owners::socket_owners_any();
        let dump = dump_tcp(scope, crate::filter::states::ALL, Some(&owners));
        crate::procs::netns::warn_skipped(&dump.skipped);
        dump
    })
}

impl Feed {
    /// Loads the programs and takes the baseline; falls back to polling (saying why) when
    /// that is not possible. Must run inside a tokio runtime.
    pub fn start(o: &FeedOptions) -> anyhow::Result<Feed> {
        let polling = |reason: String| {
            Feed::Polling(PollingFeed {
                reason,
                latest: Dump::default(),
                pending: None,
                scope: scope(o),
            })
        };
        if o.poll {
            return Ok(polling("--poll".to_string()));
        }
        if !privilege::can_trace() {
            return Ok(polling(
                "no BPF privilege, run as root for per-edge data".to_string(),
            ));
        }
        let family = match (o.v4, o.v6) {
            (true, false) => 2,
            (false, true) => 10,
            _ => 0,
        };
        let ring_bytes = o.ring_kb.saturating_mul(1024).next_power_of_two();
        let opts = ProbeOptions {
            hook: o.hook,
            ring_kb: o.ring_kb,
            config: ProbeConfig {
                port: 0,
                family,
                netns: if o.all_netns { 0 } else { super::own_netns() },
                wakeup_bytes: ring_bytes / 4,
                own_port: o.own.map_or(0, |e| e.port),
                own_netns: o.own.map_or(0, |e| e.netns),
                ..ProbeConfig::zeroed()
            },
        };
        let mut probe = match Probe::attach(&opts) {
            Ok(p) => p,
            Err(e) => return Ok(polling(format!("kernel programs not loaded ({e})"))),
        };
        for m in probe.missing() {
            eprintln!("sockstat: {m}");
        }
        let events = EventStream::new(probe.take_events()?).context("polling the ring buffer")?;
        // Attached first, then the baseline: nothing falls between the two.
        let mut tracker = Tracker::default();
        tracker.observe_timewait(probe.timewait_observed());
        let owners = crate::ebpf::owners::socket_owners_any();
        let baseline = dump_tcp(scope(o), crate::filter::states::ALL, Some(&owners));
        crate::procs::netns::warn_skipped(&baseline.skipped);
        tracker.load_baseline(baseline.sockets, clock::monotonic_ns());
        Ok(Feed::Ebpf(Box::new(EbpfFeed {
            probe,
            events,
            tracker,
            reconciler: Reconciler::new(scope(o), RECONCILE),
            batch: Vec::with_capacity(256),
            outputs: Vec::with_capacity(256),
            skipped: baseline.skipped,
        })))
    }

    /// Namespaces (with `--all-netns`) the last dump could not enter: their sockets are
    /// missing, which every view says.
    pub fn skipped_netns(&self) -> &[Skipped] {
        match self {
            Feed::Ebpf(f) => &f.skipped,
            Feed::Polling(p) => &p.latest.skipped,
        }
    }

    /// The kernel programs, when they are loaded.
    pub fn probe(&self) -> Option<&Probe> {
        match self {
            Feed::Ebpf(f) => Some(&f.probe),
            Feed::Polling(_) => None,
        }
    }

    pub fn is_ebpf(&self) -> bool {
        matches!(self, Feed::Ebpf(_))
    }

    pub fn source(&self) -> DataSource {
        match self {
            Feed::Ebpf(f) => DataSource::Ebpf {
                hook: match f.probe.hook() {
                    HookChoice::TpBtf => "tp_btf".to_string(),
                    _ => "tracepoint".to_string(),
                },
                missing_hooks: f
                    .probe
                    .missing()
                    .iter()
                    .map(|m| m.tracepoint.to_string())
                    .collect(),
            },
            Feed::Polling(p) => DataSource::Polling {
                reason: p.reason.clone(),
            },
        }
    }

    /// Applies queued kernel events; `on` sees every transition the live table produced.
    pub fn drain(&mut self, on: &mut impl FnMut(&Transition)) {
        let Feed::Ebpf(f) = self else {
            return;
        };
        let EbpfFeed {
            events,
            tracker,
            batch,
            outputs,
            ..
        } = &mut **f;
        events.drain_now(batch);
        for event in batch.drain(..).flatten() {
            tracker.apply(&event, outputs);
        }
        tracker.settle(outputs);
        deliver(outputs, on);
    }

    /// The next reconcile step (never, when polling). Cancel-safe.
    pub async fn reconcile_step(&mut self) -> ReconcileStep {
        match self {
            Feed::Ebpf(f) => f.reconciler.next().await,
            Feed::Polling(_) => std::future::pending().await,
        }
    }

    /// Carries out a reconcile step; repairs and expiries go to `on`.
    pub fn reconcile(&mut self, step: ReconcileStep, on: &mut impl FnMut(&Transition)) {
        self.drain(on);
        let Feed::Ebpf(f) = self else {
            return;
        };
        match step {
            ReconcileStep::Due => {
                // Lost or skipped events (or unreadable counters) make it a full one.
                let dropped = f.probe.counters().ok().map(|c| c.dropped());
                f.reconciler.start(dropped);
            }
            ReconcileStep::Done(dump) => {
                f.skipped = dump.skipped().to_vec();
                crate::procs::netns::warn_skipped(&f.skipped);
                Reconciler::apply(dump, &mut f.tracker, &mut f.outputs);
                deliver(&mut f.outputs, on);
            }
        }
    }

    /// Polling: takes a finished dump and keeps one running. No-op for eBPF.
    pub async fn refresh(&mut self) {
        let Feed::Polling(p) = self else {
            return;
        };
        if p.pending.as_ref().is_some_and(|h| h.is_finished())
            && let Some(h) = p.pending.take()
        {
            p.latest = h.await.unwrap_or_default();
        }
        if p.pending.is_none() {
            p.pending = Some(spawn_poll(p.scope));
        }
    }

    /// Polling: a dump now, waited for. No-op for eBPF.
    pub async fn refresh_now(&mut self) {
        if let Feed::Polling(p) = self {
            let h = p.pending.take().unwrap_or_else(|| spawn_poll(p.scope));
            p.latest = h.await.unwrap_or_default();
        }
    }

    /// Every socket as the feed knows it.
    pub fn for_each_socket<'a>(&'a self, mut f: impl FnMut(SockView<'a>)) {
        match self {
            Feed::Ebpf(feed) => {
                for (_, e) in feed.tracker.entries() {
                    f(SockView {
                        state: e.state,
                        local: e.local,
                        remote: e.remote,
                        netns: e.netns,
                        owner: e
                            .owner
                            .pid
                            .map(|pid| (pid, e.owner.comm.as_ref().map_or("?", |c| c.as_str()))),
                    });
                }
            }
            Feed::Polling(p) => {
                for b in &p.latest.sockets {
                    f(SockView {
                        state: ReportedState::from_kernel(b.state),
                        local: b.local,
                        remote: b.remote,
                        netns: b.netns,
                        owner: b.owner.as_ref().map(|(pid, comm)| (*pid, comm.as_str())),
                    });
                }
            }
        }
    }

    pub fn counters(&self) -> Option<KernelCounters> {
        match self {
            Feed::Ebpf(f) => f.probe.counters().ok(),
            Feed::Polling(_) => None,
        }
    }

    pub fn edge_counts(&self) -> Vec<EdgeCount> {
        match self {
            Feed::Ebpf(f) => f.probe.edge_counts().unwrap_or_default(),
            Feed::Polling(_) => Vec::new(),
        }
    }

    pub fn tracker_stats(&self) -> TrackerStats {
        match self {
            Feed::Ebpf(f) => f.tracker.stats(),
            Feed::Polling(_) => TrackerStats::default(),
        }
    }
}

fn deliver(outputs: &mut Vec<Output>, on: &mut impl FnMut(&Transition)) {
    for o in outputs.drain(..) {
        if let Output::Transition(t) = o {
            on(&t);
        }
    }
}
