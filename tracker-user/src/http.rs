//! HTTP/1.x request and response heads, read with `httparse`: the start line, the auth
//! headers (every NTLM/Negotiate credential or challenge), `Connection:` and the version,
//! `X-Forwarded-For`, a configurable client-port header, `Persistent-Auth` and the body length.
//! A head that the kernel delivered from its middle (the segment that carried its start line
//! was not copied) is read line by line, without a start line.

use tracker_common::identity;

/// Start line of a request or a response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartLine {
    Request {
        method: String,
        target: String,
        /// `HTTP/1.x`.
        version: String,
    },
    Response {
        version: String,
        status: u16,
    },
}

/// An NTLM/Negotiate-capable auth header line. `value` may carry credential material: it is
/// decoded in memory and never printed (the `Debug` shows only its length).
#[derive(Clone, PartialEq, Eq)]
pub struct AuthLine {
    pub name: tracker_ntlm::HeaderName,
    pub value: String,
}

/// The value is overwritten when the line goes (see [`AuthLine`]).
impl Drop for AuthLine {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.value);
    }
}

impl std::fmt::Debug for AuthLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthLine")
            .field("name", &self.name)
            .field("value_len", &self.value.len())
            .finish()
    }
}

/// A value as the kernel's identity hash takes it: little-endian words and the length.
pub type IdentityValue = ([u64; identity::WORDS], u32);

/// What the pipeline needs from one request or response head.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Head {
    /// `None` when the head was read from its middle.
    pub start: Option<StartLine>,
    /// Auth headers whose value names NTLM or Negotiate (other schemes are not kept).
    pub auth: Vec<AuthLine>,
    /// `Connection: close` was present.
    pub connection_close: bool,
    /// `Connection: keep-alive` was present.
    pub keep_alive: bool,
    /// The last element of `X-Forwarded-For` (the one the balancer added).
    pub forwarded_for: Option<String>,
    /// The whole value of the last `X-Forwarded-For` line, as the kernel's identity check
    /// hashes it (`None` when absent or longer than the kernel reads).
    pub forwarded_for_line: Option<IdentityValue>,
    /// Value of the configured client-port header.
    pub client_port: Option<u16>,
    /// `Persistent-Auth: true|false`.
    pub persistent_auth: Option<bool>,
    pub content_length: Option<u64>,
    pub chunked: bool,
    /// Bytes of the head, blank line included.
    pub len: usize,
    /// The head was cut by the capture length: only its complete lines were read.
    pub truncated: bool,
}

impl Head {
    pub fn is_request(&self) -> bool {
        match &self.start {
            Some(StartLine::Request { .. }) => true,
            Some(StartLine::Response { .. }) => false,
            None => self.auth.iter().any(|a| a.name.is_request()),
        }
    }

    pub fn is_response(&self) -> bool {
        match &self.start {
            Some(StartLine::Response { .. }) => true,
            Some(StartLine::Request { .. }) => false,
            None => self.auth.iter().any(|a| !a.name.is_request()),
        }
    }

    pub fn status(&self) -> Option<u16> {
        match &self.start {
            Some(StartLine::Response { status, .. }) => Some(*status),
            _ => None,
        }
    }

    pub fn version(&self) -> Option<&str> {
        match &self.start {
            Some(StartLine::Request { version, .. } | StartLine::Response { version, .. }) => {
                Some(version)
            }
            None => None,
        }
    }

    /// The connection ends after this message: `Connection: close`, or HTTP/1.0 without
    /// `keep-alive`.
    pub fn closes_connection(&self) -> bool {
        self.connection_close || (self.version() == Some("HTTP/1.0") && !self.keep_alive)
    }
}

/// Result of reading the bytes at the start of a stream position.
#[derive(Debug, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // moved once per head; boxing would allocate per head
pub enum Parse {
    Complete(Head),
    /// A head that needs more bytes.
    Partial,
    /// Not the beginning of an HTTP head (body bytes, garbage).
    NotHttp,
}

/// Options of the head reader.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Lowercase name of a header that carries the client's source port (e.g. `x-client-port`).
    pub client_port_header: Option<String>,
}

const MAX_HEADERS: usize = 128;

/// Offset just past the blank line that ends a head (CRLF CRLF or LF LF), if present.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(p) = buf
        .get(i..)
        .and_then(|s| s.iter().position(|&b| b == b'\n'))
    {
        let nl = i + p;
        match buf.get(nl + 1) {
            Some(b'\n') => return Some(nl + 2),
            Some(b'\r') if buf.get(nl + 2) == Some(&b'\n') => return Some(nl + 3),
            _ => i = nl + 1,
        }
    }
    None
}

/// Whether `buf` begins like an HTTP/1.x start line (response `HTTP/` or a request method
/// token followed by a space).
pub fn starts_like_http(buf: &[u8]) -> bool {
    if buf.starts_with(b"HTTP/") {
        return true;
    }
    let m = buf
        .iter()
        .take(24)
        .take_while(|b| b.is_ascii_uppercase() || **b == b'_' || **b == b'-')
        .count();
    m >= 3 && buf.get(m) == Some(&b' ')
}

/// Whether `buf` begins with a header line (`Name: value`), i.e. a head read from its middle.
fn starts_like_header_line(buf: &[u8]) -> bool {
    let n = buf
        .iter()
        .take(64)
        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'-' || **b == b'_')
        .count();
    n > 0 && buf.get(n) == Some(&b':')
}

/// Reads the head at the start of `buf`.
pub fn parse(buf: &[u8], opts: &Options) -> Parse {
    if buf.is_empty() {
        return Parse::Partial;
    }
    let http = starts_like_http(buf);
    if !http && !starts_like_header_line(buf) {
        // A prefix of a start line or a header name may still complete.
        if buf.len() < 8 && !buf.contains(&b'\n') {
            return Parse::Partial;
        }
        return Parse::NotHttp;
    }
    let Some(end) = head_end(buf) else {
        return Parse::Partial;
    };
    let block = &buf[..end];
    if http {
        if let Some(head) = parse_httparse(block, opts) {
            return Parse::Complete(head);
        }
    }
    Parse::Complete(parse_lines(block, opts, false))
}

/// Reads the complete lines of a head that the capture cut (`truncated` is set).
pub fn parse_truncated(buf: &[u8], opts: &Options) -> Option<Head> {
    if !starts_like_http(buf) && !starts_like_header_line(buf) {
        return None;
    }
    let complete = buf.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    Some(parse_lines(&buf[..complete], opts, true))
}

fn parse_httparse(block: &[u8], opts: &Options) -> Option<Head> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut head = Head {
        len: block.len(),
        ..Head::default()
    };
    if block.starts_with(b"HTTP/") {
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(block) {
            Ok(httparse::Status::Complete(_)) => {}
            _ => return None,
        }
        head.start = Some(StartLine::Response {
            version: format!("HTTP/1.{}", resp.version.unwrap_or(1)),
            status: resp.code?,
        });
        for h in resp.headers.iter() {
            header(&mut head, h.name, h.value, opts);
        }
    } else {
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(block) {
            Ok(httparse::Status::Complete(_)) => {}
            _ => return None,
        }
        head.start = Some(StartLine::Request {
            method: req.method?.to_string(),
            target: req.path?.to_string(),
            version: format!("HTTP/1.{}", req.version.unwrap_or(1)),
        });
        for h in req.headers.iter() {
            header(&mut head, h.name, h.value, opts);
        }
    }
    Some(head)
}

/// Line-by-line reading: a head without its start line, one httparse rejects (too many
/// headers, odd bytes), or the complete lines of a truncated head.
fn parse_lines(block: &[u8], opts: &Options, truncated: bool) -> Head {
    let mut head = Head {
        len: block.len(),
        truncated,
        ..Head::default()
    };
    let mut first = true;
    for line in block.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            if first {
                continue;
            }
            break;
        }
        if first {
            first = false;
            if let Some(start) = start_line(line) {
                head.start = Some(start);
                continue;
            }
        }
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            let name = String::from_utf8_lossy(&line[..colon]);
            header(&mut head, name.trim_end(), &line[colon + 1..], opts);
        }
    }
    head
}

fn start_line(line: &[u8]) -> Option<StartLine> {
    let text = std::str::from_utf8(line).ok()?;
    let mut parts = text.splitn(3, ' ');
    let a = parts.next()?;
    let b = parts.next()?;
    if a.starts_with("HTTP/") {
        return Some(StartLine::Response {
            version: a.to_string(),
            status: b.parse().ok()?,
        });
    }
    let v = parts.next()?.trim();
    if !v.starts_with("HTTP/") {
        return None;
    }
    Some(StartLine::Request {
        method: a.to_string(),
        target: b.to_string(),
        version: v.to_string(),
    })
}

fn trim(v: &[u8]) -> &[u8] {
    let s = v
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(v.len());
    let e = v
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(s, |p| p + 1);
    v.get(s..e).unwrap_or(&[])
}

fn header(head: &mut Head, name: &str, value: &[u8], opts: &Options) {
    let value = trim(value);
    if let Some(h) = tracker_ntlm::HeaderName::parse(name) {
        let word_end = value
            .iter()
            .position(|b| b.is_ascii_whitespace() || *b == b',')
            .unwrap_or(value.len());
        let word = &value[..word_end];
        let ours =
            |v: &[u8]| v.eq_ignore_ascii_case(b"NTLM") || v.eq_ignore_ascii_case(b"Negotiate");
        // A challenge list may name NTLM after another scheme: keep the line when it
        // mentions NTLM/Negotiate anywhere; the decoder picks the right elements.
        let mentions = ours(word)
            || value
                .split(|b| *b == b',' || b.is_ascii_whitespace())
                .any(ours);
        if mentions {
            head.auth.push(AuthLine {
                name: h,
                value: String::from_utf8_lossy(value).into_owned(),
            });
        }
        return;
    }
    if name.eq_ignore_ascii_case("connection") || name.eq_ignore_ascii_case("proxy-connection") {
        for tok in value.split(|b| *b == b',') {
            let tok = trim(tok);
            if tok.eq_ignore_ascii_case(b"close") {
                head.connection_close = true;
            } else if tok.eq_ignore_ascii_case(b"keep-alive") {
                head.keep_alive = true;
            }
        }
    } else if name.eq_ignore_ascii_case("x-forwarded-for") {
        head.forwarded_for_line = identity::words(value).map(|w| (w, value.len() as u32));
        let last = value.rsplit(|b| *b == b',').next().map(trim).unwrap_or(&[]);
        if !last.is_empty() {
            head.forwarded_for = Some(String::from_utf8_lossy(last).into_owned());
        }
    } else if name.eq_ignore_ascii_case("persistent-auth") {
        head.persistent_auth = Some(value.eq_ignore_ascii_case(b"true"));
    } else if name.eq_ignore_ascii_case("content-length") {
        head.content_length = std::str::from_utf8(value).ok().and_then(|s| s.parse().ok());
    } else if name.eq_ignore_ascii_case("transfer-encoding") {
        head.chunked = value
            .split(|b| *b == b',')
            .any(|t| trim(t).eq_ignore_ascii_case(b"chunked"));
    } else if let Some(h) = &opts.client_port_header
        && name.eq_ignore_ascii_case(h)
    {
        head.client_port = std::str::from_utf8(value).ok().and_then(|s| s.parse().ok());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn complete(b: &[u8]) -> Head {
        let opts = Options {
            client_port_header: Some("x-client-port".into()),
        };
        match parse(b, &opts) {
            Parse::Complete(h) => h,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn request_with_auth_xff_port_and_connection() {
        let h = complete(
            b"GET /ews HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 10.9.9.9, 198.18.5.1\r\nX-Client-Port: 40001\r\nauthorization:  NTLM TlRMTVNTUAAB\r\nConnection: Keep-Alive\r\n\r\nbody",
        );
        assert!(h.is_request());
        assert_eq!(h.auth.len(), 1);
        assert_eq!(h.auth[0].name, tracker_ntlm::HeaderName::Authorization);
        assert_eq!(h.auth[0].value, "NTLM TlRMTVNTUAAB");
        assert_eq!(h.forwarded_for.as_deref(), Some("198.18.5.1"));
        assert_eq!(h.client_port, Some(40001));
        assert!(h.keep_alive && !h.closes_connection());
        assert_eq!(h.len, 150);
        assert!(!format!("{h:?}").contains("TlRM"));
    }

    #[test]
    fn response_http10_and_several_challenges() {
        let h = complete(
            b"HTTP/1.0 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"x\", NTLM\r\nWWW-Authenticate: Negotiate\r\nContent-Length: 5\r\n\r\n",
        );
        assert_eq!(h.status(), Some(401));
        assert_eq!(h.auth.len(), 2);
        assert!(h.closes_connection());
        assert_eq!(h.content_length, Some(5));
    }

    #[test]
    fn mid_block_partial_and_garbage() {
        let h = complete(b"Authorization: Negotiate YIIB\r\nHost: a\r\n\r\n");
        assert!(h.start.is_none() && h.is_request());
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nHost", &Options::default()),
            Parse::Partial
        );
        assert_eq!(parse(b"GE", &Options::default()), Parse::Partial);
        assert_eq!(
            parse(b"\x00\x01garbage\r\n\r\n", &Options::default()),
            Parse::NotHttp
        );
        assert_eq!(parse(b"UAAB\r\n\r\n", &Options::default()), Parse::NotHttp);
        let t = parse_truncated(
            b"GET / HTTP/1.1\r\nX-Forwarded-For: 1.2.3.4\r\nAuthoriz",
            &Options::default(),
        )
        .unwrap();
        assert!(t.truncated);
        assert_eq!(t.forwarded_for.as_deref(), Some("1.2.3.4"));
        // httparse rejects an odd byte: the line reader still reads it.
        let odd = complete(b"GET / HTTP/1.1\r\nX\x01Y: z\r\nAuthorization: NTLM abc\r\n\r\n");
        assert_eq!(odd.auth.len(), 1);
    }
}
