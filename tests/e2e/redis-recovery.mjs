// Connection state recovery across machines (issue 13 with issue 12): two
// `sio-cluster-host demo --runtime node --redis` primaries (socket.io
// workers with `SIO_DEMO_RECOVERY_MS`, the component through jco) joined
// through a real redis-server this suite starts and stops. The official
// client reaches them through a TCP switch, the stand-in for a load
// balancer: it leaves through primary 1 and comes back through primary 2,
// so the session and the missed packets must have crossed Redis.
// Run by host/tests/redis.rs (`node --test e2e/redis-recovery.mjs`).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { once } from "node:events";
import { connect as tcpConnect, createServer } from "node:net";
import { NODE_WORKER, call, ensureNodeHost } from "./cluster.mjs";
import { checkRestored, client, drop, expectEvents, reconnect, send } from "./recovery-client.mjs";
import { startPrimary, startRedis, until } from "./redis-server.mjs";

const RECOVERY_MS = 20_000;

/**
 * A loopback TCP switch: every new connection goes to the port `to(port)`
 * last chose; `cut()` closes the open ones.
 */
async function startSwitch(port) {
  let target = port;
  const open = new Set();
  const srv = createServer((down) => {
    const up = tcpConnect(target, "127.0.0.1");
    open.add(down);
    const end = () => {
      open.delete(down);
      down.destroy();
      up.destroy();
    };
    down.on("error", end).on("close", end);
    up.on("error", end).on("close", end);
    down.pipe(up);
    up.pipe(down);
  });
  srv.listen(0, "127.0.0.1");
  await once(srv, "listening");
  return {
    url: `http://127.0.0.1:${srv.address().port}`,
    to(p) {
      target = p;
    },
    async stop() {
      for (const s of open) s.destroy();
      srv.close();
      await once(srv, "close");
    },
  };
}

const portOf = (url) => Number(new URL(url).port);

describe("connection state recovery across primaries through redis", () => {
  let redis;
  let saved;
  before(async () => {
    ensureNodeHost();
    saved = process.env.SIO_DEMO_RECOVERY_MS;
    process.env.SIO_DEMO_RECOVERY_MS = String(RECOVERY_MS);
    redis = await startRedis();
  });
  after(async () => {
    await redis?.stop();
    if (saved === undefined) delete process.env.SIO_DEMO_RECOVERY_MS;
    else process.env.SIO_DEMO_RECOVERY_MS = saved;
  });

  /** Two Node primaries (two workers each) and a switch pointing at the first. */
  async function machines(tag) {
    const name = `rec-${tag}-${process.pid}`;
    const extra = ["--runtime", "node", "--node-worker", NODE_WORKER];
    const [p1, p2] = await Promise.all([
      startPrimary(redis.url, { name, extra }),
      startPrimary(redis.url, { name, extra }),
    ]);
    const sw = await startSwitch(portOf(p1.url));
    return { p1, p2, sw };
  }

  /** `c` through the switch (on primary 1), in `room` with data and one packet received from `sender`. */
  async function joined(sw, senderUrl, room) {
    const c = await client(sw.url);
    const sender = await client(senderUrl);
    await until("server_count 4", async () => (await call(c, "server_count")) === 4);
    assert.equal(await call(c, "join", room), true);
    assert.equal(await call(c, "set_data", { user: "ada", n: 1 }), true);
    // One packet first: the client needs an offset (socket.io#5538).
    await send(sender, room, 0, 1);
    await expectEvents(c, [0], 10_000);
    return { c, sender };
  }

  test("left through one machine, back through the other and back again: restored, missed packets once and in order", async () => {
    const { p1, p2, sw } = await machines("hop");
    try {
      const room = "r-hop";
      // The sender stays on primary 1: the missed packets reach primary 2 only through Redis.
      const { c, sender } = await joined(sw, p1.url, room);
      const sid = c.id;
      const first = c.me.pid;
      await drop(c);
      await send(sender, room, 1, 4);
      sw.to(portOf(p2.url));
      await reconnect(c);
      assert.notEqual(c.me.pid, first, "on a worker of primary 2");
      await checkRestored(c, room, sid);
      await expectEvents(c, [0, 1, 2, 3], 10_000);
      // Live packets from primary 1 after the restore on primary 2.
      await send(sender, room, 4, 6);
      await expectEvents(c, [0, 1, 2, 3, 4, 5], 10_000);
      // And home again: a second recovery, now of a session primary 2 holds.
      await drop(c);
      await send(sender, room, 6, 8);
      sw.to(portOf(p1.url));
      await reconnect(c);
      await checkRestored(c, room, sid);
      await expectEvents(c, [0, 1, 2, 3, 4, 5, 6, 7], 10_000);
      c.disconnect();
      sender.disconnect();
    } finally {
      await sw.stop();
      assert.equal(await p1.stop(), 0, "primary 1 stops cleanly");
      assert.equal(await p2.stop(), 0, "primary 2 stops cleanly");
    }
  });

  test("the client's machine is killed (kill -9 of its primary): restored on the other machine", async () => {
    const { p1, p2, sw } = await machines("k9");
    try {
      const room = "r-k9";
      // The sender is on primary 2, which survives.
      const { c, sender } = await joined(sw, p2.url, room);
      const sid = c.id;
      const gone = new Promise((resolve) => c.once("disconnect", resolve));
      await p1.kill9();
      await gone;
      await send(sender, room, 1, 4);
      // Primary 2 drops the dead machine's nodes within the primary heartbeat timeout.
      await until("server_count 2", async () => (await call(sender, "server_count")) === 2, 10_000);
      sw.to(portOf(p2.url));
      await reconnect(c);
      await checkRestored(c, room, sid);
      await expectEvents(c, [0, 1, 2, 3], 10_000);
      c.disconnect();
      sender.disconnect();
    } finally {
      await sw.stop();
      await p2.stop();
    }
  });
});
