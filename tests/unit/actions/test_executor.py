"""Running actions: rasa-sdk's results, its sharp edges filed off (thread pool, timeout,
concurrency limit, rejection, unknown actions, failures and garbage as results, never raised)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from schemas.events import ReminderCancelled, ReminderScheduled, SlotSet
from services.actions.executor import ActionRunner, MalformedRequest
from services.actions.registry import ActionRegistry
from tests.unit.actions._calls import call, fixture_module, tracker
from tests.unit.actions.conftest import LoadPackage


async def until(condition: Callable[[], bool], what: str) -> None:
    """Let the loop run until a condition set by another task or thread holds."""
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"{what}: never happened")


async def test_sync_and_async_actions_return_events_and_dispatcher_messages(
    runner: ActionRunner,
) -> None:
    outcome = await runner.run(call("action_sync_hello", sender="ada"))
    assert outcome.status == "success"
    assert outcome.error is None
    assert outcome.raw_events == [
        {"event": "slot", "timestamp": None, "name": "greeted", "value": True}
    ]
    assert outcome.events == [SlotSet(name="greeted", value=True)]
    assert outcome.responses == [
        {
            "text": "hello ada",
            "buttons": [{"title": "hi"}],
            "elements": [],
            "custom": {},
            "template": None,
            "response": None,
            "image": None,
            "attachment": None,
        }
    ]
    outcome = await runner.run(call("action_async_hello", {"name": "Bo"}))
    assert outcome.status == "success"
    assert outcome.events == [SlotSet(name="greeted", value="async")]
    (response,) = outcome.responses
    assert (response["response"], response["template"], response["name"]) == (
        "utter_greet",
        "utter_greet",
        "Bo",
    )
    nothing = await runner.run(call("action_nothing"))
    assert (nothing.status, nothing.events, nothing.responses) == ("success", [], [])


async def test_legacy_template_responses_get_a_response_key(runner: ActionRunner) -> None:
    outcome = await runner.run(call("action_legacy_template"))
    assert outcome.status == "success"
    old, new = outcome.responses
    assert old == {"template": "utter_old", "response": "utter_old", "text": None, "city": "Oslo"}
    assert (new["response"], new["template"]) == ("utter_new", "utter_new")


@pytest.mark.filterwarnings("ignore:The `Form` event is deprecated:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:The FormValidation` event is deprecated:DeprecationWarning")
async def test_every_rasa_sdk_event_helper_is_accepted(runner: ActionRunner) -> None:
    outcome = await runner.run(call("action_every_event"))
    assert outcome.status == "success", outcome.error
    names = [e.event for e in outcome.events]
    assert names == [
        "user",
        "bot",
        "slot",
        "restart",
        "session_started",
        "rewind",
        "reset_slots",
        "reminder",
        "cancel_reminder",
        "undo",
        "export",
        "followup",
        "pause",
        "resume",
        "action",
        "agent",
        "active_loop",
        "active_loop",  # the SDK's legacy Form(None)
        "loop_interrupted",
        "loop_interrupted",  # FormValidation(False)
        "action_execution_rejected",
    ]
    assert len(outcome.raw_events) == len(outcome.events)
    reminder = outcome.events[7]
    assert isinstance(reminder, ReminderScheduled)
    assert reminder.date_time.isoformat() == "2030-01-02T03:04:05+00:00"
    assert (reminder.name, reminder.kill_on_user_msg) == ("r1", False)


async def test_rejection_is_a_rejected_outcome(runner: ActionRunner) -> None:
    outcome = await runner.run(call("action_reject"))
    assert (outcome.status, outcome.error, outcome.rejected_action) == (
        "rejected",
        "not now, please",
        "action_reject",
    )
    assert outcome.events == []


async def test_an_unknown_action_names_itself_and_the_registered_ones(
    runner: ActionRunner,
) -> None:
    outcome = await runner.run(call("action_missing"))
    assert outcome.status == "not_found"
    assert outcome.error is not None
    assert outcome.error.startswith("No registered action found for name 'action_missing'.")
    assert "action_sync_hello" in outcome.error
    assert "validate_repair_form" in outcome.error


async def test_an_exception_is_a_failure_with_its_message_and_a_logged_traceback(
    runner: ActionRunner, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="services.actions.executor"):
        outcome = await runner.run(call("action_raise"))
    assert outcome.status == "failed"
    assert outcome.error == "ValueError: the database is on fire"
    assert outcome.responses == []  # the messages of a failed action are lost, as in Rasa
    (record,) = caplog.records
    assert record.getMessage() == "action 'action_raise' raised"
    assert record.exc_info is not None


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("not_a_list", "str instead of a list of events"),
        ("not_a_dict", "an event must be a JSON object, not int"),
        ("invalid_event", "invalid 'slot' event"),
        ("unknown_event", "unknown event type 'teleported'"),
        ("not_json", "events that are not JSON"),
        ("bad_response", "response #0 is str, not an object"),
    ],
)
async def test_garbage_returned_is_a_failure_with_the_reason(
    runner: ActionRunner, kind: str, reason: str
) -> None:
    outcome = await runner.run(call("action_garbage", {"kind": kind}))
    assert outcome.status == "failed"
    assert outcome.error is not None
    assert reason in outcome.error
    assert outcome.error.startswith("action 'action_garbage' returned ")


async def test_event_dicts_without_an_event_key_are_dropped_as_rasa_sdk_does(
    runner: ActionRunner,
) -> None:
    outcome = await runner.run(call("action_garbage", {"kind": "lenient"}))
    assert outcome.status == "success"
    assert outcome.raw_events == [
        {"event": "slot", "timestamp": None, "name": "kept", "value": True}
    ]


async def test_malformed_calls_raise_malformed_request(runner: ActionRunner) -> None:
    good = call("action_sync_hello")
    bad: list[dict[str, Any]] = [
        {**good, "next_action": ""},
        {**good, "next_action": 7},
        {k: v for k, v in good.items() if k != "tracker"},
        {**good, "tracker": ["not", "a", "dict"]},
        {**good, "domain": None},
        {**good, "sender_id": None, "tracker": {"slots": {}}},
    ]
    for body in bad:
        with pytest.raises(MalformedRequest):
            await runner.run(body)
    no_sender_in_tracker = {**good, "tracker": {"slots": {}}}
    assert (await runner.run(no_sender_in_tracker)).status == "success"


async def test_sync_actions_run_in_threads_concurrently(runner: ActionRunner) -> None:
    # Each waits for the other to arrive: run one after the other, neither would meet.
    first = runner.run(call("action_rendezvous", {"me": "a", "other": "b"}))
    second = runner.run(call("action_rendezvous", {"me": "b", "other": "a"}))
    results = await asyncio.gather(first, second)
    assert [r.events for r in results] == [[SlotSet(name="met", value=True)]] * 2


async def test_a_blocked_sync_action_never_stalls_the_loop(runner: ActionRunner) -> None:
    slow = fixture_module("slow")
    blocked = asyncio.create_task(runner.run(call("action_block_sync", {"key": "k1"})))
    await until(slow.ARRIVED["k1"].is_set, "the sync action started")
    quick = await runner.run(call("action_async_hello"))
    assert quick.status == "success"
    assert not blocked.done()
    slow.RELEASE["k1"].set()
    assert (await blocked).events == [SlotSet(name="released", value=True)]


async def test_a_hanging_sync_action_times_out_and_its_thread_is_abandoned(
    registry: ActionRegistry,
) -> None:
    slow = fixture_module("slow")
    runner = ActionRunner(registry, timeout_s=0.05, concurrency=1)
    try:
        outcome = await runner.run(call("action_block_sync", {"key": "hang"}))
        assert outcome.status == "timeout"
        assert outcome.error == "action 'action_block_sync' timed out after 0.05s"
        assert runner.stuck_threads == 1
        ready, detail = await runner.ready()
        assert not ready
        assert "stuck" in detail
        # A queued sync call times out too (the only thread is stuck) and is dropped, not run.
        queued = await runner.run(call("action_block_sync", {"key": "queued"}))
        assert queued.status == "timeout"
        # Async actions still run.
        assert (await runner.run(call("action_async_hello"))).status == "success"
        slow.RELEASE["hang"].set()
        await until(lambda: runner.stuck_threads == 0, "the abandoned thread finished")
        assert (await runner.ready())[0]
        assert not slow.ARRIVED["queued"].is_set()
    finally:
        runner.close()


async def test_a_hanging_async_action_is_cancelled_at_the_timeout(
    registry: ActionRegistry,
) -> None:
    runner = ActionRunner(registry, timeout_s=0.05, concurrency=2)
    try:
        outcome = await runner.run(call("action_hang_async"))
        assert outcome.status == "timeout"
        assert runner.stuck_threads == 0
        assert runner.running == 0
    finally:
        runner.close()


async def test_no_more_than_the_concurrency_limit_run_at_once(registry: ActionRegistry) -> None:
    slow = fixture_module("slow")
    slow.GATES["g"] = asyncio.Event()
    runner = ActionRunner(registry, timeout_s=5.0, concurrency=2)
    try:
        tasks = [
            asyncio.create_task(runner.run(call("action_gated", {"me": name, "key": "g"})))
            for name in ("a", "b", "c")
        ]
        await until(lambda: len(slow.ACTIVE) == 2, "two actions running")
        for _ in range(20):
            await asyncio.sleep(0)
        assert slow.ACTIVE == ["a", "b"]
        assert runner.running == 2
        slow.GATES["g"].set()
        results = await asyncio.gather(*tasks)
        assert [r.events for r in results] == [
            [SlotSet(name="done", value=name)] for name in ("a", "b", "c")
        ]
        assert slow.PEAK == [2]
    finally:
        runner.close()


async def test_form_validation_action_validates_extracted_slots(runner: ActionRunner) -> None:
    body = call("validate_repair_form")
    body["tracker"] = tracker(
        slots={"bike": "ROAD", "day": "sunday", "requested_slot": "bike"},
        active_loop={"name": "repair_form"},
        events=[
            {"event": "slot", "timestamp": None, "name": "bike", "value": "ROAD"},
            {"event": "slot", "timestamp": None, "name": "day", "value": "sunday"},
        ],
    )
    body["domain"] = {
        "forms": {"repair_form": {"required_slots": ["bike", "day"]}},
        "slots": {"bike": {"type": "text"}, "day": {"type": "text"}},
    }
    outcome = await runner.run(body)
    assert outcome.status == "success", outcome.error
    assert {(e.to_dict()["name"], e.to_dict()["value"]) for e in outcome.events} == {
        ("bike", "road"),
        ("day", None),
    }


async def test_global_slot_validation_action(runner: ActionRunner) -> None:
    body = call("action_validate_slot_mappings")
    body["tracker"] = tracker(
        slots={"email": "not-an-email"},
        events=[{"event": "slot", "timestamp": None, "name": "email", "value": "not-an-email"}],
    )
    body["domain"] = {"slots": {"email": {"type": "text"}}}
    outcome = await runner.run(body)
    assert outcome.status == "success", outcome.error
    assert outcome.events == [SlotSet(name="email", value=None)]


async def test_a_reminder_action_returns_reminder_events(runner: ActionRunner) -> None:
    outcome = await runner.run(call("action_remind_later"))
    assert outcome.status == "success"
    cancelled, scheduled = outcome.events
    assert isinstance(cancelled, ReminderCancelled)
    assert cancelled.name == "call"
    assert isinstance(scheduled, ReminderScheduled)
    assert scheduled.to_dict() == {
        "event": "reminder",
        "timestamp": None,
        "intent": "EXTERNAL_call",
        "date_time": "2030-05-06T07:08:09+00:00",
        "entities": {"person": "Ada"},
        "name": "call",
        "kill_on_user_msg": False,
    }
    assert outcome.responses[0]["text"] == "I will remind you."


async def test_formbot_restaurant_form_validation(
    shared_dir: Path, load_package: LoadPackage
) -> None:
    formbot = shared_dir / "examples" / "rasa" / "formbot" / "actions"
    registry = load_package(str(formbot))
    registry.load()
    assert registry.names() == ["validate_restaurant_form"]
    runner = ActionRunner(registry)
    slots = {
        "cuisine": "Klingon",
        "num_people": "4",
        "outdoor_seating": "outside please",
        "preferences": "no additional preferences",
        "feedback": None,
        "requested_slot": "cuisine",
    }
    body = call("validate_restaurant_form", sender="diner")
    body["tracker"] = tracker(
        "diner",
        slots,
        active_loop={"name": "restaurant_form"},
        events=[
            {"event": "active_loop", "timestamp": None, "name": "restaurant_form"},
            *(
                {"event": "slot", "timestamp": None, "name": name, "value": slots[name]}
                for name in ("cuisine", "num_people", "outdoor_seating")
            ),
        ],
    )
    body["domain"] = {
        "forms": {
            "restaurant_form": {
                "required_slots": [
                    "cuisine",
                    "num_people",
                    "outdoor_seating",
                    "preferences",
                    "feedback",
                ]
            }
        },
        "slots": {name: {"type": "any"} for name in slots},
        "responses": {"utter_wrong_cuisine": [{"text": "cuisine is not in the database"}]},
    }
    try:
        outcome = await runner.run(body)
    finally:
        runner.close()
    assert outcome.status == "success", outcome.error
    values = {e.to_dict()["name"]: e.to_dict()["value"] for e in outcome.events}
    assert values == {"cuisine": None, "num_people": "4", "outdoor_seating": True}
    assert [r["response"] for r in outcome.responses] == ["utter_wrong_cuisine"]
