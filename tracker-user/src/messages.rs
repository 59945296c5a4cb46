//! Turns kernel records into NTLM/Negotiate message records (one per auth header), joining
//! an auth header that the kernel delivered over several segments. The full per-flow
//! reassembly by sequence is the correlation stage's; this keeps only a small, bounded
//! amount of state per flow so a cut header is completed by the segment that follows it.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use tracker_common::{FlowKey, RECORD_CLOSE, RECORD_CONTINUATION, RecordHeader};

use crate::{
    http::{self, AuthHeader, HeaderBlock, StartLine},
    record::Record,
};

/// A flow direction and its generation: one use of one 5-tuple.
type FlowId = (FlowKey, u64);

/// Bytes held for a flow whose last auth header was cut.
struct Pending {
    header: RecordHeader,
    next_seq: u32,
    bytes: BytesMut,
}

/// An NTLM/Negotiate message found in captured bytes.
#[derive(Debug)]
pub struct Message {
    pub record: RecordHeader,
    pub start: Option<StartLine>,
    pub auth: AuthHeader,
}

/// What the assembler produced from one record.
#[derive(Debug)]
pub enum Output {
    Message(Message),
    /// A connection that carried NTLM ended (FIN or RST).
    Closed(RecordHeader),
}

pub struct Assembler {
    pending: HashMap<FlowId, Pending>,
    max_flows: usize,
    max_bytes: usize,
    /// Pending headers dropped because a bound was reached (reported in stats).
    pub dropped: u64,
}

impl Assembler {
    pub fn new(max_flows: usize, max_bytes: usize) -> Self {
        Self {
            pending: HashMap::new(),
            max_flows,
            max_bytes,
            dropped: 0,
        }
    }

    pub fn push(&mut self, rec: Record) -> Vec<Output> {
        let h = rec.header;
        let id = (h.key, h.generation);
        if h.kind == RECORD_CLOSE {
            if self.pending.remove(&id).is_some() {
                self.dropped += 1;
            }
            return vec![Output::Closed(h)];
        }
        let mut outputs = Vec::new();
        let (header, bytes) = match self.pending.remove(&id) {
            Some(mut p) if h.kind == RECORD_CONTINUATION && p.next_seq == h.seq => {
                p.bytes.extend_from_slice(&rec.payload);
                (p.header, p.bytes.freeze())
            }
            Some(_) => {
                // The continuation never came in order: the cut header is lost.
                self.dropped += 1;
                (h, rec.payload.clone())
            }
            None => (h, rec.payload.clone()),
        };
        let block = http::parse_block(&bytes);
        // A cut last line may be an auth header (or its name) that the next segment completes.
        let cut = if block.ended {
            None
        } else {
            block.partial_tail
        };
        let HeaderBlock { start, auth, .. } = block;
        for a in auth.into_iter().filter(|a| a.complete) {
            outputs.push(Output::Message(Message {
                record: header,
                start: start.clone(),
                auth: a,
            }));
        }
        if let Some(offset) = cut {
            self.hold(
                id,
                header,
                h.seq.wrapping_add(h.payload_len),
                bytes.slice(offset..),
            );
        }
        outputs
    }

    fn hold(&mut self, id: FlowId, header: RecordHeader, next_seq: u32, tail: Bytes) {
        if tail.len() > self.max_bytes || self.pending.len() >= self.max_flows {
            self.dropped += 1;
            return;
        }
        self.pending.insert(
            id,
            Pending {
                header,
                next_seq,
                bytes: BytesMut::from(&tail[..]),
            },
        );
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tracker_common::RECORD_MESSAGE;

    fn rec(kind: u8, seq: u32, payload: &[u8]) -> Record {
        Record {
            header: RecordHeader {
                kind,
                seq,
                generation: 9,
                payload_len: payload.len() as u32,
                captured_len: payload.len() as u16,
                ..Default::default()
            },
            payload: Bytes::copy_from_slice(payload),
        }
    }

    #[test]
    fn joins_a_header_split_over_two_segments() {
        let mut a = Assembler::new(16, 8192);
        let first = b"GET / HTTP/1.1\r\nAuthorization: NTLM TlRMTVNT";
        assert!(a.push(rec(RECORD_MESSAGE, 100, first)).is_empty());
        assert_eq!(a.pending(), 1);
        let out = a.push(rec(
            RECORD_CONTINUATION,
            100 + first.len() as u32,
            b"UAAB\r\n\r\n",
        ));
        let [Output::Message(m)] = &out[..] else {
            panic!("{out:?}")
        };
        assert_eq!(m.auth.token, "TlRMTVNTUAAB");
        assert_eq!(m.record.seq, 100);
        assert_eq!(a.pending(), 0);
    }

    #[test]
    fn joins_a_header_name_split_over_two_segments() {
        let mut a = Assembler::new(16, 8192);
        let first = b"GET / HTTP/1.1\r\nAuthoriz";
        assert!(a.push(rec(RECORD_MESSAGE, 1, first)).is_empty());
        let out = a.push(rec(
            RECORD_CONTINUATION,
            1 + first.len() as u32,
            b"ation: Negotiate YIIB\r\n",
        ));
        assert!(matches!(&out[..], [Output::Message(m)] if m.auth.token == "YIIB"));
    }

    #[test]
    fn out_of_order_continuation_counts_a_loss_and_bounds_hold() {
        let mut a = Assembler::new(1, 8192);
        a.push(rec(RECORD_MESSAGE, 1, b"Authorization: NTLM abc"));
        a.push(rec(RECORD_CONTINUATION, 999, b"def\r\n"));
        assert_eq!(a.dropped, 1);
        let mut small = Assembler::new(16, 4);
        small.push(rec(RECORD_MESSAGE, 1, b"Authorization: NTLM abcdef"));
        assert_eq!((small.pending(), small.dropped), (0, 1));
    }
}
