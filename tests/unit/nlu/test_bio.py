"""BIO tags over subword tokens: tag encoding, training labels and decoding into spans."""

from __future__ import annotations

import json
import re
import time

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.project.nlu import EntityAnnotation
from services.nlu.bio import (
    OUTSIDE,
    DecodedEntity,
    EntityType,
    bio_labels,
    decode_entities,
    decode_tag,
    encode_tag,
    label_names,
    split_label,
)

SPECIAL = (0, 0)
TOKEN = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]|\w+|[^\w\s]")


def tokenize(text: str, piece: int = 3) -> list[tuple[int, int]]:
    """A stand-in for a fast tokenizer: CLS, subwords of `piece` characters, SEP."""
    offsets = [SPECIAL]
    for match in TOKEN.finditer(text):
        start, end = match.span()
        offsets += [(i, min(i + piece, end)) for i in range(start, end, piece)]
    return [*offsets, SPECIAL]


def ann(
    entity: str, start: int, end: int, role: str | None = None, group: str | None = None
) -> EntityAnnotation:
    return EntityAnnotation(entity, start, end, "", "", role, group)


def one_hot(tags: list[str], labels: list[str], p: float = 1.0) -> npt.NDArray[np.float64]:
    probs = np.full((len(tags), len(labels)), (1.0 - p) / max(len(labels) - 1, 1))
    for row, tag in enumerate(tags):
        probs[row, labels.index(tag)] = p
    return probs


LABELS = label_names(["city", "city#from", "city#to", "food@1", "food@2", "name"])


def entities_of(
    text: str, offsets: list[tuple[int, int]], tags: list[str]
) -> list[tuple[str, str, str | None, str | None]]:
    found = decode_entities(text, offsets, one_hot(tags, LABELS), LABELS)
    return [(e.entity, e.value, e.role, e.group) for e in found]


# --- tag encoding -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entity", "role", "group", "tag"),
    [
        ("city", None, None, "city"),
        ("city", "from", None, "city#from"),
        ("food", None, "1", "food@1"),
        ("city", "from", "2", "city#from@2"),
        ("city", "", None, "city#"),
        ("city", None, "", "city@"),
        ("e-mail", None, None, "e-mail"),
        ("a#b", "c@d", "50%", "a%23b#c%40d@50%25"),
        ("%23", None, None, "%2523"),
        ("город", "откуда", "1", "город#откуда@1"),
        ("都市", None, None, "都市"),
        ("😀", "🚀", None, "😀#🚀"),
    ],
)
def test_tag_encoding(entity: str, role: str | None, group: str | None, tag: str) -> None:
    assert encode_tag(entity, role, group) == tag
    assert decode_tag(tag) == EntityType(entity, role, group)


@pytest.mark.parametrize("tag", ["", "#from", "@1", "a@1#from", "a@b@c", "a#b#c"])
def test_malformed_tags(tag: str) -> None:
    with pytest.raises(ValueError, match="malformed"):
        decode_tag(tag)


def test_empty_entity_cannot_be_encoded() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        encode_tag("", "role")


@given(
    entity=st.text(min_size=1),
    role=st.none() | st.text(),
    group=st.none() | st.text(),
)
def test_tag_round_trip(entity: str, role: str | None, group: str | None) -> None:
    assert decode_tag(encode_tag(entity, role, group)) == (entity, role, group)


def test_label_names() -> None:
    assert label_names(["b", "a#r", "b"]) == ["O", "B-a#r", "I-a#r", "B-b", "I-b"]
    assert label_names([]) == ["O"]


@pytest.mark.parametrize(
    ("label", "split"),
    [("O", ("O", None)), ("B-city", ("B", "city")), ("I-city#to@1", ("I", "city#to@1"))],
)
def test_split_label(label: str, split: tuple[str, str | None]) -> None:
    assert split_label(label) == split


@pytest.mark.parametrize("label", ["", "B-", "X-city", "city", "b-city", "B-#x", "o"])
def test_split_label_rejects(label: str) -> None:
    with pytest.raises(ValueError, match="malformed"):
        split_label(label)


# --- training labels ----------------------------------------------------------------------


def test_bio_labels_for_subwords_and_special_tokens() -> None:
    text = "fly to Berlinstadt now"
    offsets = tokenize(text)
    # CLS fly to Ber lin sta dt now SEP
    labels = bio_labels(text, offsets, [ann("city", 7, 18)])
    assert labels == ["O", "O", "O", "B-city", "I-city", "I-city", "I-city", "O", "O"]


def test_bio_labels_multi_word_role_and_group() -> None:
    text = "from New York to Rome"
    offsets = tokenize(text, piece=10)
    labels = bio_labels(
        text, offsets, [ann("city", 5, 13, role="from", group="1"), ann("city", 17, 21, "to")]
    )
    assert labels == ["O", "O", "B-city#from@1", "I-city#from@1", "O", "B-city#to", "O"]


def test_whitespace_only_overlap_is_no_overlap() -> None:
    text = "to New"
    offsets = [SPECIAL, (0, 3), (3, 6), SPECIAL]  # "to " carries the space
    assert bio_labels(text, offsets, [ann("city", 2, 6)]) == ["O", "O", "B-city", "O"]


def test_tokens_with_leading_space_overlap() -> None:
    text = "to New York"
    offsets = [(0, 2), (2, 6), (6, 11)]  # byte-level BPE without offset trimming
    assert bio_labels(text, offsets, [ann("city", 3, 11)]) == ["O", "B-city", "I-city"]


def test_competing_annotations_first_start_then_longest_wins() -> None:
    text = "New York City"
    offsets = tokenize(text, piece=10)[1:-1]
    labels = bio_labels(text, offsets, [ann("name", 4, 8), ann("city", 0, 13), ann("x", 0, 3)])
    assert labels == ["B-city", "I-city", "I-city"]
    same_span = bio_labels(text, offsets, [ann("b", 0, 3), ann("a", 0, 3)])
    assert same_span == ["B-b", "O", "O"]


def test_annotations_after_a_taken_token_still_begin_with_b() -> None:
    text = "ab"
    offsets = [(0, 2)]
    assert bio_labels(text, offsets, [ann("x", 0, 1), ann("y", 1, 2)]) == ["B-x"]
    text = "New York"
    offsets = [(0, 3), (4, 8)]
    assert bio_labels(text, offsets, [ann("a", 0, 3), ann("b", 0, 8)]) == ["B-b", "I-b"]


@pytest.mark.parametrize(("start", "end"), [(-1, 2), (2, 2), (3, 1), (0, 99)])
def test_bio_labels_rejects_spans_outside_the_text(start: int, end: int) -> None:
    with pytest.raises(ValueError, match="outside"):
        bio_labels("hello", tokenize("hello"), [ann("x", start, end)])


@pytest.mark.parametrize(
    ("text", "span", "expected"),
    [
        ("хочу в Москву", (7, 13), ["O", "O", "O", "O", "B-city", "I-city", "O"]),
        ("我想去北京", (3, 5), ["O", "O", "O", "O", "B-city", "I-city", "O"]),
        ("go 😀 now", (3, 4), ["O", "O", "B-city", "O", "O"]),
    ],
)
def test_bio_labels_unicode(text: str, span: tuple[int, int], expected: list[str]) -> None:
    offsets = tokenize(text)
    if "😀" in text:
        offsets = [SPECIAL, (0, 2), (3, 4), (5, 8), SPECIAL]
    assert bio_labels(text, offsets, [ann("city", *span)]) == expected


def test_bio_labels_of_empty_text() -> None:
    assert bio_labels("", [SPECIAL, SPECIAL], []) == ["O", "O"]


# --- decoding -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "piece", "tags", "expected"),
    [
        pytest.param(
            "fly to Berlin now",
            3,
            ["O", "O", "O", "B-city", "I-city", "O", "O"],
            [("city", "Berlin", None, None)],
            id="subwords",
        ),
        pytest.param(
            "fly to Berlin now",
            3,
            ["O", "O", "O", "B-city", "O", "O", "O"],
            [("city", "Berlin", None, None)],
            id="continuation-takes-the-word-label",
        ),
        pytest.param(
            "fly to Berlin now",
            3,
            ["O", "O", "O", "O", "B-city", "O", "O"],
            [],
            id="continuation-cannot-start-an-entity",
        ),
        pytest.param(
            "fly to Berlin now",
            3,
            ["O", "O", "O", "I-city", "I-city", "O", "O"],
            [("city", "Berlin", None, None)],
            id="lenient-i-repair",
        ),
        pytest.param(
            "from New York",
            10,
            ["O", "O", "B-city#from", "I-city#from", "O"],
            [("city", "New York", "from", None)],
            id="multi-word-role",
        ),
        pytest.param(
            "from New York",
            10,
            ["O", "O", "B-city", "B-city", "O"],
            [("city", "New", None, None), ("city", "York", None, None)],
            id="new-b-splits",
        ),
        pytest.param(
            "from New York",
            10,
            ["O", "O", "B-city#from", "I-city#to", "O"],
            [("city", "New", "from", None), ("city", "York", "to", None)],
            id="role-change-splits",
        ),
        pytest.param(
            "pizza and pasta",
            10,
            ["O", "B-food@1", "I-food@2", "I-food@2", "O"],
            [("food", "pizza", None, "1"), ("food", "and pasta", None, "2")],
            id="group-change-splits",
        ),
        pytest.param(
            "from New York",
            10,
            ["O", "I-city", "I-city", "I-city", "O"],
            [("city", "from New York", None, None)],
            id="all-inside",
        ),
        pytest.param(
            "a b",
            3,
            ["O", "B-name", "I-city", "O"],
            [("name", "a", None, None), ("city", "b", None, None)],
            id="i-of-another-type-starts-anew",
        ),
        pytest.param(
            "Berlin, Rome",
            3,
            ["O", "B-city", "I-city", "O", "B-city", "I-city", "O"],
            [("city", "Berlin", None, None), ("city", "Rome", None, None)],
            id="punctuation-is-its-own-word",
        ),
        pytest.param(
            "Berlin, Rome",
            3,
            ["O", "B-city", "O", "I-city", "O", "O", "O"],
            [("city", "Berlin,", None, None)],
            id="inside-punctuation-extends",
        ),
        pytest.param(
            "我想去北京",
            3,
            ["O", "O", "O", "O", "B-city", "I-city", "O"],
            [("city", "北京", None, None)],
            id="cjk-characters-never-join",
        ),
        pytest.param(
            "хочу в Москву",
            3,
            ["O", "O", "O", "O", "B-city", "O", "O"],
            [("city", "Москву", None, None)],
            id="cyrillic-subwords",
        ),
        pytest.param("", 3, ["O", "O"], [], id="empty-text"),
    ],
)
def test_decode(
    text: str, piece: int, tags: list[str], expected: list[tuple[str, str, str | None, str | None]]
) -> None:
    offsets = tokenize(text, piece)
    assert len(offsets) == len(tags), offsets
    assert entities_of(text, offsets, tags) == expected


def test_spans_and_values() -> None:
    text = "I live in Санкт-Петербург!"
    offsets = tokenize(text)
    tags = ["O"] * len(offsets)
    first = offsets.index((10, 13))
    tags[first] = "B-city"
    tags[first + 2 : first + 6] = ["I-city"] * 4  # the hyphen and three pieces
    [entity] = decode_entities(text, offsets, one_hot(tags, LABELS), LABELS)
    assert (entity.start, entity.end, entity.value) == (10, 25, "Санкт-Петербург")
    assert text[entity.start : entity.end] == entity.value


def test_whitespace_is_trimmed_and_blank_entities_dropped() -> None:
    text = "to  New York "
    offsets = [(0, 2), (2, 7), (7, 12), (12, 13)]  # "to", "  New", " York", " "
    tags = ["O", "B-city", "I-city", "B-name"]
    [entity] = decode_entities(text, offsets, one_hot(tags, LABELS), LABELS)
    assert (entity.start, entity.end, entity.value) == (4, 12, "New York")


def test_one_emoji_split_into_byte_tokens_is_one_word() -> None:
    text = "go 😀 now"
    offsets = [SPECIAL, (0, 2), (3, 4), (3, 4), (5, 8), SPECIAL]
    tags = ["O", "O", "B-name", "B-name", "O", "O"]
    found = decode_entities(text, offsets, one_hot(tags, LABELS), LABELS)
    assert [(e.value, e.start, e.end) for e in found] == [("😀", 3, 4)]


def test_confidence_is_the_minimum_over_the_tokens() -> None:
    text = "New York"
    offsets = [(0, 3), (4, 6), (6, 8)]  # New, Yo, rk
    labels = ["O", "B-city", "I-city"]
    probs = np.array([[0.1, 0.8, 0.1], [0.2, 0.1, 0.7], [0.0, 0.4, 0.6]])
    [entity] = decode_entities(text, offsets, probs, labels)
    assert entity.value == "New York"
    # "rk" continues "Yo" whose label is I-city: it counts with P(I-city) = 0.6.
    assert entity.confidence == pytest.approx(0.6)
    probs[2] = [0.0, 0.95, 0.05]  # a continuation predicted B- is read as I-: 0.05
    [entity] = decode_entities(text, offsets, probs, labels)
    assert entity.confidence == pytest.approx(0.05)


def test_to_dict_is_dietlike_and_json_safe() -> None:
    text = "from Rome"
    offsets = tokenize(text, piece=10)
    probs = one_hot(["O", "O", "B-city#from", "O"], LABELS, p=0.9).astype(np.float32)
    [entity] = decode_entities(text, offsets, probs, LABELS)
    out = entity.to_dict()
    assert list(out) == [
        "entity",
        "start",
        "end",
        "confidence_entity",
        "role",
        "confidence_role",
        "value",
        "extractor",
    ]
    assert out["extractor"] == "DIETClassifier"
    assert type(out["confidence_entity"]) is float
    assert out["confidence_entity"] == pytest.approx(0.9)
    json.dumps(out)
    grouped = DecodedEntity("food", 0, 1, "x", 0.5, group="1").to_dict("Other")
    assert grouped["group"] == "1"
    assert grouped["confidence_group"] == 0.5
    assert grouped["extractor"] == "Other"
    assert "role" not in grouped


@pytest.mark.parametrize(
    ("offsets", "probs", "labels", "match"),
    [
        ([(0, 1)], np.ones((2, 1)), ["O"], "do not match"),
        ([(0, 1)], np.ones((1, 2)), ["O"], "do not match"),
        ([(0, 1)], np.ones(1), ["O"], "do not match"),
        ([(0, 9)], np.ones((1, 1)), ["O"], "outside"),
        ([(0, 1)], np.ones((1, 2)), ["O", "X-a"], "malformed"),
    ],
)
def test_decode_rejects_bad_inputs(
    offsets: list[tuple[int, int]], probs: npt.NDArray[np.float64], labels: list[str], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        decode_entities("abc", offsets, probs, labels)


def test_long_text_decodes_quickly() -> None:
    text = " ".join(["Berlin"] * 20000)
    offsets = tokenize(text)
    tags = ["O"] + ["B-city", "I-city"] * 20000 + ["O"]
    start = time.perf_counter()
    found = decode_entities(text, offsets, one_hot(tags, LABELS), LABELS)
    assert len(found) == 20000
    assert time.perf_counter() - start < 5


# --- round trip ---------------------------------------------------------------------------

WORD = st.text(alphabet="abcdefXYZ" + "абвгдеё", min_size=1, max_size=9)
NAME = st.text(min_size=1, max_size=6)


@st.composite
def annotated(draw: st.DrawFn) -> tuple[str, list[EntityAnnotation]]:
    words = draw(st.lists(WORD, min_size=1, max_size=12))
    text, spans, cursor = "", [], 0
    for word in words:
        spans.append((cursor, cursor + len(word)))
        text += word + " "
        cursor += len(word) + 1
    annotations, index = [], 0
    while index < len(words):
        length = draw(st.integers(0, 3))
        if length and index + length <= len(words) and draw(st.booleans()):
            start, end = spans[index][0], spans[index + length - 1][1]
            role, group = draw(st.none() | NAME), draw(st.none() | NAME)
            annotations.append(ann(draw(NAME), start, end, role, group))
            index += length
        else:
            index += 1
    return text, annotations


@given(example=annotated(), piece=st.integers(1, 4))
def test_bio_labels_then_decode_recovers_the_annotations(
    example: tuple[str, list[EntityAnnotation]], piece: int
) -> None:
    text, annotations = example
    offsets = tokenize(text, piece)
    tags = bio_labels(text, offsets, annotations)
    labels = label_names(encode_tag(a.entity, a.role, a.group) for a in annotations)
    found = decode_entities(text, offsets, one_hot(tags, labels), labels)
    assert [(e.entity, e.start, e.end, e.role, e.group) for e in found] == [
        (a.entity, a.start, a.end, a.role, a.group) for a in annotations
    ]
    assert all(e.confidence == 1.0 and e.value == text[e.start : e.end] for e in found)
    assert tags[0] == tags[-1] == OUTSIDE
