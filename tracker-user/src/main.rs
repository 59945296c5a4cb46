//! The `ntlm-affinity` daemon.

use std::{
    collections::HashMap,
    io::{BufWriter, Write},
    time::Duration,
};

use anyhow::Context as _;
use aya::programs::XdpMode;
use clap::{Parser, Subcommand, ValueEnum};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
};
use tracker_user::{
    check,
    endpoint::Backend,
    event,
    loader::{Tracker, TrackerConfig},
    messages::{Assembler, Output},
    record::Record,
};

const EXAMPLES: &str = "\
Examples:
  # Watch HAProxy's backend leg on eth1 (servers 10.0.2.0/24 on port 80), clear-text frontend on 80:
  ntlm-affinity run --iface eth1 --iface eth0 --backend 10.0.2.0/24:80 --frontend-port 80

  # Two server pools, NDJSON to a file:
  ntlm-affinity run --iface eth1 --backend 10.0.2.10:80 --backend [2001:db8::/64]:8080 > ntlm.ndjson

  # Can this host run the tracker on eth1?
  ntlm-affinity check --iface eth1";

/// Follows NTLM/Negotiate handshakes between a load balancer and its backends, in the kernel.
#[derive(Parser)]
#[command(name = "ntlm-affinity", version, about, after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Attach to interfaces and print one NDJSON object per NTLM/Negotiate message.
    #[command(after_help = EXAMPLES)]
    Run(RunArgs),
    /// Report whether this host can run the tracker, with a fix for each missing piece.
    Check {
        /// Interfaces to check for existence and for an XDP program already attached.
        #[arg(long = "iface", value_name = "IF")]
        ifaces: Vec<String>,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Interface to attach to (XDP on ingress, TC on egress); repeat for each interface.
    #[arg(long = "iface", value_name = "IF", required = true)]
    ifaces: Vec<String>,
    /// Backend servers whose traffic is tracked, as CIDR:PORT (e.g. 10.0.2.0/24:80,
    /// 10.0.2.10:80, [2001:db8::/64]:80); repeatable.
    #[arg(long = "backend", value_name = "CIDR:PORT")]
    backends: Vec<Backend>,
    /// Balancer frontend port whose clear-text client traffic is tracked; repeatable.
    #[arg(long = "frontend-port", value_name = "PORT")]
    frontend_ports: Vec<u16>,
    /// Capacity of the kernel's flow table (LRU).
    #[arg(long, default_value_t = tracker_common::DEFAULT_FLOW_CAPACITY)]
    flow_capacity: u32,
    /// Size of the kernel-to-daemon ring buffer in bytes (a power of two).
    #[arg(long, default_value_t = tracker_common::DEFAULT_RING_BYTES)]
    ring_bytes: u32,
    /// Payload bytes copied per captured segment (at most 4096).
    #[arg(long, default_value_t = tracker_common::CAPTURE_MAX as u32)]
    capture_bytes: u32,
    /// XDP attach mode.
    #[arg(long, value_enum, default_value_t = Mode::Auto)]
    xdp_mode: Mode,
    /// Seconds between tracker statistics records (0: only at exit).
    #[arg(long, default_value_t = 60)]
    stats_interval: u64,
}

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    /// Let the kernel choose (native where the driver supports it).
    Auto,
    /// Generic XDP in the network stack.
    Skb,
    /// Native XDP in the driver.
    Driver,
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Check { ifaces } => check_cmd(&ifaces),
        Command::Run(args) => match run(args) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("ntlm-affinity: {e:#}");
                1
            }
        },
    };
    std::process::exit(code);
}

fn check_cmd(ifaces: &[String]) -> i32 {
    let findings = check::run(ifaces);
    let mut fail = false;
    for f in &findings {
        let mark = match (f.ok, f.required) {
            (true, _) => "ok  ",
            (false, true) => "FAIL",
            (false, false) => "warn",
        };
        fail |= !f.ok && f.required;
        println!("{mark} {:<22} {}", f.name, f.detail);
        if let Some(fix) = &f.fix {
            println!("     {:<22} fix: {fix}", "");
        }
    }
    if fail {
        println!("this host cannot run ntlm-affinity yet: apply the fixes above");
        1
    } else {
        println!("this host can run ntlm-affinity");
        0
    }
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let cfg = TrackerConfig {
        backends: args.backends,
        frontend_ports: args.frontend_ports,
        flow_capacity: args.flow_capacity,
        ring_bytes: args.ring_bytes,
        capture_len: args.capture_bytes,
        xdp_mode: match args.xdp_mode {
            Mode::Auto => XdpMode::Default,
            Mode::Skb => XdpMode::Skb,
            Mode::Driver => XdpMode::Driver,
        },
        ..TrackerConfig::default()
    };
    cfg.validate()?;
    for iface in &args.ifaces {
        if check::ifindex(iface).is_none() {
            anyhow::bail!("no interface named `{iface}` in this network namespace (see `ip link`)");
        }
    }
    let mut tracker = Tracker::load(&cfg)?;
    for iface in &args.ifaces {
        tracker.attach(iface, cfg.xdp_mode)?;
    }
    eprintln!(
        "ntlm-affinity: attached to {} (XDP ingress, TC egress); tracking {} backend range(s), {} frontend port(s); Ctrl-C to stop",
        args.ifaces.join(", "),
        cfg.backends.len(),
        cfg.frontend_ports.len()
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let result = rt.block_on(event_loop(&mut tracker, args.stats_interval));
    let ifaces: Vec<String> = tracker.interfaces.iter().map(|(n, _)| n.clone()).collect();
    drop(tracker);
    eprintln!("ntlm-affinity: detached from {}", ifaces.join(", "));
    result
}

async fn event_loop(tracker: &mut Tracker, stats_interval: u64) -> anyhow::Result<()> {
    let ifnames: HashMap<u32, String> = tracker
        .interfaces
        .iter()
        .map(|(n, i)| (*i, n.clone()))
        .collect();
    let ctx = event::Context::new(ifnames);
    let events = tracker.take_events()?;
    // SAFETY: the RingBuf owns its map fd and keeps it open until the AsyncFd drops it.
    let mut ring =
        unsafe { AsyncFd::register_with_interest(events, tokio::io::Interest::READABLE) }
            .context("polling the ring buffer")?;
    let mut assembler = Assembler::new(65_536, 64 * 1024);
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let period = Duration::from_secs(if stats_interval == 0 {
        u64::MAX / 4
    } else {
        stats_interval
    });
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut bad_records = 0u64;
    loop {
        tokio::select! {
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = ticker.tick() => {
                write_stats(&mut out, &ctx, tracker, &assembler, bad_records)?;
            }
            guard = ring.readable_mut() => {
                let mut guard = guard?;
                let rb = guard.get_inner_mut();
                while let Some(item) = rb.next() {
                    match Record::parse(&item) {
                        Ok(rec) => {
                            for o in assembler.push(rec) {
                                let v = match o {
                                    Output::Message(m) => ctx.message(&m),
                                    Output::Closed(h) => ctx.closed(&h),
                                };
                                if writeln!(out, "{v}").is_err() {
                                    return Ok(()); // stdout closed: nobody is listening
                                }
                            }
                        }
                        Err(e) => {
                            bad_records += 1;
                            log_once(&e);
                        }
                    }
                }
                guard.clear_ready();
                if out.flush().is_err() {
                    return Ok(());
                }
            }
        }
    }
    write_stats(&mut out, &ctx, tracker, &assembler, bad_records)?;
    Ok(())
}

fn log_once(e: &dyn std::fmt::Display) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        eprintln!("ntlm-affinity: malformed record from the kernel: {e} (counted in stats)")
    });
}

fn write_stats(
    out: &mut impl Write,
    ctx: &event::Context,
    tracker: &Tracker,
    assembler: &Assembler,
    bad_records: u64,
) -> anyhow::Result<()> {
    let mut kernel = serde_json::Map::new();
    for (name, v) in tracker.stats()? {
        kernel.insert(name.to_string(), v.into());
    }
    let v = serde_json::json!({
        "@timestamp": ctx.timestamp(event::monotonic_ns() as u64),
        "event": { "kind": "metric", "action": "tracker_stats", "dataset": "ntlm_affinity.stats" },
        "observer": { "hostname": ctx.observer },
        "ntlm_affinity": {
            "kernel": kernel,
            "daemon": {
                "malformed_records": bad_records,
                "split_headers_pending": assembler.pending(),
                "split_headers_lost": assembler.dropped,
            }
        }
    });
    writeln!(out, "{v}")?;
    out.flush()?;
    Ok(())
}
