"""NLU training data: examples with entity annotations, synonyms, regexes, lookup tables."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from schemas.project._read import FileReader, line_of, type_name
from schemas.project._yaml import LineDict, LineList
from schemas.project.problems import Source

# Rasa's annotation syntax: [text](entity), [text](entity:value) (legacy synonym),
# [text]{"entity": ..., "value": ..., "role": ..., "group": ...}, [text][{...}, {...}].
ANNOTATION = re.compile(
    r"\[(?P<text>[^\]]+?)\]"
    r"(?:\((?P<entity>[^:)]+?)(?::(?P<value>[^)]+))?\)"
    r"|\{(?P<dict>[^}]+?)\}"
    r"|\[(?P<list>.*?)\])"
)


@dataclass(frozen=True, slots=True)
class EntityAnnotation:
    """An entity marked in an example: its type, surface span and (synonym) value."""

    entity: str
    start: int
    end: int
    text: str
    value: str
    role: str | None = None
    group: str | None = None


@dataclass(frozen=True, slots=True)
class Example:
    """One training example: plain text, its intent, and the entities marked in it."""

    text: str
    intent: str
    source: Source
    entities: tuple[EntityAnnotation, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def retrieval_intent(self) -> str | None:
        """`faq/ask_name` → `faq`; None for an ordinary intent."""
        return self.intent.split("/", 1)[0] if "/" in self.intent else None


@dataclass(frozen=True, slots=True)
class Synonym:
    """Surface forms mapped to one canonical value."""

    value: str
    examples: tuple[str, ...]
    source: Source


@dataclass(frozen=True, slots=True)
class RegexFeature:
    """Named regular expressions (an entity name when used for extraction)."""

    name: str
    patterns: tuple[str, ...]
    source: Source


@dataclass(frozen=True, slots=True)
class LookupTable:
    """Named list of values (an entity name when used for extraction)."""

    name: str
    elements: tuple[str, ...]
    source: Source


@dataclass
class NluData:
    """All NLU training data of a project."""

    examples: list[Example] = field(default_factory=list)
    synonyms: list[Synonym] = field(default_factory=list)
    regexes: list[RegexFeature] = field(default_factory=list)
    lookups: list[LookupTable] = field(default_factory=list)

    def intents(self) -> set[str]:
        return {example.intent for example in self.examples}

    def synonym_map(self) -> dict[str, str]:
        """Lower-cased surface form → canonical value."""
        mapping: dict[str, str] = {}
        for synonym in self.synonyms:
            for text in synonym.examples:
                mapping[text.lower()] = synonym.value
        for example in self.examples:
            for ent in example.entities:
                if ent.value != ent.text:
                    mapping.setdefault(ent.text.lower(), ent.value)
        return mapping


class AnnotationError(ValueError):
    """An entity annotation that cannot be read."""


def parse_example(raw: str) -> tuple[str, list[EntityAnnotation]]:
    """Strip Rasa's entity annotations from an example; return the text and the entities."""
    entities: list[EntityAnnotation] = []
    plain: list[str] = []
    cursor = 0
    offset = 0
    for match in ANNOTATION.finditer(raw):
        plain.append(raw[cursor : match.start()])
        offset += match.start() - cursor
        surface = match.group("text")
        start, end = offset, offset + len(surface)
        for spec in _annotation_specs(match):
            entity = spec.get("entity")
            if not isinstance(entity, str) or not entity:
                raise AnnotationError(f"the annotation of {surface!r} names no entity")
            value = spec.get("value", surface)
            entities.append(
                EntityAnnotation(
                    entity=entity.strip(),
                    start=start,
                    end=end,
                    text=surface,
                    value=str(value),
                    role=_opt_str(spec.get("role")),
                    group=_opt_str(spec.get("group")),
                )
            )
        plain.append(surface)
        offset = end
        cursor = match.end()
    plain.append(raw[cursor:])
    return "".join(plain), entities


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _annotation_specs(match: re.Match[str]) -> list[dict[str, Any]]:
    if match.group("entity") is not None:
        spec: dict[str, Any] = {"entity": match.group("entity")}
        if match.group("value") is not None:
            spec["value"] = match.group("value")
        return [spec]
    body = match.group("dict")
    raw = "{" + body + "}" if body is not None else "[" + (match.group("list") or "") + "]"
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise AnnotationError(f"the annotation {raw} is not valid JSON ({exc.msg})") from exc
    specs = parsed if isinstance(parsed, list) else [parsed]
    if not all(isinstance(item, dict) for item in specs):
        raise AnnotationError(f"the annotation {raw} should be a JSON object")
    return specs


def read_nlu_section(items: LineList, reader: FileReader, data: NluData) -> None:
    """The `nlu:` list of a data file."""
    for index, item in enumerate(items):
        item_line = items.line_of(index)
        entry = reader.mapping(item, item_line, "an item of `nlu`")
        if entry is None:
            continue
        kinds = [k for k in ("intent", "synonym", "regex", "lookup") if k in entry]
        if len(kinds) != 1:
            reader.error(
                item_line,
                "an `nlu` item needs exactly one of intent, synonym, regex, "
                f"lookup (found: {', '.join(kinds) or 'none'})",
            )
            continue
        kind = kinds[0]
        name = reader.string(entry[kind], entry.line_of(kind), f"the {kind} name")
        if name is None:
            continue
        reader.unknown_keys(entry, (kind, "examples", "metadata"), f"{kind} `{name}`")
        if "examples" not in entry:
            reader.error(
                item_line,
                f"{kind} `{name}` has no `examples`",
                "add `examples: |` followed by lines starting with `- `",
            )
            continue
        lines = _example_lines(entry, reader, f"{kind} `{name}`")
        if kind == "intent":
            _add_examples(name, lines, entry, reader, data)
        elif kind == "synonym":
            data.synonyms.append(
                Synonym(name, tuple(t for t, _, _ in lines), reader.source(item_line))
            )
        elif kind == "regex":
            data.regexes.append(
                RegexFeature(name, tuple(t for t, _, _ in lines), reader.source(item_line))
            )
            for text, line, _ in lines:
                try:
                    re.compile(text)
                except re.error as exc:
                    reader.error(
                        line,
                        f"regex `{name}` does not compile: {exc}",
                        "check the pattern (Python `re` syntax)",
                    )
        else:
            data.lookups.append(
                LookupTable(name, tuple(t for t, _, _ in lines), reader.source(item_line))
            )


def _example_lines(
    entry: LineDict, reader: FileReader, what: str
) -> list[tuple[str, int | None, dict[str, Any]]]:
    """(text, line, metadata) of each example, from a `|` block or a list of `text:` items."""
    examples = entry["examples"]
    key_line = entry.line_of("examples")
    out: list[tuple[str, int | None, dict[str, Any]]] = []
    if isinstance(examples, str):
        for offset, line in enumerate(examples.split("\n")):
            stripped = line.strip()
            if not stripped:
                continue
            if not stripped.startswith("- "):
                reader.error(
                    key_line + 1 + offset,
                    f"an example of {what} does not start with `- `",
                    "write one example per line as `- text`",
                )
                continue
            out.append((stripped[2:].strip(), key_line + 1 + offset, {}))
        return out
    items = reader.sequence(examples, key_line, f"the examples of {what}")
    for index, item in enumerate(items or ()):
        item_line = line_of(items, index, key_line)
        if isinstance(item, LineDict) and isinstance(item.get("text"), str):
            out.append((item["text"].strip(), item_line, dict(item.get("metadata") or {})))
        else:
            reader.error(
                item_line, f"an example of {what} should be `- text: ...`, not {type_name(item)}"
            )
    return out


def _add_examples(
    intent: str,
    lines: list[tuple[str, int | None, dict[str, Any]]],
    entry: LineDict,
    reader: FileReader,
    data: NluData,
) -> None:
    shared = dict(entry.get("metadata") or {}) if isinstance(entry.get("metadata"), dict) else {}
    for raw, line, metadata in lines:
        try:
            text, entities = parse_example(raw)
        except AnnotationError as exc:
            reader.error(
                line,
                f"example of intent `{intent}`: {exc}",
                'write [text](entity) or [text]{"entity": "name", "value": "..."}',
            )
            continue
        data.examples.append(
            Example(text, intent, reader.source(line), tuple(entities), {**shared, **metadata})
        )
