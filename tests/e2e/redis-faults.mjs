// Faults of a cluster of several machines joined through a real
// redis-server (started and stopped here): Redis restarted under broadcast
// load, CLIENT KILL of one primary's connection, kill -9 of a primary, a
// subscriber that falls behind, forged messages without the cluster key,
// and a least-privilege ACL user. Figures are printed ("redis: ...").
// Run by host/tests/redis.rs (`node --test e2e/redis-faults.mjs`).
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { call, connect, next, record, sleep } from "./cluster.mjs";
import { keyFile, startPrimary, startRedis, until } from "./redis-server.mjs";
import { metricsUrl, scrape, value } from "./ops.mjs";

let uniq = 0;
const room = (tag) => `${tag}-${process.pid}-${++uniq}`;
const count = (text, re) => (text.match(re) ?? []).length;

/** Waits until every client counts `n` workers. */
async function serverCount(clients, n, ms = 15_000) {
  await until(`server_count ${n}`, async () => {
    for (const c of clients) if ((await call(c, "server_count")) !== n) return false;
    return true;
  }, ms);
}

/**
 * Broadcast load: each sender emits `to(room)` with its index and a
 * sequence number, 5 messages every 10 ms; every receiver records what it
 * got. Returns { sent, sentAt, got, stop() }.
 */
function load(senders, receivers, r) {
  const sent = senders.map(() => 0);
  const sentAt = senders.map(() => []);
  const got = new Map(receivers.map((s) => [s, senders.map(() => new Set())]));
  for (const s of receivers) s.on("m", (p) => got.get(s)[p.s].add(p.seq));
  let stopped = false;
  const loops = senders.map(async (s, i) => {
    while (!stopped) {
      for (let k = 0; k < 5; k++) {
        sentAt[i].push(Date.now());
        s.emit("to", r, "m", { s: i, seq: sent[i]++ });
      }
      await sleep(10);
    }
  });
  return {
    sent, sentAt, got,
    async stop() {
      stopped = true;
      await Promise.all(loops);
    },
  };
}

/** Waits (up to 5 s) until receivers got everything sent, or gave up. */
async function settle(l) {
  for (let t = 0; t < 50; t++) {
    let missing = 0;
    for (const sets of l.got.values()) sets.forEach((set, i) => { missing += l.sent[i] - set.size; });
    if (missing === 0) return;
    await sleep(100);
  }
}

test("redis restarted under broadcast load: loss only during the outage, full delivery after, no request hung", async () => {
  const redis = await startRedis();
  const name = `restart-${process.pid}`;
  const [p1, p2] = await Promise.all([startPrimary(redis.url, { name }), startPrimary(redis.url, { name })]);
  const clients = [];
  try {
    for (let i = 0; i < 2; i++) {
      clients.push(await connect(p1.url, "websocket"));
      clients.push(await connect(p2.url, "websocket"));
    }
    const on1 = clients.filter((_, i) => i % 2 === 0);
    const on2 = clients.filter((_, i) => i % 2 === 1);
    await serverCount(clients, 4);
    const r = room("load");
    for (const c of clients) assert.equal(await call(c, "join", r), true);
    const senders = [on1[0], on2[0]];
    const l = load(senders, clients, r);
    await sleep(1500);

    const tDown = Date.now();
    const restarting = redis.restart(500);
    // Requests issued while Redis is going away end by their timeouts or
    // at once through the NodeDowns, never hang.
    const asker = on1[1];
    asker.on("question", (_q, cb) => cb(asker.id));
    const requests = ["server_emit", "fetch", "ask"].map(async (ev) => {
      const t0 = Date.now();
      const res = ev === "server_emit" ? await call(asker, ev, 1)
        : ev === "fetch" ? await call(asker, ev, r) : await call(asker, ev, r, 2000);
      return { ev, ms: Date.now() - t0, res };
    });
    await restarting;
    const tUp = Date.now();
    await until("both links back", () => count(p1.text(), /redis link up/g) >= 2 && count(p2.text(), /redis link up/g) >= 2, 15_000);
    await serverCount(clients, 4, 20_000);
    const tBack = Date.now();
    await sleep(1500);
    await l.stop();
    await settle(l);
    const done = await Promise.all(requests);
    for (const { ev, ms, res } of done) {
      console.log(`redis: ${ev} during the restart ended in ${ms} ms: ${JSON.stringify(res).slice(0, 120)}`);
      assert.ok(ms < 7000, `${ev} took ${ms} ms`);
    }

    // In flight between a sender and Redis when Redis went away: sent up to
    // MARGIN ms before it stopped (client -> worker -> hub -> Redis).
    const MARGIN = 1000;
    let lostCross = 0;
    let crossDuring = 0;
    let earliestLost = null;
    for (const [recv, sets] of l.got) {
      sets.forEach((set, i) => {
        const local = on1.includes(recv) === on1.includes(senders[i]);
        for (let seq = 0; seq < l.sent[i]; seq++) {
          const at = l.sentAt[i][seq];
          const missed = !set.has(seq);
          if (local) {
            assert.ok(!missed, `local delivery lost seq ${seq} of sender ${i}`);
          } else if (at < tDown - MARGIN || at > tBack) {
            assert.ok(!missed, `cross-machine seq ${seq} of sender ${i} sent ${at < tDown ? "before" : "after"} the outage was lost`);
          } else {
            crossDuring++;
            if (missed) {
              lostCross++;
              earliestLost = Math.min(earliestLost ?? Infinity, at - tDown);
            }
          }
        }
      });
    }
    const total = l.sent.reduce((a, b) => a + b, 0);
    console.log(`redis: restart (down ${tUp - tDown} ms, cluster whole again after ${tBack - tDown} ms): sent ${total} messages; `
      + `cross-machine deliveries in the outage window ${crossDuring}, lost ${lostCross} (earliest sent ${earliestLost} ms from the stop); `
      + `none lost more than ${MARGIN} ms before or after, none lost locally`);
    assert.ok(count(p1.text(), /redis link lost/g) >= 1, "primary 1 saw its link go");
  } finally {
    for (const c of clients) c.disconnect();
    await p1.stop();
    await p2.stop();
    await redis.stop();
  }
});

test("CLIENT KILL of one primary's connection: it reconnects and the cluster is whole again", async () => {
  const redis = await startRedis();
  const name = `kill-${process.pid}`;
  const [p1, p2] = await Promise.all([startPrimary(redis.url, { name }), startPrimary(redis.url, { name })]);
  const a = await connect(p1.url, "websocket");
  const b = await connect(p2.url, "websocket");
  try {
    await serverCount([a, b], 4);
    const id2 = p2.text().match(/redis link up primary=([0-9a-f]{16})/)?.[1];
    assert.ok(id2, "primary 2 logged its id");
    const line = redis.cli("CLIENT", "LIST").split("\n").find((l) => l.includes(`name=sio-cluster-${id2}`));
    assert.ok(line, "primary 2 is named in CLIENT LIST");
    const cid = line.match(/id=(\d+)/)[1];
    const t0 = Date.now();
    assert.equal(redis.cli("CLIENT", "KILL", "ID", cid), "1");
    await p2.waitLog(/redis link lost/);
    await until("primary 2 back", () => count(p2.text(), /redis link up/g) >= 2);
    await serverCount([a, b], 4, 20_000);
    console.log(`redis: CLIENT KILL: primary 2 reconnected and both sides count 4 again after ${Date.now() - t0} ms`);
    const r = room("after-kill");
    await call(a, "join", r);
    const got = next(a, "m");
    b.emit("to", r, "m", "after");
    assert.deepEqual(await got, ["after"]);
    assert.equal(count(p1.text(), /redis link lost/g), 0, "primary 1 kept its link");
  } finally {
    a.disconnect();
    b.disconnect();
    await p1.stop();
    await p2.stop();
    await redis.stop();
  }
});

test("kill -9 of a primary: the others drop its nodes within the primary heartbeat timeout", async () => {
  const redis = await startRedis();
  const name = `k9-${process.pid}`;
  const ps = await Promise.all([0, 1, 2].map(() => startPrimary(redis.url, { name })));
  const cs = [];
  try {
    for (const p of ps) cs.push(await connect(p.url, "websocket"));
    await serverCount(cs, 6);
    const t0 = Date.now();
    await ps[2].kill9();
    const inFlight = (async () => {
      const s0 = Date.now();
      const res = await call(cs[0], "server_emit", 1);
      return { ms: Date.now() - s0, res };
    })();
    const seen = await Promise.all([cs[0], cs[1]].map(async (c) => {
      await until("server_count 4", async () => (await call(c, "server_count")) === 4, 10_000, 20);
      return Date.now() - t0;
    }));
    const { ms, res } = await inFlight;
    console.log(`redis: kill -9 of a primary: the two others counted 4 workers after ${seen.join(" and ")} ms `
      + `(primary heartbeat timeout 3000 ms, adapter timeout 10000 ms); a server_emit in flight ended in ${ms} ms with ${JSON.stringify(res)}`);
    for (const took of seen) assert.ok(took < 4500, `dropped after ${took} ms`);
    assert.ok(ms < 4500, `server_emit ended after ${ms} ms`);
    assert.equal(res.responses.length, 3);
    await ps[0].waitLog(/remote primary timed out/);
  } finally {
    for (const c of cs) c.disconnect();
    for (const p of ps) await p.stop();
    await redis.stop();
  }
});

test("a subscriber that falls behind: Redis drops it, it comes back; a stopped worker does not stall the Redis reader", async () => {
  // A small pubsub output buffer limit so that a stopped primary is dropped quickly.
  const redis = await startRedis();
  const name = `slow-${process.pid}`;
  const [p1, p2] = await Promise.all([startPrimary(redis.url, { name }), startPrimary(redis.url, { name })]);
  const a = await connect(p1.url, "websocket");
  const bs = [await connect(p2.url, "websocket"), await connect(p2.url, "websocket")];
  try {
    await serverCount([a, ...bs], 4);
    const r = room("slow");
    for (const c of [a, ...bs]) await call(c, "join", r);
    const [bw0, bw1] = await Promise.all(bs.map((c) => call(c, "whoami")));
    assert.notEqual(bw0.worker, bw1.worker, "the two clients sit on both workers of primary 2");
    const big = "x".repeat(8 * 1024);

    // 1. One worker of primary 2 stopped: the other still gets everything.
    process.kill(bw1.pid, "SIGSTOP");
    const got = record(bs[0], "big");
    for (let i = 0; i < 200; i++) a.emit("to", r, "big", { i, big });
    await until("200 messages past a stopped worker", () => got.length === 200, 10_000);
    process.kill(bw1.pid, "SIGCONT");
    assert.equal(count(p2.text(), /redis link lost/g), 0, "a stopped worker does not cost primary 2 its link");

    // 2. Primary 2 itself stopped: Redis closes its connection at a small
    // pubsub output buffer limit.
    assert.equal(redis.cli("CONFIG", "SET", "client-output-buffer-limit", "pubsub 256kb 64kb 1"), "OK");
    process.kill(p2.pid, "SIGSTOP");
    for (let i = 0; i < 400; i++) {
      a.emit("to", r, "big", { i, big });
      if (i % 50 === 0) await sleep(20);
    }
    await until("redis drops the slow subscriber", () => /output buffer limits/.test(redis.log.join("")), 10_000);
    process.kill(p2.pid, "SIGCONT");
    await p2.waitLog(/redis link lost/);
    await until("primary 2 back", () => count(p2.text(), /redis link up/g) >= 2);
    await serverCount([a, ...bs], 4, 20_000);
    const after = next(bs[0], "m");
    a.emit("to", r, "m", "caught up");
    assert.deepEqual(await after, ["caught up"]);
    // Primary 1 gets the echo of the same burst: at this tiny limit Redis may
    // drop it too; it must be back as well (it is, or serverCount failed).
    console.log(`redis: slow subscriber dropped by Redis and back; primary 1 lost its link ${count(p1.text(), /redis link lost/g)} time(s) at the same limit`);
  } finally {
    try { process.kill(p2.pid, "SIGCONT"); } catch { /* gone */ }
    a.disconnect();
    for (const b of bs) b.disconnect();
    await p1.stop();
    await p2.stop();
    await redis.stop();
  }
});

/** An envelope as a primary would publish it, without a tag: one Publish record. */
function forgedEnvelope(hub) {
  const nsp = Buffer.from("/");
  const frame = Buffer.from("not an adapter frame");
  const rec = Buffer.alloc(4 + 1 + 8 + 2 + nsp.length + frame.length);
  rec.writeUInt32LE(rec.length - 4, 0);
  rec.writeUInt8(0x02, 4);
  rec.writeBigUInt64LE(0x5eedn, 5);
  rec.writeUInt16LE(nsp.length, 13);
  nsp.copy(rec, 15);
  frame.copy(rec, 15 + nsp.length);
  const head = Buffer.alloc(27);
  head.writeUInt8(1, 0); // version
  head.writeUInt8(1, 1); // frames
  head.writeUInt8(0, 2); // no tag
  head.writeBigUInt64LE(hub, 3);
  head.writeBigUInt64LE(1n, 11);
  head.writeBigUInt64LE(BigInt(Date.now()), 19);
  return Buffer.concat([head, rec]);
}

test("cluster key: forged messages without the key are dropped and counted; a primary with another key stays out", async () => {
  const redis = await startRedis();
  const name = `key-${process.pid}`;
  const key = keyFile(redis.dir, "a-shared-cluster-key-of-32-bytes\n");
  const other = keyFile(redis.dir, "another-key-nobody-else-has-0000", "other.key");
  const [p1, p2] = await Promise.all([
    startPrimary(redis.url, { name, extra: ["--cluster-key", key] }),
    startPrimary(redis.url, { name, extra: ["--cluster-key", key] }),
  ]);
  const a = await connect(p1.url, "websocket");
  const b = await connect(p2.url, "websocket");
  let p3;
  try {
    await serverCount([a, b], 4);
    const r = room("keyed");
    await call(a, "join", r);
    const got = next(a, "m");
    b.emit("to", r, "m", "authentic");
    assert.deepEqual(await got, ["authentic"]);

    const channel = `sio-cluster:{${name}}:all`;
    const pub = spawnSync("redis-cli", ["-s", redis.sock, "-x", "PUBLISH", channel], { input: forgedEnvelope(0xf0f0n) });
    assert.equal(pub.stdout.toString().trim(), "2", "both primaries received the forged message");
    await p1.waitLog(/envelope refused.*forged=1|forged=1.*envelope refused/);
    await p2.waitLog(/forged=1/);

    p3 = await startPrimary(redis.url, { name, workers: 1, extra: ["--cluster-key", other] });
    await p1.waitLog(/wrong authentication tag/);
    await sleep(1500);
    assert.equal(await call(a, "server_count"), 4, "the primary with another key is not counted");
    console.log("redis: forged envelope and a primary with another key refused and counted");
  } finally {
    a.disconnect();
    b.disconnect();
    await p3?.stop();
    await p1.stop();
    await p2.stop();
    await redis.stop();
  }
});

test("least-privilege ACL user: the cluster works, other channels and keys are refused", async () => {
  const redis = await startRedis({ tcp: true });
  const name = `acl-${process.pid}`;
  // The ACL of the README (section "Several machines"), for this cluster name.
  redis.cli("ACL", "SETUSER", "sio", "on", ">s3cret", "resetchannels", `&sio-cluster:{${name}}:*`,
    "-@all", "+publish", "+subscribe", "+ping", "+hello", "+client|setname");
  assert.equal(redis.cli("ACL", "GETUSER", "sio").includes("on"), true, "the ACL user exists");
  const url = `redis://sio:s3cret@127.0.0.1:${redis.port}`;
  const [p1, p2] = await Promise.all([startPrimary(url, { name }), startPrimary(url, { name })]);
  const a = await connect(p1.url, "websocket");
  const b = await connect(p2.url, "websocket");
  try {
    await serverCount([a, b], 4);
    const r = room("acl");
    await call(a, "join", r);
    const got = next(a, "m");
    b.emit("to", r, "m", "through the acl");
    assert.deepEqual(await got, ["through the acl"]);
    const as = (...args) => spawnSync("redis-cli", ["-p", String(redis.port), "--user", "sio", "--pass", "s3cret", "--no-auth-warning", ...args], { encoding: "utf8" }).stdout.trim();
    assert.match(as("PUBLISH", "other-channel", "x"), /NOPERM/);
    assert.match(as("GET", "k"), /NOPERM/);
    assert.match(as("PUBLISH", `sio-cluster:{other}:all`, "x"), /NOPERM/);
    assert.equal(as("PUBLISH", `sio-cluster:{${name}}:all`, "x"), "2");
    // A wrong password: the primary keeps retrying and says why.
    const bad = await startPrimary(`redis://sio:badpass-9f3@127.0.0.1:${redis.port}`, { name, workers: 1, waitLink: false });
    try {
      await bad.waitLog(/cannot connect to redis/);
      assert.doesNotMatch(bad.text(), /badpass-9f3/, "the password is not logged");
    } finally {
      await bad.stop();
    }
  } finally {
    a.disconnect();
    b.disconnect();
    await p1.stop();
    await p2.stop();
    await redis.stop();
  }
});

test("rediss:// with a private CA: the primaries talk over TLS, a wrong CA is refused", async () => {
  const { mkdtempSync, rmSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const { join } = await import("node:path");
  const dir = mkdtempSync(join(tmpdir(), "sio-tls-"));
  const ssl = (...args) => {
    const r = spawnSync("openssl", args, { cwd: dir, encoding: "utf8" });
    if (r.status !== 0) throw new Error(`openssl ${args.join(" ")}: ${r.stderr}`);
  };
  const ca = (name) => ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
    "-subj", `/CN=${name}`, "-keyout", `${name}.key`, "-out", `${name}.pem`);
  ca("ca");
  ca("otherca");
  ssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out", "server.csr");
  const { writeFileSync } = await import("node:fs");
  writeFileSync(join(dir, "ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
  ssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
    "-days", "2", "-extfile", "ext.cnf", "-out", "server.pem");
  const { freePort } = await import("./redis-server.mjs");
  const tlsPort = await freePort();
  const redis = await startRedis({
    conf: ["--tls-port", String(tlsPort), "--tls-cert-file", join(dir, "server.pem"),
      "--tls-key-file", join(dir, "server.key"), "--tls-ca-cert-file", join(dir, "ca.pem"),
      "--tls-auth-clients", "no"],
  });
  const name = `tls-${process.pid}`;
  const url = `rediss://127.0.0.1:${tlsPort}`;
  const extra = ["--redis-tls-ca", join(dir, "ca.pem")];
  const [p1, p2] = await Promise.all([startPrimary(url, { name, extra }), startPrimary(url, { name, extra })]);
  const a = await connect(p1.url, "websocket");
  const b = await connect(p2.url, "websocket");
  try {
    await serverCount([a, b], 4);
    const r = room("tls");
    await call(a, "join", r);
    const got = next(a, "m");
    b.emit("to", r, "m", "over tls");
    assert.deepEqual(await got, ["over tls"]);
    const wrong = await startPrimary(url, { name, workers: 1, waitLink: false, extra: ["--redis-tls-ca", join(dir, "otherca.pem")] });
    try {
      await wrong.waitLog(/cannot connect to redis/);
    } finally {
      await wrong.stop();
    }
  } finally {
    a.disconnect();
    b.disconnect();
    await p1.stop();
    await p2.stop();
    await redis.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

/**
 * Two primaries with `extra` options on one Redis, clients a and a2 on
 * primary 1 and b on primary 2, all three in a new room `r`.
 */
async function twoMachinesInARoom(tag, extra) {
  const redis = await startRedis();
  const name = `${tag}-${process.pid}`;
  const [p1, p2] = await Promise.all([startPrimary(redis.url, { name, extra }), startPrimary(redis.url, { name, extra })]);
  const a = await connect(p1.url, "websocket");
  const a2 = await connect(p1.url, "websocket");
  const b = await connect(p2.url, "websocket");
  const stop = async () => {
    for (const c of [a, a2, b]) c.disconnect();
    await p1.stop();
    await p2.stop();
    await redis.stop();
  };
  try {
    await serverCount([a, b], 4);
    const r = room(tag);
    for (const c of [a, a2, b]) assert.equal(await call(c, "join", r), true);
    return { redis, p1, p2, a, a2, b, r, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

test("a frame over --redis-max-frame stays on its machine, is counted, and the link stays up; the bridge's metrics", async () => {
  const m = await twoMachinesInARoom("big", ["--redis-max-frame", "65536", "--metrics", "127.0.0.1:0"]);
  const { p1, p2, a, a2, b, r } = m;
  try {
    const onA2 = record(a2, "m");
    const onB = record(b, "m");
    const big = "x".repeat(100_000);
    a.emit("to", r, "m", big);
    await until("the big frame on primary 1's other client", () => onA2.length === 1);
    assert.equal(onA2[0][0].length, big.length);
    await p1.waitLog(/frame larger than --redis-max-frame not sent to other primaries/);
    // The next small message still crosses: the Redis link was not killed.
    a.emit("to", r, "m", "small");
    await until("the small frame on primary 2", () => onB.length >= 1);
    assert.deepEqual(onB.map((m) => m[0]), ["small"], "the big frame never reached primary 2");
    const m1 = await scrape(metricsUrl(p1));
    assert.equal(value(m1, "sio_redis_oversize_total"), 1);
    assert.equal(value(m1, "sio_redis_link_up"), 1);
    assert.equal(value(m1, "sio_redis_peers"), 1);
    assert.equal(value(m1, "sio_redis_peer_nodes"), 4, "primary 2's two workers, two namespaces each");
    assert.equal(value(m1, "sio_redis_link_losses_total"), 0);
    assert.ok(value(m1, "sio_redis_records_out_total") > 0);
    const m2 = await scrape(metricsUrl(p2));
    assert.equal(value(m2, "sio_redis_oversize_total"), 0);
    assert.ok(value(m2, "sio_redis_records_in_total") > 0);
    assert.equal(value(m2, "sio_redis_forged_total"), 0);
  } finally {
    await m.stop();
  }
});

test("pipelines in flight together keep one machine's frames in order (--redis-pipelines 8, Redis paused under a burst)", async () => {
  const m = await twoMachinesInARoom("order", ["--redis-pipelines", "8", "--metrics", "127.0.0.1:0"]);
  const { redis, p1, a, b, r } = m;
  try {
    const onB = record(b, "m");
    const before = value(await scrape(metricsUrl(p1)), "sio_redis_overlapped_total");
    // While Redis is stopped no PUBLISH is answered: every wake-up of the
    // bridge sends one more pipeline, up to 8, each with what queued since.
    process.kill(redis.pid, "SIGSTOP");
    const n = 3000;
    for (let i = 0; i < n; i++) {
      a.emit("to", r, "m", { i });
      if (i % 100 === 99) await sleep(20);
    }
    await sleep(100);
    process.kill(redis.pid, "SIGCONT");
    await until("every message on primary 2", () => onB.length === n, 15_000).catch((e) => { throw new Error(`${e.message}: ${onB.length} of ${n}`); });
    const got = onB.map((x) => x[0].i);
    const first = got.findIndex((v, k) => v !== k);
    assert.equal(first, -1, `out of order at ${first}: ${got.slice(Math.max(0, first - 2), first + 3)}`);
    const overlapped = value(await scrape(metricsUrl(p1)), "sio_redis_overlapped_total") - before;
    console.log(`redis order: ${n} frames in order across machines, ${overlapped} pipelines sent while another was in flight`);
    assert.ok(overlapped >= 2, `pipelines overlapped (${overlapped})`);
  } finally {
    try { process.kill(redis.pid, "SIGCONT"); } catch {}
    await m.stop();
  }
});

test("a link lost with pipelines in flight gives their bytes back to the queue bound (sio_redis_queued_bytes back to 0, frames cross again)", async () => {
  const m = await twoMachinesInARoom("lostflight", ["--redis-pipelines", "64", "--redis-max-frame", "65536", "--redis-max-queued-bytes", "131072", "--metrics", "127.0.0.1:0"]);
  const { redis, p1, a, b, r } = m;
  try {
    // Redis stopped: the pipelines sent meanwhile hold the queue's bytes.
    process.kill(redis.pid, "SIGSTOP");
    const payload = "f".repeat(10_000);
    for (let i = 0; i < 40; i++) {
      a.emit("to", r, "m", { i, payload });
      await sleep(5);
    }
    await sleep(300);
    const held = value(await scrape(metricsUrl(p1)), "sio_redis_queued_bytes");
    // Killed while stopped: the connection closes with them in flight.
    process.kill(redis.pid, "SIGKILL");
    await until("primary 1 counts its link lost", async () => value(await scrape(metricsUrl(p1)), "sio_redis_link_up") === 0, 10_000);
    await redis.restart();
    await until("primary 1's link back up", async () => value(await scrape(metricsUrl(p1)), "sio_redis_link_up") === 1, 15_000);
    await until("nothing left counted against the queue bound", async () => value(await scrape(metricsUrl(p1)), "sio_redis_queued_bytes") === 0, 5_000)
      .catch(async (e) => { throw new Error(`${e.message}: ${value(await scrape(metricsUrl(p1)), "sio_redis_queued_bytes")} bytes (${held} held before the kill)`); });
    console.log(`redis lost in flight: ${held} bytes held by pipelines and the queue when Redis was killed, 0 after the link came back`);
    assert.ok(held >= 100_000, `the burst filled the queue first (${held} bytes)`);
    const onB = record(b, "m");
    await until("a 10 KB frame crosses again", async () => {
      a.emit("to", r, "m", { after: true, payload });
      await sleep(200);
      return onB.some((x) => x[0].after);
    }, 15_000);
  } finally {
    try { process.kill(redis.pid, "SIGCONT"); } catch {}
    await m.stop();
  }
});

test("the queue towards Redis is bounded: with Redis stopped, frames past --redis-max-queued-bytes are dropped and counted, local delivery goes on", async () => {
  const m = await twoMachinesInARoom("queue", ["--redis-max-frame", "65536", "--redis-max-queued-bytes", "131072", "--metrics", "127.0.0.1:0"]);
  const { redis, p1, a, a2, b, r } = m;
  try {
    const onA2 = record(a2, "m");
    // Redis stopped (not gone: its sockets stay open, writes stall once the
    // kernel buffers are full), shorter than the 3 s primary heartbeat
    // timeout, so that the link is not declared lost meanwhile.
    process.kill(redis.pid, "SIGSTOP");
    // 4 MB in all: under the 16 MiB slow-consumer cap of the receiving
    // client, over what the kernel buffers towards a stopped Redis absorb.
    const n = 400;
    const payload = "q".repeat(10_000);
    const t0 = Date.now();
    for (let i = 0; i < n; i++) a.emit("to", r, "m", { i, payload });
    await until("every message on primary 1's other client", () => onA2.length === n, 10_000).catch((e) => { throw new Error(`${e.message}: ${onA2.length} of ${n}`); });
    const localMs = Date.now() - t0;
    const m1 = await scrape(metricsUrl(p1));
    const dropped = value(m1, "sio_redis_queue_full_total");
    await sleep(Math.max(0, 1500 - (Date.now() - t0)));
    process.kill(redis.pid, "SIGCONT");
    console.log(`redis queue: ${n} frames of 10 KB with Redis stopped: local delivery of all in ${localMs} ms, ${dropped} dropped at the 128 KiB queue`);
    assert.ok(dropped > 0, "frames past the queue bound are counted");
    assert.deepEqual(onA2.map((m) => m[0].i), [...Array(n).keys()], "local clients got every message, in order");
    await p1.waitLog(/queue|dropped/i);
    // Once Redis runs again, the link carries new frames.
    const onB = record(b, "m");
    await until("a new frame crosses after SIGCONT", async () => {
      a.emit("to", r, "m", "after");
      await sleep(200);
      return onB.some((m) => m[0] === "after");
    }, 15_000);
    const after = await scrape(metricsUrl(p1));
    assert.equal(value(after, "sio_redis_link_up"), 1);
  } finally {
    try { process.kill(redis.pid, "SIGCONT"); } catch {}
    await m.stop();
  }
});
