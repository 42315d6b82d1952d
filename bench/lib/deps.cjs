"use strict";
// Installs bench/node_modules with `npm ci` (from the committed lock file) when
// it is missing. Shared by every bench script.
const { existsSync } = require("node:fs");
const { execFileSync } = require("node:child_process");
const path = require("node:path");

const BENCH = path.resolve(__dirname, "..");
const NEEDED = ["socket.io", "socket.io-client", "@socket.io/cluster-adapter", "@socket.io/sticky", "@socket.io/redis-adapter", "redis"];

function ensureDeps() {
  const missing = NEEDED.filter((p) => !existsSync(path.join(BENCH, "node_modules", p, "package.json")));
  if (missing.length === 0) return;
  process.stderr.write(`bench: node_modules incomplete (${missing.join(", ")}), running npm ci in ${BENCH}\n`);
  try {
    execFileSync("npm", ["ci", "--no-audit", "--no-fund"], { cwd: BENCH, stdio: ["ignore", 2, 2] });
  } catch (e) {
    process.stderr.write(`bench: npm ci failed in ${BENCH} (${e.message}); install the dependencies with: (cd ${BENCH} && npm ci)\n`);
    process.exit(1);
  }
}

module.exports = { ensureDeps, BENCH };
