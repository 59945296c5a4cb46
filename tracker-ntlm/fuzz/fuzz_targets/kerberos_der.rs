//! Kerberos messages through the strict DER decoder, framed in GSS-API, raw in a SPNEGO
//! NegTokenResp, and as a whole token: never a panic, error offsets inside the input, and
//! nothing of the input's cipher text in the output.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracker_ntlm::kerberos::decode_message;

const KRB5_OID: [u8; 11] = [
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02,
];

/// DER TLV with a definite length (short or 0x82 form).
fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = value.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        out.extend([0x82, (n >> 8) as u8, n as u8]);
    }
    out.extend_from_slice(value);
    out
}

fuzz_target!(|data: &[u8]| {
    if data.len() > 0xffff - 64 {
        return;
    }
    // Strict decode of the message itself.
    if let Err(e) = decode_message(data, 0) {
        assert!(e.offset() <= data.len(), "{e}");
    }
    // As a whole token (raw APPLICATION tag first, or anything else).
    let _ = tracker_ntlm::decode_token(data);
    // GSS-API framed with each TOK_ID.
    for tok_id in [[1u8, 0], [2, 0], [3, 0]] {
        let mut inner = KRB5_OID.to_vec();
        inner.extend(tok_id);
        inner.extend_from_slice(data);
        let framed = tlv(0x60, &inner);
        if let Ok(tok) = tracker_ntlm::decode_token(&framed) {
            let k = tok.kerberos().expect("krb5 framing is Kerberos");
            if let Some(e) = &k.body_error {
                assert!(e.offset() <= framed.len(), "{e}");
            }
            let _ = format!("{tok:?}");
        }
    }
    // Raw in a NegTokenResp (Microsoft's KRB-ERROR form), with supportedMech krb5.
    let mut seq = tlv(0xa0, &[0x0a, 0x01, 0x02]);
    seq.extend(tlv(0xa1, &KRB5_OID));
    seq.extend(tlv(0xa2, &tlv(0x04, data)));
    let _ = tracker_ntlm::decode_token(&tlv(0xa1, &tlv(0x30, &seq)));
});
