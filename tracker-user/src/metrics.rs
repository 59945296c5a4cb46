//! Prometheus metrics of `run --metrics ADDR` (docs/metrics.md): a [`Snapshot`] of every
//! number the daemon keeps, taken by the event loop once a second, encoded on each scrape in
//! the Prometheus text format (0.0.4) by `prometheus-client` and served over HTTP by hyper.
//!
//! Counters are exported as the daemon counts them, not re-counted here, so a metric and the
//! `tracker_stats` record never disagree. No label carries a user, a client or a server
//! (cardinality: one series per class, scheme, cause or kernel counter).

use std::{
    convert::Infallible,
    fmt,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode, body::Incoming, header};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric as _, NoLabelSet, prometheus_text},
    metrics::{MetricType, counter::ConstCounter},
    registry::Registry,
};

use crate::{
    correlate::{self, verdict::Class},
    loader::{MapCensus, MapEntries},
    reassembly,
};

/// Everything a scrape reports, copied out of the daemon's state.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// The kernel's `STATS` counters by name.
    pub kernel: Vec<(&'static str, u64)>,
    pub auth_flow_write_failures: u64,
    pub records: u64,
    pub malformed_records: u64,
    pub messages: u64,
    pub undecodable_tokens: u64,
    pub reassembly: reassembly::Stats,
    pub correlation: correlate::Stats,
    pub connections: usize,
    pub open_challenges: usize,
    pub streams: usize,
    pub buffered_bytes: usize,
    pub output_written: u64,
    pub output_dropped: u64,
    pub output_queued: usize,
    pub flow_capacity: u32,
    pub auth_flow_capacity: u32,
    /// The last [`spawn_census`] count (none before the first walk ends).
    pub map_entries: Option<MapEntries>,
    pub ring_bytes: u32,
    /// Interfaces attached and not lost.
    pub interfaces: usize,
}

/// Where each kernel counter goes: `(metric, label name, label value)`. Every `STATS`
/// counter has a row (a unit test holds this), so none is left out of the metrics.
const KERNEL: &[(&str, &str, &str)] = &[
    ("kernel_segments", "result", "tracked"),
    ("kernel_segments", "result", "scanned"),
    ("kernel_segments", "result", "matched"),
    ("kernel_segments", "result", "continuations"),
    ("kernel_segments", "result", "plain_responses"),
    ("kernel_segments", "result", "http_heads"),
    ("kernel_segments", "result", "identity_match"),
    ("kernel_segments", "result", "identity_mismatch"),
    ("kernel_segments", "result", "responses_suppressed"),
    ("kernel_segments", "result", "closes"),
    ("kernel_segments", "result", "capture_truncated"),
    ("kernel_segments", "result", "parse_bail"),
    ("kernel_segments", "result", "unsupported"),
    ("kernel_segments", "result", "load_failed"),
    ("kernel_records", "result", "events"),
    ("kernel_records", "result", "ringbuf_full"),
    ("kernel_flow_entries", "change", "flows_created"),
    ("kernel_flow_entries", "change", "flows_reopened"),
    ("kernel_map_update_failures", "map", "flow_update_failed"),
];

/// One label of a sample.
type Label<'a> = [(&'a str, &'a str); 1];

/// The label value a kernel counter is exported under: its name, less the family's words.
fn kernel_label(name: &str) -> &str {
    match name {
        "events" => "delivered",
        "ringbuf_full" => "lost_ring_full",
        "flows_created" => "created",
        "flows_reopened" => "removed_by_syn",
        "flow_update_failed" => "flows",
        n => n,
    }
}

/// The collector behind the registry: encodes the latest snapshot.
#[derive(Debug)]
struct Exporter {
    snap: Arc<Mutex<Snapshot>>,
}

/// One metric family: a descriptor and one sample per label set.
fn family(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    ty: MetricType,
    rows: &[(&[(&str, &str)], u64)],
) -> fmt::Result {
    let mut m = e.encode_descriptor(name, help, None, ty)?;
    for (labels, v) in rows {
        let f = m.encode_family(labels)?;
        match ty {
            MetricType::Counter => ConstCounter::new(*v).encode(f)?,
            _ => {
                let mut f = f;
                f.encode_gauge(v)?
            }
        }
    }
    Ok(())
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> fmt::Result {
    family(e, name, help, MetricType::Counter, &[(&[], v)])
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> fmt::Result {
    family(e, name, help, MetricType::Gauge, &[(&[], v)])
}

impl Collector for Exporter {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        let s = match self.snap.lock() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        };
        encode_snapshot(&s, &mut e)
    }
}

fn encode_snapshot(s: &Snapshot, e: &mut DescriptorEncoder) -> fmt::Result {
    let version = [("version", env!("CARGO_PKG_VERSION"))];
    let mut info = e.encode_descriptor(
        "ntlm_affinity_build",
        "The running ntlm-affinity's version",
        None,
        MetricType::Info,
    )?;
    info.encode_info(&version)?;

    let c = &s.correlation;
    let classes: Vec<[(&str, &str); 2]> = Class::VIOLATIONS
        .iter()
        .map(|k| [("class", k.as_str()), ("action", "alert")])
        .collect();
    let rows: Vec<(&[(&str, &str)], u64)> = Class::VIOLATIONS
        .iter()
        .zip(&classes)
        .map(|(k, l)| (&l[..], c.alerts_of(*k)))
        .collect();
    family(
        e,
        "ntlm_affinity_alerts",
        "Violations reported, by class and the action taken",
        MetricType::Counter,
        &rows,
    )?;
    let causes: Vec<[(&str, &str); 2]> = c
        .alerts_by_cause
        .iter()
        .flat_map(|(k, by)| {
            by.keys()
                .map(|cause| [("class", k.as_str()), ("cause", *cause)])
        })
        .collect();
    let counts = c
        .alerts_by_cause
        .values()
        .flat_map(|by| by.values().copied());
    let rows: Vec<(&[(&str, &str)], u64)> = causes
        .iter()
        .zip(counts)
        .map(|(l, n)| (&l[..], n))
        .collect();
    family(
        e,
        "ntlm_affinity_alerts_by_cause",
        "Violations reported, by class and cause (none: a class without causes)",
        MetricType::Counter,
        &rows,
    )?;
    family(
        e,
        "ntlm_affinity_handshakes",
        "Handshakes answered, by scheme and outcome (failure: 401/407 or no status)",
        MetricType::Counter,
        &[
            (
                &[("scheme", "ntlm"), ("outcome", "success")],
                c.handshakes_ok,
            ),
            (
                &[("scheme", "ntlm"), ("outcome", "failure")],
                c.handshakes_failed,
            ),
            (
                &[("scheme", "kerberos"), ("outcome", "success")],
                c.kerberos_ok,
            ),
            (
                &[("scheme", "kerberos"), ("outcome", "failure")],
                c.kerberos_failed,
            ),
        ],
    )?;
    family(
        e,
        "ntlm_affinity_messages",
        "NTLM messages correlated, by MS-NLMP type",
        MetricType::Counter,
        &[
            (&[("type", "challenge")], c.challenges),
            (&[("type", "authenticate")], c.authenticates),
        ],
    )?;
    counter(
        e,
        "ntlm_affinity_auth_headers",
        "NTLM/Negotiate auth headers decoded (every message of every scheme)",
        s.messages,
    )?;
    counter(
        e,
        "ntlm_affinity_undecodable_tokens",
        "Auth header values that did not decode as NTLM or SPNEGO",
        s.undecodable_tokens,
    )?;

    let d = &c.handshake_seconds;
    let mut h = e.encode_descriptor(
        "ntlm_affinity_handshake_duration_seconds",
        "NTLM handshakes on one connection: from the Type-2 to the answer of its Type-3",
        None,
        MetricType::Histogram,
    )?;
    h.encode_histogram::<NoLabelSet>(d.sum_ns as f64 / 1e9, d.count(), &d.cumulative(), None)?;

    for fam in [
        "kernel_segments",
        "kernel_records",
        "kernel_flow_entries",
        "kernel_map_update_failures",
    ] {
        kernel_family(e, s, fam)?;
    }
    family(
        e,
        "ntlm_affinity_map_write_failures",
        "Writes of the daemon to a kernel map that failed",
        MetricType::Counter,
        &[(&[("map", "auth_flows")], s.auth_flow_write_failures)],
    )?;
    family(
        e,
        "ntlm_affinity_map_capacity",
        "Entries a kernel map holds at most (LRU beyond)",
        MetricType::Gauge,
        &[
            (&[("map", "flows")], u64::from(s.flow_capacity)),
            (&[("map", "auth_flows")], u64::from(s.auth_flow_capacity)),
        ],
    )?;
    if let Some(n) = s.map_entries {
        family(
            e,
            "ntlm_affinity_map_entries",
            "Entries in a kernel map, counted every 15 s by walking it",
            MetricType::Gauge,
            &[
                (&[("map", "flows")], n.flows),
                (&[("map", "auth_flows")], n.auth_flows),
            ],
        )?;
    }
    gauge(
        e,
        "ntlm_affinity_ring_buffer_bytes",
        "Size of the kernel-to-daemon ring buffer",
        u64::from(s.ring_bytes),
    )?;
    gauge(
        e,
        "ntlm_affinity_interfaces",
        "Interfaces attached and still present",
        s.interfaces as u64,
    )?;

    counter(
        e,
        "ntlm_affinity_records",
        "Kernel records read by the daemon",
        s.records,
    )?;
    counter(
        e,
        "ntlm_affinity_malformed_records",
        "Kernel records that did not parse",
        s.malformed_records,
    )?;
    let r = &s.reassembly;
    family(
        e,
        "ntlm_affinity_reassembly_losses",
        "HTTP heads the reassembly could not finish, by cause",
        MetricType::Counter,
        &[
            (&[("cause", "gap")], r.gaps),
            (&[("cause", "truncated")], r.truncated_heads),
            (&[("cause", "oversize")], r.oversize),
            (&[("cause", "stream_evicted")], r.evicted_streams),
            (&[("cause", "bytes_limit")], r.bytes_limit_drops),
        ],
    )?;
    family(
        e,
        "ntlm_affinity_evictions",
        "Daemon table entries dropped by their bound, by table",
        MetricType::Counter,
        &[
            (&[("table", "connections")], c.evicted_connections),
            (&[("table", "challenges")], c.evicted_challenges),
            (&[("table", "frontend")], c.evicted_frontend_entries),
        ],
    )?;
    family(
        e,
        "ntlm_affinity_tracked",
        "What the daemon holds now",
        MetricType::Gauge,
        &[
            (&[("what", "connections")], s.connections as u64),
            (&[("what", "open_challenges")], s.open_challenges as u64),
            (&[("what", "streams")], s.streams as u64),
            (&[("what", "buffered_bytes")], s.buffered_bytes as u64),
        ],
    )?;
    family(
        e,
        "ntlm_affinity_output_events",
        "Events for stdout: written, or dropped because stdout did not keep up",
        MetricType::Counter,
        &[
            (&[("result", "written")], s.output_written),
            (&[("result", "dropped")], s.output_dropped),
        ],
    )?;
    gauge(
        e,
        "ntlm_affinity_output_queue_events",
        "Events waiting for stdout",
        s.output_queued as u64,
    )
}

fn kernel_family(e: &mut DescriptorEncoder, s: &Snapshot, fam: &str) -> fmt::Result {
    let help = match fam {
        "kernel_segments" => "TCP segments of tracked flows, by what the kernel did with them",
        "kernel_records" => {
            "Records for the daemon: delivered, or lost because the ring buffer was full"
        }
        "kernel_flow_entries" => {
            "Flow table entries made (first auth header) or removed by a SYN (reused 5-tuple)"
        }
        _ => "Kernel map updates that failed",
    };
    let (labels, values): (Vec<Label>, Vec<u64>) = KERNEL
        .iter()
        .filter(|(f, _, _)| *f == fam)
        .map(|(_, label, name)| {
            let v = s
                .kernel
                .iter()
                .find(|(n, _)| n == name)
                .map_or(0, |(_, v)| *v);
            ([(*label, kernel_label(name))], v)
        })
        .unzip();
    let rows: Vec<(&[(&str, &str)], u64)> = labels
        .iter()
        .zip(values)
        .map(|(l, v)| (&l[..], v))
        .collect();
    family(
        e,
        &format!("ntlm_affinity_{fam}"),
        help,
        MetricType::Counter,
        &rows,
    )
}

/// The exposition of `snap`, as a scrape gets it.
pub fn render(snap: &Arc<Mutex<Snapshot>>) -> Result<String, fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Exporter {
        snap: Arc::clone(snap),
    }));
    let mut out = String::new();
    prometheus_text::encode(&mut out, &registry)?;
    Ok(out)
}

/// Scrapes served at once at most: more wait in the kernel's accept queue.
const MAX_CONNECTIONS: usize = 16;

/// Serves `/metrics` on `listener` until the runtime stops. A scraper that stalls is cut
/// after 10 s; failures of one connection never reach the daemon.
pub async fn serve(listener: tokio::net::TcpListener, snap: Arc<Mutex<Snapshot>>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            // Out of file descriptors and the like: try again shortly rather than spin.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let snap = Arc::clone(&snap);
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let snap = Arc::clone(&snap);
                async move { Ok::<_, Infallible>(respond(&req, &snap)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
            let _ = tokio::time::timeout(Duration::from_secs(10), conn).await;
            drop(permit);
        });
    }
}

fn respond(req: &Request<Incoming>, snap: &Arc<Mutex<Snapshot>>) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, ty: &str, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        if let Ok(v) = header::HeaderValue::from_str(ty) {
            r.headers_mut().insert(header::CONTENT_TYPE, v);
        }
        r
    };
    if req.uri().path() != "/metrics" {
        return reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "ntlm-affinity serves /metrics only\n".into(),
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET /metrics\n".into(),
        );
    }
    match render(snap) {
        Ok(body) => reply(StatusCode::OK, prometheus_text::CONTENT_TYPE, body),
        Err(_) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            "encoding the metrics failed\n".into(),
        ),
    }
}

/// How often [`spawn_census`] walks the maps.
const CENSUS_EVERY: Duration = Duration::from_secs(15);

/// Counts the kernel maps' entries every [`CENSUS_EVERY`] on a thread of its own (a walk of a
/// full map takes a core half a second) into the returned cell, until the cell is dropped.
/// A failed walk is said once on stderr and ends the census: the metric then goes away
/// rather than going stale.
pub fn spawn_census(census: MapCensus) -> anyhow::Result<Arc<Mutex<Option<MapEntries>>>> {
    let cell = Arc::new(Mutex::new(None));
    let shared = Arc::clone(&cell);
    std::thread::Builder::new()
        .name("map-census".into())
        .spawn(move || {
            let set = |v| *shared.lock().unwrap_or_else(|p| p.into_inner()) = v;
            while Arc::strong_count(&shared) > 1 {
                match census.count() {
                    Ok(n) => set(Some(n)),
                    Err(e) => {
                        eprintln!("ntlm-affinity: counting the kernel maps' entries failed, ntlm_affinity_map_entries is no longer exported: {e:#}");
                        set(None);
                        return;
                    }
                }
                let until = std::time::Instant::now() + CENSUS_EVERY;
                while std::time::Instant::now() < until && Arc::strong_count(&shared) > 1 {
                    std::thread::sleep(Duration::from_millis(250));
                }
            }
        })?;
    Ok(cell)
}

/// `--metrics`: `ADDR:PORT`, or a bare port on loopback.
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    s.parse().map_err(|_| {
        format!("`{s}` is not ADDR:PORT or a port (e.g. 9464, 127.0.0.1:9464, [::1]:9464)")
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tracker_common::stat;

    fn sample() -> Snapshot {
        let mut s = Snapshot {
            kernel: stat::NAMES
                .iter()
                .enumerate()
                .map(|(i, n)| (*n, i as u64 + 1))
                .collect(),
            flow_capacity: 1000,
            map_entries: Some(MapEntries {
                flows: 12,
                auth_flows: 3,
            }),
            ..Snapshot::default()
        };
        s.correlation.alerts.insert(Class::ConnectionSplit, 3);
        s.correlation
            .alerts_by_cause
            .entry(Class::ConnectionSplit)
            .or_default()
            .insert("client_reconnect", 3);
        s.correlation.handshakes_ok = 7;
        s.correlation.handshake_seconds.observe(2_000_000);
        s
    }

    #[test]
    fn every_kernel_counter_is_exported_once() {
        for name in stat::NAMES {
            assert_eq!(
                KERNEL.iter().filter(|(_, _, n)| *n == name).count(),
                1,
                "{name}"
            );
        }
        assert_eq!(KERNEL.len(), stat::NAMES.len());
    }

    #[test]
    fn the_exposition_has_the_counts_and_is_prometheus_text() {
        let text = render(&Arc::new(Mutex::new(sample()))).unwrap();
        for line in [
            "ntlm_affinity_alerts_total{class=\"connection_split\",action=\"alert\"} 3",
            "ntlm_affinity_alerts_total{class=\"server_split\",action=\"alert\"} 0",
            "ntlm_affinity_alerts_by_cause_total{class=\"connection_split\",cause=\"client_reconnect\"} 3",
            "ntlm_affinity_handshakes_total{scheme=\"ntlm\",outcome=\"success\"} 7",
            "ntlm_affinity_handshake_duration_seconds_bucket{le=\"0.005\"} 1",
            "ntlm_affinity_handshake_duration_seconds_count 1",
            "ntlm_affinity_kernel_records_total{result=\"lost_ring_full\"} 7",
            "ntlm_affinity_map_capacity{map=\"flows\"} 1000",
            "ntlm_affinity_map_entries{map=\"auth_flows\"} 3",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        assert!(text.contains("# TYPE ntlm_affinity_alerts_total counter"));
        assert!(!text.contains("# EOF"), "Prometheus text, not OpenMetrics");
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(parse_listen("9464").unwrap().to_string(), "127.0.0.1:9464");
        assert_eq!(parse_listen("[::]:1").unwrap().to_string(), "[::]:1");
        assert!(parse_listen("localhost:x").is_err());
    }
}
