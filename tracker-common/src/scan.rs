//! The header scan of one copied segment: the rule the kernel programs run (driven by
//! `bpf_loop`, one line per call) and replay's kernel model runs (driven by [`scan`]). One
//! body for both: a rule change here changes both sides, and the differential test
//! (`tests/tests/differential.rs`) proves they still agree. See docs/design.md, "One rule
//! set".
//!
//! The scan looks for the first NTLM/Negotiate auth header anywhere in the header block
//! (case-insensitive names, optional whitespace, the scheme as a whole word), classifies its
//! token by base64 prefix, notes the last `X-Forwarded-For` value (the client identity the
//! kernel checks on authenticated connections) and stops at the blank line ending the block.

use crate::{
    HDR_AUTHORIZATION, HDR_PROXY_AUTHENTICATE, HDR_PROXY_AUTHORIZATION, HDR_WWW_AUTHENTICATE,
    SCHEME_NEGOTIATE, SCHEME_NTLM, TokenKind, identity,
};

/// The bytes of one copied segment, as the scan reads them.
///
/// Bytes at or past the segment's length may hold anything (the kernel's scratch buffer still
/// holds an earlier packet's bytes there, the host pads with zeros): every rule bounds what it
/// uses by the length, so no result depends on them.
pub trait Window {
    /// The eight bytes at `off`, little-endian.
    fn word(&self, off: u32) -> u64;
    /// The eight bytes at `base + 8 * i`, `base` a multiple of eight and below
    /// `CAPTURE_MAX`, `i` below `STEP_WORDS`: one load where `word` needs two, and in the
    /// kernel one mask per step instead of one per word (the scratch buffer's slack covers
    /// `i`).
    fn aligned(&self, base: u32, i: u32) -> u64 {
        self.word(base + 8 * i)
    }
    fn byte(&self, off: u32) -> u8;
}

/// A host slice as a [`Window`]: zeros past its end.
pub struct Slice<'a>(pub &'a [u8]);

impl Window for Slice<'_> {
    #[inline]
    fn word(&self, off: u32) -> u64 {
        let off = off as usize;
        match self.0.get(off..off + 8) {
            Some(w) => u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]),
            None => {
                let mut w = [0u8; 8];
                for (i, b) in w.iter_mut().enumerate() {
                    *b = self.0.get(off + i).copied().unwrap_or(0);
                }
                u64::from_le_bytes(w)
            }
        }
    }

    #[inline]
    fn byte(&self, off: u32) -> u8 {
        self.0.get(off as usize).copied().unwrap_or(0)
    }
}

/// What the scan found in one segment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
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
    /// When `ended`: the bytes up to and including that blank line.
    pub head_len: u32,
    /// Value of the last complete `X-Forwarded-For` line (offset, length; length 0: none).
    pub xff_off: u32,
    pub xff_len: u32,
}

/// The scan's state between steps. In the kernel it lives in per-CPU map memory, not on the
/// stack: the verifier tracks stack values exactly, so a callback that keeps its varying
/// position there is verified again for every value until the states converge (they did not
/// once a step searched several words: 1 M instructions); map memory reads back as unknown
/// scalars, and the callback is verified a few times only.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ScanState {
    pub len: u32,
    /// Where the next newline search starts.
    pub pos: u32,
    /// Start of the current (last seen) line.
    pub line: u32,
    /// Offset of the matched token (0 when none).
    pub value: u32,
    pub header: u8,
    pub scheme: u8,
    pub token: u8,
    pub matched: u8,
    pub complete: u8,
    pub ended: u8,
    /// The header name a line matched so far (not yet a match).
    pub candidate: u8,
    pub _pad: u8,
    /// Value offset of the last `X-Forwarded-For` line (0: none).
    pub xff: u32,
    /// Where a line's comparison continues (see [`settle`]).
    pub at: u32,
    /// Just past the blank line ending the block (when `ended`).
    pub end: u32,
}

const _: () = assert!(core::mem::size_of::<ScanState>() == 36);

impl ScanState {
    /// Zero, scanning `len` bytes. Nine volatile word stores: a struct assignment became a
    /// call to the BPF `memset`, a loop over bytes.
    #[inline(always)]
    fn reset(&mut self, len: u32) {
        let p = self as *mut Self as *mut u32;
        // SAFETY: ScanState is 36 bytes of u32-aligned plain integers.
        unsafe {
            core::ptr::write_volatile(p, len);
            for i in 1..9 {
                core::ptr::write_volatile(p.add(i), 0);
            }
        }
    }
}

/// Reads back a value just stored in the scan state. In the kernel the state is map memory,
/// whose contents the verifier does not track: the branches that computed the value (four
/// header names, optional whitespace, two schemes) meet again as one state instead of one
/// per exact value, and the rest of the line is verified once. Without these read-backs the
/// verifier needed over a million instructions. The volatile read keeps the compiler from
/// forwarding the stored value; on the host it costs a load.
#[inline(always)]
fn settle(v: &u32) -> u32 {
    // SAFETY: a reference is always valid to read.
    unsafe { core::ptr::read_volatile(v) }
}

#[inline(always)]
fn settle8(v: &u8) -> u8 {
    // SAFETY: as `settle`.
    unsafe { core::ptr::read_volatile(v) }
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

/// Skips up to two spaces or tabs (optional whitespace after a header colon).
#[inline(always)]
fn skip_ows<W: Window>(w: &W, mut v: u32, len: u32) -> u32 {
    for _ in 0..2 {
        if v < len {
            let b = w.byte(v);
            if b == b' ' || b == b'\t' {
                v += 1;
            }
        }
    }
    v
}

/// Compares the line at `line` with the auth header names; on a match fills `c`.
#[inline(always)]
fn match_line<W: Window>(w: &W, line: u32, c: &mut ScanState) {
    // Read back, not forwarded from `scan_begin`: knowing `len` ≤ `CAPTURE_MAX`, the compiler
    // dropped the kernel window's offset masks, and the verifier refused the unmasked loads.
    let len = settle(&c.len);
    // Shortest match: "authorization:ntlm" (18 bytes).
    if line + 18 > len {
        return;
    }
    let w0 = lower(w.word(line));
    let w1 = lower(w.word(line + 8));
    let w2 = lower(w.word(line + 16));
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
    c.candidate = header;
    c.at = skip_ows(w, line + name_len, len);
    let header = settle8(&c.candidate);
    let v = settle(&c.at);
    if v + 4 > len {
        return;
    }
    let s0 = lower(w.word(v));
    let (scheme, after) = if s0 & 0xffff_ffff == word(b"ntlm\0\0\0\0") {
        (SCHEME_NTLM, v + 4)
    } else if v + 9 <= len && s0 == word(b"negotiat") && w.byte(v + 8) | 0x20 == b'e' {
        (SCHEME_NEGOTIATE, v + 9)
    } else {
        return;
    };
    c.scheme = scheme;
    c.at = after;
    let scheme = settle8(&c.scheme);
    let after = settle(&c.at);
    // The scheme must be a whole word.
    let mut token = TokenKind::None as u8;
    let mut t = after;
    if after < len {
        let b = w.byte(after);
        if b == b' ' {
            t = after + 1;
            if t < len {
                token = classify(w, t, len) as u8;
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

/// The token kind from the base64 prefix of the token at `t` (at least one byte there),
/// without decoding. docs/ntlm.md, "Token prefixes", says why each prefix means what it does.
#[inline(always)]
pub fn classify<W: Window>(w: &W, t: u32, len: u32) -> TokenKind {
    let first = w.byte(t);
    if first == b'Y' {
        // 0x60 and a DER length: `YA`..`YH` short forms, `YI` every long form.
        if t + 1 < len {
            let second = w.byte(t + 1);
            if (b'A'..=b'I').contains(&second) {
                return TokenKind::GssInit;
            }
        }
        return TokenKind::Other;
    }
    if first == b'o' {
        return TokenKind::SpnegoResp;
    }
    if t + 12 <= len && w.word(t) == word(b"TlRMTVNT") {
        let tail = w.word(t + 8) & 0xffff_ffff;
        if tail == word(b"UAAB\0\0\0\0") {
            return TokenKind::NtlmNegotiate;
        }
        if tail == word(b"UAAC\0\0\0\0") {
            return TokenKind::NtlmChallenge;
        }
        if tail == word(b"UAAD\0\0\0\0") {
            return TokenKind::NtlmAuthenticate;
        }
    }
    TokenKind::Other
}

/// [`classify`] of a whole token value as the daemon has it (empty: no token).
pub fn classify_value(value: &[u8]) -> TokenKind {
    if value.is_empty() {
        return TokenKind::None;
    }
    // Only the first twelve bytes matter; a longer value is classified by its prefix.
    let head = &value[..value.len().min(16)];
    classify(&Slice(head), 0, head.len() as u32)
}

/// Notes an `X-Forwarded-For` line (the client identity the kernel checks on authenticated
/// connections); the last one wins, as the balancer appends its own.
#[inline(always)]
fn match_xff<W: Window>(w: &W, line: u32, c: &mut ScanState) {
    if line + 16 > c.len
        || lower(w.word(line)) != word(b"x-forwar")
        || lower(w.word(line + 8)) != word(b"ded-for:")
    {
        return;
    }
    c.xff = skip_ows(w, line + 16, c.len);
}

/// Handles a line start; returns true to stop the scan.
#[inline(always)]
fn at_line<W: Window>(w: &W, line: u32, c: &mut ScanState) -> bool {
    if c.matched != 0 {
        // The first newline after the matched value completes its line; after that only
        // the end of the block matters (a record carries the head, not what follows).
        c.complete = 1;
    } else {
        c.line = line;
    }
    if line >= c.len {
        return false;
    }
    let first = w.byte(line);
    if first == b'\r' || first == b'\n' {
        // Blank line: end of the header block (CR LF, or a bare LF).
        c.ended = 1;
        c.end = if first == b'\r' { line + 2 } else { line + 1 };
        return true;
    }
    if c.matched != 0 {
        return false;
    }
    // Only lines starting like "authorization", "www-authenticate" or "proxy-…" can match.
    let f = first | 0x20;
    if f == b'a' || f == b'w' || f == b'p' {
        match_line(w, line, c);
    } else if f == b'x' {
        match_xff(w, line, c);
    }
    false
}

/// Index of the lowest set byte of a SWAR mask whose set bits are each a byte's top bit
/// (`t` ≠ 0). Branch-free, so it adds no path for the verifier: the lowest bit is
/// `0x80 << 8k`; shifted down to `1 << 8k`, it moves the constant's byte `7 - k` (= k) to the top.
#[inline(always)]
pub fn lowest_byte(t: u64) -> u32 {
    let bit = t & t.wrapping_neg();
    ((bit >> 7).wrapping_mul(0x0001_0203_0405_0607) >> 56) as u32
}

/// Words one step looks through: lines that cannot start an auth header (or an
/// `X-Forwarded-For`, or end the block) are skipped inside the step, so a step costs about
/// one `bpf_loop` call per 128 bytes, not one per line.
pub const STEP_WORDS: u32 = 16;

/// Newlines one step takes from one word: header lines are longer than four bytes, so more
/// is rare (a blank line right after a short one), and each slot is verified once per word.
const NEWLINES_PER_WORD: u32 = 2;

/// The newline bytes of the word at `at`, as a SWAR mask; the lowest flagged byte is always a
/// real newline (borrows only run upwards).
#[inline(always)]
pub fn newlines<W: Window>(w: &W, at: u32) -> u64 {
    let x = w.word(at) ^ 0x0a0a_0a0a_0a0a_0a0a;
    x.wrapping_sub(0x0101_0101_0101_0101) & !x & 0x8080_8080_8080_8080
}

/// Every newline byte of `word`, exactly (no borrow between bytes): the top bit of each.
#[inline(always)]
fn newline_bytes(word: u64) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let x = word ^ 0x0a0a_0a0a_0a0a_0a0a;
    !(((x & LOW7).wrapping_add(LOW7)) | x | LOW7)
}

/// Whether the line starting at `line` can matter: it starts like an auth header name
/// (`auth`, `www-`, `prox`) or `X-Forwarded-For` (`x-fo`), or it is the blank line ending the
/// block. A line of fewer than four bytes in the segment can match nothing (the shortest name
/// takes 14), so only its first byte counts, for `partial_name_at_end`, through `line`.
#[inline(always)]
fn may_matter<W: Window>(w: &W, line: u32, len: u32) -> bool {
    if line >= len {
        return false;
    }
    let b = w.byte(line);
    if b == b'\r' || b == b'\n' {
        return true;
    }
    // The first byte alone turns away most lines (Host, User-Agent, Cookie, Content-…).
    let f = b | 0x20;
    if !(f == b'a' || f == b'w' || f == b'p' || f == b'x') || line + 4 > len {
        return false;
    }
    let p = lower(w.word(line)) & 0xffff_ffff;
    p == word(b"auth\0\0\0\0")
        || p == word(b"www-\0\0\0\0")
        || p == word(b"prox\0\0\0\0")
        || p == word(b"x-fo\0\0\0\0")
}

/// Starts a scan of the first `len` bytes: resets the state and examines the first line (a
/// segment may begin with a header line when the block continues from an earlier segment).
#[inline(always)]
pub fn scan_begin<W: Window>(w: &W, len: u32, c: &mut ScanState) {
    c.reset(len);
    match_line(w, 0, c);
}

/// One step: looks through up to `STEP_WORDS` aligned words from `pos` for the next line
/// that may matter (every line once a header matched: its end completes it), skipping the
/// others, and examines it; returns true when the scan is done. Every step advances `pos`,
/// so `len` steps always suffice.
#[inline(always)]
pub fn scan_step<W: Window>(w: &W, c: &mut ScanState) -> bool {
    let len = settle(&c.len);
    let pos = c.pos;
    if pos >= len {
        return true;
    }
    let base = pos & !7;
    let mut at = base;
    // The first word's bytes before `pos` were searched by the last step.
    let mut t = newline_bytes(w.aligned(base, 0)) & (u64::MAX << ((pos & 7) * 8));
    let mut last = c.line;
    let mut found = false;
    // Once a header matched, the next newline completes it.
    let any_line = c.matched != 0 && c.complete == 0;
    'words: for i in 1..=STEP_WORDS {
        for _ in 0..NEWLINES_PER_WORD {
            if t == 0 {
                break;
            }
            let nl = at + lowest_byte(t);
            t &= t - 1;
            if nl >= len {
                c.line = last;
                return true;
            }
            last = nl + 1;
            if any_line || may_matter(w, last, len) {
                found = true;
                break 'words;
            }
        }
        if t != 0 {
            // More newlines in this word than one step takes: the next step goes on from
            // the last line start.
            c.line = last;
            c.pos = last;
            return false;
        }
        at += 8;
        if at >= len {
            c.line = last;
            return true;
        }
        if i < STEP_WORDS {
            t = newline_bytes(w.aligned(base, i));
        }
    }
    if !found {
        c.line = last;
        c.pos = at;
        return false;
    }
    c.pos = last;
    let line = settle(&c.pos);
    at_line(w, line, c)
}

/// What a finished scan found.
#[inline(always)]
pub fn scan_end<W: Window>(w: &W, c: &ScanState) -> Found {
    let len = c.len;
    let mut found = Found {
        matched: c.matched != 0,
        line_complete: c.complete != 0,
        header: c.header,
        scheme: c.scheme,
        token: c.token,
        value_offset: c.value as u16,
        ended: c.ended != 0,
        head_len: if c.ended != 0 && c.end <= len {
            c.end
        } else {
            len
        },
        ..Found::default()
    };
    let v = c.xff;
    if v != 0 && v < len {
        found.xff_off = v;
        found.xff_len = value_len(w, v, len);
    }
    if c.matched == 0 && c.ended == 0 && c.line < len {
        // The last, unfinished line may be an auth header name cut by the segment boundary.
        let first = w.byte(c.line) | 0x20;
        found.partial_name_at_end = first == b'a' || first == b'w' || first == b'p';
    }
    found
}

/// The whole scan on the host: the same steps the kernel's `bpf_loop` runs.
pub fn scan<W: Window>(w: &W, len: u32) -> Found {
    let mut c = ScanState::default();
    scan_begin(w, len, &mut c);
    for _ in 0..len {
        if scan_step(w, &mut c) {
            break;
        }
    }
    scan_end(w, &c)
}

/// The same scan for a host that can find newlines fast (replay's kernel model, with
/// `memchr`): every line start goes through the line rule the kernel's steps apply to the lines
/// they do not skip, which finds exactly what the steps find (a skipped line is one that rule
/// would pass over; the tests hold the two equal). `newlines` yields the offsets of the `\n`
/// bytes of `d`, ascending.
pub fn scan_lines(d: &[u8], newlines: impl Iterator<Item = usize>) -> Found {
    let w = Slice(d);
    let len = d.len().min(u32::MAX as usize) as u32;
    let mut c = ScanState::default();
    scan_begin(&w, len, &mut c);
    for nl in newlines {
        let line = nl as u32 + 1;
        if nl as u32 >= len {
            break;
        }
        c.pos = line;
        // The steps' own shortcut: a line that cannot matter only moves the line start.
        if (c.matched == 0 || c.complete != 0) && !may_matter(&w, line, len) {
            c.line = line;
            continue;
        }
        if at_line(&w, line, &mut c) {
            break;
        }
    }
    scan_end(&w, &c)
}

/// Length of the header value at `v` (up to its CR LF), or 0 when it does not end within
/// `identity::MAX_LEN` bytes or inside the segment: such a value is never matched.
#[inline(always)]
fn value_len<W: Window>(w: &W, v: u32, len: u32) -> u32 {
    let mut i = 0u32;
    while i <= identity::MAX_LEN as u32 {
        let t = newlines(w, v + i);
        if t != 0 {
            let nl = v + i + lowest_byte(t);
            if nl >= len || nl == v {
                return 0;
            }
            let end = if w.byte(nl - 1) == b'\r' { nl - 1 } else { nl };
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

/// The words [`identity::hash`] takes of the `len` bytes at `off` (`len` ≤ `MAX_LEN`), zero
/// past `len`: what the kernel hashes of an `X-Forwarded-For` value.
#[inline(always)]
pub fn identity_words<W: Window>(w: &W, off: u32, len: u32) -> [u64; identity::WORDS] {
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
        words[i] = w.word(off + at) & mask;
        i += 1;
    }
    words
}

/// The first bytes of a copied payload: an HTTP/1.x request or response start line?
pub const HEAD_NONE: u8 = 0;
pub const HEAD_REQUEST: u8 = 1;
pub const HEAD_RESPONSE: u8 = 2;

/// Whether a copied payload of `len` bytes begins an HTTP/1.x response ("HTTP/") or request
/// (a method: three leading uppercase letters or '_', as in RPC_IN_DATA). The daemon parses
/// it fully; this only decides whether the segment is delivered.
#[inline(always)]
pub fn http_head<W: Window>(w: &W, len: u32) -> u8 {
    if len < 8 {
        return HEAD_NONE;
    }
    http_head_at(w, 0)
}

/// Bytes of a segment's copy a record carries: the head alone when the blank line ending it
/// is in the segment and what follows does not start another head (a body stays in the
/// kernel; pipelined heads stay with their segment), else everything copied — an unfinished
/// head, or an auth line and its continuation.
#[inline(always)]
pub fn record_len<W: Window>(w: &W, found: &Found, copied: u32) -> u32 {
    let head = found.head_len;
    if !found.ended || head >= copied || head == 0 {
        return copied;
    }
    if head + 8 <= copied {
        // Read back after the comparisons: knowing `head + 8 ≤ copied ≤ CAPTURE_MAX`, the
        // compiler dropped the window's offset mask and the verifier refused the load
        // ("unbounded memory access").
        let at = settle(&head);
        if http_head_at(w, at) != HEAD_NONE {
            return copied;
        }
    }
    head
}

/// [`http_head`] of the bytes at `off` (at least eight there).
#[inline(always)]
fn http_head_at<W: Window>(w: &W, off: u32) -> u8 {
    if w.word(off) & 0xff_ffff_ffff == word(b"HTTP/\0\0\0") {
        return HEAD_RESPONSE;
    }
    let upper = |b: u8| b.is_ascii_uppercase() || b == b'_';
    if upper(w.byte(off)) && upper(w.byte(off + 1)) && upper(w.byte(off + 2)) {
        HEAD_REQUEST
    } else {
        HEAD_NONE
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::{string::String, vec::Vec};

    fn scan_bytes(d: &[u8]) -> Found {
        scan(&Slice(d), d.len() as u32)
    }

    #[test]
    fn finds_auth_headers_anywhere_in_the_block() {
        let f =
            scan_bytes(b"GET / HTTP/1.1\r\nHost: a\r\nAUTHORIZATION:  ntlm TlRMTVNTUAAB\r\n\r\n");
        assert!(f.matched && f.line_complete);
        assert_eq!(
            (f.header, f.scheme, f.token),
            (
                HDR_AUTHORIZATION,
                SCHEME_NTLM,
                TokenKind::NtlmNegotiate as u8
            )
        );
        let f = scan_bytes(b"HTTP/1.1 401 X\r\nWWW-Authenticate: Negotiate oYGe");
        assert!(f.matched && !f.line_complete);
        assert_eq!(f.token, TokenKind::SpnegoResp as u8);
        // Not a whole word; other schemes; after the blank line.
        assert!(!scan_bytes(b"GET / HTTP/1.1\r\nAuthorization: NTLMX abc\r\n\r\n").matched);
        assert!(!scan_bytes(b"GET / HTTP/1.1\r\nAuthorization: Basic abcdefgh\r\n\r\n").matched);
        assert!(!scan_bytes(b"GET / HTTP/1.1\r\n\r\nAuthorization: NTLM TlRMTVNTUAAB\r\n").matched);
        let d = b"HTTP/1.1 401 X\r\nProxy-Authenticate: NTLM\r\n\r\n";
        let f = scan_bytes(d);
        // After a match the scan still finds the end of the head (the record's length).
        assert!(f.matched && f.line_complete && f.ended);
        assert_eq!(f.head_len as usize, d.len());
        assert_eq!(
            (f.header, f.token),
            (HDR_PROXY_AUTHENTICATE, TokenKind::None as u8)
        );
        let f = scan_bytes(b"GET / HTTP/1.1\r\nHost: a\r\nAuthor");
        assert!(!f.matched && f.partial_name_at_end);
        assert!(!scan_bytes(b"GET / HTTP/1.1\r\nHost: a\r\n").partial_name_at_end);
    }

    #[test]
    fn notes_the_last_forwarded_for_and_the_end_of_the_block() {
        let d =
            b"GET / HTTP/1.1\r\nX-Forwarded-For: 1.2.3.4\r\nx-forwarded-for:198.18.0.10\r\n\r\n";
        let f = scan_bytes(d);
        assert!(f.ended && !f.matched);
        let v = &d[f.xff_off as usize..(f.xff_off + f.xff_len) as usize];
        assert_eq!(v, b"198.18.0.10");
        let words = identity_words(&Slice(d), f.xff_off, f.xff_len);
        assert_eq!(Some(words), identity::words(v));
        // A value that does not end in the segment is no identity.
        let f = scan_bytes(b"GET / HTTP/1.1\r\nX-Forwarded-For: 198.18");
        assert_eq!(f.xff_len, 0);
    }

    #[test]
    fn slack_bytes_never_change_a_result() {
        // The same segment with zeros and with newlines and header names past its end.
        let seg: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.2.3.4\r\nAuthoriz";
        let mut junk = seg.to_vec();
        junk.extend_from_slice(b"ation: NTLM TlRMTVNTUAAD\r\n\r\n\n\n\n\n\n\n\n\n");
        let a = scan(&Slice(seg), seg.len() as u32);
        let b = scan(&Slice(&junk), seg.len() as u32);
        assert_eq!(a, b);
        assert!(a.partial_name_at_end);
    }

    /// Every line through the line rule, newlines found byte by byte: the reference the
    /// line-skipping `scan_step` must equal.
    fn scan_line_by_line(d: &[u8]) -> Found {
        scan_lines(
            d,
            d.iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .map(|(i, _)| i),
        )
    }

    #[test]
    fn skipping_lines_finds_what_reading_every_line_finds() {
        // Heads built from lines that matter and lines that do not, cut anywhere, with bytes
        // flipped: seeded, so a failure repeats.
        let lines: [&[u8]; 12] = [
            b"GET /ews/exchange.asmx HTTP/1.1\r\n",
            b"HTTP/1.1 401 Unauthorized\r\n",
            b"Host: mail.example\r\n",
            b"Accept: */*\r\n",
            b"X-Forwarded-For: 198.18.0.12\r\n",
            b"x-filler: not an identity\r\n",
            b"Authorization: NTLM TlRMTVNTUAADAAAAGAAYAEAAAAA=\r\n",
            b"WWW-Authenticate: Negotiate oYG3MIG0oAMKAQ==\r\n",
            b"Proxy-Authorization: Basic Zm9vOmJhcg==\r\n",
            b"Cookie: a=b; c=d; e=f; g=h; i=j; k=l; m=n; o=p\r\n",
            b"\n",
            b"\r\n",
        ];
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let mut d = Vec::new();
            for _ in 0..next() % 24 {
                d.extend_from_slice(lines[(next() % lines.len() as u64) as usize]);
            }
            for _ in 0..next() % 3 {
                if !d.is_empty() {
                    let i = (next() % d.len() as u64) as usize;
                    d[i] = b"\n\rAaWwPpXx: "[(next() % 12) as usize];
                }
            }
            d.truncate((next() % (d.len() as u64 + 1)) as usize);
            assert_eq!(
                scan_bytes(&d),
                scan_line_by_line(&d),
                "{:?}",
                String::from_utf8_lossy(&d)
            );
        }
    }

    #[test]
    fn records_carry_the_head_not_the_body() {
        let rec = |d: &[u8]| record_len(&Slice(d), &scan_bytes(d), d.len() as u32) as usize;
        let head = b"POST /EWS/Exchange.asmx HTTP/1.1\r\nAuthorization: NTLM TlRMTVNTUAAD\r\n\r\n";
        let mut with_body = head.to_vec();
        with_body.extend_from_slice(b"<?xml version=\"1.0\"?><soap:Envelope/>");
        assert_eq!(rec(&with_body), head.len());
        // A pipelined head after it stays; so does everything of an unfinished head.
        let mut pipelined = head.to_vec();
        pipelined.extend_from_slice(b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(rec(&pipelined), pipelined.len());
        let cut = b"GET / HTTP/1.1\r\nAuthorization: NTLM TlRMTVNT";
        assert_eq!(rec(cut), cut.len());
        // A bare LF blank line ends a head too.
        let lf = b"HTTP/1.1 401 X\nWWW-Authenticate: NTLM\n\nbody";
        assert_eq!(rec(lf), lf.len() - 4);
        assert_eq!(rec(head), head.len());
    }

    #[test]
    fn token_prefixes() {
        let k = |v: &[u8]| classify_value(v);
        assert_eq!(k(b"TlRMTVNTUAABAAAA"), TokenKind::NtlmNegotiate);
        assert_eq!(k(b"TlRMTVNTUAAC"), TokenKind::NtlmChallenge);
        assert_eq!(k(b"TlRMTVNTUAAD"), TokenKind::NtlmAuthenticate);
        assert_eq!(k(b"TlRMTVNTUAAE"), TokenKind::Other);
        assert_eq!(k(b"YIIGhgYGKwYBBQUCoIIGejCC"), TokenKind::GssInit);
        assert_eq!(k(b"YEYGBisGAQUFAq"), TokenKind::GssInit);
        assert_eq!(k(b"YJ"), TokenKind::Other);
        assert_eq!(k(b"Y"), TokenKind::Other);
        assert_eq!(k(b"oYGe"), TokenKind::SpnegoResp);
        assert_eq!(k(b""), TokenKind::None);
        assert_eq!(k(b"abc"), TokenKind::Other);
    }

    #[test]
    fn http_heads() {
        let h = |d: &[u8]| http_head(&Slice(d), d.len() as u32);
        assert_eq!(h(b"HTTP/1.1 200 OK\r\n"), HEAD_RESPONSE);
        assert_eq!(h(b"RPC_IN_DATA /rpc HTTP/1.1"), HEAD_REQUEST);
        assert_eq!(h(b"GET / HT"), HEAD_REQUEST);
        assert_eq!(h(b"GET / H"), HEAD_NONE);
        assert_eq!(h(b"get / HTTP/1.1"), HEAD_NONE);
    }
}
