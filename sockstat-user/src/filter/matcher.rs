//! Evaluating a filter on a socket record in user space. Runs on every socket, whether or
//! not the kernel already applied the bytecode, with the kernel's semantics: an address
//! matches only within its family (or an IPv4 prefix against a v4-mapped IPv6 address).
use std::net::IpAddr;

use super::ast::{Cond, Expr, HostCond, Prefix, Side};
use crate::{
    diag::record::{Endpoint, SocketRecord},
    services,
};

pub fn matches(expr: &Expr, s: &SocketRecord) -> bool {
    match expr {
        Expr::And(xs) => xs.iter().all(|x| matches(x, s)),
        Expr::Or(xs) => xs.iter().any(|x| matches(x, s)),
        Expr::Not(a) => !matches(a, s),
        Expr::Cond(c) => cond(c, s),
    }
}

fn side(s: &SocketRecord, side: Side) -> &Endpoint {
    match side {
        Side::Local => &s.local,
        Side::Peer => &s.peer,
    }
}

fn cond(c: &Cond, s: &SocketRecord) -> bool {
    match c {
        Cond::Host { side: sd, host } => host_matches(host, side(s, *sd)),
        Cond::PortGe { side: sd, port } => inet_port(side(s, *sd)).is_some_and(|p| p >= *port),
        Cond::PortLe { side: sd, port } => inet_port(side(s, *sd)).is_some_and(|p| p <= *port),
        Cond::Dev(ifindex) => match &s.local {
            Endpoint::Packet { ifindex: i, .. } => i == ifindex,
            _ => s.ifindex == *ifindex,
        },
        Cond::Mark { value, mask } => s.mark.unwrap_or(0) & mask == *value,
        Cond::Cgroup(id) => s.cgroup_id.unwrap_or(0) == *id,
        Cond::Autobound => autobound(s),
    }
}

fn inet_port(e: &Endpoint) -> Option<u16> {
    match e {
        Endpoint::Inet(sa) => Some(sa.port()),
        _ => None,
    }
}

fn host_matches(host: &HostCond, e: &Endpoint) -> bool {
    match (host, e) {
        (HostCond::Inet { prefixes, port }, Endpoint::Inet(sa)) => {
            if port.is_some_and(|p| p != sa.port()) {
                return false;
            }
            prefixes.is_empty() || prefixes.iter().any(|p| prefix_matches(p, sa.ip()))
        }
        (HostCond::Unix(glob), Endpoint::Unix { name, .. }) => {
            unix_glob(glob, name.as_deref().unwrap_or(""))
        }
        (HostCond::Unix(glob), Endpoint::None) => unix_glob(glob, ""),
        (
            HostCond::Packet { protocol, ifindex },
            Endpoint::Packet {
                protocol: p,
                ifindex: i,
            },
        ) => protocol.is_none_or(|want| want == *p) && ifindex.is_none_or(|want| want == *i),
        _ => false,
    }
}

/// The first `len` bits of `ip` equal those of the prefix, within one family; an IPv4 prefix
/// also matches the IPv4 inside a v4-mapped IPv6 address.
pub fn prefix_matches(p: &Prefix, ip: IpAddr) -> bool {
    match (p.addr, ip) {
        (IpAddr::V4(a), IpAddr::V4(b)) => bits_eq(&a.octets(), &b.octets(), p.len),
        (IpAddr::V6(a), IpAddr::V6(b)) => bits_eq(&a.octets(), &b.octets(), p.len),
        (IpAddr::V4(a), IpAddr::V6(b)) => b
            .to_ipv4_mapped()
            .is_some_and(|m| bits_eq(&a.octets(), &m.octets(), p.len)),
        (IpAddr::V6(_), IpAddr::V4(_)) => false,
    }
}

fn bits_eq(a: &[u8], b: &[u8], len: u8) -> bool {
    let len = usize::from(len).min(a.len() * 8);
    let full = len / 8;
    if a[..full] != b[..full] {
        return false;
    }
    let rest = len % 8;
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    a[full] & mask == b[full] & mask
}

/// ss: unix sockets bound by the kernel (`@` + 5 hex digits, or unnamed); packet sockets
/// with no protocol and interface; inet ports in the ephemeral range. (The kernel also checks
/// that the port was not bound explicitly, when the filter runs there.)
fn autobound(s: &SocketRecord) -> bool {
    match &s.local {
        Endpoint::Unix { name, .. } => match name {
            None => true,
            Some(n) => {
                n.len() == 6
                    && n.starts_with('@')
                    && n[1..]
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            }
        },
        Endpoint::Packet { protocol, ifindex } => *protocol == 0 && *ifindex == 0,
        Endpoint::Inet(sa) => {
            let (lo, hi) = services::ephemeral_range();
            (lo..=hi).contains(&sa.port())
        }
        Endpoint::None => false,
    }
}

/// fnmatch(pattern, name, FNM_CASEFOLD): `*` also crosses `/`.
fn unix_glob(pattern: &str, name: &str) -> bool {
    let opts = glob::MatchOptions {
        case_sensitive: false,
        require_literal_separator: false,
        require_literal_leading_dot: false,
    };
    glob::Pattern::new(pattern).is_ok_and(|p| p.matches_with(name, opts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        diag::record::Netid,
        filter::{Filter, ParseContext},
    };

    fn rec(local: &str, peer: &str) -> SocketRecord {
        SocketRecord::inet(Netid::Tcp, 1, local.parse().unwrap(), peer.parse().unwrap())
    }

    fn m(filter: &str, r: &SocketRecord) -> bool {
        let f = Filter::parse_str(filter, &ParseContext::default()).unwrap();
        matches(f.expr.as_ref().unwrap(), r)
    }

    #[test]
    fn ports_addresses_and_precedence() {
        let r = rec("10.1.2.3:40000", "192.168.1.9:443");
        assert!(m("dport = :443", &r));
        assert!(m("( dport = :80 or dport = :443 )", &r));
        assert!(m("dport > :442 dport < :444", &r));
        assert!(!m("dport >= :444", &r));
        assert!(m("src 10.0.0.0/8", &r));
        assert!(m("src 10/8", &r), "ss's short IPv4 form");
        assert!(!m("src 10.0.0.0/16", &r));
        assert!(m("dst 192.168.1.9:443", &r));
        assert!(!m("dst 192.168.1.9:80", &r));
        assert!(m("src *:40000", &r));
        // and/or have the same precedence, left to right: (false or true) and false.
        assert!(!m("dport = :1 or dport = :443 and sport = :1", &r));
        assert!(m("dport = :1 or ( dport = :443 and sport = :40000 )", &r));
        assert!(m("not dport = :80", &r));
        assert!(m("! dport = :80 && sport != :1", &r));
    }

    #[test]
    fn families_do_not_mix_except_v4_mapped() {
        let v6 = rec("[::1]:22", "[::1]:40000");
        assert!(m("src [::1]", &v6));
        assert!(!m("src 0.0.0.0/0", &v6));
        assert!(m("src ::1/128", &v6));
        let mapped = rec("[::ffff:127.0.0.1]:22", "[::ffff:127.0.0.1]:5");
        assert!(m("src 127.0.0.0/8", &mapped));
        assert!(!m("src [::1]", &rec("127.0.0.1:1", "127.0.0.1:2")));
    }

    #[test]
    fn unix_globs() {
        let mut r = rec("127.0.0.1:1", "127.0.0.1:2");
        r.netid = Netid::UnixStream;
        r.local = Endpoint::Unix {
            name: Some("/run/Systemd/notify".into()),
            inode: 5,
        };
        r.peer = Endpoint::Unix {
            name: None,
            inode: 0,
        };
        assert!(m("src unix:/run/*", &r));
        assert!(
            m("src unix:/run/systemd/*", &r),
            "case-insensitive like FNM_CASEFOLD"
        );
        assert!(!m("src unix:/var/*", &r));
        assert!(!m("src 127.0.0.1", &r));
    }
}
