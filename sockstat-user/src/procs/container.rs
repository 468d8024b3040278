//! Which container a process runs in, from its cgroup v2 path (/proc/PID/cgroup): the
//! runtimes name their scopes after the container id.
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Container {
    /// docker, containerd, cri-o, or kubernetes (a pod, when only the pod is named).
    pub runtime: &'static str,
    /// The id, shortened to 12 characters as `docker ps` shows it.
    pub id: String,
    /// The whole id as the cgroup path has it (for matching a prefix someone typed).
    #[serde(skip)]
    pub full_id: String,
}

impl fmt::Display for Container {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.runtime, self.id)
    }
}

pub fn of_pid(pid: u32) -> Option<Container> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines()
        .filter_map(|l| l.splitn(3, ':').nth(2))
        .find_map(from_cgroup_path)
}

/// The lowest pid running in the container whose id starts with `prefix` (at least 6 hex
/// digits, as `docker ps` ids are typed), found through the cgroup paths: works for every
/// runtime, with or without an engine API to ask.
pub fn pid_with_id(prefix: &str) -> Option<u32> {
    if prefix.len() < 6 || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let prefix = prefix.to_ascii_lowercase();
    super::pids()
        .into_iter()
        .find(|&pid| of_pid(pid).is_some_and(|c| c.full_id.starts_with(&prefix)))
}

fn is_id(s: &str) -> bool {
    s.len() >= 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn short(id: &str) -> String {
    id.chars().take(12).collect()
}

/// Parses one cgroup path, e.g. `/system.slice/docker-<id>.scope`,
/// `/kubepods.slice/kubepods-pod<uid>.slice/cri-containerd-<id>.scope`, `/docker/<id>`.
pub fn from_cgroup_path(path: &str) -> Option<Container> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    for seg in segments.iter().rev() {
        let seg = seg.strip_suffix(".scope").unwrap_or(seg);
        for (prefix, runtime) in [
            ("docker-", "docker"),
            ("cri-containerd-", "containerd"),
            ("crio-", "cri-o"),
            ("containerd-", "containerd"),
            ("libpod-", "podman"),
        ] {
            if let Some(id) = seg.strip_prefix(prefix)
                && is_id(id)
            {
                return Some(Container {
                    runtime,
                    id: short(id),
                    full_id: id.to_string(),
                });
            }
        }
    }
    // cgroupfs layouts: /docker/<id>, /kubepods/<qos>/pod<uid>/<id>.
    if let Some(pos) = segments.iter().position(|s| *s == "docker")
        && let Some(id) = segments.get(pos + 1).filter(|s| is_id(s))
    {
        return Some(Container {
            runtime: "docker",
            id: short(id),
            full_id: id.to_string(),
        });
    }
    if segments.iter().any(|s| s.starts_with("kubepods")) {
        if let Some(id) = segments.last().filter(|s| is_id(s)) {
            return Some(Container {
                runtime: "kubernetes",
                id: short(id),
                full_id: id.to_string(),
            });
        }
        let pod = segments.iter().rev().find_map(|s| {
            let s = s.strip_suffix(".slice").unwrap_or(s);
            let uid = s
                .rsplit("-pod")
                .next()
                .filter(|_| s.contains("-pod"))
                .or_else(|| s.strip_prefix("pod"))?;
            Some(uid.replace('_', "-"))
        })?;
        return Some(Container {
            runtime: "kubernetes",
            id: format!("pod-{}", short(&pod)),
            full_id: format!("pod-{pod}"),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f2a9c1b7d4e5f60718293a4b5c6d7e8f90123456789abcdef0123456789abcd";

    #[test]
    fn recognises_the_common_runtimes() {
        let cases = [
            (
                format!("/system.slice/docker-{ID}.scope"),
                "docker:3f2a9c1b7d4e",
            ),
            (format!("/docker/{ID}"), "docker:3f2a9c1b7d4e"),
            (
                format!(
                    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234_5678.slice/cri-containerd-{ID}.scope"
                ),
                "containerd:3f2a9c1b7d4e",
            ),
            (
                format!("/machine.slice/crio-{ID}.scope"),
                "cri-o:3f2a9c1b7d4e",
            ),
            (
                format!("/kubepods/besteffort/pod0a1b2c3d-0000/{ID}"),
                "kubernetes:3f2a9c1b7d4e",
            ),
            (
                "/kubepods.slice/kubepods-pod0a1b2c3d_4e5f.slice".to_string(),
                "kubernetes:pod-0a1b2c3d-4e5",
            ),
        ];
        for (path, want) in cases {
            assert_eq!(
                from_cgroup_path(&path).map(|c| c.to_string()).as_deref(),
                Some(want),
                "{path}"
            );
        }
    }

    #[test]
    fn ordinary_services_are_not_containers() {
        for path in [
            "/",
            "/user.slice/user-0.slice/session-1.scope",
            "/system.slice/sshd.service",
        ] {
            assert_eq!(from_cgroup_path(path), None, "{path}");
        }
    }
}
