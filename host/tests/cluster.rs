//! Multi-process tests of `sio-cluster-host run`: relay, fast leave, restart,
//! no orphans, and sticky HTTP routing. Real processes, loopback only.

mod common;

use std::time::Duration;

use common::*;

/// Three sessions with round-robin land on workers 0, 1, 2 (first pick = 0).
fn three_sessions(port: u16) -> Vec<(String, u32, u32, String)> {
    (0..3)
        .map(|_| {
            let sid = handshake(port);
            let (w, pid, uids) = info(port, &sid);
            let uid = uids
                .iter()
                .find(|(n, _)| n == "/")
                .map(|(_, u)| u.clone())
                .expect("uid of /");
            (sid, w, pid, uid)
        })
        .collect()
}

#[test]
fn broadcast_reaches_others_and_send_reaches_only_target() {
    // Also covers the multi-threaded runtime of the primary.
    let p = Primary::start_with(3, "round-robin", &["--threads", "2"], &[worker()], &[]);
    p.wait_attached(3);
    let s = three_sessions(p.port);
    assert_eq!(
        s.iter().map(|x| x.1).collect::<Vec<_>>(),
        vec![0, 1, 2],
        "round-robin starts at worker 0"
    );

    let r = Conn::open(p.port).post(&format!("/ctl/publish?sid={}&nsp=/", s[0].0), b"bcast-1");
    assert_eq!(r.status, 200, "{}", r.text());
    for other in [1, 2] {
        wait_for(
            Duration::from_secs(5),
            "broadcast at the other workers",
            || {
                events(p.port, &s[other].0)
                    .iter()
                    .any(|l| l.ends_with(&format!("frame / {} 7 bcast-1", s[0].3)))
                    .then_some(())
            },
        );
    }
    assert!(
        !events(p.port, &s[0].0)
            .iter()
            .any(|l| l.contains("bcast-1")),
        "the sender must not get its own broadcast"
    );

    // A response to worker 2's uid, sent by worker 1.
    let r = Conn::open(p.port).post(
        &format!("/ctl/send?sid={}&nsp=/&target={}", s[1].0, s[2].3),
        b"resp-1",
    );
    assert_eq!(r.status, 200);
    // And one to a uid nobody has: dropped.
    let r = Conn::open(p.port).post(
        &format!("/ctl/send?sid={}&nsp=/&target=00000000deadbeef", s[1].0),
        b"lost-1",
    );
    assert_eq!(r.status, 200);
    // A marker broadcast from worker 1 after both: once it arrived at worker 0,
    // the earlier sends would have arrived too (one FIFO link per worker).
    Conn::open(p.port).post(&format!("/ctl/publish?sid={}&nsp=/", s[1].0), b"marker");
    wait_for(Duration::from_secs(5), "the response at worker 2", || {
        events(p.port, &s[2].0)
            .iter()
            .any(|l| l.ends_with(&format!("frame / {} 6 resp-1", s[1].3)))
            .then_some(())
    });
    wait_for(Duration::from_secs(5), "the marker at worker 0", || {
        events(p.port, &s[0].0)
            .iter()
            .any(|l| l.contains("marker"))
            .then_some(())
    });
    for w in [0, 1, 2] {
        let ev = events(p.port, &s[w].0);
        assert!(
            !ev.iter().any(|l| l.contains("lost-1")),
            "a send to an unknown uid reached worker {w}"
        );
        if w != 2 {
            assert!(
                !ev.iter().any(|l| l.contains("resp-1")),
                "the response reached worker {w}"
            );
        }
    }
}

#[test]
fn kill_9_worker_fast_leave_and_respawn() {
    let p = Primary::start_workers(3, "round-robin");
    p.wait_attached(3);
    let s = three_sessions(p.port);
    let (victim_sid, victim_index, victim_pid, victim_uid) = s[1].clone();

    // Make sure the others know nothing yet about a node down.
    let t0 = now_micros();
    // SAFETY: signalling a worker process the test started (via the primary).
    assert_eq!(
        unsafe { libc::kill(victim_pid as libc::pid_t, libc::SIGKILL) },
        0
    );
    for other in [0usize, 2] {
        let line = wait_for(Duration::from_secs(5), "NodeDown at the others", || {
            events(p.port, &s[other].0)
                .into_iter()
                .find(|l| l.contains(&format!("nodedown {victim_uid} /")))
        });
        let at: u128 = line
            .split_whitespace()
            .next()
            .and_then(|t| t.parse().ok())
            .expect("timestamp");
        let latency_ms = at.saturating_sub(t0) as f64 / 1000.0;
        eprintln!("fast leave: worker {other} saw NodeDown {latency_ms:.2} ms after kill -9");
        assert!(latency_ms < 100.0, "NodeDown took {latency_ms} ms");
    }

    // The old sid is forgotten; the primary respawns worker 1 with a new pid.
    let (new_pid, new_sid) = wait_for(Duration::from_secs(10), "worker 1 respawned", || {
        let sid = handshake(p.port);
        let (w, pid, _) = info(p.port, &sid);
        (w == victim_index && pid != victim_pid).then_some((pid, sid))
    });
    assert_ne!(new_pid, victim_pid);
    let r = get(
        p.port,
        &format!("/socket.io/?EIO=4&transport=polling&sid={new_sid}"),
    );
    assert_eq!(r.status, 200);
    assert!(r.text().starts_with(&format!("worker={victim_index} ")));
    // The dead session's sid is no longer routed to anyone who knows it.
    let r = get(
        p.port,
        &format!("/socket.io/?EIO=4&transport=polling&sid={victim_sid}"),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(p.log_text().contains("worker exited, restarting"));
}

#[test]
fn kill_9_primary_leaves_no_worker() {
    let mut p = Primary::start_workers(2, "round-robin");
    p.wait_attached(2);
    let pids: Vec<u32> = (0..2).map(|_| info(p.port, &handshake(p.port)).1).collect();
    assert!(pids.iter().all(|&pid| !pid_gone(pid)));
    p.child.kill().expect("kill -9 primary");
    let _ = p.child.wait();
    wait_for(
        Duration::from_secs(5),
        "workers gone after kill -9 of the primary",
        || pids.iter().all(|&pid| pid_gone(pid)).then_some(()),
    );
}

#[test]
fn sigterm_stops_workers_and_exits_0() {
    let mut p = Primary::start_workers(2, "least-connection");
    p.wait_attached(2);
    let pids: Vec<u32> = (0..2).map(|_| info(p.port, &handshake(p.port)).1).collect();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(p.child.id() as libc::pid_t, libc::SIGTERM) };
    let status = wait_for(Duration::from_secs(10), "primary exit", || {
        p.child.try_wait().ok().flatten()
    });
    assert_eq!(status.code(), Some(0));
    wait_for(Duration::from_secs(5), "workers gone", || {
        pids.iter().all(|&pid| pid_gone(pid)).then_some(())
    });
}

#[test]
fn keep_alive_connection_with_two_sessions() {
    let p = Primary::start_workers(2, "least-connection");
    p.wait_attached(2);
    let a = handshake(p.port);
    let b = handshake(p.port);
    let (wa, _, _) = info(p.port, &a);
    let (wb, _, _) = info(p.port, &b);
    assert_ne!(wa, wb, "least-connection spreads two sessions");
    let mut c = Conn::open(p.port);
    for round in 0..3 {
        for (sid, w) in [(&a, wa), (&b, wb)] {
            let r = c.get(&format!("/socket.io/?EIO=4&transport=polling&sid={sid}"));
            assert_eq!(r.status, 200, "round {round}: {}", r.text());
            assert!(
                r.text().starts_with(&format!("worker={w} ")),
                "round {round}: {} should be on worker {w}: {}",
                sid,
                r.text()
            );
        }
    }
    // Polling POSTs on the same connection too.
    let r = c.post(
        &format!("/socket.io/?EIO=4&transport=polling&sid={b}"),
        b"4hello",
    );
    assert!(r.text().starts_with(&format!("worker={wb} ")));
    assert!(r.text().contains("len=6 "));
}

#[test]
fn large_bodies_arrive_intact() {
    let p = Primary::start_workers(2, "round-robin");
    p.wait_attached(2);
    let sid = handshake(p.port);
    let mut c = Conn::open(p.port);

    let body = pattern(1024 * 1024, 7);
    let r = c.post(
        &format!("/socket.io/?EIO=4&transport=polling&sid={sid}"),
        &body,
    );
    assert_eq!(r.status, 200);
    assert!(
        r.text()
            .ends_with(&format!("len={} hash={}", body.len(), body_hash(&body))),
        "{}",
        r.text()
    );

    let body = pattern(3 * 1024 * 1024 + 123, 9);
    c.post_chunked(
        &format!("/socket.io/?EIO=4&transport=polling&sid={sid}"),
        &body,
        50_000,
    );
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert!(
        r.text()
            .ends_with(&format!("len={} hash={}", body.len(), body_hash(&body))),
        "{}",
        r.text()
    );
}

#[test]
fn websocket_upgrade_is_spliced_to_the_owner() {
    let p = Primary::start_workers(2, "round-robin");
    p.wait_attached(2);
    websocket_to_owner(&p, "listener");
}

#[test]
fn websocket_handoff_passes_the_socket_to_the_owner() {
    let p = Primary::start_with(2, "round-robin", &["--handoff-websocket"], &[worker()], &[]);
    p.wait_attached(2);
    websocket_to_owner(&p, "handoff");
    // Polling still goes through the proxy, per request, on keep-alive.
    let a = handshake(p.port);
    let b = handshake(p.port);
    let (wa, _, _) = info(p.port, &a);
    let (wb, _, _) = info(p.port, &b);
    let mut c = Conn::open(p.port);
    for (sid, w) in [(&a, wa), (&b, wb), (&a, wa)] {
        let r = c.get(&format!("/socket.io/?EIO=4&transport=polling&sid={sid}"));
        assert!(
            r.text().starts_with(&format!("worker={w} ")),
            "{}",
            r.text()
        );
    }
    // A later upgrade on a keep-alive connection is proxied (not handed off).
    let mut c = Conn::open(p.port);
    let r = c.get(&format!("/socket.io/?EIO=4&transport=polling&sid={a}"));
    assert_eq!(r.status, 200);
    c.send_raw(
        format!(
            "GET /socket.io/?EIO=4&transport=websocket&sid={a} HTTP/1.1\r\nHost: localhost\r\n\
             Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(c.read_response().status, 101);
    let hello = format!("worker={wa} via=listener\n");
    assert_eq!(c.read_exact_raw(hello.len()), hello.as_bytes());
    // Garbage still gets a 400 from the proxy path.
    let mut c = Conn::open(p.port);
    c.send_raw(b"NOT HTTP AT ALL\r\n\r\n");
    assert_eq!(c.read_response().status, 400);
}

fn websocket_to_owner(p: &Primary, via: &str) {
    let _first = handshake(p.port);
    let sid = handshake(p.port);
    let (w, _, _) = info(p.port, &sid);
    let mut c = Conn::open(p.port);
    c.send_raw(
        format!(
            "GET /socket.io/?EIO=4&transport=websocket&sid={sid} HTTP/1.1\r\nHost: localhost\r\n\
             Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        .as_bytes(),
    );
    let r = c.read_response();
    assert_eq!(r.status, 101, "{}", r.head);
    let hello = format!("worker={w} via={via}\n");
    assert_eq!(c.read_exact_raw(hello.len()), hello.as_bytes());
    let payload = pattern(200_000, 3);
    c.send_raw(&payload);
    assert_eq!(c.read_exact_raw(payload.len()), payload);
}

#[test]
fn no_live_worker_gives_a_valid_503() {
    let p = Primary::start(2, "least-connection", &["/bin/false"], &[]);
    for _ in 0..2 {
        let mut c = Conn::open(p.port);
        let r = c.get("/socket.io/?EIO=4&transport=polling");
        assert!(
            r.head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{}",
            r.head
        );
        assert_eq!(r.reason, "Service Unavailable");
        assert_eq!(
            r.header("content-length").map(|v| v.parse::<usize>().ok()),
            Some(Some(r.body.len()))
        );
        assert!(
            r.header("connection")
                .is_some_and(|v| v.eq_ignore_ascii_case("close"))
        );
        assert!(c.is_closed(), "connection closed after the 503");
    }
}

#[test]
fn malformed_http_gets_400_and_the_primary_lives_on() {
    let p = Primary::start_workers(1, "least-connection");
    p.wait_attached(1);
    for garbage in [
        &b"THIS IS NOT HTTP\r\n\r\n"[..],
        &b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n"[..],
        &b"GET / HTTP/1.1\r\nBad Header Line\r\n\r\n"[..],
        &b"\x00\x01\x02\x03\r\n\r\n"[..],
    ] {
        let mut c = Conn::open(p.port);
        c.send_raw(garbage);
        let r = c.read_response();
        assert_eq!(r.status, 400, "for {garbage:?}: {}", r.head);
    }
    // Still serving.
    let sid = handshake(p.port);
    assert_eq!(info(p.port, &sid).0, 0);
}

#[test]
fn sessions_reported_by_workers_route_too() {
    let p = Primary::start(
        2,
        "least-connection",
        &[worker()],
        &[("SIO_TEST_REPORT_SESSIONS", "1")],
    );
    p.wait_attached(2);
    let sids: Vec<String> = (0..4).map(|_| handshake(p.port)).collect();
    let workers: Vec<u32> = sids.iter().map(|s| info(p.port, s).0).collect();
    let zeros = workers.iter().filter(|&&w| w == 0).count();
    assert_eq!(
        zeros, 2,
        "least-connection balances 4 sessions 2/2: {workers:?}"
    );
    for (sid, w) in sids.iter().zip(&workers) {
        let r = get(
            p.port,
            &format!("/socket.io/?EIO=4&transport=polling&sid={sid}"),
        );
        assert!(r.text().starts_with(&format!("worker={w} ")));
    }
}

/// Not a pass/fail test: prints the cost of the proxy hop. Run with
/// `cargo test --release -p sio-cluster-host --test cluster measure -- --ignored --nocapture`.
#[test]
#[ignore]
fn measure_proxy_overhead() {
    let p = Primary::start_workers(2, "round-robin");
    p.wait_attached(2);
    let sid = handshake(p.port);
    let r = get(p.port, &format!("/ctl/info?sid={sid}"));
    let listen = r
        .text()
        .split_whitespace()
        .find_map(|x| x.strip_prefix("listen=").map(str::to_string))
        .expect("listen addr");
    let direct_port: u16 = listen
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    let n = 5000;
    let body = pattern(1024 * 1024, 1);
    for (name, port) in [("direct", direct_port), ("proxied", p.port)] {
        let mut c = Conn::open(port);
        for _ in 0..200 {
            c.get(&path);
        }
        let t = std::time::Instant::now();
        for _ in 0..n {
            let r = c.get(&path);
            assert_eq!(r.status, 200);
        }
        let per = t.elapsed().as_secs_f64() * 1e6 / n as f64;
        let t = std::time::Instant::now();
        for _ in 0..50 {
            let r = c.post(&path, &body);
            assert_eq!(r.status, 200);
        }
        let mbps = 50.0 / t.elapsed().as_secs_f64();
        eprintln!("{name}: {per:.1} us per keep-alive GET, {mbps:.0} MiB/s POST (1 MiB bodies)");
    }
}

#[test]
fn random_balance_uses_every_worker_and_sids_stay_sticky() {
    let p = Primary::start_workers(2, "random");
    p.wait_attached(2);
    let mut seen = [0usize; 2];
    let mut sessions = Vec::new();
    for _ in 0..24 {
        let sid = handshake(p.port);
        let (w, _, _) = info(p.port, &sid);
        seen[w as usize] += 1;
        sessions.push((sid, w));
    }
    assert!(
        seen.iter().all(|&n| n > 0),
        "random used one worker only: {seen:?}"
    );
    let mut c = Conn::open(p.port);
    for (sid, w) in &sessions {
        let r = c.get(&format!("/socket.io/?EIO=4&transport=polling&sid={sid}"));
        assert!(
            r.text().starts_with(&format!("worker={w} ")),
            "{}",
            r.text()
        );
    }
}

#[test]
fn heartbeat_settings_reach_the_workers() {
    let p = Primary::start_with(
        1,
        "round-robin",
        &[
            "--heartbeat-interval",
            "1234",
            "--heartbeat-timeout",
            "5678",
        ],
        &[worker()],
        &[],
    );
    p.wait_attached(1);
    let sid = handshake(p.port);
    let r = get(p.port, &format!("/ctl/info?sid={sid}"));
    assert!(r.text().contains(" hb=1234,5678"), "{}", r.text());
}

/// Not a pass/fail test: echo throughput and round trip of an upgraded
/// connection, proxied vs handed off. Run with
/// `cargo test --release -p sio-cluster-host --test cluster measure -- --ignored --nocapture`.
#[test]
#[ignore]
fn measure_websocket_paths() {
    for (name, args) in [
        ("proxied", &[][..]),
        ("handoff", &["--handoff-websocket"][..]),
    ] {
        let p = Primary::start_with(1, "round-robin", args, &[worker()], &[]);
        p.wait_attached(1);
        let sid = handshake(p.port);
        let mut c = Conn::open(p.port);
        c.send_raw(
            format!(
                "GET /socket.io/?EIO=4&transport=websocket&sid={sid} HTTP/1.1\r\nHost: x\r\n\
                 Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
            )
            .as_bytes(),
        );
        assert_eq!(c.read_response().status, 101);
        let hello = c.read_exact_raw("worker=0 via=".len());
        assert!(hello.starts_with(b"worker=0"));
        let mut rest = Vec::new();
        while !rest.ends_with(b"\n") {
            rest.extend(c.read_exact_raw(1));
        }
        let n = 5000;
        let t = std::time::Instant::now();
        for _ in 0..n {
            c.send_raw(b"ping-ping");
            assert_eq!(c.read_exact_raw(9), b"ping-ping");
        }
        let rtt = t.elapsed().as_secs_f64() * 1e6 / n as f64;
        let chunk = pattern(64 * 1024, 5);
        let t = std::time::Instant::now();
        for _ in 0..800 {
            c.send_raw(&chunk);
            assert_eq!(c.read_exact_raw(chunk.len()).len(), chunk.len());
        }
        let mbps = 800.0 * 64.0 / 1024.0 / t.elapsed().as_secs_f64();
        eprintln!("websocket {name}: {rtt:.1} us round trip (9 B), {mbps:.0} MiB/s echo (64 KiB)");
    }
}
