"""The exported NLU model on the real local Triton (`make services-up`): answers and batches.

The local tritonserver has only the python backend, so the python flavour is exported into
`$TRITON_MODEL_REPOSITORY` under a unique name, loaded through the repository API, compared with
in-process ONNX Runtime, then unloaded and deleted. Triton not answering is a failure, not a skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from services.nlu.inference import OnnxRuntimeModel, TritonModel
from services.nlu.onnx_model import build_test_joint_model
from services.nlu.triton_export import export_triton_repository

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TRITON_GRPC_URL = os.environ.get("TRITON_GRPC_URL", "127.0.0.1:18001")
TRITON_MODEL_REPOSITORY = Path(
    os.environ.get("TRITON_MODEL_REPOSITORY", str(REPO / ".parley/services/triton/models"))
)
TRITON_LOG = REPO / ".parley/services/logs/triton.log"
VOCAB, INTENTS, LABELS = 500, 6, 13
READY_TIMEOUT_S = 60.0


def _fail(message: str) -> BaseException:
    return pytest.fail.Exception(message, pytrace=False)


async def _await_ready(client: Any, name: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not await client.is_model_ready(name):
        if time.monotonic() > deadline:
            raise _fail(
                f"model {name} not ready after {READY_TIMEOUT_S:g}s; see the server log "
                f"(scripts/services.sh logs triton, usually {TRITON_LOG})"
            )
        await asyncio.sleep(0.1)


@pytest.fixture
def model_bytes() -> bytes:
    return build_test_joint_model(VOCAB, 32, INTENTS, LABELS, seed=11)


@pytest.fixture
async def served_model(model_bytes: bytes) -> AsyncIterator[str]:
    async with serving(model_bytes) as name:
        yield name


@contextlib.asynccontextmanager
async def serving(model_bytes: bytes) -> AsyncIterator[str]:
    """A unique python-flavour model, exported, loaded and ready; unloaded and deleted after."""
    from tritonclient.grpc.aio import InferenceServerClient
    from tritonclient.utils import InferenceServerException

    if not await asyncio.to_thread(TRITON_MODEL_REPOSITORY.is_dir):
        raise _fail(f"{TRITON_MODEL_REPOSITORY} is missing; run `make services-up`")
    name = f"test_nlu_{uuid.uuid4().hex[:8]}"
    client = InferenceServerClient(url=TRITON_GRPC_URL)
    model_dir: Path | None = None
    try:
        try:
            await asyncio.wait_for(client.is_server_ready(), 10)
        except (InferenceServerException, TimeoutError) as exc:
            raise _fail(
                f"Triton does not answer on gRPC {TRITON_GRPC_URL} ({exc}); run `make services-up`"
            ) from None
        model_dir = export_triton_repository(
            model_bytes, TRITON_MODEL_REPOSITORY, model_name=name, flavour="python"
        )
        try:
            await client.load_model(name, client_timeout=READY_TIMEOUT_S)
        except InferenceServerException as exc:
            raise _fail(f"loading {name} failed: {exc}; see {TRITON_LOG}") from None
        await _await_ready(client, name)
        yield name
    finally:
        try:
            if model_dir is not None:
                await client.unload_model(name)
        finally:
            await client.close()
            if model_dir is not None:
                shutil.rmtree(model_dir, ignore_errors=True)


def _request(
    rng: np.random.Generator, length: int
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    ids = rng.integers(1, VOCAB, size=(1, length), dtype=np.int64)
    return ids, np.ones_like(ids)


async def _statistics(name: str) -> tuple[int, int]:
    """(inference_count, execution_count) of the model, from Triton's statistics."""
    from tritonclient.grpc.aio import InferenceServerClient

    client = InferenceServerClient(url=TRITON_GRPC_URL)
    try:
        stats = await client.get_inference_statistics(name)
    finally:
        await client.close()
    (model_stats,) = stats.model_stats
    return int(model_stats.inference_count), int(model_stats.execution_count)


async def test_exported_model_answers_like_onnxruntime_and_batches(
    served_model: str, model_bytes: bytes
) -> None:
    reference = OnnxRuntimeModel(model_bytes)
    rng = np.random.default_rng(5)
    async with TritonModel(TRITON_GRPC_URL, served_model, timeout_s=30.0) as triton:
        assert await triton.ready() is True

        ids, mask = _request(rng, 9)
        intent, entities = await triton.infer(ids, mask)
        want_intent, want_entities = await reference.infer(ids, mask)
        assert intent.shape == (1, INTENTS)
        assert entities.shape == (1, 9, LABELS)
        np.testing.assert_allclose(intent, want_intent, atol=1e-5)
        np.testing.assert_allclose(entities, want_entities, atol=1e-5)
        bucketed = TritonModel(TRITON_GRPC_URL, served_model, 30.0, pad_to_multiple=8)
        async with bucketed:
            intent, entities = await bucketed.infer(ids, mask)  # sent padded to 16, trimmed
        assert entities.shape == (1, 9, LABELS)
        np.testing.assert_allclose(intent, want_intent, atol=1e-5)
        np.testing.assert_allclose(entities, want_entities, atol=1e-5)
        before = await _statistics(served_model)

        burst = [_request(rng, 1 + i % 17) for i in range(32)]
        answers = await asyncio.gather(*(triton.infer(ids, mask) for ids, mask in burst))
        for (ids, mask), (intent, entities) in zip(burst, answers, strict=True):
            want_intent, want_entities = reference.infer_sync(ids, mask)
            assert entities.shape == want_entities.shape
            assert np.allclose(intent, want_intent, atol=1e-5)
            assert np.allclose(entities, want_entities, atol=1e-5)

    inferences, executions = await _statistics(served_model)
    burst_inferences, burst_executions = inferences - before[0], executions - before[1]
    print(f"burst of 32: {burst_inferences} inferences in {burst_executions} executions")
    assert burst_inferences == 32
    assert burst_executions < burst_inferences, (
        f"the dynamic batcher did not batch: {burst_executions} executions for 32 requests"
    )


async def test_unknown_model_is_a_retryable_error() -> None:
    from services.common.errors import RetryableError

    async with TritonModel(TRITON_GRPC_URL, "parley_health") as health:
        if not await health.ready():
            raise _fail(
                f"Triton has no ready parley_health on {TRITON_GRPC_URL}; run `make services-up`"
            )
    async with TritonModel(TRITON_GRPC_URL, f"missing_{uuid.uuid4().hex[:8]}") as triton:
        assert await triton.ready() is False
        ids = np.ones((1, 3), dtype=np.int64)
        with pytest.raises(RetryableError, match="missing_"):
            await triton.infer(ids, ids)


async def test_trained_model_on_triton_answers_like_onnxruntime(tiny_archive: Path) -> None:
    """The model `parley train` wrote, on real utterances of mixed lengths, through Triton."""
    from services.nlu.archive import ModelArchive
    from services.nlu.tokenizer import WordPieceTokenizer

    nlu = ModelArchive.read(tiny_archive).nlu
    tokenizer = WordPieceTokenizer(nlu.tokenizer_json, nlu.max_length, nlu.pad_id)
    reference = OnnxRuntimeModel(nlu.onnx)
    texts = ["hi", "book a flight to Berlin", "see you later, my friend", "🍕 to 東京", ""]
    async with serving(nlu.onnx) as name, TritonModel(TRITON_GRPC_URL, name, 30.0) as triton:
        encoded = tokenizer.encode(texts)
        singles = [tokenizer.pad([e]) for e in encoded]
        answers = await asyncio.gather(*(triton.infer(ids, mask) for ids, mask in singles))
        for (ids, mask), (intent, entities) in zip(singles, answers, strict=True):
            want_intent, want_entities = reference.infer_sync(ids, mask)
            assert intent.shape == (1, len(nlu.intents))
            assert entities.shape == (1, ids.shape[1], len(nlu.entity_labels))
            np.testing.assert_allclose(intent, want_intent, atol=1e-4)
            np.testing.assert_allclose(entities, want_entities, atol=1e-4)
