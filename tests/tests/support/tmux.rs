//! A program in a real terminal: a detached tmux session on a private tmux server (`-L`,
//! so the host's own tmux is never touched), driven with `send-keys` and read with
//! `capture-pane`.

use std::process::Command;
use std::time::{Duration, Instant};

pub struct Tmux {
    server: String,
}

impl Tmux {
    /// Runs `cmd` (a shell command line) in a `w`×`h` terminal. When it exits, the pane
    /// shows `EXITED <status>` and stays open, so its last screen can be read.
    pub fn start(cmd: &str, w: u16, h: u16) -> Tmux {
        let t = Tmux {
            server: format!("nta-test-{}", std::process::id()),
        };
        let line = format!("{cmd}; echo EXITED $?; sleep 600");
        t.tmux(&[
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            &w.to_string(),
            "-y",
            &h.to_string(),
            &line,
        ]);
        t
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.server, "-f", "/dev/null"])
            .args(args)
            .output()
            .expect("tmux (Debian package `tmux`; `cargo xtask setup`)");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The visible screen, one line per row.
    pub fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-t", "t"])
    }

    pub fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "t"];
        args.extend_from_slice(keys);
        self.tmux(&args);
    }

    pub fn resize(&self, w: u16, h: u16) {
        self.tmux(&[
            "resize-window",
            "-t",
            "t",
            "-x",
            &w.to_string(),
            "-y",
            &h.to_string(),
        ]);
    }

    /// Waits until `ok` holds for the screen; panics with the last screen after 30 s.
    pub fn wait(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let s = self.screen();
            if ok(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "the terminal never showed {what}; it shows:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.server, "kill-server"])
            .output();
    }
}
