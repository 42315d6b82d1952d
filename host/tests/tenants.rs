//! Multi-tenant isolation and the cost of 1 000 tenant instances.

#[path = "support/guest.rs"]
mod guest;

use std::time::Instant;

use sio_cluster_host::adapter::{Effect, Opts, RoomOwner};
use sio_cluster_host::runtime::tenants::Tenants;
use sio_cluster_host::{AdapterEngine, AdapterNode, EngineOptions, Limits, NodeError};

fn frames(effects: &[Effect]) -> Vec<Vec<u8>> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Publish(f) | Effect::Send(_, f) => Some(f.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn tenants_never_see_each_other() {
    let engine = AdapterEngine::new().expect("engine");
    let mut t = Tenants::new(engine, Limits::default(), RoomOwner::Component);
    // Tenant a has two nodes (two processes); tenant b one. One bus for all.
    let a1 = t.node("a", "/").expect("a").init(0).expect("init");
    t.node("a", "/")
        .expect("a")
        .join("sa", &["room".into()])
        .expect("join");
    t.node("b", "/")
        .expect("b")
        .join("sb", &["room".into()])
        .expect("join");
    let b1 = t.node("b", "/").expect("b").init(0).expect("init");
    assert!(t.node("bad:id", "/").is_err());

    // a's announcement reaches b's node: ignored, not counted.
    for f in frames(&a1) {
        let res = t
            .node("b", "/")
            .expect("b")
            .on_frame(1, &f)
            .expect("no trap");
        assert_eq!(res.expect("valid frame"), vec![]);
    }
    for f in frames(&b1) {
        t.node("a", "/")
            .expect("a")
            .on_frame(1, &f)
            .expect("no trap")
            .expect("valid");
    }
    assert_eq!(t.node("a", "/").expect("a").server_count(), Ok(1));
    assert_eq!(t.node("b", "/").expect("b").server_count(), Ok(1));
    // a's broadcast frame delivers nothing on b.
    let e = t
        .node("a", "/")
        .expect("a")
        .broadcast(2, Opts::rooms(["room"]), b"x".to_vec())
        .expect("ok");
    for f in frames(&e) {
        let res = t
            .node("b", "/")
            .expect("b")
            .on_frame(3, &f)
            .expect("no trap");
        assert_eq!(res.expect("valid"), vec![]);
    }
    assert!(
        t.node("b", "/")
            .expect("b")
            .stats()
            .expect("stats")
            .frames_ignored
            >= 2
    );
}

#[test]
fn a_trap_in_one_tenant_leaves_the_others_alone() {
    let engine = AdapterEngine::from_file(guest::misbehaving_component(), EngineOptions::default())
        .expect("engine");
    let mut t = Tenants::new(engine, Limits::default(), RoomOwner::Component);
    t.node("good", "/")
        .expect("good")
        .join("s", &["r".into()])
        .expect("join");
    let err = t
        .node("evil", "/")
        .expect("evil")
        .broadcast(0, Opts::all().local(), b"\0misbehave:trap".to_vec())
        .expect_err("trap");
    assert!(matches!(err, NodeError::Trapped { .. }));
    let e = t
        .node("good", "/")
        .expect("good")
        .broadcast(1, Opts::rooms(["r"]).local(), b"ok".to_vec())
        .expect("ok");
    assert!(matches!(&e[..], [Effect::Deliver(d)] if d.sids == ["s"]));
    assert_eq!(t.node("good", "/").expect("good").restarts(), 0);
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

#[test]
fn a_thousand_tenants_fit_in_well_under_a_gib() {
    let opts = EngineOptions {
        pooling_instances: Some(1100),
        ..EngineOptions::default()
    };
    let engine =
        AdapterEngine::from_bytes(sio_cluster_host::DEFAULT_COMPONENT, opts).expect("engine");
    let mut t = Tenants::new(engine, Limits::default(), RoomOwner::Component);
    let before = rss_bytes();
    let start = Instant::now();
    for i in 0..1000 {
        let n = t.node(&format!("tenant-{i}"), "/").expect("tenant");
        n.join("s", &["room".into()]).expect("join");
        n.init(0).expect("init");
    }
    let took = start.elapsed();
    let grew = rss_bytes().saturating_sub(before);
    println!(
        "1000 tenant instances: +{:.1} MiB RSS, started in {:.1} ms ({:.1} µs each)",
        grew as f64 / (1 << 20) as f64,
        took.as_secs_f64() * 1e3,
        took.as_secs_f64() * 1e6 / 1000.0
    );
    assert_eq!(t.len(), 1000);
    assert!(grew < 1 << 30, "1000 tenants took {grew} bytes");
}
