//! Type-3 resolution: find the challenge a Type-3 answers (the join), mark it answered, and
//! decide the class — a healthy handshake, a split across connections or servers, or an
//! orphan nobody challenged.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::Arc,
};

use super::{
    Correlator,
    cause::{self, ChallengeSide},
    challenge::Challenge,
    verdict::{Cause, Class, ClientIdentity, Evidence, LegInfo, RequestInfo, Verdict},
};
use crate::decode::{AuthenticateInfo, Decoded};

/// The class of a joined Type-3, from where its challenge was: the same connection, the same
/// server on another connection, or another server (by address, or by names that differ
/// while the addresses agree).
pub fn classify(same_conn: bool, challenge: &LegInfo, authenticate: &LegInfo) -> Class {
    if same_conn {
        return Class::Handshake;
    }
    let names_differ = matches!(
        (&challenge.server_names, &authenticate.server_names),
        (Some(a), Some(b)) if a.differs(b)
    );
    if challenge.server != authenticate.server || names_differ {
        Class::ServerSplit
    } else {
        Class::ConnectionSplit
    }
}

impl Correlator {
    /// Finds the challenge a Type-3 on connection `id` answers and decides its verdict (kept
    /// until the response gives the outcome).
    pub(super) fn resolve_type3(
        &mut self,
        id: u64,
        now: u64,
        a: &AuthenticateInfo,
        t: &Decoded,
        identity: &ClientIdentity,
        request: &RequestInfo,
    ) -> Option<Verdict> {
        let mut auth_leg = self.conns.get(id)?.leg(now);
        if auth_leg.server_names.is_none() {
            auth_leg.server_names = self.server_names.get(&auth_leg.server).cloned();
        }
        let mut v = Verdict::new(Class::OrphanType3, now);
        v.user = a.user.clone();
        v.domain = a.domain.clone();
        v.workstation = a.workstation.clone();
        v.client = identity.clone();
        v.request = request.clone();
        v.proxy = t.header.is_proxy();
        v.header = Some(t.header.as_str());
        v.logon = Some(a.logon);
        v.channel_bindings = a.channel_bindings;
        v.challenge_key = a.id.as_ref().map(|i| i.key);
        let Some((ch_id, evidence)) = self.join(id, a, identity, now) else {
            return Some(self.unjoined(v, a, auth_leg));
        };
        let ch_conn = self.challenges.answer(ch_id)?;
        if let Some(c) = self.conns.get_mut(ch_conn)
            && c.challenge == Some(ch_id)
        {
            c.challenge = None;
        }
        let ch = self.challenges.get(ch_id)?;
        Some(self.joined(v, ch, id, evidence, auth_leg, identity))
    }

    /// The challenge a Type-3 on connection `id` answers, and the evidence of the join.
    fn join(
        &self,
        id: u64,
        a: &AuthenticateInfo,
        identity: &ClientIdentity,
        now: u64,
    ) -> Option<(u64, Vec<Evidence>)> {
        let here = self.conns.get(id)?.challenge;
        // 1. The exact join, MsvAvTimestamp + server names: first the challenge of this very
        //    connection when it is the one named (no lookup), then the index.
        if let Some(cid) = &a.id {
            let found = here
                .filter(|ch| self.challenges.get(*ch).is_some_and(|c| c.is_named_by(cid)))
                .or_else(|| self.challenges.named_by(cid, id))?;
            return Some((found, vec![Evidence::ChallengeKey]));
        }
        // 2. No timestamp (NTLMv1, or NTLMv2 without it): the challenge of this connection,
        //    else the same client's unanswered challenge within the window.
        if let Some(ch) = here
            && self.challenges.get(ch).is_some_and(|c| !c.answered)
        {
            return Some((ch, vec![Evidence::SameConnection]));
        }
        if !identity.known() {
            return None;
        }
        let found = self
            .challenges
            .latest_for(identity, now, self.cfg.window_ns)?;
        Some((found, vec![Evidence::ClientIdentityWindow]))
    }

    /// A Type-3 whose Type-2 is known nowhere: an orphan — or, if it names a server other
    /// than the one it reached, a server split proven by the names alone (no challenge leg to
    /// compare clients with, so the cause is unknown).
    fn unjoined(&self, mut v: Verdict, a: &AuthenticateInfo, auth_leg: LegInfo) -> Verdict {
        let reached = self.server_names.get(&auth_leg.server).cloned();
        v.authenticate_leg = Some(auth_leg);
        v.cause = Some(Cause::Unknown);
        if let (Some(named), Some(reached)) = (&a.names, &reached)
            && named.differs(reached)
        {
            v.class = Class::ServerSplit;
            v.evidence = vec![Evidence::ServerNames];
            // The challenging server is known only by these names, its address not at all.
            let unknown = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
            v.challenge_leg = Some(LegInfo {
                client: unknown,
                server: unknown,
                generation: 0,
                at_ns: 0,
                closed: None,
                server_names: Some(Arc::clone(named)),
            });
            return v;
        }
        v.evidence = vec![Evidence::None];
        v
    }

    /// A Type-3 joined to challenge `ch`: a handshake on its connection, else a split with
    /// its cause.
    fn joined(
        &self,
        mut v: Verdict,
        ch: &Challenge,
        id: u64,
        mut evidence: Vec<Evidence>,
        auth_leg: LegInfo,
        identity: &ClientIdentity,
    ) -> Verdict {
        v.fallback = ch.fallback.clone();
        v.server_challenge = Some(ch.info.server_challenge);
        v.challenge_key = ch.info.id.as_ref().map(|i| i.key).or(v.challenge_key);
        v.client = identity.merged(&ch.identity);
        // How the challenge's connection stood when the Type-3 came.
        let closed = self
            .conns
            .get(ch.conn)
            .and_then(|c| c.closed)
            .filter(|c| c.at_ns <= v.ts_ns);
        let ch_leg = ch.leg_closed_by(closed.map(|c| c.how));
        let same_conn = ch.conn == id;
        v.class = classify(same_conn, &ch.leg, &auth_leg);
        if same_conn {
            if !evidence.contains(&Evidence::SameConnection) {
                evidence.push(Evidence::SameConnection);
            }
        } else {
            let side = ChallengeSide {
                identity: &ch.identity,
                closing: ch.closing,
                closed: closed.is_some(),
                frontend_closed: ch
                    .identity
                    .frontend
                    .is_some_and(|f| self.frontend.announced_close(f, ch.leg.at_ns)),
            };
            let (c, e) = cause::split(side, identity);
            v.cause = Some(c);
            evidence.push(e);
        }
        v.evidence = evidence;
        v.challenge_leg = Some(ch_leg);
        v.authenticate_leg = Some(auth_leg);
        v
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::decode::ServerNames;

    fn leg(server: &str, name: Option<&str>) -> LegInfo {
        LegInfo {
            client: "198.18.0.10:40000".parse().unwrap(),
            server: server.parse().unwrap(),
            generation: 1,
            at_ns: 1,
            closed: None,
            server_names: name.map(|n| {
                Arc::new(ServerNames {
                    nb_computer_name: Some(n.into()),
                    ..ServerNames::default()
                })
            }),
        }
    }

    #[test]
    fn the_class_follows_where_the_challenge_was() {
        let web1 = leg("198.18.1.10:80", Some("WEB1"));
        let web2 = leg("198.18.1.11:80", Some("WEB2"));
        assert_eq!(classify(true, &web1, &web1), Class::Handshake);
        assert_eq!(classify(false, &web1, &web1), Class::ConnectionSplit);
        assert_eq!(classify(false, &web1, &web2), Class::ServerSplit);
        // One address (a VIP, a NAT) in front of two machines: the names tell them apart.
        let web2_same_addr = leg("198.18.1.10:80", Some("WEB2"));
        assert_eq!(classify(false, &web1, &web2_same_addr), Class::ServerSplit);
        assert_eq!(
            classify(false, &web1, &leg("198.18.1.10:80", None)),
            Class::ConnectionSplit
        );
    }
}
