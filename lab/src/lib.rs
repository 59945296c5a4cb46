//! The network-namespace lab of ntlm-affinity, the demo and the benchmark harness.
//!
//! The lab: real HAProxy / NGINX between clients and IIS-like NTLM backends, with the
//! backends' own log as ground truth. Its Python peers (the backends and the scenario
//! clients) are in `lab/peers/`.
//!
//! ```text
//!  nta-cli                      nta-lb                                nta-sw            nta-webN
//!  eth0 198.18.0.10..  ◀─veth─▶ nta-fe 198.18.0.1 (VIP)
//!                               haproxy / nginx
//!                               nta-be 198.19.0.1  ◀─veth─▶ lb ┐
//!                                                              br0 ─ webN ◀─veth─▶ eth0 198.19.0.1N:80
//!                                                                                  (UTS hostname webN)
//! ```
//! With Kerberos ([`LabConfig::with_kerberos`]) an MIT KDC runs in `nta-kdc`
//! (198.18.1.88:88, realm `LAB.TEST`), linked to `nta-cli` only (`nta-krb` 198.18.1.1); the
//! backends accept `HTTP/www.lab.test` with one shared keytab and never talk to the KDC.
//!
//! The tracker attaches to `nta-be` (backend leg) and `nta-fe` (frontend leg) inside `nta-lb`.
//! Nothing touches the host's own interfaces, routes or firewall: every link is created
//! directly inside the lab namespaces.
//!
//! [`demo`] runs the scenarios of `cargo xtask demo`; [`bench`] holds the benchmark
//! harness's shared pieces (`cargo xtask bench`, the `nta-bench` example); [`frames`]
//! crafts Ethernet frames for the in-kernel tests, `nta-bench` and the capture generator.

pub mod bench;
pub mod config;
pub mod demo;
pub mod frames;
pub mod sys;
pub mod truth;

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};

pub use config::{
    BACKEND_CIDR, BACKEND_PORT, BackendKind, Balancer, CLIENT_KDC_ADDR, CLIENT_KDC_IF,
    FRONTEND_CIDR, Frontend, KDC_ADDR, KDC_PORT, KRB_REALM, KRB_SPN_HOST, LAB_DOMAIN, LAB_PASSWORD,
    LB_BACKEND_ADDR, LB_BACKEND_IF, LB_FRONTEND_IF, LabConfig, NS_CLIENT, NS_KDC, NS_LB, NS_PREFIX,
    NS_SWITCH, PersistentAuth, VIP, backend_addr, backend_name, backend_ns, client_addr,
    default_state_dir,
};
pub use sys::{LabLock, ProcRecord, is_root, lab_namespaces, ns_command};
pub use truth::{TruthRecord, read_truth_file};

/// Directory of the lab's Python programs and templates (`lab/peers`), or `$NTA_LAB_DIR`.
pub fn lab_files_dir() -> PathBuf {
    std::env::var_os("NTA_LAB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/peers")))
}

/// Lock file serialising labs (next to the state dir, survives `down`).
pub fn lock_path(state: &Path) -> PathBuf {
    let mut s = state.as_os_str().to_os_string();
    s.push(".lock");
    PathBuf::from(s)
}

/// One backend of the topology.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BackendInfo {
    /// 1-based number.
    pub web: usize,
    /// UTS hostname = NTLM server name (`web1`; NbComputerName `WEB1`).
    pub name: String,
    /// Network namespace.
    pub ns: String,
    /// Address (port [`BACKEND_PORT`]).
    pub addr: Ipv4Addr,
    /// Its ground-truth NDJSON file.
    pub truth_log: PathBuf,
}

/// The lab's KDC and Kerberos files (present when the lab runs with Kerberos).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KdcInfo {
    /// Namespace of `krb5kdc` (`nta-kdc`).
    pub ns: String,
    /// Its address (reachable from the client namespace).
    pub addr: Ipv4Addr,
    /// TCP/UDP port.
    pub port: u16,
    /// Realm (`LAB.TEST`).
    pub realm: String,
    /// The one service principal of every backend (`HTTP/www.lab.test@LAB.TEST`).
    pub service_principal: String,
    /// Host name clients use for the VIP (the SPN's host part).
    pub spn_host: String,
    /// `KRB5_CONFIG` of clients and backends.
    pub krb5_conf: PathBuf,
    /// The backends' shared keytab (`KRB5_KTNAME`).
    pub keytab: PathBuf,
    /// Directory for the clients' private credential caches.
    pub ccache_dir: PathBuf,
}

impl KdcInfo {
    fn new(state: &Path) -> KdcInfo {
        KdcInfo {
            ns: NS_KDC.into(),
            addr: KDC_ADDR,
            port: KDC_PORT,
            realm: KRB_REALM.into(),
            service_principal: format!("HTTP/{KRB_SPN_HOST}@{KRB_REALM}"),
            spn_host: KRB_SPN_HOST.into(),
            krb5_conf: state.join("krb5.conf"),
            keytab: state.join("http.keytab"),
            ccache_dir: state.join("ccache"),
        }
    }

    /// Environment for Kerberos clients (`kinit`, `curl --negotiate`, `clients.py`): the
    /// lab's `krb5.conf`. Each client still needs its own `KRB5CCNAME`.
    pub fn client_env(&self) -> Vec<(String, OsString)> {
        vec![(
            "KRB5_CONFIG".into(),
            self.krb5_conf.clone().into_os_string(),
        )]
    }
}

/// Names and addresses of a running lab (also saved as `STATE/lab.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Topology {
    /// Balancer namespace (`nta-lb`).
    pub lb_ns: String,
    /// Client namespace (`nta-cli`).
    pub client_ns: String,
    /// Switch namespace (`nta-sw`).
    pub switch_ns: String,
    /// Frontend-side interface in `lb_ns` (`nta-fe`): attach the tracker here too.
    pub lb_frontend_if: String,
    /// Backend-side interface in `lb_ns` (`nta-be`): attach the tracker here.
    pub lb_backend_if: String,
    /// Client interface in `client_ns` (`eth0`).
    pub client_if: String,
    /// VIP on `lb_frontend_if`.
    pub vip: Ipv4Addr,
    /// The balancer's source address toward the backends, on `lb_backend_if`.
    pub lb_backend_addr: Ipv4Addr,
    /// `198.18.0.0/24`.
    pub frontend_cidr: String,
    /// `198.19.0.0/24`.
    pub backend_cidr: String,
    /// Backend port (80).
    pub backend_port: u16,
    /// Client source addresses on `client_if`.
    pub client_addrs: Vec<Ipv4Addr>,
    /// The backends.
    pub backends: Vec<BackendInfo>,
    /// The frontends (ports on the VIP).
    pub frontends: Vec<Frontend>,
    /// State directory.
    pub state_dir: PathBuf,
    /// The KDC, when the lab runs with Kerberos.
    #[serde(default)]
    pub kdc: Option<KdcInfo>,
}

impl Topology {
    fn new(cfg: &LabConfig) -> Topology {
        let state = cfg.state_dir.clone();
        Topology {
            lb_ns: NS_LB.into(),
            client_ns: NS_CLIENT.into(),
            switch_ns: NS_SWITCH.into(),
            lb_frontend_if: LB_FRONTEND_IF.into(),
            lb_backend_if: LB_BACKEND_IF.into(),
            client_if: "eth0".into(),
            vip: VIP,
            lb_backend_addr: LB_BACKEND_ADDR,
            frontend_cidr: FRONTEND_CIDR.into(),
            backend_cidr: BACKEND_CIDR.into(),
            backend_port: BACKEND_PORT,
            client_addrs: cfg.client_addr_list(),
            backends: (1..=cfg.backends)
                .map(|web| BackendInfo {
                    web,
                    name: backend_name(web),
                    ns: backend_ns(web),
                    addr: backend_addr(web),
                    truth_log: state.join(format!("{}.truth.ndjson", backend_name(web))),
                })
                .collect(),
            frontends: cfg.frontends.clone(),
            kdc: cfg.kerberos.then(|| KdcInfo::new(&state)),
            state_dir: state,
        }
    }

    /// Frontend ports.
    pub fn frontend_ports(&self) -> Vec<u16> {
        self.frontends.iter().map(|f| f.port).collect()
    }

    /// Arguments for `ntlm-affinity` after the binary:
    /// `run --iface nta-be --iface nta-fe --backend 198.19.0.0/24:80 --frontend-port P...`
    pub fn tracker_args(&self) -> Vec<String> {
        let mut v = vec![
            "run".to_string(),
            "--iface".into(),
            self.lb_backend_if.clone(),
            "--iface".into(),
            self.lb_frontend_if.clone(),
            "--backend".into(),
            format!("{}:{}", self.backend_cidr, self.backend_port),
        ];
        for p in self.frontend_ports() {
            v.push("--frontend-port".into());
            v.push(p.to_string());
        }
        v
    }

    /// The backend named `name` (`web2`, `WEB2`).
    pub fn backend(&self, name: &str) -> Option<&BackendInfo> {
        self.backends
            .iter()
            .find(|b| b.name.eq_ignore_ascii_case(name))
    }
}

#[derive(Serialize, Deserialize)]
struct SavedLab {
    config: LabConfig,
    topology: Topology,
    python: PathBuf,
}

/// Result of one `curl` run (one line per URL).
#[derive(Clone, Debug)]
pub struct CurlRun {
    /// Final HTTP status of each URL, in order (0 = no response).
    pub statuses: Vec<u16>,
    /// Connections curl opened for each URL.
    pub connects: Vec<u32>,
    /// curl's stderr.
    pub stderr: String,
}

/// A running lab. Dropping it leaves the lab running unless [`Lab::down_on_drop`] was set
/// (tests set it; `cargo xtask lab up` does not).
pub struct Lab {
    cfg: LabConfig,
    topo: Topology,
    python: PathBuf,
    children: Mutex<Vec<Child>>,
    _lock: Option<LabLock>,
    down_on_drop: bool,
}

impl fmt::Debug for Lab {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lab")
            .field("topology", &self.topo)
            .finish_non_exhaustive()
    }
}

/// Find a Python 3 with pyspnego (`$NTA_PYTHON` or `python3`) and return its real path.
pub fn find_python() -> Result<PathBuf> {
    let py = std::env::var_os("NTA_PYTHON").unwrap_or_else(|| OsString::from("python3"));
    let out = Command::new(&py)
        .args(["-c", "import sys, spnego; print(sys.executable)"])
        .stdin(Stdio::null())
        .output()
        .with_context(|| {
            format!(
                "cannot run {} (set NTA_PYTHON to a Python 3 with pyspnego)",
                py.to_string_lossy()
            )
        })?;
    if !out.status.success() {
        bail!(
            "{} cannot import pyspnego: `pip install pyspnego` (or set NTA_PYTHON): {}",
            py.to_string_lossy(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if path.is_empty() {
        bail!("{} did not report sys.executable", py.to_string_lossy());
    }
    Ok(PathBuf::from(path))
}

/// Check everything `Lab::up(cfg)` needs (root, tools, Python + pyspnego). Tests use this
/// to decide between skipping and failing.
pub fn check_prerequisites(cfg: &LabConfig) -> Result<()> {
    sys::ensure_root()?;
    sys::require_tool("ip", "iproute2")?;
    sys::require_tool("ss", "iproute2")?;
    sys::require_tool("unshare", "util-linux")?;
    sys::require_tool("curl", "curl")?;
    if cfg.uses_haproxy() {
        sys::require_tool("haproxy", "haproxy")?;
    }
    if cfg.needs_nginx() {
        sys::require_tool("nginx", "nginx")?;
    }
    let python = find_python()?;
    if cfg.kerberos {
        for tool in ["krb5kdc", "kdb5_util", "kadmin.local"] {
            sys::require_tool(tool, "krb5-kdc krb5-admin-server")?;
        }
        sys::require_tool("kinit", "krb5-user")?;
        let ok = Command::new(&python)
            .args(["-c", "import gssapi, krb5"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            bail!(
                "{} lacks Kerberos support for pyspnego: `pip install 'pyspnego[kerberos]' gssapi krb5` \
                 (needs libkrb5-dev; `cargo xtask setup` does it)",
                python.display()
            );
        }
    }
    let dir = lab_files_dir();
    for f in ["ntlm_backend.py", "clients.py"] {
        if !dir.join(f).is_file() {
            bail!("lab file {} is missing", dir.join(f).display());
        }
    }
    Ok(())
}

impl Lab {
    /// Build the topology and start backends and balancer(s). Any lab already running (or
    /// left over by a crash) is torn down first. Blocks while another `Lab` of this machine
    /// holds the lab lock (tests run one lab at a time).
    pub fn up(cfg: LabConfig) -> Result<Lab> {
        cfg.validate()?;
        check_prerequisites(&cfg)?;
        let python = find_python()?;
        let lock = LabLock::acquire(&lock_path(&cfg.state_dir))?;
        down_state(&cfg.state_dir).context("cleaning up a previous lab")?;
        let topo = Topology::new(&cfg);
        let lab = Lab {
            cfg,
            topo,
            python,
            children: Mutex::new(Vec::new()),
            _lock: Some(lock),
            down_on_drop: false,
        };
        if let Err(e) = lab.build() {
            let _ = lab.teardown();
            return Err(e.context("lab up failed (everything it had created was removed)"));
        }
        Ok(lab)
    }

    /// Attach to the lab that `cargo xtask lab up` left running (no lock is taken).
    pub fn attach() -> Result<Lab> {
        Lab::attach_at(&default_state_dir())
    }

    /// [`Lab::attach`] with an explicit state dir.
    pub fn attach_at(state: &Path) -> Result<Lab> {
        let path = state.join("lab.json");
        let text = fs::read_to_string(&path).with_context(|| {
            format!(
                "no running lab ({} missing): run `cargo xtask lab up`",
                path.display()
            )
        })?;
        let saved: SavedLab =
            serde_json::from_str(&text).with_context(|| format!("parse {}", path.display()))?;
        Ok(Lab {
            cfg: saved.config,
            topo: saved.topology,
            python: saved.python,
            children: Mutex::new(Vec::new()),
            _lock: None,
            down_on_drop: false,
        })
    }

    /// Tear everything down when this value is dropped (tests).
    pub fn down_on_drop(mut self, yes: bool) -> Self {
        self.down_on_drop = yes;
        self
    }

    /// Tear down every lab of the default state dir: processes (by pid record and by
    /// namespace), `nta-*` namespaces, state. Idempotent; also cleans up after a crash.
    pub fn down() -> Result<()> {
        Lab::down_at(&default_state_dir())
    }

    /// [`Lab::down`] with an explicit state dir.
    pub fn down_at(state: &Path) -> Result<()> {
        sys::ensure_root()?;
        let _lock = LabLock::acquire(&lock_path(state))?;
        down_state(state)
    }

    /// Tear this lab down now.
    pub fn shutdown(mut self) -> Result<()> {
        self.down_on_drop = false;
        self.teardown()
    }

    /// What is running (namespaces, processes, listening ports) for the default state dir.
    pub fn status() -> Result<LabStatus> {
        LabStatus::collect(&default_state_dir())
    }

    /// The lab's names and addresses.
    pub fn topology(&self) -> &Topology {
        &self.topo
    }

    /// The configuration it was built from.
    pub fn config(&self) -> &LabConfig {
        &self.cfg
    }

    /// The state directory (configs, logs, ground truth).
    pub fn state_dir(&self) -> &Path {
        &self.cfg.state_dir
    }

    /// The Python interpreter the lab uses.
    pub fn python(&self) -> &Path {
        &self.python
    }

    /// A command run in the client namespace.
    pub fn client_command<S: AsRef<OsStr>>(&self, program: S) -> Command {
        ns_command(NS_CLIENT, program)
    }

    /// A command run in the balancer namespace (e.g. the tracker).
    pub fn lb_command<S: AsRef<OsStr>>(&self, program: S) -> Command {
        ns_command(NS_LB, program)
    }

    /// `clients.py KIND --host VIP --port PORT` in the client namespace; add more arguments
    /// (see `lab/peers/clients.py --help`).
    pub fn clients_py(&self, kind: &str, port: u16) -> Command {
        let mut c = self.client_command(&self.python);
        c.arg(lab_files_dir().join("clients.py"))
            .arg(kind)
            .args(["--host", &VIP.to_string(), "--port", &port.to_string()])
            .env("PYTHONDONTWRITEBYTECODE", "1");
        if let Some(k) = &self.topo.kdc {
            c.envs(k.client_env())
                .arg("--ccache-dir")
                .arg(&k.ccache_dir);
        }
        c
    }

    /// The KDC, when the lab runs with Kerberos.
    pub fn kdc(&self) -> Option<&KdcInfo> {
        self.topo.kdc.as_ref()
    }

    /// Run `clients.py KIND` with `args` and return its JSON lines (one per request).
    pub fn run_clients(
        &self,
        kind: &str,
        port: u16,
        args: &[&str],
    ) -> Result<Vec<serde_json::Value>> {
        let mut cmd = self.clients_py(kind, port);
        cmd.args(args);
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("run `{}`", sys::display_cmd(&cmd)))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<serde_json::Value> = stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if !out.status.success() && lines.is_empty() {
            bail!(
                "`{}` failed ({}): {}",
                sys::display_cmd(&cmd),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(lines)
    }

    /// `curl --ntlm -u USER:PASSWORD` from source `src` to `http://VIP:PORT/` `requests`
    /// times in one curl process (one keep-alive connection when the balancer allows it).
    /// `user` is `DOMAIN\user`.
    pub fn curl_ntlm(
        &self,
        port: u16,
        src: Ipv4Addr,
        user: &str,
        password: &str,
        requests: usize,
    ) -> Result<CurlRun> {
        let cred = format!("{user}:{password}");
        self.curl(port, src, &["--ntlm", "-u", &cred], requests)
    }

    /// `curl` in the client namespace with `extra` options, `requests` URLs.
    pub fn curl(
        &self,
        port: u16,
        src: Ipv4Addr,
        extra: &[&str],
        requests: usize,
    ) -> Result<CurlRun> {
        let url = format!("http://{VIP}:{port}/");
        let mut cmd = self.client_command("curl");
        cmd.args([
            "-s",
            "-S",
            "--max-time",
            "15",
            "--interface",
            &src.to_string(),
        ])
        .args(["-w", "%{http_code} %{num_connects}\\n"])
        .args(extra);
        for _ in 0..requests.max(1) {
            cmd.args(["-o", "/dev/null", &url]);
        }
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("run `{}`", sys::display_cmd(&cmd)))?;
        let mut run = CurlRun {
            statuses: Vec::new(),
            connects: Vec::new(),
            stderr: String::from_utf8_lossy(&out.stderr).into(),
        };
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let mut it = line.split_whitespace();
            run.statuses
                .push(it.next().and_then(|s| s.parse().ok()).unwrap_or(0));
            run.connects
                .push(it.next().and_then(|s| s.parse().ok()).unwrap_or(0));
        }
        if run.statuses.is_empty() {
            bail!(
                "`{}` printed nothing ({}): {}",
                sys::display_cmd(&cmd),
                out.status,
                run.stderr.trim()
            );
        }
        Ok(run)
    }

    /// All backends' ground truth, ordered by time.
    pub fn truth(&self) -> Result<Vec<TruthRecord>> {
        let mut all = Vec::new();
        for b in &self.topo.backends {
            all.extend(read_truth_file(&b.truth_log)?);
        }
        all.sort_by(|a, b| a.ts.cmp(&b.ts));
        Ok(all)
    }

    /// Ground truth of backend `web` (1-based).
    pub fn truth_of(&self, web: usize) -> Result<Vec<TruthRecord>> {
        let b = self.backend_info(web)?;
        read_truth_file(&b.truth_log)
    }

    /// Empty the ground-truth logs (between phases of a test).
    pub fn clear_truth(&self) -> Result<()> {
        for b in &self.topo.backends {
            if b.truth_log.exists() {
                fs::write(&b.truth_log, b"")
                    .with_context(|| format!("truncate {}", b.truth_log.display()))?;
            }
        }
        Ok(())
    }

    /// The balancer's logs (HAProxy request log / NGINX access log) as text.
    pub fn balancer_log(&self) -> String {
        let st = self.state_dir();
        let mut s = String::new();
        for f in ["haproxy.log", "nginx.access.log", "nginx.error.log"] {
            let p = st.join(f);
            if let Ok(t) = fs::read_to_string(&p) {
                s.push_str(&format!("== {f}\n{t}"));
            }
        }
        s
    }

    /// Kill backend `web` at once (SIGKILL), e.g. mid-handshake.
    pub fn kill_backend(&self, web: usize) -> Result<()> {
        let b = self.backend_info(web)?;
        if let Some(rec) = sys::read_record(self.state_dir(), &b.name) {
            rec.kill_now();
            let deadline = Instant::now() + Duration::from_secs(3);
            while rec.alive() && Instant::now() < deadline {
                sleep(Duration::from_millis(10));
            }
        }
        self.reap();
        Ok(())
    }

    /// (Re)start backend `web` and wait until it listens.
    pub fn start_backend(&self, web: usize) -> Result<()> {
        let b = self.backend_info(web)?.clone();
        if let Some(rec) = sys::read_record(self.state_dir(), &b.name) {
            rec.stop(Duration::from_secs(2));
        }
        self.spawn_backend(&b)
    }

    /// Record a process the caller started (e.g. the tracker) so `down` stops it too.
    pub fn adopt(&self, name: &str, ns: &str, child: &Child, log: &Path) -> Result<ProcRecord> {
        let pid = child.id() as i32;
        let rec = ProcRecord {
            name: name.to_string(),
            ns: ns.to_string(),
            pid,
            start_time: sys::proc_start_time(pid).unwrap_or(0),
            log: log.to_path_buf(),
            cmd: String::new(),
        };
        fs::create_dir_all(sys::pid_dir(self.state_dir()))?;
        fs::write(
            sys::pid_dir(self.state_dir()).join(format!("{name}.json")),
            serde_json::to_vec_pretty(&rec)?,
        )?;
        Ok(rec)
    }

    /// Start a packet capture (`dumpcap`, pcapng) on `iface` of the balancer namespace
    /// (`nta-be` or `nta-fe`), written to `STATE/NAME.pcapng`. Stop it with
    /// [`Capture::stop`] before reading the file (e.g. with `tshark -r`).
    pub fn start_capture(&self, iface: &str, name: &str) -> Result<Capture> {
        sys::require_tool("dumpcap", "wireshark-common (or tshark)")?;
        let path = self.state_dir().join(format!("{name}.pcapng"));
        let log = self.state_dir().join(format!("{name}.capture.log"));
        let err = fs::File::create(&log)?;
        let mut cmd = ns_command(NS_LB, "dumpcap");
        cmd.args(["-q", "-i", iface, "-f", "tcp", "-w"])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let line = sys::display_cmd(&cmd);
        let mut child = cmd.spawn().with_context(|| format!("start `{line}`"))?;
        let rec = self.adopt(&format!("capture-{name}"), NS_LB, &child, &log)?;
        // dumpcap says "Capturing on ..." once the socket is open.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                bail!("`{line}` exited ({st}): {}", sys::tail(&log, 2000));
            }
            if fs::read_to_string(&log).is_ok_and(|t| t.contains("Capturing on")) && path.exists() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "`{line}` did not start capturing in 10 s: {}",
                    sys::tail(&log, 2000)
                );
            }
            sleep(Duration::from_millis(20));
        }
        Ok(Capture {
            child: Some(child),
            path,
            rec,
            state: self.state_dir().to_path_buf(),
        })
    }

    fn backend_info(&self, web: usize) -> Result<&BackendInfo> {
        self.topo
            .backends
            .iter()
            .find(|b| b.web == web)
            .ok_or_else(|| anyhow!("no backend web{web} in this lab"))
    }

    fn reap(&self) {
        if let Ok(mut ch) = self.children.lock() {
            ch.retain_mut(|c| matches!(c.try_wait(), Ok(None)));
        }
    }

    fn keep(&self, child: Child) {
        if let Ok(mut ch) = self.children.lock() {
            ch.push(child);
        }
    }

    fn teardown(&self) -> Result<()> {
        let r = down_state(self.state_dir());
        if let Ok(mut ch) = self.children.lock() {
            for c in ch.iter_mut() {
                let _ = c.kill();
                let _ = c.wait();
            }
            ch.clear();
        }
        r
    }

    // ------------------------------------------------------------------ building
    fn build(&self) -> Result<()> {
        let st = self.state_dir().to_path_buf();
        fs::create_dir_all(sys::pid_dir(&st))
            .with_context(|| format!("create {}", st.display()))?;
        fs::set_permissions(&st, fs::Permissions::from_mode(0o700))?;
        let users: String = self
            .cfg
            .users
            .iter()
            .map(|(d, u, p)| format!("{d}:{u}:{p}\n"))
            .collect();
        let users_path = st.join("users.txt");
        fs::write(&users_path, users)?;
        fs::set_permissions(&users_path, fs::Permissions::from_mode(0o600))?;
        let saved = SavedLab {
            config: self.cfg.clone(),
            topology: self.topo.clone(),
            python: self.python.clone(),
        };
        fs::write(st.join("lab.json"), serde_json::to_vec_pretty(&saved)?)?;

        self.build_network()
            .context("building the network namespaces")?;
        if let Some(k) = &self.topo.kdc {
            self.build_kdc(k).context("starting the KDC")?;
        }
        for b in &self.topo.backends {
            self.spawn_backend(b)?;
        }
        if self.cfg.uses_haproxy() {
            self.start_haproxy()?;
        }
        if self.cfg.uses_nginx() {
            self.start_nginx()?;
        }
        Ok(())
    }

    fn build_network(&self) -> Result<()> {
        let t = &self.topo;
        let mut all_ns = vec![t.lb_ns.as_str(), t.client_ns.as_str(), t.switch_ns.as_str()];
        all_ns.extend(t.backends.iter().map(|b| b.ns.as_str()));
        for ns in &all_ns {
            sys::netns_add(ns)?;
        }
        // Frontend leg: nta-lb/nta-fe <-> nta-cli/eth0.
        sys::veth(&t.lb_ns, &t.lb_frontend_if, &t.client_ns, &t.client_if)?;
        sys::addrs_up(&t.lb_ns, &t.lb_frontend_if, &[format!("{}/24", t.vip)])?;
        let client_cidrs: Vec<String> = t.client_addrs.iter().map(|a| format!("{a}/24")).collect();
        sys::addrs_up(&t.client_ns, &t.client_if, &client_cidrs)?;
        // Backend leg: nta-lb/nta-be <-> nta-sw/lb, bridge br0, nta-webN/eth0 <-> nta-sw/webN.
        sys::ip_ns(&t.switch_ns, &["link", "add", "br0", "type", "bridge"])?;
        sys::ip_ns(&t.switch_ns, &["link", "set", "br0", "up"])?;
        sys::veth(&t.lb_ns, &t.lb_backend_if, &t.switch_ns, "lb")?;
        sys::ip_ns(&t.switch_ns, &["link", "set", "lb", "master", "br0", "up"])?;
        sys::addrs_up(
            &t.lb_ns,
            &t.lb_backend_if,
            &[format!("{}/24", t.lb_backend_addr)],
        )?;
        for b in &t.backends {
            sys::veth(&b.ns, "eth0", &t.switch_ns, &b.name)?;
            sys::ip_ns(
                &t.switch_ns,
                &["link", "set", &b.name, "master", "br0", "up"],
            )?;
            sys::addrs_up(&b.ns, "eth0", &[format!("{}/24", b.addr)])?;
        }
        Ok(())
    }

    /// `nta-kdc` linked to `nta-cli`, a fresh realm database with the lab's users and the
    /// service principal, the shared keytab, and `krb5kdc -n`. Only files of the state dir
    /// are used (`KRB5_CONFIG`, `KRB5_KDC_PROFILE`): Debian's own KDC, if any, is untouched.
    fn build_kdc(&self, k: &KdcInfo) -> Result<()> {
        let t = &self.topo;
        sys::netns_add(&k.ns)?;
        sys::veth(&t.client_ns, CLIENT_KDC_IF, &k.ns, "eth0")?;
        sys::addrs_up(
            &t.client_ns,
            CLIENT_KDC_IF,
            &[format!("{CLIENT_KDC_ADDR}/24")],
        )?;
        sys::addrs_up(&k.ns, "eth0", &[format!("{}/24", k.addr)])?;

        let st = self.state_dir();
        let kdir = st.join("kdc");
        // A kept state dir (NTA_LAB_KEEP_STATE) still holds the last run's
        // database, and `kdb5_util create` refuses to overwrite it: every lab
        // gets a fresh realm.
        if kdir.exists() {
            fs::remove_dir_all(&kdir).with_context(|| format!("remove {}", kdir.display()))?;
        }
        fs::create_dir_all(&kdir)?;
        fs::create_dir_all(&k.ccache_dir)?;
        fs::write(&k.krb5_conf, config::krb5_conf())?;
        let profile = kdir.join("kdc.conf");
        fs::write(&profile, config::kdc_conf(st))?;
        fs::write(kdir.join("kadm5.acl"), b"")?;
        let env = [
            ("KRB5_CONFIG", k.krb5_conf.as_os_str()),
            ("KRB5_KDC_PROFILE", profile.as_os_str()),
        ];
        let tool = |prog: &str, args: &[&str]| -> Result<()> {
            let mut c = Command::new(prog);
            c.args(args).envs(env.iter().copied());
            sys::run(&mut c).map(|_| ())
        };
        tool(
            "kdb5_util",
            &["create", "-s", "-W", "-r", &k.realm, "-P", "nta-lab-master"],
        )?;
        for (_, u, p) in &self.cfg.users {
            tool(
                "kadmin.local",
                &["-q", &format!("addprinc -pw {p} {u}@{}", k.realm)],
            )?;
        }
        let spn = &k.service_principal;
        tool("kadmin.local", &["-q", &format!("addprinc -randkey {spn}")])?;
        let _ = fs::remove_file(&k.keytab);
        tool(
            "kadmin.local",
            &["-q", &format!("ktadd -k {} {spn}", k.keytab.display())],
        )?;
        if !k.keytab.is_file() {
            bail!("kadmin.local wrote no keytab {}", k.keytab.display());
        }
        fs::set_permissions(&k.keytab, fs::Permissions::from_mode(0o600))?;

        let argv: [&OsStr; 2] = [OsStr::new("krb5kdc"), OsStr::new("-n")];
        let (mut child, rec) = sys::spawn_daemon(st, "kdc", &k.ns, &argv, &env)?;
        let want = format!(":{}", k.port);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                bail!(
                    "krb5kdc exited at start ({status}):\n{}",
                    sys::tail(&rec.log, 4000)
                );
            }
            if sys::listening(&k.ns)?.iter().any(|l| l.ends_with(&want)) {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("krb5kdc does not listen on {want} after 15 s");
            }
            sleep(Duration::from_millis(25));
        }
        self.keep(child);
        Ok(())
    }

    fn spawn_backend(&self, b: &BackendInfo) -> Result<()> {
        if self.cfg.backend_kind == BackendKind::StaticNginx {
            return self.spawn_static_backend(b);
        }
        let st = self.state_dir();
        let ready = st.join(format!("{}.ready", b.name));
        let _ = fs::remove_file(&ready);
        let script = lab_files_dir().join("ntlm_backend.py");
        let port = BACKEND_PORT.to_string();
        let mut argv: Vec<OsString> = vec![
            "unshare".into(),
            "--uts".into(),
            "sh".into(),
            "-c".into(),
            r#"hostname "$1" && shift && exec "$@""#.into(),
            "nta-backend".into(),
            b.name.clone().into(),
            self.python.clone().into(),
            "-u".into(),
            script.into(),
            "--port".into(),
            port.into(),
            "--log".into(),
            b.truth_log.clone().into(),
            "--ready-file".into(),
            ready.clone().into(),
        ];
        argv.push("--persistent-auth".into());
        argv.push(self.cfg.effective_persistent_auth().name().into());
        if self.topo.kdc.is_some() {
            argv.push("--kerberos".into());
        }
        if let Some(prefix) = &self.cfg.anonymous_path {
            argv.push("--anonymous-path".into());
            argv.push(prefix.into());
        }
        if self.cfg.proxy_auth {
            argv.push("--proxy-auth".into());
        }
        let argv_ref: Vec<&OsStr> = argv.iter().map(OsString::as_os_str).collect();
        let users = st.join("users.txt");
        let mut env: Vec<(&str, &OsStr)> = vec![
            ("NTLM_USER_FILE", users.as_os_str()),
            ("PYTHONDONTWRITEBYTECODE", OsStr::new("1")),
        ];
        if let Some(k) = &self.topo.kdc {
            env.push(("KRB5_CONFIG", k.krb5_conf.as_os_str()));
            env.push(("KRB5_KTNAME", k.keytab.as_os_str()));
            // The acceptor needs no ticket cache; never the host's default one.
            env.push(("KRB5CCNAME", OsStr::new("MEMORY:nta-backend")));
        }
        let (mut child, rec) = sys::spawn_daemon(st, &b.name, &b.ns, &argv_ref, &env)?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if ready.exists() {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                bail!(
                    "backend {} exited at start ({status}):\n{}",
                    b.name,
                    sys::tail(&rec.log, 4000)
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!(
                    "backend {} did not become ready in 20 s:\n{}",
                    b.name,
                    sys::tail(&rec.log, 4000)
                );
            }
            sleep(Duration::from_millis(25));
        }
        self.keep(child);
        Ok(())
    }

    /// A static NGINX in the backend's namespace (see [`BackendKind::StaticNginx`]).
    fn spawn_static_backend(&self, b: &BackendInfo) -> Result<()> {
        let st = self.state_dir();
        fs::create_dir_all(st.join("nginx-tmp"))?;
        let cfg_path = st.join(format!("{}.nginx.conf", b.name));
        fs::write(
            &cfg_path,
            config::static_backend_config(&b.name, b.addr, st),
        )?;
        let err_log = st.join(format!("{}.error.log", b.name));
        let argv: [&OsStr; 7] = [
            OsStr::new("nginx"),
            OsStr::new("-c"),
            cfg_path.as_os_str(),
            OsStr::new("-e"),
            err_log.as_os_str(),
            OsStr::new("-p"),
            st.as_os_str(),
        ];
        let (mut child, rec) = sys::spawn_daemon(st, &b.name, &b.ns, &argv, &[])?;
        let want = format!("{}:{BACKEND_PORT}", b.addr);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                bail!(
                    "static backend {} exited at start ({status}):\n{}\n{}",
                    b.name,
                    sys::tail(&rec.log, 2000),
                    sys::tail(&err_log, 2000)
                );
            }
            if sys::listening(&b.ns)?.contains(&want) {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!(
                    "static backend {} does not listen on {want} after 15 s",
                    b.name
                );
            }
            sleep(Duration::from_millis(25));
        }
        self.keep(child);
        Ok(())
    }

    fn wait_listening(
        &self,
        name: &str,
        child: &mut Child,
        rec: &ProcRecord,
        ports: &[u16],
    ) -> Result<()> {
        let want: Vec<String> = ports.iter().map(|p| format!("{VIP}:{p}")).collect();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                bail!(
                    "{name} exited at start ({status}):\n{}",
                    sys::tail(&rec.log, 4000)
                );
            }
            let have = sys::listening(NS_LB)?;
            if want.iter().all(|w| have.contains(w)) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{name} does not listen on {want:?} after 15 s:\n{}",
                    sys::tail(&rec.log, 4000)
                );
            }
            sleep(Duration::from_millis(25));
        }
    }

    fn start_haproxy(&self) -> Result<()> {
        let st = self.state_dir();
        let cfg_path = st.join("haproxy.cfg");
        fs::write(&cfg_path, config::haproxy_config(&self.cfg, st))?;
        let check = sys::run(
            ns_command(NS_LB, "haproxy")
                .args(["-c", "-q", "-f"])
                .arg(&cfg_path),
        );
        if let Err(e) = check {
            bail!(
                "haproxy rejects the generated config {}: {e:#}",
                cfg_path.display()
            );
        }
        let argv: [&OsStr; 4] = [
            OsStr::new("haproxy"),
            OsStr::new("-db"),
            OsStr::new("-f"),
            cfg_path.as_os_str(),
        ];
        let (mut child, rec) = sys::spawn_daemon(st, "haproxy", NS_LB, &argv, &[])?;
        let ports: Vec<u16> = self
            .cfg
            .frontends
            .iter()
            .filter(|f| f.balancer.is_haproxy())
            .map(|f| f.port)
            .collect();
        let r = self.wait_listening("haproxy", &mut child, &rec, &ports);
        self.keep(child);
        r
    }

    fn start_nginx(&self) -> Result<()> {
        let st = self.state_dir();
        for t in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"] {
            fs::create_dir_all(st.join("nginx-tmp").join(t))?;
        }
        let cfg_path = st.join("nginx.conf");
        fs::write(&cfg_path, config::nginx_config(&self.cfg, st))?;
        let err_log = st.join("nginx.error.log");
        let check = sys::run(
            ns_command(NS_LB, "nginx")
                .args(["-t", "-q", "-c"])
                .arg(&cfg_path)
                .arg("-e")
                .arg(&err_log)
                .arg("-p")
                .arg(st),
        );
        if let Err(e) = check {
            bail!(
                "nginx rejects the generated config {}: {e:#}",
                cfg_path.display()
            );
        }
        let argv: [&OsStr; 7] = [
            OsStr::new("nginx"),
            OsStr::new("-c"),
            cfg_path.as_os_str(),
            OsStr::new("-e"),
            err_log.as_os_str(),
            OsStr::new("-p"),
            st.as_os_str(),
        ];
        let (mut child, rec) = sys::spawn_daemon(st, "nginx", NS_LB, &argv, &[])?;
        let ports: Vec<u16> = self
            .cfg
            .frontends
            .iter()
            .filter(|f| !f.balancer.is_haproxy())
            .map(|f| f.port)
            .collect();
        let r = self
            .wait_listening("nginx", &mut child, &rec, &ports)
            .map_err(|e| {
                let more = sys::tail(&err_log, 2000);
                if more.is_empty() {
                    e
                } else {
                    e.context(format!("nginx error log:\n{more}"))
                }
            });
        self.keep(child);
        r
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.down_on_drop {
            if let Err(e) = self.teardown() {
                eprintln!("lab teardown: {e:#}");
            }
        }
        // The lock (if any) is released when `self.lock` drops, after the teardown.
    }
}

/// Stop processes (pid records first, then anything left in `nta-*` namespaces), delete the
/// namespaces and the state dir. Idempotent.
fn down_state(state: &Path) -> Result<()> {
    let mut errors = Vec::new();
    let mut records = sys::read_records(state);
    // Tracker and balancers before backends.
    records.sort_by_key(|r| r.name.starts_with("web"));
    for r in &records {
        r.stop(Duration::from_secs(3));
    }
    let namespaces = sys::lab_namespaces().unwrap_or_default();
    for ns in &namespaces {
        if let Ok(pids) = sys::ns_pids(ns) {
            sys::terminate(&pids, Duration::from_secs(3));
        }
    }
    for ns in &namespaces {
        if let Err(e) = sys::ip(&["netns", "del", ns]) {
            errors.push(format!("{e:#}"));
        }
    }
    if state.exists() && std::env::var_os("NTA_LAB_KEEP_STATE").is_none() {
        if let Err(e) = fs::remove_dir_all(state) {
            errors.push(format!("remove {}: {e}", state.display()));
        }
    } else if state.exists() {
        let _ = fs::remove_dir_all(sys::pid_dir(state));
        let _ = fs::remove_file(state.join("lab.json"));
    }
    let left = sys::lab_namespaces().unwrap_or_default();
    if !left.is_empty() {
        errors.push(format!("namespaces still present: {left:?}"));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(anyhow!("lab down: {}", errors.join("; ")))
    }
}

/// A running packet capture (see [`Lab::start_capture`]).
#[derive(Debug)]
pub struct Capture {
    child: Option<Child>,
    /// The pcapng file.
    pub path: PathBuf,
    rec: ProcRecord,
    state: PathBuf,
}

impl Capture {
    /// Stop capturing (SIGTERM, dumpcap flushes) and return the file.
    pub fn stop(mut self) -> Result<PathBuf> {
        self.finish();
        Ok(self.path.clone())
    }

    fn finish(&mut self) {
        if let Some(mut c) = self.child.take() {
            self.rec.stop(Duration::from_secs(3));
            let _ = c.kill();
            let _ = c.wait();
            sys::remove_record(&self.state, &self.rec.name);
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.finish();
    }
}

/// What `cargo xtask lab status` shows.
#[derive(Clone, Debug, Serialize)]
pub struct LabStatus {
    /// State dir inspected.
    pub state_dir: PathBuf,
    /// `nta-*` namespaces present.
    pub namespaces: Vec<String>,
    /// Recorded processes and whether each is alive.
    pub processes: Vec<(ProcRecord, bool)>,
    /// Topology of the running lab, if its state exists.
    pub topology: Option<Topology>,
    /// Listening sockets in the balancer namespace.
    pub lb_listening: Vec<String>,
    /// Ground-truth lines per backend.
    pub truth_lines: Vec<(String, usize)>,
}

impl LabStatus {
    /// Inspect the lab of `state`.
    pub fn collect(state: &Path) -> Result<LabStatus> {
        let namespaces = sys::lab_namespaces()?;
        let processes = sys::read_records(state).into_iter().map(|r| {
            let alive = r.alive();
            (r, alive)
        });
        let topology = fs::read_to_string(state.join("lab.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<SavedLab>(&t).ok())
            .map(|s| s.topology);
        let lb_listening = if namespaces.iter().any(|n| n == NS_LB) {
            sys::listening(NS_LB).unwrap_or_default()
        } else {
            Vec::new()
        };
        let truth_lines = topology
            .as_ref()
            .map(|t| {
                t.backends
                    .iter()
                    .map(|b| {
                        (
                            b.name.clone(),
                            fs::read_to_string(&b.truth_log)
                                .map(|s| s.lines().count())
                                .unwrap_or(0),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(LabStatus {
            state_dir: state.to_path_buf(),
            namespaces,
            processes: processes.collect(),
            topology,
            lb_listening,
            truth_lines,
        })
    }

    /// As pretty JSON.
    pub fn to_json(&self) -> Result<String> {
        Ok(serde_json::to_string_pretty(self)?)
    }

    /// Is a complete lab running (namespaces present, every recorded process alive)?
    pub fn healthy(&self) -> bool {
        self.topology.is_some()
            && !self.namespaces.is_empty()
            && self.processes.iter().all(|(_, a)| *a)
    }
}

impl fmt::Display for LabStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespaces.is_empty() && self.topology.is_none() {
            return writeln!(
                f,
                "lab: down (no nta-* namespaces, no state in {})",
                self.state_dir.display()
            );
        }
        writeln!(f, "lab: {}", if self.healthy() { "up" } else { "DEGRADED" })?;
        writeln!(f, "  state dir   {}", self.state_dir.display())?;
        writeln!(f, "  namespaces  {}", self.namespaces.join(" "))?;
        if let Some(t) = &self.topology {
            writeln!(
                f,
                "  balancer    ns {}: {} {} (frontend), {} {} (backend)",
                t.lb_ns, t.lb_frontend_if, t.vip, t.lb_backend_if, t.lb_backend_addr
            )?;
            for fe in &t.frontends {
                let servers: Vec<String> = fe
                    .servers(t.backends.len())
                    .iter()
                    .map(|w| backend_name(*w))
                    .collect();
                writeln!(
                    f,
                    "  frontend    {}:{} {} -> {}",
                    t.vip,
                    fe.port,
                    fe.balancer,
                    servers.join(",")
                )?;
            }
            if let Some(k) = &t.kdc {
                writeln!(
                    f,
                    "  kdc         ns {} {}:{} realm {} service {} (KRB5_CONFIG={})",
                    k.ns,
                    k.addr,
                    k.port,
                    k.realm,
                    k.service_principal,
                    k.krb5_conf.display()
                )?;
            }
            for b in &t.backends {
                writeln!(
                    f,
                    "  backend     {} ns {} {}:{} truth {}",
                    b.name,
                    b.ns,
                    b.addr,
                    t.backend_port,
                    b.truth_log.display()
                )?;
            }
            let first = t
                .client_addrs
                .first()
                .map(|a| a.to_string())
                .unwrap_or_default();
            let last = t
                .client_addrs
                .last()
                .map(|a| a.to_string())
                .unwrap_or_default();
            writeln!(
                f,
                "  clients     ns {} {} {}..{} ({} addresses)",
                t.client_ns,
                t.client_if,
                first,
                last,
                t.client_addrs.len()
            )?;
            writeln!(
                f,
                "  tracker     ip netns exec {} ntlm-affinity {}",
                t.lb_ns,
                t.tracker_args().join(" ")
            )?;
        }
        for (r, alive) in &self.processes {
            writeln!(
                f,
                "  process     {:<8} pid {:<7} {:<5} ns {} log {}",
                r.name,
                r.pid,
                if *alive { "alive" } else { "DEAD" },
                r.ns,
                r.log.display()
            )?;
        }
        if !self.lb_listening.is_empty() {
            writeln!(f, "  listening   {}", self.lb_listening.join(" "))?;
        }
        for (name, n) in &self.truth_lines {
            writeln!(f, "  truth       {name}: {n} lines")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tracker_args_shape() {
        let cfg = LabConfig::preset("all").unwrap();
        let t = Topology::new(&cfg);
        let a = t.tracker_args().join(" ");
        assert!(a.starts_with(
            "run --iface nta-be --iface nta-fe --backend 198.19.0.0/24:80 --frontend-port 80"
        ));
        assert_eq!(t.backends.len(), 3);
        assert_eq!(
            t.backend("WEB2").unwrap().addr,
            Ipv4Addr::new(198, 19, 0, 12)
        );
    }

    #[test]
    fn lock_path_is_beside_state() {
        assert_eq!(
            lock_path(Path::new("/run/nta-lab")),
            PathBuf::from("/run/nta-lab.lock")
        );
    }
}
