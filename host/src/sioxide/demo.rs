//! The demo worker: a socketioxide server on [`WasmClusterAdapter`] that
//! implements `shared/demo-contract.md` on namespace `/` (and the same events
//! on `/custom` and on the tenant namespaces `/tenant/<id>`, to show that
//! namespaces are separate clusters, each on its own component instance).
//!
//! `sio-cluster-host demo` runs the primary with this worker as its command;
//! the acceptance tests and benchmarks drive it through the contract. Every
//! other path than `/socket.io/` is the demo page ([`super::page`]).
//!
//! Payloads are [`rmpv::Value`], which keeps binary attachments intact.

use std::convert::Infallible;
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rmpv::Value;
use socketioxide::adapter::Emitter;
use socketioxide::extract::{AckSender, Data, SocketRef};
use socketioxide::{SocketIo, SocketIoConfig};
use tracing::{error, info, warn};

use crate::link::handoff::accept_loop;
use crate::link::worker::WorkerEnv;
use crate::sioxide::compact::Compact;
use crate::sioxide::page::{self, CorsOrigins, PageService};
use crate::sioxide::slow::{SlowConsumers, SlowPolicy};
use crate::sioxide::{WasmCluster, WasmClusterAdapter};

/// The adapter type of the demo.
pub type Adapter = WasmClusterAdapter<Emitter>;

/// Packets queued per client before socketioxide drops more (its default,
/// 128, drops packets in bursts a Node server would queue). The bound that
/// matters for memory is in bytes: [`SlowPolicy`] (16 MiB per client by
/// default, `SIO_CLIENT_MAX_BYTES`; 20 s without progress,
/// `SIO_CLIENT_STALL_MS`). `SIO_DEMO_SOCKET_BUFFER` overrides it (for
/// measurements: bench/idle-memory.mjs).
pub const SOCKET_BUFFER: usize = 65_536;

/// Read buffer of each WebSocket (tungstenite's; zero-filled on the first
/// read, so resident for every client): **2 KiB**, half engineioxide's
/// default, which brings an idle client to the Node reference's memory
/// (BENCHMARKS.md, "Memory per idle client"). A client frame larger than it
/// takes more reads: about 14 % fewer messages/s when every client sends
/// 16 KiB frames. `SIO_DEMO_WS_READ_BUFFER` (bytes, 64 to 16 MiB) sets it.
pub const WS_READ_BUFFER: usize = 2048;

/// `SIO_DEMO_WS_READ_BUFFER`, or [`WS_READ_BUFFER`].
fn ws_read_buffer() -> Result<usize, DemoError> {
    match std::env::var("SIO_DEMO_WS_READ_BUFFER") {
        Err(_) => Ok(WS_READ_BUFFER),
        Ok(v) => match v.parse::<usize>() {
            Ok(n) if (64..=16 << 20).contains(&n) => Ok(n),
            _ => Err(DemoError::Cluster(format!(
                "SIO_DEMO_WS_READ_BUFFER must be a byte count from 64 to 16777216, not {v:?}"
            ))),
        },
    }
}

/// Namespaces the demo serves.
pub const NAMESPACES: [&str; 2] = ["/", "/custom"];

/// Tenant namespaces (dynamic): `/tenant/<id>`.
pub const TENANT_NAMESPACES: &str = "/tenant/{id}";

/// Answers other workers' server-side `ping` on `nsp` with this worker's index.
fn answer_pings(cluster: &WasmCluster, nsp: &str) {
    let worker = cluster.worker_index();
    cluster.on_server_event(nsp, move |ev| {
        if ev.event == "ping"
            && let Some(reply) = ev.reply
            && let Err(e) = reply.send(&worker)
        {
            warn!(error = %e, "server-side reply failed");
        }
    });
}

/// Errors that stop the demo worker (with the exit code it uses).
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// Environment or hub link unusable (exit 3).
    #[error("cannot join the cluster: {0}")]
    Cluster(String),
    /// No HTTP listener (exit 4).
    #[error("cannot listen: {0}")]
    Listen(String),
}

impl DemoError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            DemoError::Cluster(_) => 3,
            DemoError::Listen(_) => 4,
        }
    }
}

#[derive(serde::Serialize)]
struct WhoAmI {
    pid: u32,
    worker: u32,
}

#[derive(serde::Serialize)]
struct FetchedSocket {
    id: String,
    rooms: Vec<String>,
}

#[derive(serde::Serialize)]
struct Answers<T> {
    err: Option<String>,
    responses: Vec<T>,
}

/// The broadcast operators of namespace `nsp`.
fn of(
    io: &SocketIo<Adapter>,
    nsp: &str,
) -> Option<socketioxide::operators::BroadcastOperators<Adapter>> {
    let ops = io.of(nsp);
    if ops.is_none() {
        warn!(nsp, "namespace not found");
    }
    ops
}

/// Sorts JSON values: numbers numerically, then everything else by text.
fn sort_values(values: &mut [serde_json::Value]) {
    values.sort_by(|a, b| match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.to_string().cmp(&b.to_string()),
    });
}

async fn on_connect(
    cluster: WasmCluster,
    slow: Option<SlowConsumers>,
    s: SocketRef<Adapter>,
    io: SocketIo<Adapter>,
) {
    {
        if let Some(slow) = &slow {
            slow.register(&s);
            let slow = slow.clone();
            s.on("slow_stats", async move |ack: AckSender<Adapter>| {
                let _ = ack.send(&slow.stats());
            });
        }
        let worker = cluster.worker_index();
        let nsp = s.ns().to_string();
        // As in Socket.IO, every socket is in the room named by its own id.
        s.join(s.id.as_str().to_string());
        // What other workers' fetchSockets() show of it (Node workers read it
        // as `RemoteSocket.handshake`).
        let handshake = crate::sioxide::handshake_json(s.req_parts(), &serde_json::json!({}), None);
        let _ = cluster.set_socket_info(&nsp, s.id.as_str(), &handshake, &serde_json::Value::Null);
        if nsp == "/" {
            let _ = cluster.link().session_opened(s.id.as_str());
            let c = cluster.clone();
            s.on_disconnect(async move |s: SocketRef<Adapter>| {
                let _ = c.link().session_closed(s.id.as_str());
            });
        }

        s.on("whoami", async move |ack: AckSender<Adapter>| {
            let _ = ack.send(&WhoAmI {
                pid: std::process::id(),
                worker,
            });
        });
        s.on(
            "join",
            async |s: SocketRef<Adapter>, Data(room): Data<String>, ack: AckSender<Adapter>| {
                s.join(room);
                let _ = ack.send(&true);
            },
        );
        s.on(
            "leave",
            async |s: SocketRef<Adapter>, Data(room): Data<String>, ack: AckSender<Adapter>| {
                s.leave(room);
                let _ = ack.send(&true);
            },
        );
        let (io2, ns) = (io.clone(), nsp.clone());
        s.on(
            "to",
            async move |Data((room, event, payload)): Data<(String, String, Value)>| {
                let Some(ops) = of(&io2, &ns) else { return };
                if let Err(e) = ops.to(room).emit(&event, &payload).await {
                    warn!(error = %e, "to: emit failed");
                }
            },
        );
        let (io2, ns) = (io.clone(), nsp.clone());
        s.on(
            "to_except",
            async move |Data((room, except, event, payload)): Data<(
                String,
                String,
                String,
                Value,
            )>| {
                let Some(ops) = of(&io2, &ns) else { return };
                if let Err(e) = ops.to(room).except(except).emit(&event, &payload).await {
                    warn!(error = %e, "to_except: emit failed");
                }
            },
        );
        let (io2, ns) = (io.clone(), nsp.clone());
        s.on(
            "all",
            async move |Data((event, payload)): Data<(String, Value)>| {
                let Some(ops) = of(&io2, &ns) else { return };
                if let Err(e) = ops.emit(&event, &payload).await {
                    warn!(error = %e, "all: emit failed");
                }
            },
        );
        s.on(
            "broadcast",
            async |s: SocketRef<Adapter>, Data((event, payload)): Data<(String, Value)>| {
                if let Err(e) = s.broadcast().emit(&event, &payload).await {
                    warn!(error = %e, "broadcast: emit failed");
                }
            },
        );
        let (io2, ns) = (io.clone(), nsp.clone());
        s.on(
            "fetch",
            async move |Data(room): Data<String>, ack: AckSender<Adapter>| {
                let Some(ops) = of(&io2, &ns) else { return };
                let sockets = match ops.within(room).fetch_sockets().await {
                    Ok(s) => s,
                    Err(e) => {
                        warn!(error = %e, "fetch failed");
                        let _ = ack.send(&Vec::<FetchedSocket>::new());
                        return;
                    }
                };
                let rooms = futures_util::future::join_all(sockets.iter().map(|s| s.rooms())).await;
                let mut out: Vec<FetchedSocket> = sockets
                    .iter()
                    .zip(rooms)
                    .map(|(s, r)| {
                        let mut rooms: Vec<String> = r
                            .unwrap_or_default()
                            .into_iter()
                            .map(|r| r.to_string())
                            .collect();
                        rooms.sort();
                        FetchedSocket {
                            id: s.data().id.as_str().to_string(),
                            rooms,
                        }
                    })
                    .collect();
                out.sort_by(|a, b| a.id.cmp(&b.id));
                let _ = ack.send(&out);
            },
        );
        let (io2, ns) = (io.clone(), nsp.clone());
        s.on(
            "sockets_join",
            async move |Data((room, new_room)): Data<(String, String)>, ack: AckSender<Adapter>| {
                let Some(ops) = of(&io2, &ns) else { return };
                let ok = ops.within(room).join(new_room).await.is_ok();
                let _ = ack.send(&ok);
            },
        );
        let (io2, ns) = (io.clone(), nsp.clone());
        s.on(
            "sockets_leave",
            async move |Data((room, old_room)): Data<(String, String)>, ack: AckSender<Adapter>| {
                let Some(ops) = of(&io2, &ns) else { return };
                let ok = ops.within(room).leave(old_room).await.is_ok();
                let _ = ack.send(&ok);
            },
        );
        let (io2, ns) = (io.clone(), nsp.clone());
        s.on(
            "disconnect_room",
            async move |Data(room): Data<String>, ack: AckSender<Adapter>| {
                let _ = ack.send(&true);
                let Some(ops) = of(&io2, &ns) else { return };
                if let Err(e) = ops.within(room).disconnect().await {
                    warn!(error = %e, "disconnect_room failed");
                }
            },
        );
        let (io2, ns) = (io.clone(), nsp.clone());
        s.on(
            "ask",
            async move |Data((room, timeout_ms)): Data<(String, u64)>, ack: AckSender<Adapter>| {
                let Some(ops) = of(&io2, &ns) else { return };
                let stream = ops
                    .to(room.clone())
                    .timeout(Duration::from_millis(timeout_ms))
                    .emit_with_ack::<_, Value>("question", &room)
                    .await;
                let mut answers = Answers::<Value> {
                    err: None,
                    responses: Vec::new(),
                };
                match stream {
                    Err(e) => answers.err = Some(e.to_string()),
                    Ok(stream) => {
                        let mut stream = std::pin::pin!(stream);
                        while let Some((_, res)) = stream.next().await {
                            match res {
                                Ok(v) => answers.responses.push(v),
                                Err(_) => answers.err = Some("operation has timed out".to_string()),
                            }
                        }
                    }
                }
                let _ = ack.send(&answers);
            },
        );
        let c = cluster.clone();
        let nsp2 = nsp.clone();
        s.on(
            "server_emit",
            async move |Data(payload): Data<serde_json::Value>, ack: AckSender<Adapter>| {
                let answers = match c.server_side_emit_with_ack(&nsp2, "ping", &payload).await {
                    Ok(mut responses) => {
                        sort_values(&mut responses);
                        Answers {
                            err: None,
                            responses,
                        }
                    }
                    Err(mut e) => {
                        sort_values(&mut e.responses);
                        Answers {
                            err: Some(e.message),
                            responses: e.responses,
                        }
                    }
                };
                let _ = ack.send(&answers);
            },
        );
        let c = cluster.clone();
        s.on("server_count", async move |ack: AckSender<Adapter>| {
            let n = c.server_count(&nsp).unwrap_or(1);
            let _ = ack.send(&n);
        });
    }
}

/// Runs the demo worker from the environment `sio-cluster-host run` sets.
pub async fn run_worker() -> Result<(), DemoError> {
    let env = WorkerEnv::from_env().map_err(|e| DemoError::Cluster(e.to_string()))?;
    let cluster = WasmCluster::from_env(&env)
        .await
        .map_err(|e| DemoError::Cluster(e.to_string()))?;
    let listener = env
        .http_listener()
        .map_err(|e| DemoError::Listen(e.to_string()))
        .and_then(|l| {
            tokio::net::TcpListener::from_std(l).map_err(|e| DemoError::Listen(e.to_string()))
        })?;

    let origins = CorsOrigins::from_env().map_err(DemoError::Cluster)?;
    let slow = SlowPolicy::from_env()
        .map_err(DemoError::Cluster)?
        .map(SlowConsumers::new);
    if let Some(slow) = &slow {
        cluster.meter_deliveries(slow.clone());
    }
    // Socket.IO on `/socket.io/`, the demo page on every other path, all
    // behind the CORS policy of `demo --cors-origin`.
    let (sio, io) = SocketIo::builder()
        .with_config(SocketIoConfig::default())
        .max_buffer_size(
            std::env::var("SIO_DEMO_SOCKET_BUFFER")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(SOCKET_BUFFER),
        )
        .ws_read_buffer_size(ws_read_buffer()?)
        .with_adapter::<Adapter>(cluster.clone())
        .build_with_inner_svc(PageService);
    // Compact: the handshake's parts, kept per socket, no longer pin hyper's
    // 8 KiB read buffer (see `compact`).
    let svc = TowerToHyperService::new(Compact::new(page::cors(sio, &origins)));
    for nsp in NAMESPACES {
        let (c, sl) = (cluster.clone(), slow.clone());
        io.ns(nsp, move |s: SocketRef<Adapter>, io: SocketIo<Adapter>| {
            on_connect(c.clone(), sl.clone(), s, io)
        })
        .await
        .map_err(|e| DemoError::Cluster(format!("namespace {nsp}: {e}")))?;
        answer_pings(&cluster, nsp);
    }
    // Tenants: one dynamic namespace per tenant, each with its own adapter
    // instance (own Store, own limits), created on its first client here.
    let (c, sl) = (cluster.clone(), slow.clone());
    io.dyn_ns(
        TENANT_NAMESPACES,
        move |s: SocketRef<Adapter>, io: SocketIo<Adapter>| {
            answer_pings(&c, s.ns());
            on_connect(c.clone(), sl.clone(), s, io)
        },
    )
    .map_err(|e| DemoError::Cluster(format!("namespace {TENANT_NAMESPACES}: {e}")))?;
    // With `--handoff-websocket` (on by default for `demo`) the primary
    // passes WebSocket connections here instead of proxying their bytes.
    match env.handoff_receiver() {
        Ok(Some(handoffs)) => {
            let (svc, slow) = (svc.clone(), slow.clone());
            accept_loop(handoffs, move |io| {
                let serve = hyper::server::conn::http1::Builder::new();
                let conn = match &slow {
                    Some(slow) => {
                        let (io, svc) = slow.connection(io, svc.clone());
                        serve
                            .serve_connection(TokioIo::new(io), svc)
                            .with_upgrades()
                            .boxed()
                    }
                    None => serve
                        .serve_connection(TokioIo::new(io), svc.clone())
                        .with_upgrades()
                        .boxed(),
                };
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "handed-off connection ended with an error");
                    }
                });
            });
        }
        Ok(None) => {}
        Err(e) => return Err(DemoError::Listen(format!("handoff socket: {e}"))),
    }
    info!(
        worker = cluster.worker_index(),
        addr = ?listener.local_addr().ok(),
        "demo worker serving"
    );
    // SIGTERM: drain (see `drain`) instead of dying with the clients cut.
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| DemoError::Listen(format!("SIGTERM handler: {e}")))?;
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = sigterm.recv() => break,
        };
        let (stream, _) = match accepted {
            Ok(s) => s,
            Err(e) => {
                error!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (svc, slow) = (svc.clone(), slow.clone());
        tokio::spawn(async move {
            let serve = hyper::server::conn::http1::Builder::new();
            let conn = match &slow {
                Some(slow) => {
                    let (io, svc) = slow.connection(stream, svc);
                    serve
                        .serve_connection(TokioIo::new(io), svc)
                        .with_upgrades()
                        .boxed()
                }
                None => serve
                    .serve_connection(TokioIo::new(stream), svc)
                    .with_upgrades()
                    .boxed(),
            };
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            Ok::<(), Infallible>(())
        });
    }
    drop(listener);
    drain(&cluster, &io, env.grace.unwrap_or(Duration::from_secs(10))).await;
    Ok(())
}

/// The graceful drain on SIGTERM, within `grace` (the primary's SIGKILL
/// comes after it): no new connections are accepted (the listener is
/// closed; the primary's rolling restart routes no new session here); the
/// cluster requests this worker has in flight may finish (a quarter of the
/// grace at most); then every client's Engine.IO transport is closed (the
/// official client sees `transport close` and reconnects, through the
/// primary, to another worker) and every namespace leaves the cluster
/// (ADAPTER_CLOSE: the other workers forget its nodes at once, no heartbeat
/// timeout); last the hub link is flushed.
pub async fn drain(cluster: &WasmCluster, io: &SocketIo<Adapter>, grace: Duration) {
    let t0 = std::time::Instant::now();
    info!(worker = cluster.worker_index(), "SIGTERM: draining");
    let settled = cluster.settle(grace / 4).await;
    if tokio::time::timeout(grace / 2, io.close()).await.is_err() {
        warn!("closing the clients took too long");
    }
    let flushed = cluster.flush(Duration::from_millis(500)).await;
    info!(
        worker = cluster.worker_index(),
        settled,
        flushed,
        ms = t0.elapsed().as_millis() as u64,
        "drained, exiting"
    );
}
