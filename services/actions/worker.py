"""The actions worker's handler: `ActionRequest` on `parley.actions` → `ActionResult` on
`parley.dialogue`.

Every request that can be read gets a result: success, rejected, not_found, timeout or failed
(the dialogue worker falls back on the last three). Only a request that cannot be an action
call (undecodable bytes, no tracker) is dead-lettered. The result's `message_id` is derived from
the request's, so a redelivered request publishes the same id and the dialogue worker drops the
duplicate.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any, Protocol

from schemas.envelopes import ActionRequest, ActionResult
from schemas.topics import Topic
from services.actions.executor import Outcome
from services.common.bus import Publication
from services.common.clock import Clock

logger = logging.getLogger(__name__)

_RESULT_IDS = uuid.UUID("6d1c3f0e-3b1a-4f55-9a57-5c0b2b7a1e42")


def result_message_id(request_id: str) -> str:
    """The `message_id` of the result of request `request_id` (stable across redeliveries)."""
    return uuid.uuid5(_RESULT_IDS, request_id).hex


class Runner(Protocol):
    """Runs one action call: in process (`ActionRunner`) or on a remote action server
    (`RemoteActionRunner`)."""

    async def run(self, call: Mapping[str, Any]) -> Outcome: ...


class ActionsService:
    """Runs requested actions and answers with their results."""

    def __init__(self, runner: Runner, clock: Clock) -> None:
        self.runner = runner
        self.clock = clock

    async def handle(self, request: ActionRequest) -> list[Publication]:
        """Run the requested action; `MalformedRequest` (permanent) when it cannot be run."""
        outcome = await self.runner.run(request.webhook_payload())
        logger.info("action '%s': %s", request.next_action, outcome.status)
        result = ActionResult(
            conversation_id=request.conversation_id,
            message_id=result_message_id(request.message_id),
            correlation_id=request.correlation_id,
            sent_at=self.clock.now(),
            request_id=request.message_id,
            action_name=request.next_action,
            status=outcome.status,
            events=outcome.events,
            responses=outcome.responses,
            error=outcome.error,
        )
        return [Publication(Topic.DIALOGUE, result)]
