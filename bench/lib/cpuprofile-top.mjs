// Top functions (self and inclusive time) of a V8 .cpuprofile (node --cpu-prof):
//   node bench/lib/cpuprofile-top.mjs FILE.cpuprofile [N-self] [N-inclusive]
import { readFileSync } from "node:fs";
const p = JSON.parse(readFileSync(process.argv[2], "utf8"));
const byId = new Map(p.nodes.map((n) => [n.id, n]));
const self = new Map();
const dt = p.timeDeltas; let total = 0;
const cnt = new Map();
for (let i = 0; i < p.samples.length; i++) { cnt.set(p.samples[i], (cnt.get(p.samples[i]) || 0) + (dt[i] || 0)); total += dt[i] || 0; }
// self time per function
for (const [id, t] of cnt) { const n = byId.get(id); const cf = n.callFrame; const k = `${cf.functionName || "(anon)"} ${cf.url.split("/").slice(-2).join("/")}:${cf.lineNumber+1}`; self.set(k, (self.get(k) || 0) + t); }
// inclusive
const parent = new Map(); for (const n of p.nodes) for (const c of n.children || []) parent.set(c, n.id);
const incl = new Map();
for (const [id, t] of cnt) { const seen = new Set(); let cur = id; while (cur !== undefined) { const cf = byId.get(cur).callFrame; const k = `${cf.functionName || "(anon)"} ${cf.url.split("/").slice(-2).join("/")}:${cf.lineNumber+1}`; if (!seen.has(k)) { incl.set(k, (incl.get(k) || 0) + t); seen.add(k);} cur = parent.get(cur); } }
const top = (m, n) => [...m].sort((a, b) => b[1] - a[1]).slice(0, n).map(([k, t]) => `${(100 * t / total).toFixed(1).padStart(5)}%  ${k}`).join("\n");
console.log(`total ${(total/1e6).toFixed(2)} s sampled\n-- self --\n${top(self, +process.argv[3] || 30)}\n-- inclusive --\n${top(incl, +process.argv[4] || 40)}`);
