//! Decode + correlate throughput on one core (target: ≥ 500 k NTLM messages/s, see
//! BENCHMARKS.md): whole handshakes (Type-1, 401 Type-2, Type-3, 200) on distinct backend
//! connections, as kernel records, through reassembly, head parsing, decoding and correlation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../tracker-ntlm/tests/common/encode.rs"]
mod encode;

use bytes::Bytes;
use tracker_common::{DIR_EGRESS, DIR_INGRESS, FlowKey, RECORD_HTTP, RECORD_MESSAGE, RecordHeader};
use tracker_ntlm::nlmp::AvPair;
use tracker_user::{correlate, pipeline, record::Record};

const HANDSHAKES: u32 = 20_000;

fn main() {
    divan::main();
}

fn key(c: u32, to_server: bool) -> FlowKey {
    let mut k = FlowKey::default();
    let lb = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 18, 0, 10];
    let srv = [
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0xff,
        0xff,
        198,
        18,
        1,
        (c % 8) as u8,
    ];
    let port = 10_000 + (c % 50_000) as u16;
    if to_server {
        (k.src_addr, k.dst_addr, k.src_port, k.dst_port) = (lb, srv, port, 80);
    } else {
        (k.src_addr, k.dst_addr, k.src_port, k.dst_port) = (srv, lb, 80, port);
    }
    k.family = 4;
    k
}

fn rec(c: u32, to_server: bool, ts: u64, seq: u32, payload: String) -> Record {
    let kind = if payload.contains(": NTLM") {
        RECORD_MESSAGE
    } else {
        RECORD_HTTP
    };
    Record {
        header: RecordHeader {
            timestamp_ns: ts,
            generation: u64::from(c) * 2 + u64::from(to_server),
            key: key(c, to_server),
            seq,
            payload_len: payload.len() as u32,
            captured_len: payload.len() as u16,
            kind,
            direction: if to_server { DIR_EGRESS } else { DIR_INGRESS },
            ..Default::default()
        },
        payload: Bytes::from(payload),
    }
}

fn records() -> Vec<Record> {
    let mut out = Vec::new();
    for c in 0..HANDSHAKES {
        let server = format!("WEB{}", c % 8);
        let stamp = 133_000_000_000_000_000u64 + u64::from(c);
        let names = [
            AvPair::NbComputerName(server.clone()),
            AvPair::NbDomainName("LAB".into()),
            AvPair::DnsComputerName(format!("{server}.lab.example")),
        ];
        let [t1, t2, t3] = encode::ntlmv2_handshake(&names, stamp);
        let ts = u64::from(c) * 10_000;
        let q1 = format!(
            "GET /ews HTTP/1.1\r\nHost: mail\r\nX-Forwarded-For: 10.0.{}.{}\r\nAuthorization: NTLM {t1}\r\n\r\n",
            c / 250 % 250,
            c % 250
        );
        let r1 = format!(
            "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nWWW-Authenticate: NTLM {t2}\r\n\r\n"
        );
        let q2 = format!(
            "GET /ews HTTP/1.1\r\nHost: mail\r\nX-Forwarded-For: 10.0.{}.{}\r\nAuthorization: NTLM {t3}\r\n\r\n",
            c / 250 % 250,
            c % 250
        );
        let r2 = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_string();
        let (l1, l2) = (q1.len() as u32, r1.len() as u32);
        out.push(rec(c, true, ts, 1, q1));
        out.push(rec(c, false, ts + 1, 1, r1));
        out.push(rec(c, true, ts + 2, 1 + l1, q2));
        out.push(rec(c, false, ts + 3, 1 + l2, r2));
    }
    out
}

/// Items = NTLM messages (3 per handshake).
#[divan::bench(sample_count = 10)]
fn decode_and_correlate(bencher: divan::Bencher) {
    let recs = records();
    bencher
        .counter(divan::counter::ItemsCount::new(HANDSHAKES as usize * 3))
        .with_inputs(|| recs.clone())
        .bench_local_values(|recs| {
            let mut p = pipeline::Pipeline::new(pipeline::Config {
                correlate: correlate::Config {
                    backends: vec!["198.18.1.0/24:80".parse().unwrap()],
                    ..correlate::Config::default()
                },
                site_key: Some(b"bench".to_vec()),
                ..pipeline::Config::default()
            });
            let mut out = Vec::new();
            for r in recs {
                p.push(r, &mut out);
            }
            assert!(out.is_empty(), "{:?}", out.first());
            p
        });
}
