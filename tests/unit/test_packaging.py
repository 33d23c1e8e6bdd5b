"""What the wheel ships (tests/integration/test_wheel.py installs it and runs it).

* The default policy is package data, ``replicator/data/policy.toml``, found
  with ``importlib.resources``; ``deploy/policy.toml`` (the operator's copy,
  and the ConfigMap's, tests/unit/test_deploy.py) is byte for byte the same.
* ``[tool.setuptools.package-data]`` names files that exist, among them the
  policy and a ``py.typed`` marker in each package.
"""

from __future__ import annotations

import tomllib
from importlib.resources import files
from pathlib import Path

from replicator.config import DEFAULT_POLICY, load_config
from replicator.embedded import ensure

REPO = Path(__file__).resolve().parents[2]
PACKAGED = REPO / "replicator" / "data" / "policy.toml"
OPERATOR_COPY = REPO / "deploy" / "policy.toml"


def test_deploy_policy_is_the_packaged_default_byte_for_byte():
    assert OPERATOR_COPY.read_bytes() == PACKAGED.read_bytes(), (
        "deploy/policy.toml differs from replicator/data/policy.toml (the packaged default); copy it over"
    )


def test_the_default_policy_is_found_through_the_package():
    resource = files("replicator").joinpath("data", "policy.toml")
    assert Path(str(resource)) == DEFAULT_POLICY
    assert DEFAULT_POLICY.resolve() == PACKAGED.resolve()  # here, the checkout is the installed package


def test_package_data_names_files_that_exist():
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    shipped = {str(Path(*package.split("."), name)) for package, names in package_data.items() for name in names}
    assert {
        "replicator/data/policy.toml",
        "replicator/http/openapi.yaml",
        "replicator/py.typed",
        "keys/py.typed",
        "regions/py.typed",
    } <= shipped
    for path in shipped:
        assert (REPO / path).is_file(), f"pyproject.toml ships {path}, which does not exist"


def test_the_embedded_default_runs_on_the_packaged_policy(tmp_path):
    config_path, _ = ensure(tmp_path / "var")
    assert "\npolicy" not in config_path.read_text()  # not a path into one installation
    assert load_config(config_path).policy == DEFAULT_POLICY
