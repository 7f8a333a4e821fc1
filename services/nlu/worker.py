"""The NLU worker's handler: `UserMessage` on `parley.nlu` → `UserUttered` on `parley.dialogue`.

- The model comes from the newest archive in a models folder (or one archive file) and is
  swapped, without a restart, when a newer archive appears (`reload_if_newer`, polled by
  `watch`). A broken new archive is logged and the current model kept.
- Inference failures of the backend (Triton down or slow: `RetryableError`) are retried a
  bounded number of times with backoff; then the handler raises `DependencyUnavailable`, so
  the dispatcher holds the message (nothing lost, nothing reordered) and readiness reports
  not ready until inference works again.
- The published message keeps the user message's `message_id` (a redelivery publishes the same
  id, which the dialogue worker deduplicates) and its correlation id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from schemas.envelopes import ParsedUserMessage, UserMessage
from schemas.events import UserUttered
from schemas.topics import Topic
from services.common.bus import Publication
from services.common.clock import Clock
from services.common.errors import DependencyUnavailable, RetryableError
from services.nlu.archive import ArchiveError, ModelArchive, resolve_model
from services.nlu.interpreter import NluInterpreter, ParseRequest

logger = logging.getLogger(__name__)
SleepFn = Callable[[float], Awaitable[None]]


class ModelLoader(Protocol):
    """Turns an archive into a ready interpreter (in-process, or deployed to Triton)."""

    async def load(self, archive: ModelArchive) -> NluInterpreter: ...

    async def ready(self, interpreter: NluInterpreter) -> tuple[bool, str]: ...


@dataclass(frozen=True)
class LoadedModel:
    archive: Path
    interpreter: NluInterpreter


class NluService:
    """Holds the current model and parses user messages with it."""

    def __init__(
        self,
        models: Path,
        loader: ModelLoader,
        clock: Clock,
        *,
        attempts: int = 3,
        first_delay: float = 0.2,
        sleep: SleepFn = asyncio.sleep,
    ) -> None:
        self.models = models
        self.loader = loader
        self.clock = clock
        self.attempts = attempts
        self.first_delay = first_delay
        self._sleep = sleep
        self.current: LoadedModel | None = None
        self._inference_ok = True
        self._last_error = ""
        self._reload_lock = asyncio.Lock()

    async def reload_if_newer(self) -> bool:
        """Load the newest archive if it is not the current one; True when swapped."""
        async with self._reload_lock:
            try:
                path = resolve_model(self.models)
            except ArchiveError as exc:
                if self.current is None:
                    raise
                logger.warning("model folder: %s; keeping %s", exc, self.current.archive.name)
                return False
            if self.current is not None and path == self.current.archive:
                return False
            try:
                archive = await asyncio.to_thread(ModelArchive.read, path)
                interpreter = await self.loader.load(archive)
            except (ArchiveError, RetryableError, OSError, ValueError) as exc:
                if self.current is None:
                    raise
                logger.error("new model %s not loaded (%s); keeping %s", path, exc, self.current)
                return False
            previous = self.current
            self.current = LoadedModel(path, interpreter)
            logger.info(
                "NLU model %s loaded (%d intents, %d entity labels)%s",
                path.name,
                len(archive.nlu.intents),
                len(archive.nlu.entity_labels),
                f", replacing {previous.archive.name}" if previous else "",
            )
            return True

    async def watch(self, interval_s: float, stop: asyncio.Event) -> None:
        """Poll for newer archives until `stop` is set."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)
            if not stop.is_set():
                try:
                    await self.reload_if_newer()
                except Exception:  # the watcher must outlive one bad archive
                    logger.exception("model reload failed")

    async def ready(self) -> tuple[bool, str]:
        """Readiness: a model is loaded, its backend answers, and inference last worked."""
        if self.current is None:
            return False, "no model loaded"
        ok, detail = await self.loader.ready(self.current.interpreter)
        if not ok:
            return False, detail
        if not self._inference_ok:
            return False, f"inference failing: {self._last_error}"
        return True, f"model {self.current.archive.name}; {detail}"

    async def handle(self, message: UserMessage) -> list[Publication]:
        """Parse one user message; see the module docstring for failures."""
        if self.current is None:
            raise DependencyUnavailable("no NLU model loaded yet")
        request = ParseRequest(message.text, message.message_id, message.metadata)
        delay = self.first_delay
        for attempt in range(1, self.attempts + 1):
            interpreter = self.current.interpreter
            try:
                parse_data = (await interpreter.parse([request]))[0]
            except RetryableError as exc:
                self._inference_ok, self._last_error = False, str(exc)
                if attempt == self.attempts:
                    raise DependencyUnavailable(
                        f"NLU inference failed {attempt} times: {exc}"
                    ) from exc
                logger.warning("inference failed (attempt %d): %s", attempt, exc)
                await self._sleep(delay)
                delay *= 2
                continue
            self._inference_ok = True
            break
        now = self.clock.now()
        event = UserUttered(
            timestamp=now.timestamp(),
            text=message.text,
            parse_data=parse_data,
            input_channel=message.input_channel,
            message_id=message.message_id,
            metadata=message.metadata,
        )
        parsed = ParsedUserMessage(
            conversation_id=message.conversation_id,
            message_id=message.message_id,
            correlation_id=message.correlation_id or message.message_id,
            sent_at=now,
            event=event,
        )
        return [Publication(Topic.DIALOGUE, parsed)]
