//! Raw NTLM message bytes (the signature is forced so the fuzzer explores the body).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracker_ntlm::nlmp::{NtlmMessage, SIGNATURE};

fuzz_target!(|data: &[u8]| {
    let _ = NtlmMessage::decode(data);
    let mut buf = SIGNATURE.to_vec();
    buf.extend_from_slice(data.get(8..).unwrap_or(&[]));
    if let Ok(NtlmMessage::Authenticate(a)) = NtlmMessage::decode(&buf) {
        let _ = a.challenge_identity();
        let _ = format!("{a:?}");
    }
});
