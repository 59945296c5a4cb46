//! `cargo xtask demo`: good and broken balancer configurations side by side in the lab, the
//! tracker attached, events live (see `nta_lab::demo`).

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use nta_lab::demo::{DemoOptions, SCENARIOS, run, scenario};

/// Options of `cargo xtask demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Scenario: overview (default), session-mixing, server-close, reconnect, http10, nginx,
    /// abandon, mixed. `--scenario list` prints them.
    #[arg(long, default_value = "overview")]
    pub scenario: String,
    /// Stop after SECS seconds (default: run until Ctrl-C).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<u64>,
    /// Run the lab and clients without the tracker (shows the backends' ground truth only).
    #[arg(long)]
    pub no_tracker: bool,
    /// Pace of the client traffic: pauses are multiplied by this (0.5 = twice as fast).
    #[arg(long, default_value_t = 1.0)]
    pub pace: f64,
    /// Do not show the backends' ground truth beside the tracker's events.
    #[arg(long)]
    pub no_truth: bool,
    /// Show every tracker record (also metrics and connection closes).
    #[arg(long)]
    pub verbose: bool,
    /// Show the tracker's events in its terminal live view (`ntlm-affinity top`); quit it
    /// with q to end the demo.
    #[arg(long, conflicts_with_all = ["no_tracker", "duration"])]
    pub top: bool,
}

/// Run the demo. `tracker_bin` is the built `ntlm-affinity` binary (None, or
/// `--no-tracker`, skips the tracker).
pub fn demo(args: DemoArgs, tracker_bin: Option<&Path>) -> Result<()> {
    if args.scenario == "list" {
        for name in SCENARIOS {
            let sc = scenario(name)?;
            println!("{name:<16} {}", sc.title);
        }
        return Ok(());
    }
    let opts = DemoOptions {
        scenario: args.scenario,
        duration: args.duration.filter(|&s| s > 0).map(Duration::from_secs),
        tracker_bin: if args.no_tracker {
            None
        } else {
            tracker_bin.map(Path::to_path_buf)
        },
        pace: args.pace,
        show_truth: !args.no_truth,
        verbose: args.verbose,
        top: args.top,
    };
    run(&opts)
}
