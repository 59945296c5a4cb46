//! Loads the embedded eBPF object, fills its configuration maps and attaches the programs:
//! XDP on ingress, TC (tcx, or clsact on kernels before 6.6) on egress. Everything attached
//! is owned by [`Tracker`]: dropping it detaches every program, so an error half-way leaves
//! nothing behind.

use std::{collections::HashMap, io, os::fd::AsFd as _};

use anyhow::{Context as _, anyhow, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{
        Array, HashMap as BpfHashMap, LpmTrie, Map, MapData, MapError, PerCpuArray, RingBuf,
        lpm_trie::Key,
    },
    programs::{
        LinkOrder, ProgramError, SchedClassifier, TcAttachType, Xdp, XdpMode,
        tc::{self, NlOptions, TcAttachOptions, TcError},
        xdp::XdpError,
    },
    util::KernelVersion,
};
use tracker_common::{
    AuthFlow, CAPTURE_MAX, Config, DEFAULT_AUTH_FLOW_CAPACITY, DEFAULT_CONTINUATION_BYTES,
    DEFAULT_FLOW_CAPACITY, DEFAULT_RING_BYTES, EndpointKey, FlowId, FlowKey, FlowState,
    PORT_BACKEND, PORT_FRONTEND, identity, names, stat,
};

use crate::{check, correlate::AuthUpdate, endpoint::Backend};

pub const XDP_PROGRAM: &str = names::INGRESS_PROGRAM;
pub const TC_PROGRAM: &str = names::EGRESS_PROGRAM;
pub const TC_INGRESS_PROGRAM: &str = names::INGRESS_TC_PROGRAM;

/// How the ingress program is attached to an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ingress {
    Xdp,
    /// tcx ingress (a clsact filter before Linux 6.6): the XDP slot was taken.
    Tc,
}

impl Ingress {
    pub fn as_str(self) -> &'static str {
        match self {
            Ingress::Xdp => "xdp",
            Ingress::Tc => "tc",
        }
    }
}

/// Which ingress attachment `run` wants.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IngressMode {
    /// XDP when the interface's XDP slot is free, else tcx ingress.
    #[default]
    Auto,
    Xdp,
    Tc,
}
/// Do-nothing programs of the same types, the benchmark harness's baseline.
pub const XDP_BASELINE: &str = names::XDP_BASELINE;
pub const TC_BASELINE: &str = names::TC_BASELINE;

/// The eBPF object built by build.rs, embedded so the daemon is one self-contained binary.
pub fn ebpf_object() -> &'static [u8] {
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracker-ebpf"))
}

#[derive(Clone, Debug)]
pub struct TrackerConfig {
    pub backends: Vec<Backend>,
    pub frontend_ports: Vec<u16>,
    pub flow_capacity: u32,
    /// Capacity of `AUTH_FLOWS`: authenticated backend connections checked in the kernel.
    pub auth_flow_capacity: u32,
    pub ring_bytes: u32,
    pub capture_len: u32,
    pub continuation_bytes: u32,
    pub xdp_mode: XdpMode,
    pub ingress: IngressMode,
    /// Attach TC programs as classic clsact filters (netlink) even where tcx exists: the
    /// path of kernels before 6.6, forced for tests and for hosts whose tooling expects it.
    pub tc_netlink: bool,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            backends: Vec::new(),
            frontend_ports: Vec::new(),
            flow_capacity: DEFAULT_FLOW_CAPACITY,
            auth_flow_capacity: DEFAULT_AUTH_FLOW_CAPACITY,
            ring_bytes: DEFAULT_RING_BYTES,
            capture_len: CAPTURE_MAX as u32,
            continuation_bytes: DEFAULT_CONTINUATION_BYTES,
            xdp_mode: XdpMode::Default,
            ingress: IngressMode::Auto,
            tc_netlink: false,
        }
    }
}

impl TrackerConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.backends.is_empty() && self.frontend_ports.is_empty() {
            bail!(
                "nothing to track: give at least one --backend CIDR:PORT or --frontend-port PORT"
            );
        }
        if self.frontend_ports.contains(&0) {
            bail!("invalid --frontend-port 0");
        }
        if self.capture_len == 0 || self.capture_len as usize > CAPTURE_MAX {
            bail!("--capture-bytes must be between 1 and {CAPTURE_MAX}");
        }
        if !self.ring_bytes.is_power_of_two() || self.ring_bytes < 4096 {
            bail!(
                "--ring-bytes must be a power of two of at least 4096 (got {})",
                self.ring_bytes
            );
        }
        if self.flow_capacity == 0 {
            bail!("--flow-capacity must be at least 1");
        }
        if self.auth_flow_capacity == 0 {
            bail!("--auth-flow-capacity must be at least 1");
        }
        Ok(())
    }
}

/// Loaded programs and maps; attached programs are detached when this is dropped.
pub struct Tracker {
    ebpf: Ebpf,
    /// Key of the kernel's identity hash (`Config::identity_key`), random per load.
    identity_key: [u64; 2],
    /// Interfaces the programs are attached to, in attach order.
    pub interfaces: Vec<(String, u32)>,
    /// How the ingress program is attached to each of `interfaces` (same order).
    pub ingress: Vec<Ingress>,
    /// The tcx ingress program is loaded only when an interface needs it.
    tc_ingress_loaded: bool,
    /// TC programs go through the clsact qdisc (netlink), not tcx links.
    tc_netlink: bool,
    /// Filters of an earlier, killed tracker removed from the clsact qdiscs at attach.
    pub stale_filters_removed: u32,
}

/// Sum over CPUs of every `STATS` counter, by name.
pub type Stats = Vec<(&'static str, u64)>;

impl Tracker {
    /// Loads and verifies the programs with their `CONFIG`, and fills `TRACKED_PORTS` and
    /// `ENDPOINTS`.
    pub fn load(cfg: &TrackerConfig) -> anyhow::Result<Self> {
        cfg.validate()?;
        raise_memlock();
        let mut key = [0u8; 16];
        crate::pipeline::getrandom_fill(&mut key).context("reading /dev/urandom")?;
        let (k0, k1) = key.split_at(8);
        let identity_key = [
            u64::from_le_bytes(k0.try_into().unwrap_or_default()),
            u64::from_le_bytes(k1.try_into().unwrap_or_default()),
        ];
        let config = Config {
            capture_len: cfg.capture_len,
            continuation_bytes: cfg.continuation_bytes,
            flags: 0,
            _pad: 0,
            identity_key,
        };
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(names::FLOWS, cfg.flow_capacity)
            .map_max_entries(names::AUTH_FLOWS, cfg.auth_flow_capacity)
            .map_max_entries(names::EVENTS, cfg.ring_bytes)
            .override_global(names::CONFIG, &config, true)
            .load(ebpf_object())
            .map_err(|e| privilege_hint(anyhow!(e), "loading the eBPF maps"))?;
        for name in [XDP_PROGRAM, TC_PROGRAM] {
            let prog = ebpf
                .program_mut(name)
                .ok_or_else(|| anyhow!("program {name} missing from the eBPF object"))?;
            match prog {
                aya::programs::Program::Xdp(p) => p.load(),
                aya::programs::Program::SchedClassifier(p) => p.load(),
                _ => Err(ProgramError::NotLoaded),
            }
            .map_err(|e| privilege_hint(anyhow!(e), &format!("loading program {name}")))?;
        }
        let mut t = Self {
            ebpf,
            identity_key,
            interfaces: Vec::new(),
            ingress: Vec::new(),
            tc_ingress_loaded: false,
            tc_netlink: cfg.tc_netlink
                || KernelVersion::current().is_ok_and(|v| v < KernelVersion::new(6, 6, 0)),
            stale_filters_removed: 0,
        };
        t.configure(cfg)?;
        Ok(t)
    }

    fn configure(&mut self, cfg: &TrackerConfig) -> anyhow::Result<()> {
        let mut ports: HashMap<u16, u8> = HashMap::new();
        for b in &cfg.backends {
            *ports.entry(b.port).or_default() |= PORT_BACKEND;
        }
        for p in &cfg.frontend_ports {
            *ports.entry(*p).or_default() |= PORT_FRONTEND;
        }
        let mut tracked: Array<_, u8> = Array::try_from(self.map_mut(names::TRACKED_PORTS)?)?;
        for (port, bits) in ports {
            tracked.set(u32::from(port), bits, 0)?;
        }
        let mut endpoints: LpmTrie<_, EndpointKey, u8> =
            LpmTrie::try_from(self.map_mut(names::ENDPOINTS)?)?;
        for b in &cfg.backends {
            let (bits, key) = b.lpm_key();
            endpoints
                .insert(&Key::new(bits, key), 1, 0)
                .with_context(|| format!("adding backend {b}"))?;
        }
        Ok(())
    }

    fn map_mut(&mut self, name: &str) -> anyhow::Result<&mut aya::maps::Map> {
        self.ebpf
            .map_mut(name)
            .ok_or_else(|| anyhow!("map {name} missing from the eBPF object"))
    }

    /// Whether everything this tracker attaches is a BPF link, detached by closing its fd:
    /// XDP always is on the kernels we support; TC is a tcx link from Linux 6.6, a clsact
    /// filter (removed by netlink, CAP_NET_ADMIN) before or with `tc_netlink`.
    pub fn links_only(&self) -> bool {
        !self.tc_netlink
    }

    /// Attaches the ingress program (XDP, or tcx ingress as `ingress` says) and TC egress to
    /// `iface`; returns how ingress was attached. On error nothing stays attached to this
    /// interface; earlier interfaces stay attached until the Tracker is dropped.
    pub fn attach(
        &mut self,
        iface: &str,
        mode: XdpMode,
        ingress: IngressMode,
    ) -> anyhow::Result<Ingress> {
        let ifindex = check::ifindex(iface).ok_or_else(|| {
            anyhow!("no interface named `{iface}` in this network namespace (see `ip link`)")
        })?;
        // A second instance would track every packet twice (its tcx ingress beside the
        // first one's XDP). Our egress program is a tcx link from 6.6 on. (A clsact filter
        // cannot tell a live tracker from a killed one: that path takes the interface over.)
        if !self.tc_netlink
            && let Ok((_, progs)) = SchedClassifier::query_tcx(iface, TcAttachType::Egress)
            && progs.iter().any(|p| p.name_as_str() == Some(TC_PROGRAM))
        {
            bail!(
                "interface {iface} is already tracked by another ntlm-affinity (its {TC_PROGRAM} program is attached); stop that one first"
            );
        }
        let xdp_link = match ingress {
            IngressMode::Tc => None,
            IngressMode::Xdp | IngressMode::Auto => {
                let xdp: &mut Xdp = self
                    .ebpf
                    .program_mut(XDP_PROGRAM)
                    .ok_or_else(|| anyhow!("program {XDP_PROGRAM} missing"))?
                    .try_into()?;
                match xdp.attach(iface, mode) {
                    Ok(link) => Some(link),
                    // Someone else's program holds the one XDP slot: leave it, use tcx.
                    Err(e) if ingress == IngressMode::Auto && xdp_slot_taken(&e) => None,
                    Err(e) => return Err(attach_error(e, iface, "XDP")),
                }
            }
        };
        let mut tc_ingress_link = None;
        let tc_result = (|| -> anyhow::Result<()> {
            if self.tc_netlink {
                // tcx needs 6.6; older kernels attach through the clsact qdisc, whose filters
                // are not tied to our process: a killed tracker's stay. Ours go first.
                match tc::qdisc_add_clsact(iface) {
                    Ok(()) => {}
                    Err(TcError::NetlinkError(e)) if e.raw_os_error() == Some(libc::EEXIST) => {}
                    Err(e) => {
                        return Err(anyhow!(e).context(format!("adding clsact qdisc on {iface}")));
                    }
                }
                for (name, at) in [
                    (TC_PROGRAM, TcAttachType::Egress),
                    (TC_INGRESS_PROGRAM, TcAttachType::Ingress),
                ] {
                    match tc::qdisc_detach_program(iface, at, name) {
                        Ok(()) => self.stale_filters_removed += 1,
                        Err(TcError::IoError(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => {
                            return Err(anyhow!(e)
                                .context(format!("removing a stale {name} filter from {iface}")));
                        }
                    }
                }
            }
            let netlink = self.tc_netlink;
            let tc_options = move || {
                if netlink {
                    TcAttachOptions::Netlink(NlOptions::default())
                } else {
                    TcAttachOptions::TcxOrder(LinkOrder::default())
                }
            };
            if xdp_link.is_none() {
                if !self.tc_ingress_loaded {
                    self.classifier(TC_INGRESS_PROGRAM)?.load().map_err(|e| {
                        privilege_hint(anyhow!(e), &format!("loading program {TC_INGRESS_PROGRAM}"))
                    })?;
                    self.tc_ingress_loaded = true;
                }
                tc_ingress_link = Some(
                    self.classifier(TC_INGRESS_PROGRAM)?
                        .attach_with_options(iface, TcAttachType::Ingress, tc_options())
                        .map_err(|e| attach_error(e, iface, "TC ingress"))?,
                );
            }
            self.classifier(TC_PROGRAM)?
                .attach_with_options(iface, TcAttachType::Egress, tc_options())
                .map_err(|e| attach_error(e, iface, "TC egress"))?;
            Ok(())
        })();
        if let Err(e) = tc_result {
            if let (Some(link), Some(aya::programs::Program::Xdp(xdp))) =
                (xdp_link, self.ebpf.program_mut(XDP_PROGRAM))
            {
                let _ = xdp.detach(link);
            }
            if let (Some(link), Ok(p)) = (tc_ingress_link, self.classifier(TC_INGRESS_PROGRAM)) {
                let _ = p.detach(link);
            }
            return Err(e);
        }
        let how = if xdp_link.is_some() {
            Ingress::Xdp
        } else {
            Ingress::Tc
        };
        self.interfaces.push((iface.to_string(), ifindex));
        self.ingress.push(how);
        Ok(how)
    }

    /// A TC program of the loaded object.
    fn classifier(&mut self, name: &str) -> anyhow::Result<&mut SchedClassifier> {
        Ok(self
            .ebpf
            .program_mut(name)
            .ok_or_else(|| anyhow!("program {name} missing"))?
            .try_into()?)
    }

    /// The ring buffer the kernel writes records to (can be taken once).
    pub fn take_events(&mut self) -> anyhow::Result<RingBuf<MapData>> {
        let map = self
            .ebpf
            .take_map(names::EVENTS)
            .ok_or_else(|| anyhow!("EVENTS ring buffer already taken"))?;
        Ok(RingBuf::try_from(map)?)
    }

    /// The authenticated-connection map (can be taken once), for [`AuthFlows::apply`].
    pub fn take_auth_flows(&mut self) -> anyhow::Result<AuthFlows> {
        let map = self
            .ebpf
            .take_map(names::AUTH_FLOWS)
            .ok_or_else(|| anyhow!("AUTH_FLOWS map already taken"))?;
        Ok(AuthFlows {
            map: BpfHashMap::try_from(map)?,
            key: self.identity_key,
            failures: 0,
        })
    }

    /// Key of the kernel's identity hash, so replay's model can hash as this load does.
    pub fn identity_key(&self) -> [u64; 2] {
        self.identity_key
    }

    fn flows(&self) -> anyhow::Result<BpfHashMap<&MapData, FlowId, FlowState>> {
        let map = self
            .ebpf
            .map(names::FLOWS)
            .ok_or_else(|| anyhow!("map FLOWS missing"))?;
        Ok(BpfHashMap::try_from(map)?)
    }

    /// The kernel's `FLOWS` entry of one flow direction, if it has one.
    pub fn flow(&self, key: &FlowKey) -> anyhow::Result<Option<FlowState>> {
        match self.flows()?.get(&key.id(&self.identity_key), 0) {
            Ok(s) => Ok(Some(s)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// How many flow directions have a `FLOWS` entry (one syscall per entry: for tests and
    /// occasional reports, not per record). The blank entry the programs scan flows without
    /// one with (family 0) is not a flow and not counted.
    pub fn flow_entries(&self) -> anyhow::Result<usize> {
        count_flows(&self.flows()?, usize::MAX)
    }

    /// A [`MapCensus`] of this load's `FLOWS` and `AUTH_FLOWS`; take it before
    /// [`Tracker::take_auth_flows`].
    pub fn census(&self) -> anyhow::Result<MapCensus> {
        // A second descriptor of each map, with its capacity.
        let dup = |name: &str| -> anyhow::Result<(Map, usize)> {
            let map = match self.ebpf.map(name) {
                Some(Map::LruHashMap(m)) => m,
                Some(_) => bail!("map {name} is not an LRU hash"),
                None => bail!("map {name} missing (taken before the census)"),
            };
            let data = MapData::from_fd(map.fd().as_fd().try_clone_to_owned()?)?;
            let capacity = data.info()?.max_entries() as usize;
            Ok((Map::from_map_data(data)?, capacity))
        };
        let (flows, flow_capacity) = dup(names::FLOWS)?;
        let (auth_flows, auth_flow_capacity) = dup(names::AUTH_FLOWS)?;
        Ok(MapCensus {
            flows: BpfHashMap::try_from(flows)?,
            auth_flows: BpfHashMap::try_from(auth_flows)?,
            capacities: (flow_capacity, auth_flow_capacity),
        })
    }

    pub fn stats(&self) -> anyhow::Result<Stats> {
        let map = self
            .ebpf
            .map(names::STATS)
            .ok_or_else(|| anyhow!("map STATS missing"))?;
        let stats: PerCpuArray<_, u64> = PerCpuArray::try_from(map)?;
        let mut out = Vec::with_capacity(stat::COUNT as usize);
        for (i, name) in stat::NAMES.iter().enumerate() {
            let per_cpu = stats.get(&(i as u32), 0)?;
            out.push((*name, per_cpu.iter().sum()));
        }
        Ok(out)
    }

    /// The loaded programs and maps, for in-kernel tests (BPF_PROG_TEST_RUN) and benchmarks.
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    pub fn ebpf(&self) -> &Ebpf {
        &self.ebpf
    }
}

fn raise_memlock() {
    // Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; newer ones use memcg.
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit only reads the struct we pass.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) };
}

fn os_error(e: &(dyn std::error::Error + 'static)) -> Option<i32> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            if let Some(code) = io.raw_os_error() {
                return Some(code);
            }
        }
        cur = err.source();
    }
    None
}

fn privilege_hint(e: anyhow::Error, what: &str) -> anyhow::Error {
    let code = os_error(e.as_ref());
    let missing = check::missing_capabilities();
    // With every capability present, EACCES comes from the verifier, not from privileges.
    if matches!(code, Some(libc::EPERM) | Some(libc::EACCES)) && !missing.is_empty() {
        let which = missing.join(", ");
        return e.context(format!(
            "{what}: permission denied: ntlm-affinity needs {which}; run it as root or `setcap cap_bpf,cap_net_admin,cap_perfmon+ep $(which ntlm-affinity)`"
        ));
    }
    e.context(format!(
        "{what} failed (run `ntlm-affinity check` to see what this host lacks)"
    ))
}

/// The XDP attach failed because another program holds the interface's XDP slot.
fn xdp_slot_taken(e: &ProgramError) -> bool {
    let code = os_error(e);
    matches!(code, Some(libc::EBUSY) | Some(libc::EEXIST))
        || matches!(e, ProgramError::AlreadyAttached)
        || matches!(e, ProgramError::XdpError(XdpError::NetlinkError(_)) if code == Some(libc::EBUSY))
}

fn attach_error(e: ProgramError, iface: &str, what: &str) -> anyhow::Error {
    let code = os_error(&e);
    if what == "XDP" && xdp_slot_taken(&e) {
        return anyhow!(
            "interface {iface} already has an XDP program of someone else; ntlm-affinity does not replace it (drop `--ingress xdp` to track from tcx ingress instead, remove it with `ip link set dev {iface} xdp off`, or pick another interface)"
        );
    }
    if code.is_some() {
        return privilege_hint(anyhow!(e), &format!("attaching {what} to {iface}"));
    }
    anyhow!(e).context(format!("attaching {what} to {iface}"))
}

/// Counts the entries of the kernel's LRU maps, for the metrics. A walk is one system call
/// per entry (about half a second of a core for a full million), so it runs on a thread of
/// its own, now and then, never on the event loop; the census holds descriptors of its own.
pub struct MapCensus {
    flows: BpfHashMap<MapData, FlowId, FlowState>,
    auth_flows: BpfHashMap<MapData, FlowKey, AuthFlow>,
    capacities: (usize, usize),
}

/// Entries of `FLOWS` (flow directions) and `AUTH_FLOWS` (authenticated connections).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MapEntries {
    pub flows: u64,
    pub auth_flows: u64,
}

impl MapCensus {
    pub fn count(&self) -> anyhow::Result<MapEntries> {
        let mut auth_flows = 0;
        // A key deleted under the walk restarts it at the first key: stop at the capacity.
        for key in self.auth_flows.keys().take(self.capacities.1) {
            key?;
            auth_flows += 1;
        }
        Ok(MapEntries {
            flows: count_flows(&self.flows, self.capacities.0)? as u64,
            auth_flows,
        })
    }
}

/// Flow directions in `FLOWS`, at most `limit`; the blank entry (family 0) is not a flow.
fn count_flows<M: std::borrow::Borrow<MapData>>(
    flows: &BpfHashMap<M, FlowId, FlowState>,
    limit: usize,
) -> anyhow::Result<usize> {
    let mut n = 0;
    for key in flows.keys().take(limit.saturating_add(1)) {
        n += usize::from(key?.family != 0);
    }
    Ok(n.min(limit))
}

/// Userspace's side of the kernel's per-request identity check (docs/design.md, "The
/// identity check"): the correlator's [`AuthUpdate`]s written to `AUTH_FLOWS`.
pub struct AuthFlows {
    map: BpfHashMap<MapData, FlowKey, AuthFlow>,
    key: [u64; 2],
    /// Map writes that failed (the kernel then delivers every request: nothing is missed).
    pub failures: u64,
}

impl AuthFlows {
    /// The entry of one connection (request direction), as the kernel holds it now.
    pub fn get(&self, key: &FlowKey) -> Option<AuthFlow> {
        self.map.get(key, 0).ok()
    }

    pub fn apply(&mut self, update: &AuthUpdate) {
        let result = match update {
            AuthUpdate::Set {
                key,
                generation,
                identity: (words, len),
            } => self.map.insert(
                key,
                AuthFlow {
                    generation: *generation,
                    identity: identity::hash(&self.key, words, *len),
                    suppressed: 0,
                },
                0,
            ),
            AuthUpdate::Clear { key } => match self.map.remove(key) {
                Err(MapError::SyscallError(e))
                    if e.io_error.raw_os_error() == Some(libc::ENOENT) =>
                {
                    Ok(())
                }
                r => r,
            },
        };
        if result.is_err() {
            self.failures += 1;
        }
    }
}
