//! ntlm-affinity's userspace: loading the kernel programs, reading their records, and turning
//! them into verdicts. Data flows one way, live and in replay alike:
//! `loader` (ring buffer) or `replay` (capture → `replay::kernel_model`) → `record` →
//! `pipeline` (`reassembly` → `http` → `decode` → `correlate`) → `event` (NDJSON).

pub mod check;
pub mod control;
pub mod correlate;
pub mod decode;
pub mod endpoint;
pub mod event;
pub mod hashing;
pub mod http;
pub mod json;
pub mod loader;
pub mod metrics;
pub mod output;
pub mod pipeline;
pub mod privilege;
pub mod reassembly;
pub mod record;
pub mod replay;
#[cfg(test)]
pub(crate) mod testsupport;
pub mod top;
