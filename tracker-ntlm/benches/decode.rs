//! Header value → decoded Type-3 / Type-2 (divan). Run:
//! `CARGO_TARGET_DIR=/tmp/target-ntlm cargo bench -p tracker-ntlm --bench decode`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use divan::{Bencher, black_box, counter::ItemsCount};
use tracker_ntlm::{NtlmMessage, parse_auth_header};

fn main() {
    divan::main();
}

fn fixture_line(fixture: &str, prefix: &str) -> (String, String) {
    let path = format!(
        "{}/tests/fixtures/{fixture}.txt",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(path).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains(prefix))
        .unwrap()
        .to_string();
    let rest = &line[2..];
    let (name, value) = rest.split_once(": ").unwrap();
    (name.to_string(), value.to_string())
}

fn decode(name: &str, value: &str) -> NtlmMessage {
    let toks = parse_auth_header(name, value).unwrap();
    toks[0].decode().unwrap().unwrap().ntlm().cloned().unwrap()
}

fn decode_ref(name: &str, value: &str) -> usize {
    let toks = parse_auth_header(name, value).unwrap();
    let tok = toks[0].decode().unwrap().unwrap();
    match tok.ntlm() {
        Some(NtlmMessage::Authenticate(a)) => a.user.as_ref().map_or(0, String::len),
        Some(NtlmMessage::Challenge(c)) => usize::from(c.server_challenge.0[0]),
        _ => 0,
    }
}

#[divan::bench(args = ["pyspnego_ntlm", "curl_ntlm"])]
fn type3_header_to_message(bencher: Bencher, fixture: &str) {
    let (name, value) = fixture_line(fixture, "TlRMTVNTUAAD");
    assert!(matches!(
        decode(&name, &value),
        NtlmMessage::Authenticate(_)
    ));
    bencher
        .counter(ItemsCount::new(1usize))
        .bench(|| decode_ref(black_box(&name), black_box(&value)));
}

#[divan::bench(args = ["pyspnego_negotiate"])]
fn type3_spnego_header_to_message(bencher: Bencher, fixture: &str) {
    // NegTokenResp carrying the Type-3 (the `Negotiate oYIB…` line).
    let (name, value) = fixture_line(fixture, "Negotiate oYIB");
    assert!(matches!(
        decode(&name, &value),
        NtlmMessage::Authenticate(_)
    ));
    bencher
        .counter(ItemsCount::new(1usize))
        .bench(|| decode_ref(black_box(&name), black_box(&value)));
}

#[divan::bench(args = ["pyspnego_ntlm", "curl_ntlm"])]
fn type2_header_to_message(bencher: Bencher, fixture: &str) {
    let (name, value) = fixture_line(fixture, "TlRMTVNTUAAC");
    assert!(matches!(decode(&name, &value), NtlmMessage::Challenge(_)));
    bencher
        .counter(ItemsCount::new(1usize))
        .bench(|| decode_ref(black_box(&name), black_box(&value)));
}

// ---- Kerberos (tests/fixtures/krb_*.txt, real MIT KDC tokens) -----------------------------

/// Token bytes of the first header line of `fixture` containing `prefix`.
fn fixture_bytes(fixture: &str, prefix: &str) -> Vec<u8> {
    let (name, value) = fixture_line(fixture, prefix);
    let toks = parse_auth_header(&name, &value).unwrap();
    toks[0].token.as_ref().unwrap().expose_secret().to_vec()
}

/// A cheap result that depends on the decoded fields (keeps the work observable).
fn kerberos_ref(bytes: &[u8]) -> usize {
    let tok = tracker_ntlm::decode_token(bytes).unwrap();
    let k = tok.kerberos().unwrap();
    k.realm().map_or(0, str::len)
        + k.sname().map_or(0, |s| s.name.len())
        + k.error_code().map_or(0, |c| c.code as usize)
        + k.ap_rep.as_ref().map_or(0, |r| r.enc_part.cipher_len)
}

const KERBEROS: &[(&str, &str, &str)] = &[
    // (label, fixture, header prefix)
    (
        "spnego_ap_req",
        "krb_negotiate_ap_req",
        "Authorization: Negotiate YII",
    ),
    (
        "spnego_ap_rep",
        "krb_negotiate_ap_req",
        "WWW-Authenticate: Negotiate oY",
    ),
    (
        "gss_ap_req",
        "krb_raw_ap_req",
        "Authorization: Negotiate YII",
    ),
    (
        "gss_krb_error",
        "krb_error_modified",
        "WWW-Authenticate: Negotiate YG",
    ),
];

/// Token bytes (after base64) → decoded Kerberos fields.
#[divan::bench(args = ["spnego_ap_req", "spnego_ap_rep", "gss_ap_req", "gss_krb_error"])]
fn kerberos_token_decode(bencher: Bencher, label: &str) {
    let (_, fixture, prefix) = KERBEROS.iter().find(|(l, ..)| *l == label).unwrap();
    let bytes = fixture_bytes(fixture, prefix);
    assert!(kerberos_ref(&bytes) > 0);
    bencher
        .counter(ItemsCount::new(1usize))
        .bench(|| kerberos_ref(black_box(&bytes)));
}

/// Header value (base64 text) → decoded Kerberos fields.
#[divan::bench(args = ["spnego_ap_req", "spnego_ap_rep", "gss_krb_error"])]
fn kerberos_header_to_fields(bencher: Bencher, label: &str) {
    let (_, fixture, prefix) = KERBEROS.iter().find(|(l, ..)| *l == label).unwrap();
    let (name, value) = fixture_line(fixture, prefix);
    let run = |name: &str, value: &str| {
        let toks = parse_auth_header(name, value).unwrap();
        kerberos_ref(toks[0].token.as_ref().unwrap().expose_secret())
    };
    assert!(run(&name, &value) > 0);
    bencher
        .counter(ItemsCount::new(1usize))
        .bench(|| run(black_box(&name), black_box(&value)));
}
