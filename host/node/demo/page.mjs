// The demo page for the Node demo worker: the same files and the same HTTP
// answers as the Rust demo worker (host/src/sioxide/page.rs): `GET`/`HEAD`
// of `/` (also `/index.html`), `/app.js` and `/socket.io.min.js` (the
// official browser client, committed in host/demo-page/), with
// Content-Type, Content-Length, a strong ETag (304 on If-None-Match) and
// `Cache-Control: no-cache`; other paths 404, other methods 405.
//
// And the CORS policy of `demo --cors-origin` (SIO_DEMO_CORS_ORIGIN:
// comma-separated origins, or `*`), as socket.io's `cors` option.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import http from "node:http";

const DIR = new URL("../../demo-page/", import.meta.url);

/** The page's files: URL path -> { body, type, etag }. */
export const ASSETS = new Map(
  [
    ["/", "index.html", "text/html; charset=utf-8"],
    ["/app.js", "app.js", "text/javascript; charset=utf-8"],
    ["/socket.io.min.js", "socket.io.min.js", "text/javascript; charset=utf-8"],
  ].map(([path, file, type]) => {
    const body = readFileSync(new URL(file, DIR));
    const etag = `"${createHash("sha256").update(body).digest("hex").slice(0, 24)}"`;
    return [path, { body, type, etag }];
  }),
);

function text(res, status, body, headers = {}) {
  res.writeHead(status, {
    "content-type": "text/plain; charset=utf-8",
    "content-length": Buffer.byteLength(body),
    ...headers,
  });
  res.end(body);
}

/** Answers a request socket.io did not take (not under `/socket.io/`). */
export function servePage(req, res) {
  let path;
  try {
    path = new URL(req.url ?? "/", "http://x").pathname;
  } catch {
    return text(res, 400, "Bad Request\n");
  }
  const asset = ASSETS.get(path === "/index.html" ? "/" : path);
  if (!asset) return text(res, 404, "Not Found\n");
  if (req.method !== "GET" && req.method !== "HEAD") {
    return text(res, 405, "Method Not Allowed\n", { allow: "GET, HEAD" });
  }
  const cache = { etag: asset.etag, "cache-control": "no-cache" };
  const inm = req.headers["if-none-match"];
  if (inm && inm.split(",").some((t) => { t = t.trim().replace(/^W\//, ""); return t === "*" || t === asset.etag; })) {
    res.writeHead(304, cache);
    return res.end();
  }
  res.writeHead(200, {
    ...cache,
    "content-type": asset.type,
    "content-length": asset.body.length,
    "x-content-type-options": "nosniff",
  });
  res.end(req.method === "HEAD" ? undefined : asset.body);
}

/** A new HTTP server serving the page (socket.io attaches to it). */
export function pageServer() {
  return http.createServer(servePage);
}

const ORIGIN = /^https?:\/\/[^/?#@,\s]+$/;

/**
 * socket.io's `cors` option from SIO_DEMO_CORS_ORIGIN (undefined when unset
 * or empty: no origin but the cluster's own). Throws on a malformed origin.
 */
export function corsFromEnv(value = process.env.SIO_DEMO_CORS_ORIGIN) {
  const origins = (value ?? "").split(",").map((o) => o.trim()).filter(Boolean);
  if (origins.length === 0) return undefined;
  for (const o of origins) {
    if (o !== "*" && !ORIGIN.test(o)) throw new Error(`SIO_DEMO_CORS_ORIGIN: invalid origin ${JSON.stringify(o)}`);
  }
  // The `cors` package's defaults otherwise: requested headers allowed,
  // preflights answered 204, no credentials (the demo uses no cookies).
  return { origin: origins.includes("*") ? "*" : origins, methods: ["GET", "POST"] };
}
