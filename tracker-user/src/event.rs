//! NDJSON records of captured messages. Field names follow ECS where one exists; nothing here
//! ever holds a token's bytes, only what the token is.

use std::{collections::HashMap, net::SocketAddr, time::SystemTime};

use serde_json::{Value, json};
use tracker_common::{DIR_EGRESS, DIR_INGRESS, RecordHeader};

use crate::{
    http::StartLine,
    messages::Message,
    record::endpoints,
    token::{self, Mechanism},
};

/// Converts kernel monotonic timestamps to wall-clock time and ifindexes to names.
pub struct Context {
    /// Wall clock minus monotonic clock, in nanoseconds.
    offset_ns: i128,
    ifnames: HashMap<u32, String>,
    pub observer: String,
}

impl Context {
    pub fn new(ifnames: HashMap<u32, String>) -> Self {
        let mono = monotonic_ns();
        let wall = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i128)
            .unwrap_or(0);
        let observer = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        Self {
            offset_ns: wall - mono,
            ifnames,
            observer,
        }
    }

    pub fn timestamp(&self, ktime_ns: u64) -> String {
        let ns = i128::from(ktime_ns) + self.offset_ns;
        rfc3339(ns)
    }

    fn ifname(&self, ifindex: u32) -> String {
        self.ifnames
            .get(&ifindex)
            .cloned()
            .unwrap_or_else(|| ifindex.to_string())
    }

    fn common(&self, h: &RecordHeader) -> (Value, SocketAddr, SocketAddr) {
        let (src, dst) = endpoints(&h.key);
        let direction = match h.direction {
            DIR_INGRESS => "ingress",
            DIR_EGRESS => "egress",
            _ => "unknown",
        };
        let v = json!({
            "@timestamp": self.timestamp(h.timestamp_ns),
            "observer": { "hostname": self.observer, "ingress_or_egress": direction, "interface": self.ifname(h.ifindex) },
            "source": { "ip": src.ip().to_string(), "port": src.port() },
            "destination": { "ip": dst.ip().to_string(), "port": dst.port() },
            "network": { "transport": "tcp", "type": if h.key.family == 6 { "ipv6" } else { "ipv4" }, "direction": direction },
        });
        (v, src, dst)
    }

    /// One NDJSON object for an NTLM/Negotiate message.
    pub fn message(&self, m: &Message) -> Value {
        let h = &m.record;
        let (mut v, src, dst) = self.common(h);
        let summary = token::summarize(&m.auth.token);
        let mechanism = summary.map(|s| s.mechanism).unwrap_or(Mechanism::Unknown);
        let message_type = summary
            .and_then(|s| s.ntlm_type)
            .map(token::message_type_name);
        let mut ntlm = json!({
            "header": m.auth.name.as_str(),
            "scheme": m.auth.scheme.as_str(),
            "mechanism": if m.auth.token.is_empty() { json!(null) } else { json!(mechanism) },
            "message_type": message_type,
            "token_length": summary.map(|s| s.length),
            "kerberos": mechanism == Mechanism::Kerberos,
        });
        if m.auth.token.is_empty() {
            ntlm["offer"] = json!(true);
        }
        let mut http = json!({});
        match &m.start {
            Some(StartLine::Request {
                method,
                target,
                version,
            }) => {
                http = json!({ "request": { "method": method }, "version": version.trim_start_matches("HTTP/") });
                v["url"] = json!({ "path": target });
            }
            Some(StartLine::Response { version, status }) => {
                http = json!({ "response": { "status_code": status }, "version": version.trim_start_matches("HTTP/") });
            }
            None => {}
        }
        v["event"] = json!({ "kind": "event", "category": ["network", "authentication"], "action": "ntlm_message", "dataset": "ntlm_affinity.message" });
        v["http"] = http;
        v["ntlm"] = ntlm;
        v["ntlm_affinity"] = json!({
            "flow": format!("{src}->{dst}"),
            "generation": h.generation,
            "tcp_seq": h.seq,
        });
        v
    }

    /// A connection that carried NTLM was closed (FIN/RST).
    pub fn closed(&self, h: &RecordHeader) -> Value {
        let (mut v, src, dst) = self.common(h);
        let how = if h.tcp_flags & 0x04 != 0 {
            "rst"
        } else {
            "fin"
        };
        v["event"] = json!({ "kind": "event", "category": ["network"], "action": "connection_closed", "dataset": "ntlm_affinity.message" });
        v["ntlm_affinity"] =
            json!({ "flow": format!("{src}->{dst}"), "generation": h.generation, "close": how });
        v
    }
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
}
