//! Debian's kernel packages: the newest of a series, fetched once and unpacked under
//! `target/vmtest/kernels/`.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use super::KernelChoice;

/// A kernel series, named as Debian names its packages: `PREFIX<n>SUFFIX`. The generic
/// flavour, not `cloud`: its 9p and virtio drivers are modules the initramfs can load.
pub struct Series {
    pub label: &'static str,
    prefix: &'static str,
    suffix: &'static str,
}

const SERIES: [(KernelChoice, Series); 2] = [
    (
        KernelChoice::V6_1,
        Series {
            label: "6.1",
            prefix: "linux-image-6.1.0-",
            suffix: "-amd64-unsigned",
        },
    ),
    (
        KernelChoice::V6_12,
        Series {
            label: "6.12",
            prefix: "linux-image-6.12.",
            suffix: "+deb12-amd64-unsigned",
        },
    ),
];

/// An unpacked kernel package.
pub struct KernelTree {
    /// The package's root: `boot/`, `lib/modules/<release>/`.
    pub dir: PathBuf,
    pub vmlinuz: PathBuf,
    /// `uname -r` of the kernel (its module directory's name).
    pub release: String,
}

impl Series {
    pub fn of(k: KernelChoice) -> Option<&'static Series> {
        SERIES.iter().find(|(c, _)| *c == k).map(|(_, s)| s)
    }

    /// The number between prefix and suffix of a package name of this series.
    fn number(&self, name: &str) -> Option<u32> {
        name.strip_prefix(self.prefix)?
            .strip_suffix(self.suffix)?
            .parse()
            .ok()
    }

    fn newest<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Option<String> {
        names
            .into_iter()
            .filter_map(|n| Some((self.number(n)?, n)))
            .max_by_key(|(n, _)| *n)
            .map(|(_, name)| name.to_string())
    }

    /// The newest package of the series apt knows, else the newest one already cached.
    fn package(&self, cache: &Path) -> Result<String> {
        if let Some(name) = self.newest(apt_names(self.prefix)?.iter().map(String::as_str)) {
            return Ok(name);
        }
        eprintln!(
            "vmtest: apt knows no {}*; running apt-get update",
            self.prefix
        );
        let _ = Command::new("apt-get").args(["update", "-qq"]).status();
        if let Some(name) = self.newest(apt_names(self.prefix)?.iter().map(String::as_str)) {
            return Ok(name);
        }
        let cached: Vec<String> = fs::read_dir(cache)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        self.newest(cached.iter().map(String::as_str))
            .with_context(|| {
                format!(
                    "no {}N{} package in apt or in {}",
                    self.prefix,
                    self.suffix,
                    cache.display()
                )
            })
    }

    /// The newest kernel of the series, downloaded and unpacked once.
    pub fn fetch(&self, cache: &Path) -> Result<KernelTree> {
        fs::create_dir_all(cache)?;
        let name = self.package(cache)?;
        let dir = cache.join(&name);
        if !dir.join("boot").is_dir() {
            eprintln!("vmtest: downloading {name}");
            let status = Command::new("apt-get")
                .args(["download", "-qq", &name])
                .current_dir(cache)
                .status()
                .context("running apt-get download")?;
            if !status.success() {
                bail!("apt-get download {name} failed");
            }
            let deb = fs::read_dir(cache)?
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .find(|p| {
                    p.file_name()
                        .and_then(|f| f.to_str())
                        .is_some_and(|f| f.starts_with(&format!("{name}_")) && f.ends_with(".deb"))
                })
                .with_context(|| format!("apt-get download left no {name}_*.deb"))?;
            let partial = cache.join(format!("{name}.partial"));
            let _ = fs::remove_dir_all(&partial);
            let status = Command::new("dpkg-deb")
                .arg("-x")
                .arg(&deb)
                .arg(&partial)
                .status()
                .context("running dpkg-deb")?;
            if !status.success() {
                bail!("dpkg-deb -x {} failed", deb.display());
            }
            fs::rename(&partial, &dir)?;
            fs::remove_file(&deb)?;
        }
        let vmlinuz = fs::read_dir(dir.join("boot"))?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .and_then(|f| f.to_str())
                    .is_some_and(|f| f.starts_with("vmlinuz-"))
            })
            .with_context(|| format!("{name} has no boot/vmlinuz-*"))?;
        let release = vmlinuz
            .file_name()
            .and_then(|f| f.to_str())
            .and_then(|f| f.strip_prefix("vmlinuz-"))
            .context("vmlinuz name")?
            .to_string();
        if !dir
            .join("lib/modules")
            .join(&release)
            .join("modules.dep")
            .is_file()
        {
            let status = Command::new("depmod")
                .arg("-b")
                .arg(&dir)
                .arg(&release)
                .status()
                .context("running depmod (package kmod)")?;
            if !status.success() {
                bail!("depmod -b {} {release} failed", dir.display());
            }
        }
        Ok(KernelTree {
            dir,
            vmlinuz,
            release,
        })
    }
}

/// Package names apt has a candidate for, starting with `prefix`.
fn apt_names(prefix: &str) -> Result<Vec<String>> {
    let out = Command::new("apt-cache")
        .args(["pkgnames", prefix])
        .output()
        .context("running apt-cache")?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_package_of_each_series() {
        let names = [
            "linux-image-6.1.0-47-amd64-unsigned",
            "linux-image-6.1.0-57-amd64-unsigned",
            "linux-image-6.1.0-57-cloud-amd64-unsigned",
            "linux-image-6.1.0-9-amd64-unsigned",
            "linux-image-6.12.117+deb12-amd64-unsigned",
            "linux-image-6.12.99+deb12-amd64-unsigned",
            "linux-image-6.12.120+deb12-rt-amd64-unsigned",
        ];
        let v61 = Series::of(KernelChoice::V6_1).unwrap();
        let v612 = Series::of(KernelChoice::V6_12).unwrap();
        assert_eq!(
            v61.newest(names).as_deref(),
            Some("linux-image-6.1.0-57-amd64-unsigned")
        );
        assert_eq!(
            v612.newest(names).as_deref(),
            Some("linux-image-6.12.117+deb12-amd64-unsigned")
        );
        assert_eq!(Series::of(KernelChoice::Host).map(|s| s.label), None);
    }
}
