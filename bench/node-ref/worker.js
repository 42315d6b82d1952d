"use strict";
// One worker of the Node.js reference cluster: a Socket.IO server with the
// cluster adapter and sticky sessions, implementing ../../shared/demo-contract.md.
// Started by primary.js through node:cluster; not meant to be run directly.

const cluster = require("node:cluster");
const http = require("node:http");
const { Server } = require("socket.io");
const { setupWorker } = require("@socket.io/sticky");
const { createAdapter } = require("@socket.io/cluster-adapter");

if (!cluster.isWorker) {
  console.error("node-ref worker.js: start the cluster with node bench/node-ref/primary.js");
  process.exit(2);
}

const WORKER = Number(process.env.SIO_WORKER_INDEX);
const wi = process.argv.indexOf("--workers");
const EXPECTED = wi >= 0 ? Number(process.argv[wi + 1]) : 1;

const httpServer = http.createServer();
const io = new Server(httpServer);

// use the cluster adapter
io.adapter(createAdapter());

// connection with the primary process (sticky sessions)
setupWorker(io);

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
    let list;
    try {
      const sockets = await io.in(room).fetchSockets();
      list = sockets.map((s) => ({ id: s.id, rooms: [...s.rooms].sort() }));
    } catch (err) {
      console.error(`node-ref worker ${WORKER}: fetchSockets failed: ${errString(err)}`);
      list = [];
    }
    if (isFn(ack)) ack(list);
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

  socket.on("server_emit", (payload, ack) => {
    io.serverSideEmit("ping", payload, (err, responses) => {
      const sorted = [...(responses || [])].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
      if (isFn(ack)) ack({ err: errString(err), responses: sorted });
    });
  });

  socket.on("server_count", async (ack) => {
    const n = await io.of("/").adapter.serverCount();
    if (isFn(ack)) ack(n);
  });
});

// server-side emit from another worker: answer with our index
io.on("ping", (_payload, cb) => {
  if (isFn(cb)) cb(WORKER);
});

// Tell the primary we are ready once the adapter sees the whole cluster
// (peers are discovered through heartbeats, so this takes a few milliseconds).
(async function reportReady() {
  const deadline = Date.now() + 15000;
  for (;;) {
    const n = await io.of("/").adapter.serverCount();
    if (n >= EXPECTED || Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  process.send({ type: "node-ref:ready", index: WORKER, pid: process.pid });
})();

process.on("SIGTERM", () => process.exit(0));
process.on("SIGINT", () => {}); // the primary decides; Ctrl-C reaches the whole group
process.on("disconnect", () => process.exit(0)); // primary gone: never linger
