//! Prometheus metrics of the primary (`run --metrics ADDR`, `demo --metrics
//! ADDR`, `hub --metrics ADDR`): `GET /metrics` on ADDR answers the Prometheus
//! text format (version 0.0.4), encoded by the `prometheus-client` crate.
//!
//! Nothing is counted for the metrics themselves: every figure is read at
//! scrape time from the counters the hub ([`crate::primary::hub::HubStats`]),
//! the sticky router ([`crate::primary::sticky::StickyStats`]) and the
//! supervisor ([`SupervisorStats`]) keep anyway (atomics), and from the last
//! `WorkerStats` report of each worker ([`crate::link::ipc::WorkerStats`],
//! sent every `SIO_CLUSTER_STATS_INTERVAL` ms, which the primary sets only
//! with `--metrics`). A primary nobody scrapes does no metrics work.
//!
//! Figures of several links of one worker index (a rolling restart runs the
//! old and the new process side by side) are added up under that index.
//! Worker-reported counters count from the worker process's start, so they
//! reset when it restarts, as any Prometheus counter of a restarted process.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tracing::{debug, warn};

use crate::link::ipc::WorkerStats;
use crate::primary::hub::Hub;
use crate::primary::sticky::Router;

/// Why a worker process ended, as counted in `sio_worker_exits_total{cause}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCause {
    /// It exited on its own with an exit code.
    Exited,
    /// A signal the supervisor did not send killed it (`kill -9`, OOM killer).
    Signaled,
    /// The hub dropped its link for a protocol error; the supervisor killed it.
    ProtocolError,
    /// The hub dropped its link at the queue limit; the supervisor killed it.
    QueueOverflow,
    /// A rolling restart replaced it (drained and stopped).
    Replaced,
    /// Stopped at shutdown.
    Shutdown,
}

impl ExitCause {
    /// Every cause, in the order of [`WorkerCounters::exits`].
    pub const ALL: [ExitCause; 6] = [
        ExitCause::Exited,
        ExitCause::Signaled,
        ExitCause::ProtocolError,
        ExitCause::QueueOverflow,
        ExitCause::Replaced,
        ExitCause::Shutdown,
    ];

    /// The `cause` label.
    pub fn label(self) -> &'static str {
        match self {
            ExitCause::Exited => "exited",
            ExitCause::Signaled => "signaled",
            ExitCause::ProtocolError => "protocol_error",
            ExitCause::QueueOverflow => "queue_overflow",
            ExitCause::Replaced => "replaced",
            ExitCause::Shutdown => "shutdown",
        }
    }

    fn slot(self) -> usize {
        self as usize
    }
}

/// Counters of one worker index (all its incarnations).
#[derive(Debug, Default)]
pub struct WorkerCounters {
    /// Processes started after the first one because the previous one ended
    /// (not counting rolling-restart replacements).
    pub restarts: AtomicU64,
    /// Processes started by rolling restarts.
    pub replacements: AtomicU64,
    /// Ended processes by cause (indexed like [`ExitCause::ALL`]).
    pub exits: [AtomicU64; 6],
}

impl WorkerCounters {
    /// Counts one ended process.
    pub fn exited(&self, cause: ExitCause) {
        self.exits[cause.slot()].fetch_add(1, Ordering::Relaxed);
    }
}

/// Counters of the supervisor (`run`).
#[derive(Debug, Default)]
pub struct SupervisorStats {
    /// One entry per worker index.
    pub workers: Vec<WorkerCounters>,
    /// Rolling restarts that replaced every worker.
    pub rolls_completed: AtomicU64,
    /// Rolling restarts stopped by a new worker that did not start.
    pub rolls_failed: AtomicU64,
    /// 1 while a rolling restart runs.
    pub roll_running: AtomicU64,
}

impl SupervisorStats {
    /// Counters for `n` workers.
    pub fn new(n: usize) -> SupervisorStats {
        SupervisorStats {
            workers: (0..n).map(|_| WorkerCounters::default()).collect(),
            ..SupervisorStats::default()
        }
    }
}

/// Where a scrape reads its figures.
#[derive(Clone)]
pub struct Sources {
    /// The hub (always there).
    pub hub: Hub,
    /// The sticky router (`run` only).
    pub router: Option<Arc<Router>>,
    /// The supervisor's counters (`run` only).
    pub supervisor: Option<Arc<SupervisorStats>>,
    /// The Redis bridge (`--redis` only).
    pub bridge: Option<crate::primary::bridge::BridgeProbe>,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources").finish_non_exhaustive()
    }
}

type Labels = Vec<(&'static str, String)>;

/// A `WorkerStats` field as a metric: name, help, type, getter.
type ReportedField = (
    &'static str,
    &'static str,
    MetricType,
    fn(&WorkerStats) -> u64,
);

/// Writes one metric family with one sample per label set.
fn family(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: impl IntoIterator<Item = (Labels, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, kind)?;
    for (labels, v) in samples {
        let fam = m.encode_family(&labels)?;
        match kind {
            MetricType::Counter => ConstCounter::new(v).encode(fam)?,
            _ => ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX)).encode(fam)?,
        }
    }
    Ok(())
}

fn one(v: u64) -> [(Labels, u64); 1] {
    [(Vec::new(), v)]
}

fn worker(i: u32) -> Labels {
    vec![("worker", i.to_string())]
}

fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

/// Per worker index: links up, queued bytes, announced nodes, summed reports.
#[derive(Default)]
struct PerWorker {
    links: u64,
    queued: u64,
    uids: u64,
    stats: Option<WorkerStats>,
}

impl Collector for Sources {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use MetricType::{Counter, Gauge};
        let e = &mut enc;
        let hub = self.hub.stats();
        let configured = self.supervisor.as_ref().map(|s| s.workers.len());
        let mut per: BTreeMap<u32, PerWorker> = BTreeMap::new();
        for i in 0..configured.unwrap_or(0) {
            per.entry(i as u32).or_default();
        }
        for w in self.hub.workers() {
            let p = per.entry(w.index).or_default();
            p.links += 1;
            p.queued += w.queued_bytes;
            p.uids += w.nodes as u64;
            if let Some(s) = w.stats {
                let t = p.stats.get_or_insert_with(WorkerStats::default);
                let (a, b) = (t.values(), s.values());
                let sum: Vec<u64> = a.iter().zip(b).map(|(x, y)| x.saturating_add(y)).collect();
                *t = WorkerStats::from_values(&sum);
            }
        }

        // Workers (supervisor and hub).
        if let Some(n) = configured {
            family(
                e,
                "sio_workers",
                "Workers configured (--workers).",
                Gauge,
                one(n as u64),
            )?;
        }
        family(
            e,
            "sio_workers_up",
            "Worker links attached to the hub (during a rolling restart, old and new).",
            Gauge,
            one(per.values().map(|p| p.links).sum()),
        )?;
        family(
            e,
            "sio_worker_up",
            "1 when a process of this worker index is attached to the hub.",
            Gauge,
            per.iter()
                .map(|(i, p)| (worker(*i), u64::from(p.links > 0))),
        )?;
        if let Some(sup) = &self.supervisor {
            let idx = || sup.workers.iter().enumerate();
            family(
                e,
                "sio_worker_restarts",
                "Worker processes started again after one ended (crash, kill, drop).",
                Counter,
                idx().map(|(i, w)| (worker(i as u32), load(&w.restarts))),
            )?;
            family(
                e,
                "sio_worker_replacements",
                "Worker processes started by rolling restarts.",
                Counter,
                idx().map(|(i, w)| (worker(i as u32), load(&w.replacements))),
            )?;
            family(
                e,
                "sio_worker_exits",
                "Worker processes that ended, by cause: exited (own exit code), signaled \
                 (a signal the primary did not send), protocol_error and queue_overflow \
                 (dropped by the hub, then killed), replaced (rolling restart), shutdown.",
                Counter,
                idx().flat_map(|(i, w)| {
                    ExitCause::ALL.iter().map(move |c| {
                        (
                            vec![("worker", i.to_string()), ("cause", c.label().to_string())],
                            load(&w.exits[c.slot()]),
                        )
                    })
                }),
            )?;
            family(
                e,
                "sio_rolling_restarts",
                "Rolling restarts (SIGHUP) by result: completed, failed (a new worker did \
                 not start; the old generation kept serving).",
                Counter,
                [
                    (
                        vec![("result", "completed".to_string())],
                        load(&sup.rolls_completed),
                    ),
                    (
                        vec![("result", "failed".to_string())],
                        load(&sup.rolls_failed),
                    ),
                ],
            )?;
            family(
                e,
                "sio_rolling_restart_running",
                "1 while a rolling restart runs.",
                Gauge,
                one(load(&sup.roll_running)),
            )?;
        }

        // The hub.
        let counters: [(&str, &str, u64); 12] = [
            (
                "sio_hub_links_attached",
                "Worker links that completed their Hello.",
                hub.attached,
            ),
            (
                "sio_hub_links_detached",
                "Worker links that went away after attaching.",
                hub.detached,
            ),
            (
                "sio_hub_frames_received",
                "Frames received from workers.",
                hub.frames_in,
            ),
            (
                "sio_hub_bytes_received",
                "Bytes of the frames received from workers.",
                hub.bytes_in,
            ),
            (
                "sio_hub_frames_delivered",
                "Frames queued towards workers (a publish counts once per receiver; NodeDown included).",
                hub.frames_out,
            ),
            (
                "sio_hub_bytes_delivered",
                "Bytes of the relayed frames queued towards workers.",
                hub.bytes_out,
            ),
            (
                "sio_hub_unknown_target",
                "Send frames dropped: no worker hosts the target node.",
                hub.unknown_target,
            ),
            (
                "sio_hub_uid_conflicts",
                "Frames dropped: their sender uid belongs to another worker.",
                hub.uid_conflicts,
            ),
            (
                "sio_hub_node_down",
                "NodeDown frames sent (fast leave of the nodes of a closed link).",
                hub.node_down,
            ),
            (
                "sio_hub_protocol_errors",
                "Worker links dropped for a malformed or oversize frame.",
                hub.protocol_errors,
            ),
            (
                "sio_hub_auth_failures",
                "Links refused: wrong token or version, no Hello.",
                hub.auth_failures,
            ),
            (
                "sio_hub_queue_overflows",
                "Worker links dropped because their outgoing queue passed --max-queued-bytes.",
                hub.queue_overflows,
            ),
        ];
        for (name, help, v) in counters {
            family(e, name, help, Counter, one(v))?;
        }
        family(
            e,
            "sio_hub_frames_relayed",
            "Frames relayed, by kind: publish (to every other worker), send (to one node).",
            Counter,
            [
                (vec![("kind", "publish".to_string())], hub.published),
                (vec![("kind", "send".to_string())], hub.sent),
            ],
        )?;
        family(
            e,
            "sio_hub_worker_stats_reports",
            "WorkerStats reports received from workers.",
            Counter,
            one(hub.worker_stats),
        )?;
        family(
            e,
            "sio_hub_queued_bytes",
            "Bytes queued towards the worker and not yet written to its link.",
            Gauge,
            per.iter().map(|(i, p)| (worker(*i), p.queued)),
        )?;
        family(
            e,
            "sio_hub_worker_nodes",
            "Adapter nodes (namespaces) the worker announced on its link.",
            Gauge,
            per.iter().map(|(i, p)| (worker(*i), p.uids)),
        )?;

        // The sticky router.
        if let Some(router) = &self.router {
            let st = router.stats();
            family(
                e,
                "sio_http_connections",
                "Client connections accepted on the public port.",
                Counter,
                one(load(&st.connections)),
            )?;
            family(
                e,
                "sio_http_requests",
                "HTTP requests received on the public port (handed-off WebSockets included).",
                Counter,
                one(load(&st.requests)),
            )?;
            family(
                e,
                "sio_http_responses",
                "Responses to clients by status class (101 of upgrades and handoffs is 1xx).",
                Counter,
                ["1xx", "2xx", "3xx", "4xx", "5xx"]
                    .iter()
                    .enumerate()
                    .map(|(k, class)| {
                        (
                            vec![("class", class.to_string())],
                            load(&st.status_classes[k]),
                        )
                    }),
            )?;
            family(
                e,
                "sio_http_routed",
                "Requests routed, by how: sid (a known session), balanced (a new session, or an unknown sid).",
                Counter,
                [
                    (vec![("by", "sid".to_string())], load(&st.by_sid)),
                    (
                        vec![("by", "balanced".to_string())],
                        load(&st.requests).saturating_sub(load(&st.by_sid)),
                    ),
                ],
            )?;
            let more: [(&str, &str, u64); 7] = [
                (
                    "sio_http_unknown_sid",
                    "Requests with a sid the primary does not know (balanced instead).",
                    load(&st.unknown_sid),
                ),
                (
                    "sio_http_no_worker",
                    "Requests answered 503: no live worker.",
                    load(&st.no_worker),
                ),
                (
                    "sio_http_upstream_errors",
                    "Requests answered 502: worker unreachable or reset.",
                    load(&st.upstream_errors),
                ),
                (
                    "sio_http_bad_requests",
                    "Requests answered 400 for a malformed body found while forwarding it.",
                    load(&st.bad_requests),
                ),
                (
                    "sio_http_upgrades",
                    "WebSocket upgrades spliced through the primary.",
                    load(&st.upgrades),
                ),
                (
                    "sio_http_handoffs",
                    "WebSocket connections handed to their worker (SCM_RIGHTS).",
                    load(&st.handoffs),
                ),
                (
                    "sio_http_handoff_failures",
                    "Handoffs that failed (the connection was proxied instead).",
                    load(&st.handoff_failures),
                ),
            ];
            for (name, help, v) in more {
                family(e, name, help, Counter, one(v))?;
            }
            family(
                e,
                "sio_http_sessions",
                "Engine.IO sessions the router maps to a worker.",
                Gauge,
                one(router.session_count() as u64),
            )?;
            family(
                e,
                "sio_http_sessions_learnt",
                "Sessions learnt, by how: sniffed (polling handshake response), reported (by the worker).",
                Counter,
                [
                    (
                        vec![("how", "sniffed".to_string())],
                        load(&st.sniffed_sessions),
                    ),
                    (
                        vec![("how", "reported".to_string())],
                        load(&st.reported_sessions),
                    ),
                ],
            )?;
        }

        // The Redis bridge.
        if let Some(bridge) = &self.bridge {
            let (peers, nodes) = bridge.peers();
            family(
                e,
                "sio_redis_link_up",
                "1 while the primary's Redis link is up.",
                Gauge,
                one(u64::from(bridge.up())),
            )?;
            family(
                e,
                "sio_redis_queued_bytes",
                "Bytes queued towards Redis or in PUBLISH pipelines not yet answered.",
                Gauge,
                one(bridge.queued_bytes() as u64),
            )?;
            family(
                e,
                "sio_redis_peers",
                "Other primaries this one hears from through Redis.",
                Gauge,
                one(peers as u64),
            )?;
            family(
                e,
                "sio_redis_peer_nodes",
                "Adapter nodes those primaries host.",
                Gauge,
                one(nodes as u64),
            )?;
            for (field, help, v) in bridge.stats().fields() {
                family(
                    e,
                    &format!("sio_redis_{field}"),
                    help.trim(),
                    Counter,
                    one(v),
                )?;
            }
        }

        // What workers report (WorkerStats).
        let reported = || {
            per.iter()
                .filter_map(|(i, p)| p.stats.map(|s| (*i, s)))
                .collect::<Vec<_>>()
        };
        let fields: [ReportedField; 10] = [
            (
                "sio_worker_adapter_namespaces",
                "Adapter instances (namespaces) in the worker.",
                Gauge,
                |s| s.namespaces,
            ),
            (
                "sio_worker_adapter_nodes",
                "Other live nodes the worker's instances know, summed over its namespaces.",
                Gauge,
                |s| s.nodes,
            ),
            (
                "sio_worker_adapter_sockets",
                "Local sockets of the worker, summed over its namespaces.",
                Gauge,
                |s| s.sockets,
            ),
            (
                "sio_worker_adapter_rooms",
                "Local rooms of the worker (a socket's own room included), summed over its namespaces.",
                Gauge,
                |s| s.rooms,
            ),
            (
                "sio_worker_adapter_pending_requests",
                "Cluster requests of the worker waiting for answers.",
                Gauge,
                |s| s.pending_requests,
            ),
            (
                "sio_worker_adapter_frames_in",
                "Adapter frames the worker's instances accepted.",
                Counter,
                |s| s.frames_in,
            ),
            (
                "sio_worker_adapter_frames_rejected",
                "Adapter frames the worker's instances refused (malformed, oversize).",
                Counter,
                |s| s.frames_rejected,
            ),
            (
                "sio_worker_adapter_local_drops",
                "Packets the worker's server refused for a local socket (its buffer full).",
                Counter,
                |s| s.local_drops,
            ),
            (
                "sio_worker_adapter_instance_restarts",
                "Adapter instances replaced after a trap.",
                Counter,
                |s| s.instance_restarts,
            ),
            (
                "sio_worker_adapter_link_errors",
                "Adapter frames the worker could not hand to its hub link (queue full or link closed).",
                Counter,
                |s| s.link_errors,
            ),
        ];
        let reports = reported();
        for (name, help, kind, get) in fields {
            family(
                e,
                name,
                help,
                kind,
                reports.iter().map(|(i, s)| (worker(*i), get(s))),
            )?;
        }
        Ok(())
    }
}

/// The Prometheus `Content-Type` of [`render`]'s text.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The metrics text at this instant.
pub fn render(sources: &Sources) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(sources.clone()));
    let mut out = String::with_capacity(16 * 1024);
    if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry) {
        warn!(error = %e, "metrics encoding failed");
    }
    out
}

fn respond(
    status: StatusCode,
    ctype: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(ctype),
    );
    r
}

async fn handle(
    sources: Arc<Sources>,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() != "/metrics" {
        return Ok(respond(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found: the metrics are at /metrics\n",
        ));
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "method not allowed\n",
        ));
    }
    Ok(respond(StatusCode::OK, CONTENT_TYPE, render(&sources)))
}

/// Binds the metrics listener (before anything else starts, so that a bad
/// address stops the primary with a clear error).
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

/// Serves `GET /metrics` on `listener` until the task is aborted.
pub async fn serve(listener: tokio::net::TcpListener, sources: Sources) {
    let sources = Arc::new(sources);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                warn!(error = %e, "metrics accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let sources = sources.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(sources.clone(), req));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), svc);
            if let Err(e) = conn.await {
                debug!(%peer, error = %e, "metrics connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::primary::hub::HubConfig;

    #[test]
    fn a_hub_alone_renders_its_counters_in_the_text_format() {
        let hub = Hub::new(HubConfig::default(), None);
        let text = render(&Sources {
            hub,
            router: None,
            supervisor: None,
            bridge: None,
        });
        assert!(
            text.contains("# TYPE sio_hub_frames_received_total counter"),
            "{text}"
        );
        assert!(text.contains("sio_hub_frames_received_total 0\n"), "{text}");
        assert!(text.contains("sio_workers_up 0\n"), "{text}");
        assert!(!text.contains("sio_http_"), "no router, no http figures");
    }

    #[test]
    fn supervisor_counters_have_one_sample_per_worker_and_cause() {
        let hub = Hub::new(HubConfig::default(), None);
        let sup = Arc::new(SupervisorStats::new(2));
        sup.workers[1].restarts.fetch_add(3, Ordering::Relaxed);
        sup.workers[1].exited(ExitCause::Signaled);
        let text = render(&Sources {
            hub,
            router: None,
            supervisor: Some(sup),
            bridge: None,
        });
        assert!(
            text.contains("sio_worker_restarts_total{worker=\"1\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("sio_worker_exits_total{worker=\"1\",cause=\"signaled\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("sio_worker_up{worker=\"0\"} 0\n"), "{text}");
        assert!(text.contains("sio_workers 2\n"), "{text}");
    }
}
