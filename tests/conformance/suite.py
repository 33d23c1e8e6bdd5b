"""The conformance suite every Region driver must pass (gocloud's drivertest, fsspec's mixins).

A driver opts in with a harness and a short test class::

    class TestLocal(RegionConformance):
        @pytest.fixture
        def harness(self, tmp_path):
            return LocalHarness(tmp_path)

Each test gets a fresh, empty region (its own directory, container or random
prefix) and the harness removes it afterwards.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time

import pytest

from regions import Corrupt, NotFound, ObjectInfo, PreconditionFailed, Region, Unavailable

from .range_suite import RangeConformance

MiB = 1 << 20


class Harness:
    """What a driver provides to be tested. Every method must be overridden."""

    #: A size larger than the driver's block / segment size as configured by the harness.
    large_size: int = 3 * MiB + 123
    #: The size of the driver's blocks / segments as configured by the harness (None: it has none),
    #: so range tests cross their boundaries.
    part_size: int | None = None
    #: The listing page size the harness configures, so listing tests cross pages.
    page_size: int = 500
    #: Whether the store checks ``if_match`` atomically with the write (Swift cannot: see
    #: regions/swift.py, "Conditional writes"); if not, racing conditional puts may all succeed.
    atomic_if_match: bool = True

    async def make_region(self) -> Region:
        raise NotImplementedError

    async def destroy_region(self, region: Region) -> None:
        raise NotImplementedError

    async def corrupt(self, region: Region, name: str) -> None:
        """Change the stored bytes of ``name`` behind the driver's back, keeping its metadata."""
        raise NotImplementedError

    async def make_down_region(self) -> Region:
        """A region whose store cannot be reached (a closed port), with a fast retry policy."""
        raise NotImplementedError


async def read_all(region: Region, name: str) -> tuple[object, bytes]:
    info, stream = await region.get(name)
    return info, b"".join([c async for c in stream])


async def aiter_chunks(data: bytes, size: int):
    for i in range(0, len(data), size):
        yield data[i : i + size]
        await asyncio.sleep(0)


async def put_many(region: Region, names, concurrency: int = 16) -> None:
    sem = asyncio.Semaphore(concurrency)

    async def one(n):
        async with sem:
            await region.put(n, n.encode(), {})

    await asyncio.gather(*(one(n) for n in names))


class RegionConformance(RangeConformance):
    @pytest.fixture
    def harness(self) -> Harness:
        raise NotImplementedError("a driver's test class provides the harness fixture")

    @pytest.fixture
    async def region(self, harness):
        self.harness = harness
        region = await harness.make_region()
        try:
            yield region
        finally:
            await harness.destroy_region(region)
            await region.close()

    # -- put / get ----------------------------------------------------------

    @pytest.mark.parametrize("size", [0, 1, 5 * MiB], ids=["0B", "1B", "5MiB"])
    async def test_round_trip_bytes(self, region, size):
        data = os.urandom(size)
        info = await region.put("obj", data, {"k": "v"})
        assert (info.name, info.size, info.digest) == ("obj", size, hashlib.sha256(data).hexdigest())
        got, body = await read_all(region, "obj")
        assert body == data
        assert got.size == size and got.digest == info.digest

    async def test_round_trip_large_streamed(self, region):
        size = self.harness.large_size
        data = os.urandom(size)
        info = await region.put("big/one", aiter_chunks(data, 777_777), {"k": "v"})
        assert info.size == size and info.digest == hashlib.sha256(data).hexdigest()
        got, body = await read_all(region, "big/one")
        assert len(body) == size and body == data
        assert (await region.head("big/one")).digest == info.digest

    async def test_round_trip_large_bytes(self, region):
        data = os.urandom(self.harness.large_size)
        await region.put("big/two", data, {})
        assert (await read_all(region, "big/two"))[1] == data

    async def test_meta_round_trip(self, region):
        meta = {
            "version": "0001732.0001.n1",
            "class": "visit",
            "note": "caf\u00e9 \u6771\u4eac \u2603 ;=,\"'",
            "empty": "",
        }
        await region.put("m", b"x", meta)
        assert dict((await region.head("m")).meta) == meta
        assert dict((await region.get("m"))[0].meta) == meta
        listed = [i async for i in region.list()]
        assert [dict(i.meta) for i in listed] == [meta]

    async def test_put_replaces_body_and_meta(self, region):
        await region.put("r", b"first", {"a": "1", "b": "2"})
        await region.put("r", b"second!", {"a": "3"})
        info, body = await read_all(region, "r")
        assert body == b"second!" and dict(info.meta) == {"a": "3"} and info.size == 7

    async def test_if_none_match_creates_only(self, region):
        await region.put("once", b"one", {}, if_none_match=True)
        with pytest.raises(PreconditionFailed) as e:
            await region.put("once", b"two", {}, if_none_match=True)
        assert "once" in str(e.value)
        assert (await read_all(region, "once"))[1] == b"one"

    async def test_failed_streaming_put_leaves_old_object(self, region):
        await region.put("keep", b"old", {"v": "1"})

        async def broken():
            yield b"new" * 1000
            raise ConnectionResetError("client went away")

        with pytest.raises(ConnectionResetError):
            await region.put("keep", broken(), {"v": "2"})
        info, body = await read_all(region, "keep")
        assert body == b"old" and info.meta["v"] == "1"
        with pytest.raises(ConnectionResetError):
            await region.put("never", broken(), {})
        with pytest.raises(NotFound):
            await region.head("never")

    async def test_concurrent_puts_leave_one_whole_body(self, region):
        size = self.harness.large_size // 2
        bodies = [bytes([i]) * size for i in range(4)]
        await asyncio.gather(*(region.put("race", b, {"i": str(i)}) for i, b in enumerate(bodies)))
        info, body = await read_all(region, "race")
        assert body in bodies
        assert info.meta["i"] == str(bodies.index(body))
        assert info.digest == hashlib.sha256(body).hexdigest()

    # -- etags and conditional writes ------------------------------------------

    async def test_etag_is_the_same_from_put_head_get_and_list(self, region):
        put = await region.put("e", b"body", {"k": "v"})
        assert put.etag
        assert (await region.head("e")).etag == put.etag
        assert (await region.get("e"))[0].etag == put.etag
        assert [i.etag async for i in region.list()] == [put.etag]
        large = await region.put("e2", aiter_chunks(os.urandom(self.harness.large_size), 500_000), {})
        assert (await region.head("e2")).etag == large.etag
        assert {i.name: i.etag async for i in region.list()}["e2"] == large.etag

    async def test_every_put_makes_a_new_etag(self, region):
        etags = {(await region.put("same", b"same bytes", {"k": "v"})).etag for _ in range(3)}
        assert len(etags) == 3

    async def test_if_match_replaces_only_that_write(self, region):
        first = await region.put("m", b"one", {"v": "1"})
        second = await region.put("m", b"two", {"v": "2"}, if_match=first.etag)
        assert (await region.head("m")).etag == second.etag != first.etag
        with pytest.raises(PreconditionFailed) as e:  # the write it was decided from is gone
            await region.put("m", b"three", {"v": "3"}, if_match=first.etag)
        assert "m" in str(e.value) and region.name in str(e.value)
        info, body = await read_all(region, "m")
        assert (body, dict(info.meta), info.etag) == (b"two", {"v": "2"}, second.etag)

    async def test_if_match_on_a_missing_object_creates_nothing(self, region):
        gone = await region.put("g", b"x", {})
        await region.delete("g")
        with pytest.raises(PreconditionFailed):
            await region.put("g", b"y", {}, if_match=gone.etag)
        with pytest.raises(NotFound):
            await region.head("g")

    async def test_if_match_streamed_large_put_checks_at_the_end(self, region):
        # The condition holds when the upload starts and is false when it would commit.
        first = await region.put("big", b"small", {"v": "1"})
        racer = None

        async def body():
            nonlocal racer
            data = os.urandom(self.harness.large_size)
            for i in range(0, len(data), 400_000):
                yield data[i : i + 400_000]
                if racer is None:
                    racer = await region.put("big", b"raced", {"v": "racer"})

        with pytest.raises(PreconditionFailed):
            await region.put("big", body(), {"v": "2"}, if_match=first.etag)
        info, got = await read_all(region, "big")
        assert (got, info.etag) == (b"raced", racer.etag)
        done = await region.put(
            "big", aiter_chunks(os.urandom(self.harness.large_size), 500_000), {}, if_match=racer.etag
        )
        assert (await region.head("big")).etag == done.etag

    async def test_delete_if_match(self, region):
        first = await region.put("d", b"one", {})
        second = await region.put("d", b"two", {})
        with pytest.raises(PreconditionFailed) as e:
            await region.delete("d", if_match=first.etag)
        assert "d" in str(e.value)
        assert (await read_all(region, "d"))[1] == b"two"
        await region.delete("d", if_match=second.etag)
        with pytest.raises(NotFound):
            await region.head("d")
        await region.delete("d", if_match=second.etag)  # missing: still succeeds (idempotent)

    async def test_racing_conditional_puts(self, region):
        base = await region.put("race", b"base", {})
        bodies = [bytes([65 + i]) * 1000 for i in range(4)]
        results = await asyncio.gather(
            *(region.put("race", b, {"i": str(i)}, if_match=base.etag) for i, b in enumerate(bodies)),
            return_exceptions=True,
        )
        won = [r for r in results if not isinstance(r, BaseException)]
        assert all(isinstance(r, PreconditionFailed) for r in results if isinstance(r, BaseException))
        info, body = await read_all(region, "race")
        if self.harness.atomic_if_match:
            assert len(won) == 1 and (info.etag, body) == (won[0].etag, bodies[int(won[0].meta["i"])])
        else:
            assert won and info.etag in {w.etag for w in won} and body in bodies

    async def test_bad_conditions_are_value_errors(self, region):
        for kw in ({"if_match": "x", "if_none_match": True}, {"if_match": ""}):
            with pytest.raises(ValueError):
                await region.put("c", b"", {}, **kw)
        with pytest.raises(ValueError):
            await region.delete("c", if_match="")
        with pytest.raises(NotFound):
            await region.head("c")

    # -- copies -------------------------------------------------------------

    @pytest.mark.parametrize("large", [False, True], ids=["small", "large"])
    async def test_copy_holds_the_same_bytes_under_new_metadata_inside_the_store(self, region, large, monkeypatch):
        data = os.urandom(self.harness.large_size if large else 1000)
        info = await region.put("src", aiter_chunks(data, 777_777) if large else data, {"k": "v"})
        await region.put("dst", b"an older object the copy replaces", {"old": "1"})
        driver = getattr(region, "inner", region)  # a wrapper's store

        async def no_read(*args, **kw):
            raise AssertionError("the copy read the object through this process")

        monkeypatch.setattr(driver, "_get", no_read)  # the store copies inside itself
        copied = await region.copy("src", "dst", info, {"k": "kept", "n": "2"})
        monkeypatch.undo()
        assert (copied.name, copied.size, copied.digest, copied.meta) == (
            "dst",
            len(data),
            info.digest,
            {"k": "kept", "n": "2"},
        )
        got, body = await read_all(region, "dst")  # the digest is checked as it reads
        assert body == data and (got.meta, got.etag) == (copied.meta, copied.etag) and got.etag != info.etag
        got, body = await read_all(region, "src")
        assert body == data and (got.meta, got.etag) == ({"k": "v"}, info.etag)
        listed = {i.name: i async for i in region.list("")}
        assert (listed["dst"].size, listed["dst"].digest, listed["dst"].meta) == (len(data), info.digest, copied.meta)

    async def test_copy_of_a_missing_source_is_not_found(self, region):
        info = await region.put("gone", b"x", {})
        await region.delete("gone")
        with pytest.raises(NotFound):
            await region.copy("gone", "dst", info, {})
        with pytest.raises(NotFound):
            await region.head("dst")

    async def test_copy_of_a_source_that_holds_another_write_is_refused(self, region):
        first = await region.put("src", b"first", {})
        await region.put("src", b"second", {})
        with pytest.raises(PreconditionFailed):
            await region.copy("src", "dst", first, {})
        with pytest.raises(NotFound):
            await region.head("dst")

    async def test_copy_checks_its_names_and_metadata_before_any_io(self, harness):
        region = await harness.make_down_region()
        try:
            info = ObjectInfo("src", 0, "", {}, None, "e")
            for bad in (("", "dst", {}), ("src", "", {}), ("src", "dst", {"": "x"})):
                with pytest.raises(ValueError):
                    await region.copy(bad[0], bad[1], info, bad[2])
        finally:
            await region.close()

    # -- missing objects and deletes ------------------------------------------

    async def test_get_and_head_missing_name_the_key(self, region):
        for call in (region.get, region.head):
            with pytest.raises(NotFound) as e:
                await call("no/such thing")
            assert "no/such thing" in str(e.value)
            assert region.name in str(e.value)

    async def test_delete_missing_succeeds(self, region):
        await region.delete("never-was")

    async def test_delete_then_get_is_not_found(self, region):
        await region.put("d", os.urandom(self.harness.large_size), {})
        await region.delete("d")
        with pytest.raises(NotFound):
            await region.get("d")
        with pytest.raises(NotFound):
            await region.head("d")
        assert [i.name async for i in region.list()] == []
        await region.delete("d")

    # -- listing -------------------------------------------------------------

    async def test_list_byte_order_across_pages_with_prefix(self, region):
        n = self.harness.page_size * 2 + 200
        names = [f"p/{i:05d}" for i in range(n)] + ["q/1", "o/1", "p", "p0"]
        await put_many(region, names)
        listed = [i async for i in region.list()]
        assert [i.name for i in listed] == sorted(names, key=lambda s: s.encode())
        assert all(i.size == len(i.name) for i in listed)
        in_p = [i.name async for i in region.list("p/")]
        assert in_p == [f"p/{i:05d}" for i in range(n)]
        assert [i.name async for i in region.list("p/001")] == [f"p/{i:05d}" for i in range(100, 200)]
        assert [i.name async for i in region.list("zzz")] == []

    async def test_list_orders_by_utf8_bytes(self, region):
        names = ["a", "B", "\u00e9", "\uffe0", "\U0001f600", "a b", "a/b", "a-b", "~"]
        await put_many(region, names)
        assert [i.name async for i in region.list()] == sorted(names, key=lambda s: s.encode())

    async def test_awkward_names(self, region):
        names = [
            "with space",
            "per%25cent",
            "100%",
            "plus+sign",
            "hash#tag",
            "what?x=1&y",
            "\u6771\u4eac/\u30c7\u30fc\u30bf",
            "a/b/c/",
            "dots..name",
            "emoji\U0001f512",
            "semi;colon",
            "quote'\"",
            "x" * 200 + "/" + "y" * 200,
        ]
        for n in names:
            await region.put(n, n.encode(), {"n": n})
        for n in names:
            info, body = await read_all(region, n)
            assert (info.name, body, info.meta["n"]) == (n, n.encode(), n)
        assert [i.name async for i in region.list()] == sorted(names, key=lambda s: s.encode())
        for n in names:
            await region.delete(n)
        assert [i.name async for i in region.list()] == []

    async def test_longest_name(self, region):
        name = "n/" + "\u00e9" * 511  # 1024 bytes of UTF-8
        assert len(name.encode()) == 1024
        await region.put(name, b"long", {})
        assert (await read_all(region, name))[1] == b"long"
        assert [i.name async for i in region.list("n/")] == [name]

    async def test_longest_name_with_the_largest_metadata(self, region):
        name = "n/" + "\u00e9" * 511
        meta = {f"k{i:02d}": "\u6771" * 40 for i in range(16)}  # 16 keys, 1968 bytes in all
        await region.put(name, b"body", meta)
        info, body = await read_all(region, name)
        assert body == b"body" and dict(info.meta) == meta
        assert [dict(i.meta) async for i in region.list("n/")] == [meta]

    async def test_bad_name_and_meta_are_value_errors(self, region):
        for bad in ["", "x" * 1025, "nul\x00byte", "ctl\x01", "del\x7f", "back\\slash", ".", "a/./b", "../up", "a/.."]:
            with pytest.raises(ValueError):
                await region.put(bad, b"", {})
        for meta in [{"Upper": "x"}, {"has-dash": "x"}, {"x_reserved": "x"}, {"k": "v" * 3000}]:
            with pytest.raises(ValueError):
                await region.put("ok", b"", meta)

    # -- integrity and failures ------------------------------------------------

    async def test_digest_matches_stored_bytes(self, region):
        data = os.urandom(4096)
        info = await region.put("dg", data, {})
        assert info.digest == hashlib.sha256(data).hexdigest()
        assert (await region.head("dg")).digest == info.digest
        assert [i.digest async for i in region.list()] == [info.digest]

    @pytest.mark.parametrize("size", [1000, None], ids=["small", "large"])
    async def test_corrupted_body_is_reported_corrupt(self, region, size):
        data = os.urandom(size or self.harness.large_size)
        await region.put("c", data, {})
        await self.harness.corrupt(region, "c")
        with pytest.raises(Corrupt) as e:
            await read_all(region, "c")
        assert "c" in str(e.value)

    async def test_store_down_is_unavailable_quickly(self, harness):
        region = await harness.make_down_region()
        try:
            started = time.monotonic()
            for call in (lambda: region.head("x"), lambda: region.put("x", b"data", {}), lambda: region.delete("x")):
                with pytest.raises(Unavailable):
                    await call()
            with pytest.raises(Unavailable):
                [i async for i in region.list()]
            assert time.monotonic() - started < 30
        finally:
            await region.close()
