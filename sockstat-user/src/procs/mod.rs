//! Who owns a socket: inode -> (comm, pid, fd), from /proc; and cgroup helpers.
//!
//! ss -p readlinks every fd of every process into a 256-bucket hash before printing anything
//! (5 s for 100k sockets here). We enumerate processes with the procfs crate, then scan their
//! fd directories in parallel with one `readlinkat` per fd relative to an open directory: procfs's
//! own `FDsIter` opens, stats and readlinks each fd (four syscalls and several allocations),
//! which alone would cost more than the whole budget. Only inodes the caller asks about are
//! kept, and a process's name is read only when one of its fds matched.
pub mod cgroups;
pub mod container;
pub mod docker;
pub mod memory;
pub mod netns;
pub mod owners;
pub mod workload;

pub use owners::{Holder, Owners, socket_owners};

use std::path::PathBuf;

/// Every process's pid, lowest first (empty when /proc cannot be read).
pub fn pids() -> Vec<u32> {
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    pids.sort_unstable();
    pids
}

/// The cgroup v2 mount point, from /proc/self/mounts.
pub fn cgroup2_mount() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        let (_dev, dir, fstype) = (w.next()?, w.next()?, w.next()?);
        (fstype == "cgroup2").then(|| PathBuf::from(dir))
    })
}

/// Work on a thread of its own, or done at once when no thread can be had (a memory or
/// thread limit): never the panic `std::thread::spawn` gives then.
pub enum Background<T> {
    Thread(std::thread::JoinHandle<Option<T>>),
    Done(Option<T>),
}

impl<T: Send + 'static> Background<T> {
    pub fn start<F: FnOnce() -> T + Send + 'static>(f: F) -> Self {
        // The closure moves into the thread only if the thread starts; otherwise it is
        // taken back from the slot and run here.
        let slot = std::sync::Arc::new(std::sync::Mutex::new(Some(f)));
        let theirs = std::sync::Arc::clone(&slot);
        match std::thread::Builder::new().spawn(move || {
            let f = theirs.lock().ok()?.take()?;
            Some(f())
        }) {
            Ok(handle) => Background::Thread(handle),
            Err(_) => {
                let f = slot.lock().ok().and_then(|mut f| f.take());
                Background::Done(f.map(|f| f()))
            }
        }
    }

    pub fn is_finished(&self) -> bool {
        match self {
            Background::Thread(h) => h.is_finished(),
            Background::Done(_) => true,
        }
    }

    /// The result; `None` if the work panicked.
    pub fn join(self) -> Option<T> {
        match self {
            Background::Thread(h) => h
                .join()
                .inspect_err(|_| log::warn!("a background task panicked; going on without it"))
                .ok()
                .flatten(),
            Background::Done(v) => v,
        }
    }
}
