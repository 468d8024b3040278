//! `sockstat top`: the live table and the kernel's counters on one screen, redrawn 4 times a
//! second; or one snapshot (`--once`, `--json`) for scripts. Without BPF it polls sock_diag.
use std::{
    io::{self, IsTerminal, Write},
    process::ExitCode,
    time::Duration,
};

use anyhow::Context as _;
use ratatui::{
    Terminal,
    backend::TestBackend,
    crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers},
};
use sockstat_common::ProbeConfig;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};

use super::{UsageError, args::TopArgs};
use crate::{
    agent::{DumpScope, ReconcileStep, Reconciler, dump_tcp},
    alert::Alert,
    ebpf::{
        DecodeError, HookChoice, KernelEvent, Probe, ProbeOptions, privilege, ring::EventStream,
    },
    filter::{Filter, ParseContext},
    live::{
        Baseline, Output, Tracker, clock,
        dashboard::{Dashboard, DataSource, Snapshot, SnapshotContext, SockView, SortBy},
    },
    render::top::{self as screen, UiState},
    tcp::ReportedState,
};

const REDRAW: Duration = Duration::from_millis(250);
const DRAIN: Duration = Duration::from_millis(50);
const RECONCILE: Duration = Duration::from_secs(5);

pub fn run(args: &TopArgs) -> anyhow::Result<ExitCode> {
    if !(0.1..=3600.0).contains(&args.interval) || !args.interval.is_finite() {
        return Err(UsageError(format!(
            "--interval {}: must be between 0.1 and 3600 seconds",
            args.interval
        ))
        .into());
    }
    let filter_text = args.filter.join(" ");
    let filter = parse_filter(&filter_text, args).map_err(UsageError)?;
    let names = Snapshot::metric_names();
    let alerts = args
        .alert
        .iter()
        .map(|a| Alert::parse(a, &names))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| UsageError(e.to_string()))?;
    let interactive = io::stdout().is_terminal() && io::stdin().is_terminal();
    if !args.once && !interactive {
        return Err(UsageError(
            "sockstat top needs a terminal; for scripts use --once (and --json)".to_string(),
        )
        .into());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the event loop")?;
    runtime.block_on(top(args, filter, filter_text, alerts))
}

fn parse_filter(text: &str, args: &TopArgs) -> Result<Filter, String> {
    Filter::parse_str(
        text,
        &ParseContext {
            tcp: true,
            udp: false,
            only_v4: args.ipv4,
            only_v6: args.ipv6,
        },
    )
    .map_err(|e| e.to_string())
}

/// Where the numbers come from.
enum Feed {
    Ebpf(Box<EbpfFeed>),
    Polling {
        reason: String,
        latest: Vec<Baseline>,
        pending: Option<tokio::task::JoinHandle<Vec<Baseline>>>,
    },
}

struct EbpfFeed {
    probe: Probe,
    events: EventStream,
    tracker: Tracker,
    reconciler: Reconciler,
    batch: Vec<Result<KernelEvent, DecodeError>>,
    outputs: Vec<Output>,
}

fn scope(args: &TopArgs) -> DumpScope {
    DumpScope {
        port: None,
        v4: !args.ipv6,
        v6: !args.ipv4,
        netns: None,
        all_netns: args.all_netns,
    }
}

fn start_feed(args: &TopArgs) -> anyhow::Result<Feed> {
    let polling = |reason: String| Feed::Polling {
        reason,
        latest: Vec::new(),
        pending: None,
    };
    if args.poll {
        return Ok(polling("--poll".to_string()));
    }
    if !privilege::can_trace() {
        return Ok(polling(
            "no BPF privilege, run as root for per-edge data".to_string(),
        ));
    }
    let family = if args.ipv4 {
        2
    } else if args.ipv6 {
        10
    } else {
        0
    };
    let ring_bytes = args.ring_kb.saturating_mul(1024).next_power_of_two();
    let opts = ProbeOptions {
        hook: args.hook,
        ring_kb: args.ring_kb,
        config: ProbeConfig {
            port: 0,
            family,
            netns: if args.all_netns {
                0
            } else {
                crate::agent::own_netns()
            },
            wakeup_bytes: ring_bytes / 4,
            emit_events: 1,
            _pad0: [0; 3],
        },
    };
    let mut probe = match Probe::attach(&opts) {
        Ok(p) => p,
        Err(e) => return Ok(polling(format!("kernel programs not loaded ({e})"))),
    };
    let events = EventStream::new(probe.take_events()?).context("polling the ring buffer")?;
    // Attached first, then the baseline: nothing falls between the two.
    let mut tracker = Tracker::default();
    let owners = crate::ebpf::owners::socket_owners_any();
    tracker.load_baseline(
        dump_tcp(scope(args), crate::filter::states::ALL, Some(&owners)).sockets,
        clock::monotonic_ns(),
    );
    Ok(Feed::Ebpf(Box::new(EbpfFeed {
        probe,
        events,
        tracker,
        reconciler: Reconciler::new(scope(args), RECONCILE),
        batch: Vec::with_capacity(256),
        outputs: Vec::with_capacity(256),
    })))
}

impl Feed {
    fn source(&self) -> DataSource {
        match self {
            Feed::Ebpf(f) => DataSource::Ebpf {
                hook: match f.probe.hook() {
                    HookChoice::TpBtf => "tp_btf".to_string(),
                    _ => "tracepoint".to_string(),
                },
            },
            Feed::Polling { reason, .. } => DataSource::Polling {
                reason: reason.clone(),
            },
        }
    }

    /// Applies queued kernel events; transitions that pass the filter reach the dashboard.
    fn drain(&mut self, filter: &Filter, dash: &mut Dashboard) {
        let Feed::Ebpf(f) = self else {
            return;
        };
        let EbpfFeed {
            events,
            tracker,
            batch,
            outputs,
            ..
        } = &mut **f;
        events.drain_now(batch);
        for event in batch.drain(..).flatten() {
            tracker.apply(&event, outputs);
        }
        tracker.settle(outputs);
        observe(outputs, filter, dash);
    }

    /// Ends an interval: every socket that passes the filter is counted.
    fn sample(&self, filter: &Filter, dash: &mut Dashboard) {
        let passes = |state: ReportedState, local, remote| {
            let n = match state {
                ReportedState::Known(t) => t.kernel_number(),
                ReportedState::Unknown(n) => n,
            };
            filter.matches_tcp(n, local, remote)
        };
        match self {
            Feed::Ebpf(f) => dash.sample(
                f.tracker
                    .entries()
                    .filter(|(_, e)| passes(e.state, e.local, e.remote))
                    .map(|(_, e)| SockView {
                        state: e.state,
                        local: e.local,
                        remote: e.remote,
                        owner: e
                            .owner
                            .pid
                            .map(|pid| (pid, e.owner.comm.as_ref().map_or("?", |c| c.as_str()))),
                    }),
            ),
            Feed::Polling { latest, .. } => dash.sample(
                latest
                    .iter()
                    .filter(|b| passes(ReportedState::from_kernel(b.state), b.local, b.remote))
                    .map(|b| SockView {
                        state: ReportedState::from_kernel(b.state),
                        local: b.local,
                        remote: b.remote,
                        owner: b.owner.as_ref().map(|(pid, comm)| (*pid, comm.as_str())),
                    }),
            ),
        }
    }

    fn context<'a>(
        &self,
        filter: &str,
        paused: bool,
        sort: SortBy,
        alerts: &'a [Alert],
    ) -> SnapshotContext<'a> {
        let (lost, stats) = match self {
            Feed::Ebpf(f) => (
                f.probe.counters().map(|c| c.lost).unwrap_or(0),
                f.tracker.stats(),
            ),
            Feed::Polling { .. } => (0, Default::default()),
        };
        SnapshotContext {
            source: self.source(),
            filter: filter.to_string(),
            paused,
            sort,
            lost_events: lost,
            repairs: stats.repairs,
            synthesized: stats.synthesized,
            alerts,
        }
    }
}

fn observe(outputs: &mut Vec<Output>, filter: &Filter, dash: &mut Dashboard) {
    for o in outputs.drain(..) {
        let Output::Transition(t) = o else { continue };
        let number = |s: ReportedState| match s {
            ReportedState::Known(k) => k.kernel_number(),
            ReportedState::Unknown(n) => n,
        };
        // Like trace: a transition passes when either end state is wanted.
        if filter.matches_tcp(number(t.new), t.local, t.remote)
            || filter.matches_tcp(number(t.old), t.local, t.remote)
        {
            dash.observe(&t);
        }
    }
}

/// A polling dump with owners, off the event loop.
fn spawn_poll(scope: DumpScope) -> tokio::task::JoinHandle<Vec<Baseline>> {
    tokio::task::spawn_blocking(move || {
        let owners = crate::ebpf::owners::socket_owners_any();
        dump_tcp(scope, crate::filter::states::ALL, Some(&owners)).sockets
    })
}

async fn top(
    args: &TopArgs,
    mut filter: Filter,
    mut filter_text: String,
    alerts: Vec<Alert>,
) -> anyhow::Result<ExitCode> {
    let mut feed = start_feed(args)?;
    let per_edge = matches!(feed, Feed::Ebpf(_));
    let mut dash = Dashboard::new(args.interval, per_edge, clock::monotonic_ns());
    if let Feed::Polling { latest, .. } = &mut feed {
        // The first sample should not be empty.
        *latest = spawn_poll(scope(args)).await.unwrap_or_default();
    }
    if args.once {
        return once(args, &mut feed, &mut dash, &filter, &filter_text, &alerts).await;
    }

    let mut sigterm = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut keys = key_reader();
    let mut terminal = ratatui::try_init().context("setting up the terminal")?;
    let result: anyhow::Result<()> = async {
        let mut ui = UiState::default();
        let mut paused = false;
        let mut sort = SortBy::Connections;
        let mut sample = tokio::time::interval(Duration::from_secs_f64(args.interval));
        sample.tick().await;
        // The first screen already shows the counts.
        feed.sample(&filter, &mut dash);
        let mut redraw = tokio::time::interval(REDRAW);
        let mut drain = tokio::time::interval(DRAIN);
        let mut snap = dash.snapshot(feed.context(&filter_text, paused, sort, &alerts));
        loop {
            tokio::select! {
                _ = drain.tick() => feed.drain(&filter, &mut dash),
                _ = sample.tick() => {
                    feed.drain(&filter, &mut dash);
                    if let Feed::Polling { latest, pending, .. } = &mut feed {
                        // Count from the newest finished dump; keep one dump running.
                        if pending.as_ref().is_some_and(|h| h.is_finished())
                            && let Some(h) = pending.take()
                        {
                            *latest = h.await.unwrap_or_default();
                        }
                        if pending.is_none() {
                            *pending = Some(spawn_poll(scope(args)));
                        }
                    }
                    feed.sample(&filter, &mut dash);
                }
                step = reconcile_step(&mut feed) => {
                    feed.drain(&filter, &mut dash);
                    if let Feed::Ebpf(f) = &mut feed {
                        match step {
                            ReconcileStep::Due => {
                                let lost = f.probe.counters().map(|c| c.lost).unwrap_or(0);
                                f.reconciler.start(lost);
                            }
                            ReconcileStep::Done(dump) => {
                                Reconciler::apply(dump, &mut f.tracker, &mut f.outputs);
                                observe(&mut f.outputs, &filter, &mut dash);
                            }
                        }
                    }
                }
                _ = redraw.tick() => {
                    if !paused {
                        snap = dash.snapshot(feed.context(&filter_text, paused, sort, &alerts));
                    }
                    snap.paused = paused;
                    terminal.draw(|f| screen::draw(f, &snap, &ui))?;
                }
                key = keys.recv() => {
                    let Some(event) = key else { break };
                    let Event::Key(key) = event else {
                        // A resize: redraw at once at the new size.
                        terminal.draw(|f| screen::draw(f, &snap, &ui))?;
                        continue;
                    };
                    match handle_key(key, &mut ui, args) {
                        Action::Quit => break,
                        Action::Pause => paused = !paused,
                        Action::Sort => sort = sort.next(),
                        Action::NewFilter(text, parsed) => {
                            filter = parsed;
                            filter_text = text;
                            // Counts since start would mix two filters: start over.
                            dash = Dashboard::new(args.interval, per_edge, clock::monotonic_ns());
                            feed.sample(&filter, &mut dash);
                        }
                        Action::None => {}
                    }
                    if !paused {
                        snap = dash.snapshot(feed.context(&filter_text, paused, sort, &alerts));
                    }
                    snap.paused = paused;
                    terminal.draw(|f| screen::draw(f, &snap, &ui))?;
                }
                _ = sigterm.recv() => break,
            }
        }
        Ok(())
    }
    .await;
    ratatui::try_restore().context("restoring the terminal")?;
    result?;
    Ok(ExitCode::SUCCESS)
}

/// The reconcile schedule, for the eBPF feed only (polling dumps everything anyway).
async fn reconcile_step(feed: &mut Feed) -> ReconcileStep {
    match feed {
        Feed::Ebpf(f) => f.reconciler.next().await,
        Feed::Polling { .. } => std::future::pending().await,
    }
}

enum Action {
    None,
    Quit,
    Pause,
    Sort,
    NewFilter(String, Filter),
}

fn handle_key(key: KeyEvent, ui: &mut UiState, args: &TopArgs) -> Action {
    if key.kind != KeyEventKind::Press {
        return Action::None;
    }
    let ctrl_c = key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
    if ctrl_c {
        return Action::Quit;
    }
    if let Some(text) = ui.editing.as_mut() {
        match key.code {
            KeyCode::Esc => {
                ui.editing = None;
                ui.filter_error = None;
            }
            KeyCode::Enter => {
                let text = text.trim().to_string();
                match parse_filter(&text, args) {
                    Ok(parsed) => {
                        ui.editing = None;
                        ui.filter_error = None;
                        return Action::NewFilter(text, parsed);
                    }
                    Err(e) => ui.filter_error = Some(e),
                }
            }
            KeyCode::Backspace => {
                text.pop();
            }
            KeyCode::Char(c) => text.push(c),
            _ => {}
        }
        return Action::None;
    }
    if ui.help {
        ui.help = false;
        return Action::None;
    }
    match key.code {
        KeyCode::Char('q') | KeyCode::Esc => Action::Quit,
        KeyCode::Char('p') => Action::Pause,
        KeyCode::Char('s') => Action::Sort,
        KeyCode::Char('?') => {
            ui.help = true;
            Action::None
        }
        KeyCode::Char('f') => {
            ui.editing = Some(String::new());
            Action::None
        }
        KeyCode::Tab => {
            ui.next_panel();
            Action::None
        }
        _ => Action::None,
    }
}

/// Terminal input on its own thread (crossterm's read blocks), handed to the event loop.
fn key_reader() -> mpsc::UnboundedReceiver<Event> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        while let Ok(event) = ratatui::crossterm::event::read() {
            if tx.send(event).is_err() {
                break;
            }
        }
    });
    rx
}

/// `--once`: one interval of data, then one snapshot on stdout.
async fn once(
    args: &TopArgs,
    feed: &mut Feed,
    dash: &mut Dashboard,
    filter: &Filter,
    filter_text: &str,
    alerts: &[Alert],
) -> anyhow::Result<ExitCode> {
    let end = tokio::time::Instant::now() + Duration::from_secs_f64(args.interval);
    let mut drain = tokio::time::interval(DRAIN);
    while tokio::time::Instant::now() < end {
        tokio::select! {
            _ = drain.tick() => feed.drain(filter, dash),
            _ = tokio::time::sleep_until(end) => {}
        }
    }
    feed.drain(filter, dash);
    if let Feed::Polling { latest, .. } = feed {
        *latest = spawn_poll(scope(args)).await.unwrap_or_default();
    }
    feed.sample(filter, dash);
    let snap = dash.snapshot(feed.context(filter_text, false, SortBy::Connections, alerts));
    let mut out = io::stdout().lock();
    if args.json {
        serde_json::to_writer(&mut out, &snap).context("writing JSON")?;
        writeln!(out)?;
    } else {
        let (width, height) = ratatui::crossterm::terminal::size().unwrap_or((120, 40));
        let (width, height) = (
            width.max(screen::MIN_WIDTH),
            height.clamp(screen::MIN_HEIGHT, 40),
        );
        let mut terminal = Terminal::new(TestBackend::new(width, height))?;
        terminal.draw(|f| screen::draw(f, &snap, &UiState::default()))?;
        let buf = terminal.backend().buffer();
        for y in 0..height {
            let line: String = (0..width)
                .map(|x| buf.cell((x, y)).map_or(" ", |c| c.symbol()))
                .collect();
            writeln!(out, "{}", line.trim_end())?;
        }
    }
    out.flush()?;
    Ok(if snap.alerts.iter().any(|a| a.firing) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
