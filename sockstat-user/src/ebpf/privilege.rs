//! Does this process have what loading BPF tracing programs needs?
use std::fs;

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// True when the effective capability set allows loading and attaching tracing programs:
/// CAP_SYS_ADMIN, or CAP_BPF together with CAP_PERFMON.
pub fn can_trace() -> bool {
    let Ok(status) = fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(caps_allow_tracing)
}

pub fn caps_allow_tracing(eff: u64) -> bool {
    let has = |cap: u32| eff & (1u64 << cap) != 0;
    has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_sets() {
        assert!(caps_allow_tracing(u64::MAX));
        assert!(caps_allow_tracing(1 << CAP_SYS_ADMIN));
        assert!(caps_allow_tracing((1 << CAP_BPF) | (1 << CAP_PERFMON)));
        assert!(!caps_allow_tracing(1 << CAP_BPF));
        assert!(!caps_allow_tracing(0));
    }
}

/// File descriptors the agents hold at once: programs, maps, links, BTF, the ring's epoll,
/// the event loop and netlink sockets (about 40 measured), with room to spare.
pub const FDS_NEEDED: u64 = 64;

/// Not enough file descriptors to load the kernel programs, even at the hard limit.
#[derive(Debug, thiserror::Error)]
#[error(
    "not enough file descriptors: about {needed} must be free, but {open} of the {hard} allowed (ulimit -Hn) are in use: raise the limit (ulimit -n)"
)]
pub struct TooFewFiles {
    pub needed: u64,
    pub open: u64,
    pub hard: u64,
}

/// Makes sure [`FDS_NEEDED`] descriptors are free, raising the soft limit towards the hard
/// one if that is what it takes, so running out never shows up later as a confusing
/// "kernel refused" or an event loop that cannot start.
pub fn ensure_fds() -> Result<(), TooFewFiles> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Ok(());
    }
    // The directory handle read_dir holds is counted too: one spare.
    let open = fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
    let want = open + FDS_NEEDED;
    if lim.rlim_cur >= want {
        return Ok(());
    }
    if lim.rlim_max < want {
        return Err(TooFewFiles {
            needed: FDS_NEEDED,
            open,
            hard: lim.rlim_max,
        });
    }
    let raised = libc::rlimit {
        rlim_cur: want.max(1024).min(lim.rlim_max),
        rlim_max: lim.rlim_max,
    };
    // SAFETY: setrlimit with a soft limit at or below the hard one.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        return Err(TooFewFiles {
            needed: FDS_NEEDED,
            open,
            hard: lim.rlim_cur,
        });
    }
    log::debug!(
        "raised the soft file-descriptor limit to {}",
        raised.rlim_cur
    );
    Ok(())
}
