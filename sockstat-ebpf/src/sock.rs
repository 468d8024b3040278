//! Reading `struct sock` at offsets user space resolved from the running kernel's BTF, and
//! the pieces every socket event shares.
use core::ffi::c_void;

use aya_ebpf::{
    bindings::BPF_SK_STORAGE_GET_F_CREATE,
    helpers::{
        bpf_get_current_pid_tgid, bpf_ktime_get_ns,
        generated::{bpf_get_current_comm, bpf_sk_storage_get, bpf_skc_to_tcp_sock},
    },
};
use sockstat_common::{OwnerInfo, SockOffsets, StateEvent, cgroups, flags, hook, owner_source};

use crate::maps::{CGROUPS_LEFT_OUT, NETNS_WATCHED, OWNERS, config};

pub use sockstat_common::family::{INET as AF_INET, INET6 as AF_INET6};
pub const IPPROTO_TCP: u16 = 6;

#[inline(always)]
pub unsafe fn read<T>(base: *const u8, offset: u32) -> Result<T, i32> {
    // SAFETY: bpf_probe_read_kernel takes any address; a bad one is an error, not a fault.
    unsafe { aya_ebpf::helpers::bpf_probe_read_kernel(base.add(offset as usize).cast::<T>()) }
}

/// A field of `struct sock` (or `sock_common`) through a BTF-typed pointer: the tp_btf
/// argument, or a pointer loaded from one. A plain load the verifier checks against BTF
/// (faults read as 0), where `read` costs a helper call: the state hook's run time is the
/// window in which a softirq re-entering it is skipped, so its hot reads use this. `offset`
/// must be one of the frozen read-only offsets, which the verifier treats as constants, and
/// must lie inside `struct sock` (tcp_sock and inet_sock fields still go through `read`).
#[inline(always)]
pub unsafe fn field<T: Copy>(base: *const u8, offset: u32) -> T {
    // SAFETY: see above; the verifier rejects the program rather than let an unchecked
    // load through.
    unsafe { core::ptr::read_volatile(base.add(offset as usize).cast::<T>()) }
}

/// `field` when `TYPED` (a BTF-typed `sk`), else `read` (a pointer the verifier only
/// knows as a number, as in the timewait hooks).
#[inline(always)]
pub unsafe fn get<T: Copy, const TYPED: bool>(base: *const u8, offset: u32) -> Result<T, i32> {
    if TYPED {
        // SAFETY: the caller's socket at loader-checked offsets (see `field`, `read`).
        Ok(unsafe { field(base, offset) })
    } else {
        // SAFETY: the caller's socket at loader-checked offsets (see `field`, `read`).
        unsafe { read(base, offset) }
    }
}

/// Network-namespace inode of `sk`: `sk->__sk_common.skc_net.net->ns.inum`.
#[inline(always)]
pub unsafe fn netns_inum<const TYPED: bool>(sk: *const u8, off: &SockOffsets) -> Result<u32, i32> {
    // SAFETY: the caller's socket at loader-checked offsets (see `field`, `read`).
    let net: *const u8 = unsafe { get::<_, TYPED>(sk, off.skc_net)? };
    if net.is_null() {
        return Ok(0);
    }
    // SAFETY: the caller's socket at loader-checked offsets (see `field`, `read`).
    unsafe { get::<_, TYPED>(net, off.net_ns_inum) }
}

/// What `wanted` read of a socket the filters keep, for `fill_socket`.
#[derive(Clone, Copy)]
pub struct Wanted {
    pub family: u16,
    /// 0 where neither events nor a port filter ask for it (see `wanted`).
    pub sport: u16,
    pub dport: u16,
    /// Its cgroup id, where `ProbeConfig::cgroups` asks for it (else 0).
    pub cgroup: u64,
}

/// Family and ports of `sk`, and whether the in-kernel filters (family, port, netns,
/// cgroup) keep it. `passive_open`: LISTEN -> SYN-RECV, where some kernels still show the
/// child with the listener's ports (no peer port yet); user space filters those once it
/// knows the child's. `sk` is a hook's BTF-typed socket.
#[inline(always)]
pub unsafe fn wanted(
    sk: *const u8,
    off: &SockOffsets,
    passive_open: bool,
) -> Result<Option<Wanted>, i32> {
    // SAFETY: the caller's socket at loader-checked offsets (see `field`, `read`).
    let family: u16 = unsafe { field(sk, off.skc_family) };
    if family != AF_INET && family != AF_INET6 {
        return Ok(None);
    }
    // The local port lives in `inet_sock`, past what the verifier lets a `struct sock *`
    // load. Only the port filters and events use it, and counting alone (--count-only)
    // without a port filter needs neither: a tenth of the hook's run.
    let cfg = config();
    let sport = if cfg.emit_events != 0 || cfg.port != 0 || cfg.own_port != 0 {
        // A TCP socket typed as `struct tcp_sock` by a cheap helper call makes it a plain
        // load; the rest take a probe read, which costs several times the call.
        // SAFETY: the helper checks the socket's kind and returns null when it is no TCP one.
        let tp = unsafe { bpf_skc_to_tcp_sock(sk as *mut c_void) } as *const u8;
        let port: u16 = if tp.is_null() {
            // SAFETY: the caller's socket at loader-checked offsets (see `field`, `read`).
            unsafe { read(sk, off.inet_sport)? }
        } else {
            // SAFETY: `inet_sock` begins `struct tcp_sock`; a loader-checked offset in it.
            unsafe { field(tp, off.inet_sport) }
        };
        u16::from_be(port)
    } else {
        0
    };
    // SAFETY: the caller's socket at loader-checked offsets (see `field`, `read`).
    let dport = u16::from_be(unsafe { field(sk, off.skc_dport) });
    let unaddressed = passive_open && dport == 0;
    // SAFETY: the caller's socket at loader-checked offsets (see `field`, `read`).
    if !unsafe { passes_filters::<true>(sk, off, family, sport, dport, unaddressed)? } {
        return Ok(None);
    }
    let mode = cfg.cgroups;
    if mode == cgroups::IGNORE {
        return Ok(Some(Wanted {
            family,
            sport,
            dport,
            cgroup: 0,
        }));
    }
    // SAFETY: the caller's socket at loader-checked offsets (see `field`, `read`).
    let cgroup = unsafe { cgroup_id(sk, off) };
    // SAFETY: a lookup in our own hash map; the value is not kept.
    if mode == cgroups::FILTER && cgroup != 0 && unsafe { CGROUPS_LEFT_OUT.get(&cgroup) }.is_some()
    {
        return Ok(None);
    }
    Ok(Some(Wanted {
        family,
        sport,
        dport,
        cgroup,
    }))
}

/// The cgroup v2 id of a full socket: `sk->sk_cgrp_data.cgroup->kn->id` (0 if it has
/// none). Plain BTF-checked loads: each pointer loaded is typed by the verifier in turn.
#[inline(always)]
unsafe fn cgroup_id(sk: *const u8, off: &SockOffsets) -> u64 {
    if off.kernfs_node_id == 0 {
        return 0;
    }
    // SAFETY: the caller's socket at loader-checked offsets (see `field`).
    let cgroup: *const u8 = unsafe { field(sk, off.sk_cgroup) };
    if cgroup.is_null() {
        return 0;
    }
    // SAFETY: a `struct cgroup *` loaded from the socket, at a loader-checked offset.
    let kn: *const u8 = unsafe { field(cgroup, off.cgroup_kn) };
    if kn.is_null() {
        return 0;
    }
    // SAFETY: a `struct kernfs_node *` loaded from the cgroup, at a loader-checked offset.
    unsafe { field(kn, off.kernfs_node_id) }
}

/// The in-kernel filters (family, port, namespace, sockstat's own endpoint) for a socket or
/// timewait socket: `sk` points at its `struct sock_common`. `skip_port`: the ports are not
/// the socket's own yet (see `wanted`).
#[inline(always)]
pub unsafe fn passes_filters<const TYPED: bool>(
    sk: *const u8,
    off: &SockOffsets,
    family: u16,
    sport: u16,
    dport: u16,
    skip_port: bool,
) -> Result<bool, i32> {
    let cfg = config();
    if cfg.family != 0 && cfg.family != family {
        return Ok(false);
    }
    if cfg.port != 0 && cfg.port != sport && cfg.port != dport && !skip_port {
        return Ok(false);
    }
    // SAFETY: the caller's socket at loader-checked offsets (see `field`, `read`).
    if cfg.netns != 0 && unsafe { netns_inum::<TYPED>(sk, off)? } != cfg.netns {
        return Ok(false);
    }
    if cfg.netns_watched != 0
        // SAFETY: the caller's socket at loader-checked offsets (see `field`, `read`).
        && NETNS_WATCHED.get_ptr(&unsafe { netns_inum::<TYPED>(sk, off)? }).is_none()
    {
        return Ok(false);
    }
    if cfg.own_port != 0
        && (sport == cfg.own_port || dport == cfg.own_port)
        // SAFETY: the caller's socket at loader-checked offsets (see `field`, `read`).
        && unsafe { netns_inum::<TYPED>(sk, off)? } == cfg.own_netns
        // SAFETY: the caller's socket at loader-checked offsets (see `field`, `read`).
        && (sport == cfg.own_port || unsafe { loopback_peer::<TYPED>(sk, off, family)? })
    {
        return Ok(false);
    }
    Ok(true)
}

/// Whether the peer of `sk` is a loopback address (127/8, ::1, ::ffff:127/104): a client of
/// sockstat's own port is sockstat's doing only when it is local. `OwnEndpoint::covers` in
/// user space applies the same rule to dumps.
#[inline(always)]
unsafe fn loopback_peer<const TYPED: bool>(
    sk: *const u8,
    off: &SockOffsets,
    family: u16,
) -> Result<bool, i32> {
    if family == AF_INET6 {
        // SAFETY: the caller's socket at loader-checked offsets (see `field`, `read`).
        Ok(loopback_v6(unsafe {
            get::<_, TYPED>(sk, off.skc_v6_daddr)?
        }))
    } else {
        // SAFETY: the caller's socket at loader-checked offsets (see `field`, `read`).
        Ok(loopback_v4(unsafe { get::<_, TYPED>(sk, off.skc_daddr)? }))
    }
}

#[inline(always)]
pub fn loopback_v4(addr: [u8; 4]) -> bool {
    addr[0] == 127
}

/// `::1`, or an IPv4-mapped loopback address.
#[inline(always)]
pub fn loopback_v6(addr: [u8; 16]) -> bool {
    let zero = |b: &[u8]| b.iter().all(|&x| x == 0);
    (zero(&addr[..15]) && addr[15] == 1)
        || (zero(&addr[..10]) && addr[10] == 0xff && addr[11] == 0xff && addr[12] == 127)
}

/// An event's byte arrays written, and the whole event cleared, a word at a time. On the
/// bpf target an array assignment (`= [0; 16]`, `= other.comm`), or a run of zeroed fields,
/// compiles to a call to compiler-builtins' memset or memmove, which loop a byte at a time:
/// together a quarter of the state hook's own run time under the full stream (perf, 6.18).
/// The common crate asserts that `StateEvent` and `OwnerInfo` are 8-aligned and that their
/// arrays start on 8-byte offsets.
pub mod words {
    use sockstat_common::StateEvent;

    const _: () = assert!(core::mem::size_of::<StateEvent>().is_multiple_of(8));

    /// Stores `w` into `dst`, low word first.
    ///
    /// # Safety
    /// `dst` is 8-aligned: an array of a `StateEvent` or an `OwnerInfo`.
    #[inline(always)]
    pub unsafe fn put(dst: &mut [u8; 16], w: [u64; 2]) {
        let p = dst.as_mut_ptr().cast::<u64>();
        // SAFETY: 16 writable bytes, 8-aligned by the caller's contract. Volatile, so that
        // two zero words are not merged back into a memset call.
        unsafe {
            p.write_volatile(w[0]);
            p.add(1).write_volatile(w[1]);
        }
    }

    /// `src` as two words, low word first.
    ///
    /// # Safety
    /// `src` is 8-aligned: an array of a `StateEvent` or an `OwnerInfo`.
    #[inline(always)]
    pub unsafe fn get(src: &[u8; 16]) -> [u64; 2] {
        let p = src.as_ptr().cast::<u64>();
        // SAFETY: 16 readable bytes, 8-aligned by the caller's contract.
        unsafe { [p.read(), p.add(1).read()] }
    }

    /// Every byte of `ev` to zero.
    #[inline(always)]
    pub fn clear(ev: &mut StateEvent) {
        let p = (ev as *mut StateEvent).cast::<u64>();
        for i in 0..core::mem::size_of::<StateEvent>() / 8 {
            // SAFETY: inside `ev`, which is 8-aligned and a whole number of words long.
            // Volatile, so that the stores are not merged back into a memset call.
            unsafe { p.add(i).write_volatile(0) };
        }
    }
}

/// Timestamp and current task, shared by every hook.
#[inline(always)]
pub fn fill_task(ev: &mut StateEvent) {
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    ev.ts_ns = unsafe { bpf_ktime_get_ns() };
    let pid_tgid = bpf_get_current_pid_tgid();
    ev.tgid = (pid_tgid >> 32) as u32;
    ev.tid = pid_tgid as u32;
    // Straight into the event (the safe wrapper fills a local array that is then copied a
    // byte at a time); the helper NUL-pads, and zero-fills on failure.
    // SAFETY: 16 writable bytes of our own, the size passed.
    unsafe { bpf_get_current_comm(ev.comm.as_mut_ptr().cast(), 16) };
}

/// Fills the socket half of an event: identity, addresses, namespace, current task.
/// `sk_arg` is the tracepoint's BTF-typed `struct sock *` argument, as the cookie helper
/// requires.
#[inline(always)]
pub unsafe fn fill_socket(
    ev: &mut StateEvent,
    sk_arg: *mut c_void,
    off: &SockOffsets,
    wanted: Wanted,
    cookie: u64,
) -> Result<(), i32> {
    let sk = sk_arg as *const u8;
    let Wanted {
        family,
        sport,
        dport,
        cgroup,
    } = wanted;
    // Every field the caller does not set is zero.
    words::clear(ev);
    fill_task(ev);
    ev.hook = hook::TP_BTF;
    ev.family = family;
    ev.sport = sport;
    ev.dport = dport;
    // SAFETY: the caller's socket at loader-checked offsets (see `field`, `read`).
    ev.protocol = unsafe { field(sk, off.sk_protocol) };
    // SAFETY: the caller's socket at loader-checked offsets (see `field`, `read`).
    ev.netns = unsafe { netns_inum::<true>(sk, off)? };
    ev.cookie = cookie;
    ev.sk_addr = sk_arg as u64;
    ev.flags = flags::COOKIE_IS_SOCKET_COOKIE;
    ev.cgroup_id = cgroup;
    if family == AF_INET6 {
        // SAFETY: the caller's socket at loader-checked offsets (see `field`, `read`).
        ev.saddr = unsafe { field(sk, off.skc_v6_rcv_saddr) };
        // SAFETY: the caller's socket at loader-checked offsets (see `field`, `read`).
        ev.daddr = unsafe { field(sk, off.skc_v6_daddr) };
    } else {
        // Network order in, network order out: the first four bytes of each array.
        // SAFETY: the caller's socket at loader-checked offsets (see `field`, `read`).
        let s: u32 = unsafe { field(sk, off.skc_rcv_saddr) };
        // SAFETY: the caller's socket at loader-checked offsets (see `field`, `read`).
        let d: u32 = unsafe { field(sk, off.skc_daddr) };
        // SAFETY: arrays of a `StateEvent` (see `words`).
        unsafe {
            words::put(&mut ev.saddr, [u64::from(s), 0]);
            words::put(&mut ev.daddr, [u64::from(d), 0]);
        }
    }
    Ok(())
}

/// What `tcp_info` would say of a TCP socket's transfer: bytes, retransmits, RTT, cwnd
/// and delivery rate.
#[inline(always)]
pub unsafe fn fill_tcp(
    ev: &mut StateEvent,
    sk_arg: *mut c_void,
    off: &SockOffsets,
) -> Result<(), i32> {
    // One helper call types the pointer as `struct tcp_sock`, so its fields are plain
    // loads (a helper call each otherwise).
    // SAFETY: the hook's BTF-typed socket, as the helper requires.
    let tp = unsafe { bpf_skc_to_tcp_sock(sk_arg) } as *const u8;
    if tp.is_null() {
        // SAFETY: the caller's socket at loader-checked offsets (see `field`, `read`).
        unsafe { read_tcp::<false>(ev, sk_arg as *const u8, off) }
    } else {
        // SAFETY: the socket as `struct tcp_sock`, at loader-checked offsets.
        unsafe { read_tcp::<true>(ev, tp, off) }
    }
}

#[inline(always)]
unsafe fn read_tcp<const TYPED: bool>(
    ev: &mut StateEvent,
    tp: *const u8,
    off: &SockOffsets,
) -> Result<(), i32> {
    let (min_rtt, snd_cwnd) = (tcp_offset!(min_rtt), tcp_offset!(snd_cwnd));
    let (rate_delivered, rate_interval_us, mss_cache) = (
        tcp_offset!(rate_delivered),
        tcp_offset!(rate_interval_us),
        tcp_offset!(mss_cache),
    );
    // SAFETY: the caller's socket at loader-checked offsets (see `field`, `read`).
    unsafe {
        ev.bytes_acked = get::<_, TYPED>(tp, off.tcp_bytes_acked)?;
        ev.bytes_received = get::<_, TYPED>(tp, off.tcp_bytes_received)?;
        ev.total_retrans = get::<_, TYPED>(tp, off.tcp_total_retrans)?;
        ev.srtt_us = get::<_, TYPED>(tp, off.tcp_srtt_us)?;
        ev.min_rtt_us = get::<_, TYPED>(tp, min_rtt)?;
        ev.snd_cwnd = get::<_, TYPED>(tp, snd_cwnd)?;
        let delivered: u32 = get::<_, TYPED>(tp, rate_delivered)?;
        let interval_us: u32 = get::<_, TYPED>(tp, rate_interval_us)?;
        let mss: u32 = get::<_, TYPED>(tp, mss_cache)?;
        // As tcp_compute_delivery_rate(): segments delivered in the latest sample's
        // interval, in bytes per second.
        ev.delivery_rate = (u64::from(delivered) * u64::from(mss) * 1_000_000)
            .checked_div(u64::from(interval_us))
            .unwrap_or(0);
    }
    Ok(())
}

/// The socket's `OWNERS` storage (null if it has none and `create` is false, or the
/// kernel could not make it). `sk_arg` must be a hook's BTF-typed `struct sock *`.
#[inline(always)]
pub unsafe fn owner_storage(sk_arg: *mut c_void, create: bool) -> *mut OwnerInfo {
    let map = core::ptr::addr_of!(OWNERS) as *mut c_void;
    let flags = if create {
        BPF_SK_STORAGE_GET_F_CREATE.into()
    } else {
        0
    };
    // SAFETY: our sk_storage map and the caller's BTF-typed socket, as required.
    unsafe { bpf_sk_storage_get(map, sk_arg, core::ptr::null_mut(), flags) as *mut OwnerInfo }
}

/// The socket's `OWNERS` storage if it has one (else null), without the helper call when
/// the socket has no BPF storage at all: nearly every socket, as user space remembers the
/// owners it is told (see `fill_owner`). `sk_arg` must be a hook's BTF-typed socket.
#[inline(always)]
unsafe fn stored_owner(sk_arg: *mut c_void, off: &SockOffsets) -> *mut OwnerInfo {
    // Compared with null only, never followed.
    // SAFETY: the caller's socket at a loader-checked offset (see `field`).
    let storage: u64 = unsafe { field(sk_arg as *const u8, off.sk_bpf_storage) };
    if storage == 0 {
        return core::ptr::null_mut();
    }
    // SAFETY: the hook's BTF-typed socket.
    unsafe { owner_storage(sk_arg, false) }
}

/// An event that would have named the owner was lost (the ring was full): the owner goes
/// into the socket's storage instead, so the socket's later events still carry it.
#[inline(always)]
pub unsafe fn remember_owner(sk_arg: *mut c_void, off: &SockOffsets) {
    // SAFETY: the caller's socket at loader-checked offsets (see `field`, `read`).
    let owned: i32 = unsafe { field(sk_arg as *const u8, off.sk_lock_owned) };
    if owned == 0 {
        return;
    }
    // SAFETY: the hook's BTF-typed socket.
    let slot = unsafe { owner_storage(sk_arg, true) };
    if !slot.is_null() {
        // SAFETY: `slot` is non-null: this socket's OwnerInfo, ours for this run.
        unsafe {
            (*slot).tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
            bpf_get_current_comm((*slot).comm.as_mut_ptr().cast(), 16);
        }
    }
}

/// The owner: the current task when it holds the socket lock (and then written to the
/// socket's storage, if it has one), else whoever the storage remembers. The interrupted
/// task of a softirq is never named.
#[inline(always)]
pub unsafe fn fill_owner(
    ev: &mut StateEvent,
    sk_arg: *mut c_void,
    off: &SockOffsets,
) -> Result<(), i32> {
    let sk = sk_arg as *const u8;
    // SAFETY: the caller's socket at loader-checked offsets (see `field`, `read`).
    let owned: i32 = unsafe { field(sk, off.sk_lock_owned) };
    if owned != 0 {
        ev.flags |= flags::TASK_OWNS_SOCKET;
        ev.owner_tgid = ev.tgid;
        // SAFETY: arrays of a `StateEvent` (see `words`).
        unsafe { words::put(&mut ev.owner_comm, words::get(&ev.comm)) };
        ev.owner_source = owner_source::TASK;
        // The event names the owner and user space remembers it: storage is updated where
        // it exists, and made only when such an event is lost (`remember_owner`).
        // Making it here was a third of this hook's cost (~2 µs a socket).
        // SAFETY: the hook's BTF-typed socket.
        let slot = unsafe { stored_owner(sk_arg, off) };
        if !slot.is_null() {
            // SAFETY: `slot` is non-null: this socket's OwnerInfo, ours for this run.
            unsafe {
                (*slot).tgid = ev.tgid;
                // Arrays of an `OwnerInfo` and a `StateEvent` (see `words`).
                words::put(&mut (*slot).comm, words::get(&ev.comm));
            }
        }
    } else {
        // SAFETY: the hook's BTF-typed socket.
        let slot = unsafe { stored_owner(sk_arg, off) }.cast_const();
        // SAFETY: `slot` is non-null there: this socket's OwnerInfo, ours for this run.
        if slot.is_null() || unsafe { (*slot).tgid } == 0 {
            // No storage, or only the RTT hook's (which names nobody).
            ev.owner_tgid = 0;
            // SAFETY: an array of a `StateEvent` (see `words`).
            unsafe { words::put(&mut ev.owner_comm, [0; 2]) };
            ev.owner_source = owner_source::UNKNOWN;
        } else {
            // SAFETY: `slot` is non-null: this socket's OwnerInfo, ours for this run.
            unsafe {
                ev.owner_tgid = (*slot).tgid;
                // Arrays of a `StateEvent` and an `OwnerInfo` (see `words`).
                words::put(&mut ev.owner_comm, words::get(&(*slot).comm));
            }
            ev.owner_source = owner_source::CACHED;
        }
    }
    Ok(())
}
