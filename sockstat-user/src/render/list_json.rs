//! The listing as JSON: one object per socket, written as the sockets arrive. Keys are a
//! stable interface (README) and come in alphabetical order.
//!
//! Objects are plain structs serialized by serde's derive rather than `serde_json::Value`
//! maps: a map costs some thirty allocations and string compares per socket, which made
//! `--json` twice as expensive as text at 100k sockets.
use std::{
    fmt::Write as _,
    io::{self, Write},
    net::SocketAddr,
};

use serde::Serialize;

use super::{
    list::{ListStyle, ethertype_name, iface_name, state_name, timer_name},
    numfmt::{push_ipv4, push_uint},
};
use crate::{
    diag::{
        record::{Endpoint, Netid, SocketRecord},
        tcp_info::TcpInfo,
    },
    procs::Owners,
};

/// One socket. Field order is key order: alphabetical.
#[derive(Debug, Serialize)]
pub struct JsonSocket<'a> {
    /// With --all-netns, the names of the namespace's container (`container`, `image`,
    /// `namespace`, `pod`), each only when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    container: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<Details>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dev: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<&'a str>,
    /// `Some(None)` is written as `null`: asked for, but the kernel sent none.
    #[serde(skip_serializing_if = "Option::is_none")]
    info: Option<Option<Info<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    inode: Option<u32>,
    local: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    memory: Option<Option<Memory>>,
    /// The pod's Kubernetes namespace (not the network namespace: that is `netns`).
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<&'a str>,
    netid: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    netns: Option<&'a str>,
    peer: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    peer_inode: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pod: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    process: Option<Vec<Process<'a>>>,
    recv_q: u32,
    send_q: u32,
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    timer: Option<Option<Timer>>,
}

#[derive(Debug, Serialize)]
struct Details {
    cgroup_id: Option<u64>,
    cookie: u64,
    fwmark: Option<u32>,
    inode: u32,
    shutdown: Option<u8>,
    uid: u32,
    v6only: Option<bool>,
}

#[derive(Debug, Serialize)]
struct Process<'a> {
    comm: &'a str,
    fd: u32,
    pid: u32,
}

#[derive(Debug, Serialize)]
struct Timer {
    expires_ms: u32,
    name: &'static str,
    retrans: u8,
}

/// `skmem:(...)`; a value the kernel did not send is `null`.
#[derive(Debug, Serialize)]
struct Memory {
    backlog: Option<u32>,
    drops: Option<u32>,
    fwd_alloc: Option<u32>,
    optmem: Option<u32>,
    rcvbuf: Option<u32>,
    rmem_alloc: Option<u32>,
    sndbuf: Option<u32>,
    wmem_alloc: Option<u32>,
    wmem_queued: Option<u32>,
}

#[derive(Debug, Serialize)]
struct Info<'a> {
    advmss: u32,
    ato_ms: f64,
    busy_ms: u64,
    bytes_acked: u64,
    bytes_received: u64,
    bytes_retrans: u64,
    bytes_sent: u64,
    congestion: Option<&'a str>,
    cwnd: u32,
    delivery_rate_bps: u64,
    last_ack_ms: u32,
    last_recv_ms: u32,
    last_send_ms: u32,
    lost: u32,
    min_rtt_ms: f64,
    mss: u32,
    notsent_bytes: u32,
    pacing_rate_bps: u64,
    pmtu: u32,
    rcv_mss: u32,
    rcv_space: u32,
    rcv_wnd: u32,
    reordering: u32,
    retrans: u32,
    rto_ms: f64,
    rtt_ms: f64,
    rttvar_ms: f64,
    segs_in: u32,
    segs_out: u32,
    snd_wnd: u32,
    ssthresh: u32,
    total_retrans: u32,
    unacked: u32,
}

impl<'a> Info<'a> {
    fn new(i: &TcpInfo, congestion: Option<&'a str>) -> Self {
        let ms = |us: u32| f64::from(us) / 1000.0;
        Info {
            advmss: i.advmss,
            ato_ms: ms(i.ato),
            busy_ms: i.busy_time / 1000,
            bytes_acked: i.bytes_acked,
            bytes_received: i.bytes_received,
            bytes_retrans: i.bytes_retrans,
            bytes_sent: i.bytes_sent,
            congestion,
            cwnd: i.snd_cwnd,
            delivery_rate_bps: i.delivery_rate.saturating_mul(8),
            last_ack_ms: i.last_ack_recv,
            last_recv_ms: i.last_data_recv,
            last_send_ms: i.last_data_sent,
            lost: i.lost,
            min_rtt_ms: ms(i.min_rtt),
            mss: i.snd_mss,
            notsent_bytes: i.notsent_bytes,
            pacing_rate_bps: i.pacing_rate.saturating_mul(8),
            pmtu: i.pmtu,
            rcv_mss: i.rcv_mss,
            rcv_space: i.rcv_space,
            rcv_wnd: i.rcv_wnd,
            reordering: i.reordering,
            retrans: i.retrans,
            rto_ms: ms(i.rto),
            rtt_ms: ms(i.rtt),
            rttvar_ms: ms(i.rttvar),
            segs_in: i.segs_in,
            segs_out: i.segs_out,
            snd_wnd: i.snd_wnd,
            ssthresh: i.snd_ssthresh,
            total_retrans: i.total_retrans,
            unacked: i.unacked,
        }
    }
}

/// `ip:port`, `[v6]:port`, a unix path (`*` when unnamed), or `ethertype:iface`.
fn endpoint(e: &Endpoint) -> String {
    match e {
        Endpoint::Inet(SocketAddr::V4(sa)) => {
            let mut s = String::with_capacity(21);
            push_ipv4(&mut s, sa.ip().octets());
            s.push(':');
            push_uint(&mut s, u32::from(sa.port()));
            s
        }
        Endpoint::Inet(sa) => {
            let mut s = String::with_capacity(48);
            write!(s, "{sa}").ok();
            s
        }
        Endpoint::Unix { name, .. } => name.clone().unwrap_or_else(|| "*".into()),
        Endpoint::Packet { protocol, ifindex } => {
            let iface = if *ifindex == 0 {
                "*".to_string()
            } else {
                iface_name(*ifindex)
            };
            format!("{}:{iface}", ethertype_name(*protocol, false))
        }
        Endpoint::None => "*".into(),
    }
}

/// One socket as JSON.
pub fn record_json<'a>(
    r: &'a SocketRecord,
    owners: Option<&'a Owners>,
    style: &ListStyle,
) -> JsonSocket<'a> {
    let packet = matches!(r.netid, Netid::PacketRaw | Netid::PacketDgram);
    let unix = r.netid.is_unix();
    JsonSocket {
        details: style.extended.then_some(Details {
            cgroup_id: r.cgroup_id,
            cookie: r.cookie,
            fwmark: r.mark,
            inode: r.inode,
            shutdown: r.shutdown,
            uid: r.uid,
            v6only: r.v6only,
        }),
        dev: (r.ifindex != 0).then(|| iface_name(r.ifindex)),
        info: (style.info && r.netid != Netid::Udp).then(|| {
            r.tcp_info
                .as_deref()
                .map(|i| Info::new(i, r.congestion.as_deref()))
        }),
        inode: unix.then_some(r.inode),
        local: endpoint(&r.local),
        memory: style.memory.then(|| {
            r.skmem.as_ref().map(|m| {
                let v = |i: usize| m.get(i).copied();
                Memory {
                    backlog: v(7),
                    drops: v(8),
                    fwd_alloc: v(4),
                    optmem: v(6),
                    rcvbuf: v(1),
                    rmem_alloc: v(0),
                    sndbuf: v(3),
                    wmem_alloc: v(2),
                    wmem_queued: v(5),
                }
            })
        }),
        netid: r.netid.name(),
        netns: None,
        container: None,
        image: None,
        namespace: None,
        pod: None,
        peer: endpoint(&r.peer),
        peer_inode: unix.then_some(r.unix_peer),
        process: style.processes.then(|| {
            owners
                .map(|o| {
                    o.of(r.inode)
                        .iter()
                        .map(|p| Process {
                            comm: o.comm(p.pid),
                            fd: p.fd,
                            pid: p.pid,
                        })
                        .collect()
                })
                .unwrap_or_default()
        }),
        recv_q: r.recv_q,
        send_q: r.send_q,
        state: if packet {
            "UNCONN"
        } else {
            state_name(r.state)
        },
        timer: (style.timers || style.extended).then(|| {
            r.timer.map(|t| Timer {
                expires_ms: t.expires_ms,
                name: timer_name(t.kind),
                retrans: t.retrans,
            })
        }),
    }
}

/// A socket of another namespace: `netns` is its label.
pub fn record_json_in<'a>(
    r: &'a SocketRecord,
    netns: &'a super::list::NetnsLabel,
    owners: Option<&'a Owners>,
    style: &ListStyle,
) -> JsonSocket<'a> {
    JsonSocket {
        netns: Some(&netns.name),
        container: netns.workload.as_ref().and_then(|w| w.container.as_deref()),
        image: netns.workload.as_ref().and_then(|w| w.image.as_deref()),
        namespace: netns.workload.as_ref().and_then(|w| w.namespace.as_deref()),
        pod: netns.workload.as_ref().and_then(|w| w.pod.as_deref()),
        ..record_json(r, owners, style)
    }
}

/// Streams `[ {...}, ... ]`, one object per line.
pub struct JsonArray {
    started: bool,
}

impl JsonArray {
    pub fn new() -> Self {
        JsonArray { started: false }
    }

    pub fn push(
        &mut self,
        out: &mut impl Write,
        r: &SocketRecord,
        owners: Option<&Owners>,
        style: &ListStyle,
    ) -> io::Result<()> {
        out.write_all(if self.started { b",\n" } else { b"[\n" })?;
        self.started = true;
        serde_json::to_writer(&mut *out, &record_json(r, owners, style)).map_err(io::Error::from)
    }

    pub fn finish(self, out: &mut impl Write) -> io::Result<()> {
        out.write_all(if self.started { b"\n]\n" } else { b"[]\n" })
    }
}

impl Default for JsonArray {
    fn default() -> Self {
        Self::new()
    }
}
