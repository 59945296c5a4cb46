//! Correlation (docs/design.md, "Correlation"): handshakes per connection and generation, the
//! Type-3 → Type-2 join across connections by the NTLMv2 AV pairs, client identity from
//! X-Forwarded-For / the client-port header / the frontend token join, time windows as the
//! last resort, and the outcome of each Type-3 and of each request on an authenticated
//! connection.
//!
//! Input: complete heads (with their decoded tokens) and closes, in capture order. Output:
//! [`Verdict`]s. State is bounded; idle state expires on [`Correlator::tick`].

//!
//! One module per concept: [`conn`] (connections and their slots), [`challenge`] (the
//! challenge table and its MsvAvTimestamp index), [`type3`] (the join and the class),
//! [`cause`], [`reuse`] (authenticated contexts and the kernel's identity check),
//! [`frontend`] (the frontend token join), [`kerberos`] (Kerberos and the NTLM fallback),
//! [`expiry`], [`stats`]. This module routes each head to them.

mod cause;
mod challenge;
mod conn;
mod expiry;
mod frontend;
mod kerberos;
mod reuse;
mod stats;
mod type3;
pub mod verdict;

use std::{net::SocketAddr, sync::Arc};

use tracker_common::RecordHeader;

pub use conn::flow_addrs;
pub use reuse::AuthUpdate;
pub use stats::{ClientSchemes, SchemeCounts, Stats, terminal_label};
pub use verdict::{
    Cause, Class, ClientIdentity, Closing, Evidence, Fallback, FallbackReason, LegInfo, Mechanism,
    Outcome, RequestInfo, Verdict,
};

use crate::{
    decode::{Auth, ChallengeInfo, Decoded, ServerNames},
    endpoint::Backend,
    hashing::{self, KeyedMap},
    http::{Head, StartLine},
};
use challenge::{Challenge, Challenges};
use conn::{Conns, MAX_PENDING, PendingReq, ReqKind};
use frontend::FrontendJoin;
use kerberos::Offers;

#[derive(Clone, Debug)]
pub struct Config {
    /// How long a Type-2 waits for its Type-3, and the window of identity joins.
    pub window_ns: u64,
    /// Connections idle this long are forgotten.
    pub idle_ns: u64,
    pub max_conns: usize,
    pub max_challenges: usize,
    pub backends: Vec<Backend>,
    pub frontend_ports: Vec<u16>,
    /// Emit healthy handshakes as `Class::Handshake` verdicts.
    pub handshakes: bool,
    /// Produce [`AuthUpdate`]s for the kernel's per-request identity check (live only, and
    /// only when `X-Forwarded-For` alone identifies a client: not with a client-port header).
    pub kernel_identity: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            window_ns: 30_000_000_000,
            idle_ns: 600_000_000_000,
            max_conns: 1_000_000,
            max_challenges: 1_000_000,
            backends: Vec::new(),
            frontend_ports: Vec::new(),
            handshakes: false,
            kernel_identity: false,
        }
    }
}

pub struct Correlator {
    cfg: Config,
    conns: Conns,
    challenges: Challenges,
    /// Names of each server, from the challenges it issued.
    server_names: KeyedMap<SocketAddr, Arc<ServerNames>>,
    frontend: FrontendJoin,
    last_ns: u64,
    pub stats: Stats,
    /// For the kernel's identity check; drained by the daemon (see `Config::kernel_identity`).
    pub auth_updates: Vec<AuthUpdate>,
    /// Schemes and NTLM fallbacks per client (replay's summary).
    pub clients: ClientSchemes,
}

/// What the credentials of one request were, as the response will need them.
struct RequestAuth {
    kind: ReqKind,
    verdict: Option<Verdict>,
    user: Option<(Option<String>, Option<String>)>,
    fallback: Option<Fallback>,
    kerberos: Option<crate::decode::KerberosInfo>,
    has_credentials: bool,
}

fn request_info(head: &Head) -> RequestInfo {
    match &head.start {
        Some(StartLine::Request {
            method,
            target,
            version,
        }) => RequestInfo {
            method: Some(method.clone()),
            path: Some(target.split('?').next().unwrap_or(target).to_string()),
            version: Some(version.clone()),
        },
        _ => RequestInfo::default(),
    }
}

impl Correlator {
    pub fn new(cfg: Config) -> Self {
        Self {
            frontend: FrontendJoin::new(cfg.max_challenges, cfg.window_ns),
            cfg,
            conns: Conns::default(),
            challenges: Challenges::default(),
            server_names: hashing::map(),
            last_ns: 0,
            stats: Stats::default(),
            auth_updates: Vec::new(),
            clients: ClientSchemes::default(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    pub fn open_challenges(&self) -> usize {
        self.challenges.open()
    }

    /// Emits a verdict if it is a violation or handshakes are wanted, and counts it.
    fn emit(&mut self, v: Verdict, out: &mut Vec<Verdict>) {
        if v.class.is_violation() || self.cfg.handshakes {
            self.stats.emitted(&v);
            out.push(v);
        }
    }

    /// The connection of a record, created (or renewed on a new generation) as needed.
    /// Returns its id and the direction (0: client→server).
    fn conn_for(
        &mut self,
        h: &RecordHeader,
        request: Option<bool>,
        out: &mut Vec<Verdict>,
    ) -> (u64, usize) {
        if let Some(found) = self.conns.find(h) {
            return found;
        }
        if self.conns.len() >= self.cfg.max_conns
            && let Some(mut c) = self.conns.evict_oldest()
        {
            // Verdicts still waiting for a response go out now, never with the connection.
            self.flush_pending(&mut c, out);
            self.auth_updates.extend(c.end_kernel_check());
            self.stats.evicted_connections += 1;
        }
        let (src, dst) = flow_addrs(&h.key);
        let (client, server, frontend) = conn::orient(&self.cfg, src, dst, request);
        self.stats.connections += 1;
        self.conns.open(h, client, server, frontend)
    }

    /// A FIN or RST on a flow that carried NTLM.
    pub fn on_close(&mut self, h: &RecordHeader, out: &mut Vec<Verdict>) {
        self.stats.closes += 1;
        self.last_ns = self.last_ns.max(h.timestamp_ns);
        let (id, _) = self.conn_for(h, None, out);
        if let Some(c) = self.conns.get_mut(id) {
            c.last_ns = h.timestamp_ns;
            self.auth_updates.extend(c.end_kernel_check());
            let how = if h.tcp_flags & tracker_common::tcp::RST != 0 {
                Closing::Rst
            } else {
                Closing::Fin
            };
            c.close(how, h.timestamp_ns);
        }
    }

    /// A complete head with its decoded tokens.
    pub fn on_head(
        &mut self,
        h: &RecordHeader,
        head: &Head,
        tokens: &[Decoded],
        out: &mut Vec<Verdict>,
    ) {
        self.stats.heads += 1;
        self.last_ns = self.last_ns.max(h.timestamp_ns);
        let request = if head.start.is_some() || !head.auth.is_empty() {
            Some(head.is_request())
        } else {
            None
        };
        let (id, d) = self.conn_for(h, request, out);
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        c.last_ns = h.timestamp_ns;
        if c.frontend {
            let client = c.client;
            self.stats.evicted_frontend_entries +=
                self.frontend
                    .observe(client, head.closes_connection(), tokens, h.timestamp_ns);
        } else if request.unwrap_or(d == 0) {
            self.on_request(id, h, head, tokens, out);
        } else {
            self.on_response(id, h, head, tokens, out);
        }
    }

    fn on_request(
        &mut self,
        id: u64,
        h: &RecordHeader,
        head: &Head,
        tokens: &[Decoded],
        out: &mut Vec<Verdict>,
    ) {
        let identity = ClientIdentity {
            forwarded_for: head.forwarded_for.clone(),
            port: head.client_port,
            frontend: self.frontend.client_of(tokens),
        };
        let request = request_info(head);
        if let Some(c) = self.conns.get_mut(id) {
            c.closing |= head.closes_connection();
        }
        let mut auth = self.request_auth(id, h.timestamp_ns, tokens, &identity, &request);
        if !auth.has_credentials {
            auth.verdict = self.check_reuse(id, h.timestamp_ns, &identity, &request);
        }
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        // A peer that never answers: the oldest request's verdict goes out without an outcome
        // (through `emit`, so it is counted and `--handshakes` filters it like any other).
        let overflow = if c.pending.len() >= MAX_PENDING {
            c.pending.pop_front().and_then(|mut old| old.verdict.take())
        } else {
            None
        };
        c.pending.push_back(PendingReq {
            kind: auth.kind,
            key: h.key,
            generation: h.generation,
            forwarded_for_line: head.forwarded_for_line,
            identity,
            at_ns: h.timestamp_ns,
            verdict: auth.verdict.map(Box::new),
            user: auth.user,
            fallback: auth.fallback,
            kerberos: auth.kerberos,
        });
        if let Some(v) = overflow {
            self.emit(*v, out);
        }
    }

    /// What a request's tokens do: a Type-1 restarts the handshake, a Type-3 is resolved
    /// against its challenge, Kerberos ends any NTLM logon.
    fn request_auth(
        &mut self,
        id: u64,
        now: u64,
        tokens: &[Decoded],
        identity: &ClientIdentity,
        request: &RequestInfo,
    ) -> RequestAuth {
        let mut r = RequestAuth {
            kind: ReqKind::Plain,
            verdict: None,
            user: None,
            fallback: None,
            kerberos: None,
            has_credentials: !tokens.is_empty(),
        };
        for t in tokens {
            match &t.auth {
                Auth::Negotiate { .. } => {
                    r.kind = ReqKind::Type1;
                    r.fallback = self
                        .conns
                        .get(id)
                        .map(|c| kerberos::fallback(t.negotiate.as_deref(), c.krb_error, c.offers));
                    self.deauthenticate(id);
                    self.restart_handshake(id);
                }
                Auth::Authenticate(a) => {
                    r.kind = ReqKind::Type3;
                    self.stats.authenticates += 1;
                    r.user = Some((a.user.clone(), a.domain.clone()));
                    r.verdict = self.resolve_type3(id, now, a, t, identity, request);
                }
                Auth::Kerberos | Auth::Spnego => {
                    if matches!(t.auth, Auth::Kerberos) {
                        self.stats.kerberos += 1;
                        r.kind = ReqKind::Kerberos;
                        r.kerberos = t.negotiate.as_ref().and_then(|n| n.kerberos.clone());
                    }
                    self.deauthenticate(id);
                }
                Auth::Undecodable(_) | Auth::Offer | Auth::Challenge(_) => {}
            }
        }
        r
    }

    /// A new Type-1 on connection `id`: its unanswered challenge is moot (not abandoned).
    fn restart_handshake(&mut self, id: u64) {
        if let Some(c) = self.conns.get_mut(id)
            && let Some(old) = c.challenge.take()
            && self.challenges.get(old).is_some_and(|ch| !ch.answered)
        {
            self.challenges.answer(old);
            self.stats.challenges_superseded += 1;
        }
    }

    /// The connection is no longer authenticated (a new handshake began on it).
    fn deauthenticate(&mut self, id: u64) {
        if let Some(c) = self.conns.get_mut(id) {
            c.auth = None;
            self.auth_updates.extend(c.end_kernel_check());
        }
    }

    /// The connection is authenticated for the client of `req`: tell the kernel, when the
    /// client's identity is one it can check.
    fn authenticated(&mut self, id: u64, req: &PendingReq) {
        if !self.cfg.kernel_identity {
            return;
        }
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        match req.forwarded_for_line {
            Some(identity) if c.closed.is_none() => {
                c.kernel_auth = Some(req.key);
                self.auth_updates.push(AuthUpdate::Set {
                    key: req.key,
                    generation: req.generation,
                    identity,
                });
            }
            _ => self.auth_updates.extend(c.end_kernel_check()),
        }
    }

    /// A request without credentials on a connection authenticated for a client.
    fn check_reuse(
        &mut self,
        id: u64,
        now: u64,
        identity: &ClientIdentity,
        request: &RequestInfo,
    ) -> Option<Verdict> {
        let c = self.conns.get(id)?;
        let ctx = c.auth.as_ref()?;
        match reuse::check(ctx, identity) {
            reuse::Reuse::SameClient => None,
            reuse::Reuse::Unverifiable => {
                self.stats.reuse_unverifiable += 1;
                None
            }
            reuse::Reuse::OtherClient => {
                Some(reuse::verdict(ctx, c.leg(now), identity, request, now))
            }
        }
    }

    fn on_response(
        &mut self,
        id: u64,
        h: &RecordHeader,
        head: &Head,
        tokens: &[Decoded],
        out: &mut Vec<Verdict>,
    ) {
        let now = h.timestamp_ns;
        let status = head.status();
        let closes = head.closes_connection();
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        c.closing |= closes;
        // 1xx responses precede the real one.
        let informational = status.is_some_and(|s| s < 200);
        let req = if informational {
            None
        } else {
            c.pending.pop_front()
        };
        if c.pending.is_empty() {
            // An idle connection keeps no queue: with many open connections its room for
            // several requests was most of the daemon's memory.
            c.pending = std::collections::VecDeque::new();
        }
        if req.is_none() && !informational {
            self.stats.responses_unmatched += 1;
        }
        let leg = c.leg(now);
        let offers = Offers::of(tokens);
        if offers.any() {
            c.offers = offers;
        }
        if let Some(k) = kerberos::krb_error(tokens) {
            c.krb_error = k.error_code.map(|code| (code, k.error_name));
        }
        for t in tokens {
            if let Auth::Challenge(info) = &t.auth {
                self.new_challenge(id, leg.clone(), info, t, req.as_ref(), closes);
            }
        }
        let refused = matches!(status, Some(401 | 407));
        match req {
            Some(req) => self.answered(id, req, head, tokens, status, now, out),
            // The answer to a request the kernel passed silently: a 401 still means the
            // server holds no logon on this connection any more.
            None if refused => self.deauthenticate(id),
            None => {}
        }
    }

    /// The response to `req`: the outcome completes the request's verdict, and the
    /// connection's logon follows. One function because the order matters for one response:
    /// a refused reuse is dropped before counting, the verdict is emitted before the logon
    /// changes, and the kernel hears of the new logon last.
    #[allow(clippy::too_many_arguments)]
    fn answered(
        &mut self,
        id: u64,
        mut req: PendingReq,
        head: &Head,
        answer: &[Decoded],
        status: Option<u16>,
        now: u64,
        out: &mut Vec<Verdict>,
    ) {
        let outcome = Outcome::from_status(status);
        let refused = outcome == Outcome::Failure;
        if refused
            && matches!(req.kind, ReqKind::Plain)
            && req
                .verdict
                .take_if(|v| v.class == Class::AuthContextReuse)
                .is_some()
        {
            // Refused, so not served as the other client's user (IIS authPersistSingleRequest
            // re-challenges every request): no reuse happened.
            self.stats.reuse_refused += 1;
        }
        if matches!(req.kind, ReqKind::Type3 | ReqKind::Kerberos)
            && let Some(server) = self.conns.get(id).map(|c| c.server)
        {
            let names = self.server_names.get(&server);
            let name = names.and_then(|n| {
                n.dns_computer_name
                    .as_deref()
                    .or(n.nb_computer_name.as_deref())
            });
            self.stats.answered_by(
                server,
                matches!(req.kind, ReqKind::Kerberos),
                outcome == Outcome::Success,
                name,
            );
        }
        if let Some(mut v) = req.verdict.take() {
            v.status = status;
            v.outcome = outcome;
            if v.class == Class::Handshake {
                if outcome == Outcome::Success {
                    self.stats.handshakes_ok += 1;
                } else {
                    self.stats.handshakes_failed += 1;
                }
                if let Some(c) = &v.challenge_leg {
                    self.stats
                        .handshake_seconds
                        .observe(now.saturating_sub(c.at_ns));
                }
            }
            if matches!(req.kind, ReqKind::Type3) {
                self.clients.ntlm(&v.client, &v);
            }
            self.emit(*v, out);
        }
        if matches!(req.kind, ReqKind::Kerberos) {
            self.clients.kerberos(&req.identity);
            if outcome == Outcome::Success {
                self.stats.kerberos_ok += 1;
            } else {
                self.stats.kerberos_failed += 1;
            }
            if self.cfg.handshakes {
                let leg = self.conns.get(id).map(|c| c.leg(req.at_ns));
                out.push(kerberos::handshake(
                    &req,
                    leg,
                    head.persistent_auth,
                    answer,
                    status,
                    now,
                ));
            }
        }
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        let leg = c.leg(req.at_ns);
        match reuse::after_response(&mut req, outcome, head.persistent_auth, leg) {
            Some(Some(ctx)) => {
                c.auth = Some(Box::new(ctx));
                self.authenticated(id, &req);
            }
            Some(None) => self.deauthenticate(id),
            None if refused => self.deauthenticate(id),
            None => {}
        }
    }

    fn new_challenge(
        &mut self,
        conn: u64,
        mut leg: LegInfo,
        info: &ChallengeInfo,
        t: &Decoded,
        req: Option<&PendingReq>,
        closes: bool,
    ) {
        self.stats.challenges += 1;
        if self.challenges.len() >= self.cfg.max_challenges && self.challenges.evict_oldest() {
            self.stats.evicted_challenges += 1;
        }
        if !info.names.is_empty() {
            self.server_names
                .insert(leg.server, Arc::clone(&info.names));
        }
        let mut identity = req.map(|r| r.identity.clone()).unwrap_or_default();
        if identity.frontend.is_none() {
            identity.frontend = self.frontend.client_of(std::slice::from_ref(t));
        }
        leg.server_names = Some(Arc::clone(&info.names));
        let closing = closes || self.conns.get(conn).is_some_and(|c| c.closing);
        let (id, crowded) = self.challenges.insert(Challenge {
            conn,
            leg,
            info: info.clone(),
            identity,
            proxy: t.header.is_proxy(),
            closing,
            answered: false,
            expired: false,
            fallback: req.and_then(|r| r.fallback.clone()),
        });
        self.stats.duplicate_challenge_timestamps += u64::from(crowded);
        if let Some(c) = self.conns.get_mut(conn) {
            c.names = Some(Arc::clone(&info.names));
            if let Some(old) = c.challenge.replace(id)
                && self.challenges.get(old).is_some_and(|ch| !ch.answered)
            {
                self.challenges.answer(old);
                self.stats.challenges_superseded += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests;
