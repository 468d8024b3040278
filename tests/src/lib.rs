//! Helpers for the root integration tests: run the real `sockstat` binary, drive real sockets,
//! collect what it printed.
use std::{
    collections::BTreeSet,
    io::{BufRead, BufReader},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, TcpListener},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::mpsc,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
    time::{SystemTime, UNIX_EPOCH},
};

use serde_json::Value;

pub mod tun;

pub type TestResult = Result<(), libtest_mimic::Failed>;

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Whether the root-only `suite` can run here. Without root it says so loudly, and its
/// tests are reported as ignored ("needs root"), never as passed.
pub fn root_or_say_skipped(suite: &str) -> bool {
    let root = is_root();
    if !root {
        eprintln!(
            "\n*** sockstat {suite} tests SKIPPED: not running as root (run `sudo cargo xtask test`) ***\n"
        );
    }
    root
}

/// A test that needs root: ignored without it.
pub fn root_trial(name: &'static str, root: bool, f: fn() -> TestResult) -> libtest_mimic::Trial {
    libtest_mimic::Trial::test(name, f).with_ignored_flag(!root)
}

pub fn fail(msg: impl Into<String>) -> libtest_mimic::Failed {
    msg.into().into()
}

/// A child between fork and exec holds copies of all of the test process's sockets: one the
/// test closes meanwhile is closed for good at that exec, by the child, and the trace rightly
/// names the child. Spawns hold this shared (`spawning`); a test that checks who closed its
/// sockets closes them holding it exclusively (`no_spawns`).
static SPAWNS: std::sync::RwLock<()> = std::sync::RwLock::new(());

pub fn spawning() -> std::sync::RwLockReadGuard<'static, ()> {
    SPAWNS.read().unwrap_or_else(|e| e.into_inner())
}

pub fn no_spawns() -> std::sync::RwLockWriteGuard<'static, ()> {
    SPAWNS.write().unwrap_or_else(|e| e.into_inner())
}

/// `program` run by `setpriv` as the unprivileged user nobody.
pub fn as_nobody(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(program);
    cmd
}

/// The binary under test, copied where nobody may execute it whatever the checkout's
/// permissions are; deleted on drop.
pub struct NobodyBinary(PathBuf);

impl NobodyBinary {
    pub fn new(tag: &str) -> Result<Self, String> {
        let path =
            std::env::temp_dir().join(format!("sockstat-{tag}-nobody-{}", std::process::id()));
        std::fs::copy(sockstat_bin(), &path).map_err(|e| format!("copying the binary: {e}"))?;
        Ok(NobodyBinary(path))
    }

    /// Where the copy is.
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }

    /// The copy, run as nobody.
    pub fn command(&self) -> Command {
        as_nobody(&self.0)
    }
}

impl Drop for NobodyBinary {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The binary under test: `$SOCKSTAT_BIN` (set by `cargo xtask test`), else the `sockstat`
/// built next to this test binary (`target/[triple/]release/deps/..` -> `../sockstat`).
pub fn sockstat_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SOCKSTAT_BIN") {
        return PathBuf::from(p);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("sockstat")))
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/sockstat")
        })
}

/// A listening port below the ephemeral range that nothing uses right now, on both loopback
/// families (bound and released, which causes no state transition). Each call in a process
/// gets a different port, so parallel tests never share one.
pub fn free_port(_ip: IpAddr) -> Result<u16, String> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut x = nanos ^ (u64::from(std::process::id()) << 32);
    for _ in 0..500 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407 ^ n);
        let port = 20000 + ((x >> 33) % 12000) as u16;
        // Probe under the lock and skip ports already handed out: a probe bind on a port
        // another test has just been given would make that test's own bind fail.
        let Ok(mut taken) = TAKEN.lock() else {
            return Err("port registry poisoned".into());
        };
        if taken.contains(&port) {
            continue;
        }
        let v4 = TcpListener::bind((Ipv4Addr::LOCALHOST, port));
        let v6 = TcpListener::bind((Ipv6Addr::LOCALHOST, port));
        if v4.is_ok() && v6.is_ok() {
            taken.insert(port);
            return Ok(port);
        }
    }
    Err("no free port in 20000-32000".into())
}

/// Ports handed out in this process.
static TAKEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// CLOCK_MONOTONIC in ns: the clock of the kernel's event timestamps (`ts_ns`).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A running `sockstat trace`.
/// What trace says once it is attached.
const TRACING: &str = "sockstat: tracing ";

pub struct Tracer {
    child: Child,
    stdout: Option<thread::JoinHandle<String>>,
    /// Each stdout line with the monotonic time it was read.
    lines: mpsc::Receiver<(u64, String)>,
    stderr: mpsc::Receiver<String>,
    stderr_seen: Vec<String>,
}

impl Tracer {
    /// Starts `sockstat trace ARGS` and waits until it says it is attached.
    pub fn start(args: &[&str]) -> Result<Self, String> {
        let mut cmd = Command::new(sockstat_bin());
        cmd.arg("trace").args(args);
        Self::spawn(cmd, TRACING)
    }

    /// `start`, with these environment variables set for sockstat.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Result<Self, String> {
        let mut cmd = Command::new(sockstat_bin());
        cmd.arg("trace").args(args).envs(env.iter().copied());
        Self::spawn(cmd, TRACING)
    }

    /// `sockstat trace ARGS` inside `ns` (whose sockets it then traces, like ss would).
    pub fn start_in(ns: &NamedNetns, args: &[&str]) -> Result<Self, String> {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &ns.name])
            .arg(sockstat_bin())
            .arg("trace")
            .args(args);
        Self::spawn(cmd, TRACING)
    }

    /// `sockstat record ARGS` inside `ns`, once it says it is recording.
    pub fn record_in(ns: &NamedNetns, args: &[&str]) -> Result<Self, String> {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &ns.name])
            .arg(sockstat_bin())
            .arg("record")
            .args(args);
        Self::spawn(cmd, "sockstat: recording ")
    }

    /// `sockstat record ARGS` in this namespace (with -N, it records another one while it
    /// reaches servers here), once it says it is recording.
    pub fn record(args: &[&str]) -> Result<Self, String> {
        let mut cmd = Command::new(sockstat_bin());
        cmd.arg("record").args(args);
        Self::spawn(cmd, "sockstat: recording ")
    }

    /// Ends it with SIGKILL, as a crash would: nothing of its own runs.
    pub fn kill(mut self) -> Result<(), String> {
        self.child.kill().map_err(|e| e.to_string())?;
        self.child.wait().map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Starts `cmd` and waits for a stderr line starting with `ready`.
    fn spawn(mut cmd: Command, ready: &str) -> Result<Self, String> {
        let forking = spawning();
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", sockstat_bin().display()))?;
        drop(forking);
        let out = child.stdout.take().ok_or("no stdout")?;
        let (line_tx, lines) = mpsc::channel();
        let stdout = thread::spawn(move || {
            let mut s = String::new();
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = line_tx.send((monotonic_ns(), line.clone()));
                s.push_str(&line);
                s.push('\n');
            }
            s
        });
        let err = child.stderr.take().ok_or("no stderr")?;
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut tracer = Tracer {
            child,
            stdout: Some(stdout),
            lines,
            stderr: rx,
            stderr_seen: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tracer.stderr.recv_timeout(left) {
                Ok(line) => {
                    let is_ready = line.starts_with(ready);
                    tracer.stderr_seen.push(line);
                    if is_ready {
                        return Ok(tracer);
                    }
                }
                Err(_) => {
                    let _ = tracer.child.kill();
                    return Err(format!(
                        "sockstat never said {ready:?}; stderr: {:?}",
                        tracer.stderr_seen
                    ));
                }
            }
        }
    }

    /// Waits for a stdout line matching `pred`; returns it with the time it was read.
    pub fn wait_line(
        &self,
        pred: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> Option<(u64, String)> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (t, line) = self.lines.recv_timeout(left).ok()?;
            if pred(&line) {
                return Some((t, line));
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, wait, and return (stdout, stderr lines, exit code).
    pub fn stop(mut self) -> Result<(String, Vec<String>, i32), String> {
        // Let the last transitions reach the ring buffer and the reader.
        thread::sleep(Duration::from_millis(300));
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().map_err(|e| e.to_string())?;
        let stdout = self
            .stdout
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let mut stderr = std::mem::take(&mut self.stderr_seen);
        while let Ok(line) = self.stderr.recv_timeout(Duration::from_secs(2)) {
            stderr.push(line);
        }
        Ok((stdout, stderr, status.code().unwrap_or(-1)))
    }

    /// Stops the tracer and parses its NDJSON output.
    pub fn stop_json(self) -> Result<Vec<Value>, String> {
        self.stop_json_noting(&mut String::new())
    }

    /// `stop_json`, keeping trace's closing summary in `summary` (for `events_missing`).
    pub fn stop_json_noting(self, summary: &mut String) -> Result<Vec<Value>, String> {
        let (stdout, stderr, code) = self.stop()?;
        if code != 0 {
            return Err(format!("sockstat trace exited {code}; stderr: {stderr:?}"));
        }
        *summary = stderr.last().cloned().unwrap_or_default();
        if !summary.contains(" 0 lost") {
            return Err(format!("events were lost: {summary}"));
        }
        stdout
            .lines()
            .map(|l| serde_json::from_str(l).map_err(|e| format!("bad NDJSON line {l:?}: {e}")))
            .collect()
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Field of an event as a string ("" when absent).
pub fn s<'a>(ev: &'a Value, key: &str) -> &'a str {
    ev.get(key).and_then(Value::as_str).unwrap_or("")
}

/// The port of an "ip:port" / "[v6]:port" string.
pub fn port_of(addr: &str) -> u16 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
}

/// "OLD->NEW" for each event.
pub fn edges(events: &[&Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| format!("{}->{}", s(e, "old"), s(e, "new")))
        .collect()
}

/// Every event with the given cookie, in order.
pub fn by_cookie(events: &[Value], cookie: u64) -> Vec<&Value> {
    events
        .iter()
        .filter(|e| e.get("cookie").and_then(Value::as_u64) == Some(cookie))
        .collect()
}

/// The cookie of the first event matching `pred`.
pub fn cookie_where(events: &[Value], pred: impl Fn(&Value) -> bool) -> Option<u64> {
    events
        .iter()
        .find(|e| pred(e))
        .and_then(|e| e.get("cookie").and_then(Value::as_u64))
}

/// The kernel's `tcpi_state` of a connected socket (TCP_INFO's first byte).
pub fn tcp_state(fd: i32) -> Option<u8> {
    let mut info = [0u8; 256];
    let mut len = info.len() as libc::socklen_t;
    // SAFETY: buffer and length are valid; TCP_INFO writes at most `len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(info[0])
}

/// Polls until `cond` holds (or 5 s pass).
pub fn wait_until(what: &str, cond: impl Fn() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        if Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}"));
        }
        thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

/// Waits until process `pid` holds a BPF link, i.e. its first kernel program is attached
/// (the state-change hook is attached first). Loading takes from a fraction of a second on
/// the host to several seconds in an emulated guest, so tests wait for it instead of sleeping.
pub fn wait_attached(pid: u32) -> Result<(), String> {
    wait_links(pid, 1)
}

/// Every kernel program sockstat attaches on the kernels of the test matrix: the state
/// change, five cause hooks, kfree_skb and three timer hooks.
pub const ALL_HOOKS: usize = 10;

/// Waits until process `pid` holds at least `n` BPF links (attached programs).
pub fn wait_links(pid: u32, n: usize) -> Result<(), String> {
    let links = || {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter_map(|e| std::fs::read_link(e.path()).ok())
            .filter(|target| target.to_string_lossy() == "anon_inode:bpf_link")
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while links() < n {
        if Instant::now() > deadline {
            return Err(format!(
                "process {pid} attached {} of {n} BPF programs within 60 s",
                links()
            ));
        }
        thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// A named network namespace (`ip netns add`) for one test, deleted on drop.
pub struct NamedNetns {
    pub name: String,
}

impl NamedNetns {
    /// `sst-TAG-PID`, with its loopback up.
    pub fn new(tag: &str) -> Result<NamedNetns, String> {
        let name = format!("sst-{tag}-{}", std::process::id());
        run("ip", &["netns", "add", &name])?;
        let ns = NamedNetns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// `ip -n NAME ARGS`.
    pub fn ip(&self, args: &[&str]) -> Result<String, String> {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// `CMD ARGS` inside the namespace.
    pub fn exec(&self, cmd: &str, args: &[&str]) -> Result<String, String> {
        let mut full = vec!["netns", "exec", &self.name, cmd];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// Runs `f` on a thread inside the namespace (sockets made there belong to it).
    pub fn within<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, String> {
        use std::os::fd::AsRawFd;
        let file =
            std::fs::File::open(format!("/run/netns/{}", self.name)).map_err(|e| e.to_string())?;
        thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: setns on a valid nsfs fd; affects this thread only.
                if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(format!("setns: {}", std::io::Error::last_os_error()));
                }
                Ok(f())
            })
            .join()
            .map_err(|_| "namespace thread panicked".to_string())?
        })
    }
}

impl Drop for NamedNetns {
    fn drop(&mut self) {
        let _forking = spawning();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A namespace whose `ip_local_port_range` holds 20 ports (40000-40019) and whose
/// `tcp_tw_reuse` is off, so a client's TIME-WAIT socket holds its port: for the port
/// exhaustion tests.
pub fn twenty_port_netns(tag: &str) -> Result<NamedNetns, String> {
    let ns = NamedNetns::new(tag)?;
    for setting in [
        "net.ipv4.ip_local_port_range=40000 40019",
        "net.ipv4.tcp_tw_reuse=0",
    ] {
        ns.exec("sysctl", &["-qw", setting])?;
    }
    Ok(ns)
}

/// `n` connections from `ns` to `listener` (in `ns`, on 127.0.0.1:`port`), each closed
/// by the client first: each leaves the client's end in TIME-WAIT, holding its port.
pub fn client_closed_connections(
    ns: &NamedNetns,
    listener: &TcpListener,
    port: u16,
    n: usize,
) -> Result<(), String> {
    use std::io::Read;
    for _ in 0..n {
        let client = ns
            .within(|| std::net::TcpStream::connect(("127.0.0.1", port)))?
            .map_err(|e| format!("connect :{port}: {e}"))?;
        let (server, _) = listener.accept().map_err(|e| format!("accept: {e}"))?;
        drop(client);
        // The server closes once the client's FIN is in: no simultaneous close.
        let mut byte = [0u8; 1];
        let _ = (&server).read(&mut byte);
    }
    Ok(())
}

/// Makes closing `stream` abort the connection with an RST (SO_LINGER with 0 s).
pub fn abort_on_close(stream: &std::net::TcpStream) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket we hold, with a correctly sized struct linger.
    let set = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if set != 0 {
        return Err(format!("SO_LINGER: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Runs a command; its stdout, or one line saying what failed.
pub fn run(cmd: &str, args: &[&str]) -> Result<String, String> {
    let forking = spawning();
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    drop(forking);
    if !out.status.success() {
        return Err(format!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether trace's closing summary says its stream may lack events: lost to a full ring,
/// runs the kernel skipped (a hook re-entered on its CPU; the classic tracepoint's program
/// is also skipped while a bpf(2) map call runs on that CPU), transitions seen to be
/// missing (jumps), or skipped runs this kernel does not count (a classic tracepoint
/// before 6.7). A test that asserts exact transitions may try again.
pub fn events_missing(summary: &str) -> bool {
    let count_before = |what: &str| {
        summary
            .split(what)
            .next()
            .filter(|head| head.len() < summary.len())
            .and_then(|head| head.split_whitespace().last()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    count_before(" lost (ring buffer full)") > 0
        || count_before(" runs skipped by the kernel") > 0
        || count_before(" jumps (") > 0
        || skipped_runs_uncounted(summary)
}

/// Whether trace's closing summary says the kernel does not count its skipped runs.
pub fn skipped_runs_uncounted(summary: &str) -> bool {
    summary.contains("runs skipped by the kernel uncounted")
}

/// The running kernel's (major, minor) version, (0, 0) if unreadable.
pub fn kernel_version() -> (u32, u32) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release
        .split(['.', '-'])
        .map(|p| p.trim().parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// A connect(2) to 127.0.0.1:`port` that does not wait for the handshake.
pub fn connect_nonblocking(port: u16) -> std::io::Result<std::net::TcpStream> {
    connect_nonblocking_to(std::net::Ipv4Addr::LOCALHOST, port)
}

/// A connect(2) to `ip`:`port` that does not wait for the handshake.
pub fn connect_nonblocking_to(
    ip: std::net::Ipv4Addr,
    port: u16,
) -> std::io::Result<std::net::TcpStream> {
    use std::os::fd::{FromRawFd, OwnedFd};
    // SAFETY: socket(2) with constant arguments; the fd is owned at once.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(ip.octets()),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: a valid sockaddr_in and its size.
    let rc = unsafe {
        libc::connect(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            (&raw const addr).cast::<libc::sockaddr>(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(e);
        }
    }
    Ok(std::net::TcpStream::from(fd))
}

/// The cgroup2 hierarchy: where it is mounted, or else mounted for the test under the temp
/// folder (this machine has only v1's controllers, a vmtest guest nothing), undone when the
/// returned guard drops.
pub fn cgroup2_root(tag: u32) -> Result<(PathBuf, Option<Unmount>), String> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").map_err(|e| e.to_string())?;
    let found = mounts.lines().find_map(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        (w.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(w[1]))
    });
    if let Some(dir) = found {
        return Ok((dir, None));
    }
    let dir = std::env::temp_dir().join(format!("sst-cgroup2-{tag}"));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    run(
        "mount",
        &["-t", "cgroup2", "none", &dir.display().to_string()],
    )?;
    Ok((dir.clone(), Some(Unmount(dir))))
}

/// Unmounts what `cgroup2_root` mounted.
pub struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}
