//! Kerberos cleartext fields on the real MIT KDC fixtures (tests/fixtures/krb_*.txt, made by
//! gen_kerberos_fixtures.py), hand-built KRB-ERRORs for what the lab does not produce, no
//! cipher bytes in any output, and bad input: truncation at every offset, indefinite and
//! over-long lengths, deep nesting, non-UTF-8 strings.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::encode as enc;
use proptest::prelude::*;
use tracker_ntlm::kerberos::{self, EncPart, EncType, KrbMessage, MAX_DEPTH, PrincipalName};
use tracker_ntlm::spnego::{
    InnerToken, KerberosMessage, Mechanism, NegState, OID_KRB5, OID_MS_KRB5, OID_NTLMSSP,
};
use tracker_ntlm::{
    DecodeError, KerberosToken, NtlmMessage, Token, decode_token, parse_auth_header,
};

/// (direction, decoded token) of every token line of a fixture.
fn tokens(fixture: &str) -> Vec<(char, Vec<u8>, Token)> {
    common::load(fixture)
        .into_iter()
        .filter(|l| l.value.contains(' '))
        .map(|l| {
            let toks = parse_auth_header(&l.name, &l.value).unwrap();
            let bytes = toks[0].token.as_ref().unwrap().expose_secret().to_vec();
            (l.dir, bytes, toks[0].decode().unwrap().unwrap())
        })
        .collect()
}

fn sname() -> PrincipalName {
    PrincipalName {
        name_type: 3,
        name: "HTTP/www.lab.test".into(),
    }
}

const AES256: EncType = EncType {
    etype: 18,
    name: Some("aes256-cts-hmac-sha1-96"),
};

/// The AP-REQ every lab client sends: ticket for HTTP/www.lab.test@LAB.TEST, aes256, kvno 4.
fn assert_lab_ap_req(k: &KerberosToken) {
    assert_eq!(k.message, KerberosMessage::ApReq);
    assert_eq!(k.mech.oid, OID_KRB5);
    assert!(k.gss_framed && k.body_error.is_none(), "{k:?}");
    let r = k.ap_req.as_ref().unwrap();
    assert_eq!(r.pvno, 5);
    assert_eq!(r.ap_options.names, ["mutual-required"]);
    assert!(r.ap_options.mutual_required());
    assert_eq!(r.ticket.tkt_vno, 5);
    assert_eq!(r.ticket.realm, "LAB.TEST");
    assert_eq!(r.ticket.sname, sname());
    assert_eq!(r.ticket.enc_part.etype, AES256);
    assert_eq!(r.ticket.enc_part.kvno, Some(4));
    assert!(
        r.ticket.enc_part.cipher_len > 300,
        "{:?}",
        r.ticket.enc_part
    );
    assert_eq!(r.authenticator.etype, AES256);
    assert_eq!(r.authenticator.kvno, None);
    assert_eq!(k.realm(), Some("LAB.TEST"));
    assert_eq!(k.sname(), Some(&sname()));
    assert!(k.ap_rep.is_none() && k.error.is_none() && k.error_code().is_none());
}

fn assert_lab_ap_rep(k: &KerberosToken) {
    assert_eq!(k.message, KerberosMessage::ApRep);
    assert!(k.gss_framed && k.body_error.is_none(), "{k:?}");
    let r = k.ap_rep.as_ref().unwrap();
    assert_eq!(r.pvno, 5);
    assert_eq!(r.enc_part.etype, AES256);
    assert_eq!(r.enc_part.kvno, None);
    assert!(r.enc_part.cipher_len > 0);
    assert_eq!(k.realm(), None);
}

#[test]
fn spnego_ap_req_and_ap_rep() {
    let t = tokens("krb_negotiate_ap_req");
    assert_eq!(t.len(), 2);
    let (dir, _, init) = &t[0];
    assert_eq!(*dir, 'C');
    match init {
        Token::SpnegoInit(i) => {
            assert_eq!(i.mech_types.len(), 1);
            assert_eq!(i.mech_types[0].oid, OID_KRB5);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(init.mechanism(), Some(Mechanism::Kerberos));
    assert!(init.ntlm().is_none());
    assert_lab_ap_req(init.kerberos().unwrap());
    assert_eq!(
        init.kerberos()
            .unwrap()
            .ap_req
            .as_ref()
            .unwrap()
            .ticket
            .enc_part
            .cipher_len,
        355
    );
    assert_eq!(
        init.kerberos()
            .unwrap()
            .ap_req
            .as_ref()
            .unwrap()
            .authenticator
            .cipher_len,
        189
    );

    let (dir, _, resp) = &t[1];
    assert_eq!(*dir, 'S');
    match resp {
        Token::SpnegoResp(r) => {
            assert_eq!(r.neg_state, Some(NegState::AcceptCompleted));
            assert_eq!(r.supported_mech.as_ref().unwrap().oid, OID_KRB5);
        }
        other => panic!("{other:?}"),
    }
    assert_lab_ap_rep(resp.kerberos().unwrap());
    assert_eq!(
        resp.kerberos()
            .unwrap()
            .ap_rep
            .as_ref()
            .unwrap()
            .enc_part
            .cipher_len,
        111
    );
}

#[test]
fn raw_gss_krb5_ap_req_and_ap_rep() {
    let t = tokens("krb_raw_ap_req");
    assert_eq!(t.len(), 2);
    assert!(matches!(t[0].2, Token::Kerberos(_)));
    assert_lab_ap_req(t[0].2.kerberos().unwrap());
    assert!(matches!(t[1].2, Token::Kerberos(_)));
    assert_lab_ap_rep(t[1].2.kerberos().unwrap());
}

fn assert_lab_error(fixture: &str, code: i32, name: &str) {
    let t = tokens(fixture);
    assert_eq!(t.len(), 2);
    assert_lab_ap_req(t[0].2.kerberos().unwrap());
    let k = t[1].2.kerberos().unwrap();
    assert!(matches!(t[1].2, Token::Kerberos(_)));
    assert_eq!(k.message, KerberosMessage::KrbError);
    assert!(k.gss_framed && k.body_error.is_none(), "{k:?}");
    let e = k.error.as_ref().unwrap();
    assert_eq!(e.pvno, 5);
    assert_eq!(e.error_code.code, code);
    assert_eq!(e.error_code.name, Some(name));
    assert_eq!(k.error_code(), Some(e.error_code));
    assert_eq!(e.realm, "LAB.TEST");
    assert_eq!(e.sname, sname());
    assert_eq!(k.realm(), Some("LAB.TEST"));
    // MIT's acceptor names neither the client nor a reason text.
    assert_eq!((&e.crealm, &e.cname, &e.e_text), (&None, &None, &None));
    assert_eq!(e.ctime, None);
    assert_eq!(e.stime.len(), 15);
    assert!(
        e.stime.starts_with("20") && e.stime.ends_with('Z'),
        "{}",
        e.stime
    );
    assert!(e.susec < 1_000_000);
}

#[test]
fn acceptor_krb_error_bad_kvno() {
    assert_lab_error("krb_error_bad_kvno", 44, "KRB_AP_ERR_BADKEYVER");
}

#[test]
fn acceptor_krb_error_modified_ticket() {
    assert_lab_error("krb_error_modified", 31, "KRB_AP_ERR_BAD_INTEGRITY");
}

#[test]
fn ntlm_fallback_with_kerberos_listed() {
    let t = tokens("krb_fallback_ntlm");
    assert_eq!(t.len(), 2);
    // pyspnego: Kerberos failed (unknown SPN), NTLM alone.
    let Token::SpnegoInit(i) = &t[0].2 else {
        panic!("{:?}", t[0].2)
    };
    let oids: Vec<&str> = i.mech_types.iter().map(|m| m.oid.as_str()).collect();
    assert_eq!(oids, [OID_NTLMSSP]);
    assert!(matches!(t[0].2.ntlm(), Some(NtlmMessage::Negotiate(_))));
    // Windows style: Kerberos preferred in mechTypes, NTLM optimistic token.
    let Token::SpnegoInit(i) = &t[1].2 else {
        panic!("{:?}", t[1].2)
    };
    let oids: Vec<&str> = i.mech_types.iter().map(|m| m.oid.as_str()).collect();
    assert_eq!(oids, [OID_MS_KRB5, OID_KRB5, OID_NTLMSSP]);
    assert_eq!(i.mech_types[0].mechanism, Mechanism::Kerberos);
    assert!(matches!(i.mech_token, Some(InnerToken::Ntlm(_))));
    // The token speaks NTLM (its inner token), not Kerberos.
    assert_eq!(t[1].2.mechanism(), Some(Mechanism::Ntlm));
    assert!(!t[1].2.is_kerberos() && t[1].2.kerberos().is_none());
}

/// The lab error token without its GSS framing (what follows the KRB5 OID and TOK_ID).
fn lab_raw_krb_error() -> Vec<u8> {
    let t = tokens("krb_error_bad_kvno");
    let framed = &t[1].1;
    let oid = enc::oid(OID_KRB5);
    let at = framed.windows(oid.len()).position(|w| w == oid).unwrap() + oid.len();
    assert_eq!(&framed[at..at + 2], &[3, 0]);
    framed[at + 2..].to_vec()
}

#[test]
fn raw_krb_error_in_neg_token_resp_and_bare() {
    let raw = lab_raw_krb_error();
    assert_eq!(raw[0], 0x7e);
    // Microsoft: NegTokenResp reject, supportedMech krb5, raw KRB-ERROR responseToken.
    for mech in [Some(OID_MS_KRB5), Some(OID_KRB5), None] {
        let resp = enc::neg_token_resp(Some(2), mech, Some(&raw), None);
        let t = decode_token(&resp).unwrap();
        let k = t.kerberos().unwrap_or_else(|| panic!("{mech:?}: {t:?}"));
        assert!(!k.gss_framed);
        assert_eq!(k.message, KerberosMessage::KrbError);
        assert_eq!(k.error_code().unwrap().code, 44);
        assert_eq!(k.realm(), Some("LAB.TEST"));
        assert_eq!(k.mech.oid, mech.unwrap_or(OID_KRB5));
        assert_eq!(t.mechanism(), Some(Mechanism::Kerberos));
    }
    // The bare message as a whole token (APPLICATION tag first).
    let t = decode_token(&raw).unwrap();
    assert!(matches!(t, Token::Kerberos(_)));
    let k = t.kerberos().unwrap();
    assert!(!k.gss_framed);
    assert_eq!(k.error_code().unwrap().name, Some("KRB_AP_ERR_BADKEYVER"));
    assert_eq!(
        kerberos::decode_message(&raw, 0).unwrap(),
        KrbMessage::KrbError(*k.error.clone().unwrap())
    );
}

#[test]
fn hand_built_krb_errors_with_client_names_and_text() {
    // Built by the test-only encoder: MIT's acceptor sends neither cname nor e-text.
    for (code, name) in [
        (7, "KDC_ERR_S_PRINCIPAL_UNKNOWN"),
        (41, "KRB_AP_ERR_MODIFIED"),
        (37, "KRB_AP_ERR_SKEW"),
        (68, "KDC_ERR_WRONG_REALM"),
    ] {
        let msg = enc::krb_error(
            code,
            b"CORP.EXAMPLE",
            &[b"HTTP", b"web.corp.example"],
            Some(b"CORP.EXAMPLE"),
            Some(&[b"alice"]),
            Some(b"no such principal"),
            Some(&[1, 2, 3]),
        );
        for token in [msg.clone(), enc::gss_krb5([3, 0], &msg)] {
            let t = decode_token(&token).unwrap();
            let k = t.kerberos().unwrap();
            let e = k.error.as_ref().unwrap();
            assert_eq!(i64::from(e.error_code.code), code);
            assert_eq!(e.error_code.name, Some(name));
            assert_eq!(e.realm, "CORP.EXAMPLE");
            assert_eq!(e.sname.name, "HTTP/web.corp.example");
            assert_eq!(e.sname.name_type, 2);
            assert_eq!(e.crealm.as_deref(), Some("CORP.EXAMPLE"));
            assert_eq!(e.cname.as_ref().unwrap().name, "alice");
            assert_eq!(e.e_text.as_deref(), Some("no such principal"));
            assert_eq!(e.e_data_len, Some(3));
            assert_eq!(e.stime, "20260102030405Z");
            assert_eq!(e.susec, 123_456);
        }
    }
    // Unknown code: number, no name.
    let msg = enc::krb_error(999, b"R", &[b"s"], None, None, None, None);
    let k = decode_token(&msg).unwrap();
    let code = k.kerberos().unwrap().error_code().unwrap();
    assert_eq!((code.code, code.name), (999, None));
    let json = serde_json::to_string(&code).unwrap();
    assert_eq!(json, r#"{"code":999}"#);
}

#[test]
fn etype_names() {
    for (n, name) in [
        (17, "aes128-cts-hmac-sha1-96"),
        (18, "aes256-cts-hmac-sha1-96"),
        (19, "aes128-cts-hmac-sha256-128"),
        (20, "aes256-cts-hmac-sha384-192"),
        (23, "rc4-hmac"),
    ] {
        assert_eq!(EncType::new(n).name, Some(name));
        let msg = enc::ap_req(b"R.TEST", &[b"HTTP", b"h"], i64::from(n), 7, &[0x55; 40]);
        let k = decode_token(&enc::gss_krb5([1, 0], &msg)).unwrap();
        let r = k.kerberos().unwrap().ap_req.clone().unwrap();
        assert_eq!(
            r.ticket.enc_part,
            EncPart {
                etype: EncType::new(n),
                kvno: Some(7),
                cipher_len: 40
            }
        );
    }
    assert_eq!(EncType::new(99).name, None);
}

/// DER header of an OCTET STRING of `len` bytes.
fn octet_header(len: usize) -> Vec<u8> {
    let mut h = enc::tlv(0x04, &vec![0; len]);
    h.truncate(h.len() - len);
    h
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Every representation of a byte run that a serialiser or Debug could produce.
fn renderings(run: &[u8]) -> Vec<String> {
    let dec: Vec<String> = run.iter().map(u8::to_string).collect();
    vec![
        hex(run),
        hex(run).to_uppercase(),
        dec.join(","),
        dec.join(", "),
        enc::b64(run).trim_end_matches('=').to_string(),
        String::from_utf8_lossy(run).into_owned(),
    ]
}

#[test]
fn no_cipher_bytes_in_json_or_debug() {
    for fixture in ["krb_negotiate_ap_req", "krb_raw_ap_req"] {
        let (_, bytes, tok) = tokens(fixture).remove(0);
        let k = tok.kerberos().unwrap();
        let r = k.ap_req.as_ref().unwrap();
        let outputs = [
            serde_json::to_string(&tok).unwrap(),
            serde_json::to_string(k).unwrap(),
            format!("{tok:?}"),
            format!("{tok:#?}"),
        ];
        let mut checked = 0;
        for part in [&r.ticket.enc_part, &r.authenticator] {
            let h = octet_header(part.cipher_len);
            let at = bytes
                .windows(h.len())
                .position(|w| w == h.as_slice())
                .unwrap()
                + h.len();
            let cipher = &bytes[at..at + part.cipher_len];
            for run in cipher.windows(16) {
                for text in renderings(run) {
                    for out in &outputs {
                        assert!(!out.contains(&text), "{fixture}: cipher run in output");
                    }
                }
                // Shifted base64 alignments of the run.
                for shift in 1..3 {
                    let b = enc::b64(&run[shift..]);
                    let b = &b[4..b.len() - 4];
                    assert!(outputs.iter().all(|o| !o.contains(b)));
                }
                checked += 1;
            }
        }
        assert!(checked > 400, "{checked}");
    }
}

// ---- bad input -----------------------------------------------------------------------------

/// Total length (header + value) of the DER element at the start of `b`.
fn element_len(b: &[u8]) -> usize {
    match b[1] {
        n if n < 0x80 => 2 + n as usize,
        0x81 => 3 + b[2] as usize,
        0x82 => 4 + ((b[2] as usize) << 8 | b[3] as usize),
        other => panic!("length form {other:#x}"),
    }
}

fn tok_id(msg: &[u8]) -> [u8; 2] {
    match msg[0] {
        0x6e => [1, 0],
        0x6f => [2, 0],
        _ => [3, 0],
    }
}

fn kerberos_messages() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for f in [
        "krb_negotiate_ap_req",
        "krb_raw_ap_req",
        "krb_error_bad_kvno",
        "krb_error_modified",
    ] {
        for (i, (_, bytes, _)) in tokens(f).into_iter().enumerate() {
            // The message after the KRB5 OID and TOK_ID, exactly one DER element long.
            // (The OID also occurs in mechTypes / supportedMech: take the framing one.)
            let mut oid = enc::oid(OID_KRB5);
            oid.push(0);
            let at = bytes
                .windows(oid.len() + 2)
                .position(|w| {
                    w[..oid.len() - 1] == oid[..oid.len() - 1]
                        && w[oid.len()] == 0
                        && matches!(w[oid.len() + 1], 0x6e | 0x6f | 0x7e)
                })
                .unwrap()
                + oid.len()
                + 1;
            let msg = &bytes[at..at + element_len(&bytes[at..])];
            out.push((format!("{f}#{i}"), msg.to_vec()));
        }
    }
    out.push((
        "hand-built error".into(),
        enc::krb_error(
            7,
            b"R",
            &[b"a", b"b"],
            Some(b"C"),
            Some(&[b"u"]),
            Some(b"t"),
            Some(b"d"),
        ),
    ));
    out
}

#[test]
fn message_truncated_at_every_offset_is_a_typed_error() {
    let msgs = kerberos_messages();
    assert_eq!(msgs.len(), 9);
    for (name, msg) in &msgs {
        assert!(kerberos::decode_message(msg, 0).is_ok(), "{name}");
        for cut in 0..msg.len() {
            let e = kerberos::decode_message(&msg[..cut], 0).unwrap_err();
            assert!(e.offset() <= msg.len(), "{name} cut {cut}: {e}");
            // Inside valid GSS framing: still a Kerberos token, with the error recorded and
            // its offset in the whole token.
            let framed = enc::gss_krb5(tok_id(msg), &msg[..cut]);
            let t = decode_token(&framed).unwrap();
            let k = t.kerberos().unwrap();
            let be = k
                .body_error
                .as_ref()
                .unwrap_or_else(|| panic!("{name} cut {cut}"));
            assert!(be.offset() <= framed.len(), "{name} cut {cut}: {be}");
            assert!(k.ap_req.is_none() && k.ap_rep.is_none() && k.error.is_none());
            // Raw as a whole token: a strict error.
            if cut > 0 {
                assert!(decode_token(&msg[..cut]).is_err(), "{name} cut {cut}");
            }
        }
    }
}

#[test]
fn lengths_past_the_end_indefinite_and_overlong() {
    let msg = enc::krb_error(7, b"LAB.TEST", &[b"HTTP", b"w"], None, None, None, None);
    // Outer length one past the end.
    let mut m = msg.clone();
    m[1] += 1;
    let e = kerberos::decode_message(&m, 0).unwrap_err();
    assert_eq!(e.kind(), "bad_der", "{e}");
    // Indefinite length (BER 0x80) on the SEQUENCE.
    let mut m = msg.clone();
    assert_eq!(m[2], 0x30);
    m[3] = 0x80;
    let e = kerberos::decode_message(&m, 100).unwrap_err();
    assert_eq!(e.kind(), "bad_der");
    assert!(e.to_string().contains("indefinite"), "{e}");
    assert!(e.offset() >= 100, "{e}");
    // Non-minimal long form (0x81 0x05).
    let mut m = vec![0x7e, 0x81, (msg.len() - 2) as u8];
    m.extend_from_slice(&msg[2..]);
    assert_eq!(
        kerberos::decode_message(&m, 0).unwrap_err().kind(),
        "bad_der"
    );
    // Huge declared length.
    let m = [0x7e, 0x84, 0x7f, 0xff, 0xff, 0xff, 0x30, 0x00];
    assert_eq!(
        kerberos::decode_message(&m, 0).unwrap_err().kind(),
        "bad_der"
    );
    // High tag number form.
    assert_eq!(
        kerberos::decode_message(&[0x7f, 0x81, 0x00, 0x00], 0)
            .unwrap_err()
            .kind(),
        "bad_der"
    );
    // Trailing data after the message.
    let mut m = msg.clone();
    m.push(0);
    let e = kerberos::decode_message(&m, 0).unwrap_err();
    assert_eq!(e.offset(), msg.len());
    // Unknown APPLICATION tag (AS-REQ, 0x6a).
    let e = kerberos::decode_message(&[0x6a, 0x02, 0x30, 0x00], 0).unwrap_err();
    assert_eq!(e.kind(), "unsupported");
    // msg-type disagreeing with the APPLICATION tag.
    let mut m = msg.clone();
    let at = m
        .windows(5)
        .position(|w| w == [0xa1, 0x03, 0x02, 0x01, 30])
        .unwrap();
    m[at + 4] = 14;
    let e = kerberos::decode_message(&m, 0).unwrap_err();
    assert_eq!(e.offset(), at + 4);
    // A TOK_ID that disagrees with the message: labelled by TOK_ID, error kept.
    let t = decode_token(&enc::gss_krb5([1, 0], &msg)).unwrap();
    let k = t.kerberos().unwrap();
    assert_eq!(k.message, KerberosMessage::ApReq);
    assert!(k.body_error.is_some() && k.error.is_none());
}

#[test]
fn non_utf8_strings_are_typed_errors_with_offsets() {
    let msg = enc::krb_error(7, b"LAB.\xffTEST", &[b"HTTP"], None, None, None, None);
    let e = kerberos::decode_message(&msg, 10).unwrap_err();
    let at = msg.windows(1).position(|w| w[0] == 0xff).unwrap();
    assert_eq!(
        e,
        DecodeError::BadString {
            offset: 10 + at,
            what: "KerberosString is not UTF-8"
        }
    );
    assert_eq!(e.kind(), "bad_string");
    // Framed in SPNEGO: offset counts from the outer token.
    let framed = enc::neg_token_init(&[OID_KRB5], Some(&enc::gss_krb5([3, 0], &msg)), None);
    let t = decode_token(&framed).unwrap();
    let be = t.kerberos().unwrap().body_error.clone().unwrap();
    assert_eq!(be.kind(), "bad_string");
    assert_eq!(framed[be.offset()], 0xff);
    let json = serde_json::to_value(t.kerberos().unwrap()).unwrap();
    assert_eq!(json["body_error"]["kind"], "bad_string");
    assert_eq!(json["body_error"]["offset"], be.offset());
    // Bad sname component too.
    let msg = enc::krb_error(7, b"R", &[b"HTTP", b"\xc3("], None, None, None, None);
    assert_eq!(
        kerberos::decode_message(&msg, 0).unwrap_err().kind(),
        "bad_string"
    );
}

#[test]
fn deep_nesting_is_bounded_and_never_panics() {
    // name-string whose single component is 10 000 nested constructed elements.
    let mut deep = enc::kstr(b"x");
    for _ in 0..2_000 {
        deep = enc::tlv(0x30, &deep);
    }
    let mut pn = enc::ctx(0, &enc::der_int(1));
    pn.extend(enc::ctx(1, &enc::tlv(0x30, &deep)));
    let mut seq = enc::ctx(0, &enc::der_int(5));
    seq.extend(enc::ctx(1, &enc::der_int(30)));
    seq.extend(enc::ctx(4, &enc::tlv(0x18, b"20260102030405Z")));
    seq.extend(enc::ctx(5, &enc::der_int(1)));
    seq.extend(enc::ctx(6, &enc::der_int(7)));
    seq.extend(enc::ctx(9, &enc::kstr(b"R")));
    seq.extend(enc::ctx(10, &enc::tlv(0x30, &pn)));
    let msg = enc::tlv(0x7e, &enc::tlv(0x30, &seq));
    let e = kerberos::decode_message(&msg, 0).unwrap_err();
    assert_eq!(e.kind(), "bad_der", "{e}");
    // Nested explicit tags in place of a field: refused at the first level, not walked.
    let mut nested = enc::der_int(5);
    for _ in 0..2_000 {
        nested = enc::ctx(0, &nested);
    }
    let msg = enc::tlv(0x6f, &enc::tlv(0x30, &nested));
    assert!(kerberos::decode_message(&msg, 0).is_err());
    assert_eq!(MAX_DEPTH, 10);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_kerberos_bodies_never_panic(
        body in prop::collection::vec(any::<u8>(), 0..400),
        tag in prop::sample::select(vec![0x6eu8, 0x6f, 0x7e, 0x61, 0x30]),
        tok_id in prop::sample::select(vec![[1u8, 0], [2, 0], [3, 0], [4, 0], [9, 9]]),
    ) {
        let mut msg = vec![tag];
        msg.extend(&body);
        let _ = kerberos::decode_message(&msg, 0);
        let _ = decode_token(&msg);
        let t = decode_token(&enc::gss_krb5(tok_id, &enc::tlv(tag, &body))).unwrap();
        prop_assert!(t.kerberos().is_some());
        let _ = serde_json::to_string(&t).unwrap();
        let _ = decode_token(&enc::neg_token_resp(Some(2), None, Some(&msg), None));
    }

    #[test]
    fn mutated_kerberos_messages_never_panic(
        which in any::<prop::sample::Index>(),
        muts in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let all = kerberos_messages();
        let (_, mut msg) = all[which.index(all.len())].clone();
        for (i, b) in muts {
            let at = i.index(msg.len());
            msg[at] = b;
        }
        if let Err(e) = kerberos::decode_message(&msg, 0) {
            prop_assert!(e.offset() <= msg.len());
        }
        let _ = decode_token(&enc::gss_krb5([1, 0], &msg));
    }

    #[test]
    fn hand_built_errors_round_trip(
        code in any::<i32>(),
        realm in "[A-Z.]{1,20}",
        parts in prop::collection::vec("[a-z0-9.]{1,12}", 1..4),
        text in prop::option::of("\\PC{0,30}"),
    ) {
        let p: Vec<&[u8]> = parts.iter().map(|s| s.as_bytes()).collect();
        let msg = enc::krb_error(i64::from(code), realm.as_bytes(), &p, None, None, text.as_ref().map(|t| t.as_bytes()), None);
        let KrbMessage::KrbError(e) = kerberos::decode_message(&msg, 0).unwrap() else { panic!() };
        prop_assert_eq!(e.error_code.code, code);
        prop_assert_eq!(e.realm, realm);
        prop_assert_eq!(e.sname.name, parts.join("/"));
        prop_assert_eq!(e.e_text, text);
    }
}

#[test]
fn neg_token_init2_hint_name_is_a_general_string() {
    // Microsoft's NegTokenInit2: negHints [3] SEQUENCE { hintName [0] GeneralString }.
    let hint = b"not_defined_in_RFC4178@please_ignore";
    let list: Vec<u8> = [OID_MS_KRB5, OID_KRB5, OID_NTLMSSP]
        .iter()
        .flat_map(|m| enc::oid(m))
        .collect();
    let mut seq = enc::ctx(0, &enc::tlv(0x30, &list));
    seq.extend(enc::ctx(3, &enc::tlv(0x30, &enc::ctx(0, &enc::kstr(hint)))));
    let init = enc::gss(enc::SPNEGO, &enc::ctx(0, &enc::tlv(0x30, &seq)));
    let t = decode_token(&init).unwrap();
    let Token::SpnegoInit(i) = &t else {
        panic!("{t:?}")
    };
    assert_eq!(
        i.neg_hints.as_ref().unwrap().hint_name.as_deref(),
        Some("not_defined_in_RFC4178@please_ignore")
    );
    assert_eq!(t.mechanism(), Some(Mechanism::Kerberos));
}

#[test]
fn unknown_mechanisms() {
    // GSS-API framing with an unknown OID: a typed error at the OID.
    let t = enc::gss("1.2.3.4.5", &[1, 0, 0x6e, 0x00]);
    let e = decode_token(&t).unwrap_err();
    assert_eq!((e.kind(), e.offset()), ("unsupported", 2));
    // In SPNEGO with an unknown preferred mechanism: the token is another mechanism's,
    // length only, never parsed as Kerberos.
    let msg = lab_raw_krb_error();
    let init = enc::neg_token_init(&["1.2.3.4.5"], Some(&msg), None);
    let t = decode_token(&init).unwrap();
    assert!(t.kerberos().is_none());
    assert_eq!(t.mechanism(), Some(Mechanism::Other));
}
