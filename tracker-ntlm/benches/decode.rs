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
