//! `sockstat trace`: attach, stream transitions until Ctrl-C/SIGTERM/--count, then report
//! what was seen and what was lost.
use std::{
    io::{self, BufWriter, Write},
    process::ExitCode,
};

use anyhow::Context as _;
use sockstat_common::ProbeConfig;
use tokio::signal::unix::{SignalKind, signal};

use super::{UsageError, args::TraceArgs};
use crate::{
    ebpf::{HookChoice, KernelCounters, Probe, ProbeOptions, privilege, ring::EventStream},
    live::{StateTimes, clock::WallClock},
    render::trace::{TraceFormat, TracePrinter},
};

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

pub fn run(args: &TraceArgs) -> anyhow::Result<ExitCode> {
    if !privilege::can_trace() {
        return Err(UsageError(
            "sockstat trace needs root, or CAP_BPF and CAP_PERFMON: run it with sudo".to_string(),
        )
        .into());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the event loop")?;
    runtime.block_on(trace(args))
}

/// Counts kept by the user-space side of the pipeline.
#[derive(Default)]
struct Seen {
    printed: u64,
    decoded: u64,
    undecodable: u64,
}

async fn trace(args: &TraceArgs) -> anyhow::Result<ExitCode> {
    let family = if args.ipv4 {
        AF_INET
    } else if args.ipv6 {
        AF_INET6
    } else {
        0
    };
    let opts = ProbeOptions {
        hook: args.hook,
        ring_kb: args.ring_kb,
        config: ProbeConfig {
            port: args.port.unwrap_or(0),
            family,
            _pad0: [0; 4],
        },
    };
    let mut probe = Probe::attach(&opts)?;
    let mut events = EventStream::new(probe.take_events()?).context("polling the ring buffer")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let hook = match probe.hook() {
        HookChoice::TpBtf => "tp_btf",
        _ => "tracepoint",
    };
    eprintln!(
        "sockstat: tracing sock:inet_sock_set_state ({hook}, ring {} KiB); Ctrl-C to stop",
        probe.ring_bytes() / 1024
    );

    let printer = TracePrinter::new(
        if args.json {
            TraceFormat::Json
        } else {
            TraceFormat::Text
        },
        WallClock::now(),
    );
    let mut out = BufWriter::with_capacity(64 * 1024, io::stdout().lock());
    let mut times = StateTimes::default();
    let mut seen = Seen::default();
    let mut batch = Vec::with_capacity(256);

    let result: io::Result<()> = async {
        if !args.no_header {
            printer.write_header(&mut out)?;
            out.flush()?;
        }
        loop {
            tokio::select! {
                ready = events.next_batch(&mut batch) => ready?,
                _ = sigterm.recv() => break,
                _ = sigint.recv() => break,
            }
            if emit(&mut batch, args, &printer, &mut times, &mut seen, &mut out)? {
                return Ok(());
            }
        }
        // Whatever arrived between the signal and now is still printed.
        events.drain_now(&mut batch);
        emit(&mut batch, args, &printer, &mut times, &mut seen, &mut out)?;
        Ok(())
    }
    .await;

    let counters = probe.counters().unwrap_or_default();
    drop(probe);
    match result {
        Ok(()) => {}
        // `sockstat trace | head`: the reader left; that is a normal way to stop.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(ExitCode::SUCCESS),
        Err(e) => return Err(anyhow::Error::new(e).context("writing output")),
    }
    eprintln!("{}", summary(&seen, &counters));
    Ok(ExitCode::SUCCESS)
}

/// Prints a drained batch; returns true once `--count` is reached. Output is flushed after
/// every batch, so nothing waits in a buffer while the ring is idle.
fn emit(
    batch: &mut Vec<Result<crate::ebpf::StateChange, crate::ebpf::DecodeError>>,
    args: &TraceArgs,
    printer: &TracePrinter,
    times: &mut StateTimes,
    seen: &mut Seen,
    out: &mut impl Write,
) -> io::Result<bool> {
    let mut done = false;
    for record in batch.drain(..) {
        let Ok(change) = record else {
            seen.undecodable += 1;
            continue;
        };
        seen.decoded += 1;
        let observed = times.observe(change);
        if done || args.pid.is_some_and(|pid| observed.owner.pid != Some(pid)) {
            continue;
        }
        printer.write(out, &observed)?;
        seen.printed += 1;
        done = args.count.is_some_and(|n| seen.printed >= n);
    }
    out.flush()?;
    Ok(done)
}

fn summary(seen: &Seen, kernel: &KernelCounters) -> String {
    format!(
        "sockstat: {} events seen, {} printed, {} lost (ring buffer full), {} unreadable in kernel, {} undecodable",
        seen.decoded, seen.printed, kernel.lost, kernel.read_errors, seen.undecodable
    )
}
