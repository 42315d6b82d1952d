#!/usr/bin/env node
// Issue 12 item 6: the cross-machine path, benchmarked. Three systems, each
// as TWO server processes on this box joined through ONE Redis, under the
// same load, side by side in one run:
//
//   ours     two `sio-cluster-host demo --redis URL` primaries, 1 worker each
//   node     two socket.io servers on @socket.io/redis-adapter (bench/redis-ref/server.js)
//   sioxide  two socketioxide servers on socketioxide-redis (bench/sioxide-redis/)
//
// The script starts its own redis-server (temporary directory, loopback, a
// free port, no persistence) and stops it at the end. Every run starts the
// system's two servers fresh with a channel prefix of its own, waits until
// each answers whoami and server_count == 2, runs the Rust load client
// (target/release/sio-cluster-loadgen) with the clients split over the two
// servers (client i on server i % 2, so about half of the deliveries cross
// Redis), samples /proc for the servers' process trees and for redis-server
// every 100 ms and Redis's INFO every 500 ms, and kills the servers.
// CPU per delivery = CPU µs of the servers (or of redis-server) in the
// measurement window / deliveries received in that window.
//
// Scenarios (default all four), as bench/node-compare.mjs: rooms of 20
// (R = C/20 rooms, S = R senders, one per room) and rooms of 2 (R = C/2), in
// max mode (closed loop, W in flight per sender) and rate mode (fixed msg/s).
// The system order rotates from round to round.
import { spawn, execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync, openSync, closeSync, readdirSync, rmSync } from "node:fs";
import { createServer, createConnection } from "node:net";
import { cpus, loadavg, hostname, totalmem, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { ensureDeps } = require("./lib/deps.cjs");

const BENCH = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(BENCH, "..");
let LOADGEN = "target/release/sio-cluster-loadgen";
// {P} port, {R} Redis URL, {K} channel prefix / cluster name (fresh per run),
// {I} server index (0, 1).
const SYSTEMS = {
  ours: {
    name: "sio-cluster demo --redis (1 worker per primary)",
    cmd: "target/release/sio-cluster-host demo --workers 1 --port {P} --redis {R} --cluster-name {K}",
  },
  node: {
    name: "@socket.io/redis-adapter",
    cmd: "node bench/redis-ref/server.js --port {P} --redis {R} --key {K} --index {I}",
  },
  sioxide: {
    name: "socketioxide-redis",
    cmd: "bench/sioxide-redis/target/release/sioxide-redis-bench --port {P} --redis {R} --prefix {K} --index {I}",
  },
};

const USAGE = `usage: node bench/redis-compare.mjs [options]

Runs ours (two sio-cluster-host demo --redis primaries, 1 worker each), node
(two @socket.io/redis-adapter servers) and sioxide (two socketioxide-redis
servers), each through one redis-server this script starts, under the same
loads, alternating, and writes bench/results/redis-compare-<time>.json.

  --systems LIST      subset/order of ours,node,sioxide (default all three)
  --ours CMD, --node CMD, --sioxide CMD
                      override a system's server command: {P} port, {R} Redis
                      URL, {K} channel prefix (fresh per run), {I} index
  --servers N         server processes per system (default 2)
  --scenarios LIST    of r20-max, r2-max, r20-rate, r2-rate (default all four)
  --clients C         default 200
  --window W          max mode, in flight per sender (default 16)
  --rate-r20 M        rate mode, rooms of 20: messages/s in total (default 400,
                      8 000 deliveries/s: about half of what the Node anchor
                      sustains here, so that p99 is compared below saturation)
  --rate-r2 M         rate mode, rooms of 2 (default 1000, 2 000 deliveries/s)
  --rounds K          default 2
  --warmup SEC        default 2
  --duration SEC      default 8
  --threads T         load client tokio threads (default 1)
  --port P            first port for the servers (default 3800)
  --redis-server BIN  default redis-server
  --loadgen BIN       default target/release/sio-cluster-loadgen
  --max-minutes M     start no new run after M minutes (default 40)
  --tag NAME          added to the output file name
  --out FILE          results JSON
  --table FILE        only print the markdown tables of an earlier result
  -h, --help`;

let values;
try {
  ({ values } = parseArgs({
    options: {
      systems: { type: "string", default: "ours,node,sioxide" },
      ours: { type: "string" },
      node: { type: "string" },
      sioxide: { type: "string" },
      servers: { type: "string", default: "2" },
      scenarios: { type: "string", default: "r20-max,r2-max,r20-rate,r2-rate" },
      clients: { type: "string", default: "200" },
      window: { type: "string", default: "16" },
      "rate-r20": { type: "string", default: "400" },
      "rate-r2": { type: "string", default: "1000" },
      rounds: { type: "string", default: "2" },
      warmup: { type: "string", default: "2" },
      duration: { type: "string", default: "8" },
      threads: { type: "string", default: "1" },
      port: { type: "string", default: "3800" },
      "redis-server": { type: "string", default: "redis-server" },
      loadgen: { type: "string" },
      "max-minutes": { type: "string", default: "40" },
      tag: { type: "string" },
      out: { type: "string" },
      table: { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  }));
} catch (e) {
  console.error(`redis-compare: ${e.message}\n\n${USAGE}`);
  process.exit(2);
}
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}
const fail = (m, code = 2) => {
  console.error(`redis-compare: ${m}`);
  process.exit(code);
};

// ---- markdown tables (also --table FILE)
const fmt = (v, d = 1) =>
  v == null || !Number.isFinite(Number(v))
    ? "–"
    : Number(v).toLocaleString("en-US", { minimumFractionDigits: d, maximumFractionDigits: d }).replace(/,/g, " ");
function tables(r) {
  const out = [];
  const keys = Object.keys(r.systems);
  const label = {};
  for (const s of r.scenarios) label[s.name] = s.mode === "max" ? `rooms of ${s.roomSize}, max W=${r.options.window}` : `rooms of ${s.roomSize}, ${s.rate} msg/s`;
  const ok = r.runs.filter((x) => x.ok);
  const la = r.runs.flatMap((x) => [x.loadavg_before?.[0], x.loadavg_after?.[0]]).filter((x) => x != null).sort((p, q) => p - q);
  const other = ok.map((x) => x.cpu?.other_percent).filter((x) => x != null).sort((p, q) => p - q);
  out.push(
    `${ok.length}/${r.runs.length} runs ok, ${r.options.rounds} rounds, C=${r.options.clients} split over ${r.options.servers} servers, ` +
      `${r.options.duration} s measured; load average (1 min) ${la[0]}–${la[la.length - 1]}; other CPU ${Math.round(other[0])}–${Math.round(other[other.length - 1])} %; ` +
      `redis-server ${r.redis?.version ?? "?"}; git ${r.git?.slice(0, 7)}`,
    "",
    "| load | system | deliveries/s | crossed | p50 ms | p99 ms | crossed p50 ms | µs CPU / delivery, servers | Redis µs / delivery | Redis CPU | PUBLISH/s | servers CPU | other CPU | lost |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
  );
  for (const row of r.summary) {
    for (const k of keys) {
      const x = row[k];
      if (!x || !x.runs_ok) continue;
      out.push(
        `| ${label[row.scenario]} | ${k} | ${fmt(x.deliveries_per_s, 0)} | ${fmt(x.crossed_percent, 0)} % | ${fmt(x.p50_ms)} | ${fmt(x.p99_ms)} | ${fmt(x.crossed_p50_ms)} | **${fmt(x.us_per_delivery, 2)}** | ${fmt(x.redis_us_per_delivery, 2)} | ${fmt(x.redis_cpu_percent, 0)} % | ${fmt(x.publish_per_s, 0)} | ${fmt(x.servers_cpu_percent, 0)} % | ${fmt(x.other_cpu_percent, 0)} % | ${fmt(x.lost, 0)} |`,
      );
    }
  }
  const q = (o) => (o && o.median != null ? `${fmt(o.median, 2)} (${o.rounds.map((v) => fmt(v, 2)).join(", ")})` : "–");
  out.push(
    "",
    "Ratios: medians of per-round ratios (rounds in parentheses).",
    "",
    "| load | deliveries/s ours/node (goal ≥ 3) | ours/sioxide (goal ≥ 1.5 rooms of 2, ≥ 1 rooms of 20) | p99 ours/node (≤ 0.5) | p99 ours/sioxide (≤ 0.5) | CPU/delivery ours/node | ours/sioxide | Redis CPU/delivery ours/node | ours/sioxide |",
    "|---|---|---|---|---|---|---|---|---|",
  );
  for (const row of r.summary) {
    const t = row.ratios;
    out.push(
      `| ${label[row.scenario]} | ${q(t.deliv_ours_node)} | ${q(t.deliv_ours_sioxide)} | ${q(t.p99_ours_node)} | ${q(t.p99_ours_sioxide)} | ${q(t.cpu_ours_node)} | ${q(t.cpu_ours_sioxide)} | ${q(t.redis_ours_node)} | ${q(t.redis_ours_sioxide)} |`,
    );
  }
  return out.join("\n");
}
if (values.table) {
  console.log(tables(JSON.parse(readFileSync(values.table, "utf8"))));
  process.exit(0);
}

const num = (k) => {
  const n = Number(values[k]);
  if (!Number.isFinite(n) || n <= 0) fail(`--${k}: expected a positive number`);
  return n;
};
for (const k of Object.keys(SYSTEMS)) if (values[k]) SYSTEMS[k].cmd = values[k];
if (values.loadgen) LOADGEN = values.loadgen;
const systemKeys = values.systems.split(",").map((s) => s.trim());
for (const k of systemKeys) if (!SYSTEMS[k]) fail(`--systems: unknown system ${k}`);
const clients = num("clients");
const SCEN = {
  "r20-max": { roomSize: 20, mode: "max" },
  "r2-max": { roomSize: 2, mode: "max" },
  "r20-rate": { roomSize: 20, mode: "rate" },
  "r2-rate": { roomSize: 2, mode: "rate" },
};
const scenarios = values.scenarios.split(",").map((s) => {
  const sc = SCEN[s.trim()];
  if (!sc) fail(`--scenarios: unknown scenario ${s}`);
  const rooms = Math.max(1, Math.round(clients / sc.roomSize));
  const rate = sc.mode === "rate" ? num(sc.roomSize === 20 ? "rate-r20" : "rate-r2") : undefined;
  return { name: s.trim(), ...sc, rooms, senders: rooms, rate };
});
const opts = {
  clients,
  servers: num("servers"),
  window: num("window"),
  rounds: num("rounds"),
  warmup: Number(values.warmup),
  duration: num("duration"),
  threads: num("threads"),
  port: num("port"),
  maxMinutes: num("max-minutes"),
};
if (!existsSync(resolve(ROOT, LOADGEN))) fail(`${LOADGEN} is missing (cargo build --release -p sio-cluster-loadgen)`);
for (const k of systemKeys) {
  const bin = SYSTEMS[k].cmd.split(/\s+/)[0];
  if (bin.includes("/") && !existsSync(resolve(ROOT, bin))) {
    fail(
      `${k}: ${bin} is missing (${k === "sioxide" ? "cargo build --release --manifest-path bench/sioxide-redis/Cargo.toml" : "cargo build --release -p sio-cluster-host"}), or leave it out with --systems`,
    );
  }
}
ensureDeps();
const { io } = await import("socket.io-client");

const stamp = new Date().toISOString().replace(/\.\d+Z$/, "Z").replace(/:/g, "-");
const outFile = resolve(values.out || join(BENCH, "results", `redis-compare-${stamp}${values.tag ? "-" + values.tag : ""}.json`));
const logDir = join(dirname(outFile), `logs-${stamp}`);
mkdirSync(logDir, { recursive: true });

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const median = (xs) => {
  const v = xs.filter((x) => x != null && Number.isFinite(x)).sort((p, q) => p - q);
  if (!v.length) return null;
  const m = Math.floor(v.length / 2);
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
};
const r2 = (x, d = 2) => (x == null ? null : Math.round(x * 10 ** d) / 10 ** d);
const monoUs = () => Number(process.hrtime.bigint() / 1000n);

// ---- /proc: per-process CPU of process trees
const TICK_US = 1e6 / 100; // USER_HZ = 100 on Linux
function procTable() {
  const t = new Map();
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const s = readFileSync(`/proc/${d}/stat`, "utf8");
      const close = s.lastIndexOf(")");
      const comm = s.slice(s.indexOf("(") + 1, close);
      const f = s.slice(close + 2).split(" ");
      t.set(Number(d), { ppid: Number(f[1]), comm, cpuUs: (Number(f[11]) + Number(f[12])) * TICK_US });
    } catch {}
  }
  return t;
}
/** {at, procs: {pid: {cpuUs, depth, comm, root}}} for the trees under `roots`. */
function treeSample(roots) {
  const t = procTable();
  const kids = new Map();
  for (const [pid, st] of t) {
    if (!kids.has(st.ppid)) kids.set(st.ppid, []);
    kids.get(st.ppid).push(pid);
  }
  const out = {};
  for (const root of roots) {
    if (!t.has(root)) return null;
    const stack = [[root, 0]];
    while (stack.length) {
      const [p, depth] = stack.pop();
      const st = t.get(p);
      out[p] = { cpuUs: st.cpuUs, depth, comm: st.comm, root };
      for (const c of kids.get(p) || []) stack.push([c, depth + 1]);
    }
  }
  return { at: monoUs(), procs: out };
}
/** A cheaper sample: only the processes of an earlier full sample. */
function knownSample(first) {
  const out = {};
  for (const [pid, info] of Object.entries(first.procs)) {
    try {
      const s = readFileSync(`/proc/${pid}/stat`, "utf8");
      const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
      out[pid] = { ...info, cpuUs: (Number(f[11]) + Number(f[12])) * TICK_US };
    } catch {}
  }
  return { at: monoUs(), procs: out };
}
/** Value of `get(sample)` at monotonic time `at`, interpolated between samples. */
function valueAt(samples, get, at) {
  let prev = null;
  for (const s of samples) {
    const v = get(s);
    if (v === undefined || v === null) continue;
    if (s.at >= at) {
      if (!prev) return v;
      const f = (at - prev.at) / (s.at - prev.at || 1);
      return prev.v + f * (v - prev.v);
    }
    prev = { at: s.at, v };
  }
  return prev ? prev.v : null;
}
/** Busy µs of the whole machine (all CPUs), from /proc/stat. */
function machineBusyUs() {
  const line = readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal
  return (line[0] + line[1] + line[2] + line[5] + line[6] + line[7]) * TICK_US;
}

// ---- ports
function portFree(port) {
  return new Promise((res) => {
    const srv = createServer();
    srv.once("error", () => res(false));
    srv.listen(port, "127.0.0.1", () => srv.close(() => res(true)));
  });
}
let nextPort = opts.port;
async function takePort() {
  for (let i = 0; i < 400; i++) {
    const p = nextPort++;
    if (nextPort > opts.port + 400) nextPort = opts.port;
    if (await portFree(p)) return p;
  }
  fail("no free port", 1);
}
async function freePortFrom(base) {
  for (let p = base; p < base + 200; p++) if (await portFree(p)) return p;
  fail("no free port for redis-server", 1);
}

// ---- Redis: our own server, and a tiny RESP client for INFO
const redisDir = mkdtempSync(join(tmpdir(), "redis-compare-"));
const redisPort = await freePortFrom(6500 + Math.floor(Math.random() * 400));
const redisUrl = `redis://127.0.0.1:${redisPort}`;
const redisLog = join(logDir, "redis-server.log");
let redisChild = null;
async function startRedis() {
  const fd = openSync(redisLog, "w");
  redisChild = spawn(
    values["redis-server"],
    ["--port", String(redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", redisDir, "--daemonize", "no", "--protected-mode", "yes"],
    { stdio: ["ignore", fd, fd] },
  );
  closeSync(fd);
  redisChild.on("exit", (code, signal) => (redisChild.exited = { code, signal }));
  const t0 = Date.now();
  while (Date.now() - t0 < 10_000) {
    if (redisChild.exited) fail(`redis-server exited (${redisChild.exited.signal || redisChild.exited.code}); log ${redisLog}`, 1);
    try {
      const info = await redisInfo("server");
      return { pid: redisChild.pid, port: redisPort, version: /redis_version:(\S+)/.exec(info)?.[1] ?? null };
    } catch {}
    await sleep(100);
  }
  fail(`redis-server did not answer within 10 s; log ${redisLog}`, 1);
}
async function stopRedis() {
  if (!redisChild || redisChild.exited) return;
  redisChild.kill("SIGTERM");
  const t0 = Date.now();
  while (!redisChild.exited && Date.now() - t0 < 5000) await sleep(50);
  if (!redisChild.exited) redisChild.kill("SIGKILL");
  rmSync(redisDir, { recursive: true, force: true });
}
/** INFO <section> over a fresh connection (RESP2 bulk string). */
function redisInfo(section) {
  return new Promise((res, rej) => {
    const c = createConnection({ host: "127.0.0.1", port: redisPort });
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => {
      c.destroy();
      rej(new Error("INFO timed out"));
    }, 2000);
    c.on("error", (e) => {
      clearTimeout(timer);
      rej(e);
    });
    c.on("connect", () => c.write(`INFO ${section}\r\n`));
    c.on("data", (d) => {
      buf = Buffer.concat([buf, d]);
      const nl = buf.indexOf("\r\n");
      if (nl < 0) return;
      if (buf[0] !== 0x24) {
        clearTimeout(timer);
        c.destroy();
        return rej(new Error(`INFO: ${buf.toString("utf8", 0, nl)}`));
      }
      const len = Number(buf.toString("utf8", 1, nl));
      if (buf.length < nl + 2 + len) return;
      clearTimeout(timer);
      c.destroy();
      res(buf.toString("utf8", nl + 2, nl + 2 + len));
    });
  });
}
/** The counters we track from INFO stats + commandstats. */
async function redisCounters() {
  const s = await redisInfo("all");
  const num = (re) => {
    const m = re.exec(s);
    return m ? Number(m[1]) : 0;
  };
  return {
    at: monoUs(),
    publish: num(/cmdstat_publish:calls=(\d+)/) + num(/cmdstat_spublish:calls=(\d+)/),
    commands: num(/total_commands_processed:(\d+)/),
    net_in: num(/total_net_input_bytes:(\d+)/),
    net_out: num(/total_net_output_bytes:(\d+)/),
  };
}

// ---- servers
let current = [];
function startServers(key, ports, prefix, runTag) {
  const sys = SYSTEMS[key];
  return ports.map((port, i) => {
    const cmd = sys.cmd
      .replaceAll("{P}", String(port))
      .replaceAll("{R}", redisUrl)
      .replaceAll("{K}", prefix)
      .replaceAll("{I}", String(i))
      .replaceAll("{N}", "1");
    const logFile = join(logDir, `${runTag}-s${i}.log`);
    const fd = openSync(logFile, "w");
    const child = spawn("sh", ["-c", `exec ${cmd}`], { cwd: ROOT, detached: true, stdio: ["ignore", fd, fd] });
    closeSync(fd);
    const c = { cmd, child, pid: child.pid, port, exited: null, logFile };
    child.on("exit", (code, signal) => (c.exited = { code, signal }));
    current.push(c);
    return c;
  });
}
const groupAlive = (pgid) => {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
};
async function stopServers(list) {
  const t0 = Date.now();
  for (const c of list) {
    try {
      process.kill(-c.pid, "SIGTERM");
    } catch {}
  }
  while (list.some((c) => groupAlive(c.pid)) && Date.now() - t0 < 5000) await sleep(50);
  const clean = !list.some((c) => groupAlive(c.pid));
  if (!clean) {
    for (const c of list) {
      try {
        process.kill(-c.pid, "SIGKILL");
      } catch {}
    }
    while (list.some((c) => groupAlive(c.pid)) && Date.now() - t0 < 8000) await sleep(50);
  }
  current = current.filter((c) => !list.includes(c));
  return { clean, stop_ms: Date.now() - t0 };
}
let interrupted = false;
process.on("SIGINT", async () => {
  if (interrupted) process.exit(130);
  interrupted = true;
  await stopServers(current);
  await stopRedis();
  process.exit(130);
});
function probe(url, ms) {
  return new Promise((res) => {
    const s = io(url, { transports: ["websocket"], forceNew: true, reconnection: false, timeout: ms });
    const done = (v) => {
      clearTimeout(timer);
      s.disconnect();
      res(v);
    };
    const timer = setTimeout(() => done(null), ms);
    s.once("connect_error", () => done(null));
    s.once("connect", async () => {
      try {
        const who = await s.timeout(ms).emitWithAck("whoami");
        const n = await s.timeout(ms).emitWithAck("server_count");
        done({ who, n });
      } catch {
        done(null);
      }
    });
  });
}
/** Until every server answers whoami and server_count == the total. */
async function waitReady(list, total) {
  const t0 = Date.now();
  const last = {};
  while (Date.now() - t0 < 30_000) {
    const dead = list.find((c) => c.exited);
    if (dead) throw new Error(`server exited (${dead.exited.signal ?? dead.exited.code}); log ${dead.logFile}`);
    const rs = await Promise.all(list.map((c) => probe(`http://127.0.0.1:${c.port}`, 1000)));
    rs.forEach((r, i) => (last[i] = r?.n));
    if (rs.every((r) => r && r.n === total && Number.isInteger(r.who?.worker))) return Date.now() - t0;
    await sleep(200);
  }
  throw new Error(`not ready within 30 s (server_count answers ${JSON.stringify(last)}, expected ${total}); logs ${list.map((c) => c.logFile).join(" ")}`);
}

function runLoad(urls, sc, pids, jsonFile) {
  const args = [
    "run", "--url", urls.join(","), "--clients", String(opts.clients), "--rooms", String(sc.rooms), "--senders", String(sc.senders),
    "--mode", sc.mode, "--window", String(opts.window), "--rate", String(sc.rate ?? 1000),
    "--warmup", String(opts.warmup), "--duration", String(opts.duration), "--threads", String(opts.threads),
    "--cluster-pid", pids.join(","), "--json-out", jsonFile, "--quiet",
  ];
  return new Promise((res) => {
    const t0 = monoUs();
    const child = spawn(resolve(ROOT, LOADGEN), args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (err += d));
    child.on("exit", (code) => res({ code, out: out.trim(), err: err.trim(), t0 }));
  });
}

// ---- main
const redis = await startRedis();
console.log(`redis-compare: redis-server ${redis.version} pid ${redis.pid} on ${redisUrl} (dir ${redisDir}); logs ${logDir}`);
const runs = [];
const t0 = Date.now();
const total = opts.rounds * scenarios.length * systemKeys.length;
let idx = 0;
let stopped = false;
outer: for (let round = 1; round <= opts.rounds; round++) {
  const order = systemKeys.map((_, i) => systemKeys[(i + round - 1) % systemKeys.length]);
  for (const sc of scenarios) {
    for (const key of order) {
      if (Date.now() - t0 > opts.maxMinutes * 60_000) {
        console.log(`redis-compare: --max-minutes reached, ${total - idx} runs not started`);
        stopped = true;
        break outer;
      }
      idx++;
      const ports = [];
      for (let i = 0; i < opts.servers; i++) ports.push(await takePort());
      const urls = ports.map((p) => `http://127.0.0.1:${p}`);
      const tag = `r${round}-${sc.name}-${key}`;
      const prefix = `rc${stamp.replace(/[^0-9]/g, "").slice(-8)}-${idx}`;
      const jsonFile = join(logDir, `${tag}.json`);
      const run = { round, scenario: sc.name, system: key, name: SYSTEMS[key].name, ok: false, prefix, loadavg_before: loadavg().map((x) => r2(x)) };
      process.stdout.write(`[${idx}/${total}] round ${round} ${sc.name} ${key} ... `);
      const list = startServers(key, ports, prefix, tag);
      run.commands = list.map((c) => c.cmd);
      let sampler = null;
      let infoSampler = null;
      const samples = [];
      const infos = [];
      const machine = [];
      try {
        run.ready_ms = await waitReady(list, opts.servers);
        const s0 = treeSample([...list.map((c) => c.pid), redis.pid]);
        if (!s0) throw new Error("a server process is gone");
        samples.push(s0);
        machine.push({ at: monoUs(), v: machineBusyUs() });
        infos.push(await redisCounters());
        sampler = setInterval(() => {
          samples.push(knownSample(s0));
          machine.push({ at: monoUs(), v: machineBusyUs() });
        }, 100);
        infoSampler = setInterval(() => redisCounters().then((c) => infos.push(c), () => {}), 500);
        const r = await runLoad(urls, sc, list.map((c) => c.pid), jsonFile);
        clearInterval(sampler);
        clearInterval(infoSampler);
        sampler = infoSampler = null;
        samples.push(knownSample(s0));
        infos.push(await redisCounters());
        if (r.code !== 0) throw new Error(`loadgen failed (exit ${r.code}): ${r.err || r.out}`);
        const x = JSON.parse(readFileSync(jsonFile, "utf8"));
        run.result = x;
        // the measurement window in CLOCK_MONOTONIC µs (loadgen: connect, +200 ms, warm-up, duration)
        const ws = r.t0 + Math.round((x.connect_seconds + 0.2 + x.warmup_s) * 1e6);
        const we = ws + Math.round(x.duration_s * 1e6);
        const winUs = we - ws;
        const perProc = [];
        for (const [pidS, info] of Object.entries(s0.procs)) {
          const pid = Number(pidS);
          const a = valueAt(samples, (s) => s.procs[pid]?.cpuUs, ws);
          const b = valueAt(samples, (s) => s.procs[pid]?.cpuUs, we);
          if (a == null || b == null) continue;
          perProc.push({ pid, comm: info.comm, depth: info.depth, root: info.root, cpu_us: Math.round(b - a) });
        }
        const deliv = x.deliveries_in_window || 1;
        const isRedis = (p) => p.root === redis.pid;
        const serversUs = perProc.filter((p) => !isRedis(p)).reduce((s, p) => s + p.cpu_us, 0);
        const redisUs = perProc.filter(isRedis).reduce((s, p) => s + p.cpu_us, 0);
        const perServer = list.map((c) => perProc.filter((p) => p.root === c.pid).reduce((s, p) => s + p.cpu_us, 0));
        const busy = valueAt(machine, (s) => s.v, we) - valueAt(machine, (s) => s.v, ws);
        const harnessPct = x.harness.cpu_percent_total;
        const at = (f) => valueAt(infos, f, we) - valueAt(infos, f, ws);
        run.cpu = {
          window_us: winUs,
          samples: samples.length,
          per_process: perProc,
          servers_us_per_delivery: r2(serversUs / deliv),
          per_server_us_per_delivery: perServer.map((u) => r2(u / deliv)),
          redis_us_per_delivery: r2(redisUs / deliv),
          total_us_per_delivery: r2((serversUs + redisUs) / deliv),
          servers_percent: r2((serversUs / winUs) * 100, 1),
          redis_percent: r2((redisUs / winUs) * 100, 1),
          machine_percent: r2((busy / winUs) * 100, 1),
          harness_percent: harnessPct,
          other_percent: r2(((busy - serversUs - redisUs) / winUs) * 100 - harnessPct, 1),
          loadgen_cluster_percent: x.cluster.cpu_percent,
        };
        run.redis = {
          publish_per_s: r2(at((c) => c.publish) / (winUs / 1e6), 0),
          commands_per_s: r2(at((c) => c.commands) / (winUs / 1e6), 0),
          net_in_bytes_per_s: r2(at((c) => c.net_in) / (winUs / 1e6), 0),
          net_out_bytes_per_s: r2(at((c) => c.net_out) / (winUs / 1e6), 0),
          info_samples: infos.length,
        };
        run.ok = x.clients_connected === opts.clients && x.workers_seen === opts.servers;
        if (!run.ok) run.error = `clients connected ${x.clients_connected}/${opts.clients}, servers seen ${x.workers_seen}/${opts.servers}`;
        console.log(
          `${x.deliveries_per_s} deliv/s (crossed ${r2((x.crossed_fraction ?? 0) * 100, 0)}%), p50 ${x.latency_ms.p50} p99 ${x.latency_ms.p99} ms (crossed p50 ${x.latency_crossed_ms?.p50}), lost ${x.lost}, ` +
            `us/deliv servers ${run.cpu.servers_us_per_delivery} (${run.cpu.per_server_us_per_delivery.join("+")}) redis ${run.cpu.redis_us_per_delivery}, ` +
            `servers ${run.cpu.servers_percent}% redis ${run.cpu.redis_percent}% harness ${harnessPct}% other ${run.cpu.other_percent}%, ` +
            `PUBLISH/s ${run.redis.publish_per_s}, split ${JSON.stringify(x.per_worker)}${run.error ? " NOT OK: " + run.error : ""}`,
        );
      } catch (e) {
        run.error = e.message;
        console.log(`FAILED: ${e.message}`);
      }
      if (sampler) clearInterval(sampler);
      if (infoSampler) clearInterval(infoSampler);
      run.stop = await stopServers(list);
      run.loadavg_after = loadavg().map((x) => r2(x));
      runs.push(run);
    }
  }
}
await stopRedis();

// ---- summary
const summary = [];
for (const sc of scenarios) {
  const row = { scenario: sc.name, mode: sc.mode, room_size: sc.roomSize, rooms: sc.rooms, senders: sc.senders, rate: sc.rate ?? null };
  for (const key of systemKeys) {
    const rs = runs.filter((r) => r.ok && r.scenario === sc.name && r.system === key);
    const m = (f) => median(rs.map(f));
    row[key] = {
      name: SYSTEMS[key].name,
      runs_ok: rs.length,
      deliveries_per_s: m((r) => r.result.deliveries_per_s),
      crossed_percent: m((r) => (r.result.crossed_fraction ?? 0) * 100),
      p50_ms: m((r) => r.result.latency_ms.p50),
      p99_ms: m((r) => r.result.latency_ms.p99),
      // the crossed deliveries alone (loadgen's latency_crossed_ms; absent in older results)
      crossed_p50_ms: m((r) => r.result.latency_crossed_ms?.p50),
      lost: m((r) => r.result.lost),
      us_per_delivery: m((r) => r.cpu.servers_us_per_delivery),
      redis_us_per_delivery: m((r) => r.cpu.redis_us_per_delivery),
      total_us_per_delivery: m((r) => r.cpu.total_us_per_delivery),
      servers_cpu_percent: m((r) => r.cpu.servers_percent),
      redis_cpu_percent: m((r) => r.cpu.redis_percent),
      harness_cpu_percent: m((r) => r.cpu.harness_percent),
      other_cpu_percent: m((r) => r.cpu.other_percent),
      publish_per_s: m((r) => r.redis.publish_per_s),
      loadavg_1m: m((r) => r.loadavg_after[0]),
    };
  }
  const per = (f) => {
    const xs = [];
    for (let round = 1; round <= opts.rounds; round++) {
      const g = (k) => runs.find((r) => r.ok && r.round === round && r.scenario === sc.name && r.system === k);
      const v = f(g);
      if (v != null && Number.isFinite(v)) xs.push(v);
    }
    return { median: r2(median(xs)), rounds: xs.map((v) => r2(v)) };
  };
  row.ratios = {};
  for (const b of ["node", "sioxide"]) {
    if (!systemKeys.includes("ours") || !systemKeys.includes(b)) continue;
    row.ratios[`deliv_ours_${b}`] = per((g) => g("ours") && g(b) && g("ours").result.deliveries_per_s / g(b).result.deliveries_per_s);
    row.ratios[`p99_ours_${b}`] = per((g) => g("ours") && g(b) && g("ours").result.latency_ms.p99 / g(b).result.latency_ms.p99);
    row.ratios[`cpu_ours_${b}`] = per((g) => g("ours") && g(b) && g("ours").cpu.servers_us_per_delivery / g(b).cpu.servers_us_per_delivery);
    row.ratios[`redis_ours_${b}`] = per((g) => g("ours") && g(b) && g("ours").cpu.redis_us_per_delivery / g(b).cpu.redis_us_per_delivery);
  }
  summary.push(row);
}

let git = null;
try {
  git = execFileSync("git", ["rev-parse", "HEAD"], { cwd: ROOT, encoding: "utf8" }).trim();
} catch {}
const report = {
  tool: "bench/redis-compare.mjs",
  started_at: new Date(t0).toISOString(),
  elapsed_s: Math.round((Date.now() - t0) / 1000),
  git,
  argv: process.argv.slice(2),
  machine: { hostname: hostname(), cpus: cpus().length, cpu_model: cpus()[0]?.model, mem_gb: Math.round(totalmem() / 1e8) / 10, node: process.version, loadavg_at_end: loadavg() },
  redis: { version: redis.version, url: redisUrl },
  options: opts,
  systems: Object.fromEntries(systemKeys.map((k) => [k, SYSTEMS[k]])),
  scenarios,
  stopped_early: stopped,
  summary,
  runs,
};
writeFileSync(outFile, JSON.stringify(report, null, 2) + "\n");
console.log("\n" + tables(report));
console.log(`\nresults: ${outFile} (${report.elapsed_s} s)`);
process.exit(runs.some((r) => r.ok) ? 0 : 1);
