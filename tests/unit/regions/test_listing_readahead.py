"""The cloud listings read exactly one page ahead: the store works while a page is consumed,
and memory stays at two pages however slow the consumer is. Stores faked at the page call."""

import asyncio

import pytest

from regions import RetryPolicy, Unavailable
from regions.azure import AzureRegion
from regions.swift import SwiftRegion, encode_content_type
from tests.support.eventually import eventually

DIGEST = "ab" * 32
PAGES = 5
PER_PAGE = 3


def blob_xml(name: str) -> str:
    return (
        f"<Blob><Name>{name}</Name><Properties><Last-Modified>Mon, 23 Nov 2026 22:51:25 GMT"
        f"</Last-Modified><Etag>0x1</Etag><Content-Length>1</Content-Length></Properties>"
        f"<Metadata><x_sha256>{DIGEST}</x_sha256></Metadata></Blob>"
    )


class Store:
    """Pages of names ``p/<page>-<i>``; records when each page was asked for."""

    def __init__(self):
        self.asked: list[int] = []
        self.fail_at: int | None = None

    def names(self, page: int) -> list[str]:
        return [f"p/{page}-{i}" for i in range(PER_PAGE)]

    async def page(self, page: int):
        self.asked.append(page)
        await asyncio.sleep(0)
        if page == self.fail_at:
            raise Unavailable("injected", region="x")
        return self.names(page)


def azure(store: Store) -> AzureRegion:
    region = AzureRegion(
        "c",
        connection_string="AccountName=a;AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:9/a;",
        name="ca",
        page_size=PER_PAGE,
    )

    async def page(prefix, marker):
        n = int(marker or 0)
        names = await store.page(n)
        nxt = f"<NextMarker>{n + 1}</NextMarker>" if n + 1 < PAGES else "<NextMarker/>"
        return (
            f"<EnumerationResults><Blobs>{''.join(map(blob_xml, names))}</Blobs>{nxt}</EnumerationResults>"
        ).encode()

    region._page = page
    return region


def swift(store: Store) -> SwiftRegion:
    region = SwiftRegion("cloud", "c", name="jp", page_size=PER_PAGE)

    async def page(prefix, marker):
        n = int(marker.split("/")[1].split("-")[0]) + 1 if marker else 0
        if n >= PAGES:
            return []
        return [
            {
                "name": name,
                "bytes": 1,
                "content_type": encode_content_type(DIGEST, {}, "w" + name[-1]),
                "last_modified": "2026-11-23T22:51:25.000000",
            }
            for name in await store.page(n)
        ]

    region._page = page
    return region


@pytest.mark.parametrize("make", [azure, swift], ids=["azure", "swift"])
async def test_one_page_ahead_never_more(make):
    store = Store()
    region = make(store)
    listing = region.list("p/")
    first = await anext(listing)
    assert first.name == "p/0-0" and first.digest == DIGEST and first.etag
    await asyncio.sleep(0.05)  # a stalled consumer: the next page is fetched, no more
    assert store.asked == [0, 1]
    rest = [i.name async for i in listing]
    assert [first.name, *rest] == [n for p in range(PAGES) for n in store.names(p)]
    await region.close()


@pytest.mark.parametrize("make", [azure, swift], ids=["azure", "swift"])
async def test_closing_a_listing_early_cancels_its_read_ahead(make):
    store = Store()
    region = make(store)
    listing = region.list("p/")
    await anext(listing)
    await listing.aclose()

    def cancelled():
        assert store.asked in ([0], [0, 1])  # the read-ahead may be cancelled before it asks
        assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []
        return True

    await eventually(cancelled, timeout=2, interval=0.01, what="the read-ahead cancelled")
    await region.close()


@pytest.mark.parametrize("make", [azure, swift], ids=["azure", "swift"])
async def test_a_failing_page_fails_after_the_pages_before_it(make):
    store = Store()
    store.fail_at = 2
    region = make(store)
    region.retry = region.policy = RetryPolicy(attempts=1)
    got = []
    with pytest.raises(Unavailable):
        async for info in region.list("p/"):
            got.append(info.name)
    assert got == store.names(0) + store.names(1)
    await region.close()
