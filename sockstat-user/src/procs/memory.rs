//! How much memory this process's memory cgroup still allows, so an agent that would be
//! OOM-killed without a word (exit 137) says so up front instead. cgroup v2 (`memory.max`,
//! `memory.current`) and v1 (`memory.limit_in_bytes`, `memory.usage_in_bytes`), every level
//! from ours up to the root, since a parent's limit binds its children too.
use std::path::{Path, PathBuf};

/// The tightest limit on this process's memory cgroup path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Headroom {
    /// The cgroup whose limit binds, as in /proc/self/cgroup.
    pub cgroup: String,
    pub limit: u64,
    pub used: u64,
}

impl Headroom {
    pub fn free(&self) -> u64 {
        self.limit.saturating_sub(self.used)
    }
}

/// Limits at or above this are "no limit" (v1 reports 2^63 rounded to a page).
const UNLIMITED: u64 = 1 << 60;

/// The binding memory limit, or `None` when nothing limits us (or no memory controller is
/// mounted where we can read it).
pub fn headroom() -> Option<Headroom> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    let mut best: Option<Headroom> = None;
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let (root, limit_file, usage_file) = if id == "0" && controllers.is_empty() {
            let Some(root) = mount_of(&mounts, |fstype, _| fstype == "cgroup2") else {
                continue;
            };
            (root, "memory.max", "memory.current")
        } else if controllers.split(',').any(|c| c == "memory") {
            let Some(root) = mount_of(&mounts, |fstype, opts| {
                fstype == "cgroup" && opts.split(',').any(|o| o == "memory")
            }) else {
                continue;
            };
            (root, "memory.limit_in_bytes", "memory.usage_in_bytes")
        } else {
            continue;
        };
        for level in levels(path) {
            let dir = root.join(level.trim_start_matches('/'));
            let (Some(limit), Some(used)) = (
                read_u64(&dir.join(limit_file)),
                read_u64(&dir.join(usage_file)),
            ) else {
                continue;
            };
            if limit >= UNLIMITED {
                continue;
            }
            let here = Headroom {
                cgroup: level.to_string(),
                limit,
                used,
            };
            if best.as_ref().is_none_or(|b| here.free() < b.free()) {
                best = Some(here);
            }
        }
    }
    best
}

/// `/a/b/c`, `/a/b`, `/a`, `/`.
fn levels(path: &str) -> Vec<&str> {
    let mut out = vec![path];
    let mut p = path;
    while let Some((parent, _)) = p.rsplit_once('/') {
        p = if parent.is_empty() { "/" } else { parent };
        if out.last() != Some(&p) {
            out.push(p);
        }
        if p == "/" {
            break;
        }
    }
    out
}

fn mount_of(mounts: &str, wanted: impl Fn(&str, &str) -> bool) -> Option<PathBuf> {
    mounts.lines().find_map(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        (w.len() >= 4 && wanted(w[2], w[3])).then(|| PathBuf::from(w[1]))
    })
}

/// A number from a cgroup file; "max" (v2's no limit) reads as `None`.
fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_level_up_to_the_root() {
        assert_eq!(levels("/a/b/c"), ["/a/b/c", "/a/b", "/a", "/"]);
        assert_eq!(levels("/"), ["/"]);
        assert_eq!(levels("/x"), ["/x", "/"]);
    }
}
