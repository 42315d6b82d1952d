// Every row of shared/demo-contract.md, across two worker processes, with
// both transports, plus the upstream @socket.io/cluster-adapter suite's 18
// cases (research §6.1). Each case first checks, with `whoami`, that the
// clients it uses sit on different workers, so what it asserts crossed the
// hub.
//
// Upstream case -> test here:
//   1 broadcast to all (binary)            "all: binary payload reaches every worker"
//   2 namespace broadcast                  "namespaces are separate"
//   3 room broadcast                       "join + to"
//   4 except                               "to_except"
//   5 local only                           (no contract event; covered by Rust tests)
//   6-9 broadcast with acks                "ask: ..." (4 tests)
//   10-11 socketsJoin                      "sockets_join"
//   12-13 socketsLeave                     "sockets_leave"
//   14 disconnectSockets                   "disconnect_room"
//   15 fetchSockets                        "fetch"
//   16-17 serverSideEmit (+ack)            "server_emit"
//   18 serverSideEmit timeout              "server_emit times out ..." (3 workers)
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
//
// The whole suite runs once per cluster kind of SIO_E2E_KINDS (cluster.mjs):
// Rust workers only, Node workers only, and mixed (worker 0 Rust, worker 1
// Node), where every cross-worker assertion crosses the two runtimes.
import {
  call, clientsPerWorker, KINDS, next, record, sleep, startCluster,
} from "./cluster.mjs";

let uniq = 0;
const room = (tag) => `${tag}-${process.pid}-${++uniq}`;

for (const kind of KINDS) describe(`${kind} cluster`, () => {
let cluster;
before(async () => {
  cluster = await startCluster(2, [], kind);
});
after(async () => {
  await cluster?.stop();
});

for (const transport of ["websocket", "polling"]) {
  describe(`contract over ${transport} (${kind})`, () => {
    let open = [];
    const clients = async (n = 1, nsp = "/") => {
      const byWorker = await clientsPerWorker(cluster.url, transport, 2, n, nsp);
      open.push(...byWorker.flat());
      return byWorker;
    };
    const closeAll = () => {
      for (const s of open) s.disconnect();
      open = [];
    };

    test("whoami: clients sit on two worker processes", async () => {
      const [[a], [b]] = await clients();
      assert.equal(a.worker, 0);
      assert.equal(b.worker, 1);
      assert.notEqual(a.pid, b.pid);
      // Both runtimes give ids socketioxide's Sid parser accepts (wit/interop.md).
      for (const s of [a, b]) {
        assert.match(s.id, /^[A-Za-z0-9_-]{16}$/, `socket id on worker ${s.worker}`);
        assert.match(s.io.engine.id, /^[A-Za-z0-9_-]{16}$/, `engine.io sid on worker ${s.worker}`);
      }
      closeAll();
    });

    test("server_count: both workers count 2", async () => {
      const [[a], [b]] = await clients();
      assert.equal(await call(a, "server_count"), 2);
      assert.equal(await call(b, "server_count"), 2);
      closeAll();
    });

    test("join + to: a room broadcast crosses workers; leave stops it", async () => {
      const [[a, a2], [b]] = await clients(2);
      const r = room("r");
      assert.equal(await call(a, "join", r), true);
      const gotA2 = record(a2, "m");
      const gotB = record(b, "m");
      b.emit("to", r, "m", { n: 1 });
      assert.deepEqual(await next(a, "m"), [{ n: 1 }]);
      assert.equal(await call(a, "leave", r), true);
      b.emit("to", r, "m", { n: 2 });
      b.emit("to", a.id, "m", { n: 3 }); // a socket's own id is a room
      assert.deepEqual(await next(a, "m"), [{ n: 3 }]);
      await sleep(100);
      assert.deepEqual(gotA2, []);
      assert.deepEqual(gotB, []);
      closeAll();
    });

    test("to_except: the except room is skipped on every worker", async () => {
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

    test("all: binary payload reaches every worker (upstream 1)", async () => {
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

    test("broadcast: everyone but the sender, cluster-wide", async () => {
      const [[a, a2], [b, b2]] = await clients(2);
      const gotSender = record(a, "m");
      const waits = [a2, b, b2].map((s) => next(s, "m"));
      a.emit("broadcast", "m", { from: a.id });
      for (const args of await Promise.all(waits)) assert.deepEqual(args, [{ from: a.id }]);
      await sleep(100);
      assert.deepEqual(gotSender, []);
      closeAll();
    });

    test("fetch: sockets of both workers with sorted rooms (upstream 15)", async () => {
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

    test("sockets_join: matching sockets on both workers join (upstream 10, 11)", async () => {
      const [[a, a2], [b, b2]] = await clients(2);
      const r = room("sj");
      const r2 = room("sj2");
      await call(a, "join", r);
      await call(b, "join", r);
      assert.equal(await call(b2, "sockets_join", r, r2), true);
      // Fire-and-forget across workers, as upstream (whose test sleeps 100 ms).
      await sleep(100);
      const got = (await call(a2, "fetch", r2)).map((s) => s.id).sort();
      assert.deepEqual(got, [a.id, b.id].sort());
      // The new room is real on both workers: a broadcast to it reaches them.
      const waits = [a, b].map((s) => next(s, "m"));
      a2.emit("to", r2, "m", 7);
      for (const args of await Promise.all(waits)) assert.deepEqual(args, [7]);
      closeAll();
    });

    test("sockets_leave: matching sockets on both workers leave (upstream 12, 13)", async () => {
      const [[a, a2], [b, b2]] = await clients(2);
      const r1 = room("sl1");
      const r2 = room("sl2");
      for (const s of [a, b]) {
        await call(s, "join", r1);
        await call(s, "join", r2);
      }
      await call(b2, "join", r2);
      assert.equal(await call(a2, "sockets_leave", r1, r2), true);
      await sleep(100);
      const left = (await call(b, "fetch", r2)).map((s) => s.id);
      assert.deepEqual(left, [b2.id]);
      const still = (await call(b, "fetch", r1)).map((s) => s.id).sort();
      assert.deepEqual(still, [a.id, b.id].sort());
      closeAll();
    });

    test("disconnect_room: sockets in the room on both workers are disconnected (upstream 14)", async () => {
      const [[a, a2], [b, b2]] = await clients(2);
      const r = room("d");
      await call(a, "join", r);
      await call(b, "join", r);
      const gone = [a, b].map((s) => next(s, "disconnect", 5000));
      assert.equal(await call(b2, "disconnect_room", r), true);
      for (const [reason] of await Promise.all(gone)) assert.equal(reason, "io server disconnect");
      assert.ok(a2.connected && b2.connected, "sockets outside the room stay");
      assert.equal(await call(a2, "server_count"), 2);
      closeAll();
    });

    test("ask: every client's ack, across workers, asked from either (upstream 6)", async () => {
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

    test("ask: binary acks stay binary (upstream 7)", async () => {
      const [[a], [b]] = await clients();
      const r = room("qb");
      for (const [i, s] of [a, b].entries()) {
        await call(s, "join", r);
        s.on("question", (_q, cb) => cb(Buffer.from([i + 1])));
      }
      const res = await call(a, "ask", r, 2000);
      assert.equal(res.err, null);
      assert.equal(res.responses.length, 2);
      for (const v of res.responses) assert.ok(Buffer.isBuffer(v), "ack is a Buffer");
      assert.deepEqual(res.responses.map((v) => v[0]).sort(), [1, 2]);
      closeAll();
    });

    test("ask: no client in the room gives no error and [] (upstream 8)", async () => {
      const [[a], [b]] = await clients();
      const res = await call(a, "ask", room("empty"), 500);
      assert.deepEqual(res, { err: null, responses: [] });
      assert.ok(b.connected);
      closeAll();
    });

    test("ask: a silent client times out with partial answers (upstream 9)", async () => {
      const [[a, a2], [b]] = await clients(2);
      const r = room("qt");
      for (const s of [a, a2, b]) await call(s, "join", r);
      a.on("question", (_q, cb) => cb(a.id));
      b.on("question", (_q, cb) => cb(b.id));
      // a2 never answers.
      const t0 = Date.now();
      const res = await call(b, "ask", r, 500);
      assert.equal(res.err, "operation has timed out");
      assert.deepEqual(res.responses.sort(), [a.id, b.id].sort());
      assert.ok(Date.now() - t0 < 3000, "settles near the 500 ms timeout");
      closeAll();
    });

    test("ask: remote clients wait the requester's timeout, not the server's default", { skip: transport !== "websocket" }, async () => {
      // socketioxide's default ack timeout is 5 s; a remote client answering
      // after 5.5 s must still count within an 8 s request (socketioxide#822).
      const [[a], [b]] = await clients();
      const r = room("slow");
      await call(b, "join", r);
      b.on("question", (_q, cb) => setTimeout(() => cb(b.id), 5500));
      const res = await a.timeout(15_000).emitWithAck("ask", r, 8000);
      assert.deepEqual(res, { err: null, responses: [b.id] });
      closeAll();
    });

    test("server_emit: every other worker answers (upstream 16, 17)", async () => {
      const [[a], [b]] = await clients();
      assert.deepEqual(await call(a, "server_emit", { hello: "world" }), { err: null, responses: [1] });
      assert.deepEqual(await call(b, "server_emit", "x"), { err: null, responses: [0] });
      closeAll();
    });

    test("tenants: each /tenant/<id> namespace is its own cluster", async () => {
      const ta = `/tenant/a${uniq++}`;
      const tb = `/tenant/b${uniq++}`;
      const [[a0], [a1]] = await clients(1, ta);
      const [[b0], [b1]] = await clients(1, tb);
      const shared = room("shared");
      for (const s of [a0, a1, b0, b1]) await call(s, "join", shared);
      // Both workers now host an instance of each tenant.
      assert.equal(await call(a0, "server_count"), 2);
      assert.equal(await call(b1, "server_count"), 2);
      const ids = (await call(a1, "fetch", shared)).map((s) => s.id).sort();
      assert.deepEqual(ids, [a0.id, a1.id].sort());
      const other = [record(b0, "t"), record(b1, "t")];
      const waits = [a0, a1].map((s) => next(s, "t"));
      a1.emit("all", "t", "tenant a only");
      for (const args of await Promise.all(waits)) assert.deepEqual(args, ["tenant a only"]);
      assert.deepEqual(await call(b0, "server_emit", 1), { err: null, responses: [1] });
      await sleep(100);
      assert.deepEqual(other, [[], []]);
      closeAll();
    });

    test("namespaces are separate (upstream 2)", async () => {
      const [[c0], [c1]] = await clients(1, "/custom");
      const [[m0], [m1]] = await clients(1, "/");
      const main = [record(m0, "ns"), record(m1, "ns")];
      const waits = [c0, c1].map((s) => next(s, "ns"));
      c1.emit("all", "ns", "custom only");
      for (const args of await Promise.all(waits)) assert.deepEqual(args, ["custom only"]);
      await sleep(100);
      assert.deepEqual(main, [[], []]);
      assert.equal(await call(c0, "server_count"), 2);
      closeAll();
    });
  });
}

describe(`three workers (${kind})`, () => {
  test("server_emit times out when one worker does not answer (upstream 18)", async () => {
    const c3 = await startCluster(3, [], kind);
    const byWorker = await clientsPerWorker(c3.url, "websocket", 3);
    const [[a], [b], [c]] = byWorker;
    try {
      assert.equal(await call(a, "server_count"), 3);
      // Freeze worker 2: its link stays open, so only the request timeout ends the wait.
      process.kill(c.pid, "SIGSTOP");
      const t0 = Date.now();
      const res = await call(a, "server_emit", 1);
      const took = Date.now() - t0;
      assert.equal(res.err, "timeout reached: missing 1 responses");
      assert.deepEqual(res.responses, [1]);
      assert.ok(took >= 4500 && took < 8000, `took ${took} ms, the default timeout is 5 s`);
    } finally {
      process.kill(c.pid, "SIGCONT");
      for (const s of [a, b, c]) s.disconnect();
      await c3.stop();
    }
  });
});
});
