//! `sockstat trace` output: aligned text lines or NDJSON, one record per transition.
use std::io::{self, Write};

use chrono::{DateTime, Local, SecondsFormat, Utc};
use serde::Serialize;

use crate::live::{Observed, clock::WallClock};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceFormat {
    Text,
    Json,
}

const HEADER: &str = "TIME         PID     COMM             LOCAL                    REMOTE                   TRANSITION                  PREV_US";

pub struct TracePrinter {
    format: TraceFormat,
    clock: WallClock,
}

/// The NDJSON record. Keys are a stable interface: later versions add keys, never rename.
#[derive(Serialize)]
struct JsonTransition<'a> {
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
    old: String,
    new: String,
    prev_state_ns: Option<u64>,
}

impl TracePrinter {
    pub fn new(format: TraceFormat, clock: WallClock) -> Self {
        Self { format, clock }
    }

    /// The column header (text only).
    pub fn write_header(&self, out: &mut impl Write) -> io::Result<()> {
        match self.format {
            TraceFormat::Text => writeln!(out, "{HEADER}"),
            TraceFormat::Json => Ok(()),
        }
    }

    pub fn write(&self, out: &mut impl Write, ev: &Observed) -> io::Result<()> {
        match self.format {
            TraceFormat::Text => self.write_text(out, ev),
            TraceFormat::Json => self.write_json(out, ev),
        }
    }

    fn write_text(&self, out: &mut impl Write, ev: &Observed) -> io::Result<()> {
        let c = &ev.change;
        let time: DateTime<Local> = self.clock.to_system_time(c.ts_ns).into();
        let pid = ev
            .owner
            .pid
            .map_or_else(|| "-".to_string(), |p| p.to_string());
        let comm = ev.owner.comm.as_deref().unwrap_or("-");
        let transition = format!("{} -> {}", c.old, c.new);
        write!(
            out,
            "{} {:<7} {:<16} {:<24} {:<24} ",
            time.format("%H:%M:%S%.3f"),
            pid,
            comm,
            c.local.to_string(),
            c.remote.to_string(),
        )?;
        // No trailing padding when the previous state's duration is unknown.
        match ev.prev_state_ns {
            Some(ns) => writeln!(out, "{transition:<27} {}", ns / 1_000),
            None => writeln!(out, "{transition}"),
        }
    }

    fn write_json(&self, out: &mut impl Write, ev: &Observed) -> io::Result<()> {
        let c = &ev.change;
        let ts: DateTime<Utc> = self.clock.to_system_time(c.ts_ns).into();
        let record = JsonTransition {
            ts: ts.to_rfc3339_opts(SecondsFormat::Nanos, true),
            ts_ns: c.ts_ns,
            cookie: c.cookie,
            netns: c.netns,
            pid: ev.owner.pid,
            comm: ev.owner.comm.as_deref(),
            owner_source: ev.owner.source.name(),
            family: c.family.name(),
            local: c.local.to_string(),
            remote: c.remote.to_string(),
            old: c.old.to_string(),
            new: c.new.to_string(),
            prev_state_ns: ev.prev_state_ns,
        };
        serde_json::to_writer(&mut *out, &record).map_err(io::Error::other)?;
        out.write_all(b"\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        ebpf::events::{from_raw, tests::raw_v4},
        live::StateTimes,
    };
    use sockstat_common::{flags, tcp_state};

    fn sample() -> Vec<Observed> {
        let mut times = StateTimes::default();
        let mut raw = raw_v4();
        raw.old_state = tcp_state::CLOSE;
        raw.new_state = tcp_state::SYN_SENT;
        let first = times.observe(from_raw(&raw).unwrap());
        raw.ts_ns += 153_400;
        raw.old_state = tcp_state::SYN_SENT;
        raw.new_state = tcp_state::ESTABLISHED;
        raw.flags &= !flags::TASK_OWNS_SOCKET;
        let second = times.observe(from_raw(&raw).unwrap());
        let mut raw6 = raw_v4();
        raw6.family = 10;
        raw6.cookie = 7;
        raw6.saddr = std::net::Ipv6Addr::LOCALHOST.octets();
        raw6.daddr = std::net::Ipv6Addr::LOCALHOST.octets();
        raw6.old_state = tcp_state::FIN_WAIT2;
        raw6.new_state = tcp_state::CLOSE;
        let third = times.observe(from_raw(&raw6).unwrap());
        vec![first, second, third]
    }

    fn render(format: TraceFormat) -> String {
        // 2023-11-14T22:13:20Z at monotonic 0; UTC so the golden text does not depend on TZ.
        let printer =
            TracePrinter::new(format, WallClock::with_offset_ns(1_700_000_000_000_000_000));
        let mut out = Vec::new();
        printer.write_header(&mut out).unwrap();
        for ev in sample() {
            printer.write(&mut out, &ev).unwrap();
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn golden_json() {
        let expected = r#"{"ts":"2023-11-14T22:13:21.000000123Z","ts_ns":1000000123,"cookie":4242,"netns":4026531840,"pid":100,"comm":"curl","owner_source":"task","family":"inet","local":"127.0.0.1:40000","remote":"127.0.0.2:8080","old":"CLOSE","new":"SYN-SENT","prev_state_ns":null}
{"ts":"2023-11-14T22:13:21.000153523Z","ts_ns":1000153523,"cookie":4242,"netns":4026531840,"pid":null,"comm":null,"owner_source":"unknown","family":"inet","local":"127.0.0.1:40000","remote":"127.0.0.2:8080","old":"SYN-SENT","new":"ESTAB","prev_state_ns":153400}
{"ts":"2023-11-14T22:13:21.000000123Z","ts_ns":1000000123,"cookie":7,"netns":4026531840,"pid":100,"comm":"curl","owner_source":"task","family":"inet6","local":"[::1]:40000","remote":"[::1]:8080","old":"FIN-WAIT-2","new":"CLOSE","prev_state_ns":null}
"#;
        assert_eq!(render(TraceFormat::Json), expected);
    }

    #[test]
    fn golden_text() {
        // SAFETY: set before any other thread in this test binary reads TZ for formatting;
        // every test that formats local time wants UTC.
        unsafe { std::env::set_var("TZ", "UTC") };
        let expected = "\
TIME         PID     COMM             LOCAL                    REMOTE                   TRANSITION                  PREV_US
22:13:21.000 100     curl             127.0.0.1:40000          127.0.0.2:8080           CLOSE -> SYN-SENT
22:13:21.000 -       -                127.0.0.1:40000          127.0.0.2:8080           SYN-SENT -> ESTAB           153
22:13:21.000 100     curl             [::1]:40000              [::1]:8080               FIN-WAIT-2 -> CLOSE
";
        assert_eq!(render(TraceFormat::Text), expected);
    }
}
