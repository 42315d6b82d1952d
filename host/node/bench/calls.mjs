#!/usr/bin/env node
// Per-call cost of the adapter component under jco (this package's build),
// in the scenarios of `host/benches/adapter.rs` (wasmtime, criterion):
// packets of 100 bytes, host-owned rooms, one live peer node.
//
//   node bench/calls.mjs [--quick]
//
// Method: warm up, then 7 runs of N calls timed with process.hrtime; the
// median µs per call (per operation) is printed, as a Markdown table.
import { instantiateAdapter, manifest } from "../src/component.js";
import { decodePacked, packBatch } from "../src/packed.js";

const quick = process.argv.includes("--quick");
const RUNS = quick ? 3 : 7;

const cfg = (uid) => ({ uid, nsp: "/", rooms: "host", heartbeatIntervalMs: 5000, heartbeatTimeoutMs: 10000, requestTimeoutMs: 5000, maxFrameBytes: 16 << 20 });

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1];
}

/** Median µs per call of `f` (each call does `ops` operations). */
function measure(f, n, ops = 1) {
  const warm = Math.max(1, Math.floor(n / 4));
  for (let i = 0; i < warm; i++) f(i);
  const runs = [];
  for (let r = 0; r < RUNS; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) f(i);
    runs.push(Number(process.hrtime.bigint() - t0) / 1000 / n / ops);
  }
  return median(runs);
}

const api = instantiateAdapter();
const peerApi = instantiateAdapter();
const node = new api.Node(cfg(0x1111n));
const peer = new peerApi.Node(cfg(0x2222n));
// Each knows the other (live).
let now = 0n;
const tick = () => (now += 1n);
for (const e of peer.init(tick())) if (e.tag === "publish") node.onFramesPacked(tick(), packBatch([e.val]));
for (const e of node.init(tick())) if (e.tag === "publish") peer.onFramesPacked(tick(), packBatch([e.val]));

const packet = Buffer.alloc(100, 0x61);
const opts = { rooms: ["room-3"], except: [], flags: { broadcast: true }, sid: undefined, target: undefined };
const frame = peer.broadcast(tick(), opts, packet).find((e) => e.tag === "publish").val;
const batches = new Map([1, 16, 64, 256].map((k) => [k, packBatch(Array.from({ length: k }, () => frame))]));
const reply = Buffer.alloc(100, 0x62);

const rows = [];
const N = quick ? 20_000 : 100_000;
rows.push(["`serverCount()` (no arguments)", measure(() => node.serverCount(), N), "~0.17 (empty call)"]);
rows.push(["`reply(now, q, 100 B)` (unknown query)", measure(() => node.reply(now, 7n, reply), N), "~0.37"]);
rows.push(["`broadcast` from a local socket (publish + apply, typed)", measure(() => node.broadcast(now, opts, packet), N / 2), "0.926"]);
rows.push(["`onFrame`, one remote broadcast (typed)", measure(() => node.onFrame(now, frame), N / 2), "—"]);
for (const [k, b] of batches) {
  const n = Math.max(200, Math.floor(N / 2 / k));
  const call = measure(() => node.onFramesPacked(now, b), n, 1);
  const withDecode = measure(() => decodePacked(node.onFramesPacked(now, b)), n, 1);
  const wasmtime = { 1: "0.536", 16: "3.20", 64: "10.81", 256: "40.3" }[k];
  rows.push([`\`onFramesPacked\`, ${k} remote broadcast${k > 1 ? "s" : ""} in one call: call only / with JS decoding`, `${fmt(call)} / ${fmt(withDecode)}`, wasmtime]);
}
for (const k of [16, 256]) {
  const b = batches.get(k);
  const n = Math.max(200, Math.floor(N / 4 / k));
  rows.push([`\`onFrames\` (typed), ${k} frames in one call`, measure(() => node.onFrames(now, b), n), { 16: "7.43", 256: "104.3" }[k]]);
}
const t0 = performance.now();
for (let i = 0; i < 20; i++) instantiateAdapter();
rows.push(["instantiation (one namespace)", ((performance.now() - t0) / 20) * 1000, "21–36 (README: 110 with a join and init)"]);

function fmt(x) {
  return typeof x === "number" ? (x < 1 ? x.toFixed(3) : x < 100 ? x.toFixed(2) : x.toFixed(0)) : x;
}

const m = manifest();
console.log(`jco ${m.jco}, Node ${process.version}, component sha256 ${m.component.sha256.slice(0, 12)}…, ${RUNS} runs, medians`);
console.log("");
console.log("| call | jco (µs) | wasmtime (µs, BENCHMARKS.md) |");
console.log("|---|---|---|");
for (const [name, us, wt] of rows) console.log(`| ${name} | ${fmt(us)} | ${wt} |`);
