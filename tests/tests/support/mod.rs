//! Helpers shared by the privileged test suites: the CI gate, crafted frames, namespaces.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

#[allow(unused_imports)] // not every suite crafts frames
pub use nta_lab::frames;
pub mod differential;
pub mod prometheus;
pub mod tmux;
pub mod tracker;
pub mod verdicts;

/// Privileged tests need root (BPF, network namespaces). Under `CI=true` a missing privilege
/// is a failure, never a skip; elsewhere the test says why it did not run.
pub fn privileged(test: &str) -> bool {
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "{test}: needs root (CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON) and CI=true: failing, not skipping"
        );
    }
    eprintln!("{test}: SKIPPED (not root; run the suite as root or with CI=true to enforce)");
    false
}
