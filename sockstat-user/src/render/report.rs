//! `sockstat report` as text: sections, bars and findings.
use std::io::{self, Write};

use crate::{
    alert::AlertStatus,
    report::{
        analysis::{Count, Report},
        recorded::RecordedReport,
    },
};

pub fn write_text(out: &mut impl Write, r: &Report) -> io::Result<()> {
    writeln!(out, "Namespaces: {}", r.namespaces.join(", "))?;
    if !r.pods.is_empty() {
        writeln!(out, "\nPods and containers:")?;
        writeln!(
            out,
            "  {:<40} {:>7} {:>9} {:>7} {:>7} {:>8} {:>10} {:>9}",
            "POD",
            "SOCKETS",
            "LISTENERS",
            "EXPOSED",
            "UNUSUAL",
            "EXTERNAL",
            "CLOSE-WAIT",
            "TIME-WAIT"
        )?;
        for p in &r.pods {
            writeln!(
                out,
                "  {:<40} {:>7} {:>9} {:>7} {:>7} {:>8} {:>10} {:>9}",
                p.pod,
                p.sockets,
                p.listeners,
                p.exposed_listeners,
                p.unusual_listeners,
                p.external,
                p.close_wait,
                p.time_wait
            )?;
        }
    }
    writeln!(out, "\nTCP states ({} TCP and UDP sockets):", r.total)?;
    let max = r.states.iter().map(|c| c.count).max().unwrap_or(1).max(1);
    for c in &r.states {
        let bar = "#".repeat(((c.count * 40).div_ceil(max)) as usize);
        writeln!(out, "  {:<11} {:>7} {bar}", c.key, c.count)?;
    }
    writeln!(out, "\nTop remote addresses:")?;
    for c in &r.top_remote {
        writeln!(out, "  {:<40} {:>7}", c.key, c.count)?;
    }
    writeln!(out, "\nTop local ports:")?;
    for c in &r.top_local_ports {
        writeln!(out, "  {:<40} {:>7}", c.key, c.count)?;
    }
    writeln!(
        out,
        "\nExternal connections (peers outside loopback, private, link-local and CGNAT): {}",
        r.external.len()
    )?;
    for c in r.external.iter().take(20) {
        writeln!(
            out,
            "  [{}] {:<11} {} -> {} {}",
            c.netns,
            c.state,
            c.local,
            c.peer,
            c.process.as_deref().unwrap_or("")
        )?;
    }
    if r.external.len() > 20 {
        writeln!(
            out,
            "  ... {} more (--json lists all)",
            r.external.len() - 20
        )?;
    }
    writeln!(
        out,
        "\nListening sockets, most exposed first ({} on ports outside the allowlist, {} of them reachable from other hosts):",
        r.unusual_listeners, r.exposed_unusual_listeners
    )?;
    for l in &r.listeners {
        let mark = if l.allowed { " " } else { "!" };
        writeln!(
            out,
            "  {mark} [{}] {:<4} {:<30} {:<14} {}",
            l.netns,
            l.netid,
            l.local,
            l.exposure.name(),
            l.process.as_deref().unwrap_or("-")
        )?;
    }
    let l = &r.leaks;
    writeln!(out, "\nLeak indicators:")?;
    writeln!(
        out,
        "  CLOSE-WAIT: {}{}",
        l.close_wait,
        l.close_wait_oldest_s
            .map_or(String::new(), |s| format!(" (oldest {s:.0} s)"))
    )?;
    writeln!(
        out,
        "  TIME-WAIT:  {}{}",
        l.time_wait,
        match (l.tcp_max_tw_buckets, l.time_wait_pct) {
            (Some(m), Some(p)) => format!(" of tcp_max_tw_buckets {m} ({p:.1} %)"),
            _ => String::new(),
        }
    )?;
    for b in &l.syn_recv_backlogs {
        writeln!(
            out,
            "  SYN-RECV:   {} on [{}] {} (backlog {}, {:.0} %)",
            b.syn_recv, b.netns, b.listener, b.backlog, b.pct
        )?;
    }
    for f in &l.findings {
        writeln!(out, "  ! {}", f.message)?;
    }
    if !r.ports.is_empty() {
        writeln!(
            out,
            "\nEphemeral ports per destination (connects to one destination share the range), soonest exhaustion first:"
        )?;
        for p in &r.ports {
            let rate = p
                .connects_per_s
                .map_or("-".to_string(), |r| format!("{r:.2}/s"));
            let left = p
                .exhaustion_s
                .map_or("-".to_string(), |s| format!("{s:.0} s"));
            writeln!(
                out,
                "  [{}] {} -> {}: {} in use ({} TIME-WAIT, {} reusable), {} of {} left, {rate}, exhausted in {left}",
                p.netns,
                p.source,
                p.destination,
                p.in_use,
                p.time_wait,
                p.reusable,
                p.available,
                p.capacity
            )?;
        }
    }
    write_alerts(out, &r.alerts)
}

fn write_alerts(out: &mut impl Write, alerts: &[AlertStatus]) -> io::Result<()> {
    if !alerts.is_empty() {
        writeln!(out, "\nAlerts:")?;
        for a in alerts {
            let state = if a.firing { "FIRING" } else { "ok" };
            writeln!(out, "  {state:<6} {} (value {})", a.alert, a.value)?;
        }
    }
    Ok(())
}

fn write_counts(out: &mut impl Write, title: &str, counts: &[Count]) -> io::Result<()> {
    writeln!(out, "\n{title}:")?;
    if counts.is_empty() {
        writeln!(out, "  none")?;
    }
    for c in counts {
        writeln!(out, "  {:<48} {:>7}", c.key, c.count)?;
    }
    Ok(())
}

/// `report --history`: the recorded connections of a time range.
pub fn write_recorded_text(out: &mut impl Write, r: &RecordedReport) -> io::Result<()> {
    writeln!(out, "Recorded connections from {} to {}", r.since, r.until)?;
    if !r.hosts.is_empty() {
        writeln!(out, "Hosts: {}", r.hosts.join(", "))?;
    }
    writeln!(
        out,
        "Connections: {} ({:.2}/s), {} closed within a second; {} failed connects; {} ended by a reset; {} retransmits",
        r.connections, r.per_second, r.short_lived, r.failed_connects, r.resets, r.retransmits
    )?;
    if !r.pods.is_empty() {
        writeln!(out, "\nPods and containers:")?;
        writeln!(
            out,
            "  {:<40} {:>11} {:>15} {:>7} {:>8}",
            "POD", "CONNECTIONS", "FAILED-CONNECTS", "RESETS", "EXTERNAL"
        )?;
        for p in &r.pods {
            writeln!(
                out,
                "  {:<40} {:>11} {:>15} {:>7} {:>8}",
                p.pod, p.connections, p.failed_connects, p.resets, p.external
            )?;
        }
    }
    write_counts(out, "How they ended", &r.endings)?;
    write_counts(
        out,
        "Failed connects, by destination and errno",
        &r.failing_destinations,
    )?;
    write_counts(out, "Resets, by peer", &r.resetting_peers)?;
    write_counts(out, "Top remote addresses", &r.top_remote)?;
    write_counts(out, "Top remote ports", &r.top_remote_ports)?;
    write_counts(
        out,
        "External peers (outside loopback, private, link-local and CGNAT)",
        &r.external,
    )?;
    write_counts(out, "Owners", &r.owners)?;
    write_counts(out, "Retransmits, by peer", &r.retransmitting_peers)?;
    write_alerts(out, &r.alerts)
}
