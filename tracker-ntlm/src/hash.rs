//! Keyed hashes (BLAKE3 in keyed mode).
//!
//! - [`token_hash`]: a hash of a whole decoded token under a random per-process key, to join
//!   the frontend and backend legs of a balancer (the balancer forwards tokens verbatim). The
//!   key never leaves the process, so the hash is useless outside it.
//! - [`ChallengeKeyHasher`]: `ntlm_affinity.challenge_key` (docs/events.md), a keyed hash of a
//!   challenge's identity — MsvAvTimestamp + the server names of the Type-2's TargetInfo —
//!   under a site-wide key from the configuration, so that a Type-2 seen by one balancer host
//!   and the Type-3 answering it seen by another get the same key in the SIEM.

use crate::nlmp::{AuthenticateMessage, AvPairs, ChallengeMessage, FileTime, hex};
use serde::{Serialize, Serializer};
use std::fmt;
use std::sync::OnceLock;

/// A 128-bit keyed hash. Display and Serialize give lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest128(pub [u8; 16]);

impl fmt::Display for Digest128 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl fmt::Debug for Digest128 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest128({self})")
    }
}

impl Serialize for Digest128 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex(&self.0))
    }
}

/// Hash of a whole token (see [`token_hash`]).
pub type TokenHash = Digest128;
/// `ntlm_affinity.challenge_key` (see [`ChallengeKeyHasher`]).
pub type ChallengeKey = Digest128;

fn truncate(h: blake3::Hash) -> Digest128 {
    let mut out = [0u8; 16];
    out.copy_from_slice(&h.as_bytes()[..16]);
    Digest128(out)
}

/// Hashes tokens under one key.
#[derive(Clone)]
pub struct TokenHasher {
    key: [u8; 32],
}

impl fmt::Debug for TokenHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHasher(<key redacted>)")
    }
}

impl TokenHasher {
    /// A hasher with a caller-chosen key (tests, or a key shared by cooperating processes).
    pub fn with_key(key: [u8; 32]) -> TokenHasher {
        TokenHasher { key }
    }

    /// A hasher with a fresh random key (OS randomness; std's per-process random hash keys if
    /// the OS source fails).
    pub fn random() -> TokenHasher {
        let mut key = [0u8; 32];
        if getrandom::fill(&mut key).is_err() {
            use std::hash::{BuildHasher, Hasher};
            let state = std::collections::hash_map::RandomState::new();
            for (i, chunk) in key.chunks_exact_mut(8).enumerate() {
                let mut h = state.build_hasher();
                h.write_usize(i);
                h.write_u128(
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_nanos())
                        .unwrap_or(0),
                );
                chunk.copy_from_slice(&h.finish().to_le_bytes());
            }
        }
        TokenHasher { key }
    }

    /// The keyed hash of `token` (the decoded bytes, so base64 variations hash alike).
    pub fn hash(&self, token: &[u8]) -> TokenHash {
        truncate(blake3::keyed_hash(&self.key, token))
    }
}

/// The keyed hash of a whole decoded token under this process's random key.
pub fn token_hash(token: &[u8]) -> TokenHash {
    static HASHER: OnceLock<TokenHasher> = OnceLock::new();
    HASHER.get_or_init(TokenHasher::random).hash(token)
}

/// The identity of one CHALLENGE_MESSAGE, as the Type-3 repeats it in its NTLMv2 AV pairs:
/// MsvAvTimestamp plus the server names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct ChallengeIdentity<'a> {
    /// MsvAvTimestamp.
    pub timestamp: FileTime,
    /// MsvAvNbComputerName.
    pub nb_computer_name: Option<&'a str>,
    /// MsvAvNbDomainName.
    pub nb_domain_name: Option<&'a str>,
    /// MsvAvDnsComputerName.
    pub dns_computer_name: Option<&'a str>,
    /// MsvAvDnsDomainName.
    pub dns_domain_name: Option<&'a str>,
    /// MsvAvDnsTreeName.
    pub dns_tree_name: Option<&'a str>,
}

impl<'a> ChallengeIdentity<'a> {
    /// From an AV pair list; `None` without MsvAvTimestamp (then no exact join is possible).
    pub fn from_av_pairs(av: &'a AvPairs) -> Option<ChallengeIdentity<'a>> {
        Some(ChallengeIdentity {
            timestamp: av.timestamp()?,
            nb_computer_name: av.nb_computer_name(),
            nb_domain_name: av.nb_domain_name(),
            dns_computer_name: av.dns_computer_name(),
            dns_domain_name: av.dns_domain_name(),
            dns_tree_name: av.dns_tree_name(),
        })
    }
}

impl ChallengeMessage {
    /// This challenge's identity (from TargetInfo).
    pub fn challenge_identity(&self) -> Option<ChallengeIdentity<'_>> {
        self.target_info
            .as_ref()
            .and_then(ChallengeIdentity::from_av_pairs)
    }
}

impl AuthenticateMessage {
    /// The identity of the challenge this Type-3 answers (from its NTLMv2 AV pairs).
    pub fn challenge_identity(&self) -> Option<ChallengeIdentity<'_>> {
        self.av_pairs().and_then(ChallengeIdentity::from_av_pairs)
    }
}

/// Computes `ntlm_affinity.challenge_key` under a site-wide key.
#[derive(Clone)]
pub struct ChallengeKeyHasher {
    key: [u8; 32],
}

impl fmt::Debug for ChallengeKeyHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ChallengeKeyHasher(<key redacted>)")
    }
}

const CHALLENGE_KEY_CONTEXT: &str = "ntlm-affinity challenge_key v1";

impl ChallengeKeyHasher {
    /// From a 32-byte key.
    pub fn new(key: [u8; 32]) -> ChallengeKeyHasher {
        ChallengeKeyHasher { key }
    }

    /// From a configured secret of any length (derived with BLAKE3's KDF mode).
    pub fn from_secret(secret: &[u8]) -> ChallengeKeyHasher {
        ChallengeKeyHasher {
            key: blake3::derive_key(CHALLENGE_KEY_CONTEXT, secret),
        }
    }

    /// The challenge key. Fields are length-prefixed (absent ≠ empty), names hashed exactly
    /// as sent (the client copies them verbatim).
    pub fn challenge_key(&self, id: &ChallengeIdentity<'_>) -> ChallengeKey {
        let mut h = blake3::Hasher::new_keyed(&self.key);
        h.update(CHALLENGE_KEY_CONTEXT.as_bytes());
        h.update(&id.timestamp.0.to_le_bytes());
        for name in [
            id.nb_computer_name,
            id.nb_domain_name,
            id.dns_computer_name,
            id.dns_domain_name,
            id.dns_tree_name,
        ] {
            match name {
                None => {
                    h.update(&[0]);
                }
                Some(s) => {
                    h.update(&[1]);
                    h.update(&(s.len() as u64).to_le_bytes());
                    h.update(s.as_bytes());
                }
            }
        }
        truncate(h.finalize())
    }

    /// The challenge key of an AV pair list (`None` without MsvAvTimestamp).
    pub fn for_av_pairs(&self, av: &AvPairs) -> Option<ChallengeKey> {
        ChallengeIdentity::from_av_pairs(av).map(|id| self.challenge_key(&id))
    }
}
