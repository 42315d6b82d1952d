// The demo page in headless Chromium against real demo clusters (2 workers,
// `sio-cluster-host demo`, each runtime of SIO_BROWSER_KINDS): what a user
// gets after the README's main command when opening http://localhost:3000/.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import {
  KINDS, connected, launchBrowser, membersListed, openTab, received, say, screenshot, shown, startDemo,
  startOtherOrigin, workersListed,
} from "./harness.mjs";

/** The request of `tab` whose URL path is `path` (first one). */
function requestOf(tab, path) {
  return tab.requests.find((r) => new URL(r.url).pathname === path);
}

for (const kind of KINDS) {
  describe(`demo page, ${kind} workers`, () => {
    let browser;
    before(async () => {
      browser = await launchBrowser();
    });
    after(async () => {
      await browser?.close();
    });

    test("two tabs land on different workers and chat over websocket; the switch moves a tab to polling", async (t) => {
      const demo = await startDemo({ kind });
      t.after(() => demo.stop());
      const room = "ws-room";
      const alice = await openTab(browser, `${demo.url}/?name=alice&room=${room}`);
      t.after(() => alice.context.close());
      const a = await connected(alice, { transport: "websocket" });
      const bob = await openTab(browser, `${demo.url}/?name=bob&room=${room}`);
      t.after(() => bob.context.close());
      const b = await connected(bob, { transport: "websocket" });

      // What the page shows: each tab's own worker, and they differ.
      assert.notEqual(a.worker, b.worker, "least-connection puts the second tab on the other worker");
      assert.ok(a.pid > 0 && b.pid > 0 && a.pid !== b.pid);
      // The page was served by the cluster itself, with proper types and caching headers.
      for (const [path, type] of [["/", "text/html"], ["/app.js", "text/javascript"], ["/socket.io.min.js", "text/javascript"]]) {
        const r = requestOf(alice, path);
        assert.ok(r, `the page requested ${path}`);
        assert.equal(r.status, 200, path);
        assert.match(r.responseHeaders["content-type"], new RegExp(`^${type}; charset=utf-8$`), path);
        assert.equal(r.responseHeaders["cache-control"], "no-cache", path);
        assert.match(r.responseHeaders.etag, /^"[0-9a-f]{24}"$/, path);
      }
      // The live lists: both workers (server_count and server_emit), both tabs in the room.
      for (const tab of [alice, bob]) {
        const workers = await workersListed(tab, 2);
        assert.equal(workers.length, 2);
        const members = await membersListed(tab, [a.sid, b.sid]);
        assert.ok(members.some((m) => m.startsWith(`alice on worker ${a.worker}`)), members.join("|"));
        assert.ok(members.some((m) => m.startsWith(`bob on worker ${b.worker}`)), members.join("|"));
      }

      // Chat across the two workers, both ways, over websocket.
      await say(alice, "hello from alice");
      const atBob = await received(bob, "hello from alice");
      assert.equal(atBob.worker, String(a.worker));
      assert.equal(atBob.pid, String(a.pid));
      assert.equal(atBob.transport, "websocket");
      assert.equal(atBob.receivedOn, String(b.worker));
      assert.match(atBob.text, new RegExp(`sent through worker ${a.worker} \\(pid ${a.pid}\\) over websocket, received on worker ${b.worker}`));
      await say(bob, "hi alice, bob here");
      const atAlice = await received(alice, "hi alice, bob here");
      assert.equal(atAlice.worker, String(b.worker));
      assert.equal(atAlice.receivedOn, String(a.worker));
      // The sender sees its own message too (the room includes it).
      await received(alice, "hello from alice");

      const shot = await screenshot(bob, `${kind}-websocket-bob`);
      t.diagnostic(`screenshot: ${shot}`);

      // The switch button: Alice's tab reconnects over polling, through the
      // sticky primary, and the room still works both ways.
      await alice.page.click("#switch");
      const a2 = await connected(alice, { transport: "polling", connects: 2 });
      assert.equal(a2.transport, "polling");
      assert.notEqual(a2.sid, a.sid, "a new session");
      assert.equal(await alice.page.textContent("#switch"), "switch to websocket");
      await say(alice, "alice over polling");
      const p = await received(bob, "alice over polling");
      assert.equal(p.transport, "polling");
      assert.equal(p.worker, String(a2.worker));
      await say(bob, "bob to polling alice");
      await received(alice, "bob to polling alice");
      // And back.
      await alice.page.click("#switch");
      const a3 = await connected(alice, { transport: "websocket", connects: 3 });
      await say(bob, "bob to websocket alice again");
      const back = await received(alice, "bob to websocket alice again");
      assert.equal(back.receivedOn, String(a3.worker));

      // A reload revalidates (no-cache + ETag) instead of using a stale page,
      // and the cluster answers 304 to that revalidation.
      const etag = requestOf(alice, "/").responseHeaders.etag;
      alice.requests.length = 0;
      await alice.page.reload();
      await connected(alice);
      assert.equal(requestOf(alice, "/")?.headers["if-none-match"], etag, "Chromium revalidated the page");
      const revalidated = await fetch(`${demo.url}/`, { headers: { "if-none-match": etag } });
      assert.equal(revalidated.status, 304);
      assert.equal(revalidated.headers.get("etag"), etag);
      assert.deepEqual([...alice.errors, ...bob.errors], [], "no page errors");
      assert.equal((await shown(bob)).state, "connected");
    });
  });
}
