//! The kernel's protocol counters, as `netstat -s` shows them: /proc/net/snmp and
//! /proc/net/netstat (pairs of "Group: names" / "Group: values" lines) and /proc/net/snmp6
//! ("Ip6InReceives 12" lines, grouped by prefix).
use std::path::Path;

/// Counters by group, in file order: ("Tcp", [("ActiveOpens", 12), ...]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Counters {
    pub groups: Vec<(String, Vec<(String, i64)>)>,
}

#[derive(Debug, thiserror::Error)]
pub enum SnmpError {
    #[error("reading {path}: {err}")]
    Read { path: String, err: std::io::Error },
    #[error("{path}: line {line}: {why}")]
    Format {
        path: String,
        line: usize,
        why: &'static str,
    },
}

impl Counters {
    pub fn get(&self, group: &str, name: &str) -> Option<i64> {
        self.groups
            .iter()
            .find(|(g, _)| g == group)?
            .1
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
    }

    fn group_mut(&mut self, group: &str) -> &mut Vec<(String, i64)> {
        if let Some(i) = self.groups.iter().position(|(g, _)| g == group) {
            return &mut self.groups[i].1;
        }
        self.groups.push((group.to_string(), Vec::new()));
        let last = self.groups.len() - 1;
        &mut self.groups[last].1
    }
}

/// Reads snmp, netstat and snmp6 under `proc_net` (/proc/net, or a namespace's).
pub fn read(proc_net: &Path) -> Result<Counters, SnmpError> {
    let mut c = Counters::default();
    for file in ["snmp", "netstat"] {
        let path = proc_net.join(file);
        let text = std::fs::read_to_string(&path).map_err(|err| SnmpError::Read {
            path: path.display().to_string(),
            err,
        })?;
        parse_paired(&text, &path.display().to_string(), &mut c)?;
    }
    // IPv6 may be disabled: no snmp6 is not an error.
    if let Ok(text) = std::fs::read_to_string(proc_net.join("snmp6")) {
        parse_snmp6(&text, &mut c);
    }
    Ok(c)
}

pub fn parse_paired(text: &str, path: &str, c: &mut Counters) -> Result<(), SnmpError> {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let bad = |line, why| SnmpError::Format {
        path: path.to_string(),
        line,
        why,
    };
    for (i, pair) in lines.chunks(2).enumerate() {
        let [head, values] = pair else {
            return Err(bad(i * 2 + 1, "a header line without its values"));
        };
        let (Some((g1, names)), Some((g2, vals))) = (head.split_once(':'), values.split_once(':'))
        else {
            return Err(bad(i * 2 + 1, "no \"Group:\" prefix"));
        };
        if g1 != g2 {
            return Err(bad(i * 2 + 2, "values for another group"));
        }
        let names: Vec<&str> = names.split_whitespace().collect();
        let vals: Vec<&str> = vals.split_whitespace().collect();
        if names.len() != vals.len() {
            return Err(bad(i * 2 + 2, "as many values as names expected"));
        }
        let group = c.group_mut(g1);
        for (n, v) in names.iter().zip(vals) {
            let v: i64 = v
                .parse()
                .map_err(|_| bad(i * 2 + 2, "a value is not a number"))?;
            group.push((n.to_string(), v));
        }
    }
    Ok(())
}

pub fn parse_snmp6(text: &str, c: &mut Counters) {
    for line in text.lines() {
        let mut w = line.split_whitespace();
        let (Some(name), Some(value)) = (w.next(), w.next()) else {
            continue;
        };
        let Ok(value) = value.parse::<i64>() else {
            continue;
        };
        // Ip6InReceives -> (Ip6, InReceives); UdpLite6InErrors -> (UdpLite6, InErrors).
        let split = name
            .find('6')
            .map(|i| i + 1)
            .filter(|&i| i < name.len())
            .unwrap_or(0);
        let (group, rest) = name.split_at(split);
        let group = if group.is_empty() { "Ip6" } else { group };
        c.group_mut(group).push((rest.to_string(), value));
    }
}

/// Counters that are levels, not running totals: shown as they are in `--interval` mode.
pub fn is_gauge(group: &str, name: &str) -> bool {
    matches!(
        (group, name),
        ("Ip", "Forwarding" | "DefaultTTL")
            | (
                "Tcp",
                "RtoAlgorithm" | "RtoMin" | "RtoMax" | "MaxConn" | "CurrEstab"
            )
    )
}

/// netstat -s's wording for the counters people look for; other names are split into
/// words ("ListenOverflows" -> "listen overflows").
pub fn describe(group: &str, name: &str) -> String {
    let known = match (group, name) {
        ("Ip", "Forwarding") => "forwarding (1 = on, 2 = off)",
        ("Ip", "InReceives") => "total packets received",
        ("Ip", "InAddrErrors") => "with invalid addresses",
        ("Ip", "ForwDatagrams") => "forwarded",
        ("Ip", "InDiscards") => "incoming packets discarded",
        ("Ip", "InDelivers") => "incoming packets delivered",
        ("Ip", "OutRequests") => "requests sent out",
        ("Ip", "OutDiscards") => "outgoing packets dropped",
        ("Ip", "OutNoRoutes") => "dropped because of missing route",
        ("Icmp", "InMsgs") => "ICMP messages received",
        ("Icmp", "InErrors") => "input ICMP message failed",
        ("Icmp", "OutMsgs") => "ICMP messages sent",
        ("Icmp", "OutErrors") => "ICMP messages failed",
        ("Tcp", "ActiveOpens") => "active connection openings",
        ("Tcp", "PassiveOpens") => "passive connection openings",
        ("Tcp", "AttemptFails") => "failed connection attempts",
        ("Tcp", "EstabResets") => "connection resets received",
        ("Tcp", "CurrEstab") => "connections established",
        ("Tcp", "InSegs") => "segments received",
        ("Tcp", "OutSegs") => "segments sent out",
        ("Tcp", "RetransSegs") => "segments retransmitted",
        ("Tcp", "InErrs") => "bad segments received",
        ("Tcp", "OutRsts") => "resets sent",
        ("Udp", "InDatagrams") => "packets received",
        ("Udp", "NoPorts") => "packets to unknown port received",
        ("Udp", "InErrors") => "packet receive errors",
        ("Udp", "OutDatagrams") => "packets sent",
        ("Udp", "RcvbufErrors") => "receive buffer errors",
        ("Udp", "SndbufErrors") => "send buffer errors",
        ("TcpExt", "ListenOverflows") => "times the listen queue of a socket overflowed",
        ("TcpExt", "ListenDrops") => "SYNs to LISTEN sockets dropped",
        ("TcpExt", "TW") => "TCP sockets finished time wait in fast timer",
        ("TcpExt", "TCPTimeWaitOverflow") => "times the time-wait bucket table overflowed",
        ("TcpExt", "SyncookiesSent") => "SYN cookies sent",
        ("TcpExt", "TCPAbortOnTimeout") => "connections aborted due to timeout",
        _ => "",
    };
    if !known.is_empty() {
        return known.to_string();
    }
    let mut words = String::new();
    let chars: Vec<char> = name.chars().collect();
    for (i, ch) in chars.iter().enumerate() {
        // An acronym's plural "s" (ACKs, SYNs) does not start a new word.
        let plural_s = chars.get(i + 1) == Some(&'s')
            && chars.get(i + 2).is_none_or(|n| n.is_ascii_uppercase());
        let boundary = i > 0
            && ch.is_ascii_uppercase()
            && (chars[i - 1].is_ascii_lowercase()
                || (!plural_s && chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase())));
        if boundary {
            words.push(' ');
        }
        words.push(*ch);
    }
    // Acronyms stay upper case; words go lower case.
    words
        .split(' ')
        .map(|w| {
            let core = w.strip_suffix('s').unwrap_or(w);
            if core.len() > 1
                && core
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
            {
                w.to_string()
            } else {
                w.to_ascii_lowercase()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SNMP: &str = "Ip: Forwarding DefaultTTL InReceives\nIp: 1 64 1234\nTcp: RtoAlgorithm ActiveOpens CurrEstab\nTcp: 1 17 3\n";

    #[test]
    fn parses_paired_lines_and_snmp6() {
        let mut c = Counters::default();
        parse_paired(SNMP, "snmp", &mut c).unwrap();
        parse_snmp6(
            "Ip6InReceives  40\nIcmp6OutMsgs 2\nUdpLite6InErrors 0\n",
            &mut c,
        );
        assert_eq!(c.get("Ip", "InReceives"), Some(1234));
        assert_eq!(c.get("Tcp", "ActiveOpens"), Some(17));
        assert_eq!(c.get("Ip6", "InReceives"), Some(40));
        assert_eq!(c.get("Icmp6", "OutMsgs"), Some(2));
        assert_eq!(c.get("UdpLite6", "InErrors"), Some(0));
    }

    #[test]
    fn rejects_broken_files() {
        let mut c = Counters::default();
        assert!(parse_paired("Ip: A B\nIp: 1\n", "snmp", &mut c).is_err());
        assert!(parse_paired("Ip: A\nTcp: 1\n", "snmp", &mut c).is_err());
        assert!(parse_paired("Ip: A\n", "snmp", &mut c).is_err());
        assert!(parse_paired("Ip: A\nIp: x\n", "snmp", &mut c).is_err());
    }

    #[test]
    fn describes_like_netstat() {
        assert_eq!(describe("Tcp", "ActiveOpens"), "active connection openings");
        assert_eq!(describe("TcpExt", "TCPHPHits"), "TCPHP hits");
        assert_eq!(describe("TcpExt", "DelayedACKs"), "delayed ACKs");
        assert_eq!(describe("TcpExt", "PruneCalled"), "prune called");
        assert_eq!(describe("Ip", "ReasmOKs"), "reasm OKs");
        assert_eq!(describe("TcpExt", "TCPSYNChallenge"), "TCPSYN challenge");
    }
}
