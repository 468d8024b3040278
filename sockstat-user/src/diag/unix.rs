//! unix_diag: unix-domain sockets (include/uapi/linux/unix_diag.h).
use super::{
    netlink::{DiagError, DiagSocket, SOCK_DIAG_BY_FAMILY, Sink, attrs, u32_at},
    record::{Endpoint, Netid, SocketRecord},
};

const AF_UNIX: u8 = 1;
const MSG_LEN: usize = 16;

const UDIAG_SHOW_NAME: u32 = 0x01;
const UDIAG_SHOW_VFS: u32 = 0x02;
const UDIAG_SHOW_PEER: u32 = 0x04;
const UDIAG_SHOW_ICONS: u32 = 0x08;
const UDIAG_SHOW_RQLEN: u32 = 0x10;
const UDIAG_SHOW_MEMINFO: u32 = 0x20;
const UDIAG_SHOW_UID: u32 = 0x40;

const UNIX_DIAG_NAME: u16 = 0;
const UNIX_DIAG_VFS: u16 = 1;
const UNIX_DIAG_PEER: u16 = 2;
const UNIX_DIAG_ICONS: u16 = 3;
const UNIX_DIAG_RQLEN: u16 = 4;
const UNIX_DIAG_MEMINFO: u16 = 5;
const UNIX_DIAG_SHUTDOWN: u16 = 6;
const UNIX_DIAG_UID: u16 = 7;

const SOCK_STREAM: u8 = 1;
const SOCK_DGRAM: u8 = 2;
const SOCK_SEQPACKET: u8 = 5;

pub fn request_body(states: u32, memory: bool) -> Vec<u8> {
    let mut show = UDIAG_SHOW_NAME
        | UDIAG_SHOW_VFS
        | UDIAG_SHOW_PEER
        | UDIAG_SHOW_ICONS
        | UDIAG_SHOW_RQLEN
        | UDIAG_SHOW_UID;
    if memory {
        show |= UDIAG_SHOW_MEMINFO;
    }
    let mut b = Vec::with_capacity(24);
    b.push(AF_UNIX);
    b.push(0);
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(&states.to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes());
    b.extend_from_slice(&show.to_ne_bytes());
    b.extend_from_slice(&[0xff; 8]);
    b
}

/// Which unix socket types to keep.
#[derive(Clone, Copy, Debug, Default)]
pub struct UnixTypes {
    pub stream: bool,
    pub dgram: bool,
    pub seqpacket: bool,
}

pub fn dump(
    sock: &mut DiagSocket,
    states: u32,
    types: UnixTypes,
    memory: bool,
    out: &mut dyn Sink<SocketRecord>,
) -> Result<(), DiagError> {
    let body = request_body(states, memory);
    sock.dump("unix", SOCK_DIAG_BY_FAMILY, &body, out, |payload| {
        let r = parse(payload)?;
        let keep = match r.netid {
            Netid::UnixStream => types.stream,
            Netid::UnixDgram => types.dgram,
            _ => types.seqpacket,
        };
        Ok(keep.then_some(r))
    })
}

pub fn parse(b: &[u8]) -> Result<SocketRecord, DiagError> {
    if b.len() < MSG_LEN {
        return Err(DiagError::Malformed(format!(
            "unix_diag_msg of {} bytes",
            b.len()
        )));
    }
    let netid = match b[1] {
        SOCK_STREAM => Netid::UnixStream,
        SOCK_SEQPACKET => Netid::UnixSeqpacket,
        SOCK_DGRAM => Netid::UnixDgram,
        _ => Netid::UnixDgram,
    };
    let inode = u32_at(b, 4);
    let mut r = SocketRecord::inet(
        netid,
        b[2],
        SocketRecord::unspecified_v4(),
        SocketRecord::unspecified_v4(),
    );
    r.inode = inode;
    r.cookie = (u64::from(u32_at(b, 12)) << 32) | u64::from(u32_at(b, 8));
    let mut name = None;
    for attr in attrs(&b[MSG_LEN..]) {
        let (kind, v) = attr?;
        match kind {
            UNIX_DIAG_NAME => name = Some(unix_name(v)),
            UNIX_DIAG_VFS if v.len() >= 8 => r.unix_vfs = Some((u32_at(v, 4), u32_at(v, 0))),
            UNIX_DIAG_PEER if v.len() >= 4 => r.unix_peer = u32_at(v, 0),
            UNIX_DIAG_ICONS => r.unix_pending = v.chunks_exact(4).map(|c| u32_at(c, 0)).collect(),
            UNIX_DIAG_RQLEN if v.len() >= 8 => {
                r.recv_q = u32_at(v, 0);
                r.send_q = u32_at(v, 4);
            }
            UNIX_DIAG_MEMINFO => r.skmem = Some(v.chunks_exact(4).map(|c| u32_at(c, 0)).collect()),
            UNIX_DIAG_SHUTDOWN if !v.is_empty() => r.shutdown = Some(v[0]),
            UNIX_DIAG_UID if v.len() >= 4 => r.uid = u32_at(v, 0),
            _ => {}
        }
    }
    r.local = Endpoint::Unix { name, inode };
    r.peer = Endpoint::Unix {
        name: None,
        inode: r.unix_peer,
    };
    Ok(r)
}

/// A path name (NUL padding removed), or an abstract name with every NUL shown as `@`.
fn unix_name(v: &[u8]) -> String {
    if v.first() == Some(&0) {
        v.iter()
            .map(|&c| if c == 0 { '@' } else { c as char })
            .collect::<String>()
    } else {
        let end = v.iter().position(|&c| c == 0).unwrap_or(v.len());
        String::from_utf8_lossy(&v[..end]).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::netlink::push_attr;

    #[test]
    fn names_and_queues() {
        let mut m = vec![0u8; MSG_LEN];
        m[0] = AF_UNIX;
        m[1] = SOCK_STREAM;
        m[2] = 10;
        m[4..8].copy_from_slice(&4242u32.to_ne_bytes());
        push_attr(&mut m, UNIX_DIAG_NAME, b"\0abstract");
        let mut rq = 3u32.to_ne_bytes().to_vec();
        rq.extend_from_slice(&128u32.to_ne_bytes());
        push_attr(&mut m, UNIX_DIAG_RQLEN, &rq);
        let r = parse(&m).unwrap();
        assert_eq!(r.netid, Netid::UnixStream);
        assert_eq!(
            r.local,
            Endpoint::Unix {
                name: Some("@abstract".into()),
                inode: 4242
            }
        );
        assert_eq!((r.recv_q, r.send_q), (3, 128));
        assert_eq!(unix_name(b"/run/x.sock\0"), "/run/x.sock");
    }
}
