//! The upstream suites, ported: `socket.io-adapter/test/cluster-adapter.ts`
//! (27 cases, numbered as in the research notes §6.2) and the in-memory
//! adapter cases (§6.3), plus what upstream lacks (fast leave, decoder errors,
//! fetch-rooms, streamed acks).
//!
//! Every scenario runs four times: native build and component, with rooms
//! kept by the host and by the component. Each run checks the scenario's
//! assertions, and the native and component logs must be identical.

mod sim;

use sim::{Build, Seen, Sim, all, to, uid_of};
use sio_cluster_host::adapter::{
    ACK_TIMEOUT_ERROR, CLOSED_ERROR, FrameError, Opts, RequestValue, RoomOwner, wire,
};

type Scenario = fn(Build, RoomOwner) -> Sim;

fn check(scenario: Scenario) {
    for mode in [RoomOwner::Component, RoomOwner::Host] {
        let native = scenario(Build::Native, mode);
        let wasm = scenario(Build::Wasm, mode);
        assert!(!native.log.is_empty(), "the scenario logged nothing");
        if native.log != wasm.log {
            let at = native
                .log
                .iter()
                .zip(&wasm.log)
                .position(|(a, b)| a != b)
                .unwrap_or(native.log.len().min(wasm.log.len()));
            panic!(
                "{mode:?}: native and component differ at entry {at}:\n native: {:?}\n wasm:   {:?}",
                native.log.get(at),
                wasm.log.get(at)
            );
        }
    }
}

macro_rules! parity {
    ($($name:ident),* $(,)?) => {
        mod parity {
            $( #[test] fn $name() { super::check(super::$name) } )*
        }
    };
}

parity!(
    c01_broadcast_all,
    c02_broadcast_namespace,
    c03_broadcast_room,
    c04_broadcast_except,
    c05_broadcast_local,
    c06_local_even_when_bus_fails,
    c07_acks,
    c08_acks_binary,
    c09_acks_no_client,
    c10_acks_timeout,
    c11_single_ack_local,
    c12_single_ack_remote,
    c13_join_all,
    c14_join_matching,
    c15_join_one,
    c16_leave_all,
    c17_leave_matching,
    c18_leave_one,
    c19_disconnect_all,
    c20_packet_before_disconnect,
    c21_fetch_all,
    c22_fetch_one,
    c23_fetch_local,
    c24_server_side_emit,
    c25_server_side_emit_replies,
    c26_server_side_emit_timeout,
    c27_server_side_emit_node_leaves,
    m01_room_index,
    m02_except_and_rooms,
    x01_heartbeat_and_sweep,
    x02_initial_heartbeat_learns_peers,
    x03_fast_leave_mid_fetch,
    x04_fetch_timeout,
    x05_bad_frames,
    x06_fetch_rooms,
    x07_batch,
    x08_ack_node_dies,
    x09_close_fails_pending,
    x10_streamed_acks,
    x11_broadcast_flag_excludes_sender,
    x12_remote_ack_queries_expire,
);

/// Upstream setup: three nodes, one client each (`s0`, `s1`, `s2`).
fn three(build: Build, mode: RoomOwner) -> Sim {
    let mut s = Sim::new(build, mode, 3);
    for i in 0..3 {
        s.connect(i, &format!("s{i}"), &[]);
    }
    s
}

fn receivers(s: &Sim, packet: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..s.nodes.len() {
        for (sid, p) in s.packets(i) {
            if p == packet {
                out.push(sid);
            }
        }
    }
    out.sort();
    out
}

fn c01_broadcast_all(b: Build, m: RoomOwner) -> Sim {
    let mut s = three(b, m);
    let packet = b"[\"test\",1,\"2\",{\"_placeholder\":true,\"num\":0}]\x00\x03\x04".to_vec();
    s.call(0, |n, t| n.broadcast(t, all(), packet.clone()));
    assert_eq!(receivers(&s, &packet), ["s0", "s1", "s2"]);
    s
}

fn c02_broadcast_namespace(b: Build, m: RoomOwner) -> Sim {
    let mut s = Sim::with_nsps(b, m, &["/", "/", "/", "/custom", "/custom", "/custom"]);
    for i in 0..6 {
        s.connect(i, &format!("s{i}"), &[]);
    }
    for i in 0..6 {
        assert_eq!(s.server_count(i), 3, "other namespaces do not count");
    }
    s.call(3, |n, t| n.broadcast(t, all(), b"custom".to_vec()));
    assert_eq!(receivers(&s, b"custom"), ["s3", "s4", "s5"]);
    for i in 3..6 {
        s.call(i, |n, t| n.close(t));
    }
    assert_eq!(s.server_count(0), 3);
    s
}

fn c03_broadcast_room(b: Build, m: RoomOwner) -> Sim {
    let mut s = three(b, m);
    s.join(1, "s1", &["room1"]);
    s.call(0, |n, t| n.broadcast(t, to(&["room1"]), b"test".to_vec()));
    assert_eq!(receivers(&s, b"test"), ["s1"]);
    s
}

fn c04_broadcast_except(b: Build, m: RoomOwner) -> Sim {
    let mut s = three(b, m);
    s.join(1, "s1", &["room1"]);
    s.call(0, |n, t| {
        n.broadcast(t, all().except(["room1"]), b"test".to_vec())
    });
    assert_eq!(receivers(&s, b"test"), ["s0", "s2"]);
    s
}

fn c05_broadcast_local(b: Build, m: RoomOwner) -> Sim {
    let mut s = three(b, m);
    s.call(0, |n, t| {
        let e = n.broadcast(t, all().local(), b"test".to_vec())?;
        assert!(
            !e.iter()
                .any(|e| matches!(e, sio_cluster_host::adapter::Effect::Publish(_)))
        );
        Ok(e)
    });
    assert_eq!(receivers(&s, b"test"), ["s0"]);
    s
}

/// Upstream: "broadcasts to local clients even when publishAndReturnOffset
/// throws". Publishing is an effect here; the bus of node 0 is cut instead.
fn c06_local_even_when_bus_fails(b: Build, m: RoomOwner) -> Sim {
    let mut s = three(b, m);
    s.down.insert(1);
    s.down.insert(2);
    s.call(0, |n, t| n.broadcast(t, all(), b"test".to_vec()));
    assert_eq!(receivers(&s, b"test"), ["s0"]);
    s
}

fn acks_scenario(b: Build, m: RoomOwner, answers: [Option<&[u8]>; 3], timeout: u32) -> (Sim, u64) {
    let mut s = three(b, m);
    for (i, a) in answers.iter().enumerate() {
        if let Some(a) = a {
            s.client_acks.insert(format!("s{i}"), a.to_vec());
        }
    }
    let id = s.request(0, |n, t| {
        n.broadcast_with_ack(t, all(), b"test".to_vec(), timeout, false)
    });
    (s, id)
}

fn ack_payloads(s: &Sim, i: usize, id: u64) -> Vec<Vec<u8>> {
    match &s.completion(i, id).expect("completed").value {
        RequestValue::Acks(a) => {
            let mut v: Vec<Vec<u8>> = a.iter().map(|a| a.payload.clone()).collect();
            v.sort();
            v
        }
        other => panic!("unexpected value {other:?}"),
    }
}

fn c07_acks(b: Build, m: RoomOwner) -> Sim {
    let (mut s, id) = acks_scenario(b, m, [Some(b"1"), Some(b"2"), Some(b"3")], 50);
    let c = s.completion(0, id).expect("completes without waiting");
    assert_eq!(c.error, None);
    assert_eq!(ack_payloads(&s, 0, id), [b"1", b"2", b"3"]);
    s.advance(50);
    for i in 0..3 {
        let st = s.node(i).stats().expect("stats");
        assert_eq!(
            (st.pending_requests, st.pending_queries),
            (0, 0),
            "node {i}"
        );
    }
    s
}

fn c08_acks_binary(b: Build, m: RoomOwner) -> Sim {
    let (s, id) = acks_scenario(b, m, [Some(&[0xff, 0]), Some(&[1]), Some(&[2, 0x80])], 500);
    assert_eq!(s.completion(0, id).map(|c| c.error.clone()), Some(None));
    assert_eq!(
        ack_payloads(&s, 0, id),
        [vec![1], vec![2, 0x80], vec![0xff, 0]]
    );
    s
}

fn c09_acks_no_client(b: Build, m: RoomOwner) -> Sim {
    let mut s = three(b, m);
    let id = s.request(0, |n, t| {
        n.broadcast_with_ack(t, to(&["abc"]), b"test".to_vec(), 500, false)
    });
    let c = s.completion(0, id).expect("completes at once");
    assert_eq!(c.error, None);
    assert_eq!(c.value, RequestValue::Acks(vec![]));
    s
}

fn c10_acks_timeout(b: Build, m: RoomOwner) -> Sim {
    let (mut s, id) = acks_scenario(b, m, [Some(b"1"), Some(b"2"), None], 50);
    assert!(s.completion(0, id).is_none());
    s.advance(49);
    assert!(s.completion(0, id).is_none(), "not before the timeout");
    s.advance(1);
    let c = s.completion(0, id).expect("times out");
    assert_eq!(c.error.as_deref(), Some(ACK_TIMEOUT_ERROR));
    assert_eq!(ack_payloads(&s, 0, id), [b"1", b"2"]);
    s
}

fn c11_single_ack_local(b: Build, m: RoomOwner) -> Sim {
    let mut s = three(b, m);
    s.client_acks.insert("s1".into(), b"2".to_vec());
    let opts = Opts {
        sid: Some("s1".into()),
        target: Some(uid_of(1)),
        ..Opts::default()
    };
    let id = s.request(1, |n, t| {
        n.broadcast_with_ack(t, opts, b"test".to_vec(), 500, false)
    });
    assert_eq!(receivers(&s, b"test"), ["s1"]);
    assert_eq!(ack_payloads(&s, 1, id), [b"2"]);
    s
}

fn c12_single_ack_remote(b: Build, m: RoomOwner) -> Sim {
    let mut s = three(b, m);
    s.client_acks.insert("s1".into(), b"2".to_vec());
    let id = s.request(0, |n, t| n.fetch_sockets(t, to(&["s1"]), None));
    let sockets = match &s.completion(0, id).expect("fetched").value {
        RequestValue::Sockets(v) => v.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(sockets.len(), 1);
    assert_eq!(sockets[0].node, uid_of(1));
    // RemoteSocket.emitWithAck: the socket's room on its node only.
    let opts = Opts {
        target: Some(sockets[0].node),
        ..to(&["s1"])
    };
    let id = s.request(0, |n, t| {
        n.broadcast_with_ack(t, opts, b"test".to_vec(), 500, false)
    });
    assert_eq!(receivers(&s, b"test"), ["s1"]);
    assert_eq!(s.completion(0, id).map(|c| c.error.clone()), Some(None));
    assert_eq!(ack_payloads(&s, 0, id), [b"2"]);
    s
}

fn has_room(s: &mut Sim, i: usize, room: &str) -> bool {
    let sid = format!("s{i}");
    s.rooms_of(i, &sid).iter().any(|r| r == room)
}

fn c13_join_all(b: Build, m: RoomOwner) -> Sim {
    let mut s = three(b, m);
    s.call(0, |n, t| n.sockets_join(t, all(), vec!["room1".into()]));
    for i in 0..3 {
        assert!(has_room(&mut s, i, "room1"), "socket {i}");
    }
    s
}

fn c14_join_matching(b: Build, m: RoomOwner) -> Sim {
    let mut s = three(b, m);
    s.join(0, "s0", &["room1"]);
    s.join(2, "s2", &["room1"]);
    s.call(0, |n, t| {
        n.sockets_join(t, to(&["room1"]), vec!["room2".into()])
    });
    assert!(has_room(&mut s, 0, "room2"));
    assert!(!has_room(&mut s, 1, "room2"));
    assert!(has_room(&mut s, 2, "room2"));
    s
}

fn c15_join_one(b: Build, m: RoomOwner) -> Sim {
    let mut s = three(b, m);
    s.call(0, |n, t| {
        n.sockets_join(t, to(&["s1"]), vec!["room3".into()])
    });
    assert!(!has_room(&mut s, 0, "room3"));
    assert!(has_room(&mut s, 1, "room3"));
    assert!(!has_room(&mut s, 2, "room3"));
    s
}

fn c16_leave_all(b: Build, m: RoomOwner) -> Sim {
    let mut s = three(b, m);
    s.join(0, "s0", &["room1"]);
    s.join(2, "s2", &["room1"]);
    s.call(0, |n, t| n.sockets_leave(t, all(), vec!["room1".into()]));
    for i in 0..3 {
        assert!(!has_room(&mut s, i, "room1"));
    }
    s
}

fn c17_leave_matching(b: Build, m: RoomOwner) -> Sim {
    let mut s = three(b, m);
    s.join(0, "s0", &["room1", "room2"]);
    s.join(1, "s1", &["room1", "room2"]);
    s.join(2, "s2", &["room2"]);
    s.call(0, |n, t| {
        n.sockets_leave(t, to(&["room1"]), vec!["room2".into()])
    });
    assert!(!has_room(&mut s, 0, "room2"));
    assert!(!has_room(&mut s, 1, "room2"));
    assert!(has_room(&mut s, 2, "room2"));
    s
}

fn c18_leave_one(b: Build, m: RoomOwner) -> Sim {
    let mut s = three(b, m);
    for i in 0..3 {
        s.join(i, &format!("s{i}"), &["room3"]);
    }
    s.call(0, |n, t| {
        n.sockets_leave(t, to(&["s1"]), vec!["room3".into()])
    });
    assert!(has_room(&mut s, 0, "room3"));
    assert!(!has_room(&mut s, 1, "room3"));
    assert!(has_room(&mut s, 2, "room3"));
    s
}

fn c19_disconnect_all(b: Build, m: RoomOwner) -> Sim {
    let mut s = three(b, m);
    s.call(0, |n, t| n.disconnect_sockets(t, all(), true));
    for i in 0..3 {
        assert_eq!(s.seen[i], [Seen::Disconnect(format!("s{i}"), true)]);
    }
    s
}

fn c20_packet_before_disconnect(b: Build, m: RoomOwner) -> Sim {
    let mut s = three(b, m);
    s.call(0, |n, t| n.broadcast(t, all(), b"bye".to_vec()));
    s.call(0, |n, t| n.disconnect_sockets(t, all(), true));
    for i in 0..3 {
        let sid = format!("s{i}");
        assert_eq!(
            s.seen[i],
            [
                Seen::Packet(sid.clone(), b"bye".to_vec()),
                Seen::Disconnect(sid, true)
            ]
        );
    }
    s
}

fn fetched(s: &Sim, i: usize, id: u64) -> Vec<sio_cluster_host::adapter::SocketInfo> {
    match &s.completion(i, id).expect("completed").value {
        RequestValue::Sockets(v) => v.clone(),
        other => panic!("{other:?}"),
    }
}

fn c21_fetch_all(b: Build, m: RoomOwner) -> Sim {
    let mut s = three(b, m);
    let id = s.request(0, |n, t| n.fetch_sockets(t, all(), None));
    assert_eq!(s.completion(0, id).map(|c| c.error.clone()), Some(None));
    let mut ids: Vec<String> = fetched(&s, 0, id).into_iter().map(|s| s.id).collect();
    ids.sort();
    assert_eq!(ids, ["s0", "s1", "s2"]);
    assert_eq!(s.node(0).stats().expect("stats").pending_requests, 0);
    s
}

fn c22_fetch_one(b: Build, m: RoomOwner) -> Sim {
    let mut s = three(b, m);
    let handshake =
        b"{\"headers\":{\"x\":\"1\"},\"time\":\"t\",\"query\":{\"EIO\":\"4\"}}".to_vec();
    s.set_info(1, "s1", handshake.clone(), b"\"test\"".to_vec());
    let id = s.request(0, |n, t| n.fetch_sockets(t, to(&["s1"]), None));
    let v = fetched(&s, 0, id);
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].id, "s1");
    assert_eq!(v[0].handshake, handshake);
    assert_eq!(v[0].data, b"\"test\"");
    assert_eq!(v[0].rooms, ["s1"]);
    s
}

fn c23_fetch_local(b: Build, m: RoomOwner) -> Sim {
    let mut s = three(b, m);
    let id = s.request(0, |n, t| n.fetch_sockets(t, all().local(), None));
    let v = fetched(&s, 0, id);
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].id, "s0");
    s
}

fn c24_server_side_emit(b: Build, m: RoomOwner) -> Sim {
    let mut s = three(b, m);
    let packet = b"[\"hello\",\"world\",1,\"2\"]".to_vec();
    s.call(0, |n, t| {
        n.server_side_emit(t, packet.clone(), false).map(|(id, e)| {
            assert_eq!(id, None);
            e
        })
    });
    assert!(s.events(0).is_empty(), "not the sender");
    assert_eq!(s.events(1), std::slice::from_ref(&packet));
    assert_eq!(s.events(2), [packet]);
    s
}

fn sse_request(s: &mut Sim) -> u64 {
    s.request(0, |n, t| {
        n.server_side_emit(t, b"[\"hello with ack\"]".to_vec(), true)
            .map(|(id, e)| (id.expect("a request id"), e))
    })
}

fn replies(s: &Sim, id: u64) -> Vec<Vec<u8>> {
    match &s.completion(0, id).expect("completed").value {
        RequestValue::Replies(r) => {
            let mut r = r.clone();
            r.sort();
            r
        }
        other => panic!("{other:?}"),
    }
}

fn c25_server_side_emit_replies(b: Build, m: RoomOwner) -> Sim {
    let mut s = three(b, m);
    s.server_replies.insert(1, b"2".to_vec());
    s.server_replies.insert(2, b"\"3\"".to_vec());
    let id = sse_request(&mut s);
    assert_eq!(s.completion(0, id).map(|c| c.error.clone()), Some(None));
    assert_eq!(replies(&s, id), [b"\"3\"".to_vec(), b"2".to_vec()]);
    s
}

fn c26_server_side_emit_timeout(b: Build, m: RoomOwner) -> Sim {
    let mut s = three(b, m);
    s.server_replies.insert(1, b"2".to_vec());
    let id = sse_request(&mut s);
    s.advance(4999);
    assert!(s.completion(0, id).is_none());
    s.advance(1);
    let c = s.completion(0, id).expect("times out at 5 s");
    assert_eq!(
        c.error.as_deref(),
        Some("timeout reached: missing 1 responses")
    );
    assert_eq!(replies(&s, id), [b"2".to_vec()]);
    s
}

fn c27_server_side_emit_node_leaves(b: Build, m: RoomOwner) -> Sim {
    let mut s = three(b, m);
    s.server_replies.insert(1, b"2".to_vec());
    let id = sse_request(&mut s);
    assert!(s.completion(0, id).is_none());
    // Node 2's handler closes its adapter instead of answering.
    s.call(2, |n, t| n.close(t));
    let c = s.completion(0, id).expect("completes when the node leaves");
    assert_eq!(c.error, None);
    assert_eq!(replies(&s, id), [b"2".to_vec()]);
    assert_eq!(s.server_count(0), 2);
    s
}

/// In-memory adapter cases 1-3 and 7 through the node API.
fn m01_room_index(b: Build, m: RoomOwner) -> Sim {
    let mut s = Sim::new(b, m, 1);
    s.join(0, "s1", &["r1", "r2"]);
    s.join(0, "s2", &["r2", "r3"]);
    s.join(0, "s3", &["r3"]);
    let id = s.request(0, |n, t| n.fetch_sockets(t, all(), None));
    assert_eq!(fetched(&s, 0, id).len(), 3);
    let id = s.request(0, |n, t| n.fetch_sockets(t, to(&["r2"]), None));
    assert_eq!(fetched(&s, 0, id).len(), 2);
    let id = s.request(0, |n, t| n.fetch_sockets(t, to(&["r4"]), None));
    assert_eq!(fetched(&s, 0, id).len(), 0);
    assert_eq!(s.rooms_of(0, "s2").len(), 2);
    assert!(s.rooms_of(0, "unknown").is_empty());
    if m == RoomOwner::Component {
        s.node(0).leave("s1", "r1").expect("leave");
        s.node(0).leave("s1", "r1").expect("leave twice");
        s.node(0).leave_all("s2").expect("leave all");
        assert_eq!(s.node(0).socket_rooms("s2").expect("rooms"), None);
        assert_eq!(s.node(0).sockets(to(&["r3"])).expect("sockets"), ["s3"]);
        assert_eq!(s.node(0).stats().expect("stats").rooms, 2);
        s.log.push("component index checked".into());
    }
    s
}

/// In-memory adapter cases 4, 5 and 7 (except with rooms).
fn m02_except_and_rooms(b: Build, m: RoomOwner) -> Sim {
    let mut s = Sim::new(b, m, 1);
    s.join(0, "s1", &["r1"]);
    s.join(0, "s2", &[]);
    s.join(0, "s3", &["r1", "r2"]);
    s.call(0, |n, t| {
        n.broadcast(t, all().except(["r1"]), b"123".to_vec())
    });
    assert_eq!(receivers(&s, b"123"), ["s2"]);
    s.call(0, |n, t| {
        n.broadcast(t, to(&["r1"]).except(["r2"]), vec![0xde, 0xad])
    });
    assert_eq!(receivers(&s, &[0xde, 0xad]), ["s1"]);
    let id = s.request(0, |n, t| {
        n.fetch_sockets(t, to(&["r1"]).except(["r2"]), None)
    });
    assert_eq!(
        fetched(&s, 0, id)
            .iter()
            .map(|x| x.id.as_str())
            .collect::<Vec<_>>(),
        ["s1"]
    );
    s
}

fn x01_heartbeat_and_sweep(b: Build, m: RoomOwner) -> Sim {
    let mut s = three(b, m);
    assert_eq!(s.server_count(0), 3);
    // Idle nodes heartbeat every 5 s and stay alive.
    s.advance(30_000);
    assert_eq!(s.server_count(0), 3);
    assert!(s.log.iter().filter(|l| l.contains("Publish")).count() >= 3 * 6);
    // Node 2 crashes silently: dropped after the 10 s timeout.
    s.down.insert(2);
    let crashed_at = s.now;
    s.advance(10_000);
    assert_eq!(s.server_count(0), 3, "not before the timeout");
    s.advance(5_001);
    assert_eq!(s.server_count(0), 2);
    assert_eq!(s.server_count(1), 2);
    assert!(s.now - crashed_at <= 15_001);
    s
}

fn x02_initial_heartbeat_learns_peers(b: Build, m: RoomOwner) -> Sim {
    let mut s = three(b, m);
    let i = s.add_node("/");
    assert_eq!(s.server_count(i), 1);
    s.call(i, |n, t| n.init(t));
    assert_eq!(
        s.server_count(i),
        4,
        "every peer answered the initial heartbeat"
    );
    assert_eq!(s.server_count(0), 4);
    s
}

fn x03_fast_leave_mid_fetch(b: Build, m: RoomOwner) -> Sim {
    let mut s = three(b, m);
    s.down.insert(2);
    let id = s.request(0, |n, t| n.fetch_sockets(t, all(), None));
    assert!(s.completion(0, id).is_none());
    s.advance(10);
    // The hub reports node 2's process gone: no 5 s wait.
    let uid = uid_of(2);
    s.call(0, |n, t| n.node_down(t, uid));
    let c = s.completion(0, id).expect("completes at once");
    assert_eq!(c.error, None);
    assert_eq!(fetched(&s, 0, id).len(), 2);
    assert_eq!(s.server_count(0), 2);
    s
}

fn x04_fetch_timeout(b: Build, m: RoomOwner) -> Sim {
    let mut s = three(b, m);
    s.down.insert(2);
    let id = s.request(0, |n, t| n.fetch_sockets(t, all(), Some(200)));
    s.advance(199);
    assert!(s.completion(0, id).is_none());
    s.advance(1);
    let c = s.completion(0, id).expect("times out");
    assert_eq!(
        c.error.as_deref(),
        Some("timeout reached: missing 1 responses")
    );
    s
}

fn x05_bad_frames(b: Build, m: RoomOwner) -> Sim {
    let mut s = three(b, m);
    let good = wire::encode(&wire::Envelope {
        uid: 77,
        nsp: "/".into(),
        msg: wire::Message::Heartbeat,
    });
    let mut truncated = good.clone();
    truncated.pop();
    let mut trailing = good.clone();
    trailing.push(0);
    type Check = fn(&FrameError) -> bool;
    let cases: Vec<(Vec<u8>, Check)> = vec![
        (vec![], |e| *e == FrameError::Empty),
        (vec![9, 1, 2], |e| *e == FrameError::UnsupportedVersion(9)),
        (
            vec![wire::VERSION, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            |e| matches!(e, FrameError::Malformed(_)),
        ),
        (truncated, |e| matches!(e, FrameError::Malformed(_))),
        (trailing, |e| matches!(e, FrameError::Malformed(_))),
        (vec![wire::VERSION; (16 << 20) + 1], |e| {
            matches!(e, FrameError::TooLarge(_))
        }),
    ];
    for (frame, ok) in cases {
        let res = s.node(0).on_frame(0, &frame).expect("no trap");
        let err = res.expect_err("refused");
        assert!(ok(&err), "{err:?}");
        s.log.push(format!("refused: {err:?}"));
    }
    assert_eq!(s.node(0).stats().expect("stats").frames_rejected, 6);
    // The node still works.
    let res = s.node(0).on_frame(0, &good).expect("no trap");
    assert!(res.is_ok());
    assert_eq!(s.server_count(0), 4);
    s.call(0, |n, t| n.broadcast(t, all(), b"after".to_vec()));
    assert_eq!(receivers(&s, b"after"), ["s0", "s1", "s2"]);
    s
}

fn x06_fetch_rooms(b: Build, m: RoomOwner) -> Sim {
    let mut s = three(b, m);
    s.join(0, "s0", &["a"]);
    s.join(1, "s1", &["a", "b"]);
    s.join(2, "s2", &["c"]);
    let id = s.request(0, |n, t| n.fetch_rooms(t, to(&["a"])));
    match &s.completion(0, id).expect("done").value {
        RequestValue::Rooms(r) => {
            let mut r = r.clone();
            r.sort();
            assert_eq!(r, ["a", "b", "s0", "s1"]);
        }
        other => panic!("{other:?}"),
    }
    s
}

fn x07_batch(b: Build, m: RoomOwner) -> Sim {
    let mut s = three(b, m);
    // Frames from two other nodes of node 0's namespace, batched, with junk between.
    let mut batch = Vec::new();
    for (uid, msg) in [
        (500, wire::Message::Heartbeat),
        (
            501,
            wire::Message::ServerSideEmit {
                packet: b"ev".to_vec(),
                request_id: None,
            },
        ),
    ] {
        let f = wire::encode(&wire::Envelope {
            uid,
            nsp: "/".into(),
            msg,
        });
        wire::push_batch(&mut batch, &f);
        wire::push_batch(&mut batch, &[0xff]);
    }
    let (effects, errors) = s.node(0).on_frames(0, &batch).expect("no trap");
    assert_eq!(errors.len(), 2);
    assert_eq!(s.server_count(0), 5);
    s.log.push(format!("{effects:?} {errors:?}"));
    s
}

fn x08_ack_node_dies(b: Build, m: RoomOwner) -> Sim {
    let mut s = three(b, m);
    s.client_acks.insert("s0".into(), b"1".to_vec());
    s.client_acks.insert("s1".into(), b"2".to_vec());
    s.down.insert(2);
    let id = s.request(0, |n, t| {
        n.broadcast_with_ack(t, all(), b"q".to_vec(), 5000, false)
    });
    assert!(s.completion(0, id).is_none());
    let uid = uid_of(2);
    s.call(0, |n, t| n.node_down(t, uid));
    assert_eq!(s.completion(0, id).map(|c| c.error.clone()), Some(None));
    assert_eq!(ack_payloads(&s, 0, id), [b"1", b"2"]);
    s
}

fn x09_close_fails_pending(b: Build, m: RoomOwner) -> Sim {
    let mut s = three(b, m);
    s.down.insert(1);
    let id = s.request(0, |n, t| n.fetch_sockets(t, all(), None));
    s.call(0, |n, t| n.close(t));
    assert_eq!(
        s.completion(0, id).and_then(|c| c.error.clone()).as_deref(),
        Some(CLOSED_ERROR)
    );
    assert_eq!(s.server_count(2), 2, "the others saw ADAPTER_CLOSE");
    s
}

fn x10_streamed_acks(b: Build, m: RoomOwner) -> Sim {
    let mut s = three(b, m);
    for i in 0..3 {
        s.client_acks.insert(format!("s{i}"), vec![i as u8]);
    }
    let id = s.request(0, |n, t| {
        n.broadcast_with_ack(t, all(), b"q".to_vec(), 100, true)
    });
    let streamed = s.log.iter().filter(|l| l.contains("AckReceived")).count();
    assert_eq!(streamed, 3);
    assert_eq!(
        s.completion(0, id).map(|c| c.value.clone()),
        Some(RequestValue::Acks(vec![]))
    );
    s
}

fn x11_broadcast_flag_excludes_sender(b: Build, m: RoomOwner) -> Sim {
    let mut s = three(b, m);
    s.connect(0, "s0b", &[]);
    let mut opts = all();
    opts.sid = Some("s0".into());
    opts.flags.broadcast = true;
    s.call(0, |n, t| n.broadcast(t, opts, b"b".to_vec()));
    assert_eq!(receivers(&s, b"b"), ["s0b", "s1", "s2"]);
    s
}

fn x12_remote_ack_queries_expire(b: Build, m: RoomOwner) -> Sim {
    let mut s = three(b, m);
    s.client_acks.insert("s0".into(), b"0".to_vec());
    // Nobody on nodes 1 and 2 answers: their queries must not leak.
    let id = s.request(0, |n, t| {
        n.broadcast_with_ack(t, all(), b"q".to_vec(), 100, false)
    });
    assert!(s.node(1).stats().expect("stats").pending_queries <= 1);
    s.advance(100);
    assert_eq!(
        s.completion(0, id).and_then(|c| c.error.clone()).as_deref(),
        Some(ACK_TIMEOUT_ERROR)
    );
    for i in 0..3 {
        let st = s.node(i).stats().expect("stats");
        assert_eq!(
            (st.pending_requests, st.pending_queries),
            (0, 0),
            "node {i}"
        );
    }
    s
}
