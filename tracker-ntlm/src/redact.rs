//! Redaction by construction: credential material (NT/LM challenge responses, the encrypted
//! session key, the MIC, whole raw tokens) lives only in [`Secret`], whose `Debug` and
//! `Serialize` print the length and never a byte.

use serde::{Serialize, Serializer, ser::SerializeStruct};
use std::fmt;

/// Bytes that must never be printed, logged or shipped. `Debug` and `Serialize` show only
/// the length; the bytes are overwritten with zeros when dropped.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Takes ownership of credential bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        Secret(bytes)
    }

    /// Copies credential bytes.
    pub fn from_slice(bytes: &[u8]) -> Self {
        Secret(bytes.to_vec())
    }

    /// Number of bytes held.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when no bytes are held.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// True when every byte is zero (an empty secret counts as all zero).
    pub fn is_all_zero(&self) -> bool {
        self.0.iter().all(|&b| b == 0)
    }

    /// The raw bytes, for in-memory correlation and hashing only. Never log or ship them.
    pub fn expose_secret(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        // A plain memset, kept from being optimised away as a dead store by black_box.
        self.0.fill(0);
        std::hint::black_box(&mut self.0);
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(<redacted {} bytes>)", self.0.len())
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("Secret", 2)?;
        s.serialize_field("redacted", &true)?;
        s.serialize_field("len", &self.0.len())?;
        s.end()
    }
}
