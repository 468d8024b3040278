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
