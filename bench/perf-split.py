#!/usr/bin/env python3
"""Splits a system-wide CPU profile by process role and by crate, per delivery.

Input: the text of `perf script -F comm,pid,tid,ip,sym,dso` for a
`perf record -a -F HZ` taken during a load run. Arguments: the file, the
sampling frequency, the number of deliveries in the sampled window, and
PID=ROLE pairs (processes not named are ignored). Output: µs of CPU per
delivery for each role, then each role's samples by category (the crate of
the sampled function; guest code of the component, named through
SIO_WASM_PERFMAP=1, is `wasm-guest`).

  python3 bench/perf-split.py prof.txt 999 2550650 101=worker 102=primary 103=loadgen
"""
import collections
import re
import sys

LINE = re.compile(r"\s*(\S+)\s+(\d+)/(\d+)\s+[0-9a-f]+\s+(.*?)\s+\((.*)\)\s*$")
# Crate prefixes, longest first where one is a prefix of another.
CRATES = [
    "tokio_tungstenite", "tungstenite", "tokio", "wasmtime", "cranelift",
    "socketioxide", "engineioxide", "hyper", "serde", "rmp", "bytes",
    "sio_cluster", "sioxide_redis", "redis", "combine", "postcard", "core",
    "alloc", "std", "hashbrown", "memchr", "smallvec", "futures",
]


def category(sym, dso):
    if dso.startswith("[kernel") or dso.startswith("[k"):
        return "kernel"
    if "/perf-" in dso:
        return "wasm-guest"
    if "libc" in dso:
        return "libc"
    if sym.startswith(("mi_", "_mi_")) or "mimalloc" in sym:
        return "mimalloc"
    for c in CRATES:
        if sym.startswith(c) or sym.startswith("<" + c) or ("<" + c) in sym[:80]:
            return c.replace("tokio_tungstenite", "tungstenite")
    return "other (" + dso.rsplit("/", 1)[-1] + ")"


def main(argv):
    if len(argv) < 5:
        sys.exit(__doc__)
    path, hz, deliveries = argv[1], float(argv[2]), float(argv[3])
    roles = dict(a.split("=", 1) for a in argv[4:])
    us_per_sample = 1e6 / hz
    per_role = collections.Counter()
    per_cat = collections.defaultdict(collections.Counter)
    with open(path, errors="replace") as f:
        for line in f:
            m = LINE.match(line)
            if not m or m.group(2) not in roles:
                continue
            role = roles[m.group(2)]
            per_role[role] += 1
            per_cat[role][category(m.group(4), m.group(5))] += 1
    if not per_role:
        sys.exit("no samples of the named processes")
    scale = us_per_sample / deliveries
    print(f"µs of CPU per delivery ({deliveries:.0f} deliveries)")
    for role, n in per_role.most_common():
        print(f"  {role:12s} {n * scale:7.3f}")
    print(f"  {'all':12s} {sum(per_role.values()) * scale:7.3f}")
    for role, n in per_role.most_common():
        print(f"\n{role}:")
        for cat, k in per_cat[role].most_common():
            if k * scale >= 0.005:
                print(f"  {cat:28s} {k * scale:7.3f}")


if __name__ == "__main__":
    main(sys.argv)
