"""The wheel, installed outside the source tree, serves the embedded default.

The wheel is built from a copy of ``pyproject.toml`` and the three packages
(the build writes ``build/`` and ``*.egg-info`` beside its sources, so not into
the checkout), offline: ``pip wheel --no-build-isolation --no-index`` with the
setuptools of the test environment. It is installed with ``--no-deps`` into a
fresh venv made without ``--system-site-packages``; the third-party
dependencies are the test environment's, reached through a ``.pth`` line (a
directory a ``.pth`` names is only appended to ``sys.path``: the ``.pth`` files
inside it, among them this checkout's editable install, are not run).

Then, from an empty working directory and with no ``PYTHONPATH``: the packages
import from the venv, not from this checkout; the default policy, the OpenAPI
document and the ``py.typed`` markers are there; and the venv's ``replicator
serve`` makes the embedded default in a fresh ``--var``, answers ``/healthz``
and ``/readyz``, and stores and returns an object with the dev token from
``<var>/dev-token``. About 5 s; no dev stack.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("replicator", "keys", "regions")  # [tool.setuptools.packages.find] include
SHIPPED = (
    "replicator/data/policy.toml",
    "replicator/http/openapi.yaml",
    "replicator/py.typed",
    "keys/py.typed",
    "regions/py.typed",
)


def run(args: list, **kwargs) -> str:
    out = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120, **kwargs)
    assert out.returncode == 0, f"{' '.join(map(str, args))} exited {out.returncode}:\n{out.stdout}\n{out.stderr}"
    return out.stdout


def clean_env() -> dict[str, str]:
    """This environment without what could point Python at the checkout or override the config."""
    return {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "VIRTUAL_ENV")
        and not k.startswith("REPLICATOR_")
    }


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A fresh venv with the wheel installed (``--no-deps``); the dependencies by a ``.pth`` line."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    shutil.copy2(REPO / "pyproject.toml", src)
    for package in PACKAGES:
        shutil.copytree(REPO / package, src / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--disable-pip-version-check",
            "-q",
            "-w",
            tmp / "dist",
            src,
        ],
        env=clean_env(),
    )
    [wheel] = (tmp / "dist").glob("replicator-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert set(SHIPPED) <= names, f"missing from {wheel.name}: {sorted(set(SHIPPED) - names)}"

    venv = tmp / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    site = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).strip())
    deps = dict.fromkeys(sysconfig.get_path(k) for k in ("purelib", "platlib"))  # this environment's
    (site / "_replicator_test_deps.pth").write_text("".join(f"{d}\n" for d in deps))
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            python,
            "install",
            "--no-deps",
            "--no-index",
            "--disable-pip-version-check",
            "-q",
            wheel,
        ],
        env=clean_env(),
    )
    return venv


def test_the_installed_packages_are_the_wheels(venv, tmp_path):
    probe = """if True:
        import json, sys
        import keys, regions, replicator
        from replicator.config import DEFAULT_POLICY
        print(json.dumps({"modules": [keys.__file__, regions.__file__, replicator.__file__],
                          "policy": str(DEFAULT_POLICY), "path": sys.path}))"""
    seen = json.loads(run([venv / "bin" / "python", "-c", probe], cwd=tmp_path, env=clean_env()))
    site = venv.resolve() / "lib"
    for module in seen["modules"]:
        assert Path(module).resolve().is_relative_to(site), f"{module} is not the installed wheel's"
        assert not Path(module).resolve().is_relative_to(REPO)
    assert str(REPO) not in seen["path"]
    policy = Path(seen["policy"])
    assert policy.resolve().is_relative_to(site) and policy.name == "policy.toml"
    assert policy.read_bytes() == (REPO / "deploy" / "policy.toml").read_bytes()
    package_dirs = {p: Path(m).parent for p, m in zip(("keys", "regions", "replicator"), seen["modules"])}
    for shipped in SHIPPED:
        package, _, rest = shipped.partition("/")
        assert (package_dirs[package] / rest).is_file(), f"{shipped} is not installed"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1, whatever *_proxy says


def request(url: str, method: str = "GET", body: bytes | None = None, **headers: str) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with _direct.open(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_the_installed_wheel_serves_the_embedded_default(venv, tmp_path):
    cwd, var = tmp_path / "cwd", tmp_path / "var"
    cwd.mkdir()
    log = tmp_path / "serve.log"
    for _ in range(3):  # another process may take the port between the probe and the bind
        port = free_port()
        with open(log, "ab") as out:
            process = subprocess.Popen(
                [venv / "bin" / "replicator", "serve", "--var", var, "--host", "127.0.0.1", "--port", str(port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=cwd,
                env=clean_env(),
            )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        healthy = False
        while not healthy and process.poll() is None and time.monotonic() < deadline:
            try:
                healthy = request(f"{url}/healthz")[0] == 200
            except OSError:
                time.sleep(0.1)
        if healthy:
            break
        process.kill()
        process.wait()
    else:
        pytest.fail(f"the installed `replicator serve` did not start:\n{log.read_text(errors='replace')}")
    try:
        status, body = request(f"{url}/readyz")
        assert status == 200, body
        assert json.loads(body)["status"] == "ok"
        config = (var / "replicator.toml").read_text()
        assert "\npolicy" not in config  # the packaged default, wherever the wheel went

        token = (var / "dev-token").read_text().strip()
        auth = {"Authorization": f"Bearer {token}"}
        status, body = request(
            f"{url}/v1/objects/alice/account/greeting.txt",
            "PUT",
            b"hello world",
            **auth,
            **{"Content-Type": "text/plain"},
        )
        assert status == 201, body
        stored = json.loads(body)
        assert stored["replication"] == "complete" and stored["regions"] == {"ca": "stored", "jp": "stored"}
        status, body = request(f"{url}/v1/objects/alice/account/greeting.txt", **auth, **{"X-Purpose": "service"})
        assert (status, body) == (200, b"hello world")
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.returncode == 0, log.read_text(errors="replace")
