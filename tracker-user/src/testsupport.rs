//! Test-only builders: records of crafted connections, NTLM tokens with chosen AV pairs (the
//! decoder crate's test encoder), Kerberos tokens, and the real header values recorded from
//! curl and pyspnego (tracker-ntlm/tests/fixtures).
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::net::SocketAddr;

use bytes::Bytes;
use tracker_common::{
    DIR_EGRESS, DIR_INGRESS, FlowKey, RECORD_CLOSE, RECORD_HTTP, RECORD_MESSAGE, RecordHeader,
};
use tracker_ntlm::nlmp::{AvPair, FileTime};

#[path = "../../tracker-ntlm/tests/common/encode.rs"]
pub mod encode;

pub const SEC: u64 = 1_000_000_000;

pub fn key(src: SocketAddr, dst: SocketAddr) -> FlowKey {
    let mut k = FlowKey::default();
    let map = |a: SocketAddr| match a.ip() {
        std::net::IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        std::net::IpAddr::V6(v6) => v6.octets(),
    };
    k.src_addr = map(src);
    k.dst_addr = map(dst);
    k.src_port = src.port();
    k.dst_port = dst.port();
    k.family = if src.is_ipv4() { 4 } else { 6 };
    k
}

/// One TCP connection as the kernel reports it (client = the balancer's backend side).
pub struct Conn {
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub gen_c: u64,
    pub gen_s: u64,
    pub seq_c: u32,
    pub seq_s: u32,
}

impl Conn {
    pub fn new(client: &str, server: &str, generation: u64) -> Self {
        Self {
            client: client.parse().unwrap(),
            server: server.parse().unwrap(),
            gen_c: generation,
            gen_s: generation + 1,
            seq_c: 1000,
            seq_s: 5000,
        }
    }

    fn rec(&self, c2s: bool, ts: u64, seq: u32, payload: &[u8]) -> crate::record::Record {
        let text = String::from_utf8_lossy(payload).to_ascii_lowercase();
        let kind = if text.contains(": ntlm") || text.contains(": negotiate") {
            RECORD_MESSAGE
        } else {
            RECORD_HTTP
        };
        let (src, dst) = if c2s {
            (self.client, self.server)
        } else {
            (self.server, self.client)
        };
        crate::record::Record {
            header: RecordHeader {
                timestamp_ns: ts,
                generation: if c2s { self.gen_c } else { self.gen_s },
                key: key(src, dst),
                seq,
                payload_len: payload.len() as u32,
                captured_len: payload.len() as u16,
                kind,
                direction: if c2s { DIR_EGRESS } else { DIR_INGRESS },
                ..Default::default()
            },
            payload: Bytes::copy_from_slice(payload),
        }
    }

    /// A request head (`extra` header lines end with CRLF).
    pub fn req(&mut self, ts: u64, extra: &str) -> crate::record::Record {
        let p = format!("GET /ews/exchange.asmx HTTP/1.1\r\nHost: mail\r\n{extra}\r\n");
        let r = self.rec(true, ts, self.seq_c, p.as_bytes());
        self.seq_c = self.seq_c.wrapping_add(p.len() as u32);
        r
    }

    pub fn resp(&mut self, ts: u64, status: u16, extra: &str) -> crate::record::Record {
        let p = format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\n{extra}\r\n");
        let r = self.rec(false, ts, self.seq_s, p.as_bytes());
        self.seq_s = self.seq_s.wrapping_add(p.len() as u32);
        r
    }

    pub fn fin(&self, ts: u64, from_client: bool) -> crate::record::Record {
        let mut r = self.rec(
            from_client,
            ts,
            if from_client { self.seq_c } else { self.seq_s },
            b"",
        );
        r.header.kind = RECORD_CLOSE;
        r.header.tcp_flags = 0x11;
        r
    }
}

pub fn type1() -> String {
    // No NEGOTIATE_VERSION flag: the message carries no version field.
    encode::b64(&encode::negotiate(0xa008_8207, "", "", None))
}

pub fn names(server: &str) -> Vec<AvPair> {
    vec![
        AvPair::NbComputerName(server.to_uppercase()),
        AvPair::NbDomainName("LAB".into()),
        AvPair::DnsComputerName(format!("{server}.lab.example")),
        AvPair::DnsDomainName("lab.example".into()),
    ]
}

pub fn type2(server: &str, timestamp: u64, challenge: [u8; 8]) -> String {
    let mut ti = names(server);
    ti.push(AvPair::Timestamp(FileTime(timestamp)));
    encode::b64(&encode::challenge(
        0xa28a_8205,
        "LAB",
        challenge,
        Some(&ti),
        None,
    ))
}

/// Fixed, recognisable credential bytes, so the no-leak test can look for them.
pub const NT_PROOF: [u8; 16] = *b"NTPROOF-SECRET!!";
pub const SESSION_KEY: [u8; 16] = *b"SESSKEY-SECRET!!";
pub const LM_V1: [u8; 24] = *b"LMRESPONSE-V1-SECRET-24!";
pub const NT_V1: [u8; 24] = *b"NTRESPONSE-V1-SECRET-24!";

/// An NTLMv2 Type-3 answering the challenge of `server` issued at `timestamp`.
pub fn type3(user: &str, server: &str, timestamp: u64) -> String {
    let mut pairs = names(server);
    pairs.push(AvPair::Timestamp(FileTime(timestamp)));
    let nt = encode::ntlmv2_response(NT_PROOF, timestamp + 7, *b"clientch", &pairs);
    encode::b64(&encode::authenticate(
        0xa288_8205,
        &[0u8; 24],
        &nt,
        "LAB",
        user,
        "WS1",
        &SESSION_KEY,
        None,
        None,
    ))
}

/// An NTLMv1 Type-3 (24-byte responses, no AV pairs).
pub fn type3_v1(user: &str) -> String {
    encode::b64(&encode::authenticate(
        0x0000_8205,
        &LM_V1,
        &NT_V1,
        "LAB",
        user,
        "WS1",
        &SESSION_KEY,
        None,
        None,
    ))
}

pub const KRB5: &str = "1.2.840.113554.1.2.2";

/// A SPNEGO NegTokenInit carrying a (minimal) Kerberos AP-REQ.
pub fn kerberos() -> String {
    let ap_req = encode::gss(KRB5, &[0x01, 0x00, 0x6e, 0x03, 0x02, 0x01, 0x05]);
    encode::b64(&encode::neg_token_init(&[KRB5], Some(&ap_req), None))
}

/// Header lines of a recorded fixture: ('C' | 'S', "Name: value").
pub fn fixture(name: &str) -> Vec<(char, String)> {
    let path = format!(
        "{}/../tracker-ntlm/tests/fixtures/{name}.txt",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| {
            let (d, rest) = l.split_once(' ')?;
            match d {
                "C" => Some(('C', rest.to_string())),
                "S" => Some(('S', rest.to_string())),
                _ => None,
            }
        })
        .collect()
}

/// The token-carrying lines of a fixture, as (Type-1 line, Type-2 line, Type-3 line).
pub fn fixture_legs(name: &str) -> (String, String, String) {
    let lines = fixture(name);
    let with_token = |d: char, skip: usize| {
        lines
            .iter()
            .filter(|(x, l)| *x == d && l.split_whitespace().count() >= 3)
            .nth(skip)
            .map(|(_, l)| l.clone())
            .unwrap()
    };
    (with_token('C', 0), with_token('S', 0), with_token('C', 1))
}
