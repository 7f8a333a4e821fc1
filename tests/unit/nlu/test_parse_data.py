"""Parse data assembled from model outputs, the project's rules and the intent syntax."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.events import UserUttered
from schemas.project.config import Component, Config
from schemas.project.nlu import EntityAnnotation, Example, LookupTable, NluData, Synonym
from schemas.project.problems import Source
from services.nlu.bio import DecodedEntity, decode_entities, label_names
from services.nlu.extractors import RegexEntityExtractor
from services.nlu.fallback import FallbackClassifier
from services.nlu.parse_data import (
    ParseOptions,
    build_parse_data,
    intent_ranking,
    softmax,
)
from services.nlu.synonyms import SynonymMapper

SOURCE = Source(Path("data/nlu.yml"), 1)
INTENTS = [f"intent_{i}" for i in range(12)]
KEYS = ["text", "intent", "entities", "intent_ranking", "message_id", "metadata"]
NLU = NluData(
    examples=[
        Example("to NYC", "inform", SOURCE, (EntityAnnotation("city", 3, 6, "NYC", "New York"),))
    ],
    synonyms=[Synonym("Berlin", ("berlin city",), SOURCE)],
    lookups=[LookupTable("city", ("Berlin", "NYC", "berlin city"), SOURCE)],
)
OPTIONS = ParseOptions(
    extractor=RegexEntityExtractor.from_project(NLU),
    synonyms=SynonymMapper.from_nlu(NLU),
    fallback=FallbackClassifier(0.3, 0.1),
)


def probabilities(top: int, confidence: float, size: int = len(INTENTS)) -> npt.NDArray[np.float32]:
    rest = (1.0 - confidence) / (size - 1)
    probs = np.full(size, rest, dtype=np.float32)
    probs[top] = confidence
    return probs


def assert_plain_json(value: Any) -> None:
    """No numpy scalars anywhere: only the types json emits."""
    if isinstance(value, dict):
        for key, item in value.items():
            assert type(key) is str
            assert_plain_json(item)
    elif isinstance(value, list):
        for item in value:
            assert_plain_json(item)
    else:
        assert value is None or type(value) in (str, int, float, bool), type(value)


def test_model_path_shape_and_types() -> None:
    data = build_parse_data(
        "fly to NYC",
        message_id="m1",
        metadata={"channel": "web"},
        intent_names=INTENTS,
        intent_probabilities=probabilities(3, 0.9),
        model_entities=[DecodedEntity("city", 7, 10, "NYC", np.float32(0.8).item())],
        options=OPTIONS,
    )
    assert list(data) == KEYS
    assert data["text"] == "fly to NYC"
    assert data["intent"] == {"name": "intent_3", "confidence": pytest.approx(0.9)}
    assert len(data["intent_ranking"]) == 10
    assert data["intent_ranking"][0] == data["intent"]
    assert data["message_id"] == "m1"
    assert data["metadata"] == {"channel": "web"}
    assert data["entities"] == [
        {
            "entity": "city",
            "start": 7,
            "end": 10,
            "confidence_entity": pytest.approx(0.8),
            "value": "New York",
            "extractor": "DIETClassifier",
            "processors": ["EntitySynonymMapper"],
        },
        {
            "entity": "city",
            "start": 7,
            "end": 10,
            "value": "New York",
            "extractor": "RegexEntityExtractor",
            "processors": ["EntitySynonymMapper"],
        },
    ]
    assert_plain_json(data)
    json.dumps(data)


def test_parse_data_fits_user_uttered() -> None:
    data = build_parse_data(
        "hi", intent_names=INTENTS, intent_probabilities=probabilities(0, 0.95), options=OPTIONS
    )
    event = UserUttered(text="hi", parse_data=data)
    assert event.intent_name == "intent_0"
    json.loads(event.to_json())


def test_entities_are_sorted_by_start() -> None:
    data = build_parse_data(
        "Berlin and berlin city",
        intent_names=INTENTS,
        intent_probabilities=probabilities(0, 0.95),
        model_entities=[DecodedEntity("place", 11, 17, "berlin", 0.7)],
        options=OPTIONS,
    )
    assert [(e["start"], e["extractor"], e["value"]) for e in data["entities"]] == [
        (0, "RegexEntityExtractor", "Berlin"),
        (11, "DIETClassifier", "Berlin"),
        (11, "RegexEntityExtractor", "Berlin"),
    ]
    # Canonical values map to themselves, so every entity went through the mapper.
    assert all(e["processors"] == ["EntitySynonymMapper"] for e in data["entities"])


@pytest.mark.parametrize(
    ("probs", "expected_intent"),
    [
        (probabilities(2, 0.2), {"name": "nlu_fallback", "confidence": 0.3}),
        (np.array([0.45, 0.4] + [0.15 / 10] * 10), {"name": "nlu_fallback", "confidence": 0.3}),
        (probabilities(5, 0.8), {"name": "intent_5", "confidence": pytest.approx(0.8)}),
    ],
)
def test_fallback_is_applied_last(
    probs: npt.NDArray[np.float64], expected_intent: dict[str, Any]
) -> None:
    data = build_parse_data(
        "hmm", intent_names=INTENTS, intent_probabilities=probs, options=OPTIONS
    )
    assert data["intent"] == expected_intent
    assert data["intent_ranking"][0] == expected_intent
    if expected_intent["name"] == "nlu_fallback":
        assert len(data["intent_ranking"]) == 11  # Rasa inserts it before the top 10
    assert_plain_json(data)


def test_ranking_ties_keep_model_order_and_length_option() -> None:
    ranking = intent_ranking(["a", "b", "c"], [0.25, 0.5, 0.25], length=2)
    assert ranking == [{"name": "b", "confidence": 0.5}, {"name": "a", "confidence": 0.25}]
    assert len(intent_ranking(INTENTS, probabilities(0, 0.5), length=0)) == 12
    with pytest.raises(ValueError, match="2 intent probabilities for 3 intents"):
        intent_ranking(["a", "b", "c"], [0.5, 0.5])


@pytest.mark.parametrize(
    ("text", "intent", "confidence", "entities"),
    [
        ("/greet", "greet", 1.0, []),
        ("  /greet@0.1  ", "greet", 0.1, []),  # below the threshold: no fallback
        ('/inform{"city": "nyc"}', "inform", 1.0, [("city", "nyc")]),  # no synonyms
        (
            '/inform{"city": ["Berlin", "NYC"]}',
            "inform",
            1.0,
            [("city", "Berlin"), ("city", "NYC")],
        ),
    ],
)
def test_intent_messages_bypass_the_model(
    text: str, intent: str, confidence: float, entities: list[tuple[str, str]]
) -> None:
    data = build_parse_data(
        text,
        message_id="m2",
        metadata={"a": 1},
        intent_names=INTENTS,
        intent_probabilities=probabilities(0, 0.99),
        model_entities=[DecodedEntity("x", 0, 1, "/", 0.9)],
        options=OPTIONS,
    )
    assert list(data) == KEYS
    assert data["text"] == text.strip()
    assert data["intent"] == {"name": intent, "confidence": confidence}
    assert data["intent_ranking"] == [data["intent"]]
    assert [(e["entity"], e["value"]) for e in data["entities"]] == entities
    assert all("extractor" not in e for e in data["entities"])
    assert (data["message_id"], data["metadata"]) == ("m2", {"a": 1})
    json.dumps(data)


def test_intent_message_warnings_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="services.nlu.parse_data"):
        data = build_parse_data('/greet{"a": 1}@0.3')
    assert data["intent"] == {"name": "greet", "confidence": 1.0}
    assert "@0.3" in caplog.text


def test_unknown_intent_messages_go_to_the_model() -> None:
    data = build_parse_data(
        "/nope",
        intent_names=INTENTS,
        intent_probabilities=probabilities(4, 0.9),
        known_intents=INTENTS,
    )
    assert data["intent"]["name"] == "intent_4"
    assert data["text"] == "/nope"


@pytest.mark.parametrize("text", ["", "   ", "😀", "Привет, мир", "你好世界"])
def test_text_without_a_prediction(text: str) -> None:
    data = build_parse_data(text, options=ParseOptions(fallback=None))
    assert data == {
        "text": text,
        "intent": {"name": None, "confidence": 0.0},
        "entities": [],
        "intent_ranking": [],
        "message_id": None,
        "metadata": {},
    }
    fallen = build_parse_data(text, options=OPTIONS)
    assert fallen["intent"]["name"] == "nlu_fallback"


def test_metadata_is_copied() -> None:
    metadata: dict[str, Any] = {"nested": {"a": [1]}}
    data = build_parse_data("hi", metadata=metadata)
    data["metadata"]["nested"]["a"].append(2)
    assert metadata == {"nested": {"a": [1]}}


def test_end_to_end_with_decoded_model_entities() -> None:
    text = "Ich will nach Санкт-Петербург 🚀"
    offsets = [(0, 0), (0, 3), (4, 8), (9, 13), (14, 19), (19, 20), (20, 29), (30, 31), (0, 0)]
    labels = label_names(["city#to"])
    tags = ["O", "O", "O", "O", "B-city#to", "I-city#to", "I-city#to", "O", "O"]
    probs = np.zeros((len(tags), len(labels)), dtype=np.float32)
    for row, tag in enumerate(tags):
        probs[row] = 0.05
        probs[row, labels.index(tag)] = 0.9
    logits = np.log(probabilities(1, 0.7)).astype(np.float32)
    data = build_parse_data(
        text,
        intent_names=INTENTS,
        intent_probabilities=softmax(logits),
        model_entities=decode_entities(text, offsets, probs, labels),
        options=OPTIONS,
    )
    assert data["intent"] == {"name": "intent_1", "confidence": pytest.approx(0.7)}
    [entity] = data["entities"]
    assert (entity["value"], entity["role"], entity["start"], entity["end"]) == (
        "Санкт-Петербург",
        "to",
        14,
        29,
    )
    assert_plain_json(data)


def test_softmax() -> None:
    probs = softmax(np.array([[1000.0, 1000.0], [0.0, np.log(3.0)]]))
    assert probs == pytest.approx(np.array([[0.5, 0.5], [0.25, 0.75]]))


@given(st.lists(st.floats(-50, 50), min_size=1, max_size=30))
def test_ranking_is_sorted_plain_and_bounded(logits: list[float]) -> None:
    names = [f"i{n}" for n in range(len(logits))]
    data = build_parse_data(
        "x", intent_names=names, intent_probabilities=softmax(logits), options=OPTIONS
    )
    ranking = data["intent_ranking"]
    assert_plain_json(data)
    model = [r for r in ranking if r["name"] != "nlu_fallback"]
    assert len(model) == min(10, len(logits))
    assert [r["confidence"] for r in model] == sorted(
        (r["confidence"] for r in model), reverse=True
    )


@pytest.mark.parametrize(
    ("pipeline", "extractor", "synonyms", "fallback", "ranking"),
    [
        ((), False, True, FallbackClassifier(0.3, 0.1), 10),
        ((("DIETClassifier", {}),), False, False, None, 10),
        (
            (
                ("DIETClassifier", {"ranking_length": 5}),
                ("RegexEntityExtractor", {}),
                ("rasa.nlu.extractors.entity_synonyms.EntitySynonymMapper", {}),
                ("FallbackClassifier", {"threshold": 0.7, "ambiguity_threshold": 0.05}),
            ),
            True,
            True,
            FallbackClassifier(0.7, 0.05),
            5,
        ),
    ],
)
def test_options_from_project(
    pipeline: tuple[tuple[str, dict[str, Any]], ...],
    extractor: bool,
    synonyms: bool,
    fallback: FallbackClassifier | None,
    ranking: int,
) -> None:
    config = Config(pipeline=tuple(Component(n, SOURCE, o) for n, o in pipeline))
    options = ParseOptions.from_project(NLU, config)
    assert (options.extractor is not None) is extractor
    assert (options.synonyms is not None) is synonyms
    assert options.fallback == fallback
    assert options.ranking_length == ranking
    if options.extractor is not None:
        assert options.extractor.entity_names == {"city"}
