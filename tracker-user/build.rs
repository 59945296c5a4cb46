//! Builds the eBPF object with aya-build (nightly + bpf-linker, installed by `cargo xtask setup`)
//! so the daemon embeds it and ships as one binary.
use anyhow::{Context as _, anyhow};

fn main() -> anyhow::Result<()> {
    let fix = "run `cargo xtask setup` (installs nightly rust-src and bpf-linker)";
    if which_in_path("bpf-linker").is_none() {
        return Err(anyhow!("bpf-linker is not installed: {fix}"));
    }
    let nightly = std::process::Command::new("rustup")
        .args(["run", "nightly", "rustc", "--print", "sysroot"])
        .output()
        .context("rustup not found")?;
    if !nightly.status.success() {
        return Err(anyhow!("the nightly toolchain is missing: {fix}"));
    }
    let sysroot = String::from_utf8_lossy(&nightly.stdout).trim().to_string();
    if !std::path::Path::new(&sysroot)
        .join("lib/rustlib/src/rust/library/core")
        .exists()
    {
        return Err(anyhow!("nightly rust-src is missing: {fix}"));
    }
    let cargo_metadata::Metadata { packages, .. } = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let ebpf = packages
        .into_iter()
        .find(|p| p.name.as_str() == "tracker-ebpf")
        .ok_or_else(|| anyhow!("tracker-ebpf package not found"))?;
    let root = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {}", ebpf.manifest_path))?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: ebpf.name.as_str(),
            root_dir: root.as_str(),
            ..Default::default()
        }],
        aya_build::Toolchain::Nightly,
    )
    .with_context(|| format!("building the eBPF object failed; if a tool is missing, {fix}"))
}

fn which_in_path(bin: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    let mut dirs: Vec<_> = std::env::split_paths(&path).collect();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(std::path::PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.into_iter().map(|d| d.join(bin)).find(|p| p.is_file())
}
