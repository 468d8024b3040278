//! The agent's moving parts shared by `trace`, `top` and `serve`: sock_diag dumps turned into
//! live-table baselines, the reconcile schedule that keeps the live table honest (TIME-WAIT
//! expiry, repairs after lost events), and the feed (kernel events, or polling when the
//! programs cannot load). The caller owns the event loop; this owns the timing.
mod cgroup_gate;
pub mod feed;
pub mod pipeline;

pub use cgroup_gate::{CgroupGate, LeftOut};
pub use feed::{Feed, FeedOptions, PortWatch};
use std::{path::Path, time::Duration};

use crate::{
    diag::{self, Endpoint, Extensions, Query, SocketRecord},
    ebpf::Family,
    filter::states,
    live::{Baseline, Dumped, Tracker, clock},
    procs::Owners,
};

/// A full reconcile (all states) every this many TIME-WAIT reconciles.
const FULL_RECONCILE_EVERY: u64 = 6;

/// This process's network-namespace inode (what the kernel side reports as `netns`).
pub fn own_netns() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/net").map_or(0, |m| m.ino() as u32)
}

/// What a dump covers, mirroring what the kernel side filters; owned, so a dump can run on
/// a blocking thread while the event loop keeps draining the ring.
#[derive(Clone, Copy, Debug, Default)]
pub struct DumpScope {
    pub port: Option<u16>,
    pub v4: bool,
    pub v6: bool,
    /// Only this namespace (inode); with neither this nor `all_netns`, our own.
    pub netns: Option<u32>,
    /// Every namespace on the host.
    pub all_netns: bool,
    /// sockstat's own endpoint, left out as the kernel side leaves it out.
    pub own: Option<OwnEndpoint>,
    /// Cgroups `--pod`/`--k8s-namespace`/`--container` left out (`CgroupGate`): their
    /// sockets are left out of the dumps as the kernel side leaves out their events.
    pub left_out: Option<&'static LeftOut>,
}

/// sockstat's own listening endpoint (serve's port in its namespace). Its sockets, and the
/// loopback clients connected to it (a local scraper), are sockstat's doing, not the
/// host's: the kernel side and the dumps leave them out, so scrapes move no counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwnEndpoint {
    pub netns: u32,
    pub port: u16,
}

impl OwnEndpoint {
    /// The same rule as `wanted()` in sockstat-ebpf/src/sock.rs.
    pub fn covers(
        &self,
        netns: u32,
        local: std::net::SocketAddr,
        remote: std::net::SocketAddr,
    ) -> bool {
        netns == self.netns
            && (local.port() == self.port
                || (remote.port() == self.port && is_loopback(remote.ip())))
    }
}

fn is_loopback(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => v4.is_loopback(),
        std::net::IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// A dump and the namespaces it covered: a reconcile judges only entries of those.
#[derive(Default)]
pub struct Dump {
    pub sockets: Dumped,
    pub covered: Vec<u32>,
    /// With `all_netns`: each namespace's label by inode, from the same enumeration.
    pub names: std::collections::HashMap<u32, String>,
    /// Namespaces that could not be entered: their sockets are missing from this dump.
    pub skipped: Vec<crate::procs::netns::Skipped>,
}

/// Turns dumped sockets straight into compact baseline entries: no intermediate records, so
/// a dump of 100k+ TIME-WAIT sockets stays small.
struct BaselineSink<'a> {
    scope: DumpScope,
    netns: u32,
    owners: Option<&'a Owners>,
    out: Dumped,
    mark: crate::live::Mark,
}

impl diag::Sink<SocketRecord> for BaselineSink<'_> {
    fn begin(&mut self) {
        self.mark = self.out.mark();
    }

    fn item(&mut self, r: SocketRecord) -> Result<(), diag::DiagError> {
        let (Endpoint::Inet(local), Endpoint::Inet(remote)) = (&r.local, &r.peer) else {
            return Ok(());
        };
        let (local, remote) = (*local, *remote);
        if self
            .scope
            .own
            .is_some_and(|own| own.covers(self.netns, local, remote))
        {
            return Ok(());
        }
        if let Some(p) = self.scope.port
            && local.port() != p
            && remote.port() != p
        {
            return Ok(());
        }
        if let (Some(left_out), Some(id)) = (self.scope.left_out, r.cgroup_id)
            && left_out.covers(id)
        {
            return Ok(());
        }
        let owner = self
            .owners
            .and_then(|o| o.of(r.inode).first().map(|h| (h.pid, o.comm(h.pid))));
        self.out.push(Baseline {
            cookie: r.cookie,
            state: r.state,
            netns: self.netns,
            family: Family::of(&local),
            local,
            remote,
            owner,
        });
        Ok(())
    }

    fn restart(&mut self) -> bool {
        self.out.truncate(self.mark);
        true
    }
}

/// TCP sockets in `states_mask`, as baseline entries, filtered like the kernel side filters:
/// our own namespace, the one asked for, or all of them. A namespace whose dump fails is
/// left out of `covered`, so its entries are not judged by it.
pub fn dump_tcp(scope: DumpScope, states_mask: u32, owners: Option<&Owners>) -> Dump {
    let query = Query {
        tcp: true,
        v4: scope.v4,
        v6: scope.v6,
        states: states_mask,
        ext: Extensions::default(),
        ..Query::default()
    };
    let mut dump = Dump::default();
    let (names, skipped) = in_each_netns(scope, &mut dump, |netns, proc_net, dump| {
        let mut sink = BaselineSink {
            scope,
            netns,
            owners,
            out: std::mem::take(&mut dump.sockets),
            mark: Default::default(),
        };
        let ok = diag::collect_into(&query, proc_net, &mut sink).is_ok();
        dump.sockets = sink.out;
        if ok {
            dump.covered.push(netns);
        }
    });
    dump.names = names;
    dump.skipped = skipped;
    dump
}

/// A listener's drop counter (`sk_drops`, SK_MEMINFO_DROPS), which `tcp_listendrop` raises
/// for every SYN or handshake-completing ACK it could not take, and its queues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenerDrops {
    pub cookie: u64,
    pub netns: u32,
    pub local: std::net::SocketAddr,
    pub drops: u32,
    /// Connections waiting to be accepted, and the backlog (ss's Recv-Q and Send-Q).
    pub accept_queue: u32,
    pub backlog: u32,
}

/// Every listening TCP socket in the scope with its drop counter.
pub fn listener_drops(scope: DumpScope) -> Vec<ListenerDrops> {
    let query = Query {
        tcp: true,
        v4: scope.v4,
        v6: scope.v6,
        states: 1 << sockstat_common::tcp_state::LISTEN,
        ext: Extensions {
            memory: true,
            ..Extensions::default()
        },
        ..Query::default()
    };
    let mut out = Vec::new();
    in_each_netns(scope, &mut out, |netns, proc_net, out| {
        let Ok(records) = diag::collect(&query, proc_net) else {
            return;
        };
        out.extend(records.into_iter().filter_map(|r| {
            let Endpoint::Inet(local) = r.local else {
                return None;
            };
            if scope.port.is_some_and(|p| p != local.port())
                || scope
                    .own
                    .is_some_and(|own| own.netns == netns && own.port == local.port())
            {
                return None;
            }
            Some(ListenerDrops {
                cookie: r.cookie,
                netns,
                local,
                drops: r.skmem.as_deref()?.get(SK_MEMINFO_DROPS).copied()?,
                accept_queue: r.recv_q,
                backlog: r.send_q,
            })
        }));
    });
    out
}

/// Each namespace's port settings (`ip_local_port_range`, reserved ports, `tcp_tw_reuse`),
/// by inode, read inside it.
pub fn port_settings(
    scope: DumpScope,
) -> std::collections::HashMap<u32, crate::report::ports::PortSettings> {
    let mut out = std::collections::HashMap::new();
    in_each_netns(scope, &mut out, |netns, _, out| {
        out.insert(netns, crate::report::ports::PortSettings::here());
    });
    out
}

/// `SK_MEMINFO_DROPS`: the index of `sk_drops` in INET_DIAG_SKMEMINFO.
const SK_MEMINFO_DROPS: usize = 8;

/// Runs `each` in every namespace of the scope (ours first, with its /proc/net; the others
/// entered in turn, with /proc/thread-self/net), collecting into `acc`. Returns each
/// namespace's label (with `all_netns`) and those that could not be entered.
fn in_each_netns<A: Send>(
    scope: DumpScope,
    acc: &mut A,
    each: impl Fn(u32, &Path, &mut A) + Sync,
) -> (
    std::collections::HashMap<u32, String>,
    Vec<crate::procs::netns::Skipped>,
) {
    let own = own_netns();
    let mut others = if scope.all_netns || scope.netns.is_some_and(|n| n != own) {
        crate::procs::netns::all()
    } else {
        crate::procs::netns::Scan::default()
    };
    if !scope.all_netns {
        others.namespaces.retain(|ns| Some(ns.inode) == scope.netns);
        others.skipped.clear();
    }
    if scope.all_netns || scope.netns.is_none_or(|n| n == own) {
        each(own, Path::new("/proc/net"), acc);
    }
    others.namespaces.retain(|ns| ns.inode != own);
    let shared = std::sync::Mutex::new(acc);
    let (_, skipped) = others.run_each(|ns| {
        let mut acc = shared.lock().unwrap_or_else(|e| e.into_inner());
        each(ns.inode, Path::new("/proc/thread-self/net"), &mut acc);
    });
    let names = if scope.all_netns {
        others
            .namespaces
            .iter()
            .map(|ns| (ns.inode, ns.label()))
            .collect()
    } else {
        Default::default()
    };
    (names, skipped)
}

/// What the reconcile schedule asks of the event loop next.
pub enum ReconcileStep {
    /// Time for a dump: drain and apply queued events, then call [`Reconciler::start`].
    Due,
    /// A dump finished: drain and apply queued events, then [`Reconciler::apply`] it.
    Done(Box<FinishedDump>),
}

pub struct FinishedDump {
    mask: u32,
    started_ns: u64,
    dump: Dump,
}

/// Dumps at least this large are handed back to the kernel once compared.
const LARGE_DUMP: usize = 10_000;

/// Every `every`, a dump of TIME-WAIT sockets (their expiry has no event); every sixth, or
/// after events were lost, a dump of all states. With the kernel's timewait hooks on,
/// TIME-WAIT's end is an event: its sockets (up to 131072 a namespace, often most of the
/// table, and a dump of them ~15 MB while it lives) are dumped only after a loss. The dump
/// runs on a blocking thread.
pub struct Reconciler {
    scope: DumpScope,
    timewait_observed: bool,
    timer: tokio::time::Interval,
    count: u64,
    lost_at_last_full: u64,
    pending: Option<(u32, u64, tokio::task::JoinHandle<Dump>)>,
}

impl FinishedDump {
    /// Namespace labels by inode (filled for `all_netns` scopes).
    pub fn names(&self) -> &std::collections::HashMap<u32, String> {
        &self.dump.names
    }

    /// Namespaces this dump could not enter.
    pub fn skipped(&self) -> &[crate::procs::netns::Skipped] {
        &self.dump.skipped
    }
}

impl Reconciler {
    pub fn new(scope: DumpScope, every: Duration, timewait_observed: bool) -> Self {
        let every = every.max(Duration::from_millis(100));
        Reconciler {
            scope,
            timewait_observed,
            timer: tokio::time::interval_at(tokio::time::Instant::now() + every, every),
            count: 0,
            lost_at_last_full: 0,
            pending: None,
        }
    }

    /// Waits for the next step. Cancel-safe: usable as a `tokio::select!` branch.
    pub async fn next(&mut self) -> ReconcileStep {
        if let Some((mask, started_ns, handle)) = self.pending.as_mut() {
            let (mask, started_ns) = (*mask, *started_ns);
            // A dump thread that panicked is an empty dump; the next one repairs.
            let dump = handle.await.unwrap_or_else(|e| {
                log::warn!("a reconcile dump failed ({e}); the next one repairs");
                Dump::default()
            });
            self.pending = None;
            return ReconcileStep::Done(Box::new(FinishedDump {
                mask,
                started_ns,
                dump,
            }));
        }
        self.timer.tick().await;
        ReconcileStep::Due
    }

    /// Starts the dump; `dropped` counts events the stream lacks (lost or skipped runs; a
    /// rise forces a full one, and so does `None`: counters that could not be read).
    pub fn start(&mut self, dropped: Option<u64>) {
        self.count += 1;
        let lost = dropped.unwrap_or(self.lost_at_last_full);
        let after_loss = dropped.is_none() || lost > self.lost_at_last_full;
        let full = self.count.is_multiple_of(FULL_RECONCILE_EVERY) || after_loss;
        if full {
            self.lost_at_last_full = lost;
        }
        let mask = match (full, self.timewait_observed && !after_loss) {
            (true, false) => states::ALL,
            (true, true) => states::ALL & !states::TIME_WAIT,
            (false, false) => states::TIME_WAIT,
            // TIME-WAIT's ends are events, and nothing was lost: nothing to check.
            (false, true) => return,
        };
        let scope = self.scope;
        let started = clock::monotonic_ns();
        self.pending = Some((
            mask,
            started,
            tokio::task::spawn_blocking(move || dump_tcp(scope, mask, None)),
        ));
    }

    /// Compares the finished dump with the live table.
    pub fn apply(dump: FinishedDump, tracker: &mut Tracker, out: &mut Vec<crate::live::Output>) {
        let large = dump.dump.sockets.len() >= LARGE_DUMP;
        tracker.reconcile(
            dump.dump.sockets,
            Some(&dump.dump.covered),
            dump.mask,
            dump.started_ns,
            clock::monotonic_ns(),
            out,
        );
        // A dump of 100k+ sockets is ~100 bytes each while it lives: give it back, or the
        // agent stays that much larger until the next one reuses it.
        if large {
            crate::ebpf::loader::release_freed_heap();
        }
    }
}
