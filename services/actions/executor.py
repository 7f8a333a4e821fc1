"""Run one custom action the way rasa-sdk's `ActionExecutor.run` does, without its sharp edges.

- A synchronous `run()` executes in a bounded thread pool of its own, so one slow action never
  stalls the event loop (rasa-sdk calls it on the loop); async actions run on the loop.
- Each run is limited to `timeout_s` (an async action is cancelled; a thread cannot be, so it
  is abandoned and reported) and at most `concurrency` actions run at once.
- `ActionExecutionRejection` → `rejected`; an unknown action → `not_found` naming the registered
  ones; anything else the action raises or returns that is not a list of valid Rasa events and
  JSON responses → `failed` with the reason. Nothing an action does escapes as an exception.
- A request that is itself unusable (no tracker, say) raises `MalformedRequest`.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import rasa_sdk
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.interfaces import ActionExecutionRejection

from schemas.events import AnyEvent, parse_events
from services.actions.registry import ActionRegistry, RegisteredAction
from services.common.errors import PermanentError

logger = logging.getLogger(__name__)

Status = Literal["success", "rejected", "failed", "not_found", "timeout"]


class MalformedRequest(PermanentError):
    """The action call itself is unusable (missing tracker, tracker not a dict, ...)."""


@dataclass(frozen=True)
class Outcome:
    """What running one action came to.

    `raw_events` are the event dicts as the action returned them (rasa-sdk's HTTP body);
    `events` the same parsed as Parley events. `rejected_action` is the name the
    `ActionExecutionRejection` carried.
    """

    action_name: str
    status: Status
    events: list[AnyEvent] = field(default_factory=list)
    raw_events: list[dict[str, Any]] = field(default_factory=list)
    responses: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    rejected_action: str | None = None


class ActionRunner:
    """Runs actions of a registry with a timeout, a concurrency limit and a thread pool."""

    def __init__(
        self, registry: ActionRegistry, *, timeout_s: float = 10.0, concurrency: int = 32
    ) -> None:
        self.registry = registry
        self.timeout_s = timeout_s
        self.concurrency = concurrency
        self._slots = asyncio.Semaphore(concurrency)
        self._threads = ThreadPoolExecutor(concurrency, thread_name_prefix="parley-action")
        self._stuck = 0
        self._running = 0
        self._versions_seen: set[str] = set()

    @property
    def running(self) -> int:
        """Actions running now (on the loop or in a thread)."""
        return self._running

    @property
    def stuck_threads(self) -> int:
        """Threads still busy with synchronous actions that timed out."""
        return self._stuck

    async def ready(self) -> tuple[bool, str]:
        """Readiness: the package is loaded and not every thread is stuck in a hung action."""
        if not self.registry.loaded:
            return False, "action package not loaded"
        if self._stuck >= self.concurrency:
            return False, f"all {self.concurrency} action threads are stuck in timed-out actions"
        return True, f"{len(self.registry.names())} action(s); {self._stuck} stuck thread(s)"

    def close(self) -> None:
        """Release the thread pool without waiting for abandoned threads."""
        self._threads.shutdown(wait=False, cancel_futures=True)

    async def run(self, call: Mapping[str, Any]) -> Outcome:
        """Run the action a webhook body (`next_action`, `sender_id`, `tracker`, `domain`) names."""
        name = call.get("next_action")
        if not isinstance(name, str) or not name:
            raise MalformedRequest(f"'next_action' must be a non-empty string, not {name!r}")
        tracker = _tracker(call)
        self._check_version(call.get("version"))
        domain = call.get("domain")
        if not isinstance(domain, dict):
            raise MalformedRequest(f"'domain' must be an object, not {type(domain).__name__}")
        action = self.registry.get(name)
        if action is None:
            registered = ", ".join(self.registry.names()) or "none"
            return Outcome(
                name,
                "not_found",
                error=f"No registered action found for name '{name}'. "
                f"Registered actions: {registered}.",
            )
        async with self._slots:
            self._running += 1
            try:
                return await self._run(action, tracker, domain)
            finally:
                self._running -= 1

    def _check_version(self, version: Any) -> None:
        # rasa-sdk warns on every call through `warnings`; once per version in the log is enough.
        key = str(version)[:64]
        if key in self._versions_seen or len(self._versions_seen) >= 64:
            return
        self._versions_seen.add(key)
        sdk = rasa_sdk.__version__.split(".")[:2]
        if not isinstance(version, str) or version.split(".")[:2] != sdk:
            logger.warning(
                "Rasa version %r calls actions with rasa-sdk %s: use the same major.minor",
                version,
                rasa_sdk.__version__,
            )

    async def _run(
        self, action: RegisteredAction, tracker: Tracker, domain: dict[str, Any]
    ) -> Outcome:
        name = action.name
        dispatcher = CollectingDispatcher()
        try:
            # A deadline on this task, not `wait_for`'s extra task: under load every hop
            # through the event loop's queue delays the next action.
            async with asyncio.timeout(self.timeout_s):
                returned = await self._call(action, dispatcher, tracker, domain)
        except TimeoutError:
            logger.error("action '%s' did not finish within %gs", name, self.timeout_s)
            return Outcome(
                name, "timeout", error=f"action '{name}' timed out after {self.timeout_s:g}s"
            )
        except ActionExecutionRejection as exc:
            logger.info("action '%s' rejected execution: %s", name, exc.message)
            return Outcome(name, "rejected", error=exc.message, rejected_action=exc.action_name)
        except Exception as exc:  # the action failed; it must not escape
            logger.exception("action '%s' raised", name)
            return Outcome(name, "failed", error=f"{type(exc).__name__}: {exc}")
        try:
            raw_events, events = check_events(returned)
            responses = check_responses(dispatcher.messages)
        except ValueError as exc:
            logger.error("action '%s' returned garbage: %s", name, exc)
            return Outcome(name, "failed", error=f"action '{name}' returned {exc}")
        return Outcome(name, "success", events, raw_events, responses)

    async def _call(
        self,
        action: RegisteredAction,
        dispatcher: CollectingDispatcher,
        tracker: Tracker,
        domain: dict[str, Any],
    ) -> Any:
        if action.is_async:
            returned = await action.run(dispatcher, tracker, domain)
        else:
            returned = await self._in_thread(action, dispatcher, tracker, domain)
        if asyncio.iscoroutine(returned):  # a sync callable handing back a coroutine
            returned = await returned
        if getattr(dispatcher, "is_streaming_active", False):  # rasa-sdk >= 3.20 streaming
            await dispatcher.stream_end()
        return returned

    async def _in_thread(
        self,
        action: RegisteredAction,
        dispatcher: CollectingDispatcher,
        tracker: Tracker,
        domain: dict[str, Any],
    ) -> Any:
        context = contextvars.copy_context()  # correlated log lines from the thread too
        call = self._threads.submit(context.run, action.run, dispatcher, tracker, domain)
        try:
            # Awaited directly, not through `shield`: one hop fewer through the loop's queue.
            # Cancelling it cancels a queued call; a running thread ignores it.
            return await asyncio.wrap_future(call)
        except asyncio.CancelledError:
            # A queued call is dropped; a running thread cannot be stopped, only abandoned.
            if not call.cancel():
                self._abandon(action.name, call)
            raise

    def _abandon(self, name: str, call: Future[Any]) -> None:
        self._stuck += 1
        logger.warning(
            "synchronous action '%s' abandoned while its thread still runs (%d stuck)",
            name,
            self._stuck,
        )
        loop = asyncio.get_running_loop()

        def finished(done: Future[Any]) -> None:
            self._stuck -= 1
            error = None if done.cancelled() else done.exception()
            logger.info("abandoned action '%s' finished at last (%s)", name, error or "no error")

        def in_loop(done: Future[Any]) -> None:  # called in the action's thread
            if not loop.is_closed():
                loop.call_soon_threadsafe(finished, done)

        call.add_done_callback(in_loop)


def _tracker(call: Mapping[str, Any]) -> Tracker:
    state = call.get("tracker")
    if not isinstance(state, dict):
        raise MalformedRequest(f"'tracker' must be an object, not {type(state).__name__}")
    if "sender_id" not in state:
        sender = call.get("sender_id")
        if not isinstance(sender, str):
            raise MalformedRequest("the tracker has no 'sender_id'")
        state = {**state, "sender_id": sender}
    try:
        return Tracker.from_dict(state)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise MalformedRequest(f"unusable tracker: {type(exc).__name__}: {exc}") from exc


def check_events(returned: Any) -> tuple[list[dict[str, Any]], list[AnyEvent]]:
    """The events an action returned, as JSON dicts and parsed; `ValueError` for garbage."""
    if returned is None:
        return [], []
    if not isinstance(returned, list | tuple):
        raise ValueError(f"{type(returned).__name__} instead of a list of events")
    raw = _json_copy(list(returned), "events")
    try:
        # parse_event returns the concrete class of each event: an AnyEvent member.
        events = cast("list[AnyEvent]", parse_events(raw))
    except ValueError as exc:
        raise ValueError(f"an invalid event: {exc}") from exc
    kept = [item for item in raw if not (isinstance(item, dict) and item.get("event") is None)]
    return kept, events


def check_responses(messages: Any) -> list[dict[str, Any]]:
    """The dispatcher's messages as JSON objects (`template` copied to `response`)."""
    responses = _json_copy(list(messages), "responses")
    for index, message in enumerate(responses):
        if not isinstance(message, dict):
            raise ValueError(f"response #{index} is {type(message).__name__}, not an object")
        if message.get("response") is None and message.get("template") is not None:
            message["response"] = message["template"]
    return responses


def _json_copy(items: list[Any], what: str) -> list[Any]:
    """The items through JSON, so what is published is exactly what can be sent."""
    try:
        text = json.dumps(items, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} that are not JSON: {exc}") from exc
    copied = json.loads(text)
    assert isinstance(copied, list)
    return copied
