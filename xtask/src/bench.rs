//! `cargo xtask bench [--quick]`: every benchmark figure (BENCHMARKS.md) side by side in one
//! run, written to `target/bench/results.json` (see `nta_lab::bench`), with a short table.
//!
//! The in-kernel figures come from the `nta-bench` example of `nta-lab` (it links the
//! daemon's library, which xtask must not: xtask builds before `setup` has installed the
//! eBPF toolchain); the end-to-end and replay figures are driven from here.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use nta_lab::bench::{self, Figure, e2e, pcap::CaptureSpec, replay};

use crate::{cargo, run, target_dir};

/// Options of `cargo xtask bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// A smoke run: few repeats, one pair, a small capture (about a minute).
    #[arg(long)]
    pub quick: bool,
    /// Skip the end-to-end (wrk through the lab) figures.
    #[arg(long)]
    pub no_e2e: bool,
    /// Skip the replay / tshark figures.
    #[arg(long)]
    pub no_replay: bool,
}

/// Where the results go.
pub fn out_dir() -> PathBuf {
    target_dir().join("bench")
}

pub fn bench(args: &BenchArgs, tracker_bin: &Path) -> Result<()> {
    let started = Instant::now();
    let out = out_dir();
    std::fs::create_dir_all(&out)?;
    let results = out.join("results.json");
    let _ = std::fs::remove_file(&results);
    let mut figs: Vec<Figure> = Vec::new();

    // 1, 3, 5a, 6a: in the kernel, through the example.
    run(cargo().args([
        "build",
        "--release",
        "-p",
        "nta-lab",
        "--example",
        "nta-bench",
    ]))?;
    let exe = target_dir().join("release/examples/nta-bench");
    let kernel_json = out.join("kernel.json");
    let _ = std::fs::remove_file(&kernel_json);
    let mut cmd = std::process::Command::new(&exe);
    cmd.arg("--out").arg(&out);
    if args.quick {
        cmd.arg("--quick");
    }
    match run(&mut cmd) {
        Ok(()) => figs.extend(bench::read_results(&kernel_json)?),
        Err(e) => figs.push(Figure::missing(
            "kernel.per_packet",
            "ns",
            None,
            &format!("nta-bench failed: {e:#}"),
        )),
    }

    // 2: wrk through HAProxy in the lab.
    if !args.no_e2e {
        let opts = e2e::E2eOptions {
            tracker_bin: tracker_bin.to_path_buf(),
            pairs: if args.quick { 1 } else { 5 },
            seconds: if args.quick { 1 } else { 5 },
            connections: 64,
            scratch: out.clone(),
        };
        match e2e::run(&opts) {
            Ok(f) => figs.extend(f),
            Err(e) => figs.push(Figure::missing(
                "e2e",
                "x",
                Some(">= 0.98"),
                &format!("end-to-end run failed: {e:#}"),
            )),
        }
    }

    // 4, 5b, 6b: replay against tshark.
    if !args.no_replay {
        let opts = replay::ReplayOptions {
            tracker_bin: tracker_bin.to_path_buf(),
            dir: out.join("captures"),
            spec: if args.quick {
                CaptureSpec {
                    handshakes: 300,
                    ..CaptureSpec::default()
                }
            } else {
                CaptureSpec::default()
            },
            open_handshakes: if args.quick { 1_000 } else { 100_000 },
        };
        match replay::run(&opts) {
            Ok(f) => figs.extend(f),
            Err(e) => figs.push(Figure::missing(
                "replay",
                "pkt/s",
                Some(">= 10"),
                &format!("replay run failed: {e:#}"),
            )),
        }
    }

    bench::write_results(&results, &figs)?;
    println!();
    print!("{}", bench::table(&figs));
    let missed = figs.iter().filter(|f| f.target.is_some() && !f.ok).count();
    println!(
        "\nxtask bench: {} figures in {:.0} s ({missed} targets missed or not measurable): {}",
        figs.len(),
        started.elapsed().as_secs_f64(),
        results.display()
    );
    println!("xtask bench: plot {}", out.join("per-packet.svg").display());
    Ok(())
}

/// The test command's smoke check: `bench --quick` produced a well-formed results.json.
pub fn smoke(tracker_bin: &Path) -> Result<()> {
    // Like the privileged test suites: skip without root, except under CI=true.
    if !nta_lab::is_root() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            bail!("bench --quick smoke test needs root (BPF, network namespaces) and CI=true");
        }
        println!("xtask: bench --quick smoke test SKIPPED (not root)");
        return Ok(());
    }
    let args = BenchArgs {
        quick: true,
        no_e2e: false,
        no_replay: false,
    };
    bench(&args, tracker_bin)?;
    let path = out_dir().join("results.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    let n = bench::validate_results(&text)?;
    if !out_dir().join("per-packet.svg").is_file() {
        bail!("bench --quick wrote no per-packet.svg");
    }
    println!("xtask: bench --quick smoke test: results.json well-formed ({n} figures)");
    Ok(())
}
