//! What `record` and `serve --record` share: the pipeline's lifetimes (and, with
//! `--transitions`, its state changes), each with its owner's container, handed to the
//! writer; and what became of them.
use std::time::Duration;

use super::{
    Row, row_of, transition_row_of,
    writer::{Destination, Retention, Writer, Written},
};
use crate::{
    live::{Output, clock::WallClock},
    procs::workload::SharedNames,
};

/// Where each recorded connection went so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Lifetimes (and state changes) handed to the writer; rows dropped because its queue
    /// was full.
    pub recorded: u64,
    pub transitions: u64,
    pub queue_dropped: u64,
    pub written: Written,
}

pub struct Recorder {
    writer: Writer,
    /// Shared with serve's metrics under `serve --record`: one cache, one set of lookups.
    names: SharedNames,
    clock: WallClock,
    /// `--transitions`: every state change too.
    transitions: bool,
    recorded: u64,
    changes: u64,
}

impl Recorder {
    pub fn start(
        destination: Destination,
        retention: Retention,
        flush: Duration,
        transitions: bool,
        names: SharedNames,
    ) -> std::io::Result<Recorder> {
        Ok(Recorder {
            writer: Writer::start(destination, retention, flush)?,
            names,
            clock: WallClock::now(),
            transitions,
            recorded: 0,
            changes: 0,
        })
    }

    /// Records `o` if it is a finished connection (or, with `--transitions`, a state
    /// change).
    pub fn observe(&mut self, o: &Output) {
        match o {
            Output::Lifetime(l) => {
                let workload = self.workload(l.owner.pid, l.netns);
                let row = row_of(l, self.clock, workload.as_deref());
                self.writer.push(Row::Lifetime(row));
                self.recorded += 1;
            }
            Output::Transition(t) if self.transitions => {
                let workload = self.workload(t.owner.pid, t.netns);
                let row = transition_row_of(t, self.clock, workload.as_deref());
                self.writer.push(Row::Transition(row));
                self.changes += 1;
            }
            _ => {}
        }
    }

    fn workload(
        &self,
        pid: Option<u32>,
        netns: u32,
    ) -> Option<std::sync::Arc<crate::procs::workload::Workload>> {
        // A poisoned cache (a panic elsewhere while it was held) names nothing.
        self.names.lock().ok()?.of_owner(pid, netns)
    }

    pub fn progress(&self) -> Progress {
        Progress {
            recorded: self.recorded,
            transitions: self.changes,
            queue_dropped: self.writer.dropped(),
            written: self.writer.progress(),
        }
    }

    /// Commits what is queued; the closing line, with the events `probe` counted lost in
    /// the kernel (unknown when its counters cannot be read, never 0).
    pub fn finish(self, probe: Option<&crate::ebpf::Probe>) -> String {
        let lost = probe.map_or_else(
            || "no".to_string(),
            |p| {
                p.counters()
                    .map(|c| c.dropped().to_string())
                    .unwrap_or_else(|e| {
                        format!("an unknown number of (the counters could not be read: {e})")
                    })
            },
        );
        let (recorded, dropped) = (self.recorded, self.writer.dropped());
        let changes = self.transitions.then_some(self.changes);
        let w = self.writer.finish();
        let head = match changes {
            None => format!(
                "{recorded} connections recorded, {} committed in {} batches, {dropped} dropped (the writer fell behind), {} lost in writing; {lost} events lost in the kernel",
                w.rows, w.batches, w.failed
            ),
            Some(n) => format!(
                "{recorded} connections recorded and {n} transitions, {} and {} committed in {} batches, {dropped} dropped (the writer fell behind), {} lost in writing; {lost} events lost in the kernel",
                w.rows,
                w.transitions,
                w.batches,
                w.failed + w.failed_transitions
            ),
        };
        match w.shipped {
            None => format!(
                "{head}; {} forgotten by --keep, {} by --max-size; the store holds {} bytes",
                w.expired, w.evicted, w.bytes
            ),
            Some(s) => format!(
                "{head}; ClickHouse took {} in {} batches ({} found there after a send in doubt), {} wait in the spool ({} bytes, sent on the next run), {} dropped by --spool-max, {} failed sends retried; {} rows dropped there by --keep",
                s.rows,
                s.batches,
                s.found,
                s.waiting,
                s.waiting_bytes,
                s.dropped,
                s.failures,
                w.expired
            ),
        }
    }
}
