#!/usr/bin/env node
// Runs two Socket.IO clusters (A = ours, B = the Node reference) under the same
// load.mjs load, alternating A,B,A,B over K rounds and several client counts;
// every run starts its cluster fresh, waits for readiness (whoami +
// server_count), runs the load, and kills the cluster's whole process group.
// Prints medians and A/B ratios and writes the results to bench/results/.
import { spawn, execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync, openSync, closeSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { cpus, totalmem, loadavg, hostname } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { ensureDeps } = require("./lib/deps.cjs");

const BENCH = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(BENCH, "..");
const DEFAULT_A = "target/release/sio-cluster-host demo --workers {N} --port {P}";
const DEFAULT_B = "node bench/node-ref/primary.js --workers {N} --port {P}";
const LOADGEN = "target/release/sio-cluster-loadgen";

const USAGE = `usage: node bench/compare.mjs [options]

Compares cluster A (ours) with cluster B (the Node reference) under the same
load (bench/load.mjs): for each round and each client count it runs A then B,
each started fresh, waited for, loaded, and killed. Prints medians and A/B
ratios; writes bench/results/compare-<time>.json.

Clusters (commands run with sh -c from the repository root; {N} = workers,
{P} = port):
  --a CMD             default: ${DEFAULT_A}
  --b CMD             default: ${DEFAULT_B}
  --a-name NAME       default: ours
  --b-name NAME       default: node-ref
  --workers N         default 2

Load (passed to load.mjs):
  --clients LIST      client counts, comma-separated (default 100,200,500,1000)
  --rounds K          default 3
  --mode max|rate     default max
  --window W          max mode, in-flight messages per sender (default 4)
  --rate M            rate mode, messages/s in total (default 1000)
  --rooms R           default 10
  --senders S         default 10
  --warmup SEC        default 2
  --duration SEC      default 5
  --transport T       websocket (default) or polling
  --procs P           load.mjs client processes (default 1)
  --client sio|raw|rust  load client: socket.io-client (default), the minimal raw
                      one, or rust: ${LOADGEN} run (same workload and
                      report, ~2x less harness CPU per delivery than raw; build it
                      with cargo build --release -p sio-cluster-loadgen)
  --threads T         --client rust: tokio worker threads (default 1)
  --payload-bytes B   default 0

Run control:
  --quick             smoke run (< 1 min): --clients 100 --rounds 1 --warmup 0.5 --duration 2
  --port P            first port to use (default 3300; each run takes the next free one)
  --ready-timeout SEC wait this long for a cluster to answer whoami/server_count (default 30)
  --connect-timeout SEC  load.mjs connect-phase limit per run (default 30)
  --max-minutes M     start no new run after M minutes; report what was done (default 14)
  --out FILE          results JSON (default bench/results/compare-<time>.json)
  -h, --help          this text

Time bound: about runs x (start + connect + warmup + duration + drain + stop);
the default (4 counts x 3 rounds x 2 clusters, 2+5 s) took ~4 minutes on a
2-core machine; --max-minutes caps it.`;

function fail(msg, code = 1) {
  console.error(`compare: ${msg}`);
  process.exit(code);
}

// ---------------------------------------------------------------- options
let values;
try {
  ({ values } = parseArgs({
    options: {
      a: { type: "string", default: DEFAULT_A },
      b: { type: "string", default: DEFAULT_B },
      "a-name": { type: "string", default: "ours" },
      "b-name": { type: "string", default: "node-ref" },
      workers: { type: "string", default: "2" },
      clients: { type: "string", default: "100,200,500,1000" },
      rounds: { type: "string", default: "3" },
      mode: { type: "string", default: "max" },
      window: { type: "string", default: "4" },
      rate: { type: "string", default: "1000" },
      rooms: { type: "string", default: "10" },
      senders: { type: "string", default: "10" },
      warmup: { type: "string", default: "2" },
      duration: { type: "string", default: "5" },
      transport: { type: "string", default: "websocket" },
      procs: { type: "string", default: "1" },
      client: { type: "string", default: "sio" },
      threads: { type: "string", default: "1" },
      "payload-bytes": { type: "string", default: "0" },
      quick: { type: "boolean", default: false },
      port: { type: "string", default: "3300" },
      "ready-timeout": { type: "string", default: "30" },
      "connect-timeout": { type: "string", default: "30" },
      "max-minutes": { type: "string", default: "14" },
      out: { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  }));
} catch (e) {
  fail(`${e.message}\n\n${USAGE}`, 2);
}
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}
const explicit = new Set(process.argv.slice(2).filter((a) => a.startsWith("--")).map((a) => a.slice(2).split("=")[0]));
if (values.quick) {
  for (const [k, v] of Object.entries({ clients: "100", rounds: "1", warmup: "0.5", duration: "2" }))
    if (!explicit.has(k)) values[k] = v;
}
const num = (name, { int = true, min = 0 } = {}) => {
  const n = Number(values[name]);
  if (!Number.isFinite(n) || (int && !Number.isInteger(n)) || n < min)
    fail(`--${name}: expected ${int ? "an integer" : "a number"} >= ${min}, got "${values[name]}"`, 2);
  return n;
};
const opts = {
  a: values.a,
  b: values.b,
  aName: values["a-name"],
  bName: values["b-name"],
  workers: num("workers", { min: 1 }),
  clients: values.clients.split(",").map((s) => {
    const n = Number(s.trim());
    if (!Number.isInteger(n) || n < 1) fail(`--clients: not a list of positive integers: "${values.clients}"`, 2);
    return n;
  }),
  rounds: num("rounds", { min: 1 }),
  mode: values.mode,
  window: num("window", { min: 1 }),
  rate: num("rate", { int: false, min: 0.001 }),
  rooms: num("rooms", { min: 1 }),
  senders: num("senders", { min: 1 }),
  warmup: num("warmup", { int: false }),
  duration: num("duration", { int: false, min: 0.1 }),
  transport: values.transport,
  procs: num("procs", { min: 1 }),
  client: values.client,
  threads: num("threads", { min: 1 }),
  payloadBytes: num("payload-bytes"),
  port: num("port", { min: 1 }),
  readyTimeout: num("ready-timeout", { int: false, min: 1 }),
  connectTimeout: num("connect-timeout", { int: false, min: 1 }),
  maxMinutes: num("max-minutes", { int: false, min: 0.1 }),
  quick: values.quick,
};
if (!["max", "rate"].includes(opts.mode)) fail(`--mode: expected max or rate`, 2);
if (!["websocket", "polling"].includes(opts.transport)) fail(`--transport: expected websocket or polling`, 2);
if (!["sio", "raw", "rust"].includes(opts.client)) fail(`--client: expected sio, raw or rust`, 2);
if (opts.client !== "sio" && opts.transport !== "websocket") fail(`--client ${opts.client} needs --transport websocket`, 2);
if (opts.client === "rust" && !existsSync(resolve(ROOT, LOADGEN)))
  fail(`--client rust: ${LOADGEN} does not exist; build it with: cargo build --release -p sio-cluster-loadgen`, 2);
for (const [name, cmd] of [["a", opts.a], ["b", opts.b]]) {
  if (!cmd.includes("{P}")) fail(`--${name}: the command must contain {P} (the port): "${cmd}"`, 2);
  const exe = cmd.trim().split(/\s+/)[0];
  if (exe.includes("/") && !existsSync(resolve(ROOT, exe)))
    fail(
      `--${name}: ${exe} does not exist (relative to ${ROOT}).` +
        (cmd === DEFAULT_A
          ? ` Build it with: cargo build --release -p sio-cluster-host, or pass another command, e.g. --a "${DEFAULT_B}" to compare the Node reference with itself.`
          : ""),
      2
    );
}
const stamp = new Date().toISOString().replace(/\.\d+Z$/, "Z").replace(/:/g, "-");
const outFile = resolve(values.out || join(BENCH, "results", `compare-${stamp}.json`));
const logDir = join(dirname(outFile), `logs-${stamp}`);

ensureDeps();
const { io } = await import("socket.io-client");

// ---------------------------------------------------------------- helpers
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const median = (xs) => {
  const v = xs.filter((x) => x != null && Number.isFinite(x)).sort((p, q) => p - q);
  if (!v.length) return null;
  const m = Math.floor(v.length / 2);
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
};

function portFree(port) {
  return new Promise((res) => {
    const srv = createServer();
    srv.once("error", () => res(false));
    srv.listen(port, () => srv.close(() => res(true)));
  });
}
let nextPort = opts.port;
async function takePort() {
  for (let tries = 0; tries < 200; tries++) {
    const p = nextPort++;
    if (nextPort > opts.port + 200) nextPort = opts.port;
    if (await portFree(p)) return p;
  }
  fail(`no free port in ${opts.port}..${opts.port + 200}`);
}

let current = null; // the running cluster, killed on exit
function startCluster(template, port, logFile) {
  const cmd = template.replaceAll("{N}", String(opts.workers)).replaceAll("{P}", String(port));
  const fd = openSync(logFile, "w");
  const child = spawn("sh", ["-c", `exec ${cmd}`], { cwd: ROOT, detached: true, stdio: ["ignore", fd, fd] });
  closeSync(fd);
  const c = { cmd, child, pid: child.pid, exited: null, logFile };
  child.on("exit", (code, signal) => (c.exited = { code, signal }));
  current = c;
  return c;
}

function groupAlive(pgid) {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}
async function stopCluster(c) {
  if (!c) return { clean: true };
  const t0 = Date.now();
  try {
    process.kill(-c.pid, "SIGTERM");
  } catch {}
  while (groupAlive(c.pid) && Date.now() - t0 < 5000) await sleep(50);
  let clean = !groupAlive(c.pid);
  if (!clean) {
    try {
      process.kill(-c.pid, "SIGKILL");
    } catch {}
    while (groupAlive(c.pid) && Date.now() - t0 < 8000) await sleep(50);
  }
  if (current === c) current = null;
  return { clean, stop_ms: Date.now() - t0, exit: c.exited };
}

function tail(file, n = 15) {
  try {
    return readFileSync(file, "utf8").trim().split("\n").slice(-n).join("\n");
  } catch {
    return "";
  }
}

function probe(url, timeoutMs) {
  return new Promise((res) => {
    const s = io(url, { transports: ["websocket"], forceNew: true, reconnection: false, timeout: timeoutMs });
    const done = (v) => {
      clearTimeout(timer);
      s.disconnect();
      res(v);
    };
    const timer = setTimeout(() => done(null), timeoutMs);
    s.once("connect_error", () => done(null));
    s.once("connect", async () => {
      try {
        const who = await s.timeout(timeoutMs).emitWithAck("whoami");
        const n = await s.timeout(timeoutMs).emitWithAck("server_count");
        done({ who, n });
      } catch {
        done(null);
      }
    });
  });
}

async function waitReady(c, url) {
  const t0 = Date.now();
  let last = null;
  while (Date.now() - t0 < opts.readyTimeout * 1000) {
    if (c.exited) throw new Error(`cluster exited (${c.exited.signal || c.exited.code}) before it was ready; log ${c.logFile}:\n${tail(c.logFile)}`);
    const r = await probe(url, 1000);
    if (r) {
      last = r;
      if (r.n === opts.workers && r.who && Number.isInteger(r.who.worker)) return Date.now() - t0;
    }
    await sleep(100);
  }
  throw new Error(
    `cluster not ready within ${opts.readyTimeout} s` +
      (last ? ` (server_count ${last.n}, expected ${opts.workers})` : " (no whoami answer)") +
      `; log ${c.logFile}:\n${tail(c.logFile)}`
  );
}

function runLoad(url, clients, clusterPid, jsonFile) {
  const rust = opts.client === "rust";
  const args = [
    ...(rust ? ["run"] : [join(BENCH, "load.mjs")]),
    "--url", url,
    "--clients", String(clients),
    "--rooms", String(opts.rooms),
    "--senders", String(Math.min(opts.senders, clients)),
    "--mode", opts.mode,
    "--window", String(opts.window),
    "--rate", String(opts.rate),
    "--warmup", String(opts.warmup),
    "--duration", String(opts.duration),
    "--transport", opts.transport,
    ...(rust ? ["--threads", String(opts.threads)] : ["--procs", String(opts.procs), "--client", opts.client]),
    "--payload-bytes", String(opts.payloadBytes),
    "--cluster-pid", String(clusterPid),
    "--connect-timeout", String(opts.connectTimeout),
    "--json-out", jsonFile,
    "--quiet",
  ];
  return new Promise((res) => {
    const child = spawn(rust ? resolve(ROOT, LOADGEN) : process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (err += d));
    child.on("exit", (code) => res({ code, out: out.trim(), err: err.trim() }));
  });
}

// ---------------------------------------------------------------- main
mkdirSync(logDir, { recursive: true });
const clusters = [
  { key: "A", name: opts.aName, cmd: opts.a },
  { key: "B", name: opts.bName, cmd: opts.b },
];
const runs = [];
const t0 = Date.now();
process.on("SIGINT", async () => {
  console.error("\ncompare: interrupted, stopping the running cluster");
  await stopCluster(current);
  process.exit(130);
});

const total = opts.rounds * opts.clients.length * 2;
let idx = 0;
let stoppedEarly = false;
outer: for (let round = 1; round <= opts.rounds; round++) {
  for (const clients of opts.clients) {
    for (const cl of clusters) {
      if (Date.now() - t0 > opts.maxMinutes * 60_000) {
        console.log(`compare: --max-minutes ${opts.maxMinutes} reached; ${total - idx} runs not started`);
        stoppedEarly = true;
        break outer;
      }
      idx++;
      const port = await takePort();
      const url = `http://127.0.0.1:${port}`;
      const tag = `r${round}-c${clients}-${cl.key}`;
      const logFile = join(logDir, `${tag}.log`);
      const jsonFile = join(logDir, `${tag}.json`);
      const run = { round, clients, cluster: cl.key, name: cl.name, port, ok: false };
      process.stdout.write(`[${idx}/${total}] round ${round} clients ${clients} ${cl.key}=${cl.name} ... `);
      const c = startCluster(cl.cmd, port, logFile);
      run.command = c.cmd;
      try {
        run.ready_ms = await waitReady(c, url);
        const r = await runLoad(url, clients, c.pid, jsonFile);
        if (r.code !== 0) throw new Error(`${opts.client === "rust" ? "sio-cluster-loadgen" : "load.mjs"} failed (exit ${r.code}): ${r.err || r.out}`);
        run.result = JSON.parse(readFileSync(jsonFile, "utf8"));
        run.ok = true;
        const x = run.result;
        console.log(
          `${x.deliveries_per_s} deliv/s, p50 ${x.latency_ms.p50} p99 ${x.latency_ms.p99} ms, lost ${x.lost}, ` +
            `crossed ${(x.crossed_fraction * 100).toFixed(0)}%, split ${JSON.stringify(x.per_worker)}, ` +
            `cpu harness ${x.harness.cpu_percent_total}% cluster ${x.cluster.cpu_percent}% other ${x.machine.other_percent}%`
        );
        if (x.workers_seen !== opts.workers)
          console.log(`    warning: the clients reached ${x.workers_seen} of ${opts.workers} workers`);
        if (x.machine.other_percent > 25)
          console.log(`    warning: other processes used ${x.machine.other_percent}% of a core during this run; figures are disturbed`);
      } catch (e) {
        run.error = e.message;
        console.log(`FAILED: ${e.message}`);
      }
      run.stop = await stopCluster(c);
      if (!run.stop.clean) console.log(`    (cluster needed SIGKILL after SIGTERM)`);
      runs.push(run);
    }
  }
}

// ---------------------------------------------------------------- summary
const summary = [];
for (const clients of opts.clients) {
  const row = { clients };
  for (const cl of clusters) {
    const rs = runs.filter((r) => r.ok && r.clients === clients && r.cluster === cl.key).map((r) => r.result);
    const m = (f) => median(rs.map(f));
    row[cl.key] = {
      name: cl.name,
      runs_ok: rs.length,
      runs_failed: runs.filter((r) => !r.ok && r.clients === clients && r.cluster === cl.key).length,
      deliveries_per_s: m((x) => x.deliveries_per_s),
      crossed_deliveries_per_s: m((x) => x.crossed_deliveries_per_s),
      p50_ms: m((x) => x.latency_ms.p50),
      p99_ms: m((x) => x.latency_ms.p99),
      max_ms: m((x) => x.latency_ms.max),
      lost: m((x) => x.lost),
      lost_fraction: m((x) => x.lost_fraction),
      crossed_fraction: m((x) => x.crossed_fraction),
      harness_cpu_percent: m((x) => x.harness.cpu_percent_total),
      // harness CPU per delivery received, in µs (any client implementation)
      harness_us_per_delivery: m((x) =>
        x.deliveries_per_s ? Math.round((x.harness.cpu_percent_total * 1e4 * 1000) / x.deliveries_per_s) / 1000 : null
      ),
      cluster_cpu_percent: m((x) => x.cluster.cpu_percent),
      machine_busy_percent: m((x) => x.machine.busy_percent),
      other_cpu_percent: m((x) => x.machine.other_percent),
    };
  }
  const a = row.A, b = row.B;
  const ratio = (p, q) => (p != null && q ? Math.round((p / q) * 100) / 100 : null);
  row.ratio = {
    deliveries_per_s: ratio(a.deliveries_per_s, b.deliveries_per_s),
    crossed_deliveries_per_s: ratio(a.crossed_deliveries_per_s, b.crossed_deliveries_per_s),
    p50: ratio(a.p50_ms, b.p50_ms),
    p99: ratio(a.p99_ms, b.p99_ms),
  };
  summary.push(row);
}

const fmt = (v, d = 0) => (v == null ? "-" : typeof v === "number" ? v.toFixed(d) : String(v));
const lines = [];
lines.push(
  `\nmedians over ${opts.rounds} round(s), ${opts.workers} workers, mode ${opts.mode}` +
    (opts.mode === "max" ? ` W=${opts.window}` : ` ${opts.rate} msg/s`) +
    `, R=${opts.rooms} S=${opts.senders}, ${opts.transport}${opts.client !== "sio" ? ` (${opts.client} client)` : ""}, ${opts.duration}s measured; A=${opts.aName} B=${opts.bName}`
);
lines.push(
  ["clients", "A deliv/s", "B deliv/s", "A/B", "A p50", "B p50", "A p99", "B p99", "A/B p99", "A lost", "B lost", "A cpu", "B cpu", "harness", "us/deliv", "other"].map((h) => h.padStart(10)).join("")
);
for (const r of summary) {
  lines.push(
    [
      r.clients, fmt(r.A.deliveries_per_s), fmt(r.B.deliveries_per_s), fmt(r.ratio.deliveries_per_s, 2),
      fmt(r.A.p50_ms, 2), fmt(r.B.p50_ms, 2), fmt(r.A.p99_ms, 2), fmt(r.B.p99_ms, 2), fmt(r.ratio.p99, 2),
      fmt(r.A.lost), fmt(r.B.lost), fmt(r.A.cluster_cpu_percent), fmt(r.B.cluster_cpu_percent),
      `${fmt(r.A.harness_cpu_percent)}/${fmt(r.B.harness_cpu_percent)}`,
      `${fmt(r.A.harness_us_per_delivery, 1)}/${fmt(r.B.harness_us_per_delivery, 1)}`,
      `${fmt(r.A.other_cpu_percent)}/${fmt(r.B.other_cpu_percent)}`,
    ].map((v) => String(v).padStart(10)).join("")
  );
}
lines.push(
  `(latencies in ms; cpu = % of one core during the measurement, ${cpus().length} cores in all; harness = load client CPU with A/B, us/deliv = its CPU per delivery in µs; ` +
    `other = CPU used by other processes on the machine with A/B: when it is not near 0 the figures are disturbed)`
);
console.log(lines.join("\n"));

let gitRev = null;
try {
  gitRev = execFileSync("git", ["rev-parse", "HEAD"], { cwd: ROOT, encoding: "utf8" }).trim();
} catch {}
const report = {
  tool: "bench/compare.mjs",
  format: 1,
  started_at: new Date(t0).toISOString(),
  elapsed_s: Math.round((Date.now() - t0) / 100) / 10,
  git: gitRev,
  machine: {
    hostname: hostname(),
    cpus: cpus().length,
    cpu_model: cpus()[0] && cpus()[0].model,
    mem_gb: Math.round(totalmem() / 1e8) / 10,
    node: process.version,
    loadavg_at_end: loadavg(),
  },
  options: opts,
  clusters: { A: { name: opts.aName, cmd: opts.a }, B: { name: opts.bName, cmd: opts.b } },
  stopped_early: stoppedEarly,
  summary,
  runs,
  logs: logDir,
};
mkdirSync(dirname(outFile), { recursive: true });
writeFileSync(outFile, JSON.stringify(report, null, 2) + "\n");
console.log(`results: ${outFile} (${Math.round((Date.now() - t0) / 1000)} s; per-run logs in ${logDir})`);
const failed = runs.filter((r) => !r.ok).length;
if (failed) console.log(`${failed} of ${runs.length} runs failed; see "error" in the results`);
process.exit(failed === runs.length ? 1 : 0);
