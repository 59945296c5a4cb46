//! Kerberos and the NTLM fallback: why a client came to NTLM rather than Kerberos (from its
//! Type-1's SPNEGO wrapping, what the server offered and any KRB-ERROR on the connection), and
//! the `kerberos_handshake` verdict of a Kerberos request and its answer.

use super::{
    conn::PendingReq,
    verdict::{Class, Evidence, Fallback, FallbackReason, LegInfo, Mechanism, Outcome, Verdict},
};
use crate::decode::{Auth, Decoded, KerberosInfo, NegotiateInfo};

/// What a 401/407 offered (`WWW-Authenticate: Negotiate` / `NTLM`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offers {
    pub negotiate: bool,
    pub ntlm: bool,
}

impl Offers {
    /// The bare scheme offers among a response's tokens.
    pub fn of(tokens: &[Decoded]) -> Offers {
        tokens
            .iter()
            .fold(Offers::default(), |o, t| match (&t.auth, t.scheme) {
                (Auth::Offer, tracker_ntlm::Scheme::Negotiate) => Offers {
                    negotiate: true,
                    ..o
                },
                (Auth::Offer, tracker_ntlm::Scheme::Ntlm) => Offers { ntlm: true, ..o },
                _ => o,
            })
    }

    pub fn any(self) -> bool {
        self.negotiate || self.ntlm
    }
}

/// The first KRB-ERROR among a response's tokens.
pub fn krb_error(tokens: &[Decoded]) -> Option<&KerberosInfo> {
    tokens
        .iter()
        .filter_map(|t| t.negotiate.as_ref()?.kerberos.as_ref())
        .find(|k| k.error_code.is_some())
}

/// How a Type-1 shows the client came to NTLM: `negotiate` is the token's SPNEGO view (None
/// for raw NTLM), `krb_error` the last KRB-ERROR on the connection, `offers` what its last
/// 401 offered. First reason that applies.
pub fn fallback(
    negotiate: Option<&NegotiateInfo>,
    krb_error: Option<(i32, Option<&'static str>)>,
    offers: Offers,
) -> Fallback {
    let (spnego, mechs) = match negotiate {
        Some(n) => (n.spnego, n.mech_types.as_slice()),
        None => (false, &[][..]),
    };
    let offered = mechs.contains(&"kerberos");
    let reason = if krb_error.is_some() {
        FallbackReason::KrbError
    } else if offered && mechs.first() == Some(&"kerberos") {
        FallbackReason::NoKerberosTicket
    } else if offered {
        FallbackReason::NtlmPreferred
    } else if spnego {
        FallbackReason::KerberosNotOffered
    } else if offers.ntlm && !offers.negotiate {
        FallbackReason::ServerOffersNtlmOnly
    } else {
        FallbackReason::NtlmDirect
    };
    Fallback {
        spnego,
        kerberos_offered: offered,
        reason,
        krb_error_code: krb_error.map(|e| e.0),
        krb_error_name: krb_error.and_then(|e| e.1),
    }
}

/// A Kerberos request and its answer (`--handshakes`): the AP-REQ's cleartext, with the
/// answer's KRB-ERROR, if any, saying why it failed.
pub fn handshake(
    req: &PendingReq,
    leg: Option<LegInfo>,
    persistent_auth: Option<bool>,
    answer: &[Decoded],
    status: Option<u16>,
    now: u64,
) -> Verdict {
    let mut v = Verdict::new(Class::KerberosHandshake, now);
    v.mechanism = Mechanism::Kerberos;
    v.client = req.identity.clone();
    v.status = status;
    v.outcome = Outcome::from_status(status);
    v.persistent_auth = persistent_auth;
    v.evidence = vec![Evidence::SameConnection];
    v.authenticate_leg = leg;
    let mut k = req.kerberos.clone().unwrap_or_default();
    if let Some(e) = krb_error(answer) {
        k.error_code = e.error_code;
        k.error_name = e.error_name;
    }
    v.kerberos = Some(k);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spnego(mechs: &[&'static str]) -> NegotiateInfo {
        NegotiateInfo {
            spnego: true,
            mech_types: mechs.to_vec(),
            ..NegotiateInfo::default()
        }
    }

    #[test]
    fn the_first_reason_that_applies() {
        let none = Offers::default();
        let reason = |n: Option<&NegotiateInfo>, e, o| fallback(n, e, o).reason;
        let krb_first = spnego(&["kerberos", "ntlm"]);
        assert_eq!(
            reason(Some(&krb_first), Some((44, None)), none),
            FallbackReason::KrbError
        );
        assert_eq!(
            reason(Some(&krb_first), None, none),
            FallbackReason::NoKerberosTicket
        );
        assert_eq!(
            reason(Some(&spnego(&["ntlm", "kerberos"])), None, none),
            FallbackReason::NtlmPreferred
        );
        assert_eq!(
            reason(Some(&spnego(&["ntlm"])), None, none),
            FallbackReason::KerberosNotOffered
        );
        let ntlm_only = Offers {
            ntlm: true,
            negotiate: false,
        };
        assert_eq!(
            reason(None, None, ntlm_only),
            FallbackReason::ServerOffersNtlmOnly
        );
        let both = Offers {
            ntlm: true,
            negotiate: true,
        };
        assert_eq!(reason(None, None, both), FallbackReason::NtlmDirect);
        let f = fallback(Some(&krb_first), Some((44, Some("KRB_AP_ERR_X"))), none);
        assert!(f.spnego && f.kerberos_offered);
        assert_eq!(
            (f.krb_error_code, f.krb_error_name),
            (Some(44), Some("KRB_AP_ERR_X"))
        );
    }
}
