//! The real adapter component across real processes: three workers under
//! `sio-cluster-host run`, each running the embedded component on the hub
//! link (the test worker's adapter mode). Broadcasts, fetch-sockets and
//! server-side emit cross workers; `kill -9` of a worker completes a pending
//! request at once (fast leave) and the respawned worker is counted again;
//! `kill -9` of a hung worker settles a fetch-sockets, a server-side emit with
//! replies and a broadcast with acks in flight, each with what arrived, long
//! before their timeouts.

mod common;

use std::time::{Duration, Instant};

use common::{Conn, Primary, events, get, handshake, info, wait_for, worker};

fn post(port: u16, path: &str, body: &[u8]) -> String {
    let r = Conn::open(port).post(path, body);
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    r.text()
}

fn count(port: u16, sid: &str) -> u32 {
    get(port, &format!("/ctl/adapter/count?sid={sid}"))
        .text()
        .parse()
        .unwrap_or(0)
}

fn has_event(port: u16, sid: &str, needle: &str) -> bool {
    events(port, sid).iter().any(|l| l.contains(needle))
}

/// The unix-micros timestamp of the first event line containing `needle`.
fn event_at(port: u16, sid: &str, needle: &str) -> Option<u128> {
    events(port, sid)
        .iter()
        .find(|l| l.contains(needle))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
}

#[test]
fn component_nodes_talk_across_worker_processes() {
    let p = Primary::start(
        3,
        "round-robin",
        &[worker()],
        &[("SIO_TEST_ADAPTER", "1"), ("SIO_TEST_SILENT", "2")],
    );
    p.wait_attached(3);
    let sids: Vec<String> = (0..3).map(|_| handshake(p.port)).collect();
    let workers: Vec<(u32, u32)> = sids
        .iter()
        .map(|s| {
            let (w, pid, _) = info(p.port, s);
            (w, pid)
        })
        .collect();
    assert_eq!(workers.iter().map(|w| w.0).collect::<Vec<_>>(), [0, 1, 2]);

    // Every node learns the two others from the initial heartbeats.
    for sid in &sids {
        wait_for(Duration::from_secs(5), "server count 3", || {
            (count(p.port, sid) == 3).then_some(())
        });
    }

    // io.to("all").emit from worker 0 reaches the socket of every worker.
    post(
        p.port,
        &format!("/ctl/adapter/broadcast?room=all&sid={}", sids[0]),
        b"hello",
    );
    for (i, sid) in sids.iter().enumerate() {
        let want = format!("deliver w{i} hello");
        wait_for(Duration::from_secs(5), &want, || {
            has_event(p.port, sid, &want).then_some(())
        });
    }
    // io.to("w2") from worker 1 reaches worker 2 only.
    post(
        p.port,
        &format!("/ctl/adapter/broadcast?room=w2&sid={}", sids[1]),
        b"only-two",
    );
    wait_for(Duration::from_secs(5), "w2 delivery", || {
        has_event(p.port, &sids[2], "deliver w2 only-two").then_some(())
    });
    assert!(!has_event(p.port, &sids[0], "only-two"));
    assert!(!has_event(p.port, &sids[1], "only-two"));

    // fetchSockets from worker 1 lists the sockets of all three workers.
    let id = post(p.port, &format!("/ctl/adapter/fetch?sid={}", sids[1]), b"");
    let want = format!("complete {id} err=none sockets=w0,w1,w2");
    wait_for(Duration::from_secs(5), &want, || {
        has_event(p.port, &sids[1], &want).then_some(())
    });

    // serverSideEmit with replies from worker 0: worker 2 never answers.
    let id = post(
        p.port,
        &format!("/ctl/adapter/emit?sid={}", sids[0]),
        b"[\"ping\"]",
    );
    wait_for(Duration::from_secs(5), "worker 1 answered", || {
        has_event(p.port, &sids[1], "server-event [\"ping\"]").then_some(())
    });
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        !has_event(p.port, &sids[0], &format!("complete {id} ")),
        "still waiting for worker 2"
    );
    // kill -9 worker 2: the hub reports its node gone, the request completes
    // with worker 1's answer instead of timing out after 5 s.
    let killed = Instant::now();
    // SAFETY: signalling a child of our child, by pid.
    unsafe { libc::kill(workers[2].1 as libc::pid_t, libc::SIGKILL) };
    let want = format!("complete {id} err=none replies=w1");
    wait_for(Duration::from_secs(3), &want, || {
        has_event(p.port, &sids[0], &want).then_some(())
    });
    let took = killed.elapsed();
    assert!(
        took < Duration::from_millis(1000),
        "completed after {took:?}"
    );
    println!("server-side emit completed {took:?} after kill -9 (fast leave)");

    // The primary respawns worker 2; its new node is counted again.
    wait_for(Duration::from_secs(10), "server count back to 3", || {
        (count(p.port, &sids[0]) == 3).then_some(())
    });
}

#[test]
fn kill_9_of_a_hung_worker_settles_every_request_in_flight() {
    // Requests wait 20 s at most; heartbeats would notice the dead worker
    // after 10 s. Fast leave must settle everything far sooner.
    let p = Primary::start(
        3,
        "round-robin",
        &[worker()],
        &[
            ("SIO_TEST_ADAPTER", "1"),
            ("SIO_TEST_REQUEST_TIMEOUT", "20000"),
        ],
    );
    p.wait_attached(3);
    let sids: Vec<String> = (0..3).map(|_| handshake(p.port)).collect();
    let workers: Vec<(u32, u32)> = sids
        .iter()
        .map(|s| {
            let (w, pid, _) = info(p.port, s);
            (w, pid)
        })
        .collect();
    assert_eq!(workers.iter().map(|w| w.0).collect::<Vec<_>>(), [0, 1, 2]);
    for sid in &sids {
        wait_for(Duration::from_secs(5), "server count 3", || {
            (count(p.port, sid) == 3).then_some(())
        });
    }

    // Worker 2 hangs: it stops taking messages from its link (its heartbeats
    // still go out, so nobody times it out).
    let r = get(p.port, &format!("/ctl/stall?sid={}", sids[2]));
    assert_eq!(r.status, 200);

    // Three requests from worker 0, each waiting for worker 2.
    let s0 = &sids[0];
    let fetch = post(
        p.port,
        &format!("/ctl/adapter/fetch?timeout=20000&sid={s0}"),
        b"",
    );
    let emit = post(
        p.port,
        &format!("/ctl/adapter/emit?sid={s0}"),
        b"[\"ping\"]",
    );
    let ask = post(
        p.port,
        &format!("/ctl/adapter/ask?room=all&timeout=20000&sid={s0}"),
        b"[\"q\"]",
    );
    wait_for(
        Duration::from_secs(5),
        "worker 1 answered and acked",
        || {
            let ev = events(p.port, &sids[1]);
            (ev.iter().any(|l| l.contains("server-event [\"ping\"]"))
                && ev.iter().any(|l| l.contains("deliver w1 [\"q\"]")))
            .then_some(())
        },
    );
    std::thread::sleep(Duration::from_millis(200));
    for id in [&fetch, &emit, &ask] {
        assert!(
            !has_event(p.port, s0, &format!("complete {id} ")),
            "request {id} must still wait for the hung worker: {:?}",
            events(p.port, s0)
        );
    }

    // kill -9 the hung worker.
    let killed_at = common::now_micros();
    // SAFETY: signalling a child of our child, by pid.
    assert_eq!(
        unsafe { libc::kill(workers[2].1 as libc::pid_t, libc::SIGKILL) },
        0
    );
    let cases = [
        ("fetch-sockets", &fetch, "err=none sockets=w0,w1"),
        ("server-side emit", &emit, "err=none replies=w1"),
        ("broadcast with acks", &ask, "err=none acks=w0:w0,w1:w1"),
    ];
    for (what, id, value) in cases {
        let want = format!("complete {id} {value}");
        let at = wait_for(Duration::from_secs(10), &want, || {
            event_at(p.port, s0, &want)
        });
        let settle_ms = at.saturating_sub(killed_at) as f64 / 1000.0;
        println!("{what} settled {settle_ms:.1} ms after kill -9 (timeout 20 000 ms): {value}");
        assert!(
            settle_ms < 5000.0,
            "{what} settled only after {settle_ms} ms"
        );
    }
    // Nothing completed twice or with an error.
    let ev = events(p.port, s0);
    for id in [&fetch, &emit, &ask] {
        let n = ev
            .iter()
            .filter(|l| l.contains(&format!("complete {id} ")))
            .count();
        assert_eq!(n, 1, "request {id} completed {n} times");
    }

    // The supervisor restarts worker 2; it is counted again and answers.
    for sid in &sids[..2] {
        wait_for(Duration::from_secs(10), "server count back to 3", || {
            (count(p.port, sid) == 3).then_some(())
        });
    }
    let id = post(
        p.port,
        &format!("/ctl/adapter/fetch?timeout=20000&sid={s0}"),
        b"",
    );
    let want = format!("complete {id} err=none sockets=w0,w1,w2");
    wait_for(Duration::from_secs(5), &want, || {
        has_event(p.port, s0, &want).then_some(())
    });
}
