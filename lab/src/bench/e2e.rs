//! End to end: `wrk` through HAProxy in the lab (static NGINX backends), the tracker daemon
//! attached vs not, interleaved pairs; keep-alive and new-connection-per-request, each with
//! and without an NTLM `Authorization` header on every request.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::{Figure, median, pcap::fixture_headers};
use crate::{BackendKind, Lab, LabConfig, NS_CLIENT, NS_LB, VIP, sys};

/// Options of the end-to-end figure.
#[derive(Clone, Debug)]
pub struct E2eOptions {
    /// The `ntlm-affinity` binary (release).
    pub tracker_bin: PathBuf,
    /// Tracker on / off pairs per variant.
    pub pairs: usize,
    /// Seconds per wrk run.
    pub seconds: u64,
    /// wrk connections.
    pub connections: u32,
    /// Where the tracker's output goes for a moment (deleted after each run).
    pub scratch: PathBuf,
}

/// One load shape.
#[derive(Clone, Debug)]
struct Variant {
    name: &'static str,
    close: bool,
    ntlm: bool,
}

const VARIANTS: [Variant; 4] = [
    Variant {
        name: "keepalive",
        close: false,
        ntlm: false,
    },
    Variant {
        name: "close",
        close: true,
        ntlm: false,
    },
    Variant {
        name: "keepalive_ntlm",
        close: false,
        ntlm: true,
    },
    Variant {
        name: "close_ntlm",
        close: true,
        ntlm: true,
    },
];

/// What one wrk run reported.
#[derive(Clone, Debug, Default)]
pub struct WrkRun {
    pub requests_per_s: f64,
    pub requests: u64,
    pub errors: u64,
    pub non_2xx: u64,
}

/// Parses wrk's report (`Requests/sec:`, `N requests in`, `Socket errors:`, `Non-2xx`).
pub fn parse_wrk(out: &str) -> Result<WrkRun> {
    let mut r = WrkRun::default();
    let mut seen = false;
    for line in out.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            r.requests_per_s = v.trim().parse().context("wrk Requests/sec")?;
            seen = true;
        } else if line.contains(" requests in ") {
            r.requests = line
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
        } else if let Some(v) = line.strip_prefix("Socket errors:") {
            r.errors = v
                .split(',')
                .filter_map(|kv| kv.split_whitespace().last()?.parse::<u64>().ok())
                .sum();
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            r.non_2xx = v.trim().parse().unwrap_or(0);
        }
    }
    if !seen {
        bail!("no `Requests/sec:` in wrk's output:\n{out}");
    }
    Ok(r)
}

/// Runs the figure; the lab is built here and torn down at the end.
pub fn run(opts: &E2eOptions) -> Result<Vec<Figure>> {
    sys::require_tool("wrk", "wrk")?;
    let cfg = LabConfig::preset("haproxy")?
        .with_backend_kind(BackendKind::StaticNginx)
        .with_client_addrs(1);
    let lab = Lab::up(cfg)?.down_on_drop(true);
    for ns in [NS_CLIENT, NS_LB] {
        for kv in [
            "net.ipv4.ip_local_port_range=1024 65000",
            "net.ipv4.tcp_tw_reuse=1",
        ] {
            sys::run(sys::ns_command(ns, "sysctl").args(["-q", "-w", kv]))?;
        }
    }
    fs::create_dir_all(&opts.scratch)?;
    let (_, _, t3) = fixture_headers()?;
    // Warm up the balancer and the backends.
    wrk(&lab, &VARIANTS[0], &t3, 1, opts.connections)?;
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); VARIANTS.len()];
    let mut on_rps: Vec<Vec<f64>> = vec![Vec::new(); VARIANTS.len()];
    let mut off_rps: Vec<Vec<f64>> = vec![Vec::new(); VARIANTS.len()];
    let mut daemon_msgs = Vec::new();
    let mut daemon_lost = 0u64;
    let mut daemon_exits_ok = true;
    for pair in 0..opts.pairs {
        // ABBA: tracker first on even pairs, last on odd ones.
        let order = if pair % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        let mut got: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
        for on in order {
            let tracker = if on {
                Some(Tracker::start(&lab, &opts.tracker_bin, &opts.scratch)?)
            } else {
                None
            };
            let mut rps = Vec::new();
            for v in &VARIANTS {
                let before = tracker.as_ref().map(|t| t.messages()).unwrap_or(0);
                let t0 = Instant::now();
                let r = wrk(&lab, v, &t3, opts.seconds, opts.connections)?;
                if r.requests == 0 || r.non_2xx * 10 > r.requests {
                    bail!("wrk {} got no/bad answers: {r:?}", v.name);
                }
                if let (Some(t), true) = (&tracker, v.ntlm) {
                    let n = t.messages().saturating_sub(before);
                    daemon_msgs.push(n as f64 / t0.elapsed().as_secs_f64());
                }
                println!(
                    "bench: e2e pair {} {:<15} tracker {:<3} {:>9.0} req/s",
                    pair + 1,
                    v.name,
                    if on { "on" } else { "off" },
                    r.requests_per_s
                );
                rps.push(r.requests_per_s);
            }
            if let Some(t) = tracker {
                let (ok, lost) = t.stop()?;
                daemon_exits_ok &= ok;
                daemon_lost += lost;
            }
            got[usize::from(!on)] = rps;
        }
        for (i, _) in VARIANTS.iter().enumerate() {
            on_rps[i].push(got[0][i]);
            off_rps[i].push(got[1][i]);
            ratios[i].push(got[0][i] / got[1][i]);
        }
    }
    let mut figs = Vec::new();
    for (i, v) in VARIANTS.iter().enumerate() {
        figs.push(
            Figure::at_least(
                format!("e2e.{}.ratio", v.name),
                median(&ratios[i]),
                "x",
                0.98,
            )
            .note(format!(
                "median of {} interleaved pairs of {} s wrk runs; ratios {:?}",
                ratios[i].len(),
                opts.seconds,
                ratios[i]
                    .iter()
                    .map(|r| (r * 1000.0).round() / 1000.0)
                    .collect::<Vec<_>>()
            )),
        );
        figs.push(Figure::info(
            format!("e2e.{}.rps_tracker_off", v.name),
            median(&off_rps[i]),
            "req/s",
        ));
    }
    figs.push(
        Figure::info("e2e.ntlm.daemon_msgs_per_s", median(&daemon_msgs), "msg/s").note(
            "NTLM messages per second the daemon wrote as NDJSON during the NTLM variants \
             (both legs)",
        ),
    );
    let mut lost = Figure::at_most("e2e.ntlm.ringbuf_lost", daemon_lost as f64, "events", 0.0);
    if !daemon_exits_ok {
        lost.ok = false;
        lost = lost.note("the daemon did not exit cleanly after a run");
    }
    figs.push(lost);
    lab.shutdown()?;
    Ok(figs)
}

fn wrk(lab: &Lab, v: &Variant, t3: &str, seconds: u64, connections: u32) -> Result<WrkRun> {
    let mut cmd = lab.client_command("wrk");
    cmd.args(["-t", "1", "-c", &connections.to_string()]).args([
        "-d",
        &format!("{seconds}s"),
        "--timeout",
        "5s",
    ]);
    if v.close {
        cmd.args(["-H", "Connection: close"]);
    }
    if v.ntlm {
        cmd.args(["-H", t3]);
    }
    cmd.arg(format!("http://{VIP}:80/"));
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run `{}`", sys::display_cmd(&cmd)))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}{}",
            sys::display_cmd(&cmd),
            out.status,
            text,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    parse_wrk(&text)
}

/// The daemon, running in the balancer namespace with its NDJSON going to a scratch file.
struct Tracker {
    child: Child,
    out: PathBuf,
}

impl Tracker {
    fn start(lab: &Lab, bin: &Path, scratch: &Path) -> Result<Tracker> {
        let out = scratch.join("e2e-tracker.ndjson");
        let err = scratch.join("e2e-tracker.log");
        let mut cmd = lab.lb_command(bin);
        cmd.args(lab.topology().tracker_args())
            // Message records are what this figure counts (verdicts are rare here).
            .args(["--stats-interval", "0", "--messages"])
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out)?)
            .stderr(fs::File::create(&err)?);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("start `{}`", sys::display_cmd(&cmd)))?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if fs::read_to_string(&err).is_ok_and(|t| t.contains("attached to")) {
                break;
            }
            if let Ok(Some(st)) = child.try_wait() {
                bail!(
                    "the tracker exited at start ({st}):\n{}",
                    sys::tail(&err, 3000)
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "the tracker did not attach in 60 s:\n{}",
                    sys::tail(&err, 3000)
                );
            }
            sleep(Duration::from_millis(20));
        }
        Ok(Tracker { child, out })
    }

    /// NTLM message records written so far.
    fn messages(&self) -> u64 {
        count_messages(&self.out)
    }

    /// SIGTERM, wait; returns (exited cleanly, ring-buffer losses from `tracker_stats`).
    fn stop(mut self) -> Result<(bool, u64)> {
        // SAFETY: kill(2) on the pid of our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(15);
        let status = loop {
            if let Some(st) = self.child.try_wait()? {
                break Some(st);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            sleep(Duration::from_millis(20));
        };
        let lost = last_stat(&self.out, "ringbuf_full").unwrap_or(0);
        let _ = fs::remove_file(&self.out);
        Ok((status.is_some_and(|s| s.success()), lost))
    }
}

/// `ntlm_message` records in an NDJSON file.
pub fn count_messages(path: &Path) -> u64 {
    use std::io::BufRead as _;
    let Ok(f) = fs::File::open(path) else {
        return 0;
    };
    std::io::BufReader::new(f)
        .lines()
        .map_while(Result::ok)
        .filter(|l| l.contains("\"ntlm_message\""))
        .count() as u64
}

/// A counter of the last `tracker_stats` record in an NDJSON file (searched anywhere in
/// the record, so it does not depend on the record's nesting).
pub fn last_stat(path: &Path, counter: &str) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    let line = text.lines().rev().find(|l| l.contains("tracker_stats"))?;
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    find_key(&v, counter)
}

fn find_key(v: &serde_json::Value, key: &str) -> Option<u64> {
    match v {
        serde_json::Value::Object(m) => {
            if let Some(n) = m.get(key).and_then(|x| x.as_u64()) {
                return Some(n);
            }
            m.values().find_map(|x| find_key(x, key))
        }
        serde_json::Value::Array(a) => a.iter().find_map(|x| find_key(x, key)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_wrk_output() {
        let out = "Running 2s test @ http://198.18.0.1:80/\n  1 threads and 64 connections\n  \
                   Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency     2.10ms  \
                   1.00ms  20.00ms   90.00%\n    Req/Sec    15.00k     1.00k   17.00k    80.00%\n  \
                   30000 requests in 2.00s, 4.50MB read\n  Socket errors: connect 0, read 3, \
                   write 0, timeout 1\n  Non-2xx or 3xx responses: 2\nRequests/sec:  15000.50\n\
                   Transfer/sec:      2.25MB\n";
        let r = parse_wrk(out).unwrap();
        assert_eq!(r.requests_per_s, 15000.5);
        assert_eq!(r.requests, 30000);
        assert_eq!(r.errors, 4);
        assert_eq!(r.non_2xx, 2);
        assert!(parse_wrk("nothing").is_err());
    }

    #[test]
    fn finds_stats_counters() {
        let v: serde_json::Value = serde_json::json!({"event": {"action": "tracker_stats"},
            "ntlm_affinity": {"kernel": {"ringbuf_full": 7}}});
        assert_eq!(find_key(&v, "ringbuf_full"), Some(7));
        assert_eq!(find_key(&v, "nope"), None);
    }
}
