//! Root-only tests of `sockstat top`: the real screen inside tmux (read back with
//! capture-pane) while loopback connections open and close, the terminal restored after `q`
//! and after SIGTERM, a recorded moment moved with the arrow keys (`--replay`), and
//! `--once --json` / `--alert` / the polling fallback for scripts.
//!
//! Without root every test here is reported as ignored ("needs root"), never as passed.
use std::{
    io::{Read, Write},
    net::{IpAddr, Ipv4Addr, TcpListener, TcpStream},
    process::Command,
    time::{Duration, Instant},
};

use libtest_mimic::{Arguments, Failed};
use serde_json::Value;
use sockstat_tests::{
    ALL_HOOKS, NobodyBinary, TestResult, Tracer, client_closed_connections, fail,
    root_or_say_skipped, root_trial, sockstat_bin, tun::TunPeer, twenty_port_netns, wait_attached,
    wait_links,
};

fn main() {
    let args = Arguments::from_args();
    let root = root_or_say_skipped("top");
    let trials = vec![
        root_trial("top_tmux_screen_follows_connections", root, tmux_screen),
        root_trial("top_tmux_sigterm_restores_terminal", root, tmux_sigterm),
        root_trial("top_tmux_sigint_restores_terminal", root, tmux_sigint),
        root_trial("top_tmux_sighup_restores_terminal", root, tmux_sighup),
        root_trial("top_tmux_replay_moves_through_time", root, tmux_replay),
        root_trial("top_once_json_counts_and_rates", root, once_json),
        root_trial("top_once_alert_sets_exit_code", root, once_alert),
        root_trial(
            "top_once_shows_retransmits_drops_and_port_headroom",
            root,
            once_trouble,
        ),
        root_trial("top_polling_fallback_has_counts_no_edges", root, polling),
    ];
    libtest_mimic::run(&args, trials).exit();
}

/// A listener on a port the kernel picks (never one another socket holds); the tests filter
/// on that port, so nothing else on the machine shows up in their numbers.
fn listen_any(ip: IpAddr) -> Result<(TcpListener, u16), Failed> {
    let l = TcpListener::bind((ip, 0)).map_err(|e| fail(format!("bind: {e}")))?;
    let port = l.local_addr().map_err(|e| fail(e.to_string()))?.port();
    Ok((l, port))
}

/// A tmux session running one command in a 120x40 pane; killed on drop.
struct Tmux {
    name: String,
}

impl Tmux {
    fn start(name: &str, command: &str) -> Result<Tmux, Failed> {
        let name = format!("{name}-{}", std::process::id());
        let status = Command::new("tmux")
            .args([
                "new-session",
                "-d",
                "-s",
                &name,
                "-x",
                "120",
                "-y",
                "40",
                command,
            ])
            .env_remove("TMUX")
            .status()
            .map_err(|e| fail(format!("starting tmux: {e}")))?;
        if !status.success() {
            return Err(fail(format!("tmux new-session failed: {status}")));
        }
        Ok(Tmux { name })
    }

    fn capture(&self, escapes: bool) -> String {
        let mut args = vec!["capture-pane", "-p", "-t", &self.name];
        if escapes {
            args.push("-e");
        }
        Command::new("tmux")
            .args(&args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    fn send(&self, keys: &str) -> TestResult {
        let ok = Command::new("tmux")
            .args(["send-keys", "-t", &self.name, keys])
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            Ok(())
        } else {
            Err(fail("tmux send-keys failed"))
        }
    }

    fn display(&self, format: &str) -> String {
        Command::new("tmux")
            .args(["display-message", "-p", "-t", &self.name, format])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    }

    /// Polls the screen until `cond` holds; the last screen is in the error. The bounds the
    /// tests give are generous: it returns as soon as `cond` holds, and the kernel matrix runs
    /// under software emulation, where loading the programs alone once took over 15 s.
    fn wait_for(
        &self,
        what: &str,
        secs: u64,
        cond: impl Fn(&str) -> bool,
    ) -> Result<String, Failed> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let screen = self.capture(false);
            if cond(&screen) {
                return Ok(screen);
            }
            if Instant::now() > deadline {
                return Err(fail(format!(
                    "timed out waiting for {what}; screen:\n{screen}"
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.name])
            .status();
    }
}

/// The count in the States panel for `state` (e.g. "TIME-WAIT"), as drawn.
fn state_count(screen: &str, state: &str) -> Option<u64> {
    screen.lines().find_map(|l| {
        let rest = l.strip_prefix('│')?.strip_prefix(state)?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// The command line the pane runs: top, then a marker with its exit code and whether the
/// terminal is back in canonical mode (raw mode left behind would print "-icanon").
fn pane_command(args: &str) -> String {
    format!(
        "{} top {args}; echo SOCKSTAT-EXITED rc=$?; stty -a | grep -o -- '-*icanon'; sleep 120",
        sockstat_bin().display()
    )
}

fn check_restored(tmux: &Tmux) -> TestResult {
    let mode_line = |s: &str| {
        s.lines()
            .skip_while(|l| !l.contains("SOCKSTAT-EXITED"))
            .nth(1)
            .unwrap_or("")
            .trim()
            .to_string()
    };
    let screen = tmux.wait_for("sockstat to exit and stty to report", 30, |s| {
        mode_line(s).ends_with("icanon")
    })?;
    if !screen.contains("SOCKSTAT-EXITED rc=0") {
        return Err(fail(format!("top did not exit with 0:\n{screen}")));
    }
    let mode = mode_line(&screen);
    if mode != "icanon" {
        return Err(fail(format!(
            "terminal left in raw mode ({mode:?}):\n{screen}"
        )));
    }
    let alternate = tmux.display("#{alternate_on}");
    if alternate != "0" {
        return Err(fail(format!("alternate screen still on ({alternate})")));
    }
    if screen.contains("TCP state machine") {
        return Err(fail(format!("the dashboard is still on screen:\n{screen}")));
    }
    Ok(())
}

fn tmux_screen() -> TestResult {
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let (listener, port) = listen_any(ip)?;
    let tmux = Tmux::start(
        "sockstat-top",
        &pane_command(&format!(
            "--interval 0.5 '( sport = :{port} or dport = :{port} )'"
        )),
    )?;
    tmux.wait_for("the dashboard", 60, |s| {
        s.contains("eBPF tp_btf") && s.contains("TCP state machine")
    })?;
    tmux.wait_for("the listener counted", 20, |s| {
        state_count(s, "LISTEN") == Some(1)
    })?;

    // Five connections: ten ESTAB sockets, five connects on the CLOSE -> SYN-SENT edge,
    // which must be drawn lit (green) in the interval after they happen.
    let mut pairs = Vec::new();
    for _ in 0..5 {
        let c =
            TcpStream::connect((ip, port)).map_err(|e| fail(format!("connect :{port}: {e}")))?;
        let (s, _) = listener
            .accept()
            .map_err(|e| fail(format!("accept: {e}")))?;
        pairs.push((c, s));
    }
    let mut saw_lit = false;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && !saw_lit {
        let raw = tmux.capture(true);
        saw_lit = lit_label(&raw, "↘5");
        std::thread::sleep(Duration::from_millis(50));
    }
    let screen = tmux.wait_for("10 ESTAB and the connect edge at 5", 30, |s| {
        state_count(s, "ESTAB") == Some(10) && s.contains("↘5")
    })?;
    if !saw_lit {
        return Err(fail(format!(
            "CLOSE -> SYN-SENT never drawn lit:\n{screen}"
        )));
    }
    for needle in ["↙5", "↓5", "→5"] {
        // SYN-SENT -> ESTAB, LISTEN -> SYN-RECV, SYN-RECV -> ESTAB.
        if !screen.contains(needle) {
            return Err(fail(format!("edge label {needle} missing:\n{screen}")));
        }
    }

    // Clients close first: five TIME-WAIT, the active-close path counted on its edges.
    // The server closes only once it has read the client's FIN: a fixed pause raced under
    // emulation (6.1 under TCG) into simultaneous closes, CLOSING, and six TIME-WAIT sockets.
    for (c, mut s) in pairs.drain(..) {
        drop(c);
        let mut byte = [0u8; 1];
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| fail(format!("read timeout: {e}")))?;
        match s.read(&mut byte) {
            Ok(0) => {}
            other => return Err(fail(format!("server wanted EOF, got {other:?}"))),
        }
        drop(s);
    }
    let screen = tmux.wait_for("5 TIME-WAIT and 0 ESTAB", 30, |s| {
        state_count(s, "TIME-WAIT") == Some(5) && state_count(s, "ESTAB") == Some(0)
    })?;
    for needle in ["FIN-WAIT-2→TIME-WAIT", "LAST-ACK→CLOSE"] {
        if !screen.contains(needle) {
            return Err(fail(format!("event {needle} missing:\n{screen}")));
        }
    }

    // Keys: pause shows PAUSED, help opens and closes, Tab moves on, q quits cleanly.
    tmux.send("p")?;
    tmux.wait_for("PAUSED", 20, |s| s.contains("PAUSED"))?;
    tmux.send("p")?;
    tmux.send("?")?;
    tmux.wait_for("help", 20, |s| s.contains("help (any key closes)"))?;
    tmux.send("x")?;
    tmux.wait_for("help closed", 20, |s| !s.contains("help (any key closes)"))?;
    // The editor starts from the filter in force; Ctrl-U clears the line.
    tmux.send("f")?;
    tmux.wait_for("the editor holding the current filter", 20, |s| {
        s.contains(&format!("filter> ( sport = :{port} or dport = :{port} )"))
    })?;
    tmux.send("C-u")?;
    tmux.wait_for("the editor cleared", 20, |s| {
        s.lines().any(|l| l.trim_end() == "filter> █")
    })?;
    tmux.send("dport = ")?;
    tmux.send("Enter")?;
    tmux.wait_for("the filter error inline", 20, |s| s.contains("bad filter"))?;
    tmux.send("Escape")?;
    // Apart, or the terminal reads ESC q as Alt-q.
    std::thread::sleep(Duration::from_millis(300));
    tmux.wait_for("the filter line closed", 20, |s| !s.contains("filter>"))?;
    tmux.send("q")?;
    check_restored(&tmux)
}

/// Whether `label` appears in the capture with a green foreground (SGR 32 or 38;5;2) among the
/// escape sequences directly in front of it.
fn lit_label(raw: &str, label: &str) -> bool {
    raw.match_indices(label).any(|(at, _)| {
        let mut before = &raw[..at];
        let mut params = Vec::new();
        // Walk back over consecutive `ESC [ ... m` sequences.
        while let Some(stripped) = before.strip_suffix('m') {
            let Some(esc) = stripped.rfind("\u{1b}[") else {
                break;
            };
            let body = &stripped[esc + 2..];
            if !body.chars().all(|c| c.is_ascii_digit() || c == ';') {
                break;
            }
            params.push(body.to_string());
            before = &stripped[..esc];
        }
        // ratatui's Green arrives as 256-colour 2; plain SGR 32 is the same colour.
        params.iter().any(|p| sgr_is_green(p))
    })
}

/// Whether one SGR parameter list sets the foreground to green (32, or 38;5;2).
fn sgr_is_green(params: &str) -> bool {
    let parts: Vec<&str> = params.split(';').collect();
    let mut i = 0;
    while i < parts.len() {
        match parts[i] {
            "32" => return true,
            "38" | "48" if parts.get(i + 1) == Some(&"5") => {
                if parts[i] == "38" && parts.get(i + 2) == Some(&"2") {
                    return true;
                }
                i += 3;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    false
}

/// A signal from outside (not a key) ends top with the terminal restored. Each signal's
/// test runs with its own interval, so `pkill` finds only its own top.
fn tmux_signal(signal: &str, interval: &str) -> TestResult {
    let args = format!("--interval {interval}");
    let tmux = Tmux::start(
        &format!("sockstat-top-{}", signal.to_lowercase()),
        &pane_command(&args),
    )?;
    tmux.wait_for("the dashboard", 60, |s| s.contains("TCP state machine"))?;
    let status = Command::new("pkill")
        .args([
            format!("-{signal}"),
            "-f".to_string(),
            format!("^[^ ]*sockstat top {args}$"),
        ])
        .status()
        .map_err(|e| fail(e.to_string()))?;
    if !status.success() {
        return Err(fail("no sockstat top process to signal"));
    }
    check_restored(&tmux)
}

fn tmux_sigterm() -> TestResult {
    tmux_signal("TERM", "0.5")
}

fn tmux_sigint() -> TestResult {
    tmux_signal("INT", "0.6")
}

fn tmux_sighup() -> TestResult {
    tmux_signal("HUP", "0.7")
}

/// `top --replay` on a terminal: the recorded moment moves with the arrow keys. One
/// connection recorded open for 3 s: in its middle both ends are ESTAB; seconds later it
/// is gone (the client's end in TIME-WAIT); back again, it is open; q restores the terminal.
fn tmux_replay() -> TestResult {
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let (listener, port) = listen_any(ip)?;
    let dir = std::env::temp_dir().join(format!("sockstat-top-replay-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = dir.display().to_string();
    let recorder =
        Tracer::record(&["--store", &store, "--transitions", "--flush", "0.2"]).map_err(fail)?;
    let c = TcpStream::connect((ip, port)).map_err(|e| fail(format!("connect: {e}")))?;
    let (mut s, _) = listener
        .accept()
        .map_err(|e| fail(format!("accept: {e}")))?;
    std::thread::sleep(Duration::from_millis(1500));
    let mid_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| fail(e.to_string()))?
        .as_secs();
    std::thread::sleep(Duration::from_millis(1500));
    drop(c);
    let mut byte = [0u8; 1];
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| fail(e.to_string()))?;
    let _ = s.read(&mut byte);
    drop(s);
    std::thread::sleep(Duration::from_millis(700));
    let (_, stderr, code) = recorder.stop().map_err(fail)?;
    if code != 0 {
        return Err(fail(format!("record exited {code}: {stderr:?}")));
    }
    let at = Command::new("date")
        .args(["-u", "-d", &format!("@{mid_s}"), "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .map_err(|e| fail(e.to_string()))?;
    let tmux = Tmux::start(
        "sockstat-top-replay",
        &pane_command(&format!(
            "--replay {store} --at {at} --interval 1 '( sport = :{port} or dport = :{port} )'"
        )),
    )?;
    let open = |s: &str| {
        s.contains(&format!("replay of {store} at {at}")) && state_count(s, "ESTAB") == Some(2)
    };
    tmux.wait_for("the moment with the connection open", 60, open)?;
    for _ in 0..4 {
        tmux.send("Right")?;
    }
    tmux.wait_for("the connection closed, 4 s later", 30, |s| {
        state_count(s, "ESTAB") == Some(0) && state_count(s, "TIME-WAIT") == Some(1)
    })?;
    // Back as far: before the close again (forward stopped at the recording's end, so not
    // necessarily at --at).
    for _ in 0..4 {
        tmux.send("Left")?;
    }
    tmux.wait_for("the moment with the connection open again", 30, |s| {
        s.contains(&format!("replay of {store} at ")) && state_count(s, "ESTAB") == Some(2)
    })?;
    tmux.send("q")?;
    let restored = check_restored(&tmux);
    let _ = std::fs::remove_dir_all(&dir);
    restored
}

fn run_once(args: &[&str]) -> Result<(Option<i32>, String, String), Failed> {
    let out = Command::new(sockstat_bin())
        .arg("top")
        .args(args)
        .output()
        .map_err(|e| fail(e.to_string()))?;
    Ok((
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

fn json_count(snap: &Value, state: &str) -> Option<u64> {
    snap["states"]
        .as_array()?
        .iter()
        .find(|r| r["state"] == state)?["count"]
        .as_u64()
}

fn once_json() -> TestResult {
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let (listener, port) = listen_any(ip)?;
    let mut pairs = Vec::new();
    for _ in 0..2 {
        let c =
            TcpStream::connect((ip, port)).map_err(|e| fail(format!("connect :{port}: {e}")))?;
        let (s, _) = listener
            .accept()
            .map_err(|e| fail(format!("accept: {e}")))?;
        pairs.push((c, s));
    }
    let filter = format!("( sport = :{port} or dport = :{port} )");
    let bin = sockstat_bin();
    let child = Command::new(&bin)
        .args(["top", "--once", "--json", "--interval", "3", &filter])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| fail(e.to_string()))?;
    // Three more connections while it measures, once its programs are attached.
    wait_attached(child.id()).map_err(fail)?;
    for _ in 0..3 {
        let c =
            TcpStream::connect((ip, port)).map_err(|e| fail(format!("connect :{port}: {e}")))?;
        let (s, _) = listener
            .accept()
            .map_err(|e| fail(format!("accept: {e}")))?;
        pairs.push((c, s));
    }
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let snap: Value =
        serde_json::from_str(text.trim()).map_err(|e| fail(format!("{e}: {text}")))?;
    let checks = [
        ("ESTAB", json_count(&snap, "ESTAB"), 10),
        ("LISTEN", json_count(&snap, "LISTEN"), 1),
    ];
    for (what, got, want) in checks {
        if got != Some(want) {
            return Err(fail(format!("{what}: got {got:?}, want {want}: {snap}")));
        }
    }
    let connect = snap["edges"]
        .as_array()
        .and_then(|e| {
            e.iter()
                .find(|e| e["from"] == "CLOSE" && e["to"] == "SYN-SENT")
        })
        .cloned()
        .unwrap_or(Value::Null);
    if connect["count"] != 3 || connect["lit"] != true {
        return Err(fail(format!(
            "CLOSE -> SYN-SENT should be 3 and lit: {snap}"
        )));
    }
    if snap["rates"]["syn_sent"].as_f64() != Some(1.0) {
        return Err(fail(format!("3 connects in 3 s should be 1/s: {snap}")));
    }
    if snap["source"]["kind"] != "ebpf" || snap["filter"] != filter.as_str() {
        return Err(fail(format!("source/filter: {snap}")));
    }
    drop(pairs);
    Ok(())
}

fn once_alert() -> TestResult {
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let (_listener, port) = listen_any(ip)?;
    let filter = format!("sport = :{port}");
    let (code, out, err) = run_once(&[
        "--once",
        "--json",
        "--interval",
        "0.2",
        "--alert",
        "listen >= 1",
        &filter,
    ])?;
    let snap: Value =
        serde_json::from_str(out.trim()).map_err(|e| fail(format!("{e}: {out}{err}")))?;
    if code != Some(1) || snap["alerts"][0]["firing"] != true {
        return Err(fail(format!(
            "a firing alert must exit 1 (got {code:?}): {snap}"
        )));
    }
    let (code, _, _) = run_once(&[
        "--once",
        "--interval",
        "0.2",
        "--alert",
        "listen > 1",
        "--alert",
        "time-wait/s > 1000",
        &filter,
    ])?;
    if code != Some(0) {
        return Err(fail(format!(
            "no alert fires, exit must be 0, got {code:?}"
        )));
    }
    let (code, out, err) = run_once(&["--once", "--alert", "lisen > 1"])?;
    if code != Some(2)
        || !out.is_empty()
        || !err.contains("unknown metric 'lisen'")
        || err.lines().count() != 1
    {
        return Err(fail(format!(
            "bad alert: exit {code:?}, stdout {out:?}, stderr {err:?}"
        )));
    }
    Ok(())
}

fn polling() -> TestResult {
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let (listener, port) = listen_any(ip)?;
    let c = TcpStream::connect((ip, port)).map_err(|e| fail(format!("connect :{port}: {e}")))?;
    let (s, _) = listener
        .accept()
        .map_err(|e| fail(format!("accept: {e}")))?;
    let filter = format!("( sport = :{port} or dport = :{port} )");
    let (code, out, err) = run_once(&["--once", "--json", "--poll", "--interval", "0.2", &filter])?;
    let snap: Value =
        serde_json::from_str(out.trim()).map_err(|e| fail(format!("{e}: {out}{err}")))?;
    if code != Some(0) || snap["source"]["kind"] != "polling" {
        return Err(fail(format!("expected the polling source: {snap}")));
    }
    if json_count(&snap, "ESTAB") != Some(2) || json_count(&snap, "LISTEN") != Some(1) {
        return Err(fail(format!("polling counts: {snap}")));
    }
    if !snap["rates"]["transitions"].is_null() || snap["edges"] != serde_json::json!([]) {
        return Err(fail(format!(
            "polling must not invent per-edge data: {snap}"
        )));
    }
    // The same screen as text says where the numbers come from.
    let (_, text, _) = run_once(&["--once", "--poll", "--interval", "0.2", &filter])?;
    if !text.contains("polling sock_diag: --poll")
        || !text.contains("no per-edge data while polling")
    {
        return Err(fail(format!("polling header missing:\n{text}")));
    }
    // Without privilege (as nobody) it falls back by itself and says why.
    let out = NobodyBinary::new("top")
        .map_err(fail)?
        .command()
        .args(["top", "--once", "--json", "--interval", "0.2", &filter])
        .output()
        .map_err(|e| fail(format!("setpriv: {e}")))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let snap: Value = serde_json::from_str(text.trim()).map_err(|e| {
        fail(format!(
            "{e}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        ))
    })?;
    let reason = snap["source"]["reason"].as_str().unwrap_or("");
    if snap["source"]["kind"] != "polling" || !reason.contains("no BPF privilege") {
        return Err(fail(format!(
            "unprivileged top must poll and say why: {snap}"
        )));
    }
    if json_count(&snap, "ESTAB") != Some(2) {
        return Err(fail(format!("unprivileged counts: {snap}")));
    }
    drop((c, s));
    Ok(())
}

/// `top --once --json` in a namespace of its own, where three kinds of trouble happen:
/// - a peer on a TUN device that connects, then never acknowledges what the host sends:
///   the host retransmits, and that connection heads `retransmitting`;
/// - the same peer sends a segment beyond the window, one with a bad checksum and a SYN to
///   a closed port while top measures: `drops` counts each reason once, from the kernel;
/// - `ip_local_port_range` holds 20 ports, and 15 connections to one destination are
///   closed by the client while top measures: `ports` gives it 5 left and a finite forecast
///   at that rate (top's rate is the live one: TIME-WAIT sockets it saw begin).
fn once_trouble() -> TestResult {
    const PORT: u16 = 7620;
    const CHURN_PORT: u16 = 7621;
    let local = Ipv4Addr::new(10, 79, 0, 1);
    let peer = Ipv4Addr::new(10, 79, 0, 2);
    let ns = twenty_port_netns("top-trouble").map_err(fail)?;
    let mut tun = TunPeer::in_netns(&ns, "sst-tun2", local, peer).map_err(fail)?;
    let (listener, churn) = ns
        .within(|| -> std::io::Result<(TcpListener, TcpListener)> {
            Ok((
                TcpListener::bind((local, PORT))?,
                TcpListener::bind(("127.0.0.1", CHURN_PORT))?,
            ))
        })
        .map_err(fail)?
        .map_err(|e| fail(e.to_string()))?;
    let child = Command::new(sockstat_bin())
        // Long enough for what follows under emulation (the kernel matrix runs in TCG).
        .args(["top", "--once", "--json", "--interval", "8", "-N", &ns.name])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| fail(e.to_string()))?;
    // Every hook, the timewait ones and kfree_skb included (the first link comes long
    // before the last under emulation).
    wait_links(child.id(), ALL_HOOKS).map_err(fail)?;
    std::thread::sleep(Duration::from_millis(200));
    client_closed_connections(&ns, &churn, CHURN_PORT, 15).map_err(fail)?;
    tun.provoke_drops(40000, PORT)
        .map_err(|e| fail(e.to_string()))?;
    let (mut server, _) = listener.accept().map_err(|e| fail(e.to_string()))?;
    server
        .write_all(&[7u8; 100])
        .map_err(|e| fail(e.to_string()))?;
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    drop(server);
    let text = String::from_utf8_lossy(&out.stdout);
    let snap: Value =
        serde_json::from_str(text.trim()).map_err(|e| fail(format!("{e}: {text}")))?;
    let retransmitting = &snap["retransmitting"][0];
    if retransmitting["remote"] != format!("{peer}:40000").as_str()
        || retransmitting["count"].as_u64().is_none_or(|n| n < 1)
        || !snap["rates"]["retransmits"]
            .as_f64()
            .is_some_and(|r| r > 0.0)
    {
        return Err(fail(format!(
            "want the TUN peer's connection retransmitting: {}; rates {}",
            snap["retransmitting"], snap["rates"]
        )));
    }
    for reason in ["tcp-invalid-sequence", "tcp-csum", "no-socket"] {
        let count = snap["drops"]
            .as_array()
            .and_then(|d| d.iter().find(|r| r["reason"] == reason))
            .and_then(|r| r["count"].as_u64());
        if count != Some(1) {
            return Err(fail(format!("{reason}: want 1 drop: {snap}")));
        }
    }
    let destination = format!("127.0.0.1:{CHURN_PORT}");
    let ports = snap["ports"]
        .as_array()
        .and_then(|p| p.iter().find(|h| h["destination"] == destination.as_str()))
        .cloned()
        .unwrap_or(Value::Null);
    if ports["available"].as_u64() != Some(5)
        || !ports["exhaustion_s"]
            .as_f64()
            .is_some_and(|s| s > 0.0 && s < 300.0)
    {
        return Err(fail(format!(
            "want 5 ports left toward {destination} and a forecast under 300 s: {snap}"
        )));
    }
    Ok(())
}
