//! A test-only encoder for NTLM messages and SPNEGO tokens (never in product code).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use tracker_ntlm::nlmp::{AvPair, FileTime, Version};

pub fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()
}

pub fn latin1(s: &str) -> Vec<u8> {
    s.chars()
        .map(|c| u8::try_from(u32::from(c)).unwrap())
        .collect()
}

pub fn enc_str(s: &str, unicode: bool) -> Vec<u8> {
    if unicode { utf16(s) } else { latin1(s) }
}

pub fn version_bytes(v: &Version) -> [u8; 8] {
    let b = v.build.to_le_bytes();
    [v.major, v.minor, b[0], b[1], 0, 0, 0, v.ntlm_revision]
}

pub fn av_pairs(pairs: &[AvPair]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in pairs {
        let value: Vec<u8> = match p {
            AvPair::Eol => continue,
            AvPair::NbComputerName(s)
            | AvPair::NbDomainName(s)
            | AvPair::DnsComputerName(s)
            | AvPair::DnsDomainName(s)
            | AvPair::DnsTreeName(s)
            | AvPair::TargetName(s) => utf16(s),
            AvPair::Flags(f) => f.0.to_le_bytes().to_vec(),
            AvPair::Timestamp(t) => t.0.to_le_bytes().to_vec(),
            AvPair::SingleHost(h) => {
                let mut v = h.size.to_le_bytes().to_vec();
                v.extend([0; 4]);
                v.extend(&h.custom_data);
                v.extend(&h.machine_id);
                v
            }
            AvPair::ChannelBindings(c) => c.0.to_vec(),
            AvPair::Malformed { value, .. } | AvPair::Unknown { value, .. } => value.clone(),
        };
        out.extend(p.id().to_le_bytes());
        out.extend((value.len() as u16).to_le_bytes());
        out.extend(value);
    }
    out.extend([0, 0, 0, 0]);
    out
}

/// Lays out a message: fixed header, then payload fields in order, patching descriptors.
struct Builder {
    buf: Vec<u8>,
}

impl Builder {
    fn new(msg_type: u32, header_len: usize) -> Builder {
        let mut buf = vec![0u8; header_len];
        buf[..8].copy_from_slice(b"NTLMSSP\0");
        buf[8..12].copy_from_slice(&msg_type.to_le_bytes());
        Builder { buf }
    }
    fn u32_at(&mut self, at: usize, v: u32) {
        self.buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
    fn field(&mut self, at: usize, data: &[u8]) {
        let off = self.buf.len() as u32;
        let len = data.len() as u16;
        self.buf[at..at + 2].copy_from_slice(&len.to_le_bytes());
        self.buf[at + 2..at + 4].copy_from_slice(&len.to_le_bytes());
        self.buf[at + 4..at + 8].copy_from_slice(&off.to_le_bytes());
        self.buf.extend_from_slice(data);
    }
    fn bytes(&mut self, at: usize, data: &[u8]) {
        self.buf[at..at + data.len()].copy_from_slice(data);
    }
}

pub fn negotiate(flags: u32, domain: &str, ws: &str, version: Option<Version>) -> Vec<u8> {
    let header = if version.is_some() { 40 } else { 32 };
    let mut b = Builder::new(1, header);
    b.u32_at(12, flags);
    b.field(16, &latin1(domain));
    b.field(24, &latin1(ws));
    if let Some(v) = version {
        b.bytes(32, &version_bytes(&v));
    }
    b.buf
}

pub fn challenge(
    flags: u32,
    target_name: &str,
    server_challenge: [u8; 8],
    target_info: Option<&[AvPair]>,
    version: Option<Version>,
) -> Vec<u8> {
    let header = if version.is_some() { 56 } else { 48 };
    let mut b = Builder::new(2, header);
    b.u32_at(20, flags);
    b.bytes(24, &server_challenge);
    b.field(12, &enc_str(target_name, flags & 1 != 0));
    if let Some(ti) = target_info {
        b.field(40, &av_pairs(ti));
    }
    if let Some(v) = version {
        b.bytes(48, &version_bytes(&v));
    }
    b.buf
}

pub fn ntlmv2_response(
    nt_proof: [u8; 16],
    timestamp: u64,
    client_challenge: [u8; 8],
    pairs: &[AvPair],
) -> Vec<u8> {
    let mut v = nt_proof.to_vec();
    v.extend([1, 1, 0, 0, 0, 0, 0, 0]);
    v.extend(timestamp.to_le_bytes());
    v.extend(client_challenge);
    v.extend([0; 4]);
    v.extend(av_pairs(pairs));
    v.extend([0; 4]);
    v
}

#[allow(clippy::too_many_arguments)]
pub fn authenticate(
    flags: u32,
    lm: &[u8],
    nt: &[u8],
    domain: &str,
    user: &str,
    ws: &str,
    session_key: &[u8],
    version: Option<Version>,
    mic: Option<[u8; 16]>,
) -> Vec<u8> {
    let header = if mic.is_some() {
        88
    } else if version.is_some() {
        72
    } else {
        64
    };
    let unicode = flags & 1 != 0;
    let mut b = Builder::new(3, header);
    b.u32_at(60, flags);
    if let Some(v) = version {
        b.bytes(64, &version_bytes(&v));
    }
    if let Some(m) = mic {
        b.bytes(72, &m);
    }
    b.field(28, &enc_str(domain, unicode));
    b.field(36, &enc_str(user, unicode));
    b.field(44, &enc_str(ws, unicode));
    b.field(12, lm);
    b.field(20, nt);
    b.field(52, session_key);
    b.buf
}

// ---- DER -------------------------------------------------------------------------------

pub fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = value.len();
    if n < 0x80 {
        out.push(n as u8);
    } else if n < 0x100 {
        out.extend([0x81, n as u8]);
    } else {
        out.extend([0x82, (n >> 8) as u8, n as u8]);
    }
    out.extend_from_slice(value);
    out
}

pub fn oid(dotted: &str) -> Vec<u8> {
    let arcs: Vec<u64> = dotted.split('.').map(|a| a.parse().unwrap()).collect();
    let mut body = vec![(arcs[0] * 40 + arcs[1]) as u8];
    for &a in &arcs[2..] {
        let mut stack = vec![(a & 0x7f) as u8];
        let mut x = a >> 7;
        while x > 0 {
            stack.push((x & 0x7f) as u8 | 0x80);
            x >>= 7;
        }
        stack.reverse();
        body.extend(stack);
    }
    tlv(0x06, &body)
}

pub const SPNEGO: &str = "1.3.6.1.5.5.2";

/// GSS-API InitialContextToken framing.
pub fn gss(mech: &str, inner: &[u8]) -> Vec<u8> {
    let mut v = oid(mech);
    v.extend_from_slice(inner);
    tlv(0x60, &v)
}

pub fn neg_token_init(mechs: &[&str], mech_token: Option<&[u8]>, mic: Option<&[u8]>) -> Vec<u8> {
    let list: Vec<u8> = mechs.iter().flat_map(|m| oid(m)).collect();
    let mut seq = tlv(0xa0, &tlv(0x30, &list));
    if let Some(t) = mech_token {
        seq.extend(tlv(0xa2, &tlv(0x04, t)));
    }
    if let Some(m) = mic {
        seq.extend(tlv(0xa3, &tlv(0x04, m)));
    }
    gss(SPNEGO, &tlv(0xa0, &tlv(0x30, &seq)))
}

pub fn neg_token_resp(
    state: Option<u8>,
    mech: Option<&str>,
    token: Option<&[u8]>,
    mic: Option<&[u8]>,
) -> Vec<u8> {
    let mut seq = Vec::new();
    if let Some(s) = state {
        seq.extend(tlv(0xa0, &tlv(0x0a, &[s])));
    }
    if let Some(m) = mech {
        seq.extend(tlv(0xa1, &oid(m)));
    }
    if let Some(t) = token {
        seq.extend(tlv(0xa2, &tlv(0x04, t)));
    }
    if let Some(m) = mic {
        seq.extend(tlv(0xa3, &tlv(0x04, m)));
    }
    tlv(0xa1, &tlv(0x30, &seq))
}

pub fn b64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        s.push(A[(n >> 18) as usize & 63] as char);
        s.push(A[(n >> 12) as usize & 63] as char);
        s.push(if c.len() > 1 {
            A[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        s.push(if c.len() > 2 {
            A[n as usize & 63] as char
        } else {
            '='
        });
    }
    s
}

// ---- Kerberos (RFC 4120), test-only --------------------------------------------------------

pub fn der_int(n: i64) -> Vec<u8> {
    let bytes = n.to_be_bytes();
    let mut i = 0;
    while i < 7
        && ((bytes[i] == 0 && bytes[i + 1] & 0x80 == 0)
            || (bytes[i] == 0xff && bytes[i + 1] & 0x80 != 0))
    {
        i += 1;
    }
    tlv(0x02, &bytes[i..])
}

/// `[n]` EXPLICIT.
pub fn ctx(n: u8, inner: &[u8]) -> Vec<u8> {
    tlv(0xa0 | n, inner)
}

pub fn kstr(s: &[u8]) -> Vec<u8> {
    tlv(0x1b, s)
}

pub fn principal(name_type: i64, parts: &[&[u8]]) -> Vec<u8> {
    let names: Vec<u8> = parts.iter().flat_map(|p| kstr(p)).collect();
    let mut seq = ctx(0, &der_int(name_type));
    seq.extend(ctx(1, &tlv(0x30, &names)));
    tlv(0x30, &seq)
}

pub fn enc_data(etype: i64, kvno: Option<i64>, cipher: &[u8]) -> Vec<u8> {
    let mut seq = ctx(0, &der_int(etype));
    if let Some(k) = kvno {
        seq.extend(ctx(1, &der_int(k)));
    }
    seq.extend(ctx(2, &tlv(0x04, cipher)));
    tlv(0x30, &seq)
}

/// A KRB-ERROR ([APPLICATION 30]); the e-text/crealm/cname fields only when given. Hand-built
/// for cases the MIT lab acceptor does not produce (raw, with client names and e-text).
#[allow(clippy::too_many_arguments)]
pub fn krb_error(
    code: i64,
    realm: &[u8],
    sname: &[&[u8]],
    crealm: Option<&[u8]>,
    cname: Option<&[&[u8]]>,
    e_text: Option<&[u8]>,
    e_data: Option<&[u8]>,
) -> Vec<u8> {
    let mut seq = ctx(0, &der_int(5));
    seq.extend(ctx(1, &der_int(30)));
    seq.extend(ctx(4, &tlv(0x18, b"20260102030405Z")));
    seq.extend(ctx(5, &der_int(123_456)));
    seq.extend(ctx(6, &der_int(code)));
    if let Some(c) = crealm {
        seq.extend(ctx(7, &kstr(c)));
    }
    if let Some(c) = cname {
        seq.extend(ctx(8, &principal(1, c)));
    }
    seq.extend(ctx(9, &kstr(realm)));
    seq.extend(ctx(10, &principal(2, sname)));
    if let Some(t) = e_text {
        seq.extend(ctx(11, &kstr(t)));
    }
    if let Some(d) = e_data {
        seq.extend(ctx(12, &tlv(0x04, d)));
    }
    tlv(0x7e, &tlv(0x30, &seq))
}

/// An AP-REQ ([APPLICATION 14]) with the given ticket realm / sname and cipher bytes.
pub fn ap_req(realm: &[u8], sname: &[&[u8]], etype: i64, kvno: i64, cipher: &[u8]) -> Vec<u8> {
    let mut t = ctx(0, &der_int(5));
    t.extend(ctx(1, &kstr(realm)));
    t.extend(ctx(2, &principal(2, sname)));
    t.extend(ctx(3, &enc_data(etype, Some(kvno), cipher)));
    let ticket = tlv(0x61, &tlv(0x30, &t));
    let mut seq = ctx(0, &der_int(5));
    seq.extend(ctx(1, &der_int(14)));
    seq.extend(ctx(2, &tlv(0x03, &[0x00, 0x20, 0, 0, 0])));
    seq.extend(ctx(3, &ticket));
    seq.extend(ctx(4, &enc_data(etype, None, cipher)));
    tlv(0x6e, &tlv(0x30, &seq))
}

/// GSS-API krb5 framing with a TOK_ID.
pub fn gss_krb5(tok_id: [u8; 2], msg: &[u8]) -> Vec<u8> {
    let mut inner = tok_id.to_vec();
    inner.extend_from_slice(msg);
    gss("1.2.840.113554.1.2.2", &inner)
}

/// The base64 Type-1, Type-2 and Type-3 of one NTLMv2 handshake of LAB\\alice from WS1: a
/// challenge whose TargetInfo is `names` and an MsvAvTimestamp of `stamp`, answered with the
/// same pairs. NEGOTIATE_VERSION (0x0200_0000) is clear: the messages carry no Version field.
pub fn ntlmv2_handshake(names: &[AvPair], stamp: u64) -> [String; 3] {
    let mut ti = names.to_vec();
    ti.push(AvPair::Timestamp(FileTime(stamp)));
    let t1 = b64(&negotiate(0xa008_8207, "", "", None));
    let t2 = b64(&challenge(
        0xa08a_8205,
        "LAB",
        *b"chal0001",
        Some(&ti),
        None,
    ));
    let nt = ntlmv2_response([7; 16], stamp + 1, *b"clientch", &ti);
    let t3 = b64(&authenticate(
        0xa088_8205,
        &[0; 24],
        &nt,
        "LAB",
        "alice",
        "WS1",
        &[9; 16],
        None,
        None,
    ));
    [t1, t2, t3]
}
