"""Triton python-backend model for Parley's joint NLU ONNX model (copied verbatim as model.py).

This file is self-contained (numpy + onnxruntime only, no Parley imports): the exporter copies it
into `<repository>/<model>/<version>/model.py` beside `model.onnx`. Every `execute` call runs ALL
of its requests as ONE onnxruntime batch: sequences are padded to the longest one (pad id from the
`pad_token_id` parameter, attention_mask 0), and the outputs are split back per request, entity
logits trimmed to each request's own length. That is what makes Triton's dynamic batcher pay off.
Parameters (config.pbtxt): `intra_op_num_threads` (default 1), `pad_token_id` (default 0).
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import numpy as np

INPUTS = ("input_ids", "attention_mask")
OUTPUTS = ("intent", "entities")


def _parameter(config: dict[str, Any], key: str, default: int) -> int:
    value = config.get("parameters", {}).get(key, {}).get("string_value", "")
    return int(value) if str(value).strip() else default


class TritonPythonModel:
    """The python backend's model: one onnxruntime session per model instance."""

    def initialize(self, args: dict[str, str]) -> None:
        """Load `model.onnx` from this file's folder (the model version folder)."""
        import onnxruntime as ort  # type: ignore[import-untyped]

        self._pb: Any = importlib.import_module("triton_python_backend_utils")
        config = json.loads(args.get("model_config", "{}"))
        options = ort.SessionOptions()
        options.intra_op_num_threads = _parameter(config, "intra_op_num_threads", 1)
        options.inter_op_num_threads = 1
        self._pad_id = _parameter(config, "pad_token_id", 0)
        folder = Path(__file__).resolve().parent
        if args.get("model_repository") and args.get("model_version"):
            candidate = Path(args["model_repository"]) / args["model_version"]
            if (candidate / "model.onnx").is_file():
                folder = candidate
        providers = ["CPUExecutionProvider"]
        if args.get("model_instance_kind") == "GPU" and (
            "CUDAExecutionProvider" in ort.get_available_providers()
        ):
            device = {"device_id": int(args.get("model_instance_device_id", "0"))}
            providers = [("CUDAExecutionProvider", device), "CPUExecutionProvider"]  # type: ignore[list-item]
        self._session: Any = ort.InferenceSession(
            str(folder / "model.onnx"), sess_options=options, providers=providers
        )

    def _read(self, request: Any) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        arrays = []
        for name in INPUTS:
            tensor = self._pb.get_input_tensor_by_name(request, name)
            if tensor is None:
                raise ValueError(f"missing input {name!r}")
            arrays.append(np.asarray(tensor.as_numpy()).astype(np.int64, copy=False))
        ids, mask = arrays
        if ids.ndim != 2 or ids.shape != mask.shape:
            raise ValueError(
                f"input_ids {ids.shape} and attention_mask {mask.shape} must be equal [batch, seq]"
            )
        return ids, mask

    def execute(self, requests: list[Any]) -> list[Any]:
        """Answer every request of this call from a single padded onnxruntime batch."""
        pb = self._pb
        responses: list[Any] = [None] * len(requests)
        batch: list[tuple[int, np.ndarray[Any, Any], np.ndarray[Any, Any]]] = []
        for index, request in enumerate(requests):
            try:
                ids, mask = self._read(request)
            except ValueError as exc:
                responses[index] = pb.InferenceResponse(
                    output_tensors=[], error=pb.TritonError(str(exc))
                )
                continue
            batch.append((index, ids, mask))
        if batch:
            longest = max(ids.shape[1] for _, ids, _ in batch)
            rows = sum(ids.shape[0] for _, ids, _ in batch)
            all_ids = np.full((rows, longest), self._pad_id, dtype=np.int64)
            all_mask = np.zeros((rows, longest), dtype=np.int64)
            row = 0
            for _, ids, mask in batch:
                all_ids[row : row + ids.shape[0], : ids.shape[1]] = ids
                all_mask[row : row + ids.shape[0], : ids.shape[1]] = mask
                row += ids.shape[0]
            try:
                intent, entities = self._session.run(
                    list(OUTPUTS), {"input_ids": all_ids, "attention_mask": all_mask}
                )
            except Exception as exc:  # noqa: BLE001 - onnxruntime's errors derive from Exception
                for index, _, _ in batch:
                    responses[index] = pb.InferenceResponse(
                        output_tensors=[], error=pb.TritonError(f"onnxruntime: {exc}")
                    )
                return responses
            row = 0
            for index, ids, _ in batch:
                end = row + ids.shape[0]
                outputs = [
                    pb.Tensor("intent", np.ascontiguousarray(intent[row:end], dtype=np.float32)),
                    pb.Tensor(
                        "entities",
                        np.ascontiguousarray(entities[row:end, : ids.shape[1]], dtype=np.float32),
                    ),
                ]
                responses[index] = pb.InferenceResponse(output_tensors=outputs)
                row = end
        return responses

    def finalize(self) -> None:
        """Release the onnxruntime session."""
        self._session = None
