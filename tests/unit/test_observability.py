"""deploy/observability: the alert rules pass promtool (check and unit tests), every alert is unit-tested
and links to a runbook section that exists, and the rules and dashboard name only metrics we export."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from replicator.cli.slo import write_reconcile_textfile
from replicator.observe.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
HERE = ROOT / "deploy" / "observability"
RULES, RULE_TESTS, DASHBOARD = HERE / "alerts.yml", HERE / "alerts.test.yml", HERE / "dashboard.json"
OPERATIONS = ROOT / "docs" / "operations.md"
# Exported by the expiring-tokens work (issue 17, item 5), not by this module's code: the rule is
# written against its agreed name.
ELSEWHERE = {"replicator_token_expires_timestamp_seconds"}
METRIC = re.compile(r"\breplicator_[a-z0-9_]+")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    assert exe, "promtool is missing: `make check` / `make test` install Debian's prometheus package"
    return subprocess.run([exe, *args], cwd=HERE, capture_output=True, text=True, timeout=120)


def alerts() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def exported() -> set[str]:
    """Every series name the service, ``work`` and ``reconcile --metrics-file`` can export."""
    names = set()
    for family in Metrics().registry.collect():
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}.get(family.type, [""])
        names |= {family.name + s for s in suffixes}
    return names


def textfile_names(tmp_path: Path) -> set[str]:
    path = tmp_path / "r.prom"
    write_reconcile_textfile(path, exit_code=0, started=0, counts={"copy": {"done": 1}}, kek_rotation_unfinished=False)
    return {line.split("{")[0].split()[0] for line in path.read_text().splitlines() if not line.startswith("#")}


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    return {
        re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        for heading in re.findall(r"^#{1,6} (.+)$", markdown, re.M)
    }


def test_promtool_checks_the_rules():
    result = promtool("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass():
    result = promtool("test", "rules", RULE_TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test():
    tested = {
        case["alertname"]
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")  # a test that sees it fire, not only stay quiet
    }
    assert {rule["alert"] for rule in alerts()} == tested


@pytest.mark.parametrize("rule", alerts(), ids=lambda r: r["alert"])
def test_every_alert_links_to_a_runbook_section_that_exists(rule):
    url = rule["annotations"]["runbook_url"]
    doc, _, anchor = url.partition("#")
    assert doc == "docs/operations.md" and anchor, url
    assert anchor in anchors(OPERATIONS.read_text()), f"docs/operations.md has no section #{anchor}"


def test_rules_and_dashboard_name_only_metrics_we_export(tmp_path):
    known = exported() | textfile_names(tmp_path) | ELSEWHERE
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert queries, "the dashboard has no queries"
    for where, text in [("alerts.yml", RULES.read_text())] + [("dashboard.json", q) for q in queries]:
        unknown = set(METRIC.findall(text)) - known
        assert not unknown, f"{where} names metrics nothing exports: {sorted(unknown)}"
