"""Rasa's `FallbackClassifier`: `nlu_fallback` when the intent prediction is weak or ambiguous.

Reproduced from Rasa 3.x (`rasa/nlu/classifiers/fallback_classifier.py`):

- fall back when `intent.confidence < threshold`, or when the ranking has two or more entries
  and `ranking[0].confidence - ranking[1].confidence < ambiguity_threshold` (the first two
  entries of `intent_ranking`, a missing confidence counting as 1.0);
- then `intent` becomes `{"name": "nlu_fallback", "confidence": threshold}` and the same dict
  is inserted at the head of `intent_ranking` (Rasa "assumes that the fallback confidence is
  the same as the fallback threshold"); the original prediction stays second;
- defaults are Rasa's: threshold 0.3, ambiguity_threshold 0.1. Parley also accepts
  `ambiguity_threshold: null` to switch the ambiguity test off.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

NLU_FALLBACK_INTENT = "nlu_fallback"
DEFAULT_THRESHOLD = 0.3
DEFAULT_AMBIGUITY_THRESHOLD = 0.1


@dataclass(frozen=True, slots=True)
class FallbackClassifier:
    """The thresholds below which an NLU prediction becomes `nlu_fallback`."""

    threshold: float = DEFAULT_THRESHOLD
    ambiguity_threshold: float | None = DEFAULT_AMBIGUITY_THRESHOLD

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> FallbackClassifier:
        """From the component's options in `config.yml` (missing keys take the defaults)."""
        ambiguity = options.get("ambiguity_threshold", DEFAULT_AMBIGUITY_THRESHOLD)
        return cls(
            float(options.get("threshold", DEFAULT_THRESHOLD)),
            None if ambiguity is None else float(ambiguity),
        )

    def should_fallback(
        self, intent: Mapping[str, Any], ranking: Sequence[Mapping[str, Any]]
    ) -> bool:
        """Whether Rasa would predict `nlu_fallback` for this intent and ranking."""
        confidence = intent.get("confidence")
        if confidence is None or confidence < self.threshold:
            return True
        if self.ambiguity_threshold is None or len(ranking) < 2:
            return False
        first = ranking[0].get("confidence", 1.0)
        second = ranking[1].get("confidence", 1.0)
        return bool(first - second < self.ambiguity_threshold)

    def fallback_intent(self) -> dict[str, Any]:
        """`{"name": "nlu_fallback", "confidence": threshold}`."""
        return {"name": NLU_FALLBACK_INTENT, "confidence": self.threshold}

    def apply(self, parse_data: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of `parse_data`, with `nlu_fallback` predicted if Rasa would predict it."""
        out = copy.deepcopy(dict(parse_data))
        ranking = out.get("intent_ranking") or []
        if self.should_fallback(out.get("intent") or {}, ranking):
            out["intent"] = self.fallback_intent()
            out["intent_ranking"] = [self.fallback_intent(), *ranking]
        return out


def is_fallback_prediction(parse_data: Mapping[str, Any]) -> bool:
    """Whether the top intent of `parse_data` is `nlu_fallback`."""
    intent = parse_data.get("intent") or {}
    return bool(intent.get("name") == NLU_FALLBACK_INTENT)


def undo_fallback_prediction(parse_data: Mapping[str, Any]) -> dict[str, Any]:
    """The prediction as if there were no fallback (Rasa's `undo_fallback_prediction`)."""
    out = copy.deepcopy(dict(parse_data))
    ranking = out.get("intent_ranking") or []
    if len(ranking) < 2:
        return out
    out["intent"] = ranking[1]
    out["intent_ranking"] = ranking[1:]
    return out
