//! The live table and the rules that turn kernel events into printed transitions.
use std::net::SocketAddr;

use super::{
    Baseline, Cause, DroppedSegment, Dumped, FastMap, Lifetime, Output, Owner, OwnerSource, Reset,
    ResetDirection, Retransmit, RttSample, Source, Transition,
    tw_table::{self, TwTable},
};
use crate::{
    ebpf::{
        DropReason, EventKind, Family, Hook, KernelEvent, KernelOwner, Retransmission, SegmentDrop,
        TcpCounters, TimewaitClose, TimewaitEvent,
    },
    tcp::{ReportedState, TcpState},
};

/// One socket as the table knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub state: ReportedState,
    /// When it entered `state`; `None` for sockets found by a dump.
    pub since_ns: Option<u64>,
    /// When the connection began (connect or passive open), if seen.
    pub first_ns: Option<u64>,
    /// Time in SYN-SENT, for a connect() seen here.
    pub connect_ns: Option<u64>,
    /// The kernel's first RTT sample, at the handshake (µs).
    pub handshake_rtt_us: Option<u32>,
    pub owner: Owner,
    pub netns: u32,
    pub family: Family,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub retransmits: u32,
    /// A reset seen just before the socket closes.
    pub pending: Option<Cause>,
    /// Monotonic time of the last event or dump that touched the entry.
    pub touched_ns: u64,
    /// A passive open (child of a listener).
    pub passive: bool,
    /// Opened by connect() here (its SYN counts in `bytes_acked`); None when not seen.
    pub active: Option<bool>,
    /// The peer's FIN arrived (it counts in `bytes_received`).
    pub peer_fin: bool,
    /// The kernel swapped the socket for a timewait socket (observed or inferred).
    pub timewait: bool,
}

impl Entry {
    /// A transition sockstat inferred for this socket (from its state to `new`, at `now_ns`).
    fn synthesized(
        &self,
        cookie: u64,
        new: ReportedState,
        now_ns: u64,
        cause: Option<Cause>,
    ) -> Transition {
        Transition {
            ts_ns: now_ns,
            cookie,
            netns: self.netns,
            family: self.family,
            local: self.local,
            remote: self.remote,
            old: self.state,
            new,
            prev_state_ns: self.since_ns.map(|s| now_ns.saturating_sub(s)),
            owner: self.owner,
            source: Source::Synthesized,
            cause,
        }
    }
}

/// One socket as views see it (from either table).
pub struct SocketView<'a> {
    pub state: ReportedState,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub netns: u32,
    pub owner: &'a Owner,
    /// When it entered `state` (monotonic ns), if seen.
    pub since_ns: Option<u64>,
}

/// What the live table holds and what that costs, by its own accounting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableMemory {
    pub sockets: usize,
    pub bytes: usize,
}

impl TableMemory {
    pub fn per_socket(&self) -> Option<usize> {
        (self.sockets > 0).then(|| self.bytes / self.sockets)
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrackerStats {
    /// Entries a reconcile had to correct (missed events).
    pub repairs: u64,
    /// Transitions sockstat inferred (TIME-WAIT entry and expiry, repairs).
    pub synthesized: u64,
    /// Entries dropped to keep the table within its bound.
    pub evicted: u64,
    /// Passive opens whose child socket was destroyed before it had a cookie and addresses
    /// of its own (it lost a race to another CPU's child): counted, never printed.
    pub unresolved_opens: u64,
    /// Transitions from a state other than the one their socket was last seen entering:
    /// at least one of its transitions is missing (lost to a full ring, or a run the kernel
    /// skipped, which classic tracepoints count only from 6.7). A socket's first missing
    /// transition goes unnoticed here.
    pub jumps: u64,
}

/// Outputs the tracker makes only for a reader that wants them: each is built (a lifetime
/// allocated) per connection, on the event path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reports {
    /// `Output::Lifetime` as each connection ends (`trace --lifetimes`).
    pub lifetimes: bool,
    /// `Output::Rtt` for each handshake's RTT (the kernel's first sample, which the change
    /// to ESTAB carries); lifetimes carry it either way.
    pub handshake_rtts: bool,
}

impl Default for Reports {
    fn default() -> Self {
        Reports {
            lifetimes: true,
            handshake_rtts: false,
        }
    }
}

pub struct Tracker {
    entries: FastMap<u64, Entry>,
    /// Sockets the kernel swapped for timewait sockets: most of a busy host's, so kept in a
    /// compact table of their own (`tw_table`).
    timewait: TwTable,
    /// Closes whose cause may still arrive: `tcp_disconnect()` (SO_LINGER 0, unread data)
    /// sets CLOSE *before* it sends the RST, so the reset event follows the transition.
    held: FastMap<u64, Vec<Output>>,
    /// Cookies held before the last settle: released at the next one. A close and the RST
    /// it sends are two ring records, and a drain can fall between them, so a hold lasts
    /// one more batch (one poll, at most 50 ms) before the close goes out without it.
    held_before: Vec<u64>,
    /// Passive opens reported before the child socket had its own identity, by the child's
    /// kernel address (see `apply`).
    unresolved_opens: FastMap<u64, KernelEvent>,
    /// Owners of listening sockets by (netns, port): passive opens inherit them.
    listeners: FastMap<(u32, u16), Owner>,
    /// Timewait sockets whose timer was cancelled, by cookie, with when: not yet known to be
    /// re-armed, expiring, or dead (see `timewait_event`).
    cancelled: FastMap<u64, u64>,
    /// Peer FINs that reached an orphan's timewait socket before the CLOSE of the socket it
    /// replaced was reported, by cookie, with when (see `peer_fin_reached_orphan`).
    early_fins: FastMap<u64, u64>,
    /// The kernel's timewait hooks are on: TIME-WAIT is observed, never inferred.
    timewait_observed: bool,
    /// Which outputs beyond transitions, resets, retransmits and drops are made.
    reports: Reports,
    capacity: usize,
    stats: TrackerStats,
}

/// A reported transition as the connection sees it (see `Tracker::edge`).
struct ShownEdge {
    /// The state it entered (TIME-WAIT where the kernel reports CLOSE for a socket replaced
    /// by a timewait socket).
    shown: ReportedState,
    cause: Option<Cause>,
    source: Source,
    /// Nothing to print: the connection did not change state.
    silent: bool,
    /// The connection goes on (its entry stays in the table).
    lives_on: bool,
}

impl Default for Tracker {
    fn default() -> Self {
        Self::with_capacity(1 << 20)
    }
}

/// How long a passive open may wait for its child's next transition to learn its identity.
/// That transition follows in the same softirq; the bound only matters if it never comes.
const UNRESOLVED_OPEN_NS: u64 = 1_000_000_000;

/// How long a cancelled timewait timer waits to learn why: its re-arm, expiry or RST follow
/// at once on the same CPU; a new connection's SYN that took over its 4-tuple shows as that
/// connection's passive open one round trip later. With none of them, it was killed.
const CANCEL_HOLD_NS: u64 = 1_000_000_000;

/// TCP_TIMEWAIT_LEN (60 s), less a little for timer slack.
const TIME_WAIT_NS: u64 = 59_000_000_000;

/// An address as the wire shows it: an IPv6 socket's `::ffff:a.b.c.d` is `a.b.c.d`.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

const fn known(s: TcpState) -> ReportedState {
    ReportedState::Known(s)
}

impl Tracker {
    /// `capacity` bounds memory under churn: when full, the least recently touched entries
    /// are forgotten (counted in `evicted`), never silently kept growing.
    pub fn with_capacity(capacity: usize) -> Self {
        Tracker {
            entries: FastMap::default(),
            timewait: TwTable::default(),
            held: FastMap::default(),
            held_before: Vec::new(),
            unresolved_opens: FastMap::default(),
            listeners: FastMap::default(),
            cancelled: FastMap::default(),
            early_fins: FastMap::default(),
            timewait_observed: false,
            reports: Reports::default(),
            capacity: capacity.max(16),
            stats: TrackerStats::default(),
        }
    }

    /// Whether the kernel reports timewait sockets (`Probe::timewait_observed`). Without it,
    /// TIME-WAIT is inferred from the peer's FIN and expired by reconciles, marked
    /// synthesized.
    pub fn observe_timewait(&mut self, on: bool) {
        self.timewait_observed = on;
    }

    /// Which optional outputs to make (see `Reports`).
    pub fn report(&mut self, reports: Reports) {
        self.reports = reports;
    }

    pub fn len(&self) -> usize {
        self.entries.len() + self.timewait.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The socket of `cookie`, from whichever table holds it.
    fn entry(&self, cookie: u64) -> Option<Entry> {
        self.entries
            .get(&cookie)
            .cloned()
            .or_else(|| self.timewait.get(cookie))
    }

    #[cfg(test)]
    pub fn get(&self, cookie: u64) -> Option<Entry> {
        self.entry(cookie)
    }

    /// Every socket in the table.
    pub fn sockets(&self) -> impl Iterator<Item = SocketView<'_>> {
        self.entries
            .values()
            .map(|e| SocketView {
                state: e.state,
                local: e.local,
                remote: e.remote,
                netns: e.netns,
                owner: &e.owner,
                since_ns: e.since_ns,
            })
            .chain(self.timewait.iter().map(|(_, v)| v))
    }

    /// The table's size by its own accounting: the general map's buckets (with their
    /// control bytes) and the timewait table's slots, index and interners.
    pub fn memory(&self) -> TableMemory {
        TableMemory {
            sockets: self.len(),
            bytes: tw_table::hash_bytes(
                self.entries.capacity(),
                std::mem::size_of::<(u64, Entry)>(),
            ) + self.timewait.bytes(),
        }
    }

    /// Puts `e` where it belongs: the timewait table for a timewait socket, else (or when
    /// that table cannot take it) the general one.
    fn store(&mut self, cookie: u64, e: Entry) {
        if tw_table::is_timewait(&e) && self.timewait.insert(cookie, &e).is_ok() {
            self.entries.remove(&cookie);
            return;
        }
        self.timewait.remove(cookie);
        self.entries.insert(cookie, e);
    }

    fn remove(&mut self, cookie: u64) -> Option<Entry> {
        self.entries
            .remove(&cookie)
            .or_else(|| self.timewait.remove(cookie))
    }

    /// Changes the entry of `cookie` in whichever table holds it.
    fn update(&mut self, cookie: u64, f: impl FnOnce(&mut Entry)) {
        match self.entries.get_mut(&cookie) {
            Some(e) => f(e),
            None => {
                self.timewait.update(cookie, f);
            }
        }
    }

    pub fn stats(&self) -> TrackerStats {
        self.stats
    }

    /// Adds sockets found by the start-up dump. Sockets already seen through events (the
    /// programs were attached first) keep what the events said.
    pub fn load_baseline<'a>(
        &mut self,
        sockets: impl IntoIterator<Item = Baseline<'a>>,
        now_ns: u64,
    ) {
        for b in sockets {
            if self.entries.contains_key(&b.cookie) || self.timewait.contains(b.cookie) {
                continue;
            }
            self.insert_baseline(b, now_ns);
        }
    }

    fn insert_baseline(&mut self, b: Baseline<'_>, now_ns: u64) {
        let owner = b.owner.map_or_else(Owner::unknown, |(pid, comm)| {
            Owner::known(pid, comm, OwnerSource::Baseline)
        });
        let state = ReportedState::from_kernel(b.state);
        if state == known(TcpState::Listen) && owner.pid.is_some() {
            self.listeners.insert((b.netns, b.local.port()), owner);
        }
        self.make_room();
        self.store(
            b.cookie,
            Entry {
                state,
                since_ns: None,
                first_ns: None,
                connect_ns: None,
                handshake_rtt_us: None,
                owner,
                netns: b.netns,
                family: b.family,
                local: b.local,
                remote: b.remote,
                retransmits: 0,
                pending: None,
                touched_ns: now_ns,
                passive: false,
                active: None,
                peer_fin: false,
                // sock_diag lists a timewait socket as TIME-WAIT.
                timewait: state == known(TcpState::TimeWait),
            },
        );
    }

    fn make_room(&mut self) {
        if self.len() < self.capacity {
            return;
        }
        // Forget the least recently touched quarter, of both tables.
        let mut times: Vec<u64> = self
            .entries
            .values()
            .map(|e| e.touched_ns)
            .chain(self.timewait.touched_times().map(|(_, t)| t))
            .collect();
        let k = times.len() / 4;
        let (_, &mut cutoff, _) = times.select_nth_unstable(k);
        let before = self.len();
        self.entries.retain(|_, e| e.touched_ns > cutoff);
        let stale: Vec<u64> = self
            .timewait
            .touched_times()
            .filter(|&(_, t)| t <= cutoff)
            .map(|(c, _)| c)
            .collect();
        for cookie in stale {
            self.timewait.remove(cookie);
        }
        self.stats.evicted += (before - self.len()) as u64;
    }

    /// Applies one kernel event; appends what should be printed to `out`.
    pub fn apply(&mut self, ev: &KernelEvent, out: &mut Vec<Output>) {
        match &ev.kind {
            EventKind::StateChange { old, new, tcp } => {
                // Kernels up to at least 6.12 report LISTEN -> SYN-RECV from
                // inet_csk_clone_lock() before the child's cookie, ports and peer are copied
                // from the request: the event carries the listener's cookie and addresses.
                // The child's next transition (from SYN-RECV, in the same softirq) has its
                // own; the open is applied then, as the child's, by its kernel address.
                if *old == known(TcpState::Listen)
                    && *new == known(TcpState::SynRecv)
                    && ev.remote.port() == 0
                    && ev.sk_addr != 0
                {
                    self.unresolved_opens.insert(ev.sk_addr, ev.clone());
                    return;
                }
                if *old == known(TcpState::SynRecv)
                    && let Some(mut open) = self.unresolved_opens.remove(&ev.sk_addr)
                    && let EventKind::StateChange {
                        old: o,
                        new: n,
                        tcp: t,
                    } = open.kind
                {
                    open.cookie = ev.cookie;
                    open.cookie_is_socket_cookie = ev.cookie_is_socket_cookie;
                    open.local = ev.local;
                    open.remote = ev.remote;
                    self.state_change(&open, o, n, t, out);
                }
                self.state_change(ev, *old, *new, *tcp, out)
            }
            EventKind::ResetReceived { state } => {
                out.push(self.reset(ev, ResetDirection::In, None, *state));
                self.note(ev, Some(Cause::RstIn));
            }
            EventKind::ResetSent { reason, state } => {
                // Out before the held close it explains (the kernel reports it just after that
                // CLOSE, from the same call).
                out.push(self.reset(ev, ResetDirection::Out, *reason, *state));
                if let Some(mut held) = self.held.remove(&ev.cookie) {
                    for o in &mut held {
                        match o {
                            Output::Transition(t) => t.cause = Some(Cause::RstOut),
                            Output::Lifetime(l) => l.cause = Some(Cause::RstOut),
                            Output::Reset(_)
                            | Output::Retransmit(_)
                            | Output::Drop(_)
                            | Output::Rtt(_) => {}
                        }
                    }
                    out.append(&mut held);
                } else {
                    self.note(ev, Some(Cause::RstOut));
                }
            }
            EventKind::ResetNoSocket => out.push(self.reset(ev, ResetDirection::Out, None, None)),
            EventKind::Retransmit(what) => {
                if let Some(e) = self.entries.get_mut(&ev.cookie) {
                    e.retransmits += 1;
                    e.touched_ns = ev.ts_ns;
                }
                out.push(self.retransmit(ev, *what, false));
            }
            EventKind::SynackRetransmit(what) => out.push(self.retransmit(ev, *what, true)),
            EventKind::Drop(what) => out.push(self.dropped(ev, *what)),
            EventKind::Rtt { tcp } => {
                if let Some(e) = self.entries.get_mut(&ev.cookie) {
                    e.touched_ns = ev.ts_ns;
                }
                out.push(self.rtt(ev, *tcp, false));
            }
            EventKind::ErrorReport { .. } => {}
            EventKind::Timewait(e) => self.timewait_event(ev, *e, out),
        }
    }

    /// What the kernel's timewait hooks saw. A cancel alone is held: a re-arm or the expiry
    /// of the same socket follows at once, or the RST that killed it, or the passive open of
    /// the connection whose SYN took its place; with none of them within `CANCEL_HOLD_NS` it
    /// was killed (`ss -K`, its namespace went away).
    fn timewait_event(&mut self, ev: &KernelEvent, e: TimewaitEvent, out: &mut Vec<Output>) {
        match e {
            TimewaitEvent::Armed { substate } => {
                self.cancelled.remove(&ev.cookie);
                // Created: its socket's CLOSE follows and says so. Re-armed into TIME-WAIT:
                // the peer's FIN reached an orphan.
                if substate == known(TcpState::TimeWait) {
                    self.peer_fin_reached_orphan(ev.cookie, ev.ts_ns, out);
                }
            }
            TimewaitEvent::Fin => self.peer_fin_reached_orphan(ev.cookie, ev.ts_ns, out),
            TimewaitEvent::Expired { .. } => {
                self.cancelled.remove(&ev.cookie);
                self.timewait_gone(ev.cookie, ev.ts_ns, Cause::Timeout, out);
            }
            TimewaitEvent::Cancelled { reused: true, .. } => {
                self.timewait_gone(ev.cookie, ev.ts_ns, Cause::Reused, out);
            }
            TimewaitEvent::Cancelled { reused: false, .. } => {
                self.cancelled.insert(ev.cookie, ev.ts_ns);
                // Not for a reconcile to judge while its fate is being decided.
                self.update(ev.cookie, |e| e.touched_ns = ev.ts_ns);
            }
            TimewaitEvent::Reset { .. } => {
                self.cancelled.remove(&ev.cookie);
                self.timewait_gone(ev.cookie, ev.ts_ns, Cause::RstIn, out);
            }
        }
    }

    /// A passive open on the 4-tuple of a timewait socket whose timer was just cancelled: the
    /// listener accepted a SYN in its place (RFC 6191).
    fn taken_over(&mut self, ev: &KernelEvent, out: &mut Vec<Output>) {
        let replaced = self.cancelled.keys().copied().find(|&cookie| {
            self.entry(cookie).is_some_and(|e| {
                e.netns == ev.netns && e.local == ev.local && e.remote == ev.remote
            })
        });
        if let Some(cookie) = replaced {
            self.cancelled.remove(&cookie);
            self.timewait_gone(cookie, ev.ts_ns, Cause::Reused, out);
        }
    }

    /// An orphan's timewait socket in FIN-WAIT-2 took the peer's FIN at `ts_ns`: TIME-WAIT,
    /// observed. The kernel hashes the timewait socket before the CPU that made it reports
    /// the old socket's CLOSE, so the FIN can reach it on another CPU, and be reported,
    /// first: then it waits in `early_fins` for that CLOSE. (A timer armed in TIME-WAIT for
    /// a socket not yet swapped is also its creation: that CLOSE shows the transition.)
    fn peer_fin_reached_orphan(&mut self, cookie: u64, ts_ns: u64, out: &mut Vec<Output>) {
        let Some(e) = self.entry(cookie) else {
            return;
        };
        if e.state != known(TcpState::FinWait2) {
            return;
        }
        if !e.timewait {
            self.early_fins.insert(cookie, ts_ns);
            return;
        }
        let mut t = e.synthesized(cookie, known(TcpState::TimeWait), ts_ns, Some(Cause::Fin));
        t.source = Source::Kernel;
        self.update(cookie, |e| {
            e.state = known(TcpState::TimeWait);
            e.since_ns = Some(ts_ns);
            e.touched_ns = ts_ns;
            e.peer_fin = true;
        });
        out.push(Output::Transition(t));
    }

    /// The timewait socket of `cookie` is gone: its state -> CLOSE, observed.
    fn timewait_gone(&mut self, cookie: u64, ts_ns: u64, cause: Cause, out: &mut Vec<Output>) {
        let Some(e) = self.remove(cookie) else {
            return;
        };
        let mut t = e.synthesized(cookie, known(TcpState::Close), ts_ns, Some(cause));
        t.source = Source::Kernel;
        out.push(Output::Transition(t));
    }

    /// Releases everything still held (when the stream ends).
    pub fn flush(&mut self, out: &mut Vec<Output>) {
        self.held_before.clear();
        for (_, mut held) in self.held.drain() {
            out.append(&mut held);
        }
    }

    /// Releases closes that waited a batch for a possible reset (call after each batch).
    pub fn settle(&mut self, out: &mut Vec<Output>) {
        self.settle_at(super::clock::monotonic_ns(), out);
    }

    /// `settle` at a given monotonic time. A passive open still waiting for its child's
    /// identity is kept across batches, but not for longer than `UNRESOLVED_OPEN_NS`.
    pub fn settle_at(&mut self, now_ns: u64, out: &mut Vec<Output>) {
        for cookie in std::mem::take(&mut self.held_before) {
            if let Some(mut held) = self.held.remove(&cookie) {
                out.append(&mut held);
            }
        }
        self.held_before.extend(self.held.keys().copied());
        let before = self.unresolved_opens.len();
        self.unresolved_opens
            .retain(|_, open| now_ns.saturating_sub(open.ts_ns) < UNRESOLVED_OPEN_NS);
        self.stats.unresolved_opens += (before - self.unresolved_opens.len()) as u64;
        // A FIN whose CLOSE never came (that socket's event was lost) has no one to wait for.
        self.early_fins
            .retain(|_, &mut at| now_ns.saturating_sub(at) < UNRESOLVED_OPEN_NS);
        if !self.cancelled.is_empty() {
            let mut killed: Vec<(u64, u64)> = self
                .cancelled
                .iter()
                .filter(|&(_, &at)| now_ns.saturating_sub(at) >= CANCEL_HOLD_NS)
                .map(|(&cookie, &at)| (at, cookie))
                .collect();
            killed.sort_unstable();
            for (at, cookie) in killed {
                self.cancelled.remove(&cookie);
                self.timewait_gone(cookie, at, Cause::Killed, out);
            }
        }
    }

    /// A retransmission as output, with the owner the table knows (a SYN-ACK's is the
    /// listener's).
    fn retransmit(&self, ev: &KernelEvent, what: Retransmission, synack: bool) -> Output {
        let entry = (!synack).then(|| self.entries.get(&ev.cookie)).flatten();
        Output::Retransmit(Retransmit {
            ts_ns: ev.ts_ns,
            cookie: if synack { 0 } else { ev.cookie },
            netns: ev.netns,
            family: ev.family,
            local: ev.local,
            remote: ev.remote,
            owner: self.resolve_owner(ev, entry, synack),
            what,
        })
    }

    /// An RTT reading as output, with the owner the table knows.
    fn rtt(&self, ev: &KernelEvent, mut tcp: TcpCounters, handshake: bool) -> Output {
        if handshake {
            // The change to ESTAB comes before tcp_init_transfer() sets the cwnd the
            // transfer starts with: the handshake's figures are its RTT alone.
            tcp.snd_cwnd = 0;
            tcp.delivery_rate = 0;
        }
        let entry = self.entries.get(&ev.cookie);
        Output::Rtt(RttSample {
            ts_ns: ev.ts_ns,
            cookie: ev.cookie,
            netns: ev.netns,
            family: ev.family,
            local: ev.local,
            remote: ev.remote,
            owner: self.resolve_owner(ev, entry, false),
            handshake,
            tcp,
        })
    }

    /// A dropped segment as output, joined to its connection (see `DroppedSegment`).
    fn dropped(&self, ev: &KernelEvent, mut what: SegmentDrop) -> Output {
        let cookie = if ev.cookie != 0 {
            ev.cookie
        } else {
            self.connection_of(ev).unwrap_or(0)
        };
        let entry = self.entries.get(&cookie);
        let netns = match (ev.netns, entry) {
            (0, Some(e)) => e.netns,
            (n, _) => n,
        };
        let mut owner = self.resolve_owner(ev, entry, false);
        if owner.pid.is_none()
            && let Some(o) = self.listeners.get(&(netns, ev.local.port()))
            && entry.is_none_or(|e| e.state == known(TcpState::Listen))
        {
            owner = *o;
            owner.source = OwnerSource::Listener;
        }
        what.state = what.state.or_else(|| entry.map(|e| e.state));
        Output::Drop(DroppedSegment {
            ts_ns: ev.ts_ns,
            cookie,
            netns,
            family: ev.family,
            local: ev.local,
            remote: ev.remote,
            owner,
            what,
        })
    }

    /// Drops a counter says happened on a socket (a listener's, `reason`), as output with
    /// the owner and state the table knows.
    pub fn counted_drop(
        &self,
        cookie: u64,
        netns: u32,
        local: SocketAddr,
        reason: DropReason,
        ts_ns: u64,
    ) -> Output {
        let entry = self.entries.get(&cookie);
        let owner = match entry {
            Some(e) if e.owner.pid.is_some() => e.owner,
            _ => self
                .listeners
                .get(&(netns, local.port()))
                .copied()
                .unwrap_or_else(Owner::unknown),
        };
        let unspecified = match local {
            SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
            SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
        };
        Output::Drop(DroppedSegment {
            ts_ns,
            cookie,
            netns,
            family: Family::of(&local),
            local,
            remote: unspecified,
            owner,
            what: SegmentDrop {
                reason,
                tcp_flags: 0,
                outbound: false,
                state: Some(entry.map_or(known(TcpState::Listen), |e| e.state)),
            },
        })
    }

    /// The connection a segment belongs to by its addresses, for a drop the kernel named
    /// no socket for: the socket with its two ends, else a listener on its local port. A
    /// scan of the general table (timewait sockets are not searched), made only for such
    /// drops; a namespace of 0 (the kernel no longer knew it) matches any.
    fn connection_of(&self, ev: &KernelEvent) -> Option<u64> {
        let (local, remote) = (canonical(ev.local), canonical(ev.remote));
        let in_netns = |e: &Entry| ev.netns == 0 || e.netns == ev.netns;
        let exact = self.entries.iter().find(|(_, e)| {
            in_netns(e) && canonical(e.local) == local && canonical(e.remote) == remote
        });
        let listener = || {
            self.entries.iter().find(|(_, e)| {
                in_netns(e)
                    && e.state == known(TcpState::Listen)
                    && e.local.port() == local.port()
                    && (e.local.ip().is_unspecified() || canonical(e.local).ip() == local.ip())
            })
        };
        exact.or_else(listener).map(|(&cookie, _)| cookie)
    }

    /// An RST event as output, with the socket's state when the table knows the socket.
    /// `state`: the kernel's reading, preferred; without one, the live table's.
    fn reset(
        &self,
        ev: &KernelEvent,
        direction: ResetDirection,
        reason: Option<u8>,
        state: Option<ReportedState>,
    ) -> Output {
        let closed_port = matches!(ev.kind, EventKind::ResetNoSocket);
        let entry = self.entries.get(&ev.cookie);
        let owner = if closed_port {
            Owner::unknown()
        } else {
            self.resolve_owner(ev, entry, false)
        };
        Output::Reset(Reset {
            ts_ns: ev.ts_ns,
            cookie: ev.cookie,
            owner,
            reason,
            netns: ev.netns,
            family: ev.family,
            local: ev.local,
            remote: ev.remote,
            direction,
            state: if closed_port {
                None
            } else {
                // A close that sends an RST reports CLOSE first; it is held for the reset.
                state.or_else(|| {
                    self.entries
                        .get(&ev.cookie)
                        .map(|e| e.state)
                        .or_else(|| self.timewait.get(ev.cookie).map(|e| e.state))
                        .or_else(|| {
                            self.held.get(&ev.cookie)?.iter().find_map(|o| match o {
                                Output::Transition(t) => Some(t.new),
                                _ => None,
                            })
                        })
                })
            },
            closed_port,
        })
    }

    fn note(&mut self, ev: &KernelEvent, cause: Option<Cause>) {
        if let Some(e) = self.entries.get_mut(&ev.cookie) {
            // An RST we send wins over one we received in the same close.
            if e.pending != Some(Cause::RstOut) {
                e.pending = cause;
            }
            e.touched_ns = ev.ts_ns;
        }
    }

    /// The owner to print for `ev`, without ever naming an interrupted task.
    fn resolve_owner(&self, ev: &KernelEvent, entry: Option<&Entry>, passive_open: bool) -> Owner {
        match ev.owner_source {
            KernelOwner::Task => {
                return Owner::with_comm(ev.owner_pid, ev.owner_comm, OwnerSource::Task);
            }
            KernelOwner::Cached => {
                return Owner::with_comm(ev.owner_pid, ev.owner_comm, OwnerSource::Cached);
            }
            KernelOwner::Unknown => {}
        }
        if let Some(e) = entry
            && e.owner.pid.is_some()
        {
            let mut o = e.owner;
            if o.source == OwnerSource::Task {
                o.source = OwnerSource::Cached;
            }
            return o;
        }
        if passive_open || entry.is_some_and(|e| e.passive) {
            let lookup = |port| self.listeners.get(&(ev.netns, port)).cloned();
            if let Some(mut o) = lookup(ev.local.port()) {
                o.source = OwnerSource::Listener;
                return o;
            }
        }
        Owner::unknown()
    }

    /// What a transition the kernel reported means for the connection: a full socket's
    /// -> CLOSE is often its replacement by a timewait socket, observed by the timewait
    /// hooks (`KernelEvent::timewait`) or, without them, inferred from the peer's FIN.
    fn edge(
        &self,
        ev: &KernelEvent,
        old: ReportedState,
        new: ReportedState,
        pending: Option<Cause>,
    ) -> ShownEdge {
        let plain = |cause| ShownEdge {
            shown: new,
            cause,
            source: Source::Kernel,
            silent: false,
            lives_on: new != known(TcpState::Close),
        };
        if new != known(TcpState::Close) {
            let fin = old == known(TcpState::Established) && new == known(TcpState::CloseWait);
            return plain(fin.then_some(Cause::Fin));
        }
        // A close while the timewait hooks were still attaching is inferred, as without them.
        let observed = self.timewait_observed
            && ev.hook == Hook::TpBtf
            && ev.timewait != TimewaitClose::Unseen;
        let timewait = |state| ShownEdge {
            shown: known(state),
            cause: Some(Cause::Fin),
            source: if observed {
                Source::Kernel
            } else {
                Source::Synthesized
            },
            // An orphan waiting for the peer's FIN lives on in FIN-WAIT-2: no transition.
            silent: state == TcpState::FinWait2,
            lives_on: true,
        };
        if observed {
            return match ev.timewait {
                TimewaitClose::Created(ReportedState::Known(TcpState::FinWait2)) => {
                    timewait(TcpState::FinWait2)
                }
                TimewaitClose::Created(_) => timewait(TcpState::TimeWait),
                TimewaitClose::Overflow => plain(Some(Cause::TwOverflow)),
                TimewaitClose::Plain | TimewaitClose::Unseen => {
                    plain(close_cause(old, pending, ev, false))
                }
            };
        }
        let cause = close_cause(old, pending, ev, true);
        let orderly = cause == Some(Cause::Fin);
        if orderly && old == known(TcpState::FinWait2) && ev.peer_fin == Some(false) {
            return timewait(TcpState::FinWait2);
        }
        if orderly
            && matches!(
                old,
                ReportedState::Known(TcpState::FinWait1 | TcpState::FinWait2 | TcpState::Closing)
            )
        {
            return timewait(TcpState::TimeWait);
        }
        plain(cause)
    }

    fn state_change(
        &mut self,
        ev: &KernelEvent,
        old: ReportedState,
        new: ReportedState,
        tcp: TcpCounters,
        out: &mut Vec<Output>,
    ) {
        let meaning = EdgeMeaning::of(old, new);
        if meaning.passive_open && !self.cancelled.is_empty() {
            self.taken_over(ev, out);
        }
        let existing = self.entries.get(&ev.cookie);
        // Judged only where the entry's state came from a transition (a dumped state may
        // be older than the events that follow it).
        if existing.is_some_and(|e| e.since_ns.is_some() && e.state != old) {
            self.stats.jumps += 1;
        }
        // The previous state's duration is only known when this socket's last transition
        // was seen and matches.
        let prev_state_ns = existing
            .filter(|e| e.state == old)
            .and_then(|e| e.since_ns)
            .map(|since| ev.ts_ns.saturating_sub(since));
        let owner = self.resolve_owner(ev, existing, meaning.passive_open);
        let pending = existing.and_then(|e| e.pending);

        // Listening sockets: remember their owner for the passive opens to come.
        match meaning.listening {
            Some(true) if owner.pid.is_some() => {
                self.listeners.insert((ev.netns, ev.local.port()), owner);
            }
            Some(false) => {
                self.listeners.remove(&(ev.netns, ev.local.port()));
            }
            _ => {}
        }

        let edge = self.edge(ev, old, new, pending);
        if edge.source == Source::Synthesized {
            self.stats.synthesized += 1;
        }
        // A close with no cause yet may be followed by the RST it sent: hold it briefly.
        let hold = meaning.closing
            && edge.cause.is_none()
            && !matches!(
                old,
                ReportedState::Known(TcpState::Listen | TcpState::SynSent | TcpState::Close)
            );
        // This event's outputs go straight to `out` (no vector per event), and move to
        // `held` from `first` on when the close is held.
        let first = out.len();
        if !edge.silent {
            out.push(Output::Transition(Transition {
                ts_ns: ev.ts_ns,
                cookie: ev.cookie,
                netns: ev.netns,
                family: ev.family,
                local: ev.local,
                remote: ev.remote,
                old,
                new: edge.shown,
                prev_state_ns,
                owner,
                source: edge.source,
                cause: edge.cause,
            }));
        }

        if !self.entries.contains_key(&ev.cookie) {
            self.make_room();
            // A full socket's events never concern a timewait socket of the same cookie;
            // one left there (a missed expiry) is replaced.
            self.timewait.remove(ev.cookie);
        }
        let entry = self
            .entries
            .entry(ev.cookie)
            .or_insert_with(|| Entry::first_seen(ev, old, meaning.passive_open));
        entry.update(ev, old, &meaning, &edge, owner, prev_state_ns);
        let handshake_rtt = (meaning.handshake_done || meaning.accepted)
            .then(|| tcp.srtt())
            .flatten();
        if let Some(rtt) = handshake_rtt {
            entry.handshake_rtt_us = Some(rtt);
        }
        let to_time_wait = edge.shown == known(TcpState::TimeWait);
        let connection_ended = (meaning.closing || to_time_wait)
            && old != known(TcpState::Listen)
            && old != known(TcpState::Close);
        if connection_ended && self.reports.lifetimes {
            out.push(Output::Lifetime(Box::new(
                entry.lifetime(ev, old, edge.cause, tcp),
            )));
        }
        let swapped = tw_table::is_timewait(entry);
        if meaning.closing && !edge.lives_on {
            self.entries.remove(&ev.cookie);
        } else if swapped && let Some(e) = self.entries.remove(&ev.cookie) {
            // Now a timewait socket: into the compact table.
            self.store(ev.cookie, e);
        }
        // Rare (a race between CPUs): every close but those skips the lookup.
        if meaning.closing
            && !self.early_fins.is_empty()
            && let Some(fin_ns) = self.early_fins.remove(&ev.cookie)
            && swapped
        {
            self.peer_fin_reached_orphan(ev.cookie, fin_ns, out);
        }
        if handshake_rtt.is_some() && self.reports.handshake_rtts {
            out.push(self.rtt(ev, tcp, true));
        }
        if hold {
            self.held
                .entry(ev.cookie)
                .or_default()
                .extend(out.drain(first..));
        }
    }

    /// Compares the table with a fresh dump of the sockets in `states` (bitmask of kernel
    /// states) taken at `dump_started_ns`. Entries the dump no longer has are closed
    /// (TIME-WAIT expiry, or a missed close, counted as a repair); sockets the table lacks
    /// are added (a repair). Entries touched after the dump started are left alone.
    pub fn reconcile(
        &mut self,
        dump: Dumped,
        covered: Option<&[u32]>,
        states: u32,
        dump_started_ns: u64,
        now_ns: u64,
        out: &mut Vec<Output>,
    ) {
        // Sorted and searched: a dump can hold 100k+ TIME-WAIT sockets.
        let in_dump = dump.sorted_cookies();
        let dumped = |cookie: u64| in_dump.binary_search(&cookie).is_ok();
        let stale = |cookie: u64, state: ReportedState, netns: u32, touched_ns: u64| {
            touched_ns < dump_started_ns
                && covered.is_none_or(|c| c.contains(&netns))
                && state_bit(state) & states != 0
                && !dumped(cookie)
        };
        let gone: Vec<u64> = self
            .entries
            .iter()
            .filter(|(cookie, e)| stale(**cookie, e.state, e.netns, e.touched_ns))
            .map(|(c, _)| *c)
            .chain(
                self.timewait
                    .summaries()
                    // sock_diag lists timewait sockets (in either substate) only when
                    // TIME-WAIT is asked for: without it, they are not judged.
                    .filter(|_| states & state_bit(known(TcpState::TimeWait)) != 0)
                    .filter(|&(cookie, state, netns, touched)| stale(cookie, state, netns, touched))
                    .map(|(c, ..)| c),
            )
            .collect();
        for cookie in gone {
            let Some(e) = self.remove(cookie) else {
                continue;
            };
            let time_wait = e.state == known(TcpState::TimeWait);
            if !time_wait {
                self.stats.repairs += 1;
            }
            // A timewait socket that is gone before its 60 s ran out was reused for a new
            // connection, reset, or never created (tcp_max_tw_buckets full): no timeout.
            let aged = e
                .since_ns
                .is_none_or(|since| now_ns.saturating_sub(since) >= TIME_WAIT_NS);
            self.stats.synthesized += 1;
            out.push(Output::Transition(e.synthesized(
                cookie,
                known(TcpState::Close),
                now_ns,
                (time_wait && aged).then_some(Cause::Timeout),
            )));
        }
        drop(in_dump);
        for b in dump.iter() {
            let cookie = b.cookie;
            match self.entry(cookie) {
                None => {
                    self.stats.repairs += 1;
                    self.insert_baseline(b, now_ns);
                }
                Some(mut e) if e.touched_ns < dump_started_ns => {
                    let state = ReportedState::from_kernel(b.state);
                    if e.state == state {
                        self.update(cookie, |e| e.touched_ns = now_ns);
                        continue;
                    }
                    self.stats.repairs += 1;
                    self.stats.synthesized += 1;
                    // When it really changed is unknown: no previous-state time.
                    let mut t = e.synthesized(cookie, state, now_ns, None);
                    t.prev_state_ns = None;
                    out.push(Output::Transition(t));
                    e.state = state;
                    e.since_ns = None;
                    e.touched_ns = now_ns;
                    // sock_diag lists a timewait socket as TIME-WAIT.
                    e.timewait |= state == known(TcpState::TimeWait);
                    self.store(cookie, e);
                }
                Some(_) => {}
            }
        }
    }
}

fn state_bit(s: ReportedState) -> u32 {
    1u32.checked_shl(u32::from(s.kernel_number())).unwrap_or(0)
}

/// Why a socket reached CLOSE from `old`, given a reset seen just before and the socket's
/// `sk_err` at the transition.
/// `infer_fin`: FIN-WAIT-1/2 and CLOSING -> CLOSE with nothing else known count as an
/// orderly close. Not when the timewait hooks are on: they tell those apart.
fn close_cause(
    old: ReportedState,
    pending: Option<Cause>,
    ev: &KernelEvent,
    infer_fin: bool,
) -> Option<Cause> {
    let sk_err = ev.task_errno();
    let ReportedState::Known(old) = old else {
        return pending;
    };
    if old == TcpState::SynSent && sk_err != 0 {
        return Some(Cause::Errno(sk_err));
    }
    if old == TcpState::SynSent && pending == Some(Cause::RstIn) {
        return Some(Cause::Errno(libc::ECONNREFUSED));
    }
    // tcp_v4_connect()/tcp_v6_connect() report SYN-SENT before they pick the local port,
    // and CLOSE at once when none is free: no error is left on the socket.
    if old == TcpState::SynSent && pending.is_none() && ev.local.port() == 0 {
        return Some(Cause::NoLocalPort);
    }
    // A timer that gives up (keepalive on every kernel, the others from 6.10 on) resets
    // the connection as a courtesy and then reports ETIMEDOUT: the timer is why it closed.
    if pending == Some(Cause::RstOut) && sk_err == libc::ETIMEDOUT {
        return Some(Cause::Timeout);
    }
    if let Some(p) = pending {
        return Some(p);
    }
    match sk_err {
        libc::ECONNRESET | libc::EPIPE => return Some(Cause::RstIn),
        libc::ETIMEDOUT => return Some(Cause::Timeout),
        0 => {}
        e => return Some(Cause::Errno(e)),
    }
    match old {
        TcpState::LastAck => Some(Cause::Fin),
        TcpState::FinWait1 | TcpState::FinWait2 | TcpState::Closing if infer_fin => {
            Some(Cause::Fin)
        }
        _ => None,
    }
}

/// What a reported edge means for the socket's entry, from (old, new) alone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct EdgeMeaning {
    /// CLOSE -> SYN-SENT: connect().
    active_open: bool,
    /// LISTEN -> SYN-RECV: a listener's child.
    passive_open: bool,
    /// SYN-SENT -> ESTAB: connect() is done (its time in SYN-SENT is the connect latency).
    handshake_done: bool,
    /// SYN-RECV -> ESTAB: a listener's child completed its handshake.
    accepted: bool,
    /// Into CLOSE-WAIT or CLOSING: the peer's FIN arrived.
    peer_fin: bool,
    /// A listener started (true) or stopped (false) listening.
    listening: Option<bool>,
    /// Into CLOSE: the socket is gone, unless a timewait socket lives on.
    closing: bool,
}

impl EdgeMeaning {
    fn of(old: ReportedState, new: ReportedState) -> Self {
        use TcpState as S;
        let (ReportedState::Known(old), ReportedState::Known(new)) = (old, new) else {
            return EdgeMeaning::default();
        };
        let mut m = EdgeMeaning {
            closing: new == S::Close,
            ..EdgeMeaning::default()
        };
        match (old, new) {
            (S::Close, S::SynSent) => m.active_open = true,
            (S::Listen, S::SynRecv) => m.passive_open = true,
            (S::SynSent, S::Established) => m.handshake_done = true,
            (S::SynRecv, S::Established) => m.accepted = true,
            (S::Listen, S::Close) => m.listening = Some(false),
            (_, S::Listen) => m.listening = Some(true),
            (_, S::CloseWait | S::Closing) => m.peer_fin = true,
            _ => {}
        }
        m
    }
}

impl Entry {
    /// A socket first seen through this event, still in `old`.
    fn first_seen(ev: &KernelEvent, old: ReportedState, passive: bool) -> Self {
        Entry {
            state: old,
            since_ns: None,
            first_ns: None,
            connect_ns: None,
            handshake_rtt_us: None,
            owner: Owner::unknown(),
            netns: ev.netns,
            family: ev.family,
            local: ev.local,
            remote: ev.remote,
            retransmits: 0,
            pending: None,
            touched_ns: ev.ts_ns,
            passive,
            active: None,
            peer_fin: false,
            timewait: false,
        }
    }

    /// Applies an edge the table has decided how to show.
    fn update(
        &mut self,
        ev: &KernelEvent,
        old: ReportedState,
        meaning: &EdgeMeaning,
        edge: &ShownEdge,
        owner: Owner,
        prev_state_ns: Option<u64>,
    ) {
        if meaning.active_open {
            self.active = Some(true);
        } else if meaning.passive_open {
            self.active = Some(false);
        }
        let to_time_wait = edge.shown == known(TcpState::TimeWait);
        if meaning.peer_fin || (to_time_wait && old == known(TcpState::FinWait2)) {
            self.peer_fin = true;
        }
        if self.first_ns.is_none() && (meaning.active_open || meaning.passive_open) {
            self.first_ns = Some(ev.ts_ns);
        }
        if meaning.handshake_done {
            self.connect_ns = prev_state_ns;
        }
        if owner.pid.is_some() {
            self.owner = owner;
        }
        // Ports are assigned after connect() reports SYN-SENT: keep the latest addresses.
        self.local = ev.local;
        self.remote = ev.remote;
        self.touched_ns = ev.ts_ns;
        self.timewait |= meaning.closing && edge.lives_on;
        if !edge.silent {
            self.state = edge.shown;
            self.since_ns = Some(ev.ts_ns);
        }
    }

    /// The finished connection, as tcplife reports it.
    fn lifetime(
        &self,
        ev: &KernelEvent,
        old: ReportedState,
        cause: Option<Cause>,
        tcp: TcpCounters,
    ) -> Lifetime {
        // tcp_sock counts sequence space: our SYN (active opens) and our FIN once acked are
        // in bytes_acked, the peer's FIN in bytes_received. Report data bytes.
        let syn = u64::from(self.active == Some(true));
        let our_fin_acked = cause == Some(Cause::Fin)
            && matches!(
                old,
                ReportedState::Known(TcpState::FinWait2 | TcpState::Closing | TcpState::LastAck)
            );
        Lifetime {
            ts_ns: ev.ts_ns,
            cookie: ev.cookie,
            netns: ev.netns,
            family: ev.family,
            local: self.local,
            remote: self.remote,
            duration_ns: self.first_ns.map(|f| ev.ts_ns.saturating_sub(f)),
            bytes_acked: tcp
                .bytes_acked
                .saturating_sub(syn + u64::from(our_fin_acked)),
            bytes_received: tcp.bytes_received.saturating_sub(u64::from(self.peer_fin)),
            connect_ns: self.connect_ns,
            handshake_rtt_us: self.handshake_rtt_us,
            retransmits: tcp.total_retrans.max(self.retransmits),
            cause,
            owner: self.owner,
            tcp,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ebpf::events::{from_raw, tests::raw_v4};
    use sockstat_common::{kind, owner_source, tcp_state as st};

    fn ev(cookie: u64, ts: u64, old: u8, new: u8, owned: bool) -> KernelEvent {
        let mut raw = raw_v4();
        raw.cookie = cookie;
        raw.ts_ns = ts;
        raw.old_state = old;
        raw.new_state = new;
        // Most tests close after the peer's FIN; `orphan_fin_wait2` clears it.
        raw.flags |= sockstat_common::flags::PEER_FIN;
        if !owned {
            raw.flags &= !sockstat_common::flags::TASK_OWNS_SOCKET;
            raw.owner_source = owner_source::UNKNOWN;
            raw.tgid = 999; // the interrupted task
        }
        from_raw(&raw).unwrap()
    }

    fn transitions(out: &[Output]) -> Vec<(String, Source, Option<String>)> {
        out.iter()
            .filter_map(|o| match o {
                Output::Transition(t) => Some((
                    format!("{}->{}", t.old, t.new),
                    t.source,
                    t.cause.map(|c| c.name()),
                )),
                Output::Lifetime(_)
                | Output::Reset(_)
                | Output::Retransmit(_)
                | Output::Drop(_)
                | Output::Rtt(_) => None,
            })
            .collect()
    }

    /// The change to ESTAB carries the kernel's first RTT sample: an `Output::Rtt` of its
    /// own when asked for, on either side, and the lifetime's `handshake_rtt_us`; the
    /// lifetime also carries what tcp_info said at the close. RTT events join by cookie.
    #[test]
    fn handshake_rtts_and_the_close_summary() {
        let with_tcp = |mut e: KernelEvent, srtt_us: u32, cwnd: u32| {
            if let EventKind::StateChange { tcp, .. } | EventKind::Rtt { tcp } = &mut e.kind {
                tcp.srtt_us = srtt_us;
                tcp.min_rtt_us = srtt_us / 2;
                tcp.snd_cwnd = cwnd;
                tcp.delivery_rate = 1_000;
            }
            e
        };
        let rtts = |out: &[Output]| -> Vec<(u64, bool, Option<u32>)> {
            out.iter()
                .filter_map(|o| match o {
                    Output::Rtt(r) => Some((r.cookie, r.handshake, r.tcp.srtt())),
                    _ => None,
                })
                .collect()
        };
        for asked in [false, true] {
            let mut t = Tracker::default();
            t.report(Reports {
                lifetimes: true,
                handshake_rtts: asked,
            });
            let mut out = Vec::new();
            t.apply(&ev(1, 100, st::CLOSE, st::SYN_SENT, true), &mut out);
            t.apply(
                &with_tcp(ev(1, 300, st::SYN_SENT, st::ESTABLISHED, false), 80, 10),
                &mut out,
            );
            // A listener's child, and an ESTAB without a sample (no handshake RTT).
            t.apply(&ev(2, 310, st::SYN_RECV, st::ESTABLISHED, false), &mut out);
            t.apply(
                &with_tcp(ev(3, 320, st::SYN_RECV, st::ESTABLISHED, false), 90, 10),
                &mut out,
            );
            let mut sample = with_tcp(ev(1, 400, 0, st::ESTABLISHED, false), 120, 20);
            sample.kind = match sample.kind {
                EventKind::StateChange { tcp, .. } => EventKind::Rtt { tcp },
                other => other,
            };
            t.apply(&sample, &mut out);
            t.apply(
                &with_tcp(ev(1, 500, st::ESTABLISHED, st::CLOSE, false), 150, 30),
                &mut out,
            );
            t.flush(&mut out);
            let handshakes = if asked {
                vec![(1, true, Some(80)), (3, true, Some(90))]
            } else {
                vec![]
            };
            assert_eq!(
                rtts(&out),
                [handshakes, vec![(1, false, Some(120))]].concat()
            );
            let Some(Output::Rtt(r)) = out
                .iter()
                .find(|o| matches!(o, Output::Rtt(r) if !r.handshake))
            else {
                panic!("no RTT sample");
            };
            assert_eq!(r.owner.pid, Some(100), "the sample names the cached owner");
            let life = out
                .iter()
                .find_map(|o| match o {
                    Output::Lifetime(l) => Some((**l).clone()),
                    _ => None,
                })
                .unwrap();
            assert_eq!(life.handshake_rtt_us, Some(80));
            assert_eq!(life.connect_ns, Some(200));
            assert_eq!(
                (life.tcp.srtt(), life.tcp.min_rtt(), life.tcp.cwnd()),
                (Some(150), Some(75), Some(30))
            );
        }
    }

    #[test]
    fn active_close_becomes_time_wait_then_expires() {
        let mut t = Tracker::default();
        let mut out = Vec::new();
        for (ts, o, n, owned) in [
            (100, st::CLOSE, st::SYN_SENT, true),
            (300, st::SYN_SENT, st::ESTABLISHED, false),
            (400, st::ESTABLISHED, st::FIN_WAIT1, true),
            (450, st::FIN_WAIT1, st::FIN_WAIT2, false),
            (500, st::FIN_WAIT2, st::CLOSE, false),
        ] {
            t.apply(&ev(1, ts, o, n, owned), &mut out);
        }
        let tr = transitions(&out);
        assert_eq!(
            tr[4],
            (
                "FIN-WAIT-2->TIME-WAIT".into(),
                Source::Synthesized,
                Some("fin".into())
            )
        );
        assert_eq!(t.get(1).unwrap().state, known(TcpState::TimeWait));
        // The softirq transitions name the cached owner, never task 999.
        for o in &out {
            if let Output::Transition(tr) = o {
                assert_eq!(tr.owner.pid, Some(100), "{tr:?}");
            }
        }
        let life = out.iter().find_map(|o| match o {
            Output::Lifetime(l) => Some((**l).clone()),
            _ => None,
        });
        let life = life.unwrap();
        assert_eq!(life.duration_ns, Some(400));
        assert_eq!(life.connect_ns, Some(200));
        // Expiry: the TIME-WAIT dump no longer has it.
        out.clear();
        t.reconcile(
            Dumped::default(),
            None,
            1 << st::TIME_WAIT,
            1000,
            61_000_000_000,
            &mut out,
        );
        assert_eq!(
            transitions(&out),
            vec![(
                "TIME-WAIT->CLOSE".into(),
                Source::Synthesized,
                Some("timeout".into())
            )]
        );
        assert!(t.is_empty());
        assert_eq!(t.stats().repairs, 0);
    }

    #[test]
    fn a_transition_from_a_state_not_seen_entered_is_a_jump() {
        let mut t = Tracker::default();
        let mut out = Vec::new();
        // A whole lifecycle chains: no jumps.
        for (ts, o, n) in [
            (100, st::CLOSE, st::SYN_SENT),
            (200, st::SYN_SENT, st::ESTABLISHED),
            (300, st::ESTABLISHED, st::FIN_WAIT1),
            (400, st::FIN_WAIT1, st::FIN_WAIT2),
            (500, st::FIN_WAIT2, st::CLOSE),
        ] {
            t.apply(&ev(1, ts, o, n, false), &mut out);
        }
        assert_eq!(t.stats().jumps, 0);
        // ESTAB -> FIN-WAIT-1 skipped: FIN-WAIT-1 -> FIN-WAIT-2 leaves a state not seen.
        t.apply(&ev(2, 100, st::CLOSE, st::SYN_SENT, true), &mut out);
        t.apply(&ev(2, 200, st::SYN_SENT, st::ESTABLISHED, false), &mut out);
        t.apply(&ev(2, 400, st::FIN_WAIT1, st::FIN_WAIT2, false), &mut out);
        assert_eq!(t.stats().jumps, 1);
        // A socket first seen mid-life, and one whose state a dump gave (older than the
        // events that follow it), are not judged.
        t.apply(
            &ev(3, 100, st::ESTABLISHED, st::CLOSE_WAIT, false),
            &mut out,
        );
        t.load_baseline(
            [Baseline {
                cookie: 4,
                state: st::ESTABLISHED,
                netns: 1,
                family: Family::Inet,
                local: "127.0.0.1:1".parse().unwrap(),
                remote: "127.0.0.1:2".parse().unwrap(),
                owner: None,
            }],
            0,
        );
        t.apply(&ev(4, 100, st::SYN_SENT, st::ESTABLISHED, false), &mut out);
        assert_eq!(t.stats().jumps, 1);
        // From then on the events decide: a second skipped transition is counted.
        t.apply(&ev(4, 200, st::FIN_WAIT1, st::FIN_WAIT2, false), &mut out);
        assert_eq!(t.stats().jumps, 2);
    }

    #[test]
    fn a_timewait_socket_gone_early_did_not_time_out() {
        let mut t = Tracker::default();
        let mut out = Vec::new();
        t.apply(&ev(5, 100, st::FIN_WAIT1, st::FIN_WAIT2, true), &mut out);
        t.apply(&ev(5, 200, st::FIN_WAIT2, st::CLOSE, false), &mut out);
        out.clear();
        // Reused (or never created) 2 s later: closed, but not by its timer.
        t.reconcile(
            Dumped::default(),
            None,
            1 << st::TIME_WAIT,
            1000,
            2_000_000_200,
            &mut out,
        );
        assert_eq!(
            transitions(&out),
            vec![("TIME-WAIT->CLOSE".into(), Source::Synthesized, None)]
        );
    }

    #[test]
    fn resets_and_refusals_have_causes() {
        let mut t = Tracker::default();
        let mut out = Vec::new();
        t.apply(&ev(2, 1, st::CLOSE, st::SYN_SENT, true), &mut out);
        let mut raw = raw_v4();
        raw.cookie = 2;
        raw.old_state = st::SYN_SENT;
        raw.new_state = st::CLOSE;
        raw.sk_err = libc::ECONNREFUSED;
        t.apply(&from_raw(&raw).unwrap(), &mut out);
        assert_eq!(transitions(&out)[1].2.as_deref(), Some("ECONNREFUSED"));

        // A connect that found no free local port: back to CLOSE from SYN-SENT without
        // one, and without an error on the socket.
        out.clear();
        t.apply(&ev(4, 1, st::CLOSE, st::SYN_SENT, true), &mut out);
        let mut raw = raw_v4();
        raw.cookie = 4;
        raw.sport = 0;
        raw.old_state = st::SYN_SENT;
        raw.new_state = st::CLOSE;
        t.apply(&from_raw(&raw).unwrap(), &mut out);
        assert_eq!(transitions(&out)[1].2.as_deref(), Some("no-local-port"));

        // An established connection reset by the peer: rst-in, no TIME-WAIT.
        out.clear();
        t.apply(&ev(3, 1, st::CLOSE, st::SYN_SENT, true), &mut out);
        t.apply(&ev(3, 2, st::SYN_SENT, st::ESTABLISHED, false), &mut out);
        let mut rst = raw_v4();
        rst.cookie = 3;
        rst.kind = kind::RESET_RECEIVED;
        t.apply(&from_raw(&rst).unwrap(), &mut out);
        t.apply(&ev(3, 3, st::ESTABLISHED, st::CLOSE, false), &mut out);
        assert_eq!(
            transitions(&out)[2],
            ("ESTAB->CLOSE".into(), Source::Kernel, Some("rst-in".into()))
        );
        assert!(t.get(3).is_none());
    }

    /// Keepalive giving up: the kernel sends its RST first, then closes with ETIMEDOUT on
    /// the socket. The timer is the cause, not the courtesy reset.
    #[test]
    fn a_timer_that_resets_as_it_gives_up_closes_with_timeout() {
        let mut t = Tracker::default();
        let mut out = Vec::new();
        t.apply(&ev(7, 1, st::CLOSE, st::SYN_SENT, true), &mut out);
        t.apply(&ev(7, 2, st::SYN_SENT, st::ESTABLISHED, false), &mut out);
        let mut rst = raw_v4();
        rst.cookie = 7;
        rst.kind = kind::RESET_SENT;
        t.apply(&from_raw(&rst).unwrap(), &mut out);
        let mut close = raw_v4();
        close.cookie = 7;
        close.ts_ns = 3;
        close.old_state = st::ESTABLISHED;
        close.new_state = st::CLOSE;
        close.sk_err = libc::ETIMEDOUT;
        t.apply(&from_raw(&close).unwrap(), &mut out);
        t.settle(&mut out);
        assert_eq!(
            transitions(&out)[2],
            (
                "ESTAB->CLOSE".into(),
                Source::Kernel,
                Some("timeout".into())
            )
        );
        // Without the error it is an abort: the reset is the cause.
        out.clear();
        t.apply(&ev(8, 1, st::CLOSE, st::SYN_SENT, true), &mut out);
        t.apply(&ev(8, 2, st::SYN_SENT, st::ESTABLISHED, false), &mut out);
        rst.cookie = 8;
        t.apply(&from_raw(&rst).unwrap(), &mut out);
        t.apply(&ev(8, 3, st::ESTABLISHED, st::CLOSE, false), &mut out);
        t.settle(&mut out);
        assert_eq!(transitions(&out)[2].2.as_deref(), Some("rst-out"));
    }

    /// SO_LINGER 0: CLOSE comes before the RST it sends, and a drain may fall between the
    /// two. The close waits one more batch for it, then goes out either way.
    #[test]
    fn a_close_waits_one_batch_for_its_reset() {
        let established = |t: &mut Tracker, cookie: u64, out: &mut Vec<Output>| {
            t.apply(&ev(cookie, 1, st::CLOSE, st::SYN_SENT, true), out);
            t.apply(&ev(cookie, 2, st::SYN_SENT, st::ESTABLISHED, false), out);
        };
        let reset = |cookie: u64| {
            let mut raw = raw_v4();
            raw.cookie = cookie;
            raw.kind = kind::RESET_SENT;
            from_raw(&raw).unwrap()
        };
        let mut t = Tracker::default();
        let mut out = Vec::new();
        established(&mut t, 5, &mut out);
        t.apply(&ev(5, 3, st::ESTABLISHED, st::CLOSE, true), &mut out);
        t.settle(&mut out);
        assert_eq!(transitions(&out).len(), 2, "held through the first settle");
        t.apply(&reset(5), &mut out);
        t.settle(&mut out);
        assert_eq!(
            transitions(&out)[2],
            (
                "ESTAB->CLOSE".into(),
                Source::Kernel,
                Some("rst-out".into())
            )
        );
        // No reset: out at the second settle, without a cause.
        out.clear();
        established(&mut t, 6, &mut out);
        t.apply(&ev(6, 3, st::ESTABLISHED, st::CLOSE, true), &mut out);
        t.settle(&mut out);
        t.settle(&mut out);
        assert_eq!(transitions(&out).len(), 3);
        // The end of the stream releases whatever is still held.
        out.clear();
        established(&mut t, 7, &mut out);
        t.apply(&ev(7, 3, st::ESTABLISHED, st::CLOSE, true), &mut out);
        t.flush(&mut out);
        assert_eq!(transitions(&out).len(), 3);
    }

    /// A reset reports the state the kernel read, even when the close it follows is gone
    /// from the table (released after its batch); without one, the table's view.
    #[test]
    fn a_reset_takes_the_kernels_state() {
        let reset = |cookie: u64, state: u8| {
            let mut raw = raw_v4();
            raw.cookie = cookie;
            raw.kind = kind::RESET_SENT;
            raw.new_state = state;
            from_raw(&raw).unwrap()
        };
        let reset_state = |out: &[Output]| {
            out.iter().find_map(|o| match o {
                Output::Reset(r) => Some(r.state),
                _ => None,
            })
        };
        let mut t = Tracker::default();
        let mut out = Vec::new();
        t.apply(&ev(8, 1, st::CLOSE, st::SYN_SENT, true), &mut out);
        t.apply(&ev(8, 2, st::SYN_SENT, st::ESTABLISHED, false), &mut out);
        t.apply(&ev(8, 3, st::ESTABLISHED, st::CLOSE, true), &mut out);
        t.settle(&mut out);
        t.settle(&mut out);
        out.clear();
        t.apply(&reset(8, st::CLOSE), &mut out);
        assert_eq!(
            reset_state(&out),
            Some(Some(ReportedState::Known(TcpState::Close)))
        );
        out.clear();
        t.apply(&ev(9, 1, st::CLOSE, st::SYN_SENT, true), &mut out);
        out.clear();
        t.apply(&reset(9, 0), &mut out);
        assert_eq!(
            reset_state(&out),
            Some(Some(ReportedState::Known(TcpState::SynSent)))
        );
    }

    /// A drop without a socket from the kernel is joined by its addresses: to the
    /// connection with both ends (taking its namespace), else to the listener on its port.
    #[test]
    fn a_drop_finds_its_connection_by_addresses() {
        let mut t = Tracker::default();
        let mut out = Vec::new();
        t.apply(&ev(20, 1, st::CLOSE, st::SYN_SENT, true), &mut out);
        t.apply(&ev(20, 2, st::SYN_SENT, st::ESTABLISHED, false), &mut out);
        let connected = t.get(20).unwrap().clone();
        let drop = |local: SocketAddr, remote: SocketAddr| {
            let mut raw = raw_v4();
            raw.kind = kind::DROP;
            raw.cookie = 0;
            raw.netns = 0;
            raw.drop_reason = 27;
            raw.detail = 0x10;
            raw.new_state = 0;
            let mut e = from_raw(&raw).unwrap();
            e.local = local;
            e.remote = remote;
            e
        };
        out.clear();
        t.apply(&drop(connected.local, connected.remote), &mut out);
        let Some(Output::Drop(d)) = out.first() else {
            panic!("no drop: {out:?}");
        };
        assert_eq!((d.cookie, d.netns), (20, connected.netns));
        assert_eq!(d.what.reason, crate::ebpf::DropReason::Kernel(27));
        assert_eq!(d.what.state, Some(known(TcpState::Established)));
        // Unknown addresses: no connection, nothing invented.
        out.clear();
        t.apply(
            &drop("10.1.1.1:9".parse().unwrap(), "10.2.2.2:7".parse().unwrap()),
            &mut out,
        );
        let Some(Output::Drop(d)) = out.first() else {
            panic!("no drop: {out:?}");
        };
        assert_eq!((d.cookie, d.what.state), (0, None));
    }

    /// A passive-open event as 6.1 and 6.12 report it: the child (at kernel address
    /// `sk_addr`) is still a copy of the listener: its cookie, its addresses, no peer.
    fn early_clone(listener: u64, sk_addr: u64, ts: u64) -> KernelEvent {
        let mut e = ev(listener, ts, st::LISTEN, st::SYN_RECV, false);
        e.sk_addr = sk_addr;
        e.local = "127.0.0.1:8080".parse().unwrap();
        e.remote = "0.0.0.0:0".parse().unwrap();
        e
    }

    #[test]
    fn a_passive_open_before_the_child_has_an_identity_takes_the_childs() {
        let mut t = Tracker::default();
        let mut out = Vec::new();
        let listener: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        t.load_baseline(
            [Baseline {
                cookie: 10,
                state: st::LISTEN,
                netns: 4026531840,
                family: Family::Inet,
                local: listener,
                remote: "0.0.0.0:0".parse().unwrap(),
                owner: Some((77, "nginx")),
            }],
            0,
        );
        t.apply(&early_clone(10, 0xffff_0001, 5), &mut out);
        t.settle_at(6, &mut out);
        assert!(
            out.is_empty(),
            "held until the child's next transition: {out:?}"
        );
        let mut established = ev(11, 7, st::SYN_RECV, st::ESTABLISHED, false);
        established.sk_addr = 0xffff_0001;
        established.local = listener;
        established.remote = "127.0.0.1:40000".parse().unwrap();
        t.apply(&established, &mut out);
        t.settle_at(8, &mut out);
        let shown: Vec<(u64, String, String, String, Option<u64>)> = out
            .iter()
            .filter_map(|o| match o {
                Output::Transition(tr) => Some((
                    tr.cookie,
                    format!("{}->{}", tr.old, tr.new),
                    tr.local.to_string(),
                    tr.remote.to_string(),
                    tr.prev_state_ns,
                )),
                Output::Lifetime(_)
                | Output::Reset(_)
                | Output::Retransmit(_)
                | Output::Drop(_)
                | Output::Rtt(_) => None,
            })
            .collect();
        let (l, r) = ("127.0.0.1:8080".to_string(), "127.0.0.1:40000".to_string());
        assert_eq!(
            shown,
            [
                (11, "LISTEN->SYN-RECV".into(), l.clone(), r.clone(), None),
                (11, "SYN-RECV->ESTAB".into(), l, r, Some(2)),
            ]
        );
        // The listener is untouched, and the child has the listener's owner.
        assert_eq!(t.get(10).unwrap().state, known(TcpState::Listen));
        assert_eq!(t.get(11).unwrap().owner.pid, Some(77));
        // A child that never shows up again is counted once the bound passes, not printed.
        out.clear();
        t.apply(&early_clone(10, 0xffff_0002, 10), &mut out);
        t.settle_at(10 + UNRESOLVED_OPEN_NS - 1, &mut out);
        assert_eq!(t.stats().unresolved_opens, 0);
        t.settle_at(10 + UNRESOLVED_OPEN_NS, &mut out);
        assert!(out.is_empty());
        assert_eq!(t.stats().unresolved_opens, 1);
        assert_eq!(t.get(10).unwrap().state, known(TcpState::Listen));
    }

    /// A timewait hook's event for socket `cookie`.
    fn tw(cookie: u64, ts: u64, kind: u8, substate: u8, flags: u8) -> KernelEvent {
        let mut raw = raw_v4();
        raw.cookie = cookie;
        raw.ts_ns = ts;
        raw.kind = kind;
        raw.tw_substate = substate;
        raw.flags = sockstat_common::flags::COOKIE_IS_SOCKET_COOKIE | flags;
        raw.owner_source = owner_source::UNKNOWN;
        from_raw(&raw).unwrap()
    }

    /// A close the timewait hooks classified.
    fn close(cookie: u64, ts: u64, old: u8, flags: u8, substate: u8) -> KernelEvent {
        let mut raw = raw_v4();
        raw.cookie = cookie;
        raw.ts_ns = ts;
        raw.old_state = old;
        raw.new_state = st::CLOSE;
        raw.flags = sockstat_common::flags::COOKIE_IS_SOCKET_COOKIE | flags;
        raw.tw_substate = substate;
        raw.owner_source = owner_source::UNKNOWN;
        from_raw(&raw).unwrap()
    }

    /// Socket 1 connects (t=100), opens (300) and closes first (400), and its FIN is
    /// acked (450): FIN-WAIT-2.
    fn open_then_close_to_fin_wait2(t: &mut Tracker, out: &mut Vec<Output>) {
        for (ts, o, n) in [
            (100, st::CLOSE, st::SYN_SENT),
            (300, st::SYN_SENT, st::ESTABLISHED),
            (400, st::ESTABLISHED, st::FIN_WAIT1),
            (450, st::FIN_WAIT1, st::FIN_WAIT2),
        ] {
            t.apply(&ev(1, ts, o, n, o == st::CLOSE), out);
        }
    }

    fn observed() -> Tracker {
        let mut t = Tracker::default();
        t.observe_timewait(true);
        t
    }

    /// A close while the timewait hooks were still attaching: the kernel could not tell,
    /// so TIME-WAIT is inferred from the peer's FIN and marked synthesized, as without
    /// the hooks, not reported as a plain close.
    #[test]
    fn close_before_the_timewait_hooks_are_on_is_inferred() {
        let mut t = observed();
        let mut out = Vec::new();
        open_then_close_to_fin_wait2(&mut t, &mut out);
        let mut unseen = close(1, 500, st::FIN_WAIT2, sockstat_common::flags::TW_UNSEEN, 0);
        unseen.peer_fin = Some(true);
        t.apply(&unseen, &mut out);
        t.settle_at(501, &mut out);
        assert_eq!(
            transitions(&out)[4],
            (
                "FIN-WAIT-2->TIME-WAIT".into(),
                Source::Synthesized,
                Some("fin".into())
            )
        );
        assert_eq!(t.get(1).unwrap().state, known(TcpState::TimeWait));
    }

    #[test]
    fn observed_orphan_close_then_fin_then_expiry() {
        use sockstat_common::flags::TW_CREATED;
        let mut t = observed();
        let mut out = Vec::new();
        open_then_close_to_fin_wait2(&mut t, &mut out);
        // The orphan's socket is replaced by a timewait socket in FIN-WAIT-2.
        t.apply(&tw(1, 500, kind::TW_ARMED, st::FIN_WAIT2, 0), &mut out);
        t.apply(
            &close(1, 501, st::FIN_WAIT2, TW_CREATED, st::FIN_WAIT2),
            &mut out,
        );
        t.settle_at(502, &mut out);
        assert_eq!(transitions(&out).len(), 4, "no transition for the swap");
        assert!(out.iter().any(|o| matches!(o, Output::Lifetime(_))));
        assert_eq!(t.get(1).unwrap().state, known(TcpState::FinWait2));
        // The peer's FIN.
        t.apply(&tw(1, 800, kind::TW_FIN, st::TIME_WAIT, 0), &mut out);
        // Its expiry: cancel (detach), then expire.
        t.apply(
            &tw(1, 60_000_000_800, kind::TW_CANCELLED, st::TIME_WAIT, 0),
            &mut out,
        );
        t.apply(
            &tw(1, 60_000_000_801, kind::TW_EXPIRED, st::TIME_WAIT, 0),
            &mut out,
        );
        t.settle_at(61_000_000_000, &mut out);
        let tr = transitions(&out);
        assert_eq!(
            tr[4..],
            [
                (
                    "FIN-WAIT-2->TIME-WAIT".into(),
                    Source::Kernel,
                    Some("fin".into())
                ),
                (
                    "TIME-WAIT->CLOSE".into(),
                    Source::Kernel,
                    Some("timeout".into())
                ),
            ]
        );
        assert!(t.get(1).is_none());
        assert_eq!(t.stats().synthesized, 0);
    }

    /// The peer's FIN reaches the orphan's timewait socket on another CPU, and is reported,
    /// before the CLOSE of the socket it replaced: still FIN-WAIT-2 -> TIME-WAIT, at the
    /// FIN's time, and the reuse later ends it from TIME-WAIT.
    #[test]
    fn orphan_fin_reported_before_the_swap_still_enters_time_wait() {
        use sockstat_common::flags::{TW_CREATED, TW_REUSED};
        let mut t = observed();
        let mut out = Vec::new();
        open_then_close_to_fin_wait2(&mut t, &mut out);
        t.apply(&tw(1, 500, kind::TW_ARMED, st::FIN_WAIT2, 0), &mut out);
        t.apply(&tw(1, 505, kind::TW_FIN, st::TIME_WAIT, 0), &mut out);
        assert_eq!(transitions(&out).len(), 4, "nothing before the swap");
        t.apply(
            &close(1, 510, st::FIN_WAIT2, TW_CREATED, st::FIN_WAIT2),
            &mut out,
        );
        t.settle_at(511, &mut out);
        assert_eq!(
            transitions(&out)[4..],
            [(
                "FIN-WAIT-2->TIME-WAIT".into(),
                Source::Kernel,
                Some("fin".into())
            )]
        );
        let entered = out.iter().rev().find_map(|o| match o {
            Output::Transition(t) => Some(t.ts_ns),
            _ => None,
        });
        assert_eq!(entered, Some(505), "at the FIN's time");
        assert_eq!(t.get(1).unwrap().state, known(TcpState::TimeWait));
        t.apply(
            &tw(1, 2_000, kind::TW_CANCELLED, st::TIME_WAIT, TW_REUSED),
            &mut out,
        );
        assert_eq!(
            transitions(&out).last().cloned(),
            Some((
                "TIME-WAIT->CLOSE".into(),
                Source::Kernel,
                Some("reused".into())
            ))
        );
        assert_eq!(t.stats().jumps, 0);
    }

    /// A timewait socket made in TIME-WAIT arms its timer before its socket's CLOSE: that
    /// CLOSE shows the transition, once.
    #[test]
    fn timewait_made_in_time_wait_enters_it_once() {
        use sockstat_common::flags::TW_CREATED;
        let mut t = observed();
        let mut out = Vec::new();
        t.apply(&ev(1, 10, st::ESTABLISHED, st::FIN_WAIT1, true), &mut out);
        t.apply(&ev(1, 20, st::FIN_WAIT1, st::FIN_WAIT2, false), &mut out);
        t.apply(&tw(1, 30, kind::TW_ARMED, st::TIME_WAIT, 0), &mut out);
        t.apply(
            &close(1, 31, st::FIN_WAIT2, TW_CREATED, st::TIME_WAIT),
            &mut out,
        );
        t.settle_at(32, &mut out);
        let tr = transitions(&out);
        assert_eq!(
            tr.iter()
                .filter(|(edge, _, _)| edge == "FIN-WAIT-2->TIME-WAIT")
                .count(),
            1,
            "{tr:?}"
        );
        assert_eq!(t.get(1).unwrap().state, known(TcpState::TimeWait));
    }

    #[test]
    fn observed_overflow_reuse_reset_and_kill() {
        use sockstat_common::flags::{TW_CREATED, TW_OVERFLOW, TW_REUSED};
        let mut t = observed();
        let mut out = Vec::new();
        for cookie in 1..=5 {
            t.apply(
                &ev(cookie, 10, st::ESTABLISHED, st::FIN_WAIT1, true),
                &mut out,
            );
            t.apply(
                &ev(cookie, 20, st::FIN_WAIT1, st::FIN_WAIT2, false),
                &mut out,
            );
        }
        // 1: the table was full.
        t.apply(&close(1, 30, st::FIN_WAIT2, TW_OVERFLOW, 0), &mut out);
        // 2..=5 enter TIME-WAIT.
        for cookie in 2..=5 {
            t.apply(&tw(cookie, 30, kind::TW_ARMED, st::TIME_WAIT, 0), &mut out);
            t.apply(
                &close(cookie, 31, st::FIN_WAIT2, TW_CREATED, st::TIME_WAIT),
                &mut out,
            );
        }
        // 2: reused by a connect(); 3: an RST; 4: cancelled and never heard of again;
        // 5: cancelled, then re-armed (not a death).
        t.apply(
            &tw(2, 40, kind::TW_CANCELLED, st::TIME_WAIT, TW_REUSED),
            &mut out,
        );
        t.apply(&tw(3, 41, kind::TW_CANCELLED, st::TIME_WAIT, 0), &mut out);
        t.apply(&tw(3, 42, kind::TW_RESET, st::TIME_WAIT, 0), &mut out);
        t.apply(&tw(4, 43, kind::TW_CANCELLED, st::TIME_WAIT, 0), &mut out);
        t.apply(&tw(5, 44, kind::TW_CANCELLED, st::TIME_WAIT, 0), &mut out);
        t.apply(&tw(5, 45, kind::TW_ARMED, st::TIME_WAIT, 0), &mut out);
        t.settle_at(46, &mut out);
        assert!(t.get(4).is_some(), "held while its fate is open");
        t.settle_at(43 + CANCEL_HOLD_NS, &mut out);
        let ends: Vec<(u64, String, Option<String>)> = out
            .iter()
            .filter_map(|o| match o {
                Output::Transition(tr) if tr.new == known(TcpState::Close) => {
                    Some((tr.cookie, tr.old.to_string(), tr.cause.map(|c| c.name())))
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            ends,
            [
                (1, "FIN-WAIT-2".into(), Some("tw-overflow".into())),
                (2, "TIME-WAIT".into(), Some("reused".into())),
                (3, "TIME-WAIT".into(), Some("rst-in".into())),
                (4, "TIME-WAIT".into(), Some("killed".into())),
            ]
        );
        assert_eq!(t.get(5).unwrap().state, known(TcpState::TimeWait));
        for o in &out {
            if let Output::Transition(tr) = o {
                assert_eq!(tr.source, Source::Kernel, "{tr:?}");
            }
        }
    }

    #[test]
    fn the_timer_armed_at_creation_is_no_second_transition() {
        use sockstat_common::flags::TW_CREATED;
        // The peer's FIN reached the full socket in FIN-WAIT-2: the timewait socket is made
        // straight in TIME-WAIT (its timer armed first), then the socket closes.
        let mut t = observed();
        let mut out = Vec::new();
        t.apply(&ev(1, 10, st::FIN_WAIT1, st::FIN_WAIT2, false), &mut out);
        t.apply(&tw(1, 20, kind::TW_ARMED, st::TIME_WAIT, 0), &mut out);
        t.apply(
            &close(1, 21, st::FIN_WAIT2, TW_CREATED, st::TIME_WAIT),
            &mut out,
        );
        t.settle_at(22, &mut out);
        let into_time_wait = transitions(&out)
            .iter()
            .filter(|(edge, _, _)| edge == "FIN-WAIT-2->TIME-WAIT")
            .count();
        assert_eq!(into_time_wait, 1);
    }

    #[test]
    fn an_observed_plain_close_from_fin_wait_2_is_no_time_wait() {
        // tcp_close() with unread data: CLOSE, then the RST it sends.
        let mut t = observed();
        let mut out = Vec::new();
        t.apply(&ev(1, 10, st::FIN_WAIT1, st::FIN_WAIT2, false), &mut out);
        t.apply(&close(1, 20, st::FIN_WAIT2, 0, 0), &mut out);
        let mut rst = raw_v4();
        rst.cookie = 1;
        rst.ts_ns = 21;
        rst.kind = kind::RESET_SENT;
        t.apply(&from_raw(&rst).unwrap(), &mut out);
        t.settle_at(22, &mut out);
        let tr = transitions(&out);
        assert_eq!(
            tr.last().unwrap(),
            &(
                "FIN-WAIT-2->CLOSE".into(),
                Source::Kernel,
                Some("rst-out".into())
            )
        );
    }

    #[test]
    fn passive_opens_take_the_listener_owner() {
        let mut t = Tracker::default();
        let mut out = Vec::new();
        t.load_baseline(
            [Baseline {
                cookie: 10,
                state: st::LISTEN,
                netns: 4026531840,
                family: Family::Inet,
                local: "127.0.0.1:40000".parse().unwrap(),
                remote: "0.0.0.0:0".parse().unwrap(),
                owner: Some((77, "nginx")),
            }],
            0,
        );
        t.apply(&ev(11, 5, st::LISTEN, st::SYN_RECV, false), &mut out);
        t.apply(&ev(11, 6, st::SYN_RECV, st::ESTABLISHED, false), &mut out);
        for o in &out {
            let Output::Transition(tr) = o else { continue };
            assert_eq!(tr.owner.pid, Some(77));
            assert_eq!(tr.owner.source, OwnerSource::Listener);
        }
    }

    #[test]
    fn reconcile_repairs_missed_events_and_stays_bounded() {
        let mut t = Tracker::with_capacity(100);
        let mut out = Vec::new();
        let b = |cookie, state| Baseline {
            cookie,
            state,
            netns: 1,
            family: Family::Inet,
            local: "127.0.0.1:1".parse().unwrap(),
            remote: "127.0.0.1:2".parse().unwrap(),
            owner: None,
        };
        t.load_baseline([b(1, st::ESTABLISHED), b(2, st::ESTABLISHED)], 0);
        // 1 closed while events were lost; 2 moved to CLOSE-WAIT; 3 appeared.
        t.reconcile(
            [b(2, st::CLOSE_WAIT), b(3, st::ESTABLISHED)]
                .into_iter()
                .collect(),
            None,
            u32::MAX,
            10,
            20,
            &mut out,
        );
        assert_eq!(t.stats().repairs, 3);
        assert_eq!(t.len(), 2);
        assert!(transitions(&out).iter().all(|t| t.1 == Source::Synthesized));
        for i in 0..1000 {
            t.apply(
                &ev(100 + i, 30 + i, st::CLOSE, st::SYN_SENT, true),
                &mut out,
            );
        }
        assert!(t.len() <= 100);
        assert!(t.stats().evicted > 0);
    }
    #[test]
    fn orphan_fin_wait2_stays_in_fin_wait2() {
        let mut t = Tracker::default();
        let mut out = Vec::new();
        t.apply(&ev(7, 1, st::ESTABLISHED, st::FIN_WAIT1, true), &mut out);
        t.apply(&ev(7, 2, st::FIN_WAIT1, st::FIN_WAIT2, false), &mut out);
        // Closed by its application before the peer's FIN: the kernel's -> CLOSE is the
        // swap to a timewait socket in FIN-WAIT-2, not TIME-WAIT.
        let mut close = ev(7, 3, st::FIN_WAIT2, st::CLOSE, false);
        close.peer_fin = Some(false);
        t.apply(&close, &mut out);
        t.settle(&mut out);
        let got: Vec<String> = transitions(&out).into_iter().map(|(e, _, _)| e).collect();
        assert_eq!(got, ["ESTAB->FIN-WAIT-1", "FIN-WAIT-1->FIN-WAIT-2"]);
        assert_eq!(t.get(7).unwrap().state, known(TcpState::FinWait2));
        // The peer's FIN arrives later: the next full dump sees TIME-WAIT.
        out.clear();
        let e = t.get(7).unwrap().clone();
        let b = Baseline {
            cookie: 7,
            state: st::TIME_WAIT,
            netns: e.netns,
            family: e.family,
            local: e.local,
            remote: e.remote,
            owner: None,
        };
        t.reconcile([b].into_iter().collect(), None, u32::MAX, 10, 11, &mut out);
        let got: Vec<(String, Source, Option<String>)> = transitions(&out);
        assert_eq!(got[0].0, "FIN-WAIT-2->TIME-WAIT");
        assert_eq!(got[0].1, Source::Synthesized);
    }

    #[test]
    fn reconcile_judges_only_the_namespaces_it_dumped() {
        let mut t = Tracker::default();
        let mut out = Vec::new();
        let b = |cookie, netns| Baseline {
            cookie,
            state: st::ESTABLISHED,
            netns,
            family: Family::Inet,
            local: "127.0.0.1:1".parse().unwrap(),
            remote: "127.0.0.1:2".parse().unwrap(),
            owner: None,
        };
        t.load_baseline([b(1, 100), b(2, 200)], 0);
        // A dump of namespace 100 only, where socket 1 is gone: 2 is not its business.
        t.reconcile(Dumped::default(), Some(&[100]), u32::MAX, 10, 20, &mut out);
        assert!(t.get(1).is_none());
        assert!(t.get(2).is_some());
    }
}
