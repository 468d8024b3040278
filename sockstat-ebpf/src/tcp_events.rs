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
use sockstat_common::{counter, kind, tcp_state as st};

use crate::{
    maps::{bump, read_failed, sock_offsets, tw_offsets},
    sock::{fill_owner, fill_socket, read, wanted},
    timewait,
};

#[btf_tracepoint(function = "tcp_receive_reset")]
pub fn tcp_receive_reset(ctx: BtfTracePointContext) -> i32 {
    emit(&ctx, kind::RESET_RECEIVED)
}

#[btf_tracepoint(function = "tcp_send_reset")]
pub fn tcp_send_reset(ctx: BtfTracePointContext) -> i32 {
    emit(&ctx, kind::RESET_SENT)
}

#[btf_tracepoint(function = "tcp_retransmit_skb")]
pub fn tcp_retransmit_skb(ctx: BtfTracePointContext) -> i32 {
    emit(&ctx, kind::RETRANSMIT)
}

#[btf_tracepoint(function = "tcp_retransmit_synack")]
pub fn tcp_retransmit_synack(ctx: BtfTracePointContext) -> i32 {
    emit(&ctx, kind::SYNACK_RETRANSMIT)
}

#[btf_tracepoint(function = "inet_sk_error_report")]
pub fn inet_sk_error_report(ctx: BtfTracePointContext) -> i32 {
    emit(&ctx, kind::ERROR_REPORT)
}

#[inline(always)]
fn emit(ctx: &BtfTracePointContext, event_kind: u8) -> i32 {
    if let Err(e) = try_emit(ctx, event_kind) {
        read_failed(ctx, "tcp event", e);
    }
    0
}

#[inline(always)]
fn try_emit(ctx: &BtfTracePointContext, event_kind: u8) -> Result<(), i32> {
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
    // `struct sock` beyond its common part to read (and are no socket's cause).
    let tw = tw_offsets();
    if tw.valid != 0 {
        // SAFETY: the caller's socket at loader-checked offsets (see `field`, `read`).
        let state: u8 = unsafe { read(sk, tw.skc_state)? };
        if state == st::TIME_WAIT || state == st::NEW_SYN_RECV {
            return Ok(());
        }
    }
    // SAFETY: the caller's socket at loader-checked offsets (see `field`, `read`).
    let Some(addr) = (unsafe { wanted(sk, &off, false)? }) else {
        return Ok(());
    };
    // SAFETY: the hook's BTF-typed socket, as the helper requires.
    let cookie = unsafe { bpf_get_socket_cookie(sk_arg) };
    match event_kind {
        kind::RESET_RECEIVED => bump(counter::RESETS_RECEIVED),
        kind::RESET_SENT => {
            bump(counter::RESETS_SENT);
            // A close right after (or right before) is a reset, not a timewait overflow.
            timewait::note_reset(cookie);
        }
        kind::RETRANSMIT | kind::SYNACK_RETRANSMIT => bump(counter::RETRANSMITS),
        _ => {}
    }
    emit_event!(ev => {
        // SAFETY: the socket is read via `field`/`read` at loader-checked offsets.
        unsafe {
            fill_socket(ev, sk_arg, &off, addr, cookie).and_then(|()| {
                ev.kind = event_kind;
                if event_kind == kind::ERROR_REPORT {
                    ev.sk_err = read(sk, off.sk_err)?;
                }
                fill_owner(ev, sk_arg, &off)
            })
        }
    })
}
