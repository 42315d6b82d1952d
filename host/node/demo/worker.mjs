#!/usr/bin/env node
// The Node demo worker: socket.io 4.8 on @sio-cluster/node, implementing
// shared/demo-contract.md on `/`, `/custom` and the tenant namespaces
// `/tenant/<id>` exactly like the Rust demo worker (`host/src/sioxide/demo.rs`):
// same events, same ack shapes, the same "demo worker serving" line on
// stderr once it serves. Run it under the primary:
//
//   sio-cluster-host run --workers 2 --port 3000 -- node demo/worker.mjs
//
// Every other path serves the demo page (./page.mjs); SIO_DEMO_CORS_ORIGIN
// (`demo --cors-origin`) lets pages of other origins use it.
//
// `SIO_DEMO_RECOVERY_MS=<ms>` turns socket.io's connection state recovery on
// (`maxDisconnectionDuration` = ms) across the workers, with two more events:
// `set_data(value, ack)` sets `socket.data`, `state(ack)` answers
// `{recovered, data, rooms}`.
import { Server } from "socket.io";
import { attach, createAdapter } from "../src/index.js";
import { corsFromEnv, pageServer } from "./page.mjs";
import { slowPolicyFromEnv, watchSlowConsumers } from "../src/slow.js";

/** Namespaces the demo serves (tenants are dynamic). */
const NAMESPACES = ["/", "/custom"];
const TENANTS = /^\/tenant\/[^/]+$/;

function fail(code, message) {
  process.stderr.write(`demo worker: ${message}\n`);
  process.exit(code);
}

let cluster;
try {
  cluster = await attach();
} catch (e) {
  fail(3, `cannot join the cluster: ${e.message}`);
}
const worker = cluster.worker;

const recoveryMs = process.env.SIO_DEMO_RECOVERY_MS ? Number(process.env.SIO_DEMO_RECOVERY_MS) : null;
if (recoveryMs !== null && !(Number.isSafeInteger(recoveryMs) && recoveryMs > 0)) {
  fail(2, `SIO_DEMO_RECOVERY_MS must be a positive integer (ms), not ${process.env.SIO_DEMO_RECOVERY_MS}`);
}

let cors;
try {
  cors = corsFromEnv();
} catch (e) {
  fail(2, e.message);
}
let slowPolicy;
try {
  slowPolicy = slowPolicyFromEnv();
} catch (e) {
  fail(3, e.message);
}

const io = new Server({
  adapter: createAdapter(cluster),
  // `demo --cors-origin` (SIO_DEMO_CORS_ORIGIN), as the Rust demo worker.
  ...(cors ? { cors } : {}),
  // As socketioxide's demo: keep a generous buffer; socket.io has no per-client cap.
  maxHttpBufferSize: 1e6,
  ...(recoveryMs ? { connectionStateRecovery: { maxDisconnectionDuration: recoveryMs, skipMiddlewares: true } } : {}),
});

/** Sorts numbers numerically, then everything else by its JSON text (as `sort_values`). */
function sortValues(values) {
  return values.sort((a, b) => {
    const x = typeof a === "number";
    const y = typeof b === "number";
    if (x && y) return a - b;
    if (x) return -1;
    if (y) return 1;
    const s = JSON.stringify(a);
    const t = JSON.stringify(b);
    return s < t ? -1 : s > t ? 1 : 0;
  });
}

const answering = new WeakSet();

/** Answers other workers' server-side `ping` on `nsp` with this worker's index. */
function answerPings(nsp) {
  if (answering.has(nsp)) return;
  answering.add(nsp);
  nsp.on("ping", (...args) => {
    const cb = args[args.length - 1];
    if (typeof cb === "function") cb(worker);
  });
}

const byId = (a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
const isFn = (f) => typeof f === "function";
// As the Rust demo's extractors (`Data<String>`, `Data<u64>`): a handler
// whose arguments do not have the expected types does not run (no ack).
const str = (...xs) => xs.every((x) => typeof x === "string");
const uint = (x) => Number.isSafeInteger(x) && x >= 0;

function onConnect(socket) {
  const nsp = socket.nsp;
  // The slow-consumer policy's counters (src/slow.js; as the Rust worker's).
  if (slow) socket.on("slow_stats", (ack) => isFn(ack) && ack(slow.stats()));
  // Every socket is in the room named by its own id (socket.io does this itself).
  socket.on("whoami", (ack) => isFn(ack) && ack({ pid: process.pid, worker }));
  socket.on("join", (room, ack) => {
    if (!str(room)) return;
    socket.join(room);
    if (isFn(ack)) ack(true);
  });
  socket.on("leave", (room, ack) => {
    if (!str(room)) return;
    socket.leave(room);
    if (isFn(ack)) ack(true);
  });
  socket.on("to", (room, event, payload) => {
    if (!str(room, event)) return;
    nsp.to(room).emit(event, payload);
  });
  socket.on("to_except", (room, except, event, payload) => {
    if (!str(room, except, event)) return;
    nsp.to(room).except(except).emit(event, payload);
  });
  socket.on("all", (event, payload) => {
    if (!str(event)) return;
    nsp.emit(event, payload);
  });
  socket.on("broadcast", (event, payload) => {
    if (!str(event)) return;
    socket.broadcast.emit(event, payload);
  });
  socket.on("fetch", async (room, ack) => {
    if (!isFn(ack) || !str(room)) return;
    try {
      const sockets = await nsp.in(room).fetchSockets();
      ack(sockets.map((s) => ({ id: s.id, rooms: [...s.rooms].sort() })).sort(byId));
    } catch (e) {
      process.stderr.write(`demo worker: fetch failed: ${e.message}\n`);
      ack([]);
    }
  });
  socket.on("sockets_join", (room, newRoom, ack) => {
    if (!str(room, newRoom)) return;
    nsp.in(room).socketsJoin(newRoom);
    if (isFn(ack)) ack(true);
  });
  socket.on("sockets_leave", (room, oldRoom, ack) => {
    if (!str(room, oldRoom)) return;
    nsp.in(room).socketsLeave(oldRoom);
    if (isFn(ack)) ack(true);
  });
  socket.on("disconnect_room", (room, ack) => {
    if (!str(room)) return;
    if (isFn(ack)) ack(true);
    nsp.in(room).disconnectSockets(true);
  });
  socket.on("ask", (room, timeoutMs, ack) => {
    if (!isFn(ack) || !str(room) || !uint(timeoutMs)) return;
    nsp
      .to(room)
      .timeout(timeoutMs)
      .emit("question", room, (err, responses) => {
        ack({ err: err ? err.message : null, responses: responses ?? [] });
      });
  });
  socket.on("server_emit", (payload, ack) => {
    if (!isFn(ack)) return;
    nsp.serverSideEmit("ping", payload, (err, responses) => {
      ack({ err: err ? err.message : null, responses: sortValues(responses ?? []) });
    });
  });
  socket.on("server_count", async (ack) => {
    if (!isFn(ack)) return;
    ack(await nsp.adapter.serverCount());
  });
  if (recoveryMs) {
    socket.on("set_data", (value, ack) => {
      socket.data = value;
      if (isFn(ack)) ack(true);
    });
    socket.on("state", (ack) => {
      if (!isFn(ack)) return;
      ack({ recovered: socket.recovered, data: socket.data ?? null, rooms: [...socket.rooms].sort() });
    });
  }
}

// A per-client cap in bytes and a time limit without progress (src/slow.js).
const slow = slowPolicy ? watchSlowConsumers(io, slowPolicy) : null;

for (const name of NAMESPACES) {
  const nsp = io.of(name);
  nsp.on("connection", onConnect);
  answerPings(nsp);
}
// Tenants: one dynamic namespace per tenant, each its own component instance.
io.of(TENANTS).on("connection", (socket) => {
  answerPings(socket.nsp);
  onConnect(socket);
});

let server;
try {
  // The demo page on every path but /socket.io/ (host/demo-page/, as the Rust demo).
  server = await cluster.listen(io, { httpServer: pageServer() });
} catch (e) {
  fail(4, `cannot listen: ${e.message}`);
}
process.stderr.write(`demo worker serving worker=${worker} pid=${process.pid} runtime=node${recoveryMs ? ` recovery_ms=${recoveryMs}` : ""}\n`);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * The graceful drain (as the Rust demo's `drain`), within the primary's
 * grace period (SIO_CLUSTER_GRACE): no new connections (the listener
 * closes; a rolling restart routes no new session here); this worker's
 * cluster requests in flight may finish (a quarter of the grace at most);
 * then every client's Engine.IO transport closes (the client sees
 * `transport close` and reconnects to another worker), and only then
 * io.close() closes every namespace's adapter (ADAPTER_CLOSE: the others
 * forget its nodes at once); last the hub link is flushed. The transports
 * go first because socket.io's `close()` closes the adapters before the
 * engine: a request still pending then failed with "adapter closed", and
 * that answer reached a client whose connection was still open.
 */
async function drain() {
  const t0 = Date.now();
  const grace = cluster.env.graceMs ?? 10_000;
  process.stderr.write(`demo worker draining worker=${worker} pid=${process.pid}\n`);
  server.close();
  let settled = false;
  for (const end = t0 + grace / 4; !settled && Date.now() < end; await sleep(10)) {
    settled = cluster.workerStats().pendingRequests === 0;
  }
  io.engine.close();
  io.close();
  cluster.link.flush();
  for (const end = Date.now() + 500; cluster.link.queuedBytes > 0 && Date.now() < end; ) await sleep(5);
  // Let the transports' close frames go out.
  await sleep(20);
  process.stderr.write(`demo worker drained worker=${worker} settled=${settled} ms=${Date.now() - t0}\n`);
  process.exit(0);
}

process.once("SIGTERM", drain);
process.once("SIGINT", () => {
  io.close();
  process.exit(0);
});
