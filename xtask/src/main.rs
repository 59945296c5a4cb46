//! Project tasks: `cargo xtask setup | test | demo | bench | lab | check`.
//!
//! `setup` bootstraps a fresh machine idempotently; every other task calls it first, so the
//! README's two commands work from nothing.

mod bench;
mod demo;
mod lab;
mod setup;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "ntlm-affinity project tasks")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what this machine lacks: apt packages, nightly rust-src, bpf-linker,
    /// cargo-fuzz, python packages. A fast no-op when everything is present.
    Setup,
    /// Build the daemon (release) with its embedded eBPF object.
    Build,
    /// Run every check and test: fmt, clippy (user and eBPF crates), unit tests, in-kernel
    /// tests, live network-namespace tests, lab tests and the fuzzers (bounded time).
    Test(TestArgs),
    /// The demo: lab with real balancers and NTLM backends, tracker attached, events shown.
    Demo(demo::DemoArgs),
    /// The benchmark harness: kernel per-packet cost vs pass-through, wrk through the lab,
    /// event path, replay vs tshark, memory; writes target/bench/results.json.
    Bench(bench::BenchArgs),
    /// Manage the network-namespace lab.
    Lab {
        #[command(subcommand)]
        cmd: lab::LabCmd,
    },
}

#[derive(clap::Args)]
struct TestArgs {
    /// Seconds each fuzz target runs.
    #[arg(long, default_value_t = 30)]
    fuzz_seconds: u64,
    /// Skip fmt and clippy.
    #[arg(long)]
    no_lint: bool,
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Setup => setup::setup(),
        Cmd::Build => setup::setup().and_then(|()| build_release().map(|_| ())),
        Cmd::Test(args) => test(args),
        Cmd::Demo(args) => setup::setup()
            .and_then(|()| build_release())
            .and_then(|bin| demo::demo(args, Some(&bin))),
        Cmd::Bench(args) => setup::setup()
            .and_then(|()| build_release())
            .and_then(|bin| bench::bench(&args, &bin)),
        Cmd::Lab { cmd } => setup::setup().and_then(|()| lab::lab(cmd)),
    };
    if let Err(e) = result {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(1);
    }
}

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Runs a command from the workspace root, echoing it; fails on a non-zero exit.
pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    cmd.current_dir(root());
    let shown = format!("{cmd:?}").replace('"', "");
    println!("xtask: $ {shown}");
    let status = cmd.status().with_context(|| format!("starting {shown}"))?;
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    Ok(())
}

/// Where cargo puts its output (honours CARGO_TARGET_DIR).
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// `cargo +nightly …` with the outer cargo's toolchain variables removed, so the nested
/// build really uses nightly (rustup and cargo export these to their children).
fn nightly_cargo() -> Command {
    let mut c = Command::new("cargo");
    c.arg("+nightly");
    for var in [
        "RUSTUP_TOOLCHAIN",
        "CARGO",
        "RUSTC",
        "RUSTC_WRAPPER",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
    ] {
        c.env_remove(var);
    }
    c
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn build_release() -> anyhow::Result<PathBuf> {
    run(cargo().args(["build", "--release", "-p", "tracker-user"]))?;
    Ok(target_dir().join("release/ntlm-affinity"))
}

fn test(args: TestArgs) -> anyhow::Result<()> {
    setup::setup()?;
    if !args.no_lint {
        run(cargo().args(["fmt", "--all", "--check"]))?;
        run(nightly_cargo().args([
            "fmt",
            "--check",
            "--manifest-path",
            "tracker-ebpf/Cargo.toml",
        ]))?;
        run(cargo().args([
            "clippy",
            "--workspace",
            "--exclude",
            "tracker-ebpf",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))?;
        run(nightly_cargo().args([
            "clippy",
            "--manifest-path",
            "tracker-ebpf/Cargo.toml",
            "--release",
            "--target",
            "bpfel-unknown-none",
            "-Z",
            "build-std=core",
            "--",
            "-D",
            "warnings",
        ]))?;
    }
    // Supply chain (deny.toml): licenses, banned or duplicated crates, sources. The advisory
    // database needs GitHub, which the build machines cannot reach.
    run(cargo().args(["deny", "--offline", "check", "licenses", "bans", "sources"]))?;
    // The live tests start the real daemon binary.
    run(cargo().args(["build", "-p", "tracker-user"]))?;
    let bin = target_dir().join("debug/ntlm-affinity");
    // One test thread at a time for the privileged suites: they share a kernel and a lab.
    run(cargo()
        .args([
            "test",
            "--workspace",
            "--exclude",
            "tracker-ebpf",
            "--",
            "--test-threads=1",
        ])
        .env("NTA_TRACKER_BIN", &bin))?;
    fuzz(args.fuzz_seconds)?;
    // The benchmark harness as a smoke test: results.json produced and well-formed.
    let release = build_release()?;
    bench::smoke(&release)?;
    println!("xtask: all tests passed");
    Ok(())
}

/// Runs every cargo-fuzz target of the decoder for a bounded time; any crash fails.
fn fuzz(seconds: u64) -> anyhow::Result<()> {
    let dir = root().join("tracker-ntlm/fuzz");
    let targets_dir = dir.join("fuzz_targets");
    let Ok(entries) = std::fs::read_dir(&targets_dir) else {
        println!("xtask: no fuzz targets in {}", targets_dir.display());
        return Ok(());
    };
    let mut targets: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let p = e.path();
            (p.extension()? == "rs").then(|| p.file_stem()?.to_str().map(str::to_string))?
        })
        .collect();
    targets.sort();
    for t in targets {
        println!("xtask: fuzzing {t} for {seconds}s");
        // New inputs go to a scratch directory (listed first); the committed seeds are read only.
        let scratch = target_dir().join("fuzz-corpus").join(&t);
        std::fs::create_dir_all(&scratch)?;
        let seeds = dir.join("corpus").join(&t);
        run(nightly_cargo()
            .args(["fuzz", "run", &t, "--fuzz-dir", "tracker-ntlm/fuzz"])
            .arg(&scratch)
            .arg(&seeds)
            .args(["--", &format!("-max_total_time={seconds}")]))?;
    }
    Ok(())
}
