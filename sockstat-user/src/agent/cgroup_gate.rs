//! `--pod`, `--k8s-namespace` and `--container` applied where the events start: each
//! socket's cgroup (which the kernel keeps with the socket, so it is the owner's even when a
//! state change runs in softirq on some other task) is judged once, from the container id
//! its cgroup path carries, and a cgroup that fails is written to the programs' map so the
//! kernel neither counts nor reports its sockets again. Events that got out before that, and
//! dumps, pass through the same judgement here, so the live table never holds a socket the
//! filter left out. A cgroup whose path names no container (or a container nobody names)
//! is undecided for good: its events go on to the owner-based judgement of the views.
use std::{
    collections::{HashMap, HashSet},
    sync::RwLock,
};

use crate::{
    ebpf::Probe,
    procs::{
        cgroups::CgroupPaths,
        container,
        workload::{SharedNames, WorkloadFilter},
    },
};

/// Cgroups judged so far, at most (then the rest are judged per event, and not remembered).
const MAX_JUDGED: usize = 1 << 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Keep,
    LeaveOut,
    /// No container in its path, or none of its names known: the views judge its sockets.
    Undecided,
}

/// The cgroups left out, for the dumps (which run on a blocking thread).
#[derive(Debug, Default)]
pub struct LeftOut(RwLock<HashSet<u64>>);

impl LeftOut {
    /// Whether a dumped socket of cgroup `id` is left out.
    pub fn covers(&self, id: u64) -> bool {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(&id)
    }

    fn insert(&self, id: u64) {
        self.0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id);
    }
}

pub struct CgroupGate {
    filter: WorkloadFilter,
    names: SharedNames,
    paths: CgroupPaths,
    verdicts: HashMap<u64, Verdict>,
    left_out: &'static LeftOut,
    /// Left out in the kernel (written to its map), and events left out here.
    in_kernel: u64,
    events_left_out: u64,
}

impl CgroupGate {
    /// `left_out` lives as long as the command: the dump scope that carries it is `Copy`.
    pub fn new(filter: WorkloadFilter, names: SharedNames) -> Self {
        CgroupGate {
            filter,
            names,
            paths: CgroupPaths::new(),
            verdicts: HashMap::new(),
            left_out: Box::leak(Box::default()),
            in_kernel: 0,
            events_left_out: 0,
        }
    }

    pub fn left_out(&self) -> &'static LeftOut {
        self.left_out
    }

    /// Judges every cgroup there is now, so the kernel leaves out the failing ones from the
    /// start (and the baseline does not take their sockets).
    pub fn judge_existing(&mut self, probe: &mut Probe) {
        let ids: Vec<(u64, String)> = self
            .paths
            .all()
            .map(|(id, path)| (id, path.to_string()))
            .collect();
        for (id, path) in ids {
            self.decide(id, Some(&path), probe);
        }
        log::info!(
            "--pod/--k8s-namespace/--container: {} cgroups left out in the kernel",
            self.in_kernel
        );
    }

    /// Whether an event of a socket in cgroup `id` goes on to the live table.
    pub fn keeps(&mut self, id: u64, probe: &mut Probe) -> bool {
        let verdict = match self.verdicts.get(&id) {
            Some(v) => *v,
            None => {
                let path = self.paths.path_of(id).map(str::to_string);
                self.decide(id, path.as_deref(), probe)
            }
        };
        if verdict == Verdict::LeaveOut {
            self.events_left_out += 1;
        }
        verdict != Verdict::LeaveOut
    }

    /// Events left out here (the kernel's own are not counted: for the trace they are
    /// outside its scope, as another namespace's are).
    pub fn events_left_out(&self) -> u64 {
        self.events_left_out
    }

    /// Cgroups the kernel leaves out.
    pub fn in_kernel(&self) -> u64 {
        self.in_kernel
    }

    fn decide(&mut self, id: u64, path: Option<&str>, probe: &mut Probe) -> Verdict {
        let verdict = match path.and_then(container::from_cgroup_path) {
            None => Verdict::Undecided,
            Some(c) => {
                let names = self
                    .names
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .of(&c);
                match names {
                    None => Verdict::Undecided,
                    Some(w) if self.filter.matches(Some(&w)) => Verdict::Keep,
                    Some(_) => Verdict::LeaveOut,
                }
            }
        };
        if verdict == Verdict::LeaveOut {
            self.left_out.insert(id);
            if probe.leave_out_cgroup(id) {
                self.in_kernel += 1;
            }
        }
        if self.verdicts.len() < MAX_JUDGED {
            self.verdicts.insert(id, verdict);
        }
        verdict
    }
}
