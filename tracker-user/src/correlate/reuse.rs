//! Authenticated-context reuse: once a Type-3 succeeds (or a Kerberos request with
//! `Persistent-Auth: true`), the server serves every later request on that connection as the
//! logged-on user. A request without credentials from another client on it is
//! `auth_context_reuse`. The kernel checks such connections itself ([`AuthUpdate`]).

use tracker_common::FlowKey;

use super::{
    conn::{PendingReq, ReqKind},
    verdict::{
        Cause, Class, ClientIdentity, Evidence, LegInfo, Mechanism, Outcome, RequestInfo, Verdict,
    },
};
use crate::{decode::KerberosInfo, http::IdentityValue};

/// The logon a connection carries.
#[derive(Clone, Debug)]
pub(super) struct AuthCtx {
    pub identity: ClientIdentity,
    pub user: Option<String>,
    pub domain: Option<String>,
    pub mechanism: Mechanism,
    /// The connection when it was authenticated.
    pub leg: LegInfo,
    pub kerberos: Option<KerberosInfo>,
}

/// What the kernel must know of an authenticated connection (docs/design.md, "The identity
/// check"), in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthUpdate {
    /// Requests on `key` (balancer → server) of this generation whose last
    /// `X-Forwarded-For` line equals `identity` may pass without a record.
    Set {
        key: FlowKey,
        generation: u64,
        identity: IdentityValue,
    },
    /// The connection is no longer authenticated (new handshake, failure, close).
    Clear { key: FlowKey },
}

/// What a request without credentials on an authenticated connection is.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Reuse {
    /// The logon's client.
    SameClient,
    /// The logon's client is unknown (no X-Forwarded-For or client port): nobody can tell.
    Unverifiable,
    /// Another or an unidentified client served as the logged-on user.
    OtherClient,
}

pub(super) fn check(ctx: &AuthCtx, identity: &ClientIdentity) -> Reuse {
    if !ctx.identity.known() {
        Reuse::Unverifiable
    } else if ctx.identity.differs(identity) {
        Reuse::OtherClient
    } else {
        Reuse::SameClient
    }
}

/// The `auth_context_reuse` verdict of a request on `leg` served under `ctx`.
pub(super) fn verdict(
    ctx: &AuthCtx,
    leg: LegInfo,
    identity: &ClientIdentity,
    request: &RequestInfo,
    now: u64,
) -> Verdict {
    let mut v = Verdict::new(Class::AuthContextReuse, now);
    v.cause = Some(Cause::BalancerReroute);
    v.evidence = vec![Evidence::ClientIdentity];
    v.challenge_leg = Some(ctx.leg.clone());
    v.authenticate_leg = Some(leg);
    v.client = identity.clone();
    v.authenticated_client = Some(ctx.identity.clone());
    v.user = ctx.user.clone();
    v.domain = ctx.domain.clone();
    v.request = request.clone();
    v.mechanism = ctx.mechanism;
    v.kerberos = ctx.kerberos.clone();
    v
}

/// What the answer to `req` does to the connection's logon: `Some(Some(ctx))` a new logon,
/// `Some(None)` none any more (a failed Type-3), `None` unchanged.
pub(super) fn after_response(
    req: &mut PendingReq,
    outcome: Outcome,
    persistent_auth: Option<bool>,
    leg: LegInfo,
) -> Option<Option<AuthCtx>> {
    match req.kind {
        ReqKind::Type3 if outcome == Outcome::Success => {
            let (user, domain) = req.user.take().unwrap_or((None, None));
            Some(Some(AuthCtx {
                identity: req.identity.clone(),
                user,
                domain,
                mechanism: Mechanism::Ntlm,
                leg,
                kerberos: None,
            }))
        }
        ReqKind::Type3 => Some(None),
        // Kerberos persists only when the server says so (IIS `authPersistNonNTLM`).
        ReqKind::Kerberos if outcome == Outcome::Success && persistent_auth == Some(true) => {
            Some(Some(AuthCtx {
                identity: req.identity.clone(),
                user: None,
                domain: None,
                mechanism: Mechanism::Kerberos,
                leg,
                kerberos: req.kerberos.clone(),
            }))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::net::SocketAddr;

    use super::*;

    fn leg() -> LegInfo {
        let a: SocketAddr = "198.18.0.10:40000".parse().unwrap();
        let b: SocketAddr = "198.18.1.10:80".parse().unwrap();
        LegInfo {
            client: a,
            server: b,
            generation: 1,
            at_ns: 1,
            closed: None,
            server_names: None,
        }
    }

    fn xff(ip: Option<&str>) -> ClientIdentity {
        ClientIdentity {
            forwarded_for: ip.map(String::from),
            ..ClientIdentity::default()
        }
    }

    fn pending(kind: ReqKind, client: Option<&str>) -> PendingReq {
        PendingReq {
            kind,
            key: FlowKey::default(),
            generation: 1,
            forwarded_for_line: None,
            identity: xff(client),
            at_ns: 1,
            verdict: None,
            user: Some((Some("alice".into()), Some("LAB".into()))),
            fallback: None,
            kerberos: None,
        }
    }

    #[test]
    fn another_or_unidentified_client_on_a_logon_is_reuse() {
        let ctx = |client| AuthCtx {
            identity: xff(client),
            user: Some("alice".into()),
            domain: None,
            mechanism: Mechanism::Ntlm,
            leg: leg(),
            kerberos: None,
        };
        let alice = ctx(Some("198.18.0.1"));
        assert_eq!(check(&alice, &xff(Some("198.18.0.1"))), Reuse::SameClient);
        assert_eq!(check(&alice, &xff(Some("198.18.0.2"))), Reuse::OtherClient);
        assert_eq!(check(&alice, &xff(None)), Reuse::OtherClient);
        assert_eq!(
            check(&ctx(None), &xff(Some("198.18.0.2"))),
            Reuse::Unverifiable
        );
        let v = verdict(
            &alice,
            leg(),
            &xff(Some("198.18.0.2")),
            &RequestInfo::default(),
            5,
        );
        assert_eq!(
            (v.class, v.user.as_deref()),
            (Class::AuthContextReuse, Some("alice"))
        );
        assert_eq!(v.authenticated_client, Some(xff(Some("198.18.0.1"))));
    }

    #[test]
    fn a_logon_starts_on_success_and_kerberos_only_when_persistent() {
        let mut t3 = pending(ReqKind::Type3, Some("198.18.0.1"));
        let ctx = after_response(&mut t3, Outcome::Success, None, leg())
            .unwrap()
            .unwrap();
        assert_eq!(
            (ctx.user.as_deref(), ctx.mechanism),
            (Some("alice"), Mechanism::Ntlm)
        );
        let mut failed = pending(ReqKind::Type3, None);
        assert!(matches!(
            after_response(&mut failed, Outcome::Failure, None, leg()),
            Some(None)
        ));
        let mut krb = pending(ReqKind::Kerberos, None);
        assert!(after_response(&mut krb, Outcome::Success, None, leg()).is_none());
        let persisted = after_response(&mut krb, Outcome::Success, Some(true), leg());
        assert_eq!(persisted.unwrap().unwrap().mechanism, Mechanism::Kerberos);
        let mut plain = pending(ReqKind::Plain, None);
        assert!(after_response(&mut plain, Outcome::Success, Some(true), leg()).is_none());
    }
}
