//! The worker ↔ hub link: the layer both ends of the IPC share.
//!
//! - [`ipc`]: the frame codec (Hello/Welcome, Publish/Send, Frame/NodeDown,
//!   sessions);
//! - [`outq`]: a link end's outgoing queue, batched `write`/`writev`;
//! - [`worker`]: the worker's end: its environment ([`worker::WorkerEnv`]),
//!   connecting, sending and receiving frames;
//! - [`handoff`]: passing accepted WebSocket connections to a worker
//!   (`SCM_RIGHTS`).
//!
//! Frames are opaque bytes here: nothing in this layer loads the component.

pub mod handoff;
pub mod ipc;
pub(crate) mod outq;
pub mod worker;
