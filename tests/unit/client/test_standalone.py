"""The client stands alone: it imports nothing of the service, and the `client` extra is all it needs."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())

# What only the service needs: none of it may be imported by `import replicator.client`.
SERVER_ONLY = [
    "azure", "openstack", "keystoneauth1", "cryptography", "pydantic", "pydantic_settings",
    "prometheus_client", "click", "rich", "asyncpg", "keys", "regions",
]  # fmt: skip


def test_importing_the_client_loads_nothing_of_the_service():
    probe = f"""if True:
        import importlib.abc, sys
        blocked = {SERVER_ONLY!r}
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name.split(".")[0] in blocked:
                    raise ImportError(f"replicator.client imported {{name}}")
        sys.meta_path.insert(0, Block())
        import replicator.client
        from replicator.client import Client, AsyncClient
        rooms = sorted(m for m in sys.modules if m.startswith("replicator.") and not m.startswith("replicator.client"))
        assert not rooms, rooms
        """
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr


def test_the_client_extra_holds_no_server_dependency():
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert PYPROJECT["project"]["dependencies"] == []
    names = {d.split("[")[0].split("=")[0].split(">")[0].split("<")[0].strip() for d in extras["client"]}
    assert names == {"httpx", "sniffio", "tenacity", "aiohttp"}  # aiohttp: AsyncClient's HTTP (aio.py says why)
    assert "replicator[server,client]" in extras["test"]


def test_the_import_contract_forbids_every_room_of_the_service():
    contract = next(
        c for c in PYPROJECT["tool"]["importlinter"]["contracts"] if c.get("source_modules") == ["replicator.client"]
    )
    rooms = {
        f"replicator.{p.stem}"
        for p in (REPO / "replicator").iterdir()
        if ((p.is_dir() and (p / "__init__.py").exists()) or p.suffix == ".py") and p.stem not in ("__init__", "client")
    }
    assert rooms <= set(contract["forbidden_modules"]), (
        f"not forbidden to the client: {rooms - set(contract['forbidden_modules'])}"
    )
    assert {"keys", "regions"} <= set(contract["forbidden_modules"])
