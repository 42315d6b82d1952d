// Helpers of the browser tests: a demo cluster started as a user would
// (`sio-cluster-host demo`, real primary and worker processes), headless
// Chromium (Debian's /usr/bin/chromium) driven by playwright-core, a static
// server playing "another origin" for the page, and waits on page state
// (never on time).
//
// Environment: SIO_CLUSTER_HOST_BIN (the sio-cluster-host binary; default
// target/release, then target/debug), SIO_BROWSER_KINDS (comma-separated
// demo runtimes, default "rust,node"), CHROMIUM (default /usr/bin/chromium).
import { spawn, spawnSync } from "node:child_process";
import { once } from "node:events";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
export const PAGE_DIR = `${ROOT}host/demo-page/`;
export const ARTIFACTS = fileURLToPath(new URL("./artifacts/", import.meta.url));
const NODE_WORKER = `${ROOT}host/node/demo/worker.mjs`;

export const BIN = process.env.SIO_CLUSTER_HOST_BIN
  ?? [`${ROOT}target/release/sio-cluster-host`, `${ROOT}target/debug/sio-cluster-host`].find(existsSync);

export const KINDS = (process.env.SIO_BROWSER_KINDS ?? "rust,node").split(",").map((k) => k.trim()).filter(Boolean);
for (const k of KINDS) {
  if (!["rust", "node", "mixed"].includes(k)) throw new Error(`SIO_BROWSER_KINDS: unknown runtime ${k}`);
}

/** How long any wait on the page may take before the test fails. */
export const WAIT_MS = 20_000;

/**
 * Starts `sio-cluster-host demo --runtime KIND` with `workers` workers on a
 * free port (loopback) and waits until every worker logged "demo worker
 * serving". `extra`: more arguments (e.g. `--cors-origin URL`).
 */
export async function startDemo({ kind = "rust", workers = 2, extra = [] } = {}) {
  if (!BIN) throw new Error("build sio-cluster-host first (cargo build --release) or set SIO_CLUSTER_HOST_BIN");
  if (kind !== "rust" && !existsSync(`${ROOT}host/node/component/manifest.json`)) {
    throw new Error("the Node demo needs host/node built: npm ci --prefix host/node && npm run build --prefix host/node");
  }
  const args = ["demo", "--runtime", kind, "--node-worker", NODE_WORKER, "--workers", String(workers),
    "--port", "0", "--bind", "127.0.0.1", "--grace-period", "2000", ...extra];
  const child = spawn(BIN, args, { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, RUST_LOG: "info" } });
  const log = [];
  let port = null;
  let serving = 0;
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`demo not ready in 60 s:\n${log.join("")}`)), 60_000);
    child.stderr.on("data", (chunk) => {
      const text = chunk.toString();
      log.push(text);
      const m = text.match(/public_addr=127\.0\.0\.1:(\d+)/);
      if (m) port = Number(m[1]);
      serving += (text.match(/demo worker serving/g) ?? []).length;
      if (port && serving >= workers) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`demo exited with ${code}:\n${log.join("")}`));
    });
  });
  child.removeAllListeners("exit");
  return {
    url: `http://127.0.0.1:${port}`,
    kind,
    log,
    async stop() {
      if (child.exitCode !== null) return;
      child.kill("SIGTERM");
      const t = setTimeout(() => child.kill("SIGKILL"), 8000);
      await once(child, "exit");
      clearTimeout(t);
    },
  };
}

/**
 * Starts a throwaway `redis-server` (Debian's; no persistence) on a Unix
 * socket in a fresh temp dir and waits until it answers PING. `url` is what
 * `demo --redis` takes; `stop()` ends it and removes the dir.
 */
export async function startRedis() {
  const dir = mkdtempSync(join(tmpdir(), "sio-browser-redis-"));
  const sock = join(dir, "redis.sock");
  const child = spawn("redis-server", ["--port", "0", "--unixsocket", sock, "--unixsocketperm", "700",
    "--save", "", "--appendonly", "no", "--dir", dir], { stdio: ["ignore", "pipe", "pipe"] });
  const log = [];
  child.stdout.on("data", (d) => log.push(d.toString()));
  child.stderr.on("data", (d) => log.push(d.toString()));
  for (let i = 0; ; i++) {
    const r = spawnSync("redis-cli", ["-s", sock, "ping"], { encoding: "utf8" });
    if (r.stdout?.trim() === "PONG") break;
    if (child.exitCode !== null || i >= 200) throw new Error(`redis-server did not start:\n${log.join("")}`);
    await new Promise((r) => setTimeout(r, 25));
  }
  return {
    url: `redis+unix://${sock}`,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        await once(child, "exit");
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A plain static server on another port (another origin) serving the page's
 * files from host/demo-page/, as a team's own front-end server would.
 */
export async function startOtherOrigin() {
  const files = {
    "/": ["index.html", "text/html; charset=utf-8"],
    "/app.js": ["app.js", "text/javascript; charset=utf-8"],
    "/socket.io.min.js": ["socket.io.min.js", "text/javascript; charset=utf-8"],
  };
  const server = http.createServer((req, res) => {
    const f = files[new URL(req.url, "http://x").pathname];
    if (!f) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "content-type": f[1], "cache-control": "no-store" });
    res.end(readFileSync(PAGE_DIR + f[0]));
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return {
    origin: `http://127.0.0.1:${server.address().port}`,
    close: () => new Promise((r) => { server.closeAllConnections(); server.close(r); }),
  };
}

/** Headless Chromium, a fresh profile (Playwright's own temp user-data-dir). */
export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    // Without the background-networking flags Chromium's own connections
    // (updates, sync) are refused on a closed network and clutter the run.
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}

/**
 * Opens one tab in its own browser context (own cookies, own network
 * conditions) at `url` and records what the test wants to look at:
 * console errors, every request (`tab.requests`: method, url, status,
 * request and response headers) and every CORS preflight (`tab.preflights`).
 */
export async function openTab(browser, url) {
  const context = await browser.newContext({ viewport: { width: 1000, height: 640 } });
  const page = await context.newPage();
  const tab = { context, page, errors: [], requests: [] };
  page.on("pageerror", (e) => tab.errors.push(String(e)));
  page.on("console", (m) => {
    if (m.type() === "error") tab.errors.push(m.text());
  });
  page.on("requestfinished", async (req) => {
    const resp = await req.response().catch(() => null);
    tab.requests.push({
      method: req.method(),
      url: req.url(),
      status: resp?.status() ?? null,
      headers: await req.allHeaders().catch(() => ({})),
      responseHeaders: resp ? await resp.allHeaders().catch(() => ({})) : {},
    });
  });
  // CORS preflights are made by Chromium's network service itself: Playwright
  // does not report them as requests, the DevTools protocol does.
  tab.preflights = [];
  const cdp = await context.newCDPSession(page);
  const lower = (h) => Object.fromEntries(Object.entries(h ?? {}).map(([k, v]) => [k.toLowerCase(), v]));
  const sent = new Map();
  cdp.on("Network.requestWillBeSent", (e) => {
    if (e.request.method === "OPTIONS") sent.set(e.requestId, lower(e.request.headers));
  });
  cdp.on("Network.responseReceived", (e) => {
    if (e.type !== "Preflight") return;
    tab.preflights.push({
      url: e.response.url,
      status: e.response.status,
      headers: sent.get(e.requestId) ?? {},
      responseHeaders: lower(e.response.headers),
    });
  });
  await cdp.send("Network.enable");
  await page.goto(url);
  return tab;
}

/** Waits until the tab shows a connected session; returns what the page shows. */
export async function connected(tab, { transport, connects = 1 } = {}) {
  await tab.page.waitForFunction(
    ({ transport, connects }) => {
      const d = document.body.dataset;
      return d.state === "connected" && Number(d.connects) >= connects && (!transport || d.transport === transport);
    },
    { transport, connects },
    { timeout: WAIT_MS },
  );
  return shown(tab);
}

/** What the page's status bar shows. */
export async function shown(tab) {
  return tab.page.evaluate(() => ({
    state: document.body.dataset.state,
    worker: Number(document.getElementById("worker").textContent),
    pid: Number(document.getElementById("pid").textContent),
    transport: document.getElementById("transport").textContent,
    sid: document.getElementById("sid").textContent,
    connects: Number(document.body.dataset.connects),
  }));
}

/** Types `text` into the chat box and sends it (as a user would). */
export async function say(tab, text) {
  await tab.page.fill("#text", text);
  await tab.page.click("#send-button");
}

/** Waits until a chat line with `text` is shown; returns its data attributes and text. */
export async function received(tab, text) {
  const line = tab.page.locator(`#messages li.chat[data-text=${JSON.stringify(text)}]`);
  await line.first().waitFor({ timeout: WAIT_MS });
  return line.first().evaluate((li) => ({ ...li.dataset, text: li.textContent }));
}

/** Waits until the worker list shows `n` workers and server_count says `n`. */
export async function workersListed(tab, n) {
  await tab.page.waitForFunction(
    (n) => document.body.dataset.serverCount === String(n)
      && document.querySelectorAll("#workers li[data-worker]").length === n,
    n,
    { timeout: WAIT_MS },
  );
  return tab.page.$$eval("#workers li[data-worker]", (lis) => lis.map((li) => li.textContent));
}

/** Waits until the room's member list holds exactly these socket ids. */
export async function membersListed(tab, sids) {
  const want = [...sids].sort().join(",");
  await tab.page.waitForFunction((want) => document.body.dataset.members === want, want, { timeout: WAIT_MS });
  return tab.page.$$eval("#members li", (lis) => lis.map((li) => li.textContent));
}

/** Saves a screenshot under tests/browser/artifacts/ and returns its path. */
export async function screenshot(tab, name) {
  mkdirSync(ARTIFACTS, { recursive: true });
  const path = `${ARTIFACTS}${name}.png`;
  await tab.page.screenshot({ path, fullPage: true });
  return path;
}
