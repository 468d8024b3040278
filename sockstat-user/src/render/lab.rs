//! `sockstat lab` results: the observed path drawn on the state machine, next to each
//! socket's expected path with one line per edge; or one JSON object per exercise.
use std::io::{self, Write};

use ratatui::{
    style::{Color, Modifier},
    text::Line,
};
use serde_json::{Value, json};

use crate::{
    lab::{
        Exercise, Outcome,
        course::{self, Covered, Linux, Part},
        path::Edge,
    },
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

/// Each role's expected edges, marked against what was observed, wrapped to `width`: the
/// mark and the edge first, the explanation hanging under it.
fn role_lines(outcome: &Outcome, color: bool, width: usize) -> Vec<String> {
    let (ok, bad) = if color {
        ("\x1b[32m✓\x1b[0m", "\x1b[1;31m✗\x1b[0m")
    } else {
        ("✓", "✗")
    };
    let mut lines = Vec::new();
    for r in &outcome.roles {
        // Roles are short names ("client", "server").
        lines.push(r.role.clone());
        let n = r.expected.len().max(r.observed.len());
        for i in 0..n {
            let (m, edge, text) = match (r.expected.get(i), r.observed.get(i)) {
                (Some(w), Some(g)) if w.edge == *g => (ok, edge_text(g), w.why.to_string()),
                (Some(w), Some(g)) => (
                    bad,
                    edge_text(g),
                    format!("expected {} ({})", edge_text(&w.edge), w.why),
                ),
                (Some(w), None) => (
                    bad,
                    "(nothing)".to_string(),
                    format!("expected {} ({}), not observed", edge_text(&w.edge), w.why),
                ),
                (None, Some(g)) => (bad, edge_text(g), "not expected".to_string()),
                (None, None) => continue,
            };
            marked(&mut lines, m, &edge, &text, width);
        }
    }
    lines
}

/// `text` wrapped to `width` and hanging at `indent`, its first line after `lead` (which
/// fills the first `indent` columns; colour codes aside).
fn hanging(lead: &str, text: &str, indent: usize, width: usize) -> Vec<String> {
    let mut lines = crate::render::wrap(text, indent, indent, width.max(indent + 20));
    if let Some(first) = lines.first_mut() {
        *first = format!("{lead}{}", first.trim_start());
    }
    lines
}

/// "  ✓ EDGE  text", the text wrapped to `width` and hanging under itself.
fn marked(lines: &mut Vec<String>, mark: &str, edge: &str, text: &str, width: usize) {
    const EDGE: usize = 24;
    lines.extend(hanging(
        &format!("  {mark} {edge:<EDGE$} "),
        text,
        4 + EDGE + 1,
        width,
    ));
}

/// One exercise's result laid out for `width` columns: the state machine with the observed
/// edges lit and, beside it when there is room (below it otherwise), each role's path.
pub fn write_text(
    out: &mut impl Write,
    ex: &Exercise,
    outcome: &Outcome,
    color: bool,
    width: usize,
) -> io::Result<()> {
    for l in crate::render::wrap(&format!("== {}: {}", ex.name, ex.teaches), 0, 3, width) {
        writeln!(out, "{l}")?;
    }
    let left: Vec<String> = diagram::lines(&observed_edges(outcome), true)
        .iter()
        .map(|l| plain(l, color))
        .collect();
    let diagram_width = usize::from(diagram::WIDTH);
    // Side by side needs the diagram, a separator and a readable column.
    let beside = width >= diagram_width + 3 + 40;
    if beside {
        let right = role_lines(outcome, color, width - diagram_width - 3);
        // Diagram lines are exactly WIDTH cells wide (colour codes aside).
        for i in 0..left.len().max(right.len()) {
            let l = left
                .get(i)
                .cloned()
                .unwrap_or_else(|| " ".repeat(diagram_width));
            let r = right.get(i).map_or("", String::as_str);
            writeln!(out, "{}", format!("{l} │ {r}").trim_end())?;
        }
    } else {
        for l in &left {
            writeln!(out, "{}", l.trim_end())?;
        }
        for r in role_lines(outcome, color, width) {
            writeln!(out, "{r}")?;
        }
    }
    for f in &outcome.facts {
        let mark = if f.ok { "✓" } else { "✗" };
        let text = format!(
            "{mark} {}: {} (expected {})",
            f.what, f.observed, f.expected
        );
        for l in crate::render::wrap(&text, 2, 4, width) {
            writeln!(out, "{l}")?;
        }
    }
    for n in &outcome.notes {
        for l in crate::render::wrap(&format!("note: {n}"), 2, 8, width) {
            writeln!(out, "{l}")?;
        }
    }
    let verdict = match outcome.first_failure() {
        None => format!("PASS {}", ex.name),
        Some(why) => format!("FAIL {}: {why}", ex.name),
    };
    for l in crate::render::wrap(&verdict, 0, 5, width) {
        writeln!(out, "{l}")?;
    }
    writeln!(out)
}

pub fn json(ex: &Exercise, outcome: &Outcome) -> Value {
    json!({
        "name": ex.name,
        "teaches": ex.teaches,
        "part": ex.part.title(),
        "shows": ex.shows.iter().map(edge_text).collect::<Vec<_>>(),
        "passed": outcome.passed(),
        "failure": outcome.first_failure(),
        "roles": outcome.roles,
        "facts": outcome.facts,
        "notes": outcome.notes,
    })
}

/// An exercise's edges as text; an edge RFC 9293 does not have says so.
fn shows_text(e: &Exercise) -> String {
    if e.shows.is_empty() {
        return "no edge: the connection stays in ESTAB throughout".to_string();
    }
    let edges: Vec<String> = e
        .shows
        .iter()
        .map(|edge| match course::rfc_edge(*edge) {
            Some(_) => edge_text(edge),
            None => format!("{} (Linux only)", edge_text(edge)),
        })
        .collect();
    edges.join(", ")
}

/// `lab list`: the course part by part, in teaching order; each exercise with what it
/// teaches and the edges it shows.
pub fn write_list(out: &mut impl Write, exercises: &[Exercise], width: usize) -> io::Result<()> {
    const NAME: usize = 20;
    const HANG: usize = 2 + NAME + 1;
    for (i, part) in Part::ALL.iter().enumerate() {
        let in_part: Vec<&Exercise> = exercises.iter().filter(|e| e.part == *part).collect();
        if in_part.is_empty() {
            continue;
        }
        writeln!(out, "{}. {}", i + 1, part.title())?;
        for e in in_part {
            for l in hanging(&format!("  {:<NAME$} ", e.name), e.teaches, HANG, width) {
                writeln!(out, "{l}")?;
            }
            let shows = format!("shows: {}", shows_text(e));
            for l in crate::render::wrap(&shows, HANG, HANG + 7, width) {
                writeln!(out, "{l}")?;
            }
        }
        writeln!(out)?;
    }
    Ok(())
}

/// `lab coverage`: the state machine with every edge coloured (shown by an exercise,
/// RFC-only, or not covered yet), then each edge with the exercises that show it or what
/// Linux does instead.
pub fn write_coverage(
    out: &mut impl Write,
    covered: &[Covered],
    color: bool,
    width: usize,
) -> io::Result<()> {
    writeln!(out, "RFC 9293's state diagram, edge by edge, in the lab")?;
    let rows: Vec<EdgeRow> = covered
        .iter()
        .filter(|c| !c.shown_by.is_empty())
        .map(|c| EdgeRow {
            from: c.edge.from.ss_name().to_string(),
            to: c.edge.to.ss_name().to_string(),
            count: c.shown_by.len() as u64,
            rate: 0.0,
            lit: true,
            key: (c.edge.from.kernel_number(), c.edge.to.kernel_number()),
        })
        .collect();
    for l in diagram::coverage(&rows) {
        writeln!(out, "{}", plain(&l, color).trim_end())?;
    }
    let legend = "Each arrow's number: the exercises that show the edge (green). Dashed (yellow): RFC 9293 only, Linux never takes it. Grey: not covered yet.";
    for l in crate::render::wrap(legend, 0, 0, width) {
        writeln!(out, "{l}")?;
    }
    writeln!(out)?;
    const EDGE: usize = 26;
    const HANG: usize = EDGE + 1;
    let (rfc, beyond): (Vec<&Covered>, Vec<&Covered>) =
        covered.iter().partition(|c| c.rfc.is_some());
    let line = |out: &mut dyn Write, edge: &str, text: &str| -> io::Result<()> {
        for l in hanging(&format!("{edge:<EDGE$} "), text, HANG, width) {
            writeln!(out, "{l}")?;
        }
        Ok(())
    };
    for c in &rfc {
        let what = c.rfc.unwrap_or_default();
        let text = match c.linux {
            Linux::Never { instead, shown_by } => {
                format!("{what}. RFC only: {instead} (see {shown_by})")
            }
            Linux::Takes if c.shown_by.is_empty() => format!("{what}. NOT COVERED"),
            Linux::Takes => format!("{what}. Shown by {}", c.shown_by.join(", ")),
        };
        line(out, &edge_text(&c.edge), &text)?;
    }
    if !beyond.is_empty() {
        writeln!(
            out,
            "\nBeyond RFC 9293's figure (aborts and failures Linux reports):"
        )?;
        for c in &beyond {
            line(
                out,
                &edge_text(&c.edge),
                &format!("shown by {}", c.shown_by.join(", ")),
            )?;
        }
    }
    let takes = rfc.iter().filter(|c| c.linux == Linux::Takes).count();
    let shown = rfc
        .iter()
        .filter(|c| c.linux == Linux::Takes && !c.shown_by.is_empty())
        .count();
    writeln!(
        out,
        "\n{shown} of the {takes} RFC edges Linux takes are shown; {} are RFC-only and explained; {} not covered",
        rfc.len() - takes,
        takes - shown
    )
}

/// `lab coverage --json`: one object per edge.
pub fn write_coverage_json(out: &mut impl Write, covered: &[Covered]) -> io::Result<()> {
    for c in covered {
        let (linux, instead, see) = match c.linux {
            Linux::Takes => ("takes", None, None),
            Linux::Never { instead, shown_by } => ("never", Some(instead), Some(shown_by)),
        };
        super::json_line(
            out,
            &json!({
                "edge": edge_text(&c.edge),
                "rfc": c.rfc,
                "linux": linux,
                "instead": instead,
                "instead_shown_by": see,
                "shown_by": c.shown_by,
            }),
        )?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        lab::{
            Fact, RoleResult,
            exercises::{CHILD_OPEN, CLIENT_OPEN, EXERCISES},
        },
        tcp::TcpState::*,
    };

    /// The handshake exercise with the server's path gone wrong, a fact and a note.
    fn fixture() -> (&'static Exercise, Outcome) {
        let client = CLIENT_OPEN.to_vec();
        let server = CHILD_OPEN.to_vec();
        let client_seen = client.iter().map(|s| (s.edge, String::new())).collect();
        let server_seen = vec![
            (server[0].edge, String::new()),
            (Edge::new(SynRecv, Close), String::new()),
        ];
        let outcome = Outcome {
            roles: vec![
                RoleResult::new("client", client, client_seen),
                RoleResult::new("server", server, server_seen),
            ],
            facts: vec![Fact::new(
                "the listener's accept queue after accept()",
                "0",
                "0",
                true,
            )],
            notes: vec![
                "the kernel reports the child's LISTEN -> SYN-RECV before the child has an identity; it is shown with the child's".into(),
            ],
        };
        (&EXERCISES[0], outcome)
    }

    /// Golden screens at 80 columns (the diagram, then the paths below it) and at 120 (side
    /// by side); no line is wider than the terminal.
    #[test]
    fn lays_out_for_the_terminal_width() {
        let (ex, outcome) = fixture();
        for width in [80, 120] {
            let mut out = Vec::new();
            write_text(&mut out, ex, &outcome, false, width).unwrap();
            let text = String::from_utf8(out).unwrap();
            for line in text.lines() {
                assert!(line.chars().count() <= width, "{width}: {line:?}");
            }
            super::super::golden::check(&format!("golden/lab_{width}.txt"), &text);
        }
    }

    /// The course part by part, every exercise once, in EXERCISES's order, within the
    /// width; each names its edges.
    #[test]
    fn the_list_is_the_course_in_parts() {
        let mut out = Vec::new();
        write_list(&mut out, EXERCISES, 80).unwrap();
        let text = String::from_utf8(out).unwrap();
        for line in text.lines() {
            assert!(line.chars().count() <= 80, "{line:?}");
        }
        let heads: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()))
            .collect();
        assert_eq!(heads.len(), Part::ALL.len(), "{text}");
        let listed: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("  "))
            .filter(|l| !l.starts_with(' '))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        let names: Vec<&str> = EXERCISES.iter().map(|e| e.name).collect();
        assert_eq!(listed, names);
        let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(flat.contains("shows: SYN-SENT -> SYN-RECV, SYN-RECV -> ESTAB"));
        assert!(flat.contains("shows: ESTAB -> CLOSE (Linux only)"));
    }

    /// Every RFC edge has its line, the RFC-only ones say what Linux does instead, and
    /// nothing is left uncovered; golden at 100 columns, coloured and not.
    #[test]
    fn coverage_names_every_edge() {
        let covered = course::coverage(EXERCISES);
        let mut out = Vec::new();
        write_coverage(&mut out, &covered, false, 100).unwrap();
        let text = String::from_utf8(out).unwrap();
        for r in &course::RFC_EDGES {
            let edge = edge_text(&r.edge);
            assert!(
                text.lines().any(|l| l.starts_with(&edge)),
                "{edge} not listed:\n{text}"
            );
        }
        let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
        assert_eq!(flat.matches(". RFC only:").count(), 3, "{text}");
        assert!(!flat.contains("NOT COVERED"), "{text}");
        assert!(flat.contains("18 of the 18 RFC edges Linux takes are shown"));
        super::super::golden::check("golden/lab_coverage_100.txt", &text);
        let mut colored = Vec::new();
        write_coverage(&mut colored, &covered, true, 100).unwrap();
        let colored = String::from_utf8(colored).unwrap();
        // The dashed RFC-only edges are yellow, shown edges green.
        assert!(colored.contains("\x1b[33m⇡\x1b[0m"), "{colored}");
        assert!(colored.contains("\x1b[1;32m↓1\x1b[0m"), "{colored}");
        let mut json = Vec::new();
        write_coverage_json(&mut json, &covered).unwrap();
        let json = String::from_utf8(json).unwrap();
        assert_eq!(json.lines().count(), covered.len());
        let never: Vec<Value> = json
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|v| v["linux"] == "never")
            .collect();
        assert_eq!(never.len(), 3);
        assert!(never.iter().all(|v| v["instead"].is_string()));
    }
}
