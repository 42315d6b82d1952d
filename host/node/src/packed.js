// Decoder of the packed result of `on-frames-packed` (`adapter/src/packed.rs`):
// a version byte (1), then items until the end, each a postcard `Item`
// (`0` + an `Effect`, or `1` + a `FrameError`).
//
// Postcard: unsigned integers above u8 are LEB128 varints, u8 and bool are
// one byte, `Option` is a 0/1 byte then the value, a sequence, a string or
// bytes is a varint length then the items, an enum is a varint variant index
// then its fields, structs and tuples are their fields in order.
//
// The values have the shapes jco gives the typed exports (`{tag, val}`
// variants, records with camelCase fields, u64 as BigInt), so one effect
// handler serves both.

export const PACKED_VERSION = 1;

/** The packed bytes are not what the adapter crate writes. */
export class PackedError extends Error {
  constructor(message) {
    super(message);
    this.name = "PackedError";
  }
}

import { Buffer, isUtf8 } from "node:buffer";

const FLAGS = Array.from({ length: 16 }, (_, m) =>
  Object.freeze({ local: !!(m & 1), broadcast: !!(m & 2), volatile: !!(m & 4), compress: !!(m & 8) }),
);

class Reader {
  constructor(bytes) {
    this.b = bytes;
    this.at = 0;
    this.lastOpts = null;
  }
  fail(what) {
    throw new PackedError(`packed result: ${what} at byte ${this.at}`);
  }
  u8() {
    if (this.at >= this.b.length) this.fail("truncated");
    return this.b[this.at++];
  }
  bool() {
    const v = this.u8();
    if (v > 1) this.fail(`bad bool ${v}`);
    return v === 1;
  }
  /** A varint of at most 32 bits, as a Number. */
  u32() {
    let v = 0;
    for (let i = 0; i < 5; i++) {
      const byte = this.u8();
      if (i === 4 && byte > 0x0f) this.fail("u32 varint overflow");
      v += (byte & 0x7f) * 2 ** (7 * i);
      if (byte < 0x80) return v;
    }
    return this.fail("u32 varint too long");
  }
  /** A varint of at most 64 bits, as a BigInt. */
  u64() {
    // Fast path: values below 2^28 (request and query ids).
    let small = 0;
    for (let i = 0; i < 4; i++) {
      const byte = this.u8();
      small |= (byte & 0x7f) << (7 * i);
      if (byte < 0x80) return BigInt(small >>> 0);
    }
    let v = BigInt(small >>> 0);
    for (let i = 4; i < 10; i++) {
      const byte = this.u8();
      if (i === 9 && byte > 0x01) this.fail("u64 varint overflow");
      v |= BigInt(byte & 0x7f) << BigInt(7 * i);
      if (byte < 0x80) return v;
    }
    return this.fail("u64 varint too long");
  }
  len() {
    const n = this.u32();
    if (n > this.b.length - this.at) this.fail(`length ${n} past the end`);
    return n;
  }
  bytes() {
    const n = this.len();
    // A Uint8Array view (as jco lifts list<u8>), not a Buffer.
    const out = new Uint8Array(this.b.buffer, this.b.byteOffset + this.at, n);
    this.at += n;
    return out;
  }
  str() {
    const n = this.len();
    const b = this.b;
    const start = this.at;
    const end = start + n;
    this.at = end;
    // ASCII (room names, socket ids): one native latin1 slice, no validation needed.
    let ascii = true;
    for (let i = start; i < end; i++) {
      if (b[i] > 0x7f) {
        ascii = false;
        break;
      }
    }
    if (ascii) {
      if (n <= 24) {
        // Short ASCII strings: a JS loop is cheaper than a native slice.
        let out = "";
        for (let i = start; i < end; i++) out += String.fromCharCode(b[i]);
        return out;
      }
      return b.latin1Slice(start, end);
    }
    const raw = b.subarray(start, end);
    if (!isUtf8(raw)) this.fail("string is not UTF-8");
    return b.utf8Slice(start, end);
  }
  option(read) {
    const tag = this.u8();
    if (tag === 0) return undefined;
    if (tag === 1) return read.call(this);
    return this.fail(`bad option tag ${tag}`);
  }
  seq(read) {
    const n = this.u32();
    // Every item takes at least one byte.
    if (n > this.b.length - this.at) this.fail(`sequence of ${n} past the end`);
    const out = new Array(n);
    for (let i = 0; i < n; i++) out[i] = read.call(this);
    return out;
  }
  strs() {
    const n = this.u32();
    if (n === 0) return [];
    if (n > this.b.length - this.at) this.fail(`sequence of ${n} past the end`);
    const out = new Array(n);
    for (let i = 0; i < n; i++) out[i] = this.str();
    return out;
  }
  opts() {
    // Runs of broadcasts to the same targets (a busy room) repeat the same
    // opts bytes: the last decoded opts are reused when the bytes match
    // (decoded values are read-only).
    const start = this.at;
    const last = this.lastOpts;
    if (last !== null) {
      const len = last.end - last.start;
      const b = this.b;
      if (start + len <= b.length) {
        let same = true;
        for (let i = 0; i < len; i++) {
          if (b[start + i] !== b[last.start + i]) {
            same = false;
            break;
          }
        }
        if (same) {
          this.at = start + len;
          return last.value;
        }
      }
    }
    const value = this.readOpts();
    this.lastOpts = { start, end: this.at, value };
    return value;
  }
  readOpts() {
    const rooms = this.strs();
    const except = this.strs();
    // The 16 flag combinations are shared, frozen objects (read-only values).
    let mask = 0;
    for (let i = 0; i < 4; i++) {
      const v = this.u8();
      if (v > 1) this.fail(`bad bool ${v}`);
      mask |= v << i;
    }
    const flags = FLAGS[mask];
    let sid;
    const s = this.u8();
    if (s === 1) sid = this.str();
    else if (s !== 0) this.fail(`bad option tag ${s}`);
    let target;
    const t = this.u8();
    if (t === 1) target = this.u64();
    else if (t !== 0) this.fail(`bad option tag ${t}`);
    return { rooms, except, flags, sid, target };
  }
  ack() {
    return { sid: this.str(), payload: this.bytes() };
  }
  socketInfo() {
    return { id: this.str(), node: this.u64(), rooms: this.strs(), handshake: this.bytes(), data: this.bytes() };
  }
  localOp() {
    const tag = this.u32();
    switch (tag) {
      case 0:
        return { tag: "broadcast", val: [this.opts(), this.bytes()] };
      case 1:
        return { tag: "broadcast-with-ack", val: [this.u64(), this.opts(), this.bytes(), this.u32()] };
      case 2:
        return { tag: "join", val: [this.opts(), this.strs()] };
      case 3:
        return { tag: "leave", val: [this.opts(), this.strs()] };
      case 4:
        return { tag: "disconnect", val: [this.opts(), this.bool()] };
      case 5:
        return { tag: "fetch-sockets", val: [this.u64(), this.opts()] };
      case 6:
        return { tag: "fetch-rooms", val: [this.u64(), this.opts()] };
      default:
        return this.fail(`unknown local-op ${tag}`);
    }
  }
  requestValue() {
    const tag = this.u32();
    switch (tag) {
      case 0:
        return { tag: "sockets", val: this.seq(this.socketInfo) };
      case 1:
        return { tag: "rooms", val: this.strs() };
      case 2:
        return { tag: "replies", val: this.seq(this.bytes) };
      case 3:
        return { tag: "acks", val: this.seq(this.ack) };
      default:
        return this.fail(`unknown request-value ${tag}`);
    }
  }
  effect() {
    const tag = this.u32();
    switch (tag) {
      case 0:
        return { tag: "publish", val: this.bytes() };
      case 1:
        return { tag: "send", val: [this.u64(), this.bytes()] };
      case 2:
        return { tag: "apply", val: this.localOp() };
      case 3:
        return {
          tag: "deliver",
          val: { sids: this.strs(), packet: this.bytes(), ack: this.option(this.u64), volatile: this.bool(), compress: this.bool() },
        };
      case 4:
        return { tag: "disconnect", val: [this.strs(), this.bool()] };
      case 5:
        return { tag: "rooms-changed", val: [this.strs(), this.strs(), this.bool()] };
      case 6:
        return { tag: "server-event", val: [this.bytes(), this.option(this.u64)] };
      case 7:
        return { tag: "ack-received", val: [this.u64(), this.ack()] };
      case 8:
        return { tag: "complete", val: { id: this.u64(), error: this.option(this.str), value: this.requestValue() } };
      case 9:
        return { tag: "node-up", val: this.u64() };
      case 10:
        return { tag: "node-down", val: this.u64() };
      default:
        return this.fail(`unknown effect ${tag}`);
    }
  }
  frameError() {
    const tag = this.u32();
    switch (tag) {
      case 0:
        return { tag: "empty" };
      case 1:
        return { tag: "too-large", val: this.u32() };
      case 2:
        return { tag: "unsupported-version", val: this.u8() };
      case 3:
        return { tag: "malformed", val: this.str() };
      default:
        return this.fail(`unknown frame-error ${tag}`);
    }
  }
}

/**
 * Decodes a packed result into `{effects, errors}`, in order. Throws a
 * `PackedError` when the bytes are not a packed result.
 */
export function decodePacked(bytes) {
  if (bytes.length === 0) throw new PackedError("empty packed result");
  if (bytes[0] !== PACKED_VERSION) throw new PackedError(`packed result version ${bytes[0]}`);
  const r = new Reader(Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  r.at = 1;
  const effects = [];
  const errors = [];
  while (r.at < bytes.length) {
    const item = r.u32();
    if (item === 0) effects.push(r.effect());
    else if (item === 1) errors.push(r.frameError());
    else r.fail(`unknown item ${item}`);
  }
  return { effects, errors };
}

/** Frames as one batch: each prefixed by its length (u32 LE). */
export function packBatch(frames) {
  let size = 0;
  for (const f of frames) size += 4 + f.length;
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  for (const f of frames) {
    out.writeUInt32LE(f.length, at);
    out.set(f, at + 4);
    at += 4 + f.length;
  }
  return out;
}

/** Text of a frame error, as `FrameError`'s `Display`. */
export function frameErrorText(e) {
  switch (e.tag) {
    case "empty":
      return "empty frame";
    case "too-large":
      return `frame too large: ${e.val} bytes`;
    case "unsupported-version":
      return `unsupported frame version ${e.val}`;
    case "malformed":
      return `malformed frame: ${e.val}`;
    default:
      return String(e.tag);
  }
}
