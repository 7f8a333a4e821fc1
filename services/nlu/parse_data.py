"""Rasa's parse data, assembled from the model's outputs and the project's rules.

The output is the dict Rasa's NLU returns and `UserUttered.parse_data` carries:
`{"text", "intent": {"name", "confidence"}, "entities", "intent_ranking", "message_id",
"metadata"}` (no `response_selector`: Parley has no ResponseSelector). Every number is a
Python `int`/`float`, so `json.dumps` works on it.

The steps follow Rasa 3.x's prediction graph:

1. An intent message (`/greet{"a": 1}`, see `message_syntax`) bypasses everything else, as
   Rasa's processor unpacks it before the NLU graph: its text is the stripped text, its
   ranking the one intent, its entities those written in it, and no fallback applies. Unlike
   Rasa, `message_id` and `metadata` are kept, so every parse data has the same keys.
2. The intent ranking: the top `ranking_length` (DIET's default 10) intents by probability,
   ties in model order, confidences not renormalised (DIET's default); `intent` is the first.
3. Entities: the model's, shaped like DIET's (`extractor: "DIETClassifier"`, since bots'
   custom code checks for it), then `RegexEntityExtractor`'s, then synonyms mapped over both
   (the pipeline order), then sorted by `start` (a stable sort: the model's first on a tie).
   Overlapping entities from the two extractors are all kept, as Rasa keeps them.
4. `FallbackClassifier` last.

`ParseOptions.from_project` reads which of these components `config.yml` enables; an empty
pipeline gets Rasa's default one (synonyms and a 0.3/0.1 fallback, no regex extraction).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from schemas.project.config import Config
from schemas.project.nlu import LookupTable, NluData, RegexFeature
from schemas.project.problems import Source
from services.nlu.bio import DecodedEntity
from services.nlu.extractors import RegexEntityExtractor
from services.nlu.fallback import FallbackClassifier
from services.nlu.message_syntax import IntentMessage, parse_intent_message
from services.nlu.synonyms import SynonymMapper

logger = logging.getLogger(__name__)

MODEL_EXTRACTOR = "DIETClassifier"
DEFAULT_RANKING_LENGTH = 10


@dataclass(frozen=True)
class ParseOptions:
    """The project's model-independent NLU components, as configured."""

    extractor: RegexEntityExtractor | None = None
    synonyms: SynonymMapper | None = None
    fallback: FallbackClassifier | None = None
    ranking_length: int = DEFAULT_RANKING_LENGTH
    model_extractor: str = MODEL_EXTRACTOR

    @classmethod
    def from_project(cls, nlu: NluData, config: Config) -> ParseOptions:
        """The components `config.yml` enables, built from the project's NLU data."""
        return cls.from_rules(nlu_rules(nlu, config))

    @classmethod
    def from_rules(cls, rules: Mapping[str, Any]) -> ParseOptions:
        """The components from `nlu_rules` output (what a model archive stores)."""
        components = {
            str(c["name"]).rsplit(".", 1)[-1]: {k: v for k, v in c.items() if k != "name"}
            for c in rules.get("pipeline", [])
        }
        if not components:  # Rasa's default pipeline
            components = {"EntitySynonymMapper": {}, "FallbackClassifier": {}}
        regex = components.get("RegexEntityExtractor")
        fallback = components.get("FallbackClassifier")
        ranking = components.get("DIETClassifier", {}).get("ranking_length")
        extractor = None
        if regex is not None:
            source = Source(Path("<model archive>"))
            extractor = RegexEntityExtractor(
                [RegexFeature(r["name"], tuple(r["patterns"]), source) for r in rules["regexes"]],
                [LookupTable(t["name"], tuple(t["elements"]), source) for t in rules["lookups"]],
                entities=set(rules["entities"]),
                case_sensitive=bool(regex.get("case_sensitive", False)),
                use_regexes=bool(regex.get("use_regexes", True)),
                use_lookup_tables=bool(regex.get("use_lookup_tables", True)),
                use_word_boundaries=bool(regex.get("use_word_boundaries", True)),
            )
        return cls(
            extractor=extractor,
            synonyms=(
                SynonymMapper(rules["synonyms"]) if "EntitySynonymMapper" in components else None
            ),
            fallback=None if fallback is None else FallbackClassifier.from_options(fallback),
            ranking_length=ranking if isinstance(ranking, int) else DEFAULT_RANKING_LENGTH,
        )


def nlu_rules(nlu: NluData, config: Config) -> dict[str, Any]:
    """Everything the parse needs besides the model, as JSON: the pipeline, regexes, lookup
    tables, the entities of the examples and the synonym map (stored in the model archive)."""
    return {
        "pipeline": [{"name": c.name, **c.options} for c in config.pipeline],
        "regexes": [{"name": r.name, "patterns": list(r.patterns)} for r in nlu.regexes],
        "lookups": [{"name": t.name, "elements": list(t.elements)} for t in nlu.lookups],
        "entities": sorted({a.entity for e in nlu.examples for a in e.entities}),
        "synonyms": nlu.synonym_map(),
    }


def softmax(logits: npt.ArrayLike, axis: int = -1) -> npt.NDArray[np.float64]:
    """Probabilities from logits along `axis` (numerically stable)."""
    values = np.asarray(logits, dtype=np.float64)
    shifted = np.exp(values - values.max(axis=axis, keepdims=True))
    result: npt.NDArray[np.float64] = shifted / shifted.sum(axis=axis, keepdims=True)
    return result


def intent_ranking(
    names: Sequence[str], probabilities: npt.ArrayLike, length: int = DEFAULT_RANKING_LENGTH
) -> list[dict[str, Any]]:
    """The top `length` intents (0 or less: all), highest probability first."""
    probs = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    if probs.shape[0] != len(names):
        raise ValueError(f"{probs.shape[0]} intent probabilities for {len(names)} intents")
    order = np.argsort(-probs, kind="stable")
    if length > 0:
        order = order[:length]
    return [{"name": names[i], "confidence": float(probs[i])} for i in order]


def intent_message_parse_data(
    message: IntentMessage,
    *,
    message_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Parse data for an unpacked intent message."""
    intent = {"name": message.intent, "confidence": float(message.confidence)}
    return {
        "text": message.text,
        "intent": intent,
        "entities": [dict(entity) for entity in message.entities],
        "intent_ranking": [dict(intent)],
        "message_id": message_id,
        "metadata": copy.deepcopy(dict(metadata or {})),
    }


def build_parse_data(
    text: str,
    *,
    message_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    intent_names: Sequence[str] = (),
    intent_probabilities: npt.ArrayLike | None = None,
    model_entities: Sequence[DecodedEntity] = (),
    options: ParseOptions | None = None,
    known_intents: Collection[str] | None = None,
) -> dict[str, Any]:
    """Rasa's parse data for `text` (see the module docstring for the steps).

    Check `message_syntax.is_intent_message` first to skip the model: for an intent message
    the model's outputs are ignored. `known_intents`, when given, makes `/unknown` user text.
    """
    options = options or ParseOptions()
    unpacked = parse_intent_message(text, intents=known_intents)
    if unpacked is not None:
        for warning in unpacked.warnings:
            logger.warning(warning)
        return intent_message_parse_data(unpacked, message_id=message_id, metadata=metadata)

    ranking: list[dict[str, Any]] = []
    if intent_probabilities is not None:
        ranking = intent_ranking(intent_names, intent_probabilities, options.ranking_length)
    intent = dict(ranking[0]) if ranking else {"name": None, "confidence": 0.0}

    entities = [entity.to_dict(options.model_extractor) for entity in model_entities]
    if options.extractor is not None:
        entities += options.extractor.extract(text)
    if options.synonyms is not None:
        entities = options.synonyms.apply(entities)
    entities.sort(key=lambda entity: int(entity["start"]))

    data: dict[str, Any] = {
        "text": text,
        "intent": intent,
        "entities": entities,
        "intent_ranking": ranking,
        "message_id": message_id,
        "metadata": copy.deepcopy(dict(metadata or {})),
    }
    if options.fallback is not None:
        data = options.fallback.apply(data)
    return data
