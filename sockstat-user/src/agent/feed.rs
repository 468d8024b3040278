//! Where live numbers come from: the kernel programs with the live table (every transition),
//! or, when they cannot be loaded, sock_diag polled once per interval (states and counts,
//! no transitions). Shared by `top` and `serve`.
use super::{
    Dump, DumpScope, ReconcileStep, dump_tcp,
    pipeline::{Pipeline, PipelineOptions},
};
use crate::procs::netns::Skipped;
use crate::{
    ebpf::{EdgeCount, KernelCounters, Probe, privilege},
    live::{
        Output, Reports, TrackerStats,
        dashboard::{DataSource, SockView},
    },
    report::ports::{self, PortHeadroom, PortSettings, PortUse},
    tcp::{ReportedState, TcpState},
};
use std::collections::HashMap;

const RECONCILE: std::time::Duration = std::time::Duration::from_secs(5);

/// Each namespace's port settings for `Feed::port_forecast`, read again every
/// `PortWatch::REREAD`: they are sysctls, rarely changed, and reading them means entering
/// every namespace.
pub struct PortWatch {
    scope: DumpScope,
    settings: HashMap<u32, PortSettings>,
    read_at: Option<std::time::Instant>,
}

impl PortWatch {
    const REREAD: std::time::Duration = std::time::Duration::from_secs(30);

    pub fn new(scope: DumpScope) -> Self {
        Self {
            scope,
            settings: HashMap::new(),
            read_at: None,
        }
    }

    /// The feed's port headroom per destination, soonest exhaustion first.
    pub fn forecast(&mut self, feed: &Feed) -> Vec<PortHeadroom> {
        if self.read_at.is_none_or(|at| at.elapsed() >= Self::REREAD) {
            self.settings = super::port_settings(self.scope);
            self.read_at = Some(std::time::Instant::now());
        }
        feed.port_forecast(&self.settings)
    }
}

pub struct FeedOptions {
    pub hook: crate::ebpf::HookChoice,
    pub ring_kib: u32,
    pub scope: DumpScope,
    /// Poll even when the programs could load.
    pub poll: bool,
    /// Report each connection's lifetime as it closes (`serve --record`).
    pub lifetimes: bool,
}

pub enum Feed {
    Ebpf(Box<EbpfFeed>),
    Polling(Box<PollingFeed>),
}

pub struct EbpfFeed {
    pipeline: Pipeline,
    outputs: Vec<Output>,
}

pub struct PollingFeed {
    pub reason: String,
    latest: Dump,
    pending: Option<tokio::task::JoinHandle<Dump>>,
    scope: DumpScope,
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
    /// that is not possible. Must run inside a tokio runtime. `gate`: a workload filter for
    /// the pipeline to apply to sockets' cgroups (polling has no events to gate).
    pub fn start(o: &FeedOptions, gate: Option<super::CgroupGate>) -> anyhow::Result<Feed> {
        let polling = |reason: String| {
            log::info!("polling sock_diag: {reason}");
            Feed::Polling(Box::new(PollingFeed {
                reason,
                latest: Dump::default(),
                pending: None,
                scope: o.scope,
            }))
        };
        if o.poll {
            return Ok(polling("--poll".to_string()));
        }
        if !privilege::can_trace() {
            return Ok(polling(
                "no BPF privilege, run as root for per-edge data".to_string(),
            ));
        }
        let pipeline = match Pipeline::attach_gated(
            &PipelineOptions {
                hook: o.hook,
                ring_kib: o.ring_kib,
                scope: o.scope,
                events: true,
                // Drops are counted in the kernel; top and serve read the counts.
                drops: false,
                // Each connection's timeline (`sockstat conn`) shows its handshake's RTT.
                reports: Reports {
                    lifetimes: o.lifetimes,
                    handshake_rtts: true,
                },
                rtt_interval: None,
                baseline: true,
                reconcile: Some(RECONCILE),
                watched_netns: false,
            },
            gate,
        ) {
            Ok(p) => p,
            Err(e) => return Ok(polling(format!("kernel programs not loaded ({e:#})"))),
        };
        for m in pipeline.probe().missing() {
            eprintln!("sockstat: {m}");
        }
        Ok(Feed::Ebpf(Box::new(EbpfFeed {
            pipeline,
            outputs: Vec::with_capacity(256),
        })))
    }

    /// Namespaces (with `--all-netns`) the last dump could not enter: their sockets are
    /// missing, which every view says.
    pub fn skipped_netns(&self) -> &[Skipped] {
        match self {
            Feed::Ebpf(f) => f.pipeline.skipped_netns(),
            Feed::Polling(p) => &p.latest.skipped,
        }
    }

    /// The kernel programs, when they are loaded.
    pub fn probe(&self) -> Option<&Probe> {
        match self {
            Feed::Ebpf(f) => Some(f.pipeline.probe()),
            Feed::Polling(_) => None,
        }
    }

    pub fn is_ebpf(&self) -> bool {
        matches!(self, Feed::Ebpf(_))
    }

    pub fn source(&self) -> DataSource {
        match self {
            Feed::Ebpf(f) => DataSource::Ebpf {
                hook: f.pipeline.probe().hook().name().to_string(),
                missing_hooks: f
                    .pipeline
                    .probe()
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

    /// Applies queued kernel events; `on` sees everything the live table produced.
    pub fn drain(&mut self, on: &mut impl FnMut(&Output)) {
        if let Feed::Ebpf(f) = self {
            f.pipeline.drain(&mut f.outputs);
            deliver(&mut f.outputs, on);
        }
    }

    /// The next reconcile step (never, when polling). Cancel-safe.
    pub async fn reconcile_step(&mut self) -> ReconcileStep {
        match self {
            Feed::Ebpf(f) => f.pipeline.reconcile_step().await,
            Feed::Polling(_) => std::future::pending().await,
        }
    }

    /// Carries out a reconcile step; repairs and expiries go to `on`.
    pub fn reconcile(&mut self, step: ReconcileStep, on: &mut impl FnMut(&Output)) {
        if let Feed::Ebpf(f) = self {
            f.pipeline.reconcile(step, &mut f.outputs);
            deliver(&mut f.outputs, on);
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
            p.latest = h.await.unwrap_or_else(|e| {
                log::warn!("a polling dump failed ({e}); the next one replaces it");
                Dump::default()
            });
        }
        if p.pending.is_none() {
            p.pending = Some(spawn_poll(p.scope));
        }
    }

    /// Polling: a dump now, waited for. No-op for eBPF.
    pub async fn refresh_now(&mut self) {
        if let Feed::Polling(p) = self {
            let h = p.pending.take().unwrap_or_else(|| spawn_poll(p.scope));
            p.latest = h.await.unwrap_or_else(|e| {
                log::warn!("a polling dump failed ({e}); the next one replaces it");
                Dump::default()
            });
        }
    }

    /// Every socket as the feed knows it.
    pub fn for_each_socket<'a>(&'a self, mut f: impl FnMut(SockView<'a>)) {
        match self {
            Feed::Ebpf(feed) => {
                for s in feed.pipeline.tracker().sockets() {
                    f(SockView {
                        state: s.state,
                        local: s.local,
                        remote: s.remote,
                        netns: s.netns,
                        owner: s
                            .owner
                            .pid
                            .map(|pid| (pid, s.owner.comm.as_ref().map_or("?", |c| c.as_str()))),
                        since_ns: s.since_ns,
                        pod: None,
                    });
                }
            }
            Feed::Polling(p) => {
                for b in p.latest.sockets.iter() {
                    f(SockView {
                        state: ReportedState::from_kernel(b.state),
                        local: b.local,
                        remote: b.remote,
                        netns: b.netns,
                        owner: b.owner,
                        since_ns: None,
                        pod: None,
                    });
                }
            }
        }
    }

    /// Ephemeral-port headroom per destination (see `report::ports`), with each
    /// namespace's settings by inode; TIME-WAIT ages from the live table (none when
    /// polling, so no rate and no forecast there).
    pub fn port_forecast(&self, settings: &HashMap<u32, PortSettings>) -> Vec<PortHeadroom> {
        let now = crate::live::clock::monotonic_ns();
        let mut uses = Vec::new();
        self.for_each_socket(|s| {
            let ReportedState::Known(state) = s.state else {
                return;
            };
            uses.push(PortUse {
                netns: s.netns,
                state,
                local: s.local,
                remote: s.remote,
                time_wait_age_s: s
                    .since_ns
                    .filter(|_| state == TcpState::TimeWait)
                    .map(|since| now.saturating_sub(since) as f64 / 1e9),
            });
        });
        ports::forecast(uses, settings)
    }

    /// The kernel's dropped TCP segments by reason name (`None` when polling or unreadable).
    pub fn drop_counts(&self) -> Option<HashMap<String, u64>> {
        let probe = self.probe()?;
        let counts = probe
            .drops_by_reason()
            .inspect_err(|e| log::warn!("reading the drop counts: {e}"))
            .ok()?;
        Some(
            counts
                .into_iter()
                .map(|(slot, n)| (probe.drop_slot_name(slot).into_owned(), n))
                .collect(),
        )
    }

    pub fn counters(&self) -> Option<KernelCounters> {
        match self {
            Feed::Ebpf(f) => f
                .pipeline
                .probe()
                .counters()
                .inspect_err(|e| log::warn!("reading the kernel counters: {e}"))
                .ok(),
            Feed::Polling(_) => None,
        }
    }

    pub fn edge_counts(&self) -> Vec<EdgeCount> {
        match self {
            Feed::Ebpf(f) => f.pipeline.probe().edge_counts().unwrap_or_else(|e| {
                log::warn!("reading the per-edge counters: {e}");
                Vec::new()
            }),
            Feed::Polling(_) => Vec::new(),
        }
    }

    /// The live table's size by its own accounting (`None` when polling: no table).
    pub fn table_memory(&self) -> Option<crate::live::TableMemory> {
        match self {
            Feed::Ebpf(f) => Some(f.pipeline.tracker().memory()),
            Feed::Polling(_) => None,
        }
    }

    pub fn tracker_stats(&self) -> TrackerStats {
        match self {
            Feed::Ebpf(f) => f.pipeline.tracker().stats(),
            Feed::Polling(_) => TrackerStats::default(),
        }
    }
}

fn deliver(outputs: &mut Vec<Output>, on: &mut impl FnMut(&Output)) {
    for o in outputs.drain(..) {
        on(&o);
    }
}
