//! TCP events around the state machine, all as BTF tracepoints (no tracefs, no kprobes):
//! resets in both directions, retransmits, and error reports. Each produces a `StateEvent`
//! of its own kind, so user space can give transitions a cause (rst-in, rst-out, errno).
//!
//! Tracepoint prototypes (include/trace/events/tcp.h, sock.h), argument 0 in every case:
//! - `tcp_receive_reset(struct sock *sk)`
//! - `tcp_send_reset(const struct sock *sk, const struct sk_buff *skb, enum sk_rst_reason)`;
//!   `sk` is NULL for resets that answer no socket
//! - `tcp_retransmit_skb(const struct sock *sk, const struct sk_buff *skb, int err)`
//! - `tcp_retransmit_synack(const struct sock *sk, const struct request_sock *req)`; `sk` is
//!   the listener
//! - `inet_sk_error_report(const struct sock *sk)`
use core::ffi::c_void;

use aya_ebpf::helpers::generated::bpf_get_socket_cookie;
use aya_ebpf::{EbpfContext, macros::btf_tracepoint, programs::BtfTracePointContext};
use sockstat_common::{SockOffsets, StateEvent, args, counter, kind, retransmit, tcp_state as st};

use crate::{
    maps::{added_argument, bump, read_failed, sock_offsets, tw_offsets},
    sock::{AF_INET6, fill_owner, fill_socket, read, wanted, words},
    timewait,
};

#[btf_tracepoint(function = "tcp_receive_reset")]
pub fn tcp_receive_reset(ctx: BtfTracePointContext) -> i32 {
    emit(&ctx, kind::RESET_RECEIVED, core::ptr::null(), 0)
}

#[btf_tracepoint(function = "tcp_send_reset")]
pub fn tcp_send_reset(ctx: BtfTracePointContext) -> i32 {
    // 6.10 added `enum sk_rst_reason`: passed on plus one, 0 where the kernel gives none.
    let reason = added_argument(&ctx, 2, args::RESET_REASON).map_or(0, |r| r.min(254) as u8 + 1);
    emit(&ctx, kind::RESET_SENT, core::ptr::null(), reason)
}

#[btf_tracepoint(function = "tcp_retransmit_skb")]
pub fn tcp_retransmit_skb(ctx: BtfTracePointContext) -> i32 {
    // 6.17 added `int err` and fires for failed attempts too, which sent nothing.
    if added_argument(&ctx, 2, args::RETRANSMIT_ERR).is_some_and(|err| err as i32 != 0) {
        return 0;
    }
    // Argument 1: the segment.
    emit(&ctx, kind::RETRANSMIT, ctx.arg(1), 0)
}

#[btf_tracepoint(function = "tcp_retransmit_synack")]
pub fn tcp_retransmit_synack(ctx: BtfTracePointContext) -> i32 {
    // Argument 1: the request.
    emit(&ctx, kind::SYNACK_RETRANSMIT, ctx.arg(1), 0)
}

#[btf_tracepoint(function = "inet_sk_error_report")]
pub fn inet_sk_error_report(ctx: BtfTracePointContext) -> i32 {
    emit(&ctx, kind::ERROR_REPORT, core::ptr::null(), 0)
}

/// `second` is the hook's argument 1 where the event reads it (the segment or the
/// request), and `reset_reason` a sent reset's reason plus one; both read by the entry
/// point itself: a read of an argument a tracepoint lacks, or arithmetic on a nullable
/// one, is refused at load even where it cannot run.
#[inline(always)]
fn emit(ctx: &BtfTracePointContext, event_kind: u8, second: *const u8, reset_reason: u8) -> i32 {
    if let Err(e) = try_emit(ctx, event_kind, second, reset_reason) {
        read_failed(ctx, "tcp event", e);
    }
    0
}

#[inline(always)]
fn try_emit(
    ctx: &BtfTracePointContext,
    event_kind: u8,
    second: *const u8,
    reset_reason: u8,
) -> Result<(), i32> {
    // SAFETY: argument 0 of the raw tracepoint context is the `struct sock *`.
    let sk_arg = unsafe { *(ctx.as_ptr() as *const *mut c_void) };
    let off = sock_offsets();
    if off.valid == 0 {
        return Err(-1);
    }
    if sk_arg.is_null() {
        return Ok(());
    }
    let sk = sk_arg as *const u8;
    // Since 6.12 tcp_send_reset also fires for timewait and request sockets, which have no
    // `struct sock` beyond its common part to read (and are no socket's cause). A reset
    // carries the state it was sent or received in (0: unknown).
    let tw = tw_offsets();
    let mut state = 0;
    if tw.valid != 0 {
        // SAFETY: the caller's socket at loader-checked offsets (see `field`, `read`).
        state = unsafe { read(sk, tw.skc_state)? };
        if state == st::TIME_WAIT || state == st::NEW_SYN_RECV {
            return Ok(());
        }
    }
    // SAFETY: the caller's socket at loader-checked offsets (see `field`, `read`).
    let Some(addr) = (unsafe { wanted(sk, off, false)? }) else {
        return Ok(());
    };
    // SAFETY: the hook's BTF-typed socket, as the helper requires.
    let cookie = unsafe { bpf_get_socket_cookie(sk_arg) };
    // Counted, and a retransmission classified, before any event is written: the counters
    // stay exact with events off (--count-only) or lost.
    let detail = match event_kind {
        kind::RESET_RECEIVED => {
            bump(counter::RESETS_RECEIVED);
            Detail::only(0, state)
        }
        kind::RESET_SENT => {
            bump(counter::RESETS_SENT);
            // A close right after (or right before) is a reset, not a timewait overflow.
            timewait::note_reset(cookie);
            Detail::only(reset_reason, state)
        }
        kind::RETRANSMIT => {
            bump(counter::RETRANSMITS);
            // SAFETY: the hook's socket and segment, read at BTF-resolved offsets.
            let detail = unsafe { classify_retransmit(sk, second, off)? };
            bump_retransmit_kind(detail.detail);
            detail
        }
        kind::SYNACK_RETRANSMIT => {
            bump(counter::RETRANSMITS);
            bump_retransmit_kind(retransmit::SYN_ACK);
            Detail::only(retransmit::SYN_ACK, st::SYN_RECV)
        }
        _ => Detail::NONE,
    };
    emit_event!(ev => {
        // SAFETY: the socket is read via `field`/`read` at loader-checked offsets.
        unsafe {
            fill_socket(ev, sk_arg, off, addr, cookie).and_then(|()| {
                ev.kind = event_kind;
                match event_kind {
                    kind::ERROR_REPORT => ev.sk_err = read(sk, off.sk_err)?,
                    kind::SYNACK_RETRANSMIT => fill_request(ev, second, off)?,
                    _ => {}
                }
                ev.detail = detail.detail;
                ev.new_state = detail.state;
                ev.seq = detail.seq;
                ev.seg_len = detail.seg_len;
                fill_owner(ev, sk_arg, off)
            })
        }
    })
}

/// What a retransmission (or a sent reset) says beyond the socket.
struct Detail {
    detail: u8,
    state: u8,
    seq: u32,
    seg_len: u32,
}

impl Detail {
    const NONE: Detail = Detail::only(0, 0);

    const fn only(detail: u8, state: u8) -> Detail {
        Detail {
            detail,
            state,
            seq: 0,
            seg_len: 0,
        }
    }
}

/// `counter::RETRANSMITS_BY_KIND` for `kind` (a `retransmit` number; 0, unclassified,
/// counts in `RETRANSMITS` only).
#[inline(always)]
fn bump_retransmit_kind(kind: u8) {
    if kind != 0 {
        bump(counter::RETRANSMITS_BY_KIND + u32::from(kind) - 1);
    }
}

/// A retransmitted segment: the socket's state, the segment's sequence range, and which
/// retransmission it is. The hook runs with the socket locked, so `icsk_pending` is the
/// timer that sent it: cleared by the timer handler before an RTO retransmits, still
/// `ICSK_TIME_LOSS_PROBE` while a tail loss probe does (the same on 6.1, 6.12 and 6.18).
/// A function of its own in the object (a BPF-to-BPF call): inlined, its reads took the
/// hook past 6.1's 512-byte combined stack with serve's filters on; so is the state,
/// read again here rather than kept across the call.
#[inline(never)]
unsafe fn classify_retransmit(
    sk: *const u8,
    skb: *const u8,
    off: &SockOffsets,
) -> Result<Detail, i32> {
    let tw = tw_offsets();
    if tw.valid == 0 {
        return Ok(Detail::NONE);
    }
    // SAFETY: probe reads at BTF-resolved offsets.
    let (state, pending, seq, end_seq) = unsafe {
        (
            read::<u8>(sk, tw.skc_state)?,
            read::<u8>(sk, off.icsk_pending)?,
            read::<u32>(skb, off.skb_cb)?,
            read::<u32>(skb, off.skb_cb + 4)?,
        )
    };
    let detail = if state == st::SYN_SENT {
        retransmit::SYN
    } else if pending == 0 {
        retransmit::RTO
    } else if pending == retransmit::ICSK_TIME_LOSS_PROBE {
        retransmit::TLP
    } else {
        retransmit::RECOVERY
    };
    Ok(Detail {
        detail,
        state,
        seq,
        seg_len: end_seq.wrapping_sub(seq),
    })
}

/// A SYN-ACK retransmitted for a connection still in the listener's SYN queue: the event
/// carries the request's addresses (a `struct request_sock` begins with its
/// `sock_common`), not the listener's wildcard ones. The family is the request's: a
/// dual-stack listener's IPv4 requests are IPv4.
#[inline(always)]
unsafe fn fill_request(ev: &mut StateEvent, req: *const u8, off: &SockOffsets) -> Result<(), i32> {
    if req.is_null() {
        return Ok(());
    }
    // SAFETY: probe reads at BTF-resolved `sock_common` offsets; `words` writes arrays of
    // a `StateEvent`.
    unsafe {
        let family: u16 = read(req, off.skc_family)?;
        ev.dport = u16::from_be(read(req, off.skc_dport)?);
        if family == AF_INET6 {
            ev.saddr = read(req, off.skc_v6_rcv_saddr)?;
            ev.daddr = read(req, off.skc_v6_daddr)?;
        } else {
            // Network order, as read: the first four bytes of each array.
            let s: u32 = read(req, off.skc_rcv_saddr)?;
            let d: u32 = read(req, off.skc_daddr)?;
            words::put(&mut ev.saddr, [u64::from(s), 0]);
            words::put(&mut ev.daddr, [u64::from(d), 0]);
        }
        ev.family = family;
    }
    Ok(())
}
