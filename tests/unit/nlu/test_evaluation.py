"""NLU evaluation: intent and entity reports against hand-computed numbers, files written."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest

from schemas.project.nlu import EntityAnnotation, Example
from schemas.project.problems import Source
from services.nlu.evaluation import (
    EvaluationReport,
    evaluate,
    plot_confusion_matrix,
    render_summary,
    write_reports,
)

SOURCE = Source(Path("data/nlu.yml"), 1)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FILES = [
    "intent_report.json",
    "entity_report.json",
    "errors.json",
    "intent_confusion_matrix.png",
    "intent_histogram.png",
    "summary.txt",
]


def example(text: str, intent: str, *entities: EntityAnnotation) -> Example:
    return Example(text, intent, SOURCE, tuple(entities))


def parse(
    text: str, intent: str | None, confidence: float, entities: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {
        "text": text,
        "intent": {"name": intent, "confidence": confidence},
        "entities": entities or [],
        "intent_ranking": [] if intent is None else [{"name": intent, "confidence": confidence}],
    }


def entity(name: str, start: int, end: int, value: str, **extra: Any) -> dict[str, Any]:
    return {"entity": name, "start": start, "end": end, "value": value, **extra}


def intents_only(pairs: list[tuple[str, str | None, float]]) -> EvaluationReport:
    examples = [example(f"text {i}", gold) for i, (gold, _, _) in enumerate(pairs)]
    parses = [parse(f"text {i}", p, c) for i, (_, p, c) in enumerate(pairs)]
    return evaluate(examples, parses)


# Gold: greet 3, bye 2, ask 1. Wrong: greet->bye, bye->greet, ask->None (no intent).
PAIRS: list[tuple[str, str | None, float]] = [
    ("greet", "greet", 0.9),
    ("greet", "greet", 0.8),
    ("greet", "bye", 0.7),
    ("bye", "bye", 0.95),
    ("bye", "greet", 0.4),
    ("ask", None, 0.0),
]


def test_intent_scores_match_hand_computed_numbers() -> None:
    report = intents_only(PAIRS)
    intents = report.intent_report
    assert report.examples == 6
    assert report.intent_accuracy == pytest.approx(3 / 6)
    assert intents["accuracy"] == pytest.approx(0.5)
    assert sorted(k for k in intents if k not in ("accuracy", "macro avg", "weighted avg")) == [
        "None",
        "ask",
        "bye",
        "greet",
    ]
    # greet: tp 2, predicted 3, gold 3.
    assert intents["greet"]["precision"] == pytest.approx(2 / 3)
    assert intents["greet"]["recall"] == pytest.approx(2 / 3)
    assert intents["greet"]["f1-score"] == pytest.approx(2 / 3)
    assert intents["greet"]["support"] == 3
    # bye: tp 1, predicted 2, gold 2.
    assert intents["bye"]["precision"] == pytest.approx(0.5)
    assert intents["bye"]["recall"] == pytest.approx(0.5)
    assert intents["bye"]["support"] == 2
    # ask: never predicted (zero division → 0); None: predicted once, never gold.
    assert intents["ask"] == {
        "precision": 0.0,
        "recall": 0.0,
        "f1-score": 0.0,
        "support": 1,
        "confused_with": {"None": 1},
    }
    assert intents["None"]["support"] == 0
    assert intents["None"]["precision"] == 0.0
    assert intents["None"]["confused_with"] == {}


def test_macro_and_weighted_averages() -> None:
    report = intents_only(PAIRS)
    macro = report.intent_report["macro avg"]
    weighted = report.intent_report["weighted avg"]
    # Four labels (None included, as sklearn includes every label it sees).
    assert macro["precision"] == pytest.approx((2 / 3 + 0.5 + 0 + 0) / 4)
    assert macro["f1-score"] == pytest.approx((2 / 3 + 0.5) / 4)
    assert macro["support"] == 6
    assert weighted["recall"] == pytest.approx((2 / 3 * 3 + 0.5 * 2) / 6)
    assert weighted["f1-score"] == pytest.approx((2 / 3 * 3 + 0.5 * 2) / 6)
    assert weighted["support"] == 6
    assert report.intent_macro_f1 == pytest.approx(macro["f1-score"])
    assert report.intent_weighted_f1 == pytest.approx(weighted["f1-score"])


def test_confused_with_keeps_the_three_most_frequent_mistakes() -> None:
    pairs: list[tuple[str, str | None, float]] = [
        ("a", "b", 0.5),
        ("a", "b", 0.5),
        ("a", "c", 0.5),
        ("a", "c", 0.5),
        ("a", "c", 0.5),
        ("a", "e", 0.5),
        ("a", "d", 0.5),
        ("a", "a", 0.5),
    ]
    report = intents_only(pairs)
    assert report.intent_report["a"]["confused_with"] == {"c": 3, "b": 2, "d": 1}
    assert list(report.intent_report["a"]["confused_with"]) == ["c", "b", "d"]
    assert report.intent_report["b"]["confused_with"] == {}
    assert report.intent_report["a"]["recall"] == pytest.approx(1 / 8)
    assert report.intent_report["a"]["precision"] == pytest.approx(1.0)


def test_perfect_predictions() -> None:
    report = intents_only([("a", "a", 1.0), ("b", "b", 0.6)])
    assert report.intent_accuracy == 1.0
    assert report.intent_macro_f1 == 1.0
    assert report.errors == []
    assert report.entity_micro_f1 is None


def test_length_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="2 parses for 1 examples"):
        evaluate([example("hi", "greet")], [parse("hi", "greet", 1.0)] * 2)


def test_missing_intent_counts_as_none() -> None:
    report = evaluate([example("hi", "greet")], [{"text": "hi", "entities": []}])
    assert report.predicted_intents == ("None",)
    assert report.intent_accuracy == 0.0
    assert report.errors[0]["intent_prediction"] == {"name": None, "confidence": 0.0}


CITY = EntityAnnotation("city", 8, 14, "Berlin", "Berlin")
FROM = EntityAnnotation("city", 5, 11, "London", "London", role="departure")
TO = EntityAnnotation("city", 15, 20, "Paris", "Paris", role="destination")
DATE = EntityAnnotation("date", 0, 5, "today", "2024-01-01")


def test_entity_exact_span_matching() -> None:
    examples = [
        example("fly to Berlin", "book", CITY),  # off by one start: no match
        example("from London to Paris", "book", FROM, TO),  # one role wrong
        example("today", "when", DATE),  # found by two extractors: counted once
        example("hello", "greet"),  # a spurious prediction
    ]
    parses = [
        parse("fly to Berlin", "book", 0.9, [entity("city", 7, 14, "Berlin")]),
        parse(
            "from London to Paris",
            "book",
            0.8,
            [
                entity("city", 5, 11, "London", role="departure"),
                entity("city", 15, 20, "Paris", role="departure"),
            ],
        ),
        parse(
            "today",
            "when",
            0.7,
            [
                entity("date", 0, 5, "2024-01-01", extractor="DIETClassifier"),
                entity("date", 0, 5, "2024-01-01", extractor="RegexEntityExtractor"),
            ],
        ),
        parse("hello", "greet", 0.6, [entity("date", 0, 5, "hello")]),
    ]
    report = evaluate(examples, parses)
    entities = report.entity_report
    # city: gold 3, predicted 3 (7-14, London/departure, Paris/departure), 1 correct.
    assert entities["city"]["precision"] == pytest.approx(1 / 3)
    assert entities["city"]["recall"] == pytest.approx(1 / 3)
    assert entities["city"]["support"] == 3
    # date: gold 1, predicted 2 distinct (the duplicate folded), 1 correct.
    assert entities["date"]["precision"] == pytest.approx(0.5)
    assert entities["date"]["recall"] == pytest.approx(1.0)
    assert entities["date"]["f1-score"] == pytest.approx(2 / 3)
    # micro: tp 2, predicted 5, gold 4.
    micro = entities["micro avg"]
    assert micro["precision"] == pytest.approx(2 / 5)
    assert micro["recall"] == pytest.approx(2 / 4)
    assert micro["f1-score"] == pytest.approx(2 * 0.4 * 0.5 / 0.9)
    assert micro["support"] == 4
    assert report.entity_micro_f1 == pytest.approx(micro["f1-score"])
    assert entities["macro avg"]["f1-score"] == pytest.approx((1 / 3 + 2 / 3) / 2)
    # Every intent is right, yet three examples have a different entity set.
    assert report.intent_accuracy == 1.0
    assert [error["text"] for error in report.errors] == [
        "fly to Berlin",
        "from London to Paris",
        "hello",
    ]


def test_group_mismatch_does_not_match() -> None:
    gold = EntityAnnotation("topping", 0, 6, "cheese", "cheese", group="1")
    report = evaluate(
        [example("cheese", "order", gold)],
        [parse("cheese", "order", 0.9, [entity("topping", 0, 6, "cheese", group="2")])],
    )
    assert report.entity_micro_f1 == 0.0
    assert report.entity_report["topping"]["support"] == 1


def test_errors_are_sorted_by_confidence_and_shaped_like_rasa() -> None:
    examples = [
        example("a", "x"),
        example("b", "x"),
        example("c", "x", EntityAnnotation("e", 0, 1, "c", "C", role="r")),
        example("d", "x"),
    ]
    parses = [
        parse("a", "y", 0.3),
        parse("b", "x", 0.99),
        parse("c", "x", 0.5, [entity("e", 0, 1, "c", extractor="DIETClassifier")]),
        parse("d", "z", 0.8),
    ]
    report = evaluate(examples, parses)
    assert [error["text"] for error in report.errors] == ["d", "c", "a"]
    assert report.errors[1] == {
        "text": "c",
        "intent": "x",
        "intent_prediction": {"name": "x", "confidence": 0.5},
        "entities": [{"entity": "e", "start": 0, "end": 1, "value": "C", "role": "r"}],
        "predicted_entities": [
            {"entity": "e", "start": 0, "end": 1, "value": "c", "extractor": "DIETClassifier"}
        ],
    }


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    from PIL import Image  # Pillow comes with matplotlib

    with Image.open(path) as image:
        image.load()  # decodes every chunk: a truncated or corrupt PNG fails here
        assert image.size == (width, height)
    return int(width), int(height)


def test_write_reports_writes_all_files(tmp_path: Path) -> None:
    report = evaluate(
        [example("fly to Berlin", "book", CITY), example("héllo", "greet")],
        [
            parse("fly to Berlin", "book", 0.9, [entity("city", 7, 14, "Berlin")]),
            parse("héllo", "bye", 0.6),
        ],
    )
    out = tmp_path / "results" / "nlu"
    written = write_reports(report, out)
    assert sorted(path.name for path in written) == sorted(FILES)
    assert all(path.parent == out and path.is_file() for path in written)
    assert json.loads((out / "intent_report.json").read_text("utf-8")) == report.intent_report
    assert json.loads((out / "entity_report.json").read_text("utf-8")) == report.entity_report
    errors_text = (out / "errors.json").read_text("utf-8")
    assert "héllo" in errors_text  # ensure_ascii=False
    assert json.loads(errors_text) == report.errors
    for name in ("intent_confusion_matrix.png", "intent_histogram.png"):
        width, height = png_size(out / name)
        assert width >= 300
        assert height >= 300
    summary = (out / "summary.txt").read_text("utf-8")
    assert summary == render_summary(report)


def test_confusion_matrix_grows_with_many_labels(tmp_path: Path) -> None:
    few = plot_confusion_matrix(
        intents_only([("a", "a", 0.9), ("b", "a", 0.4)]), tmp_path / "a.png"
    )
    labels = [f"intent_with_a_long_name_{i:02d}" for i in range(40)]
    pairs: list[tuple[str, str | None, float]] = [
        (label, labels[(i * 7) % 40] if i % 3 == 0 else label, (i % 20) / 20)
        for i, label in enumerate(labels)
    ]
    many = plot_confusion_matrix(intents_only(pairs), tmp_path / "b.png")
    few_width, few_height = png_size(few)
    many_width, many_height = png_size(many)
    assert many_width > 2 * few_width
    assert many_height > 2 * few_height


def test_render_summary_lists_the_worst_intents() -> None:
    summary = render_summary(intents_only(PAIRS))
    assert "Examples:            6" in summary
    assert "Intent accuracy:     0.5000" in summary
    assert "Entity micro F1:     n/a (no entities)" in summary
    worst = summary.split("Worst 3 intents by F1:\n")[1].splitlines()
    # Only gold intents (support > 0), lowest F1 first: ask 0, bye 0.5, greet 0.667.
    assert [line.split()[0] for line in worst] == ["ask", "bye", "greet"]
