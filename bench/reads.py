"""Read baselines for bench/api.py: what a GET would cost with no service around it.

* ``bare_read_loop``: per object, read the stored bytes from a local region's
  disk, verify their SHA-256, decrypt (AES-256-GCM, 1 MiB segments), and
  append one hash-chained audit record with the service's durability (write
  + fsync before the first plaintext byte), one object at a time;
* ``direct_gets``: azure-storage-blob aio ``download_blob`` of objects the
  direct SDK phase stored, from the preferred region (Azure), at the
  service's concurrency (the bytes only: no verify, no decrypt).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SEGMENT = 1 << 20
TAG = 16  # GCM tag per segment


def store_for_reads(directory: Path, count: int, body: bytes, size: int) -> tuple[AESGCM, list[tuple[bytes, str]]]:
    """Write ``count`` sealed objects (not timed); each one's nonce prefix and SHA-256."""
    directory.mkdir(parents=True)
    aead = AESGCM(os.urandom(32))
    stored = []
    for i in range(count):
        plain = memoryview(body)[i * size : (i + 1) * size] if len(body) > size else memoryview(body)
        prefix = os.urandom(8)
        sealed = b"".join(
            aead.encrypt(prefix + k.to_bytes(4, "big"), plain[off : off + SEGMENT], None)
            for k, off in enumerate(range(0, size, SEGMENT))
        )
        (directory / f"{i:06d}").write_bytes(sealed)
        stored.append((prefix, hashlib.sha256(sealed).hexdigest()))
    return aead, stored


def bare_read_loop(directory: Path, count: int, body: bytes, size: int, run_type: Any, machine_cpu: Any) -> Any:
    """Read, verify, audit (write + fsync), decrypt, per object; returns a ``Run`` of bench/api.py."""
    aead, stored = store_for_reads(directory / "objects", count, body, size)
    audit = os.open(directory / "audit.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    chain = b"\0" * 32
    lat = []
    start = time.perf_counter()
    cpu0, mcpu0 = time.process_time(), machine_cpu()
    try:
        for i in range(count):
            t = time.perf_counter()
            prefix, digest = stored[i]
            with open(directory / "objects" / f"{i:06d}", "rb") as f:
                sealed = f.read()
            if hashlib.sha256(sealed).hexdigest() != digest:
                raise RuntimeError(f"object {i}: digest differs")
            record = json.dumps({"op": "read", "object": i, "t": time.time(), "prev": chain.hex()}).encode()
            chain = hashlib.sha256(chain + record).digest()
            os.write(audit, record + b"\n")
            os.fsync(audit)  # durable before the first plaintext byte, as the service's audit log
            view, n = memoryview(sealed), 0
            for k, off in enumerate(range(0, len(view), SEGMENT + TAG)):
                n += len(aead.decrypt(prefix + k.to_bytes(4, "big"), view[off : off + SEGMENT + TAG], None))
            if n != size:
                raise RuntimeError(f"object {i}: {n} bytes, expected {size}")
            lat.append(time.perf_counter() - t)
    finally:
        os.close(audit)
    wall = time.perf_counter() - start
    return run_type(
        "bare read",
        count,
        size,
        1,
        wall,
        lat,
        client_cpu_s=time.process_time() - cpu0,
        machine_cpu_s=machine_cpu() - mcpu0,
    )


async def direct_gets(container: Any, keys: list[str], size: int, concurrency: int, timed: Any) -> Any:
    """Time ``download_blob`` of each key from Azure (``container``: an aio ContainerClient)."""

    async def get(i: int) -> None:
        stream = await container.download_blob(keys[i])
        n = 0
        async for chunk in stream.chunks():
            n += len(chunk)
        if n < size:
            raise RuntimeError(f"direct GET {keys[i]}: {n} bytes, expected at least {size}")

    return await timed("GET", len(keys), size, concurrency, get)
