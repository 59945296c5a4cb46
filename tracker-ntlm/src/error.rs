//! Typed decoding errors. Every error carries the byte offset where decoding failed.
//!
//! Offsets of [`DecodeError::BadHeader`] and [`DecodeError::BadBase64`] count characters of
//! the HTTP header *value*; every other offset counts bytes of the decoded token (for an NTLM
//! message nested in SPNEGO, bytes of the outermost token).

/// Why a header value or token could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ends before a fixed-size part of the structure.
    #[error("truncated at offset {offset}: {what} needs {needed} bytes, {available} available")]
    Truncated {
        /// Where the missing part starts.
        offset: usize,
        /// What was being read.
        what: &'static str,
        /// Bytes needed from `offset`.
        needed: usize,
        /// Bytes available from `offset`.
        available: usize,
    },
    /// The token does not start with `NTLMSSP\0`.
    #[error("bad NTLMSSP signature at offset {offset}")]
    BadSignature {
        /// Offset of the signature.
        offset: usize,
    },
    /// The NTLM MessageType is not 1, 2 or 3.
    #[error("wrong NTLM message type {found} at offset {offset}")]
    WrongMessageType {
        /// Offset of the MessageType field.
        offset: usize,
        /// The value found.
        found: u32,
    },
    /// A (len, maxlen, offset) field, or an AV pair, points outside the message.
    #[error(
        "field {field} out of bounds at offset {offset}: data {start}+{len} exceeds {buffer_len} bytes"
    )]
    FieldOutOfBounds {
        /// Field name (MS-NLMP term).
        field: &'static str,
        /// Offset of the field descriptor (or AV pair header).
        offset: usize,
        /// Start of the data the descriptor points to.
        start: usize,
        /// Length the descriptor claims.
        len: usize,
        /// Length of the buffer the data must fit in.
        buffer_len: usize,
    },
    /// The base64 text of a token is invalid (in the current strictness mode).
    #[error("bad base64 at offset {offset}: {reason}")]
    BadBase64 {
        /// Offset in the header value.
        offset: usize,
        /// What was wrong.
        reason: &'static str,
    },
    /// The SPNEGO / GSS-API DER structure is invalid.
    #[error("bad DER at offset {offset}: {reason}")]
    BadDer {
        /// Offset in the token.
        offset: usize,
        /// What was wrong.
        reason: String,
    },
    /// A well-formed token of a kind this decoder does not handle.
    #[error("unsupported at offset {offset}: {what}")]
    Unsupported {
        /// Offset in the token.
        offset: usize,
        /// What is unsupported.
        what: &'static str,
    },
    /// DER nesting deeper than the decoder's fixed bound ([`crate::kerberos::MAX_DEPTH`]).
    #[error("nesting deeper than {max} levels at offset {offset}")]
    TooDeep {
        /// Offset of the element that would go deeper.
        offset: usize,
        /// The bound.
        max: usize,
    },
    /// A string that must be text is not (e.g. a non-UTF-8 KerberosString).
    #[error("bad string at offset {offset}: {what}")]
    BadString {
        /// Offset of the first invalid byte.
        offset: usize,
        /// Which string.
        what: &'static str,
    },
    /// The header name or value is not an HTTP authentication header we understand.
    #[error("bad auth header at offset {offset}: {reason}")]
    BadHeader {
        /// Offset in the header value.
        offset: usize,
        /// What was wrong.
        reason: &'static str,
    },
}

impl DecodeError {
    /// The offset where decoding failed.
    pub fn offset(&self) -> usize {
        match self {
            DecodeError::Truncated { offset, .. }
            | DecodeError::BadSignature { offset }
            | DecodeError::WrongMessageType { offset, .. }
            | DecodeError::FieldOutOfBounds { offset, .. }
            | DecodeError::BadBase64 { offset, .. }
            | DecodeError::BadDer { offset, .. }
            | DecodeError::Unsupported { offset, .. }
            | DecodeError::TooDeep { offset, .. }
            | DecodeError::BadString { offset, .. }
            | DecodeError::BadHeader { offset, .. } => *offset,
        }
    }

    /// A short stable name of the error kind (for metrics and logs).
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::Truncated { .. } => "truncated",
            DecodeError::BadSignature { .. } => "bad_signature",
            DecodeError::WrongMessageType { .. } => "wrong_message_type",
            DecodeError::FieldOutOfBounds { .. } => "field_out_of_bounds",
            DecodeError::BadBase64 { .. } => "bad_base64",
            DecodeError::BadDer { .. } => "bad_der",
            DecodeError::Unsupported { .. } => "unsupported",
            DecodeError::TooDeep { .. } => "too_deep",
            DecodeError::BadString { .. } => "bad_string",
            DecodeError::BadHeader { .. } => "bad_header",
        }
    }

    /// The same error with its token offsets moved by `base` (for nested tokens).
    pub(crate) fn shifted(mut self, base: usize) -> Self {
        match &mut self {
            DecodeError::Truncated { offset, .. }
            | DecodeError::BadSignature { offset }
            | DecodeError::WrongMessageType { offset, .. }
            | DecodeError::BadDer { offset, .. }
            | DecodeError::Unsupported { offset, .. }
            | DecodeError::TooDeep { offset, .. }
            | DecodeError::BadString { offset, .. } => *offset = offset.saturating_add(base),
            DecodeError::FieldOutOfBounds { offset, start, .. } => {
                *offset = offset.saturating_add(base);
                *start = start.saturating_add(base);
            }
            DecodeError::BadBase64 { .. } | DecodeError::BadHeader { .. } => {}
        }
        self
    }
}
