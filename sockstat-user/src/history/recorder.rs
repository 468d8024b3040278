//! What `record` and `serve --record` share: the pipeline's lifetimes, each with its owner's
//! container, handed to the writer; and what became of them.
use std::time::Duration;

use super::{
    row_of,
    writer::{Destination, Retention, Writer, Written},
};
use crate::{
    live::{Output, clock::WallClock},
    procs::workload::WorkloadNames,
};

/// Where each recorded connection went so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Lifetimes handed to the writer, or dropped because its queue was full.
    pub recorded: u64,
    pub queue_dropped: u64,
    pub written: Written,
}

pub struct Recorder {
    writer: Writer,
    names: WorkloadNames,
    clock: WallClock,
    recorded: u64,
}

impl Recorder {
    pub fn start(
        destination: Destination,
        retention: Retention,
        flush: Duration,
    ) -> std::io::Result<Recorder> {
        Ok(Recorder {
            writer: Writer::start(destination, retention, flush)?,
            names: WorkloadNames::new(),
            clock: WallClock::now(),
            recorded: 0,
        })
    }

    /// Records `o` if it is a finished connection.
    pub fn observe(&mut self, o: &Output) {
        if let Output::Lifetime(l) = o {
            let workload = self.names.of_owner(l.owner.pid, l.netns);
            self.writer.push(row_of(l, self.clock, workload.as_deref()));
            self.recorded += 1;
        }
    }

    pub fn progress(&self) -> Progress {
        Progress {
            recorded: self.recorded,
            queue_dropped: self.writer.dropped(),
            written: self.writer.progress(),
        }
    }

    /// Commits what is queued; the closing line. `lost`: the kernel's lost events, said.
    pub fn finish(self, lost: &str) -> String {
        let (recorded, dropped) = (self.recorded, self.writer.dropped());
        let w = self.writer.finish();
        let head = format!(
            "{recorded} connections recorded, {} committed in {} batches, {dropped} dropped (the writer fell behind), {} lost in writing; {lost} events lost in the kernel",
            w.rows, w.batches, w.failed
        );
        match w.shipped {
            None => format!(
                "{head}; {} forgotten by --keep, {} by --max-size; the store holds {} bytes",
                w.expired, w.evicted, w.bytes
            ),
            Some(s) => format!(
                "{head}; ClickHouse took {} in {} batches ({} found there after a send in doubt), {} wait in the spool ({} bytes, sent on the next run), {} dropped by --spool-max, {} failed sends retried",
                s.rows, s.batches, s.found, s.waiting, s.waiting_bytes, s.dropped, s.failures
            ),
        }
    }
}
