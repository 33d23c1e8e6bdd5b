"""Benchmark: throughput and memory of keys.stream against raw AES-256-GCM.

    .venv/bin/python bench/crypto.py [--quick]

Prints a table and writes ``bench/results/crypto.json``. Figures, not a
pass/fail test; the targets it reports against:

* stream MB/s ÷ raw AES-256-GCM MB/s (``cryptography``'s AESGCM on 1 MiB
  chunks, measured in the same run) ≥ 0.85, for encrypt and decrypt of 1 MiB
  and 256 MiB bodies fed as 64 KiB chunks (what an HTTP body or a region read
  delivers) and as 1 MiB chunks;
* peak RSS while 1 GiB streams through encrypt → decrypt, above the
  interpreter's own peak before streaming (VmHWM, in a fresh subprocess so
  earlier phases don't count) < 64 MiB.

MB = 10**6 bytes, counted on the plaintext. Each figure is the best of a
number of repeats after a warm-up, timed in CPU time of this process (the
program is single-threaded), with the garbage collector off while timing
and the raw and stream runs interleaved, so that drift on a shared machine
hits both alike: this measures the code, not the neighbours. Both
sides get the same plaintext objects when the stream is fed 1 MiB chunks,
and both consumers drop each output buffer before asking for the next one
(the raw loop discards each result at once; ``_drain`` does the same), so
neither side pays for the other's memory traffic. In Tink's format a 1 MiB
body is two segments (1 MiB - 56 bytes, then 56), so two AES-GCM calls; a
raw loop split that way measured within 1% of one call per MiB, so the
baseline stays one call per MiB of the same body.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import cryptography
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from keys.stream import decrypt_stream, encrypt_stream, object_ad

MiB = 1 << 20
KEY = os.urandom(32)
DEK = "dek_bench"
AD = object_ad("bench-customer", "project", "bench/object.bin", "0-0-bench")
RATIO_TARGET = 0.85
# CPU time of this process: on a shared machine, time spent waiting for a
# CPU is not the code's (wall-clock figures swung by 2x between runs here).
_clock = time.process_time
RSS_TARGET_MIB = 64


def _rechunk(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


async def _source(chunks):
    for chunk in chunks:
        yield chunk


async def _drain(agen) -> int:
    n = 0
    async for piece in agen:
        n += len(piece)
        del piece  # as the raw loop does: no output outlives its use
    return n


def measure(body: int, chunk: int, repeats: int) -> dict:
    """MB/s of raw AESGCM (one-shot over the body's 1 MiB slices: the same
    bytes, so the same cache and memory traffic) and of encrypt_stream /
    decrypt_stream fed `chunk`-byte chunks. Small bodies are repeated to
    fill ~64 MiB per timing. Raw and stream timings alternate, so drift on a
    shared machine hits both alike."""
    data = os.urandom(body)
    plain = _rechunk(data, chunk)
    rounds = max(1, 64 * MiB // body)
    aead, nonce = AESGCM(KEY), os.urandom(12)
    raw_plain = plain if chunk == MiB else _rechunk(data, MiB)
    raw_sealed = [aead.encrypt(nonce, p, None) for p in raw_plain]
    # Context, not the target: the same one-shot call on the input's chunk size
    # shows what cryptography's per-call cost alone does to small chunks.
    small_sealed = [aead.encrypt(nonce, p, None) for p in plain]
    loop = asyncio.new_event_loop()

    async def encrypt_all():
        return b"".join([p async for p in encrypt_stream(_source(plain), KEY, DEK, AD)])

    cipher = _rechunk(loop.run_until_complete(encrypt_all()), chunk)

    def raw_enc():
        for _ in range(rounds):
            for p in raw_plain:
                aead.encrypt(nonce, p, None)

    def raw_dec():
        for _ in range(rounds):
            for c in raw_sealed:
                aead.decrypt(nonce, c, None)

    def raw_enc_at_chunk():
        for _ in range(rounds):
            for p in plain:
                aead.encrypt(nonce, p, None)

    def raw_dec_at_chunk():
        for _ in range(rounds):
            for c in small_sealed:
                aead.decrypt(nonce, c, None)

    async def enc():
        for _ in range(rounds):
            await _drain(encrypt_stream(_source(plain), KEY, DEK, AD))

    async def dec():
        for _ in range(rounds):
            assert await _drain(decrypt_stream(_source(cipher), KEY, AD)) == body

    runs = {
        "raw_encrypt": raw_enc,
        "encrypt": lambda: loop.run_until_complete(enc()),
        "raw_decrypt": raw_dec,
        "decrypt": lambda: loop.run_until_complete(dec()),
        "raw_encrypt_at_chunk": raw_enc_at_chunk,
        "raw_decrypt_at_chunk": raw_dec_at_chunk,
    }
    best = dict.fromkeys(runs, float("inf"))
    for fn in runs.values():
        fn()  # warm-up
    gc.collect()
    gc.disable()
    try:
        for _ in range(repeats):
            for name, fn in runs.items():
                start = _clock()
                fn()
                best[name] = min(best[name], _clock() - start)
    finally:
        gc.enable()
    loop.close()
    mb_s = {name: rounds * body / t / 1e6 for name, t in best.items()}
    # What the stream adds per body, in CPU µs: at 1 MiB this is the
    # per-object cost (HKDF, commitment, key setup, last segment, ...).
    over_us = {op: (best[op] - best[f"raw_{op}"]) / rounds * 1e6 for op in ("encrypt", "decrypt")}
    return {
        "body_mib": body // MiB,
        "chunk_kib": chunk // 1024,
        **{f"{name}_mb_s": round(v) for name, v in mb_s.items()},
        "encrypt_ratio": round(mb_s["encrypt"] / mb_s["raw_encrypt"], 3),
        "decrypt_ratio": round(mb_s["decrypt"] / mb_s["raw_decrypt"], 3),
        "encrypt_over_raw_us": round(over_us["encrypt"], 1),
        "decrypt_over_raw_us": round(over_us["decrypt"], 1),
    }


def _vm_hwm_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def rss_child(total: int, chunk: int) -> None:
    """Stream `total` bytes through encrypt → decrypt, generating input on the
    fly and discarding output; print baseline and peak VmHWM as JSON."""
    block = os.urandom(chunk)

    async def source():
        for _ in range(total // chunk):
            yield memoryview(block).tobytes()  # a fresh object per chunk, as a socket read gives

    async def run():
        return await _drain(decrypt_stream(encrypt_stream(source(), KEY, DEK, AD), KEY, AD))

    baseline = _vm_hwm_kib()
    start = time.perf_counter()
    n = asyncio.run(run())
    elapsed = time.perf_counter() - start
    assert n == total // chunk * chunk
    print(json.dumps({"baseline_kib": baseline, "peak_kib": _vm_hwm_kib(), "bytes": n, "seconds": elapsed}))


def rss(total: int, chunk: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--rss-child", str(total), str(chunk)], check=True, capture_output=True, text=True
    ).stdout
    r = json.loads(out)
    r["increase_mib"] = (r["peak_kib"] - r["baseline_kib"]) / 1024
    r["pipeline_mb_s"] = r["bytes"] / r["seconds"] / 1e6
    return r


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller bodies, fewer repeats")
    parser.add_argument("--rss-child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(*args.rss_child)
        return

    repeats = 3 if args.quick else 15
    big = 32 * MiB if args.quick else 256 * MiB
    rows = [measure(body, chunk, repeats) for body in (MiB, big) for chunk in (MiB, 64 * 1024)]
    mem = rss(256 * MiB if args.quick else 1024 * MiB, 64 * 1024)

    print(
        f"AES-256-GCM, cryptography {cryptography.__version__}; raw = one-shot AESGCM on 1 MiB "
        f"chunks of the same body; MB = 10**6 B of plaintext"
    )
    print("(raw@chunk: the same one-shot call on the input chunk size, for context)")
    print(
        f"{'body':>8} {'chunk':>9} | {'raw enc':>8} {'@chunk':>8} {'stream':>8} {'ratio':>5} | "
        f"{'raw dec':>8} {'@chunk':>8} {'stream':>8} {'ratio':>5}"
    )
    for r in rows:
        print(
            f"{r['body_mib']:>4} MiB {r['chunk_kib']:>5} KiB | {r['raw_encrypt_mb_s']:>8,} "
            f"{r['raw_encrypt_at_chunk_mb_s']:>8,} {r['encrypt_mb_s']:>8,} {r['encrypt_ratio']:>5.2f} | "
            f"{r['raw_decrypt_mb_s']:>8,} {r['raw_decrypt_at_chunk_mb_s']:>8,} "
            f"{r['decrypt_mb_s']:>8,} {r['decrypt_ratio']:>5.2f}"
        )
    worst = min(min(r["encrypt_ratio"], r["decrypt_ratio"]) for r in rows if r["chunk_kib"] == 1024)
    print(f"worst ratio with 1 MiB chunks {worst:.2f} (target >= {RATIO_TARGET})")
    one = rows[0]
    print(
        f"stream CPU over raw per 1 MiB object (1 MiB chunks): encrypt {one['encrypt_over_raw_us']} µs, "
        f"decrypt {one['decrypt_over_raw_us']} µs"
    )
    print(
        f"peak RSS streaming {mem['bytes'] / MiB:,.0f} MiB encrypt->decrypt in 64 KiB chunks: "
        f"+{mem['increase_mib']:.1f} MiB over baseline {mem['baseline_kib'] / 1024:.1f} MiB "
        f"(target < {RSS_TARGET_MIB} MiB), {mem['pipeline_mb_s']:,.0f} MB/s end to end"
    )

    result = {
        "machine": {
            "python": platform.python_version(),
            "cryptography": cryptography.__version__,
            "cpu": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
        },
        "quick": args.quick,
        "stream": rows,
        "worst_ratio_1mib_chunks": worst,
        "ratio_target": RATIO_TARGET,
        "rss": {
            "streamed_mib": mem["bytes"] // MiB,
            "increase_mib": round(mem["increase_mib"], 1),
            "baseline_mib": round(mem["baseline_kib"] / 1024, 1),
            "pipeline_mb_s": round(mem["pipeline_mb_s"]),
            "target_mib": RSS_TARGET_MIB,
        },
    }
    out = ROOT / "bench" / "results" / "crypto.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
