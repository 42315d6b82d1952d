// `ClusterAdapter`: socket.io's in-memory `Adapter` over one adapter
// component instance per namespace (the model is `host/src/sioxide/adapter.rs`).
//
// Rooms stay in socket.io (`room-owner.host`): every cluster operation is a
// call into the component, which returns effects carried out here in order:
// frames go to the hub link, local work (`apply`) runs against socket.io's
// room index, answers go back into the component, completions settle the
// waiting caller. Operations flagged `local` skip the component.
//
// Nothing that comes from another node throws into socket.io: a refused
// frame, an undecodable packet or an unusable value is counted in the
// cluster's counters (`cluster.stats()`) and dropped, the other effects of
// the same batch still run.
import { Adapter } from "socket.io-adapter";
import { PacketType } from "socket.io-parser";
import WebSocket from "ws";
import { randomBytes } from "node:crypto";
import { instantiateAdapter, isTrap } from "./component.js";
import { decodePacked, frameErrorText, packBatch, PackedError } from "./packed.js";
import { decodePacket, decodeValue, encodeArgs, encodeValue, layout } from "./packet.js";

/** Error of requests that were pending when their instance trapped (as `wasm_node.rs`). */
export const RESTARTED_ERROR = "adapter instance restarted after a trap";
/** Error of requests pending when the adapter closes. */
export const CLOSED_ERROR = "adapter closed";

/**
 * Bounds of connection state recovery (the component's `recovery-config`);
 * `maxDisconnectionDuration` comes from socket.io's own option. Override
 * with `createAdapter({ recovery: { maxLogEntries, ... } })`.
 */
export const RECOVERY_DEFAULTS = {
  maxLogEntries: 10_000,
  maxLogBytes: 16 * 1024 * 1024,
  maxSessions: 100_000,
  maxSessionBytes: 64 * 1024,
};
/** How long `restoreSession` waits for this node to log what the client already saw. */
export const RESTORE_WAIT_MS = 1000;
const RESTORE_RETRY_MS = 20;

/** True for 1, 2, 4, 8, …: repeated failures are logged at powers of two. */
const isPowerOfTwo = (n) => n > 0 && Number.isInteger(Math.log2(n));

const canPreComputeFrame = typeof WebSocket?.Sender?.frame === "function";

/**
 * The TCP sockets of WebSocket clients written to in this turn of the event
 * loop: corked at the first broadcast packet and uncorked together from
 * `setImmediate`, so that a client that gets several packets in one turn
 * gets them in one `writev` (one segment to the primary's proxy, one read
 * there), not one write per packet. Polling clients are not touched.
 */
const corkedClients = [];
function uncorkClients() {
  const list = corkedClients.splice(0);
  for (const raw of list) {
    raw[CORKED] = false;
    if (!raw.destroyed) raw.uncork();
  }
}
const CORKED = Symbol("sio-cluster corked");
/**
 * engine.io flushes the packets it buffered while a write was in flight with
 * one `send(packets)`, i.e. one WebSocket frame and one `writev` each: the
 * transport's `send` is wrapped once to cork the TCP socket around the whole
 * batch (one `writev` for all of them).
 */
const WRAPPED = Symbol("sio-cluster send wrapped");
function wrapSend(transport, raw) {
  if (transport[WRAPPED] || typeof transport.send !== "function") return;
  transport[WRAPPED] = true;
  const send = transport.send;
  transport.send = function (packets) {
    if (packets.length < 2 || raw.destroyed) return send.call(this, packets);
    raw.cork();
    try {
      return send.call(this, packets);
    } finally {
      raw.uncork();
    }
  };
}
function corkClient(s) {
  const transport = s.conn?.transport;
  const raw = transport?.socket?._socket;
  if (!raw || raw[CORKED] || typeof raw.cork !== "function" || raw.destroyed) return;
  wrapSend(transport, raw);
  raw[CORKED] = true;
  raw.cork();
  if (corkedClients.push(raw) === 1) setImmediate(uncorkClients);
}

/** Random 64-bit node id (never 0). */
function randomUid() {
  for (;;) {
    const uid = randomBytes(8).readBigUInt64LE(0);
    if (uid !== 0n) return uid;
  }
}

const arr = (set) => (set ? Array.from(set, String) : []);

/**
 * socket.io `BroadcastOptions` -> the component's `broadcast-opts`.
 * `broadcast` is always set: socket.io never sets it, and socketioxide
 * matches nobody for "no rooms, no sid, no broadcast flag" (wit/interop.md).
 * A `RemoteSocket` operation (one room, `expectSingleResponse`) targets the
 * socket by `sid`, so that it reaches a socket whichever runtime holds it.
 */
export function toComponentOpts(opts) {
  const flags = opts.flags ?? {};
  const rooms = arr(opts.rooms);
  const except = arr(opts.except);
  const f = { local: !!flags.local, broadcast: true, volatile: !!flags.volatile, compress: flags.compress === true };
  if (flags.expectSingleResponse && rooms.length === 1 && except.length === 0) {
    f.broadcast = false;
    return { rooms: [], except: [], flags: f, sid: rooms[0], target: undefined };
  }
  return { rooms, except, flags: f, sid: undefined, target: undefined };
}

function jsonBytes(value) {
  if (value === undefined || value === null) return new Uint8Array(0);
  try {
    const text = JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? v.toString() : v));
    return text === undefined ? new Uint8Array(0) : Buffer.from(text, "utf8");
  } catch {
    return new Uint8Array(0);
  }
}

/** socket.io's handshake without what cannot or must not cross (wit/interop.md). */
export function encodeHandshake(handshake) {
  if (!handshake) return new Uint8Array(0);
  const { sessionStore: _drop, ...rest } = handshake;
  return jsonBytes(rest);
}

function parseJsonBytes(bytes) {
  if (!bytes || bytes.length === 0) return undefined;
  return JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("utf8"));
}

export class ClusterAdapter extends Adapter {
  /**
   * @param nsp the socket.io namespace
   * @param cluster the `Cluster` this process attached (see `attach()`)
   * @param options `{ requestTimeoutMs, instantiateCore }`
   */
  constructor(nsp, cluster, options = {}) {
    super(nsp);
    this.cluster = cluster;
    this.uid = randomUid();
    this.requestTimeoutMs = options.requestTimeoutMs ?? cluster.requestTimeoutMs;
    this.config = {
      uid: this.uid,
      nsp: nsp.name,
      rooms: "host",
      heartbeatIntervalMs: cluster.heartbeatIntervalMs,
      heartbeatTimeoutMs: cluster.heartbeatTimeoutMs,
      requestTimeoutMs: this.requestTimeoutMs,
      maxFrameBytes: Math.min(cluster.maxFrameBytes, 0xffffffff),
    };
    this.instantiateCore = options.instantiateCore;
    /** jco has no StoreLimits: the memory cap is checked after every call (see README). */
    this.memoryCap = options.instanceMemoryBytes ?? cluster.instanceMemoryBytes;
    /** jco cannot interrupt a call: calls longer than this are counted and logged. */
    this.cpuMs = options.instanceCpuMs ?? cluster.instanceCpuMs;
    /** request id -> who waits for it. */
    this.waiters = new Map();
    this.announced = false;
    this.closed = false;
    this.broken = null;
    this.restarts = 0;
    this.timer = null;
    this.timerAt = Infinity;
    this.counters = cluster.counters;
    const csr = nsp.server?.opts?.connectionStateRecovery;
    /** The component's `recovery-config` when socket.io's `connectionStateRecovery` is on. */
    this.recovery = csr
      ? {
          maxDisconnectionMs: Math.max(0, Math.min(Math.trunc(csr.maxDisconnectionDuration ?? 120_000), 0xffffffff)),
          ...RECOVERY_DEFAULTS,
          ...(options.recovery ?? {}),
        }
      : null;
    this.node = this.#newNode();
  }

  #newNode() {
    const api = instantiateAdapter(this.instantiateCore);
    this.memoryBytes = api.memoryBytes;
    const node = new api.Node(this.config);
    if (this.recovery) node.enableRecovery(this.recovery);
    return node;
  }

  // ---- calls into the component ----

  /** One call; a trap replaces the instance (its effects are carried) and throws. */
  #call(f) {
    if (this.broken) throw new Error(`cluster adapter of ${this.nsp.name} is unusable: ${this.broken}`);
    if (this.closed) throw new Error(CLOSED_ERROR);
    const t0 = performance.now();
    let out;
    try {
      out = f(this.node, this.cluster.now());
    } catch (e) {
      if (!isTrap(e)) throw e;
      this.#replace(e);
      throw new Error(`adapter instance trapped (${e.message}); it was replaced`);
    }
    const ms = performance.now() - t0;
    if (ms > this.cpuMs) {
      this.counters.slowCalls++;
      this.cluster.log(`a call into the adapter instance of ${this.nsp.name} took ${ms.toFixed(0)} ms (bound ${this.cpuMs} ms; jco cannot interrupt it)`);
    }
    const mem = this.memoryBytes();
    if (mem > this.memoryCap) {
      // wasmtime would have trapped the call at the cap: do the same.
      this.counters.memoryCapped++;
      const e = new Error(`instance memory ${mem} B exceeds the cap of ${this.memoryCap} B`);
      this.#replace(e);
      throw new Error(`adapter instance replaced: ${e.message}`);
    }
    return out;
  }

  #replace(cause) {
    this.counters.traps++;
    this.restarts++;
    this.cluster.log(`adapter instance of ${this.nsp.name} trapped: ${cause?.message}; replacing it`);
    try {
      this.node[Symbol.dispose]?.();
    } catch {
      // A trapped instance may refuse even this.
    }
    let node;
    try {
      node = this.#newNode();
    } catch (e) {
      this.broken = `re-instantiation failed: ${e.message}`;
      this.cluster.log(`adapter of ${this.nsp.name}: ${this.broken}`);
      this.#failWaiters(this.broken);
      return;
    }
    this.node = node;
    // Rooms live in socket.io (host-owned): nothing to replay into the
    // instance. Pending requests fail, the node is announced again.
    this.#failWaiters(RESTARTED_ERROR);
    if (this.announced) {
      try {
        this.#carry(node.init(this.cluster.now()));
      } catch (e) {
        this.broken = `re-announcing failed: ${e.message}`;
      }
    }
  }

  #failWaiters(error) {
    const waiters = [...this.waiters.entries()];
    this.waiters.clear();
    for (const [id, w] of waiters) this.#settle(w, { id, error, value: { tag: w.kind, val: [] } });
  }

  /** Re-arms the clock at the component's next deadline. */
  #arm() {
    if (this.closed || this.broken) return;
    let d;
    try {
      d = this.node.nextDeadline();
    } catch (e) {
      if (isTrap(e)) this.#replace(e);
      return;
    }
    if (d === undefined) return;
    const at = Number(d);
    if (this.timer && at >= this.timerAt) return;
    if (this.timer) clearTimeout(this.timer);
    this.timerAt = at;
    const delay = Math.max(0, at - Number(this.cluster.now()));
    this.timer = setTimeout(() => this.#tick(), delay);
    this.timer.unref?.();
  }

  #tick() {
    this.timer = null;
    this.timerAt = Infinity;
    if (this.closed || this.broken) return;
    try {
      this.#carry(this.#call((n, now) => n.tick(now)));
    } catch (e) {
      this.cluster.log(`tick of ${this.nsp.name} failed: ${e.message}`);
    }
    this.#arm();
  }

  // ---- carrying out effects ----

  /**
   * Carries out effects in order. `held` is the original call (socket.io
   * packet object and options), used for its local part instead of decoding
   * the bytes the component hands back.
   */
  #carry(effects, held) {
    const queue = effects;
    for (let i = 0; i < queue.length; i++) {
      const e = queue[i];
      try {
        const more = this.#effect(e, held);
        if (more) for (const m of more) queue.push(m);
      } catch (err) {
        this.counters.effectErrors++;
        this.cluster.log(`effect ${e?.tag} on ${this.nsp.name} failed: ${err?.stack ?? err}`);
      }
    }
    this.#arm();
  }

  #effect(e, held) {
    const link = this.cluster.link;
    switch (e.tag) {
      case "publish":
        try {
          link.publish(this.uid, this.nsp.name, e.val);
        } catch (err) {
          // Logged at powers of two: a full link refuses frames by the thousand.
          if (isPowerOfTwo(++this.counters.linkErrors)) {
            this.cluster.log(`frame not published on ${this.nsp.name}: ${err.message} (${this.counters.linkErrors} refused)`);
          }
        }
        return null;
      case "send":
        try {
          link.send(this.uid, e.val[0], this.nsp.name, e.val[1]);
        } catch (err) {
          if (isPowerOfTwo(++this.counters.linkErrors)) {
            this.cluster.log(`frame not sent on ${this.nsp.name}: ${err.message} (${this.counters.linkErrors} refused)`);
          }
        }
        return null;
      case "apply":
        return this.#apply(e.val, held);
      case "server-event":
        this.#serverEvent(e.val[0], e.val[1]);
        return null;
      case "ack-received": {
        const w = this.waiters.get(e.val[0]);
        if (!w || w.kind !== "acks") return null;
        let args;
        try {
          args = decodeValue(e.val[1].payload);
        } catch {
          this.counters.badRemoteData++;
          return null;
        }
        w.received++;
        w.ack(Array.isArray(args) ? args[0] : args);
        return null;
      }
      case "complete": {
        const w = this.waiters.get(e.val.id);
        if (!w) return null;
        this.waiters.delete(e.val.id);
        this.#settle(w, e.val);
        return null;
      }
      case "node-up":
        this.cluster.nodeEvent("up", this.nsp.name, e.val);
        return null;
      case "node-down":
        this.cluster.nodeEvent("down", this.nsp.name, e.val);
        return null;
      default:
        // deliver / disconnect / rooms-changed: only with component-owned rooms.
        this.counters.unexpectedEffects++;
        return null;
    }
  }

  #settle(w, c) {
    switch (w.kind) {
      case "acks":
        // BroadcastOperator completes when it got as many client counts as
        // serverCount() said and as many acks as the counts add up to: the
        // component knows the per-node counts, so report them at completion.
        // On error (timeout) the operator's own timer answers.
        if (!c.error) {
          w.countCb(w.received);
          for (let i = 1; i < w.servers; i++) w.countCb(0);
        }
        return;
      case "sockets": {
        if (c.error) return w.reject(new Error(c.error));
        const out = [];
        const infos = c.value.tag === "sockets" ? c.value.val : [];
        for (const s of infos) {
          if (s.node === this.uid) {
            const local = this.nsp.sockets.get(s.id);
            if (local) out.push(local);
            continue;
          }
          let handshake = {};
          let data = {};
          try {
            handshake = parseJsonBytes(s.handshake) ?? {};
            data = parseJsonBytes(s.data) ?? {};
          } catch {
            this.counters.badRemoteData++;
          }
          out.push({ id: s.id, handshake, rooms: s.rooms, data });
        }
        return w.resolve(out);
      }
      case "replies": {
        const replies = [];
        for (const r of c.value.tag === "replies" ? c.value.val : []) {
          try {
            replies.push(decodeValue(r));
          } catch {
            this.counters.badRemoteData++;
          }
        }
        return w.cb(c.error ? new Error(c.error) : null, replies);
      }
      default:
        return undefined;
    }
  }

  /** The local sockets `opts` (component options) match: `adapter/src/rooms.rs`'s rule. */
  #match(opts) {
    const except = new Set();
    for (const room of opts.except) {
      const members = this.rooms.get(room);
      if (members) for (const id of members) except.add(id);
    }
    if (opts.sid !== undefined && opts.flags.broadcast) except.add(opts.sid);
    const out = [];
    if (opts.rooms.length > 0) {
      const seen = new Set();
      for (const room of opts.rooms) {
        const members = this.rooms.get(room);
        if (!members) continue;
        for (const id of members) {
          if (seen.has(id) || except.has(id)) continue;
          seen.add(id);
          const s = this.nsp.sockets.get(id);
          if (s) out.push(s);
        }
      }
    } else if (opts.sid !== undefined && !opts.flags.broadcast) {
      const s = except.has(opts.sid) ? undefined : this.nsp.sockets.get(opts.sid);
      if (s) out.push(s);
    } else {
      for (const id of this.sids.keys()) {
        if (except.has(id)) continue;
        const s = this.nsp.sockets.get(id);
        if (s) out.push(s);
      }
    }
    return out;
  }

  #sockets(opts, held) {
    if (!held) return this.#match(opts);
    const out = [];
    super.apply(held.opts, (s) => out.push(s));
    return out;
  }

  /**
   * socket.io's packet options. `held` flags are socket.io's own (passed as
   * they are, as its Adapter does); the component's flags are booleans, where
   * `compress: false` means "not asked", i.e. engine.io's default.
   */
  #packetOpts(parts, flags, held) {
    const packetOpts = held
      ? { preEncoded: true, volatile: flags.volatile, compress: flags.compress }
      : { preEncoded: true, volatile: flags.volatile || undefined, compress: flags.compress || undefined };
    if (canPreComputeFrame && parts.length === 1) {
      packetOpts.wsPreEncodedFrame = WebSocket.Sender.frame(Buffer.from("4" + parts[0]), {
        readOnly: false,
        mask: false,
        rsv1: false,
        opcode: 1,
        fin: true,
      });
    }
    return packetOpts;
  }

  #write(sockets, packet, parts, packetOpts) {
    for (const s of sockets) {
      if (typeof s.notifyOutgoingListeners === "function") s.notifyOutgoingListeners(packet);
      corkClient(s);
      s.client.writeToEngine(parts, packetOpts);
    }
  }

  /** A packet from another node, checked: `null` (counted) if unusable. */
  #remotePacket(bytes) {
    try {
      return decodePacket(bytes, this.nsp.name);
    } catch (e) {
      this.counters.badRemoteData++;
      this.cluster.log(`undecodable packet from another node on ${this.nsp.name}: ${e.message}`);
      return null;
    }
  }

  #apply(op, held) {
    switch (op.tag) {
      case "broadcast": {
        const [opts, bytes] = op.val;
        if (held?.packet) {
          const sockets = this.#sockets(opts, held);
          if (sockets.length > 0) this.#write(sockets, held.packet, held.parts, this.#packetOpts(held.parts, held.opts.flags ?? {}, true));
          return null;
        }
        const sockets = this.#match(opts);
        if (sockets.length === 0) return null;
        const p = this.#remotePacket(bytes);
        if (!p) return null;
        this.#write(sockets, p.packet, p.parts, this.#packetOpts(p.parts, opts.flags));
        return null;
      }
      case "broadcast-with-ack": {
        const [q, opts, bytes, timeoutMs] = op.val;
        let packet;
        let flags;
        if (held?.packet) {
          packet = held.packet;
          flags = held.opts.flags ?? {};
        } else {
          const p = this.#remotePacket(bytes);
          if (!p) return this.#call((n, t) => n.ackCount(t, q, 0));
          packet = p.packet;
          flags = opts.flags;
        }
        const sockets = this.#sockets(opts, held);
        // One packet id for every socket, as socket.io's own adapter does.
        packet.nsp = this.nsp.name;
        packet.id = this.nsp._ids++;
        if (packet.type === PacketType.BINARY_EVENT) packet.type = PacketType.EVENT;
        const parts = this.encoder.encode(packet);
        const packetOpts = this.#packetOpts(parts, flags, !!held?.packet);
        const id = packet.id;
        for (const s of sockets) {
          const sid = s.id;
          s.acks.set(id, (...args) => this.#localAck(q, sid, args));
        }
        this.#write(sockets, packet, parts, packetOpts);
        if (sockets.length > 0) {
          // socket.io leaks ack callbacks of clients that never answer
          // (socket.io#4984): drop them after the requester's timeout.
          const t = setTimeout(() => {
            for (const s of sockets) s.acks.delete(id);
          }, timeoutMs + 1000);
          t.unref?.();
        }
        return this.#call((n, t) => n.ackCount(t, q, sockets.length));
      }
      case "join": {
        const [opts, rooms] = op.val;
        for (const s of this.#sockets(opts, held)) s.join(rooms);
        return null;
      }
      case "leave": {
        const [opts, rooms] = op.val;
        for (const s of this.#sockets(opts, held)) for (const r of rooms) s.leave(r);
        return null;
      }
      case "disconnect": {
        const [opts, close] = op.val;
        for (const s of this.#sockets(opts, held)) s.disconnect(close);
        return null;
      }
      case "fetch-sockets": {
        const [q, opts] = op.val;
        const infos = this.#sockets(opts, held).map((s) => ({
          id: s.id,
          node: this.uid,
          rooms: arr(s.rooms),
          handshake: encodeHandshake(s.handshake),
          data: jsonBytes(s.data),
        }));
        return this.#call((n, t) => n.socketsReply(t, q, infos));
      }
      case "fetch-rooms": {
        const [q, opts] = op.val;
        const rooms = new Set();
        for (const s of this.#sockets(opts, held)) {
          const r = this.sids.get(s.id);
          if (r) for (const room of r) rooms.add(String(room));
        }
        return this.#call((n, t) => n.roomsReply(t, q, [...rooms].sort()));
      }
      default:
        this.counters.unexpectedEffects++;
        return null;
    }
  }

  #localAck(q, sid, args) {
    if (this.closed || this.broken) return;
    try {
      const payload = encodeArgs(args);
      this.#carry(this.#call((n, t) => n.ack(t, q, { sid, payload })));
    } catch (e) {
      this.counters.effectErrors++;
      this.cluster.log(`ack of ${sid} on ${this.nsp.name} not reported: ${e.message}`);
    }
  }

  #serverEvent(bytes, q) {
    let args;
    try {
      args = decodeValue(bytes);
    } catch {
      args = null;
    }
    if (!Array.isArray(args) || args.length === 0 || typeof args[0] !== "string") {
      this.counters.badRemoteData++;
      this.cluster.log(`unreadable server-side event dropped on ${this.nsp.name}`);
      return;
    }
    if (q !== undefined) {
      let answered = false;
      args.push((arg) => {
        if (answered || this.closed || this.broken) return;
        answered = true;
        try {
          this.#carry(this.#call((n, t) => n.reply(t, q, encodeValue(arg))));
        } catch (e) {
          this.counters.effectErrors++;
          this.cluster.log(`server-side reply on ${this.nsp.name} failed: ${e.message}`);
        }
      });
    }
    try {
      this.nsp._onServerSideEmit(args);
    } catch (e) {
      this.counters.handlerErrors++;
      this.cluster.log(`server-side event handler on ${this.nsp.name} threw: ${e?.stack ?? e}`);
    }
  }

  // ---- from the hub link ----

  /** Frames of this namespace from the hub, as one packed batch. */
  onFrames(frames) {
    if (this.closed || this.broken) return;
    let packed;
    try {
      packed = this.#call((n, now) => n.onFramesPacked(now, packBatch(frames)));
    } catch (e) {
      this.counters.framesDropped += frames.length;
      this.cluster.log(`frames on ${this.nsp.name} dropped: ${e.message}`);
      return;
    }
    let res;
    try {
      res = decodePacked(packed);
    } catch (e) {
      // The component's output is checked like any other input: a result
      // that does not decode is a broken instance.
      if (!(e instanceof PackedError)) throw e;
      this.counters.framesDropped += frames.length;
      this.#replace(e);
      return;
    }
    if (res.errors.length > 0) {
      this.counters.framesRefused += res.errors.length;
      this.cluster.logRefused(this.nsp.name, res.errors.length, frameErrorText(res.errors[0]));
    }
    this.#carry(res.effects);
  }

  /** The node `uid` is gone (its worker's link closed): fast leave. */
  onNodeDown(uid) {
    if (this.closed || this.broken) return;
    try {
      this.#carry(this.#call((n, now) => n.nodeDown(now, uid)));
    } catch (e) {
      this.cluster.log(`node-down on ${this.nsp.name} failed: ${e.message}`);
    }
  }

  // ---- socket.io's adapter API ----

  init() {
    this.cluster.register(this);
    this.#carry(this.#call((n, now) => n.init(now)));
    this.announced = true;
  }

  close() {
    if (this.closed) return;
    let effects = [];
    try {
      effects = this.#call((n, now) => n.close(now));
    } catch (e) {
      this.cluster.log(`close of ${this.nsp.name}: ${e.message}`);
    }
    this.#carry(effects);
    // The leave frame now, not at the next turn: callers often exit right after close().
    this.cluster.link.flush?.();
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.#failWaiters(CLOSED_ERROR);
    this.cluster.unregister(this);
    try {
      this.node[Symbol.dispose]?.();
    } catch {
      // Already unusable.
    }
  }

  serverCount() {
    try {
      return Promise.resolve(this.#call((n) => n.serverCount()));
    } catch {
      return Promise.resolve(1);
    }
  }

  /** Counters of this namespace's node (`stats` of the component) and of this adapter. */
  stats() {
    const s = this.closed || this.broken ? null : this.#call((n) => n.stats());
    return { nsp: this.nsp.name, uid: this.uid.toString(16).padStart(16, "0"), restarts: this.restarts, broken: this.broken, node: s };
  }

  /**
   * A cluster operation of socket.io's API. socket.io's own adapter never
   * throws from these, and an exception here would surface in the caller's
   * event handler: a failed call (the instance trapped and was replaced, or
   * the adapter is closed) is counted (`operationErrors`) and logged, the
   * operation is lost, as a Rust emit that returns an error.
   */
  #operation(name, f) {
    try {
      return f();
    } catch (e) {
      this.counters.operationErrors++;
      this.cluster.log(`${name} on ${this.nsp.name} failed: ${e.message}`);
      return undefined;
    }
  }

  broadcast(packet, opts) {
    if (opts.flags?.local) return super.broadcast(packet, opts);
    packet.nsp = this.nsp.name;
    const parts = this.encoder.encode(packet);
    const bytes = layout(parts);
    const effects = this.#operation("broadcast", () => this.#call((n, now) => n.broadcast(now, toComponentOpts(opts), bytes)));
    // With recovery on, the component may stamp the packet (an offset as its
    // last argument): the local part then writes the component's bytes, the
    // same bytes as every other node's.
    if (effects) this.#carry(effects, this.recovery ? { opts, stamped: true } : { packet, parts, opts });
  }

  // ---- connection state recovery (socket.io's SessionAwareAdapter API) ----

  /** The session of a connected local socket, for the component. */
  #session(socket) {
    return {
      sid: socket.id,
      pid: socket.pid,
      rooms: arr(this.sids.get(socket.id)),
      data: jsonBytes(socket.data),
    };
  }

  /**
   * Replicates a live socket's session (connect, room changes, assignments
   * to `socket.data`): it survives this worker's death. In-place changes of
   * `socket.data` travel with the next room change or the disconnect.
   */
  #sessionChanged(id) {
    if (!this.recovery || this.closed || this.broken) return;
    const s = this.nsp.sockets.get(id);
    if (!s || !s.connected || typeof s.pid !== "string") return;
    if (!Object.hasOwn(s, "__sioClusterData")) this.#watchData(s);
    const session = this.#session(s);
    const effects = this.#operation("session update", () => this.#call((n, now) => n.sessionUpdate(now, session)));
    if (effects) this.#carry(effects);
  }

  /** `socket.data = v` replicates the session (an accessor over the plain property). */
  #watchData(s) {
    let value = s.data;
    Object.defineProperty(s, "__sioClusterData", { value: true, enumerable: false });
    Object.defineProperty(s, "data", {
      configurable: true,
      enumerable: true,
      get: () => value,
      set: (v) => {
        value = v;
        this.#sessionChanged(s.id);
      },
    });
  }

  addAll(id, rooms) {
    super.addAll(id, rooms);
    this.#sessionChanged(id);
  }

  del(id, room) {
    super.del(id, room);
    this.#sessionChanged(id);
  }

  delAll(id) {
    // socket.io calls this from `_cleanup`, after `persistSession` when the
    // reason is recoverable: the component keeps a persisted session.
    const s = this.recovery ? this.nsp.sockets.get(id) : undefined;
    super.delAll(id);
    if (s && typeof s.pid === "string" && !this.closed && !this.broken) {
      const effects = this.#operation("session close", () => this.#call((n, now) => n.sessionClosed(now, s.pid)));
      if (effects) this.#carry(effects);
    }
  }

  /** socket.io's hook on a recoverable disconnect. */
  persistSession(session) {
    if (!this.recovery) return;
    const s = {
      sid: String(session.sid),
      pid: String(session.pid),
      rooms: arr(session.rooms),
      data: jsonBytes(session.data),
    };
    const effects = this.#operation("persistSession", () => this.#call((n, now) => n.sessionPersist(now, s)));
    if (effects) this.#carry(effects);
  }

  /**
   * socket.io's hook on a CONNECT with `pid` and `offset`: the session (from
   * any node of the cluster) with the packets the client missed, or `null`.
   * Never rejects.
   */
  async restoreSession(pid, offset) {
    if (!this.recovery || typeof pid !== "string" || typeof offset !== "string") return null;
    const until = performance.now() + RESTORE_WAIT_MS;
    for (;;) {
      if (this.closed || this.broken) return null;
      let r;
      try {
        r = this.#call((n, now) => n.sessionRestore(now, pid, offset));
      } catch (e) {
        this.counters.operationErrors++;
        this.cluster.log(`restoreSession on ${this.nsp.name} failed: ${e.message}`);
        return null;
      }
      const [result, effects] = r;
      // A stale socket of this pid on this node closes before the new one exists.
      this.#carry(effects);
      if (result.tag === "restored") return this.#restored(result.val);
      if (result.tag !== "behind" || performance.now() >= until) return null;
      await new Promise((resolve) => setTimeout(resolve, RESTORE_RETRY_MS));
    }
  }

  #restored([session, missed]) {
    let data = {};
    try {
      data = parseJsonBytes(session.data) ?? {};
    } catch {
      this.counters.badRemoteData++;
    }
    const missedPackets = [];
    for (const bytes of missed) {
      const p = this.#remotePacket(bytes);
      if (p && Array.isArray(p.packet.data)) missedPackets.push(p.packet.data);
    }
    return { sid: session.sid, pid: session.pid, rooms: session.rooms, data, missedPackets };
  }

  /** Recovery counters of the component (`null` while recovery is off). */
  recoveryStats() {
    if (!this.recovery || this.closed || this.broken) return null;
    return this.#call((n) => n.recoveryStats()) ?? null;
  }

  broadcastWithAck(packet, opts, clientCountCallback, ack) {
    if (opts.flags?.local) return super.broadcastWithAck(packet, opts, clientCountCallback, ack);
    packet.nsp = this.nsp.name;
    // Without the ack id: every node gives the packet its own.
    delete packet.id;
    const bytes = layout(this.encoder.encode(packet));
    const timeout = opts.flags?.timeout ?? this.requestTimeoutMs;
    const ms = Math.max(0, Math.min(Math.trunc(timeout), 0xffffffff));
    // On failure BroadcastOperator's timer answers "operation has timed out".
    const started = this.#operation("broadcast with acks", () => {
      const r = this.#call((n, now) => n.broadcastWithAck(now, toComponentOpts(opts), bytes, ms, true));
      return { r, servers: this.#call((n) => n.serverCount()) };
    });
    if (!started) return;
    const [rid, effects] = started.r;
    this.waiters.set(rid, { kind: "acks", countCb: clientCountCallback, ack, servers: started.servers, received: 0 });
    this.#carry(effects, { packet, opts });
  }

  fetchSockets(opts) {
    if (opts.flags?.local) return super.fetchSockets(opts);
    return new Promise((resolve, reject) => {
      const timeout = opts.flags?.timeout;
      const [rid, effects] = this.#call((n, now) => n.fetchSockets(now, toComponentOpts(opts), timeout === undefined ? undefined : Math.trunc(timeout)));
      this.waiters.set(rid, { kind: "sockets", resolve, reject });
      this.#carry(effects, { opts });
    });
  }

  addSockets(opts, rooms) {
    if (opts.flags?.local) return super.addSockets(opts, rooms);
    const effects = this.#operation("socketsJoin", () => this.#call((n, now) => n.socketsJoin(now, toComponentOpts(opts), arr(rooms))));
    if (effects) this.#carry(effects, { opts });
  }

  delSockets(opts, rooms) {
    if (opts.flags?.local) return super.delSockets(opts, rooms);
    const effects = this.#operation("socketsLeave", () => this.#call((n, now) => n.socketsLeave(now, toComponentOpts(opts), arr(rooms))));
    if (effects) this.#carry(effects, { opts });
  }

  disconnectSockets(opts, close) {
    if (opts.flags?.local) return super.disconnectSockets(opts, close);
    const effects = this.#operation("disconnectSockets", () => this.#call((n, now) => n.disconnectSockets(now, toComponentOpts(opts), !!close)));
    if (effects) this.#carry(effects, { opts });
  }

  serverSideEmit(packet) {
    const withAck = typeof packet[packet.length - 1] === "function";
    const cb = withAck ? packet.pop() : null;
    const bytes = encodeArgs(packet);
    let started;
    try {
      started = this.#call((n, now) => n.serverSideEmit(now, bytes, withAck));
    } catch (e) {
      this.counters.operationErrors++;
      this.cluster.log(`serverSideEmit on ${this.nsp.name} failed: ${e.message}`);
      if (cb) queueMicrotask(() => cb(e, []));
      return;
    }
    const [rid, effects] = started;
    if (withAck && rid !== undefined) this.waiters.set(rid, { kind: "replies", cb });
    this.#carry(effects);
  }
}
