//! tshark cross-check: capture real handshakes on loopback (curl --ntlm, curl --proxy-ntlm,
//! pyspnego raw NTLM and SPNEGO clients against the pyspnego acceptor of
//! tests/fixtures/gen_fixtures.py), let tshark decode the NTLMSSP fields, decode the header
//! values of the same capture with our decoder, and compare every field tshark reports,
//! message by message.
//!
//! Needs root (capture), tshark, curl, python3 with pyspnego. Without them the test prints
//! a skip notice and passes — unless CI=true, where it fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tracker_ntlm::nlmp::MessageType;
use tracker_ntlm::{NtlmMessage, parse_auth_header};

fn have(cmd: &str, arg: &str) -> bool {
    Command::new(cmd)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn missing_prerequisite() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("not root (capture needs root)".into());
    }
    for (cmd, arg) in [("tshark", "--version"), ("curl", "--version")] {
        if !have(cmd, arg) {
            return Some(format!("{cmd} not found"));
        }
    }
    if !Command::new("python3")
        .args(["-c", "import spnego"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        return Some("python3 with pyspnego not found".into());
    }
    None
}

struct Capture(Child);

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_capture(port: u16, file: &Path) -> Capture {
    let mut child = Command::new("tshark")
        .args([
            "-i",
            "lo",
            "-f",
            &format!("tcp port {port}"),
            "-a",
            "duration:120",
            "-w",
        ])
        .arg(file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tshark");
    // Wait for "Capturing on 'Loopback: lo'".
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("Capturing on") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("tshark did not start capturing");
    std::thread::sleep(Duration::from_millis(500));
    Capture(child)
}

fn stop_capture(mut cap: Capture) {
    let pid = cap.0.id().to_string();
    let _ = Command::new("kill").args(["-INT", &pid]).status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if cap.0.try_wait().unwrap().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("tshark did not stop");
}

const FIELDS: &[&str] = &[
    "frame.number",
    "ntlmssp.messagetype",
    "ntlmssp.ntlmserverchallenge",
    "ntlmssp.auth.username",
    "ntlmssp.auth.domain",
    "ntlmssp.auth.hostname",
    "http.authorization",
    "http.www_authenticate",
    "http.proxy_authorization",
    "http.proxy_authenticate",
];

/// tshark's NULL / empty → None.
fn tshark_str(s: &str) -> Option<String> {
    (!s.is_empty() && s != "NULL").then(|| s.to_string())
}

#[test]
fn tshark_agrees_with_decoder_on_real_handshakes() {
    if let Some(why) = missing_prerequisite() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("tshark cross-check cannot run under CI=true: {why}");
        }
        eprintln!("SKIP tshark_crosscheck: {why}");
        return;
    }
    let dir = std::env::temp_dir().join(format!("ntlm-tshark-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = dir.join("handshakes.pcapng");
    let port = free_port();
    let cap = start_capture(port, &pcap);
    let gen_script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gen_fixtures.py");
    let status = Command::new("python3")
        .arg(&gen_script)
        .args(["--port", &port.to_string(), "--out"])
        .arg(&dir)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "handshake generator failed");
    std::thread::sleep(Duration::from_millis(500));
    stop_capture(cap);

    let mut cmd = Command::new("tshark");
    cmd.arg("-r")
        .arg(&pcap)
        .args(["-d", &format!("tcp.port=={port},http"), "-Y", "ntlmssp"])
        .args([
            "-T",
            "fields",
            "-E",
            "separator=\t",
            "-E",
            "occurrence=a",
            "-E",
            "aggregator=|",
        ]);
    for f in FIELDS {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();

    let mut compared = [0usize; 3];
    for line in text.lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(cols.len(), FIELDS.len(), "{line}");
        let frame = cols[0];
        // Our decoder, on the header values tshark extracted from the same frame.
        let mut ours: Vec<NtlmMessage> = Vec::new();
        for (i, name) in [
            "Authorization",
            "WWW-Authenticate",
            "Proxy-Authorization",
            "Proxy-Authenticate",
        ]
        .iter()
        .enumerate()
        {
            for value in cols[6 + i].split('|').filter(|v| !v.is_empty()) {
                for t in parse_auth_header(name, value).unwrap() {
                    if let Some(tok) = t.decode().unwrap() {
                        ours.extend(tok.ntlm().cloned());
                    }
                }
            }
        }
        let types: Vec<&str> = cols[1].split('|').collect();
        assert_eq!(ours.len(), types.len(), "frame {frame}: message count");
        for (m, ty) in ours.iter().zip(types) {
            let ty = u32::from_str_radix(ty.trim_start_matches("0x"), 16).unwrap();
            assert_eq!(m.message_type() as u32, ty, "frame {frame}: message type");
            match m {
                NtlmMessage::Negotiate(_) => compared[0] += 1,
                NtlmMessage::Challenge(c) => {
                    let theirs = cols[2].replace(':', "");
                    assert_eq!(c.server_challenge.to_string(), theirs, "frame {frame}");
                    compared[1] += 1;
                }
                NtlmMessage::Authenticate(a) => {
                    assert_eq!(a.user, tshark_str(cols[3]), "frame {frame}: user");
                    assert_eq!(a.domain, tshark_str(cols[4]), "frame {frame}: domain");
                    assert_eq!(a.workstation, tshark_str(cols[5]), "frame {frame}: host");
                    compared[2] += 1;
                }
            }
            if m.message_type() != MessageType::Challenge {
                assert!(cols[2].is_empty(), "frame {frame}: challenge on non-Type-2");
            }
        }
    }
    eprintln!(
        "tshark cross-check: {} Type-1, {} Type-2, {} Type-3 compared",
        compared[0], compared[1], compared[2]
    );
    // Six handshakes: curl, curl proxy, pyspnego NTLM, SPNEGO, raw-in-Negotiate, unicode.
    assert_eq!(
        compared,
        [6, 6, 6],
        "every handshake seen by tshark and by us"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
