//! `report --history AGE`: the analysis over recorded connections rather than the live
//! sockets. How many connections there were and how they ended, which destinations refused
//! or timed out, who sent resets, who talked to external peers, who retransmitted, per pod;
//! and `--alert` over its own metrics.
use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::analysis::{Count, is_internal, port_group};
use crate::{alert::AlertStatus, history::LifetimeRow, live::Cause};

/// Entries in each top list.
const TOP: usize = 10;
/// Shorter than this is a short-lived connection (the churn that fills TIME-WAIT).
const SHORT_NS: i64 = 1_000_000_000;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RecordedReport {
    /// The window, RFC 3339 (UTC).
    pub since: String,
    pub until: String,
    /// The machines whose connections these are (a fleet's store); empty for a local one.
    pub hosts: Vec<String>,
    pub connections: u64,
    pub per_second: f64,
    /// How they ended: fin, rst-in, rst-out, timeout, an errno, or `-` (not known).
    pub endings: Vec<Count>,
    /// Connects that failed (an errno, or no local port), and where to, with the errno.
    pub failed_connects: u64,
    pub failing_destinations: Vec<Count>,
    /// Connections an RST ended, either way, and the peers most involved.
    pub resets: u64,
    pub resetting_peers: Vec<Count>,
    pub top_remote: Vec<Count>,
    pub top_remote_ports: Vec<Count>,
    /// Peers outside loopback, private, link-local and CGNAT ranges.
    pub external: Vec<Count>,
    /// Connections by their owner's name.
    pub owners: Vec<Count>,
    /// Closed within a second of opening.
    pub short_lived: u64,
    pub retransmits: u64,
    pub retransmitting_peers: Vec<Count>,
    pub pods: Vec<RecordedPod>,
    pub alerts: Vec<AlertStatus>,
}

/// One pod's (or named container's) share of the recorded connections.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RecordedPod {
    /// `namespace/pod`, or a container's name.
    pub pod: String,
    pub connections: u64,
    pub failed_connects: u64,
    pub resets: u64,
    pub external: u64,
}

/// The names `--alert` accepts with `--history`.
pub fn metric_names() -> Vec<&'static str> {
    vec![
        "connections",
        "connections-per-second",
        "failed-connects",
        "failed-connects-pct",
        "resets",
        "external",
        "short-lived",
        "retransmits",
    ]
}

impl RecordedReport {
    pub fn metric(&self, name: &str) -> Option<f64> {
        let pct = |n: u64| {
            if self.connections == 0 {
                0.0
            } else {
                n as f64 * 100.0 / self.connections as f64
            }
        };
        Some(match name {
            "connections" => self.connections as f64,
            "connections-per-second" => self.per_second,
            "failed-connects" => self.failed_connects as f64,
            "failed-connects-pct" => pct(self.failed_connects),
            "resets" => self.resets as f64,
            "external" => self.external.iter().map(|c| c.count).sum::<u64>() as f64,
            "short-lived" => self.short_lived as f64,
            "retransmits" => self.retransmits as f64,
            _ => return None,
        })
    }
}

/// Counts by key, most first (ties by key), at most `TOP`.
#[derive(Default)]
struct Tally(HashMap<String, u64>);

impl Tally {
    fn add(&mut self, key: impl Into<String>, n: u64) {
        *self.0.entry(key.into()).or_default() += n;
    }

    fn top(self) -> Vec<Count> {
        let mut v: Vec<Count> = self
            .0
            .into_iter()
            .filter(|&(_, count)| count > 0)
            .map(|(key, count)| Count { key, count })
            .collect();
        v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
        v.truncate(TOP);
        v
    }
}

/// The report over `rows` (each with its host, from a fleet's store), recorded in
/// [since_ns, until_ns) on the wall clock; `window` names that range. Remote ports in
/// `ephemeral` (the clients of this host's servers) count as one group.
pub fn analyse(
    rows: &[(Option<String>, LifetimeRow)],
    (since_ns, until_ns): (i64, i64),
    window: (String, String),
    ephemeral: (u16, u16),
) -> RecordedReport {
    let mut endings = Tally::default();
    let mut failing = Tally::default();
    let mut resetting = Tally::default();
    let mut remote = Tally::default();
    let mut remote_ports = Tally::default();
    let mut external = Tally::default();
    let mut owners = Tally::default();
    let mut retransmitting = Tally::default();
    let mut pods: BTreeMap<String, RecordedPod> = BTreeMap::new();
    let mut hosts: Vec<String> = Vec::new();
    let (mut failed_connects, mut resets, mut short_lived, mut retransmits) = (0, 0, 0, 0);
    for (host, r) in rows {
        if let Some(h) = host
            && !hosts.contains(h)
        {
            hosts.push(h.clone());
        }
        let cause = r.cause.as_deref().and_then(Cause::from_name);
        endings.add(r.cause.as_deref().unwrap_or("-"), 1);
        let peer = r.remote.map_or_else(|| "-".to_string(), |a| a.to_string());
        let peer_ip = r.remote.map(|a| a.ip());
        let failed = matches!(cause, Some(Cause::Errno(_) | Cause::NoLocalPort));
        let reset = matches!(cause, Some(Cause::RstIn | Cause::RstOut));
        let outside = peer_ip.is_some_and(|ip| !ip.is_unspecified() && !is_internal(ip));
        if failed {
            failed_connects += 1;
            failing.add(format!("{peer} {}", r.cause.as_deref().unwrap_or("-")), 1);
        }
        if reset {
            resets += 1;
            resetting.add(
                peer_ip.map_or_else(|| "-".to_string(), |ip| ip.to_string()),
                1,
            );
        }
        if outside {
            external.add(peer_ip.map(|ip| ip.to_string()).unwrap_or_default(), 1);
        }
        if let Some(ip) = peer_ip {
            remote.add(ip.to_string(), 1);
        }
        if let Some(a) = r.remote {
            remote_ports.add(port_group(a.port(), ephemeral), 1);
        }
        owners.add(r.comm.as_deref().unwrap_or("-"), 1);
        if r.start_ns.is_some_and(|s| r.end_ns - s < SHORT_NS) {
            short_lived += 1;
        }
        retransmits += u64::from(r.retransmits);
        retransmitting.add(peer.clone(), u64::from(r.retransmits));
        if let Some(pod) = r.names.group() {
            let p = pods.entry(pod.clone()).or_insert_with(|| RecordedPod {
                pod,
                ..RecordedPod::default()
            });
            p.connections += 1;
            p.failed_connects += u64::from(failed);
            p.resets += u64::from(reset);
            p.external += u64::from(outside);
        }
    }
    hosts.sort();
    let mut pods: Vec<RecordedPod> = pods.into_values().collect();
    pods.sort_by(|a, b| {
        b.connections
            .cmp(&a.connections)
            .then_with(|| a.pod.cmp(&b.pod))
    });
    let seconds = (until_ns - since_ns).max(1) as f64 / 1e9;
    RecordedReport {
        since: window.0,
        until: window.1,
        hosts,
        connections: rows.len() as u64,
        per_second: rows.len() as f64 / seconds,
        endings: endings.top(),
        failed_connects,
        failing_destinations: failing.top(),
        resets,
        resetting_peers: resetting.top(),
        top_remote: remote.top(),
        top_remote_ports: remote_ports.top(),
        external: external.top(),
        owners: owners.top(),
        short_lived,
        retransmits,
        retransmitting_peers: retransmitting.top(),
        pods,
        alerts: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procs::workload::Workload;

    fn row(remote: &str, cause: &str, retransmits: u32, pod: Option<&str>) -> LifetimeRow {
        LifetimeRow {
            end_ns: 2_000_000_000,
            start_ns: Some(1_500_000_000),
            local: "10.0.0.1:40000".parse().ok(),
            remote: remote.parse().ok(),
            comm: Some("psql".to_string()),
            owner_source: "task".to_string(),
            cause: Some(cause.to_string()),
            retransmits,
            names: Workload {
                pod: pod.map(String::from),
                namespace: pod.map(|_| "shop".to_string()),
                ..Workload::default()
            },
            ..LifetimeRow::default()
        }
    }

    #[test]
    fn failures_resets_external_peers_and_pods_are_counted() {
        let rows: Vec<(Option<String>, LifetimeRow)> = vec![
            row("10.0.3.7:5432", "ECONNREFUSED", 0, Some("api")),
            row("10.0.3.7:5432", "ECONNREFUSED", 0, Some("api")),
            row("10.0.3.8:5432", "ETIMEDOUT", 6, None),
            row("8.8.8.8:443", "rst-in", 1, Some("api")),
            row("10.0.3.9:80", "fin", 0, Some("web")),
        ]
        .into_iter()
        .map(|r| (Some("node-a".to_string()), r))
        .collect();
        let r = analyse(
            &rows,
            (0, 10_000_000_000),
            ("a".into(), "b".into()),
            (32768, 60999),
        );
        assert_eq!(r.hosts, ["node-a"]);
        assert_eq!((r.connections, r.failed_connects, r.resets), (5, 3, 1));
        assert_eq!(r.per_second, 0.5);
        assert_eq!(r.short_lived, 5);
        assert_eq!(r.retransmits, 7);
        assert_eq!(
            r.failing_destinations[0],
            Count {
                key: "10.0.3.7:5432 ECONNREFUSED".into(),
                count: 2
            }
        );
        assert_eq!(
            r.external,
            [Count {
                key: "8.8.8.8".into(),
                count: 1
            }]
        );
        assert_eq!(r.retransmitting_peers[0].key, "10.0.3.8:5432");
        assert_eq!(r.pods.len(), 2);
        assert_eq!(
            r.pods[0],
            RecordedPod {
                pod: "shop/api".into(),
                connections: 3,
                failed_connects: 2,
                resets: 1,
                external: 1
            }
        );
        assert_eq!(r.metric("failed-connects-pct"), Some(60.0));
        assert_eq!(r.metric("nonsense"), None);
        for name in metric_names() {
            assert!(r.metric(name).is_some(), "{name}");
        }
    }
}
