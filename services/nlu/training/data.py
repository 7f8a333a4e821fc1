"""Training examples as token ids and labels, the label maps, and the held-out split (no torch).

Entity labels are BIO tags over the encoder's tokens (`services.nlu.bio`): special tokens and
padding carry no label (`IGNORE`, left out of the loss). The held-out split is stratified by
intent with a fixed seed; an intent with fewer than 3 examples keeps all of them for training.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from schemas.project.nlu import Example
from services.nlu.bio import bio_labels, encode_tag, label_names
from services.nlu.tokenizer import Encoded, WordPieceTokenizer

IGNORE = -100


@dataclass(frozen=True)
class LabelMaps:
    """The model's output classes, in output order."""

    intents: tuple[str, ...]
    entity_labels: tuple[str, ...]

    @classmethod
    def of(cls, examples: Sequence[Example]) -> LabelMaps:
        intents = sorted({e.intent for e in examples})
        tags = {encode_tag(a.entity, a.role, a.group) for e in examples for a in e.entities}
        return cls(tuple(intents), tuple(label_names(tags)))

    def as_dict(self) -> dict[str, list[str]]:
        return {"intents": list(self.intents), "entity_labels": list(self.entity_labels)}


@dataclass(frozen=True)
class EncodedExample:
    """One example ready for the model."""

    ids: tuple[int, ...]
    intent: int
    labels: tuple[int, ...]  # one per token; IGNORE on special tokens


def encode_examples(
    examples: Sequence[Example], tokenizer: WordPieceTokenizer, maps: LabelMaps
) -> list[EncodedExample]:
    """Token ids, intent index and per-token label indices of each example."""
    intent_index = {name: i for i, name in enumerate(maps.intents)}
    label_index = {name: i for i, name in enumerate(maps.entity_labels)}
    out = []
    encodings = tokenizer.encode([e.text for e in examples])
    for example, encoded in zip(examples, encodings, strict=True):
        out.append(
            EncodedExample(
                encoded.ids,
                intent_index[example.intent],
                token_labels(example, encoded, label_index),
            )
        )
    return out


def token_labels(example: Example, encoded: Encoded, index: dict[str, int]) -> tuple[int, ...]:
    """The BIO label index per token (IGNORE for special tokens)."""
    names = bio_labels(example.text, encoded.offsets, example.entities)
    return tuple(
        IGNORE if start == end else index[name]
        for name, (start, end) in zip(names, encoded.offsets, strict=True)
    )


def split_held_out(
    examples: Sequence[Example], fraction: float, seed: int
) -> tuple[list[Example], list[Example]]:
    """(train, held-out): about `fraction` of each intent's examples held out, reproducibly."""
    if fraction <= 0:
        return list(examples), []
    by_intent: dict[str, list[Example]] = defaultdict(list)
    for example in examples:
        by_intent[example.intent].append(example)
    rng = random.Random(seed)
    train: list[Example] = []
    held: list[Example] = []
    for intent in sorted(by_intent):
        items = list(by_intent[intent])
        rng.shuffle(items)
        count = round(len(items) * fraction) if len(items) >= 3 else 0
        held += items[:count]
        train += items[count:]
    return train, held
