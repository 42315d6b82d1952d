//! What an envelope received from Redis does to the local hub.
//!
//! Called from the Redis connection's reader for each pub/sub message; it
//! never waits: frames are queued towards local workers by
//! [`crate::primary::hub::Hub::deliver_remote`], node departures by
//! [`crate::primary::hub::Hub::remote_node_down`]. Bad input (a message on
//! an unexpected channel, an envelope that does not parse or authenticate,
//! a replay, a malformed record) is dropped, counted and logged (at most
//! once a second per kind), never a panic.

use std::ops::Range;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use tracing::{info, warn};

use super::envelope::{self, Kind};
use super::peers::Refused;
use super::{MAX_SKEW, Shared, add, lock, unix_ms};
use crate::link::ipc::{CodecError, FromHub, RelayHeader};

enum Action {
    /// Records `range` of the body go to the local workers.
    Deliver(Range<usize>),
    /// These remote nodes are gone.
    Down(Vec<(u64, String)>),
}

impl Shared {
    fn bad_input(&self, what: &str, detail: &dyn std::fmt::Display) {
        if self.warn_bad.ready(self.now_ms()) {
            let s = &self.stats;
            warn!(
                what,
                %detail,
                forged = s.forged.load(Ordering::Relaxed),
                malformed = s.malformed.load(Ordering::Relaxed),
                replayed = s.replayed.load(Ordering::Relaxed),
                "redis message dropped"
            );
        }
    }

    /// Handles one pub/sub message.
    pub(crate) fn on_message(&self, channel: &[u8], msg: &[u8]) {
        if channel != self.chan_all.as_bytes() && channel != self.chan_me.as_bytes() {
            add(&self.stats.malformed, 1);
            self.bad_input("message on an unexpected channel", &"-");
            return;
        }
        let env = match envelope::open(msg, self.key.as_ref(), channel) {
            Ok(e) => e,
            Err(e) => {
                if e.is_auth() {
                    add(&self.stats.forged, 1);
                } else {
                    add(&self.stats.malformed, 1);
                }
                self.bad_input("envelope refused", &e);
                return;
            }
        };
        if env.hub == self.me {
            add(&self.stats.echoes, 1);
            self.own_echo_ms.store(self.now_ms(), Ordering::Release);
            return;
        }
        if self.key.is_some() && unix_ms().abs_diff(env.time_ms) > MAX_SKEW.as_millis() as u64 {
            add(&self.stats.replayed, 1);
            self.bad_input(
                "envelope time out of range (replay or clock skew)",
                &env.time_ms,
            );
            return;
        }
        let now = Instant::now();
        let mut actions = Vec::new();
        let joined;
        {
            let mut peers = lock(&self.peers);
            joined = match peers.seen(env.hub, env.seq, now) {
                Ok(j) => j,
                Err(Refused::Replayed) => {
                    drop(peers);
                    add(&self.stats.replayed, 1);
                    self.bad_input("envelope number already seen (replay)", &env.seq);
                    return;
                }
                Err(Refused::TooManyPeers) => {
                    drop(peers);
                    add(&self.stats.malformed, 1);
                    self.bad_input("too many primaries", &peers_limit());
                    return;
                }
            };
            add(&self.stats.envelopes_in, 1);
            match env.kind {
                Kind::Heartbeat => {}
                Kind::Leave => {
                    add(&self.stats.peers_left, 1);
                    actions.push(Action::Down(peers.remove(env.hub, now)));
                }
                Kind::Frames => {
                    let body = env.body;
                    let mut run: Option<Range<usize>> = None;
                    let flush = |run: &mut Option<Range<usize>>, actions: &mut Vec<Action>| {
                        if let Some(r) = run.take() {
                            actions.push(Action::Deliver(r));
                        }
                    };
                    let mut at = 0;
                    let mut bad: Option<CodecError> = None;
                    while at < body.len() {
                        let Some(head) = body.get(at..at + 4) else {
                            bad = Some(CodecError::Truncated);
                            break;
                        };
                        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
                        let Some(payload) = body.get(at + 4..at + 4 + len) else {
                            bad = Some(CodecError::Truncated);
                            break;
                        };
                        let end = at + 4 + len;
                        match RelayHeader::parse(payload) {
                            Ok(Some(h)) => {
                                let nsp = &payload[h.nsp.0..h.nsp.0 + h.nsp.1];
                                // Valid UTF-8: checked by `parse`.
                                let nsp = std::str::from_utf8(nsp).unwrap_or("/");
                                match peers.learn(env.hub, h.sender, nsp) {
                                    Ok(()) => {
                                        let r = run.get_or_insert(at..at);
                                        r.end = end;
                                    }
                                    Err(_) => {
                                        flush(&mut run, &mut actions);
                                        add(&self.stats.uid_conflicts, 1);
                                    }
                                }
                            }
                            Ok(None) => {
                                bad = Some(CodecError::UnknownKind(payload[0]));
                                break;
                            }
                            Err(CodecError::UnknownKind(_)) => {
                                match FromHub::decode(Bytes::copy_from_slice(payload)) {
                                    Ok(FromHub::NodeDown { uid, .. }) => {
                                        flush(&mut run, &mut actions);
                                        add(&self.stats.records_in, 1);
                                        if let Some(nsp) = peers.forget_uid(env.hub, uid) {
                                            actions.push(Action::Down(vec![(uid, nsp)]));
                                        }
                                    }
                                    Ok(_) => {
                                        bad = Some(CodecError::UnknownKind(payload[0]));
                                        break;
                                    }
                                    Err(e) => {
                                        bad = Some(e);
                                        break;
                                    }
                                }
                            }
                            Err(e) => {
                                bad = Some(e);
                                break;
                            }
                        }
                        at = end;
                    }
                    flush(&mut run, &mut actions);
                    if let Some(e) = bad {
                        add(&self.stats.malformed, 1);
                        drop(peers);
                        self.bad_input("malformed record in a batch (rest dropped)", &e);
                        self.apply(env.body, actions);
                        return;
                    }
                }
            }
        }
        if joined {
            add(&self.stats.peers_joined, 1);
            info!(
                peer = format_args!("{:016x}", env.hub),
                "remote primary joined"
            );
        }
        if env.kind == Kind::Leave {
            info!(
                peer = format_args!("{:016x}", env.hub),
                "remote primary left"
            );
        }
        self.apply(env.body, actions);
    }

    fn apply(&self, body: &[u8], actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Deliver(r) => match self.hub.deliver_remote(&body[r]) {
                    Ok(d) => {
                        add(&self.stats.records_in, d.frames);
                        add(&self.stats.uid_conflicts, d.uid_conflicts);
                    }
                    Err(e) => {
                        add(&self.stats.malformed, 1);
                        self.bad_input("batch refused by the hub", &e);
                    }
                },
                Action::Down(nodes) => self
                    .hub
                    .remote_node_down(nodes.iter().map(|(u, n)| (*u, n.as_str()))),
            }
        }
    }
}

fn peers_limit() -> usize {
    super::peers::MAX_PEERS
}
