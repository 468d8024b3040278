//! Everything that talks to the kernel's BPF side: loading and attaching programs, offsets
//! from BTF or tracefs, ring-buffer draining and event decoding, in-kernel counters.
pub mod events;
pub mod kallsyms;
pub mod loader;
pub mod object;
pub mod offsets;
pub mod owners;
pub mod privilege;
pub mod reasons;
pub mod ring;
pub mod sys;
pub mod tracefs;

pub use events::{
    DecodeError, DropReason, EventKind, Family, Hook, KernelEvent, KernelOwner, Retransmission,
    SegmentDrop, TcpCounters, TimewaitClose, TimewaitEvent,
};
pub use loader::{
    EdgeCount, HookChoice, KernelCounters, LoadError, Probe, ProbeOptions, RING_KIB, SocketCgroups,
};
pub use reasons::ReasonNames;
