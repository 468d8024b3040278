//! The flight recorder: every connection's lifetime kept after it closed, to answer "which
//! process connected to 10.0.3.7:5432 at 03:12, and why was it refused?" later.
//! `store.rs` (the embedded SQLite store), `clickhouse.rs` and `spool.rs` (a fleet's store,
//! reached through a bounded queue on disk), `writer.rs` (batched writes and retention off
//! the event path), `sql.rs` (ss's filter language as a WHERE clause for either);
//! `sockstat record` fills them, `sockstat history` reads them.
pub mod clickhouse;
pub mod recorder;
pub mod spool;
pub mod sql;
pub mod store;
pub mod writer;

use std::{
    net::{IpAddr, Ipv6Addr, SocketAddr},
    time::{SystemTime, UNIX_EPOCH},
};

use crate::{
    ebpf::{Family, TcpCounters},
    live::{Cause, Comm, Lifetime, Owner, OwnerSource, Source, Transition, clock::WallClock},
    procs::workload::Workload,
    tcp::ReportedState,
};
pub use store::{LifetimeRow, TransitionRow};

/// What the writer takes: a finished connection, or (`--transitions`) one state change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Row {
    Lifetime(LifetimeRow),
    Transition(TransitionRow),
}

/// A state change as the store keeps it.
pub fn transition_row_of(
    t: &Transition,
    clock: WallClock,
    names: Option<&Workload>,
) -> TransitionRow {
    TransitionRow {
        ts_ns: wall_ns(clock, t.ts_ns),
        cookie: t.cookie,
        netns: t.netns,
        local: Some(t.local),
        remote: Some(t.remote),
        old: t.old.kernel_number(),
        new: t.new.kernel_number(),
        prev_state_ns: t.prev_state_ns,
        pid: t.owner.pid,
        comm: t.owner.comm.as_ref().map(|c| c.as_str().to_string()),
        owner_source: t.owner.source.name().to_string(),
        synthesized: t.source == Source::Synthesized,
        cause: t.cause.map(|c| c.name()),
        names: names.cloned().unwrap_or_default(),
    }
}

/// A stored state change as trace's printer takes it, on the wall clock (print it with
/// `WallClock::fixed(0)`), and its container's names.
pub fn transition_of(r: &TransitionRow) -> Option<(Transition, Workload)> {
    let (local, remote) = (r.local?, r.remote?);
    let transition = Transition {
        ts_ns: r.ts_ns.max(0) as u64,
        cookie: r.cookie,
        netns: r.netns,
        family: Family::of(&local),
        local,
        remote,
        old: ReportedState::from_kernel(r.old),
        new: ReportedState::from_kernel(r.new),
        prev_state_ns: r.prev_state_ns,
        owner: owner_of(r.pid, r.comm.as_deref(), &r.owner_source),
        source: if r.synthesized {
            Source::Synthesized
        } else {
            Source::Kernel
        },
        cause: r.cause.as_deref().and_then(Cause::from_name),
    };
    Some((transition, r.names.clone()))
}

fn owner_of(pid: Option<u32>, comm: Option<&str>, source: &str) -> Owner {
    match (pid, comm) {
        (Some(pid), Some(comm)) => Owner::with_comm(
            pid,
            Comm::new(comm),
            OwnerSource::from_name(source).unwrap_or(OwnerSource::Unknown),
        ),
        _ => Owner::unknown(),
    }
}

fn wall_ns(clock: WallClock, monotonic_ns: u64) -> i64 {
    clock
        .to_system_time(monotonic_ns)
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// A finished connection as the store keeps it.
pub fn row_of(l: &Lifetime, clock: WallClock, names: Option<&Workload>) -> LifetimeRow {
    let end_ns = wall_ns(clock, l.ts_ns);
    LifetimeRow {
        end_ns,
        start_ns: l.duration_ns.map(|d| end_ns.saturating_sub(d as i64)),
        netns: l.netns,
        local: Some(l.local),
        remote: Some(l.remote),
        pid: l.owner.pid,
        comm: l.owner.comm.as_ref().map(|c| c.as_str().to_string()),
        owner_source: l.owner.source.name().to_string(),
        cause: l.cause.map(|c| c.name()),
        bytes_acked: l.bytes_acked,
        bytes_received: l.bytes_received,
        connect_ns: l.connect_ns,
        handshake_rtt_us: l.handshake_rtt_us,
        retransmits: l.retransmits,
        srtt_us: l.tcp.srtt_us,
        min_rtt_us: l.tcp.min_rtt_us,
        snd_cwnd: l.tcp.snd_cwnd,
        delivery_rate: l.tcp.delivery_rate,
        cookie: l.cookie,
        names: names.cloned().unwrap_or_default(),
    }
}

/// A stored connection as trace's printer takes it, its times on the wall clock (print it
/// with `WallClock::fixed(0)`), and its container's names.
pub fn lifetime_of(r: &LifetimeRow) -> Option<(Lifetime, Workload)> {
    let (local, remote) = (r.local?, r.remote?);
    let owner = owner_of(r.pid, r.comm.as_deref(), &r.owner_source);
    let lifetime = Lifetime {
        ts_ns: r.end_ns.max(0) as u64,
        cookie: r.cookie,
        netns: r.netns,
        family: Family::of(&local),
        local,
        remote,
        duration_ns: r.start_ns.map(|s| r.end_ns.saturating_sub(s).max(0) as u64),
        bytes_acked: r.bytes_acked,
        bytes_received: r.bytes_received,
        connect_ns: r.connect_ns,
        handshake_rtt_us: r.handshake_rtt_us,
        retransmits: r.retransmits,
        cause: r.cause.as_deref().and_then(Cause::from_name),
        owner,
        tcp: TcpCounters {
            bytes_acked: r.bytes_acked,
            bytes_received: r.bytes_received,
            total_retrans: r.retransmits,
            srtt_us: r.srtt_us,
            min_rtt_us: r.min_rtt_us,
            snd_cwnd: r.snd_cwnd,
            delivery_rate: r.delivery_rate,
        },
    };
    Some((lifetime, r.names.clone()))
}

/// (family 4/6, 16-byte address with IPv4 as v4-mapped, port). Addresses sort as their
/// numbers, so a prefix is a range (`sql.rs`).
pub(crate) fn endpoint(a: Option<SocketAddr>) -> (u8, [u8; 16], u16) {
    match a {
        Some(SocketAddr::V4(v4)) => (4, v4.ip().to_ipv6_mapped().octets(), v4.port()),
        Some(SocketAddr::V6(v6)) => (6, v6.ip().octets(), v6.port()),
        None => (0, [0; 16], 0),
    }
}

pub(crate) fn address(family: u8, bytes: &[u8], port: u16) -> Option<SocketAddr> {
    let octets: [u8; 16] = bytes.try_into().ok()?;
    let v6 = Ipv6Addr::from(octets);
    let ip = match family {
        4 => IpAddr::V4(v6.to_ipv4_mapped()?),
        6 => IpAddr::V6(v6),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// This machine's name, as the stores label what it recorded.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// Wall-clock nanoseconds since the epoch as a time (before the epoch: the epoch).
pub fn system_time(ns: i64) -> SystemTime {
    UNIX_EPOCH + std::time::Duration::from_nanos(ns.max(0) as u64)
}

/// Now, in wall-clock nanoseconds.
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lifetime_survives_the_store() {
        let l = Lifetime {
            ts_ns: 5_000_000_000,
            cookie: 77,
            netns: 4026531840,
            family: Family::Inet,
            local: "10.0.0.1:40000".parse().unwrap(),
            remote: "10.0.3.7:5432".parse().unwrap(),
            duration_ns: Some(2_000_000),
            bytes_acked: 1,
            bytes_received: 0,
            connect_ns: Some(2_000_000),
            handshake_rtt_us: None,
            retransmits: 0,
            cause: Some(Cause::Errno(libc::ECONNREFUSED)),
            owner: Owner::known(4242, "psql", OwnerSource::Task),
            tcp: TcpCounters {
                bytes_acked: 1,
                ..TcpCounters::default()
            },
        };
        let clock = WallClock::fixed(1_700_000_000_000_000_000);
        let names = Workload {
            pod: Some("api".to_string()),
            ..Workload::default()
        };
        let row = row_of(&l, clock, Some(&names));
        assert_eq!(row.end_ns, 1_700_000_005_000_000_000);
        assert_eq!(row.cause.as_deref(), Some("ECONNREFUSED"));
        let (back, back_names) = lifetime_of(&row).unwrap();
        assert_eq!(back_names, names);
        assert_eq!(
            Lifetime {
                ts_ns: l.ts_ns + 1_700_000_000_000_000_000,
                ..l
            },
            back
        );
    }
}
