"""Train the joint NLU model on a project's NLU data and export it to ONNX (needs the `train`
extra: torch and transformers)."""

from __future__ import annotations

import io
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch

from schemas.project.nlu import Example
from services.nlu.archive import write_archive
from services.nlu.inference import OnnxRuntimeModel
from services.nlu.onnx_model import INPUT_NAMES, OPSET, OUTPUT_NAMES
from services.nlu.quantize import quantize_int8
from services.nlu.tokenizer import WordPieceTokenizer
from services.nlu.training.data import LabelMaps, encode_examples, split_held_out
from services.nlu.training.joint import JointModel
from services.nlu.training.loop import Trainer, TrainSummary, seed_everything
from services.nlu.training.settings import TrainSettings


class TrainingError(ValueError):
    """Training cannot start (no examples, one intent only, a broken encoder), with why."""


@dataclass(frozen=True)
class TrainedNlu:
    """A trained, exported NLU model and what went into it."""

    onnx: bytes
    tokenizer_json: str
    pad_id: int
    maps: LabelMaps
    summary: TrainSummary
    encoder: dict[str, Any]
    settings: TrainSettings
    onnx_int8: bytes | None = None

    def save(
        self,
        models_dir: Path,
        *,
        created_at: datetime,
        fingerprint: str,
        rules: Mapping[str, Any],
        metadata: Mapping[str, Any] | None = None,
        core_ensemble: Mapping[str, Any] | None = None,
    ) -> Path:
        """Write the model archive `<models_dir>/<timestamp>.tar.gz`; return its path.
        `core_ensemble`: the dialogue part (`metadata` then carries its `core` section)."""
        return write_archive(
            models_dir,
            created_at=created_at,
            metadata={
                **(metadata or {}),
                "nlu": {
                    "fingerprint": fingerprint,
                    "encoder": self.encoder,
                    "max_length": self.settings.max_length,
                    "pad_id": self.pad_id,
                    "settings": self.settings.as_dict(),
                    "summary": self.summary.as_dict(),
                },
            },
            onnx=self.onnx,
            onnx_int8=self.onnx_int8,
            tokenizer_json=self.tokenizer_json,
            labels=self.maps.as_dict(),
            rules=rules,
            core_ensemble=core_ensemble,
        )


def load_tokenizer(encoder_dir: Path, max_length: int) -> WordPieceTokenizer:
    """The encoder's fast tokenizer as `tokenizer.json`, wrapped for Parley."""
    from transformers import AutoTokenizer

    try:
        hf = AutoTokenizer.from_pretrained(str(encoder_dir), local_files_only=True, use_fast=True)
    except (OSError, ValueError) as exc:
        raise TrainingError(f"encoder {encoder_dir}: cannot load its tokenizer: {exc}") from exc
    backend = getattr(hf, "backend_tokenizer", None)
    if backend is None:
        raise TrainingError(f"encoder {encoder_dir}: no fast (tokenizers) tokenizer available")
    pad_id = hf.pad_token_id if hf.pad_token_id is not None else 0
    return WordPieceTokenizer(backend.to_str(), max_length, int(pad_id))


def train_nlu(
    examples: Sequence[Example],
    settings: TrainSettings,
    encoder_dir: Path,
    *,
    held_out: Sequence[Example] | None = None,
    progress: bool | None = None,
    out: TextIO = sys.stderr,
) -> TrainedNlu:
    """Fine-tune the encoder with both heads, keep the best epoch, export to ONNX.

    The held-out split for early stopping is `held_out` when given (a benchmark's validation
    file), else `settings.validation_fraction` of the examples, stratified by intent.
    """
    examples = [e for e in examples if e.text.strip()]
    intents = {e.intent for e in examples}
    if len(intents) < 2:
        raise TrainingError(
            f"NLU training needs examples of at least 2 intents; found {len(intents)} "
            f"({', '.join(sorted(intents)) or 'none'})"
        )
    if settings.threads:
        torch.set_num_threads(settings.threads)
    seed_everything(settings.seed)
    tokenizer = load_tokenizer(encoder_dir, settings.max_length)
    if held_out is None:
        train, held = split_held_out(examples, settings.validation_fraction, settings.seed)
    else:
        train, held = examples, [e for e in held_out if e.text.strip()]
    maps = LabelMaps.of([*train, *held])
    model = JointModel.from_encoder_dir(
        encoder_dir, len(maps.intents), len(maps.entity_labels), settings.dropout
    )
    trainer = Trainer(model, settings, maps, tokenizer, progress=progress, out=out)
    summary = trainer.fit(
        encode_examples(train, tokenizer, maps),
        encode_examples(held, tokenizer, maps),
        [e.text for e in held],
        [{(a.entity, a.role, a.group, a.start, a.end) for a in e.entities} for e in held],
    )
    onnx = export_onnx(model)
    check_export(model, onnx, tokenizer, [e.text for e in examples[:16]])
    onnx_int8 = quantize_int8(onnx) if settings.quantize else None
    config = model.encoder.config
    encoder = {
        "path": str(encoder_dir),
        "model_type": str(getattr(config, "model_type", "?")),
        "hidden_size": int(getattr(config, "hidden_size", 0) or getattr(config, "dim", 0)),
        "layers": int(getattr(config, "num_hidden_layers", 0) or getattr(config, "n_layers", 0)),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    return TrainedNlu(
        onnx, tokenizer.json, tokenizer.pad_id, maps, summary, encoder, settings, onnx_int8
    )


def export_onnx(model: JointModel) -> bytes:
    """The model as ONNX (opset 17) with dynamic batch and sequence axes."""
    model.eval()
    ids = torch.ones((2, 8), dtype=torch.long)
    mask = torch.ones((2, 8), dtype=torch.long)
    buffer = io.BytesIO()
    axes = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}}
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of dynamo export, which needs
        # onnxscript; the graph it writes is the same standard ONNX.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (ids, mask),
            buffer,  # type: ignore[arg-type]
            input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES),
            dynamic_axes={**axes, "intent": {0: "batch"}, "entities": {0: "batch", 1: "seq"}},
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    return buffer.getvalue()


def check_export(
    model: JointModel, onnx: bytes, tokenizer: WordPieceTokenizer, texts: Sequence[str]
) -> None:
    """Fail loudly if onnxruntime and torch disagree on real inputs."""
    if not texts:
        return
    ids, mask = tokenizer.pad(tokenizer.encode(texts))
    with torch.no_grad():
        intent, entities = model(torch.from_numpy(ids), torch.from_numpy(mask))
    runtime = OnnxRuntimeModel(onnx)
    got_intent, got_entities = runtime.infer_sync(ids, mask)
    worst = max(
        float(np.abs(got_intent - intent.numpy()).max()),
        float(np.abs(got_entities - entities.numpy()).max()),
    )
    if worst > 1e-3:
        raise TrainingError(f"the ONNX export differs from the torch model by {worst:.2e}")
