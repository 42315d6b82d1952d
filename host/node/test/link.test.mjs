// The hub link codec against the shared vectors (test/vectors/link.json,
// derived from host/src/link/ipc.rs's encoding; the Rust side reads the same
// file), plus the stream reader's limits.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import {
  CodecError, decodeFromHub, decodeToHub, encodeFrame, encodeHello, encodeNodeDown, encodeRefused,
  encodeRelay, encodeSession, encodeWelcome, encodeWorkerStats, FrameReader, workerEnv,
} from "../src/link.js";

const { vectors, default_max_frame: DEFAULT } = JSON.parse(readFileSync(new URL("./vectors/link.json", import.meta.url), "utf8"));

/** Decoded message in the vectors' notation (u64 as decimal, bytes as hex). */
function plain(msg) {
  const out = {};
  for (const [k, v] of Object.entries(msg)) {
    out[k] = typeof v === "bigint" ? v.toString() : Buffer.isBuffer(v) || v instanceof Uint8Array ? Buffer.from(v).toString("hex") : v;
  }
  return out;
}

/** Reads every frame of `bytes` as a stream that then ends (EOF). */
function readStream(bytes, max, chunk) {
  const r = new FrameReader(max);
  const frames = [];
  for (let i = 0; i < bytes.length; i += chunk) {
    r.push(bytes.subarray(i, i + chunk));
    for (let p = r.next(); p !== null; p = r.next()) frames.push(p);
  }
  if (r.pending > 0) throw new CodecError("UnexpectedEof", "stream ended inside a frame");
  return frames;
}

function encode(msg) {
  switch (msg.kind) {
    case "hello": return encodeHello(msg);
    case "publish": return encodeRelay(BigInt(msg.sender), undefined, msg.nsp, Buffer.from(msg.frame, "hex"));
    case "send": return encodeRelay(BigInt(msg.sender), BigInt(msg.target), msg.nsp, Buffer.from(msg.frame, "hex"));
    case "session-opened": return encodeSession(true, msg.sid);
    case "session-closed": return encodeSession(false, msg.sid);
    case "worker-stats": return encodeWorkerStats(null, { version: msg.version, values: msg.values.map(BigInt) });
    case "welcome": return encodeWelcome(msg);
    case "refused": return encodeRefused(msg.reason);
    case "frame": return encodeFrame(BigInt(msg.from), msg.nsp, Buffer.from(msg.frame, "hex"));
    case "node-down": return encodeNodeDown(BigInt(msg.uid), msg.nsp);
    default: throw new Error(msg.kind);
  }
}

test("the vector file covers valid, truncated, oversize and garbage frames", () => {
  const errors = new Set(vectors.filter((v) => v.error).map((v) => v.error));
  for (const e of ["TooLarge", "Empty", "UnknownKind", "Truncated", "Trailing", "BadUtf8", "UnexpectedEof"]) {
    assert.ok(errors.has(e), `a vector for ${e}`);
  }
  assert.ok(vectors.filter((v) => v.decoded).length >= 10);
});

for (const v of vectors) {
  test(`vector: ${v.direction} ${v.name}`, () => {
    const bytes = Buffer.from(v.hex, "hex");
    const decode = v.direction === "to-hub" ? decodeToHub : decodeFromHub;
    const max = v.max_frame ?? DEFAULT;
    for (const chunk of [1, 3, bytes.length || 1]) {
      if (v.decoded) {
        const frames = readStream(bytes, max, chunk);
        assert.equal(frames.length, 1);
        assert.deepEqual(plain(decode(frames[0])), v.decoded);
      } else {
        assert.throws(() => {
          for (const f of readStream(bytes, max, chunk)) decode(f);
        }, (e) => e instanceof CodecError && e.code === v.error, `${v.name}: ${v.error}`);
      }
    }
    // The encoder writes exactly the vector's bytes.
    if (v.decoded) assert.equal(encode(v.decoded).toString("hex"), v.hex);
  });
}

test("oversize length prefix is refused before the payload arrives", () => {
  const r = new FrameReader(1024);
  const b = Buffer.alloc(4);
  b.writeUInt32LE(1025);
  r.push(b);
  assert.throws(() => r.next(), (e) => e.code === "TooLarge");
});

test("many frames in one chunk, and frames split over chunks", () => {
  const frames = [encodeFrame(1n, "/", Buffer.from("a")), encodeNodeDown(2n, "/x"), encodeFrame(3n, "/", Buffer.alloc(70_000, 7))];
  const all = Buffer.concat(frames);
  for (const chunk of [1, 7, 4096, all.length]) {
    const got = readStream(all, 1 << 20, chunk).map((p) => decodeFromHub(p));
    assert.deepEqual(got.map((m) => m.kind), ["frame", "node-down", "frame"]);
    assert.equal(got[2].frame.length, 70_000);
  }
});

test("string fields longer than u16 are refused by the encoder", () => {
  assert.throws(() => encodeSession(true, "x".repeat(70_000)), (e) => e.code === "StringTooLong");
});

test("worker environment: fd and path forms, token file, refusals", () => {
  const base = { SIO_CLUSTER_IPC: "fd:3", SIO_CLUSTER_LISTEN_FD: "4", SIO_CLUSTER_WORKER: "1" };
  const e = workerEnv(base);
  assert.deepEqual(e.ipc, { fd: 3 });
  assert.equal(e.listenFd, 4);
  assert.equal(e.index, 1);
  assert.equal(e.heartbeatIntervalMs, 5000);
  assert.equal(e.maxFrame, DEFAULT);
  assert.throws(() => workerEnv({}), /SIO_CLUSTER_IPC is not set/);
  assert.throws(() => workerEnv({ SIO_CLUSTER_IPC: "/tmp/x.sock" }), /SIO_CLUSTER_TOKEN/);
  assert.deepEqual(workerEnv({ SIO_CLUSTER_IPC: "/tmp/x.sock", SIO_CLUSTER_TOKEN: " t \n" }).token, "t");
  assert.throws(() => workerEnv({ ...base, SIO_CLUSTER_HANDOFF: "fd:5" }), /--handoff-websocket/);
  assert.throws(() => workerEnv({ ...base, SIO_CLUSTER_MAX_QUEUED: "0" }), /SIO_CLUSTER_MAX_QUEUED/);
  assert.throws(() => workerEnv({ ...base, SIO_CLUSTER_HEARTBEAT_INTERVAL: "fast" }), /SIO_CLUSTER_HEARTBEAT_INTERVAL/);
  assert.throws(() => workerEnv({ SIO_CLUSTER_IPC: "fd:x" }), /SIO_CLUSTER_IPC/);
});
