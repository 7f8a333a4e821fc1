"""Tracker events: Rasa wire compatibility, round trips and strict validation."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas.events import (
    EVENT_ADAPTER,
    EVENT_TYPES,
    PARLEY_EVENTS,
    ActionExecuted,
    ActionExecutionRejected,
    ActionFailed,
    ActionReverted,
    ActiveLoop,
    AgentAction,
    AgentUttered,
    AllSlotsReset,
    BotUttered,
    ConversationPaused,
    ConversationResumed,
    DefinePrevUserUtteredFeaturization,
    EntitiesAdded,
    Event,
    EventValidationError,
    FollowupAction,
    LoopInterrupted,
    ReminderCancelled,
    ReminderScheduled,
    Restarted,
    SessionStarted,
    SlotSet,
    StoryExported,
    UserFeedback,
    UserUtteranceReverted,
    UserUttered,
    event_record,
    parse_event,
    parse_event_record,
    parse_events,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "rasa_events"

# --- strategies -------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=10,
)
json_dicts = st.dictionaries(st.text(max_size=8), json_values, max_size=4)
optional_text = st.none() | st.text(max_size=20)
numbers = st.integers(min_value=-(10**12), max_value=10**12) | st.floats(
    allow_nan=False, allow_infinity=False
)
optional_numbers = st.none() | numbers
metadata = st.none() | json_dicts
confidences = st.floats(min_value=0, max_value=1)

entities = st.fixed_dictionaries(
    {"entity": st.text(min_size=1, max_size=10), "value": json_values},
    optional={
        "start": st.integers(min_value=0, max_value=200),
        "end": st.integers(min_value=0, max_value=200),
        "confidence_entity": confidences,
        "role": st.text(max_size=8),
        "group": st.text(max_size=8),
        "extractor": st.sampled_from(["DIETClassifier", "RegexEntityExtractor"]),
        "processors": st.lists(st.just("EntitySynonymMapper"), max_size=1),
    },
)
intents = st.fixed_dictionaries({"name": st.text(max_size=12), "confidence": confidences})
parse_data = st.none() | st.builds(
    lambda known, extra: {**extra, **known},
    st.fixed_dictionaries(
        {},
        optional={
            "intent": st.none() | intents,
            "entities": st.lists(entities, max_size=3),
            "text": optional_text,
            "message_id": optional_text,
            "metadata": json_dicts,
            "intent_ranking": st.lists(intents, max_size=3),
        },
    ),
    json_dicts,
)
reminder_entities = (
    st.none()
    | st.lists(entities, max_size=3)
    | st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3)
)
_EARLIEST = datetime(1900, 1, 1)  # noqa: DTZ001 - hypothesis bounds must be naive
_LATEST = datetime(2200, 1, 1)  # noqa: DTZ001 - hypothesis bounds must be naive
fixed_offsets = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
reminder_times = st.datetimes(min_value=_EARLIEST, max_value=_LATEST) | st.datetimes(
    min_value=_EARLIEST, max_value=_LATEST, timezones=fixed_offsets
)


def _event(cls: type[Event], **fields: st.SearchStrategy[Any]) -> st.SearchStrategy[Event]:
    return st.builds(cls, timestamp=optional_numbers, metadata=metadata, **fields)


STRATEGIES: dict[type[Event], st.SearchStrategy[Event]] = {
    UserUttered: _event(
        UserUttered,
        text=optional_text,
        parse_data=parse_data,
        input_channel=optional_text,
        message_id=optional_text,
    ),
    BotUttered: _event(BotUttered, text=optional_text, data=st.none() | json_dicts),
    ActionExecuted: _event(
        ActionExecuted,
        name=optional_text,
        policy=optional_text,
        confidence=optional_numbers,
        action_text=optional_text,
        hide_rule_turn=st.booleans(),
    ),
    SlotSet: _event(SlotSet, name=st.text(max_size=12), value=json_values),
    ActiveLoop: _event(ActiveLoop, name=optional_text),
    LoopInterrupted: _event(LoopInterrupted, is_interrupted=st.booleans()),
    ActionExecutionRejected: _event(
        ActionExecutionRejected,
        name=st.text(max_size=12),
        policy=optional_text,
        confidence=optional_numbers,
    ),
    Restarted: _event(Restarted),
    AllSlotsReset: _event(AllSlotsReset),
    UserUtteranceReverted: _event(UserUtteranceReverted),
    ActionReverted: _event(ActionReverted),
    ReminderScheduled: _event(
        ReminderScheduled,
        intent=st.text(max_size=12),
        date_time=reminder_times,
        entities=reminder_entities,
        name=optional_text,
        kill_on_user_msg=st.booleans(),
    ),
    ReminderCancelled: _event(
        ReminderCancelled, intent=optional_text, entities=reminder_entities, name=optional_text
    ),
    FollowupAction: _event(FollowupAction, name=st.text(max_size=12)),
    ConversationPaused: _event(ConversationPaused),
    ConversationResumed: _event(ConversationResumed),
    SessionStarted: _event(SessionStarted),
    EntitiesAdded: _event(EntitiesAdded, entities=st.lists(entities, max_size=3)),
    DefinePrevUserUtteredFeaturization: _event(
        DefinePrevUserUtteredFeaturization, use_text_for_featurization=st.booleans()
    ),
    AgentUttered: _event(AgentUttered, text=optional_text, data=json_values),
    StoryExported: _event(StoryExported, path=optional_text),
    ActionFailed: _event(
        ActionFailed,
        name=st.text(min_size=1, max_size=20),
        reason=st.sampled_from(["failed", "timeout", "not_found"]),
        error=optional_text,
    ),
    UserFeedback: _event(
        UserFeedback,
        rating=st.sampled_from([-1, 1]),
        comment=optional_text,
        message_timestamp=st.none() | st.floats(0, 2e9),
        message_text=optional_text,
        input_channel=optional_text,
    ),
    AgentAction: _event(
        AgentAction,
        command=st.sampled_from(["claim", "assign", "note", "hand_back", "resolve"]),
        agent_id=st.text(max_size=12),
        text=optional_text,
        assignee=optional_text,
    ),
}


# --- round trips ------------------------------------------------------------


def test_every_event_type_has_a_strategy() -> None:
    assert set(STRATEGIES) == set(EVENT_TYPES.values())


def test_event_types_lists_rasas_21_current_names_and_parleys() -> None:
    assert len(EVENT_TYPES) == 21 + len(PARLEY_EVENTS)
    assert set(EVENT_TYPES) >= PARLEY_EVENTS
    assert "form" not in EVENT_TYPES
    assert "form_validation" not in EVENT_TYPES
    for name, cls in EVENT_TYPES.items():
        assert cls.model_fields["event"].default == name
        assert next(iter(cls.model_fields)) == "event"


@pytest.mark.parametrize("name", sorted(EVENT_TYPES))
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_round_trip(name: str, data: st.DataObject) -> None:
    cls = EVENT_TYPES[name]
    event = data.draw(STRATEGIES[cls])
    assert type(event) is cls
    wire = event.to_dict()
    assert list(wire)[:2] == ["event", "timestamp"]
    assert wire["event"] == name

    assert parse_event(wire) == event
    through_json = json.loads(json.dumps(wire))
    reparsed = parse_event(through_json)
    assert reparsed == event
    assert json.dumps(reparsed.to_dict()) == json.dumps(wire)
    assert event.to_json() == json.dumps(wire)


# --- fixtures written by Rasa -----------------------------------------------

FIXTURE_FILES = sorted(FIXTURES.glob("*.json"))


def test_fixtures_cover_every_event_type() -> None:
    # Rasa-written JSON for every Rasa event; Parley's own events have none
    assert {path.stem for path in FIXTURE_FILES} == set(EVENT_TYPES) - PARLEY_EVENTS


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda path: path.stem)
def test_fixture_is_reproduced_byte_for_byte(path: Path) -> None:
    items = json.loads(path.read_text())
    assert isinstance(items, list)
    assert items
    for item in items:
        event = parse_event(item)
        assert type(event) is EVENT_TYPES[path.stem]
        assert json.dumps(event.to_dict()) == json.dumps(item)


def test_fixture_with_metadata_keeps_it_after_timestamp() -> None:
    items = json.loads((FIXTURES / "user.json").read_text())
    with_metadata = next(item for item in items if item.get("metadata"))
    wire = parse_event(with_metadata).to_dict()
    assert list(wire) == [
        "event",
        "timestamp",
        "metadata",
        "text",
        "parse_data",
        "input_channel",
        "message_id",
    ]


# --- key order and metadata -------------------------------------------------


def test_empty_metadata_is_left_out_for_most_events() -> None:
    assert list(SlotSet(name="a", timestamp=1.0).to_dict()) == [
        "event",
        "timestamp",
        "name",
        "value",
    ]


def test_non_empty_metadata_follows_timestamp() -> None:
    wire = SlotSet(name="a", value=1, timestamp=1.0, metadata={"k": 1}).to_dict()
    assert list(wire) == ["event", "timestamp", "metadata", "name", "value"]


@pytest.mark.parametrize(
    ("event", "keys"),
    [
        (
            UserUttered(text="hi"),
            ["event", "timestamp", "text", "parse_data", "input_channel", "message_id", "metadata"],
        ),
        (BotUttered(text="hi"), ["event", "timestamp", "text", "data", "metadata"]),
    ],
)
def test_user_and_bot_always_write_metadata_last_when_empty(event: Event, keys: list[str]) -> None:
    wire = event.to_dict()
    assert list(wire) == keys
    assert wire["metadata"] == {}


def test_ints_stay_ints_on_the_wire() -> None:
    event = parse_event({"event": "action", "timestamp": 17, "name": "a", "confidence": 1})
    assert event.to_json() == (
        '{"event": "action", "timestamp": 17, "name": "a", "policy": null, '
        '"confidence": 1, "action_text": null, "hide_rule_turn": false}'
    )


def test_to_dict_returns_copies() -> None:
    event = parse_event(
        {"event": "slot", "name": "s", "value": {"a": [1]}, "metadata": {"m": {"n": 1}}}
    )
    wire = event.to_dict()
    wire["value"]["a"].append(2)
    wire["metadata"]["m"]["n"] = 2
    assert event.to_dict()["value"] == {"a": [1]}
    assert event.to_dict()["metadata"] == {"m": {"n": 1}}


def test_export_path_is_written_only_when_set() -> None:
    assert StoryExported(timestamp=1.0).to_dict() == {"event": "export", "timestamp": 1.0}
    assert StoryExported(timestamp=1.0, path="s.yml").to_dict() == {
        "event": "export",
        "timestamp": 1.0,
        "path": "s.yml",
    }


def test_cancel_reminder_keeps_its_fields_in_sdk_order() -> None:
    wire = ReminderCancelled(name="n", intent="i", entities={"e": "v"}).to_dict()
    assert list(wire) == ["event", "timestamp", "intent", "entities", "name"]


# --- UserUttered ------------------------------------------------------------


def test_sdk_style_user_event_gets_rasa_parse_data() -> None:
    event = parse_event(
        {
            "event": "user",
            "text": "hi",
            "parse_data": {"intent": {"name": "greet", "confidence": 1.0}},
        }
    )
    assert isinstance(event, UserUttered)
    parse_data = event.to_dict()["parse_data"]
    assert list(parse_data) == ["intent", "entities", "text", "message_id", "metadata"]
    assert parse_data == {
        "intent": {"name": "greet", "confidence": 1.0},
        "entities": [],
        "text": "hi",
        "message_id": None,
        "metadata": {},
    }


def test_direct_construction_normalises_parse_data() -> None:
    event = UserUttered(
        text="hi",
        message_id="m1",
        metadata={"a": 1},
        parse_data={"intent_ranking": [], "text": "other", "intent": None},
    )
    assert list(event.parse_data) == [
        "intent",
        "entities",
        "text",
        "message_id",
        "metadata",
        "intent_ranking",
    ]
    # The given parse_data wins over the derived keys, as in Rasa's dict.update.
    assert event.parse_data["text"] == "other"
    assert event.parse_data["intent"] is None
    assert event.parse_data["message_id"] == "m1"
    assert event.parse_data["metadata"] == {"a": 1}


def test_missing_or_null_parse_data_is_derived() -> None:
    for payload in ({"event": "user", "text": "x"}, {"event": "user", "parse_data": None}):
        event = parse_event(payload)
        assert isinstance(event, UserUttered)
        assert set(event.parse_data) == {"intent", "entities", "text", "message_id", "metadata"}
        assert event.parse_data["intent"] == {}
        assert event.parse_data["entities"] == []


def test_parse_data_of_wrong_type_is_a_field_error() -> None:
    with pytest.raises(EventValidationError, match="'user' event: field 'parse_data'"):
        parse_event({"event": "user", "text": "x", "parse_data": ["not", "a", "dict"]})


def test_user_uttered_properties() -> None:
    external = UserUttered(
        text="EXTERNAL: remind",
        metadata={"is_external": True},
        parse_data={"intent": {"name": "remind"}, "entities": [{"entity": "p", "value": "v"}]},
    )
    assert external.intent_name == "remind"
    assert external.entities == [{"entity": "p", "value": "v"}]
    assert external.is_external is True
    external.entities[0]["value"] = "changed"
    assert external.entities == [{"entity": "p", "value": "v"}]

    plain = UserUttered(text="hi")
    assert plain.intent_name is None
    assert plain.entities == []
    assert plain.is_external is False


# --- reminders --------------------------------------------------------------


def test_reminder_keeps_aware_and_naive_date_times() -> None:
    aware = parse_event(
        {"event": "reminder", "intent": "i", "date_time": "2024-05-31T18:30:00+02:00", "name": "a"}
    )
    naive = parse_event(
        {"event": "reminder", "intent": "i", "date_time": "2024-05-31T18:30:00", "name": "b"}
    )
    assert isinstance(aware, ReminderScheduled)
    assert isinstance(naive, ReminderScheduled)
    assert aware.date_time.utcoffset() == timedelta(hours=2)
    assert naive.date_time.tzinfo is None
    assert aware.to_dict()["date_time"] == "2024-05-31T18:30:00+02:00"
    assert naive.to_dict()["date_time"] == "2024-05-31T18:30:00"


def test_reminder_accepts_z_suffix_and_datetime_instances() -> None:
    event = parse_event(
        {"event": "reminder", "intent": "i", "date_time": "2024-05-31T16:30:00Z", "name": "n"}
    )
    assert isinstance(event, ReminderScheduled)
    assert event.date_time == datetime(2024, 5, 31, 16, 30, tzinfo=UTC)
    assert event.to_dict()["date_time"] == "2024-05-31T16:30:00+00:00"
    direct = ReminderScheduled(intent="i", date_time=datetime(2024, 1, 1, tzinfo=UTC))
    assert direct.date_time.year == 2024


def test_reminder_defaults() -> None:
    event = parse_event({"event": "reminder", "intent": "i", "date_time": "2024-05-31T16:30:00"})
    assert isinstance(event, ReminderScheduled)
    assert uuid.UUID(event.name).version == 1
    assert event.kill_on_user_msg is True
    assert event.entities is None
    named_none = parse_event(
        {"event": "reminder", "intent": "i", "date_time": "2024-05-31T16:30:00", "name": None}
    )
    assert isinstance(named_none, ReminderScheduled)
    assert uuid.UUID(named_none.name).version == 1
    assert named_none.name != event.name


@pytest.mark.parametrize("bad", ["tomorrow", "", 1717171717, None])
def test_reminder_rejects_bad_date_time(bad: Any) -> None:
    with pytest.raises(EventValidationError, match="'reminder' event: field 'date_time'"):
        parse_event({"event": "reminder", "intent": "i", "date_time": bad})


# --- legacy names -----------------------------------------------------------


def test_legacy_form_is_an_active_loop() -> None:
    event = parse_event({"event": "form", "timestamp": 1.5, "name": "booking_form"})
    assert event == ActiveLoop(name="booking_form", timestamp=1.5)
    assert event.to_dict() == {"event": "active_loop", "timestamp": 1.5, "name": "booking_form"}
    assert parse_event({"event": "form", "name": None}) == ActiveLoop(name=None)


@pytest.mark.parametrize(("validate", "interrupted"), [(True, False), (False, True)])
def test_legacy_form_validation_is_loop_interrupted(validate: bool, interrupted: bool) -> None:
    event = parse_event({"event": "form_validation", "timestamp": 2, "validate": validate})
    assert event == LoopInterrupted(is_interrupted=interrupted, timestamp=2)
    assert event.to_dict() == {
        "event": "loop_interrupted",
        "timestamp": 2,
        "is_interrupted": interrupted,
    }


def test_legacy_form_validation_defaults_to_validate() -> None:
    assert parse_event({"event": "form_validation"}) == LoopInterrupted(is_interrupted=False)


def test_legacy_form_validation_rejects_non_bool() -> None:
    with pytest.raises(EventValidationError, match="'form_validation' event: field 'validate'"):
        parse_event({"event": "form_validation", "validate": "yes"})


def test_legacy_form_errors_name_the_legacy_event() -> None:
    with pytest.raises(EventValidationError, match="invalid 'form' event: field 'name'"):
        parse_event({"event": "form", "name": 3})


# --- errors -----------------------------------------------------------------


def test_unknown_event_type() -> None:
    with pytest.raises(ValueError, match="unknown event type 'xyz'") as info:
        parse_event({"event": "xyz"})
    assert not isinstance(info.value, EventValidationError)
    for name in EVENT_TYPES:
        assert name in str(info.value)


def test_topic_is_unknown_to_parse_event() -> None:
    with pytest.raises(ValueError, match="unknown event type 'topic'"):
        parse_event({"event": "topic", "name": "x"})


def test_missing_event_key() -> None:
    with pytest.raises(ValueError, match="no 'event' key"):
        parse_event({"name": "x", "value": 1})


@pytest.mark.parametrize("bad", [None, 3, ["slot"]])
def test_event_name_must_be_a_string(bad: Any) -> None:
    with pytest.raises(ValueError, match="event name must be a string"):
        parse_event({"event": bad})


@pytest.mark.parametrize("bad", [None, "slot", ["event"], 3])
def test_non_dict_is_rejected(bad: Any) -> None:
    with pytest.raises(ValueError, match="must be a JSON object"):
        parse_event(bad)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (
            {"event": "slot", "name": 5},
            "invalid 'slot' event: field 'name': Input should be a valid string",
        ),
        ({"event": "slot"}, "invalid 'slot' event: field 'name': Field required"),
        (
            {"event": "action", "name": "a", "confidence": "high"},
            "invalid 'action' event: field 'confidence': Input should be a valid number",
        ),
        (
            {"event": "action", "name": "a", "confidence": True},
            "invalid 'action' event: field 'confidence': Input should be a valid number",
        ),
        (
            {"event": "restart", "timestamp": "now"},
            "invalid 'restart' event: field 'timestamp': Input should be a valid number",
        ),
        (
            {"event": "restart", "timestamp": False},
            "invalid 'restart' event: field 'timestamp': Input should be a valid number",
        ),
        (
            {"event": "loop_interrupted", "is_interrupted": 1},
            "invalid 'loop_interrupted' event: field 'is_interrupted': "
            "Input should be a valid boolean",
        ),
        (
            {"event": "loop_interrupted"},
            "invalid 'loop_interrupted' event: field 'is_interrupted': Field required",
        ),
        (
            {"event": "user", "text": 3},
            "invalid 'user' event: field 'text': Input should be a valid string",
        ),
        (
            {"event": "bot", "data": "x"},
            "invalid 'bot' event: field 'data': Input should be a valid dictionary",
        ),
        (
            {"event": "entities", "entities": [{"entity": "a"}, "b"]},
            "invalid 'entities' event: field 'entities.1': Input should be a valid dictionary",
        ),
        (
            {"event": "followup", "name": None},
            "invalid 'followup' event: field 'name': Input should be a valid string",
        ),
        (
            {"event": "session_started", "metadata": []},
            "invalid 'session_started' event: field 'metadata': Input should be a valid dictionary",
        ),
        (
            {"event": "user_featurization", "use_text_for_featurization": "true"},
            "invalid 'user_featurization' event: field 'use_text_for_featurization': "
            "Input should be a valid boolean",
        ),
    ],
)
def test_field_errors_name_event_and_field(payload: dict[str, Any], message: str) -> None:
    with pytest.raises(EventValidationError) as info:
        parse_event(payload)
    assert str(info.value) == message
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value.__cause__, ValidationError)


def test_several_field_errors_are_all_reported() -> None:
    with pytest.raises(EventValidationError) as info:
        parse_event({"event": "action_execution_rejected", "policy": 1})
    assert "field 'name': Field required" in str(info.value)
    assert "field 'policy': Input should be a valid string" in str(info.value)


# --- parse_events -----------------------------------------------------------


def test_parse_events_skips_like_rasa() -> None:
    events = parse_events(
        [
            {"event": "slot", "name": "a", "value": 1},
            {"name": "no event key"},
            {"event": "topic", "name": "legacy"},
            {"event": None},
            {"event": "form", "name": "f"},
            {"event": "restart"},
        ]
    )
    assert events == [SlotSet(name="a", value=1), ActiveLoop(name="f"), Restarted()]


def test_parse_events_raises_on_bad_items() -> None:
    with pytest.raises(ValueError, match="unknown event type 'nope'"):
        parse_events([{"event": "restart"}, {"event": "nope"}])
    with pytest.raises(ValueError, match="must be a JSON object"):
        parse_events(["restart"])


# --- event records ----------------------------------------------------------


def test_event_record_round_trip() -> None:
    event = SlotSet(name="city", value="Berlin", timestamp=1.25, metadata={"m": 1})
    record = event_record("user-42", event)
    assert list(record) == ["sender_id", "event", "timestamp", "metadata", "name", "value"]
    assert record["sender_id"] == "user-42"
    assert parse_event_record(json.loads(json.dumps(record))) == ("user-42", event)


@pytest.mark.parametrize(
    "record", [{"event": "restart"}, {"sender_id": 5, "event": "restart"}, {"sender_id": None}]
)
def test_parse_event_record_needs_string_sender_id(record: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="sender_id"):
        parse_event_record(record)


def test_parse_event_record_rejects_non_dict() -> None:
    with pytest.raises(ValueError, match="must be a JSON object"):
        parse_event_record(["sender_id"])  # type: ignore[arg-type]


# --- model behaviour --------------------------------------------------------


def test_models_are_frozen() -> None:
    event = SlotSet(name="a", value=1)
    with pytest.raises(ValidationError, match="frozen"):
        event.value = 2  # type: ignore[misc]
    assert event.value == 1


def test_stamped_returns_a_stamped_copy() -> None:
    event = UserUttered(text="hi")
    stamped = event.stamped(1717171717.5)
    assert stamped.timestamp == 1717171717.5
    assert event.timestamp is None
    assert isinstance(stamped, UserUttered)
    assert stamped.parse_data == event.parse_data
    with pytest.raises(TypeError, match="timestamp must be a number"):
        event.stamped(True)


def test_event_base_is_not_instantiable() -> None:
    with pytest.raises(TypeError, match="abstract"):
        Event(event="slot")


def test_metadata_none_is_empty() -> None:
    event = parse_event({"event": "restart", "metadata": None})
    assert event.metadata == {}
    assert event.to_dict() == {"event": "restart", "timestamp": None}


def test_bot_data_none_is_empty() -> None:
    event = parse_event({"event": "bot", "text": "x", "data": None})
    assert isinstance(event, BotUttered)
    assert event.data == {}


def test_unknown_keys_are_ignored() -> None:
    event = parse_event({"event": "pause", "timestamp": 1.0, "sender_id": "x", "extra": 1})
    assert event.to_dict() == {"event": "pause", "timestamp": 1.0}


def test_event_adapter_picks_the_class() -> None:
    event = EVENT_ADAPTER.validate_python({"event": "followup", "name": "utter_x"})
    assert event == FollowupAction(name="utter_x")
    with pytest.raises(ValidationError):
        EVENT_ADAPTER.validate_python({"event": "nope"})


def test_action_failed_is_a_parley_event() -> None:
    event = ActionFailed(timestamp=2.0, name="action_pay", reason="timeout", error="no answer")
    assert event.to_dict() == {
        "event": "action_failed",
        "timestamp": 2.0,
        "name": "action_pay",
        "reason": "timeout",
        "error": "no answer",
    }
    assert parse_event(event.to_dict()) == event
    assert {"action_failed", "agent_action", "user_feedback"} == PARLEY_EVENTS


def test_agent_action_is_a_parley_event() -> None:
    claim = AgentAction(timestamp=3.0, command="claim", agent_id="ann")
    assert claim.to_dict() == {
        "event": "agent_action",
        "timestamp": 3.0,
        "command": "claim",
        "agent_id": "ann",
    }
    assign = AgentAction(timestamp=4.0, command="assign", agent_id="ann", assignee="bob")
    assert list(assign.to_dict()) == ["event", "timestamp", "command", "agent_id", "assignee"]
    for event in (claim, assign):
        assert parse_event(event.to_dict()) == event
    with pytest.raises(ValueError, match="agent_action"):
        parse_event({"event": "agent_action", "command": "reply", "agent_id": "ann"})


def test_user_feedback_is_a_parley_event_with_a_checked_rating() -> None:
    thumbs = UserFeedback(timestamp=5.0, rating=-1, comment="wrong shop", input_channel="rest")
    assert thumbs.to_dict() == {
        "event": "user_feedback",
        "timestamp": 5.0,
        "rating": -1,
        "scale": "thumbs",
        "comment": "wrong shop",
        "input_channel": "rest",
    }
    stars = UserFeedback(timestamp=6.0, rating=4, scale="stars", message_timestamp=4.5)
    for event in (thumbs, stars):
        assert parse_event(event.to_dict()) == event
    with pytest.raises(ValueError, match="thumbs scale"):
        parse_event({"event": "user_feedback", "rating": 3})
    with pytest.raises(ValueError, match="stars scale"):
        parse_event({"event": "user_feedback", "rating": 0, "scale": "stars"})
