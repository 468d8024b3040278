//! `sockstat lab`: exercises that make each TCP transition happen in private network
//! namespaces, trace it with sockstat's own kernel programs, and compare what was observed
//! with what RFC 793 / RFC 9293 say should happen.
pub mod course;
pub mod exercises;
pub mod host;
pub mod path;
pub mod tracer;

use std::{
    io::Write,
    net::SocketAddr,
    time::{Duration, Instant},
};

use serde::Serialize;

use self::{
    path::{Difference, Edge, Step, compare},
    tracer::LabTracer,
};
use crate::{
    diag::{self, Query, SocketRecord},
    ebpf::LoadError,
    filter::states,
};

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("lab setup: {0}")]
    Setup(String),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("{0:#}")]
    Attach(anyhow::Error),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LabError {
    let what = what.into();
    move |source| LabError::Io { what, source }
}

/// One exercise: a name, what it teaches, where it sits in the course, the edges it is
/// about, and the script.
pub struct Exercise {
    pub name: &'static str,
    pub teaches: &'static str,
    pub part: course::Part,
    /// The edges it shows (the root tests check that its run observed each of them).
    pub shows: &'static [Edge],
    pub run: fn(&mut Lab) -> Result<Outcome, LabError>,
}

/// One socket's expected path and what it did.
#[derive(Clone, Debug, Serialize)]
pub struct RoleResult {
    pub role: String,
    #[serde(serialize_with = "steps_as_edges")]
    pub expected: Vec<Step>,
    pub observed: Vec<Edge>,
    pub difference: Option<Difference>,
    /// How each observed edge was known (cause, synthesized), for the failure's line.
    #[serde(skip)]
    pub observed_how: Vec<String>,
}

fn steps_as_edges<S: serde::Serializer>(steps: &[Step], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(steps.iter().map(|st| st.edge))
}

impl RoleResult {
    /// `observed`: each edge with how it was known (`LabTracer::path`).
    pub fn new(
        role: impl Into<String>,
        expected: Vec<Step>,
        observed: Vec<(Edge, String)>,
    ) -> Self {
        let want: Vec<Edge> = expected.iter().map(|s| s.edge).collect();
        let (observed, observed_how): (Vec<Edge>, Vec<String>) = observed.into_iter().unzip();
        RoleResult {
            role: role.into(),
            difference: compare(&want, &observed),
            expected,
            observed,
            observed_how,
        }
    }

    /// The difference in one line, with how its observed edge was known.
    fn failure(&self) -> Option<String> {
        let d = self.difference.as_ref()?;
        let at = match d {
            Difference::Unexpected { index, .. } | Difference::Different { index, .. } => {
                self.observed_how.get(*index).filter(|h| !h.is_empty())
            }
            Difference::Missing { .. } => None,
        };
        Some(match at {
            Some(how) => format!("{}: {d} ({how})", self.role),
            None => format!("{}: {d}", self.role),
        })
    }
}

/// Something checked besides paths (a timer, a counter, a count in sock_diag).
#[derive(Clone, Debug, Serialize)]
pub struct Fact {
    pub what: String,
    pub expected: String,
    pub observed: String,
    pub ok: bool,
}

impl Fact {
    pub fn new(
        what: impl Into<String>,
        expected: impl Into<String>,
        observed: impl Into<String>,
        ok: bool,
    ) -> Self {
        Fact {
            what: what.into(),
            expected: expected.into(),
            observed: observed.into(),
            ok,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Outcome {
    pub roles: Vec<RoleResult>,
    pub facts: Vec<Fact>,
    /// Explanations and anything the run had to repeat.
    pub notes: Vec<String>,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.roles.iter().all(|r| r.difference.is_none()) && self.facts.iter().all(|f| f.ok)
    }

    /// The first thing that differed, in one line.
    pub fn first_failure(&self) -> Option<String> {
        self.roles.iter().find_map(RoleResult::failure).or_else(|| {
            self.facts.iter().find(|f| !f.ok).map(|f| {
                format!(
                    "{}: expected {}, observed {}",
                    f.what, f.expected, f.observed
                )
            })
        })
    }
}

/// What an exercise script works with: the tracer, and the narration for `--slow`.
pub struct Lab {
    pub tracer: LabTracer,
    slow: bool,
    narration: Box<dyn Write>,
    started: Instant,
    shown: usize,
}

impl Lab {
    pub fn new(tracer: LabTracer, slow: bool, narration: Box<dyn Write>) -> Self {
        Lab {
            tracer,
            slow,
            narration,
            started: Instant::now(),
            shown: 0,
        }
    }

    /// Announces a step. With `--slow` it pauses after it and prints the transitions the
    /// step caused, as they are traced.
    pub fn step(&mut self, what: &str) {
        if !self.slow {
            return;
        }
        self.show_new();
        if let Err(e) = crate::render::lab::write_step(&mut self.narration, what) {
            log::debug!("lab narration: {e}");
        }
        let until = Instant::now() + Duration::from_millis(1500);
        while Instant::now() < until {
            self.tracer.poll();
            self.show_new();
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn show_new(&mut self) {
        let new = &self.tracer.transitions[self.shown.min(self.tracer.transitions.len())..];
        let at = self.started.elapsed().as_secs_f64();
        if let Err(e) = crate::render::lab::write_traced(&mut self.narration, at, new) {
            log::debug!("lab narration: {e}");
        }
        self.shown = self.tracer.transitions.len();
    }

    /// Resets what was seen, e.g. before a repeated attempt.
    pub fn restart(&mut self) {
        self.tracer.clear();
        self.shown = 0;
    }

    pub fn path(&self, local: SocketAddr, remote: SocketAddr) -> Vec<(Edge, String)> {
        self.tracer
            .cookie_of(local, remote)
            .map(|c| self.tracer.path(c))
            .unwrap_or_default()
    }
}

/// TCP sockets of one host's namespace, with timers, as sock_diag reports them.
pub fn dump_tcp(host: &host::Host) -> Result<Vec<SocketRecord>, LabError> {
    host.run(|| {
        let query = Query {
            tcp: true,
            v4: true,
            v6: true,
            states: states::ALL,
            ..Query::default()
        };
        diag::collect(&query, std::path::Path::new("/proc/thread-self/net"))
    })?
    .map_err(|e| LabError::Setup(format!("sock_diag in the lab namespace: {e}")))
}

/// A TcpExt counter from the namespace's /proc/net/netstat (e.g. "ListenOverflows").
pub fn tcp_ext(host: &host::Host, name: &str) -> Result<u64, LabError> {
    counter(host, "/proc/thread-self/net/netstat", "TcpExt:", name)
}

/// A Tcp counter from the namespace's /proc/net/snmp (e.g. "OutSegs").
pub fn tcp_mib(host: &host::Host, name: &str) -> Result<u64, LabError> {
    counter(host, "/proc/thread-self/net/snmp", "Tcp:", name)
}

/// A counter from a file of header/value line pairs, the pair's lines starting `prefix`.
fn counter(
    host: &host::Host,
    file: &'static str,
    prefix: &str,
    name: &str,
) -> Result<u64, LabError> {
    let text = host.read(file)?;
    let mut lines = text.lines();
    while let (Some(head), Some(values)) = (lines.next(), lines.next()) {
        if !head.starts_with(prefix) {
            continue;
        }
        let names = head.split_whitespace();
        let vals = values.split_whitespace();
        if let Some((_, v)) = names.zip(vals).find(|(n, _)| *n == name) {
            return v
                .parse()
                .map_err(|_| LabError::Setup(format!("{prefix} {name}: not a number")));
        }
    }
    Err(LabError::Setup(format!("{prefix} {name} not in {file}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tcp::TcpState::{Close, FinWait2, TimeWait};

    /// A failure's line names how its unexpected edge was known.
    #[test]
    fn a_failure_says_how_its_edge_was_known() {
        let expected = vec![path::step(FinWait2, TimeWait, "the peer's FIN")];
        let observed = vec![
            (Edge::new(FinWait2, TimeWait), "cause fin".to_string()),
            (Edge::new(TimeWait, Close), "cause killed".to_string()),
        ];
        let role = RoleResult::new("client", expected.clone(), observed);
        assert_eq!(
            role.failure().as_deref(),
            Some(
                "client: edge 2: observed TIME-WAIT -> CLOSE, which was not expected (cause killed)"
            )
        );
        let plain = RoleResult::new(
            "client",
            expected,
            vec![(Edge::new(TimeWait, Close), String::new())],
        );
        assert_eq!(
            plain.failure().as_deref(),
            Some("client: edge 1: expected FIN-WAIT-2 -> TIME-WAIT, observed TIME-WAIT -> CLOSE")
        );
    }
}
