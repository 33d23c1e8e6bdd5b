"""keys.policy.residency: the service config's regions against the policy (docs/privacy.md §4).

Each refusal of ``check_residency`` on its own: a country the policy narrowed
away, a policy that tries to widen the list, a pin mismatch on each field, two
regions in one country, an unknown country, and endpoints that say where a
region is; and the loader refusing a widening list or two pins in one country
at their line.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from keys.policy import (
    Endpoint,
    Placement,
    PolicyError,
    ResidencyError,
    check_residency,
    parse_policy,
)
from keys.policy.residency import endpoint_place

CLASSES = """
[classes.account]
purposes = ["service"]
retention = "until erasure"
"""
PINS = """
[[regions]]
name = "ca"
provider = "azure"
location = "canadacentral"
country = "CA"

[[regions]]
name = "jp"
provider = "conoha"
location = "tyo1"
country = "JP"
"""
CA = Placement("ca", "azure", "canadacentral", "CA")
JP = Placement("jp", "conoha", "tyo1", "JP")


def _policy(head: str = "", pins: str = ""):
    return parse_policy(f"version = 1\n{head}\n{CLASSES}{pins}", "policy.toml")


def _refused(policy, *placements: Placement) -> ResidencyError:
    with pytest.raises(ResidencyError) as info:
        check_residency(policy, placements)
    return info.value


def _line_of(text: str, needle: str) -> int:
    return next(i + 1 for i, line in enumerate(text.splitlines()) if needle in line)


def test_the_default_shape_passes_with_and_without_pins():
    check_residency(_policy(), [CA, JP])
    check_residency(_policy('allowed_countries = ["CA", "JP"]', PINS), [CA, JP])
    check_residency(_policy(), [Placement("ca", "local", "local", "CA"), Placement("jp", "local", "local", "JP")])


def test_narrowing_refuses_the_country_left_out():
    err = _refused(_policy('allowed_countries = ["CA"]'), CA, JP)
    assert (err.region, err.field) == ("jp", "country")
    assert "country 'JP' is not allowed by the policy policy.toml (allowed_countries: CA)" in str(err)
    err = _refused(_policy('allowed_countries = ["JP"]'), CA, JP)
    assert (err.region, err.field) == ("ca", "country")


def test_a_widening_list_is_refused_by_the_loader_at_its_line():
    text = f'version = 1\nallowed_countries = ["CA", "JP",\n  "US"]\n{CLASSES}'
    with pytest.raises(PolicyError) as info:
        parse_policy(text, "policy.toml")
    assert info.value.line == _line_of(text, '"US"')
    assert "country 'US' is outside Canada and Japan" in str(info.value)


def test_a_widened_policy_built_in_code_still_allows_only_canada_and_japan():
    widened = replace(_policy(), allowed_countries=frozenset({"CA", "JP", "US"}))
    err = _refused(widened, CA, Placement("us", "local", "local", "US"))
    assert (err.region, err.field) == ("us", "country")
    assert "country 'US' is outside Canada and Japan" in str(err)


@pytest.mark.parametrize("country", ["US", "XX", "ca", ""])
def test_an_unknown_country_is_refused(country):
    err = _refused(_policy(), CA, Placement("jp", "local", "local", country))
    assert (err.region, err.field) == ("jp", "country")
    assert f"country {country!r} is outside Canada and Japan" in str(err)


@pytest.mark.parametrize(
    "changed, field, message",
    [
        (replace(JP, name="tokyo"), "name", "the policy policy.toml pins only the regions ca, jp"),
        (replace(JP, provider="swift"), "provider", "provider 'swift' is not the policy's pinned 'conoha'"),
        (replace(JP, location="tyo2"), "location", "location 'tyo2' is not the policy's pinned 'tyo1'"),
        (replace(CA, location="canadaeast"), "location", "location 'canadaeast' is not the policy's pinned"),
        (replace(JP, provider="local", location="local"), "provider", "provider 'local' is not the policy's"),
    ],
)
def test_a_pin_mismatch_names_the_field(changed, field, message):
    others = [p for p in (CA, JP) if p.country != changed.country]
    err = _refused(_policy(pins=PINS), *others, changed)
    assert (err.region, err.field) == (changed.name, field)
    assert message in str(err)


def test_a_pin_mismatch_on_country():
    local_pins = PINS.replace('"azure"', '"local"').replace('"conoha"', '"local"')
    local_pins = local_pins.replace('"canadacentral"', '"local"').replace('"tyo1"', '"local"')
    swapped = [Placement("ca", "local", "local", "JP"), Placement("jp", "local", "local", "CA")]
    err = _refused(_policy(pins=local_pins), *swapped)
    assert (err.region, err.field) == ("ca", "country")
    assert "country 'JP' is not the policy's pinned 'CA' (policy.toml)" in str(err)


def test_pins_make_the_regions_exactly_those():
    one_pin = _policy(pins="[[regions]]" + PINS.split("[[regions]]")[1])
    err = _refused(one_pin, CA, JP)
    assert (err.region, err.field) == ("jp", "name")
    assert "pins only the regions ca" in str(err)


def test_two_regions_in_one_country_are_refused():
    err = _refused(_policy(), CA, Placement("ca2", "azure", "canadaeast", "CA"))
    assert (err.region, err.field) == ("ca2", "country")
    assert "region 'ca' is in CA too: the two regions must be in two countries" in str(err)
    err = _refused(_policy(), Placement("a", "local", "local", "JP"), Placement("b", "local", "local", "JP"))
    assert (err.region, err.field) == ("b", "country")


def test_two_pins_in_one_country_are_refused_by_the_loader_at_the_line():
    pins = PINS.replace(
        'name = "jp"\nprovider = "conoha"\nlocation = "tyo1"\ncountry = "JP"',
        'name = "ca2"\nprovider = "azure"\nlocation = "canadaeast"\ncountry = "CA"',
    )
    text = f"version = 1\n{CLASSES}{pins}"
    with pytest.raises(PolicyError) as info:
        parse_policy(text, "policy.toml")
    assert "regions 'ca' and 'ca2' are both in CA" in str(info.value)
    assert info.value.line == len(text.splitlines())  # the second pin's country line, the file's last


@pytest.mark.parametrize(
    "endpoint, place",
    [
        (Endpoint("cloud", "identity.tyo1.conoha.io"), ("JP", "tyo1")),
        (Endpoint("cloud", "object-storage.c3j1.conoha.io"), ("JP", "c3j1")),
        (Endpoint("cloud", "identity.sin1.conoha.io"), ("SG", "sin1")),
        (Endpoint("cloud", "tyo2", region=True), ("JP", "tyo2")),
        (Endpoint("cloud", "sjc1", region=True), ("US", "sjc1")),
        (Endpoint("account_url", "acct.blob.core.chinacloudapi.cn"), ("CN", None)),
        (Endpoint("account_url", "acct.blob.core.usgovcloudapi.net"), ("US", None)),
        (Endpoint("authority", "login.microsoftonline.us"), ("US", None)),
        (Endpoint("account_url", "acct.blob.core.windows.net"), None),  # the public cloud names no country
        (Endpoint("authority", "login.microsoftonline.com"), None),
        (Endpoint("cloud", "RegionOne", region=True), None),  # a self-run Swift's region names none
        (Endpoint("cloud", "127.0.0.1"), None),
        (Endpoint("cloud", "conoha.io.example.com"), None),
    ],
)
def test_what_an_endpoint_says(endpoint, place):
    assert endpoint_place(endpoint) == place


@pytest.mark.parametrize(
    "region, field, message",
    [
        (
            replace(JP, endpoints=(Endpoint("cloud", "identity.sin1.conoha.io"),)),
            "cloud",
            "cloud 'identity.sin1.conoha.io' is in SG, not JP",
        ),
        (replace(JP, endpoints=(Endpoint("cloud", "sjc1", region=True),)), "cloud", "cloud 'sjc1' is in US, not JP"),
        (
            replace(JP, endpoints=(Endpoint("cloud", "tyo3", region=True),)),
            "cloud",
            "cloud 'tyo3' is ConoHa's tyo3, not the location 'tyo1'",
        ),
        (
            replace(CA, endpoints=(Endpoint("account_url", "acct.blob.core.chinacloudapi.cn"),)),
            "account_url",
            "account_url 'acct.blob.core.chinacloudapi.cn' is in CN, not CA",
        ),
        (
            replace(CA, endpoints=(Endpoint("authority", "login.microsoftonline.us"),)),
            "authority",
            "authority 'login.microsoftonline.us' is in US, not CA",
        ),
    ],
)
def test_an_endpoint_elsewhere_is_refused(region, field, message):
    others = [p for p in (CA, JP) if p.name != region.name]
    err = _refused(_policy(), region, *others)
    assert (err.region, err.field) == (region.name, field)
    assert message in str(err)


def test_endpoints_that_agree_or_say_nothing_pass():
    check_residency(
        _policy(pins=PINS),
        [
            replace(CA, endpoints=(Endpoint("account_url", "acct.blob.core.windows.net"),)),
            replace(
                JP, endpoints=(Endpoint("cloud", "tyo1", region=True), Endpoint("cloud", "identity.tyo1.conoha.io"))
            ),
        ],
    )
    # a self-run Swift (the dev stack) is taken at its declared country
    check_residency(
        _policy(), [CA, Placement("jp", "swift", "devstack", "JP", (Endpoint("cloud", "RegionOne", True),))]
    )
