//! One adapter node running in the component: its own `Store` (memory cap,
//! CPU bound, trap isolation) and a typed API that returns the adapter
//! crate's types.
//!
//! A trap (panic, memory cap, CPU bound) poisons the whole Store, so the node
//! is replaced by a fresh instance with the same config and the call returns
//! [`NodeError::Trapped`]. The fresh instance starts empty: the host must
//! re-announce it and re-seed what it needs (see [`WasmNode::restarts`]).

use sio_cluster_adapter::{Ack, Config, Effect, FrameError, Opts, SocketInfo, Stats};
use wasmtime::Store;
use wasmtime::component::ResourceAny;

use crate::bindings::{self, ClusterAdapter};
use crate::engine::{AdapterEngine, HostState, Limits};
use crate::node::{AdapterNode, NodeError};

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
}

impl WasmNode {
    pub(crate) fn new(engine: AdapterEngine, cfg: Config, limits: Limits) -> anyhow::Result<Self> {
        let (store, bindings, node) = Self::instance(&engine, &cfg, limits)?;
        Ok(WasmNode {
            engine,
            cfg,
            limits,
            store,
            bindings,
            node,
            restarts: 0,
            rejected_on_host: 0,
        })
    }

    fn instance(
        engine: &AdapterEngine,
        cfg: &Config,
        limits: Limits,
    ) -> anyhow::Result<(Store<HostState>, ClusterAdapter, ResourceAny)> {
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
        match f(&guest, &mut self.store, self.node) {
            Ok(r) => Ok(r),
            Err(e) => {
                let reason = match e.downcast_ref::<wasmtime::Trap>() {
                    Some(trap) => trap.to_string(),
                    None => format!("{e:#}"),
                };
                tracing::warn!(nsp = %self.cfg.nsp, uid = self.cfg.uid, "adapter instance trapped: {reason}; replacing it");
                self.restarts += 1;
                match Self::instance(&self.engine, &self.cfg, self.limits) {
                    Ok((store, bindings, node)) => {
                        self.store = store;
                        self.bindings = bindings;
                        self.node = node;
                        Err(NodeError::Trapped(reason))
                    }
                    Err(e) => Err(NodeError::Replace(format!("{reason}; then {e:#}"))),
                }
            }
        }
    }
}

impl AdapterNode for WasmNode {
    fn init(&mut self, now: u64) -> Result<Vec<Effect>, NodeError> {
        self.call(|g, s, n| g.call_init(s, n, now))
            .map(bindings::effects_in)
    }

    fn close(&mut self, now: u64) -> Result<Vec<Effect>, NodeError> {
        self.call(|g, s, n| g.call_close(s, n, now))
            .map(bindings::effects_in)
    }

    fn tick(&mut self, now: u64) -> Result<Vec<Effect>, NodeError> {
        self.call(|g, s, n| g.call_tick(s, n, now))
            .map(bindings::effects_in)
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
        self.call(|g, s, n| g.call_on_frame(s, n, now, frame))
            .map(|r| {
                r.map(bindings::effects_in)
                    .map_err(bindings::frame_error_in)
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
        self.call(|g, s, n| g.call_on_frames(s, n, now, batch))
            .map(|(e, errs)| {
                (
                    bindings::effects_in(e),
                    errs.into_iter().map(bindings::frame_error_in).collect(),
                )
            })
    }

    fn node_down(&mut self, now: u64, uid: u64) -> Result<Vec<Effect>, NodeError> {
        self.call(|g, s, n| g.call_node_down(s, n, now, uid))
            .map(bindings::effects_in)
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
        let opts = bindings::opts_out(opts);
        self.call(|g, s, n| g.call_broadcast(s, n, now, &opts, &packet))
            .map(bindings::effects_in)
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
        self.call(|g, s, n| {
            g.call_broadcast_with_ack(s, n, now, &opts, &packet, timeout_ms, streamed)
        })
        .map(|(id, e)| (id, bindings::effects_in(e)))
    }

    fn sockets_join(
        &mut self,
        now: u64,
        opts: Opts,
        rooms: Vec<String>,
    ) -> Result<Vec<Effect>, NodeError> {
        let opts = bindings::opts_out(opts);
        self.call(|g, s, n| g.call_sockets_join(s, n, now, &opts, &rooms))
            .map(bindings::effects_in)
    }

    fn sockets_leave(
        &mut self,
        now: u64,
        opts: Opts,
        rooms: Vec<String>,
    ) -> Result<Vec<Effect>, NodeError> {
        let opts = bindings::opts_out(opts);
        self.call(|g, s, n| g.call_sockets_leave(s, n, now, &opts, &rooms))
            .map(bindings::effects_in)
    }

    fn disconnect_sockets(
        &mut self,
        now: u64,
        opts: Opts,
        close: bool,
    ) -> Result<Vec<Effect>, NodeError> {
        let opts = bindings::opts_out(opts);
        self.call(|g, s, n| g.call_disconnect_sockets(s, n, now, &opts, close))
            .map(bindings::effects_in)
    }

    fn fetch_sockets(
        &mut self,
        now: u64,
        opts: Opts,
        timeout_ms: Option<u32>,
    ) -> Result<(u64, Vec<Effect>), NodeError> {
        let opts = bindings::opts_out(opts);
        self.call(|g, s, n| g.call_fetch_sockets(s, n, now, &opts, timeout_ms))
            .map(|(id, e)| (id, bindings::effects_in(e)))
    }

    fn fetch_rooms(&mut self, now: u64, opts: Opts) -> Result<(u64, Vec<Effect>), NodeError> {
        let opts = bindings::opts_out(opts);
        self.call(|g, s, n| g.call_fetch_rooms(s, n, now, &opts))
            .map(|(id, e)| (id, bindings::effects_in(e)))
    }

    fn server_side_emit(
        &mut self,
        now: u64,
        packet: Vec<u8>,
        want_replies: bool,
    ) -> Result<(Option<u64>, Vec<Effect>), NodeError> {
        self.call(|g, s, n| g.call_server_side_emit(s, n, now, &packet, want_replies))
            .map(|(id, e)| (id, bindings::effects_in(e)))
    }

    fn ack_count(&mut self, now: u64, query: u64, count: u32) -> Result<Vec<Effect>, NodeError> {
        self.call(|g, s, n| g.call_ack_count(s, n, now, query, count))
            .map(bindings::effects_in)
    }

    fn ack(&mut self, now: u64, query: u64, ack: Ack) -> Result<Vec<Effect>, NodeError> {
        let ack = bindings::ack_out(ack);
        self.call(|g, s, n| g.call_ack(s, n, now, query, &ack))
            .map(bindings::effects_in)
    }

    fn sockets_reply(
        &mut self,
        now: u64,
        query: u64,
        sockets: Vec<SocketInfo>,
    ) -> Result<Vec<Effect>, NodeError> {
        let sockets: Vec<_> = sockets.into_iter().map(bindings::socket_out).collect();
        self.call(|g, s, n| g.call_sockets_reply(s, n, now, query, &sockets))
            .map(bindings::effects_in)
    }

    fn rooms_reply(
        &mut self,
        now: u64,
        query: u64,
        rooms: Vec<String>,
    ) -> Result<Vec<Effect>, NodeError> {
        self.call(|g, s, n| g.call_rooms_reply(s, n, now, query, &rooms))
            .map(bindings::effects_in)
    }

    fn reply(&mut self, now: u64, query: u64, payload: Vec<u8>) -> Result<Vec<Effect>, NodeError> {
        self.call(|g, s, n| g.call_reply(s, n, now, query, &payload))
            .map(bindings::effects_in)
    }

    fn join(&mut self, sid: &str, rooms: &[String]) -> Result<(), NodeError> {
        self.call(|g, s, n| g.call_join(s, n, sid, rooms))
    }

    fn leave(&mut self, sid: &str, room: &str) -> Result<(), NodeError> {
        self.call(|g, s, n| g.call_leave(s, n, sid, room))
    }

    fn leave_all(&mut self, sid: &str) -> Result<(), NodeError> {
        self.call(|g, s, n| g.call_leave_all(s, n, sid))
    }

    fn set_socket_info(
        &mut self,
        sid: &str,
        handshake: Vec<u8>,
        data: Vec<u8>,
    ) -> Result<(), NodeError> {
        self.call(|g, s, n| g.call_set_socket_info(s, n, sid, &handshake, &data))
    }

    fn socket_rooms(&mut self, sid: &str) -> Result<Option<Vec<String>>, NodeError> {
        self.call(|g, s, n| g.call_socket_rooms(s, n, sid))
    }

    fn sockets(&mut self, opts: Opts) -> Result<Vec<String>, NodeError> {
        let opts = bindings::opts_out(opts);
        self.call(|g, s, n| g.call_sockets(s, n, &opts))
    }
}
