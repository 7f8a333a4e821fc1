"""BIO entity tags over subword tokens: the training labels and their decoding into spans.

Tag encoding. A label is `O`, or `B-<type>` / `I-<type>` where the type is
`entity[#role][@group]`: `B-city`, `I-city#from`, `B-food@1`, `B-city#from@2`. Inside each part
`%`, `#` and `@` are written `%25`, `%23`, `%40`, so any Rasa entity, role or group name
round-trips through `encode_tag`/`decode_tag`. An empty role or group (`city#`) is the empty
string, not None.

Decoding rules (`decode_entities`):

- tokens with an empty span (special tokens have `(0, 0)`) are skipped;
- a token continues the previous token's word when their spans touch (or overlap: byte-level
  BPE splits one emoji into tokens with equal spans) and the characters on both sides of the
  seam are word characters of a script written with spaces. CJK, kana, Thai, Lao, Khmer and
  Myanmar characters, punctuation and spaces never join, so `Berlin,` is two words and each
  Chinese character is its own word, as BERT's pre-tokenizer splits them;
- a word takes the label of its first token (argmax); its later tokens count as `I-<type>`
  (what `bio_labels` trains them to be) or `O`;
- an entity starts at `B-`, or leniently at an `I-` whose previous word is not of the same
  type; it ends at `O`, another type (role and group are part of the type) or a new `B-`;
- the span runs from the first token's start to the last token's end, trimmed of whitespace
  (an all-whitespace span is dropped); the value is `text[start:end]`;
- the confidence is the minimum, over the entity's tokens, of the probability of the label each
  token counts as: the weakest token bounds the entity, as DIET's `min` over tokens.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np
import numpy.typing as npt

OUTSIDE = "O"
ROLE_SEPARATOR = "#"
GROUP_SEPARATOR = "@"
_ESCAPES = {"%": "%25", "#": "%23", "@": "%40"}
_UNESCAPE = re.compile(r"%(25|23|40)")
_UNESCAPES = {"25": "%", "23": "#", "40": "@"}
# Scripts written without spaces between words: their characters never join into one word.
_NO_SPACE_SCRIPTS = (
    (0x0E00, 0x0EFF),  # Thai, Lao
    (0x1000, 0x109F),  # Myanmar
    (0x1780, 0x17FF),  # Khmer
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x31F0, 0x31FF),
    (0x3400, 0x4DBF),  # CJK ideographs
    (0x4E00, 0x9FFF),
    (0xF900, 0xFAFF),
    (0xFF66, 0xFF9F),
    (0x20000, 0x2FA1F),
)


class EntityType(NamedTuple):
    """What a tag names: the entity, and its role and group if any."""

    entity: str
    role: str | None = None
    group: str | None = None


class SpanAnnotation(Protocol):
    """An entity marked on a character span (`schemas.project.nlu.EntityAnnotation` is one)."""

    @property
    def entity(self) -> str: ...
    @property
    def start(self) -> int: ...
    @property
    def end(self) -> int: ...
    @property
    def role(self) -> str | None: ...
    @property
    def group(self) -> str | None: ...


def _escape(part: str) -> str:
    return "".join(_ESCAPES.get(char, char) for char in part)


def _unescape(part: str) -> str:
    return _UNESCAPE.sub(lambda m: _UNESCAPES[m.group(1)], part)


def encode_tag(entity: str, role: str | None = None, group: str | None = None) -> str:
    """The tag (without `B-`/`I-`) of an entity with an optional role and group."""
    if not entity:
        raise ValueError("an entity tag needs a non-empty entity name")
    tag = _escape(entity)
    if role is not None:
        tag += ROLE_SEPARATOR + _escape(role)
    if group is not None:
        tag += GROUP_SEPARATOR + _escape(group)
    return tag


def decode_tag(tag: str) -> EntityType:
    """The entity, role and group a tag (without `B-`/`I-`) names; ValueError if malformed."""
    rest, has_group, group = tag.partition(GROUP_SEPARATOR)
    entity, has_role, role = rest.partition(ROLE_SEPARATOR)
    if not entity or any(sep in part for part in (role, group) for sep in "#@"):
        raise ValueError(f"malformed entity tag {tag!r}")
    return EntityType(
        _unescape(entity),
        _unescape(role) if has_role else None,
        _unescape(group) if has_group else None,
    )


def label_names(tags: Iterable[str]) -> list[str]:
    """The label set for the given tags: `O`, then `B-t`, `I-t` for each tag in sorted order."""
    labels = [OUTSIDE]
    for tag in sorted(set(tags)):
        decode_tag(tag)
        labels += [f"B-{tag}", f"I-{tag}"]
    return labels


def split_label(label: str) -> tuple[str, str | None]:
    """`("O", None)`, `("B", tag)` or `("I", tag)`; ValueError for anything else."""
    if label == OUTSIDE:
        return OUTSIDE, None
    if label[:2] in ("B-", "I-") and len(label) > 2:
        decode_tag(label[2:])
        return label[0], label[2:]
    raise ValueError(f"malformed BIO label {label!r}")


def bio_labels(
    text: str, offsets: Sequence[tuple[int, int]], annotations: Iterable[SpanAnnotation]
) -> list[str]:
    """Per-token training labels: `B-` on the first token overlapping an annotation, `I-` after.

    A token overlaps an annotation when they share a non-whitespace character. Where
    annotations compete for a token, the earlier-starting (then longer) one keeps it.
    """
    labels = [OUTSIDE] * len(offsets)
    ordered = sorted(annotations, key=lambda a: (a.start, a.start - a.end))
    for ann in ordered:
        if not 0 <= ann.start < ann.end <= len(text):
            raise ValueError(f"annotation span ({ann.start}, {ann.end}) outside the text")
        tag = encode_tag(ann.entity, ann.role, ann.group)
        prefix = "B-"
        for index, (start, end) in enumerate(offsets):
            lo, hi = max(start, ann.start), min(end, ann.end)
            if start < end and lo < hi and labels[index] == OUTSIDE and text[lo:hi].strip():
                labels[index] = prefix + tag
                prefix = "I-"
    return labels


@dataclass(frozen=True, slots=True)
class DecodedEntity:
    """An entity read off the tags: its type, trimmed character span, value and confidence."""

    entity: str
    start: int
    end: int
    value: str
    confidence: float
    role: str | None = None
    group: str | None = None

    def to_dict(self, extractor: str = "DIETClassifier") -> dict[str, Any]:
        """Rasa's entity dict, keys in DIET's order; role/group share the tag's confidence."""
        out: dict[str, Any] = {
            "entity": self.entity,
            "start": self.start,
            "end": self.end,
            "confidence_entity": self.confidence,
        }
        if self.role is not None:
            out.update(role=self.role, confidence_role=self.confidence)
        if self.group is not None:
            out.update(group=self.group, confidence_group=self.confidence)
        out.update(value=self.value, extractor=extractor)
        return out


def _joins_word(char: str) -> bool:
    if not (char.isalnum() or char == "_" or unicodedata.category(char).startswith("M")):
        return False
    code = ord(char)
    return not any(lo <= code <= hi for lo, hi in _NO_SPACE_SCRIPTS)


def _words(text: str, offsets: Sequence[tuple[int, int]]) -> list[list[int]]:
    words: list[list[int]] = []
    prev_end = -1
    for index, (start, end) in enumerate(offsets):
        if start >= end:
            continue
        touches = start == prev_end and 0 < start < len(text)
        joins = touches and _joins_word(text[start - 1]) and _joins_word(text[start])
        if words and (start < prev_end or joins):
            words[-1].append(index)
        else:
            words.append([index])
        prev_end = max(prev_end, end)
    return words


def decode_entities(
    text: str,
    offsets: Sequence[tuple[int, int]],
    probabilities: npt.NDArray[np.floating[Any]],
    labels: Sequence[str],
) -> list[DecodedEntity]:
    """Entities from per-token label probabilities `[tokens, labels]` (see module docstring)."""
    probs = np.asarray(probabilities, dtype=np.float64)
    if probs.ndim != 2 or probs.shape != (len(offsets), len(labels)):
        raise ValueError(
            f"probabilities of shape {probs.shape} do not match "
            f"{len(offsets)} tokens x {len(labels)} labels"
        )
    if any(not 0 <= start <= end <= len(text) for start, end in offsets):
        raise ValueError("a token span lies outside the text")
    parsed = [split_label(label) for label in labels]
    index_of = {label: i for i, label in enumerate(labels)}
    spans: list[tuple[str, int, int, float]] = []  # tag, start, end, confidence
    open_tag: str | None = None
    for word in _words(text, offsets):
        first = int(np.argmax(probs[word[0]]))
        prefix, tag = parsed[first]
        if tag is None:
            open_tag = None
            continue
        inside = index_of.get(f"I-{tag}", first)
        confidence = min(float(probs[t, first if n == 0 else inside]) for n, t in enumerate(word))
        start, end = offsets[word[0]][0], max(offsets[t][1] for t in word)
        if prefix == "I" and open_tag == tag:
            _, last_start, last_end, last_conf = spans[-1]
            spans[-1] = (tag, last_start, max(last_end, end), min(last_conf, confidence))
        else:
            spans.append((tag, start, end, confidence))
        open_tag = tag
    return [entity for span in spans if (entity := _entity(text, *span)) is not None]


def _entity(text: str, tag: str, start: int, end: int, confidence: float) -> DecodedEntity | None:
    raw = text[start:end]
    stripped = raw.lstrip()
    start += len(raw) - len(stripped)
    end -= len(stripped) - len(stripped.rstrip())
    if start >= end:
        return None
    kind = decode_tag(tag)
    return DecodedEntity(
        kind.entity, start, end, text[start:end], confidence, kind.role, kind.group
    )
