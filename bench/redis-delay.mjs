#!/usr/bin/env node
// Runs a command whose Redis is "far away": a TCP proxy in front of the
// `--redis redis://HOST:PORT` of its arguments holds every chunk for MS ms in
// each direction (a round trip of 2×MS), then the command runs with the
// proxy's URL in place. This machine's kernel has no netem, so the delay is
// made here; Node timers have 1 ms resolution, so MS is a whole number ≥ 1.
//
//   node bench/redis-delay.mjs 1 -- target/release/sio-cluster-host demo --redis redis://127.0.0.1:6379 …
//
// In `bench/redis-compare.mjs`: `--ours "node bench/redis-delay.mjs 1 -- target/release/sio-cluster-host demo --workers 1 --port {P} --redis {R} --cluster-name {K}"`.
// SIGTERM and SIGINT go to the command; the proxy exits with it, with its code.
import net from "node:net";
import { spawn } from "node:child_process";

const argv = process.argv.slice(2);
const sep = argv.indexOf("--");
const ms = Number(argv[0]);
if (sep !== 1 || !Number.isInteger(ms) || ms < 1 || argv.length < 3) {
  console.error("usage: node bench/redis-delay.mjs MS -- COMMAND … --redis redis://HOST:PORT …");
  process.exit(2);
}
const cmd = argv.slice(2);
const at = cmd.indexOf("--redis");
const target = at >= 0 ? /^redis:\/\/([^:/]+):(\d+)\/?$/.exec(cmd[at + 1] ?? "") : null;
if (!target) {
  console.error("redis-delay: the command needs `--redis redis://HOST:PORT` (no user, TLS or path)");
  process.exit(2);
}
const [, host, port] = target;

const server = net.createServer((c) => {
  const u = net.connect(Number(port), host);
  c.setNoDelay(true);
  u.setNoDelay(true);
  // Timers of one delay fire in the order they were set: bytes keep their order.
  const pipe = (from, to) => from.on("data", (d) => setTimeout(() => to.write(d), ms));
  pipe(c, u);
  pipe(u, c);
  const end = () => {
    c.destroy();
    u.destroy();
  };
  for (const s of [c, u]) {
    s.on("error", end);
    s.on("close", () => setTimeout(end, ms));
  }
});
server.listen(0, "127.0.0.1", () => {
  cmd[at + 1] = `redis://127.0.0.1:${server.address().port}`;
  const child = spawn(cmd[0], cmd.slice(1), { stdio: "inherit" });
  for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => child.kill(sig));
  child.on("exit", (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
  child.on("error", (e) => {
    console.error(`redis-delay: ${cmd[0]}: ${e.message}`);
    process.exit(127);
  });
});
