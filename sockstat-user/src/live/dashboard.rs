//! What `sockstat top` shows, computed without I/O: state counts with a minute of history,
//! per-edge counts and rates, churn, top talkers, the latest events. Fed with transitions as
//! they happen and with a view of every socket once per interval; read as a [`Snapshot`]
//! (the same value is drawn on screen and printed by `--once --json`).
use std::{
    collections::{HashMap, VecDeque},
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use serde::Serialize;

use super::{Cause, Reset, ResetDirection, Retransmit, Transition};
use crate::{
    procs::workload::WorkloadFilter,
    tcp::{ReportedState, TcpState},
};

/// The states the dashboard counts.
pub const SHOWN_STATES: [TcpState; 10] = TcpState::SHOWN;

/// Seconds of history behind each sparkline.
pub const HISTORY_SECS: f64 = 60.0;
/// Seconds over which churn per address, port and process is measured.
const CHURN_SECS: f64 = 10.0;
const RECENT_EVENTS: usize = 200;
const TOP_ROWS: usize = 10;
/// Connections whose retransmissions are tallied at most.
const RETRANSMITTING_CAP: usize = 4096;

/// One socket, as a sample sees it.
pub struct SockView<'a> {
    pub state: ReportedState,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub netns: u32,
    pub owner: Option<(u32, &'a str)>,
    /// When it entered `state` (monotonic ns), where the live table saw it.
    pub since_ns: Option<u64>,
    /// Its pod (`namespace/pod`) or container by name, where the caller knows it.
    pub pod: Option<Arc<str>>,
}

/// What kind of source the numbers come from; shown in the header.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum DataSource {
    /// Kernel events: every transition, per-edge data. `missing_hooks`: cause tracepoints
    /// this kernel would not attach (their consequences were printed at start).
    Ebpf {
        hook: String,
        missing_hooks: Vec<String>,
    },
    /// sock_diag dumps each interval: states and counts only.
    Polling { reason: String },
    /// `top --replay`: recorded state changes, as of a moment.
    Recorded { from: String, at: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SortBy {
    Connections,
    Churn,
}

impl SortBy {
    pub fn next(self) -> Self {
        match self {
            SortBy::Connections => SortBy::Churn,
            SortBy::Churn => SortBy::Connections,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SortBy::Connections => "connections",
            SortBy::Churn => "churn",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StateRow {
    pub state: &'static str,
    pub count: u64,
    /// One value per interval, oldest first, covering the last minute.
    pub history: Vec<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EdgeRow {
    pub from: String,
    pub to: String,
    /// Since `top` started.
    pub count: u64,
    /// Over the last interval, per second.
    pub rate: f64,
    /// Fired during the last interval.
    pub lit: bool,
    #[serde(skip)]
    pub key: (u8, u8),
}

/// Per-second rates over the last interval; `None` where the source cannot tell (polling).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Rates {
    pub transitions: Option<f64>,
    pub syn_sent: Option<f64>,
    pub time_wait: Option<f64>,
    pub connect_errors: Option<f64>,
    /// Connects refused: SYN-SENT -> CLOSE by an RST (a closed port over there).
    pub refused: Option<f64>,
    /// Every RST received or sent, as the kernel's reset hooks see them (closed ports
    /// included in `resets_out`).
    pub resets_in: Option<f64>,
    pub resets_out: Option<f64>,
    /// RSTs this host sent answering segments to its closed ports.
    pub closed_port_resets: Option<f64>,
    /// Segments retransmitted (every type), and TCP segments the kernel dropped (every
    /// reason, from its counters).
    pub retransmits: Option<f64>,
    pub drops: Option<f64>,
}

/// A drop reason's segments.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DropRow {
    pub reason: String,
    /// Since `top` started.
    pub count: u64,
    /// Over the last interval, per second.
    pub rate: f64,
}

/// A connection's retransmissions since `top` started.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RetransmitRow {
    pub local: String,
    pub remote: String,
    pub process: String,
    pub count: u64,
}

/// A closed port that answered with an RST: one of ours (`*:PORT`, someone connected to or
/// scanned it) or a remote one a connect from here was refused by (`ADDR:PORT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ClosedPort {
    Here(u16),
    There(SocketAddr),
}

impl std::fmt::Display for ClosedPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClosedPort::Here(port) => write!(f, "*:{port}"),
            ClosedPort::There(addr) => write!(f, "{addr}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClosedPortRow {
    /// `*:PORT` for a port of this host, `ADDR:PORT` for a remote one.
    pub port: String,
    /// RSTs (or refused connects) since `top` started.
    pub count: u64,
    /// Over the last interval, per second.
    pub rate: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TopRow {
    pub key: String,
    pub connections: u64,
    /// Transitions per second over the last ten seconds.
    pub churn: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EventRow {
    /// Seconds since `top` started.
    pub t: f64,
    pub from: String,
    pub to: String,
    pub local: String,
    pub remote: String,
    pub process: String,
    pub cause: String,
    pub synthesized: bool,
}

/// Everything on one screen, as numbers.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Snapshot {
    pub source: DataSource,
    pub filter: String,
    /// `--pod`, `--k8s-namespace`, `--container`: null when none is given.
    pub workload: Option<WorkloadFilter>,
    pub interval_s: f64,
    pub paused: bool,
    pub total: u64,
    pub states: Vec<StateRow>,
    pub rates: Rates,
    pub edges: Vec<EdgeRow>,
    pub sort: SortBy,
    pub top_remote: Vec<TopRow>,
    pub top_local_ports: Vec<TopRow>,
    pub top_processes: Vec<TopRow>,
    /// Pods (`namespace/pod`) and other containers by name: empty where none is known.
    pub top_pods: Vec<TopRow>,
    /// Closed ports that answered with an RST, most hit first: the shape of a port scan.
    pub closed_ports: Vec<ClosedPortRow>,
    /// The connections that retransmitted most, and the drop reasons most seen.
    pub retransmitting: Vec<RetransmitRow>,
    pub drops: Vec<DropRow>,
    /// Ephemeral-port headroom of the destinations nearest exhaustion.
    pub ports: Vec<crate::report::ports::PortHeadroom>,
    pub events: Vec<EventRow>,
    /// Events the ring could not take; `None` when the kernel's counters could not be read
    /// (never shown as 0).
    pub lost_events: Option<u64>,
    /// Kernel runs skipped because a hook re-entered on its CPU: not in any count. `None`
    /// when unreadable.
    pub missed_runs: Option<u64>,
    /// Namespaces (`--all-netns`) that could not be entered, with why: their sockets are
    /// not in any count.
    pub skipped_netns: Vec<String>,
    pub reconcile_repairs: u64,
    pub synthesized: u64,
    pub alerts: Vec<crate::alert::AlertStatus>,
}

impl Snapshot {
    /// The names `--alert` accepts: each state's count (ss spelling, lower case), `total`,
    /// rates as `NAME/s`, `lost` and `missed`.
    pub fn metric_names() -> Vec<&'static str> {
        let mut names: Vec<&'static str> = SHOWN_STATES.iter().map(|s| metric_name(*s)).collect();
        names.extend([
            "total",
            "transitions/s",
            "syn-sent/s",
            "time-wait/s",
            "connect-errors/s",
            "refused/s",
            "resets/s",
            "closed-port-resets/s",
            "retransmits/s",
            "drops/s",
            "port-exhaustion-seconds",
            "ports-available",
            "lost",
            "missed",
        ]);
        names
    }

    /// The value of a metric named as in [`Snapshot::metric_names`].
    pub fn metric(&self, name: &str) -> Option<f64> {
        let r = &self.rates;
        Some(match name {
            "total" => self.total as f64,
            "transitions/s" => r.transitions?,
            "syn-sent/s" => r.syn_sent?,
            "time-wait/s" => r.time_wait?,
            "connect-errors/s" => r.connect_errors?,
            "refused/s" => r.refused?,
            "resets/s" => r.resets_in? + r.resets_out?,
            "closed-port-resets/s" => r.closed_port_resets?,
            "retransmits/s" => r.retransmits?,
            "drops/s" => r.drops?,
            "port-exhaustion-seconds" => crate::report::ports::soonest_exhaustion(&self.ports),
            "ports-available" => crate::report::ports::fewest_available(&self.ports),
            "lost" => self.lost_events? as f64,
            "missed" => self.missed_runs? as f64,
            state => {
                let s = SHOWN_STATES.iter().find(|s| metric_name(**s) == state)?;
                self.states
                    .iter()
                    .find(|row| row.state == s.ss_name())?
                    .count as f64
            }
        })
    }
}

fn metric_name(s: TcpState) -> &'static str {
    if SHOWN_STATES.contains(&s) {
        s.lower_name()
    } else {
        "other"
    }
}

/// Counts in the interval being measured.
#[derive(Default)]
struct IntervalCounts {
    edges: HashMap<(u8, u8), u64>,
    transitions: u64,
    connect_errors: u64,
    refused: u64,
    resets_in: u64,
    resets_out: u64,
    closed_port_resets: u64,
    retransmits: u64,
    closed_ports: HashMap<ClosedPort, u64>,
    remote: HashMap<IpAddr, u64>,
    port: HashMap<u16, u64>,
    process: HashMap<String, u64>,
    pod: HashMap<Arc<str>, u64>,
}

pub struct Dashboard {
    interval_s: f64,
    per_edge: bool,
    started_ns: u64,
    history: VecDeque<[u64; SHOWN_STATES.len()]>,
    edges_total: HashMap<(u8, u8), u64>,
    closed_ports_total: HashMap<ClosedPort, u64>,
    current: IntervalCounts,
    last: IntervalCounts,
    churn_window: VecDeque<IntervalCounts>,
    recent: VecDeque<Transition>,
    tops: Tops,
    /// Retransmissions per connection (local, remote) since `top` started, with the owner.
    retransmitting: HashMap<(SocketAddr, SocketAddr), (u64, String)>,
    /// The kernel's drop counts by reason: at the last sample, and their rise over the
    /// last interval. `None` until read (polling never has them).
    drops_total: Option<HashMap<String, u64>>,
    drops_last: HashMap<String, u64>,
    ports: Vec<crate::report::ports::PortHeadroom>,
}

#[derive(Default)]
struct Tops {
    remote: HashMap<IpAddr, u64>,
    port: HashMap<u16, u64>,
    process: HashMap<String, u64>,
    pod: HashMap<Arc<str>, u64>,
    total: u64,
}

impl Dashboard {
    /// `per_edge`: whether transitions are observed at all (false when polling).
    pub fn new(interval_s: f64, per_edge: bool, started_ns: u64) -> Self {
        Dashboard {
            interval_s: interval_s.max(0.05),
            per_edge,
            started_ns,
            history: VecDeque::new(),
            edges_total: HashMap::new(),
            closed_ports_total: HashMap::new(),
            current: IntervalCounts::default(),
            last: IntervalCounts::default(),
            churn_window: VecDeque::new(),
            recent: VecDeque::new(),
            tops: Tops::default(),
            retransmitting: HashMap::new(),
            drops_total: None,
            drops_last: HashMap::new(),
            ports: Vec::new(),
        }
    }

    fn history_len(&self) -> usize {
        ((HISTORY_SECS / self.interval_s).ceil() as usize).max(1)
    }

    /// One transition that passed the filter.
    #[cfg(test)]
    pub fn observe(&mut self, t: &Transition) {
        self.observe_in(t, None);
    }

    /// `observe`, for a socket of pod or container `pod` (its group in `top_pods`).
    pub fn observe_in(&mut self, t: &Transition, pod: Option<Arc<str>>) {
        let (old, new) = (t.old.kernel_number(), t.new.kernel_number());
        let c = &mut self.current;
        *c.edges.entry((old, new)).or_default() += 1;
        *self.edges_total.entry((old, new)).or_default() += 1;
        c.transitions += 1;
        if t.old == ReportedState::Known(TcpState::SynSent)
            && t.new == ReportedState::Known(TcpState::Close)
        {
            c.connect_errors += 1;
            if matches!(
                t.cause,
                Some(Cause::RstIn | Cause::Errno(libc::ECONNREFUSED))
            ) {
                c.refused += 1;
                let port = ClosedPort::There(t.remote);
                *c.closed_ports.entry(port).or_default() += 1;
                *self.closed_ports_total.entry(port).or_default() += 1;
            }
        }
        if !t.remote.ip().is_unspecified() {
            *c.remote.entry(t.remote.ip()).or_default() += 1;
        }
        *c.port.entry(t.local.port()).or_default() += 1;
        if let Some(key) = process_key(t.owner.pid, t.owner.comm.as_ref().map(|c| c.as_str())) {
            *c.process.entry(key).or_default() += 1;
        }
        if let Some(pod) = pod {
            *c.pod.entry(pod).or_default() += 1;
        }
        // Kept as is (no heap): only the few shown are formatted, at snapshot time.
        if self.recent.len() == RECENT_EVENTS {
            self.recent.pop_front();
        }
        self.recent.push_back(t.clone());
    }

    /// One RST that passed the filter (resets are counted from the reset hooks, not from
    /// close causes: a refused connect's RST closes no connection that ever was).
    pub fn observe_reset(&mut self, r: &Reset) {
        let c = &mut self.current;
        match r.direction {
            ResetDirection::In => c.resets_in += 1,
            ResetDirection::Out => c.resets_out += 1,
        }
        if r.closed_port {
            c.closed_port_resets += 1;
            let port = ClosedPort::Here(r.local.port());
            *c.closed_ports.entry(port).or_default() += 1;
            *self.closed_ports_total.entry(port).or_default() += 1;
        }
    }

    /// One retransmission that passed the filter.
    pub fn observe_retransmit(&mut self, r: &Retransmit) {
        self.current.retransmits += 1;
        // Bounded: past the cap, connections seen once make room.
        if self.retransmitting.len() >= RETRANSMITTING_CAP {
            self.retransmitting.retain(|_, (n, _)| *n > 1);
        }
        let process =
            process_key(r.owner.pid, r.owner.comm.as_ref().map(|c| c.as_str())).unwrap_or_default();
        let e = self
            .retransmitting
            .entry((r.local, r.remote))
            .or_insert((0, process));
        e.0 += 1;
    }

    /// Port headroom per destination at the end of an interval, soonest exhaustion first;
    /// the first `TOP_ROWS` are kept.
    pub fn sample_ports(&mut self, mut ports: Vec<crate::report::ports::PortHeadroom>) {
        ports.truncate(TOP_ROWS);
        self.ports = ports;
    }

    /// The kernel's drop counts by reason, read at the end of an interval.
    pub fn sample_drops(&mut self, totals: HashMap<String, u64>) {
        if let Some(before) = &self.drops_total {
            self.drops_last = totals
                .iter()
                .map(|(k, &n)| {
                    (
                        k.clone(),
                        n.saturating_sub(before.get(k).copied().unwrap_or(0)),
                    )
                })
                .collect();
        }
        self.drops_total = Some(totals);
    }

    fn event_row(&self, t: &Transition) -> EventRow {
        EventRow {
            t: t.ts_ns.saturating_sub(self.started_ns) as f64 / 1e9,
            from: t.old.to_string(),
            to: t.new.to_string(),
            local: t.local.to_string(),
            remote: t.remote.to_string(),
            process: process_key(t.owner.pid, t.owner.comm.as_ref().map(|c| c.as_str()))
                .unwrap_or_default(),
            cause: t.cause.map(|c| c.name()).unwrap_or_default(),
            synthesized: t.source == super::Source::Synthesized,
        }
    }

    /// Ends an interval: counts every socket (already filtered by the caller) and moves the
    /// interval's transitions into the rates.
    pub fn sample<'a>(&mut self, sockets: impl IntoIterator<Item = SockView<'a>>) {
        let mut counts = [0u64; SHOWN_STATES.len()];
        let mut tops = Tops::default();
        for s in sockets {
            if let ReportedState::Known(state) = s.state
                && let Some(i) = SHOWN_STATES.iter().position(|x| *x == state)
            {
                counts[i] += 1;
            }
            tops.total += 1;
            if s.state == ReportedState::Known(TcpState::Listen) {
                continue;
            }
            if !s.remote.ip().is_unspecified() {
                *tops.remote.entry(s.remote.ip()).or_default() += 1;
            }
            *tops.port.entry(s.local.port()).or_default() += 1;
            if let Some(key) = s
                .owner
                .and_then(|(pid, comm)| process_key(Some(pid), Some(comm)))
            {
                *tops.process.entry(key).or_default() += 1;
            }
            if let Some(pod) = s.pod {
                *tops.pod.entry(pod).or_default() += 1;
            }
        }
        self.tops = tops;
        if self.history.len() == self.history_len() {
            self.history.pop_front();
        }
        self.history.push_back(counts);
        let finished = std::mem::take(&mut self.current);
        let window = ((CHURN_SECS / self.interval_s).ceil() as usize).max(1);
        if self.churn_window.len() == window {
            self.churn_window.pop_front();
        }
        // Only the per-key maps are needed in the window; the rest stays in `last`.
        self.churn_window.push_back(IntervalCounts {
            remote: finished.remote.clone(),
            port: finished.port.clone(),
            process: finished.process.clone(),
            ..IntervalCounts::default()
        });
        self.last = finished;
    }

    pub fn snapshot(&self, ctx: SnapshotContext) -> Snapshot {
        let latest = self.history.back().copied().unwrap_or_default();
        let states = SHOWN_STATES
            .iter()
            .enumerate()
            .map(|(i, s)| StateRow {
                state: s.ss_name(),
                count: latest[i],
                history: self.history.iter().map(|h| h[i]).collect(),
            })
            .collect();
        let per_s = |n: u64| self.per_edge.then_some(n as f64 / self.interval_s);
        let edge_into = |to: TcpState| {
            self.last
                .edges
                .iter()
                .filter(|((_, n), _)| *n == to.kernel_number())
                .map(|(_, c)| *c)
                .sum::<u64>()
        };
        let rates = Rates {
            transitions: per_s(self.last.transitions),
            syn_sent: per_s(edge_into(TcpState::SynSent)),
            time_wait: per_s(edge_into(TcpState::TimeWait)),
            connect_errors: per_s(self.last.connect_errors),
            refused: per_s(self.last.refused),
            resets_in: per_s(self.last.resets_in),
            resets_out: per_s(self.last.resets_out),
            closed_port_resets: per_s(self.last.closed_port_resets),
            retransmits: per_s(self.last.retransmits),
            drops: self
                .drops_total
                .as_ref()
                .map(|_| self.drops_last.values().sum::<u64>() as f64 / self.interval_s),
        };
        let mut retransmitting: Vec<RetransmitRow> = self
            .retransmitting
            .iter()
            .map(|((local, remote), (count, process))| RetransmitRow {
                local: local.to_string(),
                remote: remote.to_string(),
                process: process.clone(),
                count: *count,
            })
            .collect();
        retransmitting.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| (&a.local, &a.remote).cmp(&(&b.local, &b.remote)))
        });
        retransmitting.truncate(TOP_ROWS);
        let mut drops: Vec<DropRow> = self
            .drops_total
            .iter()
            .flatten()
            .map(|(reason, &count)| DropRow {
                reason: reason.clone(),
                count,
                rate: self.drops_last.get(reason).copied().unwrap_or(0) as f64 / self.interval_s,
            })
            .collect();
        drops.sort_by(|a, b| {
            b.rate
                .total_cmp(&a.rate)
                .then(b.count.cmp(&a.count))
                .then_with(|| a.reason.cmp(&b.reason))
        });
        drops.truncate(TOP_ROWS);
        let mut closed_ports: Vec<(ClosedPort, u64)> = self
            .closed_ports_total
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect();
        closed_ports.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let closed_ports = closed_ports
            .into_iter()
            .take(TOP_ROWS)
            .map(|(k, count)| ClosedPortRow {
                port: k.to_string(),
                count,
                rate: self.last.closed_ports.get(&k).copied().unwrap_or(0) as f64 / self.interval_s,
            })
            .collect();
        let mut edges: Vec<EdgeRow> = self
            .edges_total
            .iter()
            .map(|(&(o, n), &count)| {
                let last = self.last.edges.get(&(o, n)).copied().unwrap_or(0);
                EdgeRow {
                    from: ReportedState::from_kernel(o).to_string(),
                    to: ReportedState::from_kernel(n).to_string(),
                    count,
                    rate: last as f64 / self.interval_s,
                    lit: last > 0,
                    key: (o, n),
                }
            })
            .collect();
        edges.sort_by_key(|e| e.key);
        let churn_secs = self.churn_window.len() as f64 * self.interval_s;
        let churn_of = |f: &dyn Fn(&IntervalCounts) -> u64| {
            if churn_secs > 0.0 {
                self.churn_window.iter().map(f).sum::<u64>() as f64 / churn_secs
            } else {
                0.0
            }
        };
        let top_remote = top_rows(
            &self.tops.remote,
            self.churn_window.iter().flat_map(|w| w.remote.keys()),
            |k| churn_of(&|w: &IntervalCounts| w.remote.get(k).copied().unwrap_or(0)),
            |k| k.to_string(),
            ctx.sort,
        );
        let top_local_ports = top_rows(
            &self.tops.port,
            self.churn_window.iter().flat_map(|w| w.port.keys()),
            |k| churn_of(&|w: &IntervalCounts| w.port.get(k).copied().unwrap_or(0)),
            |k| k.to_string(),
            ctx.sort,
        );
        let top_processes = top_rows(
            &self.tops.process,
            self.churn_window.iter().flat_map(|w| w.process.keys()),
            |k| churn_of(&|w: &IntervalCounts| w.process.get(k).copied().unwrap_or(0)),
            Clone::clone,
            ctx.sort,
        );
        let top_pods = top_rows(
            &self.tops.pod,
            self.churn_window.iter().flat_map(|w| w.pod.keys()),
            |k| churn_of(&|w: &IntervalCounts| w.pod.get(k).copied().unwrap_or(0)),
            |k| k.to_string(),
            ctx.sort,
        );
        let mut snap = Snapshot {
            source: ctx.source,
            filter: ctx.filter,
            workload: ctx.workload,
            interval_s: self.interval_s,
            paused: ctx.paused,
            total: self.tops.total,
            states,
            rates,
            edges,
            sort: ctx.sort,
            top_remote,
            top_local_ports,
            top_processes,
            top_pods,
            closed_ports,
            retransmitting,
            drops,
            ports: self.ports.clone(),
            events: self
                .recent
                .iter()
                .rev()
                .take(50)
                .map(|t| self.event_row(t))
                .collect(),
            lost_events: ctx.lost_events,
            missed_runs: ctx.missed_runs,
            skipped_netns: ctx.skipped_netns.clone(),
            reconcile_repairs: ctx.repairs,
            synthesized: ctx.synthesized,
            alerts: Vec::new(),
        };
        snap.alerts = ctx
            .alerts
            .iter()
            .map(|a| a.check(|m| snap.metric(m)))
            .collect();
        snap
    }
}

/// What the dashboard does not know itself.
pub struct SnapshotContext<'a> {
    pub source: DataSource,
    pub filter: String,
    pub workload: Option<WorkloadFilter>,
    pub paused: bool,
    pub sort: SortBy,
    /// `None`: the kernel's counters could not be read.
    pub lost_events: Option<u64>,
    pub missed_runs: Option<u64>,
    pub skipped_netns: Vec<String>,
    pub repairs: u64,
    pub synthesized: u64,
    pub alerts: &'a [crate::alert::Alert],
}

fn process_key(pid: Option<u32>, comm: Option<&str>) -> Option<String> {
    let pid = pid?;
    Some(format!("{}[{pid}]", comm.unwrap_or("?")))
}

/// The busiest keys: by open connections, or by churn; keys seen only in churn count too.
fn top_rows<'k, K: std::hash::Hash + Eq + Clone + Ord + 'k>(
    connections: &HashMap<K, u64>,
    churned: impl Iterator<Item = &'k K>,
    churn: impl Fn(&K) -> f64,
    label: impl Fn(&K) -> String,
    sort: SortBy,
) -> Vec<TopRow> {
    let mut keys: Vec<K> = connections.keys().cloned().collect();
    keys.extend(churned.cloned());
    keys.sort();
    keys.dedup();
    let mut rows: Vec<(K, u64, f64)> = keys
        .into_iter()
        .map(|k| {
            let conns = connections.get(&k).copied().unwrap_or(0);
            let ch = churn(&k);
            (k, conns, ch)
        })
        .collect();
    rows.sort_by(|a, b| {
        let primary = match sort {
            SortBy::Connections => b.1.cmp(&a.1).then(b.2.total_cmp(&a.2)),
            SortBy::Churn => b.2.total_cmp(&a.2).then(b.1.cmp(&a.1)),
        };
        primary.then_with(|| a.0.cmp(&b.0))
    });
    rows.into_iter()
        .take(TOP_ROWS)
        .map(|(k, connections, churn)| TopRow {
            key: label(&k),
            connections,
            churn,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        ebpf::Family,
        live::{Owner, OwnerSource, Source},
    };

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn transition(old: TcpState, new: TcpState, remote: &str, cause: Option<Cause>) -> Transition {
        Transition {
            ts_ns: 2_000_000_000,
            cookie: 1,
            netns: 1,
            family: Family::Inet,
            local: addr("10.0.0.1:40000"),
            remote: addr(remote),
            old: ReportedState::Known(old),
            new: ReportedState::Known(new),
            prev_state_ns: None,
            owner: Owner::known(42, "curl", OwnerSource::Task),
            source: Source::Kernel,
            cause,
        }
    }

    fn ctx(alerts: &[crate::alert::Alert]) -> SnapshotContext<'_> {
        SnapshotContext {
            source: DataSource::Ebpf {
                hook: "tp_btf".into(),
                missing_hooks: Vec::new(),
            },
            filter: String::new(),
            workload: None,
            paused: false,
            sort: SortBy::Connections,
            lost_events: Some(0),
            missed_runs: Some(0),
            skipped_netns: Vec::new(),
            repairs: 0,
            synthesized: 0,
            alerts,
        }
    }

    #[test]
    fn rates_edges_and_counts_come_from_the_last_interval() {
        let mut d = Dashboard::new(0.5, true, 1_000_000_000);
        d.observe(&transition(
            TcpState::Close,
            TcpState::SynSent,
            "10.0.0.2:80",
            None,
        ));
        d.observe(&transition(
            TcpState::SynSent,
            TcpState::Close,
            "10.0.0.2:80",
            Some(Cause::RstIn),
        ));
        d.observe(&transition(
            TcpState::Close,
            TcpState::SynSent,
            "10.0.0.3:80",
            None,
        ));
        // The refused connect's RST arrives (in); a scanner hits closed port 23 here twice.
        let reset = |direction, closed_port: bool, local: &str, remote: &str| Reset {
            ts_ns: 2_000_000_000,
            netns: 1,
            family: Family::Inet,
            local: addr(local),
            remote: addr(remote),
            direction,
            state: (!closed_port).then_some(ReportedState::Known(TcpState::SynSent)),
            closed_port,
            cookie: 0,
            owner: crate::live::Owner::unknown(),
            reason: None,
        };
        d.observe_reset(&reset(
            ResetDirection::In,
            false,
            "10.0.0.1:40000",
            "10.0.0.2:80",
        ));
        for port in [40001, 40002] {
            d.observe_reset(&reset(
                ResetDirection::Out,
                true,
                "10.0.0.1:23",
                &format!("10.0.0.66:{port}"),
            ));
        }
        let remote = addr("10.0.0.9:443");
        d.sample([SockView {
            state: ReportedState::Known(TcpState::Established),
            local: addr("10.0.0.1:5000"),
            remote,
            netns: 1,
            owner: Some((42, "curl")),
            since_ns: None,
            pod: None,
        }]);
        let s = d.snapshot(ctx(&[]));
        assert_eq!(s.rates.transitions, Some(6.0));
        assert_eq!(s.rates.syn_sent, Some(4.0));
        assert_eq!(s.rates.connect_errors, Some(2.0));
        assert_eq!(s.rates.refused, Some(2.0));
        assert_eq!(s.rates.resets_in, Some(2.0));
        assert_eq!(s.rates.resets_out, Some(4.0));
        assert_eq!(s.rates.closed_port_resets, Some(4.0));
        let closed: Vec<(&str, u64, f64)> = s
            .closed_ports
            .iter()
            .map(|r| (r.port.as_str(), r.count, r.rate))
            .collect();
        assert_eq!(closed, [("*:23", 2, 4.0), ("10.0.0.2:80", 1, 2.0)]);
        assert_eq!(s.metric("refused/s"), Some(2.0));
        assert_eq!(s.metric("closed-port-resets/s"), Some(4.0));
        assert_eq!(s.metric("resets/s"), Some(6.0));
        let estab = s.states.iter().find(|r| r.state == "ESTAB").unwrap();
        assert_eq!((estab.count, estab.history.clone()), (1, vec![1]));
        let connect = s.edges.iter().find(|e| e.key == (7, 2)).unwrap();
        assert_eq!((connect.count, connect.rate, connect.lit), (2, 4.0, true));
        // Ten seconds of churn window so far is one interval of 0.5 s.
        assert_eq!(s.top_remote[0].key, "10.0.0.9");
        assert_eq!(s.top_remote[0].connections, 1);
        let churned = s.top_remote.iter().find(|r| r.key == "10.0.0.2").unwrap();
        assert_eq!(churned.churn, 4.0);
        assert_eq!(s.events.len(), 3);
        assert_eq!(s.events[0].remote, "10.0.0.3:80");

        // A quiet interval: edges stay counted but are no longer lit.
        d.sample([]);
        let s = d.snapshot(ctx(&[]));
        let connect = s.edges.iter().find(|e| e.key == (7, 2)).unwrap();
        assert_eq!((connect.count, connect.rate, connect.lit), (2, 0.0, false));
        assert_eq!(s.rates.transitions, Some(0.0));
        let estab = s.states.iter().find(|r| r.state == "ESTAB").unwrap();
        assert_eq!(estab.history, vec![1, 0]);
    }

    #[test]
    fn polling_has_counts_but_no_rates() {
        let mut d = Dashboard::new(1.0, false, 0);
        d.sample([SockView {
            state: ReportedState::Known(TcpState::TimeWait),
            local: addr("127.0.0.1:1"),
            remote: addr("127.0.0.1:2"),
            netns: 1,
            owner: None,
            since_ns: None,
            pod: None,
        }]);
        let alerts =
            [crate::alert::Alert::parse("time-wait >= 1", &Snapshot::metric_names()).unwrap()];
        let s = d.snapshot(ctx(&alerts));
        assert_eq!(s.rates, Rates::default());
        assert_eq!(s.metric("time-wait"), Some(1.0));
        assert_eq!(s.metric("time-wait/s"), None);
        assert!(s.alerts[0].firing);
    }

    #[test]
    fn history_keeps_one_minute() {
        let mut d = Dashboard::new(1.0, true, 0);
        for _ in 0..75 {
            d.sample([]);
        }
        let s = d.snapshot(ctx(&[]));
        assert_eq!(s.states[0].history.len(), 60);
    }

    #[test]
    fn churn_sort_puts_the_busiest_first() {
        let conns: HashMap<u16, u64> = [(80, 10), (443, 1)].into_iter().collect();
        let churned = [443u16, 443, 22];
        let churn = |k: &u16| match k {
            443 => 5.0,
            22 => 1.0,
            _ => 0.0,
        };
        let by_conn = top_rows(
            &conns,
            churned.iter(),
            churn,
            |k| k.to_string(),
            SortBy::Connections,
        );
        assert_eq!(
            by_conn.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(),
            ["80", "443", "22"]
        );
        let by_churn = top_rows(
            &conns,
            churned.iter(),
            churn,
            |k| k.to_string(),
            SortBy::Churn,
        );
        assert_eq!(
            by_churn.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(),
            ["443", "22", "80"]
        );
    }
}
