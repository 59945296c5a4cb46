//! `ntlm-affinity check`: can this host run the tracker? Each finding comes with its fix.

use std::{ffi::CString, path::Path, process::Command};

use aya::util::KernelVersion;

/// Kernel needed for bpf_loop (5.17), bpf_xdp_load_bytes (5.18) and ring buffers (5.8).
pub const MIN_KERNEL: (u8, u8, u16) = (5, 18, 0);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub name: String,
    pub ok: bool,
    /// Required for `run`; optional findings only degrade.
    pub required: bool,
    pub detail: String,
    pub fix: Option<String>,
}

pub fn ifindex(iface: &str) -> Option<u32> {
    let name = CString::new(iface).ok()?;
    // SAFETY: if_nametoindex reads a NUL-terminated string we own.
    let idx = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (idx != 0).then_some(idx)
}

pub fn ifname(index: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: the buffer holds IF_NAMESIZE bytes as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: if_indextoname wrote a NUL-terminated name into buf.
    let s = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    Some(s.to_string_lossy().into_owned())
}

const CAPS: [(u32, &str); 3] = [(39, "CAP_BPF"), (12, "CAP_NET_ADMIN"), (38, "CAP_PERFMON")];
const CAP_SYS_ADMIN: u32 = 21;

fn effective_caps() -> u64 {
    crate::privilege::effective("self").unwrap_or(0)
}

/// The capabilities the tracker needs that this process lacks (CAP_SYS_ADMIN covers BPF
/// and PERFMON on every kernel).
pub fn missing_capabilities() -> Vec<&'static str> {
    let eff = effective_caps();
    let sys_admin = eff & (1 << CAP_SYS_ADMIN) != 0;
    CAPS.iter()
        .filter(|(bit, name)| {
            let covered = sys_admin && *name != "CAP_NET_ADMIN";
            eff & (1u64 << bit) == 0 && !covered
        })
        .map(|(_, name)| *name)
        .collect()
}

/// Whether `iface` already carries an XDP program (from `ip -d link`).
pub fn xdp_attached(iface: &str) -> Option<bool> {
    let out = Command::new("ip")
        .args(["-d", "link", "show", "dev", iface])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Some(text.contains("prog/xdp") || text.contains(" xdp") || text.contains("xdpgeneric"))
}

/// Every finding `check` prints, in the order printed. One flat list on purpose: each entry is
/// a probe and its advice side by side, and the list reads like the output it makes.
pub fn run(interfaces: &[String]) -> Vec<Finding> {
    let mut f = Vec::new();
    let kv = KernelVersion::current().ok();
    let (maj, min, patch) = MIN_KERNEL;
    let kernel_ok = kv.is_some_and(|v| v >= KernelVersion::new(maj, min, patch));
    f.push(Finding {
        name: "kernel".into(),
        ok: kernel_ok,
        required: true,
        detail: kv
            .map(|v| format!("Linux {v}"))
            .unwrap_or_else(|| "unknown".into()),
        fix: (!kernel_ok).then(|| format!("upgrade to Linux {maj}.{min} or newer")),
    });
    let tcx = kv.is_some_and(|v| v >= KernelVersion::new(6, 6, 0));
    f.push(Finding {
        name: "tcx".into(),
        ok: tcx,
        required: false,
        detail: if tcx {
            "tcx links (6.6+)".into()
        } else {
            "no tcx: falls back to the clsact qdisc".into()
        },
        fix: (!tcx).then(|| "optional: Linux 6.6+ for tcx links".into()),
    });
    let btf = Path::new("/sys/kernel/btf/vmlinux").exists();
    f.push(Finding {
        name: "btf".into(),
        ok: btf,
        required: false,
        detail: if btf {
            "/sys/kernel/btf/vmlinux".into()
        } else {
            "no kernel BTF".into()
        },
        fix: (!btf).then(|| "optional today: a kernel built with CONFIG_DEBUG_INFO_BTF=y".into()),
    });
    let missing = missing_capabilities();
    f.push(Finding {
        name: "capabilities".into(),
        ok: missing.is_empty(),
        required: true,
        detail: if missing.is_empty() { "CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON".into() } else { format!("missing {}", missing.join(", ")) },
        fix: (!missing.is_empty()).then(|| {
            "run as root, or `setcap cap_bpf,cap_net_admin,cap_perfmon+ep $(which ntlm-affinity)`".into()
        }),
    });
    let bpffs = std::fs::read_to_string("/proc/mounts")
        .map(|m| {
            m.lines()
                .any(|l| l.split_whitespace().nth(2) == Some("bpf"))
        })
        .unwrap_or(false);
    f.push(Finding {
        name: "bpffs".into(),
        ok: bpffs,
        required: false,
        detail: if bpffs {
            "mounted".into()
        } else {
            "not mounted (only needed for pinning)".into()
        },
        fix: (!bpffs).then(|| "optional: `mount -t bpf bpf /sys/fs/bpf`".into()),
    });
    for iface in interfaces {
        let exists = ifindex(iface).is_some();
        let busy = exists && xdp_attached(iface).unwrap_or(false);
        f.push(Finding {
            name: format!("interface {iface}"),
            ok: exists,
            required: true,
            detail: match (exists, busy) {
                (false, _) => "does not exist in this network namespace".into(),
                (true, true) => "already has an XDP program: ingress attaches from tcx instead (`--ingress auto`), that program stays".into(),
                (true, false) => "present, XDP slot free: ingress attaches through XDP".into(),
            },
            fix: (!exists).then(|| "pick an interface from `ip link` (or run inside its namespace with `ip netns exec`)".into()),
        });
    }
    f
}
