"""The service over the real dev-stack stores, and raw access to those stores behind its back.

``Stores`` reads what Azurite and Swift actually hold, with the SDKs and
credentials only (the azure-storage-blob SDK with the connection string;
openstacksdk/keystoneauth with the ``clouds.yaml``), none of the region
drivers' logic. ``Cloud`` is one in-process service (aiohttp ``TestClient``)
whose regions are ``ca`` (Azure, on Azurite) and ``jp`` (Swift behind
Keystone), each on a fresh container.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import socket
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, unquote

from aiohttp.test_utils import TestClient, TestServer
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob.aio import BlobServiceClient

from keys import KeyFile, generate_token
from regions.swift import decode_content_type
from replicator.config import load_config
from replicator.embedded import all_scopes, config_text
from replicator.http import handlers as api_mod
from replicator.http.app import build_app
from replicator.layout import ObjectPath, customer_prefix

from .eventually import eventually
from .stack import stack_command

CA_CONN_VAR = "REPLICATOR_TEST_CA_CONN"
MiB = 1 << 20
LIMITED_SCOPES = ["write:account", "meta:account", "read:account:contact"]


# -- what the stores hold ------------------------------------------------------------------


@dataclass
class Raw:
    """One stored thing as the store shows it: name, body and every piece of metadata."""

    store: str  # "azure" | "swift"
    container: str
    name: str
    body: bytes = b""
    fields: dict[str, str] = field(default_factory=dict)  # metadata, headers, content type...

    def haystack(self) -> bytes:
        """Everything a store operator could read about this object, in one byte string."""
        parts = [self.container.encode(), self.name.encode(), self.body]
        for k, v in self.fields.items():
            parts += [k.encode(), v.encode("utf-8", "surrogateescape")]
        return b"\n".join(parts)


class RawSwift:
    """Swift through keystoneauth with the clouds.yaml credentials: plain HTTP, no driver logic."""

    def __init__(self, clouds_yaml: str, cloud: str):
        from openstack import connection
        from openstack.config import loader

        config = loader.OpenStackConfig(config_files=[clouds_yaml], load_envvars=False)
        self.conn = connection.Connection(config=config.get_one(cloud=cloud, api_timeout=10))
        self.endpoint = self.conn.object_store.get_endpoint().rstrip("/")

    def request(
        self,
        method: str,
        container: str,
        obj: str | None = None,
        query: str = "",
        data: bytes | None = None,
        headers: dict | None = None,
    ):
        url = f"{self.endpoint}/{quote(container, safe='')}"
        if obj is not None:
            url += "/" + quote(obj, safe="/")
        if query:
            url += "?" + query
        resp = self.conn.session.request(url, method, raise_exc=False, data=data, headers=headers or {})
        return resp.status_code, dict(resp.headers), resp.content

    async def call(self, *args, **kw):
        return await asyncio.to_thread(self.request, *args, **kw)

    async def names(self, container: str, prefix: str = "") -> list[dict]:
        status, _, body = await self.call(
            "GET", container, query=f"format=json&limit=10000&prefix={quote(prefix, safe='')}"
        )
        if status == 404:
            return []
        assert status in (200, 204), (status, body[:200])
        return json.loads(body) if status == 200 and body else []

    async def destroy(self, container: str) -> None:
        while items := await self.names(container):
            await asyncio.gather(*(self.call("DELETE", container, i["name"]) for i in items))
        await self.call("DELETE", container)


class Stores:
    """The two real stores behind one service: an Azurite container and a Swift container (+ segments)."""

    def __init__(self, azure_conn: str, clouds_yaml: str, cloud: str, suffix: str):
        self.azure_conn = azure_conn
        self.azure_container = f"it-ca-{suffix}"
        self.clouds_yaml = clouds_yaml
        self.cloud = cloud
        self.swift_container = f"it-jp-{suffix}"
        self.segments = f"{self.swift_container}_segments"  # the driver's default
        self.swift: RawSwift | None = None

    async def create(self) -> None:
        async with BlobServiceClient.from_connection_string(self.azure_conn) as svc:
            await svc.create_container(self.azure_container)
        self.swift = await asyncio.to_thread(RawSwift, self.clouds_yaml, self.cloud)

    async def destroy(self) -> None:
        async with BlobServiceClient.from_connection_string(self.azure_conn) as svc:
            with contextlib.suppress(ResourceNotFoundError):
                await svc.delete_container(self.azure_container)
        if self.swift is not None:
            for c in (self.swift_container, self.segments):
                await self.swift.destroy(c)

    # -- Azure ------------------------------------------------------------------------

    def azure(self) -> BlobServiceClient:
        return BlobServiceClient.from_connection_string(self.azure_conn)

    async def azure_names(self, prefix: str = "", *, uncommitted: bool = False) -> list[str]:
        include = ["metadata", "uncommittedblobs"] if uncommitted else ["metadata"]
        async with self.azure() as svc:
            c = svc.get_container_client(self.azure_container)
            return [b.name async for b in c.list_blobs(name_starts_with=prefix or None, include=include)]

    async def azure_head(self, name: str) -> dict[str, str]:
        """The blob's metadata as stored (values percent-decoded)."""
        async with self.azure() as svc:
            props = await svc.get_blob_client(self.azure_container, name).get_blob_properties()
        return {k: ("" if v == "%" else unquote(v)) for k, v in props.metadata.items()}

    async def azure_body(self, name: str) -> bytes:
        async with self.azure() as svc:
            return await (await svc.get_blob_client(self.azure_container, name).download_blob()).readall()

    async def azure_objects(self) -> list[Raw]:
        """Every blob, committed or not, with body, metadata, content settings and block lists."""
        out = []
        async with self.azure() as svc:
            c = svc.get_container_client(self.azure_container)
            cprops = await c.get_container_properties()
            out.append(
                Raw(
                    "azure",
                    self.azure_container,
                    "",
                    fields={f"container-meta:{k}": v for k, v in (cprops.metadata or {}).items()},
                )
            )
            async for b in c.list_blobs(include=["metadata", "uncommittedblobs", "tags"]):
                blob = c.get_blob_client(b.name)
                raw = Raw("azure", self.azure_container, b.name)
                for k, v in (b.metadata or {}).items():
                    raw.fields[f"meta:{k}"] = v
                    raw.fields[f"meta-decoded:{k}"] = "" if v == "%" else unquote(v)
                for k, v in (b.tags or {}).items():
                    raw.fields[f"tag:{k}"] = v
                committed, uncommitted = await blob.get_block_list("all")
                raw.fields["blocks"] = " ".join(
                    base64.b64decode(bl.id).decode("latin-1") for bl in committed + uncommitted
                )
                raw.fields["committed-blocks"] = str(len(committed))
                try:
                    props = await blob.get_blob_properties()
                except ResourceNotFoundError:  # uncommitted blocks only: nothing readable
                    out.append(raw)
                    continue
                cs = props.content_settings
                for k in (
                    "content_type",
                    "content_encoding",
                    "content_language",
                    "content_disposition",
                    "cache_control",
                ):
                    raw.fields[f"content:{k}"] = str(getattr(cs, k) or "")
                raw.body = await (await blob.download_blob()).readall()
                out.append(raw)
        return out

    # -- Swift ------------------------------------------------------------------------

    async def swift_names(self, container: str | None = None, prefix: str = "") -> list[str]:
        return [i["name"] for i in await self.swift.names(container or self.swift_container, prefix)]

    async def swift_head(self, name: str) -> tuple[dict[str, str], dict[str, str]]:
        """(headers, metadata decoded from the Content-Type) of one object."""
        status, headers, _ = await self.swift.call("HEAD", self.swift_container, name)
        assert status == 200, (status, name)
        return headers, decode_content_type(headers.get("Content-Type"))[1]

    async def swift_body(self, name: str) -> bytes:
        status, _, body = await self.swift.call("GET", self.swift_container, name)
        assert status == 200, (status, name)
        return body

    async def check_level(self, acked) -> None:
        """Straight from both stores: every acknowledged write (path -> (plaintext, or None for a
        delete; version)) at its acknowledged version, the same ciphertext in both."""
        for path, (data, version) in acked.items():
            azure_meta = await self.azure_head(path)
            _, swift_meta = await self.swift_head(path)
            assert azure_meta["version"] == swift_meta["version"] == version, path
            if data is None:
                assert azure_meta.get("tomb") == swift_meta.get("tomb") == "1", path
            else:
                assert await self.azure_body(path) == await self.swift_body(path), path

    async def swift_manifest(self, name: str) -> list[dict] | None:
        status, headers, body = await self.swift.call("GET", self.swift_container, name, query="multipart-manifest=get")
        assert status == 200, (status, name)
        return json.loads(body) if headers.get("X-Static-Large-Object", "").lower() == "true" else None

    async def swift_objects(self) -> list[Raw]:
        """Every object of the container and of its segments container: listing entry, headers, body,
        and for a static large object its raw manifest too."""
        out = []
        for container in (self.swift_container, self.segments):
            status, headers, _ = await self.swift.call("HEAD", container)
            if status == 404:
                continue
            out.append(Raw("swift", container, "", fields={f"container:{k}": v for k, v in headers.items()}))
            for item in await self.swift.names(container):
                raw = Raw("swift", container, item["name"])
                raw.fields.update({f"listing:{k}": str(v) for k, v in item.items()})
                status, headers, body = await self.swift.call("GET", container, item["name"])
                assert status == 200, (status, container, item["name"])
                raw.body = body
                raw.fields.update({f"header:{k}": v for k, v in headers.items()})
                _, meta, _ = decode_content_type(headers.get("Content-Type"))
                raw.fields.update({f"meta-decoded:{k}": v for k, v in meta.items()})
                if headers.get("X-Static-Large-Object", "").lower() == "true":
                    _, _, manifest = await self.swift.call(
                        "GET", container, item["name"], query="multipart-manifest=get"
                    )
                    raw.fields["manifest"] = manifest.decode()
                out.append(raw)
        return out


def encodings(secret: str | bytes) -> set[bytes]:
    """``secret`` as it could show up in a store: verbatim, hex, percent-encoded, and base64 / base64url /
    base32 at every byte alignment (the 4- or 8-character groups that depend on the secret alone)."""
    raw = secret.encode() if isinstance(secret, str) else secret
    out = {
        raw,
        raw.hex().encode(),
        raw.hex().upper().encode(),
        quote(raw, safe="").encode(),
        quote(raw, safe="/").encode(),
    }
    for enc, block, width in ((base64.b64encode, 3, 4), (base64.urlsafe_b64encode, 3, 4), (base64.b32encode, 5, 8)):
        for shift in range(block):
            text = enc(b"\0" * shift + raw)
            start = -(-shift // block) * width
            end = ((shift + len(raw)) // block) * width
            if end - start >= width:
                out.add(text[start:end])
                if enc is base64.b32encode:
                    out.add(text[start:end].lower())
    return {o for o in out if len(o) >= 6}


def leaks(objects: list[Raw], secrets: dict[str, str | bytes]) -> list[str]:
    """``"<what> in <store>:<container>/<name>"`` for every encoding of every secret found anywhere."""
    found = []
    for what, secret in secrets.items():
        forms = encodings(secret)
        for obj in objects:
            hay = obj.haystack()
            for form in forms:
                if form in hay:
                    found.append(f"{what} ({form[:40]!r}) in {obj.store}:{obj.container}/{obj.name}")
                    break
    return found


# -- the service -------------------------------------------------------------------------------


@dataclass
class Cloud:
    client: TestClient
    app: object
    stores: Stores
    auth: dict[str, str]  # every scope
    limited: dict[str, str]  # LIMITED_SCOPES
    audit_log: Path

    @property
    def service(self):
        return self.app[api_mod.SERVICE]

    def path(self, customer: str, data_class: str, name: str) -> str:
        """The region object name of an object (computed by the service's own tagger)."""
        tagger = self.service.tagger
        return str(ObjectPath.of(tagger, customer, data_class, name))

    def prefix(self, customer: str) -> str:
        return customer_prefix(self.service.tagger.customer_tag(customer))

    async def put(self, path: str, body, auth=None, **headers):
        return await self.client.put(f"/v1/objects/{path}", data=body, headers={**(auth or self.auth), **headers})

    async def get(self, path: str, purpose: str = "service", auth=None):
        return await self.client.get(f"/v1/objects/{path}", headers={**(auth or self.auth), "X-Purpose": purpose})

    async def head(self, path: str, auth=None):
        return await self.client.head(f"/v1/objects/{path}", headers=auth or self.auth)

    async def delete(self, path: str, auth=None):
        return await self.client.delete(f"/v1/objects/{path}", headers=auth or self.auth)


def regions_toml(stores: Stores) -> str:
    """The config's two regions: ca on the Azurite container, jp on the Swift container (1 MiB blocks/segments)."""
    return f'''[regions.ca]
kind = "azure"
location = "canadacentral"
country = "CA"
container = "{stores.azure_container}"
connection_string_env = "{CA_CONN_VAR}"
block_bytes = {MiB}

[regions.jp]
kind = "swift"
provider = "conoha"
location = "tyo1"
country = "JP"
cloud = "{stores.cloud}"
clouds_yaml = "{stores.clouds_yaml}"
container = "{stores.swift_container}"
segment_bytes = {MiB}
'''


def write_config(
    directory: Path, stores: Stores, *, all_hash: str, limited_hash: str, policy: str | None = None
) -> Path:
    """The service's config on ``stores``; ``policy`` is a policy file's text (default: the packaged one)."""
    KeyFile.generate(directory / "kek.key")
    header = ""
    if policy is not None:
        (directory / "policy.toml").write_text(policy)
        header = 'policy = "policy.toml"\n'
    path = directory / "replicator.toml"
    path.write_text(
        config_text(
            "it",
            regions_toml(stores),
            {"all": (all_hash, all_scopes()), "limited": (limited_hash, LIMITED_SCOPES)},
            # a dead region fails fast: two attempts of two seconds
            sections="[limits]\nrequest_timeout = 2.0\nretry_attempts = 2\n\n",
            header=header,
        )
    )
    return path


async def start_cloud(
    directory: Path, stores: Stores, now_ms, *, policy: str | None = None
) -> tuple[Cloud, TestClient]:
    directory.mkdir(parents=True, exist_ok=True)
    token, token_hash = generate_token()
    limited_token, limited_hash = generate_token()
    config = load_config(write_config(directory, stores, all_hash=token_hash, limited_hash=limited_hash, policy=policy))
    app = build_app(config, now_ms=now_ms, workers_idle_wait=0.05)
    client = TestClient(TestServer(app))
    await client.start_server()
    return Cloud(
        client=client,
        app=app,
        stores=stores,
        auth={"Authorization": f"Bearer {token}"},
        limited={"Authorization": f"Bearer {limited_token}"},
        audit_log=Path(config.audit_log),
    ), client


# -- dev-stack servers -----------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    name: str
    pid: int
    port: int


def server(stack_dir: str, name: str, cmdline_holds: str) -> Server:
    """The recorded pid of a dev-stack server, checked to be that server before anyone signals it."""
    info = json.loads((Path(stack_dir) / "run" / f"{name}.pid").read_text())
    pid = int(info["pid"])
    try:
        cmdline = (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except FileNotFoundError:
        raise AssertionError(f"{name} (pid {pid}) is not running: start it with `deploy/dev/stack up`") from None
    assert cmdline_holds in cmdline, f"pid {pid} is not {name}: {cmdline!r}"
    return Server(name, pid, int(info["port"]))


def refuses(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


async def stop(srv: Server, timeout: float = 20.0) -> None:
    """SIGTERM the server and wait until its port refuses connections."""
    os.kill(srv.pid, signal.SIGTERM)
    await eventually(
        lambda: refuses(srv.port), timeout=timeout, interval=0.05, what=f"{srv.name} refusing connections after SIGTERM"
    )


async def stack_up() -> None:
    """``deploy/dev/stack up`` on the tests' stack: restarts the servers that are not running (off the event loop)."""
    await asyncio.to_thread(stack_command, "up")
