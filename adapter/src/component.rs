//! The component glue: exports `wit/cluster.wit` over [`crate::Node`].
//!
//! Only type conversions live here; every decision is made by the native
//! code, so the component and the native build give the same effects.

use std::cell::RefCell;

use crate::packed;
use crate::types as core;

wit_bindgen::generate!({
    world: "cluster-adapter",
    path: "../wit",
});

use exports::socketio::cluster::adapter::{Guest, GuestNode};
use exports::socketio::cluster::types as wit;

struct Component;

impl Guest for Component {
    type Node = NodeResource;
}

/// The exported `node` resource.
struct NodeResource(RefCell<crate::Node>);

impl NodeResource {
    fn with<R>(&self, f: impl FnOnce(&mut crate::Node) -> R) -> R {
        f(&mut self.0.borrow_mut())
    }
}

fn effects(v: Vec<core::Effect>) -> Vec<wit::Effect> {
    v.into_iter().map(effect).collect()
}

impl GuestNode for NodeResource {
    fn new(c: wit::Config) -> Self {
        let cfg = core::Config {
            uid: c.uid,
            nsp: c.nsp,
            rooms: match c.rooms {
                wit::RoomOwner::Host => core::RoomOwner::Host,
                wit::RoomOwner::Component => core::RoomOwner::Component,
            },
            heartbeat_interval_ms: c.heartbeat_interval_ms,
            heartbeat_timeout_ms: c.heartbeat_timeout_ms,
            request_timeout_ms: c.request_timeout_ms,
            max_frame_bytes: c.max_frame_bytes,
        };
        NodeResource(RefCell::new(crate::Node::new(cfg)))
    }

    fn init(&self, now: u64) -> Vec<wit::Effect> {
        effects(self.with(|n| n.init(now)))
    }

    fn close(&self, now: u64) -> Vec<wit::Effect> {
        effects(self.with(|n| n.close(now)))
    }

    fn tick(&self, now: u64) -> Vec<wit::Effect> {
        effects(self.with(|n| n.tick(now)))
    }

    fn next_deadline(&self) -> Option<u64> {
        self.with(|n| n.next_deadline())
    }

    fn on_frame(&self, now: u64, frame: Vec<u8>) -> Result<Vec<wit::Effect>, wit::FrameError> {
        self.with(|n| n.on_frame(now, &frame))
            .map(effects)
            .map_err(frame_error)
    }

    fn on_frames(&self, now: u64, batch: Vec<u8>) -> (Vec<wit::Effect>, Vec<wit::FrameError>) {
        let (out, errors) = self.with(|n| n.on_frames(now, &batch));
        (effects(out), errors.into_iter().map(frame_error).collect())
    }

    fn on_frames_packed(&self, now: u64, batch: Vec<u8>) -> Vec<u8> {
        let mut out = Vec::with_capacity(batch.len() + 16);
        self.with(|n| n.on_frames_packed(now, &batch, &mut out));
        #[cfg(feature = "misbehave")]
        if batch.ends_with(b"\0misbehave:packed") {
            // A result no host can decode.
            out.push(0xff);
        }
        out
    }

    fn node_down(&self, now: u64, uid: u64) -> Vec<wit::Effect> {
        effects(self.with(|n| n.node_down(now, uid)))
    }

    fn server_count(&self) -> u32 {
        self.with(|n| n.server_count())
    }

    fn stats(&self) -> wit::Stats {
        let s = self.with(|n| n.stats());
        wit::Stats {
            frames_in: s.frames_in,
            frames_out: s.frames_out,
            frames_rejected: s.frames_rejected,
            frames_ignored: s.frames_ignored,
            pending_requests: s.pending_requests,
            pending_queries: s.pending_queries,
            nodes: s.nodes,
            sockets: s.sockets,
            rooms: s.rooms,
        }
    }

    fn broadcast(&self, now: u64, opts: wit::BroadcastOpts, packet: Vec<u8>) -> Vec<wit::Effect> {
        #[cfg(feature = "misbehave")]
        misbehave(&packet);
        effects(self.with(|n| n.broadcast(now, opts_in(opts), packet)))
    }

    fn broadcast_packed(
        &self,
        now: u64,
        opts: Vec<u8>,
        packet: Vec<u8>,
    ) -> Result<Vec<u8>, String> {
        #[cfg(feature = "misbehave")]
        misbehave(&packet);
        // Room for the frame and the local effect, each holding both inputs.
        let mut out = Vec::with_capacity(64 + 2 * (opts.len() + packet.len()));
        self.with(|n| n.broadcast_packed(now, &opts, packet, &mut out))?;
        Ok(out)
    }

    fn broadcast_with_ack(
        &self,
        now: u64,
        opts: wit::BroadcastOpts,
        packet: Vec<u8>,
        timeout_ms: u32,
        streamed: bool,
    ) -> (u64, Vec<wit::Effect>) {
        let (id, out) =
            self.with(|n| n.broadcast_with_ack(now, opts_in(opts), packet, timeout_ms, streamed));
        (id, effects(out))
    }

    fn sockets_join(
        &self,
        now: u64,
        opts: wit::BroadcastOpts,
        rooms: Vec<String>,
    ) -> Vec<wit::Effect> {
        effects(self.with(|n| n.sockets_join(now, opts_in(opts), rooms)))
    }

    fn sockets_leave(
        &self,
        now: u64,
        opts: wit::BroadcastOpts,
        rooms: Vec<String>,
    ) -> Vec<wit::Effect> {
        effects(self.with(|n| n.sockets_leave(now, opts_in(opts), rooms)))
    }

    fn disconnect_sockets(
        &self,
        now: u64,
        opts: wit::BroadcastOpts,
        close: bool,
    ) -> Vec<wit::Effect> {
        effects(self.with(|n| n.disconnect_sockets(now, opts_in(opts), close)))
    }

    fn fetch_sockets(
        &self,
        now: u64,
        opts: wit::BroadcastOpts,
        timeout_ms: Option<u32>,
    ) -> (u64, Vec<wit::Effect>) {
        let (id, out) = self.with(|n| n.fetch_sockets(now, opts_in(opts), timeout_ms));
        (id, effects(out))
    }

    fn fetch_rooms(&self, now: u64, opts: wit::BroadcastOpts) -> (u64, Vec<wit::Effect>) {
        let (id, out) = self.with(|n| n.fetch_rooms(now, opts_in(opts)));
        (id, effects(out))
    }

    fn server_side_emit(
        &self,
        now: u64,
        packet: Vec<u8>,
        want_replies: bool,
    ) -> (Option<u64>, Vec<wit::Effect>) {
        let (id, out) = self.with(|n| n.server_side_emit(now, packet, want_replies));
        (id, effects(out))
    }

    fn ack_count(&self, now: u64, query: u64, count: u32) -> Vec<wit::Effect> {
        effects(self.with(|n| n.ack_count(now, query, count)))
    }

    fn ack(&self, now: u64, query: u64, ack: wit::Ack) -> Vec<wit::Effect> {
        effects(self.with(|n| n.ack(now, query, ack_in(ack))))
    }

    fn sockets_reply(
        &self,
        now: u64,
        query: u64,
        sockets: Vec<wit::SocketInfo>,
    ) -> Vec<wit::Effect> {
        let sockets = sockets.into_iter().map(socket_in).collect();
        effects(self.with(|n| n.sockets_reply(now, query, sockets)))
    }

    fn rooms_reply(&self, now: u64, query: u64, rooms: Vec<String>) -> Vec<wit::Effect> {
        effects(self.with(|n| n.rooms_reply(now, query, rooms)))
    }

    fn reply(&self, now: u64, query: u64, payload: Vec<u8>) -> Vec<wit::Effect> {
        effects(self.with(|n| n.reply(now, query, payload)))
    }

    fn join(&self, sid: String, rooms: Vec<String>) {
        self.with(|n| n.join(&sid, &rooms))
    }

    fn leave(&self, sid: String, room: String) {
        self.with(|n| n.leave(&sid, &room))
    }

    fn leave_all(&self, sid: String) {
        self.with(|n| n.leave_all(&sid))
    }

    fn set_socket_info(&self, sid: String, handshake: Vec<u8>, data: Vec<u8>) {
        self.with(|n| n.set_socket_info(&sid, handshake, data))
    }

    fn socket_rooms(&self, sid: String) -> Option<Vec<String>> {
        self.with(|n| n.socket_rooms(&sid))
    }

    fn enable_recovery(&self, c: wit::RecoveryConfig) {
        let cfg = crate::recovery::RecoveryConfig {
            max_disconnection_ms: c.max_disconnection_ms,
            max_log_entries: c.max_log_entries,
            max_log_bytes: c.max_log_bytes,
            max_sessions: c.max_sessions,
            max_session_bytes: c.max_session_bytes,
        };
        self.with(|n| n.enable_recovery(cfg));
    }

    fn recovery_stats(&self) -> Option<wit::RecoveryStats> {
        self.with(|n| n.recovery_stats())
            .map(|s| wit::RecoveryStats {
                log_entries: s.log_entries,
                log_bytes: s.log_bytes,
                sessions: s.sessions,
                restored: s.restored,
                not_found: s.not_found,
                bad_offsets: s.bad_offsets,
                evicted: s.evicted,
                sessions_refused: s.sessions_refused,
                bad_entries: s.bad_entries,
            })
    }

    fn session_update(&self, now: u64, s: wit::Session) -> Vec<wit::Effect> {
        effects(self.with(|n| n.session_update(now, session_in(s))))
    }

    fn session_persist(&self, now: u64, s: wit::Session) -> Vec<wit::Effect> {
        effects(self.with(|n| n.session_persist(now, session_in(s))))
    }

    fn session_closed(&self, now: u64, pid: String) -> Vec<wit::Effect> {
        effects(self.with(|n| n.session_closed(now, &pid)))
    }

    fn session_restore(
        &self,
        now: u64,
        pid: String,
        offset: String,
    ) -> (wit::RestoreResult, Vec<wit::Effect>) {
        use crate::recovery::RestoreOutcome;
        let (outcome, out) = self.with(|n| n.session_restore(now, &pid, &offset));
        let result = match outcome {
            RestoreOutcome::Restored(s, missed) => wit::RestoreResult::Restored((
                wit::Session {
                    sid: s.sid,
                    pid: s.pid,
                    rooms: s.rooms,
                    data: s.data,
                },
                missed,
            )),
            RestoreOutcome::NotFound => wit::RestoreResult::NotFound,
            RestoreOutcome::Behind => wit::RestoreResult::Behind,
        };
        (result, effects(out))
    }

    fn sockets(&self, opts: wit::BroadcastOpts) -> Vec<String> {
        let opts = opts_in(opts);
        self.with(|n| n.sockets(&opts))
    }
}

/// The sandbox tests' faults (feature `misbehave` only).
#[cfg(feature = "misbehave")]
fn misbehave(packet: &[u8]) {
    match packet {
        b"\0misbehave:alloc" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        b"\0misbehave:loop" => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        b"\0misbehave:trap" => panic!("misbehave: trap"),
        _ => {}
    }
}

fn session_in(s: wit::Session) -> crate::recovery::Session {
    crate::recovery::Session {
        sid: s.sid,
        pid: s.pid,
        rooms: s.rooms,
        data: s.data,
    }
}

fn opts_in(o: wit::BroadcastOpts) -> core::Opts {
    core::Opts {
        rooms: o.rooms,
        except: o.except,
        flags: core::Flags {
            local: o.flags.contains(wit::BroadcastFlags::LOCAL),
            broadcast: o.flags.contains(wit::BroadcastFlags::BROADCAST),
            volatile: o.flags.contains(wit::BroadcastFlags::VOLATILE),
            compress: o.flags.contains(wit::BroadcastFlags::COMPRESS),
        },
        sid: o.sid,
        target: o.target,
    }
}

fn opts_out(o: core::Opts) -> wit::BroadcastOpts {
    let mut flags = wit::BroadcastFlags::empty();
    flags.set(wit::BroadcastFlags::LOCAL, o.flags.local);
    flags.set(wit::BroadcastFlags::BROADCAST, o.flags.broadcast);
    flags.set(wit::BroadcastFlags::VOLATILE, o.flags.volatile);
    flags.set(wit::BroadcastFlags::COMPRESS, o.flags.compress);
    wit::BroadcastOpts {
        rooms: o.rooms,
        except: o.except,
        flags,
        sid: o.sid,
        target: o.target,
    }
}

fn ack_in(a: wit::Ack) -> core::Ack {
    core::Ack {
        sid: a.sid,
        payload: a.payload,
    }
}

fn ack_out(a: core::Ack) -> wit::Ack {
    wit::Ack {
        sid: a.sid,
        payload: a.payload,
    }
}

fn socket_in(s: wit::SocketInfo) -> core::SocketInfo {
    core::SocketInfo {
        id: s.id,
        node: s.node,
        rooms: s.rooms,
        handshake: s.handshake,
        data: s.data,
    }
}

fn socket_out(s: core::SocketInfo) -> wit::SocketInfo {
    wit::SocketInfo {
        id: s.id,
        node: s.node,
        rooms: s.rooms,
        handshake: s.handshake,
        data: s.data,
    }
}

fn frame_error(e: core::FrameError) -> wit::FrameError {
    match e {
        core::FrameError::Empty => wit::FrameError::Empty,
        core::FrameError::TooLarge(n) => wit::FrameError::TooLarge(n),
        core::FrameError::UnsupportedVersion(v) => wit::FrameError::UnsupportedVersion(v),
        core::FrameError::Malformed(m) => wit::FrameError::Malformed(m),
    }
}

fn local_op(op: core::LocalOp) -> wit::LocalOp {
    use core::LocalOp as L;
    match op {
        L::Broadcast(o, p) => wit::LocalOp::Broadcast((opts_out(o), p)),
        L::BroadcastWithAck(q, o, p, t) => wit::LocalOp::BroadcastWithAck((q, opts_out(o), p, t)),
        L::Join(o, r) => wit::LocalOp::Join((opts_out(o), r)),
        L::Leave(o, r) => wit::LocalOp::Leave((opts_out(o), r)),
        L::Disconnect(o, c) => wit::LocalOp::Disconnect((opts_out(o), c)),
        L::FetchSockets(q, o) => wit::LocalOp::FetchSockets((q, opts_out(o))),
        L::FetchRooms(q, o) => wit::LocalOp::FetchRooms((q, opts_out(o))),
    }
}

fn effect(e: core::Effect) -> wit::Effect {
    use core::Effect as E;
    match e {
        E::Publish(f) => wit::Effect::Publish(f),
        E::Send(to, f) => wit::Effect::Send((to, f)),
        E::Apply(op) => wit::Effect::Apply(local_op(op)),
        E::Deliver(d) => wit::Effect::Deliver(wit::Delivery {
            sids: d.sids,
            packet: d.packet,
            ack: d.ack,
            volatile: d.volatile,
            compress: d.compress,
        }),
        E::Disconnect(sids, close) => wit::Effect::Disconnect((sids, close)),
        E::RoomsChanged {
            sids,
            rooms,
            joined,
        } => wit::Effect::RoomsChanged((sids, rooms, joined)),
        E::ServerEvent(p, q) => wit::Effect::ServerEvent((p, q)),
        E::AckReceived(id, a) => wit::Effect::AckReceived((id, ack_out(a))),
        E::Complete(c) => wit::Effect::Complete(wit::Completion {
            id: c.id,
            error: c.error,
            value: match c.value {
                core::RequestValue::Sockets(s) => {
                    wit::RequestValue::Sockets(s.into_iter().map(socket_out).collect())
                }
                core::RequestValue::Rooms(r) => wit::RequestValue::Rooms(r),
                core::RequestValue::Replies(r) => wit::RequestValue::Replies(r),
                core::RequestValue::Acks(a) => {
                    wit::RequestValue::Acks(a.into_iter().map(ack_out).collect())
                }
            },
        }),
        E::NodeUp(n) => wit::Effect::NodeUp(n),
        E::NodeDown(n) => wit::Effect::NodeDown(n),
    }
}

export!(Component);
