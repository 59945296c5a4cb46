//! Replay tests on captures written here with `pcap-file` from frames built with
//! `etherparse`: every supported link type, pcap and pcapng, truncated / garbage / unsupported
//! files, and the no-credential-leak scan over every output.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{borrow::Cow, path::PathBuf, time::Duration};

use etherparse::PacketBuilder;
use pcap_file::{
    DataLink,
    pcap::{PcapHeader, PcapPacket, PcapWriter},
    pcapng::{
        PcapNgWriter,
        blocks::{
            enhanced_packet::EnhancedPacketBlock,
            interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption},
        },
    },
};

use super::*;
use crate::{
    correlate::{self, Class},
    event::Context,
    pipeline,
    testsupport::{self as ts},
};

const LB: [u8; 4] = [198, 18, 0, 10];
const WEB1: [u8; 4] = [198, 18, 1, 10];
const WEB2: [u8; 4] = [198, 18, 1, 11];

#[derive(Clone, Copy)]
enum L {
    Eth,
    Sll2,
    Raw,
}

fn frame(
    link: L,
    src: ([u8; 4], u16),
    dst: ([u8; 4], u16),
    seq: u32,
    flags: &str,
    payload: &[u8],
) -> Vec<u8> {
    let mut out = Vec::new();
    macro_rules! finish {
        ($b:expr) => {{
            let mut b = $b.tcp(src.1, dst.1, seq, 65535);
            if flags.contains('S') {
                b = b.syn();
            }
            if flags.contains('F') {
                b = b.fin();
            }
            if flags.contains('A') {
                b = b.ack(1);
            }
            if !payload.is_empty() {
                b = b.psh();
            }
            b.write(&mut out, payload).unwrap();
        }};
    }
    match link {
        L::Eth => finish!(
            PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]).ipv4(src.0, dst.0, 64)
        ),
        L::Raw => finish!(PacketBuilder::ipv4(src.0, dst.0, 64)),
        L::Sll2 => {
            let mut hdr = vec![0x08, 0x00, 0, 0, 0, 0, 0, 3, 0, 1, 0, 6];
            hdr.extend([2, 0, 0, 0, 0, 1, 0, 0]);
            finish!(PacketBuilder::ipv4(src.0, dst.0, 64));
            hdr.extend(out);
            return hdr;
        }
    }
    out
}

/// A TCP connection that writes frames into a capture.
struct Tcp {
    c: ([u8; 4], u16),
    s: ([u8; 4], u16),
    cseq: u32,
    sseq: u32,
}

struct Cap {
    link: L,
    t: u64,
    frames: Vec<(u64, Vec<u8>)>,
}

impl Cap {
    fn new(link: L) -> Self {
        Self {
            link,
            t: 1_700_000_000 * ts::SEC,
            frames: Vec::new(),
        }
    }
    fn push(&mut self, f: Vec<u8>) {
        self.t += 1_000_000;
        self.frames.push((self.t, f));
    }
    fn open(&mut self, c: ([u8; 4], u16), s: ([u8; 4], u16)) -> Tcp {
        let t = Tcp {
            c,
            s,
            cseq: 1000,
            sseq: 9000,
        };
        self.push(frame(self.link, c, s, 999, "S", b""));
        self.push(frame(self.link, s, c, 8999, "SA", b""));
        self.push(frame(self.link, c, s, 1000, "A", b""));
        t
    }
    /// Sends `data` from the client in segments of at most `mss` bytes.
    fn send(&mut self, t: &mut Tcp, data: &str, mss: usize) {
        for chunk in data.as_bytes().chunks(mss) {
            self.push(frame(self.link, t.c, t.s, t.cseq, "A", chunk));
            t.cseq = t.cseq.wrapping_add(chunk.len() as u32);
        }
    }
    fn reply(&mut self, t: &mut Tcp, data: &str) {
        self.push(frame(self.link, t.s, t.c, t.sseq, "A", data.as_bytes()));
        t.sseq = t.sseq.wrapping_add(data.len() as u32);
    }
    fn close(&mut self, t: &Tcp) {
        self.push(frame(self.link, t.s, t.c, t.sseq, "FA", b""));
        self.push(frame(self.link, t.c, t.s, t.cseq, "FA", b""));
    }
    fn noise(&mut self) {
        // Untracked TCP and a UDP datagram.
        self.push(frame(
            self.link,
            ([10, 0, 0, 1], 5555),
            ([10, 0, 0, 2], 22),
            1,
            "A",
            b"ssh bytes",
        ));
        let mut udp = Vec::new();
        let b = match self.link {
            L::Eth => PacketBuilder::ethernet2([0; 6], [0; 6])
                .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
                .udp(53, 53),
            _ => return,
        };
        b.write(&mut udp, b"dns").unwrap();
        self.push(udp);
    }

    fn datalink(&self) -> DataLink {
        match self.link {
            L::Eth => DataLink::ETHERNET,
            L::Sll2 => DataLink::LINUX_SLL2,
            L::Raw => DataLink::RAW,
        }
    }

    fn write_pcap(&self, name: &str) -> PathBuf {
        let path = tmp(name);
        let header = PcapHeader {
            datalink: self.datalink(),
            snaplen: 65535,
            ..PcapHeader::default()
        };
        let mut w = PcapWriter::with_header(std::fs::File::create(&path).unwrap(), header).unwrap();
        for (t, f) in &self.frames {
            w.write_packet(&PcapPacket::new(
                Duration::from_nanos(*t),
                f.len() as u32,
                f,
            ))
            .unwrap();
        }
        path
    }

    fn write_pcapng(&self, name: &str) -> PathBuf {
        self.write_pcapng_in(name, Some(9))
    }

    /// A pcapng whose timestamps are in `if_tsresol` units (`None`: the option absent, so
    /// microseconds; `0x80 | r`: 2^-r s).
    fn write_pcapng_in(&self, name: &str, tsresol: Option<u8>) -> PathBuf {
        let path = tmp(name);
        let mut w = PcapNgWriter::new(std::fs::File::create(&path).unwrap()).unwrap();
        w.write_pcapng_block(InterfaceDescriptionBlock {
            linktype: self.datalink(),
            snaplen: 65535,
            options: tsresol
                .map(|r| vec![InterfaceDescriptionOption::IfTsResol(r)])
                .unwrap_or_default(),
        })
        .unwrap();
        let r = tsresol.unwrap_or(6);
        let ticks = |ns: u64| -> u64 {
            if r & 0x80 != 0 {
                ((u128::from(ns) << (r & 0x7f)) / 1_000_000_000) as u64
            } else {
                ns / 10u64.pow(9 - u32::from(r))
            }
        };
        for (t, f) in &self.frames {
            w.write_pcapng_block(EnhancedPacketBlock {
                interface_id: 0,
                // pcap-file writes the Duration's ns as the raw tick count.
                timestamp: Duration::from_nanos(ticks(*t)),
                original_len: f.len() as u32,
                data: Cow::Borrowed(f),
                options: vec![],
            })
            .unwrap();
        }
        path
    }
}

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("nta-replay-{}-{name}", std::process::id()))
}

/// Seed 003-like: the Type-2's connection closes (FIN), the Type-3 reaches another server on
/// a new connection, its header cut over two segments (the kernel's continuation capture).
fn split_capture(link: L) -> Cap {
    let (t1, t2, t3) = ts::fixture_legs("curl_ntlm");
    let mut cap = Cap::new(link);
    cap.noise();
    let mut a = cap.open((LB, 40000), (WEB1, 80));
    cap.send(
        &mut a,
        &format!("GET /ews/exchange.asmx HTTP/1.1\r\nHost: mail\r\n{t1}\r\n\r\n"),
        1448,
    );
    cap.reply(
        &mut a,
        &format!("HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n{t2}\r\n\r\n"),
    );
    cap.close(&a);
    let mut b = cap.open((LB, 40001), (WEB2, 80));
    cap.send(
        &mut b,
        &format!("GET /ews/exchange.asmx HTTP/1.1\r\nHost: mail\r\n{t3}\r\n\r\n"),
        120,
    );
    cap.reply(
        &mut b,
        "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: NTLM\r\nContent-Length: 0\r\n\r\n",
    );
    cap
}

fn config(messages: bool, handshakes: bool) -> pipeline::Config {
    pipeline::Config {
        correlate: correlate::Config {
            backends: vec!["198.18.1.0/24:80".parse().unwrap()],
            handshakes,
            ..correlate::Config::default()
        },
        messages,
        site_key: Some(b"k".to_vec()),
        ..pipeline::Config::default()
    }
}

fn model() -> ModelConfig {
    ModelConfig {
        backends: vec!["198.18.1.0/24:80".parse().unwrap()],
        ..ModelConfig::default()
    }
}

fn replay(
    path: &Path,
    messages: bool,
    handshakes: bool,
) -> (Summary, Option<ReplayError>, Vec<serde_json::Value>) {
    let mut p = Pipeline::new(config(messages, handshakes));
    let ctx = Context::replay(Default::default());
    let mut out = Vec::new();
    let (s, e) = Replayer::new(&mut p, model(), false).run(path, &mut |o| out.push(ctx.output(o)));
    (s, e, out)
}

fn actions(v: &[serde_json::Value]) -> Vec<String> {
    v.iter()
        .map(|e| e["event"]["action"].as_str().unwrap_or("").to_string())
        .collect()
}

/// Microsecond pcapng files (the default when `if_tsresol` is absent) and binary
/// resolutions give the same times, so the same windows and verdicts, as nanosecond ones.
#[test]
fn pcapng_timestamps_follow_if_tsresol() {
    let cap = split_capture(L::Eth);
    let runs: Vec<_> = [Some(9), None, Some(6), Some(0x80 | 20)]
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let (_, err, out) = replay(
                &cap.write_pcapng_in(&format!("tsresol{i}.pcapng"), r),
                true,
                true,
            );
            assert!(err.is_none(), "{r:?}: {err:?}");
            out
        })
        .collect();
    let stamps = |out: &[serde_json::Value]| -> Vec<String> {
        out.iter()
            .map(|e| e["@timestamp"].as_str().unwrap_or("").to_string())
            .collect()
    };
    assert!(!runs[0].is_empty());
    // Microseconds: every event time to the microsecond; 2^-20 s: within a microsecond.
    for other in &runs[1..3] {
        assert_eq!(actions(other), actions(&runs[0]));
        assert_eq!(stamps(other), stamps(&runs[0]));
    }
    assert_eq!(actions(&runs[3]), actions(&runs[0]));
}

#[test]
fn pcap_and_pcapng_on_every_link_type_give_the_split() {
    for (i, link) in [L::Eth, L::Sll2, L::Raw].into_iter().enumerate() {
        let cap = split_capture(link);
        for path in [
            cap.write_pcap(&format!("split{i}.pcap")),
            cap.write_pcapng(&format!("split{i}.pcapng")),
        ] {
            let (s, err, out) = replay(&path, true, false);
            assert!(err.is_none(), "{err:?}");
            let alerts: Vec<_> = out
                .iter()
                .filter(|e| e["event"]["kind"] == "alert")
                .collect();
            assert_eq!(alerts.len(), 1, "{}: {out:#?}", path.display());
            let a = alerts[0];
            assert_eq!(a["event"]["action"], Class::ServerSplit.as_str());
            assert_eq!(a["ntlm_affinity"]["cause"], "connection_closed");
            assert_eq!(a["ntlm_affinity"]["evidence"][0], "challenge_key");
            assert_eq!(a["http"]["response"]["status_code"], 401);
            assert_eq!(a["event"]["outcome"], "failure");
            assert_eq!(a["destination"]["ip"], "198.18.1.11");
            assert_eq!(
                a["ntlm_affinity"]["challenge_leg"]["server"]["ip"],
                "198.18.1.10"
            );
            assert_eq!(a["ntlm_affinity"]["challenge_leg"]["closed"], "fin");
            assert_eq!(a["ntlm"]["username"], "alice");
            assert_eq!(a["ntlm"]["server_nb_computer_name"], "WEB1");
            assert!(
                a["network"]["community_id"]
                    .as_str()
                    .unwrap()
                    .starts_with("1:")
            );
            let msgs: Vec<_> = out
                .iter()
                .filter(|e| e["event"]["action"] == "ntlm_message")
                .collect();
            assert_eq!(msgs.len(), 4, "{}", path.display()); // three tokens and one bare offer
            assert_eq!(msgs[3]["ntlm"]["offer"], true);
            assert_eq!(msgs[2]["ntlm"]["message_type"], "authenticate");
            assert_eq!(s.verdicts.get("server_split"), Some(&1));
            assert!(s.tcp_segments >= 14 && s.records >= 6, "{s:?}");
            let _ = std::fs::remove_file(&path);
        }
    }
}

#[test]
fn truncated_capture_keeps_earlier_verdicts_and_names_the_offset() {
    let cap = split_capture(L::Eth);
    let path = cap.write_pcap("trunc.pcap");
    let mut bytes = std::fs::read(&path).unwrap();
    let full = bytes.len();
    bytes.truncate(full - 10); // inside the last packet (the 401 to the Type-3)
    std::fs::write(&path, &bytes).unwrap();
    let (_, err, out) = replay(&path, false, false);
    let err = err.expect("an error");
    let msg = err.to_string();
    assert!(matches!(err, ReplayError::Truncated { .. }), "{msg}");
    assert!(
        msg.contains(&path.display().to_string()) && msg.contains("offset "),
        "{msg}"
    );
    // The split was decided from what came before; its outcome is unknown.
    assert_eq!(actions(&out), vec!["server_split"]);
    assert_eq!(out[0]["event"]["outcome"], "unknown");
    let _ = std::fs::remove_file(&path);
}

/// A capture cut short while it is being replayed (log rotation, a capture still being
/// written and restarted): the replay ends with a clear error at the offset it reached, not
/// SIGBUS — the file is read in chunks, never mapped.
#[test]
fn a_capture_that_shrinks_during_replay_is_an_error_not_a_crash() {
    let mut cap = split_capture(L::Eth);
    // Past several read chunks, with the handshake at the start.
    while cap.frames.len() < 60_000 {
        cap.noise();
    }
    for fmt in ["pcap", "pcapng"] {
        let path = if fmt == "pcap" {
            cap.write_pcap("shrink.pcap")
        } else {
            cap.write_pcapng("shrink.pcapng")
        };
        let full = std::fs::metadata(&path).unwrap().len();
        assert!(full > 3 * (1 << 20), "{full} bytes");
        let mut p = Pipeline::new(config(true, false));
        let mut cut = false;
        let (_, err) = Replayer::new(&mut p, model(), false).run(&path, &mut |_| {
            if !cut {
                // The first message: truncate the file under the reader.
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .unwrap()
                    .set_len(full / 2)
                    .unwrap();
                cut = true;
            }
        });
        assert!(cut, "{fmt}: no message before the cut");
        let err = err.expect("an error");
        assert!(matches!(err, ReplayError::Truncated { .. }), "{fmt}: {err}");
        let _ = std::fs::remove_file(&path);
    }
}

#[test]
fn garbage_empty_and_unsupported_files_are_clear_errors() {
    let path = tmp("garbage.pcap");
    std::fs::write(&path, b"this is not a capture file at all, just text\n").unwrap();
    let (_, err, out) = replay(&path, false, false);
    let msg = err.unwrap().to_string();
    assert!(
        msg.contains("offset 0") && msg.contains("not a pcap"),
        "{msg}"
    );
    assert!(out.is_empty());
    std::fs::write(&path, b"").unwrap();
    assert!(matches!(
        replay(&path, false, false).1,
        Some(ReplayError::NotCapture { .. })
    ));
    // A pcap of an unsupported link type.
    let header = PcapHeader {
        datalink: DataLink::PPP,
        ..PcapHeader::default()
    };
    let mut w = PcapWriter::with_header(std::fs::File::create(&path).unwrap(), header).unwrap();
    w.write_packet(&PcapPacket::new(Duration::from_secs(1), 4, &[1, 2, 3, 4]))
        .unwrap();
    drop(w);
    let msg = replay(&path, false, false).1.unwrap().to_string();
    assert!(
        msg.contains("unsupported link type") && msg.contains("PPP"),
        "{msg}"
    );
    let missing = tmp("does-not-exist.pcap");
    assert!(matches!(
        replay(&missing, false, false).1,
        Some(ReplayError::Open { .. })
    ));
    let _ = std::fs::remove_file(&path);
}

#[test]
fn garbage_packets_are_counted_never_fatal() {
    let mut cap = split_capture(L::Eth);
    // A frame cut inside its IP header, and random bytes.
    cap.frames.insert(
        2,
        (
            cap.t,
            vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 8, 0, 0x45, 0],
        ),
    );
    cap.frames.insert(3, (cap.t, vec![0xff; 60]));
    let path = cap.write_pcap("junk.pcap");
    let (s, err, out) = replay(&path, false, false);
    assert!(err.is_none());
    assert!(s.unparseable + s.not_tcp >= 2, "{s:?}");
    assert_eq!(actions(&out), vec!["server_split"]);
    let _ = std::fs::remove_file(&path);
}

/// Every output of every scenario (messages, handshakes, alerts) is scanned for the bytes of
/// NT/LM responses, session keys and whole tokens — raw, hex and base64.
#[test]
fn no_credential_material_in_any_output() {
    let mut cap = split_capture(L::Eth);
    let t = |cap: &mut Cap, port: u16, server: [u8; 4], reqs: &[String], resps: &[String]| {
        let mut c = cap.open((LB, port), (server, 80));
        for (q, r) in reqs.iter().zip(resps) {
            cap.send(
                &mut c,
                &format!("GET / HTTP/1.1\r\nHost: a\r\n{q}\r\n"),
                700,
            );
            cap.reply(
                &mut c,
                &format!("HTTP/1.1 {r}\r\nContent-Length: 0\r\n\r\n"),
            );
        }
    };
    let v2 = ts::type3("alice", "web1", 5);
    let v1 = ts::type3_v1("bob");
    t(
        &mut cap,
        41000,
        WEB1,
        &[
            format!("Authorization: NTLM {}\r\n", ts::type1()),
            format!("Authorization: NTLM {v2}\r\n"),
            format!("Authorization: NTLM {v1}\r\n"),
        ],
        &[
            format!(
                "401 X\r\nWWW-Authenticate: NTLM {}",
                ts::type2("web1", 5, *b"chal0005")
            ),
            "200 OK".into(),
            "401 X".into(),
        ],
    );
    let (p1, p2, p3) = ts::fixture_legs("curl_proxy_ntlm");
    t(
        &mut cap,
        41001,
        WEB1,
        &[format!("{p1}\r\n"), format!("{p3}\r\n")],
        &[format!("407 X\r\n{p2}"), "200 OK".into()],
    );
    let path = cap.write_pcap("secrets.pcap");
    let (_, err, out) = replay(&path, true, true);
    assert!(err.is_none());
    assert!(out.len() >= 8, "{out:#?}");
    let text: String = out.iter().map(|e| format!("{e}\n")).collect();

    // Secrets: the crafted ones, and those inside the real Type-3s.
    let mut secrets: Vec<Vec<u8>> = vec![
        ts::NT_PROOF.to_vec(),
        ts::SESSION_KEY.to_vec(),
        ts::LM_V1.to_vec(),
        ts::NT_V1.to_vec(),
    ];
    let mut tokens = vec![v1.clone(), v2.clone()];
    for f in ["curl_ntlm", "curl_proxy_ntlm"] {
        let (_, _, t3) = ts::fixture_legs(f);
        let (name, value) = t3.split_once(": ").unwrap();
        let tok = &tracker_ntlm::parse_auth_header(name, value).unwrap()[0];
        tokens.push(value.split_whitespace().nth(1).unwrap().to_string());
        if let Ok(Some(tracker_ntlm::Token::Ntlm(tracker_ntlm::NtlmMessage::Authenticate(a)))) =
            tok.decode()
        {
            secrets.push(a.nt_response.bytes.expose_secret().to_vec());
            secrets.push(a.lm_response.bytes.expose_secret().to_vec());
            if let Some(k) = &a.session_key {
                secrets.push(k.expose_secret().to_vec());
            }
        }
    }
    use base64::Engine as _;
    for s in secrets
        .iter()
        .filter(|s| s.len() >= 8 && s.iter().any(|b| *b != 0))
    {
        let hex: String = s.iter().map(|b| format!("{b:02x}")).collect();
        let b64 = base64::engine::general_purpose::STANDARD.encode(s);
        let b64 = b64.trim_end_matches('=');
        let raw = String::from_utf8_lossy(s).into_owned();
        for needle in [
            hex.as_str(),
            &hex.to_uppercase(),
            &b64[..b64.len().min(16)],
            &raw,
        ] {
            assert!(
                !text.contains(needle),
                "credential bytes leaked ({needle}) into:\n{text}"
            );
        }
        assert!(!text.as_bytes().windows(s.len()).any(|w| w == &s[..]));
    }
    // No 16-character run of any Type-3's base64 appears either.
    for tok in tokens {
        for i in (0..tok.len().saturating_sub(16)).step_by(8) {
            assert!(
                !text.contains(&tok[i..i + 16]),
                "token text leaked: {}",
                &tok[i..i + 16]
            );
        }
    }
    let _ = std::fs::remove_file(&path);
}
