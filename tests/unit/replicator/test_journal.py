"""Choosing a journal by its URL. The journal contract itself is one suite for every backend:
``tests/conformance/journal_suite.py``."""

import pytest

from replicator.journal import open_journal


def test_unknown_url_scheme_is_a_clear_error():
    with pytest.raises(ValueError, match="unsupported journal URL scheme in 'mysql'"):
        open_journal("mysql://db/x")
