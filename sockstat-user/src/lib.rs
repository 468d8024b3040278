//! sockstat: the live state of every socket.
//!
//! Data flows one way: kernel hooks (`ebpf`) -> live state (`live`) -> views (`render`),
//! wired together by `cli`.
pub mod agent;
pub mod alert;
pub mod cli;
pub mod diag;
pub mod ebpf;
pub mod exporter;
pub mod filter;
pub mod lab;
pub mod live;
pub mod logger;
pub mod procs;
pub mod render;
pub mod report;
pub mod rtnl;
pub mod services;
pub mod stats;
pub mod tcp;
