//! The live table: every TCP socket's state, since when, its owner and namespace, merged
//! from a sock_diag baseline and the kernel's events; the transitions to print, including
//! the ones the kernel never reports (TIME-WAIT), marked as synthesized; lifetimes of closed
//! connections. No I/O here: callers feed baselines and events in and print what comes out.
mod cause;
pub mod clock;
mod table;

pub use cause::Cause;
pub use table::{Baseline, Entry, Tracker, TrackerStats};

use std::net::SocketAddr;

use crate::{ebpf::Family, tcp::ReportedState};

/// Where an owner came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnerSource {
    /// The task that held the socket lock when the transition ran.
    Task,
    /// Remembered from an earlier process-context transition of this socket.
    Cached,
    /// A passive open, attributed to the process that owns the listening socket.
    Listener,
    /// The process that held the socket when sockstat started (from /proc or BPF).
    Baseline,
    /// Nobody trustworthy was current (softirq) and nothing was known: no owner is claimed.
    Unknown,
}

impl OwnerSource {
    pub fn name(self) -> &'static str {
        match self {
            OwnerSource::Task => "task",
            OwnerSource::Cached => "cached",
            OwnerSource::Listener => "listener",
            OwnerSource::Baseline => "baseline",
            OwnerSource::Unknown => "unknown",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub pid: Option<u32>,
    pub comm: Option<String>,
    pub source: OwnerSource,
}

impl Owner {
    pub fn unknown() -> Self {
        Owner {
            pid: None,
            comm: None,
            source: OwnerSource::Unknown,
        }
    }

    pub fn known(pid: u32, comm: &str, source: OwnerSource) -> Self {
        Owner {
            pid: Some(pid),
            comm: Some(comm.to_string()),
            source,
        }
    }
}

/// Whether the kernel reported a transition or sockstat inferred it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Kernel,
    Synthesized,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::Kernel => "kernel",
            Source::Synthesized => "synthesized",
        }
    }
}

/// A transition to print.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub ts_ns: u64,
    pub cookie: u64,
    pub netns: u32,
    pub family: Family,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub old: ReportedState,
    pub new: ReportedState,
    /// Nanoseconds spent in `old`; `None` when not seen.
    pub prev_state_ns: Option<u64>,
    pub owner: Owner,
    pub source: Source,
    pub cause: Option<Cause>,
}

/// One finished connection, like tcplife's line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lifetime {
    pub ts_ns: u64,
    pub cookie: u64,
    pub netns: u32,
    pub family: Family,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// From the first transition seen (connect or the child's creation); `None` when the
    /// connection predates sockstat.
    pub duration_ns: Option<u64>,
    pub bytes_acked: u64,
    pub bytes_received: u64,
    /// SYN-SENT -> ESTAB, for connections this host opened.
    pub handshake_ns: Option<u64>,
    pub retransmits: u32,
    pub cause: Option<Cause>,
    pub owner: Owner,
}

/// Everything the tracker can produce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    Transition(Transition),
    Lifetime(Lifetime),
}
