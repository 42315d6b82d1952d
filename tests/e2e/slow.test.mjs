// Slow consumers (issue 15, item 5): WebSocket clients that stop reading,
// in a room that receives a sustained broadcast, next to clients that read.
// The readers must get every message; the stuck clients must be cut by the
// per-client cap in bytes (host/src/sioxide/slow.rs, host/node/src/slow.js)
// and counted; the workers' RSS must stay under a stated bound. A second
// case cuts clients that make no progress (the time limit).
//
// The stuck clients speak WebSocket by hand (node:net) so that they can
// stop reading at the TCP level: after joining the room they pause their
// socket and never read again, as a frozen client does.
//
// Environment: SIO_E2E_SLOW_MS and SIO_E2E_SLOW_MAX_MS (least and most
// broadcast time of the first case, default 4000 and 90000), SIO_E2E_SLOW_RATE (messages per second, default 50),
// SIO_E2E_SLOW_KB (payload KiB, default 10), SIO_E2E_SLOW_CAP (below).
import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { call, connect, KINDS, sleep, startCluster } from "./cluster.mjs";

const SEND_MS = Number(process.env.SIO_E2E_SLOW_MS ?? 4000);
const MAX_MS = Number(process.env.SIO_E2E_SLOW_MAX_MS ?? 90000);
const RATE = Number(process.env.SIO_E2E_SLOW_RATE ?? 50);
const KB = Number(process.env.SIO_E2E_SLOW_KB ?? 10);
// The per-client cap of the first case (4 MiB: at 0.5 MB/s per client a reader
// may fall 8 s behind before it counts as slow; the readers share one
// Node process); SIO_E2E_SLOW_CAP=0 turns the policy off (the control
// run: the test then fails, and prints the RSS growth).
const CAP = Number(process.env.SIO_E2E_SLOW_CAP ?? 4 << 20);
// RSS growth allowed per worker over its RSS before the broadcast: packets
// are shared between the clients they are queued for, so the bound is the
// cap plus per-connection write buffers (128 KiB each in socketioxide's
// tungstenite) plus the readers' working set; without the policy the
// stuck clients' backlog grows by RATE * KB per second for the whole run.
const RSS_BOUND_MB = 96;

/** VmRSS of a process, in MiB. */
function rssMb(pid) {
  const m = readFileSync(`/proc/${pid}/status`, "utf8").match(/VmRSS:\s+(\d+) kB/);
  return m ? Number(m[1]) / 1024 : NaN;
}

/** A masked client text frame. */
function frame(text) {
  const payload = Buffer.from(text);
  const mask = randomBytes(4);
  const len = payload.length;
  const head = len < 126 ? Buffer.from([0x81, 0x80 | len]) : Buffer.from([0x81, 0x80 | 126, len >> 8, len & 0xff]);
  const body = Buffer.alloc(len);
  for (let i = 0; i < len; i++) body[i] = payload[i] ^ mask[i % 4];
  return Buffer.concat([head, mask, body]);
}

/**
 * A WebSocket Socket.IO client over raw TCP: connects to `/`, joins `room`,
 * then stops reading. Resolves with `{ sock, closed }` where `closed`
 * resolves once the server has closed the connection (seen after resume()).
 */
function stuckClient(url, room) {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const sock = net.connect(Number(port), hostname);
    const timer = setTimeout(() => reject(new Error("stuck client: no join ack in 10 s")), 10_000);
    let buf = Buffer.alloc(0);
    let upgraded = false;
    const closed = new Promise((r) => sock.once("close", r));
    sock.on("error", () => {});
    sock.on("connect", () => {
      sock.write(
        `GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: ${hostname}:${port}\r\n` +
          `Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${randomBytes(16).toString("base64")}\r\n` +
          "Sec-WebSocket-Version: 13\r\n\r\n",
      );
    });
    const onData = (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      if (!upgraded) {
        const end = buf.indexOf("\r\n\r\n");
        if (end < 0) return;
        if (!buf.subarray(0, 12).toString().includes("101")) return reject(new Error(`no upgrade: ${buf.subarray(0, end)}`));
        buf = buf.subarray(end + 4);
        upgraded = true;
      }
      for (;;) {
        if (buf.length < 2) return;
        let len = buf[1] & 0x7f;
        let off = 2;
        if (len === 126) {
          if (buf.length < 4) return;
          len = buf.readUInt16BE(2);
          off = 4;
        } else if (len === 127) {
          if (buf.length < 10) return;
          len = Number(buf.readBigUInt64BE(2));
          off = 10;
        }
        if (buf.length < off + len) return;
        const text = buf.subarray(off, off + len).toString();
        buf = buf.subarray(off + len);
        if (text.startsWith("0{")) sock.write(frame("40"));
        else if (text.startsWith("40")) sock.write(frame(`421["join",${JSON.stringify(room)}]`));
        else if (text.startsWith("431")) {
          // Joined: from now on, never read again.
          clearTimeout(timer);
          sock.off("data", onData);
          sock.pause();
          resolve({ sock, closed });
          return;
        } else if (text === "2") sock.write(frame("3"));
      }
    };
    sock.on("data", onData);
  });
}

/** Connects clients until one lands on each worker; returns them by worker. */
async function onePerWorker(url, workers) {
  const by = new Map();
  for (let i = 0; i < workers * 4 && by.size < workers; i++) {
    const s = await connect(url, "websocket");
    const me = await call(s, "whoami");
    if (by.has(me.worker)) s.disconnect();
    else by.set(me.worker, Object.assign(s, me));
  }
  assert.equal(by.size, workers, "a client on every worker");
  return [...by.values()];
}

async function slowStats(probes) {
  // Without the policy (the control run) the workers do not answer.
  const none = { dropped_bytes: 0, dropped_stalled: 0 };
  const all = await Promise.all(probes.map((p) => (CAP === 0 ? none : call(p, "slow_stats"))));
  return all.reduce(
    (a, s) => ({ dropped_bytes: a.dropped_bytes + s.dropped_bytes, dropped_stalled: a.dropped_stalled + s.dropped_stalled }),
    { dropped_bytes: 0, dropped_stalled: 0 },
  );
}

const kinds = KINDS.filter((k) => k !== "mixed");

for (const kind of kinds) test(`50 stuck clients next to 50 readers: readers get everything, stuck ones are cut (byte cap, else time limit) (${kind})`, async () => {
  process.env.SIO_CLIENT_MAX_BYTES = String(CAP);
  // A stuck client whose kernel buffers were large enough to keep it under
  // the cap is cut by the time limit (counted), before Engine.IO's own
  // heartbeat (45 s) would close it uncounted.
  process.env.SIO_CLIENT_STALL_MS = "10000";
  const cluster = await startCluster(2, [], kind);
  delete process.env.SIO_CLIENT_MAX_BYTES;
  delete process.env.SIO_CLIENT_STALL_MS;
  const readers = [];
  const stuck = [];
  try {
    const probes = await onePerWorker(cluster.url, 2);
    for (let i = 0; i < 50; i++) {
      const s = await connect(cluster.url, "websocket");
      assert.equal(await call(s, "join", "busy"), true);
      s.got = new Set();
      s.on("m", (p) => s.got.add(p.seq));
      readers.push(s);
    }
    for (let i = 0; i < 50; i++) stuck.push(await stuckClient(cluster.url, "busy"));
    const before = probes.map((p) => rssMb(p.pid));
    const peak = [...before];
    const sampler = setInterval(() => probes.forEach((p, i) => (peak[i] = Math.max(peak[i], rssMb(p.pid)))), 200);
    const pad = "x".repeat(KB * 1024);
    const sender = probes[0];
    let seq = 0;
    const t0 = Date.now();
    // Broadcast until every stuck client is cut (the kernel's socket buffers
    // take a few MiB per client first, more when the primary proxies), at
    // least SEND_MS, at most MAX_MS.
    let cut = { dropped_bytes: 0, dropped_stalled: 0 };
    let checked = t0;
    while (Date.now() - t0 < MAX_MS && (Date.now() - t0 < SEND_MS || cut.dropped_bytes + cut.dropped_stalled < 50)) {
      // RATE messages per second, in 10 ms steps.
      const due = Math.floor(((Date.now() - t0) * RATE) / 1000);
      while (seq < due) sender.emit("to", "busy", "m", { seq: seq++, pad });
      await sleep(10);
      if (Date.now() - checked > 1000) {
        checked = Date.now();
        cut = await slowStats(probes);
      }
    }
    let missing = Infinity;
    for (let t = 0; t < 200 && missing > 0; t++) {
      missing = readers.reduce((a, r) => a + (seq - r.got.size), 0);
      if (missing > 0) await sleep(100);
    }
    // The stuck clients: every one cut (counted by the workers).
    let stats = await slowStats(probes);
    for (let t = 0; t < 100 && stats.dropped_bytes + stats.dropped_stalled < 50; t++) {
      await sleep(100);
      stats = await slowStats(probes);
    }
    clearInterval(sampler);
    const growth = peak.map((p, i) => p - before[i]);
    console.log(
      `slow (${kind}): ${((Date.now() - t0) / 1000).toFixed(1)} s, ${seq} messages of ${KB} KiB at ${RATE}/s to 100 clients; readers missing ${missing}; ` +
        `stuck cut: ${stats.dropped_bytes} for bytes, ${stats.dropped_stalled} stalled; ` +
        `worker RSS before ${before.map((m) => m.toFixed(1)).join("/")} MiB, peak ${peak.map((m) => m.toFixed(1)).join("/")} MiB, ` +
        `growth ${growth.map((m) => m.toFixed(1)).join("/")} MiB (bound ${RSS_BOUND_MB})`,
    );
    assert.equal(missing, 0, "every reader got every message");
    assert.equal(stats.dropped_bytes + stats.dropped_stalled, 50, "every stuck client cut and counted");
    assert.ok(stats.dropped_bytes > 0, "the byte cap cut stuck clients");
    // Their connections are closed: reading again finds the end.
    for (const c of stuck) c.sock.resume();
    await Promise.race([
      Promise.all(stuck.map((c) => c.closed)),
      sleep(15_000).then(() => assert.fail("a stuck client's connection was not closed")),
    ]);
    for (const g of growth) assert.ok(g < RSS_BOUND_MB, `worker RSS grew ${g.toFixed(1)} MiB (bound ${RSS_BOUND_MB})`);
    // The readers are still served.
    assert.equal(await call(readers[0], "join", "after"), true);
  } catch (e) {
    console.log(`cluster log (end):\n${cluster.log.join("").slice(-6000)}`);
    throw e;
  } finally {
    for (const s of readers) s.disconnect();
    for (const c of stuck) c.sock.destroy();
    await cluster.stop();
  }
});

for (const kind of kinds) test(`a client that makes no progress is cut after the time limit (${kind})`, async () => {
  process.env.SIO_CLIENT_STALL_MS = "1500";
  const cluster = await startCluster(1, [], kind);
  delete process.env.SIO_CLIENT_STALL_MS;
  const stuck = [];
  let reader;
  try {
    const [probe] = await onePerWorker(cluster.url, 1);
    reader = await connect(cluster.url, "websocket");
    assert.equal(await call(reader, "join", "slow"), true);
    let got = 0;
    reader.on("m", () => got++);
    for (let i = 0; i < 5; i++) stuck.push(await stuckClient(cluster.url, "slow"));
    // Enough to fill the kernel's buffers (a few MiB), far under the cap.
    const pad = "y".repeat(64 * 1024);
    let sent = 0;
    const t0 = Date.now();
    let stats = { dropped_stalled: 0 };
    while (Date.now() - t0 < 20_000 && stats.dropped_stalled < 5) {
      for (let k = 0; k < 4; k++, sent++) probe.emit("to", "slow", "m", { pad });
      await sleep(50);
      if (sent % 40 === 0) stats = await slowStats([probe]);
    }
    for (let t = 0; t < 50 && got < sent; t++) await sleep(100);
    console.log(`stall (${kind}): sent ${sent} × 64 KiB; reader got ${got}; cut ${stats.dropped_stalled} stalled, ${stats.dropped_bytes} for bytes after ${Date.now() - t0} ms`);
    assert.equal(stats.dropped_stalled, 5, "every stuck client cut for making no progress");
    assert.equal(stats.dropped_bytes, 0);
    assert.equal(got, sent, "the reader got every message");
  } finally {
    reader?.disconnect();
    for (const c of stuck) c.sock.destroy();
    await cluster.stop();
  }
});
