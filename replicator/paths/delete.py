"""The delete path: a tombstone in both regions, as S3's delete markers.

A delete writes a tombstone (an empty object with ``tomb`` metadata and its
own version) to both regions under the name's lock; a region that misses it
gets a journal row. Deleting what is already deleted answers the
tombstone's version again, and journals a copy for any region the earlier
delete did not reach. The reconciler removes tombstones once both regions
hold them and the grace period (and the class's ``keep_versions_days``) is over.
A class that keeps versions keeps the deleted object first
(:mod:`.versions`), so the delete can be undone with a restore.
"""

from __future__ import annotations

from keys import Principal
from replicator import errors
from replicator.layout import ObjectMeta, ObjectPath
from replicator.paths.names import check_customer, check_object_name
from replicator.paths.versions import VersionsPath


class DeletePath(VersionsPath):
    async def delete(
        self,
        principal: Principal | None,
        customer: str,
        data_class: str,
        name: str,
        *,
        if_match: tuple[str, ...] | None = None,
    ) -> dict[str, object]:
        check_customer(customer)
        check_object_name(name)
        dc = self._class(data_class)
        self.authorize(principal, "delete", data_class, customer=customer)
        await self._refuse_if_erased(customer)
        where = ObjectPath.of(self.tagger, customer, data_class, name)
        await self._record(principal, "delete", where.customer_tag, data_class, where.name_tag, refuse="deletes")
        path = str(where)
        async with self.locks.hold(path) as held:
            found = await self.lookup(path)
            if if_match is not None:
                if found.failures:
                    raise errors.ServiceUnavailable("cannot check If-Match: a region did not answer")
                self._check_conditions(found, if_match=if_match)
            winner = self._raise_if_none(found)
            if winner.meta.tombstone and not found.failures:
                # A region reported "pending" must get a journal row: a crash between the two
                # tombstone puts leaves one region with the old live copy and no row for it.
                await self._level(path, found)
                return {
                    "version": str(winner.meta.version),
                    "regions": {r: "deleted" if found.state(r) == "current" else "pending" for r in self.order},
                }
            await self._keep_superseded(dc, path, found)
            version = self.next_version(held)
            tomb = ObjectMeta(version=version, data_class=data_class, written_ms=self.now_ms(), tombstone=True)
            outcomes = await self._put_all(path, b"", tomb.to_meta())
            done = [r for r, o in zip(self.order, outcomes, strict=True) if not isinstance(o, BaseException)]
            failed = [r for r, o in zip(self.order, outcomes, strict=True) if isinstance(o, BaseException)]
            if not done:
                raise errors.ServiceUnavailable("no region recorded the delete")
            for region in failed:
                await self._journal("copy", path, done[0], region, str(version))
        return {"version": str(version), "regions": {r: "pending" if r in failed else "deleted" for r in self.order}}
