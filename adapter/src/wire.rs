//! The cluster wire format: every message type of upstream `ClusterAdapter`
//! (INITIAL_HEARTBEAT … ADAPTER_CLOSE) plus FETCH_ROOMS, in a versioned envelope.
//!
//! A frame is one version byte ([`VERSION`]) followed by a postcard-encoded
//! [`Envelope`]. Decoding never panics: garbage, truncated, trailing or
//! oversize input gives a [`FrameError`].

use serde::{Deserialize, Serialize};

use crate::recovery::{HistoryEntry, HistoryHead, SessionAge, WireSession};
use crate::types::{Ack, FrameError, NodeId, Opts, RequestId, SocketInfo};

/// Envelope version this build writes and reads.
pub const VERSION: u8 = 1;

/// One frame between nodes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Sender node.
    pub uid: NodeId,
    /// Namespace of the sender node.
    pub nsp: String,
    /// The message.
    pub msg: Message,
}

/// Cluster messages. The comments give upstream's `MessageType` number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// 1: a node starts; every receiver answers with a heartbeat.
    InitialHeartbeat,
    /// 2: liveness only.
    Heartbeat,
    /// 3: a broadcast; with `ack` the receivers report client counts and acks.
    Broadcast {
        /// Targets.
        opts: Opts,
        /// Encoded packet.
        #[serde(with = "serde_bytes")]
        packet: Vec<u8>,
        /// Present when acks are expected.
        ack: Option<AckRequest>,
    },
    /// 4: matched sockets join rooms.
    SocketsJoin {
        /// Targets.
        opts: Opts,
        /// Rooms to join.
        rooms: Vec<String>,
    },
    /// 5: matched sockets leave rooms.
    SocketsLeave {
        /// Targets.
        opts: Opts,
        /// Rooms to leave.
        rooms: Vec<String>,
    },
    /// 6: matched sockets disconnect.
    DisconnectSockets {
        /// Targets.
        opts: Opts,
        /// Close the underlying connection.
        close: bool,
    },
    /// 7: list matched sockets.
    FetchSockets {
        /// Targets.
        opts: Opts,
        /// Request.
        request_id: RequestId,
    },
    /// 8: answer to FetchSockets.
    FetchSocketsResponse {
        /// Request.
        request_id: RequestId,
        /// Matched sockets of the sender.
        sockets: Vec<SocketInfo>,
    },
    /// 9: a server-side event; with a request id each receiver answers once.
    ServerSideEmit {
        /// Encoded `[event, ...args]`.
        #[serde(with = "serde_bytes")]
        packet: Vec<u8>,
        /// Present when an answer is expected.
        request_id: Option<RequestId>,
    },
    /// 10: answer to ServerSideEmit.
    ServerSideEmitResponse {
        /// Request.
        request_id: RequestId,
        /// Encoded answer.
        #[serde(with = "serde_bytes")]
        packet: Vec<u8>,
    },
    /// 11: how many clients a broadcast-with-ack reached on the sender.
    BroadcastClientCount {
        /// Request.
        request_id: RequestId,
        /// Clients.
        client_count: u32,
    },
    /// 12: one client's ack.
    BroadcastAck {
        /// Request.
        request_id: RequestId,
        /// The ack.
        ack: Ack,
    },
    /// 13: the sender leaves.
    AdapterClose,
    /// Extension: list rooms of matched sockets (socketioxide `rooms()`).
    FetchRooms {
        /// Targets.
        opts: Opts,
        /// Request.
        request_id: RequestId,
    },
    /// Extension: answer to FetchRooms.
    FetchRoomsResponse {
        /// Request.
        request_id: RequestId,
        /// Rooms of the sender's matched sockets.
        rooms: Vec<String>,
    },
    /// Extension (recovery): a broadcast socket.io stamps with an offset;
    /// every node logs it (see [`crate::recovery`]).
    StampedBroadcast {
        /// Targets.
        opts: Opts,
        /// Encoded packet, without offset.
        #[serde(with = "serde_bytes")]
        packet: Vec<u8>,
        /// The sender's sequence number of its stamped broadcasts (from 1).
        seq: u64,
    },
    /// Extension (recovery): a session, live or disconnected.
    Session(WireSession),
    /// Extension (recovery): a session closed for good.
    SessionDrop {
        /// Private session id.
        pid: String,
        /// Epoch of the dropped session.
        epoch: u64,
    },
    /// Extension (recovery): part of the log for a node that just started,
    /// sent to it alone by the live node with the smallest uid.
    LogHistory {
        /// How far the sender logged each origin (in the first part only).
        heads: Vec<HistoryHead>,
        /// Entries, in the sender's log order.
        entries: Vec<HistoryEntry>,
        /// Ages of the sender's sessions (in the first part only).
        sessions: Vec<SessionAge>,
        /// Whether this is the last part.
        last: bool,
    },
}

/// The ack part of a BROADCAST.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckRequest {
    /// Request of the emitter.
    pub request_id: RequestId,
    /// How long the emitter waits; receivers forget the request after it.
    pub timeout_ms: u32,
}

impl Message {
    /// Upstream `MessageType` number (14 to 19 for the extensions).
    pub fn type_number(&self) -> u8 {
        match self {
            Message::InitialHeartbeat => 1,
            Message::Heartbeat => 2,
            Message::Broadcast { .. } => 3,
            Message::SocketsJoin { .. } => 4,
            Message::SocketsLeave { .. } => 5,
            Message::DisconnectSockets { .. } => 6,
            Message::FetchSockets { .. } => 7,
            Message::FetchSocketsResponse { .. } => 8,
            Message::ServerSideEmit { .. } => 9,
            Message::ServerSideEmitResponse { .. } => 10,
            Message::BroadcastClientCount { .. } => 11,
            Message::BroadcastAck { .. } => 12,
            Message::AdapterClose => 13,
            Message::FetchRooms { .. } => 14,
            Message::FetchRoomsResponse { .. } => 15,
            Message::StampedBroadcast { .. } => 16,
            Message::Session(_) => 17,
            Message::SessionDrop { .. } => 18,
            Message::LogHistory { .. } => 19,
        }
    }
}

/// Encodes an envelope into a frame.
pub fn encode(env: &Envelope) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.push(VERSION);
    // Serializing into a Vec cannot fail for these types.
    match postcard::to_extend(env, out) {
        Ok(v) => v,
        Err(_) => vec![VERSION],
    }
}

/// Decodes a frame, refusing frames longer than `max_len`.
pub fn decode(frame: &[u8], max_len: u32) -> Result<Envelope, FrameError> {
    let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
    if len > max_len {
        return Err(FrameError::TooLarge(len));
    }
    let (&version, body) = frame.split_first().ok_or(FrameError::Empty)?;
    if version != VERSION {
        return Err(FrameError::UnsupportedVersion(version));
    }
    let (env, rest) = postcard::take_from_bytes::<Envelope>(body)
        .map_err(|e| FrameError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(FrameError::Malformed(format!(
            "{} trailing bytes",
            rest.len()
        )));
    }
    Ok(env)
}

/// Splits a batch of frames, each prefixed by its length (u32 little-endian).
pub fn split_batch(batch: &[u8]) -> impl Iterator<Item = Result<&[u8], FrameError>> {
    let mut rest = batch;
    core::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let Some((len, tail)) = rest.split_first_chunk::<4>() else {
            rest = &[];
            return Some(Err(FrameError::Malformed("truncated batch header".into())));
        };
        let len = u32::from_le_bytes(*len) as usize;
        if tail.len() < len {
            rest = &[];
            return Some(Err(FrameError::Malformed("truncated batch frame".into())));
        }
        let (frame, next) = tail.split_at(len);
        rest = next;
        Some(Ok(frame))
    })
}

/// Appends one frame to a batch for [`split_batch`].
pub fn push_batch(batch: &mut Vec<u8>, frame: &[u8]) {
    batch.extend_from_slice(&(frame.len() as u32).to_le_bytes());
    batch.extend_from_slice(frame);
}
