// Loads the adapter component (transpiled by `npm run build`): the core
// modules are compiled once per process, and every `instantiateAdapter()`
// is a fresh, isolated instance (own linear memory), as each namespace of
// the Rust host has its own wasmtime Store.
//
// The component's only imports are the WASI interfaces Rust's std links in;
// the adapter never calls them (it is sans-IO). They are given stubs that
// count the call and throw, as wasmtime links them as traps.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { instantiate } from "../component/sio_cluster_adapter.js";

const dir = new URL("../component/", import.meta.url);

/** Path of the component `.wasm` this package loads. */
export const COMPONENT_PATH = fileURLToPath(new URL("sio_cluster_adapter.wasm", dir));

/** The build manifest (sha256 of the component and of every generated file). */
export function manifest() {
  return JSON.parse(readFileSync(new URL("manifest.json", dir), "utf8"));
}

/** Hex sha256 of the component `.wasm` this package loads. */
export function componentSha256() {
  return createHash("sha256").update(readFileSync(COMPONENT_PATH)).digest("hex");
}

const compiled = new Map();

function getCoreModule(path) {
  let m = compiled.get(path);
  if (!m) {
    m = new WebAssembly.Module(readFileSync(new URL(path, dir)));
    compiled.set(path, m);
  }
  return m;
}

/** A WASI import was called: the adapter is sans-IO, so this is a bug (a trap). */
export class WasiCalled extends Error {
  constructor(name) {
    super(`the adapter component called WASI ${name}, which this host does not provide`);
    this.name = "WasiCalled";
  }
}

/** Calls of WASI stubs so far, by name. */
export const wasiCalls = new Map();

function stub(name) {
  // A plain function (not an arrow), so that it also stands for a resource class.
  return function () {
    wasiCalls.set(name, (wasiCalls.get(name) ?? 0) + 1);
    throw new WasiCalled(name);
  };
}

const WASI = {
  "wasi:cli/environment": ["getEnvironment", "getArguments", "initialCwd"],
  "wasi:cli/exit": ["exit"],
  "wasi:cli/stderr": ["getStderr"],
  "wasi:cli/stdin": ["getStdin"],
  "wasi:cli/stdout": ["getStdout"],
  "wasi:cli/terminal-input": ["TerminalInput"],
  "wasi:cli/terminal-output": ["TerminalOutput"],
  "wasi:cli/terminal-stderr": ["getTerminalStderr"],
  "wasi:cli/terminal-stdin": ["getTerminalStdin"],
  "wasi:cli/terminal-stdout": ["getTerminalStdout"],
  "wasi:io/error": ["Error"],
  "wasi:io/poll": ["Pollable", "poll"],
  "wasi:io/streams": ["InputStream", "OutputStream"],
};

let imports = null;

/** Trap stubs for the WASI imports, keyed with and without the version (jco versions differ). */
export function wasiImports(version = "0.2.6") {
  if (imports) return imports;
  imports = {};
  for (const [iface, names] of Object.entries(WASI)) {
    const ns = {};
    for (const n of names) ns[n] = stub(`${iface}#${n}`);
    imports[iface] = ns;
    imports[`${iface}@${version}`] = ns;
  }
  return imports;
}

/**
 * A fresh instance of the component; returns its `adapter` interface
 * (`{ Node }`). `instantiateCore` is jco's hook for core instances (tests use
 * it to inject faults).
 */
export function instantiateAdapter(instantiateCore) {
  let memory = null;
  const core = (module, imports) => {
    const inst = instantiateCore ? instantiateCore(module, imports) : new WebAssembly.Instance(module, imports);
    if (!memory && inst.exports.memory instanceof WebAssembly.Memory) memory = inst.exports.memory;
    return inst;
  };
  const root = instantiate(getCoreModule, wasiImports(), core);
  const api = root.adapter ?? root["socketio:cluster/adapter@0.1.0"];
  return {
    Node: api.Node,
    /** Bytes of the instance's linear memory now (jco has no memory cap: the host checks this). */
    memoryBytes: () => (memory ? memory.buffer.byteLength : 0),
  };
}

/**
 * True for an error that means the instance is no longer usable: a wasm
 * trap, a WASI stub called, or a RangeError (stack overflow, or lifting a
 * value the guest placed out of its memory's bounds). jco reports values of
 * the host's own that cannot be lowered as TypeErrors, which are not traps.
 */
export function isTrap(e) {
  return e instanceof WebAssembly.RuntimeError || e instanceof WasiCalled || e instanceof RangeError;
}
