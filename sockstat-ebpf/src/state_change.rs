//! `sock:inet_sock_set_state`: one event per state transition of an inet socket.
//!
//! Two entry points produce the same `StateEvent`:
//! - `tp_btf/inet_sock_set_state` (preferred): the raw tracepoint arguments
//!   `TP_PROTO(const struct sock *sk, const int oldstate, const int newstate)`
//!   (include/trace/events/sock.h). The socket is read at BTF-resolved offsets, and the
//!   verifier knows `sk` is a `struct sock *`, so `bpf_get_socket_cookie` works.
//! - `tracepoint/sock/inet_sock_set_state` (fallback for kernels without BTF): the record
//!   described by `events/sock/inet_sock_set_state/format`, at offsets user space parsed from
//!   that file. No socket cookie is available there; the socket address stands in for it.
use aya_ebpf::{
    EbpfContext,
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns,
        generated::bpf_get_socket_cookie,
    },
    macros::{btf_tracepoint, tracepoint},
    programs::{BtfTracePointContext, TracePointContext},
};
use sockstat_common::{StateEvent, counter, flags, hook, kind, tcp_state as st};

use crate::{
    maps::{EVENTS, bump, config, sock_offsets, tp_offsets},
    sock::{netns_inum, read},
};

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn inet_sock_set_state_btf(ctx: BtfTracePointContext) -> i32 {
    match try_inet_sock_set_state_btf(&ctx) {
        Ok(()) => 0,
        Err(_) => {
            bump(counter::READ_ERRORS);
            0
        }
    }
}

fn try_inet_sock_set_state_btf(ctx: &BtfTracePointContext) -> Result<(), i32> {
    let sk: *const u8 = ctx.arg(0);
    let old_state: i32 = ctx.arg(1);
    let new_state: i32 = ctx.arg(2);
    let off = sock_offsets();
    if off.valid == 0 || sk.is_null() {
        return Err(-1);
    }
    let family: u16 = unsafe { read(sk, off.skc_family)? };
    let sport: u16 = u16::from_be(unsafe { read(sk, off.inet_sport)? });
    let dport: u16 = u16::from_be(unsafe { read(sk, off.skc_dport)? });
    if !wanted(family, sport, dport) {
        return Ok(());
    }

    let Some(mut entry) = EVENTS.reserve::<StateEvent>(0) else {
        bump(counter::LOST);
        return Ok(());
    };
    let ev = entry.as_mut_ptr();
    // Fill in place: the event is too large to build on the 512-byte BPF stack twice.
    let filled = unsafe { fill_btf(&mut *ev, ctx, sk, &off, family, sport, dport) };
    unsafe {
        (*ev).old_state = old_state as u8;
        (*ev).new_state = new_state as u8;
    }
    match filled {
        Ok(()) => {
            entry.submit(0);
            bump(counter::EMITTED);
            Ok(())
        }
        Err(e) => {
            entry.discard(0);
            Err(e)
        }
    }
}

#[inline(always)]
unsafe fn fill_btf(
    ev: &mut StateEvent,
    ctx: &BtfTracePointContext,
    sk: *const u8,
    off: &sockstat_common::SockOffsets,
    family: u16,
    sport: u16,
    dport: u16,
) -> Result<(), i32> {
    fill_task(ev);
    ev.kind = kind::STATE_CHANGE;
    ev.hook = hook::TP_BTF;
    ev.family = family;
    ev.sport = sport;
    ev.dport = dport;
    ev.protocol = unsafe { read(sk, off.sk_protocol)? };
    ev.netns = unsafe { netns_inum(sk, off)? };
    // The raw tracepoint context is an array of u64 arguments; arg 0 is the `struct sock *`
    // the verifier typed from BTF, which is what the cookie helper needs.
    ev.cookie = unsafe { bpf_get_socket_cookie(*(ctx.as_ptr() as *const *mut core::ffi::c_void)) };
    let mut f = flags::COOKIE_IS_SOCKET_COOKIE;
    let owned: i32 = unsafe { read(sk, off.sk_lock_owned)? };
    if owned != 0 {
        f |= flags::TASK_OWNS_SOCKET;
    }
    ev.flags = f;
    ev._pad0 = [0; 1];
    ev._pad1 = [0; 2];
    if family == AF_INET6 {
        ev.saddr = unsafe { read(sk, off.skc_v6_rcv_saddr)? };
        ev.daddr = unsafe { read(sk, off.skc_v6_daddr)? };
    } else {
        let s: [u8; 4] = unsafe { read(sk, off.skc_rcv_saddr)? };
        let d: [u8; 4] = unsafe { read(sk, off.skc_daddr)? };
        ev.saddr = [0; 16];
        ev.daddr = [0; 16];
        ev.saddr[..4].copy_from_slice(&s);
        ev.daddr[..4].copy_from_slice(&d);
    }
    Ok(())
}

#[tracepoint(category = "sock", name = "inet_sock_set_state")]
pub fn inet_sock_set_state_tp(ctx: TracePointContext) -> u32 {
    match try_inet_sock_set_state_tp(&ctx) {
        Ok(()) => 0,
        Err(_) => {
            bump(counter::READ_ERRORS);
            0
        }
    }
}

fn try_inet_sock_set_state_tp(ctx: &TracePointContext) -> Result<(), i32> {
    let off = tp_offsets();
    if off.valid == 0 {
        return Err(-1);
    }
    let family: u16 = unsafe { ctx.read_at(off.family as usize)? };
    let sport: u16 = unsafe { ctx.read_at(off.sport as usize)? };
    let dport: u16 = unsafe { ctx.read_at(off.dport as usize)? };
    if !wanted(family, sport, dport) {
        return Ok(());
    }
    let Some(mut entry) = EVENTS.reserve::<StateEvent>(0) else {
        bump(counter::LOST);
        return Ok(());
    };
    let ev = entry.as_mut_ptr();
    let filled = unsafe { fill_tp(&mut *ev, ctx, &off, family, sport, dport) };
    match filled {
        Ok(()) => {
            entry.submit(0);
            bump(counter::EMITTED);
            Ok(())
        }
        Err(e) => {
            entry.discard(0);
            Err(e)
        }
    }
}

#[inline(always)]
unsafe fn fill_tp(
    ev: &mut StateEvent,
    ctx: &TracePointContext,
    off: &sockstat_common::TracepointOffsets,
    family: u16,
    sport: u16,
    dport: u16,
) -> Result<(), i32> {
    fill_task(ev);
    ev.kind = kind::STATE_CHANGE;
    ev.hook = hook::TRACEPOINT;
    ev.family = family;
    ev.sport = sport;
    ev.dport = dport;
    ev.netns = 0;
    ev.flags = 0;
    ev._pad0 = [0; 1];
    ev._pad1 = [0; 2];
    unsafe {
        ev.protocol = ctx.read_at(off.protocol as usize)?;
        let skaddr: u64 = ctx.read_at(off.skaddr as usize)?;
        ev.cookie = skaddr;
        let old: i32 = ctx.read_at(off.oldstate as usize)?;
        let new: i32 = ctx.read_at(off.newstate as usize)?;
        ev.old_state = old as u8;
        ev.new_state = new as u8;
        if syscall_only_edge(ev.old_state, ev.new_state) {
            ev.flags = flags::TASK_OWNS_SOCKET;
        }
        if family == AF_INET6 {
            ev.saddr = ctx.read_at(off.saddr_v6 as usize)?;
            ev.daddr = ctx.read_at(off.daddr_v6 as usize)?;
        } else {
            let s: [u8; 4] = ctx.read_at(off.saddr as usize)?;
            let d: [u8; 4] = ctx.read_at(off.daddr as usize)?;
            ev.saddr = [0; 16];
            ev.daddr = [0; 16];
            ev.saddr[..4].copy_from_slice(&s);
            ev.daddr[..4].copy_from_slice(&d);
        }
    }
    Ok(())
}

/// Edges the kernel takes only inside connect(), listen(), close() or shutdown(), so the
/// current task is the socket's user. Everything else may run in softirq.
#[inline(always)]
fn syscall_only_edge(old: u8, new: u8) -> bool {
    matches!(
        (old, new),
        (st::CLOSE, st::SYN_SENT)
            | (st::CLOSE, st::LISTEN)
            | (st::LISTEN, st::CLOSE)
            | (st::ESTABLISHED, st::FIN_WAIT1)
            | (st::SYN_RECV, st::FIN_WAIT1)
            | (st::CLOSE_WAIT, st::LAST_ACK)
    )
}

/// The cheap in-kernel filters: address family and "either port equals".
#[inline(always)]
fn wanted(family: u16, sport: u16, dport: u16) -> bool {
    if family != AF_INET && family != AF_INET6 {
        return false;
    }
    let cfg = config();
    if cfg.family != 0 && cfg.family != family {
        return false;
    }
    cfg.port == 0 || cfg.port == sport || cfg.port == dport
}

#[inline(always)]
fn fill_task(ev: &mut StateEvent) {
    ev.ts_ns = unsafe { bpf_ktime_get_ns() };
    let pid_tgid = bpf_get_current_pid_tgid();
    ev.tgid = (pid_tgid >> 32) as u32;
    ev.tid = pid_tgid as u32;
    ev.comm = bpf_get_current_comm().unwrap_or([0; 16]);
}
