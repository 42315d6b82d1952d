//! The deliberately misbehaving build of the component (adapter feature
//! `misbehave`), built on first use by the tests that need it, beside the
//! real one (`target/guest-wasm-misbehave`). Never part of a user's build.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

#[path = "../../guest_build.rs"]
#[allow(dead_code)]
mod guest_build;

/// Path of the misbehaving component, built once per test process.
pub fn misbehaving_component() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("host/ sits in the workspace");
        guest_build::build_component(root, "guest-wasm-misbehave", &["--features", "misbehave"])
            .unwrap_or_else(|e| panic!("{e}"))
    })
}
