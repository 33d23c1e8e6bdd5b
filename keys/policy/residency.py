"""Residency: may the service config's regions be used under this policy? One rule, pure.

The privacy policy promises "servers across Canada and Japan". ``check_residency``
is the one place that promise meets a service config: the config describes each
of its regions as a ``Placement`` (its name, provider, location and country, and
what its endpoints say where the config names them), and a region is refused
unless

1. its country is in the built-in allow-list (``ALLOWED_COUNTRIES``) *and* in the
   policy's ``allowed_countries`` (which may narrow the list, never widen it:
   the two are intersected whatever the Policy holds);
2. its provider and location are known to be in that country
   (``check_region_rule``: Azure and ConoHa locations by table);
3. when the policy has ``[[regions]]`` pins, a pin has its name and the same
   provider, location and country (so the config's regions are exactly the
   pinned ones: a config has two regions, the pins at most one per country);
4. what its endpoints say agrees, where that can be known (``ENDPOINT_COUNTRIES``
   and ``CONOHA_REGIONS``): an Azure account URL, connection-string endpoint or
   Entra authority in a sovereign cloud (China, US Government) is in that
   country; a ConoHa Keystone or object-storage host (``identity.tyo1.conoha.io``)
   or a Swift cloud's region name that ConoHa uses names its country, and for a
   ``conoha`` region it must be the configured location. A public Azure host
   (``<account>.blob.core.windows.net``) or a self-run Swift says nothing: the
   declared country stands;
5. no other region is in the same country (two regions are two countries).

Errors are ``ResidencyError``: the region, the field that is wrong (the
caller finds its line) and a message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from keys.policy.model import ALLOWED_COUNTRIES, Policy, check_region_rule

# ConoHa's region names (as its API hosts and clouds.yaml region_name spell them) and their countries:
# Tokyo (VPS v2 tyo1-tyo3, VPS v3 c3j1), Singapore and San Jose. Only the Japanese ones may hold data.
CONOHA_REGIONS: Mapping[str, str] = {
    "tyo1": "JP",
    "tyo2": "JP",
    "tyo3": "JP",
    "c3j1": "JP",
    "sin1": "SG",
    "sjc1": "US",
}
# Host suffixes whose country is known whatever the account: Azure's sovereign clouds (storage and
# Entra ID). The public cloud's hosts (core.windows.net, login.microsoftonline.com) name no country.
ENDPOINT_COUNTRIES: Mapping[str, str] = {
    ".core.chinacloudapi.cn": "CN",
    "login.chinacloudapi.cn": "CN",
    "login.partner.microsoftonline.cn": "CN",
    ".core.usgovcloudapi.net": "US",
    "login.microsoftonline.us": "US",
}


@dataclass(frozen=True)
class Endpoint:
    """Something the config says a region is reached through: a URL's host, or a Keystone region
    name (``region`` = True). ``field`` is the config key it came from, for the error."""

    field: str
    value: str
    region: bool = False


@dataclass(frozen=True)
class Placement:
    """One region of the service config, as the residency rule sees it."""

    name: str
    provider: str
    location: str
    country: str
    endpoints: tuple[Endpoint, ...] = ()


class ResidencyError(ValueError):
    """A region the policy does not allow; ``field`` is the config key that is wrong (``name`` for
    the region itself)."""

    def __init__(self, region: str, field: str, message: str) -> None:
        self.region, self.field, self.message = region, field, message
        super().__init__(f"region {region!r}: {message}")


def endpoint_place(endpoint: Endpoint) -> tuple[str, str | None] | None:
    """(country, ConoHa region or None) that ``endpoint`` is known to be in, or None if unknown."""
    value = endpoint.value.lower().rstrip(".")
    if endpoint.region:
        return (CONOHA_REGIONS[value], value) if value in CONOHA_REGIONS else None
    labels = value.split(".")
    if value.endswith(".conoha.io") and len(labels) >= 4 and labels[-3] in CONOHA_REGIONS:
        return CONOHA_REGIONS[labels[-3]], labels[-3]  # identity.tyo1.conoha.io, object-storage.tyo1.conoha.io
    for suffix, country in ENDPOINT_COUNTRIES.items():
        if value == suffix.lstrip(".") or value.endswith(suffix if suffix.startswith(".") else "." + suffix):
            return country, None
    return None


def check_residency(policy: Policy, placements: Sequence[Placement]) -> None:
    """Raise ResidencyError for the first region the policy does not allow (the rules above)."""
    allowed = policy.allowed_countries & ALLOWED_COUNTRIES  # narrows, never widens
    source = policy.source
    seen: dict[str, str] = {}  # country -> the region already there
    for p in placements:
        if p.country not in ALLOWED_COUNTRIES:
            raise ResidencyError(
                p.name, "country", f"country {p.country!r} is outside Canada and Japan (allowed: CA, JP)"
            )
        if p.country not in allowed:
            raise ResidencyError(
                p.name,
                "country",
                f"country {p.country!r} is not allowed by the policy {source} "
                f"(allowed_countries: {', '.join(sorted(allowed))})",
            )
        try:
            check_region_rule(p.provider, p.location, p.country, frozenset(allowed))
        except ValueError as exc:
            raise ResidencyError(p.name, "provider" if "provider" in str(exc) else "location", str(exc)) from None
        if policy.regions:
            _check_pin(policy, p)
        for endpoint in p.endpoints:
            _check_endpoint(p, endpoint)
        if p.country in seen:
            raise ResidencyError(
                p.name,
                "country",
                f"region {seen[p.country]!r} is in {p.country} too: the two regions must be in two countries",
            )
        seen[p.country] = p.name


def _check_pin(policy: Policy, p: Placement) -> None:
    pin = policy.region(p.name)
    if pin is None:
        pinned = ", ".join(r.name for r in policy.regions)
        raise ResidencyError(p.name, "name", f"the policy {policy.source} pins only the regions {pinned}")
    for field in ("provider", "location", "country"):
        have, want = getattr(p, field), getattr(pin, field)
        if have != want:
            raise ResidencyError(
                p.name, field, f"{field} {have!r} is not the policy's pinned {want!r} ({policy.source})"
            )


def _check_endpoint(p: Placement, endpoint: Endpoint) -> None:
    place = endpoint_place(endpoint)
    if place is None:
        return
    country, conoha = place
    what = f"{endpoint.field} {endpoint.value!r}"
    if country != p.country:
        raise ResidencyError(p.name, endpoint.field, f"{what} is in {country}, not {p.country}")
    if conoha is not None and p.provider == "conoha" and conoha != p.location:
        raise ResidencyError(p.name, endpoint.field, f"{what} is ConoHa's {conoha}, not the location {p.location!r}")
