//! Ephemeral-port headroom per destination, and when it runs out.
//!
//! connect() without bind() takes a local port from `ip_local_port_range`, skipping the
//! reserved ones (`ip_local_reserved_ports`) and those bound explicitly (listeners, bind()),
//! and any port already in a 4-tuple with the same source address and destination: so the
//! limit is per (source address, destination address:port). A TIME-WAIT socket holds its
//! port for 60 s unless `tcp_tw_reuse` lets connect() take it over (1: always, given
//! timestamps; 2, the default: only where either address is a loopback one), and then only
//! once it is a second old (`tcp_tw_reuse_delay`). When no port is left, connect() fails
//! with EADDRNOTAVAIL.
//!
//! The connect rate comes from the TIME-WAIT sockets toward the destination: those that
//! entered TIME-WAIT in the last 10 s (else the last 60 s), per second. Each such
//! connection took a port that stays taken for TIME-WAIT's 60 s, so at that rate the ports
//! left last `available / rate` seconds: the forecast. Connections closed by the other end
//! leave no TIME-WAIT here and hold no port after they close, so they rightly add nothing.
use std::{
    collections::HashMap,
    fmt::Display,
    hash::Hash,
    net::{IpAddr, SocketAddr},
};

use serde::Serialize;

use crate::tcp::TcpState;

/// TCP_TIMEWAIT_LEN.
const TIME_WAIT_S: f64 = 60.0;
/// The window the connect rate is measured over first.
const RECENT_S: f64 = 10.0;
/// How old a TIME-WAIT socket must be before connect() may reuse its port
/// (`tcp_tw_reuse_delay`'s default).
const REUSE_AFTER_S: f64 = 1.0;

/// A namespace's settings that decide which ports connect() may take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortSettings {
    /// `ip_local_port_range`, inclusive.
    pub range: (u16, u16),
    /// `ip_local_reserved_ports`, as inclusive ranges.
    pub reserved: Vec<(u16, u16)>,
    /// `tcp_tw_reuse`: 0, 1 or 2.
    pub tw_reuse: u8,
}

impl PortSettings {
    /// The settings of the namespace the calling thread is in (/proc/sys/net follows it);
    /// the kernel's defaults where a file cannot be read.
    pub fn here() -> Self {
        let read = |name: &str| std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}"));
        Self::parse(
            &read("ip_local_port_range").unwrap_or_default(),
            &read("ip_local_reserved_ports").unwrap_or_default(),
            &read("tcp_tw_reuse").unwrap_or_default(),
        )
    }

    fn parse(range: &str, reserved: &str, tw_reuse: &str) -> Self {
        let mut it = range.split_whitespace().map(str::parse::<u16>);
        let range = match (it.next(), it.next()) {
            (Some(Ok(low)), Some(Ok(high))) if low <= high => (low, high),
            _ => (32768, 60999),
        };
        let reserved = reserved
            .trim()
            .split(',')
            .filter_map(|part| {
                let (low, high) = part.split_once('-').unwrap_or((part, part));
                Some((low.trim().parse().ok()?, high.trim().parse().ok()?))
            })
            .collect();
        Self {
            range,
            reserved,
            tw_reuse: tw_reuse.trim().parse().unwrap_or(2),
        }
    }

    fn ephemeral(&self, port: u16) -> bool {
        (self.range.0..=self.range.1).contains(&port)
    }

    fn reserved_in_range(&self) -> u64 {
        (self.range.0..=self.range.1)
            .filter(|p| self.reserved.iter().any(|(l, h)| (l..=h).contains(&p)))
            .count() as u64
    }

    /// Whether connect() may take over a TIME-WAIT socket's port for this pair.
    fn reuses_time_wait(&self, source: IpAddr, destination: IpAddr) -> bool {
        match self.tw_reuse {
            1 => true,
            2 => source.to_canonical().is_loopback() || destination.to_canonical().is_loopback(),
            _ => false,
        }
    }
}

/// One TCP socket as the forecast needs it; `N` names its namespace (a label, an inode).
#[derive(Clone, Copy, Debug)]
pub struct PortUse<N> {
    pub netns: N,
    pub state: TcpState,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// How long a TIME-WAIT socket has been in it, in seconds (`None`: unknown).
    pub time_wait_age_s: Option<f64>,
}

/// A destination's ports from one source address.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PortHeadroom {
    pub netns: String,
    pub source: IpAddr,
    pub destination: SocketAddr,
    /// Local ports in 4-tuples toward it, TIME-WAIT included.
    pub in_use: u64,
    pub time_wait: u64,
    /// TIME-WAIT ports `tcp_tw_reuse` lets connect() take again.
    pub reusable: u64,
    /// Ports connect() may pick from: the range less reserved and explicitly bound ports.
    pub capacity: u64,
    pub available: u64,
    /// New connections per second, from recent TIME-WAIT entries; null when none.
    pub connects_per_s: Option<f64>,
    /// Seconds until `available` is used up at that rate; null without a rate.
    pub exhaustion_s: Option<f64>,
}

#[derive(Default)]
struct Tally {
    in_use: u64,
    time_wait: u64,
    /// TIME-WAIT sockets old enough to be reused, if the settings allow it.
    settled: u64,
    recent: u64,
    minute: u64,
}

/// Every destination reached from an ephemeral port, ranked by the forecast (soonest
/// first, then the fewest ports left). `settings` is per namespace label; a namespace
/// without an entry is skipped.
pub fn forecast<N: Copy + Eq + Hash + Display>(
    sockets: impl IntoIterator<Item = PortUse<N>>,
    settings: &HashMap<N, PortSettings>,
) -> Vec<PortHeadroom> {
    let mut bound: HashMap<N, Vec<u16>> = HashMap::new();
    let mut pairs: HashMap<(N, IpAddr, SocketAddr), Tally> = HashMap::new();
    for s in sockets {
        let Some(set) = settings.get(&s.netns) else {
            continue;
        };
        if !set.ephemeral(s.local.port()) {
            continue;
        }
        if s.state == TcpState::Listen || s.remote.port() == 0 {
            bound.entry(s.netns).or_default().push(s.local.port());
            continue;
        }
        let key = (s.netns, s.local.ip().to_canonical(), canonical(s.remote));
        let t = pairs.entry(key).or_default();
        t.in_use += 1;
        if s.state == TcpState::TimeWait {
            t.time_wait += 1;
            if s.time_wait_age_s.is_none_or(|age| age >= REUSE_AFTER_S) {
                t.settled += 1;
            }
            match s.time_wait_age_s {
                Some(age) if age <= RECENT_S => {
                    t.recent += 1;
                    t.minute += 1;
                }
                Some(age) if age <= TIME_WAIT_S => t.minute += 1,
                _ => {}
            }
        }
    }
    for ports in bound.values_mut() {
        ports.sort_unstable();
        ports.dedup();
    }
    let mut out: Vec<PortHeadroom> = pairs
        .into_iter()
        .filter_map(|((netns, source, destination), t)| {
            let set = settings.get(&netns)?;
            let size = u64::from(set.range.1 - set.range.0) + 1;
            let bound = bound.get(&netns).map_or(0, |p| p.len() as u64);
            let capacity = size.saturating_sub(set.reserved_in_range() + bound);
            let reuse = set.reuses_time_wait(source, destination.ip());
            let reusable = if reuse { t.settled } else { 0 };
            let available = capacity.saturating_sub(t.in_use - reusable);
            let connects_per_s = if t.recent > 0 {
                Some(t.recent as f64 / RECENT_S)
            } else if t.minute > 0 {
                Some(t.minute as f64 / TIME_WAIT_S)
            } else {
                None
            };
            // TIME-WAIT ports that connect() reuses come back after a second: only a rate
            // above the whole range a second could run them out, which no forecast from
            // TIME-WAIT ages can see. So there is none.
            let exhaustion_s = connects_per_s
                .filter(|_| !reuse)
                .map(|rate| available as f64 / rate);
            Some(PortHeadroom {
                netns: netns.to_string(),
                source,
                destination,
                in_use: t.in_use,
                time_wait: t.time_wait,
                reusable,
                capacity,
                available,
                connects_per_s,
                exhaustion_s,
            })
        })
        .collect();
    out.sort_by(|a, b| {
        let soon = |h: &PortHeadroom| h.exhaustion_s.unwrap_or(f64::INFINITY);
        soon(a)
            .total_cmp(&soon(b))
            .then(a.available.cmp(&b.available))
            .then_with(|| (&a.netns, a.destination).cmp(&(&b.netns, b.destination)))
    });
    out
}

/// The soonest forecast among `ports` (infinite when none has a rate): the alert metric
/// `port-exhaustion-seconds` of report and top.
pub fn soonest_exhaustion(ports: &[PortHeadroom]) -> f64 {
    ports
        .iter()
        .filter_map(|p| p.exhaustion_s)
        .fold(f64::INFINITY, f64::min)
}

/// The fewest ports left among `ports` (infinite when there is none): `ports-available`.
pub fn fewest_available(ports: &[PortHeadroom]) -> f64 {
    ports
        .iter()
        .map(|p| p.available as f64)
        .fold(f64::INFINITY, f64::min)
}

fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(tw_reuse: u8) -> HashMap<&'static str, PortSettings> {
        HashMap::from([(
            "ns",
            PortSettings::parse("40000 40019", "40005,40010-40011", &tw_reuse.to_string()),
        )])
    }

    fn conn(port: u16, state: TcpState, age: Option<f64>) -> PortUse<&'static str> {
        PortUse {
            netns: "ns",
            state,
            local: SocketAddr::from(([10, 0, 0, 1], port)),
            remote: SocketAddr::from(([10, 0, 0, 9], 5432)),
            time_wait_age_s: age,
        }
    }

    #[test]
    fn headroom_counts_reserved_and_time_wait_and_forecasts_from_recent_closes() {
        let mut socks: Vec<PortUse<&str>> = (0..10)
            .map(|i| conn(40000 + i, TcpState::TimeWait, Some(2.0)))
            .collect();
        socks.push(conn(40012, TcpState::Established, None));
        // Another destination, and a port outside the range: neither counts here.
        let mut other = conn(40013, TcpState::Established, None);
        other.remote = SocketAddr::from(([10, 0, 0, 8], 80));
        socks.push(other);
        socks.push(conn(1234, TcpState::Established, None));
        let f = forecast(socks, &settings(0));
        let h = f
            .iter()
            .find(|h| h.destination.port() == 5432)
            .expect("the destination");
        // 20 ports, 3 reserved; 11 in use.
        assert_eq!((h.capacity, h.in_use, h.time_wait), (17, 11, 10));
        assert_eq!((h.reusable, h.available), (0, 6));
        // 10 closes in the last 10 s: 1/s, so 6 s.
        assert_eq!(h.connects_per_s, Some(1.0));
        assert_eq!(h.exhaustion_s, Some(6.0));
        assert_eq!(f[0].destination.port(), 5432, "soonest first");
    }

    #[test]
    fn reused_time_wait_ports_are_headroom_and_no_forecast() {
        let socks: Vec<PortUse<&str>> = (0..10)
            .map(|i| conn(40000 + i, TcpState::TimeWait, Some(30.0)))
            .collect();
        let h = &forecast(socks.clone(), &settings(1))[0];
        assert_eq!((h.reusable, h.available, h.exhaustion_s), (10, 17, None));
        // Older closes only: the rate is per minute.
        let h = &forecast(socks, &settings(0))[0];
        assert_eq!(h.connects_per_s, Some(10.0 / 60.0));
        assert_eq!(h.available, 7);
    }

    #[test]
    fn settings_parse_the_proc_files() {
        let s = PortSettings::parse("32768\t60999\n", "\n", "2\n");
        assert_eq!(
            (s.range, s.reserved.len(), s.tw_reuse),
            ((32768, 60999), 0, 2)
        );
        assert!(s.reuses_time_wait("127.0.0.1".parse().unwrap(), "::1".parse().unwrap()));
        assert!(s.reuses_time_wait("10.0.0.1".parse().unwrap(), "127.0.0.1".parse().unwrap()));
        assert!(!s.reuses_time_wait("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()));
    }
}
