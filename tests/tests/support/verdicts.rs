//! Lab scenarios shared by `scenarios.rs` and `kerberos.rs`: bringing a lab up (or skipping),
//! running the lab's clients, and comparing the daemon's alerts with the backends' ground
//! truth (precision and recall of 100 %).

use std::sync::{Mutex, MutexGuard};

use nta_lab::{Lab, LabConfig, TruthRecord, client_addr};
use serde_json::Value;

use super::tracker::{Tracker, tracker_bin};

/// One lab per machine: the tests of a file run one after the other.
static SERIAL: Mutex<()> = Mutex::new(());

/// Holds the lab for the caller's test.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The lab, up, or `None` when this machine cannot run it (skip; a failure under CI=true).
pub fn lab_up(test: &str, cfg: LabConfig) -> Option<Lab> {
    if !super::privileged(test) {
        return None;
    }
    match nta_lab::check_prerequisites(&cfg) {
        Ok(()) => {}
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{test}: lab prerequisites missing under CI=true (this must not skip): {e:#}")
        }
        Err(e) => {
            eprintln!("{test}: SKIPPED (set CI=true to make this a failure): {e:#}");
            return None;
        }
    }
    Some(Lab::up(cfg).unwrap().down_on_drop(true))
}

/// Options every tracker of the lab suites gets (live and replay).
pub const COMMON: [&str; 2] = ["--client-port-header", "X-Client-Port"];

/// `ntlm-affinity run` in the balancer namespace on `nta-be` + `nta-fe`, with the
/// client-port header and `extra`.
pub fn start_lab_tracker(lab: &Lab, extra: &[&str]) -> Tracker {
    start_tracker_with(lab, &[&COMMON[..], extra].concat())
}

/// As [`start_lab_tracker`], without the client-port header: X-Forwarded-For alone names a
/// client, so the kernel checks requests on authenticated connections itself (docs/design.md,
/// "The identity check").
pub fn start_lab_tracker_kernel_identity(lab: &Lab, extra: &[&str]) -> Tracker {
    start_tracker_with(lab, extra)
}

fn start_tracker_with(lab: &Lab, args: &[&str]) -> Tracker {
    let mut cmd = lab.lb_command(tracker_bin());
    cmd.args(lab.topology().tracker_args())
        .args(["--stats-interval", "0"])
        .args(args);
    Tracker::start(cmd)
}

/// A kernel counter from the last `tracker_stats` record.
pub fn kernel_stat(events: &[Value], name: &str) -> u64 {
    events
        .iter()
        .rev()
        .find(|e| e["event"]["action"] == "tracker_stats")
        .and_then(|e| e["ntlm_affinity"]["kernel"][name].as_u64())
        .unwrap_or_else(|| panic!("no tracker_stats record with kernel.{name}"))
}

pub fn alerts(events: &[Value]) -> Vec<&Value> {
    events
        .iter()
        .filter(|e| e["event"]["kind"] == "alert")
        .collect()
}

pub fn endpoint(v: &Value) -> String {
    format!("{}:{}", v["ip"].as_str().unwrap_or("?"), v["port"])
}

/// What identifies an alert against the ground truth: class, the backend-leg connection it is
/// about (balancer `ip:port`), and the server address.
pub type Key = (String, String, String);

pub fn alert_key(a: &Value) -> Key {
    (
        a["event"]["action"].as_str().unwrap_or("?").to_string(),
        endpoint(&a["source"]),
        a["destination"]["ip"].as_str().unwrap_or("?").to_string(),
    )
}

/// The address of backend `server` (`web1`).
pub fn backend_ip(lab: &Lab, server: &str) -> String {
    lab.topology()
        .backend(server)
        .map(|b| b.addr.to_string())
        .unwrap_or_else(|| panic!("unknown backend {server}"))
}

/// The alerts the ground truth calls for: every split Type-3 (`server_split` /
/// `connection_split`), every request served on a connection authenticated for another client
/// (`auth_context_reuse`), every challenge no Type-3 ever answered (`abandoned_challenge`).
pub fn expected_alerts(lab: &Lab, truth: &[TruthRecord]) -> Vec<Key> {
    let answered: std::collections::HashSet<(String, u64)> = truth
        .iter()
        .filter(|r| r.ntlm_type == Some(3))
        .filter_map(|r| Some((r.challenge_server.clone()?.to_uppercase(), r.challenge_ts?)))
        .collect();
    let mut want = Vec::new();
    for r in truth {
        let class = if r.is_split() {
            match r.split.as_deref() {
                Some("server") => "server_split",
                _ => "connection_split",
            }
        } else if r.is_foreign_reuse() {
            "auth_context_reuse"
        } else if r.outcome == "challenge"
            && r.ntlm_type == Some(1)
            && !answered.contains(&(
                r.challenge_server
                    .clone()
                    .unwrap_or_default()
                    .to_uppercase(),
                r.challenge_ts.unwrap_or_default(),
            ))
        {
            "abandoned_challenge"
        } else {
            continue;
        };
        want.push((
            class.to_string(),
            r.conn.clone(),
            backend_ip(lab, &r.server),
        ));
    }
    want.sort();
    want
}

/// Precision and recall of 100 %: the tracker's alerts and the truth's, as multisets.
pub fn assert_exact(scenario: &str, lab: &Lab, truth: &[TruthRecord], events: &[Value]) {
    let mut want = expected_alerts(lab, truth);
    want.sort();
    let got_alerts = alerts(events);
    let mut got: Vec<Key> = got_alerts.iter().map(|a| alert_key(a)).collect();
    got.sort();
    if want != got {
        let mut missing = want.clone();
        for g in &got {
            if let Some(i) = missing.iter().position(|w| w == g) {
                missing.remove(i);
            }
        }
        let mut extra = got.clone();
        for w in &want {
            if let Some(i) = extra.iter().position(|g| g == w) {
                extra.remove(i);
            }
        }
        let extra_full: Vec<String> = got_alerts
            .iter()
            .filter(|a| extra.contains(&alert_key(a)))
            .take(5)
            .map(|a| a.to_string())
            .collect();
        let truth_of_missing: Vec<String> = truth
            .iter()
            .filter(|r| missing.iter().any(|m| m.1 == r.conn))
            .take(10)
            .map(|r| format!("{r:?}"))
            .collect();
        panic!(
            "{scenario}: tracker alerts differ from the ground truth \
             ({} expected, {} reported)\nmissed (recall): {missing:#?}\nunexpected (precision): \
             {extra:#?}\nunexpected alerts: {extra_full:#?}\ntruth of the missed connections: \
             {truth_of_missing:#?}",
            want.len(),
            got.len()
        );
    }
}

/// Alerts of class `class`.
pub fn count(events: &[Value], class: &str) -> usize {
    alerts(events)
        .iter()
        .filter(|a| a["event"]["action"] == class)
        .count()
}

/// Events (alerts or records) whose `event.action` is `action`.
pub fn actions(events: &[Value], action: &str) -> usize {
    events
        .iter()
        .filter(|e| e["event"]["action"] == action)
        .count()
}

/// `clients.py KIND --port PORT ARGS...`: its JSON lines.
pub fn clients(lab: &Lab, kind: &str, port: u16, args: &[&str]) -> Vec<Value> {
    lab.run_clients(kind, port, args)
        .unwrap_or_else(|e| panic!("clients.py {kind}: {e:#}"))
}

/// HTTP statuses of the client's `leg` requests (there must be some).
pub fn statuses(lines: &[Value], leg: &str) -> Vec<u64> {
    let v: Vec<u64> = lines
        .iter()
        .filter(|l| l["leg"] == leg)
        .map(|l| l["status"].as_u64().unwrap_or(0))
        .collect();
    assert!(!v.is_empty(), "no {leg} request in {lines:?}");
    v
}

/// `n` client source addresses from the `first`-th, comma-separated (`--sources`).
pub fn sources(n: usize, first: usize) -> String {
    (first..first + n)
        .map(|i| client_addr(i).to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// dumpcap reads the kernel's packet ring in blocks that are handed over on a timeout and does
/// not drain a partly filled block on SIGTERM: give it that timeout before stopping it, or the
/// last packets are missing from the file.
pub fn drain_capture() {
    std::thread::sleep(std::time::Duration::from_millis(1500));
}

/// `ntlm-affinity replay FILE` with the lab's backend and frontend: the events, and stderr
/// (the summary).
pub fn replay(lab: &Lab, file: &std::path::Path, extra: &[&str]) -> (Vec<Value>, String) {
    let t = lab.topology();
    let mut cmd = std::process::Command::new(tracker_bin());
    cmd.arg("replay")
        .arg(file)
        .args([
            "--backend",
            &format!("{}:{}", t.backend_cidr, t.backend_port),
            "--no-progress",
        ])
        .args(COMMON)
        .args(extra);
    for p in t.frontend_ports() {
        cmd.args(["--frontend-port", &p.to_string()]);
    }
    let out = cmd.stdin(std::process::Stdio::null()).output().unwrap();
    assert!(
        out.status.success(),
        "replay {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let events = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_kernel_and_model_agree(lab, file);
    (events, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Every frame of a lab capture through the loaded programs and replay's kernel model
/// ([`super::differential`]): whatever replay concludes from this capture rests on records the
/// kernel would have emitted, byte for byte.
pub fn assert_kernel_and_model_agree(lab: &Lab, file: &std::path::Path) {
    let t = lab.topology();
    let cfg = tracker_user::loader::TrackerConfig {
        backends: vec![
            format!("{}:{}", t.backend_cidr, t.backend_port)
                .parse()
                .unwrap(),
        ],
        frontend_ports: t.frontend_ports(),
        ..tracker_user::loader::TrackerConfig::default()
    };
    let mut d = super::differential::Differential::new(&cfg);
    if let Err(e) = d.capture(file) {
        panic!("kernel and model differ: {e}");
    }
    assert!(d.frames > 0, "{}: no frame compared", file.display());
    println!(
        "differential: {}: {} frames equal ({} skipped), {} records",
        file.display(),
        d.frames,
        d.skipped,
        d.records
    );
}
