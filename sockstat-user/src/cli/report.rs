//! `sockstat report`: one namespace (or all of them) analysed: states, top peers and ports,
//! external connections, unusual listeners, leak indicators, alerts (exit 1 when one fires).
use std::{
    io::{self, Write},
    process::ExitCode,
};

use anyhow::Context as _;

use super::{NetnsChoice, UsageError, args::ReportArgs};
use crate::{
    diag::{self, Extensions, Query, SocketRecord},
    filter::states,
    procs,
    report::analysis::{self, Labeled, Report, Settings},
};

fn query() -> Query {
    Query {
        tcp: true,
        udp: true,
        v4: true,
        v6: true,
        states: states::ALL,
        // tcp_info's last_data_recv dates a CLOSE-WAIT socket.
        ext: Extensions {
            info: true,
            memory: false,
        },
        ..Query::default()
    }
}

/// Sockets and tcp_max_tw_buckets of the namespace the calling thread is in.
fn collect_here(proc_net: &std::path::Path) -> anyhow::Result<(Vec<SocketRecord>, Option<u64>)> {
    let records = diag::collect(&query(), proc_net).context("dumping sockets")?;
    // /proc/sys/net follows the namespace of the reading thread.
    let tw_max = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_max_tw_buckets")
        .ok()
        .and_then(|t| t.trim().parse().ok());
    Ok((records, tw_max))
}

pub fn run(args: &ReportArgs) -> anyhow::Result<ExitCode> {
    let alerts = crate::alert::parse_all(&args.alert, &analysis::metric_names())
        .map_err(|e| UsageError(e.to_string()))?;
    let owners = crate::procs::Background::start(crate::ebpf::owners::socket_owners_any);
    let mut labeled = Vec::new();
    let mut namespaces = Vec::new();
    let mut tw_max = None;
    if args.ns.all_netns {
        let scan = procs::netns::all();
        let (collected, skipped) =
            scan.run_each(|_| collect_here(std::path::Path::new("/proc/thread-self/net")));
        procs::netns::warn_skipped(&skipped);
        for (ns, collected) in collected {
            let label = ns.label();
            let (records, max) = collected?;
            tw_max = tw_max.or(max);
            labeled.extend(records.into_iter().map(|record| Labeled {
                netns: label.clone(),
                record,
            }));
            namespaces.push(label);
        }
    } else {
        let netns = NetnsChoice::open(&args.ns.one)?;
        let label = netns.name().unwrap_or("this").to_string();
        let (records, max) = netns.run(|| collect_here(&netns.proc_net()))??;
        tw_max = max;
        labeled.extend(records.into_iter().map(|record| Labeled {
            netns: label.clone(),
            record,
        }));
        namespaces.push(label);
    }
    let owners = owners.join().unwrap_or_default();
    let report = analysis::analyse(
        &labeled,
        &owners,
        namespaces,
        &Settings {
            allow_ports: &args.allow_ports,
            tcp_max_tw_buckets: tw_max,
            alerts: &alerts,
        },
    );
    let mut out = io::stdout().lock();
    if args.json {
        serde_json::to_writer(&mut out, &report)?;
        writeln!(out)?;
    } else {
        write_text(&mut out, &report)?;
    }
    out.flush()?;
    Ok(if report.alerts.iter().any(|a| a.firing) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn write_text(out: &mut impl Write, r: &Report) -> io::Result<()> {
    writeln!(out, "Namespaces: {}", r.namespaces.join(", "))?;
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
        "\nListening sockets ({} on ports outside the allowlist):",
        r.unusual_listeners
    )?;
    for l in &r.listeners {
        let mark = if l.allowed { " " } else { "!" };
        writeln!(
            out,
            "  {mark} [{}] {:<4} {:<30} {}",
            l.netns,
            l.netid,
            l.local,
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
    if !r.alerts.is_empty() {
        writeln!(out, "\nAlerts:")?;
        for a in &r.alerts {
            let state = if a.firing { "FIRING" } else { "ok" };
            writeln!(out, "  {state:<6} {} (value {})", a.alert, a.value)?;
        }
    }
    Ok(())
}
