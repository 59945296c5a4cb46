//! Types shared byte for byte by the kernel programs (tracker-ebpf) and the daemon
//! (tracker-user). Every struct is `#[repr(C)]` with explicit padding fields and a
//! compile-time size check, because the two sides are compiled for different targets and must
//! agree on every byte; padding is always written as zero so hash-map keys compare exactly.
#![no_std]

pub mod flow;
pub mod scan;

/// TCP header flag bits (`RecordHeader::tcp_flags`).
pub mod tcp {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
}

/// Names of the kernel object's maps and programs, as the loader and the tests look them
/// up. The eBPF crate's statics carry the same names (a `#[map]` takes its name from the
/// static); a mismatch fails every load in the suite.
pub mod names {
    pub const FLOWS: &str = "FLOWS";
    pub const ENDPOINTS: &str = "ENDPOINTS";
    pub const TRACKED_PORTS: &str = "TRACKED_PORTS";
    /// A read-only global, not a map.
    pub const CONFIG: &str = "CONFIG";
    pub const EVENTS: &str = "EVENTS";
    pub const STATS: &str = "STATS";
    pub const AUTH_FLOWS: &str = "AUTH_FLOWS";
    /// The XDP program (ingress).
    pub const INGRESS_PROGRAM: &str = "ntlm_ingress";
    /// The TC program (egress).
    pub const EGRESS_PROGRAM: &str = "ntlm_egress";
    /// The same ingress program as a tcx (TC) one, for interfaces whose XDP slot is taken.
    pub const INGRESS_TC_PROGRAM: &str = "ntlm_ingress_tc";
    /// Pass-through baselines of the benchmark harness.
    pub const XDP_BASELINE: &str = "pass_xdp";
    pub const TC_BASELINE: &str = "pass_tc";
}

/// Largest payload copy the kernel makes of one segment. The configured capture length
/// (`Config::capture_len`) may only lower it. A power of two: offsets are masked with it.
pub const CAPTURE_MAX: usize = 4096;
/// Slack after the capture buffer so the header scan may read a few bytes past any offset
/// below `CAPTURE_MAX` without a bounds check per byte.
pub const SCAN_SLACK: usize = 128;
/// Default capacity of the `FLOWS` LRU map.
pub const DEFAULT_FLOW_CAPACITY: u32 = 1_000_000;
/// Default size of the `EVENTS` ring buffer in bytes (power of two, multiple of the page).
pub const DEFAULT_RING_BYTES: u32 = 8 << 20;
/// How many bytes after an unfinished auth header the kernel keeps copying, by TCP
/// sequence, so userspace can reassemble a header split over segments.
pub const DEFAULT_CONTINUATION_BYTES: u32 = 16 * 1024;
/// IPv6 extension headers skipped before giving up on a packet.
pub const MAX_IPV6_EXT_HEADERS: usize = 4;

/// Bits of `TRACKED_PORTS[port]`: why a port is interesting.
/// What the ingress program returns for every packet, as `BPF_PROG_TEST_RUN` reports it.
pub const XDP_PASS: u32 = 2;
/// What the egress program returns for every packet: `TC_ACT_UNSPEC` (-1), which tcx takes
/// as "next program" so those after ours still run (docs/design.md, "Where it runs").
pub const TC_ACT_UNSPEC: u32 = -1i32 as u32;

pub const PORT_BACKEND: u8 = 1;
pub const PORT_FRONTEND: u8 = 2;

/// `ENDPOINTS` LPM-trie key data: the backend's port (network order) followed by its
/// address as IPv6 (IPv4 as `::ffff:a.b.c.d`). Prefix length counts the port's 16 bits.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EndpointKey {
    pub port: [u8; 2],
    pub addr: [u8; 16],
}
const _: () = assert!(core::mem::size_of::<EndpointKey>() == 18);

/// Directional TCP 5-tuple (the protocol is always TCP). Addresses as IPv6, IPv4 mapped.
/// Ports in host order. 8-aligned so the kernel fills the addresses with word stores: at
/// byte alignment LLVM called the BPF `memset`/`memmove` (byte loops) for them.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FlowKey {
    pub src_addr: [u8; 16],
    pub dst_addr: [u8; 16],
    pub src_port: u16,
    pub dst_port: u16,
    /// 4 or 6: what the packet really carried (mapped addresses hide it otherwise).
    pub family: u8,
    pub _pad: [u8; 3],
}
const _: () = assert!(core::mem::size_of::<FlowKey>() == 40);

/// Five words, not the derived field by field (eight hasher calls, two with length prefixes):
/// userspace hashes a flow key several times per record.
impl core::hash::Hash for FlowKey {
    fn hash<H: core::hash::Hasher>(&self, h: &mut H) {
        let [s0, s1] = bytes_to_words(&self.src_addr);
        let [d0, d1] = bytes_to_words(&self.dst_addr);
        let tail = u64::from(self.src_port)
            | u64::from(self.dst_port) << 16
            | u64::from(self.family) << 32
            | u64::from(self._pad[0]) << 40
            | u64::from(self._pad[1]) << 48
            | u64::from(self._pad[2]) << 56;
        for w in [s0, s1, d0, d1, tail] {
            h.write_u64(w);
        }
    }
}

impl FlowKey {
    /// Fills the addresses and family from an IPv4 header's source and destination, as
    /// IPv4-mapped IPv6 addresses.
    #[inline(always)]
    pub fn set_ipv4(&mut self, src: [u8; 4], dst: [u8; 4]) {
        // ::ffff:a.b.c.d — bytes 10 and 11 are 0xff.
        let mapped = |a: [u8; 4]| [0u64, 0xffff_0000 | (u64::from(u32::from_le_bytes(a)) << 32)];
        self.set_words(mapped(src), mapped(dst), 4);
    }

    /// Fills the addresses and family from an IPv6 header's source and destination.
    #[inline(always)]
    pub fn set_ipv6(&mut self, src: &[u8; 16], dst: &[u8; 16]) {
        self.set_words(bytes_to_words(src), bytes_to_words(dst), 6);
    }

    /// Five word stores, volatile so LLVM does not merge them into a `memset`/`memmove`: in
    /// the kernel those are BPF functions that loop over bytes.
    #[inline(always)]
    fn set_words(&mut self, src: [u64; 2], dst: [u64; 2], family: u8) {
        let p = self as *mut Self as *mut u64;
        // SAFETY: FlowKey is 40 bytes, 8-aligned: words 0..4 are the addresses, and the
        // 4-byte word at offset 36 holds `family` and the three padding bytes.
        unsafe {
            core::ptr::write_volatile(p, src[0]);
            core::ptr::write_volatile(p.add(1), src[1]);
            core::ptr::write_volatile(p.add(2), dst[0]);
            core::ptr::write_volatile(p.add(3), dst[1]);
            core::ptr::write_volatile((p as *mut u32).add(9), u32::from(family));
        }
    }

    /// The other direction of the same connection.
    #[inline(always)]
    pub fn reverse(&self) -> Self {
        Self {
            src_addr: self.dst_addr,
            dst_addr: self.src_addr,
            src_port: self.dst_port,
            dst_port: self.src_port,
            family: self.family,
            _pad: [0; 3],
        }
    }
}

impl FlowKey {
    /// The `FLOWS` key of this direction: 16 bytes instead of 40, because at a million flows
    /// every key byte is a megabyte of kernel memory. IPv4 keeps both addresses exactly; an
    /// IPv6 pair becomes its SipHash under the daemon's per-start secret, so a remote party
    /// that picks addresses still cannot aim a collision at another flow. Ports stay exact.
    #[inline(always)]
    pub fn id(&self, secret: &[u64; 2]) -> FlowId {
        flow_id(
            secret,
            &self.src_addr,
            &self.dst_addr,
            self.src_port,
            self.dst_port,
            self.family,
        )
    }

    /// The `FLOWS` key of the other direction.
    #[inline(always)]
    pub fn reverse_id(&self, secret: &[u64; 2]) -> FlowId {
        flow_id(
            secret,
            &self.dst_addr,
            &self.src_addr,
            self.dst_port,
            self.src_port,
            self.family,
        )
    }
}

#[inline(always)]
fn bytes_to_words(a: &[u8; 16]) -> [u64; 2] {
    let w = |i: usize| {
        u64::from_le_bytes([
            a[i],
            a[i + 1],
            a[i + 2],
            a[i + 3],
            a[i + 4],
            a[i + 5],
            a[i + 6],
            a[i + 7],
        ])
    };
    [w(0), w(8)]
}

#[inline(always)]
fn flow_id(
    secret: &[u64; 2],
    src: &[u8; 16],
    dst: &[u8; 16],
    src_port: u16,
    dst_port: u16,
    family: u8,
) -> FlowId {
    let (s, d) = (bytes_to_words(src), bytes_to_words(dst));
    let addrs = if family == 4 {
        // The mapped IPv4 addresses are the last four bytes of each.
        (s[1] >> 32) | (d[1] & 0xffff_ffff_0000_0000)
    } else {
        identity::hash_words(secret, &[s[0], s[1], d[0], d[1]], 32)
    };
    FlowId {
        addrs,
        src_port,
        dst_port,
        family: family as u32,
    }
}

/// Key of the `FLOWS` map ([`FlowKey::id`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FlowId {
    /// IPv4: source address in the low half, destination in the high half; IPv6: keyed hash.
    pub addrs: u64,
    pub src_port: u16,
    pub dst_port: u16,
    pub family: u32,
}
const _: () = assert!(core::mem::size_of::<FlowId>() == 16);

/// `FlowState::flags` bits.
pub const FLOW_OPEN: u32 = 1 << 0;
pub const FLOW_CLOSED: u32 = 1 << 1;
/// The flow carried at least one NTLM/Negotiate message: its close is reported.
pub const FLOW_NTLM_SEEN: u32 = 1 << 2;
/// Segments in `[capture_from, capture_until)` are copied to userspace.
pub const FLOW_CAPTURING: u32 = 1 << 3;

/// Value of the `FLOWS` map, one per direction of a connection. Only what the rules read:
/// with a million entries every byte here is a megabyte of kernel memory.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FlowState {
    /// Identifies one use of the 5-tuple: the kernel time the entry was made (the flow's
    /// first auth header, or the other direction's). A SYN removes the entry, so a reused
    /// 5-tuple gets a new generation.
    pub generation: u64,
    pub flags: u32,
    pub capture_from: u32,
    pub capture_until: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<FlowState>() == 24);

/// What the base64 prefix of a header value says, without decoding it ([`scan::classify`];
/// docs/ntlm.md, "Token prefixes").
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// The scheme alone, no token (`WWW-Authenticate: NTLM`).
    None = 0,
    NtlmNegotiate = 1,
    NtlmChallenge = 2,
    NtlmAuthenticate = 3,
    /// `YA`..`YI`: GSS-API initial token (SPNEGO NegTokenInit or a bare Kerberos AP-REQ).
    GssInit = 4,
    /// `o…`: SPNEGO NegTokenResp.
    SpnegoResp = 5,
    Other = 6,
}

impl TokenKind {
    pub fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::None,
            1 => Self::NtlmNegotiate,
            2 => Self::NtlmChallenge,
            3 => Self::NtlmAuthenticate,
            4 => Self::GssInit,
            5 => Self::SpnegoResp,
            _ => Self::Other,
        }
    }
}

/// Which header matched (`Record::header`).
pub const HDR_NONE: u8 = 0;
pub const HDR_AUTHORIZATION: u8 = 1;
pub const HDR_WWW_AUTHENTICATE: u8 = 2;
pub const HDR_PROXY_AUTHORIZATION: u8 = 3;
pub const HDR_PROXY_AUTHENTICATE: u8 = 4;

/// Which scheme matched (`Record::scheme`).
pub const SCHEME_NONE: u8 = 0;
pub const SCHEME_NTLM: u8 = 1;
pub const SCHEME_NEGOTIATE: u8 = 2;

/// `Record::kind`.
pub const RECORD_MESSAGE: u8 = 1;
/// A later segment of a flow in capture state (an auth header split over segments).
pub const RECORD_CONTINUATION: u8 = 2;
/// FIN or RST on a flow that carried NTLM: the connection that held a security context ends.
pub const RECORD_CLOSE: u8 = 3;
/// A segment that starts an HTTP request or response (no auth header in it) on a connection
/// that carried NTLM in either direction: the status answering a Type-3, and every later
/// request on a connection that may hold an authenticated context.
pub const RECORD_HTTP: u8 = 4;

/// `Record::direction`.
pub const DIR_INGRESS: u8 = 1;
pub const DIR_EGRESS: u8 = 2;

/// Header of every ring-buffer record; `captured_len` payload bytes follow it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RecordHeader {
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC).
    pub timestamp_ns: u64,
    pub generation: u64,
    pub key: FlowKey,
    pub seq: u32,
    pub ack: u32,
    pub ifindex: u32,
    /// Length of the TCP payload of the segment (may exceed what was copied).
    pub payload_len: u32,
    pub captured_len: u16,
    /// Offset in the copied payload of the matched header value (after `scheme `).
    pub value_offset: u16,
    pub kind: u8,
    pub direction: u8,
    pub header: u8,
    pub scheme: u8,
    pub token: u8,
    pub tcp_flags: u8,
    pub _pad: [u8; 6],
}
const _: () = assert!(core::mem::size_of::<RecordHeader>() == 88);

impl RecordHeader {
    /// Copies `key` in and zeroes the padding with word stores, volatile so LLVM does not
    /// turn them into calls to the BPF `memmove`/`memset` (loops over bytes).
    #[inline(always)]
    pub fn set_key_and_pad(&mut self, key: &FlowKey) {
        let k = key as *const FlowKey as *const u64;
        let h = self as *mut Self as *mut u64;
        // SAFETY: both are 8-aligned repr(C) structs: the key is words 2..7 of the header
        // (offset 16, 40 bytes); the padding is the u16 at 82 and the u32 at 84.
        unsafe {
            for i in 0..5 {
                core::ptr::write_volatile(h.add(2 + i), core::ptr::read_volatile(k.add(i)));
            }
            core::ptr::write_volatile((h as *mut u16).add(41), 0);
            core::ptr::write_volatile((h as *mut u32).add(21), 0);
        }
    }
}

/// The per-CPU scratch buffer the kernel fills before `bpf_ringbuf_output`.
#[repr(C)]
pub struct Capture {
    pub header: RecordHeader,
    pub data: [u8; CAPTURE_MAX + SCAN_SLACK],
}

/// The kernel programs' read-only `CONFIG` global, written by the loader before verification.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Bytes of payload copied per record (≤ `CAPTURE_MAX`).
    pub capture_len: u32,
    /// Bytes after an unfinished auth header that are still copied (capture state).
    pub continuation_bytes: u32,
    pub flags: u32,
    pub _pad: u32,
    /// Key of [`identity::hash`], random per daemon start: a client cannot craft an
    /// `X-Forwarded-For` value whose hash equals another client's.
    pub identity_key: [u64; 2],
}
const _: () = assert!(core::mem::size_of::<Config>() == 32);

impl Config {
    pub const DEFAULT: Self = Self {
        capture_len: CAPTURE_MAX as u32,
        continuation_bytes: DEFAULT_CONTINUATION_BYTES,
        flags: 0,
        _pad: 0,
        identity_key: [0; 2],
    };
}

impl Default for Config {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Default capacity of the `AUTH_FLOWS` LRU map (authenticated backend connections).
pub const DEFAULT_AUTH_FLOW_CAPACITY: u32 = 65_536;

/// Value of `AUTH_FLOWS`, keyed by the request direction (balancer → server) of a backend
/// connection that userspace saw authenticated (a Type-3 answered with success, or a
/// Kerberos request answered with `Persistent-Auth: true`). The kernel checks each later
/// request's identity itself ([`flow::authenticated_pass`]) and delivers only the requests of
/// another (or an unknown) client, and the responses to those (docs/design.md, "The identity
/// check").
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct AuthFlow {
    /// `FlowState::generation` of the request direction when it was authenticated: a reused
    /// 5-tuple is not the authenticated connection.
    pub generation: u64,
    /// [`identity::hash`] of the last `X-Forwarded-For` line of the authenticating request.
    pub identity: u64,
    /// Requests the kernel passed silently whose responses are still to come: the response
    /// to each is not delivered either, so userspace keeps requests and responses paired.
    pub suppressed: u64,
}
const _: () = assert!(core::mem::size_of::<AuthFlow>() == 24);

/// The client identity the kernel can check per request: the value of the last
/// `X-Forwarded-For` header line, up to [`identity::MAX_LEN`] bytes, keyed-hashed the same
/// way on both sides.
pub mod identity {
    /// Longest value the kernel hashes; a longer one is never matched (always delivered).
    pub const MAX_LEN: usize = 64;
    pub const WORDS: usize = MAX_LEN / 8;

    #[inline(always)]
    fn round(v: &mut [u64; 4]) {
        v[0] = v[0].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(13);
        v[1] ^= v[0];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(16);
        v[3] ^= v[2];
        v[0] = v[0].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(21);
        v[3] ^= v[0];
        v[2] = v[2].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(17);
        v[1] ^= v[2];
        v[2] = v[2].rotate_left(32);
    }

    /// SipHash-1-3 of `len` bytes given as little-endian words, zero beyond `len`: one
    /// fixed-size, branch-free computation the verifier accepts and userspace repeats.
    #[inline(always)]
    pub fn hash(key: &[u64; 2], words: &[u64; WORDS], len: u32) -> u64 {
        hash_words(key, words, len)
    }

    /// [`hash`] over `N` words: the flow hash of [`super::FlowKey::id`] needs four.
    #[inline(always)]
    pub fn hash_words<const N: usize>(key: &[u64; 2], words: &[u64; N], len: u32) -> u64 {
        let mut v = [
            key[0] ^ 0x736f_6d65_7073_6575,
            key[1] ^ 0x646f_7261_6e64_6f6d,
            key[0] ^ 0x6c79_6765_6e65_7261,
            key[1] ^ 0x7465_6462_7974_6573,
        ];
        let mut i = 0;
        while i < N {
            v[3] ^= words[i];
            round(&mut v);
            v[0] ^= words[i];
            i += 1;
        }
        let b = (len as u64) << 56;
        v[3] ^= b;
        round(&mut v);
        v[0] ^= b;
        v[2] ^= 0xff;
        round(&mut v);
        round(&mut v);
        round(&mut v);
        v[0] ^ v[1] ^ v[2] ^ v[3]
    }

    /// The words of a value as userspace has it; `None` when it is longer than `MAX_LEN`.
    pub fn words(value: &[u8]) -> Option<[u64; WORDS]> {
        if value.len() > MAX_LEN {
            return None;
        }
        let mut w = [0u64; WORDS];
        let mut i = 0;
        while i < value.len() {
            w[i / 8] |= (value[i] as u64) << ((i % 8) * 8);
            i += 1;
        }
        Some(w)
    }
}

/// Indices of the per-CPU `STATS` array: every outcome of a tracked packet is counted.
/// Packets that are not TCP or not on a tracked endpoint pass uncounted — counting them would
/// be most of their cost; the interface's own counters (`ip -s link`) have their number.
pub mod stat {
    /// Segments of a tracked flow that took the tracked path: every segment of a flow with an
    /// entry, and the segments with payload (not a plain response) of one without.
    pub const TRACKED: u32 = 0;
    /// Tracked segments with payload that were scanned.
    pub const SCANNED: u32 = 1;
    /// Segments with an NTLM/Negotiate auth header.
    pub const MATCHED: u32 = 2;
    pub const CONTINUATIONS: u32 = 3;
    pub const CLOSES: u32 = 4;
    /// Records written to the ring buffer.
    pub const EVENTS: u32 = 5;
    /// Ring buffer full: a record was lost (reported, never silent).
    pub const RINGBUF_FULL: u32 = 6;
    /// Malformed or truncated headers (bogus IHL, data offset, lengths).
    pub const PARSE_BAIL: u32 = 7;
    /// IPv6 with more extension headers than we skip, or IPv4 fragments.
    pub const UNSUPPORTED: u32 = 8;
    /// Entries removed by a SYN: the 5-tuple's next use starts without the old state.
    pub const FLOWS_REOPENED: u32 = 9;
    /// Entries made: a flow direction's first auth header (or cut header name), or the other
    /// direction of one.
    pub const FLOWS_CREATED: u32 = 10;
    /// `FLOWS` update failed.
    pub const FLOW_UPDATE_FAILED: u32 = 11;
    /// Payload longer than the capture length: the copy was truncated.
    pub const CAPTURE_TRUNCATED: u32 = 12;
    /// Payload copy helper failed.
    pub const LOAD_FAILED: u32 = 13;
    /// HTTP request/response heads delivered from connections that carried NTLM.
    pub const HTTP_HEADS: u32 = 14;
    /// Requests on an authenticated connection from the client that authenticated it:
    /// checked in the kernel and passed without a record.
    pub const IDENTITY_MATCH: u32 = 15;
    /// Requests on an authenticated connection delivered because the identity differs, is
    /// missing, too long, or the head was not complete in one segment.
    pub const IDENTITY_MISMATCH: u32 = 16;
    /// Responses to requests passed silently: not delivered either.
    pub const RESPONSES_SUPPRESSED: u32 = 17;
    /// Responses decided from their status line (not 401/407, on a flow without NTLM or
    /// Negotiate state): passed without a copy or a scan.
    pub const PLAIN_RESPONSES: u32 = 18;
    pub const COUNT: u32 = 19;

    pub const NAMES: [&str; COUNT as usize] = [
        "tracked",
        "scanned",
        "matched",
        "continuations",
        "closes",
        "events",
        "ringbuf_full",
        "parse_bail",
        "unsupported",
        "flows_reopened",
        "flows_created",
        "flow_update_failed",
        "capture_truncated",
        "load_failed",
        "http_heads",
        "identity_match",
        "identity_mismatch",
        "responses_suppressed",
        "plain_responses",
    ];
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: all of these are repr(C), made only of integers and byte arrays, with explicit
    // padding fields: every bit pattern is valid.
    unsafe impl aya::Pod for EndpointKey {}
    unsafe impl aya::Pod for FlowKey {}
    unsafe impl aya::Pod for FlowId {}
    unsafe impl aya::Pod for FlowState {}
    unsafe impl aya::Pod for RecordHeader {}
    unsafe impl aya::Pod for Config {}
    unsafe impl aya::Pod for AuthFlow {}
}

#[cfg(test)]
mod tests {
    use super::{FlowKey, identity};
    use core::hash::Hasher;

    fn key(src: [u8; 16], dst: [u8; 16], sp: u16, dp: u16, family: u8) -> FlowKey {
        FlowKey {
            src_addr: src,
            dst_addr: dst,
            src_port: sp,
            dst_port: dp,
            family,
            _pad: [0; 3],
        }
    }

    #[test]
    fn word_stores_fill_what_field_stores_would() {
        use super::RecordHeader;
        use core::mem::offset_of;
        assert_eq!(offset_of!(FlowKey, family), 36);
        assert_eq!(offset_of!(RecordHeader, key), 16);
        assert_eq!(offset_of!(RecordHeader, _pad), 82);
        let mut k = FlowKey {
            src_addr: [0xaa; 16],
            dst_addr: [0xbb; 16],
            src_port: 40000,
            dst_port: 80,
            family: 9,
            _pad: [7; 3],
        };
        k.set_ipv4([198, 18, 0, 10], [198, 19, 0, 1]);
        let mapped = |a: [u8; 4]| {
            let mut m = [0u8; 16];
            m[10] = 0xff;
            m[11] = 0xff;
            m[12..].copy_from_slice(&a);
            m
        };
        assert_eq!(
            k,
            key(
                mapped([198, 18, 0, 10]),
                mapped([198, 19, 0, 1]),
                40000,
                80,
                4
            )
        );
        let (a, b): ([u8; 16], [u8; 16]) = (
            core::array::from_fn(|i| i as u8),
            core::array::from_fn(|i| 0x80 + i as u8),
        );
        k.set_ipv6(&a, &b);
        assert_eq!(k, key(a, b, 40000, 80, 6));
        let mut h = RecordHeader {
            _pad: [9; 6],
            ..RecordHeader::default()
        };
        h.set_key_and_pad(&k);
        assert_eq!((h.key, h._pad, h.seq), (k, [0; 6], 0));
    }

    #[test]
    fn flow_ids_keep_ipv4_exact_and_hash_ipv6_under_the_secret() {
        let v4 = |a: [u8; 4]| {
            let mut m = [0u8; 16];
            m[10] = 0xff;
            m[11] = 0xff;
            m[12..].copy_from_slice(&a);
            m
        };
        let secret = [7, 9];
        let k = key(v4([198, 18, 0, 10]), v4([198, 19, 0, 1]), 40000, 80, 4);
        let id = k.id(&secret);
        assert_eq!(
            id.addrs,
            u64::from_le_bytes([198, 18, 0, 10, 198, 19, 0, 1])
        );
        assert_eq!((id.src_port, id.dst_port, id.family), (40000, 80, 4));
        assert_eq!(id, k.id(&[0, 0]), "IPv4 ids do not depend on the secret");
        assert_eq!(k.reverse_id(&secret), k.reverse().id(&secret));
        assert_ne!(k.reverse_id(&secret), id);

        let a: [u8; 16] = core::array::from_fn(|i| 0x20 + i as u8);
        let b: [u8; 16] = core::array::from_fn(|i| 0x40 + i as u8);
        let k6 = key(a, b, 40000, 80, 6);
        assert_eq!(k6.reverse_id(&secret), k6.reverse().id(&secret));
        assert_ne!(k6.reverse_id(&secret), k6.id(&secret));
        assert_ne!(k6.id(&secret), k6.id(&[7, 10]));
        // An IPv6 flow never takes an IPv4 flow's id (the family is part of the key).
        assert_ne!(key(a, b, 1, 2, 6).id(&secret).family, 4);
    }

    #[test]
    fn identity_hash_is_siphash13_for_a_full_block() {
        // With 64 bytes, the construction is exactly SipHash-1-3 of those bytes.
        let key = [0x0706_0504_0302_0100u64, 0x0f0e_0d0c_0b0a_0908];
        let value: [u8; 64] = core::array::from_fn(|i| i as u8);
        let words = identity::words(&value).unwrap();
        let mut sip = siphasher::sip::SipHasher13::new_with_keys(key[0], key[1]);
        sip.write(&value);
        assert_eq!(identity::hash(&key, &words, 64), sip.finish());
    }

    #[test]
    fn identity_hash_separates_values_lengths_and_keys() {
        let key = [1, 2];
        let h = |v: &[u8], k: &[u64; 2]| {
            identity::hash(k, &identity::words(v).unwrap(), v.len() as u32)
        };
        assert_eq!(h(b"198.18.0.10", &key), h(b"198.18.0.10", &key));
        assert_ne!(h(b"198.18.0.10", &key), h(b"198.18.0.11", &key));
        // Zero padding does not make a shorter value equal a longer one with NULs.
        assert_ne!(h(b"a", &key), h(b"a\0", &key));
        assert_ne!(h(b"198.18.0.10", &key), h(b"198.18.0.10", &[1, 3]));
        assert!(identity::words(&[b'x'; 65]).is_none());
    }
}
