//! The one path from kernel records to verdicts, used by `run` (ring buffer) and `replay`
//! (the kernel model over a capture): records → reassembly → HTTP heads → NTLM/SPNEGO
//! decoding → correlation → outputs.

use tracker_common::RecordHeader;
use tracker_ntlm::hash::ChallengeKeyHasher;

use crate::{
    correlate::{self, Correlator, Verdict},
    decode::{Decoded, Decoder},
    hashing::{self, KeyedSet},
    http::{self, Head},
    reassembly::{self, Piece, Reassembler},
    record::Record,
};

#[derive(Clone, Debug, Default)]
pub struct Config {
    pub correlate: correlate::Config,
    pub limits: reassembly::Limits,
    pub http: http::Options,
    /// Emit one record per NTLM/Negotiate message (`--messages`).
    pub messages: bool,
    /// Site-wide secret for `ntlm_affinity.challenge_key` (random per process when `None`).
    pub site_key: Option<Vec<u8>>,
}

/// One NTLM/Negotiate message (for `--messages`).
#[derive(Debug)]
pub struct Message {
    pub rec: RecordHeader,
    pub head: Head,
    pub token: Decoded,
}

#[derive(Debug)]
pub enum Output {
    Verdict(Box<Verdict>),
    Message(Box<Message>),
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Stats {
    pub records: u64,
    pub malformed_records: u64,
    pub messages: u64,
}

pub struct Pipeline {
    reasm: Reassembler,
    decoder: Decoder,
    corr: Correlator,
    messages: bool,
    pieces: Vec<Piece>,
    verdicts: Vec<Verdict>,
    tokens: Vec<Decoded>,
    last_tick_ns: u64,
    /// Flows (direction, generation) that already reported an undecodable token.
    undecodable_flows: KeyedSet<(tracker_common::FlowKey, u64)>,
    pub stats: Stats,
}

/// Flows remembered for the once-per-flow undecodable report; when full, the set starts
/// over (a flow may then report twice, never an unbounded set).
const MAX_UNDECODABLE_FLOWS: usize = 65_536;

const TICK_NS: u64 = 1_000_000_000;

impl Pipeline {
    pub fn new(cfg: Config) -> Self {
        let hasher = match &cfg.site_key {
            Some(k) => ChallengeKeyHasher::from_secret(k),
            None => {
                let mut key = [0u8; 32];
                if getrandom_fill(&mut key).is_err() {
                    key = [0x5a; 32];
                }
                ChallengeKeyHasher::new(key)
            }
        };
        let hash_tokens = !cfg.correlate.frontend_ports.is_empty();
        Self {
            reasm: Reassembler::new(cfg.limits.clone(), cfg.http.clone()),
            decoder: Decoder::new(hasher, hash_tokens),
            corr: Correlator::new(cfg.correlate.clone()),
            messages: cfg.messages,
            pieces: Vec::new(),
            verdicts: Vec::new(),
            tokens: Vec::new(),
            last_tick_ns: 0,
            undecodable_flows: hashing::set(),
            stats: Stats::default(),
        }
    }

    /// One raw ring-buffer record.
    pub fn push_bytes(
        &mut self,
        buf: &[u8],
        out: &mut Vec<Output>,
    ) -> Result<(), crate::record::RecordError> {
        // Read in place: the ring buffer's bytes are copied only where they must wait.
        match Record::parse_ref(buf) {
            Ok((h, payload)) => {
                self.push_ref(h, payload, out);
                Ok(())
            }
            Err(e) => {
                self.stats.malformed_records += 1;
                Err(e)
            }
        }
    }

    pub fn push(&mut self, rec: Record, out: &mut Vec<Output>) {
        self.push_ref(rec.header, &rec.payload, out);
    }

    /// [`Pipeline::push`] of a record's header and bytes held elsewhere.
    pub fn push_ref(&mut self, h: RecordHeader, payload: &[u8], out: &mut Vec<Output>) {
        self.stats.records += 1;
        let ts = h.timestamp_ns;
        let mut pieces = std::mem::take(&mut self.pieces);
        self.reasm.push_ref(h, payload, &mut pieces);
        for p in pieces.drain(..) {
            match p {
                Piece::Close(h) => self.corr.on_close(&h, &mut self.verdicts),
                Piece::Head { rec, head } => self.head(rec, head, out),
            }
        }
        self.pieces = pieces;
        self.flush(out);
        // Windows advance with the record clock, so replay and live agree.
        if ts >= self.last_tick_ns.saturating_add(TICK_NS) {
            self.tick(ts, out);
        }
    }

    fn head(&mut self, rec: RecordHeader, head: Head, out: &mut Vec<Output>) {
        let mut tokens = std::mem::take(&mut self.tokens);
        tokens.clear();
        for line in &head.auth {
            self.decoder.header(line.name, &line.value, &mut tokens);
        }
        self.stats.messages += tokens
            .iter()
            .filter(|t| t.auth.message_type().is_some())
            .count() as u64;
        self.corr.on_head(&rec, &head, &tokens, &mut self.verdicts);
        for t in &tokens {
            // Hostile or broken tokens: every one with --messages, else once per flow.
            let report = !self.messages
                && matches!(t.auth, crate::decode::Auth::Undecodable(_))
                && self.first_undecodable(&rec);
            if self.messages || report {
                out.push(Output::Message(Box::new(Message {
                    rec,
                    head: head.clone(),
                    token: t.clone(),
                })));
            }
        }
        self.tokens = tokens;
    }

    fn first_undecodable(&mut self, rec: &RecordHeader) -> bool {
        if self.undecodable_flows.len() >= MAX_UNDECODABLE_FLOWS {
            self.undecodable_flows.clear();
        }
        self.undecodable_flows.insert((rec.key, rec.generation))
    }

    fn flush(&mut self, out: &mut Vec<Output>) {
        out.extend(
            self.verdicts
                .drain(..)
                .map(|v| Output::Verdict(Box::new(v))),
        );
    }

    /// Expires windows at `now_ns` (record clock: kernel monotonic ns live, capture time in
    /// replay).
    pub fn tick(&mut self, now_ns: u64, out: &mut Vec<Output>) {
        self.last_tick_ns = now_ns;
        self.corr.tick(now_ns, &mut self.verdicts);
        self.reasm.expire(now_ns, self.corr.config().idle_ns);
        self.flush(out);
    }

    /// End of input: everything still pending is decided.
    pub fn finish(&mut self, out: &mut Vec<Output>) {
        self.corr.finish(&mut self.verdicts);
        self.flush(out);
    }

    /// Authenticated-connection changes for the kernel's identity check, in order.
    pub fn drain_auth_updates(&mut self) -> std::vec::Drain<'_, correlate::AuthUpdate> {
        self.corr.auth_updates.drain(..)
    }

    pub fn correlator(&self) -> &Correlator {
        &self.corr
    }

    pub fn reassembly(&self) -> &Reassembler {
        &self.reasm
    }

    pub fn undecodable(&self) -> u64 {
        self.decoder.undecodable
    }

    /// The daemon-side counters, for `tracker_stats` and the replay summary.
    /// The daemon's part of a metrics snapshot (the kernel's and the output's are added by
    /// the caller).
    pub fn metrics(&self, m: &mut crate::metrics::Snapshot) {
        m.records = self.stats.records;
        m.malformed_records = self.stats.malformed_records;
        m.messages = self.stats.messages;
        m.undecodable_tokens = self.decoder.undecodable;
        m.reassembly.clone_from(self.reasm.stats());
        m.correlation.clone_from(&self.corr.stats);
        m.connections = self.corr.connections();
        m.open_challenges = self.corr.open_challenges();
        m.streams = self.reasm.streams();
        m.buffered_bytes = self.reasm.buffered_bytes();
    }

    pub fn stats_json(&self) -> serde_json::Value {
        serde_json::json!({
            "records": self.stats.records,
            "malformed_records": self.stats.malformed_records,
            "messages": self.stats.messages,
            "undecodable_tokens": self.decoder.undecodable,
            "reassembly": self.reasm.stats(),
            "streams": self.reasm.streams(),
            "buffered_bytes": self.reasm.buffered_bytes(),
            "correlation": self.corr.stats,
            "connections": self.corr.connections(),
            "open_challenges": self.corr.open_challenges(),
        })
    }
}

pub(crate) fn getrandom_fill(buf: &mut [u8]) -> std::io::Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(buf)
}
