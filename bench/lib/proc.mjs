// What the bench scripts read of processes and ports (Linux /proc): shared
// by connections.mjs, idle-memory.mjs and soak.mjs.
import { readFileSync, readdirSync } from "node:fs";
import net from "node:net";

/** A free loopback TCP port. */
export function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** RSS (MiB) and open fds of `pid`, or null when it is gone. */
export function procInfo(pid) {
  try {
    const st = readFileSync(`/proc/${pid}/status`, "utf8");
    return {
      rss: Number(st.match(/VmRSS:\s+(\d+)/)?.[1] ?? 0) / 1024,
      fds: readdirSync(`/proc/${pid}/fd`).length,
    };
  } catch {
    return null;
  }
}

/** Parent pid -> child pids, of every process now. */
function children() {
  const kids = new Map();
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const s = readFileSync(`/proc/${d}/stat`, "utf8");
      const ppid = Number(s.slice(s.lastIndexOf(")") + 2).split(" ")[1]);
      if (!kids.has(ppid)) kids.set(ppid, []);
      kids.get(ppid).push(Number(d));
    } catch {}
  }
  return kids;
}

/** The direct children of `pid`. */
export function childrenOf(pid) {
  return children().get(pid) ?? [];
}

/** `root` and all its descendants. */
export function processTree(root) {
  const kids = children();
  const out = [];
  const walk = (p) => {
    out.push(p);
    for (const k of kids.get(p) ?? []) walk(k);
  };
  walk(root);
  return out;
}
