// Worker faults under load (issue 6): kill -9 one of three workers while
// senders keep broadcasting to a room with members on every worker. Clients
// on the surviving workers must receive every message (zero loss), and the
// respawned worker must be counted again.
// Runs once per cluster kind of SIO_E2E_KINDS (the victim, worker 2, is
// Rust in the mixed cluster and the survivors are one Rust and one Node worker).
import { test } from "node:test";
import assert from "node:assert/strict";
import { call, clientsPerWorker, KINDS, sleep, startCluster } from "./cluster.mjs";

const SEND_MS = Number(process.env.SIO_E2E_LOAD_MS ?? 3000);

for (const kind of KINDS) test(`kill -9 of a worker under broadcast load loses no delivery on the survivors (${kind})`, async () => {
  const cluster = await startCluster(3, [], kind);
  const byWorker = await clientsPerWorker(cluster.url, "websocket", 3, 4);
  const all = byWorker.flat();
  try {
    for (const s of all) assert.equal(await call(s, "join", "load"), true);
    const survivors = [...byWorker[0], ...byWorker[1]];
    const victim = byWorker[2][0].pid;
    const senders = [byWorker[0][0], byWorker[0][1], byWorker[1][0], byWorker[1][1]];
    // got[receiver][sender] = Set of seq
    const got = new Map(survivors.map((s) => [s, senders.map(() => new Set())]));
    for (const s of survivors) {
      s.on("m", (p) => got.get(s)[p.s].add(p.seq));
    }
    const sent = senders.map(() => 0);
    let stop = false;
    const loops = senders.map(async (s, i) => {
      while (!stop) {
        for (let k = 0; k < 5; k++) s.emit("to", "load", "m", { s: i, seq: sent[i]++ });
        await sleep(2);
      }
    });
    await sleep(SEND_MS / 2);
    if (!process.env.SIO_E2E_NO_KILL) process.kill(victim, "SIGKILL");
    await sleep(SEND_MS / 2);
    stop = true;
    await Promise.all(loops);
    // Let the last messages arrive.
    const expected = sent.reduce((a, b) => a + b, 0) * survivors.length;
    let received = 0;
    for (let t = 0; t < 100; t++) {
      received = 0;
      for (const sets of got.values()) for (const set of sets) received += set.size;
      if (received >= expected) break;
      await sleep(100);
    }
    console.log(`faults: sent ${sent.reduce((a, b) => a + b, 0)} messages, expected ${expected} deliveries on survivors, received ${received}, lost ${expected - received}`);
    for (const [s, sets] of got) {
      console.log(`receiver on worker ${s.worker}: missing ${sets.map((set, i) => sent[i] - set.size).join(",")}`);
    }
    for (const [s, sets] of got) {
      sets.forEach((set, i) => {
        assert.equal(set.size, sent[i], `receiver on worker ${s.worker} missed ${sent[i] - set.size} of sender ${i}`);
      });
    }
    // The primary respawns the worker; the cluster counts 3 again.
    let count = 0;
    for (let t = 0; t < 100 && count !== 3; t++) {
      count = await call(byWorker[0][0], "server_count");
      if (count !== 3) await sleep(100);
    }
    assert.equal(count, 3, "respawned worker counted again");
  } finally {
    for (const s of all) s.disconnect();
    await cluster.stop();
  }
});
