//! The primary process: routing and supervision.
//!
//! - [`hub`]: the relay between workers' links, fast leave, backpressure;
//! - [`sticky`]: the public port, sticky HTTP routing per request;
//! - [`supervisor`]: spawns, restarts and stops workers (`run`);
//! - [`standalone`]: the hub alone on a private Unix socket (`hub --socket`);
//! - [`bridge`]: several machines' primaries joined through Redis (`--redis`).
//!
//! Depends on [`crate::link`] only. The component is the workers' business;
//! the CLI prepares it for them through one call,
//! [`crate::runtime::artifact::compile_for_workers`] (in a child process), and passes the result
//! as environment variables ([`supervisor::RunConfig::worker_env`]).

pub mod bridge;
pub mod hub;
pub mod standalone;
pub mod sticky;
pub mod supervisor;
