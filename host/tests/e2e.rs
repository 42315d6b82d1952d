//! End-to-end: the JavaScript suite in `tests/e2e/` drives the real demo
//! cluster (`sio-cluster-host demo`, real worker processes, the embedded
//! component) with the official `socket.io-client` from npm.
//!
//! Installs the client with `npm ci` when `tests/node_modules` is missing.
//! Needs `node` and `npm` on PATH; fails (does not skip) without them.

use std::path::{Path, PathBuf};
use std::process::Command;

const HOST: &str = env!("CARGO_BIN_EXE_sio-cluster-host");

fn tests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests")
}

#[test]
fn official_client_against_the_demo_cluster() {
    let dir = tests_dir();
    let installed = ["socket.io-client", "parse-prometheus-text-format"]
        .iter()
        .all(|p| dir.join("node_modules").join(p).is_dir());
    if !installed {
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
            "e2e/",
        ])
        .current_dir(&dir)
        .env("SIO_CLUSTER_HOST_BIN", HOST)
        .output()
        .expect("node must be installed to run the end-to-end tests");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(out.status.success(), "the end-to-end suite failed");
    assert!(stdout.contains("fail 0"), "no failure line in the report");
}
