"""Micro-batching for the in-process model: concurrent `infer` calls become one model run.

The NLU worker handles several partitions at once, each awaiting `infer` for one message. With
onnxruntime in process, running those one by one wastes the batching the model is good at:
`BatchingModel` collects the calls arriving within `max_delay_s` (or until `max_batch` rows),
pads them to the longest sequence (pad id 0, mask 0 — the model ignores masked positions),
runs the inner model once and hands each caller its own rows, entity logits trimmed back to
its length. A failure of the batch fails every call in it. (Triton does the same on the
server side with its dynamic batcher, so the Triton backend does not need this.)
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import numpy as np

from services.nlu.inference import IntentEntityModel, Logits, TokenIds


@dataclass
class _Call:
    ids: TokenIds
    mask: TokenIds
    done: asyncio.Future[tuple[Logits, Logits]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class BatchingModel:
    """An `IntentEntityModel` that batches concurrent calls to `inner`."""

    def __init__(
        self, inner: IntentEntityModel, *, max_batch: int = 32, max_delay_s: float = 0.002
    ) -> None:
        self.inner = inner
        self.max_batch = max_batch
        self.max_delay_s = max_delay_s
        self._queue: asyncio.Queue[_Call] = asyncio.Queue()
        self._collector: asyncio.Task[None] | None = None
        self.batches: list[int] = []  # rows per model run, for tests and statistics

    async def infer(self, input_ids: TokenIds, attention_mask: TokenIds) -> tuple[Logits, Logits]:
        call = _Call(np.asarray(input_ids, np.int64), np.asarray(attention_mask, np.int64))
        await self._queue.put(call)
        if self._collector is None or self._collector.done():
            self._collector = asyncio.create_task(self._collect())
        return await call.done

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._queue.empty():
            calls = [self._queue.get_nowait()]
            rows = calls[0].ids.shape[0]
            deadline = loop.time() + self.max_delay_s
            while rows < self.max_batch:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    call = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
                calls.append(call)
                rows += call.ids.shape[0]
            await self._run(calls)

    async def _run(self, calls: list[_Call]) -> None:
        length = max(c.ids.shape[1] for c in calls)

        def padded(array: TokenIds) -> TokenIds:
            return np.pad(array, ((0, 0), (0, length - array.shape[1])))

        ids = np.concatenate([padded(c.ids) for c in calls])
        mask = np.concatenate([padded(c.mask) for c in calls])
        self.batches.append(int(ids.shape[0]))
        try:
            intent, entities = await self.inner.infer(ids, mask)
        except Exception as exc:  # noqa: BLE001 - handed to every caller of the batch
            for call in calls:
                if not call.done.done():
                    call.done.set_exception(exc)
            return
        start = 0
        for call in calls:
            rows, own_length = call.ids.shape
            result = (intent[start : start + rows], entities[start : start + rows, :own_length])
            with contextlib.suppress(asyncio.InvalidStateError):  # the caller was cancelled
                call.done.set_result(result)
            start += rows
