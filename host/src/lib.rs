//! Host side of sio-cluster: loads the adapter component, runs the IPC hub and
//! the sticky load balancer.

pub mod handoff;
pub mod hub;
pub mod ipc;
pub mod standalone;
pub mod sticky;
pub mod supervisor;
pub mod worker;
