//! What operators call a container: its name, image, and for Kubernetes its pod and
//! namespace. From the container id the cgroup path carries (`container.rs`):
//! - Docker and Podman: the Engine API's inspect (name, image, and the CRI labels
//!   `io.kubernetes.pod.name`, `io.kubernetes.pod.namespace`, `io.kubernetes.container.name`
//!   that the kubelet puts on the containers it starts through dockershim or cri-dockerd);
//! - any runtime the kubelet drives (containerd, CRI-O), with no API to ask: the kubelet's
//!   on-disk log layout, `/var/log/containers/<pod>_<namespace>_<container>-<id>.log` and
//!   `/var/log/pods/<namespace>_<pod>_<uid>/` (`$SOCKSTAT_KUBELET_LOGS` moves the root,
//!   e.g. to /host/var/log where a DaemonSet mounts the node's).
//!
//! Answers are cached, at most `CAPACITY` containers (the oldest go first); a container no
//! source knows is asked again after `RETRY`, since a new one may not be registered yet.
use std::{
    collections::{HashMap, VecDeque},
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use super::container::Container;

/// Names of one container. Every field is optional: a source may know only some.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Workload {
    /// The container's name (Kubernetes: the container's name in its pod).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// The pod's Kubernetes namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

impl Workload {
    /// One word for a column: `namespace/pod/container` for a pod's container, the
    /// container's name otherwise.
    pub fn label(&self) -> Option<String> {
        match (&self.namespace, &self.pod, &self.container) {
            (Some(ns), Some(pod), Some(c)) => Some(format!("{ns}/{pod}/{c}")),
            (Some(ns), Some(pod), None) => Some(format!("{ns}/{pod}")),
            (_, _, Some(c)) => Some(c.clone()),
            _ => None,
        }
    }

    /// What top groups by: `namespace/pod` for a pod's container, else the container's name.
    pub fn group(&self) -> Option<String> {
        match (&self.namespace, &self.pod) {
            (Some(ns), Some(pod)) => Some(format!("{ns}/{pod}")),
            (None, Some(pod)) => Some(pod.clone()),
            _ => self.container.clone(),
        }
    }
}

/// Containers whose names are kept.
pub const CAPACITY: usize = 4096;
/// How long "nobody knows this container" is believed.
const RETRY: Duration = Duration::from_secs(10);

/// One command's resolver, shared by the views and the pipeline's cgroup gate.
pub type SharedNames = Arc<std::sync::Mutex<WorkloadNames>>;

/// The resolver and its cache.
pub struct WorkloadNames {
    /// Each process's answer, for `RETRY` (a pid is asked about at every event it owns).
    by_pid: HashMap<u32, (Option<Arc<Workload>>, Instant)>,
    /// Each network namespace's container, for `RETRY` (found by a scan of /proc).
    by_netns: HashMap<u32, (Option<Arc<Workload>>, Instant)>,
    known: HashMap<String, Arc<Workload>>,
    order: VecDeque<String>,
    unknown: HashMap<String, Instant>,
    kubelet_logs: PathBuf,
    ask_engines: bool,
}

impl Default for WorkloadNames {
    fn default() -> Self {
        Self::new()
    }
}

impl WorkloadNames {
    pub fn new() -> Self {
        let kubelet_logs = std::env::var_os("SOCKSTAT_KUBELET_LOGS")
            .map_or_else(|| PathBuf::from("/var/log"), PathBuf::from);
        WorkloadNames {
            by_pid: HashMap::new(),
            by_netns: HashMap::new(),
            known: HashMap::new(),
            order: VecDeque::new(),
            unknown: HashMap::new(),
            kubelet_logs,
            ask_engines: true,
        }
    }

    /// The names of the container that owns a socket: that of its owner process, else,
    /// where the owner is unknown or has already exited (a short `wget` is gone before
    /// its first event is read), that of the container whose network namespace it is in.
    pub fn of_owner(&mut self, pid: Option<u32>, netns: u32) -> Option<Arc<Workload>> {
        if let Some(w) = pid.and_then(|pid| self.of_pid(pid)) {
            return Some(w);
        }
        if let Some((w, at)) = self.by_netns.get(&netns)
            && at.elapsed() < RETRY
        {
            return w.clone();
        }
        let w = super::netns::container_of(netns).and_then(|c| self.of(&c));
        if self.by_netns.len() >= CAPACITY {
            self.by_netns.clear();
        }
        self.by_netns.insert(netns, (w.clone(), Instant::now()));
        w
    }

    /// The names of the container process `pid` runs in, if it runs in one.
    pub fn of_pid(&mut self, pid: u32) -> Option<Arc<Workload>> {
        if let Some((w, at)) = self.by_pid.get(&pid)
            && at.elapsed() < RETRY
        {
            return w.clone();
        }
        let w = super::container::of_pid(pid).and_then(|c| self.of(&c));
        if self.by_pid.len() >= CAPACITY {
            self.by_pid.retain(|_, (_, at)| at.elapsed() < RETRY);
            if self.by_pid.len() >= CAPACITY {
                self.by_pid.clear();
            }
        }
        self.by_pid.insert(pid, (w.clone(), Instant::now()));
        w
    }

    /// The names of `container`, from the first source that knows it.
    pub fn of(&mut self, container: &Container) -> Option<Arc<Workload>> {
        let id = &container.full_id;
        if let Some(w) = self.known.get(id) {
            return Some(w.clone());
        }
        if self.unknown.get(id).is_some_and(|at| at.elapsed() < RETRY) {
            return None;
        }
        let found = self.lookup(container);
        match found {
            Some(w) => Some(self.remember(id.clone(), w)),
            None => {
                if self.unknown.len() >= CAPACITY {
                    self.unknown.retain(|_, at| at.elapsed() < RETRY);
                }
                if self.unknown.len() < CAPACITY {
                    self.unknown.insert(id.clone(), Instant::now());
                }
                None
            }
        }
    }

    /// Keeps `w` for `id`, making room by forgetting the oldest.
    fn remember(&mut self, id: String, w: Workload) -> Arc<Workload> {
        let w = Arc::new(w);
        if self.order.len() >= CAPACITY
            && let Some(oldest) = self.order.pop_front()
        {
            self.known.remove(&oldest);
        }
        self.unknown.remove(&id);
        self.order.push_back(id.clone());
        self.known.insert(id, w.clone());
        w
    }

    fn lookup(&self, container: &Container) -> Option<Workload> {
        let from_engine = || {
            let (_, json) = super::docker::inspect_any(&container.full_id)?;
            from_inspect(&json)
        };
        if let Some(uid) = container.full_id.strip_prefix("pod-") {
            return pod_from_logs(&self.kubelet_logs, uid);
        }
        let engine = if self.ask_engines {
            from_engine()
        } else {
            None
        };
        engine.or_else(|| container_from_logs(&self.kubelet_logs, &container.full_id))
    }
}

/// `--pod`, `--k8s-namespace`, `--container`: sockets whose container has these names
/// (each given one must match exactly). Judged on the names `WorkloadNames` finds: for the
/// socket's own cgroup by `agent::CgroupGate` (in the kernel, once judged), and for the
/// owner by the views. Not by the current task's cgroup: a transition's hook often runs in
/// softirq context, on whatever task the CPU was running.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct WorkloadFilter {
    pod: Option<String>,
    namespace: Option<String>,
    container: Option<String>,
}

/// As the options that made it: `--k8s-namespace shop --pod web-1`.
impl std::fmt::Display for WorkloadFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let given: Vec<String> = [
            ("--k8s-namespace", &self.namespace),
            ("--pod", &self.pod),
            ("--container", &self.container),
        ]
        .into_iter()
        .filter_map(|(flag, value)| value.as_ref().map(|v| format!("{flag} {v}")))
        .collect();
        f.write_str(&given.join(" "))
    }
}

impl WorkloadFilter {
    /// None when no criterion is given (every socket passes).
    pub fn new(
        pod: Option<&str>,
        namespace: Option<&str>,
        container: Option<&str>,
    ) -> Option<WorkloadFilter> {
        (pod.is_some() || namespace.is_some() || container.is_some()).then(|| WorkloadFilter {
            pod: pod.map(str::to_string),
            namespace: namespace.map(str::to_string),
            container: container.map(str::to_string),
        })
    }

    /// Whether names `w` pass: a socket outside any named container passes no criterion.
    pub fn matches(&self, w: Option<&Workload>) -> bool {
        let Some(w) = w else { return false };
        let same = |want: &Option<String>, have: &Option<String>| {
            want.as_ref().is_none_or(|want| have.as_ref() == Some(want))
        };
        same(&self.pod, &w.pod)
            && same(&self.namespace, &w.namespace)
            && same(&self.container, &w.container)
    }
}

/// Names from an Engine API inspect reply: the Kubernetes labels where the kubelet set
/// them, else the engine's own name.
fn from_inspect(json: &serde_json::Value) -> Option<Workload> {
    let labels = &json["Config"]["Labels"];
    let label = |key: &str| labels[key].as_str().map(str::to_string);
    let name = json["Name"]
        .as_str()
        .map(|n| n.trim_start_matches('/').to_string())
        .filter(|n| !n.is_empty());
    let workload = Workload {
        container: label("io.kubernetes.container.name").or(name),
        image: json["Config"]["Image"].as_str().map(str::to_string),
        pod: label("io.kubernetes.pod.name"),
        namespace: label("io.kubernetes.pod.namespace"),
    };
    (workload != Workload::default()).then_some(workload)
}

/// `/var/log/containers/<pod>_<namespace>_<container>-<id>.log`: the kubelet's link for
/// each container's log. Pod, namespace and container names cannot contain `_` (DNS
/// labels), so the name splits unambiguously.
fn container_from_logs(root: &Path, id: &str) -> Option<Workload> {
    let suffix = format!("-{id}.log");
    let entries = std::fs::read_dir(root.join("containers")).ok()?;
    entries.flatten().find_map(|entry| {
        let name = entry.file_name().into_string().ok()?;
        let rest = name.strip_suffix(&suffix)?;
        let mut parts = rest.splitn(3, '_');
        let (pod, namespace, container) = (parts.next()?, parts.next()?, parts.next()?);
        Some(Workload {
            container: Some(container.to_string()),
            image: None,
            pod: Some(pod.to_string()),
            namespace: Some(namespace.to_string()),
        })
    })
}

/// `/var/log/pods/<namespace>_<pod>_<uid>/`: a pod known only by the uid in its cgroup
/// (`kubepods-pod<uid>.slice`, with `_` for `-` there).
fn pod_from_logs(root: &Path, uid: &str) -> Option<Workload> {
    let suffix = format!("_{uid}");
    let entries = std::fs::read_dir(root.join("pods")).ok()?;
    entries.flatten().find_map(|entry| {
        let name = entry.file_name().into_string().ok()?;
        let rest = name.strip_suffix(&suffix)?;
        let (namespace, pod) = rest.split_once('_')?;
        Some(Workload {
            container: None,
            image: None,
            pod: Some(pod.to_string()),
            namespace: Some(namespace.to_string()),
        })
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_filter_needs_every_name_given_and_a_container() {
        let web = Workload {
            container: Some("nginx".into()),
            image: None,
            pod: Some("web-1".into()),
            namespace: Some("shop".into()),
        };
        let f = |pod, ns, c| WorkloadFilter::new(pod, ns, c).unwrap();
        assert!(WorkloadFilter::new(None, None, None).is_none());
        assert!(f(Some("web-1"), None, None).matches(Some(&web)));
        assert!(f(Some("web-1"), Some("shop"), Some("nginx")).matches(Some(&web)));
        assert!(!f(Some("web-1"), Some("prod"), None).matches(Some(&web)));
        assert!(!f(Some("web"), None, None).matches(Some(&web)));
        assert!(!f(None, Some("shop"), None).matches(None));
        let docker = Workload {
            container: Some("db".into()),
            ..Workload::default()
        };
        assert!(f(None, None, Some("db")).matches(Some(&docker)));
        assert!(!f(Some("db"), None, None).matches(Some(&docker)));
    }

    use super::*;

    const ID: &str = "3f2a9c1b7d4e5f60718293a4b5c6d7e8f90123456789abcdef0123456789abcd";
    const POD_UID: &str = "0a1b2c3d-4e5f-6789-abcd-ef0123456789";

    /// The kubelet's exact naming, in a temporary root.
    fn kubelet_tree() -> PathBuf {
        let root = std::env::temp_dir().join(format!("sockstat-kubelet-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let pod_dir = root.join(format!("pods/shop_web-7d9f8c6b5-x2x4q_{POD_UID}/nginx"));
        std::fs::create_dir_all(&pod_dir).unwrap();
        std::fs::write(pod_dir.join("0.log"), "").unwrap();
        std::fs::create_dir_all(root.join("containers")).unwrap();
        std::os::unix::fs::symlink(
            pod_dir.join("0.log"),
            root.join(format!(
                "containers/web-7d9f8c6b5-x2x4q_shop_nginx-{ID}.log"
            )),
        )
        .unwrap();
        root
    }

    #[test]
    fn the_kubelet_layout_names_containers_and_pods() {
        let root = kubelet_tree();
        let mut names = WorkloadNames {
            kubelet_logs: root.clone(),
            ask_engines: false,
            ..WorkloadNames::new()
        };
        let by_id = names
            .of(&super::super::container::from_cgroup_path(&format!(
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0a1b2c3d_4e5f_6789_abcd_ef0123456789.slice/cri-containerd-{ID}.scope"
            ))
            .unwrap())
            .unwrap();
        assert_eq!(
            by_id.label().as_deref(),
            Some("shop/web-7d9f8c6b5-x2x4q/nginx")
        );
        let pod_only = names
            .of(&super::super::container::from_cgroup_path(
                "/kubepods.slice/kubepods-pod0a1b2c3d_4e5f_6789_abcd_ef0123456789.slice",
            )
            .unwrap())
            .unwrap();
        assert_eq!(pod_only.pod.as_deref(), Some("web-7d9f8c6b5-x2x4q"));
        assert_eq!(pod_only.namespace.as_deref(), Some("shop"));
        assert_eq!(pod_only.container, None);
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn engine_replies_prefer_the_kubernetes_labels() {
        let docker: serde_json::Value = serde_json::from_str(
            r#"{"Name":"/web","Config":{"Image":"nginx:1.27","Labels":{"team":"a"}}}"#,
        )
        .unwrap();
        let w = from_inspect(&docker).unwrap();
        assert_eq!(
            (w.label(), w.image.as_deref()),
            (Some("web".into()), Some("nginx:1.27"))
        );
        let kube: serde_json::Value = serde_json::from_str(
            r#"{"Name":"/k8s_nginx_web-1_shop_0a1b_0","Config":{"Image":"nginx","Labels":{
                "io.kubernetes.pod.name":"web-1","io.kubernetes.pod.namespace":"shop",
                "io.kubernetes.container.name":"nginx"}}}"#,
        )
        .unwrap();
        assert_eq!(
            from_inspect(&kube).and_then(|w| w.label()).as_deref(),
            Some("shop/web-1/nginx")
        );
        assert_eq!(from_inspect(&serde_json::json!({})), None);
    }

    #[test]
    fn the_cache_is_bounded() {
        let mut names = WorkloadNames {
            kubelet_logs: PathBuf::from("/nonexistent"),
            ask_engines: false,
            ..WorkloadNames::new()
        };
        for i in 0..CAPACITY + 10 {
            names.remember(format!("{i:064x}"), Workload::default());
        }
        assert_eq!((names.known.len(), names.order.len()), (CAPACITY, CAPACITY));
        // The oldest went first.
        assert!(!names.known.contains_key(&format!("{:064x}", 9)));
        assert!(names.known.contains_key(&format!("{:064x}", 10)));
        // Unknown ids are remembered as unknown, within the same bound.
        let c = Container {
            runtime: "docker",
            id: "ffffffffffff".into(),
            full_id: "f".repeat(64),
        };
        assert_eq!(names.of(&c), None);
        assert!(names.unknown.contains_key(&c.full_id));
    }
}
