"""Benchmark: throughput of the SIN scanner (keys.sin) on typical plaintexts.

    .venv/bin/python bench/sin.py [--quick]

Prints a table and writes ``bench/results/sin.json``. Figures, not a
pass/fail test; the target it reports against: every written plaintext is
scanned, and the write path must sustain 450 MB/s end to end, so the
scanner should run at >= 1500 MB/s on typical data, whole-buffer
(``contains_sin``) and streaming (``SinScanner.feed`` with 1 MiB and 64 KiB
chunks, as views of one buffer, which is what an HTTP body read gives).

Data kinds, all SIN-free so that every byte is scanned (seeded, so every
run scans the same bytes): random binary (compressed or encrypted uploads),
base64 text in 76-column lines, hex text (64-digit tokens, one a line),
JSON lines with numbers (ids, epoch timestamps, ISO dates, amounts) and
English-like text with the odd number.

Each figure is measured with each engine of keys.sin: ``compiled``
(keys/_sin_scan.c, the one used), and the pure-Python reference with its two
searches, ``libc`` (strstr through ctypes) and ``python`` (bytearray.find),
plus the regex scanner the pure one replaced, on the whole buffer, for
comparison. MB = 10**6 bytes. Each figure is the best of a few repeats
after a warm-up, in CPU time of this (single-threaded) process: this
measures the code, not the neighbours on a shared machine.

The last table shows that the compiled scan releases the GIL: with a
switch interval of 5 s (so a thread holding the GIL keeps it), another
thread waking every 0.2 ms still runs while a thread scans (ticks per ms
of scanning, up to about 5); a call that holds the GIL (``bytes.translate``,
shown for comparison) lets it run 0 times.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import random
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import threading

from keys import _sin_pure, _sin_search, sin

MiB = 1 << 20
TARGET_MB_S = 1500
CHUNKS = {"1MiB": MiB, "64KiB": 64 * 1024}

_WORDS = (
    "the of and to a in is it you that he was for on are with as I his they be at one have this from or had by "
    "not word but what some we can out other were all there when up use your how said an each she which do their "
    "time if will way about many then them write would like so these her long make thing see him two has look more "
    "day could go come did number sound no most people my over know water than call first who may down side been "
    "now find any new work part take get place made live where after back little only round man year came show "
    "every good me give our under name very through just form sentence great think say help low line differ turn "
    "cause much mean before move right boy old too same tell does set three want air well also play small end put "
    "home read hand port large spell add even land here must big high such follow act why ask men change went light"
).split()


def _english(n: int, rnd: random.Random) -> bytes:
    out, size = [], 0
    while size < n:
        words = [rnd.choice(_WORDS) for _ in range(rnd.randint(6, 20))]
        if rnd.random() < 0.15:
            number = rnd.choice([rnd.randint(1, 99), rnd.randint(1900, 2030), rnd.randint(100, 9999)])
            words.insert(rnd.randrange(len(words)), str(number))
        s = " ".join(words)
        s = s[0].upper() + s[1:] + rnd.choice(".,.?!.") + rnd.choice("  \n")
        out.append(s)
        size += len(s)
    return "".join(out).encode()[:n]


def _json_lines(n: int, rnd: random.Random) -> bytes:
    out, size = [], 0
    while size < n:
        record = {
            "id": rnd.randrange(10**6),
            "user": f"user_{rnd.randrange(16**6):06x}",
            "ts": 1_700_000_000 + rnd.randrange(10**7),
            "created": f"2024-{rnd.randint(1, 12):02d}-{rnd.randint(1, 28):02d}T{rnd.randint(0, 23):02d}:"
            f"{rnd.randint(0, 59):02d}:{rnd.randint(0, 59):02d}Z",
            "amount": round(rnd.random() * 1000, 2),
            "qty": rnd.randrange(100),
            "status": rnd.choice(["ok", "error", "pending", "retry"]),
            "note": " ".join(rnd.choice(_WORDS) for _ in range(rnd.randint(2, 8))),
        }
        s = json.dumps(record) + "\n"
        out.append(s)
        size += len(s)
    return "".join(out).encode()[:n]


def kinds(n: int) -> dict[str, bytes]:
    rnd = random.Random(20240501)
    data = {
        "random": rnd.randbytes(n),
        "base64": base64.encodebytes(rnd.randbytes(n * 3 // 4 + 3))[:n],
        "hex": "".join(rnd.randbytes(32).hex() + "\n" for _ in range(n // 65 + 1)).encode()[:n],
        "json": _json_lines(n, rnd),
        "text": _english(n, rnd),
    }
    for name, body in data.items():
        assert len(body) == n and not sin.contains_sin(body), name
    return data


# The scanner keys.sin replaced: the regex tried at every offset (whole buffer).
_OLD = re.compile(rb"(?<![A-Za-z0-9])(?=([1-79][0-9]{2})([ -]?)([0-9]{3})\2([0-9]{3}))")


def old_contains_sin(data: bytes) -> bool:
    n = len(data)
    for m in _OLD.finditer(data):
        start, end, sep = m.start(), m.end(4), m.group(2)
        if end < n and (chr(data[end]).isascii() and chr(data[end]).isalnum()):
            continue
        if sep and (
            (start >= 2 and data[start - 1 : start] == sep and 48 <= data[start - 2] <= 57)
            or (end + 2 <= n and data[end : end + 1] == sep and 48 <= data[end + 1] <= 57)
        ):
            continue
        if sin.luhn_valid(m.group(1) + m.group(3) + m.group(4)):
            return True
    return False


def stream(data: bytes, chunk: int) -> bool:
    scanner = sin.SinScanner()
    view = memoryview(data)
    for i in range(0, len(data), chunk):
        scanner.feed(view[i : i + chunk])
    return scanner.finish()


def best_mb_s(fn, data: bytes, repeats: int) -> float:
    fn(data)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        fn(data)
        best = min(best, time.process_time() - start)
    return len(data) / best / 1e6


def _ticks_inside(scan, times: int) -> tuple[int, float]:
    """Run ``scan`` ``times`` times in a thread while this one ticks every 0.2 ms, with a switch
    interval of 5 s (a thread holding the GIL keeps it): (ticks that fell inside a scan, scan seconds)."""
    windows: list[tuple[float, float]] = []
    ticks: list[float] = []

    def scans() -> None:
        for _ in range(times):
            start = time.perf_counter()
            scan()
            windows.append((start, time.perf_counter()))

    saved = sys.getswitchinterval()
    sys.setswitchinterval(5.0)
    try:
        worker = threading.Thread(target=scans)
        worker.start()
        while worker.is_alive():
            ticks.append(time.perf_counter())
            time.sleep(0.0002)
        worker.join()
    finally:
        sys.setswitchinterval(saved)
    inside = sum(any(a < t < b for a, b in windows) for t in ticks)
    return inside, sum(b - a for a, b in windows)


def gil_rows(body: bytes, engines: dict) -> list[dict]:
    """Ticks of another thread per ms of scanning ``body`` (one feed of all of it): 0 for a scan that holds the GIL."""
    table = bytes(range(256))
    scans = {
        f"{name} engine": (lambda e=engine, s=spots: _set_and_feed(e, s, body))
        for name, (engine, spots) in engines.items()
    }
    scans["bytes.translate (holds)"] = lambda: body.translate(table)
    saved = sin._engine, _sin_pure._spots
    rows = []
    try:
        for label, scan in scans.items():
            inside, seconds = _ticks_inside(scan, 10)
            rows.append(
                {
                    "scan": label,
                    "scan_ms": round(seconds * 1000, 1),
                    "other_thread_ticks_per_ms": round(inside / seconds / 1000, 2),
                }
            )
    finally:
        sin._engine, _sin_pure._spots = saved
    return rows


def _set_and_feed(engine, spots, body: bytes) -> bool:
    sin._engine, _sin_pure._spots = engine, spots
    scanner = sin.SinScanner()
    scanner.feed(body)
    return scanner.finish()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller bodies, fewer repeats")
    args = parser.parse_args()
    size = 4 * MiB if args.quick else 8 * MiB
    repeats = 5 if args.quick else 21

    data = kinds(size)
    engines = {}
    if sin._sin_scan is not None:
        engines["compiled"] = (sin._sin_scan.scan, _sin_pure._spots)
    if _sin_search.libc_spots is not None:
        engines["libc"] = (_sin_pure.scan, _sin_search.libc_spots)
    engines["python"] = (_sin_pure.scan, _sin_search.spots_py)
    default = next(iter(engines))
    saved = sin._engine, _sin_pure._spots
    rows = []
    try:
        for kind, body in data.items():
            row: dict = {"kind": kind, "mib": size // MiB}
            for name, (engine, spots) in engines.items():
                sin._engine, _sin_pure._spots = engine, spots
                row[f"{name}_whole_mb_s"] = round(best_mb_s(sin.contains_sin, body, repeats))
                for label, chunk in CHUNKS.items():
                    row[f"{name}_stream_{label}_mb_s"] = round(
                        best_mb_s(lambda d, c=chunk: stream(d, c), body, repeats)
                    )
            old = body[: min(size, 2 * MiB)]  # the old scanner is slow: a slice is plenty
            row["old_regex_whole_mb_s"] = round(best_mb_s(old_contains_sin, old, max(1, repeats // 3)))
            rows.append(row)
    finally:
        sin._engine, _sin_pure._spots = saved

    cols = [f"{b}_{c}" for b in engines for c in ("whole", *(f"stream_{label}" for label in CHUNKS))]
    print(
        f"SIN scanner throughput, MB/s (10**6 B) over {size // MiB} MiB per kind, best of {repeats}; "
        f"target >= {TARGET_MB_S} for the {default} engine"
    )
    print(
        f"{'kind':>7} | "
        + " ".join(f"{c.replace('_stream_', ' ').replace('_', ' '):>14}" for c in cols)
        + f" | {'old regex':>9}"
    )
    for r in rows:
        print(
            f"{r['kind']:>7} | "
            + " ".join(f"{r[c + '_mb_s']:>14,}" for c in cols)
            + f" | {r['old_regex_whole_mb_s']:>9,}"
        )
    worst = min(r[f"{default}_{c}_mb_s"] for r in rows for c in ("whole", *(f"stream_{label}" for label in CHUNKS)))
    print(
        f"worst {default} figure {worst:,} MB/s (target >= {TARGET_MB_S}): {'PASS' if worst >= TARGET_MB_S else 'MISS'}"
    )

    gil = gil_rows(data["json"], engines)
    print(
        "GIL: ticks of another thread (one every 0.2 ms when free) per ms of scanning json, 10 scans of "
        f"{size // MiB} MiB, switch interval 5 s (0 = the scan holds the GIL)"
    )
    for g in gil:
        print(f"{g['scan']:>23} | {g['other_thread_ticks_per_ms']:>5.2f} ticks/ms over {g['scan_ms']:,} ms")

    result = {
        "machine": {
            "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
        },
        "quick": args.quick,
        "bytes_per_kind": size,
        "repeats": repeats,
        "default_engine": default,
        "target_mb_s": TARGET_MB_S,
        "worst_default_mb_s": worst,
        "rows": rows,
        "gil": gil,
    }
    out = ROOT / "bench" / "results" / "sin.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
