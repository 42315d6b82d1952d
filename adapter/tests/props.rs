//! Property tests: the room index against a simple model, and the frame
//! decoder on arbitrary and mutated input.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use sio_cluster_adapter::packed;
use sio_cluster_adapter::rooms::RoomIndex;
use sio_cluster_adapter::wire::{self, Envelope, Message};
use sio_cluster_adapter::{Ack, Config, FrameError, Node, Opts, RoomOwner, SocketInfo};

#[derive(Clone, Debug)]
enum Op {
    Add(u8, Vec<u8>),
    Del(u8, u8),
    DelAll(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..6u8, prop::collection::vec(0..5u8, 0..4)).prop_map(|(s, r)| Op::Add(s, r)),
        (0..6u8, 0..5u8).prop_map(|(s, r)| Op::Del(s, r)),
        (0..6u8).prop_map(Op::DelAll),
    ]
}

fn sid(n: u8) -> String {
    format!("s{n}")
}
fn room(n: u8) -> String {
    format!("r{n}")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// After any sequence of joins and leaves, the index agrees with a model
    /// and matching returns each expected socket exactly once.
    #[test]
    fn room_index_matches_model(
        ops in prop::collection::vec(op(), 0..60),
        rooms in prop::collection::vec(0..5u8, 0..3),
        except in prop::collection::vec(0..5u8, 0..2),
    ) {
        let mut index = RoomIndex::new();
        let mut model: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for op in &ops {
            match op {
                Op::Add(s, rs) => {
                    let rs: Vec<String> = rs.iter().map(|&r| room(r)).collect();
                    index.add_all(&sid(*s), &rs);
                    model.entry(sid(*s)).or_default().extend(rs);
                }
                Op::Del(s, r) => {
                    index.del(&sid(*s), &room(*r));
                    if let Some(set) = model.get_mut(&sid(*s)) {
                        set.remove(&room(*r));
                    }
                }
                Op::DelAll(s) => {
                    index.del_all(&sid(*s));
                    model.remove(&sid(*s));
                }
            }
        }
        for (s, rs) in &model {
            let got: BTreeSet<String> = index.socket_rooms(s).unwrap_or_default().into_iter().collect();
            prop_assert_eq!(&got, rs);
        }
        let non_empty: BTreeSet<&String> = model.values().flatten().collect();
        prop_assert_eq!(index.room_count(), non_empty.len());
        prop_assert_eq!(index.socket_count(), model.len());

        let opts = Opts::rooms(rooms.iter().map(|&r| room(r))).except(except.iter().map(|&r| room(r)));
        let got = index.matching(&opts);
        let unique: BTreeSet<&String> = got.iter().collect();
        prop_assert_eq!(unique.len(), got.len(), "no duplicate delivery");
        let expected: BTreeSet<&String> = model
            .iter()
            .filter(|(_, rs)| opts.rooms.is_empty() || opts.rooms.iter().any(|r| rs.contains(r)))
            .filter(|(_, rs)| !opts.except.iter().any(|r| rs.contains(r)))
            .map(|(s, _)| s)
            .collect();
        prop_assert_eq!(unique, expected);
    }

    /// Arbitrary bytes never panic the decoder.
    #[test]
    fn decoder_total_on_garbage(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = wire::decode(&bytes, 1 << 20);
    }

    /// Encoding then decoding gives the envelope back; any truncation is an error.
    #[test]
    fn roundtrip_and_truncation(
        uid in any::<u64>(),
        nsp in "/[a-z]{0,8}",
        packet in prop::collection::vec(any::<u8>(), 0..64),
        req in any::<u64>(),
        rooms in prop::collection::vec("[a-z0-9]{0,6}", 0..4),
        kind in 0..6u8,
    ) {
        let msg = match kind {
            0 => Message::Broadcast { opts: Opts::rooms(rooms.clone()), packet: packet.clone(), ack: None },
            1 => Message::SocketsJoin { opts: Opts::all(), rooms: rooms.clone() },
            2 => Message::FetchSocketsResponse {
                request_id: req,
                sockets: vec![SocketInfo { id: "a".into(), node: uid, rooms: rooms.clone(), handshake: packet.clone(), data: vec![] }],
            },
            3 => Message::BroadcastAck { request_id: req, ack: Ack { sid: "x".into(), payload: packet.clone() } },
            4 => Message::ServerSideEmit { packet: packet.clone(), request_id: Some(req) },
            _ => Message::AdapterClose,
        };
        let env = Envelope { uid, nsp, msg };
        let frame = wire::encode(&env);
        prop_assert_eq!(wire::decode(&frame, 1 << 20), Ok(env));
        for cut in 0..frame.len() {
            prop_assert!(wire::decode(&frame[..cut], 1 << 20).is_err());
        }
        prop_assert_eq!(wire::decode(&frame, frame.len() as u32 - 1), Err(FrameError::TooLarge(frame.len() as u32)));
    }

    /// Mutated valid frames never panic a node, and it keeps working.
    #[test]
    fn node_survives_mutated_frames(
        seeds in prop::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        kind in 0..4u8,
    ) {
        let mut node = Node::new(Config::new(1, "/", RoomOwner::Component));
        node.join("a", &["a".to_string(), "r".to_string()]);
        let _ = node.init(0);
        let msg = match kind {
            0 => Message::FetchSockets { opts: Opts::rooms(["r"]), request_id: 3 },
            1 => Message::BroadcastClientCount { request_id: 1, client_count: 2 },
            2 => Message::SocketsLeave { opts: Opts::all(), rooms: vec!["r".into()] },
            _ => Message::InitialHeartbeat,
        };
        let mut frame = wire::encode(&Envelope { uid: 9, nsp: "/".into(), msg });
        for (at, byte) in seeds {
            let i = at % frame.len();
            frame[i] ^= byte;
        }
        let _ = node.on_frame(1, &frame);
        let heartbeat = wire::encode(&Envelope { uid: 9, nsp: "/".into(), msg: Message::Heartbeat });
        let ok = node.on_frame(2, &heartbeat).is_ok();
        prop_assert!(ok);
    }

    /// `broadcast_packed` (written straight from the caller's bytes when it
    /// can) gives the bytes and the stats the general path gives, for any
    /// options, packet, node uid and namespace, with either room owner.
    #[test]
    fn broadcast_packed_matches_the_general_path(
        uid in prop_oneof![Just(1u64), any::<u64>()],
        nsp in prop_oneof![Just("/".to_string()), "/[a-zé]{0,200}"],
        rooms in prop::collection::vec("[a-z0-9β]{0,12}", 0..3),
        except in prop::collection::vec("[a-z]{0,5}", 0..2),
        flags in any::<(bool, bool, bool, bool)>(),
        sid in prop::option::of("[A-Za-z0-9_-]{0,20}"),
        target in prop::option::of(prop_oneof![Just(1u64), any::<u64>()]),
        packet in prop::collection::vec(any::<u8>(), 0..400),
        host_rooms in any::<bool>(),
        closed in any::<bool>(),
    ) {
        let mut opts = Opts::rooms(rooms).except(except);
        (opts.flags.local, opts.flags.broadcast, opts.flags.volatile, opts.flags.compress) = flags;
        opts.sid = sid;
        opts.target = target;
        let owner = if host_rooms { RoomOwner::Host } else { RoomOwner::Component };
        let fresh = || {
            let mut n = Node::new(Config::new(uid, nsp.clone(), owner));
            n.join("s1", &["s1".to_string(), "r".to_string()]);
            let _ = n.init(0);
            if closed {
                let _ = n.close(1);
            }
            n
        };
        let (mut fast, mut general) = (fresh(), fresh());
        let mut got = Vec::new();
        let bytes = packed::encode_opts(&opts);
        prop_assert_eq!(fast.broadcast_packed(5, &bytes, packet.clone(), &mut got), Ok(()));
        let mut want = Vec::new();
        packed::start(&mut want);
        packed::push_effects(&mut want, &general.broadcast(5, opts.clone(), packet.clone()));
        prop_assert_eq!(&got, &want);
        // The host's decode that reuses its own options and packet agrees.
        prop_assert_eq!(packed::decode_broadcast(&got, &bytes, (opts, packet)), packed::decode(&got));
        prop_assert_eq!(fast.stats(), general.stats());
        // Malformed options are refused, the result left empty of effects.
        let mut longer = bytes.clone();
        longer.push(0);
        prop_assert!(fast.broadcast_packed(6, &longer, vec![1], &mut got).is_err());
        prop_assert!(fast.broadcast_packed(6, &bytes[..bytes.len() - 1], vec![1], &mut got).is_err());
    }
}
