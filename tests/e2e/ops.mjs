// Helpers of the operations tests (metrics, graceful drain, rolling
// restart): scrape the primary's Prometheus metrics and read them with a
// Prometheus text parser, clients that reconnect on their own, waiting.
import { io } from "socket.io-client";
import parsePrometheusTextFormat from "parse-prometheus-text-format";
import { call, sleep } from "./cluster.mjs";

/** The metrics URL of a cluster started with `--metrics 127.0.0.1:0` (from its log). */
export function metricsUrl(cluster) {
  const m = cluster.log.join("").match(/metrics on (http:\/\/127\.0\.0\.1:\d+\/metrics)/);
  if (!m) throw new Error(`no metrics line in the log:\n${cluster.log.join("")}`);
  return m[1];
}

/** Scrapes `url` and parses the text with parse-prometheus-text-format. */
export async function scrape(url) {
  const res = await fetch(url);
  if (res.status !== 200) throw new Error(`GET ${url}: ${res.status}`);
  const type = res.headers.get("content-type") ?? "";
  if (!type.startsWith("text/plain; version=0.0.4")) throw new Error(`content-type ${type}`);
  const text = await res.text();
  return { text, families: parsePrometheusTextFormat(text) };
}

/**
 * The value of sample `name` whose labels include `labels` (counters by
 * their `_total` name), as a Number; undefined when absent.
 */
export function value(scraped, name, labels = {}) {
  const fam = scraped.families.find((f) => f.name === name);
  if (!fam) return undefined;
  const m = fam.metrics.find((s) => Object.entries(labels).every(([k, v]) => (s.labels ?? {})[k] === String(v)));
  return m === undefined ? undefined : Number(m.value);
}

/** Polls `fn` (async allowed) until it returns a truthy value; throws after `ms`. */
export async function until(fn, ms, what) {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    last = await fn();
    if (last) return last;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(50);
  }
}

/**
 * A client that reconnects on its own (the official client's default
 * backoff, shortened) and, on every (re)connect, joins `rooms` and learns
 * its worker. `lives` records each connection: worker, pid, when it was
 * joined and when it ended, with the disconnect reason.
 */
export function reconnecting(url, transport, rooms = []) {
  const socket = io(url, {
    transports: [transport],
    forceNew: true,
    reconnection: true,
    reconnectionDelay: 100,
    reconnectionDelayMax: 500,
    randomizationFactor: 0,
    timeout: 10_000,
  });
  socket.lives = [];
  socket.on("connect", async () => {
    const life = { id: socket.id, start: Date.now(), joined: null, end: null, reason: null };
    socket.lives.push(life);
    try {
      const me = await call(socket, "whoami");
      Object.assign(life, me);
      socket.worker = me.worker;
      socket.pid = me.pid;
      for (const r of rooms) await call(socket, "join", r);
      life.joined = Date.now();
    } catch (e) {
      life.error = e.message;
    }
  });
  socket.on("disconnect", (reason) => {
    const life = socket.lives[socket.lives.length - 1];
    if (life && life.end === null) {
      life.end = Date.now();
      life.reason = reason;
    }
  });
  return socket;
}

/** The life of `socket` that was connected and joined at time `t`, if any. */
export function lifeAt(socket, t) {
  return socket.lives.find((l) => l.joined !== null && l.joined <= t && (l.end === null || l.end > t));
}
