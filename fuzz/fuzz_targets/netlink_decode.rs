//! Any bytes as a sock_diag datagram: framing, then inet/unix/packet replies. Never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockstat::diag::{inet, netlink, packet, record::Netid, unix};

fuzz_target!(|data: &[u8]| {
    let _ = netlink::walk_datagram(data, 0, netlink::SOCK_DIAG_BY_FAMILY, "fuzz", &mut |p| {
        let _ = inet::parse(p, Netid::Tcp);
        let _ = unix::parse(p);
        let _ = packet::parse(p);
        Ok(())
    });
    let _ = inet::parse(data, Netid::Udp);
    let _ = unix::parse(data);
    let _ = packet::parse(data);
});
