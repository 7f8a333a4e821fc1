"""The tracker reducer: Rasa 3.x ``apply_to`` semantics, applied events and ``current_state``."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.events import (
    ActionExecuted,
    ActionExecutionRejected,
    ActionReverted,
    ActiveLoop,
    AgentUttered,
    AllSlotsReset,
    BotUttered,
    ConversationPaused,
    ConversationResumed,
    DefinePrevUserUtteredFeaturization,
    EntitiesAdded,
    Event,
    FollowupAction,
    LoopInterrupted,
    ReminderCancelled,
    ReminderScheduled,
    Restarted,
    SessionStarted,
    SlotSet,
    StoryExported,
    UserUtteranceReverted,
    UserUttered,
    parse_event,
)
from schemas.project.domain import Action, Domain, Form, Slot
from schemas.project.problems import Source
from services.dialogue import tracker
from services.dialogue.tracker import (
    TrackerState,
    Verbosity,
    applied_events,
    apply,
    current_state,
    initial_state,
    replay,
    slot_defaults,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "rasa_events"
LOOP = "booking_form"
DEFAULTS: dict[str, Any] = {
    "city": None,
    "guests": 2,
    "toppings": [],
    "requested_slot": None,
    "session_started_metadata": None,
}
EMPTY_MESSAGE: dict[str, Any] = {
    "intent": {},
    "entities": [],
    "text": None,
    "message_id": None,
    "metadata": {},
}
CITY = {"entity": "city", "value": "Paris", "start": 16, "end": 21, "extractor": "DIETClassifier"}


# --- builders ---------------------------------------------------------------


def user(
    text: str | None,
    intent: str | None,
    ts: float,
    *,
    entities: Sequence[dict[str, Any]] = (),
    channel: str | None = "rest",
    message_id: str | None = None,
) -> UserUttered:
    parse_data: dict[str, Any] = {
        "intent": {"name": intent, "confidence": 0.9} if intent else {},
        "entities": list(entities),
    }
    return UserUttered(
        text=text,
        parse_data=parse_data,
        input_channel=channel,
        message_id=message_id,
        timestamp=ts,
    )


def act(name: str, ts: float) -> ActionExecuted:
    return ActionExecuted(name=name, timestamp=ts)


def run(events: Sequence[Event], defaults: dict[str, Any] | None = None) -> TrackerState:
    return replay(events, DEFAULTS if defaults is None else defaults)


def state_of(sender: str, events: Sequence[Event], verbosity: Verbosity) -> dict[str, Any]:
    return current_state(sender, run(events), events, verbosity)


def dicts(events: Sequence[Event]) -> list[dict[str, Any]]:
    return [e.to_dict() for e in events]


def opening(channel: str | None = "rest") -> list[Event]:
    """A session start, then the user books a table in Paris."""
    return [
        act("action_session_start", 1),
        SessionStarted(timestamp=2),
        act("action_listen", 3),
        user("a table in Paris", "book", 4, entities=[CITY], channel=channel, message_id="m1"),
    ]


# --- the initial state ------------------------------------------------------


def test_a_new_tracker_looks_like_a_fresh_rasa_tracker() -> None:
    assert current_state("alice", initial_state(DEFAULTS), []) == {
        "sender_id": "alice",
        "slots": DEFAULTS,
        "latest_message": EMPTY_MESSAGE,
        "latest_event_time": None,
        "followup_action": "action_listen",
        "paused": False,
        "events": [],
        "latest_input_channel": None,
        "active_loop": {},
        "latest_action": {},
        "latest_action_name": None,
    }


def test_replay_of_nothing_is_the_initial_state() -> None:
    assert run([]) == initial_state(DEFAULTS)


def test_initial_slots_are_copies_of_the_defaults() -> None:
    state = initial_state(DEFAULTS)
    assert state.slots == DEFAULTS
    assert state.slots["toppings"] is not DEFAULTS["toppings"]


# --- one behaviour per event type -------------------------------------------


def test_user_uttered_sets_latest_message_and_channel_and_clears_followup() -> None:
    events = [FollowupAction(name="utter_x", timestamp=1), *opening("socketio")]
    state = run(events)
    assert state.latest_message == {
        "intent": {"name": "book", "confidence": 0.9},
        "entities": [CITY],
        "text": "a table in Paris",
        "message_id": "m1",
        "metadata": {},
    }
    assert state.latest_input_channel == "socketio"
    assert state.followup_action is None
    assert state.use_text_for_featurization is None


@pytest.mark.parametrize(
    ("text", "intent", "expected"),
    [("hello", None, True), (None, "greet", False), ("hello", "greet", None)],
)
def test_user_uttered_guesses_featurization_as_rasa(
    text: str | None, intent: str | None, expected: bool | None
) -> None:
    assert run([user(text, intent, 1)]).use_text_for_featurization is expected


def test_user_uttered_with_null_entities_exposes_an_empty_list() -> None:
    event = parse_event(
        {"event": "user", "timestamp": 1, "text": "hi", "parse_data": {"entities": None}}
    )
    state = run([event])
    assert state.latest_message is not None
    assert state.latest_message["entities"] == []


def test_bot_uttered_sets_only_the_latest_bot_utterance() -> None:
    before = run(opening())
    bot = BotUttered(text="Which day?", data={"buttons": [{"title": "Today"}]}, timestamp=5)
    after = apply(before, bot, opening(), DEFAULTS)
    assert after.latest_bot_utterance == {
        "text": "Which day?",
        "data": {"buttons": [{"title": "Today"}]},
        "metadata": {},
    }
    assert after == replace(
        before, latest_bot_utterance=after.latest_bot_utterance, latest_event_time=5
    )


def test_action_executed_sets_latest_action_and_clears_followup() -> None:
    state = run([*opening(), FollowupAction(name="utter_ok", timestamp=5), act("utter_ok", 6)])
    assert state.latest_action == {"action_name": "utter_ok"}
    assert state.latest_action_name == "utter_ok"
    assert state.followup_action is None


def test_an_end_to_end_action_is_known_by_its_text() -> None:
    e2e = ActionExecuted(name=None, action_text="Sure, which city?", timestamp=5)
    state = run([*opening(), e2e])
    assert state.latest_action == {"action_text": "Sure, which city?"}
    assert state.latest_action_name == "Sure, which city?"


def test_slot_set_sets_a_known_slot() -> None:
    state = run([*opening(), SlotSet(name="city", value="Paris", timestamp=5)])
    assert state.slots == {**DEFAULTS, "city": "Paris"}
    assert state.get_slot("city") == "Paris"


def test_slot_set_of_an_unknown_slot_is_logged_ignored_and_kept_in_history(
    caplog: pytest.LogCaptureFixture,
) -> None:
    events = [*opening(), SlotSet(name="colour", value="red", timestamp=5)]
    with caplog.at_level(logging.ERROR, logger="services.dialogue.tracker"):
        state = run(events)
    assert state.slots == DEFAULTS
    assert state.get_slot("colour") is None
    [record] = caplog.records
    assert "Tried to set non existent slot 'colour'" in record.getMessage()
    assert current_state("s", state, events, Verbosity.ALL)["events"][-1] == {
        "event": "slot",
        "timestamp": 5,
        "name": "colour",
        "value": "red",
    }


def test_active_loop_activates_with_the_latest_message_as_trigger() -> None:
    state = run([*opening(), act(LOOP, 5), ActiveLoop(name=LOOP, timestamp=6)])
    assert state.active_loop == {
        "name": LOOP,
        "is_interrupted": False,
        "rejected": False,
        "trigger_message": state.latest_message,
    }
    assert state.active_loop_name == LOOP


def test_active_loop_without_any_user_message_is_triggered_by_the_empty_message() -> None:
    state = run([ActiveLoop(name=LOOP, timestamp=1)])
    assert state.active_loop is not None
    assert state.active_loop["trigger_message"] == EMPTY_MESSAGE


def test_active_loop_with_null_name_deactivates() -> None:
    events = [*opening(), ActiveLoop(name=LOOP, timestamp=5), ActiveLoop(name=None, timestamp=6)]
    state = run(events)
    assert state.active_loop is None
    assert state.active_loop_name is None
    assert current_state("s", state, events)["active_loop"] == {}


def test_loop_interrupted_flags_the_active_loop() -> None:
    events = [
        *opening(),
        ActiveLoop(name=LOOP, timestamp=5),
        LoopInterrupted(is_interrupted=True, timestamp=6),
    ]
    state = run(events)
    assert state.is_active_loop_interrupted
    resumed = run([*events, LoopInterrupted(is_interrupted=False, timestamp=7)])
    assert not resumed.is_active_loop_interrupted


def test_loop_interrupted_without_a_loop_changes_nothing() -> None:
    before = run(opening())
    after = apply(before, LoopInterrupted(is_interrupted=True, timestamp=5), opening(), DEFAULTS)
    assert after == replace(before, latest_event_time=5)


def test_action_execution_rejected_only_rejects_the_active_loop() -> None:
    events = [*opening(), ActiveLoop(name=LOOP, timestamp=5)]
    other = run([*events, ActionExecutionRejected(name="action_other", timestamp=6)])
    assert not other.is_active_loop_rejected
    rejected = run([*events, ActionExecutionRejected(name=LOOP, timestamp=6)])
    assert rejected.is_active_loop_rejected
    assert not run([ActionExecutionRejected(name=LOOP, timestamp=1)]).is_active_loop_rejected


def test_any_action_ends_an_interruption_but_only_the_loop_ends_a_rejection() -> None:
    events = [
        *opening(),
        ActiveLoop(name=LOOP, timestamp=5),
        ActionExecutionRejected(name=LOOP, timestamp=6),
        LoopInterrupted(is_interrupted=True, timestamp=7),
    ]
    other = run([*events, act("utter_weather", 8)])
    assert other.active_loop is not None
    assert (other.active_loop["is_interrupted"], other.active_loop["rejected"]) == (False, True)
    again = run([*events, act(LOOP, 8)])
    assert again.active_loop is not None
    assert (again.active_loop["is_interrupted"], again.active_loop["rejected"]) == (False, False)


def test_restart_resets_everything_and_asks_for_a_session_start() -> None:
    events = [
        *opening("socketio"),
        SlotSet(name="city", value="Paris", timestamp=5),
        ActiveLoop(name=LOOP, timestamp=6),
        BotUttered(text="How many?", timestamp=7),
        ConversationPaused(timestamp=8),
        Restarted(timestamp=9),
    ]
    state = run(events)
    assert state == TrackerState(
        slots=DEFAULTS,
        latest_message=EMPTY_MESSAGE,
        latest_action={},
        latest_bot_utterance={"text": None, "data": {}, "metadata": {}},
        active_loop=None,
        followup_action="action_session_start",
        paused=False,
        # Rasa reads the channel from every event, reverted or not.
        latest_input_channel="socketio",
        latest_event_time=9,
        use_text_for_featurization=None,
    )


def test_all_slots_reset_resets_only_the_slots() -> None:
    events = [
        *opening(),
        SlotSet(name="city", value="Paris", timestamp=5),
        SlotSet(name="guests", value=4, timestamp=6),
    ]
    before = run(events)
    after = apply(before, AllSlotsReset(timestamp=7), events, DEFAULTS)
    assert after == replace(before, slots=DEFAULTS, latest_event_time=7)


def test_followup_action_sets_the_next_action() -> None:
    assert run([*opening(), FollowupAction(name="utter_bye", timestamp=5)]).followup_action == (
        "utter_bye"
    )


def test_pause_and_resume() -> None:
    paused = [*opening(), ConversationPaused(timestamp=5)]
    assert run(paused).paused
    assert not run([*paused, ConversationResumed(timestamp=6)]).paused


def test_session_started_resets_like_restart_but_expects_action_listen() -> None:
    events = [
        *opening(),
        SlotSet(name="city", value="Paris", timestamp=5),
        act("action_session_start", 6),
        SessionStarted(timestamp=7),
        SlotSet(name="guests", value=3, timestamp=8),
    ]
    state = run(events)
    assert state.slots == {**DEFAULTS, "guests": 3}
    assert state.followup_action == "action_listen"
    assert state.latest_action == {}
    assert state.latest_message == EMPTY_MESSAGE
    assert applied_events(events) == [events[-1]]


def test_entities_added_extends_the_latest_message_after_action_listen() -> None:
    extra = {"entity": "time", "value": "tonight"}
    state = run([*opening(), EntitiesAdded(entities=[CITY, extra], timestamp=5)])
    assert state.latest_message is not None
    assert state.latest_message["entities"] == [CITY, extra]


def test_entities_added_after_another_action_is_ignored() -> None:
    events = [*opening(), act("utter_ok", 5)]
    state = run([*events, EntitiesAdded(entities=[{"entity": "time"}], timestamp=6)])
    assert state.latest_message is not None
    assert state.latest_message["entities"] == [CITY]


def test_user_featurization_applies_only_after_action_listen() -> None:
    flag = DefinePrevUserUtteredFeaturization(use_text_for_featurization=True, timestamp=5)
    assert run([*opening(), flag]).use_text_for_featurization is True
    late = flag.stamped(6)
    assert run([*opening(), act("utter_ok", 5), late]).use_text_for_featurization is None


@pytest.mark.parametrize(
    "event",
    [
        AgentUttered(text="A human takes over.", timestamp=5),
        ReminderScheduled(
            intent="EXTERNAL_remind",
            date_time=datetime(2024, 6, 1, 12, tzinfo=UTC),
            name="r1",
            timestamp=5,
        ),
        ReminderCancelled(name="r1", timestamp=5),
        StoryExported(path="stories.yml", timestamp=5),
    ],
    ids=lambda e: e.event,
)
def test_events_without_state_effects_only_move_the_clock(event: Event) -> None:
    before = run(opening())
    after = apply(before, event, opening(), DEFAULTS)
    assert after == replace(before, latest_event_time=5)


def test_story_exported_writes_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "exported.yml"
    run([*opening(), StoryExported(path=str(target), timestamp=5)])
    run([*opening(), StoryExported(path="relative.yml", timestamp=5)])
    assert list(tmp_path.iterdir()) == []


def test_latest_event_time_is_the_last_events_timestamp_even_a_rewind() -> None:
    assert run(opening()).latest_event_time == 4
    assert run([*opening(), UserUtteranceReverted(timestamp=9)]).latest_event_time == 9


# --- rewind and undo --------------------------------------------------------


def test_rewind_after_a_user_message_and_bot_reply() -> None:
    first_turn = [
        *opening("socketio"),
        act("utter_ask_day", 5),
        BotUttered(text="Which day?", timestamp=6),
    ]
    second_turn = [
        act("action_listen", 7),
        user("tomorrow, with Bob", "inform", 8, channel="rest"),
        SlotSet(name="guests", value=2, timestamp=9),
        SlotSet(name="city", value="Rome", timestamp=10),
        act("utter_confirm", 11),
        BotUttered(text="Done.", timestamp=12),
    ]
    events = [*first_turn, *second_turn, UserUtteranceReverted(timestamp=13)]
    state = run(events)
    assert state == replace(run(first_turn), latest_input_channel="rest", latest_event_time=13)
    assert applied_events(events) == first_turn[2:]


def test_rewind_of_the_only_user_message_leaves_an_empty_tracker() -> None:
    events = [*opening(), act("utter_hi", 5), UserUtteranceReverted(timestamp=6)]
    state = run(events)
    assert applied_events(events) == []
    assert state.latest_message == EMPTY_MESSAGE
    assert state.latest_action == {}
    assert state.followup_action == "action_listen"
    assert state.latest_input_channel == "rest"


def test_undo_reverts_the_last_action_and_the_slots_it_set() -> None:
    before_action = [*opening(), SlotSet(name="city", value="Paris", timestamp=5)]
    events = [
        *before_action,
        act("action_check_availability", 6),
        SlotSet(name="guests", value=8, timestamp=7),
        SlotSet(name="toppings", value=["ham"], timestamp=8),
        BotUttered(text="Booked!", timestamp=9),
        ActionReverted(timestamp=10),
    ]
    state = run(events)
    assert state.slots == {**DEFAULTS, "city": "Paris"}
    assert state.latest_action == {"action_name": "action_listen"}
    assert state.latest_bot_utterance == {"text": None, "data": {}, "metadata": {}}
    assert state == replace(run(before_action), latest_event_time=10)
    assert applied_events(events) == before_action[2:]


def test_rewind_replays_pause_and_loop_state_that_still_applies() -> None:
    events = [
        *opening(),
        act(LOOP, 5),
        ActiveLoop(name=LOOP, timestamp=6),
        ConversationPaused(timestamp=7),
        act("action_listen", 8),
        user("what's the weather?", "ask_weather", 9),
        UserUtteranceReverted(timestamp=10),
    ]
    state = run(events)
    assert state.paused
    assert state.active_loop_name == LOOP
    assert state.latest_action_name == LOOP


def test_a_rewind_after_a_restart_forgets_the_session_start_followup() -> None:
    # Rasa's _reset() sets action_listen, and the restart is not replayed.
    state = run([*opening(), Restarted(timestamp=5), UserUtteranceReverted(timestamp=6)])
    assert state.followup_action == "action_listen"


# --- applied events and loops -----------------------------------------------


def loop_turns() -> list[Event]:
    return [
        *opening(),
        act(LOOP, 5),
        ActiveLoop(name=LOOP, timestamp=6),
        SlotSet(name="requested_slot", value="guests", timestamp=7),
        BotUttered(text="How many guests?", timestamp=8),
        act("action_listen", 9),
    ]


def test_a_happy_loop_execution_collapses_onto_the_previous_one() -> None:
    events = [
        *loop_turns(),
        user("four", "inform", 10),
        SlotSet(name="guests", value=4, timestamp=11),
        act(LOOP, 12),
    ]
    # The listen, the answer and the second run are gone; guests = 4 stays.
    assert applied_events(events) == [*events[2:8], events[10]]


def test_a_rejected_loop_keeps_its_unhappy_path() -> None:
    events = [
        *loop_turns(),
        user("what's the weather?", "ask_weather", 10),
        ActionExecutionRejected(name=LOOP, timestamp=11),
        act("utter_weather", 12),
        act(LOOP, 13),
    ]
    assert applied_events(events) == events[2:]


def test_another_action_after_the_user_keeps_the_unhappy_path() -> None:
    events = [
        *loop_turns(),
        user("what's the weather?", "ask_weather", 10),
        act("utter_weather", 11),
        act(LOOP, 12),
    ]
    assert applied_events(events) == events[2:]


def test_a_deactivated_loop_runs_again_as_a_first_execution() -> None:
    events = [
        *loop_turns(),
        ActiveLoop(name=None, timestamp=10),
        user("again", "book", 11),
        act(LOOP, 12),
    ]
    assert applied_events(events) == events[2:]


def test_the_loop_collapse_keeps_featurization_out_and_other_events_in() -> None:
    events = [
        *loop_turns(),
        user("four", "inform", 10),
        DefinePrevUserUtteredFeaturization(use_text_for_featurization=False, timestamp=11),
        EntitiesAdded(entities=[{"entity": "number", "value": 4}], timestamp=12),
        act(LOOP, 13),
    ]
    assert applied_events(events) == [*events[2:8], events[11]]


def test_restarts_cut_applied_events() -> None:
    events = [*opening(), Restarted(timestamp=5), act("action_session_start", 6)]
    assert applied_events(events) == [events[-1]]


# --- current_state ----------------------------------------------------------


def test_current_state_of_a_conversation_inside_a_loop() -> None:
    events = [
        *loop_turns(),
        user("weather?", "ask_weather", 10, channel="socketio", message_id="m2"),
        ActionExecutionRejected(name=LOOP, policy="RulePolicy", timestamp=11),
        act("utter_weather", 12),
        BotUttered(text="Sunny.", timestamp=13),
        LoopInterrupted(is_interrupted=True, timestamp=14),
    ]
    trigger = {
        "intent": {"name": "book", "confidence": 0.9},
        "entities": [CITY],
        "text": "a table in Paris",
        "message_id": "m1",
        "metadata": {},
    }
    assert state_of("bob", events, Verbosity.AFTER_RESTART) == {
        "sender_id": "bob",
        "slots": {**DEFAULTS, "requested_slot": "guests"},
        "latest_message": {
            "intent": {"name": "ask_weather", "confidence": 0.9},
            "entities": [],
            "text": "weather?",
            "message_id": "m2",
            "metadata": {},
        },
        "latest_event_time": 14,
        "followup_action": None,
        "paused": False,
        "events": dicts(events),
        "latest_input_channel": "socketio",
        "active_loop": {
            "name": LOOP,
            "is_interrupted": True,
            "rejected": True,
            "trigger_message": trigger,
        },
        "latest_action": {"action_name": "utter_weather"},
        "latest_action_name": "utter_weather",
    }


def test_current_state_events_per_verbosity_around_a_restart() -> None:
    before = [*opening(), SlotSet(name="city", value="Paris", timestamp=5)]
    after = [
        act("action_session_start", 7),
        SessionStarted(timestamp=8),
        act("action_listen", 9),
        user("hi", "greet", 10),
        act("utter_hi", 11),
        UserUtteranceReverted(timestamp=12),
    ]
    events = [*before, Restarted(timestamp=6), *after]
    assert state_of("s", events, Verbosity.ALL)["events"] == dicts(events)
    assert state_of("s", events, Verbosity.AFTER_RESTART)["events"] == dicts(after)
    assert state_of("s", events, Verbosity.APPLIED)["events"] == []
    assert state_of("s", events, Verbosity.NONE)["events"] is None
    assert current_state("s", run(events), events)["events"] == dicts(after)


def test_current_state_is_a_copy() -> None:
    events = [*loop_turns()]
    state = run(events)
    shown = current_state("s", state, events)
    shown["slots"]["city"] = "changed"
    shown["active_loop"]["trigger_message"]["text"] = "changed"
    assert state == run(events)


# --- storage, purity, folding -----------------------------------------------


def test_state_json_round_trip() -> None:
    state = run([*loop_turns(), LoopInterrupted(is_interrupted=True, timestamp=10)])
    stored = json.loads(json.dumps(state.to_json()))
    assert stored["version"] == tracker.STATE_VERSION
    assert TrackerState.from_json(stored) == state


@pytest.mark.parametrize(
    ("change", "message"),
    [({"version": 99}, "version"), ({"slots": None}, "slots"), ({"paused": ...}, "paused")],
)
def test_state_json_rejects_other_layouts(change: dict[str, Any], message: str) -> None:
    data = run(opening()).to_json()
    data.update(change)
    data = {k: v for k, v in data.items() if v is not ...}
    with pytest.raises(ValueError, match=message):
        TrackerState.from_json(data)


def test_apply_mutates_neither_state_nor_event() -> None:
    events = [*loop_turns(), user("hi", "greet", 10, entities=[CITY])]
    state = run(events)
    snapshot = json.dumps(state.to_json())
    added = EntitiesAdded(entities=[{"entity": "x", "value": 1}], timestamp=11)
    after = apply(state, added, events, DEFAULTS)
    assert after.latest_message is not None
    after.latest_message["entities"].append({"entity": "y"})
    assert json.dumps(state.to_json()) == snapshot
    assert events[-1].to_dict()["parse_data"]["entities"] == [CITY]
    assert added.entities == [{"entity": "x", "value": 1}]


entity_dicts = st.fixed_dictionaries(
    {"entity": st.sampled_from(["city", "time"]), "value": st.sampled_from(["a", "b"])}
)
any_event: st.SearchStrategy[Event] = st.one_of(
    st.builds(
        user,
        text=st.sampled_from(["hi", "four", None]),
        intent=st.sampled_from(["greet", "inform", None]),
        ts=st.just(0.0),
        entities=st.lists(entity_dicts, max_size=2),
        channel=st.sampled_from(["rest", "socketio", None]),
    ),
    st.builds(act, st.sampled_from(["action_listen", LOOP, "utter_hi"]), st.just(0.0)),
    st.just(ActionExecuted(name=None, action_text="e2e text")),
    st.builds(
        SlotSet,
        name=st.sampled_from(["city", "guests", "unknown"]),
        value=st.sampled_from([None, "Paris", 3, ["x"]]),
    ),
    st.builds(ActiveLoop, name=st.sampled_from([LOOP, None])),
    st.builds(LoopInterrupted, is_interrupted=st.booleans()),
    st.builds(ActionExecutionRejected, name=st.sampled_from([LOOP, "utter_hi"])),
    st.builds(BotUttered, text=st.sampled_from(["ok", None])),
    st.builds(EntitiesAdded, entities=st.lists(entity_dicts, max_size=2)),
    st.builds(DefinePrevUserUtteredFeaturization, use_text_for_featurization=st.booleans()),
    st.builds(FollowupAction, name=st.just("utter_hi")),
    st.sampled_from(
        [
            Restarted(),
            SessionStarted(),
            AllSlotsReset(),
            UserUtteranceReverted(),
            ActionReverted(),
            ConversationPaused(),
            ConversationResumed(),
            AgentUttered(text="human"),
        ]
    ),
)
conversations = st.lists(any_event, max_size=30).map(
    lambda events: [e.stamped(float(i)) for i, e in enumerate(events)]
)


@settings(max_examples=150, deadline=None)
@given(conversations)
def test_replay_equals_folding_apply_one_by_one(events: list[Event]) -> None:
    state = initial_state(DEFAULTS)
    history: list[Event] = []
    for event in events:
        state = apply(state, event, tuple(history), DEFAULTS)
        history.append(event)
    assert replay(events, DEFAULTS) == state
    assert state.latest_event_time == (events[-1].timestamp if events else None)


@settings(max_examples=100, deadline=None)
@given(conversations)
def test_the_input_channel_is_the_last_user_messages_even_a_reverted_one(
    events: list[Event],
) -> None:
    users = [e for e in events if isinstance(e, UserUttered)]
    assert run(events).latest_input_channel == (users[-1].input_channel if users else None)


@settings(max_examples=100, deadline=None)
@given(conversations)
def test_any_state_survives_json_storage(events: list[Event]) -> None:
    state = run(events)
    assert TrackerState.from_json(json.loads(json.dumps(state.to_json()))) == state


@settings(max_examples=100, deadline=None)
@given(conversations)
def test_applied_events_never_hold_restarts_or_reverts(events: list[Event]) -> None:
    applied = applied_events(events)
    assert not any(
        isinstance(e, Restarted | SessionStarted | UserUtteranceReverted | ActionReverted)
        for e in applied
    )
    assert all(any(e is original for original in events) for e in applied)


# --- slot defaults from a domain --------------------------------------------


def test_slot_defaults_add_the_slots_rasa_adds() -> None:
    src = Source(Path("domain.yml"))
    domain = Domain(
        slots={
            "city": Slot("city", "text", src),
            "guests": Slot("guests", "float", src, initial_value=2.0),
            "toppings": Slot("toppings", "list", src, initial_value=["cheese"]),
        },
        forms={LOOP: Form(LOOP, src, required_slots=("city",))},
        actions={"action_query_knowledge_base": Action("action_query_knowledge_base", src)},
    )
    assert slot_defaults(domain) == {
        "city": None,
        "guests": 2.0,
        "toppings": ["cheese"],
        "requested_slot": None,
        "knowledge_base_listed_objects": None,
        "knowledge_base_last_object": None,
        "knowledge_base_last_object_type": None,
        "session_started_metadata": None,
    }
    assert slot_defaults(Domain()) == {"session_started_metadata": None}


# --- events Rasa wrote ------------------------------------------------------


def fixture_events() -> list[Event]:
    events: list[Event] = []
    for path in sorted(FIXTURES.glob("*.json")):
        events.extend(parse_event(item) for item in json.loads(path.read_text()))
    return events


FIXTURE_SLOTS: dict[str, Any] = {
    name: None for name in ("city", "guests", "price", "toppings", "requested_slot", "profile")
}


@pytest.mark.parametrize("event", fixture_events(), ids=lambda e: e.event)
def test_every_rasa_written_event_applies(event: Event) -> None:
    state = apply(initial_state(FIXTURE_SLOTS), event, [], FIXTURE_SLOTS)
    assert TrackerState.from_json(json.loads(json.dumps(state.to_json()))) == state


def test_a_conversation_of_rasa_written_events() -> None:
    timeline = sorted(
        (e for e in fixture_events() if e.timestamp is not None),
        key=lambda e: e.timestamp or 0.0,
    )
    until = [e for e in timeline if (e.timestamp or 0.0) <= 1717171723.0]
    state = replay(until, FIXTURE_SLOTS)
    assert state.latest_message is not None
    assert state.latest_message["intent"]["name"] == "book_flight"
    assert "response_selector" in state.latest_message
    entities = state.latest_message["entities"]
    # The four NLU entities, then the one an EntitiesAdded brought (after action_listen).
    assert [(e["entity"], e.get("role")) for e in entities] == [
        ("city", "departure"),
        ("city", "destination"),
        ("pizza_size", None),
        ("time", None),
        ("city", "departure"),
    ]
    assert state.latest_input_channel == "rest"
    assert state.use_text_for_featurization is True
    assert state.slots == {
        "city": "Berlin",
        "guests": 4,
        "price": 12.5,
        "toppings": ["ham", "cheese"],
        "requested_slot": None,
        "profile": {"vip": True, "visits": 3},
    }
    assert state.active_loop == {
        "name": "booking_form",
        "is_interrupted": False,
        "rejected": True,
        "trigger_message": state.latest_message,
    }
    assert state.latest_action == {"action_text": "Sure, which city?"}
    last_bot = [e for e in until if isinstance(e, BotUttered)][-1]
    assert state.latest_bot_utterance == {
        "text": last_bot.text,
        "data": last_bot.data,
        "metadata": last_bot.metadata,
    }

    reverted = replay([e for e in timeline if (e.timestamp or 0.0) <= 1717171745.0], FIXTURE_SLOTS)
    assert reverted.followup_action == "action_listen"
    assert reverted.active_loop is None
    assert reverted.slots == FIXTURE_SLOTS
    assert reverted.latest_input_channel == "rest"

    final = replay(timeline, FIXTURE_SLOTS)
    assert final.latest_message == EMPTY_MESSAGE
    assert final.latest_input_channel is None
    assert final.followup_action is None
    assert not final.paused
    assert final.latest_event_time == timeline[-1].timestamp


def test_public_names_are_pinned() -> None:
    assert sorted(tracker.__all__) == [
        "ACTION_LISTEN",
        "ACTION_SESSION_START",
        "STATE_VERSION",
        "TrackerState",
        "Verbosity",
        "applied_events",
        "apply",
        "current_state",
        "events_after_latest_restart",
        "initial_state",
        "replay",
        "slot_defaults",
    ]
