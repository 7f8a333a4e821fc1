"""`endpoints.yml`'s `handoff:` section: when the bot hands a conversation to a human, and what
happens when no agent claims it or the agent falls silent.

A Parley key: Rasa ignores endpoint keys it does not know, so the file stays Rasa's. Every
setting is optional; see docs/handoff.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, cast

from schemas.project._read import FileReader
from schemas.project._yaml import LineDict

RemindersWhilePaused = Literal["deferred", "dropped", "delivered"]
REMINDER_MODES: tuple[RemindersWhilePaused, ...] = ("deferred", "dropped", "delivered")
HANDOFF_KEY = "handoff"


@dataclass(frozen=True)
class HandoffConfig:
    """The handoff settings of a bot (defaults: Parley's, documented in docs/handoff.md)."""

    queue_timeout: float = 300.0
    on_queue_timeout: str | None = "utter_no_agent_available"
    agent_silence_timeout: float = 600.0
    on_agent_silence: str | None = None
    request_intents: tuple[str, ...] = ("human_handoff",)
    on_fallback: bool = False
    low_confidence: float | None = None
    on_action_failure: bool = False
    on_negative_feedback: bool = False
    reminders_while_paused: RemindersWhilePaused = "deferred"


KEYS = tuple(HandoffConfig.__dataclass_fields__)


def read_handoff(data: LineDict, reader: FileReader) -> HandoffConfig:
    """The `handoff:` section of `endpoints.yml` (defaults when absent); problems go to
    `reader`, each at its line, and the defaults stand in for the values in error."""
    if HANDOFF_KEY not in data or data[HANDOFF_KEY] is None:
        return HandoffConfig()
    section = reader.mapping(data[HANDOFF_KEY], data.line_of(HANDOFF_KEY), "`handoff`")
    if section is None:
        return HandoffConfig()
    reader.unknown_keys(section, KEYS, "`handoff`", error=True)
    default = HandoffConfig()
    values: dict[str, Any] = {}
    for key in ("queue_timeout", "agent_silence_timeout"):
        if key in section:
            seconds = _seconds(section, key, reader)
            if seconds is not None:
                values[key] = seconds
    for key in ("on_queue_timeout", "on_agent_silence"):
        if key in section:
            value = section[key]
            action = None if value is None else reader.string(value, section.line_of(key), key)
            if value is None or action is not None:
                values[key] = action or None
    if "request_intents" in section:
        line = section.line_of("request_intents")
        raw = section["request_intents"]
        values["request_intents"] = (
            () if raw is None else tuple(reader.strings(raw, line, "`handoff.request_intents`"))
        )
    for key in ("on_fallback", "on_action_failure", "on_negative_feedback"):
        if key in section:
            if isinstance(section[key], bool):
                values[key] = section[key]
            else:
                reader.error(
                    section.line_of(key),
                    f"`handoff.{key}` should be true or false, not {section[key]!r}",
                    "true hands the conversation to a human then; the default is false",
                )
    if "low_confidence" in section:
        values["low_confidence"] = _confidence(section, reader)
    if "reminders_while_paused" in section:
        mode = section["reminders_while_paused"]
        if mode in REMINDER_MODES:
            values["reminders_while_paused"] = cast(RemindersWhilePaused, mode)
        else:
            reader.error(
                section.line_of("reminders_while_paused"),
                f"`handoff.reminders_while_paused` should be one of {', '.join(REMINDER_MODES)}, "
                f"not {mode!r}",
                "deferred fires them after the conversation resumes, dropped forgets them, "
                "delivered runs them despite the pause",
            )
    return HandoffConfig(**{**default.__dict__, **values})


_SECONDS_HINT = {
    "queue_timeout": "seconds a handed-off conversation waits for an agent's claim (default 300)",
    "agent_silence_timeout": "seconds an agent may stay silent before the bot resumes "
    "(default 600)",
}


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _seconds(section: LineDict, key: str, reader: FileReader) -> float | None:
    value = _number(section[key])
    if value is None or value <= 0:
        shown = f"{value:g}" if value is not None else repr(section[key])
        reader.error(
            section.line_of(key),
            f"`handoff.{key}` should be a number of seconds more than 0, not {shown}",
            _SECONDS_HINT[key],
        )
        return None
    return value


def _confidence(section: LineDict, reader: FileReader) -> float | None:
    raw = section["low_confidence"]
    value = _number(raw)
    if raw is not None and (value is None or not 0 < value <= 1):
        shown = f"{value:g}" if value is not None else repr(raw)
        reader.error(
            section.line_of("low_confidence"),
            f"`handoff.low_confidence` should be a number between 0 and 1, not {shown}",
            "an NLU intent confidence below it hands the conversation over; null turns it off",
        )
        return None
    return value
