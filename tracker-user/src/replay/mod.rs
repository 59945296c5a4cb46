//! Offline replay of pcap / pcapng captures (no privileges): each packet is parsed
//! (`etherparse`; link types Ethernet, Linux cooked SLL and SLL2, raw IP), turned into the
//! records the kernel would have emitted by [`kernel_model`], and fed to the same
//! [`Pipeline`] as the live daemon.

pub mod kernel_model;

use std::{
    collections::BTreeMap,
    fmt,
    path::{Path, PathBuf},
    time::Instant,
};

use etherparse::{EtherType, NetSlice, SlicedPacket, TransportSlice};
use pcap_file::{
    DataLink, PcapError,
    pcap::PcapParser,
    pcapng::{
        Block, PcapNgParser,
        blocks::interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption},
    },
};
use tracker_common::FlowKey;

use crate::{
    pipeline::{Output, Pipeline},
    record::Record,
};
use kernel_model::{KernelModel, ModelConfig, Segment};

/// Why a replay stopped early. Every variant names the file; positions are byte offsets.
#[derive(Debug)]
pub enum ReplayError {
    Open {
        path: PathBuf,
        error: std::io::Error,
    },
    NotCapture {
        path: PathBuf,
        detail: String,
    },
    Truncated {
        path: PathBuf,
        offset: u64,
    },
    Corrupt {
        path: PathBuf,
        offset: u64,
        detail: String,
    },
    LinkType {
        path: PathBuf,
        offset: u64,
        link: String,
    },
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Open { path, error } => write!(f, "{}: cannot open: {error}", path.display()),
            Self::NotCapture { path, detail } => write!(
                f,
                "{}: offset 0: not a pcap or pcapng capture ({detail})",
                path.display()
            ),
            Self::Truncated { path, offset } => write!(
                f,
                "{}: offset {offset}: capture truncated (a record runs past the end of the file)",
                path.display()
            ),
            Self::Corrupt {
                path,
                offset,
                detail,
            } => write!(
                f,
                "{}: offset {offset}: corrupt capture: {detail}",
                path.display()
            ),
            Self::LinkType { path, offset, link } => write!(
                f,
                "{}: offset {offset}: unsupported link type {link} (supported: Ethernet, Linux cooked SLL and SLL2, raw IPv4/IPv6)",
                path.display()
            ),
        }
    }
}

impl std::error::Error for ReplayError {}

/// What a replay saw (the summary printed at the end).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Summary {
    pub file_bytes: u64,
    pub packets: u64,
    pub tcp_segments: u64,
    /// Packets whose headers could not be parsed (counted, never fatal).
    pub unparseable: u64,
    pub not_tcp: u64,
    pub records: u64,
    pub seconds: f64,
    pub verdicts: BTreeMap<&'static str, u64>,
    pub messages: u64,
}

impl Summary {
    pub fn packets_per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.packets as f64 / self.seconds
        } else {
            0.0
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    Ethernet,
    Sll,
    Sll2,
    RawIp,
}

fn link_of(d: DataLink) -> Option<Link> {
    match d {
        DataLink::ETHERNET => Some(Link::Ethernet),
        DataLink::LINUX_SLL => Some(Link::Sll),
        DataLink::LINUX_SLL2 => Some(Link::Sll2),
        DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => Some(Link::RawIp),
        _ => None,
    }
}

fn map_addr(ip: std::net::IpAddr) -> [u8; 16] {
    match ip {
        std::net::IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        std::net::IpAddr::V6(v6) => v6.octets(),
    }
}

/// What replay makes of one captured packet.
pub enum Parsed<'a> {
    Tcp(Segment<'a>),
    NotTcp,
    Bad,
}

/// One Ethernet frame as replay parses it: the input of the kernel model, for tests that run
/// the same frame through the loaded programs.
pub fn parse_ethernet(frame: &[u8]) -> Parsed<'_> {
    parse_packet(Link::Ethernet, frame)
}

fn parse_packet(link: Link, data: &[u8]) -> Parsed<'_> {
    let sliced = match link {
        Link::Ethernet => SlicedPacket::from_ethernet(data),
        Link::Sll => SlicedPacket::from_linux_sll(data),
        Link::Sll2 => {
            // SLL2: protocol type (2), reserved (2), ifindex (4), ARPHRD (2), packet type (1),
            // address length (1), address (8); then the network layer.
            let (Some(proto), Some(rest)) = (data.get(..2), data.get(20..)) else {
                return Parsed::Bad;
            };
            SlicedPacket::from_ether_type(EtherType(u16::from_be_bytes([proto[0], proto[1]])), rest)
        }
        Link::RawIp => SlicedPacket::from_ip(data),
    };
    let Ok(p) = sliced else {
        return Parsed::Bad;
    };
    let (src, dst, family) = match &p.net {
        Some(NetSlice::Ipv4(v4)) => (
            std::net::IpAddr::V4(v4.header().source_addr()),
            std::net::IpAddr::V4(v4.header().destination_addr()),
            4,
        ),
        Some(NetSlice::Ipv6(v6)) => (
            std::net::IpAddr::V6(v6.header().source_addr()),
            std::net::IpAddr::V6(v6.header().destination_addr()),
            6,
        ),
        _ => return Parsed::NotTcp,
    };
    let Some(TransportSlice::Tcp(tcp)) = &p.transport else {
        return Parsed::NotTcp;
    };
    let flags = tcp.header_slice().get(13).copied().unwrap_or(0);
    let payload = tcp.payload();
    Parsed::Tcp(Segment {
        key: FlowKey {
            src_addr: map_addr(src),
            dst_addr: map_addr(dst),
            src_port: tcp.source_port(),
            dst_port: tcp.destination_port(),
            family,
            _pad: [0; 3],
        },
        seq: tcp.sequence_number(),
        ack: tcp.acknowledgment_number(),
        flags,
        payload,
        payload_len: payload.len() as u32,
    })
}

/// Replays one capture file into `pipeline`, handing every output to `emit`. On a bad file
/// the verdicts up to the error are kept (the pipeline is finished either way) and the error
/// is returned beside the summary.
pub struct Replayer<'p> {
    pub pipeline: &'p mut Pipeline,
    pub model: KernelModel,
    pub progress: bool,
    summary: Summary,
    records: Vec<Record>,
    outputs: Vec<Output>,
}

impl<'p> Replayer<'p> {
    pub fn new(pipeline: &'p mut Pipeline, model: ModelConfig, progress: bool) -> Self {
        Self {
            pipeline,
            model: KernelModel::new(model),
            progress,
            summary: Summary::default(),
            records: Vec::new(),
            outputs: Vec::new(),
        }
    }

    fn packet(&mut self, link: Link, ts_ns: u64, data: &[u8], emit: &mut dyn FnMut(&Output)) {
        self.summary.packets += 1;
        match parse_packet(link, data) {
            Parsed::Tcp(seg) => {
                self.summary.tcp_segments += 1;
                self.model.segment(&seg, ts_ns, 0, &mut self.records);
            }
            Parsed::NotTcp => {
                self.summary.not_tcp += 1;
            }
            Parsed::Bad => {
                self.summary.unparseable += 1;
                self.model.parse_bail();
            }
        }
        for r in self.records.drain(..) {
            self.summary.records += 1;
            self.pipeline.push(r, &mut self.outputs);
        }
        self.drain(emit);
    }

    fn drain(&mut self, emit: &mut dyn FnMut(&Output)) {
        for o in self.outputs.drain(..) {
            match &o {
                Output::Verdict(v) => {
                    *self.summary.verdicts.entry(v.class.as_str()).or_default() += 1;
                }
                Output::Message(_) => self.summary.messages += 1,
            }
            emit(&o);
        }
    }

    /// Replays `path`; returns the summary and the error that stopped it, if any.
    pub fn run(
        mut self,
        path: &Path,
        emit: &mut dyn FnMut(&Output),
    ) -> (Summary, Option<ReplayError>) {
        let started = Instant::now();
        let err = self.read(path, emit).err();
        let mut outs = std::mem::take(&mut self.outputs);
        self.pipeline.finish(&mut outs);
        self.outputs = outs;
        self.drain(emit);
        self.summary.seconds = started.elapsed().as_secs_f64();
        (self.summary, err)
    }

    fn read(&mut self, path: &Path, emit: &mut dyn FnMut(&Output)) -> Result<(), ReplayError> {
        let p = path.to_path_buf();
        let file = std::fs::File::open(path).map_err(|error| ReplayError::Open {
            path: p.clone(),
            error,
        })?;
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        self.summary.file_bytes = len;
        let bar = if self.progress {
            let b = indicatif::ProgressBar::with_draw_target(
                Some(len),
                indicatif::ProgressDrawTarget::stderr_with_hz(4),
            );
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{spinner} replay [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta} {msg}",
            ) {
                b.set_style(style.progress_chars("=> "));
            }
            Some(b)
        } else {
            None
        };
        let mut feed = Feed::new(file, path);
        feed.fill_to(4)?;
        let magic = feed
            .data()
            .get(..4)
            .map(|m| u32::from_le_bytes([m[0], m[1], m[2], m[3]]));
        let result = match magic {
            Some(0xa1b2_c3d4 | 0xd4c3_b2a1 | 0xa1b2_3c4d | 0x4d3c_b2a1) => {
                self.pcap(&mut feed, emit, bar.as_ref())
            }
            Some(0x0a0d_0d0a) => self.pcapng(&mut feed, emit, bar.as_ref()),
            Some(m) => Err(ReplayError::NotCapture {
                path: p.clone(),
                detail: format!("magic number {m:#010x}"),
            }),
            None => Err(ReplayError::NotCapture {
                path: p.clone(),
                detail: format!("{len} bytes, too short for a capture header"),
            }),
        };
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        result
    }

    fn pcap(
        &mut self,
        feed: &mut Feed,
        emit: &mut dyn FnMut(&Output),
        bar: Option<&indicatif::ProgressBar>,
    ) -> Result<(), ReplayError> {
        let parser = feed.header(PcapParser::new)?;
        let header = parser.header();
        let Some(link) = link_of(header.datalink) else {
            return Err(ReplayError::LinkType {
                path: feed.path().to_path_buf(),
                offset: 20,
                link: format!("{:?} ({})", header.datalink, u32::from(header.datalink)),
            });
        };
        loop {
            if feed.data().is_empty() && !feed.fill()? {
                return Ok(());
            }
            let offset = feed.offset();
            match parser.next_packet(feed.data()) {
                Ok((rest, pkt)) => {
                    let used = feed.data().len() - rest.len();
                    let ts = u64::try_from(pkt.timestamp.as_nanos()).unwrap_or(u64::MAX);
                    self.packet(link, ts, &pkt.data, emit);
                    feed.consume(used);
                    if let Some(b) = bar
                        && self.summary.packets.is_multiple_of(4096)
                    {
                        b.set_position(offset);
                    }
                }
                Err(PcapError::IncompleteBuffer) => feed.more_of(offset)?,
                Err(e) => return Err(packet_error(feed.path(), offset, e)),
            }
        }
    }

    fn pcapng(
        &mut self,
        feed: &mut Feed,
        emit: &mut dyn FnMut(&Output),
        bar: Option<&indicatif::ProgressBar>,
    ) -> Result<(), ReplayError> {
        let mut parser = feed.header(PcapNgParser::new)?;
        loop {
            if feed.data().is_empty() && !feed.fill()? {
                return Ok(());
            }
            let offset = feed.offset();
            let (rest, block) = match parser.next_block(feed.data()) {
                Ok(v) => v,
                Err(PcapError::IncompleteBuffer) => {
                    feed.more_of(offset)?;
                    continue;
                }
                Err(e) => return Err(packet_error(feed.path(), offset, e)),
            };
            let used = feed.data().len() - rest.len();
            // pcap-file hands over the raw timestamp ticks (as if they were ns); their unit is
            // the interface's `if_tsresol`.
            let (iface, ticks, pkt): (u32, u64, &[u8]) = match &block {
                Block::EnhancedPacket(epb) => (
                    epb.interface_id,
                    u64::try_from(epb.timestamp.as_nanos()).unwrap_or(u64::MAX),
                    &epb.data,
                ),
                Block::SimplePacket(spb) => (0, 0, &spb.data),
                Block::Packet(pb) => (u32::from(pb.interface_id), pb.timestamp, &pb.data),
                _ => {
                    feed.consume(used);
                    continue;
                }
            };
            let Some(desc) = parser.interfaces().get(iface as usize) else {
                return Err(ReplayError::Corrupt {
                    path: feed.path().to_path_buf(),
                    offset,
                    detail: format!(
                        "packet names interface {iface}, which no interface description block declared"
                    ),
                });
            };
            let Some(link) = link_of(desc.linktype) else {
                return Err(ReplayError::LinkType {
                    path: feed.path().to_path_buf(),
                    offset,
                    link: format!("{:?} ({})", desc.linktype, u32::from(desc.linktype)),
                });
            };
            let ts = ticks_to_ns(ticks, desc);
            self.packet(link, ts, pkt, emit);
            feed.consume(used);
            if let Some(b) = bar
                && self.summary.packets.is_multiple_of(4096)
            {
                b.set_position(offset);
            }
        }
    }
}

/// The capture file read in bounded chunks, not mapped: a file that shrinks or is still being
/// written while it is replayed ends the replay with an error (or at its current end), never
/// with SIGBUS, and memory stays at the largest block, not the file.
pub(crate) struct Feed<'p> {
    file: std::fs::File,
    path: &'p Path,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// File offset of `buf[start]`.
    offset: u64,
}

/// Bytes read at a time; a block larger than this grows the buffer, up to `MAX_BLOCK`.
const CHUNK: usize = 1 << 20;
/// The largest block (pcapng) or record (pcap) read: a length field beyond it is corrupt.
const MAX_BLOCK: usize = 64 << 20;

impl<'p> Feed<'p> {
    fn new(file: std::fs::File, path: &'p Path) -> Self {
        Self {
            file,
            path,
            buf: vec![0; CHUNK],
            start: 0,
            end: 0,
            offset: 0,
        }
    }

    fn path(&self) -> &Path {
        self.path
    }

    fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    fn offset(&self) -> u64 {
        self.offset
    }

    fn consume(&mut self, n: usize) {
        let n = n.min(self.end - self.start);
        self.start += n;
        self.offset += n as u64;
    }

    /// Reads more bytes after what is buffered; false at the end of the file.
    fn fill(&mut self) -> Result<bool, ReplayError> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            if self.buf.len() >= MAX_BLOCK {
                return Err(ReplayError::Corrupt {
                    path: self.path.to_path_buf(),
                    offset: self.offset,
                    detail: format!("a block longer than {} MiB", MAX_BLOCK >> 20),
                });
            }
            self.buf.resize((self.buf.len() * 2).min(MAX_BLOCK), 0);
        }
        loop {
            match std::io::Read::read(&mut self.file, &mut self.buf[self.end..]) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.end += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) => {
                    return Err(ReplayError::Open {
                        path: self.path.to_path_buf(),
                        error,
                    });
                }
            }
        }
    }

    /// The file header, read with `parse` (reading more while it needs more).
    fn header<T>(
        &mut self,
        parse: impl Fn(&[u8]) -> Result<(&[u8], T), PcapError>,
    ) -> Result<T, ReplayError> {
        loop {
            let header = parse(self.data()).map(|(rest, p)| (self.data().len() - rest.len(), p));
            match header {
                Ok((used, parser)) => {
                    self.consume(used);
                    return Ok(parser);
                }
                Err(PcapError::IncompleteBuffer) if self.fill()? => {}
                Err(e) => return Err(header_error(self.path, e)),
            }
        }
    }

    /// Buffers at least `n` bytes unless the file is shorter.
    /// The parser needs more of the record at `offset`: reads on, or the file ends inside it
    /// (`Truncated`).
    fn more_of(&mut self, offset: u64) -> Result<(), ReplayError> {
        if self.fill()? {
            Ok(())
        } else {
            Err(packet_error(self.path, offset, PcapError::IncompleteBuffer))
        }
    }

    fn fill_to(&mut self, n: usize) -> Result<(), ReplayError> {
        while self.end - self.start < n && self.fill()? {}
        Ok(())
    }
}

/// A pcapng timestamp in ns: `ticks` in the interface's `if_tsresol` unit (10^-r s, or
/// 2^-r s with the top bit set; microseconds when the option is absent), plus its
/// `if_tsoffset` seconds.
fn ticks_to_ns(ticks: u64, desc: &InterfaceDescriptionBlock<'_>) -> u64 {
    let mut resol = 6u8;
    let mut offset_s = 0u64;
    for o in &desc.options {
        match o {
            InterfaceDescriptionOption::IfTsResol(r) => resol = *r,
            InterfaceDescriptionOption::IfTsOffset(s) => offset_s = *s,
            _ => {}
        }
    }
    let t = u128::from(ticks);
    let ns = if resol & 0x80 != 0 {
        let shift = u32::from(resol & 0x7f).min(127);
        (t * 1_000_000_000) >> shift
    } else if resol <= 9 {
        t * 10u128.pow(u32::from(9 - resol))
    } else {
        t / 10u128.pow(u32::from(resol.min(38) - 9))
    };
    let ns = ns.saturating_add(u128::from(offset_s) * 1_000_000_000);
    u64::try_from(ns).unwrap_or(u64::MAX)
}

fn header_error(path: &Path, e: PcapError) -> ReplayError {
    match e {
        PcapError::IncompleteBuffer => ReplayError::Truncated {
            path: path.to_path_buf(),
            offset: 0,
        },
        other => ReplayError::NotCapture {
            path: path.to_path_buf(),
            detail: other.to_string(),
        },
    }
}

fn packet_error(path: &Path, offset: u64, e: PcapError) -> ReplayError {
    match e {
        PcapError::IncompleteBuffer => ReplayError::Truncated {
            path: path.to_path_buf(),
            offset,
        },
        other => ReplayError::Corrupt {
            path: path.to_path_buf(),
            offset,
            detail: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests;
