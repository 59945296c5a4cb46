//! HTTP authentication header values (RFC 9110 §11, RFC 4559) → NTLM / Negotiate tokens.
//!
//! Handles the four header names, several challenges in one `WWW-Authenticate` line (other
//! schemes and their auth-params, quoted strings with commas, are skipped), bare scheme
//! offers (`WWW-Authenticate: NTLM`), and strict or lenient base64 with the leniencies
//! reported per token. Repeated headers: call once per header line.

use crate::base64::{self, Base64Mode, Base64Report};
use crate::redact::Secret;
use crate::{DecodeError, Token, TokenKind, classify_base64_prefix, decode_token};
use serde::Serialize;

/// The four HTTP authentication headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HeaderName {
    /// `Authorization` (request, to an origin server).
    Authorization,
    /// `WWW-Authenticate` (401 response).
    WwwAuthenticate,
    /// `Proxy-Authorization` (request, to a proxy).
    ProxyAuthorization,
    /// `Proxy-Authenticate` (407 response).
    ProxyAuthenticate,
}

impl HeaderName {
    /// Case-insensitive match of a header name (surrounding whitespace and a trailing `:`
    /// are ignored).
    pub fn parse(name: &str) -> Option<HeaderName> {
        let n = name.trim().trim_end_matches(':').trim_end();
        [
            ("authorization", HeaderName::Authorization),
            ("www-authenticate", HeaderName::WwwAuthenticate),
            ("proxy-authorization", HeaderName::ProxyAuthorization),
            ("proxy-authenticate", HeaderName::ProxyAuthenticate),
        ]
        .into_iter()
        .find(|(s, _)| n.eq_ignore_ascii_case(s))
        .map(|(_, h)| h)
    }

    /// True for the request headers (client → server).
    pub fn is_request(self) -> bool {
        matches!(
            self,
            HeaderName::Authorization | HeaderName::ProxyAuthorization
        )
    }

    /// True for the proxy variants (407 / Proxy-*).
    pub fn is_proxy(self) -> bool {
        matches!(
            self,
            HeaderName::ProxyAuthorization | HeaderName::ProxyAuthenticate
        )
    }

    /// Canonical spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            HeaderName::Authorization => "Authorization",
            HeaderName::WwwAuthenticate => "WWW-Authenticate",
            HeaderName::ProxyAuthorization => "Proxy-Authorization",
            HeaderName::ProxyAuthenticate => "Proxy-Authenticate",
        }
    }
}

/// The authentication scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Scheme {
    /// `NTLM`.
    #[serde(rename = "NTLM")]
    Ntlm,
    /// `Negotiate` (RFC 4559).
    Negotiate,
}

/// One NTLM/Negotiate credential or challenge found in a header value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthToken {
    /// Which header carried it.
    pub header: HeaderName,
    /// Scheme.
    pub scheme: Scheme,
    /// Offset of the scheme name in the header value.
    pub offset: usize,
    /// The decoded token bytes, `None` for a bare offer (`WWW-Authenticate: NTLM`). Held as
    /// a [`Secret`]: a Type-3 carries credential material.
    pub token: Option<Secret>,
    /// Kind by base64 prefix (what the kernel matched).
    pub kind: TokenKind,
    /// Base64 leniencies used (all false when strict).
    pub base64: Base64Report,
}

impl AuthToken {
    /// Decodes the token (`Ok(None)` for a bare offer). Error offsets count token bytes.
    pub fn decode(&self) -> Result<Option<Token>, DecodeError> {
        self.token
            .as_ref()
            .map(|t| decode_token(t.expose_secret()))
            .transpose()
    }

    /// True for a bare scheme offer without a token.
    pub fn is_offer(&self) -> bool {
        self.token.is_none()
    }
}

/// Parses an auth header value with lenient base64 (see [`parse_auth_header_with`]).
pub fn parse_auth_header(name: &str, value: &str) -> Result<Vec<AuthToken>, DecodeError> {
    parse_auth_header_with(name, value, Base64Mode::Lenient)
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// First index at or after `from` holding `,` or `"`: 32 bytes at a time (vectorisable),
/// since base64 tokens are long and contain neither.
fn find_comma_or_quote(v: &[u8], from: usize) -> Option<usize> {
    let hay = v.get(from..)?;
    let mut chunks = hay.chunks_exact(32);
    let mut base = from;
    for chunk in &mut chunks {
        if chunk
            .iter()
            .fold(false, |acc, &b| acc | (b == b',') | (b == b'"'))
        {
            return chunk
                .iter()
                .position(|&b| b == b',' || b == b'"')
                .map(|i| base + i);
        }
        base += 32;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == b',' || b == b'"')
        .map(|i| base + i)
}

/// End of the list element starting at `start`: the next `,` outside a quoted string.
fn element_end(v: &[u8], start: usize) -> Result<usize, DecodeError> {
    let mut i = start;
    loop {
        match find_comma_or_quote(v, i) {
            None => return Ok(v.len()),
            Some(p) if v.get(p) == Some(&b',') => return Ok(p),
            Some(q) => {
                // Skip the quoted string (with backslash escapes).
                let mut j = q + 1;
                loop {
                    match v.get(j) {
                        None => {
                            return Err(DecodeError::BadHeader {
                                offset: q,
                                reason: "unterminated quoted string",
                            });
                        }
                        Some(b'\\') => j += 2,
                        Some(b'"') => break,
                        Some(_) => j += 1,
                    }
                }
                i = j + 1;
            }
        }
    }
}

/// Parses an auth header value: every NTLM / Negotiate challenge or credential in it, in
/// order. Other schemes are skipped. Errors: unknown header name, bad base64 (offsets in
/// `value`), an unterminated quoted string.
pub fn parse_auth_header_with(
    name: &str,
    value: &str,
    mode: Base64Mode,
) -> Result<Vec<AuthToken>, DecodeError> {
    let header = HeaderName::parse(name).ok_or(DecodeError::BadHeader {
        offset: 0,
        reason: "not an HTTP authentication header name",
    })?;
    let v = value.as_bytes();
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < v.len() {
        // One comma-separated element [start, end), honouring quoted strings.
        let start = pos;
        let end = element_end(v, start)?;
        pos = end + 1;
        let elem = &v[start..end];
        let lead = elem.iter().take_while(|&&b| is_ws(b)).count();
        let body = &elem[lead..];
        let word_len = body.iter().take_while(|&&b| !is_ws(b)).count();
        let (word, rest) = body.split_at(word_len);
        let scheme = if word.eq_ignore_ascii_case(b"NTLM") {
            Scheme::Ntlm
        } else if word.eq_ignore_ascii_case(b"Negotiate") {
            Scheme::Negotiate
        } else {
            // Another scheme, an auth-param of the previous challenge, or an empty element.
            continue;
        };
        let rest_lead = rest.iter().take_while(|&&b| is_ws(b)).count();
        let text = &rest[rest_lead..];
        let text_len = text.len() - text.iter().rev().take_while(|&&b| is_ws(b)).count();
        let text = &text[..text_len];
        let offset = start + lead;
        if text.is_empty() {
            out.push(AuthToken {
                header,
                scheme,
                offset,
                token: None,
                kind: TokenKind::None,
                base64: Base64Report::default(),
            });
            continue;
        }
        let text_at = offset + word_len + rest_lead;
        let (bytes, report) = base64::decode(text, mode, text_at)?;
        out.push(AuthToken {
            header,
            scheme,
            offset,
            token: Some(Secret::new(bytes)),
            kind: classify_base64_prefix(text),
            base64: report,
        });
    }
    Ok(out)
}
