//! The guest's initramfs: busybox, the modules the suites need, and an init that mounts the
//! host's root file system (read-only 9p, tmpfs overlay) and runs `/vmtest-out/run.sh` in it.
use std::{
    fs,
    io::{BufWriter, Write as _},
    path::Path,
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use super::kernels::KernelTree;

/// Modules to load at boot, with their dependencies. A real server loads the diag modules on
/// demand through modprobe, which the guest cannot run (its modules are not in the host's
/// /lib/modules), so they are all loaded up front.
const MODULES: &[&str] = &[
    // The host's root file system over 9p, with a writable overlay.
    "virtio_pci",
    "9pnet_virtio",
    "9p",
    "overlay",
    // sock_diag for every family sockstat and ss list.
    "inet_diag",
    "tcp_diag",
    "udp_diag",
    "raw_diag",
    "unix_diag",
    "af_packet_diag",
    "netlink_diag",
    "mptcp_diag",
    // Test hosts joined by veth pairs; netem for held packets; a TUN device for a peer
    // that writes its own segments.
    "veth",
    "sch_netem",
    "tun",
];

/// The guest's PID 1. `vmtest.probe` on the command line only proves the VM runs (the KVM
/// check). Any setup failure says so on the console and powers off.
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
fail() { echo "vmtest: guest setup failed: $*"; poweroff -f; }
if grep -q vmtest.probe /proc/cmdline; then echo "vmtest: probe ok"; poweroff -f; fi
for m in $(cat /modules/order); do insmod /modules/$m || fail "insmod $m"; done
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=524288 hostroot /host || fail "9p mount of the host's /"
mount -t tmpfs -o size=75% tmpfs /rw || fail "tmpfs"
mkdir /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/host,upperdir=/rw/upper,workdir=/rw/work /newroot || fail "overlay"
mkdir -p /newroot/vmtest-out
mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288 out /newroot/vmtest-out || fail "9p mount of the results"
cd /newroot
mount -t proc proc proc
mount -t sysfs sysfs sys
mount -t devtmpfs devtmpfs dev
mkdir -p dev/pts dev/shm
mount -t devpts devpts dev/pts
mount -t tmpfs tmpfs dev/shm
mount -t tmpfs tmpfs tmp
mount -t tmpfs tmpfs run
mount -t bpf bpf sys/fs/bpf
mount -t cgroup2 cgroup2 sys/fs/cgroup
ip link set lo up
echo "vmtest: guest up $(uname -r)"
chroot /newroot /bin/bash /vmtest-out/run.sh
echo "vmtest: guest done"
sync
poweroff -f
"#;

/// Writes the initramfs (an uncompressed newc cpio archive, which the kernel accepts).
pub fn write(tree: &KernelTree, path: &Path) -> Result<()> {
    let modules = module_files(tree)?;
    let mut w = BufWriter::new(fs::File::create(path)?);
    let mut ino = 1;
    let mut entry = |w: &mut BufWriter<fs::File>, name: &str, mode: u32, data: &[u8]| {
        ino += 1;
        let size = u32::try_from(data.len()).context("file too large for cpio")?;
        let mut file = cpio::newc::Builder::new(name)
            .ino(ino)
            .mode(mode)
            .nlink(1)
            .write(&mut *w, size);
        file.write_all(data)?;
        file.finish()?;
        anyhow::Ok(())
    };
    for dir in [
        "bin", "dev", "proc", "sys", "host", "rw", "newroot", "modules",
    ] {
        entry(&mut w, dir, 0o040_755, &[])?;
    }
    let busybox = fs::read("/bin/busybox").context("reading /bin/busybox (busybox-static)")?;
    entry(&mut w, "bin/busybox", 0o100_755, &busybox)?;
    entry(&mut w, "init", 0o100_755, INIT.as_bytes())?;
    let mut order = String::new();
    for (name, data) in &modules {
        entry(&mut w, &format!("modules/{name}"), 0o100_644, data)?;
        order.push_str(name);
        order.push('\n');
    }
    entry(&mut w, "modules/order", 0o100_644, order.as_bytes())?;
    cpio::newc::trailer(&mut w)?;
    w.flush()?;
    Ok(())
}

/// Each module file to load, in dependency order, uncompressed (busybox's insmod reads plain
/// `.ko` files only).
fn module_files(tree: &KernelTree) -> Result<Vec<(String, Vec<u8>)>> {
    let mut paths: Vec<String> = Vec::new();
    for module in MODULES {
        let out = Command::new("modprobe")
            .arg("-d")
            .arg(&tree.dir)
            .args(["-S", &tree.release, "--show-depends", module])
            .output()
            .context("running modprobe (package kmod)")?;
        if !out.status.success() {
            bail!(
                "{} has no module {module}: {}",
                tree.release,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        // "insmod PATH [params]" per module to load; "builtin NAME" needs nothing.
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let mut words = line.split_whitespace();
            if let (Some("insmod"), Some(path)) = (words.next(), words.next())
                && !paths.iter().any(|p| p == path)
            {
                paths.push(path.to_string());
            }
        }
    }
    let mut files = Vec::new();
    for path in paths {
        let file = Path::new(&path)
            .file_name()
            .and_then(|f| f.to_str())
            .with_context(|| format!("module path {path}"))?;
        let (name, decompressor) = if let Some(stem) = file.strip_suffix(".xz") {
            (stem, Some("xz"))
        } else if let Some(stem) = file.strip_suffix(".zst") {
            (stem, Some("zstd"))
        } else {
            (file, None)
        };
        let data = match decompressor {
            None => fs::read(&path).with_context(|| format!("reading {path}"))?,
            Some(tool) => {
                let out = Command::new(tool)
                    .args(["-dc", &path])
                    .output()
                    .with_context(|| format!("running {tool}"))?;
                if !out.status.success() {
                    bail!("{tool} -dc {path} failed");
                }
                out.stdout
            }
        };
        files.push((name.to_string(), data));
    }
    Ok(files)
}
