//! `sockstat trace` output: aligned text lines or NDJSON, one record per transition (or per
//! finished connection with `--lifetimes`).
use std::io::{self, Write};

use chrono::{DateTime, Local, Utc};

use super::line::Line;
use serde::Serialize;

use crate::{
    ebpf::{DropReason, EdgeCount, KernelCounters, ReasonNames, ring::RingCounts},
    live::{
        DroppedSegment, Lifetime, Output, OutputHead, Owner, Reset, ResetDirection, Retransmit,
        RttSample, Source, TableMemory, Timeline, TrackerStats, Transition, clock::WallClock,
    },
    procs::workload::Workload,
    tcp::ReportedState,
};

/// A retransmission's two text columns: `STATE retrans TYPE` and `seq=N len=N`.
fn retransmit_text(r: &Retransmit) -> (String, String) {
    let what = r.what;
    (
        format!("{} retrans {}", what.state, what.kind_name()),
        format!("seq={} len={}", what.seq, what.len),
    )
}

/// An RTT reading's two text columns: `ESTAB rtt` (`ESTAB rtt handshake` for the
/// handshake's) and `rtt=54µs min=36µs cwnd=10 rate=1.2Gbps retrans=0`, in ss -i's terms.
fn rtt_text(r: &RttSample) -> (String, String) {
    let event = if r.handshake {
        "ESTAB rtt handshake"
    } else {
        "ESTAB rtt"
    };
    (event.to_string(), tcp_summary(&r.tcp))
}

/// What `tcp_info` said, in a few words: `rtt=54µs min=36µs cwnd=10 rate=1.2Gbps
/// retrans=0`; readings not taken yet are left out.
fn tcp_summary(tcp: &crate::ebpf::TcpCounters) -> String {
    let us = |v: u32| super::numfmt::duration(u64::from(v) * 1_000);
    let mut parts = Vec::with_capacity(5);
    if let Some(v) = tcp.srtt() {
        parts.push(format!("rtt={}", us(v)));
    }
    if let Some(v) = tcp.min_rtt() {
        parts.push(format!("min={}", us(v)));
    }
    if let Some(v) = tcp.cwnd() {
        parts.push(format!("cwnd={v}"));
    }
    if let Some(v) = tcp.delivery_rate() {
        parts.push(format!("rate={}bps", delivery_rate(v)));
    }
    parts.push(format!("retrans={}", tcp.total_retrans));
    parts.join(" ")
}

/// A delivery rate (bytes a second) in bits a second as ss writes them: `1.2G`.
fn delivery_rate(bytes_per_s: u64) -> String {
    super::numfmt::bandwidth(bytes_per_s as f64 * 8.0, false)
}

/// A listener's counted drops by name: `listen-overflow` when its accept queue was full.
fn listener_drop_reason(overflow: bool) -> &'static str {
    if overflow {
        "listen-overflow"
    } else {
        "listen-drop"
    }
}

/// A TCP header's flags by name, as tcpdump orders them: `SYN,ACK`.
fn tcp_flags(bits: u8) -> String {
    const NAMES: [(u8, &str); 8] = [
        (0x01, "FIN"),
        (0x02, "SYN"),
        (0x04, "RST"),
        (0x08, "PSH"),
        (0x10, "ACK"),
        (0x20, "URG"),
        (0x40, "ECE"),
        (0x80, "CWR"),
    ];
    let names: Vec<&str> = NAMES
        .iter()
        .filter(|(bit, _)| bits & bit != 0)
        .map(|(_, name)| *name)
        .collect();
    names.join(",")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceFormat {
    Text,
    Json,
}

const HEADER: &str = "TIME         PID     COMM             LOCAL                    REMOTE                   TRANSITION                  PREV_US    CAUSE";
const LIFETIME_HEADER: &str = "TIME         PID     COMM             LOCAL                    REMOTE                   DURATION_MS  BYTES_ACKED  BYTES_RECV  HS_RTT_US  RTT_US   MIN_RTT_US  CWND   RATE_BPS  RETRANS  CAUSE";
/// The narrow layout (a terminal narrower than a wide line): two lines per event, each
/// within 80 columns for IPv4 (an IPv6 pair takes a third line).
const NARROW_HEADER: &str =
    "TIME         OWNER                TRANSITION                IN_PREV CAUSE";
const NARROW_LIFETIME_HEADER: &str =
    "TIME         OWNER                DURATION   SENT     RECEIVED  RTT   RETR CAUSE";
/// The CAUSE column, where a WORKLOAD column follows it (`--all-netns`): the longest
/// cause name, ECONNREFUSED, and a little.
const CAUSE_WIDTH: usize = 14;
/// Where the second line (addresses) starts.
const NARROW_INDENT: usize = 13;
/// The width the wide layout needs (a NETNS column adds 25).
const WIDE: usize = HEADER.len() + 16;

pub struct TracePrinter {
    format: TraceFormat,
    clock: WallClock,
    /// With --all-netns: namespace labels (ip netns name or "pid N", plus the container) by
    /// inode, printed in a NETNS column and as `netns_name`.
    netns_names: Option<std::collections::HashMap<u32, String>>,
    /// The terminal is narrower than a wide line: two lines per event, within this width.
    narrow: Option<usize>,
    netns_width: usize,
    /// The last second's formatted prefixes: chrono's formatting per event was a fifth of a
    /// busy trace's CPU, and events come thousands to a second.
    seconds: std::cell::RefCell<SecondPrefixes>,
    /// The text line being built, reused from event to event.
    line: std::cell::RefCell<Line>,
    /// Names of sent resets' and drops' reasons by the kernel's value (`enum sk_rst_reason`,
    /// `enum skb_drop_reason`).
    reset_reasons: ReasonNames,
    drop_reasons: ReasonNames,
}

/// "HH:MM:SS" (local) and "YYYY-MM-DDTHH:MM:SS" (UTC) of one Unix second. Exact to reuse
/// within that second: time zone offsets change only on whole seconds.
#[derive(Default)]
struct SecondPrefixes {
    second: Option<u64>,
    local: String,
    utc: String,
}

/// The NDJSON record of a transition. Keys are a stable interface: later versions add keys,
/// never rename. Text fields are written by their Display straight into the stream (no
/// String per field and event).
#[derive(Serialize)]
struct JsonTransition<'a> {
    ts: Shown<Rfc3339<'a>>,
    ts_ns: u64,
    /// The machine that recorded it (`history --from`).
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<&'a str>,
    cookie: u64,
    netns: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    netns_name: Option<String>,
    pid: Option<u32>,
    comm: Option<&'a str>,
    owner_source: &'static str,
    family: &'static str,
    local: std::net::SocketAddr,
    remote: std::net::SocketAddr,
    old: Shown<ReportedState>,
    new: Shown<ReportedState>,
    prev_state_ns: Option<u64>,
    source: &'static str,
    cause: Option<Shown<crate::live::Cause>>,
    /// Which kind of event (`--events`): "state" here.
    event: &'static str,
    /// The owner's container: container, image, pod, namespace, where known.
    #[serde(flatten)]
    workload: Option<&'a Workload>,
}

/// Serialized as its Display, as a JSON string.
struct Shown<T>(T);

impl<T: std::fmt::Display> Serialize for Shown<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

/// RFC 3339 in UTC with nanoseconds, from the second's cached prefix.
struct Rfc3339<'a> {
    second: std::cell::Ref<'a, SecondPrefixes>,
    nanos: u32,
}

impl std::fmt::Display for Rfc3339<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:09}Z", self.second.utc, self.nanos)
    }
}

/// The keys an NDJSON event other than a transition starts with; stable, as above.
#[derive(Serialize)]
struct JsonEventHead<'a> {
    ts: Shown<Rfc3339<'a>>,
    ts_ns: u64,
    event: &'static str,
    cookie: u64,
    netns: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    netns_name: Option<String>,
    pid: Option<u32>,
    comm: Option<&'a str>,
    owner_source: &'static str,
    family: &'static str,
    local: std::net::SocketAddr,
    remote: std::net::SocketAddr,
}

/// The NDJSON record of a retransmission (`--events retrans`).
#[derive(Serialize)]
struct JsonRetransmit<'a> {
    #[serde(flatten)]
    head: JsonEventHead<'a>,
    state: Shown<ReportedState>,
    r#type: &'static str,
    seq: u32,
    len: u32,
}

/// The NDJSON record of an RST (`--events reset`).
#[derive(Serialize)]
struct JsonReset<'a> {
    #[serde(flatten)]
    head: JsonEventHead<'a>,
    state: Option<Shown<ReportedState>>,
    direction: &'static str,
    closed_port: bool,
    /// A sent reset's reason (6.10+), as the kernel names it: `no-socket`,
    /// `tcp-abort-on-close`, ...; null where the kernel gives none.
    reason: Option<String>,
}

/// The NDJSON record of a dropped segment (`--events drop`).
#[derive(Serialize)]
struct JsonDrop<'a> {
    #[serde(flatten)]
    head: JsonEventHead<'a>,
    /// The socket's state, where the kernel or the live table knew the socket.
    state: Option<Shown<ReportedState>>,
    /// The kernel's drop reason by name (`tcp-csum`, `no-socket`, ...), and its number in
    /// this kernel's `enum skb_drop_reason`; or `listen-overflow` / `listen-drop` where a
    /// listener's drop counter rose (`reason_code` null).
    reason: &'a str,
    reason_code: Option<u32>,
    /// `kernel`: one segment the kernel reported; `counter`: `count` segments, from the
    /// listener's counter.
    source: &'static str,
    count: u32,
    direction: &'static str,
    /// The segment's flags (null for counted drops).
    tcp_flags: Option<String>,
    /// A listener's accept queue and backlog when its counter rose.
    #[serde(skip_serializing_if = "Option::is_none")]
    accept_queue: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    backlog: Option<u32>,
}

/// The NDJSON record of an RTT reading (`--events rtt`).
#[derive(Serialize)]
struct JsonRtt<'a> {
    #[serde(flatten)]
    head: JsonEventHead<'a>,
    state: &'static str,
    /// The handshake's sample (the first the kernel took), or a periodic one.
    handshake: bool,
    #[serde(flatten)]
    tcp: JsonTcpInfo,
    /// The connection's retransmits so far (`tcpi_total_retrans`).
    retransmits: u32,
}

/// What `tcp_info` said of a connection (RTT events, lifetimes). Null: not measured yet.
#[derive(Serialize)]
struct JsonTcpInfo {
    /// Smoothed RTT, µs.
    rtt_us: Option<u32>,
    min_rtt_us: Option<u32>,
    /// Segments.
    cwnd: Option<u32>,
    /// Bits per second, as the listing's `delivery_rate_bps`.
    delivery_rate_bps: Option<u64>,
}

impl JsonTcpInfo {
    fn of(tcp: &crate::ebpf::TcpCounters) -> Self {
        JsonTcpInfo {
            rtt_us: tcp.srtt(),
            min_rtt_us: tcp.min_rtt(),
            cwnd: tcp.cwnd(),
            delivery_rate_bps: tcp.delivery_rate().map(|r| r.saturating_mul(8)),
        }
    }
}

/// The NDJSON record of a connection's timeline (`--timeline`).
#[derive(Serialize)]
struct JsonTimeline<'a> {
    #[serde(flatten)]
    head: JsonEventHead<'a>,
    /// From the first event to the last.
    duration_ns: u64,
    /// False for a connection still open when the trace ended.
    closed: bool,
    /// Events that did not fit (`--timeline-events`).
    left_out: u64,
    events: Vec<serde_json::Value>,
}

/// The NDJSON record of a finished connection (`--lifetimes`).
#[derive(Serialize)]
struct JsonLifetime<'a> {
    ts: String,
    ts_ns: u64,
    /// The machine that recorded it (`history --from`, a fleet's store).
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<&'a str>,
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
    /// Time in SYN-SENT, for connections this host opened.
    connect_ns: Option<u64>,
    /// The kernel's first RTT sample, as the handshake completed (either side).
    handshake_rtt_us: Option<u32>,
    /// At the close.
    #[serde(flatten)]
    tcp: JsonTcpInfo,
    retransmits: u32,
    cause: Option<String>,
    /// The owner's container's names (`history`, which recorded them).
    #[serde(flatten)]
    workload: Option<&'a Workload>,
}

impl TracePrinter {
    pub fn new(format: TraceFormat, clock: WallClock) -> Self {
        Self {
            format,
            clock,
            netns_names: None,
            narrow: None,
            netns_width: 0,
            seconds: Default::default(),
            line: Default::default(),
            reset_reasons: ReasonNames::default(),
            drop_reasons: ReasonNames::default(),
        }
    }

    /// Labels transitions with their namespace (`--all-netns`); called again as namespaces
    /// come and go.
    pub fn set_netns_names(&mut self, names: std::collections::HashMap<u32, String>) {
        // The NETNS column is as wide as the longest name (a container's runs to ~30).
        self.netns_width = names
            .values()
            .map(|n| n.chars().count())
            .max()
            .unwrap_or(0)
            .max("NETNS".len());
        self.netns_names = Some(names);
    }

    /// Names sent resets' and drops' reasons (from the kernel's BTF).
    pub fn set_reasons(&mut self, resets: ReasonNames, drops: ReasonNames) {
        self.reset_reasons = resets;
        self.drop_reasons = drops;
    }

    /// A sent reset's reason by name (its number where BTF has no name for it).
    fn reset_reason(&self, r: &Reset) -> Option<String> {
        let value = r.reason?;
        Some(self.reset_reasons.name(u32::from(value)).into_owned())
    }

    /// Lays text out for a terminal `width` columns wide (`None`: not a terminal, one wide
    /// line per event as scripts expect). Call after `set_netns_names`.
    pub fn set_width(&mut self, width: Option<usize>) {
        let wide = WIDE
            + if self.netns_names.is_some() {
                self.netns_width + 1
            } else {
                0
            };
        self.narrow = width.filter(|w| *w < wide);
    }

    fn netns_name(&self, netns: u32) -> Option<String> {
        let names = self.netns_names.as_ref()?;
        Some(
            names
                .get(&netns)
                .cloned()
                .unwrap_or_else(|| format!("netns:{netns}")),
        )
    }

    /// The column header (text only).
    pub fn write_header(&self, out: &mut impl Write, lifetimes: bool) -> io::Result<()> {
        match self.format {
            TraceFormat::Text if self.narrow.is_some() => {
                let first = if lifetimes {
                    NARROW_LIFETIME_HEADER
                } else {
                    NARROW_HEADER
                };
                let netns = if self.netns_names.is_some() {
                    "  NETNS  WORKLOAD"
                } else {
                    ""
                };
                writeln!(out, "{first}")?;
                writeln!(out, "{:NARROW_INDENT$}LOCAL -> REMOTE{netns}", "")
            }
            TraceFormat::Text => {
                let header = if lifetimes { LIFETIME_HEADER } else { HEADER };
                match self.netns_names {
                    // With --all-netns, transitions end with the owner's container.
                    Some(_) if !lifetimes => writeln!(
                        out,
                        "{:<12} {:<w$} {:<c$}WORKLOAD",
                        "TIME",
                        "NETNS",
                        &header[13..],
                        w = self.netns_width,
                        c = header.len() - 13 + CAUSE_WIDTH + 1 - "CAUSE".len(),
                    ),
                    Some(_) => writeln!(
                        out,
                        "{:<12} {:<w$} {}",
                        "TIME",
                        "NETNS",
                        &header[13..],
                        w = self.netns_width
                    ),
                    None => writeln!(out, "{header}"),
                }
            }
            TraceFormat::Json => Ok(()),
        }
    }

    /// `ts_ns`'s whole second (the prefixes updated to it) and its nanoseconds.
    fn split_second(&self, ts_ns: u64) -> (std::cell::Ref<'_, SecondPrefixes>, u32) {
        let time = self.clock.to_system_time(ts_ns);
        let since = time
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let second = since.as_secs();
        if self.seconds.borrow().second != Some(second) {
            let whole = std::time::UNIX_EPOCH + std::time::Duration::from_secs(second);
            let local: DateTime<Local> = whole.into();
            let utc: DateTime<Utc> = whole.into();
            let mut cached = self.seconds.borrow_mut();
            cached.second = Some(second);
            cached.local = local.format("%H:%M:%S").to_string();
            cached.utc = utc.format("%Y-%m-%dT%H:%M:%S").to_string();
        }
        (self.seconds.borrow(), since.subsec_nanos())
    }

    /// "HH:MM:SS.mmm", local time.
    fn local_time(&self, ts_ns: u64) -> String {
        let (prefixes, nanos) = self.split_second(ts_ns);
        format!("{}.{:03}", prefixes.local, nanos / 1_000_000)
    }

    /// RFC 3339 in UTC with nanoseconds ("2026-11-30T21:00:00.123456789Z").
    fn rfc3339(&self, ts_ns: u64) -> String {
        let (prefixes, nanos) = self.split_second(ts_ns);
        format!("{}.{nanos:09}Z", prefixes.utc)
    }

    /// The columns every text line starts with: time (and the namespace, with
    /// --all-netns), owner, addresses; built as bytes into `line` (see `Line`).
    fn write_lead(
        &self,
        line: &mut Line,
        ts_ns: u64,
        netns: Option<&str>,
        owner: &Owner,
        local: std::net::SocketAddr,
        remote: std::net::SocketAddr,
    ) {
        let (prefixes, nanos) = self.split_second(ts_ns);
        line.text(&prefixes.local);
        line.byte(b'.');
        line.zero_padded(nanos / 1_000_000, 3);
        drop(prefixes);
        if let Some(netns) = netns {
            line.byte(b' ');
            line.padded(netns, self.netns_width);
        }
        line.byte(b' ');
        match owner.pid {
            Some(pid) => line.padded_number(pid, 7),
            None => line.padded("-", 7),
        }
        line.byte(b' ');
        line.padded(owner.comm.as_ref().map_or("-", |c| c.as_str()), 16);
        line.byte(b' ');
        line.padded_addr(local, 24);
        line.byte(b' ');
        line.padded_addr(remote, 24);
    }

    /// The narrow layout's second line: the addresses, then `tail` (the namespace and
    /// workload, a mark for a synthesized transition). What does not fit `width` moves to a
    /// line of its own: first the tail, then the remote address. A line still too long
    /// (a workload name longer than the terminal) is left whole for the terminal to wrap.
    fn write_addresses(
        &self,
        out: &mut impl Write,
        width: usize,
        local: std::net::SocketAddr,
        remote: std::net::SocketAddr,
        tail: &str,
    ) -> io::Result<()> {
        let (local, remote) = (local.to_string(), remote.to_string());
        let pad = " ".repeat(NARROW_INDENT);
        let fits = |line: &str| line.chars().count() <= width;
        let one = format!("{pad}{local} -> {remote}{tail}");
        if fits(&one) {
            return writeln!(out, "{one}");
        }
        let pair = format!("{pad}{local} -> {remote}");
        if fits(&pair) {
            writeln!(out, "{pair}")?;
        } else {
            writeln!(out, "{pad}{local}")?;
            let arrow = format!("{pad}-> {remote}{tail}");
            if fits(&arrow) {
                return writeln!(out, "{arrow}");
            }
            writeln!(out, "{pad}-> {remote}")?;
        }
        let tail = tail.trim_start();
        if tail.is_empty() {
            return Ok(());
        }
        writeln!(out, "{pad}{tail}")
    }

    fn owner_key(owner: &Owner) -> String {
        match (&owner.comm, owner.pid) {
            (Some(c), Some(p)) => format!("{}[{p}]", c.as_str()),
            (None, Some(p)) => format!("[{p}]"),
            _ => "-".to_string(),
        }
    }

    pub fn write(&self, out: &mut impl Write, t: &Transition) -> io::Result<()> {
        self.write_named(out, t, None)
    }

    /// `write`, with the names of the owner's container (NDJSON keys `container`, `image`,
    /// `pod`, `namespace`).
    pub fn write_named(
        &self,
        out: &mut impl Write,
        t: &Transition,
        workload: Option<&Workload>,
    ) -> io::Result<()> {
        self.write_recorded(out, t, workload, None)
    }

    /// `write_named`, with the host that recorded it (`history --from`: an NDJSON key; in
    /// text, the caller writes the host first).
    pub fn write_recorded(
        &self,
        out: &mut impl Write,
        t: &Transition,
        workload: Option<&Workload>,
        host: Option<&str>,
    ) -> io::Result<()> {
        match self.format {
            TraceFormat::Text if let Some(width) = self.narrow => {
                let prev = t
                    .prev_state_ns
                    .map_or_else(|| "-".to_string(), super::numfmt::duration);
                let cause = t.cause.map_or_else(|| "-".to_string(), |c| c.name());
                writeln!(
                    out,
                    "{} {:<20} {:<25} {prev:>7} {cause}",
                    self.local_time(t.ts_ns),
                    Self::owner_key(&t.owner),
                    format!("{} -> {}", t.old, t.new),
                )?;
                let mut tail = String::new();
                if let Some(n) = self.netns_name(t.netns) {
                    tail.push_str(&format!("  [{n}]"));
                    if let Some(label) = workload.and_then(Workload::label) {
                        tail.push_str(&format!(" {label}"));
                    }
                }
                if t.source == Source::Synthesized {
                    tail.push_str(" (synthesized)");
                }
                self.write_addresses(out, width, t.local, t.remote, &tail)
            }
            TraceFormat::Text => {
                let netns = self.netns_name(t.netns);
                let mut line = self.line.borrow_mut();
                line.clear();
                self.write_lead(
                    &mut line,
                    t.ts_ns,
                    netns.as_deref(),
                    &t.owner,
                    t.local,
                    t.remote,
                );
                line.byte(b' ');
                let start = line.len();
                line.state(t.old);
                line.text(" -> ");
                line.state(t.new);
                if t.source == Source::Synthesized {
                    line.text(" (synthesized)");
                }
                line.pad_from(start, 27);
                line.byte(b' ');
                let start = line.len();
                if let Some(ns) = t.prev_state_ns {
                    line.number(ns / 1_000);
                }
                line.pad_from(start, 10);
                line.byte(b' ');
                let start = line.len();
                line.cause(t.cause);
                if netns.is_some() {
                    line.pad_from(start, CAUSE_WIDTH);
                    line.byte(b' ');
                    match workload.and_then(Workload::label) {
                        Some(label) => line.text(&label),
                        None => line.byte(b'-'),
                    }
                }
                line.byte(b'\n');
                out.write_all(line.bytes())
            }
            TraceFormat::Json => {
                let (second, nanos) = self.split_second(t.ts_ns);
                let record = JsonTransition {
                    ts: Shown(Rfc3339 { second, nanos }),
                    ts_ns: t.ts_ns,
                    host,
                    cookie: t.cookie,
                    netns: t.netns,
                    netns_name: self.netns_name(t.netns),
                    pid: t.owner.pid,
                    comm: t.owner.comm.as_ref().map(|c| c.as_str()),
                    owner_source: t.owner.source.name(),
                    family: t.family.name(),
                    local: t.local,
                    remote: t.remote,
                    old: Shown(t.old),
                    new: Shown(t.new),
                    prev_state_ns: t.prev_state_ns,
                    source: t.source.name(),
                    cause: t.cause.map(Shown),
                    event: "state",
                    workload,
                };
                // Serialized into the line buffer and written at once: serde_json writes a
                // record in ~40 small pieces, each a call into the BufWriter.
                let mut line = self.line.borrow_mut();
                line.clear();
                line.json(&record)?;
                out.write_all(line.bytes())
            }
        }
    }

    /// A retransmission (`--events retrans`): in text, the TRANSITION column says
    /// `STATE retrans TYPE` and the CAUSE column the segment; in NDJSON, `"event":
    /// "retransmit"`.
    pub fn write_retransmit(&self, out: &mut impl Write, r: &Retransmit) -> io::Result<()> {
        let what = r.what;
        let lead = r.head();
        match self.format {
            TraceFormat::Text => {
                let (event, detail) = retransmit_text(r);
                self.write_event(out, &lead, &event, &detail)
            }
            TraceFormat::Json => self.write_json(
                out,
                &JsonRetransmit {
                    head: self.json_head("retransmit", &lead),
                    state: Shown(what.state),
                    r#type: what.kind_name(),
                    seq: what.seq,
                    len: what.len,
                },
            ),
        }
    }

    /// An RTT reading (`--events rtt`): `ESTAB rtt` and ss -i's figures in text; `"event":
    /// "rtt"` in NDJSON.
    pub fn write_rtt(&self, out: &mut impl Write, r: &RttSample) -> io::Result<()> {
        let lead = r.head();
        match self.format {
            TraceFormat::Text => {
                let (event, detail) = rtt_text(r);
                self.write_event(out, &lead, &event, &detail)
            }
            TraceFormat::Json => self.write_json(
                out,
                &JsonRtt {
                    head: self.json_head("rtt", &lead),
                    state: "ESTAB",
                    handshake: r.handshake,
                    tcp: JsonTcpInfo::of(&r.tcp),
                    retransmits: r.tcp.total_retrans,
                },
            ),
        }
    }

    /// An RST sent or received (`--events reset`): `STATE rst-in` / `rst-out` in text
    /// (`-` for a closed port, which has no socket); `"event": "reset"` in NDJSON.
    pub fn write_reset(&self, out: &mut impl Write, r: &Reset) -> io::Result<()> {
        let direction = match r.direction {
            ResetDirection::In => "in",
            ResetDirection::Out => "out",
        };
        let lead = r.head();
        let reason = self.reset_reason(r);
        match self.format {
            TraceFormat::Text => {
                let (event, detail) = self.reset_text(r);
                self.write_event(out, &lead, &event, &detail)
            }
            TraceFormat::Json => self.write_json(
                out,
                &JsonReset {
                    head: self.json_head("reset", &lead),
                    state: r.state.map(Shown),
                    direction,
                    closed_port: r.closed_port,
                    reason,
                },
            ),
        }
    }

    /// A segment the kernel dropped (`--events drop`): `STATE drop REASON` with its
    /// direction and TCP flags in text (`-` where no socket is known); `"event": "drop"`
    /// in NDJSON.
    pub fn write_drop(&self, out: &mut impl Write, d: &DroppedSegment) -> io::Result<()> {
        let what = d.what;
        let lead = d.head();
        if self.format == TraceFormat::Text {
            let (event, detail) = self.drop_text(d);
            return self.write_event(out, &lead, &event, &detail);
        }
        let direction = if what.outbound { "out" } else { "in" };
        let head = self.json_head("drop", &lead);
        let state = what.state.map(Shown);
        match what.reason {
            DropReason::Kernel(code) => self.write_json(
                out,
                &JsonDrop {
                    head,
                    state,
                    reason: &self.drop_reasons.name(code),
                    reason_code: Some(code),
                    source: "kernel",
                    count: 1,
                    direction,
                    tcp_flags: Some(tcp_flags(what.tcp_flags)),
                    accept_queue: None,
                    backlog: None,
                },
            ),
            DropReason::Listener {
                count,
                overflow,
                accept_queue,
                backlog,
            } => self.write_json(
                out,
                &JsonDrop {
                    head,
                    state,
                    reason: listener_drop_reason(overflow),
                    reason_code: None,
                    source: "counter",
                    count,
                    direction,
                    tcp_flags: None,
                    accept_queue: Some(accept_queue),
                    backlog: Some(backlog),
                },
            ),
        }
    }

    /// A reset's two text columns: `STATE rst-in|rst-out` and its reason (or
    /// `closed-port`, or `-`).
    fn reset_text(&self, r: &Reset) -> (String, String) {
        let rst = match r.direction {
            ResetDirection::In => "rst-in",
            ResetDirection::Out => "rst-out",
        };
        let state = r.state.map_or_else(|| "-".to_string(), |s| s.to_string());
        let detail = match (r.closed_port, self.reset_reason(r)) {
            (true, _) => "closed-port".to_string(),
            (false, Some(reason)) => reason,
            (false, None) => "-".to_string(),
        };
        (format!("{state} {rst}"), detail)
    }

    /// A drop's two text columns: `STATE drop in|out` and `REASON [FLAGS]` (or, counted,
    /// `REASON xN (counted; queue Q/B)`).
    fn drop_text(&self, d: &DroppedSegment) -> (String, String) {
        let what = d.what;
        let direction = if what.outbound { "out" } else { "in" };
        let state = what
            .state
            .map_or_else(|| "-".to_string(), |s| s.to_string());
        let detail = match what.reason {
            DropReason::Kernel(code) => format!(
                "{} [{}]",
                self.drop_reasons.name(code),
                tcp_flags(what.tcp_flags)
            ),
            DropReason::Listener {
                count,
                overflow,
                accept_queue,
                backlog,
            } => format!(
                "{} x{count} (counted; queue {accept_queue}/{backlog})",
                listener_drop_reason(overflow)
            ),
        };
        (format!("{state} drop {direction}"), detail)
    }

    /// One connection's timeline (`--timeline`): a header line with its ends, owner,
    /// cookie and duration, then one indented line per event with its time from the first;
    /// in NDJSON one `"event": "timeline"` object whose `events` are the events' own
    /// records, each with `t_ns` from the first.
    pub fn write_timeline(&self, out: &mut impl Write, t: &Timeline) -> io::Result<()> {
        // The latest event has the most complete addresses (a connect's first has no
        // local port yet).
        let Some(last) = t.events.back() else {
            return Ok(());
        };
        let OutputHead {
            netns,
            family,
            local,
            remote,
            ..
        } = last.head();
        let duration_ns = t.last_ns.saturating_sub(t.first_ns);
        match self.format {
            TraceFormat::Text => {
                let netns = self
                    .netns_name(netns)
                    .map_or_else(String::new, |n| format!(" [{n}]"));
                writeln!(
                    out,
                    "{} timeline {local} ⇄ {remote} {} sk:{:x} {}{netns}{}",
                    self.local_time(t.first_ns),
                    Self::owner_key(&t.owner),
                    t.cookie,
                    super::numfmt::duration(duration_ns),
                    if t.closed { "" } else { " (still open)" },
                )?;
                for e in &t.events {
                    let (at, text) = match e {
                        Output::Transition(tr) => {
                            let mut text = format!("{} -> {}", tr.old, tr.new);
                            if let Some(c) = tr.cause {
                                text.push(' ');
                                text.push_str(&c.name());
                            }
                            if tr.source == Source::Synthesized {
                                text.push_str(" (synthesized)");
                            }
                            (tr.ts_ns, text)
                        }
                        Output::Retransmit(r) => {
                            let (event, detail) = retransmit_text(r);
                            (r.ts_ns, format!("{event} {detail}"))
                        }
                        Output::Reset(r) => {
                            let (event, detail) = self.reset_text(r);
                            let text = if detail == "-" {
                                event
                            } else {
                                format!("{event} {detail}")
                            };
                            (r.ts_ns, text)
                        }
                        Output::Drop(d) => {
                            let (event, detail) = self.drop_text(d);
                            (d.ts_ns, format!("{event} {detail}"))
                        }
                        Output::Rtt(r) => {
                            let (event, detail) = rtt_text(r);
                            (r.ts_ns, format!("{event} {detail}"))
                        }
                        Output::Lifetime(_) => continue,
                    };
                    let rel = at.saturating_sub(t.first_ns) as f64 / 1e9;
                    writeln!(out, "  +{rel:.6}s  {text}")?;
                }
                if t.left_out > 0 {
                    writeln!(
                        out,
                        "  ({} events left out: --timeline-events keeps the first and the latest)",
                        t.left_out
                    )?;
                }
                Ok(())
            }
            TraceFormat::Json => {
                let mut events = Vec::with_capacity(t.events.len());
                for e in &t.events {
                    let mut record = Vec::new();
                    let at = match e {
                        Output::Transition(tr) => {
                            self.write(&mut record, tr)?;
                            tr.ts_ns
                        }
                        Output::Retransmit(r) => {
                            self.write_retransmit(&mut record, r)?;
                            r.ts_ns
                        }
                        Output::Reset(r) => {
                            self.write_reset(&mut record, r)?;
                            r.ts_ns
                        }
                        Output::Drop(d) => {
                            self.write_drop(&mut record, d)?;
                            d.ts_ns
                        }
                        Output::Rtt(r) => {
                            self.write_rtt(&mut record, r)?;
                            r.ts_ns
                        }
                        Output::Lifetime(_) => continue,
                    };
                    let mut value: serde_json::Value =
                        serde_json::from_slice(&record).map_err(io::Error::other)?;
                    if let Some(map) = value.as_object_mut() {
                        map.insert("t_ns".into(), at.saturating_sub(t.first_ns).into());
                    }
                    events.push(value);
                }
                let lead = OutputHead {
                    ts_ns: t.first_ns,
                    cookie: t.cookie,
                    netns,
                    family,
                    owner: t.owner,
                    local,
                    remote,
                };
                self.write_json(
                    out,
                    &JsonTimeline {
                        head: self.json_head("timeline", &lead),
                        duration_ns,
                        closed: t.closed,
                        left_out: t.left_out,
                        events,
                    },
                )
            }
        }
    }

    /// The keys every NDJSON event other than a transition starts with.
    fn json_head<'a>(&'a self, event: &'static str, lead: &'a OutputHead) -> JsonEventHead<'a> {
        let (second, nanos) = self.split_second(lead.ts_ns);
        JsonEventHead {
            ts: Shown(Rfc3339 { second, nanos }),
            ts_ns: lead.ts_ns,
            event,
            cookie: lead.cookie,
            netns: lead.netns,
            netns_name: self.netns_name(lead.netns),
            pid: lead.owner.pid,
            comm: lead.owner.comm.as_ref().map(|c| c.as_str()),
            owner_source: lead.owner.source.name(),
            family: lead.family.name(),
            local: lead.local,
            remote: lead.remote,
        }
    }

    /// One NDJSON record, serialized into the line buffer and written at once.
    fn write_json(&self, out: &mut impl Write, record: &impl Serialize) -> io::Result<()> {
        let mut line = self.line.borrow_mut();
        line.clear();
        line.json(record)?;
        out.write_all(line.bytes())
    }

    /// A text line for an event other than a transition, in the transition's columns.
    fn write_event(
        &self,
        out: &mut impl Write,
        lead: &OutputHead,
        event: &str,
        detail: &str,
    ) -> io::Result<()> {
        if let Some(width) = self.narrow {
            writeln!(
                out,
                "{} {:<20} {event:<25} {:>7} {detail}",
                self.local_time(lead.ts_ns),
                Self::owner_key(&lead.owner),
                "",
            )?;
            let tail = self
                .netns_name(lead.netns)
                .map_or_else(String::new, |n| format!("  [{n}]"));
            return self.write_addresses(out, width, lead.local, lead.remote, &tail);
        }
        let netns = self.netns_name(lead.netns);
        let mut line = self.line.borrow_mut();
        line.clear();
        self.write_lead(
            &mut line,
            lead.ts_ns,
            netns.as_deref(),
            &lead.owner,
            lead.local,
            lead.remote,
        );
        line.byte(b' ');
        line.padded(event, 27);
        line.byte(b' ');
        line.padded("", 10);
        line.byte(b' ');
        line.text(detail);
        line.byte(b'\n');
        out.write_all(line.bytes())
    }

    pub fn write_lifetime(&self, out: &mut impl Write, l: &Lifetime) -> io::Result<()> {
        self.write_lifetime_named(out, l, None, None)
    }

    /// `write_lifetime`, with the names of the owner's container and the host that recorded
    /// it (NDJSON keys; in text, the caller writes the host first).
    pub fn write_lifetime_named(
        &self,
        out: &mut impl Write,
        l: &Lifetime,
        workload: Option<&Workload>,
        host: Option<&str>,
    ) -> io::Result<()> {
        let cause = || l.cause.map_or_else(|| "-".to_string(), |c| c.name());
        match self.format {
            TraceFormat::Text if let Some(width) = self.narrow => {
                let dur = l
                    .duration_ns
                    .map_or_else(|| "-".to_string(), super::numfmt::duration);
                let rtt = l.tcp.srtt().map_or_else(
                    || "-".to_string(),
                    |us| super::numfmt::duration(u64::from(us) * 1_000),
                );
                writeln!(
                    out,
                    "{} {:<20} {dur:<10} {:<8} {:<9} {rtt:<5} {:<4} {}",
                    self.local_time(l.ts_ns),
                    Self::owner_key(&l.owner),
                    super::numfmt::bytes(l.bytes_acked),
                    super::numfmt::bytes(l.bytes_received),
                    l.retransmits,
                    cause(),
                )?;
                self.write_addresses(out, width, l.local, l.remote, "")
            }
            TraceFormat::Text => {
                let opt = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |x| x.to_string());
                let rate = l
                    .tcp
                    .delivery_rate()
                    .map_or_else(|| "-".to_string(), delivery_rate);
                let mut line = self.line.borrow_mut();
                line.clear();
                self.write_lead(&mut line, l.ts_ns, None, &l.owner, l.local, l.remote);
                out.write_all(line.bytes())?;
                writeln!(
                    out,
                    " {:<12} {:<12} {:<11} {:<10} {:<8} {:<11} {:<6} {rate:<9} {:<8} {}",
                    opt(l.duration_ns.map(|d| d / 1_000_000)),
                    l.bytes_acked,
                    l.bytes_received,
                    opt(l.handshake_rtt_us.map(u64::from)),
                    opt(l.tcp.srtt().map(u64::from)),
                    opt(l.tcp.min_rtt().map(u64::from)),
                    opt(l.tcp.cwnd().map(u64::from)),
                    l.retransmits,
                    cause(),
                )
            }
            TraceFormat::Json => {
                let record = JsonLifetime {
                    ts: self.rfc3339(l.ts_ns),
                    ts_ns: l.ts_ns,
                    host,
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
                    connect_ns: l.connect_ns,
                    handshake_rtt_us: l.handshake_rtt_us,
                    tcp: JsonTcpInfo::of(&l.tcp),
                    retransmits: l.retransmits,
                    cause: l.cause.map(|c| c.name()),
                    workload,
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
    /// Whether the kernel counts every skipped run (not a classic tracepoint before 6.7).
    pub skips_counted: bool,
    pub edges: Vec<EdgeCount>,
    pub ring: RingCounts,
    pub printed: u64,
    pub tracker: TrackerStats,
    /// The live table at the end, by its own accounting.
    pub table: TableMemory,
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
            // null, never 0, when the counters could not be read or the kernel does not
            // count skipped runs.
            let v = serde_json::json!({
                "edges": list,
                "lost": counters.map(|c| c.lost),
                "missed_runs": counters.filter(|_| self.skips_counted).map(|c| c.missed_runs),
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
        let jumps = match stats.jumps {
            0 => String::new(),
            n => format!(
                ", {n} jumps (a socket left a state it was not seen entering: transitions before them are missing)"
            ),
        };
        let table = format!(
            "; live table: {} sockets in {} bytes{}",
            self.table.sockets,
            self.table.bytes,
            self.table
                .per_socket()
                .map_or_else(String::new, |b| format!(" ({b} each)"))
        );
        format!(
            "sockstat: {} events seen, {} printed, {}, {} undecodable; {} transitions counted in the kernel (exact but for the skipped runs); {} synthesized, {} repaired by reconcile, {} evicted{unresolved}{jumps}{table}; edges: {}",
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
        let per_hook = if by_hook.is_empty() {
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
        let skipped = if self.skips_counted {
            format!(
                "{} runs skipped by the kernel (a hook re-entered on its CPU{per_hook})",
                k.missed_runs
            )
        } else {
            "runs skipped by the kernel uncounted (this kernel's classic tracepoint does not count them; 6.7 does)".to_string()
        };
        format!(
            "{} lost (ring buffer full), {skipped}, {} unreadable in kernel{timewait}",
            k.lost, k.read_errors
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
        raw6.srtt_us = 54 << 3;
        raw6.min_rtt_us = 36;
        raw6.snd_cwnd = 10;
        raw6.delivery_rate = 150_000_000;
        tracker.apply(&from_raw(&raw6).unwrap(), &mut out);
        out
    }

    fn render(format: TraceFormat, lifetimes: bool) -> String {
        render_at(format, lifetimes, None, false)
    }

    /// As printed on a terminal `width` columns wide (`None`: a pipe), with the NETNS column
    /// of --all-netns when `all_netns`.
    fn render_at(
        format: TraceFormat,
        lifetimes: bool,
        width: Option<usize>,
        all_netns: bool,
    ) -> String {
        // 2023-11-14T22:13:20Z at monotonic 0; UTC so the golden text does not depend on TZ.
        let mut printer = TracePrinter::new(format, WallClock::fixed(1_700_000_000_000_000_000));
        if all_netns {
            printer.set_netns_names([(4026531840, "host".to_string())].into());
        }
        printer.set_width(width);
        let mut out = Vec::new();
        printer.write_header(&mut out, lifetimes).unwrap();
        for o in sample() {
            match o {
                Output::Transition(t) if !lifetimes => printer
                    .write_named(&mut out, &t, all_netns.then(pod_container).as_ref())
                    .unwrap(),
                Output::Lifetime(l) if lifetimes => printer.write_lifetime(&mut out, &l).unwrap(),
                _ => {}
            }
        }
        String::from_utf8(out).unwrap()
    }

    fn pod_container() -> Workload {
        Workload {
            container: Some("nginx".into()),
            image: Some("nginx:1.27".into()),
            pod: Some("web-7d9f8c6b5-x2x4q".into()),
            namespace: Some("shop".into()),
        }
    }

    #[test]
    fn json_names_the_owners_container() {
        let mut printer = TracePrinter::new(
            TraceFormat::Json,
            WallClock::fixed(1_700_000_000_000_000_000),
        );
        let mut out = Vec::new();
        let Some(Output::Transition(t)) = sample().into_iter().next() else {
            panic!("the sample starts with a transition");
        };
        printer.set_width(None);
        printer
            .write_named(&mut out, &t, Some(&pod_container()))
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["container"], "nginx");
        assert_eq!(v["image"], "nginx:1.27");
        assert_eq!(v["pod"], "web-7d9f8c6b5-x2x4q");
        assert_eq!(v["namespace"], "shop");
        // A container without Kubernetes names has no pod keys at all.
        let mut out = Vec::new();
        let docker = Workload {
            container: Some("web".into()),
            ..Workload::default()
        };
        printer.write_named(&mut out, &t, Some(&docker)).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["container"], "web");
        assert!(v.get("pod").is_none() && v.get("namespace").is_none());
    }

    #[test]
    fn golden_json() {
        let expected = r#"{"ts":"2023-11-14T22:13:21.000000123Z","ts_ns":1000000123,"cookie":4242,"netns":4026531840,"pid":100,"comm":"curl","owner_source":"task","family":"inet","local":"127.0.0.1:40000","remote":"127.0.0.2:8080","old":"CLOSE","new":"SYN-SENT","prev_state_ns":null,"source":"kernel","cause":null,"event":"state"}
{"ts":"2023-11-14T22:13:21.000153523Z","ts_ns":1000153523,"cookie":4242,"netns":4026531840,"pid":100,"comm":"curl","owner_source":"cached","family":"inet","local":"127.0.0.1:40000","remote":"127.0.0.2:8080","old":"SYN-SENT","new":"ESTAB","prev_state_ns":153400,"source":"kernel","cause":null,"event":"state"}
{"ts":"2023-11-14T22:13:21.000000123Z","ts_ns":1000000123,"cookie":7,"netns":4026531840,"pid":100,"comm":"curl","owner_source":"task","family":"inet6","local":"[::1]:40000","remote":"[::1]:8080","old":"FIN-WAIT-2","new":"TIME-WAIT","prev_state_ns":null,"source":"synthesized","cause":"fin","event":"state"}
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
        // --all-netns adds a NETNS column after the time, and the owner's container at the
        // end (namespace/pod/container for a pod's).
        let netns = render_at(TraceFormat::Text, false, None, true);
        let mut lines = netns.lines();
        assert_eq!(
            lines.next().unwrap(),
            "TIME         NETNS PID     COMM             LOCAL                    REMOTE                   TRANSITION                  PREV_US    CAUSE          WORKLOAD"
        );
        assert_eq!(
            lines.nth(1).unwrap(),
            "22:13:21.000 host  100     curl             127.0.0.1:40000          127.0.0.2:8080           SYN-SENT -> ESTAB           153        -              shop/web-7d9f8c6b5-x2x4q/nginx"
        );
    }

    /// The counters include sequence space: the FIN this side sent (acked) and the FIN it
    /// received are taken off, so the bytes are data bytes.
    #[test]
    fn golden_lifetime_json() {
        let expected = r#"{"ts":"2023-11-14T22:13:21.000000123Z","ts_ns":1000000123,"cookie":7,"netns":4026531840,"pid":100,"comm":"curl","owner_source":"task","family":"inet6","local":"[::1]:40000","remote":"[::1]:8080","duration_ns":null,"bytes_acked":4,"bytes_received":8,"connect_ns":null,"handshake_rtt_us":null,"rtt_us":54,"min_rtt_us":36,"cwnd":10,"delivery_rate_bps":1200000000,"retransmits":0,"cause":"fin"}
"#;
        assert_eq!(render(TraceFormat::Json, true), expected);
    }

    /// Lifetimes in the wide layout: the handshake's RTT and what tcp_info said at the close.
    #[test]
    fn golden_lifetime_text() {
        // SAFETY: as in golden_text.
        unsafe { std::env::set_var("TZ", "UTC") };
        assert_eq!(
            render(TraceFormat::Text, true),
            "\
TIME         PID     COMM             LOCAL                    REMOTE                   DURATION_MS  BYTES_ACKED  BYTES_RECV  HS_RTT_US  RTT_US   MIN_RTT_US  CWND   RATE_BPS  RETRANS  CAUSE
22:13:21.000 100     curl             [::1]:40000              [::1]:8080               -            4            8           -          54       36          10     1.2G      0        fin
"
        );
    }

    /// The narrow layout's address lines: what does not fit moves to a line of its own,
    /// the tail first, then the remote address; a tail longer than the terminal is kept
    /// whole, never cut.
    #[test]
    fn narrow_addresses_move_to_their_own_lines() {
        let printer = TracePrinter::new(TraceFormat::Text, WallClock::fixed(0));
        let lines = |width: usize, local: &str, remote: &str, tail: &str| {
            let mut out = Vec::new();
            printer
                .write_addresses(
                    &mut out,
                    width,
                    local.parse().unwrap(),
                    remote.parse().unwrap(),
                    tail,
                )
                .unwrap();
            String::from_utf8(out)
                .unwrap()
                .lines()
                .map(str::trim)
                .map(String::from)
                .collect::<Vec<_>>()
        };
        let (v4, v4r) = ("10.0.0.1:40000", "10.0.0.2:443");
        assert_eq!(
            lines(80, v4, v4r, "  [host] a/b/c"),
            ["10.0.0.1:40000 -> 10.0.0.2:443  [host] a/b/c"]
        );
        let long = format!("  [host] {}", "x".repeat(70));
        assert_eq!(
            lines(80, v4, v4r, &long),
            [
                "10.0.0.1:40000 -> 10.0.0.2:443".to_string(),
                long.trim().to_string()
            ]
        );
        let (v6, v6r) = ("[2001:db8::1]:40000", "[2001:db8:ffff::2]:443");
        assert_eq!(
            lines(50, v6, v6r, "  [host]"),
            ["[2001:db8::1]:40000", "-> [2001:db8:ffff::2]:443  [host]"]
        );
        assert_eq!(
            lines(50, v6, v6r, &long),
            [
                "[2001:db8::1]:40000".to_string(),
                "-> [2001:db8:ffff::2]:443".to_string(),
                long.trim().to_string()
            ]
        );
    }

    /// An 80x24 terminal: two lines per event, none wider than 80 (an IPv6 pair with a
    /// namespace takes a third); pipes keep one wide line per event.
    #[test]
    fn golden_text_at_80_columns() {
        // SAFETY: as in golden_text.
        unsafe { std::env::set_var("TZ", "UTC") };
        let mut screens = String::new();
        for (lifetimes, all_netns) in [(false, false), (false, true), (true, false)] {
            let text = render_at(TraceFormat::Text, lifetimes, Some(80), all_netns);
            for line in text.lines() {
                assert!(line.chars().count() <= 80, "{line:?}");
            }
            screens.push_str(&text);
            screens.push_str("--\n");
        }
        crate::render::golden::check("golden/trace_80.txt", &screens);
        // Wide enough: the wide layout, as in a pipe.
        assert_eq!(
            render_at(TraceFormat::Text, false, Some(200), false),
            render(TraceFormat::Text, false)
        );
    }

    /// Retransmits, resets and RTT readings (`--events`) in both formats, in the
    /// transitions' columns.
    #[test]
    fn golden_retransmit_and_reset() {
        // SAFETY: as in golden_text.
        unsafe { std::env::set_var("TZ", "UTC") };
        use crate::{
            ebpf::{Family, Retransmission},
            live::{Comm, OwnerSource},
            tcp::TcpState,
        };
        let owner = Owner {
            pid: Some(100),
            comm: Some(Comm::new("curl")),
            source: OwnerSource::Task,
        };
        let retransmit = Retransmit {
            ts_ns: 1_000_000_123,
            cookie: 4242,
            netns: 4026531840,
            family: Family::Inet,
            local: "127.0.0.1:40000".parse().unwrap(),
            remote: "127.0.0.2:8080".parse().unwrap(),
            owner,
            what: Retransmission {
                kind: sockstat_common::retransmit::SYN,
                state: ReportedState::Known(TcpState::SynSent),
                seq: 7,
                len: 1,
            },
        };
        let reset = Reset {
            ts_ns: 1_000_000_123,
            cookie: 0,
            netns: 4026531840,
            family: Family::Inet,
            local: "127.0.0.1:23".parse().unwrap(),
            remote: "127.0.0.2:5000".parse().unwrap(),
            direction: ResetDirection::Out,
            state: None,
            closed_port: true,
            owner: Owner::unknown(),
            reason: None,
        };
        let rtt = RttSample {
            ts_ns: 1_000_000_123,
            cookie: 4242,
            netns: 4026531840,
            family: Family::Inet,
            local: "127.0.0.1:40000".parse().unwrap(),
            remote: "127.0.0.2:8080".parse().unwrap(),
            owner,
            handshake: false,
            tcp: crate::ebpf::TcpCounters {
                srtt_us: 1_250,
                min_rtt_us: 36,
                snd_cwnd: 10,
                delivery_rate: 150_000_000,
                total_retrans: 1,
                ..Default::default()
            },
        };
        let handshake = RttSample {
            handshake: true,
            tcp: crate::ebpf::TcpCounters {
                srtt_us: 80,
                min_rtt_us: 80,
                ..Default::default()
            },
            ..rtt.clone()
        };
        let clock = WallClock::fixed(1_700_000_000_000_000_000);
        let mut text = Vec::new();
        let printer = TracePrinter::new(TraceFormat::Text, clock);
        printer.write_retransmit(&mut text, &retransmit).unwrap();
        printer.write_reset(&mut text, &reset).unwrap();
        printer.write_rtt(&mut text, &handshake).unwrap();
        printer.write_rtt(&mut text, &rtt).unwrap();
        assert_eq!(
            String::from_utf8(text).unwrap(),
            "\
22:13:21.000 100     curl             127.0.0.1:40000          127.0.0.2:8080           SYN-SENT retrans syn                   seq=7 len=1
22:13:21.000 -       -                127.0.0.1:23             127.0.0.2:5000           - rst-out                              closed-port
22:13:21.000 100     curl             127.0.0.1:40000          127.0.0.2:8080           ESTAB rtt handshake                    rtt=80µs min=80µs retrans=0
22:13:21.000 100     curl             127.0.0.1:40000          127.0.0.2:8080           ESTAB rtt                              rtt=1.2ms min=36µs cwnd=10 rate=1.2Gbps retrans=1
"
        );
        let mut json = Vec::new();
        let printer = TracePrinter::new(TraceFormat::Json, clock);
        printer.write_retransmit(&mut json, &retransmit).unwrap();
        printer.write_reset(&mut json, &reset).unwrap();
        printer.write_rtt(&mut json, &rtt).unwrap();
        assert_eq!(
            String::from_utf8(json).unwrap(),
            r#"{"ts":"2023-11-14T22:13:21.000000123Z","ts_ns":1000000123,"event":"retransmit","cookie":4242,"netns":4026531840,"pid":100,"comm":"curl","owner_source":"task","family":"inet","local":"127.0.0.1:40000","remote":"127.0.0.2:8080","state":"SYN-SENT","type":"syn","seq":7,"len":1}
{"ts":"2023-11-14T22:13:21.000000123Z","ts_ns":1000000123,"event":"reset","cookie":0,"netns":4026531840,"pid":null,"comm":null,"owner_source":"unknown","family":"inet","local":"127.0.0.1:23","remote":"127.0.0.2:5000","state":null,"direction":"out","closed_port":true,"reason":null}
{"ts":"2023-11-14T22:13:21.000000123Z","ts_ns":1000000123,"event":"rtt","cookie":4242,"netns":4026531840,"pid":100,"comm":"curl","owner_source":"task","family":"inet","local":"127.0.0.1:40000","remote":"127.0.0.2:8080","state":"ESTAB","handshake":false,"rtt_us":1250,"min_rtt_us":36,"cwnd":10,"delivery_rate_bps":1200000000,"retransmits":1}
"#
        );
    }

    #[test]
    fn cached_seconds_format_like_chrono() {
        use chrono::SecondsFormat;
        let clock = WallClock::fixed(1_700_000_000_000_000_000);
        let printer = TracePrinter::new(TraceFormat::Text, clock);
        // Within one second, across its end, and far apart, in both directions.
        for ts in [
            5,
            999_999_999,
            1_000_000_000,
            1_000_000_001,
            86_399_999_999_999,
            7_123_456_789,
            2_000_000_500,
        ] {
            let time = clock.to_system_time(ts);
            let local: DateTime<Local> = time.into();
            let utc: DateTime<Utc> = time.into();
            assert_eq!(
                printer.local_time(ts),
                local.format("%H:%M:%S%.3f").to_string()
            );
            assert_eq!(
                printer.rfc3339(ts),
                utc.to_rfc3339_opts(SecondsFormat::Nanos, true)
            );
        }
    }
}
