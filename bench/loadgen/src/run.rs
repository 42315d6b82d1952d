//! `sio-cluster-loadgen run`: the workload of bench/load.mjs (same flags, same
//! JSON report) with Engine.IO v4 / Socket.IO v5 spoken by hand over
//! tokio-tungstenite, so that the harness costs far less CPU per delivery than
//! the cluster it measures.
//!
//! C clients connect (each asks `whoami`, client i joins room `r{i % R}`);
//! clients 0..S-1 are also senders: sender k emits
//! `to("r{k % R}", "m", {t, seq, sender})` with `t` = CLOCK_MONOTONIC in µs.
//! Phases: connect (bounded, retries) → warm-up (not counted) → measurement →
//! drain (until every delivery of the measured messages arrived, bounded).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, ValueEnum};
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior, timeout};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::http::Uri;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::proto::{self, Packet};
use crate::sys;

/// Sending discipline of the senders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Closed loop: each sender keeps at most `--window` messages whose
    /// deliveries are not all received.
    Max,
    /// Open loop: `--rate` messages/s in total, evenly over the senders, 1 ms ticks.
    Rate,
}

fn non_negative(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("expected a number >= 0, got \"{s}\"")),
    }
}

fn positive(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("expected a number > 0, got \"{s}\"")),
    }
}

/// Options of `run`: the flags of bench/load.mjs, plus `--threads`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Cluster URL (http:// or ws://; TLS is not supported). Several URLs
    /// (comma-separated or repeated) split the clients: client i connects to
    /// URL i % n, and a worker is then named by its URL's index and its own
    /// index ("u1w0"), so that `crossed` counts deliveries between servers.
    #[arg(long, default_value = "http://127.0.0.1:3000", value_delimiter = ',', num_args = 1..)]
    pub url: Vec<String>,
    /// Number of clients.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    pub clients: u32,
    /// Number of rooms; client i joins room r{hash(i) % R} (see [`room_of`]).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub rooms: u32,
    /// Senders: clients 0..S-1; sender k sends to room r{k % R}. 0 (with
    /// --start-at-us): receive only, for a load spread over processes.
    #[arg(long, default_value_t = 10)]
    pub senders: u32,
    /// Start the warm-up at this CLOCK_MONOTONIC time (µs) instead of 200 ms
    /// after the connect phase, so that load client processes on one machine
    /// share one measurement window (their clients count every message sent
    /// in it).
    #[arg(long)]
    pub start_at_us: Option<u64>,
    /// max: closed loop with --window in flight per sender; rate: open loop at --rate.
    #[arg(long, value_enum, default_value_t = Mode::Max)]
    pub mode: Mode,
    /// In-flight messages per sender in max mode.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    pub window: u32,
    /// Messages/s in total (all senders) in rate mode.
    #[arg(long, default_value_t = 1000.0, value_parser = positive)]
    pub rate: f64,
    /// Warm-up seconds, excluded from the figures.
    #[arg(long, default_value_t = 2.0, value_parser = non_negative)]
    pub warmup: f64,
    /// Measurement window in seconds.
    #[arg(long, default_value_t = 10.0, value_parser = positive)]
    pub duration: f64,
    /// At most this many seconds to wait for the measured deliveries.
    #[arg(long, default_value_t = 3.0, value_parser = non_negative)]
    pub drain: f64,
    /// Transport: only websocket (accepted for compatibility with load.mjs).
    #[arg(long, default_value = "websocket")]
    pub transport: String,
    /// Client implementation: only rust (accepted for compatibility with load.mjs).
    #[arg(long, default_value = "rust")]
    pub client: String,
    /// Client processes: only 1 (use --threads for parallelism).
    #[arg(long, default_value_t = 1)]
    pub procs: u32,
    /// Tokio worker threads (default 1, to leave the other cores to the
    /// cluster); 0: a current-thread runtime (everything on the main thread).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(0..=256))]
    pub threads: u16,
    /// Senders emit `all` (to every client of the cluster) instead of `to`
    /// their room: each message is expected at every connected client.
    #[arg(long)]
    pub all: bool,
    /// Loopback source addresses: client i connects from 127.0.0.(1 + i % N),
    /// to get past the ephemeral ports of one address pair (~28 000 here)
    /// with a loopback cluster URL. 1: let the kernel choose.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=254))]
    pub source_addrs: u8,
    /// Add a string of B bytes to each payload.
    #[arg(long, default_value_t = 0)]
    pub payload_bytes: usize,
    /// Handshakes in flight.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    pub connect_concurrency: u32,
    /// Per-connection handshake deadline in ms, then retry.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(100..))]
    pub handshake_timeout: u64,
    /// Retries per client after a failed handshake.
    #[arg(long, default_value_t = 3)]
    pub connect_retries: u32,
    /// Give up if the connect phase takes longer (seconds).
    #[arg(long, default_value_t = 120.0, value_parser = positive)]
    pub connect_timeout: f64,
    /// Max mode: free a window slot after this many ms.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(10..))]
    pub msg_timeout: u64,
    /// Fail if the clients do not reach exactly N workers.
    #[arg(long)]
    pub expect_workers: Option<usize>,
    /// Also report the CPU used by PID and its descendants during the
    /// measurement (several PIDs, comma-separated or repeated: their sum).
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    pub cluster_pid: Vec<u32>,
    /// Also write the JSON report to FILE.
    #[arg(long)]
    pub json_out: Option<PathBuf>,
    /// Print only the human line (no JSON on stdout).
    #[arg(long)]
    pub quiet: bool,
}

impl RunArgs {
    /// Checks the combinations clap cannot; the message is for the user.
    pub fn validate(&self) -> Result<(), String> {
        if self.transport != "websocket" {
            return Err(format!(
                "--transport: only websocket is supported by the Rust client, got \"{}\"",
                self.transport
            ));
        }
        if self.client != "rust" {
            return Err(format!(
                "--client: this is the Rust client (rust); for \"{}\" use node bench/load.mjs",
                self.client
            ));
        }
        if self.procs != 1 {
            return Err("--procs: only 1 (use --threads T for more cores)".to_owned());
        }
        if self.senders == 0 && self.start_at_us.is_none() {
            return Err("--senders 0 (receive only) needs --start-at-us".to_owned());
        }
        if self.senders > self.clients {
            return Err(format!(
                "--senders ({}) cannot exceed --clients ({})",
                self.senders, self.clients
            ));
        }
        for u in &self.url {
            Target::parse(u).map_err(|e| format!("--url: {e}"))?;
        }
        Ok(())
    }
}

/// Where to connect: TCP address and the Engine.IO WebSocket URL.
#[derive(Debug, Clone)]
struct Target {
    addr: String,
    ws_url: String,
}

impl Target {
    fn parse(url: &str) -> Result<Target> {
        let uri: Uri = url
            .parse()
            .map_err(|e| anyhow!("not a URL: \"{url}\" ({e})"))?;
        match uri.scheme_str() {
            Some("http") | Some("ws") => {}
            Some("https") | Some("wss") => bail!("TLS is not supported: \"{url}\""),
            _ => bail!("expected http://host:port, got \"{url}\""),
        }
        let host = uri.host().ok_or_else(|| anyhow!("no host in \"{url}\""))?;
        let port = uri.port_u16().unwrap_or(80);
        Ok(Target {
            addr: format!("{host}:{port}"),
            ws_url: format!("ws://{host}:{port}/socket.io/?EIO=4&transport=websocket"),
        })
    }
}

/// The schedule and topology every client works with, fixed after the connect phase.
#[derive(Debug)]
struct Plan {
    warmup_start: u64,
    measure_start: u64,
    measure_end: u64,
    /// Worker of each sender (-1: not connected).
    sender_worker: Vec<i64>,
    /// Connected clients per room.
    room_size: Vec<u32>,
}

#[derive(Debug, Clone)]
enum Phase {
    Connecting,
    Running(Arc<Plan>),
    Stop,
}

/// A message whose deliveries are not all received yet (max mode).
#[derive(Debug)]
struct InFlight {
    remaining: u32,
    sent_us: u64,
}

/// Per sender: its in-flight messages, decremented by every receiver.
#[derive(Debug, Default)]
struct SenderSlot {
    inflight: Mutex<HashMap<u64, InFlight>>,
    wake: Notify,
}

impl SenderSlot {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, InFlight>> {
        self.inflight.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Debug)]
struct Shared {
    o: RunArgs,
    /// Client i connects to `targets[i % targets.len()]`.
    targets: Vec<Target>,
    senders: Vec<SenderSlot>,
    /// Deliveries of measured messages received so far (for the drain).
    recv_measured: AtomicU64,
    pad: String,
}

/// What a client reports once its handshake ended.
#[derive(Debug)]
struct ConnectReport {
    idx: usize,
    outcome: Result<(i64, u64), ()>,
    retries: u32,
    errors: Vec<String>,
}

/// What a sender reports once it stopped sending.
#[derive(Debug, Default)]
struct SentReport {
    k: usize,
    measured: u64,
    total: u64,
    timed_out: u64,
    skipped: u64,
}

/// Receive-side figures of one client.
#[derive(Debug, Default)]
struct ClientStats {
    lat_us: Vec<u32>,
    /// The latencies of the crossed deliveries (also in `lat_us`).
    lat_crossed_us: Vec<u32>,
    recv_measured: u64,
    crossed: u64,
    max_lat: u64,
    sum_lat: u64,
    in_window: u64,
    total_recv: u64,
    disconnects: u32,
    disconnect_reason: Option<String>,
    bad_frames: u64,
}

type Ws = WebSocketStream<TcpStream>;

/// A connected, joined client.
struct Conn {
    ws: Ws,
    sid: String,
    worker: i64,
    pid: u64,
}

#[derive(Deserialize)]
struct WhoAmI {
    pid: u64,
    worker: i64,
}

#[derive(Deserialize)]
struct ConnectAck {
    sid: String,
}

fn truncated(s: &str) -> String {
    let mut end = s.len().min(120);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    if end < s.len() {
        format!("{}…", &s[..end])
    } else {
        s.to_owned()
    }
}

/// The next text frame, answering Engine.IO pings on the way.
async fn next_text(ws: &mut Ws) -> Result<String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                if proto::parse(t.as_str()) == Packet::Ping {
                    ws.send(Message::text("3")).await?;
                    continue;
                }
                return Ok(t.as_str().to_owned());
            }
            Some(Ok(Message::Close(c))) => bail!("server closed the WebSocket ({c:?})"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
            None => bail!("connection closed"),
        }
    }
}

/// The data of the ack with id `id`.
async fn await_ack(ws: &mut Ws, id: u64) -> Result<String> {
    loop {
        let f = next_text(ws).await?;
        match proto::parse(&f) {
            Packet::Ack { id: got, data } if got == id => return Ok(data.to_owned()),
            Packet::Close | Packet::Disconnect => bail!("server disconnected the client"),
            _ => continue,
        }
    }
}

/// Engine.IO open, Socket.IO CONNECT, `whoami`, `join`.
/// The loopback source address of client `idx` with `--source-addrs n`
/// (`None` for 1: the kernel chooses).
fn source_addr(idx: usize, n: u8) -> Option<std::net::IpAddr> {
    (n > 1).then(|| std::net::Ipv4Addr::new(127, 0, 0, 1 + (idx % usize::from(n)) as u8).into())
}

async fn handshake(target: &Target, room: &str, source: Option<std::net::IpAddr>) -> Result<Conn> {
    let tcp = match source {
        None => TcpStream::connect(&target.addr)
            .await
            .with_context(|| format!("connect to {}", target.addr))?,
        Some(ip) => {
            let to = tokio::net::lookup_host(&target.addr)
                .await?
                .find(|a| a.is_ipv4())
                .ok_or_else(|| anyhow!("{} has no IPv4 address", target.addr))?;
            let sock = tokio::net::TcpSocket::new_v4()?;
            sock.bind(std::net::SocketAddr::new(ip, 0))
                .with_context(|| format!("bind to {ip}"))?;
            sock.connect(to)
                .await
                .with_context(|| format!("connect to {} from {ip}", target.addr))?
        }
    };
    tcp.set_nodelay(true)?;
    // tungstenite zero-fills the free part of its read buffer before every
    // read(2): with the 128 KiB default that memset is most of the harness's
    // CPU. 4 KiB still takes ~50 small frames per read.
    let config = WebSocketConfig::default().read_buffer_size(4 * 1024);
    let (mut ws, _) =
        tokio_tungstenite::client_async_with_config(target.ws_url.as_str(), tcp, Some(config))
            .await
            .context("WebSocket upgrade")?;
    let open = next_text(&mut ws).await?;
    if !matches!(proto::parse(&open), Packet::Open(_)) {
        bail!(
            "expected the Engine.IO open packet, got \"{}\"",
            truncated(&open)
        );
    }
    ws.send(Message::text("40")).await?;
    let sid = loop {
        let f = next_text(&mut ws).await?;
        match proto::parse(&f) {
            Packet::Connect(j) => {
                let a: ConnectAck = serde_json::from_str(j)
                    .with_context(|| format!("CONNECT answered \"{}\"", truncated(j)))?;
                break a.sid;
            }
            Packet::ConnectError(j) => bail!("CONNECT_ERROR {}", truncated(j)),
            Packet::Close => bail!("server closed the session"),
            _ => continue,
        }
    };
    ws.send(Message::text(proto::event_with_ack(0, "whoami", "")))
        .await?;
    let who = await_ack(&mut ws, 0).await?;
    let (w,): (WhoAmI,) = serde_json::from_str(&who)
        .with_context(|| format!("whoami answered {}", truncated(&who)))?;
    let room_json = serde_json::to_string(room)?;
    ws.send(Message::text(proto::event_with_ack(1, "join", &room_json)))
        .await?;
    let ok = await_ack(&mut ws, 1).await?;
    if ok != "[true]" {
        bail!("join answered {}", truncated(&ok));
    }
    Ok(Conn {
        ws,
        sid,
        worker: w.worker,
        pid: w.pid,
    })
}

/// A tokio instant for a CLOCK_MONOTONIC time in µs.
fn instant_at(us: u64) -> Instant {
    let now = sys::now_us();
    Instant::now() + Duration::from_micros(us.saturating_sub(now))
}

async fn client_task(
    idx: usize,
    shared: Arc<Shared>,
    sem: Arc<Semaphore>,
    conn_tx: mpsc::UnboundedSender<ConnectReport>,
    sent_tx: mpsc::UnboundedSender<SentReport>,
    phase_rx: watch::Receiver<Phase>,
) -> ClientStats {
    let o = &shared.o;
    let room = format!("r{}", room_of(idx, o.rooms as usize));
    let mut errors = Vec::new();
    let mut retries = 0;
    let hs = Duration::from_millis(o.handshake_timeout);
    let n_targets = shared.targets.len().max(1);
    let Some(target) = shared.targets.get(idx % n_targets) else {
        return ClientStats::default();
    };
    let conn = loop {
        let Ok(permit) = sem.acquire().await else {
            return ClientStats::default();
        };
        let source = source_addr(idx, o.source_addrs);
        let r = timeout(hs, handshake(target, &room, source)).await;
        drop(permit);
        let err = match r {
            Ok(Ok(c)) => break c,
            Ok(Err(e)) => format!("{e:#}"),
            Err(_) => format!("no handshake within {} ms", o.handshake_timeout),
        };
        if errors.len() < 3 {
            errors.push(format!("client {idx}: {err}"));
        }
        if retries >= o.connect_retries {
            let _ = conn_tx.send(ConnectReport {
                idx,
                outcome: Err(()),
                retries,
                errors,
            });
            return ClientStats::default();
        }
        retries += 1;
    };
    // With several URLs, workers of different servers may share an index:
    // tell them apart by the URL's index (see `worker_name`).
    let worker = if n_targets > 1 {
        ((idx % n_targets) as i64) * WORKERS_PER_URL + conn.worker
    } else {
        conn.worker
    };
    let _ = conn_tx.send(ConnectReport {
        idx,
        outcome: Ok((worker, conn.pid)),
        retries,
        errors,
    });
    drop(conn_tx);
    let mut c = Client {
        idx,
        target: format!("r{}", idx % o.rooms as usize),
        worker,
        sid: conn.sid,
        shared: shared.clone(),
        st: ClientStats::default(),
    };
    c.run(conn.ws, phase_rx, sent_tx).await;
    c.st
}

struct Client {
    idx: usize,
    /// The room this client sends to when it is a sender: r{k % R}.
    target: String,
    worker: i64,
    sid: String,
    shared: Arc<Shared>,
    st: ClientStats,
}

/// Why a client's loop ends.
enum End {
    Stop,
    Lost(String),
}

/// Send-side state of a sender.
struct SenderState {
    k: usize,
    seq: u64,
    measured: u64,
    timed_out: u64,
    skipped: u64,
    sending: bool,
    started: bool,
}

impl Client {
    async fn run(
        &mut self,
        mut ws: Ws,
        mut phase_rx: watch::Receiver<Phase>,
        sent_tx: mpsc::UnboundedSender<SentReport>,
    ) {
        // Until the plan arrives: keep the session alive. The phase futures are
        // created once and pinned: a `changed()` per frame would register with
        // the watch channel's waiter list on every delivery.
        let plan = {
            let next_phase = async {
                loop {
                    if phase_rx.changed().await.is_err() {
                        return None;
                    }
                    match &*phase_rx.borrow_and_update() {
                        Phase::Connecting => {}
                        Phase::Running(plan) => return Some(plan.clone()),
                        Phase::Stop => return None,
                    }
                }
            };
            tokio::pin!(next_phase);
            loop {
                tokio::select! {
                    m = ws.next() => {
                        if let Err(reason) = self.on_frame(m, &mut ws, None).await {
                            self.lost(reason);
                            return;
                        }
                    }
                    p = &mut next_phase => match p {
                        Some(plan) => break plan,
                        None => return close(ws).await,
                    },
                }
            }
        };
        let stop = async move {
            while phase_rx.changed().await.is_ok() {
                if matches!(*phase_rx.borrow_and_update(), Phase::Stop) {
                    return;
                }
            }
        };
        tokio::pin!(stop);
        let shared = self.shared.clone();
        let o = &shared.o;
        let mut sender = (self.idx < o.senders as usize).then_some(SenderState {
            k: self.idx,
            seq: 0,
            measured: 0,
            timed_out: 0,
            skipped: 0,
            sending: false,
            started: false,
        });
        let start_sleep = tokio::time::sleep_until(instant_at(plan.warmup_start));
        let end_sleep = tokio::time::sleep_until(instant_at(plan.measure_end));
        tokio::pin!(start_sleep, end_sleep);
        let mut tick = tokio::time::interval(match o.mode {
            Mode::Max => Duration::from_millis(100), // the timeout sweep
            Mode::Rate => Duration::from_millis(1),
        });
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let slot = sender.as_ref().and_then(|s| shared.senders.get(s.k));
        let per_sender = o.rate / f64::from(o.senders);
        let end = loop {
            let sending = sender.as_ref().is_some_and(|s| s.sending);
            let waiting = sender.as_ref().is_some_and(|s| !s.started);
            let reporting = sender.is_some();
            tokio::select! {
                m = ws.next() => {
                    if let Err(reason) = self.on_frame(m, &mut ws, Some(&plan)).await {
                        break End::Lost(reason);
                    }
                }
                () = &mut stop => break End::Stop,
                () = &mut start_sleep, if waiting => {
                    if let Some(s) = sender.as_mut() {
                        s.started = true;
                        s.sending = true;
                    }
                    if o.mode == Mode::Max
                        && let Err(r) = self.pump(&mut ws, &plan, &mut sender).await
                    {
                        break End::Lost(r);
                    }
                }
                () = async {
                    match slot {
                        Some(s) => s.wake.notified().await,
                        None => std::future::pending().await,
                    }
                }, if sending && o.mode == Mode::Max => {
                    if let Err(r) = self.pump(&mut ws, &plan, &mut sender).await {
                        break End::Lost(r);
                    }
                }
                _ = tick.tick(), if sending => {
                    let r = match o.mode {
                        Mode::Max => {
                            self.sweep(&mut sender);
                            self.pump(&mut ws, &plan, &mut sender).await
                        }
                        Mode::Rate => self.rate_tick(&mut ws, &plan, &mut sender, per_sender).await,
                    };
                    if let Err(r) = r {
                        break End::Lost(r);
                    }
                }
                () = &mut end_sleep, if reporting => {
                    stop_sending(&mut sender, &sent_tx);
                }
            }
        };
        // A sender always reports, even when its connection died.
        stop_sending(&mut sender, &sent_tx);
        match end {
            End::Stop => close(ws).await,
            End::Lost(reason) => self.lost(reason),
        }
    }

    fn lost(&mut self, reason: String) {
        self.st.disconnects += 1;
        self.st.disconnect_reason = Some(reason);
    }

    /// One frame (or the end of the stream); `Err(reason)` when the connection is gone.
    async fn on_frame(
        &mut self,
        m: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
        ws: &mut Ws,
        plan: Option<&Plan>,
    ) -> Result<(), String> {
        let text = match m {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(_))) | None => return Err("transport close".to_owned()),
            Some(Ok(_)) => return Ok(()),
            Some(Err(e)) => return Err(format!("transport error: {e}")),
        };
        match proto::parse(text.as_str()) {
            Packet::Event { ack, data } => match proto::load_msg(data) {
                Ok(Some(msg)) => {
                    if let Some(plan) = plan {
                        self.deliver(&msg, plan);
                    }
                }
                Ok(None) => {
                    if let Some(id) = ack {
                        // `question`: answer with our socket id; anything else: empty ack.
                        let reply = if proto::event_name(data) == Some("question") {
                            format!(
                                "43{id}[{}]",
                                serde_json::to_string(&self.sid).unwrap_or_default()
                            )
                        } else {
                            format!("43{id}[]")
                        };
                        ws.send(Message::text(reply))
                            .await
                            .map_err(|e| format!("transport error: {e}"))?;
                    }
                }
                Err(_) => self.st.bad_frames += 1,
            },
            Packet::Ping => ws
                .send(Message::text("3"))
                .await
                .map_err(|e| format!("transport error: {e}"))?,
            Packet::Close => return Err("transport close".to_owned()),
            Packet::Disconnect => return Err("io server disconnect".to_owned()),
            _ => {}
        }
        Ok(())
    }

    fn deliver(&mut self, m: &proto::LoadMsg, plan: &Plan) {
        let r = sys::now_us();
        let st = &mut self.st;
        st.total_recv += 1;
        if r >= plan.measure_start && r < plan.measure_end {
            st.in_window += 1;
        }
        if m.t >= plan.measure_start && m.t < plan.measure_end {
            st.recv_measured += 1;
            self.shared.recv_measured.fetch_add(1, Ordering::Relaxed);
            let lat = r.saturating_sub(m.t);
            let lat32 = u32::try_from(lat).unwrap_or(u32::MAX);
            st.lat_us.push(lat32);
            st.sum_lat += lat;
            st.max_lat = st.max_lat.max(lat);
            if plan.sender_worker.get(m.sender).copied().unwrap_or(-1) != self.worker {
                st.crossed += 1;
                st.lat_crossed_us.push(lat32);
            }
        }
        if self.shared.o.mode == Mode::Max
            && let Some(slot) = self.shared.senders.get(m.sender)
        {
            let done = {
                let mut g = slot.lock();
                match g.get_mut(&m.seq) {
                    Some(e) => {
                        e.remaining = e.remaining.saturating_sub(1);
                        e.remaining == 0 && g.remove(&m.seq).is_some()
                    }
                    None => false,
                }
            };
            if done {
                slot.wake.notify_one();
            }
        }
    }

    /// The frame of message `seq` of sender `k`: `to` its room, or `all`.
    fn event(&self, t: u64, seq: u64, k: usize) -> String {
        if self.shared.o.all {
            proto::all_event(t, seq, k, &self.shared.pad)
        } else {
            proto::to_event(&self.target, t, seq, k, &self.shared.pad)
        }
    }

    /// Max mode: send until the window is full (or the measurement ended).
    async fn pump(
        &mut self,
        ws: &mut Ws,
        plan: &Plan,
        sender: &mut Option<SenderState>,
    ) -> Result<(), String> {
        let Some(s) = sender.as_mut() else {
            return Ok(());
        };
        if !s.sending {
            return Ok(());
        }
        let Some(slot) = self.shared.senders.get(s.k) else {
            return Ok(());
        };
        let window = self.shared.o.window as usize;
        let members = plan
            .room_size
            .get(s.k % plan.room_size.len().max(1))
            .copied()
            .unwrap_or(1);
        let mut fed = false;
        let mut ended = false;
        loop {
            let (t, seq) = {
                let mut g = slot.lock();
                if g.len() >= window {
                    break;
                }
                let t = sys::now_us();
                if t >= plan.measure_end {
                    ended = true;
                    break;
                }
                let seq = s.seq;
                g.insert(
                    seq,
                    InFlight {
                        remaining: members,
                        sent_us: t,
                    },
                );
                (t, seq)
            };
            s.seq += 1;
            if t >= plan.measure_start {
                s.measured += 1;
            }
            let frame = self.event(t, seq, s.k);
            ws.feed(Message::text(frame))
                .await
                .map_err(|e| format!("transport error: {e}"))?;
            fed = true;
        }
        if fed {
            ws.flush()
                .await
                .map_err(|e| format!("transport error: {e}"))?;
        }
        if ended {
            s.sending = false;
        }
        Ok(())
    }

    /// Max mode: free the slots of messages older than --msg-timeout.
    fn sweep(&self, sender: &mut Option<SenderState>) {
        let Some(s) = sender.as_mut() else { return };
        let Some(slot) = self.shared.senders.get(s.k) else {
            return;
        };
        let old = sys::now_us().saturating_sub(self.shared.o.msg_timeout * 1000);
        let mut g = slot.lock();
        let before = g.len();
        g.retain(|_, e| e.sent_us >= old);
        s.timed_out += (before - g.len()) as u64;
    }

    /// Rate mode: send what is due since the warm-up started.
    async fn rate_tick(
        &mut self,
        ws: &mut Ws,
        plan: &Plan,
        sender: &mut Option<SenderState>,
        per_sender: f64,
    ) -> Result<(), String> {
        let Some(s) = sender.as_mut() else {
            return Ok(());
        };
        let now = sys::now_us();
        if now >= plan.measure_end {
            s.sending = false;
            return Ok(());
        }
        let due =
            ((now.saturating_sub(plan.warmup_start)) as f64 / 1e6 * per_sender).floor() as u64 + 1;
        let mut n = due.saturating_sub(s.seq);
        if n > 1000 {
            // The harness fell behind; keep bursts bounded.
            s.skipped += n - 1000;
            s.seq += n - 1000;
            n = 1000;
        }
        if n == 0 {
            return Ok(());
        }
        for _ in 0..n {
            let t = sys::now_us();
            let frame = self.event(t, s.seq, s.k);
            s.seq += 1;
            if t >= plan.measure_start && t < plan.measure_end {
                s.measured += 1;
            }
            ws.feed(Message::text(frame))
                .await
                .map_err(|e| format!("transport error: {e}"))?;
        }
        ws.flush()
            .await
            .map_err(|e| format!("transport error: {e}"))
    }
}

fn stop_sending(sender: &mut Option<SenderState>, sent_tx: &mpsc::UnboundedSender<SentReport>) {
    if let Some(s) = sender.take() {
        let _ = sent_tx.send(SentReport {
            k: s.k,
            measured: s.measured,
            total: s.seq,
            timed_out: s.timed_out,
            skipped: s.skipped,
        });
    }
}

/// Socket.IO DISCONNECT and a WebSocket close, bounded in time.
async fn close(mut ws: Ws) {
    let _ = timeout(Duration::from_secs(1), async {
        let _ = ws.send(Message::text("41")).await;
        let _ = ws.close(None).await;
    })
    .await;
}

/// Scheduling delay of the runtime: a 10 ms sleep loop's lateness, in µs.
async fn loop_delay(from: u64, to: u64) -> Vec<u64> {
    tokio::time::sleep_until(instant_at(from)).await;
    let mut v = Vec::new();
    while sys::now_us() < to {
        let expect = sys::now_us() + 10_000;
        tokio::time::sleep(Duration::from_millis(10)).await;
        v.push(sys::now_us().saturating_sub(expect));
    }
    v
}

// ---------------------------------------------------------------- report

/// Min and max of the room sizes.
#[derive(Debug, Serialize)]
struct MinMax {
    min: u32,
    max: u32,
}

/// Latency figures in ms (exact: from every measured delivery).
#[derive(Debug, Serialize)]
struct Latency {
    p50: Option<f64>,
    p90: Option<f64>,
    p99: Option<f64>,
    p999: Option<f64>,
    max: Option<f64>,
    mean: Option<f64>,
}

/// The harness's own cost.
#[derive(Debug, Serialize)]
struct Harness {
    procs: u32,
    threads: u16,
    cpu_percent_total: Option<f64>,
    cpu_percent_per_proc: Vec<Option<f64>>,
    cpu_percent_coordinator: Option<f64>,
    /// User-mode share of `cpu_percent_total`.
    cpu_user_percent: f64,
    /// Kernel-mode share (syscalls, TCP receive, scheduling).
    cpu_system_percent: f64,
    /// Harness CPU time per delivery received during the measurement, in µs.
    cpu_us_per_delivery: Option<f64>,
    loop_delay_p99_ms: Vec<Option<f64>>,
    loop_delay_max_ms: Vec<Option<f64>>,
}

/// CPU of the measured cluster's process tree.
#[derive(Debug, Serialize)]
struct Cluster {
    /// The first `--cluster-pid` (format 1's field).
    pid: Option<u32>,
    /// Every `--cluster-pid`.
    pids: Vec<u32>,
    cpu_percent: Option<f64>,
    processes: Option<usize>,
}

/// The machine during the measurement.
#[derive(Debug, Serialize)]
struct Machine {
    cores: usize,
    busy_percent: Option<f64>,
    other_percent: Option<f64>,
    loadavg_at_end: Option<Vec<f64>>,
}

/// The JSON report: the schema of bench/load.mjs (format 1) plus
/// `harness.threads`, `harness.cpu_us_per_delivery` and `bad_frames`.
#[derive(Debug, Serialize)]
struct Report {
    tool: &'static str,
    format: u32,
    started_at: String,
    url: String,
    transport: String,
    client: String,
    mode: &'static str,
    window: Option<u32>,
    rate: Option<f64>,
    clients: u32,
    clients_connected: usize,
    connect_failures: u32,
    handshake_retries: u32,
    connect_errors: Vec<String>,
    connect_seconds: f64,
    rooms: u32,
    senders: u32,
    room_size: MinMax,
    payload_bytes: usize,
    warmup_s: f64,
    duration_s: f64,
    per_worker: BTreeMap<String, u32>,
    worker_pids: BTreeMap<String, u64>,
    workers_seen: usize,
    messages_sent_total: u64,
    messages_measured: u64,
    messages_per_s: u64,
    expected: u64,
    received: u64,
    lost: u64,
    lost_fraction: f64,
    extra_deliveries: u64,
    deliveries_per_s: u64,
    deliveries_in_window: u64,
    latency_ms: Latency,
    /// Latency of the crossed deliveries alone (sender on another worker).
    latency_crossed_ms: Latency,
    crossed_fraction: Option<f64>,
    crossed_deliveries_per_s: Option<u64>,
    timed_out_messages: u64,
    rate_skipped_messages: u64,
    disconnects: u32,
    disconnect_reasons: BTreeMap<String, u32>,
    bad_frames: u64,
    harness: Harness,
    cluster: Cluster,
    machine: Machine,
}

fn round_to(v: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (v * f).round() / f
}

/// The value at quantile `q` of sorted `v` (nearest rank), in ms.
fn quantile_ms(v: &[u32], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Some(f64::from(v[rank - 1]) / 1000.0)
}

/// With several URLs, worker ids are `url_index * WORKERS_PER_URL + worker`.
const WORKERS_PER_URL: i64 = 1 << 32;

/// The name of a worker in `per_worker`: its index, or with several URLs
/// "u{url index}w{index}".
fn worker_name(w: i64, multi: bool) -> String {
    if multi {
        format!(
            "u{}w{}",
            w.div_euclid(WORKERS_PER_URL),
            w.rem_euclid(WORKERS_PER_URL)
        )
    } else {
        w.to_string()
    }
}

/// The CPU of the process trees under `roots`, summed; `None` when there are
/// none or one is gone.
fn trees_cpu(roots: &[u32]) -> Option<sys::TreeCpu> {
    if roots.is_empty() {
        return None;
    }
    let mut sum = sys::TreeCpu {
        cpu_us: 0.0,
        processes: 0,
    };
    for &r in roots {
        let t = sys::tree_cpu(r)?;
        sum.cpu_us += t.cpu_us;
        sum.processes += t.processes;
    }
    Some(sum)
}

/// Runs the load; `Ok` holds nothing, the report is printed/written.
pub async fn run(o: RunArgs) -> Result<()> {
    let limit = o.connect_timeout + o.warmup + o.duration + o.drain + 15.0;
    match timeout(Duration::from_secs_f64(limit), run_inner(o)).await {
        Ok(r) => r,
        Err(_) => bail!("overall time limit ({} s) exceeded", limit.round()),
    }
}

async fn run_inner(o: RunArgs) -> Result<()> {
    let started_at = sys::iso_now();
    let targets = o
        .url
        .iter()
        .map(|u| Target::parse(u))
        .collect::<Result<Vec<_>>>()?;
    let multi = targets.len() > 1;
    let clients = o.clients as usize;
    let senders = o.senders as usize;
    let rooms = o.rooms as usize;
    let shared = Arc::new(Shared {
        targets,
        senders: (0..senders).map(|_| SenderSlot::default()).collect(),
        recv_measured: AtomicU64::new(0),
        pad: "x".repeat(o.payload_bytes),
        o: o.clone(),
    });
    let (phase_tx, phase_rx) = watch::channel(Phase::Connecting);
    let (conn_tx, mut conn_rx) = mpsc::unbounded_channel();
    let (sent_tx, mut sent_rx) = mpsc::unbounded_channel();
    let sem = Arc::new(Semaphore::new(o.connect_concurrency as usize));
    let t_connect = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|i| {
            tokio::spawn(client_task(
                i,
                shared.clone(),
                sem.clone(),
                conn_tx.clone(),
                sent_tx.clone(),
                phase_rx.clone(),
            ))
        })
        .collect();
    drop((conn_tx, sent_tx));

    // ---- connect phase
    let deadline = t_connect + Duration::from_secs_f64(o.connect_timeout);
    let mut who: Vec<(usize, i64, u64)> = Vec::with_capacity(clients);
    let (mut failures, mut retries) = (0u32, 0u32);
    let mut errors: Vec<String> = Vec::new();
    for done in 0..clients {
        match tokio::time::timeout_at(deadline, conn_rx.recv()).await {
            Ok(Some(r)) => {
                let r: ConnectReport = r;
                retries += r.retries;
                for e in r.errors {
                    if errors.len() < 10 {
                        errors.push(e);
                    }
                }
                match r.outcome {
                    Ok((w, pid)) => who.push((r.idx, w, pid)),
                    Err(()) => failures += 1,
                }
            }
            Ok(None) => break,
            Err(_) => {
                let _ = phase_tx.send(Phase::Stop);
                bail!(
                    "connect phase: {done} of {clients} clients finished their handshake within {} s ({} connected); first errors: {}",
                    o.connect_timeout,
                    who.len(),
                    errors.join("; ")
                );
            }
        }
    }
    let connect_seconds = t_connect.elapsed().as_secs_f64();
    if who.is_empty() {
        bail!(
            "no client could connect to {}: {}",
            o.url.join(","),
            errors.join("; ")
        );
    }
    let mut per_worker: BTreeMap<String, u32> = BTreeMap::new();
    let mut worker_pids: BTreeMap<String, u64> = BTreeMap::new();
    for &(_, w, pid) in &who {
        *per_worker.entry(worker_name(w, multi)).or_default() += 1;
        worker_pids.insert(worker_name(w, multi), pid);
    }
    let workers_seen = per_worker.len();
    if let Some(n) = o.expect_workers
        && n != workers_seen
    {
        let _ = phase_tx.send(Phase::Stop);
        bail!("clients reached {workers_seen} workers ({per_worker:?}), expected {n}");
    }
    let mut sender_worker = vec![-1i64; senders];
    let mut room_size = vec![0u32; rooms];
    for &(i, w, _) in &who {
        if i < senders {
            sender_worker[i] = w;
        }
        room_size[room_of(i, rooms)] += 1;
    }
    if o.all {
        // Every message goes to every connected client.
        let total = who.len() as u32;
        room_size.iter_mut().for_each(|r| *r = total);
    }
    let senders_connected = sender_worker.iter().filter(|&&w| w >= 0).count();
    if senders_connected == 0 && senders > 0 {
        let _ = phase_tx.send(Phase::Stop);
        bail!("none of the {senders} senders could connect");
    }

    // ---- warm-up + measurement
    let warmup_start = match o.start_at_us {
        Some(at) => {
            if sys::now_us() > at {
                let _ = phase_tx.send(Phase::Stop);
                bail!("the connect phase ended after --start-at-us");
            }
            // Like the default: the clients see the phase 200 ms before the
            // window, so that none misses a message of it while still
            // switching (the senders' first message falls before it).
            tokio::time::sleep_until(instant_at(at.saturating_sub(200_000))).await;
            at
        }
        None => sys::now_us() + 200_000,
    };
    let measure_start = warmup_start + (o.warmup * 1e6).round() as u64;
    let measure_end = measure_start + (o.duration * 1e6).round() as u64;
    let plan = Arc::new(Plan {
        warmup_start,
        measure_start,
        measure_end,
        sender_worker: sender_worker.clone(),
        room_size: room_size.clone(),
    });
    let _ = phase_tx.send(Phase::Running(plan));
    let delay_task = tokio::spawn(loop_delay(measure_start, measure_end));

    tokio::time::sleep_until(instant_at(measure_start)).await;
    let cpu0 = sys::self_cpu_split_us();
    let machine0 = sys::machine_busy_us();
    let cluster0 = trees_cpu(&o.cluster_pid);
    tokio::time::sleep_until(instant_at(measure_end)).await;
    let cpu1 = sys::self_cpu_split_us();
    let machine1 = sys::machine_busy_us();
    let cluster1 = trees_cpu(&o.cluster_pid);

    let mut sent: Vec<SentReport> = Vec::new();
    let sent_deadline = Instant::now() + Duration::from_secs(10);
    while sent.len() < senders_connected {
        match tokio::time::timeout_at(sent_deadline, sent_rx.recv()).await {
            Ok(Some(r)) => sent.push(r),
            Ok(None) => break,
            Err(_) => {
                let _ = phase_tx.send(Phase::Stop);
                bail!(
                    "measurement: only {} of {senders_connected} senders stopped within 10 s of the end",
                    sent.len()
                );
            }
        }
    }
    let messages_measured: u64 = sent.iter().map(|s| s.measured).sum();
    let total_sent: u64 = sent.iter().map(|s| s.total).sum();
    let expected: u64 = sent
        .iter()
        .map(|s| s.measured * u64::from(room_size[s.k % rooms]))
        .sum();

    // ---- drain
    let drain_deadline = Instant::now() + Duration::from_secs_f64(o.drain);
    while shared.recv_measured.load(Ordering::Relaxed) < expected && Instant::now() < drain_deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = phase_tx.send(Phase::Stop);
    let mut stats = Vec::with_capacity(clients);
    for h in handles {
        match timeout(Duration::from_secs(5), h).await {
            Ok(Ok(s)) => stats.push(s),
            Ok(Err(e)) => bail!("a client task failed: {e}"),
            Err(_) => bail!("a client did not stop within 5 s"),
        }
    }
    let delays = match timeout(Duration::from_secs(1), delay_task).await {
        Ok(Ok(v)) => v,
        _ => Vec::new(),
    };

    // ---- aggregate
    let mut lat: Vec<u32> = Vec::with_capacity(stats.iter().map(|s| s.lat_us.len()).sum());
    let mut lat_x: Vec<u32> = Vec::new();
    let (mut received, mut crossed, mut max_lat, mut sum_lat, mut in_window) = (0, 0, 0, 0, 0);
    let (mut disconnects, mut bad_frames) = (0, 0);
    let mut disconnect_reasons: BTreeMap<String, u32> = BTreeMap::new();
    for s in &mut stats {
        lat.append(&mut s.lat_us);
        lat_x.append(&mut s.lat_crossed_us);
        received += s.recv_measured;
        crossed += s.crossed;
        max_lat = max_lat.max(s.max_lat);
        sum_lat += s.sum_lat;
        in_window += s.in_window;
        disconnects += s.disconnects;
        bad_frames += s.bad_frames;
        if let Some(r) = s.disconnect_reason.take() {
            *disconnect_reasons.entry(r).or_default() += 1;
        }
    }
    lat.sort_unstable();
    lat_x.sort_unstable();
    let dur_us = o.duration * 1e6;
    let pct = |us: f64| round_to(us / dur_us * 100.0, 1);
    let user_us = cpu1.0.saturating_sub(cpu0.0) as f64;
    let system_us = cpu1.1.saturating_sub(cpu0.1) as f64;
    let harness_cpu_us = user_us + system_us;
    let harness_cpu = pct(harness_cpu_us);
    let cluster_cpu = match (cluster0, cluster1) {
        (Some(a), Some(b)) => Some(pct(b.cpu_us - a.cpu_us)),
        _ => None,
    };
    let machine_busy = match (machine0, machine1) {
        (Some(a), Some(b)) => Some(pct(b - a)),
        _ => None,
    };
    let mut delays = delays;
    delays.sort_unstable();
    let delay_ms = |q: f64| -> Option<f64> {
        if delays.is_empty() {
            return None;
        }
        let rank = ((q * delays.len() as f64).ceil() as usize).clamp(1, delays.len());
        Some(round_to(delays[rank - 1] as f64 / 1000.0, 2))
    };
    let lost = expected.saturating_sub(received);
    let report = Report {
        tool: "sio-cluster-loadgen",
        format: 1,
        started_at,
        url: o.url.join(","),
        transport: o.transport.clone(),
        client: o.client.clone(),
        mode: match o.mode {
            Mode::Max => "max",
            Mode::Rate => "rate",
        },
        window: (o.mode == Mode::Max).then_some(o.window),
        rate: (o.mode == Mode::Rate).then_some(o.rate),
        clients: o.clients,
        clients_connected: who.len(),
        connect_failures: failures,
        handshake_retries: retries,
        connect_errors: errors,
        connect_seconds: round_to(connect_seconds, 2),
        rooms: o.rooms,
        senders: o.senders,
        room_size: MinMax {
            min: room_size.iter().copied().min().unwrap_or(0),
            max: room_size.iter().copied().max().unwrap_or(0),
        },
        payload_bytes: o.payload_bytes,
        warmup_s: o.warmup,
        duration_s: o.duration,
        per_worker: per_worker.clone(),
        worker_pids,
        workers_seen,
        messages_sent_total: total_sent,
        messages_measured,
        messages_per_s: (messages_measured as f64 / o.duration).round() as u64,
        expected,
        received,
        lost,
        lost_fraction: if expected > 0 {
            lost as f64 / expected as f64
        } else {
            0.0
        },
        extra_deliveries: received.saturating_sub(expected),
        deliveries_per_s: (in_window as f64 / o.duration).round() as u64,
        deliveries_in_window: in_window,
        latency_ms: Latency {
            p50: quantile_ms(&lat, 0.5),
            p90: quantile_ms(&lat, 0.9),
            p99: quantile_ms(&lat, 0.99),
            p999: quantile_ms(&lat, 0.999),
            max: (received > 0).then(|| max_lat as f64 / 1000.0),
            mean: (received > 0).then(|| round_to(sum_lat as f64 / received as f64 / 1000.0, 3)),
        },
        latency_crossed_ms: Latency {
            p50: quantile_ms(&lat_x, 0.5),
            p90: quantile_ms(&lat_x, 0.9),
            p99: quantile_ms(&lat_x, 0.99),
            p999: quantile_ms(&lat_x, 0.999),
            max: lat_x.last().map(|&m| f64::from(m) / 1000.0),
            mean: (!lat_x.is_empty()).then(|| {
                let sum: u64 = lat_x.iter().map(|&l| u64::from(l)).sum();
                round_to(sum as f64 / lat_x.len() as f64 / 1000.0, 3)
            }),
        },
        crossed_fraction: (received > 0).then(|| round_to(crossed as f64 / received as f64, 4)),
        crossed_deliveries_per_s: (received > 0).then(|| {
            (in_window as f64 * crossed as f64 / received as f64 / o.duration).round() as u64
        }),
        timed_out_messages: sent.iter().map(|s| s.timed_out).sum(),
        rate_skipped_messages: sent.iter().map(|s| s.skipped).sum(),
        disconnects,
        disconnect_reasons,
        bad_frames,
        harness: Harness {
            procs: 1,
            threads: o.threads,
            cpu_percent_total: Some(harness_cpu),
            cpu_percent_per_proc: vec![Some(harness_cpu)],
            cpu_percent_coordinator: None,
            cpu_user_percent: pct(user_us),
            cpu_system_percent: pct(system_us),
            cpu_us_per_delivery: (in_window > 0)
                .then(|| round_to(harness_cpu_us / in_window as f64, 3)),
            loop_delay_p99_ms: vec![delay_ms(0.99)],
            loop_delay_max_ms: vec![delay_ms(1.0)],
        },
        cluster: Cluster {
            pid: o.cluster_pid.first().copied(),
            pids: o.cluster_pid.clone(),
            cpu_percent: cluster_cpu,
            processes: cluster1.map(|c| c.processes),
        },
        machine: Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            busy_percent: machine_busy,
            other_percent: machine_busy
                .map(|m| round_to(m - harness_cpu - cluster_cpu.unwrap_or(0.0), 1)),
            loadavg_at_end: sys::loadavg(),
        },
    };
    let json = serde_json::to_string_pretty(&report)?;
    if let Some(path) = &o.json_out {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        }
        std::fs::write(path, format!("{json}\n"))
            .with_context(|| format!("write {}", path.display()))?;
    }
    if !o.quiet {
        println!("{json}");
    }
    println!("{}", human_line(&report));
    Ok(())
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// The one-line summary, as bench/load.mjs prints it.
fn human_line(r: &Report) -> String {
    let split: Vec<String> = r
        .per_worker
        .iter()
        .map(|(w, n)| {
            if w.starts_with('u') {
                format!("{w}:{n}")
            } else {
                format!("w{w}:{n}")
            }
        })
        .collect();
    let mode = match (r.window, r.rate) {
        (Some(w), _) => format!("max W={w}"),
        (_, Some(rate)) => format!("rate {rate} msg/s"),
        _ => String::new(),
    };
    let l = &r.latency_ms;
    let mut s = format!(
        "load {mode} websocket rust-client threads={}: C={}/{} ({}) R={} S={} | {} deliveries/s ({} msg/s) | expected {} received {} lost {} ({:.2}%) | latency p50 {} ms p99 {} ms max {} ms | crossed {:.1}% | CPU (100% = one core) harness {}% ({} µs/delivery) loop-delay p99 {} ms",
        r.harness.threads,
        r.clients_connected,
        r.clients,
        split.join(" "),
        r.rooms,
        r.senders,
        r.deliveries_per_s,
        r.messages_per_s,
        r.expected,
        r.received,
        r.lost,
        r.lost_fraction * 100.0,
        opt(l.p50),
        opt(l.p99),
        opt(l.max),
        r.crossed_fraction.unwrap_or(0.0) * 100.0,
        opt(r.harness.cpu_percent_total),
        opt(r.harness.cpu_us_per_delivery),
        opt(r.harness.loop_delay_p99_ms.first().copied().flatten()),
    );
    if let Some(c) = r.cluster.cpu_percent {
        s.push_str(&format!(" cluster {c}%"));
    }
    if let Some(m) = r.machine.busy_percent {
        s.push_str(&format!(
            " machine {m}%/{}% (other work {}%)",
            r.machine.cores * 100,
            opt(r.machine.other_percent)
        ));
    }
    if r.disconnects > 0 {
        s.push_str(&format!(" | {} disconnects", r.disconnects));
    }
    if r.connect_failures > 0 {
        s.push_str(&format!(
            " | {} clients failed to connect",
            r.connect_failures
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = Target::parse("http://127.0.0.1:3000").expect("valid");
        assert_eq!(t.addr, "127.0.0.1:3000");
        assert_eq!(
            t.ws_url,
            "ws://127.0.0.1:3000/socket.io/?EIO=4&transport=websocket"
        );
        assert_eq!(
            Target::parse("ws://localhost/").expect("valid").addr,
            "localhost:80"
        );
        assert!(Target::parse("https://x:1").is_err());
        assert!(Target::parse("nope").is_err());
    }

    #[test]
    fn worker_names() {
        assert_eq!(worker_name(3, false), "3");
        assert_eq!(worker_name(WORKERS_PER_URL + 2, true), "u1w2");
        assert_eq!(worker_name(0, true), "u0w0");
    }

    #[test]
    fn quantiles() {
        let v: Vec<u32> = (1..=1000).collect();
        assert_eq!(quantile_ms(&v, 0.5), Some(0.5));
        assert_eq!(quantile_ms(&v, 0.99), Some(0.99));
        assert_eq!(quantile_ms(&v, 1.0), Some(1.0));
        assert_eq!(quantile_ms(&[], 0.5), None);
        assert_eq!(quantile_ms(&[7000], 0.001), Some(7.0));
    }
}

/// The room client `i` joins: a hash of `i` (the same as `bench/load.mjs`),
/// so every room has members on every worker whatever order the balancer
/// placed the clients in.
pub fn room_of(i: usize, rooms: usize) -> usize {
    ((i as u32).wrapping_add(1).wrapping_mul(0x9e37_79b1) >> 16) as usize % rooms.max(1)
}

#[cfg(test)]
mod room_tests {
    use super::room_of;

    #[test]
    fn rooms_match_load_mjs() {
        // node -e '[0..6].map(i => (Math.imul(i + 1, 0x9e3779b1) >>> 16) % 10)'
        let got: Vec<usize> = (0..7).map(|i| room_of(i, 10)).collect();
        assert_eq!(got, vec![3, 0, 4, 1, 9, 2, 0]);
    }
}
