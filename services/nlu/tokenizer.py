"""The encoder's WordPiece tokenizer at run time: the `tokenizers` library on `tokenizer.json`.

Training and serving use the same `tokenizer.json` (saved into the model archive), so the
token ids and character offsets the model was trained on are the ones it is served with.
No torch and no transformers here: `tokenizers` is a small runtime dependency.

Texts longer than `max_length` tokens are truncated (the model never sees the rest, and
entities are only found in the part it sees); `Encoded.truncated` says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from services.nlu.inference import TokenIds


@dataclass(frozen=True, slots=True)
class Encoded:
    """One text's tokens: ids, character offsets ((0, 0) for special tokens), truncation."""

    ids: tuple[int, ...]
    offsets: tuple[tuple[int, int], ...]
    truncated: bool


class WordPieceTokenizer:
    """Encodes texts to ids and offsets, and pads batches for the model."""

    def __init__(self, tokenizer_json: str, max_length: int, pad_id: int = 0) -> None:
        from tokenizers import Tokenizer

        self._tokenizer: Any = Tokenizer.from_str(tokenizer_json)
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        self.max_length = max_length
        self.pad_id = pad_id
        self.json = tokenizer_json

    def encode(self, texts: Sequence[str]) -> list[Encoded]:
        """Each text's tokens, with special tokens, at most `max_length` of them."""
        out = []
        for encoding in self._tokenizer.encode_batch(list(texts)):
            ids, offsets = list(encoding.ids), list(encoding.offsets)
            special = list(encoding.special_tokens_mask)
            truncated = len(ids) > self.max_length
            if truncated:
                # Keep the leading tokens and the closing special token(s) (BERT's [SEP]).
                tail = 0
                while tail < len(special) and special[len(special) - 1 - tail]:
                    tail += 1
                keep = self.max_length - tail
                ids = ids[:keep] + ids[len(ids) - tail :]
                offsets = offsets[:keep] + offsets[len(offsets) - tail :]
                special = special[:keep] + special[len(special) - tail :]
            offsets = [
                (0, 0) if s else (int(a), int(b))
                for (a, b), s in zip(offsets, special, strict=True)
            ]
            out.append(Encoded(tuple(ids), tuple(offsets), truncated))
        return out

    def pad(self, encoded: Sequence[Encoded]) -> tuple[TokenIds, TokenIds]:
        """`input_ids` and `attention_mask` [B, T], padded to the longest in the batch."""
        length = max((len(e.ids) for e in encoded), default=0) or 1
        ids = np.full((len(encoded), length), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(encoded), length), dtype=np.int64)
        for row, item in enumerate(encoded):
            ids[row, : len(item.ids)] = item.ids
            mask[row, : len(item.ids)] = 1
        return ids, mask
