//! Host side of sio-cluster: loads the adapter component, runs the IPC hub,
//! supervises workers and balances clients with sticky sessions.
//!
//! One folder per layer, dependencies pointing one way:
//!
//! - [`runtime`]: the component in wasmtime (engine, one node per `Store`,
//!   tenants, the compiled artifact shared with workers) → the adapter crate;
//! - [`link`]: the worker ↔ hub link (frame codec, out queues, the worker's
//!   end, WebSocket handoff);
//! - [`primary`]: the hub, sticky routing, the supervisor → [`link`];
//! - [`sioxide`]: socketioxide's `CoreAdapter` over the component, and the
//!   demo worker → [`link`] and [`runtime`].
//!
//! The CLI (`src/main.rs`) is a thin clap shell over these. The whole chain:
//! WIT → adapter (pure logic) → this crate (IO, processes, wasmtime) → CLI.

pub mod link;
pub mod primary;
pub mod runtime;
pub mod sioxide;

pub use runtime::engine::{AdapterEngine, DEFAULT_COMPONENT, EngineOptions, Limits};
pub use runtime::node::{AdapterNode, NodeError};
pub use runtime::wasm_node::WasmNode;
pub use sio_cluster_adapter as adapter;

/// The README's code compiles (checked by `cargo test --doc`).
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
