//! Crafted Ethernet frames for BPF_PROG_TEST_RUN: IPv4 (with options) and IPv6 (with extension
//! headers), VLAN/QinQ tags, TCP with options, any payload.

pub const CLIENT4: [u8; 4] = [198, 18, 0, 10];
pub const SERVER4: [u8; 4] = [198, 18, 1, 10];
pub const CLIENT6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];
pub const SERVER6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;

#[derive(Clone, Debug)]
pub struct Tcp {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    /// TCP options (padded to 4 bytes).
    pub options: Vec<u8>,
    /// Overrides the data offset (in 32-bit words) to craft hostile segments.
    pub data_offset: Option<u8>,
}

impl Tcp {
    pub fn new(src_port: u16, dst_port: u16, seq: u32, flags: u8) -> Self {
        Self {
            src_port,
            dst_port,
            seq,
            ack: 1,
            flags,
            options: Vec::new(),
            data_offset: None,
        }
    }

    pub fn bytes(&self, payload: &[u8]) -> Vec<u8> {
        let mut opts = self.options.clone();
        while !opts.len().is_multiple_of(4) {
            opts.push(0);
        }
        let doff = self.data_offset.unwrap_or(((20 + opts.len()) / 4) as u8);
        let mut v = Vec::new();
        v.extend_from_slice(&self.src_port.to_be_bytes());
        v.extend_from_slice(&self.dst_port.to_be_bytes());
        v.extend_from_slice(&self.seq.to_be_bytes());
        v.extend_from_slice(&self.ack.to_be_bytes());
        v.push(doff << 4);
        v.push(self.flags);
        v.extend_from_slice(&65535u16.to_be_bytes());
        v.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
        v.extend_from_slice(&opts);
        v.extend_from_slice(payload);
        v
    }
}

/// Ethernet header with optional VLAN tags (outer first; 0x88a8 for 802.1ad).
pub fn ethernet(tags: &[u16], ethertype: u16) -> Vec<u8> {
    let mut v = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
    for (i, vid) in tags.iter().enumerate() {
        let tpid: u16 = if i == 0 && tags.len() > 1 {
            0x88a8
        } else {
            0x8100
        };
        v.extend_from_slice(&tpid.to_be_bytes());
        v.extend_from_slice(&vid.to_be_bytes());
    }
    v.extend_from_slice(&ethertype.to_be_bytes());
    v
}

pub fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, options: &[u8], l4: &[u8]) -> Vec<u8> {
    let ihl = 5 + options.len() / 4;
    let total = (ihl * 4 + l4.len()) as u16;
    let mut v = vec![0x40 | ihl as u8, 0];
    v.extend_from_slice(&total.to_be_bytes());
    v.extend_from_slice(&[0, 1, 0x40, 0, 64, proto, 0, 0]);
    v.extend_from_slice(&src);
    v.extend_from_slice(&dst);
    v.extend_from_slice(options);
    v.extend_from_slice(l4);
    v
}

/// IPv6 with the given extension headers (each: next-header is filled in, 8 bytes long).
pub fn ipv6(src: [u8; 16], dst: [u8; 16], ext: &[u8], proto: u8, l4: &[u8]) -> Vec<u8> {
    let mut chain = Vec::new();
    let mut nexts: Vec<u8> = ext.to_vec();
    nexts.push(proto);
    for (i, kind) in ext.iter().enumerate() {
        let _ = kind;
        let mut h = vec![nexts[i + 1], 0, 0, 0, 0, 0, 0, 0];
        if ext[i] == 44 {
            h[1] = 0; // fragment header: reserved, offset 0
        }
        chain.extend_from_slice(&h);
    }
    let plen = (chain.len() + l4.len()) as u16;
    let mut v = vec![0x60, 0, 0, 0];
    v.extend_from_slice(&plen.to_be_bytes());
    v.push(if ext.is_empty() { proto } else { ext[0] });
    v.push(64);
    v.extend_from_slice(&src);
    v.extend_from_slice(&dst);
    v.extend_from_slice(&chain);
    v.extend_from_slice(l4);
    v
}

/// A full IPv4/TCP frame, optionally VLAN-tagged.
pub fn tcp4(tags: &[u16], src: [u8; 4], dst: [u8; 4], tcp: &Tcp, payload: &[u8]) -> Vec<u8> {
    let mut f = ethernet(tags, 0x0800);
    f.extend_from_slice(&ipv4(src, dst, 6, &[], &tcp.bytes(payload)));
    f
}

pub fn tcp6(src: [u8; 16], dst: [u8; 16], ext: &[u8], tcp: &Tcp, payload: &[u8]) -> Vec<u8> {
    let mut f = ethernet(&[], 0x86dd);
    f.extend_from_slice(&ipv6(src, dst, ext, 6, &tcp.bytes(payload)));
    f
}

/// An HTTP request header block with `extra` filler headers before the given header line.
pub fn request(extra: usize, header_line: &str) -> Vec<u8> {
    let mut s = String::from("GET /ews/exchange.asmx HTTP/1.1\r\nHost: mail.lab.example\r\n");
    for i in 0..extra {
        s.push_str(&format!("X-Filler-{i}: some value that is not auth\r\n"));
    }
    s.push_str(header_line);
    s.push_str("\r\nContent-Length: 0\r\n\r\n");
    s.into_bytes()
}

pub fn response(header_line: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 401 Unauthorized\r\nServer: Microsoft-IIS/10.0\r\n{header_line}\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// The `FLOWS` key of an IPv4 flow, as the kernel builds it (IPv4-mapped addresses).
pub fn key4(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> tracker_common::FlowKey {
    let mut k = tracker_common::FlowKey {
        src_port: sport,
        dst_port: dport,
        family: 4,
        ..tracker_common::FlowKey::default()
    };
    k.src_addr[10..12].copy_from_slice(&[0xff, 0xff]);
    k.src_addr[12..].copy_from_slice(&src);
    k.dst_addr[10..12].copy_from_slice(&[0xff, 0xff]);
    k.dst_addr[12..].copy_from_slice(&dst);
    k
}
