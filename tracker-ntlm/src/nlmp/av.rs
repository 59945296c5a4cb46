//! AV_PAIR lists (MS-NLMP 2.2.2.1): the TargetInfo of a CHALLENGE_MESSAGE and the AV pairs
//! inside an NTLMv2 client challenge.

use super::{hex, utf16le};
use crate::DecodeError;
use serde::{Serialize, Serializer};
use std::fmt;

pub use super::flags::AvFlags;

/// AvId values (MS-NLMP 2.2.2.1).
#[allow(missing_docs)]
pub mod av_id {
    pub const MSV_AV_EOL: u16 = 0;
    pub const MSV_AV_NB_COMPUTER_NAME: u16 = 1;
    pub const MSV_AV_NB_DOMAIN_NAME: u16 = 2;
    pub const MSV_AV_DNS_COMPUTER_NAME: u16 = 3;
    pub const MSV_AV_DNS_DOMAIN_NAME: u16 = 4;
    pub const MSV_AV_DNS_TREE_NAME: u16 = 5;
    pub const MSV_AV_FLAGS: u16 = 6;
    pub const MSV_AV_TIMESTAMP: u16 = 7;
    pub const MSV_AV_SINGLE_HOST: u16 = 8;
    pub const MSV_AV_TARGET_NAME: u16 = 9;
    pub const MSV_AV_CHANNEL_BINDINGS: u16 = 10;
}

/// A 64-bit Windows FILETIME (100 ns ticks since 1601-01-01 UTC), as carried by MsvAvTimestamp
/// and the NTLMv2 client challenge. Serialized as the raw integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct FileTime(pub u64);

impl FileTime {
    const UNIX_EPOCH_TICKS: u64 = 116_444_736_000_000_000;

    /// Nanoseconds since the Unix epoch (`None` before 1970).
    pub fn unix_nanos(self) -> Option<u128> {
        self.0
            .checked_sub(Self::UNIX_EPOCH_TICKS)
            .map(|t| u128::from(t) * 100)
    }
}

/// MsvAvSingleHost (MS-NLMP 2.2.2.2 Single_Host_Data): not credential material.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SingleHost {
    /// Size field.
    pub size: u32,
    /// CustomData (8 bytes), hex.
    #[serde(serialize_with = "ser_hex")]
    pub custom_data: Vec<u8>,
    /// MachineID (32 bytes, random per boot), hex.
    #[serde(serialize_with = "ser_hex")]
    pub machine_id: Vec<u8>,
}

/// MsvAvChannelBindings: an MD5 of gss_channel_bindings_struct. Only presence and whether it
/// is all zero are reported (all zero: the client had no TLS channel to bind).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ChannelBindings(pub [u8; 16]);

impl ChannelBindings {
    /// True when the client sent Z(16) (no channel binding).
    pub fn is_all_zero(&self) -> bool {
        self.0 == [0u8; 16]
    }
}

impl fmt::Debug for ChannelBindings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChannelBindings {{ all_zero: {} }}", self.is_all_zero())
    }
}

impl Serialize for ChannelBindings {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut s = serializer.serialize_struct("ChannelBindings", 2)?;
        s.serialize_field("present", &true)?;
        s.serialize_field("all_zero", &self.is_all_zero())?;
        s.end()
    }
}

fn ser_hex<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex(v))
}

/// One AV_PAIR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AvPair {
    /// MsvAvEOL (0).
    Eol,
    /// MsvAvNbComputerName (1).
    NbComputerName(String),
    /// MsvAvNbDomainName (2).
    NbDomainName(String),
    /// MsvAvDnsComputerName (3).
    DnsComputerName(String),
    /// MsvAvDnsDomainName (4).
    DnsDomainName(String),
    /// MsvAvDnsTreeName (5).
    DnsTreeName(String),
    /// MsvAvFlags (6).
    Flags(AvFlags),
    /// MsvAvTimestamp (7).
    Timestamp(FileTime),
    /// MsvAvSingleHost (8).
    SingleHost(SingleHost),
    /// MsvAvTargetName (9): the SPN the client aimed at.
    TargetName(String),
    /// MsvAvChannelBindings (10).
    ChannelBindings(ChannelBindings),
    /// A known AvId whose value has the wrong length for its type (kept, hex).
    Malformed {
        /// AvId.
        id: u16,
        /// Value bytes.
        #[serde(serialize_with = "ser_hex")]
        value: Vec<u8>,
    },
    /// An AvId this decoder does not know (kept, hex).
    Unknown {
        /// AvId.
        id: u16,
        /// Value bytes.
        #[serde(serialize_with = "ser_hex")]
        value: Vec<u8>,
    },
}

impl AvPair {
    /// The AvId of this pair.
    pub fn id(&self) -> u16 {
        use av_id::*;
        match self {
            AvPair::Eol => MSV_AV_EOL,
            AvPair::NbComputerName(_) => MSV_AV_NB_COMPUTER_NAME,
            AvPair::NbDomainName(_) => MSV_AV_NB_DOMAIN_NAME,
            AvPair::DnsComputerName(_) => MSV_AV_DNS_COMPUTER_NAME,
            AvPair::DnsDomainName(_) => MSV_AV_DNS_DOMAIN_NAME,
            AvPair::DnsTreeName(_) => MSV_AV_DNS_TREE_NAME,
            AvPair::Flags(_) => MSV_AV_FLAGS,
            AvPair::Timestamp(_) => MSV_AV_TIMESTAMP,
            AvPair::SingleHost(_) => MSV_AV_SINGLE_HOST,
            AvPair::TargetName(_) => MSV_AV_TARGET_NAME,
            AvPair::ChannelBindings(_) => MSV_AV_CHANNEL_BINDINGS,
            AvPair::Malformed { id, .. } | AvPair::Unknown { id, .. } => *id,
        }
    }

    fn decode(id: u16, value: &[u8]) -> AvPair {
        use av_id::*;
        let malformed = || AvPair::Malformed {
            id,
            value: value.to_vec(),
        };
        match id {
            MSV_AV_EOL if value.is_empty() => AvPair::Eol,
            MSV_AV_EOL => malformed(),
            MSV_AV_NB_COMPUTER_NAME => AvPair::NbComputerName(utf16le(value)),
            MSV_AV_NB_DOMAIN_NAME => AvPair::NbDomainName(utf16le(value)),
            MSV_AV_DNS_COMPUTER_NAME => AvPair::DnsComputerName(utf16le(value)),
            MSV_AV_DNS_DOMAIN_NAME => AvPair::DnsDomainName(utf16le(value)),
            MSV_AV_DNS_TREE_NAME => AvPair::DnsTreeName(utf16le(value)),
            MSV_AV_TARGET_NAME => AvPair::TargetName(utf16le(value)),
            MSV_AV_FLAGS => match <[u8; 4]>::try_from(value) {
                Ok(b) => AvPair::Flags(AvFlags(u32::from_le_bytes(b))),
                Err(_) => malformed(),
            },
            MSV_AV_TIMESTAMP => match <[u8; 8]>::try_from(value) {
                Ok(b) => AvPair::Timestamp(FileTime(u64::from_le_bytes(b))),
                Err(_) => malformed(),
            },
            MSV_AV_CHANNEL_BINDINGS => match <[u8; 16]>::try_from(value) {
                Ok(b) => AvPair::ChannelBindings(ChannelBindings(b)),
                Err(_) => malformed(),
            },
            MSV_AV_SINGLE_HOST => {
                // Size(4) Z4(4) CustomData(8) MachineID(32)
                match (value.get(0..4), value.get(8..16), value.get(16..48)) {
                    (Some(size), Some(custom), Some(machine)) => AvPair::SingleHost(SingleHost {
                        size: u32::from_le_bytes([size[0], size[1], size[2], size[3]]),
                        custom_data: custom.to_vec(),
                        machine_id: machine.to_vec(),
                    }),
                    _ => malformed(),
                }
            }
            _ => AvPair::Unknown {
                id,
                value: value.to_vec(),
            },
        }
    }
}

/// An AV pair list. `terminated` is false when the list ran to the end of its buffer without
/// an MsvAvEOL (tolerated; Windows always terminates). The EOL itself is not kept in `pairs`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct AvPairs {
    /// The pairs in wire order, without the terminating MsvAvEOL.
    pub pairs: Vec<AvPair>,
    /// An MsvAvEOL ended the list.
    pub terminated: bool,
}

macro_rules! str_accessor {
    ($name:ident, $variant:ident) => {
        /// The first such pair's value.
        pub fn $name(&self) -> Option<&str> {
            self.pairs.iter().find_map(|p| match p {
                AvPair::$variant(s) => Some(s.as_str()),
                _ => None,
            })
        }
    };
}

impl AvPairs {
    /// Parses an AV pair list. `base` is the offset of `buf` in the token (for errors).
    pub fn parse(buf: &[u8], base: usize) -> Result<AvPairs, DecodeError> {
        let mut pairs = Vec::with_capacity(8);
        let mut pos = 0usize;
        loop {
            if pos == buf.len() {
                return Ok(AvPairs {
                    pairs,
                    terminated: false,
                });
            }
            let hdr = buf.get(pos..pos + 4).ok_or(DecodeError::Truncated {
                offset: base + pos,
                what: "AV_PAIR header",
                needed: 4,
                available: buf.len() - pos,
            })?;
            let id = u16::from_le_bytes([hdr[0], hdr[1]]);
            let len = usize::from(u16::from_le_bytes([hdr[2], hdr[3]]));
            let start = pos + 4;
            let value = buf
                .get(start..start + len)
                .ok_or(DecodeError::FieldOutOfBounds {
                    field: "AV_PAIR.Value",
                    offset: base + pos,
                    start: base + start,
                    len,
                    buffer_len: base + buf.len(),
                })?;
            pos = start + len;
            if id == av_id::MSV_AV_EOL {
                return Ok(AvPairs {
                    pairs,
                    terminated: true,
                });
            }
            pairs.push(AvPair::decode(id, value));
        }
    }

    str_accessor!(nb_computer_name, NbComputerName);
    str_accessor!(nb_domain_name, NbDomainName);
    str_accessor!(dns_computer_name, DnsComputerName);
    str_accessor!(dns_domain_name, DnsDomainName);
    str_accessor!(dns_tree_name, DnsTreeName);
    str_accessor!(target_name, TargetName);

    /// MsvAvTimestamp.
    pub fn timestamp(&self) -> Option<FileTime> {
        self.pairs.iter().find_map(|p| match p {
            AvPair::Timestamp(t) => Some(*t),
            _ => None,
        })
    }

    /// MsvAvFlags.
    pub fn flags(&self) -> Option<AvFlags> {
        self.pairs.iter().find_map(|p| match p {
            AvPair::Flags(f) => Some(*f),
            _ => None,
        })
    }

    /// MsvAvChannelBindings.
    pub fn channel_bindings(&self) -> Option<ChannelBindings> {
        self.pairs.iter().find_map(|p| match p {
            AvPair::ChannelBindings(c) => Some(*c),
            _ => None,
        })
    }

    /// MsvAvSingleHost.
    pub fn single_host(&self) -> Option<&SingleHost> {
        self.pairs.iter().find_map(|p| match p {
            AvPair::SingleHost(s) => Some(s),
            _ => None,
        })
    }

    /// The first pair with this AvId.
    pub fn get(&self, id: u16) -> Option<&AvPair> {
        self.pairs.iter().find(|p| p.id() == id)
    }
}
