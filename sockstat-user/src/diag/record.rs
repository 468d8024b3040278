//! The socket record every collector produces and every later stage consumes. Defined once.
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Socket table, spelled as ss's Netid column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Netid {
    Tcp,
    Udp,
    Raw,
    Mptcp,
    UnixStream,
    UnixDgram,
    UnixSeqpacket,
    PacketRaw,
    PacketDgram,
}

impl Netid {
    pub fn name(self) -> &'static str {
        match self {
            Netid::Tcp => "tcp",
            Netid::Udp => "udp",
            Netid::Raw => "raw",
            Netid::Mptcp => "mptcp",
            Netid::UnixStream => "u_str",
            Netid::UnixDgram => "u_dgr",
            Netid::UnixSeqpacket => "u_seq",
            Netid::PacketRaw => "p_raw",
            Netid::PacketDgram => "p_dgr",
        }
    }

    pub fn is_inet(self) -> bool {
        matches!(self, Netid::Tcp | Netid::Udp | Netid::Raw | Netid::Mptcp)
    }

    pub fn is_unix(self) -> bool {
        matches!(
            self,
            Netid::UnixStream | Netid::UnixDgram | Netid::UnixSeqpacket
        )
    }
}

/// One end of a socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// inet: address and port (for raw sockets the port is the IP protocol).
    Inet(SocketAddr),
    /// unix: the bound path (abstract names start with `@`), and the socket's inode.
    Unix { name: Option<String>, inode: u32 },
    /// packet: ethertype (host order) and interface index.
    Packet { protocol: u16, ifindex: u32 },
    /// packet sockets have no peer.
    None,
}

impl Endpoint {
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Endpoint::Inet(sa) => Some(sa.ip()),
            _ => None,
        }
    }

    pub fn port(&self) -> u16 {
        match self {
            Endpoint::Inet(sa) => sa.port(),
            _ => 0,
        }
    }
}

/// `idiag_timer` and friends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timer {
    /// 1 on (retransmit), 2 keepalive, 3 timewait, 4 persist (kernel numbering).
    pub kind: u8,
    pub expires_ms: u32,
    pub retrans: u8,
}

/// Everything sock_diag (or /proc) told us about one socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketRecord {
    pub netid: Netid,
    /// Kernel state number (TCP numbering; 7 = CLOSE/UNCONN).
    pub state: u8,
    pub recv_q: u32,
    pub send_q: u32,
    pub local: Endpoint,
    pub peer: Endpoint,
    /// `sk_bound_dev_if` (inet) or 0.
    pub ifindex: u32,
    pub inode: u32,
    pub uid: u32,
    /// Socket cookie (`sk:` in ss -e), 0 when unknown.
    pub cookie: u64,
    pub v6only: Option<bool>,
    pub timer: Option<Timer>,
    /// INET_DIAG_SHUTDOWN / UNIX_DIAG_SHUTDOWN bits (1 = no more receives, 2 = no more sends).
    pub shutdown: Option<u8>,
    pub mark: Option<u32>,
    pub cgroup_id: Option<u64>,
    /// SK_MEMINFO_* values, as many as the kernel sent.
    pub skmem: Option<Vec<u32>>,
    pub tcp_info: Option<Box<super::tcp_info::TcpInfo>>,
    pub congestion: Option<String>,
    /// unix: inode of the peer (0 if none); listeners: inodes of pending connections.
    pub unix_peer: u32,
    pub unix_pending: Vec<u32>,
    /// unix: (device, inode) of a bound path.
    pub unix_vfs: Option<(u32, u32)>,
    /// packet: extra details for `-e` (version, copy threshold, flags bits).
    pub packet_info: Option<PacketInfo>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketInfo {
    pub version: u32,
    pub copy_thresh: u32,
    pub flags: u32,
}

impl SocketRecord {
    /// An empty inet record, for builders and tests.
    pub fn inet(netid: Netid, state: u8, local: SocketAddr, peer: SocketAddr) -> Self {
        SocketRecord {
            netid,
            state,
            recv_q: 0,
            send_q: 0,
            local: Endpoint::Inet(local),
            peer: Endpoint::Inet(peer),
            ifindex: 0,
            inode: 0,
            uid: 0,
            cookie: 0,
            v6only: None,
            timer: None,
            shutdown: None,
            mark: None,
            cgroup_id: None,
            skmem: None,
            tcp_info: None,
            congestion: None,
            unix_peer: 0,
            unix_pending: Vec::new(),
            unix_vfs: None,
            packet_info: None,
        }
    }

    pub fn unspecified_v4() -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)
    }
}
