//! `sockstat record`: the pipeline's lifetimes, each with its owner's container, written to
//! the embedded store or to ClickHouse until SIGTERM/SIGINT; then what was recorded,
//! dropped and forgotten.
use std::{process::ExitCode, time::Duration};

use anyhow::Context as _;
use tokio::signal::unix::{SignalKind, signal};

use super::{NetnsChoice, UsageError, args::RecordArgs};
use crate::{
    agent::{
        DumpScope,
        pipeline::{Pipeline, PipelineOptions},
    },
    ebpf::privilege,
    history::{
        clickhouse::ClickHouse,
        hostname, row_of,
        spool::Spool,
        store::Store,
        writer::{Destination, Retention, Writer, Written},
    },
    live::{Output, Reports, clock},
    procs::workload::WorkloadNames,
};

/// The live table is reconciled with sock_diag this often, as trace does by default.
const RECONCILE: Duration = Duration::from_secs(5);

pub fn run(args: &RecordArgs) -> anyhow::Result<ExitCode> {
    let netns = NetnsChoice::open(&args.ns.one)?.inode();
    let user = super::user_of(&args.privilege)?;
    if !privilege::can_trace() {
        return Err(UsageError(format!(
            "sockstat record needs root, or {}: run it with sudo",
            crate::least_privilege::names(crate::least_privilege::LOAD)
        ))
        .into());
    }
    // The destination first: a bad one is said before anything loads, and is left as it is.
    let destination = destination(args)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the event loop")?;
    runtime.block_on(record(args, destination, netns, user.as_ref()))
}

/// The embedded store, or ClickHouse (answering, its table made) with the spool.
fn destination(args: &RecordArgs) -> anyhow::Result<Destination> {
    let Some(url) = &args.sink else {
        let store = Store::create(&args.store).map_err(|e| UsageError(e.to_string()))?;
        return Ok(Destination::Store(store));
    };
    let host = args.host.clone().unwrap_or_else(hostname);
    if host.is_empty() {
        return Err(
            UsageError("this machine has no hostname: name it with --host".to_string()).into(),
        );
    }
    let clickhouse = ClickHouse::new(url.clone());
    // Down at the start is a wrong URL far more often than an outage: said at once.
    clickhouse
        .ensure_schema()
        .map_err(|e| UsageError(format!("{e}: check --sink, and that the server is up")))?;
    let spool = Spool::open(&args.store.join("spool"), &host, args.spool_max)
        .map_err(|e| UsageError(e.to_string()))?;
    Ok(Destination::ClickHouse(Box::new((clickhouse, spool))))
}

async fn record(
    args: &RecordArgs,
    destination: Destination,
    netns: Option<u32>,
    user: Option<&crate::least_privilege::User>,
) -> anyhow::Result<ExitCode> {
    let mut pipeline = Pipeline::attach(&PipelineOptions {
        hook: args.probe.hook,
        ring_kib: args.probe.ring_kib,
        scope: DumpScope {
            port: None,
            v4: true,
            v6: true,
            netns,
            all_netns: args.ns.all_netns,
            own: None,
            left_out: None,
        },
        events: true,
        drops: false,
        reports: Reports {
            lifetimes: true,
            handshake_rtts: false,
        },
        rtt_interval: None,
        baseline: true,
        reconcile: Some(RECONCILE),
    })?;
    super::run_on_least_privilege(
        user,
        super::beyond_own_netns(args.ns.all_netns, netns),
        Some(pipeline.probe()),
    )?;
    let mut writer = Writer::start(
        destination,
        Retention {
            keep: Some(args.keep).filter(|k| !k.is_zero()),
            max_bytes: Some(args.max_size).filter(|&m| m != 0),
        },
        Duration::from_secs_f64(args.flush),
    )
    .context("starting the store's writer")?;
    let into = match &args.sink {
        Some(url) => format!("{url} (spooled in {})", args.store.join("spool").display()),
        None => args.store.display().to_string(),
    };
    eprintln!(
        "sockstat: recording connections into {into} ({}, {} sockets in the baseline); Ctrl-C to stop",
        pipeline.probe().hook().name(),
        pipeline.tracker().len()
    );
    let clock = clock::WallClock::now();
    let mut names = WorkloadNames::new();
    let mut outputs = Vec::with_capacity(256);
    let mut recorded = 0u64;
    let mut keep = |outputs: &mut Vec<Output>, writer: &mut Writer| {
        for o in outputs.drain(..) {
            if let Output::Lifetime(l) = o {
                let workload = names.of_owner(l.owner.pid, l.netns);
                writer.push(row_of(&l, clock, workload.as_deref()));
                recorded += 1;
            }
        }
    };
    let mut sigterm = signal(SignalKind::terminate()).context("installing a SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing a SIGINT handler")?;
    let mut poll = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            wake = pipeline.wake() => {
                if let crate::agent::pipeline::Wake::Reconcile(step) = wake? {
                    pipeline.reconcile(step, &mut outputs);
                }
            }
            _ = poll.tick() => {}
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
        }
        pipeline.drain(&mut outputs);
        keep(&mut outputs, &mut writer);
    }
    pipeline.finish(&mut outputs);
    keep(&mut outputs, &mut writer);
    let lost = pipeline
        .probe()
        .counters()
        .map(|c| c.dropped().to_string())
        .unwrap_or_else(|e| format!("an unknown number of (the counters could not be read: {e})"));
    drop(pipeline);
    let dropped = writer.dropped();
    let written = writer.finish();
    eprintln!("sockstat: {}", summary(recorded, dropped, &lost, &written));
    Ok(ExitCode::SUCCESS)
}

/// The closing line: every connection accounted for.
fn summary(recorded: u64, dropped: u64, lost: &str, w: &Written) -> String {
    let head = format!(
        "{recorded} connections recorded, {} committed in {} batches, {dropped} dropped (the writer fell behind), {} lost in writing; {lost} events lost in the kernel",
        w.rows, w.batches, w.failed
    );
    match w.shipped {
        None => format!(
            "{head}; {} forgotten by --keep, {} by --max-size; the store holds {} bytes",
            w.expired, w.evicted, w.bytes
        ),
        Some(s) => format!(
            "{head}; ClickHouse took {} in {} batches ({} found there after a send in doubt), {} wait in the spool ({} bytes, sent on the next run), {} dropped by --spool-max, {} failed sends retried",
            s.rows, s.batches, s.found, s.waiting, s.waiting_bytes, s.dropped, s.failures
        ),
    }
}
