"""Read the Spoke & Chain example bot's files for the tests beside this module.

A deliberately small reader, local to these tests: Parley's real project loader
and validator live elsewhere and are tested on their own.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

BOT = Path(__file__).resolve().parents[2] / "examples" / "bikeshop"

# `[text](entity)` or `[text]{"entity": ..., "value": ..., "role": ...}`.
ANNOTATION = re.compile(r"\[(?P<text>[^\]]+)\](?:\((?P<name>[^)]+)\)|(?P<json>\{[^}]*\}))")


@dataclass(frozen=True)
class Annotation:
    """One entity annotation inside a training or test example."""

    text: str
    entity: str
    value: str
    role: str | None = None


@dataclass
class Domain:
    """The domain/ folder of the bot, merged the way Rasa merges a domain directory."""

    intents: list[str] = field(default_factory=list)
    entities: dict[str, list[str]] = field(default_factory=dict)
    """Entity name to its roles (empty when it has none)."""
    slots: dict[str, dict[str, Any]] = field(default_factory=dict)
    responses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    actions: list[str] = field(default_factory=list)
    forms: dict[str, dict[str, Any]] = field(default_factory=dict)
    session_config: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The domain as Rasa sends it to the action server (the parts actions read)."""
        return {
            "intents": list(self.intents),
            "entities": list(self.entities),
            "slots": self.slots,
            "responses": self.responses,
            "actions": list(self.actions),
            "forms": self.forms,
            "session_config": self.session_config,
        }


def load_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path} is not a YAML mapping"
    return data


def yaml_files() -> list[Path]:
    return sorted(p for p in BOT.rglob("*") if p.suffix in (".yml", ".yaml") and p.is_file())


def _name_of(item: str | dict[str, Any]) -> str:
    """`greet` or `{greet: {use_entities: ...}}` -> `greet`."""
    if isinstance(item, str):
        return item
    assert len(item) == 1, f"expected a one-key mapping, got {item}"
    return next(iter(item))


@cache
def domain() -> Domain:
    merged = Domain()
    for path in sorted((BOT / "domain").glob("*.yml")):
        part = load_yaml(path)
        merged.intents += [_name_of(i) for i in part.get("intents", [])]
        for item in part.get("entities", []):
            name = _name_of(item)
            roles = item[name].get("roles", []) if isinstance(item, dict) else []
            merged.entities[name] = list(roles)
        for key in ("slots", "responses", "forms"):
            target: dict[str, Any] = getattr(merged, key)
            clash = target.keys() & part.get(key, {}).keys()
            assert not clash, f"{path.name} redefines {key} {sorted(clash)}"
            target.update(part.get(key, {}))
        merged.actions += part.get("actions", [])
        merged.session_config.update(part.get("session_config", {}))
    return merged


def entity_annotations(example: str) -> list[Annotation]:
    found = []
    for match in ANNOTATION.finditer(example):
        text = match["text"]
        if match["name"] is not None:
            found.append(Annotation(text, match["name"], text))
        else:
            spec = json.loads(match["json"])
            found.append(
                Annotation(text, spec["entity"], spec.get("value", text), spec.get("role"))
            )
    return found


def plain_text(example: str) -> str:
    """The example as the user would type it, annotations removed."""
    return ANNOTATION.sub(lambda m: m["text"], example).strip()


def block_items(block: str) -> list[str]:
    """The `- item` lines of an `examples: |` block."""
    items = []
    for line in block.splitlines():
        stripped = line.strip()
        if stripped:
            assert stripped.startswith("- "), f"not a list item: {line!r}"
            items.append(stripped[2:].strip())
    return items


@cache
def nlu() -> dict[str, list[dict[str, Any]]]:
    """Every `nlu:` entry of data/nlu/*.yml, grouped by kind (intent, synonym, lookup, regex)."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for path in sorted((BOT / "data" / "nlu").glob("*.yml")):
        for entry in load_yaml(path).get("nlu", []):
            kind = next(k for k in ("intent", "synonym", "lookup", "regex") if k in entry)
            grouped.setdefault(kind, []).append(entry)
    return grouped


def intent_examples() -> dict[str, list[str]]:
    examples: dict[str, list[str]] = {}
    for entry in nlu().get("intent", []):
        examples.setdefault(entry["intent"], []).extend(block_items(entry["examples"]))
    return examples


def synonyms() -> dict[str, list[str]]:
    return {e["synonym"]: block_items(e["examples"]) for e in nlu().get("synonym", [])}


def story_files() -> dict[str, list[dict[str, Any]]]:
    """File name -> its stories and rules (each a dict with `steps`)."""
    files = {}
    for path in (BOT / "data" / "stories.yml", BOT / "data" / "rules.yml"):
        data = load_yaml(path)
        files[path.name] = data.get("stories", []) + data.get("rules", [])
    test_data = load_yaml(BOT / "tests" / "test_stories.yml")
    files["tests/test_stories.yml"] = test_data.get("stories", [])
    return files
