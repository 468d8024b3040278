//! `cargo xtask setup`: idempotent installation of the build toolchain and test tools.
use std::{
    env, fs,
    os::unix::fs::symlink,
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

const NIGHTLY: &str = "nightly";

/// Debian packages the tests and benchmarks use, with one binary each that proves the package
/// is installed.
const PACKAGES: &[(&str, &str)] = &[
    ("iproute2", "ss"),
    ("net-tools", "netstat"),
    ("libbpf-tools", "tcpstates"),
    ("tmux", "tmux"),
    ("bpftool", "bpftool"),
    ("hyperfine", "hyperfine"),
    ("prometheus", "promtool"),
    // htpasswd: bcrypt hashes for serve --web-config's basic auth.
    ("apache2-utils", "htpasswd"),
    // The web-config test's own CA and server certificate.
    ("openssl", "openssl"),
    // GNU time: peak RSS of benchmarked commands.
    ("time", "time"),
    // A real HTTP client for the exporter tests.
    ("curl", "curl"),
    // setpriv (unprivileged runs in tests) and lsns.
    ("util-linux", "setpriv"),
    // `man -w` in the package test.
    ("man-db", "man"),
    // `-N CONTAINER`: a Docker daemon of the test's own, and a one-file busybox image.
    ("docker.io", "dockerd"),
    ("busybox-static", "busybox"),
    // The image test runs it under containerd's own client too.
    ("containerd", "ctr"),
    // record --sink / history --from: a fleet's store, started by the history suite.
    ("clickhouse-server", "clickhouse-server"),
];

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc_geteuid() == 0 }
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// nightly's rust-src, and bpf-linker linked against nightly's own LLVM.
pub fn toolchain() -> Result<()> {
    rust_src()?;
    bpf_linker()
}

fn rust_src() -> Result<()> {
    nightly_component("rust-src")
}

/// Adds a component (rust-src for the kernel build, clippy for its lint) to the nightly
/// toolchain when it is missing.
pub fn nightly_component(name: &str) -> Result<()> {
    let installed = output(
        "rustup",
        &["component", "list", "--toolchain", NIGHTLY, "--installed"],
    )
    .context("the nightly toolchain is needed for the kernel programs (rustup toolchain list)")?;
    if installed.lines().any(|l| l.starts_with(name)) {
        return Ok(());
    }
    eprintln!("xtask: adding {name} to the nightly toolchain");
    run(Command::new("rustup").args(["component", "add", name, "--toolchain", NIGHTLY]))
}

/// There is no system LLVM matching rustc's, so bpf-linker is built against the libLLVM that
/// ships inside the nightly sysroot, through a folder of two links (platform.md).
fn bpf_linker() -> Result<()> {
    let verbose = output("rustc", &[&format!("+{NIGHTLY}"), "-vV"])?;
    let llvm_version = verbose
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .context("`rustc +nightly -vV` printed no LLVM version")?
        .trim()
        .to_string();
    let major = llvm_version
        .split('.')
        .next()
        .context("malformed LLVM version")?
        .to_string();
    let sysroot =
        PathBuf::from(output("rustc", &[&format!("+{NIGHTLY}"), "--print", "sysroot"])?.trim());
    let lib = sysroot.join("lib");
    // The real shared library: `libLLVM.so.<ver>`; `libLLVM-<major>-rust-*.so` is a linker
    // script and cannot be loaded.
    let real = fs::read_dir(&lib)
        .with_context(|| format!("reading {}", lib.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|name| name.starts_with("libLLVM.so."))
        .with_context(|| format!("no libLLVM.so.* in {}", lib.display()))?;

    let prefix = home()?.join(format!(".local/share/sockstat/llvm-{major}"));
    let stamp = prefix.join("bpf-linker.stamp");
    let want = format!("{real}\n");
    let linker_works = Command::new("bpf-linker")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if linker_works && fs::read_to_string(&stamp).is_ok_and(|s| s == want) {
        return Ok(());
    }

    eprintln!("xtask: building bpf-linker against {real} (about a minute)");
    let prefix_lib = prefix.join("lib");
    fs::create_dir_all(&prefix_lib)?;
    for name in ["libLLVM.so".to_string(), real.clone()] {
        let link = prefix_lib.join(&name);
        let _ = fs::remove_file(&link);
        symlink(lib.join(&real), &link).with_context(|| format!("linking {}", link.display()))?;
    }
    run(Command::new("cargo")
        .args([
            "install",
            "--force",
            "bpf-linker",
            "--no-default-features",
            "--features",
            &format!("llvm-{major}"),
        ])
        .env("LLVM_PREFIX", &prefix)
        // Keep the host toolchain for building the linker itself.
        .env_remove("RUSTUP_TOOLCHAIN"))?;
    fs::write(&stamp, want)?;
    Ok(())
}

/// What `cargo xtask vmtest` adds: QEMU, a static busybox for the guest's initramfs, and
/// depmod/modprobe to resolve the kernel package's module dependencies.
const VM_PACKAGES: &[(&str, &str)] = &[
    ("qemu-system-x86", "qemu-system-x86_64"),
    ("busybox-static", "busybox"),
    ("kmod", "depmod"),
    ("xz-utils", "xz"),
];

/// Installs the Debian packages whose binaries are missing (apt-get update first, once).
pub fn packages() -> Result<()> {
    install_missing(PACKAGES)
}

/// The packages `cargo xtask vmtest` needs besides the tests' own.
pub fn vm_packages() -> Result<()> {
    install_missing(VM_PACKAGES)?;
    // Debian's dynamic `busybox` package provides /bin/busybox too; the guest needs the
    // static one.
    let static_busybox = Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", "busybox-static"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"));
    if !static_busybox {
        install(&["busybox-static"])?;
    }
    Ok(())
}

fn install_missing(packages: &[(&str, &str)]) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .filter(|(_, bin)| !on_path(bin))
        .map(|(pkg, _)| *pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        eprintln!(
            "xtask: missing test tools ({}); install them as root: apt-get install {}",
            missing.join(", "),
            missing.join(" ")
        );
        return Ok(());
    }
    install(&missing)
}

fn install(missing: &[&str]) -> Result<()> {
    if !is_root() {
        bail!("installing {} needs root", missing.join(" "));
    }
    eprintln!("xtask: installing {}", missing.join(" "));
    run(Command::new("apt-get").arg("update").arg("-qq"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn on_path(bin: &str) -> bool {
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].iter().map(PathBuf::from))
        .any(|dir| dir.join(bin).is_file())
}

/// kubernetes-validate, pinned, from PyPI into a virtualenv of its own (it carries the
/// Kubernetes OpenAPI schemas, so validation needs no cluster and no network afterwards).
/// Returns the program's path.
pub fn kubernetes_validate() -> Result<PathBuf> {
    const PIN: &str = "kubernetes-validate==1.37.0";
    let venv = home()?.join(".local/share/sockstat/kubernetes-validate-1.37.0");
    let program = venv.join("bin/kubernetes-validate");
    if program.is_file() {
        return Ok(program);
    }
    eprintln!("xtask: installing {PIN} (PyPI) into {}", venv.display());
    run(Command::new("python3").arg("-m").arg("venv").arg(&venv))
        .context("python3 -m venv (Debian: package python3-venv)")?;
    run(Command::new(venv.join("bin/pip")).args(["install", "--quiet", PIN]))?;
    Ok(program)
}

fn home() -> Result<PathBuf> {
    env::var_os("HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .context("HOME is not set")
}

fn output(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}
