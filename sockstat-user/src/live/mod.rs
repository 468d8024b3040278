//! The live table: every TCP socket's state, since when, its owner and namespace, merged
//! from a sock_diag baseline and the kernel's events; the transitions to print, including
//! the ones the kernel never reports (TIME-WAIT), marked as synthesized; lifetimes of closed
//! connections. No I/O here: callers feed baselines and events in and print what comes out.
mod baseline;
mod cause;
pub mod clock;
pub mod dashboard;
pub mod replay;
mod table;
mod timeline;
mod tw_table;

pub use baseline::{Baseline, Dumped, Mark};
pub use cause::{Cause, ERRNO_NAMES};
pub use table::{Reports, TableMemory, Tracker, TrackerStats};
pub use timeline::{Timeline, Timelines};

use std::net::SocketAddr;

/// The maps keyed by what the kernel hands out (cookies, socket addresses, pids): SipHash
/// was a twentieth of a busy trace's CPU; foldhash is faster and still seeded per process.
type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

use crate::{ebpf::Family, tcp::ReportedState};

/// Where an owner came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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
    const ALL: [OwnerSource; 5] = [
        OwnerSource::Task,
        OwnerSource::Cached,
        OwnerSource::Listener,
        OwnerSource::Baseline,
        OwnerSource::Unknown,
    ];

    /// The source `name` gives (a stored lifetime's).
    pub fn from_name(name: &str) -> Option<OwnerSource> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

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

/// A process name (`comm`, at most 15 bytes), kept inline: the table holds one per socket,
/// and 100k+ small heap strings cost more than the sockets' other fields together.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Comm {
    bytes: [u8; 16],
    len: u8,
}

impl Comm {
    pub fn new(s: &str) -> Self {
        let mut bytes = [0u8; 16];
        // Cut at a char boundary within 16 bytes.
        let mut len = s.len().min(16);
        while !s.is_char_boundary(len) {
            len -= 1;
        }
        bytes[..len].copy_from_slice(&s.as_bytes()[..len]);
        Comm {
            bytes,
            len: len as u8,
        }
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }
}

impl std::fmt::Debug for Comm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Owner {
    pub pid: Option<u32>,
    pub comm: Option<Comm>,
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
        Self::with_comm(pid, Comm::new(comm), source)
    }

    pub fn with_comm(pid: u32, comm: Comm, source: OwnerSource) -> Self {
        Owner {
            pid: Some(pid),
            comm: Some(comm),
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
    /// Time in SYN-SENT (connect() to ESTAB), for connections this host opened.
    pub connect_ns: Option<u64>,
    /// The kernel's first RTT sample, as the handshake completed (µs; either side).
    pub handshake_rtt_us: Option<u32>,
    pub retransmits: u32,
    pub cause: Option<Cause>,
    pub owner: Owner,
    /// `tcp_sock` at the close: smoothed and minimum RTT, cwnd, delivery rate.
    pub tcp: crate::ebpf::TcpCounters,
}

/// A connection's RTT as the kernel measured it: its first sample, taken as the handshake
/// completed, or a periodic one (`--events rtt`), with cwnd and delivery rate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RttSample {
    pub ts_ns: u64,
    pub cookie: u64,
    pub netns: u32,
    pub family: Family,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub owner: Owner,
    /// The handshake's sample (the state change to ESTAB carried it).
    pub handshake: bool,
    pub tcp: crate::ebpf::TcpCounters,
}

/// A retransmitted segment (or a listener's SYN-ACK), joined to its connection by cookie.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retransmit {
    pub ts_ns: u64,
    /// 0 for a SYN-ACK: the connection has no socket of its own yet.
    pub cookie: u64,
    pub netns: u32,
    pub family: Family,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub owner: Owner,
    pub what: crate::ebpf::Retransmission,
}

/// An RST this host sent or received, as the kernel reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reset {
    pub ts_ns: u64,
    /// The socket's cookie; 0 for a closed port (no socket).
    pub cookie: u64,
    pub netns: u32,
    pub family: Family,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub direction: ResetDirection,
    /// The socket's state when the RST went or came, if the live table knows the socket.
    /// `None` for a closed port: there is no socket.
    pub state: Option<ReportedState>,
    /// It answered a segment to a port nothing listens on (`local`): a refused connect on
    /// the other side, the mark of a port scan.
    pub closed_port: bool,
    pub owner: Owner,
    /// A sent reset's reason, the kernel's `enum sk_rst_reason` value (6.10+).
    pub reason: Option<u8>,
}

/// A TCP segment the kernel dropped, joined to its connection: by the kernel's socket
/// where it named one, else by the segment's addresses in the live table (a listener for
/// a segment to its port).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DroppedSegment {
    pub ts_ns: u64,
    /// The connection's cookie; 0 where none was found.
    pub cookie: u64,
    /// 0 where neither the kernel nor the live table told the namespace.
    pub netns: u32,
    pub family: Family,
    /// This host's end and the peer's.
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub owner: Owner,
    /// Reason, TCP flags, direction, and the socket's state where known (the kernel's
    /// reading, else the live table's).
    pub what: crate::ebpf::SegmentDrop,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetDirection {
    In,
    Out,
}

/// Everything the tracker can produce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    Transition(Transition),
    /// Boxed: twice the size of the others, and one per connection.
    Lifetime(Box<Lifetime>),
    Reset(Reset),
    Retransmit(Retransmit),
    Drop(DroppedSegment),
    Rtt(RttSample),
}

/// What every output says of its socket: when, which, whose, and its two ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutputHead {
    pub ts_ns: u64,
    pub cookie: u64,
    pub netns: u32,
    pub family: Family,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub owner: Owner,
}

/// Each output's `head()`: the same seven fields in every one.
macro_rules! heads {
    ($($t:ty),*) => {
        $(impl $t {
            pub fn head(&self) -> OutputHead {
                OutputHead {
                    ts_ns: self.ts_ns,
                    cookie: self.cookie,
                    netns: self.netns,
                    family: self.family,
                    local: self.local,
                    remote: self.remote,
                    owner: self.owner,
                }
            }
        })*
    };
}

heads!(
    Transition,
    Lifetime,
    Reset,
    Retransmit,
    DroppedSegment,
    RttSample
);

impl Output {
    pub fn head(&self) -> OutputHead {
        match self {
            Output::Transition(o) => o.head(),
            Output::Lifetime(o) => o.head(),
            Output::Reset(o) => o.head(),
            Output::Retransmit(o) => o.head(),
            Output::Drop(o) => o.head(),
            Output::Rtt(o) => o.head(),
        }
    }
}
