"""Custom actions of Spoke & Chain, the bicycle repair shop assistant.

Every action is deterministic: it reads only the tracker it is given (slots,
entities and event timestamps), never a random source, and reads the clock
only when the tracker carries no timestamp at all.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone
from typing import Any

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import (
    ConversationPaused,
    EventType,
    ReminderCancelled,
    ReminderScheduled,
    SlotSet,
)
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

BIKE_TYPES: dict[str, str] = {
    "mountain": "mountain",
    "mountain bike": "mountain",
    "mtb": "mountain",
    "road": "road",
    "road bike": "road",
    "racer": "road",
    "electric": "electric",
    "electric bike": "electric",
    "e-bike": "electric",
    "ebike": "electric",
    "city": "city",
    "city bike": "city",
    "commuter": "city",
}
"""Every spelling the shop accepts, mapped to the four types it services."""

OPEN_DAYS: dict[str, str] = {
    "monday": "monday",
    "mon": "monday",
    "tuesday": "tuesday",
    "tue": "tuesday",
    "tues": "tuesday",
    "wednesday": "wednesday",
    "wed": "wednesday",
    "thursday": "thursday",
    "thu": "thursday",
    "thurs": "thursday",
    "friday": "friday",
    "fri": "friday",
    "saturday": "saturday",
    "sat": "saturday",
    "tomorrow": "tomorrow",
}
"""Days the workshop takes bikes in (Sunday is deliberately missing)."""

SUNDAY_SPELLINGS = frozenset({"sunday", "sun"})

ORDER_STATUSES: tuple[str, ...] = (
    "waiting for parts",
    "on the repair stand",
    "ready for pickup",
)

# `timezone.utc`, not `datetime.UTC`: rasa-sdk 3.6 action servers still run Python 3.8-3.10.
_UTC = timezone.utc  # noqa: UP017

PICKUP_REMINDER_NAME = "pickup_reminder"
PICKUP_REMINDER_INTENT = "EXTERNAL_pickup_reminder"
PICKUP_REMINDER_DELAY = timedelta(minutes=5)


def _normalise(value: Any) -> str:
    """Lower-case, trimmed, single-spaced text for a slot value of any type."""
    return " ".join(str(value).lower().split())


def booking_reference(sender_id: str, bike_type: str, problem: str, day: str) -> str:
    """A stable `SC-dddd` reference: the same conversation and slots give the same one."""
    key = "|".join((sender_id, _normalise(bike_type), _normalise(problem), _normalise(day)))
    number = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:4], "big")
    return f"SC-{1000 + number % 9000:04d}"


def latest_message_time(tracker: Tracker) -> datetime:
    """When the latest user message arrived, from the tracker; now if no event has a time."""
    for event in reversed(tracker.events):
        if event.get("event") == "user" and event.get("timestamp") is not None:
            return datetime.fromtimestamp(float(event["timestamp"]), tz=_UTC)
    return datetime.now(tz=_UTC)


class ValidateRepairForm(FormValidationAction):
    """Checks and normalises the three slots of `repair_form`."""

    def name(self) -> str:
        return "validate_repair_form"

    def validate_bike_type(
        self,
        slot_value: Any,
        dispatcher: CollectingDispatcher,
        tracker: Tracker,
        domain: DomainDict,
    ) -> dict[str, Any]:
        bike_type = BIKE_TYPES.get(_normalise(slot_value))
        if bike_type is None:
            dispatcher.utter_message(response="utter_unknown_bike_type")
        return {"bike_type": bike_type}

    def validate_problem(
        self,
        slot_value: Any,
        dispatcher: CollectingDispatcher,
        tracker: Tracker,
        domain: DomainDict,
    ) -> dict[str, Any]:
        problem = _normalise(slot_value)
        return {"problem": problem or None}

    def validate_day(
        self,
        slot_value: Any,
        dispatcher: CollectingDispatcher,
        tracker: Tracker,
        domain: DomainDict,
    ) -> dict[str, Any]:
        spoken = _normalise(slot_value)
        if spoken in SUNDAY_SPELLINGS:
            dispatcher.utter_message(response="utter_closed_on_sunday")
            return {"day": None}
        day = OPEN_DAYS.get(spoken)
        if day is None:
            dispatcher.utter_message(response="utter_unknown_day")
        return {"day": day}


class ActionBookRepair(Action):
    """Runs when `repair_form` is complete: files the booking and sets its reference."""

    def name(self) -> str:
        return "action_book_repair"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        reference = booking_reference(
            tracker.sender_id,
            str(tracker.get_slot("bike_type")),
            str(tracker.get_slot("problem")),
            str(tracker.get_slot("day")),
        )
        if tracker.get_slot("dropoff_from") and tracker.get_slot("dropoff_to"):
            dispatcher.utter_message(response="utter_dropoff_window")
        return [SlotSet("booking_ref", reference)]


class ActionCheckStatus(Action):
    """Reports the state of an order, named in the message or booked in this conversation."""

    def name(self) -> str:
        return "action_check_status"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        order_id = tracker.get_slot("order_id") or tracker.get_slot("booking_ref")
        if not order_id:
            dispatcher.utter_message(response="utter_ask_order_id")
            return []
        order_id = str(order_id).upper()
        digits = "".join(ch for ch in order_id if ch.isdigit())
        status = ORDER_STATUSES[int(digits or "0") % len(ORDER_STATUSES)]
        dispatcher.utter_message(
            response="utter_order_status", order_id=order_id, order_status=status
        )
        return [SlotSet("order_id", order_id)]


class ActionSetPickupReminder(Action):
    """Schedules the pickup reminder five minutes after the user's latest message."""

    def name(self) -> str:
        return "action_set_pickup_reminder"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        due = latest_message_time(tracker) + PICKUP_REMINDER_DELAY
        minutes = int(PICKUP_REMINDER_DELAY.total_seconds() // 60)
        dispatcher.utter_message(response="utter_reminder_set", minutes=minutes)
        return [
            ReminderScheduled(
                PICKUP_REMINDER_INTENT,
                trigger_date_time=due,
                name=PICKUP_REMINDER_NAME,
                kill_on_user_message=False,
            ),
            SlotSet("wants_reminder", True),
        ]


class ActionCancelPickupReminder(Action):
    """Cancels the pickup reminder by name."""

    def name(self) -> str:
        return "action_cancel_pickup_reminder"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        dispatcher.utter_message(response="utter_reminder_cancelled")
        return [ReminderCancelled(name=PICKUP_REMINDER_NAME), SlotSet("wants_reminder", False)]


class ActionHandoff(Action):
    """Tells the user a mechanic takes over, records why, and pauses the bot.

    The pause carries the reason in its metadata (`handoff_reason`): Parley then treats it
    as a handoff (queue and agent-silence timers, see docs/handoff.md); Rasa ignores it."""

    def name(self) -> str:
        return "action_handoff"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        intent = (tracker.latest_message or {}).get("intent", {}).get("name")
        reason = "customer_request" if intent == "human_handoff" else "bot_escalation"
        dispatcher.utter_message(response="utter_handoff")
        pause = {**ConversationPaused(), "metadata": {"handoff_reason": reason}}
        return [SlotSet("handoff_reason", reason), pause]
