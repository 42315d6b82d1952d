//! Host side of sio-cluster: loads the adapter component, runs the IPC hub and
//! the sticky load balancer.
