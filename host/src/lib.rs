//! Host side of sio-cluster: loads the adapter component, runs the IPC hub,
//! supervises workers and balances clients with sticky sessions.
//!
//! The adapter in wasmtime:
//! - [`engine`]: the wasmtime engine, the embedded default component, limits;
//! - [`wasm_node`]: one adapter node in its own Store, rebuilt after a trap;
//! - [`node`]: [`AdapterNode`], one API over the native and the component build;
//! - [`packet`]: the packet bytes hosts of every runtime exchange;
//! - [`tenants`]: one isolated instance per tenant and namespace.
//!
//! Processes:
//! - [`ipc`]: the frame codec of the hub link;
//! - [`hub`]: the relay between workers, with fast leave;
//! - [`worker`]: the worker side of the link;
//! - [`sticky`], [`handoff`]: the public port, routed per HTTP request;
//! - [`supervisor`]: spawns and restarts workers (`run`);
//! - [`standalone`]: the hub alone on a private socket (`hub --socket`).
//!
//! Dependencies point one way: WIT → adapter (pure logic) → this crate (IO,
//! processes, wasmtime) → the CLI (`src/main.rs`).

pub mod bindings;
pub mod demo;
pub mod engine;
pub mod handoff;
pub mod hub;
pub mod ipc;
pub mod node;
mod outq;
pub mod packet;
pub mod sioxide;
pub mod standalone;
pub mod sticky;
pub mod supervisor;
pub mod tenants;
pub mod wasm_node;
pub mod worker;

pub use engine::{AdapterEngine, DEFAULT_COMPONENT, EngineOptions, Limits};
pub use node::{AdapterNode, NodeError};
pub use sio_cluster_adapter as adapter;
pub use wasm_node::WasmNode;

/// The README's code compiles (checked by `cargo test --doc`).
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
