//! ntlm-affinity's userspace: loading the kernel programs, reading their records, and turning
//! them into NDJSON events. Data flows one way: `loader` → `record` → `messages` (with `http`
//! and `token`) → `event`.

pub mod check;
pub mod endpoint;
pub mod event;
pub mod http;
pub mod loader;
pub mod messages;
pub mod record;
pub mod token;
