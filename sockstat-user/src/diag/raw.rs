//! Raw sockets from /proc/net/raw and raw6: this kernel has no RAW sock_diag.
use std::{
    fs, io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::Path,
};

use super::record::{Netid, SocketRecord};

/// Reads `dir/raw` (v4) and/or `dir/raw6` (v6); `dir` is `/proc/net` or a thread's net dir.
pub fn read(dir: &Path, v4: bool, v6: bool) -> io::Result<Vec<SocketRecord>> {
    let mut out = Vec::new();
    if v4 {
        out.extend(parse(&fs::read_to_string(dir.join("raw"))?, false));
    }
    if v6 {
        out.extend(parse(&fs::read_to_string(dir.join("raw6"))?, true));
    }
    Ok(out)
}

/// Lines: `sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...`.
pub fn parse(text: &str, v6: bool) -> Vec<SocketRecord> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 {
                return None;
            }
            let local = addr(f[1], v6)?;
            let peer = addr(f[2], v6)?;
            let state = u8::from_str_radix(f[3], 16).ok()?;
            let (tx, rx) = f[4].split_once(':')?;
            let mut r = SocketRecord::inet(Netid::Raw, state, local, peer);
            r.send_q = u32::from_str_radix(tx, 16).ok()?;
            r.recv_q = u32::from_str_radix(rx, 16).ok()?;
            r.uid = f[7].parse().ok()?;
            r.inode = f[9].parse().ok()?;
            Some(r)
        })
        .collect()
}

/// `0100007F:0001` (v4: one host-order word) or 32 hex digits of four host-order words (v6).
fn addr(s: &str, v6: bool) -> Option<SocketAddr> {
    let (a, p) = s.split_once(':')?;
    let port = u16::from_str_radix(p, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        Some(
            u32::from_str_radix(a.get(i * 8..i * 8 + 8)?, 16)
                .ok()?
                .to_ne_bytes(),
        )
    };
    let ip = if v6 {
        let mut o = [0u8; 16];
        for i in 0..4 {
            o[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
        }
        IpAddr::V6(Ipv6Addr::from(o))
    } else {
        IpAddr::V4(Ipv4Addr::from(word(0)?))
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net_raw() {
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
                  1: 00000000:0001 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 33580 2 0000000000000000 0\n";
        let r = parse(v4, false);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].local.port(), 1);
        assert_eq!(r[0].state, 7);
        assert_eq!(r[0].inode, 33580);
        let v6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
                  58: 00000000000000000000000001000000:003A 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 33581 2 0000000000000000 0\n";
        let r = parse(v6, true);
        assert_eq!(
            r[0].local,
            crate::diag::record::Endpoint::Inet("[::1]:58".parse().unwrap())
        );
    }
}
