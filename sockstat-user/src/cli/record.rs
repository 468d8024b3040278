//! `sockstat record`: the pipeline's lifetimes, each with its owner's container, written to
//! the embedded store or to ClickHouse until SIGTERM/SIGINT; then what was recorded,
//! dropped and forgotten.
use std::{process::ExitCode, time::Duration};

use anyhow::Context as _;
use tokio::signal::unix::{SignalKind, signal};

use super::{
    NetnsChoice, UsageError,
    args::{RecordArgs, RecordTo},
};
use crate::{
    agent::{
        DumpScope,
        pipeline::{Pipeline, PipelineOptions},
    },
    ebpf::privilege,
    history::{
        clickhouse::ClickHouse,
        hostname,
        recorder::Recorder,
        spool::Spool,
        store::Store,
        writer::{Destination, Retention},
    },
    live::Reports,
    procs::workload::SharedNames,
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
    let destination = destination(&args.to)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the event loop")?;
    runtime.block_on(record(args, destination, netns, user.as_ref()))
}

/// The embedded store, or ClickHouse (answering, its table made) with the spool.
pub(super) fn destination(to: &RecordTo) -> Result<Destination, UsageError> {
    let Some(url) = &to.sink else {
        let store = Store::create(&to.store).map_err(|e| UsageError(e.to_string()))?;
        return Ok(Destination::Store(store));
    };
    let host = to.host.clone().unwrap_or_else(hostname);
    if host.is_empty() {
        return Err(UsageError(
            "this machine has no hostname: name it with --host".to_string(),
        ));
    }
    let clickhouse = ClickHouse::new(url.clone());
    // Down at the start is a wrong URL far more often than an outage: said at once.
    clickhouse
        .ensure_schema()
        .map_err(|e| UsageError(format!("{e}: check --sink, and that the server is up")))?;
    // --spool-max 0: no bound, as --max-size 0 means.
    let bound = Some(to.spool_max).filter(|&m| m != 0).unwrap_or(u64::MAX);
    let spool = Spool::open(&to.store.join("spool"), &host, bound)
        .map_err(|e| UsageError(e.to_string()))?;
    Ok(Destination::ClickHouse(Box::new((clickhouse, spool))))
}

/// How long the embedded store keeps a connection unless told.
const DEFAULT_KEEP: Duration = Duration::from_secs(7 * 24 * 3600);

/// `--keep`, resolved: the store's default, but none for ClickHouse unless given; 0: never.
fn keep(to: &RecordTo) -> Option<Duration> {
    let given = if to.sink.is_some() {
        to.keep
    } else {
        Some(to.keep.unwrap_or(DEFAULT_KEEP))
    };
    given.filter(|k| !k.is_zero())
}

/// Starts the writer for `to`'s retention and flush.
pub(super) fn recorder(
    to: &RecordTo,
    destination: Destination,
    names: SharedNames,
) -> anyhow::Result<Recorder> {
    Recorder::start(
        destination,
        Retention {
            keep: keep(to),
            max_bytes: Some(to.max_size).filter(|&m| m != 0),
        },
        Duration::from_secs_f64(to.flush),
        to.transitions,
        names,
    )
    .context("starting the store's writer")
}

/// Where the connections go, for the opening line.
pub(super) fn into(to: &RecordTo) -> String {
    match &to.sink {
        Some(url) => format!("{url} (spooled in {})", to.store.join("spool").display()),
        None => to.store.display().to_string(),
    }
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
        watched_netns: false,
    })?;
    super::run_on_least_privilege(
        user,
        super::beyond_own_netns(args.ns.all_netns, netns),
        Some(pipeline.probe()),
    )?;
    let mut recorder = recorder(&args.to, destination, SharedNames::default())?;
    eprintln!(
        "sockstat: recording connections into {} ({}, {} sockets in the baseline); Ctrl-C to stop",
        into(&args.to),
        pipeline.probe().hook().name(),
        pipeline.tracker().len()
    );
    let mut outputs = Vec::with_capacity(256);
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
        outputs.drain(..).for_each(|o| recorder.observe(&o));
    }
    pipeline.finish(&mut outputs);
    outputs.drain(..).for_each(|o| recorder.observe(&o));
    let summary = recorder.finish(Some(pipeline.probe()));
    drop(pipeline);
    eprintln!("sockstat: {summary}");
    Ok(ExitCode::SUCCESS)
}
