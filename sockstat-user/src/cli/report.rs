//! `sockstat report`: one namespace (or all of them) analysed: states, top peers and ports,
//! external connections, unusual listeners, leak indicators, alerts (exit 1 when one fires).
use std::{
    collections::HashMap,
    io::{self, Write},
    process::ExitCode,
};

use anyhow::Context as _;

use super::{NetnsChoice, UsageError, args::ReportArgs};
use crate::{
    diag::{self, Extensions, Query, SocketRecord},
    filter::{Filter, ParseContext, states},
    procs,
    render::report::write_text,
    report::{
        analysis::{self, Labeled, Settings},
        ports::PortSettings,
    },
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

/// What one namespace gives the report: its sockets, its tcp_max_tw_buckets and its
/// port settings.
type Collected = (Vec<SocketRecord>, Option<u64>, PortSettings);

/// Sockets and settings of the namespace the calling thread is in.
fn collect_here(proc_net: &std::path::Path) -> anyhow::Result<Collected> {
    let records = diag::collect(&query(), proc_net).context("dumping sockets")?;
    // /proc/sys/net follows the namespace of the reading thread.
    let tw_max = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_max_tw_buckets")
        .ok()
        .and_then(|t| t.trim().parse().ok());
    Ok((records, tw_max, PortSettings::here()))
}

pub fn run(args: &ReportArgs) -> anyhow::Result<ExitCode> {
    let alerts = crate::alert::parse_all(&args.alert, &analysis::metric_names())
        .map_err(|e| UsageError(e.to_string()))?;
    let filter = Filter::parse(&args.filter, &ParseContext::default())
        .map_err(|e| UsageError(e.to_string()))?;
    let owners = crate::procs::Background::start(crate::ebpf::owners::socket_owners_any);
    let mut labeled = Vec::new();
    let mut namespaces = Vec::new();
    let mut tw_max = None;
    let mut ports = HashMap::new();
    // Each namespace's pod (or named container), by label: the report's findings per pod.
    let mut pods = HashMap::new();
    if args.ns.all_netns {
        let scan = procs::netns::all();
        let (collected, skipped) =
            scan.run_each(|_| collect_here(std::path::Path::new("/proc/thread-self/net")));
        procs::netns::warn_skipped(&skipped);
        let workload_filter = args.workload.filter();
        let mut names = procs::workload::WorkloadNames::new();
        for (ns, collected) in collected {
            let workload = ns.container.as_ref().and_then(|c| names.of(c));
            // --pod, --k8s-namespace, --container: the namespaces of those containers.
            if let Some(f) = &workload_filter
                && !f.matches(workload.as_deref())
            {
                continue;
            }
            let label = ns.label();
            if let Some(group) = workload.and_then(|w| w.group()) {
                pods.insert(label.clone(), group);
            }
            let (records, max, port_settings) = collected?;
            tw_max = tw_max.or(max);
            ports.insert(label.clone(), port_settings);
            labeled.extend(records.into_iter().map(|record| Labeled {
                netns: label.clone(),
                record,
            }));
            namespaces.push(label);
        }
    } else {
        let netns = NetnsChoice::open(&args.ns.one)?;
        if let Some(f) = args.workload.filter() {
            let workload = netns
                .inode()
                .and_then(procs::netns::container_of)
                .and_then(|c| procs::workload::WorkloadNames::new().of(&c));
            if !f.matches(workload.as_deref()) {
                return Err(UsageError(format!(
                    "-N {}: that namespace belongs to no container with the names given",
                    netns.label()
                ))
                .into());
            }
        }
        let label = netns.label();
        let (records, max, port_settings) = netns.run(|| collect_here(&netns.proc_net()))??;
        tw_max = max;
        ports.insert(label.clone(), port_settings);
        labeled.extend(records.into_iter().map(|record| Labeled {
            netns: label.clone(),
            record,
        }));
        namespaces.push(label);
    }
    labeled.retain(|l| filter.matches_record(&l.record));
    let owners = owners.join().unwrap_or_default();
    let mut report = analysis::analyse(
        &labeled,
        &owners,
        namespaces,
        &Settings {
            allow_ports: &args.allow_ports.0,
            ephemeral: crate::services::ephemeral_range(),
            tcp_max_tw_buckets: tw_max,
            ports: &ports.iter().map(|(k, v)| (k.as_str(), v.clone())).collect(),
            alerts: &alerts,
        },
    );
    report.pods = analysis::per_pod(&labeled, &report, &pods);
    let mut out = io::stdout().lock();
    if args.json {
        crate::render::json_line(&mut out, &report)?;
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
