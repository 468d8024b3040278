//! The exercises. Each builds its namespaces, drives real sockets step by step, and returns
//! the expected paths (with one line per edge) next to the traced ones, plus facts checked
//! in sock_diag and the namespace's counters.
use std::{
    io::{Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    os::fd::{AsRawFd, FromRawFd},
    time::{Duration, Instant},
};

use super::{
    Exercise, Fact, Lab, LabError, Outcome, RoleResult,
    course::Part,
    dump_tcp,
    host::{A_IP, B_IP, Host, NOWHERE_MAC, Pair},
    io,
    path::{Edge, Step, step},
};
use crate::tcp::{
    ReportedState,
    TcpState::{self, *},
};

const fn e(from: TcpState, to: TcpState) -> Edge {
    Edge::new(from, to)
}

/// The course, in teaching order (`course::Part`).
pub const EXERCISES: &[Exercise] = &[
    Exercise {
        name: "handshake",
        teaches: "the three-way handshake, client (SYN-SENT) and server (LISTEN, SYN-RECV) sides",
        part: Part::Opening,
        shows: &[
            e(Close, Listen),
            e(Close, SynSent),
            e(Listen, SynRecv),
            e(SynSent, Established),
            e(SynRecv, Established),
        ],
        run: handshake,
    },
    Exercise {
        name: "simultaneous-open",
        teaches: "both sides connect() to each other at once: SYN-SENT -> SYN-RECV -> ESTAB",
        part: Part::Opening,
        shows: &[e(SynSent, SynRecv), e(SynRecv, Established)],
        run: simultaneous_open,
    },
    Exercise {
        name: "fast-open",
        teaches: "TCP Fast Open: data in the SYN, the server's child accepted and read in SYN-RECV, and closed there: SYN-RECV -> FIN-WAIT-1",
        part: Part::Opening,
        shows: &[e(Listen, SynRecv), e(SynRecv, FinWait1)],
        run: fast_open,
    },
    Exercise {
        name: "refused",
        teaches: "connect() to a port nobody listens on: the RST answers the SYN",
        part: Part::Opening,
        shows: &[e(SynSent, Close)],
        run: refused,
    },
    Exercise {
        name: "syn-timeout",
        teaches: "a peer that drops packets: SYN-SENT, SYN retransmits, then ETIMEDOUT (tcp_syn_retries)",
        part: Part::Opening,
        shows: &[e(SynSent, Close)],
        run: syn_timeout,
    },
    Exercise {
        name: "active-close",
        teaches: "closing first: FIN-WAIT-1, FIN-WAIT-2, TIME-WAIT and its 60 s timer",
        part: Part::Closing,
        shows: &[
            e(Established, FinWait1),
            e(FinWait1, FinWait2),
            e(FinWait2, TimeWait),
        ],
        run: active_close,
    },
    Exercise {
        name: "passive-close",
        teaches: "being closed: CLOSE-WAIT until the application closes, then LAST-ACK",
        part: Part::Closing,
        shows: &[
            e(Established, CloseWait),
            e(CloseWait, LastAck),
            e(LastAck, Close),
        ],
        run: passive_close,
    },
    Exercise {
        name: "simultaneous-close",
        teaches: "both FINs in flight at once: FIN-WAIT-1 -> CLOSING -> TIME-WAIT on both sides",
        part: Part::Closing,
        shows: &[e(FinWait1, Closing), e(Closing, TimeWait)],
        run: simultaneous_close,
    },
    Exercise {
        name: "fin-with-ack",
        teaches: "the peer's FIN carries the ACK of ours: RFC 9293 goes FIN-WAIT-1 -> TIME-WAIT, Linux reports FIN-WAIT-2 in between",
        part: Part::Closing,
        shows: &[e(FinWait1, FinWait2), e(FinWait2, TimeWait)],
        run: fin_with_ack,
    },
    Exercise {
        name: "time-wait-end",
        teaches: "TIME-WAIT's end, observed: 60 s (2 MSL) after the close the timewait socket goes (takes about a minute)",
        part: Part::Closing,
        shows: &[e(TimeWait, Close)],
        run: time_wait_end,
    },
    Exercise {
        name: "abort",
        teaches: "SO_LINGER 0: close() sends RST, both sides go straight to CLOSE, no TIME-WAIT",
        part: Part::Closing,
        shows: &[e(Established, Close)],
        run: abort,
    },
    Exercise {
        name: "unread-close",
        teaches: "close() with data still unread sends an RST, not a FIN: ESTAB -> CLOSE on both sides, no TIME-WAIT",
        part: Part::Closing,
        shows: &[e(Established, Close)],
        run: unread_close,
    },
    Exercise {
        name: "listener-close",
        teaches: "a listener closed with connections still in its accept queue: LISTEN -> CLOSE, and every queued connection is reset",
        part: Part::Closing,
        shows: &[e(Listen, Close)],
        run: listener_close,
    },
    Exercise {
        name: "keepalive-death",
        teaches: "an idle connection whose peer fell silent: keepalive probes go unanswered, then ESTAB -> CLOSE with ETIMEDOUT",
        part: Part::Failing,
        shows: &[e(Established, Close)],
        run: keepalive_death,
    },
    Exercise {
        name: "rto-death",
        teaches: "data in flight to a peer that fell silent: retransmitted with backoff until tcp_retries2 runs out, then ESTAB -> CLOSE with ETIMEDOUT",
        part: Part::Failing,
        shows: &[e(Established, Close)],
        run: rto_death,
    },
    Exercise {
        name: "zero-window",
        teaches: "a receiver that stops reading: Recv-Q fills, the window closes, and the sender's persist timer probes it (ESTAB throughout)",
        part: Part::Failing,
        shows: &[],
        run: zero_window,
    },
    Exercise {
        name: "backlog-overflow",
        teaches: "SYN-RECV while the handshake is pending, and SYNs dropped when the accept queue is full",
        part: Part::Load,
        shows: &[e(Listen, SynRecv)],
        run: backlog_overflow,
    },
    Exercise {
        name: "syn-flood",
        teaches: "a SYN flood fills the SYN queue: syncookies answer instead, and real clients still connect without a SYN-RECV request",
        part: Part::Load,
        shows: &[e(Listen, SynRecv), e(SynRecv, Established)],
        run: syn_flood,
    },
    Exercise {
        name: "close-wait-leak",
        teaches: "peers close, the application never does: CLOSE-WAIT piles up, and how it is flagged",
        part: Part::Load,
        shows: &[e(Established, CloseWait)],
        run: close_wait_leak,
    },
    Exercise {
        name: "time-wait-churn",
        teaches: "many short connections: TIME-WAIT churn, and tcp_max_tw_buckets capping it",
        part: Part::Load,
        shows: &[e(FinWait2, TimeWait)],
        run: time_wait_churn,
    },
    Exercise {
        name: "tw-reuse",
        teaches: "one local port left: the next connect() fails, unless tcp_tw_reuse lets it take over its own TIME-WAIT (TIME-WAIT -> CLOSE, reused)",
        part: Part::Load,
        shows: &[e(TimeWait, Close)],
        run: tw_reuse,
    },
];

const SERVER: &str = "127.0.0.1:8080";
const SETTLE: Duration = Duration::from_millis(300);
const SETTLE_MAX: Duration = Duration::from_secs(3);

fn addr(s: &str) -> SocketAddr {
    // Only called with the constants above and formatted socket addresses.
    s.parse().unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)))
}

const LISTEN: Step = step(Close, Listen, "listen(): the socket waits for SYNs");
pub(crate) const CLIENT_OPEN: [Step; 2] = [
    step(Close, SynSent, "connect() sends SYN"),
    step(
        SynSent,
        Established,
        "SYN+ACK arrives; the client ACKs it: open",
    ),
];
pub(crate) const CHILD_OPEN: [Step; 2] = [
    step(
        Listen,
        SynRecv,
        "a SYN arrived and was answered with SYN+ACK; the final ACK creates this socket from the listener",
    ),
    step(
        SynRecv,
        Established,
        "the client's ACK completes the handshake",
    ),
];
const ACTIVE_CLOSE: [Step; 3] = [
    step(
        Established,
        FinWait1,
        "shutdown(SHUT_WR) or close(): FIN sent",
    ),
    step(
        FinWait1,
        FinWait2,
        "the peer ACKed our FIN; its own FIN is still to come",
    ),
    step(
        FinWait2,
        TimeWait,
        "the peer's FIN arrived and was ACKed; wait 2*MSL so late segments die",
    ),
];
const PASSIVE_CLOSE: [Step; 3] = [
    step(
        Established,
        CloseWait,
        "the peer's FIN arrived: read() returns 0; the application must close",
    ),
    step(CloseWait, LastAck, "close(): our FIN sent"),
    step(
        LastAck,
        Close,
        "the peer ACKed our FIN: gone, no TIME-WAIT on this side",
    ),
];

fn steps(parts: &[&[Step]]) -> Vec<Step> {
    parts.iter().flat_map(|p| p.iter().copied()).collect()
}

fn listen_on(host: &Host, at: &'static str, backlog: i32) -> Result<TcpListener, LabError> {
    listen_with(host, at, backlog, &[])
}

/// A socket option as (level, name, value).
type SockOpt = (libc::c_int, libc::c_int, libc::c_int);

/// `listen_on` with options set before listen() (TCP_FASTOPEN, SO_RCVBUF: children
/// inherit the buffer sizes).
fn listen_with(
    host: &Host,
    at: &'static str,
    backlog: i32,
    options: &'static [SockOpt],
) -> Result<TcpListener, LabError> {
    host.run(move || -> std::io::Result<TcpListener> {
        let sa = addr(at);
        // std's listen() always asks for 128; the backlog matters here, so use libc.
        // SAFETY: plain socket calls on an fd owned by the returned TcpListener.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let listener = TcpListener::from_raw_fd(fd);
            let one: libc::c_int = 1;
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_REUSEADDR,
                (&one as *const libc::c_int).cast(),
                4,
            );
            for &(level, name, value) in options {
                if libc::setsockopt(fd, level, name, (&value as *const libc::c_int).cast(), 4) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
            }
            let (raw, len) = sockaddr_in(sa);
            if libc::bind(fd, (&raw as *const libc::sockaddr_in).cast(), len) != 0
                || libc::listen(fd, backlog) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(listener)
        }
    })?
    .map_err(io(format!("listen on {at}")))
}

fn sockaddr_in(sa: SocketAddr) -> (libc::sockaddr_in, libc::socklen_t) {
    let ip = match sa {
        SocketAddr::V4(v4) => u32::from_ne_bytes(v4.ip().octets()),
        SocketAddr::V6(_) => 0,
    };
    let raw = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: sa.port().to_be(),
        sin_addr: libc::in_addr { s_addr: ip },
        sin_zero: [0; 8],
    };
    (
        raw,
        std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
    )
}

/// A non-blocking connect from `host` (optionally from a fixed local address); returns at
/// once with the SYN on its way.
fn start_connect(
    host: &Host,
    from: Option<SocketAddr>,
    to: SocketAddr,
) -> Result<TcpStream, LabError> {
    host.run(move || -> std::io::Result<TcpStream> {
        // SAFETY: plain socket calls on an fd owned by the returned TcpStream.
        unsafe {
            let fd = libc::socket(
                libc::AF_INET,
                libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                0,
            );
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let stream = TcpStream::from_raw_fd(fd);
            if let Some(from) = from {
                // A fixed port may still be held by this host's own TIME-WAIT.
                let one: libc::c_int = 1;
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_REUSEADDR,
                    (&one as *const libc::c_int).cast(),
                    4,
                );
                let (raw, len) = sockaddr_in(from);
                if libc::bind(fd, (&raw as *const libc::sockaddr_in).cast(), len) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            let (raw, len) = sockaddr_in(to);
            if libc::connect(fd, (&raw as *const libc::sockaddr_in).cast(), len) != 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::EINPROGRESS) {
                    return Err(e);
                }
            }
            Ok(stream)
        }
    })?
    .map_err(io(format!("connect to {to}")))
}

fn connect(host: &Host, to: &'static str) -> Result<TcpStream, LabError> {
    host.run(move || TcpStream::connect(to))?
        .map_err(io(format!("connect to {to}")))
}

fn endpoints(s: &TcpStream) -> Result<(SocketAddr, SocketAddr), LabError> {
    Ok((
        s.local_addr().map_err(io("local address"))?,
        s.peer_addr().map_err(io("peer address"))?,
    ))
}

fn settle(lab: &mut Lab) {
    lab.tracer.settle(SETTLE, SETTLE_MAX);
}

fn role(lab: &Lab, name: &str, ends: (SocketAddr, SocketAddr), expected: Vec<Step>) -> RoleResult {
    RoleResult::new(
        format!("{name} {} -> {}", ends.0, ends.1),
        expected,
        lab.path(ends.0, ends.1),
    )
}

fn listener_role(lab: &Lab, at: SocketAddr) -> RoleResult {
    let observed = lab
        .tracer
        .listener_cookie(at)
        .map(|c| lab.tracer.path(c))
        .unwrap_or_default();
    RoleResult::new(format!("listener {at}"), vec![LISTEN], observed)
}

fn single_host(lab: &mut Lab) -> Result<Host, LabError> {
    let host = Host::new("host")?;
    lab.tracer.watch(&host)?;
    Ok(host)
}

fn pair(lab: &mut Lab) -> Result<Pair, LabError> {
    let pair = Pair::new()?;
    lab.tracer.watch(&pair.a)?;
    lab.tracer.watch(&pair.b)?;
    Ok(pair)
}

/// listen, connect, accept on loopback: (listener, client, server side).
fn open_loopback(
    lab: &mut Lab,
    host: &Host,
) -> Result<(TcpListener, TcpStream, TcpStream), LabError> {
    lab.step(&format!("server: listen() on {SERVER}"));
    let listener = listen_on(host, SERVER, 16)?;
    lab.step(&format!("client: connect() to {SERVER}"));
    let client = connect(host, SERVER)?;
    lab.step("server: accept()");
    let (server, _) = listener.accept().map_err(io("accept"))?;
    Ok((listener, client, server))
}

fn handshake(lab: &mut Lab) -> Result<Outcome, LabError> {
    let host = single_host(lab)?;
    let (_listener, client, server) = open_loopback(lab, &host)?;
    settle(lab);
    let c = endpoints(&client)?;
    let s = endpoints(&server)?;
    Ok(Outcome {
        roles: vec![
            listener_role(lab, addr(SERVER)),
            role(lab, "client", c, steps(&[&CLIENT_OPEN])),
            role(lab, "server", s, steps(&[&CHILD_OPEN])),
        ],
        notes: vec![
            "RFC 9293 draws the server's LISTEN -> SYN-RECEIVED; Linux keeps the half-open connection as a request socket and reports the new socket's LISTEN -> SYN-RECV when the ACK arrives.".into(),
        ],
        ..Outcome::default()
    })
}

fn time_wait_timer(host: &Host, local: SocketAddr) -> Result<Fact, LabError> {
    let tw = dump_tcp(host)?.into_iter().find(|r| {
        r.state == TimeWait.kernel_number() && r.local == crate::diag::Endpoint::Inet(local)
    });
    let observed = tw.as_ref().and_then(|r| r.timer);
    Ok(match observed {
        Some(t) => Fact::new(
            "TIME-WAIT timer (sock_diag)",
            "about 60 s (TCP_TIMEWAIT_LEN)",
            format!("{:.1} s left", f64::from(t.expires_ms) / 1000.0),
            t.kind == 3 && (50_000..=60_000).contains(&t.expires_ms),
        ),
        None => Fact::new(
            "TIME-WAIT timer (sock_diag)",
            "about 60 s (TCP_TIMEWAIT_LEN)",
            "no TIME-WAIT socket found",
            false,
        ),
    })
}

fn active_close(lab: &mut Lab) -> Result<Outcome, LabError> {
    let host = single_host(lab)?;
    let (_listener, client, mut server) = open_loopback(lab, &host)?;
    let c = endpoints(&client)?;
    let s = endpoints(&server)?;
    lab.step("client: close() first");
    drop(client);
    lab.step("server: read() returns 0 (the client's FIN); close()");
    let mut buf = [0u8; 16];
    let eof = server.read(&mut buf).map_err(io("read"))? == 0;
    drop(server);
    settle(lab);
    let timer = time_wait_timer(&host, c.0)?;
    Ok(Outcome {
        roles: vec![
            role(lab, "client", c, steps(&[&CLIENT_OPEN, &ACTIVE_CLOSE])),
            role(lab, "server", s, steps(&[&CHILD_OPEN, &PASSIVE_CLOSE])),
        ],
        facts: vec![
            eof_fact("server read() after the client's FIN", eof),
            timer,
        ],
        notes: vec![
            "The client closed outright, as applications do: once its FIN is ACKed the kernel swaps the socket for a small timewait socket that waits in FIN-WAIT-2; the server's FIN moves it to TIME-WAIT. sockstat's kernel hooks see the swap (the timewait socket's timer) and the FIN (its skb, freed after the timewait socket handled it).".into(),
        ],
    })
}

fn passive_close(lab: &mut Lab) -> Result<Outcome, LabError> {
    let host = single_host(lab)?;
    let (_listener, mut client, server) = open_loopback(lab, &host)?;
    let c = endpoints(&client)?;
    let s = endpoints(&server)?;
    lab.step("server: close() first");
    drop(server);
    let cw = lab.tracer.wait_for(SETTLE_MAX, |ts| {
        ts.iter()
            .any(|t| t.local == c.0 && t.new == ReportedState::Known(CloseWait))
    });
    lab.step("client: sits in CLOSE-WAIT until it reads the EOF and closes");
    let mut buf = [0u8; 16];
    let eof = client.read(&mut buf).map_err(io("read"))? == 0;
    lab.step("client: close()");
    drop(client);
    settle(lab);
    Ok(Outcome {
        roles: vec![
            role(lab, "client", c, steps(&[&CLIENT_OPEN, &PASSIVE_CLOSE])),
            role(lab, "server", s, steps(&[&CHILD_OPEN, &ACTIVE_CLOSE])),
        ],
        facts: vec![
            Fact::new(
                "client in CLOSE-WAIT before it closed",
                "yes",
                if cw { "yes" } else { "no" },
                cw,
            ),
            eof_fact("client read() after the server's FIN", eof),
        ],
        ..Outcome::default()
    })
}

const SIMULTANEOUS_CLOSE: [Step; 3] = [
    step(
        Established,
        FinWait1,
        "shutdown(SHUT_WR): FIN sent (held in the queue)",
    ),
    step(
        FinWait1,
        Closing,
        "the peer's FIN arrived before the ACK of ours: both FINs crossed",
    ),
    step(
        Closing,
        TimeWait,
        "our FIN is ACKed: TIME-WAIT on both sides",
    ),
];

/// Both FINs wait in their senders' queues (see `Pair`) until both sides have shut down, so
/// each reaches a peer that has sent its own. Should one still arrive first, the run is not
/// a simultaneous close: that is reported in the notes and repeated (at most three times).
fn simultaneous_close(lab: &mut Lab) -> Result<Outcome, LabError> {
    let pair = pair(lab)?;
    let server_at: &'static str = "10.200.0.2:8080";
    let listener = listen_on(&pair.b, server_at, 16)?;
    let notes = vec![
        "Both FINs wait in their senders' kernels (the peer answers no ARP, so the neighbour stays unresolved and its packets are queued) while both sides shut down; then host a's queue is sent, then host b's: each FIN reaches a peer that is itself in FIN-WAIT-1.".to_string(),
    ];
    let why = "the FINs did not cross (one arrived before the other was sent)";
    until_crossed(lab, notes, why, |lab, _| {
        lab.step("host a connects to host b; host b accepts");
        let client = connect(&pair.a, server_at)?;
        let (server, _) = listener.accept().map_err(io("accept"))?;
        let c = endpoints(&client)?;
        let s = endpoints(&server)?;
        settle(lab);
        lab.step("hold every packet between the hosts");
        pair.hold()?;
        lab.step("both: shutdown(SHUT_WR) at the same moment");
        let (c2, s2) = (
            client.try_clone().map_err(io("clone"))?,
            server.try_clone().map_err(io("clone"))?,
        );
        pair.a
            .run(move || c2.shutdown(Shutdown::Write))?
            .map_err(io("shutdown"))?;
        pair.b
            .run(move || s2.shutdown(Shutdown::Write))?
            .map_err(io("shutdown"))?;
        lab.step("release host a's queue, then host b's: each FIN reaches a peer in FIN-WAIT-1");
        pair.release()?;
        wait_until_both(lab, [c.0, s.0], Duration::from_secs(5), |state| {
            matches!(state, ReportedState::Known(TimeWait | Close))
        });
        settle(lab);
        Ok(vec![
            role(
                lab,
                "host a",
                c,
                steps(&[&CLIENT_OPEN, &SIMULTANEOUS_CLOSE]),
            ),
            role(lab, "host b", s, steps(&[&CHILD_OPEN, &SIMULTANEOUS_CLOSE])),
        ])
    })
}

/// Waits (at most `max`) until each socket bound to one of `locals` has entered a state
/// `reached` accepts.
fn wait_until_both(
    lab: &mut Lab,
    locals: [SocketAddr; 2],
    max: Duration,
    reached: impl Fn(ReportedState) -> bool,
) {
    lab.tracer.wait_for(max, |ts| {
        locals
            .iter()
            .all(|l| ts.iter().any(|t| t.local == *l && reached(t.new)))
    });
}

/// Exercises whose packets must cross run up to three times until every role took its
/// path; each attempt that lost the race adds a note saying `why`.
fn until_crossed(
    lab: &mut Lab,
    notes: Vec<String>,
    why: &str,
    mut attempt: impl FnMut(&mut Lab, u16) -> Result<Vec<RoleResult>, LabError>,
) -> Result<Outcome, LabError> {
    until_passed(lab, notes, why, |lab, n| {
        Ok(Outcome {
            roles: attempt(lab, n)?,
            ..Outcome::default()
        })
    })
}

/// Runs an attempt up to three times until it passes; each failed attempt adds a note
/// saying `why`, before the last attempt's own notes.
fn until_passed(
    lab: &mut Lab,
    mut notes: Vec<String>,
    why: &str,
    mut attempt: impl FnMut(&mut Lab, u16) -> Result<Outcome, LabError>,
) -> Result<Outcome, LabError> {
    let mut last = Outcome::default();
    for n in 1..=3u16 {
        lab.restart();
        last = attempt(lab, n)?;
        if last.passed() {
            break;
        }
        notes.push(format!("attempt {n}: {why}; repeated"));
    }
    last.notes.splice(0..0, notes);
    Ok(last)
}

fn refused(lab: &mut Lab) -> Result<Outcome, LabError> {
    let host = single_host(lab)?;
    let to = addr("127.0.0.1:8081");
    lab.step("client: connect() to 127.0.0.1:8081, where nobody listens");
    let result = host.run(move || TcpStream::connect(to))?;
    let errno = result.as_ref().err().and_then(std::io::Error::raw_os_error);
    settle(lab);
    let cookie = lab
        .tracer
        .transitions
        .iter()
        .find(|t| t.remote == to)
        .map(|t| t.cookie);
    let observed = cookie.map(|c| lab.tracer.path(c)).unwrap_or_default();
    let cause = cookie
        .and_then(|c| lab.tracer.transitions_of(c).find_map(|t| t.cause))
        .map(|c| c.name())
        .unwrap_or_default();
    Ok(Outcome {
        roles: vec![RoleResult::new(
            format!("client -> {to}"),
            vec![
                step(Close, SynSent, "connect() sends SYN"),
                step(SynSent, Close, "an RST answers the SYN: connection refused"),
            ],
            observed,
        )],
        facts: vec![
            Fact::new(
                "connect() error",
                "ECONNREFUSED",
                errno_text(errno),
                errno == Some(libc::ECONNREFUSED),
            ),
            Fact::new(
                "close cause traced",
                "ECONNREFUSED",
                &cause,
                cause == "ECONNREFUSED",
            ),
        ],
        ..Outcome::default()
    })
}

fn errno_text(errno: Option<i32>) -> String {
    match errno {
        // Errors of calls the lab makes, which no connection ends with.
        Some(libc::EINPROGRESS) => "EINPROGRESS".to_string(),
        Some(libc::EISCONN) => "EISCONN".to_string(),
        Some(e) => crate::live::Cause::Errno(e).name(),
        None => "none (it connected)".to_string(),
    }
}

fn syn_timeout(lab: &mut Lab) -> Result<Outcome, LabError> {
    let host = single_host(lab)?;
    // A link whose far end is down: whatever is sent on it is dropped without an answer.
    host.ip(&[
        "link", "add", "veth-x", "type", "veth", "peer", "name", "veth-y",
    ])?;
    host.ip(&["addr", "add", "10.201.0.1/24", "dev", "veth-x"])?;
    host.ip(&["link", "set", "veth-x", "up"])?;
    host.neighbour("10.201.0.2", NOWHERE_MAC, "veth-x")?;
    host.sysctl("net/ipv4/tcp_syn_retries", "1")?;
    let to = addr("10.201.0.2:8080");
    lab.step(
        "client: connect() to 10.201.0.2:8080, a peer that never answers (tcp_syn_retries = 1)",
    );
    let started = Instant::now();
    let result = host.run(move || TcpStream::connect(to))?;
    let took = started.elapsed().as_secs_f64();
    let errno = result.as_ref().err().and_then(std::io::Error::raw_os_error);
    settle(lab);
    let cookie = lab
        .tracer
        .transitions
        .iter()
        .find(|t| t.remote == to)
        .map(|t| t.cookie);
    let observed = cookie.map(|c| lab.tracer.path(c)).unwrap_or_default();
    let retrans = cookie
        .and_then(|c| lab.tracer.retransmits.get(&c).copied())
        .unwrap_or(0);
    Ok(Outcome {
        roles: vec![RoleResult::new(
            format!("client -> {to}"),
            vec![
                step(Close, SynSent, "connect() sends SYN; nothing comes back"),
                step(
                    SynSent,
                    Close,
                    "the SYN is retransmitted until the tcp_syn_retries budget (about 3 s here) is spent: ETIMEDOUT",
                ),
            ],
            observed,
        )],
        facts: vec![
            Fact::new("connect() error", "ETIMEDOUT", errno_text(errno), errno == Some(libc::ETIMEDOUT)),
            Fact::new("SYN retransmissions traced", "at least 1", retrans.to_string(), retrans >= 1),
            Fact::new("time until connect() gave up", "about 3 s", format!("{took:.1} s"), (2.5..6.0).contains(&took)),
        ],
        notes: vec![
            "The budget is time, not a count: with tcp_syn_retries = 1 the kernel gives up about 3 s (1 s + 2 s of exponential backoff) after the first SYN. Kernels with tcp_syn_linear_timeouts retransmit the first SYNs 1 s apart, so more than one retransmission can fit.".into(),
        ],
    })
}

fn close_wait_leak(lab: &mut Lab) -> Result<Outcome, LabError> {
    let host = single_host(lab)?;
    lab.step(&format!(
        "server: listen() on {SERVER}; it accepts but never closes"
    ));
    let listener = listen_on(&host, SERVER, 16)?;
    let mut leaked = Vec::new();
    let mut first = None;
    let mut counts = Vec::new();
    for i in 1..=5 {
        lab.step(&format!("client {i}: connect(), then close() at once"));
        let client = connect(&host, SERVER)?;
        let (server, _) = listener.accept().map_err(io("accept"))?;
        let ends = (endpoints(&client)?, endpoints(&server)?);
        first.get_or_insert(ends);
        drop(client);
        leaked.push(server);
        settle(lab);
        let n = dump_tcp(&host)?
            .iter()
            .filter(|r| r.state == CloseWait.kernel_number())
            .count();
        counts.push(n.to_string());
    }
    let Some((c, s)) = first else {
        return Err(LabError::Setup("no connection was made".into()));
    };
    let finding = crate::report::leaks::close_wait(leaked.len() as u64, None);
    Ok(Outcome {
        roles: vec![
            role(lab, "client 1", c, steps(&[&CLIENT_OPEN, &ACTIVE_CLOSE[..2]])),
            role(
                lab,
                "server 1",
                s,
                steps(&[
                    &CHILD_OPEN,
                    &[step(
                        Established,
                        CloseWait,
                        "the client's FIN arrived; the application never calls close(): stuck",
                    )],
                ]),
            ),
        ],
        facts: vec![
            Fact::new("CLOSE-WAIT sockets after each client", "1 2 3 4 5", counts.join(" "), counts.join(" ") == "1 2 3 4 5"),
            Fact::new(
                "sockstat report",
                "flags the CLOSE-WAIT leak",
                finding.as_ref().map_or("nothing flagged".to_string(), |f| f.message.clone()),
                finding.is_some(),
            ),
        ],
        notes: vec![
            "The clients' sockets wait in FIN-WAIT-2 for a FIN that never comes (closed, they linger as orphans for tcp_fin_timeout); the server's sockets stay in CLOSE-WAIT for as long as the process keeps them open.".into(),
        ],
    })
}

fn backlog_overflow(lab: &mut Lab) -> Result<Outcome, LabError> {
    let pair = pair(lab)?;
    let server_at: &'static str = "10.200.0.2:8080";
    let server = addr(server_at);
    lab.step("host b: listen() with a backlog of 1, and never accept()");
    let listener = listen_on(&pair.b, server_at, 1)?;
    lab.step("host a: first connection, completed and queued for accept()");
    let first = connect(&pair.a, server_at)?;
    lab.step("hold host b's packets in its queue, so its SYN+ACK does not reach host a yet");
    pair.hold_b(true)?;
    lab.step("host a: second connect(): host b keeps a half-open request in SYN-RECV");
    let second = start_connect(&pair.a, None, server)?;
    std::thread::sleep(Duration::from_millis(300));
    let half_open = dump_tcp(&pair.b)?
        .iter()
        .filter(|r| r.state == SynRecv.kernel_number())
        .count();
    lab.step("release: host b's queued SYN+ACK completes the second handshake");
    pair.hold_b(false)?;
    let second_local = second.local_addr().map_err(io("local address"))?;
    lab.tracer.wait_for(Duration::from_secs(5), |ts| {
        ts.iter()
            .any(|t| t.local == second_local && t.new == ReportedState::Known(Established))
    });
    let overflows_before = super::tcp_ext(&pair.b, "ListenOverflows")?;
    lab.step(
        "host a: third connect(): the accept queue (backlog + 1 = 2) is full, its SYNs are dropped",
    );
    let third = start_connect(&pair.a, None, server)?;
    let third_local = third.local_addr().map_err(io("local address"))?;
    std::thread::sleep(Duration::from_millis(1500));
    drop(third);
    settle(lab);
    let overflows = super::tcp_ext(&pair.b, "ListenOverflows")?.saturating_sub(overflows_before);
    let queue = dump_tcp(&pair.b)?
        .into_iter()
        .find(|r| r.state == Listen.kernel_number())
        .map(|r| (r.recv_q, r.send_q));
    let child = lab.path(server, second_local);
    let roles = vec![
        RoleResult::new(
            format!("second client {second_local} -> {server}"),
            vec![
                step(Close, SynSent, "connect() sends SYN"),
                step(SynSent, Established, "the held SYN+ACK arrives at last"),
            ],
            lab.path(second_local, server),
        ),
        RoleResult::new(
            format!("second server side {server} -> {second_local}"),
            CHILD_OPEN.to_vec(),
            child,
        ),
        RoleResult::new(
            format!("third client {third_local} -> {server}"),
            vec![
                step(
                    Close,
                    SynSent,
                    "connect() sends SYN; the full queue drops it",
                ),
                step(
                    SynSent,
                    Close,
                    "the SYN retransmission is dropped too; the client gives up",
                ),
            ],
            lab.path(third_local, server),
        ),
    ];
    drop((first, second, listener));
    Ok(Outcome {
        roles,
        facts: vec![
            Fact::new("half-open requests in SYN-RECV on host b (sock_diag)", "1", half_open.to_string(), half_open == 1),
            Fact::new("listener queue (Recv-Q/Send-Q = queued/backlog)", "2/1", queue.map_or("no listener".into(), |(r, s)| format!("{r}/{s}")), queue == Some((2, 1))),
            Fact::new("TcpExt ListenOverflows on host b", "at least 1", overflows.to_string(), overflows >= 1),
        ],
        notes: vec![
            "A half-open connection is a request socket: sock_diag lists it in SYN-RECV, but it becomes a real socket (and shows up in the trace) only when the final ACK arrives.".into(),
        ],
    })
}

fn time_wait_churn(lab: &mut Lab) -> Result<Outcome, LabError> {
    const CONNECTIONS: usize = 300;
    const CAP: usize = 100;
    let host = single_host(lab)?;
    host.sysctl("net/ipv4/tcp_max_tw_buckets", &CAP.to_string())?;
    let listener = listen_on(&host, SERVER, 512)?;
    let overflow_before = super::tcp_ext(&host, "TCPTimeWaitOverflow")?;
    lab.step(&format!(
        "{CONNECTIONS} short connections, each closed by the client first (tcp_max_tw_buckets = {CAP})"
    ));
    let started = Instant::now();
    let mut first = None;
    for _ in 0..CONNECTIONS {
        let client = connect(&host, SERVER)?;
        let (mut server, _) = listener.accept().map_err(io("accept"))?;
        first.get_or_insert((endpoints(&client)?, endpoints(&server)?));
        // The client closes first, the server when it has read the client's FIN.
        drop(client);
        let mut buf = [0u8; 1];
        let _ = server.read(&mut buf);
        drop(server);
    }
    let rate = CONNECTIONS as f64 / started.elapsed().as_secs_f64();
    settle(lab);
    let Some((c, s)) = first else {
        return Err(LabError::Setup("no connection was made".into()));
    };
    let time_wait = dump_tcp(&host)?
        .iter()
        .filter(|r| r.state == TimeWait.kernel_number())
        .count();
    let overflow = super::tcp_ext(&host, "TCPTimeWaitOverflow")?.saturating_sub(overflow_before);
    let clients: Vec<&crate::live::Transition> = lab
        .tracer
        .transitions
        .iter()
        .filter(|t| t.remote == addr(SERVER))
        .collect();
    let entered = clients
        .iter()
        .filter(|t| t.new == ReportedState::Known(TimeWait))
        .count();
    let overflowed = clients
        .iter()
        .filter(|t| t.cause == Some(crate::live::Cause::TwOverflow))
        .count();
    // Only the first CAP clients find room; the rest are gone at their close.
    let lingering = clients
        .iter()
        .filter(|t| {
            t.new == ReportedState::Known(FinWait2)
                && !clients
                    .iter()
                    .any(|u| u.cookie == t.cookie && u.old == ReportedState::Known(FinWait2))
        })
        .count();
    Ok(Outcome {
        roles: vec![
            role(
                lab,
                "first client",
                c,
                steps(&[&CLIENT_OPEN, &ACTIVE_CLOSE]),
            ),
            role(
                lab,
                "first server",
                s,
                steps(&[&CHILD_OPEN, &PASSIVE_CLOSE]),
            ),
        ],
        facts: vec![
            Fact::new(
                "churn",
                "hundreds of connections per second",
                format!("{rate:.0} connections/s"),
                rate > 50.0,
            ),
            Fact::new(
                "clients traced into TIME-WAIT",
                format!("{CAP} (tcp_max_tw_buckets)"),
                entered.to_string(),
                entered == CAP,
            ),
            Fact::new(
                "clients closed with cause tw-overflow",
                (CONNECTIONS - CAP).to_string(),
                overflowed.to_string(),
                overflowed == CONNECTIONS - CAP,
            ),
            Fact::new(
                "clients left in FIN-WAIT-2",
                "0".to_string(),
                lingering.to_string(),
                lingering == 0,
            ),
            Fact::new(
                "TIME-WAIT sockets in sock_diag",
                format!("{CAP} (tcp_max_tw_buckets)"),
                time_wait.to_string(),
                time_wait == CAP,
            ),
            Fact::new(
                "TcpExt TCPTimeWaitOverflow",
                (CONNECTIONS - CAP).to_string(),
                overflow.to_string(),
                overflow as usize == CONNECTIONS - CAP,
            ),
        ],
        notes: vec![
            "Past tcp_max_tw_buckets the kernel closes the socket without a timewait socket (\"time wait bucket table overflow\"): it is gone at once. The kernel hooks see that no timewait timer was armed for it, so it closes with cause tw-overflow and never shows in TIME-WAIT.".to_string(),
        ],
    })
}

fn abort(lab: &mut Lab) -> Result<Outcome, LabError> {
    let host = single_host(lab)?;
    let (_listener, client, mut server) = open_loopback(lab, &host)?;
    let c = endpoints(&client)?;
    let s = endpoints(&server)?;
    lab.step("client: setsockopt(SO_LINGER, {on, 0}); close(): an RST instead of a FIN");
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    set_option(
        &client,
        libc::SOL_SOCKET,
        libc::SO_LINGER,
        &linger,
        "SO_LINGER",
    )?;
    drop(client);
    let (reset, read) = read_reset(&mut server);
    let _ = server.write(b"x");
    drop(server);
    settle(lab);
    let mut facts = vec![Fact::new("server read()", "ECONNRESET", read, reset)];
    facts.extend(reset_facts(lab, &host, ("client", c.0), ("server", s.0))?);
    Ok(Outcome {
        roles: vec![
            role(
                lab,
                "client",
                c,
                steps(&[
                    &CLIENT_OPEN,
                    &[step(
                        Established,
                        Close,
                        "close() with linger 0: RST sent, the socket is gone",
                    )],
                ]),
            ),
            role(
                lab,
                "server",
                s,
                steps(&[
                    &CHILD_OPEN,
                    &[step(
                        Established,
                        Close,
                        "the RST arrived: the connection is reset",
                    )],
                ]),
            ),
        ],
        facts,
        ..Outcome::default()
    })
}

const SIMULTANEOUS_OPEN: [Step; 3] = [
    step(Close, SynSent, "connect() sends SYN (held in the queue)"),
    step(
        SynSent,
        SynRecv,
        "the peer's SYN arrived while ours was unanswered: SYN+ACK sent",
    ),
    step(
        SynRecv,
        Established,
        "the peer's SYN+ACK acknowledges our SYN: open",
    ),
];

/// Held and released like the simultaneous close, and likewise repeated if the SYNs did
/// not cross.
fn simultaneous_open(lab: &mut Lab) -> Result<Outcome, LabError> {
    let pair = pair(lab)?;
    let notes = vec![
        "Both hosts connect() from fixed ports to each other while their SYNs wait in their senders' queues (the peer answers no ARP), then the queues are sent: each SYN reaches a peer that is itself in SYN-SENT. Neither side ever listens.".to_string(),
    ];
    let why = "the SYNs did not cross (one side answered as a plain handshake)";
    until_crossed(lab, notes, why, |lab, attempt| {
        let a_at = addr(&format!("{A_IP}:{}", 9000 + attempt));
        let b_at = addr(&format!("{B_IP}:{}", 9100 + attempt));
        pair.hold()?;
        lab.step(&format!(
            "both: connect() {a_at} <-> {b_at} at the same moment"
        ));
        let a = start_connect(&pair.a, Some(a_at), b_at)?;
        let b = start_connect(&pair.b, Some(b_at), a_at)?;
        lab.step("release host a's queue, then host b's: each SYN reaches a peer in SYN-SENT");
        pair.release()?;
        wait_until_both(lab, [a_at, b_at], Duration::from_secs(6), |state| {
            state == ReportedState::Known(Established)
        });
        settle(lab);
        let roles = vec![
            role(lab, "host a", (a_at, b_at), SIMULTANEOUS_OPEN.to_vec()),
            role(lab, "host b", (b_at, a_at), SIMULTANEOUS_OPEN.to_vec()),
        ];
        // Held until the roles are read: closing them first would add edges.
        drop((a, b));
        Ok(roles)
    })
}

/// The exercise names, for `lab run` completion and errors.
pub fn names() -> Vec<&'static str> {
    EXERCISES.iter().map(|e| e.name).collect()
}

pub fn find(name: &str) -> Option<&'static Exercise> {
    EXERCISES.iter().find(|e| e.name == name)
}

/// How the server side left: the cause its close was given.
fn close_cause(lab: &Lab, local: SocketAddr) -> String {
    lab.tracer
        .transitions
        .iter()
        .filter(|t| t.local == local)
        .find_map(|t| t.cause)
        .map(|c| c.name())
        .unwrap_or_default()
}

/// What an abortive close leaves: the side that sent the RST closed with rst-out, the
/// other with rst-in, and no TIME-WAIT on `host`. Each side: its name and local address.
fn reset_facts(
    lab: &Lab,
    host: &Host,
    (sender, sender_at): (&str, SocketAddr),
    (receiver, receiver_at): (&str, SocketAddr),
) -> Result<Vec<Fact>, LabError> {
    let (sent, received) = (close_cause(lab, sender_at), close_cause(lab, receiver_at));
    let time_wait = dump_tcp(host)?
        .iter()
        .filter(|r| r.state == TimeWait.kernel_number())
        .count();
    Ok(vec![
        Fact::new(
            format!("{sender} close cause"),
            "rst-out",
            &sent,
            sent == "rst-out",
        ),
        Fact::new(
            format!("{receiver} close cause"),
            "rst-in",
            &received,
            received == "rst-in",
        ),
        Fact::new(
            "TIME-WAIT sockets",
            "0",
            time_wait.to_string(),
            time_wait == 0,
        ),
    ])
}

/// setsockopt(level, name, value) on `s`; `what` names it in an error.
fn set_option<T>(
    s: &TcpStream,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
    what: &str,
) -> Result<(), LabError> {
    // SAFETY: `value` is a live, initialised T and the length passed is its size; the fd
    // belongs to an open socket for the whole call.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(LabError::Io {
            what: what.into(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// What a connection dead of a timer shows (`keepalive-death`, `rto-death`): read() fails
/// with ETIMEDOUT, and the close the tracer saw carries the timer's cause.
fn timed_out_facts(lab: &Lab, local: SocketAddr, errno: Option<i32>) -> [Fact; 2] {
    let cause = close_cause(lab, local);
    [
        Fact::new(
            "host a read() error",
            "ETIMEDOUT",
            errno_text(errno),
            errno == Some(libc::ETIMEDOUT),
        ),
        Fact::new(
            "client close cause (traced)",
            "timeout (ETIMEDOUT)",
            &cause,
            cause == "timeout",
        ),
    ]
}

/// Blocks in read() on `s` for at most `max`: the errno it failed with, and the seconds it
/// took.
fn read_error(s: &mut TcpStream, max: Duration) -> Result<(Option<i32>, f64), LabError> {
    let started = Instant::now();
    s.set_read_timeout(Some(max)).map_err(io("read timeout"))?;
    let mut buf = [0u8; 1];
    let read = s.read(&mut buf);
    let errno = read.as_ref().err().and_then(std::io::Error::raw_os_error);
    Ok((errno, started.elapsed().as_secs_f64()))
}

/// A read() that should have found the peer's FIN.
fn eof_fact(what: &str, eof: bool) -> Fact {
    Fact::new(what, "0 (end of file)", if eof { "0" } else { "data" }, eof)
}

/// Whether `read()` on `s` fails with ECONNRESET (the peer's RST), and what it gave.
fn read_reset(s: &mut TcpStream) -> (bool, String) {
    let mut buf = [0u8; 16];
    loop {
        match s.read(&mut buf) {
            Ok(n) if n > 0 => continue,
            Ok(_) => return (false, "EOF (a FIN)".to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return (true, "ECONNRESET".to_string());
            }
            Err(e) => return (false, e.to_string()),
        }
    }
}

fn unread_close(lab: &mut Lab) -> Result<Outcome, LabError> {
    let host = single_host(lab)?;
    let (_listener, mut client, server) = open_loopback(lab, &host)?;
    let c = endpoints(&client)?;
    let s = endpoints(&server)?;
    lab.step("client: write() 5 bytes; the server never reads them");
    client.write_all(b"hello").map_err(io("write"))?;
    settle(lab);
    lab.step("server: close() with the 5 bytes unread: RFC 2525 says reset, and Linux does");
    drop(server);
    settle(lab);
    let (reset, read) = read_reset(&mut client);
    drop(client);
    settle(lab);
    let mut facts = vec![Fact::new("client read()", "ECONNRESET", read, reset)];
    facts.extend(reset_facts(lab, &host, ("server", s.0), ("client", c.0))?);
    Ok(Outcome {
        roles: vec![
            role(
                lab,
                "client",
                c,
                steps(&[
                    &CLIENT_OPEN,
                    &[step(
                        Established,
                        Close,
                        "the server's RST arrived: the connection is reset",
                    )],
                ]),
            ),
            role(
                lab,
                "server",
                s,
                steps(&[
                    &CHILD_OPEN,
                    &[step(
                        Established,
                        Close,
                        "close() found unread data: RST sent instead of a FIN, the socket is gone",
                    )],
                ]),
            ),
        ],
        facts,
        notes: vec![
            "The same close() after reading everything would send a FIN (see active-close): the unread bytes are what turn it into an abort, so the peer learns its data was never consumed.".into(),
        ],
    })
}

/// Connections left in the accept queue by `listener-close`.
const QUEUED: usize = 3;

fn listener_close(lab: &mut Lab) -> Result<Outcome, LabError> {
    let host = single_host(lab)?;
    lab.step(&format!("server: listen() on {SERVER}, and never accept()"));
    let listener = listen_on(&host, SERVER, 16)?;
    let mut clients = Vec::new();
    for i in 1..=QUEUED {
        lab.step(&format!(
            "client {i}: connect(): the handshake completes and the connection waits in the accept queue"
        ));
        let client = connect(&host, SERVER)?;
        // Asked now: once reset, a socket has no peer to name.
        let ends = endpoints(&client)?;
        clients.push((client, ends));
    }
    settle(lab);
    lab.step("server: connect() and send() on the listener: RFC 9293 would take LISTEN -> SYN-SENT, Linux refuses");
    let (connect_errno, send_errno) = listener_as_client(&listener);
    lab.step("server: close() the listener: LISTEN -> CLOSE, and each queued connection is reset");
    drop(listener);
    settle(lab);
    let mut roles = vec![RoleResult::new(
        format!("listener {SERVER}"),
        vec![
            LISTEN,
            step(
                Listen,
                Close,
                "close() on the listener: it stops listening, and the queue goes with it",
            ),
        ],
        lab.tracer
            .listener_cookie(addr(SERVER))
            .map(|c| lab.tracer.path(c))
            .unwrap_or_default(),
    )];
    let mut facts = Vec::new();
    for (i, (client, c)) in clients.iter_mut().enumerate() {
        let c = *c;
        let (reset, read) = read_reset(client);
        facts.push(Fact::new(
            format!("client {} read()", i + 1),
            "ECONNRESET",
            read,
            reset,
        ));
        roles.push(role(
            lab,
            &format!("client {}", i + 1),
            c,
            steps(&[
                &CLIENT_OPEN,
                &[step(
                    Established,
                    Close,
                    "the queued connection's RST arrived: reset",
                )],
            ]),
        ));
        roles.push(role(
            lab,
            &format!("queued {}", i + 1),
            (c.1, c.0),
            steps(&[
                &CHILD_OPEN,
                &[step(
                    Established,
                    Close,
                    "never accepted: the listener's close aborts it with an RST",
                )],
            ]),
        ));
    }
    drop(clients);
    settle(lab);
    facts.push(Fact::new(
        "connect() on the listener (RFC 9293: LISTEN -> SYN-SENT)",
        "EISCONN",
        errno_text(connect_errno),
        connect_errno == Some(libc::EISCONN),
    ));
    facts.push(Fact::new(
        "send() on the listener (RFC 9293: SEND in LISTEN sends a SYN)",
        "EPIPE",
        errno_text(send_errno),
        send_errno == Some(libc::EPIPE),
    ));
    let left = dump_tcp(&host)?.len();
    facts.push(Fact::new(
        "sockets left in the namespace",
        "0",
        left.to_string(),
        left == 0,
    ));
    Ok(Outcome {
        roles,
        facts,
        notes: vec![
            "The queued connections were ESTABLISHED on both sides: the handshake needs no accept(). Only the listener's close tells their clients that nobody will ever read.".into(),
            "RFC 9293 lets a SEND turn a listener into a client (LISTEN -> SYN-SENT). Linux never does: the listener stays in LISTEN and the calls fail.".into(),
        ],
    })
}

/// Keepalive for `keepalive-death`: first probe after this many idle seconds, then one a
/// second, and death after `KEEPALIVE_PROBES` unanswered (TCP_KEEPIDLE, TCP_KEEPINTVL and
/// TCP_KEEPCNT would set the same per socket).
const KEEPALIVE_IDLE: i32 = 1;
const KEEPALIVE_PROBES: i32 = 3;

/// Keepalive from the namespace's sysctls (read when SO_KEEPALIVE arms the timer), the
/// socket asking only for SO_KEEPALIVE.
fn set_keepalive(host: &Host, s: &TcpStream) -> Result<(), LabError> {
    host.sysctl("net/ipv4/tcp_keepalive_time", &KEEPALIVE_IDLE.to_string())?;
    host.sysctl("net/ipv4/tcp_keepalive_intvl", "1")?;
    host.sysctl(
        "net/ipv4/tcp_keepalive_probes",
        &KEEPALIVE_PROBES.to_string(),
    )?;
    let on: libc::c_int = 1;
    set_option(s, libc::SOL_SOCKET, libc::SO_KEEPALIVE, &on, "SO_KEEPALIVE")
}

fn keepalive_death(lab: &mut Lab) -> Result<Outcome, LabError> {
    let pair = pair(lab)?;
    let server_at: &'static str = "10.200.0.2:8080";
    let listener = listen_on(&pair.b, server_at, 16)?;
    lab.step("host a connects to host b; host b accepts; nobody sends anything");
    let mut client = connect(&pair.a, server_at)?;
    let (server, _) = listener.accept().map_err(io("accept"))?;
    let c = endpoints(&client)?;
    let s = endpoints(&server)?;
    lab.step(&format!(
        "host a: tcp_keepalive_time {KEEPALIVE_IDLE} s, tcp_keepalive_intvl 1 s, tcp_keepalive_probes {KEEPALIVE_PROBES} (its sysctls); SO_KEEPALIVE on"
    ));
    set_keepalive(&pair.a, &client)?;
    settle(lab);
    lab.step("host b falls silent: host a's packets to it are held from now on");
    pair.hold_a(true)?;
    // Counted from the silence on: probes answered before it (while --slow pauses) reset
    // the count the kernel gives up on.
    let probes_before = super::tcp_ext(&pair.a, "TCPKeepAlive")?;
    let (errno, took) = read_error(&mut client, Duration::from_secs(15))?;
    let probes = super::tcp_ext(&pair.a, "TCPKeepAlive")?.saturating_sub(probes_before);
    settle(lab);
    let timed_out = timed_out_facts(lab, c.0, errno);
    let outcome = Outcome {
        roles: vec![
            role(
                lab,
                "client",
                c,
                steps(&[
                    &CLIENT_OPEN,
                    &[step(
                        Established,
                        Close,
                        "idle, probed, never answered: the kernel gives up with ETIMEDOUT",
                    )],
                ]),
            ),
            role(
                lab,
                "server",
                s,
                steps(&[&CHILD_OPEN]),
            ),
        ],
        // The kernel resets the connection as it gives up, then reports ETIMEDOUT: the
        // timer is the cause, not the courtesy RST.
        facts: [
            timed_out.to_vec(),
            vec![
            Fact::new(
                "keepalive probes sent (TcpExt TCPKeepAlive)",
                format!("{KEEPALIVE_PROBES} (tcp_keepalive_probes)"),
                probes.to_string(),
                probes == KEEPALIVE_PROBES as u64,
            ),
            Fact::new(
                "time until the connection died",
                "about 4 s (1 s idle, 3 probes 1 s apart)",
                format!("{took:.1} s"),
                (3.0..8.0).contains(&took),
            ),
            ],
        ]
        .concat(),
        notes: vec![
            "As it gives up, Linux sends an RST (reason tcp-keepalive-timeout from 6.10 on) in case the peer is still there, then reports ETIMEDOUT to the application: sockstat traces the RST (rst-out) and gives the close the timer's cause, timeout.".into(),
            "Host b never learns of it: its side stays ESTABLISHED until it sends something, and the RST that answers tells it then.".into(),
        ],
    };
    pair.release()?;
    drop((client, server));
    Ok(outcome)
}

/// connect() and send() on a listening socket: the errno each fails with (`None`: it did
/// not fail).
fn listener_as_client(listener: &TcpListener) -> (Option<i32>, Option<i32>) {
    let fd = listener.as_raw_fd();
    let (raw, len) = sockaddr_in(addr("127.0.0.1:8081"));
    // SAFETY: `raw` is a valid sockaddr_in of `len` bytes and `fd` an open socket for the
    // whole call.
    let connected = unsafe { libc::connect(fd, (&raw as *const libc::sockaddr_in).cast(), len) };
    let connect_errno = (connected != 0)
        .then(std::io::Error::last_os_error)
        .and_then(|e| e.raw_os_error());
    let byte = [b'x'];
    // SAFETY: one readable byte at `byte`; MSG_NOSIGNAL keeps EPIPE from raising SIGPIPE.
    let sent = unsafe { libc::send(fd, byte.as_ptr().cast(), 1, libc::MSG_NOSIGNAL) };
    let send_errno = (sent < 0)
        .then(std::io::Error::last_os_error)
        .and_then(|e| e.raw_os_error());
    (connect_errno, send_errno)
}

/// The kernel's state of `s` (TCP_INFO's tcpi_state), by its ss name.
fn kernel_state(s: &TcpStream) -> String {
    // SAFETY: tcp_info is plain old data; a zeroed one is valid.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` is writable for `len` bytes and the fd is open for the whole call.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return format!("unknown ({})", std::io::Error::last_os_error());
    }
    TcpState::from_kernel(info.tcpi_state).map_or_else(
        || format!("state {}", info.tcpi_state),
        |st| st.ss_name().to_string(),
    )
}

/// A non-blocking socket on `host` that sends `data` with its SYN to `to` (sendto with
/// MSG_FASTOPEN). Also returns what sendto gave: the bytes that went into the SYN, or the
/// error (EINPROGRESS when there was no cookie yet: a plain SYN that asks for one).
fn fast_open_connect(
    host: &Host,
    to: SocketAddr,
    data: &'static [u8],
) -> Result<(TcpStream, Result<usize, i32>), LabError> {
    host.run(
        move || -> std::io::Result<(TcpStream, Result<usize, i32>)> {
            // SAFETY: plain socket calls on an fd owned by the returned TcpStream; `data` is
            // readable for its length and `raw` is a valid sockaddr_in of `len` bytes.
            unsafe {
                let fd = libc::socket(
                    libc::AF_INET,
                    libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                    0,
                );
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let stream = TcpStream::from_raw_fd(fd);
                let (raw, len) = sockaddr_in(to);
                let sent = libc::sendto(
                    fd,
                    data.as_ptr().cast(),
                    data.len(),
                    libc::MSG_FASTOPEN,
                    (&raw as *const libc::sockaddr_in).cast(),
                    len,
                );
                let result = if sent < 0 {
                    Err(std::io::Error::last_os_error()
                        .raw_os_error()
                        .unwrap_or_default())
                } else {
                    Ok(sent as usize)
                };
                Ok((stream, result))
            }
        },
    )?
    .map_err(io(format!("sendto(MSG_FASTOPEN) to {to}")))
}

fn sendto_text(r: Result<usize, i32>) -> String {
    match r {
        Ok(n) => format!("{n} bytes, in the SYN"),
        Err(e) => errno_text(Some(e)),
    }
}

/// Waits until the socket bound to `local` has reached `state`.
fn wait_state(lab: &mut Lab, local: SocketAddr, state: TcpState, max: Duration) -> bool {
    lab.tracer.wait_for(max, |ts| {
        ts.iter()
            .any(|t| t.local == local && t.new == ReportedState::Known(state))
    })
}

const FAST_OPEN_DATA: &[u8] = b"hello";

fn fast_open(lab: &mut Lab) -> Result<Outcome, LabError> {
    let pair = pair(lab)?;
    let server_at: &'static str = "10.200.0.2:8080";
    let server = addr(server_at);
    // 1: the client side of Fast Open, 2: the server side.
    pair.a.sysctl("net/ipv4/tcp_fastopen", "1")?;
    pair.b.sysctl("net/ipv4/tcp_fastopen", "2")?;
    lab.step("host b: TCP_FASTOPEN (a queue of 16) on the listener, then listen()");
    let listener = listen_with(
        &pair.b,
        server_at,
        16,
        &[(libc::IPPROTO_TCP, libc::TCP_FASTOPEN, 16)],
    )?;
    lab.step("host a: sendto(MSG_FASTOPEN) with no cookie yet: a plain SYN that asks for one");
    let (first, first_sent) = fast_open_connect(&pair.a, server, FAST_OPEN_DATA)?;
    let first_at = first.local_addr().map_err(io("local address"))?;
    wait_state(lab, first_at, Established, SETTLE_MAX);
    let (first_server, _) = listener.accept().map_err(io("accept"))?;
    drop((first, first_server));
    settle(lab);
    let passive_before = super::tcp_ext(&pair.b, "TCPFastOpenPassive")?;
    lab.step("hold host b's packets: its SYN+ACK will wait in its queue");
    pair.hold_b(true)?;
    lab.step("host a: sendto(MSG_FASTOPEN) again, now with the cookie: the data rides in the SYN");
    let (mut client, sent) = fast_open_connect(&pair.a, server, FAST_OPEN_DATA)?;
    let c_at = client.local_addr().map_err(io("local address"))?;
    lab.step("host b: accept() returns at once, in SYN-RECV, and read() has the data");
    let (mut child, _) = listener.accept().map_err(io("accept"))?;
    let accepted_in = kernel_state(&child);
    child
        .set_read_timeout(Some(SETTLE_MAX))
        .map_err(io("read timeout"))?;
    let mut buf = [0u8; 16];
    let n = child.read(&mut buf).map_err(io("read"))?;
    let read = String::from_utf8_lossy(&buf[..n]).into_owned();
    lab.step("host b: close() before the handshake completed: SYN-RECV -> FIN-WAIT-1");
    drop(child);
    settle(lab);
    lab.step(
        "release host b's queue: SYN+ACK and FIN reach host a, which reads the EOF and closes",
    );
    pair.hold_b(false)?;
    wait_state(lab, c_at, CloseWait, SETTLE_MAX);
    client.set_nonblocking(false).map_err(io("blocking mode"))?;
    let eof = client.read(&mut buf).map_err(io("read"))? == 0;
    drop(client);
    wait_state(lab, server, TimeWait, SETTLE_MAX);
    settle(lab);
    let passive = super::tcp_ext(&pair.b, "TCPFastOpenPassive")?.saturating_sub(passive_before);
    let expected_data = String::from_utf8_lossy(FAST_OPEN_DATA).into_owned();
    Ok(Outcome {
        roles: vec![
            role(
                lab,
                "client",
                (c_at, server),
                vec![
                    step(
                        Close,
                        SynSent,
                        "sendto(MSG_FASTOPEN): SYN with the cookie and 5 bytes of data",
                    ),
                    step(
                        SynSent,
                        Established,
                        "the held SYN+ACK arrives; it acknowledges the data too",
                    ),
                    step(
                        Established,
                        CloseWait,
                        "the server's FIN, right behind its SYN+ACK",
                    ),
                    step(CloseWait, LastAck, "read() returns 0; close(): FIN sent"),
                    step(LastAck, Close, "the server ACKs our FIN"),
                ],
            ),
            role(
                lab,
                "server",
                (server, c_at),
                vec![
                    step(
                        Listen,
                        SynRecv,
                        "a SYN with a valid cookie: the socket is created at once, in SYN-RECV, and queued for accept() with its data",
                    ),
                    step(
                        SynRecv,
                        FinWait1,
                        "close() before the client's ACK: FIN sent from SYN-RECV (RFC 9293: CLOSE / snd FIN)",
                    ),
                    step(
                        FinWait1,
                        FinWait2,
                        "the client ACKs our SYN+ACK and our FIN",
                    ),
                    step(FinWait2, TimeWait, "the client's FIN arrived"),
                ],
            ),
        ],
        facts: vec![
            Fact::new(
                "first sendto(MSG_FASTOPEN), no cookie yet",
                "EINPROGRESS (a SYN asking for a cookie; the data waits)",
                sendto_text(first_sent),
                first_sent == Err(libc::EINPROGRESS),
            ),
            Fact::new(
                "second sendto(MSG_FASTOPEN), with the cookie",
                format!("{} bytes, in the SYN", FAST_OPEN_DATA.len()),
                sendto_text(sent),
                sent == Ok(FAST_OPEN_DATA.len()),
            ),
            Fact::new(
                "server socket's state at accept() (TCP_INFO)",
                "SYN-RECV",
                &accepted_in,
                accepted_in == SynRecv.ss_name(),
            ),
            Fact::new(
                "server read() before the handshake completed",
                &expected_data,
                &read,
                read == expected_data,
            ),
            Fact::new(
                "TcpExt TCPFastOpenPassive on host b",
                "1",
                passive.to_string(),
                passive == 1,
            ),
            eof_fact("client read() after the server's FIN", eof),
        ],
        notes: vec![
            "The first connection only fetched a cookie (the server's MAC of the client's address); with it, the client's next SYN carries data and the server hands the socket to the application a round trip early.".into(),
            "Without Fast Open a server cannot close in SYN-RECV: its half-open connection is a request socket the application never sees. A Fast Open child is a full socket from the SYN on, so RFC 9293's SYN-RECEIVED -> FIN-WAIT-1 happens.".into(),
        ],
    })
}

fn fin_with_ack(lab: &mut Lab) -> Result<Outcome, LabError> {
    let pair = pair(lab)?;
    let server_at: &'static str = "10.200.0.2:8080";
    let listener = listen_on(&pair.b, server_at, 16)?;
    let notes = vec![
        "RFC 9293 (3.10.7.4, FIN-WAIT-1): if our FIN has been ACKed, perhaps in this segment, enter TIME-WAIT. Linux handles the segment's ACK first (FIN-WAIT-1 -> FIN-WAIT-2) and its FIN next (FIN-WAIT-2 -> TIME-WAIT), in one pass over the one segment: there is no FIN-WAIT-1 -> TIME-WAIT to report.".to_string(),
        "After a FIN, host b delays its ACK (an answer usually follows at once), so when its application closes straight away its FIN carries the ACK. Its packets are held meanwhile, so nothing it sends can reach host a before the FIN.".to_string(),
    ];
    let why = "host b acknowledged host a's FIN on its own before its FIN (its delayed ACK fired)";
    until_passed(lab, notes, why, |lab, _| {
        lab.step("host a connects to host b; host b accepts");
        let client = connect(&pair.a, server_at)?;
        let (mut server, _) = listener.accept().map_err(io("accept"))?;
        let c = endpoints(&client)?;
        let s = endpoints(&server)?;
        settle(lab);
        lab.step("hold host b's packets: whatever it sends waits in its queue");
        pair.hold_b(true)?;
        let sent_before = super::tcp_mib(&pair.b, "OutSegs")?;
        // One step: a pause between the two would let host b's delayed ACK go out alone.
        lab.step("host a: shutdown(SHUT_WR), FIN sent; host b: read() returns 0 and it closes at once, so its FIN carries the ACK of host a's");
        let half = client.try_clone().map_err(io("clone"))?;
        pair.a
            .run(move || half.shutdown(Shutdown::Write))?
            .map_err(io("shutdown"))?;
        let mut buf = [0u8; 1];
        let eof = server.read(&mut buf).map_err(io("read"))? == 0;
        drop(server);
        let sent = super::tcp_mib(&pair.b, "OutSegs")?.saturating_sub(sent_before);
        lab.step("release host b's queue: one segment, FIN+ACK, reaches host a");
        pair.hold_b(false)?;
        wait_state(lab, c.0, TimeWait, Duration::from_secs(5));
        settle(lab);
        let at = |from: TcpState, to: TcpState| {
            lab.tracer.cookie_of(c.0, c.1).and_then(|k| {
                lab.tracer
                    .transitions_of(k)
                    .find(|t| {
                        t.old == ReportedState::Known(from) && t.new == ReportedState::Known(to)
                    })
                    .map(|t| t.ts_ns)
            })
        };
        let apart = at(FinWait2, TimeWait)
            .zip(at(FinWait1, FinWait2))
            .map(|(tw, fw2)| tw.saturating_sub(fw2));
        let outcome = Outcome {
            roles: vec![
                role(
                    lab,
                    "host a",
                    c,
                    steps(&[
                        &CLIENT_OPEN,
                        &[
                            step(Established, FinWait1, "shutdown(SHUT_WR): FIN sent"),
                            step(
                                FinWait1,
                                FinWait2,
                                "the FIN+ACK's ACK acknowledges our FIN: handled first",
                            ),
                            step(
                                FinWait2,
                                TimeWait,
                                "the same segment's FIN, handled next: TIME-WAIT",
                            ),
                        ],
                    ]),
                ),
                role(lab, "host b", s, steps(&[&CHILD_OPEN, &PASSIVE_CLOSE])),
            ],
            facts: vec![
                eof_fact("host b read() after host a's FIN", eof),
                Fact::new(
                    "segments host b sent after host a's FIN (Tcp OutSegs)",
                    "1: its FIN, carrying the ACK",
                    sent.to_string(),
                    sent == 1,
                ),
                Fact::new(
                    "host a's time in FIN-WAIT-2 (traced)",
                    "under a millisecond: the same segment",
                    apart.map_or("not traced".into(), |ns| {
                        format!("{:.0} µs", ns as f64 / 1e3)
                    }),
                    apart.is_some_and(|ns| ns < 1_000_000),
                ),
            ],
            notes: Vec::new(),
        };
        drop(client);
        Ok(outcome)
    })
}

/// TIME-WAIT's length on Linux (TCP_TIMEWAIT_LEN), and how late its timer may fire: the
/// timer wheel rounds a minute up by up to an eighth.
const TIME_WAIT_S: f64 = 60.0;
const TIME_WAIT_SLACK_S: f64 = 8.0;

fn time_wait_end(lab: &mut Lab) -> Result<Outcome, LabError> {
    let host = single_host(lab)?;
    let (_listener, client, mut server) = open_loopback(lab, &host)?;
    let c = endpoints(&client)?;
    let s = endpoints(&server)?;
    lab.step("client: close() first; the server reads the EOF and closes too");
    drop(client);
    let mut buf = [0u8; 1];
    let _ = server.read(&mut buf);
    drop(server);
    settle(lab);
    lab.step("the client's side waits in TIME-WAIT: 60 s on Linux (2 MSL); this takes a minute");
    wait_state(
        lab,
        c.0,
        Close,
        Duration::from_secs_f64(TIME_WAIT_S + TIME_WAIT_SLACK_S + 5.0),
    );
    settle(lab);
    let end = lab
        .tracer
        .transitions
        .iter()
        .find(|t| t.local == c.0 && t.old == ReportedState::Known(TimeWait))
        .cloned();
    let left = dump_tcp(&host)?
        .iter()
        .filter(|r| r.state == TimeWait.kernel_number())
        .count();
    let waited = end
        .as_ref()
        .and_then(|t| t.prev_state_ns)
        .map(|ns| ns as f64 / 1e9);
    let cause = end
        .as_ref()
        .and_then(|t| t.cause)
        .map(|c| c.name())
        .unwrap_or_default();
    let observed = end
        .as_ref()
        .is_some_and(|t| t.source == crate::live::Source::Kernel);
    Ok(Outcome {
        roles: vec![
            role(
                lab,
                "client",
                c,
                steps(&[
                    &CLIENT_OPEN,
                    &ACTIVE_CLOSE,
                    &[step(
                        TimeWait,
                        Close,
                        "2 MSL passed: the kernel's timer frees the timewait socket",
                    )],
                ]),
            ),
            role(lab, "server", s, steps(&[&CHILD_OPEN, &PASSIVE_CLOSE])),
        ],
        facts: vec![
            Fact::new(
                "time in TIME-WAIT (traced)",
                format!("{TIME_WAIT_S:.0} s, a few seconds late at most"),
                waited.map_or("not traced".into(), |w| format!("{w:.1} s")),
                waited.is_some_and(|w| {
                    (TIME_WAIT_S - 0.5..=TIME_WAIT_S + TIME_WAIT_SLACK_S).contains(&w)
                }),
            ),
            Fact::new("close cause", "timeout", &cause, cause == "timeout"),
            Fact::new(
                "the end",
                "observed in the kernel (the timewait timer), not inferred",
                if observed {
                    "observed in the kernel"
                } else {
                    "not observed"
                },
                observed,
            ),
            Fact::new(
                "TIME-WAIT sockets left (sock_diag)",
                "0",
                left.to_string(),
                left == 0,
            ),
        ],
        notes: vec![
            "TIME-WAIT keeps the 4-tuple out of use for 2 MSL so that the last ACK can be resent if the peer's FIN comes again, and so that a late segment of this connection cannot be taken for one of the next. Linux fixes it at 60 s (TCP_TIMEWAIT_LEN); there is no sysctl.".into(),
        ],
    })
}

/// tcp_retries2 for `rto-death`: the kernel turns it into a time budget.
const RETRIES2: u32 = 3;

fn rto_death(lab: &mut Lab) -> Result<Outcome, LabError> {
    let pair = pair(lab)?;
    pair.a
        .sysctl("net/ipv4/tcp_retries2", &RETRIES2.to_string())?;
    let server_at: &'static str = "10.200.0.2:8080";
    let listener = listen_on(&pair.b, server_at, 16)?;
    lab.step("host a connects to host b; host b accepts");
    let mut client = connect(&pair.a, server_at)?;
    let (server, _) = listener.accept().map_err(io("accept"))?;
    let c = endpoints(&client)?;
    let s = endpoints(&server)?;
    settle(lab);
    let timeouts_before = super::tcp_ext(&pair.a, "TCPTimeouts")?;
    // Lost, not held: a segment still queued in host a counts as in flight, and the
    // kernel skips retransmitting it.
    lab.step("host b falls silent: host a's packets to it go to a MAC address nobody has");
    pair.a.neighbour(B_IP, NOWHERE_MAC, "veth-a")?;
    lab.step(&format!(
        "host a: write() 1000 bytes; no ACK comes back, so it retransmits with backoff until tcp_retries2 = {RETRIES2} runs out"
    ));
    client.write_all(&[b'x'; 1000]).map_err(io("write"))?;
    let (errno, took) = read_error(&mut client, Duration::from_secs(20))?;
    settle(lab);
    let timeouts = super::tcp_ext(&pair.a, "TCPTimeouts")?.saturating_sub(timeouts_before);
    let retransmits = lab
        .tracer
        .cookie_of(c.0, c.1)
        .and_then(|k| lab.tracer.retransmits.get(&k).copied())
        .unwrap_or(0);
    let timed_out = timed_out_facts(lab, c.0, errno);
    let outcome = Outcome {
        roles: vec![
            role(
                lab,
                "client",
                c,
                steps(&[
                    &CLIENT_OPEN,
                    &[step(
                        Established,
                        Close,
                        "the retransmission budget is spent: the kernel gives up with ETIMEDOUT",
                    )],
                ]),
            ),
            role(lab, "server", s, steps(&[&CHILD_OPEN])),
        ],
        facts: [
            timed_out.to_vec(),
            vec![
            Fact::new(
                "retransmissions traced",
                format!(
                    "at least {RETRIES2} (tcp_retries2), as many as TcpExt TCPTimeouts ({timeouts})"
                ),
                retransmits.to_string(),
                retransmits >= RETRIES2 && u64::from(retransmits) == timeouts,
            ),
            Fact::new(
                "time until the connection died",
                "a budget of 3 s ((2^(3+1) - 1) x 200 ms), spent at the first retransmission timer past it: 3 to 7 s",
                format!("{took:.1} s"),
                (2.5..10.0).contains(&took),
            ),
            ],
        ]
        .concat(),
        notes: vec![
            "tcp_retries2 is a time budget, not a count: the kernel gives up at the first retransmission timer after the time that many backed-off retransmissions would take from the minimum RTO (200 ms), 3 s here, has passed. The default, 15, is about 15 minutes.".into(),
            "Host b's packets are lost here, not held: a segment still queued in host a's kernel counts as in flight, and the kernel would not retransmit it.".into(),
            "Host b never learns of it: its side stays ESTABLISHED until it sends something.".into(),
        ],
    };
    drop((client, server));
    Ok(outcome)
}

/// The receiver's fixed buffer in `zero-window` (SO_RCVBUF; the kernel doubles it).
const RECEIVE_BUFFER: i32 = 65536;

fn zero_window(lab: &mut Lab) -> Result<Outcome, LabError> {
    let pair = pair(lab)?;
    let server_at: &'static str = "10.200.0.2:8080";
    lab.step(
        "host b: listen() with SO_RCVBUF 64 KiB (fixed, no autotuning); it accepts and never reads",
    );
    let listener = listen_with(
        &pair.b,
        server_at,
        16,
        &[(libc::SOL_SOCKET, libc::SO_RCVBUF, RECEIVE_BUFFER)],
    )?;
    let mut client = connect(&pair.a, server_at)?;
    let (mut server, _) = listener.accept().map_err(io("accept"))?;
    let c = endpoints(&client)?;
    let s = endpoints(&server)?;
    settle(lab);
    lab.step("host a: write() until its kernel takes no more");
    client.set_nonblocking(true).map_err(io("non-blocking"))?;
    let chunk = vec![b'x'; 65536];
    let mut written = 0usize;
    let mut refused = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while refused < 3 && Instant::now() < deadline {
        match client.write(&chunk) {
            Ok(n) => {
                written += n;
                refused = 0;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                refused += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(io("write")(e)),
        }
    }
    let probes_before = super::tcp_ext(&pair.a, "TCPWinProbe")?;
    lab.step("host b's window is zero: host a's persist timer probes it, backing off");
    let sender = |pair: &Pair| -> Result<Option<crate::diag::SocketRecord>, LabError> {
        Ok(dump_tcp(&pair.a)?.into_iter().find(|r| is_connection(r, c)))
    };
    let mut persisting = None;
    for _ in 0..30 {
        if let Some(r) = sender(&pair)?
            && r.timer.is_some_and(|t| t.kind == PERSIST_TIMER)
        {
            persisting = Some(r);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let probes = super::tcp_ext(&pair.a, "TCPWinProbe")?.saturating_sub(probes_before);
    let recv_q = dump_tcp(&pair.b)?
        .into_iter()
        .find(|r| is_connection(r, s))
        .map_or(0, |r| r.recv_q);
    let timer_text = persisting
        .as_ref()
        .and_then(|r| r.timer)
        .map_or("no persist timer".to_string(), |t| {
            crate::render::list::timer_text(&t)
        });
    let send_q = persisting.as_ref().map_or(0, |r| r.send_q);
    lab.step("host b reads everything: its window opens and the rest flows");
    server
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(io("read timeout"))?;
    let mut got = 0usize;
    let mut buf = vec![0u8; 65536];
    while got < written {
        match server.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) => return Err(io("read")(e)),
        }
    }
    settle(lab);
    let drained = sender(&pair)?.map(|r| r.send_q);
    let outcome = Outcome {
        roles: vec![
            role(lab, "client", c, steps(&[&CLIENT_OPEN])),
            role(lab, "server", s, steps(&[&CHILD_OPEN])),
        ],
        facts: vec![
            Fact::new(
                "host b Recv-Q (sock_diag)",
                "full: received, never read",
                recv_q.to_string(),
                recv_q > 0,
            ),
            Fact::new(
                "host a Send-Q (sock_diag)",
                "waiting for the window to open",
                send_q.to_string(),
                send_q > 0,
            ),
            Fact::new(
                "host a's timer, as sockstat -o shows it",
                "timer:(persist,...)",
                &timer_text,
                persisting.is_some(),
            ),
            Fact::new(
                "zero-window probes sent (TcpExt TCPWinProbe)",
                "at least 1",
                probes.to_string(),
                probes >= 1,
            ),
            Fact::new(
                "after host b read everything",
                format!("all {written} bytes arrived, host a's Send-Q 0"),
                format!(
                    "{got} bytes, Send-Q {}",
                    drained.map_or("-".into(), |q| q.to_string())
                ),
                got == written && drained == Some(0),
            ),
        ],
        notes: vec![
            "A zero window is not an error and changes no state: both sides stay ESTABLISHED. The persist timer keeps probing (with backoff, never giving up while the peer answers), so the sender learns when the window opens even if the window update is lost.".into(),
        ],
    };
    drop((client, server));
    Ok(outcome)
}

/// Whether sock_diag's record is the connection with these ends.
fn is_connection(r: &crate::diag::SocketRecord, (local, peer): (SocketAddr, SocketAddr)) -> bool {
    r.local == crate::diag::Endpoint::Inet(local) && r.peer == crate::diag::Endpoint::Inet(peer)
}

/// sock_diag's timer number for the zero-window probe (persist) timer.
const PERSIST_TIMER: u8 = 4;

/// `syn-flood`: the listener's backlog, the flood, and the real clients.
const FLOOD_BACKLOG: usize = 8;
const FLOOD: usize = 16;
const REAL_CLIENTS: usize = 3;
/// Where the flood comes from: an address on host a that host b cannot resolve, so its
/// SYN+ACKs go unanswered, as to a spoofed source.
const FLOOD_IP: &str = "10.200.0.3";

fn syn_flood(lab: &mut Lab) -> Result<Outcome, LabError> {
    let pair = pair(lab)?;
    pair.a
        .ip(&["addr", "add", &format!("{FLOOD_IP}/24"), "dev", "veth-a"])?;
    // Host a answers no ARP now: host b's SYN+ACKs to the flood's address wait unresolved.
    // Host b reaches host a's own address through its permanent neighbour entry.
    pair.a.sysctl("net/ipv4/conf/veth-a/arp_ignore", "8")?;
    pair.b.sysctl("net/ipv4/tcp_syncookies", "1")?;
    let server_at: &'static str = "10.200.0.2:8080";
    let server = addr(server_at);
    lab.step(&format!(
        "host b: listen() with a backlog of {FLOOD_BACKLOG}: its SYN queue holds {FLOOD_BACKLOG} half-open requests"
    ));
    let listener = listen_on(&pair.b, server_at, FLOOD_BACKLOG as i32)?;
    let counters = |pair: &Pair| -> Result<[u64; 3], LabError> {
        Ok([
            super::tcp_ext(&pair.b, "TCPReqQFullDoCookies")?,
            super::tcp_ext(&pair.b, "SyncookiesSent")?,
            super::tcp_ext(&pair.b, "SyncookiesRecv")?,
        ])
    };
    let before = counters(&pair)?;
    lab.step(&format!(
        "the flood: {FLOOD} SYNs from {FLOOD_IP}, which never completes a handshake"
    ));
    let from = addr(&format!("{FLOOD_IP}:0"));
    let mut flood = Vec::new();
    for _ in 0..FLOOD {
        flood.push(start_connect(&pair.a, Some(from), server)?);
    }
    std::thread::sleep(Duration::from_millis(300));
    let half_open = |pair: &Pair, peer: &str| -> Result<usize, LabError> {
        Ok(dump_tcp(&pair.b)?
            .iter()
            .filter(|r| r.state == SynRecv.kernel_number())
            .filter(
                |r| matches!(r.peer, crate::diag::Endpoint::Inet(p) if p.ip().to_string() == peer),
            )
            .count())
    };
    let flooded = half_open(&pair, FLOOD_IP)?;
    lab.step(&format!(
        "{REAL_CLIENTS} real clients connect from {A_IP}: the SYN queue is full, so host b answers with syncookies"
    ));
    let mut real = Vec::new();
    for _ in 0..REAL_CLIENTS {
        let client = connect(&pair.a, server_at)?;
        let (child, _) = listener.accept().map_err(io("accept"))?;
        real.push((endpoints(&client)?, client, child));
    }
    let real_half_open = half_open(&pair, A_IP)?;
    settle(lab);
    let after = counters(&pair)?;
    lab.step(&format!(
        "the flood's sockets go, and {FLOOD_IP} answers ARP again: host b's queued SYN+ACKs reach a host that resets them"
    ));
    drop(flood);
    pair.a.sysctl("net/ipv4/conf/veth-a/arp_ignore", "0")?;
    // The neighbour is solicited once a second: the queue is sent at the next answer.
    let reset_deadline = Instant::now() + Duration::from_secs(5);
    let mut after_reset = half_open(&pair, FLOOD_IP)?;
    while after_reset > 0 && Instant::now() < reset_deadline {
        std::thread::sleep(Duration::from_millis(100));
        after_reset = half_open(&pair, FLOOD_IP)?;
    }
    settle(lab);
    let [do_cookies, sent, received] = [0, 1, 2].map(|i| after[i].saturating_sub(before[i]));
    // Every SYN the full queue turned away got a cookie: the rest of the flood, and the
    // real clients.
    let beyond = (FLOOD.saturating_sub(flooded) + REAL_CLIENTS) as u64;
    let Some((c, _, _)) = real.first() else {
        return Err(LabError::Setup("no real client connected".into()));
    };
    let c = *c;
    let outcome = Outcome {
        roles: vec![
            // It never leaves LISTEN: not for the flood, the cookies, or the resets.
            listener_role(lab, server),
            role(lab, "real client 1", c, steps(&[&CLIENT_OPEN])),
            role(
                lab,
                "its server side",
                (c.1, c.0),
                vec![
                    step(
                        Listen,
                        SynRecv,
                        "the ACK carries a valid cookie: the socket is built from it, with no request ever queued",
                    ),
                    step(SynRecv, Established, "the handshake is complete at once"),
                ],
            ),
        ],
        facts: vec![
            Fact::new(
                format!("half-open requests from {FLOOD_IP} (sock_diag SYN-RECV)"),
                format!(
                    "the SYN queue, full: {FLOOD_BACKLOG} (the backlog), or {} where the kernel checks it as it checks the accept queue (more than the backlog)",
                    FLOOD_BACKLOG + 1
                ),
                flooded.to_string(),
                flooded == FLOOD_BACKLOG || flooded == FLOOD_BACKLOG + 1,
            ),
            Fact::new(
                "real clients connected and accepted",
                REAL_CLIENTS.to_string(),
                real.len().to_string(),
                real.len() == REAL_CLIENTS,
            ),
            Fact::new(
                format!("half-open requests from {A_IP}"),
                "0: syncookies keep no state",
                real_half_open.to_string(),
                real_half_open == 0,
            ),
            Fact::new(
                "TcpExt TCPReqQFullDoCookies on host b",
                format!("at least {beyond}: every SYN past the full queue"),
                do_cookies.to_string(),
                do_cookies >= beyond,
            ),
            Fact::new(
                "TcpExt SyncookiesSent on host b",
                format!("at least {beyond}"),
                sent.to_string(),
                sent >= beyond,
            ),
            Fact::new(
                "TcpExt SyncookiesRecv on host b",
                format!("{REAL_CLIENTS}: only the real clients answered"),
                received.to_string(),
                received == REAL_CLIENTS as u64,
            ),
            Fact::new(
                format!("half-open requests from {FLOOD_IP} once RSTs answered their SYN+ACKs"),
                "0: each dropped, the listener still in LISTEN (RFC 9293 would take SYN-RECEIVED -> LISTEN)",
                after_reset.to_string(),
                after_reset == 0,
            ),
        ],
        notes: vec![
            "A syncookie encodes the connection's parameters in the SYN+ACK's sequence number, so the server keeps nothing until the ACK comes back. A flood then costs it no memory, and real clients still get in.".into(),
            "RFC 9293 returns a half-open connection to LISTEN when an RST arrives (SYN-RECEIVED -> LISTEN). Linux never moves the listener: each half-open connection is a request socket beside it, and an RST or a timeout simply drops the request; the listener stays in LISTEN throughout.".into(),
        ],
    };
    drop((real, listener));
    Ok(outcome)
}

/// The one local port `tw-reuse` leaves connect().
const ONLY_PORT: u16 = 40000;

fn tw_reuse(lab: &mut Lab) -> Result<Outcome, LabError> {
    let host = single_host(lab)?;
    host.sysctl(
        "net/ipv4/ip_local_port_range",
        &format!("{ONLY_PORT} {ONLY_PORT}"),
    )?;
    host.sysctl("net/ipv4/tcp_timestamps", "1")?;
    host.sysctl("net/ipv4/tcp_tw_reuse", "0")?;
    lab.step(&format!(
        "server: listen() on {SERVER}; ip_local_port_range = {ONLY_PORT} {ONLY_PORT}: connect() has one local port to pick"
    ));
    let listener = listen_on(&host, SERVER, 16)?;
    let client = connect(&host, SERVER)?;
    let (mut server, _) = listener.accept().map_err(io("accept"))?;
    let c = endpoints(&client)?;
    lab.step(&format!(
        "the client closes first: port {ONLY_PORT} waits in TIME-WAIT"
    ));
    drop(client);
    let mut buf = [0u8; 1];
    let _ = server.read(&mut buf);
    drop(server);
    settle(lab);
    lab.step("tcp_tw_reuse = 0: a second connect() finds no free local port");
    let to = addr(SERVER);
    let blocked = host.run(move || TcpStream::connect(to))?;
    let blocked_errno = blocked
        .as_ref()
        .err()
        .and_then(std::io::Error::raw_os_error);
    drop(blocked);
    host.sysctl("net/ipv4/tcp_tw_reuse", "1")?;
    let recycled_before = super::tcp_ext(&host, "TWRecycled")?;
    lab.step("tcp_tw_reuse = 1, a second later (the timestamps must move on): connect() takes over the TIME-WAIT");
    std::thread::sleep(Duration::from_millis(1100));
    let second = connect(&host, SERVER)?;
    let (second_server, _) = listener.accept().map_err(io("accept"))?;
    let second_at = second.local_addr().map_err(io("local address"))?;
    settle(lab);
    let recycled = super::tcp_ext(&host, "TWRecycled")?.saturating_sub(recycled_before);
    let cookies = lab.tracer.cookies_of(c.0, c.1);
    let path_of = |i: usize| {
        cookies
            .get(i)
            .map(|&k| lab.tracer.path(k))
            .unwrap_or_default()
    };
    let reuse_cause = cookies
        .first()
        .and_then(|&k| {
            lab.tracer
                .transitions_of(k)
                .find(|t| t.old == ReportedState::Known(TimeWait))
                .and_then(|t| t.cause)
        })
        .map(|c| c.name())
        .unwrap_or_default();
    let outcome = Outcome {
        roles: vec![
            RoleResult::new(
                format!("first client {} -> {}", c.0, c.1),
                steps(&[
                    &CLIENT_OPEN,
                    &ACTIVE_CLOSE,
                    &[step(
                        TimeWait,
                        Close,
                        "the new connect() took over its 4-tuple: TIME-WAIT cut short (tcp_tw_reuse)",
                    )],
                ]),
                path_of(0),
            ),
            RoleResult::new(
                format!("second client {second_at} -> {}", c.1),
                CLIENT_OPEN.to_vec(),
                path_of(1),
            ),
        ],
        facts: vec![
            Fact::new(
                "connect() with tcp_tw_reuse = 0",
                "EADDRNOTAVAIL",
                errno_text(blocked_errno),
                blocked_errno == Some(libc::EADDRNOTAVAIL),
            ),
            Fact::new(
                "second connection's local address",
                c.0.to_string(),
                second_at.to_string(),
                second_at == c.0,
            ),
            Fact::new(
                "first client's TIME-WAIT ended with cause",
                "reused",
                &reuse_cause,
                reuse_cause == "reused",
            ),
            Fact::new(
                "TcpExt TWRecycled",
                "1",
                recycled.to_string(),
                recycled == 1,
            ),
        ],
        notes: vec![
            "tcp_tw_reuse lets an outgoing connect() take over its own TIME-WAIT 4-tuple once a second has passed since the last segment, because TCP timestamps (PAWS) keep the old connection's late segments apart. The default, 2, allows it on loopback only. It never affects TIME-WAIT on the side that accepted the connection.".into(),
        ],
    };
    drop((second, second_server, listener));
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::top::diagram;

    /// The expected paths the exercises build from.
    fn paths() -> Vec<(&'static str, Vec<Step>)> {
        vec![
            ("listener", vec![LISTEN]),
            (
                "active open + active close",
                steps(&[&CLIENT_OPEN, &ACTIVE_CLOSE]),
            ),
            (
                "child open + passive close",
                steps(&[&CHILD_OPEN, &PASSIVE_CLOSE]),
            ),
            (
                "client open + simultaneous close",
                steps(&[&CLIENT_OPEN, &SIMULTANEOUS_CLOSE]),
            ),
            ("simultaneous open", SIMULTANEOUS_OPEN.to_vec()),
        ]
    }

    #[test]
    fn expected_paths_are_continuous_walks_from_close_or_listen() {
        for (name, path) in paths() {
            assert!(
                matches!(path[0].edge.from, Close | Listen),
                "{name}: starts in {}",
                path[0].edge.from
            );
            for pair in path.windows(2) {
                assert_eq!(
                    pair[0].edge.to, pair[1].edge.from,
                    "{name}: {} is followed by {}",
                    pair[0].edge, pair[1].edge
                );
            }
            for s in &path {
                assert!(!s.why.is_empty(), "{name}: {} has no explanation", s.edge);
                assert_ne!(s.edge.from, s.edge.to, "{name}: a self-loop is expected");
            }
        }
    }

    #[test]
    fn every_expected_edge_is_drawn_on_the_diagram() {
        for (name, path) in paths() {
            for s in path {
                assert!(
                    diagram::draws(s.edge.from, s.edge.to),
                    "{name}: {} is expected but the diagram has no arrow for it",
                    s.edge
                );
            }
        }
    }

    #[test]
    fn exercises_have_unique_names_that_find_them() {
        let mut seen = std::collections::HashSet::new();
        for e in EXERCISES {
            assert!(seen.insert(e.name), "{} listed twice", e.name);
            assert!(!e.teaches.is_empty());
            assert_eq!(find(e.name).map(|f| f.name), Some(e.name));
            assert!(!e.name.contains(' ') && e.name != "all", "{}", e.name);
        }
        assert!(find("no-such-exercise").is_none());
        assert_eq!(names().len(), EXERCISES.len());
    }
}
