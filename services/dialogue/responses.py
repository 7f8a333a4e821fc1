"""Responses from the domain, rendered as Rasa 3.x renders them (its templated NLG).

Choosing a variation (`rasa/core/nlg/response.py`):

1. variations with a `condition` that the filled slots satisfy (every `{type: slot, name,
   value}` equal), for the output channel; else
2. those conditional ones without a channel; else
3. unconditional variations for the output channel; else
4. unconditional variations without a channel;

then one of them at random (the `random.Random` is injected: seed it for reproducible runs).

Filling (`rasa/core/nlg/interpolator.py`): `{slot}` placeholders in `text`, `image`, `custom`,
`buttons`, `attachment` and `quick_replies` (recursively through lists and dicts) take the
slot's value; a placeholder naming no slot leaves the string unchanged; doubled braces
(`{{"a": 1}}`, button payloads) come out single (`{"a": 1}`).

The bot message is Rasa's `create_bot_utterance`: `BotUttered(text, data={elements,
quick_replies, buttons, attachment (the image when there is no attachment), image, custom},
metadata={utter_action, id, ...the variation's metadata})`.
"""

from __future__ import annotations

import copy
import logging
import random
import re
from collections.abc import Mapping, Sequence
from typing import Any

from schemas.events import BotUttered
from schemas.project.domain import Domain, ResponseVariation

logger = logging.getLogger(__name__)
FILLED_KEYS = ("text", "image", "custom", "buttons", "attachment", "quick_replies")
_PLACEHOLDER = re.compile(r"{([^\n{}]+?)}")


def interpolate_text(template: str, values: Mapping[str, Any]) -> str:
    """Rasa's `interpolate_format_template`: `{name}` → value; unknown names keep the text."""
    try:
        text = _PLACEHOLDER.sub(r"{0[\1]}", template).format(values)
    except (KeyError, ValueError, IndexError):
        return template
    if "0[" in text:  # a placeholder inside doubled braces: only unescape them
        try:
            return template.format({})
        except (KeyError, ValueError, IndexError):
            return template
    return text


def interpolate(value: Any, values: Mapping[str, Any]) -> Any:
    """`interpolate_text` through strings, lists and dicts."""
    if isinstance(value, str):
        return interpolate_text(value, values)
    if isinstance(value, list):
        return [interpolate(item, values) for item in value]
    if isinstance(value, dict):
        return {key: interpolate(item, values) for key, item in value.items()}
    return value


def _matches(variation: ResponseVariation, slots: Mapping[str, Any]) -> bool:
    return all(slots.get(c.name) == c.value for c in variation.condition)


def candidates(
    variations: Sequence[ResponseVariation], slots: Mapping[str, Any], channel: str | None
) -> list[ResponseVariation]:
    """The variations Rasa chooses among (see the module docstring)."""
    conditional = [v for v in variations if v.condition and _matches(v, slots)]
    unconditional = [v for v in variations if not v.condition]
    for group in (conditional, unconditional):
        on_channel = [v for v in group if channel is not None and v.channel == channel]
        if on_channel:
            return on_channel
        no_channel = [v for v in group if v.channel is None]
        if no_channel:
            return no_channel
    return []


def _as_message(variation: ResponseVariation) -> dict[str, Any]:
    message: dict[str, Any] = {}
    for key in ("text", "image", "attachment", "custom"):
        value = getattr(variation, key)
        if value is not None:
            message[key] = copy.deepcopy(value)
    for key in ("buttons", "quick_replies", "elements"):
        value = getattr(variation, key)
        if value:
            message[key] = copy.deepcopy(list(value))
    if variation.id is not None:
        message["id"] = variation.id
    message.update(copy.deepcopy(variation.metadata))
    return message


class ResponseRenderer:
    """Renders the domain's responses into bot messages."""

    def __init__(self, domain: Domain, rng: random.Random | None = None) -> None:
        self.domain = domain
        self.rng = rng or random.Random()

    def has(self, name: str) -> bool:
        return name in self.domain.responses

    def render(
        self,
        name: str,
        slots: Mapping[str, Any],
        channel: str | None = None,
        **extra: Any,
    ) -> dict[str, Any] | None:
        """The filled response dict (Rasa's NLG output), or None when no variation applies."""
        response = self.domain.responses.get(name)
        if response is None:
            return None
        options = candidates(response.variations, slots, channel)
        if not options:
            return None
        message = _as_message(self.rng.choice(options))
        values = {**slots, **extra}
        if values:
            for key in FILLED_KEYS:
                if key in message:
                    message[key] = interpolate(message[key], values)
        return message

    def utter(
        self, name: str, slots: Mapping[str, Any], channel: str | None, timestamp: float
    ) -> BotUttered | None:
        """The `BotUttered` event of response `name`, or None (Rasa logs and sends nothing)."""
        message = self.render(name, slots, channel)
        if message is None:
            logger.error("no response %s applies (channel %s): nothing is sent", name, channel)
            return None
        message["utter_action"] = name
        return bot_uttered(message, timestamp)


def bot_uttered(message: Mapping[str, Any], timestamp: float) -> BotUttered:
    """Rasa's `create_bot_utterance` of a response or dispatcher message dict."""
    rest = dict(message)
    text = rest.pop("text", None)
    data = {
        "elements": rest.pop("elements", None),
        "quick_replies": rest.pop("quick_replies", None),
        "buttons": rest.pop("buttons", None),
        "attachment": rest.pop("attachment", None) or rest.get("image"),
        "image": rest.pop("image", None),
        "custom": rest.pop("custom", None),
    }
    return BotUttered(timestamp=timestamp, text=text, data=data, metadata=rest)
