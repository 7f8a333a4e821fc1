"""Golden conversations: JSON event logs recorded from the engine on Rasa's example bots
(`tests/fixtures/golden/*.json`) replay to the same actions, slots and bot texts.

The logs were recorded with Parley (not Rasa: no Rasa runs here); they pin behaviour so a change
in policies, forms or responses that alters a conversation fails here. Re-record deliberately
with `python -m tests.unit.dialogue.test_golden --record` and review the diff.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

import pytest

from schemas.events import UserUttered, parse_events
from schemas.project.loader import load_project
from services.dialogue.engine import Conversation, DialogueEngine
from services.dialogue.worker_cli import build_predictor

GOLDEN = Path(__file__).resolve().parents[2] / "fixtures" / "golden"
SHARED = Path(__file__).resolve().parents[4] / "shared" / "examples" / "rasa"
# (bot, conversation name, user intents with entities)
SCRIPTS: list[tuple[str, str, list[tuple[str, dict[str, str]]]]] = [
    ("moodbot", "happy", [("greet", {}), ("mood_great", {}), ("goodbye", {})]),
    ("moodbot", "sad-cheered", [("greet", {}), ("mood_unhappy", {}), ("affirm", {})]),
    ("moodbot", "sad-not-cheered", [("greet", {}), ("mood_unhappy", {}), ("deny", {})]),
    ("moodbot", "bot-challenge", [("bot_challenge", {}), ("greet", {}), ("goodbye", {})]),
]


def _user(intent: str, entities: dict[str, str], ts: float) -> UserUttered:
    return UserUttered(
        timestamp=ts,
        text=f"/{intent}",
        input_channel="rest",
        parse_data={
            "intent": {"name": intent, "confidence": 1.0},
            "entities": [{"entity": k, "value": v} for k, v in entities.items()],
        },
    )


def play(bot: str, intents: list[tuple[str, dict[str, str]]]) -> list[dict[str, Any]]:
    project = load_project(SHARED / bot)
    engine = DialogueEngine(project.domain, build_predictor(project), rng=random.Random(0))
    conv = Conversation.new(f"golden-{bot}", project.domain)
    for turn, (intent, entities) in enumerate(intents):
        ts = 1_700_000_000.0 + turn
        engine.on_user_message(conv, _user(intent, entities, ts), ts)
    return [e.to_dict() for e in conv.events]


def _shape(event: dict[str, Any]) -> tuple[Any, ...]:
    """What a replay must reproduce: the event kind and its meaning, not its timestamp."""
    return (
        event["event"],
        event.get("name"),
        event.get("value"),
        event.get("text"),
        event.get("policy"),
    )


@pytest.mark.parametrize(
    ("bot", "name", "intents"), SCRIPTS, ids=[f"{b}-{n}" for b, n, _ in SCRIPTS]
)
def test_golden_conversation_replays_the_same(
    shared_dir: Path, bot: str, name: str, intents: list[tuple[str, dict[str, str]]]
) -> None:
    recorded = json.loads((GOLDEN / f"{bot}-{name}.json").read_text())
    parse_events(recorded)  # the log is valid Rasa event JSON
    replayed = play(bot, intents)
    assert [_shape(e) for e in replayed] == [_shape(e) for e in recorded]


if __name__ == "__main__" and "--record" in sys.argv:
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for bot, name, intents in SCRIPTS:
        path = GOLDEN / f"{bot}-{name}.json"
        path.write_text(json.dumps(play(bot, intents), indent=1) + "\n")
        print("recorded", path)
