//! `-s`: ss's summary block (its tabs and column widths, without the trailing spaces at the
//! ends of lines, as iproute2 7.x), or JSON.
use std::io::{self, Write};

use crate::stats::sockstat::SocketSummary;

pub fn write_text(out: &mut impl Write, s: &SocketSummary) -> io::Result<()> {
    let closed = s.tcp_alloc as i64 - (s.tcp_inuse4 + s.tcp_inuse6) as i64 + s.tcp_timewait as i64;
    writeln!(out, "Total: {}", s.sockets_used)?;
    writeln!(
        out,
        "TCP:   {} (estab {}, closed {}, orphaned {}, timewait {})",
        s.tcp_alloc + s.tcp_timewait,
        s.tcp_estab,
        closed,
        s.tcp_orphan,
        s.tcp_timewait
    )?;
    writeln!(out)?;
    writeln!(out, "Transport Total     IP        IPv6")?;
    let tcp4 = s.tcp_inuse4;
    let tcp6 = s.tcp_inuse6;
    let rows = [
        ("RAW", s.raw4, s.raw6),
        ("UDP", s.udp4, s.udp6),
        ("TCP", tcp4, tcp6),
        ("INET", s.raw4 + s.udp4 + tcp4, s.raw6 + s.udp6 + tcp6),
        ("FRAG", s.frag4, s.frag6),
    ];
    for (name, v4, v6) in rows {
        writeln!(out, "{name}\t  {:<9} {:<9} {v6}", v4 + v6, v4)?;
    }
    writeln!(out)
}

pub fn write_json(out: &mut impl Write, s: &SocketSummary) -> io::Result<()> {
    let closed = s.tcp_alloc as i64 - (s.tcp_inuse4 + s.tcp_inuse6) as i64 + s.tcp_timewait as i64;
    let v = serde_json::json!({
        "total": s.sockets_used,
        "tcp": {
            "total": s.tcp_alloc + s.tcp_timewait,
            "estab": s.tcp_estab,
            "closed": closed,
            "orphaned": s.tcp_orphan,
            "timewait": s.tcp_timewait,
        },
        "transport": {
            "raw": {"total": s.raw4 + s.raw6, "ip": s.raw4, "ipv6": s.raw6},
            "udp": {"total": s.udp4 + s.udp6, "ip": s.udp4, "ipv6": s.udp6},
            "tcp": {"total": s.tcp_inuse4 + s.tcp_inuse6, "ip": s.tcp_inuse4, "ipv6": s.tcp_inuse6},
            "inet": {
                "total": s.raw4 + s.raw6 + s.udp4 + s.udp6 + s.tcp_inuse4 + s.tcp_inuse6,
                "ip": s.raw4 + s.udp4 + s.tcp_inuse4,
                "ipv6": s.raw6 + s.udp6 + s.tcp_inuse6,
            },
            "frag": {"total": s.frag4 + s.frag6, "ip": s.frag4, "ipv6": s.frag6},
        },
    });
    serde_json::to_writer_pretty(&mut *out, &v).map_err(io::Error::from)?;
    writeln!(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_summary() {
        let s = SocketSummary {
            sockets_used: 49,
            tcp_inuse4: 14,
            tcp_inuse6: 5,
            tcp_orphan: 0,
            tcp_timewait: 8,
            tcp_alloc: 19,
            tcp_estab: 11,
            udp4: 3,
            udp6: 2,
            raw4: 2,
            raw6: 1,
            frag4: 0,
            frag6: 0,
        };
        let mut out = Vec::new();
        write_text(&mut out, &s).unwrap();
        let expected = "Total: 49\nTCP:   27 (estab 11, closed 8, orphaned 0, timewait 8)\n\nTransport Total     IP        IPv6\nRAW\t  3         2         1\nUDP\t  5         3         2\nTCP\t  19        14        5\nINET\t  27        19        8\nFRAG\t  0         0         0\n\n";
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }
}
