// Long-polling from real browser tabs through the sticky primary: one tab on
// the page the cluster serves, one on the same page served from another
// origin (a static server on another port), which makes Chromium send a CORS
// preflight before its polling requests; the demo allows that origin with
// `--cors-origin`. A page of an origin not allowed cannot connect.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import {
  KINDS, WAIT_MS, connected, launchBrowser, membersListed, openTab, received, say, screenshot, startDemo,
  startOtherOrigin, workersListed,
} from "./harness.mjs";

const isEngineIo = (r) => new URL(r.url).pathname.startsWith("/socket.io/");

for (const kind of KINDS) {
  describe(`demo page over polling, ${kind} workers`, () => {
    let browser;
    let other;
    let stranger;
    before(async () => {
      browser = await launchBrowser();
      other = await startOtherOrigin();
      stranger = await startOtherOrigin();
    });
    after(async () => {
      await browser?.close();
      await other?.close();
      await stranger?.close();
    });

    test("a same-origin tab and a cross-origin tab on different workers chat over polling", async (t) => {
      const demo = await startDemo({ kind, extra: ["--cors-origin", other.origin] });
      t.after(() => demo.stop());
      const room = "poll-room";
      const carol = await openTab(browser, `${demo.url}/?name=carol&room=${room}&transport=polling`);
      t.after(() => carol.context.close());
      const c = await connected(carol, { transport: "polling" });
      const serverParam = encodeURIComponent(demo.url);
      const dave = await openTab(browser, `${other.origin}/?name=dave&room=${room}&transport=polling&server=${serverParam}`);
      t.after(() => dave.context.close());
      const d = await connected(dave, { transport: "polling" });
      assert.notEqual(c.worker, d.worker, "the two polling sessions sit on different workers");

      await workersListed(dave, 2);
      await membersListed(carol, [c.sid, d.sid]);
      await say(carol, "carol polls");
      const atDave = await received(dave, "carol polls");
      assert.equal(atDave.worker, String(c.worker));
      assert.equal(atDave.transport, "polling");
      assert.equal(atDave.receivedOn, String(d.worker));
      await say(dave, "dave polls from afar");
      const atCarol = await received(carol, "dave polls from afar");
      assert.equal(atCarol.worker, String(d.worker));
      assert.equal(atCarol.receivedOn, String(c.worker));

      // Every polling request of Dave's tab went to the cluster, cross-origin:
      // preflighted (OPTIONS answered for the page's origin, the custom
      // header allowed), then answered with Access-Control-Allow-Origin.
      const preflights = dave.preflights.filter(isEngineIo);
      const actual = dave.requests.filter(isEngineIo);
      assert.ok(preflights.length >= 2, `preflights seen: ${preflights.length}`);
      assert.ok(preflights.some((r) => new URL(r.url).searchParams.has("sid")), "preflights of the session's requests");
      assert.ok(actual.some((r) => r.method === "POST") && actual.some((r) => r.method === "GET"));
      for (const r of preflights) {
        assert.ok(r.status >= 200 && r.status < 300, `preflight answered ${r.status}`);
        assert.match(r.headers["access-control-request-headers"] ?? "", /x-demo-tab/);
        assert.equal(r.responseHeaders["access-control-allow-origin"], other.origin);
        assert.match(r.responseHeaders["access-control-allow-methods"] ?? "", /POST/);
        assert.match(r.responseHeaders["access-control-allow-headers"] ?? "", /x-demo-tab/i);
      }
      for (const r of actual) {
        assert.equal(r.status, 200, `${r.method} ${r.url}`);
        assert.equal(r.headers.origin, other.origin);
        assert.equal(r.responseHeaders["access-control-allow-origin"], other.origin, `${r.method} ${r.url}`);
      }
      // Carol's own tab is same-origin: no preflight at all.
      assert.equal(carol.preflights.length, 0);
      assert.ok(carol.requests.filter(isEngineIo).some((r) => r.headers["x-demo-tab"] === "carol"));
      const shot = await screenshot(dave, `${kind}-polling-cross-origin-dave`);
      t.diagnostic(`screenshot: ${shot}`);
      assert.deepEqual([...carol.errors, ...dave.errors], [], "no page errors");

      // An origin the demo was not told about: the browser refuses the
      // answers (no Access-Control-Allow-Origin), the page never connects.
      const eve = await openTab(browser, `${stranger.origin}/?name=eve&room=${room}&transport=polling&server=${serverParam}`);
      t.after(() => eve.context.close());
      await eve.page.waitForFunction(() => document.body.dataset.state === "error", null, { timeout: WAIT_MS });
      await eve.page.waitForFunction(() => document.body.dataset.error, null, { timeout: WAIT_MS });
      const refused = eve.preflights.find(isEngineIo);
      assert.ok(refused, "the browser sent a preflight");
      assert.equal(refused.responseHeaders["access-control-allow-origin"], undefined);
      assert.ok(eve.errors.some((e) => /CORS/.test(e)), eve.errors.join("\n"));
    });
  });
}
