"""The Spoke & Chain custom actions, run with the real rasa-sdk.

Each action gets a `rasa_sdk.Tracker` and a `CollectingDispatcher` and is
checked on the events it returns and the messages it sends.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import pytest
from rasa_sdk import Action, Tracker
from rasa_sdk.executor import ActionExecutor, CollectingDispatcher

from tests.examples._bikeshop import BOT, domain, synonyms


def load_actions() -> ModuleType:
    """examples/bikeshop/actions/actions.py under a name of its own (not a bare `actions`)."""
    name = "bikeshop_example_actions"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BOT / "actions" / "actions.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


actions = load_actions()

# 2026-03-04T10:00:00Z, a fixed moment for the user's latest message.
MESSAGE_TIME = datetime(2026, 3, 4, 10, 0, tzinfo=UTC).timestamp()
REFERENCE = re.compile(r"SC-\d{4}")


def user_event(text: str, intent: str, timestamp: float) -> dict[str, Any]:
    return {
        "event": "user",
        "timestamp": timestamp,
        "text": text,
        "parse_data": {"intent": {"name": intent, "confidence": 0.98}, "entities": []},
    }


def make_tracker(
    *,
    slots: dict[str, Any] | None = None,
    intent: str = "inform",
    text: str = "",
    events: list[dict[str, Any]] | None = None,
    active_loop: dict[str, Any] | None = None,
    sender_id: str = "rider-7",
) -> Tracker:
    """A tracker as Rasa sends it to the action server."""
    all_slots = {name: spec.get("initial_value") for name, spec in domain().slots.items()}
    all_slots["requested_slot"] = None
    all_slots.update(slots or {})
    return Tracker.from_dict(
        {
            "sender_id": sender_id,
            "slots": all_slots,
            "latest_message": {
                "text": text,
                "intent": {"name": intent, "confidence": 0.98},
                "entities": [],
            },
            "events": events if events is not None else [user_event(text, intent, MESSAGE_TIME)],
            "paused": False,
            "followup_action": None,
            "active_loop": active_loop or {},
            "latest_action_name": "action_listen",
        }
    )


def responses(dispatcher: CollectingDispatcher) -> list[str | None]:
    return [message["response"] for message in dispatcher.messages]


def slot_sets(events: list[dict[str, Any]]) -> dict[str, Any]:
    return {e["name"]: e["value"] for e in events if e["event"] == "slot"}


def booking_slots(day: str = "saturday") -> dict[str, Any]:
    return {"bike_type": "mountain", "problem": "flat tyre", "day": day}


# --- booking -------------------------------------------------------------------------------


async def test_booking_reference_is_deterministic() -> None:
    first = await actions.ActionBookRepair().run(
        CollectingDispatcher(), make_tracker(slots=booking_slots()), domain().as_dict()
    )
    second = await actions.ActionBookRepair().run(
        CollectingDispatcher(), make_tracker(slots=booking_slots()), domain().as_dict()
    )
    reference = slot_sets(first)["booking_ref"]
    assert REFERENCE.fullmatch(reference)
    assert slot_sets(second)["booking_ref"] == reference
    assert reference == actions.booking_reference("rider-7", "mountain", "flat tyre", "saturday")


async def test_booking_reference_depends_on_the_slots_and_the_conversation() -> None:
    base = actions.booking_reference("rider-7", "mountain", "flat tyre", "saturday")
    assert actions.booking_reference("rider-7", "mountain", "flat tyre", "monday") != base
    assert actions.booking_reference("rider-8", "mountain", "flat tyre", "saturday") != base
    # Case and spacing are not part of the booking.
    assert actions.booking_reference("rider-7", "Mountain", " flat  Tyre", "SATURDAY") == base


async def test_booking_mentions_the_dropoff_window_only_when_both_ends_are_known() -> None:
    dispatcher = CollectingDispatcher()
    slots = booking_slots() | {"dropoff_from": "9am", "dropoff_to": "11am"}
    await actions.ActionBookRepair().run(dispatcher, make_tracker(slots=slots), domain().as_dict())
    assert responses(dispatcher) == ["utter_dropoff_window"]

    dispatcher = CollectingDispatcher()
    slots = booking_slots() | {"dropoff_from": "9am"}
    await actions.ActionBookRepair().run(dispatcher, make_tracker(slots=slots), domain().as_dict())
    assert dispatcher.messages == []


# --- form validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spoken", "expected"),
    [
        ("mountain", "mountain"),
        ("MTB", "mountain"),
        ("Mountain  Bike", "mountain"),
        ("racer", "road"),
        ("e-bike", "electric"),
        ("ebike", "electric"),
        ("commuter", "city"),
        ("city", "city"),
    ],
)
def test_bike_type_accepts_known_types_and_their_synonyms(spoken: str, expected: str) -> None:
    dispatcher = CollectingDispatcher()
    result = actions.ValidateRepairForm().validate_bike_type(
        spoken, dispatcher, make_tracker(), domain().as_dict()
    )
    assert result == {"bike_type": expected}
    assert dispatcher.messages == []


def test_bike_type_accepts_every_nlu_synonym_of_a_bike_type() -> None:
    bike_types = domain().slots["bike_type"]["values"]
    checked = 0
    for value, spellings in synonyms().items():
        if value not in bike_types:
            continue
        for spelling in [value, *spellings]:
            result = actions.ValidateRepairForm().validate_bike_type(
                spelling, CollectingDispatcher(), make_tracker(), domain().as_dict()
            )
            assert result == {"bike_type": value}, spelling
            checked += 1
    assert checked >= 13


@pytest.mark.parametrize("spoken", ["tandem", "unicycle", "BMX", "penny-farthing"])
def test_bike_type_rejects_unknown_types(spoken: str) -> None:
    dispatcher = CollectingDispatcher()
    result = actions.ValidateRepairForm().validate_bike_type(
        spoken, dispatcher, make_tracker(), domain().as_dict()
    )
    assert result == {"bike_type": None}
    assert responses(dispatcher) == ["utter_unknown_bike_type"]


@pytest.mark.parametrize("spoken", ["Sunday", "sunday", " SUN "])
def test_day_rejects_sunday(spoken: str) -> None:
    dispatcher = CollectingDispatcher()
    result = actions.ValidateRepairForm().validate_day(
        spoken, dispatcher, make_tracker(), domain().as_dict()
    )
    assert result == {"day": None}
    assert responses(dispatcher) == ["utter_closed_on_sunday"]


@pytest.mark.parametrize(
    ("spoken", "expected"),
    [("Monday", "monday"), ("sat", "saturday"), ("Thurs", "thursday"), ("Tomorrow", "tomorrow")],
)
def test_day_normalises_open_days(spoken: str, expected: str) -> None:
    dispatcher = CollectingDispatcher()
    result = actions.ValidateRepairForm().validate_day(
        spoken, dispatcher, make_tracker(), domain().as_dict()
    )
    assert result == {"day": expected}
    assert dispatcher.messages == []


def test_day_rejects_what_is_not_a_day() -> None:
    dispatcher = CollectingDispatcher()
    result = actions.ValidateRepairForm().validate_day(
        "next blursday", dispatcher, make_tracker(), domain().as_dict()
    )
    assert result == {"day": None}
    assert responses(dispatcher) == ["utter_unknown_day"]


def test_problem_is_normalised() -> None:
    result = actions.ValidateRepairForm().validate_problem(
        "  Flat   Tyre ", CollectingDispatcher(), make_tracker(), domain().as_dict()
    )
    assert result == {"problem": "flat tyre"}


async def test_form_validation_runs_against_the_real_domain() -> None:
    """The whole rasa-sdk path: slot candidates at the end of the events, validated in order."""
    events = [
        user_event("my mtb, sunday", "inform", MESSAGE_TIME),
        {"event": "slot", "timestamp": MESSAGE_TIME, "name": "bike_type", "value": "MTB"},
        {"event": "slot", "timestamp": MESSAGE_TIME, "name": "day", "value": "Sunday"},
    ]
    tracker = make_tracker(
        slots={"bike_type": "MTB", "day": "Sunday", "requested_slot": "bike_type"},
        events=events,
        active_loop={"name": "repair_form"},
    )
    dispatcher = CollectingDispatcher()
    result = await actions.ValidateRepairForm().run(dispatcher, tracker, domain().as_dict())
    assert slot_sets(result) == {"bike_type": "mountain", "day": None}
    assert responses(dispatcher) == ["utter_closed_on_sunday"]


# --- order status --------------------------------------------------------------------------


async def test_status_of_a_named_order_is_deterministic() -> None:
    dispatcher = CollectingDispatcher()
    tracker = make_tracker(slots={"order_id": "sc-1093"}, intent="check_status")
    events = await actions.ActionCheckStatus().run(dispatcher, tracker, domain().as_dict())
    assert events == [{"event": "slot", "timestamp": None, "name": "order_id", "value": "SC-1093"}]
    [message] = dispatcher.messages
    assert message["response"] == "utter_order_status"
    assert message["order_id"] == "SC-1093"
    assert message["order_status"] == actions.ORDER_STATUSES[1093 % 3]


async def test_status_falls_back_to_this_conversations_booking() -> None:
    dispatcher = CollectingDispatcher()
    tracker = make_tracker(slots={"booking_ref": "SC-2000"}, intent="check_status")
    await actions.ActionCheckStatus().run(dispatcher, tracker, domain().as_dict())
    assert [m["order_id"] for m in dispatcher.messages] == ["SC-2000"]


async def test_status_without_an_order_asks_for_one() -> None:
    dispatcher = CollectingDispatcher()
    events = await actions.ActionCheckStatus().run(
        dispatcher, make_tracker(intent="check_status"), domain().as_dict()
    )
    assert events == []
    assert responses(dispatcher) == ["utter_ask_order_id"]


# --- reminders -----------------------------------------------------------------------------


async def test_reminder_is_scheduled_five_minutes_after_the_latest_message() -> None:
    dispatcher = CollectingDispatcher()
    earlier = user_event("hi", "greet", MESSAGE_TIME - 3600)
    latest = user_event("remind me to pick up my bike", "ask_reminder", MESSAGE_TIME)
    tracker = make_tracker(intent="ask_reminder", events=[earlier, latest])
    events = await actions.ActionSetPickupReminder().run(dispatcher, tracker, domain().as_dict())

    [reminder] = [e for e in events if e["event"] == "reminder"]
    assert reminder["intent"] == "EXTERNAL_pickup_reminder"
    assert reminder["intent"] in domain().intents
    assert reminder["name"] == "pickup_reminder"
    assert reminder["kill_on_user_msg"] is False
    due = datetime.fromisoformat(reminder["date_time"])
    assert due.tzinfo is not None
    assert due.timestamp() > MESSAGE_TIME
    assert due == datetime.fromtimestamp(MESSAGE_TIME, tz=UTC) + timedelta(minutes=5)
    assert slot_sets(events) == {"wants_reminder": True}
    [message] = dispatcher.messages
    assert message["response"] == "utter_reminder_set"
    assert message["minutes"] == 5


async def test_reminder_without_a_timestamped_message_uses_the_clock() -> None:
    before = datetime.now(tz=UTC)
    events = await actions.ActionSetPickupReminder().run(
        CollectingDispatcher(), make_tracker(events=[]), domain().as_dict()
    )
    after = datetime.now(tz=UTC)
    [reminder] = [e for e in events if e["event"] == "reminder"]
    due = datetime.fromisoformat(reminder["date_time"])
    assert before + timedelta(minutes=5) <= due <= after + timedelta(minutes=5)


async def test_cancel_names_the_pickup_reminder() -> None:
    dispatcher = CollectingDispatcher()
    events = await actions.ActionCancelPickupReminder().run(
        dispatcher, make_tracker(intent="cancel_reminder"), domain().as_dict()
    )
    [cancel] = [e for e in events if e["event"] == "cancel_reminder"]
    assert cancel["name"] == "pickup_reminder"
    assert slot_sets(events) == {"wants_reminder": False}
    assert responses(dispatcher) == ["utter_reminder_cancelled"]


# --- handoff -------------------------------------------------------------------------------


async def test_handoff_pauses_the_conversation() -> None:
    dispatcher = CollectingDispatcher()
    events = await actions.ActionHandoff().run(
        dispatcher, make_tracker(intent="human_handoff"), domain().as_dict()
    )
    assert [e["event"] for e in events] == ["slot", "pause"]
    assert events[1]["metadata"] == {"handoff_reason": "customer_request"}
    assert slot_sets(events) == {"handoff_reason": "customer_request"}
    assert responses(dispatcher) == ["utter_handoff"]


async def test_handoff_from_another_intent_is_an_escalation() -> None:
    events = await actions.ActionHandoff().run(
        CollectingDispatcher(), make_tracker(intent="nlu_fallback"), domain().as_dict()
    )
    assert slot_sets(events) == {"handoff_reason": "bot_escalation"}


# --- the action server protocol ------------------------------------------------------------


def test_every_domain_action_is_implemented() -> None:
    implemented = {cls().name() for cls in vars(actions).values() if _is_action_class(cls)}
    assert implemented == set(domain().actions)


def _is_action_class(candidate: object) -> bool:
    return (
        isinstance(candidate, type)
        and issubclass(candidate, Action)
        and candidate.__module__ == actions.__name__
    )


async def test_action_server_answers_with_a_json_body() -> None:
    """The executor the rasa-sdk webhook uses, fed the request body Rasa would POST."""
    executor = ActionExecutor()
    executor.register_action(actions.ActionHandoff)
    tracker = make_tracker(intent="human_handoff", text="I want to talk to a person")
    body = {
        "next_action": "action_handoff",
        "sender_id": tracker.sender_id,
        "tracker": tracker.current_state(),
        "domain": domain().as_dict(),
        "version": "3.6.21",
    }
    result = await executor.run(body)
    assert result is not None
    answer = result.model_dump() if hasattr(result, "model_dump") else dict(result)
    decoded = json.loads(json.dumps(answer))
    assert [e["event"] for e in decoded["events"]] == ["slot", "pause"]
    assert [r["response"] for r in decoded["responses"]] == ["utter_handoff"]
