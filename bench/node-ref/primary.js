#!/usr/bin/env node
"use strict";
// Node.js reference cluster for sio-cluster benchmarks and contract tests.
//
// Set up exactly as the @socket.io/cluster-adapter docs say: a node:cluster
// primary running @socket.io/sticky's setupMaster (least-connection) and the
// adapter's setupPrimary() relay; every worker runs a Socket.IO server with
// createAdapter() + setupWorker(io). The events implemented by the workers are
// those of ../../shared/demo-contract.md (see worker.js).
//
// Deviations from the docs' snippet, all outside the hot path:
//  * the worker count and port come from the command line;
//  * each worker gets a stable 0-based index (env SIO_WORKER_INDEX), reused when
//    a dead worker is respawned (the docs respawn on "exit"; so do we, except
//    while shutting down);
//  * a ready line is printed once every worker's adapter sees the whole cluster;
//  * SIGTERM/SIGINT stop the workers and exit (no orphans).

const cluster = require("node:cluster");
const http = require("node:http");
const path = require("node:path");

const USAGE = `usage: node bench/node-ref/primary.js [--workers N] [--port P] [--host H]

Starts the Node.js reference Socket.IO cluster (socket.io 4.8 +
@socket.io/cluster-adapter 0.3 + @socket.io/sticky, least-connection) that
implements ../shared/demo-contract.md.

  --workers N   number of worker processes (default 2)
  --port P      public port (default 3000)
  --host H      listen address (default: all interfaces)
  -h, --help    this text

Prints "node-ref ready port=P workers=N pid=PID" on stdout once every worker is
up and its adapter counts N servers. SIGTERM/SIGINT stop the workers and exit 0.`;

function parseArgs(argv) {
  const opts = { workers: 2, port: 3000, host: undefined };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) fail(`${a} needs a value`);
      return argv[++i];
    };
    if (a === "-h" || a === "--help") {
      console.log(USAGE);
      process.exit(0);
    } else if (a === "--workers" || a === "-w") opts.workers = intArg(a, next(), 1, 256);
    else if (a === "--port" || a === "-p") opts.port = intArg(a, next(), 0, 65535);
    else if (a === "--host") opts.host = next();
    else fail(`unknown argument: ${a}`);
  }
  return opts;
}

function intArg(name, v, min, max) {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) fail(`${name}: expected an integer in [${min}, ${max}], got "${v}"`);
  return n;
}

function fail(msg) {
  console.error(`node-ref: ${msg}\n\n${USAGE}`);
  process.exit(2);
}

if (cluster.isPrimary) {
  const opts = parseArgs(process.argv.slice(2));
  require("../lib/deps.cjs").ensureDeps();
  const { setupMaster } = require("@socket.io/sticky");
  const { setupPrimary } = require("@socket.io/cluster-adapter");

  const httpServer = http.createServer();

  // sticky sessions
  setupMaster(httpServer, {
    loadBalancingMethod: "least-connection",
  });

  // relay between the workers
  setupPrimary();

  // needed for packets containing buffers (Node.js >= 16)
  cluster.setupPrimary({
    serialization: "advanced",
    exec: path.join(__dirname, "worker.js"),
    args: ["--workers", String(opts.workers)],
  });

  httpServer.on("error", (err) => {
    console.error(`node-ref: cannot listen on port ${opts.port}: ${err.message}`);
    shutdown(1);
  });
  httpServer.listen(opts.port, opts.host, () => {
    opts.port = httpServer.address().port;
  });

  const indexOf = new Map(); // cluster worker id -> 0-based index
  const ready = new Set(); // indices that reported ready
  let announced = false;
  let shuttingDown = false;

  function fork(index) {
    const w = cluster.fork({ SIO_WORKER_INDEX: String(index) });
    indexOf.set(w.id, index);
    return w;
  }

  cluster.on("message", (worker, msg) => {
    if (msg && msg.type === "node-ref:ready") {
      ready.add(msg.index);
      if (!announced && ready.size === opts.workers) {
        announced = true;
        const announce = () =>
          console.log(`node-ref ready port=${opts.port} workers=${opts.workers} pid=${process.pid}`);
        if (httpServer.listening) announce();
        else httpServer.once("listening", announce);
      }
    }
  });

  cluster.on("exit", (worker, code, signal) => {
    const index = indexOf.get(worker.id);
    indexOf.delete(worker.id);
    if (shuttingDown) {
      if (Object.keys(cluster.workers).length === 0) process.exit(exitCode);
      return;
    }
    console.error(`node-ref: worker ${index} (pid ${worker.process.pid}) died (${signal || code}), restarting`);
    ready.delete(index);
    fork(index);
  });

  for (let i = 0; i < opts.workers; i++) fork(i);

  let exitCode = 0;
  function shutdown(code) {
    if (shuttingDown) return;
    shuttingDown = true;
    exitCode = code;
    httpServer.close();
    const workers = Object.values(cluster.workers);
    if (workers.length === 0) process.exit(exitCode);
    for (const w of workers) w.process.kill("SIGTERM");
    setTimeout(() => {
      for (const w of Object.values(cluster.workers)) w.process.kill("SIGKILL");
      process.exit(exitCode || 1);
    }, 3000).unref();
  }
  process.on("SIGTERM", () => shutdown(0));
  process.on("SIGINT", () => shutdown(0));
} else {
  require("./worker.js");
}
