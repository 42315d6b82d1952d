//! [`WasmCluster`]: what every namespace's adapter of one worker process
//! shares — the component engine, the hub link, the inbound dispatcher — and
//! the handle for what socketioxide's API lacks: server-side emit (with and
//! without replies) and the server count.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::oneshot;
use tracing::{debug, warn};

use crate::adapter::{Completion, RequestValue};
use crate::link::ipc::WorkerStats;
use crate::link::worker::{Incoming, LinkOptions, LinkReceiver, LinkSender, WorkerEnv, WorkerLink};
use crate::runtime::artifact::WorkerComponent;
use crate::runtime::engine::{AdapterEngine, EngineOptions, Limits};
use crate::sioxide::packet::EncodedPacket;

use super::Error;

/// Settings of the adapter nodes of one process.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// Heartbeat interval (upstream default 5 s; `SIO_CLUSTER_HEARTBEAT_INTERVAL`).
    pub heartbeat_interval: Duration,
    /// A node silent for longer is dropped (10 s; `SIO_CLUSTER_HEARTBEAT_TIMEOUT`).
    pub heartbeat_timeout: Duration,
    /// Timeout of fetch-sockets, rooms and server-side emit (upstream 5 s).
    pub request_timeout: Duration,
    /// Largest adapter frame (`SIO_CLUSTER_MAX_FRAME`).
    pub max_frame_bytes: u32,
    /// Memory and CPU limits of each namespace's instance.
    pub limits: Limits,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            heartbeat_interval: Duration::from_millis(5_000),
            heartbeat_timeout: Duration::from_millis(10_000),
            request_timeout: Duration::from_millis(5_000),
            max_frame_bytes: crate::adapter::DEFAULT_MAX_FRAME_BYTES,
            limits: Limits::default(),
        }
    }
}

impl ClusterSettings {
    /// Defaults, with the heartbeat and frame settings the primary passed.
    /// Per-instance limits come from `SIO_CLUSTER_INSTANCE_MEMORY` and
    /// `SIO_CLUSTER_INSTANCE_CPU_MS` (`run --instance-memory/--instance-cpu-ms`).
    pub fn from_env(env: &WorkerEnv) -> Self {
        let limits = instance_limits(env.instance_memory, env.instance_cpu_ms);
        ClusterSettings {
            heartbeat_interval: env.heartbeat_interval,
            heartbeat_timeout: env.heartbeat_timeout,
            max_frame_bytes: u32::try_from(env.max_frame).unwrap_or(u32::MAX),
            limits,
            ..ClusterSettings::default()
        }
    }
}

/// Instance limits from a memory cap (bytes) and a CPU bound per call (ms);
/// unset values keep [`Limits::default`].
pub fn instance_limits(memory: Option<usize>, cpu_ms: Option<u64>) -> Limits {
    let mut limits = Limits::default();
    if let Some(m) = memory {
        limits.memory_bytes = m;
    }
    if let Some(ms) = cpu_ms {
        // The engine's epoch ticks every 10 ms.
        limits.cpu_ticks = ms.div_ceil(10).max(1);
    }
    limits
}

/// Counters of one process's adapters.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub frames_refused: AtomicU64,
    pub frames_unrouted: AtomicU64,
    pub link_errors: AtomicU64,
    pub traps: AtomicU64,
    pub bad_remote_data: AtomicU64,
    pub local_drops: AtomicU64,
}

/// A snapshot of [`WasmCluster::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClusterStats {
    /// Frames the adapter refused (malformed, oversize).
    pub frames_refused: u64,
    /// Frames for a namespace this process does not serve.
    pub frames_unrouted: u64,
    /// Frames that could not be handed to the hub link.
    pub link_errors: u64,
    /// Instance traps (each instance was replaced).
    pub traps: u64,
    /// Unusable data from another node (bad socket id, undecodable packet).
    pub bad_remote_data: u64,
    /// Packets socketioxide refused for a local socket (its buffer was full
    /// or it was closing).
    pub local_drops: u64,
}

/// A server-side event from another worker (`io.serverSideEmit`).
pub struct ServerEvent {
    /// Event name.
    pub event: String,
    /// Arguments after the event name.
    pub args: Vec<serde_json::Value>,
    /// Set when the sender waits for one answer from this worker.
    pub reply: Option<ServerReply>,
}

/// Answers one server-side event; dropping it without answering lets the
/// sender's request time out, as upstream.
pub struct ServerReply {
    pub(crate) space: Weak<dyn Space>,
    pub(crate) query: u64,
}

impl ServerReply {
    /// Sends the answer (any JSON-serializable value).
    pub fn send(self, value: &impl Serialize) -> Result<(), Error> {
        let text = serde_json::to_string(value).map_err(|e| Error::Encode(e.to_string()))?;
        let Some(space) = self.space.upgrade() else {
            return Err(Error::Closed);
        };
        space.reply(self.query, EncodedPacket::text(text).to_bytes())
    }
}

/// The error of a server-side emit with replies: the upstream message
/// (`timeout reached: missing N responses`) and the replies that came.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ServerEmitError {
    /// Upstream error text.
    pub message: String,
    /// Replies received before the error.
    pub responses: Vec<serde_json::Value>,
}

type Handler = Arc<dyn Fn(ServerEvent) + Send + Sync>;

/// One namespace's adapter, as the process-wide parts see it.
pub(crate) trait Space: Send + Sync {
    /// A message from the hub for this namespace.
    fn incoming(&self, msg: Incoming);
    /// Several frames for this namespace, in order (one component call).
    fn incoming_frames(&self, frames: Vec<bytes::Bytes>);
    /// Starts a server-side emit.
    fn server_side_emit(
        &self,
        packet: Vec<u8>,
        want_replies: bool,
    ) -> Result<Option<oneshot::Receiver<Completion>>, Error>;
    /// Answers a server-side event.
    fn reply(&self, query: u64, payload: Vec<u8>) -> Result<(), Error>;
    /// Live nodes of the namespace, this one included.
    fn server_count(&self) -> Result<u32, Error>;
    /// Sets what other workers' `fetchSockets()` shows of local socket `sid`.
    fn set_socket_info(&self, sid: &str, handshake: Vec<u8>, data: Vec<u8>);
    /// The namespace's figures for the primary's metrics.
    fn stats(&self) -> Option<SpaceStats>;
}

/// One namespace's figures (summed into a `WorkerStats` report).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SpaceStats {
    pub nodes: u64,
    pub sockets: u64,
    pub rooms: u64,
    pub pending_requests: u64,
    pub frames_in: u64,
    pub frames_rejected: u64,
    pub instance_restarts: u64,
}

pub(crate) struct Inner {
    pub engine: AdapterEngine,
    pub link: LinkSender,
    pub settings: ClusterSettings,
    pub start: Instant,
    pub counters: Counters,
    spaces: Mutex<HashMap<String, Weak<dyn Space>>>,
    handlers: Mutex<HashMap<String, Handler>>,
    /// Told of every local delivery once set ([`WasmCluster::meter_deliveries`]).
    pub slow: OnceLock<super::slow::SlowConsumers>,
}

/// What the namespaces of one worker process share: pass it to
/// `SocketIo::builder().with_adapter::<WasmClusterAdapter<_>>(cluster)`, and
/// keep a clone for server-side emit and the server count.
#[derive(Clone)]
pub struct WasmCluster {
    pub(crate) inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl WasmCluster {
    /// Attaches to the hub described by the environment the primary set
    /// (`sio-cluster-host run`) and loads the component: the primary's
    /// compiled artifact when it is usable, else the component of
    /// `SIO_CLUSTER_COMPONENT` or the embedded one, compiled here (see
    /// [`crate::runtime::artifact`]). The process exits with code 75 when
    /// the hub link closes (no orphan workers).
    pub async fn from_env(env: &WorkerEnv) -> Result<Self, Error> {
        let settings = ClusterSettings::from_env(env);
        let load = || {
            WorkerComponent::from_env()
                .load(EngineOptions::default())
                .map(|(engine, _)| engine)
        };
        Self::connect(env, LinkOptions::default(), load, settings).await
    }

    /// Attaches with explicit link options, engine and settings.
    pub async fn connect(
        env: &WorkerEnv,
        options: LinkOptions,
        engine: impl FnOnce() -> anyhow::Result<AdapterEngine>,
        settings: ClusterSettings,
    ) -> Result<Self, Error> {
        let engine = engine().map_err(|e| Error::Engine(format!("{e:#}")))?;
        let (link, rx) = WorkerLink::connect(env, options).await?;
        let cluster = Self::with_link(engine, link, rx, settings);
        if let Some(every) = env.stats_interval {
            tokio::spawn(report_stats(Arc::downgrade(&cluster.inner), every));
        }
        Ok(cluster)
    }

    /// Waits until no cluster request of this process waits for answers
    /// (fetch-sockets, server-side emit, broadcasts with acks), at most
    /// `timeout`; true when none does. For a graceful drain, before the
    /// namespaces close (closing fails what is still pending).
    pub async fn settle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.worker_stats().pending_requests == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until the hub link has written every queued frame, at most
    /// `timeout`; true when it has (before the process exits).
    pub async fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.inner.link.queued_bytes() > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    /// This process's adapter figures, summed over its namespaces: what it
    /// reports to the primary (`WorkerStats`) when `SIO_CLUSTER_STATS_INTERVAL`
    /// is set.
    pub fn worker_stats(&self) -> WorkerStats {
        let spaces: Vec<Arc<dyn Space>> = lock(&self.inner.spaces)
            .values()
            .filter_map(Weak::upgrade)
            .collect();
        let mut w = WorkerStats {
            namespaces: spaces.len() as u64,
            local_drops: self.inner.counters.local_drops.load(Ordering::Relaxed),
            link_errors: self.inner.counters.link_errors.load(Ordering::Relaxed),
            ..WorkerStats::default()
        };
        for s in spaces.iter().filter_map(|s| s.stats()) {
            w.nodes += s.nodes;
            w.sockets += s.sockets;
            w.rooms += s.rooms;
            w.pending_requests += s.pending_requests;
            w.frames_in += s.frames_in;
            w.frames_rejected += s.frames_rejected;
            w.instance_restarts += s.instance_restarts;
        }
        w
    }

    /// Runs over an open link (e.g. [`WorkerLink::connect_stream`] in tests).
    pub fn with_link(
        engine: AdapterEngine,
        link: LinkSender,
        rx: LinkReceiver,
        settings: ClusterSettings,
    ) -> Self {
        let inner = Arc::new(Inner {
            engine,
            link,
            settings,
            start: Instant::now(),
            counters: Counters::default(),
            spaces: Mutex::new(HashMap::new()),
            handlers: Mutex::new(HashMap::new()),
            slow: OnceLock::new(),
        });
        tokio::spawn(dispatch(Arc::downgrade(&inner), rx));
        WasmCluster { inner }
    }

    /// This worker's index (0-based), as the hub confirmed it.
    pub fn worker_index(&self) -> u32 {
        self.inner.link.worker_index()
    }

    /// The hub link (e.g. to report Engine.IO sessions for least-connection).
    pub fn link(&self) -> &LinkSender {
        &self.inner.link
    }

    /// Tells `slow` of every packet the adapters hand to local sockets,
    /// so that it can cut clients that do not keep up
    /// ([`super::slow`]). Only the first call counts.
    pub fn meter_deliveries(&self, slow: super::slow::SlowConsumers) {
        let _ = self.inner.slow.set(slow);
    }

    /// Counters of this process's adapters.
    pub fn stats(&self) -> ClusterStats {
        let c = &self.inner.counters;
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ClusterStats {
            frames_refused: r(&c.frames_refused),
            frames_unrouted: r(&c.frames_unrouted),
            link_errors: r(&c.link_errors),
            traps: r(&c.traps),
            bad_remote_data: r(&c.bad_remote_data),
            local_drops: r(&c.local_drops),
        }
    }

    /// Calls `handler` for every server-side event other workers emit on
    /// namespace `nsp`. It runs on the dispatcher: spawn for long work.
    pub fn on_server_event(
        &self,
        nsp: &str,
        handler: impl Fn(ServerEvent) + Send + Sync + 'static,
    ) {
        lock(&self.inner.handlers).insert(nsp.to_string(), Arc::new(handler));
    }

    fn space(&self, nsp: &str) -> Result<Arc<dyn Space>, Error> {
        lock(&self.inner.spaces)
            .get(nsp)
            .and_then(Weak::upgrade)
            .ok_or_else(|| Error::NoNamespace(nsp.to_string()))
    }

    /// `io.serverSideEmit(event, data)` on namespace `nsp`: every other
    /// worker's handler gets it; nothing comes back.
    pub fn server_side_emit(
        &self,
        nsp: &str,
        event: &str,
        data: &impl Serialize,
    ) -> Result<(), Error> {
        let packet = event_packet(event, data)?;
        self.space(nsp)?.server_side_emit(packet, false).map(|_| ())
    }

    /// `io.serverSideEmit(event, data, cb)`: one reply from every other
    /// worker, or [`ServerEmitError`] with the upstream text
    /// (`timeout reached: missing N responses`) after the request timeout.
    pub async fn server_side_emit_with_ack(
        &self,
        nsp: &str,
        event: &str,
        data: &impl Serialize,
    ) -> Result<Vec<serde_json::Value>, ServerEmitError> {
        let fail = |message: String| ServerEmitError {
            message,
            responses: Vec::new(),
        };
        let packet = event_packet(event, data).map_err(|e| fail(e.to_string()))?;
        let space = self.space(nsp).map_err(|e| fail(e.to_string()))?;
        let rx = space
            .server_side_emit(packet, true)
            .map_err(|e| fail(e.to_string()))?
            .ok_or_else(|| fail("no request started".into()))?;
        drop(space);
        let done = rx.await.map_err(|_| fail(Error::Closed.to_string()))?;
        let replies = match done.value {
            RequestValue::Replies(r) => r,
            _ => Vec::new(),
        };
        let mut responses = Vec::with_capacity(replies.len());
        for r in replies {
            match reply_value(&r) {
                Some(v) => responses.push(v),
                None => {
                    self.inner
                        .counters
                        .bad_remote_data
                        .fetch_add(1, Ordering::Relaxed);
                    warn!("unreadable server-side emit reply dropped");
                }
            }
        }
        match done.error {
            Some(message) => Err(ServerEmitError { message, responses }),
            None => Ok(responses),
        }
    }

    /// Live workers serving `nsp`, this one included (upstream `serverCount`).
    pub fn server_count(&self, nsp: &str) -> Result<u32, Error> {
        self.space(nsp)?.server_count()
    }

    /// What other workers' `fetchSockets()` (Rust or Node) shows of the local
    /// socket `sid` of namespace `nsp`: socket.io's `handshake` object and
    /// `socket.data`, each as JSON (`wit/interop.md` §4). socketioxide keeps
    /// neither where the adapter can read it, so the application sets them,
    /// e.g. on connect with [`handshake_json`]; a socket that never had them
    /// set is shown with both unknown (`{}`). Entries of sockets that left are
    /// pruned as the namespace's sockets come and go.
    pub fn set_socket_info(
        &self,
        nsp: &str,
        sid: &str,
        handshake: &serde_json::Value,
        data: &serde_json::Value,
    ) -> Result<(), Error> {
        let enc = |v: &serde_json::Value| {
            if v.is_null() {
                Ok(Vec::new())
            } else {
                serde_json::to_vec(v).map_err(|e| Error::Encode(e.to_string()))
            }
        };
        self.space(nsp)?
            .set_socket_info(sid, enc(handshake)?, enc(data)?);
        Ok(())
    }

    pub(crate) fn register(&self, nsp: &str, space: Weak<dyn Space>) {
        lock(&self.inner.spaces).insert(nsp.to_string(), space);
    }

    pub(crate) fn unregister(&self, nsp: &str) {
        lock(&self.inner.spaces).remove(nsp);
    }

    /// Milliseconds since this process's cluster started (the adapter's clock).
    pub(crate) fn now_ms(&self) -> u64 {
        u64::try_from(self.inner.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Hands a server-side event to the namespace's handler.
    pub(crate) fn server_event(&self, nsp: &str, packet: &[u8], reply: Option<ServerReply>) {
        let Some((event, args)) = parse_event(packet) else {
            self.inner
                .counters
                .bad_remote_data
                .fetch_add(1, Ordering::Relaxed);
            warn!(nsp, "unreadable server-side event dropped");
            return;
        };
        let handler = lock(&self.inner.handlers).get(nsp).cloned();
        match handler {
            Some(h) => h(ServerEvent { event, args, reply }),
            None => debug!(nsp, event, "server-side event without a handler"),
        }
    }
}

/// Sends a `WorkerStats` report every `every` until the cluster is gone.
async fn report_stats(inner: Weak<Inner>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let cluster = WasmCluster { inner };
        if let Err(e) = cluster.link().worker_stats(&cluster.worker_stats()) {
            debug!(error = %e, "worker stats not sent");
        }
    }
}

/// `["event", data]` as packet bytes.
fn event_packet(event: &str, data: &impl Serialize) -> Result<Vec<u8>, Error> {
    let text = serde_json::to_string(&(event, data)).map_err(|e| Error::Encode(e.to_string()))?;
    Ok(EncodedPacket::text(text).to_bytes())
}

fn parse_event(packet: &[u8]) -> Option<(String, Vec<serde_json::Value>)> {
    let p = EncodedPacket::from_bytes(packet).ok()?;
    let mut items: Vec<serde_json::Value> = serde_json::from_str(&p.text).ok()?;
    if items.is_empty() {
        return None;
    }
    let event = match items.remove(0) {
        serde_json::Value::String(s) => s,
        _ => return None,
    };
    Some((event, items))
}

fn reply_value(bytes: &[u8]) -> Option<serde_json::Value> {
    let p = EncodedPacket::from_bytes(bytes).ok()?;
    serde_json::from_str(&p.text).ok()
}

/// Most frames handed to the component in one call.
const MAX_BATCH: usize = 256;

/// Routes every message from the hub to its namespace's adapter. Frames
/// already queued are handed over in batches (one component call for a run
/// of frames of one namespace), in arrival order.
async fn dispatch(inner: Weak<Inner>, mut rx: LinkReceiver) {
    while let Some(first) = rx.recv().await {
        let Some(inner) = inner.upgrade() else { return };
        let cap = inner.settings.max_frame_bytes as usize;
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Incoming::Frame { nsp, frame, .. } => {
                    let mut frames = vec![frame];
                    let mut bytes = frames[0].len() + 4;
                    while frames.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Some(Incoming::Frame { nsp: n, frame, .. })
                                if n == nsp && bytes + frame.len() + 4 <= cap =>
                            {
                                bytes += frame.len() + 4;
                                frames.push(frame);
                            }
                            Some(other) => {
                                next = Some(other);
                                break;
                            }
                            None => break,
                        }
                    }
                    match space_of(&inner, &nsp) {
                        Some(s) => s.incoming_frames(frames),
                        None => unrouted(&inner, &nsp, frames.len()),
                    }
                }
                msg @ Incoming::NodeDown { .. } => {
                    let Incoming::NodeDown { nsp, .. } = &msg else {
                        continue;
                    };
                    match space_of(&inner, nsp) {
                        Some(s) => s.incoming(msg),
                        None => unrouted(&inner, &nsp.clone(), 1),
                    }
                    next = rx.try_recv();
                }
            }
        }
    }
    debug!("hub link closed, dispatcher stopped");
}

fn space_of(inner: &Inner, nsp: &str) -> Option<Arc<dyn Space>> {
    lock(&inner.spaces).get(nsp).and_then(Weak::upgrade)
}

fn unrouted(inner: &Inner, nsp: &str, n: usize) {
    inner
        .counters
        .frames_unrouted
        .fetch_add(n as u64, Ordering::Relaxed);
    debug!(nsp, "message for a namespace not served here");
}

/// socket.io's `handshake` object for a socketioxide socket, from its HTTP
/// request parts and the CONNECT auth (`wit/interop.md` §4): `headers`,
/// `time`, `address`, `xdomain`, `secure`, `issued`, `url`, `query`, `auth`.
/// The peer address is not in the request parts: pass it when known.
pub fn handshake_json(
    parts: &http::request::Parts,
    auth: &serde_json::Value,
    address: Option<std::net::SocketAddr>,
) -> serde_json::Value {
    use serde_json::{Map, Value};
    let mut headers = Map::new();
    for (name, value) in &parts.headers {
        if let Ok(v) = value.to_str() {
            headers.insert(name.as_str().to_string(), Value::String(v.to_string()));
        }
    }
    let mut query = Map::new();
    for pair in parts
        .uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        query.insert(k.to_string(), Value::String(v.to_string()));
    }
    let now = std::time::SystemTime::now();
    let issued = now
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let xdomain = parts.headers.contains_key(http::header::ORIGIN);
    serde_json::json!({
        "headers": headers,
        // socket.io has `Date.prototype.toString()` here; the HTTP date
        // form is as readable and as parseable by `new Date()`.
        "time": httpdate::fmt_http_date(now),
        "address": address.map(|a| a.ip().to_string()).unwrap_or_default(),
        "xdomain": xdomain,
        "secure": parts.uri.scheme_str() == Some("https"),
        "issued": issued,
        "url": parts.uri.to_string(),
        "query": query,
        "auth": auth,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_limits_from_the_environment_values() {
        assert_eq!(instance_limits(None, None), Limits::default());
        let l = instance_limits(Some(8 << 20), Some(250));
        assert_eq!((l.memory_bytes, l.cpu_ticks), (8 << 20, 25));
        assert_eq!(instance_limits(None, Some(1)).cpu_ticks, 1);
    }

    #[test]
    fn server_events_parse_and_bad_ones_are_refused() {
        let p = event_packet("ping", &serde_json::json!({"a": 1})).unwrap_or_default();
        let (event, args) = parse_event(&p).unwrap_or_default();
        assert_eq!(event, "ping");
        assert_eq!(args, vec![serde_json::json!({"a": 1})]);
        assert!(parse_event(b"junk").is_none());
        assert!(parse_event(&EncodedPacket::text("[1]").to_bytes()).is_none());
        assert!(parse_event(&EncodedPacket::text("[]").to_bytes()).is_none());
    }

    #[test]
    fn handshake_json_has_socket_io_fields() {
        let req = http::Request::builder()
            .uri("/socket.io/?EIO=4&transport=polling&x=1")
            .header("origin", "http://example.test")
            .header("user-agent", "t")
            .body(())
            .expect("request");
        let (parts, ()) = req.into_parts();
        let addr: std::net::SocketAddr = "127.0.0.1:4000".parse().expect("addr");
        let h = handshake_json(&parts, &serde_json::json!({"token": "a"}), Some(addr));
        assert_eq!(h["query"]["x"], "1");
        assert_eq!(h["query"]["EIO"], "4");
        assert_eq!(h["headers"]["user-agent"], "t");
        assert_eq!(h["xdomain"], true);
        assert_eq!(h["secure"], false);
        assert_eq!(h["address"], "127.0.0.1");
        assert_eq!(h["auth"]["token"], "a");
        assert!(h["issued"].as_u64().is_some_and(|t| t > 1_700_000_000_000));
        assert!(h["time"].as_str().is_some_and(|t| t.ends_with("GMT")));
        assert_eq!(h["url"], "/socket.io/?EIO=4&transport=polling&x=1");
    }
}
