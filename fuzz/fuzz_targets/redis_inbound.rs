//! The receiving side of the Redis bridge (`primary::bridge::Inbound`: what
//! a primary does with every pub/sub message, which anyone allowed to
//! publish on the cluster's channels controls byte for byte), in front of a
//! live hub, with and without a cluster key. Inputs are `arbitrary`
//! sequences of messages: raw bytes, or envelopes sealed as a primary would
//! (each kind, fresh or replayed numbers, clocks in and out of range, right,
//! wrong or missing tags, bits flipped, cut) carrying well-formed or raw
//! records (Publish, Send, NodeDown) from a handful of primaries and uids,
//! on the primary's channels or another.
//!
//! Invariants: no panic, no counter over/underflow (debug assertions on);
//! every message is counted (accepted, echo, forged, replayed or malformed)
//! and gets at most one of the verdicts accepted, echo, forged, replayed;
//! an envelope this primary should take (its channels, the right tag, a
//! fresh number, a clock in range, well-formed records) is accepted and
//! each of its records is counted received or as a uid conflict; the peer
//! table stays within its bounds.
#![no_main]

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use sio_cluster_host::link::ipc::{self, FromHub};
use sio_cluster_host::primary::bridge::envelope::{self, ClusterKey, Kind};
use sio_cluster_host::primary::bridge::peers::{MAX_PEERS, MAX_UIDS_PER_PEER};
use sio_cluster_host::primary::bridge::{BridgeConfig, BridgeStatsSnapshot, Inbound};
use sio_cluster_host::primary::hub::{Hub, HubConfig};

/// This primary's id.
const ME: u64 = 0x4d45;
const NSPS: [&str; 3] = ["/", "/chat", "/t-1"];

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Chan {
    All,
    Me,
    /// Another primary's channel, or a stranger's.
    Other(u8),
}

#[derive(Arbitrary, Debug)]
enum Rec {
    Publish {
        sender: u8,
        nsp: u8,
        frame: Vec<u8>,
    },
    Send {
        sender: u8,
        target: u8,
        nsp: u8,
        frame: Vec<u8>,
    },
    NodeDown {
        uid: u8,
        nsp: u8,
    },
    /// Any bytes as one record, length prefix included.
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Tag {
    Right,
    /// Sealed with another key.
    Wrong,
    /// Sealed without a tag.
    Missing,
}

#[derive(Arbitrary, Debug)]
enum Msg {
    Raw {
        chan: Chan,
        bytes: Vec<u8>,
    },
    Sealed {
        chan: Chan,
        kind: u8,
        /// 0 is this primary (an echo), others are peers.
        hub: u8,
        /// Added to the primary's last number (0: a replay).
        step: u8,
        /// Seconds between the sender's clock and ours.
        skew_s: i8,
        records: Vec<Rec>,
        tag: Tag,
        /// Flip one byte (index modulo the length, xor).
        flip: Option<(u16, u8)>,
        /// Cut to at most this many bytes.
        cut: Option<u16>,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    keyed: bool,
    msgs: Vec<Msg>,
}

fn keys() -> &'static (ClusterKey, ClusterKey) {
    static K: OnceLock<(ClusterKey, ClusterKey)> = OnceLock::new();
    K.get_or_init(|| {
        (
            ClusterKey::new(b"the cluster key of the fuzz target, 32+ bytes").expect("key"),
            ClusterKey::new(b"some other key, not the cluster's one at all").expect("key"),
        )
    })
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn hub_id(h: u8) -> u64 {
    if h == 0 {
        ME
    } else {
        0x1000 + u64::from(h % 8)
    }
}

/// Small uids, so that primaries claim each other's.
fn uid(u: u8) -> u64 {
    1 + u64::from(u % 16)
}

/// Appends `rec`; true when it is well formed.
fn put(out: &mut Vec<u8>, rec: &Rec) -> bool {
    match rec {
        Rec::Publish { sender, nsp, frame } => {
            ipc::put_relay(out, uid(*sender), None, NSPS[*nsp as usize % 3], frame);
            true
        }
        Rec::Send {
            sender,
            target,
            nsp,
            frame,
        } => {
            ipc::put_relay(
                out,
                uid(*sender),
                Some(uid(*target)),
                NSPS[*nsp as usize % 3],
                frame,
            );
            true
        }
        Rec::NodeDown { uid: u, nsp } => {
            let rec = FromHub::NodeDown {
                uid: uid(*u),
                nsp: NSPS[*nsp as usize % 3].to_string(),
            }
            .encode();
            out.extend_from_slice(&rec);
            true
        }
        Rec::Raw(b) => {
            out.extend_from_slice(b);
            false
        }
    }
}

fn delta(a: &BridgeStatsSnapshot, b: &BridgeStatsSnapshot) -> BridgeStatsSnapshot {
    BridgeStatsSnapshot {
        envelopes_in: b.envelopes_in - a.envelopes_in,
        records_in: b.records_in - a.records_in,
        echoes: b.echoes - a.echoes,
        forged: b.forged - a.forged,
        malformed: b.malformed - a.malformed,
        replayed: b.replayed - a.replayed,
        uid_conflicts: b.uid_conflicts - a.uid_conflicts,
        ..BridgeStatsSnapshot::default()
    }
}

fuzz_target!(|input: Input| {
    let (key, other_key) = keys();
    let hub = Hub::new(HubConfig::default(), None);
    let config = BridgeConfig::new("redis://127.0.0.1:1");
    let inbound = Inbound::new(config, input.keyed.then(|| key.clone()), hub, ME)
        .expect("default settings are valid");
    let probe = inbound.probe();
    let (all, mine) = inbound.channels();
    let (all, mine) = (all.as_bytes().to_vec(), mine.as_bytes().to_vec());
    // The last number this primary took from each peer (the model).
    let mut last: std::collections::HashMap<u64, u64> = Default::default();
    let mut next_seq: std::collections::HashMap<u64, u64> = Default::default();
    for msg in input.msgs.iter().take(64) {
        let channel = |c: Chan| match c {
            Chan::All => all.clone(),
            Chan::Me => mine.clone(),
            Chan::Other(n) => {
                format!("sio-cluster:{{default}}:hub:{:016x}", hub_id(n)).into_bytes()
            }
        };
        let before = probe.stats();
        let mut should_take: Option<usize> = None;
        let sent: &[u8];
        let env: Vec<u8>;
        match msg {
            Msg::Raw { chan, bytes } => {
                inbound.message(&channel(*chan), bytes);
                sent = bytes;
            }
            Msg::Sealed {
                chan,
                kind,
                hub,
                step,
                skew_s,
                records,
                tag,
                flip,
                cut,
            } => {
                let kind = match kind % 4 {
                    0 => Kind::Frames,
                    1 => Kind::Heartbeat,
                    2 => Kind::Leave,
                    _ => Kind::Frames,
                };
                let from = hub_id(*hub);
                let prev = *next_seq.get(&from).unwrap_or(&0);
                let seq = prev + u64::from(*step);
                next_seq.insert(from, seq.max(prev));
                let time = unix_ms().saturating_add_signed(i64::from(*skew_s) * 1000);
                let chan_bytes = channel(*chan);
                let mut body = Vec::new();
                let mut well_formed = true;
                if kind == Kind::Frames {
                    for r in records.iter().take(16) {
                        well_formed &= put(&mut body, r);
                    }
                }
                let seal_key = match (tag, input.keyed) {
                    (Tag::Right, true) => Some(key),
                    (Tag::Wrong, _) => Some(other_key),
                    (Tag::Right, false) | (Tag::Missing, _) => None,
                };
                let mut sealed =
                    envelope::seal(kind, from, seq, time, &body, seal_key, &chan_bytes);
                let mut intact = true;
                if let Some((at, x)) = flip
                    && *x != 0
                {
                    let i = *at as usize % sealed.len();
                    sealed[i] ^= x;
                    intact = false;
                }
                if let Some(n) = cut
                    && (*n as usize) < sealed.len()
                {
                    sealed.truncate(*n as usize);
                    intact = false;
                }
                let tag_ok = match (tag, input.keyed) {
                    (Tag::Right, _) => true,
                    (Tag::Missing, false) => true,
                    _ => false,
                };
                let fresh = seq > *last.get(&from).unwrap_or(&0) && seq > 0;
                let clock_ok = !input.keyed || skew_s.unsigned_abs() <= 58;
                let ours = chan_bytes == all || chan_bytes == mine;
                if intact && tag_ok && fresh && clock_ok && ours && well_formed && from != ME {
                    should_take = Some(if kind == Kind::Frames {
                        records.iter().take(16).count()
                    } else {
                        0
                    });
                }
                env = sealed;
                inbound.message(&chan_bytes, &env);
                sent = &env;
            }
        }
        let after = probe.stats();
        let d = delta(&before, &after);
        let verdicts = d.envelopes_in + d.echoes + d.forged + d.replayed;
        assert!(verdicts <= 1, "two verdicts for one message: {d:?}");
        assert!(verdicts + d.malformed >= 1, "a message not counted: {d:?}");
        // An accepted envelope's sender and number, read from the bytes
        // sent (a flipped byte may have changed them).
        if d.envelopes_in == 1 {
            let field =
                |at: usize| u64::from_le_bytes(sent[at..at + 8].try_into().expect("8 bytes"));
            let (from, seq) = (field(3), field(11));
            last.insert(from, seq);
            let n = next_seq.entry(from).or_default();
            *n = (*n).max(seq);
        }
        if let Some(n) = should_take {
            assert_eq!(d.envelopes_in, 1, "a valid envelope refused: {d:?} {msg:?}");
            assert_eq!(d.malformed, 0, "{d:?}");
            assert_eq!(
                d.records_in + d.uid_conflicts,
                n as u64,
                "every record received or a conflict: {d:?}"
            );
        }
        let (peers, uids) = probe.peers();
        assert!(peers <= MAX_PEERS && uids <= MAX_PEERS * MAX_UIDS_PER_PEER);
    }
});
