// Test helpers: the real hub (`sio-cluster-host hub --socket`), socket.io
// servers on @sio-cluster/node attached to it in this process, and the
// official socket.io client.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import http from "node:http";
import { Server } from "socket.io";
import { io as ioc } from "socket.io-client";
import { Cluster } from "../src/cluster.js";
import { installIds } from "../src/ids.js";
import { HubLink } from "../src/link.js";

export const BIN = process.env.SIO_CLUSTER_HOST_BIN;

/** The primary binary; the tests that need it fail (not skip) without it. */
export function bin() {
  if (!BIN) throw new Error("set SIO_CLUSTER_HOST_BIN to the sio-cluster-host binary");
  return BIN;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `f` until it returns a truthy value (or throws after `ms`). */
export async function until(f, ms = 5000, what = "condition") {
  const t0 = Date.now();
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** Starts `sio-cluster-host hub --socket` in a private temp folder. */
export async function startHub(extra = []) {
  const dir = mkdtempSync(join(tmpdir(), "sio-node-hub-"));
  const socket = join(dir, "hub.sock");
  const child = spawn(bin(), ["hub", "--socket", socket, ...extra], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? "warn" },
  });
  const log = [];
  child.stderr.on("data", (d) => log.push(d.toString()));
  let out = "";
  await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`hub not ready:\n${log.join("")}`)), 10_000);
    child.stdout.on("data", (d) => {
      out += d.toString();
      if (out.includes("SIO_CLUSTER_TOKEN_FILE=")) {
        clearTimeout(t);
        resolve();
      }
    });
    child.once("exit", (code) => {
      clearTimeout(t);
      reject(new Error(`hub exited with ${code}:\n${log.join("")}`));
    });
  });
  const tokenFile = `${socket}.token`;
  return {
    socket,
    tokenFile,
    token: readFileSync(tokenFile, "utf8").trim(),
    log,
    async stop() {
      if (child.exitCode === null) {
        child.kill("SIGTERM");
        await once(child, "exit");
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A hub link (raw, no adapter) to `hub`. */
export function rawLink(hub, index = 99) {
  return HubLink.connect({ ipc: { path: hub.socket }, token: hub.token, index });
}

/**
 * One socket.io server on its own HTTP port, its adapter attached to `hub`
 * (a "worker" in this process). `setup(io)` registers handlers before it
 * listens.
 */
export async function member(hub, { index = 0, heartbeatIntervalMs = 5000, heartbeatTimeoutMs = 10000, adapterOptions = {}, serverOptions = {}, setup } = {}) {
  installIds();
  const link = await HubLink.connect({ ipc: { path: hub.socket }, token: hub.token, index });
  const env = { heartbeatIntervalMs, heartbeatTimeoutMs, maxFrame: 64 * 1024 * 1024 };
  const logs = [];
  const cluster = new Cluster(link, env, { exitOnClose: false, logger: (l) => logs.push(l) });
  const httpServer = http.createServer();
  const io = new Server(httpServer, { adapter: cluster.adapter(adapterOptions), ...serverOptions });
  setup?.(io);
  await new Promise((r) => httpServer.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${httpServer.address().port}`;
  const clients = [];
  return {
    cluster,
    io,
    url,
    logs,
    link,
    async client(nsp = "/", opts = {}) {
      const s = ioc(url + nsp, { transports: ["websocket"], forceNew: true, reconnection: false, ...opts });
      clients.push(s);
      await new Promise((resolve, reject) => {
        s.once("connect", resolve);
        s.once("connect_error", reject);
      });
      return s;
    },
    async close() {
      for (const c of clients) c.disconnect();
      io.close();
      link.close();
      await new Promise((r) => httpServer.close(r));
    },
  };
}

/** Resolves with the arguments of the next `event` on `emitter`, or rejects after `ms`. */
export function next(emitter, event, ms = 3000) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      emitter.off(event, on);
      reject(new Error(`no ${event} within ${ms} ms`));
    }, ms);
    function on(...args) {
      clearTimeout(t);
      resolve(args);
    }
    emitter.once(event, on);
  });
}

/** Collects every `event` on `emitter`. */
export function record(emitter, event) {
  const got = [];
  emitter.on(event, (...args) => got.push(args));
  return got;
}

/** A tiny core module whose export `t` traps (`unreachable`): a real WebAssembly trap. */
export function trapFunction() {
  const bytes = Uint8Array.from([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    0x01, 0x04, 0x01, 0x60, 0x00, 0x00,
    0x03, 0x02, 0x01, 0x00,
    0x07, 0x05, 0x01, 0x01, 0x74, 0x00, 0x00,
    0x0a, 0x05, 0x01, 0x03, 0x00, 0x00, 0x0b,
  ]);
  return new WebAssembly.Instance(new WebAssembly.Module(bytes)).exports.t;
}

/**
 * jco's `instantiateCore` hook that makes the next call of `method` (e.g.
 * "on-frames-packed") trap once `arm()` was called.
 */
export function trapInjector(method) {
  const trap = trapFunction();
  const state = { armed: false, fired: 0 };
  const hook = (module, imports) => {
    const inst = new WebAssembly.Instance(module, imports);
    const name = Object.keys(inst.exports).find((k) => k.endsWith(`#[method]node.${method}`));
    if (!name) return inst;
    const orig = inst.exports[name];
    const exports = { ...inst.exports };
    exports[name] = (...args) => {
      if (state.armed) {
        state.armed = false;
        state.fired++;
        trap();
      }
      return orig(...args);
    };
    return { exports };
  };
  return { hook, state, arm: () => (state.armed = true) };
}
