//! Property tests: round trips through the test-only encoder (tests/common/encode.rs),
//! truncation of every fixture at every byte offset, and no panic on arbitrary input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::encode::{self as enc, b64};
use proptest::prelude::*;
use tracker_ntlm::nlmp::{
    AvFlags, AvPair, ChannelBindings, FileTime, NegotiateFlags, NtResponseKind, SingleHost, Version,
};
use tracker_ntlm::spnego::{Mechanism, NegState, OID_KRB5, OID_MS_KRB5, OID_NTLMSSP};
use tracker_ntlm::{NtlmMessage, Token, decode_token, parse_auth_header};

fn opt(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

fn unicode_string() -> impl Strategy<Value = String> {
    "\\PC{0,24}"
}

fn latin1_string() -> impl Strategy<Value = String> {
    prop::collection::vec(0x20u8..=0xff, 0..24)
        .prop_map(|v| v.into_iter().map(char::from).collect())
}

fn version() -> impl Strategy<Value = Option<Version>> {
    prop::option::of(
        any::<(u8, u8, u16, u8)>().prop_map(|(major, minor, build, ntlm_revision)| Version {
            major,
            minor,
            build,
            ntlm_revision,
        }),
    )
}

fn flags(unicode: bool, version: bool) -> impl Strategy<Value = u32> {
    any::<u32>().prop_map(move |f| {
        let mut f = f & !(NegotiateFlags::UNICODE | NegotiateFlags::VERSION);
        if unicode {
            f |= NegotiateFlags::UNICODE;
        }
        if version {
            f |= NegotiateFlags::VERSION;
        }
        f
    })
}

fn av_pair() -> impl Strategy<Value = AvPair> {
    prop_oneof![
        unicode_string().prop_map(AvPair::NbComputerName),
        unicode_string().prop_map(AvPair::NbDomainName),
        unicode_string().prop_map(AvPair::DnsComputerName),
        unicode_string().prop_map(AvPair::DnsDomainName),
        unicode_string().prop_map(AvPair::DnsTreeName),
        unicode_string().prop_map(AvPair::TargetName),
        any::<u32>().prop_map(|f| AvPair::Flags(AvFlags(f))),
        any::<u64>().prop_map(|t| AvPair::Timestamp(FileTime(t))),
        any::<[u8; 16]>().prop_map(|c| AvPair::ChannelBindings(ChannelBindings(c))),
        (any::<u32>(), any::<[u8; 8]>(), any::<[u8; 32]>()).prop_map(|(size, c, m)| {
            AvPair::SingleHost(SingleHost {
                size,
                custom_data: c.to_vec(),
                machine_id: m.to_vec(),
            })
        }),
        (11u16.., prop::collection::vec(any::<u8>(), 0..40))
            .prop_map(|(id, value)| AvPair::Unknown { id, value }),
        (
            prop::sample::select(vec![6u16, 7, 10]),
            prop::collection::vec(any::<u8>(), 0..3)
        )
            .prop_map(|(id, value)| AvPair::Malformed { id, value }),
    ]
}

fn av_pairs() -> impl Strategy<Value = Vec<AvPair>> {
    prop::collection::vec(av_pair(), 0..10)
}

#[derive(Debug, Clone)]
enum Nt {
    Anonymous,
    V1([u8; 24]),
    V2([u8; 16], u64, [u8; 8], Vec<AvPair>),
}

fn nt() -> impl Strategy<Value = Nt> {
    prop_oneof![
        Just(Nt::Anonymous),
        any::<[u8; 24]>().prop_map(Nt::V1),
        (
            any::<[u8; 16]>(),
            any::<u64>(),
            any::<[u8; 8]>(),
            av_pairs()
        )
            .prop_map(|(p, t, c, a)| Nt::V2(p, t, c, a)),
    ]
}

fn strings(unicode: bool) -> BoxedStrategy<String> {
    if unicode {
        unicode_string().boxed()
    } else {
        latin1_string().boxed()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn negotiate_round_trip(
        (f, v) in version().prop_flat_map(|v| (flags(false, v.is_some()), Just(v))),
        domain in latin1_string(),
        ws in latin1_string(),
    ) {
        let bytes = enc::negotiate(f, &domain, &ws, v);
        let NtlmMessage::Negotiate(n) = NtlmMessage::decode(&bytes).unwrap() else {
            panic!("not a Type-1")
        };
        prop_assert_eq!(n.flags.0, f);
        prop_assert_eq!(n.domain, opt(&domain));
        prop_assert_eq!(n.workstation, opt(&ws));
        prop_assert_eq!(n.version, v);
    }

    #[test]
    fn challenge_round_trip(
        (unicode, v, f, name) in (any::<bool>(), version()).prop_flat_map(|(u, v)| {
            (Just(u), Just(v), flags(u, v.is_some()), strings(u))
        }),
        chal in any::<[u8; 8]>(),
        ti in prop::option::of(av_pairs()),
    ) {
        let bytes = enc::challenge(f, &name, chal, ti.as_deref(), v);
        let NtlmMessage::Challenge(c) = NtlmMessage::decode(&bytes).unwrap() else {
            panic!("not a Type-2")
        };
        prop_assert_eq!(c.flags.0, f);
        prop_assert_eq!(c.flags.unicode(), unicode);
        prop_assert_eq!(c.target_name, opt(&name));
        prop_assert_eq!(c.server_challenge.0, chal);
        prop_assert_eq!(c.version, v);
        match (ti, c.target_info) {
            (None, None) => {}
            (Some(want), Some(got)) => {
                prop_assert!(got.terminated);
                prop_assert_eq!(got.pairs, want);
            }
            (want, got) => prop_assert!(false, "{:?} vs {:?}", want, got),
        }
    }

    #[test]
    fn authenticate_round_trip(
        (unicode, v, f, domain, user, ws) in (any::<bool>(), version()).prop_flat_map(|(u, v)| {
            (Just(u), Just(v), flags(u, v.is_some()), strings(u), strings(u), strings(u))
        }),
        lm in prop::collection::vec(any::<u8>(), 0..30),
        nt in nt(),
        sk in prop::collection::vec(any::<u8>(), 0..=16),
        mic in prop::option::of(any::<[u8; 16]>()),
    ) {
        let nt_bytes = match &nt {
            Nt::Anonymous => Vec::new(),
            Nt::V1(b) => b.to_vec(),
            Nt::V2(p, t, c, a) => enc::ntlmv2_response(*p, *t, *c, a),
        };
        let bytes = enc::authenticate(f, &lm, &nt_bytes, &domain, &user, &ws, &sk, v, mic);
        let NtlmMessage::Authenticate(a) = NtlmMessage::decode(&bytes).unwrap() else {
            panic!("not a Type-3")
        };
        prop_assert_eq!(a.flags.0, f);
        prop_assert_eq!(a.flags.unicode(), unicode);
        prop_assert_eq!(a.domain, opt(&domain));
        prop_assert_eq!(a.user, opt(&user));
        prop_assert_eq!(a.workstation, opt(&ws));
        prop_assert_eq!(a.version, v);
        prop_assert_eq!(a.lm_response.bytes.expose_secret(), &lm[..]);
        prop_assert_eq!(a.nt_response.bytes.expose_secret(), &nt_bytes[..]);
        prop_assert_eq!(a.session_key.map(|k| k.expose_secret().to_vec()), opt_bytes(&sk));
        prop_assert_eq!(a.mic.map(|m| m.expose_secret().to_vec()), mic.map(|m| m.to_vec()));
        match nt {
            Nt::Anonymous => prop_assert_eq!(a.nt_response.kind, NtResponseKind::Anonymous),
            Nt::V1(_) => prop_assert_eq!(a.nt_response.kind, NtResponseKind::NtlmV1),
            Nt::V2(_, t, c, pairs) => {
                prop_assert_eq!(a.nt_response.kind, NtResponseKind::NtlmV2);
                let v2 = a.nt_response.ntlmv2.unwrap();
                prop_assert_eq!(v2.timestamp, FileTime(t));
                prop_assert_eq!(v2.client_challenge, c);
                prop_assert_eq!(v2.av_pairs.pairs, pairs);
            }
        }
    }

    #[test]
    fn spnego_round_trip(
        mechs in prop::collection::vec(
            prop::sample::select(vec![OID_NTLMSSP, OID_KRB5, OID_MS_KRB5, "1.3.6.1.4.1.311.2.2.30"]),
            1..4),
        state in 0u8..4,
        user in unicode_string(),
        mic in prop::option::of(prop::collection::vec(any::<u8>(), 0..20)),
    ) {
        let t1 = enc::negotiate(NegotiateFlags::NTLM, "", "", None);
        let mut with_ntlm = vec![OID_NTLMSSP];
        with_ntlm.extend(&mechs);
        let init = enc::neg_token_init(&with_ntlm, Some(&t1), mic.as_deref());
        match decode_token(&init).unwrap() {
            Token::SpnegoInit(i) => {
                let oids: Vec<&str> = i.mech_types.iter().map(|m| m.oid.as_str()).collect();
                prop_assert_eq!(oids, with_ntlm.clone());
                prop_assert_eq!(i.mech_list_mic_len, mic.as_ref().map(Vec::len));
                prop_assert!(i.gss_framed);
                prop_assert!(matches!(i.mech_token, Some(tracker_ntlm::InnerToken::Ntlm(_))));
            }
            other => prop_assert!(false, "{:?}", other),
        }
        let t3 = enc::authenticate(1, &[], &[], "", &user, "", &[], None, None);
        let resp = enc::neg_token_resp(Some(state), Some(mechs[0]), Some(&t3), mic.as_deref());
        let tok = decode_token(&resp).unwrap();
        let Token::SpnegoResp(r) = &tok else { panic!("not a NegTokenResp") };
        let want_state = [NegState::AcceptCompleted, NegState::AcceptIncomplete,
                          NegState::Reject, NegState::RequestMic][usize::from(state)];
        prop_assert_eq!(r.neg_state, Some(want_state));
        prop_assert_eq!(r.supported_mech.as_ref().unwrap().oid.as_str(), mechs[0]);
        // The NTLMSSP signature decides: an NTLM token is NTLM whatever mech is claimed.
        let Some(NtlmMessage::Authenticate(a)) = tok.ntlm() else { panic!("no Type-3") };
        prop_assert_eq!(a.user.clone(), opt(&user));
        prop_assert_eq!(tok.mechanism(), Some(Mechanism::Ntlm));
    }

    #[test]
    fn lenient_base64_round_trip(
        bytes in prop::collection::vec(any::<u8>(), 1..300),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..4),
        strip_padding in any::<bool>(),
    ) {
        let mut text = b64(&bytes);
        let had_padding = text.ends_with('=');
        if strip_padding {
            text = text.trim_end_matches('=').to_string();
        }
        let mut positions: Vec<usize> = cuts.iter().map(|i| 1 + i.index(text.len())).collect();
        positions.sort_unstable();
        positions.dedup();
        for p in positions.iter().rev() {
            if *p < text.len() {
                text.insert(*p, ' ');
            }
        }
        let toks = parse_auth_header("Authorization", &format!("NTLM {text}")).unwrap();
        prop_assert_eq!(toks[0].token.as_ref().unwrap().expose_secret(), &bytes[..]);
        prop_assert_eq!(toks[0].base64.missing_padding, strip_padding && had_padding);
        prop_assert_eq!(toks[0].base64.whitespace, text.contains(' '));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = decode_token(&bytes);
        let _ = NtlmMessage::decode(&bytes);
        let mut ntlm = b"NTLMSSP\0".to_vec();
        ntlm.extend(&bytes);
        let _ = decode_token(&ntlm);
        for first in [0x60u8, 0xa0, 0xa1] {
            let mut gss = vec![first];
            gss.extend(&bytes);
            let _ = decode_token(&gss);
        }
    }

    #[test]
    fn arbitrary_header_values_never_panic(value in "\\PC{0,200}", name in prop::sample::select(
        vec!["Authorization", "WWW-Authenticate", "proxy-authorization", "Proxy-Authenticate", "X"]))
    {
        if let Ok(toks) = parse_auth_header(name, &value) {
            for t in toks {
                let _ = t.decode();
            }
        }
    }

    #[test]
    fn mutated_fixtures_never_panic(
        which in any::<prop::sample::Index>(),
        muts in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let all = common::all_token_bytes();
        let (_, mut bytes) = all[which.index(all.len())].clone();
        for (i, b) in muts {
            let at = i.index(bytes.len());
            bytes[at] = b;
        }
        let _ = decode_token(&bytes);
    }
}

fn opt_bytes(b: &[u8]) -> Option<Vec<u8>> {
    (!b.is_empty()).then(|| b.to_vec())
}

#[test]
fn truncation_at_every_offset_is_an_error() {
    let all = common::all_token_bytes();
    assert!(all.len() >= 15);
    for (name, bytes) in &all {
        assert!(decode_token(bytes).is_ok(), "{name}");
        for cut in 0..bytes.len() {
            match decode_token(&bytes[..cut]) {
                Err(e) => assert!(e.offset() <= bytes.len(), "{name} cut {cut}: {e}"),
                Ok(t) => panic!("{name} truncated at {cut} decoded: {t:?}"),
            }
        }
    }
}

#[test]
fn truncated_header_text_never_panics() {
    for (_, l) in common::token_lines() {
        for cut in 0..l.value.len() {
            if let Ok(toks) = parse_auth_header(&l.name, &l.value[..cut]) {
                for t in toks {
                    let _ = t.decode();
                }
            }
        }
    }
}
