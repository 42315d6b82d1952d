//! The other primaries this one hears on Redis, and the node uids each hosts.
//!
//! A primary becomes known with its first accepted envelope, and learns a
//! node uid from the sender of every record it relays. It is forgotten when
//! it says it leaves, when it stays silent past the primary heartbeat
//! timeout, or when this primary loses its own Redis link; its uids are then
//! returned so that the local workers get `NodeDown` for each. A forgotten
//! primary's last envelope number is kept for a while ("retired"), so that
//! an old envelope published again (a replay) is refused.
//!
//! Bounded: at most [`MAX_PEERS`] primaries, [`MAX_UIDS_PER_PEER`] uids
//! each, [`MAX_RETIRED`] retired entries.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Most other primaries tracked at once.
pub const MAX_PEERS: usize = 1024;
/// Most node uids one other primary may host.
pub const MAX_UIDS_PER_PEER: usize = 65_536;
/// Most retired primaries remembered.
pub const MAX_RETIRED: usize = 4096;
/// How long a retired primary's envelope number is remembered.
pub const RETIRE_FOR: Duration = Duration::from_secs(600);

struct Peer {
    last_seen: Instant,
    last_seq: u64,
    uids: HashMap<u64, String>,
}

/// Why an envelope of a known primary was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Its number is not above the last one seen from that primary.
    Replayed,
    /// [`MAX_PEERS`] primaries are known already.
    TooManyPeers,
}

/// Why a record's sender uid was not learnt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conflict {
    /// Another primary hosts that uid.
    OtherPeer,
    /// [`MAX_UIDS_PER_PEER`] reached.
    TooManyUids,
}

/// See the module docs.
#[derive(Default)]
pub struct Peers {
    hubs: HashMap<u64, Peer>,
    owner: HashMap<u64, u64>,
    retired: HashMap<u64, (u64, Instant)>,
}

impl Peers {
    /// Accepts envelope `seq` of primary `hub`: Ok(true) when that primary
    /// was not known (it joined), Ok(false) when it was.
    pub fn seen(&mut self, hub: u64, seq: u64, now: Instant) -> Result<bool, Refused> {
        if let Some(p) = self.hubs.get_mut(&hub) {
            if seq <= p.last_seq {
                return Err(Refused::Replayed);
            }
            p.last_seq = seq;
            p.last_seen = now;
            return Ok(false);
        }
        if let Some((last, _)) = self.retired.get(&hub)
            && seq <= *last
        {
            return Err(Refused::Replayed);
        }
        if self.hubs.len() >= MAX_PEERS {
            return Err(Refused::TooManyPeers);
        }
        self.retired.remove(&hub);
        self.hubs.insert(
            hub,
            Peer {
                last_seen: now,
                last_seq: seq,
                uids: HashMap::new(),
            },
        );
        Ok(true)
    }

    /// Records that node `uid` (of `nsp`) lives on primary `hub` (known).
    pub fn learn(&mut self, hub: u64, uid: u64, nsp: &str) -> Result<(), Conflict> {
        match self.owner.get(&uid) {
            Some(h) if *h == hub => return Ok(()),
            Some(_) => return Err(Conflict::OtherPeer),
            None => {}
        }
        let Some(p) = self.hubs.get_mut(&hub) else {
            return Err(Conflict::OtherPeer);
        };
        if p.uids.len() >= MAX_UIDS_PER_PEER {
            return Err(Conflict::TooManyUids);
        }
        p.uids.insert(uid, nsp.to_string());
        self.owner.insert(uid, hub);
        Ok(())
    }

    /// Forgets node `uid` of primary `hub` (its worker left); its namespace
    /// when it was that primary's.
    pub fn forget_uid(&mut self, hub: u64, uid: u64) -> Option<String> {
        if self.owner.get(&uid) != Some(&hub) {
            return None;
        }
        self.owner.remove(&uid);
        self.hubs.get_mut(&hub)?.uids.remove(&uid)
    }

    /// The primary hosting `uid`.
    pub fn hub_of(&self, uid: u64) -> Option<u64> {
        self.owner.get(&uid).copied()
    }

    /// Number of primaries known.
    pub fn len(&self) -> usize {
        self.hubs.len()
    }

    /// Whether no primary is known.
    pub fn is_empty(&self) -> bool {
        self.hubs.is_empty()
    }

    /// Number of remote node uids known.
    pub fn uid_count(&self) -> usize {
        self.owner.len()
    }

    /// Forgets primary `hub`; returns its nodes.
    pub fn remove(&mut self, hub: u64, now: Instant) -> Vec<(u64, String)> {
        let Some(p) = self.hubs.remove(&hub) else {
            return Vec::new();
        };
        self.retire(hub, p.last_seq, now);
        let mut nodes = Vec::with_capacity(p.uids.len());
        for (uid, nsp) in p.uids {
            self.owner.remove(&uid);
            nodes.push((uid, nsp));
        }
        nodes
    }

    /// Primaries silent for longer than `timeout`, with their silence.
    pub fn silent(&self, now: Instant, timeout: Duration) -> Vec<(u64, Duration)> {
        self.hubs
            .iter()
            .filter_map(|(id, p)| {
                let quiet = now.saturating_duration_since(p.last_seen);
                (quiet > timeout).then_some((*id, quiet))
            })
            .collect()
    }

    /// Forgets every primary; returns all their nodes.
    pub fn clear(&mut self, now: Instant) -> Vec<(u64, String)> {
        let ids: Vec<u64> = self.hubs.keys().copied().collect();
        let mut nodes = Vec::new();
        for id in ids {
            nodes.extend(self.remove(id, now));
        }
        nodes
    }

    fn retire(&mut self, hub: u64, seq: u64, now: Instant) {
        if self.retired.len() >= MAX_RETIRED {
            self.retired
                .retain(|_, (_, at)| now.saturating_duration_since(*at) < RETIRE_FOR);
            if self.retired.len() >= MAX_RETIRED {
                // Still full: forget the oldest.
                if let Some(oldest) = self
                    .retired
                    .iter()
                    .min_by_key(|(_, (_, at))| *at)
                    .map(|(id, _)| *id)
                {
                    self.retired.remove(&oldest);
                }
            }
        }
        self.retired.insert(hub, (seq, now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_learn_leave_and_replay() {
        let mut p = Peers::default();
        let t = Instant::now();
        assert_eq!(p.seen(1, 5, t), Ok(true));
        assert_eq!(p.seen(1, 6, t), Ok(false));
        assert_eq!(p.seen(1, 6, t), Err(Refused::Replayed));
        assert_eq!(p.learn(1, 100, "/"), Ok(()));
        assert_eq!(p.learn(1, 101, "/x"), Ok(()));
        assert_eq!(p.seen(2, 1, t), Ok(true));
        assert_eq!(p.learn(2, 100, "/"), Err(Conflict::OtherPeer));
        assert_eq!(p.hub_of(101), Some(1));
        assert_eq!(p.forget_uid(2, 101), None);
        assert_eq!(p.forget_uid(1, 101), Some("/x".into()));
        let mut gone = p.remove(1, t);
        gone.sort();
        assert_eq!(gone, vec![(100, "/".to_string())]);
        assert_eq!(p.hub_of(100), None);
        // A retired primary's old envelopes stay refused; newer ones rejoin.
        assert_eq!(p.seen(1, 6, t), Err(Refused::Replayed));
        assert_eq!(p.seen(1, 7, t), Ok(true));
        assert_eq!(p.len(), 2);
        assert_eq!(p.clear(t).len(), 0);
        assert!(p.is_empty());
    }

    #[test]
    fn silence_and_bounds() {
        let mut p = Peers::default();
        let t = Instant::now();
        p.seen(1, 1, t).unwrap();
        p.seen(2, 1, t + Duration::from_secs(2)).unwrap();
        let s = p.silent(t + Duration::from_secs(3), Duration::from_millis(1500));
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].0, 1);
        for i in 0..MAX_PEERS as u64 {
            let _ = p.seen(1000 + i, 1, t);
        }
        assert_eq!(p.len(), MAX_PEERS);
        assert_eq!(p.seen(999_999, 1, t), Err(Refused::TooManyPeers));
        for uid in 0..MAX_UIDS_PER_PEER as u64 {
            p.learn(1, uid, "/").unwrap();
        }
        assert_eq!(p.learn(1, u64::MAX, "/"), Err(Conflict::TooManyUids));
        for i in 0..(MAX_RETIRED as u64 + 10) {
            p.retire(5_000_000 + i, 1, t);
        }
        assert!(p.retired.len() <= MAX_RETIRED);
    }
}
