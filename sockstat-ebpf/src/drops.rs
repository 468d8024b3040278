//! `skb:kfree_skb`: packets the kernel dropped. For every TCP segment:
//! - counted by the kernel's drop reason (`DROP_REASONS`), and written as a DROP event when
//!   user space asked for drops, joined to its socket where the kernel names one;
//! - a segment dropped for `NO_SOCKET` (other than an RST) was answered with an RST by
//!   `tcp_v4_rcv`/`tcp_v6_rcv`: a connect or a scan reached a closed port. Only from 6.10
//!   does `tcp_send_reset` fire for these (with a NULL socket), so the drop is the one
//!   signal every supported kernel gives;
//! - every other freed segment goes to the timewait tracking (timewait.rs).
//!
//! Prototype (include/trace/events/skb.h): `kfree_skb(struct sk_buff *skb, void *location,
//! enum skb_drop_reason reason)` since 5.17; 6.11 appended `struct sock *rx_sk`, the socket
//! a received segment was for. The reason's numbers differ between kernels, so user space
//! names them from BTF and resolves `NO_SOCKET` (`ProbeConfig::drop_no_socket`).
use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};
use sockstat_common::{TwOffsets, args, counter, flags, kind, tcp_state as st};

use crate::{
    maps::{added_argument, bump, bump_drop, config, read_failed, sock_offsets, tw_offsets},
    sock::{netns_inum, read},
    timewait::{self, Segment, TCP_RST, TwKey},
};

#[btf_tracepoint(function = "kfree_skb")]
pub fn kfree_skb(ctx: BtfTracePointContext) -> i32 {
    let skb: *const u8 = ctx.arg(0);
    let reason: u64 = ctx.arg(2);
    let rx_sk = added_argument(&ctx, 3, args::DROP_RX_SK).unwrap_or(0) as *const u8;
    // SAFETY: the skb and the sockets are read only through bpf_probe_read_kernel.
    if let Err(e) = unsafe { try_kfree_skb(skb, reason as u32, rx_sk) } {
        read_failed(&ctx, "kfree_skb", e);
    }
    0
}

/// # Safety
/// `skb` is the tracepoint's `struct sk_buff *`, `rx_sk` its `struct sock *` or null.
#[inline(always)]
unsafe fn try_kfree_skb(skb: *const u8, reason: u32, rx_sk: *const u8) -> Result<(), i32> {
    let off = tw_offsets();
    if off.valid == 0 {
        return Ok(());
    }
    // SAFETY: probe reads only.
    let Some(segment) = (unsafe { timewait::segment(skb, off)? }) else {
        return Ok(());
    };
    let no_socket = config().drop_no_socket;
    if no_socket != 0 && reason == no_socket {
        closed_port(&segment);
    } else {
        timewait::freed_segment(&segment, off)?;
    }
    // SAFETY: probe reads only.
    unsafe { dropped(segment, reason, rx_sk, skb, off) }
}

/// A segment to a closed port, which the kernel answered with an RST (it never answers an
/// RST). Counted in the namespace it arrived in, under the same filters as sockets.
#[inline(always)]
fn closed_port(segment: &Segment) {
    let key = &segment.key;
    if segment.flags & TCP_RST != 0 || key.netns == 0 || !wanted(key) {
        return;
    }
    bump(counter::RESETS_SENT);
    bump(counter::RESETS_NO_SOCKET);
    timewait::emit(key, 0, 0, kind::RESET_NO_SOCKET, 0, 0);
}

/// Any dropped segment: counted by reason, and an event when drops are asked for. Its
/// socket is `rx_sk` (6.11+), else the segment's owner (`skb->sk`: a sent segment's socket,
/// or a received one already queued on it), taken only when its local port is one of the
/// segment's; the orientation follows it (a sent segment's source is our end). Without one,
/// user space joins the event to a socket by its addresses.
///
/// # Safety
/// As `try_kfree_skb`.
#[inline(always)]
unsafe fn dropped(
    segment: Segment,
    reason: u32,
    rx_sk: *const u8,
    skb: *const u8,
    off: &TwOffsets,
) -> Result<(), i32> {
    let mut key = segment.key;
    let mut outbound = false;
    let mut cookie = 0u64;
    let mut state = 0u8;
    // SAFETY: probe reads of the segment's own sockets.
    unsafe {
        let sk: *const u8 = if rx_sk.is_null() {
            read(skb, off.skb_sk)?
        } else {
            rx_sk
        };
        if !sk.is_null() {
            let port: u16 = read(sk, off.skc_num)?;
            if port != 0 && (port == key.lport || port == key.rport) {
                if port != key.lport {
                    outbound = true;
                    core::mem::swap(&mut key.laddr, &mut key.raddr);
                    core::mem::swap(&mut key.lport, &mut key.rport);
                }
                cookie = read(sk, off.skc_cookie)?;
                state = read(sk, off.skc_state)?;
                if key.netns == 0 {
                    key.netns = netns_inum::<false>(sk, sock_offsets())?;
                }
            }
        }
    }
    if !wanted(&key) {
        return Ok(());
    }
    bump_drop(reason);
    if config().drop_events == 0 {
        return Ok(());
    }
    // Request and timewait sockets are no connection of the live table's.
    if state == st::NEW_SYN_RECV || state == st::TIME_WAIT {
        state = 0;
    }
    emit_event!(ev => {
        timewait::fill_key(ev, &key, cookie, kind::DROP);
        if outbound {
            ev.flags |= flags::OUTBOUND;
        }
        ev.new_state = state;
        ev.detail = segment.flags;
        ev.drop_reason = reason;
        Ok(())
    })
}

/// The in-kernel filters (family, port, namespace) applied to a segment's key. A namespace
/// filter keeps out segments whose namespace the kernel no longer tells. sockstat's own
/// endpoint has a socket, so no segment to it lands here.
#[inline(always)]
fn wanted(key: &TwKey) -> bool {
    let cfg = config();
    (cfg.family == 0 || cfg.family == key.family)
        && (cfg.port == 0 || cfg.port == key.lport || cfg.port == key.rport)
        && (cfg.netns == 0 || cfg.netns == key.netns)
}
