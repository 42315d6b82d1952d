//! A small worker for the multi-process tests, built on the worker library.
//!
//! It attaches to the hub from the environment, hosts one adapter node per
//! namespace of `SIO_TEST_NSPS` (comma separated, default `/`) with random
//! uids, and serves HTTP on the listener from the environment (printing
//! `LISTEN <addr>` on stdout when it had to bind its own):
//!
//! * `GET /socket.io/?EIO=4&transport=polling` (no sid): opens a fake Engine.IO
//!   session and answers `0{"sid":"<20 chars>",...}`; reports it to the primary
//!   when `SIO_TEST_REPORT_SESSIONS=1`;
//! * any request with a known `sid`: `worker=<i> pid=<pid> sid=<sid> len=<body
//!   length> hash=<body hash>`; unknown sid: 400 like Engine.IO;
//! * `Upgrade:` requests: `101`, then `worker=<i> via=<listener|handoff>\n` and
//!   an echo of every byte (handed-off connections arrive when
//!   `SIO_CLUSTER_HANDOFF` is set);
//! * `/ctl/info`: `worker=<i> pid=<pid> uids=<nsp>=<hex uid>,... listen=<addr> hb=<interval ms>,<timeout ms> component=<none|precompiled|compiled|fallback:reason>`;
//! * `/ctl/publish?nsp=N` and `/ctl/send?nsp=N&target=<hex>`: relay the
//!   request body as an adapter frame;
//! * `/ctl/events`: one line per message received from the hub,
//!   `<unix micros> frame <nsp> <from hex> <len> <text>` or
//!   `<unix micros> nodedown <uid hex> <nsp>`;
//! * `/ctl/close?sid=S`: forgets a session (and reports it closed);
//! * `/ctl/stall`: from now on this worker process never takes another
//!   message from its hub link (a hung worker); it still serves HTTP and, in
//!   adapter mode, still sends heartbeats. Its link then reads at most
//!   `SIO_CLUSTER_MAX_QUEUED` bytes before it stops reading its socket.
//!
//! With `SIO_TEST_ADAPTER=1` each namespace runs a real adapter node (the
//! embedded component, component-owned rooms) instead of raw frames: the
//! node's frames go over the link, a local socket `w<index>` sits in rooms
//! `w<index>` and `all`, and
//! * `/ctl/adapter/broadcast?room=R` broadcasts the body (to every socket
//!   without `room`);
//! * `/ctl/adapter/fetch` and `/ctl/adapter/emit` start a fetch-sockets / a
//!   server-side emit with replies and answer the request id (`timeout=MS`
//!   sets fetch-sockets' timeout; `SIO_TEST_REQUEST_TIMEOUT` in ms sets the
//!   node's request timeout, used by server-side emit);
//! * `/ctl/adapter/ask?room=R&timeout=MS` starts a broadcast with acks of the
//!   body (to every socket without `room`, default timeout 5000 ms) and
//!   answers the request id; a socket of a worker acknowledges a delivery with
//!   `w<index>`;
//! * `/ctl/adapter/count` answers the server count;
//! * events gain `deliver <sids> <packet>`, `complete <id> err=<e> <value>`
//!   (value `sockets=..`, `replies=..` or `acks=<sid>:<payload>,..`, sorted),
//!   `server-event <packet>`, `node-up <uid>`, `node-down <uid>`.
//!
//! Server-side events are answered, and deliveries with acks acknowledged,
//! with `w<index>` unless `SIO_TEST_SILENT` names this worker index.
//!
//! Not part of the product; the tests drive it through the sticky port.

use std::collections::HashSet;
use std::convert::Infallible;
use std::hash::{DefaultHasher, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use sio_cluster_host::link::handoff::accept_loop;
use sio_cluster_host::link::worker::{
    Incoming as HubMsg, LinkOptions, LinkSender, WorkerEnv, WorkerLink,
};
use sio_cluster_host::primary::sticky::query_param;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The adapter nodes of this worker (adapter mode).
struct Adapter {
    nodes: Mutex<std::collections::BTreeMap<String, sio_cluster_host::WasmNode>>,
    start: std::time::Instant,
    silent: bool,
    /// How the component was loaded: `precompiled`, `compiled` or
    /// `fallback:<reason>`.
    loaded: String,
}

struct State {
    adapter: Option<Adapter>,
    index: u32,
    listen: String,
    hb: String,
    pid: u32,
    report: bool,
    uids: Vec<(String, u64)>,
    sessions: Mutex<HashSet<String>>,
    events: Mutex<Vec<String>>,
    link: LinkSender,
    /// Set by `/ctl/stall`: never take another message from the link.
    stalled: AtomicBool,
}

fn now_micros() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0)
}

fn new_sid() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut raw = [0u8; 20];
    if getrandom::fill(&mut raw).is_err() {
        raw.iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = (now_micros() as u8).wrapping_add(i as u8));
    }
    raw.iter()
        .map(|b| ALPHABET[(*b & 63) as usize] as char)
        .collect()
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r
}

fn body_hash(b: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    h.write(b);
    h.finish()
}

async fn handle(
    state: Arc<State>,
    via: &'static str,
    mut req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let query = req.uri().query().map(str::to_string);
    let q = query.as_deref();
    let path = req.uri().path().to_string();
    let sid = query_param(q, "sid").map(str::to_string);

    if req.headers().contains_key(http::header::UPGRADE) {
        let on = hyper::upgrade::on(&mut req);
        let index = state.index;
        tokio::spawn(async move {
            if let Ok(up) = on.await {
                let mut io = TokioIo::new(up);
                let _ = io
                    .write_all(format!("worker={index} via={via}\n").as_bytes())
                    .await;
                let mut buf = [0u8; 16 * 1024];
                loop {
                    match io.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if io.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            }
        });
        let mut r = text(StatusCode::SWITCHING_PROTOCOLS, String::new());
        r.headers_mut().insert(
            http::header::UPGRADE,
            http::HeaderValue::from_static("websocket"),
        );
        r.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("Upgrade"),
        );
        return Ok(r);
    }

    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return Ok(text(StatusCode::BAD_REQUEST, format!("body error: {e}"))),
    };

    let nsp_uid = |nsp: &str| state.uids.iter().find(|(n, _)| n == nsp).map(|(_, u)| *u);
    let resp = match path.as_str() {
        "/ctl/info" => {
            let uids: Vec<String> = state
                .uids
                .iter()
                .map(|(n, u)| format!("{n}={u:016x}"))
                .collect();
            text(
                StatusCode::OK,
                format!(
                    "worker={} pid={} uids={} listen={} hb={} component={}",
                    state.index,
                    state.pid,
                    uids.join(","),
                    state.listen,
                    state.hb,
                    state.adapter.as_ref().map_or("none", |a| a.loaded.as_str())
                ),
            )
        }
        "/ctl/publish" | "/ctl/send" => {
            let nsp = query_param(q, "nsp").unwrap_or("/").replace("%2F", "/");
            let Some(uid) = nsp_uid(&nsp) else {
                return Ok(text(StatusCode::NOT_FOUND, format!("no node for {nsp}")));
            };
            let r = if path == "/ctl/publish" {
                state.link.publish(uid, &nsp, &body)
            } else {
                match query_param(q, "target").and_then(|t| u64::from_str_radix(t, 16).ok()) {
                    Some(target) => state.link.send(uid, target, &nsp, &body),
                    None => return Ok(text(StatusCode::BAD_REQUEST, "bad target".into())),
                }
            };
            match r {
                Ok(()) => text(StatusCode::OK, "ok".into()),
                Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            }
        }
        p if p.starts_with("/ctl/adapter/") => adapter_ctl(&state, p, q, &body),
        "/ctl/stall" => {
            state.stalled.store(true, Ordering::SeqCst);
            text(StatusCode::OK, "stalled".into())
        }
        "/ctl/events" => {
            let ev = state
                .events
                .lock()
                .map(|e| e.join("\n"))
                .unwrap_or_default();
            text(StatusCode::OK, ev)
        }
        "/ctl/close" => {
            if let Some(sid) = &sid {
                if let Ok(mut s) = state.sessions.lock() {
                    s.remove(sid);
                }
                if state.report {
                    let _ = state.link.session_closed(sid);
                }
            }
            text(StatusCode::OK, "ok".into())
        }
        _ => match sid {
            None if query_param(q, "EIO").is_some() => {
                let sid = new_sid();
                if let Ok(mut s) = state.sessions.lock() {
                    s.insert(sid.clone());
                }
                if state.report {
                    let _ = state.link.session_opened(&sid);
                }
                text(
                    StatusCode::OK,
                    format!(
                        "0{{\"sid\":\"{sid}\",\"upgrades\":[\"websocket\"],\"pingInterval\":25000,\"pingTimeout\":20000,\"maxPayload\":1000000}}"
                    ),
                )
            }
            Some(sid)
                if state
                    .sessions
                    .lock()
                    .map(|s| s.contains(&sid))
                    .unwrap_or(false) =>
            {
                text(
                    StatusCode::OK,
                    format!(
                        "worker={} pid={} sid={sid} len={} hash={:016x}",
                        state.index,
                        state.pid,
                        body.len(),
                        body_hash(&body)
                    ),
                )
            }
            Some(_) => text(
                StatusCode::BAD_REQUEST,
                "{\"code\":1,\"message\":\"Session ID unknown\"}".into(),
            ),
            None => text(
                StatusCode::OK,
                format!("worker={} pid={}", state.index, state.pid),
            ),
        },
    };
    Ok(resp)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let env = match WorkerEnv::from_env() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("test worker: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let (link, mut rx) = match WorkerLink::connect(&env, LinkOptions::default()).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("test worker: cannot attach: {e}");
            return std::process::ExitCode::from(3);
        }
    };
    let listener = match env
        .http_listener()
        .and_then(|l| tokio::net::TcpListener::from_std(l).map_err(Into::into))
    {
        Ok(l) => l,
        Err(e) => {
            eprintln!("test worker: no listener: {e}");
            return std::process::ExitCode::from(4);
        }
    };
    if env.listen_fd.is_none()
        && let Ok(addr) = listener.local_addr()
    {
        println!("LISTEN {addr}");
    }
    let nsps = std::env::var("SIO_TEST_NSPS").unwrap_or_else(|_| "/".into());
    let uids = nsps
        .split(',')
        .filter(|n| !n.is_empty())
        .map(|n| (n.to_string(), getrandom::u64().unwrap_or(1)))
        .collect::<Vec<_>>();
    let adapter = if std::env::var("SIO_TEST_ADAPTER").as_deref() == Ok("1") {
        match start_adapter(link.worker_index(), &uids, &env) {
            Ok(a) => Some(a),
            Err(e) => {
                eprintln!("test worker: adapter: {e:#}");
                return std::process::ExitCode::from(5);
            }
        }
    } else {
        None
    };
    let state = Arc::new(State {
        index: link.worker_index(),
        listen: listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default(),
        hb: format!(
            "{},{}",
            env.heartbeat_interval.as_millis(),
            env.heartbeat_timeout.as_millis()
        ),
        pid: std::process::id(),
        report: std::env::var("SIO_TEST_REPORT_SESSIONS").as_deref() == Ok("1"),
        uids,
        sessions: Mutex::new(HashSet::new()),
        events: Mutex::new(Vec::new()),
        link,
        adapter,
        stalled: AtomicBool::new(false),
    });

    let adapter_mode = state.adapter.is_some();
    let state = if adapter_mode {
        state
    } else {
        // Announce every node once so the hub learns the uids (like an
        // adapter's initial heartbeat).
        for (nsp, uid) in &state.uids {
            let _ = state.link.publish(*uid, nsp, b"hello");
        }
        state
    };
    if adapter_mode {
        for (nsp, _) in state.uids.clone() {
            let effects = with_node(&state, &nsp, |n, now| n.init(now));
            carry(&state, &nsp, effects);
        }
        let tick_state = state.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                for (nsp, _) in tick_state.uids.clone() {
                    let effects = with_node(&tick_state, &nsp, |n, now| n.tick(now));
                    carry(&tick_state, &nsp, effects);
                }
            }
        });
    }

    let ev_state = state.clone();
    tokio::spawn(async move {
        loop {
            let Some(msg) = rx.recv().await else { break };
            if ev_state.stalled.load(Ordering::SeqCst) {
                // A hung worker: this message and every later one stay
                // unprocessed; the link's messages pile up, unread.
                std::future::pending::<()>().await;
            }
            if ev_state.adapter.is_some() {
                let nsp = match &msg {
                    HubMsg::Frame { nsp, .. } | HubMsg::NodeDown { nsp, .. } => nsp.clone(),
                };
                let effects = with_node(&ev_state, &nsp, |n, now| {
                    match match &msg {
                        HubMsg::Frame { frame, .. } => n.on_frame(now, frame)?,
                        HubMsg::NodeDown { uid, .. } => Ok(n.node_down(now, *uid)?),
                    } {
                        Ok(e) => Ok(e),
                        Err(e) => {
                            log(&ev_state, format!("refused {e}"));
                            Ok(Vec::new())
                        }
                    }
                });
                carry(&ev_state, &nsp, effects);
                continue;
            }
            let line = match msg {
                HubMsg::Frame { nsp, from, frame } => format!(
                    "{} frame {nsp} {from:016x} {} {}",
                    now_micros(),
                    frame.len(),
                    String::from_utf8_lossy(&frame[..frame.len().min(64)])
                ),
                HubMsg::NodeDown { uid, nsp } => {
                    format!("{} nodedown {uid:016x} {nsp}", now_micros())
                }
            };
            if let Ok(mut e) = ev_state.events.lock() {
                e.push(line);
            }
        }
    });

    match env.handoff_receiver() {
        Ok(Some(handoffs)) => {
            let state = state.clone();
            accept_loop(handoffs, move |io| {
                tokio::spawn(serve(state.clone(), "handoff", io));
            });
        }
        Ok(None) => {}
        Err(e) => {
            eprintln!("test worker: handoff socket: {e}");
            return std::process::ExitCode::from(4);
        }
    }

    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(serve(state.clone(), "listener", stream));
    }
}

async fn serve<I>(state: Arc<State>, via: &'static str, io: I)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| handle(state.clone(), via, req));
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades()
        .await;
}

fn log(state: &State, line: String) {
    if let Ok(mut e) = state.events.lock() {
        e.push(format!("{} {line}", now_micros()));
    }
}

fn start_adapter(index: u32, uids: &[(String, u64)], env: &WorkerEnv) -> anyhow::Result<Adapter> {
    use sio_cluster_host::adapter::{Config, RoomOwner};
    use sio_cluster_host::runtime::artifact::{Loaded, WorkerComponent};
    use sio_cluster_host::{AdapterNode, EngineOptions, Limits};
    let (engine, loaded) = WorkerComponent::from_env().load(EngineOptions::default())?;
    let mut nodes = std::collections::BTreeMap::new();
    for (nsp, uid) in uids {
        let mut cfg = Config::new(*uid, nsp.clone(), RoomOwner::Component);
        cfg.heartbeat_interval_ms = env.heartbeat_interval.as_millis() as u32;
        cfg.heartbeat_timeout_ms = env.heartbeat_timeout.as_millis() as u32;
        if let Some(ms) = std::env::var("SIO_TEST_REQUEST_TIMEOUT")
            .ok()
            .and_then(|v| v.parse::<u32>().ok())
        {
            cfg.request_timeout_ms = ms;
        }
        let mut node = engine.instantiate(cfg, Limits::default())?;
        let sid = format!("w{index}");
        node.join(&sid, &[sid.clone(), "all".to_string()])?;
        nodes.insert(nsp.clone(), node);
    }
    let silent = std::env::var("SIO_TEST_SILENT")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        == Some(index);
    Ok(Adapter {
        nodes: Mutex::new(nodes),
        start: std::time::Instant::now(),
        silent,
        loaded: match loaded {
            Loaded::Precompiled => "precompiled".into(),
            Loaded::Compiled => "compiled".into(),
            Loaded::Fallback(reason) => format!("fallback:{}", reason.replace(' ', "_")),
        },
    })
}

/// Runs `f` on the node of `nsp`; a trap is logged and its effects kept.
fn with_node(
    state: &State,
    nsp: &str,
    f: impl FnOnce(
        &mut dyn sio_cluster_host::AdapterNode,
        u64,
    ) -> Result<Vec<sio_cluster_host::adapter::Effect>, sio_cluster_host::NodeError>,
) -> Vec<sio_cluster_host::adapter::Effect> {
    let Some(adapter) = &state.adapter else {
        return Vec::new();
    };
    let now = adapter.start.elapsed().as_millis() as u64;
    let Ok(mut nodes) = adapter.nodes.lock() else {
        return Vec::new();
    };
    let Some(node) = nodes.get_mut(nsp) else {
        return Vec::new();
    };
    match f(node, now) {
        Ok(e) => e,
        Err(sio_cluster_host::NodeError::Trapped { reason, effects }) => {
            log(state, format!("trapped {reason}"));
            effects
        }
        Err(e) => {
            log(state, format!("failed {e}"));
            Vec::new()
        }
    }
}

/// Sends the node's frames to the hub and logs (or answers) the rest.
fn carry(state: &State, nsp: &str, effects: Vec<sio_cluster_host::adapter::Effect>) {
    use sio_cluster_host::adapter::{Ack, Effect, RequestValue};
    let Some(uid) = state.uids.iter().find(|(n, _)| n == nsp).map(|(_, u)| *u) else {
        return;
    };
    let local = match state.link.carry(uid, nsp, effects) {
        Ok(l) => l,
        Err(e) => {
            log(state, format!("link {e}"));
            return;
        }
    };
    let silent = state.adapter.as_ref().is_some_and(|a| a.silent);
    for e in local {
        match e {
            Effect::Deliver(d) => {
                log(
                    state,
                    format!(
                        "deliver {} {}",
                        d.sids.join(","),
                        String::from_utf8_lossy(&d.packet)
                    ),
                );
                if let (Some(q), false) = (d.ack, silent) {
                    for sid in d.sids {
                        let ack = Ack {
                            sid,
                            payload: format!("w{}", state.index).into_bytes(),
                        };
                        let more = with_node(state, nsp, |n, now| n.ack(now, q, ack));
                        carry(state, nsp, more);
                    }
                }
            }
            Effect::Complete(c) => {
                let value = match &c.value {
                    RequestValue::Sockets(s) => {
                        let mut ids: Vec<&str> = s.iter().map(|s| s.id.as_str()).collect();
                        ids.sort();
                        format!("sockets={}", ids.join(","))
                    }
                    RequestValue::Replies(r) => {
                        let mut r: Vec<String> = r
                            .iter()
                            .map(|r| String::from_utf8_lossy(r).into_owned())
                            .collect();
                        r.sort();
                        format!("replies={}", r.join(","))
                    }
                    RequestValue::Acks(a) => {
                        let mut a: Vec<String> = a
                            .iter()
                            .map(|a| format!("{}:{}", a.sid, String::from_utf8_lossy(&a.payload)))
                            .collect();
                        a.sort();
                        format!("acks={}", a.join(","))
                    }
                    other => format!("{other:?}"),
                };
                let err = c.error.as_deref().unwrap_or("none").replace(' ', "_");
                log(state, format!("complete {} err={err} {value}", c.id));
            }
            Effect::ServerEvent(p, q) => {
                log(
                    state,
                    format!("server-event {}", String::from_utf8_lossy(&p)),
                );
                if let (Some(q), false) = (q, silent) {
                    let answer = format!("w{}", state.index).into_bytes();
                    let more = with_node(state, nsp, |n, now| n.reply(now, q, answer));
                    carry(state, nsp, more);
                }
            }
            Effect::NodeUp(u) => log(state, format!("node-up {u:016x}")),
            Effect::NodeDown(u) => log(state, format!("node-down {u:016x}")),
            other => log(state, format!("effect {other:?}")),
        }
    }
}

fn adapter_ctl(state: &State, path: &str, q: Option<&str>, body: &[u8]) -> Response<Full<Bytes>> {
    use sio_cluster_host::adapter::Opts;
    let nsp = query_param(q, "nsp").unwrap_or("/").replace("%2F", "/");
    match path {
        "/ctl/adapter/broadcast" => {
            let opts = match query_param(q, "room") {
                Some(r) => Opts::rooms([r]),
                None => Opts::all(),
            };
            let packet = body.to_vec();
            let effects = with_node(state, &nsp, |n, now| n.broadcast(now, opts, packet));
            carry(state, &nsp, effects);
            text(StatusCode::OK, "ok".into())
        }
        "/ctl/adapter/fetch" | "/ctl/adapter/emit" => {
            let mut id = None;
            let packet = body.to_vec();
            let fetch = path == "/ctl/adapter/fetch";
            let timeout = query_param(q, "timeout").and_then(|t| t.parse::<u32>().ok());
            let effects = with_node(state, &nsp, |n, now| {
                let (i, e) = if fetch {
                    let (i, e) = n.fetch_sockets(now, Opts::all(), timeout)?;
                    (Some(i), e)
                } else {
                    n.server_side_emit(now, packet, true)?
                };
                id = i;
                Ok(e)
            });
            carry(state, &nsp, effects);
            match id {
                Some(id) => text(StatusCode::OK, format!("{id}")),
                None => text(StatusCode::INTERNAL_SERVER_ERROR, "no request".into()),
            }
        }
        "/ctl/adapter/ask" => {
            let opts = match query_param(q, "room") {
                Some(r) => Opts::rooms([r]),
                None => Opts::all(),
            };
            let timeout = query_param(q, "timeout")
                .and_then(|t| t.parse::<u32>().ok())
                .unwrap_or(5000);
            let packet = body.to_vec();
            let mut id = None;
            let effects = with_node(state, &nsp, |n, now| {
                let (i, e) = n.broadcast_with_ack(now, opts, packet, timeout, false)?;
                id = Some(i);
                Ok(e)
            });
            carry(state, &nsp, effects);
            match id {
                Some(id) => text(StatusCode::OK, format!("{id}")),
                None => text(StatusCode::INTERNAL_SERVER_ERROR, "no request".into()),
            }
        }
        "/ctl/adapter/count" => {
            let mut count = 0;
            with_node(state, &nsp, |n, _| {
                count = n.server_count()?;
                Ok(Vec::new())
            });
            text(StatusCode::OK, format!("{count}"))
        }
        _ => text(StatusCode::NOT_FOUND, "unknown adapter command".into()),
    }
}
