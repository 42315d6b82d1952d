// The demo contract across machines: two (and three) `sio-cluster-host demo`
// primaries with two socketioxide workers each, joined through a real
// redis-server that this suite starts and stops. Client A sits on primary 1,
// client B on primary 2, so every assertion crosses Redis.
// Run by host/tests/redis.rs (`node --test e2e/redis-contract.mjs`).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { call, connect, next, record, sleep } from "./cluster.mjs";
import { startPrimary, startRedis, until } from "./redis-server.mjs";

let uniq = 0;
const room = (tag) => `${tag}-${process.pid}-${++uniq}`;

describe("two primaries through redis", () => {
  let redis;
  let p1;
  let p2;
  before(async () => {
    redis = await startRedis();
    const name = `c2-${process.pid}`;
    [p1, p2] = await Promise.all([
      startPrimary(redis.url, { name }),
      startPrimary(redis.url, { name }),
    ]);
  });
  after(async () => {
    assert.equal(await p1?.stop(), 0, "primary 1 stops cleanly");
    assert.equal(await p2?.stop(), 0, "primary 2 stops cleanly");
    await redis?.stop();
  });

  for (const transport of ["websocket", "polling"]) {
    describe(`contract over ${transport}`, () => {
      let open = [];
      // n clients on primary 1 and n on primary 2.
      const clients = async (n = 1) => {
        const a = [];
        const b = [];
        for (let i = 0; i < n; i++) {
          a.push(await connect(p1.url, transport));
          b.push(await connect(p2.url, transport));
        }
        open.push(...a, ...b);
        return [a, b];
      };
      const closeAll = () => {
        for (const s of open) s.disconnect();
        open = [];
      };

      test("server_count: every worker counts the four workers of both machines", async () => {
        const [[a], [b]] = await clients();
        await until("server_count 4 on both sides", async () =>
          (await call(a, "server_count")) === 4 && (await call(b, "server_count")) === 4);
        closeAll();
      });

      test("join + to: a room broadcast crosses machines; leave stops it", async () => {
        const [[a, a2], [b]] = await clients(2);
        const r = room("r");
        assert.equal(await call(a, "join", r), true);
        const gotA2 = record(a2, "m");
        const gotB = record(b, "m");
        b.emit("to", r, "m", { n: 1 });
        assert.deepEqual(await next(a, "m"), [{ n: 1 }]);
        assert.equal(await call(a, "leave", r), true);
        b.emit("to", r, "m", { n: 2 });
        b.emit("to", a.id, "m", { n: 3 });
        assert.deepEqual(await next(a, "m"), [{ n: 3 }]);
        await sleep(100);
        assert.deepEqual(gotA2, []);
        assert.deepEqual(gotB, []);
        closeAll();
      });

      test("to_except: the except room is skipped on both machines", async () => {
        const [[a, a2], [b, b2]] = await clients(2);
        const r = room("r");
        const x = room("x");
        for (const s of [a, a2, b, b2]) assert.equal(await call(s, "join", r), true);
        assert.equal(await call(a2, "join", x), true);
        assert.equal(await call(b2, "join", x), true);
        const skipped = [record(a2, "m"), record(b2, "m")];
        const waits = [a, b].map((s) => next(s, "m"));
        a.emit("to_except", r, x, "m", "hi");
        for (const args of await Promise.all(waits)) assert.deepEqual(args, ["hi"]);
        await sleep(100);
        assert.deepEqual(skipped, [[], []]);
        closeAll();
      });

      test("all: a binary payload reaches both machines", async () => {
        const [[a, a2], [b]] = await clients(2);
        const waits = [a, a2, b].map((s) => next(s, "bin"));
        b.emit("all", "bin", [1, "2", Buffer.from([3, 4])]);
        for (const [payload] of await Promise.all(waits)) {
          assert.equal(payload[0], 1);
          assert.equal(payload[1], "2");
          assert.ok(Buffer.isBuffer(payload[2]), "third item is a Buffer");
          assert.deepEqual([...payload[2]], [3, 4]);
        }
        closeAll();
      });

      test("broadcast: everyone but the sender, on both machines", async () => {
        const [[a, a2], [b, b2]] = await clients(2);
        const gotSender = record(a, "m");
        const waits = [a2, b, b2].map((s) => next(s, "m"));
        a.emit("broadcast", "m", { from: a.id });
        for (const args of await Promise.all(waits)) assert.deepEqual(args, [{ from: a.id }]);
        await sleep(100);
        assert.deepEqual(gotSender, []);
        closeAll();
      });

      test("fetch: sockets of both machines with sorted rooms", async () => {
        const [[a, a2], [b]] = await clients(2);
        const r = room("f");
        const z = room("a");
        await call(a, "join", r);
        await call(a, "join", z);
        await call(b, "join", r);
        for (const asker of [a2, b]) {
          const got = await call(asker, "fetch", r);
          const want = [
            { id: a.id, rooms: [a.id, z, r].sort() },
            { id: b.id, rooms: [b.id, r].sort() },
          ].sort((x, y) => (x.id < y.id ? -1 : 1));
          assert.deepEqual(got, want);
        }
        closeAll();
      });

      test("sockets_join / sockets_leave: matching sockets on both machines", async () => {
        const [[a, a2], [b, b2]] = await clients(2);
        const r = room("sj");
        const r2 = room("sj2");
        await call(a, "join", r);
        await call(b, "join", r);
        assert.equal(await call(b2, "sockets_join", r, r2), true);
        await sleep(150);
        assert.deepEqual((await call(a2, "fetch", r2)).map((s) => s.id).sort(), [a.id, b.id].sort());
        const waits = [a, b].map((s) => next(s, "m"));
        a2.emit("to", r2, "m", 7);
        for (const args of await Promise.all(waits)) assert.deepEqual(args, [7]);
        assert.equal(await call(a2, "sockets_leave", r, r2), true);
        await sleep(150);
        assert.deepEqual(await call(b2, "fetch", r2), []);
        assert.deepEqual((await call(b2, "fetch", r)).map((s) => s.id).sort(), [a.id, b.id].sort());
        closeAll();
      });

      test("ask: every client's ack across machines, asked from either side", async () => {
        const [[a, a2], [b, b2]] = await clients(2);
        const r = room("q");
        for (const s of [a, a2, b, b2]) {
          await call(s, "join", r);
          s.on("question", (_q, cb) => cb(s.id));
        }
        for (const asker of [b, a]) {
          const res = await call(asker, "ask", r, 2000);
          assert.equal(res.err, null);
          assert.deepEqual(res.responses.sort(), [a.id, a2.id, b.id, b2.id].sort());
        }
        closeAll();
      });

      test("server_emit: the three other workers answer", async () => {
        const [[a], [b]] = await clients();
        for (const s of [a, b]) {
          const res = await call(s, "server_emit", { hello: "world" });
          assert.equal(res.err, null);
          assert.equal(res.responses.length, 3, JSON.stringify(res));
        }
        closeAll();
      });

      test("disconnect_room: sockets in the room on both machines are disconnected", async () => {
        const [[a, a2], [b, b2]] = await clients(2);
        const r = room("d");
        await call(a, "join", r);
        await call(b, "join", r);
        const gone = [a, b].map((s) => next(s, "disconnect", 5000));
        assert.equal(await call(b2, "disconnect_room", r), true);
        for (const [reason] of await Promise.all(gone)) assert.equal(reason, "io server disconnect");
        assert.ok(a2.connected && b2.connected, "sockets outside the room stay");
        closeAll();
      });
    });
  }

  test("a primary that stops cleanly is dropped by the other at once", async () => {
    const name = `c2-${process.pid}`;
    const p3 = await startPrimary(redis.url, { name, workers: 1 });
    const a = await connect(p1.url, "websocket");
    try {
      await until("server_count 5", async () => (await call(a, "server_count")) === 5);
      assert.equal(await p3.stop(), 0);
      const t0 = Date.now();
      await until("server_count 4", async () => (await call(a, "server_count")) === 4, 5000, 10);
      const took = Date.now() - t0;
      console.log(`redis: clean stop of a primary seen by the others in ${took} ms`);
      assert.ok(took < 1500, `took ${took} ms (the primary heartbeat timeout is 3000 ms)`);
      await p1.waitLog(/remote primary left/);
    } finally {
      a.disconnect();
      await p3.stop();
    }
  });
});

describe("three primaries through redis", () => {
  test("room broadcast, fetch and server_emit reach all three machines", async () => {
    const redis = await startRedis();
    const name = `c3-${process.pid}`;
    const ps = await Promise.all([0, 1, 2].map(() => startPrimary(redis.url, { name })));
    const cs = [];
    try {
      for (const p of ps) cs.push(await connect(p.url, "websocket"));
      await until("server_count 6", async () => {
        for (const c of cs) if ((await call(c, "server_count")) !== 6) return false;
        return true;
      });
      const r = room("three");
      for (const c of cs) assert.equal(await call(c, "join", r), true);
      const waits = cs.map((c) => next(c, "m"));
      cs[2].emit("to", r, "m", "to all three");
      for (const args of await Promise.all(waits)) assert.deepEqual(args, ["to all three"]);
      assert.deepEqual((await call(cs[1], "fetch", r)).map((s) => s.id).sort(), cs.map((c) => c.id).sort());
      const res = await call(cs[0], "server_emit", 1);
      assert.equal(res.err, null);
      assert.equal(res.responses.length, 5);
    } finally {
      for (const c of cs) c.disconnect();
      for (const p of ps) assert.equal(await p.stop(), 0);
      await redis.stop();
    }
  });
});
