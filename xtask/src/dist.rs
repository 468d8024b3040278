//! `cargo xtask dist`: a Debian package of what a system tool ships: the static binary, one
//! man page per command, bash/zsh/fish completions and a systemd unit for `sockstat serve`.
//! Built with dpkg-deb from a staging tree (no cargo-deb to install: dpkg-deb is on every
//! Debian system, and the package is a handful of files).
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

/// The unit `systemctl enable --now sockstat` starts: the exporter on its default port.
const UNIT: &str = "\
[Unit]
Description=sockstat Prometheus exporter: TCP states and transitions
Documentation=man:sockstat-serve(1)
After=network.target

[Service]
# Loads as root with only what loading needs (sockstat serve --help: CAPABILITIES), then
# runs on as nobody with CAP_DAC_READ_SEARCH and CAP_SYS_PTRACE (the sockets' owners).
ExecStart=/usr/bin/sockstat serve --user nobody
Restart=on-failure
CapabilityBoundingSet=CAP_BPF CAP_PERFMON CAP_SYSLOG CAP_DAC_READ_SEARCH CAP_SYS_PTRACE CAP_SETUID CAP_SETGID CAP_SETPCAP
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
";

const COPYRIGHT: &str = "\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: sockstat

Files: *
License: MIT or GPL-2.0 (the kernel programs: Dual MIT/GPL)
";

/// Builds the package from the release binary `bin`; returns its path.
pub fn build(root: &Path, bin: &Path) -> Result<PathBuf> {
    let version = env!("CARGO_PKG_VERSION");
    let arch = run(Command::new("dpkg").arg("--print-architecture"))?;
    let name = format!("sockstat_{version}_{}", arch.trim());
    let dist = root.join("target/dist");
    let stage = dist.join(&name);
    if stage.exists() {
        fs::remove_dir_all(&stage).with_context(|| format!("clearing {}", stage.display()))?;
    }
    let dir = |rel: &str| -> Result<PathBuf> {
        let d = stage.join(rel);
        fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        Ok(d)
    };
    let usr_bin = dir("usr/bin")?;
    fs::copy(bin, usr_bin.join("sockstat")).context("copying the binary")?;
    run(Command::new("strip").arg(usr_bin.join("sockstat")))?;

    // Built beside `sockstat` by the same workspace build.
    let generate = bin.with_file_name("sockstat-generate");
    let man = dir("usr/share/man/man1")?;
    run(Command::new(&generate).arg("man").arg(&man))?;
    for page in fs::read_dir(&man)? {
        // -n: no name or time stamp inside, so the package is reproducible.
        run(Command::new("gzip").args(["-9n"]).arg(page?.path()))?;
    }
    for (shell, rel, file) in [
        ("bash", "usr/share/bash-completion/completions", "sockstat"),
        ("zsh", "usr/share/zsh/vendor-completions", "_sockstat"),
        (
            "fish",
            "usr/share/fish/vendor_completions.d",
            "sockstat.fish",
        ),
    ] {
        let script = run(Command::new(&generate).args(["completions", shell]))?;
        fs::write(dir(rel)?.join(file), script)?;
    }
    fs::write(
        dir("usr/lib/systemd/system")?.join("sockstat.service"),
        UNIT,
    )?;
    fs::write(dir("usr/share/doc/sockstat")?.join("copyright"), COPYRIGHT)?;

    let installed_kib = du_kib(&stage)?;
    let control = format!(
        "Package: sockstat\n\
         Version: {version}\n\
         Architecture: {arch}\n\
         Maintainer: sockstat developers <sockstat@localhost>\n\
         Installed-Size: {installed_kib}\n\
         Section: net\n\
         Priority: optional\n\
         Description: live socket states and TCP transitions, ss and netstat compatible\n \
         sockstat lists sockets like ss (same options and filter language, plus JSON),\n \
         traces every TCP state transition in the kernel with eBPF (owners, causes,\n \
         TIME-WAIT, lifetimes), and offers a dashboard, netstat's statistics, a report\n \
         and a Prometheus exporter.\n",
        arch = arch.trim()
    );
    fs::write(dir("DEBIAN")?.join("control"), control)?;
    let deb = dist.join(format!("{name}.deb"));
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(&stage)
        .arg(&deb))?;
    Ok(deb)
}

/// Size of the files under `dir` in KiB (dpkg's Installed-Size), the control files aside.
fn du_kib(dir: &Path) -> Result<u64> {
    let mut bytes = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d)? {
            let e = e?;
            let meta = e.metadata()?;
            if meta.is_dir() {
                stack.push(e.path());
            } else {
                bytes += meta.len();
            }
        }
    }
    Ok(bytes.div_ceil(1024))
}

/// Runs `cmd`, its stdout as text; a failure names the command and what it said.
fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("starting {:?}", cmd.get_program()))?;
    if !out.status.success() {
        bail!(
            "{:?} failed: {}",
            cmd,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
