//! Sandbox limits against a deliberately misbehaving build of the component
//! (adapter feature `misbehave`): unbounded allocation, an endless loop and a
//! panic. Each is stopped, the instance is rebuilt from the host side, and
//! other instances keep serving.

#[path = "support/guest.rs"]
mod guest;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sio_cluster_host::adapter::wire::{self, Envelope, Message};
use sio_cluster_host::adapter::{Config, Effect, Opts, RequestValue, RoomOwner};
use sio_cluster_host::runtime::wasm_node::RESTARTED_ERROR;
use sio_cluster_host::{AdapterEngine, AdapterNode, EngineOptions, Limits, NodeError, WasmNode};

fn engine() -> &'static AdapterEngine {
    static E: OnceLock<AdapterEngine> = OnceLock::new();
    E.get_or_init(|| {
        AdapterEngine::from_file(guest::misbehaving_component(), EngineOptions::default())
            .expect("the misbehaving build loads")
    })
}

fn node(uid: u64, limits: Limits) -> WasmNode {
    engine()
        .instantiate(Config::new(uid, "/", RoomOwner::Component), limits)
        .expect("instance")
}

fn misbehave(n: &mut WasmNode, what: &str) -> NodeError {
    let packet = format!("\0misbehave:{what}").into_bytes();
    n.broadcast(5, Opts::all().local(), packet)
        .expect_err("the instance is stopped")
}

fn healthy(n: &mut WasmNode) {
    n.join("x", &["x".to_string()]).expect("join");
    let e = n
        .broadcast(6, Opts::rooms(["x"]).local(), b"ok".to_vec())
        .expect("works");
    assert!(
        matches!(&e[..], [Effect::Deliver(d)] if d.sids == ["x"]),
        "{e:?}"
    );
}

#[test]
fn unbounded_allocation_hits_the_memory_cap() {
    let limits = Limits {
        memory_bytes: 16 << 20,
        ..Limits::default()
    };
    let mut bad = node(1, limits);
    let mut other = node(2, limits);
    let err = misbehave(&mut bad, "alloc");
    assert!(matches!(&err, NodeError::Trapped { .. }), "{err:?}");
    assert_eq!(bad.restarts(), 1);
    healthy(&mut bad);
    healthy(&mut other);
}

#[test]
fn endless_loop_hits_the_cpu_bound() {
    let limits = Limits {
        cpu_ticks: 10, // 100 ms with the 10 ms tick
        ..Limits::default()
    };
    let mut bad = node(1, limits);
    let mut other = node(2, limits);
    let start = Instant::now();
    let err = misbehave(&mut bad, "loop");
    let took = start.elapsed();
    assert!(
        matches!(&err, NodeError::Trapped { reason, .. } if reason.contains("interrupt")),
        "{err:?}"
    );
    assert!(took < Duration::from_secs(2), "stopped after {took:?}");
    healthy(&mut bad);
    healthy(&mut other);
}

#[test]
fn endless_loop_is_stopped_after_the_ticker_parked() {
    // An engine of its own, so that other tests' calls do not keep its
    // epoch ticker awake.
    let engine = AdapterEngine::from_file(guest::misbehaving_component(), EngineOptions::default())
        .expect("the misbehaving build loads");
    let limits = Limits {
        cpu_ticks: 10,
        ..Limits::default()
    };
    let mut bad = engine
        .instantiate(Config::new(1, "/", RoomOwner::Component), limits)
        .expect("instance");
    let idle = Instant::now();
    while !engine.ticker_parked() {
        assert!(
            idle.elapsed() < Duration::from_secs(5),
            "the epoch ticker never parked while no call ran"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // In a thread, so that a loop nothing stops fails the test instead of
    // hanging it.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let start = Instant::now();
        let err = misbehave(&mut bad, "loop");
        let _ = tx.send((err, start.elapsed(), bad));
    });
    let (err, took, mut bad) = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the endless loop was not stopped within 10 s");
    assert!(
        matches!(&err, NodeError::Trapped { reason, .. } if reason.contains("interrupt")),
        "{err:?}"
    );
    assert!(took < Duration::from_secs(2), "stopped after {took:?}");
    healthy(&mut bad);
}

#[test]
fn panic_is_a_trap_not_a_crash() {
    let mut bad = node(1, Limits::default());
    let err = misbehave(&mut bad, "trap");
    assert!(matches!(&err, NodeError::Trapped { .. }), "{err:?}");
    healthy(&mut bad);
}

/// A packed result that does not decode is refused with a clear error, and
/// the instance is replaced like after a trap.
#[test]
fn malformed_packed_result_replaces_the_instance() {
    let mut bad = node(1, Limits::default());
    let mut batch = Vec::new();
    wire::push_batch(&mut batch, b"\0misbehave:packed");
    let err = bad.on_frames(5, &batch).expect_err("the result is refused");
    assert!(
        matches!(&err, NodeError::Trapped { reason, .. } if reason.contains("malformed packed result")),
        "{err:?}"
    );
    assert_eq!(bad.restarts(), 1);
    healthy(&mut bad);
}

/// After a trap the node is rebuilt from the host side: its rooms replayed,
/// its pending requests failed with a clear error, itself announced again.
#[test]
fn rebuild_replays_rooms_fails_pending_and_reannounces() {
    let mut n = node(1, Limits::default());
    n.join("a", &["a".to_string(), "room".to_string()])
        .expect("join");
    n.set_socket_info("a", b"hs".to_vec(), b"data".to_vec())
        .expect("info");
    n.init(0).expect("init");
    // A peer, so a fetch waits for it.
    let peer = wire::encode(&Envelope {
        uid: 9,
        nsp: "/".into(),
        msg: Message::Heartbeat,
    });
    n.on_frame(1, &peer).expect("no trap").expect("valid");
    let (id, _) = n.fetch_sockets(2, Opts::all(), None).expect("fetch");
    // A remote sockets-join changes the component's index.
    let join = wire::encode(&Envelope {
        uid: 9,
        nsp: "/".into(),
        msg: Message::SocketsJoin {
            opts: Opts::rooms(["a"]),
            rooms: vec!["joined".into()],
        },
    });
    n.on_frame(3, &join).expect("no trap").expect("valid");

    let NodeError::Trapped { effects, .. } = misbehave(&mut n, "trap") else {
        panic!("expected a trap");
    };
    let failed: Vec<_> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Complete(c) => Some(c.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].id, id);
    assert_eq!(failed[0].error.as_deref(), Some(RESTARTED_ERROR));
    assert_eq!(failed[0].value, RequestValue::Sockets(vec![]));
    let announced = effects.iter().any(|e| match e {
        Effect::Publish(f) => matches!(
            wire::decode(f, 1 << 20),
            Ok(Envelope {
                msg: Message::InitialHeartbeat,
                uid: 1,
                ..
            })
        ),
        _ => false,
    });
    assert!(announced, "{effects:?}");
    assert_eq!(
        n.socket_rooms("a").expect("rooms"),
        Some(vec![
            "a".to_string(),
            "room".to_string(),
            "joined".to_string()
        ])
    );
    let (id, e) = n
        .fetch_sockets(10, Opts::all().local(), None)
        .expect("fetch");
    let sockets = e.iter().find_map(|e| match e {
        Effect::Complete(c) if c.id == id => Some(c.value.clone()),
        _ => None,
    });
    match sockets {
        Some(RequestValue::Sockets(s)) => {
            assert_eq!(s.len(), 1);
            assert_eq!(
                (s[0].handshake.as_slice(), s[0].data.as_slice()),
                (&b"hs"[..], &b"data"[..])
            );
        }
        other => panic!("{other:?}"),
    }
}
