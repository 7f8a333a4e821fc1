"""The NLU model's ONNX signature, and a tiny but real joint intent + entity model for tests.

Every joint model Parley serves has the same I/O signature (`JOINT_SIGNATURE_NAMES`):

- inputs `input_ids` and `attention_mask`: int64 `[batch, seq]` (both dimensions dynamic);
- outputs `intent`: float32 `[batch, num_intents]` (logits) and `entities`: float32
  `[batch, seq, num_entity_labels]` (per-token BIO logits).

Only logits leave the model, never hidden states (their transfer dominates serving cost).

`build_test_joint_model` builds such a model with the `onnx` helper API and numpy weights (no
torch): embedding Gather → Linear + Tanh → masked mean pooling → intent head, plus a per-token
entity head. It is for tests and for exercising the Triton export; the trained model (a later
step, exported from torch) has exactly the same signature, so everything downstream of it
(exporter, Triton repository, inference adapters) is the same. `onnx` is needed only to *build*
models (dev/train extras); reading a signature uses onnxruntime, a runtime dependency.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

INPUT_NAMES = ("input_ids", "attention_mask")
OUTPUT_NAMES = ("intent", "entities")
OPSET = 17

# onnxruntime's type strings → Triton's data types.
_ORT_TO_TRITON = {
    "tensor(int64)": "TYPE_INT64",
    "tensor(int32)": "TYPE_INT32",
    "tensor(float)": "TYPE_FP32",
    "tensor(float16)": "TYPE_FP16",
    "tensor(bool)": "TYPE_BOOL",
}


@dataclass(frozen=True)
class TensorSpec:
    """One input or output: name, Triton data type and dims (-1 where dynamic, batch included)."""

    name: str
    data_type: str
    dims: tuple[int, ...]


@dataclass(frozen=True)
class ModelSignature:
    """The inputs and outputs of an ONNX model, as the Triton exporter needs them."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def input(self, name: str) -> TensorSpec:
        """The input called `name` (KeyError when absent)."""
        return _by_name(self.inputs, name)

    def output(self, name: str) -> TensorSpec:
        """The output called `name` (KeyError when absent)."""
        return _by_name(self.outputs, name)

    @classmethod
    def of_onnx(cls, model: bytes | str | Path) -> ModelSignature:
        """Read the signature of an ONNX model (bytes or a path) with onnxruntime."""
        import onnxruntime as ort  # type: ignore[import-untyped]

        source = model if isinstance(model, bytes) else str(model)
        try:
            session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's errors derive from Exception only
            raise ValueError(f"not a loadable ONNX model: {exc}") from exc
        return cls(
            inputs=tuple(_spec(arg) for arg in session.get_inputs()),
            outputs=tuple(_spec(arg) for arg in session.get_outputs()),
        )

    def check_joint(self) -> None:
        """Raise ValueError unless this is the joint intent + entity signature."""
        names = (tuple(t.name for t in self.inputs), tuple(t.name for t in self.outputs))
        if sorted(names[0]) != sorted(INPUT_NAMES) or sorted(names[1]) != sorted(OUTPUT_NAMES):
            raise ValueError(
                f"not a joint NLU model: inputs {names[0]}, outputs {names[1]}; "
                f"expected inputs {INPUT_NAMES} and outputs {OUTPUT_NAMES}"
            )
        expected = {
            "input_ids": ("TYPE_INT64", 2),
            "attention_mask": ("TYPE_INT64", 2),
            "intent": ("TYPE_FP32", 2),
            "entities": ("TYPE_FP32", 3),
        }
        for spec in self.inputs + self.outputs:
            data_type, rank = expected[spec.name]
            if spec.data_type != data_type or len(spec.dims) != rank:
                raise ValueError(
                    f"{spec.name}: {spec.data_type} of rank {len(spec.dims)}; "
                    f"expected {data_type} of rank {rank}"
                )
            if spec.dims[0] != -1:
                raise ValueError(f"{spec.name}: the batch dimension must be dynamic")
        for name in OUTPUT_NAMES:
            if self.output(name).dims[-1] < 1:
                raise ValueError(f"{name}: the number of labels must be fixed in the graph")


def _by_name(specs: tuple[TensorSpec, ...], name: str) -> TensorSpec:
    for spec in specs:
        if spec.name == name:
            return spec
    raise KeyError(name)


def _spec(arg: Any) -> TensorSpec:
    data_type = _ORT_TO_TRITON.get(str(arg.type))
    if data_type is None:
        raise ValueError(f"{arg.name}: unsupported type {arg.type}")
    dims = tuple(d if isinstance(d, int) and d > 0 else -1 for d in arg.shape)
    return TensorSpec(name=str(arg.name), data_type=data_type, dims=dims)


def build_test_joint_model(
    vocab_size: int = 1000,
    hidden: int = 32,
    num_intents: int = 7,
    num_entity_labels: int = 9,
    seed: int = 0,
) -> bytes:
    """A tiny joint intent + entity ONNX model (opset 17) with deterministic weights from `seed`.

    Padding-exact: a token's entity logits depend only on that token, and the intent pools over
    `attention_mask`, so padding a request never changes its outputs.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)

    def weight(name: str, *shape: int) -> onnx.TensorProto:
        values = rng.normal(0.0, 0.5, size=shape).astype(np.float32)
        return numpy_helper.from_array(values, name=name)

    initializers = [
        weight("embedding", vocab_size, hidden),
        weight("proj_w", hidden, hidden),
        weight("proj_b", hidden),
        weight("intent_w", hidden, num_intents),
        weight("intent_b", num_intents),
        weight("entity_w", hidden, num_entity_labels),
        weight("entity_b", num_entity_labels),
        numpy_helper.from_array(np.array([1], dtype=np.int64), name="axis_seq"),
        numpy_helper.from_array(np.array([2], dtype=np.int64), name="axis_feature"),
        numpy_helper.from_array(np.array(1.0, dtype=np.float32), name="one"),
    ]
    node = helper.make_node
    nodes = [
        node("Gather", ["embedding", "input_ids"], ["embedded"], axis=0),
        node("MatMul", ["embedded", "proj_w"], ["projected"]),
        node("Add", ["projected", "proj_b"], ["pre_hidden"]),
        node("Tanh", ["pre_hidden"], ["hidden_states"]),
        node("Cast", ["attention_mask"], ["mask"], to=TensorProto.FLOAT),
        node("Unsqueeze", ["mask", "axis_feature"], ["mask3"]),
        node("Mul", ["hidden_states", "mask3"], ["masked"]),
        node("ReduceSum", ["masked", "axis_seq"], ["summed"], keepdims=0),
        node("ReduceSum", ["mask", "axis_seq"], ["count"], keepdims=1),
        node("Max", ["count", "one"], ["safe_count"]),
        node("Div", ["summed", "safe_count"], ["pooled"]),
        node("MatMul", ["pooled", "intent_w"], ["intent_mm"]),
        node("Add", ["intent_mm", "intent_b"], ["intent"]),
        node("MatMul", ["hidden_states", "entity_w"], ["entity_mm"]),
        node("Add", ["entity_mm", "entity_b"], ["entities"]),
    ]
    graph = helper.make_graph(
        nodes,
        "parley_joint_nlu_test",
        inputs=[
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
        ],
        outputs=[
            helper.make_tensor_value_info("intent", TensorProto.FLOAT, ["batch", num_intents]),
            helper.make_tensor_value_info(
                "entities", TensorProto.FLOAT, ["batch", "seq", num_entity_labels]
            ),
        ],
        initializer=initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="parley",
        doc_string="Parley joint intent + entity test model (logits only).",
    )
    model.ir_version = 8  # readable by onnxruntime >= 1.10 (opset 17 needs IR >= 8)
    onnx.checker.check_model(model, full_check=True)
    serialized: bytes = model.SerializeToString()
    return serialized
