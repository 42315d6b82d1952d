//! The outgoing queue towards Redis: records of local workers, grouped into
//! envelopes by destination channel, in the order the hub routed them.
//!
//! Bounded in bytes ([`super::BridgeConfig::max_queued_bytes`]); the bytes
//! of an envelope being published count until Redis answered. A record that
//! would pass the bound is dropped and counted (the caller logs it); the
//! queue never blocks the hub.

use std::collections::VecDeque;

/// Where an envelope goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// Every other primary (the `all` channel).
    All,
    /// One primary (its `hub:<id>` channel).
    Hub(u64),
}

/// Records for one channel, in order.
#[derive(Debug)]
pub struct Batch {
    /// Destination.
    pub dest: Dest,
    /// Records back to back (hub link encoding).
    pub records: Vec<u8>,
    /// Number of records.
    pub count: u64,
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct OutQueue {
    batches: VecDeque<Batch>,
    /// Bytes queued or being published.
    pub bytes: usize,
}

impl OutQueue {
    /// Appends one record (`parts` concatenated) for `dest`; false when it
    /// would take the queue past `max` bytes (nothing queued then). A batch
    /// grows up to `batch_max` bytes, a larger record gets its own batch.
    pub fn push(&mut self, dest: Dest, parts: &[&[u8]], max: usize, batch_max: usize) -> bool {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if self.bytes + len > max {
            return false;
        }
        self.bytes += len;
        let fits = self
            .batches
            .back()
            .is_some_and(|b| b.dest == dest && b.records.len() + len <= batch_max);
        if !fits {
            self.batches.push_back(Batch {
                dest,
                records: Vec::with_capacity(len.max(4096).min(batch_max.max(len))),
                count: 0,
            });
        }
        if let Some(b) = self.batches.back_mut() {
            for p in parts {
                b.records.extend_from_slice(p);
            }
            b.count += 1;
        }
        true
    }

    /// Takes every queued batch (their bytes stay counted until
    /// [`OutQueue::release`]).
    pub fn take(&mut self) -> Vec<Batch> {
        self.batches.drain(..).collect()
    }

    /// Whether nothing waits to be taken.
    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// Marks `n` bytes taken earlier as published (or dropped).
    pub fn release(&mut self, n: usize) {
        self.bytes = self.bytes.saturating_sub(n);
    }

    /// Drops everything queued; returns the number of records dropped.
    pub fn discard(&mut self) -> u64 {
        let mut n = 0;
        for b in self.batches.drain(..) {
            self.bytes = self.bytes.saturating_sub(b.records.len());
            n += b.count;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_by_destination_in_order_and_bounds_bytes() {
        let mut q = OutQueue::default();
        assert!(q.push(Dest::All, &[b"aa"], 10, 4));
        assert!(q.push(Dest::All, &[b"b", b"b"], 10, 4));
        assert!(q.push(Dest::Hub(1), &[b"c"], 10, 4));
        assert!(q.push(Dest::All, &[b"d"], 10, 4));
        assert!(q.push(Dest::All, &[b"eeee"], 10, 4));
        assert!(!q.push(Dest::All, &[b"f"], 10, 4), "over the bound");
        assert_eq!(q.bytes, 10);
        let b = q.take();
        let seen: Vec<_> = b
            .iter()
            .map(|b| (b.dest, b.records.clone(), b.count))
            .collect();
        assert_eq!(
            seen,
            vec![
                (Dest::All, b"aabb".to_vec(), 2),
                (Dest::Hub(1), b"c".to_vec(), 1),
                (Dest::All, b"d".to_vec(), 1),
                (Dest::All, b"eeee".to_vec(), 1),
            ]
        );
        assert_eq!(q.bytes, 10, "taken bytes count until released");
        q.release(10);
        assert!(q.push(Dest::All, &[b"f"], 10, 4));
        assert_eq!(q.discard(), 1);
        assert_eq!(q.bytes, 0);
        assert!(q.is_empty());
    }
}
