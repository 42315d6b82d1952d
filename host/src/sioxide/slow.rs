//! Slow consumers: a cap on the bytes waiting to be written to one client,
//! and a time limit for a client that takes nothing while bytes wait for it.
//!
//! **Why.** socketioxide 0.18.9 (engineioxide 0.17.9) queues each client's
//! outgoing packets in a bounded channel counted in *packets*
//! (`max_buffer_size`), never in bytes, and shows neither the queue's length
//! nor when a packet leaves it. A client that stops reading while its room
//! receives large packets therefore holds up to `max_buffer_size` packets of
//! any size (the demo's 65 536 packets of 10 KiB are 640 MiB). Engine.IO's
//! heartbeat ends such a session only after `ping_interval + ping_timeout`
//! (45 s by default), because its ping waits behind the backlog.
//!
//! **How bytes are counted without a hook.** Two sides of one client are
//! measured and compared:
//!
//! * *enqueued* — the adapter ([`super::WasmClusterAdapter`], once
//!   [`super::WasmCluster::meter_deliveries`] is called) adds the size of
//!   every packet it hands to socketioxide for a local socket (broadcasts and
//!   broadcasts with acks, local or from other workers; volatile packets are
//!   left out: socketioxide keeps at most one batch of them per client);
//! * *written* — for WebSocket clients, [`MeteredIo`] wraps the client's TCP
//!   stream and counts the bytes the kernel accepted; for HTTP long-polling
//!   clients, [`MeteredService`] counts the body of each `GET` poll response
//!   (the packets engineioxide took from the queue for it).
//!
//! `queued = enqueued − written`, both since the last moment the client was
//! known to be caught up: for WebSocket, a flush of the stream after which
//! the writer stayed idle for [`IDLE_PROOF`] (engineioxide flushes when its
//! queue is drained; a flush forced by tungstenite's own buffer is followed
//! at once by more writes and does not count); for polling, a poll response
//! under half of `max_payload` (the encoder ran out of packets). Framing and
//! packets sent outside the adapter (acks, pings) count as written only, so
//! the estimate errs low by their size since the last catch-up, never high:
//! a client that keeps up is never cut.
//!
//! **Policy** ([`SlowPolicy`], defaults in its docs, environment
//! `SIO_CLIENT_MAX_BYTES` and `SIO_CLIENT_STALL_MS`): a client whose queued
//! bytes pass `max_queued_bytes`, or that has had bytes queued and made no
//! progress (nothing written, no catch-up) for `stall_timeout`, is
//! disconnected: its sockets are disconnected from their namespaces
//! (socket.io reason `server namespace disconnect` on the server side), then
//! its WebSocket stream fails every further read and write, which closes the
//! Engine.IO session and frees its queue at once. Each drop is counted
//! ([`SlowStats`]) and logged at powers of two of each count. Nothing
//! happens to other clients' deliveries: the check runs on the delivering
//! path only to flag the client, the disconnect runs on its own task.
//!
//! Use: [`SlowConsumers::new`] in the runtime, `cluster.meter_deliveries`,
//! per accepted connection [`SlowConsumers::connection`] (the wrapped stream
//! and service), [`SlowConsumers::register`] in each namespace's connect
//! handler. `src/sioxide/demo.rs` does all four.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use socketioxide::adapter::Adapter;
use socketioxide::extract::SocketRef;
use socketioxide_core::packet::{Packet, PacketData};
use socketioxide_core::{Sid, Value};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tracing::{debug, warn};

/// A flush followed by this much writer silence proves the queue was empty.
pub const IDLE_PROOF: Duration = Duration::from_millis(5);

/// The per-client limits. Defaults: **16 MiB** queued, **20 s** without
/// progress (below Engine.IO's 45 s heartbeat bound), checked every 250 ms
/// and on every delivery that passes the cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlowPolicy {
    /// Bytes queued for one client (all its namespaces) before it is cut.
    pub max_queued_bytes: u64,
    /// Time with bytes queued and no progress before it is cut; `None`: no
    /// time limit (Engine.IO's heartbeat still applies).
    pub stall_timeout: Option<Duration>,
    /// How often every client is checked.
    pub check_interval: Duration,
    /// Engine.IO's `max_payload` (a poll response under half of it means
    /// the client's queue was empty).
    pub max_payload: u64,
}

impl Default for SlowPolicy {
    fn default() -> Self {
        SlowPolicy {
            max_queued_bytes: 16 << 20,
            stall_timeout: Some(Duration::from_secs(20)),
            check_interval: Duration::from_millis(250),
            max_payload: 100_000,
        }
    }
}

impl SlowPolicy {
    /// The defaults, changed by `SIO_CLIENT_MAX_BYTES` (bytes) and
    /// `SIO_CLIENT_STALL_MS` (ms, `0` = no time limit). `None` when either
    /// is set but not a number, or `SIO_CLIENT_MAX_BYTES=0` (turns the
    /// policy off).
    pub fn from_env() -> Result<Option<SlowPolicy>, String> {
        let mut p = SlowPolicy::default();
        let num = |name: &str| -> Result<Option<u64>, String> {
            match std::env::var(name) {
                Err(_) => Ok(None),
                Ok(v) => v
                    .trim()
                    .parse::<u64>()
                    .map(Some)
                    .map_err(|_| format!("{name} must be a whole number, not {v:?}")),
            }
        };
        if let Some(b) = num("SIO_CLIENT_MAX_BYTES")? {
            if b == 0 {
                return Ok(None);
            }
            p.max_queued_bytes = b;
        }
        if let Some(ms) = num("SIO_CLIENT_STALL_MS")? {
            p.stall_timeout = (ms > 0).then(|| Duration::from_millis(ms));
        }
        Ok(Some(p))
    }
}

/// Why a client was cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlowReason {
    /// More than `max_queued_bytes` waited for it.
    Bytes(u64),
    /// Bytes waited and nothing moved for `stall_timeout`.
    Stalled(Duration),
}

impl std::fmt::Display for SlowReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SlowReason::Bytes(b) => write!(f, "{b} bytes queued, over the per-client cap"),
            SlowReason::Stalled(d) => {
                write!(f, "no progress for {} ms with bytes queued", d.as_millis())
            }
        }
    }
}

/// Counters of [`SlowConsumers`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SlowStats {
    /// Clients cut for their queued bytes.
    pub dropped_bytes: u64,
    /// Clients cut for making no progress.
    pub dropped_stalled: u64,
    /// Clients watched now.
    pub clients: u64,
    /// The largest queue seen on any client (bytes, estimate).
    pub max_queued_seen: u64,
}

fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What one client's transport achieved: bytes enqueued for it, bytes
/// written, and the last catch-up. One per WebSocket connection, one per
/// polling session.
#[derive(Debug, Default)]
pub struct ClientMeter {
    enqueued: AtomicU64,
    written: AtomicU64,
    sync_enqueued: AtomicU64,
    sync_written: AtomicU64,
    last_progress: AtomicU64,
    killed: AtomicBool,
    state: Mutex<MeterState>,
}

#[derive(Debug, Default)]
struct MeterState {
    /// A flush: (enqueued, written, when); a catch-up once the writer stays
    /// idle for [`IDLE_PROOF`].
    candidate: Option<(u64, u64, u64)>,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
}

impl ClientMeter {
    fn new() -> Arc<ClientMeter> {
        let m = ClientMeter::default();
        m.last_progress.store(now_ms(), Ordering::Relaxed);
        Arc::new(m)
    }

    /// Bytes waiting for the client (estimate, see the module docs).
    pub fn queued(&self) -> u64 {
        self.commit_if_idle(now_ms());
        let e = self
            .enqueued
            .load(Ordering::Relaxed)
            .saturating_sub(self.sync_enqueued.load(Ordering::Relaxed));
        let w = self
            .written
            .load(Ordering::Relaxed)
            .saturating_sub(self.sync_written.load(Ordering::Relaxed));
        e.saturating_sub(w)
    }

    fn sync(&self, e: u64, w: u64) {
        self.sync_enqueued.store(e, Ordering::Relaxed);
        self.sync_written.store(w, Ordering::Relaxed);
        self.last_progress.store(now_ms(), Ordering::Relaxed);
    }

    fn commit_if_idle(&self, now: u64) {
        let mut st = lock(&self.state);
        if let Some((e, w, t)) = st.candidate
            && now.saturating_sub(t) >= IDLE_PROOF.as_millis() as u64
        {
            st.candidate = None;
            drop(st);
            self.sync(e, w);
        }
    }

    fn wrote(&self, n: usize) {
        if n == 0 {
            return;
        }
        // A write soon after a flush: the flush did not end a drained queue.
        self.commit_if_idle(now_ms());
        lock(&self.state).candidate = None;
        self.written.fetch_add(n as u64, Ordering::Relaxed);
        self.last_progress.store(now_ms(), Ordering::Relaxed);
    }

    fn flushed(&self) {
        let e = self.enqueued.load(Ordering::Relaxed);
        let w = self.written.load(Ordering::Relaxed);
        lock(&self.state).candidate = Some((e, w, now_ms()));
    }

    fn polled(&self, body: u64, drained: bool) {
        let w = self.written.fetch_add(body, Ordering::Relaxed) + body;
        if drained {
            let e = self.enqueued.load(Ordering::Relaxed);
            self.sync(e, w);
        } else {
            self.last_progress.store(now_ms(), Ordering::Relaxed);
        }
    }

    /// Makes every further read and write of a [`MeteredIo`] on this meter
    /// fail (and wakes the ones waiting).
    fn kill(&self) {
        self.killed.store(true, Ordering::Relaxed);
        let mut st = lock(&self.state);
        for w in [st.read_waker.take(), st.write_waker.take()]
            .into_iter()
            .flatten()
        {
            w.wake();
        }
    }

    fn is_killed(&self) -> bool {
        self.killed.load(Ordering::Relaxed)
    }
}

/// The request extension [`MeteredService`] adds: the meter of the
/// connection the request came on.
#[derive(Debug, Clone)]
pub struct ConnectionMeter(pub Arc<ClientMeter>);

/// A client's stream, counting what the kernel accepts; fails once its
/// client was cut.
#[derive(Debug)]
pub struct MeteredIo<T> {
    inner: T,
    meter: Arc<ClientMeter>,
}

fn cut() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "slow consumer disconnected",
    )
}

impl<T: AsyncRead + Unpin> AsyncRead for MeteredIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.meter.is_killed() {
            return Poll::Ready(Err(cut()));
        }
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if r.is_pending() {
            lock(&self.meter.state).read_waker = Some(cx.waker().clone());
            if self.meter.is_killed() {
                return Poll::Ready(Err(cut()));
            }
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> MeteredIo<T> {
    fn on_write(&self, cx: &Context<'_>, r: &Poll<io::Result<usize>>) -> Option<io::Error> {
        match r {
            Poll::Ready(Ok(n)) => self.meter.wrote(*n),
            Poll::Pending => {
                lock(&self.meter.state).write_waker = Some(cx.waker().clone());
                if self.meter.is_killed() {
                    return Some(cut());
                }
            }
            Poll::Ready(Err(_)) => {}
        }
        None
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for MeteredIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.meter.is_killed() {
            return Poll::Ready(Err(cut()));
        }
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        match self.on_write(cx, &r) {
            Some(e) => Poll::Ready(Err(e)),
            None => r,
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.meter.is_killed() {
            return Poll::Ready(Err(cut()));
        }
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        match self.on_write(cx, &r) {
            Some(e) => Poll::Ready(Err(e)),
            None => r,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.meter.is_killed() {
            return Poll::Ready(Err(cut()));
        }
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        if let Poll::Ready(Ok(())) = r {
            self.meter.flushed();
        }
        r
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A hyper service in front of socketioxide's for one connection: adds the
/// connection's [`ConnectionMeter`] to each request, moves a session that
/// upgrades to WebSocket onto this connection's meter, and counts the poll
/// responses of polling sessions.
#[derive(Clone)]
pub struct MeteredService<S> {
    inner: S,
    meter: Arc<ClientMeter>,
    slow: SlowConsumers,
}

/// `sid` and `transport` of an Engine.IO request's query.
fn engine_query(query: Option<&str>) -> (Option<Sid>, Option<&str>) {
    let (mut sid, mut transport) = (None, None);
    for pair in query.unwrap_or("").split('&') {
        match pair.split_once('=') {
            Some(("sid", v)) => sid = Sid::from_str(v).ok(),
            Some(("transport", v)) => transport = Some(v),
            _ => {}
        }
    }
    (sid, transport)
}

impl<S, B, RB> hyper::service::Service<http::Request<B>> for MeteredService<S>
where
    S: hyper::service::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    RB: hyper::body::Body,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn call(&self, mut req: http::Request<B>) -> Self::Future {
        let (sid, transport) = engine_query(req.uri().query());
        let poll = match (sid, transport) {
            (Some(sid), Some("websocket")) => {
                self.slow.rebind(sid, &self.meter);
                None
            }
            (Some(sid), Some("polling")) if req.method() == http::Method::GET => Some(sid),
            _ => None,
        };
        req.extensions_mut()
            .insert(ConnectionMeter(self.meter.clone()));
        let fut = self.inner.call(req);
        match poll {
            None => Box::pin(fut),
            Some(sid) => {
                let slow = self.slow.clone();
                Box::pin(async move {
                    let res = fut.await?;
                    let body = hyper::body::Body::size_hint(res.body())
                        .exact()
                        .unwrap_or(0);
                    slow.polled(sid, body);
                    Ok(res)
                })
            }
        }
    }
}

type Closer = Box<dyn Fn() + Send + Sync>;
type Alive = Box<dyn Fn() -> bool + Send + Sync>;

struct Client {
    meter: Mutex<Arc<ClientMeter>>,
    /// Per namespace: disconnects the socket; tells whether it is connected.
    sockets: Mutex<Vec<(Closer, Alive)>>,
    flagged: AtomicBool,
}

struct Registry {
    policy: SlowPolicy,
    /// Looked up once per delivery: a fast hasher (the keys are the
    /// server's own random session ids), seeded per process.
    clients: RwLock<HashMap<Sid, Arc<Client>, foldhash::fast::RandomState>>,
    flagged: Mutex<Vec<Sid>>,
    wake: Notify,
    dropped_bytes: AtomicU64,
    dropped_stalled: AtomicU64,
    max_queued_seen: AtomicU64,
}

/// The slow-consumer policy of one worker process (cheap to clone).
#[derive(Clone)]
pub struct SlowConsumers {
    inner: Arc<Registry>,
}

/// Size of a packet as the adapter hands it over (its data and namespace;
/// framing is left out, so the estimate errs low).
pub fn packet_bytes(p: &Packet) -> u64 {
    let value = |v: &Value| match v {
        Value::Str(s, bins) => s.len() + bins.iter().flatten().map(|b| b.len()).sum::<usize>(),
        Value::Bytes(b) => b.len(),
    };
    let data = match &p.inner {
        PacketData::Event(v, _)
        | PacketData::BinaryEvent(v, _)
        | PacketData::EventAck(v, _)
        | PacketData::BinaryAck(v, _) => value(v),
        PacketData::Connect(v) => v.as_ref().map_or(0, value),
        PacketData::ConnectError(s) => s.len(),
        PacketData::Disconnect => 0,
    };
    (data + p.ns.len()) as u64
}

impl SlowConsumers {
    /// Starts the policy (spawns its checker on the current tokio runtime;
    /// it ends when the last clone is dropped).
    pub fn new(policy: SlowPolicy) -> SlowConsumers {
        let inner = Arc::new(Registry {
            policy,
            clients: RwLock::new(HashMap::default()),
            flagged: Mutex::new(Vec::new()),
            wake: Notify::new(),
            dropped_bytes: AtomicU64::new(0),
            dropped_stalled: AtomicU64::new(0),
            max_queued_seen: AtomicU64::new(0),
        });
        tokio::spawn(checker(Arc::downgrade(&inner)));
        SlowConsumers { inner }
    }

    /// The policy in force.
    pub fn policy(&self) -> SlowPolicy {
        self.inner.policy
    }

    /// Counters.
    pub fn stats(&self) -> SlowStats {
        let r = &self.inner;
        SlowStats {
            dropped_bytes: r.dropped_bytes.load(Ordering::Relaxed),
            dropped_stalled: r.dropped_stalled.load(Ordering::Relaxed),
            clients: r.clients.read().unwrap_or_else(|e| e.into_inner()).len() as u64,
            max_queued_seen: r.max_queued_seen.load(Ordering::Relaxed),
        }
    }

    /// For one accepted connection: its stream, metered, and the service to
    /// serve it with.
    pub fn connection<T, S>(&self, io: T, svc: S) -> (MeteredIo<T>, MeteredService<S>) {
        let meter = ClientMeter::new();
        (
            MeteredIo {
                inner: io,
                meter: meter.clone(),
            },
            MeteredService {
                inner: svc,
                meter,
                slow: self.clone(),
            },
        )
    }

    /// Watches socket `s` (call it in each namespace's connect handler). A
    /// socket whose request did not come through [`MeteredService`] is not
    /// watched.
    pub fn register<A: Adapter>(&self, s: &SocketRef<A>) {
        let polling = s.transport_type() == socketioxide::TransportType::Polling;
        let meter = if polling {
            None
        } else {
            match s.req_parts().extensions.get::<ConnectionMeter>() {
                Some(m) => Some(m.0.clone()),
                None => return,
            }
        };
        let (close, alive) = (s.clone(), s.clone());
        let closer: Closer = Box::new(move || {
            if let Err(e) = close.clone().disconnect() {
                debug!(error = %e, "slow consumer: namespace disconnect failed");
            }
        });
        let connected: Alive = Box::new(move || alive.connected());
        let mut clients = self
            .inner
            .clients
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let client = clients.entry(s.id).or_insert_with(|| {
            Arc::new(Client {
                meter: Mutex::new(meter.unwrap_or_else(ClientMeter::new)),
                sockets: Mutex::new(Vec::new()),
                flagged: AtomicBool::new(false),
            })
        });
        lock(&client.sockets).push((closer, connected));
    }

    fn client(&self, sid: Sid) -> Option<Arc<Client>> {
        self.inner
            .clients
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&sid)
            .cloned()
    }

    fn rebind(&self, sid: Sid, meter: &Arc<ClientMeter>) {
        if let Some(c) = self.client(sid) {
            *lock(&c.meter) = meter.clone();
        }
    }

    fn polled(&self, sid: Sid, body: u64) {
        if let Some(c) = self.client(sid) {
            let drained = body < self.inner.policy.max_payload / 2;
            lock(&c.meter).polled(body, drained);
        }
    }

    /// The adapter handed a packet of `bytes` to these local sockets.
    pub fn delivered(&self, sids: impl IntoIterator<Item = Sid>, bytes: u64) {
        let clients = self.inner.clients.read().unwrap_or_else(|e| e.into_inner());
        let cap = self.inner.policy.max_queued_bytes;
        let mut flag = Vec::new();
        for sid in sids {
            let Some(c) = clients.get(&sid) else { continue };
            // The guard, not a clone of the Arc: no reference count traffic
            // per delivery; the lock is held for a few atomics.
            let m = lock(&c.meter);
            let e = m.enqueued.fetch_add(bytes, Ordering::Relaxed) + bytes;
            // Cheap upper bound first; the exact estimate only near the cap.
            if e.saturating_sub(m.sync_enqueued.load(Ordering::Relaxed)) > cap
                && m.queued() > cap
                && !c.flagged.swap(true, Ordering::Relaxed)
            {
                flag.push(sid);
            }
        }
        drop(clients);
        if !flag.is_empty() {
            lock(&self.inner.flagged).extend(flag);
            self.inner.wake.notify_one();
        }
    }
}

/// Logs a count that just reached a power of two.
fn count(counter: &AtomicU64, what: &str, sid: Sid, reason: SlowReason, cap: u64) {
    let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
    if n.is_power_of_two() {
        warn!(total = n, %sid, %reason, cap, "slow consumer disconnected ({what})");
    } else {
        debug!(total = n, %sid, %reason, "slow consumer disconnected ({what})");
    }
}

async fn checker(reg: Weak<Registry>) {
    let interval = match reg.upgrade() {
        Some(r) => r.policy.check_interval,
        None => return,
    };
    loop {
        let notified = {
            let Some(r) = reg.upgrade() else { return };
            sweep(&r);
            // Wait for the next tick or a flagged client.
            let r2 = r.clone();
            async move {
                let _ = tokio::time::timeout(interval, r2.wake.notified()).await;
            }
        };
        notified.await;
    }
}

fn sweep(r: &Registry) {
    let now = now_ms();
    let cap = r.policy.max_queued_bytes;
    let mut cut_now: Vec<(Sid, Arc<Client>, SlowReason)> = Vec::new();
    // Flagged clients are checked below like the others; the flag only
    // woke this sweep early.
    lock(&r.flagged).clear();
    {
        let mut clients = r.clients.write().unwrap_or_else(|e| e.into_inner());
        let mut seen = 0;
        clients.retain(|sid, c| {
            // Forget sockets that left; a client with none left is gone.
            lock(&c.sockets).retain(|(_, alive)| alive());
            if lock(&c.sockets).is_empty() {
                return false;
            }
            let m = lock(&c.meter).clone();
            let q = m.queued();
            seen = seen.max(q);
            let idle =
                Duration::from_millis(now.saturating_sub(m.last_progress.load(Ordering::Relaxed)));
            let reason = if q > cap {
                Some(SlowReason::Bytes(q))
            } else {
                match r.policy.stall_timeout {
                    Some(t) if q > 0 && idle >= t => Some(SlowReason::Stalled(idle)),
                    _ => None,
                }
            };
            match reason {
                Some(reason) => {
                    cut_now.push((*sid, c.clone(), reason));
                    false
                }
                None => {
                    c.flagged.store(false, Ordering::Relaxed);
                    true
                }
            }
        });
        r.max_queued_seen.fetch_max(seen, Ordering::Relaxed);
    }
    for (sid, c, reason) in cut_now {
        match reason {
            SlowReason::Bytes(_) => count(&r.dropped_bytes, "bytes", sid, reason, cap),
            SlowReason::Stalled(_) => count(&r.dropped_stalled, "stalled", sid, reason, cap),
        }
        for (close, _) in lock(&c.sockets).iter() {
            close();
        }
        lock(&c.meter).kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queued_is_enqueued_minus_written_since_the_last_catch_up() {
        let m = ClientMeter::new();
        m.enqueued.fetch_add(1000, Ordering::Relaxed);
        assert_eq!(m.queued(), 1000);
        m.wrote(300);
        assert_eq!(m.queued(), 700);
        // A flush followed by more writes at once is no catch-up.
        m.flushed();
        m.wrote(100);
        assert_eq!(m.queued(), 600);
        // A flush followed by silence is.
        m.flushed();
        std::thread::sleep(IDLE_PROOF * 2);
        assert_eq!(m.queued(), 0);
        // Framing written beyond what was enqueued never goes below zero.
        m.wrote(50);
        assert_eq!(m.queued(), 0);
        m.enqueued.fetch_add(10, Ordering::Relaxed);
        assert_eq!(m.queued(), 0);
    }

    #[test]
    fn polls_count_as_written_and_short_ones_catch_up() {
        let m = ClientMeter::new();
        m.enqueued.fetch_add(500_000, Ordering::Relaxed);
        m.polled(100_000, false);
        assert_eq!(m.queued(), 400_000);
        m.polled(10, true);
        assert_eq!(m.queued(), 0);
    }

    #[test]
    fn engine_query_finds_sid_and_transport() {
        let (sid, t) = engine_query(Some("EIO=4&transport=websocket&sid=AAAAAAAAAAAAAAAA"));
        assert!(sid.is_some());
        assert_eq!(t, Some("websocket"));
        assert_eq!(engine_query(None), (None, None));
        assert_eq!(engine_query(Some("sid=&&=&transport")).0, None);
    }

    #[test]
    fn policy_from_env_defaults() {
        let p = SlowPolicy::default();
        assert_eq!(p.max_queued_bytes, 16 << 20);
        assert_eq!(p.stall_timeout, Some(Duration::from_secs(20)));
    }
}
