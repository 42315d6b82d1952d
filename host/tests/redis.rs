//! Several machines through Redis: `sio-cluster-host demo --redis` primaries
//! joined through a real `redis-server` that each case starts and stops
//! itself (Unix socket or loopback port, temp dir), driven by the official
//! socket.io client: `tests/e2e/redis-contract.mjs` (the demo contract
//! across two and three primaries) and `tests/e2e/redis-faults.mjs` (Redis
//! restart under load, CLIENT KILL, kill -9 of a primary, a slow
//! subscriber, forged messages, a least-privilege ACL user) and
//! `tests/e2e/redis-recovery.mjs` (connection state recovery of Node
//! workers across primaries, also after `kill -9` of the client's primary).
//!
//! Needs `redis-server`, `redis-cli`, `node` and `npm` on PATH (`.ci/run`
//! installs redis-server); fails, does not skip, without them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

const HOST: &str = env!("CARGO_BIN_EXE_sio-cluster-host");

/// The suites start several primaries each: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn tests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests")
}

fn run_suite(file: &str) {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tests_dir();
    let probe = Command::new("redis-server").arg("--version").output();
    assert!(
        probe.is_ok_and(|o| o.status.success()),
        "redis-server must be installed (apt-get install -y redis-server)"
    );
    if !dir.join("node_modules/socket.io-client").is_dir() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .expect("npm must be installed to run the end-to-end tests");
        assert!(status.success(), "npm ci failed in {}", dir.display());
    }
    let out = Command::new("node")
        .args([
            "--test",
            "--test-concurrency=1",
            "--test-reporter=spec",
            file,
        ])
        .current_dir(&dir)
        .env("SIO_CLUSTER_HOST_BIN", HOST)
        .output()
        .expect("node must be installed to run the end-to-end tests");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(out.status.success(), "{file} failed");
    assert!(stdout.contains("fail 0"), "no failure line in the report");
}

#[test]
fn demo_contract_across_primaries_through_redis() {
    run_suite("e2e/redis-contract.mjs");
}

#[test]
fn faults_across_primaries_through_redis() {
    run_suite("e2e/redis-faults.mjs");
}

#[test]
fn connection_state_recovery_across_primaries_through_redis() {
    run_suite("e2e/redis-recovery.mjs");
}
