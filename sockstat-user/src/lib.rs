//! sockstat: the live state of every socket.
//!
//! Data flows one way: kernel hooks (`ebpf`) -> live state (`live`) -> views (`render`),
//! wired together by `cli`. Modules are private so the compiler reports dead code; `diag`
//! and `filter` are public for the fuzz targets, `cli` for the binary.
mod agent;
mod alert;
pub mod cli;
pub mod diag;
mod ebpf;
mod exporter;
pub mod filter;
mod history;
mod lab;
mod least_privilege;
mod live;
mod logger;
mod names;
mod procs;
mod render;
mod report;
mod rtnl;
mod services;
mod stats;
mod tcp;

pub use ebpf::LoadError;
