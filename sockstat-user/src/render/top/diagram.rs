//! The TCP state machine (RFC 793 fig. 6 / RFC 9293 fig. 5) laid out on a fixed character
//! grid: states where the RFC draws them, each edge as an arrow with its count and rate,
//! lit when it fired in the last interval. Edges the RFC figure does not draw (aborts,
//! failed connects) are listed on the last line. ratatui's Canvas draws in braille dots
//! and cannot place labelled arrows on cells, hence a small grid of our own.
use ratatui::{
    style::{Color, Modifier, Style},
    text::{Line, Span},
};

use super::{count, rate};
use crate::{live::dashboard::EdgeRow, tcp::TcpState};

/// The grid the diagram needs.
pub const WIDTH: u16 = 53;
pub const HEIGHT: u16 = 12;

/// A state box: where its name goes.
struct Node {
    name: &'static str,
    row: usize,
    col: usize,
}

const NODES: &[Node] = &[
    Node {
        name: "CLOSED",
        row: 0,
        col: 22,
    },
    Node {
        name: "LISTEN",
        row: 2,
        col: 1,
    },
    Node {
        name: "SYN-SENT",
        row: 2,
        col: 40,
    },
    Node {
        name: "SYN-RECV",
        row: 4,
        col: 1,
    },
    Node {
        name: "ESTAB",
        row: 4,
        col: 23,
    },
    Node {
        name: "FIN-WAIT-1",
        row: 6,
        col: 1,
    },
    Node {
        name: "CLOSE-WAIT",
        row: 6,
        col: 40,
    },
    Node {
        name: "FIN-WAIT-2",
        row: 8,
        col: 1,
    },
    Node {
        name: "CLOSING",
        row: 8,
        col: 15,
    },
    Node {
        name: "LAST-ACK",
        row: 8,
        col: 40,
    },
    Node {
        name: "TIME-WAIT",
        row: 10,
        col: 1,
    },
    Node {
        name: "CLOSED",
        row: 10,
        col: 40,
    },
];

/// An edge drawn in the figure: its arrow and label start at (row, col) and may use up to
/// `LABEL` cells.
struct Placed {
    from: TcpState,
    to: TcpState,
    row: usize,
    col: usize,
    arrow: char,
}

/// Arrow, count, space, rate: "↓12.3k 999/s" at most.
const LABEL: usize = 12;

const fn placed(from: TcpState, to: TcpState, row: usize, col: usize, arrow: char) -> Placed {
    Placed {
        from,
        to,
        row,
        col,
        arrow,
    }
}

use TcpState::*;

/// Every edge of RFC 9293's figure that Linux takes, where its arrow goes.
const PLACED: &[Placed] = &[
    placed(Listen, Close, 1, 0, '↗'),
    placed(Close, Listen, 1, 12, '↙'),
    placed(Close, SynSent, 1, 29, '↘'),
    placed(SynSent, Close, 1, 41, '↖'),
    placed(Listen, SynRecv, 3, 2, '↓'),
    placed(SynSent, SynRecv, 3, 16, '↙'),
    placed(SynSent, Established, 3, 30, '↙'),
    placed(SynRecv, Established, 4, 10, '→'),
    placed(SynRecv, FinWait1, 5, 1, '↓'),
    placed(Established, FinWait1, 5, 14, '↙'),
    placed(Established, CloseWait, 5, 29, '↘'),
    placed(FinWait1, FinWait2, 7, 2, '↓'),
    placed(FinWait1, Closing, 7, 15, '↘'),
    placed(CloseWait, LastAck, 7, 41, '↓'),
    placed(FinWait2, TimeWait, 9, 2, '↓'),
    placed(Closing, TimeWait, 9, 15, '↙'),
    placed(LastAck, Close, 9, 41, '↓'),
    placed(TimeWait, Close, 10, 12, '→'),
];

/// An edge RFC 9293 has that Linux never reports: drawn dashed, cell by cell, never
/// counted.
struct RfcOnly {
    from: TcpState,
    to: TcpState,
    cells: &'static [(usize, usize, &'static str)],
}

const RFC_ONLY: &[RfcOnly] = &[
    // SEND on a listener: a dashed rule from LISTEN to SYN-SENT.
    RfcOnly {
        from: Listen,
        to: SynSent,
        cells: &[(2, 10, "┄┄┄┄┄┄ send ┄┄┄┄┄┄⇢")],
    },
    // An RST in SYN-RECEIVED returns a passive open to LISTEN.
    RfcOnly {
        from: SynRecv,
        to: Listen,
        cells: &[(3, 0, "⇡")],
    },
    // The peer's FIN with the ACK of ours: around FIN-WAIT-2, straight to TIME-WAIT.
    RfcOnly {
        from: FinWait1,
        to: TimeWait,
        cells: &[(7, 0, "┆"), (8, 0, "┆"), (9, 0, "⇣")],
    },
];

/// How the diagram colours what it draws.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Palette {
    /// Live counts (top, a lab exercise): lit edges green, RFC-only edges dim.
    Counts,
    /// `lab coverage`: edges with a count are shown by an exercise (green), the others are
    /// not covered (dim), RFC-only edges stand out (yellow).
    Coverage,
}

fn lit_style() -> Style {
    Style::new().fg(Color::Green).add_modifier(Modifier::BOLD)
}

fn idle_style(count: u64) -> Style {
    if count == 0 {
        Style::new().fg(Color::DarkGray)
    } else {
        Style::new()
    }
}

/// A grid of styled cells, turned into lines at the end.
struct Grid {
    cells: Vec<Vec<(char, Style)>>,
}

impl Grid {
    fn new(width: usize, height: usize) -> Self {
        Grid {
            cells: vec![vec![(' ', Style::new()); width]; height],
        }
    }

    /// Writes `text` from (row, col), clipped to the grid.
    fn put(&mut self, row: usize, col: usize, text: &str, style: Style) {
        let Some(line) = self.cells.get_mut(row) else {
            return;
        };
        for (slot, ch) in line.iter_mut().skip(col).zip(text.chars()) {
            *slot = (ch, style);
        }
    }

    fn into_lines(self) -> Vec<Line<'static>> {
        self.cells
            .into_iter()
            .map(|row| {
                let mut spans: Vec<Span<'static>> = Vec::new();
                let mut text = String::new();
                let mut style = Style::new();
                for (ch, s) in row {
                    if s != style && !text.is_empty() {
                        spans.push(Span::styled(std::mem::take(&mut text), style));
                    }
                    style = s;
                    text.push(ch);
                }
                if !text.is_empty() {
                    spans.push(Span::styled(text, style));
                }
                Line::from(spans)
            })
            .collect()
    }
}

fn edge_label(edge: Option<&EdgeRow>, per_edge: bool) -> String {
    if !per_edge {
        return "·".to_string();
    }
    match edge {
        Some(e) if e.lit && e.rate > 0.0 => format!("{} {}/s", count(e.count), rate(e.rate)),
        Some(e) => count(e.count),
        None => "0".to_string(),
    }
}

/// Whether the diagram has an arrow for this edge (dashed for the RFC-only ones).
#[cfg(test)]
pub fn draws(from: TcpState, to: TcpState) -> bool {
    PLACED.iter().any(|p| p.from == from && p.to == to)
        || RFC_ONLY.iter().any(|r| r.from == from && r.to == to)
}

/// The diagram as `HEIGHT` lines of `WIDTH` cells, with live counts. `per_edge` is false
/// when polling.
pub fn lines(edges: &[EdgeRow], per_edge: bool) -> Vec<Line<'static>> {
    draw(edges, per_edge, Palette::Counts)
}

/// The diagram for `lab coverage`: each edge's count is the number of exercises that show
/// it.
pub fn coverage(edges: &[EdgeRow]) -> Vec<Line<'static>> {
    draw(edges, true, Palette::Coverage)
}

fn draw(edges: &[EdgeRow], per_edge: bool, palette: Palette) -> Vec<Line<'static>> {
    let mut grid = Grid::new(usize::from(WIDTH), usize::from(HEIGHT));
    let find = |from: TcpState, to: TcpState| {
        edges
            .iter()
            .find(|e| e.key == (from.kernel_number(), to.kernel_number()))
    };
    for node in NODES {
        grid.put(
            node.row,
            node.col,
            node.name,
            Style::new().add_modifier(Modifier::BOLD),
        );
    }
    // The two long horizontal edges get a rule, so they read as arrows between boxes.
    grid.put(10, 24, "───────────────→", Style::new().fg(Color::DarkGray));
    let rfc_only = match palette {
        Palette::Counts => Style::new().fg(Color::DarkGray),
        Palette::Coverage => Style::new().fg(Color::Yellow),
    };
    for r in RFC_ONLY {
        // Should a kernel ever report one, it shows lit (and on the last line, counted).
        let style = if find(r.from, r.to).is_some() {
            lit_style()
        } else {
            rfc_only
        };
        for &(row, col, text) in r.cells {
            grid.put(row, col, text, style);
        }
    }
    for p in PLACED {
        let edge = find(p.from, p.to);
        let style = match edge {
            Some(e) if e.lit => lit_style(),
            Some(e) => idle_style(e.count),
            None => idle_style(0),
        };
        let mut label = format!("{}{}", p.arrow, edge_label(edge, per_edge));
        if let Some((cut, _)) = label.char_indices().nth(LABEL) {
            label.truncate(cut);
        }
        grid.put(p.row, p.col, &label, style);
    }
    // Everything else that happened: aborts, failed connects, orphan kills.
    let mut col = 0;
    let last = usize::from(HEIGHT) - 1;
    if per_edge {
        let others: Vec<&EdgeRow> = edges
            .iter()
            .filter(|e| {
                !PLACED
                    .iter()
                    .any(|p| e.key == (p.from.kernel_number(), p.to.kernel_number()))
            })
            .collect();
        let head = if others.is_empty() {
            "other edges: none"
        } else {
            "other: "
        };
        grid.put(last, col, head, Style::new().fg(Color::DarkGray));
        col += head.chars().count();
        for (i, e) in others.iter().enumerate() {
            let sep = if i == 0 { "" } else { " · " };
            let text = format!("{sep}{}→{} {}", e.from, e.to, edge_label(Some(e), true));
            let style = if e.lit { lit_style() } else { Style::new() };
            grid.put(last, col, &text, style);
            col += text.chars().count();
        }
    } else {
        grid.put(
            last,
            0,
            "no per-edge data while polling (needs eBPF)",
            Style::new().fg(Color::Yellow),
        );
    }
    grid.into_lines()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_fit_their_slots_and_nodes_stay_clear() {
        // Every label slot lies inside the grid and overlaps no state name.
        for p in PLACED {
            assert!(
                p.col + LABEL <= usize::from(WIDTH),
                "{:?}->{:?}",
                p.from,
                p.to
            );
            for n in NODES.iter().filter(|n| n.row == p.row) {
                let (a0, a1) = (p.col, p.col + LABEL);
                let (b0, b1) = (n.col, n.col + n.name.len());
                assert!(
                    a1 <= b0 || b1 <= a0,
                    "{:?}->{:?} overlaps {}",
                    p.from,
                    p.to,
                    n.name
                );
            }
        }
        // Label slots on one row do not run into each other.
        for a in PLACED {
            for b in PLACED.iter().filter(|b| b.row == a.row && b.col > a.col) {
                assert!(
                    a.col + LABEL <= b.col,
                    "{:?}->{:?} runs into {:?}->{:?}",
                    a.from,
                    a.to,
                    b.from,
                    b.to
                );
            }
        }
        // Dashed RFC-only cells stay clear of state names and label slots.
        for r in RFC_ONLY {
            for &(row, col, text) in r.cells {
                let (a0, a1) = (col, col + text.chars().count());
                assert!(a1 <= usize::from(WIDTH));
                let names = NODES
                    .iter()
                    .filter(|n| n.row == row)
                    .map(|n| (n.col, n.col + n.name.len()));
                let slots = PLACED
                    .iter()
                    .filter(|p| p.row == row)
                    .map(|p| (p.col, p.col + LABEL));
                for (b0, b1) in names.chain(slots) {
                    assert!(
                        a1 <= b0 || b1 <= a0,
                        "{:?}->{:?} at {row}:{col}",
                        r.from,
                        r.to
                    );
                }
            }
            assert!(!PLACED.iter().any(|p| p.from == r.from && p.to == r.to));
        }
        // The longest label fits.
        let e = EdgeRow {
            from: String::new(),
            to: String::new(),
            count: 12_345,
            rate: 999.0,
            lit: true,
            key: (1, 4),
        };
        assert!(format!("↓{}", edge_label(Some(&e), true)).chars().count() <= LABEL);
    }
}
