// A tab whose network goes away (Playwright's context.setOffline: Chromium's
// network emulation, as a laptop losing Wi-Fi) loses its session, reconnects
// by itself once back online, and receives the room's messages again.
//
// Chromium's offline emulation stops traffic but does not close an open
// WebSocket; the client drops the session at once on the browser's
// `offline` event, which engine.io-client listens to on any host but
// `localhost` (there it notices at the ping timeout, about 45 s), hence the
// 127.0.0.1 URLs of these tests.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { KINDS, WAIT_MS, connected, launchBrowser, openTab, received, say, startDemo } from "./harness.mjs";

for (const kind of KINDS) {
  describe(`demo page offline and back, ${kind} workers`, () => {
    let browser;
    before(async () => {
      browser = await launchBrowser();
    });
    after(async () => {
      await browser?.close();
    });

    for (const transport of ["websocket", "polling"]) {
      test(`a tab cut off over ${transport} reconnects and receives again`, async (t) => {
        const demo = await startDemo({ kind });
        t.after(() => demo.stop());
        const room = `offline-${transport}`;
        const frank = await openTab(browser, `${demo.url}/?name=frank&room=${room}&transport=${transport}`);
        t.after(() => frank.context.close());
        const f = await connected(frank, { transport });
        const gina = await openTab(browser, `${demo.url}/?name=gina&room=${room}&transport=${transport}`);
        t.after(() => gina.context.close());
        const g = await connected(gina, { transport });
        assert.notEqual(f.worker, g.worker);
        await say(frank, "before the cut");
        await received(gina, "before the cut");

        await gina.context.setOffline(true);
        await gina.page.waitForFunction(() => document.body.dataset.state !== "connected", null, { timeout: WAIT_MS });
        // Sent while Gina is away: not for her (a new session starts empty).
        await say(frank, "while gina is offline");
        await received(frank, "while gina is offline");

        await gina.context.setOffline(false);
        const g2 = await connected(gina, { transport, connects: 2 });
        assert.notEqual(g2.sid, g.sid, "a new session after the cut");
        await say(frank, "after the cut");
        const back = await received(gina, "after the cut");
        assert.equal(back.worker, String(f.worker));
        assert.equal(back.receivedOn, String(g2.worker));
        await say(gina, "gina is back");
        await received(frank, "gina is back");
        const shown = await gina.page.$$eval("#messages li.system", (lis) => lis.map((li) => li.textContent));
        const cut = shown.find((s) => s.startsWith("disconnected ("));
        assert.ok(cut, shown.join("|"));
        t.diagnostic(`gina's page: ${cut}, then worker ${g.worker} -> ${g2.worker}`);
      });
    }
  });
}
