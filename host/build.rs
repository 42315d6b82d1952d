//! Builds the adapter component (`adapter/` for `wasm32-wasip2`) so the host
//! can embed it as its default. Installs the wasm target with rustup when it
//! is missing, and uses its own target directory: a nested cargo on the outer
//! build's directory would wait for the outer build's lock forever.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";
const PROFILE: &str = "guest";

fn main() {
    let manifest =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest
        .parent()
        .expect("host/ sits in the workspace")
        .to_path_buf();
    for path in [
        "adapter/src",
        "adapter/Cargo.toml",
        "wit",
        "Cargo.lock",
        "Cargo.toml",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }

    ensure_target();

    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let default = build_component(&root, "guest-wasm", &[]);
    copy(&default, &out_dir.join("sio_cluster_adapter.wasm"));
    // The misbehaving build for the sandbox tests (not embedded).
    let misbehaving = build_component(&root, "guest-wasm-misbehave", &["--features", "misbehave"]);
    println!(
        "cargo:rustc-env=SIO_CLUSTER_MISBEHAVING_COMPONENT={}",
        misbehaving.display()
    );
}

/// Builds the adapter for wasm32-wasip2 into `target/<dir>`; returns the .wasm path.
fn build_component(root: &Path, dir: &str, extra: &[&str]) -> PathBuf {
    let target_dir = root.join("target").join(dir);
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args(["build", "--locked", "-p", "sio-cluster-adapter", "--lib"])
        .args(["--target", TARGET, "--profile", PROFILE])
        .args(extra)
        .arg("--target-dir")
        .arg(&target_dir);
    // Flags meant for the host build must not reach the wasm build.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo to build the adapter component: {e}"));
    if !status.success() {
        panic!("building the adapter component failed ({status}); see the cargo output above");
    }
    target_dir
        .join(TARGET)
        .join(PROFILE)
        .join("sio_cluster_adapter.wasm")
}

/// Adds the wasm target when rustup does not list it (a fresh machine).
fn ensure_target() {
    let listed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    match listed {
        Ok(o)
            if String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.trim() == TARGET) => {}
        Ok(_) => {
            println!(
                "cargo:warning=installing the {TARGET} target with rustup (first build on this machine)"
            );
            let ok = Command::new("rustup")
                .args(["target", "add", TARGET])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if !ok {
                panic!("`rustup target add {TARGET}` failed: install the target, then build again");
            }
        }
        Err(e) => println!(
            "cargo:warning=rustup not found ({e}); assuming the {TARGET} target is installed"
        ),
    }
}

fn copy(from: &Path, to: &Path) {
    std::fs::copy(from, to)
        .unwrap_or_else(|e| panic!("cannot copy {} to {}: {e}", from.display(), to.display()));
}
