//! `cargo xtask setup`: everything a fresh machine lacks, installed idempotently. Each step
//! first checks whether its piece is present, so a second run takes seconds.

use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

use crate::run;

/// Debian packages: LLVM for bpf-linker, the lab's real peers, capture tools, and MIT
/// Kerberos (the lab's own KDC; libkrb5-dev to build the Python `gssapi` / `krb5` modules),
/// Prometheus (a real server scraping the daemon's metrics; `promtool`), and tmux (a real
/// terminal for `top`).
const APT_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    "haproxy",
    "nginx",
    "tshark",
    "tcpdump",
    "curl",
    "iproute2",
    "wrk",
    "krb5-kdc",
    "krb5-admin-server",
    "krb5-user",
    "libkrb5-dev",
    "prometheus",
    "tmux",
];
/// Services Debian starts when it installs the packages above. The lab runs its own
/// instances in its namespaces with its own files and never needs these.
const DEBIAN_SERVICES: &[&str] = &[
    "nginx",
    "haproxy",
    "krb5-kdc",
    "krb5-admin-server",
    "prometheus",
];
/// Python packages of the lab and the fixture generators: (modules that must import, pip
/// requirements installed together when one does not). `gssapi` and `krb5` build from
/// source against libkrb5-dev (about 1.5 minutes).
const PYTHON_PACKAGES: &[(&str, &[&str])] = &[
    ("spnego", &["pyspnego==0.12.4"]),
    (
        "spnego, gssapi, krb5",
        &[
            "pyspnego[kerberos]==0.12.4",
            "gssapi==1.12.0",
            "krb5==0.10.0",
        ],
    ),
];
const BPF_LINKER_VERSION: &str = "0.13.0";

fn quiet_ok(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.stderr(Stdio::null()).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn is_root() -> bool {
    output(Command::new("id").arg("-u")).is_some_and(|s| s.trim() == "0")
}

pub fn setup() -> anyhow::Result<()> {
    apt()?;
    nightly()?;
    bpf_linker()?;
    cargo_fuzz()?;
    cargo_deny()?;
    python()?;
    Ok(())
}

fn apt() -> anyhow::Result<()> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            output(Command::new("dpkg-query").args(["-W", "-f=${Status}", p]))
                .is_none_or(|s| !s.contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    println!(
        "xtask setup: installing Debian packages: {}",
        missing.join(" ")
    );
    if !is_root() {
        bail!(
            "these Debian packages are missing and installing them needs root: {} (run `sudo cargo xtask setup`)",
            missing.join(" ")
        );
    }
    // tshark asks whether non-root users may capture; answer for it.
    let mut preseed = Command::new("debconf-set-selections")
        .stdin(Stdio::piped())
        .spawn()
        .context("debconf-set-selections")?;
    if let Some(stdin) = preseed.stdin.as_mut() {
        use std::io::Write as _;
        stdin.write_all(b"wireshark-common wireshark-common/install-setuid boolean false\n")?;
    }
    preseed.wait()?;
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    // Debian starts the daemons it installs; the lab runs its own instances.
    for svc in DEBIAN_SERVICES {
        let _ = quiet_ok(Command::new("service").args([svc, "stop"]));
    }
    Ok(())
}

fn nightly() -> anyhow::Result<()> {
    let installed = output(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]));
    let Some(installed) = installed else {
        println!("xtask setup: installing the nightly toolchain");
        return run(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
            "--component",
            "rust-src,clippy,rustfmt",
        ]));
    };
    let missing: Vec<&str> = ["rust-src", "clippy", "rustfmt"]
        .into_iter()
        .filter(|c| !installed.lines().any(|l| l.starts_with(c)))
        .collect();
    if !missing.is_empty() {
        println!(
            "xtask setup: adding nightly components: {}",
            missing.join(" ")
        );
        run(Command::new("rustup")
            .args(["component", "add", "--toolchain", "nightly"])
            .args(&missing))?;
    }
    Ok(())
}

fn bpf_linker() -> anyhow::Result<()> {
    let version = output(Command::new("bpf-linker").arg("--version"));
    if version.is_some_and(|v| v.contains(BPF_LINKER_VERSION)) {
        return Ok(());
    }
    println!(
        "xtask setup: building bpf-linker {BPF_LINKER_VERSION} against LLVM 22 (about 1-3 minutes)"
    );
    run(Command::new("cargo")
        .args([
            "install",
            "bpf-linker",
            "--locked",
            "--version",
            BPF_LINKER_VERSION,
            "--no-default-features",
            "--features",
            "llvm-22",
        ])
        .env("LLVM_PREFIX", "/usr/lib/llvm-22"))
}

fn cargo_fuzz() -> anyhow::Result<()> {
    if quiet_ok(Command::new("cargo").args(["fuzz", "--version"])) {
        return Ok(());
    }
    println!("xtask setup: installing cargo-fuzz");
    run(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))
}

/// The supply-chain check of `cargo xtask test` (licenses, bans, sources: deny.toml).
const CARGO_DENY_VERSION: &str = "0.20.2";

fn cargo_deny() -> anyhow::Result<()> {
    let version = output(Command::new("cargo").args(["deny", "--version"]));
    if version.is_some_and(|v| v.contains(CARGO_DENY_VERSION)) {
        return Ok(());
    }
    println!("xtask setup: installing cargo-deny {CARGO_DENY_VERSION} (about 3 minutes)");
    run(Command::new("cargo").args([
        "install",
        "cargo-deny",
        "--locked",
        "--version",
        CARGO_DENY_VERSION,
    ]))
}

fn python() -> anyhow::Result<()> {
    for (modules, reqs) in PYTHON_PACKAGES {
        if quiet_ok(Command::new("python3").args(["-c", &format!("import {modules}")])) {
            continue;
        }
        println!("xtask setup: installing python packages {}", reqs.join(" "));
        run(Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--root-user-action=ignore",
            ])
            .args(reqs.iter()))?;
    }
    Ok(())
}
