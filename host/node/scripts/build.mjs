// Builds the package's `component/` folder from the adapter component:
//   1. copies the `.wasm` (SIO_CLUSTER_WASM, default the Rust build's output)
//      to component/sio_cluster_adapter.wasm (shipped, so its sha256 can be
//      checked against the one sio-cluster-host embeds);
//   2. transpiles it with the pinned jco (`--instantiation sync`: one
//      instance per namespace, and a fresh one after a trap; no WASI shim:
//      the WASI imports Rust's std adds are given trap stubs at run time);
//   3. checks the generated glue for the per-call regressions of later jco
//      versions, and applies the post-transpile patches (`patchGlue`:
//      list<u8> and short-string lifting/lowering; see README "jco version");
//   4. writes component/manifest.json (sha256 of every file, jco version,
//      how many sites each patch changed).
//
// `--ensure` (pretest, prepack): build only when component/ is missing or
// was built from another `.wasm` than SIO_CLUSTER_WASM's; with no `.wasm` to
// build from, verify the existing component/ folder against its manifest (so
// tests never run and `npm pack` never ships a folder that does not match).
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const out = join(root, "component");
export const NAME = "sio_cluster_adapter";

const sha256 = (buf) => createHash("sha256").update(buf).digest("hex");

/** Known per-call or per-instantiation costs in generated glue (jco >= 1.15). */
export const GLUE_REGRESSIONS = [
  { pattern: /process\??\.env/, why: "reads process.env on every call (jco 1.15+ _debugLog)" },
  { pattern: /WebAssembly\.promising/, why: "calls WebAssembly.promising at instantiation (~13 ms each on Node 20)" },
  { pattern: /createNewCurrentTask/, why: "async task bookkeeping on every sync call (jco 1.17+)" },
];

export function glueProblems(js) {
  return GLUE_REGRESSIONS.filter((r) => r.pattern.test(js)).map((r) => r.why);
}

/**
 * The one post-transpile patch. jco 1.10.2 lifts every `list<u8>` with
 * `new Uint8Array(memory0.buffer.slice(ptr, ptr + len * 1))`:
 * `ArrayBuffer.prototype.slice` on the wasm memory takes V8's generic path
 * (species lookup) and is ~3/4 of a `broadcast` call (two byte lists lifted),
 * measured with --cpu-prof. The patch lifts with a copy into a fresh
 * Uint8Array instead: the same bytes, a Uint8Array of the same length that
 * no one else writes; small ones are views into shared 64 KiB blocks (so
 * their `.buffer` is larger than they are, as with Node's pooled Buffers).
 * Deterministic: every occurrence has this exact shape, and the patch
 * refuses glue where one does not.
 */
export const LIFT_BYTES = "__sioLiftBytes";
const LIFT_HELPER = `// Patched in by host/node/scripts/build.mjs (see there).
let ${LIFT_BYTES}Pool = new ArrayBuffer(65536);
let ${LIFT_BYTES}At = 0;
function ${LIFT_BYTES}(memory, ptr, len) {
  let out;
  if (len > 4096) {
    out = new Uint8Array(len);
  } else {
    // Small lists share 64 KiB blocks, as Node's Buffer pool does: no backing
    // store allocation per list.
    if (${LIFT_BYTES}At + len > 65536) {
      ${LIFT_BYTES}Pool = new ArrayBuffer(65536);
      ${LIFT_BYTES}At = 0;
    }
    out = new Uint8Array(${LIFT_BYTES}Pool, ${LIFT_BYTES}At, len);
    ${LIFT_BYTES}At += (len + 7) & ~7;
  }
  out.set(new Uint8Array(memory.buffer, ptr, len));
  return out;
}
`;
const SLICE = /new Uint8Array\((memory\d+)\.buffer\.slice\((\w+), \2 \+ (\w+) \* 1\)\)/g;

/**
 * Second and third patches, on strings (`lift-strings`, `lower-strings`):
 * jco lifts every string with `utf8Decoder.decode(new Uint8Array(memory0.buffer,
 * ptr, len))` and lowers it with `TextEncoder.encode` (a fresh array) then a
 * copy; for the short ASCII strings of this API (room names, socket ids,
 * namespaces) a JS loop is several times cheaper than those native calls.
 * Non-ASCII or long strings take the original path, so the values are the
 * same (ASCII bytes decode to the same string in every decoder).
 */
export const LIFT_STRING = "__sioLiftString";
const STRING_HELPER = `function ${LIFT_STRING}(decoder, memory, ptr, len) {
  if (len <= 32) {
    const b = new Uint8Array(memory.buffer, ptr, len);
    let out = "";
    for (let i = 0; i < len; i++) {
      const c = b[i];
      if (c > 0x7f) return decoder.decode(b);
      out += String.fromCharCode(c);
    }
    return out;
  }
  return decoder.decode(new Uint8Array(memory.buffer, ptr, len));
}
`;
const DECODE = /utf8Decoder\.decode\(new Uint8Array\((memory\d+)\.buffer, (\w+), (\w+)\)\)/g;
const ENCODE_ORIG = `    let buf = utf8Encoder.encode(s);
    let ptr = realloc(0, 0, 1, buf.length);
    new Uint8Array(memory.buffer).set(buf, ptr);
    utf8EncodedLen = buf.length;
    return ptr;`;
const ENCODE_PATCHED = `    // Patched in by host/node/scripts/build.mjs: short ASCII strings without TextEncoder.
    const n = s.length;
    if (n <= 64) {
      let ascii = true;
      for (let i = 0; i < n; i++) {
        if (s.charCodeAt(i) > 0x7f) {
          ascii = false;
          break;
        }
      }
      if (ascii) {
        const p = realloc(0, 0, 1, n);
        const view = new Uint8Array(memory.buffer, p, n);
        for (let i = 0; i < n; i++) view[i] = s.charCodeAt(i);
        utf8EncodedLen = n;
        return p;
      }
    }
${ENCODE_ORIG}`;

export function patchGlue(js) {
  let count = 0;
  let patched = js.replace(SLICE, (_m, mem, ptr, len) => {
    count++;
    return `${LIFT_BYTES}(${mem}, ${ptr}, ${len})`;
  });
  if (count === 0) throw new Error("glue patch: no `new Uint8Array(memory.buffer.slice(..))` found (jco output changed?)");
  if (/\.buffer\.slice\(/.test(patched)) throw new Error("glue patch: a `.buffer.slice(` of another shape is left");
  let strings = 0;
  patched = patched.replace(DECODE, (_m, mem, ptr, len) => {
    strings++;
    return `${LIFT_STRING}(utf8Decoder, ${mem}, ${ptr}, ${len})`;
  });
  if (strings === 0 || /utf8Decoder\.decode\(/.test(patched)) throw new Error("glue patch: string lifts of another shape");
  if (patched.split(ENCODE_ORIG).length !== 2) throw new Error("glue patch: utf8Encode is not the expected function");
  patched = patched.replace(ENCODE_ORIG, ENCODE_PATCHED);
  return { js: `${LIFT_HELPER}${STRING_HELPER}${patched}`, count, strings };
}

function jcoVersion() {
  const pkg = JSON.parse(readFileSync(join(root, "node_modules/@bytecodealliance/jco/package.json"), "utf8"));
  return pkg.version;
}

export function verify(dir = out) {
  const manifestPath = join(dir, "manifest.json");
  if (!existsSync(manifestPath)) throw new Error(`${manifestPath} is missing: run npm run build`);
  const manifest = JSON.parse(readFileSync(manifestPath, "utf8"));
  for (const [file, want] of Object.entries(manifest.files)) {
    const got = sha256(readFileSync(join(dir, file)));
    if (got !== want) throw new Error(`${file}: sha256 ${got}, manifest says ${want}`);
  }
  const glue = readFileSync(join(dir, `${NAME}.js`), "utf8");
  const problems = glueProblems(glue);
  if (problems.length) throw new Error(`generated glue: ${problems.join("; ")}`);
  if (!glue.includes(`function ${LIFT_BYTES}(memory, ptr, len)`) || /\.buffer\.slice\(/.test(glue) || /utf8Decoder\.decode\(/.test(glue) || !glue.includes("short ASCII strings without TextEncoder")) {
    throw new Error("generated glue: the lift-bytes patch is not applied (run npm run build)");
  }
  return manifest;
}

function build(wasm) {
  const bytes = readFileSync(wasm);
  const tmp = join(root, ".component-build");
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  const jco = join(root, "node_modules/.bin/jco");
  const args = ["transpile", wasm, "-o", tmp, "--name", NAME, "--instantiation", "sync", "--no-wasi-shim", "--quiet"];
  const r = spawnSync(jco, args, { stdio: ["ignore", "inherit", "inherit"] });
  if (r.status !== 0) throw new Error(`jco transpile failed (${r.status ?? r.signal})`);
  const raw = readFileSync(join(tmp, `${NAME}.js`), "utf8");
  const problems = glueProblems(raw);
  if (problems.length) {
    throw new Error(
      `jco ${jcoVersion()} generated glue with known per-call costs: ${problems.join("; ")}. ` +
        "Keep the pinned jco (package-lock.json) or measure with bench/calls.mjs before changing it.",
    );
  }
  const { js, count, strings } = patchGlue(raw);
  writeFileSync(join(tmp, `${NAME}.js`), js);
  copyFileSync(wasm, join(tmp, `${NAME}.wasm`));
  const files = {};
  const walk = (d, prefix = "") => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const rel = prefix + e.name;
      if (e.isDirectory()) walk(join(d, e.name), rel + "/");
      else files[rel] = sha256(readFileSync(join(d, e.name)));
    }
  };
  walk(tmp);
  const manifest = {
    component: { file: `${NAME}.wasm`, bytes: bytes.length, sha256: sha256(bytes) },
    jco: jcoVersion(),
    patches: { "lift-bytes": count, "lift-strings": strings, "lower-strings": 1 },
    files,
  };
  writeFileSync(join(tmp, "manifest.json"), JSON.stringify(manifest, null, 2) + "\n");
  writeFileSync(join(tmp, "package.json"), JSON.stringify({ type: "module", private: true }) + "\n");
  rmSync(out, { recursive: true, force: true });
  renameSync(tmp, out);
  return manifest;
}

export function wasmSource() {
  return resolve(root, process.env.SIO_CLUSTER_WASM ?? "../../target/guest-wasm/wasm32-wasip2/guest/sio_cluster_adapter.wasm");
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const wasm = wasmSource();
  try {
    let manifest;
    const ensure = process.argv.includes("--ensure") || process.argv.includes("--prepack");
    const built = existsSync(join(out, "manifest.json")) ? JSON.parse(readFileSync(join(out, "manifest.json"), "utf8")) : null;
    if (ensure && !existsSync(wasm)) {
      manifest = verify();
      console.error(`component/ verified (no ${wasm} to rebuild from)`);
    } else if (ensure && built?.component.sha256 === sha256(readFileSync(wasm))) {
      manifest = verify();
    } else {
      if (!existsSync(wasm)) throw new Error(`${wasm} not found: build the component (cargo) or set SIO_CLUSTER_WASM`);
      manifest = build(wasm);
      verify();
    }
    console.error(`component ${manifest.component.file} sha256 ${manifest.component.sha256} (${manifest.component.bytes} B), jco ${manifest.jco}`);
  } catch (e) {
    console.error(`build: ${e.message}`);
    process.exit(1);
  }
}
