//! Socket snapshots from NETLINK_SOCK_DIAG (inet, unix, packet) and /proc/net/raw.
//! Collectors return records; they never print and know nothing of command-line flags.
pub mod inet;
pub mod netlink;
pub mod packet;
pub mod raw;
pub mod record;
pub mod tcp_info;
pub mod unix;

use std::path::Path;

pub use inet::Extensions;
pub use netlink::{DiagError, DiagSocket, Sink, VecSink};
pub use record::{Endpoint, Netid, SocketRecord, Timer};
pub use unix::UnixTypes;

/// Which sockets to fetch.
#[derive(Clone, Debug, Default)]
pub struct Query {
    pub tcp: bool,
    pub udp: bool,
    pub raw: bool,
    pub unix: UnixTypes,
    pub packet_raw: bool,
    pub packet_dgram: bool,
    pub v4: bool,
    pub v6: bool,
    /// Kernel state bitmask (bit n = state n).
    pub states: u32,
    pub ext: Extensions,
    /// INET_DIAG_REQ_BYTECODE for TCP and UDP requests.
    pub bytecode: Option<Vec<u8>>,
}

/// Dumps everything `q` asks for into a Vec.
pub fn collect(q: &Query, proc_net: &Path) -> Result<Vec<SocketRecord>, DiagError> {
    let mut sink = VecSink::default();
    collect_into(q, proc_net, &mut sink)?;
    Ok(sink.items)
}

/// Dumps everything `q` asks for into `out`, in ss's order (packet, unix, raw, udp, tcp; v4
/// before v6). `proc_net` is where /proc/net/raw lives for the namespace being dumped.
pub fn collect_into(
    q: &Query,
    proc_net: &Path,
    out: &mut dyn Sink<SocketRecord>,
) -> Result<(), DiagError> {
    let mut sock = DiagSocket::open()?;
    if q.packet_raw || q.packet_dgram {
        tolerate_missing(packet::dump(&mut sock, q.packet_raw, q.packet_dgram, out))?;
    }
    if q.unix.stream || q.unix.dgram || q.unix.seqpacket {
        tolerate_missing(unix::dump(&mut sock, q.states, q.unix, q.ext.memory, out))?;
    }
    if q.raw {
        out.begin();
        for r in raw::read(proc_net, q.v4, q.v6).map_err(DiagError::Io)? {
            if filter_states(q.states, r.state) {
                out.item(r)?;
            }
        }
    }
    for (wanted, proto) in [(q.udp, inet::IPPROTO_UDP), (q.tcp, inet::IPPROTO_TCP)] {
        if !wanted {
            continue;
        }
        // TCP of both families: one walk of the hash (compat request) instead of two.
        let families: &[Option<u8>] = match (q.v4, q.v6) {
            (true, true) if proto == inet::IPPROTO_TCP => &[None],
            (true, true) => &[Some(inet::AF_INET), Some(inet::AF_INET6)],
            (true, false) => &[Some(inet::AF_INET)],
            (false, true) => &[Some(inet::AF_INET6)],
            (false, false) => &[],
        };
        for &family in families {
            inet::dump(
                &mut sock,
                family,
                proto,
                q.states,
                q.ext,
                q.bytecode.as_deref(),
                out,
            )?;
        }
    }
    Ok(())
}

fn filter_states(mask: u32, state: u8) -> bool {
    state < 32 && mask & (1 << state) != 0
}

/// A kernel without a diag module for some family just has nothing to show for it.
fn tolerate_missing(r: Result<(), DiagError>) -> Result<(), DiagError> {
    match r {
        Err(e) if e.is_unsupported() => Ok(()),
        other => other,
    }
}
