//! Bounded scan of a copied segment for an NTLM/Negotiate auth header anywhere in the header
//! block. The copy sits in the per-CPU scratch buffer; `bpf_loop` walks it one line per call
//! (each call searches up to 64 bytes, eight at a time, for the next newline; the verifier
//! checks the callback a few times instead of every iteration), and only lines whose first
//! byte could start an auth header name or `X-Forwarded-For` are compared further.

use aya_ebpf::helpers::generated::bpf_loop;
use core::ffi::c_void;
use tracker_common::{
    CAPTURE_MAX, HDR_AUTHORIZATION, HDR_PROXY_AUTHENTICATE, HDR_PROXY_AUTHORIZATION,
    HDR_WWW_AUTHENTICATE, SCHEME_NEGOTIATE, SCHEME_NTLM, TokenKind, identity,
};

use aya_ebpf::{macros::map, maps::PerCpuArray};

use crate::SCRATCH;

#[map]
static SCAN: PerCpuArray<ScanCtx> = PerCpuArray::with_max_entries(1, 0);

const MASK: u32 = CAPTURE_MAX as u32 - 1;

/// What the scan found in one segment.
#[derive(Default)]
pub struct Found {
    pub matched: bool,
    /// The matched header line ends inside this segment.
    pub line_complete: bool,
    /// The segment ends in an unfinished line that may be the start of an auth header name.
    pub partial_name_at_end: bool,
    pub header: u8,
    pub scheme: u8,
    pub token: u8,
    pub value_offset: u16,
    /// The blank line ending the header block is inside this segment.
    pub ended: bool,
    /// Value of the last complete `X-Forwarded-For` line (offset, length; length 0: none).
    pub xff_off: u32,
    pub xff_len: u32,
}

/// The scan's state. It lives in per-CPU map memory, not on the stack: the verifier tracks
/// stack values exactly, so a callback that stores its varying position there is verified
/// again for every value until the states converge (they did not once a step searched
/// several words: 1 M instructions); map memory reads back as unknown scalars, and the
/// callback is verified a few times only.
#[repr(C)]
pub struct ScanCtx {
    len: u32,
    /// Where the next newline search starts.
    pos: u32,
    /// Start of the current (last seen) line.
    line: u32,
    /// Offset of the matched token (0 when none).
    value: u32,
    header: u8,
    scheme: u8,
    token: u8,
    matched: u8,
    complete: u8,
    ended: u8,
    _pad: [u8; 2],
    /// Value offset of the last `X-Forwarded-For` line (0: none).
    xff: u32,
}

/// What `bpf_loop` hands each step: pointers only, the same on every call.
#[repr(C)]
struct LoopCtx {
    /// The scratch buffer's data (a map value pointer, looked up once per packet).
    data: *const u8,
    st: *mut ScanCtx,
}

/// ASCII lowercase of eight bytes at once. It also maps `\r` to `-`; the daemon re-parses
/// every captured header, so such a false match costs one record, never a wrong verdict.
#[inline(always)]
fn lower(w: u64) -> u64 {
    w | 0x2020_2020_2020_2020
}

#[inline(always)]
const fn word(s: &[u8; 8]) -> u64 {
    u64::from_le_bytes(*s)
}

/// Eight bytes at any offset, from two aligned loads: the BPF backend would otherwise split an
/// unaligned load into eight byte loads. `data` is 8-aligned (it follows the 88-byte header).
#[inline(always)]
fn rd8(data: *const u8, off: u32) -> u64 {
    // The masked aligned offset + 16 stays inside CAPTURE_MAX + SCAN_SLACK.
    let a = (off & MASK & !7) as usize;
    let k = (off & 7) * 8;
    let (lo, hi) = unsafe {
        (
            *(data.add(a) as *const u64),
            *(data.add(a + 8) as *const u64),
        )
    };
    // `hi << (63 - k) << 1` is `hi << (64 - k)` without the undefined shift by 64 when k = 0.
    (lo >> k) | ((hi << (63 - k)) << 1)
}

#[inline(always)]
fn rd1(data: *const u8, off: u32) -> u8 {
    unsafe { *data.add((off & MASK) as usize) }
}

#[inline(always)]
fn data_ptr() -> Option<*const u8> {
    SCRATCH.get_ptr(0).map(|c| unsafe { (*c).data.as_ptr() })
}

/// Compares the line at `line` with the auth header names; on a match fills `c`.
#[inline(always)]
fn match_line(data: *const u8, line: u32, c: &mut ScanCtx) {
    let len = c.len;
    // Shortest match: "authorization:ntlm" (18 bytes).
    if line + 18 > len {
        return;
    }
    let w0 = lower(rd8(data, line));
    let w1 = lower(rd8(data, line + 8));
    let w2 = lower(rd8(data, line + 16));
    let (header, name_len) =
        if w0 == word(b"authoriz") && w1 & 0xffff_ffff_ffff == word(b"ation:\0\0") {
            (HDR_AUTHORIZATION, 14)
        } else if w0 == word(b"www-auth") && w1 == word(b"enticate") && w2 & 0xff == b':' as u64 {
            (HDR_WWW_AUTHENTICATE, 17)
        } else if w0 == word(b"proxy-au")
            && w1 == word(b"thorizat")
            && w2 & 0xffff_ffff == word(b"ion:\0\0\0\0")
        {
            (HDR_PROXY_AUTHORIZATION, 20)
        } else if w0 == word(b"proxy-au")
            && w1 == word(b"thentica")
            && w2 & 0xff_ffff == word(b"te:\0\0\0\0\0")
        {
            (HDR_PROXY_AUTHENTICATE, 19)
        } else {
            return;
        };
    // The longer names were compared past the 18 bytes known to be there.
    if line + name_len > len {
        return;
    }
    let mut v = line + name_len;
    // Optional whitespace after the colon.
    for _ in 0..2 {
        if v < len {
            let b = rd1(data, v);
            if b == b' ' || b == b'\t' {
                v += 1;
            }
        }
    }
    if v + 4 > len {
        return;
    }
    let s0 = lower(rd8(data, v));
    let (scheme, after) = if s0 & 0xffff_ffff == word(b"ntlm\0\0\0\0") {
        (SCHEME_NTLM, v + 4)
    } else if v + 9 <= len && s0 == word(b"negotiat") && rd1(data, v + 8) | 0x20 == b'e' {
        (SCHEME_NEGOTIATE, v + 9)
    } else {
        return;
    };
    // The scheme must be a whole word.
    let mut token = TokenKind::None as u8;
    let mut t = after;
    if after < len {
        let b = rd1(data, after);
        if b == b' ' {
            t = after + 1;
            if t < len {
                token = classify(data, t, len);
            }
        } else if b != b'\r' && b != b'\n' {
            return;
        }
    }
    c.matched = 1;
    c.header = header;
    c.scheme = scheme;
    c.token = token;
    c.value = t;
}

/// The token kind from its base64 prefix (ntlm-facts.md), without decoding.
#[inline(always)]
fn classify(data: *const u8, t: u32, len: u32) -> u8 {
    let first = rd1(data, t);
    if first == b'Y' {
        return TokenKind::GssInit as u8;
    }
    if first == b'o' {
        return TokenKind::SpnegoResp as u8;
    }
    if t + 12 <= len && rd8(data, t) == word(b"TlRMTVNT") {
        let tail = rd8(data, t + 8) & 0xffff_ffff;
        if tail == word(b"UAAB\0\0\0\0") {
            return TokenKind::NtlmNegotiate as u8;
        }
        if tail == word(b"UAAC\0\0\0\0") {
            return TokenKind::NtlmChallenge as u8;
        }
        if tail == word(b"UAAD\0\0\0\0") {
            return TokenKind::NtlmAuthenticate as u8;
        }
    }
    TokenKind::Other as u8
}

/// Notes an `X-Forwarded-For` line (the client identity the kernel checks on authenticated
/// connections, design §2.5); the last one wins, as the balancer appends its own.
#[inline(always)]
fn match_xff(data: *const u8, line: u32, c: &mut ScanCtx) {
    if line + 16 > c.len
        || lower(rd8(data, line)) != word(b"x-forwar")
        || lower(rd8(data, line + 8)) != word(b"ded-for:")
    {
        return;
    }
    let mut v = line + 16;
    for _ in 0..2 {
        if v < c.len {
            let b = rd1(data, v);
            if b == b' ' || b == b'\t' {
                v += 1;
            }
        }
    }
    c.xff = v;
}

/// Handles a line start; returns 1 to stop the loop.
#[inline(always)]
fn at_line(data: *const u8, line: u32, c: &mut ScanCtx) -> i64 {
    if c.matched != 0 {
        // A newline after the matched value: its line is complete.
        c.complete = 1;
        return 1;
    }
    c.line = line;
    if line >= c.len {
        return 0;
    }
    let first = rd1(data, line);
    if first == b'\r' || first == b'\n' {
        // Blank line: end of the header block.
        c.ended = 1;
        return 1;
    }
    // Only lines starting like "authorization", "www-authenticate" or "proxy-…" can match.
    let f = first | 0x20;
    if f == b'a' || f == b'w' || f == b'p' {
        match_line(data, line, c);
    } else if f == b'x' {
        match_xff(data, line, c);
    }
    0
}

/// Index of the lowest set byte of a SWAR mask whose set bits are each a byte's top bit
/// (`t` ≠ 0). Branch-free, so it adds no path for the verifier: the lowest bit is
/// `0x80 << 8k`; shifted down to `1 << 8k`, it moves the constant's byte `7 - k` (= k) to the top.
#[inline(always)]
fn lowest_byte(t: u64) -> u32 {
    let bit = t & t.wrapping_neg();
    ((bit >> 7).wrapping_mul(0x0001_0203_0405_0607) >> 56) as u32
}

/// Bytes one step searches for the next newline: most header lines are shorter, so a step
/// usually handles one line, whatever its length.
const STEP_WORDS: u32 = 8;

#[inline(always)]
fn newlines(data: *const u8, at: u32) -> u64 {
    let x = rd8(data, at) ^ 0x0a0a_0a0a_0a0a_0a0a;
    x.wrapping_sub(0x0101_0101_0101_0101) & !x & 0x8080_8080_8080_8080
}

/// One step: finds the next newline from `pos` (up to `STEP_WORDS` words, eight bytes at a
/// time) and examines the line after it. One line per call keeps the callback small for the
/// verifier; every call advances `pos`, so `len` calls always suffice.
extern "C" fn step(_index: u64, ctx: *mut c_void) -> i64 {
    let l = unsafe { &*(ctx as *const LoopCtx) };
    let c = unsafe { &mut *l.st };
    let data = l.data;
    let pos = c.pos;
    if pos >= c.len {
        return 1;
    }
    // The first word with a newline; the lowest flagged byte in it is always a real
    // newline (borrows only run upwards).
    let mut at = pos;
    let mut t = newlines(data, at);
    let mut w = 1;
    while t == 0 && w < STEP_WORDS {
        at += 8;
        t = newlines(data, at);
        w += 1;
    }
    if t == 0 {
        c.pos = pos + 8 * STEP_WORDS;
        return 0;
    }
    let nl = at + lowest_byte(t);
    if nl >= c.len {
        return 1;
    }
    c.pos = nl + 1;
    at_line(data, nl + 1, c)
}

/// Scans the first `len` bytes of the scratch buffer.
#[inline(always)]
pub fn scan(len: u32) -> Found {
    let Some(data) = data_ptr() else {
        return Found::default();
    };
    let Some(st) = SCAN.get_ptr_mut(0) else {
        return Found::default();
    };
    let c = unsafe { &mut *st };
    *c = ScanCtx {
        len,
        pos: 0,
        line: 0,
        value: 0,
        header: 0,
        scheme: 0,
        token: 0,
        matched: 0,
        complete: 0,
        ended: 0,
        _pad: [0; 2],
        xff: 0,
    };
    let mut found = Found::default();
    // A segment may begin with a header line (the block continues from an earlier segment).
    match_line(data, 0, c);
    let mut l = LoopCtx { data, st };
    unsafe {
        bpf_loop(
            len,
            step as *mut c_void,
            &mut l as *mut LoopCtx as *mut c_void,
            0,
        );
    }
    let c = unsafe { &*st };
    found.matched = c.matched != 0;
    found.line_complete = c.complete != 0;
    found.header = c.header;
    found.scheme = c.scheme;
    found.token = c.token;
    found.value_offset = c.value as u16;
    found.ended = c.ended != 0;
    let v = c.xff & MASK;
    if v != 0 && v < len {
        found.xff_off = v;
        found.xff_len = value_len(data, v, len);
    }
    if c.matched == 0 && c.ended == 0 && c.line < len {
        // The last, unfinished line may be an auth header name cut by the segment boundary.
        let first = rd1(data, c.line) | 0x20;
        found.partial_name_at_end = first == b'a' || first == b'w' || first == b'p';
    }
    found
}

/// Length of the header value at `v` (up to its CR LF), or 0 when it does not end within
/// `identity::MAX_LEN` bytes or inside the segment: such a value is never matched.
#[inline(always)]
fn value_len(data: *const u8, v: u32, len: u32) -> u32 {
    let mut i = 0u32;
    while i <= identity::MAX_LEN as u32 {
        let t = newlines(data, v + i);
        if t != 0 {
            let nl = v + i + lowest_byte(t);
            if nl >= len || nl == v {
                return 0;
            }
            let end = if rd1(data, nl - 1) == b'\r' {
                nl - 1
            } else {
                nl
            };
            let n = end.saturating_sub(v);
            return if n as usize <= identity::MAX_LEN {
                n
            } else {
                0
            };
        }
        i += 8;
    }
    0
}

/// [`identity::hash`] of `len` bytes at `off` of the scratch buffer (`len` ≤ `MAX_LEN`).
#[inline(always)]
pub fn identity_hash(key: &[u64; 2], off: u32, len: u32) -> u64 {
    let Some(data) = data_ptr() else {
        return 0;
    };
    let mut words = [0u64; identity::WORDS];
    let mut i = 0;
    while i < identity::WORDS {
        let at = i as u32 * 8;
        let left = len.saturating_sub(at);
        let mask = if left >= 8 {
            u64::MAX
        } else {
            (1u64 << (left * 8)) - 1
        };
        words[i] = rd8(data, off + at) & mask;
        i += 1;
    }
    identity::hash(key, &words, len)
}
