//! `tcp:tcp_probe`: RTT samples. The tracepoint fires for every segment that reaches an
//! ESTABLISHED socket (`tcp_rcv_established`), so each socket's storage (the owner's,
//! `OwnerInfo::rtt_sampled_ns`) remembers when its last sample was written (or its first
//! segment came), and a new one is written only once `rtt_interval_ns` has passed.
//!
//! Prototype (include/trace/events/tcp.h): `tcp_probe(struct sock *sk, const struct
//! sk_buff *skb)`.
use core::ffi::c_void;

use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_ktime_get_ns, generated::bpf_get_socket_cookie},
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use sockstat_common::{kind, tcp_state as st};

use crate::{
    maps::{config, read_failed, sock_offsets},
    sock::{fill_owner, fill_socket, fill_tcp, owner_storage, wanted},
};

#[btf_tracepoint(function = "tcp_probe")]
pub fn tcp_probe(ctx: BtfTracePointContext) -> i32 {
    if let Err(e) = try_tcp_probe(&ctx) {
        read_failed(&ctx, "tcp_probe", e);
    }
    0
}

fn try_tcp_probe(ctx: &BtfTracePointContext) -> Result<(), i32> {
    let interval = config().rtt_interval_ns;
    if interval == 0 {
        return Ok(());
    }
    // SAFETY: argument 0 of the raw tracepoint context is the `struct sock *`.
    let sk_arg = unsafe { *(ctx.as_ptr() as *const *mut c_void) };
    let off = sock_offsets();
    if off.valid == 0 {
        return Err(-1);
    }
    if sk_arg.is_null() {
        return Ok(());
    }
    // SAFETY: the caller's socket at loader-checked offsets (see `field`, `read`).
    let Some(addr) = (unsafe { wanted(sk_arg as *const u8, off, false)? }) else {
        return Ok(());
    };
    // SAFETY: the hook's BTF-typed socket.
    let info = unsafe { owner_storage(sk_arg, true) };
    if info.is_null() {
        return Ok(());
    }
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    // SAFETY: `info` is non-null: this socket's storage. The socket is locked (the hook
    // runs in its receive path), so no other CPU writes the field meanwhile.
    let last = unsafe { (*info).rtt_sampled_ns };
    if last != 0 && now.wrapping_sub(last) < interval {
        return Ok(());
    }
    // SAFETY: as above.
    unsafe { (*info).rtt_sampled_ns = now };
    // The first segment only starts the clock: the handshake's event has the first
    // sample, so a connection shorter than one interval costs no event here.
    if last == 0 {
        return Ok(());
    }
    // SAFETY: the hook's BTF-typed socket, as the helper requires.
    let cookie = unsafe { bpf_get_socket_cookie(sk_arg) };
    emit_event!(ev => {
        // SAFETY: the socket is read via `field`/`read` at loader-checked offsets.
        unsafe {
            fill_socket(ev, sk_arg, off, addr, cookie).and_then(|()| {
                ev.kind = kind::RTT;
                // tcp_rcv_established() serves ESTABLISHED sockets alone.
                ev.new_state = st::ESTABLISHED;
                fill_tcp(ev, sk_arg, off)?;
                fill_owner(ev, sk_arg, off)
            })
        }
    })
}
