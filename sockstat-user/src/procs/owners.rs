//! The socket-owner scan (see the module comment in `procs`).
use std::{
    collections::{HashMap, HashSet},
    ffi::CStr,
    thread,
};

use rustix::fs::{Dir, Mode, OFlags, openat, readlinkat};

/// One process holding a socket.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ProcRef {
    pub pid: u32,
    pub fd: u32,
    pub comm: String,
}

/// Socket inode -> every (process, fd) that holds it, ordered by pid then fd.
pub type OwnerMap = HashMap<u32, Vec<ProcRef>>;

/// Scans /proc for the owners of `wanted` inodes (all sockets when `None`).
pub fn socket_owners(wanted: Option<&HashSet<u32>>) -> OwnerMap {
    let pids: Vec<i32> = match procfs::process::all_processes() {
        Ok(iter) => iter.filter_map(Result::ok).map(|p| p.pid()).collect(),
        Err(_) => return OwnerMap::new(),
    };
    let workers = thread::available_parallelism()
        .map_or(2, usize::from)
        .clamp(1, 8);
    let chunk = pids.len().div_ceil(workers).max(1);
    let mut map = OwnerMap::new();
    thread::scope(|scope| {
        let handles: Vec<_> = pids
            .chunks(chunk)
            .map(|pids| scope.spawn(move || scan(pids, wanted)))
            .collect();
        for h in handles {
            if let Ok(part) = h.join() {
                for (inode, refs) in part {
                    map.entry(inode).or_default().extend(refs);
                }
            }
        }
    });
    for refs in map.values_mut() {
        refs.sort();
    }
    map
}

fn scan(pids: &[i32], wanted: Option<&HashSet<u32>>) -> Vec<(u32, Vec<ProcRef>)> {
    let mut found: Vec<(u32, Vec<ProcRef>)> = Vec::new();
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
        let mut comm: Option<String> = None;
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
            let comm = comm.get_or_insert_with(|| read_comm(pid)).clone();
            found.push((
                inode,
                vec![ProcRef {
                    pid: pid as u32,
                    fd,
                    comm,
                }],
            ));
        }
    }
    found
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
        let refs = &owners[&inode.0];
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0].pid, std::process::id());
        assert_eq!(refs[0].fd, inode.1);
        assert!(!refs[0].comm.is_empty());
        assert_eq!(socket_inode(b"socket:[77]"), Some(77));
        assert_eq!(socket_inode(b"pipe:[77]"), None);
    }
}
