"""Rasa's intent-message syntax (`/intent@confidence{"entity": value}`), parsed without a model.

Reproduces `YAMLStoryReader.unpack_regex_message` (what Rasa 3.x's processor and
`RegexMessageHandler` run on every message) as a pure function:

- the text is stripped; it is an intent message only when it then starts with `/`;
- the grammar is Rasa's regex, `/` then the groups intent `[^{@]+`, confidence `@[0-9.]+`?,
  entities `{.+}`? and rest `.*`: the confidence comes *before* the entities, and what the
  regex leaves over (`rest`: `@0.3` written after the JSON, `@x`) is ignored with a warning;
- the intent name is stripped, so `/ greet` and `/greet {"a": 1}` work;
- confidence defaults to 1.0; above 1.0 it is clamped to 1.0 and a number that does not parse
  (`@1.2.3`) becomes 0.0, each with a warning;
- the entities are a JSON object: a list value gives one entity per item; JSON that does not
  parse, or is not an object, gives no entities and a warning (the intent still stands);
- every entity's `start`/`end` is the span of the whole JSON object in the stripped text (Rasa's
  `match.start("entities")`/`match.end("entities")`), and it has no `extractor`: Rasa's
  processor unpacks these messages before the NLU graph and passes no extractor name.

Decisions where Rasa is silent or unhelpful, each noted in `IntentMessage.warnings` or the log:

- `/` alone (or `/{...}`, `/@0.5`) does not match and is ordinary text, as in Rasa;
- an intent name that is empty after stripping (`/  @0.5`) is ordinary text (Rasa would emit
  an intent named "");
- `NaN`/`Infinity` in the JSON count as malformed, so parse data stays strict JSON;
- given `intents`, an unknown intent makes the message ordinary text, and given `entities`,
  unknown entity types are dropped, as Rasa does when it has a domain.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

PREFIX = "/"
_PATTERN = re.compile(
    r"^/(?P<intent>[^{@]+)(?P<confidence>@[0-9.]+)?(?P<entities>\{.+\})?(?P<rest>.*)"
)


@dataclass(frozen=True, slots=True)
class IntentMessage:
    """An unpacked intent message: the intent, its confidence and Rasa-shaped entity dicts."""

    intent: str
    confidence: float = 1.0
    entities: list[dict[str, Any]] = field(default_factory=list)
    text: str = ""
    warnings: tuple[str, ...] = ()


def is_intent_message(text: str) -> bool:
    """Whether `text` would be unpacked rather than sent to the model (cheap prefix test)."""
    return text.strip().startswith(PREFIX)


def parse_intent_message(
    text: str,
    *,
    intents: Collection[str] | None = None,
    entities: Collection[str] | None = None,
) -> IntentMessage | None:
    """Unpack `/intent@confidence{"entity": value}`; None when `text` is ordinary text.

    `intents`/`entities`, when given, are the known names (Rasa's domain check).
    """
    stripped = text.strip()
    if not stripped.startswith(PREFIX):
        return None
    match = _PATTERN.match(stripped)
    if match is None:
        logger.warning("Failed to parse intent and entities from %r", stripped)
        return None
    intent = match.group("intent").strip()
    if not intent:
        logger.warning("No intent name in %r; treating it as user text", stripped)
        return None
    if intents is not None and intent not in intents:
        logger.warning("Unknown intent %r in %r; treating it as user text", intent, stripped)
        return None
    warnings: list[str] = []
    confidence = _confidence(match.group("confidence"), stripped, warnings)
    found = _entities(match, entities, warnings)
    if match.group("rest"):
        warnings.append(
            f"Failed to interpret some parts of {stripped!r}: the format is "
            f"/<intent>@<confidence><JSON object of entities>. "
            f"Continuing without {match.group('rest')!r}."
        )
    return IntentMessage(intent, confidence, found, stripped, tuple(warnings))


def _confidence(raw: str | None, line: str, warnings: list[str]) -> float:
    if raw is None:
        return 1.0
    try:
        value = float(raw[1:])
    except ValueError:
        warnings.append(f"Could not read the confidence {raw!r} in {line!r}; using 0.0.")
        return 0.0
    if value > 1.0:
        warnings.append(f"The confidence {raw!r} in {line!r} is above 1.0; using 1.0.")
        return 1.0
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _entities(
    match: re.Match[str], known: Collection[str] | None, warnings: list[str]
) -> list[dict[str, Any]]:
    raw = match.group("entities")
    if raw is None:
        return []
    try:
        parsed = json.loads(raw, parse_constant=_reject_constant)
        if not isinstance(parsed, dict):
            raise ValueError(f"expected a JSON object, found {type(parsed).__name__}")
    except ValueError as exc:  # JSONDecodeError is a ValueError
        warnings.append(
            f"Failed to decode the entities in {match.string!r} as a JSON object "
            f"({exc}); continuing without entities."
        )
        return []
    if known is not None:
        unknown = sorted(set(parsed) - set(known))
        if unknown:
            warnings.append(
                f"Unknown entity types {unknown} in {match.string!r}; continuing without them."
            )
            parsed = {k: v for k, v in parsed.items() if k not in unknown}
    start, end = match.span("entities")
    out: list[dict[str, Any]] = []
    for entity, values in parsed.items():
        for value in values if isinstance(values, list) else [values]:
            out.append({"entity": entity, "value": value, "start": start, "end": end})
    return out
