//! NDJSON events (docs/events.md): ECS field names where they exist, an `ntlm`
//! object modelled on Zeek's ntlm.log, and `ntlm_affinity` for the rest. Nothing here ever
//! holds a token's bytes or any credential material — only what a token is and the names it
//! carries.

use std::{collections::HashMap, net::SocketAddr, time::SystemTime};

use serde_json::{Map, Value, json};
use tracker_common::{DIR_EGRESS, DIR_INGRESS};

use crate::{
    correlate::{LegInfo, Mechanism, Verdict, flow_addrs},
    decode::{Auth, NtlmVersion, hex},
    http::StartLine,
    json::Obj,
    pipeline::{Message, Output},
};

/// Converts record timestamps to wall-clock time and ifindexes to names.
#[derive(Clone)]
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

    fn timestamp_display(&self, ns: u64) -> impl std::fmt::Display {
        rfc3339_display(i128::from(ns) + self.offset_ns)
    }

    pub fn output(&self, o: &Output) -> Value {
        match o {
            Output::Verdict(v) => self.verdict(v),
            Output::Message(m) => self.message(m),
        }
    }

    /// One NDJSON object for an NTLM/Negotiate message (`--messages`), as a `Value` (tests
    /// and tools; the daemon writes it with [`Context::write`]).
    pub fn message(&self, m: &Message) -> Value {
        let mut buf = Vec::new();
        self.write_message(m, &mut buf);
        serde_json::from_slice(&buf).unwrap_or(Value::Null)
    }

    /// Appends one NDJSON line (the object and `\n`) for `o` to `buf`.
    pub fn write(&self, o: &Output, buf: &mut Vec<u8>) {
        match o {
            Output::Verdict(v) => {
                let _ = serde_json::to_writer(&mut *buf, &self.verdict(v));
            }
            Output::Message(m) => self.write_message(m, buf),
        }
        buf.push(b'\n');
    }

    /// The message event, written key by key in sorted order (see [`crate::json`]): this
    /// runs once per NTLM message and a `Value` tree cost more than decoding the message.
    fn write_message(&self, m: &Message, buf: &mut Vec<u8>) {
        let h = &m.rec;
        let (src, dst) = flow_addrs(&h.key);
        let direction = match h.direction {
            DIR_INGRESS => "ingress",
            DIR_EGRESS => "egress",
            _ => "unknown",
        };
        let t = &m.token;
        let undecodable = matches!(t.auth, Auth::Undecodable(_));
        let negotiate = t.negotiate.as_deref();
        let endpoint = |o: &mut Obj<'_>, a: SocketAddr| {
            o.display("ip", a.ip()).u64("port", a.port().into());
        };
        let mut o = Obj::new(buf);
        o.display("@timestamp", self.timestamp_display(h.timestamp_ns))
            .obj("destination", |o| endpoint(o, dst))
            .obj("event", |o| {
                o.str(
                    "action",
                    if undecodable {
                        "undecodable_token"
                    } else {
                        "ntlm_message"
                    },
                )
                .strs("category", &["network", "authentication"])
                .str("dataset", "ntlm_affinity.message")
                .str("kind", "event");
            });
        match &m.head.start {
            Some(StartLine::Request {
                method, version, ..
            }) => {
                o.obj("http", |o| {
                    o.obj("request", |o| {
                        o.str("method", method);
                    })
                    .str("version", version.trim_start_matches("HTTP/"));
                });
            }
            Some(StartLine::Response { version, status }) => {
                o.obj("http", |o| {
                    o.obj("response", |o| {
                        o.u64("status_code", (*status).into());
                    })
                    .str("version", version.trim_start_matches("HTTP/"));
                });
            }
            None => {}
        }
        if let Some(k) = negotiate.and_then(|n| n.kerberos.as_ref()) {
            o.value("kerberos", k);
        }
        o.obj("network", |o| {
            o.str("community_id", &community_id(src, dst))
                .str("direction", direction)
                .str("transport", "tcp")
                .str("type", if h.key.family == 6 { "ipv6" } else { "ipv4" });
        })
        .obj("ntlm", |o| message_ntlm(t, o))
        .obj("ntlm_affinity", |o| {
            if let Some(id) = message_challenge_id(&t.auth) {
                o.display("challenge_key", id.key);
            }
            o.display("flow", format_args!("{src}->{dst}"))
                .u64("generation", h.generation);
            if let Some(n) = negotiate.filter(|n| n.spnego) {
                o.value("spnego", n);
            }
            o.u64("tcp_seq", h.seq.into());
        })
        .obj("observer", |o| {
            o.str("hostname", &self.observer)
                .str("ingress_or_egress", direction);
            match self.ifnames.get(&h.ifindex) {
                Some(name) => o.str("interface", name),
                None => o.display("interface", h.ifindex),
            };
        })
        .obj("source", |o| endpoint(o, src));
        if let Some(StartLine::Request { target, .. }) = &m.head.start {
            o.obj("url", |o| {
                o.str("path", path_only(target));
            });
        }
        o.close();
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

/// The `ntlm` object of a `--messages` event: what the token is and, per message type,
/// Zeek's `ntlm.log` names; keys in sorted order.
fn message_ntlm(t: &crate::decode::Decoded, o: &mut Obj<'_>) {
    let (mut domain, mut hostname, mut username, mut logon, mut names) =
        (None, None, None, None, None);
    let (mut offer, mut error, mut challenge) = (false, None, None);
    match &t.auth {
        Auth::Offer => offer = true,
        Auth::Negotiate {
            domain: d,
            workstation,
        } => {
            domain = d.as_deref();
            hostname = workstation.as_deref();
        }
        Auth::Challenge(c) => {
            challenge = Some(c);
            names = Some(&*c.names);
        }
        Auth::Authenticate(a) => {
            username = a.user.as_deref();
            domain = a.domain.as_deref();
            hostname = a.workstation.as_deref();
            logon = Some(a.logon);
            names = a.names.as_deref();
        }
        Auth::Undecodable(why) => error = Some(*why),
        Auth::Kerberos | Auth::Spnego => {}
    }
    o.opt_str("domain", domain)
        .opt_str("error", error)
        .str("header", t.header.as_str())
        .opt_str("hostname", hostname)
        .bool("kerberos", matches!(t.auth, Auth::Kerberos))
        .str("mechanism", t.mechanism);
    match t.message_type() {
        Some(m) => o.str("message_type", m),
        None => o.null("message_type"),
    };
    if let Some(l) = logon {
        o.bool("ntlmv2", l.version == NtlmVersion::Ntlmv2);
    }
    if offer {
        o.bool("offer", true);
    }
    o.str(
        "scheme",
        match t.scheme {
            tracker_ntlm::Scheme::Ntlm => "NTLM",
            tracker_ntlm::Scheme::Negotiate => "Negotiate",
        },
    );
    if let Some(l) = logon {
        o.bool("seal", l.seal);
    }
    if let Some(c) = challenge {
        o.display("server_challenge", Hex(&c.server_challenge));
    }
    if let Some(n) = names {
        o.opt_str("server_dns_computer_name", n.dns_computer_name.as_deref())
            .opt_str("server_dns_domain_name", n.dns_domain_name.as_deref())
            .opt_str("server_nb_computer_name", n.nb_computer_name.as_deref())
            .opt_str("server_nb_domain_name", n.nb_domain_name.as_deref())
            .opt_str("server_tree_name", n.dns_tree_name.as_deref());
    }
    if let Some(l) = logon {
        o.bool("sign", l.sign);
    }
    if let Some(c) = challenge {
        o.opt_str("target_name", c.target_name.as_deref());
    }
    o.u64("token_length", t.token_len as u64)
        .opt_str("username", username);
    if let Some(l) = logon {
        o.str("version", l.version.as_str());
    }
}

/// The challenge a Type-2 or Type-3 names, for `ntlm_affinity.challenge_key`.
fn message_challenge_id(auth: &Auth) -> Option<&crate::decode::ChallengeId> {
    match auth {
        Auth::Challenge(c) => c.id.as_ref(),
        Auth::Authenticate(a) => a.id.as_ref(),
        _ => None,
    }
}

/// Lowercase hex of a byte string, written without an intermediate `String`.
struct Hex<'a>(&'a [u8]);

impl std::fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
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
    if let Some(l) = v.logon {
        ntlm.insert("ntlmv2".into(), json!(l.version == NtlmVersion::Ntlmv2));
        ntlm.insert("version".into(), json!(l.version.as_str()));
        ntlm.insert("sign".into(), json!(l.sign));
        ntlm.insert("seal".into(), json!(l.seal));
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
    rfc3339_display(ns).to_string()
}

fn rfc3339_display(ns: i128) -> humantime::Rfc3339Timestamp {
    let ns = u64::try_from(ns.max(0)).unwrap_or(u64::MAX);
    let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_nanos(ns);
    humantime::format_rfc3339_micros(t)
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
