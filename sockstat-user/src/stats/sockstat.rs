//! /proc/net/sockstat, sockstat6 and the TCP CurrEstab counter of /proc/net/snmp: the data
//! behind `ss -s`.
use std::{collections::HashMap, fs, io, path::Path};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SocketSummary {
    pub sockets_used: u64,
    pub tcp_inuse4: u64,
    pub tcp_inuse6: u64,
    pub tcp_orphan: u64,
    pub tcp_timewait: u64,
    pub tcp_alloc: u64,
    pub tcp_estab: u64,
    pub udp4: u64,
    pub udp6: u64,
    pub raw4: u64,
    pub raw6: u64,
    pub frag4: u64,
    pub frag6: u64,
}

/// `KEY: name value name value ...` lines into (KEY, name) -> value.
fn parse_pairs(text: &str) -> HashMap<(String, String), u64> {
    let mut m = HashMap::new();
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let words: Vec<&str> = rest.split_whitespace().collect();
        for pair in words.chunks(2) {
            if let [name, value] = pair
                && let Ok(v) = value.parse()
            {
                m.insert((key.to_string(), (*name).to_string()), v);
            }
        }
    }
    m
}

/// The value of `Tcp: CurrEstab` from /proc/net/snmp (a header line, then a value line).
fn snmp_value(text: &str, proto: &str, field: &str) -> Option<u64> {
    let prefix = format!("{proto}:");
    let mut lines = text.lines().filter(|l| l.starts_with(&prefix));
    let header = lines.next()?;
    let values = lines.next()?;
    let idx = header.split_whitespace().position(|h| h == field)?;
    values.split_whitespace().nth(idx)?.parse().ok()
}

pub fn read(proc_net: &Path) -> io::Result<SocketSummary> {
    let v4 = parse_pairs(&fs::read_to_string(proc_net.join("sockstat"))?);
    let v6 = parse_pairs(&fs::read_to_string(proc_net.join("sockstat6")).unwrap_or_default());
    let snmp = fs::read_to_string(proc_net.join("snmp")).unwrap_or_default();
    Ok(from_parts(&v4, &v6, &snmp))
}

fn from_parts(
    v4: &HashMap<(String, String), u64>,
    v6: &HashMap<(String, String), u64>,
    snmp: &str,
) -> SocketSummary {
    let get = |m: &HashMap<(String, String), u64>, k: &str, n: &str| {
        m.get(&(k.to_string(), n.to_string())).copied().unwrap_or(0)
    };
    SocketSummary {
        sockets_used: get(v4, "sockets", "used"),
        tcp_inuse4: get(v4, "TCP", "inuse"),
        tcp_inuse6: get(v6, "TCP6", "inuse"),
        tcp_orphan: get(v4, "TCP", "orphan"),
        tcp_timewait: get(v4, "TCP", "tw"),
        tcp_alloc: get(v4, "TCP", "alloc"),
        tcp_estab: snmp_value(snmp, "Tcp", "CurrEstab").unwrap_or(0),
        udp4: get(v4, "UDP", "inuse"),
        udp6: get(v6, "UDP6", "inuse"),
        raw4: get(v4, "RAW", "inuse"),
        raw6: get(v6, "RAW6", "inuse"),
        frag4: get(v4, "FRAG", "inuse"),
        frag6: get(v6, "FRAG6", "inuse"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_proc_files() {
        let v4 = parse_pairs(
            "sockets: used 49\nTCP: inuse 14 orphan 0 tw 8 alloc 19 mem 3\nUDP: inuse 3 mem 2\nUDPLITE: inuse 0\nRAW: inuse 2\nFRAG: inuse 0 memory 0\n",
        );
        let v6 = parse_pairs(
            "TCP6: inuse 5\nUDP6: inuse 2\nUDPLITE6: inuse 0\nRAW6: inuse 1\nFRAG6: inuse 0 memory 0\n",
        );
        let snmp = "Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails EstabResets CurrEstab InSegs\nTcp: 1 200 120000 -1 10 5 0 0 11 100\n";
        let s = from_parts(&v4, &v6, snmp);
        assert_eq!(s.sockets_used, 49);
        assert_eq!(
            (s.tcp_inuse4, s.tcp_inuse6, s.tcp_timewait, s.tcp_alloc),
            (14, 5, 8, 19)
        );
        assert_eq!(s.tcp_estab, 11);
        assert_eq!((s.raw4, s.raw6, s.udp4, s.udp6), (2, 1, 3, 2));
    }
}
