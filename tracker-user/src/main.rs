//! The `ntlm-affinity` daemon.

use std::{
    collections::HashMap,
    io::{BufWriter, Write},
    sync::{Arc, Mutex},
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
    check, control, correlate,
    endpoint::Backend,
    event, http,
    loader::{AuthFlows, Ingress, IngressMode, Tracker, TrackerConfig},
    metrics, output,
    pipeline::{self, Pipeline},
    privilege,
    replay::{self, kernel_model::ModelConfig},
};

const EXAMPLES: &str = "\
Examples:
  # Watch HAProxy's backend leg on eth1 (servers 10.0.2.0/24 on port 80), clear-text frontend on 80:
  ntlm-affinity run --iface eth1 --iface eth0 --backend 10.0.2.0/24:80 --frontend-port 80

  # Two server pools, NDJSON to a file:
  ntlm-affinity run --iface eth1 --backend 10.0.2.10:80 --backend [2001:db8::/64]:8080 > ntlm.ndjson

  # Can this host run the tracker on eth1?
  ntlm-affinity check --iface eth1

  # Replay a capture (no privileges), same verdicts as the live daemon:
  ntlm-affinity replay capture.pcapng --backend 10.0.2.0/24:80 --frontend-port 80

  # The live view of the running daemon:
  ntlm-affinity top";

/// Follows NTLM/Negotiate handshakes between a load balancer and its backends, in the kernel.
#[derive(Parser)]
#[command(name = "ntlm-affinity", version, about, after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Attach to interfaces and print one NDJSON object per affinity violation.
    #[command(after_help = EXAMPLES)]
    Run(RunArgs),
    /// Replay a pcap or pcapng capture through the same pipeline (no privileges needed).
    #[command(after_help = EXAMPLES)]
    Replay(ReplayArgs),
    /// Report whether this host can run the tracker, with a fix for each missing piece.
    Check {
        /// Interfaces to check for existence and for an XDP program already attached.
        #[arg(long = "iface", value_name = "IF")]
        ifaces: Vec<String>,
    },
    /// The live view of a running daemon in the terminal (read-only, through its control
    /// socket): violations by class and cause, backends, the latest violations with their
    /// evidence, clients by scheme.
    Top {
        /// The daemon's control socket (`run --control`).
        #[arg(long, value_name = "PATH", default_value = control::DEFAULT_PATH)]
        control: std::path::PathBuf,
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
    /// Capacity of the kernel's table of authenticated backend connections (LRU), whose
    /// requests the kernel checks itself: same client → no record.
    #[arg(long, default_value_t = tracker_common::DEFAULT_AUTH_FLOW_CAPACITY)]
    auth_flow_capacity: u32,
    /// Deliver every request on authenticated connections to the daemon instead of checking
    /// the client identity in the kernel.
    #[arg(long)]
    no_kernel_identity_check: bool,
    /// Size of the kernel-to-daemon ring buffer in bytes (a power of two).
    #[arg(long, default_value_t = tracker_common::DEFAULT_RING_BYTES)]
    ring_bytes: u32,
    /// Payload bytes copied per captured segment (at most 4096).
    #[arg(long, default_value_t = tracker_common::CAPTURE_MAX as u32)]
    capture_bytes: u32,
    /// XDP attach mode.
    #[arg(long, value_enum, default_value_t = Mode::Auto)]
    xdp_mode: Mode,
    /// How the ingress program attaches: `auto` uses XDP when the interface's XDP slot is
    /// free and tcx ingress when another program holds it (theirs stays untouched).
    #[arg(long, value_enum, default_value_t = IngressArg::Auto)]
    ingress: IngressArg,
    /// How TC programs attach: `auto` uses tcx links (Linux 6.6+, gone with the process) and
    /// clsact filters before 6.6; `netlink` forces clsact filters (a killed tracker's are
    /// removed at the next start).
    #[arg(long, value_enum, default_value_t = TcAttachArg::Auto)]
    tc_attach: TcAttachArg,
    /// Seconds between tracker statistics records (0: only at exit).
    #[arg(long, default_value_t = 60)]
    stats_interval: u64,
    /// Events waiting for stdout at most; when stdout does not keep up, later ones are
    /// dropped and counted (`output.dropped`) instead of stalling the ring-buffer reader.
    #[arg(long, value_name = "EVENTS", default_value_t = output::DEFAULT_QUEUE)]
    output_queue: usize,
    /// Serve Prometheus metrics at http://ADDR:PORT/metrics (a bare port: on loopback).
    /// Off by default.
    #[arg(long, value_name = "ADDR:PORT", value_parser = metrics::parse_listen)]
    metrics: Option<std::net::SocketAddr>,
    /// The control socket `ntlm-affinity top` attaches to (read-only clients; mode 0660).
    /// Default /run/ntlm-affinity/control.sock; when that one is busy, `run` goes on
    /// without it and says so.
    #[arg(long, value_name = "PATH", conflicts_with = "no_control")]
    control: Option<std::path::PathBuf>,
    /// The group that may connect to the control socket (owner root, mode 0660).
    #[arg(long, value_name = "GROUP", conflicts_with = "no_control")]
    control_group: Option<String>,
    /// No control socket.
    #[arg(long)]
    no_control: bool,
    #[command(flatten)]
    out: OutputArgs,
}

/// What is reported, shared by `run` and `replay`.
#[derive(clap::Args)]
struct OutputArgs {
    /// Also print one record per NTLM/Negotiate message (`event.action: ntlm_message`).
    #[arg(long)]
    messages: bool,
    /// Also print healthy handshakes (`event.action: ntlm_handshake`, `event.kind: event`).
    #[arg(long)]
    handshakes: bool,
    /// Seconds a Type-2 waits for its Type-3 (then `abandoned_challenge`); also the window of
    /// client-identity joins.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    window: u64,
    /// Request header carrying the client's source port, set by the balancer (e.g. HAProxy
    /// `http-request set-header X-Client-Port %[src_port]`).
    #[arg(long, value_name = "NAME")]
    client_port_header: Option<String>,
    /// Site-wide secret for `ntlm_affinity.challenge_key` (same on every balancer host so a
    /// SIEM can join them); also read from NTA_SITE_KEY. Random per process when unset.
    #[arg(long, value_name = "SECRET")]
    site_key: Option<String>,
}

#[derive(clap::Args)]
struct ReplayArgs {
    /// The capture (pcap or pcapng; Ethernet, Linux cooked SLL/SLL2 or raw IP).
    file: std::path::PathBuf,
    /// Backend servers, as for `run` (CIDR:PORT; repeatable). With neither --backend nor
    /// --frontend-port, every TCP connection of the capture is examined.
    #[arg(long = "backend", value_name = "CIDR:PORT")]
    backends: Vec<Backend>,
    /// Balancer frontend ports, as for `run` (repeatable).
    #[arg(long = "frontend-port", value_name = "PORT")]
    frontend_ports: Vec<u16>,
    /// Payload bytes the modelled kernel copies per segment (as `run --capture-bytes`).
    #[arg(long, default_value_t = tracker_common::CAPTURE_MAX as u32)]
    capture_bytes: u32,
    /// No progress bar on stderr.
    #[arg(long)]
    no_progress: bool,
    #[command(flatten)]
    out: OutputArgs,
}

fn pipeline_config(
    out: &OutputArgs,
    backends: &[Backend],
    frontend_ports: &[u16],
) -> pipeline::Config {
    pipeline::Config {
        correlate: correlate::Config {
            window_ns: out.window.saturating_mul(1_000_000_000),
            backends: backends.to_vec(),
            frontend_ports: frontend_ports.to_vec(),
            handshakes: out.handshakes,
            ..correlate::Config::default()
        },
        http: http::Options {
            client_port_header: out
                .client_port_header
                .as_ref()
                .map(|h| h.to_ascii_lowercase()),
        },
        messages: out.messages,
        site_key: out
            .site_key
            .clone()
            .or_else(|| std::env::var("NTA_SITE_KEY").ok())
            .map(String::into_bytes),
        ..pipeline::Config::default()
    }
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

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TcAttachArg {
    /// tcx from Linux 6.6, clsact filters before.
    Auto,
    /// clsact filters through netlink, whatever the kernel.
    Netlink,
}

#[derive(Clone, Copy, ValueEnum)]
enum IngressArg {
    /// XDP when the interface's XDP slot is free, else tcx ingress.
    Auto,
    /// XDP only: refuse an interface that already has an XDP program.
    Xdp,
    /// tcx ingress only (the XDP slot stays free).
    Tc,
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
        Command::Replay(args) => replay_cmd(&args),
        Command::Top { control } => match tracker_user::top::run(&control) {
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
    let fail = findings.iter().any(|f| !f.ok && f.required);
    // A closed stdout (`check | head -1`) ends the listing, not the process with a panic:
    // the exit status still says whether the host can run the tracker.
    let _ = write_findings(&mut std::io::stdout().lock(), &findings, fail);
    i32::from(fail)
}

fn write_findings(
    out: &mut impl Write,
    findings: &[check::Finding],
    fail: bool,
) -> std::io::Result<()> {
    for f in findings {
        let mark = match (f.ok, f.required) {
            (true, _) => "ok  ",
            (false, true) => "FAIL",
            (false, false) => "warn",
        };
        writeln!(out, "{mark} {:<22} {}", f.name, f.detail)?;
        if let Some(fix) = &f.fix {
            writeln!(out, "     {:<22} fix: {fix}", "")?;
        }
    }
    if fail {
        writeln!(
            out,
            "this host cannot run ntlm-affinity yet: apply the fixes above"
        )
    } else {
        writeln!(out, "this host can run ntlm-affinity")
    }
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let cfg = TrackerConfig {
        backends: args.backends,
        frontend_ports: args.frontend_ports,
        flow_capacity: args.flow_capacity,
        auth_flow_capacity: args.auth_flow_capacity,
        ring_bytes: args.ring_bytes,
        capture_len: args.capture_bytes,
        tc_netlink: args.tc_attach == TcAttachArg::Netlink,
        ingress: match args.ingress {
            IngressArg::Auto => IngressMode::Auto,
            IngressArg::Xdp => IngressMode::Xdp,
            IngressArg::Tc => IngressMode::Tc,
        },
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
    privilege::no_core_dumps().context("turning core dumps off")?;
    // Bound before the capabilities go (a port below 1024 needs CAP_NET_BIND_SERVICE).
    let metrics_listener = match args.metrics {
        Some(addr) => Some(bind_metrics(addr)?),
        None => None,
    };
    let mut tracker = Tracker::load(&cfg)?;
    for iface in &args.ifaces {
        let how = tracker.attach(iface, cfg.xdp_mode, cfg.ingress)?;
        if how == Ingress::Tc && cfg.ingress == IngressMode::Auto {
            eprintln!(
                "ntlm-affinity: {iface} already has another XDP program; tracking its ingress from tcx instead (that program stays attached)"
            );
        }
    }
    if tracker.stale_filters_removed > 0 {
        eprintln!(
            "ntlm-affinity: removed {} clsact filter(s) a stopped or killed tracker had left",
            tracker.stale_filters_removed
        );
    }
    // After loading (whose error is the one that says what privileges are missing), before
    // the capabilities go (a group owner needs CAP_CHOWN).
    let control_socket = if args.no_control {
        None
    } else {
        bind_control(args.control.as_deref(), args.control_group.as_deref())?
    };
    let kept = privilege::drop_after_attach(!tracker.links_only())
        .context("dropping capabilities after attaching")?;
    eprintln!(
        "ntlm-affinity: attached to {}; tracking {} backend range(s), {} frontend port(s); holding {} only; Ctrl-C to stop",
        tracker
            .interfaces
            .iter()
            .zip(&tracker.ingress)
            .map(|((name, _), how)| format!(
                "{name} ({} ingress, TC egress)",
                match how {
                    Ingress::Xdp => "XDP",
                    Ingress::Tc => "tcx",
                }
            ))
            .collect::<Vec<_>>()
            .join(", "),
        cfg.backends.len(),
        cfg.frontend_ports.len(),
        kept.join(", ")
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let mut pcfg = pipeline_config(&args.out, &cfg.backends, &cfg.frontend_ports);
    // The kernel checks X-Forwarded-For only: with a client-port header (several clients
    // behind one address) every request goes to the daemon.
    pcfg.correlate.kernel_identity =
        !args.no_kernel_identity_check && args.out.client_port_header.is_none();
    let pipeline = Pipeline::new(pcfg);
    let hello = hello_line(&tracker, &cfg);
    let opts = LoopOptions {
        stats_interval: args.stats_interval,
        output_queue: args.output_queue.max(1),
        metrics: metrics_listener,
        control: control_socket.map(|s| (s, hello)),
        capacities: (cfg.flow_capacity, cfg.auth_flow_capacity, cfg.ring_bytes),
    };
    let result = rt.block_on(event_loop(&mut tracker, pipeline, opts));
    let ifaces: Vec<String> = tracker.interfaces.iter().map(|(n, _)| n.clone()).collect();
    drop(tracker);
    eprintln!("ntlm-affinity: detached from {}", ifaces.join(", "));
    result
}

/// The metrics listener of `--metrics`, with the error an operator can act on.
fn bind_metrics(addr: std::net::SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    let l = std::net::TcpListener::bind(addr).map_err(|e| match e.kind() {
        std::io::ErrorKind::AddrInUse => anyhow::anyhow!(
            "--metrics {addr}: the address is in use (another ntlm-affinity or exporter?); choose another port"
        ),
        std::io::ErrorKind::PermissionDenied => anyhow::anyhow!(
            "--metrics {addr}: binding a port below 1024 needs CAP_NET_BIND_SERVICE; use a higher port (9464 is usual)"
        ),
        _ => anyhow::anyhow!("--metrics {addr}: {e}"),
    })?;
    l.set_nonblocking(true)
        .context("making the metrics listener non-blocking")?;
    Ok(l)
}

/// The control socket of `run` (`--control`, `--no-control`): an explicit path or group
/// must work; the default one may be another daemon's, and then `run` goes on without.
fn bind_control(
    path: Option<&std::path::Path>,
    group: Option<&str>,
) -> anyhow::Result<Option<control::Socket>> {
    let explicit = path.is_some() || group.is_some();
    let path = path.unwrap_or(std::path::Path::new(control::DEFAULT_PATH));
    match control::bind(path, group) {
        Ok(s) => Ok(Some(s)),
        Err(e) if !explicit => {
            eprintln!(
                "ntlm-affinity: running without a control socket ({e:#}); `ntlm-affinity top` cannot attach to this daemon"
            );
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// The first line a control client reads: who this daemon is and what it watches.
fn hello_line(tracker: &Tracker, cfg: &TrackerConfig) -> Vec<u8> {
    let v = serde_json::json!({
        "event": { "kind": "event", "action": "control_hello", "dataset": "ntlm_affinity.control" },
        "ntlm_affinity": {
            "version": env!("CARGO_PKG_VERSION"),
            "pid": std::process::id(),
            "started_ns": event::monotonic_ns(),
            "interfaces": interfaces_json(tracker),
            "backends": cfg.backends.iter().map(|b| b.to_string()).collect::<Vec<_>>(),
            "frontend_ports": cfg.frontend_ports,
        }
    });
    ndjson_line(&v)
}

fn interfaces_json(tracker: &Tracker) -> Vec<serde_json::Value> {
    tracker
        .interfaces
        .iter()
        .zip(&tracker.ingress)
        .map(|((name, _), how)| serde_json::json!({ "name": name, "ingress": how.as_str() }))
        .collect()
}

/// How the event loop runs, from `run`'s arguments.
struct LoopOptions {
    stats_interval: u64,
    output_queue: usize,
    metrics: Option<std::net::TcpListener>,
    /// The control socket and its hello line.
    control: Option<(control::Socket, Vec<u8>)>,
    /// Flow table, authenticated-connection table, ring buffer bytes: for the metrics.
    capacities: (u32, u32, u32),
}

/// The daemon's one loop: ring buffer, expiry tick, stats tick and signals in one `select!`,
/// so the correlator is only ever touched from this task and needs no lock.
async fn event_loop(
    tracker: &mut Tracker,
    mut pipeline: Pipeline,
    opts: LoopOptions,
) -> anyhow::Result<()> {
    let LoopOptions {
        stats_interval,
        output_queue,
        ..
    } = opts;
    let ifnames: HashMap<u32, String> = tracker
        .interfaces
        .iter()
        .map(|(n, i)| (*i, n.clone()))
        .collect();
    let ctx = event::Context::new(ifnames);
    let events = tracker.take_events()?;
    let map_entries = match opts.metrics {
        Some(_) => Some(metrics::spawn_census(tracker.census()?).context("counting map entries")?),
        None => None,
    };
    let mut auth = tracker.take_auth_flows()?;
    // SAFETY: the RingBuf owns its map fd and keeps it open until the AsyncFd drops it.
    let mut ring =
        unsafe { AsyncFd::register_with_interest(events, tokio::io::Interest::READABLE) }
            .context("polling the ring buffer")?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let period = Duration::from_secs(if stats_interval == 0 {
        u64::MAX / 4
    } else {
        stats_interval
    });
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    // Windows expire on the record clock (CLOCK_MONOTONIC, like the kernel's timestamps).
    let mut expiry = tokio::time::interval(Duration::from_secs(1));
    // Events go to a writer thread through a bounded queue: a stalled stdout costs dropped
    // (and counted) events, never a stalled reader and records lost in the kernel.
    let hub = opts
        .control
        .as_ref()
        .map(|_| Arc::new(control::Hub::default()));
    if let (Some((socket, hello)), Some(hub)) = (opts.control, &hub) {
        let hub = Arc::clone(hub);
        tokio::spawn(async move {
            if let Err(e) = control::serve(socket, hub, hello).await {
                eprintln!("ntlm-affinity: the control socket stopped: {e:#}");
            }
        });
    }
    let mut writer =
        output::Writer::spawn(ctx.clone(), std::io::stdout(), output_queue, hub.clone())
            .context("starting the output thread")?;
    let mut outputs = Vec::new();
    // Interfaces deleted (or moved) while running, by name: their links died with them.
    let mut lost: Vec<String> = Vec::new();
    // Scrapes read the snapshot the expiry tick refreshes: at most a second old, and the
    // correlator is never touched from another task.
    let snapshot = Arc::new(Mutex::new(metrics::Snapshot::default()));
    let metrics_on = opts.metrics.is_some();
    if let Some(l) = opts.metrics {
        let l = tokio::net::TcpListener::from_std(l).context("serving metrics")?;
        tokio::spawn(metrics::serve(l, Arc::clone(&snapshot)));
    }
    loop {
        tokio::select! {
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = ticker.tick() => {
                writer.send_line(stats_line(&ctx, tracker, &pipeline, &auth, &writer)?);
            }
            _ = expiry.tick() => {
                pipeline.tick(u64::try_from(event::monotonic_ns()).unwrap_or(0), &mut outputs);
                pipeline.drain_auth_updates().for_each(|u| auth.apply(&u));
                writer.send(&mut outputs);
                if writer.closed() {
                    return Ok(()); // stdout closed: nobody is listening
                }
                for (name, ifindex) in &tracker.interfaces {
                    if !lost.contains(name) && check::ifindex(name) != Some(*ifindex) {
                        lost.push(name.clone());
                        eprintln!(
                            "ntlm-affinity: interface {name} disappeared (deleted, or its namespace removed): its traffic is no longer tracked; restart ntlm-affinity to track it again (attaching needs CAP_NET_ADMIN, given up after the first attach)"
                        );
                        writer.send_line(interface_lost_line(&ctx, name, *ifindex));
                    }
                }
                if lost.len() == tracker.interfaces.len() {
                    break;
                }
                if let Some(h) = hub.as_deref().filter(|h| h.clients() > 0) {
                    let line = live_line(&ctx, tracker, &pipeline, &auth, &writer, h, &lost)?;
                    h.broadcast(&line);
                }
                if !metrics_on {
                    continue;
                }
                let mut m = metrics::Snapshot {
                    kernel: tracker.stats()?,
                    auth_flow_write_failures: auth.failures,
                    output_written: writer.written(),
                    output_dropped: writer.dropped(),
                    output_queued: writer.queued(),
                    flow_capacity: opts.capacities.0,
                    auth_flow_capacity: opts.capacities.1,
                    ring_bytes: opts.capacities.2,
                    map_entries: map_entries
                        .as_ref()
                        .and_then(|c| *c.lock().unwrap_or_else(|p| p.into_inner())),
                    interfaces: tracker.interfaces.len() - lost.len(),
                    ..metrics::Snapshot::default()
                };
                pipeline.metrics(&mut m);
                *snapshot.lock().unwrap_or_else(|p| p.into_inner()) = m;
            }
            guard = ring.readable_mut() => {
                let mut guard = guard?;
                let rb = guard.get_inner_mut();
                while let Some(item) = rb.next() {
                    if let Err(e) = pipeline.push_bytes(&item, &mut outputs) {
                        log_once(&e);
                    }
                }
                guard.clear_ready();
                pipeline.drain_auth_updates().for_each(|u| auth.apply(&u));
                writer.send(&mut outputs);
                if writer.closed() {
                    return Ok(());
                }
            }
        }
    }
    pipeline.finish(&mut outputs);
    writer.send(&mut outputs);
    writer.send_summary(stats_line(&ctx, tracker, &pipeline, &auth, &writer)?);
    writer.finish();
    if writer.dropped() > 0 {
        eprintln!(
            "ntlm-affinity: {} events were dropped because stdout did not keep up (tracker_stats: output.dropped)",
            writer.dropped()
        );
    }
    if !lost.is_empty() && lost.len() == tracker.interfaces.len() {
        anyhow::bail!(
            "every interface is gone ({}): nothing left to track",
            lost.join(", ")
        );
    }
    Ok(())
}

/// The `interface_lost` event: an interface the tracker was attached to no longer exists.
fn interface_lost_line(ctx: &event::Context, name: &str, ifindex: u32) -> Vec<u8> {
    let v = serde_json::json!({
        "@timestamp": ctx.timestamp(u64::try_from(event::monotonic_ns()).unwrap_or(0)),
        "event": {
            "kind": "event",
            "category": ["host"],
            "type": ["error"],
            "action": "interface_lost",
            "dataset": "ntlm_affinity.interface",
        },
        "observer": { "hostname": ctx.observer, "interface": name },
        "ntlm_affinity": { "interface": { "name": name, "ifindex": ifindex } },
        "message": format!("interface {name} disappeared: its traffic is no longer tracked"),
    });
    ndjson_line(&v)
}

/// One NDJSON line (the object and `\n`) of a record built as a `Value`.
fn ndjson_line(v: &serde_json::Value) -> Vec<u8> {
    let mut line = v.to_string().into_bytes();
    line.push(b'\n');
    line
}

fn replay_cmd(args: &ReplayArgs) -> i32 {
    // A capture holds Type-3 tokens too: none of it may end up in a core file.
    if let Err(e) = privilege::no_core_dumps() {
        eprintln!("ntlm-affinity: turning core dumps off: {e}");
        return 1;
    }
    let mut pipeline = Pipeline::new(pipeline_config(
        &args.out,
        &args.backends,
        &args.frontend_ports,
    ));
    let model = ModelConfig {
        backends: args.backends.clone(),
        frontend_ports: args.frontend_ports.clone(),
        capture_len: args.capture_bytes.min(tracker_common::CAPTURE_MAX as u32),
        ..ModelConfig::default()
    };
    let ctx = event::Context::replay(HashMap::new());
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut broken = false;
    let mut line = Vec::with_capacity(2048);
    let replayer = replay::Replayer::new(&mut pipeline, model, !args.no_progress);
    let (summary, err) = replayer.run(&args.file, &mut |o| {
        if !broken {
            line.clear();
            ctx.write(o, &mut line);
            broken = out.write_all(&line).is_err();
        }
    });
    let _ = out.flush();
    drop(out);
    print_summary(&args.file, &summary, &pipeline);
    match err {
        None => 0,
        Some(e) => {
            eprintln!("ntlm-affinity: {e}");
            eprintln!("ntlm-affinity: the verdicts above cover the capture up to that offset");
            2
        }
    }
}

fn print_summary(file: &std::path::Path, s: &replay::Summary, p: &Pipeline) {
    let c = &p.correlator().stats;
    let r = p.reassembly().stats();
    eprintln!(
        "ntlm-affinity: replayed {}: {} packets ({} TCP, {} not TCP, {} unparseable) in {:.2} s ({:.0} packets/s), {} kernel records, {} NTLM/Negotiate messages",
        file.display(),
        s.packets,
        s.tcp_segments,
        s.not_tcp,
        s.unparseable,
        s.seconds,
        s.packets_per_second(),
        s.records,
        p.stats.messages,
    );
    let violations: Vec<String> = correlate::Class::VIOLATIONS
        .iter()
        .map(|class| format!("{class} {}", c.alerts_of(*class)))
        .collect();
    eprintln!(
        "  handshakes: {} succeeded, {} failed; violations: {}; challenges still open at the end {}",
        c.handshakes_ok,
        c.handshakes_failed,
        violations.join(", "),
        c.challenges_open_at_end,
    );
    eprintln!(
        "  losses: {} reassembly gaps, {} truncated heads, {} streams evicted, {} undecodable tokens, {} unparseable packets, {} connections evicted",
        r.gaps,
        r.truncated_heads,
        r.evicted_streams,
        p.undecodable(),
        s.unparseable,
        c.evicted_connections,
    );
    let clients = p.correlator().clients.report(20);
    if !clients.is_empty() {
        eprintln!("  schemes by client (X-Forwarded-For; NTLM reasons: see docs/events.md):");
        for line in clients {
            eprintln!("    {line}");
        }
    }
    let users = p.correlator().clients.ranked_users();
    if !users.is_empty() {
        eprintln!("  NTLM logons by user (NTLMv1 first):");
        for (user, c) in users.iter().take(20) {
            eprintln!(
                "    {:<32} ntlm {:<6} ntlmv1 {:<6} lm {:<6} anonymous {:<6} unsigned {}",
                correlate::terminal_label(user, 32),
                c.ntlm,
                c.ntlmv1,
                c.lm,
                c.anonymous,
                c.unsigned
            );
        }
        if users.len() > 20 {
            eprintln!("    … and {} more users", users.len() - 20);
        }
    }
}

fn log_once(e: &dyn std::fmt::Display) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        eprintln!("ntlm-affinity: malformed record from the kernel: {e} (counted in stats)")
    });
}

/// The `tracker_stats` record, one NDJSON line.
fn stats_line(
    ctx: &event::Context,
    tracker: &Tracker,
    pipeline: &Pipeline,
    auth: &AuthFlows,
    writer: &output::Writer,
) -> anyhow::Result<Vec<u8>> {
    let v = stats_record(ctx, tracker, pipeline, auth, writer, "tracker_stats")?;
    Ok(ndjson_line(&v))
}

/// The `live` record control clients get every second: the `tracker_stats` numbers, the
/// interfaces still there, the clients by scheme, and the control socket's own counts.
fn live_line(
    ctx: &event::Context,
    tracker: &Tracker,
    pipeline: &Pipeline,
    auth: &AuthFlows,
    writer: &output::Writer,
    hub: &control::Hub,
    lost: &[String],
) -> anyhow::Result<Vec<u8>> {
    let mut v = stats_record(ctx, tracker, pipeline, auth, writer, "live")?;
    let clients: Vec<serde_json::Value> = pipeline
        .correlator()
        .clients
        .ranked()
        .into_iter()
        .take(LIVE_CLIENTS)
        .map(|(client, c)| serde_json::json!({ "client": client, "schemes": c }))
        .collect();
    let users: Vec<serde_json::Value> = pipeline
        .correlator()
        .clients
        .ranked_users()
        .into_iter()
        .take(LIVE_CLIENTS)
        .map(|(user, c)| serde_json::json!({ "user": user, "schemes": c }))
        .collect();
    let na = &mut v["ntlm_affinity"];
    na["clients"] = clients.into();
    na["users"] = users.into();
    na["lost_interfaces"] = lost.into();
    na["control"] = serde_json::json!({
        "clients": hub.clients(),
        "dropped": hub.dropped.load(std::sync::atomic::Ordering::Relaxed),
        "served": hub.served.load(std::sync::atomic::Ordering::Relaxed),
    });
    Ok(ndjson_line(&v))
}

/// Clients (most NTLM first) and NTLM users (most NTLMv1 first) in each `live` record.
const LIVE_CLIENTS: usize = 50;

fn stats_record(
    ctx: &event::Context,
    tracker: &Tracker,
    pipeline: &Pipeline,
    auth: &AuthFlows,
    writer: &output::Writer,
    action: &str,
) -> anyhow::Result<serde_json::Value> {
    let mut kernel = serde_json::Map::new();
    for (name, v) in tracker.stats()? {
        kernel.insert(name.to_string(), v.into());
    }
    kernel.insert("auth_flow_write_failures".into(), auth.failures.into());
    Ok(serde_json::json!({
        "@timestamp": ctx.timestamp(u64::try_from(event::monotonic_ns()).unwrap_or(0)),
        "event": { "kind": "metric", "action": action, "dataset": "ntlm_affinity.stats" },
        "observer": { "hostname": ctx.observer },
        "ntlm_affinity": {
            "kernel": kernel,
            "daemon": pipeline.stats_json(),
            "interfaces": interfaces_json(tracker),
            "output": {
                "written": writer.written(),
                "dropped": writer.dropped(),
                "queued": writer.queued(),
            },
        }
    }))
}
