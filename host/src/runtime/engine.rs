//! The wasmtime engine for the adapter component: configured once, the
//! component compiled once and pre-linked, then one [`WasmNode`] (one `Store`)
//! per namespace or tenant.
//!
//! Configuration (measured in `shared/research/wasm-host.md`): sync calls,
//! `concurrency_support` off (1.7× cheaper calls), epoch interruption for the
//! CPU bound (a ticker thread that sleeps while no call runs), optional
//! pooling allocator for many instances. The component
//! gets no WASI capability: its imports are linked as traps.
//! `SIO_WASM_PERFMAP=1` names the component's compiled functions for `perf`
//! (wasmtime's perf map, `/tmp/perf-PID.map`).

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::thread::Thread;
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
    ticker: Arc<Ticker>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // A parked ticker wakes, finds its engine gone and ends.
        if let Some(t) = self.ticker.thread.get() {
            t.unpark();
        }
    }
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
        let ticker = Ticker::spawn(&engine, opts.epoch_tick);
        Ok(AdapterEngine {
            inner: Arc::new(Inner {
                engine,
                pre,
                ticker,
            }),
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

    /// Marks a call into an instance as running until the guard drops: the
    /// epoch ticks meanwhile, so the call's deadline can stop it.
    pub(crate) fn running(&self) -> Running<'_> {
        self.inner.ticker.enter()
    }

    /// Whether the epoch ticker is parked (no call ran for a while).
    pub fn ticker_parked(&self) -> bool {
        self.inner.ticker.parked.load(Ordering::SeqCst)
    }
}

/// Ticks after the last call before the ticker parks (50 ms at the default
/// tick): a steady load keeps it ticking, an idle process is not woken.
const IDLE_TICKS: u32 = 5;

/// The epoch ticker of one [`AdapterEngine`]: increments the engine's epoch
/// every tick while calls run and for [`IDLE_TICKS`] after, then parks until
/// the next call ([`AdapterEngine::running`]). Free-running, it woke every
/// worker 100 times a second for nothing (6 ms of CPU per second per idle
/// worker, measured).
pub(crate) struct Ticker {
    engine: Engine,
    /// Calls started (high 32 bits, wrapping) and in flight (low 32 bits):
    /// one atomic add at each end of a call.
    calls: AtomicU64,
    parked: AtomicBool,
    thread: OnceLock<Thread>,
}

/// What [`Ticker::enter`] adds to [`Ticker::calls`]; leaving subtracts 1.
const CALL_STARTED: u64 = (1 << 32) + 1;

/// A call in flight ([`AdapterEngine::running`]).
pub(crate) struct Running<'a>(&'a Ticker);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.calls.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Ticker {
    fn spawn(engine: &Engine, tick: Duration) -> Arc<Ticker> {
        let ticker = Arc::new(Ticker {
            engine: engine.clone(),
            calls: AtomicU64::new(0),
            parked: AtomicBool::new(false),
            thread: OnceLock::new(),
        });
        let weak = Arc::downgrade(&ticker);
        match std::thread::Builder::new()
            .name("sio-cluster-epoch".into())
            .spawn(move || Ticker::run(weak, tick))
        {
            Ok(handle) => {
                let _ = ticker.thread.set(handle.thread().clone());
            }
            Err(e) => {
                tracing::error!("cannot start the epoch ticker, calls have no CPU bound: {e}")
            }
        }
        ticker
    }

    fn enter(&self) -> Running<'_> {
        // SeqCst pairs with `run`: either the ticker sees this call before
        // it parks, or this call sees it parked and wakes it.
        self.calls.fetch_add(CALL_STARTED, Ordering::SeqCst);
        if self.parked.load(Ordering::SeqCst)
            && let Some(t) = self.thread.get()
        {
            t.unpark();
        }
        Running(self)
    }

    /// The ticker thread: ends when its engine is dropped.
    fn run(weak: Weak<Ticker>, tick: Duration) {
        let mut idle = 0;
        let mut seen = 0;
        loop {
            std::thread::sleep(tick);
            let Some(t) = weak.upgrade() else { return };
            t.engine.increment_epoch();
            // Quiet: nothing in flight and no call started since the last tick.
            let quiet = |now: u64, seen: u64| now == seen && now as u32 == 0;
            let now = t.calls.load(Ordering::SeqCst);
            if !quiet(now, seen) {
                seen = now;
                idle = 0;
                continue;
            }
            idle += 1;
            if idle < IDLE_TICKS {
                continue;
            }
            idle = 0;
            t.parked.store(true, Ordering::SeqCst);
            if quiet(t.calls.load(Ordering::SeqCst), seen) {
                drop(t);
                std::thread::park();
                match weak.upgrade() {
                    Some(t) => t.parked.store(false, Ordering::SeqCst),
                    None => return,
                }
            } else {
                t.parked.store(false, Ordering::SeqCst);
            }
        }
    }
}
