"""`replicator journal list|retry|drop` as an operator runs them, on SQLite and on PostgreSQL."""

import asyncio
import json
import re
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from replicator.cli import main
from replicator.embedded import ensure
from replicator.journal import open_journal
from replicator.journal.postgres import parse_url
from tests.support.pg import drop_schema, fresh_url
from tests.support.stack import STACK

PASSWORD_ENV = "REPLICATOR_TEST_JOURNAL_PASSWORD"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=STACK)])
def var(request, tmp_path, monkeypatch):
    """The embedded default; with ``postgresql`` its journal is a fresh schema, the password by reference."""
    var = tmp_path / "var"
    config, _ = ensure(var)
    if request.param == "postgresql":
        url = fresh_url()
        target = parse_url(url)
        monkeypatch.setenv(PASSWORD_ENV, target.password.get_secret_value())
        by_reference = f"{target.shown}?schema={target.schema}&password_env={PASSWORD_ENV}"
        text = config.read_text().replace('journal = "sqlite:///journal.sqlite3"', f'journal = "{by_reference}"')
        config.write_text(text)
        yield SimpleNamespace(path=var, journal_url=url)
        asyncio.run(drop_schema(url))
    else:
        yield SimpleNamespace(path=var, journal_url=f"sqlite:///{var / 'journal.sqlite3'}")


def seed(var) -> list[int]:
    """Three rows: two due copies to jp, one copy to ca that failed once and waits."""

    async def go():
        j = open_journal(var.journal_url)
        try:
            await j.add("copy", "v1/aaaa/account/n1", src="ca", dst="jp", version="v1")
            await j.add("copy", "v1/bbbb/account/n2", src="ca", dst="jp", version="v1")
            await j.add("copy", "v1/cccc/visit/n3", src="jp", dst="ca", version="v1")
            for task in await j.claim("w", limit=10):
                if task.dst == "ca":
                    await j.retry_later(task, "Unavailable: region 'ca': connection refused", 3600)
                else:
                    await j.retry_later(task, "Unavailable: region 'jp': timeout", 0)
            _, rows = await j.pending()
            return [r.id for r in rows]
        finally:
            await j.close()

    return asyncio.run(go())


def run(var, *args, input=None):
    return CliRunner().invoke(main, ["journal", *args, "--var", str(var.path)], input=input)


def listed(var, *args) -> dict:
    result = run(var, "list", "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_list_shows_attempts_next_try_and_last_error(var):
    seed(var)
    report = listed(var)
    assert report["pending"] == 3
    waiting = report["rows"][-1]
    assert (waiting["dst"], waiting["attempts"], waiting["last_error"]) == (
        "ca",
        1,
        "Unavailable: region 'ca': connection refused",
    )
    assert waiting["next_try"] - waiting["created"] >= 3599
    assert [r["dst"] for r in listed(var, "--dst", "jp")["rows"]] == ["jp", "jp"]
    assert len(listed(var, "--limit", "1")["rows"]) == 1
    table = run(var, "list")
    assert table.exit_code == 0 and "3 pending rows" in table.output and re.search(r"in (59|60)m", table.output)


def test_retry_makes_a_waiting_row_due_now(var):
    seed(var)
    waiting = listed(var)["rows"][-1]["id"]
    result = run(var, "retry", str(waiting))
    assert result.exit_code == 0 and "1 row due now" in result.output
    row = next(r for r in listed(var)["rows"] if r["id"] == waiting)
    assert row["next_try"] <= row["created"] + 60 and row["attempts"] == 1  # attempts are history: kept
    missing = run(var, "retry", str(waiting), "999999")
    assert missing.exit_code == 1 and "not pending: 999999" in missing.output
    assert run(var, "retry", "--all", "--dst", "jp").exit_code == 0
    assert run(var, "retry").exit_code == 2  # neither ids nor --all


def test_drop_asks_first_and_removes_only_what_was_chosen(var):
    ids = seed(var)
    refused = run(var, "drop", "--all", "--dst", "jp", input="n\n")
    assert refused.exit_code == 1 and "Drop 2 pending rows for jp?" in refused.output
    assert listed(var)["pending"] == 3
    agreed = run(var, "drop", "--all", "--dst", "jp", input="y\n")
    assert agreed.exit_code == 0 and "dropped 2 rows" in agreed.output
    assert [r["dst"] for r in listed(var)["rows"]] == ["ca"]
    assert run(var, "drop", str(ids[0]), "--yes").exit_code == 1  # already gone: nothing to drop
    last = listed(var)["rows"][0]["id"]
    assert run(var, "drop", str(last), "--yes").exit_code == 0 and listed(var)["pending"] == 0


def test_an_unknown_region_or_an_unreachable_journal_is_a_clear_error(var, tmp_path, monkeypatch):
    result = run(var, "list", "--dst", "xx")
    assert result.exit_code == 2 and "no region 'xx'" in result.output
    if var.journal_url.startswith("postgresql"):
        config = var.path / "replicator.toml"
        config.write_text(
            re.sub(
                r'journal = "postgresql://([^@]*)@[^/]*/',
                r'journal = "postgresql://\1@127.0.0.1:1/',
                config.read_text(),
            ).replace("?schema", "?connect_timeout=2&schema")
        )
        result = run(var, "list")
        assert result.exit_code == 2, result.output
        assert "127.0.0.1:1" in result.output and "unavailable" in result.output
        assert parse_url(var.journal_url).password.get_secret_value() not in result.output
