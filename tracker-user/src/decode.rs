//! Auth header values → what correlation needs from each NTLM / Negotiate token, using the
//! `tracker-ntlm` decoder. Only non-secret facts leave this module (names, flags, the
//! challenge's identity, the server challenge); the token bytes are used for a keyed hash
//! (the frontend/backend join) and dropped.

use std::sync::Arc;

use tracker_ntlm::{
    HeaderName, KerberosToken, Mechanism, NtlmMessage, Scheme, Token,
    hash::{ChallengeKey, ChallengeKeyHasher, TokenHash, token_hash},
    nlmp::{AvPairs, NtResponseKind},
    spnego::{KerberosMessage, NegState},
};

/// The server names of a challenge's TargetInfo, as a Type-3 repeats them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub struct ServerNames {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nb_computer_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nb_domain_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_computer_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_domain_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_tree_name: Option<String>,
}

impl ServerNames {
    fn from_av(av: &AvPairs) -> Self {
        Self {
            nb_computer_name: av.nb_computer_name().map(str::to_string),
            nb_domain_name: av.nb_domain_name().map(str::to_string),
            dns_computer_name: av.dns_computer_name().map(str::to_string),
            dns_domain_name: av.dns_domain_name().map(str::to_string),
            dns_tree_name: av.dns_tree_name().map(str::to_string),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.nb_computer_name.is_none() && self.dns_computer_name.is_none()
    }

    /// Both name the machine and the names differ (case-insensitively).
    pub fn differs(&self, other: &ServerNames) -> bool {
        let ne = |a: &Option<String>, b: &Option<String>| match (a, b) {
            (Some(a), Some(b)) => !a.eq_ignore_ascii_case(b),
            _ => false,
        };
        ne(&self.nb_computer_name, &other.nb_computer_name)
            || ne(&self.dns_computer_name, &other.dns_computer_name)
    }
}

/// The identity of one Type-2: MsvAvTimestamp + server names, and its keyed hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChallengeId {
    pub timestamp: u64,
    pub names: Arc<ServerNames>,
    pub key: ChallengeKey,
}

#[derive(Clone, Debug)]
pub struct ChallengeInfo {
    pub server_challenge: [u8; 8],
    pub target_name: Option<String>,
    pub names: Arc<ServerNames>,
    /// `None` when TargetInfo has no MsvAvTimestamp (then only names and windows join).
    pub id: Option<ChallengeId>,
}

#[derive(Clone, Debug)]
pub struct AuthenticateInfo {
    pub user: Option<String>,
    pub domain: Option<String>,
    pub workstation: Option<String>,
    pub logon: NtlmLogon,
    /// Names from the NTLMv2 AV pairs (the challenge's server).
    pub names: Option<Arc<ServerNames>>,
    /// The challenge this answers (NTLMv2 with MsvAvTimestamp).
    pub id: Option<ChallengeId>,
    pub channel_bindings: bool,
}

/// How a Type-3 logged on: what security teams inventory (`ntlm.version`, `ntlm.sign`,
/// `ntlm.seal` in events; docs/events.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct NtlmLogon {
    pub version: NtlmVersion,
    /// The NegotiateFlags asked for message signing (`NTLMSSP_NEGOTIATE_SIGN`) and sealing
    /// (`NTLMSSP_NEGOTIATE_SEAL`): a logon with neither can be relayed to a service that
    /// does not require them.
    pub sign: bool,
    pub seal: bool,
}

impl NtlmLogon {
    pub fn of(a: &tracker_ntlm::nlmp::AuthenticateMessage) -> Self {
        use tracker_ntlm::nlmp::{LmResponseKind, NegotiateFlags};
        let version = match a.nt_response.kind {
            NtResponseKind::NtlmV2 => NtlmVersion::Ntlmv2,
            NtResponseKind::NtlmV1 => NtlmVersion::Ntlmv1,
            _ if a.is_anonymous() => NtlmVersion::Anonymous,
            // No NT response beside a 24-byte LM one: the LAN Manager logon of the oldest
            // clients (MS-NLMP 3.3.1, LMCompatibilityLevel 0).
            NtResponseKind::Anonymous if a.lm_response.kind == LmResponseKind::LmV1 => {
                NtlmVersion::Lm
            }
            _ => NtlmVersion::Other,
        };
        Self {
            version,
            sign: a.flags.contains(NegotiateFlags::SIGN),
            seal: a.flags.contains(NegotiateFlags::SEAL),
        }
    }

    /// Neither signing nor sealing: relayable where the service does not insist.
    pub fn unsigned(self) -> bool {
        !self.sign && !self.seal
    }
}

/// The response a Type-3 carried (MS-NLMP 3.3): NTLMv1 and LM are crackable offline and gone
/// from current Windows; anonymous carries no user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NtlmVersion {
    Ntlmv2,
    Ntlmv1,
    Lm,
    Anonymous,
    /// A response of no known shape.
    Other,
}

impl NtlmVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            NtlmVersion::Ntlmv2 => "ntlmv2",
            NtlmVersion::Ntlmv1 => "ntlmv1",
            NtlmVersion::Lm => "lm",
            NtlmVersion::Anonymous => "anonymous",
            NtlmVersion::Other => "other",
        }
    }
}

/// What one token is.
#[derive(Clone, Debug)]
pub enum Auth {
    /// A bare scheme offer (`WWW-Authenticate: NTLM`).
    Offer,
    Negotiate {
        domain: Option<String>,
        workstation: Option<String>,
    },
    Challenge(ChallengeInfo),
    Authenticate(AuthenticateInfo),
    /// A Kerberos token (AP-REQ or AP-REP, bare or in SPNEGO).
    Kerberos,
    /// SPNEGO without an inner NTLM/Kerberos token (e.g. a final accept-completed).
    Spnego,
    /// A token the decoder rejected (counted; never stops the pipeline).
    Undecodable(&'static str),
}

impl Auth {
    pub fn message_type(&self) -> Option<&'static str> {
        match self {
            Auth::Negotiate { .. } => Some("negotiate"),
            Auth::Challenge(_) => Some("challenge"),
            Auth::Authenticate(_) => Some("authenticate"),
            _ => None,
        }
    }
}

/// The cleartext of a Kerberos token (RFC 4120): realm, service principal, ticket and error
/// facts. Tickets, authenticators and everything encrypted are never decoded or kept.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct KerberosInfo {
    /// `ap_req`, `ap_rep`, `krb_error`, `tgt_req` or `other`.
    pub message: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub realm: Option<String>,
    /// The ticket's (or the error's) service principal, e.g. `HTTP/www.lab.test`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_principal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ticket_etype: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ticket_etype_name: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ticket_kvno: Option<u32>,
    /// AP-REQ `mutual-required`: the client expects an AP-REP.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub mutual_required: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_name: Option<&'static str>,
}

impl KerberosInfo {
    fn from_token(k: &KerberosToken) -> Self {
        let message = match k.message {
            KerberosMessage::ApReq => "ap_req",
            KerberosMessage::ApRep => "ap_rep",
            KerberosMessage::KrbError => "krb_error",
            KerberosMessage::TgtReq => "tgt_req",
            KerberosMessage::Other => "other",
        };
        let ticket = k.ap_req.as_ref().map(|r| &r.ticket.enc_part);
        Self {
            message,
            realm: k.realm().map(str::to_string),
            service_principal: k.sname().map(|p| p.name.clone()),
            ticket_etype: ticket.map(|e| e.etype.etype),
            ticket_etype_name: ticket.and_then(|e| e.etype.name),
            ticket_kvno: ticket.and_then(|e| e.kvno),
            mutual_required: k
                .ap_req
                .as_ref()
                .is_some_and(|r| r.ap_options.names.contains(&"mutual-required")),
            error_code: k.error_code().map(|e| e.code),
            error_name: k.error_code().and_then(|e| e.name),
        }
    }
}

/// What a Negotiate token shows of the negotiation (SPNEGO, RFC 4178): which mechanisms the
/// client offered, which the server chose, and the Kerberos cleartext inside.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct NegotiateInfo {
    /// Wrapped in SPNEGO (NegTokenInit / NegTokenResp), not a bare mechanism token.
    /// (Not serialised: the event writes the SPNEGO fields only when this is set.)
    #[serde(skip)]
    pub spnego: bool,
    /// NegTokenInit mechTypes, preferred first (`kerberos`, `ntlm`, `negoex`, …).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mech_types: Vec<&'static str>,
    /// NegTokenResp negState.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub neg_state: Option<&'static str>,
    /// NegTokenResp supportedMech.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub supported_mech: Option<&'static str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub mech_list_mic: bool,
    /// (Not serialised here: events carry it as their top-level `kerberos` object.)
    #[serde(skip)]
    pub kerberos: Option<KerberosInfo>,
}

impl NegotiateInfo {
    fn from_token(tok: &Token) -> Option<Box<Self>> {
        let mut n = match tok {
            Token::Ntlm(_) => return None,
            Token::SpnegoInit(i) => NegotiateInfo {
                spnego: true,
                mech_types: i
                    .mech_types
                    .iter()
                    .map(|m| mech_name(m.mechanism))
                    .collect(),
                mech_list_mic: i.mech_list_mic_len.is_some(),
                ..Self::default()
            },
            Token::SpnegoResp(r) => NegotiateInfo {
                spnego: true,
                neg_state: r.neg_state.map(neg_state_name),
                supported_mech: r.supported_mech.as_ref().map(|m| mech_name(m.mechanism)),
                mech_list_mic: r.mech_list_mic_len.is_some(),
                ..Self::default()
            },
            Token::Kerberos(_) => NegotiateInfo::default(),
        };
        n.kerberos = tok.kerberos().map(KerberosInfo::from_token);
        Some(Box::new(n))
    }

    pub fn kerberos_offered(&self) -> bool {
        self.mech_types.contains(&"kerberos")
    }
}

fn mech_name(m: Mechanism) -> &'static str {
    match m {
        Mechanism::Ntlm => "ntlm",
        Mechanism::Kerberos => "kerberos",
        Mechanism::NegoEx => "negoex",
        Mechanism::Spnego => "spnego",
        Mechanism::Other => "other",
    }
}

fn neg_state_name(s: NegState) -> &'static str {
    match s {
        NegState::AcceptCompleted => "accept_completed",
        NegState::AcceptIncomplete => "accept_incomplete",
        NegState::Reject => "reject",
        NegState::RequestMic => "request_mic",
        NegState::Unknown(_) => "unknown",
    }
}

/// One decoded token with where it came from.
#[derive(Clone, Debug)]
pub struct Decoded {
    pub header: HeaderName,
    pub scheme: Scheme,
    pub auth: Auth,
    /// Keyed hash of the token bytes (only when the frontend join is on).
    pub hash: Option<TokenHash>,
    pub token_len: usize,
    pub mechanism: &'static str,
    /// What the base64 prefix says (the kernel's classification), decodable or not.
    pub prefix: tracker_ntlm::TokenKind,
    /// SPNEGO / Kerberos cleartext (`None` for raw NTLM and undecodable tokens).
    pub negotiate: Option<Box<NegotiateInfo>>,
}

impl Decoded {
    /// A token for tests of the tables that only look at its hash.
    #[cfg(test)]
    pub(crate) fn test_token() -> Self {
        Self::unparseable(HeaderName::Authorization, "NTLM", "test")
    }

    /// A header line whose value did not parse: still reported, as the scheme it names.
    fn unparseable(header: HeaderName, value: &str, why: &'static str) -> Self {
        let ntlm = value
            .get(..4)
            .is_some_and(|s| s.eq_ignore_ascii_case("ntlm"));
        Decoded {
            header,
            scheme: if ntlm {
                Scheme::Ntlm
            } else {
                Scheme::Negotiate
            },
            auth: Auth::Undecodable(why),
            hash: None,
            token_len: 0,
            mechanism: "unknown",
            prefix: tracker_ntlm::TokenKind::Unknown,
            negotiate: None,
        }
    }

    /// A bare `NTLM` / `Negotiate`: the server offering the scheme.
    fn offer(t: &tracker_ntlm::AuthToken) -> Self {
        Decoded {
            header: t.header,
            scheme: t.scheme,
            auth: Auth::Offer,
            hash: None,
            token_len: 0,
            mechanism: "none",
            prefix: t.kind,
            negotiate: None,
        }
    }

    /// `negotiate` / `challenge` / `authenticate`: from the decoded message, else from the
    /// base64 prefix (an undecodable `TlRMTVNTUAAD…` is still a Type-3 attempt).
    pub fn message_type(&self) -> Option<&'static str> {
        self.auth.message_type().or(match self.prefix {
            tracker_ntlm::TokenKind::NtlmNegotiate => Some("negotiate"),
            tracker_ntlm::TokenKind::NtlmChallenge => Some("challenge"),
            tracker_ntlm::TokenKind::NtlmAuthenticate => Some("authenticate"),
            _ => None,
        })
    }
}

pub struct Decoder {
    pub challenge_keys: ChallengeKeyHasher,
    /// Hash tokens for the frontend/backend join.
    pub hash_tokens: bool,
    pub undecodable: u64,
}

impl Decoder {
    pub fn new(challenge_keys: ChallengeKeyHasher, hash_tokens: bool) -> Self {
        Self {
            challenge_keys,
            hash_tokens,
            undecodable: 0,
        }
    }

    fn challenge_id(&self, av: &AvPairs, names: &Arc<ServerNames>) -> Option<ChallengeId> {
        let key = self.challenge_keys.for_av_pairs(av)?;
        Some(ChallengeId {
            timestamp: av.timestamp()?.0,
            names: Arc::clone(names),
            key,
        })
    }

    /// Decodes every NTLM/Negotiate token of one header line.
    pub fn header(&mut self, name: HeaderName, value: &str, out: &mut Vec<Decoded>) {
        let tokens = match tracker_ntlm::parse_auth_header(name.as_str(), value) {
            Ok(t) => t,
            Err(e) => {
                self.undecodable += 1;
                out.push(Decoded::unparseable(name, value, e.kind()));
                return;
            }
        };
        for t in tokens {
            let Some(secret) = t.token.as_ref() else {
                out.push(Decoded::offer(&t));
                continue;
            };
            let bytes = secret.expose_secret();
            let hash = self.hash_tokens.then(|| token_hash(bytes));
            let mut negotiate = None;
            let (auth, mechanism) = match tracker_ntlm::decode_token(bytes) {
                Ok(tok) => {
                    negotiate = NegotiateInfo::from_token(&tok);
                    self.classify(&tok)
                }
                Err(e) => {
                    self.undecodable += 1;
                    let mech = match t.kind {
                        tracker_ntlm::TokenKind::NtlmNegotiate
                        | tracker_ntlm::TokenKind::NtlmChallenge
                        | tracker_ntlm::TokenKind::NtlmAuthenticate => "ntlm",
                        _ => "unknown",
                    };
                    (Auth::Undecodable(e.kind()), mech)
                }
            };
            out.push(Decoded {
                header: t.header,
                scheme: t.scheme,
                auth,
                hash,
                token_len: bytes.len(),
                mechanism,
                prefix: t.kind,
                negotiate,
            });
        }
    }

    fn classify(&self, tok: &Token) -> (Auth, &'static str) {
        let mech = match tok {
            Token::Ntlm(_) => "ntlm",
            _ if tok.is_kerberos() => "kerberos",
            Token::Kerberos(_) => "kerberos",
            _ if tok.ntlm().is_some() => "spnego_ntlm",
            _ => "spnego",
        };
        let auth = match tok.ntlm() {
            Some(NtlmMessage::Negotiate(n)) => Auth::Negotiate {
                domain: n.domain.clone(),
                workstation: n.workstation.clone(),
            },
            Some(NtlmMessage::Challenge(c)) => {
                let names = Arc::new(
                    c.target_info
                        .as_ref()
                        .map(ServerNames::from_av)
                        .unwrap_or_default(),
                );
                let id = c
                    .target_info
                    .as_ref()
                    .and_then(|av| self.challenge_id(av, &names));
                Auth::Challenge(ChallengeInfo {
                    server_challenge: c.server_challenge.0,
                    target_name: c.target_name.clone(),
                    names,
                    id,
                })
            }
            Some(NtlmMessage::Authenticate(a)) => {
                let av = a.av_pairs();
                let names = av.map(|av| Arc::new(ServerNames::from_av(av)));
                let id = match (av, &names) {
                    (Some(av), Some(n)) => self.challenge_id(av, n),
                    _ => None,
                };
                Auth::Authenticate(AuthenticateInfo {
                    user: a.user.clone(),
                    domain: a.domain.clone(),
                    workstation: a.workstation.clone(),
                    logon: NtlmLogon::of(a),
                    names,
                    id,
                    channel_bindings: av
                        .and_then(|av| av.channel_bindings())
                        .is_some_and(|c| !c.is_all_zero()),
                })
            }
            None if tok.is_kerberos() || tok.kerberos().is_some() => Auth::Kerberos,
            None => Auth::Spnego,
        };
        (auth, mech)
    }
}

/// Lowercase hex of bytes that are not secret (the server challenge is public).
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl std::fmt::Display for ChallengeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.key)
    }
}

pub fn key_string(k: &ChallengeKey) -> String {
    k.to_string()
}

pub type Hash = TokenHash;
