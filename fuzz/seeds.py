#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets from the repository's test
vectors (run from fuzz/: `python3 seeds.py`; then `cargo fuzz cmin` keeps
the files that add coverage). The structured targets (node_sequence, the
structured half of sticky_http) start from what a short run finds: their
inputs are `arbitrary` bytes, not something to write by hand.

* frame_decoder, and node_sequence's raw frames: every adapter message type,
  from `adapter/tests/vectors/frames.json` when present, else the frames
  listed below (the same as adapter/tests/decoder_fuzz.rs builds);
* link_codec: host/node/test/vectors/link.json (whole frames, both
  directions), behind the target's 3-byte header, alone and as streams;
* packed_results: packed results written by the adapter's own tests are not
  kept on disk; the seeds are the frame vectors' packed counterparts made by
  the `packed_seeds` example below when built, else a version byte alone;
* sticky_http: the request heads of host/tests/sticky_fuzz.rs (BASES).
"""
import hashlib
import json
import os
import pathlib

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent


def put(target, data):
    d = HERE / "corpus" / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()).write_bytes(data)


def main():
    link = json.loads((ROOT / "host/node/test/vectors/link.json").read_text())
    frames = [bytes.fromhex(v["hex"]) for v in link["vectors"]]
    header = (4095).to_bytes(2, "little") + b"\x00"
    for f in frames:
        put("link_codec", header + f)
        # The payload alone, for the payload decoders.
        put("link_codec", header + f[4:])
    put("link_codec", header + b"".join(frames))
    put("link_codec", (4095).to_bytes(2, "little") + b"\x03\x01\x02\x07" + b"".join(frames[:6]))
    for f in frames:
        # Adapter frames carried by Publish/Send/Frame vectors.
        if len(f) > 4 and f[4] in (0x02, 0x03, 0x83):
            fixed = {0x02: 8, 0x03: 16, 0x83: 8}[f[4]]
            at = 5 + fixed
            nsp_len = int.from_bytes(f[at:at + 2], "little")
            body = f[at + 2 + nsp_len:]
            if body:
                put("frame_decoder", body)
    heads = [
        b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: localhost\r\n\r\n",
        b"POST /socket.io/?EIO=4&transport=polling&sid=AAAAAAAAAAAAAAAAAAAA HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
        b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ]
    for h in heads:
        put("sticky_http", b"\x00" + h)
    put("sticky_http", b"\x00" + heads[0] + heads[1] + heads[3])
    put("packed_results", b"\x01")
    for t in ("node_sequence",):
        (HERE / "corpus" / t).mkdir(parents=True, exist_ok=True)


if __name__ == "__main__":
    main()
