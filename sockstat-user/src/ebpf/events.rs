//! Decoding ring-buffer records into typed events. A record of the wrong size is a typed
//! error, never a panic or a guess.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use sockstat_common::{StateEvent, flags, hook, kind, owner_source};

use crate::{live::Comm, tcp::ReportedState};

use sockstat_common::family::{INET as AF_INET, INET6 as AF_INET6};

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
    /// The family of an address.
    pub fn of(addr: &SocketAddr) -> Family {
        if addr.is_ipv4() {
            Family::Inet
        } else {
            Family::Inet6
        }
    }

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
    pub comm: Comm,
}

/// What the kernel side knew about the socket's owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelOwner {
    /// The current task held the socket lock.
    Task,
    /// Remembered in the socket's storage from an earlier process-context transition.
    Cached,
    Unknown,
}

/// What `struct tcp_sock` said at a state change or an RTT event, as `tcp_info` would.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpCounters {
    pub bytes_acked: u64,
    pub bytes_received: u64,
    pub total_retrans: u32,
    /// Smoothed RTT in µs (the kernel stores it << 3); 0 before the first sample.
    pub srtt_us: u32,
    /// The windowed minimum RTT in µs; `u32::MAX` (or 0) before the first sample.
    pub min_rtt_us: u32,
    /// Congestion window, in segments.
    pub snd_cwnd: u32,
    /// The latest delivery rate sample, bytes per second; 0 before any.
    pub delivery_rate: u64,
}

impl TcpCounters {
    /// The smoothed RTT, once measured.
    pub fn srtt(&self) -> Option<u32> {
        (self.srtt_us != 0).then_some(self.srtt_us)
    }

    /// The minimum RTT, once measured (the kernel never records less than 1 µs).
    pub fn min_rtt(&self) -> Option<u32> {
        (self.min_rtt_us != 0 && self.min_rtt_us != u32::MAX).then_some(self.min_rtt_us)
    }

    pub fn cwnd(&self) -> Option<u32> {
        (self.snd_cwnd != 0).then_some(self.snd_cwnd)
    }

    pub fn delivery_rate(&self) -> Option<u64> {
        (self.delivery_rate != 0).then_some(self.delivery_rate)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    StateChange {
        old: ReportedState,
        new: ReportedState,
        tcp: TcpCounters,
    },
    /// `state`: the socket's, as the kernel read it when the reset came or went.
    ResetReceived {
        state: Option<ReportedState>,
    },
    /// `reason`: the kernel's `enum sk_rst_reason` value, where it gives one (6.10+).
    ResetSent {
        reason: Option<u8>,
        state: Option<ReportedState>,
    },
    /// The kernel answered a segment to a closed port (no socket) with an RST; `local` is
    /// the closed port, `remote` whoever sent the segment. No socket, so no cookie.
    ResetNoSocket,
    Retransmit(Retransmission),
    /// A listener retransmitted a SYN-ACK; `local`/`remote` are the request's.
    SynackRetransmit(Retransmission),
    ErrorReport {
        errno: i32,
    },
    /// The kernel dropped a TCP segment; the event's cookie is 0 where it named no socket.
    Drop(SegmentDrop),
    /// What the timewait hooks saw (sockstat-ebpf/src/timewait.rs).
    Timewait(TimewaitEvent),
    /// An RTT sample of an ESTABLISHED connection (`tcp_probe`, at most one per
    /// connection per interval).
    Rtt {
        tcp: TcpCounters,
    },
}

/// What a drop event carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentDrop {
    pub reason: DropReason,
    /// The segment's TCP flags.
    pub tcp_flags: u8,
    /// The segment was leaving (a socket's own); otherwise it arrived.
    pub outbound: bool,
    /// The socket's state, where the kernel named the socket.
    pub state: Option<ReportedState>,
}

/// Why segments were dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// One segment, the kernel's `enum skb_drop_reason` value (see `ReasonNames`).
    Kernel(u32),
    /// A listener's drop counter rose by `count` (sockstat_user::agent::ListenerDrops):
    /// SYNs, or handshakes' final ACKs, it could not take. The kernel frees those SYNs as
    /// consumed, not dropped, on every kernel up to 6.18 at least, so no drop event names
    /// them. `overflow`: its accept queue was full when the rise was seen.
    Listener {
        count: u32,
        overflow: bool,
        accept_queue: u32,
        backlog: u32,
    },
}

/// What a retransmission event carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retransmission {
    /// `sockstat_common::retransmit` (SYN, SYN-ACK, RTO, TLP, recovery).
    pub kind: u8,
    /// The socket's state when it retransmitted.
    pub state: ReportedState,
    pub seq: u32,
    /// In sequence space: a SYN or a FIN counts one.
    pub len: u32,
}

impl Retransmission {
    pub fn kind_name(self) -> &'static str {
        sockstat_common::retransmit::NAMES
            .get(usize::from(self.kind))
            .copied()
            .unwrap_or("unknown")
    }
}

/// A timewait socket's events; `substate` is the state it is in (FIN-WAIT-2 for an orphan
/// still waiting for the peer's FIN, or TIME-WAIT).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimewaitEvent {
    /// Its timer was armed: it was just created (its socket's CLOSE follows), or re-armed.
    Armed { substate: ReportedState },
    /// Its timer was cancelled: a re-arm or the expiry follows at once, or it died early;
    /// `reused` when a connect() took over its 4-tuple.
    Cancelled {
        substate: ReportedState,
        reused: bool,
    },
    /// Its time ran out.
    Expired { substate: ReportedState },
    /// The peer's FIN reached it in FIN-WAIT-2: it is in TIME-WAIT now.
    Fin,
    /// An RST killed it.
    Reset { substate: ReportedState },
}

/// What the timewait hooks said of a close (a state change to CLOSE).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TimewaitClose {
    /// No timewait socket was involved (or the hooks are off).
    #[default]
    Plain,
    /// A timewait socket took the socket's place, in this state.
    Created(ReportedState),
    /// The kernel meant to keep one but could not (`tcp_max_tw_buckets`).
    Overflow,
    /// The timewait hooks were not attached yet: the kernel could not tell.
    Unseen,
}

/// One decoded kernel event about a socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelEvent {
    /// CLOCK_MONOTONIC nanoseconds.
    pub ts_ns: u64,
    /// Socket identity: the sock_diag cookie when `cookie_is_socket_cookie`.
    pub cookie: u64,
    /// The socket's kernel address (see `StateEvent::sk_addr`).
    pub sk_addr: u64,
    pub cookie_is_socket_cookie: bool,
    pub netns: u32,
    pub task: Task,
    /// The current task held the socket lock, so it is the socket's user (see
    /// `sockstat_common::flags::TASK_OWNS_SOCKET`). Otherwise `task` is whoever softirq
    /// interrupted and says nothing about the owner.
    pub task_owns_socket: bool,
    pub owner_source: KernelOwner,
    pub owner_pid: u32,
    pub owner_comm: Comm,
    pub family: Family,
    pub protocol: u16,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub hook: Hook,
    pub kind: EventKind,
    /// `sk->sk_err` when the event fired (set before a failing socket closes).
    pub sk_err: i32,
    /// Whether the peer's FIN had arrived (`SOCK_DONE`); `None` where the hook cannot
    /// read it (classic tracepoint).
    pub peer_fin: Option<bool>,
    /// For closes: what the timewait hooks said of it.
    pub timewait: TimewaitClose,
    /// The socket's cgroup v2 id (see `StateEvent::cgroup_id`); 0: not read.
    pub cgroup_id: u64,
}

impl KernelEvent {
    /// The socket's pending error (errno), 0 if none.
    pub fn task_errno(&self) -> i32 {
        self.sk_err
    }

    /// (old, new) for state changes.
    #[cfg(test)]
    pub fn transition(&self) -> Option<(ReportedState, ReportedState)> {
        match self.kind {
            EventKind::StateChange { old, new, .. } => Some((old, new)),
            _ => None,
        }
    }
}

/// Decodes one ring-buffer record.
pub fn decode(bytes: &[u8]) -> Result<KernelEvent, DecodeError> {
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

/// A NUL-terminated `comm` as the kernel wrote it; inline, as events come by the
/// hundred thousand a second (a String each was a tenth of a busy trace's CPU).
fn c_string(b: &[u8; 16]) -> Comm {
    let n = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    match std::str::from_utf8(&b[..n]) {
        Ok(s) => Comm::new(s),
        Err(_) => Comm::new(&String::from_utf8_lossy(&b[..n])),
    }
}

fn retransmission(raw: &StateEvent) -> Retransmission {
    Retransmission {
        kind: raw.detail,
        state: ReportedState::from_kernel(raw.new_state),
        seq: raw.seq,
        len: raw.seg_len,
    }
}

fn tcp_counters(raw: &StateEvent) -> TcpCounters {
    TcpCounters {
        bytes_acked: raw.bytes_acked,
        bytes_received: raw.bytes_received,
        total_retrans: raw.total_retrans,
        srtt_us: raw.srtt_us >> 3,
        min_rtt_us: raw.min_rtt_us,
        snd_cwnd: raw.snd_cwnd,
        delivery_rate: raw.delivery_rate,
    }
}

/// A state the kernel read beside another event (0: it read none).
fn read_state(n: u8) -> Option<ReportedState> {
    (n != 0).then(|| ReportedState::from_kernel(n))
}

pub fn from_raw(raw: &StateEvent) -> Result<KernelEvent, DecodeError> {
    let substate = ReportedState::from_kernel(raw.tw_substate);
    let kind = match raw.kind {
        kind::STATE_CHANGE => EventKind::StateChange {
            old: ReportedState::from_kernel(raw.old_state),
            new: ReportedState::from_kernel(raw.new_state),
            tcp: tcp_counters(raw),
        },
        kind::RTT => EventKind::Rtt {
            tcp: tcp_counters(raw),
        },
        kind::RESET_RECEIVED => EventKind::ResetReceived {
            state: read_state(raw.new_state),
        },
        kind::RESET_SENT => EventKind::ResetSent {
            reason: raw.detail.checked_sub(1),
            state: read_state(raw.new_state),
        },
        kind::RESET_NO_SOCKET => EventKind::ResetNoSocket,
        kind::RETRANSMIT => EventKind::Retransmit(retransmission(raw)),
        kind::SYNACK_RETRANSMIT => EventKind::SynackRetransmit(retransmission(raw)),
        kind::ERROR_REPORT => EventKind::ErrorReport { errno: raw.sk_err },
        kind::DROP => EventKind::Drop(SegmentDrop {
            reason: DropReason::Kernel(raw.drop_reason),
            tcp_flags: raw.detail,
            outbound: raw.flags & flags::OUTBOUND != 0,
            state: read_state(raw.new_state),
        }),
        kind::TW_ARMED => EventKind::Timewait(TimewaitEvent::Armed { substate }),
        kind::TW_CANCELLED => EventKind::Timewait(TimewaitEvent::Cancelled {
            substate,
            reused: raw.flags & flags::TW_REUSED != 0,
        }),
        kind::TW_EXPIRED => EventKind::Timewait(TimewaitEvent::Expired { substate }),
        kind::TW_FIN => EventKind::Timewait(TimewaitEvent::Fin),
        kind::TW_RESET => EventKind::Timewait(TimewaitEvent::Reset { substate }),
        other => return Err(DecodeError::Kind(other)),
    };
    let timewait = if raw.flags & flags::TW_CREATED != 0 {
        TimewaitClose::Created(substate)
    } else if raw.flags & flags::TW_OVERFLOW != 0 {
        TimewaitClose::Overflow
    } else if raw.flags & flags::TW_UNSEEN != 0 {
        TimewaitClose::Unseen
    } else {
        TimewaitClose::Plain
    };
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
    Ok(KernelEvent {
        ts_ns: raw.ts_ns,
        cookie: raw.cookie,
        sk_addr: raw.sk_addr,
        cookie_is_socket_cookie: raw.flags & flags::COOKIE_IS_SOCKET_COOKIE != 0,
        netns: raw.netns,
        task: Task {
            tgid: raw.tgid,
            tid: raw.tid,
            comm: c_string(&raw.comm),
        },
        task_owns_socket: raw.flags & flags::TASK_OWNS_SOCKET != 0,
        owner_source: match raw.owner_source {
            owner_source::TASK => KernelOwner::Task,
            owner_source::CACHED => KernelOwner::Cached,
            _ => KernelOwner::Unknown,
        },
        owner_pid: raw.owner_tgid,
        owner_comm: c_string(&raw.owner_comm),
        family,
        protocol: raw.protocol,
        local: SocketAddr::new(local_ip, raw.sport),
        remote: SocketAddr::new(remote_ip, raw.dport),
        hook: if raw.hook == hook::TRACEPOINT {
            Hook::Tracepoint
        } else {
            Hook::TpBtf
        },
        kind,
        sk_err: raw.sk_err,
        peer_fin: (raw.hook != hook::TRACEPOINT).then_some(raw.flags & flags::PEER_FIN != 0),
        timewait,
        cgroup_id: raw.cgroup_id,
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
        raw.owner_source = owner_source::TASK;
        raw.owner_tgid = 100;
        raw.owner_comm[..4].copy_from_slice(b"curl");
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
        assert_eq!(
            ev.transition(),
            Some((
                ReportedState::Known(TcpState::SynSent),
                ReportedState::Known(TcpState::Established)
            ))
        );
        assert_eq!(ev.owner_source, KernelOwner::Task);
        assert_eq!(ev.owner_comm.as_str(), "curl");
        assert_eq!(ev.task.comm.as_str(), "curl");
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
    fn decodes_timewait_events_and_close_classes() {
        let mut raw = raw_v4();
        raw.kind = kind::TW_CANCELLED;
        raw.tw_substate = tcp_state::TIME_WAIT;
        raw.flags |= flags::TW_REUSED;
        let ev = decode(&bytes_of(&raw)).unwrap();
        assert_eq!(
            ev.kind,
            EventKind::Timewait(TimewaitEvent::Cancelled {
                substate: ReportedState::Known(TcpState::TimeWait),
                reused: true
            })
        );
        let mut raw = raw_v4();
        raw.old_state = tcp_state::FIN_WAIT2;
        raw.new_state = tcp_state::CLOSE;
        raw.flags |= flags::TW_CREATED;
        raw.tw_substate = tcp_state::FIN_WAIT2;
        let ev = decode(&bytes_of(&raw)).unwrap();
        assert_eq!(
            ev.timewait,
            TimewaitClose::Created(ReportedState::Known(TcpState::FinWait2))
        );
        raw.flags = flags::TW_OVERFLOW;
        assert_eq!(
            decode(&bytes_of(&raw)).unwrap().timewait,
            TimewaitClose::Overflow
        );
    }

    #[test]
    fn decodes_rtt_samples_as_tcp_info_would() {
        let mut raw = raw_v4();
        raw.kind = kind::RTT;
        raw.srtt_us = 1_000 << 3;
        raw.min_rtt_us = 250;
        raw.snd_cwnd = 10;
        raw.delivery_rate = 125_000;
        raw.total_retrans = 2;
        let EventKind::Rtt { tcp } = decode(&bytes_of(&raw)).unwrap().kind else {
            panic!("not an RTT event");
        };
        assert_eq!(tcp.srtt(), Some(1_000));
        assert_eq!(tcp.min_rtt(), Some(250));
        assert_eq!(tcp.cwnd(), Some(10));
        assert_eq!(tcp.delivery_rate(), Some(125_000));
        assert_eq!(tcp.total_retrans, 2);
        // Before the first sample: the kernel's `~0U` minimum and zeros are no readings.
        raw.srtt_us = 0;
        raw.min_rtt_us = u32::MAX;
        raw.delivery_rate = 0;
        let EventKind::Rtt { tcp } = decode(&bytes_of(&raw)).unwrap().kind else {
            panic!("not an RTT event");
        };
        assert_eq!(
            (tcp.srtt(), tcp.min_rtt(), tcp.delivery_rate()),
            (None, None, None)
        );
    }

    #[test]
    fn rejects_bad_records() {
        assert_eq!(
            decode(&[0u8; 10]),
            Err(DecodeError::Length {
                got: 10,
                expected: std::mem::size_of::<StateEvent>()
            })
        );
        let mut raw = raw_v4();
        raw.family = 1;
        assert_eq!(decode(&bytes_of(&raw)), Err(DecodeError::Family(1)));
        let mut raw = raw_v4();
        raw.kind = 99;
        assert_eq!(decode(&bytes_of(&raw)), Err(DecodeError::Kind(99)));
        let mut raw = raw_v4();
        raw.new_state = 99;
        let ev = decode(&bytes_of(&raw)).unwrap();
        assert_eq!(
            ev.transition().map(|t| t.1),
            Some(ReportedState::Unknown(99))
        );
        let mut raw = raw_v4();
        raw.kind = kind::ERROR_REPORT;
        raw.sk_err = 111;
        assert_eq!(
            decode(&bytes_of(&raw)).unwrap().kind,
            EventKind::ErrorReport { errno: 111 }
        );
    }
}
