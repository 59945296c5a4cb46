//! Types shared byte for byte by the kernel programs (tracker-ebpf) and the daemon
//! (tracker-user). Every struct is `#[repr(C)]` with explicit padding fields and a
//! compile-time size check, because the two sides are compiled for different targets and must
//! agree on every byte; padding is always written as zero so hash-map keys compare exactly.
#![no_std]

/// Largest payload copy the kernel makes of one segment. The configured capture length
/// (`Config::capture_len`) may only lower it. A power of two: offsets are masked with it.
pub const CAPTURE_MAX: usize = 4096;
/// Slack after the capture buffer so the header scan may read a few bytes past any offset
/// below `CAPTURE_MAX` without a bounds check per byte.
pub const SCAN_SLACK: usize = 64;
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
/// Ports in host order.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
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

impl FlowKey {
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

/// `FlowState::flags` bits.
pub const FLOW_OPEN: u32 = 1 << 0;
pub const FLOW_CLOSED: u32 = 1 << 1;
/// The flow carried at least one NTLM/Negotiate message: its close is reported.
pub const FLOW_NTLM_SEEN: u32 = 1 << 2;
/// Segments in `[capture_from, capture_until)` are copied to userspace.
pub const FLOW_CAPTURING: u32 = 1 << 3;
/// First packet seen was not a SYN (tracker started mid-connection, or the entry was evicted).
pub const FLOW_MIDSTREAM: u32 = 1 << 4;

/// Value of the `FLOWS` map, one per direction of a connection.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FlowState {
    /// Identifies one use of the 5-tuple: the kernel time of the SYN that opened it (or of
    /// the first packet seen). A reused 5-tuple gets a new generation.
    pub generation: u64,
    pub last_seen_ns: u64,
    pub flags: u32,
    pub capture_from: u32,
    pub capture_until: u32,
    /// NTLM/Negotiate messages seen in this direction.
    pub messages: u32,
    /// Last `TokenKind` seen in this direction.
    pub last_token: u8,
    pub _pad: [u8; 7],
}
const _: () = assert!(core::mem::size_of::<FlowState>() == 40);

/// What the base64 prefix of a header value says, without decoding it (ntlm-facts.md).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// The scheme alone, no token (`WWW-Authenticate: NTLM`).
    None = 0,
    NtlmNegotiate = 1,
    NtlmChallenge = 2,
    NtlmAuthenticate = 3,
    /// `YI…`: GSS-API initial token (SPNEGO NegTokenInit or a bare Kerberos AP-REQ).
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

/// The per-CPU scratch buffer the kernel fills before `bpf_ringbuf_output`.
#[repr(C)]
pub struct Capture {
    pub header: RecordHeader,
    pub data: [u8; CAPTURE_MAX + SCAN_SLACK],
}

/// `CONFIG[0]`, written by userspace before attaching.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Bytes of payload copied per record (≤ `CAPTURE_MAX`).
    pub capture_len: u32,
    /// Bytes after an unfinished auth header that are still copied (capture state).
    pub continuation_bytes: u32,
    pub flags: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<Config>() == 16);

impl Default for Config {
    fn default() -> Self {
        Self {
            capture_len: CAPTURE_MAX as u32,
            continuation_bytes: DEFAULT_CONTINUATION_BYTES,
            flags: 0,
            _pad: 0,
        }
    }
}

/// Indices of the per-CPU `STATS` array: every outcome of every packet is counted.
pub mod stat {
    pub const PACKETS: u32 = 0;
    /// Passed at once: not IPv4/IPv6 or not TCP.
    pub const NOT_TCP: u32 = 1;
    /// TCP on no tracked endpoint: the cheap common case.
    pub const UNTRACKED: u32 = 2;
    pub const TRACKED: u32 = 3;
    /// Tracked segments with payload that were scanned.
    pub const SCANNED: u32 = 4;
    /// Segments with an NTLM/Negotiate auth header.
    pub const MATCHED: u32 = 5;
    pub const CONTINUATIONS: u32 = 6;
    pub const CLOSES: u32 = 7;
    /// Records written to the ring buffer.
    pub const EVENTS: u32 = 8;
    /// Ring buffer full: a record was lost (reported, never silent).
    pub const RINGBUF_FULL: u32 = 9;
    /// Malformed or truncated headers (bogus IHL, data offset, lengths).
    pub const PARSE_BAIL: u32 = 10;
    /// IPv6 with more extension headers than we skip, or IPv4 fragments.
    pub const UNSUPPORTED: u32 = 11;
    /// A flow entry created for a connection whose SYN was not seen (started mid-stream,
    /// or its entry was evicted from the LRU map).
    pub const FLOW_MIDSTREAM: u32 = 12;
    pub const FLOW_NEW: u32 = 13;
    /// `FLOWS` update failed.
    pub const FLOW_UPDATE_FAILED: u32 = 14;
    /// Payload longer than the capture length: the copy was truncated.
    pub const CAPTURE_TRUNCATED: u32 = 15;
    /// Payload copy helper failed.
    pub const LOAD_FAILED: u32 = 16;
    /// HTTP request/response heads delivered from connections that carried NTLM.
    pub const HTTP_HEADS: u32 = 17;
    pub const COUNT: u32 = 18;

    pub const NAMES: [&str; COUNT as usize] = [
        "packets",
        "not_tcp",
        "untracked",
        "tracked",
        "scanned",
        "matched",
        "continuations",
        "closes",
        "events",
        "ringbuf_full",
        "parse_bail",
        "unsupported",
        "flow_midstream",
        "flow_new",
        "flow_update_failed",
        "capture_truncated",
        "load_failed",
        "http_heads",
    ];
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: all of these are repr(C), made only of integers and byte arrays, with explicit
    // padding fields: every bit pattern is valid.
    unsafe impl aya::Pod for EndpointKey {}
    unsafe impl aya::Pod for FlowKey {}
    unsafe impl aya::Pod for FlowState {}
    unsafe impl aya::Pod for RecordHeader {}
    unsafe impl aya::Pod for Config {}
}
