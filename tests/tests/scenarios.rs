//! The field scenarios as end-to-end tests: real HAProxy / NGINX in the lab, real
//! clients, the `ntlm-affinity` daemon attached in the balancer namespace to its backend and
//! frontend interfaces, and its alerts compared one by one with the backends' ground truth
//! (precision and recall of 100 %, with the cause each scenario expects). Every scenario also
//! captures the backend leg and requires tshark to agree with the tracker on the NTLM message
//! types per backend connection; scenarios 2 and 7 replay the capture of both legs through
//! `ntlm-affinity replay` and require the same verdicts as live. The fault tests kill
//! a backend mid-handshake and start the tracker after the traffic began.
//!
//! Needs root, iproute2, haproxy, nginx, curl, dumpcap/tshark/mergecap and Python 3 with
//! pyspnego. Without them the tests skip with a message, except under `CI=true`, where they
//! fail.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nta_lab::{
    Balancer, Frontend, LAB_PASSWORD, LB_BACKEND_IF, LB_FRONTEND_IF, Lab, LabConfig, TruthRecord,
    client_addr,
};
use serde_json::Value;
use support::prometheus::{METRICS_ADDR, Prometheus, assert_promtool_clean, scrape};
use support::tmux::Tmux;
use support::tracker::Tracker;
use support::verdicts::{
    Key, actions, alert_key, alerts, assert_exact, clients, count, drain_capture, endpoint,
    expected_alerts, lab_up, replay, serial, sources, start_lab_tracker, statuses,
};

/// `ntlm-affinity run` in the balancer namespace on `nta-be` + `nta-fe`, with `--messages`
/// (the tshark cross-check).
fn start_tracker(lab: &Lab, extra: &[&str]) -> Tracker {
    start_lab_tracker(lab, &[&["--messages"], extra].concat())
}

/// Every alert of `class` has one of `causes`.
fn assert_causes(scenario: &str, events: &[Value], class: &str, causes: &[&str]) {
    for a in alerts(events) {
        if a["event"]["action"] == class {
            let cause = a["ntlm_affinity"]["cause"].as_str().unwrap_or("");
            assert!(
                causes.contains(&cause),
                "{scenario}: {class} with cause {cause:?}, expected one of {causes:?}: {a}"
            );
        }
    }
}

/// No alert ever concerns a Kerberos token; the Kerberos connections of the truth drew none.
///
/// A connection is `(server, conn_id)` of the truth, spanning its first to last record: the
/// balancer reuses ephemeral ports, so an alert on the same `ip:port` at another time is about
/// another connection.
fn assert_kerberos_clean(lab: &Lab, truth: &[TruthRecord], events: &[Value]) {
    for a in alerts(events) {
        assert_ne!(
            a["ntlm_affinity"]["auth_scheme"], "kerberos",
            "a Kerberos Negotiate token was flagged: {a}"
        );
    }
    /// Balancer `ip:port`, backend ip, first and last record, any of them Kerberos.
    type Conn = (String, String, i64, i64, bool);
    let mut conns: std::collections::HashMap<(&str, u64), Conn> = std::collections::HashMap::new();
    for r in truth {
        let at = utc_micros(&r.ts).unwrap_or_else(|| panic!("truth timestamp {:?}", r.ts));
        let krb = r.mech.as_deref() == Some("kerberos");
        let c = conns.entry((&r.server, r.conn_id)).or_insert_with(|| {
            let addr = lab.topology().backend(&r.server).unwrap().addr.to_string();
            (r.conn.clone(), addr, at, at, false)
        });
        c.2 = c.2.min(at);
        c.3 = c.3.max(at);
        c.4 |= krb;
    }
    // The alert's time is the balancer's view of the deciding message; the truth's is the
    // backend's: allow for the response leaving after the record is written.
    const SLACK_US: i64 = 20_000;
    for a in alerts(events) {
        let (class, conn, server) = alert_key(a);
        if class == "abandoned_challenge" {
            continue;
        }
        let at = a["@timestamp"]
            .as_str()
            .and_then(utc_micros)
            .unwrap_or_else(|| panic!("alert without @timestamp: {a}"));
        let on_kerberos = conns.values().any(|(c, s, first, last, krb)| {
            *krb && *c == conn && *s == server && (first - SLACK_US..=last + SLACK_US).contains(&at)
        });
        assert!(!on_kerberos, "an alert on a Kerberos connection: {a}");
    }
}

/// Microseconds since the epoch of an RFC 3339 UTC time `YYYY-MM-DDTHH:MM:SS[.ffffff]Z`.
fn utc_micros(ts: &str) -> Option<i64> {
    let (date, time) = ts.strip_suffix('Z')?.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    let us: i64 = format!("{frac:0<6}").get(..6)?.parse().ok()?;
    // Days from the civil date (H. Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + day - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    Some(((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1_000_000) + us)
}

#[test]
fn utc_micros_reads_truth_and_event_times() {
    assert_eq!(utc_micros("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(
        utc_micros("2023-11-14T22:13:20.003000Z"),
        Some(1_700_000_000_003_000)
    );
    assert_eq!(
        utc_micros("2024-03-01T00:00:00.5Z"),
        Some(1_709_251_200_500_000)
    );
    assert_eq!(utc_micros("2024-03-01 00:00:00Z"), None);
}

/// Captures of both balancer legs while the daemon runs, merged into one file for replay.
struct Captures {
    be: nta_lab::Capture,
    fe: nta_lab::Capture,
}

impl Captures {
    fn start(lab: &Lab, name: &str) -> Captures {
        Captures {
            be: lab
                .start_capture(LB_BACKEND_IF, &format!("{name}-be"))
                .unwrap(),
            fe: lab
                .start_capture(LB_FRONTEND_IF, &format!("{name}-fe"))
                .unwrap(),
        }
    }

    /// Stop both; returns (backend capture, merged capture).
    fn stop(self, lab: &Lab, name: &str) -> (PathBuf, PathBuf) {
        drain_capture();
        let be = self.be.stop().unwrap();
        let fe = self.fe.stop().unwrap();
        let merged = lab.state_dir().join(format!("{name}-merged.pcapng"));
        let out = Command::new("mergecap")
            .arg("-w")
            .arg(&merged)
            .arg(&be)
            .arg(&fe)
            .output()
            .expect("mergecap (wireshark-common)");
        assert!(
            out.status.success(),
            "mergecap: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        (be, merged)
    }
}

/// A capture of the balancer's backend leg for the tshark cross-check of a scenario.
struct BeCapture(nta_lab::Capture);

impl BeCapture {
    /// Start capturing `nta-be` (before the tracker, so that both see the same traffic).
    fn start(lab: &Lab, name: &str) -> BeCapture {
        BeCapture(
            lab.start_capture(LB_BACKEND_IF, &format!("{name}-be"))
                .unwrap(),
        )
    }

    /// Drain, stop, and require tshark to agree with the tracker's `--messages` events.
    fn check(self, scenario: &str, lab: &Lab, events: &[Value]) {
        drain_capture();
        let be = self.0.stop().unwrap();
        assert_tshark_agrees(scenario, lab, events, &be);
    }
}

/// tshark on the backend-leg capture and the tracker agree on the NTLM message types of every
/// backend connection, in order.
fn assert_tshark_agrees(scenario: &str, lab: &Lab, events: &[Value], be: &Path) {
    let net = backend_net(lab);
    let mine = tracker_types(events, &net);
    let theirs = tshark_types(be, &net);
    assert!(
        !theirs.is_empty(),
        "{scenario}: tshark saw no NTLMSSP in {}",
        be.display()
    );
    if mine != theirs {
        let diff: Vec<String> = mine
            .keys()
            .chain(theirs.keys())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .filter(|k| mine.get(*k) != theirs.get(*k))
            .take(10)
            .map(|k| format!("{k}: tracker {:?} tshark {:?}", mine.get(k), theirs.get(k)))
            .collect();
        panic!(
            "{scenario}: NTLM message types per backend connection, tracker vs tshark \
             ({} vs {} connections); first differences:\n{}",
            mine.len(),
            theirs.len(),
            diff.join("\n")
        );
    }
}

/// A verdict's identity for live-vs-replay: class, cause, both connections (flows).
fn verdict_sig(a: &Value) -> String {
    let na = &a["ntlm_affinity"];
    format!(
        "{} cause={} leg={} challenge_leg={} request_leg={} src={} dst={}",
        a["event"]["action"].as_str().unwrap_or("?"),
        na["cause"].as_str().unwrap_or("-"),
        na["authenticate_leg"]["flow"].as_str().unwrap_or("-"),
        na["challenge_leg"]["flow"].as_str().unwrap_or("-"),
        na["request_leg"]["flow"].as_str().unwrap_or("-"),
        endpoint(&a["source"]),
        endpoint(&a["destination"]),
    )
}

fn assert_replay_matches(scenario: &str, live: &[Value], replayed: &[Value]) {
    let mut l: Vec<String> = alerts(live).iter().map(|a| verdict_sig(a)).collect();
    let mut r: Vec<String> = alerts(replayed).iter().map(|a| verdict_sig(a)).collect();
    l.sort();
    r.sort();
    assert!(!l.is_empty(), "{scenario}: no live verdicts to compare");
    assert_eq!(
        l, r,
        "{scenario}: replaying the capture must give the live verdicts"
    );
}

fn msg_type_num(t: &str) -> u32 {
    match t {
        "negotiate" => 1,
        "challenge" => 2,
        "authenticate" => 3,
        other => panic!("message type {other:?}"),
    }
}

/// NTLM message types per backend connection (`balancer ip:port`→`server ip:port`), in order.
type PerConn = BTreeMap<String, Vec<u32>>;

fn conn_key(a: (&str, &str), b: (&str, &str), server_net: &str) -> String {
    // The server side is the one in the backend network.
    if a.0.starts_with(server_net) {
        format!("{}:{}<-{}:{}", a.0, a.1, b.0, b.1)
    } else {
        format!("{}:{}<-{}:{}", b.0, b.1, a.0, a.1)
    }
}

fn tracker_types(events: &[Value], server_net: &str) -> PerConn {
    let mut m = PerConn::new();
    // An undecodable token is still typed by its base64 prefix, as tshark types it.
    for e in events.iter().filter(|e| {
        e["event"]["action"] == "ntlm_message" || e["event"]["action"] == "undecodable_token"
    }) {
        let Some(t) = e["ntlm"]["message_type"].as_str() else {
            continue;
        };
        let (s, d) = (&e["source"], &e["destination"]);
        let (sip, dip) = (s["ip"].as_str().unwrap(), d["ip"].as_str().unwrap());
        if !sip.starts_with(server_net) && !dip.starts_with(server_net) {
            continue; // frontend leg
        }
        let k = conn_key(
            (sip, &s["port"].to_string()),
            (dip, &d["port"].to_string()),
            server_net,
        );
        m.entry(k).or_default().push(msg_type_num(t));
    }
    m
}

fn tshark_types(pcap: &Path, server_net: &str) -> PerConn {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .args([
            "-Y",
            "ntlmssp.messagetype",
            "-T",
            "fields",
            "-e",
            "ip.src",
            "-e",
            "tcp.srcport",
            "-e",
            "ip.dst",
            "-e",
            "tcp.dstport",
            "-e",
            "ntlmssp.messagetype",
        ])
        .output()
        .expect("tshark");
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut m = PerConn::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() < 5 {
            continue;
        }
        let k = conn_key((f[0], f[1]), (f[2], f[3]), server_net);
        for t in f[4].split(',') {
            let n = u32::from_str_radix(t.trim_start_matches("0x"), 16).unwrap();
            m.entry(k.clone()).or_default().push(n);
        }
    }
    m
}

fn backend_net(lab: &Lab) -> String {
    // 198.19.0.0/24 -> "198.19.0."
    let cidr = &lab.topology().backend_cidr;
    let ip: Ipv4Addr = cidr.split('/').next().unwrap().parse().unwrap();
    let o = ip.octets();
    format!("{}.{}.{}.", o[0], o[1], o[2])
}

fn splits(truth: &[TruthRecord]) -> usize {
    truth.iter().filter(|r| r.is_split()).count()
}

// ---------------------------------------------------------------------------------------------

/// 1. HAProxy default keep-alive, roundrobin, curl --ntlm keep-alive clients: every
///    handshake 200, zero alerts; a Kerberos-looking Negotiate token beside them is not flagged.
#[test]
fn scenario_1_haproxy_keepalive_is_clean() {
    let _g = serial();
    let cfg = LabConfig::single(Balancer::HaproxyKeepAlive).with_backends(2);
    let Some(lab) = lab_up("scenario_1", cfg) else {
        return;
    };
    let cap = BeCapture::start(&lab, "s1");
    let tracker = start_tracker(&lab, &[]);
    for i in 0..6 {
        let run = lab
            .curl_ntlm(80, client_addr(i), "LAB\\alice", LAB_PASSWORD, 2)
            .unwrap();
        assert_eq!(run.statuses, vec![200, 200], "curl: {}", run.stderr);
    }
    let ka = clients(
        &lab,
        "keepalive",
        80,
        &["--count", "10", "--sources", &sources(4, 4), "--then", "1"],
    );
    assert!(statuses(&ka, "type3").iter().all(|s| *s == 200), "{ka:?}");
    let neg = clients(
        &lab,
        "keepalive",
        80,
        &["--count", "4", "--scheme", "Negotiate", "--wrap", "spnego"],
    );
    assert!(statuses(&neg, "type3").iter().all(|s| *s == 200), "{neg:?}");
    clients(&lab, "kerberos", 80, &["--count", "3"]);
    let events = tracker.stop();
    let truth = lab.truth().unwrap();
    let ok = truth.iter().filter(|r| r.outcome == "success").count();
    assert_eq!(ok, 6 + 10 + 4, "every handshake succeeded: {truth:#?}");
    assert!(
        truth
            .iter()
            .all(|r| r.outcome != "failure" || r.mech.as_deref() == Some("kerberos"))
    );
    assert_exact("scenario 1", &lab, &truth, &events);
    assert_eq!(alerts(&events).len(), 0, "zero alerts");
    assert_kerberos_clean(&lab, &truth, &events);
    cap.check("scenario 1", &lab, &events);
    lab.shutdown().unwrap();
}

/// 2. HAProxy `option http-server-close`, roundrobin: every Type-3 lands on the other server
///    (`server_split`, cause `balancer_reroute`); the live verdicts equal the replayed capture's,
///    and tshark agrees on the NTLM message types per backend connection.
#[test]
fn scenario_2_haproxy_server_close_server_split() {
    let _g = serial();
    let cfg = LabConfig::single(Balancer::HaproxyServerClose).with_backends(2);
    let Some(lab) = lab_up("scenario_2", cfg) else {
        return;
    };
    let caps = Captures::start(&lab, "s2");
    let control = lab.state_dir().join("control.sock");
    let tracker = start_tracker(
        &lab,
        &[
            "--metrics",
            METRICS_ADDR,
            "--control",
            control.to_str().unwrap(),
        ],
    );
    for i in 0..4 {
        let run = lab
            .curl_ntlm(80, client_addr(i), "LAB\\bob", LAB_PASSWORD, 1)
            .unwrap();
        assert_eq!(run.statuses, vec![401], "curl: {}", run.stderr);
    }
    let ka = clients(
        &lab,
        "keepalive",
        80,
        &["--count", "6", "--sources", &sources(3, 4)],
    );
    assert!(statuses(&ka, "type3").iter().all(|s| *s == 401), "{ka:?}");
    let truth = lab.truth().unwrap();
    assert_eq!(splits(&truth), 10, "{truth:#?}");
    // A real Prometheus scrapes the running daemon: the target is up, and the alert
    // counter is the backends' ground truth.
    let prom = Prometheus::start(&lab);
    prom.wait_for(&lab, "up{job=\"ntlm-affinity\"}", &[1.0]);
    let split = splits(&truth) as f64;
    prom.wait_for(
        &lab,
        "ntlm_affinity_alerts_total{class=\"server_split\",action=\"alert\"}",
        &[split],
    );
    prom.wait_for(&lab, "sum(ntlm_affinity_alerts_total)", &[split]);
    prom.wait_for(
        &lab,
        "ntlm_affinity_alerts_by_cause_total{class=\"server_split\",cause=\"balancer_reroute\"}",
        &[split],
    );
    prom.wait_for(
        &lab,
        "sum(ntlm_affinity_handshakes_total{scheme=\"ntlm\",outcome=\"success\"})",
        &[0.0],
    );
    // The map census (counted exactly in the kernel tests) reaches Prometheus for both maps.
    prom.wait_for(&lab, "count(ntlm_affinity_map_entries)", &[2.0]);
    assert_promtool_clean(&scrape(&lab));
    drop(prom);
    live_view_shows(&control, splits(&truth));
    let events = tracker.stop();
    let (be, merged) = caps.stop(&lab, "s2");
    assert!(truth.iter().all(|r| r.outcome != "success"));
    assert_exact("scenario 2", &lab, &truth, &events);
    assert_eq!(count(&events, "server_split"), 10);
    assert_causes("scenario 2", &events, "server_split", &["balancer_reroute"]);

    let replayed = replay(&lab, &merged, &[]).0;
    assert_replay_matches("scenario 2", &events, &replayed);

    assert_tshark_agrees("scenario 2", &lab, &events, &be);
    lab.shutdown().unwrap();
}

/// `ntlm-affinity top` on the running daemon, in a real terminal (tmux): the violations
/// table has the ground truth's count, the newest violation drills down to its evidence and
/// both legs, 80×24 keeps it usable, and `q` restores the terminal.
fn live_view_shows(control: &Path, server_splits: usize) {
    let top = Tmux::start(
        &format!(
            "{} top --control {}",
            support::tracker::tracker_bin().display(),
            control.display()
        ),
        140,
        40,
    );
    let n = server_splits.to_string();
    let row = |s: &str| {
        s.lines().any(|l| {
            l.contains("server_split")
                && l.contains("balancer_reroute")
                && l.split_whitespace().any(|w| w == n)
        })
    };
    let latest = format!("latest violations ({n}");
    let screen = top.wait("the ground truth's server_split count", |s| {
        row(s) && s.contains(&latest) && s.contains("backends")
    });
    eprintln!("top at 140x40:\n{screen}");
    top.keys(&["Enter"]);
    let screen = top.wait("the drill-down", |s| {
        s.contains("evidence:") && s.contains("authenticate leg")
    });
    eprintln!("top, one violation opened:\n{screen}");
    top.keys(&["Escape"]);
    top.resize(80, 24);
    let screen = top.wait("the 80x24 layout", |s| {
        row(s) && s.contains("ntlm-affinity") && s.contains("latest violations")
    });
    eprintln!("top at 80x24:\n{screen}");
    top.keys(&["q"]);
    let s = top.wait("top's exit", |s| s.contains("EXITED 0"));
    assert!(
        !s.contains("latest violations"),
        "the terminal was not restored:\n{s}"
    );
}

/// 3. A client that opens a new connection for every leg: without persistence
///    `server_split` (cause `client_reconnect`); with `stick on src` `connection_split`.
#[test]
fn scenario_3_reconnecting_client() {
    let _g = serial();
    let cfg = LabConfig::default().with_backends(2).with_frontends(vec![
        Frontend::new(80, Balancer::HaproxyKeepAlive),
        Frontend::new(81, Balancer::HaproxyStickSrc),
    ]);
    let Some(lab) = lab_up("scenario_3", cfg) else {
        return;
    };
    let cap = BeCapture::start(&lab, "s3");
    let tracker = start_tracker(&lab, &[]);
    let a = clients(
        &lab,
        "reconnect",
        80,
        &["--count", "6", "--sources", &sources(3, 0)],
    );
    assert!(statuses(&a, "type3").iter().all(|s| *s == 401), "{a:?}");
    let events_a_truth = lab.truth().unwrap();
    let b = clients(
        &lab,
        "reconnect",
        81,
        &["--count", "6", "--sources", &sources(3, 3)],
    );
    assert!(statuses(&b, "type3").iter().all(|s| *s == 401), "{b:?}");
    let events = tracker.stop();
    let truth = lab.truth().unwrap();
    assert_eq!(splits(&truth), 12, "{truth:#?}");
    // Roundrobin over two servers with a new connection per leg: every Type-3 elsewhere.
    assert!(
        events_a_truth
            .iter()
            .filter(|r| r.is_split())
            .all(|r| r.split.as_deref() == Some("server"))
    );
    assert_exact("scenario 3", &lab, &truth, &events);
    assert_eq!(count(&events, "server_split"), 6);
    assert_eq!(count(&events, "connection_split"), 6);
    assert_causes("scenario 3", &events, "server_split", &["client_reconnect"]);
    assert_causes(
        "scenario 3",
        &events,
        "connection_split",
        &["client_reconnect"],
    );
    cap.check("scenario 3", &lab, &events);
    lab.shutdown().unwrap();
}

/// 4. HTTP/1.0 client with `Connection: close`: a split with cause
///    `connection_closed`.
#[test]
fn scenario_4_http10_connection_close() {
    let _g = serial();
    let cfg = LabConfig::single(Balancer::HaproxyKeepAlive).with_backends(2);
    let Some(lab) = lab_up("scenario_4", cfg) else {
        return;
    };
    let cap = BeCapture::start(&lab, "s4");
    let tracker = start_tracker(&lab, &[]);
    let r = clients(
        &lab,
        "http10",
        80,
        &["--count", "8", "--sources", &sources(4, 0)],
    );
    assert!(statuses(&r, "type3").iter().all(|s| *s == 401), "{r:?}");
    let events = tracker.stop();
    let truth = lab.truth().unwrap();
    assert_eq!(splits(&truth), 8, "{truth:#?}");
    assert_exact("scenario 4", &lab, &truth, &events);
    assert_causes(
        "scenario 4",
        &events,
        "server_split",
        &["connection_closed"],
    );
    assert_causes(
        "scenario 4",
        &events,
        "connection_split",
        &["connection_closed"],
    );
    cap.check("scenario 4", &lab, &events);
    lab.shutdown().unwrap();
}

/// 5. A client that stops after the challenge: `abandoned_challenge` (the short `--window`
///    makes it fire while the daemon runs), healthy clients beside it stay clean.
#[test]
fn scenario_5_abandoned_challenge() {
    let _g = serial();
    let cfg = LabConfig::single(Balancer::HaproxyKeepAlive).with_backends(2);
    let Some(lab) = lab_up("scenario_5", cfg) else {
        return;
    };
    let cap = BeCapture::start(&lab, "s5");
    let tracker = start_tracker(&lab, &["--window", "2"]);
    let ab = clients(
        &lab,
        "abandon",
        80,
        &[
            "--count",
            "4",
            "--sources",
            &sources(2, 0),
            "--parallel",
            "2",
        ],
    );
    assert_eq!(statuses(&ab, "type1"), vec![401; 4], "{ab:?}");
    let ka = clients(
        &lab,
        "keepalive",
        80,
        &["--count", "8", "--sources", &sources(4, 2)],
    );
    assert!(statuses(&ka, "type3").iter().all(|s| *s == 200), "{ka:?}");
    // Past the window: the daemon's own expiry reports them, not only the flush at exit.
    std::thread::sleep(std::time::Duration::from_secs(4));
    let events = tracker.stop();
    let truth = lab.truth().unwrap();
    assert_eq!(
        truth.iter().filter(|r| r.outcome == "success").count(),
        8,
        "{truth:#?}"
    );
    assert_exact("scenario 5", &lab, &truth, &events);
    assert_eq!(count(&events, "abandoned_challenge"), 4);
    assert_eq!(alerts(&events).len(), 4, "healthy clients stay clean");
    cap.check("scenario 5", &lab, &events);
    lab.shutdown().unwrap();
}

/// 6. NGINX upstream without keepalive: every Type-3 splits (`server_split` with two servers
///    round-robin).
#[test]
fn scenario_6_nginx_without_keepalive() {
    let _g = serial();
    let cfg = LabConfig::single(Balancer::Nginx).with_backends(2);
    let Some(lab) = lab_up("scenario_6", cfg) else {
        return;
    };
    let cap = BeCapture::start(&lab, "s6");
    let tracker = start_tracker(&lab, &[]);
    let ka = clients(
        &lab,
        "keepalive",
        80,
        &["--count", "8", "--sources", &sources(4, 0)],
    );
    assert!(statuses(&ka, "type3").iter().all(|s| *s == 401), "{ka:?}");
    let events = tracker.stop();
    let truth = lab.truth().unwrap();
    assert_eq!(splits(&truth), 8, "{truth:#?}");
    assert!(
        truth
            .iter()
            .filter(|r| r.is_split())
            .all(|r| r.split.as_deref() == Some("server"))
    );
    assert_exact("scenario 6", &lab, &truth, &events);
    assert_eq!(count(&events, "server_split"), 8);
    cap.check("scenario 6", &lab, &events);
    lab.shutdown().unwrap();
}

/// 7. NGINX upstream `keepalive` with one server: client A authenticates, client B's requests
///    without credentials ride A's pooled backend connection and are served as A:
///    `auth_context_reuse` for each of B's requests. Live equals replay.
#[test]
fn scenario_7_nginx_keepalive_auth_context_reuse() {
    let _g = serial();
    let cfg = LabConfig::single(Balancer::NginxKeepAlive).with_backends(1);
    let Some(lab) = lab_up("scenario_7", cfg) else {
        return;
    };
    let caps = Captures::start(&lab, "s7");
    let tracker = start_tracker(&lab, &[]);
    let a = clients(
        &lab,
        "keepalive",
        80,
        &[
            "--source",
            &client_addr(0).to_string(),
            "--user",
            "LAB\\alice",
        ],
    );
    assert_eq!(statuses(&a, "type3"), vec![200], "{a:?}");
    let b = clients(
        &lab,
        "anon",
        80,
        &["--source", &client_addr(1).to_string(), "--requests", "5"],
    );
    let events = tracker.stop();
    let (be, merged) = caps.stop(&lab, "s7");
    let truth = lab.truth().unwrap();
    let foreign: Vec<_> = truth.iter().filter(|r| r.is_foreign_reuse()).collect();
    assert_eq!(
        foreign.len(),
        5,
        "B served as A five times: {b:?}\n{truth:#?}"
    );
    assert!(
        foreign
            .iter()
            .all(|r| r.user.as_deref() == Some("LAB\\alice"))
    );
    assert_exact("scenario 7", &lab, &truth, &events);
    assert_eq!(count(&events, "auth_context_reuse"), 5);
    for a in alerts(&events) {
        assert_eq!(a["user"]["name"], "alice", "{a}");
        assert_eq!(
            a["client"]["ip"].as_str(),
            Some(client_addr(1).to_string().as_str()),
            "{a}"
        );
    }
    let replayed = replay(&lab, &merged, &[]).0;
    assert_replay_matches("scenario 7", &events, &replayed);
    assert_tshark_agrees("scenario 7", &lab, &events, &be);
    lab.shutdown().unwrap();
}

/// 8. Mixed load, concurrently: `http-server-close`, keep-alive, reconnecting, HTTP/1.0,
///    abandoning and Kerberos clients on several frontends, ≥ 1,000 handshakes: still exact.
#[test]
fn scenario_8_mixed_load_is_exact() {
    let _g = serial();
    let cfg = LabConfig::default()
        .with_backends(2)
        .with_client_addrs(16)
        .with_frontends(vec![
            Frontend::new(80, Balancer::HaproxyKeepAlive),
            Frontend::new(81, Balancer::HaproxyServerClose),
            Frontend::new(82, Balancer::HaproxyStickSrc),
        ]);
    let Some(lab) = lab_up("scenario_8", cfg) else {
        return;
    };
    let cap = BeCapture::start(&lab, "s8");
    let tracker = start_tracker(&lab, &[]);
    let jobs: Vec<(&str, u16, &str, usize)> = vec![
        ("keepalive", 80, "350", 0),
        ("keepalive", 81, "250", 4),
        ("reconnect", 80, "150", 8),
        ("reconnect", 82, "100", 10),
        ("http10", 80, "150", 12),
        ("abandon", 80, "60", 14),
        ("kerberos", 80, "40", 15),
    ];
    let children: Vec<_> = jobs
        .iter()
        .map(|(kind, port, n, first)| {
            let mut c = lab.clients_py(kind, *port);
            c.args([
                "--count",
                n,
                "--parallel",
                "2",
                "--sources",
                &sources(2, *first),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
            (*kind, c.spawn().unwrap())
        })
        .collect();
    for (kind, c) in children {
        // Exit 2 = some run met a network error (it is in the truth either way); only a
        // client that produced nothing is a failure of the test itself.
        let out = c.wait_with_output().unwrap();
        assert!(
            !out.stdout.is_empty(),
            "clients.py {kind} ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let events = tracker.stop();
    let truth = lab.truth().unwrap();
    let type3 = truth.iter().filter(|r| r.ntlm_type == Some(3)).count();
    let challenges = truth.iter().filter(|r| r.outcome == "challenge").count();
    assert!(challenges >= 1000, "{challenges} handshakes (want ≥ 1,000)");
    assert!(type3 >= 900, "{type3} Type-3");
    assert_exact("scenario 8", &lab, &truth, &events);
    assert_kerberos_clean(&lab, &truth, &events);
    let mut by_class: HashMap<String, usize> = HashMap::new();
    for a in alerts(&events) {
        *by_class
            .entry(a["event"]["action"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    eprintln!("scenario 8: {challenges} handshakes, alerts {by_class:?}");
    cap.check("scenario 8", &lab, &events);
    lab.shutdown().unwrap();
}

// ---------------------------------------------------------------------------------------------
// Faults: a backend killed mid-handshake, the tracker started mid-handshake.

/// The ground truth once `done` holds (polled; the backends write a line before answering).
fn wait_truth(lab: &Lab, what: &str, done: impl Fn(&[TruthRecord]) -> bool) -> Vec<TruthRecord> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let truth = lab.truth().unwrap();
        if done(&truth) {
            return truth;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}: {truth:#?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// `clients.py keepalive` in the background, holding every Type-3 until `go` exists.
fn held_keepalive(lab: &Lab, go: &Path, count: usize, srcs: &str) -> std::process::Child {
    let _ = std::fs::remove_file(go);
    let n = count.to_string();
    let mut c = lab.clients_py("keepalive", 80);
    c.args(["--count", &n, "--parallel", &n, "--sources", srcs])
        .arg("--type3-wait")
        .arg(go)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c.spawn().unwrap()
}

fn client_lines(child: std::process::Child) -> Vec<Value> {
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// A backend killed (SIGKILL) right after it issued a challenge and before the client's
/// Type-3: the daemon stays attached and keeps reporting (handshakes after the backend is back),
/// reports what the ground truth implies for the lost challenge (`abandoned_challenge`, or a
/// split when the balancer carried the Type-3 to the other server), and exits cleanly on
/// SIGINT with its `tracker_stats` record.
#[test]
fn fault_backend_killed_mid_handshake() {
    let _g = serial();
    let cfg = LabConfig::single(Balancer::HaproxyKeepAlive).with_backends(2);
    let Some(lab) = lab_up("fault_backend_killed", cfg) else {
        return;
    };
    let cap = BeCapture::start(&lab, "fk");
    let tracker = start_tracker(&lab, &["--handshakes", "--window", "2"]);
    let go = lab.state_dir().join("fk.go");
    let held = held_keepalive(&lab, &go, 2, &sources(2, 0));
    let before = wait_truth(&lab, "two challenges", |t| {
        t.iter().filter(|r| r.outcome == "challenge").count() == 2
    });
    let victim = before
        .iter()
        .find(|r| r.outcome == "challenge")
        .unwrap()
        .clone();
    let web: usize = victim.server.trim_start_matches("web").parse().unwrap();
    lab.kill_backend(web).unwrap();
    std::fs::write(&go, b"go").unwrap();
    let lines = client_lines(held);
    // The backend comes back; the daemon, still attached, sees the next handshakes.
    lab.start_backend(web).unwrap();
    let after = clients(
        &lab,
        "keepalive",
        80,
        &["--count", "4", "--sources", &sources(2, 2)],
    );
    assert!(
        statuses(&after, "type3").iter().all(|s| *s == 200),
        "{after:?}"
    );
    // Past the window: the daemon's own expiry, not only the flush at exit.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let events = tracker.stop();
    let truth = lab.truth().unwrap();
    eprintln!(
        "fault: victim {} {}; held client: {lines:?}",
        victim.server, victim.conn
    );
    assert_exact("fault_backend_killed", &lab, &truth, &events);
    // The lost challenge is accounted for, exactly as the truth says.
    let victim_addr = lab
        .topology()
        .backend(&victim.server)
        .unwrap()
        .addr
        .to_string();
    let answered_elsewhere = truth
        .iter()
        .any(|r| r.ntlm_type == Some(3) && r.challenge_ts == victim.challenge_ts && r.is_split());
    let want_victim = if answered_elsewhere {
        count(&events, "server_split") + count(&events, "connection_split")
    } else {
        alerts(&events)
            .iter()
            .filter(|a| {
                a["event"]["action"] == "abandoned_challenge"
                    && alert_key(a)
                        == (
                            "abandoned_challenge".into(),
                            victim.conn.clone(),
                            victim_addr.clone(),
                        )
            })
            .count()
    };
    assert_eq!(
        want_victim,
        1,
        "the killed backend's challenge reported once: {:#?}",
        alerts(&events)
    );
    let ok = truth.iter().filter(|r| r.outcome == "success").count();
    assert!(ok >= 4, "{truth:#?}");
    assert_eq!(
        actions(&events, "ntlm_handshake"),
        truth
            .iter()
            .filter(|r| r.ntlm_type == Some(3) && !r.is_split())
            .count(),
        "every same-connection handshake reported"
    );
    assert_eq!(
        actions(&events, "tracker_stats"),
        1,
        "tracker_stats at exit"
    );
    cap.check("fault_backend_killed", &lab, &events);
    lab.shutdown().unwrap();
}

/// The daemon started after the traffic began: handshakes whose Type-1/Type-2 it could not
/// see end in a Type-3 whose challenge is known nowhere, which the engine reports as
/// `orphan_type3` (docs/design.md, "Correlation"), one per such Type-3 and
/// nothing else; handshakes that began after it attached stay clean.
#[test]
fn fault_tracker_started_mid_handshake() {
    let _g = serial();
    let cfg = LabConfig::single(Balancer::HaproxyKeepAlive).with_backends(2);
    let Some(lab) = lab_up("fault_tracker_late", cfg) else {
        return;
    };
    let go = lab.state_dir().join("fl.go");
    let held_srcs = sources(4, 0);
    let held = held_keepalive(&lab, &go, 4, &held_srcs);
    wait_truth(&lab, "four challenges", |t| {
        t.iter().filter(|r| r.outcome == "challenge").count() == 4
    });
    let cap = BeCapture::start(&lab, "fl");
    let tracker = start_tracker(&lab, &["--handshakes"]);
    let clean = clients(
        &lab,
        "keepalive",
        80,
        &["--count", "4", "--sources", &sources(4, 4)],
    );
    assert!(
        statuses(&clean, "type3").iter().all(|s| *s == 200),
        "{clean:?}"
    );
    std::fs::write(&go, b"go").unwrap();
    let lines = client_lines(held);
    assert_eq!(statuses(&lines, "type3"), vec![200; 4], "{lines:?}");
    let events = tracker.stop();
    let truth = lab.truth().unwrap();
    assert_eq!(
        truth.iter().filter(|r| r.outcome == "success").count(),
        8,
        "{truth:#?}"
    );
    let held_ips: Vec<&str> = held_srcs.split(',').collect();
    let mut want = expected_alerts(&lab, &truth);
    assert!(want.is_empty(), "the traffic itself is healthy: {want:?}");
    for r in truth
        .iter()
        .filter(|r| r.ntlm_type == Some(3) && held_ips.contains(&r.xff.as_deref().unwrap_or("")))
    {
        let addr = lab.topology().backend(&r.server).unwrap().addr.to_string();
        want.push(("orphan_type3".to_string(), r.conn.clone(), addr));
    }
    want.sort();
    let mut got: Vec<Key> = alerts(&events).iter().map(|a| alert_key(a)).collect();
    got.sort();
    assert_eq!(got, want, "alerts: {:#?}", alerts(&events));
    for a in alerts(&events) {
        // The 200 answering these Type-3s: the server→balancer direction, first seen at the
        // response, inherits NTLM from the direction that carried the Type-3.
        assert_eq!(a["event"]["outcome"], "success", "{a}");
        assert_eq!(a["user"]["name"], "alice", "{a}");
        assert_eq!(a["ntlm_affinity"]["cause"], "unknown", "{a}");
    }
    assert_eq!(
        actions(&events, "ntlm_handshake"),
        4,
        "the clean handshakes"
    );
    assert_eq!(actions(&events, "tracker_stats"), 1);
    cap.check("fault_tracker_late", &lab, &events);
    lab.shutdown().unwrap();
}
