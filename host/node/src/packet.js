// Packet bytes shared by every host (`host/src/sioxide/packet.rs`):
//
//   packet     := text-len:u32le text attachment*
//   attachment := len:u32le bytes
//
// `text` is the Socket.IO v5 text encoding (socket.io-parser's `Encoder`
// output), the attachments its binary parts in placeholder order. Ack
// payloads and server-side-emit payloads use the same layout with the JSON of
// an argument array as text (binary arguments as `_placeholder` objects).
import { Decoder, PacketType } from "socket.io-parser";

/** socket.io-parser's default limit is 10; `packet.rs` allows 1024. */
export const MAX_ATTACHMENTS = 1024;

export class PacketError extends Error {
  constructor(message) {
    super(message);
    this.name = "PacketError";
  }
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** `[text, ...attachments]` (socket.io-parser `Encoder.encode` output) as packet bytes. */
export function layout(parts) {
  const text = Buffer.from(parts[0], "utf8");
  let size = 4 + text.length;
  for (let i = 1; i < parts.length; i++) size += 4 + parts[i].byteLength;
  const out = Buffer.allocUnsafe(size);
  out.writeUInt32LE(text.length, 0);
  text.copy(out, 4);
  let at = 4 + text.length;
  for (let i = 1; i < parts.length; i++) {
    const a = toBytes(parts[i]);
    out.writeUInt32LE(a.length, at);
    out.set(a, at + 4);
    at += 4 + a.length;
  }
  return out;
}

/** Packet bytes back into `[text, ...attachments]`; throws a `PacketError`. */
export function split(bytes) {
  const b = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (b.length < 4) throw new PacketError("packet truncated");
  const tlen = b.readUInt32LE(0);
  if (tlen > b.length - 4) throw new PacketError("packet truncated");
  let text;
  try {
    text = utf8.decode(b.subarray(4, 4 + tlen));
  } catch {
    throw new PacketError("packet text is not UTF-8");
  }
  const parts = [text];
  let at = 4 + tlen;
  while (at < b.length) {
    if (parts.length > MAX_ATTACHMENTS) throw new PacketError("too many attachments");
    if (b.length - at < 4) throw new PacketError("packet truncated");
    const len = b.readUInt32LE(at);
    if (len > b.length - at - 4) throw new PacketError("packet truncated");
    parts.push(b.subarray(at + 4, at + 4 + len));
    at += 4 + len;
  }
  return parts;
}

function toBytes(x) {
  if (Buffer.isBuffer(x)) return x;
  if (x instanceof ArrayBuffer) return Buffer.from(x);
  if (ArrayBuffer.isView(x)) return Buffer.from(x.buffer, x.byteOffset, x.byteLength);
  throw new PacketError("attachment is not binary");
}

const RESERVED = new Set(["connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"]);

/**
 * Reads a text-only EVENT packet (`2[/nsp,][id][...]`) as socket.io-parser
 * would, without its Decoder: the header by hand, the payload with one
 * JSON.parse, the same validity rule (`isPayloadValid`). Returns null when the
 * text is not of that shape (binary packets go through the Decoder).
 */
function textEvent(text) {
  if (text.charCodeAt(0) !== 0x32 /* "2" */) return null;
  let i = 1;
  let nsp = "/";
  if (text.charCodeAt(i) === 0x2f /* "/" */) {
    const comma = text.indexOf(",", i);
    if (comma < 0) return null;
    nsp = text.slice(i, comma);
    i = comma + 1;
  }
  let id;
  const idStart = i;
  while (i < text.length && text.charCodeAt(i) >= 0x30 && text.charCodeAt(i) <= 0x39) i++;
  if (i > idStart) id = Number(text.slice(idStart, i));
  let data;
  try {
    data = JSON.parse(text.slice(i));
  } catch {
    throw new PacketError("socket.io packet: invalid payload");
  }
  const ok = Array.isArray(data) && (typeof data[0] === "number" || (typeof data[0] === "string" && !RESERVED.has(data[0])));
  if (!ok) throw new PacketError("socket.io packet: invalid payload");
  const packet = { type: PacketType.EVENT, nsp, data };
  if (id !== undefined) packet.id = id;
  return packet;
}

/**
 * Decodes packet bytes with socket.io-parser into a packet object; throws a
 * `PacketError` unless the bytes are exactly one valid packet of namespace
 * `nsp` (the text and as many attachments as it announces). Returns
 * `{packet, parts}`: `parts` are the text and attachments as received.
 */
export function decodePacket(bytes, nsp) {
  const parts = split(bytes);
  if (parts.length === 1) {
    const p = textEvent(parts[0]);
    if (p !== null) {
      if (p.nsp !== nsp) throw new PacketError(`socket.io packet of namespace ${JSON.stringify(p.nsp)}, not ${JSON.stringify(nsp)}`);
      return { packet: p, parts };
    }
  }
  let packet = null;
  const d = new Decoder();
  d.on("decoded", (p) => {
    packet = p;
  });
  try {
    for (let i = 0; i < parts.length; i++) {
      if (packet !== null) throw new PacketError("more attachments than the packet announces");
      d.add(parts[i]);
    }
  } catch (e) {
    d.destroy();
    throw e instanceof PacketError ? e : new PacketError(`socket.io packet: ${e.message}`);
  }
  if (packet === null) {
    d.destroy();
    throw new PacketError("socket.io packet: missing binary attachments");
  }
  if (packet.nsp !== nsp) throw new PacketError(`socket.io packet of namespace ${JSON.stringify(packet.nsp)}, not ${JSON.stringify(nsp)}`);
  if (packet.type !== PacketType.EVENT && packet.type !== PacketType.BINARY_EVENT) {
    throw new PacketError(`socket.io packet of type ${packet.type}, not an event`);
  }
  return { packet, parts };
}

function isBinary(x) {
  return Buffer.isBuffer(x) || x instanceof ArrayBuffer || ArrayBuffer.isView(x);
}

function deconstruct(data, buffers) {
  if (isBinary(data)) {
    const num = buffers.length;
    buffers.push(toBytes(data));
    return { _placeholder: true, num };
  }
  if (Array.isArray(data)) {
    const out = new Array(data.length);
    for (let i = 0; i < data.length; i++) out[i] = deconstruct(data[i], buffers);
    return out;
  }
  if (data !== null && typeof data === "object" && !(data instanceof Date)) {
    if (typeof data.toJSON === "function") return deconstruct(data.toJSON(), buffers);
    const out = {};
    for (const key of Object.keys(data)) out[key] = deconstruct(data[key], buffers);
    return out;
  }
  return data;
}

function reconstruct(data, buffers) {
  if (Array.isArray(data)) {
    for (let i = 0; i < data.length; i++) data[i] = reconstruct(data[i], buffers);
    return data;
  }
  if (data !== null && typeof data === "object") {
    if (data._placeholder === true) {
      const ok = Number.isInteger(data.num) && data.num >= 0 && data.num < buffers.length;
      if (!ok) throw new PacketError("placeholder without its attachment");
      return Buffer.from(buffers[data.num]);
    }
    for (const key of Object.keys(data)) data[key] = reconstruct(data[key], buffers);
  }
  return data;
}

/**
 * A value (an ack's argument array, a server-side event `[event, ...args]`,
 * a server-side reply) as packet bytes: its JSON with binary parts as
 * `{"_placeholder":true,"num":N}`, then the binary parts. `undefined`
 * becomes `null`.
 */
export function encodeValue(value) {
  const buffers = [];
  const json = JSON.stringify(deconstruct(value === undefined ? null : value, buffers)) ?? "null";
  return layout([json, ...buffers]);
}

/** An argument array as packet bytes (`encodeValue` of the array). */
export const encodeArgs = encodeValue;

/** Packet bytes made by `encodeArgs` (or the Rust host) back into a value; throws. */
export function decodeValue(bytes) {
  const [text, ...buffers] = split(bytes);
  let v;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new PacketError(`payload is not JSON: ${e.message}`);
  }
  return reconstruct(v, buffers);
}
