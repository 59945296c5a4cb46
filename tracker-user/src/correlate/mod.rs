//! Correlation (docs/design.md, "Correlation"): handshakes per connection and generation, the
//! Type-3 → Type-2 join across connections by the NTLMv2 AV pairs, client identity from
//! X-Forwarded-For / the client-port header / the frontend token join, time windows as the
//! last resort, and the outcome of each Type-3 and of each request on an authenticated
//! connection.
//!
//! Input: complete heads (with their decoded tokens) and closes, in capture order. Output:
//! [`Verdict`]s. State is bounded; idle state expires on [`Correlator::tick`].

pub mod verdict;

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
};

use tracker_common::{FlowKey, RecordHeader};
use tracker_ntlm::hash::TokenHash;

pub use verdict::{
    Cause, Class, ClientIdentity, Evidence, Fallback, LegInfo, Outcome, RequestInfo, Verdict,
};

use crate::{
    decode::{Auth, AuthenticateInfo, ChallengeInfo, Decoded, KerberosInfo, ServerNames},
    endpoint::Backend,
    http::{Head, IdentityValue, StartLine},
};

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

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Stats {
    /// Challenges whose MsvAvTimestamp was shared by more than `MAX_SAME_TIMESTAMP` others
    /// (replayed or forged Type-2s): the oldest left the timestamp index.
    pub duplicate_challenge_timestamps: u64,
    pub heads: u64,
    pub closes: u64,
    pub connections: u64,
    pub challenges: u64,
    pub authenticates: u64,
    pub handshakes_ok: u64,
    pub handshakes_failed: u64,
    pub kerberos: u64,
    pub alerts: HashMap<&'static str, u64>,
    /// A new Type-1 on a connection whose Type-2 was never answered (a restart, not reported).
    pub challenges_superseded: u64,
    /// Unanswered challenges on open connections when the capture or the daemon ended.
    pub challenges_open_at_end: u64,
    pub responses_unmatched: u64,
    /// Requests on an authenticated connection whose client cannot be told apart (no XFF).
    pub reuse_unverifiable: u64,
    /// Another client's request on an authenticated connection answered 401/407: the
    /// server did not serve it as the logged-on user, so no alert.
    pub reuse_refused: u64,
    pub evicted_connections: u64,
    pub evicted_challenges: u64,
}

/// How a connection ended.
#[derive(Clone, Copy, Debug)]
struct Closed {
    how: &'static str,
    at_ns: u64,
}

#[derive(Debug)]
enum ReqKind {
    Plain,
    Type1,
    Type3,
    Kerberos,
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

#[derive(Debug)]
struct PendingReq {
    kind: ReqKind,
    /// The request's flow (balancer → server) and generation, and its identity line.
    key: FlowKey,
    generation: u64,
    forwarded_for_line: Option<IdentityValue>,
    identity: ClientIdentity,
    at_ns: u64,
    /// A verdict that waits for the response's status.
    verdict: Option<Verdict>,
    /// For a healthy Type-3: who authenticated.
    user: Option<(Option<String>, Option<String>)>,
    /// For a Type-1: how the client came to NTLM.
    fallback: Option<Fallback>,
    /// For a Kerberos request: the AP-REQ's cleartext.
    kerberos: Option<KerberosInfo>,
}

#[derive(Clone, Debug)]
struct AuthCtx {
    identity: ClientIdentity,
    user: Option<String>,
    domain: Option<String>,
    mechanism: &'static str,
    leg: LegInfo,
    kerberos: Option<KerberosInfo>,
}

#[derive(Debug)]
struct Conn {
    client: SocketAddr,
    server: SocketAddr,
    /// Generation per direction: 0 client→server, 1 server→client.
    gens: [Option<u64>; 2],
    frontend: bool,
    pending: VecDeque<PendingReq>,
    /// The unanswered challenge issued on this connection.
    challenge: Option<u64>,
    auth: Option<AuthCtx>,
    /// The flow whose identity the kernel checks (an `AuthUpdate::Set` was issued).
    kernel_auth: Option<FlowKey>,
    closed: Option<Closed>,
    /// The last request or response said the connection ends after it.
    closing: bool,
    last_ns: u64,
    names: Option<Arc<ServerNames>>,
    /// The last KRB-ERROR the server answered on this connection (code, name).
    krb_error: Option<(i32, Option<&'static str>)>,
    /// What the last 401/407 offered: `OFFER_*` bits.
    offers: u8,
}

const OFFER_NEGOTIATE: u8 = 1;
const OFFER_NTLM: u8 = 2;

impl Conn {
    /// Ends the kernel's identity check of this connection, if it had one.
    fn end_kernel_check(&mut self) -> Option<AuthUpdate> {
        self.kernel_auth.take().map(|key| AuthUpdate::Clear { key })
    }

    fn leg(&self, at_ns: u64) -> LegInfo {
        LegInfo {
            client: self.client,
            server: self.server,
            generation: self.gens[0].or(self.gens[1]).unwrap_or(0),
            at_ns,
            closed: self.closed.map(|c| c.how),
            server_names: self.names.clone(),
        }
    }
}

#[derive(Debug)]
struct Challenge {
    conn: u64,
    leg: LegInfo,
    info: ChallengeInfo,
    identity: ClientIdentity,
    proxy: bool,
    /// The request that got the challenge said the connection would close.
    closing: bool,
    answered: bool,
    expired: bool,
    fallback: Option<Fallback>,
}

#[derive(Clone, Copy, Debug)]
struct FrontRef {
    client: SocketAddr,
    at_ns: u64,
}

type ConnKey = (SocketAddr, SocketAddr);

/// Challenges indexed under one MsvAvTimestamp at most.
const MAX_SAME_TIMESTAMP: usize = 64;

#[derive(Default)]
struct Slot {
    cur: u64,
    prev: Option<u64>,
}

pub struct Correlator {
    cfg: Config,
    slots: HashMap<ConnKey, Slot>,
    /// Ids grow with creation: the first entry is the oldest, evicted first when full.
    conns: BTreeMap<u64, Conn>,
    next_conn: u64,
    challenges: BTreeMap<u64, Challenge>,
    by_timestamp: HashMap<u64, Vec<u64>>,
    next_challenge: u64,
    /// Names of each server, from the challenges it issued.
    server_names: HashMap<SocketAddr, Arc<ServerNames>>,
    frontend_tokens: HashMap<TokenHash, FrontRef>,
    /// Frontend connections (client address) whose HTTP said the connection ends after the
    /// message (HTTP/1.0, `Connection: close`), with when: a client that had to reconnect.
    frontend_closing: HashMap<SocketAddr, u64>,
    last_ns: u64,
    pub stats: Stats,
    /// For the kernel's identity check; drained by the daemon (see `Config::kernel_identity`).
    pub auth_updates: Vec<AuthUpdate>,
    /// Schemes and NTLM fallbacks per client (replay's summary).
    pub clients: ClientSchemes,
}

/// Clients at most in [`ClientSchemes`]; later ones are counted together.
const MAX_SUMMARY_CLIENTS: usize = 10_000;

/// Which schemes each client authenticated with through the balancer, and why NTLM.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ClientSchemes {
    pub clients: BTreeMap<String, SchemeCounts>,
    /// Clients beyond the bound, all counted under `other_clients`.
    pub other_clients: SchemeCounts,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct SchemeCounts {
    pub kerberos: u64,
    pub ntlm: u64,
    /// NTLM handshakes by fallback reason (see [`Fallback::reason`]).
    pub ntlm_reasons: BTreeMap<&'static str, u64>,
}

impl ClientSchemes {
    fn entry(&mut self, client: &ClientIdentity) -> &mut SchemeCounts {
        let label = client
            .forwarded_for
            .clone()
            .or_else(|| client.frontend.map(|f| f.ip().to_string()))
            .unwrap_or_else(|| "unidentified".to_string());
        if !self.clients.contains_key(&label) && self.clients.len() >= MAX_SUMMARY_CLIENTS {
            return &mut self.other_clients;
        }
        self.clients.entry(label).or_default()
    }

    fn kerberos(&mut self, client: &ClientIdentity) {
        self.entry(client).kerberos += 1;
    }

    /// One line per client, those with the most NTLM first (who still falls back, and why),
    /// at most `limit` lines plus one for the rest.
    pub fn report(&self, limit: usize) -> Vec<String> {
        let mut rows: Vec<(&str, &SchemeCounts)> =
            self.clients.iter().map(|(k, v)| (k.as_str(), v)).collect();
        if self.other_clients.kerberos + self.other_clients.ntlm > 0 {
            rows.push(("(clients beyond the summary bound)", &self.other_clients));
        }
        rows.sort_by(|a, b| {
            b.1.ntlm
                .cmp(&a.1.ntlm)
                .then(b.1.kerberos.cmp(&a.1.kerberos))
        });
        let mut out: Vec<String> = rows
            .iter()
            .take(limit)
            .map(|(client, c)| {
                let why = c
                    .ntlm_reasons
                    .iter()
                    .map(|(r, n)| format!("{r} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                if why.is_empty() {
                    format!("{client:<24} kerberos {:<6} ntlm {}", c.kerberos, c.ntlm)
                } else {
                    format!(
                        "{client:<24} kerberos {:<6} ntlm {} ({why})",
                        c.kerberos, c.ntlm
                    )
                }
            })
            .collect();
        if rows.len() > limit {
            out.push(format!("… and {} more clients", rows.len() - limit));
        }
        out
    }

    fn ntlm(&mut self, client: &ClientIdentity, fallback: Option<&Fallback>) {
        let e = self.entry(client);
        e.ntlm += 1;
        *e.ntlm_reasons
            .entry(fallback.map_or("unknown", |f| f.reason))
            .or_default() += 1;
    }
}

fn sock(addr: &[u8; 16], family: u8, port: u16) -> SocketAddr {
    let v6 = Ipv6Addr::from(*addr);
    let ip = match (family, v6.to_ipv4_mapped()) {
        (4, Some(v4)) => IpAddr::V4(v4),
        (4, None) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        _ => IpAddr::V6(v6),
    };
    SocketAddr::new(ip, port)
}

pub fn flow_addrs(k: &FlowKey) -> (SocketAddr, SocketAddr) {
    (
        sock(&k.src_addr, k.family, k.src_port),
        sock(&k.dst_addr, k.family, k.dst_port),
    )
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
            cfg,
            slots: HashMap::new(),
            conns: BTreeMap::new(),
            next_conn: 1,
            challenges: BTreeMap::new(),
            by_timestamp: HashMap::new(),
            next_challenge: 1,
            server_names: HashMap::new(),
            frontend_tokens: HashMap::new(),
            frontend_closing: HashMap::new(),
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
        self.challenges
            .values()
            .filter(|c| !c.answered && !c.expired)
            .count()
    }

    fn is_backend(&self, a: SocketAddr) -> bool {
        self.cfg.backends.iter().any(|b| b.contains(a))
    }

    fn is_frontend(&self, a: SocketAddr) -> bool {
        self.cfg.frontend_ports.contains(&a.port())
    }

    /// Which side serves: (client, server, frontend leg).
    fn orient(
        &self,
        src: SocketAddr,
        dst: SocketAddr,
        request: Option<bool>,
    ) -> (SocketAddr, SocketAddr, bool) {
        if self.is_backend(dst) {
            (src, dst, false)
        } else if self.is_backend(src) {
            (dst, src, false)
        } else if self.is_frontend(dst) {
            (src, dst, true)
        } else if self.is_frontend(src) {
            (dst, src, true)
        } else if request == Some(false) {
            (dst, src, false)
        } else {
            (src, dst, false)
        }
    }

    /// The connection of a record, created (or renewed on a new generation) as needed.
    /// Returns its id and the direction (0: client→server).
    fn conn_for(&mut self, h: &RecordHeader, request: Option<bool>) -> (u64, usize) {
        let (src, dst) = flow_addrs(&h.key);
        let key = if src <= dst { (src, dst) } else { (dst, src) };
        let existing = self.slots.get(&key).map(|s| (s.cur, s.prev));
        if let Some((cur, prev)) = existing
            && let Some(c) = self.conns.get(&cur)
        {
            let d = usize::from(src != c.client);
            match c.gens[d] {
                None => {
                    if let Some(c) = self.conns.get_mut(&cur) {
                        c.gens[d] = Some(h.generation);
                    }
                    return (cur, d);
                }
                Some(g) if g == h.generation => return (cur, d),
                Some(_) => {
                    if let Some(p) = prev
                        && let Some(pc) = self.conns.get(&p)
                        && pc.gens[usize::from(src != pc.client)] == Some(h.generation)
                    {
                        return (p, usize::from(src != pc.client));
                    }
                }
            }
        }
        // A new connection (or a new use of the 5-tuple).
        if self.conns.len() >= self.cfg.max_conns {
            self.evict_conn();
        }
        let (client, server, frontend) = self.orient(src, dst, request);
        let id = self.next_conn;
        self.next_conn += 1;
        self.stats.connections += 1;
        let d = usize::from(src != client);
        let mut gens = [None, None];
        gens[d] = Some(h.generation);
        self.conns.insert(
            id,
            Conn {
                client,
                server,
                gens,
                frontend,
                pending: VecDeque::new(),
                challenge: None,
                auth: None,
                kernel_auth: None,
                closed: None,
                closing: false,
                last_ns: h.timestamp_ns,
                names: None,
                krb_error: None,
                offers: 0,
            },
        );
        let slot = self.slots.entry(key).or_default();
        if slot.cur != 0 {
            let old = slot.cur;
            slot.prev = Some(old);
            if let Some(oc) = self.conns.get_mut(&old)
                && oc.closed.is_none()
            {
                oc.closed = Some(Closed {
                    how: "reused",
                    at_ns: h.timestamp_ns,
                });
            }
        }
        slot.cur = id;
        (id, d)
    }

    /// Evicts the oldest connection (ids grow with creation: O(log n), not a scan).
    fn evict_conn(&mut self) {
        if let Some(id) = self.conns.keys().next().copied() {
            if let Some(mut c) = self.conns.remove(&id) {
                self.auth_updates.extend(c.end_kernel_check());
            }
            self.stats.evicted_connections += 1;
        }
    }

    /// A FIN or RST on a flow that carried NTLM.
    pub fn on_close(&mut self, h: &RecordHeader) {
        self.stats.closes += 1;
        self.last_ns = self.last_ns.max(h.timestamp_ns);
        let (id, _) = self.conn_for(h, None);
        if let Some(c) = self.conns.get_mut(&id) {
            c.last_ns = h.timestamp_ns;
            self.auth_updates.extend(c.end_kernel_check());
            if c.closed.is_none() {
                c.closed = Some(Closed {
                    how: if h.tcp_flags & 0x04 != 0 {
                        "rst"
                    } else {
                        "fin"
                    },
                    at_ns: h.timestamp_ns,
                });
            }
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
        let (id, d) = self.conn_for(h, request);
        let Some(frontend) = self.conns.get_mut(&id).map(|c| {
            c.last_ns = h.timestamp_ns;
            c.frontend
        }) else {
            return;
        };
        let is_request = match request {
            Some(r) => r,
            None => d == 0,
        };
        if frontend {
            self.on_frontend(id, head, tokens, h.timestamp_ns);
            return;
        }
        if is_request {
            self.on_request(id, h, head, tokens, out);
        } else {
            self.on_response(id, h, head, tokens, out);
        }
    }

    fn on_frontend(&mut self, id: u64, head: &Head, tokens: &[Decoded], now: u64) {
        let Some(client) = self.conns.get(&id).map(|c| c.client) else {
            return;
        };
        if head.closes_connection() && !tokens.is_empty() {
            if self.frontend_closing.len() >= self.cfg.max_challenges {
                let window = self.cfg.window_ns;
                self.frontend_closing
                    .retain(|_, at| now.saturating_sub(*at) <= window);
            }
            self.frontend_closing.insert(client, now);
        }
        for t in tokens {
            if let Some(hash) = t.hash {
                if self.frontend_tokens.len() >= self.cfg.max_challenges {
                    let window = self.cfg.window_ns;
                    self.frontend_tokens
                        .retain(|_, f| now.saturating_sub(f.at_ns) <= window);
                }
                self.frontend_tokens
                    .insert(hash, FrontRef { client, at_ns: now });
            }
        }
    }

    fn frontend_of(&self, tokens: &[Decoded]) -> Option<SocketAddr> {
        tokens
            .iter()
            .filter_map(|t| t.hash)
            .find_map(|h| self.frontend_tokens.get(&h).map(|f| f.client))
    }

    fn on_request(
        &mut self,
        id: u64,
        h: &RecordHeader,
        head: &Head,
        tokens: &[Decoded],
        out: &mut Vec<Verdict>,
    ) {
        let now = h.timestamp_ns;
        let identity = ClientIdentity {
            forwarded_for: head.forwarded_for.clone(),
            port: head.client_port,
            frontend: self.frontend_of(tokens),
        };
        let request = request_info(head);
        let closes = head.closes_connection();
        if let Some(c) = self.conns.get_mut(&id) {
            c.closing |= closes;
        }
        let mut kind = ReqKind::Plain;
        let mut verdict = None;
        let mut user = None;
        let mut fallback = None;
        let mut kerberos = None;
        let mut has_credentials = false;
        for t in tokens {
            match &t.auth {
                Auth::Negotiate { .. } => {
                    has_credentials = true;
                    kind = ReqKind::Type1;
                    fallback = self.fallback_of(id, t);
                    self.deauthenticate(id);
                    if let Some(c) = self.conns.get_mut(&id) {
                        if let Some(old) = c.challenge.take()
                            && let Some(ch) = self.challenges.get_mut(&old)
                            && !ch.answered
                        {
                            // A restarted handshake: the old challenge is moot.
                            ch.answered = true;
                            self.stats.challenges_superseded += 1;
                        }
                    }
                }
                Auth::Authenticate(a) => {
                    has_credentials = true;
                    kind = ReqKind::Type3;
                    self.stats.authenticates += 1;
                    user = Some((a.user.clone(), a.domain.clone()));
                    verdict = self.resolve_type3(id, h, a, t, &identity, &request);
                }
                Auth::Kerberos | Auth::Spnego => {
                    has_credentials = true;
                    if matches!(t.auth, Auth::Kerberos) {
                        self.stats.kerberos += 1;
                        kind = ReqKind::Kerberos;
                        kerberos = t.negotiate.as_ref().and_then(|n| n.kerberos.clone());
                    }
                    self.deauthenticate(id);
                }
                Auth::Undecodable(_) | Auth::Offer | Auth::Challenge(_) => {
                    has_credentials = true;
                }
            }
        }
        if !has_credentials {
            verdict = self.check_reuse(id, h, &identity, &request);
        }
        if let Some(c) = self.conns.get_mut(&id) {
            if c.pending.len() >= 64
                && let Some(mut old) = c.pending.pop_front()
                && let Some(v) = old.verdict.take()
            {
                out.push(v);
            }
            c.pending.push_back(PendingReq {
                kind,
                key: h.key,
                generation: h.generation,
                forwarded_for_line: head.forwarded_for_line,
                identity,
                at_ns: now,
                verdict,
                user,
                fallback,
                kerberos,
            });
        }
    }

    /// How a Type-1 shows the client came to NTLM rather than Kerberos.
    fn fallback_of(&self, id: u64, t: &Decoded) -> Option<Fallback> {
        let c = self.conns.get(&id)?;
        let (spnego, mechs) = match &t.negotiate {
            Some(n) => (n.spnego, n.mech_types.as_slice()),
            None => (false, &[][..]),
        };
        let offered = mechs.contains(&"kerberos");
        let reason = if c.krb_error.is_some() {
            "krb_error"
        } else if offered && mechs.first() == Some(&"kerberos") {
            "no_kerberos_ticket"
        } else if offered {
            "ntlm_preferred"
        } else if spnego {
            "kerberos_not_offered"
        } else if c.offers & OFFER_NTLM != 0 && c.offers & OFFER_NEGOTIATE == 0 {
            "server_offers_ntlm_only"
        } else {
            "ntlm_direct"
        };
        Some(Fallback {
            spnego,
            kerberos_offered: offered,
            reason,
            krb_error_code: c.krb_error.map(|e| e.0),
            krb_error_name: c.krb_error.and_then(|e| e.1),
        })
    }

    /// The connection is no longer authenticated (a new handshake began on it).
    fn deauthenticate(&mut self, id: u64) {
        if let Some(c) = self.conns.get_mut(&id) {
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
        let Some(c) = self.conns.get_mut(&id) else {
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
        h: &RecordHeader,
        identity: &ClientIdentity,
        request: &RequestInfo,
    ) -> Option<Verdict> {
        let c = self.conns.get(&id)?;
        let ctx = c.auth.as_ref()?;
        if !ctx.identity.known() {
            self.stats.reuse_unverifiable += 1;
            return None;
        }
        if !ctx.identity.differs(identity) {
            return None;
        }
        let mut v = Verdict::new(Class::AuthContextReuse, h.timestamp_ns);
        v.cause = Some(Cause::BalancerReroute);
        v.evidence = vec![Evidence::ClientIdentity];
        v.challenge_leg = Some(ctx.leg.clone());
        v.authenticate_leg = Some(c.leg(h.timestamp_ns));
        v.client = identity.clone();
        v.authenticated_client = Some(ctx.identity.clone());
        v.user = ctx.user.clone();
        v.domain = ctx.domain.clone();
        v.request = request.clone();
        v.mechanism = ctx.mechanism;
        v.kerberos = ctx.kerberos.clone();
        Some(v)
    }

    /// Finds the challenge a Type-3 answers and, when it was issued elsewhere, the verdict.
    fn resolve_type3(
        &mut self,
        id: u64,
        h: &RecordHeader,
        a: &AuthenticateInfo,
        t: &Decoded,
        identity: &ClientIdentity,
        request: &RequestInfo,
    ) -> Option<Verdict> {
        let now = h.timestamp_ns;
        let conn = self.conns.get(&id)?;
        let auth_leg = conn.leg(now);
        let mut evidence = Vec::new();
        // 1. The exact join: MsvAvTimestamp + server names.
        let mut found = None;
        // The challenge of this very connection, when it is the one named: no lookup needed.
        if let Some(cid) = &a.id
            && let Some(ch) = conn.challenge
            && self.challenges.get(&ch).is_some_and(|c| {
                c.info
                    .id
                    .as_ref()
                    .is_some_and(|i| i.timestamp == cid.timestamp)
                    && c.info.names == cid.names
            })
        {
            found = Some(ch);
            evidence.push(Evidence::ChallengeKey);
        }
        if found.is_none()
            && let Some(cid) = &a.id
        {
            let matching: Vec<u64> = self
                .by_timestamp
                .get(&cid.timestamp)
                .into_iter()
                .flatten()
                .copied()
                .filter(|ch| {
                    self.challenges
                        .get(ch)
                        .is_some_and(|c| c.info.names == cid.names)
                })
                .collect();
            found = matching
                .iter()
                .copied()
                .find(|ch| self.challenges.get(ch).is_some_and(|c| c.conn == id))
                .or_else(|| {
                    matching
                        .iter()
                        .copied()
                        .find(|ch| self.challenges.get(ch).is_some_and(|c| !c.answered))
                })
                .or_else(|| matching.first().copied());
            if found.is_some() {
                evidence.push(Evidence::ChallengeKey);
            }
        }
        // 2. No timestamp (NTLMv1, or NTLMv2 without it): the challenge of this connection,
        //    else the same client's unanswered challenge within the window.
        if found.is_none() && a.id.is_none() {
            if let Some(ch) = conn.challenge
                && self.challenges.get(&ch).is_some_and(|c| !c.answered)
            {
                found = Some(ch);
                evidence.push(Evidence::SameConnection);
            } else if identity.known() {
                let window = self.cfg.window_ns;
                found = self
                    .challenges
                    .iter()
                    .filter(|(_, c)| {
                        !c.answered
                            && now.saturating_sub(c.leg.at_ns) <= window
                            && c.identity.same_as(identity)
                    })
                    .max_by_key(|(_, c)| c.leg.at_ns)
                    .map(|(k, _)| *k);
                if found.is_some() {
                    evidence.push(Evidence::ClientIdentityWindow);
                }
            }
        }
        let mut v = Verdict::new(Class::OrphanType3, now);
        v.user = a.user.clone();
        v.domain = a.domain.clone();
        v.workstation = a.workstation.clone();
        v.client = identity.clone();
        v.request = request.clone();
        v.proxy = t.header.is_proxy();
        v.header = Some(t.header.as_str());
        v.ntlmv2 = Some(a.ntlmv2);
        v.channel_bindings = a.channel_bindings;
        v.challenge_key = a.id.as_ref().map(|i| i.key);
        let mut auth_leg = auth_leg;
        if auth_leg.server_names.is_none() {
            auth_leg.server_names = self.server_names.get(&auth_leg.server).cloned();
        }
        let Some(ch_id) = found else {
            // The Type-2 is known nowhere. If the Type-3 names a server other than the
            // one it reached, that alone proves a server split.
            let reached = self.server_names.get(&auth_leg.server).cloned();
            v.authenticate_leg = Some(auth_leg);
            if let (Some(named), Some(reached)) = (&a.names, &reached)
                && named.differs(reached)
            {
                v.class = Class::ServerSplit;
                v.evidence = vec![Evidence::ServerNames];
                v.cause = Some(self.cause_without_challenge(identity));
                v.challenge_leg = None;
                v.server_challenge = None;
                return Some(self.with_names(v, Some(Arc::clone(named))));
            }
            v.evidence = vec![Evidence::None];
            v.cause = Some(Cause::Unknown);
            let names = a.names.clone();
            return Some(self.with_names(v, names));
        };
        let ch = self.challenges.get_mut(&ch_id)?;
        ch.answered = true;
        let same_conn = ch.conn == id;
        if let Some(c) = self.conns.get_mut(&ch.conn)
            && c.challenge == Some(ch_id)
        {
            c.challenge = None;
        }
        let ch = self.challenges.get(&ch_id)?;
        v.fallback = ch.fallback.clone();
        v.server_challenge = Some(ch.info.server_challenge);
        v.challenge_key = ch.info.id.as_ref().map(|i| i.key).or(v.challenge_key);
        let mut ch_leg = ch.leg.clone();
        // How the challenge's connection stood when the Type-3 came.
        let ch_conn_closed = self
            .conns
            .get(&ch.conn)
            .and_then(|c| c.closed)
            .filter(|c| c.at_ns <= now);
        if let Some(cl) = ch_conn_closed {
            ch_leg.closed = Some(cl.how);
        } else if ch.closing {
            ch_leg.closed = Some("connection_close");
        }
        if same_conn {
            if !evidence.contains(&Evidence::SameConnection) {
                evidence.push(Evidence::SameConnection);
            }
            v.class = Class::Handshake;
            v.evidence = evidence;
            v.challenge_leg = Some(ch_leg);
            v.authenticate_leg = Some(auth_leg);
            v.client = merge_identity(identity, &ch.identity);
            return Some(v);
        }
        // A split: same server (IP and port) on another connection, or another server.
        let server_differs = ch.leg.server != auth_leg.server;
        // Names that differ while the addresses agree also prove another machine.
        let names_differ =
            matches!((&ch.info.names, &auth_leg.server_names), (n1, Some(n2)) if n1.differs(n2));
        v.class = if server_differs || names_differ {
            Class::ServerSplit
        } else {
            Class::ConnectionSplit
        };
        let (cause, cause_evidence) = self.cause(ch, ch_conn_closed, identity);
        v.cause = Some(cause);
        evidence.push(cause_evidence);
        v.evidence = evidence;
        v.client = merge_identity(identity, &ch.identity);
        v.challenge_leg = Some(ch_leg);
        v.authenticate_leg = Some(auth_leg);
        Some(v)
    }

    fn with_names(&self, mut v: Verdict, named: Option<Arc<ServerNames>>) -> Verdict {
        // The challenging server is known only by the names the Type-3 carries.
        if let Some(n) = named
            && let Some(leg) = &v.authenticate_leg
        {
            v.challenge_leg = Some(LegInfo {
                client: leg.client,
                server: leg.server,
                generation: 0,
                at_ns: 0,
                closed: None,
                server_names: Some(n),
            });
            if v.class == Class::ServerSplit
                && let Some(cl) = v.challenge_leg.as_mut()
            {
                // Address unknown: only the names identify the challenging server.
                cl.server = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
                cl.client = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
            }
            if v.class == Class::OrphanType3 {
                v.challenge_leg = None;
            }
        }
        v
    }

    fn cause_without_challenge(&self, _identity: &ClientIdentity) -> Cause {
        Cause::Unknown
    }

    /// Why a Type-3 went elsewhere than its challenge, first rule that applies (the list in
    /// docs/design.md, "Correlation", and docs/events.md).
    fn cause(
        &self,
        ch: &Challenge,
        closed: Option<Closed>,
        identity: &ClientIdentity,
    ) -> (Cause, Evidence) {
        // The client kept its frontend connection: whatever closed the challenge's backend
        // connection (HAProxy `option http-server-close`, an NGINX upstream without
        // `keepalive` sending `Connection: close`), it was the balancer's choice to carry the
        // Type-3 elsewhere — the fix is in its configuration, not in the client.
        if let (Some(a), Some(b)) = (ch.identity.frontend, identity.frontend)
            && a == b
        {
            return (Cause::BalancerReroute, Evidence::FrontendToken);
        }
        if let (Some(a), Some(b), Some(x), Some(y)) = (
            ch.identity.port,
            identity.port,
            ch.identity.forwarded_for.as_ref(),
            identity.forwarded_for.as_ref(),
        ) && a == b
            && x == y
        {
            return (Cause::BalancerReroute, Evidence::ClientIdentity);
        }
        if ch.closing {
            return (Cause::ConnectionClosed, Evidence::ConnectionClose);
        }
        if let (Some(a), Some(_)) = (ch.identity.frontend, identity.frontend) {
            // Another frontend connection. When the one that carried the handshake announced
            // its end (an HTTP/1.0 client, `Connection: close`), the client had to reconnect.
            if self
                .frontend_closing
                .get(&a)
                .is_some_and(|at| at.abs_diff(ch.leg.at_ns) <= self.cfg.window_ns)
            {
                return (Cause::ConnectionClosed, Evidence::ConnectionClose);
            }
            return (Cause::ClientReconnect, Evidence::FrontendToken);
        }
        if closed.is_some() {
            return (Cause::ConnectionClosed, Evidence::ConnectionClose);
        }
        if let (Some(a), Some(b)) = (ch.identity.port, identity.port) {
            return if a != b {
                (Cause::ClientReconnect, Evidence::ClientIdentity)
            } else {
                (Cause::BalancerReroute, Evidence::ClientIdentity)
            };
        }
        (Cause::Unknown, Evidence::None)
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
        let Some(c) = self.conns.get_mut(&id) else {
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
        if req.is_none() && !informational {
            self.stats.responses_unmatched += 1;
        }
        let leg = c.leg(now);
        let offers = tokens.iter().fold(0, |o, t| match (&t.auth, t.scheme) {
            (Auth::Offer, tracker_ntlm::Scheme::Negotiate) => o | OFFER_NEGOTIATE,
            (Auth::Offer, tracker_ntlm::Scheme::Ntlm) => o | OFFER_NTLM,
            _ => o,
        });
        if offers != 0 {
            c.offers = offers;
        }
        if let Some(k) = tokens
            .iter()
            .filter_map(|t| t.negotiate.as_ref()?.kerberos.as_ref())
            .find(|k| k.error_code.is_some())
        {
            c.krb_error = k.error_code.map(|code| (code, k.error_name));
        }
        for t in tokens {
            if let Auth::Challenge(info) = &t.auth {
                self.new_challenge(id, leg.clone(), info, t, req.as_ref(), closes);
            }
        }
        let refused = matches!(status, Some(401 | 407));
        let Some(mut req) = req else {
            // The answer to a request the kernel passed silently: a 401 still means the
            // server holds no logon on this connection any more.
            if refused {
                self.deauthenticate(id);
            }
            return;
        };
        let outcome = Outcome::from_status(status);
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
        if let Some(mut v) = req.verdict.take() {
            v.status = status;
            v.outcome = outcome;
            if v.class == Class::Handshake {
                if outcome == Outcome::Success {
                    self.stats.handshakes_ok += 1;
                } else {
                    self.stats.handshakes_failed += 1;
                }
            }
            if matches!(req.kind, ReqKind::Type3) {
                self.clients.ntlm(&v.client, v.fallback.as_ref());
            }
            if v.class.is_violation() || self.cfg.handshakes {
                self.count(&v);
                out.push(v);
            }
        }
        if matches!(req.kind, ReqKind::Kerberos) {
            self.clients.kerberos(&req.identity);
            if self.cfg.handshakes {
                out.push(self.kerberos_handshake(id, &req, head, tokens, status, outcome, now));
            }
        }
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let authenticated = match req.kind {
            ReqKind::Type3 if outcome == Outcome::Success => {
                let (user, domain) = req.user.take().unwrap_or((None, None));
                c.auth = Some(AuthCtx {
                    identity: req.identity.clone(),
                    user,
                    domain,
                    mechanism: "ntlm",
                    leg: c.leg(req.at_ns),
                    kerberos: None,
                });
                true
            }
            ReqKind::Type3 => {
                c.auth = None;
                false
            }
            ReqKind::Kerberos
                if outcome == Outcome::Success && head.persistent_auth == Some(true) =>
            {
                c.auth = Some(AuthCtx {
                    identity: req.identity.clone(),
                    user: None,
                    domain: None,
                    mechanism: "kerberos",
                    leg: c.leg(req.at_ns),
                    kerberos: req.kerberos.clone(),
                });
                true
            }
            _ => false,
        };
        if authenticated {
            self.authenticated(id, &req);
        } else if matches!(req.kind, ReqKind::Type3) || refused {
            self.deauthenticate(id);
        }
    }

    /// A Kerberos request and its answer, for `--handshakes`.
    #[allow(clippy::too_many_arguments)]
    fn kerberos_handshake(
        &self,
        id: u64,
        req: &PendingReq,
        head: &Head,
        tokens: &[Decoded],
        status: Option<u16>,
        outcome: Outcome,
        now: u64,
    ) -> Verdict {
        let mut v = Verdict::new(Class::KerberosHandshake, now);
        v.mechanism = "kerberos";
        v.client = req.identity.clone();
        v.status = status;
        v.outcome = outcome;
        v.persistent_auth = head.persistent_auth;
        v.evidence = vec![Evidence::SameConnection];
        if let Some(c) = self.conns.get(&id) {
            v.authenticate_leg = Some(c.leg(req.at_ns));
        }
        let mut k = req.kerberos.clone().unwrap_or_default();
        // The answer's KRB-ERROR, if any, says why the request failed.
        if let Some(e) = tokens
            .iter()
            .filter_map(|t| t.negotiate.as_ref()?.kerberos.as_ref())
            .find(|k| k.error_code.is_some())
        {
            k.error_code = e.error_code;
            k.error_name = e.error_name;
        }
        v.kerberos = Some(k);
        v
    }

    fn new_challenge(
        &mut self,
        conn: u64,
        leg: LegInfo,
        info: &ChallengeInfo,
        t: &Decoded,
        req: Option<&PendingReq>,
        closes: bool,
    ) {
        self.stats.challenges += 1;
        if self.challenges.len() >= self.cfg.max_challenges {
            self.evict_challenge();
        }
        let id = self.next_challenge;
        self.next_challenge += 1;
        if !info.names.is_empty() {
            self.server_names
                .insert(leg.server, Arc::clone(&info.names));
        }
        let mut identity = req.map(|r| r.identity.clone()).unwrap_or_default();
        if identity.frontend.is_none() {
            identity.frontend = self.frontend_of(std::slice::from_ref(t));
        }
        let mut leg = leg;
        leg.server_names = Some(Arc::clone(&info.names));
        let closing = closes || self.conns.get(&conn).is_some_and(|c| c.closing);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.names = Some(Arc::clone(&info.names));
            if let Some(old) = c.challenge.replace(id)
                && let Some(och) = self.challenges.get_mut(&old)
                && !och.answered
            {
                och.answered = true;
                self.stats.challenges_superseded += 1;
            }
        }
        if let Some(cid) = &info.id {
            // MsvAvTimestamp is unique per real challenge; many challenges sharing one (a
            // replayed or forged Type-2) must not make every join a long scan.
            let same = self.by_timestamp.entry(cid.timestamp).or_default();
            if same.len() >= MAX_SAME_TIMESTAMP {
                same.remove(0);
                self.stats.duplicate_challenge_timestamps += 1;
            }
            same.push(id);
        }
        self.challenges.insert(
            id,
            Challenge {
                conn,
                leg,
                info: info.clone(),
                identity,
                proxy: t.header.is_proxy(),
                closing,
                answered: false,
                expired: false,
                fallback: req.and_then(|r| r.fallback.clone()),
            },
        );
    }

    /// Evicts the oldest challenge (ids grow with time: O(log n), not a scan).
    fn evict_challenge(&mut self) {
        if let Some(id) = self.challenges.keys().next().copied() {
            self.remove_challenge(id);
            self.stats.evicted_challenges += 1;
        }
    }

    fn remove_challenge(&mut self, id: u64) {
        if let Some(ch) = self.challenges.remove(&id)
            && let Some(tsid) = ch.info.id.as_ref().map(|i| i.timestamp)
            && let Some(v) = self.by_timestamp.get_mut(&tsid)
        {
            v.retain(|x| *x != id);
            if v.is_empty() {
                self.by_timestamp.remove(&tsid);
            }
        }
    }

    fn count(&mut self, v: &Verdict) {
        if v.class.is_violation() {
            *self.stats.alerts.entry(v.class.as_str()).or_default() += 1;
        }
    }

    fn abandoned(&self, ch: &Challenge, now: u64) -> Verdict {
        let mut v = Verdict::new(Class::AbandonedChallenge, now);
        let closed = self.conns.get(&ch.conn).and_then(|c| c.closed);
        let mut leg = ch.leg.clone();
        if let Some(cl) = closed {
            leg.closed = Some(cl.how);
        } else if ch.closing {
            leg.closed = Some("connection_close");
        }
        let (cause, ev) = if ch.closing || closed.is_some() {
            (Cause::ConnectionClosed, Evidence::ConnectionClose)
        } else {
            (Cause::Unknown, Evidence::Timeout)
        };
        v.cause = Some(cause);
        v.evidence = vec![Evidence::Timeout, ev];
        v.evidence.dedup();
        v.challenge_leg = Some(leg);
        v.client = ch.identity.clone();
        v.challenge_key = ch.info.id.as_ref().map(|i| i.key);
        v.server_challenge = Some(ch.info.server_challenge);
        v.outcome = Outcome::Failure;
        v.proxy = ch.proxy;
        v
    }

    /// Expires state older than the windows, at time `now_ns` (record clock). Yields
    /// `abandoned_challenge` for challenges no Type-3 answered within the window, and the
    /// verdicts still waiting for a response on connections gone idle.
    pub fn tick(&mut self, now_ns: u64, out: &mut Vec<Verdict>) {
        let window = self.cfg.window_ns;
        let mut expired = Vec::new();
        let mut drop_ids = Vec::new();
        for (id, ch) in &self.challenges {
            let age = now_ns.saturating_sub(ch.leg.at_ns);
            if !ch.answered && !ch.expired && age > window {
                expired.push(*id);
            } else if age > window.saturating_mul(4) {
                drop_ids.push(*id);
            }
        }
        expired.sort_by_key(|id| self.challenges.get(id).map(|c| c.leg.at_ns));
        for id in expired {
            if let Some(ch) = self.challenges.get(&id) {
                let v = self.abandoned(ch, now_ns);
                self.count(&v);
                out.push(v);
            }
            if let Some(ch) = self.challenges.get_mut(&id) {
                ch.expired = true;
                let conn = ch.conn;
                if let Some(c) = self.conns.get_mut(&conn)
                    && c.challenge == Some(id)
                {
                    c.challenge = None;
                }
            }
        }
        for id in drop_ids {
            self.remove_challenge(id);
        }
        let idle = self.cfg.idle_ns;
        let gone: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                let age = now_ns.saturating_sub(c.last_ns);
                // An open connection whose requests the kernel checks may look idle here
                // while its own client keeps using it: it stays until closed or evicted.
                (age > idle && (c.kernel_auth.is_none() || c.closed.is_some()))
                    || (c.closed.is_some() && age > window.saturating_mul(4))
            })
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            if let Some(mut c) = self.conns.remove(&id) {
                self.flush_pending(&mut c, out);
                self.auth_updates.extend(c.end_kernel_check());
            }
        }
        let live: std::collections::HashSet<u64> = self.conns.keys().copied().collect();
        self.slots.retain(|_, s| live.contains(&s.cur));
        self.frontend_tokens
            .retain(|_, f| now_ns.saturating_sub(f.at_ns) <= window.saturating_mul(4));
        self.frontend_closing
            .retain(|_, at| now_ns.saturating_sub(*at) <= window.saturating_mul(4));
    }

    fn flush_pending(&mut self, c: &mut Conn, out: &mut Vec<Verdict>) {
        for mut p in c.pending.drain(..) {
            if let Some(v) = p.verdict.take()
                && (v.class.is_violation() || self.cfg.handshakes)
            {
                if v.class.is_violation() {
                    *self.stats.alerts.entry(v.class.as_str()).or_default() += 1;
                }
                out.push(v);
            }
        }
    }

    /// The end of the input (end of a capture, daemon shutdown): verdicts waiting for a
    /// response are emitted with an unknown outcome; challenges on closed connections that no
    /// Type-3 answered are abandoned; those on open connections are counted only.
    pub fn finish(&mut self, out: &mut Vec<Verdict>) {
        let now = self.last_ns;
        let mut ids: Vec<u64> = self.conns.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            if let Some(mut c) = self.conns.remove(&id) {
                self.flush_pending(&mut c, out);
                self.conns.insert(id, c);
            }
        }
        let mut open: Vec<u64> = self
            .challenges
            .iter()
            .filter(|(_, c)| !c.answered && !c.expired)
            .map(|(id, _)| *id)
            .collect();
        open.sort_unstable();
        for id in open {
            let Some(ch) = self.challenges.get(&id) else {
                continue;
            };
            let closed = ch.closing || self.conns.get(&ch.conn).is_none_or(|c| c.closed.is_some());
            if closed || now.saturating_sub(ch.leg.at_ns) > self.cfg.window_ns {
                let v = self.abandoned(ch, now);
                self.count(&v);
                out.push(v);
            } else {
                self.stats.challenges_open_at_end += 1;
            }
            if let Some(ch) = self.challenges.get_mut(&id) {
                ch.expired = true;
            }
        }
    }
}

fn merge_identity(a: &ClientIdentity, b: &ClientIdentity) -> ClientIdentity {
    ClientIdentity {
        forwarded_for: a.forwarded_for.clone().or_else(|| b.forwarded_for.clone()),
        port: a.port.or(b.port),
        frontend: a.frontend.or(b.frontend),
    }
}

#[cfg(test)]
mod tests;
