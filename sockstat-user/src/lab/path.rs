//! Expected and observed paths through the state machine, and where they part.
use serde::Serialize;

use crate::tcp::TcpState;

/// One transition, as the lab compares them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edge {
    pub from: TcpState,
    pub to: TcpState,
}

impl Edge {
    pub const fn new(from: TcpState, to: TcpState) -> Self {
        Edge { from, to }
    }
}

impl std::fmt::Display for Edge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} -> {}", self.from.ss_name(), self.to.ss_name())
    }
}

impl Serialize for Edge {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// An expected transition and the one line that explains it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    pub edge: Edge,
    pub why: &'static str,
}

pub const fn step(from: TcpState, to: TcpState, why: &'static str) -> Step {
    Step {
        edge: Edge::new(from, to),
        why,
    }
}

/// The first place where the observed path leaves the expected one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Difference {
    /// The socket stopped before this expected edge.
    Missing { index: usize, expected: Edge },
    /// The socket took an edge after the expected path ended.
    Unexpected { index: usize, observed: Edge },
    /// At `index` the socket took another edge.
    Different {
        index: usize,
        expected: Edge,
        observed: Edge,
    },
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Difference::Missing { index, expected } => {
                write!(
                    f,
                    "edge {}: expected {expected}, but nothing was observed",
                    index + 1
                )
            }
            Difference::Unexpected { index, observed } => {
                write!(
                    f,
                    "edge {}: observed {observed}, which was not expected",
                    index + 1
                )
            }
            Difference::Different {
                index,
                expected,
                observed,
            } => write!(
                f,
                "edge {}: expected {expected}, observed {observed}",
                index + 1
            ),
        }
    }
}

/// Compares edge by edge; `None` when the paths are equal.
pub fn compare(expected: &[Edge], observed: &[Edge]) -> Option<Difference> {
    let n = expected.len().max(observed.len());
    (0..n).find_map(|index| match (expected.get(index), observed.get(index)) {
        (Some(e), Some(o)) if e == o => None,
        (Some(e), Some(o)) => Some(Difference::Different {
            index,
            expected: *e,
            observed: *o,
        }),
        (Some(e), None) => Some(Difference::Missing {
            index,
            expected: *e,
        }),
        (None, Some(o)) => Some(Difference::Unexpected {
            index,
            observed: *o,
        }),
        (None, None) => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use TcpState::*;

    const CONNECT: Edge = Edge::new(Close, SynSent);
    const ESTAB: Edge = Edge::new(SynSent, Established);
    const REFUSED: Edge = Edge::new(SynSent, Close);

    #[test]
    fn equal_paths_have_no_difference() {
        assert_eq!(compare(&[CONNECT, ESTAB], &[CONNECT, ESTAB]), None);
        assert_eq!(compare(&[], &[]), None);
    }

    #[test]
    fn names_the_first_edge_that_differs() {
        assert_eq!(
            compare(&[CONNECT, ESTAB], &[CONNECT, REFUSED]),
            Some(Difference::Different {
                index: 1,
                expected: ESTAB,
                observed: REFUSED
            })
        );
        let d = compare(&[CONNECT, ESTAB], &[CONNECT]).unwrap();
        assert_eq!(
            d,
            Difference::Missing {
                index: 1,
                expected: ESTAB
            }
        );
        assert_eq!(
            d.to_string(),
            "edge 2: expected SYN-SENT -> ESTAB, but nothing was observed"
        );
        assert_eq!(
            compare(&[CONNECT], &[CONNECT, ESTAB, REFUSED]),
            Some(Difference::Unexpected {
                index: 1,
                observed: ESTAB
            })
        );
    }

    #[test]
    fn edges_serialize_as_text() {
        assert_eq!(
            serde_json::to_string(&CONNECT).unwrap(),
            "\"CLOSE -> SYN-SENT\""
        );
    }
}
