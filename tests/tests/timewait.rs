//! Root-only tests of TIME-WAIT as the kernel handles it: every timewait socket's life comes
//! from the kernel hooks (`"source": "kernel"`), as it happens. Each test has a private
//! network namespace with its own TIME-WAIT table and sysctls.
//!
//! Without root every test here is reported as ignored ("needs root"), never as passed.
use std::{
    io::Read,
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    time::Duration,
};

use libtest_mimic::{Arguments, Failed};
use serde_json::Value;
use sockstat_tests::{
    NamedNetns, TestResult, Tracer, fail, monotonic_ns, port_of, root_or_say_skipped, root_trial, s,
};

fn main() {
    let mut args = Arguments::from_args();
    let root = root_or_say_skipped("timewait");
    let trials = vec![
        root_trial(
            "timewait_orphan_close_enters_and_leaves_time_wait_slow",
            root,
            orphan_close,
        ),
        root_trial("timewait_overflow_is_told_at_once", root, || {
            overflow(Mode::Events)
        }),
        root_trial(
            "timewait_overflow_is_counted_exactly_by_count_only",
            root,
            || overflow(Mode::CountOnly),
        ),
        root_trial("timewait_reuse_ends_with_cause_reused", root, reuse),
        root_trial("timewait_kill_ends_with_cause_killed", root, killed),
        root_trial("timewait_rst_ends_with_cause_rst_in", root, reset),
        root_trial(
            "timewait_classic_hook_synthesizes_time_wait_slow",
            root,
            time_wait_expiry,
        ),
        root_trial(
            "live_table_holds_twenty_thousand_time_wait_sockets_in_64_bytes_each",
            root,
            table_memory,
        ),
    ];
    // Each test has its own namespace, and the slow ones mostly wait for TIME-WAIT's 60 s:
    // all at once.
    args.test_threads = args.test_threads.or(Some(trials.len()));
    libtest_mimic::run(&args, trials).exit();
}

const SERVER: &str = "127.0.0.1:7070";

fn server() -> SocketAddr {
    SERVER
        .parse()
        .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 7070)))
}

/// The events of the socket on local port `port` (with a peer), in order.
fn of_port(events: &[Value], port: u16) -> Vec<&Value> {
    events
        .iter()
        .filter(|e| port_of(s(e, "local")) == port && port_of(s(e, "remote")) != 0)
        .collect()
}

fn edge(e: &Value) -> String {
    format!("{}->{}", s(e, "old"), s(e, "new"))
}

/// The kernel's TcpExt counter in `ns` (nstat -a prints absolute values).
fn tcp_ext(ns: &NamedNetns, name: &str) -> Result<u64, Failed> {
    // -s: leave nstat's history file alone.
    let out = ns.exec("nstat", &["-asz", name]).map_err(fail)?;
    Ok(out
        .lines()
        .find_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some(name)).then(|| w.next().and_then(|v| v.parse().ok()))?
        })
        .unwrap_or(0))
}

/// Local ports of the TIME-WAIT sockets sock_diag lists in `ns` (through ss).
fn time_wait_ports(ns: &NamedNetns) -> Result<Vec<u16>, Failed> {
    let out = ns
        .exec("ss", &["-Htan", "state", "time-wait"])
        .map_err(fail)?;
    let mut ports: Vec<u16> = out
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2).map(port_of))
        .collect();
    ports.sort_unstable();
    Ok(ports)
}

/// The application's close: the client closes first, the server 0.3 s later, as HTTP
/// clients do. The client's socket becomes a timewait socket in FIN-WAIT-2 as soon as its
/// FIN is ACKed; the server's FIN moves it to TIME-WAIT (shown within 100 ms), and its timer
/// ends it 60 s later, cause timeout. All of it from the kernel. Slow by nature (~65 s).
fn orphan_close() -> TestResult {
    let ns = NamedNetns::new("tw-orphan").map_err(fail)?;
    let tracer = Tracer::start_in(&ns, &["--json"]).map_err(fail)?;
    let (client_port, fin_sent_ns) = ns
        .within(|| -> std::io::Result<(u16, u64)> {
            let listener = TcpListener::bind(SERVER)?;
            let client = TcpStream::connect(SERVER)?;
            let (mut server, _) = listener.accept()?;
            let port = client.local_addr()?.port();
            drop(client);
            let mut buf = [0u8; 1];
            let _ = server.read(&mut buf);
            std::thread::sleep(Duration::from_millis(300));
            let fin_sent = monotonic_ns();
            drop(server);
            Ok((port, fin_sent))
        })
        .map_err(fail)?
        .map_err(|e| fail(e.to_string()))?;
    let (shown_ns, line) = tracer
        .wait_line(
            |l| {
                l.contains("\"new\":\"TIME-WAIT\"")
                    && l.contains(&format!(":{client_port}\",\"remote\""))
            },
            Duration::from_secs(5),
        )
        .ok_or_else(|| fail("FIN-WAIT-2 -> TIME-WAIT was not shown within 5 s"))?;
    let entered: Value = serde_json::from_str(&line).map_err(|e| fail(e.to_string()))?;
    // Observed by the kernel at the FIN (its timestamp), and shown soon after: the display
    // bound is loose, as the kernel matrix runs under emulation beside other suites (131 ms
    // once in a 6.1 guest).
    let observed_ms = entered["ts_ns"]
        .as_u64()
        .unwrap_or(u64::MAX)
        .saturating_sub(fin_sent_ns)
        / 1_000_000;
    let latency_ms = shown_ns.saturating_sub(fin_sent_ns) / 1_000_000;
    if observed_ms > 100 || latency_ms > 1000 {
        return Err(fail(format!(
            "TIME-WAIT observed {observed_ms} ms and shown {latency_ms} ms after the peer's FIN"
        )));
    }
    check(
        "entry",
        (
            s(&entered, "old"),
            s(&entered, "source"),
            s(&entered, "cause"),
        ),
        ("FIN-WAIT-2", "kernel", "fin"),
    )?;
    std::thread::sleep(Duration::from_secs(63));
    let events = tracer.stop_json().map_err(fail)?;
    let mine = of_port(&events, client_port);
    let path: Vec<String> = mine.iter().map(|e| edge(e)).collect();
    check(
        "client path",
        &path,
        [
            // CLOSE -> SYN-SENT is reported before connect() picks the port.
            "SYN-SENT->ESTAB",
            "ESTAB->FIN-WAIT-1",
            "FIN-WAIT-1->FIN-WAIT-2",
            "FIN-WAIT-2->TIME-WAIT",
            "TIME-WAIT->CLOSE",
        ],
    )?;
    let end = mine
        .last()
        .ok_or_else(|| fail("no events for the client"))?;
    check(
        "expiry",
        (s(end, "source"), s(end, "cause")),
        ("kernel", "timeout"),
    )?;
    let lasted = end["ts_ns"]
        .as_u64()
        .unwrap_or(0)
        .saturating_sub(entered["ts_ns"].as_u64().unwrap_or(0));
    let secs = lasted as f64 / 1e9;
    // The timer wheel rounds a 60 s timer up to its level's granularity: 2.048 s at HZ=250
    // (Debian's kernels; 62.04 s seen on 6.12), 4.096 s at HZ=1000.
    if !(59.0..=64.5).contains(&secs) {
        return Err(fail(format!("TIME-WAIT lasted {secs:.2} s")));
    }
    if mine.iter().any(|e| s(e, "source") != "kernel") {
        return Err(fail(format!(
            "a transition was not the kernel's: {mine:#?}"
        )));
    }
    Ok(())
}

/// A full TIME-WAIT table: tcp_max_tw_buckets = 4 and 12 clients that close first. The
/// sockets sock_diag shows in TIME-WAIT are exactly those shown entering it; the other 8 go
/// to CLOSE with cause tw-overflow at once, and none lingers in FIN-WAIT-2. The kernel
/// counters agree with TcpExt.
/// The event stream, or `--count-only`, whose kernel-side path differs (it takes socket
/// cookies only on the way to a timewait socket) and is judged by the kernel's counters.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Events,
    CountOnly,
}

fn overflow(mode: Mode) -> TestResult {
    // An attempt during which the kernel skipped runs of sockstat's programs (a hook
    // re-entered on its CPU), or the ring lost events, says nothing about the
    // classification: those are counted and reported, and the attempt is made again.
    for attempt in 1..=3 {
        let (result, summary) = overflow_once(mode);
        match result {
            Err(_) if attempt < 3 && sockstat_tests::events_missing(&summary) => {
                eprintln!("overflow attempt {attempt}: events were missing ({summary}); again");
            }
            Err(e) => return Err(fail(format!("{e:?}\ntrace's summary: {summary}"))),
            Ok(()) => return Ok(()),
        }
    }
    Ok(())
}

/// One attempt, and trace's closing summary.
fn overflow_once(mode: Mode) -> (TestResult, String) {
    let mut summary = String::new();
    let result = overflow_attempt(&mut summary, mode);
    (result, summary)
}

/// The overflow test's clients, and its tcp_max_tw_buckets.
const CLIENTS: usize = 12;
const CAP: usize = 4;

fn overflow_attempt(summary_out: &mut String, mode: Mode) -> TestResult {
    // A namespace of each mode's own: the two tests run at once.
    let ns = NamedNetns::new(match mode {
        Mode::Events => "tw-overflow",
        Mode::CountOnly => "tw-overflow-count",
    })
    .map_err(fail)?;
    ns.exec(
        "sysctl",
        &["-qw", &format!("net.ipv4.tcp_max_tw_buckets={CAP}")],
    )
    .map_err(fail)?;
    let flag = match mode {
        Mode::Events => "--json",
        Mode::CountOnly => "--count-only",
    };
    let tracer = Tracer::start_in(&ns, &[flag]).map_err(fail)?;
    let overflow_before = tcp_ext(&ns, "TcpExtTCPTimeWaitOverflow")?;
    let clients = ns
        .within(|| -> std::io::Result<Vec<u16>> {
            let listener = TcpListener::bind(SERVER)?;
            let mut pairs = Vec::new();
            for _ in 0..CLIENTS {
                let c = TcpStream::connect(SERVER)?;
                let (s, _) = listener.accept()?;
                pairs.push((c, s));
            }
            let ports = pairs
                .iter()
                .map(|(c, _)| c.local_addr().map(|a| a.port()))
                .collect::<Result<Vec<_>, _>>()?;
            let mut servers = Vec::new();
            for (c, s) in pairs {
                drop(c);
                servers.push(s);
            }
            std::thread::sleep(Duration::from_millis(300));
            drop(servers);
            std::thread::sleep(Duration::from_millis(300));
            Ok(ports)
        })
        .map_err(fail)?
        .map_err(|e| fail(e.to_string()))?;
    let in_time_wait = time_wait_ports(&ns)?;
    let overflowed = tcp_ext(&ns, "TcpExtTCPTimeWaitOverflow")? - overflow_before;
    let (stdout, stderr, code) = tracer.stop().map_err(fail)?;
    *summary_out = stderr.last().cloned().unwrap_or_default();
    check("exit", code, 0)?;
    check(
        "TcpExt TCPTimeWaitOverflow",
        overflowed,
        (CLIENTS - CAP) as u64,
    )?;
    check("sock_diag's TIME-WAIT sockets", in_time_wait.len(), CAP)?;
    if mode == Mode::Events {
        events_name_the_overflow(&stdout, &clients, &in_time_wait)?;
    }
    let summary = stderr.last().cloned().unwrap_or_default();
    let want = format!(
        "timewait sockets: {CAP} created, {} overflowed",
        CLIENTS - CAP
    );
    let edges = format!("FIN-WAIT-2->TIME-WAIT={CAP}");
    if !summary.contains(&want) || !summary.contains(&edges) {
        return Err(fail(format!(
            "kernel counters: want {want:?} and {edges:?} in {summary}"
        )));
    }
    Ok(())
}

/// Each client's last event: into TIME-WAIT for exactly the sockets sock_diag shows there,
/// else to CLOSE with cause tw-overflow, all from the kernel.
fn events_name_the_overflow(stdout: &str, clients: &[u16], in_time_wait: &[u16]) -> TestResult {
    let events: Vec<Value> = stdout
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .map_err(|e| fail(e.to_string()))?;
    let mut entered = Vec::new();
    let mut gone = Vec::new();
    for &port in clients {
        let mine = of_port(&events, port);
        let last = mine
            .last()
            .ok_or_else(|| fail(format!("no events for client {port}")))?;
        match (s(last, "old"), s(last, "new")) {
            ("FIN-WAIT-2", "TIME-WAIT") => entered.push(port),
            ("FIN-WAIT-2", "CLOSE") if s(last, "cause") == "tw-overflow" => gone.push(port),
            _ => {
                return Err(fail(format!(
                    "client {port} ended with {}: {mine:#?}",
                    edge(last)
                )));
            }
        }
        if mine.iter().any(|e| s(e, "source") != "kernel") {
            return Err(fail(format!(
                "client {port}: not all from the kernel: {mine:#?}"
            )));
        }
    }
    entered.sort_unstable();
    check(
        "entered TIME-WAIT = sock_diag's TIME-WAIT",
        &entered,
        in_time_wait,
    )?;
    check(
        "overflowed",
        (gone.len(), entered.len()),
        (CLIENTS - CAP, CAP),
    )
}

/// `tcp_tw_reuse` with one ephemeral port: the second connection to the same server takes
/// over the first one's timewait socket, which ends with cause reused at the new SYN.
fn reuse() -> TestResult {
    let ns = NamedNetns::new("tw-reuse").map_err(fail)?;
    ns.exec(
        "sysctl",
        &[
            "-qw",
            "net.ipv4.tcp_tw_reuse=1",
            "net.ipv4.ip_local_port_range=40000 40000",
        ],
    )
    .map_err(fail)?;
    let tracer = Tracer::start_in(&ns, &["--json"]).map_err(fail)?;
    ns.within(|| -> std::io::Result<()> {
        let listener = TcpListener::bind(SERVER)?;
        let once = || -> std::io::Result<()> {
            let c = TcpStream::connect(server())?;
            let (mut s, _) = listener.accept()?;
            drop(c);
            let mut buf = [0u8; 1];
            let _ = s.read(&mut buf);
            drop(s);
            std::thread::sleep(Duration::from_millis(100));
            Ok(())
        };
        once()?;
        // tcp_tw_reuse takes a timewait socket once its last timestamp is 1 s old.
        std::thread::sleep(Duration::from_millis(1500));
        once()
    })
    .map_err(fail)?
    .map_err(|e| fail(e.to_string()))?;
    let events = tracer.stop_json().map_err(fail)?;
    let first: Vec<&Value> = events
        .iter()
        .filter(|e| port_of(s(e, "local")) == 40000)
        .collect();
    let cookies: Vec<u64> = {
        let mut c: Vec<u64> = first.iter().filter_map(|e| e["cookie"].as_u64()).collect();
        c.dedup();
        c
    };
    let old = cookies
        .first()
        .ok_or_else(|| fail(format!("no client events: {events:#?}")))?;
    let end = first
        .iter()
        .find(|e| e["cookie"].as_u64() == Some(*old) && s(e, "new") == "CLOSE")
        .ok_or_else(|| fail(format!("the first client never closed: {first:#?}")))?;
    check(
        "reused timewait socket",
        (s(end, "old"), s(end, "source"), s(end, "cause")),
        ("TIME-WAIT", "kernel", "reused"),
    )?;
    // It ends at the new connection's SYN: right after its CLOSE -> SYN-SENT.
    let syn = events
        .iter()
        .filter(|e| s(e, "new") == "SYN-SENT")
        .nth(1)
        .ok_or_else(|| fail("no second connect"))?;
    let gap = end["ts_ns"]
        .as_u64()
        .unwrap_or(0)
        .abs_diff(syn["ts_ns"].as_u64().unwrap_or(0));
    // Within the same connect(): microseconds natively, 15 ms seen in an emulated guest;
    // an expiry would be a minute away.
    if gap > 100_000_000 {
        return Err(fail(format!(
            "ended {} ms from the new SYN",
            gap / 1_000_000
        )));
    }
    Ok(())
}

/// `ss -K` on a TIME-WAIT socket: it ends with cause killed.
fn killed() -> TestResult {
    let ns = NamedNetns::new("tw-kill").map_err(fail)?;
    let tracer = Tracer::start_in(&ns, &["--json"]).map_err(fail)?;
    let port = ns
        .within(|| -> std::io::Result<u16> {
            let listener = TcpListener::bind(SERVER)?;
            let c = TcpStream::connect(SERVER)?;
            let (mut s, _) = listener.accept()?;
            let port = c.local_addr()?.port();
            drop(c);
            let mut buf = [0u8; 1];
            let _ = s.read(&mut buf);
            drop(s);
            std::thread::sleep(Duration::from_millis(100));
            Ok(port)
        })
        .map_err(fail)?
        .map_err(|e| fail(e.to_string()))?;
    check("in TIME-WAIT", time_wait_ports(&ns)?, vec![port])?;
    ns.exec("ss", &["-K", "-tan", "state", "time-wait"])
        .map_err(fail)?;
    check("killed", time_wait_ports(&ns)?, Vec::<u16>::new())?;
    let line = tracer
        .wait_line(
            |l| l.contains("\"old\":\"TIME-WAIT\""),
            Duration::from_secs(5),
        )
        .ok_or_else(|| fail("no TIME-WAIT -> CLOSE within 5 s"))?
        .1;
    let end: Value = serde_json::from_str(&line).map_err(|e| fail(e.to_string()))?;
    check(
        "end",
        (
            port_of(s(&end, "local")),
            s(&end, "new"),
            s(&end, "source"),
            s(&end, "cause"),
        ),
        (port, "CLOSE", "kernel", "killed"),
    )?;
    let _ = tracer.stop().map_err(fail)?;
    Ok(())
}

/// The client closes first and waits as a timewait socket in FIN-WAIT-2; the server aborts
/// (SO_LINGER 0): its RST kills the timewait socket, cause rst-in.
fn reset() -> TestResult {
    use std::os::fd::AsRawFd;
    let ns = NamedNetns::new("tw-rst").map_err(fail)?;
    let tracer = Tracer::start_in(&ns, &["--json"]).map_err(fail)?;
    let port = ns
        .within(|| -> std::io::Result<u16> {
            let listener = TcpListener::bind(SERVER)?;
            let c = TcpStream::connect(SERVER)?;
            let (s, _) = listener.accept()?;
            let port = c.local_addr()?.port();
            drop(c);
            std::thread::sleep(Duration::from_millis(100));
            let linger = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            // SAFETY: setsockopt on a socket we own, with a valid linger struct.
            let rc = unsafe {
                libc::setsockopt(
                    s.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    (&linger as *const libc::linger).cast(),
                    std::mem::size_of::<libc::linger>() as libc::socklen_t,
                )
            };
            if rc != 0 {
                return Err(std::io::Error::last_os_error());
            }
            drop(s);
            Ok(port)
        })
        .map_err(fail)?
        .map_err(|e| fail(e.to_string()))?;
    let line = tracer
        .wait_line(
            |l| l.contains(&format!(":{port}\",\"remote\"")) && l.contains("\"new\":\"CLOSE\""),
            Duration::from_secs(5),
        )
        .ok_or_else(|| fail("the client's end was not shown within 5 s"))?
        .1;
    let end: Value = serde_json::from_str(&line).map_err(|e| fail(e.to_string()))?;
    check(
        "end",
        (s(&end, "old"), s(&end, "source"), s(&end, "cause")),
        ("FIN-WAIT-2", "kernel", "rst-in"),
    )?;
    let _ = tracer.stop().map_err(fail)?;
    Ok(())
}

/// The classic-tracepoint fallback has no timewait hooks: FIN-WAIT-2 -> TIME-WAIT is
/// inferred from the close, and TIME-WAIT -> CLOSE from a reconcile once the timewait socket
/// is gone 60 s later, both marked synthesized. (tests/timewait.rs covers the kernel's own
/// view.) In a private namespace; slow by nature (~65 s).
fn time_wait_expiry() -> TestResult {
    let ns = NamedNetns::new("tw-classic").map_err(fail)?;
    let tracer = Tracer::start_in(
        &ns,
        &[
            "--json",
            "--reconcile",
            "1",
            "--hook",
            "tracepoint",
            "--port",
            "7071",
        ],
    )?;
    let client_port = ns.within(|| -> std::io::Result<u16> {
        let listener = TcpListener::bind("127.0.0.1:7071")?;
        let client = TcpStream::connect("127.0.0.1:7071")?;
        let (mut server, _) = listener.accept()?;
        let port = client.local_addr()?.port();
        client.shutdown(Shutdown::Write)?;
        let mut rest = Vec::new();
        server.read_to_end(&mut rest)?;
        drop(server);
        std::thread::sleep(Duration::from_millis(100));
        drop(client);
        Ok(port)
    })??;
    std::thread::sleep(Duration::from_secs(66));
    let events = tracer.stop_json().map_err(fail)?;
    let mine: Vec<&Value> = events
        .iter()
        .filter(|e| port_of(s(e, "local")) == client_port)
        .collect();
    let tw = mine
        .iter()
        .find(|e| s(e, "new") == "TIME-WAIT")
        .ok_or_else(|| fail(format!("no TIME-WAIT: {mine:#?}")))?;
    let close = mine
        .iter()
        .find(|e| s(e, "old") == "TIME-WAIT" && s(e, "new") == "CLOSE")
        .ok_or_else(|| fail(format!("no TIME-WAIT -> CLOSE: {mine:#?}")))?;
    check(
        "entry",
        (s(tw, "old"), s(tw, "source")),
        ("FIN-WAIT-2", "synthesized"),
    )?;
    check(
        "expiry",
        (s(close, "source"), s(close, "cause")),
        ("synthesized", "timeout"),
    )?;
    let secs =
        (close["ts_ns"].as_u64().unwrap_or(0) - tw["ts_ns"].as_u64().unwrap_or(0)) as f64 / 1e9;
    if !(58.0..=64.0).contains(&secs) {
        return Err(fail(format!("TIME-WAIT lasted {secs:.1} s")));
    }
    Ok(())
}

/// Compares Debug renderings, so `Vec<String>` matches `["a", "b"]`.
fn check(what: &str, got: impl std::fmt::Debug, want: impl std::fmt::Debug) -> TestResult {
    let (got, want) = (format!("{got:?}"), format!("{want:?}"));
    if got == want {
        Ok(())
    } else {
        Err(fail(format!("{what}: got {got}, want {want}")))
    }
}

/// The live table's memory: 20k TIME-WAIT sockets in a private namespace cost at most 64
/// bytes each by the table's own accounting (trace's closing line), and the tracer's RSS
/// grows by no more than that plus a fixed margin (buffers that grow with the event rate,
/// the allocator's slack). No reconciles: a dump's transient buffers are not the table.
fn table_memory() -> TestResult {
    const SOCKETS: usize = 20_000;
    const PER_SOCKET: usize = 64;
    const MARGIN_KIB: usize = 2048;
    let ns = NamedNetns::new("tw-memory").map_err(fail)?;
    ns.exec(
        "sysctl",
        &[
            "-qw",
            "net.ipv4.tcp_max_tw_buckets=65536",
            "net.ipv4.ip_local_port_range=10000 60999",
            // Not the loopback reuse of newer kernels' default (2): every socket stays.
            "net.ipv4.tcp_tw_reuse=0",
        ],
    )
    .map_err(fail)?;
    // Lifetimes: the table is the same, the output a fifth of the transitions.
    let tracer =
        Tracer::start_in(&ns, &["--json", "--lifetimes", "--reconcile", "0"]).map_err(fail)?;
    let rss_kib = |pid: u32| -> Result<usize, Failed> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .map_err(|e| fail(e.to_string()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .ok_or_else(|| fail("no VmRSS"))
    };
    // Connections in chunks at a steady pace, clients closing first: the clients' sockets
    // stay in TIME-WAIT (60 s), the servers' close.
    let churn = |count: usize| -> Result<(), Failed> {
        ns.within(|| -> std::io::Result<()> {
            let listener = TcpListener::bind("127.0.0.1:7071")?;
            for chunk in 0..count.div_ceil(500) {
                for _ in 0..500.min(count - chunk * 500) {
                    let c = TcpStream::connect("127.0.0.1:7071")?;
                    let (s, _) = listener.accept()?;
                    drop(c);
                    drop(s);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Ok(())
        })
        .map_err(fail)?
        .map_err(|e| fail(e.to_string()))
    };
    // A warm-up, so buffers that grow with the event rate have grown before the baseline.
    churn(2_000)?;
    std::thread::sleep(Duration::from_secs(1));
    let before = rss_kib(tracer.pid())?;
    churn(SOCKETS)?;
    std::thread::sleep(Duration::from_secs(1));
    let after = rss_kib(tracer.pid())?;
    let (_, stderr, code) = tracer.stop().map_err(fail)?;
    // On a slow (emulated) machine the first ones may have run out their 60 s already, and
    // go on expiring: the table at its end must hold every one the kernel has after it.
    let kernel = time_wait_ports(&ns)?.len();
    let summary = stderr.last().cloned().unwrap_or_default();
    if code != 0 || !summary.contains(" 0 lost") {
        return Err(fail(format!("trace exited {code}: {summary}")));
    }
    // "live table: N sockets in B bytes (X each)"
    let table = summary
        .split("live table: ")
        .nth(1)
        .ok_or_else(|| fail(format!("no live table in: {summary}")))?;
    let mut words = table.split_whitespace();
    let sockets: usize = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
    let bytes: usize = words
        .nth(2)
        .and_then(|w| w.parse().ok())
        .unwrap_or(usize::MAX);
    if sockets < kernel || kernel < SOCKETS / 2 {
        return Err(fail(format!(
            "{sockets} sockets in the table, {kernel} TIME-WAIT in the kernel: {summary}"
        )));
    }
    // The table's memory is sized for the most it held: after expiries (a slow machine)
    // it is judged against the sockets made, not the fewer left.
    let held = sockets.max(SOCKETS);
    if bytes / held > PER_SOCKET {
        return Err(fail(format!(
            "{} bytes a socket in the live table (at most {PER_SOCKET}): {table}",
            bytes / held
        )));
    }
    let grown = after.saturating_sub(before);
    let allowed = SOCKETS * PER_SOCKET / 1024 + MARGIN_KIB;
    eprintln!(
        "live table: {sockets} sockets, {} bytes each; trace's RSS grew {grown} KiB for {SOCKETS} more (at most {allowed})",
        bytes / sockets
    );
    if grown > allowed {
        return Err(fail(format!(
            "trace's RSS grew {grown} KiB ({before} -> {after}) for {SOCKETS} TIME-WAIT sockets: more than {allowed} KiB"
        )));
    }
    Ok(())
}
