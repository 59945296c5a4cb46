//! Synthetic capture for the replay benchmark: many complete NTLM handshakes between clients
//! and backends (SYN, Type-1, 401 + Type-2, Type-3, 200 with a body, FIN), written as a
//! classic pcap (Ethernet). The tokens are the real ones curl and pyspnego exchanged in the
//! decoder's fixtures (lab accounts only). Sizes grow with the body bytes per response, so a
//! few hundred MB take a few seconds to write; nothing here is committed.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::{Context, Result};

use crate::frames::{self, ACK, FIN, PSH, SYN, Tcp};

const FIXTURE: &str = include_str!("../../../tracker-ntlm/tests/fixtures/curl_ntlm.txt");
const MSS: usize = 1448;

/// What to generate.
#[derive(Clone, Debug)]
pub struct CaptureSpec {
    /// Connections, each carrying one full handshake.
    pub handshakes: usize,
    /// Body bytes of the `200` that ends each handshake (cut into MSS segments).
    pub body_bytes: usize,
    /// Backends the connections go to (198.19.0.11 ..), port 80.
    pub backends: usize,
    /// Stop every connection after the Type-2: handshakes left open (no Type-3, no FIN).
    pub open: bool,
}

impl Default for CaptureSpec {
    fn default() -> Self {
        CaptureSpec {
            handshakes: 20_000,
            body_bytes: 16 * 1024,
            backends: 3,
            open: false,
        }
    }
}

/// What was written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CaptureStats {
    pub packets: u64,
    pub bytes: u64,
    /// NTLM messages (3 per handshake: negotiate, challenge, authenticate).
    pub ntlm_messages: u64,
    pub handshakes: u64,
}

/// The three header lines of the fixture handshake: (Type-1 header, Type-2 header, Type-3
/// header), each as `Name: value`.
pub fn fixture_headers() -> Result<(String, String, String)> {
    let mut lines = FIXTURE
        .lines()
        .filter(|l| l.starts_with("C ") || l.starts_with("S "))
        .map(|l| l[2..].to_string());
    let t1 = lines.next().context("fixture: no Type-1 line")?;
    let t2 = lines.next().context("fixture: no Type-2 line")?;
    let t3 = lines.next().context("fixture: no Type-3 line")?;
    Ok((t1, t2, t3))
}

struct Writer {
    out: BufWriter<File>,
    ts_us: u64,
    stats: CaptureStats,
}

impl Writer {
    fn packet(&mut self, frame: &[u8]) -> Result<()> {
        self.ts_us += 7;
        let sec = (1_764_000_000 + self.ts_us / 1_000_000) as u32;
        let usec = (self.ts_us % 1_000_000) as u32;
        let len = frame.len() as u32;
        self.out.write_all(&sec.to_le_bytes())?;
        self.out.write_all(&usec.to_le_bytes())?;
        self.out.write_all(&len.to_le_bytes())?;
        self.out.write_all(&len.to_le_bytes())?;
        self.out.write_all(frame)?;
        self.stats.packets += 1;
        self.stats.bytes += 16 + u64::from(len);
        Ok(())
    }
}

/// One TCP connection's two directions.
struct Conn {
    client: [u8; 4],
    server: [u8; 4],
    cport: u16,
    cseq: u32,
    sseq: u32,
}

impl Conn {
    fn up(&mut self, w: &mut Writer, flags: u8, payload: &[u8]) -> Result<()> {
        let mut t = Tcp::new(self.cport, 80, self.cseq, flags);
        t.ack = self.sseq;
        w.packet(&frames::tcp4(&[], self.client, self.server, &t, payload))?;
        self.cseq = self
            .cseq
            .wrapping_add(payload.len() as u32 + u32::from(flags & (SYN | FIN) != 0));
        Ok(())
    }

    fn down(&mut self, w: &mut Writer, flags: u8, payload: &[u8]) -> Result<()> {
        let mut t = Tcp::new(80, self.cport, self.sseq, flags);
        t.ack = self.cseq;
        w.packet(&frames::tcp4(&[], self.server, self.client, &t, payload))?;
        self.sseq = self
            .sseq
            .wrapping_add(payload.len() as u32 + u32::from(flags & (SYN | FIN) != 0));
        Ok(())
    }
}

/// Writes the capture to `path`.
pub fn generate(path: &Path, spec: &CaptureSpec) -> Result<CaptureStats> {
    let (t1, t2, t3) = fixture_headers()?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = File::create(path).with_context(|| format!("create {}", path.display()))?;
    let mut w = Writer {
        out: BufWriter::with_capacity(1 << 20, file),
        ts_us: 0,
        stats: CaptureStats::default(),
    };
    // pcap global header: magic, v2.4, tz 0, sigfigs 0, snaplen 65535, LINKTYPE_ETHERNET.
    w.out.write_all(&0xa1b2_c3d4u32.to_le_bytes())?;
    w.out.write_all(&2u16.to_le_bytes())?;
    w.out.write_all(&4u16.to_le_bytes())?;
    w.out.write_all(&[0u8; 8])?;
    w.out.write_all(&65535u32.to_le_bytes())?;
    w.out.write_all(&1u32.to_le_bytes())?;

    let body: Vec<u8> = (0..spec.body_bytes)
        .map(|i| b"abcdefghijklmnopqrstuvwxyz0123456789\n"[i % 37])
        .collect();
    let req = |auth: &str, path: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: mail.lab.example\r\nUser-Agent: bench/1.0\r\nAccept: */*\r\nX-Forwarded-For: 198.18.0.10\r\n{auth}\r\n\r\n"
        )
        .into_bytes()
    };
    let resp401 = format!(
        "HTTP/1.1 401 Unauthorized\r\nServer: Microsoft-IIS/10.0\r\n{t2}\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes();
    let resp200 = format!(
        "HTTP/1.1 200 OK\r\nServer: Microsoft-IIS/10.0\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    let backends = spec.backends.max(1);
    for i in 0..spec.handshakes {
        let client = Ipv4Addr::new(198, 18, (i / 50_000 % 200) as u8, 10 + (i % 200) as u8);
        let server = crate::backend_addr(1 + i % backends);
        let mut c = Conn {
            client: client.octets(),
            server: server.octets(),
            cport: 1024 + (i % 60_000) as u16,
            cseq: 1_000_000u32.wrapping_mul(i as u32 + 1),
            sseq: 7_777_777u32.wrapping_mul(i as u32 + 3),
        };
        let path = format!("/ews/exchange.asmx?n={i}");
        c.up(&mut w, SYN, &[])?;
        c.down(&mut w, SYN | ACK, &[])?;
        c.up(&mut w, ACK, &[])?;
        c.up(&mut w, ACK | PSH, &req(&t1, &path))?;
        c.down(&mut w, ACK | PSH, &resp401)?;
        w.stats.handshakes += 1;
        if spec.open {
            w.stats.ntlm_messages += 2;
            continue;
        }
        c.up(&mut w, ACK | PSH, &req(&t3, &path))?;
        // The 200: head in its own segment, then the body in MSS segments.
        c.down(&mut w, ACK | PSH, &resp200)?;
        for (k, chunk) in body.chunks(MSS).enumerate() {
            c.down(&mut w, ACK, chunk)?;
            if k % 2 == 1 {
                c.up(&mut w, ACK, &[])?;
            }
        }
        c.up(&mut w, FIN | ACK, &[])?;
        c.down(&mut w, FIN | ACK, &[])?;
        c.up(&mut w, ACK, &[])?;
        w.stats.ntlm_messages += 3;
    }
    w.out.flush()?;
    Ok(w.stats)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn small_capture_has_the_expected_shape() {
        let dir = std::env::temp_dir().join(format!("nta-pcap-{}", std::process::id()));
        let path = dir.join("t.pcap");
        let spec = CaptureSpec {
            handshakes: 10,
            body_bytes: 4000,
            backends: 2,
            open: false,
        };
        let st = generate(&path, &spec).unwrap();
        assert_eq!(st.handshakes, 10);
        assert_eq!(st.ntlm_messages, 30);
        // 3 SYN, 3 handshake legs, 200 head, 3 body segments + 1 ack, 3 FIN/ACK.
        assert_eq!(st.packets, 10 * 14);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len() as u64, 24 + st.bytes);
        assert_eq!(&bytes[..4], &0xa1b2_c3d4u32.to_le_bytes());
        let (t1, t2, t3) = fixture_headers().unwrap();
        assert!(t1.starts_with("Authorization: NTLM TlRMTVNTUAAB"));
        assert!(t2.starts_with("WWW-Authenticate: NTLM TlRMTVNTUAAC"));
        assert!(t3.starts_with("Authorization: NTLM TlRMTVNTUAAD"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
