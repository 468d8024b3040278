//! inet_diag: TCP and UDP sockets of one family (include/uapi/linux/inet_diag.h).
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{
    netlink::{DiagError, DiagSocket, SOCK_DIAG_BY_FAMILY, Sink, attrs, push_attr, u32_at, u64_at},
    record::{Netid, SocketRecord, Timer},
    tcp_info::TcpInfo,
};

// sock_diag carries the family in one byte.
pub const AF_INET: u8 = sockstat_common::family::INET as u8;
pub const AF_INET6: u8 = sockstat_common::family::INET6 as u8;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

const INET_DIAG_REQ_BYTECODE: u16 = 1;
/// `struct inet_diag_msg` is 72 bytes; attributes follow.
const MSG_LEN: usize = 72;

// Response attributes (enum inet_diag_attr).
const INET_DIAG_MEMINFO: u16 = 1;
const INET_DIAG_INFO: u16 = 2;
const INET_DIAG_CONG: u16 = 4;
const INET_DIAG_SKMEMINFO: u16 = 7;
const INET_DIAG_SHUTDOWN: u16 = 8;
const INET_DIAG_SKV6ONLY: u16 = 11;
const INET_DIAG_MARK: u16 = 15;
const INET_DIAG_CGROUP_ID: u16 = 21;

/// What to ask the kernel for beyond the basic record.
#[derive(Clone, Copy, Debug, Default)]
pub struct Extensions {
    pub info: bool,
    pub memory: bool,
}

impl Extensions {
    fn bits(self) -> u8 {
        let mut b = 0u8;
        if self.memory {
            b |= (1 << (INET_DIAG_MEMINFO - 1)) | (1 << (INET_DIAG_SKMEMINFO - 1));
        }
        if self.info {
            // INFO, VEGASINFO, CONG
            b |= (1 << 1) | (1 << 2) | (1 << 3);
        }
        b
    }
}

/// `inet_diag_req_v2` (+ bytecode attribute).
pub fn request_body(
    family: u8,
    protocol: u8,
    states: u32,
    ext: Extensions,
    bytecode: Option<&[u8]>,
) -> Vec<u8> {
    let mut b = Vec::with_capacity(56 + 4 + bytecode.map_or(0, <[u8]>::len));
    b.push(family);
    b.push(protocol);
    b.push(ext.bits());
    b.push(0);
    b.extend_from_slice(&states.to_ne_bytes());
    // inet_diag_sockid: ports, addresses, interface zero; cookie "none".
    b.extend_from_slice(&[0u8; 40]);
    b.extend_from_slice(&[0xffu8; 8]);
    if let Some(code) = bytecode {
        push_attr(&mut b, INET_DIAG_REQ_BYTECODE, code);
    }
    b
}

/// The pre-sock_diag TCP request (`TCPDIAG_GETSOCK`). Unlike the v2 request it dumps both
/// families in one walk of the socket hash, which halves the kernel's share of `-t`.
pub const TCPDIAG_GETSOCK: u16 = 18;

/// `struct inet_diag_req` (the compat layout, 60 bytes) + bytecode attribute.
pub fn compat_request_body(states: u32, ext: Extensions, bytecode: Option<&[u8]>) -> Vec<u8> {
    let mut b = Vec::with_capacity(60 + 4 + bytecode.map_or(0, <[u8]>::len));
    // family (ignored: the kernel dumps both), src_len, dst_len, ext
    b.extend_from_slice(&[0, 0, 0, ext.bits()]);
    b.extend_from_slice(&[0u8; 40]);
    b.extend_from_slice(&[0xffu8; 8]);
    b.extend_from_slice(&states.to_ne_bytes());
    // idiag_dbs
    b.extend_from_slice(&0u32.to_ne_bytes());
    if let Some(code) = bytecode {
        push_attr(&mut b, INET_DIAG_REQ_BYTECODE, code);
    }
    b
}

/// Dumps one (family, protocol) pair into `out`; `family` None means TCP of both families
/// through the compat request.
pub fn dump(
    sock: &mut DiagSocket,
    family: Option<u8>,
    protocol: u8,
    states: u32,
    ext: Extensions,
    bytecode: Option<&[u8]>,
    out: &mut dyn Sink<SocketRecord>,
) -> Result<(), DiagError> {
    let netid = if protocol == IPPROTO_UDP {
        Netid::Udp
    } else {
        Netid::Tcp
    };
    let what = if protocol == IPPROTO_UDP {
        "UDP"
    } else {
        "TCP"
    };
    let (kind, body) = match family {
        Some(f) => (
            SOCK_DIAG_BY_FAMILY,
            request_body(f, protocol, states, ext, bytecode),
        ),
        None => (TCPDIAG_GETSOCK, compat_request_body(states, ext, bytecode)),
    };
    sock.dump(what, kind, &body, out, |payload| {
        parse(payload, netid).map(Some)
    })
}

/// Decodes one `inet_diag_msg` with its attributes.
pub fn parse(b: &[u8], netid: Netid) -> Result<SocketRecord, DiagError> {
    if b.len() < MSG_LEN {
        return Err(DiagError::Malformed(format!(
            "inet_diag_msg of {} bytes, expected at least {MSG_LEN}",
            b.len()
        )));
    }
    let family = b[0];
    let addr = |off: usize| -> Result<IpAddr, DiagError> {
        match family {
            AF_INET => Ok(IpAddr::V4(Ipv4Addr::new(
                b[off],
                b[off + 1],
                b[off + 2],
                b[off + 3],
            ))),
            AF_INET6 => {
                let mut o = [0u8; 16];
                o.copy_from_slice(&b[off..off + 16]);
                Ok(IpAddr::V6(Ipv6Addr::from(o)))
            }
            f => Err(DiagError::Malformed(format!("inet family {f}"))),
        }
    };
    let sport = u16::from_be_bytes([b[4], b[5]]);
    let dport = u16::from_be_bytes([b[6], b[7]]);
    let mut r = SocketRecord::inet(
        netid,
        b[1],
        SocketAddr::new(addr(8)?, sport),
        SocketAddr::new(addr(24)?, dport),
    );
    r.ifindex = u32_at(b, 40);
    r.cookie = (u64::from(u32_at(b, 48)) << 32) | u64::from(u32_at(b, 44));
    if b[2] != 0 {
        r.timer = Some(Timer {
            kind: b[2],
            expires_ms: u32_at(b, 52),
            retrans: b[3],
        });
    }
    r.recv_q = u32_at(b, 56);
    r.send_q = u32_at(b, 60);
    r.uid = u32_at(b, 64);
    r.inode = u32_at(b, 68);
    for attr in attrs(&b[MSG_LEN..]) {
        let (kind, v) = attr?;
        match kind {
            INET_DIAG_INFO => r.tcp_info = Some(Box::new(TcpInfo::parse(v))),
            INET_DIAG_CONG => {
                let end = v.iter().position(|&c| c == 0).unwrap_or(v.len());
                r.congestion = Some(String::from_utf8_lossy(&v[..end]).into_owned());
            }
            INET_DIAG_SKMEMINFO => {
                r.skmem = Some(v.chunks_exact(4).map(|c| u32_at(c, 0)).collect());
            }
            INET_DIAG_SHUTDOWN if !v.is_empty() => r.shutdown = Some(v[0]),
            INET_DIAG_SKV6ONLY if !v.is_empty() => r.v6only = Some(v[0] != 0),
            INET_DIAG_MARK if v.len() >= 4 => r.mark = Some(u32_at(v, 0)),
            INET_DIAG_CGROUP_ID if v.len() >= 8 => r.cgroup_id = Some(u64_at(v, 0)),
            _ => {}
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::record::Endpoint;

    #[test]
    fn parses_a_tcp_v4_reply() {
        let mut m = vec![0u8; MSG_LEN];
        m[0] = AF_INET;
        m[1] = 1;
        m[2] = 2;
        m[4..6].copy_from_slice(&8080u16.to_be_bytes());
        m[6..8].copy_from_slice(&40000u16.to_be_bytes());
        m[8..12].copy_from_slice(&[127, 0, 0, 1]);
        m[24..28].copy_from_slice(&[10, 0, 0, 2]);
        m[44..48].copy_from_slice(&0x2au32.to_ne_bytes());
        m[48..52].copy_from_slice(&1u32.to_ne_bytes());
        m[52..56].copy_from_slice(&5000u32.to_ne_bytes());
        m[68..72].copy_from_slice(&777u32.to_ne_bytes());
        push_attr(&mut m, INET_DIAG_SHUTDOWN, &[2]);
        push_attr(&mut m, INET_DIAG_CONG, b"cubic\0");
        let r = parse(&m, Netid::Tcp).unwrap();
        assert_eq!(r.local, Endpoint::Inet("127.0.0.1:8080".parse().unwrap()));
        assert_eq!(r.peer, Endpoint::Inet("10.0.0.2:40000".parse().unwrap()));
        assert_eq!(r.cookie, 0x1_0000_002a);
        assert_eq!(r.inode, 777);
        assert_eq!(r.shutdown, Some(2));
        assert_eq!(r.congestion.as_deref(), Some("cubic"));
        assert_eq!(r.timer.map(|t| (t.kind, t.expires_ms)), Some((2, 5000)));
    }

    #[test]
    fn short_or_odd_replies_are_errors() {
        assert!(parse(&[0u8; 10], Netid::Tcp).is_err());
        let mut m = vec![0u8; MSG_LEN];
        m[0] = 99;
        assert!(parse(&m, Netid::Tcp).is_err());
    }
}
