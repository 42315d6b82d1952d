//! One adapter node: upstream `ClusterAdapterWithHeartbeat` over the in-memory
//! `Adapter`, as a sans-IO state machine.
//!
//! Every method takes the current time and returns the [`Effect`]s the host
//! must carry out in order. Cluster commands publish first and then apply
//! locally, so a node's commands keep their order on every node.

use std::collections::{BTreeMap, BTreeSet};

use crate::heartbeat::Liveness;
use crate::packed;
use crate::recovery::{self, Recovery, RecoveryConfig, RecoveryStats, RestoreOutcome, Session};
use crate::requests::{Collect, PendingQuery, Query, Request, Tally};
use crate::rooms::RoomIndex;
use crate::types::{
    Ack, CLOSED_ERROR, Config, Delivery, Effect, FrameError, LocalOp, NodeId, Opts, QueryId,
    RequestId, RoomOwner, SocketInfo, Stats,
};
use crate::wire::{self, AckRequest, Envelope, Message};

/// Where a cluster command goes.
enum Route {
    /// Only this node.
    Local,
    /// Every other node, and this one.
    All,
    /// One other node.
    One(NodeId),
    /// A node that is not live: nowhere.
    Nowhere,
}

impl Route {
    fn includes_local(&self) -> bool {
        matches!(self, Route::Local | Route::All)
    }
}

/// One adapter node for one namespace.
#[derive(Debug)]
pub struct Node {
    cfg: Config,
    rooms: RoomIndex,
    live: Liveness,
    requests: BTreeMap<RequestId, Request>,
    queries: BTreeMap<QueryId, PendingQuery>,
    next_request: RequestId,
    next_query: QueryId,
    closed: bool,
    stats: Stats,
    recovery: Option<Recovery>,
    /// When [`Node::init`] announced this node.
    started_at: Option<u64>,
}

impl Node {
    /// A node with the given settings.
    pub fn new(cfg: Config) -> Self {
        Node {
            live: Liveness::new(cfg.heartbeat_interval_ms, cfg.heartbeat_timeout_ms),
            cfg,
            rooms: RoomIndex::new(),
            requests: BTreeMap::new(),
            queries: BTreeMap::new(),
            next_request: 1,
            next_query: 1,
            closed: false,
            stats: Stats::default(),
            recovery: None,
            started_at: None,
        }
    }

    /// This node's settings.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The room index (used when the component keeps rooms).
    pub fn rooms(&self) -> &RoomIndex {
        &self.rooms
    }

    // ---- lifecycle and timers ----

    /// Announces this node (INITIAL_HEARTBEAT).
    pub fn init(&mut self, now: u64) -> Vec<Effect> {
        let mut out = Vec::new();
        self.closed = false;
        self.started_at = Some(now);
        if let Some(r) = &mut self.recovery {
            r.started(now);
        }
        self.publish(now, Message::InitialHeartbeat, &mut out);
        out
    }

    /// Leaves the cluster (ADAPTER_CLOSE); pending requests fail with [`CLOSED_ERROR`].
    pub fn close(&mut self, now: u64) -> Vec<Effect> {
        let mut out = Vec::new();
        if self.closed {
            return out;
        }
        self.publish(now, Message::AdapterClose, &mut out);
        self.closed = true;
        self.live.stop();
        for (id, req) in std::mem::take(&mut self.requests) {
            out.push(Effect::Complete(
                req.complete(id, Some(CLOSED_ERROR.into())),
            ));
        }
        self.queries.clear();
        out
    }

    /// Runs due timers: heartbeat, node sweep, request and query timeouts.
    pub fn tick(&mut self, now: u64) -> Vec<Effect> {
        let mut out = Vec::new();
        if self.closed {
            return out;
        }
        if self.live.heartbeat_due(now) {
            self.publish(now, Message::Heartbeat, &mut out);
        }
        for uid in self.live.expired(now) {
            self.remove_node(now, uid, &mut out);
        }
        let due: Vec<RequestId> = self
            .requests
            .iter()
            .filter(|(_, r)| r.deadline <= now)
            .map(|(&id, _)| id)
            .collect();
        for id in due {
            if let Some(req) = self.requests.remove(&id) {
                if let Some(q) = req.local_query {
                    self.queries.remove(&q);
                }
                let error = req.timeout_error();
                out.push(Effect::Complete(req.complete(id, Some(error))));
            }
        }
        self.queries.retain(|_, q| q.expires > now);
        if let Some(r) = &mut self.recovery {
            r.sweep(now);
        }
        out
    }

    /// When [`Node::tick`] next has work.
    pub fn next_deadline(&self) -> Option<u64> {
        if self.closed {
            return None;
        }
        [
            self.live.next_deadline(),
            self.requests.values().map(|r| r.deadline).min(),
            self.queries.values().map(|q| q.expires).min(),
            self.recovery.as_ref().and_then(Recovery::next_deadline),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The host learned that a node is gone.
    pub fn node_down(&mut self, now: u64, uid: NodeId) -> Vec<Effect> {
        let mut out = Vec::new();
        self.remove_node(now, uid, &mut out);
        out
    }

    /// Live nodes including this one.
    pub fn server_count(&self) -> u32 {
        u32::try_from(self.live.len() + 1).unwrap_or(u32::MAX)
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        Stats {
            pending_requests: self.requests.len() as u32,
            pending_queries: self.queries.len() as u32,
            nodes: self.live.len() as u32,
            sockets: self.rooms.socket_count() as u32,
            rooms: self.rooms.room_count() as u32,
            ..self.stats.clone()
        }
    }

    // ---- incoming frames ----

    /// Handles one frame from another node.
    pub fn on_frame(&mut self, now: u64, frame: &[u8]) -> Result<Vec<Effect>, FrameError> {
        let mut out = Vec::new();
        self.frame(now, frame, &mut out)?;
        Ok(out)
    }

    /// Handles a batch of length-prefixed frames; bad frames are skipped and returned.
    pub fn on_frames(&mut self, now: u64, batch: &[u8]) -> (Vec<Effect>, Vec<FrameError>) {
        let mut out = Vec::new();
        let mut errors = Vec::new();
        for frame in wire::split_batch(batch) {
            let res = match frame {
                Ok(frame) => self.frame(now, frame, &mut out),
                Err(e) => {
                    self.stats.frames_rejected += 1;
                    Err(e)
                }
            };
            if let Err(e) = res {
                errors.push(e);
            }
        }
        (out, errors)
    }

    /// [`Node::on_frames`] with the result packed into `out` (see [`crate::packed`]).
    pub fn on_frames_packed(&mut self, now: u64, batch: &[u8], out: &mut Vec<u8>) {
        packed::start(out);
        let mut effects = Vec::new();
        for frame in wire::split_batch(batch) {
            let frame = match frame {
                Ok(frame) => frame,
                Err(e) => {
                    self.stats.frames_rejected += 1;
                    packed::push_error(out, &e);
                    continue;
                }
            };
            if self.broadcast_in_place(now, frame, out) {
                continue;
            }
            if let Err(e) = self.frame(now, frame, &mut effects) {
                packed::push_error(out, &e);
            }
            packed::push_effects(out, &effects);
            effects.clear();
        }
    }

    /// [`Node::broadcast`] with packed options ([`packed::encode_opts`]) and
    /// a packed result ([`packed`]) in `out`. A broadcast without acks to
    /// every node from a node whose host keeps rooms (and without recovery)
    /// is written straight from the caller's bytes; the result is the same
    /// either way. Malformed options are an error.
    pub fn broadcast_packed(
        &mut self,
        now: u64,
        opts: &[u8],
        packet: Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        packed::start(out);
        if !self.closed
            && self.cfg.rooms == RoomOwner::Host
            && self.recovery.is_none()
            && packed::opts_to_all(opts)
        {
            packed::push_broadcast_to_all(out, self.cfg.uid, &self.cfg.nsp, opts, &packet);
            self.stats.frames_out += 1;
            self.live.published(now);
            return Ok(());
        }
        let opts = packed::decode_opts(opts)?;
        let effects = self.broadcast(now, opts, packet);
        packed::push_effects(out, &effects);
        Ok(())
    }

    /// The hot path of [`Node::on_frames_packed`]: a remote broadcast without
    /// acks for a host that keeps rooms is copied as it is. Returns false when
    /// the frame needs the full path; the effects are the same either way.
    fn broadcast_in_place(&mut self, now: u64, frame: &[u8], out: &mut Vec<u8>) -> bool {
        if self.closed || self.cfg.rooms != RoomOwner::Host {
            return false;
        }
        let Some(view) = packed::BroadcastView::parse(frame, self.cfg.max_frame_bytes) else {
            return false;
        };
        if view.uid == self.cfg.uid || view.nsp != self.cfg.nsp {
            return false;
        }
        self.stats.frames_in += 1;
        if self.live.seen(view.uid, now) {
            packed::push_effects(out, &[Effect::NodeUp(view.uid)]);
        }
        view.push_apply(out);
        true
    }

    fn frame(&mut self, now: u64, frame: &[u8], out: &mut Vec<Effect>) -> Result<(), FrameError> {
        let env = match wire::decode(frame, self.cfg.max_frame_bytes) {
            Ok(env) => env,
            Err(e) => {
                self.stats.frames_rejected += 1;
                return Err(e);
            }
        };
        if self.closed || env.uid == self.cfg.uid || env.nsp != self.cfg.nsp {
            self.stats.frames_ignored += 1;
            return Ok(());
        }
        self.stats.frames_in += 1;
        let from = env.uid;
        if self.live.seen(from, now) {
            out.push(Effect::NodeUp(from));
        }
        self.message(now, from, env.msg, out);
        Ok(())
    }

    fn message(&mut self, now: u64, from: NodeId, msg: Message, out: &mut Vec<Effect>) {
        match msg {
            Message::InitialHeartbeat => {
                self.publish(now, Message::Heartbeat, out);
                // A node that starts learns the sessions this node holds.
                let sessions = self.recovery.as_ref().map(Recovery::all_sessions);
                for w in sessions.into_iter().flatten() {
                    self.send(from, Message::Session(w), out);
                }
                self.send_history(now, from, out);
            }
            Message::LogHistory {
                heads,
                entries,
                sessions,
                last,
            } => {
                if let Some(r) = &mut self.recovery {
                    r.absorb_history(now, heads, entries, sessions, last);
                }
            }
            Message::StampedBroadcast { opts, packet, seq } => {
                let packet = match &mut self.recovery {
                    Some(r) => r.log(now, from, seq, &opts, packet),
                    None => packet,
                };
                self.local_broadcast(opts, packet, out);
            }
            Message::Session(w) => {
                let stale = match &mut self.recovery {
                    Some(r) => r.remote_session(now, w),
                    None => None,
                };
                if let Some(sid) = stale {
                    self.close_local_socket(sid, out);
                }
            }
            Message::SessionDrop { pid, epoch } => {
                if let Some(r) = &mut self.recovery {
                    r.remote_drop(from, &pid, epoch);
                }
            }
            Message::Heartbeat => {}
            Message::AdapterClose => self.remove_node(now, from, out),
            Message::Broadcast { opts, packet, ack } => match ack {
                None => self.local_broadcast(opts, packet, out),
                Some(AckRequest {
                    request_id,
                    timeout_ms,
                }) => {
                    let expires = now.saturating_add(u64::from(timeout_ms));
                    let query = Query::RemoteAcks {
                        requester: from,
                        request: request_id,
                        tally: Tally::default(),
                    };
                    match self.cfg.rooms {
                        RoomOwner::Host => {
                            let q = self.new_query(query, expires);
                            out.push(Effect::Apply(LocalOp::BroadcastWithAck(
                                q, opts, packet, timeout_ms,
                            )));
                        }
                        RoomOwner::Component => {
                            let sids = self.rooms.matching(&opts);
                            let count = sids.len() as u32;
                            if count > 0 {
                                let q = self.new_query(query, expires);
                                if let Some(PendingQuery {
                                    query: Query::RemoteAcks { tally, .. },
                                    ..
                                }) = self.queries.get_mut(&q)
                                {
                                    tally.count = Some(count);
                                }
                                out.push(Effect::Deliver(delivery(sids, packet, Some(q), &opts)));
                            }
                            self.send(
                                from,
                                Message::BroadcastClientCount {
                                    request_id,
                                    client_count: count,
                                },
                                out,
                            );
                        }
                    }
                }
            },
            Message::SocketsJoin { opts, rooms } => self.local_rooms(opts, rooms, true, out),
            Message::SocketsLeave { opts, rooms } => self.local_rooms(opts, rooms, false, out),
            Message::DisconnectSockets { opts, close } => self.local_disconnect(opts, close, out),
            Message::FetchSockets { opts, request_id } => match self.cfg.rooms {
                RoomOwner::Host => {
                    let q = self.new_query(
                        Query::RemoteSockets {
                            requester: from,
                            request: request_id,
                        },
                        now.saturating_add(u64::from(self.cfg.request_timeout_ms)),
                    );
                    out.push(Effect::Apply(LocalOp::FetchSockets(q, opts)));
                }
                RoomOwner::Component => {
                    let sockets = self.rooms.infos(&opts, self.cfg.uid);
                    self.send(
                        from,
                        Message::FetchSocketsResponse {
                            request_id,
                            sockets,
                        },
                        out,
                    );
                }
            },
            Message::FetchRooms { opts, request_id } => match self.cfg.rooms {
                RoomOwner::Host => {
                    let q = self.new_query(
                        Query::RemoteRooms {
                            requester: from,
                            request: request_id,
                        },
                        now.saturating_add(u64::from(self.cfg.request_timeout_ms)),
                    );
                    out.push(Effect::Apply(LocalOp::FetchRooms(q, opts)));
                }
                RoomOwner::Component => {
                    let rooms = self.rooms.rooms_of(&opts);
                    self.send(from, Message::FetchRoomsResponse { request_id, rooms }, out);
                }
            },
            Message::ServerSideEmit { packet, request_id } => {
                let q = request_id.map(|request| {
                    self.new_query(
                        Query::Reply {
                            requester: from,
                            request,
                        },
                        now.saturating_add(u64::from(self.cfg.request_timeout_ms)),
                    )
                });
                out.push(Effect::ServerEvent(packet, q));
            }
            Message::FetchSocketsResponse {
                request_id,
                sockets,
            } => self.response(from, request_id, out, |c| match c {
                Collect::Sockets(s) => {
                    s.extend(sockets);
                    true
                }
                _ => false,
            }),
            Message::FetchRoomsResponse { request_id, rooms } => {
                self.response(from, request_id, out, |c| match c {
                    Collect::Rooms(r) => {
                        merge_rooms(r, rooms);
                        true
                    }
                    _ => false,
                })
            }
            Message::ServerSideEmitResponse { request_id, packet } => {
                self.response(from, request_id, out, |c| match c {
                    Collect::Replies(r) => {
                        r.push(packet);
                        true
                    }
                    _ => false,
                })
            }
            Message::BroadcastClientCount {
                request_id,
                client_count,
            } => self.ack_count_for(request_id, from, client_count, out),
            Message::BroadcastAck { request_id, ack } => self.ack_for(request_id, from, ack, out),
        }
    }

    /// A FETCH_SOCKETS / FETCH_ROOMS / SERVER_SIDE_EMIT answer from `from`.
    fn response(
        &mut self,
        from: NodeId,
        id: RequestId,
        out: &mut Vec<Effect>,
        add: impl FnOnce(&mut Collect) -> bool,
    ) {
        let accepted = match self.requests.get_mut(&id) {
            // Only nodes the request waits for count, each once.
            Some(req) if req.missing.contains(&from) => {
                let ok = add(&mut req.collect);
                if ok {
                    req.missing.remove(&from);
                }
                ok
            }
            _ => false,
        };
        if accepted {
            self.finish_if_done(id, out);
        } else {
            self.stats.frames_ignored += 1;
        }
    }

    fn ack_count_for(&mut self, id: RequestId, node: NodeId, count: u32, out: &mut Vec<Effect>) {
        let known = match self.requests.get_mut(&id).map(|r| &mut r.collect) {
            Some(Collect::Acks { tallies, .. }) => match tallies.get_mut(&node) {
                Some(t) if t.count.is_none() => {
                    t.count = Some(count);
                    true
                }
                _ => false,
            },
            _ => false,
        };
        if known {
            self.finish_if_done(id, out);
        } else {
            self.stats.frames_ignored += 1;
        }
    }

    fn ack_for(&mut self, id: RequestId, node: NodeId, ack: Ack, out: &mut Vec<Effect>) {
        let known = match self.requests.get_mut(&id).map(|r| &mut r.collect) {
            Some(Collect::Acks {
                tallies,
                acks,
                streamed,
            }) => match tallies.get_mut(&node) {
                Some(t) => {
                    t.received += 1;
                    if *streamed {
                        out.push(Effect::AckReceived(id, ack));
                    } else {
                        acks.push(ack);
                    }
                    true
                }
                None => false,
            },
            _ => false,
        };
        if known {
            self.finish_if_done(id, out);
        } else {
            self.stats.frames_ignored += 1;
        }
    }

    fn finish_if_done(&mut self, id: RequestId, out: &mut Vec<Effect>) {
        // A closed node has no timers: a request started on it fails at
        // once, as the ones pending at `close` did.
        if self.closed
            && let Some(req) = self.requests.remove(&id)
        {
            if let Some(q) = req.local_query {
                self.queries.remove(&q);
            }
            out.push(Effect::Complete(
                req.complete(id, Some(CLOSED_ERROR.into())),
            ));
            return;
        }
        if self.requests.get(&id).is_some_and(Request::is_done)
            && let Some(req) = self.requests.remove(&id)
        {
            if let Some(q) = req.local_query {
                self.queries.remove(&q);
            }
            out.push(Effect::Complete(req.complete(id, None)));
        }
    }

    fn remove_node(&mut self, now: u64, uid: NodeId, out: &mut Vec<Effect>) {
        if !self.live.remove(uid) {
            return;
        }
        out.push(Effect::NodeDown(uid));
        if let Some(r) = &mut self.recovery {
            r.node_gone(now, uid);
        }
        self.queries.retain(|_, q| q.query.requester() != Some(uid));
        let waiting: Vec<RequestId> = self
            .requests
            .iter_mut()
            .filter_map(|(&id, r)| r.forget_node(uid).then_some(id))
            .collect();
        for id in waiting {
            self.finish_if_done(id, out);
        }
    }

    // ---- cluster commands from the host ----

    /// `io.to(..).emit(..)`: publishes, then applies locally.
    pub fn broadcast(&mut self, now: u64, opts: Opts, packet: Vec<u8>) -> Vec<Effect> {
        let mut out = Vec::new();
        let route = self.route(&opts);
        if matches!(route, Route::All)
            && !opts.flags.volatile
            && !self.closed
            && recovery::stampable(&packet)
            && let Some(r) = &mut self.recovery
        {
            // Recovery: logged and stamped on every node (crate::recovery).
            let seq = r.next_own_seq();
            let msg = Message::StampedBroadcast {
                opts: wire_opts(&opts),
                packet: packet.clone(),
                seq,
            };
            self.publish(now, msg, &mut out);
            let uid = self.cfg.uid;
            let stamped = match &mut self.recovery {
                Some(r) => r.log(now, uid, seq, &opts, packet),
                None => packet,
            };
            self.local_broadcast(opts, stamped, &mut out);
            return out;
        }
        let (remote, local) = split_packet(&route, packet);
        if let Some(packet) = remote {
            let msg = Message::Broadcast {
                opts: wire_opts(&opts),
                packet,
                ack: None,
            };
            self.command(now, &route, msg, &mut out);
        }
        if let Some(packet) = local {
            self.local_broadcast(opts, packet, &mut out);
        }
        out
    }

    /// `io.timeout(ms).emit(.., ack)`: completes when every node reported its
    /// client count and all acks arrived, or at the timeout with
    /// `operation has timed out`. With `streamed`, acks come out one by one as
    /// [`Effect::AckReceived`] and the completion holds none.
    pub fn broadcast_with_ack(
        &mut self,
        now: u64,
        opts: Opts,
        packet: Vec<u8>,
        timeout_ms: u32,
        streamed: bool,
    ) -> (RequestId, Vec<Effect>) {
        let mut out = Vec::new();
        let id = self.new_request_id();
        let deadline = now.saturating_add(u64::from(timeout_ms));
        let route = self.route(&opts);
        let mut tallies: BTreeMap<NodeId, Tally> = self
            .remote_targets(&route)
            .map(|n| (n, Tally::default()))
            .collect();
        let (remote, local) = split_packet(&route, packet);
        if let Some(packet) = remote {
            let msg = Message::Broadcast {
                opts: wire_opts(&opts),
                packet,
                ack: Some(AckRequest {
                    request_id: id,
                    timeout_ms,
                }),
            };
            self.command(now, &route, msg, &mut out);
        }
        let mut local_query = None;
        if let Some(packet) = local {
            let mut tally = Tally::default();
            let sids = match self.cfg.rooms {
                RoomOwner::Host => None,
                RoomOwner::Component => {
                    let sids = self.rooms.matching(&opts);
                    tally.count = Some(sids.len() as u32);
                    Some(sids)
                }
            };
            tallies.insert(self.cfg.uid, tally);
            match sids {
                None => {
                    let q = self.new_query(Query::LocalAcks(id), deadline);
                    local_query = Some(q);
                    out.push(Effect::Apply(LocalOp::BroadcastWithAck(
                        q, opts, packet, timeout_ms,
                    )));
                }
                Some(sids) if !sids.is_empty() => {
                    let q = self.new_query(Query::LocalAcks(id), deadline);
                    local_query = Some(q);
                    out.push(Effect::Deliver(delivery(sids, packet, Some(q), &opts)));
                }
                Some(_) => {}
            }
        }
        self.requests.insert(
            id,
            Request {
                deadline,
                missing: BTreeSet::new(),
                local_pending: false,
                local_query,
                collect: Collect::Acks {
                    tallies,
                    acks: Vec::new(),
                    streamed,
                },
            },
        );
        self.finish_if_done(id, &mut out);
        (id, out)
    }

    /// `io.in(..).socketsJoin(rooms)`.
    pub fn sockets_join(&mut self, now: u64, opts: Opts, rooms: Vec<String>) -> Vec<Effect> {
        self.rooms_command(now, opts, rooms, true)
    }

    /// `io.in(..).socketsLeave(rooms)`.
    pub fn sockets_leave(&mut self, now: u64, opts: Opts, rooms: Vec<String>) -> Vec<Effect> {
        self.rooms_command(now, opts, rooms, false)
    }

    fn rooms_command(
        &mut self,
        now: u64,
        opts: Opts,
        rooms: Vec<String>,
        join: bool,
    ) -> Vec<Effect> {
        let mut out = Vec::new();
        let route = self.route(&opts);
        let msg = if join {
            Message::SocketsJoin {
                opts: wire_opts(&opts),
                rooms: rooms.clone(),
            }
        } else {
            Message::SocketsLeave {
                opts: wire_opts(&opts),
                rooms: rooms.clone(),
            }
        };
        self.command(now, &route, msg, &mut out);
        if route.includes_local() {
            self.local_rooms(opts, rooms, join, &mut out);
        }
        out
    }

    /// `io.in(..).disconnectSockets(close)`.
    pub fn disconnect_sockets(&mut self, now: u64, opts: Opts, close: bool) -> Vec<Effect> {
        let mut out = Vec::new();
        let route = self.route(&opts);
        let msg = Message::DisconnectSockets {
            opts: wire_opts(&opts),
            close,
        };
        self.command(now, &route, msg, &mut out);
        if route.includes_local() {
            self.local_disconnect(opts, close, &mut out);
        }
        out
    }

    /// `io.in(..).fetchSockets()`: fails with `timeout reached: missing N responses`.
    pub fn fetch_sockets(
        &mut self,
        now: u64,
        opts: Opts,
        timeout_ms: Option<u32>,
    ) -> (RequestId, Vec<Effect>) {
        let timeout = timeout_ms.unwrap_or(self.cfg.request_timeout_ms);
        self.fetch(now, opts, timeout, true)
    }

    /// Rooms of the matched sockets, cluster-wide (socketioxide `rooms()`).
    pub fn fetch_rooms(&mut self, now: u64, opts: Opts) -> (RequestId, Vec<Effect>) {
        let timeout = self.cfg.request_timeout_ms;
        self.fetch(now, opts, timeout, false)
    }

    fn fetch(
        &mut self,
        now: u64,
        opts: Opts,
        timeout: u32,
        sockets: bool,
    ) -> (RequestId, Vec<Effect>) {
        let mut out = Vec::new();
        let id = self.new_request_id();
        let route = self.route(&opts);
        let missing: BTreeSet<NodeId> = self.remote_targets(&route).collect();
        let msg = if sockets {
            Message::FetchSockets {
                opts: wire_opts(&opts),
                request_id: id,
            }
        } else {
            Message::FetchRooms {
                opts: wire_opts(&opts),
                request_id: id,
            }
        };
        if !missing.is_empty() {
            self.command(now, &route, msg, &mut out);
        }
        let deadline = now.saturating_add(u64::from(timeout));
        let mut req = Request {
            deadline,
            missing,
            local_pending: false,
            local_query: None,
            collect: if sockets {
                Collect::Sockets(Vec::new())
            } else {
                Collect::Rooms(Vec::new())
            },
        };
        if route.includes_local() {
            match self.cfg.rooms {
                RoomOwner::Host => {
                    let (query, op): (Query, fn(QueryId, Opts) -> LocalOp) = if sockets {
                        (Query::LocalSockets(id), LocalOp::FetchSockets)
                    } else {
                        (Query::LocalRooms(id), LocalOp::FetchRooms)
                    };
                    let q = self.new_query(query, deadline);
                    req.local_pending = true;
                    req.local_query = Some(q);
                    out.push(Effect::Apply(op(q, opts)));
                }
                RoomOwner::Component => match &mut req.collect {
                    Collect::Sockets(s) => s.extend(self.rooms.infos(&opts, self.cfg.uid)),
                    Collect::Rooms(r) => *r = self.rooms.rooms_of(&opts),
                    _ => {}
                },
            }
        }
        self.requests.insert(id, req);
        self.finish_if_done(id, &mut out);
        (id, out)
    }

    /// `io.serverSideEmit(..)`; with `want_replies` every other node answers
    /// once, or the request fails with `timeout reached: missing N responses`.
    pub fn server_side_emit(
        &mut self,
        now: u64,
        packet: Vec<u8>,
        want_replies: bool,
    ) -> (Option<RequestId>, Vec<Effect>) {
        let mut out = Vec::new();
        if !want_replies {
            let msg = Message::ServerSideEmit {
                packet,
                request_id: None,
            };
            self.publish(now, msg, &mut out);
            return (None, out);
        }
        let id = self.new_request_id();
        let missing: BTreeSet<NodeId> = self.live.nodes().collect();
        if !missing.is_empty() {
            let msg = Message::ServerSideEmit {
                packet,
                request_id: Some(id),
            };
            self.publish(now, msg, &mut out);
        }
        self.requests.insert(
            id,
            Request {
                deadline: now.saturating_add(u64::from(self.cfg.request_timeout_ms)),
                missing,
                local_pending: false,
                local_query: None,
                collect: Collect::Replies(Vec::new()),
            },
        );
        self.finish_if_done(id, &mut out);
        (Some(id), out)
    }

    // ---- answers from the host ----

    /// The host wrote a broadcast-with-ack to `count` local clients.
    pub fn ack_count(&mut self, _now: u64, query: QueryId, count: u32) -> Vec<Effect> {
        let mut out = Vec::new();
        match self.queries.get_mut(&query).map(|q| &mut q.query) {
            Some(Query::LocalAcks(id)) => {
                let id = *id;
                let uid = self.cfg.uid;
                self.ack_count_for(id, uid, count, &mut out);
            }
            Some(Query::RemoteAcks {
                requester,
                request,
                tally,
            }) if tally.count.is_none() => {
                tally.count = Some(count);
                let (to, request_id, done) = (*requester, *request, tally.received >= count);
                if done {
                    self.queries.remove(&query);
                }
                let msg = Message::BroadcastClientCount {
                    request_id,
                    client_count: count,
                };
                self.send(to, msg, &mut out);
            }
            _ => {}
        }
        out
    }

    /// One local client acknowledged a broadcast-with-ack.
    pub fn ack(&mut self, _now: u64, query: QueryId, ack: Ack) -> Vec<Effect> {
        let mut out = Vec::new();
        match self.queries.get_mut(&query).map(|q| &mut q.query) {
            Some(Query::LocalAcks(id)) => {
                let id = *id;
                let uid = self.cfg.uid;
                self.ack_for(id, uid, ack, &mut out);
            }
            Some(Query::RemoteAcks {
                requester,
                request,
                tally,
            }) => {
                tally.received += 1;
                let (to, request_id, done) = (*requester, *request, tally.done());
                if done {
                    self.queries.remove(&query);
                }
                self.send(to, Message::BroadcastAck { request_id, ack }, &mut out);
            }
            _ => {}
        }
        out
    }

    /// The host's local sockets for a fetch-sockets query.
    pub fn sockets_reply(
        &mut self,
        _now: u64,
        query: QueryId,
        sockets: Vec<SocketInfo>,
    ) -> Vec<Effect> {
        let mut out = Vec::new();
        let uid = self.cfg.uid;
        let sockets: Vec<SocketInfo> = sockets
            .into_iter()
            .map(|s| SocketInfo { node: uid, ..s })
            .collect();
        let wanted = |q: &Query| matches!(q, Query::LocalSockets(_) | Query::RemoteSockets { .. });
        match self.take_query(query, wanted) {
            Some(Query::LocalSockets(id)) => self.local_part(id, &mut out, |c| {
                if let Collect::Sockets(s) = c {
                    s.extend(sockets);
                }
            }),
            Some(Query::RemoteSockets { requester, request }) => {
                let msg = Message::FetchSocketsResponse {
                    request_id: request,
                    sockets,
                };
                self.send(requester, msg, &mut out);
            }
            _ => {}
        }
        out
    }

    /// The host's local rooms for a fetch-rooms query.
    pub fn rooms_reply(&mut self, _now: u64, query: QueryId, rooms: Vec<String>) -> Vec<Effect> {
        let mut out = Vec::new();
        let wanted = |q: &Query| matches!(q, Query::LocalRooms(_) | Query::RemoteRooms { .. });
        match self.take_query(query, wanted) {
            Some(Query::LocalRooms(id)) => self.local_part(id, &mut out, |c| {
                if let Collect::Rooms(r) = c {
                    merge_rooms(r, rooms);
                }
            }),
            Some(Query::RemoteRooms { requester, request }) => {
                let msg = Message::FetchRoomsResponse {
                    request_id: request,
                    rooms,
                };
                self.send(requester, msg, &mut out);
            }
            _ => {}
        }
        out
    }

    /// The host's answer to a server-side event (first answer only).
    pub fn reply(&mut self, _now: u64, query: QueryId, payload: Vec<u8>) -> Vec<Effect> {
        let mut out = Vec::new();
        if let Some(Query::Reply { requester, request }) =
            self.take_query(query, |q| matches!(q, Query::Reply { .. }))
        {
            let msg = Message::ServerSideEmitResponse {
                request_id: request,
                packet: payload,
            };
            self.send(requester, msg, &mut out);
        }
        out
    }

    /// Removes and returns the query if it is of the wanted kind; an answer of
    /// the wrong kind leaves it waiting for the right one.
    fn take_query(&mut self, id: QueryId, wanted: impl Fn(&Query) -> bool) -> Option<Query> {
        if self.queries.get(&id).is_some_and(|q| wanted(&q.query)) {
            self.queries.remove(&id).map(|q| q.query)
        } else {
            None
        }
    }

    /// The host delivered the local part of request `id`.
    fn local_part(
        &mut self,
        id: RequestId,
        out: &mut Vec<Effect>,
        fill: impl FnOnce(&mut Collect),
    ) {
        if let Some(req) = self.requests.get_mut(&id) {
            fill(&mut req.collect);
            req.local_pending = false;
            req.local_query = None;
        }
        self.finish_if_done(id, out);
    }

    // ---- connection state recovery ----

    /// Turns connection state recovery on (see [`crate::recovery`]); a
    /// second call changes the bounds and keeps what is stored.
    pub fn enable_recovery(&mut self, cfg: RecoveryConfig) {
        match &mut self.recovery {
            Some(r) if r.config() == cfg => {}
            _ => {
                let mut r = Recovery::new(self.cfg.uid, cfg);
                if let Some(t) = self.started_at {
                    r.started(t);
                }
                self.recovery = Some(r);
            }
        }
    }

    /// Recovery counters; `None` while recovery is off.
    pub fn recovery_stats(&self) -> Option<RecoveryStats> {
        self.recovery.as_ref().map(Recovery::stats)
    }

    /// A live socket's session (on connect and on room changes): replicated
    /// to every node, so that it survives the death of this one.
    pub fn session_update(&mut self, now: u64, session: Session) -> Vec<Effect> {
        let mut out = Vec::new();
        if let Some(w) = self.recovery.as_mut().and_then(|r| r.update(now, session)) {
            self.publish(now, Message::Session(w), &mut out);
        }
        out
    }

    /// socket.io's `persistSession`: a recoverable disconnect.
    pub fn session_persist(&mut self, now: u64, session: Session) -> Vec<Effect> {
        let mut out = Vec::new();
        if let Some(w) = self.recovery.as_mut().and_then(|r| r.persist(now, session)) {
            self.publish(now, Message::Session(w), &mut out);
        }
        out
    }

    /// The socket of `pid` closed without persisting (not recoverable).
    pub fn session_closed(&mut self, now: u64, pid: &str) -> Vec<Effect> {
        let mut out = Vec::new();
        if let Some(epoch) = self.recovery.as_mut().and_then(|r| r.closed(pid)) {
            let msg = Message::SessionDrop {
                pid: pid.to_string(),
                epoch,
            };
            self.publish(now, msg, &mut out);
        }
        out
    }

    /// socket.io's `restoreSession(pid, offset)`. A restored session is
    /// claimed by this node (published); a stale socket of the same pid on
    /// this node comes out as a local disconnect, to carry out first.
    pub fn session_restore(
        &mut self,
        now: u64,
        pid: &str,
        offset: &str,
    ) -> (RestoreOutcome, Vec<Effect>) {
        let mut out = Vec::new();
        let Some(r) = &mut self.recovery else {
            return (RestoreOutcome::NotFound, out);
        };
        let (outcome, claim, stale) = r.restore(now, pid, offset);
        if let Some(sid) = stale {
            self.close_local_socket(sid, &mut out);
        }
        if let Some(w) = claim {
            self.publish(now, Message::Session(w), &mut out);
        }
        (outcome, out)
    }

    /// Sends the log's history to `joiner` if this node is the live node
    /// with the smallest uid (the joiner aside); see [`crate::recovery`].
    fn send_history(&mut self, now: u64, joiner: NodeId, out: &mut Vec<Effect>) {
        let Some(r) = &self.recovery else {
            return;
        };
        let me = self.cfg.uid;
        if self.live.nodes().any(|u| u != joiner && u < me) {
            return;
        }
        // Room for the envelope around the largest entry.
        let max_frame = self.cfg.max_frame_bytes as usize;
        let max_entry = max_frame.saturating_sub(4096);
        let chunk = recovery::HISTORY_CHUNK_BYTES.min(max_frame / 2);
        let parts = r.history(now, chunk, max_entry);
        let mut ages = r.session_ages(now);
        let mut heads = r.history_heads(now);
        let n = parts.len();
        for (i, entries) in parts.into_iter().enumerate() {
            let msg = Message::LogHistory {
                heads: std::mem::take(&mut heads),
                entries,
                sessions: std::mem::take(&mut ages),
                last: i + 1 == n,
            };
            self.send(joiner, msg, out);
        }
    }

    /// Closes one local socket (a stale copy of a session claimed elsewhere).
    fn close_local_socket(&mut self, sid: String, out: &mut Vec<Effect>) {
        let opts = Opts {
            sid: Some(sid),
            flags: crate::types::Flags {
                local: true,
                ..Default::default()
            },
            ..Opts::default()
        };
        self.local_disconnect(opts, true, out);
    }

    // ---- room index ----

    /// Adds a socket to rooms.
    pub fn join(&mut self, sid: &str, rooms: &[String]) {
        self.rooms.add_all(sid, rooms);
    }

    /// Removes a socket from one room.
    pub fn leave(&mut self, sid: &str, room: &str) {
        self.rooms.del(sid, room);
    }

    /// Forgets a socket.
    pub fn leave_all(&mut self, sid: &str) {
        self.rooms.del_all(sid);
    }

    /// Stores a socket's handshake and data.
    pub fn set_socket_info(&mut self, sid: &str, handshake: Vec<u8>, data: Vec<u8>) {
        self.rooms.set_info(sid, handshake, data);
    }

    /// A socket's rooms.
    pub fn socket_rooms(&self, sid: &str) -> Option<Vec<String>> {
        self.rooms.socket_rooms(sid)
    }

    /// Local sockets matched by the options.
    pub fn sockets(&self, opts: &Opts) -> Vec<String> {
        self.rooms.matching(opts)
    }

    // ---- internals ----

    fn route(&self, opts: &Opts) -> Route {
        if opts.flags.local {
            return Route::Local;
        }
        match opts.target {
            None => Route::All,
            Some(t) if t == self.cfg.uid => Route::Local,
            Some(t) if self.live.contains(t) => Route::One(t),
            Some(_) => Route::Nowhere,
        }
    }

    fn remote_targets(&self, route: &Route) -> Box<dyn Iterator<Item = NodeId> + '_> {
        match route {
            Route::All => Box::new(self.live.nodes()),
            Route::One(t) => Box::new(core::iter::once(*t)),
            Route::Local | Route::Nowhere => Box::new(core::iter::empty()),
        }
    }

    fn command(&mut self, now: u64, route: &Route, msg: Message, out: &mut Vec<Effect>) {
        match route {
            Route::All => self.publish(now, msg, out),
            Route::One(t) => self.send(*t, msg, out),
            Route::Local | Route::Nowhere => {}
        }
    }

    fn envelope(&self, msg: Message) -> Vec<u8> {
        wire::encode(&Envelope {
            uid: self.cfg.uid,
            nsp: self.cfg.nsp.clone(),
            msg,
        })
    }

    fn publish(&mut self, now: u64, msg: Message, out: &mut Vec<Effect>) {
        if self.closed {
            return;
        }
        out.push(Effect::Publish(self.envelope(msg)));
        self.stats.frames_out += 1;
        self.live.published(now);
    }

    fn send(&mut self, to: NodeId, msg: Message, out: &mut Vec<Effect>) {
        if self.closed {
            return;
        }
        out.push(Effect::Send(to, self.envelope(msg)));
        self.stats.frames_out += 1;
    }

    fn new_request_id(&mut self) -> RequestId {
        let id = self.next_request;
        self.next_request += 1;
        id
    }

    fn new_query(&mut self, query: Query, expires: u64) -> QueryId {
        let id = self.next_query;
        self.next_query += 1;
        self.queries.insert(id, PendingQuery { query, expires });
        id
    }

    fn local_broadcast(&mut self, opts: Opts, packet: Vec<u8>, out: &mut Vec<Effect>) {
        match self.cfg.rooms {
            RoomOwner::Host => out.push(Effect::Apply(LocalOp::Broadcast(opts, packet))),
            RoomOwner::Component => {
                let sids = self.rooms.matching(&opts);
                if !sids.is_empty() {
                    out.push(Effect::Deliver(delivery(sids, packet, None, &opts)));
                }
            }
        }
    }

    fn local_rooms(&mut self, opts: Opts, rooms: Vec<String>, join: bool, out: &mut Vec<Effect>) {
        match self.cfg.rooms {
            RoomOwner::Host => out.push(Effect::Apply(if join {
                LocalOp::Join(opts, rooms)
            } else {
                LocalOp::Leave(opts, rooms)
            })),
            RoomOwner::Component => {
                let sids = self.rooms.matching(&opts);
                if sids.is_empty() || rooms.is_empty() {
                    return;
                }
                for sid in &sids {
                    if join {
                        self.rooms.add_all(sid, &rooms);
                    } else {
                        for room in &rooms {
                            self.rooms.del(sid, room);
                        }
                    }
                }
                out.push(Effect::RoomsChanged {
                    sids,
                    rooms,
                    joined: join,
                });
            }
        }
    }

    fn local_disconnect(&mut self, opts: Opts, close: bool, out: &mut Vec<Effect>) {
        match self.cfg.rooms {
            RoomOwner::Host => out.push(Effect::Apply(LocalOp::Disconnect(opts, close))),
            RoomOwner::Component => {
                let sids = self.rooms.matching(&opts);
                if !sids.is_empty() {
                    out.push(Effect::Disconnect(sids, close));
                }
            }
        }
    }
}

/// Splits a packet between the frame for other nodes and the local part,
/// cloning it only when both need it.
fn split_packet(route: &Route, packet: Vec<u8>) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    match route {
        Route::All => (Some(packet.clone()), Some(packet)),
        Route::One(_) => (Some(packet), None),
        Route::Local => (None, Some(packet)),
        Route::Nowhere => (None, None),
    }
}

/// Options as sent to other nodes: never local, no routing target.
fn wire_opts(opts: &Opts) -> Opts {
    let mut o = opts.clone();
    o.flags.local = false;
    o.target = None;
    o
}

fn delivery(sids: Vec<String>, packet: Vec<u8>, ack: Option<QueryId>, opts: &Opts) -> Delivery {
    Delivery {
        sids,
        packet,
        ack,
        volatile: opts.flags.volatile,
        compress: opts.flags.compress,
    }
}

fn merge_rooms(into: &mut Vec<String>, rooms: Vec<String>) {
    for room in rooms {
        if !into.contains(&room) {
            into.push(room);
        }
    }
}
