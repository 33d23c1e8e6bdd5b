"""How an object sits in a region: its path and the metadata that travels with it.

Path: ``v1/<customer tag>/<class>/<name tag>``. Tags are keyed HMACs
(``keys.tags``), so a region learns neither the customer nor the name; the
real name and content type travel sealed under the customer's key.

Metadata (the same in both regions, and carried by listings):

=========  ===============================================================
``version``  hybrid-logical-clock stamp of the write (``replicator.hlc``)
``tomb``     ``"1"`` on a tombstone (an empty object that records a delete)
``cls``      data class, for retention
``wtime``    write time, ms since the epoch, for retention
``dek``      id of the data key the body is encrypted under
``sname``    sealed real name and content type
=========  ===============================================================
"""

from __future__ import annotations

from dataclasses import dataclass

from regions import ObjectInfo

from .hlc import Version

PREFIX = "v1"


def object_path(customer_tag: str, data_class: str, name_tag: str) -> str:
    return f"{PREFIX}/{customer_tag}/{data_class}/{name_tag}"


def customer_prefix(customer_tag: str) -> str:
    return f"{PREFIX}/{customer_tag}/"


@dataclass(frozen=True)
class ObjectMeta:
    version: Version
    data_class: str
    written_ms: int
    tombstone: bool = False
    dek_id: str = ""
    sealed_name: str = ""

    def to_meta(self) -> dict[str, str]:
        meta = {"version": str(self.version), "cls": self.data_class, "wtime": str(self.written_ms)}
        if self.tombstone:
            meta["tomb"] = "1"
        if self.dek_id:
            meta["dek"] = self.dek_id
        if self.sealed_name:
            meta["sname"] = self.sealed_name
        return meta

    @classmethod
    def of(cls, info: ObjectInfo) -> "ObjectMeta":
        """Parse an object's metadata; ``ValueError`` names what is missing or malformed."""
        m = info.meta
        try:
            return cls(version=Version.parse(m["version"]), data_class=m["cls"],
                       written_ms=int(m["wtime"]), tombstone=m.get("tomb") == "1",
                       dek_id=m.get("dek", ""), sealed_name=m.get("sname", ""))
        except KeyError as e:
            raise ValueError(f"object {info.name!r} has no {e.args[0]!r} metadata") from None


def version_of(info: ObjectInfo) -> Version | None:
    """The version stamp of a stored object, or None for an object we did not write."""
    try:
        return Version.parse(info.meta.get("version", ""))
    except ValueError:
        return None
