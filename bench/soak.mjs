#!/usr/bin/env node
// Chaos soak (issue 15, item 2): a demo cluster of 4 workers, ~1000 clients
// over websocket and polling in one room, broadcasts at a fixed rate from one
// sender per worker (checked per sender and sequence number), fetch / ask /
// server_emit in a loop, and every few seconds a fault chosen at random:
//   kill9   kill -9 of a worker (the primary restarts it)
//   stop    SIGSTOP of a worker for longer than the heartbeat timeout, then SIGCONT
//   stuck   a WebSocket client that joins the room and stops reading
//   burst   500 connects at once (then they leave)
// Clients whose connection ends come back (a new client joins the room, as
// a reconnecting browser would); senders too.
//
// A fault taints its worker from 1 s before it to 5 s after it ended (the
// SIGCONT, or the kill). A message sent at time t by a sender is expected at
// a receiver when the receiver was in the room from t - 1 s to t + 1 s and
// neither its worker nor the sender's was tainted in [t - 1 s, t + 1 s].
// Reported: expected deliveries lost (goal 0), requests that did not settle
// within their timeout + 1 s while their requester's worker stayed untainted
// (goal 0), RSS and open fds of the primary and of each worker generation
// every 10 s, restarts. Exit code 1 when a goal is missed.
//
//   node bench/soak.mjs --bin target/release/sio-cluster-host --duration-s 1800
//
// Options: --bin PATH (default target/release/sio-cluster-host), --workers 4,
// --clients 1000 (a fifth over polling), --rate 20 (broadcasts/s in all),
// --fault-every-s 6, --duration-s 150, --seed N, --json FILE.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import net from "node:net";
import { io } from "socket.io-client";
import { childrenOf, freePort, procInfo } from "./lib/proc.mjs";

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
  s.on("disconnect", () => {
    s.alive = false;
    s.goneAt = Date.now();
  });
  if (join) await call(s, "join", "soak");
  s.joinedAt = Date.now();
  return s;
}

/** A growable bit set of sequence numbers. */
class Seqs {
  constructor() {
    this.bits = new Uint8Array(1024);
  }
  add(q) {
    if (!Number.isInteger(q) || q < 0 || q > 1e8) return;
    if (q >> 3 >= this.bits.length) {
      const n = new Uint8Array(Math.max(this.bits.length * 2, (q >> 3) + 1));
      n.set(this.bits);
      this.bits = n;
    }
    this.bits[q >> 3] |= 1 << (q & 7);
  }
  has(q) {
    return q >> 3 < this.bits.length && (this.bits[q >> 3] & (1 << (q & 7))) !== 0;
  }
}

let stop = false;
const receivers = []; // every receiver ever, replacements included
const workerPids = new Map(); // index -> current pid
async function receiver(transport) {
  for (;;) {
    try {
      const r = await client(transport);
      r.got = new Map(); // sender -> Seqs
      r.on("m", (p) => {
        let set = r.got.get(p.s);
        if (!set) r.got.set(p.s, (set = new Seqs()));
        set.add(p.seq);
      });
      r.on("question", (_room, ack) => typeof ack === "function" && ack(r.worker));
      r.on("disconnect", () => {
        if (!stop) setTimeout(() => receiver(transport), 200 + rand(800));
      });
      receivers.push(r);
      workerPids.set(r.worker, r.pid);
      return r;
    } catch {
      if (stop) return null;
      await sleep(500);
    }
  }
}
for (let i = 0; i < opt.clients; i += 50) {
  const batch = [];
  for (let k = i; k < Math.min(opt.clients, i + 50); k++) batch.push(receiver(k % 5 === 4 ? "polling" : "websocket"));
  await Promise.all(batch);
}
log(`${receivers.length} receivers (${receivers.filter((r) => r.io.engine.transport.name === "polling").length} polling)`);

// One sender per worker, not in the room; a sender whose connection ends is
// replaced by a new one (a new sender index) on whichever worker it lands.
const senders = []; // { s, worker, sentAt: [] }
async function sender(onWorker = null) {
  for (let t = 0; !stop; t++) {
    const s = await client("websocket", false).catch(() => null);
    if (!s) {
      await sleep(500);
      continue;
    }
    if (onWorker !== null && s.worker !== onWorker && t < opt.workers * 8) {
      s.disconnect();
      continue;
    }
    const entry = { s, worker: s.worker, sentAt: [] };
    senders.push(entry);
    workerPids.set(s.worker, s.pid);
    s.on("disconnect", () => {
      if (!stop) setTimeout(() => sender(), 200 + rand(800));
    });
    return entry;
  }
  return null;
}
for (let w = 0; w < opt.workers; w++) await sender(w);

// ---- load
const taints = new Map(); // worker index -> [[from, to]]
const taint = (w, from, to) => {
  if (!taints.has(w)) taints.set(w, []);
  taints.get(w).push([from, to]);
};
const tainted = (w, from, to) => (taints.get(w) ?? []).some(([a, b]) => a <= to && from <= b);
const broadcastLoop = (async () => {
  const t0 = Date.now();
  let n = 0;
  while (!stop) {
    const due = Math.floor(((Date.now() - t0) * opt.rate) / 1000);
    while (n < due) {
      const live = senders.filter((x) => x.s.alive);
      n++;
      if (live.length === 0) break;
      const x = live[n % live.length];
      const i = senders.indexOf(x);
      x.s.emit("to", "soak", "m", { s: i, seq: x.sentAt.length });
      x.sentAt.push(Date.now());
    }
    await sleep(20);
  }
})();

// A request counts against the goal only when its requester's worker stayed
// untainted while it ran (a SIGSTOP of the requester's own worker delays its
// answer by the stop, as it would with any server).
const requests = { started: 0, settled: 0, unsettled: 0, requesterFaulted: 0 };
async function timed(name, bound, c, f) {
  requests.started++;
  const t = Date.now();
  let err = null;
  try {
    await f();
  } catch (e) {
    err = e; // a client-side timeout (10 s) is an unsettled request
  }
  const end = Date.now();
  const ms = end - t;
  if (tainted(c.worker, t, end) || !c.alive) {
    requests.requesterFaulted++;
  } else if (err) {
    requests.unsettled++;
    log(`request ${name} on worker ${c.worker} failed after ${ms} ms: ${err.message}`);
  } else if (ms > bound) {
    requests.unsettled++;
    log(`request ${name} on worker ${c.worker} took ${ms} ms (bound ${bound})`);
  } else requests.settled++;
}
const requestLoop = (async () => {
  while (!stop) {
    const now = Date.now();
    const live = receivers.filter((r) => r.alive && !tainted(r.worker, now - 1000, now));
    if (live.length === 0) {
      await sleep(200);
      continue;
    }
    const c = live[rand(live.length)];
    // Bounds: the request timeouts (5 s fetch / server_emit, 2 s ask) plus 1 s.
    const kind = rand(3);
    if (kind === 0) await timed("fetch", 6000, c, () => call(c, "fetch", "soak"));
    else if (kind === 1) await timed("ask", 3000, c, () => call(c, "ask", "soak", 2000));
    else await timed("server_emit", 6000, c, () => call(c, "server_emit", 1));
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
    f.worker = w;
    taint(w, Date.now() - 1000, Date.now() + 5000);
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
    f.worker = w;
    const from = Date.now() - 1000;
    taint(w, from, Infinity);
    process.kill(pid, "SIGSTOP");
    await sleep(HB_TIMEOUT + 1500);
    process.kill(pid, "SIGCONT");
    taints.get(w).pop();
    taint(w, from, Date.now() + 5000);
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

// ---- accounting (see the header): per receiver, the messages sent while
// it was in the room, by senders whose worker and its own were untainted.
const end = Date.now();
let expected = 0;
let lost = 0;
let checked = 0;
const lostBy = {};
const firstAt = (arr, t) => {
  let lo = 0;
  let hi = arr.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (arr[mid] < t) lo = mid + 1;
    else hi = mid;
  }
  return lo;
};
for (const r of receivers) {
  const from = r.joinedAt + 1000;
  const to = (r.goneAt ?? end) - 1000;
  if (to <= from) continue;
  checked++;
  for (let i = 0; i < senders.length; i++) {
    const x = senders[i];
    const got = r.got.get(i);
    for (let q = firstAt(x.sentAt, from); q < x.sentAt.length && x.sentAt[q] <= to; q++) {
      const t = x.sentAt[q];
      if (tainted(r.worker, t - 1000, t + 1000) || tainted(x.worker, t - 1000, t + 1000)) continue;
      if (x.s.goneAt !== undefined && x.s.goneAt < t + 1000) continue;
      expected++;
      if (!got?.has(q)) {
        lost++;
        const k = `w${x.worker}->w${r.worker}`;
        lostBy[k] = (lostBy[k] ?? 0) + 1;
      }
    }
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
  senders: senders.length,
  tainted_s: Object.fromEntries([...taints].map(([w, l]) => [w, Math.round(l.reduce((a, [x, y]) => a + (Math.min(y, end) - x), 0) / 1000)])),
  sent: senders.reduce((a, x) => a + x.sentAt.length, 0),
  deliveries_expected: expected,
  lost,
  lost_by: lostBy,
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
stop = true;
for (const r of receivers) r.disconnect();
for (const x of senders) x.s.disconnect();
for (const s of stuck) s.destroy();
primary.kill("SIGTERM");
await sleep(2000);
const ok = lost === 0 && requests.unsettled === 0 && checked > 0;
console.log(ok ? "soak: ok" : "soak: FAILED");
process.exit(ok ? 0 : 1);
