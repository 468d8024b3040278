//! `skb:kfree_skb`: packets the kernel dropped. Two uses today:
//! - a TCP segment dropped for `NO_SOCKET` (other than an RST) was answered with an RST by
//!   `tcp_v4_rcv`/`tcp_v6_rcv`: a connect or a scan reached a closed port. Only from 6.10
//!   does `tcp_send_reset` fire for these (with a NULL socket), so the drop is the one
//!   signal every supported kernel gives;
//! - every other freed segment goes to the timewait tracking (timewait.rs).
//!
//! Prototype (include/trace/events/skb.h): `kfree_skb(struct sk_buff *skb, void *location,
//! enum skb_drop_reason reason)` since 5.17; 6.11 appended `struct sock *rx_sk`. The reason's
//! numbers differ between kernels, so user space resolves `NO_SOCKET` from BTF
//! (`ProbeConfig::drop_no_socket`).
use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};
use sockstat_common::{counter, kind};

use crate::{
    maps::{bump, config, read_failed, tw_offsets},
    timewait::{self, TCP_RST, TwKey},
};

#[btf_tracepoint(function = "kfree_skb")]
pub fn kfree_skb(ctx: BtfTracePointContext) -> i32 {
    let skb: *const u8 = ctx.arg(0);
    let reason: u64 = ctx.arg(2);
    // SAFETY: both read the skb only through bpf_probe_read_kernel.
    let result = unsafe {
        let no_socket = config().drop_no_socket;
        if no_socket != 0 && reason == u64::from(no_socket) {
            try_closed_port(skb)
        } else {
            timewait::freed_segment(skb)
        }
    };
    if let Err(e) = result {
        read_failed(&ctx, "kfree_skb", e);
    }
    0
}

/// A segment to a closed port, which the kernel answered with an RST (it never answers an
/// RST). Counted in the namespace it arrived in, under the same filters as sockets.
unsafe fn try_closed_port(skb: *const u8) -> Result<(), i32> {
    let off = tw_offsets();
    if off.valid == 0 {
        return Ok(());
    }
    // SAFETY: probe reads only.
    let Some((key, tcp_flags)) = (unsafe { timewait::packet_key(skb, &off, !0)? }) else {
        return Ok(());
    };
    if tcp_flags & TCP_RST != 0 || !wanted(&key) {
        return Ok(());
    }
    bump(counter::RESETS_SENT);
    bump(counter::RESETS_NO_SOCKET);
    timewait::emit(&key, 0, 0, kind::RESET_NO_SOCKET, 0, 0);
    Ok(())
}

/// The in-kernel filters (family, port, namespace) applied to a segment's key. sockstat's own
/// endpoint has a socket, so no segment to it lands here.
#[inline(always)]
fn wanted(key: &TwKey) -> bool {
    let cfg = config();
    (cfg.family == 0 || cfg.family == key.family)
        && (cfg.port == 0 || cfg.port == key.lport || cfg.port == key.rport)
        && (cfg.netns == 0 || cfg.netns == key.netns)
}
