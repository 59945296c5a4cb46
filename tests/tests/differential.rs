//! The differential test of the one rule set: thousands of frames through the loaded
//! programs and through replay's kernel model (support/differential.rs compares records,
//! flow entries, authenticated connections and counters after every frame). Frames: the
//! kinds of the in-kernel suite (every auth header and scheme, token kinds, filler headers,
//! IPv6 with extension headers, VLAN tags, cut headers and names, mid-stream flows, FIN/RST,
//! the identity check), then seeded random mutations of them. The lab's scenario captures
//! go through the same harness in scenarios.rs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{
    differential::{Differential, config},
    frames::{self, ACK, FIN, PSH, RST, SYN, Tcp},
};
use tracker_common::FlowKey;

const TYPE1: &str = "TlRMTVNTUAABAAAAB4IIogAAAAAAAAAAAAAAAAAAAAAKAGFKAAAADw==";
const TYPE2: &str = "TlRMTVNTUAACAAAADAAMADgAAAAFgomiESIzRFVmd4gAAAAAAAAAAA==";
const TYPE3: &str = "TlRMTVNTUAADAAAAGAAYAEAAAAAYABgAWAAAAAAAAAAAAAAAAAAAAA==";

/// xorshift64*: seeded, so a failure names the seed that reproduces it.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T: ?Sized>(&mut self, v: &[&'a T]) -> &'a T {
        v[self.below(v.len())]
    }
    fn pick_copy<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len())]
    }
}

const REQUEST_LINES: &[&str] = &[
    "Authorization: NTLM {t1}",
    "Authorization: NTLM {t3}",
    "authorization:negotiate {t3}",
    "AUTHORIZATION:  Negotiate\tYIIGhgYGKwYBBQUCoIIGejCCBnagMDAuBgkqhkiC9xIBAgIGCSqGSIb3EgECAgYKKwYBBAGCNwICHgYKKwYBBAGCNwICCqKCBkAEggY8YIIGOAYJKoZIhvcSAQICAQBuggYnMIIGI6ADAgEFoQMCAQ6iBwMFACAAAACjggR",
    "Authorization: Negotiate YEYGBisGAQUFAqA8MDqgDDAKBgorBgEEAYI3AgIKoioEKE5UTE1TU1AAAQAAAJeCCOIAAAAAAAAAAAAAAAAAAAAACgBjRQAAAA8=",
    "Authorization: Negotiate oYGeMIGboAMKAQGhDAYKKwYBBAGCNwICCqKBhQSBgk5UTE1TU1AAAwAAAA",
    "Proxy-Authorization: NTLM {t3}",
    "Authorization: Basic dXNlcjpwYXNz",
    "Authorization: NTLMX {t1}",
    "Authorization: NTLM",
    "X-Forwarded-For: 198.18.0.10",
    "X-Forwarded-For: 198.18.0.11",
    "Cookie: a=b",
];

const RESPONSE_LINES: &[&str] = &[
    "WWW-Authenticate: NTLM {t2}",
    "WWW-Authenticate: NTLM",
    "WWW-Authenticate: Negotiate",
    "www-authenticate: negotiate oYGeMIGboAMKAQGhDAYKKwYBBAGCNwICCqKBhQSBgk5UTE1TU1AAAgAAAA",
    "Proxy-Authenticate: NTLM {t2}",
    "Persistent-Auth: true",
    "Content-Type: text/html",
];

fn fill(line: &str) -> String {
    line.replace("{t1}", TYPE1)
        .replace("{t2}", TYPE2)
        .replace("{t3}", TYPE3)
}

fn request(rng: &mut Rng) -> Vec<u8> {
    let mut s = String::from(rng.pick(&[
        "GET /ews/exchange.asmx HTTP/1.1\r\n",
        "POST /rpc/rpcproxy.dll HTTP/1.1\r\n",
        "RPC_IN_DATA /rpc HTTP/1.1\r\n",
    ]));
    s.push_str("Host: mail.lab.example\r\n");
    for i in 0..rng.below(22) {
        s.push_str(&format!("X-Filler-{i}: some value that is not auth\r\n"));
    }
    for _ in 0..1 + rng.below(3) {
        s.push_str(&fill(rng.pick(REQUEST_LINES)));
        s.push_str("\r\n");
    }
    if rng.chance(60) {
        s.push_str(&format!(
            "X-Forwarded-For: 198.18.0.{}\r\n",
            10 + rng.below(2)
        ));
    }
    s.push_str("Content-Length: 0\r\n\r\n");
    s.into_bytes()
}

fn response(rng: &mut Rng) -> Vec<u8> {
    let status = rng.pick(&[
        "401 Unauthorized",
        "200 OK",
        "407 Proxy Authentication Required",
    ]);
    let mut s = format!("HTTP/1.1 {status}\r\nServer: Microsoft-IIS/10.0\r\n");
    for _ in 0..rng.below(3) {
        s.push_str(&fill(rng.pick(RESPONSE_LINES)));
        s.push_str("\r\n");
    }
    s.push_str("Content-Length: 0\r\n\r\n");
    s.into_bytes()
}

/// One of the mutations: flipped, lowered or uppercased bytes, inserted line breaks, a cut
/// tail, a header name spliced in, or nothing.
fn mutate(rng: &mut Rng, mut p: Vec<u8>) -> Vec<u8> {
    for _ in 0..rng.below(3) {
        if p.is_empty() {
            break;
        }
        let at = rng.below(p.len());
        match rng.below(7) {
            0 => p[at] ^= 1 << rng.below(8),
            1 => p[at] = p[at].to_ascii_uppercase(),
            2 => p[at] = p[at].to_ascii_lowercase(),
            3 => {
                let ins: &[u8] = rng.pick(&[&b"\r\n"[..], b"\n", b"\r\n\r\n"]);
                p.splice(at..at, ins.iter().copied()).for_each(drop)
            }
            4 => p.truncate(at.max(1)),
            5 => {
                let ins: &[u8] = rng.pick(&[
                    &b"\r\nAuthoriz"[..],
                    b"\r\nWWW-Auth",
                    b"\r\nx-forwarded-for: 1",
                ]);
                p.splice(at..at, ins.iter().copied()).for_each(drop)
            }
            _ => {}
        }
    }
    p
}

/// One connection's endpoints, in either family.
struct Conn {
    v6: bool,
    tags: Vec<u16>,
    ext: Vec<u8>,
    client_port: u16,
    server_port: u16,
    /// Index of the backend address (some are outside the tracked range).
    server: u8,
}

impl Conn {
    fn frame(&self, to_server: bool, tcp: &Tcp, payload: &[u8]) -> Vec<u8> {
        let mut tcp = tcp.clone();
        if !to_server {
            std::mem::swap(&mut tcp.src_port, &mut tcp.dst_port);
        }
        if self.v6 {
            let mut server = frames::SERVER6;
            server[15] = self.server;
            let (s, d) = if to_server {
                (frames::CLIENT6, server)
            } else {
                (server, frames::CLIENT6)
            };
            frames::tcp6(s, d, &self.ext, &tcp, payload)
        } else {
            let server = [198, 18, 1 + (self.server == 99) as u8, self.server];
            let (s, d) = if to_server {
                (frames::CLIENT4, server)
            } else {
                (server, frames::CLIENT4)
            };
            frames::tcp4(&self.tags, s, d, &tcp, payload)
        }
    }

    fn request_key(&self) -> FlowKey {
        let mut server = [198, 18, 1 + (self.server == 99) as u8, self.server];
        if self.v6 {
            let mut s6 = frames::SERVER6;
            s6[15] = self.server;
            let mut k = FlowKey {
                src_addr: frames::CLIENT6,
                dst_addr: s6,
                src_port: self.client_port,
                dst_port: self.server_port,
                family: 6,
                ..FlowKey::default()
            };
            k._pad = [0; 3];
            return k;
        }
        server[0] = 198;
        frames::key4(frames::CLIENT4, self.client_port, server, self.server_port)
    }
}

/// A connection's life: handshake (or not), requests and responses (mutated or split over
/// segments, the identity check switched on and off), then a close.
fn conversation(d: &mut Differential, rng: &mut Rng, n: u16) -> Result<(), String> {
    let v6 = rng.chance(25);
    let conn = Conn {
        v6,
        tags: match rng.below(6) {
            0 => vec![100],
            1 => vec![200, 100],
            _ => vec![],
        },
        ext: if v6 && rng.chance(40) {
            vec![0, 60]
        } else {
            vec![]
        },
        client_port: 20_000 + n,
        server_port: rng.pick_copy(&[80, 80, 80, 8080, 443]),
        server: rng.pick_copy(&[10, 11, 99]),
    };
    let (mut cseq, mut sseq) = (rng.next() as u32, rng.next() as u32);
    let tcp = |seq: u32, ack: u32, flags: u8| {
        let mut t = Tcp::new(conn.client_port, conn.server_port, seq, flags);
        t.ack = ack;
        t
    };
    if rng.chance(85) {
        d.frame(&conn.frame(true, &tcp(cseq, 0, SYN), b""))?;
        d.frame(&conn.frame(false, &tcp(sseq, cseq + 1, SYN | ACK), b""))?;
        cseq += 1;
        sseq += 1;
    }
    for _ in 0..1 + rng.below(5) {
        let req = request(rng);
        let req = mutate(rng, req);
        let cut = req.len() > 20 && rng.chance(30);
        let parts: Vec<&[u8]> = if cut {
            let at = 1 + rng.below(req.len() - 1);
            vec![&req[..at], &req[at..]]
        } else {
            vec![&req[..]]
        };
        for part in parts {
            let mut flags = ACK | PSH;
            if rng.chance(3) {
                flags |= rng.pick_copy(&[FIN, RST, SYN]);
            }
            // Now and then a segment arrives out of order, outside a capture window.
            let seq = if rng.chance(5) {
                cseq.wrapping_add(70_000)
            } else {
                cseq
            };
            d.frame(&conn.frame(true, &tcp(seq, sseq, flags), part))?;
            cseq = cseq.wrapping_add(part.len() as u32);
        }
        if rng.chance(30) {
            let xff = format!("198.18.0.{}", 10 + rng.below(2));
            d.authenticate(conn.request_key(), xff.as_bytes());
        } else if rng.chance(10) {
            d.clear(conn.request_key());
        }
        let resp = response(rng);
        let resp = mutate(rng, resp);
        d.frame(&conn.frame(false, &tcp(sseq, cseq, ACK | PSH), &resp))?;
        sseq = sseq.wrapping_add(resp.len() as u32);
    }
    let close = rng.pick_copy(&[FIN | ACK, RST, FIN | ACK]);
    d.frame(&conn.frame(true, &tcp(cseq, sseq, close), b""))?;
    if rng.chance(50) {
        d.frame(&conn.frame(false, &tcp(sseq, cseq + 1, FIN | ACK), b""))?;
    }
    Ok(())
}

#[test]
fn kernel_and_model_agree_frame_for_frame() {
    if !support::privileged("kernel_and_model_agree_frame_for_frame") {
        return;
    }
    let seed = std::env::var("NTA_DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x0005_eed0_fa11_u64);
    let mut d = Differential::new(&config());
    let mut rng = Rng(seed);
    for n in 0..1500 {
        if let Err(e) = conversation(&mut d, &mut rng, n) {
            panic!(
                "seed {seed:#x}, conversation {n}, after {} frames: {e}",
                d.frames
            );
        }
    }
    println!(
        "differential: {} frames compared ({} skipped), {} records equal",
        d.frames, d.skipped, d.records
    );
    assert!(d.frames >= 10_000, "only {} frames", d.frames);
    assert!(d.records >= 2_000, "only {} records", d.records);
}
