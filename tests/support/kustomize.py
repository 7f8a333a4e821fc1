"""A small kustomize, for rendering deploy/k8s offline where no kustomize binary exists.

It implements only what deploy/k8s uses, in kustomize's order, and refuses anything else
(a field it does not know is an error, never silently ignored):

- `resources`: YAML files and directories holding a kustomization;
- `patches` with a `target` (group, version, kind, name, namespace: anchored regular
  expressions as in kustomize; `labelSelector`: `key=value` terms) and an inline JSON 6902
  patch (`add`, `remove`, `replace`);
- `namespace`, on namespaced resources;
- `labels` (`pairs` on `metadata.labels`; no selectors, no templates);
- `replicas` (workloads by name) and `images` (`newName`, `newTag`, `digest`).

`kubectl kustomize` renders the same objects (checked when this was written, kustomize v5.5).

    python -m tests.support.kustomize deploy/k8s/overlays/prod
"""

from __future__ import annotations

import copy
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

Resource = dict[str, Any]

KNOWN_FIELDS = {
    "apiVersion",
    "kind",
    "resources",
    "namespace",
    "labels",
    "images",
    "replicas",
    "patches",
}
CLUSTER_SCOPED = {
    "Namespace",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "PersistentVolume",
    "StorageClass",
    "PriorityClass",
}
WORKLOADS = {"Deployment", "StatefulSet", "ReplicaSet"}
POD_TEMPLATE_PATHS = (
    ("spec", "template", "spec"),
    ("spec", "jobTemplate", "spec", "template", "spec"),
)


class KustomizeError(ValueError):
    """The kustomization uses something this renderer does not implement, or is wrong."""


def render(directory: Path) -> list[Resource]:
    """The resources `kubectl kustomize directory` would print (in file order)."""
    directory = Path(directory)
    path = next(
        (directory / n for n in ("kustomization.yaml", "kustomization.yml", "Kustomization")),
        None,
    )
    if path is None or not path.is_file():
        raise KustomizeError(f"{directory}: no kustomization.yaml")
    spec = yaml.safe_load(path.read_text()) or {}
    unknown = set(spec) - KNOWN_FIELDS
    if unknown:
        raise KustomizeError(f"{path}: not implemented here: {sorted(unknown)}")
    resources: list[Resource] = []
    for entry in spec.get("resources", []):
        target = directory / entry
        if target.is_dir():
            resources.extend(render(target))
        elif target.is_file():
            # Through JSON: YAML anchors would otherwise share one object between two places.
            resources.extend(
                json.loads(json.dumps(d)) for d in yaml.safe_load_all(target.read_text()) if d
            )
        else:
            raise KustomizeError(f"{path}: no such resource {entry!r}")
    for patch in spec.get("patches", []):
        _apply_patch(resources, patch, path)
    if "namespace" in spec:
        for resource in resources:
            if resource["kind"] not in CLUSTER_SCOPED:
                resource.setdefault("metadata", {})["namespace"] = spec["namespace"]
    for label in spec.get("labels", []):
        if label.get("includeSelectors") or label.get("includeTemplates"):
            raise KustomizeError(f"{path}: labels with selectors or templates: not implemented")
        for resource in resources:
            resource.setdefault("metadata", {}).setdefault("labels", {}).update(label["pairs"])
    for replicas in spec.get("replicas", []):
        matched = [
            r
            for r in resources
            if r["kind"] in WORKLOADS and r["metadata"]["name"] == replicas["name"]
        ]
        if not matched:
            raise KustomizeError(f"{path}: replicas for unknown workload {replicas['name']!r}")
        for resource in matched:
            resource["spec"]["replicas"] = replicas["count"]
    for image in spec.get("images", []):
        for container in _containers(resources):
            _set_image(container, image)
    return resources


def _apply_patch(resources: list[Resource], patch: dict[str, Any], path: Path) -> None:
    if set(patch) - {"target", "patch"} or "target" not in patch or "patch" not in patch:
        raise KustomizeError(f"{path}: a patch needs exactly `target` and an inline `patch`")
    operations = yaml.safe_load(patch["patch"])
    if not isinstance(operations, list):
        raise KustomizeError(f"{path}: strategic-merge patches are not implemented")
    matched = [r for r in resources if _matches(r, patch["target"])]
    if not matched:
        raise KustomizeError(f"{path}: patch target {patch['target']} matches nothing")
    for resource in matched:
        for operation in operations:
            _json6902(resource, operation)


def _matches(resource: Resource, target: dict[str, str]) -> bool:
    group, _, version = resource["apiVersion"].rpartition("/")
    metadata = resource.get("metadata", {})
    fields = {
        "group": group,
        "version": version,
        "kind": resource["kind"],
        "name": metadata.get("name", ""),
        "namespace": metadata.get("namespace", ""),
    }
    for key, pattern in target.items():
        if key == "labelSelector":
            labels = metadata.get("labels", {})
            for term in pattern.split(","):
                name, sep, value = term.partition("=")
                if not sep or name.endswith("!"):
                    raise KustomizeError(f"label selector {pattern!r}: only key=value terms")
                if labels.get(name.strip()) != value.strip():
                    return False
        elif key in fields:
            if not re.fullmatch(pattern, fields[key]):
                return False
        else:
            raise KustomizeError(f"patch target field {key!r}: not implemented")
    return True


def _json6902(document: Resource, operation: dict[str, Any]) -> None:
    op = operation["op"]
    if op not in ("add", "remove", "replace"):
        raise KustomizeError(f"JSON patch op {op!r}: not implemented")
    tokens = [t.replace("~1", "/").replace("~0", "~") for t in operation["path"].split("/")[1:]]
    if not tokens:
        raise KustomizeError("JSON patch on the whole document")
    parent: Any = document
    for token in tokens[:-1]:
        parent = parent[int(token)] if isinstance(parent, list) else parent[token]
    last = tokens[-1]
    value = copy.deepcopy(operation.get("value"))
    if isinstance(parent, list):
        index = len(parent) if last == "-" else int(last)
        if op == "add":
            parent.insert(index, value)
        elif op == "remove":
            del parent[index]
        else:
            parent[index] = value
        return
    if op != "add" and last not in parent:
        raise KustomizeError(f"JSON patch {op} {operation['path']}: no such member")
    if op == "remove":
        del parent[last]
    else:
        parent[last] = value


def _containers(resources: list[Resource]) -> Iterator[dict[str, Any]]:
    for resource in resources:
        for keys in POD_TEMPLATE_PATHS:
            spec: Any = resource
            for key in keys:
                spec = spec.get(key) if isinstance(spec, dict) else None
            if isinstance(spec, dict):
                yield from spec.get("initContainers", [])
                yield from spec.get("containers", [])


def _set_image(container: dict[str, Any], image: dict[str, str]) -> None:
    reference = container.get("image", "")
    name, _, digest = reference.partition("@")
    last_colon = name.rfind(":")
    tag = ""
    if last_colon > name.rfind("/"):
        name, tag = name[:last_colon], name[last_colon + 1 :]
    if name != image["name"]:
        return
    name = image.get("newName", name)
    if "digest" in image:
        container["image"] = f"{name}@{image['digest']}"
    elif "newTag" in image:
        container["image"] = f"{name}:{image['newTag']}"
    else:
        container["image"] = name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tests.support.kustomize DIR", file=sys.stderr)
        return 2
    sys.stdout.write(yaml.safe_dump_all(render(Path(argv[0])), sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
