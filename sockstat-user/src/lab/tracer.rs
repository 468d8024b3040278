//! The lab's view of sockstat's own pipeline: the kernel programs, the ring buffer and the
//! live table, polled synchronously (exercises are step-by-step scripts, not event loops),
//! keeping only the lab's namespaces.
use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    time::{Duration, Instant},
};

use aya::maps::{MapData, RingBuf};
use sockstat_common::ProbeConfig;

use super::{LabError, path::Edge};
use crate::{
    ebpf::{EventKind, HookChoice, Probe, ProbeOptions, events::decode},
    live::{Output, Tracker, Transition},
    tcp::ReportedState,
};

pub struct LabTracer {
    probe: Probe,
    ring: RingBuf<MapData>,
    tracker: Tracker,
    outputs: Vec<Output>,
    netns: HashSet<u32>,
    /// Every transition seen in the lab's namespaces, in order.
    pub transitions: Vec<Transition>,
    /// Retransmissions (data, SYN or FIN) per socket cookie.
    pub retransmits: HashMap<u64, u32>,
    /// Events the ring buffer could not take, and runs the kernel skipped, since the start.
    pub lost: u64,
    pub missed_runs: u64,
}

impl LabTracer {
    pub fn start() -> Result<Self, LabError> {
        let opts = ProbeOptions {
            hook: HookChoice::Auto,
            ring_kb: 1024,
            config: ProbeConfig {
                port: 0,
                family: 0,
                netns: 0,
                // Wake-ups do not matter: the ring is polled.
                wakeup_bytes: 0,
                emit_events: 1,
                ..ProbeConfig::zeroed()
            },
        };
        let mut probe = Probe::attach(&opts)?;
        let ring = probe.take_events()?;
        let mut tracker = Tracker::default();
        tracker.observe_timewait(probe.timewait_observed());
        Ok(LabTracer {
            probe,
            ring,
            tracker,
            outputs: Vec::new(),
            netns: HashSet::new(),
            transitions: Vec::new(),
            retransmits: HashMap::new(),
            lost: 0,
            missed_runs: 0,
        })
    }

    pub fn watch(&mut self, netns: u32) {
        self.netns.insert(netns);
    }

    /// Applies what the kernel reported so far; returns how many transitions were new.
    pub fn poll(&mut self) -> usize {
        let before = self.transitions.len();
        while let Some(item) = self.ring.next() {
            let Ok(event) = decode(&item) else { continue };
            if !self.netns.contains(&event.netns) {
                continue;
            }
            if matches!(event.kind, EventKind::Retransmit) {
                *self.retransmits.entry(event.cookie).or_default() += 1;
            }
            self.tracker.apply(&event, &mut self.outputs);
        }
        self.tracker.settle(&mut self.outputs);
        for o in self.outputs.drain(..) {
            if let Output::Transition(t) = o {
                self.transitions.push(t);
            }
        }
        // An unreadable counter counts as a gap: the evidence cannot be vouched for.
        match self.probe.counters() {
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

    /// The listening socket on `local` (its transitions have no peer).
    pub fn listener_cookie(&self, local: SocketAddr) -> Option<u64> {
        self.transitions
            .iter()
            .find(|t| t.local == local && t.remote.port() == 0)
            .map(|t| t.cookie)
    }

    /// One socket's path, in order.
    pub fn path(&self, cookie: u64) -> Vec<Edge> {
        self.transitions
            .iter()
            .filter(|t| t.cookie == cookie)
            .filter_map(|t| match (t.old, t.new) {
                (ReportedState::Known(from), ReportedState::Known(to)) => Some(Edge::new(from, to)),
                _ => None,
            })
            .collect()
    }

    pub fn transitions_of(&self, cookie: u64) -> impl Iterator<Item = &Transition> {
        self.transitions.iter().filter(move |t| t.cookie == cookie)
    }

    /// Events lost plus runs skipped so far: if it moved during an exercise, what the
    /// exercise observed may be incomplete.
    pub fn gaps(&self) -> u64 {
        self.lost + self.missed_runs
    }

    /// Forgets what was seen (between attempts of an exercise).
    pub fn clear(&mut self) {
        self.poll();
        self.transitions.clear();
        self.retransmits.clear();
    }
}
