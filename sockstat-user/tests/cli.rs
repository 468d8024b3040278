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
    assert_one_line_error(&sockstat(&["trace", "-4", "-6"]), "cannot be used");
}

#[test]
fn help_and_version_succeed() {
    let out = sockstat(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("sockstat "));
    let out = sockstat(&["trace", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("--ring-kb"));
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
    assert_one_line_error(&out, "needs root, or CAP_BPF and CAP_PERFMON");
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
