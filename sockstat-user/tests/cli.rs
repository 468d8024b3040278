//! The command line as users meet it: bad input gets one line and exit code 2, nothing on
//! stdout, never a panic.
use std::{
    os::unix::process::CommandExt as _,
    process::{Command, Output},
};

fn sockstat(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sockstat"))
        .args(args)
        .output()
        .expect("run sockstat")
}

/// Lets this test process hold thousands of sockets (the soft limit is often 1024).
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on our own process with a struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn assert_one_line_error(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(out.stdout.is_empty(), "stdout: {:?}", out.stdout);
    assert_eq!(stderr.lines().count(), 1, "stderr: {stderr}");
    assert!(stderr.starts_with("sockstat: "), "stderr: {stderr}");
    assert!(stderr.contains(needle), "{needle:?} not in {stderr}");
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
}

#[test]
fn unknown_flag_is_one_line_and_exit_2() {
    assert_one_line_error(&sockstat(&["--bogus"]), "--bogus");
    assert_one_line_error(&sockstat(&["trace", "--bogus"]), "--bogus");
    assert_one_line_error(&sockstat(&["trace", "--port", "http"]), "http");
    // `watch ss` and `netstat -c` habits are pointed to the continuous listing, and
    // misspellings to clap's suggestion.
    assert_one_line_error(&sockstat(&["-tn", "--watch"]), "use -c [--interval S]");
    assert_one_line_error(
        &sockstat(&["-tn", "--continous"]),
        "tip: a similar argument exists: '--continuous'",
    );
}

#[test]
fn help_and_version_succeed() {
    let out = sockstat(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("sockstat "));
    let out = sockstat(&["trace", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("--ring-kb"));
    // `help [COMMAND]`, as git and cargo have it.
    let out = sockstat(&["help", "trace"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("--ring-kb"));
    let out = sockstat(&["help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("trace"));
}

/// `--help` teaches the filter language with examples, as ss(8) does; trace's explains its
/// columns and the self-loops the kernel reports; both fit the terminal; `sockstat lab`
/// alone lists the exercises; alerts take the filter language's state names.
#[test]
fn help_teaches_the_filter_language_and_trace_columns() {
    let help = |args: &[&str], columns: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_sockstat"))
            .args(args)
            .env("COLUMNS", columns)
            .output()
            .expect("run sockstat");
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for columns in ["60", "80", "100"] {
        let width: usize = columns.parse().unwrap();
        let top = help(&["--help"], columns);
        for want in [
            "FILTER:",
            "state STATE ...",
            "sport|dport OP :PORT",
            "EXAMPLES:",
            "sockstat -tan dst 10.0.0.0/8 -p",
            "JSON KEYS:",
        ] {
            assert!(
                top.contains(want),
                "{columns} columns: no {want:?} in\n{top}"
            );
        }
        let trace = help(&["help", "trace"], columns);
        for want in [
            "COLUMNS:",
            "PREV_US",
            "CAUSE",
            "(synthesized)",
            "FIN-WAIT-1 -> FIN-WAIT-1",
            "prev_state_ns",
        ] {
            assert!(
                trace.contains(want),
                "{columns} columns: no {want:?} in\n{trace}"
            );
        }
        for text in [&top, &trace] {
            for line in text.lines() {
                assert!(
                    line.chars().count() <= width,
                    "{columns} columns: a longer line: {line:?}"
                );
            }
        }
    }
    let lab = help(&["lab"], "80");
    assert!(
        lab.contains("handshake") && lab.contains("refused"),
        "{lab}"
    );
    // The filter language's names for states are alert metrics too.
    let out = sockstat(&["report", "--alert", "established > 100000"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let out = sockstat(&["report", "--json", "--alert", "listening >= 0"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}

/// report's allowlist takes the format its help shows (commas, spaces, service names), and
/// an ss filter narrows what it analyses.
#[test]
fn report_takes_its_allowlist_as_shown_and_an_ss_filter() {
    let listeners = |args: &[&str]| -> Vec<serde_json::Value> {
        let out = sockstat(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        report["listeners"].as_array().cloned().unwrap_or_default()
    };
    let help = String::from_utf8_lossy(&sockstat(&["report", "--help"]).stdout).into_owned();
    assert!(
        help.contains("[default: 22,80,443,53,25,110,143,993,995]"),
        "{help}"
    );
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port().to_string();
    for allow in [
        format!("22,{port}"),
        format!("ssh {port}"),
        format!("{port}, https"),
    ] {
        let ours = listeners(&["report", "--json", "--allow-ports", &allow])
            .into_iter()
            .find(|x| x["port"].as_u64().map(|p| p.to_string()) == Some(port.clone()))
            .unwrap_or_else(|| panic!("{allow}: our listener is missing"));
        assert_eq!(ours["allowed"], true, "{allow}");
        assert_eq!(ours["exposure"], "loopback", "{allow}");
    }
    // A filter on another port leaves our listener out.
    let other = listeners(&["report", "--json", "sport", "=", ":1"]);
    assert!(
        !other
            .iter()
            .any(|x| x["port"].as_u64().map(|p| p.to_string()) == Some(port.clone())),
        "{other:?}"
    );
}

#[test]
fn verbose_goes_before_or_after_the_command_and_listing_options_do_not_mix_with_one() {
    // -v before the command is the global flag, not a filter word.
    let out = sockstat(&["-v", "lab", "list"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("handshake"));
    assert_one_line_error(&sockstat(&["-t", "lab", "list"]), "without a command");
}

#[test]
fn trace_without_privilege_says_what_is_needed() {
    let out = if is_root() {
        // Drop to nobody, with no capabilities.
        Command::new(env!("CARGO_BIN_EXE_sockstat"))
            .arg("trace")
            .uid(65534)
            .gid(65534)
            .output()
            .expect("run sockstat as nobody")
    } else {
        sockstat(&["trace"])
    };
    assert_one_line_error(
        &out,
        "needs root, or cap_dac_read_search,cap_sys_ptrace,cap_syslog,cap_perfmon,cap_bpf",
    );
}

#[test]
fn an_unknown_user_is_one_line_before_anything_loads() {
    for command in ["trace", "top", "serve"] {
        let mut args = vec![command, "--user", "no-such-user-here"];
        if command == "top" {
            args.push("--once");
        }
        assert_one_line_error(
            &sockstat(&args),
            "--user no-such-user-here: no such user (see getent passwd)",
        );
    }
}

#[test]
fn bad_filters_name_the_token_and_position() {
    assert_one_line_error(
        &sockstat(&["-tn", "sport", "=", ":abc"]),
        "\":abc\" at position 9",
    );
    assert_one_line_error(
        &sockstat(&["-tn", "(", "sport", "=", ":22"]),
        "\"(\" at position 1: this parenthesis is never closed",
    );
    assert_one_line_error(
        &sockstat(&["-t", "state", "bogus"]),
        "\"bogus\" at position 7",
    );
    assert_one_line_error(&sockstat(&["-t", "dst", "1.2.3.4/99"]), "prefix length");
    assert_one_line_error(&sockstat(&["-t", "sport"]), "expected a port");
    assert_one_line_error(&sockstat(&["-t", "foo"]), "\"foo\" at position 1");
}

#[test]
fn bad_selections_are_one_line() {
    assert_one_line_error(&sockstat(&["-N", "no-such-netns"]), "no network namespace");
    assert_one_line_error(&sockstat(&["-A", "bogus"]), "-A bogus");
    assert_one_line_error(&sockstat(&["-f", "bogus"]), "-f bogus");
}

#[test]
fn a_closed_pipe_is_not_an_error() {
    use std::io::Read as _;
    // Enough sockets that the output exceeds a pipe buffer.
    raise_fd_limit();
    let listeners: Vec<_> = (0..1500)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sockstat"))
        .args(["-tan"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 16];
    child
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut first)
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(listeners);
}

/// `sockstat ARGS` with one resource limit lowered for the child only.
fn sockstat_limited(args: &[&str], resource: libc::__rlimit_resource_t, value: u64) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sockstat"));
    cmd.args(args);
    // SAFETY: setrlimit is async-signal-safe; it only affects the child about to exec.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: value,
                rlim_max: value,
            };
            if libc::setrlimit(resource, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.output().expect("run sockstat")
}

/// Every bad value on every subcommand that takes it: one line that says what to do, exit
/// 2, nothing on stdout. Values are checked before privileges, so this runs as anyone.
#[test]
fn validation_table() {
    let table: &[(&[&str], &str)] = &[
        (&["trace", "--ring-kb", "0"], "--ring-kb"),
        (&["top", "--ring-kb", "0"], "--ring-kb"),
        (&["serve", "--ring-kb", "0"], "--ring-kb"),
        (&["trace", "--ring-kb", "99999999999"], "--ring-kb"),
        (&["top", "--interval", "1e-300"], "from 0.1 to 3600"),
        (&["serve", "--interval", "1e-300"], "from 0.1 to 3600"),
        (&["top", "--interval", "NaN"], "from 0.1 to 3600"),
        (&["serve", "--interval", "inf"], "from 0.1 to 3600"),
        (&["stats", "--interval", "1e-300"], "from 1 to 86400"),
        (
            &["stats", "--interval", "18446744073709551615"],
            "from 1 to 86400",
        ),
        (&["ifaces", "--interval", "0"], "from 1 to 86400"),
        (&["trace", "--reconcile", "99999"], "--reconcile"),
        (
            &["trace", "--pid", "4194304"],
            "--pid 4194304: no such process",
        ),
        (
            &["trace", "--cgroup", "/no/such/cgroup"],
            "--cgroup /no/such/cgroup",
        ),
        (
            &["trace", "--netns", "4000000000"],
            "4000000000: no network namespace",
        ),
        (
            &["trace", "--netns", "no-such-netns"],
            "no network namespace \"",
        ),
        (&["-N", "no-such-netns", "-tan"], "no network namespace \""),
        (&["stats", "-N", "no-such-netns"], "no network namespace \""),
        (
            &["report", "-N", "no-such-netns"],
            "no network namespace \"",
        ),
        (&["serve", "--listen", "nowhere"], "--listen nowhere"),
        (&["-V", "extra"], "-V/--version takes no other arguments"),
        (
            &["--version", "-t"],
            "-V/--version takes no other arguments",
        ),
        (&["lab", "run", "no-such-exercise"], "no exercise"),
        (
            &["report", "--allow-ports", "22,nonsense"],
            "\"nonsense\" is neither a port number nor a service name",
        ),
        (&["report", "state", "bogus"], "bad filter"),
        (&["record", "--keep", "soon"], "give an age such as 7d"),
        (&["record", "--max-size", "10K"], "at least 256K"),
        (&["record", "--max-size", "12Q"], "give a size such as 1G"),
        (&["record", "--flush", "0"], "from 0.1 to 3600"),
        (
            &["history", "--since", "yesterday"],
            "give an age (2h, 30m, 7d)",
        ),
        (
            &["history", "--since", "1h", "--until", "2h"],
            "--until is not after --since",
        ),
        (
            &["history", "state", "established"],
            "the store cannot answer this filter: a state",
        ),
        (
            &["history", "fwmark", "=", "0x1"],
            "the store cannot answer this filter: fwmark",
        ),
        (&["history", "dst", "nonsense!"], "bad filter"),
        (
            &["history", "--store", "/nonexistent/sockstat-store"],
            "no store there",
        ),
        (
            &["record", "--sink", "http://ch:8123/fleet"],
            "it starts with clickhouse://",
        ),
        (
            &["history", "--from", "clickhouse://ch/fleet;drop"],
            "a database name is letters, digits and _",
        ),
        (&["history", "--host", "node-a"], "--from"),
    ];
    for (args, needle) in table {
        let out = sockstat(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}: stdout {:?}", out.stdout);
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.len() < 300, "{args:?}: a long line: {stderr}");
        assert!(
            stderr.contains(needle),
            "{args:?}: {needle:?} not in {stderr}"
        );
    }
    // `lab` alone lists the exercises, like `lab list`.
    let out = sockstat(&["lab"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(out.stdout, sockstat(&["lab", "list"]).stdout);
    // `lab coverage` needs no privilege: every edge Linux takes is shown by an exercise.
    let out = sockstat(&["lab", "coverage"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("18 of the 18 RFC edges Linux takes are shown"),
        "{text}"
    );
    assert!(text.contains("0 not covered"), "{text}");
    let out = sockstat(&["lab", "coverage", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let lines = String::from_utf8_lossy(&out.stdout);
    for line in lines.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v["edge"].is_string() && v["shown_by"].is_array(), "{v}");
    }
}

/// Too few file descriptors for an agent: said up front, whatever else would fail first.
#[test]
fn too_few_file_descriptors_is_one_line() {
    for cmd in ["trace", "top", "serve"] {
        let out = sockstat_limited(&[cmd], libc::RLIMIT_NOFILE, 16);
        assert_one_line_error(&out, "not enough file descriptors");
    }
}

/// Filters nested far beyond the limit, on a 256 KiB stack (ulimit -s 256): one line and
/// exit 2 for every command that takes a filter; within the limit, and long chains, they
/// work. Each filter is one argument: exec allows a quarter of the stack limit for them.
#[test]
fn deep_filters_on_a_small_stack() {
    const STACK: u64 = 256 * 1024;
    let cond = "sport = :1";
    for deep in [
        format!("{}{cond}{}", "(".repeat(12_000), ")".repeat(12_000)),
        format!("{}{cond}", "not ".repeat(10_000)),
        format!("{}{cond}", "! ".repeat(600)),
        format!("{}{cond}{}", "not (".repeat(3_000), ")".repeat(3_000)),
    ] {
        for cmd in [&["-tan"][..], &["trace"], &["top", "--once"]] {
            let mut args: Vec<&str> = cmd.to_vec();
            args.push(&deep);
            let out = sockstat_limited(&args, libc::RLIMIT_STACK, STACK);
            assert_one_line_error(&out, "nest more than");
        }
    }
    let within = format!("{}{cond}{}", "(".repeat(100), ")".repeat(100));
    let chain: Vec<String> = (0..3_000).map(|i| format!("dport = :{}", 1 + i)).collect();
    for filter in [within, chain.join(" or "), chain.join(" and ")] {
        let out = sockstat_limited(&["-tan", &filter], libc::RLIMIT_STACK, STACK);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A memory limit too low: the agents say so before loading; a listing that runs out says
/// so in one line, never with the allocator's abort and backtrace.
#[test]
fn too_little_memory_is_one_line() {
    for cmd in [&["trace"][..], &["top", "--once"], &["serve"]] {
        let out = sockstat_limited(cmd, libc::RLIMIT_AS, 40 << 20);
        assert_one_line_error(&out, "ulimit -v allows 40 MiB");
    }
    raise_fd_limit();
    let listeners: Vec<_> = (0..500)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let out = sockstat_limited(&["-tunap"], libc::RLIMIT_AS, 12 << 20);
    // It copes (threads it cannot have, it does without), or stops in one line naming the
    // limit (out of memory in the allocator, or no room for the reader thread).
    if out.status.code() != Some(0) || out.stdout.is_empty() {
        assert_one_line_error(&out, "ulimit -v");
    }
    assert!(!String::from_utf8_lossy(&out.stderr).contains("backtrace"));
    drop(listeners);
}

#[test]
fn continuous_listing_prints_stamped_listings_every_interval() {
    use std::io::BufRead as _;
    // A filter the kernel applies keeps each listing short while other tests hold many
    // sockets.
    let mut child = Command::new(env!("CARGO_BIN_EXE_sockstat"))
        .args(["-tln", "-c", "--interval", "1", "sport", "=", ":1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run sockstat -c");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send((std::time::Instant::now(), line)).is_err() {
                return;
            }
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut stamps = Vec::new();
    let mut lines = Vec::new();
    while stamps.len() < 3 {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let Ok((at, line)) = rx.recv_timeout(left) else {
            break;
        };
        if line.starts_with("--- ") {
            stamps.push(at);
        }
        lines.push(line);
    }
    child.kill().expect("stop sockstat -c");
    let _ = child.wait();
    let text = lines.join("\n");
    assert!(
        stamps.len() >= 3,
        "{} stamped listings in 10 s:\n{text}",
        stamps.len()
    );
    // Each stamp heads a listing, and they come an interval apart.
    assert!(
        lines.iter().filter(|l| l.starts_with("State")).count() >= 2,
        "{text}"
    );
    let gap = stamps[2].duration_since(stamps[1]);
    assert!(
        gap >= std::time::Duration::from_millis(800),
        "listings {gap:?} apart with --interval 1:\n{text}"
    );
    // Not a terminal: no escape codes.
    assert!(!text.contains('\x1b'));
    // --interval belongs to -c.
    assert_one_line_error(&sockstat(&["-tan", "--interval", "1"]), "--continuous");
}

#[test]
fn stats_lines_carry_the_kernel_names_and_hide_extended_zeros() {
    let text = |args: &[&str]| {
        let out = sockstat(args);
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let all = text(&["stats", "--zeros"]);
    assert!(all.contains("[TCPSynRetrans]"), "{all}");
    let usual = text(&["stats"]);
    let mut group = "";
    for line in usual.lines() {
        if let Some(g) = line.strip_suffix(':') {
            group = g;
            continue;
        }
        assert!(line.ends_with(']'), "no kernel name: {line}");
        if group.ends_with("Ext") {
            assert!(
                !line.trim_start().starts_with("0 "),
                "a zero in {group}: {line}"
            );
        }
    }
    assert!(usual.lines().count() < all.lines().count());
}
