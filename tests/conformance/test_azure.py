"""The Azure Blob driver through the conformance suite, against Azurite (or a real account).

Each test gets a fresh container with a random name, and its objects live
under a key prefix so the prefix handling is exercised too; the harness
deletes the container afterwards.
"""

import os
import socket

import pytest
from azure.storage.blob.aio import BlobServiceClient

from regions import ByteRange, Corrupt, RangeNotSatisfiable, RetryPolicy, Unavailable
from regions.azure import AzureRegion
from tests.support.errorproxy import ErrorProxy
from tests.support.loopback import refusing_proxy
from tests.support.stack import stack_env, stack_fixture

from .suite import Harness, MiB, RegionConformance, read_all

CONNECTION_VAR = "REPLICATOR_TEST_AZURE_CONNECTION_STRING"
PREFIX = "t/"


class AzureHarness(Harness):
    large_size = 3 * MiB + 123  # three blocks and a bit at the 1 MiB block size below
    part_size = 1 * MiB
    page_size = 500

    def __init__(self, connection_string: str):
        self.connection_string = connection_string

    def raw(self) -> BlobServiceClient:
        return BlobServiceClient.from_connection_string(self.connection_string)

    async def make_region(self, prefix: str = PREFIX, container: str | None = None) -> AzureRegion:
        if container is None:
            container = "conf-" + os.urandom(8).hex()
            async with self.raw() as svc:
                await svc.create_container(container)
        return AzureRegion(
            container,
            connection_string=self.connection_string,
            prefix=prefix,
            name="ca",
            retry=RetryPolicy(attempts=3, initial_wait=0.05, timeout=30),
            block_size=1 * MiB,
            page_size=self.page_size,
        )

    async def destroy_region(self, region: AzureRegion) -> None:
        async with self.raw() as svc:
            await svc.delete_container(region.container)

    async def corrupt(self, region: AzureRegion, name: str) -> None:
        async with self.raw() as svc:
            blob = svc.get_blob_client(region.container, region.prefix + name)
            props = await blob.get_blob_properties()
            data = bytearray(await (await blob.download_blob()).readall())
            data[len(data) // 2] ^= 0x01
            await blob.upload_blob(bytes(data), overwrite=True, metadata=props.metadata)

    async def make_down_region(self) -> AzureRegion:
        with socket.socket() as s:  # a loopback port nobody listens on
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        down = (
            f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
            f"BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
        )
        return AzureRegion("down", connection_string=down, name="ca", retry=RetryPolicy.fast())


class TestAzure(RegionConformance):
    @stack_fixture
    def harness(self):
        return AzureHarness(stack_env(CONNECTION_VAR))

    # -- Azure-specific, beyond the suite -------------------------------------

    async def test_prefixes_in_one_container_do_not_mix(self, harness, region):
        other = await harness.make_region(prefix="u/", container=region.container)
        try:
            await region.put("x", b"mine", {})
            await other.put("x", b"theirs", {})
            assert [i.name async for i in region.list()] == ["x"]
            assert (await read_all(region, "x"))[1] == b"mine"
            await other.delete("x")
            assert (await read_all(region, "x"))[1] == b"mine"
        finally:
            await other.close()

    async def test_names_azure_cannot_hold_are_value_errors(self, region):
        for bad in ["back\\slash", "a/./b", "a/../b", "..", "dot/.", "ctl\x01x", "non\uffff"]:
            for op in (lambda n: region.put(n, b"", {}), region.get, region.head, region.delete):
                with pytest.raises(ValueError):
                    await op(bad)

    async def test_missing_digest_is_corrupt(self, harness, region):
        async with harness.raw() as svc:
            await svc.get_blob_client(region.container, PREFIX + "foreign").upload_blob(b"abc")
        info = await region.head("foreign")
        assert info.digest == "" and info.size == 3
        with pytest.raises(Corrupt):
            await read_all(region, "foreign")

    async def test_metadata_is_stored_as_ascii(self, harness, region):
        meta = {"empty": "", "blank": " a ", "pct": "100%", "uni": "\u6771\u4eac", "lone": "%"}
        await region.put("m", b"x", meta)
        async with harness.raw() as svc:
            raw = (await svc.get_blob_client(region.container, PREFIX + "m").get_blob_properties()).metadata
        assert all(v.isascii() and v and v == v.strip() for v in raw.values())
        assert dict((await region.head("m")).meta) == meta

    async def test_read_spanning_a_replacement_fails_unavailable(self, region):
        await region.put("v", b"1" * (3 * MiB), {})
        info, stream = await region.get("v")
        first = await anext(stream)  # one block; the rest is fetched pinned to the first ETag
        assert first == b"1" * MiB
        await region.put("v", b"2" * (3 * MiB), {})
        with pytest.raises(Unavailable):
            async for _ in stream:
                pass

    async def test_repr_holds_no_secret(self, harness, region):
        key = dict(p.split("=", 1) for p in harness.connection_string.split(";") if p)["AccountKey"]
        assert key not in repr(region)

    async def test_ranged_get_downloads_only_the_range(self, region, monkeypatch):
        from azure.storage.blob.aio import BlobClient

        sizes, original = [], BlobClient.download_blob

        async def spy(self, *args, **kwargs):
            download = await original(self, *args, **kwargs)
            sizes.append((kwargs.get("offset"), download.size))  # bytes the SDK will fetch
            return download

        monkeypatch.setattr(BlobClient, "download_blob", spy)
        data = os.urandom(3 * MiB + 5)
        await region.put("r", data, {})
        for start, end in [(MiB - 3, MiB + 2), (0, 0), (3 * MiB, 4 * MiB)]:
            info, stream = await region.get("r", byte_range=ByteRange(start, end))
            assert b"".join([c async for c in stream]) == data[start : end + 1] and info.size == len(data)
        assert sizes == [(MiB - 3, 6), (0, 1), (3 * MiB, 5)]
        with pytest.raises(RangeNotSatisfiable):  # Azure's 416
            await region.get("r", byte_range=ByteRange(len(data), len(data)))

    async def test_a_copy_azure_will_not_make_itself_goes_through_the_process(self, harness, region, caplog):
        # Behind a reverse proxy the source URL names the proxy, which Azurite does not know as its own
        # (a 403, as Azure gives one a policy forbids): the driver copies through itself from then on.
        parts = dict(p.split("=", 1) for p in harness.connection_string.split(";") if p)
        origin, account = parts["BlobEndpoint"].rstrip("/").rsplit("/", 1)
        proxy = await ErrorProxy(origin).start()
        via = harness.connection_string.replace(parts["BlobEndpoint"], f"http://127.0.0.1:{proxy.port}/{account}")
        behind = AzureRegion(region.container, connection_string=via, prefix=PREFIX, name="ca", block_size=1 * MiB)
        try:
            data = os.urandom(2 * MiB + 5)
            info = await behind.put("src", data, {})
            for target in ("a", "b"):
                copied = await behind.copy("src", target, info, {"n": target})
                assert copied.digest == info.digest and (await read_all(region, target))[1] == data
            refused = [r for r in caplog.records if r.getMessage().startswith("Copy Blob refused")]
            assert len(refused) == 1  # the second copy did not ask again
        finally:
            await behind.close()
            await proxy.close()

    async def test_the_environments_proxy_is_taken_once_and_no_proxy_is_honoured(self, harness, region, monkeypatch):
        # A "proxy" that records what it is asked and refuses it: a request that went through
        # it fails, one that bypassed it reaches Azurite.
        def made_now() -> AzureRegion:  # in the fixture's container, the environment as it is now
            return AzureRegion(
                region.container,
                connection_string=harness.connection_string,
                prefix=PREFIX,
                name="ca",
                retry=RetryPolicy.fast(),
            )

        async with refusing_proxy(monkeypatch) as seen:
            proxied = made_now()
            with pytest.raises(Unavailable):
                await proxied.put("p", b"x", {})
            assert seen and all("/devstoreaccount1/" in url for url in seen)
            monkeypatch.setenv("NO_PROXY", "127.0.0.1")
            seen.clear()
            direct = made_now()
            await direct.put("p", b"x", {})
            monkeypatch.delenv("NO_PROXY")  # read at start only: a later change changes nothing
            await direct.put("q", b"y", {})
            assert seen == []
            for made in (proxied, direct):
                await made.close()
