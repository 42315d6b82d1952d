// Helpers of the end-to-end tests: start a demo cluster (the real
// `sio-cluster-host` primary, real worker processes) and connect the
// official socket.io client to it.
//
// Three kinds of cluster, all under the same primary:
//   rust   `sio-cluster-host demo`: socketioxide demo workers (WebSocket handoff on);
//   node   `sio-cluster-host run -- node host/node/demo/worker.mjs`: socket.io
//          4.8 workers on @sio-cluster/node (the same component through jco);
//   mixed  `run` with even workers Rust (`sio-cluster-host demo-worker`) and
//          odd workers Node: worker 0 Rust, worker 1 Node.
// `SIO_E2E_KINDS` (comma-separated, default all three) picks the kinds the
// suites run; `SIO_E2E_NODE_WORKER` overrides the Node worker script.
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { once } from "node:events";
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { io } from "socket.io-client";

export const BIN = process.env.SIO_CLUSTER_HOST_BIN;
if (!BIN) {
  throw new Error("set SIO_CLUSTER_HOST_BIN to the sio-cluster-host binary");
}

export const KINDS = (process.env.SIO_E2E_KINDS ?? "rust,node,mixed")
  .split(",").map((k) => k.trim()).filter(Boolean);
for (const k of KINDS) {
  if (!["rust", "node", "mixed"].includes(k)) throw new Error(`SIO_E2E_KINDS: unknown kind ${k}`);
}

export const NODE_WORKER = process.env.SIO_E2E_NODE_WORKER
  ?? fileURLToPath(new URL("../../host/node/demo/worker.mjs", import.meta.url));

/** The runtime worker `index` of a `kind` cluster runs. */
export function runtimeOf(kind, index) {
  if (kind === "rust") return "rust";
  if (kind === "node") return "node";
  return index % 2 === 0 ? "rust" : "node";
}

const NODE_PKG = fileURLToPath(new URL("../../host/node/", import.meta.url));
let nodeHostReady = false;

/**
 * Makes sure host/node can run the Node workers, as host/tests/e2e.rs does
 * for tests/: `npm ci` when its node_modules is missing, and `npm run build`
 * when its component/ is missing or was built from another .wasm than the
 * current one (SIO_CLUSTER_WASM, default the Rust build's output).
 */
export function ensureNodeHost() {
  if (nodeHostReady || process.env.SIO_E2E_NODE_WORKER) return;
  const run = (args, env = {}) => {
    const r = spawnSync("npm", args, { cwd: NODE_PKG, stdio: ["ignore", "inherit", "inherit"], env: { ...process.env, ...env } });
    if (r.status !== 0) throw new Error(`npm ${args.join(" ")} failed in ${NODE_PKG}`);
  };
  if (!existsSync(`${NODE_PKG}node_modules/socket.io`)) run(["ci", "--no-audit", "--no-fund"]);
  const wasm = process.env.SIO_CLUSTER_WASM
    ?? fileURLToPath(new URL("../../target/guest-wasm/wasm32-wasip2/guest/sio_cluster_adapter.wasm", import.meta.url));
  const manifest = `${NODE_PKG}component/manifest.json`;
  if (existsSync(wasm)) {
    const sha = createHash("sha256").update(readFileSync(wasm)).digest("hex");
    const built = existsSync(manifest) ? JSON.parse(readFileSync(manifest, "utf8")).component.sha256 : null;
    if (built !== sha) run(["run", "build"], { SIO_CLUSTER_WASM: wasm });
  } else if (!existsSync(manifest)) {
    throw new Error(`host/node is not built and ${wasm} does not exist: build the component or set SIO_CLUSTER_WASM`);
  }
  nodeHostReady = true;
}

function primaryArgs(workers, kind, extra) {
  const common = ["--workers", String(workers), "--port", "0", "--bind", "127.0.0.1",
    "--balance", "round-robin", "--grace-period", "2000", ...extra];
  if (kind === "rust") return ["demo", ...common];
  // `run` with the worker command given in `extra` (after "--").
  if (kind === "run") return ["run", ...common];
  ensureNodeHost();
  // Node workers cannot take the WebSocket handoff: `run` leaves it off.
  if (kind === "node") return ["run", ...common, "--", process.execPath, NODE_WORKER];
  const script = 'if [ $((SIO_CLUSTER_WORKER % 2)) -eq 0 ]; then exec "$0" demo-worker; else exec "$1" "$2"; fi';
  return ["run", ...common, "--", "/bin/sh", "-c", script, BIN, process.execPath, NODE_WORKER];
}

/**
 * Starts a cluster of `kind` (see above) with `workers` workers on a free
 * port, and waits until every worker logged "demo worker serving".
 */
export async function startCluster(workers, extra = [], kind = "rust") {
  const child = spawn(
    BIN,
    primaryArgs(workers, kind, extra),
    { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, RUST_LOG: "info" } },
  );
  const log = [];
  let port = null;
  let serving = 0;
  const ready = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`cluster not ready in 60 s:\n${log.join("")}`)), 60_000);
    child.stderr.on("data", (chunk) => {
      const text = chunk.toString();
      log.push(text);
      const m = text.match(/public_addr=127\.0\.0\.1:(\d+)/);
      if (m) port = Number(m[1]);
      serving += (text.match(/demo worker serving/g) ?? []).length;
      if (port && serving >= workers) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`primary exited with ${code}:\n${log.join("")}`));
    });
  });
  await ready;
  child.removeAllListeners("exit");
  const url = `http://127.0.0.1:${port}`;
  return {
    url,
    kind,
    log,
    async stop() {
      if (child.exitCode !== null) return;
      child.kill("SIGTERM");
      const t = setTimeout(() => child.kill("SIGKILL"), 8000);
      await once(child, "exit");
      clearTimeout(t);
    },
  };
}

/** Connects one client and waits for `connect`. */
export async function connect(url, transport, nsp = "/") {
  const socket = io(url + nsp, {
    transports: [transport],
    forceNew: true,
    reconnection: false,
    timeout: 10_000,
  });
  await new Promise((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("connect_error", reject);
  });
  return socket;
}

/** Emits with an ack and resolves with the ack's argument (10 s bound). */
export function call(socket, event, ...args) {
  return socket.timeout(10_000).emitWithAck(event, ...args);
}

/**
 * Connects `n` clients per worker (round-robin balance) and returns them
 * grouped by worker index, checked with `whoami`.
 */
export async function clientsPerWorker(url, transport, workers, n = 1, nsp = "/") {
  const byWorker = Array.from({ length: workers }, () => []);
  for (let tries = 0; tries < workers * n * 4 && byWorker.some((l) => l.length < n); tries++) {
    const s = await connect(url, transport, nsp);
    const me = await call(s, "whoami");
    s.worker = me.worker;
    s.pid = me.pid;
    if (byWorker[me.worker].length < n) byWorker[me.worker].push(s);
    else s.disconnect();
  }
  if (byWorker.some((l) => l.length < n)) {
    throw new Error(`could not place ${n} clients on each of ${workers} workers`);
  }
  return byWorker;
}

/** Resolves with the next `event` on `socket`, or rejects after `ms`. */
export function next(socket, event, ms = 3000) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      socket.off(event, on);
      reject(new Error(`no ${event} within ${ms} ms on worker ${socket.worker}`));
    }, ms);
    function on(...args) {
      clearTimeout(t);
      resolve(args);
    }
    socket.once(event, on);
  });
}

/** Collects every `event` on `socket` into an array. */
export function record(socket, event) {
  const got = [];
  socket.on(event, (...args) => got.push(args));
  return got;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
