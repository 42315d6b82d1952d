// Helpers of the Redis suites (redis-contract.mjs, redis-faults.mjs): a real
// `redis-server` started and stopped by the test itself (on a Unix socket in
// a private temp dir, or a loopback port), `redis-cli` against it, and
// `sio-cluster-host demo --redis` primaries joined through it.
import { spawn, spawnSync } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createServer } from "node:net";
import { BIN, sleep } from "./cluster.mjs";

/** A free loopback TCP port. */
export async function freePort() {
  const srv = createServer();
  srv.listen(0, "127.0.0.1");
  await once(srv, "listening");
  const { port } = srv.address();
  srv.close();
  await once(srv, "close");
  return port;
}

/**
 * Starts `redis-server` (no persistence) in a fresh temp dir: on a Unix
 * socket, and on a loopback port too when `tcp` is set. `conf` are extra
 * `--name value` arguments. `restart()` stops it and starts it again on the
 * same socket and port.
 */
export async function startRedis({ tcp = false, conf = [] } = {}) {
  const dir = mkdtempSync(join(tmpdir(), "sio-redis-"));
  const sock = join(dir, "redis.sock");
  const port = tcp ? await freePort() : 0;
  const args = ["--port", String(port), "--bind", "127.0.0.1", "--unixsocket", sock,
    "--unixsocketperm", "700", "--save", "", "--appendonly", "no", "--dir", dir,
    "--daemonize", "no", ...conf];
  let child = null;
  const log = [];
  async function up() {
    child = spawn("redis-server", args, { stdio: ["ignore", "pipe", "pipe"] });
    child.stdout.on("data", (d) => log.push(d.toString()));
    child.stderr.on("data", (d) => log.push(d.toString()));
    for (let i = 0; i < 200; i++) {
      const r = spawnSync("redis-cli", ["-s", sock, "ping"], { encoding: "utf8" });
      if (r.stdout?.trim() === "PONG") return;
      if (child.exitCode !== null) break;
      await sleep(25);
    }
    throw new Error(`redis-server did not start:\n${log.join("")}`);
  }
  async function down(signal = "SIGTERM") {
    // Gone already (a signal's death sets signalCode, not exitCode).
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill(signal);
    await once(child, "exit");
  }
  await up();
  const redis = {
    dir,
    sock,
    port,
    log,
    url: `redis+unix://${sock}`,
    tcpUrl: `redis://127.0.0.1:${port}`,
    get pid() { return child.pid; },
    /** Runs redis-cli with `args`; returns its trimmed stdout. */
    cli(...cliArgs) {
      const r = spawnSync("redis-cli", ["-s", sock, ...cliArgs], { encoding: "utf8" });
      if (r.status !== 0) throw new Error(`redis-cli ${cliArgs.join(" ")}: ${r.stderr}`);
      return r.stdout.trim();
    },
    async restart(gapMs = 0) {
      await down();
      if (gapMs) await sleep(gapMs);
      await up();
    },
    async stop() {
      await down();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return redis;
}

/** Writes a cluster key file (0600) into `dir`; returns its path. */
export function keyFile(dir, key, name = "cluster.key") {
  const path = join(dir, name);
  writeFileSync(path, key, { mode: 0o600 });
  return path;
}

/**
 * Starts `sio-cluster-host demo` with `workers` socketioxide workers joined
 * through `url`, waits until every worker serves and (unless `waitLink` is
 * false) the bridge logged "redis link up". Returns { url, child, pid, log, text(), stop(), kill9() }.
 */
export async function startPrimary(redisUrl, { workers = 2, name, extra = [], waitLink = true } = {}) {
  const args = ["demo", "--workers", String(workers), "--port", "0", "--bind", "127.0.0.1",
    "--balance", "round-robin", "--grace-period", "2000", "--heartbeat-interval", "1000",
    "--redis", redisUrl, "--cluster-name", name, ...extra];
  const child = spawn(BIN, args, { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, RUST_LOG: "info" } });
  const log = [];
  let port = null;
  let serving = 0;
  let linked = false;
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`primary not ready in 60 s:\n${log.join("")}`)), 60_000);
    child.stderr.on("data", (chunk) => {
      const text = chunk.toString();
      log.push(text);
      const m = text.match(/public_addr=127\.0\.0\.1:(\d+)/);
      if (m) port = Number(m[1]);
      serving += (text.match(/demo worker serving/g) ?? []).length;
      if (text.includes("redis link up") || !waitLink) linked = true;
      if (port && serving >= workers && linked) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`primary exited with ${code}:\n${log.join("")}`));
    });
  });
  child.removeAllListeners("exit");
  return {
    url: `http://127.0.0.1:${port}`,
    child,
    pid: child.pid,
    log,
    text: () => log.join(""),
    /** Resolves when the log matches `re` (checked every 20 ms), else rejects. */
    async waitLog(re, ms = 10_000) {
      const t0 = Date.now();
      while (Date.now() - t0 < ms) {
        if (re.test(log.join(""))) return;
        await sleep(20);
      }
      throw new Error(`no ${re} in the log within ${ms} ms:\n${log.join("")}`);
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill("SIGTERM");
      const t = setTimeout(() => child.kill("SIGKILL"), 8000);
      const [code] = await once(child, "exit");
      clearTimeout(t);
      return code;
    },
    async kill9() {
      child.kill("SIGKILL");
      await once(child, "exit");
    },
  };
}

/**
 * Polls `f` every `every` ms until it returns a truthy value or `ms` pass;
 * returns that value or throws with `what`.
 */
export async function until(what, f, ms = 15_000, every = 50) {
  const t0 = Date.now();
  let last;
  while (Date.now() - t0 < ms) {
    last = await f();
    if (last) return last;
    await sleep(every);
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what} (last: ${JSON.stringify(last)})`);
}
