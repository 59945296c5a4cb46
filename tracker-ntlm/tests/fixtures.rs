//! Unit tests per message type from real handshakes (tests/fixtures/*.txt, made by
//! gen_fixtures.py: curl and pyspnego clients against a pyspnego acceptor named web1).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use tracker_ntlm::hash::{ChallengeKeyHasher, token_hash};
use tracker_ntlm::nlmp::{
    AvPair, AvPairs, FileTime, LmResponseKind, NegotiateFlags, NtResponseKind, Version,
};
use tracker_ntlm::spnego::{Mechanism, NegState, OID_NTLMSSP};
use tracker_ntlm::{
    AuthenticateMessage, ChallengeMessage, HeaderName, MessageType, NegotiateMessage, NtlmMessage,
    Scheme, Token, TokenKind, parse_auth_header,
};

/// Decodes every token line of a fixture, in order.
fn tokens(fixture: &str) -> Vec<(common::Line, Token)> {
    common::load(fixture)
        .into_iter()
        .filter(|l| l.value.contains(' '))
        .map(|l| {
            let toks = parse_auth_header(&l.name, &l.value).unwrap();
            assert_eq!(toks.len(), 1);
            assert!(toks[0].base64.is_strict(), "fixtures are strict base64");
            let t = toks[0].decode().unwrap().unwrap();
            (l, t)
        })
        .collect()
}

fn ntlm3(fixture: &str) -> (NegotiateMessage, ChallengeMessage, AuthenticateMessage) {
    let msgs: Vec<NtlmMessage> = tokens(fixture)
        .into_iter()
        .filter_map(|(_, t)| t.ntlm().cloned())
        .collect();
    assert_eq!(msgs.len(), 3, "{fixture}: three NTLM messages");
    let mut it = msgs.into_iter();
    match (it.next(), it.next(), it.next()) {
        (
            Some(NtlmMessage::Negotiate(n)),
            Some(NtlmMessage::Challenge(c)),
            Some(NtlmMessage::Authenticate(a)),
        ) => (n, c, a),
        other => panic!("unexpected sequence {other:?}"),
    }
}

fn server_pairs(ti: &AvPairs) -> Vec<AvPair> {
    ti.pairs
        .iter()
        .filter(|p| !matches!(p, AvPair::Timestamp(_)))
        .cloned()
        .collect()
}

fn expected_server_names() -> Vec<AvPair> {
    vec![
        AvPair::NbComputerName("WEB1".into()),
        AvPair::NbDomainName("WORKSTATION".into()),
        AvPair::DnsComputerName("web1".into()),
    ]
}

#[test]
fn curl_type1_type2_type3_oem() {
    let (n, c, a) = ntlm3("curl_ntlm");
    // Type-1: curl asks OEM, no version, no domain/workstation supplied.
    assert!(!n.flags.unicode());
    assert!(n.flags.contains(NegotiateFlags::OEM | NegotiateFlags::NTLM));
    assert!(n.flags.contains(NegotiateFlags::EXTENDED_SESSIONSECURITY));
    assert_eq!(n.domain, None);
    assert_eq!(n.workstation, None);
    assert_eq!(n.version, None);
    assert_eq!(n.flags.0, 0x0008_8206);

    // Type-2: OEM target name, TargetInfo as the facts file says.
    assert_eq!(c.target_name.as_deref(), Some("WEB1"));
    assert_eq!(c.server_challenge.to_string(), "60390059d77ecc1e");
    assert!(
        c.flags
            .contains(NegotiateFlags::TARGET_INFO | NegotiateFlags::TARGET_TYPE_SERVER)
    );
    let ti = c.target_info.as_ref().unwrap();
    assert!(ti.terminated);
    assert_eq!(server_pairs(ti), expected_server_names());
    assert_eq!(ti.timestamp(), Some(FileTime(134400554538801610)));
    assert_eq!(c.version, None);

    // Type-3: OEM strings, NTLMv2 + LMv2, no MIC, no session key.
    assert_eq!(a.user.as_deref(), Some("alice"));
    assert_eq!(a.domain.as_deref(), Some("LAB"));
    assert_eq!(a.workstation.as_deref(), Some("WORKSTATION"));
    assert!(!a.flags.unicode());
    assert_eq!(a.nt_response.kind, NtResponseKind::NtlmV2);
    assert_eq!(a.nt_response.bytes.len(), 114);
    assert_eq!(a.lm_response.kind, LmResponseKind::LmV2);
    assert!(a.mic.is_none());
    assert!(a.session_key.is_none());
    assert!(!a.is_anonymous());
    let v2 = a.nt_response.ntlmv2.as_ref().unwrap();
    assert_eq!((v2.resp_type, v2.hi_resp_type), (1, 1));
    // curl copies the Type-2's TargetInfo verbatim: names and MsvAvTimestamp.
    assert_eq!(&v2.av_pairs, ti);
    assert_eq!(a.av_pairs().unwrap().timestamp(), ti.timestamp());
}

#[test]
fn pyspnego_type1_type2_type3_unicode() {
    let (n, c, a) = ntlm3("pyspnego_ntlm");
    let ver = Some(Version {
        major: 0,
        minor: 12,
        build: 4,
        ntlm_revision: 15,
    });
    assert!(n.flags.unicode());
    assert!(
        n.flags
            .contains(NegotiateFlags::VERSION | NegotiateFlags::KEY_EXCH)
    );
    assert_eq!(n.flags.0, 0xe208_8237);
    assert_eq!(n.version, ver);
    assert_eq!(
        n.flags.names().collect::<Vec<_>>(),
        [
            "NTLMSSP_NEGOTIATE_UNICODE",
            "NTLM_NEGOTIATE_OEM",
            "NTLMSSP_REQUEST_TARGET",
            "NTLMSSP_NEGOTIATE_SIGN",
            "NTLMSSP_NEGOTIATE_SEAL",
            "NTLMSSP_NEGOTIATE_NTLM",
            "NTLMSSP_NEGOTIATE_ALWAYS_SIGN",
            "NTLMSSP_NEGOTIATE_EXTENDED_SESSIONSECURITY",
            "NTLMSSP_NEGOTIATE_VERSION",
            "NTLMSSP_NEGOTIATE_128",
            "NTLMSSP_NEGOTIATE_KEY_EXCH",
            "NTLMSSP_NEGOTIATE_56",
        ]
    );

    assert_eq!(c.target_name.as_deref(), Some("WEB1"));
    assert_eq!(c.server_challenge.to_string(), "e3f852a1a803a572");
    assert_eq!(c.version, ver);
    let ti = c.target_info.as_ref().unwrap();
    assert_eq!(server_pairs(ti), expected_server_names());
    let ts = ti.timestamp().unwrap();
    assert_eq!(ts, FileTime(134400554544115970));
    // 2026-something, after 2020.
    assert!(ts.unix_nanos().unwrap() > 1_577_836_800_000_000_000);

    assert_eq!(a.user.as_deref(), Some("alice"));
    assert_eq!(a.domain.as_deref(), Some("LAB"));
    assert_eq!(a.workstation.as_deref(), Some("CLIENT1"));
    assert_eq!(a.version, ver);
    assert_eq!(a.lm_response.kind, LmResponseKind::Zeros);
    assert_eq!(a.nt_response.kind, NtResponseKind::NtlmV2);
    assert_eq!(a.mic.as_ref().map(|m| m.len()), Some(16));
    assert_eq!(a.session_key.as_ref().map(|k| k.len()), Some(16));
    let av = a.av_pairs().unwrap();
    assert_eq!(
        av.timestamp(),
        Some(ts),
        "MsvAvTimestamp equal in Type-2 and Type-3"
    );
    assert_eq!(av.nb_computer_name(), Some("WEB1"));
    assert_eq!(av.dns_computer_name(), Some("web1"));
    assert_eq!(av.nb_domain_name(), Some("WORKSTATION"));
    assert_eq!(av.dns_tree_name(), None);
    assert_eq!(av.target_name(), Some("HTTP/web1"));
    assert!(av.flags().unwrap().mic_present());
    assert!(av.channel_bindings().is_none());
    // The client's NTLMv2 TimeStamp is the server's here (pyspnego reuses MsvAvTimestamp).
    assert_eq!(a.nt_response.ntlmv2.as_ref().unwrap().timestamp, ts);
}

#[test]
fn challenge_key_joins_type2_and_type3() {
    let hasher = ChallengeKeyHasher::from_secret(b"site-wide secret from config");
    for f in ["curl_ntlm", "pyspnego_ntlm", "pyspnego_ntlm_unicode"] {
        let (_, c, a) = ntlm3(f);
        let k2 = hasher.challenge_key(&c.challenge_identity().unwrap());
        let k3 = hasher.challenge_key(&a.challenge_identity().unwrap());
        assert_eq!(k2, k3, "{f}");
        assert_eq!(k2.to_string().len(), 32);
    }
    // Different challenges (timestamps) give different keys; different site keys too.
    let (_, c1, _) = ntlm3("curl_ntlm");
    let (_, c2, _) = ntlm3("pyspnego_ntlm");
    let id1 = c1.challenge_identity().unwrap();
    assert_ne!(
        hasher.challenge_key(&id1),
        hasher.challenge_key(&c2.challenge_identity().unwrap())
    );
    assert_ne!(
        hasher.challenge_key(&id1),
        ChallengeKeyHasher::new([7; 32]).challenge_key(&id1)
    );
}

#[test]
fn unicode_user_name() {
    let (_, _, a) = ntlm3("pyspnego_ntlm_unicode");
    assert_eq!(a.user.as_deref(), Some("zo\u{eb}"));
    assert!(a.flags.unicode());
}

#[test]
fn spnego_wrapped_ntlm() {
    let toks = tokens("pyspnego_negotiate");
    assert_eq!(toks.len(), 4);
    // NegTokenInit (GSS framed) with NTLM mech and a Type-1 inside.
    match &toks[0].1 {
        Token::SpnegoInit(init) => {
            assert!(init.gss_framed);
            assert_eq!(init.mech_types.len(), 1);
            assert_eq!(init.mech_types[0].oid, OID_NTLMSSP);
            assert_eq!(init.mech_types[0].mechanism, Mechanism::Ntlm);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        toks[0].1.ntlm().unwrap().message_type(),
        MessageType::Negotiate
    );
    assert_eq!(toks[0].1.mechanism(), Some(Mechanism::Ntlm));
    assert!(!toks[0].1.is_kerberos());
    // NegTokenResp request-mic + supportedMech NTLM + Type-2.
    match &toks[1].1 {
        Token::SpnegoResp(r) => {
            assert_eq!(r.neg_state, Some(NegState::RequestMic));
            assert_eq!(
                r.supported_mech.as_ref().unwrap().mechanism,
                Mechanism::Ntlm
            );
        }
        other => panic!("{other:?}"),
    }
    match toks[1].1.ntlm().unwrap() {
        NtlmMessage::Challenge(c) => {
            assert_eq!(c.server_challenge.to_string(), "f9da905b6202745d")
        }
        other => panic!("{other:?}"),
    }
    // NegTokenResp accept-incomplete + Type-3 + mechListMIC.
    match &toks[2].1 {
        Token::SpnegoResp(r) => {
            assert_eq!(r.neg_state, Some(NegState::AcceptIncomplete));
            assert_eq!(r.mech_list_mic_len, Some(16));
        }
        other => panic!("{other:?}"),
    }
    match toks[2].1.ntlm().unwrap() {
        NtlmMessage::Authenticate(a) => {
            assert_eq!(a.user.as_deref(), Some("alice"));
            assert_eq!(a.workstation.as_deref(), Some("CLIENT1"));
            assert_eq!(
                a.av_pairs().unwrap().timestamp(),
                Some(FileTime(134400554546630770))
            );
        }
        other => panic!("{other:?}"),
    }
    // Final server token: accept-completed with mechListMIC and no inner token.
    match &toks[3].1 {
        Token::SpnegoResp(r) => {
            assert_eq!(r.neg_state, Some(NegState::AcceptCompleted));
            assert!(r.response_token.is_none());
            assert_eq!(r.mech_list_mic_len, Some(16));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        toks[0].0.value.split(' ').nth(1).unwrap().get(..2),
        Some("YE")
    );
}

#[test]
fn raw_ntlm_under_negotiate_scheme() {
    let toks = tokens("pyspnego_negotiate_raw_ntlm");
    assert_eq!(toks.len(), 3);
    for (l, t) in &toks {
        let a = parse_auth_header(&l.name, &l.value).unwrap();
        assert_eq!(a[0].scheme, Scheme::Negotiate);
        assert!(matches!(t, Token::Ntlm(_)));
    }
    let (_, _, a) = ntlm3("pyspnego_negotiate_raw_ntlm");
    assert_eq!(a.user.as_deref(), Some("bob"));
}

#[test]
fn proxy_headers() {
    let lines = common::load("curl_proxy_ntlm");
    let kinds: Vec<(HeaderName, TokenKind)> = lines
        .iter()
        .map(|l| {
            let t = parse_auth_header(&l.name, &l.value).unwrap();
            (t[0].header, t[0].kind)
        })
        .collect();
    assert_eq!(
        kinds,
        [
            (HeaderName::ProxyAuthorization, TokenKind::NtlmNegotiate),
            (HeaderName::ProxyAuthenticate, TokenKind::NtlmChallenge),
            (HeaderName::ProxyAuthorization, TokenKind::NtlmAuthenticate),
        ]
    );
    assert!(
        HeaderName::ProxyAuthorization.is_request() && HeaderName::ProxyAuthorization.is_proxy()
    );
    let (_, _, a) = ntlm3("curl_proxy_ntlm");
    assert_eq!(a.user.as_deref(), Some("bob"));
}

#[test]
fn bare_offers() {
    let lines = common::load("pyspnego_ntlm");
    let offers: Vec<_> = lines
        .iter()
        .filter(|l| !l.value.contains(' '))
        .flat_map(|l| parse_auth_header(&l.name, &l.value).unwrap())
        .collect();
    assert_eq!(offers.len(), 2);
    assert!(
        offers
            .iter()
            .all(|o| o.is_offer() && o.decode().unwrap().is_none())
    );
    assert_eq!(offers[0].scheme, Scheme::Negotiate);
    assert_eq!(offers[1].scheme, Scheme::Ntlm);
}

#[test]
fn prefix_classification_matches_decoding() {
    for (f, l) in common::token_lines() {
        let t = &parse_auth_header(&l.name, &l.value).unwrap()[0];
        let tok = t.decode().unwrap().unwrap();
        let expect = match &tok {
            Token::Ntlm(m) => match m.message_type() {
                MessageType::Negotiate => TokenKind::NtlmNegotiate,
                MessageType::Challenge => TokenKind::NtlmChallenge,
                MessageType::Authenticate => TokenKind::NtlmAuthenticate,
            },
            Token::SpnegoInit(_) | Token::Kerberos(_) => TokenKind::GssInit,
            Token::SpnegoResp(_) => TokenKind::SpnegoResp,
        };
        assert_eq!(t.kind, expect, "{f}: {}", l.value);
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn redaction_debug_and_json_show_no_credential_bytes() {
    for (f, l) in common::token_lines() {
        let auth = &parse_auth_header(&l.name, &l.value).unwrap()[0];
        let tok = auth.decode().unwrap().unwrap();
        let dbg = format!("{tok:?} {auth:?}");
        let json = format!(
            "{} {}",
            serde_json::to_string(&tok).unwrap(),
            serde_json::to_string(auth).unwrap()
        );
        // The base64 text itself never appears.
        let b64 = l.value.split(' ').nth(1).unwrap();
        assert!(!dbg.contains(b64) && !json.contains(b64), "{f}");
        if let Some(NtlmMessage::Authenticate(a)) = tok.ntlm() {
            let mut secrets = vec![
                a.nt_response.bytes.expose_secret().to_vec(),
                a.nt_response.bytes.expose_secret()[..16].to_vec(), // NTProofStr
            ];
            if let Some(m) = &a.mic {
                secrets.push(m.expose_secret().to_vec());
            }
            if let Some(k) = &a.session_key {
                secrets.push(k.expose_secret().to_vec());
            }
            if !a.lm_response.bytes.is_all_zero() {
                secrets.push(a.lm_response.bytes.expose_secret().to_vec());
            }
            for s in secrets {
                let h = hex(&s);
                let dec = format!("{:?}", s);
                for out in [&dbg, &json] {
                    assert!(!out.contains(&h), "{f}: secret hex leaked");
                    assert!(
                        !out.contains(&dec[1..dec.len() - 1]),
                        "{f}: secret bytes leaked"
                    );
                }
            }
            assert!(json.contains("\"redacted\":true"));
            assert!(dbg.contains("redacted"));
        }
    }
}

#[test]
fn token_hash_joins_lenient_and_strict_text() {
    let l = &common::load("pyspnego_ntlm")[4];
    let strict = &parse_auth_header(&l.name, &l.value).unwrap()[0];
    // The same token re-wrapped with whitespace and without padding.
    let b64 = l.value.split(' ').nth(1).unwrap();
    let mangled = format!(
        "NTLM {} \r\n {}",
        &b64[..20],
        b64[20..].trim_end_matches('=')
    );
    let lenient = &parse_auth_header(&l.name, &mangled).unwrap()[0];
    assert!(lenient.base64.whitespace && lenient.base64.missing_padding);
    assert!(!lenient.base64.is_strict());
    let h1 = token_hash(strict.token.as_ref().unwrap().expose_secret());
    let h2 = token_hash(lenient.token.as_ref().unwrap().expose_secret());
    assert_eq!(h1, h2);
    let other = &common::load("pyspnego_ntlm")[2];
    let o = &parse_auth_header(&other.name, &other.value).unwrap()[0];
    assert_ne!(h1, token_hash(o.token.as_ref().unwrap().expose_secret()));
    // Strict mode rejects the mangled text, with the offset of the first whitespace.
    let e = tracker_ntlm::header::parse_auth_header_with(
        &l.name,
        &mangled,
        tracker_ntlm::base64::Base64Mode::Strict,
    )
    .unwrap_err();
    assert_eq!(e.kind(), "bad_base64");
    assert_eq!(e.offset(), 25);
}
