"""The access policy as values, and the decisions made from it.

A ``Policy`` holds data classes (the purposes that may decrypt each, its
retention, whether it may hold SINs), region rules and principals. It is
built by ``keys.policy.loader`` from the TOML file, fully validated, and
never changes after (``with_principal`` makes a copy).

Principals are service tokens stored as their SHA-256 (``keys.policy.tokens``
says why a plain hash is right). ``authenticate`` compares against every
principal in constant time.

Scopes: ``write:<class>``, ``read:<class>:<purpose>``, ``meta:<class>``
(head and list, no decrypt), ``delete:<class>``, ``erase``, ``export``,
``admin``; the first word is a ``Verb``. There are no wildcards, and
``admin`` (operator calls) grants no reads.

Region rules: whatever the file says, a region must be in Canada or Japan
(``ALLOWED_COUNTRIES``). For Azure and ConoHa the location must be one this
module knows to be in Canada or Japan, and its country must match; ``swift``
and ``local`` (self-run stores, the dev stack) are taken at their declared
country. The policy's ``allowed_countries`` and ``[[regions]]`` pins are
applied to the service config's regions by ``keys.policy.residency``.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

ALLOWED_COUNTRIES = frozenset({"CA", "JP"})  # the privacy policy's promise
UNTIL_ERASURE = "until erasure"
KNOWN_LOCATIONS: Mapping[str, Mapping[str, str]] = {
    "azure": {"canadacentral": "CA", "canadaeast": "CA", "japaneast": "JP", "japanwest": "JP"},
    "conoha": {"tyo1": "JP", "tyo2": "JP", "tyo3": "JP", "c3j1": "JP"},
}
PROVIDERS = frozenset({"azure", "conoha", "swift", "local"})
UNSCANNABLE = ("refuse", "accept")
NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}")
PRINCIPAL_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
HEX64 = re.compile(r"[0-9a-f]{64}")


class PolicyError(ValueError):
    """The policy file is wrong; ``str()`` is ``<file>:<line>: <message>``."""

    def __init__(self, source: str, line: int | None, message: str) -> None:
        self.source, self.line, self.message = source, line, message
        super().__init__(f"{source}:{line}: {message}" if line else f"{source}: {message}")


class Verb(enum.StrEnum):
    """The first word of a scope: what a principal may do."""

    WRITE = "write"
    READ = "read"
    META = "meta"
    DELETE = "delete"
    RESTORE = "restore"
    ERASE = "erase"
    EXPORT = "export"
    ADMIN = "admin"


_CLASS_VERBS = {Verb.WRITE, Verb.READ, Verb.META, Verb.DELETE, Verb.RESTORE}


@dataclass(frozen=True)
class DataClass:
    name: str
    purposes: frozenset[str]
    retention_days: int | None  # None: kept until erasure
    sin_allowed: bool = False
    description: str = ""
    #: Days a superseded version or a deleted object stays restorable (0: none kept); never past retention.
    keep_versions_days: int = 0
    #: What the SIN check does with what it cannot scan (an encrypted zip entry, an unknown compression):
    #: "refuse" (422, the default of a class that forbids SINs) or "accept". Meaningless where SINs are allowed.
    unscannable: str = "refuse"


@dataclass(frozen=True)
class RegionRule:
    """A ``[[regions]]`` entry of the policy: where a region may be."""

    name: str
    provider: str
    location: str
    country: str


@dataclass(frozen=True)
class Principal:
    """A service token's holder. ``client_subject`` (an RFC 4514 name) and ``client_san`` (``DNS:``,
    ``URI:``, ``email:`` or ``IP:`` and a value) bind it to a client certificate: then its token
    is accepted only on a TLS connection whose verified client certificate matches (both, if both
    are given). ``token_id`` names a token of the token store (``replicator tokens``)."""

    name: str
    token_sha256: str = field(repr=False)
    scopes: frozenset[str] = frozenset()
    client_subject: str | None = None
    client_san: str | None = None
    token_id: str | None = None

    @property
    def bound(self) -> bool:
        return self.client_subject is not None or self.client_san is not None


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str

    def __bool__(self) -> bool:
        return self.allowed


def check_region_rule(provider: str, location: str, country: str, allowed: frozenset[str] = ALLOWED_COUNTRIES) -> None:
    """Raise ValueError unless the region is known to be in an allowed country."""
    if provider not in PROVIDERS:
        raise ValueError(f"unknown provider {provider!r} (one of {', '.join(sorted(PROVIDERS))})")
    if country not in allowed:
        raise ValueError(f"country {country!r} is not allowed (allowed: {', '.join(sorted(allowed))})")
    known = KNOWN_LOCATIONS.get(provider)
    if known is not None:
        if location not in known:
            raise ValueError(f"{provider} location {location!r} is not in Canada or Japan")
        if known[location] != country:
            raise ValueError(f"{provider} location {location!r} is in {known[location]}, not {country}")


def check_scope(scope: str, classes: Mapping[str, DataClass]) -> None:
    """Raise ValueError saying what is wrong with ``scope``."""
    if not isinstance(scope, str):
        raise ValueError("a scope must be a string")
    parts = scope.split(":")
    verb = parts[0]
    if verb in (Verb.ERASE, Verb.EXPORT, Verb.ADMIN) and len(parts) == 1:
        return
    if verb in (Verb.WRITE, Verb.META, Verb.DELETE, Verb.RESTORE) and len(parts) == 2:
        if parts[1] not in classes:
            raise ValueError(f"scope {scope!r} names unknown class {parts[1]!r}")
        return
    if verb == Verb.READ and len(parts) == 3:
        dc = classes.get(parts[1])
        if dc is None:
            raise ValueError(f"scope {scope!r} names unknown class {parts[1]!r}")
        if parts[2] not in dc.purposes:
            raise ValueError(
                f"scope {scope!r}: purpose {parts[2]!r} may not decrypt class {dc.name!r}"
                f" (allowed: {', '.join(sorted(dc.purposes))})"
            )
        return
    raise ValueError(
        f"bad scope {scope!r} (write:<class>, read:<class>:<purpose>, meta:<class>,"
        " delete:<class>, restore:<class>, erase, export, admin)"
    )


@dataclass(frozen=True)
class Policy:
    classes: Mapping[str, DataClass]
    regions: tuple[RegionRule, ...]
    principals: tuple[Principal, ...] = ()
    allowed_countries: frozenset[str] = ALLOWED_COUNTRIES
    source: str = "<policy>"

    def data_class(self, name: str) -> DataClass | None:
        return self.classes.get(name)

    def region(self, name: str) -> RegionRule | None:
        return next((r for r in self.regions if r.name == name), None)

    def with_principal(self, principal: Principal) -> Policy:
        """A copy with one more principal (e.g. the dev token added at run
        time). Raises PolicyError for a bad scope or a duplicate."""
        try:
            check_principal(principal, self.classes)
            for p in self.principals:
                if p.name == principal.name:
                    raise ValueError(f"duplicate principal name {p.name!r}")
                if hmac.compare_digest(p.token_sha256, principal.token_sha256):
                    raise ValueError(f"principal {principal.name!r} has the same token as {p.name!r}")
        except ValueError as exc:
            raise PolicyError(self.source, None, str(exc)) from None
        return replace(self, principals=(*self.principals, principal))

    def authenticate(self, token: str) -> Principal | None:
        """The principal holding ``token``, or None. Compares against every
        principal with ``hmac.compare_digest``, so the time taken does not
        depend on which principal (if any) matches."""
        if not isinstance(token, str) or not token:
            return None
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        found = None
        for p in self.principals:
            if hmac.compare_digest(digest, bytes.fromhex(p.token_sha256)):
                found = p
        return found

    def authorize(
        self,
        principal: Principal | None,
        action: Verb | str,
        data_class: str | None = None,
        purpose: str | None = None,
    ) -> Decision:
        """May ``principal`` do ``action`` on ``data_class`` for ``purpose``?
        ``read`` needs a purpose the class allows *and* the matching scope."""
        if principal is None:
            return Decision(False, "not authenticated")
        try:
            action = Verb(action)
        except ValueError:
            return Decision(False, f"unknown action {action!r}")
        if action not in _CLASS_VERBS:
            scope = str(action)
        else:
            if data_class is None:
                return Decision(False, f"{action} needs a data class")
            dc = self.classes.get(data_class)
            if dc is None:
                return Decision(False, f"unknown data class {data_class!r}")
            if action is Verb.READ:
                if not purpose:
                    return Decision(False, "read needs a purpose")
                if purpose not in dc.purposes:
                    return Decision(
                        False,
                        f"purpose {purpose!r} may not decrypt class {dc.name!r}"
                        f" (allowed: {', '.join(sorted(dc.purposes))})",
                    )
                scope = f"read:{dc.name}:{purpose}"
            else:
                scope = f"{action}:{dc.name}"
        if scope in principal.scopes:
            return Decision(True, f"allowed by scope {scope}")
        return Decision(False, f"principal {principal.name!r} lacks scope {scope}")


def check_principal(p: Principal, classes: Mapping[str, DataClass]) -> None:
    if not PRINCIPAL_NAME.fullmatch(p.name):
        raise ValueError(f"bad principal name {p.name!r}")
    if not HEX64.fullmatch(p.token_sha256):
        raise ValueError("token_sha256 must be 64 lower-case hex digits")
    if not p.scopes:
        raise ValueError(f"principal {p.name!r} has no scopes")
    for scope in sorted(p.scopes):
        check_scope(scope, classes)
    check_binding(p.client_subject, p.client_san)


SAN_KINDS = ("DNS", "URI", "email", "IP")


def check_binding(subject: str | None, san: str | None) -> None:
    """Raise ValueError unless ``subject`` is an RFC 4514 name and ``san`` is ``<kind>:<value>``."""
    if subject is not None:
        from cryptography import x509  # only where a binding is given

        try:
            name = x509.Name.from_rfc4514_string(subject)
        except ValueError:
            raise ValueError(f"client_subject {subject!r} is not an RFC 4514 name (e.g. 'CN=web,O=Example')") from None
        if not len(name):
            raise ValueError("client_subject is empty")
    if san is not None:
        kind, _, value = san.partition(":")
        if kind not in SAN_KINDS or not value:
            raise ValueError(f"client_san {san!r} must be {', '.join(k + ':<value>' for k in SAN_KINDS)}")
