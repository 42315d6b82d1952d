// What a user does: `npm pack` the package, install the tarball into an empty
// folder (from the npm cache, socket.io as the peer dependency), and run a
// worker written against the installed package under the real primary.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { once } from "node:events";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { io as ioc } from "socket.io-client";
import { bin, until } from "./helpers.mjs";

const root = fileURLToPath(new URL("..", import.meta.url));
const npm = process.platform === "win32" ? "npm.cmd" : "npm";

const USER_WORKER = `
import { Server } from "socket.io";
import { attach, createAdapter, componentSha256 } from "@sio-cluster/node";
const cluster = await attach();
const io = new Server({ adapter: createAdapter() });
io.on("connection", (socket) => {
  socket.on("whoami", (ack) => ack({ pid: process.pid, worker: cluster.worker, sha: componentSha256() }));
  socket.on("join", (room, ack) => { socket.join(room); ack(true); });
  socket.on("fetch", async (room, ack) => ack((await io.in(room).fetchSockets()).map((s) => ({ id: s.id, rooms: [...s.rooms].sort() }))));
  socket.on("count", async (ack) => ack(await io.of("/").adapter.serverCount()));
});
await cluster.listen(io);
process.stderr.write("user worker serving\\n");
`;

test("npm pack, install into an empty folder, run workers from there under sio-cluster-host", { timeout: 240_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), "sio-pack-"));
  try {
    const pack = spawnSync(npm, ["pack", "--pack-destination", dir, "--json"], { cwd: root, encoding: "utf8", env: { ...process.env, npm_config_loglevel: "error" } });
    assert.equal(pack.status, 0, pack.stderr);
    const [{ filename, files }] = JSON.parse(pack.stdout);
    const names = files.map((f) => f.path);
    for (const f of ["component/sio_cluster_adapter.wasm", "component/sio_cluster_adapter.js", "component/sio_cluster_adapter.core.wasm", "component/manifest.json", "src/index.js", "src/adapter.js", "demo/worker.mjs"]) {
      assert.ok(names.includes(f), `the tarball ships ${f}`);
    }
    assert.ok(!names.some((f) => f.startsWith("test/") || f.startsWith("node_modules/")), "no tests or node_modules");
    const app = join(dir, "app");
    spawnSync("mkdir", [app]);
    writeFileSync(join(app, "package.json"), JSON.stringify({ name: "app", private: true, type: "module" }));
    const inst = spawnSync(npm, ["install", "--prefer-offline", "--no-audit", "--no-fund", join(dir, filename), "socket.io@4.8.4"], { cwd: app, encoding: "utf8" });
    assert.equal(inst.status, 0, inst.stderr);
    writeFileSync(join(app, "worker.mjs"), USER_WORKER);
    const installedWasm = join(app, "node_modules/@sio-cluster/node/component/sio_cluster_adapter.wasm");
    const sha = createHash("sha256").update(readFileSync(installedWasm)).digest("hex");
    assert.equal(sha, createHash("sha256").update(readFileSync(join(root, "component/sio_cluster_adapter.wasm"))).digest("hex"));

    const primary = spawn(bin(), ["run", "--workers", "2", "--port", "0", "--bind", "127.0.0.1", "--balance", "round-robin", "--grace-period", "2000", "--", process.execPath, join(app, "worker.mjs")], {
      cwd: app, stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, RUST_LOG: "info" },
    });
    let log = "";
    primary.stderr.on("data", (d) => (log += d.toString()));
    const clients = [];
    try {
      await until(() => (log.match(/user worker serving/g) ?? []).length >= 2 && /public_addr=127\.0\.0\.1:\d+/.test(log), 30_000, "workers serving");
      const url = `http://127.0.0.1:${log.match(/public_addr=127\.0\.0\.1:(\d+)/)[1]}`;
      const byWorker = new Map();
      for (let i = 0; i < 8 && byWorker.size < 2; i++) {
        const c = ioc(url, { transports: [i % 2 ? "polling" : "websocket"], forceNew: true, reconnection: false });
        clients.push(c);
        await once(c, "connect");
        const me = await c.timeout(5000).emitWithAck("whoami");
        assert.equal(me.sha, sha, "the worker loads the installed .wasm");
        if (!byWorker.has(me.worker)) byWorker.set(me.worker, c);
      }
      assert.equal(byWorker.size, 2);
      const [a, b] = [byWorker.get(0), byWorker.get(1)];
      await until(async () => (await a.timeout(5000).emitWithAck("count")) === 2, 10_000, "two nodes");
      await a.timeout(5000).emitWithAck("join", "packed");
      await b.timeout(5000).emitWithAck("join", "packed");
      const got = await b.timeout(5000).emitWithAck("fetch", "packed");
      assert.deepEqual(got.map((s) => s.id).sort(), [a.id, b.id].sort());
      assert.deepEqual(got.find((s) => s.id === a.id).rooms, [a.id, "packed"].sort());
    } finally {
      for (const c of clients) c.disconnect();
      primary.kill("SIGTERM");
      await once(primary, "exit");
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
