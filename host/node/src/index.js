// @sio-cluster/node: socket.io 4.8 workers of a sio-cluster-host cluster,
// on the same adapter component (.wasm) as the Rust workers, through jco.
export { attach, createAdapter, currentCluster, Cluster, listenOn, KEEP_ALIVE_TIMEOUT_MS } from "./cluster.js";
export { ClusterAdapter, toComponentOpts, RESTARTED_ERROR, CLOSED_ERROR } from "./adapter.js";
export { installIds, isSocketioxideId, newId } from "./ids.js";
export { workerEnv, LinkError, LINK_CLOSED_EXIT_CODE } from "./link.js";
export { SLOW_DEFAULTS, slowPolicyFromEnv, watchSlowConsumers, queuedBytes } from "./slow.js";
export { componentSha256, COMPONENT_PATH, manifest } from "./component.js";
