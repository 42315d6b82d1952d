// Worker start-up time: how long a demo worker takes from being spawned to
// being attached to the hub and serving, at the first start and after
// `kill -9` (median of N respawns).
//
//   node bench/respawn.mjs [BIN] [--workers 2] [--kills 10] [-- extra demo args]
//
// BIN defaults to target/release/sio-cluster-host. The figures come from the
// primary's own log timestamps ("worker started" -> "worker attached" ->
// "demo worker serving"), so process scheduling by this script does not
// enter them. No dependencies beyond Node.
import { spawn } from "node:child_process";

const argv = process.argv.slice(2);
const dash = argv.indexOf("--");
const extra = dash >= 0 ? argv.slice(dash + 1) : [];
const own = dash >= 0 ? argv.slice(0, dash) : argv;
function opt(name, def) {
  const i = own.indexOf(name);
  if (i < 0) return def;
  const v = own[i + 1];
  own.splice(i, 2);
  return v;
}
const workers = Number(opt("--workers", "2"));
const kills = Number(opt("--kills", "10"));
const bin = own[0] ?? "target/release/sio-cluster-host";

// Strip ANSI colours and read tracing's RFC 3339 timestamp.
const ANSI = /\x1b\[[0-9;]*m/g;
function parse(line) {
  const clean = line.replace(ANSI, "");
  const ts = clean.match(/^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z/);
  if (!ts) return null;
  // Date keeps ms; tracing prints µs: keep them.
  const [whole, frac] = ts[1].split(".");
  const micros = Date.parse(whole + "Z") * 1000 + Number(frac.padEnd(6, "0").slice(0, 6));
  return { micros, text: clean };
}

const child = spawn(bin, ["demo", "--workers", String(workers), "--port", "0", "--bind", "127.0.0.1", ...extra], {
  stdio: ["ignore", "ignore", "pipe"],
  env: { ...process.env, RUST_LOG: "info", NO_COLOR: "1" },
});
const events = [];
let waiters = [];
let buf = "";
child.stderr.on("data", (chunk) => {
  buf += chunk.toString();
  let nl;
  while ((nl = buf.indexOf("\n")) >= 0) {
    const line = buf.slice(0, nl);
    buf = buf.slice(nl + 1);
    const ev = parse(line);
    if (!ev) continue;
    events.push(ev);
    waiters = waiters.filter((w) => !w(ev));
  }
});
child.on("exit", (code) => {
  if (!stopping) {
    console.error(`primary exited with ${code}`);
    process.exit(1);
  }
});
let stopping = false;

// Resolves with the first event at or after index `from` matching `pred`
// (events already seen count: one log chunk can hold several lines).
function waitFor(pred, from = 0, ms = 30_000) {
  const past = events.slice(from).find(pred);
  if (past) return Promise.resolve(past);
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error("timed out waiting for the cluster")), ms);
    waiters.push((ev) => {
      if (!pred(ev)) return false;
      clearTimeout(t);
      resolve(ev);
      return true;
    });
  });
}
const field = (text, name) => text.match(new RegExp(`\\b${name}=(\\S+)`))?.[1];

// One start of worker `index`: started (with pid) -> attached -> serving.
async function oneStart(index, from) {
  const started = await waitFor((e) => e.text.includes("worker started") && field(e.text, "worker") === String(index), from);
  const pid = field(started.text, "pid");
  const at = events.indexOf(started);
  const attached = await waitFor((e) => e.text.includes("worker attached") && field(e.text, "worker") === String(index), at);
  const serving = await waitFor((e) => e.text.includes("demo worker serving") && field(e.text, "worker") === String(index), at);
  return {
    pid: Number(pid),
    attachedMs: (attached.micros - started.micros) / 1000,
    servingMs: (serving.micros - started.micros) / 1000,
  };
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

try {
  const firsts = await Promise.all([...Array(workers).keys()].map((i) => oneStart(i, 0)));
  let victim = firsts[workers - 1];
  const respawns = [];
  for (let k = 0; k < kills; k++) {
    // Let the backoff of the previous restart reset between kills is not
    // needed: the figures start at "worker started", after the backoff.
    const next = oneStart(workers - 1, events.length);
    process.kill(victim.pid, "SIGKILL");
    victim = await next;
    respawns.push(victim);
  }
  const result = {
    bin,
    workers,
    first: firsts.map((f) => ({ attached_ms: f.attachedMs, serving_ms: f.servingMs })),
    respawn_attached_ms: respawns.map((r) => r.attachedMs),
    respawn_serving_ms: respawns.map((r) => r.servingMs),
    median_respawn_attached_ms: median(respawns.map((r) => r.attachedMs)),
    median_respawn_serving_ms: median(respawns.map((r) => r.servingMs)),
    compiled_note: events.filter((e) => /precompiled|compil/i.test(e.text)).slice(0, 3).map((e) => e.text),
  };
  console.log(JSON.stringify(result, null, 2));
} finally {
  stopping = true;
  child.kill("SIGTERM");
}
