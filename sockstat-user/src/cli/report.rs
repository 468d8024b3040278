//! `sockstat report`: one namespace (or all of them) analysed: states, top peers and ports,
//! external connections, unusual listeners, leak indicators, alerts (exit 1 when one fires).
use std::{
    collections::HashMap,
    io::{self, Write},
    process::ExitCode,
};

use anyhow::Context as _;

use super::{
    NetnsChoice, UsageError,
    args::{HistoryArgs, PointInTime, ReportArgs},
    history::Answer,
};
use crate::{
    diag::{self, Extensions, Query, SocketRecord},
    filter::{Filter, ParseContext, states},
    procs,
    render::report::write_text,
    report::{
        analysis::{self, Labeled, Settings},
        ports::PortSettings,
        recorded,
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
    if let Some(age) = args.history {
        return recorded(args, age);
    }
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

/// `report --history AGE`: the recorded connections of the last AGE, analysed.
fn recorded(args: &ReportArgs, age: std::time::Duration) -> anyhow::Result<ExitCode> {
    if args.ns.all_netns || args.ns.one.net.is_some() {
        return Err(UsageError(
            "report --history reads recorded connections, each with its namespace: -N and --all-netns do not apply (select with a filter, --pod or --host)".to_string(),
        )
        .into());
    }
    let alerts = crate::alert::parse_all(&args.alert, &recorded::metric_names())
        .map_err(|e| UsageError(e.to_string()))?;
    use crate::history::{now_ns, system_time};
    let until = now_ns();
    let since = until.saturating_sub(age.as_nanos().min(i64::MAX as u128) as i64);
    let selection = HistoryArgs {
        store: args.store.clone(),
        from: args.from.clone(),
        host: args.host.clone(),
        since: PointInTime::At(system_time(since)),
        until: Some(PointInTime::At(system_time(until))),
        pid: None,
        comm: None,
        workload: args.workload.clone(),
        transitions: false,
        json: false,
        no_header: false,
        filter: args.filter.clone(),
    };
    let Answer::Lifetimes(rows) = super::history::fetch(&selection)? else {
        return Err(
            UsageError("the store answered with transitions, not connections".to_string()).into(),
        );
    };
    let rfc3339 = |ns: i64| humantime::format_rfc3339_seconds(system_time(ns)).to_string();
    let mut report = recorded::analyse(
        &rows,
        (since, until),
        (rfc3339(since), rfc3339(until)),
        crate::services::ephemeral_range(),
    );
    report.alerts = alerts
        .iter()
        .map(|a| a.check(|m| report.metric(m)))
        .collect();
    let mut out = io::stdout().lock();
    if args.json {
        crate::render::json_line(&mut out, &report)?;
    } else {
        crate::render::report::write_recorded_text(&mut out, &report)?;
    }
    out.flush()?;
    Ok(if report.alerts.iter().any(|a| a.firing) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
