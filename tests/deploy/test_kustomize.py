"""The kustomize subset that renders deploy/k8s without a kustomize binary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.kustomize import KustomizeError, render

DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "labels": {"tier": "front"}},
    "spec": {
        "replicas": 2,
        "template": {
            "metadata": {"labels": {"tier": "front"}},
            "spec": {
                "initContainers": [{"name": "init", "image": "example.com/tools:1"}],
                "containers": [
                    {"name": "app", "image": "example.com/web:1.0"},
                    {"name": "proxy", "image": "proxy@sha256:abc"},
                ],
            },
        },
    },
}
TOPIC = {
    "apiVersion": "kafka.strimzi.io/v1",
    "kind": "KafkaTopic",
    "metadata": {"name": "parley.nlu"},
    "spec": {"partitions": 4, "config": {"retention.ms": 1}},
}
NAMESPACE = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns"}}


def write(folder: Path, kustomization: dict[str, Any], **files: list[dict[str, Any]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    for name, documents in files.items():
        (folder / f"{name}.yaml").write_text(yaml.safe_dump_all(documents))
    return folder


def base(tmp_path: Path) -> Path:
    return write(
        tmp_path / "base",
        {"resources": ["app.yaml", "ns.yaml"]},
        app=[DEPLOYMENT, TOPIC],
        ns=[NAMESPACE],
    )


def by_kind(resources: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["kind"]: r for r in resources}


def test_an_overlay_applies_namespace_labels_replicas_images_and_patches(tmp_path: Path) -> None:
    base(tmp_path)
    overlay = write(
        tmp_path / "overlay",
        {
            "resources": ["../base"],
            "namespace": "prod",
            "labels": [{"pairs": {"env": "prod"}}],
            "replicas": [{"name": "web", "count": 5}],
            "images": [
                {"name": "example.com/web", "newName": "registry/web", "newTag": "2.0"},
                {"name": "proxy", "digest": "sha256:def"},
                {"name": "example.com/tools", "newName": "mirror/tools"},
            ],
            "patches": [
                {
                    "target": {"kind": "Kafka.*", "name": r"parley\..*"},
                    "patch": "- {op: replace, path: /spec/partitions, value: 12}\n"
                    "- {op: add, path: /spec/config/retention.ms~1x, value: 7}\n"
                    "- {op: remove, path: /spec/config/retention.ms}\n",
                },
                {
                    "target": {"kind": "Deployment", "labelSelector": "tier=front"},
                    "patch": "- {op: add, path: /spec/template/spec/containers/-, "
                    "value: {name: extra, image: x:1}}",
                },
            ],
        },
    )
    resources = by_kind(render(overlay))
    web, topic, namespace = resources["Deployment"], resources["KafkaTopic"], resources["Namespace"]
    assert web["metadata"] == {
        "name": "web",
        "namespace": "prod",
        "labels": {"tier": "front", "env": "prod"},
    }
    # Labels go on metadata only, not on templates or selectors (no includeTemplates).
    assert web["spec"]["template"]["metadata"]["labels"] == {"tier": "front"}
    assert web["spec"]["replicas"] == 5
    pod = web["spec"]["template"]["spec"]
    assert [c["image"] for c in pod["containers"]] == [
        "registry/web:2.0",
        "proxy@sha256:def",
        "x:1",
    ]
    assert pod["initContainers"][0]["image"] == "mirror/tools:1"
    assert topic["spec"] == {"partitions": 12, "config": {"retention.ms/x": 7}}
    assert topic["metadata"]["namespace"] == "prod"
    assert "namespace" not in namespace["metadata"]  # cluster-scoped
    # The base on disk is untouched, and renders as it was.
    assert by_kind(render(tmp_path / "base"))["KafkaTopic"]["spec"]["partitions"] == 4


def test_yaml_anchors_do_not_share_objects(tmp_path: Path) -> None:
    folder = tmp_path / "anchors"
    folder.mkdir()
    (folder / "kustomization.yaml").write_text("resources: [d.yaml]\nlabels: [{pairs: {a: b}}]\n")
    (folder / "d.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d, labels: &l {x: y}}\n"
        "spec: {template: {metadata: {labels: *l}}}\n"
    )
    [deployment] = render(folder)
    assert deployment["metadata"]["labels"] == {"x": "y", "a": "b"}
    assert deployment["spec"]["template"]["metadata"]["labels"] == {"x": "y"}


@pytest.mark.parametrize(
    ("kustomization", "message"),
    [
        ({"resources": ["../base"], "configMapGenerator": []}, "not implemented"),
        ({"resources": ["missing.yaml"]}, "no such resource"),
        ({"resources": ["../base"], "replicas": [{"name": "nope", "count": 1}]}, "unknown"),
        (
            {"resources": ["../base"], "patches": [{"target": {"kind": "Service"}, "patch": "[]"}]},
            "matches nothing",
        ),
        (
            {
                "resources": ["../base"],
                "patches": [{"target": {"kind": "Deployment"}, "patch": "spec: {replicas: 1}"}],
            },
            "strategic-merge",
        ),
        (
            {
                "resources": ["../base"],
                "patches": [
                    {"target": {"kind": "Deployment"}, "patch": "- {op: move, from: /a, path: /b}"}
                ],
            },
            "not implemented",
        ),
        (
            {
                "resources": ["../base"],
                "patches": [
                    {
                        "target": {"kind": "Deployment"},
                        "patch": "- {op: replace, path: /nope, value: 1}",
                    }
                ],
            },
            "no such member",
        ),
        (
            {"resources": ["../base"], "labels": [{"pairs": {"a": "b"}, "includeSelectors": True}]},
            "not implemented",
        ),
    ],
)
def test_what_it_does_not_implement_is_an_error(
    tmp_path: Path, kustomization: dict[str, Any], message: str
) -> None:
    base(tmp_path)
    overlay = write(tmp_path / "overlay", kustomization)
    with pytest.raises(KustomizeError, match=message):
        render(overlay)
