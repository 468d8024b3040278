//! `sockstat record`: the pipeline's lifetimes, each with its owner's container, written to
//! the store until SIGTERM/SIGINT; then what was recorded, dropped and forgotten.
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
        row_of,
        store::Store,
        writer::{Retention, Writer},
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
    // The store first: a bad one is said before anything loads, and is left as it is.
    let store = Store::create(&args.store).map_err(|e| UsageError(e.to_string()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the event loop")?;
    runtime.block_on(record(args, store, netns, user.as_ref()))
}

async fn record(
    args: &RecordArgs,
    store: Store,
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
        store,
        Retention {
            keep: Some(args.keep).filter(|k| !k.is_zero()),
            max_bytes: Some(args.max_size).filter(|&m| m != 0),
        },
        Duration::from_secs_f64(args.flush),
    )
    .context("starting the store's writer")?;
    eprintln!(
        "sockstat: recording connections into {} ({}, {} sockets in the baseline); Ctrl-C to stop",
        args.store.display(),
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
    eprintln!(
        "sockstat: {recorded} connections recorded, {} committed in {} batches, {dropped} dropped (the store fell behind), {} lost in writing; {lost} events lost in the kernel; {} forgotten by --keep, {} by --max-size; the store holds {} bytes",
        written.rows,
        written.batches,
        written.failed,
        written.expired,
        written.evicted,
        written.bytes
    );
    Ok(ExitCode::SUCCESS)
}
