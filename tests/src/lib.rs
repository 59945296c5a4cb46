//! The integration suites of ntlm-affinity live in `tests/` (in-kernel, differential, live
//! network-namespace and lab tests); this library is empty. The lab, the demo and the
//! benchmark harness they drive are the `nta-lab` crate (`lab/`).
