//! The lab as a course: its parts in teaching order, RFC 9293's edges with what Linux does
//! for each, and which exercise shows which edge.
use super::{Exercise, path::Edge};
use crate::tcp::TcpState::{self, *};

/// A part of the course; exercises are listed and run in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Part {
    Opening,
    Closing,
    Failing,
    Load,
}

impl Part {
    pub const ALL: [Part; 4] = [Part::Opening, Part::Closing, Part::Failing, Part::Load];

    pub fn title(self) -> &'static str {
        match self {
            Part::Opening => "Opening a connection",
            Part::Closing => "Closing a connection",
            Part::Failing => "When the peer goes quiet",
            Part::Load => "Under load: queues, floods, leaks and TIME-WAIT",
        }
    }
}

/// What Linux does with an edge of RFC 9293.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Linux {
    /// Linux takes it and reports it.
    Takes,
    /// Linux never reports it; what it does instead, and the exercise that shows that.
    Never {
        instead: &'static str,
        shown_by: &'static str,
    },
}

/// One edge of RFC 9293's state diagram (figure 5), or of its text where the figure has no
/// arrow (marked so in `rfc`).
#[derive(Clone, Copy, Debug)]
pub struct RfcEdge {
    pub edge: Edge,
    /// The RFC's event / action.
    pub rfc: &'static str,
    pub linux: Linux,
}

const fn takes(from: TcpState, to: TcpState, rfc: &'static str) -> RfcEdge {
    RfcEdge {
        edge: Edge::new(from, to),
        rfc,
        linux: Linux::Takes,
    }
}

const fn never(
    from: TcpState,
    to: TcpState,
    rfc: &'static str,
    instead: &'static str,
    shown_by: &'static str,
) -> RfcEdge {
    RfcEdge {
        edge: Edge::new(from, to),
        rfc,
        linux: Linux::Never { instead, shown_by },
    }
}

pub const RFC_EDGES: [RfcEdge; 21] = [
    takes(Close, Listen, "passive OPEN / create TCB"),
    takes(Close, SynSent, "active OPEN / snd SYN"),
    takes(Listen, Close, "CLOSE / delete TCB"),
    takes(Listen, SynRecv, "rcv SYN / snd SYN,ACK"),
    never(
        Listen,
        SynSent,
        "SEND / snd SYN",
        "a listener never becomes a client: connect() on it fails with EISCONN, send() with EPIPE",
        "listener-close",
    ),
    takes(SynSent, SynRecv, "rcv SYN / snd ACK (simultaneous open)"),
    takes(SynSent, Established, "rcv SYN,ACK / snd ACK"),
    takes(
        SynSent,
        Close,
        "CLOSE / delete TCB (Linux also: refused, timed out)",
    ),
    takes(SynRecv, Established, "rcv ACK of SYN"),
    never(
        SynRecv,
        Listen,
        "rcv RST (RFC 9293 text, 3.10.7.4)",
        "a half-open connection is a request socket beside the listener, which never left LISTEN: an RST (or a SYN+ACK nobody wants) drops the request",
        "syn-flood",
    ),
    takes(SynRecv, FinWait1, "CLOSE / snd FIN"),
    takes(Established, FinWait1, "CLOSE / snd FIN"),
    takes(Established, CloseWait, "rcv FIN / snd ACK"),
    takes(FinWait1, FinWait2, "rcv ACK of FIN"),
    takes(FinWait1, Closing, "rcv FIN / snd ACK"),
    never(
        FinWait1,
        TimeWait,
        "rcv FIN with the ACK of ours / snd ACK (RFC 9293 text, 3.10.7.4)",
        "Linux handles the segment's ACK before its FIN: FIN-WAIT-1 -> FIN-WAIT-2 -> TIME-WAIT, both for the one segment",
        "fin-with-ack",
    ),
    takes(FinWait2, TimeWait, "rcv FIN / snd ACK"),
    takes(Closing, TimeWait, "rcv ACK of FIN"),
    takes(CloseWait, LastAck, "CLOSE / snd FIN"),
    takes(LastAck, Close, "rcv ACK of FIN"),
    takes(TimeWait, Close, "Timeout=2MSL / delete TCB"),
];

/// The RFC edge for `edge`, if it is one.
pub fn rfc_edge(edge: Edge) -> Option<&'static RfcEdge> {
    RFC_EDGES.iter().find(|r| r.edge == edge)
}

/// One edge's coverage.
#[derive(Clone, Debug)]
pub struct Covered {
    pub edge: Edge,
    /// The RFC's event / action; `None` for an edge only Linux has (an abort, say).
    pub rfc: Option<&'static str>,
    pub linux: Linux,
    /// The exercises that show it.
    pub shown_by: Vec<&'static str>,
}

/// Every RFC edge with the exercises that show it, then the edges beyond the RFC that
/// exercises show.
pub fn coverage(exercises: &[Exercise]) -> Vec<Covered> {
    let shown_by = |edge: Edge| -> Vec<&'static str> {
        exercises
            .iter()
            .filter(|e| e.shows.contains(&edge))
            .map(|e| e.name)
            .collect()
    };
    let mut out: Vec<Covered> = RFC_EDGES
        .iter()
        .map(|r| Covered {
            edge: r.edge,
            rfc: Some(r.rfc),
            linux: r.linux,
            shown_by: shown_by(r.edge),
        })
        .collect();
    for e in exercises {
        for &edge in e.shows {
            if !out.iter().any(|c| c.edge == edge) {
                out.push(Covered {
                    edge,
                    rfc: None,
                    linux: Linux::Takes,
                    shown_by: shown_by(edge),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{lab::exercises::EXERCISES, render::top::diagram};

    #[test]
    fn every_edge_linux_takes_is_shown_and_every_other_is_explained() {
        for c in coverage(EXERCISES) {
            match c.linux {
                Linux::Takes => assert!(!c.shown_by.is_empty(), "{} is not covered", c.edge),
                Linux::Never { instead, shown_by } => {
                    assert!(!instead.is_empty());
                    assert!(c.shown_by.is_empty(), "{} is RFC-only but shown", c.edge);
                    let shower = crate::lab::exercises::find(shown_by);
                    assert!(shower.is_some(), "{}: no exercise {shown_by}", c.edge);
                }
            }
        }
    }

    #[test]
    fn the_diagram_draws_every_rfc_edge() {
        for r in &RFC_EDGES {
            assert!(
                diagram::draws(r.edge.from, r.edge.to),
                "{} has no arrow",
                r.edge
            );
        }
    }

    #[test]
    fn parts_are_taught_in_order() {
        let parts: Vec<Part> = EXERCISES.iter().map(|e| e.part).collect();
        let mut sorted = parts.clone();
        sorted.sort();
        assert_eq!(parts, sorted, "EXERCISES is the course order");
        for p in Part::ALL {
            assert!(parts.contains(&p), "{} has no exercise", p.title());
        }
    }
}
