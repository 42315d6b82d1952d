//! Sticky HTTP routing on the public port (Engine.IO long-polling and WebSocket).
//!
//! The primary parses every HTTP/1.1 request (hyper, which uses `httparse`) and
//! proxies it to one worker's private loopback listener, **per request**: a
//! keep-alive connection carrying requests of two sessions reaches both owners.
//!
//! * A request whose URL query has `sid=` goes to the worker owning that session.
//! * Any other request goes to the worker picked by the [`Balance`] method.
//! * A WebSocket upgrade is routed the same way; after the worker answers
//!   `101`, bytes are spliced both ways until either side closes.
//! * No live worker: `503 Service Unavailable` (with `Content-Length` and
//!   `Connection: close`); worker unreachable: `502 Bad Gateway`; malformed
//!   HTTP: hyper answers `400` and closes that connection; a malformed request
//!   body (bad chunked encoding, body cut short) found while forwarding it:
//!   `400` with `Connection: close`.
//!
//! How the primary learns sid -> worker, both ways (either suffices):
//! 1. it reads the body of the polling handshake response (`0{"sid":"..."`)
//!    before forwarding it, so the mapping exists before the client can reuse
//!    the sid (no race);
//! 2. the worker may report `SessionOpened` / `SessionClosed` over its hub link
//!    (needed for WebSocket-only sessions and for exact least-connection counts).
//!
//! Sessions learnt only by (1) are forgotten after
//! [`StickyConfig::session_idle_timeout`] without a request (and no open
//! tunnel); reported sessions are kept until reported closed. All sessions of a
//! worker are forgotten when its link goes down.
//!
//! Bodies are streamed in both directions (`Content-Length` or chunked, any
//! size). Upstream connections are pooled per worker (keep-alive).
//!
//! With [`StickyConfig::handoff_websocket`], a connection whose first request
//! is a WebSocket upgrade is passed to its worker instead (see
//! [`crate::link::handoff`]).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::link::handoff::{HANDOFF_TIMEOUT, HandoffSender, MAX_HANDOFF_PREFIX, PrefixedIo};
use crate::primary::hub::{ConnId, HubEvent, HubObserver};

/// Body type of the responses the proxy sends.
pub type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// Largest polling handshake response the proxy reads to find the sid.
const HANDSHAKE_BODY_LIMIT: usize = 1024 * 1024;

/// How a new session (a request without a known `sid`) picks its worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Balance {
    /// The live worker with the fewest sessions (ties: lowest index).
    LeastConnection,
    /// Live workers in turn, starting with worker 0.
    RoundRobin,
    /// A uniformly random live worker.
    Random,
}

/// Settings of the sticky router.
#[derive(Debug, Clone)]
pub struct StickyConfig {
    /// Balancing method for new sessions.
    pub balance: Balance,
    /// Forget a sniffed (unreported) session after this long without a request.
    pub session_idle_timeout: Duration,
    /// Close a client connection that takes longer to send a request head.
    pub header_read_timeout: Duration,
    /// Hand WebSocket connections to their worker with SCM_RIGHTS instead of
    /// proxying them (see [`crate::link::handoff`]).
    pub handoff_websocket: bool,
}

impl Default for StickyConfig {
    fn default() -> Self {
        StickyConfig {
            balance: Balance::LeastConnection,
            session_idle_timeout: Duration::from_secs(120),
            header_read_timeout: Duration::from_secs(30),
            handoff_websocket: false,
        }
    }
}

/// Counters of the sticky router (monotonic).
#[derive(Debug, Default)]
pub struct StickyStats {
    /// Client connections accepted.
    pub connections: AtomicU64,
    /// Requests received.
    pub requests: AtomicU64,
    /// Requests routed by a known sid.
    pub by_sid: AtomicU64,
    /// Requests with a sid the router does not know (balanced instead).
    pub unknown_sid: AtomicU64,
    /// Requests answered 503 (no live worker).
    pub no_worker: AtomicU64,
    /// Requests answered 502 (worker unreachable or reset).
    pub upstream_errors: AtomicU64,
    /// Requests answered 400 because their body was malformed (found while
    /// forwarding it).
    pub bad_requests: AtomicU64,
    /// WebSocket (or other) upgrades spliced.
    pub upgrades: AtomicU64,
    /// Connections handed to a worker with SCM_RIGHTS.
    pub handoffs: AtomicU64,
    /// Handoffs that failed (the connection was proxied instead).
    pub handoff_failures: AtomicU64,
    /// Sessions learnt from a handshake response.
    pub sniffed_sessions: AtomicU64,
    /// Sessions reported by workers.
    pub reported_sessions: AtomicU64,
    /// Responses by status class: 1xx (upgrades, handoffs), 2xx, 3xx, 4xx, 5xx.
    pub status_classes: [AtomicU64; 5],
}

impl StickyStats {
    /// Counts one response of `status` in its class.
    pub fn count_status(&self, status: StatusCode) {
        let class = (status.as_u16() / 100).clamp(1, 5) as usize - 1;
        bump(&self.status_classes[class]);
    }
}

fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

struct Session {
    worker: usize,
    last_seen: Instant,
    reported: bool,
    tunnels: u32,
}

struct Slot {
    addr: SocketAddr,
    up: bool,
    /// Takes no new sessions (a rolling restart replaces it); its sessions
    /// are still routed to it.
    draining: bool,
    conn: Option<ConnId>,
    generation: u64,
    sessions: usize,
    pending: usize,
    anon_tunnels: usize,
    handoff: Option<Arc<HandoffSender>>,
}

impl Slot {
    fn load(&self) -> usize {
        self.sessions + self.pending + self.anon_tunnels
    }
}

struct RouterState {
    slots: Vec<Slot>,
    sessions: HashMap<String, Session>,
    rr_next: usize,
}

/// Where one request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Worker index.
    pub index: usize,
    /// The worker's private HTTP address.
    pub addr: SocketAddr,
    /// Generation of the worker slot at routing time.
    pub generation: u64,
    /// True when routed by a known sid.
    pub by_sid: bool,
}

/// Session table, worker liveness and balancing; also the proxy's HTTP client.
pub struct Router {
    config: StickyConfig,
    /// Slots of the workers (indexes `0..workers`); more are spares for
    /// rolling restarts ([`Router::retire`]).
    workers: usize,
    state: Mutex<RouterState>,
    stats: StickyStats,
    client: Client<HttpConnector, Incoming>,
}

impl Router {
    /// A router for workers listening on `addrs` (index = position). All
    /// workers start down; [`HubEvent::WorkerUp`] marks them live.
    pub fn new(addrs: Vec<SocketAddr>, config: StickyConfig) -> Arc<Router> {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            .build(connector);
        let workers = addrs.len();
        let slots = addrs
            .into_iter()
            .map(|addr| Slot {
                addr,
                up: false,
                draining: false,
                conn: None,
                generation: 0,
                sessions: 0,
                pending: 0,
                anon_tunnels: 0,
                handoff: None,
            })
            .collect();
        Arc::new(Router {
            config,
            workers,
            state: Mutex::new(RouterState {
                slots,
                sessions: HashMap::new(),
                rr_next: 0,
            }),
            stats: StickyStats::default(),
            client,
        })
    }

    /// The router's counters.
    pub fn stats(&self) -> &StickyStats {
        &self.stats
    }

    fn lock(&self) -> MutexGuard<'_, RouterState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Number of sessions currently mapped.
    pub fn session_count(&self) -> usize {
        self.lock().sessions.len()
    }

    /// Sets (or clears) the handoff socket of worker `index`.
    pub fn set_handoff(&self, index: usize, sender: Option<Arc<HandoffSender>>) {
        if let Some(slot) = self.lock().slots.get_mut(index) {
            slot.handoff = sender;
        }
    }

    fn handoff_of(&self, index: usize) -> Option<Arc<HandoffSender>> {
        self.lock().slots.get(index).and_then(|s| s.handoff.clone())
    }

    /// Marks worker `index` live on link `conn`.
    pub fn worker_up(&self, index: usize, conn: ConnId) {
        let mut st = self.lock();
        if let Some(slot) = st.slots.get_mut(index) {
            slot.up = true;
            slot.conn = Some(conn);
            slot.generation += 1;
        }
    }

    /// Marks the slot of link `conn` down (worker `index`'s, or the slot
    /// it was retired to) and forgets its sessions.
    pub fn worker_down(&self, index: usize, conn: ConnId) {
        let mut st = self.lock();
        let index = if st.slots.get(index).is_some_and(|s| s.conn == Some(conn)) {
            index
        } else {
            match st.slots.iter().position(|s| s.conn == Some(conn)) {
                Some(i) => i,
                None => return,
            }
        };
        let slot = &mut st.slots[index];
        slot.up = false;
        slot.conn = None;
        slot.generation += 1;
        slot.sessions = 0;
        slot.anon_tunnels = 0;
        st.sessions.retain(|_, s| s.worker != index);
    }

    /// Stops sending new sessions to slot `index` (`true`) or starts again.
    pub fn set_draining(&self, index: usize, draining: bool) {
        if let Some(slot) = self.lock().slots.get_mut(index) {
            slot.draining = draining;
        }
    }

    /// Moves worker `index` (its link, sessions and handoff socket) to a
    /// spare slot that takes no new sessions, and leaves slot `index` down
    /// and empty at `new_addr`, for the process replacing it. Returns the
    /// spare slot (give it to [`Router::restore`] to undo).
    pub fn retire(&self, index: usize, new_addr: SocketAddr) -> Option<usize> {
        let mut st = self.lock();
        let slot = st.slots.get_mut(index)?;
        let fresh = Slot {
            addr: new_addr,
            up: false,
            draining: false,
            conn: None,
            generation: slot.generation + 1,
            sessions: 0,
            pending: 0,
            anon_tunnels: 0,
            handoff: None,
        };
        let mut old = std::mem::replace(slot, fresh);
        old.draining = true;
        // A spare slot is one past the workers' that is down and empty.
        let spare = match (self.workers..st.slots.len())
            .find(|&i| !st.slots[i].up && st.slots[i].conn.is_none())
        {
            Some(i) => i,
            None => {
                st.slots.push(Slot {
                    addr: old.addr,
                    up: false,
                    draining: true,
                    conn: None,
                    generation: 0,
                    sessions: 0,
                    pending: 0,
                    anon_tunnels: 0,
                    handoff: None,
                });
                st.slots.len() - 1
            }
        };
        old.generation = old.generation.max(st.slots[spare].generation) + 1;
        st.slots[spare] = old;
        for s in st.sessions.values_mut() {
            if s.worker == index {
                s.worker = spare;
            }
        }
        Some(spare)
    }

    /// Undoes [`Router::retire`]: the process in slot `spare` serves as
    /// worker `index` again (taking new sessions), the spare is freed.
    pub fn restore(&self, index: usize, spare: usize) {
        let mut st = self.lock();
        if index >= st.slots.len() || spare >= st.slots.len() || index == spare {
            return;
        }
        let addr = st.slots[spare].addr;
        let free = Slot {
            addr,
            up: false,
            draining: true,
            conn: None,
            generation: st.slots[spare].generation + 1,
            sessions: 0,
            pending: 0,
            anon_tunnels: 0,
            handoff: None,
        };
        let mut back = std::mem::replace(&mut st.slots[spare], free);
        back.draining = false;
        back.generation = back.generation.max(st.slots[index].generation) + 1;
        // Sessions the replacement opened meanwhile are forgotten with it.
        st.sessions.retain(|_, s| s.worker != index);
        st.slots[index] = back;
        for s in st.sessions.values_mut() {
            if s.worker == spare {
                s.worker = index;
            }
        }
    }

    fn insert_session(&self, st: &mut RouterState, index: usize, sid: &str, reported: bool) {
        if let Some(s) = st.sessions.get_mut(sid) {
            if s.worker == index {
                s.reported |= reported;
                s.last_seen = Instant::now();
                return;
            }
            let old = s.worker;
            if let Some(slot) = st.slots.get_mut(old) {
                slot.sessions = slot.sessions.saturating_sub(1);
            }
        }
        st.sessions.insert(
            sid.to_string(),
            Session {
                worker: index,
                last_seen: Instant::now(),
                reported,
                tunnels: 0,
            },
        );
        if let Some(slot) = st.slots.get_mut(index) {
            slot.sessions += 1;
        }
    }

    /// Records a session reported by worker `index`.
    pub fn session_opened(&self, index: usize, sid: &str) {
        let mut st = self.lock();
        if st.slots.get(index).is_some_and(|s| s.up) {
            bump(&self.stats.reported_sessions);
            self.insert_session(&mut st, index, sid, true);
        }
    }

    /// Forgets a session reported closed by worker `index`.
    pub fn session_closed(&self, index: usize, sid: &str) {
        let mut st = self.lock();
        if st.sessions.get(sid).is_some_and(|s| s.worker == index) {
            st.sessions.remove(sid);
            if let Some(slot) = st.slots.get_mut(index) {
                slot.sessions = slot.sessions.saturating_sub(1);
            }
        }
    }

    fn record_sniffed(&self, route: Route, sid: &str) {
        let mut st = self.lock();
        let current = st
            .slots
            .get(route.index)
            .is_some_and(|s| s.up && s.generation == route.generation);
        if current {
            bump(&self.stats.sniffed_sessions);
            self.insert_session(&mut st, route.index, sid, false);
        }
    }

    /// Forgets sniffed sessions idle for longer than the configured timeout.
    pub fn sweep(&self) {
        let idle = self.config.session_idle_timeout;
        let mut st = self.lock();
        let now = Instant::now();
        let mut dropped = Vec::new();
        st.sessions.retain(|_, s| {
            let keep = s.reported || s.tunnels > 0 || now.duration_since(s.last_seen) < idle;
            if !keep {
                dropped.push(s.worker);
            }
            keep
        });
        for w in dropped {
            if let Some(slot) = st.slots.get_mut(w) {
                slot.sessions = slot.sessions.saturating_sub(1);
            }
        }
    }

    /// Picks the worker for a request with the given sid (if any).
    pub fn route(&self, sid: Option<&str>) -> Option<Route> {
        let mut st = self.lock();
        if let Some(sid) = sid {
            let known = st.sessions.get_mut(sid).map(|s| {
                s.last_seen = Instant::now();
                s.worker
            });
            match known {
                Some(index) => {
                    if let Some(slot) = st.slots.get(index).filter(|s| s.up) {
                        bump(&self.stats.by_sid);
                        return Some(Route {
                            index,
                            addr: slot.addr,
                            generation: slot.generation,
                            by_sid: true,
                        });
                    }
                }
                None => bump(&self.stats.unknown_sid),
            }
        }
        let index = self.balance(&mut st)?;
        let slot = &st.slots[index];
        Some(Route {
            index,
            addr: slot.addr,
            generation: slot.generation,
            by_sid: false,
        })
    }

    fn balance(&self, st: &mut RouterState) -> Option<usize> {
        let n = st.slots.len();
        let open = |s: &Slot| s.up && !s.draining;
        let live: Vec<usize> = (0..n).filter(|&i| open(&st.slots[i])).collect();
        if live.is_empty() {
            return None;
        }
        match self.config.balance {
            Balance::LeastConnection => live.into_iter().min_by_key(|&i| (st.slots[i].load(), i)),
            Balance::RoundRobin => {
                let start = st.rr_next % n;
                let pick = (0..n)
                    .map(|k| (start + k) % n)
                    .find(|&i| open(&st.slots[i]))?;
                st.rr_next = pick + 1;
                Some(pick)
            }
            Balance::Random => {
                let r = getrandom::u64().unwrap_or_else(|_| {
                    // No OS randomness: fall back to a time-derived value.
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.subsec_nanos() as u64)
                        .unwrap_or(0)
                });
                live.get((r % live.len() as u64) as usize).copied()
            }
        }
    }

    fn adjust_pending(&self, route: Route, up: bool) {
        let mut st = self.lock();
        if let Some(slot) = st.slots.get_mut(route.index) {
            if slot.generation != route.generation {
                return;
            }
            if up {
                slot.pending += 1;
            } else {
                slot.pending = slot.pending.saturating_sub(1);
            }
        }
    }

    fn adjust_tunnel(&self, route: Route, sid: Option<&str>, open: bool) {
        let mut st = self.lock();
        if let Some(sid) = sid
            && let Some(s) = st.sessions.get_mut(sid)
        {
            if open {
                s.tunnels += 1;
            } else {
                s.tunnels = s.tunnels.saturating_sub(1);
                s.last_seen = Instant::now();
            }
            return;
        }
        if sid.is_some() {
            return;
        }
        if let Some(slot) = st.slots.get_mut(route.index) {
            if slot.generation != route.generation {
                return;
            }
            if open {
                slot.anon_tunnels += 1;
            } else {
                slot.anon_tunnels = slot.anon_tunnels.saturating_sub(1);
            }
        }
    }
}

impl HubObserver for Router {
    fn on_event(&self, event: HubEvent) {
        match event {
            HubEvent::WorkerUp { conn, index, .. } => self.worker_up(index as usize, conn),
            HubEvent::WorkerDown { conn, index } => self.worker_down(index as usize, conn),
            HubEvent::SessionOpened { index, sid } => self.session_opened(index as usize, &sid),
            HubEvent::SessionClosed { index, sid } => self.session_closed(index as usize, &sid),
        }
    }
}

/// Decrements a worker's pending-handshake count when dropped.
struct PendingGuard<'a> {
    router: &'a Router,
    route: Route,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.router.adjust_pending(self.route, false);
    }
}

/// Value of query parameter `name` in `query` (first occurrence, not decoded).
pub fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

/// Finds the Engine.IO sid in a handshake body (`0{"sid":"..."` or the
/// Engine.IO v3 `96:0{"sid":"..."`).
pub fn sniff_sid(body: &[u8]) -> Option<&str> {
    let needle = b"\"sid\":\"";
    let head = &body[..body.len().min(4096)];
    let pos = head.windows(needle.len()).position(|w| w == needle)?;
    let rest = &head[pos + needle.len()..];
    let end = rest.iter().position(|&b| b == b'"')?;
    let sid = std::str::from_utf8(&rest[..end]).ok()?;
    valid_sid(sid).then_some(sid)
}

/// A plausible session id: 1 to 128 URL-safe characters.
pub fn valid_sid(sid: &str) -> bool {
    !sid.is_empty()
        && sid.len() <= 128
        && sid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
}

fn full(body: impl Into<Bytes>) -> ProxyBody {
    Full::new(body.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

/// A complete plain-text error response that closes the connection.
pub fn error_response(status: StatusCode, text: &'static str) -> Response<ProxyBody> {
    let mut resp = Response::new(full(text));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(text.len()));
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    if !keep_upgrade {
        for name in named {
            headers.remove(name);
        }
        headers.remove(header::CONNECTION);
        headers.remove(header::UPGRADE);
    }
    for name in [
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::PROXY_AUTHORIZATION,
        header::PROXY_AUTHENTICATE,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
    // hyper already answered `100 Continue` to the client when the body was
    // first polled; the worker must not wait for another one.
    headers.remove(header::EXPECT);
}

fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Proxies one request to the worker chosen by `router`.
pub async fn handle(
    router: Arc<Router>,
    peer: SocketAddr,
    mut req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    bump(&router.stats.requests);
    let query = req.uri().query();
    let sid = query_param(query, "sid")
        .filter(|s| valid_sid(s))
        .map(str::to_string);
    let polling_handshake = sid.is_none()
        && req.method() == http::Method::GET
        && query_param(query, "EIO").is_some()
        && query_param(query, "transport") == Some("polling");

    let Some(route) = router.route(sid.as_deref()) else {
        bump(&router.stats.no_worker);
        debug!("no live worker, answering 503");
        return Ok(error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service Unavailable: no worker is available\n",
        ));
    };
    let _pending = (sid.is_none()).then(|| {
        router.adjust_pending(route, true);
        PendingGuard {
            router: &router,
            route,
        }
    });

    let upgrade = wants_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));

    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .to_string();
    // Only a path goes to the worker: the asterisk form (`OPTIONS *`) would
    // make `http://<addr>*`, an authority with a bad port (a 502 blamed on
    // the worker; found by fuzz/fuzz_targets/sticky_http.rs).
    if !path.starts_with('/') {
        bump(&router.stats.bad_requests);
        return Ok(error_response(StatusCode::BAD_REQUEST, "Bad Request\n"));
    }
    let (mut parts, body) = req.into_parts();
    let uri: Uri = match format!("http://{}{}", route.addr, path).parse() {
        Ok(u) => u,
        Err(_) => {
            return Ok(error_response(StatusCode::BAD_REQUEST, "Bad Request\n"));
        }
    };
    parts.uri = uri;
    parts.version = http::Version::HTTP_11;
    strip_hop_by_hop(&mut parts.headers, upgrade);
    if let Ok(v) = HeaderValue::from_str(&peer.ip().to_string()) {
        parts.headers.append("x-forwarded-for", v);
    }
    let upstream_req = Request::from_parts(parts, body);

    let mut resp = match router.client.request(upstream_req).await {
        Ok(r) => r,
        Err(e) => {
            bump(&router.stats.upstream_errors);
            if client_side_error(&e) {
                // The client's own request failed (a malformed chunked body,
                // a body cut short): its fault, not the worker's.
                bump(&router.stats.bad_requests);
                debug!(worker = route.index, error = ?e, "malformed request body, answering 400");
                let mut r = error_response(StatusCode::BAD_REQUEST, "Bad Request\n");
                r.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                return Ok(r);
            }
            warn!(worker = route.index, error = %e, "worker request failed, answering 502");
            return Ok(error_response(StatusCode::BAD_GATEWAY, "Bad Gateway\n"));
        }
    };

    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_upgrade) = client_upgrade else {
            bump(&router.stats.upstream_errors);
            return Ok(error_response(StatusCode::BAD_GATEWAY, "Bad Gateway\n"));
        };
        let server_upgrade = hyper::upgrade::on(&mut resp);
        bump(&router.stats.upgrades);
        let tunnel_router = router.clone();
        let tunnel_sid = sid.clone();
        tokio::spawn(async move {
            tunnel_router.adjust_tunnel(route, tunnel_sid.as_deref(), true);
            match tokio::try_join!(client_upgrade, server_upgrade) {
                Ok((c, s)) => {
                    let mut c = TokioIo::new(c);
                    let mut s = TokioIo::new(s);
                    if let Err(e) = tokio::io::copy_bidirectional(&mut c, &mut s).await {
                        debug!(error = %e, "tunnel closed with an error");
                    }
                }
                Err(e) => debug!(error = %e, "upgrade failed"),
            }
            tunnel_router.adjust_tunnel(route, tunnel_sid.as_deref(), false);
        });
        let (parts, _) = resp.into_parts();
        return Ok(Response::from_parts(parts, full(Bytes::new())));
    }

    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers, false);
    let identity = parts
        .headers
        .get(header::CONTENT_ENCODING)
        .is_none_or(|v| v.as_bytes().eq_ignore_ascii_case(b"identity"));
    if polling_handshake && identity && parts.status == StatusCode::OK {
        let collected = match Limited::new(body, HANDSHAKE_BODY_LIMIT).collect().await {
            Ok(c) => c.to_bytes(),
            Err(e) => {
                bump(&router.stats.upstream_errors);
                warn!(worker = route.index, error = %e, "handshake response unreadable, answering 502");
                return Ok(error_response(StatusCode::BAD_GATEWAY, "Bad Gateway\n"));
            }
        };
        if let Some(new_sid) = sniff_sid(&collected) {
            router.record_sniffed(route, new_sid);
        }
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(collected.len()));
        return Ok(Response::from_parts(parts, full(collected)));
    }
    Ok(Response::from_parts(parts, body.boxed()))
}

/// True when a proxied request failed because of the client's side (hyper
/// reports a failed request body as a user error).
fn client_side_error(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_user)
        {
            return true;
        }
        cur = err.source();
    }
    false
}

/// Serves HTTP/1.1 on one client connection, proxying each request (what
/// [`serve`] runs for every accepted connection; public for the fuzz
/// target `fuzz/fuzz_targets/sticky_http.rs`).
pub async fn serve_http<I>(router: Arc<Router>, io: I, peer: SocketAddr)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc_router = router.clone();
    let service = service_fn(move |req| {
        let router = svc_router.clone();
        async move {
            let resp = handle(router.clone(), peer, req).await;
            if let Ok(r) = &resp {
                router.stats.count_status(r.status());
            }
            resp
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(router.config.header_read_timeout)
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    if let Err(e) = conn.await {
        debug!(%peer, error = %e, "client connection ended with an error");
    }
}

/// Reads until the end of the first request head (or the size limit, EOF or
/// the timeout); `None` when the client sent nothing.
async fn read_first_head(stream: &mut tokio::net::TcpStream, timeout: Duration) -> Option<Bytes> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::with_capacity(4096);
    let read = async {
        let mut chunk = [0u8; 8192];
        while buf.len() < MAX_HANDOFF_PREFIX {
            let room = (MAX_HANDOFF_PREFIX - buf.len()).min(chunk.len());
            match stream.read(&mut chunk[..room]).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(timeout, read).await;
    (!buf.is_empty()).then(|| Bytes::from(buf))
}

/// The sid of a first request that is a WebSocket upgrade (`Some(None)` when
/// it has no sid); `None` when it is not an upgrade or not parseable.
pub fn websocket_upgrade_sid(head: &[u8]) -> Option<Option<String>> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return None,
    }
    if req.method != Some("GET") {
        return None;
    }
    let mut upgrade = false;
    let mut connection_upgrade = false;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("upgrade") {
            upgrade |= h.value.eq_ignore_ascii_case(b"websocket");
        } else if h.name.eq_ignore_ascii_case("connection") {
            connection_upgrade |= std::str::from_utf8(h.value)
                .map(|v| {
                    v.split(',')
                        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
                })
                .unwrap_or(false);
        }
    }
    if !(upgrade && connection_upgrade) {
        return None;
    }
    let query = req.path.and_then(|p| p.split_once('?')).map(|(_, q)| q);
    Some(
        query_param(query, "sid")
            .filter(|s| valid_sid(s))
            .map(str::to_string),
    )
}

/// Hands a first-request WebSocket upgrade to its worker; proxies the rest.
/// How long a new session handed to a worker counts for least-connection
/// before the worker's own report (`SessionOpened`) is expected to.
const HANDED_OFF_GRACE: Duration = Duration::from_secs(2);

async fn serve_with_handoff(
    router: Arc<Router>,
    mut stream: tokio::net::TcpStream,
    peer: SocketAddr,
) {
    let Some(head) = read_first_head(&mut stream, router.config.header_read_timeout).await else {
        return;
    };
    if let Some(sid) = websocket_upgrade_sid(&head)
        && let Some(route) = router.route(sid.as_deref())
        && let Some(sender) = router.handoff_of(route.index)
    {
        match tokio::time::timeout(HANDOFF_TIMEOUT, sender.send(&stream, &head)).await {
            Ok(Ok(())) => {
                bump(&router.stats.handoffs);
                bump(&router.stats.requests);
                router.stats.count_status(StatusCode::SWITCHING_PROTOCOLS);
                debug!(%peer, worker = route.index, "websocket handed off");
                if sid.is_none() {
                    // A new session the primary will not see again: count it
                    // for least-connection until the worker has had time to
                    // report it, so a burst of connections is spread.
                    router.adjust_pending(route, true);
                    let router = router.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(HANDED_OFF_GRACE).await;
                        router.adjust_pending(route, false);
                    });
                }
                return;
            }
            Ok(Err(e)) => {
                bump(&router.stats.handoff_failures);
                warn!(%peer, worker = route.index, error = %e, "handoff failed, proxying");
            }
            Err(_) => {
                bump(&router.stats.handoff_failures);
                warn!(%peer, worker = route.index, "handoff timed out, proxying");
            }
        }
    }
    serve_http(router, PrefixedIo::new(head, stream), peer).await;
}

/// Serves the public listener until `shutdown` becomes true.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Arc<Router>,
    mut shutdown: watch::Receiver<bool>,
) {
    let sweeper = {
        let router = router.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            loop {
                tick.tick().await;
                router.sweep();
            }
        })
    };
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => break,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        bump(&router.stats.connections);
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        tokio::spawn(async move {
            if router.config.handoff_websocket {
                serve_with_handoff(router, stream, peer).await;
            } else {
                serve_http(router, stream, peer).await;
            }
        });
    }
    sweeper.abort();
    let st = &router.stats;
    let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
    info!(
        connections = r(&st.connections),
        requests = r(&st.requests),
        by_sid = r(&st.by_sid),
        unknown_sid = r(&st.unknown_sid),
        no_worker = r(&st.no_worker),
        upstream_errors = r(&st.upstream_errors),
        upgrades = r(&st.upgrades),
        handoffs = r(&st.handoffs),
        handoff_failures = r(&st.handoff_failures),
        sniffed_sessions = r(&st.sniffed_sessions),
        reported_sessions = r(&st.reported_sessions),
        "public listener closed"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(n: usize) -> Vec<SocketAddr> {
        (0..n)
            .map(|i| SocketAddr::from(([127, 0, 0, 1], 10000 + i as u16)))
            .collect()
    }

    fn cfg(balance: Balance) -> StickyConfig {
        StickyConfig {
            balance,
            ..StickyConfig::default()
        }
    }

    #[tokio::test]
    async fn round_robin_starts_at_zero_and_skips_dead() {
        let r = Router::new(addrs(3), cfg(Balance::RoundRobin));
        for i in 0..3 {
            r.worker_up(i, i as u64 + 1);
        }
        let picks: Vec<usize> = (0..4).map(|_| r.route(None).unwrap().index).collect();
        assert_eq!(picks, vec![0, 1, 2, 0]);
        r.worker_down(2, 3);
        let picks: Vec<usize> = (0..3).map(|_| r.route(None).unwrap().index).collect();
        assert_eq!(picks, vec![1, 0, 1]);
    }

    #[tokio::test]
    async fn least_connection_and_sid_routing() {
        let r = Router::new(addrs(2), cfg(Balance::LeastConnection));
        assert!(r.route(None).is_none());
        r.worker_up(0, 10);
        r.worker_up(1, 11);
        r.session_opened(0, "aaa");
        assert_eq!(r.route(None).unwrap().index, 1);
        assert_eq!(r.route(Some("aaa")).unwrap().index, 0);
        assert!(r.route(Some("aaa")).unwrap().by_sid);
        // A stale down event of an older link is ignored.
        r.worker_down(0, 99);
        assert_eq!(r.route(Some("aaa")).unwrap().index, 0);
        r.worker_down(0, 10);
        assert_eq!(r.session_count(), 0);
        assert_eq!(r.route(Some("aaa")).unwrap().index, 1);
    }

    #[tokio::test]
    async fn sweep_forgets_idle_sniffed_sessions_only() {
        let r = Router::new(
            addrs(2),
            StickyConfig {
                session_idle_timeout: Duration::ZERO,
                ..cfg(Balance::LeastConnection)
            },
        );
        r.worker_up(0, 1);
        r.worker_up(1, 2);
        let route = r.route(None).unwrap();
        r.record_sniffed(route, "sniffed");
        r.session_opened(1, "reported");
        assert_eq!(r.session_count(), 2);
        r.sweep();
        assert_eq!(r.session_count(), 1);
        assert_eq!(r.route(Some("reported")).unwrap().index, 1);
        r.session_closed(1, "reported");
        assert_eq!(r.session_count(), 0);
        // Counts went back to zero: the next pick is worker 0 again.
        assert_eq!(r.route(None).unwrap().index, 0);
    }

    #[tokio::test]
    async fn retire_keeps_old_sessions_routed_and_new_ones_away() {
        let r = Router::new(addrs(2), cfg(Balance::LeastConnection));
        r.worker_up(0, 1);
        r.worker_up(1, 2);
        r.session_opened(0, "old");
        let new_addr = SocketAddr::from(([127, 0, 0, 1], 20000));
        let spare = r.retire(0, new_addr).unwrap();
        assert_eq!(spare, 2, "a spare slot past the workers");
        // The old process keeps its session; new sessions avoid it.
        let old = r.route(Some("old")).unwrap();
        assert_eq!((old.index, old.addr.port()), (spare, 10000));
        assert_eq!(r.route(None).unwrap().index, 1);
        // The new process of worker 0 comes up at the new address.
        r.worker_up(0, 3);
        r.set_draining(1, true);
        let fresh = r.route(None).unwrap();
        assert_eq!((fresh.index, fresh.addr), (0, new_addr));
        // The old process's link closes: its slot and sessions are gone.
        r.worker_down(0, 1);
        assert_eq!(r.session_count(), 0);
        assert_eq!(r.route(Some("old")).unwrap().index, 0);
        // The spare is reused by the next retire.
        r.set_draining(1, false);
        assert_eq!(r.retire(1, new_addr), Some(spare));
        r.restore(1, spare);
        assert_eq!(r.route(None).map(|x| x.index), Some(0));
    }

    #[test]
    fn query_and_sniff() {
        let q = Some("EIO=4&transport=polling&sid=abc_-1");
        assert_eq!(query_param(q, "sid"), Some("abc_-1"));
        assert_eq!(query_param(q, "EIO"), Some("4"));
        assert_eq!(query_param(q, "x"), None);
        assert_eq!(
            sniff_sid(br#"0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"]}"#),
            Some("lv_VI97HAXpY6yYWAAAC")
        );
        assert_eq!(sniff_sid(br#"96:0{"sid":"abc"}"#), Some("abc"));
        assert_eq!(sniff_sid(br#"0{"sid":"a\"b"}"#), None);
        assert_eq!(sniff_sid(b"nothing"), None);
    }
}
