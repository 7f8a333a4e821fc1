"""Two actions: one that does nothing (async), one that blocks its thread for 50 ms (sync)."""

from __future__ import annotations

import time
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher

SLEEP_S = 0.05


class ActionBenchNoop(Action):  # type: ignore[misc]
    def name(self) -> str:
        return "action_bench_noop"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        return []


class ActionBenchSleep(Action):  # type: ignore[misc]
    def name(self) -> str:
        return "action_bench_sleep"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        time.sleep(SLEEP_S)  # a blocking call, as a database driver or `requests` would make
        return []
