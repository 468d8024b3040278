//! `top --replay`: the dashboard rebuilt from recorded state changes (`record
//! --transitions`). Every change since the look-back's start rebuilds the sockets open at
//! each moment; the dashboard observes the changes and samples those sockets interval by
//! interval, as it does live, up to the moment asked for.
use std::{collections::HashMap, net::SocketAddr, sync::Arc};

use super::{
    Source, Transition,
    dashboard::{Dashboard, DataSource, SnapshotContext, SockView, SortBy},
};
use crate::{
    procs::workload::WorkloadFilter,
    tcp::{ReportedState, TcpState},
};

/// A recorded state change, its owner's group (pod or container) and whether the
/// `--pod`/`--container` selection keeps it.
pub struct Change {
    pub transition: Transition,
    pub group: Option<Arc<str>>,
    pub wanted: bool,
}

/// A socket the changes so far leave open.
struct Open {
    state: ReportedState,
    local: SocketAddr,
    remote: SocketAddr,
    netns: u32,
    owner: Option<(u32, String)>,
    since_ns: u64,
    group: Option<Arc<str>>,
    wanted: bool,
}

/// What a replay shows, besides the dashboard.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Changes applied, and sockets open at the end.
    pub changes: u64,
    pub open: u64,
}

/// What a replay's snapshot says of itself: recorded, from `from` as of `at`. The
/// recorder's losses are not in the store: unknown, never 0.
pub fn context<'a>(
    from: &str,
    at: String,
    (filter, workload): (&str, Option<WorkloadFilter>),
    changes: &[Change],
    alerts: &'a [crate::alert::Alert],
) -> SnapshotContext<'a> {
    SnapshotContext {
        source: DataSource::Recorded {
            from: from.to_string(),
            at,
        },
        filter: filter.to_string(),
        workload,
        paused: false,
        sort: SortBy::Connections,
        lost_events: None,
        missed_runs: None,
        skipped_netns: Vec::new(),
        repairs: 0,
        synthesized: changes
            .iter()
            .filter(|c| c.transition.source == Source::Synthesized)
            .count() as u64,
        alerts,
    }
}

/// Replays `changes` (oldest first, wall-clock ns) into `dash`: each interval of
/// `interval_ns` from `sampled_from_ns` to `at_ns` is observed and sampled; earlier
/// changes only rebuild the sockets. `observes`/`counts` are the caller's filter for
/// changes and for sockets.
pub fn replay(
    dash: &mut Dashboard,
    changes: &[Change],
    (sampled_from_ns, at_ns, interval_ns): (u64, u64, u64),
    observes: impl Fn(&Change) -> bool,
    counts: impl Fn(ReportedState, SocketAddr, SocketAddr) -> bool,
) -> Replayed {
    let mut open: HashMap<u64, Open> = HashMap::new();
    let mut next_sample = sampled_from_ns + interval_ns.max(1);
    let sample = |dash: &mut Dashboard, open: &HashMap<u64, Open>| {
        dash.sample(
            open.values()
                .filter(|s| s.wanted && counts(s.state, s.local, s.remote))
                .map(|s| SockView {
                    state: s.state,
                    local: s.local,
                    remote: s.remote,
                    netns: s.netns,
                    owner: s.owner.as_ref().map(|(pid, comm)| (*pid, comm.as_str())),
                    since_ns: Some(s.since_ns),
                    pod: s.group.clone(),
                }),
        );
    };
    let mut applied = 0;
    for c in changes.iter().filter(|c| c.transition.ts_ns <= at_ns) {
        let t = &c.transition;
        while t.ts_ns >= next_sample && next_sample <= at_ns {
            sample(dash, &open);
            next_sample += interval_ns.max(1);
        }
        if t.ts_ns >= sampled_from_ns && observes(c) {
            dash.observe_in(t, c.group.clone());
        }
        applied += 1;
        if t.new == ReportedState::Known(TcpState::Close) {
            open.remove(&t.cookie);
            continue;
        }
        let owner = t
            .owner
            .pid
            .zip(t.owner.comm.as_ref().map(|c| c.as_str().to_string()));
        open.insert(
            t.cookie,
            Open {
                state: t.new,
                local: t.local,
                remote: t.remote,
                netns: t.netns,
                owner,
                since_ns: t.ts_ns,
                group: c.group.clone(),
                wanted: c.wanted,
            },
        );
    }
    // The intervals up to the moment asked for, the last one ending there.
    while next_sample < at_ns {
        sample(dash, &open);
        next_sample += interval_ns.max(1);
    }
    sample(dash, &open);
    Replayed {
        changes: applied,
        open: open.len() as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        ebpf::Family,
        live::{Owner, OwnerSource},
    };

    fn change(ts_s: u64, cookie: u64, old: TcpState, new: TcpState) -> Change {
        Change {
            transition: Transition {
                ts_ns: ts_s * 1_000_000_000,
                cookie,
                netns: 1,
                family: Family::Inet,
                local: "10.0.0.1:40000".parse().unwrap(),
                remote: "10.0.3.7:5432".parse().unwrap(),
                old: ReportedState::Known(old),
                new: ReportedState::Known(new),
                prev_state_ns: None,
                owner: Owner::known(42, "psql", OwnerSource::Task),
                source: Source::Kernel,
                cause: None,
            },
            group: None,
            wanted: true,
        }
    }

    #[test]
    fn the_sockets_open_at_the_moment_and_nothing_after_it() {
        use TcpState::*;
        let changes = [
            change(10, 1, Close, SynSent),
            change(10, 1, SynSent, Established),
            change(20, 2, Close, SynSent),
            change(21, 2, SynSent, Close),
            change(90, 1, Established, FinWait1),
        ];
        let mut dash = Dashboard::new(1.0, true, 0);
        let s = 1_000_000_000;
        let replayed = replay(
            &mut dash,
            &changes,
            (0, 60 * s, s),
            |_| true,
            |_, _, _| true,
        );
        assert_eq!(
            replayed,
            Replayed {
                changes: 4,
                open: 1
            }
        );
        let snap = dash.snapshot(context("test", "60".into(), ("", None), &changes, &[]));
        let open: Vec<(&str, u64)> = snap
            .states
            .iter()
            .filter(|r| r.count > 0)
            .map(|r| (r.state, r.count))
            .collect();
        assert_eq!(open, [("ESTAB", 1)]);
    }
}
