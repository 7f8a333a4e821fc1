"""Texts in, Rasa parse data out: tokenizer → joint model (any `IntentEntityModel`) → decoding →
the project's rules around the model (`parse_data.build_parse_data`).

Inputs the model cannot take are made safe, never fatal:

- lone surrogates (JSON can carry `"\\ud800"`) become `?`, one character for one, so every
  offset still points into the original text;
- texts longer than the model's `max_length` tokens are truncated (warning logged; entities
  are found in the part the model saw);
- empty or whitespace-only text skips the model: no intent (`None`, confidence 0.0), no
  entities, then the fallback as configured (Rasa's would run its classifier on nothing).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from services.nlu.archive import NluModel, Precision
from services.nlu.batching import BatchingModel
from services.nlu.bio import decode_entities
from services.nlu.inference import IntentEntityModel, OnnxRuntimeModel
from services.nlu.message_syntax import parse_intent_message
from services.nlu.parse_data import ParseOptions, build_parse_data, softmax
from services.nlu.tokenizer import WordPieceTokenizer

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ParseRequest:
    """One text to parse, with what the parse data carries along."""

    text: str
    message_id: str | None = None
    metadata: Mapping[str, Any] | None = None


def safe_text(text: str) -> str:
    """The text with lone surrogates replaced by `?` (same length, same offsets)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


class NluInterpreter:
    """Parses texts with one NLU model; safe to share between concurrent tasks."""

    def __init__(
        self,
        nlu: NluModel,
        model: IntentEntityModel,
        options: ParseOptions | None = None,
        *,
        model_name: str = "",
        known_intents: Collection[str] | None = None,
    ) -> None:
        """`known_intents`: the domain's intents, for `/intent` messages (Rasa treats an
        unknown `/name` as text for the model); None accepts every `/name`."""
        # The model is in the session (or in Triton): keep the labels, not the model bytes
        # (~110 MB for MiniLM's fp32 + int8 models).
        self.nlu = dataclasses.replace(nlu, onnx=b"", onnx_int8=None)
        self.model = model
        self.options = options or ParseOptions()
        self.model_name = model_name
        self.tokenizer = WordPieceTokenizer(nlu.tokenizer_json, nlu.max_length, nlu.pad_id)
        self._known = None if known_intents is None else frozenset(known_intents)

    @classmethod
    def in_process(
        cls,
        nlu: NluModel,
        options: ParseOptions | None = None,
        *,
        threads: int = 1,
        name: str = "",
        known_intents: Collection[str] | None = None,
        max_batch: int = 0,
        precision: Precision = "int8",
    ) -> NluInterpreter:
        """With the model in this process (onnxruntime): the embedded mode. `max_batch` > 0
        batches concurrent `parse` calls into one model run (`BatchingModel`); `precision`
        picks the archive's int8 model (when it has one) or the fp32 one."""
        onnx = nlu.model_bytes(precision)
        model: IntentEntityModel = OnnxRuntimeModel(onnx, threads=threads)
        if max_batch > 0:
            model = BatchingModel(model, max_batch=max_batch)
        return cls(nlu, model, options, model_name=name, known_intents=known_intents)

    async def parse(self, requests: Sequence[ParseRequest]) -> list[dict[str, Any]]:
        """Rasa parse data for each request, in order; the model runs once for the batch."""
        texts = [safe_text(r.text) for r in requests]
        model_rows = [
            i
            for i, text in enumerate(texts)
            if text.strip() and parse_intent_message(text, intents=self._known) is None
        ]
        results: dict[int, dict[str, Any]] = {}
        if model_rows:
            encoded = self.tokenizer.encode([texts[i] for i in model_rows])
            for i, item in zip(model_rows, encoded, strict=True):
                if item.truncated:
                    logger.warning(
                        "text of %d characters is longer than the model's %d tokens: "
                        "truncated (entities are looked for in the first %d characters)",
                        len(texts[i]),
                        self.tokenizer.max_length,
                        max((end for _, end in item.offsets), default=0),
                    )
            ids, mask = self.tokenizer.pad(encoded)
            intent_logits, entity_logits = await self.model.infer(ids, mask)
            intent_probs = softmax(intent_logits, axis=-1)
            entity_probs = softmax(entity_logits, axis=-1)
            for row, (i, item) in enumerate(zip(model_rows, encoded, strict=True)):
                entities = decode_entities(
                    texts[i],
                    item.offsets,
                    entity_probs[row, : len(item.offsets)],
                    self.nlu.entity_labels,
                )
                results[i] = self._build(
                    texts[i], requests[i], intent_probs[row], entities=entities
                )
        out = []
        for i, text in enumerate(texts):
            out.append(results[i] if i in results else self._build(text, requests[i], None))
        return out

    def _build(
        self, text: str, request: ParseRequest, probabilities: Any, **kwargs: Any
    ) -> dict[str, Any]:
        return build_parse_data(
            text,
            message_id=request.message_id,
            metadata=request.metadata,
            intent_names=self.nlu.intents,
            intent_probabilities=probabilities,
            model_entities=kwargs.get("entities", ()),
            options=self.options,
            known_intents=self._known,
        )
