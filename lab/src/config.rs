//! What the lab is made of: balancers, frontends, addresses, and the generated HAProxy /
//! NGINX configurations.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// Namespace / interface names. Everything the lab creates starts with `nta-` (namespaces)
/// so that `down` can find leftovers of a crashed run.
pub const NS_PREFIX: &str = "nta-";
/// The balancer's namespace: HAProxy / NGINX run here, the tracker attaches here.
pub const NS_LB: &str = "nta-lb";
/// The clients' namespace (one interface `eth0` with several source addresses).
pub const NS_CLIENT: &str = "nta-cli";
/// The L2 switch between the balancer and the backends (bridge `br0`).
pub const NS_SWITCH: &str = "nta-sw";
/// Interface in `nta-lb` toward the clients (frontend leg). Peer: `eth0` in `nta-cli`.
pub const LB_FRONTEND_IF: &str = "nta-fe";
/// Interface in `nta-lb` toward the backends (backend leg). Peer: port `lb` of `br0` in `nta-sw`.
pub const LB_BACKEND_IF: &str = "nta-be";
/// The virtual IP clients connect to (on `nta-fe`).
pub const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// Frontend subnet (clients + VIP).
pub const FRONTEND_CIDR: &str = "198.18.0.0/24";
/// The balancer's own address on the backend leg (on `nta-be`).
pub const LB_BACKEND_ADDR: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);
/// Backend subnet; the tracker's `--backend` is `BACKEND_CIDR:BACKEND_PORT`.
pub const BACKEND_CIDR: &str = "198.19.0.0/24";
/// Port every backend listens on.
pub const BACKEND_PORT: u16 = 80;
/// Most backends the topology builds (web1..web9).
pub const MAX_BACKENDS: usize = 9;
/// Most client source addresses (198.18.0.10 ..).
pub const MAX_CLIENT_ADDRS: usize = 200;
/// Lab accounts' password (lab only, never a real credential).
pub const LAB_PASSWORD: &str = "Passw0rd!";
/// Lab domain of the accounts.
pub const LAB_DOMAIN: &str = "LAB";
/// The KDC's namespace (only with [`LabConfig::kerberos`]).
pub const NS_KDC: &str = "nta-kdc";
/// Interface in `nta-cli` toward the KDC (peer: `eth0` in `nta-kdc`).
pub const CLIENT_KDC_IF: &str = "nta-krb";
/// The clients' address on the KDC link.
pub const CLIENT_KDC_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
/// The KDC's address (TCP and UDP port [`KDC_PORT`]); reachable from `nta-cli` only.
pub const KDC_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 88);
/// The KDC's port.
pub const KDC_PORT: u16 = 88;
/// Kerberos realm of the lab.
pub const KRB_REALM: &str = "LAB.TEST";
/// The name clients use for the VIP: the SPN is `HTTP/` + this, one key for every backend.
pub const KRB_SPN_HOST: &str = "www.lab.test";

/// The `i`-th client source address (0-based): 198.18.0.10, .11, ...
pub fn client_addr(i: usize) -> Ipv4Addr {
    // MAX_CLIENT_ADDRS keeps this within the /24.
    let last = 10 + (i % MAX_CLIENT_ADDRS) as u8;
    Ipv4Addr::new(198, 18, 0, last)
}

/// Address of backend `web` (1-based): 198.19.0.11, .12, ...
pub fn backend_addr(web: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 19, 0, 10 + (web % 100) as u8)
}

/// Namespace of backend `web` (1-based).
pub fn backend_ns(web: usize) -> String {
    format!("{NS_PREFIX}web{web}")
}

/// Hostname (UTS) of backend `web`: this is the NTLM server name (NbComputerName `WEB1`).
pub fn backend_name(web: usize) -> String {
    format!("web{web}")
}

/// How a frontend balances and handles connections. Each maps to a real balancer config.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Balancer {
    /// HAProxy default keep-alive mode, `http-reuse safe`, roundrobin: NTLM works
    /// (HAProxy makes the server connection private after an NTLM/Negotiate 401).
    HaproxyKeepAlive,
    /// HAProxy `option http-server-close`, roundrobin: every Type-3 can land elsewhere.
    HaproxyServerClose,
    /// HAProxy `option httpclose`, roundrobin.
    HaproxyHttpClose,
    /// HAProxy keep-alive + `stick on src` (persistence by client address).
    HaproxyStickSrc,
    /// NGINX OSS upstream without `keepalive` (default proxy_http_version 1.0, new backend
    /// connection per request): every handshake splits.
    Nginx,
    /// NGINX OSS upstream with `keepalive`, `proxy_http_version 1.1`,
    /// `proxy_set_header Connection ""`: pooled backend connections shared between clients.
    NginxKeepAlive,
    /// HAProxy keep-alive with `http-reuse always`: idle server connections are shared
    /// between clients from the first request on (private only after an NTLM/Nego 401).
    HaproxyReuseAlways,
}

impl Balancer {
    /// All variants with their CLI names.
    pub const ALL: [Balancer; 7] = [
        Balancer::HaproxyKeepAlive,
        Balancer::HaproxyServerClose,
        Balancer::HaproxyHttpClose,
        Balancer::HaproxyStickSrc,
        Balancer::Nginx,
        Balancer::NginxKeepAlive,
        Balancer::HaproxyReuseAlways,
    ];

    /// The CLI / config name.
    pub fn name(self) -> &'static str {
        match self {
            Balancer::HaproxyKeepAlive => "haproxy-keepalive",
            Balancer::HaproxyServerClose => "haproxy-server-close",
            Balancer::HaproxyHttpClose => "haproxy-httpclose",
            Balancer::HaproxyStickSrc => "haproxy-stick-src",
            Balancer::Nginx => "nginx",
            Balancer::NginxKeepAlive => "nginx-keepalive",
            Balancer::HaproxyReuseAlways => "haproxy-reuse-always",
        }
    }

    /// Is this served by HAProxy (else NGINX)?
    pub fn is_haproxy(self) -> bool {
        !matches!(self, Balancer::Nginx | Balancer::NginxKeepAlive)
    }
}

impl fmt::Display for Balancer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Balancer {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim().to_ascii_lowercase();
        let alias = match s.as_str() {
            "haproxy" | "haproxy-keep-alive" => Some(Balancer::HaproxyKeepAlive),
            "haproxy-http-server-close" => Some(Balancer::HaproxyServerClose),
            "haproxy-http-close" => Some(Balancer::HaproxyHttpClose),
            "haproxy-stick" => Some(Balancer::HaproxyStickSrc),
            "nginx-keep-alive" => Some(Balancer::NginxKeepAlive),
            "haproxy-http-reuse-always" => Some(Balancer::HaproxyReuseAlways),
            _ => None,
        };
        if let Some(b) = alias {
            return Ok(b);
        }
        Balancer::ALL
            .into_iter()
            .find(|b| b.name() == s)
            .with_context(|| {
                let names: Vec<_> = Balancer::ALL.iter().map(|b| b.name()).collect();
                format!("unknown balancer {s:?}; choose one of {}", names.join(", "))
            })
    }
}

/// One listening port on the VIP and the backends it balances to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frontend {
    /// Port on [`VIP`].
    pub port: u16,
    /// Balancer and mode.
    pub balancer: Balancer,
    /// Backends (1-based `web` numbers); empty = all.
    pub backends: Vec<usize>,
}

impl Frontend {
    /// A frontend on `port` balancing to all backends.
    pub fn new(port: u16, balancer: Balancer) -> Self {
        Frontend {
            port,
            balancer,
            backends: Vec::new(),
        }
    }

    /// Restrict to these backends (1-based).
    pub fn to(mut self, backends: &[usize]) -> Self {
        self.backends = backends.to_vec();
        self
    }

    /// The backends actually used, given the lab's backend count.
    pub fn servers(&self, n_backends: usize) -> Vec<usize> {
        if self.backends.is_empty() {
            (1..=n_backends).collect()
        } else {
            self.backends.clone()
        }
    }
}

impl FromStr for Frontend {
    type Err = anyhow::Error;
    /// `KIND[:PORT][@1,2]` e.g. `haproxy-server-close:81@1,2` or `nginx-keepalive:82@web3`.
    fn from_str(s: &str) -> Result<Self> {
        let (head, servers) = match s.split_once('@') {
            Some((h, sv)) => (h, Some(sv)),
            None => (s, None),
        };
        let (kind, port) = match head.rsplit_once(':') {
            Some((k, p)) => (
                k,
                p.parse::<u16>()
                    .with_context(|| format!("bad port in {s:?}"))?,
            ),
            None => (head, 80),
        };
        let mut fe = Frontend::new(port, kind.parse()?);
        if let Some(sv) = servers {
            for item in sv.split(',').filter(|x| !x.is_empty()) {
                let digits = item.trim().trim_start_matches("web");
                let n: usize = digits
                    .parse()
                    .with_context(|| format!("bad backend {item:?} in {s:?}"))?;
                fe.backends.push(n);
            }
        }
        Ok(fe)
    }
}

impl fmt::Display for Frontend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.balancer, self.port)?;
        if !self.backends.is_empty() {
            let names: Vec<String> = self.backends.iter().map(|b| b.to_string()).collect();
            write!(f, "@{}", names.join(","))?;
        }
        Ok(())
    }
}

/// The lab to build.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LabConfig {
    /// Number of backends (web1..webN), 1..=9. Default 3.
    pub backends: usize,
    /// Number of client source addresses (198.18.0.10 ..). Default 8.
    pub client_addrs: usize,
    /// Listening ports and their balancers. At least one.
    pub frontends: Vec<Frontend>,
    /// Lab accounts `(domain, user, password)`. Default LAB\alice, bob, carol, dave.
    pub users: Vec<(String, String, String)>,
    /// Backends behave like IIS `authPersistSingleRequest` (re-challenge every request).
    pub persist_single_request: bool,
    /// Backends answer 407 / Proxy-Authenticate (proxy authentication instead of 401).
    pub proxy_auth: bool,
    /// State directory (pid files, configs, logs, ground truth). Default `/run/nta-lab`
    /// or `$NTA_LAB_STATE`.
    pub state_dir: PathBuf,
    /// HAProxy `nbthread` (None: HAProxy's default).
    pub haproxy_threads: Option<u16>,
    /// NGINX upstream `keepalive` pool size (for [`Balancer::NginxKeepAlive`]).
    pub nginx_keepalive: u16,
    /// What the backends run (default: the NTLM acceptor `ntlm_backend.py`).
    #[serde(default)]
    pub backend_kind: BackendKind,
    /// Run an MIT KDC (realm [`KRB_REALM`], namespace [`NS_KDC`]) and let the backends accept
    /// Kerberos with one shared keytab for `HTTP/`[`KRB_SPN_HOST`]. Default off.
    #[serde(default)]
    pub kerberos: bool,
    /// IIS's logon persistence on the backends (default: IIS's `on`).
    #[serde(default)]
    pub persistent_auth: PersistentAuth,
    /// Requests without credentials under this path prefix are served `200` anonymously
    /// (IIS anonymous authentication on a folder, e.g. `/public/`). Default: none.
    #[serde(default)]
    pub anonymous_path: Option<String>,
}

/// IIS `windowsAuthentication` logon persistence, applied by every backend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PersistentAuth {
    /// IIS default (`authPersistNonNTLM=true`): a Kerberos logon stays on the connection
    /// and the 200 says `Persistent-Auth: true`; NTLM logons stay too.
    #[default]
    On,
    /// `authPersistNonNTLM=false`: a Kerberos logon is not kept (`Persistent-Auth: false`);
    /// NTLM logons still are.
    Off,
    /// `authPersistSingleRequest=true`: no logon is kept for any scheme.
    SingleRequest,
}

impl PersistentAuth {
    /// The backend's `--persistent-auth` value.
    pub fn name(self) -> &'static str {
        match self {
            PersistentAuth::On => "on",
            PersistentAuth::Off => "off",
            PersistentAuth::SingleRequest => "single-request",
        }
    }
}

/// What serves port 80 in each backend namespace.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    /// `ntlm_backend.py`: the IIS-like NTLM acceptor with its ground-truth log.
    #[default]
    Ntlm,
    /// NGINX answering every request with a small static `200` (no authentication, no
    /// ground truth): fast enough that the balancer, not the backend, is the bottleneck.
    /// The benchmark harness uses it.
    StaticNginx,
}

impl Default for LabConfig {
    fn default() -> Self {
        LabConfig {
            backends: 3,
            client_addrs: 8,
            frontends: vec![Frontend::new(80, Balancer::HaproxyKeepAlive)],
            users: ["alice", "bob", "carol", "dave"]
                .iter()
                .map(|u| {
                    (
                        LAB_DOMAIN.to_string(),
                        (*u).to_string(),
                        LAB_PASSWORD.to_string(),
                    )
                })
                .collect(),
            persist_single_request: false,
            proxy_auth: false,
            state_dir: default_state_dir(),
            haproxy_threads: None,
            nginx_keepalive: 16,
            backend_kind: BackendKind::Ntlm,
            kerberos: false,
            persistent_auth: PersistentAuth::On,
            anonymous_path: None,
        }
    }
}

/// `$NTA_LAB_STATE` or `/run/nta-lab`.
pub fn default_state_dir() -> PathBuf {
    std::env::var_os("NTA_LAB_STATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/nta-lab"))
}

impl LabConfig {
    /// One frontend on port 80 with `balancer`, all backends.
    pub fn single(balancer: Balancer) -> Self {
        LabConfig {
            frontends: vec![Frontend::new(80, balancer)],
            ..LabConfig::default()
        }
    }

    /// Set the number of backends.
    pub fn with_backends(mut self, n: usize) -> Self {
        self.backends = n;
        self
    }

    /// Replace the frontends.
    pub fn with_frontends(mut self, frontends: Vec<Frontend>) -> Self {
        self.frontends = frontends;
        self
    }

    /// Add a frontend.
    pub fn with_frontend(mut self, fe: Frontend) -> Self {
        self.frontends.push(fe);
        self
    }

    /// Set what the backends run.
    pub fn with_backend_kind(mut self, kind: BackendKind) -> Self {
        self.backend_kind = kind;
        self
    }

    /// Run the KDC: backends accept real Kerberos (see [`LabConfig::kerberos`]).
    pub fn with_kerberos(mut self) -> Self {
        self.kerberos = true;
        self
    }

    /// Set the backends' logon persistence.
    pub fn with_persistent_auth(mut self, p: PersistentAuth) -> Self {
        self.persistent_auth = p;
        self
    }

    /// Serve requests without credentials under `prefix` anonymously (see
    /// [`LabConfig::anonymous_path`]).
    pub fn with_anonymous_path(mut self, prefix: &str) -> Self {
        self.anonymous_path = Some(prefix.to_string());
        self
    }

    /// The backends' effective `--persistent-auth` (the older `persist_single_request`
    /// flag wins when set).
    pub fn effective_persistent_auth(&self) -> PersistentAuth {
        if self.persist_single_request {
            PersistentAuth::SingleRequest
        } else {
            self.persistent_auth
        }
    }

    /// Set the number of client source addresses.
    pub fn with_client_addrs(mut self, n: usize) -> Self {
        self.client_addrs = n;
        self
    }

    /// Named presets used by `cargo xtask lab up --preset` and the demo.
    pub fn preset(name: &str) -> Result<Self> {
        let cfg = match name {
            "haproxy" | "haproxy-keepalive" => LabConfig::single(Balancer::HaproxyKeepAlive),
            "haproxy-server-close" => LabConfig::single(Balancer::HaproxyServerClose),
            "haproxy-httpclose" => LabConfig::single(Balancer::HaproxyHttpClose),
            "haproxy-stick-src" => LabConfig::single(Balancer::HaproxyStickSrc),
            "nginx" => LabConfig::single(Balancer::Nginx)
                .with_frontends(vec![Frontend::new(80, Balancer::Nginx).to(&[1, 2])]),
            "nginx-keepalive" => LabConfig::single(Balancer::NginxKeepAlive)
                .with_frontends(vec![Frontend::new(80, Balancer::NginxKeepAlive).to(&[1])]),
            // The Kerberos presets (KDC on): pre-emptive Negotiate through pooling balancers.
            "haproxy-reuse-always" => LabConfig::single(Balancer::HaproxyReuseAlways)
                .with_frontends(vec![
                    Frontend::new(80, Balancer::HaproxyReuseAlways).to(&[1, 2]),
                ])
                .with_kerberos(),
            "nginx-keepalive-2" => LabConfig::single(Balancer::NginxKeepAlive)
                .with_frontends(vec![
                    Frontend::new(80, Balancer::NginxKeepAlive).to(&[1, 2]),
                ])
                .with_kerberos(),
            "kerberos" => LabConfig::default()
                .with_frontends(vec![
                    Frontend::new(80, Balancer::HaproxyKeepAlive).to(&[1, 2]),
                    Frontend::new(81, Balancer::HaproxyReuseAlways).to(&[1, 2]),
                    Frontend::new(82, Balancer::NginxKeepAlive).to(&[1]),
                    Frontend::new(83, Balancer::NginxKeepAlive).to(&[1, 2]),
                    Frontend::new(84, Balancer::Nginx).to(&[1, 2]),
                ])
                .with_kerberos(),
            // Everything side by side: good and broken configurations on separate ports.
            "all" | "demo" => LabConfig::default().with_frontends(vec![
                Frontend::new(80, Balancer::HaproxyKeepAlive).to(&[1, 2]),
                Frontend::new(81, Balancer::HaproxyServerClose).to(&[1, 2]),
                Frontend::new(82, Balancer::HaproxyStickSrc).to(&[1, 2]),
                Frontend::new(83, Balancer::Nginx).to(&[1, 2]),
                Frontend::new(84, Balancer::NginxKeepAlive).to(&[3]),
            ]),
            other => bail!(
                "unknown lab preset {other:?}; presets: haproxy, haproxy-server-close, haproxy-httpclose, \
                 haproxy-stick-src, nginx, nginx-keepalive, all; with a KDC: haproxy-reuse-always, \
                 nginx-keepalive-2, kerberos"
            ),
        };
        Ok(cfg)
    }

    /// Check the config makes sense before touching the system.
    pub fn validate(&self) -> Result<()> {
        if self.backends == 0 || self.backends > MAX_BACKENDS {
            bail!("backends must be 1..={MAX_BACKENDS}, got {}", self.backends);
        }
        if self.client_addrs == 0 || self.client_addrs > MAX_CLIENT_ADDRS {
            bail!(
                "client_addrs must be 1..={MAX_CLIENT_ADDRS}, got {}",
                self.client_addrs
            );
        }
        if self.frontends.is_empty() {
            bail!("the lab needs at least one frontend");
        }
        let mut ports = std::collections::BTreeSet::new();
        for fe in &self.frontends {
            if !ports.insert(fe.port) {
                bail!("frontend port {} is used twice", fe.port);
            }
            if fe.port == 0 {
                bail!("frontend port 0 is not allowed");
            }
            for &b in &fe.backends {
                if b == 0 || b > self.backends {
                    bail!(
                        "frontend {fe} names backend {b}, but the lab has web1..web{}",
                        self.backends
                    );
                }
            }
        }
        for (d, u, p) in &self.users {
            if [d, u, p]
                .iter()
                .any(|s| s.contains(':') || s.contains('\n'))
            {
                bail!("lab user fields may not contain ':' or newlines");
            }
        }
        Ok(())
    }

    /// Does any frontend use HAProxy?
    pub fn uses_haproxy(&self) -> bool {
        self.frontends.iter().any(|f| f.balancer.is_haproxy())
    }

    /// Does any frontend use NGINX?
    pub fn uses_nginx(&self) -> bool {
        self.frontends.iter().any(|f| !f.balancer.is_haproxy())
    }

    /// Does the lab run NGINX anywhere (balancer or static backends)?
    pub fn needs_nginx(&self) -> bool {
        self.uses_nginx() || self.backend_kind == BackendKind::StaticNginx
    }

    /// The client source addresses.
    pub fn client_addr_list(&self) -> Vec<Ipv4Addr> {
        (0..self.client_addrs).map(client_addr).collect()
    }
}

/// The generated HAProxy configuration.
pub fn haproxy_config(cfg: &LabConfig, state: &Path) -> String {
    let mut s = String::new();
    s.push_str("# generated by nta-lab: do not edit\nglobal\n");
    s.push_str("    log stdout format raw local0 info\n");
    s.push_str("    maxconn 4096\n");
    if let Some(n) = cfg.haproxy_threads {
        s.push_str(&format!("    nbthread {n}\n"));
    }
    s.push_str(&format!(
        "    stats socket {} mode 600 level admin\n",
        state.join("haproxy.sock").display()
    ));
    s.push_str(
        "\ndefaults\n    mode http\n    log global\n    option dontlognull\n    \
         timeout connect 2s\n    timeout client 30s\n    timeout server 30s\n    \
         timeout http-keep-alive 10s\n    timeout http-request 10s\n    option forwardfor\n    \
         log-format \"%ci:%cp %ft %b/%s %bi:%bp %ST %{+Q}r\"\n",
    );
    for fe in cfg.frontends.iter().filter(|f| f.balancer.is_haproxy()) {
        let p = fe.port;
        s.push_str(&format!("\n# {fe}\nfrontend fe_{p}\n    bind {VIP}:{p}\n"));
        s.push_str("    http-request set-header X-Client-Port %[src_port]\n");
        s.push_str(&format!("    default_backend be_{p}\n"));
        s.push_str(&format!("\nbackend be_{p}\n    balance roundrobin\n"));
        match fe.balancer {
            Balancer::HaproxyServerClose => s.push_str("    option http-server-close\n"),
            Balancer::HaproxyHttpClose => s.push_str("    option httpclose\n"),
            Balancer::HaproxyStickSrc => {
                s.push_str("    stick-table type ip size 100k expire 30m\n    stick on src\n");
            }
            Balancer::HaproxyReuseAlways => s.push_str("    http-reuse always\n"),
            _ => {}
        }
        for web in fe.servers(cfg.backends) {
            s.push_str(&format!(
                "    server {} {}:{BACKEND_PORT}\n",
                backend_name(web),
                backend_addr(web)
            ));
        }
    }
    s
}

/// The generated NGINX configuration (`daemon off`, everything under the state dir).
pub fn nginx_config(cfg: &LabConfig, state: &Path) -> String {
    let st = state.display();
    let mut s = String::new();
    s.push_str("# generated by nta-lab: do not edit\n");
    s.push_str("daemon off;\nmaster_process on;\nworker_processes 1;\nuser root;\n");
    s.push_str(&format!(
        "pid {st}/nginx.pid;\nerror_log {st}/nginx.error.log notice;\n"
    ));
    s.push_str("events { worker_connections 4096; }\n\nhttp {\n");
    s.push_str(
        "    log_format lab '$remote_addr:$remote_port $server_port $upstream_addr $status \"$request\"';\n",
    );
    s.push_str(&format!("    access_log {st}/nginx.access.log lab;\n"));
    for t in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"] {
        s.push_str(&format!("    {t}_temp_path {st}/nginx-tmp/{t};\n"));
    }
    s.push_str("    keepalive_timeout 30s;\n");
    for fe in cfg.frontends.iter().filter(|f| !f.balancer.is_haproxy()) {
        let p = fe.port;
        s.push_str(&format!("\n    # {fe}\n    upstream up_{p} {{\n"));
        for web in fe.servers(cfg.backends) {
            s.push_str(&format!(
                "        server {}:{BACKEND_PORT};\n",
                backend_addr(web)
            ));
        }
        if fe.balancer == Balancer::NginxKeepAlive {
            s.push_str(&format!(
                "        keepalive {};\n",
                cfg.nginx_keepalive.max(1)
            ));
        }
        s.push_str("    }\n");
        s.push_str(&format!(
            "    server {{\n        listen {VIP}:{p};\n        location / {{\n"
        ));
        s.push_str(&format!("            proxy_pass http://up_{p};\n"));
        if fe.balancer == Balancer::NginxKeepAlive {
            s.push_str("            proxy_http_version 1.1;\n            proxy_set_header Connection \"\";\n");
        }
        s.push_str(
            "            proxy_set_header Host $host;\n            \
             proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n            \
             proxy_set_header X-Client-Port $remote_port;\n        }\n    }\n",
        );
    }
    s.push_str("}\n");
    s
}

/// The lab's `krb5.conf` (`KRB5_CONFIG` of clients, backends and KDC tools): no DNS, no
/// canonicalisation (else the SPN is looked up and clients silently fall back to NTLM), TCP.
pub fn krb5_conf() -> String {
    format!(
        "# generated by nta-lab: do not edit\n\
         [libdefaults]\n default_realm = {KRB_REALM}\n dns_lookup_kdc = false\n\
         \x20dns_lookup_realm = false\n rdns = false\n dns_canonicalize_hostname = false\n\
         \x20udp_preference_limit = 1\n\
         [realms]\n {KRB_REALM} = {{\n  kdc = {KDC_ADDR}:{KDC_PORT}\n }}\n\
         [domain_realm]\n .lab.test = {KRB_REALM}\n lab.test = {KRB_REALM}\n"
    )
}

/// The KDC's `kdc.conf` (`KRB5_KDC_PROFILE`): database, stash and log in the state dir, so
/// nothing of Debian's own KDC (`/etc/krb5kdc`, `/var/lib/krb5kdc`) is read or written.
pub fn kdc_conf(state: &Path) -> String {
    let st = state.display();
    format!(
        "# generated by nta-lab: do not edit\n\
         [kdcdefaults]\n kdc_ports = {KDC_PORT}\n kdc_tcp_ports = {KDC_PORT}\n\
         [realms]\n {KRB_REALM} = {{\n  database_name = {st}/kdc/principal\n\
         \x20 key_stash_file = {st}/kdc/stash\n  acl_file = {st}/kdc/kadm5.acl\n }}\n\
         [logging]\n kdc = FILE:{st}/kdc/kdc.log\n"
    )
}

/// The NGINX configuration of a static backend (`daemon off`, files under the state dir):
/// `200 ok` to every request on `addr:80`, unlimited keep-alive.
pub fn static_backend_config(name: &str, addr: Ipv4Addr, state: &Path) -> String {
    let st = state.display();
    format!(
        "# generated by nta-lab: do not edit\n\
         daemon off;\nmaster_process on;\nworker_processes 1;\nuser root;\n\
         pid {st}/{name}.nginx.pid;\nerror_log {st}/{name}.error.log warn;\n\
         events {{ worker_connections 8192; }}\n\
         http {{\n    access_log off;\n    keepalive_requests 1000000;\n    keepalive_timeout 60s;\n\
         \x20   client_body_temp_path {st}/nginx-tmp/{name}-body;\n\
         \x20   proxy_temp_path {st}/nginx-tmp/{name}-proxy;\n\
         \x20   fastcgi_temp_path {st}/nginx-tmp/{name}-fastcgi;\n\
         \x20   uwsgi_temp_path {st}/nginx-tmp/{name}-uwsgi;\n\
         \x20   scgi_temp_path {st}/nginx-tmp/{name}-scgi;\n\
         \x20   server {{\n        listen {addr}:{BACKEND_PORT} reuseport backlog=4096;\n\
         \x20       location / {{ default_type text/plain; return 200 \"ok\\n\"; }}\n    }}\n}}\n"
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn frontend_parse_roundtrip() {
        let fe: Frontend = "nginx-keepalive:82@web3".parse().unwrap();
        assert_eq!(fe, Frontend::new(82, Balancer::NginxKeepAlive).to(&[3]));
        assert_eq!(fe.to_string().parse::<Frontend>().unwrap(), fe);
        let fe: Frontend = "haproxy".parse().unwrap();
        assert_eq!(fe, Frontend::new(80, Balancer::HaproxyKeepAlive));
        assert!("varnish:80".parse::<Frontend>().is_err());
    }

    #[test]
    fn configs_mention_modes() {
        let cfg = LabConfig::preset("all").unwrap();
        cfg.validate().unwrap();
        let h = haproxy_config(&cfg, Path::new("/run/nta-lab"));
        assert!(h.contains("option http-server-close"));
        assert!(h.contains("stick on src"));
        assert!(h.contains("option forwardfor"));
        assert!(h.contains("server web1 198.19.0.11:80"));
        let n = nginx_config(&cfg, Path::new("/run/nta-lab"));
        assert!(n.contains("keepalive 16;"));
        assert!(n.contains("proxy_set_header Connection \"\";"));
        assert!(n.contains("listen 198.18.0.1:83;"));
    }

    #[test]
    fn static_backend_config_listens_on_the_backend() {
        let c = static_backend_config("web1", backend_addr(1), Path::new("/run/nta-lab"));
        assert!(c.contains("listen 198.19.0.11:80"));
        assert!(c.contains("return 200"));
        let cfg = LabConfig::preset("haproxy")
            .unwrap()
            .with_backend_kind(BackendKind::StaticNginx);
        assert!(cfg.needs_nginx() && !cfg.uses_nginx());
        // Saved labs from before the field existed still load.
        let mut v = serde_json::to_value(&cfg).unwrap();
        v.as_object_mut().unwrap().remove("backend_kind");
        let back: LabConfig = serde_json::from_value(v).unwrap();
        assert_eq!(back.backend_kind, BackendKind::Ntlm);
    }

    #[test]
    fn kerberos_presets_and_files() {
        for name in ["haproxy-reuse-always", "nginx-keepalive-2", "kerberos"] {
            let cfg = LabConfig::preset(name).unwrap();
            cfg.validate().unwrap();
            assert!(cfg.kerberos, "{name}");
        }
        for name in ["haproxy", "nginx", "nginx-keepalive", "all"] {
            assert!(!LabConfig::preset(name).unwrap().kerberos, "{name}");
        }
        let cfg = LabConfig::preset("kerberos").unwrap();
        let h = haproxy_config(&cfg, Path::new("/run/nta-lab"));
        assert_eq!(h.matches("http-reuse always").count(), 1);
        assert_eq!(
            "haproxy-reuse-always:81@1".parse::<Frontend>().unwrap(),
            Frontend::new(81, Balancer::HaproxyReuseAlways).to(&[1])
        );
        let k = krb5_conf();
        for want in [
            "default_realm = LAB.TEST",
            "dns_canonicalize_hostname = false",
            "rdns = false",
            "udp_preference_limit = 1",
            "dns_lookup_kdc = false",
            "kdc = 198.18.1.88:88",
        ] {
            assert!(k.contains(want), "krb5.conf lacks {want:?}:\n{k}");
        }
        let d = kdc_conf(Path::new("/run/nta-lab"));
        assert!(
            d.contains("database_name = /run/nta-lab/kdc/principal"),
            "{d}"
        );
        assert!(!d.contains("/etc/") && !d.contains("/var/lib/"), "{d}");
        // Saved labs from before the Kerberos fields still load, with Kerberos off.
        let mut v = serde_json::to_value(&cfg).unwrap();
        for f in ["kerberos", "persistent_auth", "anonymous_path"] {
            v.as_object_mut().unwrap().remove(f);
        }
        let back: LabConfig = serde_json::from_value(v).unwrap();
        assert!(!back.kerberos);
        assert_eq!(back.persistent_auth, PersistentAuth::On);
        let single = LabConfig {
            persist_single_request: true,
            ..LabConfig::default()
        };
        assert_eq!(
            single.effective_persistent_auth(),
            PersistentAuth::SingleRequest
        );
    }

    #[test]
    fn addresses_in_benchmark_range() {
        for i in 0..MAX_CLIENT_ADDRS {
            assert_eq!(client_addr(i).octets()[..2], [198, 18]);
        }
        for w in 1..=MAX_BACKENDS {
            assert_eq!(backend_addr(w).octets()[..2], [198, 19]);
        }
    }

    #[test]
    fn validate_rejects_bad_backend() {
        let cfg =
            LabConfig::default().with_frontends(vec![Frontend::new(80, Balancer::Nginx).to(&[4])]);
        assert!(cfg.validate().is_err());
    }
}
