//! A userspace model of the kernel programs (tracker-ebpf `main.rs` `track`): turns each
//! captured TCP segment into exactly the records the kernel would emit, so a replay feeds the
//! same pipeline with the same input as the live daemon.
//!
//! The rules themselves are not copied here: the scan, the flow-state transitions, the record
//! decision and the identity check are [`tracker_common::scan`] and [`tracker_common::flow`],
//! the same functions the eBPF programs call. This file holds what the kernel gets from its
//! maps: tracked endpoints (`--backend CIDR:PORT` by address and port, any
//! `--frontend-port`), the flow table (an LRU bounded like `FLOWS`, O(1) per segment), the
//! authenticated connections of the identity check (`AUTH_FLOWS`, filled by [`Self::apply`]
//! as the daemon fills the map), and the counters. The differential test
//! (`tests/tests/differential.rs`) runs both on the same frames and compares every record,
//! flow entry and counter.
//!
//! One deliberate difference: with no tracked endpoint configured, every TCP segment is
//! tracked (a replay convenience; the daemon refuses to track nothing).

use bytes::Bytes;
use tracker_common::{
    AuthFlow, CAPTURE_MAX, DEFAULT_AUTH_FLOW_CAPACITY, DEFAULT_CONTINUATION_BYTES, FLOW_NTLM_SEEN,
    FlowKey, FlowState, RECORD_CLOSE, RecordHeader,
    flow::{self, Counters},
    identity,
    scan::{self, HEAD_NONE, HEAD_RESPONSE, Slice},
    stat,
};

use crate::{
    correlate::AuthUpdate,
    endpoint::Backend,
    hashing::{self, KeyedLru, put_bounded},
    record::Record,
};

/// What the kernel is configured with.
#[derive(Clone, Debug)]
pub struct ModelConfig {
    pub backends: Vec<Backend>,
    pub frontend_ports: Vec<u16>,
    pub capture_len: u32,
    pub continuation_bytes: u32,
    pub flow_capacity: usize,
    /// Capacity of the authenticated-connection table (`AUTH_FLOWS`).
    pub auth_flow_capacity: usize,
    /// `Config::identity_key` of the kernel's identity hash.
    pub identity_key: [u64; 2],
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            backends: Vec::new(),
            frontend_ports: Vec::new(),
            capture_len: CAPTURE_MAX as u32,
            continuation_bytes: DEFAULT_CONTINUATION_BYTES,
            flow_capacity: tracker_common::DEFAULT_FLOW_CAPACITY as usize,
            auth_flow_capacity: DEFAULT_AUTH_FLOW_CAPACITY as usize,
            identity_key: [0; 2],
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
    /// `FLOWS`: least recently used first out when full, as the kernel's LRU map (which
    /// picks among the least recently used approximately).
    flows: KeyedLru<FlowKey, FlowState>,
    /// `AUTH_FLOWS`, keyed by the request direction.
    auth_flows: KeyedLru<FlowKey, AuthFlow>,
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
            // Unbounded containers with the bound applied by `put_bounded`: `LruCache::new`
            // would allocate the whole capacity (a million flows) up front.
            flows: hashing::lru(),
            auth_flows: hashing::lru(),
            stats: [0; stat::COUNT as usize],
            flows_evicted: 0,
        }
    }

    fn count(&mut self, s: u32) {
        self.stats.count(s);
    }

    /// The flow entry of one direction, as the kernel's `FLOWS` holds it.
    pub fn flow(&self, key: &FlowKey) -> Option<FlowState> {
        self.flows.peek(key).copied()
    }

    /// Every flow entry, most recently used first.
    pub fn flows(&self) -> impl Iterator<Item = (&FlowKey, &FlowState)> {
        self.flows.iter()
    }

    pub fn auth_flow(&self, key: &FlowKey) -> Option<AuthFlow> {
        self.auth_flows.peek(key).copied()
    }

    /// Applies the daemon's change to the authenticated-connection table, as the live daemon
    /// writes it to `AUTH_FLOWS`.
    pub fn apply(&mut self, update: &AuthUpdate) {
        match update {
            AuthUpdate::Set {
                key: flow,
                generation,
                identity: (words, len),
            } => {
                let entry = AuthFlow {
                    generation: *generation,
                    identity: identity::hash(&self.cfg.identity_key, words, *len),
                    suppressed: 0,
                };
                put_bounded(
                    &mut self.auth_flows,
                    self.cfg.auth_flow_capacity,
                    *flow,
                    entry,
                );
            }
            AuthUpdate::Clear { key: flow } => {
                self.auth_flows.pop(flow);
            }
        }
    }

    /// A packet whose headers did not parse — counted as the kernel would.
    pub fn parse_bail(&mut self) {
        self.count(stat::PARSE_BAIL);
    }

    fn is_backend(&self, addr: &[u8; 16], family: u8, port: u16) -> bool {
        let a = addr_of(addr, family, port);
        self.cfg.backends.iter().any(|b| b.contains(a))
    }

    /// A port in the kernel's `TRACKED_PORTS` (a frontend port, or a backend pool's port).
    fn is_tracked_port(&self, port: u16) -> bool {
        self.cfg.frontend_ports.contains(&port) || self.cfg.backends.iter().any(|b| b.port == port)
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

    /// Inserts a new entry, counting what the bound evicts.
    fn insert_flow(&mut self, key: FlowKey, fresh: FlowState) {
        if put_bounded(&mut self.flows, self.cfg.flow_capacity, key, fresh) {
            self.flows_evicted += 1;
        }
    }

    /// One TCP segment seen at `now` (ns): appends the records the kernel would emit.
    /// Mirrors `track` in the eBPF crate step for step, calling the same `tracker_common::flow`
    /// rules in the same order; kept in that one shape so the two read side by side (the
    /// differential test holds them equal).
    pub fn segment(&mut self, seg: &Segment, now: u64, ifindex: u32, out: &mut Vec<Record>) {
        // Untracked ports pass uncounted, as in the kernel's fast path.
        let from_tracked_port = self.track_all || self.is_tracked_port(seg.key.src_port);
        if !from_tracked_port && !self.is_tracked_port(seg.key.dst_port) {
            return;
        }
        let mut existing = self.flows.get(&seg.key).copied();
        if existing.is_some() && flow::opens_generation(seg.flags) {
            self.flows.pop(&seg.key);
            self.count(stat::FLOWS_REOPENED);
            existing = None;
        }
        let has_entry = existing.is_some();
        // A capture cut shorter than the status line cannot be decided; the kernel always can.
        let start = || seg.payload.get(..flow::STATUS_LINE_BYTES)?.try_into().ok();
        let mut state = match existing {
            Some(s) => s,
            None => {
                if seg.payload_len == 0 {
                    return;
                }
                let blank = FlowState::default();
                if flow::plain_response(&blank, from_tracked_port, seg.payload_len, start) {
                    self.count(stat::PLAIN_RESPONSES);
                    return;
                }
                if !self.is_tracked(&seg.key) {
                    return;
                }
                blank
            }
        };
        self.count(stat::TRACKED);
        let direction = self.direction(&seg.key);
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
        if flow::close(&mut self.stats, &mut state, seg.flags) {
            out.push(Record {
                header: header(RECORD_CLOSE, &state, 0),
                payload: Bytes::new(),
            });
            self.count(stat::EVENTS);
        }
        if seg.payload_len == 0 {
            self.store(seg.key, state);
            return;
        }
        if has_entry && flow::plain_response(&state, from_tracked_port, seg.payload_len, start) {
            self.count(stat::PLAIN_RESPONSES);
            self.store(seg.key, state);
            return;
        }
        let want = flow::copy_len(&mut self.stats, seg.payload_len, self.cfg.capture_len);
        // A capture cut by its snap length has fewer bytes than the kernel would copy.
        let copied = (want as usize).min(seg.payload.len());
        if copied == 0 {
            self.count(stat::LOAD_FAILED);
            self.store(seg.key, state);
            return;
        }
        let data = &seg.payload[..copied];
        let window = Slice(data);
        let continuation = flow::continues_capture(&mut state, seg.seq, seg.payload_len);

        self.count(stat::SCANNED);
        // The kernel's scan, its newlines found with memchr (`scan_lines`: same result).
        let found = scan::scan_lines(data, memchr::memchr_iter(b'\n', data));
        if !has_entry {
            if !flow::creates_entry(&found) {
                return;
            }
            state = flow::new_flow(&mut self.stats, now, 0);
            self.insert_flow(seg.key, state);
        }
        let ntlm_before = state.flags & FLOW_NTLM_SEEN != 0;
        if flow::on_message(&mut self.stats, &mut state, &found) {
            let reverse = seg.key.reverse();
            if let Some(fresh) = flow::mark_reverse(
                &mut self.stats,
                self.flows.peek_mut(&reverse),
                state.generation,
            ) {
                self.insert_flow(reverse, fresh);
            }
        }
        let head = if flow::wants_head(ntlm_before, continuation) {
            scan::http_head(&window, copied as u32)
        } else {
            HEAD_NONE
        };
        let passed_silently = head != HEAD_NONE && {
            let auth_key = if head == HEAD_RESPONSE {
                seg.key.reverse()
            } else {
                seg.key
            };
            let auth_flows = &mut self.auth_flows;
            let key = &self.cfg.identity_key;
            flow::authenticated_pass(
                &mut self.stats,
                || auth_flows.get_mut(&auth_key),
                head,
                state.generation,
                &found,
                |off, len| identity::hash(key, &scan::identity_words(&window, off, len), len),
            )
        };
        let kind = flow::record_kind(&mut self.stats, continuation, &found, head, passed_silently);
        if kind != 0 {
            let len = scan::record_len(&window, &found, copied as u32);
            let mut h = header(kind, &state, len);
            h.header = found.header;
            h.scheme = found.scheme;
            h.token = found.token;
            h.value_offset = found.value_offset;
            out.push(Record {
                header: h,
                payload: Bytes::copy_from_slice(&data[..len as usize]),
            });
            self.count(stat::EVENTS);
        }
        flow::start_capture(
            &mut state,
            &found,
            seg.seq,
            seg.payload_len,
            self.cfg.continuation_bytes,
        );
        self.store(seg.key, state);
    }

    /// Writes a flow's state back (the kernel changes its map entry in place).
    fn store(&mut self, key: FlowKey, state: FlowState) {
        if let Some(s) = self.flows.peek_mut(&key) {
            *s = state;
        }
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tracker_common::{RECORD_HTTP, RECORD_MESSAGE, tcp};

    fn key(client_port: u16) -> FlowKey {
        let mut k = FlowKey {
            family: 4,
            src_port: client_port,
            dst_port: 80,
            ..FlowKey::default()
        };
        k.src_addr[10..].copy_from_slice(&[0xff, 0xff, 198, 18, 0, 1]);
        k.dst_addr[10..].copy_from_slice(&[0xff, 0xff, 198, 18, 1, 10]);
        k
    }

    fn seg(key: FlowKey, flags: u8, seq: u32, payload: &[u8]) -> Segment<'_> {
        Segment {
            key,
            seq,
            ack: 1,
            flags,
            payload,
            payload_len: payload.len() as u32,
        }
    }

    fn model(flow_capacity: usize) -> KernelModel {
        KernelModel::new(ModelConfig {
            backends: vec!["198.18.1.0/24:80".parse().unwrap()],
            flow_capacity,
            identity_key: [3, 4],
            ..ModelConfig::default()
        })
    }

    const TYPE1: &[u8] = b"GET / HTTP/1.1\r\nAuthorization: NTLM TlRMTVNTUAABAAAA\r\n\r\n";

    #[test]
    fn the_least_recently_used_flow_is_evicted_first() {
        let mut m = model(4);
        let mut out = Vec::new();
        // Each Type-1 makes two entries: its own direction and the other.
        m.segment(&seg(key(1), tcp::ACK, 1, TYPE1), 1, 0, &mut out);
        m.segment(&seg(key(2), tcp::ACK, 1, TYPE1), 2, 0, &mut out);
        // Flow 1 is used again, so flow 2 is the least recently used.
        m.segment(&seg(key(1), tcp::ACK, 100, b""), 3, 0, &mut out);
        m.segment(&seg(key(3), tcp::ACK, 1, TYPE1), 4, 0, &mut out);
        assert_eq!(m.flows_evicted, 2);
        assert!(m.flow(&key(1)).is_some() && m.flow(&key(3)).is_some());
        assert!(m.flow(&key(2)).is_none());
        // A SYN removes a known flow's entry; its next auth header makes a new generation.
        m.segment(&seg(key(3), tcp::SYN, 0, b""), 5, 0, &mut out);
        assert!(m.flow(&key(3)).is_none());
        m.segment(&seg(key(3), tcp::ACK, 1, TYPE1), 6, 0, &mut out);
        assert_eq!(
            (m.flows_evicted, m.flow(&key(3)).unwrap().generation),
            (2, 6)
        );
        assert_eq!(m.stats[stat::FLOWS_REOPENED as usize], 1);
    }

    #[test]
    fn syns_acks_and_plain_http_make_no_entries() {
        let mut m = model(8);
        let mut out = Vec::new();
        m.segment(&seg(key(1), tcp::ACK, 1, TYPE1), 1, 0, &mut out);
        for port in 2..10_000u16 {
            let k = key(port);
            m.segment(&seg(k, tcp::SYN, 0, b""), 2, 0, &mut out);
            m.segment(&seg(k, tcp::ACK, 1, b""), 2, 0, &mut out);
            m.segment(
                &seg(k, tcp::ACK, 1, b"GET / HTTP/1.1\r\n\r\n"),
                2,
                0,
                &mut out,
            );
            let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
            m.segment(&seg(k.reverse(), tcp::ACK, 1, ok), 2, 0, &mut out);
        }
        assert_eq!((m.flows().count(), m.flows_evicted), (2, 0));
        assert!(m.flow(&key(1)).is_some() && m.flow(&key(1).reverse()).is_some());
        assert_eq!(out.len(), 1, "only the Type-1");
        assert_eq!(m.stats[stat::FLOWS_CREATED as usize], 2);
    }

    #[test]
    fn the_identity_check_passes_the_authenticating_client_only() {
        let mut m = model(16);
        let k = key(40000);
        let mut out = Vec::new();
        m.segment(&seg(k, tcp::SYN, 0, b""), 1, 0, &mut out);
        m.segment(
            &seg(k.reverse(), tcp::SYN | tcp::ACK, 0, b""),
            1,
            0,
            &mut out,
        );
        let t3 = b"GET / HTTP/1.1\r\nAuthorization: NTLM TlRMTVNTUAADAAAA\r\n\r\n";
        m.segment(&seg(k, tcp::ACK | tcp::PSH, 1, t3), 2, 0, &mut out);
        assert_eq!(out.last().unwrap().header.kind, RECORD_MESSAGE);
        let generation = m.flow(&k).unwrap().generation;
        let xff = b"198.18.0.10";
        m.apply(&AuthUpdate::Set {
            key: k,
            generation,
            identity: (identity::words(xff).unwrap(), xff.len() as u32),
        });
        out.clear();
        let mine = b"GET /a HTTP/1.1\r\nX-Forwarded-For: 198.18.0.10\r\n\r\n";
        let other = b"GET /b HTTP/1.1\r\nX-Forwarded-For: 198.18.0.11\r\n\r\n";
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        let mut seq = 100;
        for req in [&mine[..], &other[..]] {
            m.segment(&seg(k, tcp::ACK | tcp::PSH, seq, req), 3, 0, &mut out);
            m.segment(
                &seg(k.reverse(), tcp::ACK | tcp::PSH, seq, ok),
                3,
                0,
                &mut out,
            );
            seq += 100;
        }
        // The authenticating client's request and its response pass silently; the other
        // client's are delivered.
        let kinds: Vec<_> = out
            .iter()
            .map(|r| (r.header.kind, r.header.direction))
            .collect();
        assert_eq!(kinds.len(), 2, "{kinds:?}");
        assert!(out.iter().all(|r| r.header.kind == RECORD_HTTP));
        assert_eq!(&out[0].payload[..], &other[..]);
        assert_eq!(m.stats[stat::IDENTITY_MATCH as usize], 1);
        assert_eq!(m.stats[stat::IDENTITY_MISMATCH as usize], 1);
        assert_eq!(m.stats[stat::RESPONSES_SUPPRESSED as usize], 1);
        m.apply(&AuthUpdate::Clear { key: k });
        assert!(m.auth_flow(&k).is_none());
    }
}
