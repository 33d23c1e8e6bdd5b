"""How an object sits in a region: its path and the metadata that travels with it.

Path: ``v1/<customer tag>/<class>/<name tag>`` (:class:`ObjectPath`). Tags are keyed HMACs
(``keys.tags``), so a region learns neither the customer nor the name; the
real name and content type travel sealed under the customer's name key.

A superseded version that its class keeps (``keep_versions_days``) lives at
``<object path>/<version>`` (:class:`VersionPath`): right after its object in
a listing's byte order (name tags have one length, so no tag is a prefix of
another), oldest first, under the same customer prefix, so erasure, the
reconciler's partitions and its merge-join cover it with no extra listing.

Metadata (the same in both regions, and carried by listings):

=========  ===============================================================
``version``  hybrid-logical-clock stamp of the write (``replicator.hlc``)
``tomb``     ``"1"`` on a tombstone (an empty object that records a delete)
``cls``      data class, for retention
``wtime``    write time, ms since the epoch, for retention
``dek``      id of the data key the body is encrypted under
``sname``    sealed real name and content type
``sup``      on a kept version: when it was superseded, ms since the epoch
=========  ===============================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from regions import ObjectInfo
from replicator.hlc import Version

if TYPE_CHECKING:  # the tags come from keys; the reconciler imports this module without it
    from keys import Tagger

PREFIX = "v1"


@dataclass(frozen=True)
class ObjectPath:
    """Where one object lives in a region; the only code that builds or parses such a path."""

    customer_tag: str
    data_class: str
    name_tag: str

    def __str__(self) -> str:
        return f"{PREFIX}/{self.customer_tag}/{self.data_class}/{self.name_tag}"

    @classmethod
    def of(cls, tagger: Tagger, customer: str, data_class: str, name: str) -> ObjectPath:
        """The path of ``customer``'s object ``name`` of ``data_class`` (the tags are keyed HMACs)."""
        return cls(tagger.customer_tag(customer), data_class, tagger.name_tag(customer, data_class, name))

    @classmethod
    def parse(cls, path: str) -> ObjectPath:
        """The parts of a stored object's path; ``ValueError`` for a path we did not make."""
        parts = path.split("/")
        if len(parts) != 4 or parts[0] != PREFIX or not all(parts[1:]):
            raise ValueError(f"not an object path: {path!r}")
        return cls(parts[1], parts[2], parts[3])


@dataclass(frozen=True)
class VersionPath:
    """Where one kept (superseded) version of an object lives: ``<object path>/<version>``."""

    object: ObjectPath
    version: str

    def __str__(self) -> str:
        return f"{self.object}/{self.version}"

    @classmethod
    def parse(cls, path: str) -> VersionPath:
        """The parts of a kept version's path; ``ValueError`` for any other path."""
        head, _, version = path.rpartition("/")
        Version.parse(version)  # ValueError names it
        return cls(ObjectPath.parse(head), version)


def is_kept_version(path: str) -> bool:
    """Whether a listed path is a kept version's (one more part than an object's), without parsing it."""
    return path.count("/") == 4


def parse_path(path: str) -> ObjectPath | VersionPath:
    """An object's or a kept version's path; ``ValueError`` for a path we did not make."""
    return VersionPath.parse(path) if is_kept_version(path) else ObjectPath.parse(path)


def versions_prefix(path: ObjectPath) -> str:
    """The prefix under which the kept versions of one object live."""
    return f"{path}/"


def customer_prefix(customer_tag: str) -> str:
    """The prefix under which every object of one customer lives."""
    return f"{PREFIX}/{customer_tag}/"


def class_prefix(customer_tag: str, data_class: str) -> str:
    """The prefix under which one customer's objects of one class live."""
    return f"{customer_prefix(customer_tag)}{data_class}/"


@dataclass(frozen=True)
class ObjectMeta:
    version: Version
    data_class: str
    written_ms: int
    tombstone: bool = False
    dek_id: str = ""
    sealed_name: str = ""
    superseded_ms: int | None = None  # set on a kept version only

    @property
    def kept(self) -> bool:
        """A superseded version kept for restore, not an object's current state."""
        return self.superseded_ms is not None

    def to_meta(self) -> dict[str, str]:
        meta = {"version": str(self.version), "cls": self.data_class, "wtime": str(self.written_ms)}
        if self.tombstone:
            meta["tomb"] = "1"
        if self.dek_id:
            meta["dek"] = self.dek_id
        if self.sealed_name:
            meta["sname"] = self.sealed_name
        if self.superseded_ms is not None:
            meta["sup"] = str(self.superseded_ms)
        return meta

    @classmethod
    def of(cls, info: ObjectInfo) -> ObjectMeta:
        """Parse an object's metadata; ``ValueError`` names what is missing or malformed."""
        m = info.meta
        try:
            return cls(
                version=Version.parse(m["version"]),
                data_class=m["cls"],
                written_ms=int(m["wtime"]),
                tombstone=m.get("tomb") == "1",
                dek_id=m.get("dek", ""),
                sealed_name=m.get("sname", ""),
                superseded_ms=int(m["sup"]) if "sup" in m else None,
            )
        except KeyError as e:
            raise ValueError(f"object {info.name!r} has no {e.args[0]!r} metadata") from None


def version_of(info: ObjectInfo) -> Version | None:
    """The version stamp of a stored object, or None for an object we did not write."""
    try:
        return Version.parse(info.meta.get("version", ""))
    except ValueError:
        return None
