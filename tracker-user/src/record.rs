//! Ring-buffer records as the kernel writes them: a `RecordHeader` and the copied payload.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::Bytes;
use tracker_common::{FlowKey, RecordHeader};
use zeroize::Zeroize;

/// One record read from the `EVENTS` ring buffer.
#[derive(Clone, Debug)]
pub struct Record {
    pub header: RecordHeader,
    pub payload: Bytes,
}

#[derive(Debug, PartialEq, Eq)]
pub enum RecordError {
    TooShort(usize),
    PayloadTruncated { declared: usize, present: usize },
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooShort(n) => write!(
                f,
                "ring-buffer record of {n} bytes is shorter than its header"
            ),
            Self::PayloadTruncated { declared, present } => {
                write!(
                    f,
                    "record declares {declared} payload bytes but carries {present}"
                )
            }
        }
    }
}

impl std::error::Error for RecordError {}

/// A record's bytes may be a Type-3 token (credential material): they are overwritten when the
/// record goes, so no freed heap block keeps them (docs/design.md, "Security").
impl Drop for Record {
    fn drop(&mut self) {
        if let Ok(mut bytes) = std::mem::take(&mut self.payload).try_into_mut() {
            bytes[..].zeroize();
        }
    }
}

impl Record {
    /// The header and payload of a raw record, in place (no copy).
    pub fn parse_ref(buf: &[u8]) -> Result<(RecordHeader, &[u8]), RecordError> {
        let hlen = std::mem::size_of::<RecordHeader>();
        if buf.len() < hlen {
            return Err(RecordError::TooShort(buf.len()));
        }
        // SAFETY: RecordHeader is repr(C) plain data (aya::Pod); the length was checked and
        // read_unaligned copes with the ring buffer's alignment.
        let header: RecordHeader =
            unsafe { std::ptr::read_unaligned(buf.as_ptr().cast::<RecordHeader>()) };
        let declared = usize::from(header.captured_len);
        let present = buf.len() - hlen;
        if present < declared {
            return Err(RecordError::PayloadTruncated { declared, present });
        }
        Ok((header, &buf[hlen..hlen + declared]))
    }

    pub fn parse(buf: &[u8]) -> Result<Self, RecordError> {
        let (header, payload) = Self::parse_ref(buf)?;
        Ok(Self {
            header,
            payload: Bytes::copy_from_slice(payload),
        })
    }
}

/// Socket addresses of a directional flow key.
pub fn endpoints(key: &FlowKey) -> (SocketAddr, SocketAddr) {
    (
        SocketAddr::new(ip(&key.src_addr, key.family), key.src_port),
        SocketAddr::new(ip(&key.dst_addr, key.family), key.dst_port),
    )
}

fn ip(addr: &[u8; 16], family: u8) -> IpAddr {
    let v6 = Ipv6Addr::from(*addr);
    match (family, v6.to_ipv4_mapped()) {
        (4, Some(v4)) => IpAddr::V4(v4),
        (4, None) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        _ => IpAddr::V6(v6),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn raw(h: &RecordHeader, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0u8; std::mem::size_of::<RecordHeader>()];
        unsafe { std::ptr::write_unaligned(v.as_mut_ptr().cast::<RecordHeader>(), *h) };
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn parses_header_and_payload_and_rejects_short_records() {
        let mut h = RecordHeader {
            captured_len: 3,
            seq: 7,
            ..Default::default()
        };
        h.key.family = 4;
        h.key.src_addr[10..].copy_from_slice(&[0xff, 0xff, 198, 18, 0, 1]);
        h.key.src_port = 80;
        let r = Record::parse(&raw(&h, b"abc")).unwrap();
        assert_eq!(r.header.seq, 7);
        assert_eq!(&r.payload[..], b"abc");
        assert_eq!(endpoints(&r.header.key).0.to_string(), "198.18.0.1:80");
        assert_eq!(
            Record::parse(&[0u8; 10]).unwrap_err(),
            RecordError::TooShort(10)
        );
        h.captured_len = 9;
        assert!(matches!(
            Record::parse(&raw(&h, b"abc")),
            Err(RecordError::PayloadTruncated {
                declared: 9,
                present: 3
            })
        ));
    }
}
