//! A real Prometheus server (Debian's 2.42) in the balancer namespace, scraping the daemon's
//! `--metrics` endpoint, and `promtool check metrics` on what the endpoint serves.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nta_lab::Lab;
use serde_json::Value;

/// Where the daemon serves metrics in the lab tests (loopback of the balancer namespace).
pub const METRICS_ADDR: &str = "127.0.0.1:9464";
const PROMETHEUS_ADDR: &str = "127.0.0.1:9490";

pub struct Prometheus {
    child: Child,
    dir: PathBuf,
}

impl Prometheus {
    /// Starts Prometheus scraping `METRICS_ADDR` every second, with its data in a fresh
    /// directory under the lab's state directory.
    pub fn start(lab: &Lab) -> Prometheus {
        let dir = lab.state_dir().join("prometheus");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: ntlm-affinity\n    static_configs:\n      - targets: ['{METRICS_ADDR}']\n"
            ),
        )
        .unwrap();
        let child = lab
            .lb_command("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={PROMETHEUS_ADDR}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .spawn()
            .expect("start prometheus (Debian package `prometheus`; `cargo xtask setup`)");
        Prometheus { child, dir }
    }

    /// One instant query through Prometheus' HTTP API: the value of each series, or `None`
    /// while Prometheus is not up yet.
    pub fn query(&self, lab: &Lab, expr: &str) -> Option<Vec<f64>> {
        let out = lab
            .lb_command("curl")
            .args(["-sf", "--max-time", "2", "-G"])
            .arg(format!("http://{PROMETHEUS_ADDR}/api/v1/query"))
            .args(["--data-urlencode", &format!("query={expr}")])
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        let series = v["data"]["result"].as_array()?;
        Some(
            series
                .iter()
                .filter_map(|s| s["value"][1].as_str()?.parse().ok())
                .collect(),
        )
    }

    /// Waits until `expr` has exactly the values `want`; panics with what Prometheus had, and
    /// its log, after a minute.
    pub fn wait_for(&self, lab: &Lab, expr: &str, want: &[f64]) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = None;
        while Instant::now() < deadline {
            last = self.query(lab, expr);
            if last.as_deref() == Some(want) {
                return;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        let log = std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default();
        panic!("prometheus: `{expr}` is {last:?}, expected {want:?}; its log:\n{log}");
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the daemon's endpoint serves, fetched from inside the balancer namespace.
pub fn scrape(lab: &Lab) -> String {
    let out = lab
        .lb_command("curl")
        .args(["-sf", "--max-time", "5"])
        .arg(format!("http://{METRICS_ADDR}/metrics"))
        .output()
        .unwrap();
    assert!(out.status.success(), "GET /metrics failed: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// `promtool check metrics` on `text`: no problem reported (it lints names, help and units).
pub fn assert_promtool_clean(text: &str) {
    use std::io::Write as _;
    let mut p = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package `prometheus`)");
    p.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = p.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics: {said}\n{text}"
    );
}
