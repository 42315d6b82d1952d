//! Builds the adapter crate for `wasm32-wasip2` as a component: used by
//! `build.rs` (the embedded component) and by the tests that need a
//! deliberately misbehaving build (`--features misbehave`), so that build
//! happens only when those tests run.
//!
//! Each build has its own target directory: a nested cargo on the outer
//! build's directory would wait for the outer build's lock forever.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The component target.
pub const TARGET: &str = "wasm32-wasip2";
/// The cargo profile of the component (`[profile.guest]` in the workspace).
pub const PROFILE: &str = "guest";

/// Builds the adapter into `<root>/target/<dir>` with `extra` cargo
/// arguments; returns the `.wasm` path or a message saying what failed.
pub fn build_component(root: &Path, dir: &str, extra: &[&str]) -> Result<PathBuf, String> {
    let target_dir = root.join("target").join(dir);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
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
        .map_err(|e| format!("cannot run cargo to build the adapter component: {e}"))?;
    if !status.success() {
        return Err(format!(
            "building the adapter component failed ({status}); see the cargo output above"
        ));
    }
    Ok(target_dir
        .join(TARGET)
        .join(PROFILE)
        .join("sio_cluster_adapter.wasm"))
}

/// Adds the wasm target when rustup does not list it (a fresh machine).
/// Returns a warning to print, if any.
pub fn ensure_target() -> Result<Option<String>, String> {
    let listed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    match listed {
        Ok(o)
            if String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.trim() == TARGET) =>
        {
            Ok(None)
        }
        Ok(_) => {
            let ok = Command::new("rustup")
                .args(["target", "add", TARGET])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                Ok(Some(format!(
                    "installed the {TARGET} target with rustup (first build on this machine)"
                )))
            } else {
                Err(format!(
                    "`rustup target add {TARGET}` failed: install the target, then build again"
                ))
            }
        }
        Err(e) => Ok(Some(format!(
            "rustup not found ({e}); assuming the {TARGET} target is installed"
        ))),
    }
}
