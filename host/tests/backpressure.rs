//! Backpressure across real processes: a worker under `sio-cluster-host run`
//! stops reading its hub link while another publishes 8x the hub's queue
//! limit. The hub's memory stays bounded by the limit (VmHWM of the primary),
//! the stalled worker is dropped (logged, its node announced down), killed
//! and restarted by the supervisor, and the worker that kept reading receives
//! every frame.

mod common;

use std::time::Duration;

use common::{Conn, Primary, events, get, handshake, info, wait_for, worker};

/// A `/proc/<pid>/status` field in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

const MIB: usize = 1024 * 1024;

#[test]
fn a_stalled_worker_is_dropped_and_the_hub_stays_bounded() {
    let limit = 8 * MIB;
    let frame_len = 256 * 1024;
    let frames = 256; // 64 MiB published, 8x the limit
    let p = Primary::start_with(
        3,
        "round-robin",
        &["--max-queued-bytes", &limit.to_string()],
        &[worker()],
        // Each worker's link holds at most 1 MiB of unread messages.
        &[("SIO_CLUSTER_MAX_QUEUED", "1048576")],
    );
    p.wait_attached(3);
    let hub_pid = p.child.id();
    let sids: Vec<String> = (0..3).map(|_| handshake(p.port)).collect();
    let infos: Vec<_> = sids.iter().map(|s| info(p.port, s)).collect();
    assert_eq!(infos.iter().map(|i| i.0).collect::<Vec<_>>(), [0, 1, 2]);
    let uid0 = infos[0].2[0].1.clone();
    let stalled_pid = infos[2].1;

    let publish = |tag: &str, i: usize| {
        let mut body = format!("{tag}-{i:04}-").into_bytes();
        body.resize(frame_len, b'x');
        let r = Conn::open(p.port).post(&format!("/ctl/publish?nsp=/&sid={}", sids[0]), &body);
        assert_eq!(r.status, 200, "{}", r.text());
    };
    let received = |sid: &str, tag: &str| {
        let needle = format!("frame / {uid0} {frame_len} {tag}-");
        events(p.port, sid)
            .iter()
            .filter(|l| l.contains(&needle))
            .count()
    };

    // Warm up the paths (allocator pools, buffers), then take the baseline.
    for i in 0..16 {
        publish("warm", i);
    }
    for sid in &sids[1..] {
        wait_for(Duration::from_secs(10), "warm-up frames", || {
            (received(sid, "warm") == 16).then_some(())
        });
    }
    let base_rss = status_kib(hub_pid, "VmRSS:");
    let base_hwm = status_kib(hub_pid, "VmHWM:");

    // Worker 2 hangs; worker 0 publishes 64 MiB.
    assert_eq!(
        get(p.port, &format!("/ctl/stall?sid={}", sids[2])).status,
        200
    );
    for i in 0..frames {
        publish("load", i);
    }

    // The hub dropped worker 2 at the limit, and the supervisor restarted it.
    wait_for(Duration::from_secs(10), "queue overflow logged", || {
        let log = p.log_text();
        (log.contains("outgoing queue overflow")
            && log.contains("hub dropped the worker's link, killing the worker"))
        .then_some(())
    });
    let hwm = status_kib(hub_pid, "VmHWM:");
    let growth_mib = hwm.saturating_sub(base_rss) as f64 / 1024.0;
    println!(
        "hub (primary) memory: RSS {:.1} MiB before the stall (peak {:.1} MiB), peak {:.1} MiB after \
         publishing {} MiB with one worker stalled: +{growth_mib:.1} MiB for a {} MiB limit",
        base_rss as f64 / 1024.0,
        base_hwm as f64 / 1024.0,
        hwm as f64 / 1024.0,
        frames * frame_len / MIB,
        limit / MIB
    );
    // Bounded by the limit plus the proxy's and reader's working set, far
    // below the 64 MiB a queue without a limit would have held.
    assert!(
        growth_mib < (limit / MIB) as f64 + 16.0,
        "hub grew by {growth_mib:.1} MiB"
    );

    // Worker 1 kept reading: it got every frame.
    wait_for(Duration::from_secs(10), "every frame at worker 1", || {
        (received(&sids[1], "load") == frames).then_some(())
    });

    // Worker 2 runs again (new pid), attached and receiving.
    let new_sid = wait_for(Duration::from_secs(10), "worker 2 restarted", || {
        let sid = handshake(p.port);
        let (w, pid, _) = info(p.port, &sid);
        (w == 2 && pid != stalled_pid).then_some(sid)
    });
    assert!(common::pid_gone(stalled_pid), "the stalled process is gone");
    wait_for(Duration::from_secs(10), "restarted worker receives", || {
        publish("after", 0);
        (received(&new_sid, "after") > 0).then_some(())
    });
    let log = p.log_text();
    assert_eq!(
        log.matches("dropping worker link").count(),
        1,
        "only the stalled worker was dropped: {log}"
    );
    assert!(
        events(p.port, &sids[1])
            .iter()
            .any(|l| l.contains("nodedown ")),
        "worker 1 was told the stalled worker's node left"
    );
}
