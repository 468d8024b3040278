//! The metric families and how they are fed. Label sets are bounded: states x namespaces,
//! edges (16 x 16 at most), errno names, at most `MAX_PORTS` listening ports and at most
//! `MAX_PORTS` closed ports, `MAX_DESTINATIONS` port-headroom destinations, and one drop
//! series per drop reason the kernel has.
use std::collections::HashMap;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

use crate::{
    agent::Feed,
    live::{Cause, ERRNO_NAMES, Output, Reset, Transition},
    procs::workload::Workload,
    report::ports::PortHeadroom,
    tcp::{ReportedState, TcpState},
};

/// Listening ports beyond this many are summed under port="other".
pub const MAX_PORTS: usize = 64;
/// Pods with series of their own in `pod_sockets` (those with the most sockets); the rest
/// are summed under namespace="other", pod="other". A node runs at most 110 pods by
/// Kubernetes' default, so the cap is reached only by a misconfiguration, never silently.
pub const MAX_PODS: usize = 256;
/// Destinations with a port-headroom series: those nearest exhaustion.
pub const MAX_DESTINATIONS: usize = 10;
/// connect_errors' label for a connect that failed with no cause known.
const NO_ERRNO: &str = "none";
/// time_wait_early_ends' causes.
const TW_EARLY_END_CAUSES: [&str; 3] = ["reused", "rst-in", "killed"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateNetns {
    state: String,
    netns: String,
}

/// A pod's sockets in one state (`pod_sockets`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PodState {
    namespace: String,
    pod: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Edge {
    from: String,
    to: String,
}

/// What became of a recorded connection (`serve --record`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Direction {
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RetransmitType {
    r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Errno {
    errno: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Port {
    port: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndCause {
    cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PortPair {
    netns: String,
    source: String,
    destination: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DropReason {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Program {
    program: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Tracepoint {
    tracepoint: &'static str,
}

pub struct Metrics {
    pub registry: Registry,
    sockets: Family<StateNetns, Gauge>,
    pod_sockets: Family<PodState, Gauge>,
    /// The pods' names, for `pod_sockets`.
    /// Shared with the recorder under `serve --record`.
    workloads: crate::procs::workload::SharedNames,
    transitions: Family<Edge, Counter>,
    connect_seconds: Histogram,
    handshake_rtt_seconds: Histogram,
    retransmits: Family<RetransmitType, Counter>,
    resets: Family<Direction, Counter>,
    connect_errors: Family<Errno, Counter>,
    time_wait_entries: Counter,
    time_wait_expiries: Counter,
    time_wait_overflows: Counter,
    time_wait_early_ends: Family<EndCause, Counter>,
    lost: Counter,
    missed_runs: Family<Program, Counter>,
    netns_skipped: Gauge,
    repairs: Counter,
    ebpf_up: Gauge,
    hook_attached: Family<Tracepoint, Gauge>,
    listen_port_sockets: Family<Port, Gauge>,
    closed_port_resets: Counter,
    closed_port_resets_by_port: Family<Port, Counter>,
    drops: Family<DropReason, Counter>,
    port_headroom: Family<PortPair, Gauge>,
    timeline_events_left_out: Counter,
    timelines_evicted: Counter,
    port_exhaustion: Family<PortPair, Gauge<f64, std::sync::atomic::AtomicU64>>,
    table_sockets: Gauge,
    table_bytes: Gauge,
    record_rows: Family<Outcome, Counter>,
    record_spool_rows: Gauge,
    record_spool_bytes: Gauge,
    /// The closed ports given a label of their own so far (the first `MAX_PORTS` seen).
    closed_ports_named: std::collections::HashSet<u16>,
    /// Last absolute values of the kernel's (and the live table's) running totals, so the
    /// counters advance by the difference.
    seen: HashMap<&'static str, u64>,
    seen_edges: HashMap<(u8, u8), u64>,
    seen_missed: HashMap<String, u64>,
    seen_drops: HashMap<u32, u64>,
    /// Whether the drop reasons' series exist (made at the first refresh with programs).
    drops_preset: bool,
}

impl Metrics {
    pub fn new(source: &str, workloads: crate::procs::workload::SharedNames) -> Self {
        let mut registry = Registry::with_prefix("sockstat");
        let m = Metrics {
            registry: Registry::default(),
            sockets: Family::default(),
            pod_sockets: Family::default(),
            workloads,
            transitions: Family::default(),
            // 100 µs to ~26 s, by 4x.
            connect_seconds: Histogram::new(exponential_buckets(0.0001, 4.0, 10)),
            // 10 µs (loopback) to ~2.6 s, by 4x.
            handshake_rtt_seconds: Histogram::new(exponential_buckets(0.00001, 4.0, 10)),
            retransmits: Family::default(),
            resets: Family::default(),
            connect_errors: Family::default(),
            time_wait_entries: Counter::default(),
            time_wait_expiries: Counter::default(),
            time_wait_overflows: Counter::default(),
            time_wait_early_ends: Family::default(),
            lost: Counter::default(),
            missed_runs: Family::default(),
            netns_skipped: Gauge::default(),
            repairs: Counter::default(),
            ebpf_up: Gauge::default(),
            hook_attached: Family::default(),
            listen_port_sockets: Family::default(),
            closed_port_resets: Counter::default(),
            closed_port_resets_by_port: Family::default(),
            drops: Family::default(),
            port_headroom: Family::default(),
            timeline_events_left_out: Counter::default(),
            timelines_evicted: Counter::default(),
            port_exhaustion: Family::default(),
            table_sockets: Gauge::default(),
            table_bytes: Gauge::default(),
            record_rows: Family::default(),
            record_spool_rows: Gauge::default(),
            record_spool_bytes: Gauge::default(),
            closed_ports_named: std::collections::HashSet::new(),
            seen: HashMap::new(),
            seen_edges: HashMap::new(),
            seen_missed: HashMap::new(),
            seen_drops: HashMap::new(),
            drops_preset: false,
        };
        // A gauge fixed at 1 rather than an OpenMetrics info metric: the classic text
        // parsers (promtool, older scrapers) know no "info" type.
        let build = Family::<Vec<(String, String)>, Gauge>::default();
        build
            .get_or_create(&vec![
                ("version".to_string(), env!("CARGO_PKG_VERSION").to_string()),
                ("source".to_string(), source.to_string()),
            ])
            .set(1);
        registry.register("build_info", "sockstat version and data source", build);
        registry.register(
            "ebpf_up",
            "1 when the kernel programs are loaded, 0 when polling sock_diag",
            m.ebpf_up.clone(),
        );
        registry.register(
            "hook_attached",
            "1 for each kernel tracepoint attached, 0 for a cause hook this kernel refused",
            m.hook_attached.clone(),
        );
        registry.register(
            "sockets",
            "TCP sockets by state and network namespace (inode)",
            m.sockets.clone(),
        );
        registry.register(
            "pod_sockets",
            "TCP sockets of Kubernetes pods by pod, its namespace, and state (the owner's pod, else its network namespace's); at most 256 pods, the rest under pod=\"other\"",
            m.pod_sockets.clone(),
        );
        registry.register(
            "transitions",
            "TCP state transitions counted in the kernel (a timewait swap shows as -> CLOSE)",
            m.transitions.clone(),
        );
        registry.register(
            "connect_duration_seconds",
            "Time from SYN-SENT to ESTAB of connections opened here",
            m.connect_seconds.clone(),
        );
        registry.register(
            "handshake_rtt_seconds",
            "The kernel's first RTT sample of each connection, taken as its handshake completed (SYN-SENT or SYN-RECV to ESTAB), on either side",
            m.handshake_rtt_seconds.clone(),
        );
        registry.register(
            "retransmits",
            "TCP segments retransmitted, counted in the kernel, by type: syn, syn-ack (a listener's), rto (the retransmission timer), tlp (tail loss probe), recovery (fast retransmit, loss recovery); five series at most",
            m.retransmits.clone(),
        );
        registry.register(
            "resets",
            "TCP resets received (in) and sent (out), counted in the kernel",
            m.resets.clone(),
        );
        registry.register(
            "connect_errors",
            "Connections that failed in SYN-SENT, by errno",
            m.connect_errors.clone(),
        );
        registry.register(
            "time_wait_entries",
            "Connections that entered TIME-WAIT",
            m.time_wait_entries.clone(),
        );
        registry.register(
            "time_wait_expiries",
            "TIME-WAIT sockets that ran out their 60 s",
            m.time_wait_expiries.clone(),
        );
        registry.register(
            "time_wait_overflows",
            "Closes that could not keep a timewait socket (tcp_max_tw_buckets), seen by the kernel hooks",
            m.time_wait_overflows.clone(),
        );
        registry.register(
            "time_wait_early_ends",
            "TIME-WAIT sockets ended before their time, by cause: reused (a connect() under tcp_tw_reuse, or a SYN a listener accepted), rst-in, killed (ss -K, namespace exit)",
            m.time_wait_early_ends.clone(),
        );
        registry.register(
            "lost_events",
            "Kernel events dropped because the ring buffer was full (repaired by reconcile)",
            m.lost.clone(),
        );
        registry.register(
            "kernel_missed_runs",
            "Kernel program runs skipped because the hook re-entered on its CPU, by program: those events are neither sent nor counted (repaired by reconcile)",
            m.missed_runs.clone(),
        );
        registry.register(
            "netns_skipped",
            "Network namespaces (--all-netns) the last dump could not enter: their sockets are in no series (the log says which and why)",
            m.netns_skipped.clone(),
        );
        registry.register(
            "reconcile_repairs",
            "Live-table entries corrected by a sock_diag reconcile",
            m.repairs.clone(),
        );
        registry.register(
            "listen_port_sockets",
            "Non-listening sockets on each listening port (at most 64 ports, the rest as other)",
            m.listen_port_sockets.clone(),
        );
        registry.register(
            "closed_port_resets",
            "Resets sent answering segments to ports nothing listens on (connects to a dead service, port scans), counted in the kernel; also in resets{direction=\"out\"}",
            m.closed_port_resets.clone(),
        );
        registry.register(
            "closed_port_resets_by_port",
            "closed_port_resets by the closed port: the first 64 ports seen have their own label, the rest are other",
            m.closed_port_resets_by_port.clone(),
        );
        registry.register(
            "drops",
            "TCP segments the kernel dropped (skb:kfree_skb), by its drop reason as this kernel's BTF names it (tcp-csum, no-socket, tcp-invalid-sequence, ...); at most one series per reason the kernel has (about 130 on 6.18)",
            m.drops.clone(),
        );
        registry.register(
            "timeline_events_left_out",
            "Events left out of connections' timelines (kept for sockstat conn) past --timeline-events",
            m.timeline_events_left_out.clone(),
        );
        registry.register(
            "timelines_evicted",
            "Live connections' timelines dropped past --timelines, the oldest first",
            m.timelines_evicted.clone(),
        );
        registry.register(
            "port_headroom",
            "Ephemeral ports connect() may still take toward a destination from a source address (ip_local_port_range less reserved, bound and in-use ports; TIME-WAIT included unless tcp_tw_reuse frees it), for the 10 destinations nearest exhaustion",
            m.port_headroom.clone(),
        );
        registry.register(
            "port_exhaustion_seconds",
            "Seconds until port_headroom is used up at the connect rate of the last 10 s (from TIME-WAIT entries), for those of the same destinations that have a rate",
            m.port_exhaustion.clone(),
        );
        registry.register(
            "live_table_sockets",
            "Sockets in the agent's live table",
            m.table_sockets.clone(),
        );
        registry.register(
            "live_table_bytes",
            "Memory the live table holds, by its own accounting (hash buckets, slots, interned owners and addresses)",
            m.table_bytes.clone(),
        );
        m.preset();
        Metrics { registry, ..m }
    }

    /// Every series whose labels are known in advance, at 0 from the first scrape: a
    /// series that appears only at its first increment hides that increment from
    /// `rate()` and `increase()`, which need a sample before it (2000 connections read as
    /// 26 in a fleet-wide `sum(increase(...))`).
    fn preset(&self) {
        for &(from, to) in &sockstat_common::tcp_state::LINUX_EDGES {
            drop(self.transitions.get_or_create(&Edge {
                from: ReportedState::from_kernel(from).to_string(),
                to: ReportedState::from_kernel(to).to_string(),
            }));
        }
        let errnos = ERRNO_NAMES.iter().map(|&(_, name)| name).chain([NO_ERRNO]);
        for errno in errnos {
            drop(self.connect_errors.get_or_create(&Errno {
                errno: errno.to_string(),
            }));
        }
        for cause in TW_EARLY_END_CAUSES {
            drop(self.time_wait_early_ends.get_or_create(&EndCause { cause }));
        }
        for r#type in &sockstat_common::retransmit::NAMES[1..] {
            drop(self.retransmits.get_or_create(&RetransmitType { r#type }));
        }
        for direction in ["in", "out"] {
            drop(self.resets.get_or_create(&Direction { direction }));
        }
    }

    /// Every drop reason this kernel has, at 0 (see `preset`); its names come with the
    /// programs.
    fn preset_drops(&mut self, probe: &crate::ebpf::Probe) {
        if self.drops_preset {
            return;
        }
        self.drops_preset = true;
        for &value in probe.drop_reasons().values() {
            if value < sockstat_common::drop::REASON_SLOTS - 1 {
                drop(self.drops.get_or_create(&DropReason {
                    reason: probe.drop_slot_name(value).into_owned(),
                }));
            }
        }
    }

    /// What the live table produced: transitions, and resets of closed ports.
    pub fn observe(&mut self, o: &Output) {
        match o {
            Output::Transition(t) => self.transition(t),
            Output::Reset(r) if r.closed_port => self.closed_port(r),
            Output::Rtt(r) if r.handshake => {
                if let Some(us) = r.tcp.srtt() {
                    self.handshake_rtt_seconds.observe(f64::from(us) / 1e6);
                }
            }
            Output::Reset(_)
            | Output::Lifetime(_)
            | Output::Retransmit(_)
            | Output::Drop(_)
            | Output::Rtt(_) => {}
        }
    }

    fn closed_port(&mut self, r: &Reset) {
        let port = r.local.port();
        let label = if self.closed_ports_named.contains(&port)
            || self.closed_ports_named.len() < MAX_PORTS
        {
            self.closed_ports_named.insert(port);
            port.to_string()
        } else {
            "other".to_string()
        };
        self.closed_port_resets_by_port
            .get_or_create(&Port { port: label })
            .inc();
    }

    fn transition(&self, t: &Transition) {
        let known = |s: TcpState| ReportedState::Known(s);
        if t.old == known(TcpState::SynSent)
            && t.new == known(TcpState::Established)
            && let Some(ns) = t.prev_state_ns
        {
            self.connect_seconds.observe(ns as f64 / 1e9);
        }
        if t.old == known(TcpState::SynSent) && t.new == known(TcpState::Close) {
            // What connect() returned: one of ERRNO_NAMES, or NO_ERRNO.
            let errno = match t.cause {
                Some(Cause::Timeout) => "ETIMEDOUT".to_string(),
                Some(Cause::RstIn) => "ECONNREFUSED".to_string(),
                Some(Cause::NoLocalPort) => "EADDRNOTAVAIL".to_string(),
                Some(c) => c.name(),
                None => NO_ERRNO.to_string(),
            };
            self.connect_errors.get_or_create(&Errno { errno }).inc();
        }
        if t.new == known(TcpState::TimeWait) {
            self.time_wait_entries.inc();
        }
        if t.old == known(TcpState::TimeWait) && t.cause == Some(Cause::Timeout) {
            self.time_wait_expiries.inc();
        }
        if t.old == known(TcpState::TimeWait) && t.new == known(TcpState::Close) {
            // TW_EARLY_END_CAUSES.
            let cause = match t.cause {
                Some(c @ (Cause::Reused | Cause::RstIn | Cause::Killed)) => c.static_name(),
                _ => None,
            };
            if let Some(cause) = cause {
                self.time_wait_early_ends
                    .get_or_create(&EndCause { cause })
                    .inc();
            }
        }
    }

    /// Refreshes everything that is read rather than observed: socket gauges, the kernel's
    /// and the live table's running totals.
    /// `pod_sockets` from each pod's count per state: the `MAX_PODS` pods with the most
    /// sockets by name, the rest summed under "other".
    fn set_pod_sockets(&mut self, by_pod: HashMap<(std::sync::Arc<Workload>, ReportedState), i64>) {
        let mut totals: HashMap<(&Option<String>, &Option<String>), i64> = HashMap::new();
        for ((w, _), n) in &by_pod {
            *totals.entry((&w.namespace, &w.pod)).or_default() += n;
        }
        let mut ranked: Vec<_> = totals.into_iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let named: std::collections::HashSet<(Option<String>, Option<String>)> = ranked
            .iter()
            .take(MAX_PODS)
            .map(|((ns, pod), _)| ((*ns).clone(), (*pod).clone()))
            .collect();
        self.pod_sockets.clear();
        for ((w, state), n) in by_pod {
            let key = (w.namespace.clone(), w.pod.clone());
            let (namespace, pod) = if named.contains(&key) {
                (key.0.unwrap_or_default(), key.1.unwrap_or_default())
            } else {
                ("other".to_string(), "other".to_string())
            };
            self.pod_sockets
                .get_or_create(&PodState {
                    namespace,
                    pod,
                    state: state.to_string(),
                })
                .inc_by(n);
        }
    }

    pub fn refresh(&mut self, feed: &Feed, ports: &[PortHeadroom]) {
        if let Some(probe) = feed.probe() {
            self.preset_drops(probe);
        }
        self.port_headroom.clear();
        self.port_exhaustion.clear();
        for p in ports.iter().take(MAX_DESTINATIONS) {
            let label = PortPair {
                netns: p.netns.clone(),
                source: p.source.to_string(),
                destination: p.destination.to_string(),
            };
            self.port_headroom
                .get_or_create(&label)
                .set(i64::try_from(p.available).unwrap_or(i64::MAX));
            if let Some(s) = p.exhaustion_s {
                self.port_exhaustion.get_or_create(&label).set(s);
            }
        }
        self.ebpf_up.set(i64::from(feed.is_ebpf()));
        self.netns_skipped
            .set(i64::try_from(feed.skipped_netns().len()).unwrap_or(i64::MAX));
        if let Some(probe) = feed.probe() {
            // No series where the kernel does not count them (a classic tracepoint before
            // 6.7): absent is unknown, 0 would be a claim.
            let missed = if probe.skipped_runs_counted() {
                probe.missed_runs().unwrap_or_else(|e| {
                    log::warn!("reading the programs' skipped runs: {e}");
                    Vec::new()
                })
            } else {
                Vec::new()
            };
            for (program, total) in missed {
                let before = self.seen_missed.insert(program.clone(), total).unwrap_or(0);
                self.missed_runs
                    .get_or_create(&Program { program })
                    .inc_by(total.saturating_sub(before));
            }
            for &tracepoint in probe.attached() {
                self.hook_attached
                    .get_or_create(&Tracepoint { tracepoint })
                    .set(1);
            }
            for m in probe.missing() {
                let label = Tracepoint {
                    tracepoint: m.tracepoint,
                };
                self.hook_attached.get_or_create(&label).set(0);
            }
        }
        let mut by_state: HashMap<(ReportedState, u32), i64> = HashMap::new();
        let mut by_pod: HashMap<(std::sync::Arc<Workload>, ReportedState), i64> = HashMap::new();
        let mut listening: Vec<(u32, u16)> = Vec::new();
        // A poisoned cache (a panic elsewhere while it was held) names nothing.
        let names = std::sync::Arc::clone(&self.workloads);
        let mut workloads = names.lock().ok();
        feed.for_each_socket(|s| {
            *by_state.entry((s.state, s.netns)).or_default() += 1;
            if let Some(w) = workloads
                .as_mut()
                .and_then(|n| n.of_owner(s.owner.map(|(pid, _)| pid), s.netns))
                && w.pod.is_some()
            {
                *by_pod.entry((w, s.state)).or_default() += 1;
            }
            if s.state == ReportedState::Known(TcpState::Listen) {
                listening.push((s.netns, s.local.port()));
            }
        });
        drop(workloads);
        listening.sort_unstable();
        listening.dedup();
        // A second pass counts only the listening ports: counting every local port (each
        // client socket has its own) held a map as large as the table, 131k entries at the
        // TIME-WAIT cap, at every refresh.
        let mut per_port: HashMap<(u32, u16), i64> = HashMap::with_capacity(listening.len());
        feed.for_each_socket(|s| {
            let key = (s.netns, s.local.port());
            if s.state != ReportedState::Known(TcpState::Listen)
                && listening.binary_search(&key).is_ok()
            {
                *per_port.entry(key).or_default() += 1;
            }
        });
        self.sockets.clear();
        for ((state, netns), n) in by_state {
            self.sockets
                .get_or_create(&StateNetns {
                    state: state.to_string(),
                    netns: netns.to_string(),
                })
                .set(n);
        }
        self.set_pod_sockets(by_pod);
        self.listen_port_sockets.clear();
        let mut ports: Vec<(u16, i64)> = Vec::new();
        for key in &listening {
            let n = per_port.get(key).copied().unwrap_or(0);
            match ports.iter_mut().find(|(p, _)| *p == key.1) {
                Some((_, total)) => *total += n,
                None => ports.push((key.1, n)),
            }
        }
        ports.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        for (i, (port, n)) in ports.into_iter().enumerate() {
            let label = if i < MAX_PORTS {
                port.to_string()
            } else {
                "other".to_string()
            };
            self.listen_port_sockets
                .get_or_create(&Port { port: label })
                .inc_by(n);
        }
        let seen = &mut self.seen;
        if let Some(c) = feed.counters() {
            for (i, &n) in c.retransmits_by_kind.iter().enumerate() {
                let name = sockstat_common::retransmit::NAMES[i + 1];
                let counter = self
                    .retransmits
                    .get_or_create(&RetransmitType { r#type: name });
                advance(seen, &counter, name, n);
            }
            advance(seen, &self.lost, "lost", c.lost);
            let inn = Direction { direction: "in" };
            advance(
                seen,
                &self.resets.get_or_create(&inn),
                "resets_in",
                c.resets_received,
            );
            let out = Direction { direction: "out" };
            advance(
                seen,
                &self.resets.get_or_create(&out),
                "resets_out",
                c.resets_sent,
            );
            advance(
                seen,
                &self.closed_port_resets,
                "closed_port_resets",
                c.resets_no_socket,
            );
            advance(
                seen,
                &self.time_wait_overflows,
                "tw_overflows",
                c.tw_overflows,
            );
        }
        if let Some(probe) = feed.probe() {
            let drops = probe.drops_by_reason().unwrap_or_else(|e| {
                log::warn!("reading the drop counts: {e}");
                Vec::new()
            });
            for (reason, total) in drops {
                let before = self.seen_drops.insert(reason, total).unwrap_or(0);
                let label = DropReason {
                    reason: probe.drop_slot_name(reason).into_owned(),
                };
                self.drops
                    .get_or_create(&label)
                    .inc_by(total.saturating_sub(before));
            }
        }
        advance(seen, &self.repairs, "repairs", feed.tracker_stats().repairs);
        if let Some(t) = feed.table_memory() {
            self.table_sockets.set(t.sockets as i64);
            self.table_bytes.set(t.bytes as i64);
        }
        for ((o, n), total) in feed.edge_counts() {
            let before = self.seen_edges.insert((o, n), total).unwrap_or(0);
            self.transitions
                .get_or_create(&Edge {
                    from: ReportedState::from_kernel(o).to_string(),
                    to: ReportedState::from_kernel(n).to_string(),
                })
                .inc_by(total.saturating_sub(before));
        }
    }

    /// The timelines' running totals of what did not fit (`ConnLog::overflow`).
    pub fn timelines(&mut self, left_out: u64, evicted: u64) {
        advance(
            &mut self.seen,
            &self.timeline_events_left_out,
            "timeline_left_out",
            left_out,
        );
        advance(
            &mut self.seen,
            &self.timelines_evicted,
            "timelines_evicted",
            evicted,
        );
    }

    /// The recorder's series (`serve --record`), each outcome at 0 from the first scrape;
    /// the spool's only with a ClickHouse sink.
    pub fn enable_recording(&mut self, sink: bool) {
        let registry = self.registry.sub_registry_with_prefix("record");
        registry.register(
            "rows",
            "Recorded connections by outcome: committed (to the store, or to the spool), dropped_queue (the writer fell behind), failed (a write failed), and with a sink sent (ClickHouse has them) and dropped_spool (past --spool-max)",
            self.record_rows.clone(),
        );
        let mut outcomes = vec!["committed", "dropped_queue", "failed"];
        if sink {
            registry.register(
                "spool_rows",
                "Recorded connections waiting in the spool for ClickHouse",
                self.record_spool_rows.clone(),
            );
            registry.register(
                "spool_bytes",
                "Bytes waiting in the spool for ClickHouse",
                self.record_spool_bytes.clone(),
            );
            outcomes.extend(["sent", "dropped_spool"]);
        }
        for outcome in outcomes {
            drop(self.record_rows.get_or_create(&Outcome { outcome }));
        }
    }

    /// What the recorder has done so far.
    pub fn recording(&mut self, p: &crate::history::recorder::Progress) {
        let w = &p.written;
        let mut totals = vec![
            ("committed", "record_committed", w.rows),
            ("dropped_queue", "record_dropped_queue", p.queue_dropped),
            ("failed", "record_failed", w.failed),
        ];
        if let Some(s) = w.shipped {
            totals.extend([
                ("sent", "record_sent", s.rows),
                ("dropped_spool", "record_dropped_spool", s.dropped),
            ]);
            self.record_spool_rows.set(s.waiting as i64);
            self.record_spool_bytes.set(s.waiting_bytes as i64);
        }
        for (outcome, key, total) in totals {
            let counter = self.record_rows.get_or_create(&Outcome { outcome }).clone();
            advance(&mut self.seen, &counter, key, total);
        }
    }

    /// OpenMetrics text, as prometheus-client writes it.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Moves `counter` by how much the running total `now` grew since the last refresh.
fn advance(seen: &mut HashMap<&'static str, u64>, counter: &Counter, key: &'static str, now: u64) {
    let before = seen.insert(key, now).unwrap_or(0);
    counter.inc_by(now.saturating_sub(before));
}

/// The classic Prometheus text format (0.0.4) from OpenMetrics text: a counter family `x`
/// is announced as `x_total` there (its samples already are), and there is no `# EOF`.
/// For scrapers that do not ask for OpenMetrics, and for `promtool check metrics`.
pub fn to_classic_text(openmetrics: &str) -> String {
    let counters: Vec<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len() + 64);
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(&name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_beyond_the_cap_are_summed_under_other() {
        let mut m = Metrics::new("test", Default::default());
        let estab = ReportedState::Known(TcpState::Established);
        let mut by_pod = HashMap::new();
        // Pod i has i + 1 sockets: the MAX_PODS busiest keep their names.
        for i in 0..MAX_PODS + 10 {
            let w = std::sync::Arc::new(Workload {
                pod: Some(format!("web-{i}")),
                namespace: Some("shop".into()),
                ..Workload::default()
            });
            by_pod.insert((w, estab), i as i64 + 1);
        }
        m.set_pod_sockets(by_pod);
        let text = m.encode();
        let series: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("sockstat_pod_sockets{"))
            .collect();
        assert_eq!(series.len(), MAX_PODS + 1, "{series:?}");
        // The ten smallest (1 to 10 sockets) went to "other": 55 sockets.
        assert!(
            series.contains(
                &"sockstat_pod_sockets{namespace=\"other\",pod=\"other\",state=\"ESTAB\"} 55"
            ),
            "{series:?}"
        );
        let top = format!(
            "sockstat_pod_sockets{{namespace=\"shop\",pod=\"web-{}\",state=\"ESTAB\"}} {}",
            MAX_PODS + 9,
            MAX_PODS + 10
        );
        assert!(series.contains(&top.as_str()), "{series:?}");
    }

    #[test]
    fn series_known_in_advance_are_there_at_zero_from_the_first_scrape() {
        let text = Metrics::new("test", Default::default()).encode();
        let zero = |series: &str| {
            assert!(
                text.lines().any(|l| l == format!("{series} 0")),
                "{series} 0 missing from:\n{text}"
            );
        };
        for &(from, to) in &sockstat_common::tcp_state::LINUX_EDGES {
            zero(&format!(
                "sockstat_transitions_total{{from=\"{}\",to=\"{}\"}}",
                ReportedState::from_kernel(from),
                ReportedState::from_kernel(to)
            ));
        }
        for errno in [
            "ECONNREFUSED",
            "ETIMEDOUT",
            "EADDRNOTAVAIL",
            "EHOSTUNREACH",
            "none",
        ] {
            zero(&format!(
                "sockstat_connect_errors_total{{errno=\"{errno}\"}}"
            ));
        }
        for cause in ["reused", "rst-in", "killed"] {
            zero(&format!(
                "sockstat_time_wait_early_ends_total{{cause=\"{cause}\"}}"
            ));
        }
        for r#type in ["syn", "syn-ack", "rto", "tlp", "recovery"] {
            zero(&format!("sockstat_retransmits_total{{type=\"{type}\"}}"));
        }
        zero("sockstat_resets_total{direction=\"in\"}");
        zero("sockstat_resets_total{direction=\"out\"}");
        // 24 edges, 14 connect errors.
        let count = |prefix: &str| text.lines().filter(|l| l.starts_with(prefix)).count();
        assert_eq!(count("sockstat_transitions_total{"), 24);
        assert_eq!(count("sockstat_connect_errors_total{"), 14);
    }

    #[test]
    fn classic_text_names_counters_by_their_samples() {
        let om = "# HELP x Things.\n# TYPE x counter\nx_total 3\n# HELP g G.\n# TYPE g gauge\ng 1\n# EOF\n";
        assert_eq!(
            to_classic_text(om),
            "# HELP x_total Things.\n# TYPE x_total counter\nx_total 3\n# HELP g G.\n# TYPE g gauge\ng 1\n"
        );
    }
}
