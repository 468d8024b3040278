//! The live view of sockets built from kernel events: for now, per-socket timing (how long a
//! socket spent in the state it just left) and owner attribution from the event itself.
pub mod clock;

use std::collections::HashMap;

use crate::{
    ebpf::StateChange,
    tcp::{ReportedState, TcpState},
};

/// Where an event's owner came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnerSource {
    /// The task that held the socket lock when the transition ran.
    Task,
    /// Nobody trustworthy was current (softirq): no owner is claimed.
    Unknown,
}

impl OwnerSource {
    pub fn name(self) -> &'static str {
        match self {
            OwnerSource::Task => "task",
            OwnerSource::Unknown => "unknown",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub pid: Option<u32>,
    pub comm: Option<String>,
    pub source: OwnerSource,
}

/// A transition with what the agent knows about it beyond the raw event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    pub change: StateChange,
    /// Nanoseconds spent in `change.old`; `None` when that socket's previous transition was
    /// not seen.
    pub prev_state_ns: Option<u64>,
    pub owner: Owner,
}

/// Remembers when each socket entered its current state.
pub struct StateTimes {
    entered: HashMap<u64, u64>,
    capacity: usize,
}

impl Default for StateTimes {
    fn default() -> Self {
        Self::with_capacity(1 << 20)
    }
}

impl StateTimes {
    /// `capacity` bounds memory under churn: when full, the oldest half is forgotten (their
    /// next transition then has an unknown previous-state time, never a wrong one).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            entered: HashMap::new(),
            capacity: capacity.max(2),
        }
    }

    pub fn len(&self) -> usize {
        self.entered.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entered.is_empty()
    }

    pub fn observe(&mut self, change: StateChange) -> Observed {
        let prev_state_ns = self
            .entered
            .get(&change.cookie)
            .map(|&since| change.ts_ns.saturating_sub(since));
        if change.new == ReportedState::Known(TcpState::Close) {
            self.entered.remove(&change.cookie);
        } else {
            if self.entered.len() >= self.capacity {
                self.evict_oldest_half();
            }
            self.entered.insert(change.cookie, change.ts_ns);
        }
        let owner = if change.task_owns_socket {
            Owner {
                pid: Some(change.task.tgid),
                comm: Some(change.task.comm.clone()),
                source: OwnerSource::Task,
            }
        } else {
            Owner {
                pid: None,
                comm: None,
                source: OwnerSource::Unknown,
            }
        };
        Observed {
            change,
            prev_state_ns,
            owner,
        }
    }

    fn evict_oldest_half(&mut self) {
        let mut times: Vec<u64> = self.entered.values().copied().collect();
        let mid = times.len() / 2;
        let (_, &mut cutoff, _) = times.select_nth_unstable(mid);
        self.entered.retain(|_, &mut t| t > cutoff);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ebpf::events::{from_raw, tests::raw_v4};
    use sockstat_common::tcp_state;

    fn change(cookie: u64, ts: u64, old: u8, new: u8, owned: bool) -> StateChange {
        let mut raw = raw_v4();
        raw.cookie = cookie;
        raw.ts_ns = ts;
        raw.old_state = old;
        raw.new_state = new;
        if !owned {
            raw.flags &= !sockstat_common::flags::TASK_OWNS_SOCKET;
        }
        from_raw(&raw).unwrap()
    }

    #[test]
    fn times_the_previous_state_and_forgets_closed_sockets() {
        let mut t = StateTimes::default();
        let a = t.observe(change(1, 100, tcp_state::CLOSE, tcp_state::SYN_SENT, true));
        assert_eq!(a.prev_state_ns, None);
        assert_eq!(a.owner.source, OwnerSource::Task);
        assert_eq!(a.owner.pid, Some(100));
        let b = t.observe(change(
            1,
            350,
            tcp_state::SYN_SENT,
            tcp_state::ESTABLISHED,
            false,
        ));
        assert_eq!(b.prev_state_ns, Some(250));
        assert_eq!(b.owner.source, OwnerSource::Unknown);
        assert_eq!(b.owner.pid, None, "a softirq task is never named as owner");
        t.observe(change(
            1,
            400,
            tcp_state::ESTABLISHED,
            tcp_state::CLOSE,
            true,
        ));
        assert!(t.is_empty());
    }

    #[test]
    fn stays_bounded() {
        let mut t = StateTimes::with_capacity(100);
        for i in 0..1000 {
            t.observe(change(i, i, tcp_state::CLOSE, tcp_state::SYN_SENT, true));
        }
        assert!(t.len() <= 100);
        // The newest socket is still known.
        let last = t.observe(change(
            999,
            1005,
            tcp_state::SYN_SENT,
            tcp_state::ESTABLISHED,
            true,
        ));
        assert_eq!(last.prev_state_ns, Some(6));
    }
}
