// The demo page on two machines: two `sio-cluster-host demo --redis`
// primaries (2 workers each) joined through a real redis-server this test
// starts and stops, one tab on each, as the README's "Try it on one box"
// (each runtime of SIO_BROWSER_KINDS).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import {
  KINDS, connected, launchBrowser, membersListed, openTab, received, say, screenshot, startDemo, startRedis,
  workersListed,
} from "./harness.mjs";

for (const kind of KINDS) {
  describe(`demo page on two primaries through Redis, ${kind} workers`, () => {
    let browser;
    before(async () => {
      browser = await launchBrowser();
    });
    after(async () => {
      await browser?.close();
    });

    test("a tab on each primary: both list the four workers and chat across machines", async (t) => {
      const redis = await startRedis();
      t.after(() => redis.stop());
      const extra = ["--redis", redis.url, "--cluster-name", `browser-${kind}`];
      const one = await startDemo({ kind, extra });
      t.after(() => one.stop());
      const two = await startDemo({ kind, extra });
      t.after(() => two.stop());

      const room = "two-machines";
      const alice = await openTab(browser, `${one.url}/?name=alice&room=${room}`);
      t.after(() => alice.context.close());
      const a = await connected(alice, { transport: "websocket" });
      const bob = await openTab(browser, `${two.url}/?name=bob&room=${room}`);
      t.after(() => bob.context.close());
      const b = await connected(bob, { transport: "websocket" });
      assert.notEqual(a.pid, b.pid);

      // server_count and one entry per worker: indices are per machine, so
      // each page lists two pairs, and another worker with the tab's own
      // index is marked as on another machine.
      for (const [tab, me] of [[alice, a], [bob, b]]) {
        const workers = await workersListed(tab, 4);
        assert.deepEqual(workers.map((w) => w.split(" ")[1]).sort(), ["0", "0", "1", "1"], workers.join("|"));
        assert.equal(workers.filter((w) => w.includes("(this tab")).length, 1, workers.join("|"));
        assert.ok(workers.includes(`worker ${me.worker} (another machine)`), workers.join("|"));
        await membersListed(tab, [a.sid, b.sid]);
      }

      await say(alice, "alice on machine one");
      const atBob = await received(bob, "alice on machine one");
      assert.equal(atBob.pid, String(a.pid));
      await say(bob, "bob on machine two");
      const atAlice = await received(alice, "bob on machine two");
      assert.equal(atAlice.pid, String(b.pid));
      t.diagnostic(`screenshot: ${await screenshot(alice, `${kind}-redis-alice`)}`);
      assert.deepEqual([...alice.errors, ...bob.errors], [], "no page errors");
    });
  });
}
