#!/usr/bin/env node
// Markdown tables of a bench/node-compare.mjs result (the rows of
// BENCHMARKS.md "Node workers (issue 11)"): medians per cluster and
// scenario, and the goal ratios as medians of per-round ratios.
//
//   node bench/node-compare-table.mjs bench/results/node-compare-<time>.json
import { readFileSync } from "node:fs";

const file = process.argv[2];
if (!file || file === "-h" || file === "--help") {
  console.log("usage: node bench/node-compare-table.mjs RESULTS.json");
  process.exit(file ? 0 : 2);
}
const r = JSON.parse(readFileSync(file, "utf8"));
const f = (v, d = 1) => (v == null ? "–" : Number(v).toLocaleString("en-US", { minimumFractionDigits: d, maximumFractionDigits: d }).replace(/,/g, " "));
const keys = Object.keys(r.clusters);
const label = { "r20-max": "rooms of 20, max W=" + r.options.window, "r2-max": "rooms of 2, max W=" + r.options.window };
for (const s of r.scenarios) if (s.mode === "rate") label[s.name] = `rooms of ${s.roomSize}, rate ${s.rate} msg/s`;

const la = r.runs.map((x) => x.loadavg_after?.[0]).filter((x) => x != null).sort((p, q) => p - q);
const other = r.runs.filter((x) => x.ok).map((x) => x.result.machine.other_percent).sort((p, q) => p - q);
console.log(
  `${r.runs.filter((x) => x.ok).length}/${r.runs.length} runs ok, ${r.options.rounds} rounds, C=${r.options.clients}, ${r.options.duration} s measured; ` +
    `load average (1 min) ${la[0]}–${la[la.length - 1]}; other CPU ${Math.round(other[0])}–${Math.round(other[other.length - 1])} %; git ${r.git?.slice(0, 7)}\n`,
);
console.log("| load | cluster | deliveries/s | p50 ms | p99 ms | µs CPU / delivery | primary | workers | cluster CPU | other CPU | lost |");
console.log("|---|---|---|---|---|---|---|---|---|---|---|");
for (const row of r.summary) {
  for (const k of keys) {
    const x = row[k];
    if (!x) continue;
    console.log(
      `| ${label[row.scenario]} | ${k} ${x.name} | ${f(x.deliveries_per_s, 0)} | ${f(x.p50_ms)} | ${f(x.p99_ms)} | **${f(x.us_per_delivery, 2)}** | ${f(x.primary_us_per_delivery, 2)} | ${f(x.workers_us_per_delivery, 2)} | ${f(x.cluster_cpu_percent, 0)} % | ${f(x.other_cpu_percent, 0)} % | ${f(x.lost, 0)} |`,
    );
  }
}
console.log("\n| load | CPU/delivery a/c (goal ≤ 1.15) | p99 a/b (goal ≤ 0.5) | deliveries/s a/b (goal ≥ 2, rooms of 2, max) | CPU/delivery a/b | b/c |");
console.log("|---|---|---|---|---|---|");
const q = (o) => (o ? `${f(o.median, 2)} (${o.rounds.map((v) => f(v, 2)).join(", ")})` : "–");
for (const row of r.summary) {
  const t = row.ratios;
  console.log(`| ${label[row.scenario]} | ${q(t.cpu_a_over_c)} | ${q(t.p99_a_over_b)} | ${q(t.deliv_a_over_b)} | ${q(t.cpu_a_over_b)} | ${q(t.cpu_b_over_c)} |`);
}
