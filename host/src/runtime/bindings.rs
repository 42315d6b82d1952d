//! The one `bindgen!` of the host, and conversions between the generated WIT
//! types and the adapter crate's types (so hosts see the same values from the
//! component as from the native build).

use sio_cluster_adapter as core;

wasmtime::component::bindgen!({
    world: "cluster-adapter",
    path: "../wit",
});

pub use exports::socketio::cluster::types as wit;

pub(crate) fn config_out(c: &core::Config) -> wit::Config {
    wit::Config {
        uid: c.uid,
        nsp: c.nsp.clone(),
        rooms: match c.rooms {
            core::RoomOwner::Host => wit::RoomOwner::Host,
            core::RoomOwner::Component => wit::RoomOwner::Component,
        },
        heartbeat_interval_ms: c.heartbeat_interval_ms,
        heartbeat_timeout_ms: c.heartbeat_timeout_ms,
        request_timeout_ms: c.request_timeout_ms,
        max_frame_bytes: c.max_frame_bytes,
    }
}

pub(crate) fn opts_out(o: core::Opts) -> wit::BroadcastOpts {
    let mut flags = wit::BroadcastFlags::empty();
    for (on, flag) in [
        (o.flags.local, wit::BroadcastFlags::LOCAL),
        (o.flags.broadcast, wit::BroadcastFlags::BROADCAST),
        (o.flags.volatile, wit::BroadcastFlags::VOLATILE),
        (o.flags.compress, wit::BroadcastFlags::COMPRESS),
    ] {
        if on {
            flags |= flag;
        }
    }
    wit::BroadcastOpts {
        rooms: o.rooms,
        except: o.except,
        flags,
        sid: o.sid,
        target: o.target,
    }
}

pub(crate) fn opts_in(o: wit::BroadcastOpts) -> core::Opts {
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

pub(crate) fn ack_out(a: core::Ack) -> wit::Ack {
    wit::Ack {
        sid: a.sid,
        payload: a.payload,
    }
}

fn ack_in(a: wit::Ack) -> core::Ack {
    core::Ack {
        sid: a.sid,
        payload: a.payload,
    }
}

pub(crate) fn socket_out(s: core::SocketInfo) -> wit::SocketInfo {
    wit::SocketInfo {
        id: s.id,
        node: s.node,
        rooms: s.rooms,
        handshake: s.handshake,
        data: s.data,
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

pub(crate) fn frame_error_in(e: wit::FrameError) -> core::FrameError {
    match e {
        wit::FrameError::Empty => core::FrameError::Empty,
        wit::FrameError::TooLarge(n) => core::FrameError::TooLarge(n),
        wit::FrameError::UnsupportedVersion(v) => core::FrameError::UnsupportedVersion(v),
        wit::FrameError::Malformed(m) => core::FrameError::Malformed(m),
    }
}

pub(crate) fn stats_in(s: wit::Stats) -> core::Stats {
    core::Stats {
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

fn local_op_in(op: wit::LocalOp) -> core::LocalOp {
    use core::LocalOp as L;
    match op {
        wit::LocalOp::Broadcast((o, p)) => L::Broadcast(opts_in(o), p),
        wit::LocalOp::BroadcastWithAck((q, o, p, t)) => L::BroadcastWithAck(q, opts_in(o), p, t),
        wit::LocalOp::Join((o, r)) => L::Join(opts_in(o), r),
        wit::LocalOp::Leave((o, r)) => L::Leave(opts_in(o), r),
        wit::LocalOp::Disconnect((o, c)) => L::Disconnect(opts_in(o), c),
        wit::LocalOp::FetchSockets((q, o)) => L::FetchSockets(q, opts_in(o)),
        wit::LocalOp::FetchRooms((q, o)) => L::FetchRooms(q, opts_in(o)),
    }
}

pub(crate) fn effect_in(e: wit::Effect) -> core::Effect {
    use core::Effect as E;
    match e {
        wit::Effect::Publish(f) => E::Publish(f),
        wit::Effect::Send((to, f)) => E::Send(to, f),
        wit::Effect::Apply(op) => E::Apply(local_op_in(op)),
        wit::Effect::Deliver(d) => E::Deliver(core::Delivery {
            sids: d.sids,
            packet: d.packet,
            ack: d.ack,
            volatile: d.volatile,
            compress: d.compress,
        }),
        wit::Effect::Disconnect((sids, close)) => E::Disconnect(sids, close),
        wit::Effect::RoomsChanged((sids, rooms, joined)) => E::RoomsChanged {
            sids,
            rooms,
            joined,
        },
        wit::Effect::ServerEvent((p, q)) => E::ServerEvent(p, q),
        wit::Effect::AckReceived((id, a)) => E::AckReceived(id, ack_in(a)),
        wit::Effect::Complete(c) => E::Complete(core::Completion {
            id: c.id,
            error: c.error,
            value: match c.value {
                wit::RequestValue::Sockets(s) => {
                    core::RequestValue::Sockets(s.into_iter().map(socket_in).collect())
                }
                wit::RequestValue::Rooms(r) => core::RequestValue::Rooms(r),
                wit::RequestValue::Replies(r) => core::RequestValue::Replies(r),
                wit::RequestValue::Acks(a) => {
                    core::RequestValue::Acks(a.into_iter().map(ack_in).collect())
                }
            },
        }),
        wit::Effect::NodeUp(n) => E::NodeUp(n),
        wit::Effect::NodeDown(n) => E::NodeDown(n),
    }
}

pub(crate) fn effects_in(v: Vec<wit::Effect>) -> Vec<core::Effect> {
    v.into_iter().map(effect_in).collect()
}

pub(crate) fn recovery_config_out(c: core::recovery::RecoveryConfig) -> wit::RecoveryConfig {
    wit::RecoveryConfig {
        max_disconnection_ms: c.max_disconnection_ms,
        max_log_entries: c.max_log_entries,
        max_log_bytes: c.max_log_bytes,
        max_sessions: c.max_sessions,
        max_session_bytes: c.max_session_bytes,
    }
}

pub(crate) fn recovery_stats_in(s: wit::RecoveryStats) -> core::recovery::RecoveryStats {
    core::recovery::RecoveryStats {
        log_entries: s.log_entries,
        log_bytes: s.log_bytes,
        sessions: s.sessions,
        restored: s.restored,
        not_found: s.not_found,
        bad_offsets: s.bad_offsets,
        evicted: s.evicted,
        sessions_refused: s.sessions_refused,
        bad_entries: s.bad_entries,
    }
}

pub(crate) fn session_out(s: core::recovery::Session) -> wit::Session {
    wit::Session {
        sid: s.sid,
        pid: s.pid,
        rooms: s.rooms,
        data: s.data,
    }
}

pub(crate) fn restore_in(r: wit::RestoreResult) -> core::recovery::RestoreOutcome {
    use core::recovery::{RestoreOutcome, Session};
    match r {
        wit::RestoreResult::Restored((s, missed)) => RestoreOutcome::Restored(
            Session {
                sid: s.sid,
                pid: s.pid,
                rooms: s.rooms,
                data: s.data,
            },
            missed,
        ),
        wit::RestoreResult::NotFound => RestoreOutcome::NotFound,
        wit::RestoreResult::Behind => RestoreOutcome::Behind,
    }
}
