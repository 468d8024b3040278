//! sockstat: the live state of every socket.
//!
//! Data flows one way: kernel hooks (`ebpf`) -> live state (`live`) -> views (`render`),
//! wired together by `cli`.
pub mod cli;
pub mod ebpf;
pub mod live;
pub mod render;
pub mod tcp;
