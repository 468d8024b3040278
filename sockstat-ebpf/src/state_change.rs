//! `sock:inet_sock_set_state`: one event per state transition of an inet socket.
//!
//! Two entry points produce the same `StateEvent`:
//! - `tp_btf/inet_sock_set_state` (preferred): the raw tracepoint arguments
//!   `TP_PROTO(const struct sock *sk, const int oldstate, const int newstate)`
//!   (include/trace/events/sock.h). The socket is read at BTF-resolved offsets, and the
//!   verifier knows `sk` is a `struct sock *`, so `bpf_get_socket_cookie` and socket
//!   storage work.
//! - `tracepoint/sock/inet_sock_set_state` (fallback for kernels without BTF): the record
//!   described by `events/sock/inet_sock_set_state/format`, at offsets user space parsed from
//!   that file. No socket cookie is available there; the socket address stands in for it.
use core::ffi::c_void;

use aya_ebpf::{
    EbpfContext,
    macros::{btf_tracepoint, tracepoint},
    programs::{BtfTracePointContext, TracePointContext},
};
use sockstat_common::{StateEvent, flags, hook, kind, owner_source, tcp_state as st};

use aya_ebpf::helpers::generated::bpf_get_socket_cookie;

use crate::{
    maps::{bump_edge, config, read_failed, sock_offsets, tp_offsets},
    sock::{
        AF_INET, AF_INET6, IPPROTO_TCP, field, fill_owner, fill_socket, fill_task, fill_tcp,
        loopback_v4, loopback_v6, remember_owner, wanted, words,
    },
    timewait,
};

#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn inet_sock_set_state_btf(ctx: BtfTracePointContext) -> i32 {
    if let Err(e) = try_inet_sock_set_state_btf(&ctx) {
        read_failed(&ctx, "inet_sock_set_state", e);
    }
    0
}

fn try_inet_sock_set_state_btf(ctx: &BtfTracePointContext) -> Result<(), i32> {
    // Argument 0 as the raw context slot: the verifier's BTF-typed `struct sock *`.
    // SAFETY: argument 0 of the raw tracepoint context is the `struct sock *`.
    let sk_arg = unsafe { *(ctx.as_ptr() as *const *mut c_void) };
    let old_state: i32 = ctx.arg(1);
    let new_state: i32 = ctx.arg(2);
    let off = sock_offsets();
    if off.valid == 0 || sk_arg.is_null() {
        return Err(-1);
    }
    let sk = sk_arg as *const u8;
    let passive_open = old_state == i32::from(st::LISTEN) && new_state == i32::from(st::SYN_RECV);
    // SAFETY: the caller's socket at loader-checked offsets (see `field`, `read`).
    let Some(addr) = (unsafe { wanted(sk, off, passive_open)? }) else {
        return Ok(());
    };
    let (old, new) = (old_state as u8, new_state as u8);
    // Also when no event is written, on the way to a timewait socket: the timewait socket
    // copies the cookie, and the timewait hooks recognise it by that. Counting alone needs
    // it nowhere else, and the helper is a call on most of the hook's runs.
    let cookie = if config().emit_events != 0 || timewait::may_follow(old, new) {
        // SAFETY: the hook's BTF-typed socket, as the helper requires.
        unsafe { bpf_get_socket_cookie(sk_arg) }
    } else {
        0
    };
    // SAFETY: the caller's socket at loader-checked offsets (see `field`, `read`).
    let close = unsafe { timewait::classify(sk, off, cookie, old, new)? };
    if let Some(to) = close.edge_to {
        bump_edge(old, to);
    }
    emit_event!(ev => {
        // SAFETY: the socket is read via `field`/`read` at loader-checked offsets.
        unsafe {
            fill_socket(ev, sk_arg, off, addr, cookie).and_then(|()| {
                ev.kind = kind::STATE_CHANGE;
                ev.old_state = old_state as u8;
                ev.new_state = new_state as u8;
                // Set before tcp_done(), so a CLOSE carries why (ECONNREFUSED, ETIMEDOUT, ...).
                ev.sk_err = field(sk, off.sk_err);
                // enum sock_flags: SOCK_DEAD = 0, SOCK_DONE = 1 (set by tcp_fin()).
                let sk_flags: u64 = field(sk, off.sk_flags);
                if sk_flags & (1 << 1) != 0 {
                    ev.flags |= flags::PEER_FIN;
                }
                // Read where user space uses it, the handshake's RTT and the lifetime's
                // summary: it was a sixth of this hook's time on every transition.
                if ev.protocol == IPPROTO_TCP
                    && (new == st::ESTABLISHED || new == st::CLOSE)
                {
                    fill_tcp(ev, sk_arg, off)?;
                }
                ev.flags |= close.flags;
                ev.tw_substate = close.substate;
                fill_owner(ev, sk_arg, off)
            })
        }
    }, lost => {
        // SAFETY: the hook's BTF-typed socket, at loader-checked offsets.
        unsafe { remember_owner(sk_arg, off) }
    })
}

#[tracepoint(category = "sock", name = "inet_sock_set_state")]
pub fn inet_sock_set_state_tp(ctx: TracePointContext) -> u32 {
    if let Err(e) = try_inet_sock_set_state_tp(&ctx) {
        read_failed(&ctx, "inet_sock_set_state", e);
    }
    0
}

fn try_inet_sock_set_state_tp(ctx: &TracePointContext) -> Result<(), i32> {
    let off = tp_offsets();
    if off.valid == 0 {
        return Err(-1);
    }
    // SAFETY: format-file offsets; `read_at` is a probe read; `ev` is a ring slot.
    let family: u16 = unsafe { ctx.read_at(off.family as usize)? };
    // SAFETY: format-file offsets; `read_at` is a probe read; `ev` is a ring slot.
    let sport: u16 = unsafe { ctx.read_at(off.sport as usize)? };
    // SAFETY: format-file offsets; `read_at` is a probe read; `ev` is a ring slot.
    let dport: u16 = unsafe { ctx.read_at(off.dport as usize)? };
    if family != AF_INET && family != AF_INET6 {
        return Ok(());
    }
    let cfg = config();
    // SAFETY: format-file offsets; `read_at` is a probe read; `ev` is a ring slot.
    let old: i32 = unsafe { ctx.read_at(off.oldstate as usize)? };
    // SAFETY: format-file offsets; `read_at` is a probe read; `ev` is a ring slot.
    let new: i32 = unsafe { ctx.read_at(off.newstate as usize)? };
    // A child still showing the listener's ports (see `wanted`) passes to user space.
    let unaddressed = old == i32::from(st::LISTEN) && new == i32::from(st::SYN_RECV) && dport == 0;
    if (cfg.family != 0 && cfg.family != family)
        || (cfg.port != 0 && cfg.port != sport && cfg.port != dport && !unaddressed)
    {
        return Ok(());
    }
    // sockstat's own port: this record has no namespace, so the port and a loopback peer
    // decide (the tp_btf hook also checks the namespace).
    if cfg.own_port != 0
        && (sport == cfg.own_port
            // SAFETY: format-file offsets; `read_at` is a probe read; `ev` is a ring slot.
            || (dport == cfg.own_port && unsafe { tp_loopback_peer(ctx, off, family)? }))
    {
        return Ok(());
    }
    bump_edge(old as u8, new as u8);
    // SAFETY: format-file offsets; `read_at` is a probe read.
    emit_event!(ev => unsafe { fill_tp(ev, ctx, off, family, sport, dport, old, new) })
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn fill_tp(
    ev: &mut StateEvent,
    ctx: &TracePointContext,
    off: &sockstat_common::TracepointOffsets,
    family: u16,
    sport: u16,
    dport: u16,
    old: i32,
    new: i32,
) -> Result<(), i32> {
    words::clear(ev);
    fill_task(ev);
    ev.kind = kind::STATE_CHANGE;
    ev.hook = hook::TRACEPOINT;
    ev.family = family;
    ev.sport = sport;
    ev.dport = dport;
    ev.old_state = old as u8;
    ev.new_state = new as u8;
    // No socket lock to read here: only edges that happen inside a system call name the task.
    if syscall_only_edge(ev.old_state, ev.new_state) {
        ev.flags = flags::TASK_OWNS_SOCKET;
        ev.owner_tgid = ev.tgid;
        // SAFETY: arrays of a `StateEvent` (see `words`).
        unsafe { words::put(&mut ev.owner_comm, words::get(&ev.comm)) };
        ev.owner_source = owner_source::TASK;
    }
    // SAFETY: format-file offsets; `read_at` is a probe read; `ev` is a ring slot, whose
    // arrays `words` may write.
    unsafe {
        ev.protocol = ctx.read_at(off.protocol as usize)?;
        let skaddr: u64 = ctx.read_at(off.skaddr as usize)?;
        ev.cookie = skaddr;
        ev.sk_addr = skaddr;
        if family == AF_INET6 {
            ev.saddr = ctx.read_at(off.saddr_v6 as usize)?;
            ev.daddr = ctx.read_at(off.daddr_v6 as usize)?;
        } else {
            // Network order, as read: the first four bytes of each array.
            let s: u32 = ctx.read_at(off.saddr as usize)?;
            let d: u32 = ctx.read_at(off.daddr as usize)?;
            words::put(&mut ev.saddr, [u64::from(s), 0]);
            words::put(&mut ev.daddr, [u64::from(d), 0]);
        }
    }
    Ok(())
}

/// Whether the record's peer address is loopback (see `sock::loopback_peer`).
#[inline(always)]
unsafe fn tp_loopback_peer(
    ctx: &TracePointContext,
    off: &sockstat_common::TracepointOffsets,
    family: u16,
) -> Result<bool, i32> {
    if family == AF_INET6 {
        // SAFETY: format-file offsets; `read_at` is a probe read; `ev` is a ring slot.
        Ok(loopback_v6(unsafe { ctx.read_at(off.daddr_v6 as usize)? }))
    } else {
        // SAFETY: format-file offsets; `read_at` is a probe read; `ev` is a ring slot.
        Ok(loopback_v4(unsafe { ctx.read_at(off.daddr as usize)? }))
    }
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
