//! The Debian package `cargo xtask dist` builds (`cargo xtask test` builds it first and
//! passes its path in SOCKSTAT_DEB): it installs with dpkg, the binary, the man pages and
//! the completions work, and it removes without leaving a file behind.
//!
//! Root only (dpkg). Not run in vmtest's guests: their root file system is the host's,
//! shared read-only, and packaging does not depend on the kernel.
use std::{path::Path, process::Command};

use libtest_mimic::{Arguments, Trial};
use sockstat_tests::{TestResult, fail, root_or_say_skipped};

fn main() {
    let args = Arguments::from_args();
    let root = root_or_say_skipped("package");
    let deb = std::env::var("SOCKSTAT_DEB").ok();
    if deb.is_none() {
        eprintln!(
            "\n*** sockstat package test SKIPPED: SOCKSTAT_DEB is not set (`cargo xtask test` builds the package and sets it) ***\n"
        );
    }
    let trials = vec![
        Trial::test("deb_installs_works_and_removes_cleanly", install_and_remove)
            .with_ignored_flag(!root || deb.is_none()),
    ];
    libtest_mimic::run(&args, trials).exit();
}

/// `cmd ARGS`: stdout, or a failure with what it said.
fn run(cmd: &str, args: &[&str]) -> Result<String, libtest_mimic::Failed> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| fail(format!("{cmd}: {e}")))?;
    if !out.status.success() {
        return Err(fail(format!(
            "{cmd} {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn install_and_remove() -> TestResult {
    let deb = std::env::var("SOCKSTAT_DEB").map_err(|_| fail("SOCKSTAT_DEB unset"))?;
    if run("dpkg", &["-s", "sockstat"]).is_ok() {
        return Err(fail(
            "a sockstat package is installed already; the test would replace it (dpkg -r sockstat first)",
        ));
    }
    let fields = run(
        "dpkg-deb",
        &["-f", &deb, "Package", "Version", "Architecture"],
    )?;
    if !fields.contains("Package: sockstat") {
        return Err(fail(format!("control fields: {fields}")));
    }
    run("dpkg", &["-i", &deb])?;
    let files = run("dpkg", &["-L", "sockstat"]);
    let result = check_installed();
    let removed = run("dpkg", &["--purge", "sockstat"]);
    result?;
    removed?;
    // Nothing the package put there is left behind (directories shared with other packages
    // stay).
    let files = files?;
    let left: Vec<&str> = files.lines().filter(|f| Path::new(f).is_file()).collect();
    if !left.is_empty() {
        return Err(fail(format!("left behind after removal: {left:?}")));
    }
    if run("dpkg", &["-s", "sockstat"]).is_ok() {
        return Err(fail("dpkg still knows the package after --purge"));
    }
    Ok(())
}

fn check_installed() -> TestResult {
    let listing = run("/usr/bin/sockstat", &["-tln"])?;
    if !listing.starts_with("State") {
        return Err(fail(format!("sockstat -tln printed: {listing}")));
    }
    for page in [
        "sockstat",
        "sockstat-trace",
        "sockstat-top",
        "sockstat-serve",
    ] {
        let path = run("man", &["-w", page])?;
        if path.trim() != format!("/usr/share/man/man1/{page}.1.gz") {
            return Err(fail(format!("man -w {page}: {path}")));
        }
    }
    // The trace page teaches the columns and the filter page the language.
    let trace_page = run("man", &["-P", "cat", "sockstat-trace"])?;
    if !trace_page.contains("PREV_US") || !trace_page.contains("synthesized") {
        return Err(fail("man sockstat-trace does not explain the columns"));
    }
    let bash = run(
        "bash",
        &[
            "-c",
            "source /usr/share/bash-completion/completions/sockstat && complete -p sockstat",
        ],
    )?;
    if !bash.contains("sockstat") {
        return Err(fail(format!("bash completion: {bash}")));
    }
    for f in [
        "/usr/share/zsh/vendor-completions/_sockstat",
        "/usr/share/fish/vendor_completions.d/sockstat.fish",
        "/usr/lib/systemd/system/sockstat.service",
    ] {
        if !Path::new(f).is_file() {
            return Err(fail(format!("{f} is missing")));
        }
    }
    Ok(())
}
