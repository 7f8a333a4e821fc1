"""The Triton export: config.pbtxt fields, both flavours' files, and the python model's batching."""

from __future__ import annotations

import importlib.util
import json
import sys
import types
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from google.protobuf import text_format  # type: ignore[import-untyped]
from tritonclient.grpc import model_config_pb2

from services.nlu.export_cli import add_export_command
from services.nlu.inference import OnnxRuntimeModel
from services.nlu.onnx_model import ModelSignature, build_test_joint_model
from services.nlu.triton_export import PYTHON_MODEL_TEMPLATE, export_triton_repository

INTENTS, LABELS, VOCAB = 5, 11, 300


@pytest.fixture(scope="module")
def model_bytes() -> bytes:
    return build_test_joint_model(VOCAB, 16, INTENTS, LABELS, seed=3)


def parse_config(model_dir: Path) -> Any:
    text = (model_dir / "config.pbtxt").read_text()
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def test_test_model_is_valid_onnx_and_deterministic(model_bytes: bytes) -> None:
    model = onnx.load_from_string(model_bytes)
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == 17
    assert build_test_joint_model(VOCAB, 16, INTENTS, LABELS, seed=3) == model_bytes
    assert build_test_joint_model(VOCAB, 16, INTENTS, LABELS, seed=4) != model_bytes
    signature = ModelSignature.of_onnx(model_bytes)
    signature.check_joint()
    assert signature.input("input_ids").dims == (-1, -1)
    assert signature.output("intent").dims == (-1, INTENTS)
    assert signature.output("entities").dims == (-1, -1, LABELS)


def test_onnxruntime_flavour_config_and_files(model_bytes: bytes, tmp_path: Path) -> None:
    model_dir = export_triton_repository(model_bytes, tmp_path, model_name="nlu_a")
    assert model_dir == tmp_path / "nlu_a"
    assert sorted(p.relative_to(model_dir).as_posix() for p in model_dir.rglob("*")) == [
        "1",
        "1/model.onnx",
        "config.pbtxt",
    ]
    assert (model_dir / "1" / "model.onnx").read_bytes() == model_bytes
    config = parse_config(model_dir)
    assert config.name == "nlu_a"
    assert config.platform == "onnxruntime_onnx"
    assert config.backend == "onnxruntime"
    assert config.max_batch_size == 32
    inputs = {t.name: (t.data_type, list(t.dims)) for t in config.input}
    assert inputs == {
        "input_ids": (model_config_pb2.TYPE_INT64, [-1]),
        "attention_mask": (model_config_pb2.TYPE_INT64, [-1]),
    }
    outputs = {t.name: (t.data_type, list(t.dims)) for t in config.output}
    assert outputs == {
        "intent": (model_config_pb2.TYPE_FP32, [INTENTS]),
        "entities": (model_config_pb2.TYPE_FP32, [-1, LABELS]),
    }
    assert list(config.dynamic_batching.preferred_batch_size) == [8, 16, 32]
    assert config.dynamic_batching.max_queue_delay_microseconds == 2000
    assert len(config.instance_group) == 1
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    assert config.instance_group[0].count == 1
    assert config.parameters["intra_op_thread_count"].string_value == "1"
    assert not any(t.allow_ragged_batch for t in config.input)  # ORT needs equal shapes


def test_python_flavour_config_and_files(model_bytes: bytes, tmp_path: Path) -> None:
    model_dir = export_triton_repository(
        model_bytes,
        tmp_path,
        model_name="nlu_py",
        flavour="python",
        max_batch_size=16,
        preferred_batch_sizes=(4, 16),
        max_queue_delay_microseconds=500,
        instance_kind="KIND_GPU",
        instance_count=2,
        version=3,
        intra_op_threads=2,
    )
    assert sorted(p.relative_to(model_dir).as_posix() for p in model_dir.rglob("*")) == [
        "3",
        "3/model.onnx",
        "3/model.py",
        "config.pbtxt",
    ]
    assert (model_dir / "3" / "model.py").read_text() == PYTHON_MODEL_TEMPLATE.read_text()
    config = parse_config(model_dir)
    assert config.backend == "python"
    assert config.platform == ""
    assert config.max_batch_size == 16
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 16]
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    assert config.instance_group[0].count == 2
    assert config.parameters["intra_op_num_threads"].string_value == "2"
    assert all(t.allow_ragged_batch for t in config.input)  # model.py pads the batch itself
    assert [list(t.dims) for t in config.output] == [[INTENTS], [-1, LABELS]]


def test_export_rejects_bad_models_and_options(model_bytes: bytes, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a loadable ONNX model"):
        export_triton_repository(b"not onnx", tmp_path)
    with pytest.raises(ValueError, match="preferred batch sizes"):
        export_triton_repository(model_bytes, tmp_path, max_batch_size=8)
    with pytest.raises(ValueError, match="flavour"):
        export_triton_repository(model_bytes, tmp_path, flavour="tensorrt")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="model name"):
        export_triton_repository(model_bytes, tmp_path, model_name="a/b")
    assert not any(tmp_path.iterdir())


def test_export_cli(model_bytes: bytes, tmp_path: Path) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="parley")
    add_export_command(parser.add_subparsers(dest="command", required=True))
    model_path = tmp_path / "m.onnx"
    model_path.write_bytes(model_bytes)
    args = parser.parse_args(
        [
            *("export", "triton", "--model", str(model_path), "--out", str(tmp_path / "repo")),
            *("--flavour", "python", "--max-batch-size", "8", "--instance-kind", "KIND_CPU"),
        ]
    )
    assert args.func(args, None) == 0
    config = parse_config(tmp_path / "repo" / "parley_nlu")
    assert config.max_batch_size == 8
    assert list(config.dynamic_batching.preferred_batch_size) == [8]
    assert (tmp_path / "repo" / "parley_nlu" / "1" / "model.py").is_file()


async def test_onnxruntime_model_shapes(model_bytes: bytes) -> None:
    model = OnnxRuntimeModel(model_bytes, threads=1)
    ids = np.array([[1, 2, 3, 4], [5, 6, 0, 0]], dtype=np.int64)
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=np.int64)
    intent, entities = await model.infer(ids, mask)
    assert intent.shape == (2, INTENTS)
    assert entities.shape == (2, 4, LABELS)
    assert intent.dtype == entities.dtype == np.float32
    alone_intent, alone_entities = model.infer_sync(ids[1:, :2], mask[1:, :2])
    np.testing.assert_allclose(intent[1:], alone_intent, atol=1e-5)
    np.testing.assert_allclose(entities[1:, :2], alone_entities, atol=1e-5)
    with pytest.raises(ValueError, match="must be equal"):
        model.infer_sync(ids, mask[:, :2])


# A minimal stand-in for Triton's `triton_python_backend_utils`, with the API model.py uses.
class FakeTensor:
    def __init__(self, name: str, array: np.ndarray[Any, Any]) -> None:
        self._name, self._array = name, array

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray[Any, Any]:
        return self._array


class FakeResponse:
    def __init__(self, output_tensors: list[FakeTensor], error: Any = None) -> None:
        self.output_tensors, self.error = output_tensors, error


class FakeRequest:
    def __init__(self, **arrays: np.ndarray[Any, Any]) -> None:
        self.tensors = {name: FakeTensor(name, array) for name, array in arrays.items()}


def fake_pb_utils() -> types.ModuleType:
    module = types.ModuleType("triton_python_backend_utils")
    module.Tensor = FakeTensor  # type: ignore[attr-defined]
    module.InferenceResponse = FakeResponse  # type: ignore[attr-defined]
    module.TritonError = str  # type: ignore[attr-defined]
    module.get_input_tensor_by_name = lambda r, name: r.tensors.get(name)  # type: ignore[attr-defined]
    module.get_output_tensor_by_name = lambda r, name: next(  # type: ignore[attr-defined]
        (t for t in r.output_tensors if t.name() == name), None
    )
    return module


def output(response: FakeResponse, name: str) -> np.ndarray[Any, Any]:
    tensor = sys.modules["triton_python_backend_utils"].get_output_tensor_by_name(response, name)
    assert tensor is not None, f"no {name} in {response.output_tensors}"
    return np.asarray(tensor.as_numpy())


def test_python_model_batches_pads_and_splits(
    model_bytes: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_dir = export_triton_repository(model_bytes, tmp_path, flavour="python")
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", fake_pb_utils())
    spec = importlib.util.spec_from_file_location(
        f"parley_triton_model_{uuid.uuid4().hex[:8]}", model_dir / "1" / "model.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = {"parameters": {"intra_op_num_threads": {"string_value": "1"}}}
    triton_model = module.TritonPythonModel()
    triton_model.initialize(
        {
            "model_config": json.dumps(config),
            "model_repository": str(model_dir),
            "model_version": "1",
            "model_instance_kind": "CPU",
        }
    )
    calls: list[tuple[int, ...]] = []
    real_run = triton_model._session.run

    def counting_run(names: list[str], feeds: dict[str, np.ndarray[Any, Any]]) -> Any:
        calls.append(feeds["input_ids"].shape)
        return real_run(names, feeds)

    monkeypatch.setattr(triton_model._session, "run", counting_run, raising=False)
    rng = np.random.default_rng(0)
    lengths = [(1, 3), (2, 7), (1, 1)]  # (batch, seq) of each request
    requests = [
        FakeRequest(
            input_ids=rng.integers(1, VOCAB, size=shape, dtype=np.int64),
            attention_mask=np.ones(shape, dtype=np.int64),
        )
        for shape in lengths
    ]
    bad = FakeRequest(input_ids=np.ones((1, 2), dtype=np.int64))
    responses = triton_model.execute([*requests[:2], bad, requests[2]])
    assert calls == [(4, 7)], "all valid requests go through ONE padded onnxruntime run"
    assert responses[2].error is not None
    assert "attention_mask" in responses[2].error
    reference = OnnxRuntimeModel(model_bytes)
    for request, response in zip(requests, [*responses[:2], responses[3]], strict=True):
        assert response.error is None
        ids = request.tensors["input_ids"].as_numpy()
        want_intent, want_entities = reference.infer_sync(ids, np.ones_like(ids))
        got_intent, got_entities = output(response, "intent"), output(response, "entities")
        assert got_intent.shape == want_intent.shape
        assert got_entities.shape == want_entities.shape  # trimmed to the request's own length
        np.testing.assert_allclose(got_intent, want_intent, atol=1e-5)
        np.testing.assert_allclose(got_entities, want_entities, atol=1e-5)
    triton_model.finalize()
