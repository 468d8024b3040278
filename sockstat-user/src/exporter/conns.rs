//! serve's memory of connections for `sockstat conn`: the timeline of every connection it
//! follows (at most `max` at once, the oldest making room) and of the last `max` that
//! closed, rendered on request as `trace --timeline` prints them.
use std::{collections::VecDeque, net::SocketAddr};

use crate::{
    ebpf::ReasonNames,
    live::{Output, Timeline, Timelines, clock::WallClock},
    render::trace::{TraceFormat, TracePrinter},
};

/// Which connection `GET /conn` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnQuery {
    Cookie(u64),
    /// This host's end and the peer's.
    Ends(SocketAddr, SocketAddr),
}

impl ConnQuery {
    /// `cookie=N` (decimal, or hex as `sk:` shows it with `0x`), or `local=ADDR:PORT` and
    /// `remote=ADDR:PORT`; `format=json` for NDJSON. Returns the query and whether JSON.
    pub fn parse(query: &str) -> Result<(ConnQuery, bool), String> {
        let mut cookie = None;
        let (mut local, mut remote, mut json) = (None, None, false);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = value
                .replace("%5B", "[")
                .replace("%5D", "]")
                .replace("%3A", ":");
            match key {
                "cookie" => cookie = Some(parse_cookie(&value)?),
                "local" => local = Some(parse_addr(&value)?),
                "remote" => remote = Some(parse_addr(&value)?),
                "format" => json = value == "json",
                other => return Err(format!("unknown parameter {other}")),
            }
        }
        let q = match (cookie, local, remote) {
            (Some(c), None, None) => ConnQuery::Cookie(c),
            (None, Some(l), Some(r)) => ConnQuery::Ends(l, r),
            _ => return Err("give cookie=N, or local=ADDR:PORT and remote=ADDR:PORT".into()),
        };
        Ok((q, json))
    }
}

/// A cookie as sockstat prints it: decimal, `0xHEX`, or `sk:HEX` (trace's timeline, ss -e).
pub fn parse_cookie(s: &str) -> Result<u64, String> {
    let parsed = if let Some(hex) = s.strip_prefix("sk:").or_else(|| s.strip_prefix("0x")) {
        u64::from_str_radix(hex, 16)
    } else {
        s.parse()
    };
    parsed.map_err(|_| format!("{s:?} is not a cookie (decimal, 0xHEX or sk:HEX)"))
}

fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| format!("{s:?} is not ADDR:PORT ([V6]:PORT for IPv6)"))
}

pub struct ConnLog {
    timelines: Timelines,
    closed: VecDeque<Timeline>,
    max: usize,
    text: TracePrinter,
    json: TracePrinter,
}

impl ConnLog {
    /// `max_events` per connection; `max` connections followed, and as many closed kept.
    pub fn new(max_events: usize, max: usize, resets: ReasonNames, drops: ReasonNames) -> Self {
        let printer = |format| {
            let mut p = TracePrinter::new(format, WallClock::now());
            p.set_reasons(resets.clone(), drops.clone());
            p
        };
        Self {
            timelines: Timelines::new(max_events, max),
            closed: VecDeque::new(),
            max: max.max(1),
            text: printer(TraceFormat::Text),
            json: printer(TraceFormat::Json),
        }
    }

    pub fn observe(&mut self, o: &Output) {
        if let Some(done) = self.timelines.push(o) {
            if self.closed.len() == self.max {
                self.closed.pop_front();
            }
            self.closed.push_back(done);
        }
    }

    /// The connection asked for: a live one first, else the latest that closed.
    pub fn find(&self, q: ConnQuery) -> Option<Timeline> {
        let same = |t: &Timeline| match q {
            ConnQuery::Cookie(c) => t.cookie == c,
            ConnQuery::Ends(l, r) => t.ends().is_some_and(|(tl, tr)| {
                canonical(tl) == canonical(l) && canonical(tr) == canonical(r)
            }),
        };
        let open = match q {
            ConnQuery::Cookie(c) => self.timelines.get(c),
            ConnQuery::Ends(..) => self
                .timelines
                .iter()
                .filter(|t| same(t))
                .max_by_key(|t| t.first_ns)
                .and_then(|t| self.timelines.get(t.cookie)),
        };
        open.or_else(|| self.closed.iter().rev().find(|t| same(t)).cloned())
    }

    /// A timeline as `trace --timeline` prints it (NDJSON with `json`).
    pub fn render(&self, t: &Timeline, json: bool) -> String {
        let printer = if json { &self.json } else { &self.text };
        let mut out = Vec::new();
        // Writing into a Vec cannot fail but for a record that would not serialize.
        if let Err(e) = printer.write_timeline(&mut out, t) {
            return format!("cannot render the timeline: {e}\n");
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Events left out of full rings, and timelines dropped to make room.
    pub fn overflow(&self) -> (u64, u64) {
        (self.timelines.left_out(), self.timelines.evicted())
    }
}

fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_parse_and_bad_ones_say_why() {
        assert_eq!(
            ConnQuery::parse("cookie=42").unwrap(),
            (ConnQuery::Cookie(42), false)
        );
        assert_eq!(
            ConnQuery::parse("cookie=sk:2a&format=json").unwrap(),
            (ConnQuery::Cookie(42), true)
        );
        let (q, _) = ConnQuery::parse("local=127.0.0.1:5&remote=%5B::1%5D:80").unwrap();
        assert_eq!(
            q,
            ConnQuery::Ends("127.0.0.1:5".parse().unwrap(), "[::1]:80".parse().unwrap())
        );
        assert!(ConnQuery::parse("cookie=x").is_err());
        assert!(ConnQuery::parse("local=1.2.3.4:5").is_err());
        assert!(ConnQuery::parse("nope=1").is_err());
    }
}
