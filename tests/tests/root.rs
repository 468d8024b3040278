//! Root-only integration tests: they load the real kernel programs through the real
//! `sockstat` binary, open real sockets on loopback and assert the exact transitions.
//!
//! Without root every test here is reported as ignored ("needs root"), never as passed.
use std::{
    io::{Read, Write},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, TcpListener, TcpStream},
    os::fd::AsRawFd,
    time::Duration,
};

use libtest_mimic::{Arguments, Failed, Trial};
use serde_json::Value;
use sockstat_tests::{
    TestResult, Tracer, by_cookie, cookie_where, edges, free_port, is_root, port_of, s, tcp_state,
    wait_until,
};

const TCP_FIN_WAIT2: u8 = 5;

fn main() {
    let args = Arguments::from_args();
    let root = is_root();
    if !root {
        eprintln!(
            "\n*** sockstat root integration tests SKIPPED: not running as root (run `sudo cargo xtask test`) ***\n"
        );
    }
    let trials = vec![
        root_trial("trace_lifecycle_ipv4_tp_btf", root, || {
            lifecycle(IpAddr::V4(Ipv4Addr::LOCALHOST), "tp-btf")
        }),
        root_trial("trace_lifecycle_ipv6_tp_btf", root, || {
            lifecycle(IpAddr::V6(Ipv6Addr::LOCALHOST), "tp-btf")
        }),
        root_trial("trace_lifecycle_ipv4_classic_tracepoint", root, || {
            lifecycle(IpAddr::V4(Ipv4Addr::LOCALHOST), "tracepoint")
        }),
        root_trial("trace_lifecycle_ipv6_classic_tracepoint", root, || {
            lifecycle(IpAddr::V6(Ipv6Addr::LOCALHOST), "tracepoint")
        }),
        root_trial("trace_refused_connect_ipv4", root, || {
            refused(IpAddr::V4(Ipv4Addr::LOCALHOST))
        }),
        root_trial("trace_refused_connect_ipv6", root, || {
            refused(IpAddr::V6(Ipv6Addr::LOCALHOST))
        }),
        root_trial("trace_family_filter", root, family_filter),
        root_trial("trace_text_output_and_count", root, text_and_count),
        root_trial("trace_pid_filter", root, pid_filter),
        root_trial("trace_rejects_bad_ring_size", root, bad_ring_size),
    ];
    libtest_mimic::run(&args, trials).exit();
}

fn root_trial(name: &'static str, root: bool, f: fn() -> TestResult) -> Trial {
    Trial::test(name, f).with_ignored_flag(!root)
}

fn fail(msg: impl Into<String>) -> Failed {
    Failed::from(msg.into())
}

/// Listener, client and accepted child through a full orderly close (client closes first).
fn lifecycle(ip: IpAddr, hook: &str) -> TestResult {
    let port = free_port(ip)?;
    let tracer = Tracer::start(&["--json", "--port", &port.to_string(), "--hook", hook])?;

    let listener = TcpListener::bind((ip, port))?;
    let mut client = TcpStream::connect((ip, port))?;
    let (mut server, _) = listener.accept()?;
    let client_port = client.local_addr()?.port();

    client.write_all(b"hello")?;
    let mut buf = [0u8; 5];
    server.read_exact(&mut buf)?;
    // Client closes its side: FIN-WAIT-1, and FIN-WAIT-2 once the server ACKs the FIN.
    client.shutdown(Shutdown::Write)?;
    let mut rest = Vec::new();
    server.read_to_end(&mut rest)?;
    wait_until("client FIN-WAIT-2", || {
        tcp_state(client.as_raw_fd()) == Some(TCP_FIN_WAIT2)
    })?;
    // Server closes: LAST-ACK, then CLOSE when the client's ACK arrives; the client goes to
    // TIME-WAIT, which the tracepoint reports as FIN-WAIT-2 -> CLOSE.
    drop(server);
    wait_until("client leaves FIN-WAIT-2", || {
        tcp_state(client.as_raw_fd()) != Some(TCP_FIN_WAIT2)
    })?;
    drop(client);
    drop(listener);

    let events = tracer.stop_json()?;
    let me = std::process::id();
    let family = if ip.is_ipv4() { "inet" } else { "inet6" };

    let listener_cookie = cookie_where(&events, |e| {
        port_of(s(e, "local")) == port && s(e, "new") == "LISTEN"
    })
    .ok_or_else(|| fail(format!("no LISTEN event in {events:#?}")))?;
    let client_cookie = cookie_where(&events, |e| {
        port_of(s(e, "local")) == client_port && port_of(s(e, "remote")) == port
    })
    .ok_or_else(|| fail("no client events"))?;
    let child_cookie = cookie_where(&events, |e| {
        port_of(s(e, "local")) == port && port_of(s(e, "remote")) == client_port
    })
    .ok_or_else(|| fail("no server child events"))?;
    if listener_cookie == client_cookie
        || listener_cookie == child_cookie
        || client_cookie == child_cookie
    {
        return Err(fail("three sockets must have three cookies"));
    }

    let listener_events = by_cookie(&events, listener_cookie);
    let client_events = by_cookie(&events, client_cookie);
    let child_events = by_cookie(&events, child_cookie);
    check_eq(
        "listener",
        edges(&listener_events),
        ["CLOSE->LISTEN", "LISTEN->CLOSE"],
    )?;
    check_eq(
        "client",
        edges(&client_events),
        [
            "CLOSE->SYN-SENT",
            "SYN-SENT->ESTAB",
            "ESTAB->FIN-WAIT-1",
            "FIN-WAIT-1->FIN-WAIT-2",
            "FIN-WAIT-2->CLOSE",
        ],
    )?;
    // This kernel (6.18) clones the child from the listener and reports LISTEN -> SYN-RECV
    // for it; it never reports the request socket's NEW-SYN-RECV.
    check_eq(
        "server child",
        edges(&child_events),
        [
            "LISTEN->SYN-RECV",
            "SYN-RECV->ESTAB",
            "ESTAB->CLOSE-WAIT",
            "CLOSE-WAIT->LAST-ACK",
            "LAST-ACK->CLOSE",
        ],
    )?;
    if events.len() != listener_events.len() + client_events.len() + child_events.len() {
        return Err(fail(format!("unexpected extra events: {events:#?}")));
    }

    // Ports and addresses: the port is assigned after CLOSE -> SYN-SENT is reported.
    let loopback = |p: u16| match ip {
        IpAddr::V4(a) => format!("{a}:{p}"),
        IpAddr::V6(a) => format!("[{a}]:{p}"),
    };
    for (i, e) in client_events.iter().enumerate() {
        let want_local = if i == 0 {
            loopback(0)
        } else {
            loopback(client_port)
        };
        check_eq("client local", s(e, "local"), &want_local)?;
        check_eq("client remote", s(e, "remote"), loopback(port))?;
    }
    for e in &child_events {
        check_eq("child local", s(e, "local"), loopback(port))?;
        check_eq("child remote", s(e, "remote"), loopback(client_port))?;
    }
    for e in &events {
        check_eq("family", s(e, "family"), family)?;
        // Whenever an owner is claimed it is this process: a softirq's interrupted task is
        // never named.
        match s(e, "owner_source") {
            "task" => check_eq("owner pid", e["pid"].as_u64(), Some(u64::from(me)))?,
            "unknown" => check_eq("unknown owner pid", e["pid"].clone(), &Value::Null)?,
            other => return Err(fail(format!("owner_source {other:?}"))),
        }
        if e["ts_ns"].as_u64().unwrap_or(0) == 0 || s(e, "ts").len() < 20 {
            return Err(fail(format!("bad timestamps in {e}")));
        }
    }
    // Transitions the process makes itself run in its context: connect, listen, shutdown.
    for (who, ev) in [
        ("connect", client_events[0]),
        ("listen", listener_events[0]),
        ("shutdown", client_events[2]),
    ] {
        check_eq(who, s(ev, "owner_source"), "task")?;
        if ev["comm"].as_str().is_none_or(str::is_empty) {
            return Err(fail(format!("{who}: no comm in {ev}")));
        }
    }
    // The time spent in the previous state is known from the second transition on.
    check_eq(
        "first prev_state_ns",
        client_events[0]["prev_state_ns"].clone(),
        &Value::Null,
    )?;
    for e in &client_events[1..] {
        if !e["prev_state_ns"].is_u64() {
            return Err(fail(format!("prev_state_ns missing in {e}")));
        }
    }
    if hook == "tp-btf" {
        let netns = std::fs::read_link("/proc/self/ns/net")?;
        let want = netns.to_string_lossy().to_string();
        let got = format!("net:[{}]", events[0]["netns"]);
        check_eq("netns", got, &want)?;
    }
    Ok(())
}

/// Connecting where nobody listens: SYN answered by RST.
fn refused(ip: IpAddr) -> TestResult {
    let port = free_port(ip)?;
    let tracer = Tracer::start(&["--json", "--port", &port.to_string()])?;
    match TcpStream::connect_timeout(&(ip, port).into(), Duration::from_secs(2)) {
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
        other => return Err(fail(format!("expected ECONNREFUSED, got {other:?}"))),
    }
    let events = tracer.stop_json()?;
    let all: Vec<&Value> = events.iter().collect();
    check_eq(
        "refused",
        edges(&all),
        ["CLOSE->SYN-SENT", "SYN-SENT->CLOSE"],
    )?;
    check_eq(
        "same socket",
        events[0]["cookie"].clone(),
        &events[1]["cookie"],
    )?;
    Ok(())
}

/// `-6` sees the IPv6 connection and not the IPv4 one on the same port.
fn family_filter() -> TestResult {
    let port = free_port(IpAddr::V6(Ipv6Addr::LOCALHOST))?;
    let tracer = Tracer::start(&["--json", "-6", "--port", &port.to_string()])?;
    for ip in [
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ] {
        let _ = TcpStream::connect((ip, port));
    }
    let events = tracer.stop_json()?;
    let families: Vec<&str> = events.iter().map(|e| s(e, "family")).collect();
    check_eq("families", families, ["inet6", "inet6"])?;
    Ok(())
}

/// The text format on the real kernel, and `--count` stopping the tracer by itself.
fn text_and_count() -> TestResult {
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let port = free_port(ip)?;
    let tracer = Tracer::start(&["--port", &port.to_string(), "--count", "2"])?;
    let _ = TcpStream::connect((ip, port));
    let (stdout, stderr, code) = tracer.stop()?;
    check_eq("exit code", code, 0)?;
    let lines: Vec<&str> = stdout.lines().collect();
    if lines.len() != 3 || !lines[0].starts_with("TIME ") {
        return Err(fail(format!("expected header and two lines: {stdout}")));
    }
    let me = std::process::id().to_string();
    let first: Vec<&str> = lines[1].split_whitespace().collect();
    check_eq("pid column", first[1], me.as_str())?;
    check_eq(
        "first transition",
        &first[5..8],
        &["CLOSE", "->", "SYN-SENT"][..],
    )?;
    if !lines[2].contains("SYN-SENT -> CLOSE") || !lines[2].contains(&format!(":{port}")) {
        return Err(fail(format!("second line: {}", lines[2])));
    }
    if !stderr.iter().any(|l| l.contains("2 printed")) {
        return Err(fail(format!("summary: {stderr:?}")));
    }
    Ok(())
}

/// `--pid` keeps only transitions owned by that process.
fn pid_filter() -> TestResult {
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let port = free_port(ip)?;
    let tracer = Tracer::start(&["--json", "--port", &port.to_string(), "--pid", "1"])?;
    let _ = TcpStream::connect((ip, port));
    let events = tracer.stop_json()?;
    check_eq("events owned by pid 1", events.len(), 0)?;

    let me = std::process::id().to_string();
    let tracer = Tracer::start(&["--json", "--port", &port.to_string(), "--pid", &me])?;
    let _ = TcpStream::connect((ip, port));
    let events = tracer.stop_json()?;
    // CLOSE -> SYN-SENT runs in connect(); SYN-SENT -> CLOSE runs when connect() processes
    // the RST from the socket backlog, also in this process.
    if events.is_empty() || events.iter().any(|e| e["pid"].as_u64() != me.parse().ok()) {
        return Err(fail(format!("pid filter: {events:#?}")));
    }
    Ok(())
}

/// A ring size the kernel cannot take is refused in one line, before anything is loaded.
fn bad_ring_size() -> TestResult {
    let out = std::process::Command::new(sockstat_tests::sockstat_bin())
        .args(["trace", "--ring-kb", "1"])
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    check_eq("exit code", out.status.code(), Some(2))?;
    check_eq("stdout", out.stdout.len(), 0)?;
    check_eq("stderr lines", stderr.lines().count(), 1)?;
    if !stderr.contains("--ring-kb 1: must be between 4 and 1048576") {
        return Err(fail(format!("stderr: {stderr}")));
    }
    Ok(())
}

/// Compares Debug renderings, so `Vec<String>` matches `["a", "b"]` and `String` matches `&str`.
fn check_eq(what: &str, got: impl std::fmt::Debug, want: impl std::fmt::Debug) -> TestResult {
    let (got, want) = (format!("{got:?}"), format!("{want:?}"));
    if got == want {
        Ok(())
    } else {
        Err(fail(format!("{what}: got {got}, want {want}")))
    }
}
