//! One adapter node running in the component: its own `Store` (memory cap,
//! CPU bound, trap isolation) and a typed API that returns the adapter
//! crate's types.
//!
//! A trap (panic, memory cap, CPU bound) poisons the whole Store. The node is
//! then rebuilt from the host side in a fresh Store with the same config:
//! - the room index is replayed from a host-side mirror (component-owned rooms);
//! - the node is announced again (INITIAL_HEARTBEAT) if it had been;
//! - every request still pending fails with [`RESTARTED_ERROR`].
//!
//! The call returns [`NodeError::Trapped`] carrying those effects, which the
//! host carries out like any others.

use std::collections::BTreeMap;

use sio_cluster_adapter::recovery::{RecoveryConfig, RecoveryStats, RestoreOutcome, Session};
use sio_cluster_adapter::rooms::RoomIndex;
use sio_cluster_adapter::{
    Ack, Completion, Config, Effect, FrameError, Opts, RequestValue, RoomOwner, SocketInfo, Stats,
};
use wasmtime::Store;
use wasmtime::component::ResourceAny;

use crate::runtime::bindings::{self, ClusterAdapter};
use crate::runtime::engine::{AdapterEngine, HostState, Limits};
use crate::runtime::node::{AdapterNode, NodeError};

/// Error of requests that were pending when their instance trapped.
pub const RESTARTED_ERROR: &str = "adapter instance restarted after a trap";

/// What a pending request returns, to fail it with the right empty value.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Sockets,
    Rooms,
    Replies,
    Acks,
}

impl Kind {
    fn empty(self) -> RequestValue {
        match self {
            Kind::Sockets => RequestValue::Sockets(Vec::new()),
            Kind::Rooms => RequestValue::Rooms(Vec::new()),
            Kind::Replies => RequestValue::Replies(Vec::new()),
            Kind::Acks => RequestValue::Acks(Vec::new()),
        }
    }
}

/// An adapter node inside a wasmtime instance.
pub struct WasmNode {
    engine: AdapterEngine,
    cfg: Config,
    limits: Limits,
    store: Store<HostState>,
    bindings: ClusterAdapter,
    node: ResourceAny,
    restarts: u64,
    /// Frames refused before reaching the instance (too large to copy in).
    rejected_on_host: u64,
    /// Host-side state to rebuild a replaced instance.
    announced: bool,
    last_now: u64,
    pending: BTreeMap<u64, Kind>,
    mirror: Option<RoomIndex>,
    /// Recovery settings, applied again to a replaced instance (its log and
    /// sessions are lost; other nodes still hold theirs).
    recovery: Option<RecoveryConfig>,
}

impl WasmNode {
    pub(crate) fn new(engine: AdapterEngine, cfg: Config, limits: Limits) -> anyhow::Result<Self> {
        let (store, bindings, node) = Self::instance(&engine, &cfg, limits)?;
        let mirror = (cfg.rooms == RoomOwner::Component).then(RoomIndex::new);
        Ok(WasmNode {
            engine,
            cfg,
            limits,
            store,
            bindings,
            node,
            restarts: 0,
            rejected_on_host: 0,
            announced: false,
            last_now: 0,
            pending: BTreeMap::new(),
            mirror,
            recovery: None,
        })
    }

    fn instance(
        engine: &AdapterEngine,
        cfg: &Config,
        limits: Limits,
    ) -> anyhow::Result<(Store<HostState>, ClusterAdapter, ResourceAny)> {
        let _running = engine.running();
        let mut store = engine.new_store(limits);
        let bindings = engine
            .pre()
            .instantiate(&mut store)
            .map_err(|e| anyhow::anyhow!("cannot instantiate the adapter component: {e:?}"))?;
        store.set_epoch_deadline(limits.cpu_ticks);
        let node = bindings
            .socketio_cluster_adapter()
            .node()
            .call_constructor(&mut store, &bindings::config_out(cfg))
            .map_err(|e| anyhow::anyhow!("the adapter component failed to start: {e:?}"))?;
        Ok((store, bindings, node))
    }

    /// How many times a trap replaced the instance.
    pub fn restarts(&self) -> u64 {
        self.restarts
    }

    /// The node's settings.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Refuses input over the frame cap on this side, so a huge frame never
    /// has to be copied into the instance's capped memory (same error as the
    /// component's own check).
    fn too_large(&mut self, bytes: &[u8]) -> Option<FrameError> {
        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        (len > self.cfg.max_frame_bytes).then(|| {
            self.rejected_on_host += 1;
            FrameError::TooLarge(len)
        })
    }

    /// Follows the effects that change what a rebuild needs.
    fn track(&mut self, effects: &[Effect]) {
        for e in effects {
            match e {
                Effect::Complete(c) => {
                    self.pending.remove(&c.id);
                }
                Effect::RoomsChanged {
                    sids,
                    rooms,
                    joined,
                } => {
                    if let Some(m) = &mut self.mirror {
                        for sid in sids {
                            if *joined {
                                m.add_all(sid, rooms);
                            } else {
                                for room in rooms {
                                    m.del(sid, room);
                                }
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// Calls the instance at time `now`; effects are tracked.
    fn effects(
        &mut self,
        now: u64,
        f: impl FnOnce(
            &bindings::exports::socketio::cluster::adapter::GuestNode<'_>,
            &mut Store<HostState>,
            ResourceAny,
        ) -> wasmtime::Result<Vec<bindings::wit::Effect>>,
    ) -> Result<Vec<Effect>, NodeError> {
        self.last_now = now;
        let out = bindings::effects_in(self.call(f)?);
        self.track(&out);
        Ok(out)
    }

    /// Like [`WasmNode::effects`] for calls that start request `id` of `kind`.
    fn request(
        &mut self,
        now: u64,
        kind: Kind,
        f: impl FnOnce(
            &bindings::exports::socketio::cluster::adapter::GuestNode<'_>,
            &mut Store<HostState>,
            ResourceAny,
        ) -> wasmtime::Result<(u64, Vec<bindings::wit::Effect>)>,
    ) -> Result<(u64, Vec<Effect>), NodeError> {
        self.last_now = now;
        let (id, out) = self.call(f)?;
        let out = bindings::effects_in(out);
        self.pending.insert(id, kind);
        self.track(&out);
        Ok((id, out))
    }

    fn call<R>(
        &mut self,
        f: impl FnOnce(
            &bindings::exports::socketio::cluster::adapter::GuestNode<'_>,
            &mut Store<HostState>,
            ResourceAny,
        ) -> wasmtime::Result<R>,
    ) -> Result<R, NodeError> {
        self.store.set_epoch_deadline(self.limits.cpu_ticks);
        let guest = self.bindings.socketio_cluster_adapter().node();
        let result = {
            let _running = self.engine.running();
            f(&guest, &mut self.store, self.node)
        };
        match result {
            Ok(r) => Ok(r),
            Err(e) => {
                let reason = match e.downcast_ref::<wasmtime::Trap>() {
                    Some(trap) => trap.to_string(),
                    None => format!("{e:#}"),
                };
                tracing::warn!(nsp = %self.cfg.nsp, uid = self.cfg.uid, "adapter instance trapped: {reason}; replacing it");
                self.restarts += 1;
                match self.rebuild() {
                    Ok(effects) => Err(NodeError::Trapped { reason, effects }),
                    Err(e) => Err(NodeError::Replace(format!("{reason}; then {e:#}"))),
                }
            }
        }
    }

    /// A fresh instance with the host-side state replayed; returns the effects
    /// of the rebuild (failed requests, re-announce).
    fn rebuild(&mut self) -> anyhow::Result<Vec<Effect>> {
        let (store, bindings, node) = Self::instance(&self.engine, &self.cfg, self.limits)?;
        self.store = store;
        self.bindings = bindings;
        self.node = node;
        let mut effects: Vec<Effect> = std::mem::take(&mut self.pending)
            .into_iter()
            .map(|(id, kind)| {
                Effect::Complete(Completion {
                    id,
                    error: Some(RESTARTED_ERROR.to_owned()),
                    value: kind.empty(),
                })
            })
            .collect();
        let sockets = self
            .mirror
            .as_ref()
            .map(|m| m.infos(&Opts::all(), self.cfg.uid))
            .unwrap_or_default();
        let guest = self.bindings.socketio_cluster_adapter().node();
        let engine = self.engine.clone();
        let _running = engine.running();
        for s in sockets {
            self.store.set_epoch_deadline(self.limits.cpu_ticks);
            guest
                .call_join(&mut self.store, self.node, &s.id, &s.rooms)
                .map_err(|e| anyhow::anyhow!("replaying the room index failed: {e:?}"))?;
            guest
                .call_set_socket_info(&mut self.store, self.node, &s.id, &s.handshake, &s.data)
                .map_err(|e| anyhow::anyhow!("replaying the room index failed: {e:?}"))?;
        }
        if let Some(cfg) = self.recovery {
            self.store.set_epoch_deadline(self.limits.cpu_ticks);
            guest
                .call_enable_recovery(
                    &mut self.store,
                    self.node,
                    bindings::recovery_config_out(cfg),
                )
                .map_err(|e| anyhow::anyhow!("enabling recovery again failed: {e:?}"))?;
        }
        if self.announced {
            self.store.set_epoch_deadline(self.limits.cpu_ticks);
            let init = guest
                .call_init(&mut self.store, self.node, self.last_now)
                .map_err(|e| anyhow::anyhow!("re-announcing the node failed: {e:?}"))?;
            effects.extend(bindings::effects_in(init));
        }
        Ok(effects)
    }

    /// Frames through the packed `on-frames-packed` export. A result that
    /// does not decode is a broken instance: replaced like a trap.
    fn packed(
        &mut self,
        now: u64,
        batch: &[u8],
    ) -> Result<(Vec<Effect>, Vec<FrameError>), NodeError> {
        self.last_now = now;
        let (out, errors) = self.call(|g, s, n| {
            let packed = g.call_on_frames_packed(s, n, now, batch)?;
            sio_cluster_adapter::packed::decode(&packed).map_err(|e| {
                wasmtime::Error::msg(format!(
                    "the adapter component returned a malformed packed result: {e}"
                ))
            })
        })?;
        self.track(&out);
        Ok((out, errors))
    }

    /// [`AdapterNode::broadcast`] through the typed `broadcast` export (the
    /// options lowered and every effect lifted), for comparison with the
    /// packed export that `broadcast` uses.
    pub fn broadcast_typed(
        &mut self,
        now: u64,
        opts: Opts,
        packet: Vec<u8>,
    ) -> Result<Vec<Effect>, NodeError> {
        let opts = bindings::opts_out(opts);
        self.effects(now, |g, s, n| g.call_broadcast(s, n, now, &opts, &packet))
    }

    /// [`AdapterNode::on_frames`] through the typed `on-frames` export (every
    /// effect lifted across the boundary), for comparison with the packed
    /// export that `on_frames` uses.
    pub fn on_frames_typed(
        &mut self,
        now: u64,
        batch: &[u8],
    ) -> Result<(Vec<Effect>, Vec<FrameError>), NodeError> {
        if let Some(e) = self.too_large(batch) {
            return Ok((Vec::new(), vec![e]));
        }
        self.last_now = now;
        let (out, errors) = self.call(|g, s, n| g.call_on_frames(s, n, now, batch))?;
        let out = bindings::effects_in(out);
        self.track(&out);
        Ok((
            out,
            errors.into_iter().map(bindings::frame_error_in).collect(),
        ))
    }
}

impl AdapterNode for WasmNode {
    fn init(&mut self, now: u64) -> Result<Vec<Effect>, NodeError> {
        let out = self.effects(now, |g, s, n| g.call_init(s, n, now))?;
        self.announced = true;
        Ok(out)
    }

    fn close(&mut self, now: u64) -> Result<Vec<Effect>, NodeError> {
        let out = self.effects(now, |g, s, n| g.call_close(s, n, now))?;
        self.announced = false;
        Ok(out)
    }

    fn tick(&mut self, now: u64) -> Result<Vec<Effect>, NodeError> {
        self.effects(now, |g, s, n| g.call_tick(s, n, now))
    }

    fn next_deadline(&mut self) -> Result<Option<u64>, NodeError> {
        self.call(|g, s, n| g.call_next_deadline(s, n))
    }

    fn on_frame(
        &mut self,
        now: u64,
        frame: &[u8],
    ) -> Result<Result<Vec<Effect>, FrameError>, NodeError> {
        if let Some(e) = self.too_large(frame) {
            return Ok(Err(e));
        }
        let mut batch = Vec::with_capacity(frame.len() + 4);
        sio_cluster_adapter::wire::push_batch(&mut batch, frame);
        let (out, errors) = self.packed(now, &batch)?;
        Ok(match errors.into_iter().next() {
            Some(e) => Err(e),
            None => Ok(out),
        })
    }

    fn on_frames(
        &mut self,
        now: u64,
        batch: &[u8],
    ) -> Result<(Vec<Effect>, Vec<FrameError>), NodeError> {
        if let Some(e) = self.too_large(batch) {
            return Ok((Vec::new(), vec![e]));
        }
        self.packed(now, batch)
    }

    fn node_down(&mut self, now: u64, uid: u64) -> Result<Vec<Effect>, NodeError> {
        self.effects(now, |g, s, n| g.call_node_down(s, n, now, uid))
    }

    fn server_count(&mut self) -> Result<u32, NodeError> {
        self.call(|g, s, n| g.call_server_count(s, n))
    }

    fn stats(&mut self) -> Result<Stats, NodeError> {
        let extra = self.rejected_on_host;
        self.call(|g, s, n| g.call_stats(s, n))
            .map(bindings::stats_in)
            .map(|s| Stats {
                frames_rejected: s.frames_rejected + extra,
                ..s
            })
    }

    fn broadcast(
        &mut self,
        now: u64,
        opts: Opts,
        packet: Vec<u8>,
    ) -> Result<Vec<Effect>, NodeError> {
        self.last_now = now;
        let bytes = sio_cluster_adapter::packed::encode_opts(&opts);
        let out = self.call(|g, s, n| {
            let packed = g
                .call_broadcast_packed(s, n, now, &bytes, &packet)?
                .map_err(|e| {
                    wasmtime::Error::msg(format!("the adapter component refused the options: {e}"))
                })?;
            // The local effect that echoes the call's own options and packet
            // is made from them, not decoded again.
            match sio_cluster_adapter::packed::decode_broadcast(&packed, &bytes, (opts, packet)) {
                Ok((effects, errors)) if errors.is_empty() => Ok(effects),
                Ok(_) => Err(wasmtime::Error::msg(
                    "the adapter component returned frame errors for a broadcast",
                )),
                Err(e) => Err(wasmtime::Error::msg(format!(
                    "the adapter component returned a malformed packed result: {e}"
                ))),
            }
        })?;
        self.track(&out);
        Ok(out)
    }

    fn broadcast_with_ack(
        &mut self,
        now: u64,
        opts: Opts,
        packet: Vec<u8>,
        timeout_ms: u32,
        streamed: bool,
    ) -> Result<(u64, Vec<Effect>), NodeError> {
        let opts = bindings::opts_out(opts);
        self.request(now, Kind::Acks, |g, s, n| {
            g.call_broadcast_with_ack(s, n, now, &opts, &packet, timeout_ms, streamed)
        })
    }

    fn sockets_join(
        &mut self,
        now: u64,
        opts: Opts,
        rooms: Vec<String>,
    ) -> Result<Vec<Effect>, NodeError> {
        let opts = bindings::opts_out(opts);
        self.effects(now, |g, s, n| g.call_sockets_join(s, n, now, &opts, &rooms))
    }

    fn sockets_leave(
        &mut self,
        now: u64,
        opts: Opts,
        rooms: Vec<String>,
    ) -> Result<Vec<Effect>, NodeError> {
        let opts = bindings::opts_out(opts);
        self.effects(now, |g, s, n| {
            g.call_sockets_leave(s, n, now, &opts, &rooms)
        })
    }

    fn disconnect_sockets(
        &mut self,
        now: u64,
        opts: Opts,
        close: bool,
    ) -> Result<Vec<Effect>, NodeError> {
        let opts = bindings::opts_out(opts);
        self.effects(now, |g, s, n| {
            g.call_disconnect_sockets(s, n, now, &opts, close)
        })
    }

    fn fetch_sockets(
        &mut self,
        now: u64,
        opts: Opts,
        timeout_ms: Option<u32>,
    ) -> Result<(u64, Vec<Effect>), NodeError> {
        let opts = bindings::opts_out(opts);
        self.request(now, Kind::Sockets, |g, s, n| {
            g.call_fetch_sockets(s, n, now, &opts, timeout_ms)
        })
    }

    fn fetch_rooms(&mut self, now: u64, opts: Opts) -> Result<(u64, Vec<Effect>), NodeError> {
        let opts = bindings::opts_out(opts);
        self.request(now, Kind::Rooms, |g, s, n| {
            g.call_fetch_rooms(s, n, now, &opts)
        })
    }

    fn server_side_emit(
        &mut self,
        now: u64,
        packet: Vec<u8>,
        want_replies: bool,
    ) -> Result<(Option<u64>, Vec<Effect>), NodeError> {
        self.last_now = now;
        let (id, out) =
            self.call(|g, s, n| g.call_server_side_emit(s, n, now, &packet, want_replies))?;
        let out = bindings::effects_in(out);
        if let Some(id) = id {
            self.pending.insert(id, Kind::Replies);
        }
        self.track(&out);
        Ok((id, out))
    }

    fn ack_count(&mut self, now: u64, query: u64, count: u32) -> Result<Vec<Effect>, NodeError> {
        self.effects(now, |g, s, n| g.call_ack_count(s, n, now, query, count))
    }

    fn ack(&mut self, now: u64, query: u64, ack: Ack) -> Result<Vec<Effect>, NodeError> {
        let ack = bindings::ack_out(ack);
        self.effects(now, |g, s, n| g.call_ack(s, n, now, query, &ack))
    }

    fn sockets_reply(
        &mut self,
        now: u64,
        query: u64,
        sockets: Vec<SocketInfo>,
    ) -> Result<Vec<Effect>, NodeError> {
        let sockets: Vec<_> = sockets.into_iter().map(bindings::socket_out).collect();
        self.effects(now, |g, s, n| {
            g.call_sockets_reply(s, n, now, query, &sockets)
        })
    }

    fn rooms_reply(
        &mut self,
        now: u64,
        query: u64,
        rooms: Vec<String>,
    ) -> Result<Vec<Effect>, NodeError> {
        self.effects(now, |g, s, n| g.call_rooms_reply(s, n, now, query, &rooms))
    }

    fn reply(&mut self, now: u64, query: u64, payload: Vec<u8>) -> Result<Vec<Effect>, NodeError> {
        self.effects(now, |g, s, n| g.call_reply(s, n, now, query, &payload))
    }

    fn join(&mut self, sid: &str, rooms: &[String]) -> Result<(), NodeError> {
        self.call(|g, s, n| g.call_join(s, n, sid, rooms))?;
        if let Some(m) = &mut self.mirror {
            m.add_all(sid, rooms);
        }
        Ok(())
    }

    fn leave(&mut self, sid: &str, room: &str) -> Result<(), NodeError> {
        self.call(|g, s, n| g.call_leave(s, n, sid, room))?;
        if let Some(m) = &mut self.mirror {
            m.del(sid, room);
        }
        Ok(())
    }

    fn leave_all(&mut self, sid: &str) -> Result<(), NodeError> {
        self.call(|g, s, n| g.call_leave_all(s, n, sid))?;
        if let Some(m) = &mut self.mirror {
            m.del_all(sid);
        }
        Ok(())
    }

    fn set_socket_info(
        &mut self,
        sid: &str,
        handshake: Vec<u8>,
        data: Vec<u8>,
    ) -> Result<(), NodeError> {
        self.call(|g, s, n| g.call_set_socket_info(s, n, sid, &handshake, &data))?;
        if let Some(m) = &mut self.mirror {
            m.set_info(sid, handshake, data);
        }
        Ok(())
    }

    fn socket_rooms(&mut self, sid: &str) -> Result<Option<Vec<String>>, NodeError> {
        self.call(|g, s, n| g.call_socket_rooms(s, n, sid))
    }

    fn sockets(&mut self, opts: Opts) -> Result<Vec<String>, NodeError> {
        let opts = bindings::opts_out(opts);
        self.call(|g, s, n| g.call_sockets(s, n, &opts))
    }

    fn enable_recovery(&mut self, cfg: RecoveryConfig) -> Result<(), NodeError> {
        let c = bindings::recovery_config_out(cfg);
        self.call(|g, s, n| g.call_enable_recovery(s, n, c))?;
        self.recovery = Some(cfg);
        Ok(())
    }

    fn recovery_stats(&mut self) -> Result<Option<RecoveryStats>, NodeError> {
        Ok(self
            .call(|g, s, n| g.call_recovery_stats(s, n))?
            .map(bindings::recovery_stats_in))
    }

    fn session_update(&mut self, now: u64, session: Session) -> Result<Vec<Effect>, NodeError> {
        let session = bindings::session_out(session);
        self.effects(now, |g, s, n| g.call_session_update(s, n, now, &session))
    }

    fn session_persist(&mut self, now: u64, session: Session) -> Result<Vec<Effect>, NodeError> {
        let session = bindings::session_out(session);
        self.effects(now, |g, s, n| g.call_session_persist(s, n, now, &session))
    }

    fn session_closed(&mut self, now: u64, pid: &str) -> Result<Vec<Effect>, NodeError> {
        self.effects(now, |g, s, n| g.call_session_closed(s, n, now, pid))
    }

    fn session_restore(
        &mut self,
        now: u64,
        pid: &str,
        offset: &str,
    ) -> Result<(RestoreOutcome, Vec<Effect>), NodeError> {
        self.last_now = now;
        let (r, out) = self.call(|g, s, n| g.call_session_restore(s, n, now, pid, offset))?;
        let out = bindings::effects_in(out);
        self.track(&out);
        Ok((bindings::restore_in(r), out))
    }
}
