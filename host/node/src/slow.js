// Slow consumers for socket.io 4.8 (engine.io 6.6): a cap on the bytes
// waiting to be written to one client and a time limit for a client that
// takes nothing while bytes wait for it; the same policy, defaults and
// environment variables as the Rust workers (host/src/sioxide/slow.rs).
//
// socket.io buffers without bound: engine.io keeps a client's packets in
// `conn.writeBuffer` while its transport is not writable (a WebSocket whose
// last send has not reached the kernel, a polling client without a pending
// GET), and ws/net keep the batch in flight in the TCP socket's writable
// buffer. Here both are measured exactly, every `checkMs`:
//
//   queued = Σ writeBuffer packet sizes + the raw socket's writableLength
//
// A client over `maxQueuedBytes`, or with bytes queued and no progress (no
// byte written, no drain) for `stallMs`, is closed with its buffer discarded
// (`conn.close(true)`, then the WebSocket is terminated, which frees its
// socket buffer at once; socket.io reports "forced close"), counted, and
// logged on stderr at powers of two of each count. Other clients are not
// touched.

/** The defaults: 16 MiB queued, 20 s without progress, checked every 250 ms. */
export const SLOW_DEFAULTS = Object.freeze({ maxQueuedBytes: 16 << 20, stallMs: 20_000, checkMs: 250 });

/**
 * The policy from `SIO_CLIENT_MAX_BYTES` (bytes, `0` turns it off) and
 * `SIO_CLIENT_STALL_MS` (ms, `0` = no time limit); `null` when turned off.
 * Throws on a value that is not a whole number.
 */
export function slowPolicyFromEnv(env = process.env) {
  const num = (name) => {
    const v = env[name];
    if (v === undefined) return undefined;
    const n = Number(v.trim());
    if (v.trim() === "" || !Number.isSafeInteger(n) || n < 0) throw new Error(`${name} must be a whole number, not ${JSON.stringify(v)}`);
    return n;
  };
  const policy = { ...SLOW_DEFAULTS };
  const bytes = num("SIO_CLIENT_MAX_BYTES");
  if (bytes === 0) return null;
  if (bytes !== undefined) policy.maxQueuedBytes = bytes;
  const stall = num("SIO_CLIENT_STALL_MS");
  if (stall !== undefined) policy.stallMs = stall === 0 ? null : stall;
  return policy;
}

function packetBytes(p) {
  const d = p?.data;
  if (d == null) return 1;
  if (typeof d === "string") return Buffer.byteLength(d) + 1;
  return (d.byteLength ?? d.length ?? 0) + 1;
}

function rawSocket(conn) {
  // websocket transport: a ws WebSocket over a net.Socket
  return conn.transport?.socket?._socket ?? null;
}

/** Bytes waiting for one engine.io client (its buffer and its socket's). */
export function queuedBytes(conn) {
  let n = 0;
  for (const p of conn.writeBuffer ?? []) n += packetBytes(p);
  const raw = rawSocket(conn);
  if (raw && typeof raw.writableLength === "number") n += raw.writableLength;
  return n;
}

/**
 * Watches every client of `io` (a socket.io Server) under `policy`
 * (`SLOW_DEFAULTS` merged with it). Returns `{ stats(), stop() }`;
 * `stats()` has `dropped_bytes`, `dropped_stalled`, `clients`,
 * `max_queued_seen` (the names of the Rust workers' `slow_stats`).
 */
export function watchSlowConsumers(io, policy = {}) {
  const p = { ...SLOW_DEFAULTS, ...policy };
  const stats = { dropped_bytes: 0, dropped_stalled: 0, clients: 0, max_queued_seen: 0 };
  const seen = new WeakMap(); // conn -> { written, buffered, at }
  const log = (key, conn, why) => {
    const n = ++stats[key];
    if ((n & (n - 1)) === 0) {
      process.stderr.write(`slow consumer disconnected (${key === "dropped_bytes" ? "bytes" : "stalled"}): total=${n} sid=${conn.id} reason="${why}" cap=${p.maxQueuedBytes}\n`);
    }
  };
  const cut = (conn, key, why) => {
    log(key, conn, why);
    const ws = conn.transport?.socket;
    try {
      conn.close(true);
    } finally {
      if (ws && typeof ws.terminate === "function") ws.terminate();
    }
  };
  const check = () => {
    const now = Date.now();
    const clients = io.engine?.clients ?? {};
    let count = 0;
    for (const id in clients) {
      const conn = clients[id];
      count++;
      const q = queuedBytes(conn);
      if (q > stats.max_queued_seen) stats.max_queued_seen = q;
      const raw = rawSocket(conn);
      const written = raw?.bytesWritten ?? 0;
      const buffered = conn.writeBuffer?.length ?? 0;
      let s = seen.get(conn);
      if (!s || q === 0 || written !== s.written || buffered < s.buffered) {
        s = { written, buffered, at: now };
        seen.set(conn, s);
      } else s.buffered = buffered;
      if (q > p.maxQueuedBytes) cut(conn, "dropped_bytes", `${q} bytes queued, over the per-client cap`);
      else if (p.stallMs != null && q > 0 && now - s.at >= p.stallMs) cut(conn, "dropped_stalled", `no progress for ${now - s.at} ms with bytes queued`);
    }
    stats.clients = count;
  };
  const timer = setInterval(check, p.checkMs);
  timer.unref();
  return {
    stats: () => ({ ...stats }),
    stop: () => clearInterval(timer),
  };
}
