//! The seed vectors of the coverage-guided fuzz targets (`fuzz/`): a frame of
//! every message type (the same as `decoder_fuzz.rs` starts from), batches
//! of them, and the packed results a node gives for those batches (both
//! room owners). The test checks that every frame decodes and re-encodes to
//! itself and that every packed result decodes to the typed result; with
//! `SIO_FUZZ_SEEDS_DIR=DIR` it also writes them as seed files
//! (`DIR/frame_decoder/`, `DIR/packed_results/`), which `fuzz/seeds.sh`
//! does before `cargo fuzz cmin`.

use sio_cluster_adapter::wire::{self, AckRequest, Envelope, Message};
use sio_cluster_adapter::{Ack, Config, Node, Opts, RoomOwner, SocketInfo};

fn messages() -> Vec<Message> {
    let mut opts = Opts::rooms(["r", "s1"]).except(["x"]);
    opts.flags.broadcast = true;
    opts.sid = Some("s1".into());
    vec![
        Message::InitialHeartbeat,
        Message::Heartbeat,
        Message::Broadcast {
            opts: opts.clone(),
            packet: b"[\"ev\",1]".to_vec(),
            ack: None,
        },
        Message::Broadcast {
            opts: Opts::all(),
            packet: vec![0; 40],
            ack: Some(AckRequest {
                request_id: 1,
                timeout_ms: 100,
            }),
        },
        Message::SocketsJoin {
            opts: opts.clone(),
            rooms: vec!["n".into()],
        },
        Message::SocketsLeave {
            opts: opts.clone(),
            rooms: vec!["r".into()],
        },
        Message::DisconnectSockets {
            opts: opts.clone(),
            close: true,
        },
        Message::FetchSockets {
            opts: opts.clone(),
            request_id: 2,
        },
        Message::FetchSocketsResponse {
            request_id: 1,
            sockets: vec![SocketInfo {
                id: "z".into(),
                node: 7,
                rooms: vec!["r".into()],
                handshake: vec![1, 2],
                data: vec![3],
            }],
        },
        Message::ServerSideEmit {
            packet: b"[\"e\"]".to_vec(),
            request_id: Some(5),
        },
        Message::ServerSideEmitResponse {
            request_id: 2,
            packet: b"1".to_vec(),
        },
        Message::BroadcastClientCount {
            request_id: 3,
            client_count: 4,
        },
        Message::BroadcastAck {
            request_id: 3,
            ack: Ack {
                sid: "s".into(),
                payload: vec![9],
            },
        },
        Message::AdapterClose,
        Message::FetchRooms {
            opts: opts.clone(),
            request_id: 4,
        },
        Message::FetchRoomsResponse {
            request_id: 4,
            rooms: vec!["a".into()],
        },
        Message::StampedBroadcast {
            opts,
            packet: b"[\"ev\",2]".to_vec(),
            seq: 3,
        },
        Message::SessionDrop {
            pid: "p".into(),
            epoch: 1,
        },
    ]
}

fn frames() -> Vec<Vec<u8>> {
    messages()
        .into_iter()
        .map(|msg| {
            wire::encode(&Envelope {
                uid: 7,
                nsp: "/".into(),
                msg,
            })
        })
        .collect()
}

#[test]
fn seed_vectors_decode_and_packed_results_agree() {
    let dir = std::env::var_os("SIO_FUZZ_SEEDS_DIR").map(std::path::PathBuf::from);
    let write = |target: &str, name: String, bytes: &[u8]| {
        if let Some(d) = &dir {
            let d = d.join(target);
            std::fs::create_dir_all(&d).expect("seed dir");
            std::fs::write(d.join(name), bytes).expect("seed file");
        }
    };
    let frames = frames();
    for (i, f) in frames.iter().enumerate() {
        let env = wire::decode(f, u32::MAX).expect("a seed frame decodes");
        assert_eq!(&wire::encode(&env), f);
        write("frame_decoder", format!("msg-{i:02}"), f);
    }
    let mut all = Vec::new();
    for f in &frames {
        wire::push_batch(&mut all, f);
    }
    write("frame_decoder", "batch-all".into(), &all);
    for owner in [RoomOwner::Host, RoomOwner::Component] {
        let mut typed = Node::new(Config::new(1, "/", owner));
        let mut packed = Node::new(Config::new(1, "/", owner));
        let mut out = Vec::new();
        for n in [&mut typed, &mut packed] {
            n.join("s1", &["s1".to_string(), "r".to_string()]);
            let _ = n.init(0);
            let _ = n.broadcast_with_ack(0, Opts::all(), vec![1], 50, false);
        }
        for (i, chunk) in frames.chunks(3).enumerate() {
            let mut batch = Vec::new();
            for f in chunk {
                wire::push_batch(&mut batch, f);
            }
            let want = typed.on_frames(i as u64, &batch);
            packed.on_frames_packed(i as u64, &batch, &mut out);
            assert_eq!(sio_cluster_adapter::packed::decode(&out), Ok(want));
            write("packed_results", format!("{owner:?}-{i:02}"), &out);
        }
    }
}
