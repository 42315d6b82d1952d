//! Host side of sio-cluster.
//!
//! - [`engine`]: the wasmtime engine, the embedded default component, limits;
//! - [`wasm_node`]: one adapter node in its own Store, replaced on trap;
//! - [`node`]: [`AdapterNode`], one API over the native and the component build;
//! - [`packet`]: the packet bytes hosts of every runtime exchange;
//! - [`tenants`]: one isolated instance per tenant and namespace.
//!
//! Dependencies point one way: WIT → adapter (pure logic) → this crate (IO,
//! processes, wasmtime) → the CLI.

pub mod bindings;
pub mod engine;
pub mod node;
pub mod packet;
pub mod tenants;
pub mod wasm_node;

pub use engine::{AdapterEngine, DEFAULT_COMPONENT, EngineOptions, Limits};
pub use node::{AdapterNode, NodeError};
pub use sio_cluster_adapter as adapter;
pub use wasm_node::WasmNode;

/// The README's code compiles (checked by `cargo test --doc`).
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
