"""User feedback (`user_feedback`, the design's UserFeedbackReceived) in the dialogue: recorded
as it comes; negative feedback hands off when `handoff.on_negative_feedback` says so."""

from __future__ import annotations

from schemas.events import UserFeedback
from schemas.project.domain import Domain
from services.dialogue.engine import Conversation
from tests.unit.dialogue.test_handoff import domain, engine, names, user  # noqa: F401


def test_feedback_is_recorded_and_nothing_is_predicted(domain: Domain) -> None:  # noqa: F811
    eng = engine(domain)
    conv = Conversation.new("c1", domain)
    eng.on_user_message(conv, user("greet", 1.0), 1.0)
    down = UserFeedback(timestamp=2.0, rating=-1, message_text="Hello!")
    result = eng.on_append_events(conv, [down], 2.0)
    assert result.new_events == [down]
    assert result.turn_complete
    assert not conv.state.paused


def test_negative_feedback_hands_off_when_configured(domain: Domain) -> None:  # noqa: F811
    eng = engine(domain, on_negative_feedback=True)
    conv = Conversation.new("c1", domain)
    eng.on_user_message(conv, user("greet", 1.0), 1.0)
    result = eng.on_append_events(conv, [UserFeedback(timestamp=2.0, rating=-1)], 2.0)
    assert conv.state.paused
    assert "bot:A person will be with you shortly." in names(result)
    pause = next(e for e in result.new_events if e.to_dict()["event"] == "pause")
    assert pause.metadata == {"handoff_reason": "negative_feedback"}
    assert result.turn_complete

    happy = Conversation.new("c2", domain)
    eng.on_user_message(happy, user("greet", 1.0), 1.0)
    liked = eng.on_append_events(happy, [UserFeedback(timestamp=2.0, rating=4, scale="stars")], 2)
    assert not happy.state.paused
    assert len(liked.new_events) == 1
