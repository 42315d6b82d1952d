//! Multi-tenant hosting: one isolated adapter instance per tenant and
//! namespace, each in its own Store with its own limits.
//!
//! A tenant is an application id. Its nodes put `<tenant>:<nsp>` on the wire
//! as their namespace, so another tenant's nodes ignore its frames before they
//! count as liveness: broadcasts, requests and node counts never cross tenants.
//! A trap in one tenant's instance rebuilds that instance only.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use sio_cluster_adapter::{Config, RoomOwner};

use crate::runtime::engine::{AdapterEngine, Limits};
use crate::runtime::wasm_node::WasmNode;

/// The adapter instances of many tenants, created on first use.
pub struct Tenants {
    engine: AdapterEngine,
    limits: Limits,
    rooms: RoomOwner,
    nodes: BTreeMap<(String, String), WasmNode>,
}

/// The wire namespace of a tenant's namespace.
pub fn tenant_nsp(tenant: &str, nsp: &str) -> String {
    format!("{tenant}:{nsp}")
}

impl Tenants {
    /// Instances from `engine` (use [`EngineOptions::pooling_instances`](crate::EngineOptions)
    /// for many tenants), each with `limits`.
    pub fn new(engine: AdapterEngine, limits: Limits, rooms: RoomOwner) -> Self {
        Tenants {
            engine,
            limits,
            rooms,
            nodes: BTreeMap::new(),
        }
    }

    /// The tenant's node for `nsp`, created (with a random uid) if needed.
    pub fn node(&mut self, tenant: &str, nsp: &str) -> Result<&mut WasmNode> {
        if tenant.is_empty() || tenant.contains(':') {
            bail!("invalid tenant id {tenant:?}: it must be non-empty and contain no ':'");
        }
        let key = (tenant.to_owned(), nsp.to_owned());
        if !self.nodes.contains_key(&key) {
            let cfg = Config::new(random_uid()?, tenant_nsp(tenant, nsp), self.rooms);
            let node = self.engine.instantiate(cfg, self.limits)?;
            self.nodes.insert(key.clone(), node);
        }
        self.nodes
            .get_mut(&key)
            .ok_or_else(|| anyhow::anyhow!("tenant node vanished"))
    }

    /// Drops every instance of the tenant.
    pub fn remove(&mut self, tenant: &str) -> usize {
        let before = self.nodes.len();
        self.nodes.retain(|(t, _), _| t != tenant);
        before - self.nodes.len()
    }

    /// Number of live instances.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there is no instance.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

/// A random node id (upstream: 8 random bytes).
pub fn random_uid() -> Result<u64> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("no randomness for a node id: {e}"))?;
    Ok(u64::from_le_bytes(b))
}
