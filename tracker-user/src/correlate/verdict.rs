//! What the correlator concludes: a violation (one of the five classes in docs/design.md,
//! "Correlation") or a healthy handshake, with its cause, the evidence that proves it, the
//! connections involved, the client, the servers and the outcome.

use std::{net::SocketAddr, sync::Arc};

use serde::Serialize;
use tracker_ntlm::hash::ChallengeKey;

use crate::decode::{KerberosInfo, NtlmLogon, ServerNames};

/// What a verdict is. Each class owns its name, severity and dataset here; adding one is a
/// variant, the module that decides it, and a test (docs/design.md, "Adding a class").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    ServerSplit,
    ConnectionSplit,
    OrphanType3,
    AbandonedChallenge,
    AuthContextReuse,
    /// Not a violation: a handshake completed on one connection (emitted with `--handshakes`).
    #[serde(rename = "ntlm_handshake")]
    Handshake,
    /// Not a violation: a Kerberos request and its answer (emitted with `--handshakes`).
    KerberosHandshake,
}

impl Class {
    /// The violations, in the order summaries list them.
    pub const VIOLATIONS: [Class; 5] = [
        Class::ServerSplit,
        Class::ConnectionSplit,
        Class::OrphanType3,
        Class::AbandonedChallenge,
        Class::AuthContextReuse,
    ];

    /// The event's `event.action`.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::ServerSplit => "server_split",
            Class::ConnectionSplit => "connection_split",
            Class::OrphanType3 => "orphan_type3",
            Class::AbandonedChallenge => "abandoned_challenge",
            Class::AuthContextReuse => "auth_context_reuse",
            Class::Handshake => "ntlm_handshake",
            Class::KerberosHandshake => "kerberos_handshake",
        }
    }

    pub fn is_violation(self) -> bool {
        !matches!(self, Class::Handshake | Class::KerberosHandshake)
    }

    /// ECS `event.severity`: serving one user's requests as another is worst; a split breaks
    /// a logon; an orphan may be a split whose challenge was not seen; an abandoned challenge
    /// is often a client that gave up.
    pub fn severity(self) -> u8 {
        match self {
            Class::AuthContextReuse => 9,
            Class::ServerSplit | Class::ConnectionSplit => 6,
            Class::OrphanType3 => 5,
            Class::AbandonedChallenge => 3,
            Class::Handshake | Class::KerberosHandshake => 0,
        }
    }

    /// ECS `event.dataset`.
    pub fn dataset(self) -> &'static str {
        if self.is_violation() {
            "ntlm_affinity.alert"
        } else {
            "ntlm_affinity.handshake"
        }
    }

    /// Whether the verdict is about a Type-3's outcome (`ntlm.success`): not for a challenge
    /// nobody answered, nor for a request on an authenticated connection.
    pub fn has_logon_outcome(self) -> bool {
        !matches!(self, Class::AbandonedChallenge | Class::AuthContextReuse)
    }

    /// Whether the verdict is about a request served on an already authenticated connection:
    /// its legs are the logon's (`challenge_leg`, with `authenticated_at`) and the request's
    /// (`request_leg`).
    pub fn is_context_reuse(self) -> bool {
        self == Class::AuthContextReuse
    }
}

impl std::fmt::Display for Class {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The authentication a verdict is about (`ntlm_affinity.auth_scheme`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mechanism {
    #[default]
    Ntlm,
    Kerberos,
}

/// How a connection ended before a verdict (`…_leg.closed`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Closing {
    Fin,
    Rst,
    /// The HTTP said the connection ends after the message (`Connection: close`, HTTP/1.0).
    ConnectionClose,
    /// A new connection on the same 5-tuple replaced it.
    Reused,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    ClientReconnect,
    ConnectionClosed,
    BalancerReroute,
    Unknown,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::ClientReconnect => "client_reconnect",
            Cause::ConnectionClosed => "connection_closed",
            Cause::BalancerReroute => "balancer_reroute",
            Cause::Unknown => "unknown",
        }
    }
}

/// The join key (or fact) that proves a verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Evidence {
    /// The Type-3's MsvAvTimestamp + server names equal those of one Type-2.
    ChallengeKey,
    /// The Type-3 names a server (AV pairs) other than the one it reached.
    ServerNames,
    /// Type-2 and Type-3 on one connection.
    SameConnection,
    /// Same client identity (X-Forwarded-For / client port) within the time window.
    ClientIdentityWindow,
    /// The balancer forwarded the same token bytes on a frontend connection (keyed hash).
    FrontendToken,
    /// X-Forwarded-For / client-port header of the requests.
    ClientIdentity,
    /// FIN/RST or `Connection: close` / HTTP/1.0 on the challenge's connection.
    ConnectionClose,
    /// No Type-3 within the window.
    Timeout,
    /// Nothing joins this message to any other.
    None,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Failure,
    Unknown,
}

impl Outcome {
    pub fn from_status(status: Option<u16>) -> Outcome {
        match status {
            None => Outcome::Unknown,
            Some(401 | 407) => Outcome::Failure,
            Some(_) => Outcome::Success,
        }
    }
}

/// The client as the backend leg reveals it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ClientIdentity {
    /// Last `X-Forwarded-For` element.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forwarded_for: Option<String>,
    /// The configured client-port header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The frontend connection's client (frontend token join).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frontend: Option<SocketAddr>,
}

impl ClientIdentity {
    pub fn known(&self) -> bool {
        self.forwarded_for.is_some() || self.port.is_some() || self.frontend.is_some()
    }

    /// Whether `other` is certainly the same client (every field known on both sides agrees
    /// and at least one is known on both).
    pub fn same_as(&self, other: &ClientIdentity) -> bool {
        let mut any = false;
        if let (Some(a), Some(b)) = (&self.forwarded_for, &other.forwarded_for) {
            if a != b {
                return false;
            }
            any = true;
        }
        if let (Some(a), Some(b)) = (self.port, other.port) {
            if a != b {
                return false;
            }
            any = true;
        }
        if let (Some(a), Some(b)) = (self.frontend, other.frontend) {
            if a != b {
                return false;
            }
            any = true;
        }
        any
    }

    /// This identity, with what `other` knows and this does not.
    pub fn merged(&self, other: &ClientIdentity) -> ClientIdentity {
        ClientIdentity {
            forwarded_for: self
                .forwarded_for
                .clone()
                .or_else(|| other.forwarded_for.clone()),
            port: self.port.or(other.port),
            frontend: self.frontend.or(other.frontend),
        }
    }

    /// Whether a request from `other` is another (or an unidentified) client: some field known
    /// here is absent or different there.
    pub fn differs(&self, other: &ClientIdentity) -> bool {
        (self.forwarded_for.is_some() && self.forwarded_for != other.forwarded_for)
            || (self.forwarded_for.is_none() && self.port.is_some() && self.port != other.port)
    }
}

/// One backend (or frontend) connection involved in a verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LegInfo {
    /// The balancer side (backend leg) or the client (frontend leg).
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub generation: u64,
    /// When this leg's message was seen (record timestamp).
    pub at_ns: u64,
    /// How the connection ended before the verdict, if it did.
    pub closed: Option<Closing>,
    pub server_names: Option<Arc<ServerNames>>,
}

/// The request that carried the offending message.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RequestInfo {
    pub method: Option<String>,
    pub path: Option<String>,
    pub version: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Verdict {
    pub class: Class,
    pub cause: Option<Cause>,
    pub evidence: Vec<Evidence>,
    pub ts_ns: u64,
    /// The connection that carried the Type-2 (for reuse: the one that authenticated).
    pub challenge_leg: Option<LegInfo>,
    /// The connection that carried the Type-3 (for reuse: the request that reused it).
    pub authenticate_leg: Option<LegInfo>,
    pub client: ClientIdentity,
    /// For `auth_context_reuse`: the client the connection was authenticated for.
    pub authenticated_client: Option<ClientIdentity>,
    pub user: Option<String>,
    pub domain: Option<String>,
    pub workstation: Option<String>,
    pub challenge_key: Option<ChallengeKey>,
    pub server_challenge: Option<[u8; 8]>,
    pub request: RequestInfo,
    pub status: Option<u16>,
    pub outcome: Outcome,
    /// Proxy authentication (407, Proxy-Authorization).
    pub proxy: bool,
    pub header: Option<&'static str>,
    /// Kerberos for a `kerberos_handshake` and the reuse of a persisted Kerberos logon.
    pub mechanism: Mechanism,
    /// How the Type-3 logged on (NTLM verdicts that carried one).
    pub logon: Option<NtlmLogon>,
    pub channel_bindings: bool,
    /// Kerberos cleartext: of the request (kerberos_handshake) or of the logon a reused
    /// connection carries (auth_context_reuse).
    pub kerberos: Option<KerberosInfo>,
    /// The answer's `Persistent-Auth` (kerberos_handshake).
    pub persistent_auth: Option<bool>,
    /// For NTLM: how the client came to NTLM rather than Kerberos.
    pub fallback: Option<Fallback>,
}

/// Why a handshake is NTLM and not Kerberos, as far as the wire shows (`--handshakes`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Fallback {
    /// The Type-1 came inside SPNEGO (`Negotiate YII…`), not raw.
    pub spnego: bool,
    /// Kerberos was among the client's SPNEGO mechTypes.
    pub kerberos_offered: bool,
    pub reason: FallbackReason,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub krb_error_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub krb_error_name: Option<&'static str>,
}

/// Why NTLM and not Kerberos, first that applies (declared in alphabetical order: summaries
/// list the reasons in this order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FallbackReason {
    /// SPNEGO without Kerberos among the mechTypes.
    KerberosNotOffered,
    /// The server answered a Kerberos request on this connection with a KRB-ERROR.
    KrbError,
    /// Kerberos offered first, yet the token is NTLM: the client had no ticket for the service.
    NoKerberosTicket,
    /// Raw NTLM, no SPNEGO.
    NtlmDirect,
    /// NTLM listed before Kerberos.
    NtlmPreferred,
    /// The 401 offered NTLM and no Negotiate.
    ServerOffersNtlmOnly,
    /// A handshake whose Type-1 was not seen (summaries only).
    Unknown,
}

impl FallbackReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FallbackReason::KerberosNotOffered => "kerberos_not_offered",
            FallbackReason::KrbError => "krb_error",
            FallbackReason::NoKerberosTicket => "no_kerberos_ticket",
            FallbackReason::NtlmDirect => "ntlm_direct",
            FallbackReason::NtlmPreferred => "ntlm_preferred",
            FallbackReason::ServerOffersNtlmOnly => "server_offers_ntlm_only",
            FallbackReason::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for FallbackReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Verdict {
    pub fn new(class: Class, ts_ns: u64) -> Self {
        Self {
            class,
            cause: None,
            evidence: Vec::new(),
            ts_ns,
            challenge_leg: None,
            authenticate_leg: None,
            client: ClientIdentity::default(),
            authenticated_client: None,
            user: None,
            domain: None,
            workstation: None,
            challenge_key: None,
            server_challenge: None,
            request: RequestInfo::default(),
            status: None,
            outcome: Outcome::Unknown,
            proxy: false,
            header: None,
            mechanism: Mechanism::Ntlm,
            logon: None,
            channel_bindings: false,
            kerberos: None,
            persistent_auth: None,
            fallback: None,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The JSON names the events have always used: serde, `as_str` and `Display` agree.
    #[test]
    fn enum_names_are_the_event_names() {
        let classes = [
            (Class::ServerSplit, "server_split"),
            (Class::ConnectionSplit, "connection_split"),
            (Class::OrphanType3, "orphan_type3"),
            (Class::AbandonedChallenge, "abandoned_challenge"),
            (Class::AuthContextReuse, "auth_context_reuse"),
            (Class::Handshake, "ntlm_handshake"),
            (Class::KerberosHandshake, "kerberos_handshake"),
        ];
        for (c, name) in classes {
            assert_eq!(serde_json::to_value(c).unwrap(), name);
            assert_eq!(c.as_str(), name);
            assert_eq!(c.to_string(), name);
            assert_eq!(c.dataset().ends_with(".alert"), c.is_violation());
        }
        let violations: Vec<Class> = classes
            .iter()
            .map(|c| c.0)
            .filter(|c| c.is_violation())
            .collect();
        assert_eq!(violations, Class::VIOLATIONS);
        for r in [
            FallbackReason::KerberosNotOffered,
            FallbackReason::KrbError,
            FallbackReason::NoKerberosTicket,
            FallbackReason::NtlmDirect,
            FallbackReason::NtlmPreferred,
            FallbackReason::ServerOffersNtlmOnly,
            FallbackReason::Unknown,
        ]
        .windows(2)
        {
            assert!(
                r[0].as_str() < r[1].as_str(),
                "FallbackReason order is alphabetical"
            );
            assert!(r[0] < r[1]);
            assert_eq!(serde_json::to_value(r[0]).unwrap(), r[0].as_str());
        }
        for (c, name) in [
            (Closing::Fin, "fin"),
            (Closing::Rst, "rst"),
            (Closing::ConnectionClose, "connection_close"),
            (Closing::Reused, "reused"),
        ] {
            assert_eq!(serde_json::to_value(c).unwrap(), name);
        }
        assert_eq!(
            serde_json::to_value(Mechanism::Kerberos).unwrap(),
            "kerberos"
        );
        assert_eq!(serde_json::to_value(Mechanism::Ntlm).unwrap(), "ntlm");
    }
}
