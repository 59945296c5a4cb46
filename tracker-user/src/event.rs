//! NDJSON events (docs/events.md): ECS field names where they exist, an `ntlm`
//! object modelled on Zeek's ntlm.log, and `ntlm_affinity` for the rest. Nothing here ever
//! holds a token's bytes or any credential material — only what a token is and the names it
//! carries.

use std::{collections::HashMap, net::SocketAddr, time::SystemTime};

use serde_json::{Map, Value, json};
use tracker_common::{DIR_EGRESS, DIR_INGRESS};

use crate::{
    correlate::{LegInfo, Mechanism, Verdict, flow_addrs},
    decode::{Auth, hex},
    http::StartLine,
    pipeline::{Message, Output},
};

/// Converts record timestamps to wall-clock time and ifindexes to names.
pub struct Context {
    /// Wall clock minus record clock, in nanoseconds (0 in replay: capture times are wall time).
    offset_ns: i128,
    ifnames: HashMap<u32, String>,
    pub observer: String,
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

impl Context {
    /// Live: record timestamps are CLOCK_MONOTONIC.
    pub fn new(ifnames: HashMap<u32, String>) -> Self {
        let mono = monotonic_ns();
        let wall = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i128)
            .unwrap_or(0);
        Self {
            offset_ns: wall - mono,
            ifnames,
            observer: hostname(),
        }
    }

    /// Replay: record timestamps are the capture's (ns since the epoch).
    pub fn replay(ifnames: HashMap<u32, String>) -> Self {
        Self {
            offset_ns: 0,
            ifnames,
            observer: hostname(),
        }
    }

    pub fn timestamp(&self, ns: u64) -> String {
        rfc3339(i128::from(ns) + self.offset_ns)
    }

    fn ifname(&self, ifindex: u32) -> String {
        self.ifnames
            .get(&ifindex)
            .cloned()
            .unwrap_or_else(|| ifindex.to_string())
    }

    pub fn output(&self, o: &Output) -> Value {
        match o {
            Output::Verdict(v) => self.verdict(v),
            Output::Message(m) => self.message(m),
        }
    }

    /// One NDJSON object for an NTLM/Negotiate message (`--messages`).
    pub fn message(&self, m: &Message) -> Value {
        let h = &m.rec;
        let (src, dst) = flow_addrs(&h.key);
        let direction = match h.direction {
            DIR_INGRESS => "ingress",
            DIR_EGRESS => "egress",
            _ => "unknown",
        };
        let t = &m.token;
        let mut ntlm = Map::new();
        ntlm.insert("header".into(), json!(t.header.as_str()));
        ntlm.insert(
            "scheme".into(),
            json!(match t.scheme {
                tracker_ntlm::Scheme::Ntlm => "NTLM",
                tracker_ntlm::Scheme::Negotiate => "Negotiate",
            }),
        );
        ntlm.insert("mechanism".into(), json!(t.mechanism));
        ntlm.insert("message_type".into(), json!(t.message_type()));
        ntlm.insert("token_length".into(), json!(t.token_len));
        ntlm.insert("kerberos".into(), json!(matches!(t.auth, Auth::Kerberos)));
        let mut na = Map::new();
        na.insert("flow".into(), json!(format!("{src}->{dst}")));
        na.insert("generation".into(), json!(h.generation));
        na.insert("tcp_seq".into(), json!(h.seq));
        message_auth(&t.auth, &mut ntlm, &mut na);
        let mut v = json!({
            "@timestamp": self.timestamp(h.timestamp_ns),
            "event": { "kind": "event", "category": ["network", "authentication"], "action": if matches!(t.auth, Auth::Undecodable(_)) { "undecodable_token" } else { "ntlm_message" }, "dataset": "ntlm_affinity.message" },
            "observer": { "hostname": self.observer, "ingress_or_egress": direction, "interface": self.ifname(h.ifindex) },
            "source": { "ip": src.ip().to_string(), "port": src.port() },
            "destination": { "ip": dst.ip().to_string(), "port": dst.port() },
            "network": { "transport": "tcp", "type": if h.key.family == 6 { "ipv6" } else { "ipv4" }, "direction": direction, "community_id": community_id(src, dst) },
            "ntlm": ntlm,
            "ntlm_affinity": na,
        });
        if let Some(n) = &t.negotiate {
            if let Some(k) = &n.kerberos {
                v["kerberos"] = json!(k);
            }
            if n.spnego {
                v["ntlm_affinity"]["spnego"] = json!(n);
            }
        }
        if let Some(http) = http_fields(&m.head.start, None) {
            v["http"] = http;
        }
        if let Some(StartLine::Request { target, .. }) = &m.head.start {
            v["url"] = json!({ "path": path_only(target) });
        }
        v
    }

    /// One NDJSON object for a verdict: an alert (`event.kind: alert`) or a healthy handshake
    /// (`event.kind: event`). ECS fields first, then Zeek's `ntlm.*` names, then ours.
    pub fn verdict(&self, v: &Verdict) -> Value {
        let alert = v.class.is_violation();
        let mut out = json!({
            "@timestamp": self.timestamp(v.ts_ns),
            "event": {
                "kind": if alert { "alert" } else { "event" },
                "category": ["network", "authentication"],
                "type": if alert { json!(["connection", "denied"]) } else { json!(["connection", "allowed"]) },
                "action": v.class.as_str(),
                "outcome": v.outcome,
                "dataset": v.class.dataset(),
                "severity": v.class.severity(),
            },
            "observer": { "hostname": self.observer },
        });
        // The leg the alert is about: the Type-3's (or the reused request's); the challenge's
        // for an abandoned challenge.
        if let Some(leg) = v.authenticate_leg.as_ref().or(v.challenge_leg.as_ref()) {
            out["source"] = json!({ "ip": leg.client.ip().to_string(), "port": leg.client.port() });
            out["destination"] =
                json!({ "ip": leg.server.ip().to_string(), "port": leg.server.port() });
            out["network"] = json!({
                "transport": "tcp",
                "type": if leg.server.is_ipv6() { "ipv6" } else { "ipv4" },
                "community_id": community_id(leg.client, leg.server),
            });
        }
        if let Some(client) = verdict_client(v) {
            out["client"] = client;
        }
        if let Some(http) = http_fields(&None, v.status) {
            out["http"] = http;
        }
        if let Some(m) = &v.request.method {
            out["http"]["request"]["method"] = json!(m);
        }
        if let Some(ver) = &v.request.version {
            out["http"]["version"] = json!(ver.trim_start_matches("HTTP/"));
        }
        if let Some(p) = &v.request.path {
            out["url"] = json!({ "path": p });
        }
        if v.user.is_some() || v.domain.is_some() {
            let mut user = Map::new();
            ins_opt(&mut user, "name", &v.user);
            ins_opt(&mut user, "domain", &v.domain);
            out["user"] = Value::Object(user);
        }
        if v.mechanism == Mechanism::Ntlm {
            out["ntlm"] = verdict_ntlm(v);
        }
        if let Some(k) = &v.kerberos {
            out["kerberos"] = json!(k);
        }
        out["ntlm_affinity"] = self.verdict_affinity(v);
        out
    }

    /// The `ntlm_affinity.*` object of a verdict: what the tracker proved and how.
    fn verdict_affinity(&self, v: &Verdict) -> Value {
        let reuse = v.class.is_context_reuse();
        let mut na = Map::new();
        na.insert("auth_scheme".into(), json!(v.mechanism));
        if v.mechanism == Mechanism::Kerberos && reuse {
            // The Kerberos client principal travels only inside the encrypted ticket.
            na.insert(
                "user_note".into(),
                json!("the Kerberos user is inside the encrypted ticket; authenticated_client names the client whose request authenticated the connection"),
            );
        }
        if let Some(f) = &v.fallback {
            na.insert("fallback".into(), json!(f));
        }
        if let Some(p) = v.persistent_auth {
            na.insert("persistent_auth".into(), json!(p));
        }
        if let Some(c) = v.cause {
            na.insert("cause".into(), json!(c));
        }
        na.insert("evidence".into(), json!(v.evidence));
        if let Some(k) = &v.challenge_key {
            na.insert("challenge_key".into(), json!(k.to_string()));
        }
        if let Some(l) = &v.challenge_leg {
            na.insert("challenge_leg".into(), leg_json(self, l, reuse));
        }
        if let Some(l) = &v.authenticate_leg {
            let name = if reuse {
                "request_leg"
            } else {
                "authenticate_leg"
            };
            na.insert(name.into(), leg_json(self, l, false));
        }
        if let Some(a) = &v.authenticated_client {
            na.insert("authenticated_client".into(), json!(a));
        }
        na.insert("client_identity".into(), json!(v.client));
        if v.proxy {
            na.insert("proxy".into(), json!(true));
        }
        if let Some(h) = v.header {
            na.insert("header".into(), json!(h));
        }
        if v.channel_bindings {
            na.insert("channel_bindings".into(), json!(true));
        }
        if let Some(s) = v.status {
            na.insert("status".into(), json!(s));
        }
        Value::Object(na)
    }
}

/// What each NTLM message type adds to a `--messages` event: Zeek names in `ntlm`, the
/// correlation key in `na`.
fn message_auth(auth: &Auth, ntlm: &mut Map<String, Value>, na: &mut Map<String, Value>) {
    match auth {
        Auth::Offer => {
            ntlm.insert("offer".into(), json!(true));
        }
        Auth::Negotiate {
            domain,
            workstation,
        } => {
            ins_opt(ntlm, "domain", domain);
            ins_opt(ntlm, "hostname", workstation);
        }
        Auth::Challenge(c) => {
            ntlm.insert("server_challenge".into(), json!(hex(&c.server_challenge)));
            ins_opt(ntlm, "target_name", &c.target_name);
            names(ntlm, Some(&c.names));
            if let Some(id) = &c.id {
                na.insert("challenge_key".into(), json!(id.key.to_string()));
            }
        }
        Auth::Authenticate(a) => {
            ins_opt(ntlm, "username", &a.user);
            ins_opt(ntlm, "domain", &a.domain);
            ins_opt(ntlm, "hostname", &a.workstation);
            ntlm.insert("ntlmv2".into(), json!(a.ntlmv2));
            names(ntlm, a.names.as_deref());
            if let Some(id) = &a.id {
                na.insert("challenge_key".into(), json!(id.key.to_string()));
            }
        }
        Auth::Undecodable(why) => {
            ntlm.insert("error".into(), json!(why));
        }
        Auth::Kerberos | Auth::Spnego => {}
    }
}

/// ECS `client.*`: the balancer's client as the request named it (X-Forwarded-For), else the
/// frontend connection the token join found.
fn verdict_client(v: &Verdict) -> Option<Value> {
    let mut client = Map::new();
    if let Some(ip) = &v.client.forwarded_for {
        client.insert("ip".into(), json!(ip));
    }
    if let Some(f) = v.client.frontend {
        client.entry("ip").or_insert(json!(f.ip().to_string()));
        client.insert("port".into(), json!(f.port()));
    } else if let Some(p) = v.client.port {
        client.insert("port".into(), json!(p));
    }
    (!client.is_empty()).then_some(Value::Object(client))
}

/// Zeek `ntlm.log` names for an NTLM verdict.
fn verdict_ntlm(v: &Verdict) -> Value {
    let mut ntlm = Map::new();
    ins_opt(&mut ntlm, "username", &v.user);
    ins_opt(&mut ntlm, "domain", &v.domain);
    ins_opt(&mut ntlm, "hostname", &v.workstation);
    let challenge_names = v
        .challenge_leg
        .as_ref()
        .and_then(|l| l.server_names.as_deref());
    names(&mut ntlm, challenge_names);
    if v.class.has_logon_outcome() {
        let success = match v.outcome {
            crate::correlate::Outcome::Success => json!(true),
            crate::correlate::Outcome::Failure => json!(false),
            crate::correlate::Outcome::Unknown => Value::Null,
        };
        ntlm.insert("success".into(), success);
    }
    if let Some(sc) = &v.server_challenge {
        ntlm.insert("server_challenge".into(), json!(hex(sc)));
    }
    if let Some(b) = v.ntlmv2 {
        ntlm.insert("ntlmv2".into(), json!(b));
    }
    Value::Object(ntlm)
}

fn leg_json(ctx: &Context, l: &LegInfo, authenticated: bool) -> Value {
    let mut m = Map::new();
    if l.server.port() != 0 {
        m.insert("flow".into(), json!(format!("{}->{}", l.client, l.server)));
        m.insert(
            "server".into(),
            json!({ "ip": l.server.ip().to_string(), "port": l.server.port() }),
        );
        m.insert("generation".into(), json!(l.generation));
        m.insert(
            "community_id".into(),
            json!(community_id(l.client, l.server)),
        );
    }
    if l.at_ns != 0 {
        m.insert(
            if authenticated {
                "authenticated_at"
            } else {
                "at"
            }
            .into(),
            json!(ctx.timestamp(l.at_ns)),
        );
    }
    if let Some(c) = l.closed {
        m.insert("closed".into(), json!(c));
    }
    if let Some(n) = &l.server_names {
        m.insert("server_names".into(), json!(n.as_ref()));
    }
    Value::Object(m)
}

fn http_fields(start: &Option<StartLine>, status: Option<u16>) -> Option<Value> {
    match start {
        Some(StartLine::Request {
            method, version, ..
        }) => Some(
            json!({ "request": { "method": method }, "version": version.trim_start_matches("HTTP/") }),
        ),
        Some(StartLine::Response { version, status }) => Some(
            json!({ "response": { "status_code": status }, "version": version.trim_start_matches("HTTP/") }),
        ),
        None => status.map(|s| json!({ "response": { "status_code": s } })),
    }
}

fn path_only(target: &str) -> &str {
    target.split('?').next().unwrap_or(target)
}

fn ins_opt(m: &mut Map<String, Value>, k: &str, v: &Option<String>) {
    if let Some(v) = v {
        m.insert(k.into(), json!(v));
    }
}

fn names(m: &mut Map<String, Value>, n: Option<&crate::decode::ServerNames>) {
    if let Some(n) = n {
        ins_opt(m, "server_nb_computer_name", &n.nb_computer_name);
        ins_opt(m, "server_dns_computer_name", &n.dns_computer_name);
        ins_opt(m, "server_tree_name", &n.dns_tree_name);
        ins_opt(m, "server_nb_domain_name", &n.nb_domain_name);
        ins_opt(m, "server_dns_domain_name", &n.dns_domain_name);
    }
}

/// Community ID v1 (seed 0) of a TCP connection.
pub fn community_id(a: SocketAddr, b: SocketAddr) -> String {
    community_id::calculate_community_id(
        0,
        a.ip(),
        b.ip(),
        Some(a.port()),
        Some(b.port()),
        6,
        false,
    )
    .unwrap_or_default()
}

pub fn monotonic_ns() -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

/// RFC 3339 UTC with microseconds, from nanoseconds since the epoch.
pub fn rfc3339(ns: i128) -> String {
    let ns = u64::try_from(ns.max(0)).unwrap_or(u64::MAX);
    let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_nanos(ns);
    humantime::format_rfc3339_micros(t).to_string()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            rfc3339(1_795_000_000_123_456_789),
            "2026-11-18T11:06:40.123456Z"
        );
        assert_eq!(
            rfc3339(951_782_400_000_000_000),
            "2000-02-29T00:00:00.000000Z"
        );
    }

    #[test]
    fn community_id_matches_the_spec_vector() {
        let a: SocketAddr = "1.2.3.4:1122".parse().unwrap();
        let b: SocketAddr = "5.6.7.8:3344".parse().unwrap();
        assert_eq!(community_id(a, b), "1:wCb3OG7yAFWelaUydu0D+125CLM=");
        assert_eq!(community_id(b, a), community_id(a, b));
    }
}
