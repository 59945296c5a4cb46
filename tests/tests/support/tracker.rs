//! The `ntlm-affinity` daemon binary, started as a child process and stopped with SIGINT.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
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

/// A running `ntlm-affinity run`: stdout collected in the background, stderr echoed.
pub struct Tracker {
    child: Child,
    out: Option<JoinHandle<Vec<String>>>,
    stderr: mpsc::Receiver<String>,
}

impl Tracker {
    /// Spawn `cmd` (already holding the program and its arguments) and wait until it says
    /// it is attached.
    pub fn start(mut cmd: Command) -> Tracker {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let out = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<String>>()
        });
        let (etx, stderr) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                eprintln!("tracker: {l}");
                let _ = etx.send(l);
            }
        });
        let t = Tracker {
            child,
            out: Some(out),
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

    /// SIGINT, wait for the exit (it flushes), and return every NDJSON object it printed.
    pub fn stop(mut self) -> Vec<Value> {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "the tracker did not stop on SIGINT"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "tracker exit status {status}");
        let lines = self.out.take().unwrap().join().unwrap();
        lines
            .iter()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
