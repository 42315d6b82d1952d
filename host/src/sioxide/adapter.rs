//! [`WasmClusterAdapter`]: socketioxide's `CoreAdapter` over one adapter
//! component instance per namespace.
//!
//! Every cluster operation is a call into the component, which returns
//! effects carried out here in order: frames go to the hub link, local work
//! (`Apply`) goes to socketioxide's [`CoreLocalAdapter`] (socketioxide keeps
//! its rooms, so the component runs with host-owned rooms), answers go back
//! into the component, completions wake the waiting caller. Operations that
//! socketioxide marks local (`.local()`, a socket of this process) skip the
//! component.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use socketioxide::AckError;
use socketioxide_core::adapter::errors::{AdapterError, BroadcastError};
use socketioxide_core::adapter::{
    BroadcastFlags, BroadcastOptions, CoreAdapter, CoreLocalAdapter, DefinedAdapter,
    RemoteSocketData, Room, RoomParam, SocketEmitter, Spawnable,
};
use socketioxide_core::packet::Packet;
use socketioxide_core::{Sid, Uid};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::AbortHandle;
use tracing::{debug, warn};

use super::Error;
use super::acks::{AckItem, AckStream, ClusterAcks};
use super::cluster::{Counters, ServerReply, Space, SpaceStats, WasmCluster};
use super::convert::{
    bytes_to_value, decode_packet, encode_packet, opts_from_sx, opts_to_sx, uid_to_server,
    value_to_bytes,
};
use crate::adapter::wire::push_batch;
use crate::adapter::{
    Ack, Completion, Config, Effect, LocalOp, NodeId, Opts, RequestId, RequestValue, RoomOwner,
    SocketInfo,
};
use crate::link::worker::Incoming;
use crate::runtime::node::{AdapterNode, NodeError};
use crate::runtime::wasm_node::WasmNode;

/// Who waits for a request of this node.
enum Waiter {
    Once(oneshot::Sender<Completion>),
    Acks(mpsc::UnboundedSender<AckItem>),
}

/// The original packet and options of this node's own call, used for its
/// local part instead of decoding the bytes the component hands back.
struct Held {
    packet: Option<Packet>,
    opts: BroadcastOptions,
    ack_timeout: Option<Duration>,
    acks: Option<mpsc::UnboundedSender<AckItem>>,
}

/// The non-generic state of one namespace's adapter.
struct Core {
    cluster: WasmCluster,
    nsp: String,
    uid: NodeId,
    server: Uid,
    node: Mutex<WasmNode>,
    waiters: Mutex<HashMap<RequestId, Waiter>>,
    wake: Notify,
    /// `handshake` and `data` JSON of local sockets, for other workers'
    /// fetches (`WasmCluster::set_socket_info`).
    infos: Mutex<SocketInfos>,
}

/// Per-socket `handshake`/`data` bytes, pruned of sockets that left each
/// time the map doubles past the live count.
#[derive(Default)]
struct SocketInfos {
    by_sid: HashMap<String, (Vec<u8>, Vec<u8>)>,
    prune_at: usize,
}

impl Core {
    /// Adds `n` to one of the process's counters; returns its previous value.
    fn count(&self, pick: impl Fn(&Counters) -> &AtomicU64, n: u64) -> u64 {
        pick(&self.cluster.inner.counters).fetch_add(n, Ordering::Relaxed)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The socketioxide adapter of sio-cluster. State: a [`WasmCluster`].
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use sio_cluster_host::sioxide::{WasmCluster, WasmClusterAdapter};
/// use sio_cluster_host::link::worker::WorkerEnv;
/// use socketioxide::SocketIo;
///
/// let env = WorkerEnv::from_env()?;
/// let cluster = WasmCluster::from_env(&env).await?;
/// let (svc, io) = SocketIo::builder()
///     .with_adapter::<WasmClusterAdapter<_>>(cluster.clone())
///     .build_svc();
/// io.ns("/", async |_s: socketioxide::extract::SocketRef<WasmClusterAdapter<_>>| {}).await?;
/// # let _ = svc; Ok(()) }
/// ```
pub struct WasmClusterAdapter<E> {
    local: CoreLocalAdapter<E>,
    core: Result<Arc<Core>, String>,
    this: OnceLock<Weak<Self>>,
    tasks: Mutex<Vec<AbortHandle>>,
}

impl<E> DefinedAdapter for WasmClusterAdapter<E> {}

/// `init`'s result: await it (`io.ns(..).await?`) to know the namespace is
/// attached to the cluster; dynamic namespaces spawn it.
#[must_use = "await it: the namespace is served only once it resolves"]
pub struct InitRes(futures_util::future::BoxFuture<'static, Result<(), Error>>);

impl std::future::Future for InitRes {
    type Output = Result<(), Error>;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

impl Spawnable for InitRes {
    fn spawn(self) {
        tokio::spawn(async move {
            if let Err(e) = self.0.await {
                tracing::error!(error = %e, "cluster adapter failed to start");
            }
        });
    }
}

impl<E: SocketEmitter<AckError = AckError>> WasmClusterAdapter<E> {
    fn core(&self) -> Result<&Arc<Core>, Error> {
        self.core.as_ref().map_err(|e| Error::NotStarted(e.clone()))
    }

    fn own(&self, core: &Core) -> (Uid, NodeId) {
        (core.server, core.uid)
    }

    /// One call into the component. A trap replaced the instance: its
    /// rebuild effects (pending requests failing, the node announced again)
    /// are carried out and the call fails.
    fn call<T>(
        &self,
        core: &Core,
        f: impl FnOnce(&mut WasmNode, u64) -> Result<T, NodeError>,
    ) -> Result<T, Error> {
        let now = core.cluster.now_ms();
        let res = {
            let mut node = lock(&core.node);
            f(&mut node, now)
        };
        match res {
            Ok(v) => Ok(v),
            Err(NodeError::Trapped { reason, effects }) => {
                core.count(|c| &c.traps, 1);
                warn!(nsp = core.nsp, %reason, "adapter instance trapped and was replaced");
                self.carry(core, effects, None);
                core.wake.notify_one();
                Err(Error::Trapped(reason))
            }
            Err(e) => Err(Error::Node(e.to_string())),
        }
    }

    /// Carries out effects in order (see the module docs).
    fn carry(&self, core: &Core, effects: Vec<Effect>, mut held: Option<Held>) {
        let mut queue: VecDeque<Effect> = effects.into();
        let link = &core.cluster.inner.link;
        let counters = &core.cluster.inner.counters;
        while let Some(effect) = queue.pop_front() {
            match effect {
                Effect::Publish(frame) => {
                    if let Err(e) = link.publish(core.uid, &core.nsp, frame) {
                        let n = counters.link_errors.fetch_add(1, Ordering::Relaxed) + 1;
                        // Logged at powers of two: a full link refuses frames by the thousand.
                        if n.is_power_of_two() {
                            warn!(nsp = core.nsp, error = %e, refused = n, "frame not published");
                        }
                    }
                }
                Effect::Send(to, frame) => {
                    if let Err(e) = link.send(core.uid, to, &core.nsp, frame) {
                        let n = counters.link_errors.fetch_add(1, Ordering::Relaxed) + 1;
                        if n.is_power_of_two() {
                            warn!(nsp = core.nsp, error = %e, refused = n, "frame not sent");
                        }
                    }
                }
                Effect::Apply(op) => {
                    let more = self.apply(core, op, held.as_mut());
                    queue.extend(more);
                }
                Effect::ServerEvent(packet, query) => {
                    let reply = query.map(|query| ServerReply {
                        space: self.space_weak(),
                        query,
                    });
                    core.cluster.server_event(&core.nsp, &packet, reply);
                }
                Effect::AckReceived(id, ack) => {
                    let tx = match lock(&core.waiters).get(&id) {
                        Some(Waiter::Acks(tx)) => tx.clone(),
                        _ => continue,
                    };
                    match (ack.sid.parse::<Sid>(), bytes_to_value(&ack.payload)) {
                        (Ok(sid), Ok(v)) => {
                            let _ = tx.send((sid, Ok(v)));
                        }
                        _ => {
                            counters.bad_remote_data.fetch_add(1, Ordering::Relaxed);
                            warn!(nsp = core.nsp, "unreadable ack dropped");
                        }
                    }
                }
                Effect::Complete(c) => {
                    let waiter = lock(&core.waiters).remove(&c.id);
                    match waiter {
                        Some(Waiter::Once(tx)) => {
                            let _ = tx.send(c);
                        }
                        Some(Waiter::Acks(tx)) if c.error.is_some() => {
                            let _ = tx.send((Sid::ZERO, Err(AckError::Timeout)));
                        }
                        Some(Waiter::Acks(_)) | None => {}
                    }
                }
                Effect::NodeUp(uid) => {
                    debug!(nsp = core.nsp, uid = format_args!("{uid:016x}"), "node up")
                }
                Effect::NodeDown(uid) => {
                    debug!(
                        nsp = core.nsp,
                        uid = format_args!("{uid:016x}"),
                        "node down"
                    )
                }
                Effect::Deliver(_) | Effect::Disconnect(..) | Effect::RoomsChanged { .. } => {
                    // Only produced with component-owned rooms.
                    warn!(
                        nsp = core.nsp,
                        "unexpected effect for host-owned rooms ignored"
                    );
                }
            }
        }
    }

    fn space_weak(&self) -> Weak<dyn Space> {
        match self.this.get() {
            Some(w) => w.clone() as Weak<dyn Space>,
            None => Weak::<Self>::new() as Weak<dyn Space>,
        }
    }

    fn sx_opts(&self, core: &Core, opts: &Opts) -> Option<BroadcastOptions> {
        match opts_to_sx(opts, self.own(core)) {
            Ok(o) => Some(o),
            Err(e) => {
                core.count(|c| &c.bad_remote_data, 1);
                warn!(
                    nsp = core.nsp,
                    error = e,
                    "unusable options from another node"
                );
                None
            }
        }
    }

    fn packet(&self, core: &Core, bytes: &[u8], held: &mut Option<&mut Held>) -> Option<Packet> {
        if let Some(p) = held.as_mut().and_then(|h| h.packet.take()) {
            return Some(p);
        }
        match decode_packet(self.local.parser(), bytes) {
            Ok(p) => Some(p),
            Err(e) => {
                core.count(|c| &c.bad_remote_data, 1);
                warn!(nsp = core.nsp, error = %e, "undecodable packet from another node");
                None
            }
        }
    }

    /// Local work the component asked for; returns the effects of answering it.
    fn apply(&self, core: &Core, op: LocalOp, mut held: Option<&mut Held>) -> Vec<Effect> {
        let opts_of = |o: &Opts, held: &Option<&mut Held>| match held {
            Some(h) => Some(h.opts.clone()),
            None => self.sx_opts(core, o),
        };
        match op {
            LocalOp::Broadcast(opts, bytes) => {
                if let (Some(o), Some(p)) =
                    (opts_of(&opts, &held), self.packet(core, &bytes, &mut held))
                    && let Err(e) = self.meter(core, &p, &o).local.broadcast(p, o)
                {
                    self.count_dropped(core, e.len());
                }
                Vec::new()
            }
            LocalOp::BroadcastWithAck(query, opts, bytes, timeout_ms) => {
                let (o, p) = (opts_of(&opts, &held), self.packet(core, &bytes, &mut held));
                let (Some(o), Some(p)) = (o, p) else {
                    return self
                        .call(core, |n, now| n.ack_count(now, query, 0))
                        .unwrap_or_default();
                };
                // The requester's timeout (socketioxide#822: not our default).
                let timeout = held
                    .as_ref()
                    .and_then(|h| h.ack_timeout)
                    .unwrap_or(Duration::from_millis(u64::from(timeout_ms)));
                let direct = held.as_ref().and_then(|h| h.acks.clone());
                let (stream, count) =
                    self.meter(core, &p, &o)
                        .local
                        .broadcast_with_ack(p, o, Some(timeout));
                let out = self
                    .call(core, |n, now| n.ack_count(now, query, count))
                    .unwrap_or_default();
                if count > 0
                    && let Some(this) = self.this.get().and_then(Weak::upgrade)
                {
                    let task = tokio::spawn(async move {
                        let mut stream = std::pin::pin!(stream);
                        while let Some((sid, res)) = stream.next().await {
                            match res {
                                Ok(v) => {
                                    let ack = Ack {
                                        sid: sid.as_str().to_string(),
                                        payload: value_to_bytes(v),
                                    };
                                    let Ok(core) = this.core() else { return };
                                    let core = core.clone();
                                    if let Ok(eff) =
                                        this.call(&core, |n, now| n.ack(now, query, ack))
                                    {
                                        this.carry(&core, eff, None);
                                    }
                                }
                                // A local client that did not answer: the
                                // caller hears it at once; the cluster request
                                // times out on the missing ack.
                                Err(e) => {
                                    if let Some(tx) = &direct {
                                        let _ = tx.send((sid, Err(e)));
                                    }
                                }
                            }
                        }
                    });
                    self.track(task.abort_handle());
                }
                out
            }
            LocalOp::Join(opts, rooms) => {
                if let Some(o) = opts_of(&opts, &held) {
                    self.local.add_sockets(o, rooms);
                }
                Vec::new()
            }
            LocalOp::Leave(opts, rooms) => {
                if let Some(o) = opts_of(&opts, &held) {
                    self.local.del_sockets(o, rooms);
                }
                Vec::new()
            }
            LocalOp::Disconnect(opts, _close) => {
                if let Some(o) = opts_of(&opts, &held)
                    && let Err(e) = self.local.disconnect_socket(o)
                {
                    debug!(
                        nsp = core.nsp,
                        errors = e.len(),
                        "some sockets failed to disconnect"
                    );
                }
                Vec::new()
            }
            LocalOp::FetchSockets(query, opts) => {
                let infos = match opts_of(&opts, &held) {
                    Some(o) => self
                        .local
                        .fetch_sockets(o)
                        .into_iter()
                        .map(|d| {
                            let mut rooms: Vec<String> = self
                                .local
                                .socket_rooms(d.id)
                                .into_iter()
                                .map(|r| r.to_string())
                                .collect();
                            rooms.sort();
                            let id = d.id.as_str().to_string();
                            let (handshake, data) = lock(&core.infos)
                                .by_sid
                                .get(&id)
                                .cloned()
                                .unwrap_or_default();
                            SocketInfo {
                                id,
                                node: core.uid,
                                rooms,
                                handshake,
                                data,
                            }
                        })
                        .collect(),
                    None => Vec::new(),
                };
                self.call(core, |n, now| n.sockets_reply(now, query, infos))
                    .unwrap_or_default()
            }
            LocalOp::FetchRooms(query, opts) => {
                let mut rooms: Vec<String> = match opts_of(&opts, &held) {
                    Some(o) => self
                        .local
                        .rooms(o)
                        .into_iter()
                        .map(|r| r.to_string())
                        .collect(),
                    None => Vec::new(),
                };
                rooms.sort();
                self.call(core, |n, now| n.rooms_reply(now, query, rooms))
                    .unwrap_or_default()
            }
        }
    }

    /// Tells the slow-consumer policy, if any, of a packet about to be
    /// handed to the local sockets `opts` selects (not volatile ones).
    fn meter(&self, core: &Core, packet: &Packet, opts: &BroadcastOptions) -> &Self {
        if let Some(slow) = core.cluster.inner.slow.get()
            && !opts.has_flag(BroadcastFlags::Volatile)
        {
            slow.delivered(
                self.local.sockets(opts.clone()),
                super::slow::packet_bytes(packet),
            );
        }
        self
    }

    /// socketioxide refused a packet for some local sockets (their buffer
    /// is full or they are closing): counted, and logged at powers of two.
    fn count_dropped(&self, core: &Core, n: usize) {
        let before = core.count(|c| &c.local_drops, n as u64);
        let after = before + n as u64;
        if before == 0 || before.leading_zeros() != after.leading_zeros() {
            warn!(
                nsp = core.nsp,
                total = after,
                "packets dropped for local sockets whose buffer was full (raise max_buffer_size)"
            );
        }
    }

    fn track(&self, h: AbortHandle) {
        let mut tasks = lock(&self.tasks);
        tasks.retain(|t| !t.is_finished());
        tasks.push(h);
    }

    /// Starts a request whose result is one completion, and waits for it.
    async fn request(
        &self,
        start: impl FnOnce(&mut WasmNode, u64) -> Result<(RequestId, Vec<Effect>), NodeError>,
        held: Option<Held>,
    ) -> Result<Completion, Error> {
        let core = self.core()?.clone();
        let (tx, rx) = oneshot::channel();
        let (id, effects) = self.call(&core, start)?;
        lock(&core.waiters).insert(id, Waiter::Once(tx));
        self.carry(&core, effects, held);
        core.wake.notify_one();
        // The component completes every request by its deadline; the bound
        // here only guards against a stopped clock task.
        let bound = core.cluster.inner.settings.request_timeout + Duration::from_secs(5);
        match tokio::time::timeout(bound, rx).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(_)) => Err(Error::Closed),
            Err(_) => {
                lock(&core.waiters).remove(&id);
                Err(Error::Request("operation has timed out".into()))
            }
        }
    }

    fn held(&self, packet: Option<Packet>, opts: &BroadcastOptions) -> Held {
        Held {
            packet,
            opts: opts.clone(),
            ack_timeout: None,
            acks: None,
        }
    }

    /// `io.join` / `io.leave`: sockets-join or sockets-leave cluster-wide.
    fn rooms_op(
        &self,
        opts: BroadcastOptions,
        rooms: impl RoomParam,
        join: bool,
    ) -> Result<(), Error> {
        let core = self.core()?;
        if opts.is_local(core.server) {
            if join {
                self.local.add_sockets(opts, rooms);
            } else {
                self.local.del_sockets(opts, rooms);
            }
            return Ok(());
        }
        let o = opts_from_sx(&opts, self.own(core));
        let rooms: Vec<String> = rooms.into_room_iter().map(|r| r.to_string()).collect();
        let effects = self.call(core, |n, now| {
            if join {
                n.sockets_join(now, o, rooms)
            } else {
                n.sockets_leave(now, o, rooms)
            }
        })?;
        self.carry(core, effects, Some(self.held(None, &opts)));
        Ok(())
    }
}

impl<E: SocketEmitter<AckError = AckError>> Space for WasmClusterAdapter<E> {
    fn incoming(&self, msg: Incoming) {
        let Ok(core) = self.core() else { return };
        let res = self.call(core, |n, now| feed(n, now, &msg));
        match res {
            Ok(Ok(effects)) => self.carry(core, effects, None),
            Ok(Err(e)) => {
                core.count(|c| &c.frames_refused, 1);
                warn!(nsp = core.nsp, error = %e, "adapter frame refused");
            }
            Err(e) => debug!(nsp = core.nsp, error = %e, "incoming message failed"),
        }
        core.wake.notify_one();
    }

    fn incoming_frames(&self, frames: Vec<bytes::Bytes>) {
        let Ok(core) = self.core() else { return };
        if frames.len() == 1 {
            let frame = frames.into_iter().next().unwrap_or_default();
            return self.incoming(Incoming::Frame {
                nsp: core.nsp.as_str().into(),
                from: 0,
                frame,
            });
        }
        let mut batch = Vec::with_capacity(frames.iter().map(|f| f.len() + 4).sum());
        for f in &frames {
            push_batch(&mut batch, f);
        }
        match self.call(core, |n, now| n.on_frames(now, &batch)) {
            Ok((effects, errors)) => {
                if !errors.is_empty() {
                    core.count(|c| &c.frames_refused, errors.len() as u64);
                    warn!(nsp = core.nsp, refused = errors.len(), first = %errors[0], "adapter frames refused");
                }
                self.carry(core, effects, None);
            }
            Err(e) => debug!(nsp = core.nsp, error = %e, "incoming frames failed"),
        }
        core.wake.notify_one();
    }

    fn server_side_emit(
        &self,
        packet: Vec<u8>,
        want_replies: bool,
    ) -> Result<Option<oneshot::Receiver<Completion>>, Error> {
        let core = self.core()?;
        let (id, effects) =
            self.call(core, |n, now| n.server_side_emit(now, packet, want_replies))?;
        let rx = id.map(|id| {
            let (tx, rx) = oneshot::channel();
            lock(&core.waiters).insert(id, Waiter::Once(tx));
            rx
        });
        self.carry(core, effects, None);
        core.wake.notify_one();
        Ok(rx)
    }

    fn reply(&self, query: u64, payload: Vec<u8>) -> Result<(), Error> {
        let core = self.core()?;
        let effects = self.call(core, |n, now| n.reply(now, query, payload))?;
        self.carry(core, effects, None);
        Ok(())
    }

    fn server_count(&self) -> Result<u32, Error> {
        let core = self.core()?;
        self.call(core, |n, _| n.server_count())
    }

    fn stats(&self) -> Option<SpaceStats> {
        let core = self.core().ok()?;
        let node = self.call(core, |n, _| n.stats()).ok()?;
        let restarts = lock(&core.node).restarts();
        // socketioxide keeps the rooms (`room-owner.host`): count its own.
        let mut all = BroadcastOptions::default();
        all.add_flag(BroadcastFlags::Broadcast);
        Some(SpaceStats {
            nodes: u64::from(node.nodes),
            sockets: self.local.sockets(all.clone()).len() as u64,
            rooms: self.local.rooms(all).len() as u64,
            pending_requests: u64::from(node.pending_requests),
            frames_in: node.frames_in,
            frames_rejected: node.frames_rejected,
            instance_restarts: restarts,
        })
    }

    fn set_socket_info(&self, sid: &str, handshake: Vec<u8>, data: Vec<u8>) {
        let Ok(core) = self.core() else { return };
        let mut infos = lock(&core.infos);
        infos.by_sid.insert(sid.to_string(), (handshake, data));
        if infos.by_sid.len() > infos.prune_at {
            let mut all = BroadcastOptions::default();
            all.add_flag(BroadcastFlags::Broadcast);
            let live: std::collections::HashSet<String> = self
                .local
                .fetch_sockets(all)
                .into_iter()
                .map(|d| d.id.as_str().to_string())
                .collect();
            infos.by_sid.retain(|sid, _| live.contains(sid));
            infos.prune_at = (infos.by_sid.len() * 2).max(64);
        }
    }
}

impl<E: SocketEmitter<AckError = AckError>> CoreAdapter<E> for WasmClusterAdapter<E> {
    type Error = Error;
    type State = WasmCluster;
    type AckStream = AckStream<E>;
    type InitRes = InitRes;

    fn new(state: &WasmCluster, local: CoreLocalAdapter<E>) -> Self {
        let nsp = local.path().to_string();
        let server = local.server_id();
        let s = &state.inner.settings;
        let uid = getrandom::u64().unwrap_or_else(|_| {
            // No OS randomness: derive a uid from the clock and the pid.
            (std::process::id() as u64) << 32 ^ state.now_ms() ^ 0x9e37_79b9_7f4a_7c15
        });
        let ms = |d: Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX);
        let cfg = Config {
            heartbeat_interval_ms: ms(s.heartbeat_interval),
            heartbeat_timeout_ms: ms(s.heartbeat_timeout),
            request_timeout_ms: ms(s.request_timeout),
            max_frame_bytes: s.max_frame_bytes,
            ..Config::new(uid, nsp.clone(), RoomOwner::Host)
        };
        let core = state
            .inner
            .engine
            .instantiate(cfg, s.limits)
            .map(|node| {
                Arc::new(Core {
                    cluster: state.clone(),
                    nsp,
                    uid,
                    server,
                    node: Mutex::new(node),
                    waiters: Mutex::new(HashMap::new()),
                    wake: Notify::new(),
                    infos: Mutex::new(SocketInfos::default()),
                })
            })
            .map_err(|e| format!("{e:#}"));
        WasmClusterAdapter {
            local,
            core,
            this: OnceLock::new(),
            tasks: Mutex::new(Vec::new()),
        }
    }

    fn init(self: Arc<Self>, on_success: impl FnOnce() + Send + 'static) -> InitRes {
        InitRes(Box::pin(async move {
            let core = self.core()?.clone();
            let _ = self.this.set(Arc::downgrade(&self));
            core.cluster.register(&core.nsp, self.space_weak());
            let effects = self.call(&core, |n, now| n.init(now))?;
            self.carry(&core, effects, None);
            let clock = tokio::spawn(clock(Arc::downgrade(&self), core.clone()));
            self.track(clock.abort_handle());
            on_success();
            Ok(())
        }))
    }

    async fn close(&self) -> Result<(), Error> {
        let core = self.core()?.clone();
        core.cluster.unregister(&core.nsp);
        let effects = self.call(&core, |n, now| n.close(now));
        for t in lock(&self.tasks).drain(..) {
            t.abort();
        }
        self.carry(&core, effects?, None);
        Ok(())
    }

    async fn server_count(&self) -> Result<u16, Error> {
        let n = Space::server_count(self)?;
        Ok(u16::try_from(n).unwrap_or(u16::MAX))
    }

    async fn broadcast(
        &self,
        packet: Packet,
        opts: BroadcastOptions,
    ) -> Result<(), BroadcastError> {
        let core = self.core().map_err(adapter_err)?;
        if opts.is_local(core.server) {
            return self
                .meter(core, &packet, &opts)
                .local
                .broadcast(packet, opts)
                .map_err(|e| {
                    self.count_dropped(core, e.len());
                    BroadcastError::from(e)
                });
        }
        let bytes = encode_packet(self.local.parser(), packet.clone());
        let o = opts_from_sx(&opts, self.own(core));
        let effects = self
            .call(core, |n, now| n.broadcast(now, o, bytes))
            .map_err(adapter_err)?;
        self.carry(core, effects, Some(self.held(Some(packet), &opts)));
        Ok(())
    }

    async fn broadcast_with_ack(
        &self,
        packet: Packet,
        opts: BroadcastOptions,
        timeout: Option<Duration>,
    ) -> Result<AckStream<E>, Error> {
        let core = self.core()?.clone();
        if opts.is_local(core.server) {
            let (stream, _) = self
                .meter(&core, &packet, &opts)
                .local
                .broadcast_with_ack(packet, opts, timeout);
            return Ok(AckStream::Local(Box::pin(stream)));
        }
        let timeout = timeout.unwrap_or_else(|| self.local.ack_timeout());
        let ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
        let bytes = encode_packet(self.local.parser(), packet.clone());
        let o = opts_from_sx(&opts, self.own(&core));
        let (tx, rx) = mpsc::unbounded_channel();
        let (id, effects) = self.call(&core, |n, now| {
            n.broadcast_with_ack(now, o, bytes, ms, true)
        })?;
        lock(&core.waiters).insert(id, Waiter::Acks(tx.clone()));
        let held = Held {
            ack_timeout: Some(timeout),
            acks: Some(tx),
            ..self.held(Some(packet), &opts)
        };
        self.carry(&core, effects, Some(held));
        core.wake.notify_one();
        Ok(AckStream::Cluster(ClusterAcks::new(rx)))
    }

    async fn add_sockets(
        &self,
        opts: BroadcastOptions,
        rooms: impl RoomParam,
    ) -> Result<(), Error> {
        self.rooms_op(opts, rooms, true)
    }

    async fn del_sockets(
        &self,
        opts: BroadcastOptions,
        rooms: impl RoomParam,
    ) -> Result<(), Error> {
        self.rooms_op(opts, rooms, false)
    }

    async fn disconnect_socket(&self, opts: BroadcastOptions) -> Result<(), BroadcastError> {
        let core = self.core().map_err(adapter_err)?;
        if opts.is_local(core.server) {
            return self
                .local
                .disconnect_socket(opts)
                .map_err(BroadcastError::Socket);
        }
        let o = opts_from_sx(&opts, self.own(core));
        let effects = self
            .call(core, |n, now| n.disconnect_sockets(now, o, true))
            .map_err(adapter_err)?;
        self.carry(core, effects, Some(self.held(None, &opts)));
        Ok(())
    }

    async fn rooms(&self, opts: BroadcastOptions) -> Result<Vec<Room>, Error> {
        let core = self.core()?;
        if opts.is_local(core.server) {
            return Ok(self.local.rooms(opts).into_iter().collect());
        }
        let o = opts_from_sx(&opts, self.own(core));
        let held = self.held(None, &opts);
        let done = self
            .request(|n, now| n.fetch_rooms(now, o), Some(held))
            .await?;
        if let Some(e) = done.error {
            return Err(Error::Request(e));
        }
        match done.value {
            RequestValue::Rooms(r) => Ok(r.into_iter().map(Room::from).collect()),
            _ => Ok(Vec::new()),
        }
    }

    async fn fetch_sockets(&self, opts: BroadcastOptions) -> Result<Vec<RemoteSocketData>, Error> {
        let core = self.core()?.clone();
        if opts.is_local(core.server) {
            return Ok(self.local.fetch_sockets(opts));
        }
        let o = opts_from_sx(&opts, self.own(&core));
        let held = self.held(None, &opts);
        let done = self
            .request(|n, now| n.fetch_sockets(now, o, None), Some(held))
            .await?;
        if let Some(e) = done.error {
            return Err(Error::Request(e));
        }
        let RequestValue::Sockets(infos) = done.value else {
            return Ok(Vec::new());
        };
        let ns = self.local.path().clone();
        let mut out = Vec::with_capacity(infos.len());
        for s in infos {
            let Ok(id) = s.id.parse::<Sid>() else {
                core.count(|c| &c.bad_remote_data, 1);
                warn!(
                    nsp = core.nsp,
                    id = s.id,
                    "socket id from another node is not a socketioxide id"
                );
                continue;
            };
            let server_id = if s.node == core.uid {
                core.server
            } else {
                uid_to_server(s.node)
            };
            out.push(RemoteSocketData {
                id,
                server_id,
                ns: ns.clone(),
            });
        }
        Ok(out)
    }

    fn get_local(&self) -> &CoreLocalAdapter<E> {
        &self.local
    }
}

fn adapter_err(e: Error) -> BroadcastError {
    BroadcastError::Adapter(AdapterError::from(e))
}

/// The namespace's clock: ticks the node at its next deadline (heartbeats,
/// request timeouts, dead nodes), or when a call may have moved it.
async fn clock<E: SocketEmitter<AckError = AckError>>(
    adapter: Weak<WasmClusterAdapter<E>>,
    core: Arc<Core>,
) {
    loop {
        let deadline = {
            let mut node = lock(&core.node);
            node.next_deadline().ok().flatten()
        };
        let sleep = match deadline {
            Some(ms) => {
                let at = core.cluster.inner.start + Duration::from_millis(ms);
                tokio::time::sleep_until(at.into())
            }
            None => tokio::time::sleep(Duration::from_secs(3600)),
        };
        tokio::select! {
            _ = sleep => {}
            _ = core.wake.notified() => {}
        }
        let Some(a) = adapter.upgrade() else { return };
        if let Ok(effects) = a.call(&core, |n, now| n.tick(now)) {
            a.carry(&core, effects, None);
        }
    }
}

/// Feeds a message from the hub to `node`, the node of the message's
/// namespace: a frame goes to `on_frame`, a dead node to `node_down`.
/// A refused frame is `Ok(Err(..))` (count it, drop it; the node is fine).
fn feed(
    node: &mut dyn AdapterNode,
    now: u64,
    msg: &Incoming,
) -> Result<Result<Vec<sio_cluster_adapter::Effect>, sio_cluster_adapter::FrameError>, NodeError> {
    match msg {
        Incoming::Frame { frame, .. } => node.on_frame(now, frame),
        Incoming::NodeDown { uid, .. } => node.node_down(now, *uid).map(Ok),
    }
}
