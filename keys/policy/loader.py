"""Loading the policy file: TOML in, a validated ``Policy`` out.

The policy is one TOML file (the service's default is package data,
``replicator/data/policy.toml``; ``deploy/policy.toml`` is its operator copy), loaded
and fully validated at start: ``load_policy(path) -> Policy``. Any error —
a TOML syntax error, an unknown key, a scope naming an unknown class or a
purpose that class does not allow, a malformed scope, two principals with the
same name or token, a region outside Canada and Japan — raises
``PolicyError``, whose message starts ``<file>:<line>:`` with the line that
is wrong (tomllib gives no positions for values, so the line is found by
searching the source for the offending table, key and value; it is exact for
the shapes the default file uses and falls back to the table's line).

Shapes::

    allowed_countries = ["CA", "JP"]          # may narrow, never widen

    [classes.session]
    purposes = ["authentication"]             # purposes that may decrypt
    retention = 30                            # days, or "until erasure"
    sin_allowed = false                       # default false
    unscannable = "refuse"                    # what the SIN check cannot scan: refuse (default) | accept
    keep_versions_days = 0                    # superseded versions kept (default 0: none)

    [[regions]]                               # optional pins: the config's regions must be exactly
    name = "ca"                               # these (keys.policy.residency), one per country
    provider = "azure"                        # azure | conoha | swift | local
    location = "canadacentral"
    country = "CA"

    [[principals]]
    name = "web"
    token_sha256 = "<64 hex>"
    scopes = ["write:account", "read:account:service"]
    client_subject = "CN=web,O=Example"       # optional: the token counts only with this client
    client_san = "DNS:web.internal"           # certificate (subject, SAN, or both) over mTLS
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from types import MappingProxyType
from typing import Any, NoReturn

from keys.policy.model import (
    ALLOWED_COUNTRIES,
    HEX64,
    NAME,
    PRINCIPAL_NAME,
    PROVIDERS,
    UNSCANNABLE,
    UNTIL_ERASURE,
    DataClass,
    Policy,
    PolicyError,
    Principal,
    RegionRule,
    check_binding,
    check_region_rule,
    check_scope,
)


def load_policy(path: str | os.PathLike[str]) -> Policy:
    """Read and validate a policy file. Raises PolicyError naming file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(str(path), None, f"cannot read policy: {exc}") from None
    return parse_policy(text, str(path))


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"at line (\d+)", str(exc))
        raise PolicyError(source, int(m.group(1)) if m else None, f"not valid TOML: {exc}") from None
    return _Loader(text, source).load(data)


_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\[\]#]+?)\s*\]\]?\s*(#.*)?$")


class TomlLocator:
    """Finds the line of a table, a key in it, or a value of that key."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.sections: list[tuple[str, bool, int]] = []  # (table, is_array, line index)
        for i, line in enumerate(self.lines):
            m = _HEADER.match(line)
            if m:
                name = ".".join(part.strip().strip("\"'") for part in m.group(2).split("."))
                self.sections.append((name, m.group(1) == "[[", i))

    def _span(self, table: str | None, index: int | None) -> tuple[int, int] | None:
        if table is None:
            return 0, self.sections[0][2] if self.sections else len(self.lines)
        seen = -1
        for n, (name, is_array, start) in enumerate(self.sections):
            if name == table and (index is None or is_array):
                seen += 1
                if index is None or seen == index:
                    end = self.sections[n + 1][2] if n + 1 < len(self.sections) else len(self.lines)
                    return start, end
        return None

    def line(
        self, table: str | None, index: int | None = None, key: str | None = None, value: Any = None
    ) -> int | None:
        span = self._span(table, index)
        if span is None:  # an unusual shape (inline table, dotted keys): search it all
            return self._anywhere(value) or self._anywhere(key)
        start, end = span
        found = start + 1 if table is not None else None  # the header line
        if key is None:
            return found
        key_re = re.compile(r"^\s*[\"']?" + re.escape(key) + r"[\"']?\s*=")
        next_key = re.compile(r"^\s*[\"']?[A-Za-z0-9_-]+[\"']?\s*=")
        for i in range(start, end):
            if key_re.match(self.lines[i]):
                if value is None or isinstance(value, bool | int):
                    return i + 1
                needles = (f'"{value}"', f"'{value}'")
                for j in range(i, end):
                    if j > i and next_key.match(self.lines[j]):
                        break
                    if any(n in self.lines[j] for n in needles):
                        return j + 1
                return i + 1
        return found

    def _anywhere(self, needle: Any) -> int | None:
        if not isinstance(needle, str):
            return None
        return next((i + 1 for i, line in enumerate(self.lines) if needle in line), None)


class _Loader:
    def __init__(self, text: str, source: str) -> None:
        self.source = source
        self.loc = TomlLocator(text)

    def fail(
        self, message: str, table: str | None, index: int | None = None, key: str | None = None, value: Any = None
    ) -> NoReturn:
        raise PolicyError(self.source, self.loc.line(table, index, key, value), message)

    def unknown_keys(
        self, item: dict[str, Any], allowed: set[str], table: str | None, index: int | None = None
    ) -> None:
        for k, value in item.items():
            if k not in allowed:
                if table is None and isinstance(value, dict):
                    self.fail(f"unknown table [{k}]", k)
                self.fail(f"unknown key {k!r} (allowed: {', '.join(sorted(allowed))})", table, index, k)

    def load(self, data: dict[str, Any]) -> Policy:
        self.unknown_keys(data, {"version", "allowed_countries", "classes", "regions", "principals"}, None)
        if data.get("version", 1) != 1:
            self.fail("version must be 1", None, key="version")
        countries = data.get("allowed_countries", sorted(ALLOWED_COUNTRIES))
        if not isinstance(countries, list) or not countries:
            self.fail("allowed_countries must be a non-empty list", None, key="allowed_countries")
        for c in countries:
            if c not in ALLOWED_COUNTRIES:
                self.fail(f"country {c!r} is outside Canada and Japan", None, key="allowed_countries", value=c)
        classes = self.load_classes(data.get("classes"))
        regions = self.load_regions(data.get("regions"), frozenset(countries))
        principals = self.load_principals(data.get("principals", []), classes)
        return Policy(MappingProxyType(classes), regions, principals, frozenset(countries), self.source)

    def load_classes(self, raw: Any) -> dict[str, DataClass]:
        if not isinstance(raw, dict) or not raw:
            self.fail("the policy needs at least one [classes.<name>] table", None, key="classes")
        classes = {}
        for name, item in raw.items():
            table = f"classes.{name}"
            if not NAME.fullmatch(name):
                self.fail(f"bad class name {name!r}", table)
            if not isinstance(item, dict):
                self.fail(f"class {name!r} must be a table", "classes", key=name)
            self.unknown_keys(
                item,
                {"purposes", "retention", "sin_allowed", "unscannable", "description", "keep_versions_days"},
                table,
            )
            purposes = item.get("purposes")
            if not isinstance(purposes, list) or not purposes:
                self.fail(f"class {name!r} needs a non-empty purposes list", table, key="purposes")
            for p in purposes:
                if not isinstance(p, str) or not NAME.fullmatch(p):
                    self.fail(f"bad purpose {p!r} in class {name!r}", table, key="purposes", value=p)
            retention = item.get("retention")
            if retention == UNTIL_ERASURE:
                days = None
            elif isinstance(retention, int) and not isinstance(retention, bool) and retention > 0:
                days = retention
            else:
                self.fail(
                    f"class {name!r}: retention must be a number of days > 0 or {UNTIL_ERASURE!r}",
                    table,
                    key="retention",
                )
            sin_allowed = item.get("sin_allowed", False)
            if not isinstance(sin_allowed, bool):
                self.fail(f"class {name!r}: sin_allowed must be true or false", table, key="sin_allowed")
            unscannable = item.get("unscannable", "refuse")
            if unscannable not in UNSCANNABLE:
                self.fail(
                    f"class {name!r}: unscannable must be {' or '.join(map(repr, UNSCANNABLE))}",
                    table,
                    key="unscannable",
                )
            if sin_allowed and "unscannable" in item:
                self.fail(
                    f"class {name!r}: unscannable has no effect where sin_allowed = true (nothing is scanned)",
                    table,
                    key="unscannable",
                )
            description = item.get("description", "")
            if not isinstance(description, str):
                self.fail(f"class {name!r}: description must be a string", table, key="description")
            keep = item.get("keep_versions_days", 0)
            if not isinstance(keep, int) or isinstance(keep, bool) or keep < 0:
                self.fail(
                    f"class {name!r}: keep_versions_days must be a whole number of days >= 0",
                    table,
                    key="keep_versions_days",
                )
            if days is not None and keep > days:
                self.fail(
                    f"class {name!r}: keep_versions_days ({keep}) is longer than its retention ({days} days)",
                    table,
                    key="keep_versions_days",
                )
            classes[name] = DataClass(name, frozenset(purposes), days, sin_allowed, description, keep, unscannable)
        return classes

    def load_regions(self, raw: Any, countries: frozenset[str]) -> tuple[RegionRule, ...]:
        if raw is None:  # the service config names the regions; countries still bind them
            return ()
        if not isinstance(raw, list):
            self.fail("regions must be an array of tables ([[regions]])", None, key="regions")
        regions: list[RegionRule] = []
        for i, item in enumerate(raw):
            if not isinstance(item, dict):
                self.fail("each region must be a table", None, key="regions")
            self.unknown_keys(item, {"name", "provider", "location", "country"}, "regions", i)
            for key in ("name", "provider", "location", "country"):
                if not isinstance(item.get(key), str) or not item[key]:
                    self.fail(f"region needs a string {key}", "regions", i, key)
            name = item["name"]
            if not NAME.fullmatch(name):
                self.fail(f"bad region name {name!r}", "regions", i, "name")
            if any(r.name == name for r in regions):
                self.fail(f"duplicate region name {name!r}", "regions", i, "name")
            try:
                check_region_rule(item["provider"], item["location"], item["country"], countries)
            except ValueError as exc:
                key = (
                    "provider"
                    if item["provider"] not in PROVIDERS
                    else ("country" if item["country"] not in countries else "location")
                )
                self.fail(f"region {name!r}: {exc}", "regions", i, key)
            same = next((r for r in regions if r.country == item["country"]), None)
            if same is not None:  # the service has two regions, in two countries
                self.fail(f"regions {same.name!r} and {name!r} are both in {same.country}", "regions", i, "country")
            regions.append(RegionRule(name, item["provider"], item["location"], item["country"]))
        return tuple(regions)

    def load_principals(self, raw: Any, classes: dict[str, DataClass]) -> tuple[Principal, ...]:
        if not isinstance(raw, list):
            self.fail("principals must be an array of tables ([[principals]])", None, key="principals")
        out: list[Principal] = []
        for i, item in enumerate(raw):
            if not isinstance(item, dict):
                self.fail("each principal must be a table", None, key="principals")
            self.unknown_keys(item, {"name", "token_sha256", "scopes", "client_subject", "client_san"}, "principals", i)
            name, digest, scopes = item.get("name"), item.get("token_sha256"), item.get("scopes")
            if not isinstance(name, str) or not PRINCIPAL_NAME.fullmatch(name):
                self.fail(f"bad principal name {name!r}", "principals", i, "name")
            if not isinstance(digest, str) or not HEX64.fullmatch(digest):
                self.fail(
                    f"principal {name!r}: token_sha256 must be 64 lower-case hex digits",
                    "principals",
                    i,
                    "token_sha256",
                )
            if not isinstance(scopes, list) or not scopes:
                self.fail(f"principal {name!r} needs a non-empty scopes list", "principals", i, "scopes")
            for scope in scopes:
                try:
                    check_scope(scope, classes)
                except ValueError as exc:
                    self.fail(f"principal {name!r}: {exc}", "principals", i, "scopes", scope)
            subject, san = item.get("client_subject"), item.get("client_san")
            for key, value in (("client_subject", subject), ("client_san", san)):
                if value is not None and not isinstance(value, str):
                    self.fail(f"principal {name!r}: {key} must be a string", "principals", i, key)
            try:
                check_binding(subject, san)
            except ValueError as exc:
                key = "client_subject" if subject is not None and "client_subject" in str(exc) else "client_san"
                self.fail(f"principal {name!r}: {exc}", "principals", i, key)
            for other in out:
                if other.name == name:
                    self.fail(f"duplicate principal name {name!r}", "principals", i, "name")
                if other.token_sha256 == digest:
                    self.fail(
                        f"principal {name!r} has the same token as {other.name!r}", "principals", i, "token_sha256"
                    )
            out.append(Principal(name, digest, frozenset(scopes), subject, san))
        return tuple(out)
