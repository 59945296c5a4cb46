//! System plumbing for the lab: running `ip`, network namespaces, daemon processes with pid
//! records, and killing them safely (pid + start time, so a reused pid is never hit).

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::config::NS_PREFIX;

/// Is the effective user root?
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Fail with a clear message unless root.
pub fn ensure_root() -> Result<()> {
    if !is_root() {
        bail!(
            "the lab needs root (it creates network namespaces, veth links and binds port 80): \
             run it with sudo, e.g. `sudo -E cargo xtask lab up`"
        );
    }
    Ok(())
}

/// Find `tool` on PATH.
pub fn which(tool: &str) -> Option<PathBuf> {
    if tool.contains('/') {
        let p = PathBuf::from(tool);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// Fail with an install hint unless `tool` is on PATH.
pub fn require_tool(tool: &str, debian_pkg: &str) -> Result<PathBuf> {
    which(tool).with_context(|| {
        format!("`{tool}` not found on PATH: install it (Debian: apt-get install {debian_pkg})")
    })
}

/// A command line for messages.
pub fn display_cmd(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        let a = a.to_string_lossy();
        if a.contains(' ') || a.is_empty() {
            s.push_str(&format!("'{a}'"));
        } else {
            s.push_str(&a);
        }
    }
    s
}

/// Run to completion; error (with stderr) unless it exits 0.
pub fn run(cmd: &mut Command) -> Result<Output> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run `{}`", display_cmd(cmd)))?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}{}",
            display_cmd(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    Ok(out)
}

/// `ip ARGS...`
pub fn ip<S: AsRef<OsStr>>(args: &[S]) -> Result<()> {
    run(Command::new("ip").args(args)).map(|_| ())
}

/// `ip -n NS ARGS...`
pub fn ip_ns(ns: &str, args: &[&str]) -> Result<()> {
    run(Command::new("ip").args(["-n", ns]).args(args)).map(|_| ())
}

/// A new network namespace with its loopback up.
pub fn netns_add(ns: &str) -> Result<()> {
    ip(&["netns", "add", ns])?;
    ip_ns(ns, &["link", "set", "lo", "up"])
}

/// A veth pair: `name` in `ns`, its peer `peer` in `peer_ns`.
pub fn veth(ns: &str, name: &str, peer_ns: &str, peer: &str) -> Result<()> {
    ip_ns(
        ns,
        &[
            "link", "add", name, "type", "veth", "peer", "name", peer, "netns", peer_ns,
        ],
    )
}

/// The addresses (`a.b.c.d/len`) on `dev` in `ns`, then the link up.
pub fn addrs_up(ns: &str, dev: &str, cidrs: &[String]) -> Result<()> {
    for c in cidrs {
        ip_ns(ns, &["addr", "add", c, "dev", dev])?;
    }
    ip_ns(ns, &["link", "set", dev, "up"])
}

/// A command run inside network namespace `ns` (`ip netns exec NS PROGRAM`).
pub fn ns_command<S: AsRef<OsStr>>(ns: &str, program: S) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).arg(program);
    c
}

/// Names of all network namespaces that start with `nta-` (the lab's; other suites use
/// other prefixes, so `lab down` never removes theirs).
pub fn lab_namespaces() -> Result<Vec<String>> {
    let out = run(Command::new("ip").args(["netns", "list"]))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(NS_PREFIX))
        .map(str::to_string)
        .collect())
}

/// Pids of processes in network namespace `ns`.
pub fn ns_pids(ns: &str) -> Result<Vec<i32>> {
    let out = run(Command::new("ip").args(["netns", "pids", ns]))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect())
}

/// Start time (clock ticks since boot, /proc/PID/stat field 22) of `pid`, if it exists.
pub fn proc_start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may contain spaces and parentheses: fields after the last ')' are fixed.
    let rest = &stat[stat.rfind(')')? + 1..];
    // rest starts with " state ..." = field 3; start time is field 22 -> index 19.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Is `pid` alive (and not a zombie)?
pub fn pid_alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|st| st != "Z"),
        Err(_) => false,
    }
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) with a positive or negative pid has no memory-safety preconditions.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// SIGTERM, wait up to `grace`, then SIGKILL: each of `pids` (only those still alive).
pub fn terminate(pids: &[i32], grace: Duration) {
    let me = std::process::id() as i32;
    let pids: Vec<i32> = pids.iter().copied().filter(|&p| p > 1 && p != me).collect();
    for &p in &pids {
        signal(p, libc::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && pids.iter().any(|&p| pid_alive(p)) {
        sleep(Duration::from_millis(20));
    }
    for &p in &pids {
        if pid_alive(p) {
            signal(p, libc::SIGKILL);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline && pids.iter().any(|&p| pid_alive(p)) {
        sleep(Duration::from_millis(10));
    }
}

/// What we remember about a daemon the lab started.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProcRecord {
    /// Role: `web1`, `haproxy`, `nginx`, `tracker`, ...
    pub name: String,
    /// Network namespace it runs in.
    pub ns: String,
    /// Pid (= its process group: it was started with `process_group(0)`).
    pub pid: i32,
    /// /proc start time, to recognise the same process later.
    pub start_time: u64,
    /// Its combined stdout/stderr file.
    pub log: PathBuf,
    /// The command line.
    pub cmd: String,
}

impl ProcRecord {
    /// Still the same process, alive?
    pub fn alive(&self) -> bool {
        pid_alive(self.pid) && proc_start_time(self.pid) == Some(self.start_time)
    }

    /// Terminate it (and its process group) if it is still the process we started.
    pub fn stop(&self, grace: Duration) {
        if !self.alive() {
            return;
        }
        // The whole group: NGINX workers, shells.
        signal(-self.pid, libc::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline && self.alive() {
            sleep(Duration::from_millis(20));
        }
        if self.alive() {
            signal(-self.pid, libc::SIGKILL);
            signal(self.pid, libc::SIGKILL);
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline && self.alive() {
            sleep(Duration::from_millis(10));
        }
    }

    /// Kill it at once (SIGKILL to the group), e.g. a backend dying mid-handshake.
    pub fn kill_now(&self) {
        if self.alive() {
            signal(-self.pid, libc::SIGKILL);
        }
    }
}

/// Directory of pid records.
pub fn pid_dir(state: &Path) -> PathBuf {
    state.join("pids")
}

/// All pid records in the state dir (unreadable ones are skipped).
pub fn read_records(state: &Path) -> Vec<ProcRecord> {
    let mut v = Vec::new();
    if let Ok(rd) = fs::read_dir(pid_dir(state)) {
        for e in rd.flatten() {
            if let Ok(text) = fs::read_to_string(e.path()) {
                if let Ok(r) = serde_json::from_str::<ProcRecord>(&text) {
                    v.push(r);
                }
            }
        }
    }
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// The record of daemon `name`, if any.
pub fn read_record(state: &Path, name: &str) -> Option<ProcRecord> {
    let text = fs::read_to_string(pid_dir(state).join(format!("{name}.json"))).ok()?;
    serde_json::from_str(&text).ok()
}

/// Remove the record of `name`.
pub fn remove_record(state: &Path, name: &str) {
    let _ = fs::remove_file(pid_dir(state).join(format!("{name}.json")));
}

/// Start a long-running process in namespace `ns`, detached from our process group (so a
/// Ctrl-C in the terminal does not hit it), stdout+stderr to `STATE/NAME.log`, and record
/// it under `STATE/pids/NAME.json`. `argv[0]` is the program.
pub fn spawn_daemon(
    state: &Path,
    name: &str,
    ns: &str,
    argv: &[&OsStr],
    env: &[(&str, &OsStr)],
) -> Result<(Child, ProcRecord)> {
    let Some((prog, args)) = argv.split_first() else {
        bail!("spawn_daemon: empty argv")
    };
    let log = state.join(format!("{name}.log"));
    let out = File::create(&log).with_context(|| format!("create {}", log.display()))?;
    let err = out.try_clone()?;
    let mut cmd = ns_command(ns, prog);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let line = display_cmd(&cmd);
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start {name}: `{line}`"))?;
    let pid = child.id() as i32;
    // The start time is readable as soon as the process exists.
    let start_time = proc_start_time(pid).unwrap_or(0);
    let rec = ProcRecord {
        name: name.to_string(),
        ns: ns.to_string(),
        pid,
        start_time,
        log,
        cmd: line,
    };
    fs::create_dir_all(pid_dir(state))?;
    let path = pid_dir(state).join(format!("{name}.json"));
    fs::write(&path, serde_json::to_vec_pretty(&rec)?)
        .with_context(|| format!("write {}", path.display()))?;
    Ok((child, rec))
}

/// The last `max` bytes of a file, for error messages.
pub fn tail(path: &Path, max: usize) -> String {
    match fs::read(path) {
        Ok(b) => {
            let start = b.len().saturating_sub(max);
            String::from_utf8_lossy(&b[start..]).trim().to_string()
        }
        Err(_) => String::new(),
    }
}

/// Listening TCP sockets (`addr:port`) in namespace `ns`.
pub fn listening(ns: &str) -> Result<Vec<String>> {
    let out = run(ns_command(ns, "ss").args(["-Hltn"]))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3).map(str::to_string))
        .collect())
}

/// An exclusive lock (flock) on a file, released on drop. Serialises labs across threads
/// and processes: there is one set of `nta-*` namespaces per machine.
#[derive(Debug)]
pub struct LabLock {
    _file: File,
    /// Path of the lock file.
    pub path: PathBuf,
}

impl LabLock {
    /// Block until the lock at `path` is ours.
    pub fn acquire(path: &Path) -> Result<LabLock> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("open lock {}", path.display()))?;
        // SAFETY: flock on a valid, owned descriptor.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if rc != 0 {
            bail!(
                "flock {}: {}",
                path.display(),
                std::io::Error::last_os_error()
            );
        }
        let _ = writeln!(file, "{}", std::process::id());
        Ok(LabLock {
            _file: file,
            path: path.to_path_buf(),
        })
    }
}
