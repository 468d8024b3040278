//! The socket-owner scan (see the module comment in `procs`).
use std::{
    collections::{HashMap, HashSet},
    ffi::CStr,
    thread,
};

use rustix::fs::{Dir, Mode, OFlags, openat, readlinkat};

/// One file descriptor of one process holding a socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Holder {
    pub inode: u32,
    pub pid: u32,
    pub fd: u32,
}

/// Process names by pid. Looked up once per listed socket, so the hash is foldhash (pids
/// are not attacker-chosen keys) rather than SipHash.
type Comms = HashMap<u32, String, foldhash::fast::FixedState>;

/// Every socket's owners: a flat list sorted by (inode, pid, fd), and process names by pid.
/// Flat, so 100k sockets cost one allocation rather than one per socket.
#[derive(Clone, Debug, Default)]
pub struct Owners {
    entries: Vec<Holder>,
    index: InodeIndex,
    comms: Comms,
}

/// Where each inode's run starts in `entries`. Looked up once per listed socket, in the
/// kernel's hash order, so each lookup is a cache miss or several: socket inode numbers
/// come from one counter and are nearly dense, so a direct table (one miss) is used when
/// the range is at most a few times the count, and a binary search otherwise.
#[derive(Clone, Debug, Default)]
enum InodeIndex {
    #[default]
    Empty,
    /// `starts[inode - base]` is the first entry, or `NONE`.
    Dense { base: u32, starts: Vec<u32> },
    /// `entries[i].inode`, alone, so a probe touches 4 bytes instead of a whole entry.
    Sorted(Vec<u32>),
}

impl InodeIndex {
    const NONE: u32 = u32::MAX;

    fn build(entries: &[Holder]) -> Self {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return InodeIndex::Empty;
        };
        let (base, span) = (first.inode, (last.inode - first.inode) as usize + 1);
        if span > entries.len().saturating_mul(4).saturating_add(1 << 16)
            || entries.len() >= Self::NONE as usize
        {
            return InodeIndex::Sorted(entries.iter().map(|o| o.inode).collect());
        }
        let mut starts = vec![Self::NONE; span];
        for (i, o) in entries.iter().enumerate().rev() {
            starts[(o.inode - base) as usize] = i as u32;
        }
        InodeIndex::Dense { base, starts }
    }

    /// The first entry of `inode`, if it has any.
    fn start(&self, entries: &[Holder], inode: u32) -> Option<usize> {
        match self {
            InodeIndex::Empty => None,
            InodeIndex::Dense { base, starts } => {
                let slot = inode.checked_sub(*base)? as usize;
                starts
                    .get(slot)
                    .filter(|&&s| s != Self::NONE)
                    .map(|&s| s as usize)
            }
            InodeIndex::Sorted(inodes) => {
                let at = inodes.partition_point(|&i| i < inode);
                (entries.get(at)?.inode == inode).then_some(at)
            }
        }
    }
}

impl Owners {
    pub fn new(mut entries: Vec<Holder>, comms: HashMap<u32, String>) -> Self {
        entries.sort_unstable();
        entries.dedup();
        let index = InodeIndex::build(&entries);
        let comms = comms.into_iter().collect();
        Owners {
            entries,
            index,
            comms,
        }
    }

    /// The holders of socket `inode`, by pid then fd.
    pub fn of(&self, inode: u32) -> &[Holder] {
        let Some(start) = self.index.start(&self.entries, inode) else {
            return &[];
        };
        // Usually one holder.
        let count = self.entries[start..]
            .iter()
            .take_while(|o| o.inode == inode)
            .count();
        &self.entries[start..start + count]
    }

    pub fn comm(&self, pid: u32) -> &str {
        self.comms.get(&pid).map_or("", String::as_str)
    }
}

/// Scans /proc for the owners of `wanted` inodes (all sockets when `None`).
pub fn socket_owners(wanted: Option<&HashSet<u32>>) -> Owners {
    let pids: Vec<i32> = match procfs::process::all_processes() {
        Ok(iter) => iter.filter_map(Result::ok).map(|p| p.pid()).collect(),
        Err(_) => return Owners::default(),
    };
    let workers = thread::available_parallelism()
        .map_or(2, usize::from)
        .clamp(1, 8);
    let chunk = pids.len().div_ceil(workers).max(1);
    let mut entries = Vec::new();
    let mut comms = HashMap::new();
    thread::scope(|scope| {
        let handles: Vec<_> = pids
            .chunks(chunk)
            .map(|pids| {
                let spawned =
                    thread::Builder::new().spawn_scoped(scope, move || scan(pids, wanted));
                (pids, spawned)
            })
            .collect();
        for (pids, h) in handles {
            // No thread to be had (a limit), or it died: that share is scanned here.
            let (found, names) = match h.map(|h| h.join()) {
                Ok(Ok(done)) => done,
                _ => scan(pids, wanted),
            };
            entries.extend(found);
            comms.extend(names);
        }
    });
    Owners::new(entries, comms)
}

fn scan(pids: &[i32], wanted: Option<&HashSet<u32>>) -> (Vec<Holder>, HashMap<u32, String>) {
    let mut found: Vec<Holder> = Vec::new();
    let mut comms: HashMap<u32, String> = HashMap::new();
    let mut link = Vec::with_capacity(64);
    let mut path = String::with_capacity(32);
    for &pid in pids {
        path.clear();
        path.push_str("/proc/");
        path.push_str(&pid.to_string());
        path.push_str("/fd");
        // Processes come and go during the scan; a vanished one simply has no fds.
        let Ok(dirfd) = openat(
            rustix::fs::CWD,
            path.as_str(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) else {
            continue;
        };
        let Ok(mut dir) = Dir::read_from(&dirfd) else {
            continue;
        };
        while let Some(Ok(entry)) = dir.next() {
            let name = entry.file_name();
            let Some(fd) = parse_fd(name) else {
                continue;
            };
            link.clear();
            let Ok(target) = readlinkat(&dirfd, name, std::mem::take(&mut link)) else {
                continue;
            };
            let inode = socket_inode(target.as_bytes());
            link = target.into_bytes();
            let Some(inode) = inode else {
                continue;
            };
            if wanted.is_some_and(|w| !w.contains(&inode)) {
                continue;
            }
            comms.entry(pid as u32).or_insert_with(|| read_comm(pid));
            found.push(Holder {
                inode,
                pid: pid as u32,
                fd,
            });
        }
    }
    (found, comms)
}

fn parse_fd(name: &CStr) -> Option<u32> {
    let b = name.to_bytes();
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// `socket:[12345]` -> 12345.
fn socket_inode(link: &[u8]) -> Option<u32> {
    let inner = link.strip_prefix(b"socket:[")?.strip_suffix(b"]")?;
    std::str::from_utf8(inner).ok()?.parse().ok()
}

/// The process name as ss shows it: `comm` from /proc/PID/stat (up to the first ')').
fn read_comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let start = s.find('(')? + 1;
            let end = s[start..].find(')')? + start;
            Some(s[start..end].to_string())
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn finds_this_processes_socket() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let inode = {
            use std::os::fd::AsRawFd;
            let fd = l.as_raw_fd();
            let meta = std::fs::metadata(format!("/proc/self/fd/{fd}")).unwrap();
            (meta.ino() as u32, fd as u32)
        };
        let wanted: HashSet<u32> = [inode.0].into();
        let owners = socket_owners(Some(&wanted));
        let refs = owners.of(inode.0);
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0].pid, std::process::id());
        assert_eq!(refs[0].fd, inode.1);
        assert!(!owners.comm(refs[0].pid).is_empty());
        assert_eq!(socket_inode(b"socket:[77]"), Some(77));
        assert_eq!(socket_inode(b"pipe:[77]"), None);
    }

    #[test]
    fn lookup_by_inode() {
        let o = |inode, pid, fd| Holder { inode, pid, fd };
        let owners = Owners::new(
            vec![o(7, 2, 4), o(5, 1, 3), o(7, 1, 9), o(7, 1, 9)],
            HashMap::from([(1, "a".to_string())]),
        );
        assert_eq!(owners.of(7), &[o(7, 1, 9), o(7, 2, 4)]);
        assert_eq!(owners.of(5), &[o(5, 1, 3)]);
        assert!(owners.of(6).is_empty());
        assert_eq!(owners.comm(1), "a");
        assert_eq!(owners.comm(2), "");
        assert!(matches!(owners.index, InodeIndex::Dense { .. }));
        assert!(Owners::default().of(7).is_empty());
    }

    #[test]
    fn sparse_inodes_use_the_sorted_index() {
        let o = |inode, pid, fd| Holder { inode, pid, fd };
        let owners = Owners::new(
            vec![
                o(u32::MAX - 1, 3, 3),
                o(5, 1, 3),
                o(5, 2, 1),
                o(1 << 30, 1, 4),
            ],
            HashMap::new(),
        );
        assert!(matches!(owners.index, InodeIndex::Sorted(_)));
        assert_eq!(owners.of(5), &[o(5, 1, 3), o(5, 2, 1)]);
        assert_eq!(owners.of(1 << 30), &[o(1 << 30, 1, 4)]);
        assert_eq!(owners.of(u32::MAX - 1), &[o(u32::MAX - 1, 3, 3)]);
        assert!(owners.of(6).is_empty());
        assert!(owners.of(u32::MAX).is_empty());
        assert!(owners.of(0).is_empty());
    }
}
