"""The Swift driver through the conformance suite, against the dev stack's Keystone + Swift.

Plus what only Swift has: static large objects and their segments, token
renewal, and the Content-Type that carries digest and metadata.
"""

import asyncio
import hashlib
import json
import os
import socket
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest

from regions import (
    ByteRange,
    Corrupt,
    PermissionDenied,
    PreconditionFailed,
    RangeNotSatisfiable,
    RegionError,
    RetryPolicy,
)
from regions.base import MAX_META_BYTES, MAX_META_KEYS
from regions.swift import SwiftRegion, key_of_segment, segment_content_type
from tests.support.loopback import refusing_proxy
from tests.support.stack import stack_env, stack_fixture

from .suite import Harness, MiB, RegionConformance, aiter_chunks, read_all

SEGMENT = 1 * MiB


# -- raw Swift access behind the driver's back (the driver's token, none of its logic) --------


async def raw(
    region: SwiftRegion,
    method: str,
    container: str,
    key: str | None = None,
    *,
    query: str = "",
    headers=None,
    data: bytes | None = None,
):
    """(status, headers, body) of one request; 404 is returned, not raised."""
    try:
        resp = await region._send(method, container, key, query=query, headers=headers, data=data)
    except aiohttp.ClientResponseError as e:
        if e.status == 404:
            return 404, {}, b""
        raise
    body = await resp.read()
    resp.release()
    return resp.status, resp.headers, body


async def names_in(region: SwiftRegion, container: str) -> list[str]:
    status, _, body = await raw(region, "GET", container, query="format=json&limit=10000")
    return [i["name"] for i in json.loads(body)] if status == 200 else []


async def live_segments(region: SwiftRegion, name: str) -> list[str]:
    """The segment names (in the segments container) the current manifest of ``name`` lists."""
    _, _, body = await raw(region, "GET", region.container, region.prefix + name, query="multipart-manifest=get")
    return sorted(s["name"].split("/", 2)[2] for s in json.loads(body))


class SwiftHarness(Harness):
    large_size = 3 * SEGMENT + 123
    part_size = SEGMENT
    page_size = 100  # the listing test then writes 404 objects, not 1204
    atomic_if_match = False  # HEAD, then PUT or DELETE: Swift has no If-Match on writes

    def __init__(self, clouds_yaml: str, cloud: str, tmp_path: Path):
        self.clouds_yaml = clouds_yaml
        self.cloud = cloud
        self.tmp_path = tmp_path

    def region(self, **kw) -> SwiftRegion:
        kw.setdefault("container", f"conformance-{os.urandom(6).hex()}")
        kw.setdefault("clouds_yaml", self.clouds_yaml)
        kw.setdefault("segment_size", SEGMENT)
        kw.setdefault("page_size", self.page_size)
        return SwiftRegion(kw.pop("cloud", self.cloud), kw.pop("container"), name="jp", **kw)

    async def make_region(self):
        return self.region()

    async def destroy_region(self, region):
        for container in (region.container, region.segment_container):
            while names := await names_in(region, container):
                await asyncio.gather(*(raw(region, "DELETE", container, n) for n in names))
            await raw(region, "DELETE", container)

    async def corrupt(self, region, name):
        key = region.prefix + name
        _, headers, _ = await raw(region, "HEAD", region.container, key)
        container = region.container
        if headers.get("X-Static-Large-Object") == "True":
            # Overwrite the first segment in place: Swift itself then refuses the GET (409).
            _, _, body = await raw(region, "GET", container, key, query="multipart-manifest=get")
            container, key = json.loads(body)[0]["name"].lstrip("/").split("/", 1)
            _, headers, _ = await raw(region, "HEAD", container, key)
        _, _, data = await raw(region, "GET", container, key)
        data = bytearray(data)
        data[len(data) // 2] ^= 0x01
        await raw(region, "PUT", container, key, data=bytes(data), headers={"Content-Type": headers["Content-Type"]})

    async def make_down_region(self):
        with socket.socket() as s:  # a port nobody listens on
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        path = self.tmp_path / "down-clouds.yaml"
        path.write_text(
            "clouds:\n  down:\n    auth:\n"
            f"      auth_url: http://127.0.0.1:{port}/v3\n"
            "      username: nobody\n      password: not-a-secret\n      project_name: none\n"
            "      user_domain_name: Default\n      project_domain_name: Default\n"
            "    region_name: RegionOne\n    interface: public\n    identity_api_version: 3\n"
        )
        return self.region(cloud="down", clouds_yaml=path, retry=RetryPolicy.fast())


class TestSwift(RegionConformance):
    @stack_fixture
    def harness(self, tmp_path):
        return SwiftHarness(
            stack_env("REPLICATOR_TEST_CLOUDS_YAML"), stack_env("REPLICATOR_TEST_SWIFT_CLOUD"), tmp_path
        )

    # -- static large objects ---------------------------------------------------------

    async def test_large_object_is_an_slo_with_segments(self, region):
        data = os.urandom(self.harness.large_size)
        await region.put("big", aiter_chunks(data, 100_000), {})
        _, headers, _ = await raw(region, "HEAD", region.container, "big")
        assert headers["X-Static-Large-Object"] == "True"
        assert len(await names_in(region, region.segment_container)) == 4
        assert [i.name async for i in region.list()] == ["big"]  # segments are never listed

    async def test_body_of_exactly_one_segment_is_one_object(self, region):
        await region.put("one", aiter_chunks(b"s" * SEGMENT, 1000), {})
        assert await names_in(region, region.segment_container) == []
        assert (await read_all(region, "one"))[1] == b"s" * SEGMENT

    async def test_delete_large_object_deletes_its_segments(self, region):
        await region.put("big", os.urandom(self.harness.large_size), {})
        assert await names_in(region, region.segment_container)
        await region.delete("big")
        assert await names_in(region, region.segment_container) == []
        assert await names_in(region, region.container) == []

    async def test_conditional_overwrites_free_old_segments_at_once(self, region):
        first = await region.put("big", os.urandom(self.harness.large_size), {"v": "1"})
        second = os.urandom(2 * SEGMENT + 1)
        stored = await region.put("big", aiter_chunks(second, 65536), {"v": "2"}, if_match=first.etag)
        assert sorted(await names_in(region, region.segment_container)) == await live_segments(region, "big")
        info, got = await read_all(region, "big")
        assert got == second and info.meta == {"v": "2"}
        await region.put("big", b"small now", {"v": "3"}, if_match=stored.etag)
        assert await names_in(region, region.segment_container) == []
        assert (await read_all(region, "big"))[1] == b"small now"

    async def test_plain_overwrite_leaves_old_segments_to_the_sweep(self, region):
        await region.put("big", os.urandom(self.harness.large_size), {"v": "1"})
        second = os.urandom(2 * SEGMENT + 1)
        await region.put("big", aiter_chunks(second, 65536), {"v": "2"})  # no HEAD before it
        live = await live_segments(region, "big")
        assert len(live) == 3 and len(await names_in(region, region.segment_container)) == 4 + 3

        spared = await region.sweep_segments()  # by default only uploads older than a day
        assert (spared.uploads, spared.young) == (0, 2)
        swept = await region.sweep_segments(older_than=timedelta(0))
        assert (swept.uploads, swept.segments, swept.bytes, swept.kept) == (1, 4, self.harness.large_size, 1)
        assert sorted(await names_in(region, region.segment_container)) == live
        assert (await read_all(region, "big"))[1] == second

        await region.put("big", b"small now", {})
        assert (await region.sweep_segments(older_than=timedelta(0))).segments == 3
        assert await names_in(region, region.segment_container) == []
        assert (await read_all(region, "big"))[1] == b"small now"

    async def test_sweep_deletes_uploads_cut_off_and_leaves_what_it_cannot_attribute(self, region):
        await region.put("kept", os.urandom(self.harness.large_size), {})
        hour_ago = int(time.time()) - 3600

        async def segment(upload: str, content_type: str) -> None:
            status, _, _ = await raw(
                region,
                "PUT",
                region.segment_container,
                f"{upload}/00000000",
                data=b"x" * 100,
                headers={"Content-Type": content_type},
            )
            assert status == 201

        await segment(f"{hour_ago}-{'a' * 32}", segment_content_type("crashed"))  # no manifest ever came
        await segment(f"{hour_ago}-{'b' * 32}", segment_content_type("kept"))  # not in kept's manifest
        await segment(f"{hour_ago}-{'c' * 32}", segment_content_type("other/x"))  # outside key_prefix
        await segment(f"{hour_ago}-{'d' * 32}", "application/octet-stream")  # names no object
        live = await live_segments(region, "kept")

        swept = await region.sweep_segments(older_than=timedelta(0), key_prefix="k")
        assert (swept.uploads, swept.segments, swept.bytes, swept.kept) == (1, 1, 100, 1)
        assert swept.unattributed == 1
        swept = await region.sweep_segments(older_than=timedelta(0))
        assert (swept.uploads, swept.kept, swept.unattributed) == (2, 1, 1)
        assert sorted(await names_in(region, region.segment_container)) == sorted(
            live + [f"{hour_ago}-{'d' * 32}/00000000"]
        )
        assert len(live) == 4

    def test_segment_content_type_round_trips_any_key(self):
        for key in ("v1/a/b", "名前/ü", "x;k=y", "k" * 1024):
            assert key_of_segment(segment_content_type(key)) == key
        for other in (None, "", "application/octet-stream", "text/plain;k=eA", "application/octet-stream;k=!!"):
            assert key_of_segment(other) is None

    async def test_if_none_match_on_large_object_leaves_no_orphans(self, region):
        data = os.urandom(self.harness.large_size)
        await region.put("once", data, {}, if_none_match=True)
        before = await names_in(region, region.segment_container)
        with pytest.raises(PreconditionFailed):
            await region.put("once", os.urandom(self.harness.large_size), {}, if_none_match=True)
        assert await names_in(region, region.segment_container) == before
        assert (await read_all(region, "once"))[1] == data

    async def test_failed_large_put_removes_its_segments(self, region):
        async def broken():
            yield os.urandom(2 * SEGMENT + 5)
            raise ConnectionResetError("client went away")

        with pytest.raises(ConnectionResetError):
            await region.put("never", broken(), {})
        assert await names_in(region, region.segment_container) == []
        assert await names_in(region, region.container) == []

    @pytest.mark.parametrize("damage", ["changed", "deleted"])
    async def test_damaged_later_segment_is_corrupt(self, region, damage):
        # Swift cuts the body short there; the driver tells that from a network failure.
        await region.put("big", os.urandom(self.harness.large_size), {})
        _, _, body = await raw(region, "GET", region.container, "big", query="multipart-manifest=get")
        container, key = json.loads(body)[2]["name"].lstrip("/").split("/", 1)
        if damage == "deleted":
            await raw(region, "DELETE", container, key)
        else:
            _, _, data = await raw(region, "GET", container, key)
            await raw(
                region,
                "PUT",
                container,
                key,
                data=bytes([data[0] ^ 1]) + data[1:],
                headers={"Content-Type": "application/octet-stream"},
            )
        _, stream = await region.get("big")
        received = 0
        with pytest.raises(Corrupt) as e:
            async for chunk in stream:
                received += len(chunk)
        assert received == 2 * SEGMENT and "big" in str(e.value)

    async def test_object_swapped_under_manifest_is_corrupt(self, region):
        # Swift checks each segment against the manifest; our digest catches a manifest
        # that consistently points at other bytes.
        await region.put("big", os.urandom(self.harness.large_size), {})
        _, _, body = await raw(region, "GET", region.container, "big", query="multipart-manifest=get&format=raw")
        manifest = json.loads(body)
        manifest[1], manifest[0] = manifest[0], manifest[1]
        _, headers, _ = await raw(region, "HEAD", region.container, "big")
        await raw(
            region,
            "PUT",
            region.container,
            "big",
            query="multipart-manifest=put",
            headers={"Content-Type": headers["Content-Type"]},
            data=json.dumps(manifest).encode(),
        )
        with pytest.raises(Corrupt):
            await read_all(region, "big")

    # -- metadata in the Content-Type ------------------------------------------------------

    async def test_metadata_at_the_limit_round_trips_through_list(self, region):
        # 16 keys, 2048 bytes of keys and values: non-ASCII, controls, NUL, separators.
        values = ["\u6771\u4eac\u00e9\U0001f512", "\x00\x01\n\r\t;=,\"'\\", "a;b=c; swift_bytes=1"]
        meta = {f"k{i:02d}": values[i % 3] for i in range(MAX_META_KEYS - 1)}
        used = sum(len(k) + len(v.encode()) for k, v in meta.items())
        meta["last"] = "\u00e9" * ((MAX_META_BYTES - used - 4) // 2)
        assert sum(len(k) + len(v.encode()) for k, v in meta.items()) == MAX_META_BYTES
        await region.put("small", b"x", meta)
        await region.put("large", os.urandom(self.harness.large_size), meta)
        listed = {i.name: i async for i in region.list()}
        assert dict(listed["small"].meta) == meta and dict(listed["large"].meta) == meta
        assert dict((await region.head("large")).meta) == meta
        assert listed["large"].size == self.harness.large_size

    async def test_object_written_by_another_tool_is_corrupt_on_read(self, region):
        await region.put("mine", b"mine", {})  # makes the container
        await raw(
            region,
            "PUT",
            region.container,
            "theirs",
            data=b"hello",
            headers={"Content-Type": "text/plain; charset=utf-8"},
        )
        info = await region.head("theirs")
        assert (info.size, info.digest, dict(info.meta)) == (5, "", {})
        assert {i.name: i.digest async for i in region.list()}["theirs"] == ""
        with pytest.raises(Corrupt):
            await read_all(region, "theirs")

    async def test_foreign_object_etag_is_its_timestamp_in_head_and_listing(self, region):
        await region.put("mine", b"mine", {})  # makes the container
        await raw(region, "PUT", region.container, "theirs", data=b"hello", headers={"Content-Type": "text/plain"})
        head = await region.head("theirs")
        assert head.etag.startswith("t") and {i.name: i.etag async for i in region.list()}["theirs"] == head.etag
        with pytest.raises(PreconditionFailed):
            await region.delete("theirs", if_match="t1.00000")
        mine = await region.put("theirs", b"replaced", {}, if_match=head.etag)
        assert (await region.head("theirs")).etag == mine.etag != head.etag

    # -- names ----------------------------------------------------------------------

    async def test_names_a_url_library_could_mangle(self, region):
        names = ["/lead", "a//b", "%2e%2e/x", "a/%2E", "tail/", "...", ".hidden/..x", "q?a=1#f"]
        for n in names:
            await region.put(n, n.encode(), {})
        for n in names:
            assert (await read_all(region, n))[1] == n.encode()
        assert [i.name async for i in region.list()] == sorted(names, key=str.encode)

    async def test_prefix_is_applied_and_hidden(self, harness):
        region = harness.region(prefix="tenant/")
        try:
            await region.put("a b", b"1", {})
            assert [i.name async for i in region.list()] == ["a b"]
            assert await names_in(region, region.container) == ["tenant/a b"]
        finally:
            await harness.destroy_region(region)
            await region.close()

    # -- authentication ---------------------------------------------------------------

    async def test_expired_token_renews_once(self, region, monkeypatch):
        await region.put("t", b"token", {})
        calls = []
        original = region._authenticate

        def counting(renew):
            calls.append(renew)
            return original(renew)

        monkeypatch.setattr(region, "_authenticate", counting)
        region._token = "gAAAAA-revoked-or-expired"  # what Swift sees after expiry
        results = await asyncio.gather(*(region.head("t") for _ in range(5)))
        assert all(r.size == 5 for r in results)
        assert calls == [True]  # one renewal for five concurrent 401s
        assert (await read_all(region, "t"))[1] == b"token"
        assert calls == [True]

    async def test_second_401_is_permission_denied(self, region, monkeypatch):
        await region.put("t", b"token", {})
        original = region._authenticate
        monkeypatch.setattr(region, "_authenticate", lambda renew: ("bogus-token",) + original(renew)[1:])
        region._token = "bogus-token"
        with pytest.raises(PermissionDenied) as e:
            await region.head("t")
        assert "bogus-token" not in str(e.value) and "t" in str(e.value)

    async def test_wrong_password_is_permission_denied_and_never_shown(self, harness, tmp_path):
        cloud = Path(harness.clouds_yaml).read_text()
        path = tmp_path / "wrong.yaml"
        path.write_text(cloud.replace("password:", "password: WRONG-pw-123 #"))
        region = harness.region(clouds_yaml=path)
        try:
            with pytest.raises(PermissionDenied) as e:
                await region.head("x")
            assert "WRONG-pw-123" not in str(e.value) and "WRONG-pw-123" not in repr(region)
            assert "WRONG-pw-123" not in repr(e.value.__cause__)
        finally:
            await region.close()

    async def test_unknown_cloud_is_a_configuration_error(self, harness):
        region = harness.region(cloud="no-such-cloud", retry=RetryPolicy.fast())
        try:
            with pytest.raises(RegionError) as e:
                await region.head("x")
            assert "no-such-cloud" in str(e.value)
        finally:
            await region.close()

    async def test_token_stays_out_of_errors(self, region):
        await region.put("here", b"1", {})
        token = region._token
        try:
            await region.put("here", b"2", {}, if_none_match=True)
        except PreconditionFailed as e:
            cause = e.__cause__
            assert token not in str(e) and token not in repr(cause)
            assert token not in repr(cause.request_info)
        else:
            pytest.fail("expected PreconditionFailed")

    async def test_the_environments_proxy_is_taken_once_and_no_proxy_is_honoured(self, harness, monkeypatch, tmp_path):
        # A "proxy" that records what it is asked and refuses it: an object-store request that went
        # through it fails, one that bypassed it reaches Swift. Keystone (reached through requests)
        # is named "localhost" and kept direct by NO_PROXY; the catalog names Swift by its address.
        keystone = urlsplit(stack_env("REPLICATOR_TEST_KEYSTONE_URL"))
        swift = urlsplit(stack_env("REPLICATOR_TEST_SWIFT_URL"))
        assert keystone.hostname == swift.hostname == "127.0.0.1"
        clouds = tmp_path / "clouds.yaml"
        text = Path(harness.clouds_yaml).read_text()
        clouds.write_text(text.replace(keystone.netloc, f"localhost:{keystone.port}"))
        assert clouds.read_text() != text

        def made_now(**kw) -> SwiftRegion:  # the environment as it is now
            return harness.region(clouds_yaml=clouds, **kw)

        async with refusing_proxy(monkeypatch) as seen:
            monkeypatch.setenv("NO_PROXY", "localhost")
            proxied = made_now(retry=RetryPolicy.fast())
            direct = None
            try:
                with pytest.raises(RegionError):
                    await proxied.put("p", b"x", {})
                assert seen and all(urlsplit(url).netloc == swift.netloc and "/v1/AUTH_" in url for url in seen)
                monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
                seen.clear()
                direct = made_now()
                await direct.put("p", b"x", {})
                monkeypatch.delenv("NO_PROXY")  # read when the driver is made: a later change changes nothing
                await direct.put("q", b"y", {})
                assert seen == [] and (await read_all(direct, "q"))[1] == b"y"
            finally:
                await proxied.close()
                if direct is not None:
                    await harness.destroy_region(direct)
                    await direct.close()

    @pytest.mark.parametrize("large", [False, True], ids=["object", "slo"])
    async def test_a_copy_is_pinned_to_the_sources_write_after_its_head(self, region, monkeypatch, large):
        # The source is overwritten between the copy's HEAD and its PUT: Swift refuses the copy
        # (If-Match on the source) and the target is not made.
        data = os.urandom(self.harness.large_size if large else 1000)
        info = await region.put("src", aiter_chunks(data, 100_000) if large else data, {})
        upload, overwritten = region._upload, []

        async def overwrite_first(*args, **kw):
            if not overwritten:  # once: the overwrite's own upload comes through here too
                overwritten.append(True)
                await region.put("src", b"another write", {})
            return await upload(*args, **kw)

        monkeypatch.setattr(region, "_upload", overwrite_first)
        with pytest.raises(PreconditionFailed):
            await region.copy("src", "dst", info, {})
        monkeypatch.undo()
        with pytest.raises(RegionError):
            await region.head("dst")

    async def test_digest_is_sha256_of_streamed_body(self, region):
        data = os.urandom(SEGMENT * 2)
        info = await region.put("s", aiter_chunks(data, 333_333), {})
        assert info.digest == hashlib.sha256(data).hexdigest() == (await region.head("s")).digest

    # -- ranged reads -------------------------------------------------------------------

    async def test_ranged_get_is_a_206_of_only_the_range_on_slos_too(self, region, monkeypatch):
        answers, send = [], region._send

        async def spy(method, container, key=None, **kw):
            resp = await send(method, container, key, **kw)
            if method == "GET" and not kw.get("query"):
                answers.append((resp.status, int(resp.headers["Content-Length"])))
            return resp

        monkeypatch.setattr(region, "_send", spy)
        data = os.urandom(self.harness.large_size)
        await region.put("slo", data, {})  # segments of 1 MiB
        await region.put("plain", data[:1000], {})
        for name, start, end in [("slo", SEGMENT - 2, SEGMENT + 1), ("slo", 0, 3 * SEGMENT), ("plain", 10, 10)]:
            answers.clear()
            info, stream = await region.get(name, byte_range=ByteRange(start, end))
            assert b"".join([c async for c in stream]) == data[start : end + 1]
            assert answers == [(206, end - start + 1)] and info.size == (len(data) if name == "slo" else 1000)

    async def test_whole_answer_to_a_range_is_cut_to_the_range(self, region, monkeypatch):
        # A proxy that drops the Range header: the driver still hands out only the range.
        send = region._send

        async def no_range(method, container, key=None, *, headers=None, **kw):
            return await send(
                method, container, key, headers={k: v for k, v in (headers or {}).items() if k != "Range"}, **kw
            )

        data = os.urandom(self.harness.large_size)
        await region.put("big", data, {})
        monkeypatch.setattr(region, "_send", no_range)
        for start, end in [(SEGMENT - 2, SEGMENT + 1), (len(data) - 1, len(data) + 9), (0, 0)]:
            _, stream = await region.get("big", byte_range=ByteRange(start, end))
            assert b"".join([c async for c in stream]) == data[start : end + 1]
        with pytest.raises(RangeNotSatisfiable):
            await region.get("big", byte_range=ByteRange(len(data), len(data)))
