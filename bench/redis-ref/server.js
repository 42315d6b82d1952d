#!/usr/bin/env node
"use strict";
// The Node anchor of the cross-machine benchmark (issue 12 item 6): ONE
// socket.io process on @socket.io/redis-adapter (classic pub/sub, the
// package's default `createAdapter`), set up as its README says with the
// `redis` package (4.x, the major its own tests use): a publishing client and its `duplicate()` for
// subscriptions. Run two of them (two ports, one Redis, the same --key) and
// they form one cluster. Versions are pinned by bench/package-lock.json.
//
// It implements the rows of ../../shared/demo-contract.md the load client
// needs: whoami ({pid, worker: --index}), join, leave, to, server_count
// (the adapter's serverCount(), i.e. PUBSUB NUMSUB of its request channel).
//
//   node bench/redis-ref/server.js --port 3001 --redis redis://127.0.0.1:6379 --index 0
//   -> redis-ref ready port=3001 index=0 pid=1234     (SIGTERM/SIGINT: exit 0)

const http = require("node:http");

const USAGE = `usage: node bench/redis-ref/server.js --redis URL [--port P] [--index I] [--key K]

One socket.io 4.8 process on @socket.io/redis-adapter 8.3 (Redis pub/sub).
Start several with the same --redis and --key: they are one cluster.

  --redis URL   Redis server (redis://host:port), required
  --port P      public port (default 3000)
  --host H      listen address (default: all interfaces)
  --index I     this server's index, answered by whoami as \`worker\` (default 0)
  --key K       the adapter's channel prefix (default socket.io)
  --workers N   accepted and ignored (so compare scripts can pass {N})
  -h, --help    this text`;

function fail(msg) {
  console.error(`redis-ref: ${msg}\n\n${USAGE}`);
  process.exit(2);
}

const opts = { port: 3000, host: undefined, index: 0, key: "socket.io", redis: null };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  const next = () => {
    if (i + 1 >= argv.length) fail(`${a} needs a value`);
    return argv[++i];
  };
  if (a === "-h" || a === "--help") {
    console.log(USAGE);
    process.exit(0);
  } else if (a === "--port" || a === "-p") {
    const n = Number(next());
    if (!Number.isInteger(n) || n < 0 || n > 65535) fail(`--port: expected an integer in [0, 65535]`);
    opts.port = n;
  } else if (a === "--index") {
    const n = Number(next());
    if (!Number.isInteger(n) || n < 0) fail(`--index: expected an integer >= 0`);
    opts.index = n;
  } else if (a === "--host") opts.host = next();
  else if (a === "--key") opts.key = next();
  else if (a === "--redis") opts.redis = next();
  else if (a === "--workers" || a === "-w") next();
  else fail(`unknown argument: ${a}`);
}
if (!opts.redis) fail("--redis URL is required");

require("../lib/deps.cjs").ensureDeps();
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const { createClient } = require("redis");

const isFn = (f) => typeof f === "function";

async function main() {
  const pubClient = createClient({ url: opts.redis });
  const subClient = pubClient.duplicate();
  for (const [name, c] of [["pub", pubClient], ["sub", subClient]]) {
    c.on("error", (err) => console.error(`redis-ref: redis ${name} client: ${err.message}`));
  }
  await Promise.all([pubClient.connect(), subClient.connect()]);

  const httpServer = http.createServer();
  const io = new Server(httpServer);
  io.adapter(createAdapter(pubClient, subClient, { key: opts.key }));

  io.on("connection", (socket) => {
    socket.on("whoami", (ack) => {
      if (isFn(ack)) ack({ pid: process.pid, worker: opts.index });
    });
    socket.on("join", (room, ack) => {
      socket.join(room);
      if (isFn(ack)) ack(true);
    });
    socket.on("leave", (room, ack) => {
      socket.leave(room);
      if (isFn(ack)) ack(true);
    });
    socket.on("to", (room, event, payload) => {
      io.to(room).emit(event, payload);
    });
    socket.on("server_count", async (ack) => {
      let n = null;
      try {
        n = await io.of("/").adapter.serverCount();
      } catch (e) {
        console.error(`redis-ref: serverCount: ${e.message}`);
      }
      if (isFn(ack)) ack(n);
    });
  });

  httpServer.on("error", (err) => {
    console.error(`redis-ref: cannot listen on port ${opts.port}: ${err.message}`);
    process.exit(1);
  });
  httpServer.listen(opts.port, opts.host, () => {
    console.log(`redis-ref ready port=${httpServer.address().port} index=${opts.index} pid=${process.pid}`);
  });
}

main().catch((e) => {
  console.error(`redis-ref: ${e.message}`);
  process.exit(1);
});

for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => process.exit(0));
