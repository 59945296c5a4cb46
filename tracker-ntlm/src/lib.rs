//! MS-NLMP and SPNEGO decoding for ntlm-affinity: pure code, no I/O, redaction by
//! construction, never a panic on any input.
//!
//! - [`header`]: HTTP auth header values → [`header::AuthToken`]s.
//! - [`decode_token`]: token bytes → [`Token`] (NTLM, SPNEGO init/resp, Kerberos).
//! - [`nlmp`]: NEGOTIATE / CHALLENGE / AUTHENTICATE messages, AV pairs, flags.
//! - [`spnego`]: NegTokenInit / NegTokenResp, GSS-API framing, Kerberos labelling.
//! - [`kerberos`]: cleartext fields of Kerberos AP-REQ / AP-REP / KRB-ERROR (never the
//!   encrypted parts).
//! - [`redact`]: [`redact::Secret`] for credential material.
//! - [`hash`]: keyed token hash and `challenge_key`.
//! - [`classify_base64_prefix`]: the kernel's prefix table.

pub mod base64;
mod error;
pub mod hash;
pub mod header;
pub mod kerberos;
pub mod nlmp;
pub mod redact;
pub mod spnego;

pub use error::DecodeError;
pub use header::{AuthToken, HeaderName, Scheme, parse_auth_header};
pub use kerberos::KrbMessage;
pub use nlmp::{AuthenticateMessage, ChallengeMessage, MessageType, NegotiateMessage, NtlmMessage};
pub use redact::Secret;
pub use spnego::{InnerToken, KerberosToken, Mechanism, NegTokenInit, NegTokenResp};

use serde::Serialize;

/// A decoded NTLM or Negotiate token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "token", rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)] // boxing would cost an allocation per token
pub enum Token {
    /// A raw NTLM message (`NTLM <b64>` or `Negotiate TlRM…`).
    Ntlm(NtlmMessage),
    /// SPNEGO NegTokenInit (`Negotiate YI…`), with its inner token if any.
    SpnegoInit(NegTokenInit),
    /// SPNEGO NegTokenResp (`Negotiate oX…`), with its inner token if any.
    SpnegoResp(NegTokenResp),
    /// A bare GSS-API Kerberos token (KRB5 OID framing, no SPNEGO).
    Kerberos(KerberosToken),
}

impl Token {
    /// The NTLM message, raw or inside SPNEGO.
    pub fn ntlm(&self) -> Option<&NtlmMessage> {
        match self {
            Token::Ntlm(m) => Some(m),
            Token::SpnegoInit(NegTokenInit {
                mech_token: Some(InnerToken::Ntlm(m)),
                ..
            })
            | Token::SpnegoResp(NegTokenResp {
                response_token: Some(InnerToken::Ntlm(m)),
                ..
            }) => Some(m),
            _ => None,
        }
    }

    /// The Kerberos token, bare or inside SPNEGO.
    pub fn kerberos(&self) -> Option<&KerberosToken> {
        match self {
            Token::Kerberos(k) => Some(k),
            Token::SpnegoInit(NegTokenInit {
                mech_token: Some(InnerToken::Kerberos(k)),
                ..
            })
            | Token::SpnegoResp(NegTokenResp {
                response_token: Some(InnerToken::Kerberos(k)),
                ..
            }) => Some(k),
            _ => None,
        }
    }

    /// True when the token carries Kerberos, or is a SPNEGO init whose preferred
    /// mechanism is Kerberos, or a response selecting Kerberos.
    pub fn is_kerberos(&self) -> bool {
        self.mechanism() == Some(Mechanism::Kerberos)
    }

    /// The mechanism this token speaks for: the inner token's, else the SPNEGO
    /// preferred / supported mechanism.
    pub fn mechanism(&self) -> Option<Mechanism> {
        if self.ntlm().is_some() {
            return Some(Mechanism::Ntlm);
        }
        if self.kerberos().is_some() {
            return Some(Mechanism::Kerberos);
        }
        match self {
            Token::SpnegoInit(i) => i.mech_types.first().map(|m| m.mechanism),
            Token::SpnegoResp(r) => r.supported_mech.as_ref().map(|m| m.mechanism),
            _ => None,
        }
    }
}

/// Decodes token bytes (after base64): raw NTLM (`NTLMSSP\0`), GSS-API framed SPNEGO or
/// Kerberos (`0x60`), bare NegTokenInit (`0xA0`) or NegTokenResp (`0xA1`), or a raw Kerberos
/// AP-REQ / AP-REP / KRB-ERROR (`0x6E` / `0x6F` / `0x7E`, strict: it must decode).
pub fn decode_token(bytes: &[u8]) -> Result<Token, DecodeError> {
    match bytes.first() {
        None => Err(DecodeError::Truncated {
            offset: 0,
            what: "token",
            needed: 1,
            available: 0,
        }),
        Some(b'N') => NtlmMessage::decode(bytes).map(Token::Ntlm),
        Some(0x60 | 0xA0 | 0xA1) => match spnego::decode_gss(bytes, 0)? {
            spnego::GssToken::Init(i) => Ok(Token::SpnegoInit(i)),
            spnego::GssToken::Resp(r) => Ok(Token::SpnegoResp(r)),
            spnego::GssToken::Kerberos(k) => Ok(Token::Kerberos(k)),
            spnego::GssToken::Ntlm(m) => Ok(Token::Ntlm(m)),
        },
        // A raw Kerberos message without GSS-API framing (APPLICATION tag first): only when
        // it decodes completely, with the KRB5 mechanism assumed.
        Some(&(kerberos::TAG_AP_REQ | kerberos::TAG_AP_REP | kerberos::TAG_KRB_ERROR)) => {
            kerberos::decode_raw(bytes).map(Token::Kerberos)
        }
        Some(_) => Err(DecodeError::Unsupported {
            offset: 0,
            what: "token is neither NTLMSSP nor GSS-API/SPNEGO/Kerberos",
        }),
    }
}

/// What the first base64 characters of a token say, without decoding (the kernel's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// `TlRMTVNTUAAB`: NTLM Type-1.
    NtlmNegotiate,
    /// `TlRMTVNTUAAC`: NTLM Type-2.
    NtlmChallenge,
    /// `TlRMTVNTUAAD`: NTLM Type-3.
    NtlmAuthenticate,
    /// `YA`..`YI`: GSS-API InitialContextToken, 0x60 + a DER length (SPNEGO NegTokenInit
    /// or Kerberos AP-REQ). Short tokens (< 128 bytes, short-form length 0x00..0x7F) start
    /// `YA`..`YH` — pyspnego's NTLM-only NegTokenInit is `YE…` — while 0x81/0x82/0x83/0x84
    /// long forms all start `YI` (`YII` for 256..65535 bytes). Matching only `YI` misses the
    /// short ones.
    GssInit,
    /// `o`: SPNEGO NegTokenResp.
    SpnegoResp,
    /// No token (bare scheme offer).
    None,
    /// Anything else.
    Unknown,
}

/// Classifies base64 token text by prefix, without decoding: the kernel's rule
/// ([`tracker_common::scan::classify`]), so the decoder, the kernel and replay's model always
/// agree on a token's kind.
pub fn classify_base64_prefix(value: &[u8]) -> TokenKind {
    use tracker_common::TokenKind as K;
    match tracker_common::scan::classify_value(value) {
        K::None => TokenKind::None,
        K::NtlmNegotiate => TokenKind::NtlmNegotiate,
        K::NtlmChallenge => TokenKind::NtlmChallenge,
        K::NtlmAuthenticate => TokenKind::NtlmAuthenticate,
        K::GssInit => TokenKind::GssInit,
        K::SpnegoResp => TokenKind::SpnegoResp,
        K::Other => TokenKind::Unknown,
    }
}
