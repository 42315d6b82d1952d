//! Node liveness of upstream `ClusterAdapterWithHeartbeat`.
//!
//! Every frame from a node refreshes it; a node silent for longer than the
//! heartbeat timeout is dropped. This node publishes a HEARTBEAT once
//! `heartbeat_interval` has passed since its last publish (upstream re-arms
//! the timer on every publish, not on responses).

use std::collections::BTreeMap;

use crate::types::NodeId;

/// Last-seen times of the other nodes and this node's heartbeat clock.
#[derive(Debug)]
pub struct Liveness {
    interval: u64,
    timeout: u64,
    nodes: BTreeMap<NodeId, u64>,
    /// Time of this node's last publish; `None` before `init`.
    last_publish: Option<u64>,
}

impl Liveness {
    /// A liveness tracker with the given interval and timeout (ms).
    pub fn new(interval_ms: u32, timeout_ms: u32) -> Self {
        Liveness {
            interval: u64::from(interval_ms.max(1)),
            timeout: u64::from(timeout_ms),
            nodes: BTreeMap::new(),
            last_publish: None,
        }
    }

    /// Records a frame from `uid`; true when the node is new.
    pub fn seen(&mut self, uid: NodeId, now: u64) -> bool {
        self.nodes.insert(uid, now).is_none()
    }

    /// Forgets a node; true if it was known.
    pub fn remove(&mut self, uid: NodeId) -> bool {
        self.nodes.remove(&uid).is_some()
    }

    /// Whether the node is live.
    pub fn contains(&self, uid: NodeId) -> bool {
        self.nodes.contains_key(&uid)
    }

    /// Other live nodes, in id order.
    pub fn nodes(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.nodes.keys().copied()
    }

    /// Number of other live nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether no other node is live.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Notes a publish: the heartbeat timer restarts.
    pub fn published(&mut self, now: u64) {
        self.last_publish = Some(now);
    }

    /// Stops heartbeats (after close).
    pub fn stop(&mut self) {
        self.last_publish = None;
    }

    /// Whether a heartbeat is due.
    pub fn heartbeat_due(&self, now: u64) -> bool {
        self.last_publish
            .is_some_and(|t| now >= t.saturating_add(self.interval))
    }

    /// Nodes silent for longer than the timeout.
    pub fn expired(&self, now: u64) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|&(_, &seen)| now.saturating_sub(seen) > self.timeout)
            .map(|(&uid, _)| uid)
            .collect()
    }

    /// The earliest time a heartbeat or an expiry is due.
    pub fn next_deadline(&self) -> Option<u64> {
        let beat = self.last_publish.map(|t| t.saturating_add(self.interval));
        let expiry = self
            .nodes
            .values()
            .min()
            .map(|&seen| seen.saturating_add(self.timeout).saturating_add(1));
        match (beat, expiry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_after_interval_without_publish() {
        let mut l = Liveness::new(5000, 10000);
        assert!(!l.heartbeat_due(100_000), "no heartbeat before init");
        l.published(0);
        assert!(!l.heartbeat_due(4999));
        assert!(l.heartbeat_due(5000));
        l.published(5000);
        assert_eq!(l.next_deadline(), Some(10_000));
    }

    #[test]
    fn node_expires_after_timeout() {
        let mut l = Liveness::new(5000, 10000);
        assert!(l.seen(7, 1000));
        assert!(!l.seen(7, 2000));
        assert!(l.expired(12_000).is_empty());
        assert_eq!(l.expired(12_001), [7]);
        assert_eq!(l.next_deadline(), Some(12_001));
    }
}
