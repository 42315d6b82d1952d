//! Builds the adapter component (`adapter/` for `wasm32-wasip2`) so the host
//! can embed it as its default. Installs the wasm target with rustup when it
//! is missing. Only the real component: the misbehaving test build is made by
//! the tests that need it (`tests/support/guest.rs`).

use std::env;
use std::path::PathBuf;

#[path = "guest_build.rs"]
mod guest_build;

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
        "host/guest_build.rs",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }

    // Without the component runtime nothing embeds the component.
    if env::var_os("CARGO_FEATURE_RUNTIME").is_none() {
        return;
    }
    match guest_build::ensure_target() {
        Ok(Some(warning)) => println!("cargo:warning={warning}"),
        Ok(None) => {}
        Err(e) => panic!("{e}"),
    }
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let built =
        guest_build::build_component(&root, "guest-wasm", &[]).unwrap_or_else(|e| panic!("{e}"));
    let to = out_dir.join("sio_cluster_adapter.wasm");
    std::fs::copy(&built, &to)
        .unwrap_or_else(|e| panic!("cannot copy {} to {}: {e}", built.display(), to.display()));
}
