#!/usr/bin/env node
// Chaos soak (issue 15, item 2): a demo cluster of 4 workers, ~1000 clients
// over websocket and polling in one room, broadcasts at a fixed rate from one
// sender per worker (checked per sender and sequence number), fetch / ask /
// server_emit in a loop, and every few seconds a fault chosen at random:
//   kill9   kill -9 of a worker (the primary restarts it)
//   stop    SIGSTOP of a worker for longer than the heartbeat timeout, then SIGCONT
//   stuck   a WebSocket client that joins the room and stops reading
//   burst   500 connects at once (then they leave)
// Reported: deliveries lost on clients of workers that were never faulted
// (goal 0), requests that did not settle within their timeout (goal 0), RSS
// and open fds of the primary and of each worker generation every 10 s,
// restarts. Exit code 1 when a goal is missed.
//
//   node bench/soak.mjs --bin target/release/sio-cluster-host --duration-s 1800
//
// Options: --bin PATH (default target/release/sio-cluster-host), --workers 4,
// --clients 1000 (a fifth over polling), --rate 20 (broadcasts/s in all),
// --fault-every-s 6, --duration-s 150, --seed N, --json FILE.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync, readdirSync, writeFileSync } from "node:fs";
import net from "node:net";
import { io } from "socket.io-client";

const args = process.argv.slice(2);
const opt = { bin: "target/release/sio-cluster-host", workers: 4, clients: 1000, rate: 20, faultEveryS: 6, durationS: 150, seed: Date.now() & 0xffff, json: null };
for (let i = 0; i < args.length; i++) {
  const k = args[i].replace(/^--/, "").replace(/-([a-z])/g, (_, c) => c.toUpperCase());
  if (!(k in opt)) {
    console.error(`unknown option ${args[i]}`);
    process.exit(2);
  }
  const v = args[++i];
  opt[k] = typeof opt[k] === "number" ? Number(v) : v;
}
const HB_INTERVAL = 1000;
const HB_TIMEOUT = 3000;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let rng = opt.seed >>> 0 || 1;
const rand = (n) => {
  rng ^= rng << 13;
  rng >>>= 0;
  rng ^= rng >>> 17;
  rng ^= rng << 5;
  rng >>>= 0;
  return rng % n;
};
const log = (...a) => console.log(`[${((Date.now() - T0) / 1000).toFixed(1)}s]`, ...a);
const T0 = Date.now();

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function procInfo(pid) {
  try {
    const st = readFileSync(`/proc/${pid}/status`, "utf8");
    const rss = Number(st.match(/VmRSS:\s+(\d+)/)?.[1] ?? 0) / 1024;
    const fds = readdirSync(`/proc/${pid}/fd`).length;
    return { rss, fds };
  } catch {
    return null;
  }
}

function childrenOf(pid) {
  const out = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const s = readFileSync(`/proc/${d}/stat`, "utf8");
      if (Number(s.slice(s.lastIndexOf(")") + 2).split(" ")[1]) === pid) out.push(Number(d));
    } catch {}
  }
  return out;
}

// ---- the cluster
const port = await freePort();
const url = `http://127.0.0.1:${port}`;
const primary = spawn(opt.bin, ["demo", "--workers", String(opt.workers), "--port", String(port), "--bind", "127.0.0.1",
  "--balance", "round-robin", "--heartbeat-interval", String(HB_INTERVAL), "--heartbeat-timeout", String(HB_TIMEOUT)], {
  stdio: ["ignore", "ignore", "pipe"],
  env: { ...process.env, RUST_LOG: "info", SIO_CLIENT_STALL_MS: "5000" },
});
const primaryLog = [];
primary.stderr.on("data", (c) => {
  primaryLog.push(c.toString());
  if (primaryLog.length > 2000) primaryLog.splice(0, 1000);
});
let serving = 0;
await new Promise((resolve, reject) => {
  const t = setTimeout(() => reject(new Error("cluster not ready in 120 s")), 120_000);
  primary.stderr.on("data", (c) => {
    serving += (c.toString().match(/demo worker serving/g) ?? []).length;
    if (serving >= opt.workers) {
      clearTimeout(t);
      resolve();
    }
  });
  primary.on("exit", (code) => reject(new Error(`primary exited with ${code}`)));
});
log(`cluster of ${opt.workers} workers on ${url}, seed ${opt.seed}`);

// ---- clients
const call = (s, ev, ...a) => s.timeout(10_000).emitWithAck(ev, ...a);
async function client(transport, join = true) {
  const s = io(url, { transports: [transport], forceNew: true, reconnection: false, timeout: 20_000 });
  await new Promise((resolve, reject) => {
    s.once("connect", resolve);
    s.once("connect_error", reject);
  });
  const me = await call(s, "whoami");
  s.worker = me.worker;
  s.pid = me.pid;
  s.alive = true;
  s.on("disconnect", () => (s.alive = false));
  if (join) await call(s, "join", "soak");
  return s;
}

const receivers = [];
for (let i = 0; i < opt.clients; i += 50) {
  const batch = [];
  for (let k = i; k < Math.min(opt.clients, i + 50); k++) batch.push(client(k % 5 === 4 ? "polling" : "websocket"));
  receivers.push(...(await Promise.all(batch)));
}
for (const r of receivers) {
  r.got = new Map(); // sender -> Set(seq)
  r.on("m", (p) => {
    let set = r.got.get(p.s);
    if (!set) r.got.set(p.s, (set = new Set()));
    set.add(p.seq);
  });
  r.on("question", (_room, ack) => typeof ack === "function" && ack(r.worker));
}
log(`${receivers.length} receivers (${receivers.filter((r) => r.io.engine.transport.name === "polling").length} polling)`);

// One sender per worker, not in the room.
const senders = [];
for (let t = 0; senders.length < opt.workers && t < opt.workers * 8; t++) {
  const s = await client("websocket", false);
  if (senders.some((x) => x.worker === s.worker)) s.disconnect();
  else senders.push(s);
}
const workerPids = new Map(); // index -> current pid
for (const r of [...receivers, ...senders]) workerPids.set(r.worker, r.pid);

// ---- load
const faulted = new Set(); // worker indexes faulted at least once
const sent = senders.map(() => 0);
let stop = false;
const broadcastLoop = (async () => {
  const t0 = Date.now();
  let n = 0;
  while (!stop) {
    const due = Math.floor(((Date.now() - t0) * opt.rate) / 1000);
    while (n < due) {
      const i = n++ % senders.length;
      if (senders[i].alive) senders[i].emit("to", "soak", "m", { s: i, seq: sent[i]++ });
    }
    await sleep(20);
  }
})();

const requests = { started: 0, settled: 0, unsettled: 0, errors: 0 };
async function timed(name, bound, f) {
  requests.started++;
  const t = Date.now();
  try {
    await f();
    const ms = Date.now() - t;
    if (ms > bound) {
      requests.unsettled++;
      log(`request ${name} took ${ms} ms (bound ${bound})`);
    } else requests.settled++;
  } catch (e) {
    // A client-side timeout (10 s) is an unsettled request.
    requests.unsettled++;
    log(`request ${name} failed: ${e.message}`);
  }
}
const requestLoop = (async () => {
  while (!stop) {
    const live = receivers.filter((r) => r.alive && !faulted.has(r.worker));
    if (live.length === 0) break;
    const c = live[rand(live.length)];
    // Bounds: the request timeouts (5 s fetch / server_emit, 2 s ask) plus 1 s.
    const kind = rand(3);
    if (kind === 0) await timed("fetch", 6000, () => call(c, "fetch", "soak"));
    else if (kind === 1) await timed("ask", 3000, () => call(c, "ask", "soak", 2000));
    else await timed("server_emit", 6000, () => call(c, "server_emit", 1));
    await sleep(100);
  }
})();

// ---- samples every 10 s
const samples = [];
function sample() {
  const p = procInfo(primary.pid);
  const workers = childrenOf(primary.pid).map((pid) => ({ pid, ...procInfo(pid) }));
  const s = { t: Math.round((Date.now() - T0) / 1000), primary: p, workers };
  samples.push(s);
  log(`sample: primary ${p?.rss.toFixed(1)} MiB ${p?.fds} fds; workers ${workers.map((w) => `${w.pid}:${w.rss?.toFixed(1)}MiB/${w.fds}fd`).join(" ")}`);
}
sample();
const sampler = setInterval(sample, 10_000);

// ---- faults
const faults = [];
const stuck = [];
function stuckClient() {
  return new Promise((resolve) => {
    const sock = net.connect(port, "127.0.0.1");
    const frame = (text) => {
      const p = Buffer.from(text);
      const mask = randomBytes(4);
      const body = Buffer.alloc(p.length, 0);
      for (let i = 0; i < p.length; i++) body[i] = p[i] ^ mask[i % 4];
      return Buffer.concat([Buffer.from([0x81, 0x80 | p.length]), mask, body]);
    };
    let buf = "";
    sock.on("error", () => {});
    sock.on("connect", () => sock.write(`GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${randomBytes(16).toString("base64")}\r\nSec-WebSocket-Version: 13\r\n\r\n`));
    const onData = (c) => {
      buf += c.toString("latin1");
      if (buf.includes('0{"sid"') && !buf.includes("sent40")) {
        sock.write(frame("40"));
        buf += "sent40";
      }
      if (/40\{"sid"/.test(buf) && !buf.includes("sentjoin")) {
        sock.write(frame('421["join","soak"]'));
        buf += "sentjoin";
      }
      if (buf.includes("431[true]")) {
        sock.off("data", onData);
        sock.pause();
        resolve(sock);
      }
    };
    sock.on("data", onData);
    setTimeout(() => resolve(sock), 5000);
  });
}
let restarts = 0;
async function fault() {
  const kinds = ["kill9", "stop", "stuck", "burst"];
  const kind = kinds[rand(kinds.length)];
  const w = rand(opt.workers);
  const pid = workerPids.get(w);
  const f = { t: Math.round((Date.now() - T0) / 1000), kind };
  if (kind === "kill9" && pid) {
    faulted.add(w);
    f.worker = w;
    process.kill(pid, "SIGKILL");
    restarts++;
    // Learn the new pid once the primary restarted it.
    setTimeout(async () => {
      for (let t = 0; t < 20; t++) {
        const c = await client("websocket", false).catch(() => null);
        if (c) {
          workerPids.set(c.worker, c.pid);
          c.disconnect();
        }
        if (workerPids.get(w) !== pid) break;
      }
    }, 1500);
  } else if (kind === "stop" && pid) {
    faulted.add(w);
    f.worker = w;
    process.kill(pid, "SIGSTOP");
    await sleep(HB_TIMEOUT + 1500);
    process.kill(pid, "SIGCONT");
  } else if (kind === "stuck") {
    stuck.push(await stuckClient());
  } else if (kind === "burst") {
    const t = Date.now();
    const burst = await Promise.allSettled(Array.from({ length: 500 }, () => client("websocket", false)));
    f.ok = burst.filter((b) => b.status === "fulfilled").length;
    f.ms = Date.now() - t;
    for (const b of burst) if (b.status === "fulfilled") b.value.disconnect();
  }
  faults.push(f);
  log(`fault ${JSON.stringify(f)}`);
}
const faultLoop = (async () => {
  await sleep(opt.faultEveryS * 1000);
  while (Date.now() - T0 < opt.durationS * 1000 - 10_000) {
    await fault();
    await sleep(opt.faultEveryS * 1000);
  }
})();

while (Date.now() - T0 < opt.durationS * 1000) await sleep(500);
stop = true;
await faultLoop;
await Promise.all([broadcastLoop, requestLoop]);
await sleep(3000);
clearInterval(sampler);
sample();

// ---- accounting: a message counts once a receiver on another worker than
// its sender's got it (it left the sender's worker: every receiver of an
// unfaulted worker must have it).
const delivered = senders.map(() => new Set());
for (const r of receivers) {
  for (const [s, set] of r.got) if (r.worker !== senders[s].worker) for (const q of set) delivered[s].add(q);
}
let expected = 0;
let lost = 0;
let checked = 0;
for (const r of receivers) {
  if (!r.alive || faulted.has(r.worker)) continue;
  checked++;
  for (let s = 0; s < senders.length; s++) {
    const got = r.got.get(s) ?? new Set();
    expected += delivered[s].size;
    for (const q of delivered[s]) if (!got.has(q)) lost++;
  }
}
const first = samples[1] ?? samples[0];
const last = samples[samples.length - 1];
const summary = {
  seed: opt.seed,
  duration_s: opt.durationS,
  workers: opt.workers,
  receivers: receivers.length,
  receivers_checked: checked,
  faulted_workers: [...faulted],
  sent: sent.reduce((a, b) => a + b, 0),
  deliveries_expected: expected,
  lost,
  requests,
  restarts,
  faults: faults.reduce((a, f) => ((a[f.kind] = (a[f.kind] ?? 0) + 1), a), {}),
  primary_rss_mb: [first.primary?.rss, last.primary?.rss],
  primary_fds: [first.primary?.fds, last.primary?.fds],
  samples,
};
const { samples: _, ...short } = summary;
console.log(JSON.stringify(short, null, 1));
if (opt.json) writeFileSync(opt.json, JSON.stringify(summary, null, 1));
for (const r of receivers) r.disconnect();
for (const s of senders) s.disconnect();
for (const s of stuck) s.destroy();
primary.kill("SIGTERM");
await sleep(2000);
const ok = lost === 0 && requests.unsettled === 0 && checked > 0;
console.log(ok ? "soak: ok" : "soak: FAILED");
process.exit(ok ? 0 : 1);
