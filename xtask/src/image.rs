//! `cargo xtask image`: the OCI image (the static binary alone, FROM scratch, built by the
//! local Docker engine from deploy/image/Dockerfile, no registry), and next to it what
//! deploys it: the DaemonSet with the image's tag, the Grafana dashboard and Prometheus's
//! recording rules. `cargo xtask lint` validates the manifests offline (`validate`).
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

/// The manifests, the dashboard and the rules: (source under the repository, name in
/// target/image/).
const DEPLOYED: &[(&str, &str)] = &[
    ("deploy/kubernetes/sockstat.yaml", "sockstat.yaml"),
    (
        "deploy/grafana/sockstat-dashboard.json",
        "sockstat-dashboard.json",
    ),
    ("deploy/prometheus/sockstat-rules.yml", "sockstat-rules.yml"),
];

/// Kubernetes releases the manifests are validated against: the oldest still in wide use,
/// one in between, and the newest the validator knows.
const KUBERNETES_VERSIONS: &[&str] = &["1.30.0", "1.33.0", "1.37.0"];

/// The image's tag: sockstat:VERSION, the tag the committed DaemonSet names.
pub fn default_tag() -> String {
    format!("sockstat:{}", env!("CARGO_PKG_VERSION"))
}

/// Builds the image tagged `tag` from the release binary `bin`, and writes the deployment
/// files to target/image/; returns that directory.
pub fn build(root: &Path, bin: &Path, tag: &str) -> Result<PathBuf> {
    let out = root.join("target/image");
    let context = out.join("context");
    if context.exists() {
        fs::remove_dir_all(&context).with_context(|| format!("clearing {}", context.display()))?;
    }
    fs::create_dir_all(&context).with_context(|| format!("creating {}", context.display()))?;
    fs::copy(
        root.join("deploy/image/Dockerfile"),
        context.join("Dockerfile"),
    )
    .context("copying deploy/image/Dockerfile")?;
    fs::copy(bin, context.join("sockstat")).context("copying the binary")?;
    run(Command::new("strip").arg(context.join("sockstat")))?;

    let engine = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .context("docker (package docker.io) is not installed")?;
    if !engine.status.success() {
        bail!(
            "no Docker engine answers ({}): start one (systemctl start docker, or dockerd &), or point DOCKER_HOST at one",
            String::from_utf8_lossy(&engine.stderr).trim()
        );
    }
    // The classic builder: Debian's engine has no BuildKit, and FROM scratch + COPY needs
    // nothing more.
    run(Command::new("docker")
        .args(["build", "--quiet", "--tag", tag])
        .arg(&context)
        .env("DOCKER_BUILDKIT", "0"))?;

    for (source, name) in DEPLOYED {
        let text =
            fs::read_to_string(root.join(source)).with_context(|| format!("reading {source}"))?;
        let text = if name.ends_with(".yaml") {
            with_image(&text, tag)
        } else {
            text
        };
        fs::write(out.join(name), text).with_context(|| format!("writing {name}"))?;
    }
    Ok(out)
}

/// The manifest with every container's `image:` set to `tag`.
fn with_image(manifest: &str, tag: &str) -> String {
    manifest
        .lines()
        .map(|line| match line.trim_start().strip_prefix("image: ") {
            Some(_) => {
                let indent = line.len() - line.trim_start().len();
                format!("{}image: {tag}\n", " ".repeat(indent))
            }
            None => format!("{line}\n"),
        })
        .collect()
}

/// Validates every manifest under deploy/kubernetes against the Kubernetes OpenAPI schema
/// of each release in `KUBERNETES_VERSIONS` (strict: an unknown field is an error), offline,
/// with kubernetes-validate from PyPI (its schemas ship inside the package); and checks that
/// the dashboard is JSON whose every panel queries something.
pub fn validate(root: &Path) -> Result<()> {
    let validator = crate::setup::kubernetes_validate()?;
    let dir = root.join("deploy/kubernetes");
    let mut manifests: Vec<PathBuf> = fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    manifests.sort();
    if manifests.is_empty() {
        bail!("no manifests in {}", dir.display());
    }
    for version in KUBERNETES_VERSIONS {
        run(Command::new(&validator)
            .args(["--strict", "--quiet", "--kubernetes-version", version])
            .args(&manifests))
        .with_context(|| format!("the manifests against Kubernetes {version}"))?;
    }
    let dashboard = root.join("deploy/grafana/sockstat-dashboard.json");
    let json: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(&dashboard)
            .with_context(|| format!("reading {}", dashboard.display()))?,
    )
    .with_context(|| format!("{} is not JSON", dashboard.display()))?;
    let panels = json["panels"]
        .as_array()
        .context("the dashboard has no panels")?;
    for panel in panels {
        let queries = panel["targets"].as_array().map_or(0, |t| {
            t.iter()
                .filter(|q| q["expr"].as_str().is_some_and(|e| !e.is_empty()))
                .count()
        });
        if queries == 0 {
            bail!("dashboard panel {:?} queries nothing", panel["title"]);
        }
    }
    eprintln!(
        "xtask: {} manifest file(s) valid for Kubernetes {}; dashboard: {} panels",
        manifests.len(),
        KUBERNETES_VERSIONS.join(", "),
        panels.len()
    );
    Ok(())
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_image_tag_replaces_every_image_line_and_nothing_else() {
        let manifest = "spec:\n  containers:\n    - name: a\n      image: sockstat:0.1.0\n      imagePullPolicy: IfNotPresent\n";
        assert_eq!(
            with_image(manifest, "registry.example/sockstat:9"),
            "spec:\n  containers:\n    - name: a\n      image: registry.example/sockstat:9\n      imagePullPolicy: IfNotPresent\n"
        );
    }
}
