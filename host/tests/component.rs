//! The component through wasmtime: loading errors, limits (memory cap, CPU
//! bound), replacement after a trap, and garbage frames.

use proptest::prelude::*;
use sio_cluster_host::adapter::wire::{self, Envelope, Message};
use sio_cluster_host::adapter::{Config, FrameError, Opts, RoomOwner};
use sio_cluster_host::{AdapterEngine, AdapterNode, EngineOptions, Limits, NodeError, WasmNode};
use std::sync::OnceLock;

fn engine() -> &'static AdapterEngine {
    static E: OnceLock<AdapterEngine> = OnceLock::new();
    E.get_or_init(|| AdapterEngine::new().expect("embedded component"))
}

fn node(cfg: Config, limits: Limits) -> WasmNode {
    engine().instantiate(cfg, limits).expect("instance")
}

#[test]
fn bad_components_are_clear_errors() {
    let err = AdapterEngine::from_bytes(b"not wasm", EngineOptions::default())
        .err()
        .expect("refused");
    assert!(
        format!("{err:#}").contains("not a valid adapter component"),
        "{err:#}"
    );
    let err = AdapterEngine::from_file(
        std::path::Path::new("/nonexistent.wasm"),
        EngineOptions::default(),
    )
    .err()
    .expect("refused");
    assert!(
        format!("{err:#}").contains("cannot read component /nonexistent.wasm"),
        "{err:#}"
    );
    // A valid component of another world is refused too.
    let empty = wasmtime_empty_component();
    let err = AdapterEngine::from_bytes(&empty, EngineOptions::default())
        .err()
        .expect("refused");
    assert!(format!("{err:#}").contains("socketio:cluster"), "{err:#}");
}

/// The smallest valid component: the binary header alone.
fn wasmtime_empty_component() -> Vec<u8> {
    vec![0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00]
}

#[test]
fn memory_cap_traps_and_the_instance_is_replaced() {
    let mut cfg = Config::new(1, "/", RoomOwner::Component);
    cfg.max_frame_bytes = 64 << 20;
    let limits = Limits {
        memory_bytes: 4 << 20,
        ..Limits::default()
    };
    let mut n = node(cfg, limits);
    n.join("s", &["r".to_string()]).expect("join");
    let big = wire::encode(&Envelope {
        uid: 2,
        nsp: "/".into(),
        msg: Message::Broadcast {
            opts: Opts::all(),
            packet: vec![7; 8 << 20],
            ack: None,
        },
    });
    let err = n.on_frame(0, &big).expect_err("the 4 MiB cap is hit");
    assert!(matches!(err, NodeError::Trapped { .. }), "{err:?}");
    assert_eq!(n.restarts(), 1);
    // The replacement works; the host replayed the room index into it.
    assert_eq!(n.server_count(), Ok(1));
    assert_eq!(n.socket_rooms("s"), Ok(Some(vec!["r".to_string()])));
    let small = wire::encode(&Envelope {
        uid: 2,
        nsp: "/".into(),
        msg: Message::Heartbeat,
    });
    assert!(matches!(n.on_frame(0, &small), Ok(Ok(_))));
    assert_eq!(n.server_count(), Ok(2));
}

#[test]
fn cpu_bound_interrupts_a_long_call() {
    let limits = Limits {
        cpu_ticks: 2,
        ..Limits::default()
    };
    let mut n = node(Config::new(1, "/", RoomOwner::Component), limits);
    // Far more work than 20 ms in one call.
    let rooms: Vec<String> = (0..400_000).map(|i| format!("room-{i}")).collect();
    let mut trapped = None;
    for _ in 0..20 {
        if let Err(e) = n.join("s", &rooms) {
            trapped = Some(e);
            break;
        }
    }
    let err = trapped.expect("the CPU bound interrupts");
    assert!(
        matches!(&err, NodeError::Trapped { reason, .. } if reason.contains("interrupt")),
        "{err:?}"
    );
    assert!(n.restarts() >= 1);
    assert_eq!(n.server_count(), Ok(1));
}

#[test]
fn oversize_frames_are_refused_before_the_instance() {
    let mut n = node(Config::new(1, "/", RoomOwner::Host), Limits::default());
    let frame = vec![wire::VERSION; (16 << 20) + 1];
    assert_eq!(
        n.on_frame(0, &frame),
        Ok(Err(FrameError::TooLarge((16 << 20) + 1)))
    );
    assert_eq!(n.stats().map(|s| s.frames_rejected), Ok(1));
    assert_eq!(n.restarts(), 0);
}

#[test]
fn instances_are_isolated() {
    let mut a = node(Config::new(1, "/", RoomOwner::Component), Limits::default());
    let mut b = node(Config::new(2, "/", RoomOwner::Component), Limits::default());
    a.join("s", &["r".to_string()]).expect("join");
    assert_eq!(b.socket_rooms("s"), Ok(None));
    assert_eq!(a.socket_rooms("s"), Ok(Some(vec!["r".to_string()])));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Garbage and mutated frames through the component: errors, never traps.
    #[test]
    fn component_never_traps_on_bad_frames(
        garbage in prop::collection::vec(any::<u8>(), 0..128),
        flips in prop::collection::vec((any::<usize>(), any::<u8>()), 0..6),
    ) {
        static NODE: OnceLock<std::sync::Mutex<WasmNode>> = OnceLock::new();
        let cell = NODE.get_or_init(|| std::sync::Mutex::new(node(Config::new(1, "/", RoomOwner::Host), Limits::default())));
        let mut n = cell.lock().unwrap_or_else(|p| p.into_inner());
        let r = n.on_frame(0, &garbage);
        prop_assert!(r.is_ok(), "{:?}", r);
        let mut frame = wire::encode(&Envelope {
            uid: 5,
            nsp: "/".into(),
            msg: Message::FetchSockets { opts: Opts::rooms(["a"]), request_id: 1 },
        });
        for (at, x) in flips {
            let i = at % frame.len();
            frame[i] ^= x;
        }
        let r = n.on_frame(0, &frame);
        prop_assert!(r.is_ok(), "{:?}", r);
        prop_assert_eq!(n.restarts(), 0);
    }

    /// `broadcast-packed` (what the host uses) and the typed `broadcast` give
    /// the same effects and counters, whatever the options.
    #[test]
    fn packed_and_typed_broadcasts_agree(
        rooms in prop::collection::vec("[a-c]{0,2}", 0..3),
        except in prop::collection::vec("[a-c]{1,2}", 0..2),
        sid in prop::option::of("[a-z0-9]{1,8}"),
        flags in any::<(bool, bool, bool, bool)>(),
        target in prop::option::of(prop::sample::select(vec![1u64, 5, 9])),
        packet in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        static NODES: OnceLock<std::sync::Mutex<(WasmNode, WasmNode)>> = OnceLock::new();
        let cell = NODES.get_or_init(|| {
            let cfg = Config::new(1, "/", RoomOwner::Host);
            let peer = wire::encode(&Envelope { uid: 5, nsp: "/".into(), msg: Message::Heartbeat });
            let mut pair = (node(cfg.clone(), Limits::default()), node(cfg, Limits::default()));
            for n in [&mut pair.0, &mut pair.1] {
                n.on_frame(0, &peer).expect("no trap").expect("a valid heartbeat");
            }
            std::sync::Mutex::new(pair)
        });
        let mut pair = cell.lock().unwrap_or_else(|p| p.into_inner());
        let (packed, typed) = &mut *pair;
        let mut opts = Opts::rooms(rooms);
        opts.except = except;
        opts.sid = sid;
        (opts.flags.local, opts.flags.broadcast, opts.flags.volatile, opts.flags.compress) = flags;
        opts.target = target;
        let want = typed.broadcast_typed(3, opts.clone(), packet.clone());
        let got = packed.broadcast(3, opts, packet);
        prop_assert_eq!(got, want);
        prop_assert_eq!(packed.stats(), typed.stats());
        prop_assert_eq!(packed.restarts(), 0);
    }

    /// The packed export (what the host uses) and the typed export give the
    /// same effects, errors and counters on mutated batches of broadcasts.
    #[test]
    fn packed_and_typed_results_agree(
        frames in prop::collection::vec((0..3u8, prop::collection::vec((any::<usize>(), any::<u8>()), 0..2)), 1..12),
    ) {
        static NODES: OnceLock<std::sync::Mutex<(WasmNode, WasmNode)>> = OnceLock::new();
        let cell = NODES.get_or_init(|| {
            let cfg = Config::new(1, "/", RoomOwner::Host);
            std::sync::Mutex::new((node(cfg.clone(), Limits::default()), node(cfg, Limits::default())))
        });
        let mut pair = cell.lock().unwrap_or_else(|p| p.into_inner());
        let (packed, typed) = &mut *pair;
        let mut batch = Vec::new();
        for (kind, flips) in frames {
            let msg = match kind {
                0 => Message::Heartbeat,
                _ => Message::Broadcast {
                    opts: Opts::rooms(["a", "b"]).except(["c"]),
                    packet: vec![b'x'; 40],
                    ack: None,
                },
            };
            let mut frame = wire::encode(&Envelope { uid: 5 + u64::from(kind), nsp: "/".into(), msg });
            for (at, x) in flips {
                let i = at % frame.len();
                frame[i] ^= x;
            }
            wire::push_batch(&mut batch, &frame);
        }
        let want = typed.on_frames_typed(7, &batch);
        let got = packed.on_frames(7, &batch);
        prop_assert_eq!(got, want);
        prop_assert_eq!(packed.stats(), typed.stats());
        prop_assert_eq!(packed.restarts(), 0);
    }
}
