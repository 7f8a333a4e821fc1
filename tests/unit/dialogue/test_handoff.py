"""Human handoff: the `handoff:` settings of endpoints.yml, `action_handoff`, the triggers,
agents' commands, the timers' outcomes and reminders falling due while paused."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from schemas.events import (
    AgentAction,
    AgentUttered,
    ConversationPaused,
    ConversationResumed,
    Event,
    ReminderScheduled,
    UserUttered,
)
from schemas.project.domain import Domain
from schemas.project.handoff import HandoffConfig
from schemas.project.loader import load_project
from schemas.project.problems import ProjectError
from services.dialogue.engine import (
    Conversation,
    DialogueEngine,
    EngineSettings,
    Prediction,
    TurnResult,
)
from services.dialogue.handoff import (
    HandoffStatus,
    TimerCommand,
    reason_of,
    stale_timer,
    timer_commands,
)
from services.dialogue.tracker import TrackerState

DOMAIN = """version: "3.1"
intents: [greet, human_handoff, order, EXTERNAL_wake, EXTERNAL_later, restart, nlu_fallback]
responses:
  utter_greet:
  - text: "Hello!"
  utter_handoff:
  - text: "A person will be with you shortly."
  utter_no_agent_available:
  - text: "Nobody is free right now, I'm back."
  utter_agent_gone:
  - text: "Your agent left, I'm back."
  utter_default:
  - text: "Sorry?"
  utter_wake:
  - text: "Wake up!"
  utter_later:
  - text: "Later!"
actions: [action_order]
"""


class Script:
    """Last action (or the intent after action_listen) → next action."""

    def __init__(self, table: dict[str, str]) -> None:
        self.table = table

    def predict(
        self,
        events: Sequence[Event],
        state: TrackerState,
        domain: Domain,
        initial: TrackerState | None = None,
    ) -> Prediction:
        last = state.latest_action_name
        if last == "action_listen":
            key = (state.latest_message or {}).get("intent", {}).get("name") or ""
        else:
            key = last or ""
        return Prediction(self.table.get(key, "action_listen"), 0.9, "Script")


TABLE = {
    "greet": "utter_greet",
    "order": "action_order",
    "nlu_fallback": "action_default_fallback",
    "EXTERNAL_wake": "utter_wake",
    "EXTERNAL_later": "utter_later",
}


def write_project(root: Path, domain: str = DOMAIN, endpoints: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "domain.yml").write_text(domain)
    (root / "config.yml").write_text("language: en\n")
    if endpoints:
        (root / "endpoints.yml").write_text(endpoints)
    return root


@pytest.fixture(scope="module")
def domain(tmp_path_factory: pytest.TempPathFactory) -> Domain:
    return load_project(write_project(tmp_path_factory.mktemp("bot"))).domain


def engine(domain: Domain, **handoff: Any) -> DialogueEngine:
    settings = EngineSettings(handoff=HandoffConfig(**handoff))
    return DialogueEngine(domain, Script(TABLE), settings=settings, rng=random.Random(0))


def user(intent: str, ts: float, confidence: float = 1.0) -> UserUttered:
    return UserUttered(
        timestamp=ts,
        text=intent,
        input_channel="rest",
        parse_data={"intent": {"name": intent, "confidence": confidence}, "entities": []},
    )


def names(result: TurnResult) -> list[str]:
    out = []
    for event in result.new_events:
        data = event.to_dict()
        out.append(f"{data['event']}:{data.get('name') or data.get('text') or ''}")
    return out


def handed_off(eng: DialogueEngine, domain: Domain, ts: float = 10) -> Conversation:
    conv = Conversation.new("c1", domain)
    eng.on_user_message(conv, user("greet", ts - 5), ts - 5)
    eng.on_user_message(conv, user("human_handoff", ts), ts)
    assert conv.handoff is not None
    return conv


# --- endpoints.yml ----------------------------------------------------------------------------


def test_handoff_settings_default_when_endpoints_has_none(tmp_path: Path) -> None:
    project = load_project(write_project(tmp_path, endpoints='version: "3.1"\n'))
    assert project.endpoints.handoff == HandoffConfig()
    assert HandoffConfig().queue_timeout == 300
    assert HandoffConfig().request_intents == ("human_handoff",)
    assert HandoffConfig().reminders_while_paused == "deferred"


def test_handoff_settings_are_read_from_endpoints(tmp_path: Path) -> None:
    endpoints = """version: "3.1"
action_endpoint:
  url: http://localhost:5055/webhook
handoff:
  queue_timeout: 30
  on_queue_timeout: null
  agent_silence_timeout: 90.5
  on_agent_silence: utter_agent_gone
  request_intents: [human_handoff, agent]
  on_fallback: true
  low_confidence: 0.3
  on_action_failure: true
  reminders_while_paused: dropped
"""
    project = load_project(write_project(tmp_path, endpoints=endpoints))
    assert project.endpoints.handoff == HandoffConfig(
        queue_timeout=30,
        on_queue_timeout=None,
        agent_silence_timeout=90.5,
        on_agent_silence="utter_agent_gone",
        request_intents=("human_handoff", "agent"),
        on_fallback=True,
        low_confidence=0.3,
        on_action_failure=True,
        reminders_while_paused="dropped",
    )
    assert project.endpoints.action_url == "http://localhost:5055/webhook"


def test_bad_handoff_settings_name_the_file_line_and_key(tmp_path: Path) -> None:
    endpoints = """version: "3.1"
handoff:
  queue_timeout: 0
  low_confidence: 1.5
  reminders_while_paused: later
  on_fallbak: true
  on_action_failure: maybe
"""
    with pytest.raises(ProjectError) as caught:
        load_project(write_project(tmp_path, endpoints=endpoints))
    text = "\n".join(sorted(p.render(tmp_path) for p in caught.value.problems))
    queue = "endpoints.yml:3: error: `handoff.queue_timeout` should be a number of seconds more"
    assert f"{queue} than 0, not 0" in text
    assert "hint: seconds a handed-off conversation waits for an agent's claim" in text
    low = "endpoints.yml:4: error: `handoff.low_confidence` should be a number between 0 and 1"
    assert f"{low}, not 1.5" in text
    assert "endpoints.yml:5: error: `handoff.reminders_while_paused` should be one of" in text
    assert "endpoints.yml:6: error: unknown key `on_fallbak` in `handoff`" in text
    assert "did you mean `on_fallback`?" in text
    assert "endpoints.yml:7: error: `handoff.on_action_failure` should be true or false" in text


def test_a_handoff_section_that_is_not_a_mapping_is_an_error(tmp_path: Path) -> None:
    root = write_project(tmp_path, endpoints='version: "3.1"\nhandoff: yes please\n')
    with pytest.raises(
        ProjectError, match=r"endpoints.yml:2: error: `handoff` should be a mapping"
    ):
        load_project(root)


# --- starting a handoff -----------------------------------------------------------------------


def test_a_request_intent_runs_action_handoff_instead_of_predicting(domain: Domain) -> None:
    eng = engine(domain)
    conv = Conversation.new("c1", domain)
    result = eng.on_user_message(conv, user("human_handoff", 10), 10)
    assert names(result)[-4:] == [
        "action:action_handoff",
        "bot:A person will be with you shortly.",
        "pause:",
        "action:action_listen",
    ]
    executed = result.new_events[-4].to_dict()
    assert executed["policy"] == "HandoffPolicy"
    pause = result.new_events[-2]
    assert pause.to_dict() == {
        "event": "pause",
        "timestamp": 10,
        "metadata": {"handoff_reason": "requested"},
    }
    assert result.turn_complete
    assert conv.handoff == HandoffStatus("requested", 10)

    quiet = eng.on_user_message(conv, user("greet", 11), 11)
    assert names(quiet) == ["user:greet"]  # recorded, not answered
    assert quiet.turn_complete


def test_action_handoff_needs_no_utter_handoff(tmp_path: Path) -> None:
    bare = load_project(write_project(tmp_path, DOMAIN.replace("utter_handoff", "utter_x"))).domain
    conv = Conversation.new("c1", bare)
    result = engine(bare).on_user_message(conv, user("human_handoff", 10), 10)
    assert names(result)[-3:] == ["action:action_handoff", "pause:", "action:action_listen"]


def test_no_request_intents_lets_the_policies_answer(domain: Domain) -> None:
    conv = Conversation.new("c1", domain)
    result = engine(domain, request_intents=()).on_user_message(conv, user("human_handoff", 10), 10)
    assert "pause:" not in names(result)
    assert conv.handoff is None


def test_low_confidence_hands_off(domain: Domain) -> None:
    eng = engine(domain, low_confidence=0.4)
    conv = Conversation.new("c1", domain)
    sure = eng.on_user_message(conv, user("greet", 10, confidence=0.4), 10)
    assert "bot:Hello!" in names(sure)
    unsure = eng.on_user_message(conv, user("greet", 11, confidence=0.39), 11)
    assert "action:action_handoff" in names(unsure)
    assert conv.handoff is not None
    assert conv.handoff.reason == "low_confidence"


def test_the_default_fallback_hands_off_when_configured(domain: Domain) -> None:
    conv = Conversation.new("c1", domain)
    plain = engine(domain).on_user_message(conv, user("nlu_fallback", 10), 10)
    assert "pause:" not in names(plain)
    conv = Conversation.new("c2", domain)
    result = engine(domain, on_fallback=True).on_user_message(conv, user("nlu_fallback", 10), 10)
    assert names(result)[-7:] == [
        "action:action_default_fallback",
        "bot:Sorry?",
        "rewind:",
        "action:action_handoff",
        "bot:A person will be with you shortly.",
        "pause:",
        "action:action_listen",
    ]
    assert conv.handoff is not None
    assert conv.handoff.reason == "fallback"


def test_a_failed_action_hands_off_when_configured(domain: Domain) -> None:
    eng = engine(domain, on_action_failure=True)
    conv = Conversation.new("c1", domain)
    (request,) = eng.on_user_message(conv, user("order", 10), 10).action_requests
    result = eng.on_action_result(conv, request.request_id, "timeout", [], [], 11, "slow")
    assert names(result) == [
        "bot:Sorry?",
        "action_failed:action_order",
        "action:action_handoff",
        "bot:A person will be with you shortly.",
        "pause:",
        "action:action_listen",
    ]
    assert conv.handoff is not None
    assert conv.handoff.reason == "action_failure"


def test_a_custom_action_starts_a_handoff_with_its_reason(domain: Domain) -> None:
    eng = engine(domain)
    conv = Conversation.new("c1", domain)
    (request,) = eng.on_user_message(conv, user("order", 10), 10).action_requests
    pause = ConversationPaused(metadata={"handoff_reason": "vip"})
    result = eng.on_action_result(conv, request.request_id, "success", [pause], [], 11)
    assert names(result) == ["action:action_order", "pause:", "action:action_listen"]
    assert conv.handoff == HandoffStatus("vip", 11)


def test_a_plain_pause_is_rasas_pause_without_handoff(domain: Domain) -> None:
    eng = engine(domain)
    conv = Conversation.new("c1", domain)
    (request,) = eng.on_user_message(conv, user("order", 10), 10).action_requests
    eng.on_action_result(conv, request.request_id, "success", [ConversationPaused()], [], 11)
    assert conv.state.paused
    assert conv.handoff is None
    assert eng.on_handoff_timer(conv, "queue", 400, started_at=11).dropped == (
        "the conversation is no longer handed off"
    )


def test_a_declared_action_handoff_runs_as_a_custom_action(tmp_path: Path) -> None:
    custom = load_project(
        write_project(tmp_path, DOMAIN.replace("[action_order]", "[action_order, action_handoff]"))
    ).domain
    eng = engine(custom)
    conv = Conversation.new("c1", custom)
    (request,) = eng.on_user_message(conv, user("human_handoff", 10), 10).action_requests
    assert request.action == "action_handoff"
    assert request.handoff_reason == "requested"
    # the custom action's plain pause gets the trigger's reason
    result = eng.on_action_result(
        conv, request.request_id, "success", [ConversationPaused()], [], 11
    )
    assert reason_of(result.new_events[1]) == "requested"
    assert conv.handoff == HandoffStatus("requested", 11)


# --- agents -----------------------------------------------------------------------------------


def test_agent_commands_are_recorded_with_the_agents_identity(domain: Domain) -> None:
    eng = engine(domain)
    conv = handed_off(eng, domain)
    claim = eng.on_agent_command(conv, "claim", "ann", 20)
    assert [e.to_dict() for e in claim.new_events] == [
        {"event": "agent_action", "timestamp": 20, "command": "claim", "agent_id": "ann"}
    ]
    assign = eng.on_agent_command(conv, "assign", "ann", 21, assignee="bob")
    assert assign.new_events == [
        AgentAction(timestamp=21, command="assign", agent_id="ann", assignee="bob")
    ]
    assert conv.handoff is not None
    assert conv.handoff.claimed_by == "bob"
    note = eng.on_agent_command(conv, "note", "bob", 22, text="angry customer")
    assert note.new_events == [
        AgentAction(timestamp=22, command="note", agent_id="bob", text="angry customer")
    ]
    reply = eng.on_agent_command(conv, "reply", "bob", 23, text="Hi")
    assert reply.new_events == [AgentUttered(timestamp=23, text="Hi", data={"agent_id": "bob"})]
    assert conv.state.paused
    resolve = eng.on_agent_command(conv, "resolve", "bob", 24)
    assert names(resolve) == ["agent_action:", "resume:"]
    assert not conv.state.paused
    assert conv.handoff is None
    again = eng.on_agent_command(conv, "resolve", "bob", 25)
    assert names(again) == ["agent_action:"]  # not paused: nothing to resume


def test_claim_while_not_paused_is_only_recorded(domain: Domain) -> None:
    eng = engine(domain)
    conv = Conversation.new("c1", domain)
    eng.on_user_message(conv, user("greet", 10), 10)
    result = eng.on_agent_command(conv, "claim", "ann", 11)
    assert names(result) == ["agent_action:"]
    assert conv.handoff is None
    assert not conv.state.paused


def test_hand_back_resumes_and_runs_the_followup(domain: Domain) -> None:
    eng = engine(domain)
    conv = handed_off(eng, domain)
    result = eng.on_agent_command(conv, "hand_back", "ann", 30, followup_action="utter_greet")
    assert names(result) == [
        "agent_action:",
        "resume:",
        "followup:utter_greet",
        "action:utter_greet",
        "bot:Hello!",
        "action:action_listen",
    ]
    assert conv.handoff is None


# --- timers -----------------------------------------------------------------------------------


def test_the_queue_timeout_tells_the_user_and_resumes(domain: Domain) -> None:
    eng = engine(domain)
    conv = handed_off(eng, domain)
    result = eng.on_handoff_timer(conv, "queue", 310, started_at=10)
    assert result.dropped is None
    assert names(result) == [
        "action:utter_no_agent_available",
        "bot:Nobody is free right now, I'm back.",
        "resume:",
        "action:action_listen",
    ]
    assert result.turn_complete
    assert not conv.state.paused
    assert conv.handoff is None
    assert "bot:Hello!" in names(eng.on_user_message(conv, user("greet", 320), 320))


def test_a_queue_timeout_without_a_known_action_only_resumes(domain: Domain) -> None:
    eng = engine(domain, on_queue_timeout="utter_missing")
    conv = handed_off(eng, domain)
    assert names(eng.on_handoff_timer(conv, "queue", 310, started_at=10)) == [
        "resume:",
        "action:action_listen",
    ]


def test_stale_timers_are_dropped_with_a_reason(domain: Domain) -> None:
    eng = engine(domain)
    conv = handed_off(eng, domain)
    eng.on_agent_command(conv, "claim", "ann", 20)
    claimed = eng.on_handoff_timer(conv, "queue", 310, started_at=10)
    assert claimed.dropped == "ann claimed the conversation"
    assert claimed.new_events == []
    assert conv.state.paused
    replied = eng.on_agent_command(conv, "reply", "ann", 30, text="Hello")
    assert replied.new_events
    assert conv.handoff is not None
    assert conv.handoff.agent_active_at == 30
    silent = eng.on_handoff_timer(conv, "agent_silence", 620, started_at=20)
    assert silent.dropped == "the agent acted after the timer started"

    newer = handed_off(eng, domain, ts=50)
    eng.on_user_message(newer, user("human_handoff", 60), 60)  # paused: nothing happens
    eng.on_agent_command(newer, "hand_back", "ann", 70)
    eng.on_user_message(newer, user("human_handoff", 80), 80)
    assert eng.on_handoff_timer(newer, "queue", 400, started_at=50).dropped == (
        "the conversation was handed off again after the timer started"
    )


def test_agent_silence_runs_its_action_and_resumes(domain: Domain) -> None:
    eng = engine(domain, on_agent_silence="utter_agent_gone")
    conv = handed_off(eng, domain)
    eng.on_agent_command(conv, "claim", "ann", 20)
    result = eng.on_handoff_timer(conv, "agent_silence", 620, started_at=20)
    assert names(result) == [
        "action:utter_agent_gone",
        "bot:Your agent left, I'm back.",
        "resume:",
        "action:action_listen",
    ]
    silent = engine(domain)  # on_agent_silence: null
    conv = handed_off(silent, domain)
    silent.on_agent_command(conv, "claim", "ann", 20)
    assert names(silent.on_handoff_timer(conv, "agent_silence", 620, started_at=20)) == [
        "resume:",
        "action:action_listen",
    ]


def test_a_custom_outcome_action_runs_then_the_conversation_resumes(domain: Domain) -> None:
    eng = engine(domain, on_queue_timeout="action_order")
    conv = handed_off(eng, domain)
    result = eng.on_handoff_timer(conv, "queue", 310, started_at=10)
    (request,) = result.action_requests
    assert request.resume_after
    assert conv.state.paused
    done = eng.on_action_result(
        conv, request.request_id, "success", [], [{"text": "Sorry for the wait"}], 311
    )
    assert names(done) == [
        "action:action_order",
        "bot:Sorry for the wait",
        "resume:",
        "action:action_listen",
    ]
    assert not conv.state.paused
    failing = handed_off(eng, domain)
    (request,) = eng.on_handoff_timer(failing, "queue", 310, started_at=10).action_requests
    failed = eng.on_action_result(failing, request.request_id, "failed", [], [], 311, "boom")
    assert names(failed) == ["action_failed:action_order", "resume:", "action:action_listen"]


# --- reminders while paused -------------------------------------------------------------------


def reminder(name: str, ts: float, intent: str = "EXTERNAL_wake", kill: bool = False) -> Event:
    return ReminderScheduled(
        timestamp=ts,
        intent=intent,
        date_time=datetime(2030, 1, 1, tzinfo=UTC),
        name=name,
        kill_on_user_msg=kill,
    )


def test_reminders_are_deferred_until_the_conversation_resumes(domain: Domain) -> None:
    eng = engine(domain)
    conv = Conversation.new("c1", domain)
    eng.on_user_message(conv, user("greet", 5), 5)
    conv.events += [reminder("r1", 6), reminder("r2", 6, "EXTERNAL_later"), reminder("r3", 6)]
    conv.events.append(reminder("k", 6, kill=True))
    eng.on_user_message(conv, user("human_handoff", 10), 10)
    first = eng.on_external_trigger(conv, "EXTERNAL_wake", [], 20, reminder="r1")
    assert first.deferred == "the conversation is paused (reminders_while_paused: deferred)"
    assert first.new_events == []
    assert first.dropped is None
    eng.on_external_trigger(conv, "EXTERNAL_later", [], 21, reminder="r2")
    # dropped at once: the user spoke (asking for a human) after it was scheduled
    killed = eng.on_external_trigger(conv, "EXTERNAL_wake", [], 22, reminder="k",
                                     kill_on_user_msg=True)  # fmt: skip
    assert killed.dropped is not None
    assert [d["reminder"] for d in conv.deferred] == ["r1", "r2"]

    result = eng.on_agent_command(conv, "hand_back", "ann", 30)
    assert names(result) == [
        "agent_action:",
        "resume:",
        "user:EXTERNAL: EXTERNAL_wake",
        "action:utter_wake",
        "bot:Wake up!",
        "action:action_listen",
        "user:EXTERNAL: EXTERNAL_later",
        "action:utter_later",
        "bot:Later!",
        "action:action_listen",
    ]
    assert conv.deferred == []


def test_deferred_reminders_are_judged_when_they_fire(domain: Domain) -> None:
    eng = engine(domain)
    conv = Conversation.new("c1", domain)
    eng.on_user_message(conv, user("human_handoff", 10), 10)
    conv.events.append(reminder("k", 11, kill=True))
    assert eng.on_external_trigger(conv, "EXTERNAL_wake", [], 20, reminder="k",
                                   kill_on_user_msg=True).deferred  # fmt: skip
    eng.on_user_message(conv, user("greet", 25), 25)  # the user speaks while paused
    result = eng.on_handoff_timer(conv, "queue", 310, started_at=10)
    assert "user:EXTERNAL: EXTERNAL_wake" not in names(result)
    assert conv.deferred == []


def test_reminders_can_be_dropped_or_delivered_while_paused(domain: Domain) -> None:
    dropping = engine(domain, reminders_while_paused="dropped")
    conv = Conversation.new("c1", domain)
    dropping.on_user_message(conv, user("human_handoff", 10), 10)
    conv.events.append(reminder("r1", 11))
    dropped = dropping.on_external_trigger(conv, "EXTERNAL_wake", [], 20, reminder="r1")
    assert dropped.dropped == "the conversation is paused (reminders_while_paused: dropped)"
    assert conv.deferred == []
    assert dropped.new_events == []

    delivering = engine(domain, reminders_while_paused="delivered")
    conv = Conversation.new("c2", domain)
    delivering.on_user_message(conv, user("human_handoff", 10), 10)
    conv.events.append(reminder("r1", 11))
    delivered = delivering.on_external_trigger(conv, "EXTERNAL_wake", [], 20, reminder="r1")
    assert names(delivered) == [
        "user:EXTERNAL: EXTERNAL_wake",
        "action:utter_wake",
        "bot:Wake up!",
        "action:action_listen",
    ]
    assert conv.state.paused  # still handed off


# --- the timer requests a turn's events cause ---------------------------------------------------


def test_timer_commands_follow_the_handoff() -> None:
    config = HandoffConfig(queue_timeout=60, agent_silence_timeout=120)
    pause = ConversationPaused(timestamp=10, metadata={"handoff_reason": "requested"})
    started = timer_commands(None, [UserUttered(timestamp=10, text="x"), pause], config)
    assert started == [TimerCommand(1, "start", "queue", 10, 70, "requested")]
    queued = HandoffStatus("requested", 10)
    claim = AgentAction(timestamp=20, command="claim", agent_id="ann")
    note = AgentAction(timestamp=21, command="note", agent_id="ann", text="n")
    reply = AgentUttered(timestamp=30, text="hi")
    assert timer_commands(queued, [reply, claim, note, reply], config) == [
        TimerCommand(1, "cancel", "queue", 20),
        TimerCommand(1, "start", "agent_silence", 20, 140, "requested"),
        TimerCommand(3, "start", "agent_silence", 30, 150, "requested"),
    ]
    resume = ConversationResumed(timestamp=40)
    assert timer_commands(queued, [resume], config) == [TimerCommand(0, "cancel_all", None, 40)]
    assert timer_commands(None, [ConversationPaused(timestamp=1), resume, claim], config) == []


def test_stale_timer_reasons() -> None:
    status = HandoffStatus("requested", 10)
    assert stale_timer(status, "queue", 10) is None
    assert stale_timer(None, "queue", 10) == "the conversation is no longer handed off"
    assert stale_timer(status, "agent_silence", 10) == "no agent holds the conversation"
    assert stale_timer(status, "nap", 10) == "unknown handoff timer 'nap'"


def test_a_followup_after_messages_during_the_pause_does_not_undo_the_hand_back(
    domain: Domain,
) -> None:
    """The user spoke while paused; the agent hands back with a follow-up: it runs and the bot
    listens (a policy predicting there would fall back, and the fallback's rewind would undo
    the resume); the user's next message is answered."""
    eng = engine(domain)
    conv = handed_off(eng, domain)
    eng.on_agent_command(conv, "claim", "ann", 20)
    eng.on_user_message(conv, user("order", 21), 21)
    result = eng.on_agent_command(conv, "hand_back", "ann", 30, followup_action="utter_greet")
    assert names(result)[-3:] == ["action:utter_greet", "bot:Hello!", "action:action_listen"]
    assert not conv.state.paused
    answered = eng.on_user_message(conv, user("greet", 40), 40)
    assert "bot:Hello!" in names(answered)
