//! What the running daemon holds once its programs are attached: only the capability it
//! still uses, and no way for its memory to reach the disk. Reassembly buffers hold raw
//! Type-3 tokens — crackable credential material — until their head is decoded.

use std::io;

/// Capability numbers (linux/capability.h).
pub const CAP_NET_ADMIN: u32 = 12;
pub const CAP_PERFMON: u32 = 38;
pub const CAP_BPF: u32 = 39;

/// No core dumps (`RLIMIT_CORE` 0) and not dumpable (`PR_SET_DUMPABLE` 0: no core file even
/// for a crash, and no ptrace or `/proc/PID/mem` reads by another process of the same user).
pub fn no_core_dumps() -> io::Result<()> {
    let zero = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit and prctl with plain integer arguments.
    if unsafe { libc::setrlimit(libc::RLIMIT_CORE, &zero) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Keeps only `keep` in the effective and permitted sets, clears the inheritable and ambient
/// sets: what is dropped cannot be raised again.
pub fn keep_only(keep: &[u32]) -> io::Result<()> {
    let mut data = [CapData::default(); 2];
    for &cap in keep {
        let d = &mut data[(cap / 32) as usize % 2];
        d.effective |= 1 << (cap % 32);
        d.permitted |= 1 << (cap % 32);
    }
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    // SAFETY: capset with a version-3 header and its two data words, as capability.h defines.
    let r = unsafe {
        libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapHeader,
            data.as_ptr(),
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: prctl with integer arguments.
    if unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    } != 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// After attaching: CAP_BPF stays (reading `STATS`, writing `AUTH_FLOWS`: every map access
/// is a bpf() call), CAP_NET_ADMIN only where detaching needs it (`netlink_detach`: the clsact
/// filters of kernels before 6.6 are removed by netlink; links close with their fd). The
/// rest goes, CAP_PERFMON and CAP_SYS_ADMIN included. Returns the names kept.
pub fn drop_after_attach(netlink_detach: bool) -> io::Result<Vec<&'static str>> {
    let mut keep = vec![CAP_BPF];
    let mut names = vec!["CAP_BPF"];
    if netlink_detach {
        keep.push(CAP_NET_ADMIN);
        names.push("CAP_NET_ADMIN");
    }
    keep_only(&keep)?;
    Ok(names)
}

/// The effective set of process `pid` (`self` for this one), from `/proc/PID/status`.
pub fn effective(pid: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}
