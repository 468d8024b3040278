//! Interfaces and routes through rtnetlink (NETLINK_ROUTE): the same dump loop as sock_diag
//! (`diag::netlink`: DUMP_INTR retries, ENOBUFS, malformed replies), with messages decoded
//! by netlink-packet-route. Collectors return plain records; views format them.
use std::net::IpAddr;

use netlink_packet_core::ParseableParametrized;
use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    link::{LinkAttribute, LinkFlags},
    route::{RouteAddress, RouteAttribute, RouteHeader, RouteProtocol, RouteScope, RouteType},
};
use serde::Serialize;

use crate::diag::{DiagError, DiagSocket, VecSink};

const RTM_GETLINK: u16 = 18;
const RTM_NEWLINK: u16 = 16;
const RTM_GETROUTE: u16 = 26;
const RTM_NEWROUTE: u16 = 24;

/// One interface with its IFLA_STATS64 counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mtu: u32,
    /// netstat -i's flags: B(roadcast) L(oopback) M(ulticast) O(noarp) P(ointopoint)
    /// R(unning) U(p).
    pub flags: String,
    pub rx_packets: u64,
    pub rx_errors: u64,
    /// rx_dropped + rx_missed_errors, as /proc/net/dev's "drop".
    pub rx_dropped: u64,
    /// rx_fifo_errors: netstat's RX-OVR.
    pub rx_overruns: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
    /// tx_fifo_errors: netstat's TX-OVR.
    pub tx_overruns: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// One route of the main table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Route {
    pub family: &'static str,
    /// The destination prefix, e.g. "10.0.0.0/24" or "default".
    pub destination: String,
    pub prefix_len: u8,
    pub gateway: Option<IpAddr>,
    pub preferred_source: Option<IpAddr>,
    pub device: String,
    pub metric: u32,
    pub table: u32,
    pub protocol: String,
    pub scope: String,
    #[serde(rename = "type")]
    pub kind: String,
}

fn decode_error(what: &str, e: impl std::fmt::Display) -> DiagError {
    DiagError::Malformed(format!("{what}: {e}"))
}

/// Every interface, in index order.
pub fn links() -> Result<Vec<Link>, DiagError> {
    let mut sock = DiagSocket::open_route()?;
    // struct ifinfomsg, all zero: every family, every link.
    let body = [0u8; 16];
    let mut sink = VecSink::default();
    sock.dump("link", RTM_GETLINK, &body, &mut sink, |payload| {
        let msg = RouteNetlinkMessage::parse_with_param(payload, RTM_NEWLINK)
            .map_err(|e| decode_error("link message", e))?;
        let RouteNetlinkMessage::NewLink(link) = msg else {
            return Ok(None);
        };
        let mut out = Link {
            index: link.header.index,
            flags: flag_letters(link.header.flags),
            ..Link::default()
        };
        for attr in &link.attributes {
            match attr {
                LinkAttribute::IfName(n) => out.name = n.clone(),
                LinkAttribute::Mtu(m) => out.mtu = *m,
                LinkAttribute::Stats64(s) => {
                    out.rx_packets = s.rx_packets;
                    out.rx_errors = s.rx_errors;
                    out.rx_dropped = s.rx_dropped + s.rx_missed_errors;
                    out.rx_overruns = s.rx_fifo_errors;
                    out.tx_packets = s.tx_packets;
                    out.tx_errors = s.tx_errors;
                    out.tx_dropped = s.tx_dropped;
                    out.tx_overruns = s.tx_fifo_errors;
                    out.rx_bytes = s.rx_bytes;
                    out.tx_bytes = s.tx_bytes;
                }
                _ => {}
            }
        }
        Ok(Some(out))
    })?;
    let mut links = sink.items;
    links.sort_by_key(|l| l.index);
    Ok(links)
}

fn flag_letters(f: LinkFlags) -> String {
    let mut s = String::new();
    for (flag, letter) in [
        (LinkFlags::Broadcast, 'B'),
        (LinkFlags::Loopback, 'L'),
        (LinkFlags::Multicast, 'M'),
        (LinkFlags::Noarp, 'O'),
        (LinkFlags::Pointopoint, 'P'),
        (LinkFlags::Running, 'R'),
        (LinkFlags::Up, 'U'),
    ] {
        if f.contains(flag) {
            s.push(letter);
        }
    }
    s
}

/// The main table's routes of both families (as `ip route` and `ip -6 route` list them:
/// unicast and the other kinds, not the local/broadcast entries of the local table).
pub fn routes() -> Result<Vec<Route>, DiagError> {
    let names: std::collections::HashMap<u32, String> =
        links()?.into_iter().map(|l| (l.index, l.name)).collect();
    let mut sock = DiagSocket::open_route()?;
    let mut all = Vec::new();
    for family in [libc::AF_INET as u8, libc::AF_INET6 as u8] {
        // struct rtmsg: family, then zeros (every table; filtered below).
        let mut body = [0u8; 12];
        body[0] = family;
        let mut sink = VecSink::default();
        sock.dump("route", RTM_GETROUTE, &body, &mut sink, |payload| {
            let msg = RouteNetlinkMessage::parse_with_param(payload, RTM_NEWROUTE)
                .map_err(|e| decode_error("route message", e))?;
            let RouteNetlinkMessage::NewRoute(route) = msg else {
                return Ok(None);
            };
            Ok(Some(route))
        })?;
        for r in sink.items {
            let h = &r.header;
            let mut table = u32::from(h.table);
            let mut gateway = None;
            let mut destination = None;
            let mut preferred_source = None;
            let mut oif = None;
            let mut metric = 0;
            for attr in &r.attributes {
                match attr {
                    RouteAttribute::Table(t) => table = *t,
                    RouteAttribute::Gateway(a) => gateway = ip_of(a),
                    RouteAttribute::Destination(a) => destination = ip_of(a),
                    RouteAttribute::PrefSource(a) => preferred_source = ip_of(a),
                    RouteAttribute::Oif(i) => oif = Some(*i),
                    RouteAttribute::Priority(p) => metric = *p,
                    _ => {}
                }
            }
            if table != u32::from(RouteHeader::RT_TABLE_MAIN) {
                continue;
            }
            // ip -6 route hides the kernel's cache clones; there are none in a dump of the
            // main table, but multicast/anycast entries live only in the local table.
            let v6 = h.address_family == AddressFamily::Inet6;
            let destination = match destination {
                Some(ip) => format!("{ip}/{}", h.destination_prefix_length),
                None if h.destination_prefix_length == 0 => "default".to_string(),
                None => format!("?/{}", h.destination_prefix_length),
            };
            all.push(Route {
                family: if v6 { "inet6" } else { "inet" },
                destination,
                prefix_len: h.destination_prefix_length,
                gateway,
                preferred_source,
                device: oif.and_then(|i| names.get(&i).cloned()).unwrap_or_default(),
                metric,
                table,
                protocol: protocol_name(h.protocol),
                scope: scope_name(h.scope),
                kind: kind_name(h.kind),
            });
        }
    }
    Ok(all)
}

fn ip_of(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

fn protocol_name(p: RouteProtocol) -> String {
    match p {
        RouteProtocol::Kernel => "kernel".into(),
        RouteProtocol::Boot => "boot".into(),
        RouteProtocol::Static => "static".into(),
        RouteProtocol::Dhcp => "dhcp".into(),
        RouteProtocol::Ra => "ra".into(),
        other => format!("{}", u8::from(other)),
    }
}

fn scope_name(s: RouteScope) -> String {
    match s {
        RouteScope::Universe => "global".into(),
        RouteScope::Link => "link".into(),
        RouteScope::Host => "host".into(),
        RouteScope::Site => "site".into(),
        RouteScope::NoWhere => "nowhere".into(),
        other => format!("{}", u8::from(other)),
    }
}

fn kind_name(k: RouteType) -> String {
    match k {
        RouteType::Unicast => "unicast".into(),
        RouteType::Local => "local".into(),
        RouteType::Broadcast => "broadcast".into(),
        RouteType::Anycast => "anycast".into(),
        RouteType::Multicast => "multicast".into(),
        RouteType::BlackHole => "blackhole".into(),
        RouteType::Unreachable => "unreachable".into(),
        RouteType::Prohibit => "prohibit".into(),
        other => format!("{}", u8::from(other)),
    }
}
