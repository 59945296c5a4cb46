#![no_std]
// Lets tracker-user name this crate as a build-dependency (cargo needs a lib target).
