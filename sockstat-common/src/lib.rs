//! Types shared by the kernel programs (`sockstat-ebpf`) and the agent (`sockstat-user`).
//!
//! Every struct is `#[repr(C)]` with explicit padding and a size assertion, so both sides
//! agree byte for byte. Nothing here may allocate: the crate is `no_std`.
#![no_std]

/// Which hook produced an event.
pub mod hook {
    /// `sock:inet_sock_set_state` through a BTF tracepoint (tp_btf).
    pub const TP_BTF: u8 = 1;
    /// `sock:inet_sock_set_state` through a classic (tracefs) tracepoint.
    pub const TRACEPOINT: u8 = 2;
}

/// Bits of [`StateEvent::flags`].
pub mod flags {
    /// The hook ran while the current task held the socket lock (`sk->sk_lock.owned`), i.e. in
    /// the process context of the task operating on the socket (connect, listen, close,
    /// shutdown, or backlog processing in `release_sock`). Without it, the current task is
    /// whatever softirq interrupted and must not be named as the owner.
    /// The classic-tracepoint fallback cannot read the socket lock (no BTF offsets) nor the
    /// record's `common_flags` (BPF sees a pt_regs pointer there); it sets this bit only for
    /// edges that are taken in a system call and nowhere else: connect, listen, close, shutdown.
    pub const TASK_OWNS_SOCKET: u8 = 1 << 0;
    /// `cookie` is a kernel socket cookie (same value as sock_diag's `sk:`). Without it the
    /// cookie is only a per-boot socket address (classic tracepoint fallback).
    pub const COOKIE_IS_SOCKET_COOKIE: u8 = 1 << 1;
    /// `SOCK_DONE` was set in `sk->sk_flags` at a state change: the peer's FIN arrived
    /// (`tcp_fin()`), or the connection was reset. Tells a FIN-WAIT-2 socket swapped for a
    /// real TIME-WAIT apart from an orphan that stays in FIN-WAIT-2. BTF hooks only.
    pub const PEER_FIN: u8 = 1 << 2;
    /// On a STATE_CHANGE to CLOSE: a timewait socket took the socket's place (its timer was
    /// armed just before, on this CPU); `tw_substate` says in which state it lives on.
    pub const TW_CREATED: u8 = 1 << 3;
    /// On a STATE_CHANGE to CLOSE: the kernel meant to keep a timewait socket but could not
    /// (`tcp_max_tw_buckets` reached, TcpExt TCPTimeWaitOverflow): the connection is gone.
    pub const TW_OVERFLOW: u8 = 1 << 4;
    /// On TW_CANCELLED: a connect() reused the timewait socket's 4-tuple (`tcp_tw_reuse`).
    pub const TW_REUSED: u8 = 1 << 5;
    /// On DROP: the segment was on its way out (the socket's own), not arriving.
    pub const OUTBOUND: u8 = 1 << 6;
    /// On a STATE_CHANGE from FIN-WAIT-2 or CLOSING to CLOSE: the timewait hooks were not
    /// all attached yet (the trace was starting), so whether a timewait socket took the
    /// socket's place is unknown here.
    pub const TW_UNSEEN: u8 = 1 << 7;
}

/// Event kinds; every kind shares the `StateEvent` layout and the ring buffer.
pub mod kind {
    /// `sock:inet_sock_set_state`.
    pub const STATE_CHANGE: u8 = 1;
    /// `tcp:tcp_receive_reset`: an RST arrived for this socket.
    pub const RESET_RECEIVED: u8 = 2;
    /// `tcp:tcp_send_reset`: this socket sent an RST.
    pub const RESET_SENT: u8 = 3;
    /// `tcp:tcp_retransmit_skb`.
    pub const RETRANSMIT: u8 = 4;
    /// `tcp:tcp_retransmit_synack` (the socket is the listener).
    pub const SYNACK_RETRANSMIT: u8 = 5;
    /// `sock:inet_sk_error_report`: `sk_err` carries the errno.
    pub const ERROR_REPORT: u8 = 6;
    /// `timer:timer_start` of a timewait socket's timer: it was created, or re-armed;
    /// `tw_substate` is FIN-WAIT-2 (an orphan waiting for the peer's FIN) or TIME-WAIT.
    pub const TW_ARMED: u8 = 7;
    /// `timer:timer_cancel` of a timewait timer: a re-arm or an expiry follows at once, or
    /// the timewait socket is being killed early (reuse, RST, `ss -K`, namespace exit).
    pub const TW_CANCELLED: u8 = 8;
    /// `timer:timer_expire_entry` of a timewait timer: its time is up.
    pub const TW_EXPIRED: u8 = 9;
    /// `skb:kfree_skb` of the peer's FIN after it reached a timewait socket in FIN-WAIT-2:
    /// the socket is in TIME-WAIT now. (Its timer is often re-armed without a tracepoint.)
    pub const TW_FIN: u8 = 10;
    /// `skb:kfree_skb` of an RST that killed the timewait socket just cancelled on this CPU.
    pub const TW_RESET: u8 = 11;
    /// `skb:kfree_skb` with the drop reason `NO_SOCKET` of a TCP segment other than an RST:
    /// nothing listens on its port, and the kernel answered it with an RST (a closed port,
    /// what a port scan hits). Addresses are the segment's, seen from this host (local =
    /// its destination); cookie 0. Kernels fire `tcp_send_reset` for these only from 6.10.
    pub const RESET_NO_SOCKET: u8 = 12;
    /// `skb:kfree_skb` of a TCP segment: the kernel dropped it, for `drop_reason` (its
    /// `enum skb_drop_reason`, whose numbers differ between kernels). `cookie` is the
    /// socket's where the kernel names one (`rx_sk` from 6.11, or the segment's owner),
    /// else 0; addresses are the segment's, local being this host's end (see
    /// [`flags::OUTBOUND`]); `detail` holds its TCP flags, `netns` is 0 where the kernel
    /// no longer says (the device is gone once the socket is looked up).
    pub const DROP: u8 = 13;
    /// `tcp:tcp_probe` (a segment arrived on an ESTABLISHED socket), at most once per
    /// connection per [`ProbeConfig::rtt_interval_ns`]: the socket's RTT, cwnd and
    /// delivery rate as `tcp_info` would give them, read in the kernel at that moment.
    pub const RTT: u8 = 14;
}

/// Where [`StateEvent::owner_tgid`] came from.
pub mod owner_source {
    pub const UNKNOWN: u8 = 0;
    /// The current task held the socket lock.
    pub const TASK: u8 = 1;
    /// Recorded in the socket's storage at an earlier process-context transition.
    pub const CACHED: u8 = 2;
}

/// One kernel event about an inet socket: a state transition, a reset, a retransmit or an
/// error report (see [`kind`]).
///
/// Addresses are in network byte order exactly as the kernel stores them; IPv4 addresses sit
/// in the first four bytes. Ports are in host byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateEvent {
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC nanoseconds.
    pub ts_ns: u64,
    /// Socket cookie (`bpf_get_socket_cookie`), or the socket address in the fallback hook.
    pub cookie: u64,
    /// The socket's kernel address. It names a child socket in the passive-open event that
    /// some kernels (6.1, 6.12) fire before the child has its own cookie and addresses.
    pub sk_addr: u64,
    /// `tcp_sock.bytes_acked` / `bytes_received` (TCP only). A state change reads these and
    /// the other `tcp_sock` figures below only on its way to ESTABLISHED or CLOSE.
    pub bytes_acked: u64,
    pub bytes_received: u64,
    /// Inode number of the socket's network namespace (0 when unknown).
    pub netns: u32,
    /// Thread-group id (the "pid" users see) of the current task.
    pub tgid: u32,
    /// Thread id of the current task.
    pub tid: u32,
    /// The socket's owner as far as the kernel side knows (see `owner_source`).
    pub owner_tgid: u32,
    /// `tcp_sock.total_retrans` and `srtt_us` (smoothed RTT << 3) at a state change or an
    /// RTT event.
    pub total_retrans: u32,
    pub srtt_us: u32,
    /// `sk->sk_err` for ERROR_REPORT.
    pub sk_err: i32,
    /// AF_INET or AF_INET6.
    pub family: u16,
    /// IPPROTO_TCP, IPPROTO_MPTCP, ...
    pub protocol: u16,
    pub kind: u8,
    pub hook: u8,
    pub old_state: u8,
    /// A transition's new state; for a reset or a retransmission, the socket's state when
    /// it happened (0: not read).
    pub new_state: u8,
    /// See [`flags`].
    pub flags: u8,
    /// See [`owner_source`].
    pub owner_source: u8,
    /// A timewait socket's substate (TCP state numbers FIN_WAIT2 or TIME_WAIT) for the TW_*
    /// kinds and TW_CREATED; 0 otherwise.
    pub tw_substate: u8,
    /// RETRANSMIT and SYNACK_RETRANSMIT: which retransmission ([`retransmit`]).
    /// RESET_SENT: the kernel's `enum sk_rst_reason` plus one (0: the kernel gives none).
    /// DROP: the segment's TCP flags (byte 13 of its header).
    pub detail: u8,
    pub sport: u16,
    pub dport: u16,
    /// RETRANSMIT: the segment's first sequence number.
    pub seq: u32,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    /// `comm` of the current task, NUL padded.
    pub comm: [u8; 16],
    /// `comm` of the owner.
    pub owner_comm: [u8; 16],
    /// RETRANSMIT: the segment's length in sequence space (a SYN or FIN counts one).
    pub seg_len: u32,
    /// DROP: the kernel's `enum skb_drop_reason`.
    pub drop_reason: u32,
    /// STATE_CHANGE (TCP) and RTT: `tcp_info`'s `tcpi_min_rtt` (µs, `u32::MAX` before the
    /// first sample), `tcpi_snd_cwnd` (segments) and `tcpi_delivery_rate` (bytes/s, 0
    /// before anything was delivered), computed as `tcp_get_info` does.
    pub min_rtt_us: u32,
    pub snd_cwnd: u32,
    pub delivery_rate: u64,
    /// The cgroup v2 id of the socket (`sk->sk_cgrp_data`: the cgroup of the task that
    /// made it, or of its listener), when `ProbeConfig::cgroups` asks for it; 0 otherwise.
    /// Unlike the current task, it is the owner's in softirq context too.
    pub cgroup_id: u64,
}

const _: () = assert!(core::mem::size_of::<StateEvent>() == 184);
const _: () = assert!(core::mem::align_of::<StateEvent>() == 8);
// The kernel side writes the byte arrays, and clears the whole event, a word at a time
// (`sockstat-ebpf`'s `sock::words`): each array starts on an 8-byte boundary.
const _: () = assert!(
    core::mem::offset_of!(StateEvent, saddr).is_multiple_of(8)
        && core::mem::offset_of!(StateEvent, daddr).is_multiple_of(8)
        && core::mem::offset_of!(StateEvent, comm).is_multiple_of(8)
        && core::mem::offset_of!(StateEvent, owner_comm).is_multiple_of(8)
);

impl StateEvent {
    pub const fn zeroed() -> Self {
        Self {
            ts_ns: 0,
            cookie: 0,
            sk_addr: 0,
            bytes_acked: 0,
            bytes_received: 0,
            netns: 0,
            tgid: 0,
            tid: 0,
            owner_tgid: 0,
            total_retrans: 0,
            srtt_us: 0,
            sk_err: 0,
            family: 0,
            protocol: 0,
            kind: 0,
            hook: 0,
            old_state: 0,
            new_state: 0,
            flags: 0,
            owner_source: 0,
            tw_substate: 0,
            detail: 0,
            sport: 0,
            dport: 0,
            seq: 0,
            saddr: [0; 16],
            daddr: [0; 16],
            comm: [0; 16],
            owner_comm: [0; 16],
            seg_len: 0,
            drop_reason: 0,
            min_rtt_us: 0,
            snd_cwnd: 0,
            delivery_rate: 0,
            cgroup_id: 0,
        }
    }
}

/// Per-socket storage (`BPF_MAP_TYPE_SK_STORAGE`): who last used the socket from process
/// context, so softirq transitions can be attributed to it (`tgid` 0: nobody seen yet),
/// and when its last RTT event was written.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwnerInfo {
    pub tgid: u32,
    pub _pad0: [u8; 4],
    pub comm: [u8; 16],
    /// `bpf_ktime_get_ns()` of the socket's last RTT event, or of its first segment while
    /// it has had none (0: neither yet).
    pub rtt_sampled_ns: u64,
}

const _: () = assert!(core::mem::size_of::<OwnerInfo>() == 32);
const _: () = assert!(
    core::mem::align_of::<OwnerInfo>() == 8
        && core::mem::offset_of!(OwnerInfo, comm).is_multiple_of(8)
);

/// Number of kernel TCP states the per-edge counters cover (state numbers below this).
pub const EDGE_STATES: u32 = 16;

/// Field offsets inside kernel structs, resolved by user space from the running kernel's BTF
/// and written into the program's read-only data before load. Nothing about kernel struct
/// layout is hard-coded in the kernel programs.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SockOffsets {
    /// `struct sock.__sk_common.skc_family` (u16).
    pub skc_family: u32,
    /// `struct sock.__sk_common.skc_daddr` (be32).
    pub skc_daddr: u32,
    /// `struct sock.__sk_common.skc_rcv_saddr` (be32).
    pub skc_rcv_saddr: u32,
    /// `struct sock.__sk_common.skc_dport` (be16).
    pub skc_dport: u32,
    /// `struct inet_sock.inet_sport` (be16). Not `skc_num`: `tcp_set_state(TCP_CLOSE)` clears
    /// that (inet_put_port) before the tracepoint fires, while `inet_sport` survives, which is
    /// also what the classic tracepoint reports.
    pub inet_sport: u32,
    /// `struct sock.__sk_common.skc_v6_daddr` (in6_addr).
    pub skc_v6_daddr: u32,
    /// `struct sock.__sk_common.skc_v6_rcv_saddr` (in6_addr).
    pub skc_v6_rcv_saddr: u32,
    /// `struct sock.__sk_common.skc_net` (possible_net_t: one `struct net *`).
    pub skc_net: u32,
    /// `struct net.ns.inum` (unsigned int).
    pub net_ns_inum: u32,
    /// `struct sock.sk_protocol` (u16).
    pub sk_protocol: u32,
    /// `struct sock.sk_lock.owned` (int).
    pub sk_lock_owned: u32,
    /// `struct sock.sk_bpf_storage` (`struct bpf_local_storage *`): null while the socket
    /// has no BPF socket storage, of any map.
    pub sk_bpf_storage: u32,
    /// `struct sock.sk_err` (int).
    pub sk_err: u32,
    /// `struct sock.sk_flags` (unsigned long; bit `SOCK_DONE` = 1).
    pub sk_flags: u32,
    /// `struct tcp_sock.bytes_acked` (u64).
    pub tcp_bytes_acked: u32,
    /// `struct tcp_sock.bytes_received` (u64).
    pub tcp_bytes_received: u32,
    /// `struct tcp_sock.total_retrans` (u32).
    pub tcp_total_retrans: u32,
    /// `struct tcp_sock.srtt_us` (u32).
    pub tcp_srtt_us: u32,
    /// `struct inet_connection_sock.icsk_pending` (u8): which timer event is pending.
    pub icsk_pending: u32,
    /// `struct sk_buff.cb`: a TCP segment's `struct tcp_skb_cb` (seq, end_seq first).
    pub skb_cb: u32,
    /// `struct sock.sk_cgrp_data.cgroup` (`struct cgroup *`), `struct cgroup.kn` and
    /// `struct kernfs_node.id` (u64, the cgroup id): the socket's cgroup. All 0 where the
    /// kernel has no socket cgroup data (`ProbeConfig::cgroups` then stays 0).
    pub sk_cgroup: u32,
    pub cgroup_kn: u32,
    pub kernfs_node_id: u32,
    /// Non-zero once user space filled this struct in.
    pub valid: u32,
}

const _: () = assert!(core::mem::size_of::<SockOffsets>() == 96);

impl SockOffsets {
    pub const fn zeroed() -> Self {
        Self {
            skc_family: 0,
            skc_daddr: 0,
            skc_rcv_saddr: 0,
            skc_dport: 0,
            inet_sport: 0,
            skc_v6_daddr: 0,
            skc_v6_rcv_saddr: 0,
            skc_net: 0,
            net_ns_inum: 0,
            sk_protocol: 0,
            sk_lock_owned: 0,
            sk_bpf_storage: 0,
            sk_err: 0,
            sk_flags: 0,
            tcp_bytes_acked: 0,
            tcp_bytes_received: 0,
            tcp_total_retrans: 0,
            tcp_srtt_us: 0,
            icsk_pending: 0,
            skb_cb: 0,
            sk_cgroup: 0,
            cgroup_kn: 0,
            kernfs_node_id: 0,
            valid: 0,
        }
    }
}

/// `struct tcp_sock` offsets for `tcp_info`'s figures (RTT, cwnd, delivery rate), resolved
/// from BTF with [`SockOffsets`]. A global of their own, read a field at a time where used:
/// every hook copies `SockOffsets` to its stack, and 6.1 allows 512 bytes across a hook's
/// calls, which the retransmit hook already comes close to.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpOffsets {
    /// `struct tcp_sock.rtt_min.s[0].v` (u32): the windowed minimum RTT (`tcp_min_rtt`).
    pub min_rtt: u32,
    /// `struct tcp_sock.snd_cwnd` (u32).
    pub snd_cwnd: u32,
    /// `struct tcp_sock.mss_cache` (u32).
    pub mss_cache: u32,
    /// `struct tcp_sock.rate_delivered` and `rate_interval_us` (u32 each): the latest
    /// delivery rate sample, segments per interval.
    pub rate_delivered: u32,
    pub rate_interval_us: u32,
}

const _: () = assert!(core::mem::size_of::<TcpOffsets>() == 20);

impl TcpOffsets {
    pub const fn zeroed() -> Self {
        Self {
            min_rtt: 0,
            snd_cwnd: 0,
            mss_cache: 0,
            rate_delivered: 0,
            rate_interval_us: 0,
        }
    }
}

/// Field offsets of the classic `sock:inet_sock_set_state` tracepoint record, read from
/// `/sys/kernel/tracing/events/sock/inet_sock_set_state/format` at load time.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TracepointOffsets {
    pub skaddr: u32,
    pub oldstate: u32,
    pub newstate: u32,
    pub sport: u32,
    pub dport: u32,
    pub family: u32,
    pub protocol: u32,
    pub saddr: u32,
    pub daddr: u32,
    pub saddr_v6: u32,
    pub daddr_v6: u32,
    pub valid: u32,
}

const _: () = assert!(core::mem::size_of::<TracepointOffsets>() == 48);

impl TracepointOffsets {
    pub const fn zeroed() -> Self {
        Self {
            skaddr: 0,
            oldstate: 0,
            newstate: 0,
            sport: 0,
            dport: 0,
            family: 0,
            protocol: 0,
            saddr: 0,
            daddr: 0,
            saddr_v6: 0,
            daddr_v6: 0,
            valid: 0,
        }
    }
}

/// Offsets the timewait hooks need, resolved from BTF by user space.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TwOffsets {
    /// `struct timer_list.function`.
    pub timer_function: u32,
    /// `struct inet_timewait_sock.tw_timer` (the timer is embedded).
    pub tw_timer: u32,
    /// `struct inet_timewait_sock.tw_substate` (u8).
    pub tw_substate: u32,
    /// `struct sock_common.skc_cookie` (atomic64_t): a timewait socket's cookie is its
    /// socket's.
    pub skc_cookie: u32,
    /// `struct sock_common.skc_num` (u16, host order): the local port.
    pub skc_num: u32,
    /// `struct sock_common.skc_state` (u8).
    pub skc_state: u32,
    /// `struct tcp_sock.linger2` (int): negative means "reset, never FIN-WAIT-2".
    pub tcp_linger2: u32,
    /// `struct sk_buff.head`, `.network_header`, `.transport_header` (u16), `.dev`.
    pub skb_head: u32,
    pub skb_network_header: u32,
    pub skb_transport_header: u32,
    pub skb_dev: u32,
    /// `struct net_device.nd_net` (possible_net_t: one `struct net *`).
    pub dev_nd_net: u32,
    /// `struct sk_buff.sk`: the segment's owner (a sent one's socket, or a received one
    /// queued on its socket).
    pub skb_sk: u32,
    /// `struct sk_buff._skb_refdst` (a `struct dst_entry *`, bit 0 a flag) and
    /// `struct dst_entry.dev`: a received segment's route names its namespace once
    /// `skb->dev` is cleared.
    pub skb_refdst: u32,
    pub dst_dev: u32,
    /// Non-zero once user space filled this struct in.
    pub valid: u32,
    pub _pad0: u32,
}

const _: () = assert!(core::mem::size_of::<TwOffsets>() == 68);

impl TwOffsets {
    pub const fn zeroed() -> Self {
        Self {
            timer_function: 0,
            tw_timer: 0,
            tw_substate: 0,
            skc_cookie: 0,
            skc_num: 0,
            skc_state: 0,
            tcp_linger2: 0,
            skb_head: 0,
            skb_network_header: 0,
            skb_transport_header: 0,
            skb_dev: 0,
            dev_nd_net: 0,
            skb_sk: 0,
            skb_refdst: 0,
            dst_dev: 0,
            valid: 0,
            _pad0: 0,
        }
    }
}

/// One socket file found by the `iter/task_file` owner program.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwnerRecord {
    /// Thread-group id (the pid users see).
    pub tgid: u32,
    pub fd: u32,
    /// Socket inode (what sock_diag reports as the inode).
    pub inode: u64,
    pub comm: [u8; 16],
}

const _: () = assert!(core::mem::size_of::<OwnerRecord>() == 32);

/// Offsets the owner iterator needs, resolved from BTF by user space.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwnerOffsets {
    /// `struct file.f_inode`.
    pub file_f_inode: u32,
    /// `struct inode.i_mode` (umode_t, u16).
    pub inode_i_mode: u32,
    /// `struct inode.i_ino` (unsigned long).
    pub inode_i_ino: u32,
    /// `struct task_struct.tgid`.
    pub task_tgid: u32,
    /// `struct task_struct.comm`.
    pub task_comm: u32,
    pub valid: u32,
}

const _: () = assert!(core::mem::size_of::<OwnerOffsets>() == 24);

impl OwnerOffsets {
    pub const fn zeroed() -> Self {
        Self {
            file_f_inode: 0,
            inode_i_mode: 0,
            inode_i_ino: 0,
            task_tgid: 0,
            task_comm: 0,
            valid: 0,
        }
    }
}

/// Load-time settings for the kernel programs.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeConfig {
    /// Only report sockets whose local or remote port equals this (0: any).
    pub port: u16,
    /// Only report this address family (0: any).
    pub family: u16,
    /// Only report sockets of this network namespace (inode; 0: any).
    pub netns: u32,
    /// Wake user space once this many bytes wait in the ring; below it, user space polls.
    pub wakeup_bytes: u32,
    /// sockstat's own endpoint (serve's listening port, 0: none) in namespace `own_netns`:
    /// its sockets, and loopback clients connected to it, are neither counted nor reported.
    pub own_port: u16,
    /// 0: count only, write no events to the ring.
    pub emit_events: u8,
    /// Arguments this kernel's tracepoints have beyond the oldest prototypes ([`args`]).
    pub args: u8,
    pub own_netns: u32,
    /// `SKB_DROP_REASON_NO_SOCKET` in the running kernel's `enum skb_drop_reason` (from
    /// BTF; its number differs between kernels). 0: unknown, closed-port resets unseen.
    pub drop_no_socket: u32,
    /// Address of `tw_timer_handler` (from /proc/kallsyms): the timer callback that marks a
    /// timer as a timewait socket's. 0: the timewait hooks stay idle.
    pub tw_timer_fn: u64,
    /// 1: write a DROP event for each dropped TCP segment (they are always counted).
    pub drop_events: u8,
    /// What the hooks do with a socket's cgroup id ([`cgroups`]).
    pub cgroups: u8,
    /// 1: only sockets of the namespaces in `NETNS_WATCHED` ([`watched_netns`]).
    pub netns_watched: u8,
    pub _pad0: [u8; 5],
    /// Nanoseconds between two RTT events of one connection; 0: none are written.
    pub rtt_interval_ns: u64,
}

const _: () = assert!(core::mem::size_of::<ProbeConfig>() == 48);

impl ProbeConfig {
    /// No filter, events written: what the programs do until user space says otherwise.
    pub const UNFILTERED: Self = Self {
        port: 0,
        family: 0,
        netns: 0,
        wakeup_bytes: 0,
        own_port: 0,
        emit_events: 1,
        args: 0,
        own_netns: 0,
        drop_no_socket: 0,
        tw_timer_fn: 0,
        drop_events: 0,
        cgroups: cgroups::IGNORE,
        netns_watched: 0,
        _pad0: [0; 5],
        rtt_interval_ns: 0,
    };
}

/// What kind of retransmission a RETRANSMIT or SYNACK_RETRANSMIT event was, from the
/// socket's state and which timer (if any) sent it (`inet_connection_sock.icsk_pending`).
pub mod retransmit {
    /// A SYN (the socket is in SYN-SENT).
    pub const SYN: u8 = 1;
    /// A listener's SYN-ACK for a connection still in its SYN queue.
    pub const SYN_ACK: u8 = 2;
    /// The retransmission timer ran out (`icsk_pending` cleared before it retransmits).
    pub const RTO: u8 = 3;
    /// A tail loss probe (`icsk_pending` is `ICSK_TIME_LOSS_PROBE`).
    pub const TLP: u8 = 4;
    /// Fast retransmit or loss recovery, driven by ACKs or the reorder timer.
    pub const RECOVERY: u8 = 5;
    /// Names, indexed by the numbers above (0: the kernel side could not tell).
    pub const NAMES: [&str; 6] = ["unknown", "syn", "syn-ack", "rto", "tlp", "recovery"];
    /// How many kinds there are (1 to this).
    pub const KINDS: usize = NAMES.len() - 1;
    /// `ICSK_TIME_LOSS_PROBE` (include/net/inet_connection_sock.h, unchanged since 4.x).
    pub const ICSK_TIME_LOSS_PROBE: u8 = 5;
}

/// Bits of `ProbeConfig::args`: tracepoint arguments newer kernels added. A program reads
/// one only when its bit is set (a frozen constant, so older kernels' verifiers drop the
/// read as dead code).
pub mod args {
    /// `tcp_retransmit_skb`'s `int err` (6.17+: it fires for failed attempts too).
    pub const RETRANSMIT_ERR: u8 = 1 << 0;
    /// `tcp_send_reset`'s `enum sk_rst_reason` (6.10+).
    pub const RESET_REASON: u8 = 1 << 1;
    /// `kfree_skb`'s `struct sock *rx_sk` (6.11+), argument 3.
    pub const DROP_RX_SK: u8 = 1 << 2;
}

/// `ProbeConfig::cgroups`: the socket's cgroup (see `StateEvent::cgroup_id`).
pub mod cgroups {
    /// Not read.
    pub const IGNORE: u8 = 0;
    /// Read into every event of a full socket, and a socket whose cgroup is in `CGROUPS_LEFT_OUT` is neither counted nor
    /// reported (`--pod`, `--k8s-namespace`, `--container`: user space judges each cgroup
    /// once and writes the ones that fail here).
    pub const FILTER: u8 = 1;
    /// Cgroups `CGROUPS_LEFT_OUT` holds at most; beyond it, user space judges the rest.
    pub const MAX_LEFT_OUT: u32 = 8192;
}

/// A set of namespaces user space keeps the programs to, changed as they come and go (the
/// lab's: `NETNS_WATCHED`, keyed by namespace inode, the value unused).
pub mod watched_netns {
    /// Namespaces `NETNS_WATCHED` holds at most.
    pub const MAX: u32 = 64;
}

/// Dropped TCP segments counted by reason (the `DROP_REASONS` per-CPU array).
pub mod drop {
    /// Slots: one per `enum skb_drop_reason` value below the last; the last slot holds the
    /// rest (subsystem reasons, which start at 1 << 16).
    pub const REASON_SLOTS: u32 = 256;
}

/// Indexes into the per-CPU `COUNTERS` array.
pub mod counter {
    /// Events written to the ring buffer.
    pub const EMITTED: u32 = 0;
    /// Events dropped because the ring buffer was full (failed reserve).
    pub const LOST: u32 = 1;
    /// Events the hook saw but could not decode (unreadable socket memory).
    pub const READ_ERRORS: u32 = 2;
    /// Resets received / sent and segments retransmitted (data, SYN, FIN, SYN-ACK) in the
    /// watched sockets; bumped before the ring is touched, so exact when events are lost.
    pub const RESETS_RECEIVED: u32 = 3;
    pub const RESETS_SENT: u32 = 4;
    pub const RETRANSMITS: u32 = 5;
    /// Timewait sockets created (either substate), overflows (none could be created), and
    /// early deaths by reuse, by an RST, or killed otherwise (`ss -K`, namespace exit).
    pub const TW_CREATED: u32 = 6;
    pub const TW_OVERFLOWS: u32 = 7;
    pub const TW_REUSED: u32 = 8;
    pub const TW_RESET: u32 = 9;
    pub const TW_KILLED: u32 = 10;
    /// Resets sent answering no socket (a closed port); also counted in `RESETS_SENT`.
    pub const RESETS_NO_SOCKET: u32 = 11;
    /// `RETRANSMITS` by kind: this index plus the `retransmit` number less one (SYN,
    /// SYN-ACK, RTO, TLP, recovery; an unclassified one counts in `RETRANSMITS` only).
    pub const RETRANSMITS_BY_KIND: u32 = 12;
    /// Number of counters.
    pub const COUNT: u32 = RETRANSMITS_BY_KIND + super::retransmit::KINDS as u32;
}

/// Kernel TCP state numbers (`include/net/tcp_states.h`); the tracepoint passes these.
pub mod tcp_state {
    pub const ESTABLISHED: u8 = 1;
    pub const SYN_SENT: u8 = 2;
    pub const SYN_RECV: u8 = 3;
    pub const FIN_WAIT1: u8 = 4;
    pub const FIN_WAIT2: u8 = 5;
    pub const TIME_WAIT: u8 = 6;
    pub const CLOSE: u8 = 7;
    pub const CLOSE_WAIT: u8 = 8;
    pub const LAST_ACK: u8 = 9;
    pub const LISTEN: u8 = 10;
    pub const CLOSING: u8 = 11;
    pub const NEW_SYN_RECV: u8 = 12;
    pub const BOUND_INACTIVE: u8 = 13;

    /// ss's spelling of each state, indexed by kernel number (`sstate_name` in misc/ss.c,
    /// except that 7 is CLOSE here: the listing alone calls it UNCONN). Index 0 is not a
    /// state.
    pub const NAMES: [&str; 14] = [
        "UNKNOWN",
        "ESTAB",
        "SYN-SENT",
        "SYN-RECV",
        "FIN-WAIT-1",
        "FIN-WAIT-2",
        "TIME-WAIT",
        "CLOSE",
        "CLOSE-WAIT",
        "LAST-ACK",
        "LISTEN",
        "CLOSING",
        "NEW-SYN-RECV",
        "BOUND-INACTIVE",
    ];

    /// The same names in lower case, as filters (`state time-wait`) and alert metrics
    /// spell them.
    pub const LOWER_NAMES: [&str; 14] = [
        "unknown",
        "estab",
        "syn-sent",
        "syn-recv",
        "fin-wait-1",
        "fin-wait-2",
        "time-wait",
        "close",
        "close-wait",
        "last-ack",
        "listen",
        "closing",
        "new-syn-recv",
        "bound-inactive",
    ];

    /// Every transition a TCP socket takes on Linux, as the kernel counts them (`EDGES`):
    /// `inet_sock_set_state` for a full socket, plus the timewait socket's own edges, which
    /// the timewait hooks count (the close that hands over to one as `-> TIME-WAIT`, and its
    /// end as `TIME-WAIT -> CLOSE`). RFC 9293 edges missing here Linux never takes: a send
    /// on a listener (LISTEN -> SYN-SENT), and an RST in SYN-RECEIVED back to LISTEN
    /// (Linux's SYN-RECV child is a socket of its own, which dies instead).
    pub const LINUX_EDGES: [(u8, u8); 24] = [
        (CLOSE, SYN_SENT),
        (CLOSE, LISTEN),
        (LISTEN, CLOSE),
        (LISTEN, SYN_RECV),
        (SYN_SENT, ESTABLISHED),
        (SYN_SENT, SYN_RECV),
        (SYN_SENT, CLOSE),
        (SYN_RECV, ESTABLISHED),
        (SYN_RECV, FIN_WAIT1),
        (SYN_RECV, CLOSE),
        (ESTABLISHED, FIN_WAIT1),
        (ESTABLISHED, CLOSE_WAIT),
        (ESTABLISHED, CLOSE),
        (FIN_WAIT1, FIN_WAIT2),
        (FIN_WAIT1, CLOSING),
        (FIN_WAIT1, CLOSE),
        (FIN_WAIT2, TIME_WAIT),
        (FIN_WAIT2, CLOSE),
        (CLOSING, TIME_WAIT),
        (CLOSING, CLOSE),
        (TIME_WAIT, CLOSE),
        (CLOSE_WAIT, LAST_ACK),
        (CLOSE_WAIT, CLOSE),
        (LAST_ACK, CLOSE),
    ];

    /// ss's name for kernel state `n`, if it is one.
    pub const fn name(n: u8) -> Option<&'static str> {
        if n >= 1 && (n as usize) < NAMES.len() {
            Some(NAMES[n as usize])
        } else {
            None
        }
    }
}

/// Address families (`include/linux/socket.h`), as `sk_family` and sock_diag carry them.
pub mod family {
    pub const UNSPEC: u16 = 0;
    pub const INET: u16 = 2;
    pub const INET6: u16 = 10;
}

#[cfg(feature = "user")]
mod pod {
    // All of these are repr(C), consist only of integers and byte arrays, and have explicit
    // padding, so every bit pattern is valid.
    // SAFETY: see above.
    unsafe impl aya::Pod for super::StateEvent {}
    // SAFETY: see above.
    unsafe impl aya::Pod for super::SockOffsets {}
    // SAFETY: see above.
    unsafe impl aya::Pod for super::TracepointOffsets {}
    // SAFETY: see above.
    unsafe impl aya::Pod for super::ProbeConfig {}
    // SAFETY: see above.
    unsafe impl aya::Pod for super::OwnerRecord {}
    // SAFETY: see above.
    unsafe impl aya::Pod for super::OwnerOffsets {}
    // SAFETY: see above.
    unsafe impl aya::Pod for super::OwnerInfo {}
    // SAFETY: see above.
    unsafe impl aya::Pod for super::TwOffsets {}
    // SAFETY: see above.
    unsafe impl aya::Pod for super::TcpOffsets {}
}
