//! [`AdapterNode`]: one API over the two builds of the adapter, the native
//! [`sio_cluster_adapter::Node`] and the component's [`WasmNode`](crate::WasmNode).
//!
//! Hosts and tests are written once against this trait; the parity tests run
//! every scenario on both and compare the effects.

use sio_cluster_adapter::recovery::{RecoveryConfig, RecoveryStats, RestoreOutcome, Session};
use sio_cluster_adapter::{Ack, Effect, FrameError, Node, Opts, SocketInfo, Stats};

/// A failed call into an adapter instance.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum NodeError {
    /// The instance trapped (panic, memory cap, CPU bound) and was replaced by
    /// a fresh one rebuilt from the host side. `effects` must still be carried
    /// out: pending requests failing, the node announcing itself again.
    #[error("adapter instance trapped and was replaced: {reason}")]
    Trapped {
        /// What the trap was.
        reason: String,
        /// Effects of the rebuild.
        effects: Vec<Effect>,
    },
    /// The instance trapped and no replacement could be started.
    #[error("adapter instance trapped and could not be replaced: {0}")]
    Replace(String),
}

/// The adapter node API (see `wit/cluster.wit` for each call's meaning).
#[allow(missing_docs)]
pub trait AdapterNode {
    fn init(&mut self, now: u64) -> Result<Vec<Effect>, NodeError>;
    fn close(&mut self, now: u64) -> Result<Vec<Effect>, NodeError>;
    fn tick(&mut self, now: u64) -> Result<Vec<Effect>, NodeError>;
    fn next_deadline(&mut self) -> Result<Option<u64>, NodeError>;
    fn on_frame(
        &mut self,
        now: u64,
        frame: &[u8],
    ) -> Result<Result<Vec<Effect>, FrameError>, NodeError>;
    fn on_frames(
        &mut self,
        now: u64,
        batch: &[u8],
    ) -> Result<(Vec<Effect>, Vec<FrameError>), NodeError>;
    fn node_down(&mut self, now: u64, uid: u64) -> Result<Vec<Effect>, NodeError>;
    fn server_count(&mut self) -> Result<u32, NodeError>;
    fn stats(&mut self) -> Result<Stats, NodeError>;
    fn broadcast(
        &mut self,
        now: u64,
        opts: Opts,
        packet: Vec<u8>,
    ) -> Result<Vec<Effect>, NodeError>;
    fn broadcast_with_ack(
        &mut self,
        now: u64,
        opts: Opts,
        packet: Vec<u8>,
        timeout_ms: u32,
        streamed: bool,
    ) -> Result<(u64, Vec<Effect>), NodeError>;
    fn sockets_join(
        &mut self,
        now: u64,
        opts: Opts,
        rooms: Vec<String>,
    ) -> Result<Vec<Effect>, NodeError>;
    fn sockets_leave(
        &mut self,
        now: u64,
        opts: Opts,
        rooms: Vec<String>,
    ) -> Result<Vec<Effect>, NodeError>;
    fn disconnect_sockets(
        &mut self,
        now: u64,
        opts: Opts,
        close: bool,
    ) -> Result<Vec<Effect>, NodeError>;
    fn fetch_sockets(
        &mut self,
        now: u64,
        opts: Opts,
        timeout_ms: Option<u32>,
    ) -> Result<(u64, Vec<Effect>), NodeError>;
    fn fetch_rooms(&mut self, now: u64, opts: Opts) -> Result<(u64, Vec<Effect>), NodeError>;
    fn server_side_emit(
        &mut self,
        now: u64,
        packet: Vec<u8>,
        want_replies: bool,
    ) -> Result<(Option<u64>, Vec<Effect>), NodeError>;
    fn ack_count(&mut self, now: u64, query: u64, count: u32) -> Result<Vec<Effect>, NodeError>;
    fn ack(&mut self, now: u64, query: u64, ack: Ack) -> Result<Vec<Effect>, NodeError>;
    fn sockets_reply(
        &mut self,
        now: u64,
        query: u64,
        sockets: Vec<SocketInfo>,
    ) -> Result<Vec<Effect>, NodeError>;
    fn rooms_reply(
        &mut self,
        now: u64,
        query: u64,
        rooms: Vec<String>,
    ) -> Result<Vec<Effect>, NodeError>;
    fn reply(&mut self, now: u64, query: u64, payload: Vec<u8>) -> Result<Vec<Effect>, NodeError>;
    fn join(&mut self, sid: &str, rooms: &[String]) -> Result<(), NodeError>;
    fn leave(&mut self, sid: &str, room: &str) -> Result<(), NodeError>;
    fn leave_all(&mut self, sid: &str) -> Result<(), NodeError>;
    fn set_socket_info(
        &mut self,
        sid: &str,
        handshake: Vec<u8>,
        data: Vec<u8>,
    ) -> Result<(), NodeError>;
    fn socket_rooms(&mut self, sid: &str) -> Result<Option<Vec<String>>, NodeError>;
    fn sockets(&mut self, opts: Opts) -> Result<Vec<String>, NodeError>;
    fn enable_recovery(&mut self, cfg: RecoveryConfig) -> Result<(), NodeError>;
    fn recovery_stats(&mut self) -> Result<Option<RecoveryStats>, NodeError>;
    fn session_update(&mut self, now: u64, session: Session) -> Result<Vec<Effect>, NodeError>;
    fn session_persist(&mut self, now: u64, session: Session) -> Result<Vec<Effect>, NodeError>;
    fn session_closed(&mut self, now: u64, pid: &str) -> Result<Vec<Effect>, NodeError>;
    fn session_restore(
        &mut self,
        now: u64,
        pid: &str,
        offset: &str,
    ) -> Result<(RestoreOutcome, Vec<Effect>), NodeError>;
}

/// The native build never traps: every call is `Ok`.
impl AdapterNode for Node {
    fn init(&mut self, now: u64) -> Result<Vec<Effect>, NodeError> {
        Ok(Node::init(self, now))
    }
    fn close(&mut self, now: u64) -> Result<Vec<Effect>, NodeError> {
        Ok(Node::close(self, now))
    }
    fn tick(&mut self, now: u64) -> Result<Vec<Effect>, NodeError> {
        Ok(Node::tick(self, now))
    }
    fn next_deadline(&mut self) -> Result<Option<u64>, NodeError> {
        Ok(Node::next_deadline(self))
    }
    fn on_frame(
        &mut self,
        now: u64,
        frame: &[u8],
    ) -> Result<Result<Vec<Effect>, FrameError>, NodeError> {
        Ok(Node::on_frame(self, now, frame))
    }
    fn on_frames(
        &mut self,
        now: u64,
        batch: &[u8],
    ) -> Result<(Vec<Effect>, Vec<FrameError>), NodeError> {
        Ok(Node::on_frames(self, now, batch))
    }
    fn node_down(&mut self, now: u64, uid: u64) -> Result<Vec<Effect>, NodeError> {
        Ok(Node::node_down(self, now, uid))
    }
    fn server_count(&mut self) -> Result<u32, NodeError> {
        Ok(Node::server_count(self))
    }
    fn stats(&mut self) -> Result<Stats, NodeError> {
        Ok(Node::stats(self))
    }
    fn broadcast(
        &mut self,
        now: u64,
        opts: Opts,
        packet: Vec<u8>,
    ) -> Result<Vec<Effect>, NodeError> {
        Ok(Node::broadcast(self, now, opts, packet))
    }
    fn broadcast_with_ack(
        &mut self,
        now: u64,
        opts: Opts,
        packet: Vec<u8>,
        timeout_ms: u32,
        streamed: bool,
    ) -> Result<(u64, Vec<Effect>), NodeError> {
        Ok(Node::broadcast_with_ack(
            self, now, opts, packet, timeout_ms, streamed,
        ))
    }
    fn sockets_join(
        &mut self,
        now: u64,
        opts: Opts,
        rooms: Vec<String>,
    ) -> Result<Vec<Effect>, NodeError> {
        Ok(Node::sockets_join(self, now, opts, rooms))
    }
    fn sockets_leave(
        &mut self,
        now: u64,
        opts: Opts,
        rooms: Vec<String>,
    ) -> Result<Vec<Effect>, NodeError> {
        Ok(Node::sockets_leave(self, now, opts, rooms))
    }
    fn disconnect_sockets(
        &mut self,
        now: u64,
        opts: Opts,
        close: bool,
    ) -> Result<Vec<Effect>, NodeError> {
        Ok(Node::disconnect_sockets(self, now, opts, close))
    }
    fn fetch_sockets(
        &mut self,
        now: u64,
        opts: Opts,
        timeout_ms: Option<u32>,
    ) -> Result<(u64, Vec<Effect>), NodeError> {
        Ok(Node::fetch_sockets(self, now, opts, timeout_ms))
    }
    fn fetch_rooms(&mut self, now: u64, opts: Opts) -> Result<(u64, Vec<Effect>), NodeError> {
        Ok(Node::fetch_rooms(self, now, opts))
    }
    fn server_side_emit(
        &mut self,
        now: u64,
        packet: Vec<u8>,
        want_replies: bool,
    ) -> Result<(Option<u64>, Vec<Effect>), NodeError> {
        Ok(Node::server_side_emit(self, now, packet, want_replies))
    }
    fn ack_count(&mut self, now: u64, query: u64, count: u32) -> Result<Vec<Effect>, NodeError> {
        Ok(Node::ack_count(self, now, query, count))
    }
    fn ack(&mut self, now: u64, query: u64, ack: Ack) -> Result<Vec<Effect>, NodeError> {
        Ok(Node::ack(self, now, query, ack))
    }
    fn sockets_reply(
        &mut self,
        now: u64,
        query: u64,
        sockets: Vec<SocketInfo>,
    ) -> Result<Vec<Effect>, NodeError> {
        Ok(Node::sockets_reply(self, now, query, sockets))
    }
    fn rooms_reply(
        &mut self,
        now: u64,
        query: u64,
        rooms: Vec<String>,
    ) -> Result<Vec<Effect>, NodeError> {
        Ok(Node::rooms_reply(self, now, query, rooms))
    }
    fn reply(&mut self, now: u64, query: u64, payload: Vec<u8>) -> Result<Vec<Effect>, NodeError> {
        Ok(Node::reply(self, now, query, payload))
    }
    fn join(&mut self, sid: &str, rooms: &[String]) -> Result<(), NodeError> {
        Node::join(self, sid, rooms);
        Ok(())
    }
    fn leave(&mut self, sid: &str, room: &str) -> Result<(), NodeError> {
        Node::leave(self, sid, room);
        Ok(())
    }
    fn leave_all(&mut self, sid: &str) -> Result<(), NodeError> {
        Node::leave_all(self, sid);
        Ok(())
    }
    fn set_socket_info(
        &mut self,
        sid: &str,
        handshake: Vec<u8>,
        data: Vec<u8>,
    ) -> Result<(), NodeError> {
        Node::set_socket_info(self, sid, handshake, data);
        Ok(())
    }
    fn socket_rooms(&mut self, sid: &str) -> Result<Option<Vec<String>>, NodeError> {
        Ok(Node::socket_rooms(self, sid))
    }
    fn sockets(&mut self, opts: Opts) -> Result<Vec<String>, NodeError> {
        Ok(Node::sockets(self, &opts))
    }
    fn enable_recovery(&mut self, cfg: RecoveryConfig) -> Result<(), NodeError> {
        Node::enable_recovery(self, cfg);
        Ok(())
    }
    fn recovery_stats(&mut self) -> Result<Option<RecoveryStats>, NodeError> {
        Ok(Node::recovery_stats(self))
    }
    fn session_update(&mut self, now: u64, session: Session) -> Result<Vec<Effect>, NodeError> {
        Ok(Node::session_update(self, now, session))
    }
    fn session_persist(&mut self, now: u64, session: Session) -> Result<Vec<Effect>, NodeError> {
        Ok(Node::session_persist(self, now, session))
    }
    fn session_closed(&mut self, now: u64, pid: &str) -> Result<Vec<Effect>, NodeError> {
        Ok(Node::session_closed(self, now, pid))
    }
    fn session_restore(
        &mut self,
        now: u64,
        pid: &str,
        offset: &str,
    ) -> Result<(RestoreOutcome, Vec<Effect>), NodeError> {
        Ok(Node::session_restore(self, now, pid, offset))
    }
}
