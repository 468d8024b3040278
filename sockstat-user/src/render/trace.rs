//! `sockstat trace` output: aligned text lines or NDJSON, one record per transition (or per
//! finished connection with `--lifetimes`).
use std::io::{self, Write};

use chrono::{DateTime, Local, SecondsFormat, Utc};
use serde::Serialize;

use crate::{
    ebpf::{EdgeCount, KernelCounters, ring::RingCounts},
    live::{Lifetime, Owner, Source, TrackerStats, Transition, clock::WallClock},
    tcp::ReportedState,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceFormat {
    Text,
    Json,
}

const HEADER: &str = "TIME         PID     COMM             LOCAL                    REMOTE                   TRANSITION                  PREV_US    CAUSE";
const LIFETIME_HEADER: &str = "TIME         PID     COMM             LOCAL                    REMOTE                   DURATION_MS  BYTES_ACKED  BYTES_RECV  RTT_US   RETRANS  CAUSE";

pub struct TracePrinter {
    format: TraceFormat,
    clock: WallClock,
    /// With --all-netns: namespace labels (ip netns name or "pid N", plus the container) by
    /// inode, printed in a NETNS column and as `netns_name`.
    netns_names: Option<std::collections::HashMap<u32, String>>,
}

/// The NDJSON record of a transition. Keys are a stable interface: later versions add keys,
/// never rename.
#[derive(Serialize)]
struct JsonTransition<'a> {
    ts: String,
    ts_ns: u64,
    cookie: u64,
    netns: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    netns_name: Option<String>,
    pid: Option<u32>,
    comm: Option<&'a str>,
    owner_source: &'static str,
    family: &'static str,
    local: String,
    remote: String,
    old: String,
    new: String,
    prev_state_ns: Option<u64>,
    source: &'static str,
    cause: Option<String>,
}

/// The NDJSON record of a finished connection (`--lifetimes`).
#[derive(Serialize)]
struct JsonLifetime<'a> {
    ts: String,
    ts_ns: u64,
    cookie: u64,
    netns: u32,
    pid: Option<u32>,
    comm: Option<&'a str>,
    owner_source: &'static str,
    family: &'static str,
    local: String,
    remote: String,
    duration_ns: Option<u64>,
    bytes_acked: u64,
    bytes_received: u64,
    handshake_rtt_ns: Option<u64>,
    retransmits: u32,
    cause: Option<String>,
}

impl TracePrinter {
    pub fn new(format: TraceFormat, clock: WallClock) -> Self {
        Self {
            format,
            clock,
            netns_names: None,
        }
    }

    /// Labels transitions with their namespace (`--all-netns`); called again as namespaces
    /// come and go.
    pub fn set_netns_names(&mut self, names: std::collections::HashMap<u32, String>) {
        self.netns_names = Some(names);
    }

    fn netns_name(&self, netns: u32) -> Option<String> {
        let names = self.netns_names.as_ref()?;
        Some(
            names
                .get(&netns)
                .cloned()
                .unwrap_or_else(|| format!("netns {netns}")),
        )
    }

    /// The column header (text only).
    pub fn write_header(&self, out: &mut impl Write, lifetimes: bool) -> io::Result<()> {
        match self.format {
            TraceFormat::Text => {
                let header = if lifetimes { LIFETIME_HEADER } else { HEADER };
                match self.netns_names {
                    Some(_) => writeln!(out, "{:<12} {:<24} {}", "TIME", "NETNS", &header[13..]),
                    None => writeln!(out, "{header}"),
                }
            }
            TraceFormat::Json => Ok(()),
        }
    }

    fn local_time(&self, ts_ns: u64) -> String {
        let time: DateTime<Local> = self.clock.to_system_time(ts_ns).into();
        time.format("%H:%M:%S%.3f").to_string()
    }

    fn rfc3339(&self, ts_ns: u64) -> String {
        let ts: DateTime<Utc> = self.clock.to_system_time(ts_ns).into();
        ts.to_rfc3339_opts(SecondsFormat::Nanos, true)
    }

    /// The columns every text line starts with: time (and the namespace, with
    /// --all-netns), owner, addresses.
    fn write_lead(
        &self,
        out: &mut impl Write,
        ts_ns: u64,
        netns: &str,
        owner: &Owner,
        local: std::net::SocketAddr,
        remote: std::net::SocketAddr,
    ) -> io::Result<()> {
        let pid = owner.pid.map_or_else(|| "-".to_string(), |p| p.to_string());
        let comm = owner.comm.as_ref().map_or("-", |c| c.as_str());
        write!(
            out,
            "{}{netns} {pid:<7} {comm:<16} {:<24} {:<24}",
            self.local_time(ts_ns),
            local.to_string(),
            remote.to_string(),
        )
    }

    pub fn write(&self, out: &mut impl Write, t: &Transition) -> io::Result<()> {
        match self.format {
            TraceFormat::Text => {
                let mut transition = format!("{} -> {}", t.old, t.new);
                if t.source == Source::Synthesized {
                    transition.push_str(" (synthesized)");
                }
                let prev = t
                    .prev_state_ns
                    .map_or_else(String::new, |ns| (ns / 1_000).to_string());
                let cause = t.cause.map_or_else(|| "-".to_string(), |c| c.name());
                let netns = self
                    .netns_name(t.netns)
                    .map_or_else(String::new, |n| format!(" {:<24}", n.replace(' ', "_")));
                self.write_lead(out, t.ts_ns, &netns, &t.owner, t.local, t.remote)?;
                writeln!(out, " {transition:<27} {prev:<10} {cause}")
            }
            TraceFormat::Json => {
                let record = JsonTransition {
                    ts: self.rfc3339(t.ts_ns),
                    ts_ns: t.ts_ns,
                    cookie: t.cookie,
                    netns: t.netns,
                    netns_name: self.netns_name(t.netns),
                    pid: t.owner.pid,
                    comm: t.owner.comm.as_ref().map(|c| c.as_str()),
                    owner_source: t.owner.source.name(),
                    family: t.family.name(),
                    local: t.local.to_string(),
                    remote: t.remote.to_string(),
                    old: t.old.to_string(),
                    new: t.new.to_string(),
                    prev_state_ns: t.prev_state_ns,
                    source: t.source.name(),
                    cause: t.cause.map(|c| c.name()),
                };
                super::json_line(out, &record)
            }
        }
    }

    pub fn write_lifetime(&self, out: &mut impl Write, l: &Lifetime) -> io::Result<()> {
        match self.format {
            TraceFormat::Text => {
                let opt = |v: Option<u64>, div: u64| {
                    v.map_or_else(|| "-".to_string(), |x| (x / div).to_string())
                };
                self.write_lead(out, l.ts_ns, "", &l.owner, l.local, l.remote)?;
                writeln!(
                    out,
                    " {:<12} {:<12} {:<11} {:<8} {:<8} {}",
                    opt(l.duration_ns, 1_000_000),
                    l.bytes_acked,
                    l.bytes_received,
                    opt(l.handshake_ns, 1_000),
                    l.retransmits,
                    l.cause.map_or_else(|| "-".to_string(), |c| c.name()),
                )
            }
            TraceFormat::Json => {
                let record = JsonLifetime {
                    ts: self.rfc3339(l.ts_ns),
                    ts_ns: l.ts_ns,
                    cookie: l.cookie,
                    netns: l.netns,
                    pid: l.owner.pid,
                    comm: l.owner.comm.as_ref().map(|c| c.as_str()),
                    owner_source: l.owner.source.name(),
                    family: l.family.name(),
                    local: l.local.to_string(),
                    remote: l.remote.to_string(),
                    duration_ns: l.duration_ns,
                    bytes_acked: l.bytes_acked,
                    bytes_received: l.bytes_received,
                    handshake_rtt_ns: l.handshake_ns,
                    retransmits: l.retransmits,
                    cause: l.cause.map(|c| c.name()),
                };
                super::json_line(out, &record)
            }
        }
    }
}

/// What a trace ends with: the kernel's counts and what user space saw.
pub struct TraceEnd {
    /// The kernel's counters, or why they could not be read (never shown as 0).
    pub counters: Result<KernelCounters, String>,
    /// Runs the kernel skipped, per program.
    pub missed: Vec<(String, u64)>,
    pub edges: Vec<EdgeCount>,
    pub ring: RingCounts,
    pub printed: u64,
    pub tracker: TrackerStats,
}

fn state_name(n: u8) -> String {
    ReportedState::from_kernel(n).to_string()
}

impl TraceEnd {
    /// `--count-only`: the kernel's per-edge counts.
    pub fn write_edges(&self, out: &mut impl Write, json: bool) -> io::Result<()> {
        let counters = self.counters.as_ref().ok();
        if json {
            let list: Vec<serde_json::Value> = self
                .edges
                .iter()
                .map(|((o, n), c)| {
                    serde_json::json!({"old": state_name(*o), "new": state_name(*n), "count": c})
                })
                .collect();
            // null, never 0, when the counters could not be read.
            let v = serde_json::json!({
                "edges": list,
                "lost": counters.map(|c| c.lost),
                "missed_runs": counters.map(|c| c.missed_runs),
            });
            super::json_line(out, &v)
        } else {
            writeln!(out, "{:<28} COUNT", "TRANSITION")?;
            for ((o, n), c) in &self.edges {
                writeln!(
                    out,
                    "{:<28} {c}",
                    format!("{} -> {}", state_name(*o), state_name(*n))
                )?;
            }
            Ok(())
        }
    }

    /// The closing line on stderr.
    pub fn summary(&self) -> String {
        let stats = &self.tracker;
        let transitions: u64 = self.edges.iter().map(|(_, c)| c).sum();
        let per_edge: Vec<String> = self
            .edges
            .iter()
            .map(|((o, n), c)| format!("{}->{}={c}", state_name(*o), state_name(*n)))
            .collect();
        // Rare enough to be named only when it happened.
        let unresolved = match stats.unresolved_opens {
            0 => String::new(),
            n => format!(", {n} passive opens whose child vanished before it had an identity"),
        };
        format!(
            "sockstat: {} events seen, {} printed, {}, {} undecodable; {} transitions counted in the kernel (exact but for the skipped runs); {} synthesized, {} repaired by reconcile, {} evicted{unresolved}; edges: {}",
            self.ring.decoded,
            self.printed,
            self.kernel_losses(),
            self.ring.undecodable,
            transitions,
            stats.synthesized,
            stats.repairs,
            stats.evicted,
            per_edge.join(" ")
        )
    }

    fn kernel_losses(&self) -> String {
        let k = match &self.counters {
            Err(e) => return format!("lost and skipped runs unknown ({e})"),
            Ok(k) => k,
        };
        let by_hook: Vec<String> = self
            .missed
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        ebpf::events::{from_raw, tests::raw_v4},
        live::{Output, Tracker},
    };
    use sockstat_common::{flags, owner_source, tcp_state};

    fn sample() -> Vec<Output> {
        let mut tracker = Tracker::default();
        let mut out = Vec::new();
        let mut raw = raw_v4();
        raw.old_state = tcp_state::CLOSE;
        raw.new_state = tcp_state::SYN_SENT;
        tracker.apply(&from_raw(&raw).unwrap(), &mut out);
        raw.ts_ns += 153_400;
        raw.old_state = tcp_state::SYN_SENT;
        raw.new_state = tcp_state::ESTABLISHED;
        raw.flags &= !flags::TASK_OWNS_SOCKET;
        raw.owner_source = owner_source::UNKNOWN;
        tracker.apply(&from_raw(&raw).unwrap(), &mut out);
        let mut raw6 = raw_v4();
        raw6.family = 10;
        raw6.cookie = 7;
        raw6.saddr = std::net::Ipv6Addr::LOCALHOST.octets();
        raw6.daddr = std::net::Ipv6Addr::LOCALHOST.octets();
        raw6.old_state = tcp_state::FIN_WAIT2;
        raw6.new_state = tcp_state::CLOSE;
        // The peer's FIN arrived: a real TIME-WAIT.
        raw6.flags |= flags::PEER_FIN;
        raw6.bytes_acked = 5;
        raw6.bytes_received = 9;
        tracker.apply(&from_raw(&raw6).unwrap(), &mut out);
        out
    }

    fn render(format: TraceFormat, lifetimes: bool) -> String {
        // 2023-11-14T22:13:20Z at monotonic 0; UTC so the golden text does not depend on TZ.
        let printer =
            TracePrinter::new(format, WallClock::with_offset_ns(1_700_000_000_000_000_000));
        let mut out = Vec::new();
        printer.write_header(&mut out, lifetimes).unwrap();
        for o in sample() {
            match o {
                Output::Transition(t) if !lifetimes => printer.write(&mut out, &t).unwrap(),
                Output::Lifetime(l) if lifetimes => printer.write_lifetime(&mut out, &l).unwrap(),
                _ => {}
            }
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn golden_json() {
        let expected = r#"{"ts":"2023-11-14T22:13:21.000000123Z","ts_ns":1000000123,"cookie":4242,"netns":4026531840,"pid":100,"comm":"curl","owner_source":"task","family":"inet","local":"127.0.0.1:40000","remote":"127.0.0.2:8080","old":"CLOSE","new":"SYN-SENT","prev_state_ns":null,"source":"kernel","cause":null}
{"ts":"2023-11-14T22:13:21.000153523Z","ts_ns":1000153523,"cookie":4242,"netns":4026531840,"pid":100,"comm":"curl","owner_source":"cached","family":"inet","local":"127.0.0.1:40000","remote":"127.0.0.2:8080","old":"SYN-SENT","new":"ESTAB","prev_state_ns":153400,"source":"kernel","cause":null}
{"ts":"2023-11-14T22:13:21.000000123Z","ts_ns":1000000123,"cookie":7,"netns":4026531840,"pid":100,"comm":"curl","owner_source":"task","family":"inet6","local":"[::1]:40000","remote":"[::1]:8080","old":"FIN-WAIT-2","new":"TIME-WAIT","prev_state_ns":null,"source":"synthesized","cause":"fin"}
"#;
        assert_eq!(render(TraceFormat::Json, false), expected);
    }

    #[test]
    fn golden_text() {
        // SAFETY: set before any other thread in this test binary reads TZ for formatting;
        // every test that formats local time wants UTC.
        unsafe { std::env::set_var("TZ", "UTC") };
        let expected = "\
TIME         PID     COMM             LOCAL                    REMOTE                   TRANSITION                  PREV_US    CAUSE
22:13:21.000 100     curl             127.0.0.1:40000          127.0.0.2:8080           CLOSE -> SYN-SENT                      -
22:13:21.000 100     curl             127.0.0.1:40000          127.0.0.2:8080           SYN-SENT -> ESTAB           153        -
22:13:21.000 100     curl             [::1]:40000              [::1]:8080               FIN-WAIT-2 -> TIME-WAIT (synthesized)            fin
";
        assert_eq!(render(TraceFormat::Text, false), expected);
    }

    /// The counters include sequence space: the FIN this side sent (acked) and the FIN it
    /// received are taken off, so the bytes are data bytes.
    #[test]
    fn golden_lifetime_json() {
        let expected = r#"{"ts":"2023-11-14T22:13:21.000000123Z","ts_ns":1000000123,"cookie":7,"netns":4026531840,"pid":100,"comm":"curl","owner_source":"task","family":"inet6","local":"[::1]:40000","remote":"[::1]:8080","duration_ns":null,"bytes_acked":4,"bytes_received":8,"handshake_rtt_ns":null,"retransmits":0,"cause":"fin"}
"#;
        assert_eq!(render(TraceFormat::Json, true), expected);
    }
}
