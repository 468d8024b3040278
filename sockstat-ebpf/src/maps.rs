//! Maps and load-time globals shared by every hook.
use aya_ebpf::{
    btf_maps::SkStorage,
    macros::{btf_map, map},
    maps::{PerCpuArray, RingBuf},
};
use sockstat_common::{
    EDGE_STATES, OwnerInfo, OwnerOffsets, ProbeConfig, SockOffsets, TracepointOffsets, counter,
};

/// Events to user space. The size is only a default: user space sets it at load time
/// (`--ring-kb`) through `EbpfLoader::set_max_entries`.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);

/// Per-CPU counters, indexed by `sockstat_common::counter`.
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

/// Per-CPU transition counters, indexed `old * EDGE_STATES + new`; bumped before the ring
/// buffer is touched, so they stay exact when events are dropped.
#[map]
pub static EDGES: PerCpuArray<u64> = PerCpuArray::with_max_entries(EDGE_STATES * EDGE_STATES, 0);

/// Who last used each socket from process context.
#[btf_map]
pub static OWNERS: SkStorage<OwnerInfo> = SkStorage::new();

// Written by user space into .rodata before load (`EbpfLoader::set_global`); read through
// `read_volatile` so the compiler cannot fold the zero initialisers.
#[unsafe(no_mangle)]
static SOCK_OFFSETS: SockOffsets = SockOffsets::zeroed();
#[unsafe(no_mangle)]
static TP_OFFSETS: TracepointOffsets = TracepointOffsets::zeroed();
#[unsafe(no_mangle)]
static CONFIG: ProbeConfig = ProbeConfig::zeroed();
#[unsafe(no_mangle)]
static OWNER_OFFSETS: OwnerOffsets = OwnerOffsets::zeroed();

#[inline(always)]
pub fn owner_offsets() -> OwnerOffsets {
    unsafe { core::ptr::read_volatile(&OWNER_OFFSETS) }
}

#[inline(always)]
pub fn sock_offsets() -> SockOffsets {
    unsafe { core::ptr::read_volatile(&SOCK_OFFSETS) }
}

#[inline(always)]
pub fn tp_offsets() -> TracepointOffsets {
    unsafe { core::ptr::read_volatile(&TP_OFFSETS) }
}

#[inline(always)]
pub fn config() -> ProbeConfig {
    unsafe { core::ptr::read_volatile(&CONFIG) }
}

#[inline(always)]
pub fn bump(index: u32) {
    if let Some(slot) = COUNTERS.get_ptr_mut(index) {
        // Per-CPU slot: no other writer can race with this one.
        unsafe { *slot += 1 };
    }
}

#[inline(always)]
pub fn bump_edge(old: u8, new: u8) {
    let (old, new) = (u32::from(old), u32::from(new));
    if old < EDGE_STATES && new < EDGE_STATES {
        if let Some(slot) = EDGES.get_ptr_mut(old * EDGE_STATES + new) {
            unsafe { *slot += 1 };
        }
    }
}
