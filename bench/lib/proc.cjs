"use strict";
// CPU accounting from /proc (Linux): a process tree's CPU time and the
// machine's total busy time, to tell how much of the 2 cores the cluster, the
// harness and everything else used during a measurement window.
const fs = require("node:fs");

const TICK_US = 1e6 / 100; // USER_HZ is 100 on Linux

function readStat(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    const rest = s.slice(s.lastIndexOf(")") + 2).split(" ");
    // rest[0] = state (field 3); ppid = field 4; utime = 14; stime = 15
    return { ppid: Number(rest[1]), pgid: Number(rest[2]), cpuUs: (Number(rest[11]) + Number(rest[12])) * TICK_US };
  } catch {
    return null;
  }
}

/** CPU time (us) used so far by `root` and all its descendants; null without /proc. */
function treeCpuUs(root) {
  let pids;
  try {
    pids = fs.readdirSync("/proc").filter((d) => /^\d+$/.test(d)).map(Number);
  } catch {
    return null;
  }
  const stats = new Map();
  for (const pid of pids) {
    const st = readStat(pid);
    if (st) stats.set(pid, st);
  }
  if (!stats.has(root)) return null;
  const children = new Map();
  for (const [pid, st] of stats) {
    if (!children.has(st.ppid)) children.set(st.ppid, []);
    children.get(st.ppid).push(pid);
  }
  let total = 0;
  let count = 0;
  const stack = [root];
  while (stack.length) {
    const p = stack.pop();
    total += stats.get(p).cpuUs;
    count++;
    for (const c of children.get(p) || []) stack.push(c);
  }
  return { cpuUs: total, processes: count };
}

/** Machine-wide busy and total time (us) summed over all CPUs; null without /proc. */
function machineCpuUs() {
  try {
    const line = fs.readFileSync("/proc/stat", "utf8").split("\n")[0];
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    const idle = f[3] + (f[4] || 0);
    const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
    return { busyUs: (total - idle) * TICK_US, totalUs: total * TICK_US };
  } catch {
    return null;
  }
}

module.exports = { treeCpuUs, machineCpuUs };
