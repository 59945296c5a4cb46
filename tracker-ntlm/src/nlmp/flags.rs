//! NegotiateFlags (MS-NLMP 2.2.2.5) and MsvAvFlags (MS-NLMP 2.2.2.1).

use serde::{Serialize, Serializer, ser::SerializeStruct};
use std::fmt;

/// The 32 NegotiateFlags bits, by their MS-NLMP names (bit 0 first).
pub const NEGOTIATE_FLAG_NAMES: [&str; 32] = [
    "NTLMSSP_NEGOTIATE_UNICODE",
    "NTLM_NEGOTIATE_OEM",
    "NTLMSSP_REQUEST_TARGET",
    "NTLMSSP_RESERVED_R10",
    "NTLMSSP_NEGOTIATE_SIGN",
    "NTLMSSP_NEGOTIATE_SEAL",
    "NTLMSSP_NEGOTIATE_DATAGRAM",
    "NTLMSSP_NEGOTIATE_LM_KEY",
    "NTLMSSP_RESERVED_R9",
    "NTLMSSP_NEGOTIATE_NTLM",
    "NTLMSSP_RESERVED_R8",
    "NTLMSSP_ANONYMOUS",
    "NTLMSSP_NEGOTIATE_OEM_DOMAIN_SUPPLIED",
    "NTLMSSP_NEGOTIATE_OEM_WORKSTATION_SUPPLIED",
    "NTLMSSP_RESERVED_R7",
    "NTLMSSP_NEGOTIATE_ALWAYS_SIGN",
    "NTLMSSP_TARGET_TYPE_DOMAIN",
    "NTLMSSP_TARGET_TYPE_SERVER",
    "NTLMSSP_RESERVED_R6",
    "NTLMSSP_NEGOTIATE_EXTENDED_SESSIONSECURITY",
    "NTLMSSP_NEGOTIATE_IDENTIFY",
    "NTLMSSP_RESERVED_R5",
    "NTLMSSP_REQUEST_NON_NT_SESSION_KEY",
    "NTLMSSP_NEGOTIATE_TARGET_INFO",
    "NTLMSSP_RESERVED_R4",
    "NTLMSSP_NEGOTIATE_VERSION",
    "NTLMSSP_RESERVED_R3",
    "NTLMSSP_RESERVED_R2",
    "NTLMSSP_RESERVED_R1",
    "NTLMSSP_NEGOTIATE_128",
    "NTLMSSP_NEGOTIATE_KEY_EXCH",
    "NTLMSSP_NEGOTIATE_56",
];

/// NegotiateFlags of a Type-1/2/3 message. Serialized as `{"value": u32, "names": [...]}`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct NegotiateFlags(pub u32);

#[allow(missing_docs)]
impl NegotiateFlags {
    pub const UNICODE: u32 = 0x0000_0001;
    pub const OEM: u32 = 0x0000_0002;
    pub const REQUEST_TARGET: u32 = 0x0000_0004;
    pub const SIGN: u32 = 0x0000_0010;
    pub const SEAL: u32 = 0x0000_0020;
    pub const DATAGRAM: u32 = 0x0000_0040;
    pub const LM_KEY: u32 = 0x0000_0080;
    pub const NTLM: u32 = 0x0000_0200;
    pub const ANONYMOUS: u32 = 0x0000_0800;
    pub const OEM_DOMAIN_SUPPLIED: u32 = 0x0000_1000;
    pub const OEM_WORKSTATION_SUPPLIED: u32 = 0x0000_2000;
    pub const ALWAYS_SIGN: u32 = 0x0000_8000;
    pub const TARGET_TYPE_DOMAIN: u32 = 0x0001_0000;
    pub const TARGET_TYPE_SERVER: u32 = 0x0002_0000;
    pub const EXTENDED_SESSIONSECURITY: u32 = 0x0008_0000;
    pub const IDENTIFY: u32 = 0x0010_0000;
    pub const REQUEST_NON_NT_SESSION_KEY: u32 = 0x0040_0000;
    pub const TARGET_INFO: u32 = 0x0080_0000;
    pub const VERSION: u32 = 0x0200_0000;
    pub const NEGOTIATE_128: u32 = 0x2000_0000;
    pub const KEY_EXCH: u32 = 0x4000_0000;
    pub const NEGOTIATE_56: u32 = 0x8000_0000;

    /// True when every bit of `mask` is set.
    pub fn contains(self, mask: u32) -> bool {
        self.0 & mask == mask
    }

    /// Strings are UTF-16LE (else OEM).
    pub fn unicode(self) -> bool {
        self.contains(Self::UNICODE)
    }

    /// MS-NLMP names of the bits set, lowest bit first.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        NEGOTIATE_FLAG_NAMES
            .iter()
            .enumerate()
            .filter(move |(i, _)| self.0 & (1u32 << i) != 0)
            .map(|(_, n)| *n)
    }
}

impl fmt::Debug for NegotiateFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NegotiateFlags({:#010x}: ", self.0)?;
        let mut first = true;
        for n in self.names() {
            if !first {
                f.write_str(" | ")?;
            }
            first = false;
            f.write_str(n)?;
        }
        f.write_str(")")
    }
}

impl Serialize for NegotiateFlags {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("NegotiateFlags", 2)?;
        s.serialize_field("value", &self.0)?;
        s.serialize_field("names", &self.names().collect::<Vec<_>>())?;
        s.end()
    }
}

/// MsvAvFlags AV pair value (MS-NLMP 2.2.2.1).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct AvFlags(pub u32);

impl AvFlags {
    /// The server's account authentication is constrained.
    pub const CONSTRAINED: u32 = 0x1;
    /// The client provides a MIC in the AUTHENTICATE_MESSAGE.
    pub const MIC_PRESENT: u32 = 0x2;
    /// The client's SPN (MsvAvTargetName) came from an untrusted source.
    pub const UNTRUSTED_SPN_SOURCE: u32 = 0x4;

    /// MS-NLMP-style names of the bits set (unknown bits as hex).
    pub fn names(self) -> Vec<String> {
        let mut v = Vec::new();
        for (bit, name) in [
            (Self::CONSTRAINED, "ACCOUNT_AUTHENTICATION_CONSTRAINED"),
            (Self::MIC_PRESENT, "MIC_PRESENT"),
            (Self::UNTRUSTED_SPN_SOURCE, "UNTRUSTED_SPN_SOURCE"),
        ] {
            if self.0 & bit != 0 {
                v.push(name.to_string());
            }
        }
        let unknown = self.0 & !0x7;
        if unknown != 0 {
            v.push(format!("{unknown:#x}"));
        }
        v
    }

    /// True when the client says it sent a MIC.
    pub fn mic_present(self) -> bool {
        self.0 & Self::MIC_PRESENT != 0
    }
}

impl fmt::Debug for AvFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AvFlags({:#x}: {})", self.0, self.names().join(" | "))
    }
}

impl Serialize for AvFlags {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("AvFlags", 2)?;
        s.serialize_field("value", &self.0)?;
        s.serialize_field("names", &self.names())?;
        s.end()
    }
}
