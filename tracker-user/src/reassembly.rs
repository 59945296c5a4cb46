//! Segment reassembly per flow direction and generation, by TCP sequence, for the segments the
//! kernel delivers (only some of a connection's segments: heads, auth headers and the segments
//! that continue a cut auth header). Retransmissions are dropped, overlaps trimmed, a few
//! out-of-order segments held, gaps counted; bounded per stream and in total, evictions counted.
//! Output: complete HTTP heads (pipelined ones too) and connection closes.

use tracker_common::{FlowKey, RECORD_CLOSE, RecordHeader};

use zeroize::Zeroize;

use crate::{
    hashing::{self, KeyedLru},
    http::{self, Head, Parse},
    record::Record,
};

/// One use of one 5-tuple in one direction.
pub type StreamId = (FlowKey, u64);

/// What reassembly yields.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // moved once per head; boxing would allocate per head
pub enum Piece {
    /// A complete head; `rec` is the record of the segment where it began (its `seq` is the
    /// head's first byte).
    Head { rec: RecordHeader, head: Head },
    /// FIN or RST of a flow that carried NTLM.
    Close(RecordHeader),
}

/// Bounds of the reassembler.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Streams held at once.
    pub max_streams: usize,
    /// Bytes buffered for one unfinished head.
    pub max_stream_bytes: usize,
    /// Bytes buffered over all streams.
    pub max_total_bytes: usize,
    /// Out-of-order segments held per stream while waiting for a missing one.
    pub max_out_of_order: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_streams: 262_144,
            max_stream_bytes: 64 * 1024,
            max_total_bytes: 64 << 20,
            max_out_of_order: 8,
        }
    }
}

/// Counters (reported in stats and in the replay summary).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Stats {
    pub segments: u64,
    pub heads: u64,
    pub retransmissions: u64,
    pub overlaps_trimmed: u64,
    pub out_of_order: u64,
    /// Unfinished heads given up because a segment never came.
    pub gaps: u64,
    /// Heads cut by the capture length (only their complete lines were read).
    pub truncated_heads: u64,
    /// Segments that began neither a head nor a continuation (body bytes, garbage).
    pub not_http: u64,
    pub oversize: u64,
    pub evicted_streams: u64,
    pub bytes_limit_drops: u64,
}

#[derive(Default)]
struct Stream {
    /// Bytes of `buf` already searched for the blank line ending a head: a head that arrives
    /// in many segments is searched once, not once per segment.
    searched: usize,
    /// Sequence number after the last byte consumed.
    next_seq: Option<u32>,
    /// Unfinished head bytes; `buf_rec` is the record where they began.
    buf: Vec<u8>,
    buf_rec: Option<RecordHeader>,
    /// Body bytes to skip up to this sequence number.
    body_until: Option<u32>,
    ooo: Vec<Record>,
    last_ns: u64,
}

pub struct Reassembler {
    /// Least recently fed first: eviction and expiry take from that end in O(1).
    streams: KeyedLru<StreamId, Stream>,
    core: Core,
}

/// Everything but the streams, so a stream can be borrowed from its table while the rules
/// run (no remove and re-insert per record).
struct Core {
    limits: Limits,
    opts: http::Options,
    /// Bytes buffered over all streams: unfinished heads and held out-of-order segments.
    total_bytes: usize,
    stats: Stats,
}

/// `a` is before `b` in sequence space.
fn seq_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

impl Reassembler {
    pub fn new(limits: Limits, opts: http::Options) -> Self {
        Self {
            streams: hashing::lru(),
            core: Core {
                limits,
                opts,
                total_bytes: 0,
                stats: Stats::default(),
            },
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.core.stats
    }

    pub fn streams(&self) -> usize {
        self.streams.len()
    }

    pub fn buffered_bytes(&self) -> usize {
        self.core.total_bytes
    }

    /// Feeds one kernel record; complete heads and closes are appended to `out`.
    pub fn push(&mut self, rec: Record, out: &mut Vec<Piece>) {
        self.push_ref(rec.header, &rec.payload, out);
    }

    /// [`Reassembler::push`] of a record read in place (the ring buffer's bytes): they are
    /// copied only when they must wait (an unfinished head, an out-of-order segment).
    pub fn push_ref(&mut self, h: RecordHeader, payload: &[u8], out: &mut Vec<Piece>) {
        if h.kind == RECORD_CLOSE {
            if let Some(s) = self.streams.pop(&(h.key, h.generation)) {
                self.core.end(&s);
            }
            out.push(Piece::Close(h));
            return;
        }
        self.core.stats.segments += 1;
        let id = (h.key, h.generation);
        if !self.streams.contains(&id) && self.streams.len() >= self.core.limits.max_streams {
            self.evict_one();
        }
        let st = self.streams.get_or_insert_mut(id, Stream::default);
        st.last_ns = h.timestamp_ns;
        let core = &mut self.core;
        core.segment(st, h, payload, out);
        // Drain out-of-order segments that are now in order.
        while let Some(i) = st
            .ooo
            .iter()
            .position(|r| Some(r.header.seq) == st.next_seq || st.buf.is_empty())
        {
            let r = st.ooo.swap_remove(i);
            core.total_bytes = core.total_bytes.saturating_sub(r.payload.len());
            core.segment(st, r.header, &r.payload, out);
        }
    }

    fn evict_one(&mut self) {
        // The stream fed least recently goes.
        if let Some((_, s)) = self.streams.pop_lru() {
            self.core.release(&s);
            self.core.stats.evicted_streams += 1;
        }
    }

    /// Forgets streams idle for longer than `idle_ns` (their unfinished heads count as gaps):
    /// from the least recently fed end, so only the expired ones are visited.
    pub fn expire(&mut self, now_ns: u64, idle_ns: u64) {
        while let Some((_, s)) = self.streams.peek_lru()
            && now_ns.saturating_sub(s.last_ns) > idle_ns
        {
            if let Some((_, s)) = self.streams.pop_lru() {
                self.core.end(&s);
            }
        }
    }
}

impl Core {
    /// A stream leaves: its buffered bytes no longer count.
    fn release(&mut self, s: &Stream) {
        self.total_bytes = self
            .total_bytes
            .saturating_sub(s.buf.len() + s.held_bytes());
    }

    /// A stream ends (closed or idle): released, its unfinished head a gap.
    fn end(&mut self, s: &Stream) {
        if !s.buf.is_empty() {
            self.stats.gaps += 1;
        }
        self.release(s);
    }

    /// One record into its stream. The TCP rules apply in this order — retransmission,
    /// overlap trim, out-of-order hold, known body skip, size limits — and each may end the
    /// segment early, so they stay in one body rather than passing the half-trimmed state
    /// between helpers.
    fn segment(&mut self, st: &mut Stream, h: RecordHeader, payload: &[u8], out: &mut Vec<Piece>) {
        let mut data: &[u8] = payload;
        let mut seq = h.seq;
        let full_len = h.payload_len.max(data.len() as u32);
        let end = seq.wrapping_add(full_len);
        if let Some(next) = st.next_seq {
            if !seq_lt(next, end) && full_len > 0 {
                // Everything in it was seen already.
                self.stats.retransmissions += 1;
                return;
            }
            if seq_lt(seq, next) {
                let skip = next.wrapping_sub(seq) as usize;
                self.stats.overlaps_trimmed += 1;
                data = data.get(skip..).unwrap_or(&[]);
                seq = next;
            } else if seq_lt(next, seq) && !st.buf.is_empty() {
                // A missing segment before this one: hold it a little.
                if st.ooo.len() < self.limits.max_out_of_order
                    && self.total_bytes + payload.len() <= self.limits.max_total_bytes
                {
                    self.stats.out_of_order += 1;
                    self.total_bytes += payload.len();
                    // Held: the only copy of a record's bytes the stream keeps (wiped on drop).
                    st.ooo.push(Record {
                        header: h,
                        payload: bytes::Bytes::copy_from_slice(payload),
                    });
                    return;
                }
                self.give_up(st);
                self.total_bytes = self.total_bytes.saturating_sub(st.held_bytes());
                let mut held = std::mem::take(&mut st.ooo);
                held.sort_by(|a, b| {
                    let d = a.header.seq.wrapping_sub(b.header.seq) as i32;
                    d.cmp(&0)
                });
                st.next_seq = None;
                for r in held {
                    self.segment(st, r.header, &r.payload, out);
                }
                // This segment may be older than the held ones now.
                if let Some(next) = st.next_seq
                    && !seq_lt(next, end)
                {
                    self.stats.retransmissions += 1;
                    return;
                }
            }
        }
        // Body bytes of an earlier head.
        if let Some(until) = st.body_until {
            if seq_lt(seq, until) {
                let skip = until.wrapping_sub(seq) as usize;
                if skip >= data.len() {
                    st.next_seq = Some(end);
                    if !seq_lt(end, until) {
                        st.body_until = None;
                    }
                    return;
                }
                data = &data[skip..];
                seq = until;
            }
            st.body_until = None;
        }
        let truncated = (data.len() as u32) < end.wrapping_sub(seq);
        st.next_seq = Some(end);
        if st.buf.is_empty() {
            // The common case: heads read straight from the record; only an unfinished
            // head's bytes are copied into the stream.
            st.buf_rec = Some(RecordHeader { seq, ..h });
            let (consumed, partial) = self.drain(st, data, truncated, out);
            let mut rest = Vec::new();
            if consumed < data.len() {
                append_wiped(&mut rest, &data[consumed..]);
            }
            self.keep(st, rest, consumed, partial, end, false);
            return;
        }
        let mut buf = std::mem::take(&mut st.buf);
        append_wiped(&mut buf, data);
        self.total_bytes += data.len();
        let (consumed, partial) = self.drain(st, &buf, truncated, out);
        self.total_bytes = self.total_bytes.saturating_sub(buf.len());
        // The unread bytes move to the front of the same buffer: a head growing by small
        // segments is never copied whole per segment.
        if consumed > 0 {
            let n = buf.len() - consumed;
            buf.copy_within(consumed.., 0);
            buf[n..].zeroize();
            buf.truncate(n);
        }
        self.keep(st, buf, consumed, partial, end, true);
    }

    /// Keeps `rest`, what is left of an unfinished head after `consumed` bytes, as the stream's
    /// buffer, within the stream and total limits (else the head is given up — a gap when
    /// earlier bytes of it were `buffered` — and the stream goes on at `end`).
    fn keep(
        &mut self,
        st: &mut Stream,
        mut rest: Vec<u8>,
        consumed: usize,
        partial: bool,
        end: u32,
        buffered: bool,
    ) {
        if rest.is_empty() {
            // Heads are mostly read from one record: an idle stream holds no buffer.
            rest.zeroize();
            st.forget_head();
            return;
        }
        let over_stream = rest.len() > self.limits.max_stream_bytes;
        if over_stream || self.total_bytes + rest.len() > self.limits.max_total_bytes {
            if over_stream {
                self.stats.oversize += 1;
            } else {
                self.stats.bytes_limit_drops += 1;
            }
            self.stats.gaps += u64::from(buffered);
            rest.zeroize();
            st.forget_head();
            st.next_seq = Some(end);
            return;
        }
        self.total_bytes += rest.len();
        if let Some(r) = st.buf_rec.as_mut() {
            r.seq = r.seq.wrapping_add(consumed as u32);
        }
        // A head that still needs bytes, judged HTTP from its first ones: what is buffered
        // holds no end of it. (Fewer than eight bytes may not have been judged yet.)
        st.searched = if partial && rest.len() >= 8 {
            rest.len()
        } else {
            0
        };
        st.buf = rest;
    }

    /// Emits every complete head at the start of `buf` (the stream's unfinished head and
    /// this segment), skipping bodies of known length so pipelined heads are found. Returns
    /// the bytes consumed and whether what is left is an unfinished head. One loop over one
    /// `consumed` cursor: the three parse outcomes each move it differently.
    fn drain(
        &mut self,
        st: &mut Stream,
        buf: &[u8],
        truncated: bool,
        out: &mut Vec<Piece>,
    ) -> (usize, bool) {
        let mut consumed = 0usize;
        let mut partial = false;
        loop {
            let rest = &buf[consumed..];
            if rest.is_empty() {
                break;
            }
            // The unfinished head at the front was searched before: only the new bytes (and
            // the three before them, for a blank line cut by the segment) can end it.
            if consumed == 0
                && st.searched > 0
                && !truncated
                && http::head_end(&buf[st.searched.saturating_sub(3)..]).is_none()
            {
                partial = true;
                break;
            }
            match http::parse(rest, &self.opts) {
                Parse::Complete(head) => {
                    self.stats.heads += 1;
                    let base = st.buf_rec.unwrap_or_default();
                    let rec = RecordHeader {
                        seq: base.seq.wrapping_add(consumed as u32),
                        ..base
                    };
                    consumed += head.len;
                    // Skip a body whose length is known (pipelined heads may follow).
                    let body = if head.chunked {
                        0
                    } else {
                        head.content_length.unwrap_or(0)
                    };
                    let bodyless = head
                        .status()
                        .is_some_and(|s| s == 204 || s == 304 || s < 200);
                    if !bodyless && body > 0 {
                        let avail = (buf.len() - consumed) as u64;
                        if body <= avail {
                            consumed += body as usize;
                        } else {
                            let start = base.seq.wrapping_add(consumed as u32);
                            st.body_until =
                                Some(start.wrapping_add(body.min(u64::from(u32::MAX / 2)) as u32));
                            consumed = buf.len();
                        }
                    }
                    out.push(Piece::Head { rec, head });
                    if head_chunked_tail(&buf[consumed..]) {
                        consumed = buf.len();
                    }
                }
                Parse::Partial => {
                    if truncated {
                        // The rest of this segment was not copied: read what is there.
                        if let Some(head) = http::parse_truncated(rest, &self.opts) {
                            self.stats.truncated_heads += 1;
                            let base = st.buf_rec.unwrap_or_default();
                            let rec = RecordHeader {
                                seq: base.seq.wrapping_add(consumed as u32),
                                ..base
                            };
                            out.push(Piece::Head { rec, head });
                        }
                        consumed = buf.len();
                    } else {
                        partial = true;
                    }
                    break;
                }
                Parse::NotHttp => {
                    self.stats.not_http += 1;
                    consumed = buf.len();
                    break;
                }
            }
        }
        (consumed, partial)
    }

    fn give_up(&mut self, st: &mut Stream) {
        if !st.buf.is_empty() {
            self.stats.gaps += 1;
            self.total_bytes = self.total_bytes.saturating_sub(st.buf.len());
            st.forget_head();
        }
    }
}

/// An unfinished head may hold a Type-3 token: its bytes are overwritten whenever the stream
/// lets them go (here, when it grows the buffer, and on drop), never left in a freed block.
fn append_wiped(buf: &mut Vec<u8>, data: &[u8]) {
    if buf.capacity() - buf.len() < data.len() {
        let mut grown = Vec::with_capacity((buf.len() + data.len()).next_power_of_two());
        grown.extend_from_slice(buf);
        buf.zeroize();
        *buf = grown;
    }
    buf.extend_from_slice(data);
}

impl Stream {
    /// Bytes of the held out-of-order segments.
    fn held_bytes(&self) -> usize {
        self.ooo.iter().map(|r| r.payload.len()).sum()
    }

    /// Forgets the unfinished head: its bytes wiped, its buffer released.
    fn forget_head(&mut self) {
        self.buf.zeroize();
        self.buf = Vec::new();
        self.buf_rec = None;
        self.searched = 0;
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.buf.zeroize();
    }
}

/// After a chunked body's first bytes there is no reliable way to find the next head in a
/// sparse capture: whatever follows a head in the same segment that is not itself a head is
/// dropped.
fn head_chunked_tail(rest: &[u8]) -> bool {
    !rest.is_empty() && !http::starts_like_http(rest)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use bytes::Bytes;
    use tracker_common::{RECORD_CONTINUATION, RECORD_MESSAGE};

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

    fn heads(out: &[Piece]) -> Vec<&Head> {
        out.iter()
            .filter_map(|p| match p {
                Piece::Head { head, .. } => Some(head),
                Piece::Close(_) => None,
            })
            .collect()
    }

    #[test]
    fn joins_a_header_split_over_two_segments_and_drops_retransmissions() {
        let mut r = Reassembler::new(Limits::default(), http::Options::default());
        let mut out = Vec::new();
        let first = b"GET / HTTP/1.1\r\nAuthorization: NTLM TlRMTVNT";
        r.push(rec(RECORD_MESSAGE, 100, first), &mut out);
        assert!(out.is_empty());
        r.push(
            rec(
                RECORD_CONTINUATION,
                100 + first.len() as u32,
                b"UAAB\r\n\r\n",
            ),
            &mut out,
        );
        let h = heads(&out);
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].auth[0].value, "NTLM TlRMTVNTUAAB");
        // The same two segments again: nothing new.
        r.push(rec(RECORD_MESSAGE, 100, first), &mut out);
        r.push(
            rec(
                RECORD_CONTINUATION,
                100 + first.len() as u32,
                b"UAAB\r\n\r\n",
            ),
            &mut out,
        );
        assert_eq!(heads(&out).len(), 1);
        assert_eq!(r.stats().retransmissions, 2);
    }

    #[test]
    fn out_of_order_overlap_and_pipelining() {
        let mut r = Reassembler::new(Limits::default(), http::Options::default());
        let mut out = Vec::new();
        let a = b"GET /a HTTP/1.1\r\nAuthoriz";
        let b = b"ation: NTLM abc\r\n";
        let c = b"\r\nGET /b HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyzGET /c HTTP/1.1\r\n\r\n";
        let s0 = 1000u32;
        let s1 = s0 + a.len() as u32;
        let s2 = s1 + b.len() as u32;
        r.push(rec(RECORD_MESSAGE, s0, a), &mut out);
        r.push(rec(RECORD_CONTINUATION, s2, c), &mut out); // early
        assert!(out.is_empty());
        // Overlapping retransmission of the tail of `a` with `b`.
        let mut ab = a[a.len() - 3..].to_vec();
        ab.extend_from_slice(b);
        r.push(rec(RECORD_CONTINUATION, s1 - 3, &ab), &mut out);
        let h = heads(&out);
        assert_eq!(h.len(), 3, "{out:?}");
        assert_eq!(h[0].auth.len(), 1);
        assert!(
            matches!(&h[2].start, Some(http::StartLine::Request { target, .. }) if target == "/c")
        );
        assert_eq!((r.stats().out_of_order, r.stats().overlaps_trimmed), (1, 1));
    }

    #[test]
    fn gaps_garbage_and_bounds_are_counted() {
        let limits = Limits {
            max_out_of_order: 1,
            max_stream_bytes: 64,
            max_streams: 1,
            ..Limits::default()
        };
        let mut r = Reassembler::new(limits, http::Options::default());
        let mut out = Vec::new();
        r.push(
            rec(
                RECORD_MESSAGE,
                1,
                b"GET / HTTP/1.1\r\nAuthorization: NTLM a",
            ),
            &mut out,
        );
        r.push(rec(RECORD_CONTINUATION, 500, b"zzz"), &mut out);
        r.push(
            rec(RECORD_CONTINUATION, 900, b"\x00\x01\x02garbage\r\n"),
            &mut out,
        );
        assert!(
            r.stats().gaps >= 1 && r.stats().not_http >= 1,
            "{:?}",
            r.stats()
        );
        r.push(rec(RECORD_MESSAGE, 2000, &[b'A'; 100]), &mut out);
        assert!(r.stats().oversize + r.stats().not_http >= 2);
        let mut other = rec(RECORD_MESSAGE, 1, b"GET / HTTP/1.1\r\n\r\n");
        other.header.generation = 10;
        r.push(other, &mut out);
        assert_eq!(r.stats().evicted_streams, 1);
        assert_eq!(heads(&out).len(), 1);
    }

    #[test]
    fn truncated_capture_reads_complete_lines() {
        let mut r = Reassembler::new(Limits::default(), http::Options::default());
        let mut out = Vec::new();
        let mut x = rec(
            RECORD_MESSAGE,
            1,
            b"GET / HTTP/1.1\r\nAuthorization: NTLM TlRMTVNTUAAB\r\nX-Pad: aaaa",
        );
        x.header.payload_len = 9000;
        r.push(x, &mut out);
        let h = heads(&out);
        assert_eq!(h.len(), 1);
        assert!(h[0].truncated);
        assert_eq!(h[0].auth.len(), 1);
    }

    /// Time of feeding a head of `len` bytes one byte per segment, then many streams past
    /// the stream bound (eviction), best of three.
    fn feed_time(len: usize, streams: usize) -> std::time::Duration {
        let limits = Limits {
            max_streams: streams / 10,
            ..Limits::default()
        };
        (0..3)
            .map(|_| {
                let mut r = Reassembler::new(limits.clone(), http::Options::default());
                let mut out = Vec::new();
                let t = std::time::Instant::now();
                let mut head = b"GET / HTTP/1.1\r\n".to_vec();
                head.resize(len, b'a');
                head.extend_from_slice(b"\r\n\r\n");
                for (i, b) in head.iter().enumerate() {
                    r.push(rec(RECORD_CONTINUATION, 1 + i as u32, &[*b]), &mut out);
                }
                assert_eq!(heads(&out).len(), 1);
                for g in 0..streams {
                    let mut x = rec(RECORD_MESSAGE, 1, b"GET / HTTP/1.1\r\nX-A: b");
                    x.header.generation = 100 + g as u64;
                    r.push(x, &mut out);
                }
                assert_eq!(
                    r.stats().evicted_streams as usize,
                    streams + 1 - streams / 10
                );
                t.elapsed()
            })
            .min()
            .unwrap_or_default()
    }

    #[test]
    fn long_heads_and_many_streams_cost_linear_time() {
        // Ten times the bytes and streams: about ten times the time. A head searched again
        // from its start on every segment, or an eviction that scans every stream, makes it
        // about a hundred.
        let small = feed_time(5_000, 5_000);
        let large = feed_time(50_000, 50_000);
        let ratio = large.as_secs_f64() / small.as_secs_f64().max(1e-9);
        assert!(ratio < 35.0, "{small:?} -> {large:?}: {ratio:.0}x");
    }

    #[test]
    fn held_out_of_order_bytes_count_against_the_budget() {
        let limits = Limits {
            max_total_bytes: 100,
            ..Limits::default()
        };
        let mut r = Reassembler::new(limits, http::Options::default());
        let mut out = Vec::new();
        r.push(
            rec(
                RECORD_MESSAGE,
                1,
                b"GET / HTTP/1.1\r\nAuthorization: NTLM a",
            ),
            &mut out,
        );
        let base = r.buffered_bytes();
        r.push(rec(RECORD_CONTINUATION, 500, &[b'z'; 40]), &mut out);
        assert_eq!(r.buffered_bytes(), base + 40);
        // Beyond the budget a segment is not held: the gap is given up instead.
        r.push(rec(RECORD_CONTINUATION, 900, &[b'z'; 40]), &mut out);
        assert!(r.buffered_bytes() <= 100, "{}", r.buffered_bytes());
        assert!(r.stats().gaps >= 1);
        r.expire(u64::MAX, 0);
        assert_eq!((r.streams(), r.buffered_bytes()), (0, 0));
    }
}
