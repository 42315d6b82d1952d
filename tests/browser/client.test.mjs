// The browser client the demo serves (host/demo-page/socket.io.min.js) is
// the official build of the pinned npm package, byte for byte, and the Rust
// host names the same version (CLIENT_VERSION in host/src/sioxide/page.rs).
// Updating: bump socket.io-client in tests/browser/package.json, `npm
// install`, copy node_modules/socket.io-client/dist/socket.io.min.js to
// host/demo-page/, and set CLIENT_VERSION.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { test } from "node:test";
import { PAGE_DIR } from "./harness.mjs";

const require = createRequire(import.meta.url);

test("the committed socket.io.min.js is the pinned socket.io-client's dist file", () => {
  const pkgJson = require.resolve("socket.io-client/package.json");
  const pkg = JSON.parse(readFileSync(pkgJson, "utf8"));
  const lock = JSON.parse(readFileSync(new URL("./package-lock.json", import.meta.url), "utf8"));
  assert.equal(lock.packages["node_modules/socket.io-client"].version, pkg.version, "npm ci installed the locked version");
  const dist = readFileSync(new URL("dist/socket.io.min.js", `file://${pkgJson}`));
  const committed = readFileSync(`${PAGE_DIR}socket.io.min.js`);
  assert.ok(committed.equals(dist), `host/demo-page/socket.io.min.js differs from socket.io-client ${pkg.version}'s dist/socket.io.min.js`);
  assert.match(committed.subarray(0, 200).toString(), new RegExp(`Socket\\.IO v${pkg.version.replace(/\./g, "\\.")}[\\s\\S]*Released under the MIT License`));
  const rust = readFileSync(new URL("../../host/src/sioxide/page.rs", import.meta.url), "utf8");
  assert.match(rust, new RegExp(`pub const CLIENT_VERSION: &str = "${pkg.version.replace(/\./g, "\\.")}";`));
});
