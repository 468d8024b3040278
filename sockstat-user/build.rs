//! Builds the kernel programs (`sockstat-ebpf`) with aya-build, as aya-template does. The
//! object lands in `$OUT_DIR/sockstat` and is embedded with `include_bytes_aligned!`.
use anyhow::{Context as _, anyhow};

fn main() -> anyhow::Result<()> {
    let metadata_root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or_else(|| anyhow!("sockstat-user has no parent directory"))?
        .join("sockstat-ebpf");
    let root_dir = metadata_root
        .to_str()
        .context("sockstat-ebpf path is not UTF-8")?;
    let ebpf = aya_build::Package {
        name: "sockstat-ebpf",
        root_dir,
        ..Default::default()
    };
    aya_build::build_ebpf([ebpf], aya_build::Toolchain::default())
}
