//! The adapter component in wasmtime: the runtime layer.
//!
//! - [`engine`]: the engine (configured once), the embedded default
//!   component, per-instance [`Limits`](engine::Limits);
//! - [`artifact`]: the component checked and compiled once by the primary,
//!   loaded by every worker (`run --component`, `SIO_CLUSTER_COMPILED`);
//! - [`wasm_node`]: one adapter node in its own `Store`, rebuilt after a trap;
//! - [`node`]: [`AdapterNode`](node::AdapterNode), one API over the native
//!   and the component build;
//! - [`tenants`]: one isolated instance per tenant and namespace;
//! - [`bindings`]: the one `bindgen!` and the WIT type conversions.
//!
//! Depends on the adapter crate and wasmtime only: nothing here knows about
//! processes, links or socketioxide.

pub mod artifact;
pub mod bindings;
pub mod engine;
pub mod node;
pub mod tenants;
pub mod wasm_node;
