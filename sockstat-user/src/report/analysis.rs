//! `sockstat report`'s analysis: sockets (from one or many namespaces) in, findings out. No
//! I/O: the command collects, this judges, a view prints.
use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use serde::Serialize;

use super::{
    leaks::{self, Finding},
    ports::{self, PortHeadroom, PortSettings, PortUse},
};
use crate::{
    alert::{Alert, AlertStatus},
    diag::{Endpoint, Netid, SocketRecord},
    procs::Owners,
    tcp::TcpState,
};

/// A socket and the namespace it was found in.
pub struct Labeled {
    pub netns: String,
    pub record: SocketRecord,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Count {
    pub key: String,
    pub count: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Connection {
    pub netns: String,
    pub state: String,
    pub local: String,
    pub peer: String,
    pub process: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Listener {
    pub netns: String,
    pub netid: &'static str,
    pub local: String,
    pub port: u16,
    pub process: Option<String>,
    pub allowed: bool,
    /// Who can reach it, by its address; listeners are listed most exposed first.
    pub exposure: Exposure,
}

/// Who can reach a listener, by the address it is bound to, most exposed first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Exposure {
    /// A public address: the internet, unless a firewall says otherwise.
    Public,
    /// 0.0.0.0 or ::: every interface, so every network the host is on.
    AllInterfaces,
    /// A private, link-local or CGNAT address: the local networks.
    Private,
    /// Loopback (Docker's embedded DNS at 127.0.0.11 included): this host (or container).
    Loopback,
}

impl Exposure {
    pub fn of(ip: IpAddr) -> Exposure {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        if ip.is_unspecified() {
            Exposure::AllInterfaces
        } else if ip.is_loopback() {
            Exposure::Loopback
        } else if is_internal(ip) {
            Exposure::Private
        } else {
            Exposure::Public
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Exposure::Public => "public",
            Exposure::AllInterfaces => "all-interfaces",
            Exposure::Private => "private",
            Exposure::Loopback => "loopback",
        }
    }

    /// Reachable from another host.
    pub fn is_exposed(self) -> bool {
        self != Exposure::Loopback
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Backlog {
    pub netns: String,
    pub listener: String,
    pub syn_recv: u64,
    /// The listen() backlog (sock_diag's Send-Q of a listener).
    pub backlog: u64,
    pub pct: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Leaks {
    pub close_wait: u64,
    /// Seconds since the oldest CLOSE-WAIT socket last received data (its peer's FIN):
    /// tcp_info's last_data_recv.
    pub close_wait_oldest_s: Option<f64>,
    pub time_wait: u64,
    /// net.ipv4.tcp_max_tw_buckets, when readable.
    pub tcp_max_tw_buckets: Option<u64>,
    pub time_wait_pct: Option<f64>,
    pub syn_recv_backlogs: Vec<Backlog>,
    pub findings: Vec<Finding>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub namespaces: Vec<String>,
    pub total: u64,
    pub states: Vec<Count>,
    pub top_remote: Vec<Count>,
    pub top_local_ports: Vec<Count>,
    pub external: Vec<Connection>,
    pub listeners: Vec<Listener>,
    pub unusual_listeners: u64,
    /// Unusual listeners another host can reach (not on loopback).
    pub exposed_unusual_listeners: u64,
    pub leaks: Leaks,
    /// Ephemeral-port headroom per (source, destination), soonest exhaustion first (at
    /// most `PORTS_SHOWN`).
    pub ports: Vec<PortHeadroom>,
    pub alerts: Vec<AlertStatus>,
    /// The findings of each pod (or other named container), by the namespaces it owns;
    /// empty where no namespace belongs to a named container.
    pub pods: Vec<PodFindings>,
}

/// One pod's share of a report: its sockets and what was found among them.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PodFindings {
    /// `namespace/pod`, or a container's name.
    pub pod: String,
    pub netns: Vec<String>,
    pub sockets: u64,
    pub listeners: u64,
    /// Listeners another host can reach.
    pub exposed_listeners: u64,
    /// Listeners on ports outside --allow-ports.
    pub unusual_listeners: u64,
    pub external: u64,
    pub close_wait: u64,
    pub time_wait: u64,
}

/// Each pod's findings, from the report and the sockets it was made of; `pods` maps a
/// namespace's label to its pod. Busiest first.
pub fn per_pod(
    labeled: &[Labeled],
    report: &Report,
    pods: &HashMap<String, String>,
) -> Vec<PodFindings> {
    type ByPod<'p> = std::collections::BTreeMap<&'p str, PodFindings>;
    fn entry<'m, 'p>(
        by_pod: &'m mut ByPod<'p>,
        pods: &'p HashMap<String, String>,
        netns: &str,
    ) -> Option<&'m mut PodFindings> {
        let pod = pods.get(netns)?;
        let f = by_pod.entry(pod.as_str()).or_insert_with(|| PodFindings {
            pod: pod.clone(),
            ..PodFindings::default()
        });
        if !f.netns.iter().any(|n| n == netns) {
            f.netns.push(netns.to_string());
        }
        Some(f)
    }
    let mut by_pod = ByPod::new();
    for l in labeled {
        if let Some(f) = entry(&mut by_pod, pods, &l.netns) {
            f.sockets += 1;
            let tcp = l.record.netid == Netid::Tcp;
            match TcpState::from_kernel(l.record.state).filter(|_| tcp) {
                Some(TcpState::CloseWait) => f.close_wait += 1,
                Some(TcpState::TimeWait) => f.time_wait += 1,
                _ => {}
            }
        }
    }
    for listener in &report.listeners {
        if let Some(f) = entry(&mut by_pod, pods, &listener.netns) {
            f.listeners += 1;
            f.exposed_listeners += u64::from(listener.exposure.is_exposed());
            f.unusual_listeners += u64::from(!listener.allowed);
        }
    }
    for c in &report.external {
        if let Some(f) = entry(&mut by_pod, pods, &c.netns) {
            f.external += 1;
        }
    }
    let mut out: Vec<PodFindings> = by_pod.into_values().collect();
    out.sort_by(|a, b| b.sockets.cmp(&a.sockets).then_with(|| a.pod.cmp(&b.pod)));
    out
}

/// Destinations listed in a report's port headroom.
const PORTS_SHOWN: usize = 20;

/// The names `--alert` accepts for a report.
pub fn metric_names() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = TcpState::SHOWN.iter().map(|s| s.lower_name()).collect();
    v.extend([
        "total",
        "external",
        "unusual-listeners",
        "exposed-unusual-listeners",
        "close-wait-age",
        "time-wait-pct",
        "syn-recv-pct",
        "port-exhaustion-seconds",
        "ports-available",
    ]);
    v
}

impl Report {
    pub fn metric(&self, name: &str) -> Option<f64> {
        Some(match name {
            "total" => self.total as f64,
            "external" => self.external.len() as f64,
            "unusual-listeners" => self.unusual_listeners as f64,
            "exposed-unusual-listeners" => self.exposed_unusual_listeners as f64,
            "close-wait-age" => self.leaks.close_wait_oldest_s.unwrap_or(0.0),
            "time-wait-pct" => self.leaks.time_wait_pct.unwrap_or(0.0),
            "port-exhaustion-seconds" => ports::soonest_exhaustion(&self.ports),
            "ports-available" => ports::fewest_available(&self.ports),
            "syn-recv-pct" => self
                .leaks
                .syn_recv_backlogs
                .iter()
                .map(|b| b.pct)
                .fold(0.0, f64::max),
            state => {
                let key = TcpState::SHOWN
                    .iter()
                    .find(|s| s.lower_name() == state)?
                    .ss_name();
                self.states
                    .iter()
                    .find(|c| c.key == key)
                    .map_or(0.0, |c| c.count as f64)
            }
        })
    }
}

/// A port as the report counts it: outgoing connections each take an ephemeral port, so
/// the ephemeral range is one group that says how many.
pub fn port_group(port: u16, (low, high): (u16, u16)) -> String {
    if (low..=high).contains(&port) {
        format!("{low}-{high} (ephemeral)")
    } else {
        port.to_string()
    }
}

/// Loopback, private (RFC 1918, ULA), link-local, CGNAT (RFC 6598) and unspecified
/// addresses are internal; anything else is an external peer.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => internal_v4(v4),
            None => internal_v6(v6),
        },
    }
}

fn internal_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || (o[0] == 100 && (64..128).contains(&o[1]))
}

fn internal_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
}

fn state_name(r: &SocketRecord) -> String {
    if r.netid == Netid::Udp {
        return if r.state == TcpState::Established.kernel_number() {
            "ESTAB".into()
        } else {
            "UNCONN".into()
        };
    }
    TcpState::from_kernel(r.state)
        .map_or(format!("UNKNOWN({})", r.state), |s| s.ss_name().to_string())
}

fn process_of(owners: &Owners, inode: u32) -> Option<String> {
    let first = owners.of(inode).first()?;
    Some(format!("{}[{}]", owners.comm(first.pid), first.pid))
}

fn top(map: HashMap<String, u64>, n: usize) -> Vec<Count> {
    let mut v: Vec<Count> = map
        .into_iter()
        .map(|(key, count)| Count { key, count })
        .collect();
    v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
    v.truncate(n);
    v
}

pub struct Settings<'a> {
    pub allow_ports: &'a [u16],
    /// `ip_local_port_range`: local ports in it are counted as one group, not one by one.
    pub ephemeral: (u16, u16),
    /// Each namespace's port settings, by label.
    pub ports: &'a HashMap<&'a str, PortSettings>,
    pub tcp_max_tw_buckets: Option<u64>,
    pub alerts: &'a [Alert],
}

pub fn analyse(
    sockets: &[Labeled],
    owners: &Owners,
    namespaces: Vec<String>,
    s: &Settings,
) -> Report {
    let mut tally = Tally::default();
    for l in sockets {
        tally.add(l, owners, s);
    }
    let syn_recv_backlogs = backlogs(sockets, &tally.syn_recv);
    let time_wait_pct = s
        .tcp_max_tw_buckets
        .filter(|&m| m > 0)
        .map(|m| tally.time_wait as f64 * 100.0 / m as f64);
    let mut findings: Vec<Finding> = Vec::new();
    findings.extend(leaks::close_wait(
        tally.close_wait,
        tally
            .close_wait_oldest
            .map(std::time::Duration::from_secs_f64),
    ));
    findings.extend(leaks::time_wait(tally.time_wait, s.tcp_max_tw_buckets));
    findings.extend(
        syn_recv_backlogs
            .iter()
            .filter_map(|b| leaks::syn_backlog(&b.listener, b.syn_recv, b.backlog)),
    );
    let mut ports = ports::forecast(sockets.iter().filter_map(port_use), s.ports);
    findings.extend(ports.iter().filter_map(leaks::port_exhaustion));
    ports.truncate(PORTS_SHOWN);
    let unusual_listeners = tally.listeners.iter().filter(|l| !l.allowed).count() as u64;
    let exposed_unusual_listeners = tally
        .listeners
        .iter()
        .filter(|l| !l.allowed && l.exposure.is_exposed())
        .count() as u64;
    tally.listeners.sort_by(|a, b| {
        (a.exposure, a.allowed, a.port, &a.netns, &a.local)
            .cmp(&(b.exposure, b.allowed, b.port, &b.netns, &b.local))
    });
    let mut state_counts: Vec<Count> = tally
        .states
        .into_iter()
        .map(|(key, count)| Count { key, count })
        .collect();
    state_counts.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
    let mut report = Report {
        namespaces,
        total: tally.total,
        states: state_counts,
        top_remote: top(tally.remote, 10),
        top_local_ports: top(tally.ports, 10),
        external: tally.external,
        listeners: tally.listeners,
        unusual_listeners,
        exposed_unusual_listeners,
        leaks: Leaks {
            close_wait: tally.close_wait,
            close_wait_oldest_s: tally.close_wait_oldest,
            time_wait: tally.time_wait,
            tcp_max_tw_buckets: s.tcp_max_tw_buckets,
            time_wait_pct,
            syn_recv_backlogs,
            findings,
        },
        ports,
        alerts: Vec::new(),
        pods: Vec::new(),
    };
    report.alerts = s
        .alerts
        .iter()
        .map(|a| a.check(|m| report.metric(m)))
        .collect();
    report
}

/// What one pass over the sockets counts.
#[derive(Default)]
struct Tally {
    total: u64,
    states: HashMap<String, u64>,
    remote: HashMap<String, u64>,
    ports: HashMap<String, u64>,
    external: Vec<Connection>,
    listeners: Vec<Listener>,
    close_wait: u64,
    close_wait_oldest: Option<f64>,
    time_wait: u64,
    /// SYN-RECV sockets per (netns, local port).
    syn_recv: HashMap<(String, u16), u64>,
}

impl Tally {
    fn add(&mut self, l: &Labeled, owners: &Owners, s: &Settings) {
        let Labeled { netns, record: r } = l;
        let (Endpoint::Inet(local), Endpoint::Inet(peer)) = (&r.local, &r.peer) else {
            return;
        };
        self.total += 1;
        let tcp = r.netid == Netid::Tcp;
        let state = state_name(r);
        if tcp {
            *self.states.entry(state.clone()).or_default() += 1;
        }
        let listening = (tcp && r.state == TcpState::Listen.kernel_number())
            || (r.netid == Netid::Udp
                && peer.port() == 0
                && r.state != TcpState::Established.kernel_number());
        if listening {
            self.listeners.push(Listener {
                netns: netns.clone(),
                netid: r.netid.name(),
                local: local.to_string(),
                port: local.port(),
                process: process_of(owners, r.inode),
                allowed: s.allow_ports.contains(&local.port()),
                exposure: Exposure::of(local.ip()),
            });
            return;
        }
        if !peer.ip().is_unspecified() {
            *self.remote.entry(peer.ip().to_string()).or_default() += 1;
            *self
                .ports
                .entry(port_group(local.port(), s.ephemeral))
                .or_default() += 1;
            if !is_internal(peer.ip()) {
                self.external.push(Connection {
                    netns: netns.clone(),
                    state,
                    local: local.to_string(),
                    peer: peer.to_string(),
                    process: process_of(owners, r.inode),
                });
            }
        }
        if !tcp {
            return;
        }
        match TcpState::from_kernel(r.state) {
            Some(TcpState::CloseWait) => {
                self.close_wait += 1;
                if let Some(info) = &r.tcp_info {
                    let age = f64::from(info.last_data_recv) / 1000.0;
                    self.close_wait_oldest =
                        Some(self.close_wait_oldest.map_or(age, |o: f64| o.max(age)));
                }
            }
            Some(TcpState::TimeWait) => self.time_wait += 1,
            Some(TcpState::SynRecv) => {
                *self
                    .syn_recv
                    .entry((netns.clone(), local.port()))
                    .or_default() += 1
            }
            _ => {}
        }
    }
}

/// A TCP socket as the port forecast reads it: a TIME-WAIT socket's age from its timer
/// (armed for 60 s when it entered).
fn port_use(l: &Labeled) -> Option<PortUse<&str>> {
    let r = &l.record;
    let (Endpoint::Inet(local), Endpoint::Inet(remote)) = (&r.local, &r.peer) else {
        return None;
    };
    if r.netid != Netid::Tcp {
        return None;
    }
    let state = TcpState::from_kernel(r.state)?;
    let time_wait_age_s = r
        .timer
        .filter(|t| state == TcpState::TimeWait && t.kind == 3)
        .map(|t| (60.0 - f64::from(t.expires_ms) / 1000.0).max(0.0));
    Some(PortUse {
        netns: l.netns.as_str(),
        state,
        local: *local,
        remote: *remote,
        time_wait_age_s,
    })
}

/// Each TCP listener with SYN-RECV children, against its backlog.
fn backlogs(sockets: &[Labeled], syn_recv: &HashMap<(String, u16), u64>) -> Vec<Backlog> {
    sockets
        .iter()
        .filter(|l| {
            l.record.netid == Netid::Tcp && l.record.state == TcpState::Listen.kernel_number()
        })
        .filter_map(|l| {
            let Endpoint::Inet(local) = &l.record.local else {
                return None;
            };
            let n = *syn_recv.get(&(l.netns.clone(), local.port()))?;
            let backlog = u64::from(l.record.send_q);
            Some(Backlog {
                netns: l.netns.clone(),
                listener: local.to_string(),
                syn_recv: n,
                backlog,
                pct: if backlog > 0 {
                    n as f64 * 100.0 / backlog as f64
                } else {
                    100.0
                },
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sock(netid: Netid, state: TcpState, local: &str, peer: &str, inode: u32) -> Labeled {
        let mut r = SocketRecord::inet(
            netid,
            state.kernel_number(),
            local.parse().unwrap(),
            peer.parse().unwrap(),
        );
        r.inode = inode;
        Labeled {
            netns: "init".into(),
            record: r,
        }
    }

    #[test]
    fn classifies_addresses() {
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "172.20.0.1",
            "192.168.1.1",
            "169.254.0.9",
            "100.64.0.1",
            "100.127.255.255",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "0.0.0.0",
        ] {
            assert!(is_internal(internal.parse().unwrap()), "{internal}");
        }
        for external in [
            "8.8.8.8",
            "198.51.100.7",
            "100.128.0.1",
            "172.32.0.1",
            "2001:db8::1",
            "::ffff:1.1.1.1",
        ] {
            assert!(!is_internal(external.parse().unwrap()), "{external}");
        }
    }

    #[test]
    fn finds_unusual_listeners_external_peers_and_leaks() {
        let sockets = vec![
            sock(Netid::Tcp, TcpState::Listen, "0.0.0.0:22", "0.0.0.0:0", 1),
            sock(Netid::Tcp, TcpState::Listen, "0.0.0.0:4444", "0.0.0.0:0", 2),
            sock(
                Netid::Tcp,
                TcpState::Listen,
                "127.0.0.11:40123",
                "0.0.0.0:0",
                0,
            ),
            sock(
                Netid::Tcp,
                TcpState::Listen,
                "198.51.100.1:8443",
                "0.0.0.0:0",
                0,
            ),
            sock(
                Netid::Tcp,
                TcpState::Listen,
                "10.0.0.1:9100",
                "0.0.0.0:0",
                0,
            ),
            sock(
                Netid::Tcp,
                TcpState::Established,
                "10.0.0.1:41000",
                "10.0.0.9:5432",
                0,
            ),
            sock(
                Netid::Tcp,
                TcpState::Established,
                "10.0.0.1:22",
                "198.51.100.7:50000",
                3,
            ),
            sock(
                Netid::Tcp,
                TcpState::CloseWait,
                "127.0.0.1:8080",
                "127.0.0.1:40000",
                4,
            ),
            sock(
                Netid::Tcp,
                TcpState::TimeWait,
                "127.0.0.1:40001",
                "127.0.0.1:8080",
                0,
            ),
        ];
        let alerts = [
            Alert::parse("unusual-listeners > 0", &metric_names()).unwrap(),
            Alert::parse("external >= 2", &metric_names()).unwrap(),
        ];
        let r = analyse(
            &sockets,
            &Owners::default(),
            vec!["init".into()],
            &Settings {
                allow_ports: &[22, 80],
                ephemeral: (32768, 60999),
                tcp_max_tw_buckets: Some(100),
                ports: &HashMap::new(),
                alerts: &alerts,
            },
        );
        assert_eq!(r.total, 9);
        assert_eq!(r.unusual_listeners, 4);
        assert_eq!(r.exposed_unusual_listeners, 3);
        // Most exposed first; Docker's resolver on loopback last.
        let ranked: Vec<(&str, Exposure, bool)> = r
            .listeners
            .iter()
            .map(|l| (l.local.as_str(), l.exposure, l.allowed))
            .collect();
        assert_eq!(
            ranked,
            [
                ("198.51.100.1:8443", Exposure::Public, false),
                ("0.0.0.0:4444", Exposure::AllInterfaces, false),
                ("0.0.0.0:22", Exposure::AllInterfaces, true),
                ("10.0.0.1:9100", Exposure::Private, false),
                ("127.0.0.11:40123", Exposure::Loopback, false),
            ]
        );
        // Ephemeral local ports are one group; service ports stay themselves.
        let ports: Vec<(&str, u64)> = r
            .top_local_ports
            .iter()
            .map(|c| (c.key.as_str(), c.count))
            .collect();
        assert_eq!(
            ports,
            [("32768-60999 (ephemeral)", 2), ("22", 1), ("8080", 1)]
        );
        assert_eq!(r.external.len(), 1);
        assert_eq!(r.external[0].peer, "198.51.100.7:50000");
        assert_eq!(r.leaks.close_wait, 1);
        assert_eq!(r.leaks.time_wait_pct, Some(1.0));
        assert!(r.leaks.findings.iter().any(|f| f.kind == "close-wait"));
        assert!(r.alerts[0].firing);
        assert!(!r.alerts[1].firing);
        assert_eq!(r.metric("close-wait"), Some(1.0));
        assert_eq!(r.metric("estab"), Some(2.0));
        assert_eq!(r.metric("exposed-unusual-listeners"), Some(3.0));
    }
}
