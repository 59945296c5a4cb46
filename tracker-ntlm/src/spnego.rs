//! SPNEGO (RFC 4178, MS-SPNG) and GSS-API framing (RFC 2743 §3.1), parsed with the `der`
//! crate: NegTokenInit / NegTokenInit2 (mechTypes, reqFlags, mechToken, negHints,
//! mechListMIC) and NegTokenResp (negState, supportedMech, responseToken, mechListMIC), down
//! to the inner NTLM message. Kerberos (KRB5 OIDs) is recognised and labelled as Kerberos,
//! never decoded as NTLM.

use crate::DecodeError;
use crate::kerberos::{self, ApRep, ApReq, ErrorCode, KrbError, PrincipalName};
use crate::nlmp::{NtlmMessage, SIGNATURE};
use der::asn1::ObjectIdentifier;
use der::{Decode, Header, Reader, SliceReader, Tag};
use serde::Serialize;

/// SPNEGO mechanism OID.
pub const OID_SPNEGO: &str = "1.3.6.1.5.5.2";
/// NTLMSSP mechanism OID.
pub const OID_NTLMSSP: &str = "1.3.6.1.4.1.311.2.2.10";
/// Kerberos V5 (RFC 4121).
pub const OID_KRB5: &str = "1.2.840.113554.1.2.2";
/// Microsoft's legacy Kerberos V5 OID.
pub const OID_MS_KRB5: &str = "1.2.840.48018.1.2.2";
/// Kerberos V5 user-to-user.
pub const OID_KRB5_U2U: &str = "1.2.840.113554.1.2.2.3";
/// NEGOEX.
pub const OID_NEGOEX: &str = "1.3.6.1.4.1.311.2.2.30";

/// What a mechanism OID names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mechanism {
    /// NTLMSSP.
    Ntlm,
    /// Kerberos V5, MS Kerberos V5 or Kerberos user-to-user.
    Kerberos,
    /// NEGOEX.
    NegoEx,
    /// SPNEGO itself.
    Spnego,
    /// Anything else.
    Other,
}

impl Mechanism {
    /// Classifies a dotted OID.
    pub fn from_oid(oid: &str) -> Mechanism {
        match oid {
            OID_NTLMSSP => Mechanism::Ntlm,
            OID_KRB5 | OID_MS_KRB5 | OID_KRB5_U2U => Mechanism::Kerberos,
            OID_NEGOEX => Mechanism::NegoEx,
            OID_SPNEGO => Mechanism::Spnego,
            _ => Mechanism::Other,
        }
    }
}

/// A MechType: dotted OID and what it names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Mech {
    /// Dotted OID.
    pub oid: String,
    /// Classification.
    pub mechanism: Mechanism,
}

/// DER contents of the mechanism OIDs seen on the wire, matched as raw bytes (no OID
/// parsing or formatting on the hot path).
const KNOWN_OIDS: [(&[u8], &str, Mechanism); 6] = [
    (
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02],
        OID_KRB5,
        Mechanism::Kerberos,
    ),
    (
        &[0x2a, 0x86, 0x48, 0x82, 0xf7, 0x12, 0x01, 0x02, 0x02],
        OID_MS_KRB5,
        Mechanism::Kerberos,
    ),
    (
        &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x02, 0x02, 0x0a],
        OID_NTLMSSP,
        Mechanism::Ntlm,
    ),
    (
        &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x02],
        OID_SPNEGO,
        Mechanism::Spnego,
    ),
    (
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02, 0x03],
        OID_KRB5_U2U,
        Mechanism::Kerberos,
    ),
    (
        &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x02, 0x02, 0x1e],
        OID_NEGOEX,
        Mechanism::NegoEx,
    ),
];

/// The mechanism named by an OBJECT IDENTIFIER element.
fn mech(tlv: &Tlv<'_>) -> Result<Mech, DecodeError> {
    if tlv.tag == Tag::ObjectIdentifier {
        if let Some((_, dotted, mechanism)) = KNOWN_OIDS.iter().find(|(raw, ..)| *raw == tlv.value)
        {
            return Ok(Mech {
                oid: (*dotted).to_string(),
                mechanism: *mechanism,
            });
        }
    }
    oid(tlv).map(Mech::new)
}

impl Mech {
    fn new(oid: ObjectIdentifier) -> Mech {
        let oid = oid.to_string();
        Mech {
            mechanism: Mechanism::from_oid(&oid),
            oid,
        }
    }
}

/// NegState of a NegTokenResp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NegState {
    /// accept-completed (0).
    AcceptCompleted,
    /// accept-incomplete (1).
    AcceptIncomplete,
    /// reject (2).
    Reject,
    /// request-mic (3).
    RequestMic,
    /// Any other value.
    Unknown(i64),
}

/// Which Kerberos message a token carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KerberosMessage {
    /// KRB_AP_REQ.
    ApReq,
    /// KRB_AP_REP.
    ApRep,
    /// KRB_ERROR.
    KrbError,
    /// KRB_TGT_REQ (user-to-user).
    TgtReq,
    /// Anything else.
    Other,
}

/// A Kerberos token: labelled by TOK_ID / APPLICATION tag, with the cleartext fields of its
/// AP-REQ, AP-REP or KRB-ERROR ([`crate::kerberos`]). Encrypted parts are never decoded or
/// kept: only their etype, kvno and length.
///
/// A token whose framing is Kerberos but whose message does not decode is still a Kerberos
/// token: the detail fields stay `None` and [`KerberosToken::body_error`] says why
/// ([`crate::kerberos::decode_message`] is the strict form). The details are boxed to keep
/// [`crate::Token`] small for the NTLM paths.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KerberosToken {
    /// The Kerberos mechanism OID (GSS-API framing or SPNEGO mech).
    pub mech: Mech,
    /// The message, from TOK_ID or the APPLICATION tag.
    pub message: KerberosMessage,
    /// Token length in bytes.
    pub len: usize,
    /// The token had GSS-API framing (`0x60`, KRB5 OID, TOK_ID); else the message came raw
    /// (APPLICATION tag first, e.g. Microsoft's KRB-ERROR in a NegTokenResp).
    pub gss_framed: bool,
    /// AP-REQ cleartext fields.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ap_req: Option<Box<ApReq>>,
    /// AP-REP cleartext fields.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ap_rep: Option<Box<ApRep>>,
    /// KRB-ERROR fields.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Box<KrbError>>,
    /// Why the message could not be decoded, if it could not.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::kerberos::serialize_body_error"
    )]
    pub body_error: Option<DecodeError>,
}

impl KerberosToken {
    /// The service realm: the ticket's (AP-REQ) or the error's `realm`.
    pub fn realm(&self) -> Option<&str> {
        match (&self.ap_req, &self.error) {
            (Some(r), _) => Some(&r.ticket.realm),
            (_, Some(e)) => Some(&e.realm),
            _ => None,
        }
    }

    /// The service principal: the ticket's (AP-REQ) or the error's `sname`.
    pub fn sname(&self) -> Option<&PrincipalName> {
        match (&self.ap_req, &self.error) {
            (Some(r), _) => Some(&r.ticket.sname),
            (_, Some(e)) => Some(&e.sname),
            _ => None,
        }
    }

    /// The KRB-ERROR code.
    pub fn error_code(&self) -> Option<ErrorCode> {
        self.error.as_ref().map(|e| e.error_code)
    }
}

/// The token inside a SPNEGO mechToken / responseToken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "mechanism", content = "token", rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)] // boxing would cost an allocation per token
pub enum InnerToken {
    /// An NTLM message.
    Ntlm(NtlmMessage),
    /// A Kerberos token.
    Kerberos(KerberosToken),
    /// Another mechanism's token (e.g. NEGOEX), length only.
    Other {
        /// Token length.
        len: usize,
    },
}

/// NegHints of Microsoft's NegTokenInit2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NegHints {
    /// hintName (usually `not_defined_in_RFC4178@please_ignore`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint_name: Option<String>,
}

/// NegTokenInit (or NegTokenInit2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NegTokenInit {
    /// Wrapped in GSS-API InitialContextToken framing (`0x60`, SPNEGO OID).
    pub gss_framed: bool,
    /// mechTypes, preferred first.
    pub mech_types: Vec<Mech>,
    /// reqFlags (ContextFlags) names.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub req_flags: Vec<&'static str>,
    /// mechToken, decoded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mech_token: Option<InnerToken>,
    /// negHints (NegTokenInit2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub neg_hints: Option<NegHints>,
    /// Length of mechListMIC, when present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mech_list_mic_len: Option<usize>,
}

/// NegTokenResp.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NegTokenResp {
    /// negState.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub neg_state: Option<NegState>,
    /// supportedMech.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub supported_mech: Option<Mech>,
    /// responseToken, decoded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_token: Option<InnerToken>,
    /// Length of mechListMIC, when present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mech_list_mic_len: Option<usize>,
}

/// What a GSS-API / SPNEGO token decodes to.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)]
pub(crate) enum GssToken {
    Init(NegTokenInit),
    Resp(NegTokenResp),
    Kerberos(KerberosToken),
    Ntlm(NtlmMessage),
}

// ---- DER walking -------------------------------------------------------------------------

struct Tlv<'a> {
    tag: Tag,
    /// Absolute offset of the tag byte.
    at: usize,
    /// Absolute offset of the value.
    value_at: usize,
    value: &'a [u8],
}

pub(crate) fn der_err(e: der::Error, base: usize) -> DecodeError {
    let pos = e
        .position()
        .and_then(|p| usize::try_from(p).ok())
        .unwrap_or(0);
    DecodeError::BadDer {
        offset: base.saturating_add(pos),
        reason: e.kind().to_string(),
    }
}

pub(crate) fn bad_der(offset: usize, reason: &str) -> DecodeError {
    DecodeError::BadDer {
        offset,
        reason: reason.to_string(),
    }
}

/// A read position in a DER buffer.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn is_finished(&self) -> bool {
        self.pos >= self.buf.len()
    }
}

fn pos(r: &Cursor<'_>) -> usize {
    r.pos
}

fn reader(buf: &[u8], _base: usize) -> Result<Cursor<'_>, DecodeError> {
    Ok(Cursor { buf, pos: 0 })
}

/// The DER length forms tokens use, decoded inline: short, `0x81` (≥ 0x80) and `0x82`
/// (≥ 0x100), minimal encodings only. `rest` starts after the identifier byte; the result is
/// (length-octets, length). Anything else (`None`) is left to `der::Length`, which owns the
/// DER rules and errors: indefinite `0x80`, non-minimal, longer forms, truncation.
pub(crate) fn fast_length(rest: &[u8]) -> Option<(usize, usize)> {
    match *rest {
        [n, ..] if n < 0x80 => Some((1, usize::from(n))),
        [0x81, n, ..] if n >= 0x80 => Some((2, usize::from(n))),
        [0x82, hi, lo, ..] if hi != 0 => Some((3, usize::from(hi) << 8 | usize::from(lo))),
        _ => None,
    }
}

fn read_tlv<'a>(r: &mut Cursor<'a>, base: usize) -> Result<Tlv<'a>, DecodeError> {
    let rest = r.buf.get(r.pos..).unwrap_or(&[]);
    let at = base + r.pos;
    // Fast path: a tag `der` knows, a short length form, the value within the buffer.
    let fast = match rest.split_first() {
        Some((&t, after)) if t & 0x1f != 0x1f => match (Tag::try_from(t), fast_length(after)) {
            (Ok(tag), Some((n, len))) => after.get(n..n + len).map(|value| (tag, 1 + n, value)),
            _ => None,
        },
        _ => None,
    };
    let (tag, hdr, value) = match fast {
        Some(v) => v,
        None => {
            let mut sr = SliceReader::new(rest).map_err(|e| der_err(e, at))?;
            let h = Header::decode(&mut sr).map_err(|e| der_err(e, at))?;
            let hdr = usize::try_from(sr.position()).unwrap_or(0);
            let value = sr.read_slice(h.length).map_err(|e| der_err(e, at))?;
            (h.tag, hdr, value)
        }
    };
    r.pos += hdr + value.len();
    Ok(Tlv {
        tag,
        at,
        value_at: at + hdr,
        value,
    })
}

/// Reads exactly one TLV filling `buf`.
fn single_tlv(buf: &[u8], base: usize) -> Result<Tlv<'_>, DecodeError> {
    let mut r = reader(buf, base)?;
    let tlv = read_tlv(&mut r, base)?;
    if !r.is_finished() {
        return Err(bad_der(base + pos(&r), "trailing data after element"));
    }
    Ok(tlv)
}

/// All TLVs in `buf`.
fn children(buf: &[u8], base: usize) -> Result<Vec<Tlv<'_>>, DecodeError> {
    let mut r = reader(buf, base)?;
    let mut out = Vec::with_capacity(4);
    while !r.is_finished() {
        out.push(read_tlv(&mut r, base)?);
    }
    Ok(out)
}

fn expect_tag<'a>(tlv: Tlv<'a>, tag: Tag, what: &str) -> Result<Tlv<'a>, DecodeError> {
    if tlv.tag == tag {
        Ok(tlv)
    } else {
        Err(bad_der(
            tlv.at,
            &format!("expected {what}, found {}", tlv.tag),
        ))
    }
}

/// The single element inside an EXPLICIT context tag.
fn explicit<'a>(tlv: &Tlv<'a>) -> Result<Tlv<'a>, DecodeError> {
    if !tlv.tag.is_constructed() {
        return Err(bad_der(tlv.at, "explicit tag must be constructed"));
    }
    single_tlv(tlv.value, tlv.value_at)
}

fn oid(tlv: &Tlv<'_>) -> Result<ObjectIdentifier, DecodeError> {
    if tlv.tag != Tag::ObjectIdentifier {
        return Err(bad_der(tlv.at, "expected OBJECT IDENTIFIER"));
    }
    ObjectIdentifier::from_bytes(tlv.value)
        .map_err(|_| bad_der(tlv.value_at, "malformed OBJECT IDENTIFIER"))
}

fn context_number(tag: Tag) -> Option<u8> {
    match tag {
        Tag::ContextSpecific { number, .. } => Some(number.value()),
        _ => None,
    }
}

// ---- tokens ------------------------------------------------------------------------------

/// Decodes a token starting with 0x60 (GSS-API framing), 0xA0 (bare NegTokenInit) or 0xA1
/// (NegTokenResp). `base` is the token's offset in the outermost buffer.
pub(crate) fn decode_gss(buf: &[u8], base: usize) -> Result<GssToken, DecodeError> {
    decode_gss_at(buf, base, false)
}

fn decode_gss_at(buf: &[u8], base: usize, nested: bool) -> Result<GssToken, DecodeError> {
    let outer = single_tlv(buf, base)?;
    match outer.tag {
        Tag::Application {
            constructed: true,
            number,
        } if number.value() == 0 => {
            let mut r = reader(outer.value, outer.value_at)?;
            let mech_tlv = read_tlv(&mut r, outer.value_at)?;
            let mech = mech(&mech_tlv)?;
            let inner_at = outer.value_at + pos(&r);
            let inner = outer.value.get(pos(&r)..).unwrap_or(&[]);
            match mech.mechanism {
                Mechanism::Spnego if nested => Err(DecodeError::Unsupported {
                    offset: mech_tlv.at,
                    what: "SPNEGO nested in SPNEGO",
                }),
                Mechanism::Spnego => match decode_negotiation_token(inner, inner_at)? {
                    GssToken::Init(mut init) => {
                        init.gss_framed = true;
                        Ok(GssToken::Init(init))
                    }
                    other => Ok(other),
                },
                Mechanism::Kerberos => Ok(GssToken::Kerberos(kerberos::framed_token(
                    mech,
                    kerberos_tok_id(inner),
                    inner,
                    inner_at,
                    buf.len(),
                ))),
                Mechanism::Ntlm => NtlmMessage::decode(inner)
                    .map(GssToken::Ntlm)
                    .map_err(|e| e.shifted(inner_at)),
                _ => Err(DecodeError::Unsupported {
                    offset: mech_tlv.at,
                    what: "GSS-API mechanism other than SPNEGO, Kerberos or NTLM",
                }),
            }
        }
        Tag::ContextSpecific { .. } if !nested => negotiation_token(&outer),
        _ => Err(DecodeError::Unsupported {
            offset: base,
            what: "not a GSS-API or SPNEGO token",
        }),
    }
}

/// NegotiationToken ::= CHOICE { negTokenInit [0], negTokenResp [1] }.
fn decode_negotiation_token(buf: &[u8], base: usize) -> Result<GssToken, DecodeError> {
    negotiation_token(&single_tlv(buf, base)?)
}

fn negotiation_token(choice: &Tlv<'_>) -> Result<GssToken, DecodeError> {
    let seq = expect_tag(explicit(choice)?, Tag::Sequence, "SEQUENCE")?;
    let fields = children(seq.value, seq.value_at)?;
    match context_number(choice.tag) {
        Some(0) => neg_token_init(&fields).map(GssToken::Init),
        Some(1) => neg_token_resp(&fields).map(GssToken::Resp),
        _ => Err(bad_der(choice.at, "NegotiationToken must be [0] or [1]")),
    }
}

const CONTEXT_FLAG_NAMES: [&str; 7] = [
    "delegFlag",
    "mutualFlag",
    "replayFlag",
    "sequenceFlag",
    "anonFlag",
    "confFlag",
    "integFlag",
];

fn neg_token_init(fields: &[Tlv<'_>]) -> Result<NegTokenInit, DecodeError> {
    let mut init = NegTokenInit {
        gss_framed: false,
        mech_types: Vec::new(),
        req_flags: Vec::new(),
        mech_token: None,
        neg_hints: None,
        mech_list_mic_len: None,
    };
    let mut token: Option<Tlv<'_>> = None;
    for f in fields {
        match context_number(f.tag) {
            Some(0) => {
                let list = expect_tag(explicit(f)?, Tag::Sequence, "MechTypeList")?;
                for m in children(list.value, list.value_at)? {
                    init.mech_types.push(mech(&m)?);
                }
            }
            Some(1) => {
                let bits = expect_tag(explicit(f)?, Tag::BitString, "ContextFlags")?;
                // First content byte is the unused-bits count; bit 0 is the MSB of the next.
                let first = bits.value.get(1).copied().unwrap_or(0);
                init.req_flags = CONTEXT_FLAG_NAMES
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| first & (0x80 >> i) != 0)
                    .map(|(_, n)| *n)
                    .collect();
            }
            Some(2) => token = Some(expect_tag(explicit(f)?, Tag::OctetString, "mechToken")?),
            Some(3) => {
                let v = explicit(f)?;
                if v.tag == Tag::Sequence {
                    // NegTokenInit2 negHints: SEQUENCE { hintName [0] GeneralString, ... }
                    let mut hints = NegHints { hint_name: None };
                    for h in children(v.value, v.value_at)? {
                        if context_number(h.tag) == Some(0) {
                            // GeneralString (0x1B), a tag `der` does not know: read raw.
                            if !h.tag.is_constructed() {
                                return Err(bad_der(h.at, "explicit tag must be constructed"));
                            }
                            let s = kerberos::single_raw(h.value, h.value_at)?;
                            hints.hint_name = Some(String::from_utf8_lossy(s).into_owned());
                        }
                    }
                    init.neg_hints = Some(hints);
                } else {
                    let mic = expect_tag(v, Tag::OctetString, "mechListMIC")?;
                    init.mech_list_mic_len = Some(mic.value.len());
                }
            }
            Some(4) => {
                let mic = expect_tag(explicit(f)?, Tag::OctetString, "mechListMIC")?;
                init.mech_list_mic_len = Some(mic.value.len());
            }
            // Extensions are ignored; non-context elements are not allowed.
            Some(_) => {}
            None => return Err(bad_der(f.at, "unexpected element in NegTokenInit")),
        }
    }
    if let Some(t) = token {
        let hint = init.mech_types.first().map(|m| m.mechanism);
        init.mech_token = Some(inner_token(
            t.value,
            t.value_at,
            hint,
            init.mech_types.first(),
        )?);
    }
    Ok(init)
}

fn neg_token_resp(fields: &[Tlv<'_>]) -> Result<NegTokenResp, DecodeError> {
    let mut resp = NegTokenResp {
        neg_state: None,
        supported_mech: None,
        response_token: None,
        mech_list_mic_len: None,
    };
    let mut token: Option<Tlv<'_>> = None;
    for f in fields {
        match context_number(f.tag) {
            Some(0) => {
                let e = expect_tag(explicit(f)?, Tag::Enumerated, "negState")?;
                if e.value.is_empty() || e.value.len() > 8 {
                    return Err(bad_der(e.value_at, "bad ENUMERATED length"));
                }
                let mut v: i64 = if e.value.first().is_some_and(|b| b & 0x80 != 0) {
                    -1
                } else {
                    0
                };
                for &b in e.value {
                    v = (v << 8) | i64::from(b);
                }
                resp.neg_state = Some(match v {
                    0 => NegState::AcceptCompleted,
                    1 => NegState::AcceptIncomplete,
                    2 => NegState::Reject,
                    3 => NegState::RequestMic,
                    n => NegState::Unknown(n),
                });
            }
            Some(1) => resp.supported_mech = Some(mech(&explicit(f)?)?),
            Some(2) => token = Some(expect_tag(explicit(f)?, Tag::OctetString, "responseToken")?),
            Some(3) => {
                let mic = expect_tag(explicit(f)?, Tag::OctetString, "mechListMIC")?;
                resp.mech_list_mic_len = Some(mic.value.len());
            }
            Some(_) => {}
            None => return Err(bad_der(f.at, "unexpected element in NegTokenResp")),
        }
    }
    if let Some(t) = token {
        let hint = resp.supported_mech.as_ref().map(|m| m.mechanism);
        resp.response_token = Some(inner_token(
            t.value,
            t.value_at,
            hint,
            resp.supported_mech.as_ref(),
        )?);
    }
    Ok(resp)
}

fn kerberos_tok_id(inner: &[u8]) -> KerberosMessage {
    match inner.get(0..2) {
        Some([1, 0]) => KerberosMessage::ApReq,
        Some([2, 0]) => KerberosMessage::ApRep,
        Some([3, 0]) => KerberosMessage::KrbError,
        Some([4, 0]) => KerberosMessage::TgtReq,
        _ => KerberosMessage::Other,
    }
}

fn kerberos_app_tag(first: Option<&u8>) -> KerberosMessage {
    match first {
        Some(0x6e) => KerberosMessage::ApReq,
        Some(0x6f) => KerberosMessage::ApRep,
        Some(0x7e) => KerberosMessage::KrbError,
        _ => KerberosMessage::Other,
    }
}

fn inner_token(
    buf: &[u8],
    base: usize,
    hint: Option<Mechanism>,
    hint_mech: Option<&Mech>,
) -> Result<InnerToken, DecodeError> {
    if buf.starts_with(SIGNATURE) || hint == Some(Mechanism::Ntlm) && buf.first() != Some(&0x60) {
        return NtlmMessage::decode(buf)
            .map(InnerToken::Ntlm)
            .map_err(|e| e.shifted(base));
    }
    if buf.first() == Some(&0x60) {
        return match decode_gss_at(buf, base, true)? {
            GssToken::Kerberos(k) => Ok(InnerToken::Kerberos(k)),
            GssToken::Ntlm(m) => Ok(InnerToken::Ntlm(m)),
            GssToken::Init(_) | GssToken::Resp(_) => Err(DecodeError::Unsupported {
                offset: base,
                what: "SPNEGO nested in SPNEGO",
            }),
        };
    }
    match (hint, hint_mech) {
        (Some(Mechanism::Kerberos), Some(m)) => Ok(InnerToken::Kerberos(kerberos::raw_token(
            m.clone(),
            kerberos_app_tag(buf.first()),
            buf,
            base,
        ))),
        // No mechanism named (e.g. a NegTokenResp reject without supportedMech): a raw
        // Kerberos message is recognised only when it decodes completely.
        (None, _) if kerberos_app_tag(buf.first()) != KerberosMessage::Other => {
            let k = kerberos::raw_token(
                Mech {
                    oid: OID_KRB5.to_string(),
                    mechanism: Mechanism::Kerberos,
                },
                kerberos_app_tag(buf.first()),
                buf,
                base,
            );
            Ok(if k.body_error.is_none() {
                InnerToken::Kerberos(k)
            } else {
                InnerToken::Other { len: buf.len() }
            })
        }
        _ => Ok(InnerToken::Other { len: buf.len() }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn known_oid_table_matches_the_oid_parser() {
        for (raw, dotted, mechanism) in KNOWN_OIDS {
            let parsed = ObjectIdentifier::from_bytes(raw).unwrap().to_string();
            assert_eq!(parsed, dotted);
            assert_eq!(Mechanism::from_oid(dotted), mechanism);
        }
    }
}
