//! socketioxide over the adapter component (the glue layer, on top of
//! [`crate::link`] and [`crate::runtime`]): [`WasmClusterAdapter`] implements
//! socketioxide's `CoreAdapter`, so a socketioxide server switches to a
//! machine-local cluster with one line:
//!
//! ```text
//! SocketIo::builder().with_adapter::<WasmClusterAdapter<_>>(cluster.clone())
//! ```
//!
//! * [`cluster`]: [`WasmCluster`], what a worker process's namespaces share
//!   (engine, hub link, dispatcher), server-side emit and the server count;
//! * [`adapter`]: the `CoreAdapter` implementation, one component instance per
//!   namespace;
//! * [`acks`]: the ack stream of a broadcast-with-ack;
//! * [`convert`]: options, packets and ids between socketioxide and the adapter;
//! * [`packet`]: the packet bytes hosts of every runtime exchange;
//! * [`slow`]: the slow-consumer policy (a per-client cap in bytes, a time
//!   limit without progress);
//! * [`demo`]: the demo worker (`shared/demo-contract.md`);
//! * [`compact`]: handshake requests' URI and headers copied out of hyper's
//!   read buffer, which socketioxide would otherwise pin per client;
//! * [`page`]: the demo page the demo workers serve at `/`, and their CORS policy.
//!
//! Pinned to socketioxide 0.18.9 / socketioxide-core 0.20.0, common parser.

pub mod acks;
pub mod adapter;
pub mod cluster;
pub mod compact;
pub mod convert;
pub mod demo;
pub mod packet;
pub mod page;
pub mod slow;

pub use adapter::{InitRes, WasmClusterAdapter};
pub use cluster::{
    ClusterSettings, ClusterStats, ServerEmitError, ServerEvent, ServerReply, WasmCluster,
    handshake_json,
};

use socketioxide_core::adapter::errors::AdapterError;

/// Errors of the socketioxide adapter.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The namespace's instance could not be created.
    #[error("cluster adapter not started: {0}")]
    NotStarted(String),
    /// The component engine could not be loaded.
    #[error("cannot load the adapter component: {0}")]
    Engine(String),
    /// The hub link could not be opened.
    #[error("hub link: {0}")]
    Link(String),
    /// The instance trapped during this call; it was replaced.
    #[error("adapter instance trapped and was replaced: {0}")]
    Trapped(String),
    /// A call into the instance failed.
    #[error("adapter instance: {0}")]
    Node(String),
    /// A cluster request failed (upstream texts, e.g.
    /// `timeout reached: missing 1 responses`).
    #[error("{0}")]
    Request(String),
    /// No adapter serves this namespace in this process.
    #[error("namespace {0} is not served by this process")]
    NoNamespace(String),
    /// A value could not be encoded.
    #[error("cannot encode: {0}")]
    Encode(String),
    /// The adapter closed.
    #[error("adapter closed")]
    Closed,
}

impl From<crate::link::worker::LinkError> for Error {
    fn from(e: crate::link::worker::LinkError) -> Self {
        Error::Link(e.to_string())
    }
}

impl From<Error> for AdapterError {
    fn from(e: Error) -> Self {
        AdapterError(Box::new(e))
    }
}
