//! No freed heap block keeps a token: an allocator that looks at every block as it is freed
//! (and at every block a reallocation leaves) while a whole NTLM handshake goes through the
//! pipeline — records, a Type-3 header cut over two segments (reassembly), head parsing,
//! decoding, correlation and the events — and counts the blocks that still hold the Type-3's
//! base64 or its decoded bytes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../tracker-ntlm/tests/common/encode.rs"]
mod encode;

use std::{
    alloc::{GlobalAlloc, Layout, System},
    collections::HashMap,
    sync::atomic::{AtomicBool, AtomicUsize, Ordering},
};

use bytes::Bytes;
use tracker_common::{DIR_EGRESS, DIR_INGRESS, FlowKey, RECORD_HTTP, RECORD_MESSAGE, RecordHeader};
use tracker_ntlm::nlmp::AvPair;
use tracker_user::{correlate, event::Context, pipeline, record::Record};

static ARMED: AtomicBool = AtomicBool::new(false);
static FREED_WITH_TOKEN: AtomicUsize = AtomicUsize::new(0);
static FREED: AtomicUsize = AtomicUsize::new(0);

/// What must not survive in freed memory: the Type-3's base64 prefix and the decoded
/// message's signature and type.
const BASE64_TYPE3: &[u8] = b"TlRMTVNTUAAD";
const DECODED_TYPE3: &[u8] = b"NTLMSSP\0\x03\0\0\0";

fn holds(block: &[u8], needle: &[u8]) -> bool {
    block.windows(needle.len()).any(|w| w == needle)
}

struct Inspecting;

// SAFETY: every call is forwarded to the system allocator; `dealloc` only reads the block
// it is handed, before freeing it.
unsafe impl GlobalAlloc for Inspecting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        unsafe { System.alloc(l) }
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        if ARMED.load(Ordering::Relaxed) {
            let block = unsafe { std::slice::from_raw_parts(p, l.size()) };
            FREED.fetch_add(1, Ordering::Relaxed);
            if holds(block, BASE64_TYPE3) || holds(block, DECODED_TYPE3) {
                FREED_WITH_TOKEN.fetch_add(1, Ordering::Relaxed);
            }
        }
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static ALLOC: Inspecting = Inspecting;

fn key(to_server: bool) -> FlowKey {
    let lb = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 18, 0, 10];
    let srv = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 18, 1, 1];
    let mut k = FlowKey {
        family: 4,
        ..FlowKey::default()
    };
    if to_server {
        (k.src_addr, k.dst_addr, k.src_port, k.dst_port) = (lb, srv, 40_000, 80);
    } else {
        (k.src_addr, k.dst_addr, k.src_port, k.dst_port) = (srv, lb, 80, 40_000);
    }
    k
}

fn rec(to_server: bool, ts: u64, seq: u32, kind: u8, payload: Vec<u8>) -> Record {
    Record {
        header: RecordHeader {
            timestamp_ns: ts,
            generation: u64::from(!to_server),
            key: key(to_server),
            seq,
            payload_len: payload.len() as u32,
            captured_len: payload.len() as u16,
            kind,
            direction: if to_server { DIR_EGRESS } else { DIR_INGRESS },
            ..Default::default()
        },
        // From the Vec without a copy: the record owns the only buffer.
        payload: Bytes::from(payload),
    }
}

/// `parts` joined into one exactly sized buffer (no reallocation leaves a copy behind).
fn bytes(parts: &[&[u8]]) -> Vec<u8> {
    let mut v = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        v.extend_from_slice(p);
    }
    v
}

#[test]
fn no_freed_block_holds_a_token() {
    // Everything with a token in it is built before the allocator looks.
    let names = [
        AvPair::NbComputerName("WEB1".into()),
        AvPair::NbDomainName("LAB".into()),
    ];
    let [t1, t2, t3] = encode::ntlmv2_handshake(&names, 133_000_000_000_000_000);
    let q1 = bytes(&[
        b"GET /ews HTTP/1.1\r\nX-Forwarded-For: 10.0.0.1\r\nAuthorization: NTLM ",
        t1.as_bytes(),
        b"\r\n\r\n",
    ]);
    let r1 = bytes(&[
        b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nWWW-Authenticate: NTLM ",
        t2.as_bytes(),
        b"\r\n\r\n",
    ]);
    // The Type-3 request cut in the middle of its token: the first part waits in the
    // reassembly buffer for the second.
    let (a, b) = t3.as_bytes().split_at(t3.len() / 2);
    let q2a = bytes(&[
        b"GET /ews HTTP/1.1\r\nX-Forwarded-For: 10.0.0.1\r\nAuthorization: NTLM ",
        a,
    ]);
    let q2b = bytes(&[b, b"\r\n\r\n"]);
    let r2 = bytes(&[b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"]);
    let (l1, l2, l2a) = (q1.len() as u32, r1.len() as u32, q2a.len() as u32);
    let records = vec![
        rec(true, 1_000, 1, RECORD_MESSAGE, q1),
        rec(false, 2_000, 1, RECORD_MESSAGE, r1),
        rec(true, 3_000, 1 + l1, RECORD_MESSAGE, q2a),
        rec(true, 3_001, 1 + l1 + l2a, RECORD_MESSAGE, q2b),
        rec(false, 4_000, 1 + l2, RECORD_HTTP, r2),
    ];

    ARMED.store(true, Ordering::SeqCst);
    let mut p = pipeline::Pipeline::new(pipeline::Config {
        correlate: correlate::Config {
            backends: vec!["198.18.1.0/24:80".parse().unwrap()],
            ..correlate::Config::default()
        },
        messages: true,
        site_key: Some(b"wiped".to_vec()),
        ..pipeline::Config::default()
    });
    let mut outputs = Vec::new();
    for r in records {
        p.push(r, &mut outputs);
    }
    p.finish(&mut outputs);
    let ctx = Context::replay(HashMap::new());
    let mut lines = Vec::new();
    for o in &outputs {
        ctx.write(o, &mut lines);
    }
    let n = outputs.len();
    drop(outputs);
    drop(p);
    ARMED.store(false, Ordering::SeqCst);

    let text = String::from_utf8(lines).unwrap();
    assert_eq!(n, 3, "three messages: {text}");
    assert!(text.contains("\"username\":\"alice\""), "{text}");
    assert!(
        !holds(text.as_bytes(), BASE64_TYPE3),
        "a token in an event: {text}"
    );
    assert!(
        FREED.load(Ordering::Relaxed) > 50,
        "the allocator saw the pipeline's frees"
    );
    assert_eq!(
        FREED_WITH_TOKEN.load(Ordering::Relaxed),
        0,
        "freed heap blocks still holding Type-3 bytes"
    );
    drop((t1, t2, t3));
}
