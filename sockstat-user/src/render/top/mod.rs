//! `sockstat top`'s screen: a [`Snapshot`] and the UI state in, ratatui widgets out. No
//! terminal I/O here, so the same code draws the live screen, `--once`, and golden tests.
pub mod diagram;

use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Clear, Paragraph, Row, Table, Wrap},
};

use crate::live::dashboard::{DataSource, Snapshot, TopRow};

pub const MIN_WIDTH: u16 = 80;
pub const MIN_HEIGHT: u16 = 24;
const HEADER: u16 = 4;
const BODY: u16 = diagram::HEIGHT + 2;
const STATES_MIN_WIDTH: u16 = MIN_WIDTH - (diagram::WIDTH + 2);

/// The panels `Tab` moves between.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Panel {
    States,
    Machine,
    Remote,
    Ports,
    Processes,
    Pods,
    ClosedPorts,
    Events,
    Trouble,
}

impl Panel {
    const ORDER: [Panel; 9] = [
        Panel::States,
        Panel::Machine,
        Panel::Remote,
        Panel::Ports,
        Panel::Processes,
        Panel::Pods,
        Panel::ClosedPorts,
        Panel::Events,
        Panel::Trouble,
    ];

    pub fn next(self) -> Panel {
        let i = Self::ORDER.iter().position(|p| *p == self).unwrap_or(0);
        Self::ORDER[(i + 1) % Self::ORDER.len()]
    }

    fn is_bottom(self) -> bool {
        !matches!(self, Panel::States | Panel::Machine)
    }

    fn title(self) -> &'static str {
        match self {
            Panel::States => "States",
            Panel::Machine => "TCP state machine",
            Panel::Remote => "Remote addresses",
            Panel::Ports => "Local ports",
            Panel::Processes => "Processes",
            Panel::Pods => "Pods and containers",
            Panel::ClosedPorts => "Closed ports hit",
            Panel::Events => "Latest events",
            Panel::Trouble => "Retransmits, drops, port headroom",
        }
    }
}

/// What the user is doing, as opposed to what the numbers are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UiState {
    pub focus: Panel,
    /// The bottom panel shown when only one fits (the last bottom panel focused).
    pub bottom: Panel,
    pub help: bool,
    /// `Some` while the filter is being edited: the text so far.
    pub editing: Option<String>,
    /// Why the last filter edit was refused.
    pub filter_error: Option<String>,
}

impl Default for UiState {
    fn default() -> Self {
        UiState {
            focus: Panel::States,
            bottom: Panel::Remote,
            help: false,
            editing: None,
            filter_error: None,
        }
    }
}

impl UiState {
    pub fn next_panel(&mut self) {
        self.focus = self.focus.next();
        if self.focus.is_bottom() {
            self.bottom = self.focus;
        }
    }
}

/// A count in at most four characters: 999, 1.2k, 12k, 123k, 1.2M.
pub fn count(n: u64) -> String {
    let f = n as f64;
    match n {
        0..=999 => n.to_string(),
        1_000..=9_999 => format!("{:.1}k", f / 1e3),
        10_000..=999_999 => format!("{:.0}k", (f / 1e3).floor()),
        1_000_000..=9_999_999 => format!("{:.1}M", f / 1e6),
        _ => format!("{:.0}M", (f / 1e6).floor()),
    }
}

/// A per-second rate in at most four characters: 0.4, 12, 999, 1.2k, 12k.
pub fn rate(r: f64) -> String {
    if r < 10.0 {
        let s = format!("{r:.1}");
        s.strip_suffix(".0").map_or(s.clone(), str::to_string)
    } else if r < 1000.0 {
        format!("{}", r.round() as u64)
    } else {
        count(r as u64)
    }
}

/// `values` as a sparkline of at most `width` cells, newest on the right.
pub fn sparkline(values: &[u64], width: usize) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let shown = &values[values.len().saturating_sub(width)..];
    let max = shown.iter().copied().max().unwrap_or(0);
    shown
        .iter()
        .map(|&v| {
            if v == 0 || max == 0 {
                ' '
            } else {
                let level = ((v as f64 / max as f64) * 7.0).round() as usize;
                BARS[level.min(7)]
            }
        })
        .collect()
}

/// Draws the whole screen.
/// `top --once` as text: the screen drawn once, at the terminal's size (within the
/// dashboard's minimum and 40 lines), without a terminal.
pub fn write_once(
    out: &mut impl std::io::Write,
    snap: &Snapshot,
    (width, height): (u16, u16),
) -> std::io::Result<()> {
    let (width, height) = (width.max(MIN_WIDTH), height.clamp(MIN_HEIGHT, 40));
    // An in-memory backend cannot fail.
    let Ok(mut terminal) =
        ratatui::Terminal::new(ratatui::backend::TestBackend::new(width, height));
    let Ok(_) = terminal.draw(|f| draw(f, snap, &UiState::default()));
    let buf = terminal.backend().buffer();
    for y in 0..height {
        let line: String = (0..width)
            .map(|x| buf.cell((x, y)).map_or(" ", |c| c.symbol()))
            .collect();
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

pub fn draw(frame: &mut Frame, snap: &Snapshot, ui: &UiState) {
    let area = frame.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        draw_too_small(frame, area);
        return;
    }
    let [header, body, bottom] = Layout::vertical([
        Constraint::Length(HEADER),
        Constraint::Length(BODY),
        Constraint::Min(0),
    ])
    .areas(area);
    draw_header(frame, header, snap, ui);
    let states_width = area
        .width
        .saturating_sub(diagram::WIDTH + 2)
        .max(STATES_MIN_WIDTH);
    let [states, machine] =
        Layout::horizontal([Constraint::Length(states_width), Constraint::Min(0)]).areas(body);
    draw_states(frame, states, snap, ui);
    draw_machine(frame, machine, snap, ui);
    draw_bottom(frame, bottom, snap, ui);
    if ui.help {
        draw_help(frame, area);
    }
}

fn draw_too_small(frame: &mut Frame, area: Rect) {
    let text = format!(
        "terminal too small: {}x{}, sockstat top needs {MIN_WIDTH}x{MIN_HEIGHT} (q quits)",
        area.width, area.height
    );
    frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }), area);
}

fn panel(ui: &UiState, which: Panel, title: String) -> Block<'static> {
    let style = if ui.focus == which {
        Style::new().fg(Color::Cyan)
    } else {
        Style::new()
    };
    Block::bordered().title(title).border_style(style)
}

fn rate_span(label: &str, value: Option<f64>, style: Option<Style>) -> Vec<Span<'static>> {
    let value = value.map_or("n/a".to_string(), |v| format!("{}/s", rate(v)));
    let style = style.unwrap_or_default();
    vec![
        Span::raw(format!("{label} ")),
        Span::styled(value, style),
        Span::raw("  "),
    ]
}

fn draw_header(frame: &mut Frame, area: Rect, snap: &Snapshot, ui: &UiState) {
    let source = match &snap.source {
        DataSource::Ebpf { hook, .. } => {
            Span::styled(format!("eBPF {hook}"), Style::new().fg(Color::Green))
        }
        DataSource::Polling { reason } => Span::styled(
            format!("polling sock_diag: {reason}"),
            Style::new().fg(Color::Yellow),
        ),
        DataSource::Recorded { from, at } => Span::styled(
            format!("replay of {from} at {at}"),
            Style::new().fg(Color::Cyan),
        ),
    };
    // Unreadable counters are shown as such, never as 0.
    let known = |n: Option<u64>| n.map_or_else(|| "?".to_string(), |n| n.to_string());
    let alarm = Style::new().fg(Color::Red).add_modifier(Modifier::BOLD);
    let lost_style =
        if snap.lost_events.is_none_or(|n| n > 0) || snap.missed_runs.is_none_or(|n| n > 0) {
            alarm
        } else {
            Style::new()
        };
    // One line per subject, each fitting 80 columns: health, connection rates, resets and
    // the filter, then keys (or alerts, or the filter being edited).
    let mut first = vec![
        Span::styled("sockstat top", Style::new().add_modifier(Modifier::BOLD)),
        Span::raw(" │ "),
        source,
        Span::raw(" │ "),
        Span::styled(
            if snap.missed_runs == Some(0) {
                format!("lost {}", known(snap.lost_events))
            } else {
                format!(
                    "lost {} skipped {}",
                    known(snap.lost_events),
                    known(snap.missed_runs)
                )
            },
            lost_style,
        ),
        Span::raw(format!(
            " │ repairs {} │ synth {}",
            count(snap.reconcile_repairs),
            count(snap.synthesized)
        )),
    ];
    if !snap.skipped_netns.is_empty() {
        first.push(Span::styled(
            format!(" │ netns skipped {}", snap.skipped_netns.len()),
            alarm,
        ));
    }
    if snap.paused {
        first.push(Span::styled(
            " PAUSED",
            Style::new().fg(Color::Black).bg(Color::Yellow),
        ));
    }
    let r = &snap.rates;
    let mut second = Vec::new();
    second.extend(rate_span("SYN-SENT", r.syn_sent, Some(yellow())));
    second.extend(rate_span("TIME-WAIT", r.time_wait, Some(yellow())));
    second.extend(rate_span("transitions", r.transitions, None));
    second.extend(rate_span("conn err", r.connect_errors, None));
    // A scan lights up: refused connects here, resets from closed ports there.
    let lit = |v: Option<f64>| v.is_some_and(|v| v > 0.0).then_some(alarm);
    second.extend(rate_span("refused", r.refused, lit(r.refused)));
    let mut third = Vec::new();
    third.extend(rate_span("rst in", r.resets_in, None));
    third.extend(rate_span("out", r.resets_out, None));
    third.extend(rate_span(
        "closed-port",
        r.closed_port_resets,
        lit(r.closed_port_resets),
    ));
    third.extend(rate_span("retx", r.retransmits, None));
    third.extend(rate_span("drops", r.drops, None));
    // The ss filter `f` edits, then the workload selection it does not (set at start).
    let filter = match (snap.filter.is_empty(), &snap.workload) {
        (true, None) => "none".to_string(),
        (false, None) => snap.filter.clone(),
        (true, Some(w)) => w.to_string(),
        (false, Some(w)) => format!("{} {w}", snap.filter),
    };
    let used: usize = third.iter().map(|s| s.content.chars().count()).sum();
    third.push(Span::raw(format!(
        "│ filter: {}",
        fit(&filter, usize::from(area.width).saturating_sub(used + 10))
    )));
    let fourth = if let Some(text) = &ui.editing {
        let mut spans = vec![
            Span::styled("filter> ", Style::new().fg(Color::Cyan)),
            Span::raw(format!("{text}█")),
        ];
        if let Some(err) = &ui.filter_error {
            spans.push(Span::styled(
                format!("  {err}"),
                Style::new().fg(Color::Red),
            ));
        }
        Line::from(spans)
    } else {
        let firing: Vec<String> = snap
            .alerts
            .iter()
            .filter(|a| a.firing)
            .map(|a| format!("{} (now {})", a.alert, rate(a.value)))
            .collect();
        if firing.is_empty() {
            let keys = match snap.source {
                DataSource::Recorded { .. } => format!(
                    "←/→ {} earlier/later  PgUp/PgDn a minute  q quit",
                    super::numfmt::duration((snap.interval_s * 1e9) as u64)
                ),
                _ => format!(
                    "q quit  p pause  f filter  s sort ({})  Tab panel  ? help",
                    snap.sort.name()
                ),
            };
            Line::from(Span::styled(keys, Style::new().fg(Color::DarkGray)))
        } else {
            Line::from(Span::styled(
                format!("ALERT {}", firing.join(" · ")),
                Style::new()
                    .fg(Color::White)
                    .bg(Color::Red)
                    .add_modifier(Modifier::BOLD),
            ))
        }
    };
    frame.render_widget(
        Paragraph::new(vec![
            Line::from(first),
            Line::from(second),
            Line::from(third),
            fourth,
        ]),
        area,
    );
}

fn yellow() -> Style {
    Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD)
}

/// `text` in at most `width` characters, cut with an ellipsis.
fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

fn draw_states(frame: &mut Frame, area: Rect, snap: &Snapshot, ui: &UiState) {
    let block = panel(
        ui,
        Panel::States,
        format!(
            "States: {} (last {}s)",
            snap.total,
            crate::live::dashboard::HISTORY_SECS
        ),
    );
    let inner = block.inner(area);
    frame.render_widget(block, area);
    // "CLOSE-WAIT " + count (6) + space, then the sparkline.
    let spark_width = usize::from(inner.width).saturating_sub(18);
    let alerting: Vec<&str> = snap
        .alerts
        .iter()
        .filter(|a| a.firing)
        .map(|a| a.alert.split(' ').next().unwrap_or(""))
        .collect();
    let lines: Vec<Line> = snap
        .states
        .iter()
        .map(|row| {
            let metric = row.state.to_ascii_lowercase();
            let name_style = if alerting.contains(&metric.as_str()) {
                Style::new().fg(Color::White).bg(Color::Red)
            } else if row.state == "SYN-SENT" || row.state == "TIME-WAIT" {
                Style::new().fg(Color::Yellow)
            } else {
                Style::new()
            };
            Line::from(vec![
                Span::styled(format!("{:<10}", row.state), name_style),
                Span::styled(
                    format!("{:>7} ", row.count),
                    Style::new().add_modifier(Modifier::BOLD),
                ),
                Span::styled(
                    sparkline(&row.history, spark_width),
                    Style::new().fg(Color::Cyan),
                ),
            ])
        })
        .collect();
    frame.render_widget(Paragraph::new(lines), inner);
}

fn draw_machine(frame: &mut Frame, area: Rect, snap: &Snapshot, ui: &UiState) {
    let block = panel(ui, Panel::Machine, Panel::Machine.title().to_string());
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let per_edge = !matches!(snap.source, DataSource::Polling { .. });
    let pad = inner.width.saturating_sub(diagram::WIDTH) / 2;
    let target = Rect {
        x: inner.x + pad,
        width: inner.width - pad,
        ..inner
    };
    frame.render_widget(
        Paragraph::new(diagram::lines(&snap.edges, per_edge)),
        target,
    );
}

fn draw_bottom(frame: &mut Frame, area: Rect, snap: &Snapshot, ui: &UiState) {
    if area.height < 3 {
        return;
    }
    // Tables and events side by side need room for a few rows of each.
    if area.height >= 16 {
        let [tops, events] =
            Layout::vertical([Constraint::Length(area.height / 2), Constraint::Min(0)]).areas(area);
        // Addresses need the most room, ports the least.
        let [a, b, c, d] = Layout::horizontal([
            Constraint::Fill(4),
            Constraint::Fill(3),
            Constraint::Fill(3),
            Constraint::Fill(4),
        ])
        .areas(tops);
        draw_top(frame, a, snap, ui, Panel::Remote, false);
        draw_top(frame, b, snap, ui, Panel::Ports, false);
        // Processes share their column with pods and containers where any is known.
        if snap.top_pods.is_empty() {
            draw_top(frame, c, snap, ui, Panel::Processes, false);
        } else {
            let [processes, pods] =
                Layout::vertical([Constraint::Fill(1), Constraint::Fill(1)]).areas(c);
            draw_top(frame, processes, snap, ui, Panel::Processes, false);
            draw_top(frame, pods, snap, ui, Panel::Pods, false);
        }
        draw_closed_ports(frame, d, snap, ui, false);
        let rows = snap.retransmitting.len() + snap.drops.len() + snap.ports.len();
        let trouble_height = (rows as u16 + 3).clamp(4, events.height / 2 + 1);
        let [events, trouble] =
            Layout::vertical([Constraint::Min(0), Constraint::Length(trouble_height)])
                .areas(events);
        draw_events(frame, events, snap, ui);
        draw_trouble(frame, trouble, snap, ui, false);
    } else {
        match ui.bottom {
            Panel::Events => draw_events(frame, area, snap, ui),
            Panel::Trouble => draw_trouble(frame, area, snap, ui, true),
            Panel::ClosedPorts => draw_closed_ports(frame, area, snap, ui, true),
            Panel::Ports | Panel::Processes | Panel::Pods => {
                draw_top(frame, area, snap, ui, ui.bottom, true)
            }
            _ => draw_top(frame, area, snap, ui, Panel::Remote, true),
        }
    }
}

/// Closed ports that answered with an RST (`*:PORT` here, `ADDR:PORT` refusing a connect
/// from here), most hit first: a port scan shows as a column of ports.
fn draw_closed_ports(frame: &mut Frame, area: Rect, snap: &Snapshot, ui: &UiState, compact: bool) {
    let mut title = Panel::ClosedPorts.title().to_string();
    if compact {
        title.push_str(" (Tab: more)");
    }
    let block = panel(ui, Panel::ClosedPorts, title);
    let header = Row::new(["", "rst", "rst/s"]).style(Style::new().add_modifier(Modifier::BOLD));
    let body: Vec<Row> = snap
        .closed_ports
        .iter()
        .map(|r| Row::new([r.port.clone(), count(r.count), rate(r.rate)]))
        .collect();
    let table = Table::new(
        body,
        [
            Constraint::Min(5),
            Constraint::Length(5),
            Constraint::Length(5),
        ],
    )
    .header(header)
    .block(block);
    frame.render_widget(table, area);
}

/// One of the top tables; `compact` when it is the only bottom panel shown, so its title
/// says that Tab shows the others.
fn draw_top(
    frame: &mut Frame,
    area: Rect,
    snap: &Snapshot,
    ui: &UiState,
    which: Panel,
    compact: bool,
) {
    let rows: &[TopRow] = match which {
        Panel::Ports => &snap.top_local_ports,
        Panel::Processes => &snap.top_processes,
        Panel::Pods => &snap.top_pods,
        _ => &snap.top_remote,
    };
    // Side by side the key line says the sort; alone, the title says it and that Tab shows
    // the others.
    let mut title = which.title().to_string();
    if compact {
        title.push_str(&format!(" by {} (Tab: more)", snap.sort.name()));
    }
    let block = panel(ui, which, title);
    let header = Row::new(["", "conns", "chrn/s"]).style(Style::new().add_modifier(Modifier::BOLD));
    let body: Vec<Row> = rows
        .iter()
        .map(|r| Row::new([r.key.clone(), r.connections.to_string(), rate(r.churn)]))
        .collect();
    let table = Table::new(
        body,
        [
            Constraint::Min(5),
            Constraint::Length(5),
            Constraint::Length(6),
        ],
    )
    .header(header)
    .block(block);
    frame.render_widget(table, area);
}

/// Where connections suffer: the connections that retransmitted most, the kernel's drop
/// reasons, and the destinations nearest running out of ephemeral ports (ports left and
/// the forecast).
fn draw_trouble(frame: &mut Frame, area: Rect, snap: &Snapshot, ui: &UiState, compact: bool) {
    let mut title = Panel::Trouble.title().to_string();
    if compact {
        title.push_str(" (Tab: more)");
    }
    let block = panel(ui, Panel::Trouble, title);
    let header = Row::new(["", "n", "/s, eta"]).style(Style::new().add_modifier(Modifier::BOLD));
    let retransmits = snap.retransmitting.iter().map(|r| {
        Row::new([
            format!("retx → {} {}", r.remote, r.process),
            count(r.count),
            String::new(),
        ])
    });
    let drops = snap.drops.iter().map(|d| {
        Row::new([format!("drop {}", d.reason), count(d.count), rate(d.rate)])
            .style(Style::new().fg(Color::Magenta))
    });
    let ports = snap.ports.iter().map(|p| {
        let soon = p.exhaustion_s.is_some_and(|s| s < 300.0);
        let row = Row::new([
            format!("ports left → {}", p.destination),
            count(p.available),
            p.exhaustion_s
                .map_or_else(|| "-".to_string(), |s| format!("{}s", count(s as u64))),
        ]);
        if soon {
            row.style(Style::new().fg(Color::Red).add_modifier(Modifier::BOLD))
        } else {
            row
        }
    });
    let table = Table::new(
        retransmits.chain(drops).chain(ports).collect::<Vec<_>>(),
        [
            Constraint::Min(5),
            Constraint::Length(5),
            Constraint::Length(7),
        ],
    )
    .header(header)
    .block(block);
    frame.render_widget(table, area);
}

fn draw_events(frame: &mut Frame, area: Rect, snap: &Snapshot, ui: &UiState) {
    let block = panel(ui, Panel::Events, Panel::Events.title().to_string());
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let lines: Vec<Line> = if matches!(snap.source, DataSource::Polling { .. }) {
        vec![Line::from(Span::styled(
            "no events while polling: run as root (or with CAP_BPF and CAP_PERFMON) for live transitions",
            Style::new().fg(Color::Yellow),
        ))]
    } else {
        snap.events
            .iter()
            .take(usize::from(inner.height))
            .map(|e| {
                let mut spans = vec![
                    Span::styled(format!("{:>8.3}s ", e.t), Style::new().fg(Color::DarkGray)),
                    Span::styled(
                        format!("{:<24}", format!("{}→{}", e.from, e.to)),
                        Style::new().add_modifier(Modifier::BOLD),
                    ),
                    Span::raw(format!(" {} ⇄ {}", e.local, e.remote)),
                ];
                if !e.process.is_empty() {
                    spans.push(Span::raw(format!(" {}", e.process)));
                }
                if !e.cause.is_empty() {
                    spans.push(Span::styled(
                        format!(" {}", e.cause),
                        Style::new().fg(Color::Magenta),
                    ));
                }
                if e.synthesized {
                    spans.push(Span::styled(
                        " (synthesized)",
                        Style::new().fg(Color::DarkGray),
                    ));
                }
                Line::from(spans)
            })
            .collect()
    };
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
}

const HELP: &[&str] = &[
    "q, Ctrl-C  quit",
    "p          pause / resume the display (counting goes on)",
    "f          edit the filter (ss syntax: state, sport, dport, src, dst, ...);",
    "           Enter applies, Esc cancels; an error is shown inline",
    "s          sort the top tables by connections or by churn",
    "Tab        move between panels (at 80x24 it also switches the bottom panel)",
    "?          this help",
    "",
    "Edges in the state machine: count since start, rate over the last interval;",
    "green ones fired in it; edges the RFC figure lacks are on its last line.",
    "Closed ports hit: *:PORT here answered with an RST (a scan, a dead service);",
    "ADDR:PORT refused a connect from here. Synthesized entries were inferred.",
    "Retransmits, drops, ports: the most retransmitting connections, drops by",
    "reason, ports left per destination, and the time until EADDRNOTAVAIL.",
];

fn draw_help(frame: &mut Frame, area: Rect) {
    let width = 78.min(area.width);
    let height = (HELP.len() as u16 + 2).min(area.height);
    let popup = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    };
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(HELP.iter().map(|l| Line::from(*l)).collect::<Vec<_>>())
            .block(Block::bordered().title("help (any key closes)")),
        popup,
    );
}

#[cfg(test)]
mod tests;
