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
//! - [`fd_limit`]: the open-file limit, raised at start.
//!
//! `runtime` and `sioxide` need the default feature `runtime` (wasmtime);
//! without it the crate is [`link`] and [`primary`] alone (the fuzz targets).
//!
//! The CLI (`src/main.rs`) is a thin clap shell over these. The whole chain:
//! WIT → adapter (pure logic) → this crate (IO, processes, wasmtime) → CLI.

pub mod fd_limit;
pub mod link;
pub mod primary;
#[cfg(feature = "runtime")]
pub mod runtime;
#[cfg(feature = "runtime")]
pub mod sioxide;

#[cfg(feature = "runtime")]
pub use runtime::engine::{AdapterEngine, DEFAULT_COMPONENT, EngineOptions, Limits};
#[cfg(feature = "runtime")]
pub use runtime::node::{AdapterNode, NodeError};
#[cfg(feature = "runtime")]
pub use runtime::wasm_node::WasmNode;
pub use sio_cluster_adapter as adapter;

/// The README's code compiles (checked by `cargo test --doc`).
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
