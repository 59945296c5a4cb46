//! What the correlator counts: its own work and losses ([`Stats`], in `tracker_stats`) and
//! which schemes each client used, and why NTLM ([`ClientSchemes`], replay's summary).

use std::{collections::BTreeMap, net::SocketAddr};

use super::verdict::{Class, ClientIdentity, FallbackReason, Verdict};
use crate::decode::{NtlmLogon, NtlmVersion};

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Stats {
    /// Challenges whose MsvAvTimestamp was shared by more than
    /// [`super::challenge::MAX_SAME_TIMESTAMP`] others (replayed or forged Type-2s): the oldest
    /// left the timestamp index.
    pub duplicate_challenge_timestamps: u64,
    pub heads: u64,
    pub closes: u64,
    pub connections: u64,
    pub challenges: u64,
    pub authenticates: u64,
    pub handshakes_ok: u64,
    pub handshakes_failed: u64,
    /// From the Type-2 to the answer of its Type-3, for NTLM handshakes on one connection.
    pub handshake_seconds: Durations,
    pub kerberos: u64,
    /// Kerberos requests answered other than 401/407, and answered 401/407 or without a
    /// status.
    pub kerberos_ok: u64,
    pub kerberos_failed: u64,
    /// Violations emitted, by class.
    pub alerts: BTreeMap<Class, u64>,
    /// Violations emitted, by class and cause (`none` for a class without causes).
    pub alerts_by_cause: BTreeMap<Class, BTreeMap<&'static str, u64>>,
    /// Handshakes answered per backend server, at most [`MAX_SERVERS`] (later ones under
    /// `servers_beyond_bound`).
    pub servers: BTreeMap<SocketAddr, ServerHealth>,
    pub servers_beyond_bound: ServerHealth,
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
    /// Frontend tokens and closing marks dropped, oldest first, by the table bound: a
    /// backend request whose token was among them names no frontend client.
    pub evicted_frontend_entries: u64,
}

/// Upper bounds (seconds) of [`Durations`]' buckets: a handshake on one connection takes
/// milliseconds; seconds mean a slow server or client, tens of seconds a stuck one.
pub const DURATION_BUCKETS: [f64; 11] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];

/// A histogram with fixed buckets ([`DURATION_BUCKETS`]): counts per bucket (not cumulative;
/// the last one is above every bound), and the sum.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Durations {
    pub counts: [u64; DURATION_BUCKETS.len() + 1],
    pub sum_ns: u64,
}

impl Durations {
    pub fn observe(&mut self, ns: u64) {
        let secs = ns as f64 / 1e9;
        let i = DURATION_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(DURATION_BUCKETS.len());
        self.counts[i] += 1;
        self.sum_ns = self.sum_ns.saturating_add(ns);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// `(upper bound, observations at or below it)` per bucket, `+Inf` last: the cumulative
    /// form Prometheus expects.
    pub fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut total = 0;
        let mut out: Vec<(f64, u64)> = DURATION_BUCKETS
            .iter()
            .zip(&self.counts)
            .map(|(b, n)| {
                total += n;
                (*b, total)
            })
            .collect();
        out.push((f64::INFINITY, self.count()));
        out
    }
}

/// Servers at most in [`Stats::servers`]: a farm has tens; the bound only stops a flood of
/// addresses from growing the table.
pub const MAX_SERVERS: usize = 4096;

/// A backend server's handshakes: NTLM ones completed on one connection and Kerberos
/// requests, answered other than 401/407 (`ok`) or not (`failed`); the computer name its
/// NTLM challenges gave.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ServerHealth {
    pub ok: u64,
    pub failed: u64,
    /// Of `ok + failed`: the Kerberos ones (the rest are NTLM).
    pub kerberos: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Stats {
    /// Counts a verdict that is emitted (the one place alerts are counted).
    pub(super) fn emitted(&mut self, v: &Verdict) {
        if v.class.is_violation() {
            *self.alerts.entry(v.class).or_default() += 1;
            *self
                .alerts_by_cause
                .entry(v.class)
                .or_default()
                .entry(v.cause.map_or("none", |c| c.as_str()))
                .or_default() += 1;
        }
    }

    /// Counts a handshake answered by `server`.
    pub(super) fn answered_by(
        &mut self,
        server: SocketAddr,
        kerberos: bool,
        ok: bool,
        name: Option<&str>,
    ) {
        let h = if self.servers.contains_key(&server) || self.servers.len() < MAX_SERVERS {
            self.servers.entry(server).or_default()
        } else {
            &mut self.servers_beyond_bound
        };
        if ok {
            h.ok += 1;
        } else {
            h.failed += 1;
        }
        h.kerberos += u64::from(kerberos);
        if h.name.is_none() {
            h.name = name.map(str::to_string);
        }
    }

    /// Violations of `class` emitted so far.
    pub fn alerts_of(&self, class: Class) -> u64 {
        self.alerts.get(&class).copied().unwrap_or(0)
    }
}

/// Clients at most in [`ClientSchemes`]; later ones are counted together.
pub(super) const MAX_SUMMARY_CLIENTS: usize = 10_000;

/// Which schemes each client authenticated with through the balancer, and why NTLM.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ClientSchemes {
    pub clients: BTreeMap<String, SchemeCounts>,
    /// Clients beyond the bound, all counted under `other_clients`.
    pub other_clients: SchemeCounts,
    /// NTLM logons by `DOMAIN\user` (`(anonymous)` without a name), bounded like the
    /// clients. Kerberos names travel encrypted, so users are NTLM's only.
    pub users: BTreeMap<String, SchemeCounts>,
    pub other_users: SchemeCounts,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct SchemeCounts {
    pub kerberos: u64,
    pub ntlm: u64,
    /// Of `ntlm`: NTLMv1 and LM responses, anonymous logons (no user name), and logons that
    /// asked for neither signing nor sealing (relayable where the service does not insist).
    pub ntlmv1: u64,
    pub lm: u64,
    pub anonymous: u64,
    pub unsigned: u64,
    /// NTLM handshakes by fallback reason.
    pub ntlm_reasons: BTreeMap<FallbackReason, u64>,
}

impl SchemeCounts {
    fn count_ntlm(&mut self, v: &Verdict, anonymous: bool) {
        self.ntlm += 1;
        let version = v.logon.map(|l| l.version);
        self.ntlmv1 += u64::from(version == Some(NtlmVersion::Ntlmv1));
        self.lm += u64::from(version == Some(NtlmVersion::Lm));
        self.anonymous += u64::from(anonymous);
        self.unsigned += u64::from(v.logon.is_some_and(NtlmLogon::unsigned));
        *self
            .ntlm_reasons
            .entry(
                v.fallback
                    .as_ref()
                    .map_or(FallbackReason::Unknown, |f| f.reason),
            )
            .or_default() += 1;
    }
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

    pub(super) fn kerberos(&mut self, client: &ClientIdentity) {
        self.entry(client).kerberos += 1;
    }

    pub(super) fn ntlm(&mut self, client: &ClientIdentity, v: &Verdict) {
        let anonymous = v.user.as_deref().is_none_or(str::is_empty);
        let user = if anonymous {
            "(anonymous)".to_string()
        } else {
            format!(
                "{}\\{}",
                v.domain.as_deref().unwrap_or(""),
                v.user.as_deref().unwrap_or("")
            )
        };
        let bounded = self.users.contains_key(&user) || self.users.len() < MAX_SUMMARY_CLIENTS;
        let by_user = if bounded {
            self.users.entry(user).or_default()
        } else {
            &mut self.other_users
        };
        by_user.count_ntlm(v, anonymous);
        self.entry(client).count_ntlm(v, anonymous);
    }

    /// Users with the most NTLMv1 first, then the most NTLM.
    pub fn ranked_users(&self) -> Vec<(&str, &SchemeCounts)> {
        let mut rows: Vec<(&str, &SchemeCounts)> =
            self.users.iter().map(|(k, v)| (k.as_str(), v)).collect();
        rows.sort_by(|a, b| b.1.ntlmv1.cmp(&a.1.ntlmv1).then(b.1.ntlm.cmp(&a.1.ntlm)));
        rows
    }

    /// Clients with the most NTLM first (then the most Kerberos), the ones beyond the bound
    /// as one row.
    pub fn ranked(&self) -> Vec<(&str, &SchemeCounts)> {
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
        rows
    }

    /// One line per client, those with the most NTLM first (who still falls back, and why),
    /// at most `limit` lines plus one for the rest.
    pub fn report(&self, limit: usize) -> Vec<String> {
        let rows = self.ranked();
        let mut out: Vec<String> = rows
            .iter()
            .take(limit)
            .map(|(client, c)| {
                let client = terminal_label(client, 40);
                let why = c
                    .ntlm_reasons
                    .iter()
                    .map(|(r, n)| format!("{r} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                let mut line = format!("{client:<24} kerberos {:<6} ntlm {}", c.kerberos, c.ntlm);
                // What is worth a look: NTLMv1 (crackable, gone from current Windows) and
                // anonymous logons.
                for (n, what) in [
                    (c.ntlmv1, "ntlmv1"),
                    (c.lm, "lm"),
                    (c.anonymous, "anonymous"),
                    (c.unsigned, "unsigned"),
                ] {
                    if n > 0 {
                        line.push_str(&format!(" [{what} {n}]"));
                    }
                }
                if !why.is_empty() {
                    line.push_str(&format!(" ({why})"));
                }
                line
            })
            .collect();
        if rows.len() > limit {
            out.push(format!("… and {} more clients", rows.len() - limit));
        }
        out
    }
}

/// A client label as a terminal may show it: the `X-Forwarded-For` value comes from the
/// network, so control characters (an escape sequence could rewrite the operator's screen)
/// and bidirectional overrides are shown escaped, and a long value is cut at `max` chars.
pub fn terminal_label(s: &str, max: usize) -> String {
    let mut out = String::new();
    for (n, ch) in s.chars().enumerate() {
        if n == max {
            out.push('…');
            break;
        }
        let bidi = matches!(ch, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if ch.is_control() || bidi {
            out.extend(ch.escape_default());
        } else {
            out.push(ch);
        }
    }
    out
}

#[cfg(test)]
mod duration_tests {
    use super::*;

    #[test]
    fn durations_fall_in_their_buckets_and_accumulate() {
        let mut d = Durations::default();
        for ns in [500_000, 1_000_000, 3_000_000, 2_000_000_000, 60_000_000_000] {
            d.observe(ns);
        }
        let c = d.cumulative();
        assert_eq!(c[0], (0.001, 2), "0.5 ms and exactly 1 ms");
        assert_eq!(c[1], (0.005, 3));
        assert_eq!(c[9], (5.0, 4));
        assert_eq!(c[10], (30.0, 4));
        assert_eq!(c[11], (f64::INFINITY, 5));
        assert_eq!(d.sum_ns, 62_004_500_000);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::correlate::verdict::Fallback;

    #[test]
    fn client_labels_cannot_drive_the_terminal() {
        assert_eq!(terminal_label("198.18.0.12", 40), "198.18.0.12");
        let hostile = "\u{1b}[2J\u{1b}]0;owned\u{7}10.0.0.1\u{202e}";
        let l = terminal_label(hostile, 40);
        assert!(
            !l.chars().any(|c| c.is_control() || c == '\u{202e}'),
            "{l:?}"
        );
        assert!(l.starts_with("\\u{1b}[2J"), "{l:?}");
        let long = "1".repeat(100);
        assert_eq!(terminal_label(&long, 40).chars().count(), 41);
        // Through the summary as well.
        let mut c = ClientSchemes::default();
        c.ntlm(&client(hostile), &handshake(None));
        assert!(c.report(5).iter().all(|r| !r.contains('\u{1b}')));
    }

    /// A completed NTLMv2 handshake of user `u` with this fallback.
    fn handshake(fallback: Option<Fallback>) -> Verdict {
        let mut v = Verdict::new(Class::Handshake, 1);
        v.user = Some("u".into());
        v.logon = Some(NtlmLogon {
            version: NtlmVersion::Ntlmv2,
            sign: true,
            seal: true,
        });
        v.fallback = fallback;
        v
    }

    fn client(xff: &str) -> ClientIdentity {
        ClientIdentity {
            forwarded_for: Some(xff.into()),
            ..ClientIdentity::default()
        }
    }

    #[test]
    fn alerts_count_violations_by_class_only() {
        let mut s = Stats::default();
        s.emitted(&Verdict::new(Class::ServerSplit, 1));
        s.emitted(&Verdict::new(Class::ServerSplit, 2));
        s.emitted(&Verdict::new(Class::Handshake, 3));
        assert_eq!(s.alerts_of(Class::ServerSplit), 2);
        assert_eq!(s.alerts_of(Class::Handshake), 0);
        assert_eq!(
            serde_json::to_value(&s.alerts).unwrap(),
            serde_json::json!({ "server_split": 2 })
        );
    }

    #[test]
    fn report_lists_ntlm_heavy_clients_first_with_reasons() {
        let mut c = ClientSchemes::default();
        c.kerberos(&client("198.18.0.1"));
        let f = Fallback {
            spnego: false,
            kerberos_offered: false,
            reason: FallbackReason::NtlmDirect,
            krb_error_code: None,
            krb_error_name: None,
        };
        c.ntlm(&client("198.18.0.2"), &handshake(Some(f)));
        let mut v1 = handshake(None);
        v1.logon = Some(NtlmLogon {
            version: NtlmVersion::Ntlmv1,
            sign: true,
            seal: true,
        });
        c.ntlm(&client("198.18.0.2"), &v1);
        let counts = &c.clients["198.18.0.2"];
        assert_eq!((counts.ntlm, counts.ntlmv1, counts.anonymous), (2, 1, 0));
        assert!(
            c.report(1)[0].contains("ntlm 2 [ntlmv1 1] ("),
            "{:?}",
            c.report(1)
        );
        let r = c.report(1);
        assert_eq!(r.len(), 2);
        assert!(
            r[0].starts_with("198.18.0.2") && r[0].ends_with("(ntlm_direct 1, unknown 1)"),
            "{r:?}"
        );
        assert_eq!(r[1], "… and 1 more clients");
    }
}
