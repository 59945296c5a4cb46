//! The backends' ground truth: one JSON object per outcome, written by
//! `lab/peers/ntlm_backend.py`.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// One ground-truth record. Fields absent from a line are `None` / default.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TruthRecord {
    /// RFC 3339 UTC timestamp.
    pub ts: String,
    /// Backend hostname (`web1`, ...): the server that wrote the line.
    pub server: String,
    /// The balancer's connection as the backend saw it (`198.19.0.1:PORT`).
    pub conn: String,
    /// Per-backend connection number.
    pub conn_id: u64,
    /// Request number on that connection (1-based).
    pub req_no: u64,
    /// `X-Forwarded-For` of the request.
    pub xff: Option<String>,
    /// `X-Client-Port` of the request.
    pub client_port: Option<String>,
    /// `challenge` | `success` | `failure` | `anonymous` | `reused_context`.
    pub outcome: String,
    /// HTTP status returned.
    pub status: u16,
    /// `NTLM` or `Negotiate`.
    pub scheme: Option<String>,
    /// `ntlm`, `spnego-ntlm`, `kerberos`.
    pub mech: Option<String>,
    /// NTLM message type of the request (1 or 3).
    pub ntlm_type: Option<u32>,
    /// `DOMAIN\user` (Type-3, or the connection's logon for `reused_context`).
    pub user: Option<String>,
    /// Why a failure happened (`challenge_from_other_server`, `challenge_from_other_connection`,
    /// `no_challenge_on_connection`, `bad_password`, `unknown_user`, `kerberos_not_configured`...).
    pub reason: Option<String>,
    /// NbComputerName of the challenge (Type-2 issued, or answered by the Type-3).
    pub challenge_server: Option<String>,
    /// MsvAvTimestamp (FILETIME) of the challenge.
    pub challenge_ts: Option<u64>,
    /// For a failed Type-3 answering a challenge of another connection: `server` (another
    /// backend issued it) or `connection` (this backend, another connection).
    pub split: Option<String>,
    /// For `split == connection`: `PEER#CONN_ID` that received the challenge.
    pub challenge_conn: Option<String>,
    /// `reused_context`: XFF of the request that authenticated the connection.
    pub auth_xff: Option<String>,
    /// `reused_context`: was it the same client (XFF and client port) as the logon?
    pub same_client: Option<bool>,
    /// `kerberos` or `ntlm`: the scheme of this request's logon (for `reused_context`: of the
    /// connection's persisted logon).
    pub auth_scheme: Option<String>,
    /// Kerberos realm of `user` (Kerberos logons; `user` is then the principal `alice@LAB.TEST`).
    pub realm: Option<String>,
    /// The `Persistent-Auth` value the backend sent with a Kerberos 200 (`true` / `false`).
    pub persistent_auth: Option<String>,
    /// `reused_context`: the request was served by the connection's persisted logon.
    pub persisted_logon: Option<bool>,
    /// The mechTypes a SPNEGO NegTokenInit offered (`kerberos`, `ntlm`, ...).
    pub spnego_mechs: Option<Vec<String>>,
    /// `reused_context`: X-Client-Port of the request that authenticated the connection.
    pub auth_client_port: Option<String>,
    /// HTTP version of the request.
    pub http_version: Option<String>,
    /// Request path.
    pub path: Option<String>,
}

impl TruthRecord {
    /// A failed Type-3 because it answered a challenge issued elsewhere (what the tracker
    /// must call `server_split` / `connection_split`).
    pub fn is_split(&self) -> bool {
        self.outcome == "failure" && self.split.is_some()
    }

    /// A request served on a connection authenticated for another client (what the tracker
    /// must call `auth_context_reuse`).
    pub fn is_foreign_reuse(&self) -> bool {
        self.outcome == "reused_context" && self.same_client == Some(false)
    }
}

/// Parse one ground-truth file (missing file = no records).
pub fn read_truth_file(path: &Path) -> Result<Vec<TruthRecord>> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l)
                .with_context(|| format!("{}:{}: bad ground-truth line", path.display(), i + 1))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_backend_lines() {
        let line = r#"{"ts":"2026-11-25T04:38:53.079781Z","server":"web2","conn":"198.19.0.1:40000","conn_id":2,"req_no":1,"xff":"198.18.0.10","client_port":"5555","method":"GET","path":"/","http_version":"HTTP/1.1","outcome":"failure","status":401,"scheme":"NTLM","mech":"ntlm","ntlm_type":3,"user":"LAB\\alice","workstation":"WS","ntlm_version":2,"challenge_server":"WEB1","challenge_ts":134400551330765940,"win32_status":2148074248,"pending_challenge":false,"reason":"challenge_from_other_server","split":"server"}"#;
        let r: TruthRecord = serde_json::from_str(line).unwrap();
        assert!(r.is_split());
        assert_eq!(r.challenge_server.as_deref(), Some("WEB1"));
        assert_eq!(r.user.as_deref(), Some("LAB\\alice"));
        assert!(!r.is_foreign_reuse());
    }
}
