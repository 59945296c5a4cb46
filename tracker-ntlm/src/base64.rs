//! Base64 for HTTP auth tokens, strict (RFC 4648 §4, canonical) or lenient (what real clients
//! and proxies emit), with every leniency used reported in [`Base64Report`].

use crate::DecodeError;
use serde::Serialize;

/// How strictly to read base64 text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Base64Mode {
    /// Standard alphabet, exact padding, no whitespace, zero trailing bits.
    Strict,
    /// Also accepts missing or excess padding, whitespace anywhere, the URL-safe alphabet and
    /// non-zero trailing bits, and reports each in [`Base64Report`].
    #[default]
    Lenient,
}

/// What a lenient decode had to tolerate. All false means the text was strict base64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Base64Report {
    /// `=` padding was missing.
    pub missing_padding: bool,
    /// `=` padding was present but of the wrong length.
    pub bad_padding: bool,
    /// Whitespace (SP, HTAB, CR, LF) inside the token.
    pub whitespace: bool,
    /// `-` or `_` of the URL-safe alphabet.
    pub url_safe: bool,
    /// The unused low bits of the last character were not zero.
    pub nonzero_trailing_bits: bool,
}

impl Base64Report {
    /// True when the text was canonical strict base64.
    pub fn is_strict(&self) -> bool {
        !(self.missing_padding
            || self.bad_padding
            || self.whitespace
            || self.url_safe
            || self.nonzero_trailing_bits)
    }
}

const INVALID: u8 = 0xFF;
const PAD: u8 = 0xFE;
const SPACE: u8 = 0xFD;
const URLSAFE_BIT: u8 = 0x40;

const fn build_table() -> [u8; 256] {
    let mut t = [INVALID; 256];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut i = 0;
    while i < 64 {
        t[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    t[b'-' as usize] = 62 | URLSAFE_BIT;
    t[b'_' as usize] = 63 | URLSAFE_BIT;
    t[b'=' as usize] = PAD;
    t[b' ' as usize] = SPACE;
    t[b'\t' as usize] = SPACE;
    t[b'\r' as usize] = SPACE;
    t[b'\n' as usize] = SPACE;
    t
}

static TABLE: [u8; 256] = build_table();

/// Decodes base64 `text`; `base` is the offset of `text` in the header value (for errors).
pub fn decode(
    text: &[u8],
    mode: Base64Mode,
    base: usize,
) -> Result<(Vec<u8>, Base64Report), DecodeError> {
    if let Some(out) = decode_fast(text) {
        return Ok((out, Base64Report::default()));
    }
    decode_slow(text, mode, base)
}

/// Canonical padded text with no whitespace: 4 characters at a time. `None` on anything else.
fn decode_fast(text: &[u8]) -> Option<Vec<u8>> {
    if text.is_empty() || !text.len().is_multiple_of(4) {
        return None;
    }
    let (body, last) = text.split_at(text.len() - 4);
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    for quad in body.chunks_exact(4) {
        let (a, b, c, d) = (
            TABLE[quad[0] as usize],
            TABLE[quad[1] as usize],
            TABLE[quad[2] as usize],
            TABLE[quad[3] as usize],
        );
        if (a | b | c | d) & 0xC0 != 0 {
            return None;
        }
        let n = (u32::from(a) << 18) | (u32::from(b) << 12) | (u32::from(c) << 6) | u32::from(d);
        out.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8]);
    }
    let [a, b, c, d] = [
        TABLE[last[0] as usize],
        TABLE[last[1] as usize],
        TABLE[last[2] as usize],
        TABLE[last[3] as usize],
    ];
    if (a | b) & 0xC0 != 0 {
        return None;
    }
    let n12 = (u32::from(a) << 18) | (u32::from(b) << 12);
    match (c, d) {
        (PAD, PAD) => {
            if b & 0x0F != 0 {
                return None;
            }
            out.push((n12 >> 16) as u8);
        }
        (c, PAD) if c & 0xC0 == 0 => {
            if c & 0x03 != 0 {
                return None;
            }
            let n = n12 | (u32::from(c) << 6);
            out.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8]);
        }
        (c, d) if (c | d) & 0xC0 == 0 => {
            let n = n12 | (u32::from(c) << 6) | u32::from(d);
            out.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8]);
        }
        _ => return None,
    }
    Some(out)
}

fn decode_slow(
    text: &[u8],
    mode: Base64Mode,
    base: usize,
) -> Result<(Vec<u8>, Base64Report), DecodeError> {
    let strict = mode == Base64Mode::Strict;
    let err = |offset: usize, reason: &'static str| DecodeError::BadBase64 {
        offset: base.saturating_add(offset),
        reason,
    };
    let mut report = Base64Report::default();
    let mut out = Vec::with_capacity(text.len() / 4 * 3 + 3);
    let mut acc: u32 = 0;
    let mut sextets: usize = 0;
    let mut pads: usize = 0;
    let mut last_char_at = 0usize;
    for (i, &ch) in text.iter().enumerate() {
        let v = TABLE[ch as usize];
        match v {
            INVALID => return Err(err(i, "invalid character")),
            SPACE => {
                if strict {
                    return Err(err(i, "whitespace inside token"));
                }
                report.whitespace = true;
            }
            PAD => pads += 1,
            _ => {
                if pads > 0 {
                    return Err(err(i, "data after padding"));
                }
                if v & URLSAFE_BIT != 0 {
                    if strict {
                        return Err(err(i, "URL-safe alphabet"));
                    }
                    report.url_safe = true;
                }
                acc = (acc << 6) | u32::from(v & 0x3F);
                sextets += 1;
                last_char_at = i;
                if sextets.is_multiple_of(4) {
                    out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]);
                    acc = 0;
                }
            }
        }
    }
    if sextets == 0 {
        return Err(err(0, "empty token"));
    }
    let rem = sextets % 4;
    let expected_pads = (4 - rem) % 4;
    if rem == 1 {
        return Err(err(
            last_char_at,
            "impossible length (one character left over)",
        ));
    }
    if pads != expected_pads {
        if pads == 0 {
            if strict {
                return Err(err(text.len(), "missing padding"));
            }
            report.missing_padding = true;
        } else {
            if strict {
                return Err(err(text.len(), "wrong padding length"));
            }
            report.bad_padding = true;
        }
    }
    let trailing_nonzero = match rem {
        2 => {
            out.push((acc >> 4) as u8);
            acc & 0x0F != 0
        }
        3 => {
            out.extend_from_slice(&[(acc >> 10) as u8, (acc >> 2) as u8]);
            acc & 0x03 != 0
        }
        _ => false,
    };
    if trailing_nonzero {
        if strict {
            return Err(err(last_char_at, "non-zero trailing bits"));
        }
        report.nonzero_trailing_bits = true;
    }
    Ok((out, report))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn strict_and_lenient() {
        let (b, r) = decode(b"TlRMTVNTUAAB", Base64Mode::Strict, 0).unwrap();
        assert_eq!(b, b"NTLMSSP\0\x01");
        assert!(r.is_strict());
        let (b, r) = decode(b"YQ==", Base64Mode::Strict, 0).unwrap();
        assert_eq!(b, b"a");
        assert!(r.is_strict());
        let (b, r) = decode(b"YQ", Base64Mode::Lenient, 0).unwrap();
        assert_eq!(b, b"a");
        assert!(r.missing_padding && !r.is_strict());
        assert!(decode(b"YQ", Base64Mode::Strict, 0).is_err());
        let (b, r) = decode(b"TlRM TVNT\r\n UAAB", Base64Mode::Lenient, 0).unwrap();
        assert_eq!(b, b"NTLMSSP\0\x01");
        assert!(r.whitespace);
        let e = decode(b"TlRM TVNT", Base64Mode::Strict, 10).unwrap_err();
        assert_eq!(e.offset(), 14);
        let (_, r) = decode(b"YR==", Base64Mode::Lenient, 0).unwrap();
        assert!(r.nonzero_trailing_bits);
        let (b, r) = decode(b"-_8=", Base64Mode::Lenient, 0).unwrap();
        assert_eq!(b, [0xfb, 0xff]);
        assert!(r.url_safe);
        assert!(decode(b"Y", Base64Mode::Lenient, 0).is_err());
        assert!(decode(b"", Base64Mode::Lenient, 0).is_err());
        assert!(decode(b"YQ==YQ==", Base64Mode::Lenient, 0).is_err());
        let (_, r) = decode(b"YQ=", Base64Mode::Lenient, 0).unwrap();
        assert!(r.bad_padding);
        assert!(decode(b"Y\"Q=", Base64Mode::Lenient, 0).is_err());
    }
}
