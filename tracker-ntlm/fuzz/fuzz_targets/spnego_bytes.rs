//! SPNEGO / GSS-API token bytes through the top-level token decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(tok) = tracker_ntlm::decode_token(data) {
        let _ = tok.mechanism();
        let _ = format!("{tok:?}");
    }
});
