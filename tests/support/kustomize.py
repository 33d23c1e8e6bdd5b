"""Build a kustomization the way ``kubectl kustomize`` does, for the few features deploy/k8s uses.

So the tests can read what an overlay deploys without a kustomize binary: ``resources``
(files, or directories with their own kustomization), ``patches`` given by ``path``
(strategic merge patches, each naming exactly one resource it applies to) and ``images``.
Anything else in a kustomization is refused rather than silently ignored. Where
``kubectl`` is installed, tests/unit/test_deploy.py checks this reading against it.

Strategic merge, as kustomize does it for these objects: maps merge key by key; the
lists Kubernetes merges by a key (containers and env by ``name``, volume mounts by
``mountPath``, …) merge item by item, the patch's items first and in its order, then
the others; any other list is replaced; ``null`` removes a key.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

KNOWN = {"apiVersion", "kind", "resources", "patches", "images"}

# Lists of the core types merged by a key (k8s.io/api's patchMergeKey), for the fields our patches touch.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "topologySpreadConstraints": "topologyKey",
}


class KustomizeError(AssertionError):
    pass


def load_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def build(root: Path) -> list[dict]:
    """The objects ``kubectl kustomize root`` prints, in resource order."""
    path = root / "kustomization.yaml"
    if not path.is_file():
        raise KustomizeError(f"{root}: no kustomization.yaml")
    k = yaml.safe_load(path.read_text(encoding="utf-8"))
    if set(k) - KNOWN:
        raise KustomizeError(f"{path}: this reader does not know {sorted(set(k) - KNOWN)}")
    objects: list[dict] = []
    for entry in k.get("resources", []):
        source = (root / entry).resolve()
        if source.is_dir():
            objects += build(source)
        elif source.is_file():
            objects += load_docs(source)
        else:
            raise KustomizeError(f"{path}: resource {entry} does not exist")
    for entry in k.get("patches", []):
        if set(entry) != {"path"}:
            raise KustomizeError(f"{path}: a patch is a file of strategic merge patches ({entry})")
        source = root / entry["path"]
        if not source.is_file():
            raise KustomizeError(f"{path}: patch {entry['path']} does not exist")
        for patch in load_docs(source):
            i = _target(objects, patch, source)
            objects[i] = merge(objects[i], patch)
    for image in k.get("images", []):
        for obj in objects:
            for container in _containers(obj):
                name, _, tag = container["image"].partition(":")
                if name == image["name"]:
                    container["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag)}"
    return objects


def _target(objects: list[dict], patch: dict, source: Path) -> int:
    key = (patch.get("apiVersion"), patch.get("kind"), patch.get("metadata", {}).get("name"))
    found = [i for i, o in enumerate(objects) if (o["apiVersion"], o["kind"], o["metadata"]["name"]) == key]
    if len(found) != 1:
        raise KustomizeError(f"{source}: patch for {key} matches {len(found)} resources of the base, not one")
    return found[0]


def merge(base: Any, patch: Any) -> Any:
    """``patch`` applied to ``base`` as a strategic merge patch (both left as they were)."""
    if not (isinstance(base, dict) and isinstance(patch, dict)):
        return copy.deepcopy(patch)
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif key in MERGE_KEYS and isinstance(value, list) and isinstance(out.get(key), list):
            out[key] = _merge_list(out[key], value, MERGE_KEYS[key])
        elif key in out:
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _merge_list(base: list[dict], patch: list[dict], key: str) -> list[dict]:
    by_key = {item[key]: item for item in base}
    patched = [merge(by_key[item[key]], item) if item[key] in by_key else copy.deepcopy(item) for item in patch]
    named = {item[key] for item in patch}
    return patched + [copy.deepcopy(item) for item in base if item[key] not in named]


def _containers(obj: dict) -> list[dict]:
    spec = obj.get("spec", {})
    pod = spec.get("template", {}).get("spec") or spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get(
        "spec", {}
    )
    return [*pod.get("initContainers", []), *pod.get("containers", [])]
