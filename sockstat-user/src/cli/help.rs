//! Help that teaches: the filter language, the listing's and trace's JSON keys, trace's
//! columns and what the kernel reports. Kept as data, so `--help` (wrapped to the terminal)
//! and the man pages (roff) say the same thing from one place.
use clap_mangen::roff::{Roff, bold, roman};

/// One titled part of a command's help.
pub struct Section {
    pub title: &'static str,
    pub items: &'static [Item],
}

pub enum Item {
    /// A term and what it means, shown with a hanging indent.
    Term(&'static str, &'static str),
    /// A paragraph.
    Text(&'static str),
    /// A command line and what it does.
    Example(&'static str, &'static str),
}

use Item::{Example, Term, Text};

/// What each command needs, in words (`least_privilege` holds the sets).
const CAPABILITIES: Section = Section {
    title: "CAPABILITIES",
    items: &[
        Text(
            "Run as root, or give a command exactly these (setpriv, systemd's AmbientCapabilities, a container's capabilities).",
        ),
        Term(
            "trace, top, serve, record",
            "load with CAP_BPF, CAP_PERFMON, CAP_SYSLOG (the timewait timer's address in /proc/kallsyms), CAP_DAC_READ_SEARCH and CAP_SYS_PTRACE (the sockets' owners, from other users' /proc/PID/fd); also CAP_SYS_ADMIN with -N or --all-netns (setns), and with --hook tracepoint where tracefs is not mounted. Once loaded they keep only CAP_DAC_READ_SEARCH and CAP_SYS_PTRACE, CAP_SYS_ADMIN for -N or --all-netns, and CAP_BPF where the kernel asks for it to read maps (6.1); --user NAME runs them on as that user (record opens its --store before)",
        ),
        Term(
            "the listing, report",
            "nothing for your own namespace; CAP_DAC_READ_SEARCH and CAP_SYS_PTRACE for -p on other users' processes (CAP_BPF and CAP_PERFMON for the fast -p iterator), CAP_SYS_ADMIN for -N and --all-netns",
        ),
        Term("stats, ifaces, routes, conn", "nothing"),
        Term(
            "history",
            "write access to the store's files (a log a crash left behind is recovered on open)",
        ),
        Term(
            "lab",
            "CAP_SYS_ADMIN and CAP_NET_ADMIN (its namespaces and their sysctls), and what trace needs",
        ),
    ],
};

/// After `sockstat top --help` and `sockstat serve --help`, and in their pages.
pub const AGENT: &[Section] = &[CAPABILITIES];

/// After `sockstat --help`, and in sockstat(1).
pub const LIST: &[Section] = &[
    Section {
        title: "FILTER",
        items: &[
            Text("ss's filter language. Options may come before or after it, as with ss."),
            Term(
                "state STATE ...",
                "established, syn-sent, syn-recv, fin-wait-1, fin-wait-2, time-wait, closed, close-wait, last-ack, listening, closing; or a group: all, connected, synchronized, bucket (syn-recv and time-wait), big (the others)",
            ),
            Term("exclude STATE", "every state but this one"),
            Term(
                "src|dst [ADDR][:PORT]",
                "an address (10.0.0.1, 10.0.0.0/8, [::1], *) and/or a port (:443, :https); with only unix sockets listed (-x, -f unix), a bare path or pattern: src /run/*",
            ),
            Term(
                "sport|dport OP :PORT",
                "OP is = != < > <= >= (or eq ne lt gt le ge)",
            ),
            Term(
                "dev = IFNAME, fwmark = MARK[/MASK], cgroup = PATH, autobound",
                "the bound interface, the socket mark, the owner's cgroup, an automatically bound port",
            ),
            Term(
                "and, or, not, ( )",
                "`and` may be left out: 'dport = :443 sport > :1024'",
            ),
        ],
    },
    Section {
        title: "EXAMPLES",
        items: &[
            Example("sockstat -tan", "all TCP sockets, numeric"),
            Example("sockstat -tlnp", "who listens, with owners"),
            Example(
                "sockstat -t state established '( dport = :80 or dport = :443 )'",
                "web connections",
            ),
            Example(
                "sockstat -tan state time-wait dst 10.0.0.0/8",
                "TIME-WAIT towards a subnet",
            ),
            Example(
                "sockstat -tan dst 10.0.0.0/8 -p",
                "options after the filter, as in ss",
            ),
            Example(
                "sockstat -tn -c --interval 2",
                "the listing again every 2 s, stamped (netstat -c)",
            ),
            Example("sockstat -s", "ss's summary"),
            Example(
                "sockstat -N web -tln",
                "in another network namespace: an ip netns name, a path, a pid or a container",
            ),
            Example("sudo sockstat trace", "every TCP state change, live"),
            Example(
                "sockstat help trace",
                "a command's options, columns and keys",
            ),
        ],
    },
    Section {
        title: "JSON KEYS",
        items: &[
            Text(
                "--json prints one array with an object per socket; keys are stable (later versions add keys, never rename them).",
            ),
            Term(
                "netid, state, recv_q, send_q, local, peer",
                "as ss's columns; inode and peer_inode for unix sockets; dev when bound",
            ),
            Term("process", "-p: [{comm, pid, fd}]"),
            Term("timer", "-o, -e: {name, expires_ms, retrans}"),
            Term(
                "details",
                "-e: {uid, inode, cookie, fwmark, cgroup_id, v6only, shutdown}",
            ),
            Term(
                "memory",
                "-m: {rmem_alloc, rcvbuf, wmem_alloc, sndbuf, fwd_alloc, wmem_queued, optmem, backlog, drops}",
            ),
            Term(
                "info",
                "-i: tcp_info as {congestion, rtt_ms, rttvar_ms, min_rtt_ms, rto_ms, cwnd, bytes_acked, bytes_received, retrans, delivery_rate_bps, ...}",
            ),
            Term(
                "netns, container",
                "--all-netns: the namespace's name and its container",
            ),
            Term(
                "-s --json",
                "{total, tcp {total, estab, closed, orphaned, timewait}, transport {...}}",
            ),
        ],
    },
    CAPABILITIES,
];

/// After `sockstat trace --help`, and in sockstat-trace(1).
pub const TRACE: &[Section] = &[
    Section {
        title: "COLUMNS",
        items: &[
            Term(
                "TIME",
                "wall-clock time of the kernel event; with --all-netns a NETNS column follows (the ip netns name, host, or pid:N for the lowest pid in an unnamed one)",
            ),
            Term(
                "PID COMM",
                "the socket's owner: the task that held the socket, the one remembered for it, or the listener's for a passive open; '-' when the kernel ran in softirq and nobody is known (never the interrupted task)",
            ),
            Term("LOCAL REMOTE", "the connection, seen from this host"),
            Term("TRANSITION", "OLD -> NEW, in ss's state names"),
            Term(
                "PREV_US",
                "microseconds the socket spent in OLD; '-' when sockstat did not see it enter OLD",
            ),
            Term(
                "CAUSE",
                "why a connection closed: fin, rst-in, rst-out, timeout, ECONNREFUSED and the other errno names, reused (tcp_tw_reuse), killed (ss -K, the namespace went away), tw-overflow (tcp_max_tw_buckets), no-local-port (a connect that found no free local port: EADDRNOTAVAIL)",
            ),
            Term(
                "(synthesized)",
                "at the end of a line: sockstat inferred this transition (TIME-WAIT without the timewait hooks, or a repair after lost events); every other line was observed in the kernel",
            ),
        ],
    },
    Section {
        title: "WHAT THE KERNEL REPORTS",
        items: &[
            Term(
                "FIN-WAIT-1 -> FIN-WAIT-1",
                "a state reported again: close() after shutdown(SHUT_WR) calls tcp_close_state(), which sets the state the socket is already in, and the tracepoint fires for every call. sockstat prints what the kernel reported",
            ),
            Term(
                "LISTEN -> SYN-RECV",
                "names the new child socket. Up to 6.12 the kernel reports it before the child has its own identity; sockstat holds it until the child's next transition",
            ),
            Term(
                "X -> TIME-WAIT",
                "the kernel swaps the socket for a timewait socket and reports X -> CLOSE; sockstat shows X -> TIME-WAIT (observed by the timewait hooks) and TIME-WAIT -> CLOSE when it ends, 60 s later or earlier with a cause",
            ),
        ],
    },
    Section {
        title: "JSON KEYS",
        items: &[
            Text("--json prints one object per line; later versions add keys, never rename them."),
            Term(
                "transitions",
                "ts (RFC 3339, UTC), ts_ns (CLOCK_MONOTONIC), cookie (ss -e's sk:), netns (inode), netns_name (--all-netns), pid, comm, owner_source (task, cached, listener, baseline, unknown), family (inet, inet6), local, remote, old, new, prev_state_ns, source (kernel, synthesized), cause",
            ),
            Term(
                "--lifetimes",
                "ts, ts_ns, cookie, netns, pid, comm, owner_source, family, local, remote, duration_ns, bytes_acked, bytes_received, connect_ns, handshake_rtt_us, rtt_us, min_rtt_us, cwnd, delivery_rate_bps (at the close), retransmits, cause",
            ),
            Term(
                "retransmits",
                "event: retransmit; the transitions' keys to remote, then state, type (syn, syn-ack, rto, tlp, recovery), seq, len",
            ),
            Term(
                "resets",
                "event: reset; then state, direction (in, out), closed_port, reason (a sent reset's, 6.10+)",
            ),
            Term(
                "drops",
                "event: drop; then state, reason (the kernel's: tcp-csum, no-socket, ...; listen-overflow for a listener's counted drops), reason_code, source (kernel, counter), count, direction, tcp_flags, and accept_queue, backlog for counted drops",
            ),
            Term(
                "rtt",
                "event: rtt; then state, handshake (the first sample), rtt_us, min_rtt_us, cwnd, delivery_rate_bps (null until measured), retransmits",
            ),
            Term(
                "--timeline",
                "event: timeline; the head keys, duration_ns, closed, left_out, events (each event's own record with t_ns from the first)",
            ),
            Term("--count-only --json", "{edges [{old, new, count}], lost}"),
        ],
    },
    Section {
        title: "EXAMPLES",
        items: &[
            Example("sudo sockstat trace", "every transition"),
            Example("sudo sockstat trace --json | jq .", "NDJSON, stable keys"),
            Example(
                "sudo sockstat trace --lifetimes",
                "one line per finished connection",
            ),
            Example(
                "sudo sockstat trace state syn-sent dport = :5432",
                "the ss filter language",
            ),
            Example(
                "sudo sockstat trace --timeline --events all",
                "one block per connection when it closes",
            ),
            Example(
                "sudo sockstat trace --events retrans,reset,drop",
                "retransmits, resets and drops with their reasons",
            ),
            Example(
                "sudo sockstat trace --events rtt --rtt-interval 5",
                "handshake RTTs, then RTT, cwnd and delivery rate every 5 s per connection",
            ),
            Example(
                "sudo sockstat trace --all-netns",
                "every namespace, with a NETNS column",
            ),
        ],
    },
    CAPABILITIES,
];

/// The width clap wraps help to: the terminal's (stdout, stderr or stdin, as clap asks),
/// else $COLUMNS, at most 100.
pub fn width() -> usize {
    let term = terminal_size::terminal_size()
        .map(|(w, _)| usize::from(w.0))
        .or_else(|| std::env::var("COLUMNS").ok()?.parse().ok());
    term.unwrap_or(100).clamp(40, 100)
}

/// The sections as text `width` columns wide: terms with a hanging indent.
pub fn text(sections: &[Section], width: usize) -> String {
    const INDENT: usize = 2;
    const HANG: usize = 8;
    let mut out = String::new();
    for (i, s) in sections.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(s.title);
        out.push_str(":\n");
        for item in s.items {
            match item {
                Text(t) => wrap(&mut out, t, INDENT, INDENT, width),
                Term(term, what) | Example(term, what) => {
                    wrap(&mut out, term, INDENT, INDENT + 4, width);
                    wrap(&mut out, what, INDENT + HANG, INDENT + HANG, width);
                }
            }
        }
    }
    out
}

/// Appends `text` wrapped at `width` (see `render::wrap`).
fn wrap(out: &mut String, text: &str, first: usize, rest: usize, width: usize) {
    for line in crate::render::wrap(text, first, rest, width) {
        out.push_str(&line);
        out.push('\n');
    }
}

/// The sections as man page sections (`.SH`, `.TP` for terms, `.PP` for paragraphs).
pub fn roff(sections: &[Section], page: &mut Roff) {
    for s in sections {
        page.control("SH", [s.title]);
        for item in s.items {
            match item {
                Text(t) => {
                    page.control("PP", []).text([roman(*t)]);
                }
                Term(term, what) | Example(term, what) => {
                    page.control("TP", [])
                        .text([bold(*term)])
                        .text([roman(*what)]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_fits_the_width_with_hanging_terms() {
        for width in [40, 60, 80, 100] {
            let t = text(TRACE, width);
            for line in t.lines() {
                // Only a word longer than the line may overflow it.
                let longest_word = line.split_whitespace().map(|w| w.chars().count()).max();
                assert!(
                    line.chars().count() <= width || longest_word > Some(width - 12),
                    "{width}: {line:?}"
                );
            }
        }
        let t = text(TRACE, 80);
        assert!(
            t.starts_with("COLUMNS:\n  TIME\n          wall-clock time"),
            "{t}"
        );
        assert!(t.contains("\n  PREV_US\n          microseconds the socket spent in OLD;"));
    }

    #[test]
    fn man_sections_are_roff_definition_lists() {
        let mut page = Roff::new();
        roff(LIST, &mut page);
        let r = page.to_roff();
        assert!(r.contains(".SH FILTER\n"), "{r}");
        assert!(
            r.contains(".TP\n\\fBexclude STATE\\fR\nevery state but this one\n"),
            "{r}"
        );
    }
}
