//! Timewait sockets, observed where the kernel handles them: their timer (armed when one is
//! created and on some re-arms, cancelled when one dies early, expiring at the end) and the
//! freed skb of a FIN or RST that reached one.
//!
//! Hooks, all BTF tracepoints. Argument 0 is the timer on every kernel from 6.1 on; the
//! other arguments changed (timer_start lost two in 6.8), so only argument 0 is read:
//! - `timer_start(struct timer_list *timer, ...)`
//! - `timer_cancel(struct timer_list *timer)`
//! - `timer_expire_entry(struct timer_list *timer, unsigned long baseclk)`
//! - and `kfree_skb`, whose entry point is in drops.rs (`freed_segment` here).
//!
//! A timer is a timewait socket's when its callback is `tw_timer_handler` (address from
//! /proc/kallsyms, `ProbeConfig::tw_timer_fn`); the socket contains the timer at
//! `TwOffsets::tw_timer`. What the kernel does, in order on one CPU:
//! - creation: `timer_start` (substate FIN-WAIT-2 or TIME-WAIT), then the full socket's
//!   X -> CLOSE (state_change.rs reads `TwScratch::armed_cookie` to tell it apart from an
//!   overflow, where no timer was armed);
//! - the peer's FIN reaching an orphan in FIN-WAIT-2: the substate becomes TIME-WAIT and the
//!   timer is re-armed, usually in the same wheel bucket, which fires no tracepoint; the FIN's
//!   skb is then freed with `kfree_skb`, which is the signal used (`TW_ORPHANS`);
//! - a re-arm into another bucket: `timer_cancel` then `timer_start` of the same timer;
//! - expiry: `timer_cancel` then `timer_expire_entry` of the same timer;
//! - early death: `timer_cancel` alone. Inside connect() (`tcp_tw_reuse`) the new socket has
//!   just entered SYN-SENT on this CPU with the same 4-tuple; for an RST, the RST's skb is
//!   freed right after; anything else (`ss -K`, namespace exit) is a kill.
use aya_ebpf::{helpers::bpf_ktime_get_ns, macros::btf_tracepoint, programs::BtfTracePointContext};
use sockstat_common::{SockOffsets, TwOffsets, counter, flags, hook, kind, tcp_state as st};

use crate::{
    maps::{
        TW_ACTIVE, TW_ORPHANS, TW_SCRATCH, bump, bump_edge, config, read_failed, sock_offsets,
        tw_offsets,
    },
    sock::{
        AF_INET, AF_INET6, IPPROTO_TCP, field, fill_task, netns_inum, passes_filters, read, words,
    },
};

/// A timewait socket's identity as packets show it: namespace, family, local and remote port
/// and address. Addresses are two native u64 words of the bytes as stored (IPv4 in the low
/// four bytes of the first), so comparing keys needs no memcmp.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct TwKey {
    pub netns: u32,
    pub family: u16,
    pub lport: u16,
    pub rport: u16,
    /// Two words rather than `[u16; 3]`, whose zeroing compiles to a call to memset.
    pub _pad0: u16,
    pub _pad1: u32,
    pub laddr: [u64; 2],
    pub raddr: [u64; 2],
}

// Hashed as bytes: no implicit padding.
const _: () = assert!(core::mem::size_of::<TwKey>() == 48);

impl TwKey {
    const fn zeroed() -> Self {
        Self {
            netns: 0,
            family: 0,
            lport: 0,
            rport: 0,
            _pad0: 0,
            _pad1: 0,
            laddr: [0; 2],
            raddr: [0; 2],
        }
    }

    #[inline(always)]
    fn same(&self, other: &TwKey) -> bool {
        self.netns == other.netns
            && self.family == other.family
            && self.lport == other.lport
            && self.rport == other.rport
            && self.laddr[0] == other.laddr[0]
            && self.laddr[1] == other.laddr[1]
            && self.raddr[0] == other.raddr[0]
            && self.raddr[1] == other.raddr[1]
    }

    /// As the wire shows it: an IPv6 socket talking to an IPv4 peer (`::ffff:a.b.c.d`)
    /// sends and receives IPv4 packets.
    #[inline(always)]
    fn on_the_wire(mut self) -> TwKey {
        if self.family == AF_INET6 && mapped_v4(self.laddr) && mapped_v4(self.raddr) {
            self.family = AF_INET;
            self.laddr = [self.laddr[1] >> 32, 0];
            self.raddr = [self.raddr[1] >> 32, 0];
        }
        self
    }
}

/// `::ffff:a.b.c.d` in the two-word form (little-endian words, as BPF runs).
#[inline(always)]
fn mapped_v4(addr: [u64; 2]) -> bool {
    addr[0] == 0 && addr[1] & 0xffff_ffff == 0xffff_0000
}

/// What `TW_ORPHANS` keeps of an orphan in FIN-WAIT-2.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct TwWatch {
    pub cookie: u64,
    /// The timewait socket's address, to read its substate when the FIN's skb is freed.
    pub tw: u64,
}

/// What one CPU remembers between consecutive tracepoints (see the module comment).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct TwScratch {
    /// The timewait socket armed last on this CPU: its socket's CLOSE follows at once.
    pub armed_cookie: u64,
    pub armed_substate: u64,
    /// The socket that sent an RST last on this CPU: a close after it is no overflow.
    pub reset_cookie: u64,
    /// The socket that entered SYN-SENT last on this CPU, and when.
    pub connecting_sk: u64,
    pub connecting_ns: u64,
    /// A timewait timer cancelled on this CPU and not yet known to be re-armed, expiring, or
    /// dead; 0 when none is.
    pub cancel_timer: u64,
    pub cancel_cookie: u64,
    pub cancel_substate: u64,
    /// Its key, on the wire's terms.
    pub cancel_key: TwKey,
}

/// Longest a connect() takes from its CLOSE -> SYN-SENT to reusing a timewait socket (it
/// is one function call; this leaves room for an emulated machine).
const CONNECT_WINDOW_NS: u64 = 100_000_000;

pub const TCP_FIN: u8 = 0x01;
pub const TCP_RST: u8 = 0x04;

#[inline(always)]
fn scratch() -> Option<&'static mut TwScratch> {
    // SAFETY: this CPU's slot. A program runs with migration disabled; another of ours can
    // interrupt it only from a hardirq tracepoint, and the fields are independent words, so
    // the worst case is one misclassified event.
    TW_SCRATCH.get_ptr_mut(0).map(|p| unsafe { &mut *p })
}

/// All four timewait hooks are attached (user space sets it after attaching them): until
/// then a close cannot be told apart from an overflow.
#[inline(always)]
fn active() -> bool {
    config().tw_timer_fn != 0 && TW_ACTIVE.get(0).is_some_and(|&on| on == 1)
}

/// The timewait socket containing `timer` (a hook's BTF-typed argument 0), if it is one's.
#[inline(always)]
unsafe fn timewait_of(timer: *const u8, off: &TwOffsets) -> Result<Option<*const u8>, i32> {
    let function = config().tw_timer_fn;
    if function == 0 || off.valid == 0 {
        return Ok(None);
    }
    // Every kernel timer comes through here, so the callback is tested first, and is a
    // plain load the verifier checks against `struct timer_list` (the hooks' BTF-typed
    // argument 0), not a helper call.
    // SAFETY: `timer` is the BTF-typed argument and `timer_function` a frozen offset inside
    // it (see `sock::field`).
    let callback: u64 = unsafe { field(timer, off.timer_function) };
    if callback != function || !active() {
        return Ok(None);
    }
    Ok(Some(timer.wrapping_sub(off.tw_timer as usize)))
}

/// The key of timewait socket `tw` (at its `struct sock_common`), or None when the in-kernel
/// filters leave it out.
#[inline(always)]
unsafe fn key_of(tw: *const u8, sock: &SockOffsets, off: &TwOffsets) -> Result<Option<TwKey>, i32> {
    // SAFETY: every read goes through bpf_probe_read_kernel.
    unsafe {
        let family: u16 = read(tw, sock.skc_family)?;
        if family != AF_INET && family != AF_INET6 {
            return Ok(None);
        }
        let lport: u16 = read(tw, off.skc_num)?;
        let rport = u16::from_be(read(tw, sock.skc_dport)?);
        if !passes_filters::<false>(tw, sock, family, lport, rport, false)? {
            return Ok(None);
        }
        let mut key = TwKey::zeroed();
        key.netns = netns_inum::<false>(tw, sock)?;
        key.family = family;
        key.lport = lport;
        key.rport = rport;
        if family == AF_INET6 {
            key.laddr = read(tw, sock.skc_v6_rcv_saddr)?;
            key.raddr = read(tw, sock.skc_v6_daddr)?;
        } else {
            key.laddr[0] = u64::from(read::<u32>(tw, sock.skc_rcv_saddr)?);
            key.raddr[0] = u64::from(read::<u32>(tw, sock.skc_daddr)?);
        }
        Ok(Some(key))
    }
}

/// The key of full socket `sk` (SYN-SENT, its ports assigned), on the wire's terms.
#[inline(always)]
unsafe fn socket_key(sk: *const u8, sock: &SockOffsets) -> Result<TwKey, i32> {
    // SAFETY: every read goes through bpf_probe_read_kernel.
    unsafe {
        let mut key = TwKey::zeroed();
        key.family = read(sk, sock.skc_family)?;
        key.netns = netns_inum::<false>(sk, sock)?;
        key.lport = u16::from_be(read(sk, sock.inet_sport)?);
        key.rport = u16::from_be(read(sk, sock.skc_dport)?);
        if key.family == AF_INET6 {
            key.laddr = read(sk, sock.skc_v6_rcv_saddr)?;
            key.raddr = read(sk, sock.skc_v6_daddr)?;
        } else {
            key.laddr[0] = u64::from(read::<u32>(sk, sock.skc_rcv_saddr)?);
            key.raddr[0] = u64::from(read::<u32>(sk, sock.skc_daddr)?);
        }
        Ok(key.on_the_wire())
    }
}

/// Writes one timewait event to the ring.
#[inline(always)]
pub fn emit(key: &TwKey, cookie: u64, tw: u64, event_kind: u8, substate: u8, extra: u8) {
    let _ = emit_event!(ev => {
        fill_key(ev, key, cookie, event_kind);
        ev.sk_addr = tw;
        ev.flags |= extra;
        ev.tw_substate = substate;
        Ok(())
    });
}

/// Starts an event from a key: the current task, the key's namespace, ports and
/// addresses, and `cookie` (0: none known).
#[inline(always)]
pub fn fill_key(ev: &mut sockstat_common::StateEvent, key: &TwKey, cookie: u64, event_kind: u8) {
    words::clear(ev);
    fill_task(ev);
    ev.kind = event_kind;
    ev.hook = hook::TP_BTF;
    ev.protocol = IPPROTO_TCP;
    ev.family = key.family;
    ev.netns = key.netns;
    ev.sport = key.lport;
    ev.dport = key.rport;
    // SAFETY: arrays of a `StateEvent` (see `words`).
    unsafe {
        words::put(&mut ev.saddr, key.laddr);
        words::put(&mut ev.daddr, key.raddr);
    }
    ev.cookie = cookie;
    if cookie != 0 {
        ev.flags = flags::COOKIE_IS_SOCKET_COOKIE;
    }
}

/// A timewait timer cancelled earlier on this CPU: the same socket's re-arm or expiry now
/// means it lives on; another timewait timer's event means it died without a reuse or an RST
/// being seen (a kill). The same timer address alone is not the same socket: a dead
/// timewait socket's memory is often the very next one's (the slab hands it straight back),
/// so the cookie must match too.
#[inline(always)]
fn settle_cancel(scratch: &mut TwScratch, timer: u64, cookie: u64) {
    if scratch.cancel_timer == 0 {
        return;
    }
    if scratch.cancel_timer != timer || scratch.cancel_cookie != cookie {
        bump_edge(scratch.cancel_substate as u8, st::CLOSE);
        bump(counter::TW_KILLED);
    }
    scratch.cancel_timer = 0;
}

/// Runs a hook on its first argument (the timer or the skb); a failed read is counted and
/// told once here.
#[inline(always)]
fn on_first_arg(
    ctx: &BtfTracePointContext,
    hook: &'static str,
    run: impl FnOnce(*const u8) -> Result<(), i32>,
) -> i32 {
    if let Err(e) = run(ctx.arg(0)) {
        read_failed(ctx, hook, e);
    }
    0
}

/// What a timer event on a timewait socket carries, after a pending cancel is settled.
struct TimewaitTimer {
    tw: *const u8,
    substate: u8,
    cookie: u64,
    key: TwKey,
    scratch: &'static mut TwScratch,
}

/// The timewait socket behind a cancelled or expiring `timer`, or None when it is no
/// timewait socket's or the filters leave it out. A kill pending from an earlier cancel
/// is settled first either way.
#[inline(always)]
unsafe fn timewait_timer(timer: *const u8) -> Result<Option<TimewaitTimer>, i32> {
    let off = tw_offsets();
    // SAFETY: probe reads only.
    let Some(tw) = (unsafe { timewait_of(timer, off)? }) else {
        return Ok(None);
    };
    let Some(scratch) = scratch() else {
        return Ok(None);
    };
    // SAFETY: probe reads only.
    let (substate, cookie): (u8, u64) =
        unsafe { (read(tw, off.tw_substate)?, read(tw, off.skc_cookie)?) };
    // Another one still pending died (several kills in one go, e.g. `ss -K`).
    settle_cancel(scratch, timer as u64, cookie);
    // SAFETY: probe reads only.
    let Some(key) = (unsafe { key_of(tw, sock_offsets(), off)? }) else {
        return Ok(None);
    };
    Ok(Some(TimewaitTimer {
        tw,
        substate,
        cookie,
        key,
        scratch,
    }))
}

#[btf_tracepoint(function = "timer_start")]
pub fn timer_start(ctx: BtfTracePointContext) -> i32 {
    // SAFETY: `try_timer_start` reads its argument only through bpf_probe_read_kernel.
    on_first_arg(&ctx, "timer_start", |p| unsafe { try_timer_start(p) })
}

unsafe fn try_timer_start(timer: *const u8) -> Result<(), i32> {
    let off = tw_offsets();
    // SAFETY: probe reads only.
    let Some(tw) = (unsafe { timewait_of(timer, off)? }) else {
        return Ok(());
    };
    let Some(scratch) = scratch() else {
        return Ok(());
    };
    // SAFETY: probe reads only.
    let (substate, cookie): (u8, u64) =
        unsafe { (read(tw, off.tw_substate)?, read(tw, off.skc_cookie)?) };
    settle_cancel(scratch, timer as u64, cookie);
    let sock = sock_offsets();
    // SAFETY: probe reads only.
    let Some(key) = (unsafe { key_of(tw, sock, off)? }) else {
        return Ok(());
    };
    scratch.armed_cookie = cookie;
    scratch.armed_substate = u64::from(substate);
    let wire = key.on_the_wire();
    if substate == st::FIN_WAIT2 {
        let watch = TwWatch {
            cookie,
            tw: tw as u64,
        };
        let _ = TW_ORPHANS.insert(&wire, &watch, 0);
    } else if TW_ORPHANS.get_ptr(&wire).is_some() {
        // An orphan's timer moved to TIME-WAIT's 60 s in another bucket: its FIN came.
        let _ = TW_ORPHANS.remove(&wire);
        bump_edge(st::FIN_WAIT2, st::TIME_WAIT);
    }
    emit(&key, cookie, tw as u64, kind::TW_ARMED, substate, 0);
    Ok(())
}

#[btf_tracepoint(function = "timer_cancel")]
pub fn timer_cancel(ctx: BtfTracePointContext) -> i32 {
    // SAFETY: `try_timer_cancel` reads its argument only through bpf_probe_read_kernel.
    on_first_arg(&ctx, "timer_cancel", |p| unsafe { try_timer_cancel(p) })
}

unsafe fn try_timer_cancel(timer: *const u8) -> Result<(), i32> {
    // SAFETY: probe reads only.
    let Some(TimewaitTimer {
        tw,
        substate,
        cookie,
        key,
        scratch,
    }) = (unsafe { timewait_timer(timer)? })
    else {
        return Ok(());
    };
    let (off, sock) = (tw_offsets(), sock_offsets());
    let wire = key.on_the_wire();
    // The reuse happens inside the same connect() call as its CLOSE -> SYN-SENT; a slot
    // left from long ago (its socket since freed) must not match.
    let connecting = scratch.connecting_sk as *const u8;
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    let fresh =
        unsafe { bpf_ktime_get_ns() }.saturating_sub(scratch.connecting_ns) < CONNECT_WINDOW_NS;
    // SAFETY: probe reads only.
    let reused = !connecting.is_null()
        && fresh
        && unsafe { read::<u8>(connecting, off.skc_state)? } == st::SYN_SENT
        && unsafe { socket_key(connecting, sock)? }.same(&wire);
    if reused {
        scratch.connecting_sk = 0;
        let _ = TW_ORPHANS.remove(&wire);
        bump_edge(substate, st::CLOSE);
        bump(counter::TW_REUSED);
    } else {
        scratch.cancel_timer = timer as u64;
        scratch.cancel_cookie = cookie;
        scratch.cancel_substate = u64::from(substate);
        scratch.cancel_key = wire;
    }
    let extra = if reused { flags::TW_REUSED } else { 0 };
    emit(&key, cookie, tw as u64, kind::TW_CANCELLED, substate, extra);
    Ok(())
}

#[btf_tracepoint(function = "timer_expire_entry")]
pub fn timer_expire_entry(ctx: BtfTracePointContext) -> i32 {
    // SAFETY: `try_timer_expire` reads its argument only through bpf_probe_read_kernel.
    on_first_arg(&ctx, "timer_expire_entry", |p| unsafe {
        try_timer_expire(p)
    })
}

unsafe fn try_timer_expire(timer: *const u8) -> Result<(), i32> {
    // SAFETY: probe reads only.
    let Some(TimewaitTimer {
        tw,
        substate,
        cookie,
        key,
        ..
    }) = (unsafe { timewait_timer(timer)? })
    else {
        return Ok(());
    };
    let _ = TW_ORPHANS.remove(&key.on_the_wire());
    bump_edge(substate, st::CLOSE);
    emit(&key, cookie, tw as u64, kind::TW_EXPIRED, substate, 0);
    Ok(())
}

/// A freed segment (drops.rs hands over every `kfree_skb` not answered by a closed port's
/// RST): the FIN that moved an orphan into TIME-WAIT, or the RST that killed a timewait
/// socket.
#[inline(always)]
pub fn freed_segment(segment: &Segment, off: &TwOffsets) -> Result<(), i32> {
    let key = segment.key;
    if !active() || key.netns == 0 || segment.flags & (TCP_FIN | TCP_RST) == 0 {
        return Ok(());
    }
    let Some(scratch) = scratch() else {
        return Ok(());
    };
    if segment.flags & TCP_RST != 0 {
        // The RST that killed the timewait socket cancelled just before on this CPU.
        if scratch.cancel_timer != 0 && scratch.cancel_key.same(&key) {
            let substate = scratch.cancel_substate as u8;
            scratch.cancel_timer = 0;
            let _ = TW_ORPHANS.remove(&key);
            bump_edge(substate, st::CLOSE);
            bump(counter::TW_RESET);
            emit(&key, scratch.cancel_cookie, 0, kind::TW_RESET, substate, 0);
        }
        return Ok(());
    }
    let Some(watch) = TW_ORPHANS.get_ptr(&key) else {
        return Ok(());
    };
    // SAFETY: a value of our own map, valid until we remove it below.
    let watch = unsafe { *watch };
    let tw = watch.tw as *const u8;
    // Timewait memory is reused only for sockets (SLAB_TYPESAFE_BY_RCU): a stale entry shows
    // another cookie. A FIN out of window leaves the substate at FIN-WAIT-2.
    // SAFETY: probe reads only.
    let (substate, cookie): (u8, u64) =
        unsafe { (read(tw, off.tw_substate)?, read(tw, off.skc_cookie)?) };
    if cookie != watch.cookie {
        let _ = TW_ORPHANS.remove(&key);
        return Ok(());
    }
    if substate != st::TIME_WAIT {
        return Ok(());
    }
    let _ = TW_ORPHANS.remove(&key);
    bump_edge(st::FIN_WAIT2, st::TIME_WAIT);
    emit(&key, cookie, watch.tw, kind::TW_FIN, substate, 0);
    Ok(())
}

/// A TCP segment as its headers show it.
pub struct Segment {
    /// Seen as arriving: local is the destination. `netns` is the device's (or its
    /// route's, once the kernel has let go of the device after the socket lookup); 0 where
    /// neither is left.
    pub key: TwKey,
    /// Byte 13 of the TCP header.
    pub flags: u8,
}

/// The freed packet, when it is a TCP segment.
///
/// This runs for every freed skb, so it reads little: the skb's header offsets as plain
/// loads the verifier checks against `struct sk_buff` (the hook's BTF-typed argument 0),
/// then one probe read of the IP header (two for IPv6) and one of the TCP header's first
/// 14 bytes. Reading field by field cost twice the helper calls.
///
/// # Safety
/// `skb` is the tracepoint's BTF-typed `struct sk_buff *`; the packet and the device are
/// read only through bpf_probe_read_kernel.
#[inline(always)]
pub unsafe fn segment(skb: *const u8, off: &TwOffsets) -> Result<Option<Segment>, i32> {
    // SAFETY: frozen offsets inside `struct sk_buff` (see `sock::field`); everything else
    // goes through bpf_probe_read_kernel.
    unsafe {
        let head: u64 = field(skb, off.skb_head);
        let network: u16 = field(skb, off.skb_network_header);
        let transport: u16 = field(skb, off.skb_transport_header);
        if head == 0 || network == u16::MAX || transport == u16::MAX {
            return Ok(None);
        }
        let ip = (head + u64::from(network)) as *const u8;
        let tcp = (head + u64::from(transport)) as *const u8;
        let mut key = TwKey::zeroed();
        // An IPv4 header without options, or the start of an IPv6 one.
        let v4: [u8; 20] = read(ip, 0)?;
        match v4[0] >> 4 {
            4 => {
                if v4[9] != IPPROTO_TCP as u8 {
                    return Ok(None);
                }
                key.family = AF_INET;
                key.raddr[0] = u64::from(u32::from_ne_bytes([v4[12], v4[13], v4[14], v4[15]]));
                key.laddr[0] = u64::from(u32::from_ne_bytes([v4[16], v4[17], v4[18], v4[19]]));
            }
            6 => {
                if v4[6] != IPPROTO_TCP as u8 {
                    return Ok(None);
                }
                key.family = AF_INET6;
                // Source and destination, bytes 8 to 40.
                let addrs: [u64; 4] = read(ip, 8)?;
                key.raddr = [addrs[0], addrs[1]];
                key.laddr = [addrs[2], addrs[3]];
            }
            _ => return Ok(None),
        }
        // Ports (bytes 0 to 4) and flags (byte 13).
        let th: [u8; 14] = read(tcp, 0)?;
        let flags = th[13];
        key.rport = u16::from_be_bytes([th[0], th[1]]);
        key.lport = u16::from_be_bytes([th[2], th[3]]);
        let mut dev: u64 = read(skb, off.skb_dev)?;
        if dev == 0 {
            // Cleared after the socket lookup; the input route still names the device.
            let dst: u64 = read::<u64>(skb, off.skb_refdst)? & !1;
            if dst != 0 {
                dev = read(dst as *const u8, off.dst_dev)?;
            }
        }
        if dev != 0 {
            let net: u64 = read(dev as *const u8, off.dev_nd_net)?;
            if net != 0 {
                key.netns = read(net as *const u8, sock_offsets().net_ns_inum)?;
            }
        }
        Ok(Some(Segment { key, flags }))
    }
}

/// How a full socket's X -> CLOSE relates to timewait sockets, decided in the kernel so the
/// per-edge counters stay exact when events are lost.
pub struct CloseKind {
    /// The edge to count (`None`: the connection did not change state: an orphan in
    /// FIN-WAIT-2 lives on as a timewait socket in FIN-WAIT-2).
    pub edge_to: Option<u8>,
    pub flags: u8,
    pub substate: u8,
}

/// Whether a timewait socket may be made from a socket taking this edge, or the edge is
/// its full socket's X -> CLOSE (`classify`): every socket passes through FIN-WAIT-1,
/// FIN-WAIT-2 or CLOSING on its way to one.
#[inline(always)]
pub fn may_follow(old: u8, new: u8) -> bool {
    matches!(new, st::FIN_WAIT1 | st::FIN_WAIT2 | st::CLOSING)
        || (new == st::CLOSE && (old == st::FIN_WAIT2 || old == st::CLOSING))
}

/// Classifies `sk`'s X -> CLOSE (state_change.rs calls this for every transition).
#[inline(always)]
pub unsafe fn classify(
    sk: *const u8,
    sock: &SockOffsets,
    cookie: u64,
    old: u8,
    new: u8,
) -> Result<CloseKind, i32> {
    let plain = CloseKind {
        edge_to: Some(new),
        flags: 0,
        substate: 0,
    };
    let Some(scratch) = scratch() else {
        return Ok(plain);
    };
    // Only the connect() in progress on this CPU can reuse a timewait socket: its
    // CLOSE -> SYN-SENT is this CPU's last transition until the reuse, if any.
    if old == st::CLOSE && new == st::SYN_SENT {
        scratch.connecting_sk = sk as u64;
        // SAFETY: bpf_ktime_get_ns has no preconditions.
        scratch.connecting_ns = unsafe { bpf_ktime_get_ns() };
        return Ok(plain);
    }
    scratch.connecting_sk = 0;
    let off = tw_offsets();
    if new != st::CLOSE || !(old == st::FIN_WAIT2 || old == st::CLOSING) || off.valid == 0 {
        return Ok(plain);
    }
    if !active() {
        // Still attaching (or never will): say so rather than call it a plain close.
        return Ok(CloseKind {
            flags: flags::TW_UNSEEN,
            ..plain
        });
    }
    if cookie != 0 && scratch.armed_cookie == cookie {
        scratch.armed_cookie = 0;
        let substate = scratch.armed_substate as u8;
        bump(counter::TW_CREATED);
        return Ok(CloseKind {
            edge_to: (substate == st::TIME_WAIT).then_some(st::TIME_WAIT),
            flags: flags::TW_CREATED,
            substate,
        });
    }
    // No timewait socket was made. It was meant to be (an overflow) unless the socket was
    // reset, sent an RST (TCP_LINGER2 < 0 closes, unread data, disconnect), or errored.
    // SAFETY: probe reads only.
    let (sk_err, linger2, owned, sk_flags): (i32, i32, i32, u64) = unsafe {
        (
            read(sk, sock.sk_err)?,
            read(sk, off.tcp_linger2)?,
            read(sk, sock.sk_lock_owned)?,
            read(sk, sock.sk_flags)?,
        )
    };
    // enum sock_flags: SOCK_DEAD = 0 (orphaned). A socket its task still holds that closes
    // in process context does so by reset (tcp_close with unread data, tcp_disconnect).
    let dead = sk_flags & 1 != 0;
    let reset_path = scratch.reset_cookie == cookie || (owned != 0 && !dead);
    if sk_err == 0 && linger2 >= 0 && !reset_path {
        bump(counter::TW_OVERFLOWS);
        return Ok(CloseKind {
            edge_to: Some(st::CLOSE),
            flags: flags::TW_OVERFLOW,
            substate: 0,
        });
    }
    Ok(plain)
}

/// Remembers the socket that is about to send an RST (tcp_events.rs, `tcp_send_reset`).
#[inline(always)]
pub fn note_reset(cookie: u64) {
    if let Some(scratch) = scratch() {
        scratch.reset_cookie = cookie;
    }
}
