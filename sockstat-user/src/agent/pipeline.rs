//! The one path from the kernel to every view (`trace`, `top`, `serve` and the lab): load
//! and attach the programs, take the sock_diag baseline, drain the ring into the live table,
//! and reconcile it with sock_diag on schedule. Views only read what comes out.
use std::{collections::HashMap, io, time::Duration};

use super::{
    CgroupGate, DumpScope, ReconcileStep, Reconciler, dump_tcp, listener_drops, own_netns,
};
use crate::{
    ebpf::{
        DecodeError, DropReason, Family, HookChoice, KernelEvent, Probe, ProbeOptions,
        SocketCgroups,
        ring::{EventStream, RingCounts},
    },
    live::{Output, Reports, Tracker, clock},
    procs::netns::Skipped,
};

/// What to attach and what to keep.
#[derive(Clone, Copy, Debug)]
pub struct PipelineOptions {
    pub hook: HookChoice,
    pub ring_kib: u32,
    /// What the kernel side and every dump keep.
    pub scope: DumpScope,
    /// False: the kernel only counts transitions (`trace --count-only`). No events arrive,
    /// so there is neither a baseline nor a reconcile.
    pub events: bool,
    /// With `events`: an event for each dropped TCP segment too.
    pub drops: bool,
    /// With `events`: the optional outputs (lifetimes, handshake RTTs).
    pub reports: Reports,
    /// With `events`: RTT samples, at most one per connection per this interval.
    pub rtt_interval: Option<Duration>,
    /// Take a sock_diag baseline of the scope once attached. The lab does without: its
    /// namespaces do not exist yet.
    pub baseline: bool,
    /// Time between reconciles; `None`: never.
    pub reconcile: Option<Duration>,
    /// With `scope.all_netns`: only the namespaces added with [`Pipeline::watch_netns`],
    /// where the kernel can tell (the lab's, which come and go).
    pub watched_netns: bool,
}

pub struct Pipeline {
    probe: Probe,
    ring: EventStream,
    tracker: Tracker,
    reconciler: Option<Reconciler>,
    /// Records taken from the ring and not yet applied.
    batch: Vec<Result<KernelEvent, DecodeError>>,
    counts: RingCounts,
    /// Namespace labels by inode, from the latest dump (with `all_netns`).
    names: HashMap<u32, String>,
    /// Namespaces the latest dump could not enter.
    skipped: Vec<Skipped>,
    /// With drop events: the scope, and each listener's drop counter when last read.
    listeners: Option<(DumpScope, HashMap<u64, u32>)>,
    /// `--pod`/`--k8s-namespace`/`--container` on each socket's cgroup.
    gate: Option<CgroupGate>,
}

/// The kernel side's settings for a scope: the one translation from a dump's scope to the
/// programs' filter, so the two always keep the same sockets.
fn probe_options(o: &PipelineOptions, gated: bool) -> ProbeOptions {
    let s = &o.scope;
    ProbeOptions {
        hook: o.hook,
        ring_kib: o.ring_kib,
        port: s.port,
        family: match (s.v4, s.v6) {
            (true, false) => Some(Family::Inet),
            (false, true) => Some(Family::Inet6),
            _ => None,
        },
        // Like ss: our own namespace unless asked for another one or all of them.
        netns: match (s.all_netns, s.netns) {
            (true, _) => None,
            (false, Some(n)) => Some(n),
            (false, None) => Some(own_netns()),
        },
        own: s.own.map(|e| (e.netns, e.port)),
        watched_netns: o.watched_netns,
        emit_events: o.events,
        drop_events: o.drops,
        rtt_interval: o.rtt_interval,
        cgroups: if gated {
            SocketCgroups::Filter
        } else {
            SocketCgroups::Ignore
        },
    }
}

/// What woke the pipeline.
pub enum Wake {
    /// Records arrived: drain.
    Events,
    /// Carry it out with [`Pipeline::reconcile`].
    Reconcile(ReconcileStep),
}

async fn next_step(reconciler: &mut Option<Reconciler>) -> ReconcileStep {
    match reconciler.as_mut() {
        Some(r) => r.next().await,
        None => std::future::pending().await,
    }
}

impl Pipeline {
    /// Attaches first, then takes the baseline, so nothing falls between the two. Must run
    /// inside a tokio runtime (the ring is registered with it).
    pub fn attach(o: &PipelineOptions) -> anyhow::Result<Self> {
        Self::attach_gated(o, None)
    }

    /// As [`Pipeline::attach`], with a workload filter judged on each socket's cgroup: the
    /// cgroups there are now are judged before the baseline, later ones as they appear.
    pub fn attach_gated(o: &PipelineOptions, mut gate: Option<CgroupGate>) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let mut probe = Probe::attach(&probe_options(o, gate.is_some()))?;
        let mut o = *o;
        if let Some(gate) = gate.as_mut() {
            gate.judge_existing(&mut probe);
            o.scope.left_out = Some(gate.left_out());
        }
        let o = &o;
        log::info!(
            "attached {} through {} (ring {} KiB)",
            probe.attached().join(", "),
            probe.hook().name(),
            probe.ring_bytes() / 1024
        );
        let ring = EventStream::new(probe.take_events()?).context("polling the ring buffer")?;
        let mut tracker = Tracker::default();
        tracker.observe_timewait(probe.timewait_observed());
        tracker.report(o.reports);
        let mut names = HashMap::new();
        let mut skipped = Vec::new();
        if o.events && o.baseline {
            let owners = crate::ebpf::owners::socket_owners_any();
            let dump = dump_tcp(o.scope, crate::filter::states::ALL, Some(&owners));
            crate::procs::netns::warn_skipped(&dump.skipped);
            names = dump.names;
            skipped = dump.skipped;
            tracker.load_baseline(dump.sockets.iter(), clock::monotonic_ns());
        }
        // Drops at a full accept queue never reach the drop hook (the SYN is consumed): they
        // show as the listener's drop counter rising. The first reading is the baseline.
        let listeners = (o.events && o.drops).then(|| {
            let now = listener_drops(o.scope)
                .into_iter()
                .map(|l| (l.cookie, l.drops))
                .collect();
            (o.scope, now)
        });
        let reconciler = o
            .reconcile
            .filter(|_| o.events)
            .map(|every| Reconciler::new(o.scope, every, probe.timewait_observed()));
        Ok(Pipeline {
            probe,
            ring,
            tracker,
            reconciler,
            batch: Vec::with_capacity(256),
            counts: RingCounts::default(),
            names,
            skipped,
            listeners,
            gate,
        })
    }

    /// With a workload filter: the cgroups it left out in the kernel, and the events it left
    /// out in user space (those that came before the kernel had their cgroup's verdict).
    pub fn gate_counts(&self) -> Option<(u64, u64)> {
        self.gate
            .as_ref()
            .map(|g| (g.in_kernel(), g.events_left_out()))
    }

    /// With drop events: reads every listener's drop counter and reports each rise as a
    /// counted drop on that listener. The listeners there at attach start from their count
    /// then; any other listener was made while tracing, so all its drops are reported.
    pub fn check_listeners(&mut self, out: &mut Vec<Output>) {
        if self.listeners.is_none() {
            return;
        }
        // The table first takes what is queued: a new listener's LISTEN (its owner) may be.
        self.drain(out);
        let Some((scope, seen)) = self.listeners.as_mut() else {
            return;
        };
        let now = clock::monotonic_ns();
        let current = listener_drops(*scope);
        let mut next = HashMap::with_capacity(current.len());
        for l in &current {
            let before = seen.get(&l.cookie).copied().unwrap_or(0);
            let rise = l.drops.wrapping_sub(before);
            if rise != 0 && rise < u32::MAX / 2 {
                let reason = DropReason::Listener {
                    count: rise,
                    overflow: l.accept_queue > l.backlog,
                    accept_queue: l.accept_queue,
                    backlog: l.backlog,
                };
                out.push(
                    self.tracker
                        .counted_drop(l.cookie, l.netns, l.local, reason, now),
                );
            }
            next.insert(l.cookie, l.drops);
        }
        *seen = next;
    }

    pub fn probe(&self) -> &Probe {
        &self.probe
    }

    /// See [`PipelineOptions::watched_netns`].
    pub fn watch_netns(&mut self, inode: u32) -> Result<(), crate::ebpf::LoadError> {
        self.probe.watch_netns(inode)
    }

    pub fn unwatch_netns(&mut self, inode: u32) {
        self.probe.unwatch_netns(inode);
    }

    pub fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    pub fn ring_counts(&self) -> RingCounts {
        self.counts
    }

    /// Namespace labels by inode (filled with `all_netns`).
    pub fn netns_names(&self) -> &HashMap<u32, String> {
        &self.names
    }

    pub fn skipped_netns(&self) -> &[Skipped] {
        &self.skipped
    }

    /// Waits until the ring has records (taken, and applied by the next drain) or a
    /// reconcile step is due. Cancel-safe: usable as a `tokio::select!` branch.
    pub async fn wake(&mut self) -> io::Result<Wake> {
        let Pipeline {
            ring,
            batch,
            reconciler,
            ..
        } = self;
        tokio::select! {
            ready = ring.next_batch(batch) => ready.map(|()| Wake::Events),
            step = next_step(reconciler) => Ok(Wake::Reconcile(step)),
        }
    }

    /// Applies every record taken or waiting in the ring; what the live table produced is
    /// appended to `out`.
    pub fn drain(&mut self, out: &mut Vec<Output>) {
        self.drain_where(out, |_| true);
    }

    /// As [`Pipeline::drain`], applying only the events `keep` accepts (it sees every one).
    pub fn drain_where(
        &mut self,
        out: &mut Vec<Output>,
        mut keep: impl FnMut(&KernelEvent) -> bool,
    ) {
        self.probe.flush_kernel_log();
        self.ring.drain_now(&mut self.batch);
        for record in self.batch.drain(..) {
            match record {
                Ok(event) => {
                    self.counts.decoded += 1;
                    if event.cgroup_id != 0
                        && let Some(gate) = self.gate.as_mut()
                        && !gate.keeps(event.cgroup_id, &mut self.probe)
                    {
                        continue;
                    }
                    if keep(&event) {
                        self.tracker.apply(&event, out);
                    }
                }
                Err(e) => {
                    self.counts.undecodable += 1;
                    log::debug!("undecodable ring record: {e}");
                }
            }
        }
        self.tracker.settle(out);
    }

    /// The next reconcile step; never, without a reconcile schedule. Cancel-safe.
    pub async fn reconcile_step(&mut self) -> ReconcileStep {
        next_step(&mut self.reconciler).await
    }

    /// Carries out a reconcile step after applying what is queued, so a dump is compared
    /// with fresh state. Repairs and expiries are appended to `out`.
    pub fn reconcile(&mut self, step: ReconcileStep, out: &mut Vec<Output>) {
        self.drain(out);
        let Some(reconciler) = self.reconciler.as_mut() else {
            return;
        };
        match step {
            ReconcileStep::Due => {
                // Lost or skipped events, or counters that cannot be read, make it a full one.
                let dropped = match self.probe.counters() {
                    Ok(c) => Some(c.dropped()),
                    Err(e) => {
                        log::warn!("reading the kernel counters: {e}; reconciling all states");
                        None
                    }
                };
                reconciler.start(dropped);
            }
            ReconcileStep::Done(dump) => {
                self.skipped = dump.skipped().to_vec();
                crate::procs::netns::warn_skipped(&self.skipped);
                if !dump.names().is_empty() {
                    self.names = dump.names().clone();
                }
                Reconciler::apply(*dump, &mut self.tracker, out);
            }
        }
    }

    /// At the end: what is still in the ring, the closes held back for their RST, and the
    /// listeners' last drops.
    pub fn finish(&mut self, out: &mut Vec<Output>) {
        self.drain(out);
        self.check_listeners(out);
        self.tracker.flush(out);
    }
}
