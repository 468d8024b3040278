//! Timewait sockets (TIME-WAIT, and orphans waiting in FIN-WAIT-2) in a table of their own.
//!
//! They are most of a busy host's sockets (up to `tcp_max_tw_buckets`, 131072 by default,
//! per namespace) and need little: their state, when they entered it, the 4-tuple, the
//! namespace and the owner to name when they end. Their connection's lifetime was reported
//! when it entered TIME-WAIT. So each is a 40-byte slot in a slab, found by cookie through a
//! hash table of slot numbers (hashbrown's `HashTable`: 5 bytes a bucket, where a map from
//! cookie to slot would take 17), with owners, IPv6 addresses and namespaces interned: about
//! 50 bytes a socket in all, against ~200 in the general table.
use std::{
    hash::Hash,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

use super::{
    FastMap, Owner,
    table::{Entry, SocketView},
};
use crate::{
    ebpf::Family,
    tcp::{ReportedState, TcpState},
};

/// One timewait socket. Addresses are IPv4 octets, or (with `INET6`) an index into the
/// IPv6 interner; `netns` and `owner` are interner indexes.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
struct Slot {
    cookie: u64,
    since_ns: u64,
    /// Last touched, in `TOUCH_NS` units after the table's epoch, rounded up (a reconcile
    /// must never judge an entry older than it is).
    touched: u32,
    owner: u32,
    local: u32,
    remote: u32,
    lport: u16,
    rport: u16,
    netns: u16,
    state: u8,
    flags: u8,
}

const _: () = assert!(std::mem::size_of::<Slot>() == 40);

const INET6: u8 = 1 << 0;
const PEER_FIN: u8 = 1 << 1;

/// 100 ms: a u32 of them lasts 13 years.
const TOUCH_NS: u64 = 100_000_000;

/// Slots are allocated in chunks, so a grown table wastes at most one chunk (a Vec would
/// double and leave up to half its capacity unused).
const CHUNK: usize = 4096;

/// Values stored once and referred to by index, with a reference count so an index is
/// reused once nothing refers to it.
struct Interner<T> {
    index: FastMap<T, u32>,
    values: Vec<(T, u32)>,
    free: Vec<u32>,
}

impl<T: Hash + Eq + Copy> Interner<T> {
    fn new() -> Self {
        Interner {
            index: FastMap::default(),
            values: Vec::new(),
            free: Vec::new(),
        }
    }

    fn acquire(&mut self, value: T) -> u32 {
        if let Some(&i) = self.index.get(&value) {
            self.values[i as usize].1 += 1;
            return i;
        }
        let i = match self.free.pop() {
            Some(i) => {
                self.values[i as usize] = (value, 1);
                i
            }
            None => {
                self.values.push((value, 1));
                (self.values.len() - 1) as u32
            }
        };
        self.index.insert(value, i);
        i
    }

    fn release(&mut self, i: u32) {
        let Some(slot) = self.values.get_mut(i as usize) else {
            return;
        };
        slot.1 = slot.1.saturating_sub(1);
        if slot.1 == 0 {
            self.index.remove(&slot.0);
            self.free.push(i);
        }
    }

    /// The value of a live index (a slot refers only to those).
    fn get(&self, i: u32) -> Option<T> {
        self.values.get(i as usize).map(|v| v.0)
    }

    fn get_ref(&self, i: u32) -> Option<&T> {
        self.values.get(i as usize).map(|v| &v.0)
    }

    fn len(&self) -> usize {
        self.values.len() - self.free.len()
    }

    fn bytes(&self) -> usize {
        hash_bytes(self.index.capacity(), std::mem::size_of::<(T, u32)>())
            + self.values.capacity() * std::mem::size_of::<(T, u32)>()
            + self.free.capacity() * 4
    }
}

/// Bytes a hashbrown table (std's HashMap or a HashTable) of `capacity` holds, given what
/// one bucket stores: its buckets (a power of two, 8/7 of the capacity) with one control
/// byte each.
pub fn hash_bytes(capacity: usize, bucket: usize) -> usize {
    if capacity == 0 {
        return 0;
    }
    (capacity * 8 / 7).next_power_of_two() * (bucket + 1)
}

pub struct TwTable {
    /// Slot numbers, hashed by their slot's cookie.
    by_cookie: hashbrown::HashTable<u32>,
    chunks: Vec<Box<[Slot]>>,
    /// Slot numbers free for reuse.
    free: Vec<u32>,
    /// Slot numbers handed out so far.
    used: u32,
    owners: Interner<Owner>,
    v6: Interner<Ipv6Addr>,
    netns: Interner<u32>,
    epoch_ns: Option<u64>,
}

impl Default for TwTable {
    fn default() -> Self {
        TwTable {
            by_cookie: hashbrown::HashTable::new(),
            chunks: Vec::new(),
            free: Vec::new(),
            used: 0,
            owners: Interner::new(),
            v6: Interner::new(),
            netns: Interner::new(),
            epoch_ns: None,
        }
    }
}

/// Whether `e` belongs here: a socket the kernel swapped for a timewait socket.
pub fn is_timewait(e: &Entry) -> bool {
    e.timewait
        && matches!(
            e.state,
            ReportedState::Known(TcpState::TimeWait | TcpState::FinWait2)
        )
}

/// Cookies are a counter: spread them over the buckets (Fibonacci hashing).
fn hash(cookie: u64) -> u64 {
    cookie.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

impl TwTable {
    pub fn len(&self) -> usize {
        self.by_cookie.len()
    }

    fn find(&self, cookie: u64) -> Option<u32> {
        self.by_cookie
            .find(hash(cookie), |&n| self.slot(n).cookie == cookie)
            .copied()
    }

    pub fn contains(&self, cookie: u64) -> bool {
        self.find(cookie).is_some()
    }

    fn slot(&self, n: u32) -> &Slot {
        &self.chunks[n as usize / CHUNK][n as usize % CHUNK]
    }

    fn slot_mut(&mut self, n: u32) -> &mut Slot {
        &mut self.chunks[n as usize / CHUNK][n as usize % CHUNK]
    }

    fn touched_units(&mut self, ns: u64) -> u32 {
        let epoch = *self.epoch_ns.get_or_insert(ns);
        let units = ns.saturating_sub(epoch).div_ceil(TOUCH_NS);
        u32::try_from(units).unwrap_or(u32::MAX)
    }

    fn touched_ns(&self, units: u32) -> u64 {
        self.epoch_ns.unwrap_or(0) + u64::from(units) * TOUCH_NS
    }

    /// Stores `e` (see `is_timewait`). Returns it back when it cannot be stored here: more
    /// than 65535 namespaces hold timewait sockets (the general table takes it then).
    pub fn insert(&mut self, cookie: u64, e: &Entry) -> Result<(), ()> {
        if self.netns.len() >= usize::from(u16::MAX) && !self.netns.index.contains_key(&e.netns) {
            return Err(());
        }
        self.remove(cookie);
        let ip = |ip: IpAddr, v6: &mut Interner<Ipv6Addr>| match ip {
            IpAddr::V4(v4) => u32::from_ne_bytes(v4.octets()),
            IpAddr::V6(v6addr) => v6.acquire(v6addr),
        };
        let inet6 = e.family == Family::Inet6;
        let mut flags = 0;
        if inet6 {
            flags |= INET6;
        }
        if e.peer_fin {
            flags |= PEER_FIN;
        }
        let slot = Slot {
            cookie,
            since_ns: e.since_ns.unwrap_or(0),
            touched: self.touched_units(e.touched_ns),
            owner: self.owners.acquire(e.owner),
            local: ip(e.local.ip(), &mut self.v6),
            remote: ip(e.remote.ip(), &mut self.v6),
            lport: e.local.port(),
            rport: e.remote.port(),
            netns: self.netns.acquire(e.netns) as u16,
            state: e.state.kernel_number(),
            flags,
        };
        let n = match self.free.pop() {
            Some(n) => n,
            None => {
                let n = self.used;
                if (n as usize).is_multiple_of(CHUNK) {
                    self.chunks
                        .push(vec![Slot::default(); CHUNK].into_boxed_slice());
                }
                self.used += 1;
                n
            }
        };
        *self.slot_mut(n) = slot;
        let chunks = &self.chunks;
        self.by_cookie.insert_unique(hash(cookie), n, |&m| {
            hash(chunks[m as usize / CHUNK][m as usize % CHUNK].cookie)
        });
        Ok(())
    }

    /// The socket as a general-table entry (what is not kept here is unknown or spent).
    pub fn get(&self, cookie: u64) -> Option<Entry> {
        let n = self.find(cookie)?;
        Some(self.entry(self.slot(n)))
    }

    fn addr(&self, s: &Slot, which: u32, port: u16) -> SocketAddr {
        let ip = if s.flags & INET6 != 0 {
            IpAddr::V6(self.v6.get(which).unwrap_or(Ipv6Addr::UNSPECIFIED))
        } else {
            IpAddr::V4(Ipv4Addr::from(which.to_ne_bytes()))
        };
        SocketAddr::new(ip, port)
    }

    fn entry(&self, s: &Slot) -> Entry {
        Entry {
            state: ReportedState::from_kernel(s.state),
            since_ns: (s.since_ns != 0).then_some(s.since_ns),
            first_ns: None,
            connect_ns: None,
            handshake_rtt_us: None,
            owner: self.owners.get(s.owner).unwrap_or_else(Owner::unknown),
            netns: self.netns.get(u32::from(s.netns)).unwrap_or(0),
            family: if s.flags & INET6 != 0 {
                Family::Inet6
            } else {
                Family::Inet
            },
            local: self.addr(s, s.local, s.lport),
            remote: self.addr(s, s.remote, s.rport),
            retransmits: 0,
            pending: None,
            touched_ns: self.touched_ns(s.touched),
            passive: false,
            active: None,
            peer_fin: s.flags & PEER_FIN != 0,
            timewait: true,
        }
    }

    pub fn remove(&mut self, cookie: u64) -> Option<Entry> {
        let chunks = &self.chunks;
        let n = self
            .by_cookie
            .find_entry(hash(cookie), |&n| {
                chunks[n as usize / CHUNK][n as usize % CHUNK].cookie == cookie
            })
            .ok()?
            .remove()
            .0;
        let s = *self.slot(n);
        let e = self.entry(&s);
        self.owners.release(s.owner);
        self.netns.release(u32::from(s.netns));
        if s.flags & INET6 != 0 {
            self.v6.release(s.local);
            self.v6.release(s.remote);
        }
        self.slot_mut(n).cookie = 0;
        self.free.push(n);
        Some(e)
    }

    /// Changes a socket's entry in place (through the general form).
    pub fn update(&mut self, cookie: u64, f: impl FnOnce(&mut Entry)) -> bool {
        let Some(mut e) = self.get(cookie) else {
            return false;
        };
        f(&mut e);
        // Only what the slot keeps can change: state, times, the peer's FIN.
        let touched = self.touched_units(e.touched_ns);
        let Some(n) = self.find(cookie) else {
            return false;
        };
        let s = self.slot_mut(n);
        s.state = e.state.kernel_number();
        s.since_ns = e.since_ns.unwrap_or(0);
        s.touched = touched;
        if e.peer_fin {
            s.flags |= PEER_FIN;
        }
        true
    }

    /// Every socket: cookie and view.
    pub fn iter(&self) -> impl Iterator<Item = (u64, SocketView<'_>)> {
        static UNKNOWN: std::sync::OnceLock<Owner> = std::sync::OnceLock::new();
        self.by_cookie.iter().map(|&n| {
            let s = self.slot(n);
            let cookie = s.cookie;
            let owner = self
                .owners
                .get_ref(s.owner)
                .unwrap_or_else(|| UNKNOWN.get_or_init(Owner::unknown));
            (
                cookie,
                SocketView {
                    state: ReportedState::from_kernel(s.state),
                    local: self.addr(s, s.local, s.lport),
                    remote: self.addr(s, s.remote, s.rport),
                    netns: self.netns.get(u32::from(s.netns)).unwrap_or(0),
                    owner,
                    since_ns: (s.since_ns != 0).then_some(s.since_ns),
                },
            )
        })
    }

    /// (cookie, state, netns, touched) of every socket, for a reconcile.
    pub fn summaries(&self) -> impl Iterator<Item = (u64, ReportedState, u32, u64)> + '_ {
        self.by_cookie.iter().map(|&n| {
            let s = self.slot(n);
            (
                s.cookie,
                ReportedState::from_kernel(s.state),
                self.netns.get(u32::from(s.netns)).unwrap_or(0),
                self.touched_ns(s.touched),
            )
        })
    }

    /// (cookie, last touched) of every socket (for eviction).
    pub fn touched_times(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.by_cookie.iter().map(|&n| {
            let s = self.slot(n);
            (s.cookie, self.touched_ns(s.touched))
        })
    }

    /// What the table holds in memory: the map, the slots, the free lists and interners.
    pub fn bytes(&self) -> usize {
        hash_bytes(self.by_cookie.capacity(), std::mem::size_of::<u32>())
            + self.chunks.len() * CHUNK * std::mem::size_of::<Slot>()
            + self.chunks.capacity() * std::mem::size_of::<Box<[Slot]>>()
            + self.free.capacity() * 4
            + self.owners.bytes()
            + self.v6.bytes()
            + self.netns.bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::OwnerSource;

    fn entry(i: u32, v6: bool) -> Entry {
        let (local, remote): (SocketAddr, SocketAddr) = if v6 {
            (
                format!("[fd00::1]:{}", 10_000 + i % 50_000)
                    .parse()
                    .unwrap(),
                "[fd00::2]:80".parse().unwrap(),
            )
        } else {
            (
                format!("10.0.0.1:{}", 10_000 + i % 50_000).parse().unwrap(),
                "10.0.0.2:80".parse().unwrap(),
            )
        };
        Entry {
            state: ReportedState::Known(TcpState::TimeWait),
            since_ns: Some(1_000_000_000 + u64::from(i)),
            first_ns: None,
            connect_ns: None,
            handshake_rtt_us: None,
            owner: Owner::known(100 + i % 3, "curl", OwnerSource::Task),
            netns: 4026531840 + i % 2,
            family: if v6 { Family::Inet6 } else { Family::Inet },
            local,
            remote,
            retransmits: 0,
            pending: None,
            touched_ns: 2_000_000_000,
            passive: false,
            active: None,
            peer_fin: true,
            timewait: true,
        }
    }

    #[test]
    fn keeps_what_expiry_and_views_need() {
        let mut t = TwTable::default();
        for (cookie, v6) in [(1, false), (2, true)] {
            let e = entry(cookie as u32, v6);
            t.insert(cookie, &e).unwrap();
            let back = t.get(cookie).unwrap();
            assert_eq!(
                (
                    back.state,
                    back.since_ns,
                    back.owner,
                    back.netns,
                    back.family
                ),
                (e.state, e.since_ns, e.owner, e.netns, e.family)
            );
            assert_eq!(
                (back.local, back.remote, back.peer_fin),
                (e.local, e.remote, true)
            );
            // Touched times are kept rounded up, never earlier than they were.
            assert!(back.touched_ns >= e.touched_ns);
        }
        assert!(t.update(1, |e| e.state = ReportedState::Known(TcpState::FinWait2)));
        assert_eq!(
            t.get(1).unwrap().state,
            ReportedState::Known(TcpState::FinWait2)
        );
        assert_eq!(t.remove(2).map(|e| e.remote.port()), Some(80));
        assert!(t.get(2).is_none() && t.len() == 1);
        let views: Vec<u64> = t.iter().map(|(c, _)| c).collect();
        assert_eq!(views, [1]);
    }

    /// Slots, interned values and the index are reused, and 20k sockets (the root memory
    /// test's load) cost at most 64 bytes each by the table's own accounting.
    #[test]
    fn twenty_thousand_sockets_in_64_bytes_each() {
        let mut t = TwTable::default();
        for round in 0..2 {
            for i in 0..20_000u32 {
                t.insert(u64::from(i) + 1, &entry(i, i % 10 == 0)).unwrap();
            }
            let per = t.bytes() / t.len();
            assert!(per <= 64, "round {round}: {per} bytes a socket");
            for i in 0..20_000u64 {
                assert!(t.remove(i + 1).is_some());
            }
            assert_eq!(t.len(), 0);
            assert_eq!(t.owners.len() + t.v6.len() + t.netns.len(), 0);
        }
        assert_eq!(t.used, 20_000, "slots are reused");
    }
}
