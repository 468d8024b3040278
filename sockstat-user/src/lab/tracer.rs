//! The lab's view of sockstat's own pipeline (the same one trace, top and serve run),
//! drained synchronously (exercises are step-by-step scripts, not event loops), keeping
//! only the lab's namespaces.
use std::{
    collections::HashMap,
    net::SocketAddr,
    time::{Duration, Instant},
};

use super::{LabError, host::Host, path::Edge};
use crate::{
    agent::{
        DumpScope,
        pipeline::{Pipeline, PipelineOptions},
    },
    ebpf::{EventKind, HookChoice, KernelEvent},
    live::{Output, Reports, Transition},
    tcp::ReportedState,
};

pub struct LabTracer {
    // Dropped before the runtime its ring is registered with.
    pipeline: Pipeline,
    /// Registers the ring; the lab drains it without waiting, so nothing runs on it.
    _runtime: tokio::runtime::Runtime,
    outputs: Vec<Output>,
    /// The namespaces of the exercise under way, each with when it was made (see
    /// [`Host::since_ns`]).
    netns: HashMap<u32, u64>,
    /// Every transition seen in the lab's namespaces, in order.
    pub transitions: Vec<Transition>,
    /// Retransmissions (data, SYN or FIN) per socket cookie.
    pub retransmits: HashMap<u64, u32>,
    /// Events the ring buffer could not take, and runs the kernel skipped, since the start.
    pub lost: u64,
    pub missed_runs: u64,
}

/// Whether `event` happened in a watched namespace: one that lives now, from when it was
/// made. An inode number is all an event carries, and the kernel hands a freed namespace's
/// number to the next one made, anywhere on the machine.
fn watched(netns: &HashMap<u32, u64>, event: &KernelEvent) -> bool {
    netns
        .get(&event.netns)
        .is_some_and(|&since| event.ts_ns >= since)
}

impl LabTracer {
    pub fn start() -> Result<Self, LabError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(|e| LabError::Setup(format!("starting the event loop: {e}")))?;
        let pipeline = {
            let _entered = runtime.enter();
            Pipeline::attach(&PipelineOptions {
                hook: HookChoice::Auto,
                ring_kib: 1024,
                // The lab's namespaces only, kept to in the kernel as they are watched:
                // another namespace's traffic would fill the ring while an exercise waits.
                scope: DumpScope {
                    v4: true,
                    v6: true,
                    all_netns: true,
                    ..DumpScope::default()
                },
                events: true,
                drops: false,
                reports: Reports {
                    lifetimes: false,
                    handshake_rtts: false,
                },
                rtt_interval: None,
                baseline: false,
                reconcile: None,
                watched_netns: true,
            })
            .map_err(LabError::Attach)?
        };
        Ok(LabTracer {
            pipeline,
            _runtime: runtime,
            outputs: Vec::new(),
            netns: HashMap::new(),
            transitions: Vec::new(),
            retransmits: HashMap::new(),
            lost: 0,
            missed_runs: 0,
        })
    }

    /// Keeps the events of `host`'s namespace from its start on.
    pub fn watch(&mut self, host: &Host) -> Result<(), LabError> {
        self.pipeline
            .watch_netns(host.netns)
            .map_err(|e| LabError::Setup(format!("watching host {}: {e}", host.name)))?;
        self.netns.insert(host.netns, host.since_ns);
        Ok(())
    }

    /// Applies what the kernel reported so far; returns how many transitions were new.
    pub fn poll(&mut self) -> usize {
        let before = self.transitions.len();
        let (netns, retransmits) = (&self.netns, &mut self.retransmits);
        self.pipeline.drain_where(&mut self.outputs, |event| {
            if !watched(netns, event) {
                return false;
            }
            if matches!(event.kind, EventKind::Retransmit(_)) {
                *retransmits.entry(event.cookie).or_default() += 1;
            }
            true
        });
        for o in self.outputs.drain(..) {
            if let Output::Transition(t) = o {
                self.transitions.push(t);
            }
        }
        // An unreadable counter counts as a gap: the evidence cannot be vouched for.
        match self.pipeline.probe().counters() {
            Ok(c) => {
                self.lost = c.lost;
                self.missed_runs = c.missed_runs;
            }
            Err(_) => self.lost += 1,
        }
        self.transitions.len() - before
    }

    /// Polls until nothing new has arrived for `quiet`, or `max` has passed.
    pub fn settle(&mut self, quiet: Duration, max: Duration) {
        let start = Instant::now();
        let mut last_new = Instant::now();
        while start.elapsed() < max {
            if self.poll() > 0 {
                last_new = Instant::now();
            } else if last_new.elapsed() >= quiet {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Polls until `cond` holds over the transitions seen, or `max` passes.
    pub fn wait_for(&mut self, max: Duration, cond: impl Fn(&[Transition]) -> bool) -> bool {
        let start = Instant::now();
        loop {
            self.poll();
            if cond(&self.transitions) {
                return true;
            }
            if start.elapsed() >= max {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The socket whose transitions ever showed this (local, remote) pair.
    pub fn cookie_of(&self, local: SocketAddr, remote: SocketAddr) -> Option<u64> {
        self.transitions
            .iter()
            .find(|t| t.local == local && t.remote == remote)
            .map(|t| t.cookie)
    }

    /// Every socket that showed this (local, remote) pair, in the order they appeared (a
    /// 4-tuple reused after TIME-WAIT has two).
    pub fn cookies_of(&self, local: SocketAddr, remote: SocketAddr) -> Vec<u64> {
        let mut cookies = Vec::new();
        for t in &self.transitions {
            if t.local == local && t.remote == remote && !cookies.contains(&t.cookie) {
                cookies.push(t.cookie);
            }
        }
        cookies
    }

    /// The listening socket on `local` (its transitions have no peer).
    pub fn listener_cookie(&self, local: SocketAddr) -> Option<u64> {
        self.transitions
            .iter()
            .find(|t| t.local == local && t.remote.port() == 0)
            .map(|t| t.cookie)
    }

    /// One socket's transitions between known states, with their edges, in order.
    fn edges(&self, cookie: u64) -> impl Iterator<Item = (Edge, &Transition)> {
        self.transitions
            .iter()
            .filter(move |t| t.cookie == cookie)
            .filter_map(|t| match (t.old, t.new) {
                (ReportedState::Known(from), ReportedState::Known(to)) => {
                    Some((Edge::new(from, to), t))
                }
                _ => None,
            })
    }

    /// One socket's path, in order, each edge with how it was known: its cause, and
    /// whether it was synthesized (for a failure's explanation).
    pub fn path(&self, cookie: u64) -> Vec<(Edge, String)> {
        self.edges(cookie)
            .map(|(e, t)| {
                let cause = t.cause.map(|c| format!("cause {}", c.name()));
                let synthesized =
                    (t.source == crate::live::Source::Synthesized).then(|| "synthesized".into());
                let how: Vec<String> = cause.into_iter().chain(synthesized).collect();
                (e, how.join(", "))
            })
            .collect()
    }

    pub fn transitions_of(&self, cookie: u64) -> impl Iterator<Item = &Transition> {
        self.transitions.iter().filter(move |t| t.cookie == cookie)
    }

    /// Events lost, runs skipped and transitions seen to be missing (jumps) so far: if it
    /// moved during an exercise, what the exercise observed may be incomplete.
    pub fn gaps(&self) -> u64 {
        self.lost + self.missed_runs + self.pipeline.tracker().stats().jumps
    }

    /// Forgets what was seen (between attempts of an exercise).
    pub fn clear(&mut self) {
        self.poll();
        self.transitions.clear();
        self.retransmits.clear();
    }

    /// Stops watching every namespace (between exercises, whose namespaces are gone by
    /// then): their inode numbers may already be another namespace's. What is still in the
    /// ring for them is dropped at the next poll, as `clear` forgets it anyway.
    pub fn unwatch_all(&mut self) {
        for (netns, _) in self.netns.drain() {
            self.pipeline.unwatch_netns(netns);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ebpf::events::{from_raw, tests::raw_v4};

    #[test]
    fn a_reused_namespace_inode_keeps_only_what_came_after_its_namespace_was_made() {
        let mut raw = raw_v4();
        raw.netns = 7;
        let watching = HashMap::from([(7, 5_000)]);
        raw.ts_ns = 4_999;
        let earlier = from_raw(&raw).unwrap();
        raw.ts_ns = 5_000;
        let since = from_raw(&raw).unwrap();
        raw.netns = 8;
        let elsewhere = from_raw(&raw).unwrap();
        assert!(!watched(&watching, &earlier));
        assert!(watched(&watching, &since));
        assert!(!watched(&watching, &elsewhere));
    }
}
