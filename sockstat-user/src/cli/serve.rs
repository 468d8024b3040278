//! `sockstat serve`: keeps the live table (or a sock_diag poll) current and serves it as
//! metrics until SIGTERM/SIGINT.
use std::{
    net::SocketAddr,
    process::ExitCode,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use tokio::signal::unix::{SignalKind, signal};

use super::{UsageError, args::ServeArgs};
use crate::{
    agent::{DumpScope, Feed, FeedOptions, OwnEndpoint, PortWatch, own_netns},
    exporter::{
        conns::{ConnLog, ConnQuery},
        http,
        metrics::Metrics,
        web_config::WebConfig,
    },
    history::{recorder::Recorder, writer::Destination},
    live::{Output, clock, dashboard::DataSource},
};

const DRAIN: Duration = Duration::from_millis(50);

/// What scrapes read: the metrics (refreshed by the event loop) and its heartbeat.
struct Shared {
    metrics: Mutex<Metrics>,
    /// Timelines for `GET /conn` (`sockstat conn`).
    conns: Mutex<ConnLog>,
    /// Monotonic ns of the event loop's last refresh.
    heartbeat: AtomicU64,
    stale_after_ns: u64,
}

impl http::Source for Shared {
    fn metrics(&self, openmetrics: bool) -> String {
        // A panic elsewhere while holding the lock leaves the metrics as they were: still
        // worth serving.
        let text = match self.metrics.lock() {
            Ok(m) => m.encode(),
            Err(poisoned) => poisoned.into_inner().encode(),
        };
        if openmetrics {
            text
        } else {
            crate::exporter::metrics::to_classic_text(&text)
        }
    }

    fn healthy(&self) -> bool {
        let last = self.heartbeat.load(Ordering::Relaxed);
        clock::monotonic_ns().saturating_sub(last) < self.stale_after_ns
    }

    fn connection(&self, query: &str) -> (&'static str, &'static str, Vec<u8>) {
        let (q, json) = match ConnQuery::parse(query) {
            Ok(q) => q,
            Err(e) => {
                return (
                    "400 Bad Request",
                    "text/plain",
                    format!("{e}\n").into_bytes(),
                );
            }
        };
        let conns = match self.conns.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        match conns.find(q) {
            Some(t) => (
                "200 OK",
                if json {
                    "application/x-ndjson"
                } else {
                    "text/plain; charset=utf-8"
                },
                conns.render(&t, json).into_bytes(),
            ),
            None => (
                "404 Not Found",
                "text/plain",
                b"no such connection in this agent's memory (it keeps the latest --timelines live and closed ones)\n"
                    .to_vec(),
            ),
        }
    }
}

pub fn run(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let addr: SocketAddr = args.listen.parse().map_err(|_| {
        UsageError(format!(
            "--listen {}: expected ADDR:PORT, e.g. 127.0.0.1:19377 or [::]:19377",
            args.listen
        ))
    })?;
    let netns = super::NetnsChoice::open(&args.ns.one)?.inode();
    let user = super::user_of(&args.privilege)?;
    // Read now, while the key may still be readable only by root.
    let web = match &args.web_config {
        Some(path) => WebConfig::load(path).map_err(|e| UsageError(e.to_string()))?,
        None => WebConfig::open(),
    };
    if args.web_config.is_none() && !addr.ip().is_loopback() {
        eprintln!(
            "sockstat serve: warning: listening on {addr} without --web-config: anyone who reaches it reads the metrics and connection timelines (--web-config FILE adds TLS and basic auth)"
        );
    }
    // --record's destination before anything loads: a bad one is said, and left as it is.
    let destination = if args.record {
        Some(super::record::destination(&args.recording)?)
    } else {
        None
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the event loop")?;
    runtime.block_on(serve(
        args,
        addr,
        netns,
        user.as_ref(),
        Arc::new(web),
        destination,
    ))
}

async fn serve(
    args: &ServeArgs,
    addr: SocketAddr,
    netns: Option<u32>,
    user: Option<&crate::least_privilege::User>,
    web: Arc<WebConfig>,
    destination: Option<Destination>,
) -> anyhow::Result<ExitCode> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| UsageError(format!("cannot listen on {addr}: {e}")))?;
    // With port 0 the kernel picks one: announce and exclude the one it picked.
    let addr = listener.local_addr().unwrap_or(addr);
    let scope = DumpScope {
        port: None,
        v4: true,
        v6: true,
        netns,
        all_netns: args.ns.all_netns,
        // The exporter's own connections (scrapes) are not the host's traffic.
        own: Some(OwnEndpoint {
            netns: own_netns(),
            port: addr.port(),
        }),
        left_out: None,
    };
    let mut feed = Feed::start(
        &FeedOptions {
            hook: args.probe.hook,
            ring_kib: args.probe.ring_kib,
            scope,
            poll: args.poll,
            lifetimes: destination.is_some(),
        },
        None,
    )?;
    if let (Some(_), DataSource::Polling { reason }) = (&destination, feed.source()) {
        return Err(UsageError(format!(
            "serve --record needs the kernel programs, and they are not loaded ({reason})"
        ))
        .into());
    }
    super::run_on_least_privilege(
        user,
        super::beyond_own_netns(args.ns.all_netns, netns),
        feed.probe(),
    )?;
    let mut ports = PortWatch::new(scope);
    let source = match feed.source() {
        DataSource::Ebpf { hook, .. } => format!("ebpf {hook}"),
        DataSource::Polling { reason } => format!("polling ({reason})"),
        // serve runs on a live feed.
        DataSource::Recorded { from, .. } => format!("recorded ({from})"),
    };
    let interval = Duration::from_secs_f64(args.interval);
    let (resets, drops) = feed.probe().map_or_else(Default::default, |p| {
        (p.reset_reasons().clone(), p.drop_reasons().clone())
    });
    // One names cache for the metrics and the recorder.
    let names = crate::procs::workload::SharedNames::default();
    let shared = Arc::new(Shared {
        metrics: Mutex::new(Metrics::new(&source, names.clone())),
        conns: Mutex::new(ConnLog::new(
            args.timeline_events as usize,
            args.timelines as usize,
            resets,
            drops,
        )),
        heartbeat: AtomicU64::new(clock::monotonic_ns()),
        // Three missed refreshes (and at least 10 s) mean the loop is stuck.
        stale_after_ns: (interval * 3).max(Duration::from_secs(10)).as_nanos() as u64,
    });
    let mut recorder = match destination {
        Some(d) => {
            let sink = matches!(d, Destination::ClickHouse(_));
            if let Ok(mut m) = shared.metrics.lock() {
                m.enable_recording(sink);
            }
            eprintln!(
                "sockstat serve: recording connections into {}",
                super::record::into(&args.recording)
            );
            Some(super::record::recorder(&args.recording, d, names)?)
        }
        None => None,
    };
    feed.refresh_now().await;
    if let Ok(mut m) = shared.metrics.lock() {
        m.refresh(&feed, &ports.forecast(&feed));
    }
    let scheme = if web.tls.is_some() { "https" } else { "http" };
    let auth = if web.auth.is_enabled() {
        ", basic auth"
    } else {
        ""
    };
    eprintln!("sockstat serve: {scheme}://{addr}/metrics ({source}{auth}); SIGTERM stops it");
    let server = tokio::spawn(http::serve(listener, shared.clone(), web));

    let mut sigterm = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let mut drain = tokio::time::interval(DRAIN);
    let mut refresh = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = drain.tick() => observe(&shared, &mut feed, recorder.as_mut()),
            _ = refresh.tick() => {
                observe(&shared, &mut feed, recorder.as_mut());
                feed.refresh().await;
                let headroom = ports.forecast(&feed);
                let overflow = shared.conns.lock().map(|c| c.overflow()).unwrap_or_default();
                if let Ok(mut m) = shared.metrics.lock() {
                    m.refresh(&feed, &headroom);
                    m.timelines(overflow.0, overflow.1);
                    if let Some(r) = &recorder {
                        m.recording(&r.progress());
                    }
                }
                shared.heartbeat.store(clock::monotonic_ns(), Ordering::Relaxed);
            }
            step = feed.reconcile_step() => {
                if let (Ok(mut m), Ok(mut c)) = (shared.metrics.lock(), shared.conns.lock()) {
                    let mut recorder = recorder.as_mut();
                    feed.reconcile(step, &mut |o| {
                        m.observe(o);
                        c.observe(o);
                        if let Some(r) = recorder.as_deref_mut() {
                            r.observe(o);
                        }
                    });
                }
            }
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
        }
    }
    server.abort();
    if let Some(mut r) = recorder {
        observe(&shared, &mut feed, Some(&mut r));
        eprintln!("sockstat serve: {}", r.finish(feed.probe()));
    }
    eprintln!("sockstat serve: stopped");
    Ok(ExitCode::SUCCESS)
}

/// Hands what the kernel reported to the metrics, the timelines and the recorder.
fn observe(shared: &Shared, feed: &mut Feed, mut recorder: Option<&mut Recorder>) {
    if let (Ok(mut m), Ok(mut c)) = (shared.metrics.lock(), shared.conns.lock()) {
        feed.drain(&mut |o: &Output| {
            m.observe(o);
            c.observe(o);
            if let Some(r) = recorder.as_deref_mut() {
                r.observe(o);
            }
        });
    }
}
