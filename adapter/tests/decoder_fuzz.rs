//! Bulk robustness run: random and mutated frames into the decoder and into a
//! live node (component-owned rooms, with requests in flight). No input may
//! panic. `SIO_FUZZ_FRAMES` sets the count (default 200 000; the README gives
//! the 1 M command).

use sio_cluster_adapter::wire::{self, AckRequest, Envelope, Message};
use sio_cluster_adapter::{Ack, Config, Node, Opts, RoomOwner, SocketInfo};

/// xorshift64*: a tiny deterministic generator, so a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn corpus() -> Vec<Vec<u8>> {
    let opts = Opts::rooms(["r", "s1"]).except(["x"]);
    let msgs = vec![
        Message::InitialHeartbeat,
        Message::Heartbeat,
        Message::Broadcast {
            opts: opts.clone(),
            packet: b"[\"ev\",1]".to_vec(),
            ack: None,
        },
        Message::Broadcast {
            opts: opts.clone(),
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
            opts,
            request_id: 4,
        },
        Message::FetchRoomsResponse {
            request_id: 4,
            rooms: vec!["a".into()],
        },
    ];
    msgs.into_iter()
        .map(|msg| {
            wire::encode(&Envelope {
                uid: 7,
                nsp: "/".into(),
                msg,
            })
        })
        .collect()
}

fn mutate(rng: &mut Rng, base: &[u8]) -> Vec<u8> {
    let mut f = base.to_vec();
    match rng.below(6) {
        0 => {
            // Pure noise.
            let len = rng.below(96);
            f = (0..len).map(|_| rng.next() as u8).collect();
        }
        1 => f.truncate(rng.below(f.len() + 1)),
        2 => {
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(f.len());
                f[i] ^= 1 << rng.below(8);
            }
        }
        3 => {
            let i = rng.below(f.len());
            f[i] = [0x00, 0x7f, 0x80, 0xff][rng.below(4)];
        }
        4 => {
            let i = rng.below(f.len() + 1);
            let extra: Vec<u8> = (0..1 + rng.below(8)).map(|_| rng.next() as u8).collect();
            f.splice(i..i, extra);
        }
        _ => {
            // Huge varint lengths in the middle.
            let i = rng.below(f.len());
            f.splice(i..i, [0xff, 0xff, 0xff, 0xff, 0x0f]);
        }
    }
    f
}

#[test]
fn random_and_mutated_frames_never_panic() {
    let count: usize = std::env::var("SIO_FUZZ_FRAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let corpus = corpus();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut node = Node::new(Config::new(1, "/", RoomOwner::Component));
    node.join("s1", &["s1".to_string(), "r".to_string()]);
    let _ = node.init(0);
    let (mut accepted, mut refused) = (0u64, 0u64);
    for i in 0..count {
        if i % 1000 == 0 {
            // Keep requests in flight so responses have something to hit.
            let _ = node.fetch_sockets(i as u64, Opts::all(), Some(50));
            let _ = node.broadcast_with_ack(i as u64, Opts::all(), vec![1], 50, false);
            let _ = node.tick(i as u64);
        }
        let base = &corpus[rng.below(corpus.len())];
        let frame = mutate(&mut rng, base);
        match node.on_frame(i as u64, &frame) {
            Ok(_) => accepted += 1,
            Err(_) => refused += 1,
        }
    }
    let stats = node.stats();
    assert_eq!(accepted + refused, count as u64);
    assert_eq!(stats.frames_rejected, refused);
    // The node still answers after all of it.
    let (_, effects) = node.fetch_sockets(count as u64, Opts::all().local(), None);
    assert!(!effects.is_empty() || node.stats().pending_requests == 0);
    println!("fuzzed {count} frames: {accepted} accepted, {refused} refused, 0 panics");
}

/// `on_frames_packed` (in-place hot path included) gives exactly what
/// `on_frames` gives, on batches of valid and mutated frames, for both room
/// owners. `SIO_FUZZ_FRAMES` / 4 batches (default 50 000).
#[test]
fn packed_results_equal_typed_results() {
    let batches: usize = std::env::var("SIO_FUZZ_FRAMES")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .map_or(50_000, |n| n / 4);
    let mut corpus = corpus();
    // More broadcasts without acks (the in-place path), from other senders
    // and namespaces too.
    for (uid, nsp) in [(7, "/"), (8, "/"), (1, "/"), (9, "/other")] {
        corpus.push(wire::encode(&Envelope {
            uid,
            nsp: nsp.into(),
            msg: Message::Broadcast {
                opts: Opts::rooms(["r"]).except(["x"]),
                packet: vec![b'p'; 64],
                ack: None,
            },
        }));
    }
    for owner in [RoomOwner::Host, RoomOwner::Component] {
        let mut rng = Rng(0x51ed_270b_1c2a_9e03);
        let mut typed = Node::new(Config::new(1, "/", owner));
        let mut packed = Node::new(Config::new(1, "/", owner));
        for n in [&mut typed, &mut packed] {
            n.join("s1", &["s1".to_string(), "r".to_string()]);
            let _ = n.init(0);
        }
        let mut out = Vec::new();
        let mut in_place = 0u64;
        for i in 0..batches {
            let now = i as u64 * 10;
            if i % 500 == 0 {
                for n in [&mut typed, &mut packed] {
                    let _ = n.broadcast_with_ack(now, Opts::all(), vec![1], 50, false);
                    let _ = n.tick(now);
                }
            }
            let mut batch = Vec::new();
            for _ in 0..1 + rng.below(8) {
                let base = &corpus[rng.below(corpus.len())];
                let frame = if rng.below(3) == 0 {
                    mutate(&mut rng, base)
                } else {
                    base.clone()
                };
                wire::push_batch(&mut batch, &frame);
            }
            if rng.below(50) == 0 {
                batch.truncate(rng.below(batch.len() + 1));
            }
            let want = typed.on_frames(now, &batch);
            packed.on_frames_packed(now, &batch, &mut out);
            let got = sio_cluster_adapter::packed::decode(&out).expect("packed result decodes");
            assert_eq!(got, want, "batch {i}");
            in_place += want
                .0
                .iter()
                .filter(|e| matches!(e, sio_cluster_adapter::Effect::Apply(_)))
                .count() as u64;
        }
        assert_eq!(typed.stats(), packed.stats());
        println!("{owner:?}: {batches} batches equal ({in_place} apply effects)");
    }
}
