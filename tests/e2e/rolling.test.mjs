// Rolling restart (issue 14): SIGHUP to the primary, sent as README says
// (`kill -HUP "$(cat FILE)"` with `--pid-file FILE`), replaces the 3 workers
// one at a time under broadcast load. Checked with the official client:
// - every worker gets a new process, once; the cluster counts 3 again;
// - no loss: a receiver gets every message a sender emitted while both
//   were connected and neither one's worker was being replaced then
//   (checked per receiver, sender and sequence number);
// - requests in flight (fetch-sockets, server-side emit with replies,
//   broadcasts with acks) of clients whose worker is not being replaced
//   complete without error;
// - clients of a replaced worker see a reason they reconnect from
//   (`transport close`) and reconnect;
// - new sessions go to the new generation once it is up (new clients on a
//   new worker only).
// And a roll whose new worker cannot start stops there, the old generation
// serving on (Rust cluster).
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BIN, call, clientsPerWorker, KINDS, sleep, startCluster } from "./cluster.mjs";
import { lifeAt, metricsUrl, reconnecting, scrape, until, value } from "./ops.mjs";

/** The README's command: `kill -HUP "$(cat FILE)"`. */
function reload(pidFile) {
  execFileSync("/bin/sh", ["-c", `kill -HUP "$(cat '${pidFile}')"`]);
}

/** Margin around a worker's replacement and a delivery's latency (ms). */
const MARGIN = Number(process.env.SIO_E2E_ROLL_MARGIN_MS ?? 500);

for (const kind of KINDS) test(`rolling restart under broadcast load loses nothing on the workers not being replaced (${kind})`, async () => {
  const dir = mkdtempSync(join(tmpdir(), "sio-roll-"));
  const pidFile = join(dir, "primary.pid");
  const cluster = await startCluster(3, ["--metrics", "127.0.0.1:0", "--pid-file", pidFile], kind);
  const murl = metricsUrl(cluster);
  const clients = [];
  try {
    // 3 receivers per worker (round-robin places them in turn), all in "load";
    // they answer the broadcasts with acks.
    for (let i = 0; i < 9; i++) {
      const s = reconnecting(cluster.url, "websocket", ["load"]);
      s.on("question", (room, ack) => ack(s.id));
      clients.push(s);
      await until(() => s.lives[0]?.joined, 10_000, "a receiver joined");
    }
    const oldPids = new Set(clients.map((s) => s.lives[0].pid));
    assert.equal(oldPids.size, 3, "clients on the 3 workers");
    const senders = clients.slice(0, 4);
    // got[receiver][sender] = Map seq -> arrival time
    const got = new Map(clients.map((r) => [r, senders.map(() => new Map())]));
    for (const r of clients) r.on("m", (p) => got.get(r)[p.s].set(p.seq, Date.now()));
    const sent = senders.map(() => []); // [seq, time, life]
    let stop = false;
    const loops = senders.map(async (s, i) => {
      let seq = 0;
      while (!stop) {
        const life = lifeAt(s, Date.now());
        if (life && s.connected) {
          for (let k = 0; k < 3; k++) {
            s.emit("to", "load", "m", { s: i, seq });
            sent[i].push([seq++, Date.now(), life]);
          }
        }
        await sleep(10);
      }
    });
    // Requests in flight, in a loop, from a prober that reconnects too.
    const prober = reconnecting(cluster.url, "websocket");
    clients.push(prober);
    await until(() => prober.lives[0]?.joined, 10_000, "the prober");
    const requests = [];
    const probing = (async () => {
      while (!stop) {
        for (const [name, args] of [["fetch", ["load"]], ["server_emit", [1]], ["ask", ["load", 3000]]]) {
          const t = Date.now();
          const life = lifeAt(prober, t);
          if (!life) continue;
          const r = { name, start: t, life, worker: life.worker, res: null, err: null, end: null };
          requests.push(r);
          try {
            r.res = await prober.timeout(8000).emitWithAck(name, ...args);
          } catch (e) {
            r.err = e.message;
          }
          r.end = Date.now();
        }
        await sleep(20);
      }
    })();

    await sleep(1000);
    const t0 = Date.now();
    reload(pidFile);
    // The roll is done when every worker was replaced.
    await until(async () => {
      const m = await scrape(murl);
      return value(m, "sio_rolling_restarts_total", { result: "completed" }) === 1;
    }, 90_000, "the rolling restart");
    const rollMs = Date.now() - t0;
    await sleep(1000);
    stop = true;
    await Promise.all([...loops, probing]);
    await sleep(MARGIN);

    // When each old worker was being replaced: from the SIGHUP's first
    // replacement start to the moment its clients were cut (their lives'
    // ends), per old pid.
    const cut = new Map();
    for (const s of clients) {
      for (const l of s.lives) {
        if (l.end !== null && oldPids.has(l.pid)) cut.set(l.pid, Math.max(cut.get(l.pid) ?? 0, l.end));
      }
    }
    const nearCut = (t) => [...cut.values()].some((c) => Math.abs(t - c) < MARGIN);

    let expected = 0;
    let received = 0;
    let duringRoll = 0;
    const missing = [];
    for (const [r, perSender] of got) {
      if (r === prober) continue;
      sent.forEach((list, i) => {
        for (const [seq, t, life] of list) {
          const rl = lifeAt(r, t);
          // Both connected, both still connected a margin later, not near a cut.
          if (!rl || (rl.end !== null && rl.end - t < MARGIN)) continue;
          if (life.end !== null && life.end - t < MARGIN) continue;
          if (rl.joined > t - 100 || nearCut(t)) continue;
          expected++;
          if (t >= t0 && t <= t0 + rollMs) duringRoll++;
          if (perSender[i].has(seq)) received++;
          else missing.push(`receiver ${r.id} (worker ${rl.worker}) sender ${i} seq ${seq}`);
        }
      });
    }
    const total = sent.reduce((a, l) => a + l.length, 0);
    console.log(`rolling (${kind}): roll ${rollMs} ms; ${total} messages sent; ${expected} deliveries expected on workers not being replaced (${duringRoll} of them sent during the roll), ${received} received, ${expected - received} lost`);
    assert.ok(expected > 1000, `enough deliveries checked (${expected})`);
    assert.deepEqual(missing.slice(0, 10), [], `${missing.length} lost`);

    // Requests: those whose prober connection lived through them completed without error.
    const settled = requests.filter((q) => q.end !== null && (q.life.end === null || q.life.end > q.end));
    const failed = settled.filter((q) => q.err !== null || (q.res && q.res.err));
    console.log(`rolling (${kind}): ${settled.length} requests in flight during the roll completed, ${failed.length} with an error`);
    assert.ok(settled.length >= 10, `${settled.length} requests`);
    assert.deepEqual(failed.map((q) => `${q.name} on worker ${q.worker}: ${q.err ?? q.res.err}`), []);

    // Clients of replaced workers were cut with a reconnectable reason and came back.
    const reasons = new Set(clients.flatMap((s) => s.lives.filter((l) => l.reason).map((l) => l.reason)));
    assert.deepEqual([...reasons].filter((x) => x !== "transport close" && x !== "transport error"), [], [...reasons].join(","));
    for (const s of clients) assert.ok(s.connected, "every client reconnected");

    // Every worker has a new process, counted once; the cluster counts 3.
    const now = await clientsPerWorker(cluster.url, "websocket", 3, 1);
    for (const [w, [s]] of now.entries()) {
      assert.ok(!oldPids.has(s.pid), `worker ${w} has a new process`);
      s.disconnect();
    }
    assert.equal(await call(clients[0], "server_count"), 3);
    const m = await scrape(murl);
    for (let w = 0; w < 3; w++) {
      assert.equal(value(m, "sio_worker_replacements_total", { worker: w }), 1);
      assert.equal(value(m, "sio_worker_exits_total", { worker: w, cause: "replaced" }), 1);
      assert.equal(value(m, "sio_worker_restarts_total", { worker: w }), 0);
    }
    assert.equal(value(m, "sio_rolling_restart_running"), 0);
    const roll = cluster.log.join("");
    assert.match(roll, /SIGHUP received, rolling restart/);
    assert.match(roll, /rolling restart done/);
  } finally {
    for (const s of clients) s.disconnect();
    await cluster.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a rolling restart whose new worker cannot start stops, the old generation serving", async () => {
  const dir = mkdtempSync(join(tmpdir(), "sio-roll-"));
  const pidFile = join(dir, "primary.pid");
  const fail = join(dir, "fail");
  // A worker command that fails to start while the file `fail` exists.
  const script = 'if [ -e "$0" ]; then echo "worker refuses to start" >&2; exit 7; fi; exec "$1" demo-worker';
  const cluster = await startCluster(2, ["--metrics", "127.0.0.1:0", "--pid-file", pidFile, "--", "/bin/sh", "-c", script, fail, BIN], "run");
  const murl = metricsUrl(cluster);
  let byWorker = [];
  try {
    byWorker = await clientsPerWorker(cluster.url, "websocket", 2, 1);
    const before = byWorker.map(([s]) => s.pid);
    writeFileSync(fail, "");
    reload(pidFile);
    await until(async () => value(await scrape(murl), "sio_rolling_restarts_total", { result: "failed" }) === 1, 30_000, "the failed roll");
    assert.match(cluster.log.join(""), /rolling restart stopped/);
    // The old workers serve on: their clients are still connected, new clients reach both.
    for (const [s] of byWorker) {
      assert.ok(s.connected);
      assert.equal(await call(s, "server_count"), 2);
    }
    const again = await clientsPerWorker(cluster.url, "websocket", 2, 1);
    assert.deepEqual(again.map(([s]) => s.pid), before, "the same processes");
    for (const [s] of again) s.disconnect();
    // Once the worker can start, the next SIGHUP completes the roll.
    rmSync(fail);
    reload(pidFile);
    await until(async () => value(await scrape(murl), "sio_rolling_restarts_total", { result: "completed" }) === 1, 60_000, "the second roll");
    const after = await clientsPerWorker(cluster.url, "websocket", 2, 1);
    for (const [w, [s]] of after.entries()) {
      assert.notEqual(s.pid, before[w]);
      s.disconnect();
    }
  } finally {
    for (const [s] of byWorker) s.disconnect();
    await cluster.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("--start-timeout bounds a new worker that never serves; a SIGHUP during a roll queues one more", async () => {
  const dir = mkdtempSync(join(tmpdir(), "sio-roll-"));
  const pidFile = join(dir, "primary.pid");
  const hang = join(dir, "hang");
  const slow = join(dir, "slow");
  // A worker command that never attaches while the file `hang` exists, and
  // takes 500 ms to start while `slow` exists.
  const script = 'if [ -e "$0/hang" ]; then exec sleep 60; fi; if [ -e "$0/slow" ]; then sleep 0.5; fi; exec "$1" demo-worker';
  const cluster = await startCluster(2, ["--metrics", "127.0.0.1:0", "--pid-file", pidFile, "--start-timeout", "1500", "--", "/bin/sh", "-c", script, dir, BIN], "run");
  const murl = metricsUrl(cluster);
  let byWorker = [];
  try {
    byWorker = await clientsPerWorker(cluster.url, "websocket", 2, 1);
    writeFileSync(hang, "");
    const t0 = Date.now();
    reload(pidFile);
    await until(async () => value(await scrape(murl), "sio_rolling_restarts_total", { result: "failed" }) === 1, 10_000, "the failed roll");
    const failedMs = Date.now() - t0;
    assert.match(cluster.log.join(""), /did not serve within 1500 ms/);
    assert.ok(failedMs >= 1500 && failedMs < 6000, `the roll stopped after ${failedMs} ms`);
    for (const [s] of byWorker) assert.equal(await call(s, "server_count"), 2);

    // Two SIGHUPs 300 ms apart, during a roll of slow-starting workers:
    // the second one queues a second roll.
    rmSync(hang);
    writeFileSync(slow, "");
    reload(pidFile);
    await sleep(300);
    reload(pidFile);
    await until(async () => value(await scrape(murl), "sio_rolling_restarts_total", { result: "completed" }) === 2, 60_000, "two rolls");
    const scraped = await scrape(murl);
    for (const w of ["0", "1"]) {
      // One failed attempt (worker 0 only) and two completed rolls.
      assert.equal(value(scraped, "sio_worker_replacements_total", { worker: w }), w === "0" ? 3 : 2);
    }
    assert.match(cluster.log.join(""), /another one follows it/);
    const after = await clientsPerWorker(cluster.url, "websocket", 2, 1);
    for (const [s] of after) {
      assert.equal(await call(s, "server_count"), 2);
      s.disconnect();
    }
    console.log(`start timeout: roll stopped after ${failedMs} ms; two SIGHUPs: 2 rolls completed`);
  } finally {
    for (const [s] of byWorker) s.disconnect();
    await cluster.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
