//! `sockstat top`: the live table and the kernel's counters on one screen, redrawn 4 times a
//! second; or one snapshot (`--once`, `--json`) for scripts. Without BPF it polls sock_diag.
use std::{
    collections::HashMap,
    io::{self, IsTerminal, Write},
    process::ExitCode,
    sync::Arc,
    time::Duration,
};

use anyhow::Context as _;
use ratatui::crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use tokio::{
    signal::unix::{Signal, SignalKind, signal},
    sync::mpsc,
};

use super::{UsageError, args::TopArgs};
use crate::{
    agent::{CgroupGate, DumpScope, Feed, FeedOptions, PortWatch},
    alert::Alert,
    filter::Filter,
    live::{
        Output, clock,
        dashboard::{Dashboard, Snapshot, SnapshotContext, SortBy},
        replay::Change,
    },
    procs::workload::{SharedNames, Workload, WorkloadFilter},
    render::top::{self as screen, UiState},
};

const REDRAW: Duration = Duration::from_millis(250);
const DRAIN: Duration = Duration::from_millis(50);

pub fn run(args: &TopArgs) -> anyhow::Result<ExitCode> {
    let filter_text = args.filter.join(" ");
    let filter = parse_filter(&filter_text, args).map_err(UsageError)?;
    let alerts = crate::alert::parse_all(&args.alert, &Snapshot::metric_names())
        .map_err(|e| UsageError(e.to_string()))?;
    if let Some(source) = &args.replay {
        return replay(args, source, (&filter, &filter_text), &alerts);
    }
    let netns = super::NetnsChoice::open(&args.ns.one)?.inode();
    let user = super::user_of(&args.privilege)?;
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
    runtime.block_on(top(args, netns, user, filter, filter_text, alerts))
}

fn parse_filter(text: &str, args: &TopArgs) -> Result<Filter, String> {
    Filter::parse_str(text, &args.ip.tcp_filter_context()).map_err(|e| e.to_string())
}

fn feed_options(args: &TopArgs, netns: Option<u32>) -> FeedOptions {
    FeedOptions {
        hook: args.probe.hook,
        ring_kib: args.probe.ring_kib,
        scope: DumpScope {
            port: None,
            v4: args.ip.v4(),
            v6: args.ip.v6(),
            netns,
            all_netns: args.ns.all_netns,
            own: None,
            left_out: None,
        },
        poll: args.poll,
        lifetimes: false,
    }
}

/// The owners' containers' names, for `top_pods` (one shared string per group) and for
/// the --pod/--k8s-namespace/--container filter: one cache for both.
struct Groups {
    filter: Option<WorkloadFilter>,
    names: SharedNames,
    labels: std::cell::RefCell<HashMap<Arc<Workload>, Arc<str>>>,
}

impl Groups {
    fn new(filter: Option<WorkloadFilter>) -> Groups {
        Groups {
            filter,
            names: Default::default(),
            labels: Default::default(),
        }
    }

    /// Whether the socket passes the filter, and its group (pod or container) if any.
    fn of(&self, pid: Option<u32>, netns: u32) -> (bool, Option<Arc<str>>) {
        let w = self
            .names
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .of_owner(pid, netns);
        let wanted = self.filter.as_ref().is_none_or(|f| f.matches(w.as_deref()));
        (wanted, w.and_then(|w| self.label(w)))
    }

    fn label(&self, w: Arc<Workload>) -> Option<Arc<str>> {
        let mut labels = self.labels.borrow_mut();
        if let Some(label) = labels.get(&w) {
            return Some(label.clone());
        }
        let label: Arc<str> = w.group()?.into();
        // Bounded like the names themselves.
        if labels.len() >= crate::procs::workload::CAPACITY {
            labels.clear();
        }
        labels.insert(w, label.clone());
        Some(label)
    }
}

/// A transition reaches the dashboard when it passes the filter as trace judges it; a reset
/// when its socket's state (CLOSE for a closed port: no socket) and addresses pass.
fn observe(o: &Output, filter: &Filter, groups: &Groups, dash: &mut Dashboard) {
    let named = |pid: Option<u32>, netns: u32| groups.filter.is_none() || groups.of(pid, netns).0;
    match o {
        Output::Transition(t) => {
            let states = [t.old.kernel_number(), t.new.kernel_number()];
            if filter.matches_tcp_states(&states, t.local, t.remote) {
                let (wanted, group) = groups.of(t.owner.pid, t.netns);
                if wanted {
                    dash.observe_in(t, group);
                }
            }
        }
        Output::Reset(r) => {
            let state = r
                .state
                .map_or(sockstat_common::tcp_state::CLOSE, |s| s.kernel_number());
            if filter.matches_tcp(state, r.local, r.remote) && named(r.owner.pid, r.netns) {
                dash.observe_reset(r);
            }
        }
        Output::Retransmit(r) => {
            if filter.matches_tcp(r.what.state.kernel_number(), r.local, r.remote)
                && named(r.owner.pid, r.netns)
            {
                dash.observe_retransmit(r);
            }
        }
        Output::Lifetime(_) | Output::Drop(_) | Output::Rtt(_) => {}
    }
}

/// Ends an interval: every socket that passes the filter is counted; the kernel's drop
/// counts and the port headroom (of every socket: ports run out per namespace) are read.
fn sample(
    feed: &Feed,
    filter: &Filter,
    groups: &Groups,
    dash: &mut Dashboard,
    ports: &mut PortWatch,
) {
    let mut sockets = Vec::new();
    feed.for_each_socket(|mut s| {
        if !filter.matches_tcp(s.state.kernel_number(), s.local, s.remote) {
            return;
        }
        let (wanted, group) = groups.of(s.owner.map(|(pid, _)| pid), s.netns);
        if wanted {
            s.pod = group;
            sockets.push(s);
        }
    });
    dash.sample(sockets);
    if let Some(drops) = feed.drop_counts() {
        dash.sample_drops(drops);
    }
    dash.sample_ports(ports.forecast(feed));
}

fn context<'a>(
    feed: &Feed,
    (filter, workload): (&str, Option<&WorkloadFilter>),
    paused: bool,
    sort: SortBy,
    alerts: &'a [Alert],
) -> SnapshotContext<'a> {
    let stats = feed.tracker_stats();
    let counters = feed.counters();
    SnapshotContext {
        source: feed.source(),
        filter: filter.to_string(),
        workload: workload.cloned(),
        paused,
        sort,
        // Polling streams nothing, so nothing is lost; a failed read is unknown, not 0.
        lost_events: if feed.is_ebpf() {
            counters.map(|c| c.lost)
        } else {
            Some(0)
        },
        // Unknown, not 0, where the kernel does not count them (a classic tracepoint
        // before 6.7).
        missed_runs: if let Some(probe) = feed.probe() {
            counters
                .filter(|_| probe.skipped_runs_counted())
                .map(|c| c.missed_runs)
        } else {
            Some(0)
        },
        skipped_netns: feed
            .skipped_netns()
            .iter()
            .map(ToString::to_string)
            .collect(),
        repairs: stats.repairs,
        synthesized: stats.synthesized,
        alerts,
    }
}

async fn top(
    args: &TopArgs,
    netns: Option<u32>,
    user: Option<crate::least_privilege::User>,
    mut filter: Filter,
    mut filter_text: String,
    alerts: Vec<Alert>,
) -> anyhow::Result<ExitCode> {
    let options = feed_options(args, netns);
    let groups = Groups::new(args.workload.filter());
    let gate = groups
        .filter
        .clone()
        .map(|filter| CgroupGate::new(filter, groups.names.clone()));
    let mut feed = Feed::start(&options, gate)?;
    super::run_on_least_privilege(
        user.as_ref(),
        super::beyond_own_netns(args.ns.all_netns, netns),
        feed.probe(),
    )?;
    let mut ports = PortWatch::new(options.scope);
    let per_edge = feed.is_ebpf();
    let mut dash = Dashboard::new(args.interval, per_edge, clock::monotonic_ns());
    // The first sample should not be empty; drop rates start from the counts now.
    feed.refresh_now().await;
    if let Some(drops) = feed.drop_counts() {
        dash.sample_drops(drops);
    }
    if args.once {
        return once(
            args,
            &mut feed,
            &mut dash,
            &mut ports,
            (&filter, &groups),
            &filter_text,
            &alerts,
        )
        .await;
    }

    let mut quit = QuitSignals::install()?;
    let mut keys = key_reader();
    let mut terminal = ratatui::try_init().context("setting up the terminal")?;
    let result: anyhow::Result<()> = async {
        let mut ui = UiState::default();
        let mut paused = false;
        let mut sort = SortBy::Connections;
        let mut sample_timer = tokio::time::interval(Duration::from_secs_f64(args.interval));
        sample_timer.tick().await;
        // The first screen already shows the counts.
        sample(&feed, &filter, &groups, &mut dash, &mut ports);
        let mut redraw = tokio::time::interval(REDRAW);
        let mut drain = tokio::time::interval(DRAIN);
        let mut snap = dash.snapshot(context(&feed, (&filter_text, groups.filter.as_ref()), paused, sort, &alerts));
        loop {
            tokio::select! {
                _ = drain.tick() => feed.drain(&mut |t| observe(t, &filter, &groups, &mut dash)),
                _ = sample_timer.tick() => {
                    feed.drain(&mut |t| observe(t, &filter, &groups, &mut dash));
                    // Polling: count from the newest finished dump; keep one running.
                    feed.refresh().await;
                    sample(&feed, &filter, &groups, &mut dash, &mut ports);
                }
                step = feed.reconcile_step() => {
                    feed.reconcile(step, &mut |t| observe(t, &filter, &groups, &mut dash));
                }
                _ = redraw.tick() => {
                    if !paused {
                        snap = dash.snapshot(context(&feed, (&filter_text, groups.filter.as_ref()), paused, sort, &alerts));
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
                    match handle_key(key, &mut ui, args, &filter_text) {
                        Action::Quit => break,
                        Action::Pause => paused = !paused,
                        Action::Sort => sort = sort.next(),
                        Action::NewFilter(text, parsed) => {
                            filter = parsed;
                            filter_text = text;
                            // Counts since start would mix two filters: start over.
                            dash = Dashboard::new(args.interval, per_edge, clock::monotonic_ns());
                            sample(&feed, &filter, &groups, &mut dash, &mut ports);
                        }
                        Action::None => {}
                    }
                    if !paused {
                        snap = dash.snapshot(context(&feed, (&filter_text, groups.filter.as_ref()), paused, sort, &alerts));
                    }
                    snap.paused = paused;
                    terminal.draw(|f| screen::draw(f, &snap, &ui))?;
                }
                _ = quit.recv() => break,
            }
        }
        Ok(())
    }
    .await;
    ratatui::try_restore().context("restoring the terminal")?;
    result?;
    Ok(ExitCode::SUCCESS)
}

enum Action {
    None,
    Quit,
    Pause,
    Sort,
    NewFilter(String, Filter),
}

/// One key press. The filter editor (`f`) starts from the filter in force; Ctrl-U clears
/// the line and Ctrl-W deletes the word before the cursor, as in a shell.
fn handle_key(key: KeyEvent, ui: &mut UiState, args: &TopArgs, current_filter: &str) -> Action {
    if key.kind != KeyEventKind::Press {
        return Action::None;
    }
    let ctrl_c = key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
    if ctrl_c {
        return Action::Quit;
    }
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    if let Some(text) = ui.editing.as_mut() {
        match key.code {
            KeyCode::Char('u') if ctrl => text.clear(),
            KeyCode::Char('w') if ctrl => {
                let kept = text.trim_end().rfind(' ').map_or(0, |i| i + 1);
                text.truncate(kept);
            }
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
            ui.editing = Some(current_filter.to_string());
            Action::None
        }
        KeyCode::Tab => {
            ui.next_panel();
            Action::None
        }
        _ => Action::None,
    }
}

/// The signals that end top like `q` does, so the terminal is restored (in raw mode a typed
/// Ctrl-C is a key, not a signal).
struct QuitSignals {
    term: Signal,
    int: Signal,
    hup: Signal,
    quit: Signal,
}

impl QuitSignals {
    fn install() -> anyhow::Result<QuitSignals> {
        let install = |kind: SignalKind, name: &str| {
            signal(kind).with_context(|| format!("installing the {name} handler"))
        };
        Ok(QuitSignals {
            term: install(SignalKind::terminate(), "SIGTERM")?,
            int: install(SignalKind::interrupt(), "SIGINT")?,
            hup: install(SignalKind::hangup(), "SIGHUP")?,
            quit: install(SignalKind::quit(), "SIGQUIT")?,
        })
    }

    /// Until one of them arrives.
    async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
            _ = self.hup.recv() => {}
            _ = self.quit.recv() => {}
        }
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
    ports: &mut PortWatch,
    (filter, groups): (&Filter, &Groups),
    filter_text: &str,
    alerts: &[Alert],
) -> anyhow::Result<ExitCode> {
    let end = tokio::time::Instant::now() + Duration::from_secs_f64(args.interval);
    let mut drain = tokio::time::interval(DRAIN);
    while tokio::time::Instant::now() < end {
        tokio::select! {
            _ = drain.tick() => feed.drain(&mut |t| observe(t, filter, groups, dash)),
            _ = tokio::time::sleep_until(end) => {}
        }
    }
    feed.drain(&mut |t| observe(t, filter, groups, dash));
    feed.refresh_now().await;
    sample(feed, filter, groups, dash, ports);
    let snap = dash.snapshot(context(
        feed,
        (filter_text, groups.filter.as_ref()),
        false,
        SortBy::Connections,
        alerts,
    ));
    print_once(args, &snap)
}

/// How far before `--at` a replay reads changes to rebuild the sockets open then: a
/// socket whose last change is older is not known to it.
const REPLAY_LOOKBACK: Duration = Duration::from_secs(3600);
/// The last stretch before `--at` that the dashboard observes and samples, interval by
/// interval: its one-minute history and the churn window.
const REPLAY_SAMPLED: Duration = Duration::from_secs(120);
/// How far past `--at` a replay on a terminal reads, so the moment can move forward too.
const REPLAY_AHEAD: Duration = Duration::from_secs(3600);
/// PgUp/PgDn in a replay move the moment by this; ←/→ by the interval.
const REPLAY_PAGE: Duration = Duration::from_secs(60);

/// `top --replay SRC --at T`: the dashboard as of T, from recorded state changes. On a
/// terminal (without --once) the moment moves with the arrow keys.
fn replay(
    args: &TopArgs,
    source: &str,
    (filter, filter_text): (&Filter, &str),
    alerts: &[Alert],
) -> anyhow::Result<ExitCode> {
    use super::args::{HistoryArgs, PointInTime};
    if args.ns.all_netns || args.ns.one.net.is_some() {
        return Err(UsageError(
            "top --replay shows what was recorded, each socket with its namespace: -N and --all-netns do not apply".to_string(),
        )
        .into());
    }
    let from = if source.starts_with("clickhouse://") {
        Some(
            source
                .parse::<crate::history::clickhouse::Url>()
                .map_err(|e| UsageError(e.to_string()))?,
        )
    } else {
        None
    };
    let now = crate::history::now_ns();
    let at = args.at.map_or(now, |p| p.ns(now)).max(0);
    let since = at.saturating_sub(REPLAY_LOOKBACK.as_nanos() as i64);
    let scrub = !args.once && io::stdout().is_terminal() && io::stdin().is_terminal();
    let until = if scrub {
        at.saturating_add(REPLAY_AHEAD.as_nanos() as i64).min(now)
    } else {
        at
    }
    .max(at);
    let wall = crate::history::system_time;
    let selection = HistoryArgs {
        store: std::path::PathBuf::from(source),
        from,
        host: args.host.clone(),
        since: PointInTime::At(wall(since)),
        // The last moment itself included.
        until: Some(PointInTime::At(wall(until + 1))),
        pid: None,
        comm: None,
        workload: Default::default(),
        transitions: true,
        json: false,
        no_header: false,
        filter: Vec::new(),
    };
    let super::history::Answer::Transitions(rows) = super::history::fetch(&selection)? else {
        return Err(
            UsageError("the store answered with connections, not transitions".into()).into(),
        );
    };
    if rows.is_empty() {
        return Err(UsageError(format!(
            "{source}: no state changes recorded from {} to {}: top --replay needs `sockstat record --transitions`",
            humantime::format_rfc3339_seconds(wall(since)),
            humantime::format_rfc3339_seconds(wall(until))
        ))
        .into());
    }
    let selected = args.workload.filter();
    let changes: Vec<Change> = rows
        .iter()
        .filter_map(|(_, r)| crate::history::transition_of(r))
        .map(|(transition, names)| Change {
            wanted: selected.as_ref().is_none_or(|f| f.matches(Some(&names))),
            group: names.group().map(Arc::from),
            transition,
        })
        .collect();
    let view = Replay {
        changes,
        source,
        filter,
        filter_text,
        selected,
        interval_s: args.interval,
        alerts,
    };
    if !scrub {
        return print_once(args, &view.at(at as u64));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the event loop")?;
    runtime.block_on(scrub_replay(&view, at as u64, (since as u64, until as u64)))
}

/// What a replay shows at any moment: the recorded changes and the view's options.
struct Replay<'a> {
    changes: Vec<Change>,
    source: &'a str,
    filter: &'a Filter,
    filter_text: &'a str,
    selected: Option<WorkloadFilter>,
    interval_s: f64,
    alerts: &'a [Alert],
}

impl Replay<'_> {
    /// The dashboard as of `at` (wall-clock ns): the changes up to it rebuild the sockets,
    /// and the last two minutes are observed interval by interval.
    fn at(&self, at: u64) -> Snapshot {
        let interval = Duration::from_secs_f64(self.interval_s).as_nanos() as u64;
        let sampled_from = at.saturating_sub(REPLAY_SAMPLED.as_nanos() as u64);
        let mut dash = Dashboard::new(self.interval_s, true, sampled_from);
        let filter = self.filter;
        // Oldest first: what happened by the moment is a prefix (a scrubbing replay also
        // holds what came after it).
        let upto = self.changes.partition_point(|c| c.transition.ts_ns <= at);
        let changes = &self.changes[..upto];
        crate::live::replay::replay(
            &mut dash,
            changes,
            (sampled_from, at, interval),
            |c| {
                let t = &c.transition;
                c.wanted
                    && filter.matches_tcp_states(
                        &[t.old.kernel_number(), t.new.kernel_number()],
                        t.local,
                        t.remote,
                    )
            },
            |state, local, remote| filter.matches_tcp(state.kernel_number(), local, remote),
        );
        let shown =
            humantime::format_rfc3339_seconds(crate::history::system_time(at as i64)).to_string();
        dash.snapshot(crate::live::replay::context(
            self.source,
            shown,
            (self.filter_text, self.selected.clone()),
            changes,
            self.alerts,
        ))
    }
}

/// The replay on a terminal: ←/→ move the moment by the interval, PgUp/PgDn by a minute,
/// within what was read (`bounds`); q, Esc, Ctrl-C or a signal end it, the terminal restored.
async fn scrub_replay(
    view: &Replay<'_>,
    mut at: u64,
    bounds: (u64, u64),
) -> anyhow::Result<ExitCode> {
    let mut quit_signals = QuitSignals::install()?;
    let mut keys = key_reader();
    let mut terminal = ratatui::try_init().context("setting up the terminal")?;
    let step = Duration::from_secs_f64(view.interval_s).as_nanos() as u64;
    let page = REPLAY_PAGE.as_nanos() as u64;
    let result: anyhow::Result<()> = async {
        let ui = UiState::default();
        loop {
            let snap = view.at(at);
            terminal.draw(|f| screen::draw(f, &snap, &ui))?;
            let first = tokio::select! {
                key = keys.recv() => key,
                _ = quit_signals.recv() => None,
            };
            let Some(first) = first else { break };
            // Keys typed while a moment was being rebuilt are taken together: one redraw.
            let mut events = vec![first];
            while let Ok(more) = keys.try_recv() {
                events.push(more);
            }
            let mut quit = false;
            for event in events {
                match replay_key(&event, at, (step, page)) {
                    ReplayKey::Quit => quit = true,
                    ReplayKey::To(moment) => at = moment.max(bounds.0).min(bounds.1),
                    // A resize, or a key of no use here: drawn again as it is.
                    ReplayKey::Stay => {}
                }
            }
            if quit {
                break;
            }
        }
        Ok(())
    }
    .await;
    ratatui::try_restore().context("restoring the terminal")?;
    result?;
    Ok(ExitCode::SUCCESS)
}

enum ReplayKey {
    Quit,
    To(u64),
    Stay,
}

/// What a key does to the replay's moment `at`: ←/→ (h/l) move it by `step`, PgUp/PgDn by
/// `page`; q, Esc and Ctrl-C quit.
fn replay_key(event: &Event, at: u64, (step, page): (u64, u64)) -> ReplayKey {
    let Event::Key(key) = event else {
        return ReplayKey::Stay;
    };
    if key.kind != KeyEventKind::Press {
        return ReplayKey::Stay;
    }
    if key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL) {
        return ReplayKey::Quit;
    }
    match key.code {
        KeyCode::Char('q') | KeyCode::Esc => ReplayKey::Quit,
        KeyCode::Left | KeyCode::Char('h') => ReplayKey::To(at.saturating_sub(step)),
        KeyCode::Right | KeyCode::Char('l') => ReplayKey::To(at.saturating_add(step)),
        KeyCode::PageUp => ReplayKey::To(at.saturating_sub(page)),
        KeyCode::PageDown => ReplayKey::To(at.saturating_add(page)),
        _ => ReplayKey::Stay,
    }
}

/// One snapshot on stdout (`--json`: NDJSON); exit 1 when an alert fires.
fn print_once(args: &TopArgs, snap: &Snapshot) -> anyhow::Result<ExitCode> {
    let mut out = io::stdout().lock();
    if args.json {
        crate::render::json_line(&mut out, snap)?;
    } else {
        let size = ratatui::crossterm::terminal::size().unwrap_or((120, 40));
        screen::write_once(&mut out, snap, size)?;
    }
    out.flush()?;
    Ok(if snap.alerts.iter().any(|a| a.firing) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use ratatui::crossterm::event::{KeyEventState, KeyModifiers};

    use super::*;

    fn press(code: KeyCode, modifiers: KeyModifiers) -> Event {
        Event::Key(KeyEvent {
            code,
            modifiers,
            kind: KeyEventKind::Press,
            state: KeyEventState::NONE,
        })
    }

    #[test]
    fn replay_keys_move_the_moment() {
        let none = KeyModifiers::NONE;
        let to = |code, at| match replay_key(&press(code, none), at, (1_000, 60_000)) {
            ReplayKey::To(t) => Some(t),
            _ => None,
        };
        assert_eq!(to(KeyCode::Right, 5_000), Some(6_000));
        assert_eq!(to(KeyCode::Left, 5_000), Some(4_000));
        assert_eq!(to(KeyCode::Left, 500), Some(0));
        assert_eq!(to(KeyCode::PageDown, 5_000), Some(65_000));
        assert_eq!(to(KeyCode::PageUp, 5_000), Some(0));
        assert_eq!(to(KeyCode::Char('p'), 5_000), None);
        for quit in [
            press(KeyCode::Char('q'), none),
            press(KeyCode::Esc, none),
            press(KeyCode::Char('c'), KeyModifiers::CONTROL),
        ] {
            assert!(matches!(replay_key(&quit, 0, (1, 1)), ReplayKey::Quit));
        }
        assert!(matches!(
            replay_key(&Event::Resize(80, 24), 0, (1, 1)),
            ReplayKey::Stay
        ));
    }
}
