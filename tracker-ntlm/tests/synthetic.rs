//! Hand-built tokens for cases the lab handshakes do not produce: Kerberos, NTLMv1,
//! anonymous, several challenges per header line, and every error kind with its offset.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::encode::{self as enc, b64};
use tracker_ntlm::nlmp::{
    AvFlags, AvPair, ChannelBindings, FileTime, LmResponseKind, NegotiateFlags, NtResponseKind,
    SingleHost,
};
use tracker_ntlm::spnego::{
    InnerToken, KerberosMessage, Mechanism, OID_KRB5, OID_MS_KRB5, OID_NEGOEX, OID_NTLMSSP,
};
use tracker_ntlm::{
    DecodeError, HeaderName, NtlmMessage, Scheme, Token, TokenKind, classify_base64_prefix,
    decode_token, parse_auth_header,
};

const KRB_AP_REQ: &[u8] = &[0x6e, 0x03, 0x02, 0x01, 0x05];

#[test]
fn several_challenges_in_one_line() {
    let t2 = enc::challenge(0x0002_8233, "WEB1", [1; 8], Some(&[]), None);
    let v = format!(
        "Basic realm=\"a, b\", Negotiate, NTLM {},Bearer error=\"x\", negotiate oRswGaADCgE",
        b64(&t2)
    );
    let toks = parse_auth_header("www-authenticate", &v).unwrap();
    assert_eq!(toks.len(), 3);
    assert_eq!(toks[0].scheme, Scheme::Negotiate);
    assert!(toks[0].is_offer());
    assert_eq!(toks[1].scheme, Scheme::Ntlm);
    assert_eq!(toks[1].kind, TokenKind::NtlmChallenge);
    assert_eq!(toks[1].offset, v.find("NTLM").unwrap());
    assert_eq!(toks[1].header, HeaderName::WwwAuthenticate);
    assert!(matches!(
        toks[1].decode().unwrap(),
        Some(Token::Ntlm(NtlmMessage::Challenge(_)))
    ));
    assert_eq!(toks[2].scheme, Scheme::Negotiate);
    assert_eq!(toks[2].kind, TokenKind::SpnegoResp);
    assert!(toks[2].base64.missing_padding);
    // Unknown header name, unterminated quote.
    assert_eq!(
        parse_auth_header("X-Auth", "NTLM").unwrap_err().kind(),
        "bad_header"
    );
    assert!(parse_auth_header("WWW-Authenticate", "Basic realm=\"x, NTLM").is_err());
    // Other schemes only.
    assert!(
        parse_auth_header("Authorization", "Basic YWxhZGRpbjpvcGVuc2VzYW1l")
            .unwrap()
            .is_empty()
    );
    // Bad base64 reports the offset in the header value.
    let e = parse_auth_header("Authorization", "NTLM TlRM*VNT").unwrap_err();
    assert_eq!((e.kind(), e.offset()), ("bad_base64", 9));
}

#[test]
fn kerberos_is_labelled_kerberos_never_ntlm() {
    for krb in [OID_KRB5, OID_MS_KRB5] {
        // Bare GSS-API Kerberos AP-REQ.
        let mut inner = vec![1, 0];
        inner.extend_from_slice(KRB_AP_REQ);
        let raw = enc::gss(krb, &inner);
        let t = decode_token(&raw).unwrap();
        let k = t.kerberos().unwrap();
        assert_eq!(k.mech.oid, krb);
        assert_eq!(k.mech.mechanism, Mechanism::Kerberos);
        assert_eq!(k.message, KerberosMessage::ApReq);
        assert!(t.is_kerberos() && t.ntlm().is_none());
        assert!(matches!(t, Token::Kerberos(_)));

        // SPNEGO NegTokenInit preferring Kerberos, with an AP-REQ mechToken.
        let init = enc::neg_token_init(&[krb, OID_NTLMSSP], Some(&raw), None);
        let t = decode_token(&init).unwrap();
        assert!(t.is_kerberos() && t.ntlm().is_none());
        match &t {
            Token::SpnegoInit(i) => {
                assert_eq!(i.mech_types[0].mechanism, Mechanism::Kerberos);
                assert_eq!(i.mech_types[1].mechanism, Mechanism::Ntlm);
                assert!(matches!(i.mech_token, Some(InnerToken::Kerberos(_))));
            }
            other => panic!("{other:?}"),
        }
        // Long enough for a long-form length: base64 starts YI.
        let big = enc::neg_token_init(&[krb], Some(&enc::gss(krb, &[1, 0].repeat(100))), None);
        assert_eq!(
            classify_base64_prefix(b64(&big).as_bytes()),
            TokenKind::GssInit
        );
        assert!(b64(&big).starts_with("YI"));

        // NegTokenResp selecting Kerberos with a raw AP-REP.
        let resp = enc::neg_token_resp(Some(0), Some(krb), Some(&[0x6f, 0x00]), None);
        let t = decode_token(&resp).unwrap();
        assert!(t.is_kerberos());
        assert_eq!(t.kerberos().unwrap().message, KerberosMessage::ApRep);
    }
    // NegTokenInit offering Kerberos without a mechToken: still Kerberos, not NTLM.
    let t = decode_token(&enc::neg_token_init(
        &[OID_MS_KRB5, OID_KRB5, OID_NTLMSSP],
        None,
        None,
    ))
    .unwrap();
    assert_eq!(t.mechanism(), Some(Mechanism::Kerberos));
    // NEGOEX token: other mechanism.
    let t = decode_token(&enc::neg_token_init(&[OID_NEGOEX], Some(b"NEGOEXTS"), None)).unwrap();
    assert_eq!(t.mechanism(), Some(Mechanism::NegoEx));
    // Short inits start YA..YH.
    let small = enc::neg_token_init(&[OID_NTLMSSP], None, None);
    assert!(small.len() < 128);
    assert_eq!(
        classify_base64_prefix(b64(&small).as_bytes()),
        TokenKind::GssInit
    );
}

#[test]
fn ntlmv1_and_anonymous_type3() {
    let uni = NegotiateFlags::UNICODE | NegotiateFlags::NTLM;
    let v1 = enc::authenticate(
        uni,
        &[7; 24],
        &[9; 24],
        "DOM",
        "carol",
        "PC",
        &[],
        None,
        None,
    );
    let NtlmMessage::Authenticate(a) = NtlmMessage::decode(&v1).unwrap() else {
        panic!()
    };
    assert_eq!(a.nt_response.kind, NtResponseKind::NtlmV1);
    assert_eq!(a.lm_response.kind, LmResponseKind::LmV1);
    assert!(a.av_pairs().is_none() && a.challenge_identity().is_none());
    assert_eq!(a.user.as_deref(), Some("carol"));

    let anon = enc::authenticate(
        uni | NegotiateFlags::ANONYMOUS,
        &[0],
        &[],
        "",
        "",
        "PC",
        &[],
        None,
        None,
    );
    let NtlmMessage::Authenticate(a) = NtlmMessage::decode(&anon).unwrap() else {
        panic!()
    };
    assert_eq!(a.nt_response.kind, NtResponseKind::Anonymous);
    assert_eq!(a.lm_response.kind, LmResponseKind::Anonymous);
    assert!(a.is_anonymous());
    assert_eq!(a.domain, None);
}

#[test]
fn every_av_pair_id() {
    let pairs = vec![
        AvPair::NbComputerName("WEB1".into()),
        AvPair::NbDomainName("LAB".into()),
        AvPair::DnsComputerName("web1.lab.example".into()),
        AvPair::DnsDomainName("lab.example".into()),
        AvPair::DnsTreeName("example".into()),
        AvPair::Flags(AvFlags(
            AvFlags::MIC_PRESENT | AvFlags::UNTRUSTED_SPN_SOURCE,
        )),
        AvPair::Timestamp(FileTime(0x01dc_0000_1234_5678)),
        AvPair::SingleHost(SingleHost {
            size: 48,
            custom_data: vec![1; 8],
            machine_id: vec![2; 32],
        }),
        AvPair::TargetName("HTTP/web1.lab.example".into()),
        AvPair::ChannelBindings(ChannelBindings([0; 16])),
        AvPair::Unknown {
            id: 0x4242,
            value: vec![1, 2, 3],
        },
        AvPair::Malformed {
            id: 7,
            value: vec![1, 2, 3],
        },
    ];
    let nt = enc::ntlmv2_response([5; 16], 99, [6; 8], &pairs);
    let msg = enc::authenticate(1, &[0; 24], &nt, "D", "U", "W", &[3; 16], None, None);
    let NtlmMessage::Authenticate(a) = NtlmMessage::decode(&msg).unwrap() else {
        panic!()
    };
    let av = a.av_pairs().unwrap();
    assert_eq!(av.pairs, pairs);
    assert!(av.terminated);
    assert!(av.channel_bindings().unwrap().is_all_zero());
    assert_eq!(av.single_host().unwrap().size, 48);
    assert_eq!(av.timestamp(), Some(FileTime(0x01dc_0000_1234_5678)));
    let json = serde_json::to_string(av).unwrap();
    assert!(
        json.contains("\"unknown\":{\"id\":16962,\"value\":\"010203\"}"),
        "{json}"
    );
    assert!(json.contains("\"channel_bindings\":{\"present\":true,\"all_zero\":true}"));
    assert_eq!(a.session_key.as_ref().unwrap().len(), 16);
}

#[test]
fn error_kinds_and_offsets() {
    fn e(b: &[u8]) -> DecodeError {
        decode_token(b).unwrap_err()
    }
    assert_eq!(e(b"").kind(), "truncated");
    assert_eq!(e(b"NTLM").kind(), "truncated");
    assert!(matches!(
        e(b"NTLMSSX\0\x01\0\0\0"),
        DecodeError::BadSignature { offset: 0 }
    ));
    assert!(matches!(
        e(b"NTLMSSP\0\x04\0\0\0\0\0\0\0"),
        DecodeError::WrongMessageType {
            offset: 8,
            found: 4
        }
    ));
    // NtChallengeResponseFields (at 20) pointing past the end.
    let mut t3 = enc::authenticate(1, &[0; 24], &[9; 24], "D", "U", "W", &[], None, None);
    t3[24..28].copy_from_slice(&5000u32.to_le_bytes());
    match e(&t3) {
        DecodeError::FieldOutOfBounds {
            field,
            offset,
            start,
            ..
        } => {
            assert_eq!(field, "NtChallengeResponseFields");
            assert_eq!((offset, start), (20, 5000));
        }
        other => panic!("{other:?}"),
    }
    // An AV pair overrunning TargetInfo inside SPNEGO: offset counts from the outer token.
    let mut t2 = enc::challenge(
        1,
        "W",
        [0; 8],
        Some(&[AvPair::NbComputerName("X".into())]),
        None,
    );
    let ti_at = t2.len() - 10;
    t2[ti_at + 2] = 0x40; // AvLen 64
    let wrapped = enc::neg_token_resp(Some(1), Some(OID_NTLMSSP), Some(&t2), None);
    match e(&wrapped) {
        DecodeError::FieldOutOfBounds { field, offset, .. } => {
            assert_eq!(field, "AV_PAIR.Value");
            assert_eq!(offset, ti_at + (wrapped.len() - t2.len()));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(e(&[0xa1, 0x05, 0x30]).kind(), "bad_der");
    assert_eq!(e(&enc::gss("1.2.3.4", b"x")).kind(), "unsupported");
    assert_eq!(e(b"\x01\x02").kind(), "unsupported");
    // NTLM mech with a non-NTLM token.
    let bad = enc::neg_token_resp(Some(1), Some(OID_NTLMSSP), Some(b"garbage-token"), None);
    assert_eq!(e(&bad).kind(), "bad_signature");
    // SPNEGO nested in SPNEGO is refused, not recursed.
    let inner = enc::neg_token_init(&[OID_NTLMSSP], None, None);
    let nested = enc::neg_token_init(&[OID_NTLMSSP], Some(&inner), None);
    assert!(decode_token(&nested).is_err());
}

#[test]
fn oem_strings_latin1() {
    let t1 = enc::negotiate(
        NegotiateFlags::OEM
            | NegotiateFlags::OEM_DOMAIN_SUPPLIED
            | NegotiateFlags::OEM_WORKSTATION_SUPPLIED,
        "LAB",
        "PC-\u{e9}",
        None,
    );
    let NtlmMessage::Negotiate(n) = NtlmMessage::decode(&t1).unwrap() else {
        panic!()
    };
    assert_eq!(n.domain.as_deref(), Some("LAB"));
    assert_eq!(n.workstation.as_deref(), Some("PC-\u{e9}"));
}
