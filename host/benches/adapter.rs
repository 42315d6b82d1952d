//! The same adapter work on the native build and through wasmtime, side by
//! side, for the wasm/native ratio (target: component ≥ 0.7× native).
//!
//! `cargo bench -p sio-cluster-host --bench adapter`

use std::sync::OnceLock;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sio_cluster_host::adapter::wire::{self, Envelope, Message};
use sio_cluster_host::adapter::{Config, Node, Opts, RoomOwner};
use sio_cluster_host::{AdapterEngine, AdapterNode, Limits};

/// The allocator of the `sio-cluster-host` binary.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn engine() -> &'static AdapterEngine {
    static E: OnceLock<AdapterEngine> = OnceLock::new();
    E.get_or_init(|| AdapterEngine::new().expect("embedded component"))
}

fn nodes(rooms: RoomOwner) -> Vec<(&'static str, Box<dyn AdapterNode>)> {
    let cfg = Config::new(1, "/", rooms);
    let wasm = engine()
        .instantiate(cfg.clone(), Limits::default())
        .expect("instance");
    vec![
        ("native", Box::new(Node::new(cfg))),
        ("component", Box::new(wasm)),
    ]
}

/// 100 sockets, 10 rooms; one live peer so broadcasts are published.
fn seed(n: &mut dyn AdapterNode) {
    for i in 0..100 {
        let sid = format!("socket-{i:04}");
        n.join(&sid, &[sid.clone(), format!("room-{}", i % 10)])
            .expect("join");
    }
    let peer = wire::encode(&Envelope {
        uid: 2,
        nsp: "/".into(),
        msg: Message::Heartbeat,
    });
    n.on_frame(0, &peer).expect("no trap").expect("valid");
}

fn bench(c: &mut Criterion) {
    let packet = vec![b'x'; 100];
    let remote = wire::encode(&Envelope {
        uid: 2,
        nsp: "/".into(),
        msg: Message::Broadcast {
            opts: Opts::rooms(["room-3"]),
            packet: packet.clone(),
            ack: None,
        },
    });

    let mut g = c.benchmark_group("adapter");
    g.throughput(Throughput::Elements(1));
    // One broadcast per call, with the component keeping rooms and the host
    // keeping them (socketioxide's mode).
    for (owner, label, opts) in [
        (
            RoomOwner::Component,
            "broadcast_room_of_10",
            Opts::rooms(["room-3"]),
        ),
        (RoomOwner::Host, "broadcast_host_rooms", Opts::all()),
    ] {
        for (name, mut n) in nodes(owner) {
            seed(n.as_mut());
            g.bench_function(BenchmarkId::new(label, name), |b| {
                b.iter(|| n.broadcast(1, opts.clone(), packet.clone()).expect("ok"))
            });
        }
    }
    // A room broadcast from a socketioxide worker (host rooms): the packed
    // export (what the host uses) against the typed one.
    let to_room = Opts::rooms(["room-3"]);
    let mut typed = engine()
        .instantiate(Config::new(1, "/", RoomOwner::Host), Limits::default())
        .expect("instance");
    seed(&mut typed);
    g.bench_function(
        BenchmarkId::new("broadcast_to_room", "component_typed"),
        |b| {
            b.iter(|| {
                typed
                    .broadcast_typed(1, to_room.clone(), packet.clone())
                    .expect("ok")
            })
        },
    );
    for (name, mut n) in nodes(RoomOwner::Host) {
        seed(n.as_mut());
        g.bench_function(BenchmarkId::new("broadcast_to_room", name), |b| {
            b.iter(|| n.broadcast(1, to_room.clone(), packet.clone()).expect("ok"))
        });
    }
    for (name, mut n) in nodes(RoomOwner::Component) {
        seed(n.as_mut());
        g.bench_function(
            BenchmarkId::new("on_frame_broadcast_room_of_10", name),
            |b| b.iter(|| n.on_frame(1, &remote).expect("ok").expect("valid")),
        );
    }
    // Batches of frames in one call: native, the packed result (what the
    // host uses) and the typed result (every effect lifted).
    for frames in [1usize, 16, 64, 256] {
        let mut batch = Vec::new();
        for _ in 0..frames {
            wire::push_batch(&mut batch, &remote);
        }
        g.throughput(Throughput::Elements(frames as u64));
        let mut typed = engine()
            .instantiate(Config::new(1, "/", RoomOwner::Host), Limits::default())
            .expect("instance");
        seed(&mut typed);
        g.bench_function(
            BenchmarkId::new("on_frames_batch", format!("{frames}/component_typed")),
            |b| b.iter(|| typed.on_frames_typed(1, &batch).expect("ok")),
        );
        for (name, mut n) in nodes(RoomOwner::Host) {
            seed(n.as_mut());
            g.bench_function(
                BenchmarkId::new("on_frames_batch", format!("{frames}/{name}")),
                |b| b.iter(|| n.on_frames(1, &batch).expect("ok")),
            );
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
