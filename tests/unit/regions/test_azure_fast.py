"""regions.azure._fast: the listing trick lists what the SDK's public listing lists, a small read
gives what the SDK's download gives, and the private SDK attribute they need is still where the
pinned azure-storage-blob keeps it."""

import dataclasses
import inspect
import os

from azure.storage.blob import __version__ as sdk_version
from azure.storage.blob.aio import BlobServiceClient

from regions.azure import AzureRegion
from regions.azure._fast import blob_url, first_block, head_headers, pipeline, plain_page, xml_page
from regions.azure.listing import _entry, _parse, info_of_headers, info_of_properties
from tests.support.stack import stack_env, stack_fixture

CONNECTION_VAR = "REPLICATOR_TEST_AZURE_CONNECTION_STRING"


async def test_the_private_pipeline_is_where_the_pinned_sdk_keeps_it():
    region = AzureRegion(
        "c", connection_string="AccountName=a;AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:9/a;", name="ca"
    )
    try:
        client = pipeline(region._container)
        send = getattr(client, "send_request", None)
        assert callable(send), (
            f"azure-storage-blob {sdk_version}: ContainerClient._client._client.send_request is gone; "
            "regions/azure/_fast.py must change (or use plain_page)"
        )
        assert "stream" in inspect.signature(send).parameters, (
            f"azure-storage-blob {sdk_version}: send_request no longer takes stream="
        )
    finally:
        await region.close()


NAMES = [
    "a",
    "a b",
    "100%",
    "caf\u00e9",
    "\u6771\u4eac/x",
    "emoji\U0001f512",
    "q?x=1&y",
    "z/",
    "~t",
    "#h",
    "a//b",
    "+=",
]


async def test_a_blobs_url_is_the_one_its_client_would_have():
    for url in (
        "AccountName=a;AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:9/a;",  # Azurite: the account in the path
        "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5;EndpointSuffix=core.windows.net",
        "BlobEndpoint=https://acct.blob.core.windows.net/;SharedAccessSignature=sv=2024-11-04&sig=abc%2Bdef",
    ):
        region = AzureRegion("con-tainer", connection_string=url, name="ca")
        try:
            for name in NAMES:
                assert blob_url(region._container, name) == region._container.get_blob_client(name).url, (url, name)
        finally:
            await region.close()


@stack_fixture
def conn():
    return stack_env(CONNECTION_VAR)


async def test_fast_and_plain_listings_agree(conn):
    container = "fast-" + os.urandom(6).hex()
    async with BlobServiceClient.from_connection_string(conn) as svc:
        await svc.create_container(container)
        region = AzureRegion(container, connection_string=conn, name="ca", prefix="t/", page_size=7)
        try:
            names = ["a", "a b", "100%", "caf\u00e9", "\u6771\u4eac/x", "emoji\U0001f512", "q?x=1&y", "z/"] + [
                f"n/{i:03d}" for i in range(12)
            ]
            for i, n in enumerate(names):
                await region.put(n, n.encode() * i, {"n": n, "pct": "100%", "empty": ""})
            await svc.get_blob_client(container, "t/foreign").upload_blob(b"abc")  # no digest
            await svc.get_blob_client(container, "other/x").upload_blob(b"abc")  # outside the prefix
            fast, plain, marker, pages = [], [], "", 0
            while True:
                root = _parse(await xml_page(region._container, "t/", marker, 7))
                fast += [_entry(b, 2) for b in root.find("Blobs")]
                entries, plain_marker = await plain_page(region._container, "t/", marker, 7, 2)
                plain += entries
                marker = root.findtext("NextMarker") or ""
                assert marker == plain_marker
                pages += 1
                if not marker:
                    break
            assert pages == 3 and len(fast) == len(names) + 1
            assert fast == plain
        finally:
            await region.close()
            await svc.delete_container(container)


async def test_the_first_block_and_the_sdks_download_agree(conn):
    """A read's first Get Blob gives what the SDK's download gives: the ObjectInfo, the bytes of a
    blob that fits one block (an empty one too), the first block and the size of a larger one."""
    container = "first-" + os.urandom(6).hex()
    async with BlobServiceClient.from_connection_string(conn) as svc:
        await svc.create_container(container)
        block = 64 << 10
        region = AzureRegion(container, connection_string=conn, name="ca", prefix="t/", block_size=block)
        try:
            for n, body in (
                ("empty", b""),
                ("caf\u00e9/x", b"abc" * 1000),
                ("edge", b"e" * block),
                ("big", b"b" * (block + 1)),
            ):
                await region.put(n, body, {"n": n, "pct": "100%", "empty": ""})
                url = region._container.get_blob_client("t/" + n).url
                headers, first, size = await first_block(region._container, url, block)
                download = await region._container.get_blob_client("t/" + n).download_blob()
                assert (first, size) == (body[:block], len(body)) and await download.readall() == body
                got = dataclasses.replace(info_of_headers(n, headers), size=size)
                assert got == info_of_properties(n, download.properties)
                props = await region._container.get_blob_client("t/" + n).get_blob_properties()
                assert info_of_headers(n, await head_headers(region._container, url)) == info_of_properties(n, props)
                assert await region.head(n) == got
                _, stream = await region.get(n)  # the first block, then the rest pinned to its ETag
                assert b"".join([c async for c in stream]) == body
        finally:
            await region.close()
            await svc.delete_container(container)
