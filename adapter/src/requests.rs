//! Pending requests (this node waits for other nodes) and queries (this node
//! waits for its host), with the expected-response accounting of upstream
//! `ClusterAdapterWithHeartbeat`.
//!
//! A request completes when every node it waits for answered or left, and its
//! local part is in; or, at its deadline, with the upstream error text and
//! what arrived so far. A broadcast-with-ack waits, per node, for the client
//! count and then that many acks.

use std::collections::{BTreeMap, BTreeSet};

use crate::types::{
    ACK_TIMEOUT_ERROR, Ack, Completion, NodeId, QueryId, RequestId, RequestValue, SocketInfo,
    missing_responses_error,
};

/// Per-node tally of a broadcast-with-ack.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    /// Clients reached, once reported.
    pub count: Option<u32>,
    /// Acks received.
    pub received: u32,
}

impl Tally {
    /// Whether the count is known and that many acks arrived.
    pub fn done(&self) -> bool {
        self.count.is_some_and(|c| self.received >= c)
    }
}

/// What a request collects.
#[derive(Debug)]
pub enum Collect {
    /// fetch-sockets.
    Sockets(Vec<SocketInfo>),
    /// fetch-rooms (set semantics, first-seen order).
    Rooms(Vec<String>),
    /// server-side emit with replies.
    Replies(Vec<Vec<u8>>),
    /// broadcast-with-ack: tallies by node (this node included) and the acks.
    Acks {
        tallies: BTreeMap<NodeId, Tally>,
        acks: Vec<Ack>,
        streamed: bool,
    },
}

/// A request this node started.
#[derive(Debug)]
pub struct Request {
    /// When it times out.
    pub deadline: u64,
    /// Nodes that still have to answer (not used by ack broadcasts).
    pub missing: BTreeSet<NodeId>,
    /// Whether the host still owes the local part.
    pub local_pending: bool,
    /// The query for the local part, if any.
    pub local_query: Option<QueryId>,
    /// What arrived.
    pub collect: Collect,
}

impl Request {
    /// Whether everything expected arrived.
    pub fn is_done(&self) -> bool {
        if self.local_pending {
            return false;
        }
        match &self.collect {
            Collect::Acks { tallies, .. } => tallies.values().all(Tally::done),
            _ => self.missing.is_empty(),
        }
    }

    /// Drops a node that left; true if the request was waiting for it.
    pub fn forget_node(&mut self, uid: NodeId) -> bool {
        match &mut self.collect {
            Collect::Acks { tallies, .. } => tallies.remove(&uid).is_some(),
            _ => self.missing.remove(&uid),
        }
    }

    /// Completes the request, with the timeout error if `error` is given.
    pub fn complete(self, id: RequestId, error: Option<String>) -> Completion {
        let value = match self.collect {
            Collect::Sockets(s) => RequestValue::Sockets(s),
            Collect::Rooms(r) => RequestValue::Rooms(r),
            Collect::Replies(r) => RequestValue::Replies(r),
            Collect::Acks { acks, .. } => RequestValue::Acks(acks),
        };
        Completion { id, error, value }
    }

    /// The upstream error text for a timeout of this request.
    pub fn timeout_error(&self) -> String {
        match &self.collect {
            Collect::Acks { .. } => ACK_TIMEOUT_ERROR.to_owned(),
            _ => missing_responses_error(self.missing.len() + usize::from(self.local_pending)),
        }
    }
}

/// A question to the host, and where its answer goes.
#[derive(Debug)]
pub enum Query {
    /// Local part of this node's fetch-sockets.
    LocalSockets(RequestId),
    /// Local part of this node's fetch-rooms.
    LocalRooms(RequestId),
    /// Local part of this node's broadcast-with-ack.
    LocalAcks(RequestId),
    /// Another node's fetch-sockets.
    RemoteSockets {
        requester: NodeId,
        request: RequestId,
    },
    /// Another node's fetch-rooms.
    RemoteRooms {
        requester: NodeId,
        request: RequestId,
    },
    /// Another node's broadcast-with-ack.
    RemoteAcks {
        requester: NodeId,
        request: RequestId,
        tally: Tally,
    },
    /// Another node's server-side emit waiting for one reply.
    Reply {
        requester: NodeId,
        request: RequestId,
    },
}

impl Query {
    /// The other node this query answers, if any.
    pub fn requester(&self) -> Option<NodeId> {
        match self {
            Query::RemoteSockets { requester, .. }
            | Query::RemoteRooms { requester, .. }
            | Query::RemoteAcks { requester, .. }
            | Query::Reply { requester, .. } => Some(*requester),
            _ => None,
        }
    }
}

/// A query and when it is forgotten.
#[derive(Debug)]
pub struct PendingQuery {
    /// The query.
    pub query: Query,
    /// Forgotten after this time.
    pub expires: u64,
}
