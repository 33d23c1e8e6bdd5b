"""The production deployment files under ``deploy/`` are valid and say what they must.

- ``deploy/k8s/``: a base and one overlay per site (``overlays/ca``,
  ``overlays/jp``) of one cluster. Every manifest, and every object each
  overlay deploys, validates against the real Kubernetes JSON schemas (the
  ``kubernetes-validate`` package ships them, so this runs offline), in strict
  mode so a misspelled field fails. The overlays are built by a small reader
  of their kustomizations (``tests/support/kustomize.py``: every file they
  name exists, every patch applies to one object of the base), checked
  against ``kubectl kustomize`` where it is installed. Then what the cluster
  needs: several nodes rolled one at a time, a disruption budget, spread over
  machines and zones, readiness on /readyz, a node id per pod that the config
  accepts and no two pods share, each node's audit log on a volume of its
  own, no keyring volume, the sites differing only in what makes a site, a
  locked-down securityContext, an Indexed-Job CronJob whose partitions agree,
  a NetworkPolicy with both policy types, no Secret values, and a ConfigMap
  that is an exact copy of ``deploy/replicator-cluster.toml`` and
  ``deploy/policy.toml``.
- ``deploy/systemd/``: ``systemd-analyze verify`` (warnings count as
  failures, since unknown keys are only warnings; templates as an instance
  named like a node id), the offline security exposure score, and the
  hardening keys read from the files themselves.
- ``deploy/container/Containerfile``: multi-stage, a numeric non-root USER,
  HEALTHCHECK on /healthz, no secrets.
- ``deploy/replicator.toml`` (one node) and ``deploy/replicator-cluster.toml``:
  load with :func:`replicator.config.load_config` when their credentials
  exist, and refuse to start clearly when they do not.

The paths, user id and port that several files must agree on are checked
across files, so the pieces fit together and not only each on its own.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path, PurePosixPath
from urllib.parse import parse_qs, urlsplit

import click
import kubernetes_validate
import pytest
import yaml

from keys import receipts
from replicator.config import AzureRegionConfig, ConfigError, SwiftRegionConfig, load_config
from tests.support import kustomize

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
BASE = K8S / "base"
OVERLAYS = K8S / "overlays"
SITES = ("ca", "jp")  # one overlay per site, named after its near region
SYSTEMD = DEPLOY / "systemd"
CONTAINERFILE = DEPLOY / "container" / "Containerfile"
PROD_CONFIG = DEPLOY / "replicator.toml"  # one node (systemd replicator.service, the container)
CLUSTER_CONFIG = DEPLOY / "replicator-cluster.toml"  # a cluster (Kubernetes, systemd replicator@.service)
POLICY = DEPLOY / "policy.toml"

UID = 10001  # the image's user; runAsUser in Kubernetes
PORT = 8700
STATE_DIR = "/var/lib/replicator"
CONFIG_DIR = "/etc/replicator"
SECRET_NAME = "replicator-credentials"
INSTALLED_BINARY = "/opt/replicator/bin/replicator"  # the venv the image and the systemd units use

# The secret environment the deploy files pass by reference.
SECRET_ENV = {"AZURE_STORAGE_CONNECTION_STRING", "REPLICATOR_KEYRING_PASSPHRASE"}
CLUSTER_SECRET_ENV = SECRET_ENV | {"REPLICATOR_JOURNAL_PASSWORD"}  # + PostgreSQL (journal and key store)

# Options of `replicator reconcile` as announced in issue 7 (the command is
# being written elsewhere); once it exists, the test reads the real ones.
RECONCILE_OPTIONS = {
    "--config",
    "--dry-run",
    "--max-delete",
    "--concurrency",
    "--resume",
    "--prefix",
    "--partition",
    "--report",
}

# Kubernetes versions the manifests must be valid for: the oldest with
# CronJob.timeZone GA and Job.backoffLimitPerIndex on by default (1.29), one
# in the middle, and the newest whose schemas the package ships.
K8S_VERSIONS = ["1.29", "1.33", kubernetes_validate.utils.latest_version()]

# Cluster-internal and loopback ranges: no egress rule for a region may point there.
INTERNAL = [
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "fc00::/7",
    "fe80::/10",
    "::1/128",
]

MANIFESTS = sorted(p for p in BASE.glob("*.yaml") if p.name not in ("kustomization.yaml", "secret-reference.yaml"))


# -- helpers ------------------------------------------------------------------------


def _docs(path: Path) -> list[dict]:
    return kustomize.load_docs(path)


def _objects(site: str | None = None) -> list[dict]:
    """What a site deploys (its overlay, built as kustomize builds it), or the base's objects as written."""
    if site is None:
        return [doc for path in MANIFESTS for doc in _docs(path)]
    return kustomize.build(OVERLAYS / site)


def _get(objects: list[dict], kind: str, name: str | None = None) -> dict:
    found = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, f"{len(found)} {kind} objects named {name or 'anything'}"
    return found[0]


def _pod_specs(site: str | None = None) -> dict[str, dict]:
    objs = _objects(site)
    return {
        "StatefulSet": _get(objs, "StatefulSet")["spec"]["template"]["spec"],
        "CronJob": _get(objs, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"],
    }


def _server_labels(objs: list[dict]) -> dict[str, str]:
    return _get(objs, "StatefulSet")["spec"]["template"]["metadata"]["labels"]


def _selects(selector: dict, labels: dict) -> bool:
    assert set(selector) == {"matchLabels"}, "plain matchLabels selectors only"
    return selector["matchLabels"].items() <= labels.items()


def _journal_path(url: str, monkeypatch: pytest.MonkeyPatch) -> PurePosixPath:
    """The file the service would open for the journal ``url`` (replicator.journal.open_journal's reading)."""
    from replicator.journal import open_journal

    monkeypatch.setattr("replicator.journal.sqlite.SqliteJournal", lambda path, **_: path)
    return PurePosixPath(open_journal(url))


def _option_values(args: list[str], option: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args[:-1]) if a == option]


def _command_options(name: str) -> set[str]:
    """The real options of `replicator <name>` if the command exists, else the announced ones."""
    from replicator.cli import main

    command = main.commands.get(name)
    if command is None:
        assert name == "reconcile", f"replicator has no {name!r} command"
        return RECONCILE_OPTIONS
    return {opt for param in command.params for opt in getattr(param, "opts", []) if opt.startswith("--")}


def _check_cli(args: list[str], where: str) -> None:
    """``args`` (after the program name) is a replicator command the real CLI accepts, for production."""
    from replicator.cli import main

    assert args and args[0] in ("serve", "reconcile", "health"), f"{where}: unexpected command {args[:1]}"
    known = _command_options(args[0]) | {"--help"}
    used = {a.split("=", 1)[0] for a in args[1:] if a.startswith("--")}
    assert used <= known, f"{where}: `replicator {args[0]}` has no option {sorted(used - known)}"
    command = main.commands.get(args[0])
    if command is not None:  # parse (types, ranges) without running it
        try:
            command.make_context(args[0], list(args[1:]))
        except click.ClickException as e:
            pytest.fail(f"{where}: `replicator {shlex.join(args)}`: {e.format_message()}")
    assert _option_values(args, "--config") == [f"{CONFIG_DIR}/replicator.toml"], where
    assert "--dry-run" not in args, f"{where}: the production command must not be a dry run"


def _k8s_expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion of command and args: $$ is $, unknown references stay as written."""
    return re.sub(
        r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
        lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)),
        text,
    )


def _container_argv(container: dict, env: dict[str, str], tmp_path: Path) -> list[str]:
    """The replicator argv a container runs, with ``env`` as its environment: a shell wrapper is run
    for real with a stand-in ``replicator`` on PATH that prints the arguments it was given."""
    command = [_k8s_expand(a, env) for a in container.get("command", [])]
    args = [_k8s_expand(a, env) for a in container.get("args", [])]
    if not command:  # the image's ENTRYPOINT ["replicator"]
        return args
    assert command[:2] == ["/bin/sh", "-c"] and len(args) == 1, "replicator directly, or one sh -c script"
    stub = tmp_path / "bin" / "replicator"
    if not stub.exists():
        stub.parent.mkdir()
        stub.write_text(f"#!{sys.executable}\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\n")
        stub.chmod(0o755)
    result = subprocess.run(
        ["/bin/sh", "-c", args[0]],
        capture_output=True,
        check=False,
        text=True,
        timeout=30,
        env={"PATH": f"{stub.parent}:/usr/bin:/bin", **env},
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _pod_env(container: dict, pod_name: str) -> dict[str, str]:
    """The plain environment Kubernetes gives ``container`` in the pod ``pod_name``: values with $(VAR)
    expanded from the variables listed before them (its rule), metadata.name from the downward API."""
    env: dict[str, str] = {}
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = _k8s_expand(e["value"], env)
        elif e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name":
            env[e["name"]] = pod_name
    return env


# -- Kubernetes: schemas and the overlays ------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_matches_kubernetes_schema(path: Path, version: str):
    docs = _docs(path)
    assert docs, f"{path.name} holds no object"
    for doc in docs:
        _validate(doc, version, path.name)


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("site", SITES)
def test_each_site_deploys_valid_objects(site: str, version: str):
    """Every object of an overlay, patched as kustomize patches it, is still valid (a patch can break one)."""
    for doc in _objects(site):
        _validate(doc, version, f"overlays/{site}")


def _validate(doc: dict, version: str, where: str) -> None:
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        path = ".".join(str(p) for p in e.path)
        pytest.fail(
            f"{where}: {doc['kind']}/{doc['metadata']['name']} is not valid for Kubernetes {version}: {path}: {e.message}"
        )


def test_schema_validation_is_strict():
    """The validator really rejects a misspelled field and a wrong type (so the tests above can fail)."""
    nodes = _get(_objects("ca"), "StatefulSet")
    kubernetes_validate.validate(nodes, K8S_VERSIONS[-1], strict=True)
    typo = copy.deepcopy(nodes)
    container = typo["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, K8S_VERSIONS[-1], strict=True)
    wrong_type = copy.deepcopy(nodes)
    wrong_type["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong_type, K8S_VERSIONS[-1], strict=True)


def test_kustomization_lists_every_manifest_and_none_names_a_namespace():
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == [p.name for p in MANIFESTS]
    assert "namespace" not in kustomization
    for path in MANIFESTS:
        for doc in _docs(path):
            assert "namespace" not in doc["metadata"], f"{path.name}: manifests are namespace-agnostic"
    assert {i["name"] for i in kustomization["images"]} == {
        c["image"].split(":")[0] for spec in _pod_specs().values() for c in spec["containers"]
    }
    assert sorted(p.name for p in OVERLAYS.iterdir()) == sorted(SITES)
    assert not list(K8S.glob("*.yaml")), "deploy/k8s holds base/ and overlays/ only"


@pytest.mark.parametrize("site", SITES)
def test_each_overlay_builds_on_the_base_and_patches_only_what_exists(site: str):
    """Its files exist, every patch applies to exactly one object of the base (the reader refuses
    anything else), and a site deploys the base's objects: no more, no fewer, none renamed."""
    root = OVERLAYS / site
    kustomization = yaml.safe_load((root / "kustomization.yaml").read_text())
    assert kustomization["resources"] == ["../../base"]
    assert {p.name for p in root.iterdir()} == {"kustomization.yaml", *(p["path"] for p in kustomization["patches"])}
    names = lambda objs: sorted((o["kind"], o["metadata"]["name"]) for o in objs)  # noqa: E731
    assert names(_objects(site)) == names(_objects())
    for path in kustomization["patches"]:
        for patch in _docs(root / path["path"]):
            assert "namespace" not in patch["metadata"] and set(patch["metadata"]) == {"name"}, path


@pytest.mark.parametrize("site", SITES)
def test_overlay_reading_agrees_with_kubectl_kustomize(site: str):
    """The reader the other tests use (tests/support/kustomize.py) builds what kustomize itself builds."""
    kubectl = shutil.which("kubectl")
    assert kubectl is not None, "kubectl is missing: this check needs `kubectl kustomize` (the machine image has it)"
    result = subprocess.run(
        [kubectl, "kustomize", str(OVERLAYS / site)], capture_output=True, check=False, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    built = {(o["kind"], o["metadata"]["name"]): o for o in yaml.safe_load_all(result.stdout) if o}
    ours = {(o["kind"], o["metadata"]["name"]): o for o in _objects(site)}
    assert built.keys() == ours.keys()
    for key, obj in ours.items():
        assert obj == built[key], f"overlays/{site}: {key} differs from `kubectl kustomize`"


def test_the_two_sites_differ_only_in_what_makes_a_site():
    """One cluster: the same config (so the same PostgreSQL, regions and KEK), Secret, images and
    policies in both; only the node-id prefix, the read preference, the site label, the region
    the pods may run in and which site runs the nightly reconcile differ."""
    ca, jp = (copy.deepcopy({(o["kind"], o["metadata"]["name"]): o for o in _objects(s)}) for s in SITES)
    for site, objs in (("ca", ca), ("jp", jp)):
        pod = objs[("StatefulSet", "replicator")]["spec"]["template"]
        env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
        assert env.pop("NODE_SITE")["value"] == site
        assert env.pop("REPLICATOR_READ_PREFERENCE")["value"] == site
        pod["spec"]["containers"][0]["env"] = sorted(env.values(), key=lambda e: e["name"])
        assert pod["metadata"]["labels"].pop("app.kubernetes.io/instance") == f"replicator-{site}"
        (term,) = pod["spec"].pop("affinity")["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
            "nodeSelectorTerms"
        ]
        assert [e["key"] for e in term["matchExpressions"]] == ["topology.kubernetes.io/region"]
        objs[("CronJob", "replicator-reconcile")]["spec"].pop("suspend")
    assert ca == jp
    assert _get(_objects("ca"), "CronJob")["spec"]["suspend"] is False, "Canada runs the nightly reconcile"
    assert _get(_objects("jp"), "CronJob")["spec"]["suspend"] is True, "Japan's waits, suspended"


# -- Kubernetes: what the design requires -----------------------------------------------


@pytest.mark.parametrize("site", SITES)
@pytest.mark.parametrize("workload", ["StatefulSet", "CronJob"])
def test_pods_are_locked_down(workload: str, site: str):
    spec = _pod_specs(site)[workload]
    pod = spec["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert pod["runAsUser"] == UID and pod["runAsGroup"] == UID and pod["fsGroup"] == UID
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC")
    for c in spec["containers"]:
        sc = c["securityContext"]
        assert sc["runAsNonRoot"] is True and sc.get("runAsUser", UID) == UID
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc.get("privileged", False) is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}


@pytest.mark.parametrize("workload", ["StatefulSet", "CronJob"])
def test_pods_mount_what_the_config_names(workload: str):
    """The config files and clouds.yaml where replicator.toml looks, /tmp a tmpfs; each node's audit log
    on a volume of its own; no keyring and no journal on any volume (both are in PostgreSQL)."""
    objs = _objects("ca")
    spec = _pod_specs("ca")[workload]
    volumes = {v["name"]: v for v in spec["volumes"]}
    (container,) = spec["containers"]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert volumes[mounts["/tmp"]["name"]]["emptyDir"]["medium"] == "Memory"
    assert not any("persistentVolumeClaim" in v for v in volumes.values()), "no volume shared between pods"

    config_mount = mounts[CONFIG_DIR]
    assert config_mount["readOnly"] is True
    files = {}
    for source in volumes[config_mount["name"]]["projected"]["sources"]:
        kind = "configMap" if "configMap" in source else "secret"
        for item in source[kind]["items"]:
            files[f"{CONFIG_DIR}/{item['path']}"] = (kind, source[kind]["name"], item["key"])
    config = tomllib.loads(CLUSTER_CONFIG.read_text())
    assert files[f"{CONFIG_DIR}/replicator.toml"] == ("configMap", "replicator-config", "replicator.toml")
    assert files[config["policy"]] == ("configMap", "replicator-config", "policy.toml")
    assert files[config["regions"]["jp"]["clouds_yaml"]] == ("secret", SECRET_NAME, "clouds.yaml")
    assert files[config["erasure_receipt_key"]] == ("secret", SECRET_NAME, "receipt-signing.pem")
    assert "keyring" not in config["keys"] and config["keys"]["store"].startswith("postgresql://")
    assert config["journal"].startswith("postgresql://")

    state = mounts[STATE_DIR]["name"]
    assert PurePosixPath(config["audit_log"]).is_relative_to(STATE_DIR), "the audit log is on the state volume"
    if workload == "StatefulSet":  # each node's own claim, from the template: it outlives the pod
        nodes = _get(objs, "StatefulSet")["spec"]
        assert state not in volumes
        (claim,) = (t for t in nodes["volumeClaimTemplates"] if t["metadata"]["name"] == state)
        assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
        assert nodes["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    else:  # reconcile keeps nothing: its checkpoints are in the journal, its report in its log
        assert "emptyDir" in volumes[state]


@pytest.mark.parametrize("site", SITES)
def test_nodes_are_several_rolled_one_at_a_time_and_ready_on_readyz(site: str):
    nodes = _get(_objects(site), "StatefulSet")
    spec = nodes["spec"]
    (c,) = spec["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": PORT}
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert c[probe]["httpGet"]["port"] in ("http", PORT), probe
    _check_cli(c["args"], "statefulset.yaml")
    assert _option_values(c["args"], "--host") == ["0.0.0.0"]
    assert _option_values(c["args"], "--port") in ([], [str(PORT)])
    assert spec["replicas"] >= 2, "a site keeps serving while one node is down"
    assert spec["updateStrategy"]["type"] == "RollingUpdate"
    # A StatefulSet replaces one pod at a time unless told otherwise; never more than one.
    assert spec["updateStrategy"].get("rollingUpdate", {}).get("maxUnavailable", 1) in (0, 1)
    assert spec["updateStrategy"].get("rollingUpdate", {}).get("partition", 0) == 0
    assert spec.get("minReadySeconds", 0) > 0, "the next pod waits until the new one has stayed ready"
    assert _selects(spec["selector"], _server_labels(_objects(site)))


@pytest.mark.parametrize("site", SITES)
def test_disruption_budget_keeps_a_node_of_the_site_serving(site: str):
    objs = _objects(site)
    pdb = _get(objs, "PodDisruptionBudget")["spec"]
    assert _selects(pdb["selector"], _server_labels(objs))
    reconcile = _get(objs, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    assert not _selects(pdb["selector"], reconcile), "the budget is for the server pods"
    replicas = _get(objs, "StatefulSet")["spec"]["replicas"]
    if "maxUnavailable" in pdb:
        assert pdb["maxUnavailable"] == 1 and "minAvailable" not in pdb
    else:
        assert 1 <= pdb["minAvailable"] < replicas
    assert pdb.get("unhealthyPodEvictionPolicy") == "AlwaysAllow", "a node that serves nothing never blocks a drain"


@pytest.mark.parametrize("site", SITES)
def test_nodes_spread_over_machines_and_zones(site: str):
    objs = _objects(site)
    spread = {t["topologyKey"]: t for t in _pod_specs(site)["StatefulSet"]["topologySpreadConstraints"]}
    assert set(spread) == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    for constraint in spread.values():
        assert constraint["maxSkew"] == 1
        assert _selects(constraint["labelSelector"], _server_labels(objs))
    # Two nodes of a site never share a machine; zones are preferred, so a cluster without zone labels schedules.
    assert spread["kubernetes.io/hostname"]["whenUnsatisfiable"] == "DoNotSchedule"
    assert spread["topology.kubernetes.io/zone"]["whenUnsatisfiable"] == "ScheduleAnyway"


def test_node_ids_are_unique_valid_and_follow_the_pod(cluster_config, monkeypatch):
    """Every pod of both sites gets a node id of its own that the config accepts: <site>-<pod name>,
    from the StatefulSet's stable pod names (the same pod name after a restart: the same id and the
    same audit-log volume). The whole id space up to ordinal 999 fits the pattern."""
    _set_credentials(monkeypatch)
    monkeypatch.setenv("REPLICATOR_JOURNAL_PASSWORD", "dummy")
    seen: dict[str, tuple[str, int]] = {}
    for site in SITES:
        nodes = _get(_objects(site), "StatefulSet")
        (container,) = nodes["spec"]["template"]["spec"]["containers"]
        for ordinal in sorted({*range(nodes["spec"]["replicas"]), 999}):
            pod = f"{nodes['metadata']['name']}-{ordinal}"  # how a StatefulSet names its pods
            env = _pod_env(container, pod)
            node_id = env["REPLICATOR_NODE_ID"]
            assert node_id == f"{site}-{pod}", node_id
            assert node_id not in seen, f"{node_id}: {seen.get(node_id)} and {(site, ordinal)}"
            seen[node_id] = (site, ordinal)
            monkeypatch.setenv("REPLICATOR_NODE_ID", node_id)
            monkeypatch.setenv("REPLICATOR_READ_PREFERENCE", env["REPLICATOR_READ_PREFERENCE"])
            config = load_config(cluster_config)
            assert (config.node_id, config.read_preference) == (node_id, site)
            assert _pod_env(container, pod) == env, "the same pod name, the same node id"


def test_the_base_alone_cannot_start_a_node(cluster_config, monkeypatch):
    """The base's placeholders are not a node id or a region, so a node of the base refuses to start
    (by the config's own check) instead of taking an id another site may hold."""
    _set_credentials(monkeypatch)
    monkeypatch.setenv("REPLICATOR_JOURNAL_PASSWORD", "dummy")
    (container,) = _pod_specs()["StatefulSet"]["containers"]
    env = _pod_env(container, "replicator-0")
    monkeypatch.setenv("REPLICATOR_NODE_ID", env["REPLICATOR_NODE_ID"])
    with pytest.raises(ConfigError, match="node_id"):
        load_config(cluster_config)
    monkeypatch.delenv("REPLICATOR_NODE_ID")
    monkeypatch.setenv("REPLICATOR_READ_PREFERENCE", env["REPLICATOR_READ_PREFERENCE"])
    with pytest.raises(ConfigError, match="read_preference"):
        load_config(cluster_config)


@pytest.mark.parametrize("site", SITES)
def test_cronjob_runs_partitions_as_an_indexed_job(site: str, tmp_path):
    cronjob = _get(_objects(site), "CronJob")
    assert cronjob["spec"]["schedule"] == "30 2 * * *"
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    job = cronjob["spec"]["jobTemplate"]["spec"]
    assert job["completionMode"] == "Indexed"
    n = job["completions"]
    assert isinstance(n, int) and n >= 2
    assert job["parallelism"] == n
    pod = job["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert "affinity" not in pod, "no state to share with a server pod: the partitions go anywhere"
    (c,) = pod["containers"]
    env = {e["name"]: e for e in c["env"]}
    assert (
        env["JOB_COMPLETION_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"]
        == "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    )
    # Run the pod's command for every index the Job controller hands out (0 .. n-1).
    partitions = []
    for index in range(n):
        argv = _container_argv(c, {"JOB_COMPLETION_INDEX": str(index)}, tmp_path)
        _check_cli(argv, f"cronjob-reconcile.yaml, index {index}")
        assert argv[0] == "reconcile"
        assert _option_values(argv, "--max-delete"), "the nightly run needs a --max-delete guard"
        assert "--resume" in argv
        # No --report: the report goes to standard output, the pod's log (the pod keeps no files).
        assert not _option_values(argv, "--report")
        (partition,) = _option_values(argv, "--partition")
        partitions.append(partition)
    from replicator.reconcile.partition import parse_partition

    assert sorted(parse_partition(p) for p in partitions) == [(i, n) for i in range(1, n + 1)], partitions


def test_services_reach_the_server_pods_only():
    objs = _objects("ca")
    nodes = _get(objs, "StatefulSet")
    server = _server_labels(objs)
    reconcile = _get(objs, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    api = _get(objs, "Service", "replicator")["spec"]
    assert api["type"] == "ClusterIP" and api.get("clusterIP") != "None"
    headless = _get(objs, "Service", nodes["spec"]["serviceName"])["spec"]
    assert headless["clusterIP"] == "None", "the StatefulSet's governing Service is headless"
    for svc in (api, headless):
        (port,) = svc["ports"]
        assert port["port"] == PORT and port["targetPort"] in ("http", PORT)
        assert svc["selector"].items() <= server.items()
        assert not svc["selector"].items() <= reconcile.items(), "no Service routes to reconcile pods"


def test_network_policy_allows_only_clients_in_and_what_a_node_needs_out():
    objs = _objects("ca")
    policy = _get(objs, "NetworkPolicy")["spec"]
    assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"]
    selector = policy["podSelector"]["matchLabels"]
    for labels in (
        _server_labels(objs),
        _get(objs, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"],
    ):
        assert selector.items() <= labels.items(), "the policy must cover the server and reconcile pods"

    (ingress,) = policy["ingress"]
    assert ingress["ports"] == [{"protocol": "TCP", "port": PORT}]
    assert ingress["from"], "an empty 'from' admits everyone"
    for peer in ingress["from"]:
        assert "ipBlock" not in peer
        assert peer["podSelector"]["matchLabels"], "clients are selected by label"

    dns = https = postgres = 0
    for rule in policy["egress"]:
        assert rule.get("to") and rule.get("ports"), "every egress rule names its peers and ports"
        ports = {(p["protocol"], p["port"]) for p in rule["ports"]}
        if ports <= {("UDP", 53), ("TCP", 53)}:
            dns += 1
            for peer in rule["to"]:
                assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "kube-system"}
            continue
        if ports == {("TCP", 5432)}:  # the journal and key store: primary and standby
            postgres += 1
            for peer in rule["to"]:
                assert ipaddress.ip_network(peer["ipBlock"]["cidr"]).prefixlen >= 24, "the database hosts only"
            continue
        assert ports == {("TCP", 443)}, f"egress only to DNS, PostgreSQL and HTTPS: {ports}"
        for peer in rule["to"]:
            net = ipaddress.ip_network(peer["ipBlock"]["cidr"])
            assert net.prefixlen >= 8, f"{net} is far wider than a region's endpoints"
            assert not any(net.overlaps(ipaddress.ip_network(internal)) for internal in INTERNAL), (
                f"{net}: the regions and the key service are outside the cluster"
            )
        https += 1
    assert (dns, postgres, https) == (1, 1, 3), "DNS, PostgreSQL, then one rule per region (ca, jp) and the key service"


def test_no_secret_values_in_the_manifests():
    """The Secret is referenced, never defined; the keys it must hold are documented and used."""
    reference = (BASE / "secret-reference.yaml").read_text()
    assert _docs(BASE / "secret-reference.yaml") == [], "secret-reference.yaml must stay comments only"
    for site in SITES:
        objs = _objects(site)
        assert not [o for o in objs if o["kind"] == "Secret"]
        used: set[str] = set()
        for spec in _pod_specs(site).values():
            for c in spec["containers"]:
                for e in c.get("env", []):
                    assert "value" not in e or e["name"] not in CLUSTER_SECRET_ENV, f"{e['name']} given as a literal"
                    ref = e.get("valueFrom", {}).get("secretKeyRef")
                    if ref:
                        assert ref["name"] == SECRET_NAME
                        used.add(ref["key"])
                assert not c.get("envFrom"), "name each secret variable (envFrom would import clouds.yaml too)"
            for v in spec["volumes"]:
                for source in v.get("projected", {}).get("sources", []):
                    if "secret" in source and source["secret"]["name"] == "replicator-tls":
                        assert source["secret"]["optional"] is True, "HTTPS is opt-in: the TLS Secret is optional"
                        assert re.search(r"^#\s+replicator-tls\s", reference, re.MULTILINE)
                        continue
                    if "secret" in source:
                        assert source["secret"]["name"] == SECRET_NAME
                        used |= {item["key"] for item in source["secret"]["items"]}
        assert used == CLUSTER_SECRET_ENV | {"clouds.yaml", "receipt-signing.pem"}
    for key in used:
        assert re.search(rf"^#\s+{re.escape(key)}\s", reference, re.MULTILINE), f"secret-reference.yaml: document {key}"
    for path in K8S.rglob("*.yaml"):
        text = path.read_text()
        assert not re.search(r"AccountKey=(?!…)[A-Za-z0-9+/=]{8,}", text), path.name
        assert not re.search(r"^[\s#]*password:\s*(?![\"']?<)\S", text, re.MULTILINE), f"{path.name}: a password value"
        assert not re.search(r"postgres(ql)?://[^/\s:@]+:[^@\s]+@", text), f"{path.name}: a password in a URL"


def test_configmap_is_a_copy_of_the_deploy_files():
    data = _get(_objects(), "ConfigMap")["data"]
    assert set(data) == {"replicator.toml", "policy.toml"}
    assert data["replicator.toml"] == CLUSTER_CONFIG.read_text(encoding="utf-8"), (
        "deploy/k8s/base/configmap.yaml: replicator.toml differs from deploy/replicator-cluster.toml; copy it over"
    )
    assert data["policy.toml"] == POLICY.read_text(encoding="utf-8"), (
        "deploy/k8s/base/configmap.yaml: policy.toml differs from deploy/policy.toml; copy it over"
    )


def test_documented_clouds_yaml_is_one_openstacksdk_reads(tmp_path):
    """The clouds.yaml shape shown in secret-reference.yaml gives a Keystone v3 password login for conoha-tyo1."""
    from openstack.config import loader

    lines = [line[1:] for line in (BASE / "secret-reference.yaml").read_text().splitlines() if line.startswith("#")]
    start = next(i for i, line in enumerate(lines) if line.strip() == "clouds.yaml: |")
    header_indent = len(lines[start]) - len(lines[start].lstrip())
    block = []
    for line in lines[start + 1 :]:
        if len(line) - len(line.lstrip()) <= header_indent:
            break
        block.append(line)
    path = tmp_path / "clouds.yaml"
    path.write_text("\n".join(block) + "\n")
    cloud = tomllib.loads(CLUSTER_CONFIG.read_text())["regions"]["jp"]["cloud"]
    region = loader.OpenStackConfig(config_files=[str(path)], secure_files=[], load_envvars=False).get_one(cloud=cloud)
    assert region.region_name == "tyo1"
    assert region.config["identity_api_version"] == "3"
    assert region.config["auth"]["auth_url"].endswith("/v3")


# -- systemd ------------------------------------------------------------------------


def _unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A unit file as section -> key -> values (keys may repeat; continuation lines joined)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    logical = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not logical and (not line or line[0] in "#;"):
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        line, logical = logical + line, ""
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, sep, value = line.partition("=")
        assert sep and current is not None, f"{path.name}: cannot read {raw!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def _one(unit: dict, section: str, key: str) -> str:
    values = unit[section].get(key)
    assert values and len(values) == 1, f"[{section}] {key}= must be set once, found {values}"
    return values[0]


UNITS = [
    "replicator.service",
    "replicator-reconcile.service",
    "replicator-reconcile.timer",
    "replicator-health.service",
    "replicator-health.timer",
    # A cluster's nodes: one instance per node, the instance name is the node id.
    "replicator@.service",
    "replicator-health@.service",
    "replicator-health@.timer",
]
SERVICES = [u for u in UNITS if u.endswith(".service")]
NODE = "ca-1"  # an instance name for the templates, shaped like a node id


def _instance(name: str, node: str = NODE) -> str:
    """The unit systemd loads for ``name``: itself, or for a template the instance for ``node``."""
    return name.replace("@.", f"@{node}.")


def _state_dir(name: str) -> str:
    """Where a unit keeps its state: the host's, or for a node instance that node's own directory."""
    return f"{STATE_DIR}/%i" if "@." in name else STATE_DIR


def _systemd_analyze() -> str:
    tool = shutil.which("systemd-analyze")
    assert tool, "systemd-analyze is missing: install Debian's `systemd` package (apt-get install -y systemd)"
    return tool


def _units_here(tmp_path: Path) -> Path:
    """The units as they will be installed, with the venv's binary swapped for an executable that exists here."""
    out = tmp_path / "units"
    out.mkdir()
    for name in UNITS:
        text = (SYSTEMD / name).read_text()
        (out / name).write_text(text.replace(INSTALLED_BINARY, sys.executable))
    return out


def test_every_unit_file_is_checked():
    assert sorted(p.name for p in SYSTEMD.iterdir()) == sorted(UNITS)


def test_systemd_analyze_verify(tmp_path):
    """Every unit, the templates as the instance of a node id (which loads the template, %i filled in)."""
    units = _units_here(tmp_path)
    result = subprocess.run(
        [_systemd_analyze(), "verify", *(str(units / _instance(u)) for u in UNITS)],
        capture_output=True,
        check=False,
        text=True,
        timeout=120,
    )
    # Unknown keys and bad values are warnings with exit status 0: any output is a failure.
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result.stdout + result.stderr


@pytest.mark.parametrize("name", ["replicator.service", "replicator@.service"])
def test_systemd_analyze_verify_catches_a_misspelled_key(tmp_path, name: str):
    units = _units_here(tmp_path)
    unit = units / name
    unit.write_text(unit.read_text().replace("NoNewPrivileges=", "NoNewPrivilege="))
    result = subprocess.run(
        [_systemd_analyze(), "verify", str(units / _instance(name))],
        capture_output=True,
        check=False,
        text=True,
        timeout=120,
    )
    assert "NoNewPrivilege" in result.stdout + result.stderr


@pytest.mark.parametrize("name", SERVICES)
def test_systemd_security_exposure_is_low(tmp_path, name: str):
    """`systemd-analyze security` scores 0 (locked down) to 10 (unprotected); keep it at 2.0 or below."""
    units = _units_here(tmp_path)
    result = subprocess.run(
        [_systemd_analyze(), "security", "--offline=yes", "--threshold=20", "--no-pager", str(units / _instance(name))],
        capture_output=True,
        check=False,
        text=True,
        timeout=120,
    )
    score = re.search(r"Overall exposure level for \S+: ([\d.]+)", result.stdout)
    assert score, result.stdout + result.stderr
    assert result.returncode == 0, f"{name}: exposure {score.group(1)} is over 2.0"


@pytest.mark.parametrize("name", SERVICES)
def test_service_units_are_hardened(name: str):
    unit = _unit(SYSTEMD / name)
    svc = unit["Service"]
    state = _state_dir(name)  # a node writes its own directory only, not the other nodes' on the host
    required = {
        "ProtectSystem": "strict",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
        "ReadWritePaths": state,
        "CapabilityBoundingSet": "",
        "PrivateDevices": "yes",
        "StateDirectory": state.removeprefix("/var/lib/"),
        "WorkingDirectory": state,
    }
    for key, value in required.items():
        assert _one(unit, "Service", key) == value, f"{name}: {key}={value}"
    # The secrets from the shared file; a node's own settings (port, host) from its optional one.
    node_env = [f"-{CONFIG_DIR}/node-%i.env"] if "@." in name else []
    assert svc["EnvironmentFile"] == [f"{CONFIG_DIR}/env", *node_env], name
    assert set(_one(unit, "Service", "RestrictAddressFamilies").split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert "@system-service" in svc["SystemCallFilter"]
    dynamic = svc.get("DynamicUser") == ["yes"]
    user = svc.get("User", [""])[0]
    assert dynamic or (user and user not in ("root", "0")), f"{name}: run as a dedicated user or DynamicUser"
    assert "AmbientCapabilities" not in svc or svc["AmbientCapabilities"] == [""]
    # Secrets come from the EnvironmentFile, never from the unit itself.
    for env in svc.get("Environment", []):
        for assignment in shlex.split(env):
            assert assignment.split("=", 1)[0] not in CLUSTER_SECRET_ENV, f"{name}: {assignment}"
    command = shlex.split(_one(unit, "Service", "ExecStart"))
    assert command[0] == INSTALLED_BINARY
    _check_cli(command[1:], name)


def test_units_run_the_right_commands():
    serve = shlex.split(_one(_unit(SYSTEMD / "replicator.service"), "Service", "ExecStart"))
    assert serve[1] == "serve"
    assert _one(_unit(SYSTEMD / "replicator.service"), "Install", "WantedBy") == "multi-user.target"
    reconcile_unit = _unit(SYSTEMD / "replicator-reconcile.service")
    assert _one(reconcile_unit, "Service", "Type") == "oneshot"
    reconcile = shlex.split(_one(reconcile_unit, "Service", "ExecStart"))
    assert reconcile[1] == "reconcile"
    assert _option_values(reconcile, "--max-delete"), "the nightly run needs a --max-delete guard"
    assert "Install" not in reconcile_unit, "the timer starts it; it is not enabled on its own"
    node = _unit(SYSTEMD / "replicator@.service")
    assert shlex.split(_one(node, "Service", "ExecStart"))[1] == "serve"
    assert _one(node, "Install", "WantedBy") == "multi-user.target"


def _node_env(name: str) -> dict[str, str]:
    """The variables a template unit sets itself (Environment=), %i as written."""
    return dict(a.split("=", 1) for env in _unit(SYSTEMD / name)["Service"]["Environment"] for a in shlex.split(env))


@pytest.mark.parametrize("name", ["replicator@.service", "replicator-health@.service"])
def test_node_units_give_each_node_its_id_and_its_own_audit_log(name: str, cluster_config, monkeypatch):
    """The instance name is the node id (%i as typed: %I would turn its dashes into slashes), and each
    node's audit log is in its own state directory; two nodes on one host share neither. The health
    check runs as the node it checks, so it verifies that node's log from that node's checkpoint."""
    text = (SYSTEMD / name).read_text()
    assert "%I" not in text
    env = _node_env(name)
    assert env["REPLICATOR_NODE_ID"] == "%i"
    assert env["REPLICATOR_AUDIT_LOG"] == f"{_state_dir(name)}/audit.log"
    assert env == _node_env("replicator@.service"), "the health check must see the node as the node sees itself"
    _set_credentials(monkeypatch)
    monkeypatch.setenv("REPLICATOR_JOURNAL_PASSWORD", "dummy")
    logs = set()
    for node in ("ca-1", "ca-2", "jp-replicator-10"):
        for key, value in env.items():
            if key.startswith("REPLICATOR_"):
                monkeypatch.setenv(key, value.replace("%i", node))
        config = load_config(cluster_config)
        assert config.node_id == node
        assert config.audit_log == Path(f"{STATE_DIR}/{node}/audit.log")
        logs.add(config.audit_log)
    assert len(logs) == 3


def test_health_check_runs_every_few_minutes_and_fails_only_on_crit():
    unit = _unit(SYSTEMD / "replicator-health.service")
    assert _one(unit, "Service", "Type") == "oneshot"
    command = shlex.split(_one(unit, "Service", "ExecStart"))
    assert command[1] == "health" and "--json" in command  # the report of each run lands in the journal
    # Exit 1 (WARN) counts as success, 2 (CRIT) fails the unit (and fires OnFailure=).
    assert _one(unit, "Service", "SuccessExitStatus").split() == ["1"]
    assert "Install" not in unit, "the timer starts it"
    timer = _unit(SYSTEMD / "replicator-health.timer")
    assert _one(timer, "Timer", "Unit") == "replicator-health.service"
    assert _one(timer, "Timer", "OnUnitActiveSec") == "5min" and _one(timer, "Timer", "OnBootSec")
    assert _one(timer, "Install", "WantedBy") == "timers.target"
    from replicator.health.probes import EXIT

    assert EXIT == {"OK": 0, "WARN": 1, "CRIT": 2}
    node_unit = _unit(SYSTEMD / "replicator-health@.service")
    assert shlex.split(_one(node_unit, "Service", "ExecStart"))[1:] == command[1:]
    assert _one(node_unit, "Service", "SuccessExitStatus") == "1" and "Install" not in node_unit
    node_timer = _unit(SYSTEMD / "replicator-health@.timer")
    assert _one(node_timer, "Timer", "Unit") == "replicator-health@%i.service"
    for key in ("OnUnitActiveSec", "OnBootSec"):
        assert _one(node_timer, "Timer", key) == _one(timer, "Timer", key)


def test_units_link_the_operations_guide_and_install_it():
    guide = REPO / "docs" / "operations.md"
    assert guide.is_file()
    for name in UNITS:
        for link in _unit(SYSTEMD / name)["Unit"].get("Documentation", []):
            assert link == "file:///usr/share/doc/replicator/operations.md", f"{name}: {link}"
    assert "docs/operations.md /usr/share/doc/replicator/operations.md" in (SYSTEMD / "replicator.service").read_text()


def test_documented_postgresql_urls_name_their_password_by_reference(prod_config, monkeypatch):
    """Every PostgreSQL URL the deploy files show (the one-node journal option, the cluster's journal
    and key store) is one the config accepts, with the password only in the variable it names; a
    URL that holds the password is refused."""
    documented = set()
    for path in [PROD_CONFIG, CLUSTER_CONFIG, *K8S.rglob("*.yaml"), *SYSTEMD.iterdir()]:
        documented |= set(re.findall(r"postgresql://[^\s\"'…]+", path.read_text())) - {"postgresql://"}
    cluster = tomllib.loads(CLUSTER_CONFIG.read_text())
    assert {cluster["journal"], cluster["keys"]["store"]} <= documented
    # the one-node journal option and a primary with its standby (docs/operations.md, "A PostgreSQL failover")
    assert {
        "postgresql://replicator@db.internal:5432/replicator?password_env=REPLICATOR_JOURNAL_PASSWORD",
        "postgresql://replicator@db1.internal:5432,db2.internal:5432/replicator"
        "?target_session_attrs=read-write&password_env=REPLICATOR_JOURNAL_PASSWORD",
    } <= documented, documented
    _set_credentials(monkeypatch)
    for url in sorted(documented):
        monkeypatch.delenv("REPLICATOR_JOURNAL_PASSWORD", raising=False)
        monkeypatch.setenv("REPLICATOR_JOURNAL", url)
        with pytest.raises(ConfigError, match="REPLICATOR_JOURNAL_PASSWORD .* is not set"):
            load_config(prod_config)
        monkeypatch.setenv("REPLICATOR_JOURNAL_PASSWORD", "dummy")
        assert load_config(prod_config).journal == url
    monkeypatch.setenv("REPLICATOR_JOURNAL", "postgresql://replicator:dummy@db.internal:5432/replicator")
    with pytest.raises(ConfigError, match="holds a password") as e:
        load_config(prod_config)
    assert "dummy" not in str(e.value)


def test_timer_runs_nightly_and_catches_up():
    unit = _unit(SYSTEMD / "replicator-reconcile.timer")
    assert _one(unit, "Timer", "OnCalendar") == "*-*-* 02:30:00"
    assert _one(unit, "Timer", "Persistent") == "true"
    assert re.fullmatch(r"\d+\s*(s|min|m|h)?", _one(unit, "Timer", "RandomizedDelaySec"))
    assert _one(unit, "Timer", "Unit") == "replicator-reconcile.service"
    assert _one(unit, "Install", "WantedBy") == "timers.target"
    result = subprocess.run(
        [_systemd_analyze(), "calendar", "*-*-* 02:30:00"], capture_output=True, check=False, text=True, timeout=60
    )
    assert result.returncode == 0 and "Normalized form: *-*-* 02:30:00" in result.stdout, result.stdout


# -- Containerfile ------------------------------------------------------------------


def _containerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with comments dropped and continuation lines joined."""
    out: list[tuple[str, str]] = []
    logical = ""
    for raw in CONTAINERFILE.read_text().splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not logical):
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        line, logical = logical + line, ""
        if line:
            instruction, _, args = line.partition(" ")
            out.append((instruction.upper(), " ".join(args.split())))
    assert not logical, "the Containerfile ends in a continuation"
    return out


def _stages() -> list[dict]:
    instructions = _containerfile()
    defaults = {}
    stages: list[dict] = []
    for instruction, args in instructions:
        if instruction == "ARG" and not stages:
            name, _, value = args.partition("=")
            defaults[name] = value
        elif instruction == "FROM":
            m = re.fullmatch(r"(?:--platform=\S+ )?(\S+)(?: [Aa][Ss] (\S+))?", args)
            assert m, f"FROM {args}"
            image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda v: defaults[v.group(1) or v.group(2)], m.group(1))
            stages.append({"image": image, "name": m.group(2), "instructions": []})
        else:
            assert stages or instruction == "ARG", f"{instruction} before the first FROM"
            stages[-1]["instructions"].append((instruction, args))
    return stages


def _last(stage: dict, instruction: str) -> str:
    found = [a for i, a in stage["instructions"] if i == instruction]
    assert found, f"the final stage has no {instruction}"
    return found[-1]


def test_containerfile_is_multi_stage_from_python_slim():
    stages = _stages()
    assert len(stages) >= 2
    builder, final = stages[0], stages[-1]
    assert builder["name"] == "builder"
    for stage in stages:
        assert re.fullmatch(r"python:3\.11-slim(-\w+)?(@sha256:[0-9a-f]{64})?", stage["image"]), stage["image"]
    copies = [a for i, a in final["instructions"] if i == "COPY"]
    assert any(a.startswith("--from=builder ") for a in copies), "the final stage takes the build from builder"
    runs = " ".join(a for i, a in builder["instructions"] if i == "RUN")
    assert "pip wheel" in runs and "pip install" in runs
    # No compilers or build tools in the image that runs.
    final_runs = " ".join(a for i, a in final["instructions"] if i == "RUN")
    assert "pip install" not in final_runs and "apt-get install" not in final_runs


def test_containerfile_runs_as_a_fixed_non_root_user():
    final = _stages()[-1]
    user = _last(final, "USER")
    m = re.fullmatch(r"(\d+)(?::(\d+))?", user)
    assert m, f"USER {user}: numeric, so runAsNonRoot can check it"
    assert int(m.group(1)) == UID != 0 and int(m.group(2) or UID) == UID
    # USER comes after everything that needs root.
    names = [i for i, _ in final["instructions"]]
    assert "RUN" not in names[names.index("USER") :]


def test_containerfile_serves_on_8700_with_a_healthcheck():
    final = _stages()[-1]
    assert _last(final, "EXPOSE").split() == [str(PORT)]
    health = _last(final, "HEALTHCHECK")
    assert f"http://127.0.0.1:{PORT}/healthz" in health and " CMD " in f" {health} "
    assert re.search(r"--timeout=\d+s", health) and re.search(r"--interval=\d+s", health)
    assert json.loads(_last(final, "ENTRYPOINT")) == ["replicator"]
    command = json.loads(_last(final, "CMD"))
    _check_cli(command, "Containerfile CMD")
    assert _option_values(command, "--host") == ["0.0.0.0"]
    assert STATE_DIR in json.loads(_last(final, "VOLUME"))
    assert f"PATH={PurePosixPath(INSTALLED_BINARY).parent}:" in _last(final, "ENV")


def test_containerfile_holds_no_secrets():
    instructions = _containerfile()
    secretish = re.compile(r"PASS|SECRET|TOKEN|KEY|CONNECTION_STRING|CREDENTIAL|AUTH", re.IGNORECASE)
    for instruction, args in instructions:
        if instruction in ("ARG", "ENV"):
            for name in re.findall(r"(?:^|\s)([A-Za-z_]\w*)=", args) or [args.split("=")[0]]:
                assert not secretish.search(name), f"{instruction} {name}: secrets never go in an image"
        if instruction in ("COPY", "ADD"):
            assert not re.search(r"clouds\.yaml|secure\.yaml|\benv\b|\.devstack|\bvar/|\.key\b|keyring", args), (
                f"{instruction} {args}"
            )
            if not args.startswith("--from="):
                sources = [s for s in args.split()[:-1] if not s.startswith("--")]
                for source in sources:
                    assert (REPO / source).exists(), f"{instruction} {source}: not in the repository"
    text = CONTAINERFILE.read_text()
    assert not re.search(r"AccountKey=(?!…)[A-Za-z0-9+/=]{8,}|BEGIN [A-Z ]*PRIVATE KEY", text)


def test_container_build_context_admits_what_the_containerfile_copies():
    ignore = (CONTAINERFILE.parent / "Containerfile.dockerignore").read_text().split("\n")
    rules = [r.strip() for r in ignore if r.strip() and not r.lstrip().startswith("#")]
    assert rules[0] == "*", "exclude everything, then admit what is copied"
    admitted = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    for instruction, args in _containerfile():
        if instruction == "COPY" and not args.startswith("--from="):
            for source in (s for s in args.split()[:-1] if not s.startswith("--")):
                assert source.rstrip("/") in admitted, f"COPY {source} is excluded from the build context"


# -- the production config ----------------------------------------------------------


def _installed(source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``source`` with /etc/replicator/ moved under tmp_path (policy and a dummy clouds.yaml there), and
    no REPLICATOR_* or credential variable from the test's own environment."""
    for var in list(os.environ):
        if var.startswith("REPLICATOR_") or var in CLUSTER_SECRET_ENV:
            monkeypatch.delenv(var)
    etc = tmp_path / f"etc-{source.stem}"
    etc.mkdir()
    shutil.copy(POLICY, etc / "policy.toml")
    (etc / "clouds.yaml").write_text("clouds:\n  conoha-tyo1:\n    auth:\n      auth_url: https://192.0.2.1/v3\n")
    receipts.generate(etc / "receipt-signing.pem")
    text = source.read_text()
    assert f"{CONFIG_DIR}/clouds.yaml" in text and f"{CONFIG_DIR}/policy.toml" in text
    path = etc / "replicator.toml"
    path.write_text(text.replace(f"{CONFIG_DIR}/", f"{etc}/"))
    return path


@pytest.fixture
def prod_config(tmp_path, monkeypatch):
    """deploy/replicator.toml (one node) as installed under tmp_path."""
    return _installed(PROD_CONFIG, tmp_path, monkeypatch)


@pytest.fixture
def cluster_config(tmp_path, monkeypatch):
    """deploy/replicator-cluster.toml as installed under tmp_path."""
    return _installed(CLUSTER_CONFIG, tmp_path, monkeypatch)


def _set_credentials(monkeypatch):
    monkeypatch.setenv(
        "AZURE_STORAGE_CONNECTION_STRING",
        "DefaultEndpointsProtocol=https;AccountName=dummy;AccountKey=ZHVtbXk=;EndpointSuffix=core.windows.net",
    )
    monkeypatch.setenv("REPLICATOR_KEYRING_PASSPHRASE", "dummy passphrase")


def test_production_config_loads_with_its_credentials(prod_config, monkeypatch):
    _set_credentials(monkeypatch)
    config = load_config(prod_config)
    ca, jp = config.regions["ca"], config.regions["jp"]
    assert isinstance(ca, AzureRegionConfig)
    assert (ca.location, ca.country, ca.connection_string_env) == (
        "canadacentral",
        "CA",
        "AZURE_STORAGE_CONNECTION_STRING",
    )
    assert isinstance(jp, SwiftRegionConfig)
    assert (jp.provider, jp.location, jp.country, jp.cloud) == ("conoha", "tyo1", "JP", "conoha-tyo1")
    assert jp.clouds_yaml == prod_config.parent / "clouds.yaml"
    assert config.read_preference == "ca"
    assert config.keys.passphrase_env == "REPLICATOR_KEYRING_PASSPHRASE" and config.keys.key_file is None
    assert _journal_path(config.journal, monkeypatch) == PurePosixPath(f"{STATE_DIR}/journal.sqlite3")
    assert config.audit_log == Path(f"{STATE_DIR}/audit.log")
    assert config.keys.keyring == Path(f"{STATE_DIR}/keyring.json")
    assert config.port == PORT
    assert "ZHVtbXk" not in repr(ca.secret())  # the credential is read, and redacted
    from keys import load_policy

    policy = load_policy(config.policy)  # the policy it names loads, and allows both regions
    assert {r.country for r in config.regions.values()} <= set(policy.allowed_countries)


def test_production_config_without_the_azure_credential_refuses_to_load(prod_config, monkeypatch):
    _set_credentials(monkeypatch)
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING")
    with pytest.raises(ConfigError) as e:
        load_config(prod_config)
    message = str(e.value)
    assert message.startswith(f"{prod_config}:") and "AZURE_STORAGE_CONNECTION_STRING" in message
    assert "is not set" in message


def test_production_config_without_the_passphrase_refuses_to_load(prod_config, monkeypatch):
    _set_credentials(monkeypatch)
    monkeypatch.delenv("REPLICATOR_KEYRING_PASSPHRASE")
    with pytest.raises(ConfigError, match="REPLICATOR_KEYRING_PASSPHRASE"):
        load_config(prod_config)


def test_production_config_without_clouds_yaml_refuses_to_load(prod_config, monkeypatch):
    _set_credentials(monkeypatch)
    (prod_config.parent / "clouds.yaml").unlink()
    with pytest.raises(ConfigError, match="clouds.yaml"):
        load_config(prod_config)


# -- the cluster config -------------------------------------------------------------


def _pg_hosts(url: str) -> list[str]:
    return urlsplit(url).netloc.rpartition("@")[2].split(",")


def test_cluster_config_loads_with_its_credentials(cluster_config, monkeypatch):
    """The key records and the journal in the same replicated PostgreSQL (both hosts, each its own
    schema), the KEK by reference, the audit log on the node's volume, no keyring file."""
    _set_credentials(monkeypatch)
    monkeypatch.setenv("REPLICATOR_JOURNAL_PASSWORD", "dummy")
    config = load_config(cluster_config)
    assert config.keys.keyring is None and config.keys.store is not None
    assert config.keys.passphrase_env == "REPLICATOR_KEYRING_PASSPHRASE" and config.keys.key_file is None
    from replicator.journal.pgurl import parse_url

    journal, store = parse_url(config.journal), parse_url(config.keys.store)
    assert journal.password_env == store.password_env == "REPLICATOR_JOURNAL_PASSWORD"
    assert (journal.schema, store.schema) == ("journal", "keys")
    # One database, primary and standby: a node follows a failover by itself.
    assert _pg_hosts(config.journal) == _pg_hosts(config.keys.store) and len(_pg_hosts(config.journal)) == 2
    for url in (config.journal, config.keys.store):
        assert parse_qs(urlsplit(url).query)["target_session_attrs"] == ["read-write"]
    assert config.audit_log == Path(f"{STATE_DIR}/audit.log")
    assert config.port == PORT
    text = CLUSTER_CONFIG.read_text()
    assert "barbican_secret" in text and "barbican_secret" not in tomllib.loads(text)["keys"], (
        "the Barbican KEK is shown in comments only until the config model has it"
    )


def test_cluster_config_without_the_database_password_refuses_to_load(cluster_config, monkeypatch):
    _set_credentials(monkeypatch)
    with pytest.raises(ConfigError, match="REPLICATOR_JOURNAL_PASSWORD"):
        load_config(cluster_config)


def test_cluster_and_one_node_configs_differ_only_in_their_state():
    """The same regions, policy, limits and health thresholds whichever way it runs; the cluster
    form moves the journal and the key records to PostgreSQL and keeps only the audit log local."""
    one, cluster = (tomllib.loads(p.read_text()) for p in (PROD_CONFIG, CLUSTER_CONFIG))
    differ = {"journal", "keys", "node_id"}  # node_id: each node overrides it
    assert set(one) == set(cluster)
    for key in set(one) - differ:
        assert one[key] == cluster[key], key
    assert one["keys"]["passphrase_env"] == cluster["keys"]["passphrase_env"], "the same KEK reference"


def test_the_docs_name_only_deploy_files_that_exist():
    """docs/operations.md and the README point operators at deploy files by path: each one is there."""
    for doc in (REPO / "docs" / "operations.md", REPO / "README.md"):
        for path in set(re.findall(r"\bdeploy/[\w./@*-]*[\w*]", doc.read_text())):
            assert list(REPO.glob(path)), f"{doc.name} names {path}, which does not exist"


def test_no_secret_values_in_any_deploy_file():
    """Not in a config, unit, manifest or patch (the dev stack's throw-away credentials aside): a secret
    variable is only ever shown with a placeholder value ("…" or "<…>"), and nothing looks like a key,
    a token or a password in a URL."""
    secret_names = "|".join(sorted(CLUSTER_SECRET_ENV))
    assigned = re.compile(rf"\b({secret_names})\s*[=:][ \t]*(\S.*)?$", re.MULTILINE)
    looks_secret = [
        re.compile(r"AccountKey=(?!…)[A-Za-z0-9+/=]{8,}"),
        re.compile(r"postgres(ql)?://[^/\s:@]+:[^@\s]+@"),
        re.compile(r"BEGIN [A-Z ]*PRIVATE KEY"),
        re.compile(r"\brpl_[A-Za-z0-9_-]{20,}"),
        re.compile(r"token_sha256\s*=\s*\"[0-9a-f]{64}\""),
    ]
    files = [p for p in DEPLOY.rglob("*") if p.is_file() and DEPLOY / "dev" not in p.parents]
    assert len(files) > 20
    for path in files:
        text = path.read_text(encoding="utf-8")
        for m in assigned.finditer(text):
            value = m.group(2) or ""
            assert "…" in value or "<" in value, f"{path.relative_to(REPO)}: {m.group(1)} is given a value"
        for pattern in looks_secret:
            assert not pattern.search(text), f"{path.relative_to(REPO)}: {pattern.pattern}"
