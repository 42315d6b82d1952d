//! The Socket.IO cluster adapter logic, as a sans-IO state machine.
//!
//! This crate is upstream `ClusterAdapterWithHeartbeat` (socket.io-adapter
//! 2.5, used by `@socket.io/cluster-adapter` 0.3) over the in-memory room
//! index. It builds natively (the baseline, and the tests) and for
//! `wasm32-wasip2` as the component described by `wit/cluster.wit`.
//!
//! - [`types`]: the values hosts pass in and the [`Effect`]s they get back;
//! - [`node`]: one adapter node per namespace;
//! - [`wire`]: the message types and the versioned postcard envelope;
//! - [`packed`]: effects as one byte list (the fast `on-frames-packed` result);
//! - [`recovery`]: connection state recovery (offsets, the log, sessions);
//! - [`rooms`], [`heartbeat`], [`requests`]: the parts of a node.
//!
//! No IO and no clock: time is an argument, so runs are deterministic.

pub mod heartbeat;
pub mod node;
pub mod packed;
pub mod recovery;
pub mod requests;
pub mod rooms;
pub mod types;
pub mod wire;

#[cfg(target_arch = "wasm32")]
mod component;

pub use node::Node;
pub use types::*;
