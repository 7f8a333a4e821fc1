"""Micro-batching concurrent in-process calls: each caller gets exactly its rows back."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from services.nlu.batching import BatchingModel
from services.nlu.inference import Logits, TokenIds


class Echo:
    """Intent logits = row sums of ids; entity logits = ids (as float) per label slot."""

    def __init__(self, fail: bool = False) -> None:
        self.shapes: list[tuple[int, ...]] = []
        self.fail = fail

    async def infer(self, input_ids: TokenIds, attention_mask: TokenIds) -> tuple[Logits, Logits]:
        self.shapes.append(input_ids.shape)
        await asyncio.sleep(0)
        if self.fail:
            raise RuntimeError("model exploded")
        masked = (input_ids * attention_mask).astype(np.float32)
        return masked.sum(axis=1, keepdims=True), np.stack([masked, -masked], axis=-1)


async def test_concurrent_calls_share_model_runs_and_get_their_own_rows() -> None:
    inner = Echo()
    model = BatchingModel(inner, max_batch=8, max_delay_s=0.05)
    rng = np.random.default_rng(3)
    requests = [rng.integers(1, 100, size=(1, 2 + i % 5)) for i in range(20)]
    answers = await asyncio.gather(*(model.infer(r, np.ones_like(r)) for r in requests))
    for request, (intent, entities) in zip(requests, answers, strict=True):
        assert intent.shape == (1, 1)
        assert intent[0, 0] == request.sum()
        assert entities.shape == (1, request.shape[1], 2)
        np.testing.assert_array_equal(entities[0, :, 0], request[0])
    assert sum(model.batches) == 20
    assert max(model.batches) <= 8
    assert len(inner.shapes) < 20  # batched: fewer model runs than calls


async def test_a_lone_call_waits_at_most_the_delay() -> None:
    model = BatchingModel(Echo(), max_batch=32, max_delay_s=0.001)
    ids = np.array([[5, 6, 7]])
    intent, _ = await asyncio.wait_for(model.infer(ids, np.ones_like(ids)), 1.0)
    assert intent[0, 0] == 18
    assert model.batches == [1]


async def test_a_failed_run_fails_every_caller_of_the_batch() -> None:
    model = BatchingModel(Echo(fail=True), max_batch=4, max_delay_s=0.05)
    ids = np.array([[1, 2]])
    results = await asyncio.gather(
        *(model.infer(ids, np.ones_like(ids)) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, RuntimeError) for r in results)
    with pytest.raises(RuntimeError, match="exploded"):
        await model.infer(ids, np.ones_like(ids))
