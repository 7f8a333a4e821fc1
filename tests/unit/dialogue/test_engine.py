"""The turn engine with a scripted predictor: sessions, the action loop, pending custom
actions and their results, failures, pauses, the circuit breaker."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import pytest

from schemas.events import ConversationPaused, Event, SlotSet, UserUttered
from schemas.project.domain import Domain
from schemas.project.loader import load_project
from services.dialogue.engine import (
    Conversation,
    DialogueEngine,
    PendingAction,
    Prediction,
    TurnResult,
)
from services.dialogue.tracker import TrackerState, current_state

DOMAIN = """version: "3.1"
intents: [greet, order, restart]
entities: [item]
slots:
  item:
    type: text
    mappings: [{type: from_entity, entity: item}]
responses:
  utter_greet:
  - text: "Hello!"
  utter_default:
  - text: "Sorry, something went wrong."
  utter_confirm:
  - text: "One {item} coming."
actions: [action_order]
session_config:
  session_expiration_time: 60
  carry_over_slots_to_new_session: true
"""


class Script:
    """Predicts from a table: last action name (or intent after action_listen) → next."""

    def __init__(self, table: dict[str, str]) -> None:
        self.table = table
        self.calls = 0

    def predict(
        self,
        events: Sequence[Event],
        state: TrackerState,
        domain: Domain,
        initial: TrackerState | None = None,
    ) -> Prediction:
        self.calls += 1
        if events and events[-1].event == "action_execution_rejected":
            # the ensemble excludes a rejected action (Rasa's ensemble does the same)
            return Prediction("action_listen", 0.5, "Script")
        last = state.latest_action_name
        if last == "action_listen":
            key = (state.latest_message or {}).get("intent", {}).get("name") or ""
        else:
            key = last or ""
        return Prediction(self.table.get(key, "action_listen"), 0.9, "Script")


@pytest.fixture(scope="module")
def domain(tmp_path_factory: pytest.TempPathFactory) -> Domain:
    root = tmp_path_factory.mktemp("bot")
    (root / "domain.yml").write_text(DOMAIN)
    (root / "config.yml").write_text("language: en\n")
    return load_project(root).domain


def user(intent: str, ts: float, **entities: str) -> UserUttered:
    return UserUttered(
        timestamp=ts,
        text=intent,
        input_channel="rest",
        parse_data={
            "intent": {"name": intent, "confidence": 1.0},
            "entities": [{"entity": k, "value": v} for k, v in entities.items()],
        },
    )


def names(result: TurnResult) -> list[str]:
    out = []
    for event in result.new_events:
        data = event.to_dict()
        out.append(f"{data['event']}:{data.get('name') or data.get('text') or ''}")
    return out


def engine(domain: Domain, table: dict[str, str], **kw: object) -> DialogueEngine:
    return DialogueEngine(domain, Script(table), rng=random.Random(0), **kw)  # type: ignore[arg-type]


def test_first_message_starts_a_session_then_predicts_until_listen(domain: Domain) -> None:
    conv = Conversation.new("c1", domain)
    result = engine(domain, {"greet": "utter_greet"}).on_user_message(conv, user("greet", 10), 10)
    assert names(result) == [
        "action:action_session_start",
        "session_started:",
        "action:action_listen",
        "user:greet",
        "action:utter_greet",
        "bot:Hello!",
        "action:action_listen",
    ]
    assert result.turn_complete
    assert [b.text for b in result.bot_messages] == ["Hello!"]
    state = current_state("c1", conv.state, conv.events)
    assert state["latest_action_name"] == "action_listen"


def test_custom_action_is_pending_then_its_result_resumes_the_turn(domain: Domain) -> None:
    eng = engine(domain, {"order": "action_order", "action_order": "utter_confirm"})
    conv = Conversation.new("c1", domain)
    first = eng.on_user_message(conv, user("order", 10, item="tea"), 10)
    assert not first.turn_complete
    assert names(first)[-2:] == ["user:order", "slot:item"]  # action_extract_slots ran
    (pending,) = first.action_requests
    assert pending.action == "action_order"
    assert conv.pending == pending
    # the pending request survives storage
    assert PendingAction.from_json(pending.to_json()) == pending
    # a stray or duplicate answer changes nothing
    assert eng.on_action_result(conv, "other", "success", [], [], 11).new_events == []
    done = eng.on_action_result(
        conv,
        pending.request_id,
        "success",
        [SlotSet(timestamp=11, name="item", value="green tea")],
        [{"text": "Paid."}, {"response": "utter_confirm"}],
        11,
    )
    assert names(done) == [
        "action:action_order",
        "bot:Paid.",
        "bot:One tea coming.",  # responses render before the action's own events apply
        "slot:item",
        "action:utter_confirm",
        "bot:One green tea coming.",
        "action:action_listen",
    ]
    assert done.turn_complete
    assert conv.pending is None
    assert eng.on_action_result(conv, pending.request_id, "success", [], [], 12).new_events == []


def test_failed_action_records_no_action_event_but_an_explicit_failure(domain: Domain) -> None:
    eng = engine(domain, {"order": "action_order"})
    conv = Conversation.new("c1", domain)
    (pending,) = eng.on_user_message(conv, user("order", 10), 10).action_requests
    failed = eng.on_action_result(conv, pending.request_id, "timeout", [], [], 15, "no answer")
    assert names(failed) == [
        "bot:Sorry, something went wrong.",
        "action_failed:action_order",
        "action:action_listen",
    ]
    assert failed.new_events[1].to_dict()["reason"] == "timeout"
    assert not any(e.to_dict().get("name") == "action_order" and e.to_dict()["event"] == "action"
                   for e in conv.events)  # fmt: skip


def test_rejected_action_lets_the_policies_choose_again(domain: Domain) -> None:
    eng = engine(domain, {"order": "action_order"})
    conv = Conversation.new("c1", domain)
    (pending,) = eng.on_user_message(conv, user("order", 10), 10).action_requests
    result = eng.on_action_result(conv, pending.request_id, "rejected", [], [], 11)
    assert names(result)[0] == "action_execution_rejected:action_order"
    assert result.turn_complete


def test_paused_conversation_records_but_does_not_answer(domain: Domain) -> None:
    eng = engine(domain, {"greet": "utter_greet", "restart": "action_restart"})
    conv = Conversation.new("c1", domain)
    eng.on_user_message(conv, user("greet", 10), 10)
    conv.events.append(ConversationPaused(timestamp=11))
    conv.state = conv.state.__class__(**{**conv.state.__dict__, "paused": True})
    quiet = eng.on_user_message(conv, user("greet", 12), 12)
    assert names(quiet) == ["user:greet"]
    assert quiet.turn_complete
    restart = eng.on_user_message(conv, user("restart", 13), 13)
    assert "restart:" in names(restart)
    assert "action:action_session_start" in names(restart)  # the follow-up after a restart


def test_an_expired_session_starts_a_new_one_carrying_slots(domain: Domain) -> None:
    eng = engine(domain, {})
    conv = Conversation.new("c1", domain)
    eng.on_user_message(conv, user("order", 10, item="tea"), 10)
    later = eng.on_user_message(conv, user("greet", 10 + 61 * 60), 10 + 61 * 60)
    assert names(later)[:4] == [
        "action:action_session_start",
        "session_started:",
        "slot:item",
        "action:action_listen",
    ]
    soon = eng.on_user_message(conv, user("greet", 10 + 62 * 60), 10 + 62 * 60)
    assert names(soon)[0] == "user:greet"


def test_the_circuit_breaker_stops_a_loop_of_actions(domain: Domain) -> None:
    eng = engine(domain, {"greet": "utter_greet", "utter_greet": "utter_greet"})
    conv = Conversation.new("c1", domain)
    result = eng.on_user_message(conv, user("greet", 10), 10)
    assert names(result).count("action:utter_greet") == 10
    assert names(result)[-1] == "action:action_listen"
    assert result.turn_complete


def test_engine_keeps_events_and_state_in_step(domain: Domain, tmp_path: Path) -> None:
    from services.dialogue.tracker import replay, slot_defaults

    eng = engine(domain, {"greet": "utter_greet"})
    conv = Conversation.new("c1", domain)
    for i in range(3):
        eng.on_user_message(conv, user("greet", 10 + i), 10 + i)
    assert conv.state == replay(conv.events, slot_defaults(domain))


def reminder_event(name: str, ts: float, kill: bool = True) -> Event:
    from datetime import UTC, datetime

    from schemas.events import ReminderScheduled

    return ReminderScheduled(
        timestamp=ts,
        intent="EXTERNAL_wake",
        date_time=datetime(2030, 1, 1, tzinfo=UTC),
        name=name,
        kill_on_user_msg=kill,
    )


def test_external_trigger_is_an_external_user_message(domain: Domain) -> None:
    eng = engine(domain, {"EXTERNAL_ping": "utter_greet"})
    conv = Conversation.new("c1", domain)
    eng.on_user_message(conv, user("greet", 10), 10)
    result = eng.on_external_trigger(conv, "EXTERNAL_ping", {"item": "tea"}, 20)
    said = result.new_events[0].to_dict()
    assert said["text"] == "EXTERNAL: EXTERNAL_ping"
    assert said["metadata"] == {"is_external": True}
    assert said["input_channel"] == "rest"  # the channel the user last used
    assert said["parse_data"]["entities"] == [{"entity": "item", "value": "tea"}]
    assert names(result)[-2:] == ["bot:Hello!", "action:action_listen"]


def test_reminders_follow_rasas_kill_and_restart_rules(domain: Domain) -> None:
    eng = engine(domain, {"EXTERNAL_wake": "utter_greet"})
    conv = Conversation.new("c1", domain)
    eng.on_user_message(conv, user("greet", 10), 10)
    conv.events.append(reminder_event("r1", 11))
    conv.events.append(reminder_event("r2", 11, kill=False))
    eng.on_user_message(conv, user("greet", 12), 12)
    killed = eng.on_external_trigger(conv, "EXTERNAL_wake", [], 13, reminder="r1",
                                     kill_on_user_msg=True)  # fmt: skip
    assert killed.dropped is not None
    assert "kill_on_user_msg" in killed.dropped
    assert killed.new_events == []
    kept = eng.on_external_trigger(conv, "EXTERNAL_wake", [], 14, reminder="r2")
    assert kept.dropped is None
    assert "bot:Hello!" in names(kept)
    unknown = eng.on_external_trigger(conv, "EXTERNAL_wake", [], 15, reminder="nope")
    assert unknown.dropped is not None


def test_a_reminder_outliving_the_session_still_fires(domain: Domain) -> None:
    eng = engine(domain, {"EXTERNAL_wake": "utter_greet"})
    conv = Conversation.new("c1", domain)
    eng.on_user_message(conv, user("greet", 10), 10)
    conv.events.append(reminder_event("r1", 11, kill=False))
    late = 11 + 2 * 3600  # two hours later: the session expired
    fired = eng.on_external_trigger(conv, "EXTERNAL_wake", [], late, reminder="r1")
    assert fired.dropped is None
    assert names(fired)[0] == "action:action_session_start"
    assert "bot:Hello!" in names(fired)


CUSTOM_MAPPING_DOMAIN = """version: "3.1"
intents: [greet]
slots:
  mood:
    type: text
    mappings:
    - type: custom
      action: action_guess_mood
responses:
  utter_greet:
  - text: "Hello, {mood} one!"
actions: [action_guess_mood]
"""


def test_custom_slot_mapping_actions_run_before_predicting(tmp_path: Path) -> None:
    from schemas.events import ActiveLoop

    (tmp_path / "domain.yml").write_text(CUSTOM_MAPPING_DOMAIN)
    (tmp_path / "config.yml").write_text("language: en\n")
    domain = load_project(tmp_path).domain
    eng = engine(domain, {"greet": "utter_greet"})
    conv = Conversation.new("c1", domain)
    first = eng.on_user_message(conv, user("greet", 10), 10)
    (request,) = first.action_requests
    assert request.action == "action_guess_mood"
    assert request.extract == ()
    assert not first.turn_complete
    assert PendingAction.from_json(request.to_json()) == request
    done = eng.on_action_result(
        conv,
        request.request_id,
        "success",
        [SlotSet(timestamp=11, name="mood", value="sunny"), ActiveLoop(timestamp=11, name="x")],
        [],
        11,
    )
    assert names(done) == [
        "slot:mood",  # no action event, and the loop event is dropped, as in Rasa
        "action:utter_greet",
        "bot:Hello, sunny one!",
        "action:action_listen",
    ]
    assert done.turn_complete
