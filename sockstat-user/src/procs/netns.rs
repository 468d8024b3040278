//! Running work inside another network namespace. `setns` changes only the calling thread,
//! so the work runs on a dedicated thread and the rest of the process stays where it was.
use std::{fs::File, io, os::fd::AsRawFd, path::PathBuf, thread};

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("no network namespace named \"{0}\" (see `ip netns list`)")]
    NotFound(String),
    #[error("cannot open network namespace \"{name}\": {err}")]
    Open { name: String, err: io::Error },
    #[error("cannot enter network namespace \"{name}\": {err}")]
    Enter { name: String, err: io::Error },
    #[error("the namespace worker thread failed")]
    Thread,
}

/// `/run/netns/NAME`, as `ip netns add` creates it.
pub fn named_path(name: &str) -> PathBuf {
    PathBuf::from("/run/netns").join(name)
}

pub fn open_named(name: &str) -> Result<File, NetnsError> {
    if name.contains('/') || name.is_empty() || name == "." || name == ".." {
        return Err(NetnsError::NotFound(name.to_string()));
    }
    File::open(named_path(name)).map_err(|err| match err.kind() {
        io::ErrorKind::NotFound => NetnsError::NotFound(name.to_string()),
        _ => NetnsError::Open {
            name: name.to_string(),
            err,
        },
    })
}

/// Runs `f` on a thread that has joined the namespace `ns` (an open nsfs file).
pub fn run_in<T: Send>(
    name: &str,
    ns: &File,
    f: impl FnOnce() -> T + Send,
) -> Result<T, NetnsError> {
    thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: setns on a valid fd; affects only this thread.
                if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(NetnsError::Enter {
                        name: name.to_string(),
                        err: io::Error::last_os_error(),
                    });
                }
                Ok(f())
            })
            .join()
            .map_err(|_| NetnsError::Thread)?
    })
}

/// One network namespace of the host, and how to name it.
#[derive(Debug)]
pub struct Namespace {
    /// The nsfs inode (what `/proc/PID/ns/net` links to and the kernel programs report).
    pub inode: u32,
    /// `ip netns` name, else "init" for the init process's namespace, else "pid N".
    pub name: String,
    /// A process in it (the lowest pid), if any.
    pub pid: Option<u32>,
    /// The container that process runs in, when its cgroup path shows one.
    pub container: Option<super::container::Container>,
    pub file: File,
}

impl Namespace {
    /// Runs `f` inside this namespace, on a worker thread.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, NetnsError> {
        run_in(&self.name, &self.file, f)
    }

    /// `name`, plus the container when known: "pid 812 docker:3f2a9c1b7d4e".
    pub fn label(&self) -> String {
        match &self.container {
            Some(c) => format!("{} {}", self.name, c),
            None => self.name.clone(),
        }
    }
}

/// Every network namespace on the host: from /run/netns (named) and /proc/*/ns/net (in use
/// by a process), each once (deduplicated by inode), this process's own first.
pub fn all() -> Vec<Namespace> {
    use std::{collections::BTreeMap, os::unix::fs::MetadataExt};
    let inode_of = |path: &std::path::Path| std::fs::metadata(path).ok().map(|m| m.ino() as u32);
    let own = inode_of(std::path::Path::new("/proc/self/ns/net"));
    // inode -> (name, pid, path to open)
    let mut found: BTreeMap<u32, (Option<String>, Option<u32>, PathBuf)> = BTreeMap::new();
    if let Ok(dir) = std::fs::read_dir("/run/netns") {
        for e in dir.flatten() {
            let path = e.path();
            if let Some(ino) = inode_of(&path) {
                let name = e.file_name().to_string_lossy().into_owned();
                found.entry(ino).or_insert((Some(name), None, path));
            }
        }
    }
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    pids.sort_unstable();
    for pid in pids {
        let path = PathBuf::from(format!("/proc/{pid}/ns/net"));
        let Some(ino) = inode_of(&path) else { continue };
        let slot = found.entry(ino).or_insert((None, None, path.clone()));
        if slot.1.is_none() {
            slot.1 = Some(pid);
        }
    }
    let mut out: Vec<Namespace> = found
        .into_iter()
        .filter_map(|(inode, (named, pid, path))| {
            let file = File::open(&path).ok()?;
            let name = named.unwrap_or_else(|| match pid {
                Some(1) => "init".to_string(),
                Some(p) => format!("pid {p}"),
                None => format!("netns {inode}"),
            });
            let container = pid.and_then(super::container::of_pid);
            Some(Namespace {
                inode,
                name,
                pid,
                container,
                file,
            })
        })
        .collect();
    out.sort_by_key(|n| (Some(n.inode) != own, n.inode));
    out
}
