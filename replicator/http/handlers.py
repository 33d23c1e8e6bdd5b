"""The HTTP API (the OpenAPI document is ``replicator/http/openapi.yaml``; the design: ``docs/architecture.md``).

Handlers only translate HTTP to :class:`~replicator.paths.service.Service` calls
and back. Every error is JSON ``{"error": code, "message": text}``; messages
never echo tokens, plaintext or keys. Bodies stream both ways.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import unquote_to_bytes

from aiohttp import HttpVersion11, web

from keys import Policy, Principal
from replicator import errors
from replicator.health.readiness import SOFT_CHECKS
from replicator.http import auth
from replicator.http.conditions import byte_span, entity_tags, etag, version_parameter
from replicator.observe.metrics import Metrics
from replicator.observe.unauthenticated import UnauthenticatedTally
from replicator.paths.erasure import Eraser
from replicator.paths.names import check_purpose
from replicator.paths.service import Service
from replicator.paths.write import WriteResult

log = logging.getLogger("replicator.http.handlers")

SERVICE = web.AppKey("service", Service)
POLICY = web.AppKey("policy", Policy)
METRICS = web.AppKey("metrics", Metrics)
ERASER = web.AppKey("eraser", Eraser)
UNAUTHENTICATED = web.AppKey("unauthenticated", UnauthenticatedTally)  # 401s per source, summarised to the audit
READINESS: web.AppKey[Callable[[], Awaitable[dict[str, str]]]] = web.AppKey("readiness")
REQUEST_ID = web.RequestKey("request_id", str)
BODY_TIMEOUT = web.AppKey("body_timeout", float)  # set by replicator.http.server; absent: no bound
CHUNK = 1 << 20
WHOLE_RESPONSE_MAX = 64 << 10  # a GET of at most this many bytes is answered in one write
RETRY_AFTER = 2  # seconds, on every 503 the service answers (replicator.client waits at least this)


class BodyTimeout(errors.ServiceError):
    """The client stopped sending the request body (a slow-loris upload)."""

    status, code = 408, "bad_request"


def _json_error(status: int, code: str, message: str, headers=None) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status, headers=headers)


@web.middleware
async def errors_middleware(request: web.Request, handler):
    """Every failure becomes a JSON error; unexpected ones are logged and answered 500."""
    request_id = request.headers.get("X-Request-Id", "")
    if not (0 < len(request_id) <= 64 and request_id.isascii() and request_id.isprintable()):
        request_id = secrets.token_hex(8)
    request[REQUEST_ID] = request_id
    started = time.perf_counter()
    try:
        _check_path(request)
        response = await handler(request)
    except errors.ServiceError as e:
        headers = {"WWW-Authenticate": "Bearer"} if e.status == 401 else None
        if e.status == 503:  # a region, the journal, the key store or the audit log is away: pace the retries
            headers = {"Retry-After": str(RETRY_AFTER)}
        response = _json_error(e.status, e.code, e.message, headers)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(e.status, "bad_request")
        allow = {"Allow": e.headers["Allow"]} if "Allow" in e.headers else None  # RFC 9110 wants it on 405
        response = _json_error(e.status, code, e.reason, allow)
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.exception("unhandled error", extra={"request_id": request_id, "route": _route(request)})
        response = _json_error(500, "internal", "internal error; see the service log")
    if not response.prepared:
        response.headers["X-Request-Id"] = request_id
    metrics = request.app[METRICS]
    metrics.requests.labels(request.method, _route(request), str(response.status)).inc()
    log.info(
        "request",
        extra={
            "request_id": request_id,
            "method": request.method,
            "route": _route(request),
            "status": response.status,
            "seconds": round(time.perf_counter() - started, 4),
        },
    )
    return response


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def _check_path(request: web.Request) -> None:
    """The percent-decoded path must be UTF-8.

    aiohttp leaves an undecodable escape as it is (``%FF`` and ``%C0%AE``, an
    overlong ``.``, reach the handler as the three characters ``%FF``), so
    without this check such a name would be stored under the same name as
    the valid ``%25FF``."""
    try:
        unquote_to_bytes(request.raw_path.partition("?")[0]).decode("utf-8")
    except UnicodeDecodeError:
        raise errors.BadRequest("the path is not valid UTF-8 once percent-decoded") from None


def _one_header(request: web.Request, name: str, error: type[errors.ServiceError]) -> str | None:
    """The header's value; a header sent twice is refused (which one counts would be ambiguous, and a
    proxy that picks the other one would decide differently)."""
    values = request.headers.getall(name, [])
    if len(values) > 1:
        raise error(f"the {name} header must be sent once")
    return values[0] if values else None


def _principal(request: web.Request) -> Principal:
    """The caller; a 401 is counted against the request's source address (never its token)."""
    try:
        header = _one_header(request, "Authorization", errors.Unauthorized) or ""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise errors.Unauthorized("an 'Authorization: Bearer <token>' header is required")
        return auth.authenticate(request, request.app[POLICY], token.strip())  # token store, client certificate
    except errors.Unauthorized:
        tally = request.app.get(UNAUTHENTICATED)
        if tally is not None:
            tally.count(request.remote)
        raise


def _object_args(request: web.Request) -> tuple[str, str, str]:
    m = request.match_info
    return m["customer"], m["data_class"], m["name"]


async def request_body(request: web.Request) -> AsyncIterator[bytes]:
    """The request body in chunks; a client that sends nothing for ``BODY_TIMEOUT`` seconds gets 408.

    Waits count only while the service asks for more (a slow region pauses the reading, not the
    clock), so the bound is on the client, not on the regions."""
    idle = request.app.get(BODY_TIMEOUT)
    content = request.content
    while True:
        chunk = content.read_nowait(CHUNK)  # what has arrived already needs no timer (a small body: all of it)
        if not chunk and not content.is_eof():
            try:
                async with asyncio.timeout(idle):
                    chunk = await content.read(CHUNK)
            except TimeoutError:
                raise BodyTimeout(f"no request body received for {idle:g} seconds") from None
        if not chunk:
            return
        yield chunk


async def expect_handler(request: web.Request) -> web.Response | None:
    """``Expect: 100-continue``, answered before any middleware runs (aiohttp's order).

    aiohttp's default invites the body of any request ("100 Continue"), even one
    with no token or a Content-Length over the limit, and answers any other
    Expect value with a text/plain 417. Here the body is invited only when a
    PUT would not be refused at once, and every refusal is a JSON error.
    """
    if request.headers.get("Expect", "").lower() != "100-continue":
        return _json_error(417, "bad_request", "only 'Expect: 100-continue' is supported")
    if request.version != HttpVersion11:
        return None
    if request.method == "PUT":
        try:
            _principal(request)
            limit = request.app[SERVICE].max_object_bytes
            if request.content_length is not None and request.content_length > limit:
                raise errors.TooLarge(f"body of {request.content_length} bytes is over the limit of {limit} bytes")
        except errors.ServiceError as e:
            response = _json_error(
                e.status, e.code, e.message, {"WWW-Authenticate": "Bearer"} if e.status == 401 else None
            )
            response.force_close()  # a client may send the body anyway: never read it as the next request
            return response
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    request.writer.output_size = 0  # as aiohttp's default: the response proper has not started
    return None


# -- objects --------------------------------------------------------------------------


async def put_object(request: web.Request) -> web.Response:
    principal = _principal(request)
    if_none_match = _one_header(request, "If-None-Match", errors.BadRequest)
    if if_none_match not in (None, "*"):
        raise errors.BadRequest("If-None-Match on a PUT supports only '*'")
    result = await request.app[SERVICE].put(
        principal,
        *_object_args(request),
        request_body(request),
        content_type=request.headers.get("Content-Type", "application/octet-stream"),
        content_length=request.content_length,
        if_none_match=if_none_match == "*",
        if_match=entity_tags(_one_header(request, "If-Match", errors.BadRequest), "If-Match", weak=False),
    )
    return _written(result)


def _written(result: WriteResult) -> web.Response:
    return web.json_response(
        {"version": result.version, "size": result.size, "replication": result.replication, "regions": result.regions},
        status=201,
        headers={"ETag": etag(result.version)},
    )


async def post_object(request: web.Request) -> web.Response:
    principal = _principal(request)
    version = version_parameter(request.query, "restore")
    if version is None:
        raise errors.BadRequest("POST on an object needs ?restore=<version>")
    return _written(await request.app[SERVICE].restore(principal, *_object_args(request), version))


async def get_object(request: web.Request) -> web.StreamResponse:
    principal = _principal(request)
    purpose = _one_header(request, "X-Purpose", errors.BadRequest)
    version = version_parameter(request.query, "version")
    span = byte_span(_one_header(request, "Range", errors.BadRequest))
    if_none_match = entity_tags(_one_header(request, "If-None-Match", errors.BadRequest), "If-None-Match", weak=True)
    if "versions" in request.query:  # every GET of an object says why, though listing decrypts nothing
        check_purpose(purpose)
        return web.json_response(await request.app[SERVICE].versions(principal, *_object_args(request)))
    try:
        reading = await request.app[SERVICE].open_read(
            principal, *_object_args(request), purpose=purpose, version=version, span=span, if_none_match=if_none_match
        )
    except errors.NotModified as e:
        return web.Response(status=304, headers={"ETag": etag(e.version), "X-Version": e.version})
    except errors.RangeNotSatisfiable as e:
        return _json_error(416, e.code, e.message, {"Content-Range": f"bytes */{e.size}"})
    headers = {
        "Content-Type": reading.content_type,
        "X-Version": reading.version,
        "ETag": etag(reading.version),
        "Accept-Ranges": "bytes",
        "Content-Length": str(reading.size),
        "X-Request-Id": request[REQUEST_ID],
    }
    if reading.span is not None:
        headers["Content-Range"] = f"bytes {reading.span[0]}-{reading.span[1]}/{reading.total}"
    status = 200 if reading.span is None else 206
    if reading.size <= WHOLE_RESPONSE_MAX:
        # A small body goes out with its headers in one write (a send each costs more than the
        # bytes); and a copy that fails its check now is a clean 503, with nothing sent yet.
        body = await reading.whole()
        request.app[METRICS].http_bytes.labels("out").inc(len(body))
        return web.Response(status=status, headers=headers, body=body)
    response = web.StreamResponse(status=status, headers=headers)
    await response.prepare(request)
    try:
        async for chunk in reading.body:
            await response.write(chunk)
    except Exception:
        # Plaintext already went out: never finish cleanly with a short body.
        if request.transport is not None:
            request.transport.abort()
        raise
    request.app[METRICS].http_bytes.labels("out").inc(reading.size)
    await response.write_eof()
    return response


async def head_object(request: web.Request) -> web.Response:
    principal = _principal(request)
    head = await request.app[SERVICE].head(principal, *_object_args(request))
    return web.Response(
        status=200,
        headers={
            "ETag": etag(head.version),
            "X-Version": head.version,
            "X-Object-Size": str(head.size),
            "X-Data-Class": head.data_class,
            "X-Replication": head.replication,
            "X-Replication-Regions": ", ".join(f"{r}={s}" for r, s in head.regions.items()),
        },
    )


async def delete_object(request: web.Request) -> web.Response:
    principal = _principal(request)
    result = await request.app[SERVICE].delete(
        principal,
        *_object_args(request),
        if_match=entity_tags(_one_header(request, "If-Match", errors.BadRequest), "If-Match", weak=False),
    )
    return web.json_response(result, headers={"ETag": etag(str(result["version"]))})


async def list_objects(request: web.Request) -> web.Response:
    principal = _principal(request)
    query = request.query
    limit = query.get("limit", "100")
    if not (limit.isascii() and limit.isdigit()):
        raise errors.BadRequest("limit must be a whole number")
    return web.json_response(
        await request.app[SERVICE].list(
            principal,
            request.match_info["customer"],
            query.get("class"),
            cursor=query.get("cursor"),
            limit=int(limit),
        )
    )


# -- customers ------------------------------------------------------------------------


async def erase_customer(request: web.Request) -> web.Response:
    principal = _principal(request)
    receipt = await request.app[SERVICE].erase(principal, request.match_info["customer"], request.app[ERASER])
    return web.json_response(receipt, status=202)


async def get_erasure(request: web.Request) -> web.Response:
    principal = _principal(request)
    return web.json_response(await request.app[SERVICE].erasure(principal, request.match_info["id"]))


async def export_customer(request: web.Request) -> web.StreamResponse:
    principal = _principal(request)
    customer = request.match_info["customer"]
    stream = await request.app[SERVICE].export(principal, customer)
    response = web.StreamResponse(
        headers={
            "Content-Type": "application/x-tar",
            "X-Request-Id": request[REQUEST_ID],
            "Content-Disposition": f'attachment; filename="{customer}-export.tar"',
        }
    )
    response.enable_chunked_encoding()
    await response.prepare(request)
    try:
        async for chunk in stream:
            await response.write(chunk)
    except Exception:
        if request.transport is not None:
            request.transport.abort()
        raise
    await response.write_eof()
    return response


# -- operations -----------------------------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    checks = await request.app[READINESS]()
    regions = [v for k, v in checks.items() if k.startswith("region:")]
    others = [v for k, v in checks.items() if not k.startswith("region:") and k not in SOFT_CHECKS]
    # One region down still takes writes (degraded, journaled) and serves reads from the other:
    # stay ready, say so; so does a key service that is down, the KEK being in memory.
    # No region, or a locked keyring, journal or audit log: not ready.
    if all(v == "ok" for v in checks.values()):
        status = "ok"
    elif all(v == "ok" for v in others) and "ok" in regions:
        status = "degraded"
    else:
        status = "unavailable"
    return web.json_response({"status": status, "checks": checks}, status=503 if status == "unavailable" else 200)


async def metrics(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    backlog = await service.journal.backlog()
    request.app[METRICS].journal_backlog.set(backlog.pending)
    request.app[METRICS].journal_oldest.set(backlog.oldest_age)
    return web.Response(
        body=request.app[METRICS].exposition(), headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}
    )


def add_routes(app: web.Application) -> None:
    obj = r"/v1/objects/{customer}/{data_class}/{name:[\s\S]+}"  # not ".+": a name with a newline is a 400, not a 404
    app.router.add_put(obj, put_object, expect_handler=expect_handler)
    app.router.add_get(obj, get_object, allow_head=False, expect_handler=expect_handler)
    app.router.add_head(obj, head_object, expect_handler=expect_handler)
    app.router.add_delete(obj, delete_object, expect_handler=expect_handler)
    app.router.add_post(obj, post_object, expect_handler=expect_handler)
    app.router.add_get("/v1/objects/{customer}", list_objects, allow_head=False, expect_handler=expect_handler)
    app.router.add_delete("/v1/customers/{customer}", erase_customer, expect_handler=expect_handler)
    app.router.add_get(
        "/v1/customers/{customer}/export", export_customer, allow_head=False, expect_handler=expect_handler
    )
    app.router.add_get("/v1/erasures/{id}", get_erasure, allow_head=False, expect_handler=expect_handler)
    app.router.add_get("/healthz", healthz, expect_handler=expect_handler)
    app.router.add_get("/readyz", readyz, expect_handler=expect_handler)
    app.router.add_get("/metrics", metrics, expect_handler=expect_handler)
