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
