//! A sock_diag dump's sockets, held compactly until the live table takes them. A reconcile
//! after a loss dumps every TIME-WAIT socket too, 131k at the kernel's default cap: as a
//! `Vec` of full records (~120 bytes each, and twice that while the vector grew) the dump
//! alone set the agents' peak RSS. Here an IPv4 socket takes 32 bytes and an IPv6 one 56,
//! in fixed chunks that never reallocate, and owners' names are stored once per process.
use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

use crate::ebpf::Family;

/// A socket found by a sock_diag dump.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Baseline<'a> {
    pub cookie: u64,
    pub state: u8,
    pub netns: u32,
    pub family: Family,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// The owning process: pid and name.
    pub owner: Option<(u32, &'a str)>,
}

/// One dumped socket of one family; `N` is its address size. `pid` 0: no owner known
/// (no process owns pid 0's sockets in a dump).
#[derive(Clone, Copy)]
struct Row<const N: usize> {
    cookie: u64,
    netns: u32,
    pid: u32,
    local: [u8; N],
    remote: [u8; N],
    local_port: u16,
    remote_port: u16,
    state: u8,
}

const _: () = assert!(size_of::<Row<4>>() == 32);
const _: () = assert!(size_of::<Row<16>>() == 56);

/// Rows per chunk: 128 KiB of IPv4 rows.
const CHUNK: usize = 4096;

/// A vector in fixed chunks: growing never copies, so its peak is its size plus one chunk.
struct Chunks<T> {
    chunks: Vec<Vec<T>>,
}

impl<T> Default for Chunks<T> {
    fn default() -> Self {
        Self { chunks: Vec::new() }
    }
}

impl<T> Chunks<T> {
    fn push(&mut self, item: T) {
        match self.chunks.last_mut() {
            Some(last) if last.len() < CHUNK => last.push(item),
            _ => {
                let mut chunk = Vec::with_capacity(CHUNK);
                chunk.push(item);
                self.chunks.push(chunk);
            }
        }
    }

    fn len(&self) -> usize {
        self.chunks.iter().map(Vec::len).sum()
    }

    fn truncate(&mut self, len: usize) {
        let kept = len.div_ceil(CHUNK);
        self.chunks.truncate(kept);
        if let Some(last) = self.chunks.last_mut() {
            last.truncate(len - (kept - 1) * CHUNK);
        }
    }

    fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flatten()
    }
}

/// A point to go back to (a namespace's dump that restarted).
#[derive(Clone, Copy, Debug, Default)]
pub struct Mark {
    v4: usize,
    v6: usize,
}

/// The sockets of one dump.
#[derive(Default)]
pub struct Dumped {
    v4: Chunks<Row<4>>,
    v6: Chunks<Row<16>>,
    comms: HashMap<u32, Box<str>>,
}

impl Dumped {
    pub fn push(&mut self, b: Baseline<'_>) {
        let pid = match b.owner {
            Some((pid, comm)) if pid != 0 => {
                self.comms.entry(pid).or_insert_with(|| comm.into());
                pid
            }
            _ => 0,
        };
        match (b.family, b.local.ip(), b.remote.ip()) {
            (Family::Inet, IpAddr::V4(local), IpAddr::V4(remote)) => self.v4.push(Row {
                cookie: b.cookie,
                netns: b.netns,
                pid,
                local: local.octets(),
                remote: remote.octets(),
                local_port: b.local.port(),
                remote_port: b.remote.port(),
                state: b.state,
            }),
            (_, local, remote) => self.v6.push(Row {
                cookie: b.cookie,
                netns: b.netns,
                pid,
                local: v6_octets(local),
                remote: v6_octets(remote),
                local_port: b.local.port(),
                remote_port: b.remote.port(),
                state: b.state,
            }),
        }
    }

    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn mark(&self) -> Mark {
        Mark {
            v4: self.v4.len(),
            v6: self.v6.len(),
        }
    }

    /// Drops what was pushed after `mark`.
    pub fn truncate(&mut self, mark: Mark) {
        self.v4.truncate(mark.v4);
        self.v6.truncate(mark.v6);
    }

    pub fn iter(&self) -> impl Iterator<Item = Baseline<'_>> {
        let v4 = self.v4.iter().map(|r| {
            self.baseline(
                r,
                Family::Inet,
                IpAddr::V4(Ipv4Addr::from(r.local)),
                IpAddr::V4(Ipv4Addr::from(r.remote)),
            )
        });
        let v6 = self.v6.iter().map(|r| {
            self.baseline(
                r,
                Family::Inet6,
                IpAddr::V6(Ipv6Addr::from(r.local)),
                IpAddr::V6(Ipv6Addr::from(r.remote)),
            )
        });
        v4.chain(v6)
    }

    /// Every cookie, sorted, for membership tests.
    pub fn sorted_cookies(&self) -> Vec<u64> {
        let mut cookies = Vec::with_capacity(self.len());
        cookies.extend(self.v4.iter().map(|r| r.cookie));
        cookies.extend(self.v6.iter().map(|r| r.cookie));
        cookies.sort_unstable();
        cookies
    }

    fn baseline<const N: usize>(
        &self,
        r: &Row<N>,
        family: Family,
        local: IpAddr,
        remote: IpAddr,
    ) -> Baseline<'_> {
        Baseline {
            cookie: r.cookie,
            state: r.state,
            netns: r.netns,
            family,
            local: SocketAddr::new(local, r.local_port),
            remote: SocketAddr::new(remote, r.remote_port),
            // Most rows (every timewait socket) have no owner: no lookup for them.
            owner: (r.pid != 0)
                .then(|| self.comms.get(&r.pid))
                .flatten()
                .map(|comm| (r.pid, comm.as_ref())),
        }
    }
}

/// An address as 16 bytes: IPv6 as is, IPv4 (in an IPv6 socket's v4-mapped form).
fn v6_octets(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V6(v6) => v6.octets(),
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
    }
}

impl<'a> FromIterator<Baseline<'a>> for Dumped {
    fn from_iter<I: IntoIterator<Item = Baseline<'a>>>(iter: I) -> Self {
        let mut dumped = Dumped::default();
        for b in iter {
            dumped.push(b);
        }
        dumped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn socket(
        cookie: u64,
        local: &str,
        remote: &str,
        owner: Option<(u32, &'static str)>,
    ) -> Baseline<'static> {
        let local: SocketAddr = local.parse().unwrap();
        Baseline {
            cookie,
            state: 1,
            netns: 7,
            family: Family::of(&local),
            local,
            remote: remote.parse().unwrap(),
            owner,
        }
    }

    #[test]
    fn every_socket_comes_back_as_it_went_in() {
        let sockets = [
            socket(3, "10.0.0.1:22", "10.0.0.2:50000", Some((42, "sshd"))),
            socket(1, "[2001:db8::1]:443", "[2001:db8::2]:60000", None),
            socket(
                2,
                "[::ffff:127.0.0.1]:80",
                "[::ffff:127.0.0.1]:41000",
                Some((42, "sshd")),
            ),
            socket(4, "0.0.0.0:8080", "0.0.0.0:0", Some((7, "web"))),
        ];
        let dumped: Dumped = sockets.iter().copied().collect();
        assert_eq!(dumped.len(), 4);
        let mut back: Vec<Baseline<'_>> = dumped.iter().collect();
        back.sort_by_key(|b| b.cookie);
        let mut want = sockets.to_vec();
        want.sort_by_key(|b| b.cookie);
        assert_eq!(back, want);
        assert_eq!(dumped.sorted_cookies(), vec![1, 2, 3, 4]);
    }

    #[test]
    fn truncating_to_a_mark_drops_what_came_after_across_chunks() {
        let mut dumped = Dumped::default();
        for cookie in 0..(CHUNK as u64 + 10) {
            dumped.push(socket(cookie, "10.0.0.1:1", "10.0.0.2:2", None));
        }
        let mark = dumped.mark();
        for cookie in 0..(CHUNK as u64 * 2) {
            dumped.push(socket(100_000 + cookie, "10.0.0.1:1", "10.0.0.2:2", None));
            dumped.push(socket(200_000 + cookie, "[::1]:1", "[::1]:2", None));
        }
        dumped.truncate(mark);
        assert_eq!(dumped.len(), CHUNK + 10);
        assert!(dumped.iter().all(|b| b.cookie < 100_000));
        dumped.truncate(Mark::default());
        assert_eq!(dumped.len(), 0);
        assert_eq!(dumped.iter().count(), 0);
    }
}
