//! One timeline per connection (`trace --timeline`): every transition, retransmission,
//! reset and drop the live table reports for a socket, in order, from its first event to
//! its CLOSE, when the whole timeline is handed back. Each connection keeps at most
//! `max_events` (the latest ones); what falls out is counted, per connection and in all.
use std::collections::VecDeque;

use super::{FastMap, Output, Owner};
use crate::tcp::{ReportedState, TcpState};

/// A connection's events so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timeline {
    pub cookie: u64,
    /// The first event's time (monotonic ns).
    pub first_ns: u64,
    /// The last event's time.
    pub last_ns: u64,
    /// The latest owner any event named.
    pub owner: Owner,
    pub events: VecDeque<Output>,
    /// Events that fell out of the ring (the earliest, after the first).
    pub left_out: u64,
    /// It reached CLOSE; false for one still open when the trace ended.
    pub closed: bool,
}

impl Timeline {
    /// In time order: outputs can leave the table out of it (a close is held back for the
    /// RST it sends, which the kernel reports after it).
    fn sort(&mut self) {
        self.events.make_contiguous().sort_by_key(output_ts);
    }
}

fn output_ts(o: &Output) -> u64 {
    match o {
        Output::Transition(t) => t.ts_ns,
        Output::Retransmit(r) => r.ts_ns,
        Output::Reset(r) => r.ts_ns,
        Output::Drop(d) => d.ts_ns,
        Output::Lifetime(l) => l.ts_ns,
    }
}

pub struct Timelines {
    open: FastMap<u64, Timeline>,
    max_events: usize,
    /// Events left out across every connection.
    left_out: u64,
}

impl Timelines {
    /// `max_events`: the most a connection keeps (at least 2: its first and its last).
    pub fn new(max_events: usize) -> Self {
        Self {
            open: FastMap::default(),
            max_events: max_events.max(2),
            left_out: 0,
        }
    }

    /// Takes one output; returns the connection's whole timeline when this was its CLOSE.
    /// Outputs without a connection (cookie 0: a closed port, a SYN-ACK of a request)
    /// belong to none and are not kept.
    pub fn push(&mut self, o: &Output) -> Option<Timeline> {
        let (cookie, ts_ns, owner) = match o {
            Output::Transition(t) => (t.cookie, t.ts_ns, t.owner),
            Output::Retransmit(r) => (r.cookie, r.ts_ns, r.owner),
            Output::Reset(r) => (r.cookie, r.ts_ns, r.owner),
            Output::Drop(d) => (d.cookie, d.ts_ns, d.owner),
            Output::Lifetime(_) => return None,
        };
        if cookie == 0 {
            return None;
        }
        let t = self.open.entry(cookie).or_insert_with(|| Timeline {
            cookie,
            first_ns: ts_ns,
            last_ns: ts_ns,
            owner,
            events: VecDeque::new(),
            left_out: 0,
            closed: false,
        });
        if owner.pid.is_some() {
            t.owner = owner;
        }
        t.last_ns = t.last_ns.max(ts_ns);
        if t.events.len() == self.max_events {
            // Keep the first event (where it began) and the latest ones.
            t.events.remove(1);
            t.left_out += 1;
            self.left_out += 1;
        }
        t.events.push_back(o.clone());
        let closed =
            matches!(o, Output::Transition(tr) if tr.new == ReportedState::Known(TcpState::Close));
        if !closed {
            return None;
        }
        let mut done = self.open.remove(&cookie)?;
        done.closed = true;
        done.sort();
        Some(done)
    }

    /// At the end: the timelines of connections still open, oldest first.
    pub fn drain_open(&mut self) -> Vec<Timeline> {
        let mut open: Vec<Timeline> = self
            .open
            .drain()
            .map(|(_, mut t)| {
                t.sort();
                t
            })
            .collect();
        open.sort_by_key(|t| (t.first_ns, t.cookie));
        open
    }

    /// Events left out of full rings so far.
    pub fn left_out(&self) -> u64 {
        self.left_out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        ebpf::Family,
        live::{OwnerSource, Source, Transition},
    };

    fn transition(cookie: u64, ts_ns: u64, old: TcpState, new: TcpState) -> Output {
        Output::Transition(Transition {
            ts_ns,
            cookie,
            netns: 1,
            family: Family::Inet,
            local: "127.0.0.1:5000".parse().unwrap(),
            remote: "127.0.0.1:80".parse().unwrap(),
            old: ReportedState::Known(old),
            new: ReportedState::Known(new),
            prev_state_ns: None,
            owner: Owner::with_comm(7, crate::live::Comm::new("curl"), OwnerSource::Task),
            source: Source::Kernel,
            cause: None,
        })
    }

    #[test]
    fn a_connection_comes_back_whole_at_its_close() {
        let mut t = Timelines::new(8);
        assert!(
            t.push(&transition(1, 10, TcpState::Close, TcpState::SynSent))
                .is_none()
        );
        assert!(
            t.push(&transition(2, 11, TcpState::Close, TcpState::SynSent))
                .is_none()
        );
        assert!(
            t.push(&transition(1, 20, TcpState::SynSent, TcpState::Established))
                .is_none()
        );
        let done = t
            .push(&transition(1, 50, TcpState::Established, TcpState::Close))
            .expect("closed");
        assert_eq!((done.cookie, done.first_ns, done.last_ns), (1, 10, 50));
        assert_eq!(
            (done.events.len(), done.closed, done.left_out),
            (3, true, 0)
        );
        let open = t.drain_open();
        assert_eq!(open.len(), 1);
        assert!(!open[0].closed);
    }

    #[test]
    fn a_full_ring_keeps_the_first_and_the_latest_and_counts_the_rest() {
        let mut t = Timelines::new(3);
        t.push(&transition(1, 1, TcpState::Close, TcpState::SynSent));
        for ts in 2..6 {
            t.push(&transition(
                1,
                ts,
                TcpState::Established,
                TcpState::Established,
            ));
        }
        let done = t
            .push(&transition(1, 9, TcpState::Established, TcpState::Close))
            .expect("closed");
        let times: Vec<u64> = done
            .events
            .iter()
            .map(|o| match o {
                Output::Transition(tr) => tr.ts_ns,
                _ => 0,
            })
            .collect();
        assert_eq!(times, [1, 5, 9]);
        assert_eq!((done.left_out, t.left_out()), (3, 3));
    }
}
