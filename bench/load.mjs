#!/usr/bin/env node
// End-to-end load harness for a Socket.IO cluster implementing
// ../shared/demo-contract.md (our sio-cluster-host demo or bench/node-ref).
//
// C clients connect (spread over the workers by the cluster's balancer; each
// asks `whoami`), client i joins room hash(i) % R. Clients 0..S-1 are also senders:
// sender k emits `to` (room k % R, "m", {t, seq, sender}), t being the send time
// in microseconds of CLOCK_MONOTONIC (process.hrtime), which is the same clock in
// every process of this machine, so the harness may be split over several
// processes (--procs) and latencies stay exact.
//
// The run is: connect -> warm-up (sent, delivered, not counted) -> measurement
// -> drain (wait for the deliveries of the measured messages, bounded).
// Deliveries/s counts deliveries received during the measurement window; loss,
// latency and the crossed-worker fraction are over the messages *sent* during it.
import { fork } from "node:child_process";
import { writeFileSync, mkdirSync, readFileSync } from "node:fs";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { createRequire } from "node:module";
import { cpus } from "node:os";

const require = createRequire(import.meta.url);
const { ensureDeps } = require("./lib/deps.cjs");
const { treeCpuUs, machineCpuUs } = require("./lib/proc.cjs");

const SELF = fileURLToPath(import.meta.url);

const USAGE = `usage: node bench/load.mjs [options]

Drives a Socket.IO cluster (demo contract) with C clients in R rooms; S senders
emit "to" and the receivers measure deliveries and latency.

  --url URL                 cluster URL (default http://127.0.0.1:3000)
  --clients C               number of clients (default 200)
  --rooms R                 number of rooms; client i joins room hash(i) % R (default 10)
  --senders S               senders: clients 0..S-1, sender k sends to room k % R (default 10)
  --mode max|rate           max: each sender keeps at most --window messages whose
                            deliveries are not all received (closed loop);
                            rate: open loop at --rate messages/s in total (default max)
  --window W                in-flight messages per sender in max mode (default 4)
  --rate M                  messages/s in total (all senders) in rate mode (default 1000)
  --warmup SEC              warm-up, excluded from the figures (default 2)
  --duration SEC            measurement window (default 10)
  --drain SEC               at most this long to wait for the measured deliveries (default 3)
  --transport T             websocket (default) or polling
  --client sio|raw|rust     sio: socket.io-client (default); raw: the minimal
                            WebSocket-only client of lib/raw-client.mjs, several
                            times cheaper per delivery (for when the harness is
                            the bottleneck; websocket transport only); rust: runs
                            target/release/sio-cluster-loadgen run with these
                            options instead (same workload and report, cheaper
                            still; --procs ignored, see --threads)
  --threads T               --client rust: tokio worker threads (default 1)
  --procs P                 client processes (default 1); clients are dealt round-robin
  --payload-bytes B         add a string of B bytes to each payload (default 0)
  --connect-concurrency K   handshakes in flight per process (default 50)
  --handshake-timeout MS    per-connection handshake deadline, then retry (default 5000)
  --connect-retries N       retries per client after a failed handshake (default 3)
  --connect-timeout SEC     give up if the connect phase takes longer (default 120)
  --msg-timeout MS          max mode: free a window slot after this long (default 5000)
  --expect-workers N        fail if the clients do not reach exactly N workers
  --cluster-pid PID         also report the CPU used by PID and its descendants
                            during the measurement (Linux /proc)
  --json-out FILE           also write the JSON report to FILE
  --quiet                   print only the human line (no JSON on stdout)
  -h, --help                this text

Output: the JSON report on stdout (unless --quiet), then one human line.
Exit status: 0 on success, 1 when the run failed (connect phase, child crash,
timeout), 2 on bad arguments.`;

// ---------------------------------------------------------------- helpers
const nowUs = () => Number(process.hrtime.bigint() / 1000n);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Log-bucket latency histogram: ~2% resolution, 1 us to ~470 s.
const HB = 50; // buckets per e-fold
const NB = 1000;
const bucketOf = (us) => (us < 1 ? 0 : Math.min(NB - 1, 1 + Math.floor(Math.log(us) * HB)));
const bucketValue = (b) => (b === 0 ? 0.5 : Math.exp((b - 0.5) / HB));
/**
 * The room of client i: a hash of i, so that every room holds clients of
 * every worker whatever order the balancer placed them in (with `i % R`,
 * round-robin placement over 2 workers and an even R put each room on one
 * worker, and almost no delivery crossed workers).
 */
function roomOf(i, rooms) {
  return (Math.imul(i + 1, 0x9e3779b1) >>> 16) % rooms;
}

function percentile(hist, total, q) {
  if (total === 0) return null;
  const target = Math.ceil(q * total);
  let acc = 0;
  for (let b = 0; b < hist.length; b++) {
    acc += hist[b];
    if (acc >= target) return bucketValue(b);
  }
  return bucketValue(hist.length - 1);
}
const ms = (us) => (us == null ? null : Math.round(us) / 1000);

function fail(msg, code = 1) {
  console.error(`load: ${msg}`);
  process.exit(code);
}

function parseOptions(argv) {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        url: { type: "string", default: "http://127.0.0.1:3000" },
        clients: { type: "string", default: "200" },
        rooms: { type: "string", default: "10" },
        senders: { type: "string", default: "10" },
        mode: { type: "string", default: "max" },
        window: { type: "string", default: "4" },
        rate: { type: "string", default: "1000" },
        warmup: { type: "string", default: "2" },
        duration: { type: "string", default: "10" },
        drain: { type: "string", default: "3" },
        transport: { type: "string", default: "websocket" },
        client: { type: "string", default: "sio" },
        threads: { type: "string", default: "1" },
        procs: { type: "string", default: "1" },
        "payload-bytes": { type: "string", default: "0" },
        "connect-concurrency": { type: "string", default: "50" },
        "handshake-timeout": { type: "string", default: "5000" },
        "connect-retries": { type: "string", default: "3" },
        "connect-timeout": { type: "string", default: "120" },
        "msg-timeout": { type: "string", default: "5000" },
        "expect-workers": { type: "string" },
        "cluster-pid": { type: "string" },
        "json-out": { type: "string" },
        quiet: { type: "boolean", default: false },
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
  const num = (name, { int = true, min = 0, max = Infinity } = {}) => {
    const v = values[name];
    const n = Number(v);
    if (!Number.isFinite(n) || (int && !Number.isInteger(n)) || n < min || n > max)
      fail(`--${name}: expected ${int ? "an integer" : "a number"} in [${min}, ${max}], got "${v}"`, 2);
    return n;
  };
  const o = {
    url: values.url,
    clients: num("clients", { min: 1 }),
    rooms: num("rooms", { min: 1 }),
    senders: num("senders", { min: 1 }),
    mode: values.mode,
    window: num("window", { min: 1 }),
    rate: num("rate", { int: false, min: 0.001 }),
    warmup: num("warmup", { int: false, min: 0 }),
    duration: num("duration", { int: false, min: 0.1 }),
    drain: num("drain", { int: false, min: 0 }),
    transport: values.transport,
    client: values.client,
    threads: num("threads", { min: 1, max: 256 }),
    procs: num("procs", { min: 1, max: 64 }),
    payloadBytes: num("payload-bytes", { min: 0, max: 10_000_000 }),
    connectConcurrency: num("connect-concurrency", { min: 1 }),
    handshakeTimeout: num("handshake-timeout", { min: 100 }),
    connectRetries: num("connect-retries", { min: 0 }),
    connectTimeout: num("connect-timeout", { int: false, min: 1 }),
    msgTimeout: num("msg-timeout", { min: 10 }),
    expectWorkers: values["expect-workers"] === undefined ? null : num("expect-workers", { min: 1 }),
    clusterPid: values["cluster-pid"] === undefined ? null : num("cluster-pid", { min: 1 }),
    jsonOut: values["json-out"],
    quiet: values.quiet,
  };
  if (!["max", "rate"].includes(o.mode)) fail(`--mode: expected max or rate, got "${o.mode}"`, 2);
  if (!["websocket", "polling"].includes(o.transport)) fail(`--transport: expected websocket or polling, got "${o.transport}"`, 2);
  if (!["sio", "raw", "rust"].includes(o.client)) fail(`--client: expected sio, raw or rust, got "${o.client}"`, 2);
  if (o.client !== "sio" && o.transport !== "websocket") fail(`--client ${o.client} supports only --transport websocket`, 2);
  if (o.senders > o.clients) fail(`--senders (${o.senders}) cannot exceed --clients (${o.clients})`, 2);
  if (o.procs > o.clients) o.procs = o.clients;
  try {
    const u = new URL(o.url);
    if (!/^(https?|wss?):$/.test(u.protocol)) throw new Error("protocol");
  } catch {
    fail(`--url: not an http(s) URL: "${o.url}"`, 2);
  }
  return o;
}

// ================================================================ child
// A child owns clients i with i % procs === index. Protocol with the parent:
//   parent: {cmd:"init", opts, index}      child: {ev:"connected", who, failures, retries, errors}
//   parent: {cmd:"start", plan}            child: {ev:"sent", measured:[[sender,count],..]}   (after measureEnd)
//   child:  {ev:"complete", list}  (max mode: local completion of remote senders' messages)
//   parent: {cmd:"complete", list} (routed to the sender's owner)
//   parent: {cmd:"drain", measured}        child: {ev:"report", stats}
async function runChild() {
  let opts, index, io;
  const clients = []; // {i, room, socket, worker, pid}
  let plan = null;
  const send = (m) => process.send(m);

  // receive-side state
  const hist = new Uint32Array(NB);
  let recvMeasured = 0; // deliveries of measured messages
  let crossed = 0;
  let maxLat = 0;
  let sumLat = 0;
  let inWindow = 0; // deliveries received during the window (any message)
  let totalRecv = 0;
  let disconnects = 0;
  const disconnectReasons = {};
  let myWorkerOf = null; // client idx -> worker (local)
  // max mode: pending[sender] = Map(seq -> [count, t]) for local completion
  let pending = null;
  let outbox = []; // completions to the parent: sender, seq, sender, seq, ...
  let outboxScheduled = false;

  // send-side state (local senders)
  const senders = []; // {k, socket, room, seq, measured, inflight: Map(seq -> [remainingProcs, sentUs]), timedOut}
  const senderByIdx = new Map();
  let sending = false;
  let payloadPad = "";

  const loop = monitorEventLoopDelay({ resolution: 10 });

  function flushOutbox() {
    outboxScheduled = false;
    if (outbox.length) {
      send({ ev: "complete", list: outbox });
      outbox = [];
    }
  }

  function onComplete(k, seq) {
    const s = senderByIdx.get(k);
    if (!s) return;
    const e = s.inflight.get(seq);
    if (!e) return; // already timed out
    if (--e[0] === 0) {
      s.inflight.delete(seq);
      pump(s);
    }
  }

  function makeReceiver(c) {
    const myWorker = c.worker;
    const room = c.room;
    return (p) => {
      const r = nowUs();
      totalRecv++;
      if (r >= plan.measureStart && r < plan.measureEnd) inWindow++;
      const t = p.t;
      const k = p.sender;
      if (t >= plan.measureStart && t < plan.measureEnd) {
        recvMeasured++;
        const lat = r - t;
        hist[bucketOf(lat)]++;
        sumLat += lat;
        if (lat > maxLat) maxLat = lat;
        if (plan.senderWorker[k] !== myWorker) crossed++;
      }
      if (pending) {
        let m = pending[k];
        let e = m.get(p.seq);
        if (e === undefined) {
          e = [0, t];
          m.set(p.seq, e);
        }
        if (++e[0] === plan.localMembers[room]) {
          m.delete(p.seq);
          if (senderByIdx.has(k)) onComplete(k, p.seq);
          else {
            outbox.push(k, p.seq);
            if (!outboxScheduled) {
              outboxScheduled = true;
              setImmediate(flushOutbox);
            }
          }
        }
      }
    };
  }

  function sendOne(s) {
    const t = nowUs();
    const seq = s.seq++;
    if (t >= plan.measureStart && t < plan.measureEnd) s.measured++;
    if (pending) s.inflight.set(seq, [plan.procsInRoom[s.room], t]);
    const payload = payloadPad ? { t, seq, sender: s.k, pad: payloadPad } : { t, seq, sender: s.k };
    s.socket.emit("to", `r${s.room}`, "m", payload);
  }

  function pump(s) {
    if (!sending) return;
    while (s.inflight.size < opts.window) {
      if (nowUs() >= plan.measureEnd) return stopSending();
      sendOne(s);
    }
  }

  function stopSending() {
    if (!sending) return;
    sending = false;
    send({ ev: "sent", measured: senders.map((s) => [s.k, s.measured]), totalSent: senders.reduce((a, s) => a + s.seq, 0) });
  }

  async function connectAll() {
    let retries = 0;
    let failures = 0;
    const errors = [];
    const mine = [];
    for (let i = index; i < opts.clients; i += opts.procs) mine.push(i);
    let next = 0;
    const connectOne = (i) =>
      new Promise((resolve, reject) => {
        const socket = io(opts.url, {
          transports: [opts.transport],
          forceNew: true,
          multiplex: false,
          reconnection: false,
          timeout: opts.handshakeTimeout,
        });
        const timer = setTimeout(() => {
          socket.disconnect();
          reject(new Error(`no handshake within ${opts.handshakeTimeout} ms`));
        }, opts.handshakeTimeout);
        socket.once("connect", async () => {
          try {
            const who = await socket.timeout(opts.handshakeTimeout).emitWithAck("whoami");
            const room = roomOf(i, opts.rooms);
            const ok = await socket.timeout(opts.handshakeTimeout).emitWithAck("join", `r${room}`);
            if (ok !== true) throw new Error(`join answered ${JSON.stringify(ok)}`);
            if (!who || !Number.isInteger(who.worker)) throw new Error(`whoami answered ${JSON.stringify(who)}`);
            clearTimeout(timer);
            resolve({ i, room, socket, worker: who.worker, pid: who.pid });
          } catch (e) {
            clearTimeout(timer);
            socket.disconnect();
            reject(new Error(`whoami/join: ${e.message}`));
          }
        });
        socket.once("connect_error", (e) => {
          clearTimeout(timer);
          socket.disconnect();
          reject(new Error(`connect_error: ${e.message}`));
        });
      });
    async function lane() {
      while (next < mine.length) {
        const i = mine[next++];
        for (let attempt = 0; ; attempt++) {
          try {
            clients.push(await connectOne(i));
            break;
          } catch (e) {
            if (errors.length < 10) errors.push(`client ${i}: ${e.message}`);
            if (attempt >= opts.connectRetries) {
              failures++;
              break;
            }
            retries++;
          }
        }
      }
    }
    await Promise.all(Array.from({ length: Math.min(opts.connectConcurrency, mine.length) }, lane));
    for (const c of clients) {
      c.socket.on("question", (_q, ack) => ack(c.socket.id));
      c.socket.on("disconnect", (reason) => {
        disconnects++;
        disconnectReasons[reason] = (disconnectReasons[reason] || 0) + 1;
      });
    }
    send({ ev: "connected", who: clients.map((c) => [c.i, c.worker, c.pid]), failures, retries, errors });
  }

  function start(p) {
    plan = p;
    myWorkerOf = new Map(clients.map((c) => [c.i, c.worker]));
    if (opts.payloadBytes) payloadPad = "x".repeat(opts.payloadBytes);
    if (opts.mode === "max") {
      pending = Array.from({ length: opts.senders }, () => new Map());
    }
    for (const c of clients) c.socket.on("m", makeReceiver(c));
    for (const c of clients) {
      if (c.i < opts.senders) {
        const s = { k: c.i, socket: c.socket, room: c.i % opts.rooms, seq: 0, measured: 0, inflight: new Map() };
        senders.push(s);
        senderByIdx.set(c.i, s);
      }
    }
    let cpu0 = null;
    let cpuDone = null;
    const wait0 = Math.max(0, (plan.measureStart - nowUs()) / 1000);
    setTimeout(() => {
      cpu0 = process.cpuUsage();
      loop.enable();
    }, wait0);
    setTimeout(() => {
      cpuDone = process.cpuUsage(cpu0 || undefined);
      loop.disable();
      stopSending();
    }, Math.max(0, (plan.measureEnd - nowUs()) / 1000));
    childState.cpu = () => cpuDone;

    sending = true;
    if (opts.mode === "max") {
      // slots of messages whose deliveries never complete are freed after msgTimeout
      childState.sweeper = setInterval(() => {
        const old = nowUs() - opts.msgTimeout * 1000;
        for (const s of senders)
          for (const [seq, e] of s.inflight)
            if (e[1] < old) {
              s.inflight.delete(seq);
              childState.timedOut++;
              pump(s);
            }
        for (const m of pending) for (const [seq, e] of m) if (e[1] < old - opts.msgTimeout * 1000) m.delete(seq);
      }, 100);
      for (const s of senders) pump(s);
      if (senders.length === 0) stopSending();
    } else {
      const perSender = opts.rate / opts.senders;
      const t0 = nowUs();
      const tick = () => {
        if (!sending) return;
        const now = nowUs();
        if (now >= plan.measureEnd) return stopSending();
        const due = Math.floor(((now - t0) / 1e6) * perSender) + 1;
        for (const s of senders) {
          let n = due - s.seq;
          if (n > 1000) {
            childState.skipped += n - 1000; // the harness fell behind; keep bursts bounded
            s.seq += n - 1000;
            n = 1000;
          }
          while (n-- > 0) sendOne(s);
        }
        setTimeout(tick, 1);
      };
      if (senders.length === 0) stopSending();
      else tick();
    }
  }

  const childState = { cpu: () => null, sweeper: null, timedOut: 0, skipped: 0 };

  async function drain(measuredBySender, deadlineUs) {
    // expected local deliveries of measured messages
    let expected = 0;
    for (const [k, n] of measuredBySender) expected += n * plan.localMembers[k % opts.rooms];
    while (recvMeasured < expected && nowUs() < deadlineUs) await sleep(20);
    if (childState.sweeper) clearInterval(childState.sweeper);
    const cpu = childState.cpu();
    send({
      ev: "report",
      stats: {
        index,
        hist: Array.from(hist),
        recvMeasured,
        expectedLocal: expected,
        crossed,
        maxLat,
        sumLat,
        inWindow,
        totalRecv,
        disconnects,
        disconnectReasons,
        timedOut: childState.timedOut,
        skipped: childState.skipped,
        cpuUs: cpu ? cpu.user + cpu.system : null,
        loopDelayP99Ms: loop.count ? loop.percentile(99) / 1e6 : null,
        loopDelayMaxMs: loop.count ? loop.max / 1e6 : null,
      },
    });
  }

  process.on("message", async (m) => {
    try {
      if (m.cmd === "init") {
        opts = m.opts;
        index = m.index;
        if (opts.client === "raw") {
          const { connect } = await import("./lib/raw-client.mjs");
          io = (url, o) => connect(url, { timeout: o.timeout });
        } else {
          ({ io } = await import("socket.io-client"));
        }
        await connectAll();
      } else if (m.cmd === "start") {
        start(m.plan);
      } else if (m.cmd === "complete") {
        for (let j = 0; j < m.list.length; j += 2) onComplete(m.list[j], m.list[j + 1]);
      } else if (m.cmd === "drain") {
        await drain(m.measured, m.deadlineUs);
      } else if (m.cmd === "close") {
        for (const c of clients) c.socket.disconnect();
        setTimeout(() => process.exit(0), 50);
      }
    } catch (e) {
      send({ ev: "error", message: e.stack || String(e) });
    }
  });
  process.on("disconnect", () => process.exit(0));
}

// ================================================================ parent
async function runParent(opts) {
  const started = new Date().toISOString();
  const hardLimitMs = (opts.connectTimeout + opts.warmup + opts.duration + opts.drain + 15) * 1000;
  const children = [];
  let fatal = null;
  const hard = setTimeout(() => abort(`overall time limit (${Math.round(hardLimitMs / 1000)} s) exceeded`), hardLimitMs);

  function abort(msg) {
    fatal = msg;
    for (const c of children) c.kill("SIGKILL");
    clearTimeout(hard);
    fail(msg);
  }

  const waiters = new Map(); // ev -> [resolve per child]
  const inbox = Array.from({ length: opts.procs }, () => new Map());
  function expect(ev, timeoutMs) {
    return Promise.all(
      children.map(
        (_, ci) =>
          new Promise((resolve, reject) => {
            const have = inbox[ci].get(ev);
            if (have) {
              inbox[ci].delete(ev);
              return resolve(have);
            }
            const key = `${ci}:${ev}`;
            const timer = setTimeout(() => reject(new Error(`child ${ci}: no "${ev}" within ${Math.round(timeoutMs / 1000)} s`)), timeoutMs);
            waiters.set(key, (m) => {
              clearTimeout(timer);
              resolve(m);
            });
          })
      )
    );
  }

  for (let ci = 0; ci < opts.procs; ci++) {
    const child = fork(SELF, [], { env: { ...process.env, SIO_LOAD_CHILD: "1" }, stdio: ["ignore", "inherit", "inherit", "ipc"] });
    child.on("message", (m) => {
      if (m.ev === "complete") {
        // route completions to the sender's owner process
        const byOwner = new Map();
        for (let j = 0; j < m.list.length; j += 2) {
          const owner = m.list[j] % opts.procs;
          if (!byOwner.has(owner)) byOwner.set(owner, []);
          byOwner.get(owner).push(m.list[j], m.list[j + 1]);
        }
        for (const [owner, list] of byOwner) children[owner].send({ cmd: "complete", list });
        return;
      }
      if (m.ev === "error") return abort(`child ${ci}: ${m.message}`);
      const key = `${ci}:${m.ev}`;
      const w = waiters.get(key);
      if (w) {
        waiters.delete(key);
        w(m);
      } else inbox[ci].set(m.ev, m);
    });
    child.on("exit", (code, signal) => {
      if (!closing && !fatal) abort(`child ${ci} exited (${signal || code}) during the run`);
    });
    children.push(child);
  }
  let closing = false;

  const childOpts = { ...opts };
  children.forEach((c, index) => c.send({ cmd: "init", opts: childOpts, index }));

  // ---- connect phase
  const tConnect0 = Date.now();
  let connected;
  try {
    connected = await expect("connected", opts.connectTimeout * 1000);
  } catch (e) {
    return abort(`connect phase: ${e.message}`);
  }
  const connectSeconds = (Date.now() - tConnect0) / 1000;
  const who = connected.flatMap((m) => m.who); // [i, worker, pid]
  const failures = connected.reduce((a, m) => a + m.failures, 0);
  const retries = connected.reduce((a, m) => a + m.retries, 0);
  const errors = connected.flatMap((m) => m.errors).slice(0, 10);
  if (who.length === 0) return abort(`no client could connect to ${opts.url}: ${errors.join("; ")}`);
  const perWorker = {};
  const pidOfWorker = {};
  for (const [, w, pid] of who) {
    perWorker[w] = (perWorker[w] || 0) + 1;
    pidOfWorker[w] = pid;
  }
  const workersSeen = Object.keys(perWorker).length;
  if (opts.expectWorkers !== null && workersSeen !== opts.expectWorkers)
    return abort(`clients reached ${workersSeen} workers (${JSON.stringify(perWorker)}), expected ${opts.expectWorkers}`);
  const senderWorker = new Array(opts.senders).fill(-1);
  const roomSize = new Array(opts.rooms).fill(0);
  const localMembersByProc = Array.from({ length: opts.procs }, () => new Array(opts.rooms).fill(0));
  for (const [i, w] of who) {
    if (i < opts.senders) senderWorker[i] = w;
    roomSize[roomOf(i, opts.rooms)]++;
    localMembersByProc[i % opts.procs][roomOf(i, opts.rooms)]++;
  }
  const procsInRoom = roomSize.map((_, r) => localMembersByProc.filter((l) => l[r] > 0).length);
  const missingSenders = senderWorker.filter((w) => w < 0).length;
  if (missingSenders === opts.senders) return abort(`none of the ${opts.senders} senders could connect`);

  // ---- warm-up + measurement
  const warmupStart = nowUs() + 200_000; // let every child receive the plan first
  const measureStart = warmupStart + Math.round(opts.warmup * 1e6);
  const measureEnd = measureStart + Math.round(opts.duration * 1e6);
  children.forEach((c, ci) =>
    c.send({
      cmd: "start",
      plan: { warmupStart, measureStart, measureEnd, senderWorker, roomSize, procsInRoom, localMembers: localMembersByProc[ci] },
    })
  );
  // children start sending at once (warm-up starts now); no barrier is needed
  // because phases are absolute CLOCK_MONOTONIC times.
  const parentCpu0 = { u: null, machine: null, cluster: null };
  const parentCpu1 = { machine: null, cluster: null };
  setTimeout(() => {
    parentCpu0.u = process.cpuUsage();
    parentCpu0.machine = machineCpuUs();
    if (opts.clusterPid) parentCpu0.cluster = treeCpuUs(opts.clusterPid);
  }, Math.max(0, (measureStart - nowUs()) / 1000));
  setTimeout(() => {
    parentCpu1.machine = machineCpuUs();
    if (opts.clusterPid) parentCpu1.cluster = treeCpuUs(opts.clusterPid);
  }, Math.max(0, (measureEnd - nowUs()) / 1000));
  let sent;
  try {
    sent = await expect("sent", (opts.warmup + opts.duration + 10) * 1000 + 200);
  } catch (e) {
    return abort(`measurement: ${e.message}`);
  }
  const parentCpu = parentCpu0.u ? process.cpuUsage(parentCpu0.u) : null;
  const measuredBySender = sent.flatMap((m) => m.measured);
  const totalSent = sent.reduce((a, m) => a + m.totalSent, 0);
  const messagesMeasured = measuredBySender.reduce((a, [, n]) => a + n, 0);
  let expected = 0;
  for (const [k, n] of measuredBySender) expected += n * roomSize[k % opts.rooms];

  // ---- drain
  const deadlineUs = nowUs() + Math.round(opts.drain * 1e6);
  children.forEach((c) => c.send({ cmd: "drain", measured: measuredBySender, deadlineUs }));
  let reports;
  try {
    reports = (await expect("report", opts.drain * 1000 + 10_000)).map((m) => m.stats);
  } catch (e) {
    return abort(`drain: ${e.message}`);
  }
  closing = true;
  clearTimeout(hard);
  children.forEach((c) => c.send({ cmd: "close" }));

  // ---- aggregate
  const hist = new Array(NB).fill(0);
  let received = 0, crossed = 0, maxLat = 0, sumLat = 0, inWindow = 0, disconnects = 0, timedOut = 0, skipped = 0;
  const disconnectReasons = {};
  for (const r of reports) {
    for (let b = 0; b < NB; b++) hist[b] += r.hist[b];
    received += r.recvMeasured;
    crossed += r.crossed;
    maxLat = Math.max(maxLat, r.maxLat);
    sumLat += r.sumLat;
    inWindow += r.inWindow;
    disconnects += r.disconnects;
    timedOut += r.timedOut;
    skipped += r.skipped;
    for (const [k, v] of Object.entries(r.disconnectReasons)) disconnectReasons[k] = (disconnectReasons[k] || 0) + v;
  }
  const lost = Math.max(0, expected - received);
  const cpuPerProc = reports.map((r) => (r.cpuUs == null ? null : Math.round((r.cpuUs / (opts.duration * 1e6)) * 1000) / 10));
  const parentCpuPct = parentCpu ? Math.round(((parentCpu.user + parentCpu.system) / (opts.duration * 1e6)) * 1000) / 10 : null;
  const harnessCpu = Math.round((cpuPerProc.reduce((a, v) => a + (v || 0), 0) + (parentCpuPct || 0)) * 10) / 10;
  const pct = (us) => Math.round((us / (opts.duration * 1e6)) * 1000) / 10;
  const clusterCpu =
    parentCpu0.cluster && parentCpu1.cluster ? pct(parentCpu1.cluster.cpuUs - parentCpu0.cluster.cpuUs) : null;
  const machineBusy =
    parentCpu0.machine && parentCpu1.machine ? pct(parentCpu1.machine.busyUs - parentCpu0.machine.busyUs) : null;
  const result = {
    tool: "bench/load.mjs",
    format: 1,
    started_at: started,
    url: opts.url,
    transport: opts.transport,
    client: opts.client,
    mode: opts.mode,
    window: opts.mode === "max" ? opts.window : null,
    rate: opts.mode === "rate" ? opts.rate : null,
    clients: opts.clients,
    clients_connected: who.length,
    connect_failures: failures,
    handshake_retries: retries,
    connect_errors: errors,
    connect_seconds: Math.round(connectSeconds * 100) / 100,
    rooms: opts.rooms,
    senders: opts.senders,
    room_size: { min: Math.min(...roomSize), max: Math.max(...roomSize) },
    payload_bytes: opts.payloadBytes,
    warmup_s: opts.warmup,
    duration_s: opts.duration,
    per_worker: perWorker,
    worker_pids: pidOfWorker,
    workers_seen: workersSeen,
    messages_sent_total: totalSent,
    messages_measured: messagesMeasured,
    messages_per_s: Math.round(messagesMeasured / opts.duration),
    expected,
    received,
    lost,
    lost_fraction: expected ? lost / expected : 0,
    extra_deliveries: Math.max(0, received - expected),
    deliveries_per_s: Math.round(inWindow / opts.duration),
    deliveries_in_window: inWindow,
    latency_ms: {
      p50: ms(percentile(hist, received, 0.5)),
      p90: ms(percentile(hist, received, 0.9)),
      p99: ms(percentile(hist, received, 0.99)),
      p999: ms(percentile(hist, received, 0.999)),
      max: ms(maxLat),
      mean: received ? ms(sumLat / received) : null,
    },
    crossed_fraction: received ? Math.round((crossed / received) * 10000) / 10000 : null,
    crossed_deliveries_per_s: received ? Math.round((inWindow * crossed) / received / opts.duration) : null,
    timed_out_messages: timedOut,
    rate_skipped_messages: skipped,
    disconnects,
    disconnect_reasons: disconnectReasons,
    harness: {
      procs: opts.procs,
      cpu_percent_total: harnessCpu,
      cpu_percent_per_proc: cpuPerProc,
      cpu_percent_coordinator: parentCpuPct,
      loop_delay_p99_ms: reports.map((r) => (r.loopDelayP99Ms == null ? null : Math.round(r.loopDelayP99Ms * 100) / 100)),
      loop_delay_max_ms: reports.map((r) => (r.loopDelayMaxMs == null ? null : Math.round(r.loopDelayMaxMs * 100) / 100)),
    },
    cluster: {
      pid: opts.clusterPid,
      cpu_percent: clusterCpu,
      processes: parentCpu1.cluster ? parentCpu1.cluster.processes : null,
    },
    machine: {
      cores: cpus().length,
      busy_percent: machineBusy,
      other_percent:
        machineBusy == null ? null : Math.round((machineBusy - harnessCpu - (clusterCpu || 0)) * 10) / 10,
      loadavg_at_end: (() => {
        try {
          return readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).map(Number);
        } catch {
          return null;
        }
      })(),
    },
  };
  const split = Object.entries(perWorker).map(([w, n]) => `w${w}:${n}`).join(" ");
  const l = result.latency_ms;
  const human =
    `load ${opts.mode}${opts.mode === "max" ? ` W=${opts.window}` : ` ${opts.rate} msg/s`} ${opts.transport}${opts.client === "raw" ? " raw-client" : ""}: ` +
    `C=${who.length}/${opts.clients} (${split}) R=${opts.rooms} S=${opts.senders} | ` +
    `${result.deliveries_per_s} deliveries/s (${result.messages_per_s} msg/s) | ` +
    `expected ${expected} received ${received} lost ${lost} (${(result.lost_fraction * 100).toFixed(2)}%) | ` +
    `latency p50 ${l.p50} ms p99 ${l.p99} ms max ${l.max} ms | crossed ${((result.crossed_fraction || 0) * 100).toFixed(1)}% | ` +
    `CPU (100% = one core) harness ${harnessCpu}% (${opts.procs} proc${opts.procs > 1 ? "s" : ""})` +
    ` loop-delay p99 ${Math.max(...result.harness.loop_delay_p99_ms.map((v) => v || 0))} ms` +
    (clusterCpu != null ? ` cluster ${clusterCpu}%` : "") +
    (machineBusy != null ? ` machine ${machineBusy}%/${cpus().length * 100}% (other work ${result.machine.other_percent}%)` : "") +
    (disconnects ? ` | ${disconnects} disconnects` : "") +
    (failures ? ` | ${failures} clients failed to connect` : "");
  if (opts.jsonOut) {
    mkdirSync(dirname(opts.jsonOut), { recursive: true });
    writeFileSync(opts.jsonOut, JSON.stringify(result, null, 2) + "\n");
  }
  if (!opts.quiet) console.log(JSON.stringify(result, null, 2));
  console.log(human);
  await sleep(100);
  process.exit(0);
}

// --client rust: the same run by the Rust load generator (bench/loadgen).
async function runRust(o) {
  const { spawn } = await import("node:child_process");
  const { existsSync } = await import("node:fs");
  const bin = fileURLToPath(new URL("../target/release/sio-cluster-loadgen", import.meta.url));
  if (!existsSync(bin)) fail(`--client rust: ${bin} does not exist; build it with: cargo build --release -p sio-cluster-loadgen`, 2);
  const args = ["run", "--url", o.url, "--clients", o.clients, "--rooms", o.rooms, "--senders", o.senders,
    "--mode", o.mode, "--window", o.window, "--rate", o.rate, "--warmup", o.warmup, "--duration", o.duration,
    "--drain", o.drain, "--threads", o.threads, "--payload-bytes", o.payloadBytes,
    "--connect-concurrency", o.connectConcurrency, "--handshake-timeout", o.handshakeTimeout,
    "--connect-retries", o.connectRetries, "--connect-timeout", o.connectTimeout, "--msg-timeout", o.msgTimeout,
    ...(o.expectWorkers !== null ? ["--expect-workers", o.expectWorkers] : []),
    ...(o.clusterPid !== null ? ["--cluster-pid", o.clusterPid] : []),
    ...(o.jsonOut ? ["--json-out", o.jsonOut] : []),
    ...(o.quiet ? ["--quiet"] : [])].map(String);
  const child = spawn(bin, args, { stdio: "inherit" });
  const forward = (sig) => child.kill(sig);
  process.on("SIGINT", forward).on("SIGTERM", forward);
  child.on("exit", (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
}

if (process.env.SIO_LOAD_CHILD === "1" && process.send) {
  runChild();
} else {
  const opts = parseOptions(process.argv.slice(2));
  if (opts.client === "rust") runRust(opts);
  else {
    ensureDeps();
    runParent(opts);
  }
}
