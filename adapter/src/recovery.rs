//! Connection state recovery across the nodes of a cluster (socket.io 4.6+
//! `connectionStateRecovery`), off until the host calls
//! [`crate::Node::enable_recovery`].
//!
//! # Design
//!
//! **Every node keeps its own log.** Every stampable broadcast (an EVENT or
//! BINARY_EVENT without ack id, not volatile, not local, not targeted at one
//! node) reaches every node already: the origin publishes it as
//! `StampedBroadcast` with its own per-origin sequence number `seq`
//! (1, 2, 3, …) and every node, the origin included, appends
//! `(origin, seq, opts, packet)` to its log before delivering it. One entry
//! per broadcast, whatever the number of recipients.
//!
//! **The offset is a version vector.** A node delivers each origin's
//! broadcasts in that origin's order (one FIFO link per worker), but two
//! nodes may interleave two origins differently. So the offset a node stamps
//! on a packet is not one position but, for each origin, the last `seq` this
//! node had logged when it delivered the packet:
//! `"<origin hex>-<seq>.<origin hex>-<seq>…"` (about 20 bytes per live node).
//! It means "this client got every matching broadcast up to these sequence
//! numbers", which every node can evaluate against its own log: the missed
//! packets are the matching log entries with `seq` above the vector, in the
//! restoring node's log order (each origin's order is kept). The same
//! packet therefore carries different offsets on different nodes (each node
//! stamps its own view), and the bytes a node writes are the same for its
//! local and its remote deliveries.
//!
//! **Sessions are replicated to every node**, so that any node can restore
//! any session, also after `kill -9` of the node the client was on
//! (socket.io#5413): the host reports a live session on connect and on every
//! room change ([`Recovery::update`]), and on a recoverable disconnect
//! ([`Recovery::persist`]); each is published as a `Session` message. A node
//! that learns that the owner is gone (fast leave `node-down`, heartbeat
//! timeout, ADAPTER_CLOSE) treats its live sessions as disconnected now.
//! A restore does not consume the session: the restoring node claims it
//! (epoch + 1, itself as owner) and publishes the claim, so a second
//! recovery of the same client works (socket.io#4880), and a stale socket
//! of that pid on the old node (the client came back before its node saw
//! the drop) is disconnected there instead of persisting an older state
//! later. Messages of an older epoch are ignored everywhere.
//!
//! **A restore never replays twice and never replays volatile or ack
//! packets** (they are never logged). It fails (a fresh session, as
//! upstream) rather than replaying a partial history: when an entry the
//! client needs was evicted or never reached this node. When the client has
//! seen more of an origin than this node has logged yet (frames in flight),
//! the restore answers [`RestoreOutcome::Behind`] and the host retries.
//!
//! # Bounds
//!
//! The log drops entries older than `max_disconnection_ms`, beyond
//! `max_log_entries`, or beyond `max_log_bytes` (packet bytes plus the
//! options' strings plus [`ENTRY_OVERHEAD`]), oldest first. Disconnected
//! sessions expire `max_disconnection_ms` after the disconnect; at most
//! `max_sessions` are kept (the oldest disconnected one goes first) and a
//! session whose rooms and data exceed `max_session_bytes` is refused.
//!
//! # Known window
//!
//! - `socket.data` is replicated on connect, on room changes and on persist:
//!   after `kill -9` a restore gets the data of the last room change.
//! - A client that received no stamped packet has no offset and is not
//!   restored (socket.io-client sends none; upstream socket.io#5538); any
//!   un-stamped event whose last argument is a string overwrites the
//!   client's offset (then the restore fails safely).
//! - A node that starts learns the sessions from every node, and the log
//!   from one: the live node with the smallest uid sends its history
//!   ([`Recovery::history`], message `LogHistory`) after its sessions. For
//!   [`CATCH_UP_MS`] (or until the last part arrives) a restore there that
//!   needs history it lacks is `Behind` (the host retries), not `NotFound`.
//!   When two nodes disagree about which is smallest, both send and the
//!   duplicates are skipped; when the sender dies before it is done, the
//!   restores that need the missing part fail safely (fresh session).
//! - An origin absent from the client's offset (its node had logged none of
//!   it) is replayed from the entries logged since the restoring node
//!   learned the session, if none of those was evicted. An offset naming an
//!   origin this node never logged or forgot (no entry left, gone for twice
//!   `max_disconnection_ms`) is `Behind`: the host retries, then gives up.
//! - Broadcasts of a host that does not stamp (a socketioxide worker) are
//!   not logged and not replayed.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::types::{NodeId, Opts};

/// Upstream default of `maxDisconnectionDuration` (2 minutes).
pub const DEFAULT_MAX_DISCONNECTION_MS: u32 = 120_000;
/// Default cap on log entries (as redis-streams' `MAXLEN`).
pub const DEFAULT_MAX_LOG_ENTRIES: u32 = 10_000;
/// Default cap on the log's bytes.
pub const DEFAULT_MAX_LOG_BYTES: u32 = 16 * 1024 * 1024;
/// Default cap on kept sessions.
pub const DEFAULT_MAX_SESSIONS: u32 = 100_000;
/// Default cap on one session's rooms and data.
pub const DEFAULT_MAX_SESSION_BYTES: u32 = 64 * 1024;
/// Bytes counted per log entry beyond its packet and room names.
pub const ENTRY_OVERHEAD: usize = 96;
/// How long a node that just started answers [`RestoreOutcome::Behind`]
/// instead of [`RestoreOutcome::NotFound`] for history it may still receive
/// (ended early by the last part of a history).
pub const CATCH_UP_MS: u64 = 2_000;
/// Target size of one history message (entries' counted bytes).
pub const HISTORY_CHUNK_BYTES: usize = 256 * 1024;
/// Longest offset string accepted from a client.
pub const MAX_OFFSET_LEN: usize = 8 * 1024;

/// Settings of connection state recovery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecoveryConfig {
    /// socket.io's `maxDisconnectionDuration`: log age and session lifetime.
    pub max_disconnection_ms: u32,
    /// Cap on log entries.
    pub max_log_entries: u32,
    /// Cap on log bytes.
    pub max_log_bytes: u32,
    /// Cap on kept sessions.
    pub max_sessions: u32,
    /// Cap on one session's rooms and data.
    pub max_session_bytes: u32,
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        RecoveryConfig {
            max_disconnection_ms: DEFAULT_MAX_DISCONNECTION_MS,
            max_log_entries: DEFAULT_MAX_LOG_ENTRIES,
            max_log_bytes: DEFAULT_MAX_LOG_BYTES,
            max_sessions: DEFAULT_MAX_SESSIONS,
            max_session_bytes: DEFAULT_MAX_SESSION_BYTES,
        }
    }
}

/// A socket's recoverable state, as socket.io's `Session` (data host-encoded).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Public socket id.
    pub sid: String,
    /// Private session id.
    pub pid: String,
    /// Rooms, the socket's own id included.
    pub rooms: Vec<String>,
    /// Host-encoded `socket.data`.
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// A session as replicated between nodes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireSession {
    /// The session.
    pub session: Session,
    /// Node that holds (or last held) the socket.
    pub owner: NodeId,
    /// Raised by every restore; older epochs are ignored.
    pub epoch: u64,
    /// Whether the socket is disconnected (persisted).
    pub disconnected: bool,
}

/// One log entry as sent to a node that just started ([`Recovery::history`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// Node that published the broadcast.
    pub origin: NodeId,
    /// Its sequence number at the origin.
    pub seq: u64,
    /// How long ago the sender logged it, in milliseconds.
    pub age_ms: u64,
    /// Targets.
    pub opts: Opts,
    /// Encoded packet, without offset.
    #[serde(with = "serde_bytes")]
    pub packet: Vec<u8>,
}

/// How far the sender of a history has logged one origin, also when none of
/// its entries is left (so that an offset naming it is not `Behind` forever).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryHead {
    /// Node that published the broadcasts.
    pub origin: NodeId,
    /// Last sequence number the sender logged.
    pub last: u64,
    /// How long ago the sender logged it, in milliseconds.
    pub age_ms: u64,
}

/// How old a session is at the sender of a history, so that the node that
/// starts neither replays entries older than the session nor keeps a
/// disconnected session past its expiry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionAge {
    /// Private session id.
    pub pid: String,
    /// Milliseconds since the sender learned the session.
    pub created_ms_ago: u64,
    /// Milliseconds since it was disconnected, if it is.
    pub disconnected_ms_ago: Option<u64>,
}

/// What a restore found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestoreOutcome {
    /// The session and its missed packets (stamped, in order).
    Restored(Session, Vec<Vec<u8>>),
    /// No usable session or history: start a fresh session.
    NotFound,
    /// This node has not yet logged what the client saw: retry shortly.
    Behind,
}

/// Counters of recovery.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryStats {
    /// Entries in the log.
    pub log_entries: u32,
    /// Bytes counted in the log.
    pub log_bytes: u64,
    /// Sessions known.
    pub sessions: u32,
    /// Restores that returned a session.
    pub restored: u64,
    /// Restores that found nothing usable.
    pub not_found: u64,
    /// Offsets that did not parse.
    pub bad_offsets: u64,
    /// Entries dropped by the count or byte cap.
    pub evicted: u64,
    /// Sessions refused (too large, or no room).
    pub sessions_refused: u64,
    /// Out-of-order or duplicate entries from other nodes.
    pub bad_entries: u64,
}

#[derive(Debug)]
struct Entry {
    origin: NodeId,
    seq: u64,
    at: u64,
    opts: Opts,
    packet: Vec<u8>,
    cost: usize,
}

/// What this node knows of one origin's sequence.
#[derive(Clone, Copy, Debug)]
struct Head {
    /// Last seq logged.
    last: u64,
    /// Every entry with `seq >= from` (up to `last`) is in the log.
    from: u64,
    /// When the last entry was logged.
    last_at: u64,
}

#[derive(Debug)]
struct Stored {
    wire: WireSession,
    /// When it was disconnected (persist time, or when the owner went down).
    disconnected_at: Option<u64>,
    /// This node told its host to close a stale socket of this pid: the next
    /// `closed` report is that socket's, not the live one's.
    stale_close: bool,
    /// When this node first learned the session: entries logged before it
    /// cannot be for this client.
    created_at: u64,
}

/// The log, the version vector and the sessions of one node.
#[derive(Debug)]
pub struct Recovery {
    cfg: RecoveryConfig,
    uid: NodeId,
    own_seq: u64,
    log: VecDeque<Entry>,
    log_bytes: usize,
    heads: BTreeMap<NodeId, Head>,
    sessions: BTreeMap<String, Stored>,
    stats: RecoveryStats,
    catch_up: CatchUp,
}

/// Receiving the history of the log from another node, after this one started.
#[derive(Debug, Default)]
struct CatchUp {
    /// Waiting for (more of) a history until this time; `None` once done or
    /// before the node started.
    until: Option<u64>,
    /// Whether the node started (the window is opened once).
    started: bool,
    /// Where the next history entry goes in the log (before live entries).
    at: usize,
    /// Per origin, the contiguous run of history entries received so far.
    runs: BTreeMap<NodeId, (u64, u64)>,
}

impl Recovery {
    /// Recovery for node `uid`.
    pub fn new(uid: NodeId, cfg: RecoveryConfig) -> Self {
        Recovery {
            cfg,
            uid,
            own_seq: 0,
            log: VecDeque::new(),
            log_bytes: 0,
            heads: BTreeMap::new(),
            sessions: BTreeMap::new(),
            stats: RecoveryStats::default(),
            catch_up: CatchUp::default(),
        }
    }

    /// The settings.
    pub fn config(&self) -> RecoveryConfig {
        self.cfg
    }

    /// Counters.
    pub fn stats(&self) -> RecoveryStats {
        RecoveryStats {
            log_entries: self.log.len() as u32,
            log_bytes: self.log_bytes as u64,
            sessions: self.sessions.len() as u32,
            ..self.stats.clone()
        }
    }

    fn max_age(&self) -> u64 {
        u64::from(self.cfg.max_disconnection_ms)
    }

    /// The next sequence number of this node's own stampable broadcasts.
    pub fn next_own_seq(&mut self) -> u64 {
        self.own_seq += 1;
        self.own_seq
    }

    /// Logs a stampable broadcast and returns the packet stamped with this
    /// node's offset. A duplicate or out-of-order entry is not logged (and
    /// counted); its packet is stamped with the current offset.
    pub fn log(
        &mut self,
        now: u64,
        origin: NodeId,
        seq: u64,
        opts: &Opts,
        packet: Vec<u8>,
    ) -> Vec<u8> {
        let ok = match self.heads.get_mut(&origin) {
            Some(h) if seq == h.last.saturating_add(1) => {
                h.last = seq;
                h.last_at = now;
                true
            }
            Some(h) if seq > h.last.saturating_add(1) => {
                // A gap: what came before is incomplete here.
                self.stats.bad_entries += 1;
                *h = Head {
                    last: seq,
                    from: seq,
                    last_at: now,
                };
                true
            }
            Some(_) => false,
            None if seq >= 1 => {
                self.heads.insert(
                    origin,
                    Head {
                        last: seq,
                        from: seq,
                        last_at: now,
                    },
                );
                true
            }
            None => false,
        };
        if !ok {
            self.stats.bad_entries += 1;
            let offset = self.offset_now();
            return stamp(&packet, &offset).unwrap_or(packet);
        }
        let cost = entry_cost(opts, &packet);
        let offset = self.offset_now();
        let stamped = stamp(&packet, &offset).unwrap_or_else(|| packet.clone());
        self.log.push_back(Entry {
            origin,
            seq,
            at: now,
            opts: opts.clone(),
            packet,
            cost,
        });
        self.log_bytes += cost;
        self.enforce_caps();
        stamped
    }

    fn enforce_caps(&mut self) {
        while self.log.len() > self.cfg.max_log_entries as usize
            || self.log_bytes > self.cfg.max_log_bytes as usize
        {
            self.stats.evicted += 1;
            self.evict_front();
        }
    }

    fn evict_front(&mut self) {
        if let Some(e) = self.log.pop_front() {
            self.catch_up.at = self.catch_up.at.saturating_sub(1);
            self.log_bytes -= e.cost;
            if let Some(h) = self.heads.get_mut(&e.origin) {
                h.from = h.from.max(e.seq.saturating_add(1));
            }
        }
    }

    /// This node's current offset (its version vector).
    pub fn offset_now(&self) -> String {
        format_offset(self.heads.iter().map(|(&o, h)| (o, h.last)))
    }

    /// Drops expired entries, sessions and forgotten origins.
    pub fn sweep(&mut self, now: u64) {
        if self.catch_up.until.is_some_and(|t| t <= now) {
            self.end_catch_up();
        }
        let age = self.max_age();
        while self
            .log
            .front()
            .is_some_and(|e| e.at.saturating_add(age) <= now)
        {
            self.evict_front();
        }
        self.heads
            .retain(|_, h| h.from <= h.last || h.last_at.saturating_add(2 * age) > now);
        self.sessions.retain(|_, s| match s.disconnected_at {
            Some(t) => t.saturating_add(age) > now,
            None => true,
        });
    }

    /// When [`Recovery::sweep`] next has work.
    pub fn next_deadline(&self) -> Option<u64> {
        let age = self.max_age();
        let log = self.log.front().map(|e| e.at.saturating_add(age));
        let sessions = self
            .sessions
            .values()
            .filter_map(|s| s.disconnected_at)
            .min()
            .map(|t| t.saturating_add(age));
        let heads = self
            .heads
            .values()
            .filter(|h| h.from > h.last)
            .map(|h| h.last_at.saturating_add(2 * age))
            .min();
        [log, sessions, heads, self.catch_up.until]
            .into_iter()
            .flatten()
            .min()
    }

    // ---- history for a node that starts ----

    /// This node started at `now` (announced itself): for [`CATCH_UP_MS`]
    /// it may receive the log's history from another node. Opened once.
    pub fn started(&mut self, now: u64) {
        if !self.catch_up.started {
            self.catch_up.started = true;
            self.catch_up.until = Some(now.saturating_add(CATCH_UP_MS));
        }
    }

    fn catching_up(&self, now: u64) -> bool {
        self.catch_up.until.is_some_and(|t| now < t)
    }

    fn end_catch_up(&mut self) {
        self.catch_up.until = None;
        self.catch_up.runs.clear();
        self.catch_up.at = 0;
    }

    /// The log as history for a node that just started, in log order, cut
    /// into parts of about `chunk_bytes` (at least one entry each). Only
    /// each origin's complete run (from its head's `from`) is sent; an entry
    /// larger than `max_entry_bytes` is left out (the receiver sees a gap).
    pub fn history(
        &self,
        now: u64,
        chunk_bytes: usize,
        max_entry_bytes: usize,
    ) -> Vec<Vec<HistoryEntry>> {
        let mut parts = Vec::new();
        let mut part = Vec::new();
        let mut bytes = 0;
        for e in &self.log {
            let complete = self.heads.get(&e.origin).is_some_and(|h| e.seq >= h.from);
            if !complete || e.cost > max_entry_bytes {
                continue;
            }
            if bytes + e.cost > chunk_bytes && !part.is_empty() {
                parts.push(std::mem::take(&mut part));
                bytes = 0;
            }
            bytes += e.cost;
            part.push(HistoryEntry {
                origin: e.origin,
                seq: e.seq,
                age_ms: now.saturating_sub(e.at),
                opts: e.opts.clone(),
                packet: e.packet.clone(),
            });
        }
        if !part.is_empty() || parts.is_empty() {
            parts.push(part);
        }
        parts
    }

    /// How far this node logged each origin, sent with a history.
    pub fn history_heads(&self, now: u64) -> Vec<HistoryHead> {
        self.heads
            .iter()
            .map(|(&origin, h)| HistoryHead {
                origin,
                last: h.last,
                age_ms: now.saturating_sub(h.last_at),
            })
            .collect()
    }

    /// The ages of the sessions this node knows, sent with a history.
    pub fn session_ages(&self, now: u64) -> Vec<SessionAge> {
        self.sessions
            .iter()
            .map(|(pid, s)| SessionAge {
                pid: pid.clone(),
                created_ms_ago: now.saturating_sub(s.created_at),
                disconnected_ms_ago: s.disconnected_at.map(|t| now.saturating_sub(t)),
            })
            .collect()
    }

    /// A part of another node's history. Entries this node logged already
    /// are skipped; the others go before the live entries, each origin's
    /// order kept, and an origin's `from` moves back once its run reaches
    /// the first entry this node logged live. Ignored outside the catch-up
    /// window. `last` ends the window.
    pub fn absorb_history(
        &mut self,
        now: u64,
        heads: Vec<HistoryHead>,
        entries: Vec<HistoryEntry>,
        ages: Vec<SessionAge>,
        last: bool,
    ) {
        if !self.catching_up(now) {
            return;
        }
        // Origins this node has not logged yet: known up to `last`, nothing
        // held; the entries below fill in and move `from` back.
        for h in heads {
            if h.last == 0 || self.heads.contains_key(&h.origin) {
                continue;
            }
            if h.origin == self.uid {
                self.own_seq = self.own_seq.max(h.last);
            }
            self.heads.insert(
                h.origin,
                Head {
                    last: h.last,
                    from: h.last.saturating_add(1),
                    last_at: now.saturating_sub(h.age_ms),
                },
            );
        }
        for a in ages {
            if let Some(s) = self.sessions.get_mut(&a.pid) {
                s.created_at = s.created_at.min(now.saturating_sub(a.created_ms_ago));
                if let (Some(t), Some(ago)) = (s.disconnected_at, a.disconnected_ms_ago) {
                    s.disconnected_at = Some(t.min(now.saturating_sub(ago)));
                }
            }
        }
        for e in entries {
            self.absorb_entry(now, e);
        }
        self.enforce_caps();
        if last {
            self.end_catch_up();
        }
    }

    fn absorb_entry(&mut self, now: u64, e: HistoryEntry) {
        let (origin, seq) = (e.origin, e.seq);
        if seq == 0 {
            self.stats.bad_entries += 1;
            return;
        }
        let at = now.saturating_sub(e.age_ms);
        if origin == self.uid {
            // An instance that replaced a trapped one (same uid): its own
            // sequence continues after what the others logged.
            self.own_seq = self.own_seq.max(seq);
        }
        let run = self.catch_up.runs.get(&origin).copied();
        match self.heads.get_mut(&origin) {
            None => {
                self.heads.insert(
                    origin,
                    Head {
                        last: seq,
                        from: seq,
                        last_at: at,
                    },
                );
                self.catch_up.runs.insert(origin, (seq, seq));
            }
            // A head made by the history alone: extend it.
            Some(h) if run.is_some_and(|(_, l)| l == h.last) => {
                let (first, l) = run.unwrap_or((seq, seq));
                if seq <= l {
                    return;
                }
                if seq == l + 1 {
                    h.last = seq;
                    h.last_at = h.last_at.max(at);
                    self.catch_up.runs.insert(origin, (first, seq));
                } else {
                    *h = Head {
                        last: seq,
                        from: seq,
                        last_at: at,
                    };
                    self.catch_up.runs.insert(origin, (seq, seq));
                }
            }
            // This node logged the origin live from `h.from`: the history
            // fills in what came before.
            Some(h) => {
                if seq >= h.from {
                    return;
                }
                let run = match run {
                    Some((first, l)) if seq == l + 1 => (first, seq),
                    Some((_, l)) if seq <= l => return,
                    _ => (seq, seq),
                };
                self.catch_up.runs.insert(origin, run);
                if run.1 + 1 == h.from {
                    h.from = run.0;
                }
            }
        }
        let cost = entry_cost(&e.opts, &e.packet);
        let idx = self.catch_up.at.min(self.log.len());
        self.log.insert(
            idx,
            Entry {
                origin,
                seq,
                at,
                opts: e.opts,
                packet: e.packet,
                cost,
            },
        );
        self.catch_up.at = idx + 1;
        self.log_bytes += cost;
    }

    fn session_cost(s: &Session) -> usize {
        s.sid.len()
            + s.pid.len()
            + s.data.len()
            + s.rooms.iter().map(|r| r.len() + 4).sum::<usize>()
    }

    /// Stores a session of this node (live, or disconnected at `now`);
    /// returns what to publish, or `None` if refused.
    fn own(&mut self, now: u64, session: Session, disconnected: bool) -> Option<WireSession> {
        if Self::session_cost(&session) > self.cfg.max_session_bytes as usize {
            self.stats.sessions_refused += 1;
            return None;
        }
        let epoch = match self.sessions.get(&session.pid) {
            // Another node claimed it: this node's socket is stale.
            Some(s) if s.wire.owner != self.uid => return None,
            Some(s) => s.wire.epoch,
            None => 0,
        };
        let wire = WireSession {
            session,
            owner: self.uid,
            epoch,
            disconnected,
        };
        if !self.store(now, wire.clone()) {
            return None;
        }
        Some(wire)
    }

    /// A live socket's state (connect, room change): what to publish.
    pub fn update(&mut self, now: u64, session: Session) -> Option<WireSession> {
        self.own(now, session, false)
    }

    /// A recoverable disconnect: what to publish.
    pub fn persist(&mut self, now: u64, session: Session) -> Option<WireSession> {
        self.own(now, session, true)
    }

    /// The socket of `pid` on this node closed without persisting: returns
    /// the epoch of the drop to publish, if this node owned it live.
    pub fn closed(&mut self, pid: &str) -> Option<u64> {
        let s = self.sessions.get_mut(pid)?;
        if s.wire.owner != self.uid || s.wire.disconnected {
            return None;
        }
        if s.stale_close {
            s.stale_close = false;
            return None;
        }
        let epoch = s.wire.epoch;
        self.sessions.remove(pid);
        Some(epoch)
    }

    /// Stores a session if it is newer than the one known; true if stored.
    fn store(&mut self, now: u64, wire: WireSession) -> bool {
        let newer = match self.sessions.get(&wire.session.pid) {
            None => true,
            Some(s) => {
                wire.epoch > s.wire.epoch
                    || (wire.epoch == s.wire.epoch && wire.owner == s.wire.owner)
            }
        };
        if !newer {
            return false;
        }
        if !self.sessions.contains_key(&wire.session.pid)
            && self.sessions.len() >= self.cfg.max_sessions as usize
        {
            let oldest = self
                .sessions
                .iter()
                .filter_map(|(pid, s)| s.disconnected_at.map(|t| (t, pid.clone())))
                .min();
            match oldest {
                Some((_, pid)) => {
                    self.sessions.remove(&pid);
                }
                None => {
                    self.stats.sessions_refused += 1;
                    return false;
                }
            }
        }
        let old = self.sessions.get(&wire.session.pid);
        let stale_close = old.is_some_and(|s| s.stale_close);
        let created_at = old.map_or(now, |s| s.created_at);
        let disconnected_at = match old.and_then(|s| s.disconnected_at) {
            Some(t) if wire.disconnected => Some(t),
            _ => wire.disconnected.then_some(now),
        };
        self.sessions.insert(
            wire.session.pid.clone(),
            Stored {
                wire,
                disconnected_at,
                stale_close,
                created_at,
            },
        );
        true
    }

    /// A session from another node. Returns the sid of a local socket to
    /// close when another node claimed a session this node held live.
    pub fn remote_session(&mut self, now: u64, wire: WireSession) -> Option<String> {
        if Self::session_cost(&wire.session) > self.cfg.max_session_bytes as usize {
            self.stats.sessions_refused += 1;
            return None;
        }
        let stale = self.sessions.get(&wire.session.pid).and_then(|s| {
            (s.wire.owner == self.uid && !s.wire.disconnected && wire.owner != self.uid)
                .then(|| s.wire.session.sid.clone())
        });
        if !self.store(now, wire) {
            return None;
        }
        stale
    }

    /// A drop from another node.
    pub fn remote_drop(&mut self, from: NodeId, pid: &str, epoch: u64) {
        if self
            .sessions
            .get(pid)
            .is_some_and(|s| s.wire.owner == from && s.wire.epoch <= epoch)
        {
            self.sessions.remove(pid);
        }
    }

    /// Node `uid` is gone: its live sessions are disconnected now.
    pub fn node_gone(&mut self, now: u64, uid: NodeId) {
        for s in self.sessions.values_mut() {
            if s.wire.owner == uid && s.disconnected_at.is_none() {
                s.wire.disconnected = true;
                s.disconnected_at = Some(now);
            }
        }
    }

    /// Every session this node knows (for a node that just started).
    pub fn all_sessions(&self) -> Vec<WireSession> {
        self.sessions.values().map(|s| s.wire.clone()).collect()
    }

    /// socket.io's `restoreSession(pid, offset)`. On success the session
    /// is claimed by this node: publish the returned claim; if this node
    /// itself holds a stale socket of that pid, its sid is returned to close.
    pub fn restore(
        &mut self,
        now: u64,
        pid: &str,
        offset: &str,
    ) -> (RestoreOutcome, Option<WireSession>, Option<String>) {
        let not_found = |r: &mut Self| {
            r.stats.not_found += 1;
            (RestoreOutcome::NotFound, None, None)
        };
        let Some(client) = parse_offset(offset) else {
            self.stats.bad_offsets += 1;
            return not_found(self);
        };
        let age = self.max_age();
        let waiting = self.catching_up(now);
        let Some(stored) = self.sessions.get(pid) else {
            if waiting {
                return (RestoreOutcome::Behind, None, None);
            }
            return not_found(self);
        };
        if stored
            .disconnected_at
            .is_some_and(|t| t.saturating_add(age) <= now)
        {
            return not_found(self);
        }
        // Check the history: for every origin, this node has every entry
        // after the client's vector.
        for (origin, &v) in &client {
            match self.heads.get(origin) {
                Some(h) if v > h.last => return (RestoreOutcome::Behind, None, None),
                Some(h) if v < h.last && v.saturating_add(1) < h.from => {
                    if waiting {
                        return (RestoreOutcome::Behind, None, None);
                    }
                    return not_found(self);
                }
                Some(_) => {}
                None if v == 0 => {}
                None => return (RestoreOutcome::Behind, None, None),
            }
        }
        // An origin the client's node had not logged: its entries since the
        // session began are missed; they must all be here.
        let created_at = stored.created_at;
        for (origin, h) in &self.heads {
            if client.contains_key(origin) || h.from <= 1 {
                continue;
            }
            let first_at = self
                .log
                .iter()
                .find(|e| e.origin == *origin)
                .map_or(h.last_at, |e| e.at);
            if first_at >= created_at {
                if waiting {
                    return (RestoreOutcome::Behind, None, None);
                }
                return not_found(self);
            }
        }
        let session = stored.wire.session.clone();
        let self_stale = (stored.wire.owner == self.uid && !stored.wire.disconnected)
            .then(|| session.sid.clone());
        let epoch = stored.wire.epoch.saturating_add(1);
        // The missed entries, each stamped with the client's vector merged
        // with this node's log up to it; the last one with the whole log.
        let mut running = client.clone();
        let mut picked: Vec<(usize, BTreeMap<NodeId, u64>)> = Vec::new();
        for (i, e) in self.log.iter().enumerate() {
            let seen = running.get(&e.origin).copied();
            if seen.is_some_and(|v| e.seq <= v) || (seen.is_none() && e.at < created_at) {
                continue;
            }
            running.insert(e.origin, e.seq);
            if session_matches(&session, &e.opts) {
                picked.push((i, running.clone()));
            }
        }
        let n = picked.len();
        let mut missed = Vec::with_capacity(n);
        for (k, (i, vector)) in picked.into_iter().enumerate() {
            let vector = if k + 1 == n { running.clone() } else { vector };
            let offset = format_offset(vector.into_iter());
            let packet = &self.log[i].packet;
            missed.push(stamp(packet, &offset).unwrap_or_else(|| packet.clone()));
        }
        let claim = WireSession {
            session: session.clone(),
            owner: self.uid,
            epoch,
            disconnected: false,
        };
        self.sessions.insert(
            pid.to_string(),
            Stored {
                wire: claim.clone(),
                disconnected_at: None,
                stale_close: self_stale.is_some(),
                created_at,
            },
        );
        self.stats.restored += 1;
        (
            RestoreOutcome::Restored(session, missed),
            Some(claim),
            self_stale,
        )
    }
}

/// Bytes counted for one log entry.
fn entry_cost(opts: &Opts, packet: &[u8]) -> usize {
    ENTRY_OVERHEAD
        + packet.len()
        + opts.rooms.iter().map(String::len).sum::<usize>()
        + opts.except.iter().map(String::len).sum::<usize>()
        + opts.sid.as_ref().map_or(0, String::len)
}

/// Whether a broadcast with these options reaches a socket of this session
/// (the rule of [`crate::rooms`] applied to one socket).
pub fn session_matches(s: &Session, opts: &Opts) -> bool {
    let in_room = |r: &String| s.rooms.iter().any(|x| x == r);
    if opts.except.iter().any(in_room) {
        return false;
    }
    if opts.flags.broadcast && opts.sid.as_deref() == Some(s.sid.as_str()) {
        return false;
    }
    if !opts.rooms.is_empty() {
        return opts.rooms.iter().any(in_room);
    }
    if opts.flags.broadcast {
        return true;
    }
    opts.sid.as_deref() == Some(s.sid.as_str())
}

/// `"<origin hex>-<seq>.…"`.
pub fn format_offset(v: impl Iterator<Item = (NodeId, u64)>) -> String {
    let mut out = String::new();
    for (o, s) in v {
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(&format!("{o:016x}-{s}"));
    }
    out
}

/// Parses an offset of [`format_offset`]; `None` if it is not one.
pub fn parse_offset(s: &str) -> Option<BTreeMap<NodeId, u64>> {
    if s.len() > MAX_OFFSET_LEN {
        return None;
    }
    let mut out = BTreeMap::new();
    if s.is_empty() {
        return Some(out);
    }
    for part in s.split('.') {
        let (o, q) = part.split_once('-')?;
        if o.len() != 16 || q.is_empty() || q.len() > 20 {
            return None;
        }
        if !o.bytes().all(|b| b.is_ascii_hexdigit()) || !q.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let o = u64::from_str_radix(o, 16).ok()?;
        let q: u64 = q.parse().ok()?;
        if out.insert(o, q).is_some() {
            return None;
        }
    }
    Some(out)
}

/// The text of a packet laid out as `text-len:u32le text attachments`.
fn split_text(packet: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = packet.split_first_chunk::<4>()?;
    let len = u32::from_le_bytes(*len) as usize;
    if rest.len() < len {
        return None;
    }
    Some(rest.split_at(len))
}

/// Whether socket.io would stamp this packet: an EVENT or BINARY_EVENT
/// without ack id whose data is a JSON array.
pub fn stampable(packet: &[u8]) -> bool {
    let Some((text, _)) = split_text(packet) else {
        return false;
    };
    let mut i = match text.first() {
        Some(b'2') => 1,
        Some(b'5') => {
            let mut i = 1;
            while text.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == 1 || text.get(i) != Some(&b'-') {
                return false;
            }
            i + 1
        }
        _ => return false,
    };
    if text.get(i) == Some(&b'/') {
        while text.get(i).is_some_and(|&b| b != b',') {
            i += 1;
        }
        i += 1;
    }
    text.get(i) == Some(&b'[') && text.last() == Some(&b']') && text.len() > i + 1
}

/// Appends `offset` as the last argument of the event (before the closing
/// `]` of its JSON array); `None` if the packet is not stampable.
pub fn stamp(packet: &[u8], offset: &str) -> Option<Vec<u8>> {
    if !stampable(packet) {
        return None;
    }
    let (text, attachments) = split_text(packet)?;
    let body = &text[..text.len() - 1];
    let empty = body.last() == Some(&b'[');
    let extra = offset.len() + 3 - usize::from(empty);
    let new_len = u32::try_from(text.len() + extra).ok()?;
    let mut out = Vec::with_capacity(packet.len() + extra);
    out.extend_from_slice(&new_len.to_le_bytes());
    out.extend_from_slice(body);
    if !empty {
        out.push(b',');
    }
    out.push(b'"');
    out.extend_from_slice(offset.as_bytes());
    out.extend_from_slice(b"\"]");
    out.extend_from_slice(attachments);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(text: &str) -> Vec<u8> {
        let mut v = (text.len() as u32).to_le_bytes().to_vec();
        v.extend_from_slice(text.as_bytes());
        v
    }

    fn text(p: &[u8]) -> String {
        let (t, _) = split_text(p).unwrap();
        String::from_utf8(t.to_vec()).unwrap()
    }

    #[test]
    fn stampable_packets() {
        assert!(stampable(&pkt(r#"2["a",1]"#)));
        assert!(stampable(&pkt(r#"2/x,["a"]"#)));
        assert!(stampable(&pkt(r#"51-["a",{"_placeholder":true,"num":0}]"#)));
        assert!(stampable(&pkt(r#"51-/x,["a"]"#)));
        assert!(!stampable(&pkt(r#"212["a"]"#)), "ack id");
        assert!(!stampable(&pkt(r#"2/x,7["a"]"#)), "ack id");
        assert!(!stampable(&pkt(r#"3["a"]"#)));
        assert!(!stampable(&pkt(r#"2{"a":1}"#)));
        assert!(!stampable(b"\xff\xff\xff\xff2[]"));
        assert!(!stampable(b""));
    }

    #[test]
    fn stamp_splices_the_offset() {
        let mut p = pkt(r#"51-["a",{"_placeholder":true,"num":0}]"#);
        p.extend_from_slice(&[2, 0, 0, 0, 9, 9]);
        let s = stamp(&p, "00000000000000ab-3").unwrap();
        assert_eq!(
            text(&s),
            r#"51-["a",{"_placeholder":true,"num":0},"00000000000000ab-3"]"#
        );
        assert!(s.ends_with(&[2, 0, 0, 0, 9, 9]));
        assert_eq!(text(&stamp(&pkt("2[]"), "x").unwrap()), r#"2["x"]"#);
    }

    #[test]
    fn offsets_round_trip_and_reject_garbage() {
        let v = parse_offset("00000000000000ab-3.00000000000000cd-10").unwrap();
        assert_eq!(v.get(&0xab), Some(&3));
        assert_eq!(
            format_offset(v.into_iter()),
            "00000000000000ab-3.00000000000000cd-10"
        );
        for bad in [
            "x",
            "ab-3",
            "00000000000000ab-",
            "00000000000000ab-3.00000000000000ab-4",
            "00000000000000zz-1",
            "00000000000000ab-99999999999999999999999",
        ] {
            assert!(parse_offset(bad).is_none(), "{bad}");
        }
    }

    fn session(sid: &str, rooms: &[&str]) -> Session {
        Session {
            sid: sid.into(),
            pid: format!("pid-{sid}"),
            rooms: rooms.iter().map(|r| r.to_string()).collect(),
            data: b"{}".to_vec(),
        }
    }

    #[test]
    fn matching_rule() {
        let s = session("s1", &["s1", "r"]);
        let mut all = Opts::all();
        all.flags.broadcast = true;
        assert!(session_matches(&s, &all));
        assert!(
            !session_matches(&s, &Opts::all()),
            "no rooms, no sid, no broadcast flag"
        );
        assert!(session_matches(&s, &Opts::rooms(["r"])));
        assert!(!session_matches(&s, &Opts::rooms(["q"])));
        assert!(!session_matches(&s, &Opts::rooms(["r"]).except(["s1"])));
        let mut me = Opts::all();
        me.sid = Some("s1".into());
        assert!(session_matches(&s, &me));
        me.flags.broadcast = true;
        assert!(!session_matches(&s, &me));
    }

    /// Two nodes deliver two origins' broadcasts in different orders; a
    /// client restored on the other node gets exactly what it missed.
    #[test]
    fn interleavings_never_replay_twice() {
        let (a, b) = (0xa, 0xb);
        let mut ra = Recovery::new(a, RecoveryConfig::default());
        let mut rb = Recovery::new(b, RecoveryConfig::default());
        let mut all = Opts::all();
        all.flags.broadcast = true;
        let s = session("s1", &["s1"]);
        let w = ra.update(0, s.clone()).unwrap();
        assert!(rb.remote_session(0, w).is_none());
        // A: A1, B1, A2 ; B: B1, A1, A2.
        let a1 = ra.log(1, a, 1, &all, pkt(r#"2["a1"]"#));
        let _b1_on_a = ra.log(2, b, 1, &all, pkt(r#"2["b1"]"#));
        rb.log(1, b, 1, &all, pkt(r#"2["b1"]"#));
        rb.log(2, a, 1, &all, pkt(r#"2["a1"]"#));
        ra.log(3, a, 2, &all, pkt(r#"2["a2"]"#));
        rb.log(3, a, 2, &all, pkt(r#"2["a2"]"#));
        // The client got a1 only: B must replay b1 and a2, in B's order.
        let t = text(&a1);
        let offset = t.rsplit('"').nth(1).unwrap().to_string();
        assert_eq!(offset, "000000000000000a-1");
        let wp = ra.persist(4, s.clone()).unwrap();
        rb.remote_session(4, wp);
        let (out, claim, stale) = rb.restore(5, &s.pid, &offset);
        let RestoreOutcome::Restored(got, missed) = out else {
            panic!("{out:?}")
        };
        assert_eq!(got, s);
        assert!(stale.is_none());
        let texts: Vec<String> = missed.iter().map(|p| text(p)).collect();
        assert_eq!(
            texts,
            [
                r#"2["b1","000000000000000a-1.000000000000000b-1"]"#,
                r#"2["a2","000000000000000a-2.000000000000000b-1"]"#
            ]
        );
        let claim = claim.unwrap();
        assert_eq!(
            (claim.owner, claim.epoch, claim.disconnected),
            (b, 1, false)
        );
        // The claim makes A's live copy stale; A's late persist is ignored.
        ra.remote_session(6, claim);
        assert!(ra.persist(7, s.clone()).is_none());
        // A second restore (from B's last offset) replays nothing.
        let (out, _, stale) = rb.restore(8, &s.pid, "000000000000000a-2.000000000000000b-1");
        assert_eq!(
            stale.as_deref(),
            Some("s1"),
            "B held it live: close the stale socket"
        );
        assert_eq!(out, RestoreOutcome::Restored(s.clone(), vec![]));
        // Behind: the client saw a3 that B has not logged yet.
        let (out, _, _) = rb.restore(9, &s.pid, "000000000000000a-3.000000000000000b-1");
        assert_eq!(out, RestoreOutcome::Behind);
    }

    #[test]
    fn evicted_history_is_not_found_and_caps_hold() {
        let cfg = RecoveryConfig {
            max_log_entries: 100,
            max_log_bytes: 100 * 200,
            ..RecoveryConfig::default()
        };
        let mut r = Recovery::new(1, cfg);
        let mut all = Opts::all();
        all.flags.broadcast = true;
        let s = session("s", &["s"]);
        r.update(0, s.clone());
        r.persist(0, s.clone());
        let big = format!(r#"2["x","{}"]"#, "y".repeat(300));
        for seq in 1..=1000 {
            r.log(
                seq,
                1,
                seq,
                &all,
                pkt(if seq % 2 == 0 { &big } else { r#"2["x"]"# }),
            );
            let st = r.stats();
            assert!(st.log_entries <= 100 && st.log_bytes <= 100 * 200, "{st:?}");
        }
        let (out, _, _) = r.restore(1001, &s.pid, "0000000000000001-10");
        assert_eq!(out, RestoreOutcome::NotFound);
        // Age: everything expires, and so does the session.
        r.sweep(1000 + u64::from(DEFAULT_MAX_DISCONNECTION_MS) + 1);
        assert_eq!(r.stats().log_entries, 0);
        assert_eq!(r.stats().sessions, 0);
    }

    /// Numbers from other nodes and clients at their extremes never panic.
    #[test]
    fn extreme_numbers_from_outside() {
        let mut r = Recovery::new(1, RecoveryConfig::default());
        let mut all = Opts::all();
        all.flags.broadcast = true;
        r.log(0, 2, u64::MAX, &all, pkt(r#"2["x"]"#));
        r.log(0, 2, u64::MAX, &all, pkt(r#"2["x"]"#));
        r.log(0, 2, 1, &all, pkt(r#"2["x"]"#));
        let s = session("s", &["s"]);
        let w = WireSession {
            session: s.clone(),
            owner: 2,
            epoch: u64::MAX,
            disconnected: true,
        };
        r.remote_session(0, w);
        let max = format!("0000000000000002-{}", u64::MAX);
        assert!(matches!(
            r.restore(1, &s.pid, &max).0,
            RestoreOutcome::Restored(..)
        ));
        r.restore(1, &s.pid, "0000000000000002-0");
        r.restore(1, &s.pid, &"0000000000000002-1.".repeat(1000));
        for _ in 0..20_000 {
            r.log(2, 2, 5, &all, pkt(r#"2["x"]"#));
        }
        assert!(r.stats().log_entries <= DEFAULT_MAX_LOG_ENTRIES);
    }

    #[test]
    fn owner_gone_then_expiry() {
        let mut r = Recovery::new(
            1,
            RecoveryConfig {
                max_disconnection_ms: 1000,
                ..Default::default()
            },
        );
        let s = session("s", &["s"]);
        let w = WireSession {
            session: s.clone(),
            owner: 2,
            epoch: 0,
            disconnected: false,
        };
        r.remote_session(0, w);
        r.node_gone(100, 2);
        assert_eq!(r.next_deadline(), Some(1100));
        r.sweep(1099);
        assert!(matches!(
            r.restore(1099, &s.pid, "").0,
            RestoreOutcome::Restored(..)
        ));
        let mut r2 = Recovery::new(
            1,
            RecoveryConfig {
                max_disconnection_ms: 1000,
                ..Default::default()
            },
        );
        r2.remote_session(
            0,
            WireSession {
                session: s.clone(),
                owner: 2,
                epoch: 0,
                disconnected: true,
            },
        );
        assert_eq!(r2.restore(1000, &s.pid, "").0, RestoreOutcome::NotFound);
    }

    fn texts(out: RestoreOutcome) -> Vec<String> {
        let RestoreOutcome::Restored(_, missed) = out else {
            panic!("{out:?}")
        };
        missed.iter().map(|p| text(p)).collect()
    }

    /// A (uid 0xa) logs a1..a4 and b1..b2 for a client that saw a1; the
    /// client's node B dies; C starts after all that and restores it.
    #[test]
    fn a_node_that_starts_gets_the_history_and_restores() {
        let (a, b, c) = (0xa, 0xb, 0xc);
        let mut ra = Recovery::new(a, RecoveryConfig::default());
        let mut rc = Recovery::new(c, RecoveryConfig::default());
        let mut all = Opts::all();
        all.flags.broadcast = true;
        let s = session("s1", &["s1"]);
        ra.remote_session(
            0,
            WireSession {
                session: s.clone(),
                owner: b,
                epoch: 0,
                disconnected: false,
            },
        );
        ra.log(1, a, 1, &all, pkt(r#"2["a1"]"#));
        ra.log(2, b, 1, &all, pkt(r#"2["b1"]"#));
        ra.log(3, a, 2, &all, pkt(r#"2["a2"]"#));
        ra.log(4, b, 2, &all, pkt(r#"2["b2"]"#));
        ra.node_gone(5, b);
        ra.log(6, a, 3, &all, pkt(r#"2["a3"]"#));
        // C starts at 1000; before the history it answers Behind.
        rc.started(1000);
        for w in ra.all_sessions() {
            rc.remote_session(1000, w);
        }
        let offset = "000000000000000a-1.000000000000000b-1";
        assert_eq!(rc.restore(1001, &s.pid, offset).0, RestoreOutcome::Behind);
        // A live entry reaches C before the history: kept after it.
        rc.log(1002, a, 4, &all, pkt(r#"2["a4"]"#));
        ra.log(1002, a, 4, &all, pkt(r#"2["a4"]"#));
        let parts = ra.history(1001, 2 * (ENTRY_OVERHEAD + 16), usize::MAX);
        assert!(parts.len() > 1, "cut into parts: {}", parts.len());
        let n = parts.len();
        let mut ages = ra.session_ages(1001);
        for (i, part) in parts.into_iter().enumerate() {
            let heads = if i == 0 {
                ra.history_heads(1001)
            } else {
                vec![]
            };
            rc.absorb_history(1003, heads, part, std::mem::take(&mut ages), i + 1 == n);
        }
        assert_eq!(rc.stats().log_entries, 6, "a4 once");
        assert_eq!(
            texts(rc.restore(1004, &s.pid, offset).0),
            [
                r#"2["a2","000000000000000a-2.000000000000000b-1"]"#,
                r#"2["b2","000000000000000a-2.000000000000000b-2"]"#,
                r#"2["a3","000000000000000a-3.000000000000000b-2"]"#,
                r#"2["a4","000000000000000a-4.000000000000000b-2"]"#,
            ]
        );
        // The disconnect time came with the history: the session expires
        // 120 s after node B went (at 5 on A, i.e. 996 ms before 1001).
        let expiry = 5 + u64::from(DEFAULT_MAX_DISCONNECTION_MS) + (1003 - 1001);
        rc.sweep(expiry);
        assert_eq!(
            rc.restore(expiry, &s.pid, offset).0,
            RestoreOutcome::NotFound
        );
    }

    #[test]
    fn history_overlapping_live_entries_fills_in_without_duplicates() {
        let (a, c) = (0xa, 0xc);
        let mut ra = Recovery::new(a, RecoveryConfig::default());
        let mut rc = Recovery::new(c, RecoveryConfig::default());
        let mut all = Opts::all();
        all.flags.broadcast = true;
        let s = session("s1", &["s1"]);
        for i in 1..=5 {
            ra.log(i, a, i, &all, pkt(&format!(r#"2["a{i}"]"#)));
        }
        rc.started(10);
        // C got a4 and a5 live (from = 4), then the history a1..a5.
        rc.log(11, a, 4, &all, pkt(r#"2["a4"]"#));
        rc.log(11, a, 5, &all, pkt(r#"2["a5"]"#));
        let w = WireSession {
            session: s.clone(),
            owner: a,
            epoch: 0,
            disconnected: true,
        };
        rc.remote_session(11, w);
        // Before the history, a client that saw a1 needs a2, a3: Behind.
        let offset = "000000000000000a-1";
        assert_eq!(rc.restore(12, &s.pid, offset).0, RestoreOutcome::Behind);
        let parts = ra.history(12, usize::MAX, usize::MAX);
        assert_eq!(parts.len(), 1);
        let heads = ra.history_heads(12);
        rc.absorb_history(12, heads, parts.into_iter().next().unwrap(), vec![], true);
        let st = rc.stats();
        assert_eq!((st.log_entries, st.bad_entries), (5, 0));
        let got = texts(rc.restore(13, &s.pid, offset).0);
        let payloads: Vec<&str> = got.iter().map(|t| &t[3..5]).collect();
        assert_eq!(payloads, ["a2", "a3", "a4", "a5"]);
        // After the window (ended by `last`), history is ignored.
        rc.absorb_history(
            14,
            vec![],
            vec![HistoryEntry {
                origin: 0xd,
                seq: 1,
                age_ms: 0,
                opts: all.clone(),
                packet: pkt(r#"2["d1"]"#),
            }],
            vec![],
            true,
        );
        assert_eq!(rc.stats().log_entries, 5);
    }

    #[test]
    fn no_history_in_time_means_a_fresh_session_and_bad_entries_are_refused() {
        let (a, c) = (0xa, 0xc);
        let mut rc = Recovery::new(c, RecoveryConfig::default());
        let mut all = Opts::all();
        all.flags.broadcast = true;
        let s = session("s1", &["s1"]);
        rc.started(0);
        rc.log(1, a, 7, &all, pkt(r#"2["a7"]"#));
        rc.remote_session(
            1,
            WireSession {
                session: s.clone(),
                owner: a,
                epoch: 0,
                disconnected: true,
            },
        );
        let offset = "000000000000000a-2";
        assert_eq!(rc.restore(2, &s.pid, offset).0, RestoreOutcome::Behind);
        assert_eq!(rc.next_deadline(), Some(CATCH_UP_MS));
        rc.sweep(CATCH_UP_MS);
        assert_eq!(
            rc.restore(CATCH_UP_MS, &s.pid, offset).0,
            RestoreOutcome::NotFound
        );
        // Outside the window nothing is absorbed; inside, seq 0 is refused.
        let mut rd = Recovery::new(0xd, RecoveryConfig::default());
        rd.started(0);
        let bad = HistoryEntry {
            origin: a,
            seq: 0,
            age_ms: u64::MAX,
            opts: all.clone(),
            packet: pkt(r#"2["x"]"#),
        };
        rd.absorb_history(1, vec![], vec![bad], vec![], false);
        let st = rd.stats();
        assert_eq!((st.log_entries, st.bad_entries), (0, 1));
    }

    /// An origin whose entries all expired is still known to the joiner
    /// through the heads: an offset naming it restores, not `Behind`.
    #[test]
    fn heads_without_entries_travel_with_the_history() {
        let (a, d, c) = (0xa, 0xd, 0xc);
        let cfg = RecoveryConfig {
            max_disconnection_ms: 1000,
            ..Default::default()
        };
        let mut ra = Recovery::new(a, cfg);
        let mut rc = Recovery::new(c, cfg);
        let mut all = Opts::all();
        all.flags.broadcast = true;
        let s = session("s1", &["s1"]);
        ra.log(0, d, 1, &all, pkt(r#"2["d1"]"#));
        ra.sweep(1500);
        assert_eq!(ra.stats().log_entries, 0);
        ra.update(1500, s.clone());
        ra.log(1600, a, 1, &all, pkt(r#"2["a1"]"#));
        ra.log(1700, a, 2, &all, pkt(r#"2["a2"]"#));
        let w = ra.persist(1800, s.clone()).unwrap();
        rc.started(1900);
        rc.remote_session(1900, w);
        let parts = ra.history(1900, usize::MAX, usize::MAX);
        let heads = ra.history_heads(1900);
        assert_eq!(heads.len(), 2);
        let ages = ra.session_ages(1900);
        rc.absorb_history(1900, heads, parts.concat(), ages, true);
        let offset = "000000000000000a-1.000000000000000d-1";
        let got = texts(rc.restore(1901, &s.pid, offset).0);
        assert_eq!(got, [r#"2["a2","000000000000000a-2.000000000000000d-1"]"#]);
    }
}
