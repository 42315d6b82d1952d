//! An in-process cluster for the adapter tests: N nodes on an in-memory bus,
//! a simulated host per node (its clients, its rooms when the host owns them,
//! its server-side-event handler) and a log of everything that happened.
//!
//! The same scenario runs on the native build and on the component; the two
//! logs must be equal (parity).

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::OnceLock;

use sio_cluster_host::adapter::rooms::RoomIndex;
use sio_cluster_host::adapter::{
    Ack, Completion, Config, Effect, LocalOp, Node, NodeId, Opts, QueryId, RoomOwner, SocketInfo,
};
use sio_cluster_host::{AdapterEngine, AdapterNode, Limits, WasmNode};

/// Which build runs the nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Build {
    Native,
    Wasm,
}

/// A node of either build.
pub enum AnyNode {
    Native(Box<Node>),
    Wasm(Box<WasmNode>),
}

impl AnyNode {
    pub fn get(&mut self) -> &mut dyn AdapterNode {
        match self {
            AnyNode::Native(n) => n.as_mut(),
            AnyNode::Wasm(n) => n.as_mut(),
        }
    }
}

/// One engine for every test of the process (compiling costs ~50 ms).
pub fn engine() -> &'static AdapterEngine {
    static ENGINE: OnceLock<AdapterEngine> = OnceLock::new();
    ENGINE.get_or_init(|| AdapterEngine::new().expect("the embedded component loads"))
}

pub fn make_node(build: Build, cfg: Config) -> AnyNode {
    match build {
        Build::Native => AnyNode::Native(Box::new(Node::new(cfg))),
        Build::Wasm => AnyNode::Wasm(Box::new(
            engine()
                .instantiate(cfg, Limits::default())
                .expect("instantiate"),
        )),
    }
}

/// Deterministic node ids.
pub fn uid_of(i: usize) -> NodeId {
    0x1000_0000_0000_0000 + i as u64 * 0x0101
}

enum Work {
    Frame(usize, Vec<u8>),
    AckCount(usize, QueryId, u32),
    Ack(usize, QueryId, Ack),
    Reply(usize, QueryId, Vec<u8>),
    SocketsReply(usize, QueryId, Vec<SocketInfo>),
    RoomsReply(usize, QueryId, Vec<String>),
}

/// What a node's local clients and server saw, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seen {
    Packet(String, Vec<u8>),
    Disconnect(String, bool),
    ServerEvent(Vec<u8>),
}

pub struct Sim {
    pub build: Build,
    pub mode: RoomOwner,
    pub nodes: Vec<AnyNode>,
    pub uids: Vec<NodeId>,
    pub nsps: Vec<String>,
    pub now: u64,
    /// Every effect and every answer, for the parity comparison.
    pub log: Vec<String>,
    /// Per node: what its clients and server saw.
    pub seen: Vec<Vec<Seen>>,
    pub completions: Vec<Vec<Completion>>,
    /// Host-owned rooms (mode Host).
    host_rooms: Vec<RoomIndex>,
    /// What each client answers to a packet expecting an ack (absent: silent).
    pub client_acks: BTreeMap<String, Vec<u8>>,
    /// What each node answers to a server-side event (absent: silent).
    pub server_replies: BTreeMap<usize, Vec<u8>>,
    /// Nodes whose frames are lost both ways and that are not ticked (crashed).
    pub down: BTreeSet<usize>,
    queue: VecDeque<Work>,
}

impl Sim {
    /// `n` nodes on namespace "/", initialised at t=0.
    pub fn new(build: Build, mode: RoomOwner, n: usize) -> Sim {
        Self::with_nsps(build, mode, &vec!["/"; n])
    }

    pub fn with_nsps(build: Build, mode: RoomOwner, nsps: &[&str]) -> Sim {
        let mut sim = Sim {
            build,
            mode,
            nodes: Vec::new(),
            uids: Vec::new(),
            nsps: Vec::new(),
            now: 0,
            log: Vec::new(),
            seen: Vec::new(),
            completions: Vec::new(),
            host_rooms: Vec::new(),
            client_acks: BTreeMap::new(),
            server_replies: BTreeMap::new(),
            down: BTreeSet::new(),
            queue: VecDeque::new(),
        };
        for nsp in nsps {
            sim.add_node(nsp);
        }
        for i in 0..sim.nodes.len() {
            sim.call(i, |n, now| n.init(now));
        }
        sim
    }

    /// Adds a node (not initialised).
    pub fn add_node(&mut self, nsp: &str) -> usize {
        let i = self.nodes.len();
        let cfg = Config::new(uid_of(i), nsp, self.mode);
        self.nodes.push(make_node(self.build, cfg));
        self.uids.push(uid_of(i));
        self.nsps.push(nsp.to_string());
        self.seen.push(Vec::new());
        self.completions.push(Vec::new());
        self.host_rooms.push(RoomIndex::new());
        i
    }

    pub fn node(&mut self, i: usize) -> &mut dyn AdapterNode {
        self.nodes[i].get()
    }

    fn index_of(&self, uid: NodeId) -> Option<usize> {
        self.uids.iter().position(|&u| u == uid)
    }

    /// A client connects to node `i`: socket `sid`, in its own room and `rooms`.
    pub fn connect(&mut self, i: usize, sid: &str, rooms: &[&str]) {
        let mut all = vec![sid.to_string()];
        all.extend(rooms.iter().map(|r| r.to_string()));
        self.join(i, sid, &all.iter().map(String::as_str).collect::<Vec<_>>());
        let handshake = format!("{{\"url\":\"/socket.io/?sid={sid}\"}}").into_bytes();
        self.set_info(i, sid, handshake, b"null".to_vec());
    }

    /// A local `socket.join(rooms)`.
    pub fn join(&mut self, i: usize, sid: &str, rooms: &[&str]) {
        let rooms: Vec<String> = rooms.iter().map(|r| r.to_string()).collect();
        match self.mode {
            RoomOwner::Host => self.host_rooms[i].add_all(sid, &rooms),
            RoomOwner::Component => self.node(i).join(sid, &rooms).expect("join"),
        }
    }

    pub fn set_info(&mut self, i: usize, sid: &str, handshake: Vec<u8>, data: Vec<u8>) {
        match self.mode {
            RoomOwner::Host => self.host_rooms[i].set_info(sid, handshake, data),
            RoomOwner::Component => self
                .node(i)
                .set_socket_info(sid, handshake, data)
                .expect("set info"),
        }
    }

    /// The rooms of a local socket, from whoever owns rooms.
    pub fn rooms_of(&mut self, i: usize, sid: &str) -> Vec<String> {
        let rooms = match self.mode {
            RoomOwner::Host => self.host_rooms[i].socket_rooms(sid),
            RoomOwner::Component => self.node(i).socket_rooms(sid).expect("socket rooms"),
        };
        let rooms = rooms.unwrap_or_default();
        self.log.push(format!("rooms {i} {sid} {rooms:?}"));
        rooms
    }

    pub fn server_count(&mut self, i: usize) -> u32 {
        let n = self.node(i).server_count().expect("server count");
        self.log.push(format!("server_count {i} {n}"));
        n
    }

    /// Calls node `i` and carries out the effects, then everything they cause.
    pub fn call(
        &mut self,
        i: usize,
        f: impl FnOnce(&mut dyn AdapterNode, u64) -> Result<Vec<Effect>, sio_cluster_host::NodeError>,
    ) {
        let now = self.now;
        let effects = f(self.node(i), now).expect("adapter call");
        self.effects(i, effects);
        self.pump();
    }

    /// Like [`Sim::call`] for calls that return a request id.
    pub fn request(
        &mut self,
        i: usize,
        f: impl FnOnce(
            &mut dyn AdapterNode,
            u64,
        ) -> Result<(u64, Vec<Effect>), sio_cluster_host::NodeError>,
    ) -> u64 {
        let now = self.now;
        let (id, effects) = f(self.node(i), now).expect("adapter call");
        self.log.push(format!("request {i} -> {id}"));
        self.effects(i, effects);
        self.pump();
        id
    }

    /// Moves time forward in 1 ms... steps of `step` and ticks every live node.
    pub fn advance(&mut self, ms: u64) {
        let end = self.now + ms;
        while self.now < end {
            // Jump to the next deadline of any live node, or the end.
            let mut next = end;
            for i in 0..self.nodes.len() {
                if self.down.contains(&i) {
                    continue;
                }
                if let Some(d) = self.node(i).next_deadline().expect("deadline") {
                    next = next.min(d.max(self.now + 1));
                }
            }
            self.now = next;
            for i in 0..self.nodes.len() {
                if !self.down.contains(&i) {
                    self.call(i, |n, now| n.tick(now));
                }
            }
        }
    }

    /// The completion of request `id` on node `i`, if it finished.
    pub fn completion(&self, i: usize, id: u64) -> Option<&Completion> {
        self.completions[i].iter().find(|c| c.id == id)
    }

    pub fn packets(&self, i: usize) -> Vec<(String, Vec<u8>)> {
        self.seen[i]
            .iter()
            .filter_map(|s| match s {
                Seen::Packet(sid, p) => Some((sid.clone(), p.clone())),
                _ => None,
            })
            .collect()
    }

    pub fn events(&self, i: usize) -> Vec<Vec<u8>> {
        self.seen[i]
            .iter()
            .filter_map(|s| match s {
                Seen::ServerEvent(p) => Some(p.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn clear_seen(&mut self) {
        for s in &mut self.seen {
            s.clear();
        }
    }

    fn effects(&mut self, i: usize, effects: Vec<Effect>) {
        for e in effects {
            self.log.push(format!("{i}: {e:?}"));
            self.effect(i, e);
        }
    }

    fn effect(&mut self, i: usize, e: Effect) {
        match e {
            Effect::Publish(frame) => {
                if self.down.contains(&i) {
                    return;
                }
                for j in 0..self.nodes.len() {
                    if j != i && !self.down.contains(&j) {
                        self.queue.push_back(Work::Frame(j, frame.clone()));
                    }
                }
            }
            Effect::Send(uid, frame) => {
                if let Some(j) = self.index_of(uid)
                    && !self.down.contains(&i)
                    && !self.down.contains(&j)
                {
                    self.queue.push_back(Work::Frame(j, frame));
                }
            }
            Effect::Apply(op) => self.apply(i, op),
            Effect::Deliver(d) => {
                for sid in &d.sids {
                    self.seen[i].push(Seen::Packet(sid.clone(), d.packet.clone()));
                }
                if let Some(q) = d.ack {
                    for sid in d.sids {
                        if let Some(answer) = self.client_acks.get(&sid) {
                            let ack = Ack {
                                sid,
                                payload: answer.clone(),
                            };
                            self.queue.push_back(Work::Ack(i, q, ack));
                        }
                    }
                }
            }
            Effect::Disconnect(sids, close) => {
                for sid in sids {
                    self.seen[i].push(Seen::Disconnect(sid, close));
                }
            }
            Effect::ServerEvent(p, q) => {
                self.seen[i].push(Seen::ServerEvent(p));
                if let (Some(q), Some(answer)) = (q, self.server_replies.get(&i)) {
                    self.queue.push_back(Work::Reply(i, q, answer.clone()));
                }
            }
            Effect::Complete(c) => self.completions[i].push(c),
            Effect::RoomsChanged { .. }
            | Effect::AckReceived(..)
            | Effect::NodeUp(_)
            | Effect::NodeDown(_) => {}
        }
    }

    /// The simulated host's local work (host-owned rooms).
    fn apply(&mut self, i: usize, op: LocalOp) {
        match op {
            LocalOp::Broadcast(opts, packet) => {
                for sid in self.host_rooms[i].matching(&opts) {
                    self.seen[i].push(Seen::Packet(sid, packet.clone()));
                }
            }
            LocalOp::BroadcastWithAck(q, opts, packet, _timeout_ms) => {
                let sids = self.host_rooms[i].matching(&opts);
                for sid in &sids {
                    self.seen[i].push(Seen::Packet(sid.clone(), packet.clone()));
                }
                self.queue
                    .push_back(Work::AckCount(i, q, sids.len() as u32));
                for sid in sids {
                    if let Some(answer) = self.client_acks.get(&sid) {
                        let ack = Ack {
                            sid,
                            payload: answer.clone(),
                        };
                        self.queue.push_back(Work::Ack(i, q, ack));
                    }
                }
            }
            LocalOp::Join(opts, rooms) => {
                for sid in self.host_rooms[i].matching(&opts) {
                    self.host_rooms[i].add_all(&sid, &rooms);
                }
            }
            LocalOp::Leave(opts, rooms) => {
                for sid in self.host_rooms[i].matching(&opts) {
                    for room in &rooms {
                        self.host_rooms[i].del(&sid, room);
                    }
                }
            }
            LocalOp::Disconnect(opts, close) => {
                for sid in self.host_rooms[i].matching(&opts) {
                    self.seen[i].push(Seen::Disconnect(sid, close));
                }
            }
            LocalOp::FetchSockets(q, opts) => {
                let uid = self.uids[i];
                let infos = self.host_rooms[i].infos(&opts, uid);
                self.queue.push_back(Work::SocketsReply(i, q, infos));
            }
            LocalOp::FetchRooms(q, opts) => {
                let rooms = self.host_rooms[i].rooms_of(&opts);
                self.queue.push_back(Work::RoomsReply(i, q, rooms));
            }
        }
    }

    /// Delivers queued frames and host answers until nothing is left.
    pub fn pump(&mut self) {
        while let Some(work) = self.queue.pop_front() {
            let now = self.now;
            let (i, effects) = match work {
                Work::Frame(j, frame) => {
                    if self.down.contains(&j) {
                        continue;
                    }
                    match self.node(j).on_frame(now, &frame).expect("on_frame") {
                        Ok(e) => (j, e),
                        Err(err) => panic!("a valid frame was refused: {err}"),
                    }
                }
                Work::AckCount(j, q, n) => {
                    (j, self.node(j).ack_count(now, q, n).expect("ack count"))
                }
                Work::Ack(j, q, a) => (j, self.node(j).ack(now, q, a).expect("ack")),
                Work::Reply(j, q, p) => (j, self.node(j).reply(now, q, p).expect("reply")),
                Work::SocketsReply(j, q, s) => (
                    j,
                    self.node(j)
                        .sockets_reply(now, q, s)
                        .expect("sockets reply"),
                ),
                Work::RoomsReply(j, q, r) => {
                    (j, self.node(j).rooms_reply(now, q, r).expect("rooms reply"))
                }
            };
            self.effects(i, effects);
        }
    }
}

/// Opts for every socket, as `io.emit` builds them.
pub fn all() -> Opts {
    Opts::all()
}

/// Opts for the given rooms.
pub fn to(rooms: &[&str]) -> Opts {
    Opts::rooms(rooms.iter().copied())
}
