"""Offline schema validation of rendered manifests: Kubernetes' own schemas (bundled in
kubernetes-validate) for built-in kinds, the CRDs kept in deploy/k8s/crds for Strimzi and KEDA.

CRD schemas are made strict the way `kubectl apply --validate=strict` is: an object schema
that lists its properties (and neither preserves unknown fields nor sets
`additionalProperties`) refuses a field it does not list, so a misspelt field is an error
instead of being pruned silently by the API server.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]
import yaml

REPO = Path(__file__).resolve().parents[2]
CRDS = REPO / "deploy" / "k8s" / "crds"
KUBERNETES_VERSION = "1.32"


class NoSchema(LookupError):
    """Neither Kubernetes nor a kept CRD knows this apiVersion and kind."""


def _strict(schema: Any) -> Any:
    if isinstance(schema, dict):
        schema = {key: _strict(value) for key, value in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    return schema


@functools.cache
def crd_validators() -> dict[tuple[str, str], jsonschema.protocols.Validator]:
    """`(apiVersion, kind)` → a validator of that CRD version's openAPIV3Schema."""
    validators: dict[tuple[str, str], jsonschema.protocols.Validator] = {}
    for path in sorted(CRDS.rglob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if not version.get("served", True):
                continue
            schema = _strict(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
            # The API server checks metadata itself (ObjectMeta); the CRD leaves it open.
            schema["properties"]["metadata"] = {"type": "object"}
            validator_class = jsonschema.validators.validator_for(schema)
            validators[(f"{group}/{version['name']}", kind)] = validator_class(schema)
    return validators


def validate(resource: dict[str, Any]) -> str:
    """Validate one resource; returns which schema did (`kubernetes` or `crd`).

    Raises `kubernetes_validate.ValidationError` or `jsonschema.ValidationError` when it is
    invalid, `NoSchema` when nothing can validate it."""
    key = (resource["apiVersion"], resource["kind"])
    validator = crd_validators().get(key)
    if validator is not None:
        validator.validate(resource)
        return "crd"
    try:
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError as exc:
        raise NoSchema(f"no schema for {key}") from exc
    return "kubernetes"
