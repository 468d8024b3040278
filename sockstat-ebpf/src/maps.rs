//! Maps and load-time globals shared by every hook.
use aya_ebpf::{
    EbpfContext,
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    btf_maps::SkStorage,
    macros::{btf_map, map},
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use sockstat_common::{
    EDGE_STATES, OwnerInfo, OwnerOffsets, ProbeConfig, SockOffsets, StateEvent, TcpOffsets,
    TracepointOffsets, TwOffsets, cgroups, counter, drop, watched_netns,
};

use crate::timewait::{TwKey, TwScratch, TwWatch};

/// Events to user space. The size is only a default: user space sets it at load time
/// through `EbpfLoader::map_max_entries`. Written only through `reserve` and `submit`.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);

/// Per-CPU counters, indexed by `sockstat_common::counter`.
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

/// Per-CPU counts of dropped TCP segments by `enum skb_drop_reason` (see `drop`), under
/// the in-kernel filters; bumped before the ring is touched.
#[map]
pub static DROP_REASONS: PerCpuArray<u64> = PerCpuArray::with_max_entries(drop::REASON_SLOTS, 0);

/// Per-CPU transition counters, indexed `old * EDGE_STATES + new`; bumped before the ring
/// buffer is touched, so they stay exact when events are dropped.
#[map]
pub static EDGES: PerCpuArray<u64> = PerCpuArray::with_max_entries(EDGE_STATES * EDGE_STATES, 0);

/// Who last used each socket from process context, and when its last RTT event was
/// written: one storage per socket serves both.
#[btf_map]
pub static OWNERS: SkStorage<OwnerInfo> = SkStorage::new();

/// Cgroup ids whose sockets `--pod`/`--k8s-namespace`/`--container` leave out (the value
/// is unused), written by user space as it judges each cgroup (`cgroups::FILTER`).
#[map]
pub static CGROUPS_LEFT_OUT: HashMap<u64, u8> = HashMap::with_max_entries(cgroups::MAX_LEFT_OUT, 0);

/// The namespaces (inodes; the value is unused) the programs keep to with
/// `ProbeConfig::netns_watched`, written by user space as they come and go.
#[map]
pub static NETNS_WATCHED: HashMap<u32, u8> = HashMap::with_max_entries(watched_netns::MAX, 0);

/// 1 once user space has attached every timewait hook (`timewait::active`).
#[map]
pub static TW_ACTIVE: Array<u32> = Array::with_max_entries(1, 0);

/// What the timewait hooks remember between consecutive tracepoints on one CPU.
#[map]
pub static TW_SCRATCH: PerCpuArray<TwScratch> = PerCpuArray::with_max_entries(1, 0);

/// Timewait sockets in FIN-WAIT-2 (orphans waiting for the peer's FIN), by 4-tuple and
/// namespace: the FIN that moves one to TIME-WAIT is recognised when its skb is freed.
/// Least recently used entries make room; a missed FIN is repaired by the reconcile.
#[map]
pub static TW_ORPHANS: LruHashMap<TwKey, TwWatch> = LruHashMap::with_max_entries(16384, 0);

// Written by user space into .rodata before load (`EbpfLoader::set_global`); read through
// `read_volatile` so the compiler cannot fold the zero initialisers.
#[unsafe(no_mangle)]
static SOCK_OFFSETS: SockOffsets = SockOffsets::zeroed();
#[unsafe(no_mangle)]
static TP_OFFSETS: TracepointOffsets = TracepointOffsets::zeroed();
#[unsafe(no_mangle)]
static CONFIG: ProbeConfig = ProbeConfig::UNFILTERED;
#[unsafe(no_mangle)]
static OWNER_OFFSETS: OwnerOffsets = OwnerOffsets::zeroed();
#[unsafe(no_mangle)]
static TW_OFFSETS: TwOffsets = TwOffsets::zeroed();
#[unsafe(no_mangle)]
pub(crate) static TCP_OFFSETS: TcpOffsets = TcpOffsets::zeroed();

/// One field of `TCP_OFFSETS`, read where it is used (see `TcpOffsets`: no copy of the
/// struct on the stack).
macro_rules! tcp_offset {
    ($field:ident) => {
        // SAFETY: our own load-time global, written by the loader before anything is
        // attached; a volatile read, so the zero initialiser cannot be folded in.
        unsafe { core::ptr::read_volatile(core::ptr::addr_of!($crate::maps::TCP_OFFSETS.$field)) }
    };
}

/// A load-time global by reference, its fields loaded only where they are used. The
/// pointer passes through a volatile stack slot, so the compiler cannot see the zero
/// initialiser behind it (and fold it in), while the verifier still knows it as a pointer
/// into the frozen `.rodata` and every field loaded through it as a constant. A volatile
/// read of the whole struct instead loaded every field on every run: some 60 loads at the
/// top of each timer hook, which runs for every kernel timer.
#[inline(always)]
fn frozen<T>(global: &'static T) -> &'static T {
    let slot = global as *const T;
    // SAFETY: reads back the pointer just stored; it points at our own load-time global,
    // written by the loader before anything is attached and never after.
    unsafe { &*core::ptr::read_volatile(&slot) }
}

#[inline(always)]
pub fn tw_offsets() -> &'static TwOffsets {
    frozen(&TW_OFFSETS)
}

#[inline(always)]
pub fn owner_offsets() -> &'static OwnerOffsets {
    frozen(&OWNER_OFFSETS)
}

#[inline(always)]
pub fn sock_offsets() -> &'static SockOffsets {
    frozen(&SOCK_OFFSETS)
}

#[inline(always)]
pub fn tp_offsets() -> &'static TracepointOffsets {
    frozen(&TP_OFFSETS)
}

#[inline(always)]
pub fn config() -> &'static ProbeConfig {
    frozen(&CONFIG)
}

#[inline(always)]
pub fn bump(index: u32) {
    if let Some(slot) = COUNTERS.get_ptr_mut(index) {
        // Per-CPU slot: no other writer can race with this one.
        // SAFETY: a per-CPU slot of our own map, valid for this run.
        unsafe { *slot += 1 };
    }
}

/// Counts a dropped segment under its reason.
#[inline(always)]
pub fn bump_drop(reason: u32) {
    let slot = reason.min(drop::REASON_SLOTS - 1);
    if let Some(count) = DROP_REASONS.get_ptr_mut(slot) {
        // SAFETY: a per-CPU slot of our own map, valid for this program run.
        unsafe { *count += 1 };
    }
}

/// Argument `index` of a BTF tracepoint, one a newer kernel added, when the loader's
/// `ProbeConfig::args` says it exists (`bit`). The setting is a frozen constant, so on
/// older kernels the verifier drops the read of an argument they lack as dead code; the
/// read is volatile so that the compiler cannot hoist it above the check (it did so with
/// plain argument reads).
#[inline(always)]
pub fn added_argument(ctx: &impl EbpfContext, index: usize, bit: u8) -> Option<u64> {
    if config().args & bit == 0 {
        return None;
    }
    // SAFETY: the context holds argument `index` whenever the loader set `bit`.
    Some(unsafe { core::ptr::read_volatile((ctx.as_ptr() as *const u64).add(index)) })
}

#[inline(always)]
pub fn bump_edge(old: u8, new: u8) {
    let (old, new) = (u32::from(old), u32::from(new));
    if old < EDGE_STATES
        && new < EDGE_STATES
        && let Some(slot) = EDGES.get_ptr_mut(old * EDGE_STATES + new)
    {
        // SAFETY: a per-CPU slot of our own map, valid for this program run.
        unsafe { *slot += 1 };
    }
}

/// Reserves a ring slot, lets `$fill` (a `Result<(), i32>` expression using `$ev`, the
/// slot as `&mut StateEvent`) write the event in place, as it is too large for the
/// 512-byte BPF stack, and submits it, or discards it when the fill failed. A full ring is
/// counted as lost, and then `lost => $lost` runs (with events off, neither). A macro,
/// not a function taking a closure: with the closure the offsets read from `.rodata`
/// reached the loads as unknown values, and the verifier refused the variable offsets
/// ("R2 is ptr_sock invalid variable offset", 6.18).
macro_rules! emit_event {
    ($ev:ident => $fill:expr) => {
        emit_event!($ev => $fill, lost => {})
    };
    ($ev:ident => $fill:expr, lost => $lost:expr) => {
        match $crate::maps::reserve() {
            None => {
                if $crate::maps::config().emit_events != 0 {
                    $lost;
                }
                Ok(())
            }
            Some(mut entry) => {
                // SAFETY: the reserved slot is ours until submit or discard, and sized for
                // a StateEvent.
                let $ev = unsafe { &mut *entry.as_mut_ptr() };
                let filled: Result<(), i32> = $fill;
                $crate::maps::submit(entry, filled)
            }
        }
    };
}

/// A ring-buffer slot, or None (counted as lost) when the ring is full or events are off.
/// Only for `emit_event!`.
#[inline(always)]
pub fn reserve() -> Option<aya_ebpf::maps::ring_buf::RingBufEntry<StateEvent>> {
    if config().emit_events == 0 {
        return None;
    }
    let entry = EVENTS.reserve::<StateEvent>(0);
    if entry.is_none() {
        bump(counter::LOST);
    }
    entry
}

/// Commits the event. Wake-ups are adaptive: only once `wakeup_bytes` are waiting; user
/// space also polls on a short timer, so a quiet ring is still read promptly.
/// Only for `emit_event!`.
#[inline(always)]
pub fn submit(
    entry: aya_ebpf::maps::ring_buf::RingBufEntry<StateEvent>,
    filled: Result<(), i32>,
) -> Result<(), i32> {
    match filled {
        Ok(()) => {
            let waiting = EVENTS.query(BPF_RB_AVAIL_DATA.into());
            let wake = if waiting >= u64::from(config().wakeup_bytes) {
                BPF_RB_FORCE_WAKEUP
            } else {
                BPF_RB_NO_WAKEUP
            };
            entry.submit(wake.into());
            bump(counter::EMITTED);
            Ok(())
        }
        Err(e) => {
            entry.discard(BPF_RB_NO_WAKEUP.into());
            Err(e)
        }
    }
}

/// A run that could not read what it needed (a failed kernel read, an offset the BTF did not
/// give): always counted, and said through aya-log. Only this rare path logs; user space
/// sets `AYA_LOG_LEVEL` to 0 unless `-v`, and then it costs one load and a branch.
#[inline(always)]
pub fn read_failed<C: EbpfContext>(ctx: &C, hook: &'static str, err: i32) {
    bump(counter::READ_ERRORS);
    aya_log_ebpf::warn!(ctx, "{}: a kernel read failed (error {})", hook, err);
}
