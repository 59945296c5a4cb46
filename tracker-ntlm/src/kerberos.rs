//! Kerberos V5 cleartext fields (RFC 4120 §5.5.1, §5.5.2, §5.9.1; GSS-API framing RFC 4121
//! §4.1): AP-REQ, AP-REP and KRB-ERROR, decoded with the `der` crate's DER length rules.
//!
//! Only what travels in clear is kept: protocol version, AP options, the ticket's realm and
//! service name, and for every `EncryptedData` its etype, kvno and cipher *length*. Cipher
//! text is never decoded, copied or serialised — there is no field that could hold it.
//!
//! Tags are read as raw bytes (Kerberos strings are `GeneralString`, 0x1B, a tag the `der`
//! crate does not know); lengths go through [`der::Length`], so indefinite lengths (0x80),
//! non-minimal and over-long lengths are rejected as DER requires. Every element must fit
//! in its parent. The decoder follows the fixed RFC 4120 schema — it never recurses on the
//! input — and counts the constructed elements it enters: more than [`MAX_DEPTH`] levels
//! below the message's APPLICATION tag is [`DecodeError::TooDeep`]. Work is linear in the
//! input length.

use crate::DecodeError;
use crate::spnego::{KerberosMessage, KerberosToken, Mech, bad_der, der_err, fast_length};
use der::{Decode, Length, Reader, SliceReader};
use serde::Serialize;

/// The deepest nesting the decoder enters, counted in elements from the message's
/// APPLICATION tag (level 1). The deepest element of the schema, a name-string component of
/// the ticket's sname, is at level 10: `[APPLICATION 14]` › SEQUENCE › `[3]` ›
/// `[APPLICATION 1]` › SEQUENCE › `[2]` › PrincipalName › `[1]` › SEQUENCE OF ›
/// KerberosString. The decoder only descends where the schema does, so deeper input is
/// skipped or refused anyway; the bound makes that an invariant checked at every step.
pub const MAX_DEPTH: usize = 10;

const TAG_INTEGER: u8 = 0x02;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_SEQUENCE: u8 = 0x30;
const TAG_GENERALIZED_TIME: u8 = 0x18;
const TAG_GENERAL_STRING: u8 = 0x1b;
/// `[APPLICATION 1]` Ticket.
const TAG_TICKET: u8 = 0x61;
/// `[APPLICATION 14]` AP-REQ.
pub const TAG_AP_REQ: u8 = 0x6e;
/// `[APPLICATION 15]` AP-REP.
pub const TAG_AP_REP: u8 = 0x6f;
/// `[APPLICATION 30]` KRB-ERROR.
pub const TAG_KRB_ERROR: u8 = 0x7e;

// ---- public types ------------------------------------------------------------------------

/// An encryption type number and its RFC 3961/3962/4757/8009 name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct EncType {
    /// etype number.
    pub etype: i32,
    /// Its name (`aes256-cts-hmac-sha1-96`, …), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'static str>,
}

impl EncType {
    /// The etype with its name.
    pub fn new(etype: i32) -> EncType {
        EncType {
            etype,
            name: etype_name(etype),
        }
    }
}

/// The name of an encryption type.
pub fn etype_name(etype: i32) -> Option<&'static str> {
    Some(match etype {
        1 => "des-cbc-crc",
        2 => "des-cbc-md4",
        3 => "des-cbc-md5",
        16 => "des3-cbc-sha1",
        17 => "aes128-cts-hmac-sha1-96",
        18 => "aes256-cts-hmac-sha1-96",
        19 => "aes128-cts-hmac-sha256-128",
        20 => "aes256-cts-hmac-sha384-192",
        23 => "rc4-hmac",
        24 => "rc4-hmac-exp",
        25 => "camellia128-cts-cmac",
        26 => "camellia256-cts-cmac",
        -128 => "rc4-hmac-old-exp",
        _ => return None,
    })
}

/// What an `EncryptedData` says in clear: etype, kvno and the cipher's length. The cipher
/// bytes themselves are never kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct EncPart {
    /// Encryption type.
    pub etype: EncType,
    /// Key version number, when present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kvno: Option<u32>,
    /// Length of the cipher text in bytes.
    pub cipher_len: usize,
}

/// A PrincipalName: name-type and the name-string components joined by `/`
/// (`HTTP/www.lab.test`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct PrincipalName {
    /// name-type (1 NT-PRINCIPAL, 2 NT-SRV-INST, 3 NT-SRV-HST, …).
    pub name_type: i32,
    /// name-string components joined by `/`.
    pub name: String,
}

/// The clear part of a Ticket.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Ticket {
    /// tkt-vno (5).
    pub tkt_vno: i32,
    /// The service's realm.
    pub realm: String,
    /// The service principal.
    pub sname: PrincipalName,
    /// The encrypted part: etype, kvno, length only.
    pub enc_part: EncPart,
}

/// APOptions (RFC 4120 §5.5.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct ApOptions {
    /// The first 32 bits, bit 0 as the most significant.
    pub bits: u32,
    /// Names of the bits set: `reserved`, `use-session-key`, `mutual-required`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<&'static str>,
}

impl ApOptions {
    /// mutual-required is set.
    pub fn mutual_required(&self) -> bool {
        self.bits & (1 << 29) != 0
    }
}

/// KRB_AP_REQ, clear fields.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct ApReq {
    /// pvno (5).
    pub pvno: i32,
    /// ap-options.
    pub ap_options: ApOptions,
    /// The ticket's clear fields.
    pub ticket: Ticket,
    /// The authenticator: etype, kvno, length only.
    pub authenticator: EncPart,
}

/// KRB_AP_REP, clear fields.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct ApRep {
    /// pvno (5).
    pub pvno: i32,
    /// enc-part: etype, kvno, length only.
    pub enc_part: EncPart,
}

/// A KRB-ERROR error-code and its RFC 4120 §7.5.9 name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct ErrorCode {
    /// The number.
    pub code: i32,
    /// Its name (`KRB_AP_ERR_MODIFIED`, …), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'static str>,
}

impl ErrorCode {
    /// The code with its name.
    pub fn new(code: i32) -> ErrorCode {
        ErrorCode {
            code,
            name: error_name(code),
        }
    }
}

/// KRB_ERROR (every field is in clear).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct KrbError {
    /// pvno (5).
    pub pvno: i32,
    /// ctime (client time, `YYYYMMDDHHMMSSZ`), when present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ctime: Option<String>,
    /// cusec, when present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cusec: Option<u32>,
    /// stime (server time, `YYYYMMDDHHMMSSZ`).
    pub stime: String,
    /// susec.
    pub susec: u32,
    /// error-code.
    pub error_code: ErrorCode,
    /// crealm, when present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crealm: Option<String>,
    /// cname, when present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cname: Option<PrincipalName>,
    /// realm (of the server).
    pub realm: String,
    /// sname (the server).
    pub sname: PrincipalName,
    /// e-text, when present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e_text: Option<String>,
    /// Length of e-data, when present (not decoded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e_data_len: Option<usize>,
}

/// A decoded Kerberos message.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "msg", rename_all = "snake_case")]
pub enum KrbMessage {
    /// KRB_AP_REQ.
    ApReq(ApReq),
    /// KRB_AP_REP.
    ApRep(ApRep),
    /// KRB_ERROR.
    KrbError(KrbError),
}

/// The RFC 4120 §7.5.9 name of an error code (with the Microsoft-used 68/69/…).
pub fn error_name(code: i32) -> Option<&'static str> {
    Some(match code {
        0 => "KDC_ERR_NONE",
        1 => "KDC_ERR_NAME_EXP",
        2 => "KDC_ERR_SERVICE_EXP",
        3 => "KDC_ERR_BAD_PVNO",
        4 => "KDC_ERR_C_OLD_MAST_KVNO",
        5 => "KDC_ERR_S_OLD_MAST_KVNO",
        6 => "KDC_ERR_C_PRINCIPAL_UNKNOWN",
        7 => "KDC_ERR_S_PRINCIPAL_UNKNOWN",
        8 => "KDC_ERR_PRINCIPAL_NOT_UNIQUE",
        9 => "KDC_ERR_NULL_KEY",
        10 => "KDC_ERR_CANNOT_POSTDATE",
        11 => "KDC_ERR_NEVER_VALID",
        12 => "KDC_ERR_POLICY",
        13 => "KDC_ERR_BADOPTION",
        14 => "KDC_ERR_ETYPE_NOSUPP",
        15 => "KDC_ERR_SUMTYPE_NOSUPP",
        16 => "KDC_ERR_PADATA_TYPE_NOSUPP",
        17 => "KDC_ERR_TRTYPE_NOSUPP",
        18 => "KDC_ERR_CLIENT_REVOKED",
        19 => "KDC_ERR_SERVICE_REVOKED",
        20 => "KDC_ERR_TGT_REVOKED",
        21 => "KDC_ERR_CLIENT_NOTYET",
        22 => "KDC_ERR_SERVICE_NOTYET",
        23 => "KDC_ERR_KEY_EXPIRED",
        24 => "KDC_ERR_PREAUTH_FAILED",
        25 => "KDC_ERR_PREAUTH_REQUIRED",
        26 => "KDC_ERR_SERVER_NOMATCH",
        27 => "KDC_ERR_MUST_USE_USER2USER",
        28 => "KDC_ERR_PATH_NOT_ACCEPTED",
        29 => "KDC_ERR_SVC_UNAVAILABLE",
        31 => "KRB_AP_ERR_BAD_INTEGRITY",
        32 => "KRB_AP_ERR_TKT_EXPIRED",
        33 => "KRB_AP_ERR_TKT_NYV",
        34 => "KRB_AP_ERR_REPEAT",
        35 => "KRB_AP_ERR_NOT_US",
        36 => "KRB_AP_ERR_BADMATCH",
        37 => "KRB_AP_ERR_SKEW",
        38 => "KRB_AP_ERR_BADADDR",
        39 => "KRB_AP_ERR_BADVERSION",
        40 => "KRB_AP_ERR_MSG_TYPE",
        41 => "KRB_AP_ERR_MODIFIED",
        42 => "KRB_AP_ERR_BADORDER",
        44 => "KRB_AP_ERR_BADKEYVER",
        45 => "KRB_AP_ERR_NOKEY",
        46 => "KRB_AP_ERR_MUT_FAIL",
        47 => "KRB_AP_ERR_BADDIRECTION",
        48 => "KRB_AP_ERR_METHOD",
        49 => "KRB_AP_ERR_BADSEQ",
        50 => "KRB_AP_ERR_INAPP_CKSUM",
        51 => "KRB_AP_PATH_NOT_ACCEPTED",
        52 => "KRB_ERR_RESPONSE_TOO_BIG",
        60 => "KRB_ERR_GENERIC",
        61 => "KRB_ERR_FIELD_TOOLONG",
        62 => "KDC_ERROR_CLIENT_NOT_TRUSTED",
        63 => "KDC_ERROR_KDC_NOT_TRUSTED",
        64 => "KDC_ERROR_INVALID_SIG",
        65 => "KDC_ERR_KEY_TOO_WEAK",
        66 => "KDC_ERR_CERTIFICATE_MISMATCH",
        67 => "KRB_AP_ERR_NO_TGT",
        68 => "KDC_ERR_WRONG_REALM",
        69 => "KRB_AP_ERR_USER_TO_USER_REQUIRED",
        70 => "KDC_ERR_CANT_VERIFY_CERTIFICATE",
        71 => "KDC_ERR_INVALID_CERTIFICATE",
        72 => "KDC_ERR_REVOKED_CERTIFICATE",
        73 => "KDC_ERR_REVOCATION_STATUS_UNKNOWN",
        74 => "KDC_ERR_REVOCATION_STATUS_UNAVAILABLE",
        75 => "KDC_ERR_CLIENT_NAME_MISMATCH",
        76 => "KDC_ERR_KDC_NAME_MISMATCH",
        _ => return None,
    })
}

// ---- DER walking (raw tags, der::Length) -------------------------------------------------

/// One element: raw identifier byte, absolute offsets, value.
#[derive(Clone, Copy)]
struct El<'a> {
    tag: u8,
    /// Absolute offset of the identifier byte.
    at: usize,
    /// Absolute offset of the value.
    value_at: usize,
    value: &'a [u8],
    /// Nesting level of this element (the message's APPLICATION tag is 1).
    depth: usize,
}

/// The elements of one constructed value, in order, without allocating.
struct Els<'a> {
    buf: &'a [u8],
    /// Relative position of the next element.
    pos: usize,
    base: usize,
    depth: usize,
}

impl<'a> Els<'a> {
    fn next_el(&mut self) -> Result<Option<El<'a>>, DecodeError> {
        let rest = self.buf.get(self.pos..).unwrap_or(&[]);
        if rest.is_empty() {
            return Ok(None);
        }
        let at = self.base + self.pos;
        let el = read_el(rest, at, self.depth)?;
        self.pos += el.value_at - at + el.value.len();
        Ok(Some(el))
    }
}

/// Reads the element at the start of `buf` (absolute offset `at`).
fn read_el(buf: &[u8], at: usize, depth: usize) -> Result<El<'_>, DecodeError> {
    let Some(&tag) = buf.first() else {
        return Err(DecodeError::Truncated {
            offset: at,
            what: "DER element",
            needed: 1,
            available: 0,
        });
    };
    if tag & 0x1f == 0x1f {
        return Err(bad_der(at, "high tag number form is not used by Kerberos"));
    }
    let rest = buf.get(1..).unwrap_or(&[]);
    // Fast path for the usual length forms; `der::Length` for everything else.
    let fast = fast_length(rest);
    let (hdr, value) = match fast {
        Some((hdr, len)) if rest.len() - hdr >= len => (hdr, rest.get(hdr..hdr + len)),
        _ => {
            let mut r = SliceReader::new(rest).map_err(|e| der_err(e, at + 1))?;
            let len = Length::decode(&mut r).map_err(|e| der_err(e, at + 1))?;
            let hdr = usize::try_from(r.position()).unwrap_or(0);
            (
                hdr,
                Some(r.read_slice(len).map_err(|e| der_err(e, at + 1))?),
            )
        }
    };
    let value = value.unwrap_or(&[]);
    let value_at = at + 1 + hdr;
    Ok(El {
        tag,
        at,
        value_at,
        value,
        depth,
    })
}

impl<'a> El<'a> {
    fn is_constructed(&self) -> bool {
        self.tag & 0x20 != 0
    }

    /// The context-specific tag number of an EXPLICIT `[n]` (constructed) element.
    fn context(&self) -> Option<u8> {
        (self.tag & 0xe0 == 0xa0).then_some(self.tag & 0x1f)
    }

    /// The children of a constructed element, one level deeper.
    fn children(&self) -> Result<Els<'a>, DecodeError> {
        if !self.is_constructed() {
            return Err(bad_der(self.at, "expected a constructed element"));
        }
        let depth = self.depth + 1;
        if depth > MAX_DEPTH {
            return Err(DecodeError::TooDeep {
                offset: self.value_at,
                max: MAX_DEPTH,
            });
        }
        Ok(Els {
            buf: self.value,
            pos: 0,
            base: self.value_at,
            depth,
        })
    }

    /// The single element inside an EXPLICIT tag (or any constructed element).
    fn explicit(&self) -> Result<El<'a>, DecodeError> {
        let mut els = self.children()?;
        let Some(inner) = els.next_el()? else {
            return Err(bad_der(self.value_at, "empty explicit tag"));
        };
        if els.next_el()?.is_some() {
            return Err(bad_der(
                inner.value_at + inner.value.len(),
                "trailing data in explicit tag",
            ));
        }
        Ok(inner)
    }

    fn expect(self, tag: u8, what: &'static str) -> Result<El<'a>, DecodeError> {
        if self.tag == tag {
            Ok(self)
        } else {
            Err(DecodeError::BadDer {
                offset: self.at,
                reason: format!(
                    "expected {what} (tag 0x{tag:02x}), found tag 0x{:02x}",
                    self.tag
                ),
            })
        }
    }

    /// DER INTEGER → i64 (at most 8 content bytes, minimal encoding).
    fn integer(&self) -> Result<i64, DecodeError> {
        let v = self.value;
        if self.tag != TAG_INTEGER {
            return Err(bad_der(self.at, "expected INTEGER"));
        }
        if v.is_empty() || v.len() > 8 {
            return Err(bad_der(self.value_at, "INTEGER length out of range"));
        }
        let non_minimal = match v {
            [a, b, ..] => (*a == 0 && b & 0x80 == 0) || (*a == 0xff && b & 0x80 != 0),
            _ => false,
        };
        if non_minimal {
            return Err(bad_der(self.value_at, "non-minimal INTEGER"));
        }
        let mut n: i64 = if v.first().is_some_and(|b| b & 0x80 != 0) {
            -1
        } else {
            0
        };
        for &b in v {
            n = (n << 8) | i64::from(b);
        }
        Ok(n)
    }

    fn int32(&self) -> Result<i32, DecodeError> {
        i32::try_from(self.integer()?).map_err(|_| bad_der(self.value_at, "Int32 out of range"))
    }

    fn uint32(&self) -> Result<u32, DecodeError> {
        u32::try_from(self.integer()?).map_err(|_| bad_der(self.value_at, "UInt32 out of range"))
    }

    /// KerberosString (GeneralString restricted to UTF-8 here).
    fn string(&self) -> Result<String, DecodeError> {
        let s = self.expect(TAG_GENERAL_STRING, "KerberosString")?;
        match std::str::from_utf8(s.value) {
            Ok(text) => Ok(text.to_owned()),
            Err(e) => Err(DecodeError::BadString {
                offset: s.value_at + e.valid_up_to(),
                what: "KerberosString is not UTF-8",
            }),
        }
    }

    /// KerberosTime: GeneralizedTime `YYYYMMDDHHMMSSZ`.
    fn time(&self) -> Result<String, DecodeError> {
        let t = self.expect(TAG_GENERALIZED_TIME, "KerberosTime")?;
        let ok = t.value.len() == 15
            && t.value
                .get(..14)
                .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
            && t.value.last() == Some(&b'Z');
        if !ok {
            return Err(bad_der(t.value_at, "KerberosTime is not YYYYMMDDHHMMSSZ"));
        }
        Ok(t.value.iter().map(|&b| char::from(b)).collect())
    }
}

/// The value of the single element (any tag, raw) filling `buf` at offset `base`.
pub(crate) fn single_raw(buf: &[u8], base: usize) -> Result<&[u8], DecodeError> {
    let el = read_el(buf, base, 1)?;
    let end = el.value_at - base + el.value.len();
    if end != buf.len() {
        return Err(bad_der(base + end, "trailing data after element"));
    }
    Ok(el.value)
}

fn missing(at: usize, what: &'static str) -> DecodeError {
    DecodeError::BadDer {
        offset: at,
        reason: format!("missing {what}"),
    }
}

/// The SEQUENCE inside an APPLICATION tag, and its fields.
fn app_sequence<'a>(app: &El<'a>) -> Result<(El<'a>, Els<'a>), DecodeError> {
    let seq = app.explicit()?.expect(TAG_SEQUENCE, "SEQUENCE")?;
    let fields = seq.children()?;
    Ok((seq, fields))
}

fn check_msg_type(f: &El<'_>, want: i64) -> Result<(), DecodeError> {
    let v = f.explicit()?;
    if v.integer()? != want {
        return Err(DecodeError::BadDer {
            offset: v.value_at,
            reason: format!("msg-type does not match the APPLICATION tag {want}"),
        });
    }
    Ok(())
}

fn enc_part(f: &El<'_>) -> Result<EncPart, DecodeError> {
    let seq = f.explicit()?.expect(TAG_SEQUENCE, "EncryptedData")?;
    let mut fields = seq.children()?;
    let (mut etype, mut kvno, mut cipher_len) = (None, None, None);
    while let Some(el) = fields.next_el()? {
        match el.context() {
            Some(0) => etype = Some(el.explicit()?.int32()?),
            Some(1) => kvno = Some(el.explicit()?.uint32()?),
            // Only the length of the cipher text is looked at.
            Some(2) => {
                cipher_len = Some(
                    el.explicit()?
                        .expect(TAG_OCTET_STRING, "cipher")?
                        .value
                        .len(),
                )
            }
            Some(_) => {}
            None => return Err(bad_der(el.at, "unexpected element in EncryptedData")),
        }
    }
    Ok(EncPart {
        etype: EncType::new(etype.ok_or_else(|| missing(seq.at, "etype"))?),
        kvno,
        cipher_len: cipher_len.ok_or_else(|| missing(seq.at, "cipher"))?,
    })
}

fn principal_name(f: &El<'_>) -> Result<PrincipalName, DecodeError> {
    let seq = f.explicit()?.expect(TAG_SEQUENCE, "PrincipalName")?;
    let mut fields = seq.children()?;
    let (mut name_type, mut name) = (None, None);
    while let Some(el) = fields.next_el()? {
        match el.context() {
            Some(0) => name_type = Some(el.explicit()?.int32()?),
            Some(1) => {
                let list = el.explicit()?.expect(TAG_SEQUENCE, "name-string")?;
                let mut parts = list.children()?;
                let mut joined = String::with_capacity(list.value.len());
                let mut first = true;
                while let Some(p) = parts.next_el()? {
                    if !first {
                        joined.push('/');
                    }
                    first = false;
                    joined.push_str(&p.string()?);
                }
                name = Some(joined);
            }
            Some(_) => {}
            None => return Err(bad_der(el.at, "unexpected element in PrincipalName")),
        }
    }
    Ok(PrincipalName {
        name_type: name_type.ok_or_else(|| missing(seq.at, "name-type"))?,
        name: name.ok_or_else(|| missing(seq.at, "name-string"))?,
    })
}

const AP_OPTION_NAMES: [&str; 3] = ["reserved", "use-session-key", "mutual-required"];

fn ap_options(f: &El<'_>) -> Result<ApOptions, DecodeError> {
    let b = f.explicit()?.expect(TAG_BIT_STRING, "APOptions")?;
    let Some((&unused, bytes)) = b.value.split_first() else {
        return Err(bad_der(b.value_at, "empty BIT STRING"));
    };
    if unused > 7 || (bytes.is_empty() && unused != 0) {
        return Err(bad_der(b.value_at, "bad BIT STRING unused-bits count"));
    }
    let mut bits = 0u32;
    for i in 0..4 {
        bits = (bits << 8) | u32::from(bytes.get(i).copied().unwrap_or(0));
    }
    let names = AP_OPTION_NAMES
        .iter()
        .enumerate()
        .filter(|(i, _)| bits & (0x8000_0000 >> i) != 0)
        .map(|(_, n)| *n)
        .collect();
    Ok(ApOptions { bits, names })
}

fn ticket(f: &El<'_>) -> Result<Ticket, DecodeError> {
    let app = f.explicit()?.expect(TAG_TICKET, "Ticket [APPLICATION 1]")?;
    let (seq, mut fields) = app_sequence(&app)?;
    let (mut tkt_vno, mut realm, mut sname, mut enc) = (None, None, None, None);
    while let Some(el) = fields.next_el()? {
        match el.context() {
            Some(0) => tkt_vno = Some(el.explicit()?.int32()?),
            Some(1) => realm = Some(el.explicit()?.string()?),
            Some(2) => sname = Some(principal_name(&el)?),
            Some(3) => enc = Some(enc_part(&el)?),
            Some(_) => {}
            None => return Err(bad_der(el.at, "unexpected element in Ticket")),
        }
    }
    Ok(Ticket {
        tkt_vno: tkt_vno.ok_or_else(|| missing(seq.at, "tkt-vno"))?,
        realm: realm.ok_or_else(|| missing(seq.at, "realm"))?,
        sname: sname.ok_or_else(|| missing(seq.at, "sname"))?,
        enc_part: enc.ok_or_else(|| missing(seq.at, "enc-part"))?,
    })
}

fn ap_req(app: &El<'_>) -> Result<ApReq, DecodeError> {
    let (seq, mut fields) = app_sequence(app)?;
    let (mut pvno, mut msg_type, mut options, mut tkt, mut auth) = (None, false, None, None, None);
    while let Some(el) = fields.next_el()? {
        match el.context() {
            Some(0) => pvno = Some(el.explicit()?.int32()?),
            Some(1) => {
                check_msg_type(&el, 14)?;
                msg_type = true;
            }
            Some(2) => options = Some(ap_options(&el)?),
            Some(3) => tkt = Some(ticket(&el)?),
            Some(4) => auth = Some(enc_part(&el)?),
            Some(_) => {}
            None => return Err(bad_der(el.at, "unexpected element in AP-REQ")),
        }
    }
    if !msg_type {
        return Err(missing(seq.at, "msg-type"));
    }
    Ok(ApReq {
        pvno: pvno.ok_or_else(|| missing(seq.at, "pvno"))?,
        ap_options: options.ok_or_else(|| missing(seq.at, "ap-options"))?,
        ticket: tkt.ok_or_else(|| missing(seq.at, "ticket"))?,
        authenticator: auth.ok_or_else(|| missing(seq.at, "authenticator"))?,
    })
}

fn ap_rep(app: &El<'_>) -> Result<ApRep, DecodeError> {
    let (seq, mut fields) = app_sequence(app)?;
    let (mut pvno, mut msg_type, mut enc) = (None, false, None);
    while let Some(el) = fields.next_el()? {
        match el.context() {
            Some(0) => pvno = Some(el.explicit()?.int32()?),
            Some(1) => {
                check_msg_type(&el, 15)?;
                msg_type = true;
            }
            Some(2) => enc = Some(enc_part(&el)?),
            Some(_) => {}
            None => return Err(bad_der(el.at, "unexpected element in AP-REP")),
        }
    }
    if !msg_type {
        return Err(missing(seq.at, "msg-type"));
    }
    Ok(ApRep {
        pvno: pvno.ok_or_else(|| missing(seq.at, "pvno"))?,
        enc_part: enc.ok_or_else(|| missing(seq.at, "enc-part"))?,
    })
}

fn krb_error(app: &El<'_>) -> Result<KrbError, DecodeError> {
    let (seq, mut fields) = app_sequence(app)?;
    let mut msg_type = false;
    let mut pvno = None;
    let mut e = KrbError {
        pvno: 0,
        ctime: None,
        cusec: None,
        stime: String::new(),
        susec: 0,
        error_code: ErrorCode::new(0),
        crealm: None,
        cname: None,
        realm: String::new(),
        sname: PrincipalName {
            name_type: 0,
            name: String::new(),
        },
        e_text: None,
        e_data_len: None,
    };
    let (mut stime, mut susec, mut code, mut realm, mut sname) =
        (false, false, false, false, false);
    while let Some(el) = fields.next_el()? {
        match el.context() {
            Some(0) => pvno = Some(el.explicit()?.int32()?),
            Some(1) => {
                check_msg_type(&el, 30)?;
                msg_type = true;
            }
            Some(2) => e.ctime = Some(el.explicit()?.time()?),
            Some(3) => e.cusec = Some(el.explicit()?.uint32()?),
            Some(4) => {
                e.stime = el.explicit()?.time()?;
                stime = true;
            }
            Some(5) => {
                e.susec = el.explicit()?.uint32()?;
                susec = true;
            }
            Some(6) => {
                e.error_code = ErrorCode::new(el.explicit()?.int32()?);
                code = true;
            }
            Some(7) => e.crealm = Some(el.explicit()?.string()?),
            Some(8) => e.cname = Some(principal_name(&el)?),
            Some(9) => {
                e.realm = el.explicit()?.string()?;
                realm = true;
            }
            Some(10) => {
                e.sname = principal_name(&el)?;
                sname = true;
            }
            Some(11) => e.e_text = Some(el.explicit()?.string()?),
            Some(12) => {
                e.e_data_len = Some(
                    el.explicit()?
                        .expect(TAG_OCTET_STRING, "e-data")?
                        .value
                        .len(),
                )
            }
            Some(_) => {}
            None => return Err(bad_der(el.at, "unexpected element in KRB-ERROR")),
        }
    }
    for (present, what) in [
        (msg_type, "msg-type"),
        (stime, "stime"),
        (susec, "susec"),
        (code, "error-code"),
        (realm, "realm"),
        (sname, "sname"),
    ] {
        if !present {
            return Err(missing(seq.at, what));
        }
    }
    e.pvno = pvno.ok_or_else(|| missing(seq.at, "pvno"))?;
    Ok(e)
}

/// Decodes one Kerberos message (`[APPLICATION 14]` AP-REQ, `[APPLICATION 15]` AP-REP or
/// `[APPLICATION 30]` KRB-ERROR) filling `buf`. `base` is the offset of `buf` in the
/// outermost token (error offsets count from there).
pub fn decode_message(buf: &[u8], base: usize) -> Result<KrbMessage, DecodeError> {
    let app = read_el(buf, base, 1)?;
    let end = app.value_at - base + app.value.len();
    if end != buf.len() {
        return Err(bad_der(base + end, "trailing data after Kerberos message"));
    }
    match app.tag {
        TAG_AP_REQ => ap_req(&app).map(KrbMessage::ApReq),
        TAG_AP_REP => ap_rep(&app).map(KrbMessage::ApRep),
        TAG_KRB_ERROR => krb_error(&app).map(KrbMessage::KrbError),
        _ => Err(DecodeError::Unsupported {
            offset: base,
            what: "Kerberos message other than AP-REQ, AP-REP or KRB-ERROR",
        }),
    }
}

// ---- tokens ------------------------------------------------------------------------------

fn token(mech: Mech, message: KerberosMessage, len: usize, gss_framed: bool) -> KerberosToken {
    KerberosToken {
        mech,
        message,
        len,
        gss_framed,
        ap_req: None,
        ap_rep: None,
        error: None,
        body_error: None,
    }
}

fn fill(k: &mut KerberosToken, decoded: Result<KrbMessage, DecodeError>) {
    match decoded {
        Ok(m) => {
            k.message = kind(&m);
            match m {
                KrbMessage::ApReq(r) => k.ap_req = Some(Box::new(r)),
                KrbMessage::ApRep(r) => k.ap_rep = Some(Box::new(r)),
                KrbMessage::KrbError(e) => k.error = Some(Box::new(e)),
            }
        }
        Err(e) => k.body_error = Some(e),
    }
}

/// A GSS-API framed Kerberos token: `inner` is what follows the KRB5 OID (TOK_ID and the
/// message), at offset `inner_at`; `len` the whole token's length.
pub(crate) fn framed_token(
    mech: Mech,
    message: KerberosMessage,
    inner: &[u8],
    inner_at: usize,
    len: usize,
) -> KerberosToken {
    let mut k = token(mech, message, len, true);
    match message {
        KerberosMessage::ApReq | KerberosMessage::ApRep | KerberosMessage::KrbError => {
            let body = inner.get(2..).unwrap_or(&[]);
            let decoded = decode_message(body, inner_at + 2).and_then(|m| {
                if kind(&m) == message {
                    Ok(m)
                } else {
                    Err(bad_der(
                        inner_at,
                        "TOK_ID does not match the Kerberos message",
                    ))
                }
            });
            fill(&mut k, decoded);
        }
        // KRB_TGT_REQ (user-to-user) is not decoded.
        KerberosMessage::TgtReq => {}
        // No TOK_ID: a message straight after the OID (APPLICATION tag first).
        KerberosMessage::Other => {
            if matches!(
                inner.first(),
                Some(&(TAG_AP_REQ | TAG_AP_REP | TAG_KRB_ERROR))
            ) {
                fill(&mut k, decode_message(inner, inner_at));
            }
        }
    }
    k
}

/// A raw Kerberos message (APPLICATION tag first, no GSS-API framing), at offset `base`.
pub(crate) fn raw_token(
    mech: Mech,
    message: KerberosMessage,
    buf: &[u8],
    base: usize,
) -> KerberosToken {
    let mut k = token(mech, message, buf.len(), false);
    if message != KerberosMessage::Other {
        fill(&mut k, decode_message(buf, base));
    }
    k
}

/// A raw Kerberos message as a whole token (no GSS-API framing, no SPNEGO): strict, the
/// message must decode; the mechanism is taken to be KRB5.
pub(crate) fn decode_raw(buf: &[u8]) -> Result<KerberosToken, DecodeError> {
    let m = decode_message(buf, 0)?;
    let mut k = token(
        Mech {
            oid: crate::spnego::OID_KRB5.to_string(),
            mechanism: crate::Mechanism::Kerberos,
        },
        kind(&m),
        buf.len(),
        false,
    );
    fill(&mut k, Ok(m));
    Ok(k)
}

fn kind(m: &KrbMessage) -> KerberosMessage {
    match m {
        KrbMessage::ApReq(_) => KerberosMessage::ApReq,
        KrbMessage::ApRep(_) => KerberosMessage::ApRep,
        KrbMessage::KrbError(_) => KerberosMessage::KrbError,
    }
}

/// Serialises [`KerberosToken::body_error`] as `{kind, offset, message}`.
pub(crate) fn serialize_body_error<S: serde::Serializer>(
    e: &Option<DecodeError>,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeStruct;
    let mut st = s.serialize_struct("DecodeError", 3)?;
    st.serialize_field("kind", &e.as_ref().map(DecodeError::kind))?;
    st.serialize_field("offset", &e.as_ref().map(DecodeError::offset))?;
    st.serialize_field("message", &e.as_ref().map(ToString::to_string))?;
    st.end()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn entering_below_max_depth_is_too_deep() {
        // SEQUENCE { SEQUENCE {} } read at the bound: its children would be one level deeper.
        let buf = [0x30, 0x02, 0x30, 0x00];
        let el = read_el(&buf, 7, MAX_DEPTH).unwrap();
        assert_eq!(
            el.children().err(),
            Some(DecodeError::TooDeep {
                offset: 9,
                max: MAX_DEPTH
            })
        );
        let el = read_el(&buf, 7, MAX_DEPTH - 1).unwrap();
        let inner = el.children().unwrap().next_el().unwrap().unwrap();
        assert_eq!((inner.at, inner.depth), (9, MAX_DEPTH));
        assert!(matches!(
            inner.children().err(),
            Some(DecodeError::TooDeep { offset: 11, .. })
        ));
    }

    #[test]
    fn integers() {
        let int = |b: &[u8]| read_el(b, 0, 1).unwrap().integer();
        assert_eq!(int(&[0x02, 0x01, 0x05]), Ok(5));
        assert_eq!(int(&[0x02, 0x01, 0xff]), Ok(-1));
        assert_eq!(int(&[0x02, 0x02, 0x00, 0x80]), Ok(128));
        assert!(int(&[0x02, 0x02, 0x00, 0x05]).is_err());
        assert!(int(&[0x02, 0x00]).is_err());
        assert!(int(&[0x02, 0x09, 1, 2, 3, 4, 5, 6, 7, 8, 9]).is_err());
        let el = read_el(&[0x02, 0x05, 0x01, 0, 0, 0, 0], 0, 1).unwrap();
        assert!(el.int32().is_err() && el.uint32().is_err());
    }
}
