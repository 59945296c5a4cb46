//! The in-kernel part of `cargo xtask bench`: per-packet cost of the tracker programs against
//! the pass-through programs (BPF_PROG_TEST_RUN, interleaved rounds), the event path from the
//! kernel to NDJSON, the kernel's map memory at the default capacity, and the daemon's
//! decode + format rate. Needs root. Usage:
//!
//! `nta-bench [--quick] --out DIR` → `DIR/kernel.json` (figures), `DIR/per-packet.json`,
//! `DIR/per-packet.svg`.

use std::collections::HashMap;
use std::fs;
use std::io::Write as _;
use std::os::fd::AsRawFd as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use aya::maps::{MapData, RingBuf};
use aya::programs::{Program, SchedClassifier, TestRun, TestRunOptions, Xdp};
use nta_lab::bench::{ClassCost, Figure, fmt_num, median, pcap, per_packet_svg, table};
use nta_lab::frames::{self, ACK, PSH, Tcp};
use tracker_user::{
    correlate::AuthUpdate,
    endpoint::Backend,
    event,
    loader::{TC_BASELINE, TC_PROGRAM, Tracker, TrackerConfig, XDP_BASELINE, XDP_PROGRAM},
    pipeline::{self, Pipeline},
};

const BACKEND_PORT: u16 = 80;

struct Opts {
    quick: bool,
    out: PathBuf,
}

fn parse_args() -> Result<Opts> {
    let mut o = Opts {
        quick: false,
        out: PathBuf::from("target/bench"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => o.quick = true,
            "--out" => o.out = it.next().context("--out DIR")?.into(),
            other => bail!("unknown argument {other:?} (nta-bench [--quick] --out DIR)"),
        }
    }
    Ok(o)
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("nta-bench: error: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<()> {
    let opts = parse_args()?;
    fs::create_dir_all(&opts.out)?;
    let cfg = TrackerConfig {
        backends: vec![
            "198.18.1.0/24:80"
                .parse::<Backend>()
                .map_err(|e| anyhow!(e))?,
        ],
        frontend_ports: vec![8080],
        ..TrackerConfig::default()
    };
    let t0 = Instant::now();
    let mut tracker = Tracker::load(&cfg)?;
    let load_s = t0.elapsed().as_secs_f64();
    println!("nta-bench: tracker loaded and verified in {load_s:.2} s");
    for name in [XDP_BASELINE, TC_BASELINE] {
        match tracker.ebpf_mut().program_mut(name) {
            Some(Program::Xdp(p)) => p.load()?,
            Some(Program::SchedClassifier(p)) => p.load()?,
            _ => bail!("baseline program {name} missing from the eBPF object"),
        }
    }
    let mut ring = tracker.take_events()?;
    let mut figs = vec![
        Figure::at_most("kernel.load_verify_s", load_s, "s", 2.0)
            .note("both programs and every map, as `run` loads them (release build)"),
    ];
    // Both add cost to every program run: the figures are only comparable with them off.
    for (name, path) in [
        (
            "kernel.bpf_stats_enabled",
            "/proc/sys/kernel/bpf_stats_enabled",
        ),
        ("kernel.bpf_jit_harden", "/proc/sys/net/core/bpf_jit_harden"),
    ] {
        let v: f64 = fs::read_to_string(path)
            .with_context(|| format!("reading {path}"))?
            .trim()
            .parse()
            .with_context(|| format!("parsing {path}"))?;
        if v != 0.0 {
            eprintln!("nta-bench: warning: {path} is {v}: per-packet figures include its cost");
        }
        figs.push(Figure::at_most(name, v, "", 0.0).note("sysctl during the run; must be 0"));
    }
    // Memory first: the maps as the daemon creates them, before any flow exists.
    figs.extend(memory()?);
    let (costs, kfigs) = per_packet(&mut tracker, &mut ring, &opts)?;
    figs.extend(kfigs);
    fs::write(
        opts.out.join("per-packet.json"),
        serde_json::to_vec_pretty(&costs)?,
    )?;
    fs::write(
        opts.out.join("per-packet.svg"),
        per_packet_svg(
            &costs,
            "ntlm-affinity: per-packet cost by packet class vs pass-through (XDP, TC)",
        ),
    )?;
    // Decode + correlate throughput is measured on distinct handshakes by the replay figure
    // and by `cargo bench -p tracker-user --bench pipeline`: replaying one sampled handshake
    // here would give every challenge the same identity and measure that artefact instead.
    figs.extend(event_path(tracker, ring, &opts)?);
    fs::write(
        opts.out.join("kernel.json"),
        serde_json::to_vec_pretty(&figs)?,
    )?;
    print!("{}", table(&figs));
    Ok(())
}

// ------------------------------------------------------------------ frames

struct Class {
    name: &'static str,
    label: &'static str,
    frame: Vec<u8>,
    /// Emits one ring-buffer record per run: runs are chunked so the ring never fills.
    event: bool,
    /// Target on ns per run, or on the ratio to the pass-through.
    ns_target: Option<f64>,
    ratio_target: Option<f64>,
    /// Target on ns per run above the pass-through.
    delta_target: Option<f64>,
}

/// Port of the flow the authenticated-connection classes run on.
const AUTH_PORT: u16 = 40103;
const AUTH_CLIENT: &[u8] = b"198.18.0.10";

/// A balancer's request on an authenticated backend connection (HAProxy-like headers).
fn auth_request(xff: &[u8]) -> Vec<u8> {
    let mut r = b"GET /owa/ HTTP/1.1\r\nHost: mail.lab.example\r\nUser-Agent: Mozilla/5.0\r\nAccept: */*\r\nX-Forwarded-For: ".to_vec();
    r.extend_from_slice(xff);
    r.extend_from_slice(b"\r\n\r\n");
    r
}

/// Makes the `AUTH_PORT` flow one that carried NTLM and that userspace marked authenticated
/// for `AUTH_CLIENT`, as the daemon does after a Type-3 answered 200.
fn prime_authenticated(tracker: &mut Tracker, ring: &mut RingBuf<MapData>) -> Result<()> {
    let (_, _, t3) = pcap::fixture_headers()?;
    let up = Tcp::new(AUTH_PORT, BACKEND_PORT, 1, ACK | PSH);
    let frame = frames::tcp4(
        &[],
        frames::CLIENT4,
        frames::SERVER4,
        &up,
        &frames::request(3, &t3),
    );
    test_run(tracker, TC_PROGRAM, &frame, 1)?;
    drain(ring);
    let key = frames::key4(frames::CLIENT4, AUTH_PORT, frames::SERVER4, BACKEND_PORT);
    let generation = tracker
        .flow(&key)?
        .context("no FLOWS entry for the authenticated flow")?
        .generation;
    let mut auth = tracker.take_auth_flows()?;
    auth.apply(&AuthUpdate::Set {
        key,
        generation,
        identity: (
            tracker_common::identity::words(AUTH_CLIENT).context("identity")?,
            AUTH_CLIENT.len() as u32,
        ),
    });
    if auth.failures != 0 {
        bail!("writing AUTH_FLOWS failed");
    }
    Ok(())
}

/// Header lines of an Exchange Web Services request as a balancer forwards it, before its
/// `Authorization` line.
const EWS_REQUEST_LINES: [&str; 20] = [
    "Host: mail.lab.example",
    "User-Agent: Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17928; Pro)",
    "Accept: */*",
    "Accept-Encoding: gzip, deflate",
    "Accept-Language: en-US",
    "Content-Type: text/xml; charset=utf-8",
    "SOAPAction: \"http://schemas.microsoft.com/exchange/services/2006/messages/GetFolder\"",
    "X-AnchorMailbox: alice@lab.example",
    "X-ClientStatistics: MessageId=5f3c;RequestTime=2026-12-03T10:00:00;ResponseTime=130",
    "Client-Request-Id: 0f8fad5b-d9cb-469f-a165-70867728950e",
    "Return-Client-Request-Id: true",
    "X-Owa-CorrelationId: 0f8fad5b-d9cb-469f-a165-70867728950e",
    "Prefer: IdType=\"ImmutableId\"",
    "Cookie: ClientId=A1B2C3D4E5F6; X-BackEndCookie=S-1-5-21-1111-2222-3333=u56Lnp2e",
    "Connection: keep-alive",
    "Content-Length: 512",
    "Pragma: no-cache",
    "Cache-Control: no-cache",
    "X-Forwarded-For: 198.18.0.12",
    "X-Forwarded-Proto: http",
];

/// Header lines of an IIS 401 before its `WWW-Authenticate` line.
const IIS_401_LINES: [&str; 12] = [
    "Content-Type: text/html",
    "Server: Microsoft-IIS/10.0",
    "request-id: 0f8fad5b-d9cb-469f-a165-70867728950e",
    "X-CalculatedBETarget: web1.lab.example",
    "X-DiagInfo: WEB1",
    "X-BEServer: WEB1",
    "X-FEServer: WEB1",
    "X-Powered-By: ASP.NET",
    "X-Content-Type-Options: nosniff",
    "Strict-Transport-Security: max-age=31536000",
    "Date: Thu, 03 Dec 2026 10:00:00 GMT",
    "Content-Length: 0",
];

fn head(start: &str, lines: &[&str], last: &str) -> Vec<u8> {
    let mut h = format!("{start}\r\n");
    for l in lines {
        h.push_str(l);
        h.push_str("\r\n");
    }
    h.push_str(last);
    h.push_str("\r\n\r\n");
    h.into_bytes()
}

fn classes() -> Result<Vec<Class>> {
    let (_, t2, t3) = pcap::fixture_headers()?;
    let client = frames::CLIENT4;
    let server = frames::SERVER4;
    let up = Tcp::new(40100, BACKEND_PORT, 1, ACK | PSH);
    let down = Tcp::new(BACKEND_PORT, 40100, 1, ACK | PSH);
    let mut udp = Vec::new();
    udp.extend_from_slice(&40100u16.to_be_bytes());
    udp.extend_from_slice(&53u16.to_be_bytes());
    udp.extend_from_slice(&108u16.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(&[0u8; 100]);
    let mut non_tcp = frames::ethernet(&[], 0x0800);
    non_tcp.extend_from_slice(&frames::ipv4(client, [10, 0, 0, 53], 17, &[], &udp));
    // ~1 KB of request headers, no auth.
    let mut extra = 0;
    let plain = loop {
        let p = frames::request(extra, "Accept: */*");
        if p.len() >= 1000 {
            break p;
        }
        extra += 1;
    };
    // ~1 KB of response headers, status 200.
    let mut plain_response = b"HTTP/1.1 200 OK\r\nServer: Microsoft-IIS/10.0\r\n".to_vec();
    while plain_response.len() < 1000 {
        plain_response.extend_from_slice(b"X-Filler: some value of a plain response\r\n");
    }
    plain_response.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    Ok(vec![
        Class {
            name: "non_tcp",
            label: "non-TCP",
            frame: non_tcp,
            event: false,
            ns_target: None,
            ratio_target: Some(1.3),
            delta_target: None,
        },
        Class {
            name: "untracked_tcp",
            label: "untracked TCP",
            frame: frames::tcp4(
                &[],
                client,
                [10, 0, 0, 1],
                &Tcp::new(40100, 443, 1, ACK | PSH),
                &[0u8; 100],
            ),
            event: false,
            ns_target: None,
            ratio_target: Some(1.3),
            delta_target: None,
        },
        Class {
            name: "tracked_ack",
            label: "tracked, no payload",
            frame: frames::tcp4(&[], client, server, &Tcp::new(40101, 80, 1, ACK), &[]),
            event: false,
            ns_target: None,
            ratio_target: None,
            delta_target: None,
        },
        Class {
            name: "tracked_http_1k",
            label: "HTTP 1 KB, no auth",
            frame: frames::tcp4(
                &[],
                client,
                server,
                &Tcp::new(40102, BACKEND_PORT, 1, ACK | PSH),
                &plain,
            ),
            event: false,
            ns_target: Some(300.0),
            ratio_target: None,
            delta_target: None,
        },
        Class {
            name: "type3_event",
            label: "Type-3 + event",
            frame: frames::tcp4(&[], client, server, &up, &frames::request(3, &t3)),
            event: true,
            ns_target: Some(1000.0),
            ratio_target: None,
            delta_target: None,
        },
        Class {
            name: "type2_event",
            label: "Type-2 + event",
            frame: frames::tcp4(&[], server, client, &down, &frames::response(&t2)),
            event: true,
            ns_target: Some(1000.0),
            ratio_target: None,
            delta_target: None,
        },
        Class {
            name: "plain_response_1k",
            label: "response 200, 1 KB, no NTLM state",
            frame: frames::tcp4(
                &[],
                server,
                client,
                &Tcp::new(BACKEND_PORT, 40104, 1, ACK | PSH),
                &plain_response,
            ),
            event: false,
            ns_target: Some(150.0),
            ratio_target: None,
            delta_target: None,
        },
        Class {
            name: "type3_after_20_lines",
            label: "EWS Type-3 after 20 lines + event",
            frame: frames::tcp4(
                &[],
                client,
                server,
                &Tcp::new(40105, BACKEND_PORT, 1, ACK | PSH),
                &head("POST /EWS/Exchange.asmx HTTP/1.1", &EWS_REQUEST_LINES, &t3),
            ),
            event: true,
            ns_target: Some(1000.0),
            ratio_target: None,
            delta_target: None,
        },
        Class {
            name: "type2_after_12_lines",
            label: "IIS Type-2 after 12 lines + event",
            frame: frames::tcp4(
                &[],
                server,
                client,
                &Tcp::new(BACKEND_PORT, 40106, 1, ACK | PSH),
                &head("HTTP/1.1 401 Unauthorized", &IIS_401_LINES, &t2),
            ),
            event: true,
            ns_target: Some(1000.0),
            ratio_target: None,
            delta_target: None,
        },
        Class {
            // The same request on a tracked connection that never carried NTLM: the scan
            // alone, so the identity check's own share is the difference.
            name: "small_request_no_auth",
            label: "request, no auth",
            frame: frames::tcp4(
                &[],
                client,
                server,
                &Tcp::new(AUTH_PORT + 1, BACKEND_PORT, 1000, ACK | PSH),
                &auth_request(AUTH_CLIENT),
            ),
            event: false,
            ns_target: None,
            ratio_target: None,
            delta_target: None,
        },
        Class {
            name: "auth_same_client",
            label: "authenticated, same client",
            frame: frames::tcp4(
                &[],
                client,
                server,
                &Tcp::new(AUTH_PORT, BACKEND_PORT, 1000, ACK | PSH),
                &auth_request(AUTH_CLIENT),
            ),
            event: false,
            ns_target: None,
            ratio_target: None,
            delta_target: Some(150.0),
        },
        Class {
            name: "auth_other_client",
            label: "authenticated, other client + event",
            frame: frames::tcp4(
                &[],
                client,
                server,
                &Tcp::new(AUTH_PORT, BACKEND_PORT, 2000, ACK | PSH),
                &auth_request(b"198.18.0.11"),
            ),
            event: true,
            ns_target: None,
            ratio_target: None,
            delta_target: None,
        },
    ])
}

// ------------------------------------------------------------------ test runs

fn test_run(tracker: &mut Tracker, prog: &str, frame: &[u8], repeat: u32) -> Result<(u32, f64)> {
    let opts = TestRunOptions {
        data_in: Some(frame),
        repeat,
        ..TestRunOptions::default()
    };
    let p = tracker
        .ebpf_mut()
        .program_mut(prog)
        .ok_or_else(|| anyhow!("program {prog} missing"))?;
    let r = match p {
        Program::Xdp(_) => {
            let x: &mut Xdp = p.try_into()?;
            x.test_run(opts)?
        }
        Program::SchedClassifier(_) => {
            let c: &mut SchedClassifier = p.try_into()?;
            c.test_run(opts)?
        }
        _ => bail!("{prog}: not XDP or TC"),
    };
    Ok((r.return_value, r.duration.as_nanos() as f64))
}

fn drain(ring: &mut RingBuf<MapData>) -> u64 {
    let mut n = 0;
    while ring.next().is_some() {
        n += 1;
    }
    n
}

fn stats(tracker: &Tracker) -> Result<HashMap<&'static str, u64>> {
    Ok(tracker.stats()?.into_iter().collect())
}

/// ns per run of `prog` over `repeat` runs; event classes run in chunks (ring drained in
/// between, every run checked to have produced its record).
fn cost(
    tracker: &mut Tracker,
    ring: &mut RingBuf<MapData>,
    prog: &str,
    class: &Class,
    repeat: u32,
    chunk: u32,
) -> Result<f64> {
    let pass = if prog.contains("xdp") || prog == XDP_PROGRAM {
        tracker_common::XDP_PASS
    } else {
        tracker_common::TC_ACT_UNSPEC
    };
    if !class.event || prog == XDP_BASELINE || prog == TC_BASELINE {
        let (rv, ns) = test_run(tracker, prog, &class.frame, repeat)?;
        if rv != pass {
            bail!("{prog} on {} returned {rv}, not pass", class.name);
        }
        return Ok(ns);
    }
    let mut done = 0u32;
    let mut weighted = 0.0;
    while done < repeat {
        let n = chunk.min(repeat - done);
        drain(ring);
        let before = stats(tracker)?;
        let (rv, ns) = test_run(tracker, prog, &class.frame, n)?;
        let after = stats(tracker)?;
        if rv != pass {
            bail!("{prog} on {} returned {rv}, not pass", class.name);
        }
        let events = after["events"] - before["events"];
        let full = after["ringbuf_full"] - before["ringbuf_full"];
        if events != u64::from(n) || full != 0 {
            bail!(
                "{prog} on {}: {n} runs gave {events} events and {full} ring-buffer losses",
                class.name
            );
        }
        weighted += ns * f64::from(n);
        done += n;
    }
    drain(ring);
    Ok(weighted / f64::from(repeat))
}

fn per_packet(
    tracker: &mut Tracker,
    ring: &mut RingBuf<MapData>,
    opts: &Opts,
) -> Result<(Vec<ClassCost>, Vec<Figure>)> {
    let (repeat, rounds) = if opts.quick {
        (20_000u32, 2usize)
    } else {
        (1_000_000u32, 5usize)
    };
    let classes = classes()?;
    // Runs per chunk so that a chunk's records fit the default 8 MiB ring with room to spare.
    let longest = classes
        .iter()
        .filter(|c| c.event)
        .map(|c| c.frame.len() + std::mem::size_of::<tracker_common::RecordHeader>())
        .max()
        .unwrap_or(1);
    let chunk = (tracker_common::DEFAULT_RING_BYTES as usize / 2 / longest).max(1) as u32;
    prime_authenticated(tracker, ring)?;
    let hooks = [
        ("xdp", XDP_PROGRAM, XDP_BASELINE),
        ("tc", TC_PROGRAM, TC_BASELINE),
    ];
    // samples[hook][class] = (tracker ns, baseline ns) per round
    let mut samples: Vec<Vec<Vec<(f64, f64)>>> = vec![vec![Vec::new(); classes.len()]; hooks.len()];
    for round in 0..rounds {
        for (hi, (_, prog, base)) in hooks.iter().enumerate() {
            for (ci, class) in classes.iter().enumerate() {
                // Alternate which goes first, so drift does not favour one side.
                let (t, b) = if round % 2 == 0 {
                    let b = cost(tracker, ring, base, class, repeat, chunk)?;
                    (cost(tracker, ring, prog, class, repeat, chunk)?, b)
                } else {
                    let t = cost(tracker, ring, prog, class, repeat, chunk)?;
                    (t, cost(tracker, ring, base, class, repeat, chunk)?)
                };
                samples[hi][ci].push((t, b));
            }
        }
        println!("nta-bench: per-packet round {}/{rounds} done", round + 1);
    }
    let mut costs = Vec::new();
    let mut figs = Vec::new();
    for (hi, (hook, _, _)) in hooks.iter().enumerate() {
        let base_all: Vec<f64> = samples[hi].iter().flatten().map(|(_, b)| *b).collect();
        figs.push(
            Figure::info(
                format!("kernel.{hook}.pass_through_ns"),
                median(&base_all),
                "ns",
            )
            .note("the pass-through program of the same type, same runs"),
        );
        for (ci, class) in classes.iter().enumerate() {
            let s = &samples[hi][ci];
            let t: Vec<f64> = s.iter().map(|x| x.0).collect();
            let b: Vec<f64> = s.iter().map(|x| x.1).collect();
            let ratios: Vec<f64> = s.iter().map(|x| x.0 / x.1.max(1.0)).collect();
            let (tm, bm, rm) = (median(&t), median(&b), median(&ratios));
            costs.push(ClassCost {
                class: class.label.into(),
                hook: (*hook).into(),
                tracker_ns: tm,
                baseline_ns: bm,
            });
            let how = format!(
                "{} B frame, {rounds} rounds x {repeat} runs, ns per round {:?}",
                class.frame.len(),
                t.iter().map(|x| fmt_num(*x)).collect::<Vec<_>>()
            );
            let ns_name = format!("kernel.{hook}.{}.ns", class.name);
            figs.push(
                match class.ns_target {
                    Some(max) => Figure::at_most(ns_name, tm, "ns", max),
                    None => Figure::info(ns_name, tm, "ns"),
                }
                .note(how),
            );
            if let Some(max) = class.delta_target {
                let deltas: Vec<f64> = s.iter().map(|x| x.0 - x.1).collect();
                figs.push(
                    Figure::at_most(
                        format!("kernel.{hook}.{}.over_pass_through_ns", class.name),
                        median(&deltas),
                        "ns",
                        max,
                    )
                    .note("tracker minus pass-through, same rounds"),
                );
            }
            let r_name = format!("kernel.{hook}.{}.ratio", class.name);
            figs.push(match class.ratio_target {
                Some(max) => Figure::at_most(r_name, rm, "x", max),
                None => Figure::info(r_name, rm, "x"),
            });
        }
    }
    figs.extend(scan_profile(tracker, ring, opts)?);
    Ok((costs, figs))
}

/// Where the tracked-HTTP time goes: cost of a no-auth request against its number of header
/// lines (the scan takes one bpf_loop callback per line), XDP.
fn scan_profile(
    tracker: &mut Tracker,
    ring: &mut RingBuf<MapData>,
    opts: &Opts,
) -> Result<Vec<Figure>> {
    let repeat = if opts.quick { 20_000 } else { 200_000 };
    let mut points = Vec::new();
    for (i, extra) in [0usize, 10, 20, 40].into_iter().enumerate() {
        let payload = frames::request(extra, "Accept: */*");
        let class = Class {
            name: "scan",
            label: "scan",
            frame: frames::tcp4(
                &[],
                frames::CLIENT4,
                frames::SERVER4,
                &Tcp::new(40110 + i as u16, BACKEND_PORT, 1, ACK | PSH),
                &payload,
            ),
            event: false,
            ns_target: None,
            ratio_target: None,
            delta_target: None,
        };
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(cost(tracker, ring, XDP_PROGRAM, &class, repeat, repeat)?);
        }
        // Header lines: request line, Host, fillers, Accept, Content-Length.
        points.push(((extra + 4) as f64, median(&v), payload.len()));
    }
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let slope = sxy / sxx;
    let intercept = my - slope * mx;
    let desc: Vec<String> = points
        .iter()
        .map(|(l, ns, b)| format!("{l} lines/{b} B: {} ns", fmt_num(*ns)))
        .collect();
    Ok(vec![
        Figure::info("kernel.xdp.scan_ns_per_header_line", slope, "ns").note(format!(
            "tracked no-auth request cost against header lines (least squares): {}",
            desc.join(", ")
        )),
        Figure::info("kernel.xdp.scan_fixed_ns", intercept, "ns")
            .note("the same fit's intercept: parsing, flow lookup and update, per packet"),
    ])
}

// ------------------------------------------------------------------ memory

/// Sum of `memlock` over this process's BPF map fds (the tracker's maps at the default
/// 1,000,000-flow capacity and 8 MiB ring).
fn memory() -> Result<Vec<Figure>> {
    let mut total = 0u64;
    let mut largest = (0u64, String::new());
    for e in fs::read_dir("/proc/self/fdinfo")? {
        let e = e?;
        let Ok(text) = fs::read_to_string(e.path()) else {
            continue;
        };
        if !text.contains("map_type:") {
            continue;
        }
        let field = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k))
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        let memlock: u64 = field("memlock:").parse().unwrap_or(0);
        total += memlock;
        if memlock > largest.0 {
            largest = (
                memlock,
                format!(
                    "map_type {} max_entries {} key {} value {}",
                    field("map_type:"),
                    field("max_entries:"),
                    field("key_size:"),
                    field("value_size:")
                ),
            );
        }
    }
    if total == 0 {
        bail!("no BPF map fds with memlock in /proc/self/fdinfo");
    }
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    Ok(vec![
        Figure::at_most("memory.kernel_maps_mib", mib(total), "MiB", 128.0).note(format!(
            "memlock of every map at the default 1,000,000-flow capacity; largest {:.1} MiB ({})",
            mib(largest.0),
            largest.1
        )),
    ])
}

// ------------------------------------------------------------------ userspace

// ------------------------------------------------------------------ event path

/// Kernel → ring buffer → the daemon's pipeline → NDJSON (to /dev/null) on a reader thread,
/// while Type-3 requests are run into the tracker at increasing offered rates.
fn event_path(mut tracker: Tracker, ring: RingBuf<MapData>, opts: &Opts) -> Result<Vec<Figure>> {
    let (_, _, t3) = pcap::fixture_headers()?;
    let frame = frames::tcp4(
        &[],
        frames::CLIENT4,
        frames::SERVER4,
        &Tcp::new(40300, 80, 1, ACK | PSH),
        &frames::request(3, &t3),
    );
    let delivered = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let delivered = delivered.clone();
        let stop = stop.clone();
        std::thread::spawn(move || reader_loop(ring, &delivered, &stop))
    };
    let phase = Duration::from_millis(if opts.quick { 300 } else { 2000 });
    let ladder: &[u64] = &[
        25_000, 50_000, 100_000, 125_000, 150_000, 175_000, 200_000, 300_000, 400_000, 0,
    ];
    let mut best = 0.0f64;
    let mut past = None;
    for &rate in ladder {
        let before_stats = stats(&tracker)?;
        let before = delivered.load(Ordering::Relaxed);
        let t0 = Instant::now();
        let mut sent = 0u64;
        let tick = Duration::from_millis(1);
        while t0.elapsed() < phase {
            let batch = if rate == 0 {
                1000
            } else {
                // Catch up to the offered rate, at most 50 ms worth at once.
                let due = (t0.elapsed().as_secs_f64() * rate as f64) as u64;
                due.saturating_sub(sent).min(rate / 20)
            };
            if batch > 0 {
                test_run(&mut tracker, TC_PROGRAM, &frame, batch as u32)?;
                sent += batch;
            } else {
                std::thread::sleep(tick);
            }
        }
        let elapsed = t0.elapsed().as_secs_f64();
        // Let the reader finish what is in the ring (every run either delivered or lost).
        let after_stats = stats(&tracker)?;
        let lost = after_stats["ringbuf_full"] - before_stats["ringbuf_full"];
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut got = delivered.load(Ordering::Relaxed) - before;
        while got + lost < sent && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
            got = delivered.load(Ordering::Relaxed) - before;
        }
        let offered = sent as f64 / elapsed;
        println!(
            "nta-bench: event path offered {:>9.0} msg/s: delivered {got}, lost {lost}",
            offered
        );
        if lost == 0 && got == sent {
            best = best.max(offered);
        } else if past.is_none() || rate == 0 {
            past = Some((offered, lost, sent, got as f64 / elapsed));
        }
    }
    stop.store(true, Ordering::Relaxed);
    let reader_ok = reader.join().map_err(|_| anyhow!("reader panicked"))?;
    let mut figs = vec![
        Figure::info("events.max_lossless_msgs_per_s", best, "msg/s").note(
            "highest offered rate of Type-3 requests (test_run into the loaded tracker) with \
             every record decoded and written as NDJSON by the daemon's pipeline on another \
             thread, 8 MiB ring, zero loss",
        ),
    ];
    match past {
        Some((offered, lost, sent, delivered_rate)) => {
            figs.push(
                Figure::info(
                    "events.overload_loss_pct",
                    100.0 * lost as f64 / sent.max(1) as f64,
                    "%",
                )
                .note(format!(
                    "offered {offered:.0} msg/s: {lost} of {sent} records lost and counted \
                     (ringbuf_full); reader delivered {delivered_rate:.0} msg/s and kept running: {}",
                    reader_ok.is_ok()
                )),
            );
        }
        None => figs.push(
            Figure::info("events.overload_loss_pct", 0.0, "%")
                .note("no loss even unpaced: the producer (one test_run thread) is the limit"),
        ),
    }
    figs.push(Figure {
        ok: reader_ok.is_ok(),
        ..Figure::info(
            "events.reader_survived_overload",
            f64::from(u8::from(reader_ok.is_ok())),
            "bool",
        )
    });
    Ok(figs)
}

fn reader_loop(mut ring: RingBuf<MapData>, delivered: &AtomicU64, stop: &AtomicBool) -> Result<()> {
    let ctx = event::Context::new(HashMap::new());
    let mut p = Pipeline::new(pipeline::Config {
        messages: true,
        ..Default::default()
    });
    let mut outputs = Vec::new();
    let sink = fs::OpenOptions::new().write(true).open("/dev/null")?;
    let mut out = std::io::BufWriter::with_capacity(1 << 16, sink);
    let fd = ring.as_raw_fd();
    let mut line = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, 20) };
        while let Some(item) = ring.next() {
            // As the daemon reads it: in place.
            p.push_bytes(&item, &mut outputs)
                .map_err(|e| anyhow!("{e}"))?;
            drop(item);
            for o in outputs.drain(..) {
                line.clear();
                ctx.write(&o, &mut line);
                out.write_all(&line)?;
            }
            delivered.fetch_add(1, Ordering::Relaxed);
        }
        out.flush()?;
    }
    Ok(())
}
