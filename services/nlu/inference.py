"""The NLU model port (`IntentEntityModel`) and its adapters: in-process ONNX Runtime or Triton.

Both take `input_ids` and `attention_mask` (int64 `[B, T]`) and return the intent logits
`[B, I]` and the entity logits `[B, T, L]` (float32). `OnnxRuntimeModel` is the embedded default;
`TritonModel` calls a Triton Inference Server over gRPC (asyncio) and needs `tritonclient[grpc]`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

import numpy as np
from numpy.typing import NDArray

from services.common.errors import RetryableError

INPUT_NAMES = ("input_ids", "attention_mask")
OUTPUT_NAMES = ("intent", "entities")

TokenIds = NDArray[np.int64]
"""int64 `[B, T]`: `input_ids` or `attention_mask`."""
Logits = NDArray[np.float32]
"""float32 logits: intent `[B, I]` or entities `[B, T, L]`."""


class IntentEntityModel(Protocol):
    """A joint intent + entity model: token ids in, logits out."""

    async def infer(self, input_ids: TokenIds, attention_mask: TokenIds) -> tuple[Logits, Logits]:
        """Intent logits [B, I] and entity logits [B, T, L] for int64 inputs [B, T]."""
        ...


def _as_inputs(input_ids: TokenIds, attention_mask: TokenIds) -> tuple[TokenIds, TokenIds]:
    ids = np.ascontiguousarray(input_ids, dtype=np.int64)
    mask = np.ascontiguousarray(attention_mask, dtype=np.int64)
    if ids.ndim != 2 or ids.shape != mask.shape:
        raise ValueError(
            f"input_ids {ids.shape} and attention_mask {mask.shape} must be equal [batch, seq]"
        )
    return ids, mask


class OnnxRuntimeModel:
    """In-process ONNX Runtime; `infer` runs the session in a worker thread (loop not blocked)."""

    def __init__(self, model: bytes | str | Path, threads: int = 1) -> None:
        import onnxruntime as ort  # type: ignore[import-untyped]

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        source = model if isinstance(model, bytes) else str(model)
        self._session: Any = ort.InferenceSession(
            source, sess_options=options, providers=["CPUExecutionProvider"]
        )

    def infer_sync(self, input_ids: TokenIds, attention_mask: TokenIds) -> tuple[Logits, Logits]:
        """The same as `infer`, in the calling thread."""
        ids, mask = _as_inputs(input_ids, attention_mask)
        intent, entities = self._session.run(
            list(OUTPUT_NAMES), {"input_ids": ids, "attention_mask": mask}
        )
        return np.asarray(intent), np.asarray(entities)

    async def infer(self, input_ids: TokenIds, attention_mask: TokenIds) -> tuple[Logits, Logits]:
        """Intent logits [B, I] and entity logits [B, T, L]."""
        return await asyncio.to_thread(self.infer_sync, input_ids, attention_mask)


class TritonModel:
    """A model served by Triton, over gRPC (`tritonclient.grpc.aio`).

    Use as `async with TritonModel(url, name) as model:` (or call `close()`): the gRPC channel is
    opened on first use and closed on exit. Failures of the server (unreachable, model not
    loaded, inference error, timeout) raise `RetryableError`.

    `pad_to_multiple` pads each request's sequence length up to a multiple (pad id 0, mask 0;
    entity logits trimmed back): Triton's onnxruntime backend batches only requests of equal
    shape, so length buckets let its dynamic batcher group them. The python flavour does not
    need it (its config allows ragged batches and the model pads).
    """

    def __init__(
        self,
        grpc_url: str,
        model_name: str,
        timeout_s: float = 5.0,
        *,
        pad_to_multiple: int | None = None,
        model_version: str = "",
    ) -> None:
        self.grpc_url = grpc_url
        self.model_name = model_name
        self.model_version = model_version
        self.timeout_s = timeout_s
        self.pad_to_multiple = pad_to_multiple
        self._client: Any = None

    def _connect(self) -> Any:
        if self._client is None:
            from tritonclient.grpc.aio import InferenceServerClient

            self._client = InferenceServerClient(url=self.grpc_url)
        return self._client

    async def __aenter__(self) -> Self:
        self._connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the gRPC channel (idempotent)."""
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def ready(self) -> bool:
        """Whether Triton answers and has this model loaded and ready; never raises."""
        from tritonclient.utils import InferenceServerException

        try:
            ready = await asyncio.wait_for(
                self._connect().is_model_ready(self.model_name, self.model_version),
                self.timeout_s,
            )
        except (InferenceServerException, TimeoutError):
            return False
        return bool(ready)

    async def infer(self, input_ids: TokenIds, attention_mask: TokenIds) -> tuple[Logits, Logits]:
        """Intent logits [B, I] and entity logits [B, T, L] from Triton."""
        from tritonclient.grpc.aio import InferInput, InferRequestedOutput
        from tritonclient.utils import InferenceServerException

        ids, mask = _as_inputs(input_ids, attention_mask)
        length = ids.shape[1]
        if self.pad_to_multiple and length % self.pad_to_multiple:
            padding = ((0, 0), (0, self.pad_to_multiple - length % self.pad_to_multiple))
            ids, mask = np.pad(ids, padding), np.pad(mask, padding)
        inputs = []
        for name, array in zip(INPUT_NAMES, (ids, mask), strict=True):
            tensor = InferInput(name, list(array.shape), "INT64")
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        outputs = [InferRequestedOutput(name) for name in OUTPUT_NAMES]
        try:
            result = await asyncio.wait_for(
                self._connect().infer(
                    self.model_name,
                    inputs,
                    model_version=self.model_version,
                    outputs=outputs,
                    client_timeout=self.timeout_s,
                ),
                self.timeout_s + 1.0,
            )
        except InferenceServerException as exc:
            raise RetryableError(
                f"Triton at {self.grpc_url}, model {self.model_name!r}: {exc.message()} "
                f"(status {exc.status()})"
            ) from exc
        except TimeoutError as exc:
            raise RetryableError(
                f"Triton at {self.grpc_url}, model {self.model_name!r}: no answer in "
                f"{self.timeout_s:g}s"
            ) from exc
        intent = result.as_numpy("intent")
        entities = result.as_numpy("entities")
        if intent is None or entities is None:
            raise RetryableError(
                f"Triton at {self.grpc_url}, model {self.model_name!r}: answer lacks {OUTPUT_NAMES}"
            )
        return np.asarray(intent), np.asarray(entities)[:, :length]
