//! A lab "host": a thread that has unshared into a new, anonymous network namespace and runs
//! whatever it is handed there. Sockets it creates belong to that namespace wherever they
//! are used later; commands it spawns (`ip`, sysctl writes) act on it.
//!
//! The namespace has no name and no bind mount: it lives exactly as long as the thread and
//! the sockets made in it. So Ctrl-C, an error or a panic cannot leave namespaces (or the
//! veth pairs inside them) behind; the kernel frees them with the last reference. The
//! thread is pinned to CPU 0 so that timers armed by its sockets share one timer wheel.
use std::{os::unix::fs::MetadataExt, process::Command, sync::mpsc, thread::JoinHandle};

use super::LabError;

type Job = Box<dyn FnOnce() + Send>;

pub struct Host {
    pub name: &'static str,
    /// The namespace's inode (what the kernel programs report as `netns`).
    pub netns: u32,
    /// The thread's id: `ip ... netns <tid>` moves a device into this namespace.
    pub tid: i32,
    /// CLOCK_MONOTONIC just after the namespace was made: the kernel reuses a freed
    /// namespace's inode at once, so an event on `netns` from before then was another's.
    pub since_ns: u64,
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Host {
    pub fn new(name: &'static str) -> Result<Host, LabError> {
        let (jobs, inbox) = mpsc::channel::<Job>();
        let (ready_tx, ready) = mpsc::channel::<Result<(u32, i32), String>>();
        let thread = std::thread::Builder::new()
            .name(format!("lab-{name}"))
            .spawn(move || {
                let setup = || -> Result<(u32, i32), String> {
                    // SAFETY: unshare(2) affects only this thread's namespaces.
                    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                        return Err(format!(
                            "unshare(CLONE_NEWNET): {}",
                            std::io::Error::last_os_error()
                        ));
                    }
                    pin_to_cpu0();
                    let inode = std::fs::metadata("/proc/thread-self/ns/net")
                        .map_err(|e| format!("reading the new namespace: {e}"))?
                        .ino() as u32;
                    // SAFETY: gettid has no preconditions.
                    let tid = unsafe { libc::gettid() };
                    Ok((inode, tid))
                };
                let ok = setup();
                let failed = ok.is_err();
                let _ = ready_tx.send(ok);
                if failed {
                    return;
                }
                while let Ok(job) = inbox.recv() {
                    job();
                }
            })
            .map_err(|e| LabError::Setup(format!("starting host {name}: {e}")))?;
        let (netns, tid) = ready
            .recv()
            .map_err(|_| LabError::Setup(format!("host {name} did not start")))?
            .map_err(LabError::Setup)?;
        let host = Host {
            name,
            netns,
            tid,
            since_ns: crate::live::clock::monotonic_ns(),
            jobs: Some(jobs),
            thread: Some(thread),
        };
        host.ip(&["link", "set", "lo", "up"])?;
        Ok(host)
    }

    /// Runs `f` on the host's thread (inside its namespace) and returns its result.
    pub fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, LabError> {
        let (tx, rx) = mpsc::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        self.jobs
            .as_ref()
            .and_then(|j| j.send(job).ok())
            .ok_or_else(|| LabError::Setup(format!("host {} has stopped", self.name)))?;
        rx.recv()
            .map_err(|_| LabError::Setup(format!("host {} stopped mid-job", self.name)))
    }

    /// `ip ARGS` inside the namespace.
    pub fn ip(&self, args: &[&str]) -> Result<(), LabError> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let shown = args.join(" ");
        let out = self
            .run(move || Command::new("ip").args(&args).output())?
            .map_err(|e| LabError::Setup(format!("running ip (install iproute2): {e}")))?;
        if !out.status.success() {
            return Err(LabError::Setup(format!(
                "ip {shown}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(())
    }

    /// Writes a per-namespace sysctl, e.g. `net/ipv4/tcp_syn_retries`.
    pub fn sysctl(&self, key: &'static str, value: &str) -> Result<(), LabError> {
        let value = value.to_string();
        self.run(move || std::fs::write(format!("/proc/sys/{key}"), value))?
            .map_err(|e| LabError::Setup(format!("setting {key}: {e}")))
    }

    /// A permanent neighbour entry: packets for `ip` on `dev` go to `mac`, without ARP.
    pub fn neighbour(&self, ip: &str, mac: &str, dev: &str) -> Result<(), LabError> {
        self.ip(&[
            "neigh",
            "replace",
            ip,
            "lladdr",
            mac,
            "dev",
            dev,
            "nud",
            "permanent",
        ])
    }

    /// Reads a per-namespace /proc/net or /proc/sys file.
    pub fn read(&self, path: &'static str) -> Result<String, LabError> {
        self.run(move || std::fs::read_to_string(path))?
            .map_err(|e| LabError::Setup(format!("reading {path}: {e}")))
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // Closing the queue ends the thread; the namespace goes with its last socket.
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn pin_to_cpu0() {
    // SAFETY: a zeroed cpu_set_t is empty; CPU_SET writes inside it; pid 0 is this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Two hosts joined by a veth pair: `a` is 10.200.0.1/24, `b` is 10.200.0.2/24, with fixed
/// MAC addresses and permanent neighbour entries (no ARP). A direction is held by deleting
/// the sender's neighbour entry while the receiver answers no ARP: the sender's kernel then
/// queues every packet for that neighbour (its unresolved queue) until a permanent entry
/// puts it back, which sends the queue in order. Held packets are delayed, never lost.
pub struct Pair {
    pub a: Host,
    pub b: Host,
}

pub const A_IP: &str = "10.200.0.1";
pub const B_IP: &str = "10.200.0.2";
const A_MAC: &str = "02:00:00:00:0a:01";
const B_MAC: &str = "02:00:00:00:0b:01";
/// A MAC address nothing on the lab's links has.
pub const NOWHERE_MAC: &str = "02:00:00:00:ff:ff";

impl Pair {
    pub fn new() -> Result<Pair, LabError> {
        let a = Host::new("a")?;
        let b = Host::new("b")?;
        let peer_ns = b.tid.to_string();
        a.ip(&[
            "link", "add", "veth-a", "address", A_MAC, "type", "veth", "peer", "name", "veth-b",
            "address", B_MAC, "netns", &peer_ns,
        ])?;
        a.ip(&["addr", "add", &format!("{A_IP}/24"), "dev", "veth-a"])?;
        b.ip(&["addr", "add", &format!("{B_IP}/24"), "dev", "veth-b"])?;
        // An unresolved neighbour keeps its queue for mcast_solicit x 1 s: long enough for
        // any held step, --slow included.
        a.sysctl("net/ipv4/neigh/veth-a/mcast_solicit", "120")?;
        b.sysctl("net/ipv4/neigh/veth-b/mcast_solicit", "120")?;
        a.ip(&["link", "set", "veth-a", "up"])?;
        b.ip(&["link", "set", "veth-b", "up"])?;
        let pair = Pair { a, b };
        pair.release()?;
        Ok(pair)
    }

    /// Host a's packets to b are queued in a's kernel, or sent on (queue first, in order).
    pub fn hold_a(&self, held: bool) -> Result<(), LabError> {
        hold(
            &self.a,
            "veth-a",
            B_IP,
            B_MAC,
            &self.b,
            "net/ipv4/conf/veth-b/arp_ignore",
            held,
        )
    }

    /// The same for host b's packets to a.
    pub fn hold_b(&self, held: bool) -> Result<(), LabError> {
        hold(
            &self.b,
            "veth-b",
            A_IP,
            A_MAC,
            &self.a,
            "net/ipv4/conf/veth-a/arp_ignore",
            held,
        )
    }

    /// Holds both directions.
    pub fn hold(&self) -> Result<(), LabError> {
        self.hold_a(true)?;
        self.hold_b(true)
    }

    /// Sends a's queue, then b's: whatever each side sent while held reaches a peer that
    /// had already sent its own.
    pub fn release(&self) -> Result<(), LabError> {
        self.hold_a(false)?;
        self.hold_b(false)
    }
}

/// Holds or releases what `sender` sends to `peer_ip` on `dev`.
fn hold(
    sender: &Host,
    dev: &str,
    peer_ip: &str,
    peer_mac: &str,
    receiver: &Host,
    receiver_arp_ignore: &'static str,
    held: bool,
) -> Result<(), LabError> {
    if held {
        // 8: answer no ARP request, so the sender's new entry stays unresolved.
        receiver.sysctl(receiver_arp_ignore, "8")?;
        sender.ip(&["neigh", "flush", "to", peer_ip, "dev", dev, "nud", "all"])
    } else {
        // A valid entry for an unresolved neighbour sends its queue.
        sender.neighbour(peer_ip, peer_mac, dev)?;
        receiver.sysctl(receiver_arp_ignore, "0")
    }
}
