//! A userspace model of the kernel programs (tracker-ebpf `main.rs` `track` and `scan.rs`):
//! turns each captured TCP segment into exactly the records the kernel would emit, so a
//! replay feeds the same pipeline with the same input as the live daemon.
//!
//! Mirrored rules: tracked endpoints (`--backend CIDR:PORT` by address and port, any
//! `--frontend-port`); the flow table (SYN opens a new generation, the first packet of an
//! unknown flow opens a mid-stream one); FIN/RST reported once per direction on a flow that
//! carried NTLM; the auth-header scan anywhere in the header block (case-insensitive names,
//! optional whitespace, `NTLM`/`Negotiate` as a whole word, base64 prefix classification, one
//! match per segment, stop at the blank line); a cut header (or a cut last line that may be an
//! auth header name) puts the flow in capture state for the next `continuation_bytes` by
//! sequence; `RECORD_HTTP` for segments that begin with an HTTP start line on a connection
//! that carried NTLM in either direction; at most `capture_len` payload bytes per record.
//!
//! One deliberate difference: with no tracked endpoint configured, every TCP segment is
//! tracked (a replay convenience; the daemon refuses to track nothing).

use std::collections::HashMap;

use bytes::Bytes;
use tracker_common::{
    CAPTURE_MAX, DEFAULT_CONTINUATION_BYTES, FLOW_CAPTURING, FLOW_CLOSED, FLOW_MIDSTREAM,
    FLOW_NTLM_SEEN, FLOW_OPEN, FlowKey, FlowState, HDR_AUTHORIZATION, HDR_PROXY_AUTHENTICATE,
    HDR_PROXY_AUTHORIZATION, HDR_WWW_AUTHENTICATE, RECORD_CLOSE, RECORD_CONTINUATION, RECORD_HTTP,
    RECORD_MESSAGE, RecordHeader, SCHEME_NEGOTIATE, SCHEME_NTLM, TokenKind, stat,
};

use crate::{endpoint::Backend, record::Record};

const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;

/// What the kernel is configured with.
#[derive(Clone, Debug)]
pub struct ModelConfig {
    pub backends: Vec<Backend>,
    pub frontend_ports: Vec<u16>,
    pub capture_len: u32,
    pub continuation_bytes: u32,
    pub flow_capacity: usize,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            backends: Vec::new(),
            frontend_ports: Vec::new(),
            capture_len: CAPTURE_MAX as u32,
            continuation_bytes: DEFAULT_CONTINUATION_BYTES,
            flow_capacity: tracker_common::DEFAULT_FLOW_CAPACITY as usize,
        }
    }
}

/// A parsed TCP segment (what the kernel's `parse` yields).
#[derive(Clone, Debug)]
pub struct Segment<'a> {
    pub key: FlowKey,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    /// Payload bytes present in the capture.
    pub payload: &'a [u8],
    /// TCP payload length by the IP header (may exceed what the capture holds).
    pub payload_len: u32,
}

pub struct KernelModel {
    cfg: ModelConfig,
    track_all: bool,
    flows: HashMap<FlowKey, FlowState>,
    /// The kernel's STATS counters, same indices.
    pub stats: [u64; stat::COUNT as usize],
    /// Flow entries evicted by the capacity bound (the kernel's LRU does this silently).
    pub flows_evicted: u64,
}

fn addr_of(a: &[u8; 16], family: u8, port: u16) -> std::net::SocketAddr {
    let v6 = std::net::Ipv6Addr::from(*a);
    let ip = match (family, v6.to_ipv4_mapped()) {
        (4, Some(v4)) => std::net::IpAddr::V4(v4),
        _ => std::net::IpAddr::V6(v6),
    };
    std::net::SocketAddr::new(ip, port)
}

impl KernelModel {
    pub fn new(cfg: ModelConfig) -> Self {
        let track_all = cfg.backends.is_empty() && cfg.frontend_ports.is_empty();
        Self {
            cfg,
            track_all,
            flows: HashMap::new(),
            stats: [0; stat::COUNT as usize],
            flows_evicted: 0,
        }
    }

    fn count(&mut self, s: u32) {
        if let Some(c) = self.stats.get_mut(s as usize) {
            *c += 1;
        }
    }

    /// A packet that was not TCP (or not parseable) — counted as the kernel would.
    pub fn not_tcp(&mut self) {
        self.count(stat::PACKETS);
        self.count(stat::NOT_TCP);
    }

    pub fn parse_bail(&mut self) {
        self.count(stat::PACKETS);
        self.count(stat::PARSE_BAIL);
    }

    fn is_backend(&self, addr: &[u8; 16], family: u8, port: u16) -> bool {
        let a = addr_of(addr, family, port);
        self.cfg.backends.iter().any(|b| b.contains(a))
    }

    fn is_tracked(&self, k: &FlowKey) -> bool {
        if self.track_all {
            return true;
        }
        let fp = |p: u16| self.cfg.frontend_ports.contains(&p);
        if fp(k.src_port) || fp(k.dst_port) {
            return true;
        }
        self.is_backend(&k.dst_addr, k.family, k.dst_port)
            || self.is_backend(&k.src_addr, k.family, k.src_port)
    }

    /// Which way the segment crossed the balancer: towards a tracked server (or from a
    /// client to a frontend port) is what the kernel sees on egress / ingress respectively.
    pub fn direction(&self, k: &FlowKey) -> u8 {
        let fp = |p: u16| self.cfg.frontend_ports.contains(&p);
        if fp(k.dst_port) {
            tracker_common::DIR_INGRESS
        } else if fp(k.src_port) {
            tracker_common::DIR_EGRESS
        } else if self.is_backend(&k.src_addr, k.family, k.src_port) {
            tracker_common::DIR_INGRESS
        } else {
            tracker_common::DIR_EGRESS
        }
    }

    fn flow_update(&mut self, seg: &Segment, now: u64) -> FlowState {
        if seg.flags & TCP_SYN == 0
            && let Some(s) = self.flows.get_mut(&seg.key)
        {
            s.last_seen_ns = now;
            return *s;
        }
        let mut flags = FLOW_OPEN;
        if seg.flags & TCP_SYN == 0 {
            flags |= FLOW_MIDSTREAM;
            self.count(stat::FLOW_MIDSTREAM);
            // As the kernel: a mid-stream direction inherits NTLM from its reverse.
            if self
                .flows
                .get(&seg.key.reverse())
                .is_some_and(|r| r.flags & FLOW_NTLM_SEEN != 0)
            {
                flags |= FLOW_NTLM_SEEN;
            }
        } else {
            self.count(stat::FLOW_NEW);
        }
        if !self.flows.contains_key(&seg.key) && self.flows.len() >= self.cfg.flow_capacity {
            if let Some(old) = self
                .flows
                .iter()
                .min_by_key(|(_, s)| s.last_seen_ns)
                .map(|(k, _)| *k)
            {
                self.flows.remove(&old);
                self.flows_evicted += 1;
            }
        }
        let fresh = FlowState {
            generation: now,
            last_seen_ns: now,
            flags,
            ..FlowState::default()
        };
        self.flows.insert(seg.key, fresh);
        fresh
    }

    /// One TCP segment seen at `now` (ns): appends the records the kernel would emit.
    pub fn segment(&mut self, seg: &Segment, now: u64, ifindex: u32, out: &mut Vec<Record>) {
        self.count(stat::PACKETS);
        if !self.is_tracked(&seg.key) {
            self.count(stat::UNTRACKED);
            return;
        }
        self.count(stat::TRACKED);
        let direction = self.direction(&seg.key);
        let mut state = self.flow_update(seg, now);
        let header = |kind: u8, state: &FlowState, copied: u32| RecordHeader {
            timestamp_ns: now,
            generation: state.generation,
            key: seg.key,
            seq: seg.seq,
            ack: seg.ack,
            ifindex,
            payload_len: seg.payload_len,
            captured_len: copied as u16,
            value_offset: 0,
            kind,
            direction,
            header: 0,
            scheme: 0,
            token: 0,
            tcp_flags: seg.flags,
            _pad: [0; 6],
        };
        if seg.flags & (TCP_FIN | TCP_RST) != 0 {
            let first_close = state.flags & FLOW_CLOSED == 0;
            state.flags |= FLOW_CLOSED;
            if first_close && state.flags & FLOW_NTLM_SEEN != 0 {
                self.count(stat::CLOSES);
                let mut h = header(RECORD_CLOSE, &state, 0);
                h.captured_len = 0;
                out.push(Record {
                    header: h,
                    payload: Bytes::new(),
                });
                self.count(stat::EVENTS);
            }
        }
        if seg.payload_len == 0 {
            self.flows.insert(seg.key, state);
            return;
        }
        let max = self.cfg.capture_len.min(CAPTURE_MAX as u32);
        let mut want = seg.payload_len;
        if want > max {
            self.count(stat::CAPTURE_TRUNCATED);
            want = max;
        }
        let copied = (want as usize).min(seg.payload.len());
        if copied == 0 {
            self.count(stat::LOAD_FAILED);
            self.flows.insert(seg.key, state);
            return;
        }
        let data = &seg.payload[..copied];

        let mut continuation = false;
        if state.flags & FLOW_CAPTURING != 0 {
            let rel = seg.seq.wrapping_sub(state.capture_from);
            let window = state.capture_until.wrapping_sub(state.capture_from);
            continuation = rel < window;
            let end = seg.seq.wrapping_add(seg.payload_len);
            if !continuation || end.wrapping_sub(state.capture_from) >= window {
                state.flags &= !FLOW_CAPTURING;
            }
        }

        self.count(stat::SCANNED);
        let ntlm_before = state.flags & FLOW_NTLM_SEEN != 0;
        let found = scan(data);
        if found.matched {
            self.count(stat::MATCHED);
            state.flags |= FLOW_NTLM_SEEN;
            state.messages = state.messages.wrapping_add(1);
            state.last_token = found.token;
            if !ntlm_before {
                if let Some(r) = self.flows.get_mut(&seg.key.reverse()) {
                    r.flags |= FLOW_NTLM_SEEN;
                }
            }
        }
        let http_head = !found.matched && ntlm_before && starts_http(data);
        if continuation || found.matched || found.partial_name_at_end || http_head {
            let kind = if continuation {
                self.count(stat::CONTINUATIONS);
                RECORD_CONTINUATION
            } else if found.matched || found.partial_name_at_end {
                RECORD_MESSAGE
            } else {
                self.count(stat::HTTP_HEADS);
                RECORD_HTTP
            };
            let mut h = header(kind, &state, copied as u32);
            h.header = found.header;
            h.scheme = found.scheme;
            h.token = found.token;
            h.value_offset = found.value_offset;
            out.push(Record {
                header: h,
                payload: Bytes::copy_from_slice(data),
            });
            self.count(stat::EVENTS);
        }
        if (found.matched && !found.line_complete) || found.partial_name_at_end {
            let next = seg.seq.wrapping_add(seg.payload_len);
            state.flags |= FLOW_CAPTURING;
            state.capture_from = next;
            state.capture_until = next.wrapping_add(self.cfg.continuation_bytes);
        }
        self.flows.insert(seg.key, state);
    }

    /// Kernel counters by name, like the live `tracker_stats` record.
    pub fn stats_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        for (i, name) in stat::NAMES.iter().enumerate() {
            m.insert((*name).to_string(), self.stats[i].into());
        }
        m.insert("flows_evicted".into(), self.flows_evicted.into());
        serde_json::Value::Object(m)
    }
}

/// `starts_http` of the kernel: "HTTP/" or three uppercase letters / '_', 8 bytes at least.
pub fn starts_http(d: &[u8]) -> bool {
    if d.len() < 8 {
        return false;
    }
    if d.starts_with(b"HTTP/") {
        return true;
    }
    let upper = |b: u8| b.is_ascii_uppercase() || b == b'_';
    upper(d[0]) && upper(d[1]) && upper(d[2])
}

/// What the kernel's scan found in one segment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Found {
    pub matched: bool,
    pub line_complete: bool,
    pub partial_name_at_end: bool,
    pub header: u8,
    pub scheme: u8,
    pub token: u8,
    pub value_offset: u16,
}

#[derive(Default)]
struct Ctx {
    line: usize,
    matched: bool,
    complete: bool,
    ended: bool,
    found: Found,
}

/// Eight bytes at `off`, ASCII-lowered the kernel's way (`| 0x20`); bytes past the end read
/// as zero (the kernel reads its scratch buffer's slack there).
fn lower8(d: &[u8], off: usize) -> [u8; 8] {
    let mut w = [0u8; 8];
    for (i, b) in w.iter_mut().enumerate() {
        *b = d.get(off + i).copied().unwrap_or(0) | 0x20;
    }
    w
}

fn match_line(d: &[u8], line: usize, c: &mut Ctx) {
    let len = d.len();
    if line + 18 > len {
        return;
    }
    let w0 = lower8(d, line);
    let w1 = lower8(d, line + 8);
    let w2 = lower8(d, line + 16);
    let (header, name_len) = if &w0 == b"authoriz" && &w1[..6] == b"ation:" {
        (HDR_AUTHORIZATION, 14)
    } else if &w0 == b"www-auth" && &w1 == b"enticate" && w2[0] == b':' {
        (HDR_WWW_AUTHENTICATE, 17)
    } else if &w0 == b"proxy-au" && &w1 == b"thorizat" && &w2[..4] == b"ion:" {
        (HDR_PROXY_AUTHORIZATION, 20)
    } else if &w0 == b"proxy-au" && &w1 == b"thentica" && &w2[..3] == b"te:" {
        (HDR_PROXY_AUTHENTICATE, 19)
    } else {
        return;
    };
    let mut v = line + name_len;
    for _ in 0..2 {
        if v < len && (d[v] == b' ' || d[v] == b'\t') {
            v += 1;
        }
    }
    if v + 4 > len {
        return;
    }
    let s0 = lower8(d, v);
    let (scheme, after) = if &s0[..4] == b"ntlm" {
        (SCHEME_NTLM, v + 4)
    } else if v + 9 <= len && &s0 == b"negotiat" && d[v + 8] | 0x20 == b'e' {
        (SCHEME_NEGOTIATE, v + 9)
    } else {
        return;
    };
    let mut token = TokenKind::None as u8;
    let mut t = after;
    if after < len {
        let b = d[after];
        if b == b' ' {
            t = after + 1;
            if t < len {
                token = classify(d, t);
            }
        } else if b != b'\r' && b != b'\n' {
            return;
        }
    }
    c.matched = true;
    c.found.header = header;
    c.found.scheme = scheme;
    c.found.token = token;
    c.found.value_offset = t as u16;
}

fn classify(d: &[u8], t: usize) -> u8 {
    match d.get(t) {
        Some(b'Y') => return TokenKind::GssInit as u8,
        Some(b'o') => return TokenKind::SpnegoResp as u8,
        _ => {}
    }
    if t + 12 <= d.len() && &d[t..t + 8] == b"TlRMTVNT" {
        match &d[t + 8..t + 12] {
            b"UAAB" => return TokenKind::NtlmNegotiate as u8,
            b"UAAC" => return TokenKind::NtlmChallenge as u8,
            b"UAAD" => return TokenKind::NtlmAuthenticate as u8,
            _ => {}
        }
    }
    TokenKind::Other as u8
}

/// The kernel's scan of one copied segment.
pub fn scan(d: &[u8]) -> Found {
    let len = d.len();
    let mut c = Ctx::default();
    match_line(d, 0, &mut c);
    let mut pos = 0usize;
    while pos < len {
        let Some(nl) = memchr::memchr(b'\n', &d[pos..]).map(|p| pos + p) else {
            break;
        };
        pos = nl + 1;
        let line = nl + 1;
        if c.matched {
            c.complete = true;
            break;
        }
        c.line = line;
        if line >= len {
            continue;
        }
        let first = d[line];
        if first == b'\r' || first == b'\n' {
            c.ended = true;
            break;
        }
        // As the kernel: only lines starting like an auth header name are compared.
        if matches!(first | 0x20, b'a' | b'w' | b'p') {
            match_line(d, line, &mut c);
        }
    }
    let mut f = c.found;
    f.matched = c.matched;
    f.line_complete = c.complete;
    if !c.matched && !c.ended && c.line < len {
        let first = d[c.line] | 0x20;
        f.partial_name_at_end = first == b'a' || first == b'w' || first == b'p';
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_mirrors_the_kernel() {
        let f = scan(b"GET / HTTP/1.1\r\nHost: a\r\nAUTHORIZATION:  ntlm TlRMTVNTUAAB\r\n\r\n");
        assert!(f.matched && f.line_complete);
        assert_eq!(
            (f.header, f.scheme, f.token),
            (
                HDR_AUTHORIZATION,
                SCHEME_NTLM,
                TokenKind::NtlmNegotiate as u8
            )
        );
        let f = scan(b"HTTP/1.1 401 X\r\nWWW-Authenticate: Negotiate oYGe");
        assert!(f.matched && !f.line_complete);
        assert_eq!(f.token, TokenKind::SpnegoResp as u8);
        // Not a whole word; other schemes; after the blank line.
        assert!(!scan(b"GET / HTTP/1.1\r\nAuthorization: NTLMX abc\r\n\r\n").matched);
        assert!(!scan(b"GET / HTTP/1.1\r\nAuthorization: Basic abcdefgh\r\n\r\n").matched);
        assert!(!scan(b"GET / HTTP/1.1\r\n\r\nAuthorization: NTLM TlRMTVNTUAAB\r\n").matched);
        // A bare offer ends the line right after the scheme.
        let f = scan(b"HTTP/1.1 401 X\r\nProxy-Authenticate: NTLM\r\n\r\n");
        assert!(f.matched);
        assert_eq!(
            (f.header, f.token),
            (HDR_PROXY_AUTHENTICATE, TokenKind::None as u8)
        );
        // A cut header name at the end.
        let f = scan(b"GET / HTTP/1.1\r\nHost: a\r\nAuthor");
        assert!(!f.matched && f.partial_name_at_end);
        assert!(!scan(b"GET / HTTP/1.1\r\nHost: a\r\n").partial_name_at_end);
    }
}
