"""Benchmark: the SIN check inside containers (keys.sin_containers), MB/s of expanded content.

    .venv/bin/python bench/sin_containers.py [--quick]

Prints a table and writes ``bench/results/sin_containers.json``. Figures, not a pass/fail test.

For each text kind of ``bench/sin.py`` (JSON lines, English-like text; SIN-free, so every byte is
scanned), the body is made into: a gzip (level 6, as ``gzip`` writes it), a zip with one deflated
entry, and UTF-16-LE text with a byte-order mark; each is fed to ``BodyScanner`` in 64 KiB and
1 MiB chunks (views of one buffer, as an HTTP body read gives). The figure is MB (10**6 bytes) of
*expanded* content (the text inside) per CPU second of this process, best of a few repeats after a
warm-up. Beside it, for scale: inflating alone (``zlib``, the floor the check cannot beat), and the
plain text through ``BodyScanner`` against ``SinScanner`` alone (the plain path must keep its
speed: ``bench/sin.py``'s target is >= 1500 MB/s).
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import platform
import sys
import time
import zipfile
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from sin import kinds  # bench/sin.py: the same seeded data

from keys.sin import SinScanner
from keys.sin_containers import BodyScanner, ScanLimits

MiB = 1 << 20
CHUNKS = {"64KiB": 64 * 1024, "1MiB": MiB}
# Bench bodies are large and text compresses well: no limit should stop them.
LIMITS = ScanLimits(max_expansion_ratio=10**6, max_expanded_bytes=1 << 40)


def containers(text: bytes) -> dict[str, bytes]:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("data.txt", text)
    return {
        "gzip": gzip.compress(text, 6),
        "zip": out.getvalue(),
        "utf16": text.decode("latin-1").encode("utf-16"),
    }


def feed(body: bytes, chunk: int) -> bool:
    scanner = BodyScanner(LIMITS)
    view = memoryview(body)
    for i in range(0, len(body), chunk):
        scanner.feed(view[i : i + chunk])
    return scanner.finish()


def plain_scan(body: bytes, chunk: int) -> bool:
    scanner = SinScanner()
    view = memoryview(body)
    for i in range(0, len(body), chunk):
        scanner.feed(view[i : i + chunk])
    return scanner.finish()


def inflate_only(body: bytes, chunk: int) -> bool:
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    view = memoryview(body)
    for i in range(0, len(body), chunk):
        pending: bytes | memoryview = view[i : i + chunk]
        while pending:
            d.decompress(pending, 1 << 18)
            pending = d.unconsumed_tail
    return False


def best_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller bodies, fewer repeats")
    args = parser.parse_args()
    size = 8 * MiB if args.quick else 32 * MiB
    repeats = 3 if args.quick else 7
    texts = {k: v for k, v in kinds(size).items() if k in ("json", "text")}

    rows = []
    for kind, text in texts.items():
        bodies = containers(text)
        for label, chunk in CHUNKS.items():
            row: dict = {"kind": kind, "chunk": label, "expanded_mib": size // MiB}
            for container, body in bodies.items():
                assert not feed(body, chunk), (kind, container)
                seconds = best_seconds(lambda b=body, c=chunk: feed(b, c), repeats)
                row[f"{container}_mb_s"] = round(size / seconds / 1e6)
                row[f"{container}_ratio"] = round(size / len(body), 2)
            row["inflate_only_mb_s"] = round(
                size / best_seconds(lambda b=bodies["gzip"], c=chunk: inflate_only(b, c), repeats) / 1e6
            )
            row["plain_body_scanner_mb_s"] = round(
                size / best_seconds(lambda t=text, c=chunk: feed(t, c), repeats) / 1e6
            )
            row["plain_sin_scanner_mb_s"] = round(
                size / best_seconds(lambda t=text, c=chunk: plain_scan(t, c), repeats) / 1e6
            )
            rows.append(row)

    print(
        f"SIN check inside containers: MB/s (10**6 B) of expanded content, {size // MiB} MiB of text per kind, "
        f"best of {repeats}, CPU time"
    )
    cols = ["gzip", "zip", "utf16", "inflate_only", "plain_body_scanner", "plain_sin_scanner"]
    print(f"{'kind':>5} {'chunk':>6} | " + " ".join(f"{c:>18}" for c in cols))
    for r in rows:
        print(f"{r['kind']:>5} {r['chunk']:>6} | " + " ".join(f"{r[c + '_mb_s']:>18,}" for c in cols))
    worst_gzip = min(r["gzip_mb_s"] for r in rows)
    print(f"worst gzip figure: {worst_gzip:,} MB/s of expanded text (gzip ratio {rows[0]['gzip_ratio']}:1 on json)")

    result = {
        "machine": {
            "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
        },
        "quick": args.quick,
        "expanded_bytes_per_kind": size,
        "repeats": repeats,
        "worst_gzip_mb_s": worst_gzip,
        "rows": rows,
    }
    out = ROOT / "bench" / "results" / "sin_containers.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
