"""Responses rendered as Rasa renders them: variation choice, slot templating, bot messages."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from schemas.project.domain import Domain
from schemas.project.loader import load_project
from services.dialogue.responses import ResponseRenderer, bot_uttered, interpolate_text

DOMAIN = """version: "3.1"
intents: [greet]
slots:
  name:
    type: text
    mappings: [{type: custom}]
  vip:
    type: bool
    mappings: [{type: custom}]
responses:
  utter_greet:
  - text: "Hello {name}!"
  - text: "Hi {name}."
  utter_status:
  - condition: [{type: slot, name: vip, value: true}]
    text: "Welcome back, valued customer."
  - condition: [{type: slot, name: vip, value: true}]
    channel: slack
    text: "VIP on slack"
  - text: "Hello."
  - channel: slack
    text: "Hello slack."
  utter_pick:
  - text: "Which bike?"
    buttons:
    - title: "Road {name}"
      payload: '/inform{{"bike_type":"road"}}'
    image: "https://example.com/{name}.png"
    custom: {kind: card, label: "{name}", nested: {deep: "{name}"}}
    id: pick-1
    metadata: {rephrase: true}
  utter_missing:
  - text: "Your order {order_id} is ready"
"""


@pytest.fixture(scope="module")
def domain(tmp_path_factory: pytest.TempPathFactory) -> Domain:
    root = tmp_path_factory.mktemp("bot")
    (root / "domain.yml").write_text(DOMAIN)
    (root / "config.yml").write_text("language: en\n")
    return load_project(root).domain


def test_interpolation_follows_rasa() -> None:
    assert interpolate_text("Hi {name}", {"name": "Ada"}) == "Hi Ada"
    assert interpolate_text("Hi {name}", {}) == "Hi {name}"  # unknown: left as written
    assert interpolate_text('/inform{{"a": 1}}', {"name": "x"}) == '/inform{"a": 1}'
    assert interpolate_text("{a.b} and {x}", {"a.b": 1, "x": None}) == "1 and None"
    assert interpolate_text("brace { alone", {"a": 1}) == "brace { alone"


def test_random_variation_is_seedable_and_uses_all(domain: Domain) -> None:
    def texts(seed: int) -> list[str]:
        renderer = ResponseRenderer(domain, random.Random(seed))
        out = []
        for _ in range(40):
            message = renderer.render("utter_greet", {"name": "Ada"})
            assert message is not None
            out.append(message["text"])
        return out

    assert texts(1) == texts(1)
    assert Counter(texts(2)).keys() == {"Hello Ada!", "Hi Ada."}


@pytest.mark.parametrize(
    ("slots", "channel", "expected"),
    [
        ({"vip": True}, None, "Welcome back, valued customer."),
        ({"vip": True}, "slack", "VIP on slack"),
        ({"vip": False}, "slack", "Hello slack."),
        ({"vip": None}, "rest", "Hello."),
        ({}, None, "Hello."),
    ],
)
def test_conditions_then_channels_like_rasa(
    domain: Domain, slots: dict[str, object], channel: str | None, expected: str
) -> None:
    message = ResponseRenderer(domain, random.Random(0)).render("utter_status", slots, channel)
    assert message is not None
    assert message["text"] == expected


def test_buttons_images_custom_are_filled_and_the_bot_event_is_rasas(domain: Domain) -> None:
    renderer = ResponseRenderer(domain, random.Random(0))
    event = renderer.utter("utter_pick", {"name": "Ada"}, "rest", timestamp=1700000000.0)
    assert event is not None
    assert event.to_dict() == {
        "event": "bot",
        "timestamp": 1700000000.0,
        "metadata": {"id": "pick-1", "rephrase": True, "utter_action": "utter_pick"},
        "text": "Which bike?",
        "data": {
            "elements": None,
            "quick_replies": None,
            "buttons": [{"title": "Road Ada", "payload": '/inform{"bike_type":"road"}'}],
            "attachment": "https://example.com/Ada.png",
            "image": "https://example.com/Ada.png",
            "custom": {"kind": "card", "label": "Ada", "nested": {"deep": "Ada"}},
        },
    }


def test_unknown_slot_and_unknown_response(domain: Domain) -> None:
    renderer = ResponseRenderer(domain)
    message = renderer.render("utter_missing", {"name": "x"})
    assert message == {"text": "Your order {order_id} is ready"}
    assert renderer.render("utter_nope", {}) is None
    assert renderer.utter("utter_nope", {}, None, 0.0) is None


def test_dispatcher_message_becomes_bot_uttered() -> None:
    event = bot_uttered({"text": "hi", "custom": {"a": 1}, "template_name": "x"}, 5.0)
    assert event.text == "hi"
    assert event.data["custom"] == {"a": 1}
    assert event.metadata == {"template_name": "x"}
