//! The component compiled once for all the workers of a machine.
//!
//! Compiling the component with Cranelift takes about a second; a worker
//! that did it at every start (and after every crash) would be unavailable
//! that long. Instead the primary checks and compiles the component once
//! ([`compile_for_workers`]) and writes the compiled artifact to a private
//! directory; each worker loads it ([`WorkerComponent::load`]) in a few
//! milliseconds.
//!
//! An artifact is never loaded blindly: the worker uses it only when
//! - its sha256 is the one the primary computed (a truncated or replaced
//!   file is refused),
//! - it was compiled from the very component the worker would load
//!   otherwise (a worker built against another component version ignores
//!   it), and
//! - wasmtime accepts it for the worker's own engine (same wasmtime version
//!   and settings; wasmtime checks this itself).
//!
//! Otherwise the worker logs why and compiles the component itself.
//!
//! The environment the primary gives its workers:
//!
//! | variable | meaning |
//! |---|---|
//! | `SIO_CLUSTER_COMPONENT` | path of the component to load instead of the embedded one (`run --component`) |
//! | `SIO_CLUSTER_COMPILED` | path of the compiled artifact |
//! | `SIO_CLUSTER_COMPILED_SHA256` | sha256 of the artifact file |
//! | `SIO_CLUSTER_COMPILED_FOR` | sha256 of the component it was compiled from |

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use sha2::{Digest, Sha256};
use tracing::{info, warn};
use wasmtime::component::Component;

use super::engine::{AdapterEngine, DEFAULT_COMPONENT, EngineOptions};

/// Path of the component to load instead of the embedded one.
pub const ENV_COMPONENT: &str = "SIO_CLUSTER_COMPONENT";
/// Path of the compiled artifact written by the primary.
pub const ENV_COMPILED: &str = "SIO_CLUSTER_COMPILED";
/// sha256 (hex) of the artifact file.
pub const ENV_COMPILED_SHA256: &str = "SIO_CLUSTER_COMPILED_SHA256";
/// sha256 (hex) of the component the artifact was compiled from.
pub const ENV_COMPILED_FOR: &str = "SIO_CLUSTER_COMPILED_FOR";

/// The world every adapter component implements.
pub const WORLD: &str = "socketio:cluster/cluster-adapter@0.1.0";

/// Lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut s = String::with_capacity(64);
    for b in digest {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Why a component file cannot serve as the adapter (the primary stops
/// before starting any worker; `sio-cluster-host` exits with code 6).
#[derive(Debug, thiserror::Error)]
pub enum ComponentError {
    /// The file cannot be read.
    #[error("cannot read the adapter component {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Not WebAssembly, or a core module rather than a component.
    #[error("{} is not a WebAssembly component: {reason}", path.display())]
    NotAComponent {
        /// The file.
        path: PathBuf,
        /// What it is instead.
        reason: String,
    },
    /// A component, but not of the adapter's world.
    #[error("{} does not implement {WORLD}: {missing}", path.display())]
    WrongWorld {
        /// The file.
        path: PathBuf,
        /// What is missing or extra.
        missing: String,
    },
    /// The engine cannot be built, or the artifact cannot be written.
    #[error("cannot prepare the adapter component for the workers: {0}")]
    Prepare(String),
}

/// A component checked against the adapter world and compiled.
pub struct CheckedComponent {
    /// sha256 of the component file.
    pub sha256: String,
    /// Size of the component in bytes.
    pub size: usize,
    compiled: Component,
}

/// Checks that `bytes` (read from `path`, for messages) are a component of
/// the adapter world, and compiles them with the workers' engine settings.
pub fn check_component(path: &Path, bytes: &[u8]) -> Result<CheckedComponent, ComponentError> {
    let not_a_component = |reason: &str| ComponentError::NotAComponent {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    if wasmparser::Parser::is_core_wasm(bytes) {
        return Err(not_a_component(
            "it is a core WebAssembly module (build it as a component, e.g. for the wasm32-wasip2 target)",
        ));
    }
    if !wasmparser::Parser::is_component(bytes) {
        return Err(not_a_component(
            "it does not start with the WebAssembly component header",
        ));
    }
    let engine = AdapterEngine::engine_for(&EngineOptions::default())
        .map_err(|e| ComponentError::Prepare(format!("{e:#}")))?;
    let component = Component::new(&engine, bytes).map_err(|e| ComponentError::NotAComponent {
        path: path.to_path_buf(),
        reason: format!("{e:#}"),
    })?;
    // Imports: the adapter world imports nothing; std's WASI imports are
    // tolerated (linked as traps, never called).
    let ty = component.component_type();
    let foreign: Vec<String> = ty
        .imports(&engine)
        .map(|(name, _)| name.to_string())
        .filter(|name| !name.starts_with("wasi:"))
        .collect();
    if !foreign.is_empty() {
        return Err(ComponentError::WrongWorld {
            path: path.to_path_buf(),
            missing: format!(
                "it imports {} (the adapter world imports nothing)",
                foreign.join(", ")
            ),
        });
    }
    AdapterEngine::from_component(engine, component.clone(), &EngineOptions::default()).map_err(
        |e| ComponentError::WrongWorld {
            path: path.to_path_buf(),
            missing: format!("{e:#}"),
        },
    )?;
    Ok(CheckedComponent {
        sha256: sha256_hex(bytes),
        size: bytes.len(),
        compiled: component,
    })
}

/// The primary's one call into the runtime: checks `component` (a file, or
/// the embedded component when `None`), compiles it once, writes the
/// artifact into `dir` (a private directory the caller owns and removes) and
/// returns the environment for every worker.
///
/// `sio-cluster-host` makes this call in a short-lived child process
/// (`prepare-component`), so that the primary never holds Cranelift's memory
/// (about 85 MiB of RSS) for its lifetime.
pub fn compile_for_workers(
    component: Option<&Path>,
    dir: &Path,
) -> Result<Vec<(String, OsString)>, ComponentError> {
    let started = Instant::now();
    let (label, bytes): (PathBuf, std::borrow::Cow<'static, [u8]>) = match component {
        Some(p) => {
            let bytes = std::fs::read(p).map_err(|source| ComponentError::Read {
                path: p.to_path_buf(),
                source,
            })?;
            (p.to_path_buf(), bytes.into())
        }
        None => ("(embedded component)".into(), DEFAULT_COMPONENT.into()),
    };
    let checked = check_component(&label, &bytes)?;
    let serialized = checked
        .compiled
        .serialize()
        .map_err(|e| ComponentError::Prepare(format!("cannot serialize the component: {e:#}")))?;
    let artifact = dir.join("adapter.cwasm");
    std::fs::write(&artifact, &serialized).map_err(|e| {
        ComponentError::Prepare(format!("cannot write {}: {e}", artifact.display()))
    })?;
    let mut env = vec![
        (ENV_COMPILED.to_string(), artifact.clone().into_os_string()),
        (
            ENV_COMPILED_SHA256.to_string(),
            sha256_hex(&serialized).into(),
        ),
        (ENV_COMPILED_FOR.to_string(), checked.sha256.clone().into()),
    ];
    if let Some(p) = component {
        let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        env.push((ENV_COMPONENT.to_string(), abs.into_os_string()));
    }
    info!(
        component = %label.display(),
        sha256 = %checked.sha256,
        artifact = %artifact.display(),
        artifact_bytes = serialized.len(),
        ms = started.elapsed().as_millis() as u64,
        "adapter component compiled for the workers"
    );
    Ok(env)
}

/// How a worker got its compiled component.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Loaded {
    /// From the primary's artifact.
    Precompiled,
    /// Compiled here: no artifact was offered.
    Compiled,
    /// Compiled here because the artifact was refused; the reason.
    Fallback(String),
}

/// Where a worker's component comes from (see the module docs).
#[derive(Clone, Debug, Default)]
pub struct WorkerComponent {
    /// A component file instead of the embedded one.
    pub component: Option<PathBuf>,
    /// The primary's artifact: path, its sha256, the component's sha256.
    pub compiled: Option<(PathBuf, String, String)>,
}

impl WorkerComponent {
    /// From `SIO_CLUSTER_COMPONENT` and `SIO_CLUSTER_COMPILED*`.
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        let component = var(ENV_COMPONENT).map(PathBuf::from);
        let compiled = match (
            var(ENV_COMPILED),
            var(ENV_COMPILED_SHA256),
            var(ENV_COMPILED_FOR),
        ) {
            (Some(p), Some(h), Some(f)) => Some((
                PathBuf::from(p),
                h.to_string_lossy().into_owned(),
                f.to_string_lossy().into_owned(),
            )),
            _ => None,
        };
        WorkerComponent {
            component,
            compiled,
        }
    }

    /// Builds the engine: the artifact when it is usable, else a compile
    /// (logged with the reason). Errors only when the component itself
    /// cannot be read or loaded.
    pub fn load(&self, opts: EngineOptions) -> anyhow::Result<(AdapterEngine, Loaded)> {
        let started = Instant::now();
        let source: std::borrow::Cow<'static, [u8]> = match &self.component {
            Some(p) => std::fs::read(p)
                .map_err(|e| anyhow::anyhow!("cannot read component {}: {e}", p.display()))?
                .into(),
            None => DEFAULT_COMPONENT.into(),
        };
        let label = match &self.component {
            Some(p) => p.display().to_string(),
            None => "embedded".to_string(),
        };
        let loaded = match &self.compiled {
            None => Loaded::Compiled,
            Some((path, sha, for_sha)) => match try_artifact(path, sha, for_sha, &source, &opts) {
                Ok(engine) => {
                    tracing::debug!(
                        artifact = %path.display(),
                        us = started.elapsed().as_micros() as u64,
                        "adapter component loaded precompiled"
                    );
                    return Ok((engine, Loaded::Precompiled));
                }
                Err(reason) => {
                    warn!(
                        artifact = %path.display(),
                        %reason,
                        "not using the precompiled adapter component; compiling it"
                    );
                    Loaded::Fallback(reason)
                }
            },
        };
        let engine = AdapterEngine::from_bytes(&source, opts)
            .map_err(|e| e.context(format!("cannot load component {label}")))?;
        info!(
            component = %label,
            ms = started.elapsed().as_millis() as u64,
            "adapter component compiled in this worker"
        );
        Ok((engine, loaded))
    }
}

/// Loads the artifact at `path` if it is the expected file, compiled from
/// `source`, and accepted by this engine's settings.
fn try_artifact(
    path: &Path,
    sha: &str,
    for_sha: &str,
    source: &[u8],
    opts: &EngineOptions,
) -> Result<AdapterEngine, String> {
    let source_sha = sha256_hex(source);
    if !source_sha.eq_ignore_ascii_case(for_sha) {
        return Err(format!(
            "it was compiled from component {for_sha}, this worker loads {source_sha}"
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    let got = sha256_hex(&bytes);
    if !got.eq_ignore_ascii_case(sha) {
        return Err(format!(
            "its sha256 is {got}, expected {sha} ({} bytes: truncated or replaced)",
            bytes.len()
        ));
    }
    let engine = AdapterEngine::engine_for(opts).map_err(|e| format!("{e:#}"))?;
    // SAFETY: `Component::deserialize` trusts its input to be an artifact
    // wasmtime wrote. The bytes are exactly those the primary serialized (the
    // sha256 above, passed by the primary to this process), the primary's
    // directory is private, and wasmtime itself refuses artifacts of another
    // version or configuration.
    let component = unsafe { Component::deserialize(&engine, &bytes) }
        .map_err(|e| format!("wasmtime refused it: {e:#}"))?;
    AdapterEngine::from_component(engine, component, opts).map_err(|e| format!("{e:#}"))
}
