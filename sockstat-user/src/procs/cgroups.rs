//! Cgroup v2 ids to paths. The kernel keeps a cgroup id with every full socket (the cgroup
//! of the task that made it, or of its listener), the programs read it, and sock_diag
//! reports it; on cgroup v2 that id is the inode number of the cgroup's directory, so one
//! walk of the cgroup2 mount names them all. Nothing maps ids to paths faster without
//! CAP_DAC_READ_SEARCH (`open_by_handle_at`), which the agents drop.
use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

/// At most one walk per this long for an id no walk found (one gone before it was seen).
/// An id above every id the last walk found is a cgroup made since, and is walked for at
/// once: the kernel hands out cgroup ids in increasing order.
const RESCAN: Duration = Duration::from_secs(1);
/// Cgroups remembered at most (a node with thousands of pods has a few tens of thousands).
const MAX_CGROUPS: usize = 1 << 16;

/// The paths (relative to the cgroup2 mount, starting with `/`) of the cgroups by id.
pub struct CgroupPaths {
    root: Option<PathBuf>,
    by_id: HashMap<u64, String>,
    scanned: Option<Instant>,
    /// The highest id the last walk found.
    newest: u64,
}

impl CgroupPaths {
    /// Paths under the host's cgroup2 mount; none where cgroup2 is not mounted.
    pub fn new() -> Self {
        Self::under(super::cgroup2_mount())
    }

    pub fn under(root: Option<PathBuf>) -> Self {
        CgroupPaths {
            root,
            by_id: HashMap::new(),
            scanned: None,
            newest: 0,
        }
    }

    /// The path of cgroup `id`, walking the mount again when it is not known yet.
    pub fn path_of(&mut self, id: u64) -> Option<&str> {
        if !self.by_id.contains_key(&id)
            && (id > self.newest || self.scanned.is_none_or(|at| at.elapsed() >= RESCAN))
        {
            self.scan();
        }
        self.by_id.get(&id).map(String::as_str)
    }

    /// Every cgroup there is now, by id and path.
    pub fn all(&mut self) -> impl Iterator<Item = (u64, &str)> {
        self.scan();
        self.by_id.iter().map(|(id, path)| (*id, path.as_str()))
    }

    fn scan(&mut self) {
        self.scanned = Some(Instant::now());
        let Some(root) = self.root.clone() else {
            return;
        };
        self.by_id.clear();
        let mut pending = vec![root.clone()];
        while let Some(dir) = pending.pop() {
            if self.by_id.len() >= MAX_CGROUPS {
                log::debug!("more than {MAX_CGROUPS} cgroups: the rest go unnamed");
                return;
            }
            let Ok(meta) = std::fs::symlink_metadata(&dir) else {
                continue;
            };
            self.newest = self.newest.max(meta.ino());
            self.by_id.insert(meta.ino(), relative(&root, &dir));
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            pending.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
    }
}

/// `/` for the root, `/a/b` below it.
fn relative(root: &Path, dir: &Path) -> String {
    let rest = dir.strip_prefix(root).unwrap_or(dir);
    format!("/{}", rest.to_string_lossy())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain directory tree stands in for the mount: ids are inode numbers either way.
    #[test]
    fn names_every_directory_by_its_inode() {
        let root = std::env::temp_dir().join(format!("sockstat-cgroups-{}", std::process::id()));
        let leaf = root.join("system.slice/docker-abc.scope");
        std::fs::create_dir_all(&leaf).unwrap();
        std::fs::write(root.join("cgroup.procs"), "").unwrap();
        let mut paths = CgroupPaths::under(Some(root.clone()));
        let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
        assert_eq!(
            paths.path_of(ino(&leaf)),
            Some("/system.slice/docker-abc.scope")
        );
        assert_eq!(paths.path_of(ino(&root)), Some("/"));
        assert_eq!(paths.all().count(), 3, "directories only");
        // Made after the walk: a newer id is walked for at once; an older unknown one only
        // once per RESCAN.
        let late = root.join("late");
        std::fs::create_dir(&late).unwrap();
        paths.newest = ino(&late) - 1;
        assert_eq!(paths.path_of(ino(&late)), Some("/late"));
        let later = root.join("later");
        std::fs::create_dir(&later).unwrap();
        paths.newest = u64::MAX;
        assert_eq!(paths.path_of(ino(&later)), None, "walked a second ago");
        paths.scanned = Some(Instant::now() - RESCAN);
        assert_eq!(paths.path_of(ino(&later)), Some("/later"));
        assert_eq!(CgroupPaths::under(None).path_of(1), None);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
