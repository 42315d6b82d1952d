// Every adapter operation across socket.io servers of this process, each
// attached to the real hub (`sio-cluster-host hub --socket`) with its own
// component instance, driven by the official socket.io client.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Server } from "socket.io";
import { instantiateAdapter } from "../src/component.js";
import { RESTARTED_ERROR } from "../src/adapter.js";
import { isSocketioxideId } from "../src/ids.js";
import { member, next, rawLink, record, sleep, startHub, trapInjector, until } from "./helpers.mjs";

const uncaught = [];
process.on("uncaughtException", (e) => uncaught.push(e));

let hub;
let A;
let B;
const injector = trapInjector("on-frames-packed");
before(async () => {
  hub = await startHub();
  A = await member(hub, { index: 0, adapterOptions: { instantiateCore: injector.hook } });
  B = await member(hub, { index: 1 });
  await until(async () => (await A.io.of("/").adapter.serverCount()) === 2 && (await B.io.of("/").adapter.serverCount()) === 2, 5000, "both nodes up");
});
after(async () => {
  await A?.close();
  await B?.close();
  await hub?.stop();
  assert.deepEqual(uncaught, [], "no exception escaped");
});

let n = 0;
const room = (t) => `${t}-${++n}`;
/** The server-side socket of client `c`, on whichever member holds it. */
const sock = (c, nsp = "/") => A.io.of(nsp).sockets.get(c.id) ?? B.io.of(nsp).sockets.get(c.id);

describe("broadcast", () => {
  test("rooms, except, all, binary, volatile, compress cross the hub", async () => {
    const [a1, a2, b1, b2] = [await A.client(), await A.client(), await B.client(), await B.client()];
    const r = room("r");
    const x = room("x");
    // b2 is in no room: a room broadcast must not reach it (rooms lowered as
    // arrays: jco lowers a Set as an empty list, which means everyone).
    const outsider = record(b2, "m");
    for (const s of [a1, a2, b1]) sock(s).join(r);
    A.io.of("/").sockets.get(a2.id).join(x);
    // to + except: a2 is skipped on its node, b1 gets it across.
    const skipped = record(a2, "m");
    const w = [next(a1, "m"), next(b1, "m")];
    B.io.to(r).except(x).emit("m", "hi", Buffer.from([1, 2]));
    for (const [text, bin] of await Promise.all(w)) {
      assert.equal(text, "hi");
      assert.deepEqual([...bin], [1, 2]);
    }
    // volatile and compress flags are carried; everybody still gets it here.
    const v = [a1, a2, b1].map((s) => next(s, "v"));
    A.io.volatile.compress(false).emit("v", 1);
    for (const args of await Promise.all(v)) assert.deepEqual(args, [1]);
    await sleep(50);
    assert.deepEqual(skipped, []);
    assert.deepEqual(outsider, []);
  });

  test("socket.broadcast skips the sender on every node; local stays local", async () => {
    const [a1, a2, b1] = [await A.client(), await A.client(), await B.client()];
    const sender = A.io.of("/").sockets.get(a1.id);
    const gotSender = record(a1, "m");
    const w = [next(a2, "m"), next(b1, "m")];
    sender.broadcast.emit("m", { from: a1.id });
    for (const args of await Promise.all(w)) assert.deepEqual(args, [{ from: a1.id }]);
    const farLocal = record(b1, "l");
    const l = next(a2, "l");
    A.io.local.emit("l", 1);
    assert.deepEqual(await l, [1]);
    await sleep(100);
    assert.deepEqual(gotSender, []);
    assert.deepEqual(farLocal, []);
  });
});

describe("broadcast with acks", () => {
  test("per-socket acks from both nodes, asked from either", async () => {
    const r = room("q");
    const clients = [await A.client(), await A.client(), await B.client(), await B.client()];
    for (const c of clients) {
      sock(c).join(r);
      c.on("question", (q, cb) => cb({ id: c.id, q }));
    }
    for (const asker of [A, B]) {
      const responses = await asker.io.to(r).timeout(2000).emitWithAck("question", "ok?");
      assert.deepEqual(responses.map((x) => x.id).sort(), clients.map((c) => c.id).sort());
      assert.ok(responses.every((x) => x.q === "ok?"));
    }
  });

  test("a silent client: timeout with the partial answers; binary acks stay binary", async () => {
    const r = room("qt");
    const [a1, a2, b1] = [await A.client(), await A.client(), await B.client()];
    for (const c of [a1, a2, b1]) sock(c).join(r);
    a1.on("question", (_q, cb) => cb(Buffer.from([7])));
    b1.on("question", (_q, cb) => cb(Buffer.from([8])));
    const t0 = Date.now();
    const res = await new Promise((resolve) => A.io.to(r).timeout(400).emit("question", 1, (err, responses) => resolve({ err, responses })));
    assert.equal(res.err?.message, "operation has timed out");
    assert.deepEqual(res.responses.map((b) => (Buffer.isBuffer(b) ? b[0] : b)).sort(), [7, 8]);
    assert.ok(Date.now() - t0 < 2000);
    // Nobody in the room: no error, no answers.
    assert.deepEqual(await B.io.to(room("nobody")).timeout(300).emitWithAck("question", 1), []);
  });
});

describe("sockets", () => {
  test("fetchSockets: local Socket objects and remote sockets with rooms, handshake and data", async () => {
    const r = room("f");
    const a1 = await A.client();
    const b1 = await B.client("/", { auth: { token: "abc" }, query: { q: "1" } });
    const sa = A.io.of("/").sockets.get(a1.id);
    const sb = B.io.of("/").sockets.get(b1.id);
    sa.join(r);
    sb.join([r, "z"]);
    sb.data = { user: "bob", n: 3 };
    const got = await A.io.in(r).fetchSockets();
    assert.equal(got.length, 2);
    const local = got.find((s) => s.id === a1.id);
    const remote = got.find((s) => s.id === b1.id);
    assert.equal(local, sa, "own sockets are the local Socket objects");
    assert.deepEqual([...remote.rooms].sort(), [b1.id, r, "z"].sort());
    assert.deepEqual(remote.data, { user: "bob", n: 3 });
    assert.deepEqual(remote.handshake.auth, { token: "abc" });
    assert.equal(remote.handshake.query.q, "1");
    assert.ok(isSocketioxideId(remote.id));
    // RemoteSocket operations reach the socket on the other node.
    const m = next(b1, "direct");
    remote.emit("direct", 42);
    assert.deepEqual(await m, [42]);
    remote.join("joined-remotely");
    await until(() => sb.rooms.has("joined-remotely"), 2000, "remote join");
    remote.leave("z");
    await until(() => !sb.rooms.has("z"), 2000, "remote leave");
    const gone = next(b1, "disconnect");
    remote.disconnect(true);
    assert.equal((await gone)[0], "io server disconnect");
  });

  test("socketsJoin / socketsLeave / disconnectSockets across nodes", async () => {
    const r = room("sj");
    const r2 = room("sj2");
    const [a1, b1, b2] = [await A.client(), await B.client(), await B.client()];
    A.io.of("/").sockets.get(a1.id).join(r);
    B.io.of("/").sockets.get(b1.id).join(r);
    A.io.in(r).socketsJoin(r2);
    await until(async () => (await B.io.in(r2).fetchSockets()).length === 2, 2000, "sockets joined");
    assert.deepEqual((await A.io.in(r2).fetchSockets()).map((s) => s.id).sort(), [a1.id, b1.id].sort());
    B.io.in(r).socketsLeave(r2);
    await until(async () => (await A.io.in(r2).fetchSockets()).length === 0, 2000, "sockets left");
    const gone = [next(a1, "disconnect"), next(b1, "disconnect")];
    B.io.in(r).disconnectSockets(true);
    for (const [reason] of await Promise.all(gone)) assert.equal(reason, "io server disconnect");
    assert.ok(b2.connected);
  });
});

describe("server-side emit", () => {
  test("with and without acks; binary arguments cross between Node hosts", async () => {
    const seen = [];
    B.io.on("hello", (...args) => {
      const cb = typeof args.at(-1) === "function" ? args.pop() : null;
      seen.push(args);
      cb?.({ from: "B", got: args.length, bin: Buffer.from([9]) });
    });
    A.io.serverSideEmit("hello", 1, Buffer.from([5, 6]));
    await until(() => seen.length === 1, 2000, "server-side event");
    assert.equal(seen[0][0], 1);
    assert.deepEqual([...seen[0][1]], [5, 6]);
    const replies = await A.io.serverSideEmitWithAck("hello", "x");
    assert.equal(replies.length, 1);
    assert.deepEqual({ ...replies[0], bin: [...replies[0].bin] }, { from: "B", got: 1, bin: [9] });
    assert.ok(Buffer.isBuffer(replies[0].bin), "a binary reply stays binary between Node hosts");
  });
});

describe("cluster membership", () => {
  test("heartbeats: a node that stops heartbeating is dropped after the timeout", async () => {
    const C = await member(hub, { index: 2, heartbeatIntervalMs: 200, heartbeatTimeoutMs: 800 });
    const hb = C.io.of("/hb");
    const cfg = { nsp: "/hb", rooms: "host", heartbeatIntervalMs: 200, heartbeatTimeoutMs: 800, requestTimeoutMs: 5000, maxFrameBytes: 1 << 20 };
    const silent = new (instantiateAdapter().Node)({ uid: 0x51e7n, ...cfg });
    const link = await rawLink(hub);
    link.onFrames = () => {};
    link.start();
    for (const e of silent.init(0n)) if (e.tag === "publish") link.publish(0x51e7n, "/hb", e.val);
    await until(async () => (await hb.adapter.serverCount()) === 2, 2000, "silent node counted");
    const t0 = Date.now();
    // Its link stays open: only the heartbeat timeout removes it.
    await until(async () => (await hb.adapter.serverCount()) === 1, 4000, "silent node dropped");
    const took = Date.now() - t0;
    assert.ok(took >= 300 && took < 3000, `dropped after ${took} ms (timeout 800 ms)`);
    assert.ok(!link.closed);
    link.close();
    silent[Symbol.dispose]();
    await C.close();
    await until(async () => (await A.io.of("/").adapter.serverCount()) === 2, 3000, "C left");
  });

  test("serverCount, and fast leave on NodeDown", async () => {
    assert.equal(await A.io.of("/").adapter.serverCount(), 2);
    // A node that announces itself once and then says nothing.
    const silent = new (instantiateAdapter().Node)({ uid: 0x5157n, nsp: "/", rooms: "host", heartbeatIntervalMs: 5000, heartbeatTimeoutMs: 10000, requestTimeoutMs: 5000, maxFrameBytes: 1 << 20 });
    const link = await rawLink(hub);
    link.onFrames = () => {};
    link.start();
    for (const e of silent.init(0n)) if (e.tag === "publish") link.publish(0x5157n, "/", e.val);
    await until(async () => (await A.io.of("/").adapter.serverCount()) === 3, 2000, "silent node counted");
    // Fast leave: its link closes, the hub says NodeDown, no heartbeat timeout needed.
    const t0 = Date.now();
    link.close();
    await until(async () => (await A.io.of("/").adapter.serverCount()) === 2, 3000, "fast leave");
    assert.ok(Date.now() - t0 < 3000, "well before the 10 s heartbeat timeout");
    silent[Symbol.dispose]();
  });

  test("one component instance per namespace; close() disposes it and the others see it leave", async () => {
    const na = A.io.of("/iso");
    const nb = B.io.of("/iso");
    await until(async () => (await na.adapter.serverCount()) === 2, 3000, "/iso up");
    assert.notEqual(na.adapter.node, A.io.of("/").adapter.node);
    const c = await A.client("/iso");
    const main = await B.client("/");
    na.sockets.get(c.id).join("shared-name");
    B.io.of("/").sockets.get(main.id).join("shared-name");
    assert.deepEqual((await nb.in("shared-name").fetchSockets()).map((s) => s.id), [c.id]);
    const node = nb.adapter.node;
    nb.adapter.close();
    assert.throws(() => node.serverCount(), /resource/i, "the resource is disposed");
    await until(async () => (await na.adapter.serverCount()) === 1, 3000, "/iso node left");
  });
});

describe("faults", () => {
  test("bad frames from the hub are counted, never thrown, and lose no other client's data", async () => {
    const a1 = await A.client();
    const got = [];
    a1.on("seq", (i) => got.push(i));
    const rogue = await rawLink(hub);
    rogue.onFrames = () => {};
    rogue.start();
    // A well-formed frame whose packet is garbage.
    const forger = new (instantiateAdapter().Node)({ uid: 0xbadn, nsp: "/", rooms: "host", heartbeatIntervalMs: 5000, heartbeatTimeoutMs: 10000, requestTimeoutMs: 5000, maxFrameBytes: 1 << 20 });
    const forged = forger.broadcast(0n, { rooms: [], except: [], flags: { broadcast: true } }, Buffer.from([1, 2, 3])).find((e) => e.tag === "publish").val;
    const before = { ...A.cluster.counters };
    const total = 200;
    for (let i = 0; i < total; i++) {
      B.io.emit("seq", i);
      if (i % 20 === 0) {
        rogue.publish(0xbadn, "/", Buffer.from([0xff, 1, 2, 3]));
        rogue.publish(0xbadn, "/", Buffer.alloc(0));
        rogue.publish(0xbadn, "/", Buffer.from([1, 0xff, 0xff]));
        rogue.publish(0xbadn, "/", forged);
      }
    }
    await until(() => got.length === total, 5000, "every broadcast");
    assert.deepEqual(got, [...Array(total).keys()]);
    await until(() => A.cluster.counters.badRemoteData > before.badRemoteData, 2000, "bad packet counted");
    assert.ok(A.cluster.counters.framesRefused - before.framesRefused >= 3 * 10, `${A.cluster.counters.framesRefused - before.framesRefused} frames refused`);
    assert.ok(A.cluster.counters.badRemoteData - before.badRemoteData >= 10);
    assert.ok(a1.connected);
    assert.equal(A.cluster.stats().link.protocolErrors, 0);
    forger[Symbol.dispose]();
    rogue.close();
  });

  test("a trap replaces the instance: pending requests fail, rooms stay, the node is announced again", async () => {
    const a1 = await A.client();
    const b1 = await B.client();
    const sa = A.io.of("/").sockets.get(a1.id);
    sa.join("kept");
    const traps = A.cluster.counters.traps;
    // A's next on-frames-packed traps; a fetch from A waits for B's answer meanwhile.
    const fetch = A.io.fetchSockets();
    injector.arm();
    await assert.rejects(fetch, (e) => e.message === RESTARTED_ERROR);
    assert.equal(injector.state.fired, 1);
    assert.equal(A.cluster.counters.traps, traps + 1);
    // The replacement serves: rooms are socket.io's, the node announced itself again.
    await until(async () => (await B.io.of("/").adapter.serverCount()) === 2 && (await A.io.of("/").adapter.serverCount()) === 2, 3000, "re-announced");
    // A trap in an operation socket.io calls (io.emit) is counted, not thrown into the caller.
    const emitInjector = trapInjector("broadcast");
    const D = await member(hub, { index: 5, adapterOptions: { instantiateCore: emitInjector.hook } });
    try {
      emitInjector.arm();
      assert.doesNotThrow(() => D.io.emit("lost", 1));
      assert.equal(emitInjector.state.fired, 1);
      assert.equal(D.cluster.counters.operationErrors, 1);
      assert.equal(D.cluster.counters.traps, 1);
      await until(async () => (await D.io.of("/").adapter.serverCount()) === 3, 3000, "D re-announced");
      const w = next(a1, "after-d");
      D.io.emit("after-d", 2);
      assert.deepEqual(await w, [2]);
    } finally {
      await D.close();
    }
    const m = next(a1, "after");
    B.io.to("kept").emit("after", "trap");
    assert.deepEqual(await m, ["trap"]);
    assert.ok((await B.io.in("kept").fetchSockets()).some((s) => s.id === a1.id));
    assert.ok(b1.connected);
  });
});

test("memory cap: an instance that grows past it is replaced (jco has no StoreLimits)", async () => {
  const C = await member(hub, { index: 3, adapterOptions: { instanceMemoryBytes: 4 * 1024 * 1024 } });
  try {
    await until(async () => (await C.io.of("/").adapter.serverCount()) === 3, 3000, "C up");
    const c1 = await C.client();
    // A 5 MB broadcast makes C's instance grow past 4 MiB while it reads the frame.
    B.io.emit("big", Buffer.alloc(5 * 1024 * 1024, 1));
    await until(() => C.cluster.counters.memoryCapped === 1, 5000, "memory cap hit");
    assert.equal(C.cluster.counters.traps, 1);
    assert.match(C.logs.join("\n"), /exceeds the cap of 4194304 B/);
    // The replacement serves.
    await until(async () => (await C.io.of("/").adapter.serverCount()) === 3, 3000, "C re-announced");
    const m = next(c1, "small");
    B.io.emit("small", 1);
    assert.deepEqual(await m, [1]);
  } finally {
    await C.close();
  }
});

test("io.adapter() called again: the old node leaves instead of lingering", async () => {
  const C = await member(hub, { index: 4 });
  try {
    await until(async () => (await A.io.of("/").adapter.serverCount()) === 3, 3000, "C up");
    const old = C.io.of("/").adapter;
    C.io.adapter(C.cluster.adapter());
    assert.notEqual(C.io.of("/").adapter, old);
    assert.ok(old.closed);
    // Still three servers (C's new node replaced its old one), not four.
    await sleep(200);
    assert.equal(await A.io.of("/").adapter.serverCount(), 3);
  } finally {
    await C.close();
  }
});

test("socket and engine ids are socketioxide ids", async () => {
  const c = await A.client();
  assert.ok(isSocketioxideId(c.id), c.id);
  assert.ok(isSocketioxideId(c.io.engine.id), c.io.engine.id);
  assert.ok(Server);
});
