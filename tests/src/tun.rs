//! A TCP peer on a TUN device: the test writes the peer's IPv4 segments itself, so it can
//! send what no socket would (a bad checksum, a sequence number outside the window) and
//! make the kernel drop them for a reason the test knows. A TUN device hands written
//! packets to the stack with no checksum offload claimed (`CHECKSUM_NONE`), so the kernel
//! verifies every checksum, unlike loopback or a veth.
//!
//! The headers are built here rather than with a packet crate: two fixed 20-byte headers
//! and the Internet checksum are all a test needs.
use std::{
    fs::File,
    io::{Read, Write},
    net::Ipv4Addr,
    os::fd::{AsRawFd, FromRawFd},
    time::{Duration, Instant},
};

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_PSH: u8 = 0x08;
pub const TCP_ACK: u8 = 0x10;

/// One IPv4 TCP segment, as sent or read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub src: (Ipv4Addr, u16),
    pub dst: (Ipv4Addr, u16),
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
}

/// The TUN device (open in the namespace it was created in) and its addresses: the host's
/// end is `local`, the peer the test plays is `peer`.
pub struct TunPeer {
    file: File,
    pub local: Ipv4Addr,
    pub peer: Ipv4Addr,
}

impl TunPeer {
    /// Creates the device `name` in the current network namespace (call it inside
    /// `NamedNetns::within`); the caller gives it `local` and brings it up.
    pub fn create(name: &str, local: Ipv4Addr, peer: Ipv4Addr) -> std::io::Result<TunPeer> {
        // SAFETY: a plain open(2) of a path we pass as a NUL-terminated string.
        let fd = unsafe {
            libc::open(
                c"/dev/net/tun".as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fd is ours, just opened.
        let file = unsafe { File::from_raw_fd(fd) };
        // struct ifreq: the name, then the flags (IFF_TUN | IFF_NO_PI) in the union.
        let mut ifreq = [0u8; 40];
        ifreq[..name.len().min(15)].copy_from_slice(&name.as_bytes()[..name.len().min(15)]);
        let flags: i16 = (libc::IFF_TUN | libc::IFF_NO_PI) as i16;
        ifreq[16..18].copy_from_slice(&flags.to_ne_bytes());
        // SAFETY: TUNSETIFF reads and writes a struct ifreq, which `ifreq` is sized for.
        if unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, ifreq.as_mut_ptr()) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(TunPeer { file, local, peer })
    }

    /// A device named `name` in `ns`, `local`/24 on the host's side, up; the peer is
    /// `peer`.
    pub fn in_netns(
        ns: &crate::NamedNetns,
        name: &str,
        local: Ipv4Addr,
        peer: Ipv4Addr,
    ) -> Result<TunPeer, String> {
        let tun = ns
            .within(|| TunPeer::create(name, local, peer))?
            .map_err(|e| format!("TUN device: {e}"))?;
        ns.ip(&["addr", "add", &format!("{local}/24"), "dev", name])?;
        ns.ip(&["link", "set", name, "up"])?;
        Ok(tun)
    }

    /// Connects from `peer_port` to a listener on `port`, then sends three segments the
    /// kernel drops: one far beyond the window (`tcp-invalid-sequence`), one with a bad
    /// checksum (`tcp-csum`), and a SYN to `port + 1`, where nothing listens
    /// (`no-socket`). The data segments carry PSH and ACK.
    pub fn provoke_drops(&mut self, peer_port: u16, port: u16) -> std::io::Result<()> {
        let (next, theirs) = self.handshake(peer_port, port)?;
        let data = |seq: u32| Segment {
            src: (self.peer, peer_port),
            dst: (self.local, port),
            seq,
            ack: theirs,
            flags: TCP_ACK | TCP_PSH,
        };
        let (beyond, bad_sum) = (data(next.wrapping_add(2_000_000_000)), data(next));
        let closed = Segment {
            src: (self.peer, peer_port + 1),
            dst: (self.local, port + 1),
            seq: 1,
            ack: 0,
            flags: TCP_SYN,
        };
        self.send(&beyond, b"x", false)?;
        self.send(&bad_sum, b"y", true)?;
        self.send(&closed, &[], false)
    }

    /// Writes one segment from the peer (with `payload`); `bad_checksum` spoils its TCP
    /// checksum.
    pub fn send(
        &mut self,
        seg: &Segment,
        payload: &[u8],
        bad_checksum: bool,
    ) -> std::io::Result<()> {
        let packet = build(seg, payload, bad_checksum);
        self.file.write_all(&packet)
    }

    /// The next TCP segment the host sends that `pred` accepts, within `timeout`; other
    /// packets (IPv6 chatter, ARP-less probes) are skipped.
    pub fn recv(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&Segment) -> bool,
    ) -> std::io::Result<Option<Segment>> {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 2048];
        while Instant::now() < deadline {
            match self.file.read(&mut buf) {
                Ok(n) => {
                    if let Some(seg) = parse(&buf[..n])
                        && pred(&seg)
                    {
                        return Ok(Some(seg));
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// The three-way handshake with a listener on `port`, from the peer's `peer_port`: the
    /// peer's next sequence number and the host's, once established.
    pub fn handshake(&mut self, peer_port: u16, port: u16) -> std::io::Result<(u32, u32)> {
        self.handshake_after(peer_port, port, Duration::ZERO)
    }

    /// `handshake`, with the final ACK sent `ack_delay` after the SYN-ACK came: a peer that
    /// far away, as the listener measures it.
    pub fn handshake_after(
        &mut self,
        peer_port: u16,
        port: u16,
        ack_delay: Duration,
    ) -> std::io::Result<(u32, u32)> {
        let isn = 1_000_000;
        let syn = Segment {
            src: (self.peer, peer_port),
            dst: (self.local, port),
            seq: isn,
            ack: 0,
            flags: TCP_SYN,
        };
        self.send(&syn, &[], false)?;
        let peer = self.peer;
        let synack = self
            .recv(Duration::from_secs(5), |s| {
                s.dst == (peer, peer_port) && s.flags & (TCP_SYN | TCP_ACK) == TCP_SYN | TCP_ACK
            })?
            .ok_or_else(|| std::io::Error::other("no SYN-ACK from the listener"))?;
        let (ours, theirs) = (isn.wrapping_add(1), synack.seq.wrapping_add(1));
        let ack = Segment {
            src: (self.peer, peer_port),
            dst: (self.local, port),
            seq: ours,
            ack: theirs,
            flags: TCP_ACK,
        };
        std::thread::sleep(ack_delay);
        self.send(&ack, &[], false)?;
        Ok((ours, theirs))
    }
}

/// An IPv4 + TCP packet (no options).
fn build(seg: &Segment, payload: &[u8], bad_checksum: bool) -> Vec<u8> {
    let total = 40 + payload.len();
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[6] = 0x40; // don't fragment
    p[8] = 64;
    p[9] = 6;
    p[12..16].copy_from_slice(&seg.src.0.octets());
    p[16..20].copy_from_slice(&seg.dst.0.octets());
    let ip_sum = checksum(&p[..20], 0);
    p[10..12].copy_from_slice(&ip_sum.to_be_bytes());
    let t = &mut p[20..];
    t[0..2].copy_from_slice(&seg.src.1.to_be_bytes());
    t[2..4].copy_from_slice(&seg.dst.1.to_be_bytes());
    t[4..8].copy_from_slice(&seg.seq.to_be_bytes());
    t[8..12].copy_from_slice(&seg.ack.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = seg.flags;
    t[14..16].copy_from_slice(&65535u16.to_be_bytes());
    t[20..].copy_from_slice(payload);
    // The pseudo-header: addresses, protocol, TCP length.
    let mut pseudo = 0u32;
    for chunk in [seg.src.0.octets(), seg.dst.0.octets()] {
        pseudo += u32::from(u16::from_be_bytes([chunk[0], chunk[1]]));
        pseudo += u32::from(u16::from_be_bytes([chunk[2], chunk[3]]));
    }
    pseudo += 6 + (20 + payload.len()) as u32;
    let mut sum = checksum(&p[20..], pseudo);
    if bad_checksum {
        sum ^= 0x5555;
    }
    p[36..38].copy_from_slice(&sum.to_be_bytes());
    p
}

/// The Internet checksum of `data`, starting from a partial sum.
fn checksum(data: &[u8], initial: u32) -> u16 {
    let mut sum = initial;
    for pair in data.chunks(2) {
        let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn parse(p: &[u8]) -> Option<Segment> {
    if p.len() < 40 || p[0] >> 4 != 4 || p[9] != 6 {
        return None;
    }
    let ihl = usize::from(p[0] & 0xf) * 4;
    let t = p.get(ihl..ihl + 20)?;
    let ip = |o: usize| Ipv4Addr::new(p[o], p[o + 1], p[o + 2], p[o + 3]);
    let be16 = |o: usize| u16::from_be_bytes([t[o], t[o + 1]]);
    let be32 = |o: usize| u32::from_be_bytes([t[o], t[o + 1], t[o + 2], t[o + 3]]);
    Some(Segment {
        src: (ip(12), be16(0)),
        dst: (ip(16), be16(2)),
        seq: be32(4),
        ack: be32(8),
        flags: t[13],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_built_segment_parses_back_and_checks_out() {
        let seg = Segment {
            src: (Ipv4Addr::new(10, 0, 0, 2), 40000),
            dst: (Ipv4Addr::new(10, 0, 0, 1), 80),
            seq: 7,
            ack: 9,
            flags: TCP_ACK | TCP_PSH,
        };
        let p = build(&seg, b"abc", false);
        assert_eq!(parse(&p), Some(seg));
        assert_eq!(checksum(&p[..20], 0), 0, "the IP header sums to zero");
        let bad = build(&seg, b"abc", true);
        assert_ne!(p[36..38], bad[36..38]);
    }
}
