"""replicator.layout: the object path, built and parsed in one place."""

import pytest

from keys import Tagger
from replicator.layout import ObjectPath, class_prefix, customer_prefix

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
