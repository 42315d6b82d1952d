//! The adapter's public types: what a host passes in and the effects it gets back.
//!
//! They mirror the records and variants of `wit/cluster.wit` one to one, so the
//! native build and the component give values that compare equal.

use serde::{Deserialize, Serialize};
use std::string::String;
use std::vec::Vec;

/// Random 64-bit id of one adapter node.
pub type NodeId = u64;
/// Id of a request this node started.
pub type RequestId = u64;
/// Id of a question this node asks its host.
pub type QueryId = u64;

/// Upstream default of `heartbeatInterval`.
pub const DEFAULT_HEARTBEAT_INTERVAL_MS: u32 = 5_000;
/// Upstream default of `heartbeatTimeout`.
pub const DEFAULT_HEARTBEAT_TIMEOUT_MS: u32 = 10_000;
/// Upstream `DEFAULT_TIMEOUT` of cluster requests.
pub const DEFAULT_REQUEST_TIMEOUT_MS: u32 = 5_000;
/// Default cap on one frame.
pub const DEFAULT_MAX_FRAME_BYTES: u32 = 16 * 1024 * 1024;

/// Where room membership lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoomOwner {
    /// The host keeps rooms: local work comes out as [`Effect::Apply`].
    Host,
    /// The component keeps the room index: local work comes out resolved.
    Component,
}

/// Settings of one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// This node's id.
    pub uid: NodeId,
    /// Namespace name.
    pub nsp: String,
    /// Who keeps rooms.
    pub rooms: RoomOwner,
    /// Publish a heartbeat after this long without publishing.
    pub heartbeat_interval_ms: u32,
    /// Drop a node not heard from for longer than this.
    pub heartbeat_timeout_ms: u32,
    /// Timeout of fetch-sockets, fetch-rooms and server-side emit.
    pub request_timeout_ms: u32,
    /// Frames longer than this are refused.
    pub max_frame_bytes: u32,
}

impl Config {
    /// Upstream defaults for the given node id and namespace.
    pub fn new(uid: NodeId, nsp: impl Into<String>, rooms: RoomOwner) -> Self {
        Config {
            uid,
            nsp: nsp.into(),
            rooms,
            heartbeat_interval_ms: DEFAULT_HEARTBEAT_INTERVAL_MS,
            heartbeat_timeout_ms: DEFAULT_HEARTBEAT_TIMEOUT_MS,
            request_timeout_ms: DEFAULT_REQUEST_TIMEOUT_MS,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
        }
    }
}

/// Flags of a broadcast.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flags {
    /// Only this node.
    pub local: bool,
    /// Exclude the sender socket.
    pub broadcast: bool,
    /// May be dropped.
    pub volatile: bool,
    /// Compress if the transport can.
    pub compress: bool,
}

/// Which sockets an operation targets.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Opts {
    /// Target rooms (empty: every socket, or `sid` alone, see [`crate::rooms`]).
    pub rooms: Vec<String>,
    /// Sockets in these rooms are skipped.
    pub except: Vec<String>,
    /// Flags.
    pub flags: Flags,
    /// The emitting socket.
    pub sid: Option<String>,
    /// Only this node.
    pub target: Option<NodeId>,
}

impl Opts {
    /// Every socket of the namespace.
    pub fn all() -> Self {
        Opts::default()
    }

    /// Sockets in these rooms.
    pub fn rooms<I: IntoIterator<Item = S>, S: Into<String>>(rooms: I) -> Self {
        Opts {
            rooms: rooms.into_iter().map(Into::into).collect(),
            ..Opts::default()
        }
    }

    /// Adds rooms to skip.
    pub fn except<I: IntoIterator<Item = S>, S: Into<String>>(mut self, rooms: I) -> Self {
        self.except.extend(rooms.into_iter().map(Into::into));
        self
    }

    /// Marks the operation local.
    pub fn local(mut self) -> Self {
        self.flags.local = true;
        self
    }
}

/// A socket as returned by fetch-sockets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketInfo {
    /// Socket id.
    pub id: String,
    /// Node that holds it.
    pub node: NodeId,
    /// Its rooms.
    pub rooms: Vec<String>,
    /// Host-encoded handshake.
    #[serde(with = "serde_bytes")]
    pub handshake: Vec<u8>,
    /// Host-encoded `socket.data`.
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// One client acknowledgement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// Socket that answered.
    pub sid: String,
    /// Encoded first ack argument.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

/// What a finished request returns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestValue {
    /// fetch-sockets.
    Sockets(Vec<SocketInfo>),
    /// fetch-rooms.
    Rooms(Vec<String>),
    /// Server-side-emit answers, one per node.
    Replies(Vec<Vec<u8>>),
    /// Broadcast acks, one per client.
    Acks(Vec<Ack>),
}

/// A finished request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completion {
    /// The request.
    pub id: RequestId,
    /// Set on timeout or close (upstream error texts).
    pub error: Option<String>,
    /// What arrived.
    pub value: RequestValue,
}

/// Local work for a host that keeps its own rooms.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LocalOp {
    /// Write the packet to the matched sockets.
    Broadcast(Opts, #[serde(with = "serde_bytes")] Vec<u8>),
    /// Write it expecting acks; report them on the query.
    /// The last field is the requester's ack timeout (ms): the host waits that
    /// long for its clients, not its own default.
    BroadcastWithAck(QueryId, Opts, #[serde(with = "serde_bytes")] Vec<u8>, u32),
    /// Matched sockets join the rooms.
    Join(Opts, Vec<String>),
    /// Matched sockets leave the rooms.
    Leave(Opts, Vec<String>),
    /// Disconnect matched sockets (`true`: close the connection).
    Disconnect(Opts, bool),
    /// List matched sockets, answer with `sockets_reply`.
    FetchSockets(QueryId, Opts),
    /// List rooms of matched sockets, answer with `rooms_reply`.
    FetchRooms(QueryId, Opts),
}

/// A packet delivery resolved against the room index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Local sockets to write to.
    pub sids: Vec<String>,
    /// The packet.
    #[serde(with = "serde_bytes")]
    pub packet: Vec<u8>,
    /// Set when acks are expected.
    pub ack: Option<QueryId>,
    /// May be dropped.
    pub volatile: bool,
    /// Compress if possible.
    pub compress: bool,
}

/// What the host must do, in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Effect {
    /// Send this frame to every other node.
    Publish(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Send this frame to one node.
    Send(NodeId, #[serde(with = "serde_bytes")] Vec<u8>),
    /// Apply locally (host keeps rooms).
    Apply(LocalOp),
    /// Write a packet to local sockets (component keeps rooms).
    Deliver(Delivery),
    /// Disconnect local sockets.
    Disconnect(Vec<String>, bool),
    /// Remote sockets-join / sockets-leave changed these sockets' rooms.
    RoomsChanged {
        /// Sockets.
        sids: Vec<String>,
        /// Rooms.
        rooms: Vec<String>,
        /// Joined (true) or left.
        joined: bool,
    },
    /// A server-side event from another node; answer with `reply` if a query is given.
    ServerEvent(#[serde(with = "serde_bytes")] Vec<u8>, Option<QueryId>),
    /// One ack of a streamed broadcast-with-ack.
    AckReceived(RequestId, Ack),
    /// A request finished.
    Complete(Completion),
    /// A node appeared.
    NodeUp(NodeId),
    /// A node left or timed out.
    NodeDown(NodeId),
}

/// Why a frame was refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FrameError {
    /// Zero bytes.
    Empty,
    /// Longer than the configured maximum (the length).
    TooLarge(u32),
    /// Unknown envelope version.
    UnsupportedVersion(u8),
    /// Not a valid frame.
    Malformed(String),
}

impl core::fmt::Display for FrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FrameError::Empty => write!(f, "empty frame"),
            FrameError::TooLarge(n) => write!(f, "frame too large: {n} bytes"),
            FrameError::UnsupportedVersion(v) => write!(f, "unsupported frame version {v}"),
            FrameError::Malformed(m) => write!(f, "malformed frame: {m}"),
        }
    }
}

impl core::error::Error for FrameError {}

/// Counters of one node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames accepted.
    pub frames_in: u64,
    /// Frames produced.
    pub frames_out: u64,
    /// Frames refused (malformed, oversize).
    pub frames_rejected: u64,
    /// Valid frames ignored (self, other namespace, unknown request).
    pub frames_ignored: u64,
    /// Requests waiting for answers.
    pub pending_requests: u32,
    /// Queries waiting for the host.
    pub pending_queries: u32,
    /// Other live nodes.
    pub nodes: u32,
    /// Sockets in the room index.
    pub sockets: u32,
    /// Rooms in the room index.
    pub rooms: u32,
}

/// Upstream error text of a request that timed out waiting for nodes.
pub fn missing_responses_error(n: usize) -> String {
    std::format!("timeout reached: missing {n} responses")
}

/// Upstream error text of a broadcast-with-ack that timed out.
pub const ACK_TIMEOUT_ERROR: &str = "operation has timed out";
/// Error of requests pending when the node closes.
pub const CLOSED_ERROR: &str = "adapter closed";
