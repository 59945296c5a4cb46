//! Header value → tokens → decoded messages. Input: first line = header name, rest = value.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (name, value) = text.split_once('\n').unwrap_or(("Authorization", &text));
    for mode in [
        tracker_ntlm::base64::Base64Mode::Lenient,
        tracker_ntlm::base64::Base64Mode::Strict,
    ] {
        if let Ok(tokens) = tracker_ntlm::header::parse_auth_header_with(name, value, mode) {
            for t in tokens {
                if let Ok(Some(tok)) = t.decode() {
                    let _ = format!("{tok:?}");
                    let _ = tok.ntlm().map(|m| m.message_type());
                }
            }
        }
    }
});
