//! Decoding ring-buffer records into typed events. A record of the wrong size is a typed
//! error, never a panic or a guess.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use sockstat_common::{StateEvent, flags, hook, kind};

use crate::tcp::ReportedState;

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("ring-buffer record of {got} bytes, expected {expected}")]
    Length { got: usize, expected: usize },
    #[error("unknown event kind {0}")]
    Kind(u8),
    #[error("unknown address family {0}")]
    Family(u16),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    Inet,
    Inet6,
}

impl Family {
    /// The JSON spelling (`"inet"`/`"inet6"`), as ss's `-f` names them.
    pub fn name(self) -> &'static str {
        match self {
            Family::Inet => "inet",
            Family::Inet6 => "inet6",
        }
    }
}

/// Which kernel hook reported an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    TpBtf,
    Tracepoint,
}

/// The task that was current when the hook ran.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Task {
    pub tgid: u32,
    pub tid: u32,
    pub comm: String,
}

/// One decoded `inet_sock_set_state` transition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateChange {
    /// CLOCK_MONOTONIC nanoseconds.
    pub ts_ns: u64,
    /// Socket identity: the sock_diag cookie when `cookie_is_socket_cookie`.
    pub cookie: u64,
    pub cookie_is_socket_cookie: bool,
    pub netns: u32,
    pub task: Task,
    /// The current task held the socket lock, so it is the socket's user (see
    /// `sockstat_common::flags::TASK_OWNS_SOCKET`). Otherwise `task` is whoever softirq
    /// interrupted and says nothing about the owner.
    pub task_owns_socket: bool,
    pub family: Family,
    pub protocol: u16,
    pub old: ReportedState,
    pub new: ReportedState,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub hook: Hook,
}

/// Decodes one ring-buffer record.
pub fn decode(bytes: &[u8]) -> Result<StateChange, DecodeError> {
    let expected = std::mem::size_of::<StateEvent>();
    if bytes.len() != expected {
        return Err(DecodeError::Length {
            got: bytes.len(),
            expected,
        });
    }
    // SAFETY: the length was checked, StateEvent is Pod (any bit pattern is valid) and
    // read_unaligned makes no alignment assumption about the ring-buffer slot.
    let raw: StateEvent = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    from_raw(&raw)
}

pub fn from_raw(raw: &StateEvent) -> Result<StateChange, DecodeError> {
    if raw.kind != kind::STATE_CHANGE {
        return Err(DecodeError::Kind(raw.kind));
    }
    let (family, local_ip, remote_ip) = match raw.family {
        AF_INET => {
            let s = Ipv4Addr::new(raw.saddr[0], raw.saddr[1], raw.saddr[2], raw.saddr[3]);
            let d = Ipv4Addr::new(raw.daddr[0], raw.daddr[1], raw.daddr[2], raw.daddr[3]);
            (Family::Inet, IpAddr::V4(s), IpAddr::V4(d))
        }
        AF_INET6 => (
            Family::Inet6,
            IpAddr::V6(Ipv6Addr::from(raw.saddr)),
            IpAddr::V6(Ipv6Addr::from(raw.daddr)),
        ),
        other => return Err(DecodeError::Family(other)),
    };
    let comm_len = raw
        .comm
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(raw.comm.len());
    Ok(StateChange {
        ts_ns: raw.ts_ns,
        cookie: raw.cookie,
        cookie_is_socket_cookie: raw.flags & flags::COOKIE_IS_SOCKET_COOKIE != 0,
        netns: raw.netns,
        task: Task {
            tgid: raw.tgid,
            tid: raw.tid,
            comm: String::from_utf8_lossy(&raw.comm[..comm_len]).into_owned(),
        },
        task_owns_socket: raw.flags & flags::TASK_OWNS_SOCKET != 0,
        family,
        protocol: raw.protocol,
        old: ReportedState::from_kernel(raw.old_state),
        new: ReportedState::from_kernel(raw.new_state),
        local: SocketAddr::new(local_ip, raw.sport),
        remote: SocketAddr::new(remote_ip, raw.dport),
        hook: if raw.hook == hook::TRACEPOINT {
            Hook::Tracepoint
        } else {
            Hook::TpBtf
        },
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::tcp::TcpState;
    use sockstat_common::tcp_state;

    pub(crate) fn raw_v4() -> StateEvent {
        let mut raw = StateEvent::zeroed();
        raw.ts_ns = 1_000_000_123;
        raw.cookie = 4242;
        raw.netns = 4026531840;
        raw.tgid = 100;
        raw.tid = 101;
        raw.family = AF_INET;
        raw.protocol = 6;
        raw.kind = kind::STATE_CHANGE;
        raw.hook = hook::TP_BTF;
        raw.old_state = tcp_state::SYN_SENT;
        raw.new_state = tcp_state::ESTABLISHED;
        raw.flags = flags::COOKIE_IS_SOCKET_COOKIE | flags::TASK_OWNS_SOCKET;
        raw.sport = 40000;
        raw.dport = 8080;
        raw.saddr[..4].copy_from_slice(&[127, 0, 0, 1]);
        raw.daddr[..4].copy_from_slice(&[127, 0, 0, 2]);
        raw.comm[..4].copy_from_slice(b"curl");
        raw
    }

    fn bytes_of(raw: &StateEvent) -> Vec<u8> {
        let ptr = (raw as *const StateEvent).cast::<u8>();
        // SAFETY: StateEvent is repr(C) plain data with no implicit padding.
        unsafe { std::slice::from_raw_parts(ptr, std::mem::size_of::<StateEvent>()) }.to_vec()
    }

    #[test]
    fn decodes_ipv4() {
        let ev = decode(&bytes_of(&raw_v4())).unwrap();
        assert_eq!(ev.family, Family::Inet);
        assert_eq!(ev.local, "127.0.0.1:40000".parse().unwrap());
        assert_eq!(ev.remote, "127.0.0.2:8080".parse().unwrap());
        assert_eq!(ev.old, ReportedState::Known(TcpState::SynSent));
        assert_eq!(ev.new, ReportedState::Known(TcpState::Established));
        assert_eq!(ev.task.comm, "curl");
        assert_eq!(ev.task.tgid, 100);
        assert!(ev.task_owns_socket && ev.cookie_is_socket_cookie);
        assert_eq!(ev.hook, Hook::TpBtf);
    }

    #[test]
    fn decodes_ipv6() {
        let mut raw = raw_v4();
        raw.family = AF_INET6;
        raw.saddr = Ipv6Addr::LOCALHOST.octets();
        raw.daddr = "2001:db8::1".parse::<Ipv6Addr>().unwrap().octets();
        let ev = decode(&bytes_of(&raw)).unwrap();
        assert_eq!(ev.local, "[::1]:40000".parse().unwrap());
        assert_eq!(ev.remote, "[2001:db8::1]:8080".parse().unwrap());
    }

    #[test]
    fn rejects_bad_records() {
        assert_eq!(
            decode(&[0u8; 10]),
            Err(DecodeError::Length {
                got: 10,
                expected: 96
            })
        );
        let mut raw = raw_v4();
        raw.family = 1;
        assert_eq!(decode(&bytes_of(&raw)), Err(DecodeError::Family(1)));
        let mut raw = raw_v4();
        raw.kind = 9;
        assert_eq!(decode(&bytes_of(&raw)), Err(DecodeError::Kind(9)));
        let mut raw = raw_v4();
        raw.new_state = 99;
        let ev = decode(&bytes_of(&raw)).unwrap();
        assert_eq!(ev.new, ReportedState::Unknown(99));
    }
}
