// The worker side of one sio-cluster-host cluster in this process: the hub
// link, the adapters of every namespace (one component instance each), the
// counters, the inherited HTTP listener and the session reports.
import http from "node:http";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { ClusterAdapter } from "./adapter.js";
import { componentSha256 } from "./component.js";
import { installIds } from "./ids.js";
import { HubLink, LINK_CLOSED_EXIT_CODE, LinkError, workerEnv } from "./link.js";

/** Above the primary's 30 s pool idle timeout (`sticky.rs`), so the primary closes idle connections first. */
export const KEEP_ALIVE_TIMEOUT_MS = 65_000;

/** Defaults of SIO_CLUSTER_INSTANCE_MEMORY and SIO_CLUSTER_INSTANCE_CPU_MS, as the Rust worker. */
export const DEFAULT_INSTANCE_MEMORY = 64 * 1024 * 1024;
export const DEFAULT_INSTANCE_CPU_MS = 1000;

let current = null;

/** The cluster `attach()` made in this process, if any. */
export function currentCluster() {
  return current;
}

export class Cluster {
  constructor(link, env, options = {}) {
    this.link = link;
    this.env = env;
    this.worker = link.worker;
    this.heartbeatIntervalMs = options.heartbeatIntervalMs ?? env.heartbeatIntervalMs;
    this.heartbeatTimeoutMs = options.heartbeatTimeoutMs ?? env.heartbeatTimeoutMs;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 5000;
    this.maxFrameBytes = options.maxFrameBytes ?? env.maxFrame;
    this.exitOnClose = options.exitOnClose ?? true;
    this.instanceMemoryBytes = options.instanceMemoryBytes ?? env.instanceMemory ?? DEFAULT_INSTANCE_MEMORY;
    this.instanceCpuMs = options.instanceCpuMs ?? env.instanceCpuMs ?? DEFAULT_INSTANCE_CPU_MS;
    this.logger = options.logger ?? ((line) => process.stderr.write(`sio-cluster: ${line}\n`));
    this.start = performance.now();
    /** Process-wide counters (every namespace). */
    this.counters = {
      framesRefused: 0,
      framesDropped: 0,
      framesUnrouted: 0,
      badRemoteData: 0,
      effectErrors: 0,
      operationErrors: 0,
      handlerErrors: 0,
      linkErrors: 0,
      traps: 0,
      memoryCapped: 0,
      slowCalls: 0,
      unexpectedEffects: 0,
      sessionsOpened: 0,
      sessionsClosed: 0,
      nodesUp: 0,
      nodesDown: 0,
    };
    this.adapters = new Map();
    this.refusedLogged = 0;
    link.onFrames = (nsp, frames) => {
      const a = this.adapters.get(nsp);
      if (!a) {
        this.counters.framesUnrouted += frames.length;
        return;
      }
      try {
        a.onFrames(frames);
      } catch (e) {
        this.counters.effectErrors++;
        this.log(`frames on ${nsp} failed: ${e?.stack ?? e}`);
      }
    };
    link.onNodeDown = (nsp, uid) => {
      try {
        this.adapters.get(nsp)?.onNodeDown(uid);
      } catch (e) {
        this.log(`node-down on ${nsp} failed: ${e?.stack ?? e}`);
      }
    };
    link.onClose = (reason) => {
      this.log(`hub link closed (${reason})`);
      if (this.exitOnClose) process.exit(LINK_CLOSED_EXIT_CODE);
    };
    link.start();
    if (env.statsIntervalMs) {
      this.statsTimer = setInterval(() => this.reportStats(), env.statsIntervalMs);
      this.statsTimer.unref();
    }
  }

  /**
   * This process's adapter figures summed over its namespaces, as the Rust
   * worker's `WasmCluster::worker_stats` (`WorkerStats` of the hub link).
   */
  workerStats() {
    const w = { namespaces: 0, nodes: 0, sockets: 0, rooms: 0, pendingRequests: 0, framesIn: 0n, framesRejected: 0n, localDrops: 0, instanceRestarts: 0, linkErrors: this.counters.linkErrors };
    for (const a of this.adapters.values()) {
      w.namespaces++;
      w.instanceRestarts += a.restarts;
      // socket.io keeps the rooms (`room-owner.host`): count its own.
      w.sockets += a.sids.size;
      w.rooms += a.rooms.size;
      let s = null;
      try {
        s = a.closed || a.broken ? null : a.stats().node;
      } catch {
        s = null;
      }
      if (s) {
        w.nodes += s.nodes;
        w.pendingRequests += s.pendingRequests;
        w.framesIn += BigInt(s.framesIn);
        w.framesRejected += BigInt(s.framesRejected);
      }
    }
    return w;
  }

  /** Sends one WorkerStats report (see `workerStats`). */
  reportStats() {
    if (this.link.closed) return;
    try {
      this.link.workerStats(this.workerStats());
    } catch {
      this.counters.linkErrors++;
    }
  }

  /** Milliseconds since this cluster started (the adapters' clock), as BigInt. */
  now() {
    return BigInt(Math.floor(performance.now() - this.start));
  }

  log(line) {
    this.logger(line);
  }

  /** Refused frames are logged at powers of two. */
  logRefused(nsp, n, first) {
    const total = this.counters.framesRefused;
    if (total - n === 0 || Math.clz32(total - n) !== Math.clz32(total)) {
      this.log(`adapter frames refused on ${nsp}: ${n} (first: ${first}), ${total} so far`);
    }
    this.refusedLogged++;
  }

  nodeEvent(kind, nsp, uid) {
    if (kind === "up") this.counters.nodesUp++;
    else this.counters.nodesDown++;
    if (process.env.SIO_CLUSTER_DEBUG) this.log(`node ${kind} ${uid.toString(16).padStart(16, "0")} on ${nsp}`);
  }

  register(adapter) {
    const name = adapter.nsp.name;
    const old = this.adapters.get(name);
    this.adapters.set(name, adapter);
    // socket.io replaced the namespace's adapter (`io.adapter(...)` again)
    // without closing the old one: close it, or its node would stay in the
    // cluster (heartbeats) as a phantom server.
    if (old && old !== adapter) {
      this.log(`namespace ${name} got a new adapter; closing the old one`);
      try {
        old.close();
      } catch (e) {
        this.log(`closing the old adapter of ${name}: ${e.message}`);
      }
    }
  }

  unregister(adapter) {
    if (this.adapters.get(adapter.nsp.name) === adapter) this.adapters.delete(adapter.nsp.name);
  }

  /**
   * The adapter class for `new Server({ adapter })` / `io.adapter(...)`: one
   * `ClusterAdapter` (one component instance) per namespace.
   */
  adapter(options = {}) {
    const cluster = this;
    return class extends ClusterAdapter {
      constructor(nsp) {
        super(nsp, cluster, options);
      }
    };
  }

  /** Counters of the link, the process and every namespace. */
  stats() {
    const namespaces = {};
    for (const [name, a] of this.adapters) {
      try {
        namespaces[name] = a.stats();
      } catch (e) {
        namespaces[name] = { error: e.message };
      }
    }
    return {
      worker: this.worker,
      link: { ...this.link.stats, queuedBytes: this.link.queuedBytes, closed: this.link.closed },
      counters: { ...this.counters },
      namespaces,
    };
  }

  /**
   * Reports Engine.IO sessions of `io` to the primary (SessionOpened /
   * SessionClosed), as the sticky router needs for WebSocket-only sessions
   * and exact least-connection counts.
   */
  reportSessions(io) {
    const engine = io.engine;
    if (!engine) throw new Error("reportSessions: the socket.io server is not attached to an HTTP server yet");
    if (engine.__sioClusterReported) return;
    engine.__sioClusterReported = true;
    engine.on("connection", (conn) => {
      try {
        this.link.sessionOpened(conn.id);
        this.counters.sessionsOpened++;
      } catch (e) {
        this.counters.linkErrors++;
      }
      conn.once("close", () => {
        try {
          this.link.sessionClosed(conn.id);
          this.counters.sessionsClosed++;
        } catch {
          this.counters.linkErrors++;
        }
      });
    });
  }

  /**
   * Serves `io` on the listener the primary passed (`SIO_CLUSTER_LISTEN_FD`,
   * fd 4), else on `SIO_CLUSTER_LISTEN`, else on 127.0.0.1:0. Attaches `io`
   * to `httpServer` (a new `http.Server` when not given), reports sessions,
   * sets `keepAliveTimeout` above the primary's pool idle timeout. Resolves
   * with the HTTP server once listening.
   */
  async listen(io, { httpServer } = {}) {
    const server = httpServer ?? http.createServer();
    server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS;
    server.headersTimeout = KEEP_ALIVE_TIMEOUT_MS + 1000;
    if (!io.engine || io.httpServer !== server) io.attach(server);
    this.reportSessions(io);
    await listenOn(server, this.env);
    return server;
  }
}

/** Listens on the inherited fd (or the address) from the worker environment. */
export function listenOn(server, env = workerEnv()) {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    const done = () => {
      server.off("error", reject);
      resolve(server);
    };
    if (env.listenFd !== undefined) server.listen({ fd: env.listenFd }, done);
    else if (env.listen) {
      const i = env.listen.lastIndexOf(":");
      server.listen({ host: env.listen.slice(0, i).replace(/^\[|\]$/g, ""), port: Number(env.listen.slice(i + 1)) }, done);
    } else server.listen({ host: "127.0.0.1", port: 0 }, done);
  });
}

/**
 * `run --component FILE` makes the Rust workers load FILE
 * (`SIO_CLUSTER_COMPONENT`); a Node worker loads the component this package
 * was built with, so both must be the same file, or the cluster would mix
 * two adapters. Throws when they differ.
 */
export function checkComponent(env) {
  if (!env.component) return;
  let theirs;
  try {
    theirs = createHash("sha256").update(readFileSync(env.component)).digest("hex");
  } catch (e) {
    throw new LinkError("BadEnv", `environment variable SIO_CLUSTER_COMPONENT is invalid: ${env.component}: ${e.message}`);
  }
  const ours = componentSha256();
  if (theirs !== ours) {
    throw new LinkError(
      "ComponentMismatch",
      `the primary runs the adapter component ${env.component} (sha256 ${theirs}), ` +
        `this package was built with another one (sha256 ${ours}): rebuild it with ` +
        `SIO_CLUSTER_WASM=${env.component} npm run build`,
    );
  }
}

/**
 * Joins the cluster from the environment `sio-cluster-host run` (or
 * `hub --socket`) set: connects the hub link (fd 3, or a socket path with
 * the attach token), Hello/Welcome, and makes socket.io generate
 * socketioxide-compatible ids (wit/interop.md). Fails with a clear error if
 * the primary passes WebSocket handoffs (`SIO_CLUSTER_HANDOFF`). When the
 * link closes, the process exits with code 75, as the Rust worker does.
 */
export async function attach(options = {}) {
  if (current) return current;
  const env = options.env ?? workerEnv();
  checkComponent(env);
  installIds();
  const link = await HubLink.connect({
    ipc: env.ipc,
    token: env.token,
    index: env.index,
    maxFrame: env.maxFrame,
    maxQueued: env.maxQueued,
    timeoutMs: options.timeoutMs ?? 10_000,
  });
  current = new Cluster(link, env, options);
  return current;
}

/**
 * The adapter for `io.adapter(createAdapter())` / `new Server({ adapter:
 * createAdapter() })`. `cluster` defaults to the one `attach()` made, which
 * must have resolved before the first namespace is created.
 */
export function createAdapter(cluster, options) {
  if (cluster && !(cluster instanceof Cluster)) {
    options = cluster;
    cluster = undefined;
  }
  const c = cluster ?? current;
  if (!c) throw new LinkError("NotAttached", "createAdapter(): call `await attach()` first (no cluster in this process)");
  return c.adapter(options);
}
