"""Rasa's `/intent@confidence{entities}` syntax, unpacked without a model."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.nlu.message_syntax import IntentMessage, is_intent_message, parse_intent_message


@pytest.mark.parametrize(
    ("text", "intent", "confidence", "entities"),
    [
        ("/greet", "greet", 1.0, []),
        ("/EXTERNAL_reminder", "EXTERNAL_reminder", 1.0, []),
        ("/ greet", "greet", 1.0, []),
        ("  /greet  ", "greet", 1.0, []),
        ("\n/greet\t", "greet", 1.0, []),
        ("/greet@0.8", "greet", 0.8, []),
        ("/greet @0.8", "greet", 0.8, []),
        ("/greet@1", "greet", 1.0, []),
        ("/greet@.5", "greet", 0.5, []),
        ("/greet@0", "greet", 0.0, []),
        ('/inform{"city": "Berlin"}', "inform", 1.0, [("city", "Berlin", 7, 25)]),
        ('/inform {"city": "Berlin"}', "inform", 1.0, [("city", "Berlin", 8, 26)]),
        (
            '/inform{"city": ["Berlin", "Rome"]}',
            "inform",
            1.0,
            [("city", "Berlin", 7, 35), ("city", "Rome", 7, 35)],
        ),
        ('/inform@0.25{"n": 3}', "inform", 0.25, [("n", 3, 12, 20)]),
        (
            '/inform{"a": 1, "b": null, "c": {"d": true}}',
            "inform",
            1.0,
            [("a", 1, 7, 44), ("b", None, 7, 44), ("c", {"d": True}, 7, 44)],
        ),
        ('/inform{"city": []}', "inform", 1.0, []),
        ('/inform{"city": "Москва"}', "inform", 1.0, [("city", "Москва", 7, 25)]),
        ('/inform{"city": "東京"}', "inform", 1.0, [("city", "東京", 7, 21)]),
        ('/inform{"mood": "😀"}', "inform", 1.0, [("mood", "😀", 7, 20)]),
        ("/привет", "привет", 1.0, []),
        ("/faq/ask_name", "faq/ask_name", 1.0, []),
        ("/hello world", "hello world", 1.0, []),
    ],
)
def test_well_formed_messages(
    text: str, intent: str, confidence: float, entities: list[tuple[str, Any, int, int]]
) -> None:
    message = parse_intent_message(text)
    assert message is not None
    assert message.intent == intent
    assert message.confidence == confidence
    assert message.entities == [
        {"entity": e, "value": v, "start": s, "end": end} for e, v, s, end in entities
    ]
    assert message.text == text.strip()
    assert message.warnings == ()


def test_entity_span_is_the_json_object_in_the_stripped_text() -> None:
    message = parse_intent_message('   /inform{"city": "Rome"}')
    assert message is not None
    entity = message.entities[0]
    assert message.text[entity["start"] : entity["end"]] == '{"city": "Rome"}'
    assert "extractor" not in entity


@pytest.mark.parametrize(
    ("text", "intent", "confidence", "entities", "warning"),
    [
        # Rasa's order is confidence then entities; a confidence after the JSON is dropped.
        ('/greet{"a": 1}@0.3', "greet", 1.0, [("a", 1)], "@0.3"),
        ("/greet{", "greet", 1.0, [], "{"),
        ("/greet@x", "greet", 1.0, [], "@x"),
        ("/greet@-0.5", "greet", 1.0, [], "@-0.5"),
        ("/greet@0.5 {}", "greet", 0.5, [], " {}"),
        ("/greet@1.5", "greet", 1.0, [], "above 1.0"),
        ("/greet@1.2.3", "greet", 0.0, [], "using 0.0"),
        ("/greet@.", "greet", 0.0, [], "using 0.0"),
        ("/greet{not json}", "greet", 1.0, [], "JSON object"),
        ('/greet{"a": 1}{"b": 2}', "greet", 1.0, [], "JSON object"),
        ('/greet{"a": NaN}', "greet", 1.0, [], "NaN"),
        ('/greet{"a": Infinity}', "greet", 1.0, [], "Infinity"),
        ('/greet@0.3{"a": }', "greet", 0.3, [], "JSON object"),
    ],
)
def test_malformed_parts_warn_and_keep_the_intent(
    text: str, intent: str, confidence: float, entities: list[tuple[str, Any]], warning: str
) -> None:
    message = parse_intent_message(text)
    assert message is not None
    assert (message.intent, message.confidence) == (intent, confidence)
    assert [(e["entity"], e["value"]) for e in message.entities] == entities
    assert len(message.warnings) == 1
    assert warning in message.warnings[0]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "hello",
        "hello /greet",
        "Привет",
        "你好",
        "😀",
        "/",
        "  /  ",
        "/{}",
        '/{"a": 1}',
        "/@0.5",
        "/  @0.5",
        "/ \t{}",
    ],
)
def test_ordinary_text_is_not_an_intent_message(text: str) -> None:
    assert parse_intent_message(text) is None


def test_failures_to_match_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="services.nlu.message_syntax"):
        assert parse_intent_message("/") is None
        assert parse_intent_message("/  @1") is None
    assert len(caplog.records) == 2


def test_is_intent_message_is_the_prefix_test() -> None:
    assert is_intent_message("  /greet")
    assert is_intent_message("/")
    assert not is_intent_message("greet /")
    assert not is_intent_message("")


def test_known_intents_make_unknown_ones_user_text() -> None:
    assert parse_intent_message("/greet", intents={"greet"}) is not None
    assert parse_intent_message("/unknown", intents={"greet"}) is None
    assert parse_intent_message("/greet", intents=set()) is None


def test_known_entities_drop_unknown_types_with_a_warning() -> None:
    message = parse_intent_message('/inform{"city": "Rome", "planet": "Mars"}', entities={"city"})
    assert message is not None
    assert [e["entity"] for e in message.entities] == ["city"]
    assert "planet" in message.warnings[0]


def test_newlines_end_the_entities() -> None:
    message = parse_intent_message('/inform{"a": 1}\nmore text')
    assert message is not None
    assert message.entities[0]["value"] == 1
    assert message.warnings == ()


def test_very_long_messages() -> None:
    values = [f"city{i}" for i in range(5000)]
    message = parse_intent_message("/inform" + json.dumps({"city": values}))
    assert message is not None
    assert [e["value"] for e in message.entities] == values


def test_result_is_json_serialisable() -> None:
    message = parse_intent_message('/inform@0.5{"a": [1, 2.5, "x", null, {"b": [true]}]}')
    assert isinstance(message, IntentMessage)
    json.dumps(message.entities)


@given(
    intent=st.text(st.characters(exclude_characters="{@", codec="utf-8"))
    .map(str.strip)
    .filter(bool),
    confidence=st.floats(min_value=0, max_value=1),
    entities=st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=4),
)
def test_round_trip(intent: str, confidence: float, entities: dict[str, str]) -> None:
    written = f"{confidence:.6f}"  # Rasa's grammar has no exponent notation
    text = f"/{intent}@{written}" + (json.dumps(entities) if entities else "")
    message = parse_intent_message(text)
    assert message is not None
    assert message.intent == intent
    assert message.confidence == float(written)
    assert {e["entity"]: e["value"] for e in message.entities} == entities
