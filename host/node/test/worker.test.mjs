// The Node worker as a process against a scripted hub (a Unix socket in this
// test): the Hello it sends, Welcome / Refused, exit 75 when the link closes
// or the hub breaks the protocol, the handoff refusal, the session reports,
// and the bounded outgoing queue.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { io as ioc } from "socket.io-client";
import { decodeToHub, encodeRefused, encodeWelcome, FrameReader, HubLink, LINK_CLOSED_EXIT_CODE } from "../src/link.js";
import { until } from "./helpers.mjs";

const WORKER = fileURLToPath(new URL("../demo/worker.mjs", import.meta.url));

/** A hub that answers the Hello with `answer(hello)` and records every frame. */
async function fakeHub(answer) {
  const dir = mkdtempSync(join(tmpdir(), "sio-fake-hub-"));
  const path = join(dir, "hub.sock");
  const frames = [];
  const conns = [];
  const server = net.createServer((c) => {
    conns.push(c);
    const r = new FrameReader();
    let hello = true;
    c.on("data", (d) => {
      r.push(d);
      for (let p = r.next(); p !== null; p = r.next()) {
        const msg = decodeToHub(p);
        frames.push(msg);
        if (hello) {
          hello = false;
          answer(msg, c);
        }
      }
    });
    c.on("error", () => {});
  });
  await new Promise((r) => server.listen(path, r));
  return {
    path,
    frames,
    conns,
    async close() {
      for (const c of conns) c.destroy();
      await new Promise((r) => server.close(r));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function startWorker(env) {
  const child = spawn(process.execPath, [WORKER], { stdio: ["ignore", "ignore", "pipe"], env: { PATH: process.env.PATH, ...env } });
  let err = "";
  child.stderr.on("data", (d) => (err += d.toString()));
  return {
    child,
    stderr: () => err,
    exited: once(child, "exit").then(([code, signal]) => ({ code, signal })),
  };
}

const welcome = (hello, c) => c.write(encodeWelcome({ worker: hello.worker }));

test("Hello carries version, index, pid and token; exit 75 when the hub closes the link", async () => {
  const hub = await fakeHub(welcome);
  const port = await freePort();
  try {
    const w = startWorker({ SIO_CLUSTER_IPC: hub.path, SIO_CLUSTER_TOKEN: "tok-1", SIO_CLUSTER_WORKER: "3", SIO_CLUSTER_LISTEN: `127.0.0.1:${port}` });
    await until(() => w.stderr().includes("demo worker serving"), 15_000, "worker serving");
    const hello = hub.frames[0];
    assert.deepEqual({ ...hello, pid: undefined }, { kind: "hello", version: 1, worker: 3, pid: undefined, token: "tok-1" });
    assert.equal(hello.pid, w.child.pid);
    // The worker announced its namespaces (INITIAL_HEARTBEAT publishes).
    assert.ok(hub.frames.some((f) => f.kind === "publish" && f.nsp === "/"));
    assert.ok(hub.frames.some((f) => f.kind === "publish" && f.nsp === "/custom"));
    // Engine.IO sessions are reported, opened and closed.
    const c = ioc(`http://127.0.0.1:${port}`, { transports: ["websocket"], forceNew: true, reconnection: false });
    await once(c, "connect");
    const eid = c.io.engine.id;
    await until(() => hub.frames.some((f) => f.kind === "session-opened" && f.sid === eid), 3000, "SessionOpened");
    c.disconnect();
    await until(() => hub.frames.some((f) => f.kind === "session-closed" && f.sid === eid), 3000, "SessionClosed");
    for (const conn of hub.conns) conn.destroy();
    const { code } = await w.exited;
    assert.equal(code, LINK_CLOSED_EXIT_CODE);
    assert.match(w.stderr(), /hub link closed/);
  } finally {
    await hub.close();
  }
});

test("a hub that breaks the protocol: the worker exits 75", async () => {
  const hub = await fakeHub((hello, c) => {
    welcome(hello, c);
    setTimeout(() => c.write(Buffer.from([1, 0, 0, 0, 0x42])), 300);
  });
  const port = await freePort();
  try {
    const w = startWorker({ SIO_CLUSTER_IPC: hub.path, SIO_CLUSTER_TOKEN: "t", SIO_CLUSTER_LISTEN: `127.0.0.1:${port}` });
    const { code } = await w.exited;
    assert.equal(code, LINK_CLOSED_EXIT_CODE);
    assert.match(w.stderr(), /protocol error: unknown frame kind 0x42/);
  } finally {
    await hub.close();
  }
});

test("Refused: the worker says why and exits 3", async () => {
  const hub = await fakeHub((_h, c) => c.end(encodeRefused("bad token")));
  try {
    const w = startWorker({ SIO_CLUSTER_IPC: hub.path, SIO_CLUSTER_TOKEN: "wrong" });
    const { code } = await w.exited;
    assert.equal(code, 3);
    assert.match(w.stderr(), /hub refused this worker: bad token/);
  } finally {
    await hub.close();
  }
});

test("SIO_CLUSTER_HANDOFF: fail fast, naming --handoff-websocket", async () => {
  const w = startWorker({ SIO_CLUSTER_IPC: "fd:3", SIO_CLUSTER_HANDOFF: "fd:5" });
  const { code } = await w.exited;
  assert.equal(code, 3);
  assert.match(w.stderr(), /--handoff-websocket/);
});

test("SIO_CLUSTER_COMPONENT (run --component): the same .wasm is accepted, another one refused", async () => {
  const { COMPONENT_PATH } = await import("../src/component.js");
  const dir = mkdtempSync(join(tmpdir(), "sio-comp-"));
  const hub = await fakeHub(welcome);
  const port = await freePort();
  try {
    const other = join(dir, "other.wasm");
    const { writeFileSync, readFileSync } = await import("node:fs");
    const bytes = readFileSync(COMPONENT_PATH);
    writeFileSync(other, Buffer.concat([bytes, Buffer.from([0])]));
    const bad = startWorker({ SIO_CLUSTER_IPC: hub.path, SIO_CLUSTER_TOKEN: "t", SIO_CLUSTER_COMPONENT: other });
    assert.equal((await bad.exited).code, 3);
    assert.match(bad.stderr(), /the primary runs the adapter component .*other\.wasm.*rebuild it with SIO_CLUSTER_WASM=/);
    const good = startWorker({ SIO_CLUSTER_IPC: hub.path, SIO_CLUSTER_TOKEN: "t", SIO_CLUSTER_COMPONENT: COMPONENT_PATH, SIO_CLUSTER_LISTEN: `127.0.0.1:${port}` });
    await until(() => good.stderr().includes("demo worker serving"), 15_000, "worker serving");
    good.child.kill("SIGTERM");
    await good.exited;
  } finally {
    await hub.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the outgoing queue is bounded when the hub does not read", async () => {
  const hub = await fakeHub((hello, c) => {
    welcome(hello, c);
    c.pause();
  });
  try {
    const limit = 256 * 1024;
    const link = await HubLink.connect({ ipc: { path: hub.path }, token: "t", maxQueued: limit });
    link.onClose = () => {};
    link.start();
    const frame = Buffer.alloc(16 * 1024, 7);
    let sent = 0;
    let full = null;
    for (let i = 0; i < 10_000 && !full; i++) {
      try {
        link.publish(1n, "/", frame);
        sent++;
      } catch (e) {
        full = e;
      }
      if (i % 8 === 0) await new Promise((r) => setImmediate(r));
    }
    assert.equal(full?.code, "QueueFull", `refused after ${sent} frames`);
    assert.ok(link.queuedBytes <= limit + frame.length + 64, `${link.queuedBytes} queued`);
    assert.equal(link.stats.refusedFull, 1);
    assert.ok(sent < 200, `${sent} frames accepted (socket buffers + the limit)`);
    assert.throws(() => link.publish(1n, "/", Buffer.alloc(70 * 1024 * 1024)), (e) => e.code === "TooLarge");
    link.close();
  } finally {
    await hub.close();
  }
});
