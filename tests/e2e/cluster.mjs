// Helpers of the end-to-end tests: start a demo cluster (the real
// `sio-cluster-host demo` binary, real worker processes) and connect the
// official socket.io client to it.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { io } from "socket.io-client";

export const BIN = process.env.SIO_CLUSTER_HOST_BIN;
if (!BIN) {
  throw new Error("set SIO_CLUSTER_HOST_BIN to the sio-cluster-host binary");
}

/** Starts `sio-cluster-host demo` with `workers` workers on a free port. */
export async function startCluster(workers, extra = []) {
  const child = spawn(
    BIN,
    ["demo", "--workers", String(workers), "--port", "0", "--bind", "127.0.0.1",
      "--balance", "round-robin", "--grace-period", "2000", ...extra],
    { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, RUST_LOG: "info" } },
  );
  const log = [];
  let port = null;
  let serving = 0;
  const ready = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`cluster not ready in 60 s:\n${log.join("")}`)), 60_000);
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
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`primary exited with ${code}:\n${log.join("")}`));
    });
  });
  await ready;
  child.removeAllListeners("exit");
  const url = `http://127.0.0.1:${port}`;
  return {
    url,
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

/** Connects one client and waits for `connect`. */
export async function connect(url, transport, nsp = "/") {
  const socket = io(url + nsp, {
    transports: [transport],
    forceNew: true,
    reconnection: false,
    timeout: 10_000,
  });
  await new Promise((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("connect_error", reject);
  });
  return socket;
}

/** Emits with an ack and resolves with the ack's argument (10 s bound). */
export function call(socket, event, ...args) {
  return socket.timeout(10_000).emitWithAck(event, ...args);
}

/**
 * Connects `n` clients per worker (round-robin balance) and returns them
 * grouped by worker index, checked with `whoami`.
 */
export async function clientsPerWorker(url, transport, workers, n = 1, nsp = "/") {
  const byWorker = Array.from({ length: workers }, () => []);
  for (let tries = 0; tries < workers * n * 4 && byWorker.some((l) => l.length < n); tries++) {
    const s = await connect(url, transport, nsp);
    const me = await call(s, "whoami");
    s.worker = me.worker;
    s.pid = me.pid;
    if (byWorker[me.worker].length < n) byWorker[me.worker].push(s);
    else s.disconnect();
  }
  if (byWorker.some((l) => l.length < n)) {
    throw new Error(`could not place ${n} clients on each of ${workers} workers`);
  }
  return byWorker;
}

/** Resolves with the next `event` on `socket`, or rejects after `ms`. */
export function next(socket, event, ms = 3000) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      socket.off(event, on);
      reject(new Error(`no ${event} within ${ms} ms on worker ${socket.worker}`));
    }, ms);
    function on(...args) {
      clearTimeout(t);
      resolve(args);
    }
    socket.once(event, on);
  });
}

/** Collects every `event` on `socket` into an array. */
export function record(socket, event) {
  const got = [];
  socket.on(event, (...args) => got.push(args));
  return got;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
