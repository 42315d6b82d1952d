// The hub link between a worker and the sio-cluster-host primary: the frame
// codec of `host/src/link/ipc.rs` and the connection (fd 3 or a socket path).
//
// Every frame is `u32 LE length | kind u8 | fields`; the length counts the
// kind byte and the fields. Integers are little endian, strings are
// `u16 LE length | UTF-8`, an adapter frame is the rest of the frame.
//
//   0x01 Hello          worker -> hub  version u16, worker u32, pid u32, token str
//   0x02 Publish        worker -> hub  sender u64, nsp str, frame..
//   0x03 Send           worker -> hub  sender u64, target u64, nsp str, frame..
//   0x04 SessionOpened  worker -> hub  sid str
//   0x05 SessionClosed  worker -> hub  sid str
//   0x06 WorkerStats    worker -> hub  version u16, count u16, count x u64
//   0x81 Welcome        hub -> worker  version u16, worker u32
//   0x82 Refused        hub -> worker  reason str
//   0x83 Frame          hub -> worker  from u64, nsp str, frame..
//   0x84 NodeDown       hub -> worker  uid u64, nsp str
//
// WorkerStats (the primary's metrics) carries WORKER_STATS_FIELDS in order;
// it is additive (a later version appends fields, readers ignore the ones
// they do not know) and sent only when SIO_CLUSTER_STATS_INTERVAL is set
// (`run --metrics`), so a primary that predates it never receives it.
import net from "node:net";
import { readFileSync } from "node:fs";

export const PROTOCOL_VERSION = 1;
/** Default largest frame payload (kind byte + fields): 64 MiB. */
export const DEFAULT_MAX_FRAME = 64 * 1024 * 1024;
/** Default bytes the outgoing queue may hold: 64 MiB. */
export const DEFAULT_MAX_QUEUED = 64 * 1024 * 1024;
/** Longest string field in bytes. */
export const MAX_STR = 0xffff;
/** Exit code of a worker whose hub link closed (as `worker.rs`). */
export const LINK_CLOSED_EXIT_CODE = 75;
/** Version of the WorkerStats fields this package writes (`ipc::WORKER_STATS_VERSION`). */
export const WORKER_STATS_VERSION = 2;

/** Most values a WorkerStats frame may carry (`ipc::MAX_STATS_FIELDS`). */
export const MAX_STATS_FIELDS = 256;
/** The WorkerStats fields in wire order (`ipc::WorkerStats`). */
export const WORKER_STATS_FIELDS = Object.freeze([
  "namespaces", "nodes", "sockets", "rooms", "pendingRequests",
  "framesIn", "framesRejected", "localDrops", "instanceRestarts",
  // version 2
  "linkErrors",
]);

export const Kind = Object.freeze({
  HELLO: 0x01,
  PUBLISH: 0x02,
  SEND: 0x03,
  SESSION_OPENED: 0x04,
  SESSION_CLOSED: 0x05,
  WORKER_STATS: 0x06,
  WELCOME: 0x81,
  REFUSED: 0x82,
  FRAME: 0x83,
  NODE_DOWN: 0x84,
});

/**
 * A malformed frame. `code` is the name of the `ipc::CodecError` variant
 * (`TooLarge`, `Empty`, `UnknownKind`, `Truncated`, `Trailing`, `BadUtf8`,
 * `StringTooLong`), shared with the Rust side through the test vectors.
 */
export class CodecError extends Error {
  constructor(code, message) {
    super(message);
    this.name = "CodecError";
    this.code = code;
  }
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

function strBytes(s) {
  const b = Buffer.from(s, "utf8");
  if (b.length > MAX_STR) {
    throw new CodecError("StringTooLong", `string field of ${b.length} bytes is too long`);
  }
  return b;
}

function frameOf(kind, size, fill) {
  const buf = Buffer.allocUnsafe(5 + size);
  buf.writeUInt32LE(1 + size, 0);
  buf[4] = kind;
  fill(buf, 5);
  return buf;
}

// ---- worker -> hub ----

export function encodeHello({ version = PROTOCOL_VERSION, worker, pid, token = "" }) {
  const t = strBytes(token);
  return frameOf(Kind.HELLO, 12 + t.length, (b, at) => {
    b.writeUInt16LE(version, at);
    b.writeUInt32LE(worker >>> 0, at + 2);
    b.writeUInt32LE(pid >>> 0, at + 6);
    b.writeUInt16LE(t.length, at + 10);
    t.copy(b, at + 12);
  });
}

/** Publish (`target` undefined) or Send of an adapter frame. */
export function encodeRelay(sender, target, nsp, frame) {
  const n = strBytes(nsp);
  const fixed = target === undefined ? 8 : 16;
  const kind = target === undefined ? Kind.PUBLISH : Kind.SEND;
  return frameOf(kind, fixed + 2 + n.length + frame.length, (b, at) => {
    b.writeBigUInt64LE(BigInt.asUintN(64, BigInt(sender)), at);
    if (target !== undefined) b.writeBigUInt64LE(BigInt.asUintN(64, BigInt(target)), at + 8);
    b.writeUInt16LE(n.length, at + fixed);
    n.copy(b, at + fixed + 2);
    b.set(frame, at + fixed + 2 + n.length);
  });
}

export function encodeSession(opened, sid) {
  const s = strBytes(sid);
  return frameOf(opened ? Kind.SESSION_OPENED : Kind.SESSION_CLOSED, 2 + s.length, (b, at) => {
    b.writeUInt16LE(s.length, at);
    s.copy(b, at + 2);
  });
}

/** WorkerStats from `{ namespaces, nodes, ... }` (numbers or BigInts; missing fields are 0). */
export function encodeWorkerStats(stats, { version = WORKER_STATS_VERSION, values } = {}) {
  const vs = values ?? WORKER_STATS_FIELDS.map((f) => stats[f] ?? 0);
  // The hub refuses more (ipc::MAX_STATS_FIELDS) and drops the link.
  if (vs.length > MAX_STATS_FIELDS) throw new RangeError(`${vs.length} stats fields exceed ${MAX_STATS_FIELDS}`);
  return frameOf(Kind.WORKER_STATS, 4 + 8 * vs.length, (b, at) => {
    b.writeUInt16LE(version, at);
    b.writeUInt16LE(vs.length, at + 2);
    vs.forEach((v, i) => b.writeBigUInt64LE(BigInt.asUintN(64, BigInt(v)), at + 4 + 8 * i));
  });
}

// ---- hub -> worker (encoders are for tests and fake hubs) ----

export function encodeWelcome({ version = PROTOCOL_VERSION, worker }) {
  return frameOf(Kind.WELCOME, 6, (b, at) => {
    b.writeUInt16LE(version, at);
    b.writeUInt32LE(worker >>> 0, at + 2);
  });
}

export function encodeRefused(reason) {
  const r = strBytes(reason);
  return frameOf(Kind.REFUSED, 2 + r.length, (b, at) => {
    b.writeUInt16LE(r.length, at);
    r.copy(b, at + 2);
  });
}

export function encodeFrame(from, nsp, frame) {
  const n = strBytes(nsp);
  return frameOf(Kind.FRAME, 10 + n.length + frame.length, (b, at) => {
    b.writeBigUInt64LE(BigInt.asUintN(64, BigInt(from)), at);
    b.writeUInt16LE(n.length, at + 8);
    n.copy(b, at + 10);
    b.set(frame, at + 10 + n.length);
  });
}

export function encodeNodeDown(uid, nsp) {
  const n = strBytes(nsp);
  return frameOf(Kind.NODE_DOWN, 10 + n.length, (b, at) => {
    b.writeBigUInt64LE(BigInt.asUintN(64, BigInt(uid)), at);
    b.writeUInt16LE(n.length, at + 8);
    n.copy(b, at + 10);
  });
}

// ---- decoding (payload = kind byte + fields, without the length prefix) ----

class Fields {
  constructor(payload) {
    this.b = payload;
    this.at = 1;
  }
  need(n) {
    if (this.b.length - this.at < n) throw new CodecError("Truncated", "truncated frame");
  }
  u16() {
    this.need(2);
    const v = this.b.readUInt16LE(this.at);
    this.at += 2;
    return v;
  }
  u32() {
    this.need(4);
    const v = this.b.readUInt32LE(this.at);
    this.at += 4;
    return v;
  }
  u64() {
    this.need(8);
    const v = this.b.readBigUInt64LE(this.at);
    this.at += 8;
    return v;
  }
  str() {
    const len = this.u16();
    this.need(len);
    const raw = this.b.subarray(this.at, this.at + len);
    this.at += len;
    try {
      return utf8.decode(raw);
    } catch {
      throw new CodecError("BadUtf8", "string field is not valid UTF-8");
    }
  }
  rest() {
    const r = this.b.subarray(this.at);
    this.at = this.b.length;
    return r;
  }
  end() {
    if (this.at !== this.b.length) throw new CodecError("Trailing", "trailing bytes after the last field");
  }
}

function kindOf(payload) {
  if (payload.length === 0) throw new CodecError("Empty", "empty frame");
  return payload[0];
}

function unknown(kind) {
  return new CodecError("UnknownKind", `unknown frame kind 0x${kind.toString(16).padStart(2, "0")}`);
}

/** Decodes a hub -> worker payload. Throws a `CodecError`. */
export function decodeFromHub(payload) {
  const kind = kindOf(payload);
  const f = new Fields(payload);
  switch (kind) {
    case Kind.WELCOME: {
      const version = f.u16();
      const worker = f.u32();
      f.end();
      return { kind: "welcome", version, worker };
    }
    case Kind.REFUSED: {
      const reason = f.str();
      f.end();
      return { kind: "refused", reason };
    }
    case Kind.FRAME: {
      const from = f.u64();
      const nsp = f.str();
      return { kind: "frame", from, nsp, frame: f.rest() };
    }
    case Kind.NODE_DOWN: {
      const uid = f.u64();
      const nsp = f.str();
      f.end();
      return { kind: "node-down", uid, nsp };
    }
    default:
      throw unknown(kind);
  }
}

/** Decodes a worker -> hub payload (tests and fake hubs). Throws a `CodecError`. */
export function decodeToHub(payload) {
  const kind = kindOf(payload);
  const f = new Fields(payload);
  switch (kind) {
    case Kind.HELLO: {
      const version = f.u16();
      const worker = f.u32();
      const pid = f.u32();
      const token = f.str();
      f.end();
      return { kind: "hello", version, worker, pid, token };
    }
    case Kind.PUBLISH: {
      const sender = f.u64();
      const nsp = f.str();
      return { kind: "publish", sender, nsp, frame: f.rest() };
    }
    case Kind.SEND: {
      const sender = f.u64();
      const target = f.u64();
      const nsp = f.str();
      return { kind: "send", sender, target, nsp, frame: f.rest() };
    }
    case Kind.SESSION_OPENED:
    case Kind.SESSION_CLOSED: {
      const sid = f.str();
      f.end();
      return { kind: kind === Kind.SESSION_OPENED ? "session-opened" : "session-closed", sid };
    }
    case Kind.WORKER_STATS: {
      const version = f.u16();
      const count = f.u16();
      if (count > MAX_STATS_FIELDS) {
        throw new CodecError("TooManyFields", `${count} stats fields exceed the maximum of ${MAX_STATS_FIELDS}`);
      }
      const values = [];
      for (let i = 0; i < count; i++) values.push(f.u64().toString());
      f.end();
      return { kind: "worker-stats", version, values };
    }
    default:
      throw unknown(kind);
  }
}

/**
 * Cuts a byte stream into frame payloads. An empty or oversize length prefix
 * is an error as soon as its 4 bytes are in; the buffer holds only what the
 * peer sent, never an announced length.
 */
export class FrameReader {
  constructor(max = DEFAULT_MAX_FRAME) {
    this.max = max;
    this.chunks = [];
    this.buffered = 0;
  }

  push(chunk) {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
  }

  /** Bytes received and not yet taken as frames. */
  get pending() {
    return this.buffered;
  }

  #head(n) {
    if (this.chunks[0].length < n) {
      this.chunks = [Buffer.concat(this.chunks)];
    }
    return this.chunks[0];
  }

  /** The next frame payload, or null while more bytes are needed. Throws a `CodecError`. */
  next() {
    if (this.buffered < 4) return null;
    const head = this.#head(4);
    const len = head.readUInt32LE(0);
    if (len === 0) throw new CodecError("Empty", "empty frame");
    if (len > this.max) {
      throw new CodecError("TooLarge", `frame of ${len} bytes exceeds the maximum of ${this.max} bytes`);
    }
    if (this.buffered - 4 < len) return null;
    const buf = this.#head(4 + len);
    const payload = buf.subarray(4, 4 + len);
    if (buf.length === 4 + len) this.chunks.shift();
    else this.chunks[0] = buf.subarray(4 + len);
    this.buffered -= 4 + len;
    return payload;
  }
}

/** Error of the link (handshake, environment, closed, queue full). */
export class LinkError extends Error {
  constructor(code, message) {
    super(message);
    this.name = "LinkError";
    this.code = code;
  }
}

function envInt(env, name, fallback, { min = 0 } = {}) {
  const v = env[name];
  if (v === undefined || v === "") return fallback;
  const t = v.trim();
  if (!/^\d+$/.test(t)) throw new LinkError("BadEnv", `environment variable ${name} is invalid: ${JSON.stringify(v)}`);
  const n = Number(t);
  if (!Number.isSafeInteger(n) || n < min) {
    throw new LinkError("BadEnv", `environment variable ${name} is invalid: must be an integer >= ${min}`);
  }
  return n;
}

/**
 * Worker settings from the environment `sio-cluster-host run` (or
 * `hub --socket`) sets; the same variables as `WorkerEnv::from_env`.
 */
export function workerEnv(env = process.env) {
  if (env.SIO_CLUSTER_HANDOFF !== undefined) {
    throw new LinkError(
      "Handoff",
      "SIO_CLUSTER_HANDOFF is set: the primary was started with --handoff-websocket, " +
        "which Node workers cannot serve (Node cannot receive file descriptors over a " +
        "SOCK_SEQPACKET socket); start the primary without --handoff-websocket",
    );
  }
  const ipcVar = env.SIO_CLUSTER_IPC;
  if (ipcVar === undefined) throw new LinkError("MissingEnv", "environment variable SIO_CLUSTER_IPC is not set");
  let ipc;
  if (ipcVar.startsWith("fd:")) {
    const fd = ipcVar.slice(3).trim();
    if (!/^\d+$/.test(fd)) throw new LinkError("BadEnv", `environment variable SIO_CLUSTER_IPC is invalid: ${ipcVar}`);
    ipc = { fd: Number(fd) };
  } else if (ipcVar === "") {
    throw new LinkError("BadEnv", "environment variable SIO_CLUSTER_IPC is invalid: empty");
  } else {
    ipc = { path: ipcVar };
  }
  let token;
  if (env.SIO_CLUSTER_TOKEN !== undefined) token = env.SIO_CLUSTER_TOKEN.trim();
  else if (env.SIO_CLUSTER_TOKEN_FILE !== undefined) {
    try {
      token = readFileSync(env.SIO_CLUSTER_TOKEN_FILE, "utf8").trim();
    } catch (e) {
      throw new LinkError("BadEnv", `environment variable SIO_CLUSTER_TOKEN_FILE is invalid: ${env.SIO_CLUSTER_TOKEN_FILE}: ${e.message}`);
    }
  }
  if (ipc.path !== undefined && token === undefined) {
    throw new LinkError("MissingEnv", "SIO_CLUSTER_IPC is a socket path: set SIO_CLUSTER_TOKEN or SIO_CLUSTER_TOKEN_FILE");
  }
  const listenFd = env.SIO_CLUSTER_LISTEN_FD === undefined ? undefined : envInt(env, "SIO_CLUSTER_LISTEN_FD", undefined);
  return {
    ipc,
    token: token ?? "",
    index: envInt(env, "SIO_CLUSTER_WORKER", 0),
    workers: env.SIO_CLUSTER_WORKERS === undefined ? undefined : envInt(env, "SIO_CLUSTER_WORKERS", undefined),
    listen: env.SIO_CLUSTER_LISTEN,
    listenFd,
    heartbeatIntervalMs: envInt(env, "SIO_CLUSTER_HEARTBEAT_INTERVAL", 5000),
    heartbeatTimeoutMs: envInt(env, "SIO_CLUSTER_HEARTBEAT_TIMEOUT", 10000),
    maxFrame: envInt(env, "SIO_CLUSTER_MAX_FRAME", DEFAULT_MAX_FRAME),
    maxQueued: envInt(env, "SIO_CLUSTER_MAX_QUEUED", DEFAULT_MAX_QUEUED, { min: 1 }),
    component: env.SIO_CLUSTER_COMPONENT || undefined,
    instanceMemory: env.SIO_CLUSTER_INSTANCE_MEMORY === undefined ? undefined : envInt(env, "SIO_CLUSTER_INSTANCE_MEMORY", undefined, { min: 1 }),
    instanceCpuMs: env.SIO_CLUSTER_INSTANCE_CPU_MS === undefined ? undefined : envInt(env, "SIO_CLUSTER_INSTANCE_CPU_MS", undefined, { min: 1 }),
    statsIntervalMs: env.SIO_CLUSTER_STATS_INTERVAL === undefined ? undefined : envInt(env, "SIO_CLUSTER_STATS_INTERVAL", undefined, { min: 1 }),
    graceMs: env.SIO_CLUSTER_GRACE === undefined ? undefined : envInt(env, "SIO_CLUSTER_GRACE", undefined),
  };
}

/**
 * One connected hub link. Incoming adapter frames are handed to
 * `onFrames(nsp, frames)` in runs of one namespace (at most `maxBatch`
 * frames, in arrival order, per chunk read), a dead node to
 * `onNodeDown(nsp, uid)`. Outgoing frames never block: a frame that would
 * take the bytes not yet written past `maxQueued` is refused (counted in
 * `stats.refusedFull`), as `LinkSender` does.
 */
export class HubLink {
  constructor(socket, { worker, maxFrame, maxQueued, maxBatch = 256 }) {
    this.socket = socket;
    this.worker = worker;
    this.maxFrame = maxFrame;
    this.maxQueued = maxQueued;
    this.maxBatch = maxBatch;
    this.closed = false;
    this.onFrames = () => {};
    this.onNodeDown = () => {};
    this.onClose = () => {};
    this.stats = { framesIn: 0, framesOut: 0, bytesOut: 0, refusedFull: 0, refusedLarge: 0, protocolErrors: 0, backpressure: 0 };
    this.closeReason = null;
  }

  /** Connects, sends Hello, waits for Welcome (or Refused). */
  static async connect({ ipc, token = "", index = 0, maxFrame = DEFAULT_MAX_FRAME, maxQueued = DEFAULT_MAX_QUEUED, timeoutMs = 10_000 }) {
    const socket = ipc.fd !== undefined ? new net.Socket({ fd: ipc.fd, readable: true, writable: true }) : net.connect(ipc.path);
    if (ipc.path !== undefined) await onceConnected(socket);
    socket.setNoDelay?.(true);
    const reader = new FrameReader(maxFrame);
    socket.write(encodeHello({ worker: index, pid: process.pid, token }));
    const welcome = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => fail(new LinkError("Timeout", "timed out waiting for the hub's welcome")), timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        socket.off("data", onData);
        socket.off("error", onError);
        socket.off("close", onClose);
      };
      const fail = (e) => {
        cleanup();
        socket.destroy();
        reject(e);
      };
      const onError = (e) => fail(new LinkError("Io", `hub link i/o: ${e.message}`));
      const onClose = () => fail(new LinkError("Closed", "hub link closed before the welcome"));
      const onData = (chunk) => {
        reader.push(chunk);
        let payload;
        try {
          payload = reader.next();
          if (payload === null) return;
          const msg = decodeFromHub(payload);
          if (msg.kind === "refused") return fail(new LinkError("Refused", `hub refused this worker: ${msg.reason}`));
          if (msg.kind !== "welcome") return fail(new LinkError("Protocol", `hub protocol error: expected Welcome, got ${msg.kind}`));
          if (msg.version !== PROTOCOL_VERSION) return fail(new LinkError("Protocol", `hub protocol error: version ${msg.version}`));
          cleanup();
          socket.pause();
          resolve(msg);
        } catch (e) {
          fail(new LinkError("Protocol", `hub protocol error: ${e.message}`));
        }
      };
      socket.on("data", onData);
      socket.on("error", onError);
      socket.on("close", onClose);
    });
    const link = new HubLink(socket, { worker: welcome.worker, maxFrame, maxQueued });
    link.#reader = reader;
    return link;
  }

  #reader = null;

  /** Starts reading (set `onFrames`, `onNodeDown` and `onClose` first). */
  start() {
    const s = this.socket;
    const reader = this.#reader;
    if (!reader) return;
    this.#reader = null;
    s.on("data", (chunk) => this.#onData(reader, chunk));
    s.on("error", (e) => this.#close(`hub link i/o: ${e.message}`));
    s.on("close", () => this.#close("closed by the hub"));
    // Frames that came in the same chunk as the Welcome.
    this.#onData(reader, Buffer.alloc(0));
    s.resume();
  }

  #onData(reader, chunk) {
    reader.push(chunk);
    let run = null;
    let runNsp = null;
    const flush = () => {
      if (run) {
        const frames = run;
        run = null;
        this.onFrames(runNsp, frames);
      }
    };
    for (;;) {
      let msg;
      try {
        const payload = reader.next();
        if (payload === null) break;
        msg = decodeFromHub(payload);
      } catch (e) {
        flush();
        this.stats.protocolErrors++;
        this.socket.destroy();
        this.#close(`hub protocol error: ${e.message}`);
        return;
      }
      if (msg.kind === "frame") {
        this.stats.framesIn++;
        if (run && (runNsp !== msg.nsp || run.length >= this.maxBatch)) flush();
        if (!run) {
          run = [];
          runNsp = msg.nsp;
        }
        run.push(msg.frame);
      } else if (msg.kind === "node-down") {
        flush();
        this.onNodeDown(msg.nsp, msg.uid);
      } else {
        flush();
        this.stats.protocolErrors++;
        this.socket.destroy();
        this.#close(`hub protocol error: unexpected ${msg.kind}`);
        return;
      }
    }
    flush();
  }

  #close(reason) {
    if (this.closed) return;
    this.closed = true;
    this.closeReason = reason;
    this.onClose(reason);
  }

  /** Bytes queued towards the hub and not yet written. */
  get queuedBytes() {
    return this.socket.writableLength;
  }

  /**
   * Frames written in one turn of the event loop go out together: the
   * socket is corked at the first write and uncorked from `setImmediate`
   * (after the poll phase, i.e. after every socket.io event of this turn),
   * so a burst of broadcasts costs one `writev` to the hub, not one `write`
   * each, and the hub reads them as one chunk. Order is kept; `flush()`
   * (and `close()`) write what is corked at once.
   */
  #corked = false;
  #uncork = () => {
    if (!this.#corked) return;
    this.#corked = false;
    this.socket.uncork();
  };

  /** Writes the frames corked in this turn now (before exiting, say). */
  flush() {
    this.#uncork();
  }

  #push(buf) {
    if (this.closed) throw new LinkError("Closed", "hub link closed");
    const len = buf.length - 4;
    if (len > this.maxFrame) {
      this.stats.refusedLarge++;
      throw new LinkError("TooLarge", `frame of ${len} bytes exceeds the maximum of ${this.maxFrame} bytes`);
    }
    const before = this.socket.writableLength;
    if (before > 0 && before + buf.length > this.maxQueued) {
      this.stats.refusedFull++;
      throw new LinkError("QueueFull", `hub link queue full: ${before} bytes waiting, limit ${this.maxQueued} bytes`);
    }
    if (!this.#corked) {
      this.#corked = true;
      this.socket.cork();
      setImmediate(this.#uncork);
    }
    if (!this.socket.write(buf)) this.stats.backpressure++;
    this.stats.framesOut++;
    this.stats.bytesOut += buf.length;
  }

  publish(sender, nsp, frame) {
    this.#push(encodeRelay(sender, undefined, nsp, frame));
  }

  send(sender, target, nsp, frame) {
    this.#push(encodeRelay(sender, target, nsp, frame));
  }

  sessionOpened(sid) {
    this.#push(encodeSession(true, sid));
  }

  sessionClosed(sid) {
    this.#push(encodeSession(false, sid));
  }

  /** Reports adapter figures to the primary (only when SIO_CLUSTER_STATS_INTERVAL is set). */
  workerStats(stats) {
    this.#push(encodeWorkerStats(stats));
  }

  /** Closes the link (the hub sees this worker's nodes leave). */
  close() {
    this.#uncork();
    this.socket.end();
    this.socket.destroy();
    this.#close("closed by this worker");
  }
}

function onceConnected(socket) {
  return new Promise((resolve, reject) => {
    socket.once("connect", () => {
      socket.off("error", reject);
      resolve();
    });
    socket.once("error", (e) => reject(new LinkError("Io", `hub link i/o: ${e.message}`)));
  });
}
