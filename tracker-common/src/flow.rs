//! The per-segment decisions of the kernel programs on one direction of a tracked TCP flow:
//! when a flow entry is made and for which direction, when its close is reported, when a segment continues a cut auth
//! header, which record a segment becomes, and when a request on an authenticated connection
//! passes the identity check. Shared by the eBPF programs and replay's kernel model, so both
//! count and decide the same way (docs/design.md, "One rule set"). The drivers own the maps;
//! these functions only read and change one [`FlowState`] and count through [`Counters`].

use crate::{
    AuthFlow, CAPTURE_MAX, FLOW_CAPTURING, FLOW_CLOSED, FLOW_NTLM_SEEN, FLOW_OPEN, FlowState,
    RECORD_CONTINUATION, RECORD_HTTP, RECORD_MESSAGE, identity, scan::Found, scan::HEAD_NONE,
    scan::HEAD_RESPONSE, stat, tcp,
};

/// Where the `STATS` counters go: a per-CPU array in the kernel, an array in the model.
pub trait Counters {
    fn count(&mut self, idx: u32);
}

impl Counters for [u64; stat::COUNT as usize] {
    #[inline]
    fn count(&mut self, idx: u32) {
        if let Some(c) = self.get_mut(idx as usize) {
            *c += 1;
        }
    }
}

/// Whether a segment with these TCP flags ends any entry of its flow: a SYN starts a new use
/// of the 5-tuple (a new generation), which must not inherit the old connection's state.
#[inline(always)]
pub fn opens_generation(tcp_flags: u8) -> bool {
    tcp_flags & tcp::SYN != 0
}

/// Whether a flow direction without an entry gets one with this segment: it carries an auth
/// header, or the start of a header name cut at its end. Nothing else takes table space, so
/// SYNs, ACKs and plain HTTP — a flood of spoofed 5-tuples included — cannot evict the
/// entries of real handshakes (docs/design.md, "Flow entries").
#[inline(always)]
pub fn creates_entry(found: &Found) -> bool {
    found.matched || found.partial_name_at_end
}

/// Whether state with these flags is a flow's entry, not the blank state a flow without one
/// is scanned with (no flag set): every entry is `FLOW_OPEN`.
#[inline(always)]
pub fn has_entry(flags: u32) -> bool {
    flags & FLOW_OPEN != 0
}

/// A new entry at `now`, which becomes its generation (one use of the 5-tuple).
#[inline(always)]
pub fn new_flow<C: Counters>(stats: &mut C, now: u64, flags: u32) -> FlowState {
    stats.count(stat::FLOWS_CREATED);
    FlowState {
        generation: now,
        flags: FLOW_OPEN | flags,
        ..FlowState::default()
    }
}

/// The other direction of a connection whose first auth header this segment carries: marked
/// as having carried NTLM, so its heads are delivered too (the 200 answering a Type-3 has no
/// auth header). Returns the entry to insert when that direction has none yet, with this
/// direction's `generation`.
#[inline(always)]
pub fn mark_reverse<C: Counters>(
    stats: &mut C,
    reverse: Option<&mut FlowState>,
    generation: u64,
) -> Option<FlowState> {
    match reverse {
        Some(r) => {
            r.flags |= FLOW_NTLM_SEEN;
            None
        }
        None => Some(new_flow(stats, generation, FLOW_NTLM_SEEN)),
    }
}

/// Notes a FIN or RST; true when a close record is due: once per direction (FIN retransmits
/// and the RST after a FIN are not), and only on a flow that carried NTLM.
#[inline(always)]
pub fn close<C: Counters>(stats: &mut C, state: &mut FlowState, tcp_flags: u8) -> bool {
    if tcp_flags & (tcp::FIN | tcp::RST) == 0 {
        return false;
    }
    let first_close = state.flags & FLOW_CLOSED == 0;
    state.flags |= FLOW_CLOSED;
    if first_close && state.flags & FLOW_NTLM_SEEN != 0 {
        stats.count(stat::CLOSES);
        return true;
    }
    false
}

/// How many payload bytes one record copies: at most the configured capture length, and
/// never more than `CAPTURE_MAX`.
#[inline(always)]
pub fn copy_len<C: Counters>(stats: &mut C, payload_len: u32, capture_len: u32) -> u32 {
    let max = if capture_len < CAPTURE_MAX as u32 {
        capture_len
    } else {
        CAPTURE_MAX as u32
    };
    if payload_len > max {
        stats.count(stat::CAPTURE_TRUNCATED);
        return max;
    }
    payload_len
}

/// Whether the segment at `seq` lies inside the flow's capture window (it continues an auth
/// header cut at the end of an earlier segment); the window closes once a segment reaches
/// its end or one arrives outside it.
#[inline(always)]
pub fn continues_capture(state: &mut FlowState, seq: u32, payload_len: u32) -> bool {
    if state.flags & FLOW_CAPTURING == 0 {
        return false;
    }
    let rel = seq.wrapping_sub(state.capture_from);
    let window = state.capture_until.wrapping_sub(state.capture_from);
    let continuation = rel < window;
    let end = seq.wrapping_add(payload_len);
    if !continuation || end.wrapping_sub(state.capture_from) >= window {
        state.flags &= !FLOW_CAPTURING;
    }
    continuation
}

/// Notes an auth header found in the segment; true when it is the flow's first, so the
/// driver marks the reverse direction as having carried NTLM too (its heads matter).
#[inline(always)]
pub fn on_message<C: Counters>(stats: &mut C, state: &mut FlowState, found: &Found) -> bool {
    if !found.matched {
        return false;
    }
    stats.count(stat::MATCHED);
    let first = state.flags & FLOW_NTLM_SEEN == 0;
    state.flags |= FLOW_NTLM_SEEN;
    first
}

/// Bytes of a segment's start that [`plain_response`] reads.
pub const STATUS_LINE_BYTES: usize = 12;

/// Whether a segment passes without a copy or a scan: it starts a response (`HTTP/1.x NNN`)
/// whose status cannot offer or answer NTLM/Negotiate (not 401, not 407), on a flow direction
/// with no NTLM/Negotiate state and no capture in progress. Everything such a response could
/// carry that matters follows a request that set the state: the answer to a Type-3 or to a
/// Negotiate request (mutual-auth token, `Persistent-Auth`) is on a flow marked by its request.
/// docs/design.md, "The fast path", says what this cannot see. `from_tracked_port`: the
/// source port is a tracked one (a server's or a frontend's), so the segment can be a
/// response at all; requests never pay for the look at their start.
#[inline(always)]
pub fn plain_response(
    state: &FlowState,
    from_tracked_port: bool,
    payload_len: u32,
    start: impl FnOnce() -> Option<[u8; STATUS_LINE_BYTES]>,
) -> bool {
    if !from_tracked_port
        || state.flags & (FLOW_NTLM_SEEN | FLOW_CAPTURING) != 0
        || payload_len < STATUS_LINE_BYTES as u32
    {
        return false;
    }
    let Some(s) = start() else {
        return false;
    };
    let http = s[0] == b'H'
        && s[1] == b'T'
        && s[2] == b'T'
        && s[3] == b'P'
        && s[4] == b'/'
        && s[5] == b'1'
        && s[6] == b'.'
        && s[8] == b' ';
    let auth_status = s[9] == b'4' && s[10] == b'0' && (s[11] == b'1' || s[11] == b'7');
    http && !auth_status
}

/// Whether the segment's start line matters: on a connection that carried NTLM, every
/// request/response head does (the status answering a Type-3, and each later request on a
/// possibly authenticated connection), except inside a capture window.
#[inline(always)]
pub fn wants_head(ntlm_before: bool, continuation: bool) -> bool {
    ntlm_before && !continuation
}

/// The kernel's identity check of a request head on an authenticated connection: the whole
/// head is in this segment and its last `X-Forwarded-For` hashes to the identity that
/// authenticated the same generation of the connection. `hash` computes the keyed hash of
/// the value (offset, length), only when everything else holds.
#[inline(always)]
pub fn same_identity(
    auth: &AuthFlow,
    generation: u64,
    found: &Found,
    hash: impl FnOnce(u32, u32) -> u64,
) -> bool {
    auth.generation == generation
        && found.ended
        && found.xff_len > 0
        && found.xff_len <= identity::MAX_LEN as u32
        && hash(found.xff_off, found.xff_len) == auth.identity
}

/// The identity check of one head on an authenticated connection; true when it passes
/// without a record. `auth` looks up the connection's `AUTH_FLOWS` entry, keyed by the
/// request direction: the flow's own for a request, the reverse one for a response (called
/// only when the entry decides something). A request of the
/// authenticating client passes and leaves its response pending; that response passes too
/// (unless it re-challenges), so userspace keeps requests and responses paired. Anything
/// else (another or no identity, a cut head, credentials) is delivered and userspace decides.
#[inline(always)]
pub fn authenticated_pass<'a, C: Counters>(
    stats: &mut C,
    auth: impl FnOnce() -> Option<&'a mut AuthFlow>,
    head: u8,
    generation: u64,
    found: &Found,
    hash: impl FnOnce(u32, u32) -> u64,
) -> bool {
    if head == HEAD_RESPONSE {
        let Some(a) = auth() else {
            return false;
        };
        if a.suppressed == 0 {
            return false;
        }
        a.suppressed -= 1;
        // A response with an auth header (a re-challenge) is always delivered.
        if found.matched {
            return false;
        }
        stats.count(stat::RESPONSES_SUPPRESSED);
        return true;
    }
    // A request with credentials is a message: always delivered.
    if found.matched {
        return false;
    }
    let Some(a) = auth() else {
        return false;
    };
    if !same_identity(a, generation, found, hash) {
        stats.count(stat::IDENTITY_MISMATCH);
        return false;
    }
    stats.count(stat::IDENTITY_MATCH);
    a.suppressed += 1;
    true
}

/// The record a scanned segment becomes (`RECORD_*`), or 0 for none. A cut header name is
/// sent too: the daemon joins it with the segment that follows.
#[inline(always)]
pub fn record_kind<C: Counters>(
    stats: &mut C,
    continuation: bool,
    found: &Found,
    head: u8,
    passed_silently: bool,
) -> u8 {
    if continuation {
        stats.count(stat::CONTINUATIONS);
        return RECORD_CONTINUATION;
    }
    if found.matched || found.partial_name_at_end {
        return RECORD_MESSAGE;
    }
    if head != HEAD_NONE && !passed_silently {
        stats.count(stat::HTTP_HEADS);
        return RECORD_HTTP;
    }
    0
}

/// After the record: when the auth header (or its name) runs past this segment, the flow
/// copies what follows, by sequence, for `continuation_bytes`.
#[inline(always)]
pub fn start_capture(
    state: &mut FlowState,
    found: &Found,
    seq: u32,
    payload_len: u32,
    continuation_bytes: u32,
) {
    if (found.matched && !found.line_complete) || found.partial_name_at_end {
        let next = seq.wrapping_add(payload_len);
        state.flags |= FLOW_CAPTURING;
        state.capture_from = next;
        state.capture_until = next.wrapping_add(continuation_bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Stats = [u64; stat::COUNT as usize];

    #[test]
    fn a_close_is_reported_once_and_only_after_ntlm() {
        let mut s: Stats = [0; stat::COUNT as usize];
        let mut st = new_flow(&mut s, 5, 0);
        assert_eq!((st.flags, st.generation), (FLOW_OPEN, 5));
        assert!(!close(&mut s, &mut st, tcp::FIN));
        let mut st = new_flow(&mut s, 6, FLOW_NTLM_SEEN);
        assert!(close(&mut s, &mut st, tcp::FIN | tcp::ACK));
        assert!(!close(&mut s, &mut st, tcp::RST));
        assert_eq!(
            (s[stat::CLOSES as usize], s[stat::FLOWS_CREATED as usize]),
            (1, 2)
        );
    }

    #[test]
    fn only_auth_headers_make_entries_and_mark_the_other_direction() {
        let mut s: Stats = [0; stat::COUNT as usize];
        assert!(!creates_entry(&Found::default()));
        for found in [
            Found {
                matched: true,
                ..Found::default()
            },
            Found {
                partial_name_at_end: true,
                ..Found::default()
            },
        ] {
            assert!(creates_entry(&found));
        }
        let mut other = new_flow(&mut s, 1, 0);
        assert_eq!(mark_reverse(&mut s, Some(&mut other), 9), None);
        assert_eq!(other.flags, FLOW_OPEN | FLOW_NTLM_SEEN);
        let made = mark_reverse(&mut s, None, 9).expect("a new entry");
        assert_eq!(
            (made.flags, made.generation),
            (FLOW_OPEN | FLOW_NTLM_SEEN, 9)
        );
        assert_eq!(s[stat::FLOWS_CREATED as usize], 2);
    }

    #[test]
    fn responses_are_decided_from_the_status_line_only_without_ntlm_state() {
        fn start(s: &[u8]) -> impl FnOnce() -> Option<[u8; STATUS_LINE_BYTES]> + '_ {
            move || s.get(..STATUS_LINE_BYTES)?.try_into().ok()
        }
        let fresh = FlowState::default();
        assert!(plain_response(
            &fresh,
            true,
            100,
            start(b"HTTP/1.1 200 OK\r\n")
        ));
        assert!(plain_response(
            &fresh,
            true,
            100,
            start(b"HTTP/1.0 302 Found")
        ));
        for auth in [&b"HTTP/1.1 401 Unauthorized"[..], b"HTTP/1.1 407 Proxy"] {
            assert!(!plain_response(&fresh, true, 100, start(auth)));
        }
        // Not a response start: a request, a body, a cut start line.
        assert!(!plain_response(
            &fresh,
            true,
            100,
            start(b"GET / HTTP/1.1\r\n")
        ));
        assert!(!plain_response(&fresh, true, 100, start(b"<html><body>")));
        assert!(!plain_response(&fresh, true, 11, start(b"HTTP/1.1 20")));
        // From a client's port: a request, never looked at.
        assert!(!plain_response(
            &fresh,
            false,
            100,
            start(b"HTTP/1.1 200 OK\r\n")
        ));
        // A flow that carried NTLM, or is inside a capture window, is always scanned.
        for flags in [FLOW_NTLM_SEEN, FLOW_CAPTURING] {
            let st = FlowState {
                flags,
                ..FlowState::default()
            };
            assert!(!plain_response(
                &st,
                true,
                100,
                start(b"HTTP/1.1 200 OK\r\n")
            ));
        }
    }

    #[test]
    fn a_capture_window_ends_at_its_end_or_outside_it() {
        let mut st = FlowState::default();
        let cut = Found {
            matched: true,
            ..Found::default()
        };
        start_capture(&mut st, &cut, 1000, 100, 50);
        assert!(continues_capture(&mut st, 1100, 20));
        assert!(st.flags & FLOW_CAPTURING != 0);
        assert!(continues_capture(&mut st, 1120, 30));
        assert!(st.flags & FLOW_CAPTURING == 0, "reached the window's end");
        start_capture(&mut st, &cut, 1000, 100, 50);
        assert!(!continues_capture(&mut st, 5000, 10));
        assert!(st.flags & FLOW_CAPTURING == 0);
    }

    #[test]
    fn identity_check_pairs_requests_and_responses() {
        let mut s: Stats = [0; stat::COUNT as usize];
        let mut auth = AuthFlow {
            generation: 7,
            identity: 42,
            suppressed: 0,
        };
        let head = Found {
            ended: true,
            xff_off: 30,
            xff_len: 11,
            ..Found::default()
        };
        let req = crate::scan::HEAD_REQUEST;
        assert!(authenticated_pass(
            &mut s,
            || Some(&mut auth),
            req,
            7,
            &head,
            |_, _| 42
        ));
        assert!(!authenticated_pass(
            &mut s,
            || Some(&mut auth),
            req,
            8,
            &head,
            |_, _| 42
        ));
        assert!(!authenticated_pass(
            &mut s,
            || Some(&mut auth),
            req,
            7,
            &head,
            |_, _| 1
        ));
        let cut = Found {
            ended: false,
            ..head
        };
        assert!(!authenticated_pass(
            &mut s,
            || Some(&mut auth),
            req,
            7,
            &cut,
            |_, _| 42
        ));
        let ok = Found::default();
        assert!(authenticated_pass(
            &mut s,
            || Some(&mut auth),
            HEAD_RESPONSE,
            7,
            &ok,
            |_, _| 0
        ));
        assert!(!authenticated_pass(
            &mut s,
            || Some(&mut auth),
            HEAD_RESPONSE,
            7,
            &ok,
            |_, _| 0
        ));
        assert_eq!(s[stat::IDENTITY_MATCH as usize], 1);
        assert_eq!(s[stat::IDENTITY_MISMATCH as usize], 3);
        assert_eq!(s[stat::RESPONSES_SUPPRESSED as usize], 1);
        assert_eq!(
            record_kind(&mut s, false, &ok, HEAD_RESPONSE, true),
            0,
            "passed silently: no record"
        );
        assert_eq!(
            record_kind(&mut s, false, &ok, HEAD_RESPONSE, false),
            RECORD_HTTP
        );
    }
}
