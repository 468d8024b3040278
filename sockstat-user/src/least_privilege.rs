//! The capabilities each command needs, and giving up the rest once the kernel programs are
//! loaded (`trace`, `top`, `serve`), as another user with `--user`. `--help` says the same
//! in words (`cli::help::CAPABILITIES`).
//!
//! Capabilities belong to threads. The agents drop them on the main thread right after
//! loading, before they start any other thread: the event loop is single-threaded, and the
//! blocking dumps and the key reader start later and inherit what is left. The uid and gids
//! change for every thread at once (glibc's set*id calls do that).
use std::io;

use rustix::thread::{CapabilityFlags, CapabilitySets};

/// What loading the programs takes: tracing programs (CAP_BPF with CAP_PERFMON), the
/// timewait timer's callback address from /proc/kallsyms (CAP_SYSLOG: the kernel shows it
/// as 0 otherwise), and the owners of the baseline's sockets (below).
pub const LOAD: CapabilityFlags = CapabilityFlags::BPF
    .union(CapabilityFlags::PERFMON)
    .union(CapabilityFlags::SYSLOG)
    .union(OWNERS);

/// A socket's owner from /proc/PID/fd: listing another user's fd directory takes
/// CAP_DAC_READ_SEARCH, and reading its links CAP_SYS_PTRACE.
pub const OWNERS: CapabilityFlags =
    CapabilityFlags::DAC_READ_SEARCH.union(CapabilityFlags::SYS_PTRACE);

/// Entering another network namespace (`-N`, `--all-netns`), at every dump.
pub const OTHER_NETNS: CapabilityFlags = CapabilityFlags::SYS_ADMIN;

#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error("--user {0}: no such user (see getent passwd)")]
    NoSuchUser(String),
    #[error("--user {name}: {step}: {source} (run as root to switch users)")]
    Switch {
        name: String,
        step: &'static str,
        source: io::Error,
    },
    #[error("giving up capabilities ({step}): {source}")]
    Capabilities {
        step: &'static str,
        source: io::Error,
    },
}

/// A user to run as, looked up before anything is loaded so a typo fails first.
///
/// From /etc/passwd and /etc/group, as nsswitch's `files` reads them: the binary is static,
/// and glibc's NSS cannot load its modules into it (getpwnam_r faults there). Users only a
/// directory service knows (LDAP, SSSD) can be given by number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    name: String,
    uid: u32,
    gid: u32,
    /// Supplementary groups (e.g. docker, for its socket).
    groups: Vec<u32>,
}

impl User {
    pub fn lookup(name: &str) -> Result<User, PrivilegeError> {
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
        Self::from_files(name, &passwd, &group)
    }

    fn from_files(name: &str, passwd: &str, group: &str) -> Result<User, PrivilegeError> {
        let by_number = name.parse::<u32>().ok();
        let entry = passwd.lines().find_map(|line| {
            let mut f = line.split(':');
            let (login, _, uid, gid) = (f.next()?, f.next()?, f.next()?, f.next()?);
            let (uid, gid) = (uid.parse::<u32>().ok()?, gid.parse::<u32>().ok()?);
            (login == name || by_number == Some(uid)).then(|| (login.to_string(), uid, gid))
        });
        let (login, uid, gid) = match (entry, by_number) {
            (Some(e), _) => e,
            (None, Some(n)) => (name.to_string(), n, n),
            (None, None) => return Err(PrivilegeError::NoSuchUser(name.to_string())),
        };
        let mut groups: Vec<u32> = group
            .lines()
            .filter_map(|line| {
                let mut f = line.split(':');
                let (_, _, gid, members) = (f.next()?, f.next()?, f.next()?, f.next()?);
                members
                    .split(',')
                    .any(|m| m == login)
                    .then(|| gid.parse::<u32>().ok())
                    .flatten()
            })
            .collect();
        groups.push(gid);
        groups.sort_unstable();
        groups.dedup();
        Ok(User {
            name: login,
            uid,
            gid,
            groups,
        })
    }
}

/// What the agent still needs once its programs are loaded.
#[derive(Clone, Copy, Debug)]
pub struct Needs {
    /// Its dumps enter other network namespaces.
    pub other_netns: bool,
}

/// What was kept, for the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kept {
    pub capabilities: CapabilityFlags,
    pub uid: u32,
}

impl std::fmt::Display for Kept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "uid {}, capabilities {}",
            self.uid,
            names(self.capabilities)
        )
    }
}

/// `cap_bpf,cap_perfmon`, as capsh and setpriv spell them.
pub fn names(caps: CapabilityFlags) -> String {
    let names: Vec<String> = caps
        .iter_names()
        .map(|(name, _)| format!("cap_{}", name.to_ascii_lowercase()))
        .collect();
    names.join(",")
}

/// Gives up every capability the running agent no longer needs (and the user, with
/// `user`). `maps_readable` reads the agent's maps: where the kernel refuses that without
/// CAP_BPF (bpf(2) checks it on every command while kernel.unprivileged_bpf_disabled is
/// set, on 6.1), CAP_BPF is kept.
pub fn drop_after_load(
    needs: Needs,
    user: Option<&User>,
    maps_readable: impl Fn() -> bool,
) -> Result<Kept, PrivilegeError> {
    let mut keep = OWNERS;
    if needs.other_netns {
        keep |= OTHER_NETNS;
    }
    let cap_err = |step| move |source| PrivilegeError::Capabilities { step, source };
    let set = |effective: CapabilityFlags, permitted: CapabilityFlags| {
        rustix::thread::set_capabilities(
            None,
            CapabilitySets {
                effective,
                permitted,
                inheritable: CapabilityFlags::empty(),
            },
        )
        .map_err(io::Error::from)
        .map_err(cap_err("capset"))
    };
    let current = rustix::thread::capabilities(None)
        .map_err(io::Error::from)
        .map_err(cap_err("capget"))?;
    let all = current.permitted;
    // Only what this process has can be kept.
    keep &= all;
    // The maps, read with what is kept: CAP_BPF stays only if that fails.
    if all.contains(CapabilityFlags::BPF) {
        set(keep, all)?;
        let readable = maps_readable();
        set(all, all)?;
        if !readable {
            keep |= CapabilityFlags::BPF;
        }
    }
    // Nothing outside the set can come back, not even through a program run later. Only
    // with CAP_SETPCAP (root has it; a process given just the documented set does not, and
    // no_new_privs below closes that door for it).
    if current.effective.contains(CapabilityFlags::SETPCAP) {
        drop_bounding_set(keep).map_err(cap_err("the bounding set"))?;
    }
    if let Some(user) = user {
        switch_user(user)?;
    }
    set(keep, keep)?;
    rustix::thread::clear_ambient_capability_set()
        .map_err(io::Error::from)
        .map_err(cap_err("the ambient set"))?;
    rustix::thread::set_no_new_privs(true)
        .map_err(io::Error::from)
        .map_err(cap_err("no_new_privs"))?;
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    Ok(Kept {
        capabilities: keep,
        uid,
    })
}

/// Drops every capability outside `keep` from the bounding set (PR_CAPBSET_DROP, up to the
/// kernel's last one).
fn drop_bounding_set(keep: CapabilityFlags) -> io::Result<()> {
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(40);
    for cap in 0..=last.min(63) {
        if keep.bits() & (1u64 << cap) != 0 {
            continue;
        }
        // SAFETY: PR_CAPBSET_DROP takes a capability number and no pointers.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) } != 0 {
            let e = io::Error::last_os_error();
            // EINVAL: a number this kernel does not have.
            if e.raw_os_error() != Some(libc::EINVAL) {
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Becomes `user` (its groups too), keeping the permitted capabilities across the switch.
fn switch_user(user: &User) -> Result<(), PrivilegeError> {
    let err = |step| {
        let name = user.name.clone();
        move |source| PrivilegeError::Switch { name, step, source }
    };
    let check = |rc: libc::c_int, step| {
        if rc == 0 {
            Ok(())
        } else {
            Err(err(step)(io::Error::last_os_error()))
        }
    };
    rustix::thread::set_keep_capabilities(true)
        .map_err(io::Error::from)
        .map_err(err("PR_SET_KEEPCAPS"))?;
    // glibc applies these to every thread of the process.
    check(
        // SAFETY: the pointer and length describe `groups`.
        unsafe { libc::setgroups(user.groups.len(), user.groups.as_ptr()) },
        "setgroups",
    )?;
    check(
        // SAFETY: plain ids.
        unsafe { libc::setresgid(user.gid, user.gid, user.gid) },
        "setresgid",
    )?;
    check(
        // SAFETY: plain ids.
        unsafe { libc::setresuid(user.uid, user.uid, user.uid) },
        "setresuid",
    )?;
    rustix::thread::set_keep_capabilities(false)
        .map_err(io::Error::from)
        .map_err(err("PR_SET_KEEPCAPS"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_names_capabilities_as_capsh_does() {
        let kept = Kept {
            capabilities: OWNERS | CapabilityFlags::BPF,
            uid: 65534,
        };
        assert_eq!(
            kept.to_string(),
            "uid 65534, capabilities cap_dac_read_search,cap_sys_ptrace,cap_bpf"
        );
    }

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
                          nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
                          sockstat:x:998:997::/var/lib/sockstat:/usr/sbin/nologin\n";
    const GROUP: &str = "root:x:0:\ndocker:x:999:sockstat,alice\nsockstat:x:997:\n";

    #[test]
    fn users_by_name_or_number_with_their_groups() {
        let user = |name| User::from_files(name, PASSWD, GROUP);
        let sockstat = User {
            name: "sockstat".into(),
            uid: 998,
            gid: 997,
            groups: vec![997, 999],
        };
        assert_eq!(user("sockstat").unwrap(), sockstat);
        assert_eq!(user("998").unwrap(), sockstat);
        assert_eq!(user("nobody").unwrap().groups, [65534]);
        // A number no file knows: that uid, and a group of the same number.
        assert_eq!(user("4242").unwrap().groups, [4242]);
        assert_eq!(
            user("no-such-user").unwrap_err().to_string(),
            "--user no-such-user: no such user (see getent passwd)"
        );
    }
}
