#!/usr/bin/env node
// Issue 11 item 5: three Node clusters side by side under the same load,
// with the Rust load client (target/release/sio-cluster-loadgen) and the
// cluster's CPU per delivery split by process role (primary / workers).
//
//   a  Node socket.io workers on sio-cluster-host + the adapter component
//      (sio-cluster-host run -- node host/node/demo/worker.mjs)
//   b  the Node reference (bench/node-ref/primary.js: socket.io +
//      @socket.io/cluster-adapter + @socket.io/sticky)
//   c  the bound: one socket.io process, default in-memory adapter, every
//      client local (bench/node-ref/single.js)
//
// Scenarios (default all four): rooms of 20 (R = C/20 rooms, S = R senders,
// so every room gets exactly one sender and the mean fan-out is exactly 20)
// and rooms of 2 (R = C/2, S = R), each in max mode (closed loop, a
// saturating window) and rate mode (fixed messages/s). Each round runs every
// scenario on every cluster; the cluster order rotates from round to round.
// Every run starts its cluster fresh, waits until a client gets whoami and
// server_count == the cluster's worker count, samples /proc for every process
// of the cluster's tree every 100 ms while the load client runs, and kills
// the process group. CPU per delivery = CPU µs of the role during the
// measurement window / deliveries received in that window.
import { spawn, execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync, openSync, closeSync, readdirSync } from "node:fs";
import { createServer } from "node:net";
import { cpus, loadavg, hostname, totalmem } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { ensureDeps } = require("./lib/deps.cjs");

const BENCH = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(BENCH, "..");
const LOADGEN = "target/release/sio-cluster-loadgen";
const CLUSTERS = {
  a: { name: "sio-cluster-node", workers: 2, cmd: "target/release/sio-cluster-host run --workers {N} --port {P} -- node host/node/demo/worker.mjs" },
  b: { name: "node-ref", workers: 2, cmd: "node bench/node-ref/primary.js --workers {N} --port {P}" },
  c: { name: "single", workers: 1, cmd: "node bench/node-ref/single.js --port {P}" },
};

const USAGE = `usage: node bench/node-compare.mjs [options]

Runs clusters a (Node workers on sio-cluster-host), b (node-ref) and c (one
socket.io process, the bound) under the same loads, alternating, and writes
bench/results/node-compare-<time>.json (every run, medians, ratios).

  --clusters LIST     subset/order of a,b,c (default a,b,c)
  --a CMD, --b CMD, --c CMD   override a cluster's command ({N} workers, {P} port)
  --add KEY=CMD       one more 2-worker cluster named KEY (repeatable; list it
                      in --clusters), e.g. a0="... -- node /tmp/before/demo/worker.mjs"
  --scenarios LIST    of r20-max, r2-max, r20-rate, r2-rate (default all four)
  --clients C         default 200
  --window W          max mode, in flight per sender (default 16)
  --rate-r20 M        rate mode, rooms of 20: messages/s in total (default 1000,
                      i.e. 20 000 deliveries/s, which all three sustain here)
  --rate-r2 M         rate mode, rooms of 2 (default 2000, 4 000 deliveries/s)
  --rounds K          default 3
  --warmup SEC        default 2
  --duration SEC      default 8
  --threads T         load client tokio threads (default 1)
  --port P            first port (default 3600)
  --max-minutes M     start no new run after M minutes (default 40)
  --tag NAME          added to the output file name
  --out FILE          results JSON
  -h, --help`;

let values;
try {
  ({ values } = parseArgs({
    options: {
      clusters: { type: "string", default: "a,b,c" },
      a: { type: "string" },
      b: { type: "string" },
      c: { type: "string" },
      add: { type: "string", multiple: true, default: [] },
      scenarios: { type: "string", default: "r20-max,r2-max,r20-rate,r2-rate" },
      clients: { type: "string", default: "200" },
      window: { type: "string", default: "16" },
      "rate-r20": { type: "string", default: "1000" },
      "rate-r2": { type: "string", default: "2000" },
      rounds: { type: "string", default: "3" },
      warmup: { type: "string", default: "2" },
      duration: { type: "string", default: "8" },
      threads: { type: "string", default: "1" },
      port: { type: "string", default: "3600" },
      "max-minutes": { type: "string", default: "40" },
      tag: { type: "string" },
      out: { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  }));
} catch (e) {
  console.error(`node-compare: ${e.message}\n\n${USAGE}`);
  process.exit(2);
}
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}
const fail = (m, code = 2) => {
  console.error(`node-compare: ${m}`);
  process.exit(code);
};
const num = (k) => {
  const n = Number(values[k]);
  if (!Number.isFinite(n) || n <= 0) fail(`--${k}: expected a positive number`);
  return n;
};
for (const k of ["a", "b", "c"]) if (values[k]) CLUSTERS[k].cmd = values[k];
for (const a of values.add) {
  const i = a.indexOf("=");
  if (i < 1) fail(`--add: expected KEY=CMD, got ${a}`);
  CLUSTERS[a.slice(0, i)] = { name: a.slice(0, i), workers: 2, cmd: a.slice(i + 1) };
}
const clusterKeys = values.clusters.split(",").map((s) => s.trim());
for (const k of clusterKeys) if (!CLUSTERS[k]) fail(`--clusters: unknown cluster ${k}`);
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
  window: num("window"),
  rounds: num("rounds"),
  warmup: Number(values.warmup),
  duration: num("duration"),
  threads: num("threads"),
  port: num("port"),
  maxMinutes: num("max-minutes"),
};
if (!existsSync(resolve(ROOT, LOADGEN))) fail(`${LOADGEN} is missing (cargo build --release -p sio-cluster-loadgen)`);
ensureDeps();
const { io } = await import("socket.io-client");

const stamp = new Date().toISOString().replace(/\.\d+Z$/, "Z").replace(/:/g, "-");
const outFile = resolve(values.out || join(BENCH, "results", `node-compare-${stamp}${values.tag ? "-" + values.tag : ""}.json`));
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

// ---- /proc: per-process CPU of a tree
const TICK_US = 1e4;
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
/** {pid: {cpuUs, role, comm}} for root and its descendants. */
function treeSample(root) {
  const t = procTable();
  if (!t.has(root)) return null;
  const kids = new Map();
  for (const [pid, st] of t) {
    if (!kids.has(st.ppid)) kids.set(st.ppid, []);
    kids.get(st.ppid).push(pid);
  }
  const out = {};
  const stack = [[root, 0]];
  while (stack.length) {
    const [p, depth] = stack.pop();
    const st = t.get(p);
    out[p] = { cpuUs: st.cpuUs, depth, comm: st.comm };
    for (const c of kids.get(p) || []) stack.push([c, depth + 1]);
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
      out[pid] = { cpuUs: (Number(f[11]) + Number(f[12])) * TICK_US, depth: info.depth, comm: info.comm };
    } catch {}
  }
  return { at: monoUs(), procs: out };
}
/** CPU µs of `pid` at monotonic time `at`, interpolated between samples. */
function cpuAt(samples, pid, at) {
  let prev = null;
  for (const s of samples) {
    const v = s.procs[pid]?.cpuUs;
    if (v === undefined) continue;
    if (s.at >= at) {
      if (!prev) return v;
      const f = (at - prev.at) / (s.at - prev.at || 1);
      return prev.v + f * (v - prev.v);
    }
    prev = { at: s.at, v };
  }
  return prev ? prev.v : null;
}

// ---- clusters
function portFree(port) {
  return new Promise((res) => {
    const srv = createServer();
    srv.once("error", () => res(false));
    srv.listen(port, () => srv.close(() => res(true)));
  });
}
let nextPort = opts.port;
async function takePort() {
  for (let i = 0; i < 200; i++) {
    const p = nextPort++;
    if (nextPort > opts.port + 200) nextPort = opts.port;
    if (await portFree(p)) return p;
  }
  fail("no free port", 1);
}
let current = null;
function startCluster(key, port, logFile) {
  const cl = CLUSTERS[key];
  const cmd = cl.cmd.replaceAll("{N}", String(cl.workers)).replaceAll("{P}", String(port));
  const fd = openSync(logFile, "w");
  const child = spawn("sh", ["-c", `exec ${cmd}`], { cwd: ROOT, detached: true, stdio: ["ignore", fd, fd] });
  closeSync(fd);
  const c = { key, cmd, child, pid: child.pid, exited: null, logFile };
  child.on("exit", (code, signal) => (c.exited = { code, signal }));
  current = c;
  return c;
}
const groupAlive = (pgid) => {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
};
async function stopCluster(c) {
  const t0 = Date.now();
  try {
    process.kill(-c.pid, "SIGTERM");
  } catch {}
  while (groupAlive(c.pid) && Date.now() - t0 < 5000) await sleep(50);
  const clean = !groupAlive(c.pid);
  if (!clean) {
    try {
      process.kill(-c.pid, "SIGKILL");
    } catch {}
    while (groupAlive(c.pid) && Date.now() - t0 < 8000) await sleep(50);
  }
  if (current === c) current = null;
  return { clean, stop_ms: Date.now() - t0 };
}
process.on("SIGINT", async () => {
  if (current) await stopCluster(current);
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
async function waitReady(c, url, workers) {
  const t0 = Date.now();
  while (Date.now() - t0 < 30_000) {
    if (c.exited) throw new Error(`cluster exited (${c.exited.signal || c.exited.code}); log ${c.logFile}`);
    const r = await probe(url, 1000);
    if (r && r.n === workers && Number.isInteger(r.who?.worker)) return Date.now() - t0;
    await sleep(100);
  }
  throw new Error(`cluster not ready within 30 s; log ${c.logFile}`);
}

function runLoad(url, sc, clusterPid, jsonFile) {
  const args = [
    "run", "--url", url, "--clients", String(opts.clients), "--rooms", String(sc.rooms), "--senders", String(sc.senders),
    "--mode", sc.mode, "--window", String(opts.window), "--rate", String(sc.rate ?? 1000),
    "--warmup", String(opts.warmup), "--duration", String(opts.duration), "--threads", String(opts.threads),
    "--cluster-pid", String(clusterPid), "--json-out", jsonFile, "--quiet",
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
const runs = [];
const t0 = Date.now();
const total = opts.rounds * scenarios.length * clusterKeys.length;
let idx = 0;
let stopped = false;
outer: for (let round = 1; round <= opts.rounds; round++) {
  // rotate the cluster order each round: a,b,c / b,c,a / c,a,b
  const order = clusterKeys.map((_, i) => clusterKeys[(i + round - 1) % clusterKeys.length]);
  for (const sc of scenarios) {
    for (const key of order) {
      if (Date.now() - t0 > opts.maxMinutes * 60_000) {
        console.log(`node-compare: --max-minutes reached, ${total - idx} runs not started`);
        stopped = true;
        break outer;
      }
      idx++;
      const cl = CLUSTERS[key];
      const port = await takePort();
      const url = `http://127.0.0.1:${port}`;
      const tag = `r${round}-${sc.name}-${key}`;
      const logFile = join(logDir, `${tag}.log`);
      const jsonFile = join(logDir, `${tag}.json`);
      const run = { round, scenario: sc.name, cluster: key, name: cl.name, ok: false, loadavg_before: loadavg().map((x) => r2(x)) };
      process.stdout.write(`[${idx}/${total}] round ${round} ${sc.name} ${key}=${cl.name} ... `);
      const c = startCluster(key, port, logFile);
      run.command = c.cmd;
      let sampler = null;
      const samples = [];
      try {
        run.ready_ms = await waitReady(c, url, cl.workers);
        const s0 = treeSample(c.pid);
        if (!s0) throw new Error("cluster process gone");
        samples.push(s0);
        sampler = setInterval(() => samples.push(knownSample(s0)), 100);
        const r = await runLoad(url, sc, c.pid, jsonFile);
        clearInterval(sampler);
        sampler = null;
        if (r.code !== 0) throw new Error(`loadgen failed (exit ${r.code}): ${r.err || r.out}`);
        const x = JSON.parse(readFileSync(jsonFile, "utf8"));
        run.result = x;
        // measurement window in CLOCK_MONOTONIC µs (loadgen: connect, +200 ms, warm-up, duration)
        const ws = r.t0 + Math.round((x.connect_seconds + 0.2 + x.warmup_s) * 1e6);
        const we = ws + Math.round(x.duration_s * 1e6);
        const pids = new Set();
        for (const s of samples) for (const p of Object.keys(s.procs)) pids.add(Number(p));
        const perProc = [];
        for (const pid of pids) {
          const a = cpuAt(samples, pid, ws);
          const b = cpuAt(samples, pid, we);
          const info = samples.find((s) => s.procs[pid])?.procs[pid];
          if (a == null || b == null) continue;
          perProc.push({ pid, comm: info.comm, depth: info.depth, cpu_us: Math.round(b - a) });
        }
        const deliv = x.deliveries_in_window || 1;
        const isPrimary = (p) => cl.workers > 1 && p.depth === 0;
        const prim = perProc.filter(isPrimary).reduce((s, p) => s + p.cpu_us, 0);
        const work = perProc.filter((p) => !isPrimary(p)).reduce((s, p) => s + p.cpu_us, 0);
        const workersUs = perProc
          .filter((p) => !isPrimary(p) && p.cpu_us > 0)
          .sort((p, q) => q.cpu_us - p.cpu_us)
          .map((p) => r2(p.cpu_us / deliv));
        run.cpu = {
          window_us: we - ws,
          samples: samples.length,
          per_process: perProc,
          primary_us_per_delivery: r2(prim / deliv),
          workers_us_per_delivery: r2(work / deliv),
          per_worker_us_per_delivery: workersUs,
          total_us_per_delivery: r2((prim + work) / deliv),
          total_percent: r2(((prim + work) / (we - ws)) * 100, 1),
          loadgen_cluster_percent: x.cluster.cpu_percent,
        };
        run.ok = true;
        console.log(
          `${x.deliveries_per_s} deliv/s, p50 ${x.latency_ms.p50} p99 ${x.latency_ms.p99} ms, lost ${x.lost}, ` +
            `us/deliv ${run.cpu.total_us_per_delivery} (primary ${run.cpu.primary_us_per_delivery} workers ${workersUs.join("+")}), ` +
            `cluster ${run.cpu.total_percent}% (loadgen ${x.cluster.cpu_percent}%) harness ${x.harness.cpu_percent_total}% other ${x.machine.other_percent}% ` +
            `split ${JSON.stringify(x.per_worker)} rooms ${x.room_size.min}-${x.room_size.max}`
        );
      } catch (e) {
        run.error = e.message;
        console.log(`FAILED: ${e.message}`);
      }
      if (sampler) clearInterval(sampler);
      run.stop = await stopCluster(c);
      run.loadavg_after = loadavg().map((x) => r2(x));
      runs.push(run);
    }
  }
}

// ---- summary
const summary = [];
for (const sc of scenarios) {
  const row = { scenario: sc.name, mode: sc.mode, room_size: sc.roomSize, rooms: sc.rooms, senders: sc.senders };
  for (const key of clusterKeys) {
    const rs = runs.filter((r) => r.ok && r.scenario === sc.name && r.cluster === key);
    const m = (f) => median(rs.map(f));
    row[key] = {
      name: CLUSTERS[key].name,
      runs_ok: rs.length,
      deliveries_per_s: m((r) => r.result.deliveries_per_s),
      p50_ms: m((r) => r.result.latency_ms.p50),
      p99_ms: m((r) => r.result.latency_ms.p99),
      lost: m((r) => r.result.lost),
      us_per_delivery: m((r) => r.cpu.total_us_per_delivery),
      primary_us_per_delivery: m((r) => r.cpu.primary_us_per_delivery),
      workers_us_per_delivery: m((r) => r.cpu.workers_us_per_delivery),
      cluster_cpu_percent: m((r) => r.cpu.total_percent),
      harness_cpu_percent: m((r) => r.result.harness.cpu_percent_total),
      other_cpu_percent: m((r) => r.result.machine.other_percent),
      loadavg_1m: m((r) => r.loadavg_after[0]),
    };
  }
  // per-round ratios (a against c and b in the same round), then their medians
  const per = (f) => {
    const xs = [];
    for (let round = 1; round <= opts.rounds; round++) {
      const g = (k) => runs.find((r) => r.ok && r.round === round && r.scenario === sc.name && r.cluster === k);
      const v = f(g);
      if (v != null && Number.isFinite(v)) xs.push(v);
    }
    return { median: r2(median(xs)), rounds: xs.map((v) => r2(v)) };
  };
  const has = (k) => clusterKeys.includes(k);
  row.ratios = {};
  if (has("a") && has("c"))
    row.ratios.cpu_a_over_c = per((g) => g("a") && g("c") && g("a").cpu.total_us_per_delivery / g("c").cpu.total_us_per_delivery);
  if (has("a") && has("b")) {
    row.ratios.cpu_a_over_b = per((g) => g("a") && g("b") && g("a").cpu.total_us_per_delivery / g("b").cpu.total_us_per_delivery);
    row.ratios.p99_a_over_b = per((g) => g("a") && g("b") && g("a").result.latency_ms.p99 / g("b").result.latency_ms.p99);
    row.ratios.deliv_a_over_b = per((g) => g("a") && g("b") && g("a").result.deliveries_per_s / g("b").result.deliveries_per_s);
  }
  if (has("b") && has("c"))
    row.ratios.cpu_b_over_c = per((g) => g("b") && g("c") && g("b").cpu.total_us_per_delivery / g("c").cpu.total_us_per_delivery);
  summary.push(row);
}

const fmt = (v, d = 1) => (v == null ? "-" : Number(v).toFixed(d));
console.log(`\nmedians over ${opts.rounds} round(s), C=${opts.clients}, max W=${opts.window}, rate ${scenarios.map((s) => s.rate).filter(Boolean).join("/")} msg/s, ${opts.duration}s measured`);
for (const row of summary) {
  console.log(`${row.scenario} (R=${row.rooms} S=${row.senders}):`);
  for (const k of clusterKeys) {
    const x = row[k];
    console.log(
      `  ${k} ${x.name.padEnd(17)} ${fmt(x.deliveries_per_s, 0).padStart(8)} deliv/s  p50 ${fmt(x.p50_ms, 2)} p99 ${fmt(x.p99_ms, 2)} ms  ` +
        `us/deliv ${fmt(x.us_per_delivery, 2)} (primary ${fmt(x.primary_us_per_delivery, 2)} + workers ${fmt(x.workers_us_per_delivery, 2)})  cluster ${fmt(x.cluster_cpu_percent, 0)}%  other ${fmt(x.other_cpu_percent, 0)}%  lost ${x.lost}`
    );
  }
  console.log(`  ratios (median of per-round): ${JSON.stringify(row.ratios)}`);
}

let git = null;
try {
  git = execFileSync("git", ["rev-parse", "HEAD"], { cwd: ROOT, encoding: "utf8" }).trim();
} catch {}
const report = {
  tool: "bench/node-compare.mjs",
  started_at: new Date(t0).toISOString(),
  elapsed_s: Math.round((Date.now() - t0) / 1000),
  git,
  argv: process.argv.slice(2),
  machine: { hostname: hostname(), cpus: cpus().length, cpu_model: cpus()[0]?.model, mem_gb: Math.round(totalmem() / 1e8) / 10, node: process.version, loadavg_at_end: loadavg() },
  options: opts,
  clusters: Object.fromEntries(clusterKeys.map((k) => [k, CLUSTERS[k]])),
  scenarios,
  stopped_early: stopped,
  summary,
  runs,
};
writeFileSync(outFile, JSON.stringify(report, null, 2) + "\n");
console.log(`results: ${outFile} (${report.elapsed_s} s)`);
process.exit(runs.some((r) => r.ok) ? 0 : 1);
