//! Shared test support: network namespaces, the lab, helpers for privileged tests.

pub mod lab;
