//! The `ntlm-affinity` daemon binary, started as a child process and stopped with SIGINT.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// `$NTA_TRACKER_BIN`, else `target/debug/ntlm-affinity` (built by `cargo build -p tracker-user`).
pub fn tracker_bin() -> PathBuf {
    if let Ok(p) = std::env::var("NTA_TRACKER_BIN") {
        return PathBuf::from(p);
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/ntlm-affinity");
    assert!(
        p.exists(),
        "{} missing: run `cargo build -p tracker-user` (or `cargo xtask test`)",
        p.display()
    );
    p
}

/// A running `ntlm-affinity run`: stdout lines on a channel, stderr echoed.
pub struct Tracker {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
}

/// Echoes a child's stream line by line and hands each line to a channel.
fn forward(stream: impl std::io::Read + Send + 'static, echo: bool) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stream).lines().map_while(Result::ok) {
            if echo {
                eprintln!("tracker: {l}");
            }
            let _ = tx.send(l);
        }
    });
    rx
}

fn parse(l: &str) -> Value {
    serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))
}

impl Tracker {
    /// Spawn `cmd` (already holding the program and its arguments) and wait until it says
    /// it is attached (verification takes a few seconds).
    pub fn start(mut cmd: Command) -> Tracker {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = forward(child.stdout.take().unwrap(), false);
        let stderr = forward(child.stderr.take().unwrap(), true);
        let t = Tracker {
            child,
            lines,
            stderr,
        };
        t.wait_attached();
        t
    }

    fn wait_attached(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while let Ok(l) = self
            .stderr
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            if l.contains("attached to") {
                return;
            }
        }
        panic!("the tracker did not attach");
    }

    /// Collects NDJSON objects until `want` says enough or the timeout passes.
    /// The daemon's process id (`ip netns exec` execs it in place).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn collect(&self, timeout: Duration, want: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        let mut got = Vec::new();
        while !want(&got) {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(l) => got.push(parse(&l)),
                Err(_) => break,
            }
        }
        got
    }

    /// Waits for the daemon to exit by itself; its status, or `None` after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Everything the daemon wrote to stderr so far (also echoed as it came).
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.try_iter().collect()
    }

    /// `kill -9`, as a crash: nothing of the daemon runs after it.
    pub fn kill(&mut self) {
        // SAFETY: signalling our own child.
        assert_eq!(
            unsafe { libc::kill(self.child.id() as i32, libc::SIGKILL) },
            0
        );
        let status = self.wait_exit(Duration::from_secs(10)).expect("killed");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL)
        );
    }

    /// SIGINT, and wait for the exit (it flushes and detaches).
    pub fn interrupt(&mut self) -> ExitStatus {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "the tracker did not stop on SIGINT"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGINT, wait for a clean exit, and return every NDJSON object not yet collected.
    pub fn stop(mut self) -> Vec<Value> {
        let status = self.interrupt();
        assert!(status.success(), "tracker exit status {status}");
        // The sender ends with the child's stdout: this drains to the last line.
        let lines: Vec<String> = self.lines.iter().filter(|l| !l.trim().is_empty()).collect();
        // NTA_EVENTS_DIR keeps every run's NDJSON (for debugging and docs/events.md examples).
        if let Ok(dir) = std::env::var("NTA_EVENTS_DIR") {
            static RUN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path =
                std::path::Path::new(&dir).join(format!("{}-{n}.ndjson", std::process::id()));
            let _ = std::fs::create_dir_all(&dir);
            let _ = std::fs::write(&path, lines.join("\n") + "\n");
        }
        lines.iter().map(|l| parse(l)).collect()
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
