"""The dialogue part of a model archive: the trained policy ensemble (`core/ensemble.json`) and
the fingerprint of what it was trained on, so `parley train` retrains it only when stories,
rules, domain or policies changed, and the dialogue worker loads it instead of training.

The archive's layout is described in `services/nlu/archive.py`; this module reads only its
`metadata.json` and `core/ensemble.json` (through `services/common/model_archive.py`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas.project.loader import Project
from services.common.model_archive import ArchiveError, read_members, read_metadata, resolve_model
from services.dialogue.policies.ensemble import ENSEMBLE_VERSION, PolicyEnsemble
from services.dialogue.training_data import training_trackers

__all__ = [
    "CORE_FINGERPRINT_VERSION",
    "ENSEMBLE_MEMBER",
    "TrainedCore",
    "core_fingerprint",
    "load_ensemble",
    "train_core",
]

logger = logging.getLogger(__name__)

ENSEMBLE_MEMBER = "core/ensemble.json"
# 2: memoization keeps the end-to-end texts it learned; older archives are retrained once.
CORE_FINGERPRINT_VERSION = 3


@dataclass(frozen=True)
class TrainedCore:
    """A trained ensemble and the `core` metadata of its archive."""

    ensemble: PolicyEnsemble
    fingerprint: str
    trackers: int

    @property
    def metadata(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "trackers": self.trackers,
            "policies": [p.name for p in self.ensemble.policies],
            "ensemble_version": ENSEMBLE_VERSION,
        }


def _plain(value: Any) -> Any:
    """JSON-ready data without source locations (moving a story in its file changes nothing)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _plain(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.name not in _LOCATIONS
        }
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, frozenset | set):
        return sorted((_plain(v) for v in value), key=lambda v: json.dumps(v, default=str))
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


# Where things were read from (a story's source, the domain's files): not what is trained on,
# and absolute or relative depending on how the project was named.
_LOCATIONS = frozenset({"source", "files"})


def core_fingerprint(project: Project) -> str:
    """SHA-256 over what the dialogue policies are trained on: stories and rules (their order
    and source files do not matter), the domain, and the configured policies."""

    def stories(items: list[Any]) -> list[str]:
        return sorted(json.dumps(_plain(s), sort_keys=True, default=str) for s in items)

    payload = {
        "version": CORE_FINGERPRINT_VERSION,
        "ensemble_version": ENSEMBLE_VERSION,
        "stories": stories(project.stories),
        "rules": stories(project.rules),
        "domain": _plain(project.domain),
        "policies": [[c.name, c.options] for c in project.config.policies],
    }
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def train_core(project: Project, fingerprint: str | None = None) -> TrainedCore:
    """The ensemble `config.yml` configures, trained on the project's stories and rules."""
    ensemble = PolicyEnsemble.from_config(project.config)
    trackers = training_trackers(project)
    ensemble.train(trackers, project.domain)
    return TrainedCore(ensemble, fingerprint or core_fingerprint(project), len(trackers))


def load_ensemble(model: str | Path, project: Project | None = None) -> PolicyEnsemble:
    """The trained ensemble of an archive (or of the newest archive of a models folder);
    `ArchiveError` when there is none. With `project`, a warning when the project's stories,
    rules, domain or policies changed since the archive was trained."""
    path = resolve_model(model)
    data = read_members(path, (ENSEMBLE_MEMBER,))
    if ENSEMBLE_MEMBER not in data:
        raise ArchiveError(
            f"{path}: the archive has no dialogue policies ({ENSEMBLE_MEMBER}); "
            "retrain it with `parley train`"
        )
    try:
        ensemble = PolicyEnsemble.from_json(json.loads(data[ENSEMBLE_MEMBER]))
    except (ValueError, TypeError, KeyError) as exc:
        raise ArchiveError(f"{path}: malformed {ENSEMBLE_MEMBER}: {exc}") from exc
    if project is not None:
        trained_on = (read_metadata(path).get("core") or {}).get("fingerprint")
        if trained_on != core_fingerprint(project):
            logger.warning(
                "%s was trained on other stories, rules, domain or policies than %s: "
                "retrain with `parley train`",
                path,
                project.root,
            )
    logger.info("policies loaded from %s: %s", path, [p.name for p in ensemble.policies])
    return ensemble
