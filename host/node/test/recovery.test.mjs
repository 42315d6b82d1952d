// Connection state recovery through the Node host (socket.io 4.8's
// persistSession / restoreSession over the component): two socket.io
// servers on one hub, the official client; the client moved between them by
// hand (its `_pid` and `_lastOffset` carried to a client of the other server,
// exactly what it would send), and the memory bound of the log in jco.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { io as ioc } from "socket.io-client";
import { instantiateAdapter } from "../src/component.js";
import { layout } from "../src/packet.js";
import { member, sleep, startHub, until } from "./helpers.mjs";

const serverOptions = { connectionStateRecovery: { maxDisconnectionDuration: 5000 } };
let hub;
let a;
let b;

function setup(io) {
  io.on("connection", (socket) => {
    socket.on("join", (room, ack) => {
      socket.join(room);
      socket.data = { joined: room };
      ack(true);
    });
    socket.on("state", (ack) => ack({ recovered: socket.recovered, data: socket.data, rooms: [...socket.rooms].sort() }));
  });
}

before(async () => {
  hub = await startHub();
  a = await member(hub, { index: 0, serverOptions, setup });
  b = await member(hub, { index: 1, serverOptions, setup });
  await until(() => a.cluster.adapters.get("/")?.node.serverCount() === 2 && b.cluster.adapters.get("/")?.node.serverCount() === 2, 5000, "two nodes");
});

after(async () => {
  await a?.close();
  await b?.close();
  await hub?.stop();
});

/** A client of `url` that resumes the session of `old` (what `old` would send on reconnect). */
async function resume(url, old) {
  const s = ioc(url, { transports: ["websocket"], forceNew: true, reconnection: false, autoConnect: false });
  s._pid = old._pid;
  s._lastOffset = old._lastOffset;
  s.events = [];
  s.onAny((...args) => s.events.push(args));
  s.connect();
  await new Promise((resolve, reject) => {
    s.once("connect", resolve);
    s.once("connect_error", reject);
  });
  return s;
}

test("restored on the other server: rooms, data, missed packets (binary and direct emits) once and in order", async () => {
  const c = await a.client();
  c.events = [];
  c.onAny((...args) => c.events.push(args));
  assert.equal(await c.timeout(3000).emitWithAck("join", "room1"), true);
  const sid = c.id;
  a.io.to("room1").emit("first", 1);
  await until(() => c.events.length === 1, 3000, "first");
  assert.equal(typeof c._lastOffset, "string");
  const closed = new Promise((r) => c.once("disconnect", r));
  c.io.engine.close();
  await closed;
  await until(() => a.io.of("/").sockets.size === 0, 3000, "server saw the close");
  // Missed: from either server, binary, a direct emit to the old socket id,
  // an ack packet and a volatile one (never replayed).
  b.io.to("room1").emit("m", 1);
  a.io.to("room1").emit("m", 2, Buffer.from([1, 2, 3]));
  b.io.to(sid).emit("m", 3);
  a.io.to("room1").volatile.emit("m", "volatile");
  a.io.to("room1").timeout(100).emit("m", "with ack", () => {});
  a.io.emit("m", 4);
  b.io.to("elsewhere").emit("m", "not for it");
  await sleep(100);
  const s = await resume(b.url, c);
  assert.equal(s.recovered, true);
  assert.equal(s.id, sid);
  await until(() => s.events.length >= 4, 3000, "missed packets");
  await sleep(200);
  const payloads = s.events.map(([ev, ...args]) => [ev, args[0]]);
  // Each sender's order is kept; between two servers' concurrent emits the
  // order is the restoring server's (b logs its own at once, a's on arrival).
  assert.equal(payloads.length, 4, JSON.stringify(payloads));
  assert.deepEqual([...payloads].sort((x, y) => x[1] - y[1]), [["m", 1], ["m", 2], ["m", 3], ["m", 4]]);
  const order = payloads.map((p) => p[1]);
  assert.ok(order.indexOf(1) < order.indexOf(3), "b's order");
  assert.ok(order.indexOf(2) < order.indexOf(4), "a's order");
  const bin = s.events.find((e) => e[1] === 2);
  assert.deepEqual(Buffer.from(bin[2]), Buffer.from([1, 2, 3]), "binary survives");
  for (const ev of s.events) assert.match(ev[ev.length - 1], /^[0-9a-f]{16}-\d+/, "offset last");
  const st = await s.timeout(3000).emitWithAck("state");
  assert.deepEqual(st, { recovered: true, data: { joined: "room1" }, rooms: ["room1", sid].sort() });
  // Live packets after the restore: stamped by b, the same bytes for local and remote senders.
  s.events = [];
  a.io.to("room1").emit("live", "from a");
  b.io.to("room1").emit("live", "from b");
  await until(() => s.events.length === 2, 3000, "live");
  assert.deepEqual(s.events.map((e) => e[1]).sort(), ["from a", "from b"]);
  // And back to a, from the last offset: nothing twice (socket.io#4880).
  const closed2 = new Promise((r) => s.once("disconnect", r));
  s.io.engine.close();
  await closed2;
  await until(() => b.io.of("/").sockets.size === 0, 3000, "b saw the close");
  b.io.to("room1").emit("again", 5);
  await sleep(100);
  const t = await resume(a.url, s);
  assert.equal(t.recovered, true);
  assert.equal(t.id, sid);
  await until(() => t.events.length >= 1, 3000, "again");
  await sleep(200);
  assert.deepEqual(t.events.map((e) => [e[0], e[1]]), [["again", 5]]);
  const stats = a.cluster.adapters.get("/").recoveryStats();
  assert.ok(stats.restored >= 1n || stats.restored >= 1, JSON.stringify(stats, (_k, v) => (typeof v === "bigint" ? Number(v) : v)));
  t.disconnect();
  s.disconnect();
  c.disconnect();
});

test("an unknown pid, a garbage offset: a fresh session, counted", async () => {
  const fake = { _pid: "AAAAAAAAAAAAAAAA", _lastOffset: "garbage" };
  const s = await resume(a.url, fake);
  assert.equal(s.recovered, false);
  const st = a.cluster.adapters.get("/").recoveryStats();
  assert.ok(Number(st.badOffsets) >= 1);
  s.disconnect();
});

test("the log's memory bound in jco: 30000 broadcasts of 4 KiB", () => {
  const api = instantiateAdapter();
  const node = new api.Node({ uid: 7n, nsp: "/", rooms: "host", heartbeatIntervalMs: 5000, heartbeatTimeoutMs: 10000, requestTimeoutMs: 5000, maxFrameBytes: 16 << 20 });
  node.enableRecovery({ maxDisconnectionMs: 120_000, maxLogEntries: 10_000, maxLogBytes: 16 << 20, maxSessions: 100_000, maxSessionBytes: 64 << 10 });
  const before = api.memoryBytes();
  const bytes = layout([`2["ev","${"x".repeat(4096)}"]`]);
  const opts = { rooms: [], except: [], flags: { local: false, broadcast: true, volatile: false, compress: false }, sid: undefined, target: undefined };
  let peak = 0;
  for (let i = 0; i < 30_000; i++) {
    node.broadcast(BigInt(i), opts, bytes);
    if (i % 1000 === 0) peak = Math.max(peak, api.memoryBytes());
  }
  peak = Math.max(peak, api.memoryBytes());
  const st = node.recoveryStats();
  console.log(`log: ${st.logEntries} entries, ${Number(st.logBytes)} B counted; instance memory ${before} B -> ${peak} B`);
  assert.ok(Number(st.logBytes) <= 16 << 20);
  assert.ok(peak < 40 << 20, `instance memory ${peak} B stays under 40 MiB`);
});
