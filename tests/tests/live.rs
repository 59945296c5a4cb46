//! Live tests: the real daemon attached to a veth in a network namespace of our own, real
//! curl traffic to a listener in a second namespace, NDJSON read from the daemon's stdout,
//! and nothing left attached after it stops. Addresses from 198.18.0.0/15 only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use aya::programs::{SchedClassifier, TcAttachType};
use serde_json::Value;
use support::tracker::{Tracker, tracker_bin};

/// Two namespaces joined by a veth pair; removed on drop (even when the test panics).
struct Pair {
    client_ns: String,
    server_ns: String,
    client_if: String,
    servers: Vec<Child>,
}

const CLIENT_IP: &str = "198.18.200.1";
const SERVER_IP: &str = "198.18.200.2";

fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Pair {
    fn new(tag: &str) -> Self {
        let id = std::process::id() % 100_000;
        let client_ns = format!("ntt-{tag}c{id}");
        let server_ns = format!("ntt-{tag}s{id}");
        let client_if = format!("nta{tag}{id}");
        let server_if = format!("nta{tag}{id}p");
        for ns in [&client_ns, &server_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
            sh(&["ip", "netns", "add", ns]);
        }
        let p = Self {
            client_ns,
            server_ns,
            client_if,
            servers: Vec::new(),
        };
        sh(&[
            "ip",
            "-n",
            &p.client_ns,
            "link",
            "add",
            &p.client_if,
            "type",
            "veth",
            "peer",
            "name",
            &server_if,
            "netns",
            &p.server_ns,
        ]);
        sh(&[
            "ip",
            "-n",
            &p.client_ns,
            "addr",
            "add",
            &format!("{CLIENT_IP}/30"),
            "dev",
            &p.client_if,
        ]);
        sh(&[
            "ip",
            "-n",
            &p.server_ns,
            "addr",
            "add",
            &format!("{SERVER_IP}/30"),
            "dev",
            &server_if,
        ]);
        for (ns, dev) in [(&p.client_ns, &p.client_if), (&p.server_ns, &server_if)] {
            sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        p
    }

    fn exec(&self, ns: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns]);
        c
    }

    /// A plain HTTP listener on the server side (answers 200 or 501: all we need is traffic).
    fn listen(&mut self) {
        self.serve(
            &["python3", "-m", "http.server", "80", "--bind", SERVER_IP],
            |code| code != b"000",
        );
    }

    /// Starts `server` in the server namespace and waits until a request's status code
    /// (as `curl -w %{http_code}` prints it) is what `ready` wants.
    fn serve(&mut self, server: &[&str], ready: impl Fn(&[u8]) -> bool) {
        let child = self
            .exec(&self.server_ns.clone())
            .args(server)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.servers.push(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let out = self
                .exec(&self.client_ns)
                .args(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}"])
                .arg(format!("http://{SERVER_IP}/"))
                .output()
                .unwrap();
            if ready(&out.stdout) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{server:?} in {} did not come up", self.server_ns);
    }

    fn curl(&self, args: &[&str]) {
        let status = self
            .exec(&self.client_ns)
            .args(["curl", "-s", "-o", "/dev/null", "--max-time", "5"])
            .args(args)
            .arg(format!("http://{SERVER_IP}/ews/exchange.asmx"))
            .status()
            .unwrap();
        assert!(status.success(), "curl {args:?}");
    }

    /// Programs attached to the client interface: XDP (from `ip -d link`) and tcx egress
    /// (queried from inside the namespace).
    fn attached(&self) -> (bool, usize) {
        let out = self
            .exec(&self.client_ns)
            .args(["ip", "-d", "link", "show", "dev", &self.client_if])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let xdp =
            text.contains("prog/xdp") || text.contains("xdpgeneric") || text.contains(" xdp ");
        let ns = self.client_ns.clone();
        let iface = self.client_if.clone();
        let tcx = std::thread::spawn(move || {
            let f = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
            use std::os::fd::AsRawFd;
            // Only this thread enters the namespace.
            assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
            SchedClassifier::query_tcx(&iface, TcAttachType::Egress)
                .unwrap()
                .1
                .len()
        })
        .join()
        .unwrap();
        (xdp, tcx)
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for c in &mut self.servers {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in [&self.client_ns, &self.server_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// The control socket: mode 0660, owned by root and `--control-group`; a member of the group
/// reads the hello, anyone else is refused by the kernel; `top` says what is wrong when
/// there is no daemon or no terminal; the file is gone when the daemon stops.
#[test]
fn the_control_socket_admits_root_and_its_group_only() {
    if !support::privileged("the_control_socket_admits_root_and_its_group_only") {
        return;
    }
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let pair = Pair::new("o");
    let dir = std::env::temp_dir().join(format!("nta-control-{}", std::process::id()));
    let path = dir.join("control.sock");
    let p = path.to_str().unwrap();
    // nogroup is gid 65534 on Debian.
    let mut d = daemon(
        &pair,
        &[
            "--backend",
            "198.18.200.0/30:80",
            "--control",
            p,
            "--control-group",
            "nogroup",
        ],
    );
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!((meta.uid(), meta.gid()), (0, 65534));
    let hello_as = |gid: &str| {
        Command::new("setpriv")
            .args(["--reuid=65534", &format!("--regid={gid}"), "--clear-groups"])
            .args([
                // The system's Python: root's PATH may lead to a per-user one nobody can run.
                "/usr/bin/python3",
                "-c",
                "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\nprint(s.makefile().readline(), end='')",
                p,
            ])
            .output()
            .unwrap()
    };
    let member = hello_as("65534");
    assert!(member.status.success(), "{member:?}");
    let hello: Value = serde_json::from_slice(&member.stdout).unwrap();
    assert_eq!(hello["event"]["action"], "control_hello");
    assert_eq!(hello["ntlm_affinity"]["pid"], d.pid());
    let outsider = hello_as("1");
    assert!(!outsider.status.success());
    assert!(
        String::from_utf8_lossy(&outsider.stderr).contains("PermissionError"),
        "{outsider:?}"
    );
    // `top` without a terminal, and without a daemon: each says so, exit 1.
    let top = |at: &str| {
        let out = Command::new(tracker_bin())
            .args(["top", "--control", at])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, err) = top(p);
    assert_eq!(code, Some(1));
    assert!(err.contains("needs a terminal"), "{err}");
    let (code, err) = top("/nonexistent/control.sock");
    assert_eq!(code, Some(1));
    assert!(
        err.contains("no ntlm-affinity daemon at /nonexistent/control.sock"),
        "{err}"
    );
    assert!(d.interrupt().success());
    assert!(!path.exists(), "the socket file outlived the daemon");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `top` in a real terminal (tmux) on a daemon that stops and starts again: the screen says
/// it is disconnected while the daemon is away and follows the new one when it is back.
#[test]
fn top_says_when_the_daemon_goes_away_and_follows_it_back() {
    if !support::privileged("top_says_when_the_daemon_goes_away_and_follows_it_back") {
        return;
    }
    let pair = Pair::new("v");
    let dir = std::env::temp_dir().join(format!("nta-top-{}", std::process::id()));
    let path = dir.join("control.sock");
    let p = path.to_str().unwrap();
    let args = ["--backend", "198.18.200.0/30:80", "--control", p];
    let mut d = daemon(&pair, &args);
    let top = support::tmux::Tmux::start(
        &format!("{} top --control {p}", tracker_bin().display()),
        100,
        30,
    );
    let pid = |d: &Tracker| format!("pid {}", d.pid());
    let first = pid(&d);
    top.wait("the daemon's pid", |s| s.contains(&first));
    assert!(d.interrupt().success());
    top.wait("that the daemon is gone", |s| s.contains("DISCONNECTED"));
    let d2 = daemon(&pair, &args);
    let second = pid(&d2);
    top.wait("the new daemon", |s| {
        s.contains(&second) && !s.contains("DISCONNECTED")
    });
    top.keys(&["q"]);
    top.wait("top's exit", |s| s.contains("EXITED 0"));
    drop(d2);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The daemon in the client namespace, attached to the veth, raw message records included.
fn daemon(pair: &Pair, extra: &[&str]) -> Tracker {
    let mut cmd = pair.exec(&pair.client_ns);
    cmd.arg(tracker_bin())
        .args(["run", "--iface", &pair.client_if, "--stats-interval", "0"])
        // Raw message records need --messages (by default only verdicts are printed).
        .arg("--messages")
        .args(extra);
    Tracker::start(cmd)
}

fn messages(events: &[Value]) -> Vec<&Value> {
    events
        .iter()
        .filter(|e| {
            e["event"]["action"] == "ntlm_message" || e["event"]["action"] == "undecodable_token"
        })
        .collect()
}

#[test]
fn live_curl_ntlm_is_reported_and_nothing_stays_attached() {
    if !support::privileged("live_curl_ntlm_is_reported_and_nothing_stays_attached") {
        return;
    }
    let mut pair = Pair::new("a");
    pair.listen();
    let mut d = daemon(&pair, &["--backend", "198.18.200.0/30:80"]);
    assert_eq!(
        pair.attached(),
        (true, 1),
        "XDP and one tcx egress program while running"
    );
    // Once attached the daemon holds CAP_BPF only (tcx and XDP links close with their fds),
    // and its memory — raw Type-3 tokens in reassembly buffers — cannot become a core file.
    let pid = d.pid().to_string();
    let eff = tracker_user::privilege::effective(&pid).unwrap();
    assert_eq!(
        eff,
        1 << tracker_user::privilege::CAP_BPF,
        "CapEff {eff:#x} of the running daemon"
    );
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(status.contains("CapPrm:\t0000008000000000"), "{status}");
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    assert_eq!(core.split_whitespace().nth(4), Some("0"), "{core}");
    pair.curl(&["--ntlm", "-u", "LAB\\alice:Passw0rd!"]);
    let type3 = "TlRMTVNTUAADAAAAGAAYAEAAAAAYABgAWAAAAAAAAAAAAAAAAAAAAA==";
    pair.curl(&["-H", &format!("Authorization: Negotiate {type3}")]);
    let events = d.collect(Duration::from_secs(10), |e| messages(e).len() >= 2);
    let msgs = messages(&events);
    assert_eq!(msgs.len(), 2, "{events:#?}");
    let m = msgs[0];
    assert_eq!(m["ntlm"]["message_type"], "negotiate");
    assert_eq!(m["ntlm"]["header"], "Authorization");
    assert_eq!(m["ntlm"]["scheme"], "NTLM");
    assert_eq!(m["ntlm"]["mechanism"], "ntlm");
    assert_eq!(m["http"]["request"]["method"], "GET");
    assert_eq!(m["url"]["path"], "/ews/exchange.asmx");
    assert_eq!(m["source"]["ip"], CLIENT_IP);
    assert_eq!(m["destination"]["ip"], SERVER_IP);
    assert_eq!(m["destination"]["port"], 80);
    assert_eq!(m["observer"]["ingress_or_egress"], "egress");
    assert_eq!(m["observer"]["interface"], pair.client_if.as_str());
    // A truncated Type-3 (crafted): reported as undecodable, still typed by its prefix.
    let m = msgs[1];
    assert_eq!(m["event"]["action"], "undecodable_token");
    assert_eq!(
        (
            m["ntlm"]["scheme"].as_str(),
            m["ntlm"]["message_type"].as_str()
        ),
        (Some("Negotiate"), Some("authenticate"))
    );
    // No token bytes in any event.
    for e in &events {
        let s = e.to_string();
        assert!(
            !s.contains("TlRMTVNT"),
            "a raw token leaked into an event: {s}"
        );
    }
    let status = d.interrupt();
    assert!(status.success(), "exit status {status}");
    let rest = d.collect(Duration::from_secs(2), |_| false);
    assert!(
        rest.iter().any(|e| e["event"]["action"] == "tracker_stats"),
        "final stats record: {rest:?}"
    );
    assert_eq!(
        pair.attached(),
        (false, 0),
        "nothing stays attached after SIGINT"
    );
}

#[test]
fn bad_input_gives_one_clear_error_and_leaves_nothing() {
    if !support::privileged("bad_input_gives_one_clear_error_and_leaves_nothing") {
        return;
    }
    let pair = Pair::new("b");
    let run = |args: &[&str]| {
        let out = pair
            .exec(&pair.client_ns)
            .arg(tracker_bin())
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, err) = run(&[
        "run",
        "--iface",
        "nosuchif0",
        "--backend",
        "198.18.200.0/30:80",
    ]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no interface named `nosuchif0`"), "{err}");
    let (code, err) = run(&[
        "run",
        "--iface",
        &pair.client_if,
        "--backend",
        "198.18.200.0/33:80",
    ]);
    assert_eq!(code, Some(2));
    assert!(err.contains("longer than /32"), "{err}");
    let (code, err) = run(&[
        "run",
        "--iface",
        &pair.client_if,
        "--backend",
        "198.18.200.0/30:http",
    ]);
    assert_eq!(code, Some(2));
    assert!(err.contains("port is not a number"), "{err}");
    let (code, err) = run(&["run", "--iface", &pair.client_if]);
    assert_eq!(code, Some(1));
    assert!(err.contains("nothing to track"), "{err}");
    // A metrics address another process holds: said, before anything is loaded.
    let mut holder = pair
        .exec(&pair.client_ns)
        .args([
            "python3",
            "-c",
            &format!(
                "import socket,time\ns=socket.socket()\ns.bind(('{CLIENT_IP}', 9464))\ns.listen()\nprint('bound', flush=True)\ntime.sleep(60)"
            ),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut bound = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.take().unwrap()),
        &mut bound,
    )
    .unwrap();
    assert_eq!(bound.trim(), "bound");
    let metrics_at = format!("{CLIENT_IP}:9464");
    let backend = ["--backend", "198.18.200.0/30:80"];
    let (code, err) = run(&[
        &["run", "--iface", &pair.client_if, "--metrics", &metrics_at][..],
        &backend,
    ]
    .concat());
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("the address is in use"), "{err}");
    let (code, err) = run(&[
        &[
            "run",
            "--iface",
            &pair.client_if,
            "--metrics",
            "localhost:x",
        ][..],
        &backend,
    ]
    .concat());
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("is not ADDR:PORT or a port"), "{err}");

    // Without privileges: the error names the missing capabilities.
    let out = pair
        .exec(&pair.client_ns)
        .args([
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ])
        .arg(tracker_bin())
        .args([
            "run",
            "--iface",
            &pair.client_if,
            "--backend",
            "198.18.200.0/30:80",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("CAP_BPF") && err.contains("setcap"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");

    // A second tracker on the same interface: refused (it would count every packet twice),
    // the first one's programs untouched, nothing of the second left.
    let mut first = daemon(&pair, &["--backend", "198.18.200.0/30:80"]);
    let (code, err) = run(&[
        "run",
        "--iface",
        &pair.client_if,
        "--backend",
        "198.18.200.0/30:80",
    ]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("already tracked by another ntlm-affinity"),
        "{err}"
    );
    assert_eq!(
        pair.attached(),
        (true, 1),
        "the first daemon's programs only"
    );
    assert!(first.interrupt().success());
    assert_eq!(pair.attached(), (false, 0));

    // `check` names what is wrong with an interface, with a fix.
    let out = pair
        .exec(&pair.client_ns)
        .arg(tracker_bin())
        .args(["check", "--iface", "nosuchif0"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("FAIL interface nosuchif0") && text.contains("fix:"),
        "{text}"
    );
    let out = pair
        .exec(&pair.client_ns)
        .arg(tracker_bin())
        .args(["check", "--iface", &pair.client_if])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("ok   capabilities") && text.contains("ok   kernel"),
        "{text}"
    );

    // A reader that went away (`check | head -1`): no panic, the exit status still the
    // verdict.
    let mut child = pair
        .exec(&pair.client_ns)
        .arg(tracker_bin())
        .args(["check", "--iface", "nosuchif0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

impl Pair {
    /// A listener that answers every request with a 401 carrying an NTLM challenge, so the
    /// ingress leg carries NTLM too.
    fn listen_ntlm(&mut self) {
        let script = format!(
            r#"
import http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(401)
        self.send_header("WWW-Authenticate", "NTLM {TYPE2}")
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
http.server.HTTPServer(("{SERVER_IP}", 80), H).serve_forever()
"#
        );
        self.serve(&["python3", "-c", &script], |code| code == b"401");
    }

    /// Programs on the client interface's tcx ingress.
    fn tcx_ingress(&self) -> usize {
        let ns = self.client_ns.clone();
        let iface = self.client_if.clone();
        std::thread::spawn(move || {
            let f = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
            use std::os::fd::AsRawFd;
            assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
            SchedClassifier::query_tcx(&iface, TcAttachType::Ingress)
                .unwrap()
                .1
                .len()
        })
        .join()
        .unwrap()
    }
}

const TYPE1: &str = "TlRMTVNTUAABAAAAB4IIogAAAAAAAAAAAAAAAAAAAAAGAbEdAAAADw==";
const TYPE2: &str = "TlRMTVNTUAACAAAADAAMADgAAAAFgomiESIzRFVmd4gAAAAAAAAAAA==";

/// Someone else's XDP program (the object's do-nothing `pass_xdp`, loaded and attached from
/// inside the namespace) holds the client interface's XDP slot while `body` runs.
fn with_foreign_xdp(pair: &Pair, body: impl FnOnce()) {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let ns = pair.client_ns.clone();
    let iface = pair.client_if.clone();
    let holder = std::thread::spawn(move || {
        let f = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
        use std::os::fd::AsRawFd;
        assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
        let mut ebpf = aya::EbpfLoader::new()
            .map_max_entries(tracker_common::names::FLOWS, 1024)
            .load(tracker_user::loader::ebpf_object())
            .unwrap();
        let prog: &mut aya::programs::Xdp = ebpf
            .program_mut(tracker_common::names::XDP_BASELINE)
            .unwrap()
            .try_into()
            .unwrap();
        prog.load().unwrap();
        prog.attach(&iface, aya::programs::XdpMode::Default)
            .unwrap();
        ready_tx.send(()).unwrap();
        done_rx.recv().unwrap();
    });
    ready_rx.recv().unwrap();
    body();
    done_tx.send(()).unwrap();
    holder.join().unwrap();
}

/// An interface whose XDP slot is taken: `--ingress xdp` refuses it, the default tracks its
/// ingress from tcx and says so, both directions are reported, and the other program is
/// still attached after the tracker stops.
#[test]
fn ingress_falls_back_to_tcx_when_another_program_holds_xdp() {
    if !support::privileged("ingress_falls_back_to_tcx_when_another_program_holds_xdp") {
        return;
    }
    let mut pair = Pair::new("x");
    pair.listen_ntlm();
    with_foreign_xdp(&pair, || {
        let out = pair
            .exec(&pair.client_ns)
            .arg(tracker_bin())
            .args(["run", "--iface", &pair.client_if, "--ingress", "xdp"])
            .args(["--backend", "198.18.200.0/30:80"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("already has an XDP program"), "{err}");
        assert_eq!(pair.tcx_ingress(), 0, "nothing left by the refused run");

        let out = pair
            .exec(&pair.client_ns)
            .arg(tracker_bin())
            .args(["check", "--iface", &pair.client_if])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("ingress attaches from tcx"), "{text}");

        let mut d = daemon(&pair, &["--backend", "198.18.200.0/30:80"]);
        assert_eq!(pair.tcx_ingress(), 1, "tcx ingress while running");
        assert_eq!(pair.attached(), (true, 1), "theirs in XDP, ours on egress");
        pair.curl(&["-H", &format!("Authorization: NTLM {TYPE1}")]);
        let events = d.collect(Duration::from_secs(10), |e| messages(e).len() >= 2);
        let msgs = messages(&events);
        let dirs: Vec<_> = msgs
            .iter()
            .map(|m| {
                (
                    m["observer"]["ingress_or_egress"].as_str().unwrap_or(""),
                    m["ntlm"]["message_type"].as_str().unwrap_or(""),
                )
            })
            .collect();
        assert_eq!(
            dirs,
            [("egress", "negotiate"), ("ingress", "challenge")],
            "{events:#?}"
        );
        assert!(d.interrupt().success());
        assert_eq!(pair.tcx_ingress(), 0, "ours gone after SIGINT");
        assert_eq!(pair.attached(), (true, 0), "theirs still in XDP");
    });
    assert_eq!(pair.attached(), (false, 0));
}

/// An interface deleted under the running daemon: reported (an `interface_lost` event and a
/// line on stderr), the others tracked on; with none left the daemon stops with an error.
#[test]
fn an_interface_that_disappears_is_reported_and_the_last_one_stops_the_daemon() {
    if !support::privileged(
        "an_interface_that_disappears_is_reported_and_the_last_one_stops_the_daemon",
    ) {
        return;
    }
    let mut pair = Pair::new("g");
    pair.listen();
    // A second interface in the same namespace, to lose first.
    let extra = format!("{}e", pair.client_if);
    sh(&[
        "ip",
        "-n",
        &pair.client_ns,
        "link",
        "add",
        &extra,
        "type",
        "veth",
        "peer",
        "name",
        &format!("{extra}p"),
    ]);
    sh(&["ip", "-n", &pair.client_ns, "link", "set", &extra, "up"]);
    let mut d = daemon(
        &pair,
        &["--iface", &extra, "--backend", "198.18.200.0/30:80"],
    );
    sh(&["ip", "-n", &pair.client_ns, "link", "del", &extra]);
    let lost = |e: &Value, name: &str| {
        e["event"]["action"] == "interface_lost" && e["observer"]["interface"] == name
    };
    let events = d.collect(Duration::from_secs(10), |e| {
        e.iter().any(|e| lost(e, &extra))
    });
    assert!(events.iter().any(|e| lost(e, &extra)), "{events:#?}");
    // Still tracking the other one.
    pair.curl(&["-H", &format!("Authorization: NTLM {TYPE1}")]);
    let events = d.collect(Duration::from_secs(10), |e| !messages(e).is_empty());
    assert_eq!(messages(&events).len(), 1, "{events:#?}");
    assert!(
        d.wait_exit(Duration::from_millis(1500)).is_none(),
        "one interface is left"
    );
    sh(&["ip", "-n", &pair.client_ns, "link", "del", &pair.client_if]);
    let status = d
        .wait_exit(Duration::from_secs(10))
        .expect("the daemon stops with none left");
    assert_eq!(status.code(), Some(1), "{status}");
    let rest = d.collect(Duration::from_secs(2), |_| false);
    let err = d.stderr_lines().join("\n");
    assert!(
        err.contains(&format!("interface {extra} disappeared")),
        "{err}"
    );
    assert!(err.contains("every interface is gone"), "{err}");
    assert!(rest.iter().any(|e| lost(e, &pair.client_if)), "{rest:#?}");
    assert!(
        rest.iter().any(|e| e["event"]["action"] == "tracker_stats"),
        "final stats: {rest:#?}"
    );
}

/// `kill -9` leaves no program acting: XDP and tcx are links that die with the process's
/// file descriptors (Linux 6.6+), so a crashed daemon leaves the interface as it found it.
#[test]
fn a_killed_daemon_leaves_nothing_attached() {
    if !support::privileged("a_killed_daemon_leaves_nothing_attached") {
        return;
    }
    let mut pair = Pair::new("k");
    pair.listen();
    let mut d = daemon(&pair, &["--backend", "198.18.200.0/30:80"]);
    assert_eq!(pair.attached(), (true, 1));
    d.kill();
    let deadline = Instant::now() + Duration::from_secs(5);
    while pair.attached() != (false, 0) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        pair.attached(),
        (false, 0),
        "nothing attached after kill -9"
    );
    assert_eq!(pair.tcx_ingress(), 0);
    // And the interface can be tracked again at once.
    let d = daemon(&pair, &["--backend", "198.18.200.0/30:80"]);
    assert_eq!(pair.attached(), (true, 1));
    d.stop();
}

/// A stdout that nobody reads: the writer's queue fills and later events are dropped and
/// counted, while the ring-buffer reader keeps draining the kernel — no record lost there —
/// and the counts add up exactly: messages written + dropped = messages decoded.
#[test]
fn a_stalled_stdout_drops_counted_events_and_no_kernel_record() {
    if !support::privileged("a_stalled_stdout_drops_counted_events_and_no_kernel_record") {
        return;
    }
    let mut pair = Pair::new("o");
    pair.listen();
    let mut child = pair
        .exec(&pair.client_ns)
        .arg(tracker_bin())
        .args([
            "run",
            "--iface",
            &pair.client_if,
            "--backend",
            "198.18.200.0/30:80",
        ])
        .args([
            "--messages",
            "--stats-interval",
            "0",
            "--output-queue",
            "50",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Not read until the load is over: the pipe fills and the writer stalls.
    let stdout = child.stdout.take().unwrap();
    let (err_tx, err_rx) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            eprintln!("tracker: {l}");
            let _ = err_tx.send(l);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while !err_rx
        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        .unwrap()
        .contains("attached to")
    {}
    let n = 400;
    let status = pair
        .exec(&pair.client_ns)
        .args(["sh", "-c"])
        .arg(format!(
            "for i in $(seq {n}); do curl -s -o /dev/null --max-time 5 -H 'Authorization: NTLM {TYPE1}' http://{SERVER_IP}/ews/$i || exit 1; done"
        ))
        .status()
        .unwrap();
    assert!(status.success());
    // Let the reader catch up with the kernel, then read everything and stop.
    std::thread::sleep(Duration::from_secs(1));
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .map(|l| serde_json::from_str::<Value>(&l).unwrap())
            .collect::<Vec<_>>()
    });
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    let events = reader.join().unwrap();
    let written = messages(&events).len() as u64;
    let stats = events
        .iter()
        .rfind(|e| e["event"]["action"] == "tracker_stats")
        .expect("a final tracker_stats");
    let na = &stats["ntlm_affinity"];
    let dropped = na["output"]["dropped"].as_u64().unwrap();
    let decoded = na["daemon"]["messages"].as_u64().unwrap();
    assert_eq!(decoded, n, "every request's Type-1 decoded: {na:#}");
    assert!(dropped > 0, "the stalled stdout dropped events: {na:#}");
    assert_eq!(
        written + dropped,
        decoded,
        "written + dropped = decoded: {na:#}"
    );
    assert_eq!(
        na["kernel"]["ringbuf_full"], 0,
        "no record lost in the kernel: {na:#}"
    );
    assert_eq!(
        na["kernel"]["events"], na["daemon"]["records"],
        "every kernel record read: {na:#}"
    );
    let err: Vec<String> = err_rx.try_iter().collect();
    assert!(
        err.iter()
            .any(|l| l.contains(&format!("{dropped} events were dropped"))),
        "{err:?}"
    );
}

impl Pair {
    /// Our clsact (netlink) filters on the client interface's egress, by program name.
    fn clsact_egress_filters(&self) -> usize {
        let out = self
            .exec(&self.client_ns)
            .args(["tc", "filter", "show", "dev", &self.client_if, "egress"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains("ntlm_egress"))
            .count()
    }
}

/// The path of kernels before 6.6, forced here with `--tc-attach netlink`: a clsact filter is
/// not tied to the process, so `kill -9` leaves it; the next start removes it and attaches
/// once, and a clean stop leaves nothing.
#[test]
fn clsact_filters_of_a_killed_tracker_are_removed_at_the_next_start() {
    if !support::privileged("clsact_filters_of_a_killed_tracker_are_removed_at_the_next_start") {
        return;
    }
    let mut pair = Pair::new("n");
    pair.listen();
    let args = ["--backend", "198.18.200.0/30:80", "--tc-attach", "netlink"];
    let mut d = daemon(&pair, &args);
    assert_eq!(pair.clsact_egress_filters(), 1);
    assert_eq!(pair.attached(), (true, 0), "XDP, and no tcx link");
    d.kill();
    assert_eq!(
        pair.clsact_egress_filters(),
        1,
        "the killed tracker's filter stays"
    );
    let mut d = daemon(&pair, &args);
    assert_eq!(pair.clsact_egress_filters(), 1, "removed and attached once");
    pair.curl(&["-H", &format!("Authorization: NTLM {TYPE1}")]);
    let events = d.collect(Duration::from_secs(10), |e| !messages(e).is_empty());
    assert_eq!(messages(&events).len(), 1, "{events:#?}");
    assert!(d.interrupt().success());
    assert_eq!(
        pair.clsact_egress_filters(),
        0,
        "a clean stop leaves no filter"
    );
    assert_eq!(pair.attached(), (false, 0));
}

/// Runs `traffic` with a classic clsact filter on the client interface's egress — the
/// object's do-nothing `pass_tc` through cls_bpf, loaded and attached from inside the
/// namespace — and returns how often that filter ran (BPF_ENABLE_STATS run count): the
/// packets the chain handed on to it.
fn classic_egress_filter_runs(pair: &Pair, traffic: impl FnOnce()) -> u64 {
    use aya::programs::tc::{self, NlOptions, TcAttachOptions};
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let ns = pair.client_ns.clone();
    let iface = pair.client_if.clone();
    let filter = std::thread::spawn(move || {
        let f = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
        use std::os::fd::AsRawFd;
        // Only this thread enters the namespace.
        assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
        let _ = tc::qdisc_add_clsact(&iface);
        let mut ebpf = aya::EbpfLoader::new()
            .map_max_entries(tracker_common::names::FLOWS, 1024)
            .load(tracker_user::loader::ebpf_object())
            .unwrap();
        let prog: &mut SchedClassifier = ebpf
            .program_mut(tracker_common::names::TC_BASELINE)
            .unwrap()
            .try_into()
            .unwrap();
        prog.load().unwrap();
        prog.attach_with_options(
            &iface,
            TcAttachType::Egress,
            TcAttachOptions::Netlink(NlOptions::default()),
        )
        .unwrap();
        let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).unwrap();
        let before = prog.info().unwrap().run_count();
        ready_tx.send(()).unwrap();
        done_rx.recv().unwrap();
        prog.info().unwrap().run_count() - before
    });
    ready_rx.recv().unwrap();
    traffic();
    done_tx.send(()).unwrap();
    filter.join().unwrap()
}

/// An observer never ends the chain: a classic clsact filter on the same egress keeps seeing
/// every packet while the tracker's tcx program is attached (on tcx, `TC_ACT_OK` would stop
/// it), and the tracker still reports what it sees.
#[test]
fn other_egress_filters_keep_running_with_the_tracker_attached() {
    if !support::privileged("other_egress_filters_keep_running_with_the_tracker_attached") {
        return;
    }
    let mut pair = Pair::new("c");
    pair.listen();
    let mut d = daemon(&pair, &["--backend", "198.18.200.0/30:80"]);
    assert_eq!(pair.attached(), (true, 1));
    let n = 5;
    let runs = classic_egress_filter_runs(&pair, || {
        for _ in 0..n {
            pair.curl(&["-H", &format!("Authorization: NTLM {TYPE1}")]);
        }
    });
    let events = d.collect(Duration::from_secs(10), |e| messages(e).len() >= n);
    assert_eq!(messages(&events).len(), n, "{events:#?}");
    // Each curl sends at least SYN, the request, an ACK and FIN: all through the filter.
    assert!(
        runs >= 4 * n as u64,
        "the classic egress filter ran only {runs} times"
    );
    assert!(d.interrupt().success());
}
