"""FallbackClassifier: nlu_fallback below the threshold or when ambiguous."""

from __future__ import annotations

from typing import Any

import pytest

from services.nlu.fallback import (
    NLU_FALLBACK_INTENT,
    FallbackClassifier,
    is_fallback_prediction,
    undo_fallback_prediction,
)


def parse_data(*ranking: tuple[str, float]) -> dict[str, Any]:
    items = [{"name": n, "confidence": c} for n, c in ranking]
    return {
        "text": "hi",
        "intent": dict(items[0]) if items else {"name": None, "confidence": 0.0},
        "entities": [],
        "intent_ranking": items,
    }


@pytest.mark.parametrize(
    ("ranking", "threshold", "ambiguity", "falls_back"),
    [
        ([("greet", 0.9), ("bye", 0.05)], 0.3, 0.1, False),
        ([("greet", 0.29), ("bye", 0.01)], 0.3, 0.1, True),
        ([("greet", 0.3), ("bye", 0.1)], 0.3, 0.1, False),  # not below: equal passes
        ([("greet", 0.5), ("bye", 0.45)], 0.3, 0.1, True),  # ambiguous
        ([("greet", 0.55), ("bye", 0.4)], 0.3, 0.1, False),  # difference not below 0.1
        ([("greet", 0.5), ("bye", 0.45)], 0.3, None, False),  # ambiguity switched off
        ([("greet", 0.5), ("bye", 0.45)], 0.3, 0.0, False),
        ([("greet", 0.9)], 0.3, 0.1, False),  # one intent: never ambiguous
        ([("greet", 0.2)], 0.3, 0.1, True),
        ([], 0.3, 0.1, True),  # no prediction at all
        ([("greet", 0.99), ("bye", 0.01)], 1.0, 0.1, True),
        ([("greet", 0.0), ("bye", 0.0)], 0.0, 0.0, False),
    ],
)
def test_should_fallback(
    ranking: list[tuple[str, float]], threshold: float, ambiguity: float | None, falls_back: bool
) -> None:
    classifier = FallbackClassifier(threshold, ambiguity)
    data = parse_data(*ranking)
    assert classifier.should_fallback(data["intent"], data["intent_ranking"]) is falls_back
    out = classifier.apply(data)
    assert is_fallback_prediction(out) is falls_back
    if falls_back:
        assert out["intent"] == {"name": NLU_FALLBACK_INTENT, "confidence": threshold}
        assert out["intent_ranking"] == [out["intent"], *data["intent_ranking"]]
        assert out["intent"] is not out["intent_ranking"][0]
    else:
        assert out == data


def test_ambiguity_uses_the_ranking_not_the_intent() -> None:
    data = parse_data(("greet", 0.9), ("bye", 0.05))
    data["intent_ranking"][1]["confidence"] = 0.85
    assert FallbackClassifier().should_fallback(data["intent"], data["intent_ranking"])
    ranking: list[dict[str, Any]] = [
        {"name": "a", "confidence": 0.9},
        {"name": "b"},
    ]  # missing counts as 1.0
    assert FallbackClassifier().should_fallback({"confidence": 0.9}, ranking)


def test_apply_does_not_mutate() -> None:
    data = parse_data(("greet", 0.1), ("bye", 0.05))
    FallbackClassifier().apply(data)
    assert data == parse_data(("greet", 0.1), ("bye", 0.05))


def test_apply_without_a_ranking_key() -> None:
    out = FallbackClassifier(0.5).apply({"intent": {"name": "x", "confidence": 0.1}})
    assert out["intent_ranking"] == [{"name": NLU_FALLBACK_INTENT, "confidence": 0.5}]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, FallbackClassifier(0.3, 0.1)),
        ({"threshold": 0.7}, FallbackClassifier(0.7, 0.1)),
        ({"threshold": "0.6", "ambiguity_threshold": 0.2}, FallbackClassifier(0.6, 0.2)),
        ({"ambiguity_threshold": None}, FallbackClassifier(0.3, None)),
    ],
)
def test_from_options(options: dict[str, Any], expected: FallbackClassifier) -> None:
    assert FallbackClassifier.from_options(options) == expected


def test_undo_fallback_prediction() -> None:
    fallen = FallbackClassifier().apply(parse_data(("greet", 0.2), ("bye", 0.1)))
    undone = undo_fallback_prediction(fallen)
    assert undone["intent"] == {"name": "greet", "confidence": 0.2}
    assert [i["name"] for i in undone["intent_ranking"]] == ["greet", "bye"]
    alone = {"intent": {"name": NLU_FALLBACK_INTENT}, "intent_ranking": []}
    assert undo_fallback_prediction(alone) == alone
