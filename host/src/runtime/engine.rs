//! The wasmtime engine for the adapter component: configured once, the
//! component compiled once and pre-linked, then one [`WasmNode`] (one `Store`)
//! per namespace or tenant.
//!
//! Configuration (measured in `shared/research/wasm-host.md`): sync calls,
//! `concurrency_support` off (1.7× cheaper calls), epoch interruption for the
//! CPU bound, optional pooling allocator for many instances. The component
//! gets no WASI capability: its imports are linked as traps.
//! `SIO_WASM_PERFMAP=1` names the component's compiled functions for `perf`
//! (wasmtime's perf map, `/tmp/perf-PID.map`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use sio_cluster_adapter::Config as NodeConfig;
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreLimits};

use super::bindings::ClusterAdapterPre;
use super::wasm_node::WasmNode;

/// The adapter component built from `adapter/` and embedded in this binary.
pub static DEFAULT_COMPONENT: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/sio_cluster_adapter.wasm"));

/// Per-instance limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Cap on the instance's linear memory, in bytes.
    pub memory_bytes: usize,
    /// CPU bound of one call, in epoch ticks (see [`EngineOptions::epoch_tick`]).
    pub cpu_ticks: u64,
}

impl Default for Limits {
    /// 64 MiB of memory, 100 ticks (1 s with the default 10 ms tick) per call.
    fn default() -> Self {
        Limits {
            memory_bytes: 64 << 20,
            cpu_ticks: 100,
        }
    }
}

/// Engine-wide settings.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Interval of the epoch ticker that enforces [`Limits::cpu_ticks`].
    pub epoch_tick: Duration,
    /// Use the pooling allocator sized for this many instances (multi-tenant).
    pub pooling_instances: Option<u32>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            epoch_tick: Duration::from_millis(10),
            pooling_instances: None,
        }
    }
}

/// State of one Store: only its limiter.
pub struct HostState {
    pub(crate) limits: StoreLimits,
}

struct Inner {
    engine: Engine,
    pre: ClusterAdapterPre<HostState>,
}

/// A compiled, pre-linked adapter component; cheap to clone.
#[derive(Clone)]
pub struct AdapterEngine {
    inner: Arc<Inner>,
}

impl AdapterEngine {
    /// The embedded default component with default options.
    pub fn new() -> Result<Self> {
        Self::from_bytes(DEFAULT_COMPONENT, EngineOptions::default())
    }

    /// A component file (`.wasm`) instead of the embedded one.
    pub fn from_file(path: &Path, opts: EngineOptions) -> Result<Self> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read component {}", path.display()))?;
        Self::from_bytes(&bytes, opts)
            .with_context(|| format!("cannot load component {}", path.display()))
    }

    /// A component from its bytes.
    pub fn from_bytes(bytes: &[u8], opts: EngineOptions) -> Result<Self> {
        let engine = Self::engine_for(&opts)?;
        let component = Component::new(&engine, bytes)
            .map_err(|e| anyhow::anyhow!("{e:?}"))
            .context("not a valid adapter component")?;
        Self::from_component(engine, component, &opts)
    }

    /// The wasmtime engine with this crate's settings. The primary compiles
    /// the workers' artifact with the same settings
    /// ([`artifact`](super::artifact)), so that their engines accept it.
    pub fn engine_for(opts: &EngineOptions) -> Result<Engine> {
        let mut config = wasmtime::Config::new();
        config.concurrency_support(false);
        config.epoch_interruption(true);
        // Diagnostics: names the component's compiled functions for `perf`
        // (a /tmp/perf-PID.map file per process).
        if std::env::var_os("SIO_WASM_PERFMAP").is_some_and(|v| v == "1") {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        if let Some(n) = opts.pooling_instances {
            let mut pool = PoolingAllocationConfig::default();
            pool.total_component_instances(n)
                .total_memories(n)
                .total_core_instances(n.saturating_mul(4))
                .total_tables(n.saturating_mul(4))
                .max_memory_size(Limits::default().memory_bytes);
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        Engine::new(&config).map_err(|e| anyhow::anyhow!("{e:?}"))
    }

    /// A compiled component (from [`Component::new`] or a deserialized
    /// artifact) on `engine`: pre-linked, its WASI imports as traps, checked
    /// to export the adapter world.
    pub fn from_component(
        engine: Engine,
        component: Component,
        opts: &EngineOptions,
    ) -> Result<Self> {
        let mut linker = Linker::<HostState>::new(&engine);
        // No WASI: whatever the component imports traps if it is ever called.
        linker
            .define_unknown_imports_as_traps(&component)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let pre = linker
            .instantiate_pre(&component)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let pre = ClusterAdapterPre::new(pre)
            .map_err(|e| anyhow::anyhow!("{e:?}"))
            .context("the component does not export the socketio:cluster adapter world")?;
        spawn_ticker(&engine, opts.epoch_tick);
        Ok(AdapterEngine {
            inner: Arc::new(Inner { engine, pre }),
        })
    }

    /// A new instance running one node.
    pub fn instantiate(&self, cfg: NodeConfig, limits: Limits) -> Result<WasmNode> {
        WasmNode::new(self.clone(), cfg, limits)
    }

    pub(crate) fn new_store(&self, limits: Limits) -> Store<HostState> {
        let state = HostState {
            limits: wasmtime::StoreLimitsBuilder::new()
                .memory_size(limits.memory_bytes)
                .instances(4)
                .tables(8)
                .memories(2)
                .trap_on_grow_failure(true)
                .build(),
        };
        let mut store = Store::new(&self.inner.engine, state);
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(limits.cpu_ticks);
        store
    }

    pub(crate) fn pre(&self) -> &ClusterAdapterPre<HostState> {
        &self.inner.pre
    }
}

/// Ticks the engine's epoch until the engine is dropped.
fn spawn_ticker(engine: &Engine, tick: Duration) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new()
        .name("sio-cluster-epoch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(tick);
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!("cannot start the epoch ticker, calls have no CPU bound: {e}");
    }
}
