//! The differential harness: every frame goes through the loaded eBPF programs
//! (BPF_PROG_TEST_RUN, XDP for what the balancer receives, TC for what it sends) and through
//! replay's kernel model; the records, the flow entries of both directions, the
//! authenticated-connection entries and every counter must be equal after each frame.
//! Times differ by nature: timestamps and ifindex are not compared, generations by relation
//! (a one-to-one map between the kernel's and the model's).

use std::{collections::HashMap, path::Path};

use aya::{
    maps::{MapData, RingBuf},
    programs::{SchedClassifier, TestRun, TestRunOptions, Xdp},
};
use tracker_common::{DIR_INGRESS, FlowKey, FlowState, TC_ACT_UNSPEC, XDP_PASS, names};
use tracker_user::{
    correlate::AuthUpdate,
    endpoint::Backend,
    loader::{AuthFlows, Tracker, TrackerConfig},
    record::Record,
    replay::{
        Parsed,
        kernel_model::{KernelModel, ModelConfig},
        parse_ethernet,
    },
};

/// BPF_PROG_TEST_RUN takes at most a page (less head- and tailroom) of packet data.
const TEST_RUN_MAX: usize = 3400;

pub fn config() -> TrackerConfig {
    TrackerConfig {
        backends: vec![
            "198.18.1.0/24:80".parse::<Backend>().unwrap(),
            "[2001:db8:1::/48]:80".parse::<Backend>().unwrap(),
        ],
        frontend_ports: vec![8080],
        ..TrackerConfig::default()
    }
}

pub struct Differential {
    tracker: Tracker,
    ring: RingBuf<MapData>,
    auth: AuthFlows,
    model: KernelModel,
    now: u64,
    kernel_to_model: HashMap<u64, u64>,
    model_to_kernel: HashMap<u64, u64>,
    /// Frames run through both sides.
    pub frames: u64,
    /// Frames not compared: not TCP for replay, or too long for a test run (GRO super-packets
    /// in captures).
    pub skipped: u64,
    pub records: u64,
}

impl Differential {
    pub fn new(cfg: &TrackerConfig) -> Self {
        let mut tracker = Tracker::load(cfg).expect("load and verify the tracker programs");
        let ring = tracker.take_events().unwrap();
        let auth = tracker.take_auth_flows().unwrap();
        let model = KernelModel::new(ModelConfig {
            backends: cfg.backends.clone(),
            frontend_ports: cfg.frontend_ports.clone(),
            capture_len: cfg.capture_len,
            continuation_bytes: cfg.continuation_bytes,
            flow_capacity: cfg.flow_capacity as usize,
            auth_flow_capacity: cfg.auth_flow_capacity as usize,
            identity_key: tracker.identity_key(),
        });
        Self {
            tracker,
            ring,
            auth,
            model,
            now: 1_000_000,
            kernel_to_model: HashMap::new(),
            model_to_kernel: HashMap::new(),
            frames: 0,
            skipped: 0,
            records: 0,
        }
    }

    /// One frame through both sides; `Err` describes the first difference.
    pub fn frame(&mut self, frame: &[u8]) -> Result<(), String> {
        let Parsed::Tcp(seg) = parse_ethernet(frame) else {
            self.skipped += 1;
            return Ok(());
        };
        let ingress = self.model.direction(&seg.key) == DIR_INGRESS;
        if frame.len() > TEST_RUN_MAX {
            self.skipped += 1;
            return Ok(());
        }
        self.frames += 1;
        let verdict = self.run(ingress, frame);
        let pass = if ingress { XDP_PASS } else { TC_ACT_UNSPEC };
        if verdict != pass {
            return Err(format!("the program returned {verdict}, not pass"));
        }
        let mut model_records = Vec::new();
        self.model.segment(&seg, self.now, 0, &mut model_records);
        self.now += 1_000;
        let kernel_records = self.drain();
        if kernel_records.len() != model_records.len() {
            return Err(format!(
                "records: kernel {} {:?}, model {} {:?}",
                kernel_records.len(),
                kinds(&kernel_records),
                model_records.len(),
                kinds(&model_records)
            ));
        }
        for (k, m) in kernel_records.iter().zip(&model_records) {
            self.same_record(k, m)?;
            self.records += 1;
        }
        let key = seg.key;
        for k in [key, key.reverse()] {
            self.same_flow(&k)?;
            self.same_auth_flow(&k)?;
        }
        self.same_counters()
    }

    /// Marks the connection of `request_key` (balancer → server) authenticated for the
    /// client identity `xff`, on both sides, with each side's own generation of the flow.
    pub fn authenticate(&mut self, request_key: FlowKey, xff: &[u8]) {
        let identity = (
            tracker_common::identity::words(xff).unwrap(),
            xff.len() as u32,
        );
        if let Some(k) = self.kernel_flow(&request_key) {
            self.auth.apply(&AuthUpdate::Set {
                key: request_key,
                generation: k.generation,
                identity,
            });
        }
        if let Some(m) = self.model.flow(&request_key) {
            self.model.apply(&AuthUpdate::Set {
                key: request_key,
                generation: m.generation,
                identity,
            });
        }
    }

    pub fn clear(&mut self, request_key: FlowKey) {
        let u = AuthUpdate::Clear { key: request_key };
        self.auth.apply(&u);
        self.model.apply(&u);
    }

    /// Every frame of a pcap or pcapng capture (Ethernet).
    pub fn capture(&mut self, path: &Path) -> Result<(), String> {
        let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let frames = ethernet_frames(&data).map_err(|e| format!("{}: {e}", path.display()))?;
        for (n, frame) in frames.iter().enumerate() {
            self.frame(frame)
                .map_err(|e| format!("{} frame {}: {e}", path.display(), n + 1))?;
        }
        Ok(())
    }

    /// One BPF_PROG_TEST_RUN of the ingress (XDP) or egress (TC) program.
    fn run(&mut self, ingress: bool, frame: &[u8]) -> u32 {
        let opts = TestRunOptions {
            data_in: Some(frame),
            ..TestRunOptions::default()
        };
        let ebpf = self.tracker.ebpf_mut();
        let result = if ingress {
            let p: &mut Xdp = ebpf
                .program_mut(names::INGRESS_PROGRAM)
                .unwrap()
                .try_into()
                .unwrap();
            p.test_run(opts)
        } else {
            let p: &mut SchedClassifier = ebpf
                .program_mut(names::EGRESS_PROGRAM)
                .unwrap()
                .try_into()
                .unwrap();
            p.test_run(opts)
        };
        result.unwrap().return_value
    }

    fn drain(&mut self) -> Vec<Record> {
        let mut out = Vec::new();
        while let Some(item) = self.ring.next() {
            out.push(Record::parse(&item).unwrap());
        }
        out
    }

    /// Kernel and model generations must correspond one to one.
    fn same_generation(&mut self, kernel: u64, model: u64) -> bool {
        match (
            self.kernel_to_model.get(&kernel),
            self.model_to_kernel.get(&model),
        ) {
            (Some(&m), Some(&k)) => m == model && k == kernel,
            (None, None) => {
                self.kernel_to_model.insert(kernel, model);
                self.model_to_kernel.insert(model, kernel);
                true
            }
            _ => false,
        }
    }

    fn same_record(&mut self, k: &Record, m: &Record) -> Result<(), String> {
        let (kh, mh) = (&k.header, &m.header);
        let fields = |h: &tracker_common::RecordHeader| {
            (
                h.key,
                h.seq,
                h.ack,
                h.payload_len,
                h.captured_len,
                h.value_offset,
                h.kind,
                h.direction,
                h.header,
                h.scheme,
                h.token,
                h.tcp_flags,
            )
        };
        if fields(kh) != fields(mh) {
            return Err(format!(
                "record header differs:\n kernel {kh:?}\n model  {mh:?}"
            ));
        }
        if k.payload[..] != m.payload[..] {
            return Err(format!(
                "record payload differs ({} vs {} bytes)",
                k.payload.len(),
                m.payload.len()
            ));
        }
        if !self.same_generation(kh.generation, mh.generation) {
            return Err(format!(
                "record generation {} (kernel) does not correspond to {} (model)",
                kh.generation, mh.generation
            ));
        }
        Ok(())
    }

    fn kernel_flow(&self, key: &FlowKey) -> Option<FlowState> {
        self.tracker.flow(key).unwrap()
    }

    fn same_flow(&mut self, key: &FlowKey) -> Result<(), String> {
        let (k, m) = (self.kernel_flow(key), self.model.flow(key));
        match (k, m) {
            (None, None) => Ok(()),
            (Some(k), Some(m)) => {
                let f = |s: &FlowState| (s.flags, s.capture_from, s.capture_until);
                if f(&k) != f(&m) || !self.same_generation(k.generation, m.generation) {
                    return Err(format!("flow entry differs:\n kernel {k:?}\n model  {m:?}"));
                }
                Ok(())
            }
            (k, m) => Err(format!("flow entry: kernel {k:?}, model {m:?}")),
        }
    }

    fn same_auth_flow(&mut self, key: &FlowKey) -> Result<(), String> {
        let k = self.auth.get(key);
        let m = self.model.auth_flow(key);
        match (k, m) {
            (None, None) => Ok(()),
            (Some(k), Some(m))
                if (k.identity, k.suppressed) == (m.identity, m.suppressed)
                    && self.same_generation(k.generation, m.generation) =>
            {
                Ok(())
            }
            (k, m) => Err(format!("AUTH_FLOWS entry: kernel {k:?}, model {m:?}")),
        }
    }

    fn same_counters(&self) -> Result<(), String> {
        let kernel = self.tracker.stats().unwrap();
        for (i, (name, k)) in kernel.iter().enumerate() {
            let m = self.model.stats[i];
            if *k != m {
                return Err(format!("counter {name}: kernel {k}, model {m}"));
            }
        }
        Ok(())
    }
}

fn kinds(r: &[Record]) -> Vec<u8> {
    r.iter().map(|r| r.header.kind).collect()
}

/// The frames of a pcap or pcapng file whose link type is Ethernet.
pub fn ethernet_frames(data: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    use pcap_file::{DataLink, pcap::PcapReader, pcapng::PcapNgReader, pcapng::blocks::Block};
    let mut out = Vec::new();
    if data.starts_with(&[0x0a, 0x0d, 0x0d, 0x0a]) {
        let mut r = PcapNgReader::new(data).map_err(|e| e.to_string())?;
        let mut links = Vec::new();
        while let Some(block) = r.next_block() {
            match block.map_err(|e| e.to_string())? {
                Block::InterfaceDescription(i) => links.push(i.linktype),
                Block::EnhancedPacket(p)
                    if links.get(p.interface_id as usize) == Some(&DataLink::ETHERNET) =>
                {
                    out.push(p.data.to_vec());
                }
                _ => {}
            }
        }
    } else {
        let mut r = PcapReader::new(data).map_err(|e| e.to_string())?;
        if r.header().datalink != DataLink::ETHERNET {
            return Err("not an Ethernet capture".into());
        }
        while let Some(p) = r.next_packet() {
            out.push(p.map_err(|e| e.to_string())?.data.to_vec());
        }
    }
    Ok(out)
}
