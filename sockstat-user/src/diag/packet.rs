//! packet_diag: AF_PACKET sockets (include/uapi/linux/packet_diag.h).
use super::{
    netlink::{DiagError, DiagSocket, SOCK_DIAG_BY_FAMILY, Sink, attrs, u32_at},
    record::{Endpoint, Netid, PacketInfo, SocketRecord},
};

const AF_PACKET: u8 = 17;
const MSG_LEN: usize = 16;
const PACKET_SHOW_INFO: u32 = 0x01;
const PACKET_SHOW_MEMINFO: u32 = 0x10;
const PACKET_DIAG_INFO: u16 = 0;
const PACKET_DIAG_UID: u16 = 5;
const PACKET_DIAG_MEMINFO: u16 = 6;
const SOCK_RAW: u8 = 3;

pub fn dump(
    sock: &mut DiagSocket,
    raw: bool,
    dgram: bool,
    out: &mut dyn Sink<SocketRecord>,
) -> Result<(), DiagError> {
    let mut body = Vec::with_capacity(20);
    // The protocol byte must be 0 or the kernel answers EINVAL.
    body.extend_from_slice(&[AF_PACKET, 0, 0, 0]);
    body.extend_from_slice(&0u32.to_ne_bytes());
    body.extend_from_slice(&(PACKET_SHOW_INFO | PACKET_SHOW_MEMINFO).to_ne_bytes());
    body.extend_from_slice(&[0xff; 8]);
    sock.dump("packet", SOCK_DIAG_BY_FAMILY, &body, out, |payload| {
        let r = parse(payload)?;
        let keep = (r.netid == Netid::PacketRaw && raw) || (r.netid == Netid::PacketDgram && dgram);
        Ok(keep.then_some(r))
    })
}

pub fn parse(b: &[u8]) -> Result<SocketRecord, DiagError> {
    if b.len() < MSG_LEN {
        return Err(DiagError::Malformed(format!(
            "packet_diag_msg of {} bytes",
            b.len()
        )));
    }
    let netid = if b[1] == SOCK_RAW {
        Netid::PacketRaw
    } else {
        Netid::PacketDgram
    };
    // `pdiag_num` is the protocol in host order.
    let protocol = u16::from_ne_bytes([b[2], b[3]]);
    let mut r = SocketRecord::inet(
        netid,
        7,
        SocketRecord::unspecified_v4(),
        SocketRecord::unspecified_v4(),
    );
    r.inode = u32_at(b, 4);
    r.cookie = (u64::from(u32_at(b, 12)) << 32) | u64::from(u32_at(b, 8));
    let mut ifindex = 0;
    for attr in attrs(&b[MSG_LEN..]) {
        let (kind, v) = attr?;
        match kind {
            PACKET_DIAG_INFO if v.len() >= 24 => {
                ifindex = u32_at(v, 0);
                r.packet_info = Some(PacketInfo {
                    version: u32_at(v, 4),
                    copy_thresh: u32_at(v, 12),
                    flags: u32_at(v, 20),
                });
            }
            PACKET_DIAG_UID if v.len() >= 4 => r.uid = u32_at(v, 0),
            PACKET_DIAG_MEMINFO => {
                let m: Vec<u32> = v.chunks_exact(4).map(|c| u32_at(c, 0)).collect();
                r.recv_q = m.first().copied().unwrap_or(0);
                r.skmem = Some(m);
            }
            _ => {}
        }
    }
    r.local = Endpoint::Packet { protocol, ifindex };
    r.peer = Endpoint::None;
    Ok(r)
}
