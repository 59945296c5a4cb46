//! `cargo xtask demo`: the lab with a good and a broken balancer configuration side by side,
//! clients driving NTLM handshakes through both, the tracker attached to the balancer's
//! interfaces, and its events shown live next to what the backends themselves logged.

use std::io::{BufRead, BufReader, IsTerminal, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::config::{Balancer, Frontend, LabConfig, client_addr};
use super::{Lab, sys};

/// One client driver: `clients.py drive` against one port.
#[derive(Clone, Debug)]
pub struct Driver {
    /// Short label shown in summaries.
    pub label: &'static str,
    /// Frontend port.
    pub port: u16,
    /// `--mix` for `clients.py drive`.
    pub mix: &'static str,
    /// Client source address indices (0 = 198.18.0.10); used in turn with the mix.
    pub sources: Vec<usize>,
    /// Extra `clients.py` arguments.
    pub extra: Vec<&'static str>,
    /// Seconds between runs (scaled by the demo's pace).
    pub interval: f64,
}

/// A demo scenario: the lab's frontends and the traffic driven through them.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// `--scenario NAME`.
    pub name: &'static str,
    /// One-line title.
    pub title: &'static str,
    /// Banner text: what the viewer is about to see.
    pub explain: &'static str,
    /// Frontends (ports on the VIP).
    pub frontends: Vec<Frontend>,
    /// Client drivers.
    pub drivers: Vec<Driver>,
}

fn drv(
    label: &'static str,
    port: u16,
    mix: &'static str,
    sources: &[usize],
    extra: &[&'static str],
    interval: f64,
) -> Driver {
    Driver {
        label,
        port,
        mix,
        sources: sources.to_vec(),
        extra: extra.to_vec(),
        interval,
    }
}

/// Names of the demo scenarios.
pub const SCENARIOS: [&str; 9] = [
    "overview",
    "kerberos",
    "session-mixing",
    "server-close",
    "reconnect",
    "http10",
    "nginx",
    "abandon",
    "mixed",
];

/// Whether a scenario's clients speak real Kerberos (the lab then starts its KDC).
pub fn needs_kerberos(sc: &Scenario) -> bool {
    sc.drivers.iter().any(|d| d.mix.contains("negotiate"))
}

/// The scenario called `name`.
pub fn scenario(name: &str) -> Result<Scenario> {
    use Balancer::*;
    let s = match name {
        "overview" => Scenario {
            name: "overview",
            title: "good and broken balancers side by side",
            explain: "  :80  HAProxy keep-alive, roundrobin            -> good: every NTLM handshake 200, no alerts\n\
                      \x20 :81  HAProxy option http-server-close         -> broken: each Type-3 reaches the other server\n\
                      \x20                                                  (server_split, 401 1 2148074248 on IIS)\n\
                      \x20 :82  NGINX upstream keepalive, one server      -> dangerous: alice authenticates, then another\n\
                      \x20                                                  client's anonymous requests ride her pooled\n\
                      \x20                                                  backend connection and are served AS ALICE\n\
                      \x20                                                  (auth_context_reuse)",
            frontends: vec![
                Frontend::new(80, HaproxyKeepAlive).to(&[1, 2]),
                Frontend::new(81, HaproxyServerClose).to(&[1, 2]),
                Frontend::new(82, NginxKeepAlive).to(&[3]),
            ],
            drivers: vec![
                drv(":80 good NTLM", 80, "keepalive", &[0], &[], 2.0),
                drv(
                    ":80 good SPNEGO",
                    80,
                    "keepalive",
                    &[1],
                    &["--scheme", "Negotiate", "--wrap", "spnego"],
                    5.0,
                ),
                drv(":80 kerberos", 80, "kerberos", &[2], &[], 7.0),
                drv(":81 broken", 81, "keepalive", &[3], &[], 2.0),
                drv(
                    ":82 mixing",
                    82,
                    "keepalive,anon",
                    &[4, 5],
                    &["--requests", "2", "--user", "LAB\\alice"],
                    2.0,
                ),
            ],
        },
        "kerberos" => Scenario {
            name: "kerberos",
            title: "a persisted Kerberos logon shared between clients, and NTLM fallbacks",
            explain: "  real MIT KDC (realm LAB.TEST), backends answer Persistent-Auth: true (IIS default)\n\
                      \x20 :80  HAProxy keep-alive -> safe here: every session gets its own server connection\n\
                      \x20 :81  NGINX upstream keepalive, one server -> a client logs on with Kerberos\n\
                      \x20      (pre-emptive Negotiate), another client's anonymous requests ride that\n\
                      \x20      pooled connection and are served as the Kerberos user (auth_context_reuse,\n\
                      \x20      auth_scheme kerberos, realm and service principal; the user is in the ticket)\n\
                      \x20 :80  clients without a usable ticket fall back to NTLM inside SPNEGO\n\
                      \x20      (ntlm_handshake with fallback reason; run with --verbose to see them)",
            frontends: vec![
                Frontend::new(80, HaproxyKeepAlive).to(&[1, 2]),
                Frontend::new(81, NginxKeepAlive).to(&[3]),
            ],
            drivers: vec![
                drv(
                    ":80 kerberos",
                    80,
                    "negotiate-preemptive,anon",
                    &[0, 1],
                    &["--requests", "2"],
                    2.0,
                ),
                drv(
                    ":81 kerberos leak",
                    81,
                    "negotiate-preemptive,anon",
                    &[2, 3],
                    &["--requests", "2"],
                    2.0,
                ),
                drv(":80 fallback", 80, "negotiate-fallback", &[4], &[], 5.0),
            ],
        },
        "session-mixing" => Scenario {
            name: "session-mixing",
            title: "authenticated backend connections shared between clients",
            explain: "  :80  HAProxy keep-alive (connection made private after the NTLM 401) -> good\n\
                      \x20 :81  NGINX upstream keepalive, one server -> alice (198.18.0.10) authenticates; bob's\n\
                      \x20      machine (198.18.0.11) then sends requests WITHOUT credentials and the backend\n\
                      \x20      serves them as alice: auth_context_reuse, one alert per request",
            frontends: vec![
                Frontend::new(80, HaproxyKeepAlive).to(&[1]),
                Frontend::new(81, NginxKeepAlive).to(&[2]),
            ],
            drivers: vec![
                drv(
                    ":80 good",
                    80,
                    "keepalive,anon",
                    &[0, 1],
                    &["--requests", "2"],
                    2.0,
                ),
                drv(
                    ":81 mixing",
                    81,
                    "keepalive,anon",
                    &[0, 1],
                    &["--requests", "2"],
                    2.0,
                ),
            ],
        },
        "server-close" => Scenario {
            name: "server-close",
            title: "HAProxy keep-alive vs option http-server-close",
            explain: "  :80  HAProxy keep-alive -> good\n\
                      \x20 :81  HAProxy option http-server-close, roundrobin -> server_split (balancer_reroute)",
            frontends: vec![
                Frontend::new(80, HaproxyKeepAlive).to(&[1, 2]),
                Frontend::new(81, HaproxyServerClose).to(&[1, 2]),
            ],
            drivers: vec![
                drv(":80 good", 80, "keepalive", &[0, 1], &[], 1.5),
                drv(":81 broken", 81, "keepalive", &[2, 3], &[], 1.5),
            ],
        },
        "reconnect" => Scenario {
            name: "reconnect",
            title: "a client that opens a new connection for every leg: Type-3 off the challenge's connection",
            explain: "  :80  HAProxy keep-alive, roundrobin: reconnecting client -> server_split (client_reconnect);\n\
                      \x20      well-behaved keep-alive client beside it stays clean\n\
                      \x20 :81  HAProxy stick on src: same server, new connection -> connection_split",
            frontends: vec![
                Frontend::new(80, HaproxyKeepAlive).to(&[1, 2]),
                Frontend::new(81, HaproxyStickSrc).to(&[1, 2]),
            ],
            drivers: vec![
                drv(":80 good", 80, "keepalive", &[0], &[], 2.0),
                drv(
                    ":80 reconnect",
                    80,
                    "reconnect",
                    &[1],
                    &["--anon-first"],
                    2.0,
                ),
                drv(":81 stick+reconnect", 81, "reconnect", &[2], &[], 2.0),
            ],
        },
        "http10" => Scenario {
            name: "http10",
            title: "HTTP/1.0 clients with Connection: close lose the challenge's connection",
            explain: "  :80  HAProxy keep-alive: an HTTP/1.1 keep-alive client (good) and an HTTP/1.0 client whose\n\
                      \x20      connection closes after the challenge -> split, cause connection_closed; and one that\n\
                      \x20      gives up after the challenge -> abandoned_challenge",
            frontends: vec![Frontend::new(80, HaproxyKeepAlive).to(&[1, 2])],
            drivers: vec![
                drv(":80 good", 80, "keepalive", &[0], &[], 2.0),
                drv(":80 http/1.0", 80, "http10", &[1], &[], 2.0),
                drv(
                    ":80 http/1.0 gives up",
                    80,
                    "http10",
                    &[2],
                    &["--give-up"],
                    4.0,
                ),
            ],
        },
        "nginx" => Scenario {
            name: "nginx",
            title: "NGINX upstream without keepalive",
            explain: "  :80  HAProxy keep-alive -> good\n\
                      \x20 :81  NGINX OSS upstream without keepalive, two servers: a new backend connection per\n\
                      \x20      request -> every Type-3 split (server_split)",
            frontends: vec![
                Frontend::new(80, HaproxyKeepAlive).to(&[1, 2]),
                Frontend::new(81, Nginx).to(&[1, 2]),
            ],
            drivers: vec![
                drv(":80 good", 80, "keepalive", &[0], &[], 1.5),
                drv(":81 nginx", 81, "keepalive", &[1], &[], 1.5),
            ],
        },
        "abandon" => Scenario {
            name: "abandon",
            title: "clients that stop after the challenge",
            explain: "  :80  HAProxy keep-alive: healthy clients, and one that sends the Type-1, gets the Type-2\n\
                      \x20      and stops -> abandoned_challenge (the healthy ones stay clean)",
            frontends: vec![Frontend::new(80, HaproxyKeepAlive).to(&[1, 2])],
            drivers: vec![
                drv(":80 good", 80, "keepalive", &[0, 1], &[], 1.5),
                drv(":80 abandons", 80, "abandon", &[2], &["--hold", "1"], 3.0),
            ],
        },
        "mixed" => Scenario {
            name: "mixed",
            title: "mixed load",
            explain: "  :80  HAProxy keep-alive and :81 http-server-close with keep-alive, reconnecting, HTTP/1.0,\n\
                      \x20      abandoning and Kerberos-looking clients at once",
            frontends: vec![
                Frontend::new(80, HaproxyKeepAlive),
                Frontend::new(81, HaproxyServerClose),
            ],
            drivers: vec![
                drv(
                    ":80 mix",
                    80,
                    "keepalive,reconnect,http10,abandon,kerberos,keepalive",
                    &[0, 1, 2, 3, 4, 5],
                    &[],
                    0.3,
                ),
                drv(
                    ":81 mix",
                    81,
                    "keepalive,reconnect,http10,abandon,kerberos,keepalive",
                    &[2, 3, 4, 5, 6, 7],
                    &[],
                    0.3,
                ),
            ],
        },
        other => bail!(
            "unknown demo scenario {other:?}; scenarios: {}",
            SCENARIOS.join(", ")
        ),
    };
    Ok(s)
}

/// How to run the demo.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Scenario name (see [`SCENARIOS`]).
    pub scenario: String,
    /// Stop after this long (None: until Ctrl-C).
    pub duration: Option<Duration>,
    /// The `ntlm-affinity` binary; None runs the lab and clients without the tracker
    /// (the backends' ground truth is still shown).
    pub tracker_bin: Option<PathBuf>,
    /// Multiplier for the drivers' pauses (1.0 = default pace, smaller = faster).
    pub pace: f64,
    /// Show the backends' notable ground-truth outcomes beside the tracker's events.
    pub show_truth: bool,
    /// Show every tracker event (also metrics and connection closes).
    pub verbose: bool,
    /// Show the events in the live view (`ntlm-affinity top`) instead of as lines; the demo
    /// ends when it is quit.
    pub top: bool,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            scenario: "overview".into(),
            duration: None,
            tracker_bin: None,
            pace: 1.0,
            show_truth: true,
            verbose: true,
            top: false,
        }
    }
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_sig: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

struct SignalGuard;

impl SignalGuard {
    fn install() -> SignalGuard {
        INTERRUPTED.store(false, Ordering::SeqCst);
        let handler = on_signal as extern "C" fn(libc::c_int);
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(libc::SIGINT, handler as libc::sighandler_t);
            libc::signal(libc::SIGTERM, handler as libc::sighandler_t);
        }
        SignalGuard
    }
}

impl Drop for SignalGuard {
    fn drop(&mut self) {
        // SAFETY: restoring the default disposition.
        unsafe {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            libc::signal(libc::SIGTERM, libc::SIG_DFL);
        }
    }
}

enum Msg {
    Tracker(String),
    TrackerExit,
    Truth(String),
    Client(usize, String),
}

struct Style {
    on: bool,
}

impl Style {
    fn paint(&self, code: &str, s: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    fn red(&self, s: &str) -> String {
        self.paint("1;31", s)
    }
    fn green(&self, s: &str) -> String {
        self.paint("32", s)
    }
    fn dim(&self, s: &str) -> String {
        self.paint("2", s)
    }
    fn bold(&self, s: &str) -> String {
        self.paint("1", s)
    }
    fn yellow(&self, s: &str) -> String {
        self.paint("33", s)
    }
}

/// A field by dotted name, flat (`"event.action"`) or nested (`{"event":{"action"}}`).
pub fn field<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    if let Some(x) = v.get(name) {
        return Some(x);
    }
    let mut cur = v;
    for part in name.split('.') {
        cur = cur.get(part)?;
    }
    Some(cur)
}

fn fstr(v: &Value, name: &str) -> Option<String> {
    field(v, name).and_then(|x| match x {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    })
}

/// One-line summary of a tracker NDJSON event (None = not worth a line: metrics and
/// connection closes unless `verbose`). Accepts flat (`"event.action"`) and nested fields.
pub fn pretty_event(v: &Value, verbose: bool) -> Option<(bool, String)> {
    let action = fstr(v, "event.action");
    let kind = fstr(v, "event.kind");
    let is_alert = kind.as_deref() == Some("alert");
    if !is_alert
        && !verbose
        && (kind.as_deref() == Some("metric") || action.as_deref() == Some("connection_closed"))
    {
        return None;
    }
    let mut parts = Vec::new();
    if is_alert {
        parts.push(format!(
            "ALERT {}",
            action.clone().unwrap_or_else(|| "?".into())
        ));
        if let Some(c) = fstr(v, "ntlm_affinity.cause") {
            parts.push(format!("cause={c}"));
        }
    } else if let Some(a) = &action {
        parts.push(a.clone());
    }
    let leg = match fstr(v, "observer.interface").as_deref() {
        Some(super::config::LB_BACKEND_IF) => Some("backend".to_string()),
        Some(super::config::LB_FRONTEND_IF) => Some("frontend".to_string()),
        Some(other) => Some(other.to_string()),
        None => fstr(v, "direction"),
    };
    if let Some(l) = leg {
        parts.push(format!("[{l}]"));
    }
    let src = fstr(v, "src").or_else(|| {
        Some(format!(
            "{}:{}",
            fstr(v, "source.ip")?,
            fstr(v, "source.port").unwrap_or_default()
        ))
    });
    let dst = fstr(v, "dst").or_else(|| {
        Some(format!(
            "{}:{}",
            fstr(v, "destination.ip")?,
            fstr(v, "destination.port").unwrap_or_default()
        ))
    });
    if let (Some(s), Some(d)) = (&src, &dst) {
        parts.push(format!("{s} -> {d}"));
    }
    if let Some(h) = fstr(v, "header").or_else(|| fstr(v, "ntlm.header")) {
        parts.push(h);
    }
    let scheme = fstr(v, "scheme").or_else(|| fstr(v, "ntlm.scheme"));
    let mtype = fstr(v, "ntlm_message_type")
        .or_else(|| fstr(v, "ntlm.message_type"))
        .map(|t| match t.as_str() {
            "1" | "negotiate" => "Type-1".to_string(),
            "2" | "challenge" => "Type-2".to_string(),
            "3" | "authenticate" => "Type-3".to_string(),
            _ => t,
        });
    match (scheme, mtype) {
        (Some(s), Some(t)) => parts.push(format!("{s} {t}")),
        (Some(s), None) => parts.push(s),
        (None, Some(t)) => parts.push(t),
        _ => {}
    }
    if field(v, "ntlm.kerberos").and_then(Value::as_bool) == Some(true) {
        parts.push("kerberos".into());
    }
    if fstr(v, "ntlm_affinity.auth_scheme").as_deref() == Some("kerberos") {
        let spn = fstr(v, "kerberos.service_principal").unwrap_or_default();
        let realm = fstr(v, "kerberos.realm").unwrap_or_default();
        parts.push(format!("kerberos {spn}@{realm}"));
        if let Some(c) = fstr(v, "ntlm_affinity.authenticated_client.forwarded_for") {
            parts.push(format!("logon-of={c}"));
        }
    }
    if let Some(r) = fstr(v, "ntlm_affinity.fallback.reason") {
        parts.push(format!("ntlm-fallback={r}"));
    }
    if let Some(u) = fstr(v, "ntlm.username").or_else(|| fstr(v, "user.name")) {
        let d = fstr(v, "ntlm.domain")
            .map(|d| format!("{d}\\"))
            .unwrap_or_default();
        parts.push(format!("user={d}{u}"));
    }
    if let Some(s) = fstr(v, "ntlm.server_nb_computer_name") {
        parts.push(format!("challenge-from={s}"));
    }
    if let Some(s) = fstr(v, "http.response.status_code") {
        parts.push(format!("-> {s}"));
    }
    if parts.is_empty() {
        if !verbose {
            return None;
        }
        parts.push(v.to_string());
    }
    Some((is_alert, parts.join("  ")))
}

/// One-line summary of a notable ground-truth record (None = routine).
pub fn pretty_truth(v: &Value) -> Option<String> {
    let server = fstr(v, "server").unwrap_or_default();
    let outcome = fstr(v, "outcome").unwrap_or_default();
    let user = fstr(v, "user").unwrap_or_default();
    let xff = fstr(v, "xff").unwrap_or_else(|| "-".into());
    match outcome.as_str() {
        "failure" if field(v, "split").is_some_and(|s| !s.is_null()) => Some(format!(
            "{server}: Type-3 of {user} (client {xff}) answers {}'s challenge -> 401 ({} split, {})",
            fstr(v, "challenge_server").unwrap_or_else(|| "?".into()),
            fstr(v, "split").unwrap_or_default(),
            fstr(v, "reason").unwrap_or_default()
        )),
        "failure" => Some(format!(
            "{server}: failure {user} (client {xff}): {}",
            fstr(v, "reason").unwrap_or_default()
        )),
        "reused_context" if field(v, "same_client").and_then(Value::as_bool) == Some(false) => {
            Some(format!(
                "{server}: request from client {xff} WITHOUT credentials served as {user} (connection authenticated by {})",
                fstr(v, "auth_xff").unwrap_or_else(|| "?".into())
            ))
        }
        _ => None,
    }
}

#[derive(Default, Clone)]
struct Counts {
    ok: u64,
    failed: u64,
    served_anon: u64,
    refused_anon: u64,
    kerberos: u64,
    kerberos_logons: u64,
    errors: u64,
}

/// Run the demo until Ctrl-C or `opts.duration`; tears the lab down at the end.
pub fn run(opts: &DemoOptions) -> Result<()> {
    let sc = scenario(&opts.scenario)?;
    let style = Style {
        on: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    };
    if let Some(bin) = &opts.tracker_bin {
        if !bin.is_file() {
            bail!(
                "tracker binary {} not found (build it first)",
                bin.display()
            );
        }
    }
    if opts.top {
        if opts.tracker_bin.is_none() {
            bail!("--top shows the tracker's live view: it needs the tracker");
        }
        if opts.duration.is_some() {
            bail!("--top runs until the live view is quit (q): drop --duration");
        }
        if !std::io::stdout().is_terminal() {
            bail!("--top draws the live view and needs a terminal; stdout is not one");
        }
    }
    let mut cfg = LabConfig::default().with_frontends(sc.frontends.clone());
    if needs_kerberos(&sc) {
        cfg = cfg.with_kerberos();
    }
    let _signals = SignalGuard::install();
    println!(
        "{}",
        style.bold(&format!("ntlm-affinity demo: {} ({})", sc.name, sc.title))
    );
    println!(
        "starting the lab (network namespaces nta-*, real HAProxy/NGINX, three IIS-like NTLM backends)..."
    );
    let lab = Lab::up(cfg)?.down_on_drop(true);
    let result = run_with_lab(&lab, &sc, opts, &style);
    println!("\ntearing the lab down...");
    let down = lab.shutdown();
    result?;
    down?;
    println!("done: no nta-* namespace left.");
    Ok(())
}

fn run_with_lab(lab: &Lab, sc: &Scenario, opts: &DemoOptions, style: &Style) -> Result<()> {
    let (tx, rx) = mpsc::channel::<Msg>();
    let mut children: Vec<Child> = Vec::new();
    let r = drive(lab, sc, opts, style, &tx, rx, &mut children);
    for c in children.iter_mut() {
        let _ = c.kill();
        let _ = c.wait();
    }
    r
}

fn drive(
    lab: &Lab,
    sc: &Scenario,
    opts: &DemoOptions,
    style: &Style,
    tx: &Sender<Msg>,
    rx: Receiver<Msg>,
    children: &mut Vec<Child>,
) -> Result<()> {
    let topo = lab.topology();
    // Tracker.
    let mut tracker_running = false;
    if let Some(bin) = &opts.tracker_bin {
        let log = lab.state_dir().join("tracker.log");
        let err = std::fs::File::create(&log)?;
        let mut cmd = lab.lb_command(bin);
        cmd.args(topo.tracker_args());
        if opts.top {
            cmd.arg("--control").arg(control_path(lab));
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(err);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let line = sys::display_cmd(&cmd);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("start the tracker: `{line}`"))?;
        lab.adopt("tracker", &topo.lb_ns, &child, &log)?;
        if let Some(out) = child.stdout.take() {
            let tx = tx.clone();
            thread::spawn(move || {
                for l in BufReader::new(out).lines() {
                    let Ok(l) = l else { break };
                    if tx.send(Msg::Tracker(l)).is_err() {
                        break;
                    }
                }
                let _ = tx.send(Msg::TrackerExit);
            });
        }
        // Give it time to load and attach before traffic starts.
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_millis(1500) {
            if let Ok(Some(st)) = child.try_wait() {
                bail!(
                    "the tracker exited at start ({st}): `{line}`\n{}",
                    sys::tail(&log, 4000)
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
        println!("tracker: {line}");
        children.push(child);
        tracker_running = true;
    } else {
        println!(
            "{}",
            style.yellow(
                "tracker: not started (no binary given): showing the backends' ground truth only"
            )
        );
    }

    // Ground-truth tails.
    if opts.show_truth || !tracker_running {
        for b in &topo.backends {
            let path = b.truth_log.clone();
            let tx = tx.clone();
            thread::spawn(move || tail_file(&path, &tx));
        }
    }

    // Banner.
    println!();
    println!("{}", style.bold(&format!("=== {} ===", sc.title)));
    println!("{}", sc.explain);
    println!(
        "  clients in netns {} ({}..), balancer in netns {} (VIP {}), backends web1..web{} ({})",
        topo.client_ns,
        client_addr(0),
        topo.lb_ns,
        topo.vip,
        topo.backends.len(),
        topo.backend_cidr
    );
    println!(
        "  lines: {}  |  tracker handshake record  |  {}",
        style.red("ALERT = tracker violation"),
        style.dim("truth = what the backend itself logged")
    );
    match opts.duration {
        _ if opts.top => println!("  q in the live view ends the demo and tears everything down\n"),
        Some(d) => println!("  running for {} s (Ctrl-C stops earlier)\n", d.as_secs()),
        None => println!("  Ctrl-C stops and tears everything down\n"),
    }

    // Drivers.
    for (i, d) in sc.drivers.iter().enumerate() {
        let sources: Vec<String> = d
            .sources
            .iter()
            .map(|&s| client_addr(s).to_string())
            .collect();
        let mut cmd = lab.clients_py("drive", d.port);
        cmd.args([
            "--mix",
            d.mix,
            "--sources",
            &sources.join(","),
            "--duration",
            "0",
        ])
        .args([
            "--interval",
            &format!("{:.3}", d.interval * opts.pace.max(0.01)),
        ])
        .args(&d.extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("start client driver {}", d.label))?;
        if let Some(out) = child.stdout.take() {
            let tx = tx.clone();
            thread::spawn(move || {
                for l in BufReader::new(out).lines() {
                    let Ok(l) = l else { break };
                    if tx.send(Msg::Client(i, l)).is_err() {
                        break;
                    }
                }
            });
        }
        children.push(child);
    }

    let start = Instant::now();
    let mut counts = vec![Counts::default(); sc.drivers.len()];
    if opts.top
        && let Some(bin) = &opts.tracker_bin
    {
        live_view(bin, lab, &rx, &mut counts)?;
        println!("{}", summary(sc, &counts, style));
        return Ok(());
    }
    let mut last_summary = Instant::now();
    let mut stdout = std::io::stdout();
    loop {
        if INTERRUPTED.load(Ordering::SeqCst) {
            println!("\ninterrupted");
            break;
        }
        if opts.duration.is_some_and(|d| start.elapsed() >= d) {
            break;
        }
        let stamp = format!("{:>7.1}s", start.elapsed().as_secs_f64());
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(Msg::Tracker(l)) => match serde_json::from_str::<Value>(&l) {
                Ok(v) => {
                    if let Some((alert, text)) = pretty_event(&v, opts.verbose) {
                        let text = if alert { style.red(&text) } else { text };
                        let _ = writeln!(stdout, "{stamp} tracker {text}");
                    }
                }
                Err(_) => {
                    let _ = writeln!(stdout, "{stamp} tracker {l}");
                }
            },
            Ok(Msg::TrackerExit) => {
                let log = lab.state_dir().join("tracker.log");
                let _ = writeln!(
                    stdout,
                    "{}",
                    style.red(&format!(
                        "{stamp} the tracker stopped:\n{}",
                        sys::tail(&log, 2000)
                    ))
                );
            }
            Ok(Msg::Truth(l)) => {
                if let Ok(v) = serde_json::from_str::<Value>(&l) {
                    if let Some(text) = pretty_truth(&v) {
                        let _ =
                            writeln!(stdout, "{stamp} {}", style.dim(&format!("truth   {text}")));
                    }
                }
            }
            Ok(Msg::Client(i, l)) => {
                if let Some(err) = count_client(&mut counts, i, &l) {
                    let _ = writeln!(
                        stdout,
                        "{stamp} {}",
                        style.yellow(&format!(
                            "client  {}: {err}",
                            sc.drivers.get(i).map_or("?", |d| d.label),
                        ))
                    );
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if last_summary.elapsed() >= Duration::from_secs(10) {
            last_summary = Instant::now();
            let _ = writeln!(stdout, "{stamp} {}", summary(sc, &counts, style));
        }
    }
    println!("{}", summary(sc, &counts, style));
    Ok(())
}

/// Counts one line of client driver `i`; the error it reports, if it is one.
fn count_client(counts: &mut [Counts], i: usize, line: &str) -> Option<String> {
    let (Ok(v), Some(c)) = (serde_json::from_str::<Value>(line), counts.get_mut(i)) else {
        return None;
    };
    let status = field(&v, "status").and_then(Value::as_u64).unwrap_or(0);
    match fstr(&v, "leg").as_deref() {
        Some("type3") if status == 200 => c.ok += 1,
        Some("type3") => c.failed += 1,
        Some("request") if status == 200 => c.served_anon += 1,
        Some("request") => c.refused_anon += 1,
        // The fake token of the `kerberos` kind is refused; a real one (the lab's KDC) is a
        // logon.
        Some("kerberos") if status == 200 => c.kerberos_logons += 1,
        Some("kerberos") => c.kerberos += 1,
        Some("error") => {
            c.errors += 1;
            return Some(fstr(&v, "error").unwrap_or_default());
        }
        _ => {}
    }
    None
}

/// The tracker's control socket in the demo.
fn control_path(lab: &Lab) -> PathBuf {
    lab.state_dir().join("control.sock")
}

/// `--top`: `ntlm-affinity top` on this terminal, attached to the demo's tracker, until it
/// is quit; the drivers' lines are counted meanwhile.
fn live_view(bin: &Path, lab: &Lab, rx: &Receiver<Msg>, counts: &mut [Counts]) -> Result<()> {
    let mut top = std::process::Command::new(bin)
        .arg("top")
        .arg("--control")
        .arg(control_path(lab))
        .spawn()
        .context("start `ntlm-affinity top`")?;
    loop {
        if let Some(st) = top.try_wait()? {
            if !st.success() {
                bail!("`ntlm-affinity top` ended with {st}");
            }
            return Ok(());
        }
        while let Ok(m) = rx.try_recv() {
            if let Msg::Client(i, l) = m {
                let _ = count_client(counts, i, &l);
            }
        }
        thread::sleep(Duration::from_millis(200));
    }
}

fn summary(sc: &Scenario, counts: &[Counts], style: &Style) -> String {
    let mut parts = Vec::new();
    for (d, c) in sc.drivers.iter().zip(counts) {
        let mut s = format!("{}: ", d.label);
        if c.ok + c.failed > 0 {
            let hs = format!("{} handshakes ok / {} failed", c.ok, c.failed);
            s.push_str(&if c.failed == 0 {
                style.green(&hs)
            } else {
                style.red(&hs)
            });
        }
        if c.served_anon + c.refused_anon > 0 {
            let a = format!(
                " anonymous {} served / {} refused",
                c.served_anon, c.refused_anon
            );
            s.push_str(&if c.served_anon > 0 {
                style.red(&a)
            } else {
                style.green(&a)
            });
        }
        if c.kerberos_logons > 0 {
            s.push_str(&format!(" {} Kerberos logons", c.kerberos_logons));
        }
        if c.kerberos > 0 {
            s.push_str(&format!(
                " {} Kerberos tokens refused (never an alert)",
                c.kerberos
            ));
        }
        if c.errors > 0 {
            s.push_str(&format!(" {} errors", c.errors));
        }
        parts.push(s);
    }
    format!("summary  {}", parts.join(" | "))
}

fn tail_file(path: &Path, tx: &Sender<Msg>) {
    let mut pos = 0u64;
    let mut buf = String::new();
    loop {
        if let Ok(mut f) = std::fs::File::open(path) {
            if let Ok(meta) = f.metadata() {
                if meta.len() < pos {
                    pos = 0;
                }
            }
            if f.seek(SeekFrom::Start(pos)).is_ok() {
                let mut chunk = String::new();
                if let Ok(n) = f.read_to_string(&mut chunk) {
                    pos += n as u64;
                    buf.push_str(&chunk);
                }
            }
        }
        while let Some(i) = buf.find('\n') {
            let line: String = buf.drain(..=i).collect();
            if tx.send(Msg::Truth(line.trim_end().to_string())).is_err() {
                return;
            }
        }
        thread::sleep(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_scenario_builds_a_valid_lab() {
        for name in SCENARIOS {
            let sc = scenario(name).unwrap();
            LabConfig::default()
                .with_frontends(sc.frontends.clone())
                .validate()
                .unwrap();
            for d in &sc.drivers {
                assert!(
                    sc.frontends.iter().any(|f| f.port == d.port),
                    "{name}: driver {} port",
                    d.label
                );
            }
        }
        assert!(scenario("nope").is_err());
    }

    #[test]
    fn pretty_event_nested_and_flat() {
        let v: Value = serde_json::json!({"event": {"kind": "alert", "action": "server_split"},
            "ntlm_affinity": {"cause": "balancer_reroute"}, "src": "198.19.0.1:4000", "dst": "198.19.0.12:80",
            "scheme": "NTLM", "ntlm_message_type": 3});
        let (alert, s) = pretty_event(&v, false).unwrap();
        assert!(alert);
        assert!(
            s.contains("ALERT server_split")
                && s.contains("cause=balancer_reroute")
                && s.contains("NTLM Type-3")
        );
        let v: Value = serde_json::json!({"direction": "request", "src": "a", "dst": "b", "scheme": "Negotiate"});
        let (alert, s) = pretty_event(&v, false).unwrap();
        assert!(!alert);
        assert!(s.contains("a -> b"));
    }

    #[test]
    fn pretty_event_tracker_format() {
        let v: Value = serde_json::json!({"destination": {"ip": "198.18.0.1", "port": 81},
            "event": {"action": "ntlm_message", "kind": "event"},
            "ntlm": {"header": "Authorization", "message_type": "negotiate", "scheme": "NTLM"},
            "observer": {"interface": "nta-fe"}, "source": {"ip": "198.18.0.11", "port": 50760}});
        let (alert, s) = pretty_event(&v, false).unwrap();
        assert!(!alert);
        assert!(
            s.contains("[frontend]")
                && s.contains("198.18.0.11:50760 -> 198.18.0.1:81")
                && s.contains("NTLM Type-1"),
            "{s}"
        );
        let m: Value = serde_json::json!({"event": {"action": "tracker_stats", "kind": "metric"}});
        assert!(pretty_event(&m, false).is_none());
        assert!(pretty_event(&m, true).is_some());
    }

    #[test]
    fn pretty_truth_notable_only() {
        let v: Value = serde_json::json!({"server": "web2", "outcome": "failure", "split": "server",
            "challenge_server": "WEB1", "user": "LAB\\alice", "xff": "198.18.0.13", "reason": "challenge_from_other_server"});
        assert!(
            pretty_truth(&v)
                .unwrap()
                .contains("answers WEB1's challenge")
        );
        let v: Value = serde_json::json!({"server": "web2", "outcome": "success"});
        assert!(pretty_truth(&v).is_none());
    }
}
