#!/usr/bin/env node
// Connection scale on one machine (issue 15, item 4): a demo cluster
// (`sio-cluster-host demo --workers W`, WebSockets handed to the workers)
// and the Rust load client holding C idle WebSocket clients from several
// loopback source addresses, then ONE `all` broadcast (the demo's `io.emit`)
// that must reach every client: connect failures, the time to the last
// delivery and the cluster's RSS per client are reported.
//
//   node bench/connections.mjs --clients 100000 --workers 6
//
// Options: --clients 100000, --workers 2, --per-process 16000 (clients per
// load client process), --source-addrs 8 (127.0.0.1..8: ~28 000 ephemeral
// ports per address pair here), --connect-concurrency 100 (per process),
// --bin target/release/sio-cluster-host, --loadgen
// target/release/sio-cluster-loadgen, --json FILE, --cluster CMD (another
// cluster: {P} port, {W} workers; ready once its output matches --ready RE,
// e.g. --cluster "node bench/node-ref/primary.js --workers {W} --port {P}
// --host 127.0.0.1" --ready "node-ref ready"), --window-in S (seconds
// from the start to the measurement window; default 20 + clients / 2000).
//
// Every process is started under `ulimit -n` of its share + 10 000 where the
// hard limit allows (raising the hard limit needs CAP_SYS_RESOURCE); the
// primary, the workers and the load client raise their soft limit to the
// hard one. One process of the load client holds at most --per-process
// clients, so the load is spread over several; process 0 has the one
// sender, the others receive only, and all share one measurement window
// (--start-at-us), so the broadcast is counted on every client.
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, procInfo, processTree } from "./lib/proc.mjs";

const args = process.argv.slice(2);
const opt = {
  clients: 100_000,
  workers: 2,
  perProcess: 16_000,
  sourceAddrs: 8,
  connectConcurrency: 100,
  bin: "target/release/sio-cluster-host",
  loadgen: "target/release/sio-cluster-loadgen",
  json: null,
  cluster: null,
  ready: null,
  windowIn: null,
};
for (let i = 0; i < args.length; i++) {
  const k = args[i].replace(/^--/, "").replace(/-([a-z])/g, (_, c) => c.toUpperCase());
  if (!(k in opt)) {
    console.error(`unknown option ${args[i]}\n(see the header of bench/connections.mjs)`);
    process.exit(2);
  }
  const v = args[++i];
  opt[k] = typeof opt[k] === "number" || k === "windowIn" ? Number(v) : v;
}
const T0 = Date.now();
const log = (...a) => console.log(`[${((Date.now() - T0) / 1000).toFixed(1)}s]`, ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const underLimit = (cmd, n) => ["-c", `ulimit -Hn ${n} 2>/dev/null; ulimit -n ${n} 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec ${cmd}`];

/** RSS (MiB) and fds of the cluster: the primary and every process under it. */
function clusterSample(shellPid) {
  const procs = processTree(shellPid).map((pid) => ({ pid, ...procInfo(pid) })).filter((p) => p.rss !== undefined);
  return { rss: procs.reduce((a, p) => a + p.rss, 0), procs };
}

const port = await freePort();
const clusterCmd = (opt.cluster ?? `${opt.bin} demo --workers {W} --port {P} --bind 127.0.0.1 --balance round-robin`)
  .replaceAll("{P}", String(port)).replaceAll("{W}", String(opt.workers));
const cluster = spawn("bash", underLimit(clusterCmd, Math.ceil(opt.clients / opt.workers) + 10_000), {
  stdio: ["ignore", "pipe", "pipe"],
  env: { ...process.env, RUST_LOG: "info" },
});
const clusterLog = [];
let serving = 0;
await new Promise((resolve, reject) => {
  const t = setTimeout(() => reject(new Error(`cluster not ready in 120 s:\n${clusterLog.join("")}`)), 120_000);
  const onData = (c) => {
    const text = c.toString();
    clusterLog.push(text);
    if (clusterLog.length > 500) clusterLog.splice(0, 250);
    if (opt.ready ? new RegExp(opt.ready).test(text) : (serving += (text.match(/demo worker serving/g) ?? []).length) >= opt.workers) {
      clearTimeout(t);
      resolve();
    }
  };
  cluster.stdout.on("data", onData);
  cluster.stderr.on("data", onData);
  cluster.on("exit", (code) => reject(new Error(`cluster exited with ${code}:\n${clusterLog.join("")}`)));
});
await sleep(1000);
const base = clusterSample(cluster.pid);
log(`cluster of ${opt.workers} workers on 127.0.0.1:${port}: ${base.rss.toFixed(1)} MiB before any client`);

const procs = Math.ceil(opt.clients / opt.perProcess);
const nowUs = () => Number(process.hrtime.bigint() / 1000n); // CLOCK_MONOTONIC, as the load client's
// Time for every process to connect its share (about 1 000 handshakes/s
// here in all), then the window.
const startAt = nowUs() + Math.round((opt.windowIn ?? 20 + opt.clients / 2000) * 1e6);
const dir = mkdtempSync(join(tmpdir(), "sio-connections-"));
const loaders = [];
for (let k = 0; k < procs; k++) {
  const n = Math.min(opt.perProcess, opt.clients - k * opt.perProcess);
  const file = join(dir, `report-${k}.json`);
  const lgArgs = [
    "run", "--url", `http://127.0.0.1:${port}`, "--clients", String(n), "--rooms", "1",
    "--senders", k === 0 ? "1" : "0", "--start-at-us", String(startAt),
    "--all", "--mode", "rate", "--rate", "0.2", "--warmup", "0", "--duration", "8", "--drain", "30",
    "--source-addrs", String(opt.sourceAddrs), "--connect-concurrency", String(opt.connectConcurrency),
    "--handshake-timeout", "30000", "--connect-retries", "3", "--connect-timeout", "900",
    "--quiet", "--json-out", file,
  ];
  const lg = spawn("bash", underLimit(`${opt.loadgen} ${lgArgs.map((a) => `'${a}'`).join(" ")}`, n + 10_000), { stdio: ["ignore", "pipe", "pipe"] });
  const l = { lg, file, out: "", err: "" };
  lg.stdout.on("data", (c) => (l.out += c));
  lg.stderr.on("data", (c) => (l.err += c));
  l.done = new Promise((resolve) => lg.on("exit", resolve));
  loaders.push(l);
}
log(`${procs} load client processes, the window opens in ${((startAt - nowUs()) / 1e6).toFixed(0)} s`);
let peak = base;
let peakLoad = null;
const samples = [];
const sampler = setInterval(() => {
  const s = clusterSample(cluster.pid);
  const l = loaders.flatMap((x) => processTree(x.lg.pid)).map(procInfo).filter(Boolean).reduce((a, p) => a + p.rss, 0);
  samples.push({ t: Math.round((Date.now() - T0) / 1000), rss: Math.round(s.rss), loadgen_rss: Math.round(l), fds: s.procs.map((p) => p.fds) });
  if (s.rss > peak.rss) peak = s;
  if (peakLoad === null || l > peakLoad) peakLoad = l;
  if (samples.length % 10 === 0) log(`cluster ${s.rss.toFixed(0)} MiB, fds ${s.procs.map((p) => p.fds).join("/")}; load clients ${l.toFixed(0)} MiB`);
}, 1000);
const codes = await Promise.all(loaders.map((l) => l.done));
clearInterval(sampler);
const reports = loaders.map((l, k) => {
  try {
    return JSON.parse(readFileSync(l.file, "utf8"));
  } catch {
    console.error(`load client ${k} exited with ${codes[k]}; no report:\n${l.err}\n${l.out}`);
    return null;
  }
});
const report = reports.every(Boolean) ? reports : null;
cluster.kill("SIGTERM");
await new Promise((r) => cluster.on("exit", r));
const sum = (f) => reports.reduce((a, r) => a + (r ? f(r) : 0), 0);
const connected = sum((r) => r.clients_connected);
const broadcasts = reports[0]?.messages_measured ?? 0;
const expected = broadcasts * connected;
const received = sum((r) => r.received);

const summary = report && {
  clients: opt.clients,
  workers: opt.workers,
  load_processes: procs,
  source_addrs: opt.sourceAddrs,
  clients_connected: connected,
  connect_failures: sum((r) => r.connect_failures),
  handshake_retries: sum((r) => r.handshake_retries),
  connect_seconds_max: Math.max(...reports.map((r) => r.connect_seconds)),
  per_worker: reports.reduce((a, r) => {
    for (const [w, n] of Object.entries(r.per_worker)) a[w] = (a[w] ?? 0) + n;
    return a;
  }, {}),
  broadcasts_measured: broadcasts,
  expected,
  received,
  lost: expected - received,
  time_to_last_delivery_ms: Math.max(...reports.map((r) => r.latency_ms?.max ?? 0)),
  latency_p50_ms_per_process: reports.map((r) => r.latency_ms?.p50),
  cluster_rss_mib: { before: Math.round(base.rss), peak: Math.round(peak.rss) },
  cluster_rss_per_client_kib: Math.round(((peak.rss - base.rss) * 1024 * 10) / opt.clients) / 10,
  cluster_peak_processes: peak.procs.map((p) => ({ pid: p.pid, rss_mib: Math.round(p.rss), fds: p.fds })),
  loadgen_peak_rss_mib: Math.round(peakLoad ?? 0),
  disconnects: sum((r) => r.disconnects),
  connect_errors: reports.flatMap((r) => r.connect_errors).slice(0, 10),
};
if (summary) console.log(JSON.stringify(summary, null, 1));
if (opt.json) writeFileSync(opt.json, JSON.stringify({ summary, samples, report }, null, 1));
const ok = summary && codes.every((c) => c === 0) && summary.connect_failures === 0 && summary.lost === 0
  && summary.clients_connected === opt.clients && broadcasts > 0;
console.log(ok ? "connections: ok" : "connections: FAILED");
process.exit(ok ? 0 : 1);
