"""Subject-access export: every live object of one customer, decrypted, as one tar stream.

The tar holds ``<class>/<name>`` for each live object, then
``access-history.json`` (every audited access to the customer's data: time,
node, principal, action, class, purpose, outcome; GDPR Art. 15's recipients)
and ends with ``manifest.json`` (name, class, version, size, content type of
each). It is one authorized, audited access; the plaintext streams from the
regions through the decryptor into the response and never touches a disk.
PAX headers carry long and non-ASCII names.

The history comes from every node's audit chain as shipped to both regions
plus this node's local log (the records not shipped yet), each verified
under the audit key before use, deduplicated
(:func:`~replicator.replication.audit_history.customer_history`): a segment
at a time in memory, plus the customer's own records. A chain that does not
verify or a region that cannot be read is named under ``problems`` and
``complete`` is false; the export goes on (it is the customer's right). It
holds principal names, never tokens, and only this customer's records (by
tag); the export's own record is in it.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import AsyncIterator

from keys import Principal
from keys.stream import object_ad
from keys.tags import name_ad
from replicator.layout import ObjectMeta, ObjectPath, customer_prefix, is_kept_version
from replicator.merge import merged
from replicator.paths.base import plaintext_size
from replicator.paths.listing import ListPath, region_listing
from replicator.paths.names import check_customer
from replicator.paths.read import ReadPath
from replicator.replication.audit_history import customer_history

BLOCK = 512


def _header(name: str, size: int, mtime: float) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, mtime, 0o600
    return info.tobuf(format=tarfile.PAX_FORMAT)


def _padding(size: int) -> bytes:
    return b"\0" * (-size % BLOCK)


async def export_tar(service: ExportPath, customer: str, ctag: str) -> AsyncIterator[bytes]:
    """Yield the tar. A copy that fails mid-object aborts the stream (the client sees a broken transfer)."""
    prefix = customer_prefix(ctag)
    a, b = (region_listing(service.regions[r], prefix, []) for r in service.order)
    manifest: list[dict[str, object]] = []
    keys: dict[str, bytes] = {}
    async for path, x, y in merged(a, b):
        if is_kept_version(path):
            continue  # a kept version: the export holds the customer's objects as they are now
        best = max((ObjectMeta.of(i) for i in (x, y) if i is not None), key=lambda m: m.version)
        if best.tombstone or service.expired(best):
            continue
        where = ObjectPath.parse(path)
        data_class, ntag = where.data_class, where.name_tag
        if best.dek_id not in keys:
            keys[best.dek_id] = await service._dek(best.dek_id)
        key = keys[best.dek_id]
        name, content_type = await service._open_name(
            best.dek_id, best.sealed_name, name_ad(ctag, data_class, ntag), key
        )
        holders = [
            r
            for r, i in zip(service.order, (x, y), strict=True)
            if i is not None and ObjectMeta.of(i).version == best.version
        ]
        info = x if holders[0] == service.order[0] else y
        assert info is not None  # a holder's replica
        size = plaintext_size(info.size, best.dek_id)
        ad = object_ad(customer, data_class, name, str(best.version))
        body = await service._open_body(path, holders, key, ad, best.dek_id)
        yield _header(f"{data_class}/{name}", size, best.written_ms / 1000)
        sent = 0
        async for chunk in body:
            sent += len(chunk)
            yield chunk
        if sent != size:
            raise RuntimeError("exported object size does not match its ciphertext")
        yield _padding(size)
        manifest.append(
            {
                "name": name,
                "class": data_class,
                "version": str(best.version),
                "size": size,
                "content_type": content_type,
            }
        )
    history = await access_history(service, ctag)
    yield _header("access-history.json", len(history), 0)
    yield history + _padding(len(history))
    data = json.dumps({"customer": customer, "objects": manifest}, ensure_ascii=False, indent=1).encode()
    yield _header("manifest.json", len(data), 0)
    yield data + _padding(len(data))
    yield b"\0" * (2 * BLOCK)


async def access_history(service: ExportPath, ctag: str) -> bytes:
    """``access-history.json``: every audited access to the customer (who, when, what, for which
    purpose, with what outcome), from every node's chain in both regions and this node's local log."""
    history = await customer_history(
        service.regions, service.keys.audit_key(), ctag, local=(service.clock.node, service.audit.path)
    )
    doc = {
        "accesses": [a.to_json() for a in history.accesses],
        "complete": not history.findings,
        "problems": [str(f) for f in history.findings],  # a chain that did not verify, a region unread
    }
    return json.dumps(doc, ensure_ascii=False, indent=1).encode()


class ExportPath(ReadPath, ListPath):
    async def export(self, principal: Principal | None, customer: str) -> AsyncIterator[bytes]:
        """Authorize and audit one export; return the tar stream (see :mod:`replicator.paths.export`)."""
        check_customer(customer)
        self.authorize(principal, "export", customer=customer)
        ctag = self.tagger.customer_tag(customer)
        await self._refuse_if_erased(customer)
        await self._record(principal, "export", ctag, refuse="exports")
        return export_tar(self, customer, ctag)
