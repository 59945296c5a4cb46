//! What a token is, read from its first bytes only: enough for the message records of the
//! kernel path. Full MS-NLMP/SPNEGO decoding lives in the `tracker-ntlm` crate.

use base64::Engine as _;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mechanism {
    /// A raw NTLMSSP message.
    Ntlm,
    /// NTLM inside SPNEGO.
    SpnegoNtlm,
    /// Kerberos (bare or inside SPNEGO): never an NTLM handshake.
    Kerberos,
    /// SPNEGO whose inner mechanism is not visible in the token (e.g. a final negTokenResp).
    Spnego,
    Unknown,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenSummary {
    pub mechanism: Mechanism,
    /// MS-NLMP MessageType: 1 negotiate, 2 challenge, 3 authenticate.
    pub ntlm_type: Option<u32>,
    /// Decoded length in bytes.
    pub length: usize,
}

const NTLMSSP: &[u8] = b"NTLMSSP\0";
/// DER of the Kerberos v5 mechanism OIDs 1.2.840.113554.1.2.2 and (Microsoft) 1.2.840.48018.1.2.2.
const KRB5_OID: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02,
];
const MS_KRB5_OID: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x82, 0xf7, 0x12, 0x01, 0x02, 0x02,
];

pub fn message_type_name(t: u32) -> &'static str {
    match t {
        1 => "negotiate",
        2 => "challenge",
        3 => "authenticate",
        _ => "unknown",
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Decodes base64 leniently (missing padding, embedded whitespace).
pub fn decode_base64(b64: &str) -> Option<Vec<u8>> {
    let cleaned: String = b64.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    engine.decode(cleaned).ok()
}

pub fn summarize(b64: &str) -> Option<TokenSummary> {
    let raw = decode_base64(b64)?;
    let ntlm_type_at = |i: usize| {
        raw.get(i + 8..i + 12)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_le_bytes)
    };
    let (mechanism, ntlm_type) = if raw.starts_with(NTLMSSP) {
        (Mechanism::Ntlm, ntlm_type_at(0))
    } else if matches!(raw.first(), Some(0x60) | Some(0xa1)) {
        if let Some(i) = find(&raw, NTLMSSP) {
            (Mechanism::SpnegoNtlm, ntlm_type_at(i))
        } else if find(&raw, KRB5_OID).is_some() || find(&raw, MS_KRB5_OID).is_some() {
            (Mechanism::Kerberos, None)
        } else {
            (Mechanism::Spnego, None)
        }
    } else {
        (Mechanism::Unknown, None)
    };
    Some(TokenSummary {
        mechanism,
        ntlm_type,
        length: raw.len(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn classifies_raw_ntlm_spnego_and_kerberos() {
        let t1 = base64::engine::general_purpose::STANDARD
            .encode(b"NTLMSSP\0\x01\0\0\0\x07\x82\x08\xa2");
        let s = summarize(&t1).unwrap();
        assert_eq!((s.mechanism, s.ntlm_type), (Mechanism::Ntlm, Some(1)));
        // Missing padding is accepted.
        assert_eq!(
            summarize(t1.trim_end_matches('=')).unwrap().ntlm_type,
            Some(1)
        );
        let mut spnego = vec![0xa1, 0x20, 0x30];
        spnego.extend_from_slice(b"NTLMSSP\0\x03\0\0\0");
        let s = summarize(&base64::engine::general_purpose::STANDARD.encode(&spnego)).unwrap();
        assert_eq!((s.mechanism, s.ntlm_type), (Mechanism::SpnegoNtlm, Some(3)));
        let mut krb = vec![0x60, 0x82, 0x01, 0x00];
        krb.extend_from_slice(KRB5_OID);
        let s = summarize(&base64::engine::general_purpose::STANDARD.encode(&krb)).unwrap();
        assert_eq!(s.mechanism, Mechanism::Kerberos);
        assert_eq!(summarize("not base64!"), None);
    }
}
