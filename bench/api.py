"""Benchmark: the service's HTTP API on local regions and on Azurite + Swift, against same-run baselines.

    cd /work/main && eval "$(deploy/dev/stack env)"     # Azurite + Keystone + Swift on 127.0.0.1
    .venv/bin/python bench/api.py [--quick] [--only local|cloud|wan|cloud+wan] [--rounds N] [--profile]

Prints a table and writes ``bench/results/api.json``. The real service runs
as a subprocess (``replicator serve --config <generated toml>``), once on two
local regions in a temp dir and once on an Azurite container + a Swift
container made for the run (deleted afterwards); aiohttp clients in this
process drive it: 64 MiB objects (PUT/GET, then DELETE, which keeps each as a
version: no goal, a figure; a few at a time, bodies from
memory, sent as 1 MiB slices as a careful client would: a ``bytes`` body costs
aiohttp on Python 3.11 two copies, 0.1 CPU-s per 64 MiB object, on the same two
CPUs as the service) and 4 KiB objects at concurrency 32. The direct SDK
baseline sends its Swift PUTs the same way. Every baseline is measured in
the same run:

* bare loop: per object, AES-256-GCM (``cryptography``, 1 MiB segments),
  SHA-256, write + fsync two new files on the same disk, one object at a time;
* direct SDK: per object, encrypt once (AESGCM), then ``asyncio.gather`` of an
  azure-storage-blob aio ``upload_blob`` and a Swift PUT (aiohttp, Keystone
  token), at the service's concurrency;
* rclone: the same files on disk, ``rclone copy`` through a ``crypt`` remote,
  two processes in parallel (one per store), Debian's rclone.

Targets (ratios within the run):

* 64 MiB PUT MB/s, local regions    >= 0.85 x bare loop (>= 1.0 with ``serve --processes 2``);
* 4 KiB PUT ops/s, local regions    >= 1.0 x bare loop;
* Azurite + Swift, p50 PUT latency  <= 1.3 x direct SDK puts (4 KiB and 64 MiB);
* Azurite + Swift, PUT throughput   >= 1.3 x rclone crypt (4 KiB and 64 MiB).
* 4 KiB GET ops/s, local regions    >= 0.5 x bare read loop (bench/reads.py: read,
  verify, one fsynced audit record, decrypt, per object);
* 64 MiB GET MB/s, local regions    >= 0.7 x bare read loop;
* serve's peak RSS (VmHWM, the largest of its processes) through each backend's whole run < 300 MiB;
* Azurite + Swift, p50 4 KiB GET    <= 1.2 x direct SDK GET from the preferred region (Azure);
* over the WAN (``--only wan``; Swift far behind tests/support/wan.py at 75 ms each way and
  200 Mbit/s, Azure near): p50 4 KiB GET <= 1.2 x direct near GET, p50 4 KiB PUT <= 1.15 x a
  direct far PUT through the same proxy, 64 MiB PUT MB/s >= 0.8 x direct far PUT; the 4 KiB
  PUT and GET also one request at a time (``ONE_AT_A_TIME`` objects at concurrency 1): at
  concurrency 32 on two shared CPUs a p50 is mostly queueing for CPU, one at a time it is
  the round trips (docs/performance.md).

With the dev stack's environment (``REPLICATOR_TEST_PG_DSN``), the local phases run twice more
per round: ``serve --processes 2`` on the same kind of local regions with a PostgreSQL journal and
key store (schemas of the run's own, dropped afterwards), what one host needs to use every core;
its rows say "2 processes" and its targets "local, 2 processes". Without it they are skipped, and
the run says so.

Every cloud phase runs on loopback ("cloud") and over the WAN ("wan"; no rclone there: its
Swift endpoint comes from the catalog, which the proxy is not in).

Every phase runs ``--rounds`` times (default 2), baselines and service
interleaved; the table and the targets use each phase's best round (shortest
wall time; lowest p50 for the latency targets), "spread" is how much slower
its worst round was, and the JSON keeps every round.

Columns: wall time, MB/s and ops/s of the batch, p50/p99 of per-request
latency, and CPU seconds during the batch of the service process (all its
threads), of this process (the clients, or the bare loop) and of the whole
machine ("all": every process, the stack's servers included; it exposes
interference from anything else running). For cloud phases the stack's
servers' own CPU seconds are listed too. Measure on a quiet machine: a
warning is printed when it is busy at the start.

``--profile`` attaches ``py-spy record`` (``--py-spy PATH`` or on PATH) to the
service for each phase and prints its top functions; the figures of such a
run are perturbed by the sampling, so measure without it. MB = 10**6 bytes of
plaintext. Only loopback addresses are ever contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import hashlib
import ipaddress
import json
import math
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp
import asyncpg
import cryptography
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from reads import bare_read_loop, direct_gets

from keys import KeyFile, generate_token
from replicator.embedded import LOCAL_REGIONS, config_text, toml_str
from tests.support.wan import Link, WanProxy, far_clouds_yaml, mbit, port_of

MiB = 1 << 20
KiB = 1 << 10
CUSTOMER = "bench-customer"
DATA_CLASS = "project"
PURPOSE = "service"
SCOPES = [f"write:{DATA_CLASS}", f"read:{DATA_CLASS}:{PURPOSE}", f"meta:{DATA_CLASS}", f"delete:{DATA_CLASS}"]
SEGMENT = MiB  # bare loop and direct SDK baseline: AES-GCM per 1 MiB, as the service's stream format
# Local write goals (the reads and WAN issue): the service against the bare loop, one process,
# and with ``serve --processes 2`` (PostgreSQL journal and key store: the "local-2p" rows).
# The direct SDK baseline without aiohttp's per-request proxy and ~/.netrc look-ups in worker
# threads (the SDK's default): the service's driver reads the environment's proxy once, at start,
# and a baseline that paid those look-ups would flatter it.
LEAN_SDK = {"use_env_settings": False}
LOCAL_BIG_PUT_RATIO = 0.85
LOCAL_BIG_PUT_2P_RATIO = 1.0
LOCAL_SMALL_PUT_RATIO = 1.0
CLOUD_LATENCY_RATIO = 1.3
CLOUD_RCLONE_RATIO = 1.3
SERVICE = [str(ROOT / ".venv" / "bin" / "replicator"), "serve"]
RCLONE = "/usr/bin/rclone"
AZURE_ENV = "BENCH_AZURE_CONNECTION_STRING"  # the child's variable (the config names it)
PG_PASSWORD_ENV = "BENCH_PG_PASSWORD"  # likewise, for the PostgreSQL of SharedState
# The WAN (tests/support/wan.py): a node in Canada, Azure near, Swift far behind the proxy.
WAN_LINK = Link(delay=0.075, rate=mbit(200))
# Read goals (the reads and WAN issue): ratios within one run.
LOCAL_GET_SMALL_RATIO = 0.5
LOCAL_GET_BIG_RATIO = 0.7
CLOUD_GET_LATENCY_RATIO = 1.2
WAN_PUT_LATENCY_RATIO = 1.15
WAN_PUT_THROUGHPUT_RATIO = 0.8
# Over the WAN the 4 KiB rows are also measured one request at a time: at concurrency 32 on two shared
# CPUs a p50 is mostly queueing for CPU (Azurite, Swift, the service and this client on the same
# cores); one at a time it is the round trips (tests/integration/test_round_trips.py counts them).
ONE_AT_A_TIME = 20  # objects


@dataclass(frozen=True)
class Sizes:
    big: int = 64 * MiB
    big_count: int = 8
    big_concurrency: int = 4
    small: int = 4 * KiB
    small_local_count: int = 2000
    small_cloud_count: int = 400
    small_concurrency: int = 32


QUICK = Sizes(big_count=2, big_concurrency=2, small_local_count=300, small_cloud_count=100)


# -- measuring -------------------------------------------------------------------------


@dataclass
class Run:
    """One timed batch: ``count`` operations on ``size``-byte objects."""

    what: str
    count: int
    size: int
    concurrency: int
    wall_s: float
    latencies: list[float] = field(default_factory=list, repr=False)
    server_cpu_s: float | None = None
    client_cpu_s: float | None = None
    machine_cpu_s: float | None = None  # every process on the machine: shows interference
    extra: dict = field(default_factory=dict)

    @property
    def mb_s(self) -> float:
        return self.count * self.size / self.wall_s / 1e6

    @property
    def ops_s(self) -> float:
        return self.count / self.wall_s

    def pct(self, p: float) -> float | None:
        if not self.latencies:
            return None
        xs = sorted(self.latencies)
        return xs[max(0, math.ceil(p * len(xs)) - 1)]  # nearest rank

    def summary(self) -> dict:
        out = {
            "what": self.what,
            "count": self.count,
            "size": self.size,
            "concurrency": self.concurrency,
            "wall_s": round(self.wall_s, 4),
            "mb_s": round(self.mb_s, 1),
            "ops_s": round(self.ops_s, 1),
        }
        if self.latencies:
            out.update(
                {
                    "p50_ms": round(self.pct(0.50) * 1e3, 2),
                    "p99_ms": round(self.pct(0.99) * 1e3, 2),
                    "mean_ms": round(sum(self.latencies) / len(self.latencies) * 1e3, 2),
                    "max_ms": round(max(self.latencies) * 1e3, 2),
                }
            )
        if self.server_cpu_s is not None:
            out["server_cpu_s"] = round(self.server_cpu_s, 3)
        if self.client_cpu_s is not None:
            out["client_cpu_s"] = round(self.client_cpu_s, 3)
        if self.machine_cpu_s is not None:
            out["machine_cpu_s"] = round(self.machine_cpu_s, 3)
        return {**out, **self.extra}


async def timed(what: str, count: int, size: int, concurrency: int, op, *, server=None) -> Run:
    """Run ``op(i)`` for i in range(count), ``concurrency`` at a time; latency of each, and the wall time."""
    lat = [0.0] * count
    todo = iter(range(count))

    async def worker():
        for i in todo:
            t = time.perf_counter()
            await op(i)
            lat[i] = time.perf_counter() - t

    cpu0, scpu0, mcpu0, stack0 = time.process_time(), server.cpu() if server else None, machine_cpu(), STACK_CPU()
    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, count))))
    wall = time.perf_counter() - start
    run = Run(
        what,
        count,
        size,
        concurrency,
        wall,
        lat,
        client_cpu_s=time.process_time() - cpu0,
        machine_cpu_s=machine_cpu() - mcpu0,
    )
    if stack := STACK_CPU.since(stack0):
        run.extra["stack_cpu_s"] = stack
    if server:
        run.server_cpu_s = server.cpu() - scpu0
        run.extra["service_peak_rss_mib"] = server.peak_rss_mib()  # so far: which phase set the peak
    return run


def machine_cpu() -> float:
    """Busy CPU seconds of the whole machine so far (every process: ours, the stack's, anyone's)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class StackCpu:
    """CPU seconds of the dev stack's servers, each a process group whose leader's pid is in
    ``$REPLICATOR_TEST_STACK_DIR/run/<server>.pid`` (read only). Empty without a stack."""

    def _groups(self) -> dict[int, str]:
        groups: dict[int, str] = {}  # read each time: a server may have been restarted meanwhile
        run = Path(os.environ.get("REPLICATOR_TEST_STACK_DIR", "")) / "run"
        if os.environ.get("REPLICATOR_TEST_STACK_DIR") and run.is_dir():
            for f in run.glob("*.pid"):
                with contextlib.suppress(ValueError, KeyError, OSError):
                    groups[int(json.loads(f.read_text())["pid"])] = f.stem
        return groups

    def __call__(self) -> Counter:
        out: Counter = Counter()
        groups = self._groups()
        if not groups:
            return out
        tick = os.sysconf("SC_CLK_TCK")
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            name = groups.get(int(fields[2]))  # the process group
            if name:
                out[name] += (int(fields[11]) + int(fields[12])) / tick
        return out

    def since(self, before: Counter) -> dict[str, float]:
        after = self()
        return {k: round(after[k] - before[k], 2) for k in sorted(after) if after[k] - before[k] >= 0.01}


STACK_CPU = StackCpu()


def idle_check(seconds: float = 2.0) -> float:
    """How busy the machine is before we start (CPUs in use, averaged over ``seconds``)."""
    t, c = time.perf_counter(), machine_cpu()
    time.sleep(seconds)
    return (machine_cpu() - c) / (time.perf_counter() - t)


def _check_loopback(url: str, what: str) -> None:
    host = urlsplit(url).hostname or ""
    try:
        ok = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    if not ok:
        sys.exit(f"bench/api.py: {what} ({host!r}) is not a loopback address; refusing to use it")


# -- the bare local loop -------------------------------------------------------------------


def bare_loop(directory: Path, count: int, body: bytes, size: int) -> Run:
    """Encrypt (AES-256-GCM per 1 MiB), hash (SHA-256) and write + fsync two new files, per object."""
    directory.mkdir(parents=True)
    aead = AESGCM(os.urandom(32))
    lat = []
    start = time.perf_counter()
    cpu0, mcpu0 = time.process_time(), machine_cpu()
    for i in range(count):
        t = time.perf_counter()
        plain = memoryview(body)[i * size : (i + 1) * size] if len(body) > size else memoryview(body)
        prefix = os.urandom(8)
        sha = hashlib.sha256()
        fds = [os.open(directory / f"{i:06d}.{r}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600) for r in "ab"]
        try:
            for k, off in enumerate(range(0, size, SEGMENT)):
                sealed = aead.encrypt(prefix + k.to_bytes(4, "big"), plain[off : off + SEGMENT], None)
                sha.update(sealed)
                for fd in fds:
                    os.write(fd, sealed)
            for fd in fds:
                os.fsync(fd)
        finally:
            for fd in fds:
                os.close(fd)
        lat.append(time.perf_counter() - t)
    wall = time.perf_counter() - start
    return Run(
        "bare loop",
        count,
        size,
        1,
        wall,
        lat,
        client_cpu_s=time.process_time() - cpu0,
        machine_cpu_s=machine_cpu() - mcpu0,
    )


# -- the service as a subprocess --------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(directory: Path, regions: str, shared: SharedState | None = None) -> tuple[Path, str]:
    """A config for the service under ``directory``: key-file KEK, one principal; the keyring file
    and a SQLite journal beside it, or ``shared``'s PostgreSQL journal and key store."""
    directory.mkdir(parents=True, exist_ok=True)
    KeyFile.generate(directory / "kek.key")
    token, token_hash = generate_token()
    state = {} if shared is None else {"journal": shared.journal, "keys": f"store = {toml_str(shared.key_store)}"}
    text = config_text("bench", regions, {"bench": (token_hash, SCOPES)}, **state)
    path = directory / "replicator.toml"
    path.write_text(text)
    return path, token


@dataclass(frozen=True)
class SharedState:
    """The dev stack's PostgreSQL as journal and key store, in schemas of the run's own (what
    ``serve --processes N`` needs); the service gets the password through ``PG_PASSWORD_ENV``."""

    dsn: str = field(repr=False)  # with the password: this process's own, never in a config
    schema: str

    @classmethod
    def from_stack(cls) -> SharedState | None:
        dsn = os.environ.get("REPLICATOR_TEST_PG_DSN")
        return cls(dsn, f"bench_{uuid.uuid4().hex[:8]}") if dsn else None

    def _url(self, schema: str) -> str:
        p = urlsplit(self.dsn)
        return f"{p.scheme}://{p.username}@{p.hostname}:{p.port}{p.path}?password_env={PG_PASSWORD_ENV}&schema={schema}"

    @property
    def journal(self) -> str:
        return self._url(self.schema)

    @property
    def key_store(self) -> str:
        return self._url(f"{self.schema}_keys")

    @property
    def env(self) -> dict[str, str]:
        return {PG_PASSWORD_ENV: urlsplit(self.dsn).password or ""}

    async def drop(self) -> None:
        conn = await asyncpg.connect(self.dsn)
        try:
            for schema in (self.schema, f"{self.schema}_keys"):
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()


def _tree(pid: int) -> list[int]:
    """``pid`` and its live descendants (``serve --processes``' children)."""
    pids = [pid]
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                pids += _tree(int(child))
    except FileNotFoundError:
        pass  # it exited meanwhile
    return pids


def _peak_rss_mib(pid: int) -> float | None:
    """The high-water mark of ``pid``'s resident memory (VmHWM), MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return None


#: Each service's peak resident memory through its whole run (the largest of its processes), MiB.
PEAK_RSS_MIB: dict[str, float] = {}
SERVE_RSS_GOAL_MIB = 300


def _tree_cpu(pid: int, tick: int) -> float:
    """User + system CPU seconds of ``pid`` and its live descendants (``serve --processes``' children)."""
    total = 0.0
    for one in _tree(pid):
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue  # it exited meanwhile
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


class Server:
    """``replicator serve`` on a free loopback port; stderr (JSON logs) goes to a file beside the config."""

    def __init__(self, config: Path, env: dict[str, str], args: tuple[str, ...] = (), *, label: str = "service"):
        self.label = label  # its peak memory goes into PEAK_RSS_MIB under this name
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = config.parent / "service.log"
        self._log = open(self.log_path, "wb")
        child_env = {k: v for k, v in os.environ.items() if not k.startswith("REPLICATOR_")}
        child_env.update(env)
        self.proc = subprocess.Popen(
            [*SERVICE, "--config", str(config), "--port", str(self.port), *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=child_env,
            cwd=config.parent,
        )
        self._tick = os.sysconf("SC_CLK_TCK")

    async def ready(self, session: aiohttp.ClientSession, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the service exited ({self.proc.returncode}): {self.tail()}")
            try:
                async with session.get(f"{self.url}/readyz") as r:
                    last = await r.text()
                    if r.status == 200:
                        return
            except aiohttp.ClientError as e:
                last = str(e)
            await asyncio.sleep(0.2)
        raise RuntimeError(f"the service did not become ready: {last}\n{self.tail()}")

    def cpu(self) -> float:
        """User + system CPU seconds of the service (all its threads and processes) so far."""
        return _tree_cpu(self.proc.pid, self._tick)

    def tail(self, n: int = 20) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def peak_rss_mib(self) -> float | None:
        """The largest high-water mark of resident memory among its processes so far, MiB."""
        peaks = [p for p in map(_peak_rss_mib, _tree(self.proc.pid)) if p is not None]
        return round(max(peaks), 1) if peaks else None

    def stop(self) -> None:
        peak = self.peak_rss_mib()
        if peak is not None:
            PEAK_RSS_MIB[self.label] = peak
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # aiohttp's run_app shuts down cleanly on SIGINT
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


class Profiler:
    """``py-spy record`` attached to the service for one phase, raw (collapsed) stacks to a file."""

    def __init__(self, py_spy: str | None, out_dir: Path):
        self.py_spy = py_spy
        self.out_dir = out_dir
        self.files: dict[str, Path] = {}

    @contextlib.asynccontextmanager
    async def phase(self, server: Server, name: str):
        if not self.py_spy:
            yield
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        out = self.out_dir / f"{name}.txt"
        proc = await asyncio.create_subprocess_exec(
            self.py_spy,
            "record",
            "--pid",
            str(server.proc.pid),
            "--format",
            "raw",
            "--rate",
            "200",
            "--output",
            str(out),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        await asyncio.sleep(1.0)  # attaching takes a moment
        try:
            yield
        finally:
            proc.send_signal(signal.SIGINT)  # py-spy writes its output and exits
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()
            if out.exists():
                self.files[name] = out


_FRAME = re.compile(r"^(?P<fn>.*) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")
# An idle worker thread of asyncio.to_thread's pool, blocked in its queue's get(): not work.
_IDLE = ("_worker (concurrent/futures/thread.py:81)",)
_PROJECT = ("keys/", "regions/", "replicator/")


def _short(frame: str) -> tuple[str, str]:
    """(``function (file:line)``, ``function (file)``) with site-packages and the repo cut off the path."""
    m = _FRAME.match(frame)
    if not m:
        return frame, frame
    file = m["file"]
    for marker in ("/site-packages/", "/lib/python3.11/", "/lib/python3"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    file = file.replace(str(ROOT) + "/", "")
    line = f":{m['line']}" if m["line"] else ""
    return f"{m['fn']} ({file}{line})", f"{m['fn']} ({file})"


def top_functions(path: Path, n: int = 12) -> dict:
    """Where the service's time went, from py-spy's raw (collapsed) stacks of one phase.

    Shares are of the *busy* samples (idle pool threads left out; a thread
    blocked in a syscall such as fsync counts as busy, in the Python line that
    made the call). ``loop_pct``: samples of the event-loop thread;
    ``self_lines``: the innermost Python line; ``project_inclusive``: project
    functions (keys/, regions/, replicator/) with everything they called.
    """
    own, incl = Counter(), Counter()
    total = loop = idle = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        k = int(count)
        frames = [_short(f) for f in stack.split(";")]
        if frames[-1][0] in _IDLE:
            idle += k
            continue
        total += k
        if any(f[1].startswith("BaseEventLoop.run_forever") for f in frames):
            loop += k
        own[frames[-1][0]] += k
        for f in {f[1] for f in frames}:
            fn_file = f.rsplit("(", 1)[-1]
            if fn_file.startswith(_PROJECT) and not fn_file.startswith("replicator/cli.py"):
                incl[f] += k

    def pct(c: Counter) -> list:
        return [(f, round(100 * v / total, 1)) for f, v in c.most_common(n)] if total else []

    return {
        "busy_samples": total,
        "idle_samples": idle,
        "loop_pct": round(100 * loop / total, 1) if total else 0,
        "self_lines": pct(own),
        "project_inclusive": pct(incl),
    }


# -- driving the service over HTTP ------------------------------------------------------------


class Api:
    def __init__(self, session: aiohttp.ClientSession, server: Server, token: str, tag: str):
        self.session = session
        self.server = server
        self.auth = {"Authorization": f"Bearer {token}"}
        self.tag = tag

    def url(self, name: str) -> str:
        return f"{self.server.url}/v1/objects/{CUSTOMER}/{DATA_CLASS}/{quote(self.tag + '/' + name)}"

    async def put(self, name: str, body: bytes) -> None:
        headers = {**self.auth, "Content-Type": "application/octet-stream"}
        data = body
        if len(body) > SEND_SLICE:
            # As a careful client would send a big body: aiohttp on Python < 3.12.9 joins the
            # headers and a bytes body into one new buffer, and asyncio copies what the socket
            # did not take (see regions/swift.py): the load generator's waste, not the service's.
            data, headers["Content-Length"] = _slices(body), str(len(body))
        async with self.session.put(self.url(name), data=data, headers=headers) as r:
            answer = await r.read()
            if r.status != 201:
                raise RuntimeError(f"PUT {name}: {r.status} {answer[:300]!r}")
            if json.loads(answer)["replication"] != "complete":
                raise RuntimeError(f"PUT {name}: not complete: {answer[:300]!r}")

    async def delete(self, name: str) -> None:
        async with self.session.delete(self.url(name), headers=self.auth) as r:
            answer = await r.read()
            if r.status != 200:
                raise RuntimeError(f"DELETE {name}: {r.status} {answer[:300]!r}")

    async def get(self, name: str, expect: bytes | None, size: int) -> None:
        async with self.session.get(self.url(name), headers={**self.auth, "X-Purpose": PURPOSE}) as r:
            if r.status != 200:
                raise RuntimeError(f"GET {name}: {r.status} {(await r.read())[:300]!r}")
            if expect is not None:
                got = await r.read()
                if got != expect:
                    raise RuntimeError(f"GET {name}: body differs ({len(got)} of {len(expect)} bytes)")
                return
            n = 0
            async for chunk in r.content.iter_chunked(MiB):
                n += len(chunk)
            if n != size:
                raise RuntimeError(f"GET {name}: {n} bytes, expected {size}")


SEND_SLICE = 1 << 20


async def _slices(body: bytes):
    view = memoryview(body)
    for i in range(0, len(view), SEND_SLICE):
        yield view[i : i + SEND_SLICE]


def _session(concurrency: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=max(concurrency, 8)),
        timeout=aiohttp.ClientTimeout(total=900),
        auto_decompress=False,
    )


async def service_phases(
    label: str,
    server: Server,
    token: str,
    sizes: Sizes,
    small_count: int,
    big_body: bytes,
    small_bodies: list[bytes],
    profiler: Profiler,
    *,
    one_at_a_time: bool = False,
) -> dict[str, Run]:
    """PUT then GET of the big objects, then of the small ones; each timed on its own. New names each call.
    With ``one_at_a_time``, the small PUT and GET again at concurrency 1 (``put_small_1``, ``get_small_1``)."""
    runs: dict[str, Run] = {}
    async with _session(sizes.small_concurrency) as session:
        await server.ready(session)
        api = Api(session, server, token, f"bench-{uuid.uuid4().hex[:8]}")
        for i in range(4):  # warm-up: data key, Keystone token, connection pools
            await api.put(f"warm-{i}", small_bodies[i])
            await api.get(f"warm-{i}", small_bodies[i], sizes.small)
        s = sizes
        async with profiler.phase(server, f"{label}-put-64MiB"):
            runs["put_big"] = await timed(
                "PUT", s.big_count, s.big, s.big_concurrency, lambda i: api.put(f"big-{i:03d}", big_body), server=server
            )
        # Verify one whole body, then time plain reads.
        await api.get("big-000", big_body, s.big)
        async with profiler.phase(server, f"{label}-get-64MiB"):
            runs["get_big"] = await timed(
                "GET",
                s.big_count,
                s.big,
                s.big_concurrency,
                lambda i: api.get(f"big-{i:03d}", None, s.big),
                server=server,
            )
        # DATA_CLASS keeps versions: a DELETE keeps what it deletes, a copy inside each region.
        async with profiler.phase(server, f"{label}-delete-64MiB"):
            runs["delete_big"] = await timed(
                "DELETE", s.big_count, s.big, s.big_concurrency, lambda i: api.delete(f"big-{i:03d}"), server=server
            )
        async with profiler.phase(server, f"{label}-put-4KiB"):
            runs["put_small"] = await timed(
                "PUT",
                small_count,
                s.small,
                s.small_concurrency,
                lambda i: api.put(f"small-{i:05d}", small_bodies[i]),
                server=server,
            )
        async with profiler.phase(server, f"{label}-get-4KiB"):
            runs["get_small"] = await timed(
                "GET",
                small_count,
                s.small,
                s.small_concurrency,
                lambda i: api.get(f"small-{i:05d}", small_bodies[i], s.small),
                server=server,
            )
        if one_at_a_time:
            runs["put_small_1"] = await timed(
                "PUT", ONE_AT_A_TIME, s.small, 1, lambda i: api.put(f"one-{i:05d}", small_bodies[i]), server=server
            )
            runs["get_small_1"] = await timed(
                "GET",
                ONE_AT_A_TIME,
                s.small,
                1,
                lambda i: api.get(f"one-{i:05d}", small_bodies[i], s.small),
                server=server,
            )
    return runs


# -- Azurite + Swift: setup, direct SDK baseline, cleanup ------------------------------------------


@dataclass
class Cloud:
    connection_string: str
    clouds_yaml: str
    cloud: str
    container: str
    swift_auth: dict = field(default_factory=dict)  # auth_url, username, password, project...
    swift_region: str = ""
    swift_token: str = ""
    swift_endpoint: str = ""


def cloud_from_env(container: str) -> Cloud:
    need = ["REPLICATOR_TEST_AZURE_CONNECTION_STRING", "REPLICATOR_TEST_CLOUDS_YAML", "REPLICATOR_TEST_SWIFT_CLOUD"]
    missing = [v for v in need if not os.environ.get(v)]
    if missing:
        sys.exit(
            f"bench/api.py: {', '.join(missing)} unset: start the dev stack and "
            f'`eval "$(deploy/dev/stack env)"` (or run with --only local)'
        )
    import yaml

    cloud = Cloud(os.environ[need[0]], os.environ[need[1]], os.environ[need[2]], container)
    entry = yaml.safe_load(Path(cloud.clouds_yaml).read_text())["clouds"][cloud.cloud]
    cloud.swift_auth = entry["auth"]
    cloud.swift_region = entry.get("region_name", "")
    blob = dict(p.split("=", 1) for p in cloud.connection_string.split(";") if "=" in p).get("BlobEndpoint", "")
    _check_loopback(blob, "Azurite's BlobEndpoint")
    _check_loopback(cloud.swift_auth["auth_url"], "Keystone's auth_url")
    return cloud


def cloud_regions(cloud: Cloud) -> str:
    """The config's two regions on the run's Azurite and Swift containers."""
    return f"""[regions.ca]
kind = "azure"
location = "canadacentral"
country = "CA"
container = "{cloud.container}"
connection_string_env = "{AZURE_ENV}"

[regions.jp]
kind = "swift"
provider = "swift"
location = "devstack"
country = "JP"
cloud = {toml_str(cloud.cloud)}
clouds_yaml = {toml_str(cloud.clouds_yaml)}
container = "{cloud.container}"
"""


def swift_login(cloud: Cloud) -> None:
    from openstack import connection
    from openstack.config import loader

    config = loader.OpenStackConfig(config_files=[cloud.clouds_yaml], load_envvars=False)
    conn = connection.Connection(config=config.get_one(cloud=cloud.cloud))
    try:
        cloud.swift_token = conn.auth_token
        cloud.swift_endpoint = conn.object_store.get_endpoint().rstrip("/")
    finally:
        conn.close()
    _check_loopback(cloud.swift_endpoint, "the Swift endpoint")


def _swift_url(cloud: Cloud, container: str, key: str | None = None, query: str = "") -> str:
    url = f"{cloud.swift_endpoint}/{quote(container, safe='')}"
    if key is not None:
        url += "/" + quote(key, safe="/")
    return url + (f"?{query}" if query else "")


async def cloud_setup(cloud: Cloud) -> None:
    from azure.storage.blob.aio import BlobServiceClient

    async with BlobServiceClient.from_connection_string(cloud.connection_string, **LEAN_SDK) as svc:
        await svc.create_container(cloud.container)
    await asyncio.to_thread(swift_login, cloud)
    async with aiohttp.ClientSession() as s:
        for c in (cloud.container, f"{cloud.container}_segments"):
            async with s.put(_swift_url(cloud, c), headers={"X-Auth-Token": cloud.swift_token}) as r:
                if r.status not in (201, 202):
                    raise RuntimeError(f"Swift container PUT {c}: {r.status}")


async def cloud_cleanup(cloud: Cloud) -> None:
    from azure.core.exceptions import ResourceNotFoundError
    from azure.storage.blob.aio import BlobServiceClient

    async with BlobServiceClient.from_connection_string(cloud.connection_string, **LEAN_SDK) as svc:
        with contextlib.suppress(ResourceNotFoundError):
            await svc.delete_container(cloud.container)
    if not cloud.swift_token:
        return
    await asyncio.to_thread(swift_login, cloud)  # a fresh token: the run may have been long
    headers = {"X-Auth-Token": cloud.swift_token}
    sem = asyncio.Semaphore(16)
    async with aiohttp.ClientSession() as s:

        async def delete(url: str) -> None:
            async with sem, s.delete(url, headers=headers) as r:
                await r.read()

        for c in (cloud.container, f"{cloud.container}_segments"):
            while True:
                async with s.get(_swift_url(cloud, c, query="format=json&limit=10000"), headers=headers) as r:
                    names = [o["name"] for o in json.loads(await r.read())] if r.status == 200 else []
                if not names:
                    break
                await asyncio.gather(*(delete(_swift_url(cloud, c, n)) for n in names))
            await delete(_swift_url(cloud, c))


def seal(aead: AESGCM, plain: bytes | memoryview) -> bytes:
    """Encrypt once, in 1 MiB AES-256-GCM segments (a random nonce prefix and a counter)."""
    prefix = os.urandom(8)
    view = memoryview(plain)
    return b"".join(
        aead.encrypt(prefix + k.to_bytes(4, "big"), view[off : off + SEGMENT], None)
        for k, off in enumerate(range(0, max(len(view), 1), SEGMENT))
    )


async def direct_phases(
    cloud: Cloud, sizes: Sizes, big_body: bytes, small_bodies: list[bytes], prefix: str, *, one_at_a_time: bool = False
) -> dict[str, Run]:
    """Encrypt once, then Azure upload_blob and a Swift PUT of the same ciphertext at once, per object."""
    from azure.storage.blob.aio import BlobServiceClient

    aead = AESGCM(os.urandom(32))
    runs: dict[str, Run] = {}
    async with (
        BlobServiceClient.from_connection_string(cloud.connection_string, **LEAN_SDK) as svc,
        _session(sizes.small_concurrency) as swift,
    ):
        container = svc.get_container_client(cloud.container)

        async def swift_put(key: str, data: bytes) -> None:
            headers = {"X-Auth-Token": cloud.swift_token, "Content-Type": "application/octet-stream"}
            body = data
            if len(data) > SEND_SLICE:  # as Api.put sends a big body
                body, headers["Content-Length"] = _slices(data), str(len(data))
            async with swift.put(_swift_url(cloud, cloud.container, key), data=body, headers=headers) as r:
                await r.read()
                if r.status != 201:
                    raise RuntimeError(f"Swift PUT {key}: {r.status}")

        async def put(key: str, plain: bytes) -> None:
            data = seal(aead, plain)
            await asyncio.gather(container.upload_blob(key, data, overwrite=True), swift_put(key, data))

        for i in range(4):  # warm-up: connection pools
            await put(f"{prefix}warm-{i}", small_bodies[i])
        s = sizes
        runs["put_big"] = await timed(
            "PUT", s.big_count, s.big, s.big_concurrency, lambda i: put(f"{prefix}big-{i:03d}", big_body)
        )
        runs["put_small"] = await timed(
            "PUT",
            s.small_cloud_count,
            s.small,
            s.small_concurrency,
            lambda i: put(f"{prefix}small-{i:05d}", small_bodies[i]),
        )
        big_keys = [f"{prefix}big-{i:03d}" for i in range(s.big_count)]
        small_keys = [f"{prefix}small-{i:05d}" for i in range(s.small_cloud_count)]
        runs["get_big"] = await direct_gets(container, big_keys, s.big, s.big_concurrency, timed)
        runs["get_small"] = await direct_gets(container, small_keys, s.small, s.small_concurrency, timed)
        # The far region alone (Swift; over the WAN, through the proxy): what a write must wait for.
        big_sealed = seal(aead, big_body)
        runs["put_far_big"] = await timed(
            "PUT far",
            s.big_count,
            s.big,
            s.big_concurrency,
            lambda i: swift_put(f"{prefix}far-big-{i:03d}", big_sealed),
        )
        runs["put_far_small"] = await timed(
            "PUT far",
            s.small_cloud_count,
            s.small,
            s.small_concurrency,
            lambda i: swift_put(f"{prefix}far-small-{i:05d}", seal(aead, small_bodies[i])),
        )
        if one_at_a_time:  # as the service's put_small_1 and get_small_1
            runs["put_far_small_1"] = await timed(
                "PUT far",
                ONE_AT_A_TIME,
                s.small,
                1,
                lambda i: swift_put(f"{prefix}far-one-{i:05d}", seal(aead, small_bodies[i])),
            )
            runs["get_small_1"] = await direct_gets(container, small_keys[:ONE_AT_A_TIME], s.small, 1, timed)
    return runs


# -- rclone crypt ---------------------------------------------------------------------------------


def rclone_env(cloud: Cloud, conf: Path) -> dict[str, str]:
    password = subprocess.run(
        [RCLONE, "obscure", uuid.uuid4().hex],
        check=True,
        capture_output=True,
        text=True,
        env={"RCLONE_CONFIG": str(conf), "PATH": os.environ.get("PATH", "")},
    ).stdout.strip()
    blob = dict(p.split("=", 1) for p in cloud.connection_string.split(";") if "=" in p)["BlobEndpoint"]
    a = cloud.swift_auth
    env = {k: v for k, v in os.environ.items() if not k.startswith("RCLONE_")}
    env.update(
        {
            "RCLONE_CONFIG": str(conf),
            "RCLONE_CONFIG_AZ_TYPE": "azureblob",
            "RCLONE_CONFIG_AZ_USE_EMULATOR": "true",
            "RCLONE_CONFIG_AZ_ENDPOINT": blob.rstrip("/"),
            "RCLONE_CONFIG_SW_TYPE": "swift",
            "RCLONE_CONFIG_SW_AUTH": a["auth_url"],
            "RCLONE_CONFIG_SW_AUTH_VERSION": "3",
            "RCLONE_CONFIG_SW_USER": a["username"],
            "RCLONE_CONFIG_SW_KEY": a["password"],
            "RCLONE_CONFIG_SW_TENANT": a["project_name"],
            "RCLONE_CONFIG_SW_DOMAIN": a.get("user_domain_name", "Default"),
            "RCLONE_CONFIG_SW_TENANT_DOMAIN": a.get("project_domain_name", "Default"),
            "RCLONE_CONFIG_SW_REGION": cloud.swift_region,
        }
    )
    for name, remote in (("AZC", "az"), ("SWC", "sw")):
        env[f"RCLONE_CONFIG_{name}_TYPE"] = "crypt"
        env[f"RCLONE_CONFIG_{name}_REMOTE"] = f"{remote}:{cloud.container}/rclone"
        env[f"RCLONE_CONFIG_{name}_PASSWORD"] = password
    return env


async def rclone_copy(
    env: dict[str, str], source: Path, dest: str, what: str, count: int, size: int, concurrency: int
) -> Run:
    """Two ``rclone copy`` processes at once (one per store); wall time until both have exited."""

    async def one(remote: str) -> float:
        t = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            RCLONE,
            "copy",
            str(source),
            f"{remote}:{dest}",
            "--retries",
            "1",
            "--low-level-retries",
            "1",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await proc.communicate()
        if proc.returncode:
            raise RuntimeError(f"rclone copy to {remote}: exit {proc.returncode}: {err.decode()[-800:]}")
        return time.perf_counter() - t

    start, mcpu0, stack0 = time.perf_counter(), machine_cpu(), STACK_CPU()
    child0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    az, sw = await asyncio.gather(one("azc"), one("swc"))
    wall = time.perf_counter() - start
    child = resource.getrusage(resource.RUSAGE_CHILDREN)
    return Run(
        what,
        count,
        size,
        concurrency,
        wall,
        machine_cpu_s=machine_cpu() - mcpu0,
        extra={
            "azure_s": round(az, 3),
            "swift_s": round(sw, 3),
            "rclone_cpu_s": round(child.ru_utime + child.ru_stime - child0.ru_utime - child0.ru_stime, 2),
            "stack_cpu_s": STACK_CPU.since(stack0),
        },
    )


def rclone_files(tmp: Path, sizes: Sizes, big_body: bytes, small_bodies: list[bytes]) -> tuple[Path, Path]:
    """The same objects as files on disk, for rclone to copy."""
    big_dir, small_dir = tmp / "rclone-big", tmp / "rclone-small"
    big_dir.mkdir(parents=True)
    small_dir.mkdir(parents=True)
    for i in range(sizes.big_count):
        (big_dir / f"big-{i:03d}").write_bytes(big_body)
    for i in range(sizes.small_cloud_count):
        (small_dir / f"small-{i:05d}").write_bytes(small_bodies[i])
    os.sync()  # the files are on disk (and in the page cache) before the clock starts
    return big_dir, small_dir


async def rclone_phases(env: dict[str, str], dirs: tuple[Path, Path], sizes: Sizes, prefix: str) -> dict[str, Run]:
    big_dir, small_dir = dirs
    return {
        "put_big": await rclone_copy(env, big_dir, f"{prefix}big", "rclone copy", sizes.big_count, sizes.big, 4),
        "put_small": await rclone_copy(
            env, small_dir, f"{prefix}small", "rclone copy", sizes.small_cloud_count, sizes.small, 4
        ),
    }


# -- the run --------------------------------------------------------------------------------------


def _add(into: dict[str, list[Run]], runs: dict[str, Run]) -> None:
    for key, run in runs.items():
        into.setdefault(key, []).append(run)


async def run_local(
    tmp: Path, sizes: Sizes, rounds: int, big_body: bytes, small_bodies: list[bytes], profiler: Profiler
) -> dict:
    """Rounds of: the bare loop, then the service (one server for all rounds, new names each round);
    with the dev stack's PostgreSQL, also ``serve --processes 2`` on it ("service_2p")."""
    base = tmp / "local"
    small_plain = b"".join(small_bodies[: sizes.small_local_count])
    out: dict[str, dict[str, list[Run]]] = {"bare": {}, "service": {}}
    config, token = write_config(base / "service", LOCAL_REGIONS)  # under the config's folder
    services = {"service": (Server(config, {}, label="local"), token)}
    shared = SharedState.from_stack()
    if shared is None:
        print('local, 2 processes: not measured (no PostgreSQL: eval "$(deploy/dev/stack env)")', file=sys.stderr)
    else:
        config_2p, token_2p = write_config(base / "service-2p", LOCAL_REGIONS, shared)
        server_2p = Server(config_2p, shared.env, ("--processes", "2"), label="local, 2 processes")
        services["service_2p"] = (server_2p, token_2p)
        out["service_2p"] = {}
    try:
        for r in range(rounds):
            _add(
                out["bare"],
                {
                    "put_big": bare_loop(base / f"bare-big-{r}", sizes.big_count, big_body, sizes.big),
                    "put_small": bare_loop(base / f"bare-small-{r}", sizes.small_local_count, small_plain, sizes.small),
                    "get_big": bare_read_loop(
                        base / f"bare-read-big-{r}", sizes.big_count, big_body, sizes.big, Run, machine_cpu
                    ),
                    "get_small": bare_read_loop(
                        base / f"bare-read-small-{r}",
                        sizes.small_local_count,
                        small_plain,
                        sizes.small,
                        Run,
                        machine_cpu,
                    ),
                },
            )
            for d in ("bare-big", "bare-small", "bare-read-big", "bare-read-small"):
                shutil.rmtree(base / f"{d}-{r}")
            for kind, (server, key) in services.items():
                label = "local" if kind == "service" else "local-2p"
                _add(
                    out[kind],
                    await service_phases(
                        label, server, key, sizes, sizes.small_local_count, big_body, small_bodies, profiler
                    ),
                )
    except BaseException:
        for server, _ in services.values():
            print(server.tail(), file=sys.stderr)
        raise
    finally:
        for server, _ in services.values():
            server.stop()
        if shared is not None:
            await shared.drop()
    return out


async def run_cloud(
    tmp: Path, sizes: Sizes, rounds: int, big_body: bytes, small_bodies: list[bytes], profiler: Profiler
) -> dict:
    """Rounds of: direct SDK puts, the service, rclone crypt (one server for all rounds, new names each)."""
    cloud = cloud_from_env(f"bench-api-{uuid.uuid4().hex[:12]}")
    return await _run_cloud(
        cloud, tmp / "cloud", sizes, rounds, big_body, small_bodies, profiler, rclone=True, label="cloud"
    )


async def run_wan(
    tmp: Path, sizes: Sizes, rounds: int, big_body: bytes, small_bodies: list[bytes], profiler: Profiler
) -> dict:
    """As ``run_cloud``, with Swift far (``WAN_LINK`` each way) and Azure near; no rclone (its Swift
    endpoint comes from the catalog, which the proxy is not in)."""
    cloud = cloud_from_env(f"bench-wan-{uuid.uuid4().hex[:12]}")
    await asyncio.to_thread(swift_login, cloud)  # the catalog's endpoint, to put the proxy in front of
    async with WanProxy(port_of(cloud.swift_endpoint), WAN_LINK) as wan:
        (tmp / "wan").mkdir(parents=True)
        far = far_clouds_yaml(cloud.clouds_yaml, cloud.cloud, cloud.swift_endpoint, wan.port, tmp / "wan" / "far.yaml")
        cloud.clouds_yaml = str(far)
        return await _run_cloud(
            cloud,
            tmp / "wan",
            sizes,
            rounds,
            big_body,
            small_bodies,
            profiler,
            rclone=False,
            one_at_a_time=True,
            label="wan",
        )


async def _run_cloud(
    cloud: Cloud,
    tmp: Path,
    sizes: Sizes,
    rounds: int,
    big_body: bytes,
    small_bodies: list[bytes],
    profiler: Profiler,
    *,
    rclone: bool,
    one_at_a_time: bool = False,
    label: str,
) -> dict:
    out: dict[str, dict[str, list[Run]]] = {"direct": {}, "service": {}, "rclone": {}}
    try:
        await cloud_setup(cloud)
        conf = tmp / "rclone.conf"  # empty: rclone takes its remotes from the environment
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text("")
        env = rclone_env(cloud, conf)
        dirs = rclone_files(tmp, sizes, big_body, small_bodies) if rclone else None
        config, token = write_config(tmp / "service", cloud_regions(cloud))
        server = Server(config, {AZURE_ENV: cloud.connection_string}, label=label)
        try:
            for r in range(rounds):
                _add(
                    out["direct"],
                    await direct_phases(
                        cloud, sizes, big_body, small_bodies, f"direct/r{r}/", one_at_a_time=one_at_a_time
                    ),
                )
                _add(
                    out["service"],
                    await service_phases(
                        "cloud",
                        server,
                        token,
                        sizes,
                        sizes.small_cloud_count,
                        big_body,
                        small_bodies,
                        profiler,
                        one_at_a_time=one_at_a_time,
                    ),
                )
                if dirs is not None:
                    _add(out["rclone"], await rclone_phases(env, dirs, sizes, f"r{r}/"))
        except BaseException:
            print(server.tail(), file=sys.stderr)
            raise
        finally:
            server.stop()
    finally:
        await cloud_cleanup(cloud)
    return out


def best(runs: list[Run]) -> Run:
    """The round with the shortest wall time: noise on a shared machine only ever slows a run down."""
    return min(runs, key=lambda r: r.wall_s)


def best_p50(runs: list[Run]) -> float:
    return min(r.pct(0.5) for r in runs)


def targets(results: dict) -> list[dict]:
    """Each target's ratio, from the best round of each side (best wall time; lowest p50 for latency)."""
    out = []

    def add(name, value, op, target, detail):
        ok = value >= target if op == ">=" else value <= target
        out.append({"target": name, "ratio": round(value, 3), "op": op, "goal": target, "pass": ok, "detail": detail})

    if "local" in results:
        bare = {k: best(v) for k, v in results["local"]["bare"].items()}
        svc = {k: best(v) for k, v in results["local"]["service"].items()}
        add(
            "local 64 MiB PUT MB/s vs bare loop",
            svc["put_big"].mb_s / bare["put_big"].mb_s,
            ">=",
            LOCAL_BIG_PUT_RATIO,
            f"{svc['put_big'].mb_s:,.0f} vs {bare['put_big'].mb_s:,.0f} MB/s",
        )
        add(
            "local 4 KiB PUT ops/s vs bare loop",
            svc["put_small"].ops_s / bare["put_small"].ops_s,
            ">=",
            LOCAL_SMALL_PUT_RATIO,
            f"{svc['put_small'].ops_s:,.0f} vs {bare['put_small'].ops_s:,.0f} ops/s",
        )
        add(
            "local 4 KiB GET ops/s vs bare read loop",
            svc["get_small"].ops_s / bare["get_small"].ops_s,
            ">=",
            LOCAL_GET_SMALL_RATIO,
            f"{svc['get_small'].ops_s:,.0f} vs {bare['get_small'].ops_s:,.0f} ops/s",
        )
        add(
            "local 64 MiB GET MB/s vs bare read + decrypt",
            svc["get_big"].mb_s / bare["get_big"].mb_s,
            ">=",
            LOCAL_GET_BIG_RATIO,
            f"{svc['get_big'].mb_s:,.0f} vs {bare['get_big'].mb_s:,.0f} MB/s",
        )
        if "service_2p" in results["local"]:  # serve --processes 2 on PostgreSQL: every core of the host
            two = {k: best(v) for k, v in results["local"]["service_2p"].items()}
            for key, what, unit, goal in (
                ("put_big", "64 MiB PUT MB/s vs bare loop", "mb_s", LOCAL_BIG_PUT_2P_RATIO),
                ("put_small", "4 KiB PUT ops/s vs bare loop", "ops_s", LOCAL_SMALL_PUT_RATIO),
                ("get_small", "4 KiB GET ops/s vs bare read loop", "ops_s", LOCAL_GET_SMALL_RATIO),
                ("get_big", "64 MiB GET MB/s vs bare read + decrypt", "mb_s", LOCAL_GET_BIG_RATIO),
            ):
                mine, theirs = getattr(two[key], unit), getattr(bare[key], unit)
                add(
                    f"local, 2 processes: {what}",
                    mine / theirs,
                    ">=",
                    goal,
                    f"{mine:,.0f} vs {theirs:,.0f} {'MB/s' if unit == 'mb_s' else 'ops/s'}",
                )
    for backend, label in (("cloud", "cloud"), ("wan", "WAN: near")):
        if backend in results:
            sp, dp = (
                best_p50(results[backend]["service"]["get_small"]),
                best_p50(results[backend]["direct"]["get_small"]),
            )
            add(
                f"{label} 4 KiB GET p50 vs direct GET, preferred",
                sp / dp,
                "<=",
                CLOUD_GET_LATENCY_RATIO,
                f"{sp * 1e3:,.1f} vs {dp * 1e3:,.1f} ms",
            )
    if "wan" in results:
        wan = results["wan"]
        sp, dp = best_p50(wan["service"]["put_small"]), best_p50(wan["direct"]["put_far_small"])
        add(
            "WAN: 4 KiB PUT p50 vs direct far PUT",
            sp / dp,
            "<=",
            WAN_PUT_LATENCY_RATIO,
            f"{sp * 1e3:,.1f} vs {dp * 1e3:,.1f} ms",
        )
        one_at_a_time = (
            (
                "4 KiB PUT p50, one at a time, vs direct far PUT",
                "put_small_1",
                "put_far_small_1",
                WAN_PUT_LATENCY_RATIO,
            ),
            ("near 4 KiB GET p50, one at a time, vs direct GET", "get_small_1", "get_small_1", CLOUD_GET_LATENCY_RATIO),
        )
        for what, service_key, direct_key, goal in one_at_a_time:
            if service_key in wan["service"]:
                sp, dp = best_p50(wan["service"][service_key]), best_p50(wan["direct"][direct_key])
                add(f"WAN: {what}", sp / dp, "<=", goal, f"{sp * 1e3:,.1f} vs {dp * 1e3:,.1f} ms")
        svc_big, far_big = best(wan["service"]["put_big"]), best(wan["direct"]["put_far_big"])
        add(
            "WAN: 64 MiB PUT MB/s vs direct far PUT",
            svc_big.mb_s / far_big.mb_s,
            ">=",
            WAN_PUT_THROUGHPUT_RATIO,
            f"{svc_big.mb_s:,.1f} vs {far_big.mb_s:,.1f} MB/s",
        )
    for label, mib in PEAK_RSS_MIB.items():
        add(
            f"serve peak RSS, {label} (MiB, whole run)",
            mib,
            "<=",
            SERVE_RSS_GOAL_MIB,
            f"{mib:,.0f} MiB (VmHWM, the largest of its processes)",
        )
    if "cloud" in results:
        svc, rc = ({k: best(v) for k, v in results["cloud"][kind].items()} for kind in ("service", "rclone"))
        for key, label in (("put_small", "4 KiB"), ("put_big", "64 MiB")):
            sp, dp = best_p50(results["cloud"]["service"][key]), best_p50(results["cloud"]["direct"][key])
            add(
                f"cloud {label} PUT p50 latency vs direct SDK",
                sp / dp,
                "<=",
                CLOUD_LATENCY_RATIO,
                f"{sp * 1e3:,.1f} vs {dp * 1e3:,.1f} ms",
            )
        for key, label in (("put_small", "4 KiB"), ("put_big", "64 MiB")):
            add(
                f"cloud {label} PUT throughput vs rclone crypt",
                rc[key].wall_s / svc[key].wall_s,
                ">=",
                CLOUD_RCLONE_RATIO,
                f"{svc[key].wall_s:.2f} vs {rc[key].wall_s:.2f} s for {svc[key].count} objects",
            )
    return out


def print_table(results: dict, checks: list[dict], profiles: dict) -> None:
    print(
        f"{'backend':<18} {'what':<12} {'objects':>12} {'conc':>4} | {'wall s':>7} {'MB/s':>8} {'ops/s':>8} "
        f"{'p50 ms':>8} {'p99 ms':>8} | {'svc CPU s':>9} {'cli CPU s':>9} {'all CPU s':>9} | {'spread':>6}"
    )
    rows = [
        ("local", "bare", "bare loop"),
        ("local", "service", "service"),
        ("local", "service_2p", "2 processes"),
        ("cloud", "direct", "direct SDK"),
        ("cloud", "service", "service"),
        ("cloud", "rclone", "rclone crypt"),
        ("wan", "direct", "direct SDK"),
        ("wan", "service", "service"),
    ]
    for backend, kind, label in rows:
        if kind not in results.get(backend, {}):
            continue
        for runs in results[backend][kind].values():
            run = best(runs)
            spread = f"{100 * (max(r.wall_s for r in runs) / run.wall_s - 1):5.0f}%" if len(runs) > 1 else ""
            size = "64 MiB" if run.size >= MiB else f"{run.size // KiB} KiB"
            p50 = f"{run.pct(0.5) * 1e3:8.1f}" if run.latencies else f"{'':>8}"
            p99 = f"{run.pct(0.99) * 1e3:8.1f}" if run.latencies else f"{'':>8}"
            scpu = f"{run.server_cpu_s:9.2f}" if run.server_cpu_s is not None else f"{'':>9}"
            ccpu = f"{run.client_cpu_s:9.2f}" if run.client_cpu_s is not None else f"{'':>9}"
            mcpu = f"{run.machine_cpu_s:9.2f}" if run.machine_cpu_s is not None else f"{'':>9}"
            print(
                f"{backend + ' ' + label:<18} {run.what:<12} {f'{run.count} x {size}':>12} {run.concurrency:>4} | "
                f"{run.wall_s:7.2f} {run.mb_s:8.1f} {run.ops_s:8.1f} {p50} {p99} | {scpu} {ccpu} {mcpu} | {spread:>6}"
            )
    if "wan" in results:
        print(f"\nwan: Azure near, Swift far through tests/support/wan.py: {WAN_LINK}")
    if "cloud" in results:
        print("\nCPU seconds of the stack's servers (and rclone's own) during each cloud phase:")
        for kind in ("direct", "service", "rclone"):
            for runs in results["cloud"][kind].values():
                run = best(runs)
                size = "64 MiB" if run.size >= MiB else f"{run.size // KiB} KiB"
                parts = dict(run.extra.get("stack_cpu_s", {}))
                if "rclone_cpu_s" in run.extra:
                    parts["rclone"] = run.extra["rclone_cpu_s"]
                print(f"  {kind:<8} {run.what:<12} {size:>6}: " + ", ".join(f"{k} {v:.1f}" for k, v in parts.items()))
    print()
    for c in checks:
        print(
            f"{'PASS' if c['pass'] else 'MISS'}  {c['target']:<46} {c['ratio']:6.2f} (goal {c['op']} "
            f"{c['goal']})  {c['detail']}"
        )
    for name, top in profiles.items():
        print(
            f"\nprofile {name}: {top['busy_samples']} busy samples, {top['loop_pct']}% on the event-loop "
            f"thread; innermost line, % of busy:"
        )
        for f, p in top["self_lines"][:10]:
            print(f"  {p:5.1f}  {f}")
        print("  project functions, inclusive %:")
        for f, p in top["project_inclusive"][:10]:
            print(f"  {p:5.1f}  {f}")


async def main_async(args) -> None:
    sizes = QUICK if args.quick else Sizes()
    big_body = os.urandom(sizes.big)
    n_small = max(sizes.small_local_count, sizes.small_cloud_count)
    pool = os.urandom(sizes.small * n_small)
    small_bodies = [pool[i * sizes.small : (i + 1) * sizes.small] for i in range(n_small)]
    py_spy = (args.py_spy or shutil.which("py-spy")) if args.profile else None
    if args.profile and not py_spy:
        sys.exit("bench/api.py: --profile needs py-spy (pip install py-spy; give --py-spy PATH)")
    profiler = Profiler(py_spy, ROOT / "bench" / "results" / "api-profiles")
    rounds = 1 if py_spy else args.rounds or (1 if args.quick else 2)
    busy = idle_check()
    if busy > 0.15:
        print(
            f"warning: the machine is busy before the run ({busy:.2f} CPUs in use): figures will be "
            f"perturbed; see the 'all CPU s' column",
            file=sys.stderr,
        )
    results: dict = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-api-", dir=args.tmp) as tmp:
        if args.only in (None, "local"):
            results["local"] = await run_local(Path(tmp), sizes, rounds, big_body, small_bodies, profiler)
        if args.only in (None, "cloud", "cloud+wan"):
            results["cloud"] = await run_cloud(Path(tmp), sizes, rounds, big_body, small_bodies, profiler)
        if args.only in (None, "wan", "cloud+wan"):
            results["wan"] = await run_wan(Path(tmp), sizes, rounds, big_body, small_bodies, profiler)
    elapsed = time.perf_counter() - started
    checks = targets(results)
    profiles = {name: top_functions(path) for name, path in profiler.files.items()}

    print(
        f"replicator HTTP API, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        f"MB = 10**6 B of plaintext; {elapsed:.0f} s in all{' (profiled: figures perturbed)' if py_spy else ''}"
    )
    print_table(results, checks, profiles)

    out = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "nproc": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cryptography": cryptography.__version__,
            "aiohttp": aiohttp.__version__,
            "rclone": args.rclone_version,
        },
        "tree": args.tree,  # what was measured: the commit, and files changed in the working tree
        "busy_before_cpus": round(busy, 3),
        "quick": args.quick,
        "profiled": bool(py_spy),
        "rounds": rounds,
        "sizes": asdict(sizes),
        "elapsed_s": round(elapsed, 1),
        # Per phase: the best round (shortest wall time; what the table shows) and every round.
        "results": {
            backend: {
                kind: {
                    k: {"best": best(runs).summary(), "rounds": [r.summary() for r in runs]}
                    for k, runs in parts_kind.items()
                }
                for kind, parts_kind in parts.items()
            }
            for backend, parts in results.items()
        },
        "targets": checks,
        "profiles": {
            name: {**top, "file": str(profiler.files[name].relative_to(ROOT))} for name, top in profiles.items()
        },
    }
    # A profiled run's figures are perturbed: keep them out of api.json.
    path = ROOT / "bench" / "results" / ("api-profile.json" if py_spy else "api.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer objects (a smoke test)")
    parser.add_argument("--only", choices=["local", "cloud", "wan", "cloud+wan"], help="run one backend only")
    parser.add_argument("--profile", action="store_true", help="attach py-spy to the service for each phase")
    parser.add_argument("--py-spy", help="path of py-spy (default: on PATH)")
    parser.add_argument("--rounds", type=int, help="repeat every phase, interleaved (default 2; --quick 1)")
    parser.add_argument("--tmp", help="parent of the run's temp dir (default: the system's; same disk matters)")
    args = parser.parse_args()

    def git(*a: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *a], check=False, capture_output=True, text=True).stdout

    args.tree = {
        "commit": git("rev-parse", "HEAD").strip(),
        "modified": [
            ln.split(maxsplit=1)[1]
            for ln in git("status", "--porcelain", "--untracked-files=no").splitlines()
            if ln.strip()
        ],
    }
    args.rclone_version = (
        subprocess.run([RCLONE, "version"], check=True, capture_output=True, text=True).stdout.split("\n")[0].strip()
    )
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
