#!/usr/bin/env node
"use strict";
// The bound of a Node cluster (issue 11 item 5): ONE socket.io process, no
// cluster adapter (socket.io's default in-memory Adapter), no primary, no
// sticky router, every client local. Same socket.io as the Node reference
// (bench/package-lock.json). It implements the rows of
// ../../shared/demo-contract.md a one-process server can: whoami (worker 0),
// join, leave, to, to_except, all, broadcast, fetch, sockets_join,
// sockets_leave, disconnect_room, ask, server_emit (no other server: no
// responses), server_count (1). The handlers are node-ref/worker.js's.
//
//   node bench/node-ref/single.js --port 3000
//   -> single ready port=3000 workers=1 pid=1234     (SIGTERM/SIGINT: exit 0)

const http = require("node:http");

const USAGE = `usage: node bench/node-ref/single.js [--port P] [--host H] [--workers N]

One socket.io 4.8 process with the default in-memory adapter (no cluster):
the lower bound of a Node cluster's CPU per delivery.

  --port P      public port (default 3000)
  --host H      listen address (default: all interfaces)
  --workers N   accepted and ignored (so compare scripts can pass {N});
                server_count always answers 1
  -h, --help    this text`;

function fail(msg) {
  console.error(`single: ${msg}\n\n${USAGE}`);
  process.exit(2);
}

const opts = { port: 3000, host: undefined };
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
  } else if (a === "--host") opts.host = next();
  else if (a === "--workers" || a === "-w") next();
  else fail(`unknown argument: ${a}`);
}

require("../lib/deps.cjs").ensureDeps();
const { Server } = require("socket.io");

const WORKER = 0;
const httpServer = http.createServer();
const io = new Server(httpServer); // default in-memory adapter

const isFn = (f) => typeof f === "function";
const errString = (err) => (err ? String((err && err.message) || err) : null);

io.on("connection", (socket) => {
  socket.on("whoami", (ack) => {
    if (isFn(ack)) ack({ pid: process.pid, worker: WORKER });
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
  socket.on("to_except", (room, exceptRoom, event, payload) => {
    io.to(room).except(exceptRoom).emit(event, payload);
  });
  socket.on("all", (event, payload) => {
    io.emit(event, payload);
  });
  socket.on("broadcast", (event, payload) => {
    socket.broadcast.emit(event, payload);
  });
  socket.on("fetch", async (room, ack) => {
    const sockets = await io.in(room).fetchSockets();
    if (isFn(ack)) ack(sockets.map((s) => ({ id: s.id, rooms: [...s.rooms].sort() })));
  });
  socket.on("sockets_join", (room, newRoom, ack) => {
    io.in(room).socketsJoin(newRoom);
    if (isFn(ack)) ack(true);
  });
  socket.on("sockets_leave", (room, oldRoom, ack) => {
    io.in(room).socketsLeave(oldRoom);
    if (isFn(ack)) ack(true);
  });
  socket.on("disconnect_room", (room, ack) => {
    if (isFn(ack)) ack(true);
    io.in(room).disconnectSockets(true);
  });
  socket.on("ask", (room, timeoutMs, ack) => {
    io.to(room)
      .timeout(Number(timeoutMs))
      .emit("question", { from: socket.id, worker: WORKER }, (err, responses) => {
        if (isFn(ack)) ack({ err: errString(err), responses: responses || [] });
      });
  });
  socket.on("server_emit", (_payload, ack) => {
    // No other server: socket.io's in-memory adapter answers at once with none.
    if (isFn(ack)) ack({ err: null, responses: [] });
  });
  socket.on("server_count", (ack) => {
    if (isFn(ack)) ack(1);
  });
});

httpServer.on("error", (err) => {
  console.error(`single: cannot listen on port ${opts.port}: ${err.message}`);
  process.exit(1);
});
httpServer.listen(opts.port, opts.host, () => {
  console.log(`single ready port=${httpServer.address().port} workers=1 pid=${process.pid}`);
});

for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => process.exit(0));
