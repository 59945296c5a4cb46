//! Every violation class, every hard case that must not be reported and every one that must,
//! through the whole pipeline (records → reassembly → heads → decode → correlation), from
//! crafted tokens and from the real curl / pyspnego tokens.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::{challenge::MAX_SAME_TIMESTAMP, conn::MAX_PENDING, stats::MAX_SUMMARY_CLIENTS, *};
use crate::{
    pipeline::{self, Output, Pipeline},
    testsupport::{self as ts, Conn, SEC},
};

const LB: &str = "198.18.0.10";
const WEB1: &str = "198.18.1.10:80";
const WEB2: &str = "198.18.1.11:80";

fn pipeline(handshakes: bool) -> Pipeline {
    Pipeline::new(pipeline::Config {
        correlate: Config {
            backends: vec!["198.18.1.0/24:80".parse().unwrap()],
            frontend_ports: vec![8080],
            handshakes,
            window_ns: 30 * SEC,
            ..Config::default()
        },
        http: crate::http::Options {
            client_port_header: Some("x-client-port".into()),
        },
        site_key: Some(b"test-site".to_vec()),
        ..pipeline::Config::default()
    })
}

fn run(p: &mut Pipeline, recs: Vec<crate::record::Record>, finish: bool) -> Vec<Verdict> {
    let mut out = Vec::new();
    for r in recs {
        p.push(r, &mut out);
    }
    if finish {
        p.finish(&mut out);
    }
    out.into_iter()
        .filter_map(|o| match o {
            Output::Verdict(v) => Some(*v),
            Output::Message(_) => None,
        })
        .collect()
}

fn classes(v: &[Verdict]) -> Vec<Class> {
    v.iter().map(|v| v.class).collect()
}

fn lb(port: u16) -> String {
    format!("{LB}:{port}")
}

fn auth(token: &str) -> String {
    format!("Authorization: NTLM {token}\r\n")
}

fn chal(token: &str) -> String {
    format!("WWW-Authenticate: NTLM {token}\r\n")
}

/// Type-1 → 401 Type-2 on `a`; returns the records.
fn challenge_on(
    a: &mut Conn,
    t0: u64,
    server: &str,
    stamp: u64,
    extra: &str,
) -> Vec<crate::record::Record> {
    vec![
        a.req(t0, &format!("{extra}{}", auth(&ts::type1()))),
        a.resp(
            t0 + 1000,
            401,
            &chal(&ts::type2(server, stamp, *b"chal0001")),
        ),
    ]
}

#[test]
fn healthy_handshake_from_real_curl_tokens() {
    let (t1, t2, t3) = ts::fixture_legs("curl_ntlm");
    let mut a = Conn::new(&lb(40000), WEB1, 100);
    let recs = vec![
        a.req(SEC, &format!("{t1}\r\n")),
        a.resp(SEC + 1, 401, &format!("{t2}\r\n")),
        a.req(SEC + 2, &format!("{t3}\r\n")),
        a.resp(SEC + 3, 200, ""),
    ];
    let mut p = pipeline(true);
    let v = run(&mut p, recs, true);
    assert_eq!(classes(&v), vec![Class::Handshake], "{v:#?}");
    assert_eq!(
        v[0].evidence,
        vec![Evidence::ChallengeKey, Evidence::SameConnection]
    );
    assert_eq!(v[0].user.as_deref(), Some("alice"));
    assert_eq!(v[0].outcome, Outcome::Success);
    let names = v[0]
        .challenge_leg
        .as_ref()
        .unwrap()
        .server_names
        .clone()
        .unwrap();
    assert_eq!(names.nb_computer_name.as_deref(), Some("WEB1"));
    // Without --handshakes nothing at all is emitted.
    let mut q = pipeline(false);
    let mut a = Conn::new(&lb(40000), WEB1, 100);
    let recs = vec![
        a.req(SEC, &format!("{t1}\r\n")),
        a.resp(SEC + 1, 401, &format!("{t2}\r\n")),
        a.req(SEC + 2, &format!("{t3}\r\n")),
        a.resp(SEC + 3, 200, ""),
    ];
    assert!(run(&mut q, recs, true).is_empty());
}

#[test]
fn server_split_from_real_tokens_with_the_outcome() {
    for fixture in [
        "curl_ntlm",
        "pyspnego_ntlm",
        "pyspnego_negotiate",
        "pyspnego_negotiate_raw_ntlm",
    ] {
        let (t1, t2, t3) = ts::fixture_legs(fixture);
        let mut a = Conn::new(&lb(40000), WEB1, 100);
        let mut b = Conn::new(&lb(40001), WEB2, 200);
        let recs = vec![
            a.req(SEC, &format!("{t1}\r\n")),
            a.resp(SEC + 1, 401, &format!("{t2}\r\n")),
            b.req(SEC + 2, &format!("{t3}\r\n")),
            b.resp(SEC + 3, 401, "WWW-Authenticate: NTLM\r\n"),
        ];
        let mut p = pipeline(false);
        let v = run(&mut p, recs, true);
        assert_eq!(classes(&v), vec![Class::ServerSplit], "{fixture}: {v:#?}");
        let v = &v[0];
        assert_eq!(v.evidence[0], Evidence::ChallengeKey, "{fixture}");
        assert_eq!(v.cause, Some(Cause::Unknown));
        assert_eq!(v.outcome, Outcome::Failure);
        assert_eq!(v.status, Some(401));
        assert_eq!(v.challenge_leg.as_ref().unwrap().server.to_string(), WEB1);
        assert_eq!(
            v.authenticate_leg.as_ref().unwrap().server.to_string(),
            WEB2
        );
        assert!(v.challenge_key.is_some());
    }
}

#[test]
fn connection_split_and_its_causes() {
    // Same server, another connection; the challenge's connection was closed (FIN).
    let mut a = Conn::new(&lb(40000), WEB1, 100);
    let mut b = Conn::new(&lb(40001), WEB1, 200);
    let mut recs = challenge_on(&mut a, SEC, "web1", 777, "");
    recs.push(a.fin(SEC + 10, false));
    recs.push(b.req(SEC + 20, &auth(&ts::type3("alice", "web1", 777))));
    recs.push(b.resp(SEC + 30, 200, ""));
    let v = run(&mut pipeline(false), recs, true);
    assert_eq!(classes(&v), vec![Class::ConnectionSplit], "{v:#?}");
    assert_eq!(v[0].cause, Some(Cause::ConnectionClosed));
    assert_eq!(
        v[0].challenge_leg.as_ref().unwrap().closed,
        Some(Closing::Fin)
    );
    assert_eq!(v[0].outcome, Outcome::Success);

    // HTTP/1.0-style `Connection: close` on the Type-1 request: connection_closed at once.
    let mut a = Conn::new(&lb(40002), WEB1, 300);
    let mut b = Conn::new(&lb(40003), WEB2, 400);
    let mut recs = challenge_on(&mut a, SEC, "web1", 778, "Connection: close\r\n");
    recs.push(b.req(SEC + 20, &auth(&ts::type3("alice", "web1", 778))));
    let v = run(&mut pipeline(false), recs, true);
    assert_eq!(classes(&v), vec![Class::ServerSplit]);
    assert_eq!(v[0].cause, Some(Cause::ConnectionClosed));

    // Client-port header: another client connection → client_reconnect; the same →
    // balancer_reroute.
    for (port_b, cause) in [
        (51001, Cause::ClientReconnect),
        (51000, Cause::BalancerReroute),
    ] {
        let mut a = Conn::new(&lb(40004), WEB1, 500);
        let mut b = Conn::new(&lb(40005), WEB2, 600);
        let mut recs = challenge_on(
            &mut a,
            SEC,
            "web1",
            779,
            "X-Forwarded-For: 10.9.0.1\r\nX-Client-Port: 51000\r\n",
        );
        recs.push(b.req(
            SEC + 2,
            &format!(
                "X-Forwarded-For: 10.9.0.1\r\nX-Client-Port: {port_b}\r\n{}",
                auth(&ts::type3("alice", "web1", 779))
            ),
        ));
        let v = run(&mut pipeline(false), recs, true);
        assert_eq!(classes(&v), vec![Class::ServerSplit]);
        assert_eq!(v[0].cause, Some(cause));
        assert_eq!(v[0].client.forwarded_for.as_deref(), Some("10.9.0.1"));
    }
}

#[test]
fn frontend_token_join_tells_reconnect_from_reroute() {
    // The balancer forwards token bytes verbatim: the frontend connection that carried the
    // Type-2 and the one that carried the Type-3 identify the client connections.
    for (same_frontend, cause) in [
        (false, Cause::ClientReconnect),
        (true, Cause::BalancerReroute),
    ] {
        let t2 = ts::type2("web1", 900, *b"chal0009");
        let t3 = ts::type3("alice", "web1", 900);
        let mut f1 = Conn::new("10.20.0.5:61000", "198.18.0.1:8080", 10);
        let mut f2 = Conn::new("10.20.0.5:61001", "198.18.0.1:8080", 11);
        let mut a = Conn::new(&lb(40000), WEB1, 100);
        let mut b = Conn::new(&lb(40001), WEB2, 200);
        let recs = vec![
            f1.req(SEC, &auth(&ts::type1())),
            a.req(SEC + 1, &auth(&ts::type1())),
            a.resp(SEC + 2, 401, &chal(&t2)),
            f1.resp(SEC + 3, 401, &chal(&t2)),
            if same_frontend {
                f1.req(SEC + 4, &auth(&t3))
            } else {
                f2.req(SEC + 4, &auth(&t3))
            },
            b.req(SEC + 5, &auth(&t3)),
            b.resp(SEC + 6, 401, ""),
        ];
        let v = run(&mut pipeline(false), recs, true);
        assert_eq!(classes(&v), vec![Class::ServerSplit], "{v:#?}");
        assert_eq!(v[0].cause, Some(cause));
        assert!(v[0].evidence.contains(&Evidence::FrontendToken));
        assert_eq!(v[0].client.frontend.unwrap().ip().to_string(), "10.20.0.5");
    }
}

#[test]
fn balancer_closing_the_challenge_connection_is_still_a_reroute() {
    // HAProxy `option http-server-close` / NGINX without upstream keepalive: the balancer
    // closes the backend connection after the Type-2 although the client keeps its frontend
    // connection, then sends the Type-3 on a new backend connection. The client did nothing
    // wrong: balancer_reroute, not connection_closed (found by the lab's scenario 2).
    // Without the frontend leg, an HTTP/1.0 client's `Connection: close` stays connection_closed.
    for (same_frontend, cause) in [
        (true, Cause::BalancerReroute),
        (false, Cause::ConnectionClosed),
    ] {
        let t2 = ts::type2("web1", 901, *b"chal0010");
        let t3 = ts::type3("alice", "web1", 901);
        let mut f1 = Conn::new("10.20.0.5:61000", "198.18.0.1:8080", 10);
        let mut f2 = Conn::new("10.20.0.5:61001", "198.18.0.1:8080", 11);
        let mut a = Conn::new(&lb(40000), WEB1, 100);
        let mut b = Conn::new(&lb(40001), WEB2, 200);
        let recs = vec![
            f1.req(SEC, &auth(&ts::type1())),
            a.req(
                SEC + 1,
                &format!("Connection: close\r\n{}", auth(&ts::type1())),
            ),
            a.resp(SEC + 2, 401, &format!("Connection: close\r\n{}", chal(&t2))),
            a.fin(SEC + 3, true),
            f1.resp(SEC + 3, 401, &chal(&t2)),
            if same_frontend {
                f1.req(SEC + 4, &auth(&t3))
            } else {
                f2.req(SEC + 4, &auth(&t3))
            },
            b.req(SEC + 5, &auth(&t3)),
            b.resp(SEC + 6, 401, ""),
        ];
        let v = run(&mut pipeline(false), recs, true);
        assert_eq!(classes(&v), vec![Class::ServerSplit], "{v:#?}");
        assert_eq!(v[0].cause, Some(cause), "same frontend {same_frontend}");
    }
}

#[test]
fn http10_client_reconnecting_after_connection_close_is_connection_closed() {
    // Seed 003: the HTTP/1.0 client's frontend connection announced its end (`Connection:
    // close`), the balancer kept its backend connection alive (HTTP/1.1 to the server), the
    // Type-3 came on a new frontend connection: connection_closed, not client_reconnect.
    for (close_header, cause) in [
        ("Connection: close\r\n", Cause::ConnectionClosed),
        ("", Cause::ClientReconnect),
    ] {
        let t2 = ts::type2("web1", 902, *b"chal0011");
        let t3 = ts::type3("alice", "web1", 902);
        let mut f1 = Conn::new("10.20.0.5:61000", "198.18.0.1:8080", 10);
        let mut f2 = Conn::new("10.20.0.5:61001", "198.18.0.1:8080", 11);
        let mut a = Conn::new(&lb(40000), WEB1, 100);
        let mut b = Conn::new(&lb(40001), WEB2, 200);
        let recs = vec![
            f1.req(SEC, &format!("{close_header}{}", auth(&ts::type1()))),
            a.req(SEC + 1, &auth(&ts::type1())),
            a.resp(SEC + 2, 401, &chal(&t2)),
            f1.resp(SEC + 3, 401, &chal(&t2)),
            f2.req(SEC + 4, &auth(&t3)),
            b.req(SEC + 5, &auth(&t3)),
            b.resp(SEC + 6, 401, ""),
        ];
        let v = run(&mut pipeline(false), recs, true);
        assert_eq!(classes(&v), vec![Class::ServerSplit], "{v:#?}");
        assert_eq!(v[0].cause, Some(cause), "{close_header:?}");
    }
}

#[test]
fn orphan_type3() {
    let mut b = Conn::new(&lb(40001), WEB2, 200);
    let recs = vec![
        b.req(SEC, &auth(&ts::type3("alice", "web9", 5))),
        b.resp(SEC + 1, 401, ""),
    ];
    let v = run(&mut pipeline(false), recs, true);
    assert_eq!(classes(&v), vec![Class::OrphanType3]);
    assert_eq!(v[0].evidence, vec![Evidence::None]);
    assert_eq!(v[0].user.as_deref(), Some("alice"));
}

#[test]
fn abandoned_challenge_once_and_never_beside_a_split() {
    let mut a = Conn::new(&lb(40000), WEB1, 100);
    let mut recs = challenge_on(&mut a, SEC, "web1", 11, "");
    // Something later on another connection advances the clock past the window.
    let mut c = Conn::new(&lb(40009), WEB2, 900);
    recs.push(c.req(40 * SEC, "X-A: 1\r\n"));
    let v = run(&mut pipeline(false), recs, true);
    assert_eq!(classes(&v), vec![Class::AbandonedChallenge], "{v:#?}");
    assert_eq!(v[0].cause, Some(Cause::Unknown));
    assert_eq!(v[0].outcome, Outcome::Failure);

    // At the end of input, a challenge on a closed connection is abandoned.
    let mut a = Conn::new(&lb(40000), WEB1, 100);
    let mut recs = challenge_on(&mut a, SEC, "web1", 12, "");
    recs.push(a.fin(SEC + 5, true));
    let v = run(&mut pipeline(false), recs, true);
    assert_eq!(classes(&v), vec![Class::AbandonedChallenge]);
    assert_eq!(v[0].cause, Some(Cause::ConnectionClosed));

    // Answered elsewhere: one split, not also abandoned, even long after.
    let mut a = Conn::new(&lb(40000), WEB1, 100);
    let mut b = Conn::new(&lb(40001), WEB2, 200);
    let mut recs = challenge_on(&mut a, SEC, "web1", 13, "");
    recs.push(a.fin(SEC + 5, true));
    recs.push(b.req(SEC + 6, &auth(&ts::type3("alice", "web1", 13))));
    recs.push(b.resp(SEC + 7, 401, ""));
    recs.push(b.req(100 * SEC, "X-A: 1\r\n"));
    let v = run(&mut pipeline(false), recs, true);
    assert_eq!(classes(&v), vec![Class::ServerSplit], "{v:#?}");
}

#[test]
fn auth_context_reuse_ntlm_and_kerberos() {
    let mut a = Conn::new(&lb(40000), WEB1, 100);
    let mut recs = challenge_on(&mut a, SEC, "web1", 21, "X-Forwarded-For: 10.9.0.1\r\n");
    recs.push(a.req(
        SEC + 2,
        &format!(
            "X-Forwarded-For: 10.9.0.1\r\n{}",
            auth(&ts::type3("alice", "web1", 21))
        ),
    ));
    recs.push(a.resp(SEC + 3, 200, ""));
    // Same client again: fine. Another client: one alert per request.
    recs.push(a.req(SEC + 4, "X-Forwarded-For: 10.9.0.1\r\n"));
    recs.push(a.resp(SEC + 5, 200, ""));
    recs.push(a.req(SEC + 6, "X-Forwarded-For: 10.9.0.2\r\n"));
    recs.push(a.resp(SEC + 7, 200, ""));
    recs.push(a.req(SEC + 8, "X-Forwarded-For: 10.9.0.3\r\n"));
    recs.push(a.resp(SEC + 9, 200, ""));
    let v = run(&mut pipeline(false), recs, true);
    assert_eq!(classes(&v), vec![Class::AuthContextReuse; 2], "{v:#?}");
    assert_eq!(v[0].client.forwarded_for.as_deref(), Some("10.9.0.2"));
    assert_eq!(
        v[0].authenticated_client
            .as_ref()
            .unwrap()
            .forwarded_for
            .as_deref(),
        Some("10.9.0.1")
    );
    assert_eq!(v[0].user.as_deref(), Some("alice"));
    assert_eq!(v[0].outcome, Outcome::Success);
    assert_eq!(v[0].status, Some(200));

    // Kerberos with Persistent-Auth: true leaks the same way; without it, nothing.
    for (persist, expect) in [(true, 1), (false, 0)] {
        let mut a = Conn::new(&lb(40010), WEB1, 700);
        let neg = format!(
            "X-Forwarded-For: 10.9.0.1\r\nAuthorization: Negotiate {}\r\n",
            ts::kerberos()
        );
        let recs = vec![
            a.req(SEC, &neg),
            a.resp(
                SEC + 1,
                200,
                if persist {
                    "Persistent-Auth: true\r\n"
                } else {
                    ""
                },
            ),
            a.req(SEC + 2, "X-Forwarded-For: 10.9.0.7\r\n"),
            a.resp(SEC + 3, 200, ""),
        ];
        let v = run(&mut pipeline(false), recs, true);
        assert_eq!(v.len(), expect, "{v:#?}");
        if expect == 1 {
            assert_eq!(v[0].class, Class::AuthContextReuse);
            assert_eq!(v[0].mechanism, Mechanism::Kerberos);
        }
    }
}

#[test]
fn parallel_handshakes_of_one_client_are_healthy() {
    let mut a = Conn::new(&lb(40000), WEB1, 100);
    let mut b = Conn::new(&lb(40001), WEB1, 200);
    let x = "X-Forwarded-For: 10.9.0.1\r\n";
    let recs = vec![
        a.req(SEC, &format!("{x}{}", auth(&ts::type1()))),
        b.req(SEC + 1, &format!("{x}{}", auth(&ts::type1()))),
        b.resp(SEC + 2, 401, &chal(&ts::type2("web1", 31, *b"chal0031"))),
        a.resp(SEC + 3, 401, &chal(&ts::type2("web1", 32, *b"chal0032"))),
        a.req(
            SEC + 4,
            &format!("{x}{}", auth(&ts::type3("alice", "web1", 32))),
        ),
        b.req(
            SEC + 5,
            &format!("{x}{}", auth(&ts::type3("alice", "web1", 31))),
        ),
        a.resp(SEC + 6, 200, ""),
        b.resp(SEC + 7, 200, ""),
    ];
    let mut p = pipeline(true);
    let v = run(&mut p, recs, true);
    assert_eq!(classes(&v), vec![Class::Handshake; 2], "{v:#?}");
}

#[test]
fn five_tuple_reuse_after_a_completed_handshake() {
    let mut a = Conn::new(&lb(40000), WEB1, 100);
    let mut recs = challenge_on(&mut a, SEC, "web1", 41, "X-Forwarded-For: 10.9.0.1\r\n");
    recs.push(a.req(
        SEC + 2,
        &format!(
            "X-Forwarded-For: 10.9.0.1\r\n{}",
            auth(&ts::type3("alice", "web1", 41))
        ),
    ));
    recs.push(a.resp(SEC + 3, 200, ""));
    recs.push(a.fin(SEC + 4, true));
    // Same 5-tuple, new SYN: new generations. Another client's plain request is not reuse,
    // and its own handshake is healthy.
    let mut a2 = Conn::new(&lb(40000), WEB1, 1000);
    recs.push(a2.req(SEC + 5, "X-Forwarded-For: 10.9.0.2\r\n"));
    recs.push(a2.resp(SEC + 6, 401, "WWW-Authenticate: NTLM\r\n"));
    recs.extend(challenge_on(
        &mut a2,
        SEC + 7,
        "web1",
        42,
        "X-Forwarded-For: 10.9.0.2\r\n",
    ));
    recs.push(a2.req(
        SEC + 9,
        &format!(
            "X-Forwarded-For: 10.9.0.2\r\n{}",
            auth(&ts::type3("bob", "web1", 42))
        ),
    ));
    recs.push(a2.resp(SEC + 10, 200, ""));
    let v = run(&mut pipeline(true), recs, true);
    assert_eq!(classes(&v), vec![Class::Handshake; 2], "{v:#?}");
}

#[test]
fn kerberos_retransmission_and_401_retry_are_not_reported() {
    // Kerberos Negotiate, answered 200.
    let mut k = Conn::new(&lb(40020), WEB1, 100);
    let recs = vec![
        k.req(
            SEC,
            &format!("Authorization: Negotiate {}\r\n", ts::kerberos()),
        ),
        k.resp(SEC + 1, 200, ""),
    ];
    assert!(run(&mut pipeline(false), recs, true).is_empty());

    // A retransmitted Type-3 segment.
    let mut a = Conn::new(&lb(40000), WEB1, 200);
    let mut recs = challenge_on(&mut a, SEC, "web1", 51, "");
    let t3 = a.req(SEC + 2, &auth(&ts::type3("alice", "web1", 51)));
    recs.push(t3.clone());
    recs.push(t3);
    recs.push(a.resp(SEC + 3, 200, ""));
    let mut p = pipeline(true);
    let v = run(&mut p, recs, true);
    assert_eq!(classes(&v), vec![Class::Handshake], "{v:#?}");
    assert_eq!(p.reassembly().stats().retransmissions, 1);

    // A failed Type-3 (401), then a new handshake on the same connection that succeeds.
    let mut a = Conn::new(&lb(40001), WEB1, 300);
    let mut recs = challenge_on(&mut a, SEC, "web1", 52, "");
    recs.push(a.req(SEC + 2, &auth(&ts::type3("alice", "web1", 52))));
    recs.push(a.resp(SEC + 3, 401, "WWW-Authenticate: NTLM\r\n"));
    recs.extend(challenge_on(&mut a, SEC + 4, "web1", 53, ""));
    recs.push(a.req(SEC + 6, &auth(&ts::type3("alice", "web1", 53))));
    recs.push(a.resp(SEC + 7, 200, ""));
    let v = run(&mut pipeline(true), recs, true);
    assert_eq!(classes(&v), vec![Class::Handshake; 2], "{v:#?}");
    assert_eq!(v[0].outcome, Outcome::Failure);
    assert_eq!(v[1].outcome, Outcome::Success);
}

#[test]
fn ntlmv1_split_is_proved_by_identity_and_window() {
    let x = "X-Forwarded-For: 10.9.0.1\r\n";
    let mut a = Conn::new(&lb(40000), WEB1, 100);
    let mut b = Conn::new(&lb(40001), WEB2, 200);
    let mut recs = challenge_on(&mut a, SEC, "web1", 61, x);
    recs.push(b.req(SEC + 2, &format!("{x}{}", auth(&ts::type3_v1("alice")))));
    recs.push(b.resp(SEC + 3, 401, ""));
    let v = run(&mut pipeline(false), recs, true);
    assert_eq!(classes(&v), vec![Class::ServerSplit], "{v:#?}");
    assert_eq!(v[0].evidence[0], Evidence::ClientIdentityWindow);
    assert_eq!(
        v[0].logon.map(|l| l.version),
        Some(crate::decode::NtlmVersion::Ntlmv1)
    );
    // NTLMv1 on its own connection is healthy; with no identity and no challenge, orphan.
    let mut a = Conn::new(&lb(40002), WEB1, 300);
    let mut recs = challenge_on(&mut a, SEC, "web1", 62, "");
    recs.push(a.req(SEC + 2, &auth(&ts::type3_v1("alice"))));
    recs.push(a.resp(SEC + 3, 200, ""));
    assert_eq!(
        classes(&run(&mut pipeline(true), recs, true)),
        vec![Class::Handshake]
    );
    let mut b = Conn::new(&lb(40003), WEB2, 400);
    let recs = vec![b.req(SEC, &auth(&ts::type3_v1("alice")))];
    assert_eq!(
        classes(&run(&mut pipeline(false), recs, true)),
        vec![Class::OrphanType3]
    );
}

#[test]
fn proxy_authentication_407_split_from_real_tokens() {
    let (t1, t2, t3) = ts::fixture_legs("curl_proxy_ntlm");
    let mut a = Conn::new(&lb(40000), WEB1, 100);
    let mut b = Conn::new(&lb(40001), WEB2, 200);
    let recs = vec![
        a.req(SEC, &format!("{t1}\r\n")),
        a.resp(SEC + 1, 407, &format!("{t2}\r\n")),
        b.req(SEC + 2, &format!("{t3}\r\n")),
        b.resp(SEC + 3, 407, ""),
    ];
    let v = run(&mut pipeline(false), recs, true);
    assert_eq!(classes(&v), vec![Class::ServerSplit], "{v:#?}");
    assert!(v[0].proxy);
    assert_eq!(v[0].header, Some("Proxy-Authorization"));
    assert_eq!(v[0].outcome, Outcome::Failure);
    assert_eq!(v[0].user.as_deref(), Some("bob"));
}

#[test]
fn type3_naming_another_server_is_a_server_split() {
    // WEB1 is known (it issued a challenge) under the name WEB1; a Type-3 whose AV pairs name
    // WEB2 — a challenge we never saw — reaches WEB1.
    let mut a = Conn::new(&lb(40000), WEB1, 100);
    let mut recs = challenge_on(&mut a, SEC, "web1", 71, "");
    recs.push(a.req(SEC + 2, &auth(&ts::type3("alice", "web1", 71))));
    recs.push(a.resp(SEC + 3, 200, ""));
    let mut c = Conn::new(&lb(40005), WEB1, 500);
    recs.push(c.req(SEC + 4, &auth(&ts::type3("carol", "web2", 72))));
    recs.push(c.resp(SEC + 5, 401, ""));
    let v = run(&mut pipeline(false), recs, true);
    assert_eq!(classes(&v), vec![Class::ServerSplit], "{v:#?}");
    assert_eq!(v[0].evidence, vec![Evidence::ServerNames]);
    let named = v[0]
        .challenge_leg
        .as_ref()
        .unwrap()
        .server_names
        .clone()
        .unwrap();
    assert_eq!(named.nb_computer_name.as_deref(), Some("WEB2"));
}

/// One rendered event per class (docs/events.md shows these); the ECS fields are there.
#[test]
fn every_class_renders_as_ecs_ndjson() {
    let ctx = crate::event::Context::replay(Default::default());
    let x = "X-Forwarded-For: 10.9.0.1\r\nX-Client-Port: 51000\r\n";
    let mut all = Vec::new();
    // server_split (+ handshake) and connection_split, abandoned, orphan, reuse.
    let (t1, t2, t3) = ts::fixture_legs("curl_ntlm");
    let mut a = Conn::new(&lb(40000), WEB1, 100);
    let mut b = Conn::new(&lb(40001), WEB2, 200);
    let recs = vec![
        a.req(1_700_000_000 * SEC, &format!("{x}{t1}\r\n")),
        a.resp(1_700_000_000 * SEC + 1_000_000, 401, &format!("{t2}\r\n")),
        a.fin(1_700_000_000 * SEC + 2_000_000, false),
        b.req(
            1_700_000_000 * SEC + 3_000_000,
            &format!("X-Forwarded-For: 10.9.0.1\r\nX-Client-Port: 51007\r\n{t3}\r\n"),
        ),
        b.resp(
            1_700_000_000 * SEC + 4_000_000,
            401,
            "WWW-Authenticate: NTLM\r\n",
        ),
    ];
    all.extend(run(&mut pipeline(true), recs, true));
    let base = 1_700_000_100 * SEC;
    let mut a = Conn::new(&lb(40002), WEB1, 300);
    let mut c = Conn::new(&lb(40003), WEB1, 400);
    let mut recs = challenge_on(&mut a, base, "web1", 81, x);
    recs.push(c.req(
        base + 5_000_000,
        &format!(
            "X-Forwarded-For: 10.9.0.1\r\nX-Client-Port: 51000\r\n{}",
            auth(&ts::type3("alice", "web1", 81))
        ),
    ));
    recs.push(c.resp(base + 6_000_000, 200, ""));
    recs.push(c.req(
        base + 7_000_000,
        "X-Forwarded-For: 10.9.0.2\r\nX-Client-Port: 52000\r\n",
    ));
    recs.push(c.resp(base + 8_000_000, 200, ""));
    let mut d = Conn::new(&lb(40004), WEB2, 500);
    recs.extend(challenge_on(
        &mut d,
        base + 9_000_000,
        "web2",
        82,
        "X-Forwarded-For: 10.9.0.3\r\n",
    ));
    let mut e = Conn::new(&lb(40005), WEB2, 600);
    recs.push(e.req(
        base + 40 * SEC,
        &format!(
            "X-Forwarded-For: 10.9.0.4\r\n{}",
            auth(&ts::type3_v1("dave"))
        ),
    ));
    recs.push(e.resp(base + 40 * SEC + 1_000_000, 401, ""));
    all.extend(run(&mut pipeline(true), recs, true));
    let mut seen = std::collections::BTreeSet::new();
    for v in &all {
        let j = ctx.verdict(v);
        for f in [
            "@timestamp",
            "event",
            "source",
            "destination",
            "network",
            "ntlm",
            "ntlm_affinity",
            "observer",
        ] {
            assert!(!j[f].is_null(), "{f} missing in {j}");
        }
        assert!(
            j["network"]["community_id"]
                .as_str()
                .unwrap()
                .starts_with("1:")
        );
        if seen.insert(v.class) {
            println!("{j}");
        }
    }
    assert_eq!(seen.len(), 5, "{seen:?}"); // the five violation classes
}

/// Replayed or forged Type-2s sharing one MsvAvTimestamp: each handshake still joins its own
/// connection's challenge, the timestamp index stays bounded, and the duplicates are counted.
#[test]
fn many_challenges_with_one_timestamp_stay_exact_and_bounded() {
    let n = 3 * MAX_SAME_TIMESTAMP;
    let mut recs = Vec::new();
    for i in 0..n as u64 {
        let mut c = Conn::new(&lb(20000 + i as u16), WEB1, 1000 + i * 10);
        let t = SEC + i * 10_000;
        recs.extend(challenge_on(&mut c, t, "web1", 77, ""));
        recs.push(c.req(t + 2000, &auth(&ts::type3("alice", "web1", 77))));
        recs.push(c.resp(t + 3000, 200, ""));
    }
    let mut p = pipeline(true);
    let v = run(&mut p, recs, true);
    assert_eq!(classes(&v), vec![Class::Handshake; n], "{v:#?}");
    assert!(
        v.iter()
            .all(|v| v.evidence.contains(&Evidence::ChallengeKey))
    );
    let stats = &p.correlator().stats;
    assert_eq!(
        stats.duplicate_challenge_timestamps,
        (n - MAX_SAME_TIMESTAMP) as u64
    );
}

/// The identity check (docs/design.md): the kernel learns which connections are
/// authenticated and for whom (the raw last X-Forwarded-For line), and forgets them on a new
/// handshake or a close.
#[test]
fn authenticated_connections_are_handed_to_the_kernel() {
    let mut p = Pipeline::new(pipeline::Config {
        correlate: Config {
            backends: vec!["198.18.1.0/24:80".parse().unwrap()],
            kernel_identity: true,
            ..Config::default()
        },
        site_key: Some(b"test-site".to_vec()),
        ..pipeline::Config::default()
    });
    let mut a = Conn::new(&lb(40000), WEB1, 100);
    let x = "X-Forwarded-For: 10.0.0.1, 10.9.0.1\r\n";
    let mut recs = challenge_on(&mut a, SEC, "web1", 41, x);
    recs.push(a.req(
        SEC + 2,
        &format!("{x}{}", auth(&ts::type3("alice", "web1", 41))),
    ));
    recs.push(a.resp(SEC + 3, 200, ""));
    let v = run(&mut p, recs, false);
    assert!(v.is_empty(), "{v:#?}");
    let key = ts::key(lb(40000).parse().unwrap(), WEB1.parse().unwrap());
    let value = b"10.0.0.1, 10.9.0.1";
    let ups: Vec<AuthUpdate> = p.drain_auth_updates().collect();
    assert_eq!(
        ups,
        vec![AuthUpdate::Set {
            key,
            generation: 100,
            identity: (
                tracker_common::identity::words(value).unwrap(),
                value.len() as u32
            ),
        }]
    );
    // A new handshake on the connection: forgotten at once.
    let recs = vec![
        a.req(SEC + 4, &format!("{x}{}", auth(&ts::type1()))),
        a.resp(SEC + 5, 401, &chal(&ts::type2("web1", 43, *b"chal0043"))),
    ];
    run(&mut p, recs, false);
    assert_eq!(
        p.drain_auth_updates().collect::<Vec<_>>(),
        vec![AuthUpdate::Clear { key }]
    );
    // Kerberos answered with Persistent-Auth: true, then the close.
    let mut b = Conn::new(&lb(40001), WEB2, 300);
    let recs = vec![
        b.req(
            SEC,
            &format!("{x}Authorization: Negotiate {}\r\n", ts::kerberos()),
        ),
        b.resp(SEC + 1, 200, "Persistent-Auth: true\r\n"),
        b.fin(SEC + 2, false),
    ];
    run(&mut p, recs, false);
    let key_b = ts::key(lb(40001).parse().unwrap(), WEB2.parse().unwrap());
    let ups: Vec<AuthUpdate> = p.drain_auth_updates().collect();
    assert!(
        matches!(&ups[..], [AuthUpdate::Set { key, generation: 300, .. }, AuthUpdate::Clear { key: k2 }] if *key == key_b && *k2 == key_b),
        "{ups:?}"
    );
    // Without an X-Forwarded-For the kernel cannot check: nothing is handed over, and the
    // replay pipeline (kernel_identity off) never produces updates.
    let mut c = Conn::new(&lb(40002), WEB1, 500);
    let mut recs = challenge_on(&mut c, SEC, "web1", 42, "");
    recs.push(c.req(SEC + 2, &auth(&ts::type3("alice", "web1", 42))));
    recs.push(c.resp(SEC + 3, 200, ""));
    run(&mut p, recs.clone(), false);
    assert_eq!(p.drain_auth_updates().count(), 0);
    let mut replay = pipeline(false);
    run(&mut replay, recs, false);
    assert_eq!(replay.drain_auth_updates().count(), 0);
}

/// The value of the `n`-th line of `d` ('C' / 'S') that carries a token.
fn fixture_line(name: &str, d: char, n: usize) -> String {
    ts::fixture(name)
        .into_iter()
        .filter(|(x, l)| *x == d && l.split_whitespace().count() >= 3)
        .nth(n)
        .map(|(_, l)| format!("{l}\r\n"))
        .unwrap()
}

/// Issue 12: a real Kerberos logon (MIT KDC, pyspnego) answered with Persistent-Auth: true,
/// then another client's anonymous request: the reuse names the scheme, realm and service
/// principal; the handshake record carries the same cleartext; nothing encrypted leaks.
#[test]
fn kerberos_logon_reuse_names_realm_and_service() {
    let x1 = "X-Forwarded-For: 10.9.0.1\r\n";
    let mut a = Conn::new(&lb(40020), WEB1, 100);
    let ap_req = fixture_line("krb_negotiate_ap_req", 'C', 0);
    let ap_rep = fixture_line("krb_negotiate_ap_req", 'S', 0);
    let recs = vec![
        a.req(SEC, &format!("{x1}{ap_req}")),
        a.resp(SEC + 1, 200, &format!("Persistent-Auth: true\r\n{ap_rep}")),
        a.req(SEC + 2, x1),
        a.resp(SEC + 3, 200, ""),
        a.req(SEC + 4, "X-Forwarded-For: 10.9.0.2\r\n"),
        a.resp(SEC + 5, 200, ""),
    ];
    let mut p = pipeline(true);
    let v = run(&mut p, recs, true);
    assert_eq!(
        classes(&v),
        vec![Class::KerberosHandshake, Class::AuthContextReuse],
        "{v:#?}"
    );
    let k = v[0].kerberos.as_ref().unwrap();
    assert_eq!(k.message, "ap_req");
    assert_eq!(k.realm.as_deref(), Some("LAB.TEST"));
    assert_eq!(k.service_principal.as_deref(), Some("HTTP/www.lab.test"));
    assert_eq!(k.ticket_etype, Some(18));
    assert_eq!(v[0].persistent_auth, Some(true));
    assert_eq!(v[0].outcome, Outcome::Success);
    let r = &v[1];
    assert_eq!(r.mechanism, Mechanism::Kerberos);
    assert_eq!(r.user, None, "the Kerberos user is inside the ticket");
    assert_eq!(
        r.kerberos.as_ref().unwrap().realm.as_deref(),
        Some("LAB.TEST")
    );
    assert_eq!(
        r.authenticated_client
            .as_ref()
            .unwrap()
            .forwarded_for
            .as_deref(),
        Some("10.9.0.1")
    );
    assert_eq!(r.client.forwarded_for.as_deref(), Some("10.9.0.2"));
    let sum = &p.correlator().clients;
    assert_eq!(sum.clients["10.9.0.1"].kerberos, 1);
    // The events: scheme, realm and principal; no token bytes.
    let ctx = crate::event::Context::new(Default::default());
    let text: String = v
        .iter()
        .map(|v| ctx.verdict(v).to_string())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(text.contains("\"auth_scheme\":\"kerberos\""), "{text}");
    assert!(text.contains("HTTP/www.lab.test"), "{text}");
    let token = ap_req.split_whitespace().nth(2).unwrap();
    assert!(!text.contains(&token[..40]), "raw token in an event");
}

/// A KRB-ERROR answer is named in the Kerberos handshake record, and the NTLM that follows
/// on the connection is a fallback with the error's code.
#[test]
fn krb_error_then_ntlm_is_a_fallback_with_the_code() {
    let x = "X-Forwarded-For: 10.9.0.3\r\n";
    let mut a = Conn::new(&lb(40021), WEB1, 100);
    let mut recs = vec![
        a.req(
            SEC,
            &format!("{x}{}", fixture_line("krb_error_bad_kvno", 'C', 0)),
        ),
        a.resp(SEC + 1, 401, &fixture_line("krb_error_bad_kvno", 'S', 0)),
    ];
    recs.extend(challenge_on(&mut a, SEC + 2, "web1", 51, x));
    recs.push(a.req(
        SEC + 4,
        &format!("{x}{}", auth(&ts::type3("alice", "web1", 51))),
    ));
    recs.push(a.resp(SEC + 5, 200, ""));
    let mut p = pipeline(true);
    let v = run(&mut p, recs, true);
    assert_eq!(
        classes(&v),
        vec![Class::KerberosHandshake, Class::Handshake],
        "{v:#?}"
    );
    let k = v[0].kerberos.as_ref().unwrap();
    assert_eq!(k.error_code, Some(44));
    assert_eq!(v[0].outcome, Outcome::Failure);
    let f = v[1].fallback.as_ref().unwrap();
    assert_eq!(
        (f.reason.as_str(), f.krb_error_code),
        ("krb_error", Some(44))
    );
    let sum = &p.correlator().clients.clients["10.9.0.3"];
    // The test's Type-3 asks for neither signing nor sealing.
    assert_eq!((sum.kerberos, sum.ntlm, sum.unsigned), (1, 1, 1));
    assert_eq!(sum.ntlm_reasons[&FallbackReason::KrbError], 1);
    let report = p.correlator().clients.report(5);
    assert_eq!(report.len(), 1);
    assert!(
        report[0].starts_with("10.9.0.3")
            && report[0].ends_with("ntlm 1 [unsigned 1] (krb_error 1)"),
        "{report:?}"
    );
}

/// The fallback reason of each way a client reaches NTLM.
#[test]
fn ntlm_fallback_reasons() {
    let cases = [
        // pyspnego after Kerberos failed (unknown SPN): SPNEGO listing NTLM only.
        (
            fixture_line("krb_fallback_ntlm", 'C', 0),
            "kerberos_not_offered",
            true,
            false,
        ),
        // Windows-like: [MS-KRB5, KRB5, NTLM] with an NTLM mechToken.
        (
            fixture_line("krb_fallback_ntlm", 'C', 1),
            "no_kerberos_ticket",
            true,
            true,
        ),
        // Raw NTLM under the Negotiate scheme, and the NTLM scheme.
        (
            format!("Authorization: Negotiate {}\r\n", ts::type1()),
            "ntlm_direct",
            false,
            false,
        ),
        (auth(&ts::type1()), "ntlm_direct", false, false),
    ];
    for (i, (type1, reason, spnego, offered)) in cases.into_iter().enumerate() {
        let x = "X-Forwarded-For: 10.9.0.4\r\n";
        let mut a = Conn::new(&lb(40030 + i as u16), WEB1, 100);
        let stamp = 60 + i as u64;
        let recs = vec![
            a.req(SEC, &format!("{x}{type1}")),
            a.resp(SEC + 1, 401, &chal(&ts::type2("web1", stamp, *b"chal0060"))),
            a.req(
                SEC + 2,
                &format!("{x}{}", auth(&ts::type3("alice", "web1", stamp))),
            ),
            a.resp(SEC + 3, 200, ""),
        ];
        let v = run(&mut pipeline(true), recs, true);
        assert_eq!(classes(&v), vec![Class::Handshake], "case {i}: {v:#?}");
        let f = v[0].fallback.as_ref().unwrap();
        assert_eq!(
            (f.reason.as_str(), f.spnego, f.kerberos_offered),
            (reason, spnego, offered),
            "case {i}"
        );
    }
    // The server offered NTLM only: the client had no choice.
    let mut a = Conn::new(&lb(40040), WEB1, 100);
    let recs = vec![
        a.req(SEC, ""),
        a.resp(SEC + 1, 401, "WWW-Authenticate: NTLM\r\n"),
        a.req(SEC + 2, &auth(&ts::type1())),
        a.resp(SEC + 3, 401, &chal(&ts::type2("web1", 70, *b"chal0070"))),
        a.req(SEC + 4, &auth(&ts::type3("alice", "web1", 70))),
        a.resp(SEC + 5, 200, ""),
    ];
    let v = run(&mut pipeline(true), recs, true);
    assert_eq!(
        v[0].fallback.as_ref().map(|f| f.reason),
        Some(FallbackReason::ServerOffersNtlmOnly)
    );
}

#[test]
fn client_summary_is_bounded() {
    let mut s = ClientSchemes::default();
    for i in 0..MAX_SUMMARY_CLIENTS + 5 {
        let id = ClientIdentity {
            forwarded_for: Some(format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255)),
            ..ClientIdentity::default()
        };
        s.ntlm(&id, &Verdict::new(Class::Handshake, 1));
    }
    assert_eq!(s.clients.len(), MAX_SUMMARY_CLIENTS);
    assert_eq!(s.other_clients.ntlm, 5);
    let r = s.report(3);
    assert_eq!(r.len(), 4);
    assert!(r[3].contains("more clients"), "{r:?}");
}

/// Hostile Negotiate tokens (indefinite DER length, a length past the end, deep nesting,
/// not base64): counted, reported once per flow, never a panic; the flow goes on.
#[test]
fn hostile_negotiate_tokens_are_reported_once_per_flow() {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let mut deep = vec![0x60u8, 0x80];
    for _ in 0..40 {
        deep.extend_from_slice(&[0xa0, 0x80]);
    }
    let hostile = [
        b64(&[
            0x60, 0x80, 0x06, 0x06, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x02, 0x00, 0x00,
        ]),
        b64(&[0x60, 0x84, 0x7f, 0xff, 0xff, 0xff, 0x06, 0x06]),
        b64(&deep),
        b64(&[0x6e, 0x82, 0x01, 0x00, 0x30]),
        "YII!!not base64!!".to_string(),
    ];
    let mut p = pipeline(false);
    let mut out = Vec::new();
    for (i, tok) in hostile.iter().enumerate() {
        let mut a = Conn::new(&lb(40100 + i as u16), WEB1, 100);
        for n in 0..3 {
            let t = SEC * (n + 1);
            p.push(
                a.req(t, &format!("Authorization: Negotiate {tok}\r\n")),
                &mut out,
            );
            p.push(
                a.resp(t + 1, 401, "WWW-Authenticate: Negotiate\r\n"),
                &mut out,
            );
        }
    }
    p.finish(&mut out);
    let reports: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Output::Message(m) => Some(m),
            Output::Verdict(_) => None,
        })
        .collect();
    assert_eq!(reports.len(), hostile.len(), "one report per flow");
    assert!(
        reports
            .iter()
            .all(|m| matches!(m.token.auth, crate::decode::Auth::Undecodable(_)))
    );
    assert_eq!(
        p.undecodable(),
        3 * hostile.len() as u64,
        "every one counted"
    );
    let ctx = crate::event::Context::new(Default::default());
    let e = ctx.output(&out[0]);
    assert_eq!(e["event"]["action"], "undecodable_token", "{e}");
}

/// IIS authPersistSingleRequest: the server re-challenges every request, so another
/// client's request on the connection is refused, not served as the user: no alert, and
/// the connection is no longer authenticated (the lab's scenario 7b found this).
#[test]
fn a_refused_request_is_no_reuse_and_ends_the_logon() {
    let x1 = "X-Forwarded-For: 10.9.0.1\r\n";
    let mut a = Conn::new(&lb(40050), WEB1, 100);
    let mut recs = challenge_on(&mut a, SEC, "web1", 81, x1);
    recs.push(a.req(
        SEC + 2,
        &format!("{x1}{}", auth(&ts::type3("alice", "web1", 81))),
    ));
    recs.push(a.resp(SEC + 3, 200, ""));
    recs.push(a.req(SEC + 4, "X-Forwarded-For: 10.9.0.2\r\n"));
    recs.push(a.resp(SEC + 5, 401, "WWW-Authenticate: NTLM\r\n"));
    recs.push(a.req(SEC + 6, "X-Forwarded-For: 10.9.0.3\r\n"));
    recs.push(a.resp(SEC + 7, 200, ""));
    let mut p = pipeline(false);
    let v = run(&mut p, recs, true);
    assert!(v.is_empty(), "{v:#?}");
    assert_eq!(p.correlator().stats.reuse_refused, 1);
}

/// The kernel passes the authenticating client's own requests silently, so the daemon sees
/// nothing on such a connection for a long time: it must not forget the logon as idle, or a
/// later request of another client would not be reported.
#[test]
fn a_kernel_checked_connection_is_not_forgotten_as_idle() {
    let mut p = Pipeline::new(pipeline::Config {
        correlate: Config {
            backends: vec!["198.18.1.0/24:80".parse().unwrap()],
            kernel_identity: true,
            idle_ns: 60 * SEC,
            ..Config::default()
        },
        site_key: Some(b"test-site".to_vec()),
        ..pipeline::Config::default()
    });
    let x1 = "X-Forwarded-For: 10.9.0.1\r\n";
    let mut a = Conn::new(&lb(40060), WEB1, 100);
    let mut recs = challenge_on(&mut a, SEC, "web1", 91, x1);
    recs.push(a.req(
        SEC + 2,
        &format!("{x1}{}", auth(&ts::type3("alice", "web1", 91))),
    ));
    recs.push(a.resp(SEC + 3, 200, ""));
    // Ten idle minutes as the daemon sees them (another connection's traffic moves the clock).
    let mut b = Conn::new(&lb(40061), WEB2, 300);
    recs.push(b.req(600 * SEC, "X-A: 1\r\n"));
    recs.push(a.req(601 * SEC, "X-Forwarded-For: 10.9.0.2\r\n"));
    recs.push(a.resp(601 * SEC + 1, 200, ""));
    let v = run(&mut p, recs, true);
    assert_eq!(classes(&v), vec![Class::AuthContextReuse], "{v:#?}");
}

/// A verdict waiting for its response leaves through `emit` however its request ends: pushed
/// out by too many unanswered requests, or with its connection evicted for a new one.
#[test]
fn pending_verdicts_are_emitted_once_and_filtered_like_all_others() {
    let split = |p: &mut Pipeline, a: &mut Conn, b: &mut Conn| {
        let mut recs = challenge_on(a, SEC, "web1", 901, "");
        recs.push(b.req(SEC + 10, &auth(&ts::type3("alice", "web1", 901))));
        run(p, recs, false)
    };

    // The server never answers the Type-3: after MAX_PENDING more requests it goes out.
    let mut p = pipeline(false);
    let mut a = Conn::new(&lb(41000), WEB1, 100);
    let mut b = Conn::new(&lb(41001), WEB2, 200);
    assert!(split(&mut p, &mut a, &mut b).is_empty());
    let more: Vec<_> = (0..MAX_PENDING as u64)
        .map(|i| b.req(SEC + 20 + i, ""))
        .collect();
    let v = run(&mut p, more, false);
    assert_eq!(classes(&v), vec![Class::ServerSplit], "{v:#?}");
    assert_eq!(v[0].outcome, Outcome::Unknown);
    assert_eq!(p.correlator().stats.alerts_of(Class::ServerSplit), 1);
    assert!(run(&mut p, vec![], true).is_empty(), "emitted twice");

    // A healthy handshake pushed out the same way is not an alert: without --handshakes
    // nothing is written.
    let mut p = pipeline(false);
    let mut a = Conn::new(&lb(41002), WEB1, 300);
    let mut recs = challenge_on(&mut a, SEC, "web1", 902, "");
    recs.push(a.req(SEC + 10, &auth(&ts::type3("alice", "web1", 902))));
    recs.extend((0..MAX_PENDING as u64).map(|i| a.req(SEC + 20 + i, "")));
    assert!(run(&mut p, recs, true).is_empty());

    // Connection table full: the evicted connection's waiting verdict is emitted, not lost.
    let mut p = Pipeline::new(pipeline::Config {
        correlate: Config {
            backends: vec!["198.18.1.0/24:80".parse().unwrap()],
            max_conns: 2,
            ..Config::default()
        },
        site_key: Some(b"test-site".to_vec()),
        ..pipeline::Config::default()
    });
    let mut a = Conn::new(&lb(41003), WEB1, 400);
    let mut b = Conn::new(&lb(41004), WEB2, 500);
    assert!(split(&mut p, &mut a, &mut b).is_empty());
    let mut c = Conn::new(&lb(41005), WEB1, 600);
    let mut d = Conn::new(&lb(41006), WEB1, 700);
    let v = run(
        &mut p,
        vec![c.req(SEC + 30, ""), d.req(SEC + 31, "")],
        false,
    );
    assert_eq!(classes(&v), vec![Class::ServerSplit], "{v:#?}");
    assert_eq!(p.correlator().stats.evicted_connections, 2);
    assert_eq!(p.correlator().stats.alerts_of(Class::ServerSplit), 1);
}
