//! `sockstat lab` results: the observed path drawn on the state machine, next to each
//! socket's expected path with one line per edge; or one JSON object per exercise.
use std::io::{self, Write};

use ratatui::{
    style::{Color, Modifier},
    text::Line,
};
use serde_json::{Value, json};

use crate::{
    lab::{Exercise, Outcome, path::Edge},
    live::{Source, Transition, dashboard::EdgeRow},
    render::top::diagram,
};

/// A diagram line as text, with ANSI colours when `color`.
fn plain(line: &Line, color: bool) -> String {
    let mut out = String::new();
    for span in &line.spans {
        let code = match (
            span.style.fg,
            span.style.add_modifier.contains(Modifier::BOLD),
        ) {
            (Some(Color::Green), _) => Some("1;32"),
            (Some(Color::DarkGray), _) => Some("90"),
            (Some(Color::Yellow), _) => Some("33"),
            (_, true) => Some("1"),
            _ => None,
        };
        match code {
            Some(c) if color => out.push_str(&format!("\x1b[{c}m{}\x1b[0m", span.content)),
            _ => out.push_str(&span.content),
        }
    }
    out
}

fn observed_edges(outcome: &Outcome) -> Vec<EdgeRow> {
    let mut rows: Vec<EdgeRow> = Vec::new();
    for edge in outcome.roles.iter().flat_map(|r| r.observed.iter()) {
        let key = (edge.from.kernel_number(), edge.to.kernel_number());
        match rows.iter_mut().find(|r| r.key == key) {
            Some(r) => r.count += 1,
            None => rows.push(EdgeRow {
                from: edge.from.ss_name().to_string(),
                to: edge.to.ss_name().to_string(),
                count: 1,
                rate: 0.0,
                lit: true,
                key,
            }),
        }
    }
    rows
}

fn edge_text(e: &Edge) -> String {
    format!("{} -> {}", e.from.ss_name(), e.to.ss_name())
}

/// The right-hand column: each role's expected edges, marked against what was observed.
fn role_lines(outcome: &Outcome, color: bool) -> Vec<String> {
    let (ok, bad) = if color {
        ("\x1b[32m✓\x1b[0m", "\x1b[1;31m✗\x1b[0m")
    } else {
        ("✓", "✗")
    };
    let mut lines = Vec::new();
    for r in &outcome.roles {
        lines.push(r.role.clone());
        let n = r.expected.len().max(r.observed.len());
        for i in 0..n {
            let want = r.expected.get(i);
            let got = r.observed.get(i);
            match (want, got) {
                (Some(w), Some(g)) if w.edge == *g => {
                    lines.push(format!("  {ok} {:<24} {}", edge_text(g), w.why));
                }
                (Some(w), Some(g)) => lines.push(format!(
                    "  {bad} {:<24} expected {} ({})",
                    edge_text(g),
                    edge_text(&w.edge),
                    w.why
                )),
                (Some(w), None) => lines.push(format!(
                    "  {bad} {:<24} expected {} ({}), not observed",
                    "(nothing)",
                    edge_text(&w.edge),
                    w.why
                )),
                (None, Some(g)) => {
                    lines.push(format!("  {bad} {:<24} not expected", edge_text(g)));
                }
                (None, None) => {}
            }
        }
    }
    lines
}

pub fn write_text(
    out: &mut impl Write,
    ex: &Exercise,
    outcome: &Outcome,
    color: bool,
) -> io::Result<()> {
    writeln!(out, "== {}: {}", ex.name, ex.teaches)?;
    let left: Vec<String> = diagram::lines(&observed_edges(outcome), true)
        .iter()
        .map(|l| plain(l, color))
        .collect();
    let right = role_lines(outcome, color);
    let width = usize::from(diagram::WIDTH);
    // Diagram lines are exactly WIDTH cells wide (colour codes aside).
    for i in 0..left.len().max(right.len()) {
        let l = left.get(i).cloned().unwrap_or_else(|| " ".repeat(width));
        let r = right.get(i).map_or("", String::as_str);
        writeln!(out, "{}", format!("{l} │ {r}").trim_end())?;
    }
    for f in &outcome.facts {
        let mark = if f.ok { "✓" } else { "✗" };
        writeln!(
            out,
            "  {mark} {}: {} (expected {})",
            f.what, f.observed, f.expected
        )?;
    }
    for n in &outcome.notes {
        writeln!(out, "  note: {n}")?;
    }
    match outcome.first_failure() {
        None => writeln!(out, "PASS {}\n", ex.name),
        Some(why) => writeln!(out, "FAIL {}: {why}\n", ex.name),
    }
}

pub fn json(ex: &Exercise, outcome: &Outcome) -> Value {
    json!({
        "name": ex.name,
        "teaches": ex.teaches,
        "passed": outcome.passed(),
        "failure": outcome.first_failure(),
        "roles": outcome.roles,
        "facts": outcome.facts,
        "notes": outcome.notes,
    })
}

/// `lab list`: one line per exercise.
pub fn write_list(out: &mut impl Write, exercises: &[Exercise]) -> io::Result<()> {
    for e in exercises {
        writeln!(out, "{:<20} {}", e.name, e.teaches)?;
    }
    Ok(())
}

/// An exercise that could not run, as its JSON line.
pub fn write_failure_json(out: &mut impl Write, name: &str, why: &str) -> io::Result<()> {
    super::json_line(out, &json!({"name": name, "passed": false, "failure": why}))
}

/// An exercise that could not run.
pub fn write_failure(out: &mut impl Write, name: &str, why: &str) -> io::Result<()> {
    writeln!(out, "FAIL {name}: {why}\n")
}

/// The tally after several exercises.
pub fn write_tally(out: &mut impl Write, passed: usize, total: usize) -> io::Result<()> {
    writeln!(out, "{passed} of {total} exercises passed")
}

/// `--slow`: a step announced.
pub fn write_step(out: &mut dyn Write, what: &str) -> io::Result<()> {
    writeln!(out, "\n▶ {what}")?;
    out.flush()
}

/// `--slow`: transitions as they are traced, `at` seconds into the run.
pub fn write_traced(out: &mut dyn Write, at: f64, traced: &[Transition]) -> io::Result<()> {
    for t in traced {
        writeln!(
            out,
            "    {at:>7.3}s  {:<24} {} ⇄ {}{}",
            format!("{} → {}", t.old, t.new),
            t.local,
            t.remote,
            if t.source == Source::Synthesized {
                " (synthesized)"
            } else {
                ""
            }
        )?;
    }
    out.flush()
}
