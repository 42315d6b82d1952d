//! A live adapter node (`sio_cluster_adapter::Node`) driven by a structured
//! sequence of frames from other nodes (valid, mutated or raw), host calls
//! (broadcasts, requests, room changes, answers to the node's queries,
//! node-down, close) and the passing of time.
//!
//! Invariants:
//! * no panic (the build has debug assertions: no counter over- or underflows);
//! * every request the host started completes exactly once, never an id it
//!   did not start, and **by its deadline**: after `tick(now)`, no request
//!   whose deadline is `<= now` is still pending (the host calls `tick` when
//!   `next_deadline()` is due, which is never later than the earliest
//!   pending deadline);
//! * `stats().pending_requests` is the number of requests not completed;
//! * the typed and the packed results of a batch are the same effects
//!   (a second node fed the same calls, through `on_frames_packed`).
#![no_main]

use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use sio_cluster_adapter::recovery::RecoveryConfig;
use sio_cluster_adapter::wire::{self, AckRequest, Envelope, Message};
use sio_cluster_adapter::{
    Ack, Config, Effect, LocalOp, Node, NodeId, Opts, QueryId, RequestId, RoomOwner, SocketInfo,
};

const SELF: NodeId = 1;
const PEERS: [NodeId; 4] = [7, 8, 9, SELF];
const NAMES: [&str; 6] = ["r", "s1", "s2", "x", "", "β"];

#[derive(Arbitrary, Debug)]
struct Name(u8);
impl Name {
    fn get(&self) -> String {
        NAMES[self.0 as usize % NAMES.len()].to_string()
    }
}

#[derive(Arbitrary, Debug)]
struct FOpts {
    rooms: Vec<Name>,
    except: Vec<Name>,
    local: bool,
    broadcast: bool,
    volatile: bool,
    sid: Option<Name>,
    target: Option<u8>,
}

impl FOpts {
    fn get(&self) -> Opts {
        let mut o = Opts::rooms(self.rooms.iter().take(4).map(Name::get))
            .except(self.except.iter().take(4).map(Name::get));
        o.flags.local = self.local;
        o.flags.broadcast = self.broadcast;
        o.flags.volatile = self.volatile;
        o.sid = self.sid.as_ref().map(Name::get);
        o.target = self.target.map(|t| PEERS[t as usize % PEERS.len()]);
        o
    }
}

/// A request id in a frame: one this node started (by index) or any.
#[derive(Arbitrary, Debug)]
enum Rid {
    Started(u8),
    Any(u64),
}

#[derive(Arbitrary, Debug)]
enum FMsg {
    InitialHeartbeat,
    Heartbeat,
    Broadcast(FOpts, Vec<u8>, Option<(Rid, u16)>),
    SocketsJoin(FOpts, Vec<Name>),
    SocketsLeave(FOpts, Vec<Name>),
    Disconnect(FOpts, bool),
    FetchSockets(FOpts, u64),
    FetchSocketsResponse(Rid, Vec<(Name, Vec<Name>)>),
    ServerSideEmit(Vec<u8>, Option<u64>),
    ServerSideEmitResponse(Rid, Vec<u8>),
    ClientCount(Rid, u32),
    BroadcastAck(Rid, Name, Vec<u8>),
    AdapterClose,
    FetchRooms(FOpts, u64),
    FetchRoomsResponse(Rid, Vec<Name>),
    Stamped(FOpts, Vec<u8>, u64),
    SessionDrop(Name, u64),
}

#[derive(Arbitrary, Debug)]
struct FFrame {
    from: u8,
    other_nsp: bool,
    msg: FMsg,
    /// Flip one byte (index, xor) after encoding.
    flip: Option<(u16, u8)>,
    /// Cut the frame to this length.
    cut: Option<u16>,
}

#[derive(Arbitrary, Debug)]
enum Answer {
    AckCount(u32),
    Ack(Name, Vec<u8>),
    Sockets(Vec<Name>),
    Rooms(Vec<Name>),
    Reply(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Op {
    Advance(u16),
    Frame(FFrame),
    Raw(Vec<u8>),
    Batch(Vec<FFrame>),
    Broadcast(FOpts, Vec<u8>),
    BroadcastWithAck(FOpts, u16, bool),
    FetchSockets(FOpts, Option<u16>),
    FetchRooms(FOpts),
    ServerSideEmit(bool),
    SocketsJoin(FOpts, Vec<Name>),
    SocketsLeave(FOpts, Vec<Name>),
    Disconnect(FOpts, bool),
    Join(Name, Vec<Name>),
    Leave(Name, Name),
    LeaveAll(Name),
    Answer(u8, Answer),
    NodeDown(u8),
    Close,
    Init,
}

#[derive(Arbitrary, Debug)]
struct Input {
    component_rooms: bool,
    recovery: bool,
    request_timeout: u16,
    heartbeat_interval: u16,
    heartbeat_timeout: u16,
    ops: Vec<Op>,
}

struct Model {
    now: u64,
    started: Vec<RequestId>,
    /// Pending requests: id -> deadline.
    pending: BTreeMap<RequestId, u64>,
    queries: Vec<QueryId>,
    request_timeout: u64,
}

impl Model {
    fn rid(&self, r: &Rid) -> u64 {
        match r {
            Rid::Started(i) if !self.started.is_empty() => {
                self.started[*i as usize % self.started.len()]
            }
            Rid::Started(i) => *i as u64,
            Rid::Any(n) => *n,
        }
    }

    fn frame(&self, f: &FFrame) -> Vec<u8> {
        let opts = |o: &FOpts| o.get();
        let names = |v: &Vec<Name>| v.iter().take(4).map(Name::get).collect::<Vec<_>>();
        let msg = match &f.msg {
            FMsg::InitialHeartbeat => Message::InitialHeartbeat,
            FMsg::Heartbeat => Message::Heartbeat,
            FMsg::Broadcast(o, p, ack) => Message::Broadcast {
                opts: opts(o),
                packet: p.clone(),
                ack: ack.as_ref().map(|(r, t)| AckRequest {
                    request_id: self.rid(r),
                    timeout_ms: *t as u32,
                }),
            },
            FMsg::SocketsJoin(o, r) => Message::SocketsJoin {
                opts: opts(o),
                rooms: names(r),
            },
            FMsg::SocketsLeave(o, r) => Message::SocketsLeave {
                opts: opts(o),
                rooms: names(r),
            },
            FMsg::Disconnect(o, c) => Message::DisconnectSockets {
                opts: opts(o),
                close: *c,
            },
            FMsg::FetchSockets(o, id) => Message::FetchSockets {
                opts: opts(o),
                request_id: *id,
            },
            FMsg::FetchSocketsResponse(r, socks) => Message::FetchSocketsResponse {
                request_id: self.rid(r),
                sockets: socks
                    .iter()
                    .take(4)
                    .map(|(id, rooms)| SocketInfo {
                        id: id.get(),
                        node: PEERS[f.from as usize % PEERS.len()],
                        rooms: names(rooms),
                        handshake: vec![],
                        data: vec![],
                    })
                    .collect(),
            },
            FMsg::ServerSideEmit(p, id) => Message::ServerSideEmit {
                packet: p.clone(),
                request_id: *id,
            },
            FMsg::ServerSideEmitResponse(r, p) => Message::ServerSideEmitResponse {
                request_id: self.rid(r),
                packet: p.clone(),
            },
            FMsg::ClientCount(r, n) => Message::BroadcastClientCount {
                request_id: self.rid(r),
                client_count: *n,
            },
            FMsg::BroadcastAck(r, sid, p) => Message::BroadcastAck {
                request_id: self.rid(r),
                ack: Ack {
                    sid: sid.get(),
                    payload: p.clone(),
                },
            },
            FMsg::AdapterClose => Message::AdapterClose,
            FMsg::FetchRooms(o, id) => Message::FetchRooms {
                opts: opts(o),
                request_id: *id,
            },
            FMsg::FetchRoomsResponse(r, rooms) => Message::FetchRoomsResponse {
                request_id: self.rid(r),
                rooms: names(rooms),
            },
            FMsg::Stamped(o, p, seq) => Message::StampedBroadcast {
                opts: opts(o),
                packet: p.clone(),
                seq: *seq,
            },
            FMsg::SessionDrop(pid, epoch) => Message::SessionDrop {
                pid: pid.get(),
                epoch: *epoch,
            },
        };
        let mut bytes = wire::encode(&Envelope {
            uid: PEERS[f.from as usize % PEERS.len()],
            nsp: if f.other_nsp {
                "/other".into()
            } else {
                "/".into()
            },
            msg,
        });
        if let Some((at, x)) = f.flip
            && !bytes.is_empty()
        {
            let i = at as usize % bytes.len();
            bytes[i] ^= x;
        }
        if let Some(cut) = f.cut {
            bytes.truncate(cut as usize);
        }
        bytes
    }

    /// Records what the effects say; panics on a completion of an id that
    /// is not pending (never started, or completed before).
    fn effects(&mut self, effects: &[Effect]) {
        for e in effects {
            match e {
                Effect::Complete(c) => {
                    assert!(
                        self.pending.remove(&c.id).is_some(),
                        "completion of request {} that is not pending: {c:?}",
                        c.id
                    );
                }
                Effect::Apply(LocalOp::BroadcastWithAck(q, ..))
                | Effect::Apply(LocalOp::FetchSockets(q, _))
                | Effect::Apply(LocalOp::FetchRooms(q, _))
                | Effect::ServerEvent(_, Some(q)) => self.queries.push(*q),
                Effect::Deliver(d) => {
                    if let Some(q) = d.ack {
                        self.queries.push(q)
                    }
                }
                _ => {}
            }
        }
        if self.queries.len() > 64 {
            self.queries.drain(..32);
        }
    }

    fn start(&mut self, id: RequestId, timeout: u64, effects: &[Effect]) {
        assert!(!self.pending.contains_key(&id), "request id {id} reused");
        self.started.push(id);
        if self.started.len() > 64 {
            self.started.drain(..32);
        }
        self.pending.insert(id, self.now + timeout);
        self.effects(effects);
    }
}

/// Two nodes fed the same calls: `typed` answers batches with `on_frames`,
/// `packed` with `on_frames_packed`; their effects must agree.
struct Pair {
    typed: Node,
    packed: Node,
    out: Vec<u8>,
}

impl Pair {
    fn both<T: PartialEq + std::fmt::Debug>(&mut self, f: impl Fn(&mut Node) -> T) -> T {
        let a = f(&mut self.typed);
        let b = f(&mut self.packed);
        assert_eq!(a, b, "the two nodes diverged");
        a
    }

    fn batch(&mut self, now: u64, batch: &[u8]) -> Vec<Effect> {
        let (effects, errors) = self.typed.on_frames(now, batch);
        self.packed.on_frames_packed(now, batch, &mut self.out);
        let got = sio_cluster_adapter::packed::decode(&self.out).expect("a packed result decodes");
        assert_eq!(
            got,
            (effects.clone(), errors),
            "packed and typed results differ"
        );
        effects
    }
}

fuzz_target!(|input: Input| {
    let owner = if input.component_rooms {
        RoomOwner::Component
    } else {
        RoomOwner::Host
    };
    let mut cfg = Config::new(SELF, "/", owner);
    cfg.request_timeout_ms = 1 + input.request_timeout as u32 % 10_000;
    cfg.heartbeat_interval_ms = 1 + input.heartbeat_interval as u32 % 10_000;
    cfg.heartbeat_timeout_ms = 1 + input.heartbeat_timeout as u32 % 20_000;
    cfg.max_frame_bytes = 4096;
    let mut pair = Pair {
        typed: Node::new(cfg.clone()),
        packed: Node::new(cfg.clone()),
        out: Vec::new(),
    };
    if input.recovery {
        pair.typed.enable_recovery(RecoveryConfig::default());
        pair.packed.enable_recovery(RecoveryConfig::default());
    }
    let mut m = Model {
        now: 0,
        started: Vec::new(),
        pending: BTreeMap::new(),
        queries: Vec::new(),
        request_timeout: cfg.request_timeout_ms as u64,
    };
    for op in input.ops.iter().take(256) {
        let now = m.now;
        match op {
            Op::Advance(ms) => {
                m.now += *ms as u64;
                let now = m.now;
                let effects = pair.both(|n| n.tick(now));
                m.effects(&effects);
            }
            Op::Frame(f) => {
                let frame = m.frame(f);
                let r = pair.both(|n| n.on_frame(now, &frame));
                if let Ok(effects) = r {
                    m.effects(&effects);
                }
            }
            Op::Raw(bytes) => {
                let r = pair.both(|n| n.on_frame(now, bytes));
                if let Ok(effects) = r {
                    m.effects(&effects);
                }
            }
            Op::Batch(frames) => {
                let mut batch = Vec::new();
                for f in frames.iter().take(8) {
                    wire::push_batch(&mut batch, &m.frame(f));
                }
                let effects = pair.batch(now, &batch);
                m.effects(&effects);
            }
            Op::Broadcast(o, p) => {
                let effects = pair.both(|n| n.broadcast(now, o.get(), p.clone()));
                m.effects(&effects);
            }
            Op::BroadcastWithAck(o, t, streamed) => {
                let t = *t as u32;
                let (id, effects) =
                    pair.both(|n| n.broadcast_with_ack(now, o.get(), vec![1], t, *streamed));
                m.start(id, t as u64, &effects);
            }
            Op::FetchSockets(o, t) => {
                let t = t.map(|t| t as u32);
                let (id, effects) = pair.both(|n| n.fetch_sockets(now, o.get(), t));
                let timeout = t.map_or(m.request_timeout, |t| t as u64);
                m.start(id, timeout, &effects);
            }
            Op::FetchRooms(o) => {
                let (id, effects) = pair.both(|n| n.fetch_rooms(now, o.get()));
                let timeout = m.request_timeout;
                m.start(id, timeout, &effects);
            }
            Op::ServerSideEmit(replies) => {
                let (id, effects) =
                    pair.both(|n| n.server_side_emit(now, b"[\"e\"]".to_vec(), *replies));
                match id {
                    Some(id) => {
                        let timeout = m.request_timeout;
                        m.start(id, timeout, &effects)
                    }
                    None => m.effects(&effects),
                }
            }
            Op::SocketsJoin(o, r) => {
                let rooms: Vec<String> = r.iter().take(4).map(Name::get).collect();
                let effects = pair.both(|n| n.sockets_join(now, o.get(), rooms.clone()));
                m.effects(&effects);
            }
            Op::SocketsLeave(o, r) => {
                let rooms: Vec<String> = r.iter().take(4).map(Name::get).collect();
                let effects = pair.both(|n| n.sockets_leave(now, o.get(), rooms.clone()));
                m.effects(&effects);
            }
            Op::Disconnect(o, c) => {
                let effects = pair.both(|n| n.disconnect_sockets(now, o.get(), *c));
                m.effects(&effects);
            }
            Op::Join(sid, rooms) => {
                let rooms: Vec<String> = rooms.iter().take(4).map(Name::get).collect();
                pair.both(|n| n.join(&sid.get(), &rooms));
            }
            Op::Leave(sid, room) => pair.both(|n| n.leave(&sid.get(), &room.get())),
            Op::LeaveAll(sid) => pair.both(|n| n.leave_all(&sid.get())),
            Op::Answer(i, a) => {
                if m.queries.is_empty() {
                    continue;
                }
                let q = m.queries[*i as usize % m.queries.len()];
                let effects = pair.both(|n| match a {
                    Answer::AckCount(c) => n.ack_count(now, q, *c),
                    Answer::Ack(sid, p) => n.ack(
                        now,
                        q,
                        Ack {
                            sid: sid.get(),
                            payload: p.clone(),
                        },
                    ),
                    Answer::Sockets(ids) => n.sockets_reply(
                        now,
                        q,
                        ids.iter()
                            .take(4)
                            .map(|id| SocketInfo {
                                id: id.get(),
                                node: SELF,
                                rooms: vec![],
                                handshake: vec![],
                                data: vec![],
                            })
                            .collect(),
                    ),
                    Answer::Rooms(r) => {
                        n.rooms_reply(now, q, r.iter().take(4).map(Name::get).collect())
                    }
                    Answer::Reply(p) => n.reply(now, q, p.clone()),
                });
                m.effects(&effects);
            }
            Op::NodeDown(i) => {
                let uid = PEERS[*i as usize % PEERS.len()];
                let effects = pair.both(|n| n.node_down(now, uid));
                m.effects(&effects);
            }
            Op::Close => {
                let effects = pair.both(|n| n.close(now));
                m.effects(&effects);
            }
            Op::Init => {
                let effects = pair.both(|n| n.init(now));
                m.effects(&effects);
            }
        }
        // Settled by the deadline: what tick(now) leaves pending is not due.
        let now = m.now;
        let effects = pair.both(|n| n.tick(now));
        m.effects(&effects);
        if let Some((id, deadline)) = m.pending.iter().find(|(_, d)| **d <= now) {
            panic!("request {id} still pending at {now}, its deadline was {deadline}");
        }
        if let Some(&earliest) = m.pending.values().min() {
            let next = pair.typed.next_deadline();
            assert!(
                next.is_some_and(|d| d <= earliest),
                "next_deadline {next:?} is after the earliest pending deadline {earliest}"
            );
        }
        let stats = pair.typed.stats();
        assert_eq!(
            stats.pending_requests as usize,
            m.pending.len(),
            "pending_requests count"
        );
        assert_eq!(stats, pair.packed.stats());
    }
});
