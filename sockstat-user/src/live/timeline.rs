//! One timeline per connection (`trace --timeline`, and serve's memory for `sockstat
//! conn`): every transition, retransmission, reset and drop the live table reports for a
//! socket, in order, from its first event to its CLOSE, when the whole timeline is handed
//! back. Each connection keeps at most `max_events` (its first and the latest), and at most
//! `max_open` connections are followed (the oldest make room); what falls out is counted.
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
        self.events
            .make_contiguous()
            .sort_by_key(|o| o.head().ts_ns);
    }
}

pub struct Timelines {
    open: FastMap<u64, Timeline>,
    /// Cookies in the order their timelines began, for evicting the oldest (cookies of
    /// timelines already closed are skipped when they come up).
    order: VecDeque<u64>,
    max_events: usize,
    max_open: usize,
    /// Events left out across every connection, and timelines dropped to make room.
    left_out: u64,
    evicted: u64,
}

impl Timelines {
    /// `max_events`: the most a connection keeps (at least 2: its first and its last);
    /// `max_open`: the most connections followed at once.
    pub fn new(max_events: usize, max_open: usize) -> Self {
        Self {
            open: FastMap::default(),
            order: VecDeque::new(),
            max_events: max_events.max(2),
            max_open: max_open.max(1),
            left_out: 0,
            evicted: 0,
        }
    }

    /// Takes one output; returns the connection's whole timeline when this was its CLOSE.
    /// Outputs without a connection (cookie 0: a closed port, a SYN-ACK of a request)
    /// belong to none and are not kept.
    pub fn push(&mut self, o: &Output) -> Option<Timeline> {
        if matches!(o, Output::Lifetime(_)) {
            return None;
        }
        let head = o.head();
        let (cookie, ts_ns, owner) = (head.cookie, head.ts_ns, head.owner);
        if cookie == 0 {
            return None;
        }
        if !self.open.contains_key(&cookie) {
            while self.open.len() >= self.max_open {
                let Some(oldest) = self.order.pop_front() else {
                    break;
                };
                if self.open.remove(&oldest).is_some() {
                    self.evicted += 1;
                }
            }
            // Closed timelines leave their cookie behind; keep the queue near the map's size.
            if self.order.len() > 2 * self.max_open {
                let open = &self.open;
                self.order.retain(|c| open.contains_key(c));
            }
            self.order.push_back(cookie);
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

    /// Timelines dropped to keep to `max_open`.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// The open timeline of `cookie`, in time order.
    pub fn get(&self, cookie: u64) -> Option<Timeline> {
        let mut t = self.open.get(&cookie)?.clone();
        t.sort();
        Some(t)
    }

    /// Every open timeline.
    pub fn iter(&self) -> impl Iterator<Item = &Timeline> {
        self.open.values()
    }
}

impl Timeline {
    /// Both ends, as its latest event gives them (a connect's first has no local port).
    pub fn ends(&self) -> Option<(std::net::SocketAddr, std::net::SocketAddr)> {
        let head = self.events.back()?.head();
        Some((head.local, head.remote))
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
        let mut t = Timelines::new(8, 16);
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

    /// serve's worst case is `--timelines` x 2 x `--timeline-events` of these (README).
    #[test]
    fn an_output_is_small_enough_for_the_documented_bound() {
        assert!(
            std::mem::size_of::<Output>() <= 176,
            "{}",
            std::mem::size_of::<Output>()
        );
    }

    #[test]
    fn past_the_open_cap_the_oldest_timeline_makes_room() {
        let mut t = Timelines::new(8, 2);
        for cookie in 1..=3 {
            t.push(&transition(
                cookie,
                cookie,
                TcpState::Close,
                TcpState::SynSent,
            ));
        }
        assert_eq!(t.evicted(), 1);
        assert!(t.get(1).is_none());
        assert!(t.get(2).is_some() && t.get(3).is_some());
    }

    #[test]
    fn a_full_ring_keeps_the_first_and_the_latest_and_counts_the_rest() {
        let mut t = Timelines::new(3, 16);
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
