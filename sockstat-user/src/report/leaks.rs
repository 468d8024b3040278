//! Leak indicators. Each returns a finding only when there is something to flag.
use std::time::Duration;

use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Finding {
    pub kind: &'static str,
    pub count: u64,
    pub message: String,
}

/// CLOSE-WAIT means the peer has closed and the local application has not: a socket that
/// stays there is a descriptor the program forgot to close. Any count is worth a look; the
/// age (known when the live table saw the transition) says how stale it is.
pub fn close_wait(count: u64, oldest: Option<Duration>) -> Option<Finding> {
    if count == 0 {
        return None;
    }
    let age = oldest.map_or(String::new(), |d| {
        format!(", oldest {:.0} s", d.as_secs_f64())
    });
    Some(Finding {
        kind: "close-wait",
        count,
        message: format!(
            "{count} socket(s) in CLOSE-WAIT{age}: the peer closed, the application never did (a descriptor leak)"
        ),
    })
}

/// TIME-WAIT near tcp_max_tw_buckets: past it the kernel destroys closing sockets at once
/// (no TIME-WAIT protection) and logs "time wait bucket table overflow". Flagged from 80 %.
pub fn time_wait(count: u64, max: Option<u64>) -> Option<Finding> {
    let max = max.filter(|&m| m > 0)?;
    let pct = count as f64 * 100.0 / max as f64;
    (pct >= 80.0).then(|| Finding {
        kind: "time-wait",
        count,
        message: format!(
            "{count} TIME-WAIT sockets, {pct:.0} % of tcp_max_tw_buckets ({max}): connection churn is about to overflow the table"
        ),
    })
}

/// A destination whose ephemeral ports run out within five minutes at the current connect
/// rate, or that has less than a tenth of them left: connect() will fail with
/// EADDRNOTAVAIL.
pub fn port_exhaustion(h: &super::ports::PortHeadroom) -> Option<Finding> {
    let soon = h.exhaustion_s.is_some_and(|s| s < 300.0);
    let scarce = h.available * 10 < h.capacity;
    (soon || scarce).then(|| Finding {
        kind: "port-exhaustion",
        count: h.available,
        message: format!(
            "[{}] {} -> {}: {} of {} ephemeral ports left{}: connects will fail with EADDRNOTAVAIL",
            h.netns,
            h.source,
            h.destination,
            h.available,
            h.capacity,
            h.exhaustion_s.map_or(String::new(), |s| format!(
                ", gone in ~{s:.0} s at the current rate"
            ))
        ),
    })
}

/// Half-open connections (SYN-RECV) filling a listener's backlog: a SYN flood, or an
/// accept loop that cannot keep up. Flagged from 50 % of the backlog.
pub fn syn_backlog(listener: &str, syn_recv: u64, backlog: u64) -> Option<Finding> {
    let pct = if backlog > 0 {
        syn_recv as f64 * 100.0 / backlog as f64
    } else {
        100.0
    };
    (pct >= 50.0).then(|| Finding {
        kind: "syn-recv",
        count: syn_recv,
        message: format!(
            "{syn_recv} half-open connections (SYN-RECV) on {listener}, {pct:.0} % of its backlog of {backlog}"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_wait_is_flagged_with_its_age() {
        assert_eq!(close_wait(0, None), None);
        let f = close_wait(3, Some(Duration::from_secs(75))).unwrap();
        assert_eq!(f.count, 3);
        assert!(
            f.message
                .starts_with("3 socket(s) in CLOSE-WAIT, oldest 75 s")
        );
    }
}
