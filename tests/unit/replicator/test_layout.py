"""replicator.layout: the object path, built and parsed in one place."""

import pytest

from keys import Tagger
from replicator.layout import ObjectPath, VersionPath, class_prefix, customer_prefix, is_kept_version, parse_path

T = Tagger(bytes(range(32)))
GOLDEN = "v1/7jsye2kh2cvt2v4qqjxfzuyxsm4hyhz5/account/szqjcia4t7ix72lcof3xrz5rqotmfvfh"


def test_the_path_of_an_object_never_changes():
    # If this fails, every object in both regions becomes unfindable (the tags are keys' golden vectors).
    assert str(ObjectPath.of(T, "alice", "account", "profile.json")) == GOLDEN


def test_a_path_parses_back_into_its_parts():
    path = ObjectPath.parse(GOLDEN)
    assert path == ObjectPath("7jsye2kh2cvt2v4qqjxfzuyxsm4hyhz5", "account", "szqjcia4t7ix72lcof3xrz5rqotmfvfh")
    assert str(path) == GOLDEN
    assert GOLDEN.startswith(class_prefix(path.customer_tag, "account"))
    assert GOLDEN.startswith(customer_prefix(path.customer_tag))


@pytest.mark.parametrize("bad", ["", "v1/a/b", "v1/a/b/c/d", "v2/a/b/c", "v1//b/c", "health/probe"])
def test_a_path_we_did_not_make_is_refused(bad):
    with pytest.raises(ValueError, match="not an object path"):
        ObjectPath.parse(bad)


def test_a_kept_version_sits_right_after_its_object_and_parses_back():
    obj = ObjectPath("abc", "account", "defg")
    kept = VersionPath(obj, "0001732212345678.00000.ca-1")
    assert str(kept) == "v1/abc/account/defg/0001732212345678.00000.ca-1"
    assert parse_path(str(kept)) == kept and parse_path(str(obj)) == obj
    assert is_kept_version(str(kept)) and not is_kept_version(str(obj))
    assert str(obj) < str(kept) < "v1/abc/account/defh"  # byte order: object, its versions, the next object


@pytest.mark.parametrize("bad", ["v1/abc/account/defg/yesterday", "v2/abc/account/defg/0001732212345678.00000.ca-1"])
def test_a_kept_version_path_we_did_not_make_is_refused(bad):
    with pytest.raises(ValueError):
        VersionPath.parse(bad)
