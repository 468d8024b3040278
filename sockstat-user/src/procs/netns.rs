//! Running work inside another network namespace. `setns` changes only the calling thread,
//! so the work runs on a dedicated thread and the rest of the process stays where it was.
use std::{fs::File, io, os::fd::AsRawFd, path::PathBuf, thread};

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error(
        "no network namespace \"{0}\": give an `ip netns list` name, a path such as /proc/PID/ns/net, a pid, an inode from `lsns -t net`, or a running container's name or id"
    )]
    NotFound(String),
    #[error("{0}")]
    Container(#[from] super::docker::EngineError),
    #[error("\"{0}\" is not a network namespace")]
    NotNetns(String),
    #[error("cannot open network namespace \"{name}\": {err}")]
    Open { name: String, err: io::Error },
    #[error("cannot enter network namespace \"{name}\": {err}")]
    Enter { name: String, err: io::Error },
    #[error("the namespace worker thread failed")]
    Thread,
    #[error(
        "cannot start a thread to enter a namespace: {0} (a memory or thread limit is too low)"
    )]
    Spawn(String),
}

/// `/run/netns/NAME`, as `ip netns add` creates it.
pub fn named_path(name: &str) -> PathBuf {
    PathBuf::from("/run/netns").join(name)
}

/// The largest pid Linux can hand out (`PID_MAX_LIMIT`); nsfs inodes are far above it, so a
/// number names a process when at most this, and an inode when above.
const PID_MAX_LIMIT: u64 = 4_194_304;

/// A namespace the user named, opened.
#[derive(Debug)]
pub struct Opened {
    /// What the user typed, for messages.
    pub name: String,
    pub inode: u32,
    pub file: File,
}

/// The one meaning of `-N NS` in every command: an `ip netns` name, a path to an nsfs file
/// (`/run/netns/X`, `/proc/PID/ns/net`), a pid (that process's namespace), an nsfs inode as
/// `lsns -t net` shows it, or a running container's name or id (asked of the Docker or
/// Podman engine, or an id found in the processes' cgroup paths).
pub fn open(spec: &str) -> Result<Opened, NetnsError> {
    use std::os::unix::fs::MetadataExt;
    let not_found = || NetnsError::NotFound(spec.to_string());
    let path = if spec.contains('/') {
        PathBuf::from(spec)
    } else if spec.is_empty() || spec == "." || spec == ".." {
        return Err(not_found());
    } else if named_path(spec).exists() {
        named_path(spec)
    } else {
        match spec.parse::<u64>() {
            Ok(pid) if pid <= PID_MAX_LIMIT => PathBuf::from(format!("/proc/{pid}/ns/net")),
            Ok(inode) => {
                let found = all()
                    .namespaces
                    .into_iter()
                    .find(|n| u64::from(n.inode) == inode);
                return found
                    .map(|n| Opened {
                        name: spec.to_string(),
                        inode: n.inode,
                        file: n.file,
                    })
                    .ok_or_else(not_found);
            }
            Err(_) => {
                let pid = match super::docker::pid_of(spec)? {
                    Some(pid) => pid,
                    None => super::container::pid_with_id(spec).ok_or_else(not_found)?,
                };
                PathBuf::from(format!("/proc/{pid}/ns/net"))
            }
        }
    };
    let file = File::open(&path).map_err(|err| match err.kind() {
        io::ErrorKind::NotFound => not_found(),
        _ => NetnsError::Open {
            name: spec.to_string(),
            err,
        },
    })?;
    if !is_netns(&file) {
        return Err(NetnsError::NotNetns(spec.to_string()));
    }
    let inode = file
        .metadata()
        .map_err(|err| NetnsError::Open {
            name: spec.to_string(),
            err,
        })?
        .ino() as u32;
    Ok(Opened {
        name: spec.to_string(),
        inode,
        file,
    })
}

/// Runs `f` on a thread that has joined the namespace `ns` (an open nsfs file).
pub fn run_in<T: Send>(
    name: &str,
    ns: &File,
    f: impl FnOnce() -> T + Send,
) -> Result<T, NetnsError> {
    thread::scope(|scope| {
        thread::Builder::new()
            .spawn_scoped(scope, || {
                // SAFETY: setns on a valid fd; affects only this thread.
                if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(NetnsError::Enter {
                        name: name.to_string(),
                        err: io::Error::last_os_error(),
                    });
                }
                Ok(f())
            })
            .map_err(|e| NetnsError::Spawn(e.to_string()))?
            .join()
            .map_err(|_| NetnsError::Thread)?
    })
}

/// One network namespace of the host, and how to name it.
#[derive(Debug)]
pub struct Namespace {
    /// The nsfs inode (what `/proc/PID/ns/net` links to and the kernel programs report).
    pub inode: u32,
    /// Its one name in every command: see [`name_of`].
    pub name: String,
    /// The container that process runs in, when its cgroup path shows one.
    pub container: Option<super::container::Container>,
    pub file: File,
}

impl Namespace {
    /// Runs `f` inside this namespace, on a worker thread.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, NetnsError> {
        run_in(&self.name, &self.file, f)
    }

    /// `name`, plus the container when known: "pid:812/docker:3f2a9c1b7d4e" (no spaces,
    /// so it is one column in a listing and the same string in every command).
    pub fn label(&self) -> String {
        match &self.container {
            Some(c) => format!("{}/{}", self.name, c),
            None => self.name.clone(),
        }
    }
}

/// A namespace `--all-netns` could not look into, and why. Every command reports these
/// (stderr, top's header, serve's metrics) rather than hide their sockets without a word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub name: String,
    pub reason: String,
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.name, self.reason)
    }
}

/// Says on stderr which namespaces were left out (each once per process).
pub fn warn_skipped(skipped: &[Skipped]) {
    use std::sync::Mutex;
    static SAID: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut said = SAID.lock().unwrap_or_else(|e| e.into_inner());
    for s in skipped {
        if !said.contains(&s.name) {
            log::warn!("skipped network namespace {s}; its sockets are not shown");
            said.push(s.name.clone());
        }
    }
}

/// The host's namespaces: those that can be entered, and those that cannot.
#[derive(Debug, Default)]
pub struct Scan {
    pub namespaces: Vec<Namespace>,
    pub skipped: Vec<Skipped>,
}

impl Scan {
    /// Runs `f` inside each namespace. Returns the results, and every namespace left out:
    /// those skipped while scanning and those that could not be entered.
    #[allow(clippy::type_complexity)]
    pub fn run_each<T: Send>(
        &self,
        f: impl Fn(&Namespace) -> T + Sync,
    ) -> (Vec<(&Namespace, T)>, Vec<Skipped>) {
        let mut out = Vec::new();
        let mut skipped = self.skipped.clone();
        for ns in &self.namespaces {
            match ns.run(|| f(ns)) {
                Ok(v) => out.push((ns, v)),
                Err(e) => skipped.push(Skipped {
                    name: ns.name.clone(),
                    reason: e.to_string(),
                }),
            }
        }
        (out, skipped)
    }
}

/// The name for the host's namespace (init_net) in every command.
pub const HOST: &str = "host";

/// A namespace's one name, the same in every command and without spaces: its `ip netns`
/// name, else `host` for the host's (init_net), else `pid:N` for the lowest pid in it,
/// else `netns:INODE`.
fn name_of(inode: u32, named: Option<&str>, lowest_pid: Option<u32>, host: Option<u32>) -> String {
    match (named, lowest_pid) {
        (Some(name), _) => name.to_string(),
        _ if Some(inode) == host => HOST.to_string(),
        (None, Some(pid)) => format!("pid:{pid}"),
        (None, None) => format!("netns:{inode}"),
    }
}

/// The host's network namespace: pid 1's; where that link is hidden (a sandbox), that of
/// kthreadd (pid 2), which as a kernel thread always lives in init_net.
fn host_inode() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let inode = |pid: u32| {
        std::fs::metadata(format!("/proc/{pid}/ns/net"))
            .ok()
            .map(|m| m.ino() as u32)
    };
    inode(1).or_else(|| {
        let comm = std::fs::read_to_string("/proc/2/comm").ok()?;
        (comm.trim() == "kthreadd").then(|| inode(2)).flatten()
    })
}

/// The name of the namespace with `inode`, as `--all-netns` would call it (without
/// scanning every process unless it has to).
pub fn name_for(inode: u32) -> String {
    use std::os::unix::fs::MetadataExt;
    if let Ok(dir) = std::fs::read_dir("/run/netns") {
        for e in dir.flatten() {
            if std::fs::metadata(e.path()).is_ok_and(|m| m.ino() as u32 == inode) {
                return e.file_name().to_string_lossy().into_owned();
            }
        }
    }
    let host = host_inode();
    if Some(inode) == host {
        return HOST.to_string();
    }
    let lowest = super::pids().into_iter().find(|pid| {
        std::fs::metadata(format!("/proc/{pid}/ns/net")).is_ok_and(|m| m.ino() as u32 == inode)
    });
    name_of(inode, None, lowest, host)
}

/// The container whose network namespace `inode` is: the first process in it (lowest pid)
/// whose cgroup names one. None for the host's namespace, whose processes share it with
/// containers run with the host's network.
pub fn container_of(inode: u32) -> Option<super::container::Container> {
    use std::os::unix::fs::MetadataExt;
    if Some(inode) == host_inode() {
        return None;
    }
    super::pids().into_iter().find_map(|pid| {
        std::fs::metadata(format!("/proc/{pid}/ns/net"))
            .is_ok_and(|m| m.ino() as u32 == inode)
            .then(|| super::container::of_pid(pid))
            .flatten()
    })
}

/// Whether `file` is a network namespace (a stale /run/netns entry can be a plain file).
fn is_netns(file: &File) -> bool {
    const NS_GET_NSTYPE: libc::c_ulong = 0xb703;
    // SAFETY: NS_GET_NSTYPE takes no argument; on a non-nsfs fd it fails with ENOTTY.
    let kind = unsafe { libc::ioctl(file.as_raw_fd(), NS_GET_NSTYPE as _) };
    kind == libc::CLONE_NEWNET
}

/// Every network namespace on the host: from /run/netns (named) and /proc/*/ns/net (in use
/// by a process), each once (deduplicated by inode), this process's own first. A named one
/// that cannot be opened, or is no namespace, is skipped with the reason; a process that
/// exits meanwhile is no loss (its namespace was only in use by it).
pub fn all() -> Scan {
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
    for pid in super::pids() {
        let path = PathBuf::from(format!("/proc/{pid}/ns/net"));
        let Some(ino) = inode_of(&path) else { continue };
        let slot = found.entry(ino).or_insert((None, None, path.clone()));
        if slot.1.is_none() {
            slot.1 = Some(pid);
        }
    }
    let mut scan = Scan::default();
    let host = host_inode();
    for (inode, (named, pid, path)) in found {
        let name = name_of(inode, named.as_deref(), pid, host);
        let file = match File::open(&path) {
            Ok(f) if is_netns(&f) => f,
            Ok(_) => {
                scan.skipped.push(Skipped {
                    name,
                    reason: format!("{} is not a network namespace (stale?)", path.display()),
                });
                continue;
            }
            Err(e) if named.is_none() && e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                scan.skipped.push(Skipped {
                    name,
                    reason: format!("cannot open {}: {e}", path.display()),
                });
                continue;
            }
        };
        let container = pid.and_then(super::container::of_pid);
        scan.namespaces.push(Namespace {
            inode,
            name,
            container,
            file,
        });
    }
    scan.namespaces
        .sort_by_key(|n| (Some(n.inode) != own, n.inode));
    scan
}
