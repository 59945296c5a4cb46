//! What `top` knows, built from the control socket's lines alone (no terminal here, so it is
//! tested as plain data): the daemon's hello, the latest `live` record, per-second rates
//! derived from consecutive records, and the alerts, newest first.

use std::collections::VecDeque;

use serde_json::Value;

/// Seconds of history in the sparklines.
pub const HISTORY: usize = 120;
/// Alerts kept for the list (newest first).
pub const MAX_ALERTS: usize = 1000;

/// One backend's handshakes, as the live record has them.
pub struct Server {
    pub addr: String,
    /// The computer name its NTLM challenges gave.
    pub name: String,
    pub ok: u64,
    pub failed: u64,
    /// Of `ok + failed`, the Kerberos ones.
    pub kerberos: u64,
}

#[derive(Default)]
pub struct State {
    pub hello: Option<Value>,
    pub live: Option<Value>,
    /// Per second, oldest first.
    pub handshakes_per_s: VecDeque<u64>,
    pub violations_per_s: VecDeque<u64>,
    prev: Option<(u64, u64)>,
    pub alerts: VecDeque<Value>,
    pub connected: bool,
    /// Why the connection is down, shown on screen while `top` retries.
    pub status: Option<String>,
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

impl State {
    /// One line from the daemon.
    pub fn apply(&mut self, line: &str) {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            return;
        };
        match v["event"]["action"].as_str() {
            Some("control_hello") => {
                self.hello = Some(v);
                self.connected = true;
                self.status = None;
                // A new daemon (or the same one again): its counters start over.
                self.prev = None;
                self.alerts.clear();
            }
            Some("live") => {
                let now = (self.handshakes(&v), self.violation_total(&v));
                if let Some((h, a)) = self.prev {
                    push(&mut self.handshakes_per_s, now.0.saturating_sub(h));
                    push(&mut self.violations_per_s, now.1.saturating_sub(a));
                }
                self.prev = Some(now);
                self.live = Some(v);
            }
            _ if v["event"]["kind"] == "alert" => {
                if self.alerts.len() == MAX_ALERTS {
                    self.alerts.pop_back();
                }
                self.alerts.push_front(v);
            }
            _ => {}
        }
    }

    pub fn disconnected(&mut self, why: String) {
        self.connected = false;
        self.status = Some(why);
    }

    fn correlation(v: &Value) -> &Value {
        &v["ntlm_affinity"]["daemon"]["correlation"]
    }

    fn handshakes(&self, v: &Value) -> u64 {
        let c = Self::correlation(v);
        [
            "handshakes_ok",
            "handshakes_failed",
            "kerberos_ok",
            "kerberos_failed",
        ]
        .iter()
        .map(|k| u(&c[*k]))
        .sum()
    }

    fn violation_total(&self, v: &Value) -> u64 {
        Self::correlation(v)["alerts"]
            .as_object()
            .map_or(0, |m| m.values().map(u).sum())
    }

    /// `(class, cause, count)` since the daemon started, most first.
    pub fn violations(&self) -> Vec<(String, String, u64)> {
        let Some(v) = &self.live else {
            return Vec::new();
        };
        let mut rows: Vec<(String, String, u64)> = Self::correlation(v)["alerts_by_cause"]
            .as_object()
            .into_iter()
            .flatten()
            .flat_map(|(class, causes)| {
                causes
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(move |(cause, n)| (class.clone(), cause.clone(), u(n)))
            })
            .collect();
        rows.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
        rows
    }

    /// Backend servers, the most failures first.
    pub fn servers(&self) -> Vec<Server> {
        let Some(v) = &self.live else {
            return Vec::new();
        };
        let mut rows: Vec<Server> = Self::correlation(v)["servers"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(addr, h)| Server {
                addr: addr.clone(),
                name: h["name"].as_str().unwrap_or("").to_string(),
                ok: u(&h["ok"]),
                failed: u(&h["failed"]),
                kerberos: u(&h["kerberos"]),
            })
            .collect();
        rows.sort_by(|a, b| b.failed.cmp(&a.failed).then(a.addr.cmp(&b.addr)));
        rows
    }

    /// The clients by scheme the daemon sent (most NTLM first).
    pub fn clients(&self) -> Vec<&Value> {
        self.rows("clients")
    }

    /// The NTLM users the daemon sent (most NTLMv1 first).
    pub fn users(&self) -> Vec<&Value> {
        self.rows("users")
    }

    fn rows(&self, what: &str) -> Vec<&Value> {
        self.live
            .as_ref()
            .and_then(|v| v["ntlm_affinity"][what].as_array())
            .map(|a| a.iter().collect())
            .unwrap_or_default()
    }

    /// A kernel or daemon loss counter of the latest record.
    pub fn kernel(&self, name: &str) -> u64 {
        self.live
            .as_ref()
            .map_or(0, |v| u(&v["ntlm_affinity"]["kernel"][name]))
    }

    pub fn output_dropped(&self) -> u64 {
        self.live
            .as_ref()
            .map_or(0, |v| u(&v["ntlm_affinity"]["output"]["dropped"]))
    }

    /// The alerts whose client, user or servers contain `filter` (all when empty).
    pub fn filtered_alerts(&self, filter: &str) -> Vec<&Value> {
        let f = filter.to_lowercase();
        self.alerts
            .iter()
            .filter(|a| f.is_empty() || alert_matches(a, &f))
            .collect()
    }
}

fn push(q: &mut VecDeque<u64>, v: u64) {
    if q.len() == HISTORY {
        q.pop_front();
    }
    q.push_back(v);
}

/// The one-line parts of an alert: client, user, servers.
pub fn alert_client(a: &Value) -> String {
    let id = &a["ntlm_affinity"]["client_identity"];
    id["forwarded_for"]
        .as_str()
        .map(str::to_string)
        .or_else(|| a["client"]["ip"].as_str().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

pub fn alert_user(a: &Value) -> String {
    match (a["user"]["domain"].as_str(), a["user"]["name"].as_str()) {
        (Some(d), Some(n)) => format!("{d}\\{n}"),
        (None, Some(n)) => n.to_string(),
        _ => String::new(),
    }
}

pub fn leg_server(a: &Value, leg: &str) -> String {
    let s = &a["ntlm_affinity"][leg]["server"];
    match (s["ip"].as_str(), s["port"].as_u64()) {
        (Some(ip), Some(p)) => format!("{ip}:{p}"),
        _ => String::new(),
    }
}

fn alert_matches(a: &Value, f: &str) -> bool {
    [
        alert_client(a),
        alert_user(a),
        leg_server(a, "challenge_leg"),
        leg_server(a, "authenticate_leg"),
        a["ntlm"]["server_dns_computer_name"]
            .as_str()
            .unwrap_or("")
            .to_string(),
    ]
    .iter()
    .any(|s| s.to_lowercase().contains(f))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn live(ok: u64, split: u64) -> String {
        serde_json::json!({
            "event": { "action": "live" },
            "ntlm_affinity": {
                "kernel": { "ringbuf_full": 2 },
                "daemon": { "correlation": {
                    "handshakes_ok": ok,
                    "alerts": { "server_split": split },
                    "alerts_by_cause": { "server_split": { "balancer_reroute": split } },
                    "servers": {
                        "198.18.1.10:80": { "ok": ok, "failed": 1, "name": "web1" },
                        "198.18.1.11:80": { "ok": 0, "failed": 5 },
                    },
                }},
            }
        })
        .to_string()
    }

    #[test]
    fn rates_come_from_consecutive_records_and_tables_from_the_latest() {
        let mut s = State::default();
        s.apply(r#"{"event":{"action":"control_hello"}}"#);
        s.apply(&live(10, 1));
        s.apply(&live(15, 4));
        s.apply(&live(15, 4));
        assert_eq!(s.handshakes_per_s, [5, 0]);
        assert_eq!(s.violations_per_s, [3, 0]);
        assert_eq!(
            s.violations(),
            [("server_split".into(), "balancer_reroute".into(), 4)]
        );
        let servers = s.servers();
        assert_eq!(servers[0].addr, "198.18.1.11:80", "the most failures first");
        assert_eq!(servers[1].name, "web1");
        assert_eq!(s.kernel("ringbuf_full"), 2);
    }

    #[test]
    fn alerts_are_newest_first_bounded_and_filtered() {
        let mut s = State::default();
        for i in 0..MAX_ALERTS + 3 {
            s.apply(
                &serde_json::json!({
                    "event": { "kind": "alert", "action": "server_split" },
                    "user": { "domain": "LAB", "name": format!("user{i}") },
                    "ntlm_affinity": { "client_identity": { "forwarded_for": "198.18.0.7" } },
                })
                .to_string(),
            );
        }
        assert_eq!(s.alerts.len(), MAX_ALERTS);
        assert_eq!(
            alert_user(&s.alerts[0]),
            format!("LAB\\user{}", MAX_ALERTS + 2)
        );
        assert_eq!(s.filtered_alerts("USER1002").len(), 1);
        assert_eq!(s.filtered_alerts("198.18.0.7").len(), MAX_ALERTS);
        assert!(s.filtered_alerts("nobody").is_empty());
        s.apply("not json");
        s.disconnected("gone".into());
        assert!(!s.connected);
    }
}
