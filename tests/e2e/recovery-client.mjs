// The official client's side of the connection state recovery suites
// (recovery.test.mjs on one machine, redis-recovery.mjs across two): a
// client whose reconnection the test drives, and the checks of a restore.
import assert from "node:assert/strict";
import { io } from "socket.io-client";
import { call, sleep } from "./cluster.mjs";

/** Resolves once `pred()` holds, polling; rejects after `ms`. */
export async function waitFor(pred, ms, what) {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

async function whoami(s) {
  s.me = await call(s, "whoami");
  s.worker = s.me.worker;
  s.workerPid = s.me.pid;
}

/** A websocket client of `url` recording its `ev` events; reconnection is driven by the test. */
export async function client(url) {
  const s = io(url, { transports: ["websocket"], forceNew: true, reconnection: false, timeout: 10_000 });
  await new Promise((resolve, reject) => {
    s.once("connect", resolve);
    s.once("connect_error", reject);
  });
  s.events = [];
  s.on("ev", (...args) => s.events.push(args));
  await whoami(s);
  return s;
}

/** Closes the transport and waits for the client's `disconnect`. */
export async function drop(s) {
  const gone = new Promise((resolve) => s.once("disconnect", resolve));
  s.io.engine.close();
  const reason = await gone;
  // The client calls its own close "forced close"; the server sees "transport close" (recoverable).
  assert.ok(["forced close", "transport close"].includes(reason), reason);
}

/** Reconnects (the client sends its pid and last offset) and waits for `connect`. */
export async function reconnect(s) {
  const back = new Promise((resolve, reject) => {
    s.once("connect", resolve);
    s.once("connect_error", reject);
  });
  s.connect();
  await back;
  await whoami(s);
}

/** Sends `ev` payloads `from..to-1` to room `room` from `sender`, then waits for them to be published. */
export async function send(sender, room, from, to) {
  for (let i = from; i < to; i++) sender.emit("to", room, "ev", i);
  await call(sender, "whoami"); // after the events on that worker: published
}

/** Waits for exactly `expected` payloads on `s`, in order, then checks nothing more comes. */
export async function expectEvents(s, expected, ms = 5000) {
  await waitFor(() => s.events.length >= expected.length, ms, `${expected.length} events (got ${s.events.length})`);
  await sleep(300);
  const payloads = s.events.map((a) => a[0]);
  assert.deepEqual(payloads, expected, "every packet once, in order");
  for (const args of s.events) {
    assert.equal(args.length, 2, "the offset is the last argument");
    assert.match(args[1], /^[0-9a-f]{16}-\d+(\.[0-9a-f]{16}-\d+)*$/);
  }
}

/** `c` was restored as `sid`, in `room`, with the data the suites set. */
export async function checkRestored(c, room, sid) {
  assert.equal(c.recovered, true, "socket.recovered");
  assert.equal(c.id, sid, "same socket id");
  const st = await call(c, "state");
  assert.equal(st.recovered, true);
  assert.deepEqual(st.data, { user: "ada", n: 1 });
  assert.deepEqual(st.rooms, [room, sid].sort());
}
