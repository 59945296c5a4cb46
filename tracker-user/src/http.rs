//! Just enough HTTP/1.x header reading to name what a captured segment carries: the start
//! line and every NTLM/Negotiate auth header. Full request/response parsing comes with the
//! reassembly stage.

/// Start line of a request or a response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartLine {
    Request {
        method: String,
        target: String,
        version: String,
    },
    Response {
        version: String,
        status: u16,
    },
}

/// The four headers that carry NTLM/Negotiate tokens (RFC 4559, RFC 7235).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthHeaderName {
    Authorization,
    WwwAuthenticate,
    ProxyAuthorization,
    ProxyAuthenticate,
}

impl AuthHeaderName {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Authorization => "Authorization",
            Self::WwwAuthenticate => "WWW-Authenticate",
            Self::ProxyAuthorization => "Proxy-Authorization",
            Self::ProxyAuthenticate => "Proxy-Authenticate",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        [
            Self::Authorization,
            Self::WwwAuthenticate,
            Self::ProxyAuthorization,
            Self::ProxyAuthenticate,
        ]
        .into_iter()
        .find(|h| h.as_str().eq_ignore_ascii_case(name))
    }

    pub fn from_kernel(code: u8) -> Option<Self> {
        match code {
            tracker_common::HDR_AUTHORIZATION => Some(Self::Authorization),
            tracker_common::HDR_WWW_AUTHENTICATE => Some(Self::WwwAuthenticate),
            tracker_common::HDR_PROXY_AUTHORIZATION => Some(Self::ProxyAuthorization),
            tracker_common::HDR_PROXY_AUTHENTICATE => Some(Self::ProxyAuthenticate),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Ntlm,
    Negotiate,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ntlm => "NTLM",
            Self::Negotiate => "Negotiate",
        }
    }
}

/// An NTLM/Negotiate auth header. `token` is the raw base64 value: it may carry credential
/// material, so it is only ever decoded in memory, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthHeader {
    pub name: AuthHeaderName,
    pub scheme: Scheme,
    pub token: String,
    /// Byte offset of the header line in the block.
    pub offset: usize,
    /// False when the line was cut by the end of the captured bytes.
    pub complete: bool,
}

impl std::fmt::Debug for AuthHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthHeader")
            .field("name", &self.name)
            .field("scheme", &self.scheme)
            .field("token_len", &self.token.len())
            .field("offset", &self.offset)
            .field("complete", &self.complete)
            .finish()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderBlock {
    pub start: Option<StartLine>,
    pub auth: Vec<AuthHeader>,
    /// A blank line ended the header block inside these bytes.
    pub ended: bool,
    /// Offset of a last line cut by the end of the bytes (it may continue in the next segment).
    pub partial_tail: Option<usize>,
}

fn parse_start(line: &str) -> Option<StartLine> {
    let mut parts = line.splitn(3, ' ');
    let first = parts.next()?;
    let second = parts.next()?;
    if first.starts_with("HTTP/") {
        let status = second.parse().ok()?;
        return Some(StartLine::Response {
            version: first.to_string(),
            status,
        });
    }
    let version = parts.next()?.trim();
    if !version.starts_with("HTTP/") || !first.bytes().all(|b| b.is_ascii_uppercase()) {
        return None;
    }
    Some(StartLine::Request {
        method: first.to_string(),
        target: second.to_string(),
        version: version.to_string(),
    })
}

/// Reads the header lines of `bytes`, which may start mid-block (a later segment) and may be
/// cut at the end.
pub fn parse_block(bytes: &[u8]) -> HeaderBlock {
    let mut block = HeaderBlock::default();
    let mut offset = 0;
    let mut first = true;
    while offset < bytes.len() {
        let rest = &bytes[offset..];
        let (line, complete, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], true, offset + i + 1),
            None => (rest, false, bytes.len()),
        };
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if complete && line.is_empty() {
            block.ended = true;
            break;
        }
        if !complete {
            block.partial_tail = Some(offset);
        }
        let text = String::from_utf8_lossy(line);
        if first {
            first = false;
            if let Some(start) = parse_start(&text) {
                block.start = Some(start);
                offset = next;
                continue;
            }
        }
        if let Some((name, value)) = text.split_once(':') {
            if let Some(name) = AuthHeaderName::from_name(name.trim_end()) {
                let value = value.trim_start_matches([' ', '\t']);
                let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
                let scheme = if scheme.eq_ignore_ascii_case("NTLM") {
                    Some(Scheme::Ntlm)
                } else if scheme.eq_ignore_ascii_case("Negotiate") {
                    Some(Scheme::Negotiate)
                } else {
                    None
                };
                if let Some(scheme) = scheme {
                    block.auth.push(AuthHeader {
                        name,
                        scheme,
                        token: token.trim().to_string(),
                        offset,
                        complete,
                    });
                }
            }
        }
        offset = next;
    }
    block
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn finds_auth_headers_anywhere_and_the_start_line() {
        let b = parse_block(
            b"GET /ews HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nauthorization:  NTLM TlRMTVNTUAAB\r\n\r\nbody",
        );
        assert_eq!(
            b.start,
            Some(StartLine::Request {
                method: "GET".into(),
                target: "/ews".into(),
                version: "HTTP/1.1".into()
            })
        );
        assert!(b.ended);
        assert_eq!(b.auth.len(), 1);
        assert_eq!(b.auth[0].name, AuthHeaderName::Authorization);
        assert_eq!(b.auth[0].scheme, Scheme::Ntlm);
        assert_eq!(b.auth[0].token, "TlRMTVNTUAAB");
        assert!(b.auth[0].complete);
    }

    #[test]
    fn several_challenges_and_a_cut_line() {
        let b = parse_block(
            b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Negotiate\r\nWWW-Authenticate: NTLM\r\nProxy-Authenticate: NTLM TlRMTVNTUAAC",
        );
        assert_eq!(
            b.start,
            Some(StartLine::Response {
                version: "HTTP/1.1".into(),
                status: 401
            })
        );
        assert_eq!(b.auth.len(), 3);
        assert_eq!(b.auth[0].token, "");
        assert_eq!(b.auth[2].name, AuthHeaderName::ProxyAuthenticate);
        assert!(!b.auth[2].complete);
        assert!(!b.ended);
    }

    #[test]
    fn ignores_other_schemes_and_garbage() {
        let b =
            parse_block(b"\xff\xfe\r\nAuthorization: Basic dXNlcg==\r\nAuthorization:\r\n:\r\n");
        assert!(b.auth.is_empty());
        assert!(
            format!("{:?}", parse_block(b"Authorization: NTLM secret\r\n"))
                .contains("token_len: 6")
        );
    }
}
