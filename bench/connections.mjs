#!/usr/bin/env node
// Connection scale on one machine (issue 15, item 4): a demo cluster
// (`sio-cluster-host demo --workers W`, WebSockets handed to the workers)
// and the Rust load client holding C idle WebSocket clients from several
// loopback source addresses, then ONE `all` broadcast (the demo's `io.emit`)
// that must reach every client: connect failures, the time to the last
// delivery and the cluster's RSS per client are reported.
//
//   node bench/connections.mjs --clients 100000
//
// Options: --clients 100000, --workers 2, --source-addrs 8 (127.0.0.1..8:
// ~28 000 ephemeral ports per address pair here), --connect-concurrency 200,
// --bin target/release/sio-cluster-host, --loadgen
// target/release/sio-cluster-loadgen, --json FILE.
// Both processes are started under `ulimit -Hn/-n` of clients + 10 000
// (raising the hard limit needs root; otherwise the hard limit stays, and
// the primary and the load client raise their soft limit to it).
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import net from "node:net";

const args = process.argv.slice(2);
const opt = {
  clients: 100_000,
  workers: 2,
  sourceAddrs: 8,
  connectConcurrency: 200,
  bin: "target/release/sio-cluster-host",
  loadgen: "target/release/sio-cluster-loadgen",
  json: null,
};
for (let i = 0; i < args.length; i++) {
  const k = args[i].replace(/^--/, "").replace(/-([a-z])/g, (_, c) => c.toUpperCase());
  if (!(k in opt)) {
    console.error(`unknown option ${args[i]}\n(see the header of bench/connections.mjs)`);
    process.exit(2);
  }
  const v = args[++i];
  opt[k] = typeof opt[k] === "number" ? Number(v) : v;
}
const T0 = Date.now();
const log = (...a) => console.log(`[${((Date.now() - T0) / 1000).toFixed(1)}s]`, ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const limit = opt.clients + 10_000;
const underLimit = (cmd) => ["-c", `ulimit -Hn ${limit} 2>/dev/null; ulimit -n ${limit} 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec ${cmd}`];

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function proc(pid) {
  try {
    const st = readFileSync(`/proc/${pid}/status`, "utf8");
    return {
      rss: Number(st.match(/VmRSS:\s+(\d+)/)?.[1] ?? 0) / 1024,
      fds: readdirSync(`/proc/${pid}/fd`).length,
    };
  } catch {
    return null;
  }
}

function tree(root) {
  const kids = new Map();
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const s = readFileSync(`/proc/${d}/stat`, "utf8");
      const ppid = Number(s.slice(s.lastIndexOf(")") + 2).split(" ")[1]);
      if (!kids.has(ppid)) kids.set(ppid, []);
      kids.get(ppid).push(Number(d));
    } catch {}
  }
  const out = [];
  const walk = (p) => {
    out.push(p);
    for (const k of kids.get(p) ?? []) walk(k);
  };
  walk(root);
  return out;
}

/** RSS (MiB) and fds of the cluster: the primary and every process under it. */
function clusterSample(shellPid) {
  const procs = tree(shellPid).map((pid) => ({ pid, ...proc(pid) })).filter((p) => p.rss !== undefined);
  return { rss: procs.reduce((a, p) => a + p.rss, 0), procs };
}

const port = await freePort();
const cluster = spawn("bash", underLimit(`${opt.bin} demo --workers ${opt.workers} --port ${port} --bind 127.0.0.1 --balance round-robin`), {
  stdio: ["ignore", "ignore", "pipe"],
  env: { ...process.env, RUST_LOG: "info" },
});
const clusterLog = [];
let serving = 0;
await new Promise((resolve, reject) => {
  const t = setTimeout(() => reject(new Error(`cluster not ready in 120 s:\n${clusterLog.join("")}`)), 120_000);
  cluster.stderr.on("data", (c) => {
    const text = c.toString();
    clusterLog.push(text);
    if (clusterLog.length > 500) clusterLog.splice(0, 250);
    serving += (text.match(/demo worker serving/g) ?? []).length;
    if (serving >= opt.workers) {
      clearTimeout(t);
      resolve();
    }
  });
  cluster.on("exit", (code) => reject(new Error(`cluster exited with ${code}:\n${clusterLog.join("")}`)));
});
await sleep(1000);
const base = clusterSample(cluster.pid);
log(`cluster of ${opt.workers} workers on 127.0.0.1:${port}: ${base.rss.toFixed(1)} MiB before any client`);

const reportFile = join(mkdtempSync(join(tmpdir(), "sio-connections-")), "report.json");
const lgArgs = [
  "run", "--url", `http://127.0.0.1:${port}`, "--clients", String(opt.clients), "--rooms", "1", "--senders", "1",
  "--all", "--mode", "rate", "--rate", "0.2", "--warmup", "0", "--duration", "5", "--drain", "60",
  "--source-addrs", String(opt.sourceAddrs), "--connect-concurrency", String(opt.connectConcurrency),
  "--handshake-timeout", "30000", "--connect-retries", "3", "--connect-timeout", "900",
  "--expect-workers", String(opt.workers), "--quiet", "--json-out", reportFile,
];
const lg = spawn("bash", underLimit(`${opt.loadgen} ${lgArgs.map((a) => `'${a}'`).join(" ")}`), { stdio: ["ignore", "pipe", "pipe"] });
let out = "";
let err = "";
lg.stdout.on("data", (c) => (out += c));
lg.stderr.on("data", (c) => (err += c));
let peak = base;
let peakLoad = null;
const samples = [];
const sampler = setInterval(() => {
  const s = clusterSample(cluster.pid);
  const l = tree(lg.pid).map(proc).filter(Boolean).reduce((a, p) => a + p.rss, 0);
  samples.push({ t: Math.round((Date.now() - T0) / 1000), rss: Math.round(s.rss), loadgen_rss: Math.round(l), fds: s.procs.map((p) => p.fds) });
  if (s.rss > peak.rss) peak = s;
  if (peakLoad === null || l > peakLoad) peakLoad = l;
  if (samples.length % 10 === 0) log(`cluster ${s.rss.toFixed(0)} MiB, fds ${s.procs.map((p) => p.fds).join("/")}; load client ${l.toFixed(0)} MiB`);
}, 1000);
const code = await new Promise((resolve) => lg.on("exit", resolve));
clearInterval(sampler);
let report = null;
try {
  report = JSON.parse(readFileSync(reportFile, "utf8"));
} catch {
  console.error(`load client exited with ${code}; no report:\n${err}\n${out}`);
}
cluster.kill("SIGTERM");
await new Promise((r) => cluster.on("exit", r));

const summary = report && {
  clients: opt.clients,
  workers: opt.workers,
  source_addrs: opt.sourceAddrs,
  clients_connected: report.clients_connected,
  connect_failures: report.connect_failures,
  handshake_retries: report.handshake_retries,
  connect_seconds: report.connect_seconds,
  per_worker: report.per_worker,
  broadcasts_measured: report.messages_measured,
  expected: report.expected,
  received: report.received,
  lost: report.lost,
  time_to_last_delivery_ms: report.latency_ms?.max,
  latency_ms: report.latency_ms,
  cluster_rss_mib: { before: Math.round(base.rss), peak: Math.round(peak.rss) },
  cluster_rss_per_client_kib: Math.round(((peak.rss - base.rss) * 1024 * 10) / opt.clients) / 10,
  cluster_peak_processes: peak.procs.map((p) => ({ pid: p.pid, rss_mib: Math.round(p.rss), fds: p.fds })),
  loadgen_peak_rss_mib: Math.round(peakLoad ?? 0),
  disconnects: report.disconnects,
  connect_errors: report.connect_errors,
};
if (summary) console.log(JSON.stringify(summary, null, 1));
if (opt.json) writeFileSync(opt.json, JSON.stringify({ summary, samples, report }, null, 1));
const ok = summary && code === 0 && summary.connect_failures === 0 && summary.lost === 0 && summary.clients_connected === opt.clients;
console.log(ok ? "connections: ok" : "connections: FAILED");
process.exit(ok ? 0 : 1);
