#!/usr/bin/env node
// Memory per idle client (issue 15, item 3): starts a cluster command,
// connects N idle WebSocket clients (official socket.io-client, one process),
// waits for the RSS to settle, and prints the RSS of the whole cluster (the
// command's process tree: primary and workers) before and after, divided by
// the clients. Several commands run one after the other, in turn, for
// `--rounds` rounds, so that their figures are side by side in one run.
//
//   node bench/idle-memory.mjs --clients 1000 --rounds 2 \
//     --add rust="target/release/sio-cluster-host demo --workers 2 --port {P}" \
//     --add node-ref="node bench/node-ref/primary.js --workers 2 --port {P}"
//
// {P} is replaced by a free port. Output: one line per run and a summary
// (median per command), also as JSON with --json FILE.
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { io } from "socket.io-client";
import { freePort, procInfo, processTree } from "./lib/proc.mjs";

const args = process.argv.slice(2);
const opt = { clients: 1000, rounds: 1, settleMs: 4000, json: null, cmds: [] };
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === "--clients") opt.clients = Number(args[++i]);
  else if (a === "--rounds") opt.rounds = Number(args[++i]);
  else if (a === "--settle-ms") opt.settleMs = Number(args[++i]);
  else if (a === "--json") opt.json = args[++i];
  else if (a === "--add") {
    const [name, ...rest] = args[++i].split("=");
    opt.cmds.push({ name, cmd: rest.join("=") });
  } else {
    console.error(`unknown argument ${a}`);
    process.exit(2);
  }
}
if (opt.cmds.length === 0) {
  console.error("give at least one --add NAME=COMMAND");
  process.exit(2);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const clusterRss = (pid) => processTree(pid).reduce((a, p) => a + (procInfo(p)?.rss ?? 0) * 1024, 0); // KiB

async function waitReady(url) {
  for (let t = 0; t < 600; t++) {
    const ok = await new Promise((resolve) => {
      const s = io(url, { transports: ["websocket"], reconnection: false, timeout: 2000, forceNew: true });
      s.once("connect", () => {
        s.disconnect();
        resolve(true);
      });
      s.once("connect_error", () => {
        s.close();
        resolve(false);
      });
    });
    if (ok) return;
    await sleep(200);
  }
  throw new Error(`${url} not ready`);
}

async function measure({ name, cmd }) {
  const port = await freePort();
  const child = spawn("/bin/sh", ["-c", `exec ${cmd.replaceAll("{P}", String(port))}`], {
    stdio: ["ignore", "ignore", "inherit"],
    detached: true,
  });
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitReady(url);
    await sleep(opt.settleMs);
    const before = clusterRss(child.pid);
    const sockets = [];
    for (let i = 0; i < opt.clients; i += 50) {
      const batch = [];
      for (let k = i; k < Math.min(opt.clients, i + 50); k++) {
        const s = io(url, { transports: ["websocket"], reconnection: false, timeout: 20_000, forceNew: true });
        sockets.push(s);
        batch.push(new Promise((resolve, reject) => {
          // The client's own timeout covers the Engine.IO open only; a
          // Socket.IO CONNECT that is never answered would wait forever.
          const t = setTimeout(() => reject(new Error(`client ${k} of ${opt.clients}: not connected after 30 s`)), 30_000);
          s.once("connect", () => {
            clearTimeout(t);
            resolve();
          });
          s.once("connect_error", (e) => {
            clearTimeout(t);
            reject(new Error(`client ${k} of ${opt.clients}: ${e.message}`));
          });
        }));
      }
      await Promise.all(batch);
    }
    await sleep(opt.settleMs);
    const after = clusterRss(child.pid);
    const procs = processTree(child.pid).length;
    for (const s of sockets) s.disconnect();
    const r = {
      name,
      clients: opt.clients,
      procs,
      before_mb: before / 1024,
      after_mb: after / 1024,
      per_client_kb: (after - before) / opt.clients,
    };
    console.log(
      `${name}: ${opt.clients} idle websocket clients, ${procs} processes: RSS ${r.before_mb.toFixed(1)} -> ${r.after_mb.toFixed(1)} MiB, ` +
        `${r.per_client_kb.toFixed(1)} KiB per client`,
    );
    return r;
  } finally {
    try {
      process.kill(-child.pid, "SIGTERM");
    } catch {}
    await sleep(1500);
    try {
      process.kill(-child.pid, "SIGKILL");
    } catch {}
  }
}

const results = [];
for (let r = 0; r < opt.rounds; r++) for (const c of opt.cmds) results.push(await measure(c));
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
console.log("summary (median of rounds):");
for (const c of opt.cmds) {
  const mine = results.filter((r) => r.name === c.name);
  console.log(`  ${c.name}: ${median(mine.map((r) => r.per_client_kb)).toFixed(1)} KiB per client, cluster ${median(mine.map((r) => r.after_mb)).toFixed(1)} MiB with ${opt.clients} clients`);
}
if (opt.json) writeFileSync(opt.json, JSON.stringify(results, null, 2));
process.exit(0);
