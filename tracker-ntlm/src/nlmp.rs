//! NTLM messages (MS-NLMP 2.2.1): NEGOTIATE_MESSAGE (Type-1), CHALLENGE_MESSAGE (Type-2) and
//! AUTHENTICATE_MESSAGE (Type-3). Every (len, maxlen, offset) field is bounds-checked; any
//! input yields a value or a [`DecodeError`], never a panic.

pub mod av;
pub mod flags;

pub use av::{AvFlags, AvPair, AvPairs, ChannelBindings, FileTime, SingleHost, av_id};
pub use flags::{NEGOTIATE_FLAG_NAMES, NegotiateFlags};

use crate::DecodeError;
use crate::redact::Secret;
use serde::{Serialize, Serializer};
use std::fmt;

/// `NTLMSSP\0`.
pub const SIGNATURE: &[u8; 8] = b"NTLMSSP\0";

/// NTLM MessageType.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageType {
    /// Type-1, NEGOTIATE_MESSAGE.
    Negotiate = 1,
    /// Type-2, CHALLENGE_MESSAGE.
    Challenge = 2,
    /// Type-3, AUTHENTICATE_MESSAGE.
    Authenticate = 3,
}

/// VERSION (MS-NLMP 2.2.2.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Version {
    /// ProductMajorVersion.
    pub major: u8,
    /// ProductMinorVersion.
    pub minor: u8,
    /// ProductBuild.
    pub build: u16,
    /// NTLMRevisionCurrent (15 for NTLMSSP_REVISION_W2K3).
    pub ntlm_revision: u8,
}

/// The 8-byte ServerChallenge of a Type-2 (a nonce, not a credential). Debug and Serialize
/// print lowercase hex, as tshark's `ntlmssp.ntlmserverchallenge` does (without colons).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ServerChallenge(pub [u8; 8]);

impl fmt::Debug for ServerChallenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServerChallenge({})", hex(&self.0))
    }
}

impl fmt::Display for ServerChallenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl Serialize for ServerChallenge {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex(&self.0))
    }
}

/// A decoded NTLM message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "message_type", rename_all = "snake_case")]
pub enum NtlmMessage {
    /// Type-1.
    Negotiate(NegotiateMessage),
    /// Type-2.
    Challenge(ChallengeMessage),
    /// Type-3.
    Authenticate(AuthenticateMessage),
}

impl NtlmMessage {
    /// Decodes a raw NTLM message (starting with `NTLMSSP\0`).
    pub fn decode(buf: &[u8]) -> Result<NtlmMessage, DecodeError> {
        if buf.len() < 12 {
            if buf.len() < 8 && SIGNATURE.starts_with(buf) {
                return Err(trunc(0, "NTLM header", 12, buf.len()));
            }
            if !buf.starts_with(SIGNATURE) && !SIGNATURE.starts_with(buf) {
                return Err(DecodeError::BadSignature { offset: 0 });
            }
            return Err(trunc(0, "NTLM header", 12, buf.len()));
        }
        if buf.get(0..8) != Some(SIGNATURE.as_slice()) {
            return Err(DecodeError::BadSignature { offset: 0 });
        }
        match read_u32(buf, 8, "MessageType")? {
            1 => NegotiateMessage::decode(buf).map(NtlmMessage::Negotiate),
            2 => ChallengeMessage::decode(buf).map(NtlmMessage::Challenge),
            3 => AuthenticateMessage::decode(buf).map(NtlmMessage::Authenticate),
            found => Err(DecodeError::WrongMessageType { offset: 8, found }),
        }
    }

    /// Type-1, -2 or -3.
    pub fn message_type(&self) -> MessageType {
        match self {
            NtlmMessage::Negotiate(_) => MessageType::Negotiate,
            NtlmMessage::Challenge(_) => MessageType::Challenge,
            NtlmMessage::Authenticate(_) => MessageType::Authenticate,
        }
    }

    /// NegotiateFlags.
    pub fn flags(&self) -> NegotiateFlags {
        match self {
            NtlmMessage::Negotiate(m) => m.flags,
            NtlmMessage::Challenge(m) => m.flags,
            NtlmMessage::Authenticate(m) => m.flags,
        }
    }

    /// VERSION, when present.
    pub fn version(&self) -> Option<Version> {
        match self {
            NtlmMessage::Negotiate(m) => m.version,
            NtlmMessage::Challenge(m) => m.version,
            NtlmMessage::Authenticate(m) => m.version,
        }
    }
}

/// NEGOTIATE_MESSAGE (Type-1). Its strings are always OEM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NegotiateMessage {
    /// NegotiateFlags.
    pub flags: NegotiateFlags,
    /// DomainName (OEM), when supplied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Workstation (OEM), when supplied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workstation: Option<String>,
    /// VERSION, when present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<Version>,
}

/// CHALLENGE_MESSAGE (Type-2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChallengeMessage {
    /// TargetName (UTF-16LE or OEM per flags).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_name: Option<String>,
    /// NegotiateFlags.
    pub flags: NegotiateFlags,
    /// ServerChallenge.
    pub server_challenge: ServerChallenge,
    /// TargetInfo AV pairs, when present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_info: Option<AvPairs>,
    /// VERSION, when present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<Version>,
}

/// How the LmChallengeResponse was formed (MS-NLMP 3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LmResponseKind {
    /// Empty.
    Absent,
    /// Z(1): anonymous authentication.
    Anonymous,
    /// Z(24): NTLMv2 client that sent MsvAvTimestamp (no LMv2).
    Zeros,
    /// 24 bytes beside an NTLMv1 NT response (LMv1, or the client challenge under ESS).
    LmV1,
    /// 24 bytes beside an NTLMv2 NT response (LMv2).
    LmV2,
    /// Any other length.
    Other,
}

/// How the NtChallengeResponse was formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NtResponseKind {
    /// Empty: anonymous authentication.
    Anonymous,
    /// 24 bytes: NTLMv1 (with or without extended session security).
    NtlmV1,
    /// NTProofStr + NTLMv2_CLIENT_CHALLENGE.
    NtlmV2,
    /// Any other shape.
    Other,
}

/// The LmChallengeResponse: kind, and the bytes held redacted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LmResponse {
    /// Shape.
    pub kind: LmResponseKind,
    /// The bytes (credential material).
    pub bytes: Secret,
}

/// The NtChallengeResponse: kind, parsed client challenge (NTLMv2), bytes held redacted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NtResponse {
    /// Shape.
    pub kind: NtResponseKind,
    /// The NTLMv2_CLIENT_CHALLENGE, for NTLMv2.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ntlmv2: Option<NtlmV2ClientChallenge>,
    /// The bytes (credential material).
    pub bytes: Secret,
}

/// NTLMv2_CLIENT_CHALLENGE (MS-NLMP 2.2.2.7): what the correlation engine needs from the NT
/// response, without the NTProofStr.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NtlmV2ClientChallenge {
    /// RespType (1).
    pub resp_type: u8,
    /// HiRespType (1).
    pub hi_resp_type: u8,
    /// TimeStamp: the client's clock (not MsvAvTimestamp).
    pub timestamp: FileTime,
    /// ChallengeFromClient, hex.
    #[serde(serialize_with = "ser_hex8")]
    pub client_challenge: [u8; 8],
    /// AvPairs: the Type-2's TargetInfo as copied by the client, plus the client's own.
    pub av_pairs: AvPairs,
}

fn ser_hex8<S: Serializer>(v: &[u8; 8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex(v))
}

/// AUTHENTICATE_MESSAGE (Type-3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthenticateMessage {
    /// LmChallengeResponse.
    pub lm_response: LmResponse,
    /// NtChallengeResponse.
    pub nt_response: NtResponse,
    /// DomainName.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// UserName.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Workstation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workstation: Option<String>,
    /// EncryptedRandomSessionKey, when non-empty (credential material).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_key: Option<Secret>,
    /// NegotiateFlags (zero in the oldest 52-byte form).
    pub flags: NegotiateFlags,
    /// VERSION, when present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<Version>,
    /// MIC, when the header has room for it (credential material).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mic: Option<Secret>,
}

impl AuthenticateMessage {
    /// The NTLMv2 AV pairs (copied from the Type-2 plus the client's own), if NTLMv2.
    pub fn av_pairs(&self) -> Option<&AvPairs> {
        self.nt_response.ntlmv2.as_ref().map(|c| &c.av_pairs)
    }

    /// Anonymous authentication (MS-NLMP 3.2.5.1.2): empty user and NT response.
    pub fn is_anonymous(&self) -> bool {
        self.user.is_none() && self.nt_response.kind == NtResponseKind::Anonymous
    }
}

// ---- helpers -------------------------------------------------------------------------

pub(crate) fn hex(b: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for &x in b {
        s.push(char::from(DIGITS[usize::from(x >> 4)]));
        s.push(char::from(DIGITS[usize::from(x & 0xF)]));
    }
    s
}

/// UTF-16LE, lossy (unpaired surrogates become U+FFFD; an odd final byte is dropped).
pub(crate) fn utf16le(b: &[u8]) -> String {
    if b.is_ascii_utf16le() {
        return b.chunks_exact(2).map(|c| char::from(c[0])).collect();
    }
    char::decode_utf16(b.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])))
        .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect()
}

trait AsciiUtf16 {
    fn is_ascii_utf16le(&self) -> bool;
}

impl AsciiUtf16 for [u8] {
    fn is_ascii_utf16le(&self) -> bool {
        self.chunks_exact(2).all(|c| c[0] < 0x80 && c[1] == 0)
    }
}

/// OEM strings: the code page is unknown, so bytes are read as Latin-1 (ASCII exact).
pub(crate) fn oem(b: &[u8]) -> String {
    b.iter().map(|&c| char::from(c)).collect()
}

fn trunc(offset: usize, what: &'static str, needed: usize, len: usize) -> DecodeError {
    DecodeError::Truncated {
        offset,
        what,
        needed,
        available: len.saturating_sub(offset),
    }
}

fn read_u16(buf: &[u8], off: usize, what: &'static str) -> Result<u16, DecodeError> {
    match buf.get(off..off.saturating_add(2)) {
        Some(b) => Ok(u16::from_le_bytes([b[0], b[1]])),
        None => Err(trunc(off, what, 2, buf.len())),
    }
}

fn read_u32(buf: &[u8], off: usize, what: &'static str) -> Result<u32, DecodeError> {
    match buf.get(off..off.saturating_add(4)) {
        Some(b) => Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        None => Err(trunc(off, what, 4, buf.len())),
    }
}

/// A (len, maxlen, offset) field descriptor.
#[derive(Clone, Copy)]
struct Fields {
    at: usize,
    len: usize,
    offset: usize,
    name: &'static str,
}

impl Fields {
    fn read(buf: &[u8], at: usize, name: &'static str) -> Result<Fields, DecodeError> {
        let len = usize::from(read_u16(buf, at, name)?);
        let offset = read_u32(buf, at + 4, name)? as usize;
        Ok(Fields {
            at,
            len,
            offset,
            name,
        })
    }

    fn data<'a>(&self, buf: &'a [u8]) -> Result<&'a [u8], DecodeError> {
        if self.len == 0 {
            return Ok(&[]);
        }
        self.offset
            .checked_add(self.len)
            .and_then(|end| buf.get(self.offset..end))
            .ok_or(DecodeError::FieldOutOfBounds {
                field: self.name,
                offset: self.at,
                start: self.offset,
                len: self.len,
                buffer_len: buf.len(),
            })
    }

    /// Payload offset of a non-empty field.
    fn payload_start(&self) -> Option<usize> {
        (self.len > 0).then_some(self.offset)
    }
}

/// Start of the payload: the lowest offset of any non-empty field (`usize::MAX` if none).
fn payload_start(fields: &[Fields]) -> usize {
    fields
        .iter()
        .filter_map(Fields::payload_start)
        .min()
        .unwrap_or(usize::MAX)
}

/// VERSION is present when NTLMSSP_NEGOTIATE_VERSION is set and the payload leaves room for
/// it; then it must be there.
fn read_version(
    buf: &[u8],
    at: usize,
    flags: NegotiateFlags,
    payload: usize,
) -> Result<Option<Version>, DecodeError> {
    if !flags.contains(NegotiateFlags::VERSION) || payload < at + 8 {
        return Ok(None);
    }
    let b = buf
        .get(at..at + 8)
        .ok_or_else(|| trunc(at, "Version", 8, buf.len()))?;
    Ok(Some(Version {
        major: b[0],
        minor: b[1],
        build: u16::from_le_bytes([b[2], b[3]]),
        ntlm_revision: b[7],
    }))
}

fn string(bytes: &[u8], unicode: bool) -> Option<String> {
    if bytes.is_empty() {
        None
    } else if unicode {
        Some(utf16le(bytes))
    } else {
        Some(oem(bytes))
    }
}

impl NegotiateMessage {
    fn decode(buf: &[u8]) -> Result<NegotiateMessage, DecodeError> {
        let flags = NegotiateFlags(read_u32(buf, 12, "NegotiateFlags")?);
        let dom = Fields::read(buf, 16, "DomainNameFields")?;
        let ws = Fields::read(buf, 24, "WorkstationFields")?;
        let domain = string(dom.data(buf)?, false);
        let workstation = string(ws.data(buf)?, false);
        let version = read_version(buf, 32, flags, payload_start(&[dom, ws]))?;
        Ok(NegotiateMessage {
            flags,
            domain,
            workstation,
            version,
        })
    }
}

impl ChallengeMessage {
    fn decode(buf: &[u8]) -> Result<ChallengeMessage, DecodeError> {
        let tn = Fields::read(buf, 12, "TargetNameFields")?;
        let flags = NegotiateFlags(read_u32(buf, 20, "NegotiateFlags")?);
        let server_challenge = match buf.get(24..32) {
            Some(b) => {
                let mut c = [0u8; 8];
                c.copy_from_slice(b);
                ServerChallenge(c)
            }
            None => return Err(trunc(24, "ServerChallenge", 8, buf.len())),
        };
        let target_name = string(tn.data(buf)?, flags.unicode());
        let ti = Fields::read(buf, 40, "TargetInfoFields")?;
        let target_info = if ti.len > 0 {
            Some(AvPairs::parse(ti.data(buf)?, ti.offset)?)
        } else {
            None
        };
        let version = read_version(buf, 48, flags, payload_start(&[tn, ti]))?;
        Ok(ChallengeMessage {
            target_name,
            flags,
            server_challenge,
            target_info,
            version,
        })
    }
}

/// NTProofStr (16) + RespType, HiRespType, Reserved1(2), Reserved2(4), TimeStamp(8),
/// ChallengeFromClient(8), Reserved3(4): AV pairs start 44 bytes into the NT response.
const NTLMV2_AV_PAIRS_AT: usize = 44;

fn parse_nt_response(nt: &[u8], base: usize) -> Result<NtResponse, DecodeError> {
    let (kind, ntlmv2) = match nt.len() {
        0 => (NtResponseKind::Anonymous, None),
        24 => (NtResponseKind::NtlmV1, None),
        n if n >= NTLMV2_AV_PAIRS_AT && nt.get(16) == Some(&1) && nt.get(17) == Some(&1) => {
            let mut ts = [0u8; 8];
            ts.copy_from_slice(&nt[24..32]);
            let mut cc = [0u8; 8];
            cc.copy_from_slice(&nt[32..40]);
            let av_buf = &nt[NTLMV2_AV_PAIRS_AT..];
            let av_pairs = AvPairs::parse(av_buf, base + NTLMV2_AV_PAIRS_AT)?;
            (
                NtResponseKind::NtlmV2,
                Some(NtlmV2ClientChallenge {
                    resp_type: nt[16],
                    hi_resp_type: nt[17],
                    timestamp: FileTime(u64::from_le_bytes(ts)),
                    client_challenge: cc,
                    av_pairs,
                }),
            )
        }
        _ => (NtResponseKind::Other, None),
    };
    Ok(NtResponse {
        kind,
        ntlmv2,
        bytes: Secret::from_slice(nt),
    })
}

fn lm_kind(lm: &[u8], nt: NtResponseKind) -> LmResponseKind {
    match lm.len() {
        0 => LmResponseKind::Absent,
        1 if lm[0] == 0 => LmResponseKind::Anonymous,
        24 if lm.iter().all(|&b| b == 0) => LmResponseKind::Zeros,
        24 if nt == NtResponseKind::NtlmV2 => LmResponseKind::LmV2,
        24 => LmResponseKind::LmV1,
        _ => LmResponseKind::Other,
    }
}

impl AuthenticateMessage {
    fn decode(buf: &[u8]) -> Result<AuthenticateMessage, DecodeError> {
        let lm = Fields::read(buf, 12, "LmChallengeResponseFields")?;
        let nt = Fields::read(buf, 20, "NtChallengeResponseFields")?;
        let dom = Fields::read(buf, 28, "DomainNameFields")?;
        let user = Fields::read(buf, 36, "UserNameFields")?;
        let ws = Fields::read(buf, 44, "WorkstationFields")?;
        let sk = Fields::read(buf, 52, "EncryptedRandomSessionKeyFields")?;
        let flags = NegotiateFlags(read_u32(buf, 60, "NegotiateFlags")?);
        let payload = payload_start(&[lm, nt, dom, user, ws, sk]);
        let unicode = flags.unicode();

        let lm_bytes = lm.data(buf)?;
        let nt_bytes = nt.data(buf)?;
        let nt_response = parse_nt_response(nt_bytes, nt.offset)?;
        let lm_response = LmResponse {
            kind: lm_kind(lm_bytes, nt_response.kind),
            bytes: Secret::from_slice(lm_bytes),
        };
        let domain = string(dom.data(buf)?, unicode);
        let user = string(user.data(buf)?, unicode);
        let workstation = string(ws.data(buf)?, unicode);
        let session_key = if sk.len > 0 {
            Some(Secret::from_slice(sk.data(buf)?))
        } else {
            None
        };
        let version = read_version(buf, 64, flags, payload)?;
        // The MIC sits at 72..88 when the payload leaves room for it.
        let mic = if payload >= 88 {
            buf.get(72..88).map(Secret::from_slice)
        } else {
            None
        };
        Ok(AuthenticateMessage {
            lm_response,
            nt_response,
            domain,
            user,
            workstation,
            session_key,
            flags,
            version,
            mic,
        })
    }
}
