//! Kernel half of ntlm-affinity: an XDP program (ingress) and a TC program (egress) that share
//! one parsing core. They tag the TCP flows of tracked endpoints that carry NTLM/Negotiate auth
//! headers and copy only those segments to userspace. Report mode: every packet passes.
#![no_std]
#![no_main]

mod scan;

use aya_ebpf::{
    bindings::{TC_ACT_UNSPEC, xdp_action},
    helpers::{bpf_ktime_get_ns, generated::bpf_skb_load_bytes, generated::bpf_xdp_load_bytes},
    macros::{classifier, map, xdp},
    maps::{Array, LpmTrie, LruHashMap, PerCpuArray, RingBuf, lpm_trie::Key},
    programs::{TcContext, XdpContext},
};
use core::ffi::c_void;
use tracker_common::{
    AuthFlow, CAPTURE_MAX, Capture, Config, DEFAULT_AUTH_FLOW_CAPACITY, DEFAULT_FLOW_CAPACITY,
    DEFAULT_RING_BYTES, DIR_EGRESS, DIR_INGRESS, EndpointKey, FLOW_NTLM_SEEN, FlowId, FlowKey,
    FlowState, MAX_IPV6_EXT_HEADERS, PORT_BACKEND, PORT_FRONTEND, RECORD_CLOSE, RecordHeader,
    flow::{self, Counters, STATUS_LINE_BYTES},
    scan::{HEAD_NONE, HEAD_RESPONSE, http_head},
    stat,
};

#[map]
static FLOWS: LruHashMap<FlowId, FlowState> =
    LruHashMap::with_max_entries(DEFAULT_FLOW_CAPACITY, 0);
#[map]
static ENDPOINTS: LpmTrie<EndpointKey, u8> = LpmTrie::with_max_entries(4096, 0);
/// One byte per TCP port (`PORT_BACKEND` | `PORT_FRONTEND`): an array lookup is inlined by
/// the verifier, so untracked traffic is rejected before any hash or trie lookup.
#[map]
static TRACKED_PORTS: Array<u8> = Array::with_max_entries(65536, 0);
/// Set by the loader (`override_global`) before the programs are verified: read-only data
/// the verifier knows, so `capture_len` and the like are constants to it, and no map lookup.
#[unsafe(no_mangle)]
static CONFIG: Config = Config::DEFAULT;

/// [`CONFIG`] through a pointer the compiler cannot see through: it would otherwise fold the
/// default values compiled in here, not the ones the loader writes.
#[inline(always)]
fn config() -> &'static Config {
    unsafe { &*core::ptr::read_volatile(&(&raw const CONFIG)) }
}
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_RING_BYTES, 0);
#[map]
static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(stat::COUNT, 0);
/// Backend connections userspace saw authenticated, by request direction: the identity
/// check (docs/design.md, "The identity check").
#[map]
static AUTH_FLOWS: LruHashMap<FlowKey, AuthFlow> =
    LruHashMap::with_max_entries(DEFAULT_AUTH_FLOW_CAPACITY, 0);
#[map]
static SCRATCH: PerCpuArray<Capture> = PerCpuArray::with_max_entries(1, 0);
#[map]
static SEG: PerCpuArray<Segment> = PerCpuArray::with_max_entries(1, 0);

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88A8;
const IPPROTO_TCP: u8 = 6;

/// The one thing the parsing core needs from a program type: direct access to the linear
/// header area and a constant-size copy of payload bytes (which may lie in fragments).
trait Packet {
    fn data(&self) -> usize;
    fn data_end(&self) -> usize;
    /// Total length of the packet, fragments included.
    fn total_len(&self) -> u32;
    fn ifindex(&self) -> u32;
    /// Copies `len` bytes at `off` into `dst`; `len` must be a constant at each call site.
    fn load(&self, off: u32, dst: *mut u8, len: u32) -> bool;
}

// `data` and `data_end` are read volatile, in place, every time. The cold parse is a real BPF
// function: given plain reads, LLVM passed the two u32 context fields to it as arguments and
// zero-extended `data_end` there with shifts, which the verifier refuses ("pointer arithmetic
// on pkt_end prohibited"). A context load is one instruction.
impl Packet for XdpContext {
    #[inline(always)]
    fn data(&self) -> usize {
        unsafe { core::ptr::read_volatile(&(*self.ctx).data) as usize }
    }
    #[inline(always)]
    fn data_end(&self) -> usize {
        unsafe { core::ptr::read_volatile(&(*self.ctx).data_end) as usize }
    }
    #[inline(always)]
    fn total_len(&self) -> u32 {
        (Packet::data_end(self) - Packet::data(self)) as u32
    }
    #[inline(always)]
    fn ifindex(&self) -> u32 {
        unsafe { (*self.ctx).ingress_ifindex }
    }
    #[inline(always)]
    fn load(&self, off: u32, dst: *mut u8, len: u32) -> bool {
        unsafe { bpf_xdp_load_bytes(self.ctx, off, dst as *mut c_void, len) == 0 }
    }
}

impl Packet for TcContext {
    #[inline(always)]
    fn data(&self) -> usize {
        unsafe { core::ptr::read_volatile(&(*self.skb.skb).data) as usize }
    }
    #[inline(always)]
    fn data_end(&self) -> usize {
        unsafe { core::ptr::read_volatile(&(*self.skb.skb).data_end) as usize }
    }
    #[inline(always)]
    fn total_len(&self) -> u32 {
        TcContext::len(self)
    }
    #[inline(always)]
    fn ifindex(&self) -> u32 {
        unsafe { (*self.skb.skb).ifindex }
    }
    #[inline(always)]
    fn load(&self, off: u32, dst: *mut u8, len: u32) -> bool {
        unsafe {
            bpf_skb_load_bytes(self.skb.skb as *const c_void, off, dst as *mut c_void, len) == 0
        }
    }
}

#[xdp]
pub fn ntlm_ingress(ctx: XdpContext) -> u32 {
    // Report mode: whatever the parser concluded, the packet goes on.
    let _ = track(&ctx, DIR_INGRESS);
    xdp_action::XDP_PASS
}

/// Returns `TC_ACT_UNSPEC` (tcx: `TCX_NEXT`), never `TC_ACT_OK`: on tcx `TC_ACT_OK` is
/// `TCX_PASS`, which ends the chain, so every tcx program after ours and every classic
/// clsact filter on the interface would stop running. An observer hands the packet on.
#[classifier]
pub fn ntlm_egress(ctx: TcContext) -> i32 {
    let _ = track(&ctx, DIR_EGRESS);
    TC_ACT_UNSPEC
}

/// The ingress program for an interface whose one XDP slot already holds someone else's
/// program: the same tracking from tcx ingress, handing the packet on like the egress one.
#[classifier]
pub fn ntlm_ingress_tc(ctx: TcContext) -> i32 {
    let _ = track(&ctx, DIR_INGRESS);
    TC_ACT_UNSPEC
}

/// Baselines for the benchmark harness: the same program types, loaded the same way, doing
/// nothing. Per-packet cost is reported as a ratio against them.
#[xdp]
pub fn pass_xdp(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[classifier]
pub fn pass_tc(_ctx: TcContext) -> i32 {
    TC_ACT_UNSPEC
}

#[inline(always)]
fn count(idx: u32) {
    if let Some(c) = STATS.get_ptr_mut(idx) {
        unsafe { *c += 1 }
    }
}

/// The shared rules count through this: straight into `STATS`.
struct Stats;

impl Counters for Stats {
    #[inline(always)]
    fn count(&mut self, idx: u32) {
        count(idx)
    }
}

#[inline(always)]
fn ptr_at<T, P: Packet>(ctx: &P, off: usize) -> Result<*const T, ()> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + off + core::mem::size_of::<T>() > end {
        return Err(());
    }
    Ok((start + off) as *const T)
}

#[inline(always)]
fn read_u8<P: Packet>(ctx: &P, off: usize) -> Result<u8, ()> {
    ptr_at::<u8, P>(ctx, off).map(|p| unsafe { *p })
}

#[inline(always)]
fn read_be16<P: Packet>(ctx: &P, off: usize) -> Result<u16, ()> {
    ptr_at::<[u8; 2], P>(ctx, off).map(|p| u16::from_be_bytes(unsafe { *p }))
}

/// Parsed network and transport headers of a TCP segment. It lives in a per-CPU map, not on
/// the stack: the stack stays small (the scan callback adds its own frame), and values read
/// back from the map are one unknown to the verifier instead of one exact value per header
/// layout, so everything after parsing is verified once.
#[repr(C)]
pub struct Segment {
    key: FlowKey,
    /// `key`'s `FLOWS` key.
    id: FlowId,
    seq: u32,
    ack: u32,
    flags: u8,
    payload_off: u32,
    payload_len: u32,
}

/// Counts `stat` and returns `Err` so the caller passes the packet on.
#[inline(always)]
fn bail<T>(stat: u32) -> Result<T, ()> {
    count(stat);
    Err(())
}

/// What a look at fixed offsets tells about a frame, before any map is touched.
enum Plain {
    /// Not TCP (or not IP): nothing to do.
    Pass,
    /// TCP in IPv4 without options (not a fragment) or IPv6 without extension headers, right
    /// after an untagged Ethernet header: the TCP header's offset.
    Tcp(usize),
    /// Anything else: [`parse_cold`] decides.
    Cold,
}

/// The common case in straight-line code: one bounds check, three byte compares.
#[inline(always)]
fn plain<P: Packet>(ctx: &P) -> Plain {
    // Ethernet + IPv4 + the TCP ports: 38 bytes; IPv6 needs 58.
    let Ok(h) = ptr_at::<[u8; 38], P>(ctx, 0) else {
        return Plain::Cold;
    };
    let h = unsafe { &*h };
    let proto = u16::from_be_bytes([h[12], h[13]]);
    if proto == ETH_P_IP {
        if h[14] != 0x45 {
            return Plain::Cold;
        }
        if h[23] != IPPROTO_TCP {
            return Plain::Pass;
        }
        if u16::from_be_bytes([h[20], h[21]]) & 0x1fff != 0 {
            return Plain::Cold;
        }
        return Plain::Tcp(ETH_HLEN + 20);
    }
    if proto == ETH_P_IPV6 {
        if h[14] >> 4 != 6 || ptr_at::<[u8; 58], P>(ctx, 0).is_err() {
            return Plain::Cold;
        }
        return match h[20] {
            IPPROTO_TCP => Plain::Tcp(ETH_HLEN + 40),
            // Hop-by-hop, routing, fragment, authentication, destination options.
            0 | 43 | 44 | 51 | 60 => Plain::Cold,
            _ => Plain::Pass,
        };
    }
    if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
        return Plain::Cold;
    }
    Plain::Pass
}

/// Source and destination of an IPv4 header at `off` (as IPv4-mapped IPv6 addresses); the
/// end of its packet.
#[inline(always)]
fn ipv4_fields(key: &mut FlowKey, hdr: &[u8; 20], off: usize) -> usize {
    key.set_ipv4(
        [hdr[12], hdr[13], hdr[14], hdr[15]],
        [hdr[16], hdr[17], hdr[18], hdr[19]],
    );
    let tot_len = u16::from_be_bytes([hdr[2], hdr[3]]) as usize;
    // GSO super-packets may carry tot_len 0 (BIG TCP): then the packet length rules.
    if tot_len == 0 {
        usize::MAX
    } else {
        off + tot_len
    }
}

/// Source and destination of an IPv6 header at `off`; the end of its packet.
#[inline(always)]
fn ipv6_fields(key: &mut FlowKey, hdr: &[u8; 40], off: usize) -> usize {
    let (src, dst) = (hdr[8..24].as_ptr(), hdr[24..40].as_ptr());
    key.set_ipv6(unsafe { &*(src as *const [u8; 16]) }, unsafe {
        &*(dst as *const [u8; 16])
    });
    let plen = u16::from_be_bytes([hdr[4], hdr[5]]) as usize;
    if plen == 0 {
        usize::MAX
    } else {
        off + 40 + plen
    }
}

/// The addresses of a frame [`plain`] found to be TCP at `l4` in plain IPv4 or IPv6.
#[inline(always)]
fn plain_ip<P: Packet>(ctx: &P, seg: &mut Segment, l4: usize) -> Result<(usize, usize), ()> {
    if l4 == ETH_HLEN + 20
        && let Ok(hdr) = ptr_at::<[u8; 20], P>(ctx, ETH_HLEN)
    {
        let l3_end = ipv4_fields(&mut seg.key, unsafe { &*hdr }, ETH_HLEN);
        if l3_end < ETH_HLEN + 20 {
            return bail(stat::PARSE_BAIL);
        }
        return Ok((ETH_HLEN + 20, l3_end));
    }
    let Ok(hdr) = ptr_at::<[u8; 40], P>(ctx, ETH_HLEN) else {
        return bail(stat::PARSE_BAIL);
    };
    Ok((
        ETH_HLEN + 40,
        ipv6_fields(&mut seg.key, unsafe { &*hdr }, ETH_HLEN),
    ))
}

/// The network layer of every frame [`plain`] leaves alone: VLAN tags, IPv4 options or
/// fragments, IPv6 extension headers, short or malformed headers. Fills the addresses of
/// `seg` and returns the TCP header's offset and the end of the IP packet. Not inlined: the
/// common case should not carry its instructions. One body: every header variant ends in the
/// same two values, and each rejection counts its reason on the spot.
#[inline(never)]
fn parse_cold<P: Packet>(ctx: &P, seg: &mut Segment) -> Result<(usize, usize), ()> {
    let mut off = ETH_HLEN;
    let Ok(mut proto) = read_be16(ctx, 12) else {
        return Err(());
    };
    // 802.1ad outer tag, then 802.1Q: at most two tags.
    for _ in 0..2 {
        if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
            let Ok(p) = read_be16(ctx, off + 2) else {
                return bail(stat::PARSE_BAIL);
            };
            proto = p;
            off += 4;
        }
    }
    let l3_end: usize;
    let l4: usize;
    if proto == ETH_P_IP {
        let Ok(vihl) = read_u8(ctx, off) else {
            return bail(stat::PARSE_BAIL);
        };
        let ihl = ((vihl & 0x0f) as usize) * 4;
        if vihl >> 4 != 4 || ihl < 20 {
            return bail(stat::PARSE_BAIL);
        }
        // The fixed header must be there; options are skipped by IHL and checked by the TCP read.
        let Ok(hdr) = ptr_at::<[u8; 20], P>(ctx, off) else {
            return bail(stat::PARSE_BAIL);
        };
        let hdr = unsafe { &*hdr };
        if hdr[9] != IPPROTO_TCP {
            return Err(());
        }
        let frag = u16::from_be_bytes([hdr[6], hdr[7]]);
        if frag & 0x1fff != 0 {
            return bail(stat::UNSUPPORTED);
        }
        l3_end = ipv4_fields(&mut seg.key, hdr, off);
        if l3_end < off + ihl {
            return bail(stat::PARSE_BAIL);
        }
        l4 = off + ihl;
    } else if proto == ETH_P_IPV6 {
        let Ok(hdr) = ptr_at::<[u8; 40], P>(ctx, off) else {
            return bail(stat::PARSE_BAIL);
        };
        let hdr = unsafe { &*hdr };
        if hdr[0] >> 4 != 6 {
            return bail(stat::PARSE_BAIL);
        }
        l3_end = ipv6_fields(&mut seg.key, hdr, off);
        let mut next = hdr[6];
        let mut pos = off + 40;
        let mut found = false;
        for _ in 0..MAX_IPV6_EXT_HEADERS + 1 {
            match next {
                IPPROTO_TCP => {
                    found = true;
                    break;
                }
                // Hop-by-hop, routing, destination options: (len + 1) * 8 bytes.
                0 | 43 | 60 => {
                    let Ok(ext) = ptr_at::<[u8; 2], P>(ctx, pos) else {
                        return bail(stat::PARSE_BAIL);
                    };
                    let ext = unsafe { *ext };
                    next = ext[0];
                    pos += (ext[1] as usize + 1) * 8;
                }
                // Fragment header: only a first fragment carries the TCP header.
                44 => {
                    let Ok(ext) = ptr_at::<[u8; 8], P>(ctx, pos) else {
                        return bail(stat::PARSE_BAIL);
                    };
                    let ext = unsafe { *ext };
                    if u16::from_be_bytes([ext[2], ext[3]]) & 0xfff8 != 0 {
                        return bail(stat::UNSUPPORTED);
                    }
                    next = ext[0];
                    pos += 8;
                }
                // Authentication header: (len + 2) * 4 bytes.
                51 => {
                    let Ok(ext) = ptr_at::<[u8; 2], P>(ctx, pos) else {
                        return bail(stat::PARSE_BAIL);
                    };
                    let ext = unsafe { *ext };
                    next = ext[0];
                    pos += (ext[1] as usize + 2) * 4;
                }
                _ => return Err(()),
            }
        }
        if !found {
            return bail(stat::UNSUPPORTED);
        }
        l4 = pos;
    } else {
        return Err(());
    }
    Ok((l4, l3_end))
}

/// The TCP header at `l4` and the payload up to `l3_end` (or the packet's end).
#[inline(always)]
fn parse_tcp<P: Packet>(ctx: &P, seg: &mut Segment, l4: usize, l3_end: usize) -> Result<(), ()> {
    let key = &mut seg.key;
    let Ok(tcp) = ptr_at::<[u8; 20], P>(ctx, l4) else {
        return bail(stat::PARSE_BAIL);
    };
    let tcp = unsafe { &*tcp };
    key.src_port = u16::from_be_bytes([tcp[0], tcp[1]]);
    key.dst_port = u16::from_be_bytes([tcp[2], tcp[3]]);
    let doff = ((tcp[12] >> 4) as usize) * 4;
    if doff < 20 {
        return bail(stat::PARSE_BAIL);
    }
    let payload_off = l4 + doff;
    let total = ctx.total_len() as usize;
    let end = if l3_end < total { l3_end } else { total };
    if payload_off > end {
        return bail(stat::PARSE_BAIL);
    }
    seg.seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
    seg.ack = u32::from_be_bytes([tcp[8], tcp[9], tcp[10], tcp[11]]);
    seg.flags = tcp[13];
    seg.payload_off = payload_off as u32;
    seg.payload_len = (end - payload_off) as u32;
    Ok(())
}

#[inline(always)]
fn port_bits(port: u16) -> u8 {
    TRACKED_PORTS.get(port as u32).copied().unwrap_or(0)
}

#[inline(always)]
fn is_backend(addr: &[u8; 16], port: u16) -> bool {
    let key = Key::new(
        144,
        EndpointKey {
            port: port.to_be_bytes(),
            addr: *addr,
        },
    );
    ENDPOINTS.get(&key).is_some()
}

#[inline(always)]
fn is_tracked(key: &FlowKey, sp: u8, dp: u8) -> bool {
    if (sp | dp) & PORT_FRONTEND != 0 {
        return true;
    }
    (dp & PORT_BACKEND != 0 && is_backend(&key.dst_addr, key.dst_port))
        || (sp & PORT_BACKEND != 0 && is_backend(&key.src_addr, key.src_port))
}

/// One packet, start to end. Kept as one body in the order the rules apply — fast path,
/// parse, flow entry, close, status line, copy, scan, identity check, record — because
/// replay's model (`KernelModel::segment`) mirrors it step for step and the differential
/// test compares the two; each step itself is a shared rule in `tracker_common::flow`.
// Keys by reference on purpose, as in `insert_flow`.
#[allow(clippy::needless_borrows_for_generic_args)]
#[inline(always)]
fn track<P: Packet>(ctx: &P, direction: u8) -> Result<(), ()> {
    let plain_l4 = match plain(ctx) {
        Plain::Pass => return Ok(()),
        Plain::Tcp(l4) => {
            // Untracked traffic ends here: nothing written, nothing counted.
            let Ok(ports) = ptr_at::<[u8; 4], P>(ctx, l4) else {
                return Ok(());
            };
            let ports = unsafe { &*ports };
            let sp = port_bits(u16::from_be_bytes([ports[0], ports[1]]));
            let dp = port_bits(u16::from_be_bytes([ports[2], ports[3]]));
            if (sp | dp) == 0 {
                return Ok(());
            }
            Some(l4)
        }
        Plain::Cold => None,
    };
    let Some(seg) = SEG.get_ptr_mut(0) else {
        return Ok(());
    };
    let cfg = config();
    {
        let seg = unsafe { &mut *seg };
        let (l4, l3_end) = match plain_l4 {
            Some(l4) => plain_ip(ctx, seg, l4)?,
            None => parse_cold(ctx, seg)?,
        };
        parse_tcp(ctx, seg, l4, l3_end)?;
        seg.id = seg.key.id(&cfg.identity_key);
    }
    // Volatile re-reads keep the compiler from forwarding parse's values (see `Segment`).
    let seg = unsafe { &*seg };
    let (flags, seq, payload_len) = unsafe {
        (
            core::ptr::read_volatile(&seg.flags),
            core::ptr::read_volatile(&seg.seq),
            core::ptr::read_volatile(&seg.payload_len),
        )
    };
    let sp = port_bits(seg.key.src_port);
    let dp = port_bits(seg.key.dst_port);
    if (sp | dp) == 0 {
        return Ok(());
    }
    // A flow with an entry is tracked (entries are made for tracked flows only): the LPM trie
    // is consulted only for a flow without one, and only for a segment worth a scan.
    let mut existing = FLOWS.get_ptr_mut(&seg.id);
    if existing.is_some() && flow::opens_generation(flags) {
        // Removing fails only if the entry went in between; either way it is gone.
        let _ = FLOWS.remove(&seg.id);
        count(stat::FLOWS_REOPENED);
        existing = None;
    }
    let state = match existing {
        Some(s) => s,
        None => {
            // SYNs, ACKs and closes of a flow without NTLM: nothing to keep, nothing written.
            if payload_len == 0 {
                return Ok(());
            }
            blank_entry()?
        }
    };
    let mut state = unsafe { &mut *state };
    // From map memory, so the verifier walks one path through the scan for both kinds of
    // flow (see `blank_entry`).
    let has_entry = flow::has_entry(state.flags);
    if has_entry {
        count(stat::TRACKED);
        if flow::close(&mut Stats, state, flags) {
            emit_close(ctx, seg, state, direction);
        }
    }
    if payload_len == 0 {
        return Ok(());
    }
    if flow::plain_response(state, sp != 0, payload_len, || {
        status_line(ctx, seg.payload_off)
    }) {
        count(stat::PLAIN_RESPONSES);
        return Ok(());
    }
    if !has_entry {
        if !is_tracked(&seg.key, sp, dp) {
            return Ok(());
        }
        count(stat::TRACKED);
    }

    let Some(cap) = SCRATCH.get_ptr_mut(0) else {
        return Ok(());
    };
    let cap = unsafe { &mut *cap };

    let copied = copy_payload(ctx, seg.payload_off, payload_len, cap, cfg.capture_len);
    if copied == 0 {
        return bail(stat::LOAD_FAILED);
    }
    let continuation = flow::continues_capture(state, seq, payload_len);

    count(stat::SCANNED);
    let found = scan::scan(copied);
    // The clock is read only where a time is kept: a new entry's generation, a record.
    // Read again, volatile: a value kept in a register across the scan would differ between
    // the two kinds of flow there.
    if !flow::has_entry(unsafe { core::ptr::read_volatile(&state.flags) }) {
        if !flow::creates_entry(&found) {
            return Ok(());
        }
        let fresh = flow::new_flow(&mut Stats, unsafe { bpf_ktime_get_ns() }, 0);
        state = insert_flow(&seg.id, &fresh)?;
    }
    let ntlm_before = state.flags & FLOW_NTLM_SEEN != 0;
    if flow::on_message(&mut Stats, state, &found) {
        mark_reverse(&seg.key.reverse_id(&cfg.identity_key), state.generation);
    }
    let head = if flow::wants_head(ntlm_before, continuation) {
        match scan::scratch() {
            Some(w) => http_head(&w, copied),
            None => HEAD_NONE,
        }
    } else {
        HEAD_NONE
    };
    let passed_silently =
        head != HEAD_NONE && authenticated_pass(seg, state.generation, cfg, &found, head);
    let kind = flow::record_kind(&mut Stats, continuation, &found, head, passed_silently);
    if kind != 0 {
        let len = match scan::scratch() {
            Some(w) => scan::record_len(&w, &found, copied),
            None => copied,
        };
        write_header(
            &mut cap.header,
            ctx,
            seg,
            state,
            direction,
            unsafe { bpf_ktime_get_ns() },
            kind,
            len,
        );
        cap.header.header = found.header;
        cap.header.scheme = found.scheme;
        cap.header.token = found.token;
        cap.header.value_offset = found.value_offset;
        output(cap, len);
    }
    flow::start_capture(state, &found, seq, payload_len, cfg.continuation_bytes);
    Ok(())
}

/// Marks the other direction of the connection as having carried NTLM ([`flow::mark_reverse`]),
/// making its entry when it has none.
// Keys by reference on purpose, as in `insert_flow`.
#[allow(clippy::needless_borrows_for_generic_args)]
#[inline(always)]
fn mark_reverse(reverse: &FlowId, generation: u64) {
    let existing = FLOWS.get_ptr_mut(reverse).map(|s| unsafe { &mut *s });
    if let Some(fresh) = flow::mark_reverse(&mut Stats, existing, generation)
        && FLOWS.insert(reverse, &fresh, 0).is_err()
    {
        count(stat::FLOW_UPDATE_FAILED);
    }
}

/// The per-request identity check on authenticated connections ([`flow::authenticated_pass`]):
/// one hash lookup per head on connections that carried NTLM or Negotiate, nothing anywhere
/// else.
// Keys by reference on purpose, as in `insert_flow`.
#[allow(clippy::needless_borrows_for_generic_args)]
#[inline(always)]
fn authenticated_pass(
    seg: &Segment,
    generation: u64,
    cfg: &Config,
    found: &tracker_common::scan::Found,
    head: u8,
) -> bool {
    let lookup = || {
        let a = if head == HEAD_RESPONSE {
            AUTH_FLOWS.get_ptr_mut(&seg.key.reverse())
        } else {
            AUTH_FLOWS.get_ptr_mut(&seg.key)
        };
        // Plain read-modify-write of the entry: core has no atomic RMW for bpfel, and a
        // request and its response never race (the response follows the request on one
        // connection).
        a.map(|p| unsafe { &mut *p })
    };
    flow::authenticated_pass(&mut Stats, lookup, head, generation, found, |off, len| {
        scan::identity_hash(&cfg.identity_key, off, len)
    })
}

/// The `FLOWS` key of the blank entry: family 0, which no flow has.
const BLANK_ID: FlowId = FlowId {
    addrs: 0,
    src_port: 0,
    dst_port: 0,
    family: 0,
};

/// The state a flow without an entry is scanned with, kept in `FLOWS` itself: a pointer into
/// the same map as a real entry's, so the verifier's states at the scan are the same for both
/// and it is verified once (with a pointer into a per-CPU map most of the program was
/// verified twice). Its flags stay without `FLOW_OPEN`, `FLOW_NTLM_SEEN` and `FLOW_CAPTURING`
/// ([`flow::has_entry`]): the rules that set them run only on a real entry. Made again if
/// the LRU evicts it.
// Keys by reference on purpose, as in `insert_flow`.
#[allow(clippy::needless_borrows_for_generic_args)]
#[inline(always)]
fn blank_entry() -> Result<*mut FlowState, ()> {
    if let Some(b) = FLOWS.get_ptr_mut(&BLANK_ID) {
        return Ok(b);
    }
    insert_flow(&BLANK_ID, &FlowState::default()).map(|b| b as *mut FlowState)
}

/// Inserts a new flow entry and returns it in the map.
// Keys are passed by reference on purpose: by value they would be copied to the stack.
#[allow(clippy::needless_borrows_for_generic_args)]
#[inline(always)]
fn insert_flow(id: &FlowId, fresh: &FlowState) -> Result<&'static mut FlowState, ()> {
    if FLOWS.insert(id, fresh, 0).is_err() {
        return bail(stat::FLOW_UPDATE_FAILED);
    }
    match FLOWS.get_ptr_mut(id) {
        Some(s) => Ok(unsafe { &mut *s }),
        None => bail(stat::FLOW_UPDATE_FAILED),
    }
}

/// The first bytes of the payload at `off`, for [`flow::plain_response`]: read in place when
/// they are in the linear area (always on XDP, where `bpf_xdp_load_bytes` cost more than the
/// rest of the decision), else one small helper copy.
#[inline(always)]
fn status_line<P: Packet>(ctx: &P, off: u32) -> Option<[u8; STATUS_LINE_BYTES]> {
    // Headers end well within 4 KiB; the mask bounds the offset for the verifier.
    if off < 4096 {
        let p = ctx.data() + (off & 4095) as usize;
        // Through the stack and back: LLVM otherwise derives the bounds check and the load
        // from two different sums, and the verifier ties a check to the register it was made
        // on ("invalid access to packet").
        let p = unsafe { core::ptr::read_volatile(&p) };
        if p + STATUS_LINE_BYTES <= ctx.data_end() {
            return Some(unsafe { *(p as *const [u8; STATUS_LINE_BYTES]) });
        }
    }
    let mut start = core::mem::MaybeUninit::<[u8; STATUS_LINE_BYTES]>::uninit();
    // SAFETY: the helper wrote all the bytes when it returns success.
    ctx.load(off, start.as_mut_ptr() as *mut u8, STATUS_LINE_BYTES as u32)
        .then(|| unsafe { start.assume_init() })
}

/// Copies up to `limit` payload bytes into the scratch buffer with one helper call. The
/// length is variable but provably within [1, CAPTURE_MAX], which is what the verifier needs.
#[inline(always)]
fn copy_payload<P: Packet>(ctx: &P, off: u32, len: u32, cap: &mut Capture, limit: u32) -> u32 {
    let want = flow::copy_len(&mut Stats, len, limit);
    if want == 0 {
        return 0;
    }
    let n = ((want - 1) & (CAPTURE_MAX as u32 - 1)) + 1;
    if ctx.load(off, cap.data.as_mut_ptr(), n) {
        n
    } else {
        0
    }
}

/// Writes a record header in place (map or ring-buffer memory), field by field, so no
/// 88-byte temporary lands on the stack.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn write_header<P: Packet>(
    h: &mut RecordHeader,
    ctx: &P,
    seg: &Segment,
    state: &FlowState,
    direction: u8,
    now: u64,
    kind: u8,
    copied: u32,
) {
    h.timestamp_ns = now;
    h.generation = state.generation;
    h.set_key_and_pad(&seg.key);
    h.seq = seg.seq;
    h.ack = seg.ack;
    h.ifindex = ctx.ifindex();
    h.payload_len = seg.payload_len;
    h.captured_len = copied as u16;
    h.value_offset = 0;
    h.kind = kind;
    h.direction = direction;
    h.header = 0;
    h.scheme = 0;
    h.token = 0;
    h.tcp_flags = seg.flags;
}

#[inline(always)]
fn output(cap: &Capture, copied: u32) {
    // Read back, so the bounds below stay: the compiler could prove them from how `copied`
    // was computed, the verifier could not ("unbounded memory access" on the length).
    let copied = unsafe { core::ptr::read_volatile(&copied) };
    let len = (core::mem::size_of::<RecordHeader>() as u32
        + (copied & (2 * CAPTURE_MAX as u32 - 1))) as u64;
    let len = if len > core::mem::size_of::<Capture>() as u64 {
        core::mem::size_of::<Capture>() as u64
    } else {
        len
    };
    let ret = unsafe {
        aya_ebpf::helpers::generated::bpf_ringbuf_output(
            &EVENTS as *const RingBuf as *mut c_void,
            cap as *const Capture as *mut c_void,
            len,
            0,
        )
    };
    if ret < 0 {
        count(stat::RINGBUF_FULL);
    } else {
        count(stat::EVENTS);
    }
}

#[inline(never)]
fn emit_close<P: Packet>(ctx: &P, seg: &Segment, state: &FlowState, direction: u8) {
    let now = unsafe { bpf_ktime_get_ns() };
    let Some(mut entry) = EVENTS.reserve::<RecordHeader>(0) else {
        count(stat::RINGBUF_FULL);
        return;
    };
    // SAFETY: the reserved entry is ours until submit; every field is written below.
    let h = unsafe { &mut *entry.as_mut_ptr() };
    write_header(h, ctx, seg, state, direction, now, RECORD_CLOSE, 0);
    entry.submit(0);
    count(stat::EVENTS);
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
