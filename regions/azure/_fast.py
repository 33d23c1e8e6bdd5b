"""The speed tricks of the Azure driver, each beside the plain call it must equal.

* Listing. Fast: List Blobs sent through the SDK's own pipeline (auth,
  transport, our retry settings) with ``stream=True``, and the XML parsed by
  :mod:`regions.azure.listing`. Plain: the SDK's ``list_blobs(...).by_page()``,
  which builds a model object per blob first; listing speed is what a nightly
  reconcile is made of, and that deserialization costs more than the rest of
  a page's handling (the figures are in the commit that made this module).
* A blob's URL. Fast: the container's URL and the quoted name (:func:`blob_url`).
  Plain: ``get_blob_client(name).url``, which builds a client (its pipeline
  and generated operations) for nothing else; that cost a tenth of a small
  read's CPU.
* A blob's properties. Fast: one Get Blob Properties through the pipeline,
  the object taken from the response's headers (:func:`head_headers`).
  Plain: ``get_blob_properties``, on a blob client made for it, into a model.
* Reading a blob. Fast: its first block by one Get Blob through the same
  pipeline, the object taken from the response's headers
  (:func:`first_block`), the rest (of a blob over one block) by
  ``download_blob`` pinned to that ETag. Plain: ``download_blob`` alone,
  whose downloader and models cost a quarter of a small read's CPU; it
  sends the same first request.

The fast path reaches the SDK's private ``ContainerClient._client._client``
(an azure-core ``AsyncPipelineClient``); :func:`pipeline` names it once, and
``tests/unit/regions/test_azure_fast.py`` fails loudly when the pinned SDK
changes it, and checks that both paths list the same entries.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from azure.core.exceptions import HttpResponseError
from azure.core.rest import AsyncHttpResponse, HttpRequest
from azure.storage.blob.aio import ContainerClient

from ..base import ObjectInfo
from .listing import info_of_properties


def pipeline(container: ContainerClient) -> Any:
    """The SDK's private pipeline client of ``container``: its ``send_request`` is what we use."""
    return container._client._client


async def xml_page(container: ContainerClient, prefix: str, marker: str, page_size: int) -> bytes:
    """One List Blobs page of the blobs named ``prefix...`` from ``marker``, as the XML the store sent."""
    url = (
        f"{container.url}?restype=container&comp=list&include=metadata"
        f"&maxresults={page_size}&prefix={quote(prefix, safe='')}"
        + (f"&marker={quote(marker, safe='')}" if marker else "")
    )
    request = HttpRequest("GET", url, headers={"x-ms-version": container.api_version})
    # stream=True: otherwise azure-core's ContentDecodePolicy parses the whole page into a
    # tree of its own first, which nobody reads.
    response: AsyncHttpResponse = await pipeline(container).send_request(request, stream=True)
    try:
        body = await response.read()
    finally:
        await response.close()
    if response.status_code != 200:
        raise failure(response)
    return body


async def plain_page(
    container: ContainerClient, prefix: str, marker: str, page_size: int, skip: int
) -> tuple[list[ObjectInfo], str]:
    """The same page through the SDK's public listing: its entries (names less their first
    ``skip`` characters) and the next page's marker (``""``: none)."""
    pages: Any = container.list_blobs(
        name_starts_with=prefix, include=["metadata"], results_per_page=page_size
    ).by_page(continuation_token=marker or None)
    page = await anext(pages)
    entries = [info_of_properties(blob.name[skip:], blob) async for blob in page]
    return entries, pages.continuation_token or ""


def blob_url(container: ContainerClient, name: str) -> str:
    """``container.get_blob_client(name).url``, without making the client (a SAS query stays last)."""
    base, query, rest = container.url.partition("?")
    return f"{base}/{quote(name, safe='~/')}{query}{rest}"


async def head_headers(container: ContainerClient, url: str) -> Mapping[str, str]:
    """The headers of one Get Blob Properties of the blob at ``url`` (what ``get_blob_properties``
    sends, without a client and a model made for it)."""
    response = await _send(container, HttpRequest("HEAD", url, headers={"x-ms-version": container.api_version}))
    if response.status_code != 200:
        raise failure(response)
    return response.headers


async def first_block(container: ContainerClient, url: str, limit: int) -> tuple[Mapping[str, str], bytes, int]:
    """The first ``limit`` bytes of the blob at ``url`` (all of a blob that fits), the response's
    headers and the blob's whole size, from one Get Blob: the request ``download_blob`` would make
    first, without its downloader and models (the caller reads the rest, pinned to the ETag)."""
    headers = {"x-ms-version": container.api_version, "x-ms-range": f"bytes=0-{limit - 1}"}
    response = await _send(container, HttpRequest("GET", url, headers=headers))
    if response.status_code == 416:  # an empty blob has no first byte: ask for all of it
        response = await _send(container, HttpRequest("GET", url, headers={"x-ms-version": container.api_version}))
    if response.status_code not in (200, 206):
        raise failure(response)
    body = response.content
    if response.status_code == 206:  # "bytes 0-<last>/<size>"
        return response.headers, body, int(response.headers["Content-Range"].rpartition("/")[2])
    return response.headers, body, len(body)


async def _send(container: ContainerClient, request: HttpRequest) -> AsyncHttpResponse:
    response: AsyncHttpResponse = await pipeline(container).send_request(request, stream=True)
    try:
        await response.read()
    finally:
        await response.close()
    return response


def failure(response: AsyncHttpResponse) -> HttpResponseError:
    """The error of an answer that is not a success, with the store's error code (the driver's
    mapping tells a missing container from a missing blob by it)."""
    error = HttpResponseError(response=response)
    error.error_code = response.headers.get("x-ms-error-code")  # type: ignore[attr-defined]
    return error
