// Socket ids both runtimes can read. socketioxide's `Sid` (engineioxide-core
// 0.2.3 `sid.rs`) is exactly 16 bytes of `[A-Za-z0-9_-]`: 12 random bytes in
// URL-safe base64 without padding. socket.io 4.8's ids are 20 characters
// (15 bytes: 12 random + a 3-byte counter), which the Rust host cannot parse
// (it drops such sockets from fetch results and their acks). The Node host
// therefore generates socketioxide ids, for Socket.IO socket ids and for
// Engine.IO session ids alike.
//
// Hook: socket.io 4.8 takes socket ids (and connection-state-recovery pids)
// from the singleton `base64id` of its `dist/contrib/base64id.js`
// (`socket.js`: `this.id = base64id.generateId()`), and engine.io 6.6 takes
// session ids from `Server.prototype.generateId` (which uses its own
// `build/contrib/base64id.js`). `installIds()` replaces `generateId` on both
// singletons of the socket.io this package resolves (the peer dependency),
// process-wide; `checkIds()` verifies that it took.
import { randomBytes } from "node:crypto";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

const SID = /^[A-Za-z0-9_-]{16}$/;

/** True when socketioxide's `Sid::from_str` accepts `id`. */
export function isSocketioxideId(id) {
  return typeof id === "string" && SID.test(id);
}

const POOL = 12 * 256;
let pool = Buffer.alloc(0);
let at = POOL;

/** A new id: 12 random bytes, URL-safe base64 without padding (16 characters). */
export function newId() {
  if (at + 12 > pool.length) {
    pool = randomBytes(POOL);
    at = 0;
  }
  const id = pool.toString("base64url", at, at + 12);
  at += 12;
  return id;
}

let installed = null;

function base64idOf(req, pkg, file) {
  const main = req.resolve(pkg);
  // socket.io: <pkg>/dist/index.js; engine.io: <pkg>/build/engine.io.js.
  const mod = req(join(dirname(main), file));
  if (!mod?.base64id || typeof mod.base64id.generateId !== "function") {
    throw new Error(`${pkg}: ${file} has no base64id.generateId (unsupported version?)`);
  }
  return { mod: mod.base64id, path: req.resolve(join(dirname(main), file)) };
}

/**
 * Makes socket.io and engine.io generate socketioxide-compatible ids
 * (idempotent). Returns the paths of the patched modules.
 */
export function installIds() {
  if (installed) return installed;
  const req = createRequire(import.meta.url);
  const sio = base64idOf(req, "socket.io", "contrib/base64id.js");
  const reqSio = createRequire(req.resolve("socket.io"));
  const eio = base64idOf(reqSio, "engine.io", "contrib/base64id.js");
  sio.mod.generateId = newId;
  eio.mod.generateId = newId;
  installed = { socketio: sio.path, engineio: eio.path };
  checkIds();
  return installed;
}

/** Throws unless socket.io and engine.io now generate socketioxide ids. */
export function checkIds() {
  const req = createRequire(import.meta.url);
  const sio = base64idOf(req, "socket.io", "contrib/base64id.js");
  const eio = base64idOf(createRequire(req.resolve("socket.io")), "engine.io", "contrib/base64id.js");
  for (const [name, m] of [["socket.io", sio.mod], ["engine.io", eio.mod]]) {
    const id = m.generateId();
    if (!isSocketioxideId(id)) throw new Error(`${name} still generates ids like ${JSON.stringify(id)}`);
  }
}
