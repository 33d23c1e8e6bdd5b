"""keys.policy: the default file, load errors naming the line, authorize, authenticate."""

from __future__ import annotations

from pathlib import Path

import pytest

from keys.policy import (
    Policy,
    PolicyError,
    Principal,
    Verb,
    check_region_rule,
    generate_token,
    load_policy,
    parse_policy,
    token_hash,
)

DEFAULT = Path(__file__).resolve().parents[3] / "deploy" / "policy.toml"
HASH = "ab" * 32
HASH2 = "cd" * 32

BASE = """\
version = 1
allowed_countries = ["CA", "JP"]

[classes.account]
purposes = ["contact", "service"]
retention = "until erasure"

[classes.visit]
purposes = ["analytics"]
retention = 90

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


def _line_of(text: str, needle: str) -> int:
    return next(i + 1 for i, line in enumerate(text.splitlines()) if needle in line)


def _error(text: str) -> PolicyError:
    with pytest.raises(PolicyError) as info:
        parse_policy(text, "policy.toml")
    return info.value


# ----- the default file mirrors docs/privacy.md ----------------------------------


def test_default_policy_matches_the_design():
    policy = load_policy(DEFAULT)
    table = {name: (set(dc.purposes), dc.retention_days, dc.sin_allowed) for name, dc in policy.classes.items()}
    assert table == {
        "account": ({"contact", "service"}, None, False),
        "billing": ({"billing"}, None, False),
        "project": ({"service"}, None, False),
        "session": ({"authentication"}, 30, False),
        "visit": ({"analytics"}, 90, False),
    }
    # What the SIN check cannot scan (an encrypted zip entry) is refused in every class.
    assert {dc.unscannable for dc in policy.classes.values()} == {"refuse"}
    assert policy.regions == ()  # the service config names them, bound by allowed_countries
    assert policy.principals == ()
    assert policy.allowed_countries == {"CA", "JP"}


# ----- load errors name the file and the line -----------------------------------


def test_unknown_class_in_a_scope_names_its_line():
    text = BASE + (
        f'\n[[principals]]\nname = "web"\ntoken_sha256 = "{HASH}"\nscopes = [\n  "write:account",\n  "write:nope",\n]\n'
    )
    err = _error(text)
    assert err.line == _line_of(text, '"write:nope"')
    assert str(err).startswith(f"policy.toml:{err.line}: ")
    assert "unknown class 'nope'" in str(err)


def test_purpose_not_allowed_for_class_names_its_line():
    text = BASE + f'\n[[principals]]\nname = "web"\ntoken_sha256 = "{HASH}"\nscopes = ["read:visit:service"]\n'
    err = _error(text)
    assert err.line == _line_of(text, "read:visit:service")
    assert "purpose 'service' may not decrypt class 'visit'" in str(err)


@pytest.mark.parametrize("scope", ["read:account", "write", "erase:account", "root", "read:account:contact:x", ""])
def test_bad_scope_names_its_line(scope):
    text = BASE + f'\n[[principals]]\nname = "web"\ntoken_sha256 = "{HASH}"\nscopes = ["meta:visit", "{scope}"]\n'
    err = _error(text)
    assert err.line == _line_of(text, "scopes =")
    assert "bad scope" in str(err)


def test_duplicate_principal_names_the_second_one():
    text = BASE + (
        f'\n[[principals]]\nname = "web"\ntoken_sha256 = "{HASH}"\nscopes = ["erase"]\n'
        f'\n[[principals]]\nname = "web"\ntoken_sha256 = "{HASH2}"\nscopes = ["erase"]\n'
    )
    err = _error(text)
    assert err.line == len(text.splitlines()) - 2  # the second name = "web"
    assert "duplicate principal name 'web'" in str(err)


def test_duplicate_token_names_the_second_one():
    text = BASE + (
        f'\n[[principals]]\nname = "a"\ntoken_sha256 = "{HASH}"\nscopes = ["erase"]\n'
        f'\n[[principals]]\nname = "b"\ntoken_sha256 = "{HASH}"\nscopes = ["erase"]\n'
    )
    err = _error(text)
    assert err.line == len(text.splitlines()) - 1
    assert "same token" in str(err) and HASH not in str(err)


@pytest.mark.parametrize(
    ("old", "new", "needle", "message"),
    [
        ('location = "canadacentral"', 'location = "eastus"', "eastus", "not in Canada or Japan"),
        ('location = "tyo1"', 'location = "sin1"', "sin1", "not in Canada or Japan"),
        ('country = "CA"', 'country = "US"', '"US"', "country 'US' is not allowed"),
        ('location = "canadacentral"', 'location = "japaneast"', "japaneast", "is in JP, not CA"),
        ('provider = "azure"', 'provider = "aws"', "aws", "unknown provider"),
        (
            'allowed_countries = ["CA", "JP"]',
            'allowed_countries = ["CA", "JP", "US"]',
            "allowed_countries",
            "outside Canada and Japan",
        ),
    ],
)
def test_region_outside_canada_and_japan_fails_at_its_line(old, new, needle, message):
    text = BASE.replace(old, new, 1)
    err = _error(text)
    assert err.line == _line_of(text, needle)
    assert message in str(err)


def test_narrowed_country_list_rejects_the_other_region():
    text = BASE.replace('allowed_countries = ["CA", "JP"]', 'allowed_countries = ["CA"]')
    err = _error(text)
    assert err.line == _line_of(text, 'country = "JP"')


@pytest.mark.parametrize(
    ("old", "new", "needle", "message"),
    [
        ("retention = 90", "retention = 0", "retention = 0", "retention must be"),
        ("retention = 90", 'retention = "forever"', "forever", "retention must be"),
        ("retention = 90", "retention = 90\ncolour = 1", "colour", "unknown key 'colour'"),
        ("retention = 90", "retention = 90\nsin_allowed = 1", "sin_allowed", "sin_allowed must be"),
        ("retention = 90", 'retention = 90\nunscannable = "maybe"', "unscannable", "unscannable must be 'refuse' or"),
        ("retention = 90", "retention = 90\nunscannable = false", "unscannable", "unscannable must be"),
        (
            "retention = 90",
            'retention = 90\nsin_allowed = true\nunscannable = "refuse"',
            "unscannable",
            "unscannable has no effect where sin_allowed = true",
        ),
        ("retention = 90", "retention = 90\nkeep_versions_days = -1", "keep_versions_days", "whole number of days"),
        ("retention = 90", "retention = 90\nkeep_versions_days = true", "keep_versions_days", "whole number"),
        (
            "retention = 90",
            "retention = 90\nkeep_versions_days = 91",
            "keep_versions_days",
            "longer than its retention",
        ),
        ('purposes = ["analytics"]', 'purposes = ["Analytics!"]', "Analytics!", "bad purpose"),
        ('purposes = ["analytics"]', "purposes = []", "purposes = []", "non-empty purposes"),
        ("version = 1", "version = 2", "version = 2", "version must be 1"),
    ],
)
def test_class_errors_name_their_line(old, new, needle, message):
    text = BASE.replace(old, new, 1)
    err = _error(text)
    assert err.line == _line_of(text, needle)
    assert message in str(err)


def test_toml_syntax_error_names_its_line():
    text = BASE + "\n[classes.broken\n"
    err = _error(text)
    assert err.line == _line_of(text, "[classes.broken")
    assert "not valid TOML" in str(err)


def test_duplicate_toml_table_names_its_line():
    text = BASE + '\n[classes.account]\npurposes = ["contact"]\nretention = 1\n'
    err = _error(text)
    assert err.line == len(BASE.splitlines()) + 2


def test_unknown_top_level_table_names_its_line():
    text = BASE + "\n[extras]\nx = 1\n"
    err = _error(text)
    assert err.line == _line_of(text, "[extras]")


def test_load_policy_names_the_file(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(BASE.replace("retention = 90", "retention = -1"))
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert str(info.value).startswith(f"{path}:{_line_of(path.read_text(), 'retention = -1')}:")


def test_check_region_directly():
    check_region_rule("local", "anywhere", "JP")
    with pytest.raises(ValueError):
        check_region_rule("local", "anywhere", "DE")


# ----- authorize --------------------------------------------------------------


@pytest.fixture
def policy() -> Policy:
    text = BASE + (
        f'\n[[principals]]\nname = "web"\ntoken_sha256 = "{HASH}"\n'
        'scopes = ["write:account", "read:account:service", "meta:visit", "delete:visit", "export"]\n'
    )
    return parse_policy(text)


@pytest.fixture
def web(policy) -> Principal:
    return policy.principals[0]


@pytest.mark.parametrize(
    ("action", "cls", "purpose", "allowed", "reason"),
    [
        ("write", "account", None, True, "allowed by scope write:account"),
        ("read", "account", "service", True, "allowed by scope read:account:service"),
        ("meta", "visit", None, True, "allowed by scope meta:visit"),
        ("delete", "visit", None, True, "allowed by scope delete:visit"),
        ("export", None, None, True, "allowed by scope export"),
        ("read", "account", "contact", False, "principal 'web' lacks scope read:account:contact"),
        (
            "read",
            "account",
            "analytics",
            False,
            "purpose 'analytics' may not decrypt class 'account' (allowed: contact, service)",
        ),
        ("read", "account", None, False, "read needs a purpose"),
        ("read", "nope", "service", False, "unknown data class 'nope'"),
        ("write", None, None, False, "write needs a data class"),
        ("write", "visit", None, False, "principal 'web' lacks scope write:visit"),
        ("meta", "account", None, False, "principal 'web' lacks scope meta:account"),
        ("erase", None, None, False, "principal 'web' lacks scope erase"),
        ("admin", None, None, False, "principal 'web' lacks scope admin"),
        ("fly", None, None, False, "unknown action 'fly'"),
    ],
)
def test_authorize(policy, web, action, cls, purpose, allowed, reason):
    decision = policy.authorize(web, action, cls, purpose)
    assert (decision.allowed, decision.reason) == (allowed, reason)
    assert bool(decision) is allowed


def test_authorize_without_principal(policy):
    assert policy.authorize(None, Verb.READ, "account", "service").reason == "not authenticated"


def test_admin_grants_no_reads(policy):
    admin = Principal("ops", HASH2, frozenset({"admin"}))
    assert policy.authorize(admin, "admin").allowed
    assert not policy.authorize(admin, "read", "account", "service").allowed


# ----- tokens -----------------------------------------------------------------


def test_generate_and_authenticate(policy):
    token, digest = generate_token()
    assert token.startswith("rpl_") and len(token) >= 40
    assert digest == token_hash(token) and token not in digest
    dev = Principal("dev", digest, frozenset({"admin"}))
    p2 = policy.with_principal(dev)
    assert p2.authenticate(token) is dev
    assert policy.authenticate(token) is None  # the original is unchanged
    assert p2.authenticate(token + "x") is None
    assert p2.authenticate("") is None
    assert "token_sha256" not in repr(dev)


def test_with_principal_validates(policy, web):
    with pytest.raises(PolicyError, match="duplicate principal name"):
        policy.with_principal(Principal("web", HASH2, frozenset({"erase"})))
    with pytest.raises(PolicyError, match="same token"):
        policy.with_principal(Principal("other", HASH, frozenset({"erase"})))
    with pytest.raises(PolicyError, match="unknown class"):
        policy.with_principal(Principal("other", HASH2, frozenset({"write:billing"})))


def test_unscannable_accept_is_read():
    text = BASE.replace("retention = 90", 'retention = 90\nunscannable = "accept"', 1)
    classes = parse_policy(text, "policy.toml").classes
    assert [dc.unscannable for dc in classes.values()].count("accept") == 1
