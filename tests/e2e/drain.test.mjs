// Graceful drain (issue 14): SIGTERM to one worker (not through the
// primary) of a 3-worker cluster. The worker must exit within the grace
// period (2 s here) with code 0; its clients must be closed with a reason
// the official client reconnects from, and reconnect; the other workers must
// learn at once that its nodes left: a server-side emit with replies started
// right after the SIGTERM completes without waiting for any timeout, and
// the server count drops without the 10 s heartbeat timeout.
import { test } from "node:test";
import assert from "node:assert/strict";
import { call, clientsPerWorker, KINDS, sleep, startCluster } from "./cluster.mjs";
import { reconnecting, until } from "./ops.mjs";

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

for (const kind of KINDS) test(`SIGTERM drains a worker: clients reconnect, the others learn at once (${kind})`, async () => {
  const cluster = await startCluster(3, [], kind);
  const byWorker = await clientsPerWorker(cluster.url, "websocket", 3, 1);
  const clients = [];
  try {
    // Reconnecting clients, until two are on worker 2.
    let onVictim = [];
    for (let i = 0; i < 9 && onVictim.length < 2; i++) {
      const s = reconnecting(cluster.url, i % 2 ? "polling" : "websocket");
      clients.push(s);
      await until(() => s.lives[0]?.joined, 10_000, "a client joined");
      if (s.worker === 2) onVictim.push(s);
    }
    assert.equal(onVictim.length, 2, "two clients on worker 2");
    const victim = byWorker[2][0].pid;
    const asker = byWorker[0][0];
    assert.equal(await call(asker, "server_count"), 3);

    const t0 = Date.now();
    process.kill(victim, "SIGTERM");
    const answers = await call(asker, "server_emit", "x");
    const emitMs = Date.now() - t0;
    assert.equal(answers.err, null, `server-side emit right after the SIGTERM: ${JSON.stringify(answers)}`);
    await until(() => !alive(victim), 2500, "the worker exits within the grace period");
    const exitMs = Date.now() - t0;
    const left = await until(async () => {
      const n = await call(asker, "server_count");
      return n === 2 || Date.now() - t0 > 5000 ? n : 0;
    }, 6000, "the server count");
    const countMs = Date.now() - t0;
    console.log(`drain (${kind}): server-side emit answered in ${emitMs} ms (${JSON.stringify(answers.responses)}), worker exited after ${exitMs} ms, server count ${left} after ${countMs} ms`);
    assert.ok(emitMs < 3000, "no request timeout");
    // The primary restarts the worker (it exited with code 0) after 100 ms;
    // the count must have dropped (2) or the new process be counted (3)
    // long before the 10 s heartbeat timeout.
    assert.ok(countMs < 5000);
    const log = cluster.log.join("");
    assert.match(log, /worker exited, restarting/);
    assert.match(log, /exit status: 0|status=exit status: 0/);

    // The clients of worker 2 were closed with a reconnectable reason, and reconnected.
    for (const s of onVictim) {
      await until(() => s.lives.length >= 2 && s.lives[1].joined, 10_000, "a reconnect");
      assert.ok(["transport close", "transport error"].includes(s.lives[0].reason), s.lives[0].reason);
      assert.notEqual(s.lives[1].pid, victim);
    }
    await until(async () => (await call(asker, "server_count")) === 3, 10_000, "the restarted worker counted");
  } finally {
    for (const s of [...clients, ...byWorker.flat()]) s.disconnect();
    await cluster.stop();
  }
});
