// Checks a running cluster the way a newcomer would after a README command:
// the official client connects to the public port, over websocket and over
// polling, until `whoami` has answered from every worker that `server_count`
// reports.
//
//   node tests/ci/every-worker.mjs [URL ...] [--timeout-ms 600000]
//
// Several URLs are the primaries of one cluster (machines joined through
// Redis): each must report the same `server_count`, and the workers reached
// through all of them together must be that many (a worker is its URL and
// its index). Waits (polling each port) until the cluster answers, so it can
// be started right after the command that builds and starts the cluster.
// Exits 0 when every worker answered on both transports, 1 otherwise.
import { io } from "socket.io-client";

const args = process.argv.slice(2);
const urls = [];
let timeoutMs = 600_000;
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--timeout-ms") timeoutMs = Number(args[++i]);
  else if (args[i].startsWith("--")) {
    console.error(`every-worker: unknown option ${args[i]}`);
    process.exit(2);
  } else urls.push(args[i]);
}
if (urls.length === 0) urls.push("http://127.0.0.1:3000");
if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
  console.error("every-worker: --timeout-ms must be a positive number");
  process.exit(2);
}
const deadline = Date.now() + timeoutMs;

function connect(url, transport) {
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

// Wait for each port (the command may still be building).
const probes = [];
for (const url of urls) {
  for (;;) {
    try {
      probes.push(await connect(url, "websocket"));
      break;
    } catch (e) {
      if (Date.now() > deadline) {
        console.error(`no cluster at ${url}: ${e.message}`);
        process.exit(1);
      }
      await sleep(1000);
    }
  }
}
// Every worker must be up and known to the adapter, through every URL: wait
// until the counts agree and stay the same for a second (workers start one
// after the other, and machines learn of each other through Redis).
let expected = 0;
for (let stable = 0; stable < 2; ) {
  const counts = [];
  for (const p of probes) counts.push(await call(p, "server_count"));
  const n = counts.every((c) => c === counts[0]) ? counts[0] : -1;
  if (n === expected && n > 0) stable++;
  else {
    expected = n;
    stable = 0;
    if (Date.now() > deadline) {
      console.error(`server_count never settled: ${JSON.stringify(counts)} through ${urls.join(", ")}`);
      process.exit(1);
    }
  }
  await sleep(500);
}
for (const p of probes) p.close();
console.log(`server_count: ${expected}${urls.length > 1 ? ` through each of ${urls.join(", ")}` : ""}`);

let ok = true;
for (const transport of ["websocket", "polling"]) {
  const seen = new Map();
  const sockets = [];
  for (const url of urls) {
    // Least-connection and round-robin both spread consecutive sessions, so
    // 4 clients per worker are plenty; bound the attempts anyway. At least
    // one client per URL: primaries that do not form one cluster show up as
    // more workers than `server_count`.
    for (let i = 0; i < expected * 4 && (i === 0 || seen.size < expected); i++) {
      const s = await connect(url, transport);
      sockets.push(s);
      const who = await call(s, "whoami");
      seen.set(urls.length > 1 ? `${url} worker ${who.worker}` : `worker ${who.worker}`, who.pid);
    }
  }
  for (const s of sockets) s.close();
  const list = [...seen].sort((a, b) => (a[0] < b[0] ? -1 : 1)).map(([w, p]) => `${w} (pid ${p})`);
  console.log(`${transport}: whoami answered from ${list.join(", ")}`);
  if (seen.size !== expected) {
    console.error(`${transport}: ${seen.size} of ${expected} workers answered`);
    ok = false;
  }
}
process.exit(ok ? 0 : 1);
