//! Shared test support: network namespaces, the lab, helpers for privileged tests.

pub mod bench;
pub mod frames;
pub mod lab;
