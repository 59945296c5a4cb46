//! Kerberos through real balancers (the lab part): an MIT KDC (realm `LAB.TEST`) in its
//! own namespace, IIS-like backends accepting `HTTP/www.lab.test` with one shared keytab and
//! IIS's logon persistence (`Persistent-Auth`), real Kerberos clients (browser-like,
//! pre-emptive, `curl --negotiate`, a client falling back to NTLM inside SPNEGO) and anonymous
//! clients, through HAProxy and NGINX. Each scenario first states what the backends' own
//! ground truth shows (was an anonymous request served as another user?) and then requires the
//! `ntlm-affinity` daemon's verdicts to equal it exactly: one `auth_context_reuse` per request
//! served on a connection authenticated for another client, on that backend connection and
//! server, and nothing else.
//!
//! Scenarios (one lab each, about a minute in all):
//! 1 HAProxy default: no leak; the NTLM-in-SPNEGO fallback's handshakes are reported;
//! 1b HAProxy default with an anonymous folder: the leak HAProxy's default does not prevent;
//! 2 HAProxy `http-reuse always`; 3/4 NGINX upstream keepalive with one / two servers: leaks;
//! 5 NGINX without keepalive, 6 `Persistent-Auth: false`, 7 authPersistSingleRequest: none;
//! 7b (ignored) single-request with NTLM: a reproducer for the correlator.
//!
//! Run: `cargo build -p tracker-user && sudo CI=true NTA_TRACKER_BIN=target/debug/ntlm-affinity
//! cargo test -p nta-tests --test kerberos -- --test-threads=1` (`--include-ignored` for 7b).
//!
//! Needs root, iproute2, haproxy, nginx, curl, MIT Kerberos (krb5-kdc, krb5-admin-server,
//! krb5-user) and Python 3 with pyspnego[kerberos] (`cargo xtask setup`). Without them the
//! tests skip with a message, except under `CI=true`, where they fail.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;

use nta_lab::{
    Balancer, Frontend, KRB_REALM, KRB_SPN_HOST, LB_BACKEND_IF, Lab, LabConfig, PersistentAuth,
    TruthRecord, client_addr,
};
use serde_json::Value;
use support::tracker::Tracker;
use support::verdicts::{
    actions, alerts, assert_exact, backend_ip, clients, count, drain_capture, endpoint,
    kernel_stat, lab_up, replay, serial, sources, start_lab_tracker,
    start_lab_tracker_kernel_identity, statuses,
};

const PORT: u16 = 80;

/// A Kerberos lab with one frontend on port 80.
fn kerberos_lab(
    test: &str,
    balancer: Balancer,
    servers: &[usize],
    persistent: PersistentAuth,
) -> Option<Lab> {
    let cfg = LabConfig::default()
        .with_backends(servers.len().max(1))
        .with_client_addrs(16)
        .with_frontends(vec![Frontend::new(PORT, balancer).to(servers)])
        .with_kerberos()
        .with_persistent_auth(persistent);
    lab_up(test, cfg)
}

/// What the ground truth says, for the scenario's report and its assertions.
#[derive(Debug, Default)]
struct TruthSummary {
    /// Kerberos logons that succeeded, by `Persistent-Auth` value sent.
    kerberos_ok: BTreeMap<String, usize>,
    /// NTLM logons that succeeded (plain or inside SPNEGO).
    ntlm_ok: usize,
    /// Requests without credentials served by the persisted logon of the same client.
    own_reuse: usize,
    /// Requests without credentials served as another client's user (the leak).
    foreign_reuse: usize,
    /// Requests without credentials answered 401.
    anonymous_401: usize,
}

fn summarize(scenario: &str, truth: &[TruthRecord]) -> TruthSummary {
    let mut s = TruthSummary::default();
    for r in truth {
        match (r.outcome.as_str(), r.auth_scheme.as_deref()) {
            ("success", Some("kerberos")) => {
                *s.kerberos_ok
                    .entry(r.persistent_auth.clone().unwrap_or_default())
                    .or_default() += 1;
            }
            ("success", Some("ntlm")) => s.ntlm_ok += 1,
            ("reused_context", _) if r.is_foreign_reuse() => s.foreign_reuse += 1,
            ("reused_context", _) => s.own_reuse += 1,
            ("anonymous", _) => s.anonymous_401 += 1,
            _ => {}
        }
    }
    eprintln!("{scenario}: truth {s:?}");
    s
}

/// Every `auth_context_reuse` alert matches one foreign reuse of the truth: the backend
/// connection, the server, the client that was served (XFF), the client whose logon served it,
/// and the logon's mechanism.
fn assert_reuse_matches_truth(scenario: &str, lab: &Lab, truth: &[TruthRecord], events: &[Value]) {
    let mut want: Vec<[String; 5]> = truth
        .iter()
        .filter(|r| r.is_foreign_reuse())
        .map(|r| {
            [
                r.conn.clone(),
                backend_ip(lab, &r.server),
                r.xff.clone().unwrap_or_default(),
                r.auth_xff.clone().unwrap_or_default(),
                r.auth_scheme.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let reuse: Vec<&Value> = alerts(events)
        .into_iter()
        .filter(|a| a["event"]["action"] == "auth_context_reuse")
        .collect();
    let mut got: Vec<[String; 5]> = reuse
        .iter()
        .map(|a| {
            let na = &a["ntlm_affinity"];
            [
                endpoint(&a["source"]),
                a["destination"]["ip"].as_str().unwrap_or("?").to_string(),
                a["client"]["ip"].as_str().unwrap_or("?").to_string(),
                na["authenticated_client"]["forwarded_for"]
                    .as_str()
                    .unwrap_or("?")
                    .to_string(),
                na["auth_scheme"].as_str().unwrap_or("?").to_string(),
            ]
        })
        .collect();
    want.sort();
    got.sort();
    assert_eq!(
        got, want,
        "{scenario}: auth_context_reuse alerts [connection, server, client, authenticated client, \
         mechanism] vs the ground truth"
    );
    for a in &reuse {
        assert_eq!(a["event"]["outcome"], "success", "{scenario}: {a}");
        assert_eq!(a["http"]["response"]["status_code"], 200, "{scenario}: {a}");
        fields::check_reuse_alert(scenario, a);
    }
}

/// The Kerberos fields of the events: scheme, realm, service principal, and the
/// fallback of NTLM handshakes.
mod fields {
    use super::*;

    /// An `auth_context_reuse` on a Kerberos logon names the scheme, realm and service, and
    /// says why there is no user.
    pub fn check_reuse_alert(scenario: &str, a: &Value) {
        let na = &a["ntlm_affinity"];
        if na["auth_scheme"] != "kerberos" {
            assert_eq!(na["auth_scheme"], "ntlm", "{scenario}: {a}");
            return;
        }
        assert_eq!(a["kerberos"]["realm"], KRB_REALM, "{scenario}: {a}");
        assert_eq!(
            a["kerberos"]["service_principal"],
            format!("HTTP/{KRB_SPN_HOST}"),
            "{scenario}: {a}"
        );
        assert!(a["user"].is_null(), "{scenario}: {a}");
        assert!(
            na["user_note"]
                .as_str()
                .is_some_and(|n| n.contains("encrypted ticket")),
            "{scenario}: {a}"
        );
    }

    /// An NTLM handshake inside SPNEGO that pyspnego fell back to: `auth_scheme: ntlm`,
    /// SPNEGO without Kerberos in mechTypes.
    pub fn check_ntlm_fallback(scenario: &str, e: &Value) {
        let na = &e["ntlm_affinity"];
        assert_eq!(na["auth_scheme"], "ntlm", "{scenario}: {e}");
        assert_eq!(na["fallback"]["spnego"], true, "{scenario}: {e}");
        assert_eq!(na["fallback"]["kerberos_offered"], false, "{scenario}: {e}");
        assert_eq!(
            na["fallback"]["reason"], "kerberos_not_offered",
            "{scenario}: {e}"
        );
    }
}

/// tshark, on the capture of the balancer's backend leg, and the daemon agree on every
/// Kerberos AP-REQ (backend connection, `kerberos.realm`, `kerberos.SNameString`) and on the
/// SPNEGO negResult of every answer (`spnego.negResult`).
fn assert_tshark_agrees_on_kerberos(sc: &str, pcap: &std::path::Path, events: &[Value]) {
    let tshark = |filter: &str, fields: &[&str]| -> Vec<Vec<String>> {
        let mut cmd = std::process::Command::new("tshark");
        cmd.arg("-r").arg(pcap).args(["-Y", filter, "-T", "fields"]);
        for f in fields {
            cmd.args(["-e", f]);
        }
        let out = cmd.output().expect("tshark");
        assert!(
            out.status.success(),
            "tshark: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.split('\t').map(str::to_string).collect())
            .collect()
    };
    let mut theirs: Vec<(String, String, String)> = tshark(
        "kerberos.msg_type == 14",
        &["tcp.srcport", "kerberos.realm", "kerberos.SNameString"],
    )
    .into_iter()
    .map(|f| (f[0].clone(), f[1].clone(), f[2].replace(',', "/")))
    .collect();
    let mut mine: Vec<(String, String, String)> = events
        .iter()
        .filter(|e| e["event"]["action"] == "kerberos_handshake")
        .map(|e| {
            (
                e["source"]["port"].to_string(),
                e["kerberos"]["realm"].as_str().unwrap_or("?").to_string(),
                e["kerberos"]["service_principal"]
                    .as_str()
                    .unwrap_or("?")
                    .to_string(),
            )
        })
        .collect();
    theirs.sort();
    mine.sort();
    assert!(!theirs.is_empty(), "{sc}: tshark saw no AP-REQ");
    assert_eq!(
        mine, theirs,
        "{sc}: AP-REQs [balancer port, realm, service] tracker vs tshark"
    );
    // negResult of every NegTokenResp (the server's, and the client's final one), per backend
    // connection: the balancer-side port.
    let neg = |n: &str| match n {
        "accept_completed" | "0" => "0",
        "accept_incomplete" | "1" => "1",
        "reject" | "2" => "2",
        "request_mic" | "3" => "3",
        _ => "?",
    };
    let lb_port = |a: &str, b: &str| {
        if a == "80" {
            b.to_string()
        } else {
            a.to_string()
        }
    };
    let mut theirs: Vec<(String, String)> = tshark(
        "spnego.negResult",
        &["tcp.srcport", "tcp.dstport", "spnego.negResult"],
    )
    .into_iter()
    .map(|f| (lb_port(&f[0], &f[1]), neg(&f[2]).to_string()))
    .collect();
    let backend = |e: &Value| {
        [&e["source"]["ip"], &e["destination"]["ip"]]
            .iter()
            .any(|ip| ip.as_str().is_some_and(|ip| ip.starts_with("198.19.")))
    };
    let mut mine: Vec<(String, String)> = events
        .iter()
        .filter(|e| {
            e["event"]["action"] == "ntlm_message"
                && backend(e)
                && e["ntlm_affinity"]["spnego"]["neg_state"].is_string()
        })
        .map(|e| {
            (
                lb_port(
                    &e["source"]["port"].to_string(),
                    &e["destination"]["port"].to_string(),
                ),
                neg(e["ntlm_affinity"]["spnego"]["neg_state"]
                    .as_str()
                    .unwrap_or("?"))
                .to_string(),
            )
        })
        .collect();
    theirs.sort();
    mine.sort();
    assert!(!theirs.is_empty(), "{sc}: tshark saw no negResult");
    assert_eq!(
        mine, theirs,
        "{sc}: SPNEGO negResult per connection, tracker vs tshark"
    );
}

/// The Kerberos clients every balancer scenario runs, one after the other, from distinct
/// source addresses: browser-like (anonymous → 401 → AP-REQ → 200, then more requests),
/// pre-emptive, and `curl --negotiate`: four Kerberos logons at least.
fn kerberos_clients(lab: &Lab, scenario: &str) {
    let browser = clients(
        lab,
        "negotiate-browser",
        PORT,
        &[
            "--user",
            "alice",
            "--count",
            "2",
            "--sources",
            &sources(2, 0),
            "--then",
            "2",
        ],
    );
    // A browser whose anonymous request is answered 200 (served by a pooled connection's
    // logon, the leak itself) has no reason to authenticate: it sends no AP-REQ.
    let leaked = statuses(&browser, "anonymous")
        .iter()
        .filter(|s| **s == 200)
        .count();
    let krb: Vec<u64> = browser
        .iter()
        .filter(|l| l["leg"] == "kerberos")
        .map(|l| l["status"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(krb, vec![200; 2 - leaked], "{scenario}: {browser:?}");
    let pre = clients(
        lab,
        "negotiate-preemptive",
        PORT,
        &[
            "--user",
            "bob",
            "--count",
            "2",
            "--sources",
            &sources(2, 2),
            "--then",
            "1",
        ],
    );
    assert_eq!(
        statuses(&pre, "kerberos"),
        vec![200, 200],
        "{scenario}: {pre:?}"
    );
    let curl = clients(
        lab,
        "curl-negotiate",
        PORT,
        &[
            "--user",
            "carol",
            "--source",
            &client_addr(4).to_string(),
            "--then",
            "2",
        ],
    );
    assert_eq!(curl.len(), 3, "{scenario}: {curl:?}");
    assert_eq!(
        statuses(&curl, "kerberos"),
        vec![200],
        "{scenario}: {curl:?}"
    );
}

/// Anonymous clients (no credentials at all): `runs` connections of `requests` requests.
fn anonymous_clients(lab: &Lab, runs: usize, requests: usize, first_src: usize) -> Vec<Value> {
    clients(
        lab,
        "anon",
        PORT,
        &[
            "--count",
            &runs.to_string(),
            "--sources",
            &sources(runs, first_src),
            "--requests",
            &requests.to_string(),
        ],
    )
}

/// Pre-emptive Kerberos logon of `user` then anonymous clients: the leak's recipe.
fn preemptive_then_anonymous(lab: &Lab, scenario: &str, runs: usize) -> Vec<Value> {
    let pre = clients(
        lab,
        "negotiate-preemptive",
        PORT,
        &["--user", "dave", "--source", &client_addr(8).to_string()],
    );
    assert_eq!(statuses(&pre, "kerberos"), vec![200], "{scenario}: {pre:?}");
    anonymous_clients(lab, runs, 3, 9)
}

/// Tracker, the scenario's traffic, the tracker's events, the truth.
fn run_scenario(
    lab: &Lab,
    extra: &[&str],
    traffic: impl FnOnce(&Lab),
) -> (Vec<Value>, Vec<TruthRecord>) {
    run_scenario_with(lab, start_lab_tracker(lab, extra), traffic)
}

/// [`run_scenario`] with a tracker already started.
fn run_scenario_with(
    lab: &Lab,
    tracker: Tracker,
    traffic: impl FnOnce(&Lab),
) -> (Vec<Value>, Vec<TruthRecord>) {
    traffic(lab);
    let events = tracker.stop();
    let truth = lab.truth().unwrap();
    (events, truth)
}

/// Every Kerberos logon of the truth answered `Persistent-Auth: <value>`.
fn assert_kerberos_logons(scenario: &str, s: &TruthSummary, value: &str, at_least: usize) {
    let n: usize = s.kerberos_ok.values().sum();
    assert!(n >= at_least, "{scenario}: {n} Kerberos logons: {s:?}");
    assert_eq!(
        s.kerberos_ok.get(value).copied().unwrap_or(0),
        n,
        "{scenario}: every Kerberos 200 says Persistent-Auth: {value}: {s:?}"
    );
}

// ---------------------------------------------------------------------------------------------

/// 1. HAProxy default (keep-alive, `http-reuse safe`, roundrobin over two servers): browser,
///    pre-emptive and curl Kerberos clients, anonymous clients, and clients that fall back to
///    NTLM inside SPNEGO. The truth shows no anonymous request served as another user (HAProxy
///    gives every session its own server connection first); the daemon reports no
///    `auth_context_reuse`, and its handshake records show the SPNEGO-wrapped NTLM handshakes.
#[test]
fn kerberos_1_haproxy_default() {
    let _g = serial();
    let sc = "kerberos 1 (haproxy default)";
    let Some(lab) = kerberos_lab(
        "kerberos_1",
        Balancer::HaproxyKeepAlive,
        &[1, 2],
        PersistentAuth::On,
    ) else {
        return;
    };
    let cap = lab.start_capture(LB_BACKEND_IF, "kerberos1-be").unwrap();
    let (events, truth) = run_scenario(&lab, &["--handshakes", "--messages"], |lab| {
        kerberos_clients(lab, sc);
        anonymous_clients(lab, 3, 3, 5);
        let fb = clients(
            lab,
            "negotiate-fallback",
            PORT,
            &["--count", "2", "--sources", &sources(2, 10), "--then", "1"],
        );
        assert_eq!(statuses(&fb, "type3"), vec![200, 200], "{sc}: {fb:?}");
        let fb_spn = clients(
            lab,
            "negotiate-fallback",
            PORT,
            &[
                "--fallback",
                "spn",
                "--user",
                "LAB\\bob",
                "--source",
                &client_addr(12).to_string(),
            ],
        );
        assert_eq!(statuses(&fb_spn, "type3"), vec![200], "{sc}: {fb_spn:?}");
    });
    let s = summarize(sc, &truth);
    assert_kerberos_logons(sc, &s, "true", 5);
    assert_eq!(
        s.foreign_reuse,
        0,
        "{sc}: an anonymous request was served as another user: {:#?}",
        truth
            .iter()
            .filter(|r| r.is_foreign_reuse())
            .collect::<Vec<_>>()
    );
    assert!(
        s.own_reuse > 0,
        "{sc}: persisted logons served their own client: {s:?}"
    );
    assert_exact(sc, &lab, &truth, &events);
    assert_eq!(count(&events, "auth_context_reuse"), 0);

    // The fallback: NTLM inside SPNEGO (Kerberos impossible, so not offered), and the daemon's
    // handshake records show exactly these NTLM handshakes, on the same connections.
    let ntlm: Vec<&TruthRecord> = truth
        .iter()
        .filter(|r| r.outcome == "success" && r.auth_scheme.as_deref() == Some("ntlm"))
        .collect();
    assert_eq!(ntlm.len(), 3, "{sc}: {ntlm:#?}");
    for r in &ntlm {
        assert_eq!(r.mech.as_deref(), Some("spnego-ntlm"), "{sc}: {r:?}");
        assert_eq!(r.scheme.as_deref(), Some("Negotiate"), "{sc}: {r:?}");
    }
    for r in truth.iter().filter(|r| r.outcome == "challenge") {
        assert_eq!(
            r.spnego_mechs.as_deref(),
            Some(&["ntlm".to_string()][..]),
            "{sc}: pyspnego leaves out a mechanism it cannot use: {r:?}"
        );
    }
    let mut want: Vec<(String, String, String)> = ntlm
        .iter()
        .map(|r| {
            (
                r.conn.clone(),
                backend_ip(&lab, &r.server),
                r.user
                    .clone()
                    .unwrap_or_default()
                    .rsplit('\\')
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    let handshakes: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"]["action"] == "ntlm_handshake")
        .collect();
    let mut got: Vec<(String, String, String)> = handshakes
        .iter()
        .map(|e| {
            (
                endpoint(&e["source"]),
                e["destination"]["ip"].as_str().unwrap_or("?").to_string(),
                e["user"]["name"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect();
    want.sort();
    got.sort();
    assert_eq!(got, want, "{sc}: ntlm_handshake records vs the truth");
    for e in &handshakes {
        assert_eq!(e["event"]["outcome"], "success", "{sc}: {e}");
        assert_eq!(e["ntlm"]["success"], true, "{sc}: {e}");
        fields::check_ntlm_fallback(sc, e);
    }
    drain_capture();
    let pcap = cap.stop().unwrap();
    assert_tshark_agrees_on_kerberos(sc, &pcap, &events);
    lab.shutdown().unwrap();
}

/// 1b. HAProxy default again, with an anonymous folder (IIS anonymous authentication on
///     `/public/`): the leak HAProxy's default does NOT prevent. Pre-emptive Negotiate logons
///     answered 200 leave authenticated server connections that were never made private (no
///     401 Negotiate/NTLM on them). An anonymous client whose first request (`/public/`) is
///     answered 200 without any authentication header has no private connection either, so
///     its later requests are dispatched over other sessions' idle connections
///     (`http-reuse safe` allows it for every request but a session's first) and are served
///     as the Kerberos user. One `auth_context_reuse` per such request.
#[test]
fn kerberos_1b_haproxy_default_anonymous_folder() {
    let _g = serial();
    let sc = "kerberos 1b (haproxy default, anonymous folder)";
    let cfg = LabConfig::default()
        .with_backends(2)
        .with_client_addrs(16)
        .with_frontends(vec![Frontend::new(PORT, Balancer::HaproxyKeepAlive)])
        .with_kerberos()
        .with_anonymous_path("/public/");
    let Some(lab) = lab_up("kerberos_1b", cfg) else {
        return;
    };
    let (events, truth) = run_scenario(&lab, &[], |lab| {
        let pre = clients(
            lab,
            "negotiate-preemptive",
            PORT,
            &[
                "--user",
                "dave",
                "--count",
                "2",
                "--sources",
                &sources(2, 8),
            ],
        );
        assert_eq!(statuses(&pre, "kerberos"), vec![200, 200], "{sc}: {pre:?}");
        let anon = clients(
            lab,
            "anon",
            PORT,
            &[
                "--count",
                "3",
                "--sources",
                &sources(3, 10),
                "--requests",
                "4",
                "--first-path",
                "/public/",
            ],
        );
        assert_eq!(statuses(&anon, "request").len(), 12, "{sc}: {anon:?}");
    });
    let s = summarize(sc, &truth);
    assert_kerberos_logons(sc, &s, "true", 2);
    let public = truth
        .iter()
        .filter(|r| r.outcome == "anonymous_allowed")
        .count();
    assert_eq!(public, 3, "{sc}: {truth:#?}");
    assert!(
        s.foreign_reuse > 0,
        "{sc}: HAProxy kept every anonymous request off the authenticated connections: {truth:#?}"
    );
    for r in truth.iter().filter(|r| r.is_foreign_reuse()) {
        assert_eq!(r.user.as_deref(), Some("dave@LAB.TEST"), "{sc}: {r:?}");
    }
    assert_exact(sc, &lab, &truth, &events);
    assert_eq!(count(&events, "auth_context_reuse"), s.foreign_reuse);
    assert_reuse_matches_truth(sc, &lab, &truth, &events);
    lab.shutdown().unwrap();
}

/// 2. HAProxy `http-reuse always` (two servers): a pre-emptive Negotiate answered 200 never
///    made its server connection private (HAProxy does that only after an NTLM/Negotiate 401),
///    so anonymous clients balanced to that server reuse it and are served as the Kerberos user.
///    One `auth_context_reuse` per such request, on that connection and server.
#[test]
fn kerberos_2_haproxy_reuse_always() {
    let _g = serial();
    let sc = "kerberos 2 (haproxy http-reuse always)";
    let Some(lab) = kerberos_lab(
        "kerberos_2",
        Balancer::HaproxyReuseAlways,
        &[1, 2],
        PersistentAuth::On,
    ) else {
        return;
    };
    let (events, truth) = run_scenario(&lab, &[], |lab| {
        preemptive_then_anonymous(lab, sc, 4);
    });
    let s = summarize(sc, &truth);
    assert_kerberos_logons(sc, &s, "true", 1);
    assert!(
        s.foreign_reuse > 0,
        "{sc}: no leak in the truth: {truth:#?}"
    );
    for r in truth.iter().filter(|r| r.is_foreign_reuse()) {
        assert_eq!(r.user.as_deref(), Some("dave@LAB.TEST"), "{sc}: {r:?}");
        assert_eq!(r.auth_scheme.as_deref(), Some("kerberos"), "{sc}: {r:?}");
    }
    assert_exact(sc, &lab, &truth, &events);
    assert_eq!(count(&events, "auth_context_reuse"), s.foreign_reuse);
    assert_reuse_matches_truth(sc, &lab, &truth, &events);
    lab.shutdown().unwrap();
}

/// NGINX upstream `keepalive` (pooled backend connections shared between clients) with
/// `servers`: the Kerberos clients, then a pre-emptive logon and anonymous clients. The verdicts
/// follow the truth, request by request.
fn nginx_keepalive(test: &str, sc: &str, servers: &[usize], kernel_identity: bool) {
    let _g = serial();
    let Some(lab) = kerberos_lab(test, Balancer::NginxKeepAlive, servers, PersistentAuth::On)
    else {
        return;
    };
    let traffic = |lab: &Lab| {
        kerberos_clients(lab, sc);
        preemptive_then_anonymous(lab, sc, 3);
    };
    // The backend leg, for replay (every request reaches the daemon when it runs without the
    // kernel check, so live and replay must agree exactly).
    let cap = (!kernel_identity).then(|| lab.start_capture(LB_BACKEND_IF, test).unwrap());
    let tracker = if kernel_identity {
        start_lab_tracker_kernel_identity(&lab, &[])
    } else {
        start_lab_tracker(&lab, &[])
    };
    let (events, truth) = run_scenario_with(&lab, tracker, traffic);
    let s = summarize(sc, &truth);
    assert_kerberos_logons(sc, &s, "true", 4);
    assert!(
        s.foreign_reuse > 0,
        "{sc}: no leak in the truth: {truth:#?}"
    );
    assert_exact(sc, &lab, &truth, &events);
    assert_eq!(count(&events, "auth_context_reuse"), s.foreign_reuse);
    assert_reuse_matches_truth(sc, &lab, &truth, &events);
    if let Some(cap) = cap {
        drain_capture();
        let pcap = cap.stop().unwrap();
        let (replayed, summary) = replay(&lab, &pcap, &[]);
        let reuse = |ev: &[Value]| {
            let mut v: Vec<String> = alerts(ev)
                .iter()
                .map(|a| {
                    format!(
                        "{} {} {} {} {}",
                        a["event"]["action"],
                        endpoint(&a["source"]),
                        a["client"]["ip"],
                        a["ntlm_affinity"]["authenticated_client"]["forwarded_for"],
                        a["kerberos"]["service_principal"]
                    )
                })
                .collect();
            v.sort();
            v
        };
        assert_eq!(
            reuse(&replayed),
            reuse(&events),
            "{sc}: replaying the backend capture gives the live alerts"
        );
        // The summary counts each client's Kerberos logons.
        assert!(
            summary.contains("schemes by client") && summary.contains("kerberos "),
            "{sc}: replay summary: {summary}"
        );
    }
    if kernel_identity {
        // The persisted logons' own later requests were checked and passed in the kernel;
        // the verdicts above are the same as with every request delivered.
        assert!(
            s.own_reuse > 0,
            "{sc}: no own-client reuse in the truth: {s:?}"
        );
        assert!(
            kernel_stat(&events, "identity_match") > 0,
            "{sc}: the kernel matched no request to its authenticated client"
        );
        assert!(kernel_stat(&events, "identity_mismatch") >= s.foreign_reuse as u64);
    }
    lab.shutdown().unwrap();
}

/// 3. NGINX keepalive, one server (every request reaches the daemon: client-port header).
#[test]
fn kerberos_3_nginx_keepalive_one_server() {
    nginx_keepalive(
        "kerberos_3",
        "kerberos 3 (nginx keepalive, 1 server)",
        &[1],
        false,
    );
}

/// 4. NGINX keepalive, two servers, X-Forwarded-For alone: the kernel checks each request on
///    an authenticated connection and passes the authenticating client's own ones silently.
#[test]
fn kerberos_4_nginx_keepalive_two_servers() {
    nginx_keepalive(
        "kerberos_4",
        "kerberos 4 (nginx keepalive, 2 servers, kernel identity check)",
        &[1, 2],
        true,
    );
}

/// No reuse possible: the truth shows no anonymous request served as anyone, and the daemon
/// raises no alert at all. `persistent` is the backends' value sent with Kerberos 200s.
fn no_reuse(test: &str, sc: &str, balancer: Balancer, persistent: PersistentAuth) {
    let _g = serial();
    let Some(lab) = kerberos_lab(test, balancer, &[1], persistent) else {
        return;
    };
    let (events, truth) = run_scenario(&lab, &[], |lab| {
        kerberos_clients(lab, sc);
        preemptive_then_anonymous(lab, sc, 2);
    });
    let s = summarize(sc, &truth);
    let value = if persistent == PersistentAuth::On {
        "true"
    } else {
        "false"
    };
    assert_kerberos_logons(sc, &s, value, 6);
    assert_eq!(s.foreign_reuse, 0, "{sc}: {truth:#?}");
    if persistent != PersistentAuth::On {
        assert_eq!(s.own_reuse, 0, "{sc}: no logon is kept: {truth:#?}");
    }
    assert!(s.anonymous_401 > 0, "{sc}: {s:?}");
    assert_exact(sc, &lab, &truth, &events);
    assert_eq!(alerts(&events).len(), 0, "{sc}: {:#?}", alerts(&events));
    assert_eq!(actions(&events, "auth_context_reuse"), 0);
    lab.shutdown().unwrap();
}

/// 5. NGINX upstream without keepalive: a new backend connection per request, nothing to reuse.
#[test]
fn kerberos_5_nginx_without_keepalive() {
    no_reuse(
        "kerberos_5",
        "kerberos 5 (nginx, no keepalive)",
        Balancer::Nginx,
        PersistentAuth::On,
    );
}

/// 6. IIS authPersistNonNTLM=false behind the leaky NGINX keepalive pool: the Kerberos logon is
///    not kept (`Persistent-Auth: false`), anonymous requests get a 401, no alert.
#[test]
fn kerberos_6_persistent_auth_off() {
    no_reuse(
        "kerberos_6",
        "kerberos 6 (Persistent-Auth off, nginx keepalive)",
        Balancer::NginxKeepAlive,
        PersistentAuth::Off,
    );
}

/// 7b. authPersistSingleRequest with NTLM behind the leaky NGINX keepalive pool: the backend
///     keeps no NTLM logon either, so anonymous requests riding the pooled connection get a
///     401 and the truth shows no reuse. The daemon treats a 401 to a request without
///     credentials as "not served" and drops the connection's logon: no alert (it reported
///     one per request before this scenario found it).
#[test]
fn kerberos_7b_persist_single_request_ntlm() {
    let _g = serial();
    let sc = "kerberos 7b (single-request, NTLM, nginx keepalive)";
    let Some(lab) = kerberos_lab(
        "kerberos_7b",
        Balancer::NginxKeepAlive,
        &[1],
        PersistentAuth::SingleRequest,
    ) else {
        return;
    };
    let (events, truth) = run_scenario(&lab, &[], |lab| {
        let ntlm = clients(
            lab,
            "keepalive",
            PORT,
            &["--source", &client_addr(0).to_string(), "--then", "1"],
        );
        assert_eq!(statuses(&ntlm, "type3"), vec![200], "{sc}: {ntlm:?}");
        anonymous_clients(lab, 2, 2, 1);
    });
    let s = summarize(sc, &truth);
    assert_eq!(s.ntlm_ok, 1, "{sc}: {s:?}");
    assert_eq!(s.foreign_reuse + s.own_reuse, 0, "{sc}: {truth:#?}");
    assert_exact(sc, &lab, &truth, &events);
    assert_eq!(alerts(&events).len(), 0, "{sc}: {:#?}", alerts(&events));
    lab.shutdown().unwrap();
}

/// 7. IIS authPersistSingleRequest=true behind the leaky NGINX keepalive pool: every request
///    re-authenticates, anonymous requests get a 401, no alert.
#[test]
fn kerberos_7_persist_single_request() {
    no_reuse(
        "kerberos_7",
        "kerberos 7 (single-request, nginx keepalive)",
        Balancer::NginxKeepAlive,
        PersistentAuth::SingleRequest,
    );
}
