// Checks a running cluster the way a newcomer would after the README's main
// command: the official client connects to the public port, over websocket
// and over polling, until `whoami` has answered from every worker that
// `server_count` reports.
//
//   node tests/ci/every-worker.mjs [URL] [--timeout-ms 600000]
//
// Waits (polling the port) until the cluster answers, so it can be started
// right after the command that builds and starts the cluster. Exits 0 when
// every worker answered on both transports, 1 otherwise.
import { io } from "socket.io-client";

const args = process.argv.slice(2);
const url = args.find((a) => !a.startsWith("--")) ?? "http://127.0.0.1:3000";
const ti = args.indexOf("--timeout-ms");
const deadline = Date.now() + (ti >= 0 ? Number(args[ti + 1]) : 600_000);

function connect(transport) {
  const socket = io(url, { transports: [transport], forceNew: true, reconnection: false, timeout: 5000 });
  return new Promise((resolve, reject) => {
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", (e) => {
      socket.close();
      reject(e);
    });
  });
}

const call = (socket, ev) => socket.timeout(5000).emitWithAck(ev);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Wait for the port (the main command may still be building).
let probe;
for (;;) {
  try {
    probe = await connect("websocket");
    break;
  } catch (e) {
    if (Date.now() > deadline) {
      console.error(`no cluster at ${url}: ${e.message}`);
      process.exit(1);
    }
    await sleep(1000);
  }
}
// Every worker must be up and known to the adapter: wait until the count is
// stable for a second (workers start one after the other).
let expected = 0;
for (let stable = 0; stable < 2; ) {
  const n = await call(probe, "server_count");
  if (n === expected) stable++;
  else {
    expected = n;
    stable = 0;
  }
  await sleep(500);
}
probe.close();
console.log(`server_count: ${expected}`);

let ok = true;
for (const transport of ["websocket", "polling"]) {
  const seen = new Map();
  const sockets = [];
  // Least-connection and round-robin both spread consecutive sessions, so
  // 4 clients per worker are plenty; bound the attempts anyway.
  for (let i = 0; i < expected * 4 && seen.size < expected; i++) {
    const s = await connect(transport);
    sockets.push(s);
    const who = await call(s, "whoami");
    seen.set(who.worker, who.pid);
  }
  for (const s of sockets) s.close();
  const list = [...seen].sort((a, b) => a[0] - b[0]).map(([w, p]) => `worker ${w} (pid ${p})`);
  console.log(`${transport}: whoami answered from ${list.join(", ")}`);
  if (seen.size !== expected) {
    console.error(`${transport}: ${seen.size} of ${expected} workers answered`);
    ok = false;
  }
}
process.exit(ok ? 0 : 1);
